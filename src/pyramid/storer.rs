//! Storing behind the request: a generated slice is handed to a background thread that
//! encodes it and keeps it in both tiers, so that a request waits for decoding and the kernel
//! only. Until it is stored, the slice is served from a small pending map, so nothing is
//! generated twice meanwhile. The queue is bounded: when it is full the caller stores the
//! slice itself (back-pressure, and memory stays bounded by a few slices).

use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use dashmap::DashMap;

use crate::codec::{self, FilterChoice};
use crate::geometry::SliceKey;
use crate::slice::Slice;
use crate::store::{Blob, Counter, DiskStore, MemoryStore};

/// Slices waiting for the storing thread.
const QUEUE: usize = 4;

/// A slice handed to the storing thread.
type Job = (SliceKey, Arc<Slice>);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
struct Shared {
    memory: MemoryStore,
    disk: DiskStore,
    pending: DashMap<SliceKey, Arc<Slice>>,
    stored_bytes: Counter,
    backlog: Mutex<usize>,
    drained: Condvar,
}

impl Shared {
    fn keep(&self, key: SliceKey, blob: Blob) {
        // A failed disk write is counted and warned about by the disk tier; the blob is still
        // served from memory.
        let _ = self.disk.put(key, &blob);
        self.stored_bytes.add(blob.len() as u64);
        self.memory.insert(key, blob);
    }

    fn store_now(&self, key: SliceKey, slice: &Arc<Slice>) {
        self.keep(key, codec::encode(slice, key, FilterChoice::Auto));
        // Only our own entry: a later generation of the same key may have replaced it.
        self.pending.remove_if(&key, |_, p| Arc::ptr_eq(p, slice));
    }
}

/// The background storing thread and its pending map.
#[derive(Debug)]
pub(crate) struct Storer {
    shared: Arc<Shared>,
    tx: Mutex<Option<SyncSender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Storer {
    pub(crate) fn new(memory: MemoryStore, disk: DiskStore) -> Storer {
        let shared = Arc::new(Shared {
            memory,
            disk,
            pending: DashMap::new(),
            stored_bytes: Counter::default(),
            backlog: Mutex::new(0),
            drained: Condvar::new(),
        });
        let (tx, jobs) = mpsc::sync_channel::<Job>(QUEUE);
        let worker = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("lodcache-store".into())
            .spawn(move || {
                for (key, slice) in jobs {
                    worker.store_now(key, &slice);
                    let mut backlog = lock(&worker.backlog);
                    *backlog -= 1;
                    if *backlog == 0 {
                        worker.drained.notify_all();
                    }
                }
            });
        // Without a thread (the system refused one) every store happens on the caller.
        let (tx, thread) = match thread {
            Ok(handle) => (Some(tx), Some(handle)),
            Err(e) => {
                log::warn!("lodcache: no storing thread ({e}); storing on the caller");
                (None, None)
            }
        };
        Storer {
            shared,
            tx: Mutex::new(tx),
            thread: Mutex::new(thread),
        }
    }

    /// Stores `slice` as `key`: behind the caller when the queue has room, else right now.
    pub(crate) fn store(&self, key: SliceKey, slice: Arc<Slice>) {
        self.shared.pending.insert(key, Arc::clone(&slice));
        let tx = lock(&self.tx).clone();
        let Some(tx) = tx else {
            self.shared.store_now(key, &slice);
            return;
        };
        *lock(&self.shared.backlog) += 1;
        match tx.try_send((key, slice)) {
            Ok(()) => {}
            Err(TrySendError::Full((key, slice)) | TrySendError::Disconnected((key, slice))) => {
                self.settle(1);
                self.shared.store_now(key, &slice);
            }
        }
    }

    fn settle(&self, n: usize) {
        let mut backlog = lock(&self.shared.backlog);
        *backlog -= n;
        if *backlog == 0 {
            self.shared.drained.notify_all();
        }
    }

    /// Keeps an already encoded blob in both tiers, on the caller.
    pub(crate) fn keep(&self, key: SliceKey, blob: Blob) {
        self.shared.keep(key, blob);
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

    /// Waits until every slice handed over so far is stored.
    pub(crate) fn flush(&self) {
        let mut backlog = lock(&self.shared.backlog);
        while *backlog > 0 {
            backlog = self
                .shared
                .drained
                .wait(backlog)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

impl Drop for Storer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has stored everything queued.
        lock(&self.tx).take();
        if let Some(thread) = lock(&self.thread).take() {
            let _ = thread.join();
        }
    }
}
