//! lodcache's errors as Python exceptions.
//!
//! | lodcache error | Python exception |
//! |---|---|
//! | `StackNotFound` | `FileNotFoundError` (errno `ENOENT`) |
//! | `InvalidArgument` | `ValueError` (the message names the valid range) |
//! | bad stacks: `NoImages`, `DuplicateIndex`, `Decode`, `Unsupported`, `TooLarge`, `SizeMismatch`, `SampleTypeMismatch` | `lodcache.StackError`, a `ValueError` (`path` set to the file) |
//! | `Io` | `OSError` with the operating system's errno, so `FileNotFoundError`, `PermissionError`, ... where one fits |
//! | `Encode`, `CorruptBlob` | `OSError` |
//! | anything else | `RuntimeError` |
//!
//! The exception's message is always the Rust error's message, which names the file; `filename`
//! is not set on `OSError`s (Python would print the path a second time).

use std::path::Path;

use lodcache::Error;
use pyo3::exceptions::{PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

pyo3::create_exception!(
    lodcache,
    StackError,
    pyo3::exceptions::PyValueError,
    "A stack of slices lodcache cannot read: no image files, two files with one number, a \
     file that does not decode, or a slice whose size or sample type differs from the first. \
     A ValueError; `path` is the file (or folder) concerned, and the message names it."
);

/// The Python exception for `err`, with the Rust message.
pub(crate) fn to_py(err: Error) -> PyErr {
    let message = err.to_string();
    match &err {
        Error::StackNotFound { .. } => PyFileNotFoundError::new_err((ENOENT, message)),
        Error::InvalidArgument { .. } => PyValueError::new_err(message),
        Error::NoImages { dir: path, .. }
        | Error::DuplicateIndex { second: path, .. }
        | Error::Decode { path, .. }
        | Error::Unsupported { path, .. }
        | Error::TooLarge { path, .. }
        | Error::SizeMismatch { path, .. }
        | Error::SampleTypeMismatch { path, .. } => stack_error(message, path),
        Error::Io { source, .. } => match errno_of(source) {
            Some(errno) => PyOSError::new_err((errno, message)),
            None => PyOSError::new_err(message),
        },
        Error::Encode { .. } => PyOSError::new_err(message),
        Error::CorruptBlob { .. } => PyOSError::new_err(message),
        _ => PyRuntimeError::new_err(message),
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

fn stack_error(message: String, path: &Path) -> PyErr {
    let err = StackError::new_err(message);
    Python::attach(|py| {
        let _ = err.value(py).setattr("path", path.as_os_str());
    });
    err
}

/// A `ValueError` for a bad argument of the bindings themselves.
pub(crate) fn invalid(message: impl Into<String>) -> PyErr {
    PyValueError::new_err(message.into())
}
