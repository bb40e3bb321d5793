//! `lodcache clean`: removes a scan's cache folder, and only a folder that lodcache made.

use std::path::PathBuf;

use clap::Args;

use crate::opts::PyramidOpts;
use crate::term::{quote, say};
use crate::{Failure, Outcome};

/// Options of `lodcache clean`.
#[derive(Debug, Args)]
pub(crate) struct CleanArgs {
    /// The scan folder
    scan: PathBuf,
    #[command(flatten)]
    pyramid: PyramidOpts,
}

pub(crate) fn run(args: CleanArgs) -> Outcome {
    let Some(dir) = args.pyramid.cache_dir(&args.scan) else {
        return Err(Failure::Error(
            "--no-cache names no cache folder to remove".into(),
        ));
    };
    if !args.scan.is_dir() {
        return Err(Failure::Error(format!(
            "scan folder {} does not exist or is not a folder",
            quote(&args.scan)
        )));
    }
    if !dir.exists() && dir.symlink_metadata().is_err() {
        say!("no cache folder at {}: nothing to remove", quote(&dir));
        return Ok(());
    }
    // Only what lodcache names, never following a link; the folder goes when nothing else is
    // left in it.
    let removed = lodcache::store::remove_cache_folder(&dir).map_err(|e| e.to_string())?;
    say!(
        "removed {} ({} files, {:.1} MiB)",
        quote(&dir),
        removed.files,
        removed.bytes as f64 / f64::from(1 << 20)
    );
    if !removed.left.is_empty() {
        say!(
            "kept {} entries lodcache did not make, so the folder stays: {}",
            removed.left.len(),
            removed
                .left
                .iter()
                .take(5)
                .map(|p| quote(p))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
