//! Python bindings of lodcache: the extension module `lodcache._lodcache`.
//!
//! The Python package `lodcache` re-exports `pyramid::PyPyramid` as `lodcache.Pyramid` and
//! adds, in Python, the lazy array-like of a level (`lodcache/_array.py`) and the napari reader;
//! the companion module `ct_thumbnail` wraps `thumbnail::build_thumbnails`. The bindings are thin: they convert
//! types, release the GIL around every call into the library, and hand sample buffers to numpy
//! without copying them. Type stubs: `lodcache/_lodcache.pyi`.

mod convert;
mod errors;
mod phantom;
mod pyramid;
mod thumbnail;
mod warmup;

use pyo3::prelude::*;

/// The extension module.
#[pymodule]
fn _lodcache(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<pyramid::PyPyramid>()?;
    m.add_class::<pyramid::PyLevel>()?;
    m.add_class::<warmup::PyWarmUp>()?;
    m.add_class::<warmup::PyWarmupProgress>()?;
    m.add_function(wrap_pyfunction!(phantom::write_phantom, m)?)?;
    m.add_function(wrap_pyfunction!(thumbnail::build_thumbnails, m)?)?;
    m.add("StackError", py.get_type::<errors::StackError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
