//! A replayed viewer session: the memory tier with demand priority against plain LRU.
//!
//! ```text
//! cargo bench --bench demand
//! ```
//! A 1024 x 1024 x 64 u16 phantom (edge 100: levels 1..=4) and one seeded trace of slice
//! requests, 80% to a hot level (2, 256 x 256 x 16) and 20% to a colder, larger one (1,
//! 512 x 512 x 32), slices uniform within the level. Both pyramids cache in memory only
//! (`with_disk_cache(false)`), so a miss regenerates from the sources, under a budget a little
//! above the hot level's blobs (measured first). A request is a hit when it generated nothing.
//! Target: priority keeps the hot level's hit rate >= 95% and cuts the mean latency >= 2x.
//!
//! Not a criterion bench: a replay is one measurement of a whole sequence (each request's
//! outcome depends on the ones before it), not a routine to iterate; its figures are hit rates
//! and a latency distribution. Without `--bench` (e.g. `cargo test --benches`) it replays a
//! short trace only.

use std::path::Path;
use std::time::{Duration, Instant};

use lodcache::{Phantom, Pyramid, WarmupOptions, WarmupOutcome};

const SIZE: u32 = 1024;
const DEPTH: u32 = 64;
const EDGE: u32 = 100;
const HOT: u32 = 2;
const COLD: u32 = 1;
/// Share of requests to the hot level, in percent.
const HOT_PERCENT: u64 = 80;
const SEED: u64 = 0x2545_f491_4f6c_dd1d;
/// The budget over the hot level's blobs.
const SLACK: f64 = 1.10;

/// xorshift64: the trace is the same on every machine.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

fn trace(requests: usize, hot_depth: u32, cold_depth: u32) -> Vec<(u32, u32)> {
    let mut rng = XorShift(SEED);
    (0..requests)
        .map(|_| {
            let (level, depth) = if rng.next() % 100 < HOT_PERCENT {
                (HOT, hot_depth)
            } else {
                (COLD, cold_depth)
            };
            (level, (rng.next() % u64::from(depth)) as u32)
        })
        .collect()
}

fn pyramid(stack: &Path, budget: u64, priority: bool) -> Pyramid {
    Pyramid::builder(stack)
        .with_edge(EDGE)
        .with_disk_cache(false)
        .with_memory_budget(budget)
        .with_demand_priority(priority)
        .build()
        .expect("phantom pyramid opens")
}

fn warm(pyr: &Pyramid, level: u32) {
    match pyr
        .warm_up(WarmupOptions::default().with_levels([level]))
        .wait()
    {
        WarmupOutcome::Completed(_) => {}
        other => panic!("warming level {level}: {other:?}"),
    }
}

/// What one replay measured.
struct Replay {
    hot: (u64, u64),
    cold: (u64, u64),
    times: Vec<Duration>,
    evictions: u64,
}

impl Replay {
    fn rate((hits, all): (u64, u64)) -> f64 {
        hits as f64 / all.max(1) as f64
    }

    fn overall(&self) -> f64 {
        Self::rate((self.hot.0 + self.cold.0, self.hot.1 + self.cold.1))
    }

    fn mean(&self) -> Duration {
        self.times.iter().sum::<Duration>() / self.times.len().max(1) as u32
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut t = self.times.clone();
        t.sort_unstable();
        t[((t.len() - 1) as f64 * p).round() as usize]
    }
}

fn replay(pyr: &Pyramid, trace: &[(u32, u32)]) -> Replay {
    let mut r = Replay {
        hot: (0, 0),
        cold: (0, 0),
        times: Vec::with_capacity(trace.len()),
        evictions: 0,
    };
    for &(level, z) in trace {
        let before = pyr.stats().generated;
        let t = Instant::now();
        std::hint::black_box(pyr.slice(level, z).expect("phantom slice"));
        r.times.push(t.elapsed());
        let hit = u64::from(pyr.stats().generated == before);
        let tally = if level == HOT {
            &mut r.hot
        } else {
            &mut r.cold
        };
        *tally = (tally.0 + hit, tally.1 + 1);
    }
    pyr.flush();
    r.evictions = pyr.stats().memory.evictions;
    r
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let requests = if full { 4000 } else { 400 };
    let tmp = tempfile::tempdir().expect("temporary folder");
    let stack = tmp.path().join("stack");
    Phantom::new(SIZE, SIZE, DEPTH)
        .write(&stack)
        .expect("phantom stack written");

    // The hot level's blobs: store the level below first, then the hot level alone.
    let probe = pyramid(&stack, u64::MAX, false);
    warm(&probe, COLD);
    let below = probe.stats().stored_bytes;
    warm(&probe, HOT);
    let hot_bytes = probe.stats().stored_bytes - below;
    let (hot, cold) = (probe.levels()[HOT as usize], probe.levels()[COLD as usize]);
    drop(probe);
    let budget = (hot_bytes as f64 * SLACK) as u64;

    let trace = trace(requests, hot.depth, cold.depth);
    let hot_share = trace.iter().filter(|r| r.0 == HOT).count() as f64 / trace.len() as f64;
    println!();
    if !full {
        println!("short trace (no --bench): a smoke run, not the measurement");
    }
    println!(
        "{SIZE} x {SIZE} x {DEPTH} u16 phantom, edge {EDGE}; {requests} requests, {:.0}% to \
         level {HOT} ({} x {} x {}, blobs {:.2} MiB), the rest to level {COLD} ({} x {} x {}, \
         blobs {:.2} MiB); memory budget {:.2} MiB ({SLACK:.2}x the hot level), no disk tier",
        hot_share * 100.0,
        hot.width,
        hot.height,
        hot.depth,
        hot_bytes as f64 / f64::from(1 << 20),
        cold.width,
        cold.height,
        cold.depth,
        below as f64 / f64::from(1 << 20),
        budget as f64 / f64::from(1 << 20),
    );

    let lru = replay(&pyramid(&stack, budget, false), &trace);
    let prio = replay(&pyramid(&stack, budget, true), &trace);
    println!(
        "{:<16} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9}",
        "policy", "hot hit", "cold hit", "all hit", "mean ms", "p50 ms", "p99 ms", "evictions"
    );
    for (name, r) in [("plain LRU", &lru), ("demand priority", &prio)] {
        println!(
            "{name:<16} {:>7.1}% {:>7.1}% {:>7.1}% {:>9.3} {:>8.3} {:>8.3} {:>9}",
            Replay::rate(r.hot) * 100.0,
            Replay::rate(r.cold) * 100.0,
            r.overall() * 100.0,
            ms(r.mean()),
            ms(r.percentile(0.5)),
            ms(r.percentile(0.99)),
            r.evictions
        );
    }
    let hot_rate = Replay::rate(prio.hot);
    let speedup = lru.mean().as_secs_f64() / prio.mean().as_secs_f64();
    println!(
        "priority: hot-level hit rate {:.1}% (target >= 95%: {}); mean latency {speedup:.2}x \
         lower than plain LRU (target >= 2x: {})",
        hot_rate * 100.0,
        verdict(hot_rate >= 0.95),
        verdict(speedup >= 2.0)
    );
    println!();
}
