//! Conversions between Python values and lodcache's types: byte sizes, sample buffers handed to
//! numpy without a copy, axes and region bounds.

use lodcache::{Axis, Pixels, SampleType};
use numpy::ndarray::{ArrayD, IxDyn};
use numpy::{IntoPyArray, PyArrayDescr, dtype};
use pyo3::prelude::*;
use pyo3::types::{PySlice, PyString};

use crate::errors::invalid;

/// A byte count, from an `int` or a string such as `"512M"`, `"1.5GiB"`, `"64 KB"`: binary
/// units (K = 1024), optional `i` and `B`, any letter case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteCount(pub(crate) u64);

impl<'a, 'py> FromPyObject<'a, 'py> for ByteCount {
    type Error = PyErr;

    fn extract(value: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(n) = value.extract::<i64>() {
            return u64::try_from(n)
                .map(ByteCount)
                .map_err(|_| invalid(format!("a byte size must not be negative, got {n}")));
        }
        let Ok(text) = value.cast::<PyString>() else {
            return Err(invalid(format!(
                "a byte size must be a number of bytes or a string like \"512M\", got {}",
                value.repr()?
            )));
        };
        let text = text.to_cow()?;
        parse_size(&text).map(ByteCount).ok_or_else(|| {
            invalid(format!(
                "{text:?} is not a byte size: use bytes or a number with K, M, G or T (binary \
                 units), e.g. \"512M\""
            ))
        })
    }
}

fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let unit = unit.trim().to_ascii_lowercase();
    let unit = unit.strip_suffix('b').unwrap_or(&unit);
    let unit = unit.strip_suffix('i').unwrap_or(unit);
    let shift = match unit {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return None,
    };
    let bytes = number * (1u64 << shift) as f64;
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then(|| bytes.round() as u64)
}

/// The numpy dtype of a sample type.
pub(crate) fn numpy_dtype<'py>(py: Python<'py>, ty: SampleType) -> Bound<'py, PyArrayDescr> {
    match ty {
        SampleType::U8 => dtype::<u8>(py),
        SampleType::U16 => dtype::<u16>(py),
        _ => dtype::<f32>(py),
    }
}

/// `pixels` as a numpy array of `shape`, without a copy: the Rust buffer becomes the array's
/// memory (owned by the array's base object, freed with it).
pub(crate) fn into_array<'py>(
    py: Python<'py>,
    pixels: Pixels,
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    fn shaped<'py, T: numpy::Element>(
        py: Python<'py>,
        v: Vec<T>,
        shape: &[usize],
    ) -> PyResult<Bound<'py, PyAny>> {
        let len = v.len();
        let array = ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|_| {
            invalid(format!(
                "internal: {len} samples do not make an array of shape {shape:?}"
            ))
        })?;
        Ok(array.into_pyarray(py).into_any())
    }
    match pixels {
        Pixels::U8(v) => shaped(py, v, shape),
        Pixels::U16(v) => shaped(py, v, shape),
        Pixels::F32(v) => shaped(py, v, shape),
        other => Err(invalid(format!(
            "internal: samples of type {} have no numpy conversion",
            other.sample_type()
        ))),
    }
}

/// An axis from `"z"`, `"y"`, `"x"` (any case) or a numpy axis number of a `(z, y, x)` volume:
/// 0 = z, 1 = y, 2 = x (negative numbers count from the end).
pub(crate) fn axis(value: &Bound<'_, PyAny>) -> PyResult<Axis> {
    if let Ok(n) = value.extract::<i64>() {
        return match n {
            0 | -3 => Ok(Axis::Z),
            1 | -2 => Ok(Axis::Y),
            2 | -1 => Ok(Axis::X),
            _ => Err(invalid(format!(
                "axis {n} is out of range; valid: 0 (z), 1 (y), 2 (x), or \"z\", \"y\", \"x\""
            ))),
        };
    }
    let name = value.extract::<String>().map_err(|_| {
        invalid(format!(
            "axis must be \"z\", \"y\", \"x\" or 0, 1, 2, got {}",
            value.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })?;
    match name.to_ascii_lowercase().as_str() {
        "z" => Ok(Axis::Z),
        "y" => Ok(Axis::Y),
        "x" => Ok(Axis::X),
        _ => Err(invalid(format!(
            "axis {name:?} is not one of \"z\", \"y\", \"x\" (or 0, 1, 2)"
        ))),
    }
}

/// The bounds `[start, stop)` of a region along one axis of length `len` from a `slice` (step
/// 1 or None) or an `int` (one row or column; negative counts from the end).
pub(crate) fn bounds(what: &str, value: &Bound<'_, PyAny>, len: u32) -> PyResult<(u32, u32)> {
    let len_i = i64::from(len);
    if let Ok(s) = value.cast::<PySlice>() {
        let step = s.getattr("step")?;
        if !step.is_none() && step.extract::<i64>().ok() != Some(1) {
            return Err(invalid(format!(
                "region {what} must be a slice with step 1, got step {}; index the level \
                 (pyramid[level][z, y0:y1:step, x0:x1:step]) for strided selections",
                step.repr()?
            )));
        }
        let end = |name: &str| -> PyResult<Option<i64>> {
            let v = s.getattr(name)?;
            if v.is_none() {
                Ok(None)
            } else {
                v.extract::<i64>()
                    .map(Some)
                    .map_err(|_| invalid(format!("region {what} bounds must be integers or None")))
            }
        };
        let clamp = |i: i64| {
            if i < 0 {
                (i + len_i).max(0)
            } else {
                i.min(len_i)
            }
        };
        let start = end("start")?.map_or(0, clamp);
        let stop = end("stop")?.map_or(len_i, clamp);
        if start >= stop {
            return Err(invalid(format!(
                "region {what} {start}:{stop} is empty; valid: within 0..{len}"
            )));
        }
        return Ok((start as u32, stop as u32));
    }
    let i: i64 = value.extract().map_err(|_| {
        invalid(format!(
            "region {what} must be a slice or an integer, got {}",
            value.repr().map(|r| r.to_string()).unwrap_or_default()
        ))
    })?;
    let at = if i < 0 { i + len_i } else { i };
    if !(0..len_i).contains(&at) {
        return Err(invalid(format!(
            "region {what} {i} is out of range; valid: 0..={}",
            len - 1
        )));
    }
    Ok((at as u32, at as u32 + 1))
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_are_binary_and_case_free() {
        assert_eq!(parse_size("512M"), Some(512 << 20));
        assert_eq!(parse_size("512MiB"), Some(512 << 20));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size(" 64 kb "), Some(64 << 10));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("12Q"), None);
        assert_eq!(parse_size("M"), None);
        assert_eq!(parse_size(""), None);
    }
}
