//! `lodcache warm`: builds a scan's cache folder in the background, with progress, Ctrl-C and
//! a table per level at the end.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use indicatif::{HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lodcache::{WarmupOptions, WarmupOutcome};

use crate::opts::{
    PyramidOpts, default_edge, parse_duration, parse_levels, parse_size, parse_threads,
};
use crate::term::{clean, quote, say, tell};
use crate::{Failure, Outcome};

/// Options of `lodcache warm`.
#[derive(Debug, Args)]
pub(crate) struct WarmArgs {
    /// The scan folder
    scan: PathBuf,
    /// Levels to build, in this order, e.g. 3,2 [default: by demand, then smallest first]
    #[arg(long, value_name = "LIST", value_parser = parse_levels)]
    levels: Option<crate::opts::LevelList>,
    /// Stop after this long, e.g. 90s or 10m
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    time: Option<Duration>,
    /// Stop once this many bytes of blobs were stored, e.g. 2G
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    bytes: Option<u64>,
    /// Threads making slices (1 to 256) [default: 1]
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    threads: Option<usize>,
    #[command(flatten)]
    pyramid: PyramidOpts,
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Blob files under `dir` and the sum of their sizes (a missing folder holds none).
pub(crate) fn folder_blobs(dir: &Path) -> (u64, u64) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    let (mut files, mut bytes) = (0, 0);
    for entry in entries.flatten() {
        if let Ok(meta) = entry.metadata()
            && meta.is_file()
            && entry.path().extension().is_some_and(|x| x == "blob")
        {
            files += 1;
            bytes += meta.len();
        }
    }
    (files, bytes)
}

pub(crate) fn run(args: WarmArgs) -> Outcome {
    if args.pyramid.no_cache {
        return Err(Failure::Error(
            "nothing to warm with --no-cache: warm builds the cache folder".into(),
        ));
    }
    crate::term::catch_interrupt()?;
    let edge = args.pyramid.edge.unwrap_or_else(default_edge);
    let pyr = args.pyramid.open(&args.scan, edge, None, None)?;
    if pyr.levels().len() < 2 {
        let note = crate::opts::no_level_note(pyr.stack(), edge).unwrap_or_default();
        return Err(Failure::Error(format!("nothing to warm: {note}")));
    }
    let info = pyr.stack().info();
    say!(
        "scan {}: {} x {} x {} {}, levels 1..={}; cache {}",
        quote(&args.scan),
        info.width,
        info.height,
        pyr.stack().depth(),
        info.sample_type,
        pyr.levels().len() - 1,
        quote(pyr.disk().dir())
    );
    let ranked: Vec<String> = pyr
        .demand()
        .levels
        .iter()
        .map(|d| format!("level {} {:.1} ({:.0}%)", d.level, d.score, d.share * 100.0))
        .collect();
    let ranked = if ranked.is_empty() {
        "no requests recorded yet".to_string()
    } else {
        ranked.join(", ")
    };
    let order = if args.levels.is_some() {
        "the levels given"
    } else {
        "by demand, then smallest level to largest"
    };
    say!("demand ranking (decayed request counts): {ranked}; order: {order}");

    let mut options = WarmupOptions::default();
    if let Some(levels) = args.levels {
        options = options.with_levels(levels.0);
    }
    if let Some(t) = args.time {
        options = options.with_time_budget(t);
    }
    if let Some(b) = args.bytes {
        options = options.with_byte_budget(b);
    }
    if let Some(t) = args.threads {
        options = options.with_threads(t);
    }
    let handle = pyr.warm_up(options);
    let bar = ProgressBar::hidden();
    if let Ok(style) = ProgressStyle::with_template("[{wide_bar}] {pos}/{len} slices, {msg}") {
        bar.set_style(style);
    }
    let terminal = std::io::stderr().is_terminal();
    // Ctrl-C is looked at every 20 ms, the bar redrawn every 100 ms.
    for tick in 0u64.. {
        if handle.is_finished() {
            break;
        }
        if crate::term::interrupted() {
            bar.suspend(|| tell!("interrupted: stopping after the slices in progress..."));
            handle.cancel();
            break;
        }
        let p = handle.progress();
        if terminal && tick % 5 == 0 && p.total > 0 {
            bar.set_message(format!(
                "level {}, {:.1} MiB written, {:.1} slices/s, ETA {}",
                p.level.map_or("-".into(), |l| l.to_string()),
                mib(p.bytes),
                p.rate,
                p.eta.map_or("-".into(), |d| HumanDuration(d).to_string())
            ));
            bar.set_length(p.total);
            bar.set_position(p.done);
            if bar.is_hidden() {
                bar.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let outcome = handle.wait();
    bar.finish_and_clear();

    let report = outcome.report();
    let dir = pyr.disk().dir().to_path_buf();
    say!(
        "{:>5}  {:>17}  {:>15}  {:>12}  {:>10}  {:>8}",
        "level",
        "w x h x d",
        "made / already",
        "disk bytes",
        "blob/raw",
        "time s"
    );
    for l in &report.levels {
        let i = l.info;
        let (files, bytes) = folder_blobs(&dir.join(i.level.to_string()));
        // Raw bytes of the slices stored.
        let raw = (i.bytes() / u64::from(i.depth.max(1))) * files;
        let ratio = if raw > 0 {
            format!("{:.3}", bytes as f64 / raw as f64)
        } else {
            "-".into()
        };
        say!(
            "{:>5}  {:>17}  {:>15}  {:>12}  {:>10}  {:>8.3}",
            i.level,
            format!("{} x {} x {}", i.width, i.height, i.depth),
            format!("{} / {}", l.made, l.already_stored),
            bytes,
            ratio,
            l.time.as_secs_f64()
        );
    }
    let p = &report.progress;
    say!(
        "slices: {} made, {} already stored; {:.1} MiB of blobs written in {:.2} s",
        p.done,
        p.already_stored,
        mib(p.bytes),
        p.elapsed.as_secs_f64()
    );
    for w in pyr.warnings() {
        tell!("warning: {}", clean(&w));
    }
    // A run cancelled in the middle of a slice may report the cancellation as its error.
    let cancelled = match &outcome {
        WarmupOutcome::Cancelled(_) => true,
        WarmupOutcome::Failed { error, .. } => error.kind() == lodcache::ErrorKind::Cancelled,
        _ => false,
    };
    if cancelled {
        say!(
            "outcome: cancelled; the cache is valid (blobs are written whole) and the next run \
             resumes from it"
        );
        return Err(Failure::Interrupted);
    }
    match &outcome {
        WarmupOutcome::Completed(_) => say!("outcome: completed"),
        WarmupOutcome::BudgetReached(_) => {
            say!("outcome: budget reached; run again to carry on");
        }
        WarmupOutcome::Failed { error, .. } => {
            say!("outcome: failed");
            return Err(Failure::Error(clean(&error.to_string())));
        }
        other => return Err(Failure::Error(format!("unknown outcome {other:?}"))),
    }
    Ok(())
}
