//! The memory tier: compressed blobs in a byte-budgeted moka cache.
//!
//! # Eviction policy: LRU, on purpose
//! moka's default policy is TinyLFU: a new entry is *admitted* only when its key has been seen
//! more often than the entry it would evict. For a viewer that is the wrong trade: a slice that
//! was just generated (costly: decoding and reducing up to `2^n` source slices) is exactly the
//! one the user is looking at and will ask for again on the next slider move, but TinyLFU would
//! often refuse it because it has no history yet. Plain LRU always keeps the newest work and
//! drops what has not been looked at for longest. Preferring the most-requested *levels* under
//! pressure is a separate, explicit mechanism (demand priority) rather than an accident of the
//! admission filter.
//!
//! Entries are weighed by their compressed length in bytes (clamped to `u32::MAX`), so the
//! budget bounds the memory the blobs actually take. moka applies evictions in batches: the
//! weighted size may exceed the budget briefly between maintenance runs;
//! [`MemoryStore::run_pending_tasks`] brings it back under.

use std::sync::Arc;

use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use moka::sync::Cache;

use super::{Blob, Counter};
use crate::geometry::SliceKey;

/// Counters of the memory tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct MemoryStats {
    /// Lookups that found the blob.
    pub hits: u64,
    /// Lookups that did not.
    pub misses: u64,
    /// Blobs inserted.
    pub insertions: u64,
    /// Blobs dropped to stay within the budget.
    pub evictions: u64,
    /// Bytes held (sum of blob lengths).
    pub bytes: u64,
    /// Blobs held.
    pub entries: u64,
    /// The byte budget.
    pub budget: u64,
}

#[derive(Debug, Default)]
struct Counters {
    hits: Counter,
    misses: Counter,
    insertions: Counter,
    evictions: Counter,
}

/// Compressed blobs in memory under one byte budget, least recently used evicted first.
///
/// Cheap to clone; clones share the cache. `Send + Sync`.
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<SliceKey, Blob>,
    counters: Arc<Counters>,
    budget: u64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("budget", &self.budget)
            .field("bytes", &self.cache.weighted_size())
            .finish()
    }
}

fn weigh(_key: &SliceKey, blob: &Blob) -> u32 {
    u32::try_from(blob.len()).unwrap_or(u32::MAX)
}

impl MemoryStore {
    /// A memory tier holding at most `budget` bytes of blobs.
    pub fn new(budget: u64) -> MemoryStore {
        let counters = Arc::new(Counters::default());
        let listener_counters = Arc::clone(&counters);
        let cache = Cache::builder()
            .max_capacity(budget)
            .weigher(weigh)
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(move |_key, _blob, cause| {
                if cause == RemovalCause::Size {
                    listener_counters.evictions.incr();
                }
            })
            .build();
        MemoryStore {
            cache,
            counters,
            budget,
        }
    }

    /// The blob of `key`, if held (counted as a hit or a miss; a hit makes it most recent).
    pub fn get(&self, key: SliceKey) -> Option<Blob> {
        let found = self.cache.get(&key);
        match found {
            Some(_) => self.counters.hits.incr(),
            None => self.counters.misses.incr(),
        }
        found
    }

    /// The blob of `key`, if held, without counting a hit or a miss.
    pub fn peek(&self, key: SliceKey) -> Option<Blob> {
        self.cache.get(&key)
    }

    /// Whether `key` is held, without counting or touching it.
    pub fn contains(&self, key: SliceKey) -> bool {
        self.cache.contains_key(&key)
    }

    /// Keeps `blob` as the blob of `key`, replacing any older one. A blob larger than the whole
    /// budget is not kept.
    pub fn insert(&self, key: SliceKey, blob: Blob) {
        if blob.len() as u64 > self.budget {
            return;
        }
        self.counters.insertions.incr();
        self.cache.insert(key, blob);
    }

    /// Drops the blob of `key` (e.g. one that failed to decode).
    pub fn remove(&self, key: SliceKey) {
        self.cache.invalidate(&key);
    }

    /// Drops every blob.
    pub fn clear(&self) {
        self.cache.invalidate_all();
        self.cache.run_pending_tasks();
    }

    /// Applies pending evictions now (moka batches them), so that the byte count is exact.
    pub fn run_pending_tasks(&self) {
        self.cache.run_pending_tasks();
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes held now (may exceed the budget briefly until pending evictions run).
    pub fn bytes(&self) -> u64 {
        self.cache.weighted_size()
    }

    /// The counters.
    pub fn stats(&self) -> MemoryStats {
        MemoryStats {
            hits: self.counters.hits.get(),
            misses: self.counters.misses.get(),
            insertions: self.counters.insertions.get(),
            evictions: self.counters.evictions.get(),
            bytes: self.cache.weighted_size(),
            entries: self.cache.entry_count(),
            budget: self.budget,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: usize) -> Blob {
        vec![7u8; n].into()
    }

    fn key(z: u32) -> SliceKey {
        SliceKey::new(1, z)
    }

    #[test]
    fn least_recently_used_blob_is_evicted_first() {
        let m = MemoryStore::new(3_000);
        m.insert(key(0), blob(1_000));
        m.insert(key(1), blob(1_000));
        m.insert(key(2), blob(1_000));
        m.run_pending_tasks();
        // Touch 0: now 1 is the least recently used.
        assert!(m.get(key(0)).is_some());
        m.run_pending_tasks();
        m.insert(key(3), blob(1_000));
        m.run_pending_tasks();
        assert!(m.contains(key(0)), "recently read blob was evicted");
        assert!(!m.contains(key(1)), "least recently used blob survived");
        assert!(m.contains(key(2)) && m.contains(key(3)));
        assert_eq!(m.stats().evictions, 1);
    }

    #[test]
    fn a_new_blob_is_admitted_even_against_popular_ones() {
        // TinyLFU would refuse the newcomer here: the residents were read many times.
        let m = MemoryStore::new(2_000);
        m.insert(key(0), blob(1_000));
        m.insert(key(1), blob(1_000));
        for _ in 0..50 {
            m.get(key(0));
            m.get(key(1));
        }
        m.run_pending_tasks();
        m.insert(key(9), blob(1_000));
        m.run_pending_tasks();
        assert!(
            m.contains(key(9)),
            "freshly generated blob was not admitted"
        );
        assert_eq!(m.stats().entries, 2);
    }

    #[test]
    fn weighted_size_stays_within_budget() {
        let budget = 50_000;
        let m = MemoryStore::new(budget);
        for z in 0..500 {
            m.insert(key(z), blob(300 + (z as usize * 37) % 2_000));
            if z % 50 == 0 {
                m.run_pending_tasks();
                assert!(m.bytes() <= budget + 2_300, "{} over {budget}", m.bytes());
            }
        }
        m.run_pending_tasks();
        let s = m.stats();
        assert!(s.bytes <= budget, "{} > {budget}", s.bytes);
        assert!(s.bytes > budget / 2, "cache nearly empty: {}", s.bytes);
        assert!(s.evictions > 400);
        assert_eq!(s.insertions, 500);
    }

    #[test]
    fn blob_larger_than_budget_is_not_kept_and_counters_add_up() {
        let m = MemoryStore::new(100);
        m.insert(key(0), blob(101));
        assert!(m.get(key(0)).is_none());
        m.insert(key(1), blob(60));
        assert!(m.get(key(1)).is_some());
        m.remove(key(1));
        assert!(m.get(key(1)).is_none());
        let s = m.stats();
        assert_eq!((s.hits, s.misses, s.insertions), (1, 2, 1));
    }
}
