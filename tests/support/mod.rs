//! Helpers shared by the `source_*` tests: seeded sample patterns, files written with the
//! `tiff` and `image` encoders, and hand-written TIFF, BMP and PNG files for the layouts those
//! encoders cannot produce (big-endian, tiled, planar, palette, absurd headers).

// Each test crate uses a different part of these helpers; `expect` would fire in whichever
// crate happens to use all of them.
#![allow(
    dead_code,
    reason = "shared by several test crates, each using a subset"
)]

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::{ExtendedColorType, ImageEncoder};
use lodcache::{Error, Slice};
use tiff::encoder::colortype::ColorType as TiffColorType;
use tiff::encoder::{Compression, TiffEncoder, TiffValue};
use tiff::tags::Predictor;

// ---------------------------------------------------------------------------------------------
// Sample patterns
// ---------------------------------------------------------------------------------------------

/// SplitMix64: a well-mixed hash, so neighbouring pixels differ in every bit.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A hash of one sample position.
fn hash(x: u32, y: u32, c: u32, seed: u64) -> u64 {
    mix(u64::from(x) | u64::from(y) << 20 | u64::from(c) << 40 | seed << 44)
}

/// `w * h * channels` pseudo-random samples below `2^bits`, channels interleaved, with the
/// extremes 0 and the maximum at the first two positions so that the full range is exercised.
pub(crate) fn noise(w: u32, h: u32, channels: u32, bits: u32, seed: u64) -> Vec<u64> {
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
pub(crate) fn noise8(w: u32, h: u32, seed: u64) -> Vec<u8> {
    noise(w, h, 1, 8, seed)
        .into_iter()
        .map(|s| s as u8)
        .collect()
}

/// 16-bit gray noise.
pub(crate) fn noise16(w: u32, h: u32, seed: u64) -> Vec<u16> {
    noise(w, h, 1, 16, seed)
        .into_iter()
        .map(|s| s as u16)
        .collect()
}

/// A smooth 8-bit gradient (for lossy JPEG).
pub(crate) fn smooth8(w: u32, h: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            v.push((40 + x * 80 / w.max(1) + y * 80 / h.max(1)) as u8);
        }
    }
    v
}

/// Float samples including negatives, tiny, huge, infinite and NaN values.
pub(crate) fn floats(w: u32, h: u32, seed: u64) -> Vec<f32> {
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
pub(crate) fn luma(r: u64, g: u64, b: u64) -> u64 {
    (2126 * r + 7152 * g + 722 * b + 5000) / 10000
}

/// Luma of each pixel of interleaved samples with `channels` >= 3 per pixel.
pub(crate) fn luma_of(samples: &[u64], channels: usize) -> Vec<u64> {
    samples
        .chunks_exact(channels)
        .map(|p| luma(p[0], p[1], p[2]))
        .collect()
}

/// The 8-bit samples of a slice (panics on another type).
pub(crate) fn u8s(slice: &Slice) -> Vec<u64> {
    slice
        .samples::<u8>()
        .expect("u8 samples")
        .iter()
        .map(|&s| u64::from(s))
        .collect()
}

/// The 16-bit samples of a slice (panics on another type).
pub(crate) fn u16s(slice: &Slice) -> Vec<u64> {
    slice
        .samples::<u16>()
        .expect("u16 samples")
        .iter()
        .map(|&s| u64::from(s))
        .collect()
}

/// Index and values of the first difference, for readable failures on large buffers.
pub(crate) fn first_difference(found: &[u64], expected: &[u64]) -> Option<(usize, u64, u64)> {
    found
        .iter()
        .zip(expected)
        .enumerate()
        .find(|(_, (a, b))| a != b)
        .map(|(i, (a, b))| (i, *a, *b))
}

/// Asserts sample-by-sample equality, naming the first differing position.
#[track_caller]
pub(crate) fn assert_samples(found: &[u64], expected: &[u64], what: &str) {
    assert_eq!(found.len(), expected.len(), "{what}: sample count");
    if let Some((i, a, b)) = first_difference(found, expected) {
        panic!("{what}: sample {i} is {a}, expected {b}");
    }
}

// ---------------------------------------------------------------------------------------------
// Files and errors
// ---------------------------------------------------------------------------------------------

/// Writes `bytes` to `dir/name` and returns the path.
pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// Asserts that the error's text names `path`.
#[track_caller]
pub(crate) fn assert_names(err: &Error, path: &Path) {
    let text = err.to_string();
    let name = path.display().to_string();
    assert!(
        text.contains(&name),
        "error text {text:?} does not name {name}"
    );
}

// ---------------------------------------------------------------------------------------------
// TIFF through the `tiff` crate's encoder (little-endian strips)
// ---------------------------------------------------------------------------------------------

/// A TIFF of colour type `C` written by the `tiff` crate, in strips of `rows_per_strip` rows
/// (the crate's default when `None`).
pub(crate) fn tiff_with<C: TiffColorType>(
    w: u32,
    h: u32,
    data: &[C::Inner],
    compression: Compression,
    predictor: Predictor,
    rows_per_strip: Option<u32>,
) -> Vec<u8>
where
    [C::Inner]: TiffValue,
{
    let mut buf = Cursor::new(Vec::new());
    let mut enc = TiffEncoder::new(&mut buf)
        .expect("tiff header")
        .with_compression(compression)
        .with_predictor(predictor);
    let mut image = enc.new_image::<C>(w, h).expect("tiff directory");
    if let Some(rows) = rows_per_strip {
        image.rows_per_strip(rows).expect("rows per strip");
    }
    image.write_data(data).expect("tiff image");
    buf.into_inner()
}

/// An uncompressed TIFF of colour type `C`.
pub(crate) fn tiff_plain<C: TiffColorType>(w: u32, h: u32, data: &[C::Inner]) -> Vec<u8>
where
    [C::Inner]: TiffValue,
{
    tiff_with::<C>(w, h, data, Compression::Uncompressed, Predictor::None, None)
}

/// An uncompressed 8-bit gray TIFF.
pub(crate) fn tiff8(w: u32, h: u32, data: &[u8]) -> Vec<u8> {
    tiff_plain::<tiff::encoder::colortype::Gray8>(w, h, data)
}

/// An uncompressed 16-bit gray TIFF.
pub(crate) fn tiff16(w: u32, h: u32, data: &[u16]) -> Vec<u8> {
    tiff_plain::<tiff::encoder::colortype::Gray16>(w, h, data)
}

/// A small valid 8-bit slice (5 x 3) for discovery tests.
pub(crate) fn tiny_tiff() -> Vec<u8> {
    tiff8(5, 3, &noise8(5, 3, 0))
}

// ---------------------------------------------------------------------------------------------
// Hand-written TIFF: either byte order, strips or tiles, chunky or planar
// ---------------------------------------------------------------------------------------------

/// How the pixel data of a hand-written TIFF is cut.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Chunks {
    /// Strips of this many rows (the last one may be shorter).
    Strips(u32),
    /// Tiles of this width and height; edge tiles are stored whole, padded with junk.
    Tiles(u32, u32),
}

/// A minimal uncompressed TIFF written byte by byte. The IFD comes right after the header and
/// the pixel data last, so cutting the file short cuts the pixels and leaves the header whole.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawTiff {
    /// `MM` (big-endian) rather than `II`.
    pub(crate) big_endian: bool,
    /// Width in pixels.
    pub(crate) width: u32,
    /// Height in pixels.
    pub(crate) height: u32,
    /// Bits per sample: 8, 16 or 32.
    pub(crate) bits: u16,
    /// TIFF SampleFormat: 1 unsigned, 2 signed, 3 IEEE float.
    pub(crate) sample_format: u16,
    /// Samples per pixel: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
    pub(crate) samples_per_pixel: u16,
    /// PlanarConfiguration 2 (one plane per channel) rather than 1 (interleaved).
    pub(crate) planar: bool,
    /// Photometric WhiteIsZero (0) rather than BlackIsZero (1) for gray.
    pub(crate) white_is_zero: bool,
    /// Strips or tiles.
    pub(crate) chunks: Chunks,
}

const SHORT: u16 = 3;
const LONG: u16 = 4;

/// One IFD entry: tag, type (SHORT or LONG) and values.
struct Entry {
    tag: u16,
    typ: u16,
    values: Vec<u32>,
}

impl Entry {
    fn size(&self) -> usize {
        self.values.len() * if self.typ == SHORT { 2 } else { 4 }
    }
}

fn put16(out: &mut Vec<u8>, v: u16, be: bool) {
    out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
}

fn put32(out: &mut Vec<u8>, v: u32, be: bool) {
    out.extend_from_slice(&if be { v.to_be_bytes() } else { v.to_le_bytes() });
}

fn put_values(out: &mut Vec<u8>, e: &Entry, be: bool) {
    for &v in &e.values {
        if e.typ == SHORT {
            put16(out, v as u16, be);
        } else {
            put32(out, v, be);
        }
    }
}

/// Header, IFD (entries plus offsets/byte-counts of `chunks` under the given tags), values that
/// do not fit in an entry, then the chunks.
fn assemble(
    be: bool,
    mut entries: Vec<Entry>,
    offsets_tag: u16,
    counts_tag: u16,
    chunks: &[Vec<u8>],
) -> Vec<u8> {
    let ifd_len = 2 + 12 * (entries.len() + 2) + 4;
    let mut extra_len: usize = entries
        .iter()
        .map(|e| if e.size() > 4 { e.size() } else { 0 })
        .sum();
    // The two chunk arrays (sizes known before their values).
    for _ in 0..2 {
        if chunks.len() * 4 > 4 {
            extra_len += chunks.len() * 4;
        }
    }
    let mut at = 8 + ifd_len + extra_len;
    let mut offsets = Vec::with_capacity(chunks.len());
    for c in chunks {
        offsets.push(at as u32);
        at += c.len();
    }
    entries.push(Entry {
        tag: offsets_tag,
        typ: LONG,
        values: offsets,
    });
    entries.push(Entry {
        tag: counts_tag,
        typ: LONG,
        values: chunks.iter().map(|c| c.len() as u32).collect(),
    });
    entries.sort_by_key(|e| e.tag);

    let mut out = Vec::with_capacity(at);
    if be {
        out.extend_from_slice(b"MM\0\x2a");
    } else {
        out.extend_from_slice(b"II\x2a\0");
    }
    put32(&mut out, 8, be);
    put16(&mut out, entries.len() as u16, be);
    let mut extra_at = 8 + ifd_len;
    for e in &entries {
        put16(&mut out, e.tag, be);
        put16(&mut out, e.typ, be);
        put32(&mut out, e.values.len() as u32, be);
        if e.size() <= 4 {
            let start = out.len();
            put_values(&mut out, e, be);
            out.resize(start + 4, 0);
        } else {
            put32(&mut out, extra_at as u32, be);
            extra_at += e.size();
        }
    }
    put32(&mut out, 0, be); // no next IFD
    for e in &entries {
        if e.size() > 4 {
            put_values(&mut out, e, be);
        }
    }
    assert_eq!(out.len(), 8 + ifd_len + extra_len);
    for c in chunks {
        out.extend_from_slice(c);
    }
    out
}

impl RawTiff {
    /// A gray image of `bits` unsigned samples in one byte order, cut into `chunks`.
    pub(crate) fn gray(
        big_endian: bool,
        width: u32,
        height: u32,
        bits: u16,
        chunks: Chunks,
    ) -> Self {
        RawTiff {
            big_endian,
            width,
            height,
            bits,
            sample_format: 1,
            samples_per_pixel: 1,
            planar: false,
            white_is_zero: false,
            chunks,
        }
    }

    /// The IFD entries describing the image (without the chunk offsets and byte counts).
    fn entries(&self) -> Vec<Entry> {
        let spp = self.samples_per_pixel;
        let mut entries = vec![
            Entry {
                tag: 256,
                typ: LONG,
                values: vec![self.width],
            },
            Entry {
                tag: 257,
                typ: LONG,
                values: vec![self.height],
            },
            Entry {
                tag: 258,
                typ: SHORT,
                values: vec![u32::from(self.bits); usize::from(spp)],
            },
            Entry {
                tag: 259,
                typ: SHORT,
                values: vec![1],
            },
            Entry {
                tag: 262,
                typ: SHORT,
                values: vec![match (spp, self.white_is_zero) {
                    (3.., _) => 2,
                    (_, true) => 0,
                    (_, false) => 1,
                }],
            },
            Entry {
                tag: 277,
                typ: SHORT,
                values: vec![u32::from(spp)],
            },
            Entry {
                tag: 284,
                typ: SHORT,
                values: vec![if self.planar { 2 } else { 1 }],
            },
            Entry {
                tag: 339,
                typ: SHORT,
                values: vec![u32::from(self.sample_format); usize::from(spp)],
            },
        ];
        if spp == 2 || spp == 4 {
            // ExtraSamples: unassociated alpha.
            entries.push(Entry {
                tag: 338,
                typ: SHORT,
                values: vec![2],
            });
        }
        match self.chunks {
            Chunks::Strips(rows) => entries.push(Entry {
                tag: 278,
                typ: LONG,
                values: vec![rows],
            }),
            Chunks::Tiles(tw, th) => {
                entries.push(Entry {
                    tag: 322,
                    typ: LONG,
                    values: vec![tw],
                });
                entries.push(Entry {
                    tag: 323,
                    typ: LONG,
                    values: vec![th],
                });
            }
        }
        entries
    }

    fn put_sample(&self, out: &mut Vec<u8>, v: u64) {
        let be = self.big_endian;
        match self.bits {
            8 => out.push(v as u8),
            16 => put16(out, v as u16, be),
            32 => put32(out, v as u32, be),
            b => panic!("unsupported test bit depth {b}"),
        }
    }

    /// The file for `samples`: `width * height * samples_per_pixel` values, channels
    /// interleaved, row-major (float samples as `f32::to_bits`). Padding of edge tiles is junk.
    pub(crate) fn encode(&self, samples: &[u64]) -> Vec<u8> {
        let (w, h) = (self.width, self.height);
        let spp = u32::from(self.samples_per_pixel);
        assert_eq!(samples.len(), (w * h * spp) as usize, "sample count");
        let planes: Vec<Option<u32>> = if self.planar {
            (0..spp).map(Some).collect()
        } else {
            vec![None]
        };
        // Writes the samples of pixel (x, y) for one plane (or all channels), junk outside.
        let pixel = |out: &mut Vec<u8>, x: u32, y: u32, plane: Option<u32>| {
            let channels = plane.map_or(0..spp, |p| p..p + 1);
            for c in channels {
                let v = if x < w && y < h {
                    samples[((y * w + x) * spp + c) as usize]
                } else {
                    0xA5A5_A5A5 ^ u64::from(x * 31 + y)
                };
                self.put_sample(out, v);
            }
        };
        let mut chunks = Vec::new();
        let (offsets_tag, counts_tag) = match self.chunks {
            Chunks::Strips(rows) => {
                for &plane in &planes {
                    for y0 in (0..h).step_by(rows as usize) {
                        let mut c = Vec::new();
                        for y in y0..(y0 + rows).min(h) {
                            for x in 0..w {
                                pixel(&mut c, x, y, plane);
                            }
                        }
                        chunks.push(c);
                    }
                }
                (273, 279)
            }
            Chunks::Tiles(tw, th) => {
                for &plane in &planes {
                    for ty in 0..h.div_ceil(th) {
                        for tx in 0..w.div_ceil(tw) {
                            let mut c = Vec::new();
                            for y in ty * th..(ty + 1) * th {
                                for x in tx * tw..(tx + 1) * tw {
                                    pixel(&mut c, x, y, plane);
                                }
                            }
                            chunks.push(c);
                        }
                    }
                }
                (324, 325)
            }
        };
        assemble(
            self.big_endian,
            self.entries(),
            offsets_tag,
            counts_tag,
            &chunks,
        )
    }

    /// A file whose header describes this image but whose single strip holds only
    /// `data_bytes` bytes: a tiny file claiming any size.
    pub(crate) fn header_only(&self, data_bytes: usize) -> Vec<u8> {
        let mut raw = *self;
        raw.chunks = Chunks::Strips(self.height);
        assemble(
            self.big_endian,
            raw.entries(),
            273,
            279,
            &[vec![0u8; data_bytes]],
        )
    }
}

// ---------------------------------------------------------------------------------------------
// BMP
// ---------------------------------------------------------------------------------------------

/// A palette BMP written by hand: BITMAPFILEHEADER, BITMAPINFOHEADER, the palette (`[r, g, b]`
/// entries, stored as BGR0), then rows padded to 4 bytes with junk, bottom-up unless
/// `top_down`. `bits` is 1, 2, 4 or 8 (packed, leftmost pixel in the high bits).
pub(crate) fn bmp_indexed(
    width: u32,
    height: u32,
    bits: u16,
    indices: &[u8],
    palette: &[[u8; 3]],
    top_down: bool,
) -> Vec<u8> {
    assert!(matches!(bits, 1 | 2 | 4 | 8));
    assert_eq!(indices.len(), (width * height) as usize);
    let per_byte = 8 / bits as usize;
    let row_bytes = (width * u32::from(bits)).div_ceil(8);
    let stride = row_bytes.div_ceil(4) * 4;
    let mut data = Vec::new();
    let rows: Vec<u32> = if top_down {
        (0..height).collect()
    } else {
        (0..height).rev().collect()
    };
    for y in rows {
        let row = &indices[(y * width) as usize..((y + 1) * width) as usize];
        let start = data.len();
        for group in row.chunks(per_byte) {
            let mut byte = 0u8;
            for (i, &idx) in group.iter().enumerate() {
                assert!(
                    u32::from(idx) < 1 << bits,
                    "index {idx} needs more than {bits} bits"
                );
                byte |= idx << (8 - bits as usize * (i + 1));
            }
            data.push(byte);
        }
        // Junk in the row padding: it must not leak into the pixels.
        data.resize(start + stride as usize, 0xEE);
    }
    bmp_file(width, height, bits, 0, palette, top_down, &data)
}

/// A run-length encoded palette BMP (BI_RLE8 for `bits` 8, BI_RLE4 for 4), bottom-up: runs of
/// equal indices, an end-of-line after each row and an end-of-bitmap mark.
pub(crate) fn bmp_rle(
    width: u32,
    height: u32,
    bits: u16,
    indices: &[u8],
    palette: &[[u8; 3]],
) -> Vec<u8> {
    assert!(bits == 8 || bits == 4);
    let mut data = Vec::new();
    for y in (0..height).rev() {
        let row = &indices[(y * width) as usize..((y + 1) * width) as usize];
        let mut x = 0;
        while x < row.len() {
            let v = row[x];
            let run = row[x..].iter().take(255).take_while(|&&i| i == v).count();
            data.push(run as u8);
            data.push(if bits == 8 { v } else { v << 4 | v });
            x += run;
        }
        data.extend_from_slice(&[0, 0]);
    }
    data.extend_from_slice(&[0, 1]);
    let compression = if bits == 8 { 1 } else { 2 };
    bmp_file(width, height, bits, compression, palette, false, &data)
}

/// Headers and palette around pixel `data`.
fn bmp_file(
    width: u32,
    height: u32,
    bits: u16,
    compression: u32,
    palette: &[[u8; 3]],
    top_down: bool,
    data: &[u8],
) -> Vec<u8> {
    let data_offset = 14 + 40 + 4 * palette.len() as u32;
    let image_size = data.len() as u32;
    let mut out = Vec::with_capacity((data_offset + image_size) as usize);
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&(data_offset + image_size).to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&data_offset.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&(width as i32).to_le_bytes());
    let h = if top_down {
        -(height as i32)
    } else {
        height as i32
    };
    out.extend_from_slice(&h.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(&compression.to_le_bytes());
    out.extend_from_slice(&image_size.to_le_bytes());
    out.extend_from_slice(&2835u32.to_le_bytes());
    out.extend_from_slice(&2835u32.to_le_bytes());
    out.extend_from_slice(&(palette.len() as u32).to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes());
    for [r, g, b] in palette {
        out.extend_from_slice(&[*b, *g, *r, 0]);
    }
    out.extend_from_slice(data);
    out
}

/// The 256-entry gray ramp palette.
pub(crate) fn gray_palette() -> Vec<[u8; 3]> {
    (0..=255u8).map(|i| [i, i, i]).collect()
}

/// A BMP written by `image`'s encoder.
pub(crate) fn bmp_encoded(w: u32, h: u32, data: &[u8], color: ExtendedColorType) -> Vec<u8> {
    let mut buf = Vec::new();
    image::codecs::bmp::BmpEncoder::new(&mut buf)
        .encode(data, w, h, color)
        .expect("bmp encoding");
    buf
}

/// A BMP header claiming `width` x `height` 24-bit pixels, with no pixel data.
pub(crate) fn bmp_claiming(width: i32, height: i32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(b"BM");
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&54u32.to_le_bytes());
    out.extend_from_slice(&40u32.to_le_bytes());
    out.extend_from_slice(&width.to_le_bytes());
    out.extend_from_slice(&height.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes());
    out.extend_from_slice(&24u16.to_le_bytes());
    out.extend_from_slice(&[0; 24]);
    out
}

// ---------------------------------------------------------------------------------------------
// PNG and JPEG
// ---------------------------------------------------------------------------------------------

/// A PNG written by `image`'s encoder (16-bit samples in native byte order).
pub(crate) fn png_encoded(w: u32, h: u32, data: &[u8], color: ExtendedColorType) -> Vec<u8> {
    let mut buf = Vec::new();
    image::codecs::png::PngEncoder::new(&mut buf)
        .write_image(data, w, h, color)
        .expect("png encoding");
    buf
}

/// A JPEG written by `image`'s encoder.
pub(crate) fn jpeg_encoded(
    w: u32,
    h: u32,
    data: &[u8],
    color: ExtendedColorType,
    quality: u8,
) -> Vec<u8> {
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, quality)
        .encode(data, w, h, color)
        .expect("jpeg encoding");
    buf
}

/// CRC-32 (ISO-HDLC) as PNG chunks use it.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A PNG with a valid IHDR claiming `width` x `height` 8-bit gray pixels, an empty IDAT and
/// IEND: a tiny file claiming any size.
pub(crate) fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8; 4], data: &[u8]| {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut body = kind.to_vec();
        body.extend_from_slice(data);
        out.extend_from_slice(&body);
        out.extend_from_slice(&crc32(&body).to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &[]);
    chunk(b"IEND", &[]);
    out
}

/// Native-endian bytes of 16-bit samples (what `image`'s encoders take for 16-bit colour).
pub(crate) fn ne_bytes(samples: &[u16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_ne_bytes()).collect()
}
