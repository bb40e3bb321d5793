//! Seeded numbers and sample patterns, and comparisons of samples.

use lodcache::{Sample, Slice};

/// Adds the golden-ratio increment of SplitMix64.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a well-mixed hash, so neighbouring inputs differ in every bit.
fn finalize(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// SplitMix64 of one value (the number [`Rng`] seeded with `x` gives first).
pub fn mix(x: u64) -> u64 {
    finalize(x.wrapping_add(GOLDEN))
}

/// SplitMix64: a small seeded generator, so that a failing run can be replayed.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN);
        finalize(self.0)
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A number in `0..n`.
    pub fn below_u32(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }

    /// A number in `0..n`.
    pub fn below_u64(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// `items` in a random order (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// A hash of one sample position.
fn hash(x: u32, y: u32, c: u32, seed: u64) -> u64 {
    mix(u64::from(x) | u64::from(y) << 20 | u64::from(c) << 40 | seed << 44)
}

/// `w * h * channels` pseudo-random samples below `2^bits`, channels interleaved, with the
/// extremes 0 and the maximum at the first two positions so that the full range is exercised.
pub fn noise(w: u32, h: u32, channels: u32, bits: u32, seed: u64) -> Vec<u64> {
    let max = (1u64 << bits) - 1;
    let mut v = Vec::with_capacity((w * h * channels) as usize);
    for y in 0..h {
        for x in 0..w {
            for c in 0..channels {
                v.push(hash(x, y, c, seed) & max);
            }
        }
    }
    if let Some(first) = v.first_mut() {
        *first = 0;
    }
    if v.len() > 1 {
        v[1] = max;
    }
    v
}

/// 8-bit gray noise.
pub fn noise8(w: u32, h: u32, seed: u64) -> Vec<u8> {
    noise(w, h, 1, 8, seed)
        .into_iter()
        .map(|s| s as u8)
        .collect()
}

/// 16-bit gray noise.
pub fn noise16(w: u32, h: u32, seed: u64) -> Vec<u16> {
    noise(w, h, 1, 16, seed)
        .into_iter()
        .map(|s| s as u16)
        .collect()
}

/// A smooth 8-bit gradient (for lossy JPEG).
pub fn smooth8(w: u32, h: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            v.push((40 + x * 80 / w.max(1) + y * 80 / h.max(1)) as u8);
        }
    }
    v
}

/// Float samples including negatives, tiny, huge, infinite and NaN values.
pub fn floats(w: u32, h: u32, seed: u64) -> Vec<f32> {
    let special = [
        0.0,
        -0.0,
        -1.5,
        1.0e-30,
        3.0e38,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        f32::MIN_POSITIVE,
    ];
    let mut v: Vec<f32> = noise(w, h, 1, 32, seed)
        .into_iter()
        .map(|s| (s as f32 / 65536.0) - 30000.0)
        .collect();
    for (d, s) in v.iter_mut().zip(special) {
        *d = s;
    }
    v
}

/// Luma of the same depth, as the contract asks: round(0.2126 r + 0.7152 g + 0.0722 b), half
/// up. Computed exactly in integers: in `f64`, values that are exactly halfway (for example
/// 0.7152 * 14 + 0.0722 * 76 = 15.5) can land just below the half and round down.
pub fn luma(r: u64, g: u64, b: u64) -> u64 {
    (2126 * r + 7152 * g + 722 * b + 5000) / 10000
}

/// Luma of each pixel of interleaved samples with `channels` >= 3 per pixel.
pub fn luma_of(samples: &[u64], channels: usize) -> Vec<u64> {
    samples
        .chunks_exact(channels)
        .map(|p| luma(p[0], p[1], p[2]))
        .collect()
}

/// The samples of a slice as numbers (panics when they are not `T`).
pub fn samples_of<T: Sample + Copy + Into<u64>>(slice: &Slice) -> Vec<u64> {
    let samples = slice.samples::<T>().unwrap_or_else(|| {
        panic!(
            "{:?} samples, not {}",
            slice.sample_type(),
            std::any::type_name::<T>()
        )
    });
    samples.iter().map(|&s| s.into()).collect()
}

/// The 8-bit samples of a slice (panics on another type).
pub fn u8s(slice: &Slice) -> Vec<u64> {
    samples_of::<u8>(slice)
}

/// The 16-bit samples of a slice (panics on another type).
pub fn u16s(slice: &Slice) -> Vec<u64> {
    samples_of::<u16>(slice)
}

/// Index and values of the first difference, for readable failures on large buffers.
pub fn first_difference(found: &[u64], expected: &[u64]) -> Option<(usize, u64, u64)> {
    found
        .iter()
        .zip(expected)
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i, *a, *b))
}

/// Asserts sample-by-sample equality, naming the first differing position.
#[track_caller]
pub fn assert_samples(found: &[u64], expected: &[u64], what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}: sample count");
    if let Some((i, a, b)) = first_difference(found, expected) {
        panic!("{what}: sample {i} is {a}, expected {b}");
    }
}
