//! Finding and decoding the slices of a stack folder (see [`Stack`]).

mod decode;
mod discover;
mod input;
mod rows;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

pub(crate) use decode::SliceDecoder;

use crate::error::{Error, Result};
use crate::geometry::{LevelInfo, LevelRule};
use crate::slice::{SampleType, Slice};

/// Decoded slices larger than this are refused before anything is allocated. Default of
/// [`Stack::max_slice_bytes`]: 4 GiB, 8x a 16-bit 16384 x 16384 slice.
pub const DEFAULT_MAX_SLICE_BYTES: u64 = 4 << 30;

/// An explicit file-name pattern: `<prefix><index>.<extension>` for index in `first..=last`,
/// optionally with exactly `index_width` digits. Overrides automatic detection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackPattern {
    /// Everything before the digits, e.g. `"scan_"`.
    pub prefix: String,
    /// The extension without the dot, compared without case, e.g. `"tif"`.
    pub extension: String,
    /// First and last slice number, inclusive.
    pub indices: RangeInclusive<u64>,
    /// Number of digits in every name (zero-padded), or `None` for any.
    pub index_width: Option<usize>,
}

/// Size and sample type shared by every slice of a stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SliceInfo {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Sample type after conversion (RGB becomes gray of the same depth).
    pub sample_type: SampleType,
}

/// One slice file of a stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Full path.
    pub path: PathBuf,
    /// The number in its name.
    pub index: u64,
}

/// A CT stack: the ordered slice files of one folder, with the first slice's size and type.
///
/// # Discovery
/// The image files directly in one folder (no recursion) with extension tif, tiff, bmp, png,
/// jpg or jpeg in any letter case are read as `<prefix><digits>.<ext>`. The stack is the most
/// common (prefix, extension) pair (extension compared without case; on a tie the pair that
/// sorts first wins), sorted by the integer value of the digits. Everything else (notes, logs,
/// `*_spr.bmp` previews, `Thumbs.db`, hidden files and folders such as the cache folder,
/// sub-folders) is ignored. Gaps in the numbering are allowed and reported by [`Stack::gaps`].
/// A [`StackPattern`] overrides detection.
///
/// # Decoding
/// 8- and 16-bit grayscale is kept as it is; RGB and RGBA become luma of the same depth with
/// weights that sum to one exactly (BT.709, fixed point), so gray stored as RGB stays exactly
/// gray; gray+alpha keeps the gray channel; 32-bit float grayscale TIFF is kept as `f32`.
/// Palette BMPs are mapped through their palette's luma (a gray ramp palette costs nothing).
/// TIFF is decoded with the `tiff` crate directly into the caller's buffer; BMP, PNG and JPEG go
/// through `image`'s decoders. The format is told by the file's first bytes, not its name.
#[derive(Debug, Clone)]
pub struct Stack {
    dir: PathBuf,
    prefix: String,
    extension: String,
    files: Vec<SourceFile>,
    gaps: Vec<RangeInclusive<u64>>,
    info: SliceInfo,
    max_slice_bytes: u64,
}

impl Stack {
    /// Finds the stack in `dir` (see the module docs) and reads the first slice's header.
    ///
    /// # Errors
    /// [`Error::StackNotFound`] when `dir` is not a folder, [`Error::NoImages`] when nothing in it
    /// looks like a slice, [`Error::DuplicateIndex`] when two files carry the same number, and the
    /// decoding errors of the first slice.
    pub fn open(dir: impl AsRef<Path>) -> Result<Stack> {
        let dir = dir.as_ref();
        let found = discover::detect(dir)?;
        Stack::from_found(dir, found)
    }

    /// Opens the files of `dir` that match `pattern`, ignoring everything else.
    ///
    /// # Errors
    /// As [`Stack::open`]; [`Error::NoImages`] names the pattern when no file matches it.
    pub fn open_pattern(dir: impl AsRef<Path>, pattern: &StackPattern) -> Result<Stack> {
        let dir = dir.as_ref();
        let found = discover::with_pattern(dir, pattern)?;
        Stack::from_found(dir, found)
    }

    fn from_found(dir: &Path, found: discover::Found) -> Result<Stack> {
        let first = &found.files[0].path;
        let info = SliceDecoder::new(DEFAULT_MAX_SLICE_BYTES).probe(first)?;
        Ok(Stack {
            dir: dir.to_path_buf(),
            prefix: found.prefix,
            extension: found.extension,
            files: found.files,
            gaps: found.gaps,
            info,
            max_slice_bytes: DEFAULT_MAX_SLICE_BYTES,
        })
    }

    /// The same stack with a different per-slice size limit in bytes (decoded samples).
    /// Default: [`DEFAULT_MAX_SLICE_BYTES`].
    #[must_use]
    pub fn with_max_slice_bytes(mut self, bytes: u64) -> Stack {
        self.max_slice_bytes = bytes;
        self
    }

    /// The per-slice size limit in bytes.
    pub fn max_slice_bytes(&self) -> u64 {
        self.max_slice_bytes
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name prefix shared by the slices.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The extension of the slices as found on the first file (original case).
    pub fn extension(&self) -> &str {
        &self.extension
    }

    /// The slice files in stack order.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// Number of slices.
    pub fn depth(&self) -> u32 {
        // discover caps the file count at u32::MAX.
        self.files.len() as u32
    }

    /// Missing slice numbers, as inclusive ranges, in order.
    pub fn gaps(&self) -> &[RangeInclusive<u64>] {
        &self.gaps
    }

    /// Size and sample type of every slice (those of the first).
    pub fn info(&self) -> SliceInfo {
        self.info
    }

    /// The pyramid levels of this stack under `rule`, level 0 first.
    ///
    /// # Errors
    /// Never for an opened stack (its sides are at least 1); kept fallible for the rule's checks.
    pub fn levels(&self, rule: &LevelRule) -> Result<Vec<LevelInfo>> {
        rule.levels(
            self.info.width,
            self.info.height,
            self.depth(),
            self.info.sample_type,
        )
    }

    /// Decodes slice `z` (0-based stack position).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `z` out of range; the decoding errors of the file,
    /// including [`Error::SizeMismatch`] and [`Error::SampleTypeMismatch`] against the first
    /// slice.
    pub fn read_slice(&self, z: u32) -> Result<Slice> {
        let mut out = Slice::zeroed(0, 0, self.info.sample_type);
        self.reader().read_into(z, &mut out)?;
        Ok(out)
    }

    /// A reader that keeps its buffers between slices (use one per thread).
    pub fn reader(&self) -> StackReader<'_> {
        let ext = self.extension.to_ascii_lowercase();
        StackReader {
            stack: self,
            decoder: SliceDecoder::new(self.max_slice_bytes),
            by_rows: ext == "tif" || ext == "tiff",
            bands: [rows::Band::default(), rows::Band::default()],
            whole: [
                Slice::zeroed(0, 0, self.info.sample_type),
                Slice::zeroed(0, 0, self.info.sample_type),
            ],
        }
    }
}

/// Decodes slices of one [`Stack`], reusing its file and conversion buffers.
#[derive(Debug)]
pub struct StackReader<'a> {
    stack: &'a Stack,
    decoder: SliceDecoder,
    /// Whether to try reading pairs by rows: the stack is TIFF, and no file so far had to be
    /// decoded whole.
    by_rows: bool,
    bands: [rows::Band; 2],
    /// Whole decoded slices, for pairs that cannot be read by rows.
    whole: [Slice; 2],
}

impl StackReader<'_> {
    /// Decodes slice `z` into `out`, reusing `out`'s allocation.
    ///
    /// # Errors
    /// As [`Stack::read_slice`].
    pub fn read_into(&mut self, z: u32, out: &mut Slice) -> Result<()> {
        let file = self.stack.files.get(z as usize).ok_or_else(|| {
            Error::invalid(
                "slice index",
                format!("{z} is outside 0..{}", self.stack.files.len()),
            )
        })?;
        self.decoder.decode(&file.path, &self.stack.info, out)
    }

    /// Makes slice `z` of level 1 into `out` (reusing its allocation): the 2x2x2 reduction of
    /// source slices `2z` and `2z + 1`, or of `2z` alone when it is the last (see
    /// [`crate::kernel`]), on this thread.
    ///
    /// Uncompressed gray TIFFs in strips are read a band of rows at a time and reduced while
    /// the band is in cache; other files are decoded whole first. Same result either way.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for `z` out of range; the decoding errors of either file.
    pub fn reduce_pair(&mut self, z: u32, out: &mut Slice) -> Result<()> {
        let depth = self.stack.depth();
        let first = z.checked_mul(2).filter(|&f| f < depth).ok_or_else(|| {
            Error::invalid(
                "level-1 slice",
                format!("{z} is outside 0..{}", depth.div_ceil(2)),
            )
        })?;
        let second = (first + 1 < depth).then_some(first + 1);
        if self.by_rows && self.reduce_by_rows(first, second, out)? {
            return Ok(());
        }
        let [a, b] = &mut self.whole;
        self.decoder
            .decode(&self.stack.files[first as usize].path, &self.stack.info, a)?;
        if let Some(second) = second {
            self.decoder
                .decode(&self.stack.files[second as usize].path, &self.stack.info, b)?;
        }
        crate::kernel::reduce_slices_here(a, second.map(|_| &*b), out)
    }

    /// [`StackReader::reduce_pair`] by bands of rows; `false` (nothing done) when a file is
    /// not plain enough for it.
    fn reduce_by_rows(&mut self, first: u32, second: Option<u32>, out: &mut Slice) -> Result<bool> {
        let info = self.stack.info;
        let path = |z: u32| &self.stack.files[z as usize].path;
        let Some(mut a) = self.decoder.rows(path(first), &info)? else {
            self.by_rows = false;
            return Ok(false);
        };
        let mut b = match second {
            Some(s) => match self.decoder.rows(path(s), &info)? {
                Some(rows) => Some(rows),
                None => {
                    self.by_rows = false;
                    return Ok(false);
                }
            },
            None => None,
        };
        let (width, height) = (info.width as usize, info.height as usize);
        out.reshape(info.width / 2, info.height / 2, info.sample_type);
        let row_bytes = width * info.sample_type.bytes();
        let band = (rows::BAND_BYTES / row_bytes.max(1)).max(2) & !1;
        let out_row = width / 2;
        let in_rows = height / 2 * 2;
        let [band_a, band_b] = &mut self.bands;
        let mut y = 0;
        while y < in_rows && out_row > 0 {
            let n = band.min(in_rows - y);
            let bytes_a = band_a.bytes(n * row_bytes);
            a.read(y as u32, n as u32, bytes_a)?;
            let bytes_b = match &mut b {
                Some(b) => {
                    let bytes = band_b.bytes(n * row_bytes);
                    b.read(y as u32, n as u32, bytes)?;
                    Some(&*bytes)
                }
                None => None,
            };
            let rows_out = y / 2 * out_row..(y + n) / 2 * out_row;
            crate::kernel::reduce_bytes(bytes_a, bytes_b, width, n, out, rows_out);
            y += n;
        }
        self.decoder.count_read(a.file_len());
        if let Some(b) = &b {
            self.decoder.count_read(b.file_len());
        }
        Ok(true)
    }

    /// Bytes of source files read so far by this reader.
    pub fn bytes_read(&self) -> u64 {
        self.decoder.bytes_read()
    }
}
