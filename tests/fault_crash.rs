//! Crash during writes: a process warming a cache folder is killed with SIGKILL at two dozen
//! points across its run (after a given number of blobs exist, after seeded random delays that
//! also land in its start-up, and the moment a temporary file shows up, i.e. mid-write). After
//! each kill a pyramid opened on the folder sweeps every temporary file (planted ones of dead
//! writers included), finds exactly the blob files the killed process left, none of them
//! damaged, and every slice of every level equals a naive pyramid; the folder accumulates from
//! kill to kill, and after the last one a warm-up completes it and a reopened pyramid serves
//! every slice from disk.
//!
//! The child is this test binary run again on one `#[ignore]`d test guarded by an environment
//! variable, as in `tests/warmup.rs`. Its warm-up goes in short steps (runs with a one-byte
//! budget), so that the kills land where they are meant to whatever the machine's speed and
//! load: kill `k` of `n` lands by the `k + 1`-th of `n` even steps over the run, and the child
//! stops six slices short of the end (in the middle of the last level), so that no child
//! completes the folder before the last kill.

mod common;

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{KillOnDrop, Rng, Scan, blob_files, child_args, temp_files, this_test};
use lodcache::store::{DiskMode, blob_path};
use lodcache::{Phantom, Pyramid, PyramidBuilder, Served, WarmupOptions, WarmupOutcome};

/// Makes [`crash_child_warms_up_until_killed`] run: `<stack folder>|<cache folder>`.
const CHILD_ENV: &str = "LODCACHE_FAULT_CRASH_CHILD";
const CHILD_TEST: &str = "crash_child_warms_up_until_killed";

/// Levels (edge 20) of a 320 x 320 x 192 stack: 160^2 x 96, 80^2 x 48, 40^2 x 24, 20^2 x 12.
/// Deep enough that the last level has room for a kill in its middle (see [`GUARD`]).
const SIZE: (u32, u32, u32) = (320, 320, 192);
const EDGE: u32 = 20;
const ALL: usize = 96 + 48 + 24 + 12;
/// Kill points, and the seed of their delays.
const KILLS: usize = 24;
const SEED: u64 = 0x00C0_FFEE_5EED;
/// A child starts no warm-up run once this many blobs exist (a run makes six slices at most,
/// see [`crash_child_warms_up_until_killed`]), and is killed there whatever its kill point.
const GUARD: usize = ALL - 6;

fn builder(stack: &Path, cache: &Path) -> PyramidBuilder {
    Pyramid::builder(stack)
        .with_cache_dir(cache)
        .with_edge(EDGE)
}

/// Run by [`a_process_killed_while_writing_leaves_only_whole_correct_blobs`] as a child
/// process: warms the cache up, finest level first, one thread, until killed. The warm-up goes
/// in steps so that the kills land where they are meant to on any machine: runs with a byte
/// budget of one byte, each of which stops once its first blob is stored (so after one slice,
/// and after six at most: the storing queue holds four and the storing thread a fifth), five
/// milliseconds apart. Once `GUARD` blobs exist it starts no more runs and waits to be killed
/// (two minutes at most), so that no child completes the folder before the last kill.
#[test]
#[ignore = "a child process of a_process_killed_while_writing_leaves_only_whole_correct_blobs"]
fn crash_child_warms_up_until_killed() {
    let Some(args) = child_args(CHILD_ENV) else {
        return;
    };
    let [stack, cache] = &args[..] else {
        panic!("{CHILD_ENV}: {args:?}");
    };
    let pyr = builder(Path::new(stack), Path::new(cache)).build().unwrap();
    let levels: Vec<u32> = (1..pyr.levels().len() as u32).collect();
    println!("started");
    let mut runs = 0;
    while blob_count(Path::new(cache)) < GUARD {
        let outcome = pyr
            .warm_up(
                WarmupOptions::default()
                    .with_levels(levels.clone())
                    .with_threads(1)
                    .with_byte_budget(1),
            )
            .wait();
        match outcome {
            WarmupOutcome::BudgetReached(_) => runs += 1,
            other => {
                println!("finished: {other:?}");
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("braked after {runs} runs: waiting to be killed");
    // Not forever: no orphan outlives a test run that was itself killed.
    std::thread::sleep(Duration::from_secs(120));
    std::process::exit(3);
}

fn blob_count(cache: &Path) -> usize {
    blob_files(cache).len()
}

/// Whether a blob is being written in `cache` (a blob's temporary file exists).
fn writing(cache: &Path) -> bool {
    (1..=4).any(|level| {
        std::fs::read_dir(cache.join(level.to_string())).is_ok_and(|files| {
            files
                .flatten()
                .any(|f| f.file_name().to_string_lossy().contains(".blob.tmp-"))
        })
    })
}

/// Where a child is killed.
#[derive(Debug, Clone, Copy)]
enum Point {
    /// Once this many blob files exist.
    Blobs(usize),
    /// This long after it was started.
    Delay(Duration),
    /// As soon as a temporary file is seen (a write in progress).
    MidWrite,
}

impl Point {
    fn describe(self) -> String {
        match self {
            Point::Blobs(n) => format!("at {n} blobs"),
            Point::Delay(d) => format!("after {:.1} ms", d.as_secs_f64() * 1e3),
            Point::MidWrite => "mid-write".into(),
        }
    }
}

/// Where each level's blobs start in a warm-up going finest level first (level 1 first).
const LEVEL_STARTS: [usize; 4] = [0, 96, 96 + 48, 96 + 48 + 24];

/// The level a warm-up going finest first is making when `blobs` blobs exist.
fn level_at(blobs: usize) -> u32 {
    LEVEL_STARTS.iter().filter(|&&s| blobs >= s).count() as u32
}

/// What one kill did.
struct Kill {
    check: Duration,
    point: Point,
    cap: usize,
    after: Duration,
    before: usize,
    at_kill: usize,
    temps_at_kill: usize,
    found: u64,
}

/// The fixture: the stack, opened with [`EDGE`].
fn crash_scan() -> Scan {
    let scan = Scan::new(Phantom::new(SIZE.0, SIZE.1, SIZE.2).with_seed(1984), EDGE);
    assert_eq!(scan.keys().len(), ALL);
    scan
}

impl Scan {
    /// Runs a child on `cache` and kills it at `point`, or once `cap` blobs exist if that comes
    /// first; fails if the child ends on its own.
    fn kill_child(&self, what: &str, cache: &Path, point: Point, cap: usize, log: &Path) -> Kill {
        let before = blob_count(cache);
        let log_file = File::create(log).unwrap();
        let started = Instant::now();
        let mut child = KillOnDrop(
            this_test(CHILD_TEST)
                .arg("--test-threads=1")
                .env(
                    CHILD_ENV,
                    format!("{}|{}", self.stack.display(), cache.display()),
                )
                .stdout(Stdio::from(log_file.try_clone().unwrap()))
                .stderr(Stdio::from(log_file))
                .spawn()
                .unwrap(),
        );
        loop {
            let blobs = blob_count(cache);
            let due = blobs >= cap
                || match point {
                    Point::Blobs(n) => blobs >= n,
                    Point::Delay(d) => started.elapsed() >= d,
                    // The cap ends the wait if no write is caught in the act.
                    Point::MidWrite => writing(cache),
                };
            if due {
                break;
            }
            if let Some(status) = child.0.try_wait().unwrap() {
                panic!(
                    "{what}: the child ended ({status}) with {blobs} blobs before its kill \
                     point; its output:\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "{what}: timed out with {blobs} blobs"
            );
            match point {
                Point::MidWrite => std::thread::yield_now(),
                _ => std::thread::sleep(Duration::from_micros(500)),
            }
        }
        let after = started.elapsed();
        // SIGKILL: no destructor, no flush, no statistics saved.
        child.0.kill().unwrap();
        let status = child.0.wait().unwrap();
        assert!(
            !status.success(),
            "{what}: the child was not killed: {status}"
        );
        let log_text = std::fs::read_to_string(log).unwrap_or_default();
        assert!(
            !log_text.contains("finished"),
            "{what}: the child finished before it was killed:\n{log_text}"
        );
        let at_kill = blob_count(cache);
        let temps_at_kill = temp_files(cache).len();

        // What writes cut short by a kill leave, whether or not this one left any: temporary
        // files of the killed process, and of a pid that cannot exist.
        let pid = child.0.id();
        for (folder, name) in [
            ("1", format!("000000.blob.tmp-{pid}-0-0")),
            ("3", format!("000002.blob.tmp-{pid}-7-1f")),
            ("2", "000001.blob.tmp-99999999-0-0".to_string()),
            ("", format!("manifest.json.tmp-{pid}-1-0")),
            ("", format!("demand.json.tmp-{pid}-2-0")),
        ] {
            let dir = cache.join(folder);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(name), b"torn").unwrap();
        }

        // Reopened: temporary files swept, exactly the blobs left found, none damaged or
        // invalidated.
        let pyr = self.open_at(cache);
        let left = temp_files(cache);
        assert!(
            left.is_empty(),
            "{what}: temporary files left after opening: {left:?}"
        );
        let s = pyr.stats().disk;
        assert_eq!(s.mode, DiskMode::ReadWrite, "{what}: {s:?}");
        assert_eq!(s.blobs as usize, at_kill, "{what}: blobs found on reopen");
        assert_eq!(
            blob_count(cache),
            at_kill,
            "{what}: blob files after reopen"
        );
        assert_eq!((s.invalidated, s.corrupt), (0, 0), "{what}: {s:?}");
        assert!(pyr.warnings().is_empty(), "{what}: {:?}", pyr.warnings());
        let t = Instant::now();
        self.check_all(what, cache, &pyr);
        let check = t.elapsed();
        drop(pyr);

        Kill {
            check,
            point,
            cap,
            after,
            before,
            at_kill,
            temps_at_kill,
            found: s.blobs,
        }
    }

    /// Checks every slice of every level through `pyr`, just opened on `cache`: stored ones come
    /// from disk undamaged, the others are made, and all equal the naive pyramid. Writes are
    /// made to fail (the fault-injection switch of the disk tier), so that the folder stays as
    /// the killed process left it for the next child.
    fn check_all(&self, what: &str, cache: &Path, pyr: &Pyramid) {
        pyr.disk().inject_write_errors(true);
        let keys = self.keys();
        let stored: Vec<bool> = keys
            .iter()
            .map(|k| blob_path(cache, *k).is_file())
            .collect();
        for (key, stored) in keys.iter().zip(&stored) {
            let (slice, served) = pyr.slice_served(key.level, key.z).unwrap();
            let want = if *stored {
                Served::Disk
            } else {
                Served::Generated
            };
            assert_eq!(served, want, "{what}: {key}");
            self.check(what, *key, &slice);
        }
        pyr.flush();
        let s = pyr.stats();
        let missing = stored.iter().filter(|s| !**s).count() as u64;
        assert_eq!(s.generated, missing, "{what}: {s:?}");
        assert_eq!(s.disk.write_errors, missing, "{what}: {s:?}");
        assert_eq!(s.disk.corrupt, 0, "{what}: {s:?}");
        assert_eq!(s.disk.hits, ALL as u64 - missing, "{what}: {s:?}");
        assert_eq!(
            blob_count(cache) as u64,
            ALL as u64 - missing,
            "{what}: the check changed the folder"
        );
    }
}

/// Kill points: after a number of new blobs, after a seeded random delay (some within start-up),
/// the moment a write is seen in progress; in turns.
fn schedule() -> Vec<Point> {
    let mut rng = Rng(SEED);
    (0..KILLS)
        .map(|k| match k % 4 {
            // Half of them within the child's start-up (opening the folder: sweeping,
            // checking and writing the manifest), half while it makes slices.
            0 if rng.below(2) == 0 => Point::Delay(Duration::from_micros(rng.below(5_000) as u64)),
            0 => Point::Delay(Duration::from_millis(5 + rng.below(35) as u64)),
            2 => Point::MidWrite,
            // The number is set when the kill comes (see below).
            _ => Point::Blobs(0),
        })
        .collect()
}

#[test]
fn a_process_killed_while_writing_leaves_only_whole_correct_blobs() {
    let started = Instant::now();
    let scan = crash_scan();
    let cache = scan.tmp.path().join("cache");
    let setup = started.elapsed();

    let mut kills: Vec<Kill> = Vec::new();
    let mut checking = Duration::ZERO;
    for (k, point) in schedule().into_iter().enumerate() {
        // Kill `k` lands by the `k + 1`-th of `KILLS` even steps to `GUARD` blobs (a blob kill
        // point exactly there), so that the kills spread over the whole run whatever the delays
        // and mid-write kills before it did.
        let now = blob_count(&cache);
        let cap = if now >= GUARD {
            now
        } else {
            ((k + 1) * GUARD).div_ceil(KILLS).max(now + 1)
        };
        let point = match point {
            Point::Blobs(_) => Point::Blobs(cap),
            other => other,
        };
        let what = format!("kill {k} ({}, cap {cap})", point.describe());
        let log = scan.tmp.path().join(format!("child-{k}.log"));
        let kill = scan.kill_child(&what, &cache, point, cap, &log);
        if let Point::Blobs(n) = point {
            assert!(kill.at_kill >= n, "{what}: {} blobs", kill.at_kill);
        }
        if let Some(last) = kills.last() {
            assert!(
                kill.found >= last.found,
                "{what}: blobs went from {} to {}",
                last.found,
                kill.found
            );
        }
        checking += kill.check;
        kills.push(kill);
    }

    println!(
        "\n{:>4} {:<14} {:>4} {:>9} {:>7} {:>8} {:>6} {:>12} {:>8}",
        "kill",
        "point",
        "cap",
        "killed at",
        "before",
        "at kill",
        "level",
        "temp at kill",
        "reopened"
    );
    for (k, kill) in kills.iter().enumerate() {
        println!(
            "{k:>4} {:<14} {:>4} {:>6} ms {:>7} {:>8} {:>6} {:>12} {:>8}",
            kill.point.describe(),
            kill.cap,
            kill.after.as_millis(),
            kill.before,
            kill.at_kill,
            level_at(kill.at_kill),
            kill.temps_at_kill,
            kill.found
        );
    }
    let caught = kills.iter().filter(|k| k.temps_at_kill > 0).count();
    println!(
        "{} kills; {caught} left a temporary file of a write in progress; blobs found per reopen: \
         {:?}",
        kills.len(),
        kills.iter().map(|k| k.found).collect::<Vec<_>>()
    );
    assert!(kills.len() >= 20);
    // Most kills interrupted a child that was making slices (some delays land in start-up).
    let interrupting = kills.iter().filter(|k| k.at_kill > k.before).count();
    assert!(interrupting >= 10, "{interrupting} kills after progress");
    // The kill points cover the whole run: some in each level.
    for level in 1..=4 {
        assert!(
            kills.iter().any(|k| level_at(k.at_kill) == level),
            "no kill while level {level} was being made"
        );
    }
    // The children made progress: the folder accumulated across kills.
    let last = kills.last().unwrap().found;
    assert!(
        level_at(last as usize) == 4 && last < ALL as u64,
        "{last} blobs after the last kill"
    );

    // A warm-up completes the folder from there.
    let pyr = scan.open_at(&cache);
    let outcome = pyr.warm_up(WarmupOptions::default()).wait();
    let WarmupOutcome::Completed(report) = &outcome else {
        panic!("final warm-up: {outcome:?}");
    };
    let p = report.progress;
    assert_eq!(p.done, p.total, "{p:?}");
    assert_eq!(p.total, ALL as u64 - last, "{p:?}");
    assert_eq!(p.already_stored, last, "{p:?}");
    assert_eq!(pyr.stats().generated, p.total);
    drop(pyr);

    // Every slice of every level from disk, as it should be.
    let pyr = scan.open_at(&cache);
    assert_eq!(pyr.stats().disk.blobs, ALL as u64);
    for key in &scan.keys() {
        let (slice, served) = pyr.slice_served(key.level, key.z).unwrap();
        assert_eq!(served, Served::Disk, "after the final warm-up: {key}");
        scan.check("after the final warm-up", *key, &slice);
    }
    let s = pyr.stats();
    assert_eq!(
        (s.generated, s.disk.corrupt, s.source_slices),
        (0, 0, 0),
        "{s:?}"
    );
    println!(
        "final warm-up made {} slices ({} already stored); total time {:?} (setup {setup:?}, \
         checking every slice after each kill {checking:?})",
        p.done,
        p.already_stored,
        started.elapsed()
    );
}
