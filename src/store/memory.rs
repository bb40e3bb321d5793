//! The memory tier: compressed blobs under one byte budget, evicted by priority, then least
//! recently used.
//!
//! # Eviction policy, on purpose
//! - **Recency, not frequency admission.** Every new blob is admitted. moka's default TinyLFU
//!   admits a new entry only when its key has been seen more often than the entry it would
//!   evict; for a viewer that is the wrong trade: a slice just generated (costly: decoding and
//!   reducing up to `2^n` source slices) is the one on screen and asked for again on the next
//!   slider move, yet TinyLFU would often refuse it for lack of history.
//! - **Priority first.** An optional priority per blob (see [`MemoryStore::set_priority`];
//!   the pyramid derives it from request statistics per level) decides first: under pressure
//!   the blobs of the lowest priority go before any of a higher one, so the levels users ask for
//!   most stay resident. Equal priorities fall back to plain LRU, which is also the behaviour
//!   with no priority set.
//! - **The budget is exact.** Eviction happens inside the insert, so the bytes held never
//!   exceed the budget, not even briefly; entries are weighed by their byte length.
//!
//! This is why the tier is not a moka cache (as it was first): moka's policies cannot rank
//! entries by an outside priority, and its weighted size runs over the budget between
//! maintenance passes. One mutex guards the map; every operation under it is a few hash and
//! tree lookups (no I/O, no decoding), so it is not a point of contention next to the 0.2 ms a
//! hit spends decoding.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};

use super::{Blob, Budget, Counter, PriorityFn, Tier, TierStats};
use crate::error::Result;
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
    pub budget: super::Budget,
}

#[derive(Debug, Default)]
struct Counters {
    hits: Counter,
    misses: Counter,
    insertions: Counter,
    evictions: Counter,
    /// Blobs reported damaged by a later check ([`Tier::report_corrupt`]).
    corrupt: Counter,
}

#[derive(Debug)]
struct Entry {
    blob: Blob,
    tick: u64,
}

/// The blobs and their recency order, per level.
#[derive(Debug, Default)]
struct Lru {
    map: HashMap<SliceKey, Entry>,
    /// For each level, its blobs by last use (tick -> z), oldest first.
    order: BTreeMap<u32, BTreeMap<u64, u32>>,
    bytes: u64,
    /// Bytes of the budget lent to slices waiting to be stored (see [`MemoryStore::reserve`]).
    reserved: u64,
    clock: u64,
}

impl Lru {
    fn touch(&mut self, key: SliceKey) -> Option<Blob> {
        self.clock += 1;
        let clock = self.clock;
        let entry = self.map.get_mut(&key)?;
        let level = self.order.entry(key.level).or_default();
        level.remove(&entry.tick);
        level.insert(clock, key.z);
        entry.tick = clock;
        Some(Arc::clone(&entry.blob))
    }

    fn remove(&mut self, key: SliceKey) -> Option<Blob> {
        let entry = self.map.remove(&key)?;
        if let Some(level) = self.order.get_mut(&key.level) {
            level.remove(&entry.tick);
            if level.is_empty() {
                self.order.remove(&key.level);
            }
        }
        self.bytes -= entry.blob.len() as u64;
        Some(entry.blob)
    }

    fn insert(&mut self, key: SliceKey, blob: Blob) {
        self.remove(key);
        self.clock += 1;
        self.bytes += blob.len() as u64;
        self.order
            .entry(key.level)
            .or_default()
            .insert(self.clock, key.z);
        self.map.insert(
            key,
            Entry {
                blob,
                tick: self.clock,
            },
        );
    }

    /// The blob to evict: the least recently used of the lowest priority (each level's
    /// oldest blob is a candidate; the priority is asked of that blob).
    fn victim(&self, priority: Option<&PriorityFn>) -> Option<SliceKey> {
        self.order
            .iter()
            .filter_map(|(&level, by_tick)| {
                let (&tick, &z) = by_tick.iter().next()?;
                let key = SliceKey::new(level, z);
                let p = priority.map_or(0.0, |f| f(key));
                Some((p, tick, key))
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, _, key)| key)
    }
}

/// Compressed blobs in memory under one byte budget; see the module docs for the policy.
///
/// Cheap to clone; clones share the blobs. `Send + Sync`.
#[derive(Clone)]
pub struct MemoryStore {
    lru: Arc<Mutex<Lru>>,
    priority: Arc<RwLock<Option<PriorityFn>>>,
    counters: Arc<Counters>,
    budget: u64,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("budget", &Budget(self.budget))
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl MemoryStore {
    /// A memory tier holding at most `budget` bytes of blobs.
    pub fn new(budget: u64) -> MemoryStore {
        MemoryStore {
            lru: Arc::new(Mutex::new(Lru::default())),
            priority: Arc::new(RwLock::new(None)),
            counters: Arc::new(Counters::default()),
            budget,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets how valuable each blob is to keep (higher stays longer; equal values go by
    /// recency). Default: none, so plain least-recently-used.
    pub fn set_priority(&self, priority: PriorityFn) {
        *self
            .priority
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(priority);
    }

    /// The blob of `key`, if held (counted as a hit or a miss; a hit makes it most recent).
    pub fn get(&self, key: SliceKey) -> Option<Blob> {
        let found = self.lock().touch(key);
        match found {
            Some(_) => self.counters.hits.incr(),
            None => self.counters.misses.incr(),
        }
        found
    }

    /// The blob of `key`, if held, without counting a hit or a miss (it still becomes most
    /// recent).
    pub fn peek(&self, key: SliceKey) -> Option<Blob> {
        self.lock().touch(key)
    }

    /// Whether `key` is held, without counting or touching it.
    pub fn contains(&self, key: SliceKey) -> bool {
        self.lock().map.contains_key(&key)
    }

    /// Keeps `blob` as the blob of `key`, replacing any older one, and evicts what the budget
    /// requires (see the module docs). A blob larger than the whole budget is not kept.
    pub fn insert(&self, key: SliceKey, blob: Blob) {
        if blob.len() as u64 > self.budget {
            return;
        }
        self.counters.insertions.incr();
        self.change_and_evict(|lru| lru.insert(key, blob));
    }

    /// Applies `change` and evicts until blobs and lent bytes fit the budget again.
    fn change_and_evict(&self, change: impl FnOnce(&mut Lru)) {
        let priority = self
            .priority
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut evicted = Vec::new();
        {
            let mut lru = self.lock();
            change(&mut lru);
            while lru.bytes + lru.reserved > self.budget {
                let Some(victim) = lru.victim(priority.as_ref()) else {
                    break;
                };
                // Dropped outside the lock.
                evicted.extend(lru.remove(victim));
            }
        }
        self.counters.evictions.add(evicted.len() as u64);
    }

    /// Lends `bytes` of the budget to something held outside the tier (slices waiting to be
    /// stored), evicting what that requires; blobs then fit in what is left.
    pub(crate) fn reserve(&self, bytes: u64) {
        self.change_and_evict(|lru| lru.reserved += bytes);
    }

    /// Gives back bytes lent by [`MemoryStore::reserve`].
    pub(crate) fn release(&self, bytes: u64) {
        let mut lru = self.lock();
        lru.reserved = lru.reserved.saturating_sub(bytes);
    }

    /// Bytes of the budget neither held nor lent.
    pub(crate) fn room(&self) -> u64 {
        let lru = self.lock();
        self.budget.saturating_sub(lru.bytes + lru.reserved)
    }

    /// Drops the blob of `key` (e.g. one that failed to decode).
    pub fn remove(&self, key: SliceKey) {
        let removed = self.lock().remove(key);
        drop(removed);
    }

    /// Drops every blob (bytes lent to waiting slices stay lent).
    pub fn clear(&self) {
        let old = {
            let mut lru = self.lock();
            let reserved = lru.reserved;
            let old = std::mem::take(&mut *lru);
            lru.reserved = reserved;
            old
        };
        drop(old);
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes held now (never above the budget).
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// The counters.
    pub fn stats(&self) -> MemoryStats {
        let (bytes, entries) = {
            let lru = self.lock();
            (lru.bytes, lru.map.len() as u64)
        };
        MemoryStats {
            hits: self.counters.hits.get(),
            misses: self.counters.misses.get(),
            insertions: self.counters.insertions.get(),
            evictions: self.counters.evictions.get(),
            bytes,
            entries,
            budget: Budget(self.budget),
        }
    }
}

impl Tier for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn get(&self, key: SliceKey) -> Option<Blob> {
        MemoryStore::get(self, key)
    }

    fn put(&self, key: SliceKey, blob: &Blob) -> Result<()> {
        self.insert(key, Arc::clone(blob));
        Ok(())
    }

    fn contains(&self, key: SliceKey) -> bool {
        MemoryStore::contains(self, key)
    }

    fn remove(&self, key: SliceKey) {
        MemoryStore::remove(self, key);
    }

    fn report_corrupt(&self, key: SliceKey, _reason: &str) {
        self.counters.corrupt.incr();
        MemoryStore::remove(self, key);
    }

    fn tier_stats(&self) -> TierStats {
        let s = self.stats();
        TierStats {
            hits: s.hits,
            misses: s.misses,
            corrupt: self.counters.corrupt.get(),
            writes: s.insertions,
            evictions: s.evictions,
            bytes: s.bytes,
            entries: s.entries,
            budget: s.budget,
        }
    }

    fn set_priority(&self, priority: PriorityFn) {
        MemoryStore::set_priority(self, priority);
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
        // Touch 0: now 1 is the least recently used.
        assert!(m.get(key(0)).is_some());
        m.insert(key(3), blob(1_000));
        assert!(m.contains(key(0)), "recently read blob was evicted");
        assert!(!m.contains(key(1)), "least recently used blob survived");
        assert!(m.contains(key(2)) && m.contains(key(3)));
        assert_eq!(m.stats().evictions, 1);
    }

    #[test]
    fn lent_bytes_count_against_the_budget_until_given_back() {
        let m = MemoryStore::new(1000);
        for z in 0..4 {
            m.insert(key(z), blob(200));
        }
        assert_eq!(m.room(), 200);
        // Lending 500 evicts the two oldest blobs; new blobs fit in what is left.
        m.reserve(500);
        assert!(!m.contains(key(0)) && !m.contains(key(1)) && m.contains(key(3)));
        assert_eq!(m.room(), 100);
        m.insert(key(4), blob(200));
        assert_eq!(m.bytes() + 500, 900);
        assert!(!m.contains(key(2)));
        m.release(500);
        assert_eq!(m.room(), 600);
        m.insert(key(5), blob(200));
        assert!(m.contains(key(3)) && m.contains(key(4)));
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
        m.insert(key(9), blob(1_000));
        assert!(
            m.contains(key(9)),
            "freshly generated blob was not admitted"
        );
        assert_eq!(m.stats().entries, 2);
    }

    #[test]
    fn lower_priority_levels_go_first_and_ties_go_by_recency() {
        let m = MemoryStore::new(4_000);
        m.set_priority(Arc::new(|k: SliceKey| if k.level == 2 { 5.0 } else { 1.0 }));
        // Level 2 is older but more valuable.
        m.insert(SliceKey::new(2, 0), blob(1_000));
        m.insert(SliceKey::new(2, 1), blob(1_000));
        m.insert(SliceKey::new(1, 0), blob(1_000));
        m.insert(SliceKey::new(1, 1), blob(1_000));
        m.insert(SliceKey::new(1, 2), blob(1_000));
        assert!(m.contains(SliceKey::new(2, 0)) && m.contains(SliceKey::new(2, 1)));
        assert!(
            !m.contains(SliceKey::new(1, 0)),
            "oldest low-priority blob kept"
        );
        assert!(m.contains(SliceKey::new(1, 1)) && m.contains(SliceKey::new(1, 2)));
        // A high-priority newcomer pushes out low-priority blobs only.
        m.insert(SliceKey::new(2, 2), blob(1_000));
        m.insert(SliceKey::new(2, 3), blob(1_000));
        for z in 0..4 {
            assert!(m.contains(SliceKey::new(2, z)), "level 2 slice {z} evicted");
        }
        assert_eq!(m.stats().entries, 4);
    }

    #[test]
    fn weighted_size_never_exceeds_the_budget() {
        let budget = 50_000;
        let m = MemoryStore::new(budget);
        for z in 0..500 {
            m.insert(key(z), blob(300 + (z as usize * 37) % 2_000));
            assert!(m.bytes() <= budget, "{} over {budget}", m.bytes());
        }
        let s = m.stats();
        assert!(s.bytes > budget - 2_300, "cache far from full: {}", s.bytes);
        assert!(s.evictions > 400);
        assert_eq!(s.insertions, 500);
        let held: u64 = (0..500)
            .filter_map(|z| m.peek(key(z)))
            .map(|b| b.len() as u64)
            .sum();
        assert_eq!(held, s.bytes, "byte count drifted from the blobs held");
    }

    #[test]
    fn blob_larger_than_budget_is_not_kept_and_counters_add_up() {
        let m = MemoryStore::new(100);
        m.insert(key(0), blob(101));
        assert!(m.get(key(0)).is_none());
        m.insert(key(1), blob(60));
        assert!(m.get(key(1)).is_some());
        m.insert(key(1), blob(70));
        assert_eq!(m.bytes(), 70, "a replaced blob's bytes were not released");
        m.remove(key(1));
        assert!(m.get(key(1)).is_none());
        let s = m.stats();
        assert_eq!((s.hits, s.misses, s.insertions, s.bytes), (1, 2, 2, 0));
    }

    #[test]
    fn concurrent_use_keeps_the_books_straight() {
        let m = MemoryStore::new(20_000);
        std::thread::scope(|s| {
            for t in 0..4u32 {
                let m = m.clone();
                s.spawn(move || {
                    for i in 0..2_000u32 {
                        let k = SliceKey::new(1 + t % 2, (i * 7 + t) % 60);
                        if i % 3 == 0 {
                            m.insert(k, blob(500 + (i as usize % 7) * 100));
                        } else {
                            m.get(k);
                        }
                        assert!(m.bytes() <= 20_000);
                    }
                });
            }
        });
        let lru = m.lock();
        let sum: u64 = lru.map.values().map(|e| e.blob.len() as u64).sum();
        assert_eq!(sum, lru.bytes);
        let ordered: usize = lru.order.values().map(BTreeMap::len).sum();
        assert_eq!(ordered, lru.map.len());
    }
}
