//! The 2x2x2 box filter that makes level n from level n-1.
//!
//! Output pixel `(x, y)` is the mean of the 2x2 blocks at `(2x..2x+2, 2y..2y+2)` in the two input
//! slices, rounded as [`Sample::mean8`] says; with one input slice (the lone last slice of an odd
//! depth) it is the 2x2 mean, [`Sample::mean4`]. An odd last column or row of the input is
//! dropped. Each output row reads two rows of each input once, so the kernel streams memory.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::slice::{Pixels, Sample, Slice};

/// Output samples per rayon task: below this, splitting costs more than it saves.
/// Chosen with `benches/kernel.rs` (1024 rows of a 2048-wide level = 1/16 of a 4 MiB output).
pub const PAR_MIN_SAMPLES: usize = 1 << 16;

#[inline(always)]
fn row8<T: Sample>(a0: &[T], a1: &[T], b0: &[T], b1: &[T], dst: &mut [T]) {
    let n = dst.len();
    let (a0, a1, b0, b1) = (&a0[..2 * n], &a1[..2 * n], &b0[..2 * n], &b1[..2 * n]);
    let pairs = a0
        .chunks_exact(2)
        .zip(a1.chunks_exact(2))
        .zip(b0.chunks_exact(2).zip(b1.chunks_exact(2)));
    for (d, ((p, q), (r, s))) in dst.iter_mut().zip(pairs) {
        let top = p[0].widen() + p[1].widen() + q[0].widen() + q[1].widen();
        let bottom = r[0].widen() + r[1].widen() + s[0].widen() + s[1].widen();
        *d = T::mean8(top + bottom);
    }
}

#[inline(always)]
fn row4<T: Sample>(a0: &[T], a1: &[T], dst: &mut [T]) {
    let n = dst.len();
    let (a0, a1) = (&a0[..2 * n], &a1[..2 * n]);
    for (d, (p, q)) in dst
        .iter_mut()
        .zip(a0.chunks_exact(2).zip(a1.chunks_exact(2)))
    {
        *d = T::mean4(p[0].widen() + p[1].widen() + q[0].widen() + q[1].widen());
    }
}

/// Reduces rows `first_row..` of the output into `dst` (a whole number of output rows).
///
/// Compiled for AVX2 as well as the baseline and chosen at run time (the `multiversion` crate:
/// the same code twice the speed on AVX2 machines, with no `unsafe` here). The crate's own unit
/// tests pick the build at compile time instead, i.e. the baseline one, so that it is checked
/// against the oracle on AVX2 machines too; the integration tests run the AVX2 build there.
#[cfg_attr(not(test), multiversion::multiversion(targets("x86_64+avx2")))]
#[cfg_attr(
    test,
    multiversion::multiversion(targets("x86_64+avx2"), dispatcher = "static")
)]
fn reduce_rows<T: Sample>(a: &[T], b: Option<&[T]>, width: usize, first_row: usize, dst: &mut [T]) {
    let out_w = width / 2;
    if out_w == 0 {
        return;
    }
    for (i, d) in dst.chunks_exact_mut(out_w).enumerate() {
        let y = first_row + i;
        let r0 = 2 * y * width;
        let r1 = r0 + width;
        let (a0, a1) = (&a[r0..r0 + width], &a[r1..r1 + width]);
        match b {
            Some(b) => row8(a0, a1, &b[r0..r0 + width], &b[r1..r1 + width], d),
            None => row4(a0, a1, d),
        }
    }
}

fn check_lengths<T>(a: &[T], b: Option<&[T]>, width: usize, height: usize, dst: &[T]) {
    let n = width * height;
    assert_eq!(a.len(), n, "first input is not width * height");
    if let Some(b) = b {
        assert_eq!(b.len(), n, "second input is not width * height");
    }
    assert_eq!(
        dst.len(),
        (width / 2) * (height / 2),
        "output is not (width/2) * (height/2)"
    );
}

/// Reduces slices `a` and `b` (or `a` alone) of `width` x `height` into `dst`, on this thread.
///
/// # Panics
/// When `a` or `b` does not hold `width * height` samples, or `dst` does not hold
/// `(width / 2) * (height / 2)`.
pub fn reduce_2x2x2<T: Sample>(
    a: &[T],
    b: Option<&[T]>,
    width: usize,
    height: usize,
    dst: &mut [T],
) {
    check_lengths(a, b, width, height, dst);
    reduce_rows(a, b, width, 0, dst);
}

/// [`reduce_2x2x2`] split over output rows on the current rayon pool.
///
/// # Panics
/// As [`reduce_2x2x2`].
pub fn par_reduce_2x2x2<T: Sample>(
    a: &[T],
    b: Option<&[T]>,
    width: usize,
    height: usize,
    dst: &mut [T],
) {
    check_lengths(a, b, width, height, dst);
    let out_w = width / 2;
    if out_w == 0 || dst.len() <= PAR_MIN_SAMPLES {
        reduce_rows(a, b, width, 0, dst);
        return;
    }
    let rows_per_task = PAR_MIN_SAMPLES.div_ceil(out_w).max(1);
    dst.par_chunks_mut(rows_per_task * out_w)
        .enumerate()
        .for_each(|(i, chunk)| reduce_rows(a, b, width, i * rows_per_task, chunk));
}

fn typed_reduce<T: Sample>(a: &Slice, b: Option<&Slice>, dst: &mut Slice, par: bool) -> Option<()> {
    let (w, h) = (a.width() as usize, a.height() as usize);
    let a = a.samples::<T>()?;
    let b = match b {
        Some(b) => Some(b.samples::<T>()?),
        None => None,
    };
    let out = T::view_mut(dst.pixels_mut())?;
    if par {
        par_reduce_2x2x2(a, b, w, h, out);
    } else {
        reduce_2x2x2(a, b, w, h, out);
    }
    Some(())
}

/// Makes `dst` the reduction of `a` and `b` (or of `a` alone), reusing `dst`'s allocation,
/// split over the current rayon pool.
///
/// # Errors
/// [`Error::InvalidArgument`] when `a` and `b` differ in size or sample type.
pub fn reduce_slices(a: &Slice, b: Option<&Slice>, dst: &mut Slice) -> Result<()> {
    reduce_slices_with(a, b, dst, true)
}

/// [`reduce_slices`] on this thread alone.
///
/// # Errors
/// As [`reduce_slices`].
pub fn reduce_slices_here(a: &Slice, b: Option<&Slice>, dst: &mut Slice) -> Result<()> {
    reduce_slices_with(a, b, dst, false)
}

/// Reduces a band of `rows` input rows (`a` and `b` as raw native-order samples of `dst`'s
/// type, `width` samples a row, 8-byte aligned) into samples `out` of `dst`, on this thread.
///
/// # Panics
/// When the lengths do not match or the bands are not aligned for the sample type.
pub(crate) fn reduce_bytes(
    a: &[u8],
    b: Option<&[u8]>,
    width: usize,
    rows: usize,
    dst: &mut Slice,
    out: std::ops::Range<usize>,
) {
    use bytemuck::cast_slice;
    match dst.pixels_mut() {
        Pixels::U8(v) => reduce_2x2x2(a, b, width, rows, &mut v[out]),
        Pixels::U16(v) => reduce_2x2x2(cast_slice(a), b.map(cast_slice), width, rows, &mut v[out]),
        Pixels::F32(v) => reduce_2x2x2(cast_slice(a), b.map(cast_slice), width, rows, &mut v[out]),
    }
}

fn reduce_slices_with(a: &Slice, b: Option<&Slice>, dst: &mut Slice, par: bool) -> Result<()> {
    if let Some(b) = b
        && (b.width() != a.width()
            || b.height() != a.height()
            || b.sample_type() != a.sample_type())
    {
        return Err(Error::invalid(
            "kernel inputs",
            format!("{a:?} and {b:?} differ in size or sample type"),
        ));
    }
    dst.reshape(a.width() / 2, a.height() / 2, a.sample_type());
    let done = match a.pixels() {
        Pixels::U8(_) => typed_reduce::<u8>(a, b, dst, par),
        Pixels::U16(_) => typed_reduce::<u16>(a, b, dst, par),
        Pixels::F32(_) => typed_reduce::<f32>(a, b, dst, par),
    };
    // reshape() above made dst's type match a's, and b's was checked.
    done.ok_or_else(|| Error::invalid("kernel inputs", "sample types differ"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The contract written the slow, obvious way.
    fn oracle_u16(a: &[u16], b: Option<&[u16]>, w: usize, h: usize) -> Vec<u16> {
        let mut out = Vec::new();
        for y in 0..h / 2 {
            for x in 0..w / 2 {
                let mut sum = 0u64;
                for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let i = (2 * y + dy) * w + 2 * x + dx;
                    sum += u64::from(a[i]);
                    if let Some(b) = b {
                        sum += u64::from(b[i]);
                    }
                }
                out.push(if b.is_some() {
                    (sum + 4) / 8
                } else {
                    (sum + 2) / 4
                } as u16);
            }
        }
        out
    }

    fn oracle_u8(a: &[u8], b: Option<&[u8]>, w: usize, h: usize) -> Vec<u8> {
        let a16: Vec<u16> = a.iter().map(|&v| u16::from(v)).collect();
        let b16: Option<Vec<u16>> = b.map(|b| b.iter().map(|&v| u16::from(v)).collect());
        oracle_u16(&a16, b16.as_deref(), w, h)
            .into_iter()
            .map(|v| v as u8)
            .collect()
    }

    fn run<T: Sample>(a: &[T], b: Option<&[T]>, w: usize, h: usize, par: bool) -> Vec<T> {
        let mut out = vec![T::default(); (w / 2) * (h / 2)];
        if par {
            par_reduce_2x2x2(a, b, w, h, &mut out);
        } else {
            reduce_2x2x2(a, b, w, h, &mut out);
        }
        out
    }

    #[test]
    fn rounds_half_up() {
        // Sum 4 of eight samples -> 0.5 -> 1; sum 3 -> 0.375 -> 0; 2x2: sum 2 -> 0.5 -> 1.
        let a = [1u16, 1, 1, 1];
        let z = [0u16; 4];
        assert_eq!(run(&a, Some(&z), 2, 2, false), vec![1]);
        assert_eq!(run(&[1u16, 1, 1, 0], Some(&z), 2, 2, false), vec![0]);
        assert_eq!(run(&[1u16, 1, 0, 0], None, 2, 2, false), vec![1]);
        assert_eq!(run(&[1u16, 0, 0, 0], None, 2, 2, false), vec![0]);
        let max = [u16::MAX; 4];
        assert_eq!(run(&max, Some(&max), 2, 2, true), vec![u16::MAX]);
        assert_eq!(run(&[255u8; 4], Some(&[255u8; 4]), 2, 2, true), vec![255]);
    }

    #[test]
    fn odd_column_and_row_are_dropped() {
        // 3 x 3: only the top-left 2x2 block counts.
        let a = [10u8, 20, 99, 30, 40, 99, 99, 99, 99];
        assert_eq!(run(&a, None, 3, 3, false), vec![25]);
        assert!(run(&[1u8, 2, 3], None, 3, 1, false).is_empty());
    }

    #[test]
    fn float_mean_is_exact_for_representable_values() {
        let a = [1.0f32, 2.0, 3.0, 4.0];
        let b = [5.0f32, 6.0, 7.0, 8.0];
        assert_eq!(run(&a, Some(&b), 2, 2, true), vec![4.5]);
        assert_eq!(run(&a, None, 2, 2, true), vec![2.5]);
    }

    #[test]
    fn reduce_slices_rejects_mismatched_inputs() {
        let a = Slice::zeroed(4, 4, crate::SampleType::U16);
        let b = Slice::zeroed(4, 2, crate::SampleType::U16);
        let mut out = Slice::zeroed(0, 0, crate::SampleType::U8);
        assert!(reduce_slices(&a, Some(&b), &mut out).is_err());
        reduce_slices(&a, None, &mut out).unwrap();
        assert_eq!((out.width(), out.height()), (2, 2));
        assert_eq!(out.sample_type(), crate::SampleType::U16);
    }

    fn stack_strategy() -> impl Strategy<Value = (usize, usize, Vec<u16>, Vec<u16>, bool)> {
        (1usize..70, 1usize..40, any::<bool>()).prop_flat_map(|(w, h, lone)| {
            (
                Just(w),
                Just(h),
                proptest::collection::vec(any::<u16>(), w * h),
                proptest::collection::vec(any::<u16>(), w * h),
                Just(lone),
            )
        })
    }

    proptest! {
        #[test]
        fn kernel_equals_oracle_u16((w, h, a, b, lone) in stack_strategy()) {
            let b = if lone { None } else { Some(b.as_slice()) };
            let want = oracle_u16(&a, b, w, h);
            prop_assert_eq!(&run(&a, b, w, h, false), &want);
            prop_assert_eq!(&run(&a, b, w, h, true), &want);
        }

        #[test]
        fn kernel_equals_oracle_u8((w, h, a, b, lone) in stack_strategy()) {
            let a: Vec<u8> = a.iter().map(|&v| v as u8).collect();
            let b: Vec<u8> = b.iter().map(|&v| (v >> 8) as u8).collect();
            let b = if lone { None } else { Some(b.as_slice()) };
            let want = oracle_u8(&a, b, w, h);
            prop_assert_eq!(&run(&a, b, w, h, false), &want);
            prop_assert_eq!(&run(&a, b, w, h, true), &want);
        }
    }

    #[test]
    fn parallel_split_matches_sequential_on_large_odd_slices() {
        // Large enough to split into many tasks, odd in both directions.
        let (w, h) = (1031usize, 517usize);
        let a: Vec<u16> = (0..w * h).map(|i| (i * 7919 % 65536) as u16).collect();
        let b: Vec<u16> = (0..w * h).map(|i| (i * 104729 % 65536) as u16).collect();
        let want = oracle_u16(&a, Some(&b), w, h);
        assert_eq!(run(&a, Some(&b), w, h, true), want);
        assert_eq!(run(&a, None, w, h, true), oracle_u16(&a, None, w, h));
    }
}
