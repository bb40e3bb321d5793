//! `lodcache verify`: hashes every source slice and drops the cached slices made from the ones
//! whose content changed (also those rewritten with the same size and modification time).

use std::path::PathBuf;

use clap::Args;

use crate::Outcome;
use crate::opts::{PyramidOpts, default_edge};
use crate::term::{quote, say};

/// Options of `lodcache verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The scan folder
    scan: PathBuf,
    #[command(flatten)]
    pyramid: PyramidOpts,
}

pub(crate) fn run(mut args: VerifyArgs) -> Outcome {
    // Opening with the content check compares every source's content hash with the one the
    // cache folder recorded and drops exactly the dependents of those that differ (the first
    // time, when none was recorded, every cached slice).
    args.pyramid.content_check = true;
    let edge = args.pyramid.edge.unwrap_or_else(default_edge);
    let pyr = args.pyramid.open(&args.scan, edge, None, None)?;
    let stats = pyr.stats();
    say!(
        "{} source slices hashed; {} cached slices dropped because a source they were made from \
         changed; {} kept",
        pyr.stack().depth(),
        stats.disk.invalidated,
        stats.disk.blobs
    );
    if let Some(dir) = args.pyramid.cache_dir(&args.scan) {
        say!("cache folder {}", quote(&dir));
    }
    Ok(())
}
