//! Kernel throughput on 2048 x 2048 u16 slice pairs, next to a plain memcpy of the same bytes.
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lodcache::Phantom;
use lodcache::kernel::{par_reduce_2x2x2, reduce_2x2x2};
use std::hint::black_box;

fn kernel(c: &mut Criterion) {
    let (w, h) = (2048usize, 2048usize);
    let phantom = Phantom::new(w as u32, h as u32, 2).with_seed(3);
    let a = phantom.slice(0).samples::<u16>().unwrap().to_vec();
    let b = phantom.slice(1).samples::<u16>().unwrap().to_vec();
    let input_bytes = (a.len() + b.len()) as u64 * 2;
    let mut dst = vec![0u16; (w / 2) * (h / 2)];

    let mut g = c.benchmark_group("u16_2048x2048_pair");
    g.throughput(Throughput::Bytes(input_bytes));
    g.bench_function("memcpy_same_bytes", |bench| {
        let mut ca = vec![0u16; a.len()];
        let mut cb = vec![0u16; b.len()];
        bench.iter(|| {
            ca.copy_from_slice(black_box(&a));
            cb.copy_from_slice(black_box(&b));
            black_box((&ca, &cb));
        })
    });
    g.bench_function("reduce_sequential", |bench| {
        bench.iter(|| reduce_2x2x2(black_box(&a), Some(black_box(&b)), w, h, &mut dst))
    });
    g.bench_function("reduce_parallel", |bench| {
        bench.iter(|| par_reduce_2x2x2(black_box(&a), Some(black_box(&b)), w, h, &mut dst))
    });
    g.bench_function("reduce_parallel_lone_slice", |bench| {
        bench.iter(|| par_reduce_2x2x2(black_box(&a), None, w, h, &mut dst))
    });
    g.finish();

    // The same on data that does not fit the caches: 8 distinct pairs (128 MiB) in turn, as in
    // a streaming build where every pair arrives from DRAM.
    let pairs: Vec<(Vec<u16>, Vec<u16>)> = (0..8)
        .map(|i| {
            let mut a2 = a.clone();
            let mut b2 = b.clone();
            a2.iter_mut().for_each(|v| *v = v.wrapping_add(i));
            b2.iter_mut().for_each(|v| *v = v.wrapping_add(i));
            (a2, b2)
        })
        .collect();
    let mut g = c.benchmark_group("u16_2048x2048_pair_cold");
    g.throughput(Throughput::Bytes(input_bytes));
    let mut next = 0;
    let mut copy = vec![0u16; a.len() * 2];
    g.bench_function("memcpy_same_bytes", |bench| {
        bench.iter(|| {
            let (pa, pb) = &pairs[next % pairs.len()];
            next += 1;
            copy[..pa.len()].copy_from_slice(pa);
            copy[pa.len()..].copy_from_slice(pb);
            black_box(&copy);
        })
    });
    g.bench_function("reduce_parallel", |bench| {
        bench.iter(|| {
            let (pa, pb) = &pairs[next % pairs.len()];
            next += 1;
            par_reduce_2x2x2(pa, Some(pb), w, h, &mut dst)
        })
    });
    g.bench_function("reduce_sequential", |bench| {
        bench.iter(|| {
            let (pa, pb) = &pairs[next % pairs.len()];
            next += 1;
            reduce_2x2x2(pa, Some(pb), w, h, &mut dst)
        })
    });
    g.finish();

    let a8: Vec<u8> = a.iter().map(|&v| (v >> 8) as u8).collect();
    let b8: Vec<u8> = b.iter().map(|&v| (v >> 8) as u8).collect();
    let mut dst8 = vec![0u8; dst.len()];
    let mut g = c.benchmark_group("u8_2048x2048_pair");
    g.throughput(Throughput::Bytes((a8.len() * 2) as u64));
    g.bench_function("reduce_parallel", |bench| {
        bench.iter(|| par_reduce_2x2x2(black_box(&a8), Some(black_box(&b8)), w, h, &mut dst8))
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = kernel
}
criterion_main!(benches);
