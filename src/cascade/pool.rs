//! Buffers kept from one streaming build to the next in the same process.
//!
//! A build touches a few slices' worth of memory (the reading threads' level-1 slices, one or
//! two per level above, the export's encoded files). Freed at the end of a build, most of it
//! goes back to the system (large allocations are unmapped), and the next build of the same
//! process (a second export, a Python session converting several scans) would fault in as many
//! fresh pages again: about 2 us each on a VM, more than reading the same bytes from the page
//! cache. So the builders hand their buffers back here, within [`KEEP_BYTES`], and take them
//! from here first.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::slice::{SampleType, Slice};

/// Bytes of buffers kept between builds at most, slices and byte buffers together: the
/// buffers of a 4096^2 16-bit build fit.
pub(crate) const KEEP_BYTES: usize = 96 << 20;

struct Kept {
    slices: Vec<Slice>,
    bytes: Vec<Vec<u8>>,
    total: usize,
}

static KEPT: Mutex<Kept> = Mutex::new(Kept::new());

fn kept() -> MutexGuard<'static, Kept> {
    // The lists stay consistent whatever panicked while they were held.
    KEPT.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The index of the buffer to hand out for `want` bytes, from `(index, capacity)` pairs: the
/// smallest that holds them, else the largest.
fn pick(capacities: impl Iterator<Item = (usize, usize)>, want: usize) -> Option<usize> {
    let mut fit: Option<(usize, usize)> = None;
    let mut largest: Option<(usize, usize)> = None;
    for (i, cap) in capacities {
        if cap >= want && fit.is_none_or(|(_, c)| cap < c) {
            fit = Some((i, cap));
        }
        if largest.is_none_or(|(_, c)| cap > c) {
            largest = Some((i, cap));
        }
    }
    fit.or(largest).map(|(i, _)| i)
}

impl Kept {
    const fn new() -> Kept {
        Kept {
            slices: Vec::new(),
            bytes: Vec::new(),
            total: 0,
        }
    }

    fn take_slice(&mut self, ty: SampleType, want: usize) -> Slice {
        let found = pick(
            self.slices
                .iter()
                .enumerate()
                .filter(|(_, s)| s.sample_type() == ty)
                .map(|(i, s)| (i, s.capacity_bytes())),
            want,
        );
        match found {
            Some(i) => {
                let slice = self.slices.swap_remove(i);
                self.total -= slice.capacity_bytes();
                slice
            }
            None => Slice::zeroed(0, 0, ty),
        }
    }

    fn give_slice(&mut self, slice: Slice) {
        let size = slice.capacity_bytes();
        if size > 0 && self.total + size <= KEEP_BYTES {
            self.total += size;
            self.slices.push(slice);
        }
    }

    fn take_bytes(&mut self, want: usize) -> Vec<u8> {
        match pick(self.bytes.iter().map(Vec::capacity).enumerate(), want) {
            Some(i) => {
                let mut bytes = self.bytes.swap_remove(i);
                self.total -= bytes.capacity();
                bytes.clear();
                bytes
            }
            None => Vec::new(),
        }
    }

    fn give_bytes(&mut self, bytes: Vec<u8>) {
        let size = bytes.capacity();
        if size > 0 && self.total + size <= KEEP_BYTES {
            self.total += size;
            self.bytes.push(bytes);
        }
    }
}

/// A slice buffer of `ty` for slices of about `want` bytes: a kept one (contents unspecified;
/// reshape it) or an empty one.
pub(crate) fn take_slice(ty: SampleType, want: usize) -> Slice {
    kept().take_slice(ty, want)
}

/// Keeps `slice`'s buffer for a later build, if there is room.
pub(crate) fn give_slice(slice: Slice) {
    kept().give_slice(slice);
}

/// A byte buffer for about `want` bytes: a kept one (cleared) or a new empty one.
pub(crate) fn take_bytes(want: usize) -> Vec<u8> {
    kept().take_bytes(want)
}

/// Keeps `bytes`' buffer for a later build, if there is room.
pub(crate) fn give_bytes(bytes: Vec<u8>) {
    kept().give_bytes(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_prefers_the_smallest_that_fits_then_the_largest() {
        let caps = [10, 40, 25, 5];
        let pick_of = |want| pick(caps.iter().copied().enumerate(), want);
        assert_eq!(pick_of(20), Some(2));
        assert_eq!(pick_of(30), Some(1));
        assert_eq!(pick_of(100), Some(1));
        assert_eq!(pick_of(1), Some(3));
        assert_eq!(pick(std::iter::empty(), 1), None);
    }

    #[test]
    fn buffers_given_back_are_taken_again_within_the_bound() {
        let mut kept = Kept::new();
        let mut small = Slice::zeroed(0, 0, SampleType::U16);
        small.reshape(10, 10, SampleType::U16);
        let mut large = Slice::zeroed(0, 0, SampleType::U16);
        large.reshape(100, 100, SampleType::U16);
        let large_at = large.pixels().as_bytes().as_ptr();
        kept.give_slice(small);
        kept.give_slice(large);
        // Another type is not handed out; the smallest buffer that holds the slice is.
        assert_eq!(kept.take_slice(SampleType::U8, 1).capacity_bytes(), 0);
        let taken = kept.take_slice(SampleType::U16, 1_000);
        assert_eq!(taken.pixels().as_bytes().as_ptr(), large_at);
        assert_eq!(kept.total, 200);
        let bytes = Vec::<u8>::with_capacity(12_345);
        let bytes_at = bytes.as_ptr();
        kept.give_bytes(bytes);
        let again = kept.take_bytes(100);
        assert!(again.is_empty() && again.as_ptr() == bytes_at);
        // Nothing beyond the bound is kept.
        let again_cap = again.capacity();
        kept.give_bytes(Vec::with_capacity(KEEP_BYTES));
        kept.give_bytes(again);
        assert_eq!(kept.bytes.len(), 1);
        assert_eq!(kept.total, 200 + again_cap);
    }
}
