//! The lazy pyramid's behaviour as a viewer sees it: concurrent requests for one cold slice
//! generate it once, a reopened cache serves every level without touching the sources, a damaged
//! blob is counted and rebuilt (never returned), out-of-range requests are errors that name the
//! valid range, memory-only pyramids write nothing, exports through the cache are repeatable
//! and cheap, a tiny memory budget still gives correct slices, and requests from inside rayon
//! `par_iter` complete.

mod common;

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::{Scan, flip_byte, read_tiff_dir, tree, values, within};
use lodcache::codec;
use lodcache::store::{DiskMode, blob_path};
use lodcache::{Axis, Error, LevelInfo, Phantom, Pyramid, SampleType, Slice, SliceKey};
use rayon::prelude::*;
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// A phantom stack in a temporary folder and a cache folder beside it.
fn fixture(w: u32, h: u32, d: u32, ty: SampleType, edge: u32) -> Scan {
    let phantom = Phantom::new(w, h, d)
        .with_sample_type(ty)
        .with_seed(u64::from(w + 3 * h + 5 * d));
    Scan::new(phantom, edge)
}

impl Scan {
    /// The top level's number.
    fn top(&self) -> u32 {
        self.naive().len() as u32 - 1
    }

    /// Every (level, z) of levels >= 1.
    fn upper_keys(&self) -> Vec<(u32, u32)> {
        self.keys().into_iter().map(|k| (k.level, k.z)).collect()
    }

    /// Blobs of a full pyramid: every slice of every level >= 1.
    fn blob_count(&self) -> u64 {
        self.keys().len() as u64
    }

    /// Files of a folder's blobs (`<cache>/<level>/<z>.blob`).
    fn blob_files(&self) -> Vec<String> {
        if !self.cache.exists() {
            return Vec::new();
        }
        tree(&self.cache)
            .into_iter()
            .filter(|p| p.ends_with(".blob"))
            .collect()
    }
}

/// Replaces the blob at `path` with one that passes every check of its header and checksum
/// but whose payload, one LZ4 block of a single byte, cannot decode to the slice: a damage only
/// decoding finds (layout in `lodcache::codec`'s docs).
fn forge_undecodable(path: &Path) {
    let mut blob = std::fs::read(path).unwrap()[..codec::HEADER_LEN].to_vec();
    let payload = [0x10, b'A'];
    blob[6] = 1; // one LZ4 block
    blob[7] = 0; // no filter
    blob[36..44].copy_from_slice(&(payload.len() as u64).to_le_bytes());
    let sum = xxh3_64_with_seed(&blob[..44], xxh3_64(&payload));
    blob[44..52].copy_from_slice(&sum.to_le_bytes());
    blob.extend_from_slice(&payload);
    std::fs::write(path, blob).unwrap();
}

#[test]
fn pyramid_is_send_sync_and_clones_share_state() {
    fn send_sync<T: Send + Sync + Clone>() {}
    send_sync::<Pyramid>();
    let f = fixture(40, 30, 4, SampleType::U16, 8);
    let pyr = f.open();
    let clone = pyr.clone();
    clone.slice(1, 0).unwrap();
    pyr.flush();
    assert_eq!(pyr.stats().generated, 1);
    assert_eq!(pyr.stats(), clone.stats());
}

#[test]
fn single_flight_eight_threads_generate_a_cold_top_slice_once() {
    // 512^2 x 16 at edge 32: levels 256, 128, 64, 32; slice 0 of level 4 covers all 16 source
    // slices and needs 1 + 2 + 4 + 8 = 15 blobs.
    let f = fixture(512, 512, 16, SampleType::U16, 32);
    let top = f.top();
    assert_eq!(top, 4);
    let pyr = f.open();
    let barrier = Barrier::new(8);
    let results: Vec<Slice> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    pyr.slice(top, 0).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert!(*r == results[0], "the eight answers differ");
    }
    f.check_at("single flight", top, 0, &results[0]);
    pyr.flush();
    let s = pyr.stats();
    let needed = (1u64 << top) - 1;
    assert_eq!(s.generated, needed, "blobs generated for one top slice");
    assert!(s.coalesced >= 1, "no request waited for the leader: {s:?}");
    assert_eq!(s.source_slices, 16, "each source slice decoded once: {s:?}");
    assert_eq!(s.disk.writes, needed);
    assert_eq!(f.blob_files().len() as u64, needed);
    pyr.flush();
    assert_eq!(pyr.stats().memory.entries, needed);
    assert_eq!(s.requests[top as usize], 8);
}

#[test]
fn reopen_serves_every_level_from_disk_without_sources() {
    let f = fixture(64, 48, 17, SampleType::U16, 4);
    let blobs = f.blob_count();
    {
        let pyr = f.open();
        pyr.volume(f.top()).unwrap();
        pyr.flush();
        let s = pyr.stats();
        assert_eq!((s.generated, s.disk.writes), (blobs, blobs));
    }
    assert_eq!(f.blob_files().len() as u64, blobs);

    let pyr = f.open();
    assert_eq!(pyr.stats().disk.blobs, blobs, "blobs found on open");
    for (level, z) in f.upper_keys() {
        f.check_at("reopened", level, z, &pyr.slice(level, z).unwrap());
    }
    pyr.flush();
    let s = pyr.stats();
    assert_eq!(s.source_bytes, 0, "reopened pyramid read source bytes");
    assert_eq!(s.source_slices, 0, "reopened pyramid decoded source slices");
    assert_eq!(s.generated, 0, "reopened pyramid generated blobs");
    assert_eq!(s.stream_builds, 0);
    assert_eq!(s.disk.hits, blobs, "disk hits");
    assert_eq!(
        (s.disk.misses, s.disk.corrupt, s.disk.invalidated),
        (0, 0, 0)
    );
    assert_eq!(s.memory.misses, blobs);

    // A second round comes from memory.
    for (level, z) in f.upper_keys() {
        f.check_at("reopened, again", level, z, &pyr.slice(level, z).unwrap());
    }
    pyr.flush();
    let again = pyr.stats();
    assert_eq!(again.disk.hits, blobs, "second round went to disk");
    assert_eq!(again.memory.hits, blobs, "second round missed memory");
    assert_eq!((again.generated, again.source_bytes), (0, 0));
}

#[test]
fn damaged_blob_is_counted_rebuilt_and_rewritten() {
    let f = fixture(64, 48, 17, SampleType::U16, 4);
    f.open().volume(f.top()).unwrap();
    // (key, byte flipped: negative from the end; None: a forged payload that passes the
    // checksum) - the payload's last byte (checksum), the width field of the header, the magic,
    // and a payload only decoding finds damaged.
    let cases = [
        (SliceKey::new(1, 3), Some(-1isize)),
        (SliceKey::new(2, 1), Some(20)),
        (SliceKey::new(4, 0), Some(0)),
        (SliceKey::new(1, 6), None),
    ];
    for (key, damage) in cases {
        let path = blob_path(&f.cache, key);
        let original = std::fs::read(&path).unwrap();
        match damage {
            Some(at) => flip_byte(&path, at),
            None => forge_undecodable(&path),
        }
        let pyr = f.open();
        let info: LevelInfo = pyr.levels()[key.level as usize];
        let slice = pyr.slice(key.level, key.z).unwrap();
        f.check_at(&format!("damaged {key:?}"), key.level, key.z, &slice);
        pyr.flush();
        let s = pyr.stats();
        assert_eq!(s.disk.corrupt, 1, "{key:?}: damaged blobs counted");
        assert_eq!(s.generated, 1, "{key:?}: only the damaged blob regenerated");
        assert_eq!(s.disk.writes, 1, "{key:?}: blob rewritten");
        // Level 1 is made from two source slices; higher levels from their stored children.
        let want_sources = if key.level == 1 { 2 } else { 0 };
        assert_eq!(s.source_slices, want_sources, "{key:?}: source slices");
        assert!(
            pyr.warnings().iter().any(|w| w.contains("damaged")),
            "{key:?}: no warning: {:?}",
            pyr.warnings()
        );
        let rewritten = std::fs::read(&path).unwrap();
        let id = pyr.tiers().fingerprint().id(key).unwrap();
        assert_eq!(id.level, info);
        codec::verify(&rewritten, &id)
            .unwrap_or_else(|e| panic!("{key:?}: rewritten blob is not valid: {e}"));
        let decoded = codec::decode(&rewritten, &id).unwrap();
        f.check_at("rewritten blob", key.level, key.z, &decoded);
        assert_eq!(rewritten.len(), original.len(), "{key:?}: blob length");
        // A further reopen finds it valid.
        drop(pyr);
        let pyr = f.open();
        pyr.slice(key.level, key.z).unwrap();
        pyr.flush();
        let s = pyr.stats();
        assert_eq!((s.disk.corrupt, s.generated, s.disk.hits), (0, 0, 1));
    }
}

/// Asserts `result` is an [`Error::InvalidArgument`] whose message contains every `needle`.
#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: lodcache::Result<T>, needles: &[&str]) {
    match result {
        Err(e @ Error::InvalidArgument { .. }) => {
            let message = e.to_string();
            for n in needles {
                assert!(message.contains(n), "{message:?} does not name {n:?}");
            }
        }
        other => panic!("expected an InvalidArgument error, got {other:?}"),
    }
}

#[test]
fn out_of_range_requests_are_errors_naming_the_valid_range() {
    // 37 x 23 x 5 at edge 4: levels 18x11x3, 9x5x2, 4x2x1.
    let f = fixture(37, 23, 5, SampleType::U16, 4);
    let pyr = f.open();
    assert_eq!(pyr.levels().len(), 4);

    assert_invalid(pyr.slice(4, 0), &["level", "4", "0..=3"]);
    assert_invalid(pyr.slice(u32::MAX, 0), &["0..=3"]);
    assert_invalid(pyr.slice(0, 5), &["5", "0..=4"]);
    assert_invalid(pyr.slice(1, 3), &["3", "0..=2"]);
    assert_invalid(pyr.slice(3, 1), &["0..=0"]);
    assert_invalid(pyr.slice(2, u32::MAX), &["0..=1"]);

    assert_invalid(
        pyr.region(4, 0, lodcache::Region::new(0, 0, 1, 1)),
        &["0..=3"],
    );
    assert_invalid(
        pyr.region(1, 3, lodcache::Region::new(0, 0, 1, 1)),
        &["0..=2"],
    );
    // Outside, empty, and overflowing rectangles name the level's size.
    assert_invalid(
        pyr.region(1, 0, lodcache::Region::new(17, 0, 2, 1)),
        &["18 x 11"],
    );
    assert_invalid(
        pyr.region(1, 0, lodcache::Region::new(0, 10, 1, 2)),
        &["18 x 11"],
    );
    assert_invalid(
        pyr.region(1, 0, lodcache::Region::new(18, 0, 1, 1)),
        &["18 x 11"],
    );
    assert_invalid(
        pyr.region(1, 0, lodcache::Region::new(0, 0, 0, 1)),
        &["18 x 11"],
    );
    assert_invalid(
        pyr.region(1, 0, lodcache::Region::new(0, 0, 1, 0)),
        &["18 x 11"],
    );
    assert_invalid(
        pyr.region(1, 0, lodcache::Region::new(u32::MAX, 0, 2, 1)),
        &["18 x 11"],
    );
    assert_invalid(
        pyr.region(0, 0, lodcache::Region::new(0, u32::MAX, 1, u32::MAX)),
        &["37 x 23"],
    );

    assert_invalid(pyr.section(4, Axis::X, 0), &["0..=3"]);
    assert_invalid(pyr.section(1, Axis::X, 18), &["18", "0..=17"]);
    assert_invalid(pyr.section(1, Axis::Y, 11), &["11", "0..=10"]);
    assert_invalid(pyr.section(1, Axis::Z, 3), &["0..=2"]);
    assert_invalid(pyr.section(0, Axis::X, u32::MAX), &["0..=36"]);

    assert_invalid(pyr.volume(4), &["0..=3"]);

    let out = f.tmp.path().join("out");
    assert_invalid(pyr.export_ctharvester(&out, Some(&[0])), &["1..=3"]);
    assert_invalid(pyr.export_ctharvester(&out, Some(&[1, 4])), &["1..=3"]);
    assert!(!out.exists(), "a refused export created its output folder");

    assert_invalid(f.builder().with_edge(0).build(), &["edge"]);
    assert_invalid(
        f.builder().with_decode_threads(0).build(),
        &["decode threads"],
    );

    // Nothing was generated by the refused requests, and the pyramid still works.
    assert_eq!(pyr.stats().generated, 0);
    f.check_at("after errors", 3, 0, &pyr.slice(3, 0).unwrap());
}

#[test]
fn regions_are_the_naive_rectangles() {
    let f = fixture(50, 31, 7, SampleType::U8, 4);
    let pyr = f.open();
    for info in pyr.levels() {
        let (w, h) = (info.width, info.height);
        let want = &f.naive()[info.level as usize];
        for z in [0, info.depth - 1] {
            for (x, y, rw, rh) in [
                (0, 0, w, h),
                (0, 0, 1, 1),
                (w - 1, h - 1, 1, 1),
                (w / 3, h / 4, w - w / 3, (h / 2).max(1)),
                (1.min(w - 1), 0, w - 1.min(w - 1), 1),
            ] {
                let r = pyr
                    .region(info.level, z, lodcache::Region::new(x, y, rw, rh))
                    .unwrap();
                assert_eq!((r.width(), r.height()), (rw, rh));
                let expect: Vec<u32> = (y..y + rh)
                    .flat_map(|row| {
                        let start = (row * w + x) as usize;
                        want.slices[z as usize][start..start + rw as usize].to_vec()
                    })
                    .collect();
                assert!(
                    values(&r) == expect,
                    "level {} slice {z}: region {rw} x {rh} at ({x}, {y}) differs",
                    info.level
                );
            }
        }
    }
}

#[test]
fn memory_only_writes_nothing_and_serves_correct_slices() {
    let f = fixture(64, 48, 17, SampleType::U16, 4);
    let before = tree(f.tmp.path());
    let pyr = f.builder().with_disk_cache(false).build().unwrap();
    for (level, z) in f.upper_keys() {
        f.check_at("memory only", level, z, &pyr.slice(level, z).unwrap());
    }
    for level in 1..=f.top() {
        let v = pyr.volume(level).unwrap();
        for z in 0..v.depth() {
            f.check_at("memory-only volume", level, z, &v.slice(z).unwrap());
        }
    }
    pyr.section(f.top(), Axis::Y, 1).unwrap();
    // Served a second time from memory, still correct.
    for (level, z) in f.upper_keys() {
        f.check_at(
            "memory only, again",
            level,
            z,
            &pyr.slice(level, z).unwrap(),
        );
    }
    pyr.flush();
    let s = pyr.stats();
    assert_eq!(s.generated, f.blob_count(), "each blob generated once");
    assert_eq!(s.disk.mode, DiskMode::Disabled);
    assert_eq!(
        (s.disk.writes, s.disk.hits, s.disk.blobs, s.disk.bytes),
        (0, 0, 0, 0)
    );
    assert!(pyr.warnings().is_empty(), "{:?}", pyr.warnings());
    drop(pyr);
    assert!(
        !f.cache.exists(),
        "memory-only pyramid created its cache folder"
    );
    assert!(!f.stack.join(".lodcache").exists());
    assert_eq!(
        tree(f.tmp.path()),
        before,
        "memory-only pyramid wrote files"
    );
}

/// Every file of two trees, byte for byte.
fn assert_same_tree(a: &Path, b: &Path) {
    let (ta, tb) = (tree(a), tree(b));
    assert_eq!(ta, tb, "file lists of {} and {}", a.display(), b.display());
    for name in ta {
        assert!(
            std::fs::read(a.join(&name)).unwrap() == std::fs::read(b.join(&name)).unwrap(),
            "{name} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn export_through_the_cache_is_repeatable_and_rebuilds_damaged_blobs() {
    let f = fixture(64, 48, 17, SampleType::U16, 4);
    let blobs = f.blob_count();
    let (out1, out2, out3) = (
        f.tmp.path().join("out1"),
        f.tmp.path().join("out2"),
        f.tmp.path().join("out3"),
    );
    {
        let pyr = f.open();
        let first = pyr.export_ctharvester(&out1, None).unwrap();
        assert_eq!(first.files, blobs);
        assert_eq!(first.levels.len() as u32, f.top());
        assert!(first.source_bytes > 0);
        pyr.flush();
        let after_first = pyr.stats();
        assert_eq!(after_first.generated, blobs);

        let second = pyr.export_ctharvester(&out2, None).unwrap();
        assert_eq!(second.source_bytes, 0, "second export read source bytes");
        assert_eq!(second.files, blobs);
        assert_eq!(second.bytes, first.bytes);
        pyr.flush();
        let after_second = pyr.stats();
        assert_eq!(after_second.generated, after_first.generated);
        assert_eq!(after_second.source_slices, after_first.source_slices);
    }
    assert_same_tree(&out1, &out2);
    for (n, want) in f.naive().iter().enumerate().skip(1) {
        let (have, bits) = read_tiff_dir(&out1.join(n.to_string()));
        assert_eq!(bits, 16);
        assert!(
            have == *want,
            "exported level {n} differs from the naive pyramid"
        );
    }

    // A damaged blob between exports is rebuilt, not exported.
    let key = SliceKey::new(2, 2);
    let path = blob_path(&f.cache, key);
    flip_byte(&path, -1);
    let pyr = f.open();
    let third = pyr.export_ctharvester(&out3, None).unwrap();
    assert_eq!(third.files, blobs);
    assert_same_tree(&out1, &out3);
    pyr.flush();
    let s = pyr.stats();
    assert_eq!(s.disk.corrupt, 1);
    assert_eq!(s.generated, 1, "only the damaged blob regenerated");
    assert_eq!(s.source_bytes, third.source_bytes);
    let id = pyr.tiers().fingerprint().id(key).unwrap();
    assert_eq!(id.level, pyr.levels()[2]);
    codec::verify(&std::fs::read(&path).unwrap(), &id).unwrap();
}

#[test]
fn small_memory_budget_without_disk_regenerates_correct_slices() {
    // 256^2 x 16 at edge 32: 14 blobs, several times the budget.
    let f = fixture(256, 256, 16, SampleType::U16, 32);
    let budget = 64 << 10;
    let pyr = f
        .builder()
        .with_disk_cache(false)
        .with_memory_budget(budget)
        .build()
        .unwrap();
    let keys = f.upper_keys();
    // Two rounds, the second in another order, from two threads at once.
    std::thread::scope(|s| {
        for t in 0..2 {
            let (pyr, f, keys) = (&pyr, &f, &keys);
            s.spawn(move || {
                for round in 0..2 {
                    for i in 0..keys.len() {
                        let (level, z) = keys[(i * 5 + round * 3 + t * 7) % keys.len()];
                        f.check_at("small budget", level, z, &pyr.slice(level, z).unwrap());
                    }
                }
            });
        }
    });
    for level in 1..=f.top() {
        let v = pyr.volume(level).unwrap();
        for z in 0..v.depth() {
            f.check_at("small-budget volume", level, z, &v.slice(z).unwrap());
        }
    }
    pyr.flush();
    let s = pyr.stats();
    assert!(
        s.memory.bytes <= budget,
        "{} bytes held over a budget of {budget}",
        s.memory.bytes
    );
    assert_eq!(s.memory.budget.bytes(), Some(budget));
    assert!(s.memory.evictions > 0, "nothing evicted: {s:?}");
    assert!(
        s.generated > f.blob_count(),
        "no blob regenerated after eviction: {s:?}"
    );
    assert_eq!(s.disk.writes, 0);
    assert!(!f.cache.exists());
}

/// Requests slices (each key twice, the top level's four times), volumes and sections from
/// inside `par_iter` on `calls`, a two-thread pool, and checks every answer.
fn par_iter_requests(f: &Scan, pyr: &Pyramid, calls: &rayon::ThreadPool) {
    let top = f.top();
    let top_depth = pyr.levels()[top as usize].depth;
    let mut keys = f.upper_keys();
    keys.extend(f.upper_keys());
    let slices: Vec<(u32, u32, Slice)> = calls.install(|| {
        let mut got: Vec<(u32, u32, Slice)> = (0..2 * top_depth)
            .into_par_iter()
            .map(|z| (top, z / 2, pyr.slice(top, z / 2).unwrap()))
            .collect();
        got.par_extend(
            keys.par_iter()
                .map(|&(level, z)| (level, z, pyr.slice(level, z).unwrap())),
        );
        got
    });
    assert_eq!(slices.len(), 2 * top_depth as usize + keys.len());
    for (level, z, s) in &slices {
        f.check_at("par_iter slice", *level, *z, s);
    }
    let volumes: Vec<(u32, lodcache::Volume)> = calls.install(|| {
        (0..2 * top)
            .into_par_iter()
            .map(|i| {
                let level = 1 + i % top;
                (level, pyr.volume(level).unwrap())
            })
            .collect()
    });
    for (level, v) in &volumes {
        for z in 0..v.depth() {
            f.check_at("par_iter volume", *level, z, &v.slice(z).unwrap());
        }
    }
    let want = &f.naive()[top as usize];
    let rows = want.height.min(2);
    let sections: Vec<Slice> = calls.install(|| {
        (0..4)
            .into_par_iter()
            .map(|i| pyr.section(top, Axis::Y, (i % rows) as u32).unwrap())
            .collect()
    });
    for (i, s) in sections.iter().enumerate() {
        let row = i % rows;
        let expect: Vec<u32> = want
            .slices
            .iter()
            .flat_map(|sl| sl[row * want.width..(row + 1) * want.width].to_vec())
            .collect();
        assert!(values(s) == expect, "par_iter section {i} differs");
    }
}

fn two_threads() -> rayon::ThreadPool {
    rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap()
}

#[test]
fn requests_from_inside_rayon_par_iter_complete_and_are_correct() {
    within(
        Duration::from_secs(120),
        "requests from rayon workers",
        || {
            // Kernels on the same pool as the callers.
            let f = fixture(64, 48, 17, SampleType::U16, 4);
            let pool = Arc::new(two_threads());
            let pyr = f
                .builder()
                .with_thread_pool(Arc::clone(&pool))
                .build()
                .unwrap();
            par_iter_requests(&f, &pyr, &pool);

            // No pool given: kernels on the caller's pool.
            let f = fixture(50, 31, 9, SampleType::U8, 4);
            let pyr = f.open();
            par_iter_requests(&f, &pyr, &two_threads());

            // Kernels on a pool of their own, callers on another one.
            let f = fixture(33, 65, 9, SampleType::U16, 4);
            let pyr = f
                .builder()
                .with_thread_pool(Arc::new(two_threads()))
                .build()
                .unwrap();
            par_iter_requests(&f, &pyr, &two_threads());
        },
    );
}

#[test]
fn a_request_recorded_by_the_application_counts_as_a_slice_call_does() {
    let f = fixture(40, 30, 8, SampleType::U16, 8);
    let pyr = f.open();
    let score = |level: u32| {
        pyr.demand()
            .levels
            .iter()
            .find(|d| d.level == level)
            .map_or(0.0, |d| d.score)
    };
    pyr.slice(1, 2).unwrap();
    let after_call = score(1);
    assert!(after_call > 0.9, "{:?}", pyr.demand());
    // Three requests the application answered from its own cache: nothing generated, read or
    // stored, but counted in the requests and the demand.
    let generated = pyr.stats().generated;
    for _ in 0..3 {
        pyr.record_request(1, 2).unwrap();
    }
    assert!(score(1) > after_call + 2.9, "{:?}", pyr.demand());
    assert_eq!(pyr.stats().requests[1], 4);
    assert_eq!(pyr.stats().generated, generated);
    // Out of range: an error naming the value, nothing counted.
    let e = pyr.record_request(1, 99).unwrap_err();
    assert!(e.to_string().contains("99"), "{e}");
    let e = pyr.record_request(9, 0).unwrap_err();
    assert!(e.to_string().contains('9'), "{e}");
    assert_eq!(pyr.stats().requests[1], 4);
}
