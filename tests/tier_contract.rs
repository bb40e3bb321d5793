//! One contract for every cache tier (issue 16, item 2; the pattern of zarrs'
//! `store_test.rs`): get, put, contains, remove, budget, priority and statistics as the doc of
//! [`lodcache::store::Tier`] states them, written once and run against the memory tier, the
//! disk tier and the combined [`Tiers`]. A tier that keeps blobs outside the process (the disk,
//! and the tiers over it) is also handed damaged and foreign entries in its place, as a broken
//! disk or another process would leave them: none is ever returned, each is counted and
//! removed, and the tier stays usable.
//!
//! A new tier plugs in with a function that makes a [`Subject`] and one line, as the object
//! store does: `#[test] fn object_store_keeps_the_contract() { contract(object_store) }`. The
//! object store runs against a real S3 server (SeaweedFS, see `common/s3.rs`): started for the
//! test, or the one `.ci/scale-test` started; skipped (with a message) when there is none
//! (unless `LODCACHE_REQUIRE_S3=1`) or when `LODCACHE_SKIP_S3=1` says so. With
//! `LODCACHE_TEST_CACHE_URL=az://...` it runs against that store instead (`.ci/cloud-test`:
//! Azurite).

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::Rng;
use lodcache::codec::{self, FilterChoice, Origin};
use lodcache::store::{
    Blob, Budget, DiskOptions, DiskStore, Fingerprint, Manifest, MemoryStore, Tier, TierStats,
    Tiers, blob_path,
};
use lodcache::{Phantom, Pixels, SampleType, Slice, SliceKey, Stack};

/// A tier under test: how to open it, and what its blobs must be made from.
struct Subject {
    /// Every blob the contract makes carries this fingerprint's origin (tiers that check
    /// origins refuse any other).
    fingerprint: Fingerprint,
    /// Opens the tier with a byte budget. Opening again sees what earlier openings left
    /// outside the process (a tier that keeps nothing outside starts empty).
    open: Box<dyn Fn(u64) -> Arc<dyn Tier>>,
    /// Where the tier keeps blobs outside the process, if it does: the contract puts damaged
    /// and foreign entries there.
    outside: Option<Box<dyn Outside>>,
    /// Whether a put keeps the sound blob already held for the key rather than replacing it
    /// (tiers shared between processes: see [`Tier::put`]).
    keeps_first: bool,
    tmp: tempfile::TempDir,
    /// A server the subject's tier needs, kept alive as long as the subject.
    _server: Option<Box<dyn std::any::Any>>,
}

/// Where a tier keeps blobs outside the process, as another process or a broken disk sees it.
trait Outside {
    /// Writes `bytes` where the blob of `key` belongs.
    fn plant(&self, key: SliceKey, bytes: &[u8]);
    /// Puts a link to `target` where the blob of `key` belongs; false where the place has no
    /// links.
    fn link(&self, key: SliceKey, target: &Path) -> bool;
    /// What is kept for `key`, if anything (not following a link).
    fn read(&self, key: SliceKey) -> Option<Vec<u8>>;
    /// Whether anything is where the blob of `key` belongs.
    fn exists(&self, key: SliceKey) -> bool;
}

/// A cache folder.
struct Folder(PathBuf);

impl Outside for Folder {
    fn plant(&self, key: SliceKey, bytes: &[u8]) {
        let path = blob_path(&self.0, key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, bytes).unwrap();
    }

    fn link(&self, key: SliceKey, target: &Path) -> bool {
        let path = blob_path(&self.0, key);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, &path).unwrap();
        true
    }

    fn read(&self, key: SliceKey) -> Option<Vec<u8>> {
        std::fs::read(blob_path(&self.0, key)).ok()
    }

    fn exists(&self, key: SliceKey) -> bool {
        std::fs::symlink_metadata(blob_path(&self.0, key)).is_ok()
    }
}

/// A small 8-bit phantom stack (64 x 48 x 32: level 1 has 16 slices of 32 x 24) and its
/// manifest.
fn stack(tmp: &Path) -> Manifest {
    let dir = tmp.join("scan");
    Phantom::new(64, 48, 32)
        .with_sample_type(SampleType::U8)
        .write(&dir)
        .unwrap();
    Manifest::of(&Stack::open(&dir).unwrap()).unwrap()
}

fn memory() -> Subject {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = stack(tmp.path());
    Subject {
        fingerprint: Fingerprint::of(&manifest),
        open: Box::new(|budget| Arc::new(MemoryStore::new(budget))),
        outside: None,
        keeps_first: false,
        tmp,
        _server: None,
    }
}

/// A tier that keeps blobs in a cache folder beside the stack: `open` makes it from the
/// folder's options (with the budget) and the stack's manifest.
fn in_folder(open: fn(&DiskOptions, &Manifest) -> Arc<dyn Tier>) -> Subject {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = stack(tmp.path());
    let cache = tmp.path().join("cache");
    let place = cache.clone();
    Subject {
        fingerprint: Fingerprint::of(&manifest),
        open: Box::new(move |budget| {
            open(&DiskOptions::new(&cache).with_budget(budget), &manifest)
        }),
        outside: Some(Box::new(Folder(place))),
        keeps_first: false,
        tmp,
        _server: None,
    }
}

fn disk() -> Subject {
    in_folder(|options, manifest| Arc::new(DiskStore::open(options, manifest)))
}

/// Memory over disk, both with the budget (so that what the whole holds is bounded as each
/// part's is), the caller storing.
fn tiers() -> Subject {
    in_folder(|options, manifest| {
        let memory = MemoryStore::new(options.budget);
        let disk = DiskStore::open(options, manifest);
        Arc::new(Tiers::new(memory, disk, Vec::new(), 0))
    })
}

/// A bucket prefix of the test store (S3, or the store at `LODCACHE_TEST_CACHE_URL`), its blobs
/// checked against the stack's portable fingerprint (as a pyramid with a cache URL makes it).
#[cfg(feature = "object-store")]
mod object {
    use super::*;
    use lodcache::store::ObjectStoreTier;

    /// The bucket, with the lineage's prefix.
    struct Objects {
        bucket: common::Bucket,
        root: String,
    }

    impl Objects {
        fn key(&self, key: SliceKey) -> String {
            format!("{}/{}/{:06}.blob", self.root, key.level, key.z)
        }
    }

    impl Outside for Objects {
        fn plant(&self, key: SliceKey, bytes: &[u8]) {
            self.bucket.put(&self.key(key), bytes);
        }

        fn link(&self, _key: SliceKey, _target: &Path) -> bool {
            false
        }

        fn read(&self, key: SliceKey) -> Option<Vec<u8>> {
            self.bucket.get(&self.key(key))
        }

        fn exists(&self, key: SliceKey) -> bool {
            self.read(key).is_some()
        }
    }

    /// `None` (with a message) when the S3 tests are told to skip.
    pub(super) fn subject() -> Option<Subject> {
        let s3 = common::remote("tier_contract")?;
        let tmp = tempfile::tempdir().unwrap();
        let manifest = stack(tmp.path()).portable();
        let fingerprint = Fingerprint::of(&manifest);
        let options = common::store_options(&s3);
        let open = {
            let (options, manifest, fingerprint) =
                (options.clone(), manifest.clone(), fingerprint.clone());
            move |budget: u64| {
                ObjectStoreTier::open(
                    &options.clone().with_budget(budget),
                    &manifest,
                    fingerprint.clone(),
                )
                .unwrap()
            }
        };
        let root = common::key_of(&open(u64::MAX).location());
        let outside = Objects {
            bucket: common::Bucket::of(&s3),
            root,
        };
        Some(Subject {
            fingerprint,
            open: Box::new(move |budget| Arc::new(open(budget))),
            outside: Some(Box::new(outside)),
            keeps_first: true,
            tmp,
            _server: Some(Box::new(s3)),
        })
    }
}

#[test]
#[cfg(feature = "object-store")]
fn object_store_keeps_the_contract() {
    if object::subject().is_none() {
        return;
    }
    contract(|| object::subject().unwrap());
}

#[test]
fn memory_tier_keeps_the_contract() {
    contract(memory);
}

#[test]
fn disk_tier_keeps_the_contract() {
    contract(disk);
}

#[test]
fn combined_tiers_keep_the_contract() {
    contract(tiers);
}

/// The whole contract; each part runs on a new subject.
fn contract(make: fn() -> Subject) {
    round_trip(&make());
    budget(&make());
    recency(&make());
    priority(&make());
    let outside = make();
    if outside.outside.is_some() {
        damaged_entries_are_never_returned(&outside);
        damage_found_after_reopening(&make());
    }
}

impl Subject {
    /// A sound blob of `key`: noise samples (which LZ4 stores as they are, so every blob of a
    /// level has the same length) with this subject's origin.
    fn blob(&self, key: SliceKey, seed: u64) -> Blob {
        self.blob_from(key, seed, self.fingerprint.origin(key))
    }

    fn blob_from(&self, key: SliceKey, seed: u64, origin: Origin) -> Blob {
        let info = self.fingerprint.level(key).unwrap();
        assert_eq!(info.sample_type, SampleType::U8);
        let mut rng = Rng(seed ^ u64::from(key.level) << 32 ^ u64::from(key.z));
        let samples: Vec<u8> = (0..info.width * info.height)
            .map(|_| rng.next() as u8)
            .collect();
        let slice = Slice::new(info.width, info.height, Pixels::U8(samples)).unwrap();
        codec::encode(&slice, key, origin, FilterChoice::Auto)
    }
}

fn key(level: u32, z: u32) -> SliceKey {
    SliceKey::new(level, z)
}

/// Checks how the counters (hits, misses, damaged, writes) moved since `before`; returns
/// them now.
#[track_caller]
fn assert_moved(
    t: &dyn Tier,
    before: TierStats,
    moved: (u64, u64, u64, u64),
    what: &str,
) -> TierStats {
    let after = t.tier_stats();
    let delta = (
        after.hits - before.hits,
        after.misses - before.misses,
        after.corrupt - before.corrupt,
        after.writes - before.writes,
    );
    assert_eq!(
        delta,
        moved,
        "{}: {what}: (hits, misses, damaged, writes)",
        t.name()
    );
    after
}

/// Get, put, replace, contains, remove and report_corrupt, with the counters each moves.
fn round_trip(s: &Subject) {
    let t = (s.open)(u64::MAX);
    let name = t.name();
    let start = t.tier_stats();
    assert_eq!(start.budget, Budget::UNLIMITED, "{name}");
    assert_eq!((start.bytes, start.entries), (0, 0), "{name}: new tier");

    let keys = [key(1, 0), key(1, 1), key(2, 0), key(3, 1)];
    for k in keys {
        assert!(!t.contains(k), "{name}: {k} held before any put");
        assert!(t.get(k).is_none(), "{name}: {k} returned before any put");
    }
    let after_misses = assert_moved(&*t, start, (0, 4, 0, 0), "four misses");

    let blobs: Vec<Blob> = keys.iter().map(|&k| s.blob(k, 1)).collect();
    for (k, b) in keys.iter().zip(&blobs) {
        t.put(*k, b).unwrap();
        assert!(t.contains(*k), "{name}: {k} not held after put");
    }
    let put = assert_moved(&*t, after_misses, (0, 0, 0, 4), "four writes");
    let total: u64 = blobs.iter().map(|b| b.len() as u64).sum();
    assert_eq!(
        (put.entries, put.bytes),
        (4, total),
        "{name}: held after puts"
    );

    // contains neither reads nor counts.
    for k in keys.iter().copied().chain([key(1, 9)]) {
        t.contains(k);
    }
    assert_eq!(t.tier_stats(), put, "{name}: contains moved a counter");

    for (k, b) in keys.iter().zip(&blobs) {
        let got = t
            .get(*k)
            .unwrap_or_else(|| panic!("{name}: {k} missed after put"));
        assert_eq!(&*got, &**b, "{name}: {k} came back with other bytes");
    }
    assert_moved(&*t, put, (4, 0, 0, 0), "four hits");

    // A put replaces: the new bytes come back, the old ones are no longer counted. A shared
    // tier keeps the sound blob it holds instead (another sound blob of the key and origin).
    let newer = s.blob(keys[0], 2);
    assert_ne!(newer, blobs[0]);
    t.put(keys[0], &newer).unwrap();
    let kept = if s.keeps_first { &blobs[0] } else { &newer };
    assert_eq!(&*t.get(keys[0]).unwrap(), &**kept, "{name}: replaced blob");
    let replaced = t.tier_stats();
    assert_eq!(replaced.entries, 4, "{name}: a replacement added an entry");
    assert_eq!(
        replaced.bytes,
        total - blobs[0].len() as u64 + kept.len() as u64,
        "{name}: bytes after a replacement"
    );

    // remove makes a miss; removing what is not held changes nothing.
    t.remove(keys[1]);
    assert!(!t.contains(keys[1]), "{name}: held after remove");
    assert!(t.get(keys[1]).is_none(), "{name}: returned after remove");
    let removed = t.tier_stats();
    assert_eq!(removed.entries, 3, "{name}: entries after remove");
    assert_eq!(
        removed.bytes,
        replaced.bytes - blobs[1].len() as u64,
        "{name}: bytes after remove"
    );
    t.remove(keys[1]);
    t.remove(key(1, 9));
    assert_eq!(
        t.tier_stats(),
        removed,
        "{name}: removing nothing changed counters"
    );

    // report_corrupt drops and counts.
    t.report_corrupt(keys[2], "found damaged by a later check (contract test)");
    assert!(!t.contains(keys[2]), "{name}: held after report_corrupt");
    assert!(
        t.get(keys[2]).is_none(),
        "{name}: returned after report_corrupt"
    );
    let reported = t.tier_stats();
    assert_eq!(
        reported.corrupt - removed.corrupt,
        1,
        "{name}: report_corrupt not counted"
    );
    assert_eq!(reported.entries, 2, "{name}: entries after report_corrupt");

    // What is left is intact.
    assert_eq!(
        &*t.get(keys[3]).unwrap(),
        &*blobs[3],
        "{name}: untouched blob"
    );
}

/// A blob larger than the whole budget is not kept; one that fits is.
fn budget(s: &Subject) {
    let small = s.blob(key(2, 0), 1);
    let large = s.blob(key(1, 0), 1);
    assert!(large.len() > 2 * small.len());
    let budget = 2 * small.len() as u64;
    let t = (s.open)(budget);
    let name = t.name();
    assert_eq!(t.tier_stats().budget, Budget(budget), "{name}");
    let before = t.tier_stats();
    let _ = t.put(key(1, 0), &large);
    assert!(
        !t.contains(key(1, 0)),
        "{name}: a blob over the budget is held"
    );
    assert!(
        t.get(key(1, 0)).is_none(),
        "{name}: a blob over the budget came back"
    );
    let after = assert_moved(&*t, before, (0, 1, 0, 0), "a blob over the budget");
    assert_eq!(after.bytes, 0, "{name}");
    t.put(key(2, 0), &small).unwrap();
    assert_eq!(&*t.get(key(2, 0)).unwrap(), &*small, "{name}");
}

/// Which of `keys` the tier holds.
fn held(t: &dyn Tier, keys: &[SliceKey]) -> Vec<bool> {
    keys.iter().map(|&k| t.contains(k)).collect()
}

/// How many of `keys` (in the order they should go under pressure) the tier no longer holds,
/// checking that they are the first ones.
#[track_caller]
fn evicted_in_order(t: &dyn Tier, keys: &[SliceKey], order: &str) -> usize {
    let now = held(t, keys);
    let gone = now.iter().filter(|h| !**h).count();
    assert!(
        now[..gone].iter().all(|h| !h) && now[gone..].iter().all(|h| *h),
        "{}: evicted out of order ({order}): held {now:?}",
        t.name()
    );
    gone
}

/// Puts `blob` as `key` and checks that the bytes held stay within `budget`.
#[track_caller]
fn put_within(t: &dyn Tier, key: SliceKey, blob: &Blob, budget: u64) {
    t.put(key, blob).unwrap();
    let bytes = t.tier_stats().bytes;
    assert!(
        bytes <= budget,
        "{}: {bytes} bytes over {budget} after {key}",
        t.name()
    );
}

/// Under pressure without priorities the least recently used goes first: with room for four
/// blobs, five are put, the first one read in between.
fn recency(s: &Subject) {
    let keys: Vec<SliceKey> = (0..12).map(|z| key(1, z)).collect();
    let blobs: Vec<Blob> = keys.iter().map(|&k| s.blob(k, 3)).collect();
    let size = blobs[0].len() as u64;
    assert!(blobs.iter().all(|b| b.len() as u64 == size));
    let budget = 4 * size;
    let t = (s.open)(budget);
    let name = t.name();
    for (k, b) in keys.iter().zip(&blobs).take(4) {
        t.put(*k, b).unwrap();
    }
    assert_eq!(
        held(&*t, &keys[..4]),
        [true; 4],
        "{name}: four fit the budget"
    );
    assert_eq!(t.tier_stats().evictions, 0, "{name}");
    assert!(t.get(keys[0]).is_some(), "{name}");
    t.put(keys[4], &blobs[4]).unwrap();
    let stats = t.tier_stats();
    assert!(
        stats.bytes <= budget,
        "{name}: {} bytes over {budget}",
        stats.bytes
    );
    // Recency order, oldest first: 1, 2, 3, 0 (read), 4 (newest). What went is the oldest.
    let by_recency = [keys[1], keys[2], keys[3], keys[0], keys[4]];
    let gone = evicted_in_order(&*t, &by_recency, "oldest first: 1, 2, 3, 0 read, 4");
    let now = held(&*t, &by_recency);
    assert!(
        gone >= 1,
        "{name}: nothing evicted over the budget: {now:?}"
    );
    assert!(
        now[3],
        "{name}: the blob read last was evicted before older ones"
    );
    assert!(
        stats.evictions >= gone as u64,
        "{name}: {gone} evicted, {} counted",
        stats.evictions
    );
    // Many more: within the budget after every put, the newest always held.
    for (k, b) in keys.iter().zip(&blobs).skip(5) {
        put_within(&*t, *k, b, budget);
        assert!(t.contains(*k), "{name}: newest blob {k} not held");
        assert_eq!(&*t.get(*k).unwrap(), &**b, "{name}: {k}");
    }
}

/// Under pressure the lower priority goes first, however recently used: level 2 (valued
/// higher) was put first, then level 1 until the budget overflows; no level-2 blob goes, and
/// level 1 loses its oldest.
fn priority(s: &Subject) {
    let high: Vec<SliceKey> = (0..2).map(|z| key(2, z)).collect();
    let low: Vec<SliceKey> = (0..8).map(|z| key(1, z)).collect();
    let size = s.blob(low[0], 4).len() as u64;
    let budget = 4 * size;
    let t = (s.open)(budget);
    let name = t.name();
    t.set_priority(Arc::new(|k: SliceKey| if k.level == 2 { 5.0 } else { 1.0 }));
    for &k in &high {
        t.put(k, &s.blob(k, 4)).unwrap();
    }
    for &k in &low {
        put_within(&*t, k, &s.blob(k, 4), budget);
    }
    assert_eq!(
        held(&*t, &high),
        [true, true],
        "{name}: a higher-priority blob went first"
    );
    let gone = evicted_in_order(&*t, &low, "level 1 oldest first");
    assert!(
        gone >= 5,
        "{name}: eight blobs in room for four: held {:?}",
        held(&*t, &low)
    );
}

/// What another process or a broken disk may leave where a blob belongs.
enum Planted {
    Bytes(&'static str, Vec<u8>),
    /// A link to a file outside the tier's place, holding a sound blob of the key.
    Link(PathBuf),
}

/// Damaged and foreign entries where the tier keeps blobs: each `get` is a miss, counted as
/// damage, and the entry is removed (a link itself, never what it points to).
fn damaged_entries_are_never_returned(s: &Subject) {
    let t = (s.open)(u64::MAX);
    let name = t.name();
    let outside = s.outside.as_ref().unwrap();
    let sound = |z: u32| s.blob(key(1, z), 5).to_vec();
    let origin = |z: u32| s.fingerprint.origin(key(1, z));
    let flipped = {
        let mut b = sound(0);
        let last = b.len() - 1;
        b[last] ^= 0x40;
        b
    };
    let cut = sound(1)[..sound(1).len() / 2].to_vec();
    let other_stack = Origin {
        stack: origin(3).stack ^ 1,
        ..origin(3)
    };
    let other_sources = Origin {
        sources: origin(4).sources ^ 1,
        ..origin(4)
    };
    let target = s.tmp.path().join("outside.blob");
    std::fs::write(&target, sound(7)).unwrap();
    let entries = [
        Planted::Bytes("a flipped payload bit", flipped),
        Planted::Bytes("a blob cut short", cut),
        // Slice 3's blob where slice 2's belongs.
        Planted::Bytes("another slice's blob", sound(3)),
        Planted::Bytes(
            "another stack's blob",
            s.blob_from(key(1, 3), 5, other_stack).to_vec(),
        ),
        Planted::Bytes(
            "a blob made from other sources",
            s.blob_from(key(1, 4), 5, other_sources).to_vec(),
        ),
        Planted::Bytes("an empty file", Vec::new()),
        Planted::Bytes("not a blob", b"user notes, not a blob\n".to_vec()),
        Planted::Link(target.clone()),
    ];
    for (z, entry) in entries.iter().enumerate() {
        let k = key(1, z as u32);
        let what = match entry {
            Planted::Bytes(what, bytes) => {
                outside.plant(k, bytes);
                *what
            }
            Planted::Link(target) => {
                if !outside.link(k, target) {
                    continue;
                }
                "a link to a sound blob outside"
            }
        };
        let before = t.tier_stats();
        assert!(t.get(k).is_none(), "{name}: {what} at {k} was returned");
        assert_moved(&*t, before, (0, 1, 1, 0), &format!("{what} at {k}"));
        assert!(
            !outside.exists(k),
            "{name}: {what} at {k} was left in place"
        );
        assert!(!t.contains(k), "{name}: {what} at {k} still held");
    }
    assert_eq!(
        std::fs::read(&target).unwrap(),
        sound(7),
        "{name}: the link's target outside was touched"
    );
    // The tier stays usable: a sound blob put where damage was comes back.
    let k = key(1, 0);
    let b = s.blob(k, 6);
    t.put(k, &b).unwrap();
    assert_eq!(&*t.get(k).unwrap(), &*b, "{name}: after damage");
}

/// A blob put by one opening and damaged before the next: the next opening may say it holds
/// it (`contains` does not read), but `get` refuses it, counts it and drops it.
fn damage_found_after_reopening(s: &Subject) {
    let outside = s.outside.as_ref().unwrap();
    let (k, sound) = (key(2, 1), s.blob(key(2, 1), 7));
    let kept = key(2, 2);
    {
        let t = (s.open)(u64::MAX);
        t.put(k, &sound).unwrap();
        t.put(kept, &s.blob(kept, 7)).unwrap();
    }
    let mut bytes = outside.read(k).unwrap();
    assert_eq!(bytes, &*sound);
    bytes[codec::HEADER_LEN + 3] ^= 1;
    outside.plant(k, &bytes);

    let t = (s.open)(u64::MAX);
    let name = t.name();
    assert!(
        t.contains(k),
        "{name}: the reopened tier does not know the blob"
    );
    let before = t.tier_stats();
    assert!(t.get(k).is_none(), "{name}: a damaged blob was returned");
    assert_moved(
        &*t,
        before,
        (0, 1, 1, 0),
        "a damaged blob found after reopening",
    );
    assert!(
        !t.contains(k),
        "{name}: still held after the damage was found"
    );
    assert!(!outside.exists(k), "{name}: damaged entry left");
    assert_eq!(
        &*t.get(kept).unwrap(),
        &*s.blob(kept, 7),
        "{name}: the sound neighbour"
    );
    t.put(k, &sound).unwrap();
    assert_eq!(&*t.get(k).unwrap(), &*sound, "{name}: put again");
}
