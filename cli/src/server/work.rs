//! The server's calls into the library, in one place, with what each request asks of them:
//! a [`Cancel`] set when its client leaves (the work stops at the next slice boundary), and
//! whether it counts as demand (a coarse-first preview does not).

use lodcache::{Axis, Cancel, Error, Pyramid, Request, Served, Slice, Volume};

/// What one request asks of the library besides its arguments.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ask {
    /// Stop when set.
    pub(crate) cancel: Cancel,
    /// A coarse-first preview: not to be counted as demand.
    pub(crate) preview: bool,
}

impl Ask {
    /// The library's request options for this ask.
    fn request<'a>(&'a self, pyr: &'a Pyramid) -> Request<'a> {
        let r = pyr.request().with_cancel(&self.cancel);
        if self.preview { r.without_demand() } else { r }
    }
}

/// Slice `z` of `level` and where it came from.
pub(crate) fn slice(
    pyr: &Pyramid,
    level: u32,
    z: u32,
    ask: &Ask,
) -> Result<(Slice, Served), Error> {
    ask.request(pyr).slice_served(level, z)
}

/// The section of `level` at `index` across `axis`; `progress(done, total)` is called after
/// each slice of work.
pub(crate) fn section(
    pyr: &Pyramid,
    level: u32,
    axis: Axis,
    index: u32,
    ask: &Ask,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Slice, Error> {
    let report = |p: lodcache::Progress| progress(p.done, p.total);
    ask.request(pyr)
        .with_progress(&report)
        .section(level, axis, index)
}

/// The whole of `level`.
pub(crate) fn volume(pyr: &Pyramid, level: u32, ask: &Ask) -> Result<Volume, Error> {
    ask.request(pyr).volume(level)
}

/// Rows `y..y + height` of source slice `z`, full width, when its file reads by rows; `None`
/// when it must be decoded whole (see [`Pyramid::source_rows`]).
pub(crate) fn source_rows(
    pyr: &Pyramid,
    z: u32,
    y: u32,
    height: u32,
    ask: &Ask,
) -> Result<Option<Slice>, Error> {
    ask.request(pyr).source_rows(z, y, height)
}
