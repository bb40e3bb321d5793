//! Latency of serving one 512 x 512 u16 slice from each cache tier: a memory hit, a disk hit
//! (page cache warm) and a disk write, then p50/p99 of plain timings against the targets.
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lodcache::codec::{BlobId, FilterChoice, decode_into, encode, verify};
use lodcache::kernel::reduce_2x2x2;
use lodcache::store::{Blob, DiskOptions, DiskStore, Manifest, MemoryStore};
use lodcache::{LevelInfo, LevelRule, Phantom, Pixels, Slice, SliceKey, Stack};

/// Level 1 of a 1024 x 1024 x 2 phantom is the 512 x 512 slice served.
const SOURCE: u32 = 1024;
const KEY: SliceKey = SliceKey { level: 1, z: 0 };
/// Plain timings per tier for the percentiles.
const SAMPLES: usize = 2000;

/// Both tiers holding the blob of [`KEY`], over a phantom stack in a temporary folder.
struct Fixture {
    id: BlobId,
    _tmp: tempfile::TempDir,
    level: LevelInfo,
    slice: Slice,
    blob: Blob,
    memory: MemoryStore,
    disk: DiskStore,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("temporary folder");
        let phantom = Phantom::new(SOURCE, SOURCE, 2).with_seed(7);
        let scan = tmp.path().join("scan");
        phantom.write(&scan).expect("phantom stack written");
        let stack = Stack::open(&scan).expect("phantom stack opens");
        let rule = LevelRule::default();
        let levels = stack.levels(&rule).expect("levels");
        let level = levels[KEY.level as usize];

        // The real level-1 slice: the 2x2x2 mean of source slices 0 and 1.
        let (a, b) = (phantom.slice(0), phantom.slice(1));
        let mut dst = vec![0u16; level.slice_len()];
        let samples = |s: &Slice| s.samples::<u16>().expect("u16 phantom").to_vec();
        let n = SOURCE as usize;
        reduce_2x2x2(&samples(&a), Some(&samples(&b)), n, n, &mut dst);
        let slice = Slice::new(level.width, level.height, Pixels::U16(dst)).expect("slice");

        let manifest = Manifest::of(&stack).expect("manifest");
        let disk = DiskStore::open(&DiskOptions::new(tmp.path().join("cache")), &manifest);
        let id = disk.fingerprint().id(KEY).expect("a level-1 slice");
        assert_eq!(id.level, level);
        let blob: Blob = encode(&slice, KEY, id.origin, FilterChoice::Auto);
        let memory = MemoryStore::new(64 << 20);
        memory.insert(KEY, Arc::clone(&blob));
        disk.put(KEY, &blob).expect("blob written");
        Fixture {
            _tmp: tmp,
            id,
            level,
            slice,
            blob,
            memory,
            disk,
        }
    }

    fn raw_bytes(&self) -> u64 {
        self.level.slice_bytes() as u64
    }

    fn memory_hit(&self, out: &mut Slice) {
        let blob = self.memory.get(KEY).expect("memory hit");
        decode_into(&blob, &self.id, out).expect("blob decodes");
    }

    fn disk_hit(&self, out: &mut Slice) {
        let blob = self.disk.get(KEY).expect("disk hit");
        decode_into(&blob, &self.id, out).expect("blob decodes");
    }

    fn decode(&self, out: &mut Slice) {
        decode_into(black_box(&self.blob), &self.id, out).expect("blob decodes");
    }

    fn put(&self) {
        self.disk
            .put(KEY, black_box(&self.blob))
            .expect("blob written");
    }
}

fn tiers(c: &mut Criterion) {
    let f = Fixture::new();
    let mut out = Slice::zeroed(f.level.width, f.level.height, f.level.sample_type);
    let mut g = c.benchmark_group("tier_512x512_u16");
    g.throughput(Throughput::Bytes(f.raw_bytes()));
    g.bench_function("decode_only", |b| b.iter(|| f.decode(&mut out)));
    g.bench_function("memory_hit", |b| b.iter(|| f.memory_hit(&mut out)));
    g.bench_function("disk_hit", |b| b.iter(|| f.disk_hit(&mut out)));
    g.bench_function("disk_put", |b| b.iter(|| f.put()));
    g.finish();
    assert_eq!(out, f.slice, "tiers served a different slice");
}

/// Sorted durations of `SAMPLES` calls of `op`, after a short warm-up.
fn timings(mut op: impl FnMut()) -> Vec<Duration> {
    for _ in 0..SAMPLES / 10 {
        op();
    }
    let mut t: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let start = Instant::now();
            op();
            start.elapsed()
        })
        .collect();
    t.sort_unstable();
    t
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

/// p50 and p99 of plain `Instant` timings (criterion reports mean and median only).
fn percentiles(_: &mut Criterion) {
    let f = Fixture::new();
    let mut out = Slice::zeroed(f.level.width, f.level.height, f.level.sample_type);
    let header = verify(&f.blob, &f.id).expect("blob verifies");
    println!();
    println!(
        "512 x 512 u16 level-1 slice: {} raw bytes, blob {} bytes ({:?} + {:?}, blob/raw {:.3})",
        f.raw_bytes(),
        f.blob.len(),
        header.compression,
        header.filter,
        header.ratio()
    );
    println!("{SAMPLES} plain timings each:");
    println!(
        "{:<12} {:>9} {:>9} {:>9}  target",
        "case", "p50 ms", "p99 ms", "max ms"
    );
    let verify_only = || {
        verify(black_box(&f.blob), &f.id).expect("blob verifies");
    };
    let cases: [(&str, Vec<Duration>, Option<f64>); 5] = [
        ("decode_only", timings(|| f.decode(&mut out)), None),
        ("verify_only", timings(verify_only), None),
        ("memory_hit", timings(|| f.memory_hit(&mut out)), Some(0.3)),
        ("disk_hit", timings(|| f.disk_hit(&mut out)), Some(1.5)),
        ("disk_put", timings(|| f.put()), None),
    ];
    for (name, t, target) in &cases {
        let (p50, p99, max) = (t[t.len() / 2], t[t.len() * 99 / 100], t[t.len() - 1]);
        let goal = match target {
            Some(limit) => format!("p50 < {limit} ms: {}", verdict(ms(p50) < *limit)),
            None => String::new(),
        };
        println!(
            "{name:<12} {:>9.4} {:>9.4} {:>9.4}  {goal}",
            ms(p50),
            ms(p99),
            ms(max)
        );
    }
    let decode_p50 = cases[0].1[SAMPLES / 2].as_secs_f64();
    let gbps = f.raw_bytes() as f64 / decode_p50 / 1e9;
    println!(
        "decode at p50: {gbps:.2} GB/s on one core (target >= 1.5 GB/s: {})",
        verdict(gbps >= 1.5)
    );
    println!();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .measurement_time(Duration::from_secs(2))
        .warm_up_time(Duration::from_millis(500));
    targets = tiers, percentiles
}
criterion_main!(benches);
