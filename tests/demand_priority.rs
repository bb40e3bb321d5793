//! The memory tier keeps the most requested level under pressure: with room for about one
//! level and no disk tier (a miss means regenerating the slice), a level requested ten times
//! more often than its neighbour stays resident (hit rate of at least 90% once the request
//! counters have warmed up), while the neighbour's larger slices come and go. The same trace
//! with demand priority off (plain least-recently-used) is measured and printed for
//! comparison.

mod common;

use std::path::Path;

use common::{Rng, Scan};
use lodcache::store::blob_path;
use lodcache::{Phantom, Pyramid, SliceKey, WarmupOptions, WarmupOutcome};

/// The hot level (requested ten times more often).
const A: u32 = 2;
/// The cold level: the one below, whose slices are four times larger.
const B: u32 = 1;
/// Requests before counting, so that the request statistics rank the levels and every slice
/// of A has been made once.
const WARM_REQUESTS: usize = 330;
/// Requests counted.
const COUNTED_REQUESTS: usize = 1_100;

/// How A's slices are picked.
#[derive(Debug, Clone, Copy)]
enum Pattern {
    /// Uniformly at random.
    Random,
    /// Sweeping through the level, 0 to the last slice and again.
    Cyclic,
}

/// The request trace: ten requests of A, then one of B (B's slices at random).
fn trace(pattern: Pattern, a_depth: u32, b_depth: u32, n: usize) -> Vec<SliceKey> {
    // Seeded, so every run replays the same trace.
    let mut rng = Rng(0x5EED);
    let mut a_next = 0;
    (0..n)
        .map(|i| {
            if i % 11 == 10 {
                SliceKey::new(B, rng.below_u32(b_depth))
            } else {
                let z = match pattern {
                    Pattern::Random => rng.below_u32(a_depth),
                    Pattern::Cyclic => {
                        a_next = (a_next + 1) % a_depth;
                        a_next
                    }
                };
                SliceKey::new(A, z)
            }
        })
        .collect()
}

/// Bytes of the blob files of `level` in cache folder `cache`, and the largest one.
fn level_blob_bytes(cache: &Path, level: u32, depth: u32) -> (u64, u64) {
    let sizes: Vec<u64> = (0..depth)
        .map(|z| {
            let path = blob_path(cache, SliceKey::new(level, z));
            std::fs::metadata(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
                .len()
        })
        .collect();
    (sizes.iter().sum(), sizes.iter().copied().max().unwrap_or(0))
}

/// The scan, its level depths and a memory budget holding level A plus a little more than one
/// slice of B.
struct Fixture {
    scan: Scan,
    a_depth: u32,
    b_depth: u32,
    budget: u64,
    a_bytes: u64,
}

impl Fixture {
    fn new() -> Fixture {
        // Levels (edge 16): 1 = 128 x 128 x 32, 2 = 64 x 64 x 16, 3 = 32 x 32 x 8, 4 = 16^2 x 4.
        let scan = Scan::new(Phantom::new(256, 256, 64), 16);
        // Measure the blobs once, through a disk cache of its own.
        let measure = scan.path("measure");
        let pyr = scan.open_at(&measure);
        let (a_depth, b_depth) = (
            pyr.levels()[A as usize].depth,
            pyr.levels()[B as usize].depth,
        );
        let outcome = pyr
            .warm_up(WarmupOptions::default().with_levels(vec![A, B]))
            .wait();
        assert!(
            matches!(outcome, WarmupOutcome::Completed(_)),
            "{outcome:?}"
        );
        drop(pyr);
        let (a_bytes, _) = level_blob_bytes(&measure, A, a_depth);
        let (b_bytes, b_max) = level_blob_bytes(&measure, B, b_depth);
        // Room for every slice of A, one slice of B and a little slack.
        let budget = a_bytes + b_max + a_bytes / 32;
        eprintln!(
            "level {A}: {a_depth} slices, {a_bytes} B; level {B}: {b_depth} slices, {b_bytes} B \
             (largest {b_max} B); memory budget {budget} B"
        );
        assert!(
            b_bytes > 2 * budget,
            "level {B} must not fit in the budget: the test needs pressure"
        );
        Fixture {
            scan,
            a_depth,
            b_depth,
            budget,
            a_bytes,
        }
    }

    /// A memory-only pyramid with the budget (no disk tier: a miss means regenerating).
    fn open(&self, priority: bool) -> Pyramid {
        self.scan
            .builder()
            .with_disk_cache(false)
            .with_memory_budget(self.budget)
            .with_demand_priority(priority)
            .build()
            .unwrap()
    }
}

/// What a trace did to level A.
#[derive(Debug)]
struct Run {
    /// Counted requests of A served without generating anything.
    a_hits: u64,
    a_requests: u64,
    /// Counted requests of B served without generating anything.
    b_hits: u64,
    b_requests: u64,
    /// Slices of A and of B held in the memory tier at the end.
    a_resident: u32,
    b_resident: u32,
}

impl Run {
    fn a_rate(&self) -> f64 {
        self.a_hits as f64 / self.a_requests as f64
    }

    fn b_rate(&self) -> f64 {
        self.b_hits as f64 / self.b_requests as f64
    }
}

/// Replays `keys` on `pyr`; a request is a hit when it generated nothing (the pyramid has no
/// disk tier, so anything not in memory, or waiting to be stored, is generated).
fn replay(f: &Fixture, pyr: &Pyramid, keys: &[SliceKey]) -> Run {
    let mut run = Run {
        a_hits: 0,
        a_requests: 0,
        b_hits: 0,
        b_requests: 0,
        a_resident: 0,
        b_resident: 0,
    };
    for (i, &key) in keys.iter().enumerate() {
        let before = pyr.stats().generated;
        let slice = pyr.slice(key.level, key.z).unwrap();
        assert_eq!(slice.width(), pyr.levels()[key.level as usize].width);
        let hit = pyr.stats().generated == before;
        if i < WARM_REQUESTS {
            continue;
        }
        if key.level == A {
            run.a_requests += 1;
            run.a_hits += u64::from(hit);
        } else {
            run.b_requests += 1;
            run.b_hits += u64::from(hit);
        }
    }
    pyr.flush();
    let memory = pyr.memory();
    run.a_resident = (0..f.a_depth)
        .filter(|&z| memory.contains(SliceKey::new(A, z)))
        .count() as u32;
    run.b_resident = (0..f.b_depth)
        .filter(|&z| memory.contains(SliceKey::new(B, z)))
        .count() as u32;
    let stats = pyr.stats().memory;
    assert!(
        stats.bytes <= f.budget,
        "memory tier over its budget: {stats:?}"
    );
    run
}

#[test]
fn the_level_requested_ten_times_more_stays_resident_under_pressure() {
    let f = Fixture::new();
    for pattern in [Pattern::Random, Pattern::Cyclic] {
        let keys = trace(
            pattern,
            f.a_depth,
            f.b_depth,
            WARM_REQUESTS + COUNTED_REQUESTS,
        );
        let with = replay(&f, &f.open(true), &keys);
        let lru = replay(&f, &f.open(false), &keys);
        eprintln!(
            "{pattern:?} trace, level {A} ({} B) requested 10x more than level {B}, budget {} B:\n  \
             demand priority: level {A} hit rate {:.1}% ({}/{}), level {B} {:.1}%, resident \
             {}/{} of level {A} and {} of level {B}\n  plain LRU:       level {A} hit rate \
             {:.1}% ({}/{}), level {B} {:.1}%, resident {}/{} of level {A} and {} of level {B}",
            f.a_bytes,
            f.budget,
            100.0 * with.a_rate(),
            with.a_hits,
            with.a_requests,
            100.0 * with.b_rate(),
            with.a_resident,
            f.a_depth,
            with.b_resident,
            100.0 * lru.a_rate(),
            lru.a_hits,
            lru.a_requests,
            100.0 * lru.b_rate(),
            lru.a_resident,
            f.a_depth,
            lru.b_resident,
        );
        assert!(
            with.a_rate() >= 0.90,
            "{pattern:?}: level {A} hit rate {:.1}% with demand priority, want >= 90%: {with:?}",
            100.0 * with.a_rate()
        );
        // Plain LRU loses here every time: each request of B evicts several slices of A, and
        // each miss of A brings two more slices of B (its sources) in.
        assert!(
            lru.a_rate() < with.a_rate(),
            "{pattern:?}: plain LRU did as well as demand priority: {lru:?}"
        );
    }
}

#[test]
fn with_priority_the_memory_tier_holds_the_hot_level_after_the_counters_warm_up() {
    let f = Fixture::new();
    let pyr = f.open(true);
    let keys = trace(Pattern::Random, f.a_depth, f.b_depth, WARM_REQUESTS + 550);
    let run = replay(&f, &pyr, &keys);
    let ranking = pyr.demand();
    assert_eq!(ranking.levels[0].level, A, "{ranking:?}");
    assert!(
        ranking.levels[0].share > 0.85,
        "level {A} share {:?}",
        ranking.levels[0]
    );
    // Every slice of A is held; B's larger slices take what is left: at most the slack of the
    // budget, about one slice.
    assert_eq!(
        run.a_resident, f.a_depth,
        "slices of level {A} evicted: {run:?}"
    );
    assert!(run.b_resident <= 2, "level {B} crowds the tier: {run:?}");
    // A burst of B now (a user moving to the finer level for a moment) does not push A out:
    // B's blobs evict each other first.
    for z in 0..f.b_depth {
        pyr.slice(B, z).unwrap();
    }
    pyr.flush();
    let a_left = (0..f.a_depth)
        .filter(|&z| pyr.memory().contains(SliceKey::new(A, z)))
        .count() as u32;
    assert_eq!(
        a_left, f.a_depth,
        "a burst of {} requests of level {B} evicted level {A} slices",
        f.b_depth
    );
}
