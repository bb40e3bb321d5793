//! The two cache tiers that keep blobs (see [`crate::codec`]): memory and disk.
//!
//! - [`MemoryStore`]: compressed blobs under one exact byte budget, evicted by priority (demand
//!   per level), then least recently used (see [`memory`] for why).
//! - [`DiskStore`]: one file per blob in a cache folder, written atomically, checked on every
//!   read, invalidated per source slice through a manifest, and kept under a byte budget.
//!
//! Both tiers hold blobs, never decoded slices: a memory-tier hit costs one LZ4 decode, and the
//! same budget holds about twice as many 16-bit CT slices as raw buffers would.

pub mod disk;
mod manifest;
pub mod memory;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use disk::{DiskMode, DiskOptions, DiskStats, DiskStore, blob_path, default_cache_dir};
pub use manifest::{Manifest, SourceRecord};
pub use memory::{MemoryStats, MemoryStore};

/// A blob as the tiers hold it: immutable bytes shared between readers.
pub type Blob = Arc<[u8]>;

/// How valuable a blob is to keep in a tier: higher stays longer, equal values go by recency.
/// See [`MemoryStore::set_priority`] and [`DiskStore::set_priority`].
pub type PriorityFn = Arc<dyn Fn(crate::geometry::SliceKey) -> f64 + Send + Sync>;

/// A statistics counter: relaxed atomic, monotonic.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn incr(&self) {
        self.add(1);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}
