//! `lodcache export`: writes a pyramid in CTHarvester's layout through the cache.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use lodcache::Stack;

use crate::opts::{PyramidOpts, default_edge, no_level_note, parse_levels, parse_threads};
use crate::term::{clean, quote, say, tell};
use crate::{Failure, Outcome};

/// Output layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// OUT/LEVEL/NNNNNN.tif (LEVEL from 1, NNNNNN the slice from 0), uncompressed gray TIFF
    Ctharvester,
}

/// Options of `lodcache export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The scan folder
    scan: PathBuf,
    /// The output folder (level folders already there are replaced once the export succeeded)
    out: PathBuf,
    /// The output layout
    #[arg(long, value_enum, default_value_t = Format::Ctharvester)]
    format: Format,
    /// Levels to write, e.g. 1,2 [default: every level]
    #[arg(long, value_name = "LIST", value_parser = parse_levels)]
    levels: Option<crate::opts::LevelList>,
    /// Threads decoding sources and reducing (1 to 256) [default: the library's]
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    threads: Option<usize>,
    #[command(flatten)]
    pyramid: PyramidOpts,
}

pub(crate) fn run(args: ExportArgs) -> Outcome {
    crate::term::catch_interrupt()?;
    let Format::Ctharvester = args.format;
    let edge = args.pyramid.edge.unwrap_or_else(default_edge);
    let stack = Stack::open(&args.scan)
        .map_err(|e| format!("opening {}: {}", quote(&args.scan), clean(&e.to_string())))?;
    if let Some(note) = no_level_note(&stack, edge) {
        return Err(Failure::Error(format!("nothing to export: {note}")));
    }
    drop(stack);
    let pool = match args.threads {
        Some(n) => Some(Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| format!("lodcache-export-{i}"))
                .build()
                .map_err(|e| format!("starting {n} threads: {e}"))?,
        )),
        None => None,
    };
    let pyr = args.pyramid.open(&args.scan, edge, args.threads, pool)?;
    let started = Instant::now();
    let cancel = crate::term::interrupt();
    let bar = progress_bar();
    let progress = |p: lodcache::Progress| {
        if let Some(bar) = &bar {
            bar.set_length(p.total);
            bar.set_position(p.done);
        }
    };
    let mut request = pyr.request().with_cancel(&cancel).with_progress(&progress);
    if args.pyramid.no_cache {
        // Nothing outlives this process: keeping the slices in memory would only cost time
        // and fresh memory (encoding them, and a new buffer for every slice kept).
        request = request.without_storing();
    }
    let report =
        request.export_ctharvester(&args.out, args.levels.as_ref().map(|l| l.0.as_slice()));
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let report = match report {
        Err(e) if e.kind() == lodcache::ErrorKind::Cancelled => {
            tell!("export cancelled: {} left as it was", quote(&args.out));
            return Err(Failure::Interrupted);
        }
        r => r.map_err(|e| {
            format!(
                "exporting to {}: {}",
                quote(&args.out),
                clean(&e.to_string())
            )
        })?,
    };
    let took = started.elapsed();
    pyr.flush();
    say!(
        "wrote {} files, {} bytes to {} in {:.2} s; slices generated {}, from cache {}",
        report.files,
        report.bytes,
        quote(&args.out),
        took.as_secs_f64(),
        report.generated,
        report.from_cache
    );
    if crate::term::interrupted() {
        return Err(Failure::Interrupted);
    }
    Ok(())
}

/// A progress bar on stderr when it is a terminal: units of the export's work (slices read,
/// made or written).
fn progress_bar() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("[{wide_bar}] {pos}/{len} slices {eta}") {
        bar.set_style(style);
    }
    Some(bar)
}
