//! The one owner of the tiers.

use std::sync::Arc;

use super::storer::{Foreground, Storer};
use super::{Blob, DiskStore, Fingerprint, MemoryStore, PriorityFn, Tier, TierStats};
use crate::codec;
use crate::error::Result;
use crate::geometry::SliceKey;
use crate::slice::Slice;

/// Where [`Tiers::slice`] found a slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Hit {
    /// The memory tier.
    Memory,
    /// Generated moments ago, waiting to be stored.
    Pending,
    /// A tier behind memory: 0 is the disk, 1 and up any tiers added behind it. The slice is
    /// now in memory too (and in the lower tiers above the one that had it).
    Lower(usize),
}

/// The memory tier, the disk tier and any tiers behind the disk, owned together: lookup in
/// that order with promotion, storing behind the request, removal, budgets and statistics.
///
/// Cheap to clone; clones share everything. `Send + Sync`. See the [module docs](super).
#[derive(Clone, Debug)]
pub struct Tiers {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    memory: MemoryStore,
    disk: DiskStore,
    /// The disk, then the tiers behind it.
    lower: Vec<Arc<dyn Tier>>,
    fingerprint: Fingerprint,
    storer: Storer,
    pool: Option<Arc<rayon::ThreadPool>>,
}

impl Tiers {
    /// Tiers over `memory`, then `disk`, then `behind` (in order), checking blobs against the
    /// disk's fingerprint of the sources, with `storing_threads` background threads that encode
    /// and store generated slices (0: the caller stores).
    pub fn new(
        memory: MemoryStore,
        disk: DiskStore,
        behind: Vec<Arc<dyn Tier>>,
        storing_threads: usize,
    ) -> Tiers {
        Tiers::with_pool(memory, disk, behind, storing_threads, None)
    }

    /// [`Tiers::new`] decoding blobs on `pool` (else on the current rayon pool).
    pub(crate) fn with_pool(
        memory: MemoryStore,
        disk: DiskStore,
        behind: Vec<Arc<dyn Tier>>,
        storing_threads: usize,
        pool: Option<Arc<rayon::ThreadPool>>,
    ) -> Tiers {
        let fingerprint = disk.fingerprint().clone();
        let mut lower: Vec<Arc<dyn Tier>> = vec![Arc::new(disk.clone())];
        lower.extend(behind);
        let storer = Storer::new(
            memory.clone(),
            lower.clone(),
            fingerprint.clone(),
            storing_threads,
        );
        Tiers {
            inner: Arc::new(Inner {
                memory,
                disk,
                lower,
                fingerprint,
                storer,
                pool,
            }),
        }
    }

    /// The memory tier.
    pub fn memory(&self) -> &MemoryStore {
        &self.inner.memory
    }

    /// The disk tier.
    pub fn disk(&self) -> &DiskStore {
        &self.inner.disk
    }

    /// The tiers behind memory: the disk first.
    pub fn lower(&self) -> &[Arc<dyn Tier>] {
        &self.inner.lower
    }

    /// What every blob is checked against.
    pub fn fingerprint(&self) -> &Fingerprint {
        &self.inner.fingerprint
    }

    /// Decodes `blob` as `key`; a blob that fails is dropped from every tier and counted.
    /// Blobs in the tiers were verified (checksum included) when they entered them, so the
    /// checksum is not computed again here; every other check is, the origin included.
    fn decode(&self, key: SliceKey, blob: &Blob) -> Option<Slice> {
        let id = self.inner.fingerprint.id(key)?;
        let decoded = match &self.inner.pool {
            Some(pool) => pool.install(|| codec::decode_verified(blob, &id)),
            None => codec::decode_verified(blob, &id),
        };
        match decoded {
            Ok(s) => Some(s),
            Err(e) => {
                self.inner.memory.remove(key);
                for tier in &self.inner.lower {
                    tier.report_corrupt(key, &e.to_string());
                }
                None
            }
        }
    }

    /// Slice `key` from the tiers: memory, else waiting to be stored, else each lower tier in
    /// turn (a hit there is promoted to memory and to the lower tiers above it).
    pub fn slice(&self, key: SliceKey) -> Option<(Arc<Slice>, Hit)> {
        if let Some(blob) = self.inner.memory.get(key)
            && let Some(s) = self.decode(key, &blob)
        {
            return Some((Arc::new(s), Hit::Memory));
        }
        if let Some(s) = self.inner.storer.pending(key) {
            return Some((s, Hit::Pending));
        }
        for (i, tier) in self.inner.lower.iter().enumerate() {
            let Some(blob) = tier.get(key) else {
                continue;
            };
            let Some(slice) = self.decode(key, &blob) else {
                continue;
            };
            for above in &self.inner.lower[..i] {
                let _ = above.put(key, &blob);
            }
            self.inner.memory.insert(key, blob);
            return Some((Arc::new(slice), Hit::Lower(i)));
        }
        None
    }

    /// Slice `key` if it is waiting to be stored or in memory, without counting a lookup: for a
    /// second look inside a single flight, after a miss.
    pub fn upper(&self, key: SliceKey) -> Option<(Arc<Slice>, Hit)> {
        if let Some(s) = self.inner.storer.pending(key) {
            return Some((s, Hit::Pending));
        }
        let blob = self.inner.memory.peek(key)?;
        let s = self.decode(key, &blob)?;
        Some((Arc::new(s), Hit::Memory))
    }

    /// Stores a generated slice in every tier, behind the caller: it is served from the
    /// pending map until it is encoded and kept (see `storer.rs` for how waiting slices share
    /// the memory budget). `epoch` is the sources' epoch read before the slice was made
    /// ([`Fingerprint::epoch`]); a slice made from sources taken again since is not kept.
    pub fn store(&self, key: SliceKey, slice: Arc<Slice>, epoch: u64) {
        self.inner.storer.store(key, slice, epoch);
    }

    /// Whether slice `key` is stored (or being stored) in a tier.
    pub fn contains(&self, key: SliceKey) -> bool {
        self.inner.memory.contains(key)
            || self.inner.storer.is_pending(key)
            || self.inner.lower.iter().any(|t| t.contains(key))
    }

    /// Whether slice `key` was generated and waits to be stored.
    #[cfg(feature = "object-store")]
    pub(crate) fn is_pending(&self, key: SliceKey) -> bool {
        self.inner.storer.is_pending(key)
    }

    /// The blob of `key` from memory or the disk (checked as every read is), without asking
    /// the tiers behind the disk.
    #[cfg(feature = "object-store")]
    pub(crate) fn local_blob(&self, key: SliceKey) -> Option<Blob> {
        self.inner
            .memory
            .peek(key)
            .or_else(|| Tier::get(&self.inner.disk, key))
    }

    /// Drops slice `key` from every tier, the pending map included (its sources changed).
    pub fn invalidate(&self, key: SliceKey) {
        self.inner.storer.forget(key);
        self.inner.memory.remove(key);
        for tier in &self.inner.lower {
            tier.remove(key);
        }
    }

    /// Waits until every slice handed over before this call is stored.
    pub fn flush(&self) {
        self.inner.storer.flush();
    }

    /// Bytes of blobs stored so far.
    pub fn stored_bytes(&self) -> u64 {
        self.inner.storer.stored_bytes()
    }

    /// Sets how valuable each blob is to keep, in every tier.
    pub fn set_priority(&self, priority: PriorityFn) {
        self.inner.memory.set_priority(Arc::clone(&priority));
        for tier in &self.inner.lower {
            tier.set_priority(Arc::clone(&priority));
        }
    }

    /// Warnings of every tier.
    pub fn warnings(&self) -> Vec<String> {
        self.inner.lower.iter().flat_map(|t| t.warnings()).collect()
    }

    /// Marks a request in progress until the guard drops: storing (and warm-up) hold back.
    pub(crate) fn enter(&self) -> Foreground<'_> {
        self.inner.storer.enter()
    }

    /// Waits until no request is in progress, `stop()` or `deadline`; whether it stopped
    /// early (for `stop` or the deadline).
    pub(crate) fn wait_idle(
        &self,
        stop: impl Fn() -> bool,
        deadline: Option<std::time::Instant>,
    ) -> bool {
        self.inner.storer.wait_idle(stop, deadline)
    }

    /// Wakes the waiters of [`Tiers::wait_idle`].
    pub(crate) fn wake(&self) {
        self.inner.storer.wake();
    }
}

impl Tier for Tiers {
    fn name(&self) -> &'static str {
        "tiers"
    }

    /// The blob of `key` from memory, else a lower tier (promoted), not decoded.
    fn get(&self, key: SliceKey) -> Option<Blob> {
        if let Some(blob) = self.inner.memory.get(key) {
            return Some(blob);
        }
        for (i, tier) in self.inner.lower.iter().enumerate() {
            if let Some(blob) = tier.get(key) {
                for above in &self.inner.lower[..i] {
                    let _ = above.put(key, &blob);
                }
                self.inner.memory.insert(key, Arc::clone(&blob));
                return Some(blob);
            }
        }
        None
    }

    /// Keeps `blob` in memory and writes it to every lower tier (on the caller).
    fn put(&self, key: SliceKey, blob: &Blob) -> Result<()> {
        let mut first_error = Ok(());
        for tier in &self.inner.lower {
            if let Err(e) = tier.put(key, blob)
                && first_error.is_ok()
            {
                first_error = Err(e);
            }
        }
        self.inner.memory.insert(key, Arc::clone(blob));
        first_error
    }

    fn contains(&self, key: SliceKey) -> bool {
        self.inner.memory.contains(key) || self.inner.lower.iter().any(|t| t.contains(key))
    }

    fn remove(&self, key: SliceKey) {
        self.invalidate(key);
    }

    fn report_corrupt(&self, key: SliceKey, reason: &str) {
        self.inner.memory.remove(key);
        for tier in &self.inner.lower {
            tier.report_corrupt(key, reason);
        }
    }

    /// Lookups, damage and writes over every tier; bytes, entries and budget of the memory
    /// tier (the one whose budget bounds what the process holds).
    fn tier_stats(&self) -> TierStats {
        let memory = Tier::tier_stats(&self.inner.memory);
        let mut total = memory;
        for tier in &self.inner.lower {
            let s = tier.tier_stats();
            total.hits += s.hits;
            total.corrupt += s.corrupt;
        }
        // A miss of the whole is a miss of the last tier asked.
        total.misses = self
            .inner
            .lower
            .last()
            .map_or(memory.misses, |t| t.tier_stats().misses);
        total
    }

    fn set_priority(&self, priority: PriorityFn) {
        Tiers::set_priority(self, priority);
    }

    fn warnings(&self) -> Vec<String> {
        Tiers::warnings(self)
    }
}
