//! Warms a stack's cache folder in the background, most requested levels first, with progress.
//!
//! ```text
//! cargo run --release --example warmup -- [STACK] [--cache DIR] [--levels a,b] [--budget-mb N]
//!                                         [--seconds N] [--threads N] [--edge N]
//! ```
//! No STACK: the built-in phantom. No `--levels`: the order comes from the demand statistics in
//! the cache folder (default `STACK/.lodcache`), then smallest level to largest. Ctrl-C cancels
//! between slices (exit code 130; a second Ctrl-C exits at once): the cache stays valid and the
//! next run resumes from it.
//! Ends with a table per level: slices made and already stored, bytes on disk, blob / raw.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use indicatif::{HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lodcache::{LevelRule, Pyramid, WarmupOptions, WarmupOutcome, sample_stack};

const USAGE: &str = "usage: warmup [STACK] [--cache DIR] [--levels a,b] [--budget-mb N] \
                     [--seconds N] [--threads N] [--edge N]";

struct Args {
    stack: Option<PathBuf>,
    cache: Option<PathBuf>,
    edge: u32,
    options: WarmupOptions,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        stack: None,
        cache: None,
        edge: LevelRule::default().edge,
        options: WarmupOptions::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let v = match a.as_str() {
            "-h" | "--help" => return Err(USAGE.into()),
            s if s.starts_with("--") => it.next().ok_or_else(|| format!("{a} needs a value"))?,
            _ if args.stack.is_none() => {
                args.stack = Some(PathBuf::from(a));
                continue;
            }
            _ => return Err(format!("too many arguments\n{USAGE}")),
        };
        let whole = || {
            v.parse::<u32>()
                .map_err(|_| format!("{a} takes a whole number, not {v:?}"))
        };
        let number = || {
            let n = v.parse::<f64>().ok().filter(|n| *n >= 0.0 && n.is_finite());
            n.ok_or_else(|| format!("{a} takes a number, not {v:?}"))
        };
        match a.as_str() {
            "--cache" => args.cache = Some(PathBuf::from(&v)),
            "--edge" => args.edge = whole()?,
            _ => {}
        }
        let o = std::mem::take(&mut args.options);
        args.options = match a.as_str() {
            "--cache" | "--edge" => o,
            "--levels" => o.with_levels(
                v.split(',')
                    .map(|s| s.trim().parse::<u32>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| format!("--levels takes numbers like 1,2,3, not {v:?}"))?,
            ),
            "--budget-mb" => o.with_byte_budget((number()? * f64::from(1 << 20)) as u64),
            "--seconds" => o.with_time_budget(Duration::from_secs_f64(number()?)),
            "--threads" => o.with_threads(whole()? as usize),
            _ => return Err(format!("unknown option {a}\n{USAGE}")),
        };
    }
    Ok(args)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// Blob files under `dir` and the sum of their sizes (a missing folder holds none).
fn folder_bytes(dir: &Path) -> Result<(u64, u64), String> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(format!("listing {}: {e}", dir.display())),
    };
    let (mut files, mut bytes) = (0, 0);
    for entry in entries {
        let entry = entry.map_err(|e| format!("listing {}: {e}", dir.display()))?;
        let meta = entry
            .metadata()
            .map_err(|e| format!("reading {}: {e}", entry.path().display()))?;
        if meta.is_file() && entry.path().extension().is_some_and(|x| x == "blob") {
            files += 1;
            bytes += meta.len();
        }
    }
    Ok((files, bytes))
}

fn run() -> Result<ExitCode, String> {
    let args = parse_args()?;
    let stack_dir = match args.stack {
        Some(s) => s,
        None => {
            let dir = sample_stack().map_err(|e| e.to_string())?;
            println!(
                "no STACK given: using the built-in phantom in {}",
                dir.display()
            );
            dir
        }
    };
    let mut builder = Pyramid::builder(&stack_dir).with_edge(args.edge);
    if let Some(dir) = &args.cache {
        builder = builder.with_cache_dir(dir);
    }
    let pyr = builder.build().map_err(|e| e.to_string())?;
    let info = pyr.stack().info();
    println!(
        "stack {}: {} x {} x {} {}, levels 1..={}; cache {}",
        stack_dir.display(),
        info.width,
        info.height,
        pyr.stack().depth(),
        info.sample_type,
        pyr.levels().len() - 1,
        pyr.disk().dir().display()
    );
    let mut ranked: Vec<String> = pyr
        .demand()
        .levels
        .iter()
        .map(|d| format!("level {} {:.1} ({:.0}%)", d.level, d.score, d.share * 100.0))
        .collect();
    if ranked.is_empty() {
        ranked.push("no requests recorded yet".into());
    }
    let order = match args.options.levels {
        Some(_) => "the levels given",
        None => "by demand, then smallest level to largest",
    };
    println!(
        "demand ranking (decayed request counts): {}; order: {order}",
        ranked.join(", ")
    );

    let handle = pyr.warm_up(args.options);
    // Drawn on stderr once the total is known, and only when it is a terminal.
    let bar = ProgressBar::hidden().with_style(
        ProgressStyle::with_template("[{wide_bar}] {pos}/{len} slices, {msg}")
            .map_err(|e| e.to_string())?,
    );
    // Ctrl-C is looked at every 20 ms, the bar redrawn every 100 ms.
    for tick in 0u64.. {
        if handle.is_finished() {
            break;
        }
        if INTERRUPTED.load(Ordering::Relaxed) {
            bar.suspend(|| eprintln!("interrupted: stopping after the slices in progress..."));
            handle.cancel();
            break;
        }
        let p = handle.progress();
        // The total is known once the run has listed what is missing.
        if tick % 5 == 0 && p.total > 0 {
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
    let dir = pyr.disk().dir();
    println!(
        "{:>5}  {:>17}  {:>15}  {:>12}  {:>10}  {:>8}",
        "level", "w x h x d", "made / already", "disk bytes", "blob/raw", "time s"
    );
    for l in &report.levels {
        let i = l.info;
        let (files, bytes) = folder_bytes(&dir.join(i.level.to_string()))?;
        // Raw bytes of the slices stored (the whole level, w * h * d * sample, once complete).
        let raw = (i.bytes() / u64::from(i.depth.max(1))) * files;
        let ratio = if raw > 0 {
            format!("{:.3}", bytes as f64 / raw as f64)
        } else {
            "-".into()
        };
        println!(
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
    println!(
        "slices: {} made, {} already stored; {:.1} MiB of blobs written in {:.2} s",
        p.done,
        p.already_stored,
        mib(p.bytes),
        p.elapsed.as_secs_f64()
    );
    for w in pyr.warnings() {
        eprintln!("warning: {w}");
    }
    let (said, code) = match &outcome {
        WarmupOutcome::Completed(_) => ("completed", ExitCode::SUCCESS),
        WarmupOutcome::BudgetReached(_) => {
            ("budget reached; run again to carry on", ExitCode::SUCCESS)
        }
        WarmupOutcome::Cancelled(_) => (
            "cancelled; the cache is valid (blobs are written whole) and the next run resumes \
             from it",
            ExitCode::from(130),
        ),
        WarmupOutcome::Failed { error, .. } => {
            println!("outcome: failed");
            return Err(error.to_string());
        }
        other => return Err(format!("unknown outcome {other:?}")),
    };
    println!("outcome: {said}");
    Ok(code)
}

/// Set by Ctrl-C; the main loop cancels the run.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    let handler = || {
        if INTERRUPTED.swap(true, Ordering::Relaxed) {
            // A second Ctrl-C: leave now. Blobs are written whole, so the cache stays valid.
            std::process::exit(130);
        }
    };
    if let Err(e) = ctrlc::set_handler(handler) {
        eprintln!("error: installing the Ctrl-C handler: {e}");
        return ExitCode::FAILURE;
    }
    match run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
