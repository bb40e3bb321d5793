//! `ct_thumbnail.build_thumbnails`: the drop-in for CTHarvester's Rust thumbnail module.
//!
//! It opens the stack through a [`Pyramid`] (so the cache folder, `<input_dir>/.lodcache` by
//! default, is filled on the way and a lodcache viewer opens the scan at once afterwards) and
//! exports every level in CTHarvester's layout under `<input_dir>/.thumbnail`.

use std::path::PathBuf;

use std::sync::{Mutex, MutexGuard, PoisonError};

use lodcache::{Cancel, Progress, Pyramid, StackPattern};
use pyo3::prelude::*;

use crate::errors::{invalid, to_py};

/// The thumbnails' folder inside the stack folder, as CTHarvester reads it.
const THUMBNAIL_FOLDER: &str = ".thumbnail";

/// What the progress callback said.
enum Verdict {
    GoOn,
    Stop,
    Raised(PyErr),
}

/// Calls the callback with `percent`: `False` stops, an exception stops and is kept, anything
/// else (`None` included) goes on.
fn report(py: Python<'_>, callback: Option<&Py<PyAny>>, percent: f64) -> Verdict {
    let Some(cb) = callback else {
        return Verdict::GoOn;
    };
    match cb.bind(py).call1((percent,)) {
        Ok(ret) if ret.is(&*pyo3::types::PyBool::new(py, false)) => Verdict::Stop,
        Ok(_) => Verdict::GoOn,
        Err(e) => Verdict::Raised(e),
    }
}

/// Builds CTHarvester's thumbnail pyramid of the stack in `input_dir`:
/// `<input_dir>/.thumbnail/<n>/<i:06>.tif`.
#[pyfunction]
#[pyo3(signature = (
    input_dir, py_progress_cb=None, prefix=None, file_type=None, seq_begin=None, seq_end=None,
    index_length=None
))]
#[expect(clippy::too_many_arguments, reason = "CTHarvester's signature")]
pub(crate) fn build_thumbnails(
    py: Python<'_>,
    input_dir: PathBuf,
    py_progress_cb: Option<Py<PyAny>>,
    prefix: Option<String>,
    file_type: Option<String>,
    seq_begin: Option<i64>,
    seq_end: Option<i64>,
    index_length: Option<i64>,
) -> PyResult<()> {
    let callback = py_progress_cb.filter(|cb| !cb.is_none(py));
    let pattern = match (prefix, file_type, seq_begin, seq_end, index_length) {
        (Some(prefix), Some(extension), Some(first), Some(last), Some(width)) => {
            let index = |what: &str, v: i64| {
                u64::try_from(v)
                    .map_err(|_| invalid(format!("{what} must not be negative, got {v}")))
            };
            let (first, last) = (index("seq_begin", first)?, index("seq_end", last)?);
            if first > last {
                return Err(invalid(format!(
                    "seq_begin {first} is after seq_end {last}; the sequence is seq_begin..=seq_end"
                )));
            }
            let width = usize::try_from(width)
                .map_err(|_| invalid(format!("index_length must not be negative, got {width}")))?;
            Some(StackPattern {
                prefix,
                extension,
                indices: first..=last,
                index_width: Some(width),
            })
        }
        // Like CTHarvester's module: the pattern counts only when all five are given.
        _ => None,
    };

    match report(py, callback.as_ref(), 0.0) {
        Verdict::GoOn => {}
        Verdict::Stop => return Ok(()),
        Verdict::Raised(e) => return Err(e),
    }
    let out = input_dir.join(THUMBNAIL_FOLDER);
    let cancel = Cancel::new();
    // The last percentage reported, and the callback's exception if it raised one.
    let state: Mutex<(f64, Option<PyErr>)> = Mutex::new((0.0, None));
    let progress = |p: Progress| {
        // Strictly between 0 and 100: 100.0 is said once, after the last file is in place.
        let percent = 100.0 * p.fraction();
        let mut st = lock(&state);
        if cancel.is_cancelled() || percent <= st.0 || percent >= 100.0 {
            return;
        }
        st.0 = percent;
        // On this (the calling) thread: the library reports progress where the call was made.
        // Ctrl-C (on the main thread) stops the build like an exception from the callback.
        let verdict = Python::attach(|py| match report(py, callback.as_ref(), percent) {
            Verdict::GoOn => match py.check_signals() {
                Ok(()) => Verdict::GoOn,
                Err(e) => Verdict::Raised(e),
            },
            other => other,
        });
        match verdict {
            Verdict::GoOn => {}
            Verdict::Stop => cancel.cancel(),
            Verdict::Raised(e) => {
                st.1 = Some(e);
                cancel.cancel();
            }
        }
    };
    let built = py.detach(|| {
        let mut builder = Pyramid::builder(&input_dir);
        if let Some(p) = pattern {
            builder = builder.with_pattern(p);
        }
        let pyramid = builder.build()?;
        let result = pyramid
            .request()
            .with_cancel(&cancel)
            .with_progress(&progress)
            .export_ctharvester(&out, None);
        // What was made is stored before returning, so a later call resumes from it.
        pyramid.flush();
        result
    });
    if let Some(e) = lock(&state).1.take() {
        return Err(e);
    }
    match built {
        Ok(_) => {}
        Err(lodcache::Error::Cancelled) if cancel.is_cancelled() => return Ok(()),
        Err(e) => return Err(to_py(e)),
    }
    match report(py, callback.as_ref(), 100.0) {
        Verdict::Raised(e) => Err(e),
        _ => Ok(()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
