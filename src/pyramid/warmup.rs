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
    // The work list: every slice of the chosen levels not stored yet, level by level.
    let mut work = Vec::new();
    let mut levels = Vec::new();
    for &l in &order {
        let info = pyramid.levels()[l as usize];
        let missing: Vec<SliceKey> = (0..info.depth)
            .map(|z| SliceKey::new(l, z))
            .filter(|k| !pyramid.is_stored(*k))
            .collect();
        let already = u64::from(info.depth) - missing.len() as u64;
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
