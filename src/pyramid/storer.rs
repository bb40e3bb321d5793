//! Storing behind the request: a generated slice is handed to background threads that encode
//! it and keep it in both tiers, so that a request waits for reading and the kernel only. Until
//! it is stored, the slice is served from the pending map, so nothing is generated twice
//! meanwhile.
//!
//! The storing threads hold back while requests are in progress: on a machine with few cores
//! the encoder would otherwise take a core from the request that made the slice. Waiting slices
//! borrow their bytes from the memory budget ([`MemoryStore::reserve`]), so the memory tier
//! (which then evicts to keep blobs and borrowed bytes within the budget) and the backlog
//! together stay within it; when a slice does not fit, the request waits until the storing
//! threads (no longer holding back) have made room. Each storing thread may also have one slice
//! beyond the budget. A whole-level build whose by-products fit the budget is therefore not
//! slowed by their encoding.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use dashmap::DashMap;

use crate::codec::{self, FilterChoice};
use crate::geometry::SliceKey;
use crate::slice::Slice;
use crate::store::{Blob, Counter, DiskStore, MemoryStore};

/// How often held-back storing threads look whether requests have ended.
const POLL: Duration = Duration::from_millis(2);

/// A slice handed to the storing threads: its number, key, samples, and the bytes of the
/// memory budget lent to it.
#[derive(Debug)]
struct Job {
    seq: u64,
    key: SliceKey,
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
    closed: bool,
}

#[derive(Debug)]
struct Shared {
    memory: MemoryStore,
    disk: DiskStore,
    pending: DashMap<SliceKey, Arc<Slice>>,
    stored_bytes: Counter,
    backlog: Mutex<Backlog>,
    changed: Condvar,
    /// Requests in progress.
    foreground: Arc<AtomicUsize>,
}

impl Shared {
    /// Keeps the blob of a slice in both tiers and drops the slice from the pending map.
    fn keep(&self, key: SliceKey, slice: &Arc<Slice>, blob: Blob) {
        // A failed disk write is counted and warned about by the disk tier; the blob is still
        // served from memory.
        let _ = self.disk.put(key, &blob);
        self.stored_bytes.add(blob.len() as u64);
        self.memory.insert(key, blob);
        // Only our own entry: a later generation of the same key may have replaced it.
        self.pending.remove_if(&key, |_, p| Arc::ptr_eq(p, slice));
    }

    fn store_job(&self, job: &Job) {
        let encoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            codec::encode(&job.slice, job.key, FilterChoice::Auto)
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
            let busy = self.foreground.load(Ordering::Relaxed) > 0;
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
            backlog = if backlog.queue.is_empty() {
                self.changed
                    .wait(backlog)
                    .unwrap_or_else(PoisonError::into_inner)
            } else {
                self.changed
                    .wait_timeout(backlog, POLL)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0
            };
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
    /// `threads` storing threads (none: every store happens on the caller); `foreground`
    /// counts the requests in progress.
    pub(crate) fn new(
        memory: MemoryStore,
        disk: DiskStore,
        threads: usize,
        foreground: Arc<AtomicUsize>,
    ) -> Storer {
        let shared = Arc::new(Shared {
            memory,
            disk,
            pending: DashMap::new(),
            stored_bytes: Counter::default(),
            backlog: Mutex::new(Backlog::default()),
            changed: Condvar::new(),
            foreground,
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
    pub(crate) fn store(&self, key: SliceKey, slice: Arc<Slice>) {
        let shared = &self.shared;
        shared.pending.insert(key, Arc::clone(&slice));
        let threads = self.started;
        if threads == 0 {
            let job = Job {
                seq: 0,
                key,
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
            slice,
            reserved,
        });
        shared.changed.notify_all();
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
        let foreground = Arc::new(AtomicUsize::new(1));
        let memory = MemoryStore::new(0);
        let storer = Storer::new(memory.clone(), DiskStore::disabled(), 2, foreground);
        for (key, slice) in slices(20) {
            storer.store(key, slice);
        }
        storer.flush();
        assert!(lock(&storer.shared.backlog).in_flight.is_empty());
        assert!(storer.shared.pending.is_empty());
        assert!(storer.stored_bytes() > 0);
    }

    #[test]
    fn storing_holds_back_during_requests_and_catches_up_after() {
        let foreground = Arc::new(AtomicUsize::new(1));
        let memory = MemoryStore::new(64 << 20);
        let storer = Storer::new(
            memory.clone(),
            DiskStore::disabled(),
            2,
            Arc::clone(&foreground),
        );
        let all = slices(8);
        for (key, slice) in all.clone() {
            storer.store(key, slice);
        }
        // Room in the budget: nothing waits, so nothing is stored while the request runs, and
        // every slice is served from the pending map meanwhile.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(memory.stats().entries, 0);
        for (key, slice) in &all {
            assert!(Arc::ptr_eq(&storer.pending(*key).unwrap(), slice));
        }
        foreground.store(0, Ordering::Relaxed);
        storer.flush();
        assert_eq!(memory.stats().entries, 8);
        assert!(all.iter().all(|(key, _)| !storer.is_pending(*key)));
    }

    #[test]
    fn flush_waits_for_what_was_handed_over_not_for_later_slices() {
        // Another thread keeps storing while we flush: flush must still return.
        let memory = MemoryStore::new(64 << 20);
        let storer = Storer::new(memory.clone(), DiskStore::disabled(), 2, Arc::default());
        let first = slices(4);
        for (key, slice) in first.clone() {
            storer.store(key, slice);
        }
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut z = 100;
                while !stop.load(Ordering::Relaxed) {
                    for (_, slice) in slices(1) {
                        storer.store(SliceKey::new(1, z), slice);
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
        let foreground = Arc::new(AtomicUsize::new(1));
        let one = slice_bytes(&slices(1)[0].1);
        let memory = MemoryStore::new(3 * one);
        let storer = Storer::new(
            memory.clone(),
            DiskStore::disabled(),
            1,
            Arc::clone(&foreground),
        );
        for (key, slice) in slices(2) {
            storer.store(key, slice);
        }
        // Two slices wait (held back by the request), borrowing two thirds of the budget.
        assert_eq!(memory.room(), one);
        foreground.store(0, Ordering::Relaxed);
        storer.flush();
        assert_eq!(memory.room(), 3 * one - memory.bytes());
    }

    #[test]
    fn without_threads_the_caller_stores() {
        let memory = MemoryStore::new(64 << 20);
        let storer = Storer::new(memory.clone(), DiskStore::disabled(), 0, Arc::default());
        for (key, slice) in slices(3) {
            storer.store(key, slice);
            assert!(memory.contains(key) && !storer.is_pending(key));
        }
    }
}
