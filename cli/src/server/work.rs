//! The server's calls into the library, in one place, with what each request asks of them:
//! whether it may be cancelled (its client left) and whether it counts as demand (a coarse
//! preview does not).
//!
//! Until the library has `Request::with_cancel` / `without_demand`, cancellation is checked here
//! between the slices of the work the server composes itself (level-0 sections), and previews
//! are counted; switching to the library's request options changes this file only.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use lodcache::{Axis, Error, Pixels, Pyramid, SampleType, Served, Slice, Volume};

/// Set when the request's client has gone; work stops at the next slice boundary.
#[derive(Debug, Clone, Default)]
pub(crate) struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// Whether the work should stop.
    pub(crate) fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Asks the work to stop.
    pub(crate) fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Cancels its [`Cancel`] when dropped: held by the request's future, which hyper drops when
/// the client closes the connection.
#[derive(Debug)]
pub(crate) struct CancelOnDrop(pub(crate) Cancel);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// What one request asks of the library besides its arguments.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ask {
    /// Stop when set.
    pub(crate) cancel: Cancel,
    /// A coarse-first preview: not to be counted as demand.
    #[expect(
        dead_code,
        reason = "read once the library has Request::without_demand (see the module docs)"
    )]
    pub(crate) preview: bool,
}

/// Why a piece of work did not produce its result.
#[derive(Debug)]
pub(crate) enum WorkError {
    /// The library's error.
    Library(Error),
    /// The client left.
    Cancelled,
}

impl From<Error> for WorkError {
    fn from(e: Error) -> WorkError {
        WorkError::Library(e)
    }
}

/// Slice `z` of `level` and where it came from.
pub(crate) fn slice(
    pyr: &Pyramid,
    level: u32,
    z: u32,
    ask: &Ask,
) -> Result<(Slice, Served), WorkError> {
    if ask.cancel.is_cancelled() {
        return Err(WorkError::Cancelled);
    }
    Ok(pyr.slice_served(level, z)?)
}

/// The section of `level` at `index` across `axis`; `progress(done, total)` is called after
/// each slice of the work this module composes (level 0).
pub(crate) fn section(
    pyr: &Pyramid,
    level: u32,
    axis: Axis,
    index: u32,
    ask: &Ask,
    progress: &dyn Fn(u64, u64),
) -> Result<Slice, WorkError> {
    if ask.cancel.is_cancelled() {
        return Err(WorkError::Cancelled);
    }
    if level != 0 || axis == Axis::Z {
        return Ok(pyr.section(level, axis, index)?);
    }
    // Level 0: slice by slice from the sources, so that a client that leaves stops the reading
    // at the next slice.
    let info = pyr.levels()[0];
    let (extent, out_w) = match axis {
        Axis::X => (info.width, info.height),
        _ => (info.height, info.width),
    };
    if index >= extent {
        // The library's own message for the same mistake.
        return Ok(pyr.section(level, axis, index)?);
    }
    let s = info.sample_type.bytes();
    let row = out_w as usize * s;
    let w = info.width as usize;
    let mut dst = vec![0u8; row * info.depth as usize];
    for z in 0..info.depth {
        if ask.cancel.is_cancelled() {
            return Err(WorkError::Cancelled);
        }
        let (slice, _) = pyr.slice_served(0, z)?;
        let src = slice.pixels().as_bytes();
        let line = &mut dst[z as usize * row..][..row];
        match axis {
            Axis::Y => line.copy_from_slice(&src[index as usize * w * s..][..row]),
            _ => {
                for (y, px) in line.chunks_exact_mut(s).enumerate() {
                    let at = (y * w + index as usize) * s;
                    px.copy_from_slice(&src[at..at + s]);
                }
            }
        }
        progress(u64::from(z) + 1, u64::from(info.depth));
    }
    let pixels = pixels_from_bytes(info.sample_type, &dst);
    Ok(Slice::new(out_w, info.depth, pixels)?)
}

/// Samples of type `ty` from their bytes in native order (as [`lodcache::Pixels::as_bytes`]
/// gives them).
fn pixels_from_bytes(ty: SampleType, bytes: &[u8]) -> Pixels {
    match ty {
        SampleType::U16 => Pixels::U16(
            bytes
                .chunks_exact(2)
                .map(|b| u16::from_ne_bytes([b[0], b[1]]))
                .collect(),
        ),
        SampleType::F32 => Pixels::F32(
            bytes
                .chunks_exact(4)
                .map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        _ => Pixels::U8(bytes.to_vec()),
    }
}

/// The whole of `level`.
pub(crate) fn volume(pyr: &Pyramid, level: u32, ask: &Ask) -> Result<Volume, WorkError> {
    if ask.cancel.is_cancelled() {
        return Err(WorkError::Cancelled);
    }
    Ok(pyr.volume(level)?)
}
