//! `lodcache export`: writes a pyramid in CTHarvester's layout through the cache.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use lodcache::{Pyramid, Stack};

use crate::opts::{PyramidOpts, default_edge, no_level_note, parse_levels, parse_threads};
use crate::term::{clean, quote, say};
use crate::{Failure, Outcome};

/// Output layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// OUT/<level>/<i:06>.tif, level from 1, uncompressed grayscale TIFF
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
    let before = Counts::of(&pyr);
    let done = AtomicBool::new(false);
    let depth = pyr.stack().depth();
    let report = std::thread::scope(|scope| {
        scope.spawn(|| progress(&pyr, depth, &done));
        let report =
            pyr.export_ctharvester(&args.out, args.levels.as_ref().map(|l| l.0.as_slice()));
        done.store(true, Ordering::Relaxed);
        report
    })
    .map_err(|e| {
        format!(
            "exporting to {}: {}",
            quote(&args.out),
            clean(&e.to_string())
        )
    })?;
    let took = started.elapsed();
    pyr.flush();
    let after = Counts::of(&pyr);
    say!(
        "wrote {} files, {} bytes to {} in {:.2} s; slices generated {}, from cache {}",
        report.files,
        report.bytes,
        quote(&args.out),
        took.as_secs_f64(),
        after.generated - before.generated,
        after.from_cache - before.from_cache
    );
    if crate::term::interrupted() {
        return Err(Failure::Interrupted);
    }
    Ok(())
}

/// Slices generated and slices served from the tiers, so far.
struct Counts {
    generated: u64,
    from_cache: u64,
}

impl Counts {
    fn of(pyr: &Pyramid) -> Counts {
        let s = pyr.stats();
        Counts {
            generated: s.generated,
            from_cache: s.memory.hits + s.disk.hits,
        }
    }
}

/// Draws a progress bar on stderr while the export runs, when stderr is a terminal: source
/// slices read of the scan's depth (a build reads each once; an export served from the cache
/// reads none and is quick).
fn progress(pyr: &Pyramid, depth: u32, done: &AtomicBool) {
    if !std::io::stderr().is_terminal() {
        return;
    }
    let bar = ProgressBar::new(u64::from(depth));
    if let Ok(style) = ProgressStyle::with_template("[{wide_bar}] {pos}/{len} source slices read") {
        bar.set_style(style);
    }
    let base = pyr.stats().source_slices;
    while !done.load(Ordering::Relaxed) {
        bar.set_position(pyr.stats().source_slices.saturating_sub(base));
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}
