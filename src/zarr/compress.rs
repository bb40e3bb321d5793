//! Chunk compression: Blosc (version 1 container) with LZ4, Zstandard, or none.
//!
//! Blosc is written by hand around `lz4_flex` (the container is 16 bytes of header, a table of
//! block offsets and one LZ4 block per block of the chunk), so no C library is built for it.
//! Every block is byte-shuffled first for samples wider than a byte (flag `0x01`: the low bytes
//! of all samples, then the high bytes, which is what makes LZ4 find anything in 16-bit CT
//! noise), and is never split into per-byte streams (flag `0x10`), which every Blosc 1.x
//! decoder since 1.13 and every Blosc 2 decoder reads. A block LZ4 cannot shrink is stored as
//! it is (its compressed size equals its size); a chunk that would not shrink at all is one
//! plain copy (flag `0x02`). numcodecs' bare `"lz4"` codec (a different framing that
//! tensorstore and neuroglancer refuse) is never written.

use crate::error::{Error, Result};

/// How chunks are compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Blosc (version 1 container) with LZ4 and byte shuffle for samples wider than a byte:
    /// fast to write and to read, read by every Zarr client (`--compression blosc-lz4`).
    #[default]
    BloscLz4,
    /// Zstandard at this level (1 to 22; 1 is the fastest): smaller files, slower writing
    /// (`--compression zstd`).
    Zstd(i32),
    /// Stored as they are (`--compression none`).
    None,
}

/// Default Zstandard level of [`Compression::zstd`]: the fastest level (the 256 x 2048^2
/// 16-bit phantom compresses to nearly the same size at level 3, at half the speed).
pub const ZSTD_DEFAULT_LEVEL: i32 = 1;

/// Size of a Blosc block: the chunk is cut into blocks this large (the last one shorter).
const BLOSC_BLOCK: usize = 128 << 10;
/// Blosc's header.
const BLOSC_HEADER: usize = 16;
/// Blosc 1.x container format and LZ4 format versions.
const BLOSC_VERSION: u8 = 2;
const BLOSC_LZ4_VERSION: u8 = 1;
const FLAG_SHUFFLE: u8 = 0x01;
const FLAG_MEMCPYED: u8 = 0x02;
const FLAG_DONT_SPLIT: u8 = 0x10;
/// Compressor code of LZ4 in the top three bits of the flags.
const LZ4_CODE: u8 = 1 << 5;

impl Compression {
    /// Zstandard at [`ZSTD_DEFAULT_LEVEL`].
    pub fn zstd() -> Compression {
        Compression::Zstd(ZSTD_DEFAULT_LEVEL)
    }

    /// Parses a command-line name: `blosc-lz4`, `zstd`, `zstd:LEVEL`, `none` (or `raw`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the value and the valid names.
    pub fn parse(name: &str) -> Result<Compression> {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "blosc-lz4" | "blosc" => return Ok(Compression::BloscLz4),
            "zstd" => return Ok(Compression::zstd()),
            "none" | "raw" => return Ok(Compression::None),
            _ => {}
        }
        if let Some(level) = lower.strip_prefix("zstd:")
            && let Ok(level) = level.parse::<i32>()
            && (1..=22).contains(&level)
        {
            return Ok(Compression::Zstd(level));
        }
        Err(Error::invalid(
            "compression",
            format!("{name:?}; valid: blosc-lz4, zstd, zstd:LEVEL (1..=22), none"),
        ))
    }

    /// The command-line name of this compression.
    pub fn name(&self) -> String {
        match self {
            Compression::BloscLz4 => "blosc-lz4".into(),
            Compression::Zstd(l) if *l == ZSTD_DEFAULT_LEVEL => "zstd".into(),
            Compression::Zstd(l) => format!("zstd:{l}"),
            Compression::None => "none".into(),
        }
    }

    /// Compresses `raw` (samples of `typesize` bytes, little-endian) into `out` (cleared first).
    ///
    /// # Errors
    /// [`Error::Internal`] when Zstandard fails (it does not on valid levels) or a chunk is
    /// larger than Blosc's 2 GiB limit (the layout refuses such chunk shapes).
    pub fn encode(&self, raw: &[u8], typesize: usize, out: &mut Vec<u8>) -> Result<()> {
        out.clear();
        match *self {
            Compression::None => {
                out.extend_from_slice(raw);
                Ok(())
            }
            Compression::BloscLz4 => blosc_lz4(raw, typesize, out),
            Compression::Zstd(level) => zstd_encode(raw, level, out),
        }
    }
}

thread_local! {
    /// One Zstandard context per thread, kept between chunks (making one costs more than a
    /// small chunk's compression).
    static ZSTD: std::cell::RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> =
        const { std::cell::RefCell::new(None) };
}

fn zstd_encode(raw: &[u8], level: i32, out: &mut Vec<u8>) -> Result<()> {
    let fail = |e: std::io::Error| Error::internal("zstd compression", e.to_string());
    ZSTD.with(|cell| {
        let mut cell = cell.borrow_mut();
        if cell.as_ref().is_none_or(|(l, _)| *l != level) {
            *cell = Some((level, zstd::bulk::Compressor::new(level).map_err(fail)?));
        }
        let Some((_, compressor)) = cell.as_mut() else {
            return Err(Error::internal("zstd compression", "no context"));
        };
        out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        compressor.compress_to_buffer(raw, out).map_err(fail)?;
        Ok(())
    })
}

/// Writes `raw` as a Blosc 1 chunk with LZ4 blocks (see the module docs).
fn blosc_lz4(raw: &[u8], typesize: usize, out: &mut Vec<u8>) -> Result<()> {
    let nbytes = raw.len();
    if nbytes > i32::MAX as usize - BLOSC_HEADER {
        return Err(Error::internal(
            "blosc compression",
            format!("a chunk of {nbytes} bytes is above Blosc's 2 GiB limit"),
        ));
    }
    let typesize = typesize.clamp(1, 255);
    let shuffle = typesize > 1;
    // Blocks hold whole samples.
    let block = (BLOSC_BLOCK / typesize * typesize).min(nbytes.max(1));
    let blocks = nbytes.div_ceil(block);
    let mut flags = FLAG_DONT_SPLIT | LZ4_CODE;
    if shuffle {
        flags |= FLAG_SHUFFLE;
    }
    let table = BLOSC_HEADER + 4 * blocks;
    out.resize(table, 0);
    let mut shuffled = vec![0u8; if shuffle { block } else { 0 }];
    let mut packed = vec![0u8; lz4_flex::block::get_maximum_output_size(block)];
    for (i, part) in raw.chunks(block).enumerate() {
        let start = out.len() as u32;
        out[BLOSC_HEADER + 4 * i..][..4].copy_from_slice(&start.to_le_bytes());
        let input: &[u8] = if shuffle {
            let dst = &mut shuffled[..part.len()];
            byte_shuffle(part, typesize, dst);
            dst
        } else {
            part
        };
        let n = lz4_flex::block::compress_into(input, &mut packed)
            .map_err(|e| Error::internal("blosc compression", e.to_string()))?;
        if n < input.len() {
            out.extend_from_slice(&(n as u32).to_le_bytes());
            out.extend_from_slice(&packed[..n]);
        } else {
            // Stored: a compressed size equal to the block's size means a plain copy.
            out.extend_from_slice(&(input.len() as u32).to_le_bytes());
            out.extend_from_slice(input);
        }
        // A chunk that does not shrink is one plain copy (smaller than the blocks' framing).
        if out.len() >= nbytes + BLOSC_HEADER {
            out.clear();
            out.resize(BLOSC_HEADER, 0);
            out.extend_from_slice(raw);
            write_blosc_header(
                out,
                FLAG_MEMCPYED | FLAG_DONT_SPLIT | LZ4_CODE,
                typesize,
                nbytes,
                block,
            );
            return Ok(());
        }
    }
    write_blosc_header(out, flags, typesize, nbytes, block);
    Ok(())
}

fn write_blosc_header(out: &mut [u8], flags: u8, typesize: usize, nbytes: usize, block: usize) {
    let cbytes = out.len() as u32;
    out[0] = BLOSC_VERSION;
    out[1] = BLOSC_LZ4_VERSION;
    out[2] = flags;
    out[3] = typesize as u8;
    out[4..8].copy_from_slice(&(nbytes as u32).to_le_bytes());
    out[8..12].copy_from_slice(&(block as u32).to_le_bytes());
    out[12..16].copy_from_slice(&cbytes.to_le_bytes());
}

/// Blosc's byte shuffle of one block: byte `j` of sample `i` goes to `j * samples + i`; bytes
/// after the last whole sample stay where they are.
fn byte_shuffle(src: &[u8], typesize: usize, dst: &mut [u8]) {
    let samples = src.len() / typesize;
    if typesize == 2 {
        let (lo, hi) = dst[..2 * samples].split_at_mut(samples);
        for (i, pair) in src.chunks_exact(2).enumerate() {
            lo[i] = pair[0];
            hi[i] = pair[1];
        }
    } else {
        for (i, sample) in src.chunks_exact(typesize).enumerate() {
            for (j, &b) in sample.iter().enumerate() {
                dst[j * samples + i] = b;
            }
        }
    }
    let tail = samples * typesize;
    dst[tail..src.len()].copy_from_slice(&src[tail..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_print_back() {
        for name in ["blosc-lz4", "zstd", "zstd:9", "none"] {
            assert_eq!(Compression::parse(name).unwrap().name(), name);
        }
        let e = Compression::parse("lz4").unwrap_err().to_string();
        assert!(e.contains("\"lz4\"") && e.contains("blosc-lz4"), "{e}");
        assert!(Compression::parse("zstd:0").is_err());
    }

    #[test]
    fn shuffle_groups_bytes_by_position() {
        let mut dst = [0u8; 7];
        byte_shuffle(&[1, 2, 3, 4, 5, 6, 9], 2, &mut dst);
        assert_eq!(dst, [1, 3, 5, 2, 4, 6, 9]);
        let mut dst = [0u8; 8];
        byte_shuffle(&[1, 2, 3, 4, 5, 6, 7, 8], 4, &mut dst);
        assert_eq!(dst, [1, 5, 2, 6, 3, 7, 4, 8]);
    }
}
