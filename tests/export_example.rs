//! The `export` and `bench` examples as a user runs them: a good stack is exported (a second
//! time from the cache); bad input exits non-zero with the error on stderr and leaves no file in
//! OUT; the bench prints its table.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{example_binary, tree};
use lodcache::Phantom;

/// The export example cargo built next to this test (`target/<profile>/examples/export`).
fn example() -> PathBuf {
    example_binary("export")
}

#[test]
fn export_example_writes_the_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("stack");
    Phantom::new(100, 90, 9).write(&stack).unwrap();
    let out = tmp.path().join("out");
    let run = Command::new(example())
        .arg(&stack)
        .arg(&out)
        .args(["--edge", "20"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("wrote 10 files"), "{stdout}");
    assert_eq!(
        tree(&out),
        [
            ".lodcache-export.json",
            "1/000000.tif",
            "1/000001.tif",
            "1/000002.tif",
            "1/000003.tif",
            "1/000004.tif",
            "2/000000.tif",
            "2/000001.tif",
            "2/000002.tif",
            "3/000000.tif",
            "3/000001.tif"
        ]
    );
}

#[test]
fn bad_input_exits_nonzero_with_the_error_and_no_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");

    // A missing folder.
    let run = Command::new(example())
        .arg(tmp.path().join("nowhere"))
        .arg(&out)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        err.contains("nowhere") && err.contains("does not exist"),
        "{err}"
    );

    // A truncated slice in the middle of an otherwise good stack.
    let stack = tmp.path().join("stack");
    Phantom::new(64, 64, 12).write(&stack).unwrap();
    let bad = stack.join(Phantom::file_name(9));
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() - 100]).unwrap();
    let run = Command::new(example())
        .arg(&stack)
        .arg(&out)
        .args(["--edge", "8"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains(&Phantom::file_name(9)), "{err}");
    assert!(tree(&out).is_empty(), "left behind: {:?}", tree(&out));

    // A bad option value.
    let run = Command::new(example())
        .arg(&stack)
        .arg(&out)
        .args(["--edge", "big"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("--edge"));
}

#[test]
fn second_export_is_served_from_the_cache_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("stack");
    Phantom::new(100, 90, 9).write(&stack).unwrap();
    let cache = tmp.path().join("cache");
    let run = |out: &str| {
        let run = Command::new(example())
            .arg(&stack)
            .arg(tmp.path().join(out))
            .args(["--edge", "20", "--cache"])
            .arg(&cache)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
        assert!(run.status.success(), "{stdout}");
        stdout
    };
    let first = run("a");
    assert!(
        first.contains("10 blobs generated, 0 served from disk"),
        "{first}"
    );
    let second = run("b");
    assert!(
        second.contains("0 blobs generated, 10 served from disk"),
        "{second}"
    );
    assert!(second.contains("read 0.0 MB of source"), "{second}");
    assert_eq!(tree(&tmp.path().join("a")), tree(&tmp.path().join("b")));
    assert!(!stack.join(".lodcache").exists(), "--cache was not used");
}

#[test]
fn bench_example_prints_its_table() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("stack");
    Phantom::new(96, 80, 12).write(&stack).unwrap();
    let run = Command::new(example_binary("bench"))
        .arg(&stack)
        .args(["--edge", "16", "--runs", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for row in [
        "first slice of level 3",
        "volume(3)",
        "full eager build",
        "decode floor",
        "memory hit",
        "disk hit",
        "compression",
    ] {
        assert!(stdout.contains(row), "no {row:?} row in\n{stdout}");
    }
    let bad = Command::new(example_binary("bench"))
        .arg(tmp.path().join("missing"))
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("missing"));
}
