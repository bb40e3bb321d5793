//! Storing behind the request: a generated slice is handed to background threads that encode
//! it and keep it in every tier, so that a request waits for reading and the kernel only. Until
//! it is stored, the slice is served from the pending map, so nothing is generated twice
//! meanwhile.
//!
//! The storing threads hold back while requests are in progress (the request gate, which
//! warm-up waits on too: one mutex and condition variable, no polling): on a machine with few
//! cores the encoder would otherwise take a core from the request that made the slice. Waiting slices
//! borrow their bytes from the memory budget ([`MemoryStore::reserve`]), so the memory tier
//! (which then evicts to keep blobs and borrowed bytes within the budget) and the backlog
//! together stay within it; when a slice does not fit, the request waits until the storing
//! threads (no longer holding back) have made room. Each storing thread may also have one slice
//! beyond the budget. A whole-level build whose by-products fit the budget is therefore not
//! slowed by their encoding.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use dashmap::DashMap;

use super::manifest::Fingerprint;
use super::{Blob, Counter, MemoryStore, Tier};
use crate::codec::{self, FilterChoice, Origin};
use crate::geometry::SliceKey;
use crate::slice::Slice;

/// A slice handed to the storing threads: its number, key, samples, and the bytes of the
/// memory budget lent to it.
#[derive(Debug)]
struct Job {
    seq: u64,
    key: SliceKey,
    /// What it was made from (taken when it was handed over).
    origin: Origin,
    slice: Arc<Slice>,
    reserved: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn slice_bytes(slice: &Slice) -> u64 {
    slice.pixels().as_bytes().len() as u64
}

#[derive(Debug, Default)]
struct Backlog {
    queue: VecDeque<Job>,
    /// Numbers of the slices queued or being stored.
    in_flight: BTreeSet<u64>,
    next_seq: u64,
    /// Callers waiting for room or for slices to be stored: the storing threads work for
    /// them even while requests are in progress.
    waiting: usize,
    /// Requests in progress (see [`Storer::enter`]).
    foreground: usize,
    /// Bumped by [`Storer::wake`], so that a waiter for idleness re-checks its own stop flag.
    wakes: u64,
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    memory: MemoryStore,
    /// The tiers behind memory (disk, then any other), each written with every blob.
    lower: Vec<Arc<dyn Tier>>,
    fingerprint: Fingerprint,
    pending: DashMap<SliceKey, Arc<Slice>>,
    stored_bytes: Counter,
    backlog: Mutex<Backlog>,
    changed: Condvar,
}

impl Shared {
    /// Keeps the blob of a slice in every tier and drops the slice from the pending map.
    fn keep(&self, key: SliceKey, slice: &Arc<Slice>, blob: Blob) {
        // A failed write is counted and warned about by its tier; the blob is still served
        // from memory.
        for tier in &self.lower {
            let _ = tier.put(key, &blob);
        }
        self.stored_bytes.add(blob.len() as u64);
        self.memory.insert(key, blob);
        // Only our own entry: a later generation of the same key may have replaced it.
        self.pending.remove_if(&key, |_, p| Arc::ptr_eq(p, slice));
    }

    fn store_job(&self, job: &Job) {
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            codec::encode(&job.slice, job.key, job.origin, FilterChoice::Auto)
        }));
        // The lent bytes come back before the blob goes in, so it does not evict for itself.
        self.memory.release(job.reserved);
        match encoded {
            Ok(blob) => self.keep(job.key, &job.slice, blob),
            Err(_) => {
                log::warn!(
                    "lodcache: encoding slice {} of level {} failed; it will be made again \
                     when asked for",
                    job.key.z,
                    job.key.level
                );
                self.pending
                    .remove_if(&job.key, |_, p| Arc::ptr_eq(p, &job.slice));
            }
        }
    }

    fn work(&self) {
        let mut backlog = lock(&self.backlog);
        loop {
            let busy = backlog.foreground > 0;
            if !busy || backlog.waiting > 0 || backlog.closed {
                if let Some(job) = backlog.queue.pop_front() {
                    drop(backlog);
                    self.store_job(&job);
                    backlog = lock(&self.backlog);
                    backlog.in_flight.remove(&job.seq);
                    self.changed.notify_all();
                    continue;
                }
                if backlog.closed {
                    return;
                }
            }
            // Woken by new work, a waiting caller, or the last request leaving.
            backlog = self
                .changed
                .wait(backlog)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Marks a request in progress while it lives (see [`Storer::enter`]).
#[derive(Debug)]
pub(crate) struct Foreground<'a>(&'a Storer);

impl Drop for Foreground<'_> {
    fn drop(&mut self) {
        let shared = &self.0.shared;
        let mut backlog = lock(&shared.backlog);
        backlog.foreground -= 1;
        if backlog.foreground == 0 {
            shared.changed.notify_all();
        }
    }
}

/// The background storing threads and their pending map.
#[derive(Debug)]
pub(crate) struct Storer {
    shared: Arc<Shared>,
    /// Storing threads started (0: every store happens on the caller).
    started: usize,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Storer {
    /// `threads` storing threads (none: every store happens on the caller) keeping blobs in
    /// `memory` and the `lower` tiers, made from the sources `fingerprint` describes.
    pub(crate) fn new(
        memory: MemoryStore,
        lower: Vec<Arc<dyn Tier>>,
        fingerprint: Fingerprint,
        threads: usize,
    ) -> Storer {
        let shared = Arc::new(Shared {
            memory,
            lower,
            fingerprint,
            pending: DashMap::new(),
            stored_bytes: Counter::default(),
            backlog: Mutex::new(Backlog::default()),
            changed: Condvar::new(),
        });
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let worker = Arc::clone(&shared);
            match std::thread::Builder::new()
                .name(format!("lodcache-store-{i}"))
                .spawn(move || worker.work())
            {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    log::warn!("lodcache: storing thread not started ({e})");
                    break;
                }
            }
        }
        Storer {
            shared,
            started: handles.len(),
            threads: Mutex::new(handles),
        }
    }

    /// Stores `slice` as `key` behind the caller, after waiting for room if needed; on the
    /// caller when there is no storing thread.
    ///
    /// `epoch` is the sources' epoch read before the slice was made (see
    /// [`Fingerprint::epoch`]): a slice made from sources taken again since is dropped.
    pub(crate) fn store(&self, key: SliceKey, slice: Arc<Slice>, epoch: u64) {
        let shared = &self.shared;
        let Some(origin) = shared.fingerprint.origin_at(key, epoch) else {
            return;
        };
        shared.pending.insert(key, Arc::clone(&slice));
        let threads = self.started;
        if threads == 0 {
            let job = Job {
                seq: 0,
                key,
                origin,
                slice,
                reserved: 0,
            };
            shared.store_job(&job);
            return;
        }
        let bytes = slice_bytes(&slice);
        let mut backlog = lock(&shared.backlog);
        // A slice that fits what the memory tier leaves of the budget borrows that room; every
        // storing thread may also have one slice beyond it, so that a small budget still
        // stores on all of them (and a slice larger than the budget cannot wait forever).
        let reserved = loop {
            if shared.memory.room() >= bytes {
                shared.memory.reserve(bytes);
                break bytes;
            }
            if backlog.in_flight.len() < threads {
                break 0;
            }
            backlog.waiting += 1;
            shared.changed.notify_all();
            backlog = shared
                .changed
                .wait(backlog)
                .unwrap_or_else(PoisonError::into_inner);
            backlog.waiting -= 1;
        };
        let seq = backlog.next_seq;
        backlog.next_seq += 1;
        backlog.in_flight.insert(seq);
        backlog.queue.push_back(Job {
            seq,
            key,
            origin,
            slice,
            reserved,
        });
        shared.changed.notify_all();
    }

    /// Marks a request in progress until the returned guard is dropped: the storing threads
    /// (and warm-up, through [`Storer::wait_idle`]) hold back meanwhile.
    pub(crate) fn enter(&self) -> Foreground<'_> {
        lock(&self.shared.backlog).foreground += 1;
        Foreground(self)
    }

    /// Whether a request is in progress now.
    #[cfg(test)]
    pub(crate) fn busy(&self) -> bool {
        lock(&self.shared.backlog).foreground > 0
    }

    /// Waits until no request is in progress, `stop()` is true (checked again after each
    /// [`Storer::wake`]), or `deadline` passes. Returns whether it stopped early (for `stop`
    /// or the deadline) rather than because the requests ended.
    pub(crate) fn wait_idle(
        &self,
        stop: impl Fn() -> bool,
        deadline: Option<std::time::Instant>,
    ) -> bool {
        let shared = &self.shared;
        let mut backlog = lock(&shared.backlog);
        loop {
            if stop() {
                return true;
            }
            if backlog.foreground == 0 {
                return false;
            }
            backlog = match deadline {
                None => shared
                    .changed
                    .wait(backlog)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(d) => {
                    let Some(left) = d.checked_duration_since(std::time::Instant::now()) else {
                        return true;
                    };
                    shared
                        .changed
                        .wait_timeout(backlog, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }

    /// Wakes every waiter of [`Storer::wait_idle`] (after setting what its `stop` reads).
    pub(crate) fn wake(&self) {
        lock(&self.shared.backlog).wakes += 1;
        self.shared.changed.notify_all();
    }

    /// Forgets a pending slice (its sources changed).
    pub(crate) fn forget(&self, key: SliceKey) {
        self.shared.pending.remove(&key);
    }

    /// A generated slice still waiting to be stored.
    pub(crate) fn pending(&self, key: SliceKey) -> Option<Arc<Slice>> {
        self.shared.pending.get(&key).map(|p| Arc::clone(p.value()))
    }

    /// Whether `key` is waiting to be stored.
    pub(crate) fn is_pending(&self, key: SliceKey) -> bool {
        self.shared.pending.contains_key(&key)
    }

    /// Bytes of blobs stored so far.
    pub(crate) fn stored_bytes(&self) -> u64 {
        self.shared.stored_bytes.get()
    }

    /// Waits until every slice handed over before this call is stored (the storing threads do
    /// not hold back for requests meanwhile; slices handed over later are not waited for).
    pub(crate) fn flush(&self) {
        let shared = &self.shared;
        let mut backlog = lock(&shared.backlog);
        let target = backlog.next_seq;
        backlog.waiting += 1;
        shared.changed.notify_all();
        while backlog.in_flight.first().is_some_and(|&seq| seq < target) {
            backlog = shared
                .changed
                .wait(backlog)
                .unwrap_or_else(PoisonError::into_inner);
        }
        backlog.waiting -= 1;
    }
}

impl Drop for Storer {
    fn drop(&mut self) {
        // The threads store everything queued, then end.
        lock(&self.shared.backlog).closed = true;
        self.shared.changed.notify_all();
        for thread in lock(&self.threads).drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slice::SampleType;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    fn fingerprint() -> Fingerprint {
        crate::store::DiskStore::disabled().fingerprint().clone()
    }

    fn slices(n: u32) -> Vec<(SliceKey, Arc<Slice>)> {
        (0..n)
            .map(|z| {
                let s = crate::phantom::Phantom::new(64, 64, 2)
                    .with_sample_type(SampleType::U16)
                    .slice(z % 2);
                (SliceKey::new(1, z), Arc::new(s))
            })
            .collect()
    }

    #[test]
    fn a_request_in_progress_does_not_keep_a_full_backlog_waiting() {
        // A request never ends here, the budget holds nothing: every store beyond the first
        // slices must still get through (the storing threads work for a waiting caller).
        let memory = MemoryStore::new(0);
        let storer = Storer::new(memory.clone(), Vec::new(), fingerprint(), 2);
        let _request = storer.enter();
        for (key, slice) in slices(20) {
            storer.store(key, slice, 0);
        }
        storer.flush();
        assert!(lock(&storer.shared.backlog).in_flight.is_empty());
        assert!(storer.shared.pending.is_empty());
        assert!(storer.stored_bytes() > 0);
    }

    #[test]
    fn storing_holds_back_during_requests_and_catches_up_after() {
        let memory = MemoryStore::new(64 << 20);
        let storer = Storer::new(memory.clone(), Vec::new(), fingerprint(), 2);
        let request = storer.enter();
        let all = slices(8);
        for (key, slice) in all.clone() {
            storer.store(key, slice, 0);
        }
        // Room in the budget: nothing waits, so nothing is stored while the request runs, and
        // every slice is served from the pending map meanwhile.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(memory.stats().entries, 0);
        for (key, slice) in &all {
            assert!(Arc::ptr_eq(&storer.pending(*key).unwrap(), slice));
        }
        drop(request);
        storer.flush();
        assert_eq!(memory.stats().entries, 8);
        assert!(all.iter().all(|(key, _)| !storer.is_pending(*key)));
    }

    #[test]
    fn flush_waits_for_what_was_handed_over_not_for_later_slices() {
        // Another thread keeps storing while we flush: flush must still return.
        let memory = MemoryStore::new(64 << 20);
        let storer = Storer::new(memory.clone(), Vec::new(), fingerprint(), 2);
        let first = slices(4);
        for (key, slice) in first.clone() {
            storer.store(key, slice, 0);
        }
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut z = 100;
                while !stop.load(Ordering::Relaxed) {
                    for (_, slice) in slices(1) {
                        storer.store(SliceKey::new(1, z), slice, 0);
                    }
                    z += 1;
                }
            });
            std::thread::sleep(Duration::from_millis(20));
            storer.flush();
            stop.store(true, Ordering::Relaxed);
        });
        assert!(first.iter().all(|(key, _)| memory.contains(*key)));
    }

    #[test]
    fn waiting_slices_borrow_from_the_memory_budget() {
        let one = slice_bytes(&slices(1)[0].1);
        let memory = MemoryStore::new(3 * one);
        let storer = Storer::new(memory.clone(), Vec::new(), fingerprint(), 1);
        let request = storer.enter();
        for (key, slice) in slices(2) {
            storer.store(key, slice, 0);
        }
        // Two slices wait (held back by the request), borrowing two thirds of the budget.
        assert_eq!(memory.room(), one);
        drop(request);
        storer.flush();
        assert_eq!(memory.room(), 3 * one - memory.bytes());
    }

    #[test]
    fn without_threads_the_caller_stores() {
        let memory = MemoryStore::new(64 << 20);
        let storer = Storer::new(memory.clone(), Vec::new(), fingerprint(), 0);
        for (key, slice) in slices(3) {
            storer.store(key, slice, 0);
            assert!(memory.contains(key) && !storer.is_pending(key));
        }
    }
}

#[cfg(test)]
mod gate_tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    #[test]
    fn wait_idle_returns_when_the_last_request_leaves_or_when_told_to_stop() {
        let storer = Storer::new(
            MemoryStore::new(1 << 20),
            Vec::new(),
            crate::store::DiskStore::disabled().fingerprint().clone(),
            1,
        );
        assert!(!storer.wait_idle(|| false, None));
        let a = storer.enter();
        let b = storer.enter();
        assert!(storer.busy());
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let t = Instant::now();
                (
                    storer.wait_idle(|| stop.load(Ordering::Relaxed), None),
                    t.elapsed(),
                )
            });
            std::thread::sleep(Duration::from_millis(30));
            drop(a);
            std::thread::sleep(Duration::from_millis(30));
            assert!(
                !waiter.is_finished(),
                "woke while a request was still in progress"
            );
            drop(b);
            let (stopped, waited) = waiter.join().unwrap();
            assert!(!stopped && waited >= Duration::from_millis(50));
        });
        let _c = storer.enter();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| storer.wait_idle(|| stop.load(Ordering::Relaxed), None));
            std::thread::sleep(Duration::from_millis(20));
            stop.store(true, Ordering::Relaxed);
            storer.wake();
            assert!(waiter.join().unwrap(), "a stopped waiter must say so");
        });
    }
}
