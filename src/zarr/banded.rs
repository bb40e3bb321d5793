//! The export's level 0 by bands of rows, for deep chunks of sources whose rows can be read
//! straight from the file (uncompressed TIFFs in strips, pages of such a multi-page TIFF).
//!
//! A chunk `64` slices deep needs 64 source slices at once; held whole, that is 512 MiB for a
//! 2048^2 16-bit stack. Instead, each group of source slices one row of files deep (a "slab")
//! is read a band of rows at a time: a band is one row of files high (64 rows), so it holds
//! every sample its chunks need and nothing else (16 MiB for that stack). Each band is cut
//! into its chunks, which are written, and reduced into the rows of the slab's level-1 slices
//! (2x2x2 means of its pairs). When the slab is done, its level-1 slices go to the cascade,
//! which makes the levels above, and to the export's sink like any other level. Every source
//! byte is read once, as in the whole-slice pass.

use std::sync::Arc;
use std::time::Instant;

use rayon::prelude::*;

use super::export::Sinker;
use crate::cascade::{Cascade, StreamOptions, StreamStats};
use crate::error::Result;
use crate::kernel::reduce_bytes;
use crate::slice::Slice;
use crate::source::{Band, Stack};

/// Writes level 0 of `stack` by bands and hands every other level to `sink`; `None` (nothing
/// done) when this path does not apply: 1-slice-deep files (whole slices are small enough),
/// or a first source slice that cannot be read by rows.
pub(super) fn produce(
    stack: &Stack,
    options: &StreamOptions,
    sink: &mut Sinker<'_, '_>,
) -> Result<Option<StreamStats>> {
    let started = Instant::now();
    let layout = sink.layout;
    let l0 = layout.levels()[0];
    let file = l0.file_chunk();
    if file.z < 2 {
        return Ok(None);
    }
    let mut reader = stack.reader();
    if reader.rows(0)?.is_none() {
        return Ok(None);
    }
    let levels = stack.levels(&options.rule)?;
    let top = levels.len() - 1;
    if top == 0 {
        // Level 0 is then also the coarsest, which the sink collects slice by slice.
        return Ok(None);
    }
    let info = levels[0];
    let (w, h, depth) = (info.width as usize, info.height as usize, info.depth);
    let ty = info.sample_type;
    let row_bytes = w * ty.bytes();
    // A slab is one row of files deep, a band one row of files high; both even, so that the
    // 2x2x2 pairs never straddle them.
    let slab = if file.z.is_multiple_of(2) {
        file.z
    } else {
        2 * file.z
    };
    let band_rows = if file.y.is_multiple_of(2) {
        file.y
    } else {
        2 * file.y
    } as usize;
    let mut stats = StreamStats {
        produced: vec![0; levels.len()],
        ..StreamStats::default()
    };
    let mut cascade = Cascade::new(levels.clone(), top);
    let mut bands: Vec<Band> = (0..slab).map(|_| Band::default()).collect();
    let mut level1_pool: Vec<Slice> = Vec::new();
    let mut recycle = Vec::new();
    let (w1, h1) = (info.width / 2, info.height / 2);
    for z0 in (0..depth).step_by(slab as usize) {
        let z1 = (z0 + slab).min(depth);
        let nz = (z1 - z0) as usize;
        // Each slice: its rows in the file, or (a file that is not plain) decoded whole.
        let mut sources = Vec::with_capacity(nz);
        for z in z0..z1 {
            match reader.rows(z)? {
                Some(r) => sources.push(Source::Rows(r)),
                None => {
                    let mut s = Slice::zeroed(0, 0, ty);
                    reader.read_into(z, &mut s)?;
                    sources.push(Source::Whole(s));
                }
            }
        }
        let mut level1: Vec<Slice> = (z0 / 2..z1.div_ceil(2))
            .map(|_| {
                let mut s = level1_pool.pop().unwrap_or_else(|| Slice::zeroed(0, 0, ty));
                s.reshape(w1, h1, ty);
                s
            })
            .collect();
        for y0 in (0..h).step_by(band_rows) {
            let n = band_rows.min(h - y0);
            // The slices' rows of the band, read on the pool (the kernel's copies out of the
            // page cache are most of the reading).
            let mut reading: Vec<&mut [u8]> = bands
                .iter_mut()
                .take(nz)
                .map(|band| band.bytes(n * row_bytes))
                .collect();
            sink.install(|| {
                reading
                    .par_iter_mut()
                    .zip(sources.par_iter_mut())
                    .try_for_each(|(bytes, source)| -> Result<()> {
                        match source {
                            Source::Rows(r) => r.read(y0 as u32, n as u32, bytes)?,
                            Source::Whole(s) => bytes.copy_from_slice(
                                &s.pixels().as_bytes()[y0 * row_bytes..][..n * row_bytes],
                            ),
                        }
                        Ok(())
                    })
            })?;
            let filled: Vec<&[u8]> = reading.into_iter().map(|b| &*b).collect();
            let filled = &filled;
            // Level 0: the files of this band; meanwhile, level 1: the band's rows of each
            // pair's mean (an odd last row is dropped).
            let rows = |z: u32, y: u32| -> &[u8] {
                &filled[(z - z0) as usize][(y as usize - y0) * row_bytes..][..row_bytes]
            };
            let ys = (y0 / file.y as usize) as u32..(y0 + n).div_ceil(file.y as usize) as u32;
            let pairs_rows = n / 2 * 2;
            let level1 = &mut level1;
            let reduce = move || {
                let t = Instant::now();
                if top > 0 && pairs_rows > 0 && w1 > 0 {
                    level1.par_iter_mut().enumerate().for_each(|(p, out)| {
                        let a = &filled[2 * p][..pairs_rows * row_bytes];
                        let b = filled.get(2 * p + 1).map(|b| &b[..pairs_rows * row_bytes]);
                        let first = y0 / 2 * w1 as usize;
                        let last = (y0 + pairs_rows) / 2 * w1 as usize;
                        reduce_bytes(a, b, w, pairs_rows, out, first..last);
                    });
                }
                t.elapsed()
            };
            let izs = z0 / file.z..z1.div_ceil(file.z);
            stats.kernel += sink.write_files_with(0, izs, ys, &rows, reduce)?;
        }
        let mut read = 0;
        for s in &sources {
            if let Source::Rows(r) = s {
                read += r.file_len();
            }
        }
        reader.count_read(read);
        stats.source_slices += nz as u64;
        sink.sources(nz as u32)?;
        drop(sources);
        if top > 0 {
            for slice in level1 {
                let t = Instant::now();
                cascade.emit(
                    1,
                    slice,
                    &mut |l, z, s: &Arc<Slice>| sink.take(l, z, s),
                    &mut recycle,
                )?;
                stats.sink += t.elapsed();
            }
        } else {
            level1_pool.extend(level1);
        }
        give_back(&mut cascade, &mut level1_pool, &mut recycle, sink);
    }
    if top > 0 {
        cascade.finish(&mut |l, z, s: &Arc<Slice>| sink.take(l, z, s), &mut recycle)?;
    }
    stats.source_bytes = reader.bytes_read();
    stats.level_buffers = cascade.allocated();
    stats.produced = cascade.produced().to_vec();
    stats.elapsed = started.elapsed();
    Ok(Some(stats))
}

/// One source slice of a slab.
enum Source {
    Rows(crate::source::SliceRows),
    Whole(Slice),
}

/// Puts buffers the sink and the cascade are done with where they are reused.
fn give_back(
    cascade: &mut Cascade,
    level1_pool: &mut Vec<Slice>,
    recycle: &mut Vec<Slice>,
    sink: &mut Sinker<'_, '_>,
) {
    // A level-1 slice the sink still held when the cascade was done with it comes back as an
    // empty placeholder (the sink returns the buffer itself when its row is written): pooled,
    // a placeholder would be taken instead of a kept buffer and filled with fresh memory,
    // and the pool would grow by a row of buffers per row of chunks.
    level1_pool.extend(recycle.drain(..).filter(|s| s.capacity_bytes() > 0));
    for (level, s) in sink.returned.borrow_mut().drain(..) {
        if level == 1 {
            level1_pool.push(s);
        } else {
            cascade.give_spare(level as usize, s);
        }
    }
}
