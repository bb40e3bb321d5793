//! The crate's one error type.
//!
//! Every file name in a message is printed quoted, with control characters escaped (Rust's
//! `Debug` quoting), so a name holding a newline or a terminal escape sequence cannot forge a
//! line of output or colour a terminal.

use std::fmt;
use std::path::PathBuf;

use crate::slice::SampleType;

/// Everything that can go wrong in lodcache.
///
/// Every variant carries what a user needs to find the problem: the file, the value that was
/// expected and the one that was found. A cache miss is never an error; a damaged cache entry is
/// counted and regenerated, never returned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read or written.
    #[error("{action} {path:?}: {source}")]
    Io {
        /// What was being done ("reading", "writing", "listing", ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// The stack folder does not exist or is not a folder.
    #[error("stack folder {path:?} does not exist or is not a folder")]
    StackNotFound {
        /// The path that was given.
        path: PathBuf,
    },

    /// The folder holds no file that looks like a slice.
    #[error("no image slices in {dir:?}: looked for {looked_for}")]
    NoImages {
        /// The folder that was searched.
        dir: PathBuf,
        /// A description of the names that would have matched.
        looked_for: String,
    },

    /// Two files of the stack have the same slice number (e.g. `scan01.tif` and `scan1.tif`).
    #[error("slice number {index} appears twice: {first:?} and {second:?}")]
    DuplicateIndex {
        /// The slice number.
        index: u64,
        /// The first file with that number.
        first: PathBuf,
        /// The second file with that number.
        second: PathBuf,
    },

    /// A slice file is truncated, corrupt or not the image format its name says.
    #[error("cannot decode {path:?}: {reason}")]
    Decode {
        /// The slice file.
        path: PathBuf,
        /// What the decoder reported.
        reason: String,
    },

    /// A slice file uses a pixel layout lodcache does not read.
    #[error("unsupported image in {path:?}: {what}")]
    Unsupported {
        /// The slice file.
        path: PathBuf,
        /// What is not supported.
        what: String,
    },

    /// A slice is larger than the decoding limits allow (refused before allocating).
    #[error(
        "{path:?} claims {width} x {height} pixels, above the limit of {limit} bytes per slice"
    )]
    TooLarge {
        /// The slice file.
        path: PathBuf,
        /// The claimed width.
        width: u64,
        /// The claimed height.
        height: u64,
        /// The limit in bytes.
        limit: u64,
    },

    /// An entry named like a slice of the stack cannot be one: a folder, FIFO, socket or
    /// device, a link that dangles, loops or leads to one of those, or a name that is not
    /// valid UTF-8. Refused rather than skipped, because skipping it would shift every later
    /// slice by one position.
    #[error("{path:?} is named like a slice of the stack but {problem}")]
    BadSliceEntry {
        /// The entry.
        path: PathBuf,
        /// What it is instead of a regular file with a UTF-8 name.
        problem: String,
    },

    /// Decoding a slice needs more working memory than the whole process-wide decode budget
    /// (refused before allocating; see [`crate::set_decode_budget`]).
    #[error(
        "decoding {path:?} needs {needed} bytes ({} MiB) of working memory, more than the whole \
         decode budget of {budget} bytes ({} MiB); raise it with --decode-budget SIZE \
         (lodcache::set_decode_budget)",
        needed.div_ceil(1 << 20),
        budget >> 20
    )]
    OverDecodeBudget {
        /// The slice file.
        path: PathBuf,
        /// Bytes its decode needs at once.
        needed: u64,
        /// The decode budget in bytes.
        budget: u64,
    },

    /// A slice's width or height differs from the first slice of the stack.
    #[error(
        "{path:?} is {found_w} x {found_h} pixels but the stack's first slice is {expected_w} x {expected_h}"
    )]
    SizeMismatch {
        /// The slice file.
        path: PathBuf,
        /// Width of the first slice.
        expected_w: u32,
        /// Height of the first slice.
        expected_h: u32,
        /// Width of this slice.
        found_w: u32,
        /// Height of this slice.
        found_h: u32,
    },

    /// A slice's sample type differs from the first slice of the stack.
    #[error("{path:?} has {found} samples but the stack's first slice has {expected} samples")]
    SampleTypeMismatch {
        /// The slice file.
        path: PathBuf,
        /// Sample type of the first slice.
        expected: SampleType,
        /// Sample type of this slice.
        found: SampleType,
    },

    /// A file could not be encoded (export).
    #[error("cannot encode {path:?}: {reason}")]
    Encode {
        /// The file being written.
        path: PathBuf,
        /// What the encoder reported.
        reason: String,
    },

    /// A request or setting is out of range or inconsistent: the caller's mistake.
    #[error("invalid {what}: {detail}")]
    InvalidArgument {
        /// The argument or setting.
        what: &'static str,
        /// The value and the valid range.
        detail: String,
    },

    /// A page of a multi-page TIFF could not be read: the file, the page (from 0) and what
    /// was wrong with it (an error about the file, e.g. [`Error::SizeMismatch`]).
    #[error("page {page} of {path:?}: {source}")]
    Page {
        /// The multi-page file.
        path: PathBuf,
        /// The page, from 0.
        page: u32,
        /// What went wrong with it.
        source: Box<Error>,
    },

    /// The request was cancelled (see [`crate::Cancel`]) before it finished. What it made
    /// before it stopped is kept in the cache.
    #[error("cancelled")]
    Cancelled,

    /// A failure inside lodcache, not caused by the caller or the data (a worker thread that
    /// panicked, a state that should not happen). Worth a bug report.
    #[error("internal error in {what}: {detail}")]
    Internal {
        /// The part of lodcache that failed.
        what: &'static str,
        /// What happened.
        detail: String,
    },

    /// An object store (the shared tier behind the disk) refused or failed an operation: the
    /// store's URL, what was being done, and why (credentials refused, no answer within the
    /// timeout, no such bucket, ...).
    #[error("object store {url:?}: {action}: {reason}")]
    ObjectStore {
        /// The store's URL (`s3://bucket/prefix`, `gs://...`, `az://...`).
        url: String,
        /// What was being done, naming the object.
        action: String,
        /// Why it failed.
        reason: String,
    },
}

/// What kind of failure an [`Error`] is, for callers that branch on it (a server maps
/// [`ErrorKind::Caller`] to 4xx, [`ErrorKind::Internal`] to 5xx, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller asked for something that does not exist or is inconsistent (a level or slice
    /// out of range, a bad setting). The message names the valid range.
    Caller,
    /// The stack folder does not exist or holds no slice.
    NotFound,
    /// A source file is damaged, unsupported or inconsistent with the stack; the message names
    /// the file.
    Data,
    /// The operating system refused a read or write (the message names the file), or an
    /// object store failed (the message names the store and the object).
    Io,
    /// The request was cancelled.
    Cancelled,
    /// A failure inside lodcache.
    Internal,
}

/// `Result` with lodcache's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kind of failure, for callers that branch on it.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Io { .. } => ErrorKind::Io,
            Error::StackNotFound { .. } | Error::NoImages { .. } => ErrorKind::NotFound,
            Error::DuplicateIndex { .. }
            | Error::Decode { .. }
            | Error::Unsupported { .. }
            | Error::TooLarge { .. }
            | Error::SizeMismatch { .. }
            | Error::SampleTypeMismatch { .. }
            | Error::BadSliceEntry { .. }
            | Error::OverDecodeBudget { .. } => ErrorKind::Data,
            Error::Encode { .. } => ErrorKind::Io,
            Error::InvalidArgument { .. } => ErrorKind::Caller,
            Error::Page { source, .. } => source.kind(),
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Internal { .. } => ErrorKind::Internal,
            Error::ObjectStore { .. } => ErrorKind::Io,
        }
    }

    /// An [`Error::Io`] naming the path and what was being done.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Decode`] naming the file.
    pub(crate) fn decode(path: impl Into<PathBuf>, reason: impl fmt::Display) -> Self {
        Error::Decode {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    /// An [`Error::Unsupported`] naming the file.
    pub(crate) fn unsupported(path: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Unsupported {
            path: path.into(),
            what: what.into(),
        }
    }

    /// An [`Error::Internal`].
    pub(crate) fn internal(what: &'static str, detail: impl Into<String>) -> Self {
        Error::Internal {
            what,
            detail: detail.into(),
        }
    }

    /// An [`Error::InvalidArgument`].
    pub(crate) fn invalid(what: &'static str, detail: impl Into<String>) -> Self {
        Error::InvalidArgument {
            what,
            detail: detail.into(),
        }
    }
}
