//! Options for one call: cancellation, progress, and whether it counts as demand.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Axis, Pyramid, Served, Volume};
use crate::error::{Error, Result};
use crate::export::ExportReport;
use crate::geometry::Region;
use crate::slice::Slice;

/// A flag that stops requests at their next slice boundary.
///
/// Cheap to clone; clones share the flag. A request given a cancelled `Cancel` (see
/// [`Request::with_cancel`]) returns [`Error::Cancelled`] before it starts its next slice of
/// work (reading a source slice, reducing a pair, writing a file); what it finished before is
/// kept in the cache. Another request waiting for the same slice is not affected: it carries on
/// with the work itself.
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag that is not set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Sets the flag: every request holding it stops at its next slice boundary.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether the flag is set.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that sets the flag when dropped: hold it where the requester lives (a server's
    /// response future), so that work stops when the requester goes away.
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }
}

/// Sets its [`Cancel`] when dropped, unless [`CancelOnDrop::disarm`]ed.
#[derive(Debug)]
#[must_use = "the flag is set when the guard is dropped"]
pub struct CancelOnDrop(Option<Cancel>);

impl CancelOnDrop {
    /// Drops the guard without setting the flag.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel();
        }
    }
}

/// How far a whole-level call has come, in units of work: slices read, made or handed out.
///
/// `done` grows from 0 to `total`; the last report of a call that succeeds has
/// `done == total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

impl Progress {
    /// `done / total` between 0 and 1 (1 when there is nothing to do).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            1.0
        } else {
            (self.done as f64 / self.total as f64).min(1.0)
        }
    }
}

/// A progress callback; see [`Request::with_progress`].
pub type ProgressFn<'a> = &'a (dyn Fn(Progress) + Sync);

/// What a call carries down into the work it does.
#[derive(Clone, Copy, Default)]
pub(crate) struct Ctx<'a> {
    pub(crate) cancel: Option<&'a Cancel>,
    pub(crate) progress: Option<ProgressFn<'a>>,
    /// Whether the call counts as demand.
    pub(crate) demand: bool,
    /// Whether the call keeps nothing it generates (see [`Request::without_storing`]).
    pub(crate) no_store: bool,
}

impl Ctx<'_> {
    /// The context of a plain call: counted, not cancellable, no progress.
    pub(crate) fn counted() -> Ctx<'static> {
        Ctx {
            demand: true,
            ..Ctx::default()
        }
    }

    /// [`Error::Cancelled`] once the call's flag is set.
    pub(crate) fn check(&self) -> Result<()> {
        match self.cancel {
            Some(c) if c.is_cancelled() => Err(Error::Cancelled),
            _ => Ok(()),
        }
    }

    pub(crate) fn report(&self, done: u64, total: u64) {
        if let Some(f) = self.progress {
            f(Progress { done, total });
        }
    }
}

/// One call's options over a [`Pyramid`]: made by [`Pyramid::request`], then one of the
/// reading methods. The methods of the same name on `Pyramid` are these with the defaults
/// (counted as demand, not cancellable, no progress).
///
/// ```
/// # use lodcache::{Cancel, Phantom, Pyramid};
/// # fn main() -> lodcache::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap(); // ok: doctest setup
/// # Phantom::new(64, 64, 8).write(tmp.path())?;
/// # let pyr = Pyramid::builder(tmp.path()).with_edge(16).with_disk_cache(false).build()?;
/// let cancel = Cancel::new();
/// let seen = std::sync::atomic::AtomicU64::new(0);
/// let progress = |p: lodcache::Progress| seen.store(p.done, std::sync::atomic::Ordering::Relaxed);
/// let volume = pyr
///     .request()
///     .with_cancel(&cancel)          // another thread may call cancel.cancel()
///     .with_progress(&progress)      // called on this thread
///     .without_demand()              // a preview: not counted in the demand statistics
///     .volume(2)?;
/// assert_eq!(volume.depth(), 2);
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Copy)]
#[must_use]
pub struct Request<'a> {
    pub(crate) pyramid: &'a Pyramid,
    pub(crate) ctx: Ctx<'a>,
}

impl fmt::Debug for Request<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("cancel", &self.ctx.cancel)
            .field("progress", &self.ctx.progress.is_some())
            .field("demand", &self.ctx.demand)
            .field("storing", &!self.ctx.no_store)
            .finish()
    }
}

impl<'a> Request<'a> {
    /// Stops the call at its next slice boundary once `cancel` is set, with
    /// [`Error::Cancelled`]. Default: not cancellable.
    pub fn with_cancel(mut self, cancel: &'a Cancel) -> Self {
        self.ctx.cancel = Some(cancel);
        self
    }

    /// Reports progress of whole-level work ([`Request::volume`], [`Request::section`],
    /// [`Request::export_ctharvester`]) to `progress`, always on the thread that made the call,
    /// once per slice of work. Default: none.
    pub fn with_progress(mut self, progress: ProgressFn<'a>) -> Self {
        self.ctx.progress = Some(progress);
        self
    }

    /// Does not count the call in the demand statistics (a viewer's coarse preview before the
    /// level the user looks at). The request counters of [`Pyramid::stats`] still count it.
    /// Default: counted.
    pub fn without_demand(mut self) -> Self {
        self.ctx.demand = false;
        self
    }

    /// Stores nothing the call generates: no slice it makes goes to any tier, so none is
    /// encoded or kept, and the streaming builder reuses every buffer it has instead of
    /// leaving its slices to the storing threads. For whole-level work nobody will ask for
    /// again, such as an export by a process that ends after it (`lodcache export
    /// --no-cache`): that export then touches a few slices' worth of fresh memory instead of
    /// hundreds of megabytes of by-products, and encodes nothing. Slices already stored are
    /// still read from the tiers. A whole-level call that builds runs its own streaming build:
    /// it does not wait for another call's build of the same levels, and no call waits for
    /// its build (it stores nothing they could use).
    /// Default: everything the call makes is stored, by-products included.
    pub fn without_storing(mut self) -> Self {
        self.ctx.no_store = true;
        self
    }

    /// See [`Pyramid::slice`].
    ///
    /// # Errors
    /// As [`Pyramid::slice`], and [`Error::Cancelled`].
    pub fn slice(&self, level: u32, z: u32) -> Result<Slice> {
        self.slice_served(level, z).map(|(s, _)| s)
    }

    /// See [`Pyramid::slice_served`].
    ///
    /// # Errors
    /// As [`Pyramid::slice`], and [`Error::Cancelled`].
    pub fn slice_served(&self, level: u32, z: u32) -> Result<(Slice, Served)> {
        self.pyramid.slice_in(&self.ctx, level, z)
    }

    /// See [`Pyramid::region`].
    ///
    /// # Errors
    /// As [`Pyramid::region`], and [`Error::Cancelled`].
    pub fn region(&self, level: u32, z: u32, region: Region) -> Result<Slice> {
        self.pyramid.region_in(&self.ctx, level, z, region)
    }

    /// See [`Pyramid::source_rows`].
    ///
    /// # Errors
    /// As [`Pyramid::source_rows`], and [`Error::Cancelled`] (before the file is opened).
    pub fn source_rows(&self, z: u32, y: u32, height: u32) -> Result<Option<Slice>> {
        self.pyramid.source_rows_in(&self.ctx, z, y, height)
    }

    /// See [`Pyramid::volume`].
    ///
    /// # Errors
    /// As [`Pyramid::volume`], and [`Error::Cancelled`].
    pub fn volume(&self, level: u32) -> Result<Volume> {
        self.pyramid.volume_in(&self.ctx, level)
    }

    /// See [`Pyramid::section`].
    ///
    /// # Errors
    /// As [`Pyramid::section`], and [`Error::Cancelled`].
    pub fn section(&self, level: u32, axis: Axis, index: u32) -> Result<Slice> {
        self.pyramid.section_in(&self.ctx, level, axis, index)
    }

    /// See [`Pyramid::export_ctharvester`].
    ///
    /// # Errors
    /// As [`Pyramid::export_ctharvester`], and [`Error::Cancelled`] (`out` is then left as it
    /// was).
    pub fn export_ctharvester(
        &self,
        out: impl AsRef<Path>,
        levels: Option<&[u32]>,
    ) -> Result<ExportReport> {
        self.pyramid
            .export_ctharvester_in(&self.ctx, out.as_ref(), levels)
    }

    /// See [`Pyramid::export_ome_zarr`]; progress counts source slices written.
    ///
    /// # Errors
    /// As [`Pyramid::export_ome_zarr`], and [`Error::Cancelled`] (`out` is then left as it
    /// was).
    pub fn export_ome_zarr(
        &self,
        out: impl AsRef<Path>,
        options: &crate::zarr::OmeZarrOptions,
    ) -> Result<crate::zarr::OmeZarrReport> {
        self.pyramid
            .export_ome_zarr_in(&self.ctx, out.as_ref(), options)
    }
}
