//! # lodcache
//!
//! Level-of-detail pyramids of CT image stacks, made on demand and cached for viewers.
//!
//! A CT scan is a folder of slices (TIFF, BMP, PNG or JPEG; 8- or 16-bit gray). Level `n` of
//! its pyramid halves width, height and slice count of level `n - 1` with a 2x2x2 box mean,
//! until the larger side is at most an edge (500 by default). A [`Pyramid`] serves any slice,
//! region, volume or section of any level, making exactly what is asked for and keeping it as
//! compressed blobs ([`codec`]) in a memory tier and a cache folder ([`store`]). It counts what
//! users ask for ([`Pyramid::demand`]), keeps the most requested levels resident under
//! pressure, and builds them first in the background ([`Pyramid::warm_up`]). Below it sit
//! the stack reader ([`Stack`]), the exact parallel kernel ([`kernel`]), the one-pass streaming
//! builder ([`stream_levels`]) and the CTHarvester-layout writer ([`export_ctharvester`]).
//!
//! ## The pyramid contract
//! - Level 0 is the source stack. Level `n` has width `floor(w / 2)`, height `floor(h / 2)`
//!   (an odd last column or row is dropped) and depth `ceil(d / 2)` of level `n - 1`.
//! - Slice `i` of level `n` is made from slices `2i` and `2i + 1` of level `n - 1`; when the
//!   depth is odd the last slice is made from one slice alone. No slice is ever dropped, so slice
//!   `i` of level `n` covers source slices `[i * 2^n, (i + 1) * 2^n)` ([`source_range`]).
//! - Each voxel is the mean of its 2x2x2 block rounded half up, `(sum + 4) >> 3`, or of its 2x2
//!   block for a lone last slice, `(sum + 2) >> 2`: exact integer arithmetic. 8- and 16-bit
//!   samples stay 8- and 16-bit; 32-bit float TIFFs stay `f32` (mean computed in `f64`).
//!
//! ## Quick start
//! ```
//! use lodcache::{Axis, Phantom, Pyramid};
//!
//! # fn main() -> lodcache::Result<()> {
//! let tmp = tempfile::tempdir().unwrap(); // ok: doctest setup, not library code
//! // A small synthetic scan: 16-bit, 80 x 60 pixels, 9 slices.
//! Phantom::new(80, 60, 9).write(&tmp.path().join("scan"))?;
//!
//! let pyr = Pyramid::builder(tmp.path().join("scan"))
//!     .with_edge(16)
//!     .with_cache_dir(tmp.path().join("cache"))
//!     .build()?;
//! assert_eq!(
//!     pyr.levels().iter().map(|l| (l.width, l.height, l.depth)).collect::<Vec<_>>(),
//!     [(80, 60, 9), (40, 30, 5), (20, 15, 3), (10, 7, 2)]
//! );
//! let coarse = pyr.slice(3, 1)?; // made from source slices 8.. (a lone last slice)
//! assert_eq!((coarse.width(), coarse.height()), (10, 7));
//! let volume = pyr.volume(3)?; // whole level, z-major
//! assert_eq!(volume.pixels().len(), 10 * 7 * 2);
//! let yz = pyr.section(2, Axis::X, 4)?; // column 4 of every slice of level 2
//! assert_eq!((yz.width(), yz.height()), (15, 3));
//!
//! let report = pyr.export_ctharvester(&tmp.path().join("pyramid"), None)?;
//! assert_eq!(report.files, 5 + 3 + 2);
//! # Ok(())
//! # }
//! ```
//!
//! ## Concurrency
//! [`Pyramid`] is `Send + Sync` and cheap to clone; concurrent requests for the same missing
//! slice compute it once, and no lock is held while a kernel runs (see [`Pyramid`]). The
//! kernel runs on the current rayon pool (the global one unless the caller installs its own, or
//! the pool given to [`PyramidBuilder::with_thread_pool`]); lodcache never configures the
//! global pool. Decoding runs on plain I/O threads that
//! stay a bounded number of slices ahead of the kernel. [`Stack`] is `Send + Sync`; use one
//! [`StackReader`] per thread.

mod cascade;
pub mod codec;
mod demand;
mod error;
mod export;
mod fsutil;
mod geometry;
pub mod kernel;
mod phantom;
mod pyramid;
mod slice;
mod source;
pub mod store;
mod voxel;
pub mod zarr;

// The API: one flat list. The three public modules above are the low-level layers some users
// build on directly (their own blob storage, their own kernels, their own tiers): `codec` (the
// blob format), `kernel` (the 2x2x2 reduction) and `store` (the memory and disk tiers).
pub use cascade::{PairReducer, StreamOptions, StreamStats, stream_levels};
pub use demand::{DemandRanking, HALF_LIFE as DEMAND_HALF_LIFE, LevelDemand};
pub use error::{Error, ErrorKind, Result};
pub use export::{
    EXPORT_MARKER, ExportOptions, ExportReport, ctharvester_path, export_ctharvester,
};
pub use geometry::{LevelInfo, LevelRule, Region, SliceKey, dependent_slice, source_range};
pub use phantom::{Phantom, sample_stack};
pub use pyramid::{
    Axis, Cancel, CancelOnDrop, DEFAULT_MEMORY_BUDGET, Progress, ProgressFn, Pyramid,
    PyramidBuilder, PyramidStats, Request, Served, VerifyReport, Volume,
};
pub use pyramid::{
    LevelReport, MAX_THREADS as WARMUP_MAX_THREADS, WarmupHandle, WarmupOptions, WarmupOutcome,
    WarmupProgress, WarmupReport,
};
pub use slice::{Pixels, Sample, SampleType, Slice};
pub use source::{
    DECODE_OVERHEAD, DEFAULT_MAX_SLICE_BYTES, DecodeBudgetStats, DecodeReservation,
    MAX_DEFAULT_DECODE_BUDGET, MIN_DEFAULT_DECODE_BUDGET, Page, SliceInfo, SourceFile, Stack,
    StackPattern, StackReader, decode_budget, decode_budget_stats, default_decode_budget,
    reserve_decode_memory, set_decode_budget,
};
pub use voxel::{VoxelSize, VoxelSource};
pub use zarr::{
    ChunkShape, Compression, OmeZarrOptions, OmeZarrReport, ZarrLayout, ZarrVersion,
    export_ome_zarr,
};

/// The README's examples, run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
