//! lodcache's errors as Python exceptions.
//!
//! | `lodcache::ErrorKind` | Python exception |
//! |---|---|
//! | `Caller` (a level, index or setting out of range) | `ValueError`; the message names the valid range |
//! | `NotFound` (no stack folder, or no slices in it) | `FileNotFoundError` (errno `ENOENT`) |
//! | `Data` (a damaged, unsupported or mismatched slice) | `lodcache.StackError`, a `ValueError`; `path` is the file |
//! | `Io` | `OSError` with the operating system's errno, so `FileNotFoundError`, `PermissionError`, ... where one fits |
//! | `Cancelled`, `Internal`, anything newer | `RuntimeError` |
//!
//! The exception's message is always the Rust error's message, which names the file; `filename`
//! is not set on `OSError`s (Python would print the path a second time).

use std::path::Path;

use lodcache::{Error, ErrorKind};
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    lodcache,
    StackError,
    pyo3::exceptions::PyValueError,
    "A stack of slices lodcache cannot read: two files with one number, a file that does not \
     decode, or a slice whose size or sample type differs from the first. A ValueError; `path` \
     is the file concerned, and the message names it."
);

/// The Python exception for `err`, with the Rust message.
pub(crate) fn to_py(err: Error) -> PyErr {
    let message = err.to_string();
    match err.kind() {
        ErrorKind::Caller => PyValueError::new_err(message),
        ErrorKind::NotFound => PyFileNotFoundError::new_err((ENOENT, message)),
        ErrorKind::Data => {
            let exc = StackError::new_err(message);
            if let Some(path) = data_path(&err) {
                Python::attach(|py| {
                    // Best effort: the message names the file anyway.
                    let _ = exc.value(py).setattr("path", path.as_os_str());
                });
            }
            exc
        }
        ErrorKind::Io => match &err {
            Error::Io { source, .. } => match errno_of(source) {
                Some(errno) => PyOSError::new_err((errno, message)),
                None => PyOSError::new_err(message),
            },
            _ => PyOSError::new_err(message),
        },
        _ => PyRuntimeError::new_err(message),
    }
}

/// The file a data error is about.
fn data_path(err: &Error) -> Option<&Path> {
    match err {
        Error::DuplicateIndex { second: path, .. }
        | Error::Decode { path, .. }
        | Error::Unsupported { path, .. }
        | Error::TooLarge { path, .. }
        | Error::SizeMismatch { path, .. }
        | Error::SampleTypeMismatch { path, .. } => Some(path),
        _ => None,
    }
}

const ENOENT: i32 = 2;

/// The errno of an I/O error: the operating system's, else the usual one for its kind.
fn errno_of(e: &std::io::Error) -> Option<i32> {
    use std::io::ErrorKind;
    e.raw_os_error().or(match e.kind() {
        ErrorKind::NotFound => Some(ENOENT),
        ErrorKind::PermissionDenied => Some(13),
        ErrorKind::AlreadyExists => Some(17),
        _ => None,
    })
}

/// A `ValueError` for a bad argument of the bindings themselves.
pub(crate) fn invalid(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}
