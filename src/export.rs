//! Writing a pyramid in other tools' layouts.
//!
//! [`export_ctharvester`] writes CTHarvester's layout, `OUT/<n>/<i:06>.tif` with n from 1 and
//! i from 0: one uncompressed single-page grayscale TIFF per slice, of the level's sample type.
//! The export is built in a hidden staging folder inside OUT and each level folder is moved into
//! place only when every level is complete, so a failed or interrupted export leaves OUT as it
//! was (earlier exports included) and never holds a half-written file.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tiff::encoder::{TiffEncoder, colortype};

use crate::cascade::{StreamOptions, StreamStats, stream_levels};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::geometry::{LevelInfo, LevelRule};
use crate::slice::{Pixels, Slice};
use crate::source::Stack;

/// Encoded slices waiting for the writer thread.
const WRITE_QUEUE: usize = 4;

/// Encoded-file buffers an export uses at most: the queue's, the one being written and the one
/// being encoded.
const ENCODE_BUFFERS: usize = WRITE_QUEUE + 2;

/// Prefix of the staging folder an export writes into before moving levels into place.
const STAGING_PREFIX: &str = ".lodcache-export";

/// The file an export leaves in OUT, saying OUT holds a lodcache export.
pub const EXPORT_MARKER: &str = ".lodcache-export.json";

/// What to export.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// Which levels exist. Default: edge 500.
    pub rule: LevelRule,
    /// Levels to write (1-based); `None` writes every level of the rule. Default: `None`.
    pub levels: Option<Vec<u32>>,
    /// Decoder threads; `None` for the streaming builder's default. Default: `None`.
    pub decode_threads: Option<usize>,
    /// The level-0 voxel size written into every file's resolution tags (level `n`'s is
    /// `2^n` times larger); `None` reads it from the stack ([`Stack::voxel_size`]), and
    /// nothing is written when the stack says nothing. Default: `None`.
    pub voxel_size: Option<crate::voxel::VoxelSize>,
}

/// What an export wrote.
#[derive(Debug, Clone)]
pub struct ExportReport {
    /// The levels written, with their sizes.
    pub levels: Vec<LevelInfo>,
    /// Files written.
    pub files: u64,
    /// Bytes written.
    pub bytes: u64,
    /// Bytes of source files read (0 when everything came from the cache).
    pub source_bytes: u64,
    /// Slices generated on the way (of every level the build passed through; 0 when
    /// everything came from the cache).
    pub generated: u64,
    /// Slices written that were already in the cache.
    pub from_cache: u64,
    /// The streaming build's figures, when the export ran one.
    pub stream: Option<StreamStats>,
}

/// Encodes `slice` as an uncompressed single-page grayscale TIFF into `buf` (cleared first).
/// `path` only names the file in errors.
pub(crate) fn encode_tiff(slice: &Slice, path: &Path, buf: &mut Vec<u8>) -> Result<()> {
    encode_tiff_at(slice, path, None, buf)
}

/// A resolution in pixels per centimetre as a TIFF rational, from a pixel size in µm.
fn per_cm(um: f64) -> tiff::encoder::Rational {
    let per_cm = 10_000.0 / um;
    // Three decimals where they fit a u32, whole pixels per centimetre otherwise.
    let n = (per_cm * 1000.0).round();
    if n <= f64::from(u32::MAX) {
        tiff::encoder::Rational {
            n: n as u32,
            d: 1000,
        }
    } else {
        tiff::encoder::Rational {
            n: per_cm.round().min(f64::from(u32::MAX)) as u32,
            d: 1,
        }
    }
}

/// [`encode_tiff`] with resolution tags in pixels per centimetre from `pixel` (`[x, y]` in
/// µm) when given.
pub(crate) fn encode_tiff_at(
    slice: &Slice,
    path: &Path,
    pixel: Option<[f64; 2]>,
    buf: &mut Vec<u8>,
) -> Result<()> {
    let Some([px, py]) = pixel else {
        return encode_tiff_plain(slice, path, buf);
    };
    buf.clear();
    let err = |e: tiff::TiffError| Error::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut enc = TiffEncoder::new(Cursor::new(buf)).map_err(err)?;
    let (w, h) = (slice.width(), slice.height());
    macro_rules! write {
        ($ty:ty, $v:expr) => {{
            let mut image = enc.new_image::<$ty>(w, h).map_err(err)?;
            image.resolution_unit(tiff::tags::ResolutionUnit::Centimeter);
            image.x_resolution(per_cm(px));
            image.y_resolution(per_cm(py));
            image.write_data($v)
        }};
    }
    match slice.pixels() {
        Pixels::U8(v) => write!(colortype::Gray8, v),
        Pixels::U16(v) => write!(colortype::Gray16, v),
        Pixels::F32(v) => write!(colortype::Gray32Float, v),
    }
    .map_err(err)
}

fn encode_tiff_plain(slice: &Slice, path: &Path, buf: &mut Vec<u8>) -> Result<()> {
    buf.clear();
    let err = |e: tiff::TiffError| Error::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    let mut enc = TiffEncoder::new(Cursor::new(buf)).map_err(err)?;
    let (w, h) = (slice.width(), slice.height());
    match slice.pixels() {
        Pixels::U8(v) => enc.write_image::<colortype::Gray8>(w, h, v),
        Pixels::U16(v) => enc.write_image::<colortype::Gray16>(w, h, v),
        Pixels::F32(v) => enc.write_image::<colortype::Gray32Float>(w, h, v),
    }
    .map_err(err)
}

/// The file of slice `z` of `level` in CTHarvester's layout under `out`.
pub fn ctharvester_path(out: impl AsRef<Path>, level: u32, z: u32) -> PathBuf {
    out.as_ref()
        .join(level.to_string())
        .join(format!("{z:06}.tif"))
}

/// Removes staging folders left in `out` by exports whose process is gone.
fn sweep_stale_staging(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let staging = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(STAGING_PREFIX));
        if staging && fsutil::is_stale_temp(&entry.path(), None) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Builds the pyramid of `stack` in one streaming pass and writes the chosen levels to `out` in
/// CTHarvester's layout. Level folders already in `out` are replaced, level by level, only after
/// the whole export succeeded; other entries of `out` are left alone.
///
/// An export never deletes or replaces anything it did not write: `out` must be missing,
/// empty, or an earlier export (it carries [`EXPORT_MARKER`], or holds only CTHarvester-layout
/// level folders), and every level folder it replaces must hold nothing but `<i:06>.tif`
/// files. Otherwise it refuses before writing anything.
///
/// # Errors
/// [`Error::InvalidArgument`] for a level outside the pyramid (naming the valid range) or an
/// `out` it refuses (naming what it found), any decoding error of the source (naming the file),
/// and [`Error::Io`]/[`Error::Encode`] naming the file that could not be written. On error
/// `out` is left as it was.
pub fn export_ctharvester(
    stack: &Stack,
    out: impl AsRef<Path>,
    options: &ExportOptions,
) -> Result<ExportReport> {
    let out = out.as_ref();
    let wanted = wanted_levels(stack, &options.rule, options.levels.as_deref())?;
    let all = stack.levels(&options.rule)?;
    let mut stream_opts = StreamOptions {
        rule: options.rule,
        max_level: wanted.last().copied(),
        ..StreamOptions::default()
    };
    if let Some(t) = options.decode_threads {
        stream_opts.decode_threads = t;
    }
    let mut stream = None;
    let voxel = options.voxel_size.clone().or_else(|| stack.voxel_size());
    let (files, bytes) = write_ctharvester(out, &wanted, voxel.as_ref(), |sink| {
        stream = Some(stream_levels(stack, &stream_opts, |level, z, slice| {
            if wanted.binary_search(&level).is_ok() {
                sink(level, z, slice)?;
            }
            Ok(())
        })?);
        Ok(())
    })?;
    Ok(ExportReport {
        levels: wanted.iter().map(|&l| all[l as usize]).collect(),
        files,
        bytes,
        source_bytes: stream.as_ref().map_or(0, |s| s.source_bytes),
        generated: stream
            .as_ref()
            .map_or(0, |s| s.produced.iter().sum::<u64>()),
        from_cache: 0,
        stream,
    })
}

/// The levels to export, sorted and deduplicated: `levels`, or every level >= 1.
///
/// # Errors
/// [`Error::InvalidArgument`] for a level outside the pyramid, naming the valid range.
pub(crate) fn wanted_levels(
    stack: &Stack,
    rule: &LevelRule,
    levels: Option<&[u32]>,
) -> Result<Vec<u32>> {
    let last = stack.levels(rule)?.len() as u32 - 1;
    let mut wanted: Vec<u32> = match levels {
        Some(l) => l.to_vec(),
        None => (1..=last).collect(),
    };
    wanted.sort_unstable();
    wanted.dedup();
    if let Some(&bad) = wanted.iter().find(|&&l| l == 0 || l > last) {
        let valid = if last == 0 {
            format!(
                "none: a {} x {} stack is not above the edge of {}",
                stack.info().width,
                stack.info().height,
                rule.edge
            )
        } else {
            format!("1..={last}")
        };
        return Err(Error::invalid(
            "export level",
            format!("{bad}; valid levels: {valid}"),
        ));
    }
    Ok(wanted)
}

/// Receives the slices to export: `(level, z, slice)`.
pub(crate) type ExportSink<'a> = dyn FnMut(u32, u32, &Slice) -> Result<()> + Send + 'a;

/// Writes CTHarvester's layout for `wanted` under `out`: `produce` hands every slice of those
/// levels to the sink it is given, in any order. Files go to a staging folder on a writer
/// thread; levels are moved into place only when everything succeeded. Returns files and
/// bytes written.
///
/// # Errors
/// `produce`'s error, or [`Error::Io`]/[`Error::Encode`] naming the file; `out` is then left as
/// it was.
pub(crate) fn write_ctharvester(
    out: &Path,
    wanted: &[u32],
    voxel: Option<&crate::voxel::VoxelSize>,
    produce: impl FnOnce(&mut ExportSink<'_>) -> Result<()>,
) -> Result<(u64, u64)> {
    check_out(out, wanted)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io("creating", out, e))?;
    sweep_stale_staging(out);
    let staging = out.join(format!(
        "{STAGING_PREFIX}{}{}",
        fsutil::TEMP_MARKER,
        fsutil::unique_suffix()
    ));
    let result = write_staged(out, &staging, wanted, voxel, produce);
    let _ = std::fs::remove_dir_all(&staging);
    if result.is_ok() && !wanted.is_empty() {
        write_marker(out, wanted)?;
    }
    result
}

/// Whether `name` is a file an export writes into a level folder: `<6 digits>.tif` (or one of
/// lodcache's temporary files for it, left by a killed writer).
fn is_export_file(name: &str) -> bool {
    let stem = name.split(fsutil::TEMP_MARKER).next().unwrap_or(name);
    stem.strip_suffix(".tif")
        .is_some_and(|digits| digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit()))
}

fn is_level_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
}

/// Refuses an `out` an export could damage, before anything is written: an export replaces the
/// level folders it writes, so each of those must hold nothing but files an export writes
/// (`<i:06>.tif`), and a non-empty `out` must be a previous export (lodcache's marker, or
/// CTHarvester's layout: level folders of `<i:06>.tif` files only). Nothing outside the level
/// folders it writes is ever touched.
fn check_out(out: &Path, wanted: &[u32]) -> Result<()> {
    let meta = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("reading", out, e)),
    };
    if !meta.is_dir() {
        // An I/O error (ENOTDIR), as creating a folder there would have given: bindings map it
        // to their OS error (Python's `NotADirectoryError`).
        return Err(Error::io(
            "using as the export folder (it exists and is not a folder)",
            out,
            not_a_directory(),
        ));
    }
    let marked = std::fs::symlink_metadata(out.join(EXPORT_MARKER)).is_ok_and(|m| m.is_file());
    let entries = std::fs::read_dir(out).map_err(|e| Error::io("listing", out, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("listing", out, e))?;
        let name = entry.file_name();
        let path = entry.path();
        let Some(name) = name.to_str() else {
            if marked {
                continue;
            }
            return Err(not_an_export(out, &path));
        };
        if name == EXPORT_MARKER || name.starts_with(STAGING_PREFIX) {
            continue;
        }
        let is_dir = std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        let level = is_level_name(name)
            .then(|| name.parse::<u32>().ok())
            .flatten();
        let replaced = level.is_some_and(|l| wanted.contains(&l));
        if !is_dir || level.is_none() {
            if marked && !replaced {
                continue;
            }
            return Err(not_an_export(out, &path));
        }
        if !replaced && marked {
            continue;
        }
        // A level folder: replaced by this export, or (without a marker) the sign that OUT is a
        // CTHarvester-layout export. Either way it must hold only export files.
        let files = std::fs::read_dir(&path).map_err(|e| Error::io("listing", &path, e))?;
        for file in files {
            let file = file.map_err(|e| Error::io("listing", &path, e))?;
            let regular = file.file_type().is_ok_and(|t| t.is_file());
            if !regular || !file.file_name().to_str().is_some_and(is_export_file) {
                return Err(Error::invalid(
                    "export folder",
                    format!(
                        "{:?} holds {:?}, which an export does not write; an export replaces \
                         whole level folders, so it will not touch this one (move that file, or \
                         export to an empty or new folder)",
                        path,
                        file.file_name()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// ENOTDIR where there is an errno (so bindings can map it), the portable kind elsewhere.
fn not_a_directory() -> std::io::Error {
    #[cfg(unix)]
    return std::io::Error::from_raw_os_error(rustix::io::Errno::NOTDIR.raw_os_error());
    #[cfg(not(unix))]
    return std::io::Error::from(std::io::ErrorKind::NotADirectory);
}

fn not_an_export(out: &Path, found: &Path) -> Error {
    Error::invalid(
        "export folder",
        format!(
            "{out:?} is not empty and is not an earlier export (it holds {:?}); export to an \
             empty or new folder",
            found.file_name().unwrap_or_default()
        ),
    )
}

/// Leaves lodcache's marker in `out`, merging the levels of earlier exports.
fn write_marker(out: &Path, wanted: &[u32]) -> Result<()> {
    let path = out.join(EXPORT_MARKER);
    let mut levels: Vec<u32> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v["levels"].as_array().map(|a| {
                a.iter()
                    .filter_map(|l| l.as_u64().and_then(|l| u32::try_from(l).ok()))
                    .collect()
            })
        })
        .unwrap_or_default();
    levels.extend_from_slice(wanted);
    levels.sort_unstable();
    levels.dedup();
    let marker = serde_json::json!({
        "written_by": format!("lodcache {}", env!("CARGO_PKG_VERSION")),
        "layout": "ctharvester",
        "levels": levels,
    });
    let bytes = serde_json::to_vec_pretty(&marker)
        .map_err(|e| Error::internal("export marker", e.to_string()))?;
    fsutil::write_atomic(&path, &bytes)
}

fn write_staged(
    out: &Path,
    staging: &Path,
    wanted: &[u32],
    voxel: Option<&crate::voxel::VoxelSize>,
    produce: impl FnOnce(&mut ExportSink<'_>) -> Result<()>,
) -> Result<(u64, u64)> {
    for &l in wanted {
        let dir = staging.join(l.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    }
    // The producer's thread encodes (a copy of the slice plus a header) and a writer thread
    // does the file system work, so that writing overlaps decoding and the kernel. Encoded
    // buffers go back and forth, never reallocated.
    let (files, bytes) = std::thread::scope(|scope| {
        let (to_writer, jobs) = mpsc::sync_channel::<(PathBuf, Vec<u8>)>(WRITE_QUEUE);
        let (to_encoder, returned) = mpsc::channel::<Vec<u8>>();
        let writer = scope.spawn(move || -> Result<(u64, u64)> {
            let (mut files, mut bytes) = (0u64, 0u64);
            for (path, buf) in jobs {
                // Straight to its name: the staging folder is moved into place only when
                // complete, so a file cut short by a crash is never seen in OUT (no temporary
                // name and rename per file).
                std::fs::write(&path, &buf).map_err(|e| Error::io("writing", &path, e))?;
                files += 1;
                bytes += buf.len() as u64;
                let _ = to_encoder.send(buf);
            }
            Ok((files, bytes))
        });
        // A bounded pool: the queue's buffers, the one being written and the one being
        // encoded. Once all exist, the encoder waits for one to come back rather than touch
        // fresh memory, so the export's memory does not depend on how far the writer lags.
        let mut made = 0;
        // Shared with the sink (it must be Send) so that the buffers left at the end can be
        // kept for the next export; never contended.
        let returned = std::sync::Mutex::new(returned);
        let returned_here = &returned;
        let produced = produce(&mut move |level, z, slice| {
            let path = ctharvester_path(staging, level, z);
            let mut buf = {
                let returned = returned_here
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match returned.try_recv() {
                    Ok(buf) => buf,
                    Err(_) if made < ENCODE_BUFFERS => {
                        made += 1;
                        // Kept from an earlier export of this process when there is one.
                        crate::cascade::pool::take_bytes(slice.pixels().as_bytes().len() + 4096)
                    }
                    // The writer stopped: its error is reported below.
                    Err(_) => returned.recv().unwrap_or_default(),
                }
            };
            let pixel = voxel.map(|v| {
                let [x, y, _] = v.at_level(level);
                [x, y]
            });
            encode_tiff_at(slice, &path, pixel, &mut buf)?;
            to_writer.send((path, buf)).map_err(|_| {
                Error::internal("export", "the writer thread stopped (its error follows)")
            })
        });
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::internal("export", "the writer thread panicked")));
        returned
            .into_inner()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .try_iter()
            .for_each(crate::cascade::pool::give_bytes);
        // A write error is the cause of a failed producer, so report it first.
        let counts = written?;
        produced?;
        Ok::<_, Error>(counts)
    })?;
    // Everything is on disk: move each level into place, the old one out of the way first.
    for &l in wanted {
        let target = out.join(l.to_string());
        let fresh = staging.join(l.to_string());
        let old = staging.join(format!("old-{l}"));
        let had_old = std::fs::symlink_metadata(&target).is_ok();
        if had_old {
            std::fs::rename(&target, &old)
                .map_err(|e| Error::io("moving the previous export aside", &target, e))?;
        }
        if let Err(e) = std::fs::rename(&fresh, &target) {
            if had_old {
                // Put the previous level back rather than lose it with the staging folder.
                let _ = std::fs::rename(&old, &target);
            }
            return Err(Error::io("moving the new level into place", &target, e));
        }
    }
    Ok((files, bytes))
}
