//! The pyramid as OME-Zarr (Zarr v2 with OME-NGFF 0.4, Zarr v3 with OME-Zarr 0.5) and as
//! Neuroglancer precomputed: the layout, every metadata document, and the bytes of every chunk.
//!
//! A [`ZarrLayout`] is plain data made from a pyramid's levels: what an HTTP server needs to
//! answer any key of the three stores, and what [`export_ome_zarr`] writes to disk. Nothing
//! here reads slices: a chunk's bytes are a pure function of the level's slices it covers
//! ([`ZarrLayout::encode_chunk`]), which the caller gets from [`crate::Pyramid::slice`] (level
//! 0 included) and may cache as it likes, or of the bands of their rows the chunk covers
//! ([`ZarrLayout::encode_file_bands`]), which at level 0 the caller may read alone
//! ([`crate::Pyramid::source_rows`]) instead of whole slices.
//!
//! # Layout
//! - Array `n` is level `n` of the pyramid (`"0"` is the source stack), axes `z, y, x`.
//! - Chunks are `1 x 512 x 512` by default ([`ChunkShape`]), cut to the level's shape where the
//!   level is smaller. Zarr chunks are always whole (edge chunks padded with 0, the fill value)
//!   in C order; precomputed chunks stop at the volume's edge and are in Fortran order of
//!   `x, y, z` (which is the same byte order as C order of `z, y, x`).
//! - A level-`n` voxel is the mean of a `2^n` block of source voxels, so its centre sits
//!   `(2^n - 1) / 2` source voxels from the centre of the block's first voxel: OME-Zarr's
//!   `translation` (voxel centres) is `(2^n - 1) / 2` level-0 voxels on each axis and its
//!   `scale` is `2^n` level-0 voxels; precomputed places voxel corners, so its `voxel_offset`
//!   is 0 at every scale. With a known [`VoxelSize`] both are in micrometres (precomputed:
//!   nanometres); without one, in level-0 voxels (and the axes carry no unit).
//! - The `omero` block's window is the 0.5 and 99.5 percentiles of the coarsest level
//!   ([`Window::of_volume`]).

mod banded;
mod compress;
pub(crate) mod export;
mod keys;

use std::ops::Range;

use serde_json::{Value, json};

pub use compress::{Compression, ZSTD_DEFAULT_LEVEL};
#[cfg(any(test, feature = "test-utils"))]
pub use export::export_ome_zarr_failing_after;
pub use export::{OmeZarrOptions, OmeZarrReport, ZARR_MARKER, export_ome_zarr};
pub use keys::{Node, PrecomputedNode};

use crate::error::{Error, Result};
use crate::geometry::LevelInfo;
use crate::slice::{Pixels, SampleType, Slice};
use crate::voxel::VoxelSize;

/// Which Zarr format a store is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZarrVersion {
    /// Zarr v2 with OME-NGFF 0.4 metadata (`.zgroup`, `.zattrs`, `<n>/.zarray`).
    V2,
    /// Zarr v3 with OME-Zarr 0.5 metadata (`zarr.json` at every node).
    #[default]
    V3,
}

impl ZarrVersion {
    /// Parses `2` or `3`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for anything else.
    pub fn parse(s: &str) -> Result<ZarrVersion> {
        match s.trim() {
            "2" => Ok(ZarrVersion::V2),
            "3" => Ok(ZarrVersion::V3),
            other => Err(Error::invalid(
                "zarr version",
                format!("{other:?}; valid: 2, 3"),
            )),
        }
    }
}

/// A chunk shape in samples, `z x y x x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkShape {
    /// Slices per chunk.
    pub z: u32,
    /// Rows per chunk.
    pub y: u32,
    /// Columns per chunk.
    pub x: u32,
}

impl Default for ChunkShape {
    /// One slice, 512 x 512: what a viewer of slices asks for.
    fn default() -> Self {
        ChunkShape {
            z: 1,
            y: 512,
            x: 512,
        }
    }
}

/// Largest chunk in bytes (the Blosc container's limit is 2 GiB; a chunk is held in memory
/// whole, several at once when written).
pub const MAX_CHUNK_BYTES: u64 = 256 << 20;

impl ChunkShape {
    /// A chunk shape `z x y x x`.
    pub fn new(z: u32, y: u32, x: u32) -> ChunkShape {
        ChunkShape { z, y, x }
    }

    /// Parses `Z,Y,X` (e.g. `1,512,512` or `64,64,64`).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] naming the value unless it is three whole numbers above 0.
    pub fn parse(s: &str) -> Result<ChunkShape> {
        let parts: Vec<Option<u32>> = s
            .split(',')
            .map(|p| p.trim().parse::<u32>().ok().filter(|&v| v > 0))
            .collect();
        match parts[..] {
            [Some(z), Some(y), Some(x)] => Ok(ChunkShape { z, y, x }),
            _ => Err(Error::invalid(
                "chunk shape",
                format!("{s:?}; expected Z,Y,X with three whole numbers above 0, e.g. 1,512,512"),
            )),
        }
    }

    fn as_array(self) -> [u32; 3] {
        [self.z, self.y, self.x]
    }

    fn samples(self) -> u64 {
        u64::from(self.z) * u64::from(self.y) * u64::from(self.x)
    }
}

/// A display window: the range of sample values shown from black to white.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// Value shown black.
    pub start: f64,
    /// Value shown white.
    pub end: f64,
}

/// Percentiles of the window: 0.5 % and 99.5 %.
const WINDOW_PERCENTILES: (f64, f64) = (0.005, 0.995);

impl Window {
    /// The 0.5 and 99.5 percentiles of `pixels` (the coarsest level, say); `None` when empty.
    /// Exact for 8- and 16-bit samples (a histogram), and for float samples (a sorted copy).
    pub fn of_volume(pixels: &Pixels) -> Option<Window> {
        let n = pixels.len();
        if n == 0 {
            return None;
        }
        let rank = |p: f64| ((n - 1) as f64 * p).round() as usize;
        let (lo, hi) = (rank(WINDOW_PERCENTILES.0), rank(WINDOW_PERCENTILES.1));
        let from_histogram = |hist: &[u64]| {
            let at = |r: usize| {
                let mut seen = 0u64;
                for (v, &c) in hist.iter().enumerate() {
                    seen += c;
                    if seen > r as u64 {
                        return v as f64;
                    }
                }
                (hist.len() - 1) as f64
            };
            Window {
                start: at(lo),
                end: at(hi),
            }
        };
        Some(match pixels {
            Pixels::U8(v) => {
                let mut hist = vec![0u64; 256];
                v.iter().for_each(|&s| hist[usize::from(s)] += 1);
                from_histogram(&hist)
            }
            Pixels::U16(v) => {
                let mut hist = vec![0u64; 65536];
                v.iter().for_each(|&s| hist[usize::from(s)] += 1);
                from_histogram(&hist)
            }
            Pixels::F32(v) => {
                let mut sorted: Vec<f32> = v.iter().copied().filter(|x| x.is_finite()).collect();
                if sorted.is_empty() {
                    return None;
                }
                sorted.sort_by(f32::total_cmp);
                let m = sorted.len() - 1;
                let at = |p: f64| f64::from(sorted[(m as f64 * p).round() as usize]);
                Window {
                    start: at(WINDOW_PERCENTILES.0),
                    end: at(WINDOW_PERCENTILES.1),
                }
            }
        })
    }
}

/// One array of a [`ZarrLayout`]: a pyramid level with its chunk shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZarrLevel {
    /// The pyramid level.
    pub info: LevelInfo,
    /// Its chunk shape: the layout's, cut to the level's shape.
    pub chunk: ChunkShape,
    /// Its shard shape (Zarr v3 sharding), a multiple of `chunk`; `None` without sharding.
    pub shard: Option<ChunkShape>,
}

impl ZarrLevel {
    /// Shape `[depth, height, width]`.
    pub fn shape(&self) -> [u64; 3] {
        [
            u64::from(self.info.depth),
            u64::from(self.info.height),
            u64::from(self.info.width),
        ]
    }

    /// The shape of the grid of whole files: shards when sharded, else chunks.
    pub fn file_chunk(&self) -> ChunkShape {
        self.shard.unwrap_or(self.chunk)
    }

    /// Chunks along `z, y, x`.
    pub fn grid(&self) -> [u32; 3] {
        grid_of(self.info, self.chunk)
    }

    /// Files along `z, y, x` (shards when sharded, else chunks).
    pub fn file_grid(&self) -> [u32; 3] {
        grid_of(self.info, self.file_chunk())
    }

    /// The samples chunk `index` (`z, y, x`) covers, cut at the level's edge; `None` when the
    /// index is outside the grid.
    pub fn chunk_ranges(&self, index: [u32; 3]) -> Option<[Range<u32>; 3]> {
        ranges_of(self.info, self.chunk, index)
    }

    /// The samples file `index` (`z, y, x` in [`ZarrLevel::file_grid`]) covers, cut at the
    /// level's edge: a shard's when sharded, else a chunk's; `None` when the index is outside
    /// the grid. Its y range is the rows [`ZarrLayout::encode_file_bands`] needs.
    pub fn file_ranges(&self, index: [u32; 3]) -> Option<[Range<u32>; 3]> {
        ranges_of(self.info, self.file_chunk(), index)
    }

    /// The slices (z range) chunk row `iz` covers.
    pub fn chunk_slices(&self, iz: u32) -> Option<Range<u32>> {
        ranges_of(self.info, self.chunk, [iz, 0, 0]).map(|[z, _, _]| z)
    }

    /// The slices (z range) file row `iz` covers: shards when sharded, else chunks (what
    /// [`ZarrLayout::encode_file`] needs for the files of [`Node::Chunk`]).
    pub fn file_slices(&self, iz: u32) -> Option<Range<u32>> {
        ranges_of(self.info, self.file_chunk(), [iz, 0, 0]).map(|[z, _, _]| z)
    }
}

fn grid_of(info: LevelInfo, chunk: ChunkShape) -> [u32; 3] {
    [
        info.depth.div_ceil(chunk.z),
        info.height.div_ceil(chunk.y),
        info.width.div_ceil(chunk.x),
    ]
}

fn ranges_of(
    info: LevelInfo,
    chunk: ChunkShape,
    [iz, iy, ix]: [u32; 3],
) -> Option<[Range<u32>; 3]> {
    let [gz, gy, gx] = grid_of(info, chunk);
    if iz >= gz || iy >= gy || ix >= gx {
        return None;
    }
    // In u64: (i + 1) * c may pass u32::MAX for the last chunk of a huge level.
    let r = |i: u32, c: u32, n: u32| {
        let start = u64::from(i) * u64::from(c);
        let end = (start + u64::from(c)).min(u64::from(n));
        start as u32..end as u32
    };
    Some([
        r(iz, chunk.z, info.depth),
        r(iy, chunk.y, info.height),
        r(ix, chunk.x, info.width),
    ])
}

/// Everything a Zarr or precomputed store of a pyramid needs: arrays, chunk shapes,
/// compression, voxel size and display window. Plain data: cheap to clone, shared by the
/// HTTP server and the exporter.
#[derive(Debug, Clone, PartialEq)]
pub struct ZarrLayout {
    name: String,
    levels: Vec<ZarrLevel>,
    compression: Compression,
    voxel: Option<VoxelSize>,
    window: Option<Window>,
}

impl ZarrLayout {
    /// The layout of `levels` (level 0 first, as [`crate::Pyramid::levels`]) in chunks of
    /// `chunk` (cut to each level's shape), compressed with `compression`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for no levels, a chunk side of 0, or a chunk above
    /// [`MAX_CHUNK_BYTES`].
    pub fn new(
        levels: &[LevelInfo],
        chunk: ChunkShape,
        compression: Compression,
    ) -> Result<ZarrLayout> {
        if levels.is_empty() {
            return Err(Error::invalid("zarr layout", "no levels"));
        }
        if chunk.as_array().contains(&0) {
            return Err(Error::invalid(
                "chunk shape",
                format!("{chunk:?}: every side must be at least 1"),
            ));
        }
        if let Compression::Zstd(level) = compression
            && !(1..=22).contains(&level)
        {
            return Err(Error::invalid(
                "zstd level",
                format!("{level}; valid: 1..=22"),
            ));
        }
        let bytes = chunk.samples() * levels[0].sample_type.bytes() as u64;
        if bytes > MAX_CHUNK_BYTES {
            return Err(Error::invalid(
                "chunk shape",
                format!(
                    "{} x {} x {} is {bytes} bytes, above the limit of {MAX_CHUNK_BYTES}",
                    chunk.z, chunk.y, chunk.x
                ),
            ));
        }
        Ok(ZarrLayout {
            name: String::new(),
            levels: levels
                .iter()
                .map(|&info| ZarrLevel {
                    info,
                    chunk: ChunkShape {
                        z: chunk.z.min(info.depth),
                        y: chunk.y.min(info.height),
                        x: chunk.x.min(info.width),
                    },
                    shard: None,
                })
                .collect(),
            compression,
            voxel: None,
            window: None,
        })
    }

    /// The same layout with Zarr v3 sharding: files of `shard` (in samples, each side a
    /// multiple of the chunk's side) holding many chunks each. Levels smaller than a shard get
    /// one shard cut to their chunk grid.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] when a side of `shard` is not a multiple of the chunk's.
    pub fn with_shards(mut self, shard: ChunkShape) -> Result<ZarrLayout> {
        if shard.as_array().contains(&0) {
            return Err(Error::invalid(
                "shard shape",
                format!("{shard:?}: every side must be at least 1"),
            ));
        }
        for level in &mut self.levels {
            let c = level.chunk;
            let full = ChunkShape {
                z: round_up(level.info.depth, c.z),
                y: round_up(level.info.height, c.y),
                x: round_up(level.info.width, c.x),
            };
            let s = ChunkShape {
                z: shard.z.min(full.z),
                y: shard.y.min(full.y),
                x: shard.x.min(full.x),
            };
            if !s.z.is_multiple_of(c.z) || !s.y.is_multiple_of(c.y) || !s.x.is_multiple_of(c.x) {
                return Err(Error::invalid(
                    "shard shape",
                    format!(
                        "{} x {} x {} is not a multiple of the chunk shape {} x {} x {} at \
                         level {}",
                        shard.z, shard.y, shard.x, c.z, c.y, c.x, level.info.level
                    ),
                ));
            }
            level.shard = Some(s);
        }
        Ok(self)
    }

    /// The same layout with a voxel size (scales in micrometres). Default: none (scales in
    /// level-0 voxels).
    #[must_use]
    pub fn with_voxel_size(mut self, voxel: Option<VoxelSize>) -> ZarrLayout {
        self.voxel = voxel;
        self
    }

    /// The same layout with a display window for the `omero` block (see
    /// [`Window::of_volume`]). Default: none (no `omero` block).
    #[must_use]
    pub fn with_window(mut self, window: Option<Window>) -> ZarrLayout {
        self.window = window;
        self
    }

    /// The same layout with a name for the multiscale image (the stack folder's name, say).
    /// Default: empty (no name written).
    #[must_use]
    pub fn with_name(mut self, name: impl Into<String>) -> ZarrLayout {
        self.name = name.into();
        self
    }

    /// The arrays, level 0 first.
    pub fn levels(&self) -> &[ZarrLevel] {
        &self.levels
    }

    /// Array `level`, or [`Error::InvalidArgument`] naming the valid levels.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a level out of range.
    pub fn level(&self, level: u32) -> Result<&ZarrLevel> {
        self.levels.get(level as usize).ok_or_else(|| {
            Error::invalid(
                "zarr level",
                format!("{level}; valid: 0..={}", self.levels.len() - 1),
            )
        })
    }

    /// The compression of every chunk.
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// The voxel size, if known.
    pub fn voxel_size(&self) -> Option<&VoxelSize> {
        self.voxel.as_ref()
    }

    /// The display window, if known.
    pub fn window(&self) -> Option<Window> {
        self.window
    }

    fn sample_type(&self) -> SampleType {
        self.levels[0].info.sample_type
    }

    /// Level `n`'s voxel, `[z, y, x]`, in micrometres when the voxel size is known, else in
    /// level-0 voxels: `2^n` level-0 voxels.
    pub fn scale(&self, level: u32) -> [f64; 3] {
        let f = 2f64.powi(level as i32);
        match &self.voxel {
            Some(v) => [v.z * f, v.y * f, v.x * f],
            None => [f; 3],
        }
    }

    /// Where level `n`'s first voxel centre sits, `[z, y, x]`, in the units of
    /// [`ZarrLayout::scale`]: `(2^n - 1) / 2` level-0 voxels from level 0's (box means stay
    /// registered).
    pub fn translation(&self, level: u32) -> [f64; 3] {
        let half = (2f64.powi(level as i32) - 1.0) / 2.0;
        match &self.voxel {
            Some(v) => [v.z * half, v.y * half, v.x * half],
            None => [half; 3],
        }
    }

    fn axes(&self) -> Value {
        let axis = |name: &str| match self.voxel {
            Some(_) => json!({"name": name, "type": "space", "unit": "micrometer"}),
            None => json!({"name": name, "type": "space"}),
        };
        json!([axis("z"), axis("y"), axis("x")])
    }

    /// One `multiscales` entry; `version` is written for 0.4 (0.5 keeps it in `ome.version`).
    fn multiscale(&self, version: Option<&str>) -> Value {
        let datasets: Vec<Value> = self
            .levels
            .iter()
            .map(|l| {
                let n = l.info.level;
                json!({
                    "path": n.to_string(),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": self.scale(n)},
                        {"type": "translation", "translation": self.translation(n)},
                    ],
                })
            })
            .collect();
        let mut m = json!({
            "axes": self.axes(),
            "datasets": datasets,
            "type": "mean",
            "metadata": {
                "description": "2x2x2 box mean of the level below, rounded half up ((sum + 4) >> 3; \
                                a lone last slice: 2x2 mean); an odd last row or column is dropped",
                "method": "lodcache",
                "version": env!("CARGO_PKG_VERSION"),
            },
        });
        if let Some(v) = version {
            m["version"] = json!(v);
        }
        if !self.name.is_empty() {
            m["name"] = json!(self.name);
        }
        m
    }

    fn omero(&self, version: Option<&str>) -> Option<Value> {
        let w = self.window?;
        let (min, max) = match self.sample_type() {
            SampleType::U8 => (0.0, 255.0),
            SampleType::U16 => (0.0, 65535.0),
            SampleType::F32 => (w.start.min(w.end), w.start.max(w.end)),
        };
        let mut o = json!({
            "channels": [{
                "active": true,
                "coefficient": 1,
                "color": "FFFFFF",
                "family": "linear",
                "inverted": false,
                "label": "intensity",
                "window": {"min": min, "max": max, "start": w.start, "end": w.end},
            }],
            "rdefs": {
                "defaultT": 0,
                "defaultZ": self.levels[0].info.depth / 2,
                "model": "greyscale",
            },
        });
        if !self.name.is_empty() {
            o["name"] = json!(self.name);
        }
        if let Some(v) = version {
            o["version"] = json!(v);
        }
        Some(o)
    }

    /// Zarr v2 `.zgroup`.
    pub fn zgroup(&self) -> Value {
        json!({"zarr_format": 2})
    }

    /// Zarr v2 `.zattrs` of the group: OME-NGFF 0.4 `multiscales` (and `omero` when the
    /// window is known).
    pub fn zattrs(&self) -> Value {
        let mut a = json!({"multiscales": [self.multiscale(Some("0.4"))]});
        if let Some(o) = self.omero(Some("0.4")) {
            a["omero"] = o;
        }
        a
    }

    fn dtype_v2(&self) -> &'static str {
        match self.sample_type() {
            SampleType::U8 => "|u1",
            SampleType::U16 => "<u2",
            SampleType::F32 => "<f4",
        }
    }

    fn dtype_v3(&self) -> &'static str {
        match self.sample_type() {
            SampleType::U8 => "uint8",
            SampleType::U16 => "uint16",
            SampleType::F32 => "float32",
        }
    }

    fn fill_value(&self) -> Value {
        match self.sample_type() {
            SampleType::F32 => json!(0.0),
            _ => json!(0),
        }
    }

    fn shuffle(&self) -> bool {
        self.sample_type().bytes() > 1
    }

    /// Zarr v2 `<n>/.zarray` of level `n`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a level out of range.
    pub fn zarray(&self, level: u32) -> Result<Value> {
        let l = self.level(level)?;
        let compressor = match self.compression {
            Compression::None => Value::Null,
            Compression::BloscLz4 => json!({
                "id": "blosc",
                "cname": "lz4",
                "clevel": 5,
                "shuffle": i32::from(self.shuffle()),
                "blocksize": 0,
            }),
            // No "checksum" member: tensorstore refuses members it does not know.
            Compression::Zstd(level) => json!({"id": "zstd", "level": level}),
        };
        Ok(json!({
            "zarr_format": 2,
            "shape": l.shape(),
            "chunks": l.chunk.as_array(),
            "dtype": self.dtype_v2(),
            "compressor": compressor,
            "fill_value": self.fill_value(),
            "order": "C",
            "filters": Value::Null,
            "dimension_separator": "/",
        }))
    }

    /// Zarr v3 `zarr.json` of the group: OME-Zarr 0.5 in `attributes.ome`.
    pub fn group_json(&self) -> Value {
        let mut ome = json!({
            "version": "0.5",
            "multiscales": [self.multiscale(None)],
        });
        if let Some(o) = self.omero(None) {
            ome["omero"] = o;
        }
        json!({
            "zarr_format": 3,
            "node_type": "group",
            "attributes": {"ome": ome},
        })
    }

    /// The array-to-bytes and bytes-to-bytes codecs of one chunk (Zarr v3).
    fn chunk_codecs(&self) -> Vec<Value> {
        let mut codecs = vec![self.bytes_codec()];
        match self.compression {
            Compression::None => {}
            Compression::BloscLz4 => codecs.push(json!({
                "name": "blosc",
                "configuration": {
                    "cname": "lz4",
                    "clevel": 5,
                    "shuffle": if self.shuffle() { "shuffle" } else { "noshuffle" },
                    "typesize": self.sample_type().bytes(),
                    "blocksize": 0,
                },
            })),
            Compression::Zstd(level) => codecs.push(json!({
                "name": "zstd",
                "configuration": {"level": level, "checksum": false},
            })),
        }
        codecs
    }

    fn bytes_codec(&self) -> Value {
        if self.sample_type().bytes() == 1 {
            json!({"name": "bytes"})
        } else {
            json!({"name": "bytes", "configuration": {"endian": "little"}})
        }
    }

    /// Zarr v3 `<n>/zarr.json` of level `n`.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a level out of range.
    pub fn array_json(&self, level: u32) -> Result<Value> {
        let l = self.level(level)?;
        let (grid_chunk, codecs) = match l.shard {
            None => (l.chunk, self.chunk_codecs()),
            Some(shard) => (
                shard,
                vec![json!({
                    "name": "sharding_indexed",
                    "configuration": {
                        "chunk_shape": l.chunk.as_array(),
                        "codecs": self.chunk_codecs(),
                        "index_codecs": [
                            {"name": "bytes", "configuration": {"endian": "little"}},
                            {"name": "crc32c"},
                        ],
                        "index_location": "end",
                    },
                })],
            ),
        };
        Ok(json!({
            "zarr_format": 3,
            "node_type": "array",
            "shape": l.shape(),
            "data_type": self.dtype_v3(),
            "chunk_grid": {
                "name": "regular",
                "configuration": {"chunk_shape": grid_chunk.as_array()},
            },
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": self.fill_value(),
            "codecs": codecs,
            "attributes": {},
            "dimension_names": ["z", "y", "x"],
        }))
    }

    /// Neuroglancer precomputed `info`: scales `s0..sn` (x, y, z order), resolution in
    /// nanometres (1 nm per level-0 voxel when the voxel size is unknown), raw encoding.
    pub fn precomputed_info(&self) -> Value {
        let scales: Vec<Value> = self
            .levels
            .iter()
            .map(|l| {
                let n = l.info.level;
                let f = 2f64.powi(n as i32);
                let res = match &self.voxel {
                    Some(v) => [v.x * 1000.0 * f, v.y * 1000.0 * f, v.z * 1000.0 * f],
                    None => [f; 3],
                };
                json!({
                    "key": precomputed_key(n),
                    "size": [l.info.width, l.info.height, l.info.depth],
                    "resolution": res,
                    "voxel_offset": [0, 0, 0],
                    "chunk_sizes": [[l.chunk.x, l.chunk.y, l.chunk.z]],
                    "encoding": "raw",
                })
            })
            .collect();
        json!({
            "@type": "neuroglancer_multiscale_volume",
            "type": "image",
            "data_type": self.dtype_v3(),
            "num_channels": 1,
            "scales": scales,
        })
    }

    /// The bytes of Zarr chunk `index` (`z, y, x`) of `level`: the whole chunk (samples past
    /// the level's edge are 0, the fill value), little-endian, C order, compressed, into
    /// `out` (cleared first). `slices` are the level's slices the chunk covers, in z order
    /// ([`ZarrLevel::chunk_slices`]).
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a level or index out of range, or slices that are not
    /// the ones the chunk covers (wrong count, size or sample type).
    pub fn encode_chunk(
        &self,
        level: u32,
        index: [u32; 3],
        slices: &[&Slice],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.encode_raw(|raw| self.raw_chunk(level, index, slices, true, raw), out)
    }

    /// Encodes the uncompressed chunk `fill` writes: straight into `out` without compression,
    /// else through a buffer kept per thread (a fresh one per chunk costs a page fault per
    /// 4 KiB; on the development VM, fresh memory cost more than compressing it).
    fn encode_raw(
        &self,
        fill: impl FnOnce(&mut Vec<u8>) -> Result<()>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        if self.compression == Compression::None {
            return fill(out);
        }
        RAW.with(|raw| {
            let mut raw = raw.borrow_mut();
            fill(&mut raw)?;
            self.compression
                .encode(&raw, self.sample_type().bytes(), out)
        })
    }

    /// [`ZarrLayout::encode_chunk`] from `rows(z, y)` (see [`ZarrLayout::raw_chunk_rows`]).
    pub(crate) fn encode_chunk_rows(
        &self,
        level: u32,
        index: [u32; 3],
        rows: &RowFn<'_>,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.encode_raw(
            |raw| self.raw_chunk_rows(level, index, rows, true, raw),
            out,
        )
    }

    /// The bytes of file `index` (`z, y, x` in [`ZarrLevel::file_grid`]) of `level`: a shard
    /// (Zarr v3 `sharding_indexed`: its chunks, then their index and its CRC-32C) when the
    /// layout is sharded, else the chunk ([`ZarrLayout::encode_chunk`]). `slices` are the
    /// level's slices the file covers, in z order ([`ZarrLevel::file_slices`]). This is what a
    /// server answers for [`Node::Chunk`].
    ///
    /// # Errors
    /// As [`ZarrLayout::encode_chunk`].
    pub fn encode_file(
        &self,
        level: u32,
        index: [u32; 3],
        slices: &[&Slice],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let l = self.level(level)?;
        if l.shard.is_none() {
            return self.encode_chunk(level, index, slices, out);
        }
        let [zr, _, _] = ranges_of(l.info, l.file_chunk(), index).ok_or_else(|| {
            let [gz, gy, gx] = l.file_grid();
            Error::invalid(
                "shard index",
                format!("{index:?} at level {level}; the grid is {gz} x {gy} x {gx} shards"),
            )
        })?;
        check_slices(l, level, index, &zr, slices)?;
        let src_row = l.info.slice_bytes() / l.info.height as usize;
        let rows = |z: u32, y: u32| -> &[u8] {
            let bytes = slices[(z - zr.start) as usize].pixels().as_bytes();
            &bytes[y as usize * src_row..][..src_row]
        };
        export::encode_shard_rows(self, level, index, &rows, out)
    }

    /// The bytes of precomputed chunk `index` (`z, y, x` in chunks) of `level`: cut at the
    /// volume's edge, raw little-endian samples with x fastest, then y, then z, into `out`
    /// (cleared first). `slices` as for [`ZarrLayout::encode_chunk`].
    ///
    /// # Errors
    /// As [`ZarrLayout::encode_chunk`].
    pub fn encode_precomputed_chunk(
        &self,
        level: u32,
        index: [u32; 3],
        slices: &[&Slice],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        self.raw_chunk(level, index, slices, false, out)
    }

    /// [`ZarrLayout::encode_file`] from bands of rows instead of whole slices: `bands` are the
    /// level's slices the file covers, in z order ([`ZarrLevel::file_slices`]), each given as
    /// its full-width rows `first_row..first_row + band.height()`, which must include the
    /// file's rows (the y range of [`ZarrLevel::file_ranges`]). A level-0 file then costs the
    /// source rows it covers ([`crate::Pyramid::source_rows`]), not whole slices. The bytes
    /// are the same as [`ZarrLayout::encode_file`]'s.
    ///
    /// # Errors
    /// [`Error::InvalidArgument`] for a level or index out of range, or bands that are not
    /// the ones the file covers (wrong count, width or sample type, or rows that do not
    /// include the file's).
    pub fn encode_file_bands(
        &self,
        level: u32,
        index: [u32; 3],
        first_row: u32,
        bands: &[&Slice],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let l = self.level(level)?;
        let what = if l.shard.is_some() { "shard" } else { "chunk" };
        let ranges = l
            .file_ranges(index)
            .ok_or_else(|| out_of_grid(what, level, index, l.file_grid()))?;
        let rows = band_rows(l, level, index, &ranges, first_row, bands)?;
        if l.shard.is_none() {
            self.encode_chunk_rows(level, index, &rows, out)
        } else {
            export::encode_shard_rows(self, level, index, &rows, out)
        }
    }

    /// [`ZarrLayout::encode_precomputed_chunk`] from bands of rows, as
    /// [`ZarrLayout::encode_file_bands`]: `bands` are the level's slices the chunk covers
    /// ([`ZarrLevel::chunk_slices`]), each as its full-width rows from `first_row` on, which
    /// must include the chunk's (the y range of [`ZarrLevel::chunk_ranges`]).
    ///
    /// # Errors
    /// As [`ZarrLayout::encode_file_bands`].
    pub fn encode_precomputed_chunk_bands(
        &self,
        level: u32,
        index: [u32; 3],
        first_row: u32,
        bands: &[&Slice],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let l = self.level(level)?;
        let ranges = l
            .chunk_ranges(index)
            .ok_or_else(|| out_of_grid("chunk", level, index, l.grid()))?;
        let rows = band_rows(l, level, index, &ranges, first_row, bands)?;
        self.raw_chunk_rows(level, index, &rows, false, out)
    }

    /// Cuts chunk `index` of `level` out of `slices` into `out`: padded to the whole chunk
    /// (`full`), or cut at the edge.
    pub(crate) fn raw_chunk(
        &self,
        level: u32,
        index: [u32; 3],
        slices: &[&Slice],
        full: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let l = self.level(level)?;
        let [zr, _, _] = l.chunk_ranges(index).ok_or_else(|| {
            let [gz, gy, gx] = l.grid();
            Error::invalid(
                "chunk index",
                format!(
                    "{index:?} at level {level}; the grid is {gz} x {gy} x {gx} chunks (z, y, x)"
                ),
            )
        })?;
        check_slices(l, level, index, &zr, slices)?;
        let info = l.info;
        let src_row = info.width as usize * info.sample_type.bytes();
        let rows = |z: u32, y: u32| -> &[u8] {
            let bytes = slices[(z - zr.start) as usize].pixels().as_bytes();
            &bytes[y as usize * src_row..][..src_row]
        };
        self.raw_chunk_rows(level, index, &rows, full, out)
    }

    /// [`ZarrLayout::raw_chunk`] from `rows(z, y)`, row `y` of slice `z` of the level (every
    /// row the chunk covers must be given; nothing is checked).
    pub(crate) fn raw_chunk_rows(
        &self,
        level: u32,
        index: [u32; 3],
        rows: &RowFn<'_>,
        full: bool,
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let l = self.level(level)?;
        let [zr, yr, xr] = l
            .chunk_ranges(index)
            .ok_or_else(|| Error::invalid("chunk index", format!("{index:?} at level {level}")))?;
        let size = l.info.sample_type.bytes();
        let (cz, cy, cx) = if full {
            (l.chunk.z as usize, l.chunk.y as usize, l.chunk.x as usize)
        } else {
            (zr.len(), yr.len(), xr.len())
        };
        out.clear();
        out.resize(cz * cy * cx * size, 0);
        let row = xr.len() * size;
        for (dz, z) in zr.enumerate() {
            for (dy, y) in yr.clone().enumerate() {
                let src = &rows(z, y)[xr.start as usize * size..][..row];
                let to = ((dz * cy + dy) * cx) * size;
                out[to..to + row].copy_from_slice(src);
            }
        }
        if cfg!(target_endian = "big") && size > 1 {
            // Samples are stored little-endian.
            for sample in out.chunks_exact_mut(size) {
                sample.reverse();
            }
        }
        Ok(())
    }
}

/// Row `y` of slice `z` of a level, as bytes (the whole row).
pub(crate) type RowFn<'a> = dyn Fn(u32, u32) -> &'a [u8] + Sync + 'a;

thread_local! {
    /// The uncompressed chunk being encoded on this thread.
    static RAW: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Checks that `slices` are the slices `zr` of level `level` that a chunk or shard covers.
fn check_slices(
    l: &ZarrLevel,
    level: u32,
    index: [u32; 3],
    zr: &Range<u32>,
    slices: &[&Slice],
) -> Result<()> {
    if slices.len() != zr.len() {
        return Err(Error::invalid(
            "chunk slices",
            format!(
                "{} slices given for chunk {index:?} of level {level}, which covers slices \
                 {zr:?}",
                slices.len()
            ),
        ));
    }
    let info = l.info;
    for s in slices {
        if (s.width(), s.height(), s.sample_type()) != (info.width, info.height, info.sample_type) {
            return Err(Error::invalid(
                "chunk slices",
                format!(
                    "a {} x {} {} slice given for level {level}, which is {} x {} {}",
                    s.width(),
                    s.height(),
                    s.sample_type(),
                    info.width,
                    info.height,
                    info.sample_type
                ),
            ));
        }
    }
    Ok(())
}

/// [`Error::InvalidArgument`] for a `what` (chunk or shard) index outside `grid`.
fn out_of_grid(what: &'static str, level: u32, index: [u32; 3], [gz, gy, gx]: [u32; 3]) -> Error {
    let name = if what == "shard" {
        "shard index"
    } else {
        "chunk index"
    };
    Error::invalid(
        name,
        format!("{index:?} at level {level}; the grid is {gz} x {gy} x {gx} {what}s (z, y, x)"),
    )
}

/// Row `y` of slice `z` out of `bands` (slices `ranges[0]` of level `level`, each its
/// full-width rows from `first_row` on), after checking that they hold every row of
/// `ranges`.
fn band_rows<'a>(
    l: &ZarrLevel,
    level: u32,
    index: [u32; 3],
    ranges: &[Range<u32>; 3],
    first_row: u32,
    bands: &'a [&'a Slice],
) -> Result<impl Fn(u32, u32) -> &'a [u8] + Sync + 'a> {
    let [zr, yr, _] = ranges;
    let info = l.info;
    if bands.len() != zr.len() {
        return Err(Error::invalid(
            "chunk bands",
            format!(
                "{} bands given for file {index:?} of level {level}, which covers slices {zr:?}",
                bands.len()
            ),
        ));
    }
    for b in bands {
        let end = u64::from(first_row) + u64::from(b.height());
        if b.width() != info.width
            || b.sample_type() != info.sample_type
            || first_row > yr.start
            || end < u64::from(yr.end)
        {
            return Err(Error::invalid(
                "chunk bands",
                format!(
                    "a band of {} x {} {} from row {first_row} given for file {index:?} of \
                     level {level}, which needs rows {yr:?} of {} {} samples",
                    b.width(),
                    b.height(),
                    b.sample_type(),
                    info.width,
                    info.sample_type
                ),
            ));
        }
    }
    let row = info.width as usize * info.sample_type.bytes();
    let z0 = zr.start;
    Ok(move |z: u32, y: u32| -> &'a [u8] {
        let bytes = bands[(z - z0) as usize].pixels().as_bytes();
        &bytes[(y - first_row) as usize * row..][..row]
    })
}

fn round_up(n: u32, to: u32) -> u32 {
    n.div_ceil(to).saturating_mul(to)
}

/// The key of level `n`'s scale in a precomputed store: `s<n>`.
pub fn precomputed_key(level: u32) -> String {
    format!("s{level}")
}
