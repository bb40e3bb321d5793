//! The pages of a multi-page TIFF (an ImageJ/Fiji stack, an OME-TIFF): listed once, by the
//! offset of each page's image file directory, so that each page can then be read on its own
//! (see `SliceDecoder::set_page`).

use std::path::{Path, PathBuf};

use super::decode::open_regular;
use crate::error::{Error, Result};

/// Pages beyond this are refused (a slice index is a u32).
const MAX_PAGES: usize = u32::MAX as usize;

/// Whether `ext` names a TIFF (compared without case).
pub(super) fn is_tiff_name(ext: &str) -> bool {
    ext.eq_ignore_ascii_case("tif") || ext.eq_ignore_ascii_case("tiff")
}

fn decoder(path: &Path) -> Result<tiff::decoder::Decoder<std::io::BufReader<std::fs::File>>> {
    let (file, _) = open_regular(path)?;
    tiff::decoder::Decoder::new(std::io::BufReader::new(file)).map_err(|e| Error::decode(path, e))
}

/// Whether the TIFF at `path` has more than one page (reads two directories at most). A file
/// that is not a TIFF has one "page": its own decoder says what is wrong with it later.
pub(super) fn count_at_least_two(path: &Path) -> Result<bool> {
    let Ok(dec) = decoder(path) else {
        return Ok(false);
    };
    Ok(dec.more_images())
}

/// The one TIFF file of `dir` (not hidden, any name) when it holds exactly one, whatever
/// else it holds that is not an image.
pub(super) fn lone_tiff(dir: &Path) -> Option<PathBuf> {
    let mut tiffs = std::fs::read_dir(dir).ok()?.flatten().filter(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        !name.starts_with('.')
            && name
                .rsplit_once('.')
                .is_some_and(|(_, ext)| is_tiff_name(ext))
            && std::fs::metadata(e.path()).is_ok_and(|m| m.is_file())
    });
    let first = tiffs.next()?;
    tiffs.next().is_none().then(|| first.path())
}

/// The directory offset of every page of the TIFF at `path`, in file order.
///
/// # Errors
/// Decoding errors of the file; a page whose directory cannot be read is named.
pub(super) fn list(path: &Path) -> Result<Vec<u64>> {
    let mut dec = decoder(path)?;
    let mut ifds = Vec::new();
    let first = dec
        .ifd_pointer()
        .ok_or_else(|| Error::decode(path, "no image directory"))?;
    ifds.push(first.0);
    while dec.more_images() {
        if ifds.len() >= MAX_PAGES {
            return Err(Error::decode(path, "more than 2^32 - 1 pages"));
        }
        dec.next_image().map_err(|e| Error::Page {
            path: path.to_path_buf(),
            page: ifds.len() as u32,
            source: Box::new(Error::decode(path, e)),
        })?;
        let ifd = dec
            .ifd_pointer()
            .ok_or_else(|| Error::decode(path, "a page without a directory"))?;
        ifds.push(ifd.0);
    }
    Ok(ifds)
}
