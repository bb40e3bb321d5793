//! `lodcache.write_phantom`: the library's synthetic CT stack, for trying lodcache out and for
//! tests.

use std::path::PathBuf;

use lodcache::{Phantom, SampleType};
use pyo3::prelude::*;

use crate::errors::{invalid, to_py};

/// Writes a synthetic 8- or 16-bit CT stack (ellipsoids of different densities plus noise) as
/// TIFF slices `phantom_00000.tif`, ... into `path` (created if missing). `shape` is
/// `(z, y, x)`; `dtype` is `"uint8"` or `"uint16"`.
#[pyfunction]
#[pyo3(signature = (path, shape, *, dtype="uint16", seed=1, noise=0.02))]
pub(crate) fn write_phantom(
    py: Python<'_>,
    path: PathBuf,
    shape: (u32, u32, u32),
    dtype: &str,
    seed: u64,
    noise: f64,
) -> PyResult<()> {
    let ty = match dtype {
        "uint8" | "u8" => SampleType::U8,
        "uint16" | "u16" => SampleType::U16,
        other => {
            return Err(invalid(format!(
                "phantom dtype {other:?} is not \"uint8\" or \"uint16\""
            )));
        }
    };
    let (depth, height, width) = shape;
    let phantom = Phantom::new(width, height, depth)
        .with_sample_type(ty)
        .with_seed(seed)
        .with_noise(noise);
    py.detach(|| phantom.write(&path)).map_err(to_py)
}
