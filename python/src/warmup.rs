//! `lodcache.WarmUp`: the handle of a background warm-up run.
//!
//! Every lock of the handle is taken with the GIL released, so a thread waiting for one (while
//! another cancels or waits) never holds the GIL that the holder needs to return.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lodcache::{WarmupHandle, WarmupOutcome, WarmupProgress};
use pyo3::prelude::*;

use crate::errors::{invalid, to_py};

/// Where a warm-up run stands (`WarmUp.progress()`).
#[pyclass(
    module = "lodcache._lodcache",
    name = "WarmupProgress",
    frozen,
    get_all
)]
#[derive(Debug, Clone)]
pub(crate) struct PyWarmupProgress {
    /// The level being built (None before the first slice and after the last).
    level: Option<u32>,
    /// Slices made by this run so far.
    done: u64,
    /// Slices this run has to make (those not stored when it started).
    total: u64,
    /// Slices of the chosen levels already stored when it started.
    already_stored: u64,
    /// Bytes of blobs stored into the cache while it ran.
    bytes: u64,
    /// Seconds since it started.
    elapsed: f64,
    /// Slices per second so far.
    rate: f64,
    /// Estimated seconds to finish at that rate (None before the first slice).
    eta: Option<f64>,
    /// Whether it has ended.
    finished: bool,
}

impl From<WarmupProgress> for PyWarmupProgress {
    fn from(p: WarmupProgress) -> Self {
        PyWarmupProgress {
            level: p.level,
            done: p.done,
            total: p.total,
            already_stored: p.already_stored,
            bytes: p.bytes,
            elapsed: p.elapsed.as_secs_f64(),
            rate: p.rate,
            eta: p.eta.map(|d| d.as_secs_f64()),
            finished: p.finished,
        }
    }
}

#[pymethods]
impl PyWarmupProgress {
    fn __repr__(&self) -> String {
        format!(
            "WarmupProgress(level={:?}, done={}, total={}, already_stored={}, bytes={}, \
             elapsed={:.3}, rate={:.1}, eta={:?}, finished={})",
            self.level,
            self.done,
            self.total,
            self.already_stored,
            self.bytes,
            self.elapsed,
            self.rate,
            self.eta,
            if self.finished { "True" } else { "False" }
        )
    }
}

/// How a run ended: the outcome's name and final progress, or its error.
#[derive(Debug)]
struct Ended {
    outcome: Result<&'static str, PyErr>,
    progress: PyWarmupProgress,
}

/// A running warm-up. Dropping it cancels the run and waits for it (within one slice of work).
#[pyclass(module = "lodcache._lodcache", name = "WarmUp", frozen)]
#[derive(Debug)]
pub(crate) struct PyWarmUp {
    handle: Mutex<Option<WarmupHandle>>,
    ended: Mutex<Option<Ended>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl PyWarmUp {
    pub(crate) fn new(handle: WarmupHandle) -> Self {
        PyWarmUp {
            handle: Mutex::new(Some(handle)),
            ended: Mutex::new(None),
        }
    }

    /// Collects the outcome once the run has ended; true when it has. Call without the GIL.
    fn collect(&self) -> bool {
        let mut handle = lock(&self.handle);
        match handle.as_ref() {
            None => return true,
            Some(h) if !h.is_finished() => return false,
            Some(_) => {}
        }
        let Some(h) = handle.take() else {
            return true;
        };
        // `ended` is set before the handle lock is released, so whoever finds no handle finds
        // the outcome.
        let outcome = h.wait();
        let progress = PyWarmupProgress::from(outcome.report().progress);
        let outcome = match outcome {
            WarmupOutcome::Completed(_) => Ok("completed"),
            WarmupOutcome::Cancelled(_) => Ok("cancelled"),
            WarmupOutcome::BudgetReached(_) => Ok("budget"),
            // A cancel that lands while a slice is being made stops that slice with
            // Error::Cancelled, which the run reports as a failure: it is a cancellation.
            WarmupOutcome::Failed {
                error: lodcache::Error::Cancelled,
                ..
            } => Ok("cancelled"),
            WarmupOutcome::Failed { error, .. } => Err(to_py(error)),
            _ => Err(invalid(
                "the warm-up ended in a way these bindings do not know",
            )),
        };
        *lock(&self.ended) = Some(Ended { outcome, progress });
        true
    }
}

#[pymethods]
impl PyWarmUp {
    /// Where the run stands.
    fn progress(&self, py: Python<'_>) -> PyWarmupProgress {
        py.detach(|| {
            if let Some(h) = lock(&self.handle).as_ref() {
                return h.progress().into();
            }
            match lock(&self.ended).as_ref() {
                Some(e) => e.progress.clone(),
                // Not reached: the handle is taken only after `ended` is set, under its lock.
                None => PyWarmupProgress {
                    level: None,
                    done: 0,
                    total: 0,
                    already_stored: 0,
                    bytes: 0,
                    elapsed: 0.0,
                    rate: 0.0,
                    eta: None,
                    finished: true,
                },
            }
        })
    }

    /// Stops the run after the slices in progress (within one slice of work) and returns once
    /// it has stopped. What it stored stays valid; a later run resumes from it.
    fn cancel(&self, py: Python<'_>) {
        py.detach(|| {
            if let Some(h) = lock(&self.handle).as_ref() {
                h.cancel();
            }
            self.collect();
        });
    }

    /// Waits for the run to end, at most `timeout` seconds (None: no limit). Returns how it
    /// ended, `"completed"`, `"cancelled"` or `"budget"`, or None if it is still running after
    /// `timeout`. Raises the run's error if it failed (e.g. `StackError` for a damaged slice).
    #[pyo3(signature = (timeout=None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Option<&'static str>> {
        let deadline = match timeout {
            None => None,
            Some(t) => Some(
                Instant::now()
                    + Duration::try_from_secs_f64(t).map_err(|_| {
                        invalid(format!(
                            "timeout must be a non-negative number of seconds, got {t}"
                        ))
                    })?,
            ),
        };
        loop {
            let ended = py.detach(|| {
                if self.collect() {
                    return true;
                }
                let step = Duration::from_millis(10);
                let nap = deadline.map_or(step, |d| {
                    d.saturating_duration_since(Instant::now()).min(step)
                });
                std::thread::sleep(nap);
                self.collect()
            });
            if ended {
                // `ended` is never held by a thread that waits for the GIL: safe to lock here.
                return match lock(&self.ended).as_ref().map(|e| &e.outcome) {
                    Some(Ok(name)) => Ok(Some(*name)),
                    Some(Err(e)) => Err(e.clone_ref(py)),
                    None => Ok(None),
                };
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
            // Lets Ctrl-C interrupt a long wait.
            py.check_signals()?;
        }
    }

    /// Whether the run has ended.
    #[getter]
    fn done(&self, py: Python<'_>) -> bool {
        py.detach(|| self.collect())
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// Cancels the run (see `cancel`).
    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.cancel(py);
        false
    }

    fn __repr__(&self, py: Python<'_>) -> String {
        let p = self.progress(py);
        format!(
            "WarmUp(done={}/{}, finished={})",
            p.done,
            p.total,
            if p.finished { "True" } else { "False" }
        )
    }
}
