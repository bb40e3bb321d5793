//! `lodcache export --format ome-zarr`: the store holds every level with the pyramid's exact
//! samples, options that do not fit the format are refused by name, Ctrl-C leaves OUT as it
//! was; `--voxel-size` reaches the store and `lodcache info` says where the voxel size came
//! from. (zarr-python, tensorstore and ome-zarr-py read these stores in `.ci/zarr-clients`.)

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{arg, bin, run};
use lodcache::{Phantom, Pyramid};
use serde_json::Value;

fn phantom(dir: &Path) -> std::path::PathBuf {
    let stack = dir.join("stack");
    Phantom::new(300, 260, 20).write(&stack).unwrap();
    stack
}

fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap()
}

fn samples(bytes: &[u8]) -> Vec<u16> {
    bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect()
}

#[test]
fn zarr_v2_store_holds_every_level_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = phantom(tmp.path());
    let out = tmp.path().join("scan.ome.zarr");
    let (o, stdout, stderr) = run(&[
        "export",
        arg(&stack),
        arg(&out),
        "--format",
        "ome-zarr",
        "--zarr-version",
        "2",
        "--chunks",
        "1,64,64",
        "--compression",
        "none",
        "--edge",
        "100",
        "--no-cache",
        "--voxel-size",
        "2,2,3",
    ]);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stdout.contains("3 levels") && stdout.contains("0.4"),
        "{stdout}"
    );
    let attrs = json(&out.join(".zattrs"));
    let ms = &attrs["multiscales"][0];
    assert_eq!(ms["datasets"].as_array().unwrap().len(), 3);
    assert_eq!(
        ms["datasets"][2]["coordinateTransformations"][0]["scale"],
        serde_json::json!([12.0, 8.0, 8.0])
    );
    let pyr = Pyramid::builder(&stack)
        .with_edge(100)
        .with_disk_cache(false)
        .build()
        .unwrap();
    for level in 0..3u32 {
        let info = pyr.levels()[level as usize];
        let zarray = json(&out.join(format!("{level}/.zarray")));
        assert_eq!(
            zarray["shape"],
            serde_json::json!([info.depth, info.height, info.width])
        );
        // The last chunk of the last slice: padded with 0 past the edge.
        let (z, iy, ix) = (
            info.depth - 1,
            (info.height - 1) / 64,
            (info.width - 1) / 64,
        );
        let chunk = std::fs::read(out.join(format!("{level}/{z}/{iy}/{ix}"))).unwrap();
        let got = samples(&chunk);
        assert_eq!(got.len(), 64 * 64);
        let slice = pyr.slice(level, z).unwrap();
        let lodcache::Pixels::U16(px) = slice.pixels() else {
            panic!("a 16-bit phantom")
        };
        for dy in 0..64u32 {
            for dx in 0..64u32 {
                let (y, x) = (iy * 64 + dy, ix * 64 + dx);
                let want = if y < info.height && x < info.width {
                    px[(y * info.width + x) as usize]
                } else {
                    0
                };
                assert_eq!(got[(dy * 64 + dx) as usize], want, "level {level} {y},{x}");
            }
        }
    }
}

#[test]
fn zarr_v3_store_with_shards_by_default_blosc() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = phantom(tmp.path());
    let out = tmp.path().join("scan.ome.zarr");
    let (o, stdout, stderr) = run(&[
        "export",
        arg(&stack),
        arg(&out),
        "--format",
        "ome-zarr",
        "--chunks",
        "4,64,64",
        "--shards",
        "8,128,128",
        "--edge",
        "100",
        "--no-cache",
    ]);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("0.5"), "{stdout}");
    assert_eq!(
        json(&out.join("zarr.json"))["attributes"]["ome"]["version"],
        "0.5"
    );
    let array = json(&out.join("0/zarr.json"));
    assert_eq!(array["codecs"][0]["name"], "sharding_indexed");
    assert_eq!(
        array["codecs"][0]["configuration"]["codecs"][1]["name"],
        "blosc"
    );
    assert!(out.join("0/c/2/2/2").is_file());
    assert!(!out.join("0/c/3/0/0").exists());
}

#[test]
fn a_scan_without_levels_is_still_converted_with_level_0_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("small");
    Phantom::new(60, 40, 3).write(&stack).unwrap();
    let out = tmp.path().join("small.ome.zarr");
    let (o, stdout, stderr) = run(&[
        "export",
        arg(&stack),
        arg(&out),
        "--format",
        "ome-zarr",
        "--no-cache",
    ]);
    assert!(o.status.success(), "{stderr}");
    assert!(stdout.contains("1 levels"), "{stdout}");
    let ms = &json(&out.join("zarr.json"))["attributes"]["ome"]["multiscales"][0];
    assert_eq!(ms["datasets"].as_array().unwrap().len(), 1);
    assert_eq!(
        json(&out.join("0/zarr.json"))["shape"],
        serde_json::json!([3, 40, 60])
    );
    // The CTHarvester layout has nothing to write there, and says which option gives levels.
    let (o, _, stderr) = run(&[
        "export",
        arg(&stack),
        arg(&tmp.path().join("cth")),
        "--no-cache",
    ]);
    assert!(!o.status.success());
    assert!(
        stderr.contains("nothing to export") && stderr.contains("--edge"),
        "{stderr}"
    );
}

#[test]
fn options_of_the_other_format_are_refused_by_name_and_write_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = phantom(tmp.path());
    let out = tmp.path().join("out");
    for (args, want) in [
        (&["--format", "ome-zarr", "--levels", "1"][..], "--levels"),
        (
            &[
                "--format",
                "ome-zarr",
                "--zarr-version",
                "2",
                "--shards",
                "8,64,64",
            ][..],
            "--shards",
        ),
        (&["--chunks", "8,64,64"][..], "--format ome-zarr"),
        (&["--format", "ome-zarr", "--compression", "lz4"][..], "lz4"),
        (&["--format", "ome-zarr", "--zarr-version", "4"][..], "4"),
        (
            &[
                "--format",
                "ome-zarr",
                "--chunks",
                "4,60,64",
                "--shards",
                "8,128,128",
            ][..],
            "multiple",
        ),
    ] {
        let mut all = vec![
            "export",
            arg(&stack),
            arg(&out),
            "--edge",
            "100",
            "--no-cache",
        ];
        all.extend_from_slice(args);
        let (o, _, stderr) = run(&all);
        assert!(!o.status.success(), "{args:?}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(!out.exists(), "{args:?} wrote {out:?}");
    }
}

#[test]
fn info_shows_the_voxel_size_and_where_it_came_from() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = phantom(tmp.path());
    let (o, stdout, stderr) = run(&[
        "info",
        arg(&stack),
        "--no-cache",
        "--voxel-size",
        "4.5,4.5,9",
    ]);
    assert!(o.status.success(), "{stderr}");
    let line = stdout.lines().find(|l| l.starts_with("voxel")).unwrap();
    assert!(
        line.contains("4.5 x 4.5 x 9") && line.contains("given by the user"),
        "{line}"
    );
    let (o, stdout, _) = run(&[
        "info",
        arg(&stack),
        "--no-cache",
        "--json",
        "--voxel-size",
        "1,2,3",
    ]);
    assert!(o.status.success());
    let v: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["voxel_size"]["z"], 3.0);
    assert_eq!(v["voxel_size"]["source"], "given by the user");
    // A SkyScan log beside the slices.
    std::fs::write(
        stack.join("scan.log"),
        "[Reconstruction]\r\nPixel Size (um)=12.5\r\n",
    )
    .unwrap();
    let (o, stdout, _) = run(&["info", arg(&stack), "--no-cache"]);
    assert!(o.status.success());
    let line = stdout.lines().find(|l| l.starts_with("voxel")).unwrap();
    assert!(
        line.contains("12.5 x 12.5 x 12.5") && line.contains("scan.log"),
        "{line}"
    );
    let (o, _, stderr) = run(&["info", arg(&stack), "--voxel-size", "1,0,1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr.contains("1,0,1"), "{stderr}");
}

#[test]
fn ctrl_c_stops_an_ome_zarr_export_with_130_and_leaves_out_as_it_was() {
    // The built-in sample (1024 x 1024 x 128) takes long enough to be interrupted once its
    // staging folder shows it has started; a run can still finish first, then try again.
    let scan = lodcache::sample_stack().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    for attempt in 0..5 {
        let out = tmp.path().join(format!("out{attempt}.ome.zarr"));
        let child = Command::new(bin())
            .args([
                "export",
                arg(&scan),
                arg(&out),
                "--no-cache",
                "--format",
                "ome-zarr",
            ])
            .args(["--compression", "zstd:9"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        let staging = || {
            std::fs::read_dir(tmp.path()).is_ok_and(|d| {
                d.flatten().any(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .contains(".lodcache-staging")
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
            continue;
        }
        assert_eq!(result.status.code(), Some(130), "{stderr}");
        assert!(stderr.contains("cancelled"), "{stderr}");
        assert!(!out.exists(), "{stderr}");
        return;
    }
    panic!("every export finished before Ctrl-C reached it");
}
