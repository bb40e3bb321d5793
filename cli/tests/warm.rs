//! `lodcache warm` as a user runs it: a run fills the cache folder and prints a row per level,
//! a second run finds everything stored, a zero time budget ends with the budget, bad input
//! exits non-zero naming it, and Ctrl-C cancels with exit code 130 and a cache that the next
//! run resumes from.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::arg;
use lodcache::{LevelInfo, LevelRule, Phantom, Stack, sample_stack};

fn run(args: &[&str]) -> (Output, String, String) {
    common::run(&[&["warm"][..], args].concat())
}

/// Levels 1 and up of `stack` at `edge`.
fn levels(stack: &Path, edge: u32) -> Vec<LevelInfo> {
    let stack = Stack::open(stack).unwrap();
    let rule = LevelRule::default().with_edge(edge);
    stack.levels(&rule).unwrap().into_iter().skip(1).collect()
}

/// The table row of `level`, split into its columns.
fn row(stdout: &str, level: &LevelInfo) -> Vec<String> {
    let dims = format!("{} x {} x {}", level.width, level.height, level.depth);
    let line = stdout
        .lines()
        .find(|l| {
            l.split_whitespace().next() == Some(&level.level.to_string()) && l.contains(&dims)
        })
        .unwrap_or_else(|| panic!("no row for level {} ({dims}) in\n{stdout}", level.level));
    line.split_whitespace().map(str::to_string).collect()
}

#[test]
fn warmup_fills_the_cache_and_a_second_run_finds_it_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("stack");
    Phantom::new(200, 160, 24).write(&stack).unwrap();
    let cache = tmp.path().join("cache");
    let levels = levels(&stack, 16);
    assert!(levels.len() >= 3, "{levels:?}");
    let total: u32 = levels.iter().map(|l| l.depth).sum();

    let (out, stdout, stderr) = run(&[arg(&stack), "--edge", "16", "--cache", arg(&cache)]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("outcome: completed"), "{stdout}");
    assert!(stdout.contains("demand ranking"), "{stdout}");
    for l in &levels {
        // level, w, x, h, x, d, made, /, already, disk bytes, blob/raw, time
        let cols = row(&stdout, l);
        assert_eq!(
            cols[6..9],
            [l.depth.to_string(), "/".into(), "0".into()],
            "{stdout}"
        );
        let on_disk: u64 = cols[9].parse().unwrap();
        assert!(on_disk > 0, "{stdout}");
        let ratio: f64 = cols[10].parse().unwrap();
        assert!(ratio > 0.0 && ratio < 2.0, "{stdout}");
        let files = std::fs::read_dir(cache.join(l.level.to_string()))
            .unwrap()
            .count();
        assert_eq!(files, l.depth as usize, "level {}", l.level);
    }
    assert!(
        stdout.contains(&format!("slices: {total} made, 0 already stored")),
        "{stdout}"
    );

    let (out, stdout, stderr) = run(&[arg(&stack), "--edge", "16", "--cache", arg(&cache)]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("outcome: completed"), "{stdout}");
    for l in &levels {
        assert_eq!(
            row(&stdout, l)[6..9],
            ["0".to_string(), "/".into(), l.depth.to_string()]
        );
    }
    assert!(
        stdout.contains(&format!("slices: 0 made, {total} already stored")),
        "{stdout}"
    );
}

#[test]
fn a_zero_time_budget_ends_with_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("stack");
    Phantom::new(64, 48, 8).write(&stack).unwrap();
    let cache = tmp.path().join("cache");
    let (out, stdout, stderr) = run(&[
        arg(&stack),
        "--edge",
        "8",
        "--time",
        "0s",
        "--cache",
        arg(&cache),
    ]);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("outcome: budget reached"), "{stdout}");
}

#[test]
fn bad_input_exits_nonzero_with_the_error() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nowhere");
    let (out, stdout, stderr) = run(&[arg(&missing)]);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stderr.contains(&*missing.to_string_lossy()), "{stderr}");

    let stack = tmp.path().join("stack");
    Phantom::new(64, 48, 8).write(&stack).unwrap();
    let cache = tmp.path().join("cache");
    let (out, stdout, stderr) = run(&[
        arg(&stack),
        "--edge",
        "8",
        "--levels",
        "9",
        "--cache",
        arg(&cache),
    ]);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("outcome: failed"), "{stdout}");
    assert!(stderr.contains("valid levels: 1..=3"), "{stderr}");

    let (out, _, stderr) = run(&[arg(&stack), "--threads", "many"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("--threads"), "{stderr}");
}

/// Whether any blob file is under `dir` (one level deep: `<dir>/<level>/<z>.blob`).
fn any_blob(dir: &Path) -> bool {
    let Ok(levels) = std::fs::read_dir(dir) else {
        return false;
    };
    levels.flatten().any(|l| {
        std::fs::read_dir(l.path()).is_ok_and(|mut files| {
            files.any(|f| f.is_ok_and(|f| f.path().extension().is_some_and(|x| x == "blob")))
        })
    })
}

#[cfg(unix)]
#[test]
fn ctrl_c_cancels_with_130_and_the_next_run_resumes() {
    // The built-in sample (1024 x 1024 x 128, written once and shared with `serve`): its
    // 64 level-1 slices take long enough to be interrupted after the first one is stored. A
    // run can still finish before the signal lands on a fast machine; then try again.
    let stack = sample_stack().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let options = ["--levels", "1", "--threads", "1", "--cache"];
    for attempt in 0..5 {
        let cache = tmp.path().join(format!("cache{attempt}"));
        let child = Command::new(common::bin())
            .arg("warm")
            .arg(&stack)
            .args(options)
            .arg(&cache)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while !any_blob(&cache) && started.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let kill = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() && stdout.contains("outcome: completed") {
            continue; // finished before the signal
        }
        assert_eq!(out.status.code(), Some(130), "{stdout}\n{stderr}");
        assert!(stdout.contains("outcome: cancelled"), "{stdout}");
        assert!(stdout.contains("the next run resumes"), "{stdout}");

        // The next run carries on from what the cancelled one stored.
        let (out, stdout, stderr) = run(&[&[arg(&stack)], &options[..], &[arg(&cache)]].concat());
        assert!(out.status.success(), "{stdout}\n{stderr}");
        assert!(stdout.contains("outcome: completed"), "{stdout}");
        let level = levels(&stack, LevelRule::default().edge)[0];
        let cols = row(&stdout, &level);
        let (made, already): (u32, u32) = (cols[6].parse().unwrap(), cols[8].parse().unwrap());
        assert!(already > 0 && made > 0, "{stdout}");
        assert_eq!(made + already, level.depth, "{stdout}");
        eprintln!(
            "interrupted on attempt {}: {made} of {} slices left",
            attempt + 1,
            level.depth
        );
        return;
    }
    panic!("every run finished before Ctrl-C reached it");
}
