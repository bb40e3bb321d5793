//! The blob format: one slice of one level, LZ4-compressed behind a self-checking header.
//!
//! # Layout
//! All numbers little-endian; a blob is a 68-byte header followed by the payload.
//!
//! | offset | size | field |
//! |---:|---:|---|
//! | 0 | 4 | magic `LODb` |
//! | 4 | 2 | format version ([`FORMAT_VERSION`]) |
//! | 6 | 1 | compression: 0 stored, 1 one LZ4 block, 2 byte planes |
//! | 7 | 1 | filter: 0 none, 1 byte-shuffle |
//! | 8 | 1 | sample type: 1 u8, 2 u16, 3 f32 |
//! | 9 | 3 | zero |
//! | 12 | 4 | level |
//! | 16 | 4 | z |
//! | 20 | 4 | width |
//! | 24 | 4 | height |
//! | 28 | 8 | raw length in bytes (width x height x sample bytes) |
//! | 36 | 8 | payload length in bytes |
//! | 44 | 8 | stack: identity of the stack ([`Origin::stack`]) |
//! | 52 | 8 | sources: fingerprint of exactly the source slices the slice is made from ([`Origin::sources`]) |
//! | 60 | 8 | checksum: XXH3-64 of the payload, used as the seed of XXH3-64 over bytes 0..60 |
//!
//! The **origin** fields (stack and sources) tie a blob to what it was made from: a reader
//! expects the fingerprint of the sources as they are now, so a blob made from an older version
//! of a source slice, or from another stack's slices, is refused like a damaged one
//! ([`BlobError::Origin`]) even when its checksum is right.
//!
//! The **byte-shuffle** filter stores the most significant byte of every sample first, then the
//! next, down to the least significant (for 16-bit samples: all high bytes, then all low bytes).
//! CT noise lives in the low bytes while the high bytes repeat, so LZ4 finds long matches in the
//! high plane and next to nothing in the low one. A shuffled payload therefore keeps each plane
//! apart (compression 2). Each plane is cut into chunks of [`PLANE_CHUNK`] bytes (the last one
//! shorter), compressed independently so that a slice decodes on several cores at once and each
//! chunk is put back together while in cache. The payload is a table of one entry per chunk,
//! plane by plane (most significant first) and chunk by chunk, of `mode: u8` (0 stored, 1 LZ4
//! block) and `length: u32`, then the chunks' bytes in that order. A plane that LZ4 would not
//! shrink by 5% is stored, which saves both the encoder's time on noise and the decoder's (a
//! stored chunk is read in place).
//!
//! The encoder picks per blob: it compresses a few windows of the slice as they are and plane
//! by plane, and keeps whichever is smaller ([`FilterChoice::Auto`]); 8-bit slices are never
//! shuffled. Samples LZ4 cannot shrink at all are stored uncompressed (compression 0).
//!
//! # Checking
//! [`decode`] checks the magic first, then the version, then every field against the level and
//! slice the caller expects ([`BlobId`]), then the lengths, the checksum and the origin, and only
//! then decompresses into a buffer sized from the *expected* dimensions. Any failure is a [`BlobError`]; a damaged blob
//! never panics and never decodes to a wrong slice.
//!
//! Samples are stored little-endian; lodcache targets little-endian machines (x86-64, AArch64).

use std::cell::RefCell;
use std::fmt;
use std::sync::Arc;

use rayon::prelude::*;

use lz4_flex::block::{CompressTable, compress_into_with_table, get_maximum_output_size};
use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

use crate::geometry::{LevelInfo, SliceKey};
use crate::slice::{SampleType, Slice};

/// A blob as the tiers hold it: immutable bytes shared between readers.
pub type Blob = Arc<[u8]>;

/// Version of the blob layout. A cache written with another version is discarded on open.
/// Version 2 cut byte planes into chunks; version 3 added the origin (stack and sources).
pub const FORMAT_VERSION: u16 = 3;

/// Bytes of one plane per chunk of a [`Compression::Planes`] payload. Independent LZ4 blocks of
/// this size compress within 1% of whole planes on CT slices.
pub const PLANE_CHUNK: usize = 64 << 10;

/// Bytes before the payload.
pub const HEADER_LEN: usize = 68;

const MAGIC: [u8; 4] = *b"LODb";
/// Bytes covered by the checksum's header part.
const CHECKED_HEADER: usize = 60;

/// What a blob's samples were made from: the stack, and exactly the source slices the slice
/// depends on (for slice `z` of level `n`, source slices `[z * 2^n, (z + 1) * 2^n)`). Both are
/// fingerprints computed by the caller (the pyramid uses hashes of the sources' names, sizes,
/// modification times and, optionally, contents: see `Manifest`); the codec only stores and
/// compares them. `Origin::default()` (both 0) is for callers that track origin themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Origin {
    /// The stack's identity: what every slice of it shares (size, sample type, naming).
    pub stack: u64,
    /// The fingerprint of exactly the source slices this slice is made from.
    pub sources: u64,
}

/// The slice a caller expects a blob to hold: its level, its index and its origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BlobId {
    /// The level (size and sample type included).
    pub level: LevelInfo,
    /// The slice index within the level.
    pub z: u32,
    /// What it must have been made from.
    pub origin: Origin,
}

impl BlobId {
    /// Slice `z` of `level`, with the default origin.
    pub fn new(level: LevelInfo, z: u32) -> BlobId {
        BlobId {
            level,
            z,
            origin: Origin::default(),
        }
    }

    /// The same slice made from `origin`.
    #[must_use]
    pub fn with_origin(mut self, origin: Origin) -> BlobId {
        self.origin = origin;
        self
    }

    /// The slice's key.
    pub fn key(&self) -> SliceKey {
        SliceKey::new(self.level.level, self.z)
    }
}
/// Samples of the slice compressed both ways to choose the filter: this many windows ...
pub(crate) const PROBE_WINDOWS: usize = 3;
/// ... of this many bytes each.
const PROBE_BYTES: usize = 8 << 10;

/// How a blob's samples were compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// Raw bytes (LZ4 would not have made them smaller).
    Stored,
    /// One LZ4 block (lz4_flex's block format).
    Lz4,
    /// Byte planes (after [`Filter::Shuffle`]) in chunks of [`PLANE_CHUNK`] bytes, each an LZ4
    /// block or stored raw, behind a table of one `(mode: u8, length: u32)` entry per chunk.
    Planes,
}

impl TryFrom<u8> for Compression {
    type Error = u8;
    fn try_from(b: u8) -> Result<Self, u8> {
        match b {
            0 => Ok(Compression::Stored),
            1 => Ok(Compression::Lz4),
            2 => Ok(Compression::Planes),
            other => Err(other),
        }
    }
}

impl From<Compression> for u8 {
    fn from(c: Compression) -> u8 {
        match c {
            Compression::Stored => 0,
            Compression::Lz4 => 1,
            Compression::Planes => 2,
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
    /// A sound blob made from other sources: another version of a source slice it depends on,
    /// or another stack's slices.
    #[error("made from other sources ({what} fingerprint {found:016x}, expected {expected:016x})")]
    Origin {
        /// `stack` or `sources`.
        what: &'static str,
        /// The fingerprint expected.
        expected: u64,
        /// The fingerprint in the blob.
        found: u64,
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
    /// What the blob was made from.
    pub origin: Origin,
}

impl BlobHeader {
    /// Compressed size over raw size (smaller is better), counting the header.
    pub fn ratio(&self) -> f64 {
        (self.payload_len as f64 + HEADER_LEN as f64) / (self.raw_len.max(1) as f64)
    }
}

/// Per-thread reusable buffers: LZ4's hash table, the probe's buffers and the output. The
/// Zarr chunk encoder's Blosc uses them too ([`with_scratch`]).
#[derive(Default)]
pub(crate) struct Scratch {
    pub(crate) table: Option<CompressTable>,
    probe: Vec<u8>,
    pub(crate) probe_out: Vec<u8>,
    out: Vec<u8>,
    pub(crate) planes: Vec<u8>,
}

impl Scratch {
    fn table(&mut self) -> &mut CompressTable {
        self.table.get_or_insert_with(CompressTable::large)
    }
}

thread_local! {
    static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
}

/// Runs `f` with this thread's [`Scratch`] (not to be called again from inside `f`).
pub(crate) fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|cell| f(&mut cell.borrow_mut()))
}

/// Writes the byte planes of `src` (samples of `size` bytes, little-endian) into `dst`, most
/// significant plane first.
fn shuffle(src: &[u8], size: usize, dst: &mut [u8]) {
    let n = src.len() / size;
    if size == 2
        && let Ok(samples) = bytemuck::try_cast_slice::<u8, u16>(src)
    {
        let (hi, lo) = dst.split_at_mut(n);
        for ((v, h), l) in samples.iter().zip(hi).zip(lo) {
            let [low, high] = v.to_le_bytes();
            *h = high;
            *l = low;
        }
        return;
    }
    for (plane, out) in dst.chunks_exact_mut(n.max(1)).take(size).enumerate() {
        let byte = size - 1 - plane;
        for (o, sample) in out.iter_mut().zip(src.chunks_exact(size)) {
            *o = sample[byte];
        }
    }
}

/// The inverse of [`shuffle`], reading each plane from wherever it lies.
fn unshuffle(planes: &[&[u8]], dst: &mut [u8]) {
    let size = planes.len();
    if size == 2
        && let Ok(samples) = bytemuck::try_cast_slice_mut::<u8, u16>(dst)
    {
        for ((v, h), l) in samples.iter_mut().zip(planes[0]).zip(planes[1]) {
            *v = u16::from_le_bytes([*l, *h]);
        }
        return;
    }
    for (plane, input) in planes.iter().enumerate() {
        let byte = size - 1 - plane;
        for (i, sample) in input.iter().zip(dst.chunks_exact_mut(size)) {
            sample[byte] = *i;
        }
    }
}

/// [`PROBE_WINDOWS`] windows of `window` bytes spread evenly over `raw` (starting at
/// multiples of `align`), or `raw` itself when it is no longer than they are together.
pub(crate) fn probe_windows(
    raw: &[u8],
    window: usize,
    align: usize,
) -> impl Iterator<Item = &[u8]> {
    let (count, step, len) = if raw.len() <= window * PROBE_WINDOWS {
        (1, 0, raw.len())
    } else {
        let step = (raw.len() - window) / (PROBE_WINDOWS - 1) / align * align;
        (PROBE_WINDOWS, step, window)
    };
    (0..count).map(move |w| &raw[w * step..w * step + len])
}

/// LZ4-compressed length of `input` (`usize::MAX` if it could not be compressed).
pub(crate) fn lz4_len(input: &[u8], out: &mut Vec<u8>, table: &mut CompressTable) -> usize {
    out.resize(get_maximum_output_size(input.len()), 0);
    compress_into_with_table(input, out, table).unwrap_or(usize::MAX)
}

/// Sizes estimated on a few windows of the slice: LZ4 over the samples as they are, and over
/// each byte plane (a plane that LZ4 would not shrink counts at its raw size).
struct Estimate {
    plain: usize,
    planes: [usize; 4],
    plane_raw: usize,
}

fn estimate(raw: &[u8], size: usize, scratch: &mut Scratch, with_plain: bool) -> Estimate {
    let window = (PROBE_BYTES / size) * size;
    let mut est = Estimate {
        plain: 0,
        planes: [0; 4],
        plane_raw: 0,
    };
    let mut probe = std::mem::take(&mut scratch.probe);
    let mut out = std::mem::take(&mut scratch.probe_out);
    for part in probe_windows(raw, window, size) {
        if with_plain {
            est.plain += lz4_len(part, &mut out, scratch.table());
        }
        probe.resize(part.len(), 0);
        shuffle(part, size, &mut probe);
        let n = part.len() / size;
        est.plane_raw += n;
        for (p, plane) in probe.chunks_exact(n).enumerate() {
            est.planes[p] += lz4_len(plane, &mut out, scratch.table()).min(n);
        }
    }
    scratch.probe = probe;
    scratch.probe_out = out;
    est
}

/// A plane is compressed when the probe says LZ4 saves at least this fraction of it.
pub(crate) const PLANE_MIN_SAVING: f64 = 0.05;

/// Samples made ready for compression: filtered (for [`Filter::Shuffle`], the byte planes),
/// with the per-plane choice already made. Lets a caller do the copy on one thread and the
/// compression on another.
#[derive(Debug)]
pub struct Prepared {
    key: SliceKey,
    origin: Origin,
    width: u32,
    height: u32,
    sample_type: SampleType,
    filter: Filter,
    compress_plane: [bool; 4],
    data: Vec<u8>,
}

/// Filters `slice` into `buf` (reusing its allocation) as the blob of `key` made from
/// `origin`, choosing the filter as `choice` says.
pub fn prepare(
    slice: &Slice,
    key: SliceKey,
    origin: Origin,
    choice: FilterChoice,
    mut buf: Vec<u8>,
) -> Prepared {
    let raw = slice.pixels().as_bytes();
    let size = slice.sample_type().bytes();
    let (filter, compress_plane) = SCRATCH.with(|cell| {
        let scratch = &mut *cell.borrow_mut();
        if size == 1 || choice == FilterChoice::None {
            return (Filter::None, [false; 4]);
        }
        let est = estimate(raw, size, scratch, choice == FilterChoice::Auto);
        let mut planes = [false; 4];
        let mut shuffled = 0;
        for (p, keep) in planes.iter_mut().enumerate().take(size) {
            let saving = 1.0 - est.planes[p] as f64 / est.plane_raw.max(1) as f64;
            *keep = saving >= PLANE_MIN_SAVING;
            shuffled += if *keep { est.planes[p] } else { est.plane_raw };
        }
        if !planes.iter().any(|&p| p) || (choice == FilterChoice::Auto && est.plain <= shuffled) {
            (Filter::None, [false; 4])
        } else {
            (Filter::Shuffle, planes)
        }
    });
    buf.clear();
    buf.resize(raw.len(), 0);
    match filter {
        Filter::None => buf.copy_from_slice(raw),
        Filter::Shuffle => shuffle(raw, size, &mut buf),
    }
    Prepared {
        key,
        origin,
        width: slice.width(),
        height: slice.height(),
        sample_type: slice.sample_type(),
        filter,
        compress_plane,
        data: buf,
    }
}

impl Prepared {
    /// The slice the blob will hold.
    pub fn key(&self) -> SliceKey {
        self.key
    }

    /// Compresses into a finished blob.
    pub fn compress(&self) -> Blob {
        SCRATCH.with(|cell| {
            let scratch = &mut *cell.borrow_mut();
            let raw_len = self.data.len();
            let mut out = std::mem::take(&mut scratch.out);
            let (compression, payload_len) = match self.filter {
                Filter::None => {
                    out.resize(HEADER_LEN + get_maximum_output_size(raw_len), 0);
                    let n = compress_into_with_table(
                        &self.data,
                        &mut out[HEADER_LEN..],
                        scratch.table(),
                    )
                    .unwrap_or(usize::MAX);
                    if n < raw_len {
                        (Compression::Lz4, n)
                    } else {
                        out.truncate(HEADER_LEN);
                        out.extend_from_slice(&self.data);
                        (Compression::Stored, raw_len)
                    }
                }
                Filter::Shuffle => {
                    let size = self.sample_type.bytes();
                    let n = raw_len / size;
                    let chunks = n.div_ceil(PLANE_CHUNK);
                    out.resize(HEADER_LEN + 5 * size * chunks, 0);
                    for (p, plane) in self.data.chunks_exact(n.max(1)).take(size).enumerate() {
                        for (c, chunk) in plane.chunks(PLANE_CHUNK).enumerate() {
                            let at = out.len();
                            let mut mode = 0u8;
                            let mut len = chunk.len();
                            if self.compress_plane[p] {
                                out.resize(at + get_maximum_output_size(chunk.len()), 0);
                                let n = compress_into_with_table(
                                    chunk,
                                    &mut out[at..],
                                    scratch.table(),
                                )
                                .unwrap_or(usize::MAX);
                                if n < chunk.len() {
                                    mode = 1;
                                    len = n;
                                }
                            }
                            out.truncate(at + if mode == 1 { len } else { 0 });
                            if mode == 0 {
                                out.extend_from_slice(chunk);
                            }
                            let entry = HEADER_LEN + 5 * (p * chunks + c);
                            out[entry] = mode;
                            out[entry + 1..entry + 5].copy_from_slice(&(len as u32).to_le_bytes());
                        }
                    }
                    (Compression::Planes, out.len() - HEADER_LEN)
                }
            };
            out.truncate(HEADER_LEN + payload_len);
            let header = BlobHeader {
                key: self.key,
                width: self.width,
                height: self.height,
                sample_type: self.sample_type,
                compression,
                filter: if compression == Compression::Planes {
                    Filter::Shuffle
                } else {
                    Filter::None
                },
                raw_len: raw_len as u64,
                payload_len: payload_len as u64,
                origin: self.origin,
            };
            write_header(&header, &mut out);
            let blob: Blob = Arc::from(&out[..]);
            scratch.out = out;
            blob
        })
    }

    /// Gives the buffer back for the next [`prepare`].
    pub fn into_buffer(self) -> Vec<u8> {
        self.data
    }
}

/// Encodes `slice` as the blob of `key` made from `origin`, choosing the filter as `choice`
/// says.
pub fn encode(slice: &Slice, key: SliceKey, origin: Origin, choice: FilterChoice) -> Blob {
    let buf = SCRATCH.with(|cell| std::mem::take(&mut cell.borrow_mut().planes));
    let prepared = prepare(slice, key, origin, choice, buf);
    let blob = prepared.compress();
    let buf = prepared.into_buffer();
    SCRATCH.with(|cell| cell.borrow_mut().planes = buf);
    blob
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
    b[44..52].copy_from_slice(&h.origin.stack.to_le_bytes());
    b[52..60].copy_from_slice(&h.origin.sources.to_le_bytes());
    let sum = checksum(&blob[..CHECKED_HEADER], &blob[HEADER_LEN..]);
    blob[60..68].copy_from_slice(&sum.to_le_bytes());
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

/// The longest a valid blob of a slice of `level` can be: header, chunk table and the worst
/// case LZ4 output of every chunk. A file longer than this is damaged without being read.
pub fn max_blob_len(level: &LevelInfo) -> u64 {
    let raw = level.slice_bytes();
    let size = level.sample_type.bytes();
    let n = raw / size;
    let full = n / PLANE_CHUNK;
    let last = n % PLANE_CHUNK;
    let chunk_max = |len: usize| get_maximum_output_size(len).max(len);
    let planes = size
        * (5 * n.div_ceil(PLANE_CHUNK)
            + full * chunk_max(PLANE_CHUNK)
            + if last > 0 { chunk_max(last) } else { 0 });
    (HEADER_LEN + planes.max(chunk_max(raw))) as u64
}

/// Checks `blob` against the slice `id` without decompressing it: magic, version, every
/// header field, the lengths, the checksum, then the origin (so that [`BlobError::Origin`]
/// means a sound blob made from other sources).
///
/// # Errors
/// The first check that fails, as a [`BlobError`].
pub fn verify(blob: &[u8], id: &BlobId) -> Result<BlobHeader, BlobError> {
    let header = check_fields(blob, &id.level, id.z)?;
    check_sum(blob)?;
    check_origin(&header, id)?;
    Ok(header)
}

/// The origin check of [`verify`].
fn check_origin(header: &BlobHeader, id: &BlobId) -> Result<(), BlobError> {
    let (found, expected) = (header.origin, id.origin);
    if found.stack != expected.stack {
        return Err(BlobError::Origin {
            what: "stack",
            expected: expected.stack,
            found: found.stack,
        });
    }
    if found.sources != expected.sources {
        return Err(BlobError::Origin {
            what: "sources",
            expected: expected.sources,
            found: found.sources,
        });
    }
    Ok(())
}

/// Every check of [`verify`] but the checksum and the origin.
fn check_fields(blob: &[u8], level: &LevelInfo, z: u32) -> Result<BlobHeader, BlobError> {
    if blob.len() < 4 || blob[0..4] != MAGIC {
        if blob.len() < 4 {
            return Err(BlobError::Truncated {
                expected: HEADER_LEN as u64,
                found: blob.len() as u64,
            });
        }
        let mut found = [0; 4];
        found.copy_from_slice(&blob[..4]);
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
        .map_err(|b| field("compression", "0, 1 or 2", format!("code {b}")))?;
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
        origin: Origin {
            stack: u64_at(blob, 44),
            sources: u64_at(blob, 52),
        },
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
    let shuffled = filter == Filter::Shuffle;
    if shuffled != (compression == Compression::Planes) || (shuffled && sample_type.bytes() == 1) {
        return Err(field(
            "filter",
            "shuffle exactly with plane compression of multi-byte samples",
            format!("{filter:?} with {compression:?} of {sample_type}"),
        ));
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
    Ok(header)
}

/// The checksum check of [`verify`].
fn check_sum(blob: &[u8]) -> Result<(), BlobError> {
    let stored = u64_at(blob, 60);
    let computed = checksum(&blob[..CHECKED_HEADER], &blob[HEADER_LEN..]);
    if stored != computed {
        return Err(BlobError::Checksum { stored, computed });
    }
    Ok(())
}

fn lz4_exact(input: &[u8], into: &mut [u8]) -> Result<(), BlobError> {
    let expected = into.len();
    match lz4_flex::block::decompress_into(input, into) {
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
}

/// Splits a [`Compression::Planes`] payload of planes of `n` bytes into `(mode, bytes)` per
/// chunk (plane by plane, chunk by chunk), checking the table.
fn chunk_table(payload: &[u8], size: usize, n: usize) -> Result<Vec<(u8, &[u8])>, BlobError> {
    let chunks = n.div_ceil(PLANE_CHUNK);
    let entries = size * chunks;
    let table_len = 5 * entries;
    if payload.len() < table_len {
        return Err(BlobError::Truncated {
            expected: table_len as u64,
            found: payload.len() as u64,
        });
    }
    let mut table = Vec::with_capacity(entries);
    let mut at = table_len;
    for e in 0..entries {
        let c = e % chunks;
        let raw = PLANE_CHUNK.min(n - c * PLANE_CHUNK);
        let mode = payload[5 * e];
        let len = u32_at(payload, 5 * e + 1) as usize;
        if mode > 1 || (mode == 0 && len != raw) {
            return Err(field(
                "chunk entry",
                format!("stored {raw} bytes or LZ4"),
                format!("mode {mode}, {len} bytes"),
            ));
        }
        let end = at
            .checked_add(len)
            .filter(|&e| e <= payload.len())
            .ok_or_else(|| {
                field(
                    "chunk lengths",
                    payload.len(),
                    format!("beyond, at entry {e}"),
                )
            })?;
        table.push((mode, &payload[at..end]));
        at = end;
    }
    if at != payload.len() {
        return Err(field("chunk lengths", payload.len(), at));
    }
    Ok(table)
}

/// Puts chunk `c` (of `chunks` per plane) of every plane back together into `out`, the
/// samples of that chunk.
fn expand_chunk(
    table: &[(u8, &[u8])],
    chunks: usize,
    c: usize,
    out: &mut [u8],
) -> Result<(), BlobError> {
    let size = table.len() / chunks;
    let m = out.len() / size;
    SCRATCH.with(|cell| {
        let scratch = &mut *cell.borrow_mut();
        scratch.planes.resize(m * size, 0);
        let mut room = scratch.planes.chunks_exact_mut(m.max(1));
        let mut planes: Vec<&[u8]> = Vec::with_capacity(size);
        for p in 0..size {
            let (mode, bytes) = table[p * chunks + c];
            let decoded = room.next().unwrap_or_default();
            if mode == 0 {
                planes.push(bytes);
            } else {
                lz4_exact(bytes, decoded)?;
                planes.push(decoded);
            }
        }
        unshuffle(&planes, out);
        Ok(())
    })
}

/// Decodes `blob` as the slice `id` into `out` (reshaped to the level's size; its
/// allocation is reused when the sample type matches).
///
/// # Errors
/// A [`BlobError`] when any check of [`verify`] fails or the payload does not decompress to
/// exactly the expected number of bytes. `out` holds unspecified samples after an error.
pub fn decode_into(blob: &[u8], id: &BlobId, out: &mut Slice) -> Result<BlobHeader, BlobError> {
    let header = verify(blob, id)?;
    expand(blob, &header, &id.level, out)?;
    Ok(header)
}

/// Decodes a blob that was verified when it entered the tier holding it (a blob read from
/// disk is verified by the disk tier; one encoded here needs no check): every check of
/// [`verify`] but the checksum, which would hash the payload a second time.
pub(crate) fn decode_verified(blob: &[u8], id: &BlobId) -> Result<Slice, BlobError> {
    let header = check_fields(blob, &id.level, id.z)?;
    check_origin(&header, id)?;
    let mut out = Slice::zeroed(0, 0, id.level.sample_type);
    expand(blob, &header, &id.level, &mut out)?;
    Ok(out)
}

/// Decompresses the payload of a checked blob into `out`.
fn expand(
    blob: &[u8],
    header: &BlobHeader,
    level: &LevelInfo,
    out: &mut Slice,
) -> Result<(), BlobError> {
    out.reshape(level.width, level.height, level.sample_type);
    let payload = &blob[HEADER_LEN..];
    let dst = out.pixels_mut().as_bytes_mut();
    match header.compression {
        Compression::Stored => dst.copy_from_slice(payload),
        Compression::Lz4 => lz4_exact(payload, dst)?,
        Compression::Planes => {
            let size = level.sample_type.bytes();
            let n = dst.len() / size;
            let table = chunk_table(payload, size, n)?;
            let chunks = n.div_ceil(PLANE_CHUNK);
            // Chunks at once on the current rayon pool.
            dst.par_chunks_mut(PLANE_CHUNK * size)
                .enumerate()
                .try_for_each(|(c, out)| expand_chunk(&table, chunks, c, out))?;
        }
    }
    Ok(())
}

/// Decodes `blob` as the slice `id` into a new slice.
///
/// # Errors
/// As [`decode_into`].
pub fn decode(blob: &[u8], id: &BlobId) -> Result<Slice, BlobError> {
    let mut out = Slice::zeroed(0, 0, id.level.sample_type);
    decode_into(blob, id, &mut out)?;
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
                let blob = encode(&s, SliceKey::new(2, 3), Origin::default(), choice);
                assert_eq!(
                    decode(&blob, &BlobId::new(lv, 3)).unwrap(),
                    s,
                    "{ty} {choice:?}"
                );
            }
        }
    }

    #[test]
    fn planes_in_several_chunks_round_trip_and_stay_within_the_maximum() {
        // 300 x 250 = 75000 samples: one whole chunk of each plane and a partial one.
        for ty in [SampleType::U16, SampleType::F32] {
            let mut x = 0x2545_f491_u32;
            let mut noise = || {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x
            };
            // Steps in the high bytes, noise in the low byte.
            let step = |i: u32| (i % 300 / 30 + i / 300 / 25) * 256;
            let smooth = match ty {
                SampleType::F32 => Pixels::F32(
                    (0..75_000)
                        .map(|i| (step(i) + noise() % 256) as f32)
                        .collect(),
                ),
                _ => Pixels::U16(
                    (0..75_000)
                        .map(|i| (step(i) + noise() % 256) as u16)
                        .collect(),
                ),
            };
            let smooth = slice_of(300, 250, smooth);
            let noisy = match ty {
                SampleType::F32 => Pixels::F32((0..75_000).map(|_| noise() as f32).collect()),
                _ => Pixels::U16((0..75_000).map(|_| noise() as u16).collect()),
            };
            let noisy = slice_of(300, 250, noisy);
            let lv = level(300, 250, ty);
            // Smooth samples are byte planes; 16-bit noise is stored (no plane shrinks).
            for s in [&smooth, &noisy] {
                let blob = encode(
                    s,
                    SliceKey::new(2, 0),
                    Origin::default(),
                    FilterChoice::Shuffle,
                );
                let compression = blob[6];
                if std::ptr::eq(s, &smooth) {
                    assert_eq!(compression, 2, "{ty}");
                }
                assert!(blob.len() as u64 <= max_blob_len(&lv), "{ty}");
                assert_eq!(&decode(&blob, &BlobId::new(lv, 0)).unwrap(), s, "{ty}");
                if compression == 0 {
                    continue;
                }
                // A chunk entry pointing past the payload is refused, not read.
                let mut bad = blob.to_vec();
                let entry = HEADER_LEN + 5;
                bad[entry + 1..entry + 5].copy_from_slice(&u32::MAX.to_le_bytes());
                let sum = checksum(&bad[..CHECKED_HEADER], &bad[HEADER_LEN..]);
                bad[44..52].copy_from_slice(&sum.to_le_bytes());
                assert!(decode(&bad, &BlobId::new(lv, 0)).is_err(), "{ty}");
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
        unshuffle(&[&dst[..3], &dst[3..]], &mut back);
        assert_eq!(back, src);
        let src4 = [1, 2, 3, 4, 5, 6, 7, 8];
        let mut dst4 = [0; 8];
        shuffle(&src4, 4, &mut dst4);
        assert_eq!(dst4, [4, 8, 3, 7, 2, 6, 1, 5]);
        let mut back4 = [0; 8];
        unshuffle(
            &[&dst4[..2], &dst4[2..4], &dst4[4..6], &dst4[6..]],
            &mut back4,
        );
        assert_eq!(back4, src4);
    }

    #[test]
    fn auto_shuffles_noisy_16_bit_and_stores_incompressible() {
        let s = Phantom::new(256, 256, 2).with_noise(0.002).slice(1);
        let blob = encode(
            &s,
            SliceKey::new(2, 0),
            Origin::default(),
            FilterChoice::Auto,
        );
        let h = verify(&blob, &BlobId::new(level(256, 256, SampleType::U16), 0)).unwrap();
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
        let blob = encode(
            &s,
            SliceKey::new(2, 0),
            Origin::default(),
            FilterChoice::Auto,
        );
        let lv = level(64, 64, SampleType::U16);
        let h = verify(&blob, &BlobId::new(lv, 0)).unwrap();
        assert_eq!(h.compression, Compression::Stored);
        assert_eq!(decode(&blob, &BlobId::new(lv, 0)).unwrap(), s);
    }

    #[test]
    fn every_field_is_checked_against_the_caller() {
        let s = phantom_slice(SampleType::U16);
        let blob = encode(
            &s,
            SliceKey::new(2, 3),
            Origin::default(),
            FilterChoice::Auto,
        );
        let lv = level(96, 70, SampleType::U16);
        let cases = [
            (level(96, 70, SampleType::U16), 4, "z"),
            (LevelInfo { level: 3, ..lv }, 3, "level"),
            (level(95, 70, SampleType::U16), 3, "width"),
            (level(96, 71, SampleType::U16), 3, "height"),
            (level(96, 70, SampleType::U8), 3, "sample type"),
        ];
        for (lv, z, name) in cases {
            match decode(&blob, &BlobId::new(lv, z)) {
                Err(BlobError::Field { field, .. }) => assert_eq!(field, name),
                other => panic!("{name}: {other:?}"),
            }
        }
    }

    #[test]
    fn every_flipped_byte_and_every_truncation_is_refused() {
        let s = Phantom::new(40, 30, 2).slice(1);
        let lv = level(40, 30, SampleType::U16);
        let blob = encode(
            &s,
            SliceKey::new(2, 1),
            Origin::default(),
            FilterChoice::Auto,
        )
        .to_vec();
        for at in 0..blob.len() {
            for mask in [0x01u8, 0x80, 0xff] {
                let mut bad = blob.clone();
                bad[at] ^= mask;
                assert!(
                    decode(&bad, &BlobId::new(lv, 1)).is_err(),
                    "flip {mask:#x} at {at} accepted"
                );
            }
        }
        for len in 0..blob.len() {
            assert!(
                decode(&blob[..len], &BlobId::new(lv, 1)).is_err(),
                "truncated to {len} accepted"
            );
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert!(matches!(
            decode(&longer, &BlobId::new(lv, 1)),
            Err(BlobError::TrailingBytes { .. })
        ));
        assert!(matches!(
            decode(
                b"GIF89a and more bytes than a header holds, surely more than sixty-eight",
                &BlobId::new(lv, 1)
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
            let mut blob = encode(&s, SliceKey::new(2, 0), Origin::default(), FilterChoice::Auto).to_vec();
            for (at, mask) in flips {
                let i = at.index(blob.len());
                blob[i] ^= mask;
            }
            if truncate {
                let len = cut.index(blob.len());
                blob.truncate(len);
            }
            prop_assert!(decode(&blob, &BlobId::new(lv, 0)).is_err());
        }

        #[test]
        fn forged_payloads_with_valid_checksums_never_panic(
            payload in proptest::collection::vec(any::<u8>(), 0..400),
            planes in any::<bool>(),
        ) {
            // The checksum cannot catch a payload we were handed with a matching checksum:
            // the LZ4 decoder's own bounds checks must.
            let lv = level(16, 9, SampleType::U16);
            let (compression, filter) = if planes {
                (Compression::Planes, Filter::Shuffle)
            } else {
                (Compression::Lz4, Filter::None)
            };
            let mut payload = payload;
            if planes {
                // A well-formed plane table in front: both planes "LZ4", splitting the bytes.
                let half = (payload.len() / 2) as u32;
                let rest = payload.len() as u32 - half;
                let mut table = vec![1u8];
                table.extend_from_slice(&half.to_le_bytes());
                table.push(1);
                table.extend_from_slice(&rest.to_le_bytes());
                table.extend_from_slice(&payload);
                payload = table;
            }
            let header = BlobHeader {
                key: SliceKey::new(2, 1),
                width: 16,
                height: 9,
                sample_type: SampleType::U16,
                compression,
                filter,
                raw_len: lv.slice_bytes() as u64,
                payload_len: payload.len() as u64,
                origin: Origin::default(),
            };
            let mut blob = vec![0u8; HEADER_LEN];
            blob.extend_from_slice(&payload);
            write_header(&header, &mut blob);
            prop_assert!(verify(&blob, &BlobId::new(lv, 1)).is_ok());
            if let Ok(s) = decode(&blob, &BlobId::new(lv, 1)) {
                prop_assert_eq!(s.pixels().len(), 16 * 9);
            }
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
                let blob = encode(&s, SliceKey::new(2, 7), Origin::default(), choice);
                prop_assert_eq!(&decode(&blob, &BlobId::new(lv, 7)).unwrap(), &s);
            }
        }
    }
}
