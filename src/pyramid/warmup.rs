//! Background warm-up: build what users will ask for before they ask, most requested first
//! (see [`WarmupHandle`]).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Cancel, Pyramid};
use crate::error::{Error, Result};
use crate::geometry::{LevelInfo, SliceKey};

/// What a warm-up run builds and how long it may take.
#[derive(Debug, Clone, Default, PartialEq)]
#[must_use]
pub struct WarmupOptions {
    /// Levels to build, in this order. Default: `None`, by demand (see the module docs).
    pub levels: Option<Vec<u32>>,
    /// Stop after this long. Default: `None` (no limit).
    pub time_budget: Option<Duration>,
    /// Stop once this many bytes of blobs were stored. Default: `None` (no limit).
    pub byte_budget: Option<u64>,
    /// Threads making slices. Default: 1 (0 counts as 1, more than [`MAX_THREADS`] as
    /// [`MAX_THREADS`]), which leaves the other cores to the viewer.
    pub threads: usize,
    /// Builds only this shard's share (see [`ShardPlan`]). Default: `None` (everything).
    pub shard: Option<Shard>,
}

impl WarmupOptions {
    /// Builds these levels, in this order. Default: by demand.
    pub fn with_levels(mut self, levels: impl Into<Vec<u32>>) -> Self {
        self.levels = Some(levels.into());
        self
    }

    /// Stops after `limit`. Default: no limit.
    pub fn with_time_budget(mut self, limit: Duration) -> Self {
        self.time_budget = Some(limit);
        self
    }

    /// Stops once `bytes` of blobs were stored. Default: no limit.
    pub fn with_byte_budget(mut self, bytes: u64) -> Self {
        self.byte_budget = Some(bytes);
        self
    }

    /// Threads making slices. Default: 1.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Builds only `shard`'s share, so that processes on several machines split the work
    /// (see [`ShardPlan`]). Default: everything.
    pub fn with_shard(mut self, shard: Shard) -> Self {
        self.shard = Some(shard);
        self
    }
}

/// One share of a warm-up split over `count` processes (a Slurm job array, a Kubernetes
/// Indexed Job): shard `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Shard {
    index: u32,
    count: u32,
}

impl Shard {
    /// Shard `index` (0-based) of `count`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when `count` is 0 or `index` is not below it.
    pub fn new(index: u32, count: u32) -> Result<Shard> {
        if count == 0 || index >= count {
            return Err(Error::invalid(
                "shard",
                format!(
                    "{index}/{count}; the index must be 0 to count - 1 and the count at least 1"
                ),
            ));
        }
        Ok(Shard { index, count })
    }

    /// The index, 0-based.
    pub fn index(self) -> u32 {
        self.index
    }

    /// The number of shards.
    pub fn count(self) -> u32 {
        self.count
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// What one shard of a warm-up builds ([`crate::Pyramid::shard_plan`]).
///
/// The slices of the **split level** are cut into `count` contiguous ranges of (nearly) equal
/// length, and shard `i` takes range `i` and everything below it: at level `l` the slices
/// `[a * 2^(s - l), b * 2^(s - l))` for its range `[a, b)` of split-level slices `s`. Those are
/// exactly the slices its range is made from, down to the level-1 slices, and they are made
/// from a contiguous range of source slices. So each shard owns whole subtrees: it builds every
/// level up to the split level without reading another shard's work, the shards together
/// leave every level up to the split level complete, and no two of them ever make (or write)
/// the same slice.
///
/// The split level is the coarsest level (the pyramid's last) when it has at least as many
/// slices as there are shards: then nothing is left over. With more shards than that, it is the
/// coarsest level that has at least as many slices as shards (level 1 at least; shards beyond
/// its slice count get nothing), and the levels above it are **leftovers**, built by a final
/// pass once every shard is done (an unsharded warm-up, which reads the split level's slices
/// from the tiers instead of the sources).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShardPlan {
    /// The shard.
    pub shard: Shard,
    /// The level whose slices are split into ranges (0 when the pyramid has no level).
    pub split_level: u32,
    /// For each level from 1 to the split level, the slices this shard builds.
    pub ranges: Vec<(u32, std::ops::Range<u32>)>,
    /// Levels above the split level, left to a final pass (empty when the coarsest level has
    /// at least as many slices as there are shards).
    pub leftover: Vec<u32>,
}

impl ShardPlan {
    /// The plan of `shard` over `levels` (level 0 first, as [`crate::Pyramid::levels`]).
    pub fn new(levels: &[LevelInfo], shard: Shard) -> ShardPlan {
        let last = levels.len().saturating_sub(1) as u32;
        if last == 0 {
            return ShardPlan {
                shard,
                split_level: 0,
                ranges: Vec::new(),
                leftover: Vec::new(),
            };
        }
        let split = (1..=last)
            .rev()
            .find(|&l| levels[l as usize].depth >= shard.count)
            .unwrap_or(1);
        let depth = u64::from(levels[split as usize].depth);
        let cut = |i: u32| (u64::from(i) * depth / u64::from(shard.count)) as u32;
        let (a, b) = (cut(shard.index), cut(shard.index + 1));
        let ranges = (1..=split)
            .map(|l| {
                let k = split - l;
                let d = levels[l as usize].depth;
                let start = (u64::from(a) << k).min(u64::from(d)) as u32;
                let end = (u64::from(b) << k).min(u64::from(d)) as u32;
                (l, start..end)
            })
            .collect();
        ShardPlan {
            shard,
            split_level: split,
            ranges,
            leftover: (split + 1..=last).collect(),
        }
    }

    /// The slices of `level` this shard builds (empty for leftover levels).
    pub fn range(&self, level: u32) -> std::ops::Range<u32> {
        self.ranges
            .iter()
            .find(|(l, _)| *l == level)
            .map_or(0..0, |(_, r)| r.clone())
    }
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct WarmupProgress {
    /// The level being built (`None` before the first slice and after the last).
    pub level: Option<u32>,
    /// Slices made by this run so far.
    pub done: u64,
    /// Slices this run has to make (those not stored when it started).
    pub total: u64,
    /// Slices of the chosen levels already stored when it started.
    pub already_stored: u64,
    /// Bytes of blobs stored into the cache while it ran: its own slices, what they were made
    /// from, and anything stored for requests meanwhile (the byte budget counts the same).
    pub bytes: u64,
    /// Time since it started.
    pub elapsed: Duration,
    /// Slices per second so far.
    pub rate: f64,
    /// Estimated time to finish at that rate.
    pub eta: Option<Duration>,
    /// Whether it has ended.
    pub finished: bool,
}

/// What a run did, per level.
#[derive(Debug, Clone, PartialEq)]
pub struct LevelReport {
    /// The level.
    pub info: LevelInfo,
    /// Slices this run made.
    pub made: u64,
    /// Slices already stored when it started.
    pub already_stored: u64,
    /// Time spent on this level's slices (summed over threads).
    pub time: Duration,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmupReport {
    /// The levels, in the order they were built.
    pub levels: Vec<LevelReport>,
    /// The final progress figures.
    pub progress: WarmupProgress,
}

/// How a run ended.
#[derive(Debug)]
#[non_exhaustive]
pub enum WarmupOutcome {
    /// Every slice of the chosen levels is stored.
    Completed(WarmupReport),
    /// Cancelled (by [`WarmupHandle::cancel`] or by dropping the handle).
    Cancelled(WarmupReport),
    /// The time or byte budget ran out.
    BudgetReached(WarmupReport),
    /// A slice could not be made (e.g. a source file is damaged); what was stored stays valid.
    Failed {
        /// The first error.
        error: Error,
        /// What was done until then.
        report: WarmupReport,
    },
}

impl WarmupOutcome {
    /// The report, whatever the outcome.
    pub fn report(&self) -> &WarmupReport {
        match self {
            WarmupOutcome::Completed(r)
            | WarmupOutcome::Cancelled(r)
            | WarmupOutcome::BudgetReached(r) => r,
            WarmupOutcome::Failed { report, .. } => report,
        }
    }
}

/// Why the workers stopped early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Cancelled,
    Budget,
    Failed,
}

#[derive(Debug)]
struct Shared {
    cancel: Cancel,
    done: AtomicU64,
    total: AtomicU64,
    already: AtomicU64,
    level: AtomicU64,
    bytes_at_start: AtomicU64,
    started: Instant,
    finished: AtomicBool,
    stopped: Mutex<bool>,
    stopped_cv: Condvar,
}

const NO_LEVEL: u64 = u64::MAX;

/// The most threads a run uses, whatever [`WarmupOptions::threads`] says.
pub const MAX_THREADS: usize = 64;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running warm-up. Dropping it cancels the run and waits for it.
///
/// [`Pyramid::warm_up`] starts a run on its own threads and returns a [`WarmupHandle`] with
/// [`progress`](WarmupHandle::progress), [`cancel`](WarmupHandle::cancel) and
/// [`wait`](WarmupHandle::wait); dropping the handle cancels the run and joins it.
///
/// - **Order**: the levels given, else the levels users asked for (by [`Pyramid::demand`]), then
///   the rest from the smallest level to the largest (every viewer loads the smallest level
///   whole first). Within a level, slice by slice in z order.
/// - **Work**: each slice is made through the same lazy path as a request (so it is stored in
///   both tiers with everything below it, and a request for a slice the run is making waits for
///   it instead of repeating it). Slices already stored are skipped, which is also how an
///   interrupted run resumes: blobs are written atomically, so whatever a killed run left on
///   disk is whole, and the next run carries on from there.
/// - **Foreground first**: before each slice the run waits while any request of the pyramid is
///   in progress, so a viewer's `slice()` never queues behind a batch of warm-up work (at most
///   behind the one slice being made). A client that keeps requests in flight without pause
///   therefore holds the run back until it pauses: the viewer's time comes first.
/// - **Budgets**: a time budget and a byte budget (bytes of blobs stored while the run went)
///   end the run early, with the outcome [`WarmupOutcome::BudgetReached`].
/// - **Cancel** takes effect between slices: within one slice's work.
/// - **Shards** ([`WarmupOptions::with_shard`]): only the shard's ranges of the levels up to
///   the split level (see [`ShardPlan`]); its reports count those slices only.
#[derive(Debug)]
pub struct WarmupHandle {
    shared: Arc<Shared>,
    pyramid: Pyramid,
    thread: Option<JoinHandle<WarmupOutcome>>,
}

impl WarmupHandle {
    /// Where the run stands.
    pub fn progress(&self) -> WarmupProgress {
        progress(&self.shared, &self.pyramid)
    }

    /// Stops the run after the slices in progress (within one slice's work) and returns once
    /// it has stopped. What it stored stays valid; [`wait`](Self::wait) then reports
    /// [`WarmupOutcome::Cancelled`] (or how it ended, if it ended first).
    pub fn cancel(&self) {
        self.shared.cancel.cancel();
        self.pyramid.inner.tiers.wake();
        let mut stopped = lock(&self.shared.stopped);
        while !*stopped {
            stopped = self
                .shared
                .stopped_cv
                .wait(stopped)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Whether the run has ended.
    pub fn is_finished(&self) -> bool {
        self.shared.finished.load(Ordering::Relaxed)
    }

    /// Waits for the run to end and says how.
    pub fn wait(mut self) -> WarmupOutcome {
        self.join()
    }

    fn join(&mut self) -> WarmupOutcome {
        let report = || WarmupReport {
            levels: Vec::new(),
            progress: progress(&self.shared, &self.pyramid),
        };
        match self.thread.take().map(JoinHandle::join) {
            Some(Ok(outcome)) => outcome,
            Some(Err(_)) => WarmupOutcome::Failed {
                error: Error::internal("warm-up", "the warm-up thread panicked"),
                report: report(),
            },
            None => WarmupOutcome::Failed {
                error: Error::internal("warm-up", "the run was already waited for"),
                report: report(),
            },
        }
    }
}

impl Drop for WarmupHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shared.cancel.cancel();
            self.pyramid.inner.tiers.wake();
            let _ = self.join();
        }
    }
}

fn progress(shared: &Shared, pyramid: &Pyramid) -> WarmupProgress {
    let done = shared.done.load(Ordering::Relaxed);
    let total = shared.total.load(Ordering::Relaxed);
    let elapsed = shared.started.elapsed();
    let rate = done as f64 / elapsed.as_secs_f64().max(1e-9);
    let left = total.saturating_sub(done);
    let eta = (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate));
    let level = shared.level.load(Ordering::Relaxed);
    WarmupProgress {
        level: (level != NO_LEVEL).then_some(level as u32),
        done,
        total,
        already_stored: shared.already.load(Ordering::Relaxed),
        bytes: pyramid
            .inner
            .tiers
            .stored_bytes()
            .saturating_sub(shared.bytes_at_start.load(Ordering::Relaxed)),
        elapsed,
        rate,
        eta,
        finished: shared.finished.load(Ordering::Relaxed),
    }
}

/// The level order of a run: the options' levels (checked), else by demand, then smallest
/// level to largest.
fn plan(pyramid: &Pyramid, options: &WarmupOptions) -> Result<Vec<u32>> {
    let last = pyramid.levels().len() as u32 - 1;
    if let Some(levels) = &options.levels {
        let mut seen = Vec::new();
        for &l in levels {
            if l == 0 || l > last {
                let valid = if last == 0 {
                    "none: this stack is not above the level edge".to_string()
                } else {
                    format!("1..={last}")
                };
                return Err(Error::invalid(
                    "warm-up level",
                    format!("{l}; valid levels: {valid}"),
                ));
            }
            if !seen.contains(&l) {
                seen.push(l);
            }
        }
        return Ok(seen);
    }
    let mut order: Vec<u32> = pyramid
        .demand()
        .levels
        .iter()
        .map(|d| d.level)
        .filter(|&l| l >= 1 && l <= last)
        .collect();
    for l in (1..=last).rev() {
        if !order.contains(&l) {
            order.push(l);
        }
    }
    Ok(order)
}

/// Starts a run; see [`Pyramid::warm_up`].
pub(crate) fn start(pyramid: &Pyramid, options: WarmupOptions) -> WarmupHandle {
    let shared = Arc::new(Shared {
        cancel: Cancel::new(),
        done: AtomicU64::new(0),
        total: AtomicU64::new(0),
        already: AtomicU64::new(0),
        level: AtomicU64::new(NO_LEVEL),
        bytes_at_start: AtomicU64::new(pyramid.inner.tiers.stored_bytes()),
        started: Instant::now(),
        finished: AtomicBool::new(false),
        stopped: Mutex::new(false),
        stopped_cv: Condvar::new(),
    });
    let (run_shared, run_pyramid) = (Arc::clone(&shared), pyramid.clone());
    let thread = std::thread::Builder::new()
        .name("lodcache-warmup".into())
        .spawn(move || {
            let outcome = run(&run_pyramid, &options, &run_shared);
            run_shared.level.store(NO_LEVEL, Ordering::Relaxed);
            run_shared.finished.store(true, Ordering::Relaxed);
            *lock(&run_shared.stopped) = true;
            run_shared.stopped_cv.notify_all();
            outcome
        });
    match thread {
        Ok(handle) => WarmupHandle {
            shared,
            pyramid: pyramid.clone(),
            thread: Some(handle),
        },
        Err(e) => {
            // No thread: an already finished handle that reports the failure.
            shared.finished.store(true, Ordering::Relaxed);
            *lock(&shared.stopped) = true;
            let error = Error::io("starting the warm-up thread", pyramid.stack().dir(), e);
            let report = WarmupReport {
                levels: Vec::new(),
                progress: progress(&shared, pyramid),
            };
            let failed = std::thread::spawn(move || WarmupOutcome::Failed { error, report });
            WarmupHandle {
                shared,
                pyramid: pyramid.clone(),
                thread: Some(failed),
            }
        }
    }
}

fn run(pyramid: &Pyramid, options: &WarmupOptions, shared: &Shared) -> WarmupOutcome {
    let report = |levels: Vec<LevelReport>| WarmupReport {
        levels,
        progress: progress(shared, pyramid),
    };
    let order = match plan(pyramid, options) {
        Ok(o) => o,
        Err(error) => {
            return WarmupOutcome::Failed {
                error,
                report: report(Vec::new()),
            };
        }
    };
    // The work list: every slice of the chosen levels not stored yet, level by level (of a
    // shard: its ranges, and no leftover level).
    let shard = options.shard.map(|s| ShardPlan::new(pyramid.levels(), s));
    let mut work = Vec::new();
    let mut levels = Vec::new();
    for &l in &order {
        let info = pyramid.levels()[l as usize];
        let range = match &shard {
            Some(plan) if l > plan.split_level => continue,
            Some(plan) => plan.range(l),
            None => 0..info.depth,
        };
        let mine = (range.end - range.start) as u64;
        let missing: Vec<SliceKey> = range
            .map(|z| SliceKey::new(l, z))
            .filter(|k| !pyramid.is_stored(*k))
            .collect();
        let already = mine - missing.len() as u64;
        shared.already.fetch_add(already, Ordering::Relaxed);
        levels.push((info, already, AtomicU64::new(0), AtomicU64::new(0)));
        work.extend(missing);
    }
    shared.total.store(work.len() as u64, Ordering::Relaxed);

    let next = AtomicUsize::new(0);
    let stop: Mutex<Option<(Stop, Option<Error>)>> = Mutex::new(None);
    let threads = options.threads.clamp(1, MAX_THREADS);
    let deadline = options.time_budget.map(|t| shared.started + t);
    let tiers = &pyramid.inner.tiers;
    // Taking the next slice and judging the budgets happen under this lock, so that a byte
    // budget is judged on what is stored once every earlier slice is (see `byte_budget`).
    let claim = Mutex::new(());
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                loop {
                    if lock(&stop).is_some() {
                        return;
                    }
                    // Foreground first: no new slice while a request is being served (waits on
                    // the request gate; cancel wakes it).
                    // (The deadline ends the wait too: a time budget holds while requests
                    // keep the run waiting.)
                    let cancelled = tiers.wait_idle(|| shared.cancel.is_cancelled(), deadline)
                        && shared.cancel.is_cancelled();
                    let next_key = {
                        let _claim = lock(&claim);
                        let over_bytes = options.byte_budget.is_some_and(|b| {
                            // Settle what earlier slices handed to the storing threads.
                            tiers.flush();
                            tiers
                                .stored_bytes()
                                .saturating_sub(shared.bytes_at_start.load(Ordering::Relaxed))
                                >= b
                        });
                        if cancelled || shared.cancel.is_cancelled() {
                            Err(Stop::Cancelled)
                        } else if over_bytes || deadline.is_some_and(|d| Instant::now() >= d) {
                            Err(Stop::Budget)
                        } else {
                            Ok(work.get(next.fetch_add(1, Ordering::Relaxed)).copied())
                        }
                    };
                    let key = match next_key {
                        Ok(Some(key)) => key,
                        Ok(None) => return,
                        Err(why) => {
                            lock(&stop).get_or_insert((why, None));
                            return;
                        }
                    };
                    shared.level.store(u64::from(key.level), Ordering::Relaxed);
                    let t = Instant::now();
                    let made = pyramid.warm_slice(key, &shared.cancel);
                    if let Some(entry) = levels.iter().find(|e| e.0.level == key.level) {
                        entry
                            .3
                            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
                        if made.is_ok() {
                            entry.2.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    match made {
                        Ok(()) => {
                            shared.done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(Error::Cancelled) => {
                            lock(&stop).get_or_insert((Stop::Cancelled, None));
                            return;
                        }
                        Err(e) => {
                            lock(&stop).get_or_insert((Stop::Failed, Some(e)));
                            return;
                        }
                    }
                }
            });
        }
    });
    // Everything made is stored before the run reports.
    pyramid.flush();
    shared.level.store(NO_LEVEL, Ordering::Relaxed);
    shared.finished.store(true, Ordering::Relaxed);
    let level_reports = levels
        .into_iter()
        .map(|(info, already, made, ns)| LevelReport {
            info,
            made: made.into_inner(),
            already_stored: already,
            time: Duration::from_nanos(ns.into_inner()),
        })
        .collect();
    let report = report(level_reports);
    match stop.into_inner().unwrap_or_else(PoisonError::into_inner) {
        None => WarmupOutcome::Completed(report),
        Some((Stop::Cancelled, _)) => WarmupOutcome::Cancelled(report),
        Some((Stop::Budget, _)) => WarmupOutcome::BudgetReached(report),
        Some((Stop::Failed, error)) => WarmupOutcome::Failed {
            error: error.unwrap_or_else(|| Error::internal("warm-up", "failed without an error")),
            report,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::LevelRule;
    use crate::slice::SampleType;

    fn levels(depth: u32, edge: u32) -> Vec<LevelInfo> {
        LevelRule::default()
            .with_edge(edge)
            .levels(256, 256, depth, SampleType::U16)
            .unwrap()
    }

    #[test]
    fn shards_split_every_level_into_whole_subtrees_without_overlap() {
        for depth in [1, 2, 3, 7, 8, 9, 31, 64, 100, 257] {
            for edge in [16, 40, 100] {
                let levels = levels(depth, edge);
                let last = levels.len() as u32 - 1;
                for count in [1, 2, 3, 4, 5, 8, 13, 32, 300] {
                    let plans: Vec<ShardPlan> = (0..count)
                        .map(|i| ShardPlan::new(&levels, Shard::new(i, count).unwrap()))
                        .collect();
                    let split = plans[0].split_level;
                    let what = format!("depth {depth}, edge {edge}, {count} shards");
                    assert!(plans.iter().all(|p| p.split_level == split), "{what}");
                    if last == 0 {
                        assert_eq!(split, 0, "{what}");
                        continue;
                    }
                    // No leftovers when the coarsest level has a slice per shard.
                    let enough = levels[last as usize].depth >= count;
                    assert_eq!(plans[0].leftover.is_empty(), enough, "{what}");
                    assert_eq!(
                        plans[0].leftover,
                        (split + 1..=last).collect::<Vec<_>>(),
                        "{what}"
                    );
                    for l in 1..=split {
                        // Every slice of the level in exactly one shard.
                        let mut owner = vec![None; levels[l as usize].depth as usize];
                        for (i, p) in plans.iter().enumerate() {
                            for z in p.range(l) {
                                assert_eq!(owner[z as usize], None, "{what}: level {l} slice {z}");
                                owner[z as usize] = Some(i);
                            }
                        }
                        assert!(owner.iter().all(Option::is_some), "{what}: level {l}");
                        // A slice's children belong to its shard.
                        if l >= 2 {
                            let below = levels[l as usize - 1].depth;
                            for (i, p) in plans.iter().enumerate() {
                                for z in p.range(l) {
                                    for c in [2 * z, 2 * z + 1].into_iter().filter(|&c| c < below) {
                                        assert!(
                                            p.range(l - 1).contains(&c),
                                            "{what}: shard {i} has {l}/{z} but not {}/{c}",
                                            l - 1
                                        );
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn shards_are_checked() {
        assert!(Shard::new(0, 0).is_err());
        assert!(Shard::new(4, 4).is_err());
        let s = Shard::new(3, 4).unwrap();
        assert_eq!((s.index(), s.count(), s.to_string()), (3, 4, "3/4".into()));
    }
}
