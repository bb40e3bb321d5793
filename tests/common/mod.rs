//! The one helper module of the integration tests: each `tests/*.rs` is a crate of its own and
//! takes it in with `mod common;`. One copy each of the naive pyramid and its checks, the
//! phantom fixture ([`Scan`]), the seeded generator and sample patterns, the slice files
//! written by hand or by encoders, the TIFF reader, cache-folder listings, the hang guard
//! ([`within`]) and child processes ([`KillOnDrop`], [`Child`]).

// Each test crate uses a different part of these helpers; `expect` would fire in whichever
// crate happens to use all of them.
#![allow(
    dead_code,
    unreachable_pub,
    unused_imports,
    reason = "shared by every test crate, each using a subset"
)]

#[cfg(feature = "object-store")]
mod bucket;
mod files;
mod formats;
mod naive;
mod process;
mod s3;
mod samples;
mod scan;

#[cfg(feature = "object-store")]
pub use bucket::*;
pub use files::*;
pub use formats::*;
pub use naive::*;
pub use process::*;
pub use s3::*;
pub use samples::*;
pub use scan::*;
