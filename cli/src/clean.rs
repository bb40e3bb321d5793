//! `lodcache clean`: removes a scan's cache folder, and only a folder that lodcache made.

use std::path::{Path, PathBuf};

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

/// Why `dir` is not a cache folder lodcache made, or `None` when it is one: a real folder (not
/// a link) holding lodcache's `CACHEDIR.TAG` and a `manifest.json`.
pub(crate) fn not_ours(dir: &Path) -> Option<String> {
    match dir.symlink_metadata() {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Some("it is not a folder (or it is a link)".into()),
        Err(e) => return Some(e.to_string()),
    }
    let tag = std::fs::read(dir.join("CACHEDIR.TAG")).unwrap_or_default();
    let signed = tag.starts_with(b"Signature: 8a477f597d28d172789f06886806bc55");
    let ours = tag.windows(8).any(|w| w == b"lodcache");
    if !(signed && ours) {
        return Some("it holds no CACHEDIR.TAG written by lodcache".into());
    }
    if !dir.join("manifest.json").is_file() {
        return Some("it holds no manifest.json".into());
    }
    None
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
    if let Some(why) = not_ours(&dir) {
        return Err(Failure::Error(format!(
            "not removing {}: {why}, so lodcache did not make it",
            quote(&dir)
        )));
    }
    let (files, bytes) = crate::info::folder_size(&dir);
    std::fs::remove_dir_all(&dir).map_err(|e| format!("removing {}: {e}", quote(&dir)))?;
    say!(
        "removed {} ({files} files, {:.1} MiB)",
        quote(&dir),
        bytes as f64 / f64::from(1 << 20)
    );
    Ok(())
}
