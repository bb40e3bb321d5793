//! Blob codec throughput (LZ4 with and without the byte-shuffle filter) on phantom and real
//! slices, after a table of the compression ratios each filter reaches.
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lodcache::codec::{BlobId, FilterChoice, Origin, decode_into, encode, verify};
use lodcache::kernel::reduce_slices;
use lodcache::{LevelInfo, Phantom, Slice, SliceKey, Stack};

/// The key every blob is encoded under (any level >= 1 works; decode checks it).
const KEY: SliceKey = SliceKey { level: 1, z: 0 };

/// One benchmark input: a name, a slice, and whether to run every filter on it.
struct Input {
    name: String,
    slice: Slice,
    all_filters: bool,
}

impl Input {
    fn level(&self) -> LevelInfo {
        LevelInfo {
            level: KEY.level,
            width: self.slice.width(),
            height: self.slice.height(),
            depth: 1,
            sample_type: self.slice.sample_type(),
        }
    }

    fn raw_bytes(&self) -> u64 {
        self.slice.pixels().as_bytes().len() as u64
    }

    /// The filters to encode with; 8-bit slices are never shuffled, so one is enough there.
    fn filters(&self) -> &'static [(&'static str, FilterChoice)] {
        const ALL: &[(&str, FilterChoice)] = &[
            ("none", FilterChoice::None),
            ("shuffle", FilterChoice::Shuffle),
            ("auto", FilterChoice::Auto),
        ];
        if self.all_filters { ALL } else { &ALL[2..] }
    }
}

fn shared_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(name)
}

/// The middle slice of a real stack, or `None` (with a "skipping" line) when it cannot be read.
fn real_slice(name: &str) -> Option<Slice> {
    let dir = shared_data(name);
    if !dir.is_dir() {
        println!("skipping: real stack {} not found", dir.display());
        return None;
    }
    let read = Stack::open(&dir).and_then(|stack| stack.read_slice(stack.depth() / 2));
    match read {
        Ok(slice) => Some(slice),
        Err(e) => {
            println!("skipping: real stack {} unreadable: {e}", dir.display());
            None
        }
    }
}

fn inputs() -> Vec<Input> {
    let mut inputs = Vec::new();
    for n in [512u32, 2048] {
        inputs.push(Input {
            name: format!("phantom_u16_{n}x{n}"),
            slice: Phantom::new(n, n, 4).with_seed(7).slice(1),
            all_filters: true,
        });
    }
    // A level-1 slice (2x2x2 mean of two phantom slices): the typical blob, less noisy.
    let phantom = Phantom::new(1024, 1024, 2).with_seed(7);
    let mut level1 = Slice::zeroed(0, 0, phantom.sample_type());
    reduce_slices(&phantom.slice(0), Some(&phantom.slice(1)), &mut level1)
        .expect("two phantom slices of one size");
    inputs.push(Input {
        name: "phantom_level1_u16_512x512".into(),
        slice: level1,
        all_filters: true,
    });
    for (stack, all_filters) in [
        ("heudiconv_siemens_b0_mosaic", true),
        ("niivue_mni152_2009_t1", false),
    ] {
        if let Some(slice) = real_slice(stack) {
            let ty = slice.sample_type();
            let (w, h) = (slice.width(), slice.height());
            inputs.push(Input {
                name: format!("{stack}_{ty}_{w}x{h}"),
                slice,
                all_filters,
            });
        }
    }
    inputs
}

fn print_ratios(inputs: &[Input]) {
    println!();
    println!("compression ratios (blob bytes include the 52-byte header)");
    println!(
        "{:<44} {:>8} {:>10} {:>10} {:>9} {:>8}  stored as",
        "input", "filter", "raw B", "blob B", "blob/raw", "raw/blob"
    );
    for input in inputs {
        let raw = input.raw_bytes();
        for &(name, choice) in input.filters() {
            let blob = encode(&input.slice, KEY, Origin::default(), choice);
            let header = match verify(&blob, &BlobId::new(input.level(), KEY.z)) {
                Ok(h) => h,
                Err(e) => {
                    println!("{:<44} {name:>8} blob refused: {e}", input.name);
                    continue;
                }
            };
            println!(
                "{:<44} {name:>8} {raw:>10} {:>10} {:>9.3} {:>8.2}  {:?} + {:?}",
                input.name,
                blob.len(),
                header.ratio(),
                1.0 / header.ratio(),
                header.compression,
                header.filter,
            );
        }
    }
    println!("target: decode >= 1.5 GB/s (= 1.40 GiB/s as criterion prints) on one core");
    println!();
}

fn codec(c: &mut Criterion) {
    let inputs = inputs();
    print_ratios(&inputs);

    let mut g = c.benchmark_group("encode");
    for input in &inputs {
        g.throughput(Throughput::Bytes(input.raw_bytes()));
        for &(name, choice) in input.filters() {
            g.bench_with_input(BenchmarkId::new(name, &input.name), input, |b, input| {
                b.iter(|| encode(black_box(&input.slice), KEY, Origin::default(), choice))
            });
        }
    }
    g.finish();

    // Decode as the tiers do: into one reused slice. Auto decodes like whichever filter it
    // picked, so only the explicit filters are timed.
    let mut g = c.benchmark_group("decode");
    for input in &inputs {
        g.throughput(Throughput::Bytes(input.raw_bytes()));
        let level = input.level();
        for &(name, choice) in input.filters() {
            if input.all_filters && choice == FilterChoice::Auto {
                continue;
            }
            let blob = encode(&input.slice, KEY, Origin::default(), choice);
            let mut out = Slice::zeroed(level.width, level.height, level.sample_type);
            g.bench_with_input(BenchmarkId::new(name, &input.name), &blob, |b, blob| {
                b.iter(|| {
                    decode_into(black_box(blob), &BlobId::new(level, KEY.z), &mut out)
                        .expect("a freshly encoded blob decodes")
                })
            });
            assert_eq!(out, input.slice, "{} {name}: round trip", input.name);
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    targets = codec
}
criterion_main!(benches);
