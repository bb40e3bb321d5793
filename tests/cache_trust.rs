//! Nothing in the cache folder is trusted (issue 15, items 1, 2 and 5): every attack below
//! served wrong pixels, hung, grew without bound, or wrote or deleted outside the cache before
//! blobs carried their origin and the folder was handled without following links. Each test
//! reproduces the attack on purpose and asserts the outcome: every slice equal to the naive
//! pyramid, files outside the cache untouched, no hang.

mod common;

use std::time::{Duration, SystemTime};

use common::{Scan, Volume as Naive, peak_rss, request_all, tree, within};
use lodcache::{Phantom, Pyramid};

const EDGE: u32 = 8;

/// The phantom stack of these tests (64 x 48 x 16: levels 32 x 24 x 8, 16 x 12 x 4, 8 x 6 x 2).
fn phantom_scan(seed: u64) -> Scan {
    Scan::new(Phantom::new(64, 48, 16).with_seed(seed), EDGE)
}

/// Asserts that every slice of every level of `pyr` equals `naive`.
fn assert_all_correct(what: &str, pyr: &Pyramid, naive: &[Naive]) {
    request_all(what, pyr, naive);
}

/// Rewrites source slice `z` of `scan` with other pixels and a later modification time.
fn rewrite_source(scan: &Scan, z: u32, seed: u64) {
    let other = tempfile::tempdir().unwrap();
    Phantom::new(64, 48, 16)
        .with_seed(seed)
        .write(other.path())
        .unwrap();
    let name = Phantom::file_name(z);
    let path = scan.stack.join(&name);
    std::fs::copy(other.path().join(&name), &path).unwrap();
    let later = SystemTime::now() + Duration::from_secs(10);
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(later)
        .unwrap();
}

/// Item 1: process W1 made slice (1, 0) from the old `s0000` and writes it after process W2,
/// opened on the rewritten `s0000`, has scanned the folder and rewritten the manifest. The
/// late write is made to happen on purpose: W1's blob is put back after W2's open.
#[test]
fn a_blob_written_by_another_process_from_old_sources_is_never_served() {
    let scan = phantom_scan(1);
    // W1: makes everything from the old sources; we keep its blob of (1, 0).
    let w1 = scan.builder().build().unwrap();
    w1.volume(w1.levels().len() as u32 - 1).unwrap();
    w1.flush();
    drop(w1);
    let blob = lodcache::store::blob_path(&scan.cache, lodcache::SliceKey::new(1, 0));
    let stale = std::fs::read(&blob).unwrap();

    rewrite_source(&scan, 0, 99);
    // W2 opens on the new sources (invalidating (1, 0), (2, 0), (3, 0)) ...
    let w2 = scan.builder().build().unwrap();
    assert!(!blob.exists(), "the open did not remove the dependent blob");
    // ... and W1's late write lands after it.
    std::fs::write(&blob, &stale).unwrap();
    let naive = scan.naive_of_files();
    assert_all_correct("W2 after the late write", &w2, &naive);
    w2.flush();
    drop(w2);
    // A later reader too: the stale blob was dropped and replaced.
    let w3 = scan.builder().build().unwrap();
    assert_all_correct("a later process", &w3, &naive);
    assert_ne!(std::fs::read(&blob).unwrap(), stale);
}

/// Item 2: a viewer of stack A and an export of stack B (same slice size, same names) share
/// one cache folder; B takes the folder over. A must keep serving A's pixels.
#[test]
fn two_stacks_sharing_one_cache_folder_never_see_each_others_pixels() {
    let a = phantom_scan(2);
    let b = phantom_scan(3);
    // A reads from disk on every request (no memory tier to hide behind).
    let viewer = Pyramid::builder(&a.stack)
        .with_cache_dir(&a.cache)
        .with_edge(EDGE)
        .with_memory_budget(0)
        .build()
        .unwrap();
    let naive_a = a.naive_of_files();
    assert_all_correct("A before", &viewer, &naive_a);
    viewer.flush();

    let export = Pyramid::builder(&b.stack)
        .with_cache_dir(&a.cache)
        .with_edge(EDGE)
        .build()
        .unwrap();
    export
        .export_ctharvester(b.tmp.path().join("out"), None)
        .unwrap();
    export.flush();
    drop(export);

    assert_all_correct("A after B took the folder over", &viewer, &naive_a);
    // And B, reopened, is served its own pixels from the folder.
    let b_again = Pyramid::builder(&b.stack)
        .with_cache_dir(&a.cache)
        .with_edge(EDGE)
        .build()
        .unwrap();
    assert_all_correct("B reopened", &b_again, &b.naive_of_files());
}

/// Item 5: a blob replaced by a link to `/dev/zero` must not be read without end.
#[test]
fn a_blob_that_links_to_dev_zero_is_a_miss_not_a_flood() {
    let scan = phantom_scan(4);
    let pyr = scan.builder().build().unwrap();
    pyr.volume(1).unwrap();
    pyr.flush();
    drop(pyr);
    let blob = lodcache::store::blob_path(&scan.cache, lodcache::SliceKey::new(1, 2));
    std::fs::remove_file(&blob).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &blob).unwrap();
    let naive = scan.naive_of_files();
    let builder = scan.builder().with_memory_budget(0);
    within(Duration::from_secs(30), "/dev/zero blob", move || {
        let pyr = builder.build().unwrap();
        assert_all_correct("/dev/zero blob", &pyr, &naive);
    });
    // Reading it would have taken gigabytes (every test of this file together needs tens of
    // megabytes): the peak resident size of the process says whether it was read.
    let peak = peak_rss();
    assert!(peak < 1 << 30, "the process grew to {} MiB", peak >> 20);
}

/// Item 5: a blob replaced by a FIFO must not hang the request (or the storing threads).
#[test]
fn a_blob_that_is_a_fifo_is_a_miss_not_a_hang() {
    let scan = phantom_scan(5);
    let pyr = scan.builder().build().unwrap();
    pyr.volume(2).unwrap();
    pyr.flush();
    drop(pyr);
    let blob = lodcache::store::blob_path(&scan.cache, lodcache::SliceKey::new(2, 1));
    std::fs::remove_file(&blob).unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(&blob)
        .status()
        .unwrap();
    assert!(status.success());
    let naive = scan.naive_of_files();
    let builder = scan.builder().with_memory_budget(0);
    within(Duration::from_secs(30), "FIFO blob", move || {
        let pyr = builder.build().unwrap();
        assert_all_correct("FIFO blob", &pyr, &naive);
        pyr.flush();
    });
}

/// Item 5: a level folder replaced by a link to a folder outside the cache: nothing is
/// written there and nothing there is deleted, even files named like blobs and temporary
/// files of dead writers.
#[test]
fn a_level_folder_that_links_outside_is_never_written_or_emptied() {
    let scan = phantom_scan(6);
    let outside = scan.tmp.path().join("precious");
    std::fs::create_dir(&outside).unwrap();
    for (name, bytes) in [
        ("000000.blob", &b"my own file named like a blob"[..]),
        (
            "000001.blob.tmp-99999999-0-0",
            b"named like a dead writer's temp",
        ),
        ("notes.txt", b"notes"),
    ] {
        std::fs::write(outside.join(name), bytes).unwrap();
    }
    let before = tree(&outside);
    let pyr = scan.builder().build().unwrap();
    pyr.slice(1, 0).unwrap();
    pyr.flush();
    drop(pyr);
    let level1 = scan.cache.join("1");
    std::fs::remove_dir_all(&level1).unwrap();
    std::os::unix::fs::symlink(&outside, &level1).unwrap();

    let pyr = scan.builder().build().unwrap();
    assert_all_correct("level folder linked outside", &pyr, &scan.naive_of_files());
    pyr.flush();
    drop(pyr);
    assert_eq!(tree(&outside), before, "files outside the cache changed");
    assert_eq!(
        std::fs::read(outside.join("000000.blob")).unwrap(),
        b"my own file named like a blob"
    );
    // The link itself was replaced by a real folder of the cache.
    assert!(
        std::fs::symlink_metadata(&level1).unwrap().is_dir(),
        "the level folder is still a link"
    );
}

/// Item 5: a `demand.lock` link must not create a file where it points.
#[test]
fn a_lock_file_that_links_outside_creates_nothing_there() {
    let scan = phantom_scan(7);
    let pyr = scan.builder().build().unwrap();
    pyr.slice(1, 0).unwrap();
    pyr.flush();
    drop(pyr);
    let target = scan.tmp.path().join("created-by-a-link");
    let lock = scan.cache.join("demand.lock");
    let _ = std::fs::remove_file(&lock);
    std::os::unix::fs::symlink(&target, &lock).unwrap();
    let pyr = scan.builder().build().unwrap();
    pyr.slice(2, 0).unwrap();
    pyr.flush();
    drop(pyr);
    assert!(
        !target.exists(),
        "the lock link created {}",
        target.display()
    );
}

/// Item 5: `--cache` pointed at the stack folder itself: refused (memory-only caching, with a
/// warning), and no user file is removed, not even one named like a stale temporary file.
#[test]
fn a_cache_folder_that_is_the_scan_folder_is_refused_and_nothing_is_deleted() {
    let scan = phantom_scan(8);
    let user_files = [
        "report.txt.tmp-99999999-0-0",
        "notes.tmp-1-2-3",
        "manifest.json",
    ];
    for name in user_files {
        std::fs::write(scan.stack.join(name), b"user data").unwrap();
    }
    let before = tree(&scan.stack);
    let pyr = Pyramid::builder(&scan.stack)
        .with_cache_dir(&scan.stack)
        .with_edge(EDGE)
        .build()
        .unwrap();
    let naive = scan.naive_of_files();
    assert_all_correct("cache = scan folder", &pyr, &naive);
    pyr.flush();
    assert!(
        pyr.warnings().iter().any(|w| w.contains("scan")),
        "no warning: {:?}",
        pyr.warnings()
    );
    drop(pyr);
    assert_eq!(tree(&scan.stack), before, "the scan folder changed");
}

/// A folder of the user's (no tag, other files) is not taken over as a cache.
#[test]
fn a_cache_folder_holding_other_files_is_not_used() {
    let scan = phantom_scan(9);
    let folder = scan.tmp.path().join("documents");
    std::fs::create_dir_all(folder.join("1")).unwrap();
    std::fs::write(folder.join("1").join("thesis.txt"), b"chapter 1").unwrap();
    std::fs::write(folder.join("todo.txt"), b"x").unwrap();
    let before = tree(&folder);
    let pyr = Pyramid::builder(&scan.stack)
        .with_cache_dir(&folder)
        .with_edge(EDGE)
        .build()
        .unwrap();
    assert_all_correct("untagged folder", &pyr, &scan.naive_of_files());
    pyr.flush();
    drop(pyr);
    assert_eq!(tree(&folder), before);
}
