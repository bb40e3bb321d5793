//! The streaming builder produces exactly the contract's pyramid: every slice of every level
//! equals an independent naive implementation, on odd sizes and depths, for any decode-thread
//! count, and each slice exactly once.

mod common;

use std::collections::BTreeMap;

use common::{Scan, values};
use lodcache::{LevelRule, Phantom, SampleType, Stack, StreamOptions, stream_levels};

/// Streams `stack` and collects every produced slice as plain numbers, checking that each
/// (level, z) comes exactly once.
fn stream_all(stack: &Stack, options: &StreamOptions) -> BTreeMap<(u32, u32), Vec<u32>> {
    let mut got = BTreeMap::new();
    stream_levels(stack, options, |level, z, slice| {
        let previous = got.insert((level, z), values(slice));
        assert!(previous.is_none(), "level {level} slice {z} produced twice");
        Ok(())
    })
    .unwrap();
    got
}

fn check_against_naive(w: u32, h: u32, d: u32, ty: SampleType, edge: u32, threads: usize) {
    let phantom = Phantom::new(w, h, d)
        .with_sample_type(ty)
        .with_seed(u64::from(w * 31 + d));
    let scan = Scan::new(phantom, edge);
    let stack = Stack::open(&scan.stack).unwrap();
    let rule = LevelRule::default().with_edge(edge);
    let naive = scan.naive();
    let levels = stack.levels(&rule).unwrap();
    assert_eq!(levels.len(), naive.len(), "{w}x{h}x{d}: level count");
    let got = stream_all(
        &stack,
        &StreamOptions {
            rule,
            decode_threads: threads,
            ..StreamOptions::default()
        },
    );
    let expected_count: usize = naive.iter().skip(1).map(|v| v.slices.len()).sum();
    assert_eq!(got.len(), expected_count, "{w}x{h}x{d}: slice count");
    for (n, vol) in naive.iter().enumerate().skip(1) {
        let info = levels[n];
        assert_eq!(
            (
                info.width as usize,
                info.height as usize,
                info.depth as usize
            ),
            (vol.width, vol.height, vol.slices.len()),
            "{w}x{h}x{d}: level {n} dimensions"
        );
        for (z, want) in vol.slices.iter().enumerate() {
            let have = &got[&(n as u32, z as u32)];
            assert!(
                have == want,
                "{w}x{h}x{d} {ty:?}: level {n} slice {z} differs from the naive pyramid"
            );
        }
    }
}

#[test]
fn odd_sizes_and_depths_match_the_naive_pyramid() {
    for (w, h, d) in [
        (37, 23, 1),
        (37, 23, 2),
        (37, 23, 3),
        (33, 41, 5),
        (64, 64, 7),
        (50, 31, 17),
        (2, 2, 9),
    ] {
        check_against_naive(w, h, d, SampleType::U16, 1, 2);
    }
}

#[test]
fn eight_bit_stacks_stay_eight_bit_and_match() {
    check_against_naive(45, 39, 11, SampleType::U8, 4, 2);
    let dir = tempfile::tempdir().unwrap();
    Phantom::new(20, 20, 3)
        .with_sample_type(SampleType::U8)
        .write(dir.path())
        .unwrap();
    let stack = Stack::open(dir.path()).unwrap();
    stream_levels(
        &stack,
        &StreamOptions {
            rule: LevelRule::default().with_edge(2),
            ..StreamOptions::default()
        },
        |_, _, s| {
            assert_eq!(s.sample_type(), SampleType::U8);
            Ok(())
        },
    )
    .unwrap();
}

#[test]
fn any_decode_thread_count_gives_the_same_pyramid() {
    for threads in [1, 2, 3, 5] {
        check_against_naive(41, 35, 13, SampleType::U16, 2, threads);
    }
}

#[test]
fn max_level_stops_early_and_out_of_range_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    Phantom::new(64, 64, 8).write(dir.path()).unwrap();
    let stack = Stack::open(dir.path()).unwrap();
    let rule = LevelRule::default().with_edge(4);
    let got = stream_all(
        &stack,
        &StreamOptions {
            rule,
            max_level: Some(2),
            ..StreamOptions::default()
        },
    );
    assert_eq!(got.keys().map(|k| k.0).max(), Some(2));
    assert_eq!(got.len(), 4 + 2);
    let err = stream_levels(
        &stack,
        &StreamOptions {
            rule,
            max_level: Some(9),
            ..StreamOptions::default()
        },
        |_, _, _| Ok(()),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains('9') && err.contains("0..=4"), "{err}");
}

#[test]
fn every_source_byte_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    Phantom::new(96, 80, 21).write(dir.path()).unwrap();
    let total: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let stack = Stack::open(dir.path()).unwrap();
    let stats = stream_levels(
        &stack,
        &StreamOptions {
            rule: LevelRule::default().with_edge(8),
            ..StreamOptions::default()
        },
        |_, _, _| Ok(()),
    )
    .unwrap();
    assert_eq!(stats.source_slices, 21);
    assert_eq!(stats.source_bytes, total);
    assert_eq!(stats.produced, vec![0, 11, 6, 3, 2]);
}

#[test]
fn a_bad_slice_stops_the_stream_with_its_name_and_a_sink_error_is_returned() {
    let dir = tempfile::tempdir().unwrap();
    Phantom::new(32, 32, 12).write(dir.path()).unwrap();
    // Slice 7 of another size.
    Phantom::new(30, 32, 1)
        .write(dir.path().join("other"))
        .unwrap();
    std::fs::rename(
        dir.path().join("other").join(Phantom::file_name(0)),
        dir.path().join(Phantom::file_name(7)),
    )
    .unwrap();
    let stack = Stack::open(dir.path()).unwrap();
    let options = StreamOptions {
        rule: LevelRule::default().with_edge(2),
        ..StreamOptions::default()
    };
    let err = stream_levels(&stack, &options, |_, _, _| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(err.contains(&Phantom::file_name(7)), "{err}");
    assert!(err.contains("30 x 32") && err.contains("32 x 32"), "{err}");

    let fresh = tempfile::tempdir().unwrap();
    Phantom::new(32, 32, 12).write(fresh.path()).unwrap();
    let stack = Stack::open(fresh.path()).unwrap();
    let mut calls = 0;
    let err = stream_levels(&stack, &options, |_, _, _| {
        calls += 1;
        if calls == 3 {
            Err(lodcache::Error::InvalidArgument {
                what: "test",
                detail: "sink refused".into(),
            })
        } else {
            Ok(())
        }
    })
    .unwrap_err();
    assert!(err.to_string().contains("sink refused"));
    assert_eq!(calls, 3);
}

#[test]
fn buffers_stay_bounded_whatever_the_depth() {
    let mut seen = Vec::new();
    for depth in [8u32, 64, 129] {
        let dir = tempfile::tempdir().unwrap();
        Phantom::new(24, 20, depth).write(dir.path()).unwrap();
        let stack = Stack::open(dir.path()).unwrap();
        let levels = stack
            .levels(&LevelRule::default().with_edge(2))
            .unwrap()
            .len();
        for threads in [1usize, 2, 3] {
            let stats = stream_levels(
                &stack,
                &StreamOptions {
                    rule: LevelRule::default().with_edge(2),
                    decode_threads: threads,
                    ..StreamOptions::default()
                },
                |_, _, _| Ok(()),
            )
            .unwrap();
            let per_thread = if threads == 1 { 3 } else { 2 };
            assert!(
                stats.source_buffers <= threads * per_thread,
                "depth {depth}, {threads} threads: {} source buffers",
                stats.source_buffers
            );
            assert!(
                stats.level_buffers <= 2 * (levels - 1),
                "depth {depth}: {} level buffers for {} levels",
                stats.level_buffers,
                levels - 1
            );
            seen.push(stats.source_buffers + stats.level_buffers);
        }
    }
    // A 129-deep stack needs no more buffers than a 64-deep one.
    assert!(seen[6..].iter().max() <= seen[3..6].iter().max());
}
