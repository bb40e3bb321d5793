//! The cache tiers that keep blobs (see [`crate::codec`]), and [`Tiers`], their one owner.
//!
//! - [`MemoryStore`]: compressed blobs under one exact byte budget, evicted by priority (demand
//!   per level), then least recently used (see [`memory`] for why).
//! - [`DiskStore`]: one file per blob in a cache folder, written atomically, checked on every
//!   read against the sources it must be made from, invalidated per source slice through a
//!   manifest, and kept under a byte budget.
//! - `ObjectStoreTier` (feature `object-store`, module `object`): blobs as objects in an S3
//!   or Google Cloud Storage bucket or an Azure container, shared by every machine, behind the
//!   disk.
//! - Any other [`Tier`] goes behind the disk too: [`Tiers`] asks the tiers in order and
//!   promotes what a lower tier finds into the ones above it.
//! - [`Tiers`] owns them all: lookup (memory, the slices waiting to be stored, then each lower
//!   tier), storing behind the request (background threads encode a generated slice and keep it
//!   in every tier; until then it is served from a pending map), `contains`, removal, budgets
//!   and statistics. The pyramid asks it for slices and hands it what it generates, nothing
//!   else.
//!
//! The tiers hold blobs, never decoded slices: a memory-tier hit costs one LZ4 decode, and the
//! same budget holds about twice as many 16-bit CT slices as raw buffers would.

pub mod disk;
mod folder;
mod manifest;
pub mod memory;
#[cfg(feature = "object-store")]
pub mod object;
mod storer;
mod tiers;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

pub use disk::{
    DiskMode, DiskOptions, DiskStats, DiskStore, Removed, blob_path, default_cache_dir,
    not_a_cache_folder, remove_cache_folder,
};
pub use manifest::{Fingerprint, Manifest, SourceRecord};
pub use memory::{MemoryStats, MemoryStore};
#[cfg(feature = "object-store")]
pub use object::{ObjectStoreOptions, ObjectStoreStats, ObjectStoreTier, default_local_cache_dir};
pub use tiers::{Hit, Tiers};

pub use crate::codec::Blob;
use crate::error::Result;
use crate::geometry::SliceKey;

pub(crate) use folder::{CacheFolder, Entry as FolderEntry};

/// How valuable a blob is to keep in a tier: higher stays longer, equal values go by recency.
/// See [`Tier::set_priority`].
pub type PriorityFn = Arc<dyn Fn(SliceKey) -> f64 + Send + Sync>;

/// A cache tier: a place that keeps blobs by slice key. Memory, disk and (later) object-store
/// tiers implement it; [`Tiers`] asks them in order.
///
/// What every tier promises (checked for each by one contract test, `tests/tier_contract.rs`):
/// - `get` returns a blob only if it is a sound blob of that key made from the sources the tier
///   expects (tiers that store outside the process check every read); anything else is a miss,
///   counted, and removed where the tier may remove it.
/// - `put` then `get` returns the same bytes, unless the blob alone exceeds the budget (then it
///   is not kept) or the budget evicted it; `remove` makes it a miss. A tier shared between
///   processes (the object store) keeps a sound blob it already holds for the key instead of
///   replacing it, so that racing writers never overwrite each other (sound blobs of one key
///   and origin hold the same slice); a damaged or stale one it replaces.
/// - `contains` is `get` without reading or counting (it may say yes to a blob that a later
///   `get` finds damaged).
/// - Bytes held stay within the budget (the memory tier exactly; others evict down to a share
///   of it after a write that passed it); under pressure lower priority goes first, then least
///   recently used.
pub trait Tier: Send + Sync + std::fmt::Debug {
    /// A short name for statistics and warnings: `memory`, `disk`, ...
    fn name(&self) -> &'static str;
    /// The blob of `key`, if this tier holds a sound one (counted as a hit or a miss).
    fn get(&self, key: SliceKey) -> Option<Blob>;
    /// Keeps `blob` as the blob of `key`, replacing an older one (a shared tier keeps a sound
    /// one it holds; see the trait's docs).
    ///
    /// # Errors
    /// A write that failed ([`crate::Error::Io`] naming the place); the tier counts it and
    /// stays usable.
    fn put(&self, key: SliceKey, blob: &Blob) -> Result<()>;
    /// Whether a blob of `key` is held (not read, not counted).
    fn contains(&self, key: SliceKey) -> bool;
    /// Drops the blob of `key`, if any.
    fn remove(&self, key: SliceKey);
    /// Records that the blob of `key` failed a later check: counted and dropped.
    fn report_corrupt(&self, key: SliceKey, reason: &str);
    /// The counters every tier keeps.
    fn tier_stats(&self) -> TierStats;
    /// Sets how valuable each blob is to keep under the budget (higher stays longer; ties go by
    /// recency). Default: every blob 0, so plain least-recently-used.
    fn set_priority(&self, priority: PriorityFn);
    /// Warnings about the tier (an unusable place, failed writes), oldest first.
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The counters every [`Tier`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct TierStats {
    /// Reads that found a sound blob.
    pub hits: u64,
    /// Reads that found none (damaged and stale blobs included).
    pub misses: u64,
    /// Damaged or stale blobs found and dropped.
    pub corrupt: u64,
    /// Blobs kept.
    pub writes: u64,
    /// Blobs dropped to stay within the budget.
    pub evictions: u64,
    /// Bytes held.
    pub bytes: u64,
    /// Blobs held.
    pub entries: u64,
    /// The byte budget.
    pub budget: Budget,
}

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
