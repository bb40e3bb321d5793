//! The pyramid's OME-Zarr side: its voxel size, its Zarr layout, and the on-disk export.

use std::path::Path;

use super::{Ctx, Pyramid};
use crate::error::Result;
use crate::voxel::VoxelSize;
use crate::zarr::{ChunkShape, Compression, OmeZarrOptions, OmeZarrReport, Window, ZarrLayout};

impl Pyramid {
    /// The physical size of a level-0 voxel and where it came from: given to
    /// [`crate::PyramidBuilder::with_voxel_size`], else read from the stack (see
    /// [`VoxelSize`]); `None` when nothing says. Level `n`'s voxel is `2^n` times larger
    /// ([`VoxelSize::at_level`]).
    pub fn voxel_size(&self) -> Option<VoxelSize> {
        self.inner.voxel.clone()
    }

    /// The Zarr / precomputed layout of this pyramid in chunks of `chunk` compressed with
    /// `compression`, with its voxel size and a display window from the 0.5 and 99.5
    /// percentiles of the coarsest level (which this reads whole, building it if needed, not
    /// counted as demand).
    ///
    /// # Errors
    /// As [`ZarrLayout::new`], and the errors of reading the coarsest level.
    pub fn zarr_layout(&self, chunk: ChunkShape, compression: Compression) -> Result<ZarrLayout> {
        let coarsest = self.coarsest();
        let volume = self.request().without_demand().volume(coarsest.level)?;
        let name = self
            .stack()
            .dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(ZarrLayout::new(self.levels(), chunk, compression)?
            .with_voxel_size(self.voxel_size())
            .with_window(Window::of_volume(volume.pixels()))
            .with_name(name))
    }

    /// Writes the whole pyramid, level 0 included, as an OME-Zarr store at `out` in one
    /// streaming pass over the source (see [`crate::zarr::export_ome_zarr`]), with this
    /// pyramid's level rule, decoder threads and voxel size (unless `options` gives one;
    /// `options.rule` is ignored). The pass reads the source files, not the cache: a
    /// conversion needs every source sample, and making the levels above on the way costs less
    /// than decoding their blobs.
    ///
    /// # Errors
    /// As [`crate::zarr::export_ome_zarr`]; on error `out` is left as it was.
    pub fn export_ome_zarr(
        &self,
        out: impl AsRef<Path>,
        options: &OmeZarrOptions,
    ) -> Result<OmeZarrReport> {
        self.export_ome_zarr_in(&Ctx::counted(), out.as_ref(), options)
    }

    pub(crate) fn export_ome_zarr_in(
        &self,
        ctx: &Ctx<'_>,
        out: &Path,
        options: &OmeZarrOptions,
    ) -> Result<OmeZarrReport> {
        let _foreground = self.inner.tiers.enter();
        for level in self.levels() {
            self.count_level(ctx, level.level);
        }
        let mut options = options.clone();
        options.rule = self.inner.stream.rule;
        if options.decode_threads.is_none() {
            options.decode_threads = Some(self.inner.stream.decode_threads);
        }
        if options.voxel_size.is_none() {
            options.voxel_size = self.voxel_size();
        }
        let check = || ctx.check();
        let progress = |done, total| ctx.report(done, total);
        let hooks = crate::zarr::export::Hooks {
            check: &check,
            progress: &progress,
            pool: self.inner.pool.as_deref(),
            #[cfg(any(test, feature = "test-utils"))]
            fail_after: None,
        };
        let report = crate::zarr::export::export_with(self.stack(), out, &options, &hooks)?;
        self.inner
            .counters
            .source_slices
            .add(report.stream.source_slices);
        self.inner
            .counters
            .source_bytes
            .add(report.stream.source_bytes);
        Ok(report)
    }
}
