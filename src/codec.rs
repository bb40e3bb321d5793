//! The blob format: one slice of one level, LZ4-compressed behind a self-checking header.
//!
//! # Layout
//! All numbers little-endian; a blob is a 52-byte header followed by the payload.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `LODb` |
//! | 4 | 2 | format version ([`FORMAT_VERSION`]) |
//! | 6 | 1 | compression: 0 stored, 1 LZ4 block |
//! | 7 | 1 | filter: 0 none, 1 byte-shuffle |
//! | 8 | 1 | sample type: 1 u8, 2 u16, 3 f32 |
//! | 9 | 3 | zero |
//! | 12 | 4 | level |
//! | 16 | 4 | z |
//! | 20 | 4 | width |
//! | 24 | 4 | height |
//! | 28 | 8 | raw length in bytes (width x height x sample bytes) |
//! | 36 | 8 | payload length in bytes |
//! | 44 | 8 | checksum: XXH3-64 of the payload, used as the seed of XXH3-64 over bytes 0..44 |
//!
//! The **byte-shuffle** filter stores the most significant byte of every sample first, then the
//! next, down to the least significant (for 16-bit samples: all high bytes, then all low bytes).
//! CT noise lives in the low bytes while the high bytes repeat, so LZ4 finds long matches in the
//! first half. The encoder picks the filter per blob by compressing samples of the slice both
//! ways, and stores the samples uncompressed when LZ4 would not make them smaller.
//!
//! # Checking
//! [`decode`] checks the magic first, then the version, then every field against the level and
//! slice the caller expects, then the lengths and the checksum, and only then decompresses into a
//! buffer sized from the *expected* dimensions. Any failure is a [`BlobError`]; a damaged blob
//! never panics and never decodes to a wrong slice.
//!
//! Samples are stored little-endian; lodcache targets little-endian machines (x86-64, AArch64).

use std::cell::RefCell;
use std::fmt;

use lz4_flex::block::{CompressTable, compress_into_with_table, get_maximum_output_size};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::geometry::{LevelInfo, SliceKey};
use crate::slice::{SampleType, Slice};

/// Version of the blob layout. A cache written with another version is discarded on open.
pub const FORMAT_VERSION: u16 = 1;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 52;

const MAGIC: [u8; 4] = *b"LODb";
/// Bytes covered by the checksum's header part.
const CHECKED_HEADER: usize = 44;
/// Samples of the slice compressed both ways to choose the filter: this many windows ...
const PROBE_WINDOWS: usize = 4;
/// ... of this many bytes each.
const PROBE_BYTES: usize = 16 << 10;

/// How a blob's samples were compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Raw bytes (LZ4 would not have made them smaller).
    Stored,
    /// One LZ4 block (lz4_flex's block format).
    Lz4,
}

impl TryFrom<u8> for Compression {
    type Error = u8;
    fn try_from(b: u8) -> Result<Self, u8> {
        match b {
            0 => Ok(Compression::Stored),
            1 => Ok(Compression::Lz4),
            other => Err(other),
        }
    }
}

impl From<Compression> for u8 {
    fn from(c: Compression) -> u8 {
        match c {
            Compression::Stored => 0,
            Compression::Lz4 => 1,
        }
    }
}

/// A reversible transform applied to the samples before compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Filter {
    /// Samples as they are.
    None,
    /// Byte planes, most significant first (multi-byte samples only).
    Shuffle,
}

impl TryFrom<u8> for Filter {
    type Error = u8;
    fn try_from(b: u8) -> Result<Self, u8> {
        match b {
            0 => Ok(Filter::None),
            1 => Ok(Filter::Shuffle),
            other => Err(other),
        }
    }
}

impl From<Filter> for u8 {
    fn from(f: Filter) -> u8 {
        match f {
            Filter::None => 0,
            Filter::Shuffle => 1,
        }
    }
}

/// Which filter the encoder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum FilterChoice {
    /// Whichever compresses a sample of the slice better (8-bit slices: never shuffled).
    #[default]
    Auto,
    /// Always [`Filter::None`].
    None,
    /// Always [`Filter::Shuffle`] (8-bit slices are left as they are).
    Shuffle,
}

fn sample_type_code(ty: SampleType) -> u8 {
    match ty {
        SampleType::U8 => 1,
        SampleType::U16 => 2,
        SampleType::F32 => 3,
    }
}

fn sample_type_from_code(b: u8) -> Option<SampleType> {
    match b {
        1 => Some(SampleType::U8),
        2 => Some(SampleType::U16),
        3 => Some(SampleType::F32),
        _ => None,
    }
}

/// Why a blob was refused. Every variant means the blob is unusable and must be regenerated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// Fewer bytes than a header, or fewer than the header announces.
    #[error("truncated: {found} bytes, expected {expected}")]
    Truncated {
        /// Bytes expected.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// More bytes than the header announces.
    #[error("{found} bytes but the header announces {expected}")]
    TrailingBytes {
        /// Bytes announced.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// The first four bytes are not the blob magic.
    #[error("not a lodcache blob (magic {found:02x?})")]
    BadMagic {
        /// The bytes found.
        found: [u8; 4],
    },
    /// Written by another version of the format.
    #[error("format version {found}, this build reads version {FORMAT_VERSION}")]
    Version {
        /// The version found.
        found: u16,
    },
    /// A header field differs from what the caller expects (or is not a known code).
    #[error("{field} is {found}, expected {expected}")]
    Field {
        /// The field's name.
        field: &'static str,
        /// The expected value.
        expected: String,
        /// The value in the blob.
        found: String,
    },
    /// The checksum does not match the contents.
    #[error("checksum mismatch (stored {stored:016x}, computed {computed:016x})")]
    Checksum {
        /// Checksum in the header.
        stored: u64,
        /// Checksum of the bytes read.
        computed: u64,
    },
    /// The payload is not a valid LZ4 block of the expected length.
    #[error("payload does not decompress to {expected} bytes: {reason}")]
    Decompress {
        /// Bytes expected.
        expected: u64,
        /// What went wrong.
        reason: String,
    },
}

fn field(name: &'static str, expected: impl fmt::Display, found: impl fmt::Display) -> BlobError {
    BlobError::Field {
        field: name,
        expected: expected.to_string(),
        found: found.to_string(),
    }
}

/// What a valid header says about its blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlobHeader {
    /// The slice the blob holds.
    pub key: SliceKey,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Sample type.
    pub sample_type: SampleType,
    /// How the payload was compressed.
    pub compression: Compression,
    /// The filter applied before compression.
    pub filter: Filter,
    /// Bytes of samples once decoded.
    pub raw_len: u64,
    /// Bytes of payload after the header.
    pub payload_len: u64,
}

impl BlobHeader {
    /// Compressed size over raw size (smaller is better), counting the header.
    pub fn ratio(&self) -> f64 {
        (self.payload_len as f64 + HEADER_LEN as f64) / (self.raw_len.max(1) as f64)
    }
}

/// Per-thread reusable buffers: the shuffled copy and LZ4's hash table.
#[derive(Default)]
struct Scratch {
    shuffled: Vec<u8>,
    table: Option<CompressTable>,
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Writes the byte planes of `src` (samples of `size` bytes, little-endian) into `dst`, most
/// significant plane first.
fn shuffle(src: &[u8], size: usize, dst: &mut [u8]) {
    let n = src.len() / size;
    match size {
        2 => {
            let (hi, lo) = dst.split_at_mut(n);
            for ((pair, h), l) in src.chunks_exact(2).zip(hi).zip(lo) {
                *l = pair[0];
                *h = pair[1];
            }
        }
        _ => {
            for (plane, out) in dst.chunks_exact_mut(n.max(1)).take(size).enumerate() {
                let byte = size - 1 - plane;
                for (o, sample) in out.iter_mut().zip(src.chunks_exact(size)) {
                    *o = sample[byte];
                }
            }
        }
    }
}

/// The inverse of [`shuffle`].
fn unshuffle(src: &[u8], size: usize, dst: &mut [u8]) {
    let n = dst.len() / size;
    match size {
        2 => {
            let (hi, lo) = src.split_at(n);
            for ((pair, h), l) in dst.chunks_exact_mut(2).zip(hi).zip(lo) {
                pair[0] = *l;
                pair[1] = *h;
            }
        }
        _ => {
            for (plane, input) in src.chunks_exact(n.max(1)).take(size).enumerate() {
                let byte = size - 1 - plane;
                for (i, sample) in input.iter().zip(dst.chunks_exact_mut(size)) {
                    sample[byte] = *i;
                }
            }
        }
    }
}

fn lz4_len(input: &[u8], out: &mut Vec<u8>, table: &mut CompressTable) -> usize {
    out.resize(get_maximum_output_size(input.len()), 0);
    // The output is sized by lz4_flex's own bound, so compression cannot run out of room.
    compress_into_with_table(input, out, table).unwrap_or(usize::MAX)
}

/// Whether shuffling `raw` (samples of `size` bytes) helps LZ4, judged on a few windows.
fn shuffle_helps(raw: &[u8], size: usize, scratch: &mut Scratch) -> bool {
    let window = PROBE_BYTES - PROBE_BYTES % size;
    if raw.len() <= window {
        return probe_window(raw, size, scratch);
    }
    let step = (raw.len() - window) / (PROBE_WINDOWS - 1);
    let mut votes = 0i64;
    for w in 0..PROBE_WINDOWS {
        let start = (w * step) / size * size;
        let part = &raw[start..start + window];
        votes += if probe_window(part, size, scratch) {
            1
        } else {
            -1
        };
    }
    votes > 0
}

fn probe_window(part: &[u8], size: usize, scratch: &mut Scratch) -> bool {
    let mut shuffled = vec![0; part.len()];
    shuffle(part, size, &mut shuffled);
    let table = scratch.table.get_or_insert_with(CompressTable::large);
    let mut out = std::mem::take(&mut scratch.shuffled);
    let plain = lz4_len(part, &mut out, table);
    let filtered = lz4_len(&shuffled, &mut out, table);
    scratch.shuffled = out;
    filtered < plain
}

/// Encodes `slice` as the blob of `key`, choosing the filter as `choice` says.
pub fn encode(slice: &Slice, key: SliceKey, choice: FilterChoice) -> Vec<u8> {
    let raw = slice.pixels().as_bytes();
    let size = slice.sample_type().bytes();
    SCRATCH.with(|cell| {
        let mut guard = cell.borrow_mut();
        let scratch = &mut *guard;
        let filter = match choice {
            _ if size == 1 => Filter::None,
            FilterChoice::None => Filter::None,
            FilterChoice::Shuffle => Filter::Shuffle,
            FilterChoice::Auto => {
                if shuffle_helps(raw, size, scratch) {
                    Filter::Shuffle
                } else {
                    Filter::None
                }
            }
        };
        let input: &[u8] = match filter {
            Filter::None => raw,
            Filter::Shuffle => {
                scratch.shuffled.resize(raw.len(), 0);
                shuffle(raw, size, &mut scratch.shuffled);
                &scratch.shuffled
            }
        };
        let mut blob = vec![0u8; HEADER_LEN + get_maximum_output_size(input.len())];
        let table = scratch.table.get_or_insert_with(CompressTable::large);
        let compressed = compress_into_with_table(input, &mut blob[HEADER_LEN..], table).ok();
        let (compression, filter, payload_len) = match compressed {
            Some(n) if n < raw.len() => (Compression::Lz4, filter, n),
            _ => {
                blob[HEADER_LEN..HEADER_LEN + raw.len()].copy_from_slice(raw);
                (Compression::Stored, Filter::None, raw.len())
            }
        };
        blob.truncate(HEADER_LEN + payload_len);
        let header = BlobHeader {
            key,
            width: slice.width(),
            height: slice.height(),
            sample_type: slice.sample_type(),
            compression,
            filter,
            raw_len: raw.len() as u64,
            payload_len: payload_len as u64,
        };
        write_header(&header, &mut blob);
        blob
    })
}

fn write_header(h: &BlobHeader, blob: &mut [u8]) {
    let b = &mut blob[..HEADER_LEN];
    b[0..4].copy_from_slice(&MAGIC);
    b[4..6].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    b[6] = h.compression.into();
    b[7] = h.filter.into();
    b[8] = sample_type_code(h.sample_type);
    b[9..12].fill(0);
    b[12..16].copy_from_slice(&h.key.level.to_le_bytes());
    b[16..20].copy_from_slice(&h.key.z.to_le_bytes());
    b[20..24].copy_from_slice(&h.width.to_le_bytes());
    b[24..28].copy_from_slice(&h.height.to_le_bytes());
    b[28..36].copy_from_slice(&h.raw_len.to_le_bytes());
    b[36..44].copy_from_slice(&h.payload_len.to_le_bytes());
    let sum = checksum(&blob[..CHECKED_HEADER], &blob[HEADER_LEN..]);
    blob[44..52].copy_from_slice(&sum.to_le_bytes());
}

fn checksum(header: &[u8], payload: &[u8]) -> u64 {
    xxh3_64_with_seed(header, xxh3_64(payload))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Checks `blob` against slice `z` of `level` without decompressing it: magic, version, every
/// header field, the lengths and the checksum.
///
/// # Errors
/// The first check that fails, as a [`BlobError`].
pub fn verify(blob: &[u8], level: &LevelInfo, z: u32) -> Result<BlobHeader, BlobError> {
    if blob.len() < 4 || blob[0..4] != MAGIC {
        let mut found = [0; 4];
        let n = blob.len().min(4);
        found[..n].copy_from_slice(&blob[..n]);
        if blob.len() < 4 {
            return Err(BlobError::Truncated {
                expected: HEADER_LEN as u64,
                found: blob.len() as u64,
            });
        }
        return Err(BlobError::BadMagic { found });
    }
    if blob.len() < HEADER_LEN {
        return Err(BlobError::Truncated {
            expected: HEADER_LEN as u64,
            found: blob.len() as u64,
        });
    }
    let version = u16::from_le_bytes([blob[4], blob[5]]);
    if version != FORMAT_VERSION {
        return Err(BlobError::Version { found: version });
    }
    let compression = Compression::try_from(blob[6])
        .map_err(|b| field("compression", "0 or 1", format!("code {b}")))?;
    let filter =
        Filter::try_from(blob[7]).map_err(|b| field("filter", "0 or 1", format!("code {b}")))?;
    let sample_type = sample_type_from_code(blob[8]).ok_or_else(|| {
        field(
            "sample type",
            level.sample_type,
            format!("code {}", blob[8]),
        )
    })?;
    if blob[9..12] != [0, 0, 0] {
        return Err(field(
            "reserved bytes",
            "zero",
            format!("{:02x?}", &blob[9..12]),
        ));
    }
    let header = BlobHeader {
        key: SliceKey::new(u32_at(blob, 12), u32_at(blob, 16)),
        width: u32_at(blob, 20),
        height: u32_at(blob, 24),
        sample_type,
        compression,
        filter,
        raw_len: u64_at(blob, 28),
        payload_len: u64_at(blob, 36),
    };
    if sample_type != level.sample_type {
        return Err(field("sample type", level.sample_type, sample_type));
    }
    let expected_raw = level.slice_bytes() as u64;
    let checks = [
        ("level", u64::from(level.level), u64::from(header.key.level)),
        ("z", u64::from(z), u64::from(header.key.z)),
        ("width", u64::from(level.width), u64::from(header.width)),
        ("height", u64::from(level.height), u64::from(header.height)),
        ("raw length", expected_raw, header.raw_len),
    ];
    for (name, expected, found) in checks {
        if expected != found {
            return Err(field(name, expected, found));
        }
    }
    if filter == Filter::Shuffle && (sample_type.bytes() == 1 || compression == Compression::Stored)
    {
        return Err(field("filter", "none", "shuffle"));
    }
    let total = (HEADER_LEN as u64).saturating_add(header.payload_len);
    let found = blob.len() as u64;
    if found < total {
        return Err(BlobError::Truncated {
            expected: total,
            found,
        });
    }
    if found > total {
        return Err(BlobError::TrailingBytes {
            expected: total,
            found,
        });
    }
    if compression == Compression::Stored && header.payload_len != expected_raw {
        return Err(field("stored length", expected_raw, header.payload_len));
    }
    let stored = u64_at(blob, 44);
    let computed = checksum(&blob[..CHECKED_HEADER], &blob[HEADER_LEN..]);
    if stored != computed {
        return Err(BlobError::Checksum { stored, computed });
    }
    Ok(header)
}

/// Decodes `blob` as slice `z` of `level` into `out` (reshaped to the level's size; its
/// allocation is reused when the sample type matches).
///
/// # Errors
/// A [`BlobError`] when any check of [`verify`] fails or the payload does not decompress to
/// exactly the expected number of bytes. `out` holds unspecified samples after an error.
pub fn decode_into(
    blob: &[u8],
    level: &LevelInfo,
    z: u32,
    out: &mut Slice,
) -> Result<BlobHeader, BlobError> {
    let header = verify(blob, level, z)?;
    out.reshape(level.width, level.height, level.sample_type);
    let payload = &blob[HEADER_LEN..];
    let dst = out.pixels_mut().as_bytes_mut();
    let expected = dst.len();
    let decompress = |into: &mut [u8]| -> Result<(), BlobError> {
        match lz4_flex::block::decompress_into(payload, into) {
            Ok(n) if n == expected => Ok(()),
            Ok(n) => Err(BlobError::Decompress {
                expected: expected as u64,
                reason: format!("got {n} bytes"),
            }),
            Err(e) => Err(BlobError::Decompress {
                expected: expected as u64,
                reason: e.to_string(),
            }),
        }
    };
    match (header.compression, header.filter) {
        (Compression::Stored, _) => dst.copy_from_slice(payload),
        (Compression::Lz4, Filter::None) => decompress(dst)?,
        (Compression::Lz4, Filter::Shuffle) => SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            scratch.shuffled.resize(expected, 0);
            decompress(&mut scratch.shuffled)?;
            unshuffle(&scratch.shuffled, level.sample_type.bytes(), dst);
            Ok::<(), BlobError>(())
        })?,
    }
    Ok(header)
}

/// Decodes `blob` as slice `z` of `level` into a new slice.
///
/// # Errors
/// As [`decode_into`].
pub fn decode(blob: &[u8], level: &LevelInfo, z: u32) -> Result<Slice, BlobError> {
    let mut out = Slice::zeroed(0, 0, level.sample_type);
    decode_into(blob, level, z, &mut out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::phantom::Phantom;
    use crate::slice::Pixels;
    use proptest::prelude::*;

    fn slice_of(width: u32, height: u32, pixels: Pixels) -> Slice {
        Slice::new(width, height, pixels).unwrap()
    }

    fn level(width: u32, height: u32, ty: SampleType) -> LevelInfo {
        LevelInfo {
            level: 2,
            width,
            height,
            depth: 9,
            sample_type: ty,
        }
    }

    fn phantom_slice(ty: SampleType) -> Slice {
        Phantom::new(96, 70, 4).with_sample_type(ty).slice(2)
    }

    #[test]
    fn round_trips_every_type_and_filter() {
        for ty in [SampleType::U8, SampleType::U16, SampleType::F32] {
            let s = match ty {
                SampleType::F32 => slice_of(
                    7,
                    5,
                    Pixels::F32((0..35).map(|i| i as f32 * 1.5 - 3.0).collect()),
                ),
                _ => phantom_slice(ty),
            };
            let lv = level(s.width(), s.height(), ty);
            for choice in [
                FilterChoice::Auto,
                FilterChoice::None,
                FilterChoice::Shuffle,
            ] {
                let blob = encode(&s, SliceKey::new(2, 3), choice);
                assert_eq!(decode(&blob, &lv, 3).unwrap(), s, "{ty} {choice:?}");
            }
        }
    }

    #[test]
    fn shuffle_puts_high_bytes_first() {
        let src = [0x01, 0xA1, 0x02, 0xA2, 0x03, 0xA3];
        let mut dst = [0; 6];
        shuffle(&src, 2, &mut dst);
        assert_eq!(dst, [0xA1, 0xA2, 0xA3, 0x01, 0x02, 0x03]);
        let mut back = [0; 6];
        unshuffle(&dst, 2, &mut back);
        assert_eq!(back, src);
        let src4 = [1, 2, 3, 4, 5, 6, 7, 8];
        let mut dst4 = [0; 8];
        shuffle(&src4, 4, &mut dst4);
        assert_eq!(dst4, [4, 8, 3, 7, 2, 6, 1, 5]);
        let mut back4 = [0; 8];
        unshuffle(&dst4, 4, &mut back4);
        assert_eq!(back4, src4);
    }

    #[test]
    fn auto_shuffles_noisy_16_bit_and_stores_incompressible() {
        let s = Phantom::new(256, 256, 2).slice(1);
        let blob = encode(&s, SliceKey::new(2, 0), FilterChoice::Auto);
        let h = verify(&blob, &level(256, 256, SampleType::U16), 0).unwrap();
        assert_eq!(h.filter, Filter::Shuffle);
        assert!(h.ratio() < 1.0, "{}", h.ratio());

        // White noise over all 16 bits: LZ4 cannot shrink it, so it is stored.
        let mut x = 0x2545_f491_u32;
        let noise: Vec<u16> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u16
            })
            .collect();
        let s = slice_of(64, 64, Pixels::U16(noise));
        let blob = encode(&s, SliceKey::new(2, 0), FilterChoice::Auto);
        let lv = level(64, 64, SampleType::U16);
        let h = verify(&blob, &lv, 0).unwrap();
        assert_eq!(h.compression, Compression::Stored);
        assert_eq!(decode(&blob, &lv, 0).unwrap(), s);
    }

    #[test]
    fn every_field_is_checked_against_the_caller() {
        let s = phantom_slice(SampleType::U16);
        let blob = encode(&s, SliceKey::new(2, 3), FilterChoice::Auto);
        let lv = level(96, 70, SampleType::U16);
        let cases = [
            (level(96, 70, SampleType::U16), 4, "z"),
            (LevelInfo { level: 3, ..lv }, 3, "level"),
            (level(95, 70, SampleType::U16), 3, "width"),
            (level(96, 71, SampleType::U16), 3, "height"),
            (level(96, 70, SampleType::U8), 3, "sample type"),
        ];
        for (lv, z, name) in cases {
            match decode(&blob, &lv, z) {
                Err(BlobError::Field { field, .. }) => assert_eq!(field, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let s = Phantom::new(40, 30, 2).slice(1);
        let lv = level(40, 30, SampleType::U16);
        let blob = encode(&s, SliceKey::new(2, 1), FilterChoice::Auto);
        for at in 0..blob.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = blob.clone();
                bad[at] ^= mask;
                assert!(
                    decode(&bad, &lv, 1).is_err(),
                    "flip {mask:#x} at {at} accepted"
                );
            }
        }
        for len in 0..blob.len() {
            assert!(
                decode(&blob[..len], &lv, 1).is_err(),
                "truncated to {len} accepted"
            );
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(matches!(
            decode(&longer, &lv, 1),
            Err(BlobError::TrailingBytes { .. })
        ));
        assert!(matches!(
            decode(
                b"GIF89a and more bytes than a header holds, surely more",
                &lv,
                1
            ),
            Err(BlobError::BadMagic { .. })
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_damage_never_panics_or_decodes(
            seed in any::<u64>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 1..8),
            cut in any::<prop::sample::Index>(),
            truncate in any::<bool>(),
        ) {
            let s = Phantom::new(33, 17, 2).with_seed(seed).slice(0);
            let lv = level(33, 17, SampleType::U16);
            let mut blob = encode(&s, SliceKey::new(2, 0), FilterChoice::Auto);
            for (at, mask) in flips {
                let i = at.index(blob.len());
                blob[i] ^= mask;
            }
            if truncate {
                let len = cut.index(blob.len());
                blob.truncate(len);
            }
            prop_assert!(decode(&blob, &lv, 0).is_err());
        }

        #[test]
        fn round_trip_of_any_samples(
            samples in proptest::collection::vec(any::<u16>(), 1..600),
            width in 1u32..40,
        ) {
            let width = width.min(samples.len() as u32);
            let height = samples.len() as u32 / width;
            let pixels = Pixels::U16(samples[..(width * height) as usize].to_vec());
            let s = Slice::new(width, height, pixels).unwrap();
            let lv = level(width, height, SampleType::U16);
            for choice in [FilterChoice::Auto, FilterChoice::None, FilterChoice::Shuffle] {
                let blob = encode(&s, SliceKey::new(2, 7), choice);
                prop_assert_eq!(&decode(&blob, &lv, 7).unwrap(), &s);
            }
        }
    }
}
