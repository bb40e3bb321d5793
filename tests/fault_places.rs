//! Places that fight back: two processes on one cache folder at once, a stack folder that
//! cannot be written, a cache folder that cannot be written, and a full or failing disk.
//!
//! - Two processes: a child process reads random slices of every level (checking each against
//!   a naive pyramid it computes itself) while this process runs a full warm-up on the same
//!   stack and cache folder. Both finish, neither reads a damaged blob, and afterwards
//!   `demand.json` holds both processes' requests added up.
//! - A stack folder that cannot be written: [`lodcache::store::default_cache_dir`] and the
//!   pyramid's default cache folder fall back to `$XDG_CACHE_HOME/lodcache/...` (set for a child
//!   process only). Shown with a regular file where `<stack>/.lodcache` would go (works for
//!   root too), and with a read-only stack folder where permission bits stop the user: this
//!   user, or else a child process run as `nobody` when this one is root.
//! - A cache folder that cannot be written: with a matching manifest it is read and never
//!   written (a read-only folder as above, skipped with a message where no user is stopped by
//!   the bits); `/proc/self` and a path below a regular file refuse files even to root and
//!   leave memory-only caching. Either way the pyramid opens, warns and serves right slices.
//! - A full disk: a budget of a few KB holds with every slice right, and injected write errors
//!   are counted and warned about while slices come from memory, until writes work again.
//!
//! Child processes are this test binary run again on one `#[ignore]`d test, told what to do by
//! an environment variable (as in `tests/warmup.rs`).

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use common::{
    Child, Scan, Volume as Naive, assert_naive, child_args, read_tiff_dir, this_test, upper_keys,
};
use lodcache::store::{DiskMode, blob_path, default_cache_dir};
use lodcache::{Phantom, Pyramid, Served, SliceKey, WarmupOptions, WarmupOutcome};

/// Tells a child process what to do: `<task>|<arguments separated by |>`.
const CHILD_ENV: &str = "LODCACHE_FAULT_PLACES_CHILD";
/// The user and group a root test process runs children as, so that permission bits apply.
const NOBODY: u32 = 65534;
/// The longest a child may take.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

/// A phantom stack `w` x `h` x `d` opened with `edge` (cache folders: [`Scan::path`]).
fn scan(w: u32, h: u32, d: u32, edge: u32) -> Scan {
    Scan::new(
        Phantom::new(w, h, d).with_seed(u64::from(w * 7 + h + d)),
        edge,
    )
}

/// The naive pyramid of the stack's files (read with the tiff crate, not lodcache).
fn reference(stack: &Path, edge: u32) -> Vec<Naive> {
    read_tiff_dir(stack).0.pyramid(edge as usize)
}

/// Requests every slice of every level (sources first) and checks each; returns where the
/// slices of levels >= 1 came from.
fn request_all(what: &str, pyr: &Pyramid, naive: &[Naive]) -> Vec<(SliceKey, Served)> {
    assert_eq!(pyr.levels().len(), naive.len(), "{what}: levels");
    for z in 0..pyr.levels()[0].depth {
        assert_naive(what, naive, 0, z, &pyr.slice(0, z).unwrap());
    }
    common::request_all(what, pyr, naive)
}

/// Every file below `dir` with its size and modification time, by relative path.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (u64, SystemTime)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let meta = std::fs::symlink_metadata(&path).unwrap();
            if meta.is_dir() {
                walk(base, &path, out);
            }
            let rel = path.strip_prefix(base).unwrap().to_path_buf();
            out.insert(rel, (meta.len(), meta.modified().unwrap()));
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The blob files below a cache folder and their total size.
fn blob_files(cache: &Path) -> (Vec<PathBuf>, u64) {
    let files: Vec<PathBuf> = snapshot(cache)
        .into_keys()
        .filter(|p| p.extension().is_some_and(|e| e == "blob"))
        .collect();
    let bytes = files
        .iter()
        .map(|p| std::fs::metadata(cache.join(p)).unwrap().len())
        .sum();
    (files, bytes)
}

/// Whether this process can create a file in `dir` (tried, then undone).
fn can_create_in(dir: &Path) -> bool {
    let probe = dir.join(format!("probe-{}", std::process::id()));
    let made = std::fs::File::create(&probe).is_ok();
    if made {
        std::fs::remove_file(&probe).unwrap();
    }
    made
}

/// Sets the permission bits of folders and restores 0755 when dropped.
struct Bits(Vec<PathBuf>);

impl Bits {
    fn set(folders: &[PathBuf], mode: u32) -> Bits {
        for f in folders {
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        Bits(folders.to_vec())
    }
}

impl Drop for Bits {
    fn drop(&mut self) {
        for f in &self.0 {
            let _ = std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o755));
        }
    }
}

/// Whether permission bits stop this process: a folder set to 0555 refuses a new file.
fn bits_stop_me(scratch: &Path) -> bool {
    let dir = scratch.join("bits-probe");
    std::fs::create_dir_all(&dir).unwrap();
    let denied = {
        let _bits = Bits::set(std::slice::from_ref(&dir), 0o555);
        !can_create_in(&dir)
    };
    std::fs::remove_dir_all(&dir).unwrap();
    denied
}

/// Who runs a child process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum User {
    /// This process's user.
    Me,
    /// `nobody`: for a root test process, so that permission bits apply to the child.
    Nobody,
}

/// This test binary running one `#[ignore]`d test as a child process with `task`, as `user`,
/// its output collected line by line.
fn spawn_child(
    test: &str,
    task: &str,
    env: &[(&str, &Path)],
    user: User,
) -> std::io::Result<Child> {
    let mut command = this_test(test);
    command.env(CHILD_ENV, task);
    for (k, v) in env {
        command.env(k, v);
    }
    if user == User::Nobody {
        command.uid(NOBODY).gid(NOBODY);
    }
    Child::spawn(command, &format!("child {test} ({user:?})"))
}

/// The arguments of this child's task, or `None` (with a message) outside the parent test.
fn child_task(task: &str) -> Option<Vec<String>> {
    let mut args = child_args(CHILD_ENV)?;
    assert_eq!(args.first().map(String::as_str), Some(task), "{args:?}");
    args.remove(0);
    Some(args)
}

/// The value after `name=` in a child's line `line`.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

// ---------------------------------------------------------------------------------------------
// Two processes, one cache folder.

/// A thread that keeps requests for source slices in flight while told to hold, so that a
/// warm-up of the same pyramid waits (foreground first).
struct Holder {
    hold: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<u64>,
}

impl Holder {
    /// Starts holding; returns once the first request is in flight.
    fn start(pyr: &Pyramid) -> Holder {
        let hold = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let busy = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (pyr, hold, stop, busy) = (pyr.clone(), hold.clone(), stop.clone(), busy.clone());
            move || {
                let depth = pyr.levels()[0].depth;
                let mut made = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if hold.load(Ordering::Relaxed) {
                        busy.store(true, Ordering::Relaxed);
                        pyr.slice(0, (made % u64::from(depth)) as u32).unwrap();
                        made += 1;
                    } else {
                        std::thread::sleep(Duration::from_micros(100));
                    }
                }
                made
            }
        });
        while !busy.load(Ordering::Relaxed) {
            std::thread::yield_now();
        }
        Holder { hold, stop, thread }
    }

    fn hold(&self, on: bool) {
        self.hold.store(on, Ordering::Relaxed);
    }

    /// Stops; returns how many requests it made.
    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

const READER_TEST: &str = "child_reads_random_slices_beside_a_warm_up";
/// Requests the reader makes at least (more while the warm-up goes on).
const READER_MIN: u64 = 300;

/// Run by [`two_processes_share_a_cache_folder_while_one_warms_up_and_one_reads`]: reads random
/// slices of every level until the warm-up in the parent is done (`<marker>.done` appears) and
/// at least [`READER_MIN`] were read, checking each against the naive pyramid, then prints its
/// request counts (and how many fell between `<marker>.started` and `<marker>.done`) and
/// statistics.
#[test]
#[ignore = "a child process of two_processes_share_a_cache_folder_while_one_warms_up_and_one_reads"]
fn child_reads_random_slices_beside_a_warm_up() {
    let Some(args) = child_task("reader") else {
        return;
    };
    let [stack, cache, marker, edge] = &args[..] else {
        panic!("{args:?}");
    };
    let edge: u32 = edge.parse().unwrap();
    let pyr = Pyramid::builder(stack)
        .with_cache_dir(cache)
        .with_edge(edge)
        .build()
        .unwrap();
    let naive = reference(Path::new(stack), edge);
    assert_eq!(pyr.levels().len(), naive.len());
    println!("READY");
    let mut counts = vec![0u64; naive.len()];
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    let mut next = |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let (started, done) = (
        Path::new(marker).with_extension("started"),
        Path::new(marker).with_extension("done"),
    );
    let mut requests = 0u64;
    let mut during = 0u64;
    let start = Instant::now();
    loop {
        let ended = done.exists();
        if ended && requests >= READER_MIN {
            break;
        }
        if !ended && started.exists() {
            during += 1;
            println!("DURING {during}");
        }
        assert!(start.elapsed() < CHILD_LIMIT, "the warm-up never ended");
        let level = next(naive.len() as u64) as u32;
        let z = next(naive[level as usize].slices.len() as u64) as u32;
        let slice = pyr.slice(level, z).unwrap();
        assert_naive("reader", &naive, level, z, &slice);
        counts[level as usize] += 1;
        requests += 1;
    }
    pyr.flush();
    let s = pyr.stats();
    assert_eq!(s.disk.corrupt, 0, "{s:?}");
    assert!(
        pyr.warnings().is_empty(),
        "reader warnings: {:?}",
        pyr.warnings()
    );
    let counts: Vec<String> = counts.iter().map(u64::to_string).collect();
    println!(
        "READER counts={} requests={requests} during={during} corrupt={} disk_hits={} \
         generated={} writes={}",
        counts.join(","),
        s.disk.corrupt,
        s.disk.hits,
        s.generated,
        s.disk.writes
    );
    drop(pyr);
    println!("SAVED");
}

#[test]
fn two_processes_share_a_cache_folder_while_one_warms_up_and_one_reads() {
    // Levels (edge 8): 128^2 x 32, 64^2 x 16, 32^2 x 8, 16^2 x 4, 8^2 x 2: 62 blobs.
    let scan = scan(256, 256, 64, 8);
    let cache = scan.path("cache");
    // `warm-up.started` and `warm-up.done` mark the warm-up's run for the reader.
    let marker = scan.path("warm-up");
    let task = format!(
        "reader|{}|{}|{}|{}",
        scan.stack.display(),
        cache.display(),
        marker.display(),
        scan.edge
    );
    let mut reader = spawn_child(READER_TEST, &task, &[], User::Me).unwrap();
    reader.wait_for_line("READY");

    let pyr = scan.open_at(&cache);
    let all = upper_keys(pyr.levels()).len() as u64;
    assert_eq!(all, 62);
    std::fs::write(marker.with_extension("started"), b"").unwrap();
    let started = Instant::now();
    // In steps, so that both processes make progress while the run lasts whatever the
    // machine's load: a thread here keeps requests in flight (the run waits: foreground
    // first) until the reader has made a few more requests, then lets the run go on alone
    // until it has made a few more slices, and so on.
    let holder = Holder::start(&pyr);
    let handle = pyr.warm_up(WarmupOptions::default().with_threads(2));
    while !handle.is_finished() {
        let target = reader.count_lines("DURING") + 10;
        while !handle.is_finished() && reader.count_lines("DURING") < target {
            assert!(
                started.elapsed() < CHILD_LIMIT,
                "the reader makes no progress: {:#?}",
                reader.lines()
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        holder.hold(false);
        let made = handle.progress().done;
        while !handle.is_finished() && handle.progress().done < made + 4 {
            assert!(started.elapsed() < CHILD_LIMIT, "{:?}", handle.progress());
            std::thread::sleep(Duration::from_micros(200));
        }
        holder.hold(true);
    }
    let held = holder.stop();
    let outcome = handle.wait();
    let took = started.elapsed();
    std::fs::write(marker.with_extension("done"), b"").unwrap();
    assert!(
        matches!(outcome, WarmupOutcome::Completed(_)),
        "{outcome:?}"
    );
    let p = outcome.report().progress;
    assert_eq!(p.done + p.already_stored, all, "{p:?}");
    // This process's own requests, counted beside the reader's.
    let naive = reference(&scan.stack, scan.edge);
    let mine: [(u32, u32, u64); 2] = [(4, 1, 5), (2, 7, 3)];
    for (level, z, times) in mine {
        for _ in 0..times {
            assert_naive("warmer", &naive, level, z, &pyr.slice(level, z).unwrap());
        }
    }
    pyr.flush();
    let s = pyr.stats();
    assert_eq!(s.disk.corrupt, 0, "{s:?}");
    assert!(pyr.warnings().is_empty(), "{:?}", pyr.warnings());
    drop(pyr);

    let lines = reader.succeed();
    let report = lines
        .iter()
        .find(|l| l.starts_with("READER"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert!(lines.iter().any(|l| l == "SAVED"), "{lines:#?}");
    assert_eq!(field(report, "corrupt"), "0", "{report}");
    let counts: Vec<u64> = field(report, "counts")
        .split(',')
        .map(|c| c.parse().unwrap())
        .collect();
    let during: u64 = field(report, "during").parse().unwrap();
    eprintln!(
        "{report}; the warm-up made {} of {all} slices in {took:?}, held back by {held} \
         requests here",
        p.done
    );
    assert!(
        during > 0,
        "the reader made no request during the warm-up ({took:?})"
    );

    // Both processes' requests are in the statistics, added up.
    let pyr = scan.open_at(&cache);
    let mut expect = counts.clone();
    for (level, _, times) in mine {
        expect[level as usize] += times;
    }
    // The source slices requested to hold the run back.
    expect[0] += held;
    let ranking = pyr.demand();
    for (level, want) in expect.iter().enumerate() {
        let got = ranking
            .levels
            .iter()
            .find(|d| d.level == level as u32)
            .map_or(0.0, |d| d.score);
        let want = *want as f64;
        assert!(
            (got - want).abs() <= 1e-3 * want.max(1.0),
            "level {level}: score {got}, expected {want} (reader {counts:?} + warmer {mine:?})"
        );
    }
    // The cache is whole and right: every slice from disk, nothing made again.
    for (key, served) in request_all("after both", &pyr, &naive) {
        assert_eq!(served, Served::Disk, "{key}");
    }
    let s = pyr.stats();
    assert_eq!(
        (s.generated, s.disk.corrupt, s.disk.hits),
        (0, 0, all),
        "{s:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// A stack folder that cannot be written.

const RO_STACK_TEST: &str = "child_opens_a_read_only_stack";

/// Run by [`a_read_only_stack_folder_caches_in_the_per_user_folder`] with `XDG_CACHE_HOME`
/// set: opens the stack with the default cache folder and checks it is the per-user one.
#[test]
#[ignore = "a child process of a_read_only_stack_folder_caches_in_the_per_user_folder"]
fn child_opens_a_read_only_stack() {
    let Some(args) = child_task("ro-stack") else {
        return;
    };
    let [stack, xdg, needs_bits] = &args[..] else {
        panic!("{args:?}");
    };
    let (stack, xdg) = (PathBuf::from(stack), PathBuf::from(xdg));
    assert_eq!(std::env::var_os("XDG_CACHE_HOME"), Some(xdg.clone().into()));
    if needs_bits == "bits" && can_create_in(&stack) {
        println!("SKIPPED: permission bits do not stop this child either");
        return;
    }
    let dir = default_cache_dir(&stack);
    assert!(
        dir.starts_with(xdg.join("lodcache")),
        "default cache folder {} is not under {}",
        dir.display(),
        xdg.display()
    );
    // The default level edge (500): the stack is 1040 pixels wide, so there are levels.
    let naive = reference(&stack, 500);
    let pyr = Pyramid::open(&stack).unwrap();
    assert_eq!(pyr.disk().dir(), dir);
    assert_eq!(pyr.disk().mode(), DiskMode::ReadWrite);
    assert!(pyr.warnings().is_empty(), "{:?}", pyr.warnings());
    let all = upper_keys(pyr.levels()).len();
    assert!(all > 0);
    let made = request_all("first open", &pyr, &naive);
    assert!(
        made.iter().all(|(_, s)| *s == Served::Generated),
        "{made:?}"
    );
    drop(pyr);
    assert!(dir.join("manifest.json").is_file());
    assert!(dir.join("demand.json").is_file());
    let (blobs, _) = blob_files(&dir);
    assert_eq!(blobs.len(), all, "{blobs:?}");
    // Reopened: everything from that folder.
    let pyr = Pyramid::open(&stack).unwrap();
    let served = request_all("reopened", &pyr, &naive);
    assert!(served.iter().all(|(_, s)| *s == Served::Disk), "{served:?}");
    assert_eq!(pyr.stats().generated, 0);
    println!("CHILD-OK blobs={all} dir={}", dir.display());
}

/// Runs the read-only-stack child with `XDG_CACHE_HOME=xdg` as `user`; returns the cache
/// folder it used, or `None` when it could not check (printed).
fn run_ro_stack_child(scan: &Scan, xdg: &Path, user: User, needs_bits: bool) -> Option<PathBuf> {
    std::fs::create_dir_all(xdg).unwrap();
    let task = format!(
        "ro-stack|{}|{}|{}",
        scan.stack.display(),
        xdg.display(),
        if needs_bits { "bits" } else { "any" }
    );
    let child = match spawn_child(RO_STACK_TEST, &task, &[("XDG_CACHE_HOME", xdg)], user) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("SKIPPED: cannot start a child process as {user:?}: {e}");
            return None;
        }
    };
    let lines = child.succeed();
    if let Some(skip) = lines.iter().find(|l| l.starts_with("SKIPPED")) {
        eprintln!("{skip}");
        return None;
    }
    let ok = lines
        .iter()
        .find(|l| l.starts_with("CHILD-OK"))
        .unwrap_or_else(|| panic!("{lines:#?}"));
    // The folder last: the rest of the line, whatever it holds.
    let dir = PathBuf::from(ok.split_once(" dir=").unwrap().1);
    assert!(dir.starts_with(xdg.join("lodcache")), "{ok}");
    let (blobs, _) = blob_files(&dir);
    assert_eq!(blobs.len().to_string(), field(ok, "blobs"), "{ok}");
    Some(dir)
}

#[test]
fn a_read_only_stack_folder_caches_in_the_per_user_folder() {
    // Levels (default edge 500): 520 x 12 x 3, 260 x 6 x 2.
    let scan = scan(1040, 24, 6, 500);
    let listing = snapshot(&scan.stack);

    // The in-stack cache folder's place is taken by a regular file: refused even to root.
    let blocker = scan.stack.join(".lodcache");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let dir = run_ro_stack_child(&scan, &scan.path("xdg-blocked"), User::Me, false)
        .expect("the child runs as this user");
    assert_eq!(std::fs::read(&blocker).unwrap(), b"not a folder");
    std::fs::remove_file(&blocker).unwrap();
    assert_eq!(
        snapshot(&scan.stack),
        listing,
        "the stack folder was written"
    );

    // A stack folder whose permission bits refuse writes: to this user, or to `nobody` when
    // this process is root (root ignores the bits).
    let user = if bits_stop_me(scan.tmp.path()) {
        User::Me
    } else {
        User::Nobody
    };
    let xdg = scan.path("xdg-bits");
    std::fs::create_dir_all(&xdg).unwrap();
    let _open = Bits::set(&[scan.tmp.path().to_path_buf()], 0o755);
    let _xdg = Bits::set(std::slice::from_ref(&xdg), 0o777);
    let bits = Bits::set(std::slice::from_ref(&scan.stack), 0o555);
    let dir_bits = run_ro_stack_child(&scan, &xdg, user, true);
    drop(bits);
    eprintln!(
        "read-only stack folder ({user:?}): {}",
        dir_bits
            .as_ref()
            .map_or("skipped".into(), |d| format!("cached in {}", d.display()))
    );
    assert_eq!(
        snapshot(&scan.stack),
        listing,
        "the stack folder was written"
    );
    if let Some(d) = dir_bits {
        // The same stack, the same per-user folder name under another root.
        assert_eq!(
            d.strip_prefix(&xdg).unwrap(),
            dir.strip_prefix(scan.path("xdg-blocked")).unwrap()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A cache folder that cannot be written.

const RO_CACHE_TEST: &str = "child_reads_a_read_only_cache";

/// Levels 1 and 2 stored in the cache folder, levels 3 and 4 not.
const RO_STORED_LEVELS: [u32; 2] = [1, 2];

/// Uses a read-only cache folder. With a matching manifest (`stale` false) the stored blobs
/// are read and the rest is generated and kept in memory; with a stale one (a source slice
/// changed since) nothing is read from it; either way nothing is written and every slice is
/// right. Returns a summary, or `None` when this process can write the folder after all.
fn read_only_cache_case(stack: &Path, cache: &Path, edge: u32, stale: bool) -> Option<String> {
    if can_create_in(cache) {
        return None;
    }
    let what = if stale {
        "stale read-only cache"
    } else {
        "read-only cache"
    };
    let pyr = Pyramid::builder(stack)
        .with_cache_dir(cache)
        .with_edge(edge)
        .build()
        .unwrap();
    let (mode, says) = if stale {
        (DiskMode::Disabled, "does not match the stack")
    } else {
        (DiskMode::ReadOnly, "read-only")
    };
    assert_eq!(pyr.disk().mode(), mode, "{what}");
    let warnings = pyr.warnings();
    assert!(
        warnings
            .iter()
            .any(|w| w.contains(says) && w.contains(&cache.display().to_string())),
        "{what}: {warnings:?}"
    );
    let naive = reference(stack, edge);
    let served = request_all(what, &pyr, &naive);
    let mut stored = 0;
    for (key, from) in &served {
        let expect = if RO_STORED_LEVELS.contains(&key.level) && !stale {
            stored += 1;
            Served::Disk
        } else {
            Served::Generated
        };
        assert_eq!(*from, expect, "{what}: {key}");
    }
    // The new ones stay in memory.
    for (key, from) in request_all(what, &pyr, &naive) {
        assert_eq!(from, Served::Memory, "{what}: {key}");
    }
    pyr.flush();
    let s = pyr.stats();
    assert_eq!(s.disk.hits, stored, "{what}: {s:?}");
    assert_eq!(s.generated, served.len() as u64 - stored, "{what}: {s:?}");
    assert_eq!(
        (
            s.disk.writes,
            s.disk.write_errors,
            s.disk.corrupt,
            s.disk.invalidated
        ),
        (0, 0, 0, 0),
        "{what}: {s:?}"
    );
    // Requests are counted (in memory only).
    assert!(!pyr.demand().levels.is_empty());
    drop(pyr);
    Some(format!("{what}: stored={stored} generated={}", s.generated))
}

/// Run by [`a_read_only_cache_folder_is_read_and_never_written`] as a user that the folder's
/// permission bits stop.
#[test]
#[ignore = "a child process of a_read_only_cache_folder_is_read_and_never_written"]
fn child_reads_a_read_only_cache() {
    let Some(args) = child_task("ro-cache") else {
        return;
    };
    let [stack, cache, edge, stale] = &args[..] else {
        panic!("{args:?}");
    };
    let (stack, cache) = (Path::new(stack), Path::new(cache));
    match read_only_cache_case(stack, cache, edge.parse().unwrap(), stale == "stale") {
        Some(summary) => println!("CHILD-OK {summary}"),
        None => println!("SKIPPED: permission bits do not stop this child either"),
    }
}

/// Runs [`read_only_cache_case`] here when permission bits stop this process, else in a child
/// run as `nobody`; `None` when neither is stopped by them (printed).
fn run_read_only_cache_case(scan: &Scan, cache: &Path, stale: bool) -> Option<String> {
    if bits_stop_me(scan.tmp.path()) {
        return read_only_cache_case(&scan.stack, cache, scan.edge, stale)
            .map(|s| format!("{s} (this process)"));
    }
    let task = format!(
        "ro-cache|{}|{}|{}|{}",
        scan.stack.display(),
        cache.display(),
        scan.edge,
        if stale { "stale" } else { "matching" }
    );
    let child = match spawn_child(RO_CACHE_TEST, &task, &[], User::Nobody) {
        Ok(child) => child,
        Err(e) => {
            eprintln!("cannot start a child process as nobody: {e}");
            return None;
        }
    };
    let lines = child.succeed();
    if let Some(ok) = lines.iter().find(|l| l.starts_with("CHILD-OK")) {
        return Some(format!("{ok} (a child run as nobody)"));
    }
    assert!(lines.iter().any(|l| l.starts_with("SKIPPED")), "{lines:#?}");
    None
}

#[test]
fn a_read_only_cache_folder_is_read_and_never_written() {
    // Levels (edge 4): 32 x 24 x 10, 16 x 12 x 5, 8 x 6 x 3, 4 x 3 x 2.
    let scan = scan(64, 48, 20, 4);
    let cache = scan.path("cache");
    let pyr = scan.open_at(&cache);
    for key in upper_keys(pyr.levels()) {
        if RO_STORED_LEVELS.contains(&key.level) {
            pyr.slice(key.level, key.z).unwrap();
        }
    }
    drop(pyr);
    assert!(cache.join("demand.json").is_file());
    let before = snapshot(&cache);
    let folders: Vec<PathBuf> = [cache.clone(), cache.join("1"), cache.join("2")].into();
    let _open = Bits::set(&[scan.tmp.path().to_path_buf()], 0o755);
    for stale in [false, true] {
        if stale {
            // Source slice 7 changes: blobs (1, 3), (2, 1), ... no longer match it.
            let other = scan.path("other");
            Phantom::new(64, 48, 20)
                .with_seed(77)
                .write(&other)
                .unwrap();
            let target = scan.stack.join(Phantom::file_name(7));
            let old = std::fs::metadata(&target).unwrap().modified().unwrap();
            std::fs::copy(other.join(Phantom::file_name(7)), &target).unwrap();
            let f = std::fs::File::options().write(true).open(&target).unwrap();
            f.set_modified(old + Duration::from_secs(5)).unwrap();
        }
        let bits = Bits::set(&folders, 0o555);
        let outcome = run_read_only_cache_case(&scan, &cache, stale);
        drop(bits);
        match outcome {
            Some(summary) => eprintln!("{summary}"),
            None => eprintln!(
                "SKIPPED: permission bits stop no user here; a folder that refuses writes even \
                 to root is covered by a_cache_folder_refused_even_to_root_leaves_memory_only_caching"
            ),
        }
        assert_eq!(
            snapshot(&cache),
            before,
            "the read-only cache folder was written (stale manifest: {stale})"
        );
    }
}

#[test]
fn a_cache_folder_refused_even_to_root_leaves_memory_only_caching() {
    let scan = scan(64, 48, 20, 4);
    let naive = reference(&scan.stack, scan.edge);
    let file = scan.path("plain-file");
    std::fs::write(&file, b"a file, not a folder").unwrap();
    let stack_before = snapshot(&scan.stack);
    let places = [
        // Exists, but refuses new files even to root: read-only, and with no matching manifest.
        ("/proc/self", PathBuf::from("/proc/self")),
        // Cannot be created.
        ("below a regular file", file.join("cache")),
    ];
    for (what, cache) in places {
        if what == "/proc/self" && !Path::new("/proc/self/status").is_file() {
            eprintln!("SKIPPED: no /proc here");
            continue;
        }
        let pyr = scan.open_at(&cache);
        assert_eq!(pyr.disk().mode(), DiskMode::Disabled, "{what}");
        let warnings = pyr.warnings();
        assert!(
            warnings.iter().any(|w| w.contains("memory only")),
            "{what}: {warnings:?}"
        );
        let served = request_all(what, &pyr, &naive);
        assert!(
            served.iter().all(|(_, s)| *s == Served::Generated),
            "{what}: {served:?}"
        );
        for (key, from) in request_all(what, &pyr, &naive) {
            assert_eq!(from, Served::Memory, "{what}: {key}");
        }
        pyr.flush();
        let s = pyr.stats();
        assert_eq!(s.generated, served.len() as u64, "{what}: {s:?}");
        assert_eq!(
            (
                s.disk.writes,
                s.disk.write_errors,
                s.disk.hits,
                s.disk.blobs
            ),
            (0, 0, 0, 0),
            "{what}: {s:?}"
        );
        drop(pyr);
        assert_eq!(
            snapshot(&scan.stack),
            stack_before,
            "{what}: the stack was written"
        );
        assert_eq!(std::fs::read(&file).unwrap(), b"a file, not a folder");
    }
}

// ---------------------------------------------------------------------------------------------
// A full or failing disk.

#[test]
fn a_disk_budget_of_a_few_kilobytes_holds_and_every_slice_stays_right() {
    // Levels (edge 4): 32 x 24 x 10, 16 x 12 x 5, 8 x 6 x 3, 4 x 3 x 2; a level-1 blob is
    // about 1.5 KB.
    let scan = scan(64, 48, 20, 4);
    let naive = reference(&scan.stack, scan.edge);
    let cache = scan.path("cache");
    let budget = 3 * 1024;
    let mut hits = 0;
    for round in 0..3 {
        let what = format!("round {round}");
        // A small memory tier too, so that requests go to the disk tier again and again.
        let pyr = scan
            .builder_at(&cache)
            .with_disk_budget(budget)
            .with_memory_budget(2 * 1024)
            .build()
            .unwrap();
        let (_, on_disk) = blob_files(&cache);
        assert!(on_disk <= budget, "{what}: {on_disk} bytes on disk at open");
        request_all(&what, &pyr, &naive);
        // And backwards, coarse to fine.
        for key in upper_keys(pyr.levels()).into_iter().rev() {
            assert_naive(
                &what,
                &naive,
                key.level,
                key.z,
                &pyr.slice(key.level, key.z).unwrap(),
            );
        }
        pyr.flush();
        let s = pyr.stats();
        assert!(s.disk.bytes <= budget, "{what}: {s:?}");
        assert!(s.disk.blobs > 0 && s.disk.writes > 0, "{what}: {s:?}");
        assert!(s.disk.evictions > 0, "{what}: nothing evicted: {s:?}");
        assert_eq!(
            (s.disk.corrupt, s.disk.write_errors),
            (0, 0),
            "{what}: {s:?}"
        );
        let (files, on_disk) = blob_files(&cache);
        assert!(
            on_disk <= budget,
            "{what}: {on_disk} bytes in {} blob files > budget {budget}",
            files.len()
        );
        hits += s.disk.hits;
        drop(pyr);
    }
    assert!(hits > 0, "the disk tier served nothing");
    assert!(
        !snapshot(&cache)
            .keys()
            .any(|p| p.to_string_lossy().contains(".tmp-")),
        "temporary files left"
    );
}

#[test]
fn failing_disk_writes_are_counted_and_warned_while_memory_serves_until_writes_work_again() {
    // Levels (edge 4): 32 x 24 x 10, 16 x 12 x 5, 8 x 6 x 3, 4 x 3 x 2.
    let scan = scan(64, 48, 20, 4);
    let naive = reference(&scan.stack, scan.edge);
    let cache = scan.path("cache");
    let pyr = scan.open_at(&cache);
    let lower: Vec<SliceKey> = upper_keys(pyr.levels())
        .into_iter()
        .filter(|k| k.level <= 2)
        .collect();
    let upper: Vec<SliceKey> = upper_keys(pyr.levels())
        .into_iter()
        .filter(|k| k.level > 2)
        .collect();
    assert_eq!((lower.len(), upper.len()), (15, 5));

    pyr.disk().inject_write_errors(true);
    for key in &lower {
        let (slice, served) = pyr.slice_served(key.level, key.z).unwrap();
        assert_eq!(served, Served::Generated, "{key}");
        assert_naive("failing disk", &naive, key.level, key.z, &slice);
    }
    pyr.flush();
    let s = pyr.stats();
    assert_eq!(s.disk.write_errors, lower.len() as u64, "{s:?}");
    assert_eq!((s.disk.writes, s.disk.blobs), (0, 0), "{s:?}");
    assert!(blob_files(&cache).0.is_empty(), "{:?}", blob_files(&cache));
    let warnings = pyr.warnings();
    assert!(
        warnings.iter().any(|w| w.contains("injected write error")),
        "{warnings:?}"
    );
    // Served from memory meanwhile.
    for key in &lower {
        let (slice, served) = pyr.slice_served(key.level, key.z).unwrap();
        assert_eq!(served, Served::Memory, "{key}");
        assert_naive("failing disk, again", &naive, key.level, key.z, &slice);
    }
    assert_eq!(pyr.stats().generated, lower.len() as u64);

    // The disk works again: new slices are written.
    pyr.disk().inject_write_errors(false);
    for key in &upper {
        let (slice, served) = pyr.slice_served(key.level, key.z).unwrap();
        assert_eq!(served, Served::Generated, "{key}");
        assert_naive("disk back", &naive, key.level, key.z, &slice);
    }
    pyr.flush();
    let s = pyr.stats();
    assert_eq!(s.disk.writes, upper.len() as u64, "{s:?}");
    assert_eq!(s.disk.write_errors, lower.len() as u64, "{s:?}");
    for key in &upper {
        assert!(blob_path(&cache, *key).is_file(), "{key} not written");
    }
    for key in &lower {
        assert!(!blob_path(&cache, *key).exists(), "{key} written");
    }
    drop(pyr);

    // Reopened: what was written is read, the rest is made again; all of it right.
    let pyr = scan.open_at(&cache);
    for (key, served) in request_all("reopened", &pyr, &naive) {
        let expect = if key.level > 2 {
            Served::Disk
        } else {
            Served::Generated
        };
        assert_eq!(served, expect, "{key}");
    }
    pyr.flush();
    let s = pyr.stats();
    assert_eq!(
        (s.disk.writes, s.disk.write_errors),
        (lower.len() as u64, 0),
        "{s:?}"
    );
    assert!(pyr.warnings().is_empty(), "{:?}", pyr.warnings());
}
