//! Slice files written for the tests: with the `tiff` and `image` encoders, and by hand for the
//! layouts those encoders cannot produce (big-endian, tiled, planar, palette, absurd headers).

use std::io::Cursor;

use image::{ExtendedColorType, ImageEncoder};
use tiff::encoder::colortype::ColorType as TiffColorType;
use tiff::encoder::{Compression, TiffEncoder, TiffValue};
use tiff::tags::Predictor;

use super::noise8;

// ---------------------------------------------------------------------------------------------
// TIFF through the `tiff` crate's encoder (little-endian strips)
// ---------------------------------------------------------------------------------------------

/// A TIFF of colour type `C` written by the `tiff` crate, in strips of `rows_per_strip` rows
/// (the crate's default when `None`).
pub fn tiff_with<C: TiffColorType>(
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
pub fn tiff_plain<C: TiffColorType>(w: u32, h: u32, data: &[C::Inner]) -> Vec<u8>
where
    [C::Inner]: TiffValue,
{
    tiff_with::<C>(w, h, data, Compression::Uncompressed, Predictor::None, None)
}

/// An uncompressed 8-bit gray TIFF.
pub fn tiff8(w: u32, h: u32, data: &[u8]) -> Vec<u8> {
    tiff_plain::<tiff::encoder::colortype::Gray8>(w, h, data)
}

/// An uncompressed 16-bit gray TIFF.
pub fn tiff16(w: u32, h: u32, data: &[u16]) -> Vec<u8> {
    tiff_plain::<tiff::encoder::colortype::Gray16>(w, h, data)
}

/// A small valid 8-bit slice (5 x 3) for discovery tests.
pub fn tiny_tiff() -> Vec<u8> {
    tiff8(5, 3, &noise8(5, 3, 0))
}

/// A minimal little-endian single-strip gray TIFF claiming `width` x `height` samples of
/// `bits`, with `compression` (1 none, 8 deflate) and a 16-byte strip.
pub fn tiff_claiming(width: u32, height: u32, bits: u16, compression: u16) -> Vec<u8> {
    let strip: &[u8] = if compression == 1 {
        &[0x55; 16]
    } else {
        // The start of a zlib stream, cut short.
        &[
            0x78, 0x9C, 0xED, 0xC1, 0x01, 0x0D, 0, 0, 0, 0xC2, 0xA0, 0xF7, 0x4F, 0x6D, 0x0E, 0x37,
        ]
    };
    let count = 9u16;
    let data_at = 8 + 2 + 12 * u32::from(count) + 4;
    let entries: [(u16, u16, u32); 9] = [
        (256, LONG, width),                   // ImageWidth
        (257, LONG, height),                  // ImageLength
        (258, SHORT, u32::from(bits)),        // BitsPerSample
        (259, SHORT, u32::from(compression)), // Compression
        (262, SHORT, 1),                      // PhotometricInterpretation: BlackIsZero
        (273, LONG, data_at),                 // StripOffsets
        (277, SHORT, 1),                      // SamplesPerPixel
        (278, LONG, height),                  // RowsPerStrip
        (279, LONG, strip.len() as u32),      // StripByteCounts
    ];
    let mut f = Vec::new();
    f.extend_from_slice(b"II");
    f.extend_from_slice(&42u16.to_le_bytes());
    f.extend_from_slice(&8u32.to_le_bytes());
    f.extend_from_slice(&count.to_le_bytes());
    for (tag, kind, value) in entries {
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&kind.to_le_bytes());
        f.extend_from_slice(&1u32.to_le_bytes());
        if kind == SHORT {
            f.extend_from_slice(&(value as u16).to_le_bytes());
            f.extend_from_slice(&[0, 0]);
        } else {
            f.extend_from_slice(&value.to_le_bytes());
        }
    }
    f.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(f.len() as u32, data_at);
    f.extend_from_slice(strip);
    f
}

// ---------------------------------------------------------------------------------------------
// Hand-written TIFF: either byte order, strips or tiles, chunky or planar
// ---------------------------------------------------------------------------------------------

/// How the pixel data of a hand-written TIFF is cut.
#[derive(Debug, Clone, Copy)]
pub enum Chunks {
    /// Strips of this many rows (the last one may be shorter).
    Strips(u32),
    /// Tiles of this width and height; edge tiles are stored whole, padded with junk.
    Tiles(u32, u32),
}

/// A minimal uncompressed TIFF written byte by byte. The IFD comes right after the header and
/// the pixel data last, so cutting the file short cuts the pixels and leaves the header whole.
#[derive(Debug, Clone, Copy)]
pub struct RawTiff {
    /// `MM` (big-endian) rather than `II`.
    pub big_endian: bool,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bits per sample: 8, 16 or 32.
    pub bits: u16,
    /// TIFF SampleFormat: 1 unsigned, 2 signed, 3 IEEE float.
    pub sample_format: u16,
    /// Samples per pixel: 1 gray, 2 gray + alpha, 3 RGB, 4 RGBA.
    pub samples_per_pixel: u16,
    /// PlanarConfiguration 2 (one plane per channel) rather than 1 (interleaved).
    pub planar: bool,
    /// Photometric WhiteIsZero (0) rather than BlackIsZero (1) for gray.
    pub white_is_zero: bool,
    /// Strips or tiles.
    pub chunks: Chunks,
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
    pub fn gray(big_endian: bool, width: u32, height: u32, bits: u16, chunks: Chunks) -> Self {
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
    pub fn encode(&self, samples: &[u64]) -> Vec<u8> {
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
    pub fn header_only(&self, data_bytes: usize) -> Vec<u8> {
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
pub fn bmp_indexed(
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
pub fn bmp_rle(width: u32, height: u32, bits: u16, indices: &[u8], palette: &[[u8; 3]]) -> Vec<u8> {
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
pub fn gray_palette() -> Vec<[u8; 3]> {
    (0..=255u8).map(|i| [i, i, i]).collect()
}

/// The bytes an `image` encoder writes (`what` names the format in a failure).
fn encoded(what: &str, write: impl FnOnce(&mut Vec<u8>) -> image::ImageResult<()>) -> Vec<u8> {
    let mut buf = Vec::new();
    write(&mut buf).unwrap_or_else(|e| panic!("{what} encoding: {e}"));
    buf
}

/// A BMP written by `image`'s encoder.
pub fn bmp_encoded(w: u32, h: u32, data: &[u8], color: ExtendedColorType) -> Vec<u8> {
    encoded("bmp", |buf| {
        image::codecs::bmp::BmpEncoder::new(buf).encode(data, w, h, color)
    })
}

/// A BMP (BITMAPINFOHEADER, uncompressed) claiming `width` x `height` (negative: top-down) at
/// `bits` per pixel (8: with a gray palette), followed by 16 bytes of pixels.
pub fn bmp_claiming(width: u32, height: i32, bits: u16) -> Vec<u8> {
    let palette = if bits == 8 {
        gray_palette()
    } else {
        Vec::new()
    };
    bmp_file(
        width,
        height.unsigned_abs(),
        bits,
        0,
        &palette,
        height < 0,
        &[0x80; 16],
    )
}

// ---------------------------------------------------------------------------------------------
// PNG and JPEG
// ---------------------------------------------------------------------------------------------

/// A PNG written by `image`'s encoder (16-bit samples in native byte order).
pub fn png_encoded(w: u32, h: u32, data: &[u8], color: ExtendedColorType) -> Vec<u8> {
    encoded("png", |buf| {
        image::codecs::png::PngEncoder::new(buf).write_image(data, w, h, color)
    })
}

/// A JPEG written by `image`'s encoder.
pub fn jpeg_encoded(w: u32, h: u32, data: &[u8], color: ExtendedColorType, quality: u8) -> Vec<u8> {
    encoded("jpeg", |buf| {
        image::codecs::jpeg::JpegEncoder::new_with_quality(buf, quality).encode(data, w, h, color)
    })
}

/// CRC-32 (ISO-HDLC) as PNG chunks use it, bit by bit.
pub fn crc32(bytes: &[u8]) -> u32 {
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

/// One PNG chunk: length, type, data, CRC of type and data.
pub fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = crc32(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A PNG claiming `width` x `height` (`bit_depth`, `color_type`: 0 gray, 2 RGB, 6 RGBA) with
/// a valid signature and IHDR, then an IDAT whose header promises 4096 bytes but holds 12: a
/// tiny file claiming any size.
pub fn png_claiming(width: u32, height: u32, bit_depth: u8, color_type: u8) -> Vec<u8> {
    let mut f = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[bit_depth, color_type, 0, 0, 0]);
    png_chunk(&mut f, b"IHDR", &ihdr);
    f.extend_from_slice(&4096u32.to_be_bytes());
    f.extend_from_slice(b"IDAT");
    f.extend_from_slice(&[
        0x78, 0x9C, 0xED, 0xC1, 0x01, 0x0D, 0, 0, 0, 0xC2, 0xA0, 0xF7,
    ]);
    f
}

/// Native-endian bytes of 16-bit samples (what `image`'s encoders take for 16-bit colour).
pub fn ne_bytes(samples: &[u16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_ne_bytes()).collect()
}
