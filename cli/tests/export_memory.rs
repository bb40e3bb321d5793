//! `lodcache export --no-cache` touches a bounded amount of fresh memory: its minor page
//! faults and peak RSS, read from the child's own resource usage (`wait4`), do not grow with
//! the number of slices.

#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::{arg, bin};
use lodcache::Phantom;

/// Minor faults and peak RSS (KiB) of `lodcache export SCAN OUT --no-cache`.
fn export_usage(scan: &Path, out: &Path) -> (i64, i64) {
    export_usage_with(scan, out, &[])
}

/// Minor faults and peak RSS (KiB) of `lodcache export SCAN OUT --no-cache EXTRA...`.
#[expect(
    clippy::zombie_processes,
    reason = "the child is reaped by wait4, which also gives its resource usage"
)]
fn export_usage_with(scan: &Path, out: &Path, extra: &[&str]) -> (i64, i64) {
    let child = Command::new(bin())
        .args(["export", arg(scan), arg(out), "--no-cache"])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value, and both pointers outlive the call; the child
    // is ours and not yet reaped.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4 failed");
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "export failed: {status:#x}"
    );
    (usage.ru_minflt, usage.ru_maxrss)
}

/// Medians of three exports of `scan` (to `out0`, `out1`, `out2`): minor faults and peak RSS.
fn median_usage(scan: &Path, out: &Path, extra: &[&str]) -> (i64, i64) {
    let mut faults = Vec::new();
    let mut rss = Vec::new();
    for i in 0..3 {
        let mut name = out.as_os_str().to_owned();
        name.push(i.to_string());
        let (f, r) = export_usage_with(scan, Path::new(&name), extra);
        faults.push(f);
        rss.push(r);
    }
    faults.sort_unstable();
    rss.sort_unstable();
    (faults[1], rss[1])
}

#[test]
fn export_without_cache_touches_the_same_fresh_memory_for_4x_the_slices() {
    let tmp = tempfile::tempdir().unwrap();
    let (shallow, deep) = (tmp.path().join("shallow"), tmp.path().join("deep"));
    // 1024^2 u16: levels 512 and 256, so a slice kept per level-1 slice would be 512 KiB each.
    Phantom::new(1024, 1024, 24).write(&shallow).unwrap();
    Phantom::new(1024, 1024, 96).write(&deep).unwrap();
    // Warm up the page cache and the binary once; the medians of three runs are compared.
    export_usage(&shallow, &tmp.path().join("warm"));
    let runs = |scan: &Path, name: &str| median_usage(scan, &tmp.path().join(name), &[]);
    let (faults_24, rss_24) = runs(&shallow, "s");
    let (faults_96, rss_96) = runs(&deep, "d");
    let figures = format!(
        "24 slices: {faults_24} minor faults, {rss_24} KiB peak; \
         96 slices: {faults_96} minor faults, {rss_96} KiB peak"
    );
    eprintln!("{figures}");
    // 72 more source slices: keeping each level-1 slice (36 x 512 KiB) would be 4700 more
    // faults and 18 MiB more; a bounded pool of buffers adds nothing but noise (a few hundred
    // pages of allocator and file-system bookkeeping).
    assert!(faults_96 <= faults_24 + 600, "{figures}");
    assert!(rss_96 <= rss_24 + 2 * 1024, "{figures}");
}

#[test]
fn ome_zarr_export_in_deep_chunks_touches_the_same_fresh_memory_for_4x_the_slices() {
    let tmp = tempfile::tempdir().unwrap();
    let (shallow, deep) = (tmp.path().join("shallow"), tmp.path().join("deep"));
    // 512^2 u16, levels 256, 128 and 64 (edge 100); chunks 8 deep, so that every level's row
    // of chunks (8 of its slices) is complete well within the shallow stack and the build is
    // in its steady state: level 0 by bands, the levels above held a row at a time.
    Phantom::new(512, 512, 128).write(&shallow).unwrap();
    Phantom::new(512, 512, 512).write(&deep).unwrap();
    let args = [
        "--format",
        "ome-zarr",
        "--zarr-version",
        "3",
        "--chunks",
        "8,64,64",
        "--edge",
        "100",
        "--compression",
        "zstd",
    ];
    export_usage_with(&shallow, &tmp.path().join("warm.ome.zarr"), &args);
    let runs = |scan: &Path, name: &str| median_usage(scan, &tmp.path().join(name), &args);
    let (faults_128, rss_128) = runs(&shallow, "s");
    let (faults_512, rss_512) = runs(&deep, "d");
    let figures = format!(
        "128 slices: {faults_128} minor faults, {rss_128} KiB peak; \
         512 slices: {faults_512} minor faults, {rss_512} KiB peak"
    );
    eprintln!("{figures}");
    // 384 more source slices. What must grow is the coarsest level, kept whole for the display
    // window: 48 more 64^2 u16 slices, 96 pages; the rest is noise. (Level-1 buffers handed
    // back as empty placeholders, filled with fresh memory again, cost 3,200 more faults and
    // 12 MiB more peak here.)
    assert!(faults_512 <= faults_128 + 96 + 600, "{figures}");
    assert!(rss_512 <= rss_128 + 2 * 1024, "{figures}");
}
