//! The two cache tiers that keep blobs (see [`crate::codec`]): memory and disk.
//!
//! - [`MemoryStore`]: a moka cache of compressed blobs, weighted by their byte length, with one
//!   byte budget. Eviction is least-recently-used (see [`memory`] for why not moka's default).
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

pub use disk::{
    DiskMode, DiskOptions, DiskStats, DiskStore, PriorityFn, blob_path, default_cache_dir,
};
pub use manifest::{Manifest, SourceRecord};
pub use memory::{MemoryStats, MemoryStore};

/// A blob as the tiers hold it: immutable bytes shared between readers.
pub type Blob = Arc<[u8]>;

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
