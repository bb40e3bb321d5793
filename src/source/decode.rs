//! Decoding one slice file into a reusable buffer.

use std::fs::File;
use std::io::{BufRead, Read, Seek, SeekFrom};
use std::path::Path;

use image::ImageDecoder;
use tiff::decoder::{Decoder as TiffDecoder, DecodingSampleType};

use super::budget::{DECODE_OVERHEAD, reserve_decode_memory};
use super::{SliceInfo, jpeg};
use crate::error::{Error, Result};
use crate::slice::{Pixels, SampleType, Slice};

/// The container format, told by the first bytes of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Tiff,
    Png,
    Bmp,
    Jpeg,
}

fn sniff(path: &Path, head: &[u8]) -> Result<Format> {
    match head {
        [b'I', b'I', 42, 0, ..]
        | [b'M', b'M', 0, 42, ..]
        | [b'I', b'I', 43, 0, ..]
        | [b'M', b'M', 0, 43, ..] => Ok(Format::Tiff),
        [0x89, b'P', b'N', b'G', ..] => Ok(Format::Png),
        [b'B', b'M', ..] => Ok(Format::Bmp),
        [0xFF, 0xD8, 0xFF, ..] => Ok(Format::Jpeg),
        _ if head.len() < 4 => Err(Error::decode(
            path,
            format!("file is {} bytes long, too short for an image", head.len()),
        )),
        _ => Err(Error::decode(
            path,
            "not a TIFF, PNG, BMP or JPEG file (unknown first bytes)",
        )),
    }
}

/// How the decoded samples are laid out before conversion to one gray channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One gray sample per pixel: decoded straight into the output.
    Gray,
    /// `n` interleaved channels; gray is channel 0 (`n == 2`) or luma of the first three.
    Interleaved(usize),
    /// Three or more planes one after the other (planar TIFF): luma of the first three.
    Planar(usize),
}

use super::input::Input;
use super::rows::Rows;

/// Buffer of the reader used for headers only.
const HEADER_BUFFER: usize = 16 << 10;

/// What [`SliceDecoder::tiff_header`] read.
struct TiffHeader {
    info: SliceInfo,
    channels: usize,
    layout: Layout,
    /// The Compression tag (1: none).
    compression: u16,
    /// Bytes the tiff crate writes when reading the whole image.
    buffer_len: usize,
}

/// Decodes slice files within the process-wide decode budget ([`super::budget`]).
#[derive(Debug)]
pub(crate) struct SliceDecoder {
    max_slice_bytes: u64,
    /// The directory offset of the page to read, for a page of a multi-page TIFF.
    page_ifd: Option<u64>,
    bytes_read: u64,
    /// Length of the file being decoded.
    file_len: u64,
}

/// BT.709 luma weights in units of 1/10000 (0.2126, 0.7152, 0.0722): exact, and summing to
/// exactly one so that r == g == b gives back r.
const LUMA_R: u64 = 2126;
const LUMA_G: u64 = 7152;
const LUMA_B: u64 = 722;
const LUMA_ONE: u64 = 10_000;
const _: () = assert!(LUMA_R + LUMA_G + LUMA_B == LUMA_ONE);

/// round(0.2126 r + 0.7152 g + 0.0722 b), half up, computed exactly.
#[inline]
fn luma(r: u64, g: u64, b: u64) -> u64 {
    (r * LUMA_R + g * LUMA_G + b * LUMA_B + LUMA_ONE / 2) / LUMA_ONE
}

/// Converts `channels`-interleaved or planar samples into gray samples of the same depth.
trait Channel: Copy {
    fn to_u64(self) -> u64;
    fn from_u64(v: u64) -> Self;
}
impl Channel for u8 {
    fn to_u64(self) -> u64 {
        u64::from(self)
    }
    fn from_u64(v: u64) -> u8 {
        // luma() of values <= 255 is <= 255.
        v as u8
    }
}
impl Channel for u16 {
    fn to_u64(self) -> u64 {
        u64::from(self)
    }
    fn from_u64(v: u64) -> u16 {
        v as u16
    }
}

fn to_gray<T: Channel>(src: &[T], layout: Layout, dst: &mut [T]) {
    match layout {
        Layout::Gray => dst.copy_from_slice(&src[..dst.len()]),
        Layout::Interleaved(2) => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *d = s[0];
            }
        }
        Layout::Interleaved(n) => {
            for (d, s) in dst.iter_mut().zip(src.chunks_exact(n)) {
                *d = T::from_u64(luma(s[0].to_u64(), s[1].to_u64(), s[2].to_u64()));
            }
        }
        Layout::Planar(_) => {
            let len = dst.len();
            let (r, rest) = src.split_at(len);
            let (g, b) = rest.split_at(len);
            for (i, d) in dst.iter_mut().enumerate() {
                *d = T::from_u64(luma(r[i].to_u64(), g[i].to_u64(), b[i].to_u64()));
            }
        }
    }
}

/// Checks a header against the stack's first slice.
fn check_expected(path: &Path, found: SliceInfo, expected: Option<&SliceInfo>) -> Result<()> {
    let Some(e) = expected else { return Ok(()) };
    if (found.width, found.height) != (e.width, e.height) {
        return Err(Error::SizeMismatch {
            path: path.to_path_buf(),
            expected_w: e.width,
            expected_h: e.height,
            found_w: found.width,
            found_h: found.height,
        });
    }
    if found.sample_type != e.sample_type {
        return Err(Error::SampleTypeMismatch {
            path: path.to_path_buf(),
            expected: e.sample_type,
            found: found.sample_type,
        });
    }
    Ok(())
}

impl SliceDecoder {
    pub(crate) fn new(max_slice_bytes: u64) -> Self {
        SliceDecoder {
            max_slice_bytes,
            page_ifd: None,
            bytes_read: 0,
            file_len: 0,
        }
    }

    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes_read
    }

    /// Reads the page whose directory is at `ifd` in the files that follow (a page of a
    /// multi-page TIFF), or the first image (`None`).
    pub(crate) fn set_page(&mut self, ifd: Option<u64>) {
        self.page_ifd = ifd;
    }

    /// Reads the header of `path`: size and sample type after conversion.
    pub(crate) fn probe(&mut self, path: &Path) -> Result<SliceInfo> {
        self.run(path, None, None)
    }

    /// Decodes `path` into `out`, checking it against `expected` before allocating.
    pub(crate) fn decode(
        &mut self,
        path: &Path,
        expected: &SliceInfo,
        out: &mut Slice,
    ) -> Result<()> {
        self.run(path, Some(expected), Some(out)).map(|_| ())
    }

    /// Opens `path` for reading its rows straight from the file when its samples lie there as
    /// they are: an uncompressed gray TIFF in strips, without predictor, lower values darker.
    /// `None` for anything else (decode it whole). Checks size and type against `expected`.
    pub(crate) fn rows(&mut self, path: &Path, expected: &SliceInfo) -> Result<Option<Rows>> {
        use tiff::tags::Tag;
        // Only the header is read through the buffer (the rows are read straight from the file).
        let (mut input, format) = self.open(path, HEADER_BUFFER)?;
        if format == Format::Bmp && self.page_ifd.is_none() {
            return self.bmp_rows(path, &mut input, expected);
        }
        if format != Format::Tiff {
            return Ok(None);
        }
        let (mut dec, header) = self.tiff_header(path, input, Some(expected))?;
        let err = |e: tiff::TiffError| Error::decode(path, e);
        let photometric: Option<u16> = dec
            .find_tag_unsigned(Tag::PhotometricInterpretation)
            .map_err(err)?;
        let predictor: Option<u16> = dec.find_tag_unsigned(Tag::Predictor).map_err(err)?;
        let tiled = dec.find_tag(Tag::TileWidth).map_err(err)?.is_some();
        if header.channels != 1
            || header.compression != 1
            || photometric != Some(1)
            || predictor.is_some_and(|p| p != 1)
            || tiled
        {
            return Ok(None);
        }
        let (Some(offsets), Some(counts)) = (
            dec.find_tag_unsigned_vec::<u64>(Tag::StripOffsets)
                .map_err(err)?,
            dec.find_tag_unsigned_vec::<u64>(Tag::StripByteCounts)
                .map_err(err)?,
        ) else {
            return Ok(None);
        };
        let SliceInfo {
            width,
            height,
            sample_type,
        } = header.info;
        let per_strip: u32 = dec
            .find_tag_unsigned(Tag::RowsPerStrip)
            .map_err(err)?
            .unwrap_or(height)
            .min(height);
        if per_strip == 0 {
            return Ok(None);
        }
        let size = sample_type.bytes();
        let row_bytes = width as usize * size;
        let strips = height.div_ceil(per_strip) as usize;
        let mut layout = Vec::with_capacity(strips);
        for s in 0..strips {
            let first = s as u32 * per_strip;
            let rows = per_strip.min(height - first);
            let need = u64::from(rows) * row_bytes as u64;
            let (Some(&offset), Some(&count)) = (offsets.get(s), counts.get(s)) else {
                return Ok(None);
            };
            // A strip short of its rows, past the end of the file or counted larger than the
            // slice limit (which the tiff crate refuses): the whole-image decoder says what is
            // wrong with it.
            if count < need
                || count > self.max_slice_bytes
                || offset
                    .checked_add(need)
                    .is_none_or(|end| end > self.file_len)
            {
                return Ok(None);
            }
            layout.push((first, rows, offset));
        }
        let big_endian = dec.byte_order() == tiff::tags::ByteOrder::BigEndian;
        let file = dec
            .inner()
            .file()
            .try_clone()
            .map_err(|e| Error::io("opening", path, e))?;
        let swap = if big_endian && size > 1 { size } else { 0 };
        // What reading every row costs: the file, or for a page its rows.
        let counted = match self.page_ifd {
            Some(_) => u64::from(height) * row_bytes as u64,
            None => self.file_len,
        };
        Ok(Some(Rows::new(
            file, path, counted, row_bytes, swap, layout,
        )))
    }

    /// [`SliceDecoder::rows`] of a BMP: only uncompressed 8-bit rows without padding (width a
    /// multiple of 4) whose palette is the gray ramp, of `expected`'s size, and whole; `None`
    /// for anything else (the whole-image decoder reads it, or says what is wrong with it).
    /// Bottom-up rows (the usual BMP) are read a band at a time in one read and put in order
    /// in the band, so they cost what a TIFF's rows cost.
    fn bmp_rows(
        &mut self,
        path: &Path,
        input: &mut Input,
        expected: &SliceInfo,
    ) -> Result<Option<Rows>> {
        let head = input
            .fill_buf()
            .map_err(|e| Error::io("reading", path, e))?;
        let (Some((offset, top_down)), Some(need), Some((width, height))) =
            (bmp8_rows(head), bmp_uncompressed_len(head), bmp_size(head))
        else {
            return Ok(None);
        };
        if !bmp_is_plain_8_bit(head)
            || !bmp_gray_ramp(head)
            || expected.sample_type != SampleType::U8
            || (width, height) != (expected.width, expected.height)
            || width % 4 != 0
            || need > self.file_len
        {
            return Ok(None);
        }
        let file = input
            .file()
            .try_clone()
            .map_err(|e| Error::io("opening", path, e))?;
        let row_bytes = width as usize;
        Ok(Some(if top_down {
            Rows::new(
                file,
                path,
                self.file_len,
                row_bytes,
                0,
                [(0, height, offset)],
            )
        } else {
            Rows::bottom_up(file, path, self.file_len, row_bytes, height, offset)
        }))
    }

    /// Counts a file read through [`SliceDecoder::rows`].
    pub(crate) fn count_read(&mut self, bytes: u64) {
        self.bytes_read += bytes;
    }

    fn check_limit(
        &self,
        path: &Path,
        width: u32,
        height: u32,
        bytes_per_pixel: usize,
    ) -> Result<()> {
        let bytes = u64::from(width) * u64::from(height) * bytes_per_pixel as u64;
        if bytes > self.max_slice_bytes {
            return Err(Error::TooLarge {
                path: path.to_path_buf(),
                width: u64::from(width),
                height: u64::from(height),
                limit: self.max_slice_bytes,
            });
        }
        if width == 0 || height == 0 {
            return Err(Error::decode(
                path,
                format!("image is {width} x {height} pixels"),
            ));
        }
        Ok(())
    }

    /// Opens `path` with a read buffer of `buffer` bytes, notes its length and tells its
    /// format from its first bytes.
    fn open(&mut self, path: &Path, buffer: usize) -> Result<(Input, Format)> {
        let (file, len) = open_regular(path)?;
        self.file_len = len;
        let mut input = Input::with_buffer(file, buffer);
        let head = input
            .fill_buf()
            .map_err(|e| Error::io("reading", path, e))?;
        let mut header = [0u8; 8];
        let n = head.len().min(8);
        header[..n].copy_from_slice(&head[..n]);
        let format = sniff(path, &header[..n])?;
        if let Some(ifd) = self.page_ifd {
            // A page of a multi-page TIFF: its directory offset goes where the header points
            // at the first directory, and the page reads as the file's first image.
            let bad = || Error::decode(path, "not a TIFF any more (read as a multi-page TIFF)");
            match header {
                [b'I', b'I', 42, 0, ..] => {
                    let ifd = u32::try_from(ifd).map_err(|_| bad())?;
                    input.set_patch(4, &ifd.to_le_bytes());
                }
                [b'M', b'M', 0, 42, ..] => {
                    let ifd = u32::try_from(ifd).map_err(|_| bad())?;
                    input.set_patch(4, &ifd.to_be_bytes());
                }
                [b'I', b'I', 43, 0, ..] => input.set_patch(8, &ifd.to_le_bytes()),
                [b'M', b'M', 0, 43, ..] => input.set_patch(8, &ifd.to_be_bytes()),
                _ => return Err(bad()),
            }
        }
        Ok((input, format))
    }

    fn run(
        &mut self,
        path: &Path,
        expected: Option<&SliceInfo>,
        out: Option<&mut Slice>,
    ) -> Result<SliceInfo> {
        let (input, format) = self.open(path, super::input::CHUNK)?;
        if self.page_ifd.is_none() {
            self.bytes_read += self.file_len;
        }
        let info = match format {
            Format::Tiff => self.tiff(path, input, expected, out),
            Format::Jpeg => self.jpeg(path, input, expected, out),
            _ => self.other(path, format, input, expected, out),
        }?;
        if self.page_ifd.is_some() {
            // A page: its samples, not the whole file, are what was read.
            self.bytes_read += out_len(info.width, info.height, info.sample_type) as u64;
        }
        Ok(info)
    }

    /// Opens a TIFF and reads what every use needs from its header, checking the size limit
    /// and `expected` before anything large is allocated.
    fn tiff_header(
        &self,
        path: &Path,
        input: Input,
        expected: Option<&SliceInfo>,
    ) -> Result<(TiffDecoder<Input>, TiffHeader)> {
        let mut limits = tiff::decoder::Limits::default();
        let max = usize::try_from(self.max_slice_bytes).unwrap_or(usize::MAX);
        limits.decoding_buffer_size = max;
        limits.intermediate_buffer_size = max;
        let mut dec = TiffDecoder::new(input)
            .map_err(|e| Error::decode(path, e))?
            .with_limits(limits);
        let (width, height) = dec.dimensions().map_err(|e| Error::decode(path, e))?;
        let color = dec.colortype().map_err(|e| Error::decode(path, e))?;
        let buffer = dec
            .image_buffer_layout()
            .map_err(|e| Error::decode(path, e))?;
        let (channels, depth) = match color {
            tiff::ColorType::Gray(d) => (1usize, d),
            tiff::ColorType::GrayA(d) => (2, d),
            tiff::ColorType::RGB(d) => (3, d),
            tiff::ColorType::RGBA(d) => (4, d),
            // The tiff crate reports gray with an extra (alpha) sample as two-sample Multiband.
            tiff::ColorType::Multiband {
                bit_depth: d,
                num_samples: 2,
            } => (2, d),
            other => {
                return Err(Error::unsupported(
                    path,
                    format!("TIFF colour type {other:?} (only gray, gray+alpha, RGB and RGBA)"),
                ));
            }
        };
        let sample_type = match (buffer.sample_type, depth) {
            (Some(DecodingSampleType::U8), 8) => SampleType::U8,
            (Some(DecodingSampleType::U16), 16) => SampleType::U16,
            (Some(DecodingSampleType::F32), 32) if channels == 1 => SampleType::F32,
            (kind, bits) => {
                let kind = kind.map_or_else(|| format!("{bits}-bit"), |k| format!("{k:?}"));
                return Err(Error::unsupported(
                    path,
                    format!(
                        "{kind} samples with {channels} channel(s): lodcache reads unsigned \
                         8/16-bit gray or colour and 32-bit float gray"
                    ),
                ));
            }
        };
        let planar = buffer.planes > 1;
        let layout = match (channels, planar) {
            // Gray, or planar gray + alpha whose first plane is the gray one.
            (1, _) | (2, true) => Layout::Gray,
            (n, false) => Layout::Interleaved(n),
            (n, true) => Layout::Planar(n),
        };
        if planar {
            // tiff 0.11 takes the bottom padding of a planar tile from its index counted over
            // all planes, so the bottom tiles of every plane after the first overrun the buffer
            // (an assertion panics) unless the tile height divides the image height.
            let tile_h: Option<u32> = dec
                .find_tag_unsigned(tiff::tags::Tag::TileLength)
                .map_err(|e| Error::decode(path, e))?;
            if let Some(th) = tile_h.filter(|&th| th > 0 && height % th != 0) {
                return Err(Error::unsupported(
                    path,
                    format!(
                        "planar TIFF in tiles of height {th} that do not divide the image \
                         height {height} (store it interleaved, in strips, or with whole tiles)"
                    ),
                ));
            }
        }
        let info = SliceInfo {
            width,
            height,
            sample_type,
        };
        self.check_limit(path, width, height, channels * sample_type.bytes())?;
        check_expected(path, info, expected)?;
        let compression: u16 = dec
            .find_tag_unsigned(tiff::tags::Tag::Compression)
            .map_err(|e| Error::decode(path, e))?
            .unwrap_or(1);
        let header = TiffHeader {
            info,
            channels,
            layout,
            compression,
            buffer_len: if planar {
                buffer.complete_len
            } else {
                buffer.len
            },
        };
        Ok((dec, header))
    }

    fn tiff(
        &mut self,
        path: &Path,
        input: Input,
        expected: Option<&SliceInfo>,
        out: Option<&mut Slice>,
    ) -> Result<SliceInfo> {
        let (mut dec, header) = self.tiff_header(path, input, expected)?;
        let TiffHeader {
            info,
            channels,
            layout,
            compression,
            buffer_len: need,
            ..
        } = header;
        let SliceInfo {
            width,
            height,
            sample_type,
        } = info;
        let Some(out) = out else { return Ok(info) };
        // Uncompressed samples must all be in the file: a truncated file (or a header that
        // lies) is refused before the output buffer is allocated.
        let raw = u64::from(width) * u64::from(height) * (channels * sample_type.bytes()) as u64;
        if compression == 1 && raw > self.file_len {
            return Err(Error::decode(
                path,
                format!(
                    "truncated: an uncompressed {width} x {height} image needs {raw} bytes of \
                     samples but the file has {} bytes",
                    self.file_len
                ),
            ));
        }
        let method = match compression {
            8 | 32946 => Some(("deflate", DEFLATE_MAX_RATIO)),
            5 => Some(("LZW", LZW_MAX_RATIO)),
            32773 => Some(("PackBits", PACKBITS_MAX_RATIO)),
            _ => None,
        };
        if let Some((name, ratio)) = method {
            check_expansion(path, name, ratio, raw, self.file_len)?;
        }
        if compression != 1 {
            chunks_within_file(&mut dec, path, self.file_len)?;
        }

        let out_bytes = out_len(width, height, sample_type);
        let direct = layout == Layout::Gray && need == out_bytes;
        let want = width as usize * height as usize * channels * sample_type.bytes();
        if !direct && need < want {
            return Err(Error::decode(
                path,
                format!("TIFF layout holds {need} bytes, {want} expected"),
            ));
        }
        // The output, the decoder's buffer of every channel, row buffers and, for JPEG in
        // TIFF, the compressed chunk, its decoded copy and the JPEG decoder's coefficients.
        let row = u64::from(width) * (channels * sample_type.bytes()) as u64;
        let mut working = out_bytes as u64 + 4 * row + DECODE_OVERHEAD;
        if !direct {
            working += need as u64;
        }
        if compression == 7 {
            working += self.file_len + 3 * need as u64;
        }
        let _reserved = reserve_decode_memory(path, working)?;

        out.reshape(width, height, sample_type);
        let read = |dec: &mut TiffDecoder<_>, buf: &mut [u8]| {
            dec.read_image_bytes(buf)
                .map_err(|e| Error::decode(path, e))
        };
        if direct {
            let bytes = out.pixels_mut().as_bytes_mut();
            read(&mut dec, bytes)?;
            return Ok(info);
        }
        let mut scratch = scratch(need);
        read(&mut dec, &mut scratch)?;
        convert(&scratch[..want], layout, out);
        Ok(info)
    }

    fn other(
        &mut self,
        path: &Path,
        format: Format,
        input: Input,
        expected: Option<&SliceInfo>,
        out: Option<&mut Slice>,
    ) -> Result<SliceInfo> {
        let mut limits = image::Limits::default();
        limits.max_alloc = Some(self.max_slice_bytes.saturating_mul(2));
        let cursor = input;
        let err = |e: image::ImageError| Error::decode(path, e);
        // Palette BMPs are read as indices and mapped through a luma table here, which costs
        // what reading an 8-bit gray file costs (no expansion to RGB and back).
        let mut palette: Option<[u8; 256]> = None;
        let mut bmp_rows: Option<(u64, bool, File)> = None;
        let mut dec: Box<dyn ImageDecoder> = match format {
            Format::Png => Box::new(image::codecs::png::PngDecoder::new(cursor).map_err(err)?),
            Format::Bmp => {
                // image's indexed mode is only right for uncompressed 8-bit rows: it copies
                // packed 1/2/4-bit rows byte for byte and panics on RLE data. Other palette
                // BMPs are expanded to RGB by image and converted to luma below (same values).
                let mut cursor = cursor;
                let head = cursor
                    .fill_buf()
                    .map_err(|e| Error::io("reading", path, e))?;
                // An uncompressed BMP shorter than its rows is refused before the slice
                // buffer is allocated (a 1 KB file may claim gigabytes); reading the header
                // alone (probing) still works.
                if out.is_some()
                    && let Some(need) = bmp_uncompressed_len(head)
                    && need > self.file_len
                {
                    return Err(Error::decode(
                        path,
                        format!(
                            "truncated: its header needs {need} bytes of rows but the file has {}",
                            self.file_len
                        ),
                    ));
                }
                let plain_8_bit = bmp_is_plain_8_bit(head);
                if plain_8_bit && let Some((offset, top_down)) = bmp8_rows(head) {
                    // The rows are read through the same open file (not by its name again).
                    let file = cursor
                        .file()
                        .try_clone()
                        .map_err(|e| Error::io("opening", path, e))?;
                    bmp_rows = Some((offset, top_down, file));
                }
                let mut d = image::codecs::bmp::BmpDecoder::new(cursor).map_err(err)?;
                let indexed = d.get_palette().filter(|_| plain_8_bit);
                if let Some(p) = indexed {
                    let mut lut = [0u8; 256];
                    let mut identity = true;
                    for (i, rgb) in p.iter().take(256).enumerate() {
                        let v = luma(rgb[0].into(), rgb[1].into(), rgb[2].into()) as u8;
                        lut[i] = v;
                        identity &= usize::from(v) == i;
                    }
                    identity &=
                        p.len() >= 256 || p.iter().enumerate().all(|(i, c)| usize::from(c[0]) == i);
                    if !identity {
                        palette = Some(lut);
                    }
                    d.set_indexed_color(true);
                }
                Box::new(d)
            }
            Format::Tiff | Format::Jpeg => {
                unreachable!("TIFF and JPEG are decoded by tiff() and jpeg()")
            }
        };
        let (width, height) = dec.dimensions();
        use image::ColorType as C;
        let (layout, sample_type, channels) = match dec.color_type() {
            C::L8 => (Layout::Gray, SampleType::U8, 1),
            C::L16 => (Layout::Gray, SampleType::U16, 1),
            C::La8 => (Layout::Interleaved(2), SampleType::U8, 2),
            C::La16 => (Layout::Interleaved(2), SampleType::U16, 2),
            C::Rgb8 => (Layout::Interleaved(3), SampleType::U8, 3),
            C::Rgb16 => (Layout::Interleaved(3), SampleType::U16, 3),
            C::Rgba8 => (Layout::Interleaved(4), SampleType::U8, 4),
            C::Rgba16 => (Layout::Interleaved(4), SampleType::U16, 4),
            other => {
                return Err(Error::unsupported(
                    path,
                    format!("{format:?} colour type {other:?}"),
                ));
            }
        };
        self.check_limit(path, width, height, channels * sample_type.bytes())?;
        let info = SliceInfo {
            width,
            height,
            sample_type,
        };
        check_expected(path, info, expected)?;
        let Some(out) = out else { return Ok(info) };
        dec.set_limits(limits).map_err(err)?;
        let total = usize::try_from(dec.total_bytes()).unwrap_or(usize::MAX);
        let want = width as usize * height as usize * channels * sample_type.bytes();
        if total != want {
            return Err(Error::decode(
                path,
                format!("decoder wants {total} bytes, {want} expected"),
            ));
        }
        if format == Format::Png {
            // Every PNG is deflate-compressed: a file too small to inflate to its rows is cut
            // or lies about its size, and is refused before anything is allocated.
            check_expansion(
                path,
                "deflate",
                DEFLATE_MAX_RATIO,
                want as u64,
                self.file_len,
            )?;
        }
        // The output, the decoder's buffer of every channel and a few of its rows.
        let out_bytes = out_len(width, height, sample_type);
        let row = u64::from(width) * (channels * sample_type.bytes()) as u64;
        let mut working = out_bytes as u64 + 4 * row + DECODE_OVERHEAD;
        if layout != Layout::Gray {
            working += want as u64;
        }
        let _reserved = reserve_decode_memory(path, working)?;
        out.reshape(width, height, sample_type);
        if layout == Layout::Gray {
            let bytes = out.pixels_mut().as_bytes_mut();
            match (bmp_rows, sample_type) {
                // Uncompressed 8-bit BMP: the rows are read straight into the output, which
                // costs what an 8-bit TIFF costs (image's decoder copies each row twice).
                (Some((offset, top_down, file)), SampleType::U8) => {
                    drop(dec);
                    read_bmp8(
                        path,
                        file,
                        (offset, top_down),
                        width,
                        height,
                        self.file_len,
                        bytes,
                    )?;
                }
                _ => dec.read_image_boxed(bytes).map_err(err)?,
            }
            if let (Some(lut), Pixels::U8(v)) = (palette, out.pixels_mut()) {
                for p in v.iter_mut() {
                    *p = lut[usize::from(*p)];
                }
            }
            return Ok(info);
        }
        let mut scratch = scratch(want);
        dec.read_image_boxed(&mut scratch).map_err(err)?;
        convert(&scratch, layout, out);
        Ok(info)
    }

    /// Decodes a JPEG with `zune-jpeg` in strict mode, after checking that the file is whole
    /// (see [`super::jpeg`]): a cut file, or one whose scans end early or hold corrupt data, is
    /// an error, never a slice filled in with gray.
    fn jpeg(
        &mut self,
        path: &Path,
        mut input: Input,
        expected: Option<&SliceInfo>,
        out: Option<&mut Slice>,
    ) -> Result<SliceInfo> {
        use zune_jpeg::zune_core::bytestream::ZCursor;
        use zune_jpeg::zune_core::colorspace::ColorSpace as Zcs;
        use zune_jpeg::zune_core::options::DecoderOptions;

        let frame = jpeg::read_frame(&mut input).map_err(|e| match e {
            jpeg::HeaderError::Io(e) => Error::io("reading", path, e),
            jpeg::HeaderError::Format(why) => Error::decode(path, why),
        })?;
        // Colour is decoded to RGB (RGBA for four components at most), then to luma.
        let channels = frame.components.clamp(1, 4) as usize;
        self.check_limit(path, frame.width, frame.height, channels)?;
        let info = SliceInfo {
            width: frame.width,
            height: frame.height,
            sample_type: SampleType::U8,
        };
        check_expected(path, info, expected)?;
        // The file is decoded from memory: reserve it, and for a decode also the output, the
        // decoder's buffer of every channel and its own coefficients or rows.
        let file_len = self.file_len;
        let pixels = u64::from(frame.width) * u64::from(frame.height);
        let mut working = 2 * file_len + DECODE_OVERHEAD;
        if out.is_some() {
            working += pixels + frame.working_bytes();
            if channels > 1 {
                working += pixels * channels as u64;
            }
        }
        let _reserved = reserve_decode_memory(path, working)?;
        let mut data = Vec::new();
        input
            .seek(SeekFrom::Start(0))
            .and_then(|_| (&mut input).take(file_len).read_to_end(&mut data))
            .map_err(|e| Error::io("reading", path, e))?;
        jpeg::check_complete(&data).map_err(|why| Error::decode(path, why))?;

        let err = |e: zune_jpeg::errors::DecodeErrors| Error::decode(path, e);
        let options = DecoderOptions::default()
            .set_strict_mode(true)
            .set_max_width(usize::MAX)
            .set_max_height(usize::MAX);
        let mut dec = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(&data[..]), options);
        dec.decode_headers().map_err(err)?;
        let (w, h) = dec.dimensions().unwrap_or((0, 0));
        if (w, h) != (frame.width as usize, frame.height as usize) {
            return Err(Error::decode(
                path,
                format!(
                    "corrupt headers: the frame says {} x {} pixels, the decoder {w} x {h}",
                    frame.width, frame.height
                ),
            ));
        }
        let wanted = match dec.input_colorspace() {
            Some(c @ (Zcs::Luma | Zcs::LumaA | Zcs::RGB | Zcs::RGBA)) => c,
            // YCbCr, CMYK, YCCK: to RGB, as image does.
            _ => Zcs::RGB,
        };
        dec.set_options(dec.options().jpeg_set_out_colorspace(wanted));
        let layout = match wanted.num_components() {
            1 => Layout::Gray,
            n => Layout::Interleaved(n),
        };
        let Some(out) = out else { return Ok(info) };
        out.reshape(info.width, info.height, SampleType::U8);
        if layout == Layout::Gray {
            dec.decode_into(out.pixels_mut().as_bytes_mut())
                .map_err(err)?;
            return Ok(info);
        }
        let all = dec
            .output_buffer_size()
            .ok_or_else(|| Error::decode(path, "no output size after the headers"))?;
        let mut scratch = scratch(all);
        dec.decode_into(&mut scratch).map_err(err)?;
        convert(&scratch, layout, out);
        Ok(info)
    }
}

/// The most a deflate stream expands: 258 bytes from a 1-bit length and a 1-bit distance.
const DEFLATE_MAX_RATIO: u64 = 1032;
/// The most a TIFF LZW stream expands: no code shorter than 9 bits stands for more than
/// 4096 bytes.
const LZW_MAX_RATIO: u64 = 4096;
/// The most PackBits expands: 2 bytes stand for at most 128.
const PACKBITS_MAX_RATIO: u64 = 64;

/// Refuses a compressed file too small to hold `decoded` bytes of samples even at its
/// method's best ratio (a cut file, or a header that lies), before anything is allocated.
fn check_expansion(
    path: &Path,
    method: &str,
    ratio: u64,
    decoded: u64,
    file_len: u64,
) -> Result<()> {
    // Headers and stream framing take bytes of the file too: the bound stays generous.
    let most = file_len.saturating_mul(ratio).saturating_add(64 << 10);
    if decoded > most {
        return Err(Error::decode(
            path,
            format!(
                "truncated or corrupt: its header claims {decoded} bytes of samples, but \
                 {file_len} bytes of {method} data expand to at most {most}"
            ),
        ));
    }
    Ok(())
}

/// Refuses a TIFF whose strips or tiles reach past the end of the file (a cut file).
fn chunks_within_file(dec: &mut TiffDecoder<Input>, path: &Path, file_len: u64) -> Result<()> {
    use tiff::tags::Tag;
    let err = |e: tiff::TiffError| Error::decode(path, e);
    for (offsets, counts, what) in [
        (Tag::StripOffsets, Tag::StripByteCounts, "strip"),
        (Tag::TileOffsets, Tag::TileByteCounts, "tile"),
    ] {
        let (Some(offsets), Some(counts)) = (
            dec.find_tag_unsigned_vec::<u64>(offsets).map_err(err)?,
            dec.find_tag_unsigned_vec::<u64>(counts).map_err(err)?,
        ) else {
            continue;
        };
        for (i, (&offset, &count)) in offsets.iter().zip(&counts).enumerate() {
            let end = offset.saturating_add(count);
            if end > file_len {
                return Err(Error::decode(
                    path,
                    format!(
                        "truncated: {what} {i} ends at byte {end} but the file has {file_len} bytes"
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Bytes of a `width` x `height` slice of `ty` (within the slice limit, so it fits a usize).
fn out_len(width: u32, height: u32, ty: SampleType) -> usize {
    width as usize * height as usize * ty.bytes()
}

/// Whether a BMP stores one uncompressed byte per pixel (bit count 8, BI_RGB), read from the
/// file's first bytes: the info header size at offset 14, then bit count and compression
/// (absent in the 12-byte OS/2 core header, which has no compression).
fn bmp_is_plain_8_bit(file: &[u8]) -> bool {
    let u16_at = |at: usize| {
        file.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        file.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match u32_at(14) {
        Some(12) => u16_at(24) == Some(8),
        Some(_) => u16_at(28) == Some(8) && u32_at(30) == Some(0),
        None => false,
    }
}

/// The bytes an uncompressed BMP needs (pixel data offset + rows padded to 4 bytes), from its
/// first bytes; `None` for compressed (RLE, JPEG, PNG) BMPs, whose size cannot be told this
/// way.
fn bmp_uncompressed_len(head: &[u8]) -> Option<u64> {
    let u16_at = |at: usize| {
        head.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        head.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let offset = u64::from(u32_at(10)?);
    let (width, height, bits) = match u32_at(14)? {
        12 => (
            u64::from(u16_at(18)?),
            u64::from(u16_at(20)?),
            u64::from(u16_at(24)?),
        ),
        _ => {
            // BI_RGB (0) and BI_BITFIELDS (3, 6) store rows as they are.
            if !matches!(u32_at(30)?, 0 | 3 | 6) {
                return None;
            }
            (
                u64::from((u32_at(18)? as i32).unsigned_abs()),
                u64::from((u32_at(22)? as i32).unsigned_abs()),
                u64::from(u16_at(28)?),
            )
        }
    };
    let stride = (width * bits).div_ceil(32) * 4;
    Some(offset.saturating_add(stride.saturating_mul(height)))
}

/// Width and height of a BMP from its first bytes.
fn bmp_size(head: &[u8]) -> Option<(u32, u32)> {
    let u16_at = |at: usize| {
        head.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        head.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    match u32_at(14)? {
        12 => Some((u32::from(u16_at(18)?), u32::from(u16_at(20)?))),
        _ => Some((
            (u32_at(18)? as i32).unsigned_abs(),
            (u32_at(22)? as i32).unsigned_abs(),
        )),
    }
}

/// Whether an 8-bit BMP's palette, from its first bytes, maps every index to the gray of the
/// same value: 256 entries (B, G, R and a fourth byte, or B, G, R in the OS/2 core header),
/// entry i being (i, i, i). Then its indices are its samples.
fn bmp_gray_ramp(head: &[u8]) -> bool {
    let u32_at = |at: usize| {
        head.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let Some(header) = u32_at(14) else {
        return false;
    };
    let (entry, colors) = match header {
        12 => (3, 256),
        _ => (4, u32_at(46).map_or(0, |c| if c == 0 { 256 } else { c })),
    };
    if colors != 256 {
        return false;
    }
    let start = 14 + header as usize;
    let Some(table) = head.get(start..start + 256 * entry) else {
        return false;
    };
    table
        .chunks_exact(entry)
        .enumerate()
        .all(|(i, c)| c[..3].iter().all(|&v| usize::from(v) == i))
}

/// Where the rows of a BMP start and whether they are stored top-down, from its first bytes.
fn bmp8_rows(head: &[u8]) -> Option<(u64, bool)> {
    let u32_at = |at: usize| {
        head.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let offset = u64::from(u32_at(10)?);
    let top_down = match u32_at(14)? {
        12 => false,
        _ => (u32_at(22)? as i32) < 0,
    };
    Some((offset, top_down))
}

/// Reads the rows of an uncompressed 8-bit BMP (4-byte aligned, bottom-up unless `top_down`)
/// into `dst`, `width` bytes a row.
fn read_bmp8(
    path: &Path,
    file: File,
    (offset, top_down): (u64, bool),
    width: u32,
    height: u32,
    file_len: u64,
    dst: &mut [u8],
) -> Result<()> {
    let stride = (u64::from(width) + 3) & !3;
    let need = offset + stride * u64::from(height);
    if need > file_len {
        return Err(Error::decode(
            path,
            format!(
                "truncated: {width} x {height} 8-bit rows from offset {offset} need {need} bytes \
                 but the file has {file_len}"
            ),
        ));
    }
    let mut input = Input::new(file);
    input
        .seek(SeekFrom::Start(offset))
        .map_err(|e| Error::io("reading", path, e))?;
    let (w, h) = (width as usize, height as usize);
    let pad = (stride - u64::from(width)) as usize;
    let mut skip = [0u8; 3];
    for i in 0..h {
        let row = if top_down { i } else { h - 1 - i };
        input
            .read_exact(&mut dst[row * w..(row + 1) * w])
            .and_then(|()| input.read_exact(&mut skip[..pad]))
            .map_err(|e| Error::io("reading", path, e))?;
    }
    Ok(())
}

/// Opens `path` for reading without blocking (a FIFO put in a slice's place must not hang the
/// reader) and refuses anything but a regular file, asking the opened handle (so the answer
/// is about the file that is read, even if the name was swapped since the stack was found).
/// Returns the file and its length.
pub(super) fn open_regular(path: &Path) -> Result<(File, u64)> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        // Reads of a regular file never block; the flag only matters for what is refused.
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options
        .open(path)
        .map_err(|e| Error::io("opening", path, e))?;
    let meta = file.metadata().map_err(|e| Error::io("reading", path, e))?;
    if !meta.is_file() {
        return Err(Error::BadSliceEntry {
            path: path.to_path_buf(),
            problem: format!("is {}", super::discover::kind(&meta.file_type())),
        });
    }
    Ok((file, meta.len()))
}

/// A zeroed buffer of `bytes` bytes for the decoders that write all channels (allocated per
/// decode, inside its reservation, and freed with it).
fn scratch(bytes: usize) -> Vec<u8> {
    vec![0; bytes]
}

/// Converts multi-channel samples (native byte order) into `out`'s gray samples.
fn convert(bytes: &[u8], layout: Layout, out: &mut Slice) {
    match out.pixels_mut() {
        Pixels::U8(v) => to_gray(bytes, layout, v),
        Pixels::U16(v) => to_gray::<u16>(bytemuck::cast_slice(bytes), layout, v),
        // Float is only accepted as one gray channel, decoded straight into the output.
        Pixels::F32(v) => {
            let n = v.len() * 4;
            v.copy_from_slice(bytemuck::cast_slice(&bytes[..n]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn luma_of_gray_is_the_gray_value() {
        for v in [0u64, 1, 127, 128, 255, 4095, 32768, 65535] {
            assert_eq!(luma(v, v, v), v);
        }
        assert_eq!(luma(255, 0, 0), 54);
        assert_eq!(luma(0, 255, 0), 182);
        assert_eq!(luma(0, 0, 255), 18);
    }

    #[test]
    fn sniffing_names_short_and_unknown_files() {
        let p = Path::new("x.tif");
        assert!(matches!(sniff(p, b"II*\0"), Ok(Format::Tiff)));
        assert!(matches!(sniff(p, b"MM\0*"), Ok(Format::Tiff)));
        assert!(sniff(p, b"").unwrap_err().to_string().contains("x.tif"));
        assert!(
            sniff(p, b"hello world")
                .unwrap_err()
                .to_string()
                .contains("unknown")
        );
    }
}
