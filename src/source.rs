//! Finding and decoding the slices of a stack folder (see [`Stack`]).

mod budget;
mod decode;
mod discover;
mod input;
mod jpeg;
mod pages;
mod rows;

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

pub use budget::{
    DECODE_OVERHEAD, DecodeBudgetStats, DecodeReservation, MAX_DEFAULT_DECODE_BUDGET,
    MIN_DEFAULT_DECODE_BUDGET, decode_budget, decode_budget_stats, default_decode_budget,
    reserve_decode_memory, set_decode_budget,
};
pub(crate) use decode::SliceDecoder;
pub(crate) use rows::{BAND_BYTES, Band, Rows as SliceRows};

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

/// One slice of a stack: a file, or a page of a multi-page TIFF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Full path.
    pub path: PathBuf,
    /// The number in its name; for a page of a multi-page TIFF, the page number.
    pub index: u64,
    /// The page of a multi-page TIFF this slice is; `None` for a file that is one slice.
    pub page: Option<Page>,
}

/// A page of a multi-page TIFF (an ImageJ/Fiji stack, an OME-TIFF).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Page {
    /// The page number, from 0.
    pub number: u32,
    /// The file offset of its image file directory (where its tags are).
    pub ifd: u64,
}

/// A CT stack: the ordered slice files of one folder, with the first slice's size and type.
///
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
/// The stack is chosen among regular files (and links to them, inside the folder or not). An
/// entry of the chosen stack's name pattern (or of an explicit pattern) that is a folder, FIFO,
/// socket or device, or a link that dangles, loops or leads to one of those, is an error
/// naming it ([`Error::BadSliceEntry`]), not a gap: skipping it would shift every later slice
/// by one position. Slice names must be valid UTF-8: when the most common group of image
/// names is not, opening is refused naming its first file (rename the files); names that are
/// not UTF-8 outside the chosen stack are ignored like any other group. Every slice is checked
/// again when it is read: it is opened without blocking (a FIFO swapped in later does not hang
/// the reader) and refused unless the opened handle is a regular file.
///
/// # Decoding
/// 8- and 16-bit grayscale is kept as it is; RGB and RGBA become luma of the same depth with
/// weights that sum to one exactly (BT.709, fixed point), so gray stored as RGB stays exactly
/// gray; gray+alpha keeps the gray channel; 32-bit float grayscale TIFF is kept as `f32`.
/// Palette BMPs are mapped through their palette's luma (a gray ramp palette costs nothing).
/// TIFF is decoded with the `tiff` crate directly into the caller's buffer; BMP and PNG go
/// through `image`'s decoders, JPEG through `zune-jpeg` in strict mode after checking that the
/// file reaches its end-of-image marker, so a cut or corrupt JPEG is an error, never a slice
/// partly filled with gray. The format is told by the file's first bytes, not its name.
///
/// # Memory
/// Every decode reserves the memory it needs from one process-wide budget before allocating
/// it, and waits while other decodes hold too much of it; see [`set_decode_budget`](crate::set_decode_budget) for what is counted and the default.
#[derive(Debug, Clone)]
pub struct Stack {
    dir: PathBuf,
    prefix: String,
    extension: String,
    files: Vec<SourceFile>,
    gaps: Vec<RangeInclusive<u64>>,
    info: SliceInfo,
    max_slice_bytes: u64,
    /// The voxel size the stack's files say, read when it was opened.
    voxel: Option<crate::voxel::VoxelSize>,
}

impl Stack {
    /// Finds the stack in `dir` (see the module docs) and reads the first slice's header. A
    /// TIFF file given instead of a folder, or a folder whose only image is one multi-page
    /// TIFF, is the stack of that file's pages ([`Stack::open_pages`]).
    ///
    /// # Errors
    /// [`Error::StackNotFound`] when `dir` is neither a folder nor a TIFF file, [`Error::NoImages`] when nothing in it
    /// looks like a slice, [`Error::DuplicateIndex`] when two files carry the same number, and the
    /// decoding errors of the first slice.
    pub fn open(dir: impl AsRef<Path>) -> Result<Stack> {
        let dir = dir.as_ref();
        let is_tiff = dir
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(pages::is_tiff_name);
        if is_tiff && std::fs::metadata(dir).is_ok_and(|m| m.is_file()) {
            return Stack::open_pages(dir);
        }
        match discover::detect(dir) {
            Ok(found) if found.files.len() == 1 && pages::is_tiff_name(&found.extension) => {
                let file = &found.files[0].path;
                if pages::count_at_least_two(file)? {
                    return Stack::open_pages(file);
                }
                Stack::from_found(dir, found)
            }
            Ok(found) => Stack::from_found(dir, found),
            Err(e @ Error::NoImages { .. }) => match pages::lone_tiff(dir) {
                Some(file) => Stack::open_pages(&file),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }

    /// The stack of the pages of one multi-page TIFF (an ImageJ/Fiji stack, an OME-TIFF: every
    /// page in file order, whatever it holds), each page a slice. [`Stack::open`] does this
    /// when given the file, or a folder holding no other image than it.
    ///
    /// Pages are read one at a time, like separate files: the file's directories are listed
    /// once here (their offsets), and each page is decoded on its own when asked for. Every
    /// page must match the first page's size and sample type; errors about a page name the
    /// file and the page ([`Error::Page`]).
    ///
    /// # Errors
    /// [`Error::StackNotFound`] when `file` is not a regular file, decoding errors of the file
    /// or of its first page.
    pub fn open_pages(file: impl AsRef<Path>) -> Result<Stack> {
        let file = file.as_ref();
        if !std::fs::metadata(file).is_ok_and(|m| m.is_file()) {
            return Err(Error::StackNotFound {
                path: file.to_path_buf(),
            });
        }
        let ifds = pages::list(file)?;
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        let (prefix, extension) = match name.rsplit_once('.') {
            Some((stem, ext)) => (stem.to_string(), ext.to_string()),
            None => (name.to_string(), String::new()),
        };
        let files = ifds
            .iter()
            .enumerate()
            .map(|(n, &ifd)| SourceFile {
                path: file.to_path_buf(),
                index: n as u64,
                page: Some(Page {
                    number: n as u32,
                    ifd,
                }),
            })
            .collect();
        Stack::from_found(
            &dir,
            discover::Found {
                prefix,
                extension,
                files,
                gaps: Vec::new(),
            },
        )
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
        let voxel = crate::voxel::detect(dir, first);
        Ok(Stack {
            voxel,
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

    /// The physical voxel size the stack's files give (a scanner log beside the slices, the
    /// first slice's ImageJ description or TIFF resolution tags; see [`crate::VoxelSize`]),
    /// read when the stack was opened; `None` when they say nothing.
    pub fn voxel_size(&self) -> Option<crate::voxel::VoxelSize> {
        self.voxel.clone()
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

    /// Source slice `z`'s file.
    fn file(&self, z: u32) -> Result<&SourceFile> {
        self.files.get(z as usize).ok_or_else(|| {
            Error::invalid(
                "slice index",
                format!("{z} is outside 0..{}", self.files.len()),
            )
        })
    }

    /// A reader that keeps its buffers between slices (use one per thread).
    pub fn reader(&self) -> StackReader<'_> {
        StackReader {
            stack: self,
            decoder: SliceDecoder::new(self.max_slice_bytes),
        }
    }
}

/// Names the page in an error about a page of a multi-page TIFF.
fn on_page<T>(file: &SourceFile, result: Result<T>) -> Result<T> {
    match (result, file.page) {
        (Err(e), Some(page)) => Err(Error::Page {
            path: file.path.clone(),
            page: page.number,
            source: Box::new(e),
        }),
        (result, _) => result,
    }
}

/// Decodes slices of one [`Stack`], reusing its file buffers. One per thread.
#[derive(Debug)]
pub struct StackReader<'a> {
    stack: &'a Stack,
    decoder: SliceDecoder,
}

impl StackReader<'_> {
    /// Decodes slice `z` into `out`, reusing `out`'s allocation.
    ///
    /// # Errors
    /// As [`Stack::read_slice`].
    pub fn read_into(&mut self, z: u32, out: &mut Slice) -> Result<()> {
        let stack = self.stack;
        let file = stack.file(z)?;
        self.decoder.set_page(file.page.map(|p| p.ifd));
        let result = self.decoder.decode(&file.path, &stack.info, out);
        on_page(file, result)
    }

    /// Slice `z` as bands of rows read straight from its file, when the file is plain enough
    /// for it (an uncompressed gray TIFF in strips); `None` otherwise (decode it whole).
    ///
    /// # Errors
    /// The file's decoding errors, [`Error::SizeMismatch`] and
    /// [`Error::SampleTypeMismatch`] against the first slice.
    pub(crate) fn rows(&mut self, z: u32) -> Result<Option<rows::Rows>> {
        let stack = self.stack;
        let file = stack.file(z)?;
        self.decoder.set_page(file.page.map(|p| p.ifd));
        let result = self.decoder.rows(&file.path, &stack.info);
        on_page(file, result)
    }

    /// Counts `bytes` of a file read through [`StackReader::rows`].
    pub(crate) fn count_read(&mut self, bytes: u64) {
        self.decoder.count_read(bytes);
    }

    /// The stack this reader reads.
    pub fn stack(&self) -> &Stack {
        self.stack
    }

    /// Bytes of source files read so far by this reader.
    pub fn bytes_read(&self) -> u64 {
        self.decoder.bytes_read()
    }
}
