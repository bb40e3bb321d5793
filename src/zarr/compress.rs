//! Chunk compression: Blosc (version 1 container) with LZ4, Zstandard, or none.
//!
//! Blosc is written by hand around `lz4_flex` (the container is 16 bytes of header, a table of
//! block offsets, then per block its streams, each a 4-byte compressed size and an LZ4 block),
//! so no C library is built for it. Every block of 128 KiB is byte-shuffled first for samples
//! wider than a byte (flag `0x01`: the low bytes of all samples, then the high bytes, which is
//! what makes LZ4 find anything in 16-bit CT), then split into one stream per byte plane where
//! every Blosc 1 and 2 decoder splits too (a whole block of at least 128 samples of at most 16
//! bytes; the last, shorter block is one stream; else flag `0x10`, don't split). A plane is
//! probed first (LZ4 over three 2 KiB windows): a plane they do not shrink by 5% (CT noise) is
//! stored as it is without running LZ4 over all of it (a compressed size equal to the stream's
//! size means a plain copy), and so is any stream LZ4 does not shrink. The blocks of a chunk
//! asked for outside the rayon pool (a server's request) are encoded on the pool; on the pool
//! (an export) they go straight into the output. A chunk that would not shrink at all is one
//! plain copy (flag `0x02`). numcodecs' bare `"lz4"` codec (a different framing
//! that tensorstore and neuroglancer refuse) is never written.

use rayon::prelude::*;

use crate::codec;
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
/// Blosc 1 decoders older than the split flag split a block into byte planes only for
/// samples of at most this many bytes...
const BLOSC_MAX_SPLITS: usize = 16;
/// ... and blocks of at least this many samples.
const BLOSC_MIN_SPLIT: usize = 128;
/// A plane of a block is probed as the blob codec probes a slice's planes (the same windows
/// and minimum saving), with windows of this many bytes.
const PROBE_WINDOW: usize = 2048;
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
    // Split into byte planes only where every Blosc decoder splits too: the flag alone
    // decides for decoders since 1.13, older ones split a block of at least 128 samples of
    // at most 16 bytes; none splits the last, shorter block.
    let split = shuffle && typesize <= BLOSC_MAX_SPLITS && block / typesize >= BLOSC_MIN_SPLIT;
    let mut flags = LZ4_CODE;
    if shuffle {
        flags |= FLAG_SHUFFLE;
    }
    if !split {
        flags |= FLAG_DONT_SPLIT;
    }
    // Each block is shuffled and compressed on its own, appended to `into`.
    let encode = |part: &[u8], into: &mut Vec<u8>| -> Result<()> {
        codec::with_scratch(|scratch| {
            // The blob codec's buffers: `planes` holds the shuffled block.
            let mut shuffled = std::mem::take(&mut scratch.planes);
            let input: &[u8] = if shuffle {
                shuffled.resize(part.len(), 0);
                byte_shuffle(part, typesize, &mut shuffled);
                &shuffled
            } else {
                part
            };
            let result = if split && part.len() == block {
                // One stream per byte plane: a plane of CT noise is stored after a probe
                // instead of being run through LZ4 whole; planes that repeat are compressed.
                input
                    .chunks_exact(block / typesize)
                    .try_for_each(|plane| put_stream(plane, true, scratch, into))
            } else {
                put_stream(input, false, scratch, into)
            };
            scratch.planes = shuffled;
            result
        })
    };
    let table = BLOSC_HEADER + 4 * blocks;
    out.resize(table, 0);
    if blocks > 1 && rayon::current_thread_index().is_none() {
        // One chunk asked for outside the pool (a server's request): its blocks on the pool,
        // so that it is answered in about half the time on two cores, then put in order. On
        // the pool (an export, whose chunks already share it) the blocks go straight into `out`.
        let encoded = raw
            .par_chunks(block)
            .map(|part| {
                let mut bytes = Vec::with_capacity(4 * typesize + part.len() + part.len() / 200);
                encode(part, &mut bytes).map(|()| bytes)
            })
            .collect::<Result<Vec<Vec<u8>>>>()?;
        out.reserve(encoded.iter().map(Vec::len).sum());
        for (i, bytes) in encoded.iter().enumerate() {
            let start = out.len() as u32;
            out[BLOSC_HEADER + 4 * i..][..4].copy_from_slice(&start.to_le_bytes());
            out.extend_from_slice(bytes);
        }
    } else {
        out.reserve(nbytes + nbytes / 200 + 4 * typesize * blocks);
        for (i, part) in raw.chunks(block).enumerate() {
            let start = out.len() as u32;
            out[BLOSC_HEADER + 4 * i..][..4].copy_from_slice(&start.to_le_bytes());
            encode(part, out)?;
        }
    }
    if out.len() >= nbytes + BLOSC_HEADER {
        // A chunk that does not shrink is one plain copy (smaller than the blocks' framing).
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
    write_blosc_header(out, flags, typesize, nbytes, block);
    Ok(())
}

/// Appends one Blosc stream to `out`: its 4-byte compressed size, then its LZ4 block, or the
/// stream as it is when LZ4 would not shrink it (a compressed size equal to the stream's size
/// means a plain copy). With `probe`, a few windows of the stream are tried first
/// ([`codec::probe_windows`]), and a stream they do not shrink by [`codec::PLANE_MIN_SAVING`]
/// is stored without compressing the rest.
fn put_stream(
    stream: &[u8],
    probe: bool,
    scratch: &mut codec::Scratch,
    out: &mut Vec<u8>,
) -> Result<()> {
    use lz4_flex::block::{CompressTable, compress_into_with_table, get_maximum_output_size};
    let table = scratch.table.get_or_insert_with(CompressTable::large);
    let stored = |out: &mut Vec<u8>| {
        out.extend_from_slice(&(stream.len() as u32).to_le_bytes());
        out.extend_from_slice(stream);
    };
    if probe && stream.len() >= codec::PROBE_WINDOWS * PROBE_WINDOW * 4 {
        let (mut packed, mut tried) = (0, 0);
        for window in codec::probe_windows(stream, PROBE_WINDOW, 1) {
            packed += codec::lz4_len(window, &mut scratch.probe_out, table).min(window.len());
            tried += window.len();
        }
        if packed as f64 > tried as f64 * (1.0 - codec::PLANE_MIN_SAVING) {
            stored(out);
            return Ok(());
        }
    }
    let start = out.len();
    out.resize(start + 4 + get_maximum_output_size(stream.len()), 0);
    let n = compress_into_with_table(stream, &mut out[start + 4..], table)
        .map_err(|e| Error::internal("blosc compression", e.to_string()))?;
    if n < stream.len() {
        out.truncate(start + 4 + n);
        out[start..start + 4].copy_from_slice(&(n as u32).to_le_bytes());
    } else {
        out.truncate(start);
        stored(out);
    }
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
