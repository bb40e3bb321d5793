//! `PairReducer::reduce_pair`: slice `z` of level 1 made straight from source files `2z` and
//! `2z + 1`. Plain strip TIFFs (uncompressed, BlackIsZero, one sample, no predictor, no tiles)
//! are read band by band by rows; everything else is decoded whole. Either way the result must
//! equal `kernel::reduce_slices` of the decoded slices, and errors must name the file.
//!
//! The TIFFs are written by a small writer in this file, so that byte order, sample type,
//! strip size, strip placement (out of row order, with gaps), tag types and the odd tag that
//! sends a file down the whole-decode path are all under the test's control.

mod common;

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};

use common::{Rng, tiff_plain, tiff_with};
use lodcache::{PairReducer, Pixels, SampleType, Slice, Stack, kernel};

// ---------------------------------------------------------------------------------------------
// Random samples
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    U8,
    U16,
    F32,
}

impl Kind {
    fn bytes(self) -> usize {
        match self {
            Kind::U8 => 1,
            Kind::U16 => 2,
            Kind::F32 => 4,
        }
    }

    fn sample_type(self) -> SampleType {
        match self {
            Kind::U8 => SampleType::U8,
            Kind::U16 => SampleType::U16,
            Kind::F32 => SampleType::F32,
        }
    }
}

/// Samples of one slice, row-major.
#[derive(Clone, Debug, PartialEq)]
enum Data {
    U8(Vec<u8>),
    U16(Vec<u16>),
    F32(Vec<f32>),
}

impl Data {
    fn len(&self) -> usize {
        match self {
            Data::U8(v) => v.len(),
            Data::U16(v) => v.len(),
            Data::F32(v) => v.len(),
        }
    }

    fn kind(&self) -> Kind {
        match self {
            Data::U8(_) => Kind::U8,
            Data::U16(_) => Kind::U16,
            Data::F32(_) => Kind::F32,
        }
    }

    fn to_slice(&self, w: u32, h: u32) -> Slice {
        let pixels = match self {
            Data::U8(v) => Pixels::U8(v.clone()),
            Data::U16(v) => Pixels::U16(v.clone()),
            Data::F32(v) => Pixels::F32(v.clone()),
        };
        Slice::new(w, h, pixels).unwrap()
    }

    /// Sample `i` as bytes in the given byte order.
    fn sample_bytes(&self, i: usize, big_endian: bool, out: &mut Vec<u8>) {
        match self {
            Data::U8(v) => out.push(v[i]),
            Data::U16(v) if big_endian => out.extend_from_slice(&v[i].to_be_bytes()),
            Data::U16(v) => out.extend_from_slice(&v[i].to_le_bytes()),
            Data::F32(v) if big_endian => out.extend_from_slice(&v[i].to_be_bytes()),
            Data::F32(v) => out.extend_from_slice(&v[i].to_le_bytes()),
        }
    }
}

/// `n` samples: mostly uniform, with runs of the extremes (0, 1, the maximum and just below
/// it) so that sums near the top of the range and both rounding paths are hit. Floats are
/// small dyadic fractions, positive and negative, so that every sum is exact in `f64` whatever
/// the order of addition.
fn random_data(kind: Kind, n: usize, rng: &mut Rng) -> Data {
    match kind {
        Kind::U8 => Data::U8(
            (0..n)
                .map(|_| match rng.below_u64(8) {
                    0 => 255 - rng.below_u64(3) as u8,
                    1 => rng.below_u64(3) as u8,
                    _ => rng.next() as u8,
                })
                .collect(),
        ),
        Kind::U16 => Data::U16(
            (0..n)
                .map(|_| match rng.below_u64(6) {
                    0 | 1 => u16::MAX - rng.below_u64(4) as u16,
                    2 => rng.below_u64(3) as u16,
                    _ => rng.next() as u16,
                })
                .collect(),
        ),
        Kind::F32 => Data::F32(
            (0..n)
                .map(|_| match rng.below_u64(5) {
                    0 => (rng.below_u64(1 << 20) as f32) * 16.0,
                    1 => -(rng.below_u64(1 << 16) as f32) / 1024.0,
                    _ => (rng.below_u64(1 << 22) as f32 - (1 << 21) as f32) / 64.0,
                })
                .collect(),
        ),
    }
}

/// The level-1 contract written the slow, obvious way, on the written samples.
fn oracle(a: &Data, b: Option<&Data>, w: usize, h: usize) -> Data {
    let (ow, oh) = (w / 2, h / 2);
    let taps = |x: usize, y: usize| {
        [(0, 0), (1, 0), (0, 1), (1, 1)].map(|(dx, dy)| (2 * y + dy) * w + 2 * x + dx)
    };
    macro_rules! ints {
        ($va:expr, $vb:expr, $t:ty) => {{
            let mut out = Vec::with_capacity(ow * oh);
            for y in 0..oh {
                for x in 0..ow {
                    let mut sum = 0u64;
                    for i in taps(x, y) {
                        sum += u64::from($va[i]);
                        if let Some(vb) = $vb {
                            sum += u64::from(vb[i]);
                        }
                    }
                    let mean = if $vb.is_some() {
                        (sum + 4) >> 3
                    } else {
                        (sum + 2) >> 2
                    };
                    out.push(<$t>::try_from(mean).unwrap());
                }
            }
            out
        }};
    }
    match (a, b) {
        (Data::U8(va), None) => Data::U8(ints!(va, None::<&Vec<u8>>, u8)),
        (Data::U8(va), Some(Data::U8(vb))) => Data::U8(ints!(va, Some(vb), u8)),
        (Data::U16(va), None) => Data::U16(ints!(va, None::<&Vec<u16>>, u16)),
        (Data::U16(va), Some(Data::U16(vb))) => Data::U16(ints!(va, Some(vb), u16)),
        (Data::F32(va), vb) => {
            let vb = match vb {
                Some(Data::F32(v)) => Some(v),
                None => None,
                _ => panic!("mixed oracle inputs"),
            };
            let mut out = Vec::with_capacity(ow * oh);
            for y in 0..oh {
                for x in 0..ow {
                    let mut sum = 0f64;
                    for i in taps(x, y) {
                        sum += f64::from(va[i]);
                        if let Some(vb) = vb {
                            sum += f64::from(vb[i]);
                        }
                    }
                    let scale = if vb.is_some() { 0.125 } else { 0.25 };
                    out.push((sum * scale) as f32);
                }
            }
            Data::F32(out)
        }
        _ => panic!("mixed oracle inputs"),
    }
}

// ---------------------------------------------------------------------------------------------
// A small TIFF writer
// ---------------------------------------------------------------------------------------------

const SHORT: u16 = 3;
const LONG: u16 = 4;
const LONG8: u16 = 16;

/// How to write one gray TIFF.
#[derive(Clone, Debug)]
struct Tif {
    big_endian: bool,
    /// BigTIFF (version 43, 8-byte offsets) instead of classic TIFF.
    bigtiff: bool,
    /// The RowsPerStrip tag; `None` leaves it out (one strip).
    rows_per_strip: Option<u32>,
    /// Square tiles of this side (a multiple of 16) instead of strips.
    tile: Option<u32>,
    /// The PhotometricInterpretation tag; `None` leaves it out.
    photometric: Option<u16>,
    /// Writes Compression 1; `false` leaves the tag out (no compression by default).
    compression_tag: bool,
    predictor: Option<u16>,
    /// Writes SampleFormat 1 for integer samples too (floats always get 3).
    sample_format_tag: bool,
    /// SHORT instead of LONG for the tags whose values fit in 16 bits.
    short_tags: bool,
    /// The IFD right after the header, before the samples (else after them).
    ifd_first: bool,
    /// Seed of the strip placement: 0 puts the strips in row order one after the other;
    /// anything else cuts them into runs of 1 to 3 adjacent strips, shuffles the runs and puts
    /// 0 to 16 junk bytes before each.
    scramble: u64,
    /// Added to the byte count of the middle strip (negative: the count says fewer bytes than
    /// the strip holds).
    count_delta: i64,
    /// A second, alpha sample after each gray one (SamplesPerPixel 2, ExtraSamples 2).
    alpha: bool,
}

impl Tif {
    fn plain() -> Tif {
        Tif {
            big_endian: false,
            bigtiff: false,
            rows_per_strip: Some(3),
            tile: None,
            photometric: Some(1),
            compression_tag: true,
            predictor: None,
            sample_format_tag: false,
            short_tags: false,
            ifd_first: false,
            scramble: 1,
            count_delta: 0,
            alpha: false,
        }
    }
}

/// What [`Tif::encode`] produced.
struct Encoded {
    bytes: Vec<u8>,
    /// Where the sample data region (strips and gaps) starts and ends in the file.
    data: std::ops::Range<usize>,
}

struct Entry {
    tag: u16,
    ty: u16,
    values: Vec<u64>,
}

fn entry(tag: u16, ty: u16, values: Vec<u64>) -> Entry {
    Entry { tag, ty, values }
}

impl Tif {
    fn put(&self, out: &mut Vec<u8>, v: u64, size: usize) {
        let bytes = v.to_be_bytes();
        let field = &bytes[8 - size..];
        if self.big_endian {
            out.extend_from_slice(field);
        } else {
            out.extend(field.iter().rev());
        }
    }

    fn type_size(ty: u16) -> usize {
        match ty {
            SHORT => 2,
            LONG => 4,
            LONG8 => 8,
            _ => unreachable!(),
        }
    }

    fn field_size(&self) -> usize {
        if self.bigtiff { 8 } else { 4 }
    }

    fn header_len(&self) -> usize {
        if self.bigtiff { 16 } else { 8 }
    }

    /// Bytes of an IFD with these entries, its out-of-line values included.
    fn ifd_len(&self, entries: &[Entry]) -> usize {
        let (count, entry, next) = if self.bigtiff { (8, 20, 8) } else { (2, 12, 4) };
        let mut len = count + entries.len() * entry + next;
        for e in entries {
            let n = e.values.len() * Tif::type_size(e.ty);
            if n > self.field_size() {
                len += n + (n & 1);
            }
        }
        len
    }

    fn write_ifd(&self, out: &mut Vec<u8>, entries: &[Entry]) {
        assert_eq!(out.len() % 2, 0, "IFDs start on a word boundary");
        let start = out.len();
        let (count_size, entry_size, next_size) =
            if self.bigtiff { (8, 20, 8) } else { (2, 12, 4) };
        let mut extra_at = start + count_size + entries.len() * entry_size + next_size;
        let mut extra = Vec::new();
        self.put(out, entries.len() as u64, count_size);
        for e in entries {
            let size = Tif::type_size(e.ty);
            let mut value = Vec::new();
            for &v in &e.values {
                self.put(&mut value, v, size);
            }
            self.put(out, u64::from(e.tag), 2);
            self.put(out, u64::from(e.ty), 2);
            self.put(out, e.values.len() as u64, self.field_size());
            if value.len() <= self.field_size() {
                value.resize(self.field_size(), 0);
                out.extend_from_slice(&value);
            } else {
                self.put(out, extra_at as u64, self.field_size());
                if value.len() % 2 == 1 {
                    value.push(0);
                }
                extra_at += value.len();
                extra.extend_from_slice(&value);
            }
        }
        self.put(out, 0, next_size);
        out.extend_from_slice(&extra);
        assert_eq!(out.len() - start, self.ifd_len(entries));
    }

    /// Samples per pixel.
    fn spp(&self) -> usize {
        if self.alpha { 2 } else { 1 }
    }

    /// The samples of pixel `i`: gray, then alpha (a pattern unlike the gray) if any.
    fn pixel_bytes(&self, data: &Data, i: usize, out: &mut Vec<u8>) {
        data.sample_bytes(i, self.big_endian, out);
        if self.alpha {
            let start = out.len();
            data.sample_bytes(i, self.big_endian, out);
            for (k, b) in out[start..].iter_mut().enumerate() {
                *b = !*b ^ (i * 7 + k) as u8;
            }
        }
    }

    /// The file holding `data` (`w * h` samples).
    fn encode(&self, w: u32, h: u32, data: &Data) -> Encoded {
        assert_eq!(data.len(), w as usize * h as usize);
        let kind = data.kind();
        let be = self.big_endian;
        // The chunks (strips or tiles) in their TIFF order, as bytes.
        let mut chunks: Vec<Vec<u8>> = Vec::new();
        match self.tile {
            Some(t) => {
                for ty in 0..h.div_ceil(t) {
                    for tx in 0..w.div_ceil(t) {
                        let mut c = Vec::new();
                        for y in ty * t..(ty + 1) * t {
                            for x in tx * t..(tx + 1) * t {
                                if x < w && y < h {
                                    self.pixel_bytes(data, (y * w + x) as usize, &mut c);
                                } else {
                                    // Padding outside the image: junk the decoder must drop.
                                    c.extend(std::iter::repeat_n(0xA5, self.spp() * kind.bytes()));
                                }
                            }
                        }
                        chunks.push(c);
                    }
                }
            }
            None => {
                let per = self.rows_per_strip.unwrap_or(h).clamp(1, h);
                let mut y = 0;
                while y < h {
                    let rows = per.min(h - y);
                    let mut c = Vec::new();
                    for i in (y * w) as usize..((y + rows) * w) as usize {
                        self.pixel_bytes(data, i, &mut c);
                    }
                    chunks.push(c);
                    y += rows;
                }
            }
        }

        // Place the chunks: runs of adjacent chunks, runs shuffled, junk between them.
        let n = chunks.len();
        let mut order: Vec<std::ops::Range<usize>> = Vec::new();
        let mut rng = Rng(self.scramble);
        let mut i = 0;
        while i < n {
            let len = if self.scramble == 0 {
                n
            } else {
                1 + rng.below_u64(3) as usize
            };
            order.push(i..(i + len).min(n));
            i += len;
        }
        if self.scramble != 0 {
            for k in (1..order.len()).rev() {
                order.swap(k, rng.below_u64(k as u64 + 1) as usize);
            }
        }
        let mut region = Vec::new();
        let mut rel = vec![0u64; n];
        for run in order {
            if self.scramble != 0 {
                for _ in 0..rng.below_u64(17) {
                    region.push(rng.next() as u8);
                }
            }
            for c in run {
                rel[c] = region.len() as u64;
                region.extend_from_slice(&chunks[c]);
            }
        }
        let mut counts: Vec<u64> = chunks.iter().map(|c| c.len() as u64).collect();
        let mid = n / 2;
        counts[mid] = counts[mid].saturating_add_signed(self.count_delta);

        // Tags, offsets still relative to the data region.
        let small = |v: u64| {
            if self.short_tags && v < 1 << 16 {
                SHORT
            } else {
                LONG
            }
        };
        let offsets_type = |max: u64| {
            if self.bigtiff {
                LONG8
            } else if self.short_tags && max < 1 << 16 {
                SHORT
            } else {
                LONG
            }
        };
        let build = |offsets: &[u64], offsets_ty: u16| {
            let mut e = vec![
                entry(256, small(w.into()), vec![w.into()]),
                entry(257, small(h.into()), vec![h.into()]),
                entry(258, SHORT, vec![kind.bytes() as u64 * 8; self.spp()]),
            ];
            if self.compression_tag {
                e.push(entry(259, SHORT, vec![1]));
            }
            if let Some(p) = self.photometric {
                e.push(entry(262, SHORT, vec![p.into()]));
            }
            if self.tile.is_none() {
                e.push(entry(273, offsets_ty, offsets.to_vec()));
            }
            e.push(entry(277, SHORT, vec![self.spp() as u64]));
            if self.tile.is_none() {
                if let Some(r) = self.rows_per_strip {
                    e.push(entry(278, small(r.into()), vec![r.into()]));
                }
                e.push(entry(
                    279,
                    small(*counts.iter().max().unwrap()),
                    counts.clone(),
                ));
            }
            if let Some(p) = self.predictor {
                e.push(entry(317, SHORT, vec![p.into()]));
            }
            if let Some(t) = self.tile {
                e.push(entry(322, small(t.into()), vec![t.into()]));
                e.push(entry(323, small(t.into()), vec![t.into()]));
                e.push(entry(324, offsets_ty, offsets.to_vec()));
                e.push(entry(
                    325,
                    if self.bigtiff { LONG8 } else { LONG },
                    counts.clone(),
                ));
            }
            if self.alpha {
                e.push(entry(338, SHORT, vec![2]));
            }
            if kind == Kind::F32 || self.sample_format_tag {
                e.push(entry(
                    339,
                    SHORT,
                    vec![if kind == Kind::F32 { 3 } else { 1 }; self.spp()],
                ));
            }
            e
        };
        // The IFD's length depends on the offsets' type only, not on their values.
        let header = self.header_len();
        let probe = build(&rel, SHORT);
        let upper = (header + self.ifd_len(&probe) + region.len() + 2) as u64;
        let offsets_ty = offsets_type(upper + 2 * self.ifd_len(&probe) as u64);
        let ifd_len = self.ifd_len(&build(&rel, offsets_ty));
        let (data_at, ifd_at) = if self.ifd_first {
            (header + ifd_len, header)
        } else {
            (header, (header + region.len() + 1) & !1)
        };
        let offsets: Vec<u64> = rel.iter().map(|r| r + data_at as u64).collect();
        let entries = build(&offsets, offsets_ty);

        let mut out = Vec::new();
        out.extend_from_slice(if be { b"MM" } else { b"II" });
        if self.bigtiff {
            self.put(&mut out, 43, 2);
            self.put(&mut out, 8, 2);
            self.put(&mut out, 0, 2);
            self.put(&mut out, ifd_at as u64, 8);
        } else {
            self.put(&mut out, 42, 2);
            self.put(&mut out, ifd_at as u64, 4);
        }
        if self.ifd_first {
            self.write_ifd(&mut out, &entries);
            assert_eq!(out.len(), data_at);
            out.extend_from_slice(&region);
        } else {
            out.extend_from_slice(&region);
            if out.len() % 2 == 1 {
                out.push(0);
            }
            self.write_ifd(&mut out, &entries);
        }
        Encoded {
            bytes: out,
            data: data_at..data_at + region.len(),
        }
    }

    /// What a decoder must give for `data` written this way, when it is known.
    fn decoded(&self, data: &Data, w: u32) -> Option<Data> {
        let w = w as usize;
        let mut d = data.clone();
        if self.predictor == Some(2) {
            match &mut d {
                Data::U8(v) => {
                    for row in v.chunks_mut(w) {
                        for x in 1..row.len() {
                            row[x] = row[x].wrapping_add(row[x - 1]);
                        }
                    }
                }
                Data::U16(v) => {
                    for row in v.chunks_mut(w) {
                        for x in 1..row.len() {
                            row[x] = row[x].wrapping_add(row[x - 1]);
                        }
                    }
                }
                Data::F32(_) => return None,
            }
        }
        if self.photometric == Some(0) {
            match &mut d {
                Data::U8(v) => v.iter_mut().for_each(|s| *s = !*s),
                Data::U16(v) => v.iter_mut().for_each(|s| *s = u16::MAX - *s),
                Data::F32(v) => v.iter_mut().for_each(|s| *s = 1.0 - *s),
            }
        }
        Some(d)
    }
}

/// The same samples through the `tiff` crate's encoder, with its compression and predictor.
fn tiff_crate_file(
    w: u32,
    h: u32,
    data: &Data,
    compression: tiff::encoder::Compression,
    predictor: tiff::tags::Predictor,
) -> Vec<u8> {
    use tiff::encoder::colortype::{Gray8, Gray16, Gray32Float};
    match data {
        Data::U8(v) => tiff_with::<Gray8>(w, h, v, compression, predictor, None),
        Data::U16(v) => tiff_with::<Gray16>(w, h, v, compression, predictor, None),
        Data::F32(v) => tiff_with::<Gray32Float>(w, h, v, compression, predictor, None),
    }
}

/// Gray stored as RGB (r == g == b), which the library turns back into the same gray.
fn tiff_crate_rgb_file(w: u32, h: u32, data: &Data) -> Vec<u8> {
    use tiff::encoder::colortype::{RGB8, RGB16};
    match data {
        Data::U8(v) => {
            let rgb: Vec<u8> = v.iter().flat_map(|&s| [s, s, s]).collect();
            tiff_plain::<RGB8>(w, h, &rgb)
        }
        Data::U16(v) => {
            let rgb: Vec<u16> = v.iter().flat_map(|&s| [s, s, s]).collect();
            tiff_plain::<RGB16>(w, h, &rgb)
        }
        Data::F32(_) => panic!("no float RGB"),
    }
}

/// The samples as a PNG or BMP (whatever the name says: the format is told by the bytes).
fn image_crate_file(w: u32, h: u32, data: &Data, format: image::ImageFormat) -> Vec<u8> {
    let mut buf = Cursor::new(Vec::new());
    match data {
        Data::U8(v) => image::GrayImage::from_raw(w, h, v.clone())
            .unwrap()
            .write_to(&mut buf, format),
        Data::U16(v) => image::ImageBuffer::<image::Luma<u16>, _>::from_raw(w, h, v.clone())
            .unwrap()
            .write_to(&mut buf, format),
        Data::F32(_) => panic!("no float {format:?}"),
    }
    .unwrap();
    buf.into_inner()
}

// ---------------------------------------------------------------------------------------------
// Stacks and checks
// ---------------------------------------------------------------------------------------------

fn name(i: usize) -> String {
    format!("s_{i:05}.tif")
}

/// Writes `files` as `s_00000.tif`, `s_00001.tif`, ... into `dir`.
fn write_stack(dir: &Path, files: &[Vec<u8>]) -> Vec<PathBuf> {
    files
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let path = dir.join(name(i));
            fs::write(&path, bytes).unwrap();
            path
        })
        .collect()
}

/// Where two slices first differ, if they do.
fn difference(got: &Slice, want: &Slice) -> Option<String> {
    if (got.width(), got.height(), got.sample_type())
        != (want.width(), want.height(), want.sample_type())
    {
        return Some(format!("got {got:?}, want {want:?}"));
    }
    let w = want.width().max(1) as usize;
    let at = |i: usize| format!("({}, {})", i % w, i / w);
    match (got.pixels(), want.pixels()) {
        (Pixels::U8(g), Pixels::U8(e)) => g
            .iter()
            .zip(e)
            .position(|(a, b)| a != b)
            .map(|i| format!("at {} got {} want {}", at(i), g[i], e[i])),
        (Pixels::U16(g), Pixels::U16(e)) => g
            .iter()
            .zip(e)
            .position(|(a, b)| a != b)
            .map(|i| format!("at {} got {} want {}", at(i), g[i], e[i])),
        (Pixels::F32(g), Pixels::F32(e)) => g
            .iter()
            .zip(e)
            .position(|(a, b)| a.to_bits() != b.to_bits())
            .map(|i| format!("at {} got {} want {}", at(i), g[i], e[i])),
        _ => Some("sample types differ".into()),
    }
}

#[track_caller]
fn assert_same(got: &Slice, want: &Slice, what: &str) {
    if let Some(d) = difference(got, want) {
        panic!("{what}: {d}");
    }
}

/// The reference for level-1 slice `z`: the kernel over the slices `Stack::read_slice` decodes.
fn reference(stack: &Stack, z: u32, out: &mut Slice) -> lodcache::Result<()> {
    let a = stack.read_slice(2 * z)?;
    let b = if 2 * z + 1 < stack.depth() {
        Some(stack.read_slice(2 * z + 1)?)
    } else {
        None
    };
    kernel::reduce_slices(&a, b.as_ref(), out)
}

/// Checks level-1 slice `z` from `reader` against the reference, errors included: when the
/// reference cannot be made, `reduce_pair` must fail too, naming a file of the pair.
#[track_caller]
fn check_pair(
    stack: &Stack,
    reader: &mut PairReducer<'_>,
    z: u32,
    out: &mut Slice,
    want: &mut Slice,
    what: &str,
) {
    let got = reader.reduce_pair(z, out);
    match (got, reference(stack, z, want)) {
        (Ok(()), Ok(())) => assert_same(out, want, &format!("{what}, level-1 slice {z}")),
        (Err(e), Ok(())) => panic!("{what}, level-1 slice {z}: reduce_pair failed: {e}"),
        (Ok(()), Err(e)) => {
            panic!("{what}, level-1 slice {z}: reduce_pair succeeded but the reference fails: {e}")
        }
        (Err(e), Err(_)) => {
            let e = e.to_string();
            let pair = [2 * z as usize, 2 * z as usize + 1];
            assert!(
                pair.iter().any(|&i| e.contains(&name(i))),
                "{what}, level-1 slice {z}: the error names neither file of the pair: {e}"
            );
        }
    }
}

/// A stack of `depth` random slices written by `tif`, with the samples written.
fn tif_stack(
    dir: &Path,
    tif: &Tif,
    w: u32,
    h: u32,
    kind: Kind,
    depth: usize,
    seed: u64,
) -> Vec<Data> {
    let mut rng = Rng(seed);
    let data: Vec<Data> = (0..depth)
        .map(|_| random_data(kind, w as usize * h as usize, &mut rng))
        .collect();
    let files: Vec<Vec<u8>> = data.iter().map(|d| tif.encode(w, h, d).bytes).collect();
    write_stack(dir, &files);
    data
}

// ---------------------------------------------------------------------------------------------
// 1. Plain strip TIFFs, read by rows
// ---------------------------------------------------------------------------------------------

#[test]
fn plain_strip_tiffs_reduce_like_the_kernel() {
    // 601 x 403 spans several bands of rows for every sample type (the band is 192 KiB).
    let sizes = [
        (37, 23),
        (64, 64),
        (1, 9),
        (9, 1),
        (3, 2),
        (2, 3),
        (1, 1),
        (601, 403),
    ];
    let kinds = [Kind::U8, Kind::U16, Kind::F32];
    // None: no RowsPerStrip tag (one strip); 5000: a tag larger than the image (one strip).
    let strips = [Some(1), Some(3), Some(7), None, Some(5000)];
    let depth = 5;
    // One output and one reference buffer for every stack, whatever its size and type.
    let mut out = Slice::zeroed(0, 0, SampleType::U8);
    let mut want = Slice::zeroed(0, 0, SampleType::U8);
    let mut decoded = Slice::zeroed(0, 0, SampleType::U8);
    let mut case = 0u64;
    for &(w, h) in &sizes {
        for &kind in &kinds {
            for &rows_per_strip in &strips {
                for big_endian in [false, true] {
                    case += 1;
                    let mut flags = Rng(case ^ 0x5EED);
                    let bits = flags.next();
                    let tif = Tif {
                        big_endian,
                        bigtiff: bits & 0b111 == 0,
                        rows_per_strip,
                        tile: None,
                        photometric: Some(1),
                        compression_tag: bits >> 10 & 0b11 != 0,
                        predictor: (bits >> 3 & 0b11 == 0).then_some(1),
                        sample_format_tag: bits >> 5 & 1 == 1,
                        short_tags: bits >> 6 & 1 == 1,
                        ifd_first: bits >> 7 & 1 == 1,
                        // Every fourth stack in row order, contiguous (one run).
                        scramble: if bits >> 8 & 0b11 == 0 { 0 } else { case },
                        count_delta: 0,
                        alpha: false,
                    };
                    let what = format!("case {case}: {w} x {h} {kind:?}, {tif:?}");
                    let dir = tempfile::tempdir().unwrap();
                    let data = tif_stack(dir.path(), &tif, w, h, kind, depth, case);
                    let stack =
                        Stack::open(dir.path()).unwrap_or_else(|e| panic!("{what}: opening: {e}"));
                    let info = stack.info();
                    assert_eq!(
                        (info.width, info.height, info.sample_type),
                        (w, h, kind.sample_type()),
                        "{what}"
                    );
                    // The writer is right: the decoder gives back the samples written.
                    for (z, d) in data.iter().enumerate() {
                        let s = stack.read_slice(z as u32).unwrap();
                        assert_same(&s, &d.to_slice(w, h), &format!("{what}: decoding {z}"));
                    }
                    let mut reader = PairReducer::new(&stack);
                    // Out of order and repeated, so each call starts from another reader state.
                    for z in [0, 1, 2, 0, 2, 1] {
                        check_pair(&stack, &mut reader, z, &mut out, &mut want, &what);
                        let a = &data[2 * z as usize];
                        let b = data.get(2 * z as usize + 1);
                        let contract = oracle(a, b, w as usize, h as usize).to_slice(w / 2, h / 2);
                        assert_same(&out, &contract, &format!("{what}: contract, slice {z}"));
                    }
                    // Whole decodes on the same reader in between leave the pairs as they were.
                    reader.read_into(3, &mut decoded).unwrap();
                    assert_same(&decoded, &data[3].to_slice(w, h), &what);
                    check_pair(&stack, &mut reader, 1, &mut out, &mut want, &what);
                    let e = reader.reduce_pair(3, &mut out).unwrap_err().to_string();
                    assert!(e.contains("0..3"), "{what}: {e}");
                    // The reader still works after the error.
                    check_pair(&stack, &mut reader, 2, &mut out, &mut want, &what);
                }
            }
        }
    }
}

/// Strips that lie in the file last strip first, none next to another, so that every band
/// of rows is read by seeking from strip to strip, and no two strips are joined.
#[test]
fn strips_in_reverse_file_order_none_adjacent() {
    let (w, h) = (37, 23);
    let mut out = Slice::zeroed(0, 0, SampleType::U8);
    let mut want = Slice::zeroed(0, 0, SampleType::U8);
    for kind in [Kind::U16, Kind::F32, Kind::U8] {
        for rows in [1, 2, 5, 22, 23] {
            for big_endian in [true, false] {
                let mut rng = Rng(u64::from(rows) * 7 + big_endian as u64);
                let data: Vec<Data> = (0..4)
                    .map(|_| random_data(kind, (w * h) as usize, &mut rng))
                    .collect();
                // Hand-placed strips: reversed file order, with a gap of 1 byte between all.
                let files: Vec<Vec<u8>> = data
                    .iter()
                    .map(|d| reversed_strips(w, h, rows, big_endian, d))
                    .collect();
                let dir = tempfile::tempdir().unwrap();
                write_stack(dir.path(), &files);
                let stack = Stack::open(dir.path()).unwrap();
                let what = format!("{kind:?} rows {rows} be {big_endian}");
                for (z, d) in data.iter().enumerate() {
                    assert_same(
                        &stack.read_slice(z as u32).unwrap(),
                        &d.to_slice(w, h),
                        &what,
                    );
                }
                let mut reader = PairReducer::new(&stack);
                for z in [1, 0, 1] {
                    check_pair(&stack, &mut reader, z, &mut out, &mut want, &what);
                }
            }
        }
    }
}

/// A classic TIFF whose strips of `rows` rows lie in the file last strip first, one junk byte
/// before each.
fn reversed_strips(w: u32, h: u32, rows: u32, big_endian: bool, data: &Data) -> Vec<u8> {
    let tif = Tif {
        big_endian,
        rows_per_strip: Some(rows),
        scramble: 0,
        ifd_first: true,
        ..Tif::plain()
    };
    // Build with the writer for the IFD layout, then rewrite the data region by hand: same
    // length (strips plus one byte each), so the IFD stays where it is.
    let strips = h.div_ceil(rows) as usize;
    let mut file = tif.encode(w, h, data).bytes;
    let header_and_ifd = file.len() - data.len() * data.kind().bytes();
    file.truncate(header_and_ifd);
    let mut offsets = vec![0u64; strips];
    for s in (0..strips).rev() {
        file.push(0xEE);
        offsets[s] = file.len() as u64;
        let first = s * rows as usize;
        let last = ((s + 1) * rows as usize).min(h as usize);
        for i in first * w as usize..last * w as usize {
            data.sample_bytes(i, big_endian, &mut file);
        }
    }
    // Patch StripOffsets (tag 273) in the IFD at offset 8.
    let rd16 = |b: &[u8]| {
        if big_endian {
            u16::from_be_bytes([b[0], b[1]])
        } else {
            u16::from_le_bytes([b[0], b[1]])
        }
    };
    let rd32 = |b: &[u8]| {
        if big_endian {
            u32::from_be_bytes([b[0], b[1], b[2], b[3]])
        } else {
            u32::from_le_bytes([b[0], b[1], b[2], b[3]])
        }
    };
    let wr32 = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let count = rd16(&file[8..10]) as usize;
    for e in 0..count {
        let at = 10 + 12 * e;
        if rd16(&file[at..at + 2]) != 273 {
            continue;
        }
        assert_eq!(rd16(&file[at + 2..at + 4]), LONG);
        assert_eq!(rd32(&file[at + 4..at + 8]) as usize, strips);
        if strips == 1 {
            file[at + 8..at + 12].copy_from_slice(&wr32(offsets[0] as u32));
        } else {
            let values = rd32(&file[at + 8..at + 12]) as usize;
            for (s, &o) in offsets.iter().enumerate() {
                file[values + 4 * s..values + 4 * s + 4].copy_from_slice(&wr32(o as u32));
            }
        }
    }
    file
}

// ---------------------------------------------------------------------------------------------
// 2. Files decoded whole, alone or among plain ones
// ---------------------------------------------------------------------------------------------

/// A file for a stack of `kind` that is not plain, and what it decodes to when known.
fn odd_file(variant: &str, w: u32, h: u32, data: &Data) -> Option<(Vec<u8>, Option<Data>)> {
    use tiff::encoder::Compression;
    use tiff::encoder::compression::DeflateLevel;
    use tiff::tags::Predictor;
    let kind = data.kind();
    let own = |tif: Tif| {
        let decoded = tif.decoded(data, w);
        (tif.encode(w, h, data).bytes, decoded)
    };
    let exact = |bytes: Vec<u8>| (bytes, Some(data.clone()));
    Some(match variant {
        "deflate" => exact(tiff_crate_file(
            w,
            h,
            data,
            Compression::Deflate(DeflateLevel::Fast),
            Predictor::None,
        )),
        "lzw" => exact(tiff_crate_file(
            w,
            h,
            data,
            Compression::Lzw,
            Predictor::None,
        )),
        "lzw+predictor" if kind != Kind::F32 => exact(tiff_crate_file(
            w,
            h,
            data,
            Compression::Lzw,
            Predictor::Horizontal,
        )),
        "packbits" => exact(tiff_crate_file(
            w,
            h,
            data,
            Compression::Packbits,
            Predictor::None,
        )),
        "uncompressed-tiff-crate" => exact(tiff_crate_file(
            w,
            h,
            data,
            Compression::Uncompressed,
            Predictor::None,
        )),
        "rgb" if kind != Kind::F32 => exact(tiff_crate_rgb_file(w, h, data)),
        "png" if kind != Kind::F32 => exact(image_crate_file(w, h, data, image::ImageFormat::Png)),
        "bmp" if kind == Kind::U8 => exact(image_crate_file(w, h, data, image::ImageFormat::Bmp)),
        "white-is-zero" => own(Tif {
            photometric: Some(0),
            ..Tif::plain()
        }),
        "white-is-zero-mm" => own(Tif {
            photometric: Some(0),
            big_endian: true,
            rows_per_strip: Some(1),
            ..Tif::plain()
        }),
        "predictor-2" => own(Tif {
            predictor: Some(2),
            ..Tif::plain()
        }),
        "predictor-2-mm" => own(Tif {
            predictor: Some(2),
            big_endian: true,
            bigtiff: true,
            ..Tif::plain()
        }),
        // The tiff crate refuses it; reduce_pair must too.
        "no-photometric" => (
            Tif {
                photometric: None,
                ..Tif::plain()
            }
            .encode(w, h, data)
            .bytes,
            None,
        ),
        "gray+alpha" if kind != Kind::F32 => own(Tif {
            alpha: true,
            ..Tif::plain()
        }),
        "gray+alpha-mm" if kind != Kind::F32 => own(Tif {
            alpha: true,
            big_endian: true,
            rows_per_strip: None,
            ..Tif::plain()
        }),
        "tiled" => own(Tif {
            tile: Some(16),
            ..Tif::plain()
        }),
        "tiled-mm-big" => own(Tif {
            tile: Some(32),
            big_endian: true,
            bigtiff: true,
            ifd_first: true,
            ..Tif::plain()
        }),
        // Byte counts that do not fit the rows: the reader must not use them; whatever the
        // whole decoder makes of the file, reduce_pair must agree with it.
        "count-short" => (
            Tif {
                count_delta: -40,
                ..Tif::plain()
            }
            .encode(w, h, data)
            .bytes,
            None,
        ),
        "count-zero" => (
            Tif {
                count_delta: -(1 << 40),
                ..Tif::plain()
            }
            .encode(w, h, data)
            .bytes,
            None,
        ),
        "count-long" => (
            Tif {
                count_delta: 5,
                ifd_first: false,
                ..Tif::plain()
            }
            .encode(w, h, data)
            .bytes,
            None,
        ),
        _ => return None,
    })
}

const ODD_VARIANTS: [&str; 20] = [
    "deflate",
    "lzw",
    "lzw+predictor",
    "packbits",
    "uncompressed-tiff-crate",
    "rgb",
    "png",
    "bmp",
    "white-is-zero",
    "white-is-zero-mm",
    "predictor-2",
    "predictor-2-mm",
    "no-photometric",
    "gray+alpha",
    "gray+alpha-mm",
    "tiled",
    "tiled-mm-big",
    "count-short",
    "count-zero",
    "count-long",
];

#[test]
fn files_decoded_whole_give_the_same_pairs() {
    let mut out = Slice::zeroed(0, 0, SampleType::U8);
    let mut want = Slice::zeroed(0, 0, SampleType::U8);
    let depth = 5;
    let mut case = 0u64;
    for (w, h) in [(37, 23), (64, 64), (3, 2)] {
        for kind in [Kind::U16, Kind::U8, Kind::F32] {
            for variant in ODD_VARIANTS {
                // The odd file as the first of a pair, the second of a pair, and the lone last.
                for odd in [0usize, 1, 2, 3, 4] {
                    case += 1;
                    let mut rng = Rng(case * 31 + 5);
                    let data: Vec<Data> = (0..depth)
                        .map(|_| random_data(kind, (w * h) as usize, &mut rng))
                        .collect();
                    let Some((odd_bytes, odd_decoded)) = odd_file(variant, w, h, &data[odd]) else {
                        continue;
                    };
                    let tif = Tif {
                        scramble: case,
                        big_endian: case.is_multiple_of(2),
                        ..Tif::plain()
                    };
                    let mut files: Vec<Vec<u8>> =
                        data.iter().map(|d| tif.encode(w, h, d).bytes).collect();
                    files[odd] = odd_bytes;
                    let dir = tempfile::tempdir().unwrap();
                    write_stack(dir.path(), &files);
                    let what = format!("{w} x {h} {kind:?}, file {odd} is {variant}");
                    let stack = match Stack::open(dir.path()) {
                        Ok(s) => s,
                        Err(e) => {
                            // Only a broken first file may keep the stack from opening.
                            assert_eq!(odd, 0, "{what}: {e}");
                            assert!(e.to_string().contains(&name(0)), "{what}: {e}");
                            continue;
                        }
                    };
                    if let Some(d) = &odd_decoded {
                        let s = stack
                            .read_slice(odd as u32)
                            .unwrap_or_else(|e| panic!("{what}: {e}"));
                        assert_same(&s, &d.to_slice(w, h), &format!("{what}: decoding"));
                    }
                    // Pairs in order, in reverse order, and the odd file's pair last.
                    let odd_pair = odd as u32 / 2;
                    let orders: [Vec<u32>; 3] = [
                        vec![0, 1, 2],
                        vec![2, 1, 0],
                        (0..3)
                            .filter(|&z| z != odd_pair)
                            .chain([odd_pair])
                            .collect(),
                    ];
                    for zs in orders {
                        let mut reader = PairReducer::new(&stack);
                        for z in zs {
                            check_pair(&stack, &mut reader, z, &mut out, &mut want, &what);
                        }
                        // And once more after the reader has seen the odd file.
                        check_pair(&stack, &mut reader, 0, &mut out, &mut want, &what);
                        check_pair(&stack, &mut reader, 2, &mut out, &mut want, &what);
                    }
                }
            }
        }
    }
}

/// Stacks with no TIFF at all take the whole-decode path from the start.
#[test]
fn png_and_bmp_stacks_reduce_like_the_kernel() {
    let mut out = Slice::zeroed(0, 0, SampleType::U8);
    let mut want = Slice::zeroed(0, 0, SampleType::U8);
    for (kind, format, ext) in [
        (Kind::U16, image::ImageFormat::Png, "png"),
        (Kind::U8, image::ImageFormat::Png, "png"),
        (Kind::U8, image::ImageFormat::Bmp, "bmp"),
    ] {
        let (w, h) = (37, 23);
        let mut rng = Rng(99);
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            let d = random_data(kind, (w * h) as usize, &mut rng);
            let path = dir.path().join(format!("s_{i:05}.{ext}"));
            fs::write(&path, image_crate_file(w, h, &d, format)).unwrap();
        }
        let stack = Stack::open(dir.path()).unwrap();
        assert_eq!(stack.depth(), 5);
        let mut reader = PairReducer::new(&stack);
        for z in [0, 1, 2, 1] {
            let a = stack.read_slice(2 * z).unwrap();
            let b = stack.read_slice(2 * z + 1).ok();
            kernel::reduce_slices(&a, b.as_ref(), &mut want).unwrap();
            reader.reduce_pair(z, &mut out).unwrap();
            assert_same(&out, &want, &format!("{ext} {kind:?} slice {z}"));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 3. Errors
// ---------------------------------------------------------------------------------------------

#[test]
fn slices_out_of_range_are_refused_with_the_range() {
    let dir = tempfile::tempdir().unwrap();
    tif_stack(dir.path(), &Tif::plain(), 8, 6, Kind::U16, 5, 1);
    let stack = Stack::open(dir.path()).unwrap();
    let mut reader = PairReducer::new(&stack);
    let mut out = Slice::zeroed(0, 0, SampleType::U16);
    for z in [3, 4, 1 << 31, u32::MAX - 1, u32::MAX] {
        let e = reader.reduce_pair(z, &mut out).unwrap_err().to_string();
        assert!(e.contains("0..3") && e.contains(&z.to_string()), "{z}: {e}");
    }
    reader.reduce_pair(2, &mut out).unwrap();
    assert_eq!((out.width(), out.height()), (4, 3));

    // Even depth: no lone slice, two level-1 slices.
    let dir = tempfile::tempdir().unwrap();
    tif_stack(dir.path(), &Tif::plain(), 8, 6, Kind::U8, 4, 2);
    let stack = Stack::open(dir.path()).unwrap();
    let mut reader = PairReducer::new(&stack);
    let e = reader.reduce_pair(2, &mut out).unwrap_err().to_string();
    assert!(e.contains("0..2"), "{e}");
    let mut want = Slice::zeroed(0, 0, SampleType::U8);
    for z in [1, 0] {
        check_pair(&stack, &mut reader, z, &mut out, &mut want, "even depth");
    }
}

#[test]
fn stacks_of_one_and_two_slices() {
    let mut out = Slice::zeroed(0, 0, SampleType::U8);
    let mut want = Slice::zeroed(0, 0, SampleType::U8);
    for depth in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let data = tif_stack(dir.path(), &Tif::plain(), 7, 5, Kind::U16, depth, 9);
        let stack = Stack::open(dir.path()).unwrap();
        let mut reader = PairReducer::new(&stack);
        check_pair(&stack, &mut reader, 0, &mut out, &mut want, "tiny");
        let contract = oracle(&data[0], data.get(1), 7, 5).to_slice(3, 2);
        assert_same(&out, &contract, &format!("depth {depth}"));
        let e = reader.reduce_pair(1, &mut out).unwrap_err().to_string();
        assert!(e.contains("0..1"), "{e}");
    }
}

#[test]
fn a_slice_over_the_size_limit_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    tif_stack(dir.path(), &Tif::plain(), 37, 23, Kind::U16, 5, 4);
    // The limit is checked against each file's header before anything is read.
    let stack = Stack::open(dir.path())
        .unwrap()
        .with_max_slice_bytes(37 * 23 * 2 - 1);
    let mut reader = PairReducer::new(&stack);
    let mut out = Slice::zeroed(0, 0, SampleType::U16);
    for z in 0..3 {
        let e = reader.reduce_pair(z, &mut out).unwrap_err().to_string();
        assert!(e.contains(&name(2 * z as usize)), "{e}");
    }
    let stack = stack.with_max_slice_bytes(37 * 23 * 2);
    let mut reader = PairReducer::new(&stack);
    let mut want = Slice::zeroed(0, 0, SampleType::U16);
    for z in 0..3 {
        check_pair(&stack, &mut reader, z, &mut out, &mut want, "at the limit");
    }
}

#[test]
fn a_strip_counted_over_the_size_limit_is_refused_like_a_whole_decode() {
    // The tiff crate refuses a strip whose byte count passes the slice limit, though the
    // samples are all there; reading by rows must not serve such a file either.
    let dir = tempfile::tempdir().unwrap();
    let tif = Tif {
        rows_per_strip: None,
        count_delta: 1 << 30,
        ..Tif::plain()
    };
    tif_stack(dir.path(), &tif, 37, 23, Kind::U16, 5, 9);
    let stack = Stack::open(dir.path())
        .unwrap()
        .with_max_slice_bytes(1 << 20);
    assert!(stack.read_slice(0).is_err());
    let mut reader = PairReducer::new(&stack);
    let mut out = Slice::zeroed(0, 0, SampleType::U16);
    let mut want = Slice::zeroed(0, 0, SampleType::U16);
    for z in 0..3 {
        check_pair(
            &stack,
            &mut reader,
            z,
            &mut out,
            &mut want,
            "strip over the limit",
        );
    }
}

/// Truncates the file at `path` to `len` bytes.
fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

#[test]
fn a_truncated_file_is_an_error_naming_it() {
    let (w, h) = (37, 23);
    let mut out = Slice::zeroed(0, 0, SampleType::U8);
    let mut want = Slice::zeroed(0, 0, SampleType::U8);
    let mut case = 0u64;
    for kind in [Kind::U16, Kind::U8, Kind::F32] {
        for ifd_first in [true, false] {
            for rows_per_strip in [Some(1), Some(7), None] {
                for cut_file in [0usize, 1, 2, 3, 4] {
                    // Cut in the middle of the samples, and one byte before their end.
                    for cut_middle in [true, false] {
                        case += 1;
                        let tif = Tif {
                            ifd_first,
                            rows_per_strip,
                            big_endian: case.is_multiple_of(3),
                            scramble: case,
                            ..Tif::plain()
                        };
                        let mut rng = Rng(case);
                        let dir = tempfile::tempdir().unwrap();
                        let mut paths = Vec::new();
                        let mut cut_at = 0;
                        for i in 0..5 {
                            let d = random_data(kind, (w * h) as usize, &mut rng);
                            let enc = tif.encode(w, h, &d);
                            if i == cut_file {
                                cut_at = if cut_middle {
                                    (enc.data.start + enc.data.end) / 2
                                } else {
                                    enc.data.end - 1
                                };
                            }
                            let path = dir.path().join(name(i));
                            fs::write(&path, &enc.bytes).unwrap();
                            paths.push(path);
                        }
                        let what = format!("{kind:?} {tif:?}, file {cut_file} cut at {cut_at}");
                        let file = name(cut_file);
                        // A reader that has already read every pair before the cut.
                        let stack = Stack::open(dir.path()).unwrap();
                        let mut early = PairReducer::new(&stack);
                        for z in 0..3 {
                            check_pair(&stack, &mut early, z, &mut out, &mut want, &what);
                        }
                        truncate(&paths[cut_file], cut_at as u64);
                        let stack = match Stack::open(dir.path()) {
                            Ok(s) => s,
                            Err(e) => {
                                assert_eq!(cut_file, 0, "{what}: {e}");
                                assert!(e.to_string().contains(&file), "{what}: {e}");
                                continue;
                            }
                        };
                        let cut_pair = cut_file as u32 / 2;
                        let mut readers = [PairReducer::new(&stack), PairReducer::new(&stack)];
                        // The second reader reads the other pairs first.
                        for z in (0..3).filter(|&z| z != cut_pair) {
                            check_pair(&stack, &mut readers[1], z, &mut out, &mut want, &what);
                        }
                        for reader in &mut readers {
                            let e = reader
                                .reduce_pair(cut_pair, &mut out)
                                .expect_err(&what)
                                .to_string();
                            assert!(e.contains(&file), "{what}: {e}");
                            assert!(stack.read_slice(cut_file as u32).is_err(), "{what}");
                            // The reader goes on with the other pairs.
                            for z in (0..3).filter(|&z| z != cut_pair) {
                                check_pair(&stack, reader, z, &mut out, &mut want, &what);
                            }
                        }
                        // The reader that read everything before the cut.
                        let e = early.reduce_pair(cut_pair, &mut out).expect_err(&what);
                        assert!(e.to_string().contains(&file), "{what}: {e}");
                    }
                }
            }
        }
    }
}

#[test]
fn a_file_of_another_size_or_type_is_an_error_naming_it() {
    let (w, h) = (37, 23);
    let mut out = Slice::zeroed(0, 0, SampleType::U8);
    let mut want = Slice::zeroed(0, 0, SampleType::U8);
    let replacements: [(&str, u32, u32, Kind, bool); 7] = [
        ("narrower", 36, 23, Kind::U16, false),
        ("taller", 37, 24, Kind::U16, false),
        ("wider, one row", 38, 1, Kind::U16, false),
        ("8-bit", 37, 23, Kind::U8, false),
        ("float", 37, 23, Kind::F32, false),
        ("narrower, compressed", 36, 23, Kind::U16, true),
        ("8-bit, compressed", 37, 23, Kind::U8, true),
    ];
    for (label, rw, rh, rkind, compressed) in replacements {
        for replaced in [1usize, 2, 3, 4] {
            let dir = tempfile::tempdir().unwrap();
            let tif = Tif {
                scramble: replaced as u64,
                ..Tif::plain()
            };
            tif_stack(dir.path(), &tif, w, h, Kind::U16, 5, 7);
            let mut rng = Rng(3);
            let other = random_data(rkind, (rw * rh) as usize, &mut rng);
            let bytes = if compressed {
                tiff_crate_file(
                    rw,
                    rh,
                    &other,
                    tiff::encoder::Compression::Lzw,
                    tiff::tags::Predictor::None,
                )
            } else {
                tif.encode(rw, rh, &other).bytes
            };
            fs::write(dir.path().join(name(replaced)), bytes).unwrap();
            let stack = Stack::open(dir.path()).unwrap();
            let what = format!("file {replaced} replaced by a {label} one");
            let mut reader = PairReducer::new(&stack);
            let pair = replaced as u32 / 2;
            let e = reader
                .reduce_pair(pair, &mut out)
                .expect_err(&what)
                .to_string();
            assert!(e.contains(&name(replaced)), "{what}: {e}");
            if (rw, rh) != (w, h) {
                assert!(e.contains(&format!("{rw} x {rh}")), "{what}: {e}");
            } else {
                assert!(e.contains(rkind.sample_type().name()), "{what}: {e}");
            }
            for z in (0..3).filter(|&z| z != pair) {
                check_pair(&stack, &mut reader, z, &mut out, &mut want, &what);
            }
        }
    }
}

#[test]
fn an_empty_or_foreign_file_is_an_error_naming_it() {
    let mut out = Slice::zeroed(0, 0, SampleType::U8);
    for (label, bytes) in [
        ("empty", Vec::new()),
        ("text", b"not an image at all, just some text".to_vec()),
        ("tiff header alone", b"II*\0\x08\0\0\0".to_vec()),
        ("big-endian header, no IFD", b"MM\0*\0\0\x10\0".to_vec()),
    ] {
        for replaced in [1usize, 2, 4] {
            let dir = tempfile::tempdir().unwrap();
            tif_stack(dir.path(), &Tif::plain(), 10, 4, Kind::U8, 5, 11);
            fs::write(dir.path().join(name(replaced)), &bytes).unwrap();
            let stack = Stack::open(dir.path()).unwrap();
            let mut reader = PairReducer::new(&stack);
            let what = format!("file {replaced} {label}");
            let e = reader
                .reduce_pair(replaced as u32 / 2, &mut out)
                .expect_err(&what)
                .to_string();
            assert!(e.contains(&name(replaced)), "{what}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Bytes read
// ---------------------------------------------------------------------------------------------

#[test]
fn bytes_read_grows_by_the_files_of_each_pair() {
    let (w, h) = (601, 403);
    for odd in [None, Some(1usize), Some(2), Some(4)] {
        let dir = tempfile::tempdir().unwrap();
        let tif = Tif {
            rows_per_strip: Some(7),
            scramble: 17,
            ..Tif::plain()
        };
        let data = tif_stack(dir.path(), &tif, w, h, Kind::U16, 5, 21);
        if let Some(k) = odd {
            let bytes = tiff_crate_file(
                w,
                h,
                &data[k],
                tiff::encoder::Compression::Deflate(Default::default()),
                tiff::tags::Predictor::None,
            );
            fs::write(dir.path().join(name(k)), bytes).unwrap();
        }
        let stack = Stack::open(dir.path()).unwrap();
        let len = |i: usize| fs::metadata(dir.path().join(name(i))).unwrap().len();
        let mut reader = PairReducer::new(&stack);
        assert_eq!(reader.bytes_read(), 0, "a new reader has read nothing");
        let mut out = Slice::zeroed(0, 0, SampleType::U16);
        let mut total = 0;
        for z in [0u32, 2, 1, 0] {
            reader.reduce_pair(z, &mut out).unwrap();
            let first = 2 * z as usize;
            total += len(first) + if first + 1 < 5 { len(first + 1) } else { 0 };
            assert_eq!(
                reader.bytes_read(),
                total,
                "odd file {odd:?}, after slice {z}"
            );
        }
        // A whole decode on the same reader counts its file too.
        reader.read_into(3, &mut out).unwrap();
        total += len(3);
        assert_eq!(
            reader.bytes_read(),
            total,
            "odd file {odd:?}, after read_into"
        );
    }
}

/// Uncompressed 8-bit gray BMPs whose rows have no padding are read by rows (bottom-up ones a
/// band at a time, put in order in the band); the result equals the whole decode's, across
/// several bands, odd heights, top-down files, and the files that must be decoded whole (rows
/// with padding, a palette that is not the gray ramp) in the same stack.
#[test]
fn bmp_rows_read_in_place_reduce_like_the_kernel() {
    let mut out = Slice::zeroed(0, 0, SampleType::U8);
    let mut want = Slice::zeroed(0, 0, SampleType::U8);
    let gray = common::gray_palette();
    let mut inverted = gray.clone();
    inverted.reverse();
    // 1000 x 203: a band of 64 rows, four bands with an odd last row dropped by the kernel.
    for (w, h) in [(1000, 203), (64, 9), (36, 2)] {
        for top_down in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let mut rng = Rng(7 + u64::from(w));
            let files: Vec<Vec<u8>> = (0..7)
                .map(|i| {
                    let Data::U8(d) = random_data(Kind::U8, (w * h) as usize, &mut rng) else {
                        unreachable!()
                    };
                    // Slice 4 goes through its palette (decoded whole); the rest are plain.
                    let palette = if i == 4 { &inverted } else { &gray };
                    common::bmp_indexed(w, h, 8, &d, palette, top_down)
                })
                .collect();
            for (i, bytes) in files.iter().enumerate() {
                fs::write(dir.path().join(format!("s_{i:05}.bmp")), bytes).unwrap();
            }
            let stack = Stack::open(dir.path()).unwrap();
            let mut reader = PairReducer::new(&stack);
            for z in [0, 1, 3, 2, 0] {
                let what = format!("{w} x {h}, top-down {top_down}");
                reader.reduce_pair(z, &mut out).unwrap();
                reference(&stack, z, &mut want).unwrap();
                assert_same(&out, &want, &format!("{what}, level-1 slice {z}"));
            }
        }
    }
    // A truncated BMP is refused naming the file, as the whole decode refuses it.
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Rng(3);
    for i in 0..2 {
        let Data::U8(d) = random_data(Kind::U8, 64 * 64, &mut rng) else {
            unreachable!()
        };
        let mut bytes = common::bmp_indexed(64, 64, 8, &d, &gray, false);
        if i == 1 {
            bytes.truncate(bytes.len() - 100);
        }
        fs::write(dir.path().join(format!("s_{i:05}.bmp")), bytes).unwrap();
    }
    let stack = Stack::open(dir.path()).unwrap();
    let e = PairReducer::new(&stack)
        .reduce_pair(0, &mut out)
        .unwrap_err()
        .to_string();
    assert!(e.contains("s_00001.bmp"), "{e}");
}
