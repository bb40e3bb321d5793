//! The `lodcache` binary as a user and a script see it: help and exit codes, every
//! subcommand's output, names quoted, a closed stdout, capped thread counts, small scans.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{arg, bin, run};
use lodcache::Phantom;
use serde_json::Value;

#[test]
fn help_on_every_level_exits_0() {
    for args in [
        &["--help"][..],
        &["-h"],
        &["help"],
        &["--version"],
        &["serve", "--help"],
        &["export", "--help"],
        &["warm", "--help"],
        &["info", "--help"],
        &["clean", "--help"],
        &["verify", "--help"],
        &["phantom", "--help"],
        &["bench", "--help"],
        &["bench", "table", "--help"],
        &["bench", "load", "--help"],
        &["help", "export"],
    ] {
        let (out, stdout, stderr) = run(args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stdout}\n{stderr}");
        assert!(
            stdout.contains("Usage") || stdout.starts_with("lodcache "),
            "{args:?}: {stdout}"
        );
    }
    // The options that are a contract appear in the help.
    let (_, stdout, _) = run(&["serve", "--help"]);
    for option in [
        "--host",
        "--port",
        "--cache",
        "--no-cache",
        "--edge",
        "--memory",
    ] {
        assert!(
            stdout.contains(option),
            "serve --help lacks {option}: {stdout}"
        );
    }
    let (_, stdout, _) = run(&["export", "--help"]);
    for option in [
        "--format",
        "--levels",
        "--threads",
        "--cache",
        "--no-cache",
        "--edge",
    ] {
        assert!(
            stdout.contains(option),
            "export --help lacks {option}: {stdout}"
        );
    }
}

#[test]
fn usage_errors_exit_2_with_the_usage() {
    for args in [
        &[][..],
        &["export", "only-one-argument"],
        &["export"],
        &["frobnicate"],
        &["serve", "--port", "http"],
        &["serve", "--memory", "12Q"],
        &["warm", "scan", "--time", "3 days"],
        &["export", "a", "b", "--format", "zarr"],
        &["export", "a", "b", "--cache", "c", "--no-cache"],
        &["info", "a", "--edge", "0"],
    ] {
        let (out, stdout, stderr) = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stdout}\n{stderr}");
        assert!(stderr.contains("Usage"), "{args:?}: {stderr}");
    }
    // One-argument export names what is missing.
    let (_, _, stderr) = run(&["export", "scan-only"]);
    assert!(stderr.contains("<OUT>"), "{stderr}");
}

#[test]
fn thread_counts_are_capped_before_any_pool_is_made() {
    for args in [
        &["export", "a", "b", "--threads", "20000"][..],
        &["warm", "a", "--threads", "20000"],
        &["export", "a", "b", "--threads", "0"],
    ] {
        let (out, _, stderr) = run(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("1 to 256"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

#[test]
fn runtime_errors_exit_1_with_the_name_quoted() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere");
    for args in [
        &["info", arg(&missing)][..],
        &["export", arg(&missing), arg(&tmp.path().join("out"))],
        &["warm", arg(&missing)],
        &["serve", arg(&missing)],
    ] {
        let (out, _, stderr) = run(args);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        assert!(
            stderr.contains(&format!("{:?}", missing.to_str().unwrap())),
            "{args:?}: {stderr}"
        );
    }
}

#[cfg(unix)]
#[test]
fn names_with_newlines_and_escape_codes_cannot_forge_output() {
    let tmp = tempfile::tempdir().unwrap();
    let evil = tmp.path().join("scan\nerror: forged\u{1b}[31m");
    std::fs::create_dir(&evil).unwrap();
    // No image in it: the library's error names the folder.
    let (out, stdout, stderr) = run(&["info", arg(&evil), "--no-cache"]);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    assert!(!stderr.contains('\u{1b}'), "{stderr:?}");
    assert!(stderr.contains("\\nerror: forged\\u{1b}[31m"), "{stderr:?}");
    // With images, names are printed quoted on stdout too.
    Phantom::new(64, 48, 4).write(&evil).unwrap();
    let (out, stdout, stderr) = run(&["info", arg(&evil), "--edge", "16", "--no-cache"]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("error")),
        "{stdout:?}"
    );
    assert!(
        stdout.contains("\"") && stdout.contains("\\n"),
        "{stdout:?}"
    );
}

/// Runs `lodcache args` with stdout a pipe whose reader is already gone (as in
/// `lodcache ... | head -0`): status and stderr.
#[cfg(unix)]
fn run_with_closed_stdout(args: &[&str]) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_quietly_without_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("scan");
    Phantom::new(96, 80, 6).write(&scan).unwrap();
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    for args in [
        &["info", arg(&scan), "--edge", "16", "--cache", arg(&cache)][..],
        &[
            "info",
            arg(&scan),
            "--json",
            "--edge",
            "16",
            "--cache",
            arg(&cache),
        ],
        &[
            "export",
            arg(&scan),
            arg(&out),
            "--edge",
            "16",
            "--cache",
            arg(&cache),
        ],
        &["--help"],
    ] {
        let (status, stderr) = run_with_closed_stdout(args);
        assert_eq!(status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // The export was done all the same (its summary is printed at the end).
    assert!(out.join("1").join("000000.tif").is_file());
}

fn info_json(scan: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["info", arg(scan), "--json"];
    args.extend_from_slice(extra);
    let (out, stdout, stderr) = run(&args);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    serde_json::from_str(&stdout).unwrap()
}

/// (level, width, height, depth, stored) of `info --json`.
fn stored(info: &Value) -> Vec<(u64, u64, u64, u64, u64)> {
    info["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let n = |k: &str| l[k].as_u64().unwrap_or_else(|| panic!("{k} in {l}"));
            (n("level"), n("width"), n("height"), n("depth"), n("stored"))
        })
        .collect()
}

#[test]
fn info_export_warm_and_clean_on_one_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("scan");
    Phantom::new(200, 160, 24).write(&scan).unwrap();
    let cache = tmp.path().join("cache");
    let c = ["--edge", "30", "--cache", arg(&cache)];

    // A fresh cache: only the source is there.
    let info = info_json(&scan, &c);
    assert_eq!(info["files"], 24);
    assert_eq!(info["sample_type"], "u16");
    assert_eq!(info["cache"]["dir"], arg(&cache));
    assert_eq!(
        stored(&info),
        [
            (0, 200, 160, 24, 24),
            (1, 100, 80, 12, 0),
            (2, 50, 40, 6, 0),
            (3, 25, 20, 3, 0)
        ]
    );
    let (out, text, _) = run(&[&["info", arg(&scan)][..], &c].concat());
    assert!(out.status.success());
    for want in [
        "200 x 160 x 24 u16",
        "gaps       none",
        "(source)",
        "0 / 12",
    ] {
        assert!(text.contains(want), "{want:?} not in\n{text}");
    }

    // Export level 2 only: made on the way, summary on one line.
    let out_dir = tmp.path().join("out");
    let (out, stdout, stderr) = run(&[
        &["export", arg(&scan), arg(&out_dir), "--levels", "2"][..],
        &c,
    ]
    .concat());
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.starts_with("wrote 6 files, "), "{stdout}");
    assert!(stdout.contains(&format!("{:?}", arg(&out_dir))), "{stdout}");
    assert!(stdout.contains("from cache 0"), "{stdout}");
    let generated: u64 = stdout
        .split("slices generated ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(generated >= 6, "{stdout}");
    assert_eq!(std::fs::read_dir(out_dir.join("2")).unwrap().count(), 6);

    // Warm the rest; then every level is stored.
    let (out, stdout, stderr) = run(&[&["warm", arg(&scan)][..], &c].concat());
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("outcome: completed"), "{stdout}");
    let info = info_json(&scan, &c);
    for (level, _, _, depth, stored) in stored(&info) {
        assert_eq!(stored, depth, "level {level}: {info}");
    }
    assert!(info["cache"]["bytes"].as_u64().unwrap() > 0, "{info}");

    // A second export is served from the cache.
    let (out, stdout, _) = run(&[&["export", arg(&scan), arg(&out_dir)][..], &c].concat());
    assert!(out.status.success());
    assert!(
        stdout.contains("slices generated 0, from cache"),
        "{stdout}"
    );
    assert!(stdout.starts_with("wrote 21 files"), "{stdout}");

    // clean refuses a folder lodcache did not make, and removes its own.
    let other = tmp.path().join("precious");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("thesis.txt"), "years of work").unwrap();
    std::fs::write(other.join("manifest.json"), "{}").unwrap();
    let (out, _, stderr) = run(&["clean", arg(&scan), "--cache", arg(&other)]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("not removing"), "{stderr}");
    assert!(other.join("thesis.txt").is_file());
    let (out, stdout, stderr) = run(&["clean", arg(&scan), "--cache", arg(&cache)]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("removed "), "{stdout}");
    assert!(!cache.exists());
    let (out, stdout, _) = run(&["clean", arg(&scan), "--cache", arg(&cache)]);
    assert!(out.status.success());
    assert!(stdout.contains("nothing to remove"), "{stdout}");
}

#[test]
fn the_default_cache_folder_is_cleaned_too() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("scan");
    Phantom::new(64, 48, 4).write(&scan).unwrap();
    let (out, _, stderr) = run(&["warm", arg(&scan), "--edge", "16"]);
    assert!(out.status.success(), "{stderr}");
    assert!(scan.join(".lodcache").join("manifest.json").is_file());
    let (out, _, stderr) = run(&["clean", arg(&scan)]);
    assert!(out.status.success(), "{stderr}");
    assert!(!scan.join(".lodcache").exists());
    assert!(
        scan.join(Phantom::file_name(0)).is_file(),
        "the scan was touched"
    );
}

#[test]
fn small_scans_say_which_option_gives_levels() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("mri");
    Phantom::new(256, 256, 16).write(&scan).unwrap();
    let (out, stdout, _) = run(&["info", arg(&scan), "--no-cache"]);
    assert!(out.status.success());
    assert!(
        stdout.contains("no level is made") && stdout.contains("--edge"),
        "{stdout}"
    );
    let info = info_json(&scan, &["--no-cache"]);
    assert!(info["note"].as_str().unwrap().contains("--edge"), "{info}");
    assert_eq!(info["levels"].as_array().unwrap().len(), 1);
    // export keeps CTHarvester's rule and says so.
    let (out, _, stderr) = run(&["export", arg(&scan), arg(&tmp.path().join("o"))]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("nothing to export") && stderr.contains("--edge"),
        "{stderr}"
    );
    // The option it names works.
    let (out, stdout, stderr) = run(&[
        "export",
        arg(&scan),
        arg(&tmp.path().join("o")),
        "--edge",
        "128",
        "--no-cache",
    ]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.starts_with("wrote 8 files"), "{stdout}");
}

#[test]
fn phantom_writes_a_scan() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("ph");
    let (status, stdout, stderr) = run(&[
        "phantom",
        arg(&out),
        "--size",
        "40",
        "--height",
        "30",
        "--depth",
        "5",
        "--u8",
    ]);
    assert!(status.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.starts_with("wrote 5 slices of 40 x 30 u8"),
        "{stdout}"
    );
    let info = info_json(&out, &["--no-cache", "--edge", "8"]);
    assert_eq!(info["sample_type"], "u8");
    assert_eq!(info["depth"], 5);
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_an_export_with_130_and_leaves_out_as_it_was() {
    // The built-in sample (1024 x 1024 x 128): its export takes long enough to be interrupted
    // once its staging folder shows it has started. A run can still finish before the signal
    // lands on a fast machine; then try again.
    let scan = lodcache::sample_stack().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for attempt in 0..5 {
        let out = tmp.path().join(format!("out{attempt}"));
        // An earlier export's folder with the user's file beside its levels: an export may
        // write there, and must leave it as it was when interrupted.
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join(lodcache::EXPORT_MARKER), "{}").unwrap();
        std::fs::write(out.join("keep.txt"), "mine").unwrap();
        let child = Command::new(bin())
            .args(["export", arg(&scan), arg(&out), "--no-cache"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let staging = || {
            std::fs::read_dir(&out).is_ok_and(|d| {
                d.flatten().any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with(".lodcache-export") && name != lodcache::EXPORT_MARKER
                })
            })
        };
        while !staging() && started.elapsed() < std::time::Duration::from_secs(60) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let kill = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let result = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&result.stderr);
        if result.status.success() {
            continue; // finished before the signal
        }
        assert_eq!(result.status.code(), Some(130), "{stderr}");
        assert!(
            stderr.contains("cancelled") && stderr.contains("interrupted"),
            "{stderr}"
        );
        // OUT as it was: no level folder, our file kept (the staging folder goes with the
        // next export, or is removed when the library sweeps it).
        let names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".lodcache-export"))
            .collect();
        assert_eq!(names, ["keep.txt"], "{stderr}");
        assert_eq!(std::fs::read(out.join("keep.txt")).unwrap(), b"mine");
        return;
    }
    panic!("every export finished before Ctrl-C reached it");
}

/// Rewrites source slice `z` of `scan` in place with other pixels of the same size, and puts
/// its modification time back: what `cp -p` over it or `rsync -t` leave.
fn rewrite_in_place_keeping_the_time(scan: &Path, z: u32, seed: u64) {
    let path = scan.join(Phantom::file_name(z));
    let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
    let other = tempfile::tempdir().unwrap();
    Phantom::new(64, 48, z + 1)
        .with_seed(seed)
        .write(other.path())
        .unwrap();
    let bytes = std::fs::read(other.path().join(Phantom::file_name(z))).unwrap();
    assert_eq!(bytes.len() as u64, std::fs::metadata(&path).unwrap().len());
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all(&bytes).unwrap();
    f.set_modified(modified).unwrap();
}

#[test]
fn verify_drops_what_a_same_size_same_time_rewrite_made_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("scan");
    Phantom::new(64, 48, 16).write(&scan).unwrap();
    let s = arg(&scan);
    // The first verify records the contents (and, having no record to compare with, rebuilds).
    let (out, stdout, stderr) = run(&["warm", s, "--edge", "8", "--content-check"]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let (out, stdout, stderr) = run(&["verify", s, "--edge", "8"]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("0 cached slices dropped"), "{stdout}");
    rewrite_in_place_keeping_the_time(&scan, 5, 77);
    // Without the content check nothing is seen; with it, the dependents of slice 5 (one per
    // level the cache holds: 1, 2, 3) are dropped.
    let (out, stdout, stderr) = run(&["verify", s, "--edge", "8"]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("16 source slices hashed"), "{stdout}");
    assert!(stdout.contains("3 cached slices dropped"), "{stdout}");
    // The decode budget reaches the library (which refuses 0, naming the option).
    let (out, _, stderr) = run(&["info", s, "--decode-budget", "0"]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("--decode-budget"), "{stderr}");
}
