//! Writing a whole pyramid as an OME-Zarr store on disk, in one streaming pass.
//!
//! Every source slice is decoded once; the levels above are made from it in the same pass
//! ([`crate::cascade`]); each level keeps only the slices of its current row of chunks (one
//! chunk depth, or one shard depth when sharded), which are cut into chunks, compressed on the
//! rayon pool and written by a writer thread as soon as the row is complete. Memory is
//! therefore about `chunk depth x (level-0 slice + level-1 slice + ...)`, i.e. 1.15 times the
//! chunk depth in level-0 slices, plus the read-ahead: small for 1-slice chunks, 585 MiB for
//! 64-deep chunks of a 2048^2 16-bit stack.
//!
//! The store is written into a staging folder beside `out` (in its parent folder) and moved
//! into place when complete, with its metadata; a failed, cancelled or killed export leaves
//! `out` as it was. An existing `out` is replaced only when it is an earlier lodcache OME-Zarr
//! export (it carries [`ZARR_MARKER`]) or an empty folder.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};

use rayon::prelude::*;

use super::{ChunkShape, Compression, RowFn, Window, ZarrLayout, ZarrVersion};
use crate::cascade::{Returned, StreamOptions, StreamStats, stream_with_source};
use crate::error::{Error, Result};
use crate::fsutil;
use crate::geometry::{LevelInfo, LevelRule};
use crate::slice::{Pixels, Slice};
use crate::source::Stack;
use crate::voxel::VoxelSize;

/// The file an OME-Zarr export leaves in its store, saying it is lodcache's to replace.
pub const ZARR_MARKER: &str = ".lodcache-export.json";

/// Encoded chunks waiting for the writer thread.
const WRITE_QUEUE: usize = 16;

/// What and how to write.
#[derive(Debug, Clone, Default)]
pub struct OmeZarrOptions {
    /// Zarr v2 (OME-NGFF 0.4) or v3 (OME-Zarr 0.5). Default: v3.
    pub version: ZarrVersion,
    /// Chunk shape (cut to each level's shape). Default: `1 x 512 x 512`.
    pub chunk: ChunkShape,
    /// Chunk compression. Default: Blosc with LZ4.
    pub compression: Compression,
    /// Zarr v3 sharding: files of this shape (a multiple of the chunk shape), each holding
    /// many chunks. Default: none (one file per chunk).
    pub shard: Option<ChunkShape>,
    /// Which levels exist. Default: edge 500.
    pub rule: LevelRule,
    /// Decoder threads; `None` for the streaming builder's default. Default: `None`.
    pub decode_threads: Option<usize>,
    /// The voxel size to write; `None` reads it from the stack ([`Stack::voxel_size`]).
    /// Default: `None`.
    pub voxel_size: Option<VoxelSize>,
}

/// What an OME-Zarr export wrote.
#[derive(Debug, Clone)]
pub struct OmeZarrReport {
    /// The levels written, level 0 first.
    pub levels: Vec<LevelInfo>,
    /// Chunk (or shard) files written.
    pub files: u64,
    /// Bytes of chunk files written.
    pub bytes: u64,
    /// Bytes of samples those files hold, uncompressed (edge padding included).
    pub raw_bytes: u64,
    /// The voxel size written, if known.
    pub voxel_size: Option<VoxelSize>,
    /// The display window written (0.5 and 99.5 percentiles of the coarsest level).
    pub window: Option<Window>,
    /// Most bytes of level slices held at once for rows of chunks.
    pub peak_held_bytes: u64,
    /// The streaming build's figures.
    pub stream: StreamStats,
}

/// Cancellation and progress of an export (from [`crate::Request`]).
pub(crate) struct Hooks<'a> {
    pub(crate) check: &'a (dyn Fn() -> Result<()> + Sync),
    pub(crate) progress: &'a (dyn Fn(u64, u64) + Sync),
    /// The pool chunks are compressed on (`None`: the current one).
    pub(crate) pool: Option<&'a rayon::ThreadPool>,
    /// Called after this many source slices with the staging folder (a test's way in).
    #[cfg(any(test, feature = "test-utils"))]
    pub(crate) fail_after: Option<u32>,
}

/// Writes the pyramid of `stack` as an OME-Zarr store at `out` (conventionally named
/// `*.ome.zarr`): every level, level 0 included, in one streaming pass over the source (see
/// the module docs).
///
/// # Errors
/// [`Error::InvalidArgument`] for a bad chunk or shard shape, or an `out` that exists and is
/// neither empty nor an earlier lodcache OME-Zarr export (nothing is written then); decoding
/// errors naming the source file; [`Error::Io`] naming the file that could not be written.
/// On error `out` is left as it was.
pub fn export_ome_zarr(
    stack: &Stack,
    out: &Path,
    options: &OmeZarrOptions,
) -> Result<OmeZarrReport> {
    let hooks = Hooks {
        check: &|| Ok(()),
        progress: &|_, _| {},
        pool: None,
        #[cfg(any(test, feature = "test-utils"))]
        fail_after: None,
    };
    export_with(stack, out, options, &hooks)
}

/// [`export_ome_zarr`] failing after `after` source slices (tests of atomicity).
///
/// # Errors
/// Always, once `after` source slices were written; as [`export_ome_zarr`] before.
#[cfg(any(test, feature = "test-utils"))]
pub fn export_ome_zarr_failing_after(
    stack: &Stack,
    out: &Path,
    options: &OmeZarrOptions,
    after: u32,
) -> Result<OmeZarrReport> {
    let hooks = Hooks {
        check: &|| Ok(()),
        progress: &|_, _| {},
        pool: None,
        fail_after: Some(after),
    };
    export_with(stack, out, options, &hooks)
}

/// The layout an export of `stack` writes (without its window, known at the end).
fn layout_of(stack: &Stack, options: &OmeZarrOptions) -> Result<ZarrLayout> {
    let levels = stack.levels(&options.rule)?;
    let mut layout = ZarrLayout::new(&levels, options.chunk, options.compression)?;
    if let Some(shard) = options.shard {
        if options.version != ZarrVersion::V3 {
            return Err(Error::invalid(
                "shards",
                "sharding needs Zarr v3 (--zarr-version 3)",
            ));
        }
        layout = layout.with_shards(shard)?;
    }
    let voxel = options.voxel_size.clone().or_else(|| stack.voxel_size());
    let name = stack
        .dir()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(layout.with_voxel_size(voxel).with_name(name))
}

pub(crate) fn export_with(
    stack: &Stack,
    out: &Path,
    options: &OmeZarrOptions,
    hooks: &Hooks<'_>,
) -> Result<OmeZarrReport> {
    let layout = layout_of(stack, options)?;
    check_out(out)?;
    let name = out
        .file_name()
        .ok_or_else(|| Error::invalid("export folder", format!("{out:?} has no folder name")))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    sweep_stale_staging(&parent);
    let staging = parent.join(format!(
        ".{}.lodcache-staging{}{}",
        name.to_string_lossy(),
        fsutil::TEMP_MARKER,
        fsutil::unique_suffix()
    ));
    std::fs::create_dir(&staging).map_err(|e| Error::io("creating", &staging, e))?;
    let result = write_store(stack, &staging, &layout, options, hooks)
        .and_then(|report| move_into_place(&staging, out).map(|()| report));
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Removes staging folders of exports whose process is gone from `parent`.
fn sweep_stale_staging(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let is_ours = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with('.') && n.contains(".lodcache-staging"));
        if is_ours && fsutil::is_stale_temp(&entry.path(), None) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Refuses an `out` that an export would damage: anything but a missing path, an empty
/// folder or an earlier lodcache OME-Zarr export.
fn check_out(out: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(out) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io("reading", out, e)),
    };
    if !meta.is_dir() {
        return Err(Error::invalid(
            "export folder",
            format!("{out:?} exists and is not a folder"),
        ));
    }
    let marker = out.join(ZARR_MARKER);
    let ours = std::fs::symlink_metadata(&marker).is_ok_and(|m| m.is_file())
        && std::fs::read(&marker)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|v| v["layout"] == "ome-zarr");
    if ours {
        return Ok(());
    }
    let mut entries = std::fs::read_dir(out).map_err(|e| Error::io("listing", out, e))?;
    if let Some(first) = entries.next() {
        let first = first.map_err(|e| Error::io("listing", out, e))?;
        return Err(Error::invalid(
            "export folder",
            format!(
                "{out:?} is not empty and is not an earlier lodcache OME-Zarr export (it holds \
                 {:?} and no {ZARR_MARKER}); export to an empty or new folder",
                first.file_name()
            ),
        ));
    }
    Ok(())
}

/// Moves the finished store into place: `out`'s previous content (an earlier export or an
/// empty folder, checked before) is moved aside first and removed after; if the move fails it
/// is put back.
fn move_into_place(staging: &Path, out: &Path) -> Result<()> {
    // Checked again: another process may have put something there meanwhile.
    check_out(out)?;
    let old = staging.with_file_name(format!(
        "{}.old",
        staging.file_name().unwrap_or_default().to_string_lossy()
    ));
    let had_old = std::fs::symlink_metadata(out).is_ok();
    if had_old {
        std::fs::rename(out, &old)
            .map_err(|e| Error::io("moving the previous export aside", out, e))?;
    }
    if let Err(e) = std::fs::rename(staging, out) {
        if had_old {
            let _ = std::fs::rename(&old, out);
        }
        return Err(Error::io("moving the new store into place", out, e));
    }
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

/// A level's current row of chunks (or shards) along z.
#[derive(Debug, Default)]
struct Row {
    slices: Vec<Arc<Slice>>,
}

/// What the writer thread is given: a path relative to the store, and its bytes.
type Job = (PathBuf, Vec<u8>);

/// Encoded-chunk buffers going back from the writer to the encoders: reused, so that the
/// export touches fresh memory only for the buffers in flight (on the development VM, a fresh
/// buffer per chunk cost more system time than writing the files).
#[derive(Debug, Default)]
struct Buffers(std::sync::Mutex<Vec<Vec<u8>>>);

impl Buffers {
    fn take(&self) -> Vec<u8> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    fn put(&self, buf: Vec<u8>) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(buf);
    }
}

/// Receives every slice of every level and writes rows of chunks as they complete.
pub(super) struct Sinker<'a, 'h> {
    pub(super) layout: &'a ZarrLayout,
    version: ZarrVersion,
    to_writer: mpsc::SyncSender<Job>,
    buffers: &'a Buffers,
    hooks: &'a Hooks<'h>,
    pub(super) returned: &'a Returned,
    rows: Vec<Row>,
    coarsest: u32,
    coarse: Vec<u8>,
    pub(super) held: u64,
    pub(super) peak_held: u64,
    raw_bytes: u64,
    sources_done: u32,
    depth: u32,
}

impl Sinker<'_, '_> {
    /// Takes slice `z` of `level`; writes its row of chunks when it completes it.
    pub(super) fn take(&mut self, level: u32, z: u32, slice: &Arc<Slice>) -> Result<()> {
        (self.hooks.check)()?;
        let l = *self.layout.level(level)?;
        if level == self.coarsest {
            self.coarse.extend_from_slice(slice.pixels().as_bytes());
        }
        let row = &mut self.rows[level as usize];
        row.slices.push(Arc::clone(slice));
        self.held += l.info.slice_bytes() as u64;
        self.peak_held = self.peak_held.max(self.held);
        let file_z = l.file_chunk().z;
        let first = z - z % file_z;
        if row.slices.len() as u32 == file_z.min(l.info.depth - first) {
            let slices = std::mem::take(&mut row.slices);
            let src_row = l.info.slice_bytes() / l.info.height as usize;
            let rows = |z: u32, y: u32| -> &[u8] {
                let bytes = slices[(z - first) as usize].pixels().as_bytes();
                &bytes[y as usize * src_row..][..src_row]
            };
            self.write_row(level, first / file_z, &rows)?;
            self.held -= (slices.len() * l.info.slice_bytes()) as u64;
            let mut back = self.returned.borrow_mut();
            for s in slices {
                if let Ok(s) = Arc::try_unwrap(s) {
                    back.push((level, s));
                }
            }
        }
        if level == 0 {
            self.sources(1)?;
        }
        Ok(())
    }

    /// Counts `n` source slices written: progress, and a test's injected failure.
    pub(super) fn sources(&mut self, n: u32) -> Result<()> {
        #[cfg(any(test, feature = "test-utils"))]
        let before = self.sources_done;
        self.sources_done += n;
        (self.hooks.progress)(u64::from(self.sources_done), u64::from(self.depth));
        #[cfg(any(test, feature = "test-utils"))]
        if let Some(after) = self.hooks.fail_after
            && before < after
            && self.sources_done >= after
        {
            return Err(Error::internal(
                "export",
                "failure injected by a test after writing some chunks",
            ));
        }
        Ok(())
    }

    /// Writes the files of row `iz` of `level` whose rows `rows` gives, for file rows `ys`
    /// (all of them: `None`).
    fn write_row(&mut self, level: u32, iz: u32, rows: &RowFn<'_>) -> Result<()> {
        let l = *self.layout.level(level)?;
        let [_, gy, _] = l.file_grid();
        self.write_files(level, iz, 0..gy, rows)
    }

    /// Runs `f` on the pool chunks are compressed on.
    pub(super) fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match self.hooks.pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// Cuts, compresses and hands to the writer the files of file rows `ys` of row `iz` of
    /// `level`, on the rayon pool.
    pub(super) fn write_files(
        &mut self,
        level: u32,
        iz: u32,
        ys: std::ops::Range<u32>,
        rows: &RowFn<'_>,
    ) -> Result<()> {
        self.write_files_with(level, iz..iz + 1, ys, rows, || ())
    }

    /// [`Sinker::write_files`] for the file rows `ys` of rows `izs`, running `alongside` on
    /// the pool meanwhile (so that other work on the same rows keeps every thread busy while
    /// the files are compressed); returns what `alongside` returned.
    pub(super) fn write_files_with<R: Send>(
        &mut self,
        level: u32,
        izs: std::ops::Range<u32>,
        ys: std::ops::Range<u32>,
        rows: &RowFn<'_>,
        alongside: impl FnOnce() -> R + Send,
    ) -> Result<R> {
        (self.hooks.check)()?;
        let l = *self.layout.level(level)?;
        let [_, _, gx] = l.file_grid();
        let (layout, version, buffers) = (self.layout, self.version, self.buffers);
        let to_writer = &self.to_writer;
        let files: Vec<[u32; 3]> = izs
            .flat_map(|z| {
                let ys = ys.clone();
                ys.flat_map(move |y| (0..gx).map(move |x| [z, y, x]))
            })
            .collect();
        let encode = || {
            let compress = || {
                files.par_iter().try_for_each(|&index| -> Result<()> {
                    let mut buf = buffers.take();
                    match l.shard {
                        None => layout.encode_chunk_rows(level, index, rows, &mut buf)?,
                        Some(_) => encode_shard_rows(layout, level, index, rows, &mut buf)?,
                    }
                    let key = match version {
                        ZarrVersion::V2 => ZarrLayout::chunk_key_v2(level, index),
                        ZarrVersion::V3 => ZarrLayout::chunk_key_v3(level, index),
                    };
                    to_writer.send((PathBuf::from(key), buf)).map_err(|_| {
                        Error::internal("export", "the writer thread stopped (its error follows)")
                    })
                })
            };
            rayon::join(compress, alongside)
        };
        let (written, other) = self.install(encode);
        written?;
        let file = l.file_chunk();
        let per_file = u64::from(file.z) * u64::from(file.y) * u64::from(file.x);
        self.raw_bytes += files.len() as u64 * per_file * l.info.sample_type.bytes() as u64;
        Ok(other)
    }
}

fn write_store(
    stack: &Stack,
    staging: &Path,
    layout: &ZarrLayout,
    options: &OmeZarrOptions,
    hooks: &Hooks<'_>,
) -> Result<OmeZarrReport> {
    let n_levels = layout.levels().len();
    let mut stream_opts = StreamOptions {
        rule: options.rule,
        ..StreamOptions::default()
    };
    if let Some(t) = options.decode_threads {
        stream_opts.decode_threads = t;
    }
    let returned = Returned::default();
    let buffers = Buffers::default();
    let buffers = &buffers;

    let (stream, sinker, (files, bytes)) = std::thread::scope(|scope| {
        let (to_writer, jobs) = mpsc::sync_channel::<Job>(WRITE_QUEUE);
        let writer = scope.spawn(move || -> Result<(u64, u64)> {
            let (mut files, mut bytes) = (0u64, 0u64);
            let mut made: HashSet<PathBuf> = HashSet::new();
            for (rel, buf) in jobs {
                let path = staging.join(&rel);
                if let Some(dir) = path.parent()
                    && !made.contains(dir)
                {
                    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
                    made.insert(dir.to_path_buf());
                }
                std::fs::write(&path, &buf).map_err(|e| Error::io("writing", &path, e))?;
                files += 1;
                bytes += buf.len() as u64;
                buffers.put(buf);
            }
            Ok((files, bytes))
        });
        let mut sinker = Sinker {
            layout,
            version: options.version,
            to_writer,
            buffers,
            hooks,
            returned: &returned,
            rows: (0..n_levels).map(|_| Row::default()).collect(),
            coarsest: n_levels as u32 - 1,
            coarse: Vec::new(),
            held: 0,
            peak_held: 0,
            raw_bytes: 0,
            sources_done: 0,
            depth: stack.depth(),
        };
        let streamed = match super::banded::produce(stack, &stream_opts, &mut sinker) {
            Ok(Some(stats)) => Ok(stats),
            Ok(None) => stream_with_source(stack, &stream_opts, &returned, |level, z, slice| {
                sinker.take(level, z, slice)
            }),
            Err(e) => Err(e),
        };
        let Sinker {
            to_writer,
            coarse,
            peak_held,
            raw_bytes,
            ..
        } = sinker;
        drop(to_writer);
        let written = writer
            .join()
            .unwrap_or_else(|_| Err(Error::internal("export", "the writer thread panicked")));
        // A write error is the cause of a failed producer, so report it first.
        let counts = written?;
        Ok::<_, Error>((streamed?, (coarse, peak_held, raw_bytes), counts))
    })?;
    let (coarse, peak_held, raw_bytes) = sinker;

    let ty = stack.info().sample_type;
    let window = Window::of_volume(&pixels_of(ty, &coarse));
    let layout = layout.clone().with_window(window);
    write_metadata(staging, &layout, options.version)?;
    Ok(OmeZarrReport {
        levels: layout.levels().iter().map(|l| l.info).collect(),
        files,
        bytes,
        raw_bytes,
        voxel_size: layout.voxel_size().cloned(),
        window,
        peak_held_bytes: peak_held,
        stream,
    })
}

fn pixels_of(ty: crate::SampleType, bytes: &[u8]) -> Pixels {
    let mut p = Pixels::zeroed(ty, bytes.len() / ty.bytes());
    p.as_bytes_mut().copy_from_slice(bytes);
    p
}

/// The bytes of shard `index` of `level` (Zarr v3 `sharding_indexed`): its chunks in C order
/// of the shard's chunk grid, then the index (offset and length of each chunk as little-endian
/// u64, `u64::MAX` for chunks wholly outside the array) and the index's CRC-32C. `rows` gives
/// the level's rows (see [`ZarrLayout::raw_chunk_rows`]).
pub(crate) fn encode_shard_rows(
    layout: &ZarrLayout,
    level: u32,
    [sz, sy, sx]: [u32; 3],
    rows: &RowFn<'_>,
    out: &mut Vec<u8>,
) -> Result<()> {
    let l = *layout.level(level)?;
    let (c, s) = (l.chunk, l.file_chunk());
    let per = [s.z / c.z, s.y / c.y, s.x / c.x];
    let [gz, gy, gx] = l.grid();
    out.clear();
    let mut index = Vec::with_capacity((per[0] * per[1] * per[2]) as usize * 16 + 4);
    let mut buf = Vec::new();
    for dz in 0..per[0] {
        for dy in 0..per[1] {
            for dx in 0..per[2] {
                let ci = [sz * per[0] + dz, sy * per[1] + dy, sx * per[2] + dx];
                if ci[0] >= gz || ci[1] >= gy || ci[2] >= gx {
                    index.extend_from_slice(&u64::MAX.to_le_bytes());
                    index.extend_from_slice(&u64::MAX.to_le_bytes());
                    continue;
                }
                layout.encode_chunk_rows(level, ci, rows, &mut buf)?;
                index.extend_from_slice(&(out.len() as u64).to_le_bytes());
                index.extend_from_slice(&(buf.len() as u64).to_le_bytes());
                out.extend_from_slice(&buf);
            }
        }
    }
    let crc = crc32c(&index);
    out.extend_from_slice(&index);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// CRC-32C (Castagnoli), as Zarr v3's `crc32c` codec: reflected, initial and final value
/// `0xFFFFFFFF`.
pub(crate) fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut t = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 != 0 {
                    0x82F6_3B78 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[i] = c;
            i += 1;
        }
        t
    };
    let mut crc = !0u32;
    for &b in data {
        crc = TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    !crc
}

/// Writes the store's metadata documents and lodcache's marker.
fn write_metadata(staging: &Path, layout: &ZarrLayout, version: ZarrVersion) -> Result<()> {
    let write = |rel: &str, v: &serde_json::Value| -> Result<()> {
        let path = staging.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
        }
        let bytes = serde_json::to_vec_pretty(v)
            .map_err(|e| Error::internal("zarr metadata", e.to_string()))?;
        std::fs::write(&path, bytes).map_err(|e| Error::io("writing", &path, e))
    };
    match version {
        ZarrVersion::V2 => {
            write(".zgroup", &layout.zgroup())?;
            write(".zattrs", &layout.zattrs())?;
            for l in layout.levels() {
                let n = l.info.level;
                write(&format!("{n}/.zarray"), &layout.zarray(n)?)?;
            }
        }
        ZarrVersion::V3 => {
            write("zarr.json", &layout.group_json())?;
            for l in layout.levels() {
                let n = l.info.level;
                write(&format!("{n}/zarr.json"), &layout.array_json(n)?)?;
            }
        }
    }
    let marker = serde_json::json!({
        "written_by": format!("lodcache {}", env!("CARGO_PKG_VERSION")),
        "layout": "ome-zarr",
        "zarr_version": match version { ZarrVersion::V2 => 2, ZarrVersion::V3 => 3 },
    });
    write(ZARR_MARKER, &marker)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_matches_the_standard_check_value() {
        // The CRC-32C check value of "123456789" (RFC 3720, appendix B.4).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
    }
}
