//! The disk tier: blobs survive reopening, damaged blobs become counted misses, source changes
//! invalidate exactly the dependent blobs, the budget holds, and unusable folders degrade to
//! memory-only caching instead of failing.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use common::set_mtime;
use lodcache::codec::{self, FilterChoice};
use lodcache::store::{Blob, DiskMode, DiskOptions, DiskStore, Manifest, blob_path};
use lodcache::{LevelInfo, LevelRule, Phantom, Slice, SliceKey, Stack, StreamOptions};

const EDGE: u32 = 4;

/// A phantom stack on disk with every level-1+ slice computed by the streaming builder.
struct Fixture {
    _tmp: tempfile::TempDir,
    stack_dir: PathBuf,
    cache: PathBuf,
    levels: Vec<LevelInfo>,
    slices: BTreeMap<SliceKey, Slice>,
}

impl Fixture {
    fn new(depth: u32) -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let stack_dir = tmp.path().join("scan");
        Phantom::new(64, 48, depth).write(&stack_dir).unwrap();
        let stack = Stack::open(&stack_dir).unwrap();
        let levels = stack.levels(&rule()).unwrap();
        let slices = build(&stack);
        Fixture {
            stack_dir,
            cache: tmp.path().join("cache"),
            levels,
            slices,
            _tmp: tmp,
        }
    }

    fn manifest(&self) -> Manifest {
        Manifest::of(&Stack::open(&self.stack_dir).unwrap()).unwrap()
    }

    fn open(&self) -> DiskStore {
        self.open_with(DiskOptions::new(&self.cache))
    }

    fn open_with(&self, options: DiskOptions) -> DiskStore {
        DiskStore::open(&options, &self.manifest())
    }

    fn fill(&self, store: &DiskStore) {
        for (key, slice) in &self.slices {
            store.put(*key, &encode(store, *key, slice)).unwrap();
        }
    }

    fn blob_files(&self) -> Vec<SliceKey> {
        self.slices
            .keys()
            .copied()
            .filter(|k| blob_path(&self.cache, *k).is_file())
            .collect()
    }

    /// Rewrites source slice `z` with other content and a distinct modification time.
    fn touch_source(&self, z: u32) {
        let path = self.stack_dir.join(Phantom::file_name(z));
        let other = tempfile::tempdir().unwrap();
        Phantom::new(64, 48, z + 1)
            .with_seed(99)
            .write(other.path())
            .unwrap();
        std::fs::copy(other.path().join(Phantom::file_name(z)), &path).unwrap();
        set_mtime(&path, SystemTime::now() + Duration::from_secs(5));
    }
}

fn rule() -> LevelRule {
    LevelRule::default().with_edge(EDGE)
}

fn build(stack: &Stack) -> BTreeMap<SliceKey, Slice> {
    let mut out = BTreeMap::new();
    let options = StreamOptions {
        rule: rule(),
        ..Default::default()
    };
    lodcache::stream_levels(stack, &options, |level, z, s| {
        out.insert(SliceKey::new(level, z), s.clone());
        Ok(())
    })
    .unwrap();
    out
}

/// The blob of `slice` as `store` expects it: made from the sources it fingerprinted.
fn encode(store: &DiskStore, key: SliceKey, slice: &Slice) -> Blob {
    let origin = store.fingerprint().origin(key);
    codec::encode(slice, key, origin, FilterChoice::Auto)
}

fn decode(store: &DiskStore, key: SliceKey, blob: &[u8]) -> Slice {
    codec::decode(blob, &store.fingerprint().id(key).unwrap()).unwrap()
}

#[test]
fn blobs_survive_close_and_reopen() {
    let f = Fixture::new(13);
    let store = f.open();
    assert_eq!(store.mode(), DiskMode::ReadWrite);
    f.fill(&store);
    assert_eq!(store.stats().writes, f.slices.len() as u64);
    drop(store);

    let store = f.open();
    assert_eq!(store.stats().blobs, f.slices.len() as u64);
    assert_eq!(store.stats().invalidated, 0);
    for (key, slice) in &f.slices {
        let blob = store.get(*key).unwrap_or_else(|| panic!("{key} missing"));
        assert_eq!(&decode(&store, *key, &blob), slice, "{key}");
    }
    let s = store.stats();
    assert_eq!((s.hits, s.misses, s.corrupt), (f.slices.len() as u64, 0, 0));
    assert!(f.cache.join("manifest.json").is_file());
    assert!(f.cache.join("CACHEDIR.TAG").is_file());
}

#[test]
fn damaged_blobs_on_disk_are_counted_removed_and_missed() {
    let f = Fixture::new(9);
    let store = f.open();
    f.fill(&store);
    let keys: Vec<SliceKey> = f.slices.keys().copied().take(4).collect();
    // A byte flipped in the payload, a truncation, zeros, and another slice's blob.
    let p0 = blob_path(&f.cache, keys[0]);
    let mut b = std::fs::read(&p0).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    std::fs::write(&p0, &b).unwrap();
    let p1 = blob_path(&f.cache, keys[1]);
    let b = std::fs::read(&p1).unwrap();
    std::fs::write(&p1, &b[..b.len() - 3]).unwrap();
    let p2 = blob_path(&f.cache, keys[2]);
    let len = std::fs::metadata(&p2).unwrap().len() as usize;
    std::fs::write(&p2, vec![0u8; len]).unwrap();
    std::fs::copy(blob_path(&f.cache, keys[0]), blob_path(&f.cache, keys[3])).unwrap();

    let store = f.open();
    for key in &keys {
        assert!(store.get(*key).is_none(), "damaged {key} was served");
        assert!(!blob_path(&f.cache, *key).exists(), "damaged {key} kept");
    }
    let s = store.stats();
    assert_eq!((s.corrupt, s.misses), (4, 4));
    assert_eq!(store.warnings().len(), 4, "{:?}", store.warnings());
    // The others are intact.
    for key in f.slices.keys().skip(4) {
        assert!(store.get(*key).is_some(), "{key}");
    }
}

#[test]
fn touching_one_source_slice_invalidates_exactly_its_dependents() {
    let f = Fixture::new(20);
    // 64 x 48 with edge 4: levels 1..=4.
    assert_eq!(f.levels.len(), 5);
    f.fill(&f.open());
    f.touch_source(13);

    let store = f.open();
    let expect: Vec<SliceKey> = [(1, 6), (2, 3), (3, 1), (4, 0)]
        .map(|(l, z)| SliceKey::new(l, z))
        .into();
    assert_eq!(store.stats().invalidated, expect.len() as u64);
    let present = f.blob_files();
    for key in f.slices.keys() {
        assert_eq!(
            present.contains(key),
            !expect.contains(key),
            "{key}: present {}",
            present.contains(key)
        );
    }
    // The manifest was updated: a third open invalidates nothing.
    assert_eq!(f.open().stats().invalidated, 0);
}

#[test]
fn removed_and_added_source_slices_invalidate_the_tail() {
    let f = Fixture::new(20);
    f.fill(&f.open());
    std::fs::remove_file(f.stack_dir.join(Phantom::file_name(19))).unwrap();
    let store = f.open();
    // Source 19 feeds (1, 9), (2, 4), (3, 2), (4, 1); with 19 slices level 1 keeps 10 slices,
    // so (1, 9) is rebuilt from slice 18 alone.
    assert_eq!(store.stats().invalidated, 4);
    assert!(store.get(SliceKey::new(1, 8)).is_some());
    assert!(store.get(SliceKey::new(1, 9)).is_none());
    drop(store);

    let more = tempfile::tempdir().unwrap();
    Phantom::new(64, 48, 21).write(more.path()).unwrap();
    for z in [19, 20] {
        let name = Phantom::file_name(z);
        std::fs::copy(more.path().join(&name), f.stack_dir.join(&name)).unwrap();
    }
    let store = f.open();
    // 19 and 20 are new: (1, 9) (already gone), (1, 10), (2, 4) (gone), (2, 5), ...: only
    // blobs that exist count.
    assert_eq!(store.stats().invalidated, 0);
    assert!(store.get(SliceKey::new(2, 3)).is_some());
}

#[test]
fn garbled_manifest_or_another_format_discards_everything() {
    let f = Fixture::new(9);
    f.fill(&f.open());
    let n = f.slices.len() as u64;

    std::fs::write(f.cache.join("manifest.json"), b"{ not json").unwrap();
    let store = f.open();
    assert_eq!(store.stats().invalidated, n);
    assert_eq!(store.stats().blobs, 0);
    assert!(
        store.warnings().iter().any(|w| w.contains("manifest")),
        "{:?}",
        store.warnings()
    );
    f.fill(&store);
    drop(store);

    // A manifest written for another blob format (an older or newer lodcache).
    let path = f.cache.join("manifest.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let version = format!("\"format_version\": {}", codec::FORMAT_VERSION);
    assert!(text.contains(&version), "{text}");
    std::fs::write(&path, text.replace(&version, "\"format_version\": 1")).unwrap();
    let store = f.open();
    assert_eq!(store.stats().invalidated, n);
    assert!(f.blob_files().is_empty());
}

#[test]
fn disk_budget_holds_after_many_inserts() {
    let f = Fixture::new(40);
    let sizes: Vec<usize> = f
        .slices
        .iter()
        .map(|(k, s)| codec::encode(s, *k, Default::default(), FilterChoice::Auto).len())
        .collect();
    let total: usize = sizes.iter().sum();
    let budget = (total / 3) as u64;
    let store = f.open_with(DiskOptions::new(&f.cache).with_budget(budget));
    for round in 0..5 {
        for (key, slice) in &f.slices {
            let blob = encode(&store, *key, slice);
            store.put(*key, &blob).unwrap();
            let s = store.stats();
            assert!(
                s.bytes <= budget,
                "round {round} {key}: {} > {budget}",
                s.bytes
            );
        }
    }
    let on_disk: u64 = f
        .blob_files()
        .iter()
        .map(|k| std::fs::metadata(blob_path(&f.cache, *k)).unwrap().len())
        .sum();
    assert!(on_disk <= budget, "{on_disk} bytes on disk > {budget}");
    assert!(on_disk > budget / 2, "budget far from used: {on_disk}");
    assert!(store.stats().evictions > 0);

    // Reopening over budget (a smaller one) trims at once.
    drop(store);
    let store = f.open_with(DiskOptions::new(&f.cache).with_budget(budget / 4));
    assert!(store.stats().bytes <= budget / 4);
}

#[test]
fn eviction_keeps_high_priority_blobs_then_recent_ones() {
    let f = Fixture::new(40);
    let level2_bytes: usize = f
        .slices
        .iter()
        .filter(|(k, _)| k.level == 2)
        .map(|(k, s)| codec::encode(s, *k, Default::default(), FilterChoice::Auto).len())
        .sum();
    let store = f.open_with(DiskOptions::new(&f.cache).with_budget(level2_bytes as u64 * 2));
    store.set_priority(std::sync::Arc::new(
        |k: SliceKey| {
            if k.level == 2 { 10.0 } else { 0.0 }
        },
    ));
    f.fill(&store);
    for key in f.slices.keys().filter(|k| k.level == 2) {
        assert!(store.contains(*key), "high-priority {key} evicted");
        assert!(blob_path(&f.cache, *key).is_file());
    }
    assert!(store.stats().evictions > 0);
    // Among level 1 (all priority 0), the last written survive.
    let level1: Vec<SliceKey> = f.slices.keys().filter(|k| k.level == 1).copied().collect();
    let kept: Vec<bool> = level1.iter().map(|k| store.contains(*k)).collect();
    let first_kept = kept.iter().position(|&k| k).unwrap_or(kept.len());
    assert!(
        kept[first_kept..].iter().all(|&k| k),
        "not least-recent first: {kept:?}"
    );
}

#[test]
fn stale_temp_files_are_swept_on_open_and_live_ones_kept() {
    let f = Fixture::new(9);
    f.fill(&f.open());
    let level_dir = f.cache.join("1");
    let dead = level_dir.join("000001.blob.tmp-99999999-3-0");
    std::fs::write(&dead, b"partial").unwrap();
    let live = level_dir.join(format!("000002.blob.tmp-{}-7-0", std::process::id()));
    std::fs::write(&live, b"being written").unwrap();
    let old_live = level_dir.join(format!("000003.blob.tmp-{}-8-0", std::process::id()));
    std::fs::write(&old_live, b"abandoned long ago").unwrap();
    set_mtime(&old_live, SystemTime::now() - Duration::from_secs(7200));
    let store = f.open();
    assert!(!dead.exists(), "temp of a dead writer survived");
    assert!(!old_live.exists(), "hour-old temp survived");
    assert!(live.exists(), "a live writer's temp was removed");
    assert!(store.get(SliceKey::new(1, 1)).is_some());
}

#[test]
fn unusable_cache_folder_degrades_to_memory_only() {
    let f = Fixture::new(9);
    // A cache "folder" below a regular file cannot be created.
    let file = f.stack_dir.join("notes.txt");
    std::fs::write(&file, b"x").unwrap();
    let store = f.open_with(DiskOptions::new(file.join("cache")));
    assert_eq!(store.mode(), DiskMode::Disabled);
    assert!(
        store.warnings()[0].contains("memory only"),
        "{:?}",
        store.warnings()
    );
    let (key, slice) = f.slices.iter().next().unwrap();
    store.put(*key, &encode(&store, *key, slice)).unwrap();
    assert!(store.get(*key).is_none());
}

#[test]
fn read_only_cache_folder_is_read_but_not_written() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new(9);
    f.fill(&f.open());
    let set = |mode: u32| {
        for d in [f.cache.clone(), f.cache.join("1"), f.cache.join("2")] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    };
    set(0o555);
    let probe = f.cache.join("probe");
    if std::fs::write(&probe, b"x").is_ok() {
        let _ = std::fs::remove_file(&probe);
        set(0o755);
        eprintln!(
            "SKIPPED: permission bits do not stop this user (root); covered by the unusable-folder test"
        );
        return;
    }
    let store = f.open();
    set(0o755);
    assert_eq!(store.mode(), DiskMode::ReadOnly);
    assert!(store.get(SliceKey::new(1, 0)).is_some());
    assert!(!store.warnings().is_empty());
}

#[test]
fn two_stores_on_one_folder_never_see_a_partial_blob() {
    let f = Fixture::new(17);
    let a = f.open();
    let b = f.open();
    std::thread::scope(|s| {
        for (writer, reader) in [(&a, &b), (&b, &a)] {
            let slices = &f.slices;
            s.spawn(move || {
                for _ in 0..5 {
                    for (key, slice) in slices {
                        writer.put(*key, &encode(writer, *key, slice)).unwrap();
                    }
                }
            });
            s.spawn(move || {
                for _ in 0..5 {
                    for (key, slice) in slices {
                        if let Some(blob) = reader.get(*key) {
                            assert_eq!(&decode(reader, *key, &blob), slice);
                        }
                    }
                }
            });
        }
    });
    assert_eq!(a.stats().corrupt + b.stats().corrupt, 0);
    let c = f.open();
    for key in f.slices.keys() {
        assert!(c.get(*key).is_some(), "{key}");
    }
}

#[test]
fn default_cache_folder_is_in_the_stack_or_per_user() {
    let f = Fixture::new(3);
    assert_eq!(
        lodcache::store::default_cache_dir(&f.stack_dir),
        f.stack_dir.join(".lodcache")
    );
    // /proc refuses new files even to root: the per-user folder is used instead.
    let elsewhere = lodcache::store::default_cache_dir(Path::new("/proc/self"));
    assert!(!elsewhere.starts_with("/proc"), "{}", elsewhere.display());
    assert!(
        elsewhere.to_string_lossy().contains("lodcache"),
        "{}",
        elsewhere.display()
    );
    // Keyed by the stack's path: another stack, another folder.
    assert_ne!(
        elsewhere,
        lodcache::store::default_cache_dir(Path::new("/proc/1"))
    );
    // The cache folder is not mistaken for slices.
    f.fill(&f.open_with(DiskOptions::new(f.stack_dir.join(".lodcache"))));
    assert_eq!(Stack::open(&f.stack_dir).unwrap().depth(), 3);
}
