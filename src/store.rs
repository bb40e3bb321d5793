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

pub use crate::codec::Blob;

/// How valuable a blob is to keep in a tier: higher stays longer, equal values go by recency.
/// See [`MemoryStore::set_priority`] and [`DiskStore::set_priority`].
pub type PriorityFn = Arc<dyn Fn(crate::geometry::SliceKey) -> f64 + Send + Sync>;

/// A byte budget as people read it: `unlimited` for `u64::MAX` (the "no budget" value of every
/// budget setting), else in binary units (`512 MiB`, `1.5 GiB`, `700 B`).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Budget(pub u64);

impl Budget {
    /// No limit.
    pub const UNLIMITED: Budget = Budget(u64::MAX);

    /// The limit in bytes, or `None` when unlimited.
    pub fn bytes(self) -> Option<u64> {
        (self.0 != u64::MAX).then_some(self.0)
    }
}

impl std::fmt::Display for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
        let Some(bytes) = self.bytes() else {
            return f.write_str("unlimited");
        };
        let mut value = bytes as f64;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        if unit == 0 || value.fract() == 0.0 {
            write!(f, "{value:.0} {}", UNITS[unit])
        } else {
            write!(f, "{value:.1} {}", UNITS[unit])
        }
    }
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

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

#[cfg(test)]
mod tests {
    use super::Budget;

    #[test]
    fn budgets_print_in_binary_units_and_unlimited_as_a_word() {
        assert_eq!(Budget(u64::MAX).to_string(), "unlimited");
        assert_eq!(Budget(512 << 20).to_string(), "512 MiB");
        assert_eq!(Budget(3 << 29).to_string(), "1.5 GiB");
        assert_eq!(Budget(700).to_string(), "700 B");
        assert_eq!(format!("{:?}", Budget::UNLIMITED), "unlimited");
        assert_eq!(Budget(10).bytes(), Some(10));
    }
}
