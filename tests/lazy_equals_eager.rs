//! The lazy API serves exactly the contract's pyramid.
//!
//! Every slice of every level, requested in a random order from four threads at once, equals
//! both the streaming builder's slice and an independent naive pyramid (tests/common), on
//! phantoms with odd sizes and depths and on the two real stacks in `../shared/data/` (or
//! `$LODCACHE_SHARED_DATA`; missing data fails the real-stack tests unless
//! `LODCACHE_SKIP_REAL_DATA=1`). Whole volumes and orthogonal sections equal the naive pyramid
//! too, and a volume served from the cache tiers equals the one built on a cold cache without
//! generating anything or reading a source byte.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::{Rng, Scan, Volume as Naive, assert_level_sizes, read_tiff_dir, shared_data, values};
use lodcache::{
    Axis, LevelRule, Phantom, Pyramid, SampleType, Slice, Stack, StreamOptions, stream_levels,
};

/// Threads requesting slices at once.
const THREADS: u64 = 4;

/// Every (level, z) of the pyramid, level 0 included.
fn all_keys(pyr: &Pyramid) -> Vec<(u32, u32)> {
    pyr.levels()
        .iter()
        .flat_map(|l| (0..l.depth).map(move |z| (l.level, z)))
        .collect()
}

/// Every slice of levels >= 1 as the streaming builder makes it, each exactly once.
fn streamed(stack_dir: &Path, edge: u32) -> BTreeMap<(u32, u32), Vec<u32>> {
    let stack = Stack::open(stack_dir).unwrap();
    let mut got = BTreeMap::new();
    stream_levels(
        &stack,
        &StreamOptions {
            rule: LevelRule::default().with_edge(edge),
            ..StreamOptions::default()
        },
        |level, z, slice| {
            let previous = got.insert((level, z), values(slice));
            assert!(previous.is_none(), "level {level} slice {z} streamed twice");
            Ok(())
        },
    )
    .unwrap();
    got
}

/// Checks that the pyramid's levels have the naive pyramid's sizes and the expected type.
fn check_levels(name: &str, pyr: &Pyramid, naive: &[Naive], ty: SampleType) {
    assert_level_sizes(name, pyr, naive);
    for (n, l) in pyr.levels().iter().enumerate() {
        assert_eq!(l.level as usize, n, "{name}: level numbering");
        assert_eq!(l.sample_type, ty, "{name}: level {n} sample type");
    }
}

/// Requests every slice of every level from [`THREADS`] threads, each in its own random order
/// (so that every slice is asked for by several threads, often at the same moment), and checks
/// each answer against the naive pyramid and the streaming builder.
fn lazy_all(
    name: &str,
    pyr: &Pyramid,
    naive: &[Naive],
    stream: &BTreeMap<(u32, u32), Vec<u32>>,
    seed: u64,
) {
    let keys = all_keys(pyr);
    let upper = keys.iter().filter(|(l, _)| *l > 0).count();
    assert_eq!(stream.len(), upper, "{name}: streamed slice count");
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let mut order = keys.clone();
                Rng(seed * 1_000 + t).shuffle(&mut order);
                s.spawn(move || {
                    for (level, z) in order {
                        let slice = pyr
                            .slice(level, z)
                            .unwrap_or_else(|e| panic!("{name}: slice({level}, {z}): {e}"));
                        let want = &naive[level as usize];
                        assert_eq!(
                            (slice.width() as usize, slice.height() as usize),
                            (want.width, want.height),
                            "{name}: level {level} slice {z} size"
                        );
                        assert_eq!(slice.sample_type(), pyr.sample_type());
                        let have = values(&slice);
                        assert!(
                            have == want.slices[z as usize],
                            "{name}: lazy level {level} slice {z} differs from the naive pyramid"
                        );
                        if level > 0 {
                            assert!(
                                have == stream[&(level, z)],
                                "{name}: lazy level {level} slice {z} differs from the \
                                 streaming builder"
                            );
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    });
    // Single-flight and by-product caching: each blob was generated exactly once however many
    // threads asked for it, and each source slice was decoded once for generation plus once
    // per direct level-0 request.
    pyr.flush();
    let stats = pyr.stats();
    let source_depth = u64::from(pyr.levels()[0].depth);
    assert_eq!(stats.generated, upper as u64, "{name}: blobs generated");
    assert_eq!(stats.stream_builds, 0, "{name}: slice requests streamed");
    assert_eq!(
        stats.source_slices,
        (THREADS + 1) * source_depth,
        "{name}: source slices decoded"
    );
    let requests: u64 = stats.requests.iter().sum();
    assert_eq!(requests, THREADS * keys.len() as u64, "{name}: requests");
}

/// The samples of a section as the naive pyramid gives them: row `z` is slice `z`'s row (for
/// [`Axis::Y`]) or column (for [`Axis::X`]) at `index`.
fn naive_section(level: &Naive, axis: Axis, index: usize) -> (usize, usize, Vec<u32>) {
    let w = level.width;
    match axis {
        Axis::Y => (
            w,
            level.slices.len(),
            level
                .slices
                .iter()
                .flat_map(|s| s[index * w..(index + 1) * w].iter().copied())
                .collect(),
        ),
        Axis::X => (
            level.height,
            level.slices.len(),
            level
                .slices
                .iter()
                .flat_map(|s| (0..level.height).map(move |y| s[y * w + index]))
                .collect(),
        ),
        Axis::Z => (w, level.height, level.slices[index].clone()),
    }
}

/// Indices 0, the middle and the last of `0..extent`, without repeats.
fn probe_indices(extent: u32) -> Vec<u32> {
    let mut v = vec![0, extent / 2, extent - 1];
    v.dedup();
    v
}

/// Checks sections across X, Y and Z at a few indices of every level against the naive pyramid.
fn check_sections(name: &str, pyr: &Pyramid, naive: &[Naive]) {
    for info in pyr.levels() {
        let want = &naive[info.level as usize];
        for (axis, extent) in [
            (Axis::X, info.width),
            (Axis::Y, info.height),
            (Axis::Z, info.depth),
        ] {
            for index in probe_indices(extent) {
                let section: Slice = pyr.section(info.level, axis, index).unwrap_or_else(|e| {
                    panic!("{name}: section({}, {axis:?}, {index}): {e}", info.level)
                });
                let (w, h, samples) = naive_section(want, axis, index as usize);
                assert_eq!(
                    (section.width() as usize, section.height() as usize),
                    (w, h),
                    "{name}: level {} section {axis:?} {index} size",
                    info.level
                );
                assert!(
                    values(&section) == samples,
                    "{name}: level {} section {axis:?} {index} differs from the naive pyramid",
                    info.level
                );
            }
        }
    }
}

/// Checks `volume` against the naive level, slice by slice.
fn check_volume(name: &str, volume: &lodcache::Volume, want: &Naive, level: u32) {
    assert_eq!(
        (
            volume.width() as usize,
            volume.height() as usize,
            volume.depth() as usize
        ),
        (want.width, want.height, want.slices.len()),
        "{name}: volume({level}) size"
    );
    assert_eq!(
        volume.pixels().len(),
        want.width * want.height * want.slices.len(),
        "{name}: volume({level}) sample count"
    );
    for (z, samples) in want.slices.iter().enumerate() {
        let slice = volume.slice(z as u32).unwrap();
        assert!(
            values(&slice) == *samples,
            "{name}: volume({level}) slice {z} differs from the naive pyramid"
        );
    }
    assert!(volume.slice(volume.depth()).is_none());
}

/// `volume(level)` on a cold cache equals the naive level; the same call again, and a fresh
/// pyramid on the same cache folder, serve it from the tiers without generating anything or
/// reading a source byte.
fn check_volume_cold_then_warm(name: &str, stack_dir: &Path, cache: &Path, edge: u32, level: u32) {
    let pyr = builder(stack_dir, cache, edge).build().unwrap();
    let depths: Vec<u64> = pyr.levels().iter().map(|l| u64::from(l.depth)).collect();
    // A streaming build stores every slice of the level and of the levels below it.
    let want_blobs: u64 = depths[1..=level as usize].iter().sum();
    let cold = pyr.volume(level).unwrap();
    pyr.flush();
    let after_cold = pyr.stats();
    assert_eq!(after_cold.stream_builds, 1, "{name}: cold volume({level})");
    assert_eq!(
        after_cold.generated, want_blobs,
        "{name}: cold volume({level}) blobs"
    );
    assert_eq!(
        after_cold.source_slices, depths[0],
        "{name}: cold volume({level}) reads each source slice once"
    );

    let warm = pyr.volume(level).unwrap();
    pyr.flush();
    let after_warm = pyr.stats();
    assert!(warm == cold, "{name}: warm volume({level}) differs");
    assert_eq!(
        after_warm.generated, after_cold.generated,
        "{name}: warm volume({level}) generated"
    );
    assert_eq!(
        after_warm.source_bytes, after_cold.source_bytes,
        "{name}: warm volume({level}) read source bytes"
    );
    assert_eq!(
        after_warm.source_slices, after_cold.source_slices,
        "{name}: warm volume({level}) decoded source slices"
    );
    assert_eq!(
        after_warm.stream_builds, 1,
        "{name}: warm volume({level}) streamed again"
    );

    // From the disk tier alone (a new pyramid: empty memory tier).
    drop(pyr);
    let reopened = builder(stack_dir, cache, edge).build().unwrap();
    let from_disk = reopened.volume(level).unwrap();
    reopened.flush();
    let s = reopened.stats();
    assert!(
        from_disk == cold,
        "{name}: volume({level}) from disk differs"
    );
    assert_eq!(
        (
            s.generated,
            s.source_bytes,
            s.source_slices,
            s.stream_builds
        ),
        (0, 0, 0, 0),
        "{name}: volume({level}) from disk touched the sources"
    );
    assert_eq!(
        (s.disk.hits, s.disk.corrupt),
        (depths[level as usize], 0),
        "{name}: volume({level}) from disk: disk hits and damaged blobs"
    );
}

fn builder(stack_dir: &Path, cache: &Path, edge: u32) -> lodcache::PyramidBuilder {
    Pyramid::builder(stack_dir)
        .with_cache_dir(cache)
        .with_edge(edge)
}

/// A phantom case: size, sample type, edge.
type Case = (u32, u32, u32, SampleType, u32);

const PHANTOMS: [Case; 6] = [
    (37, 23, 1, SampleType::U16, 4),
    (50, 31, 3, SampleType::U16, 4),
    (64, 48, 17, SampleType::U16, 4),
    (33, 65, 9, SampleType::U16, 4),
    (45, 38, 11, SampleType::U8, 4),
    (70, 41, 6, SampleType::U16, 8),
];

/// The phantom of `case` in a temporary folder, and its name.
fn phantom_scan(case: Case) -> (String, Scan) {
    let (w, h, d, ty, edge) = case;
    let phantom = Phantom::new(w, h, d)
        .with_sample_type(ty)
        .with_seed(u64::from(w * 7 + h * 3 + d));
    let name = format!("phantom {w}x{h}x{d} {ty:?} edge {edge}");
    (name, Scan::new(phantom, edge))
}

#[test]
fn lazy_slices_of_phantoms_equal_stream_and_naive() {
    let pool = Arc::new(
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap(),
    );
    for (i, case) in PHANTOMS.into_iter().enumerate() {
        let (name, scan) = phantom_scan(case);
        let (tmp, stack_dir, naive) = (&scan.tmp, &scan.stack, scan.naive());
        let edge = case.4;
        assert!(
            (4..=6).contains(&naive.len()),
            "{name}: want 3-5 levels above the source, got {}",
            naive.len() - 1
        );
        let mut b = builder(stack_dir, &tmp.path().join("cache"), edge);
        // Half the cases run the kernels on a dedicated pool, half on the caller's.
        if i % 2 == 1 {
            b = b.with_thread_pool(Arc::clone(&pool));
        }
        let pyr = b.build().unwrap();
        check_levels(&name, &pyr, naive, case.3);
        let stream = streamed(stack_dir, edge);
        lazy_all(&name, &pyr, naive, &stream, i as u64 + 1);
    }
}

#[test]
fn volumes_of_phantoms_equal_naive_and_warm_volumes_come_from_the_tiers() {
    for case in PHANTOMS {
        let (name, scan) = phantom_scan(case);
        let (tmp, stack_dir, naive) = (&scan.tmp, &scan.stack, scan.naive());
        let edge = case.4;
        for level in 0..naive.len() as u32 {
            let cache = tmp.path().join(format!("cache-{level}"));
            let pyr = builder(stack_dir, &cache, edge).build().unwrap();
            let v = pyr.volume(level).unwrap();
            check_volume(&name, &v, &naive[level as usize], level);
            drop(pyr);
            if level > 0 {
                let cache = tmp.path().join(format!("cache-{level}-b"));
                check_volume_cold_then_warm(&name, stack_dir, &cache, edge, level);
            }
        }
    }
}

#[test]
fn sections_of_phantoms_equal_naive() {
    for case in PHANTOMS {
        let (name, scan) = phantom_scan(case);
        let (tmp, stack_dir, naive) = (&scan.tmp, &scan.stack, scan.naive());
        let pyr = builder(stack_dir, &tmp.path().join("cache"), case.4)
            .build()
            .unwrap();
        check_sections(&name, &pyr, naive);
    }
}

/// The lazy slices, a volume and sections of a real stack equal the naive pyramid of its files
/// read with the tiff crate, and the streaming builder.
fn check_real(name: &str, ty: SampleType, seed: u64) {
    const EDGE: u32 = 32;
    let Some(dir) = shared_data(name) else { return };
    let (source, bits) = read_tiff_dir(&dir);
    assert_eq!(bits as usize, ty.bytes() * 8, "{name}: sample depth");
    let naive = source.pyramid(EDGE as usize);
    assert!(naive.len() >= 3, "{name}: expected at least two levels");
    let tmp = tempfile::tempdir().unwrap();
    let pyr = builder(&dir, &tmp.path().join("cache"), EDGE)
        .build()
        .unwrap();
    check_levels(name, &pyr, &naive, ty);
    let stream = streamed(&dir, EDGE);
    lazy_all(name, &pyr, &naive, &stream, seed);
    check_sections(name, &pyr, &naive);

    let top = naive.len() as u32 - 1;
    check_volume_cold_then_warm(name, &dir, &tmp.path().join("cache-volume"), EDGE, top);
    let pyr = builder(&dir, &tmp.path().join("cache-volume"), EDGE)
        .build()
        .unwrap();
    for level in 1..=top {
        check_volume(
            name,
            &pyr.volume(level).unwrap(),
            &naive[level as usize],
            level,
        );
    }
}

#[test]
fn lazy_siemens_b0_16bit_equals_stream_and_naive() {
    check_real("heudiconv_siemens_b0_mosaic", SampleType::U16, 101);
}

#[test]
fn lazy_mni152_8bit_equals_stream_and_naive() {
    check_real("niivue_mni152_2009_t1", SampleType::U8, 202);
}
