//! The `export` example as a user runs it: a good stack is exported; bad input exits non-zero
//! with the error on stderr and leaves no file in OUT.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::tree;
use lodcache::Phantom;

/// The example binary cargo built next to this test (`target/<profile>/examples/export`).
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let path = profile_dir
        .join("examples")
        .join(format!("export{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "{} not built", path.display());
    path
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
