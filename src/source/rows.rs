//! Rows read straight from a slice file, a band at a time.
//!
//! An uncompressed gray TIFF in strips (what CT reconstruction software writes) holds its
//! samples in the file as they are, and so does an uncompressed 8-bit BMP with a gray palette
//! (its rows last first). For those files the level-1 reduction does not decode
//! whole source slices: it reads a band of rows of both files into small cache-resident
//! buffers and reduces it at once (see `cascade::PairReducer::reduce_pair`). The kernel's
//! copy out of the page cache then lands in cache instead of in a fresh 8 MiB buffer in DRAM,
//! and the reduction reads it from there: on the 2-core development VM a 2048^2 16-bit pair
//! took less than half the time of decoding both slices and reducing them.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Bytes of each file read per band: two bands fit the L2 cache with room to spare (64 to
/// 384 KiB made no difference to a 2048^2 build; smaller bands fault in fewer fresh pages).
pub(crate) const BAND_BYTES: usize = 64 << 10;

/// Rows `first..first + rows` lie in the file from `offset` on, one after the other.
#[derive(Debug, Clone, Copy)]
struct Run {
    first: u32,
    rows: u32,
    offset: u64,
}

/// Where the rows of one plain slice file lie.
#[derive(Debug)]
pub(crate) struct Rows {
    file: File,
    path: PathBuf,
    file_len: u64,
    row_bytes: usize,
    /// Bytes per sample when they must be byte-swapped (big-endian file), else 0.
    swap: usize,
    runs: Vec<Run>,
    /// File offset the next read starts at.
    at: u64,
    /// The rows are stored last row first (a BMP's): the slice's height.
    bottom_up: Option<u32>,
}

impl Rows {
    /// `strips` gives (first row, rows, file offset) of each strip in row order; strips that
    /// follow each other in the file become one run.
    pub(crate) fn new(
        file: File,
        path: &Path,
        file_len: u64,
        row_bytes: usize,
        swap: usize,
        strips: impl IntoIterator<Item = (u32, u32, u64)>,
    ) -> Rows {
        let mut runs: Vec<Run> = Vec::new();
        for (first, rows, offset) in strips {
            match runs.last_mut() {
                Some(r)
                    if r.first + r.rows == first
                        && r.offset + u64::from(r.rows) * row_bytes as u64 == offset =>
                {
                    r.rows += rows;
                }
                _ => runs.push(Run {
                    first,
                    rows,
                    offset,
                }),
            }
        }
        Rows {
            file,
            path: path.to_path_buf(),
            file_len,
            row_bytes,
            swap,
            runs,
            at: u64::MAX,
            bottom_up: None,
        }
    }

    /// `height` rows stored one after the other from `offset` on, the last row first (as a
    /// BMP stores them).
    pub(crate) fn bottom_up(
        file: File,
        path: &Path,
        file_len: u64,
        row_bytes: usize,
        height: u32,
        offset: u64,
    ) -> Rows {
        let mut rows = Rows::new(file, path, file_len, row_bytes, 0, [(0, height, offset)]);
        rows.bottom_up = Some(height);
        rows
    }

    /// Bytes counted as read when every row is read: the file's length, or for a page of a
    /// multi-page TIFF its rows' bytes.
    pub(crate) fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Reads rows `first..first + rows` into `out` (exactly that many rows long), as samples
    /// in native byte order.
    pub(crate) fn read(&mut self, first: u32, rows: u32, out: &mut [u8]) -> Result<()> {
        debug_assert_eq!(out.len(), rows as usize * self.row_bytes);
        let end = first + rows;
        if let Some(height) = self.bottom_up {
            return self.read_bottom_up(height, first, end, out);
        }
        let mut y = first;
        let mut done = 0;
        let mut i = self.runs.partition_point(|r| r.first + r.rows <= y);
        while y < end {
            let Some(run) = self.runs.get(i) else {
                return Err(Error::decode(&self.path, format!("no strip holds row {y}")));
            };
            let n = (run.first + run.rows).min(end) - y;
            let offset = run.offset + u64::from(y - run.first) * self.row_bytes as u64;
            let len = n as usize * self.row_bytes;
            self.read_at(offset, &mut out[done..done + len])?;
            done += len;
            y += n;
            i += 1;
        }
        match self.swap {
            2 => {
                for v in bytemuck::cast_slice_mut::<u8, u16>(out) {
                    *v = v.swap_bytes();
                }
            }
            4 => {
                for v in bytemuck::cast_slice_mut::<u8, u32>(out) {
                    *v = v.swap_bytes();
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Rows `first..end` of a bottom-up file: one read of the rows as they lie in the file
    /// (last one first), then the rows swapped into order in `out` while it is in cache.
    fn read_bottom_up(&mut self, height: u32, first: u32, end: u32, out: &mut [u8]) -> Result<()> {
        let (Some(run), true) = (self.runs.first(), end <= height) else {
            return Err(Error::decode(
                &self.path,
                format!("no row {} in {height} rows", end.saturating_sub(1)),
            ));
        };
        let offset = run.offset + u64::from(height - end) * self.row_bytes as u64;
        self.read_at(offset, out)?;
        let row = self.row_bytes;
        let n = (end - first) as usize;
        for i in 0..n / 2 {
            let (top, bottom) = out.split_at_mut((n - 1 - i) * row);
            top[i * row..(i + 1) * row].swap_with_slice(&mut bottom[..row]);
        }
        Ok(())
    }

    fn read_at(&mut self, offset: u64, out: &mut [u8]) -> Result<()> {
        let io = |e: io::Error| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                Error::decode(
                    &self.path,
                    "truncated: the file ended before its rows (did it change while being read?)",
                )
            } else {
                Error::io("reading", &self.path, e)
            }
        };
        if self.at != offset {
            self.file.seek(SeekFrom::Start(offset)).map_err(io)?;
        }
        self.at = u64::MAX;
        self.file.read_exact(out).map_err(io)?;
        self.at = offset + out.len() as u64;
        Ok(())
    }
}

/// A reusable byte buffer whose start is 64-byte aligned: the kernel's copy out of the page
/// cache is fast into such a buffer (see `input.rs`), and any sample type can view it.
#[derive(Debug, Default)]
pub(crate) struct Band {
    store: Vec<u64>,
}

impl Band {
    /// The first `len` bytes, aligned (contents unspecified).
    pub(crate) fn bytes(&mut self, len: usize) -> &mut [u8] {
        let words = len.div_ceil(8) + 8;
        if self.store.len() < words {
            self.store.resize(words, 0);
        }
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.store);
        let start = bytes.as_ptr().align_offset(64).min(64);
        &mut bytes[start..start + len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn runs_join_adjacent_strips_and_rows_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        // 6 rows of 4 bytes: strips of 2 rows at 100, 108 (adjacent), then 200 (apart).
        let mut data = vec![0u8; 300];
        for y in 0..6u8 {
            let at = match y {
                0..=3 => 100 + 4 * usize::from(y),
                _ => 200 + 4 * usize::from(y - 4),
            };
            data[at..at + 4].copy_from_slice(&[y + 1, 0, y + 1, 0]);
        }
        File::create(&path).unwrap().write_all(&data).unwrap();
        let strips = [(0, 2, 100), (2, 2, 108), (4, 2, 200)];
        let mut rows = Rows::new(File::open(&path).unwrap(), &path, 300, 4, 0, strips);
        assert_eq!(rows.runs.len(), 2);
        let mut out = vec![0u8; 16];
        rows.read(1, 4, &mut out).unwrap();
        assert_eq!(out, [2, 0, 2, 0, 3, 0, 3, 0, 4, 0, 4, 0, 5, 0, 5, 0]);
        // Big-endian 16-bit samples come back swapped.
        let mut swapped = Rows::new(File::open(&path).unwrap(), &path, 300, 4, 2, strips);
        let mut out = vec![0u8; 4];
        swapped.read(4, 1, &mut out).unwrap();
        assert_eq!(out, [0, 5, 0, 5]);
        // A row past the strips, or a strip past the end of the file, is an error.
        assert!(rows.read(5, 2, &mut [0u8; 8]).is_err());
        let mut short = Rows::new(File::open(&path).unwrap(), &path, 300, 4, 0, [(0, 1, 298)]);
        let e = short.read(0, 1, &mut [0u8; 4]).unwrap_err().to_string();
        assert!(e.contains("truncated") && e.contains("f"), "{e}");
    }

    #[test]
    fn band_is_aligned() {
        let mut b = Band::default();
        for len in [1, 100, 4096, 300_000] {
            let s = b.bytes(len);
            assert_eq!(s.len(), len);
            assert_eq!(s.as_ptr() as usize % 64, 0);
        }
    }
}
