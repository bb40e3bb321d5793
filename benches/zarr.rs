//! A served OME-Zarr chunk: one 1 x 512 x 512 u16 chunk made from a slice in the memory tier
//! (the pyramid's memory hit, then `ZarrLayout::encode_chunk`), what `lodcache serve` does for
//! a chunk whose encoded bytes are not in its response cache yet; per compression, then p50 and
//! p99 of plain timings against the target (p50 <= 1 ms with compression). Then a level-0
//! chunk cold in the server's sense (no decoded slice held) from a 2048^2 u16 uncompressed
//! TIFF: its 512 rows read from the file (`Pyramid::source_rows`,
//! `ZarrLayout::encode_file_bands`) against the whole slice decoded (`Pyramid::slice`,
//! `ZarrLayout::encode_file`), with the ratio of their medians.
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lodcache::zarr::{ChunkShape, Compression, ZarrLayout};
use lodcache::{Phantom, Pyramid, SampleType};

/// Level 1 of a 1024 x 1024 x 2 phantom is one 512 x 512 chunk.
const SOURCE: u32 = 1024;
const LEVEL: u32 = 1;
/// Plain timings per case for the percentiles.
const SAMPLES: usize = 1000;

struct Fixture {
    _tmp: tempfile::TempDir,
    pyr: Pyramid,
}

impl Fixture {
    fn new() -> Fixture {
        let (tmp, pyr) = phantom_pyramid(Phantom::new(SOURCE, SOURCE, 2));
        // Made once: every later request is a memory hit.
        pyr.slice(LEVEL, 0).expect("level-1 slice");
        Fixture { _tmp: tmp, pyr }
    }

    fn layout(&self, compression: Compression) -> ZarrLayout {
        ZarrLayout::new(self.pyr.levels(), ChunkShape::default(), compression).expect("layout")
    }

    /// The server's path for a chunk not in its response cache: the slice from the memory
    /// tier, cut and encoded.
    fn served(&self, layout: &ZarrLayout, out: &mut Vec<u8>) {
        let slice = self.pyr.slice(LEVEL, 0).expect("memory hit");
        layout
            .encode_file(LEVEL, [0, 0, 0], &[black_box(&slice)], out)
            .expect("chunk encodes");
    }
}

const CASES: [(&str, Compression); 3] = [
    ("blosc_lz4", Compression::BloscLz4),
    ("zstd_1", Compression::Zstd(1)),
    ("none", Compression::None),
];

fn chunks(c: &mut Criterion) {
    let f = Fixture::new();
    let mut out = Vec::new();
    let mut g = c.benchmark_group("served_chunk_1x512x512_u16");
    g.throughput(Throughput::Bytes(512 * 512 * 2));
    for (name, compression) in CASES {
        let layout = f.layout(compression);
        g.bench_function(name, |b| b.iter(|| f.served(&layout, &mut out)));
    }
    g.finish();
}

/// The phantom written to a temporary folder (seed 7) and its pyramid, no disk tier.
fn phantom_pyramid(phantom: Phantom) -> (tempfile::TempDir, Pyramid) {
    let tmp = tempfile::tempdir().expect("temporary folder");
    let scan = tmp.path().join("scan");
    phantom
        .with_seed(7)
        .write(&scan)
        .expect("phantom stack written");
    let pyr = Pyramid::builder(&scan)
        .with_disk_cache(false)
        .build()
        .expect("pyramid opens");
    (tmp, pyr)
}

/// `n` plain `Instant` timings of `run`, sorted.
fn sorted_timings(n: usize, mut run: impl FnMut()) -> Vec<Duration> {
    let mut t: Vec<Duration> = (0..n)
        .map(|_| {
            let start = Instant::now();
            run();
            start.elapsed()
        })
        .collect();
    t.sort_unstable();
    t
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50 and p99 of plain `Instant` timings (criterion reports mean and median only).
fn percentiles(_: &mut Criterion) {
    let f = Fixture::new();
    let mut out = Vec::new();
    println!();
    println!("1 x 512 x 512 u16 chunk from a memory hit, {SAMPLES} plain timings each:");
    println!(
        "{:<10} {:>9} {:>9} {:>9} {:>10}  target",
        "case", "p50 ms", "p99 ms", "max ms", "bytes"
    );
    for (name, compression) in CASES {
        let layout = f.layout(compression);
        for _ in 0..SAMPLES / 10 {
            f.served(&layout, &mut out);
        }
        let t = sorted_timings(SAMPLES, || f.served(&layout, &mut out));
        let (p50, p99, max) = (t[SAMPLES / 2], t[SAMPLES * 99 / 100], t[SAMPLES - 1]);
        let goal = if compression == Compression::None {
            String::new()
        } else {
            let ok = if ms(p50) <= 1.0 { "ok" } else { "MISSED" };
            format!("p50 <= 1 ms: {ok}")
        };
        println!(
            "{name:<10} {:>9.4} {:>9.4} {:>9.4} {:>10}  {goal}",
            ms(p50),
            ms(p99),
            ms(max),
            out.len()
        );
    }
    println!();
}

/// The level-0 source of the cold-chunk cases: one 2048^2 u16 uncompressed TIFF.
const COLD_SOURCE: u32 = 2048;
/// Chunk (0, 1, 1) of 1 x 512 x 512: rows 512..1024.
const COLD_CHUNK: [u32; 3] = [0, 1, 1];

struct Cold {
    _tmp: tempfile::TempDir,
    pyr: Pyramid,
    layout: ZarrLayout,
}

impl Cold {
    fn new() -> Cold {
        let (tmp, pyr) = phantom_pyramid(
            Phantom::new(COLD_SOURCE, COLD_SOURCE, 1).with_sample_type(SampleType::U16),
        );
        let layout = ZarrLayout::new(pyr.levels(), ChunkShape::default(), Compression::BloscLz4)
            .expect("layout");
        Cold {
            _tmp: tmp,
            pyr,
            layout,
        }
    }

    /// The chunk from its rows only, as `lodcache serve` makes a level-0 chunk of a plain
    /// file it holds no decoded slice of.
    fn rows(&self, out: &mut Vec<u8>) {
        let [_, rows, _] = self.layout.levels()[0]
            .file_ranges(COLD_CHUNK)
            .expect("chunk in the grid");
        let band = self
            .pyr
            .source_rows(0, rows.start, rows.len() as u32)
            .expect("rows read")
            .expect("an uncompressed TIFF reads by rows");
        self.layout
            .encode_file_bands(0, COLD_CHUNK, rows.start, &[black_box(&band)], out)
            .expect("chunk encodes");
    }

    /// The chunk from the whole slice decoded (the server's path before rows, and still its
    /// path for compressed files).
    fn whole(&self, out: &mut Vec<u8>) {
        let slice = self.pyr.slice(0, 0).expect("slice decoded");
        self.layout
            .encode_file(0, COLD_CHUNK, &[black_box(&slice)], out)
            .expect("chunk encodes");
    }
}

fn cold_chunks(c: &mut Criterion) {
    let f = Cold::new();
    let mut out = Vec::new();
    let mut g = c.benchmark_group("level0_chunk_1x512x512_u16_of_a_2048sq_tiff");
    g.throughput(Throughput::Bytes(512 * 512 * 2));
    g.bench_function("rows_read", |b| b.iter(|| f.rows(&mut out)));
    g.bench_function("whole_slice_decoded", |b| b.iter(|| f.whole(&mut out)));
    g.finish();
    // Medians of plain timings, for the ratio.
    let median = |run: &dyn Fn(&mut Vec<u8>)| {
        let mut out = Vec::new();
        sorted_timings(60, || run(&mut out))[30]
    };
    let (rows, whole) = (median(&|o| f.rows(o)), median(&|o| f.whole(o)));
    println!();
    println!(
        "level-0 1 x 512 x 512 chunk of a 2048^2 u16 TIFF, no decoded slice held: rows read \
         {:.3} ms, whole slice decoded {:.3} ms (median of 60): {:.1}x",
        ms(rows),
        ms(whole),
        whole.as_secs_f64() / rows.as_secs_f64()
    );
    println!();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    targets = chunks, percentiles, cold_chunks
}
criterion_main!(benches);
