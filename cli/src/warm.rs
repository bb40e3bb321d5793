//! `lodcache warm`: builds a scan's cache folder in the background, with progress, Ctrl-C and
//! a table per level at the end.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use indicatif::{HumanDuration, ProgressBar, ProgressDrawTarget, ProgressStyle};
use lodcache::{Shard, WarmupOptions, WarmupOutcome};

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
    /// Build only shard I of N (0-based), e.g. 3/32: N runs, one per shard, build every level
    /// together without doing any work twice (0/1 builds everything) [default: from
    /// SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT in a Slurm job array, or from
    /// JOB_COMPLETION_INDEX with --shard-count in a Kubernetes Indexed Job]
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<Shard>,
    /// The number of shards when the index comes from JOB_COMPLETION_INDEX (a Kubernetes
    /// Indexed Job's completions)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), conflicts_with = "shard")]
    shard_count: Option<u32>,
    #[command(flatten)]
    pyramid: PyramidOpts,
}

/// Parses `I/N`: shard I (0-based) of N.
fn parse_shard(text: &str) -> Result<Shard, String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("{text:?}: write the shard as I/N, e.g. 0/4"))?;
    let number = |s: &str| {
        s.trim()
            .parse::<u32>()
            .map_err(|_| format!("{text:?}: write the shard as I/N with whole numbers, e.g. 0/4"))
    };
    Shard::new(number(i)?, number(n)?).map_err(|_| {
        format!("{text:?}: the index is 0-based and below the count (0/4 to 3/4 for 4 shards)")
    })
}

/// The shard to build, and where it came from: `--shard`, else a Slurm job array
/// (`SLURM_ARRAY_TASK_ID` less `SLURM_ARRAY_TASK_MIN`, over `SLURM_ARRAY_TASK_STEP`, of
/// `SLURM_ARRAY_TASK_COUNT`), else a Kubernetes Indexed Job (`JOB_COMPLETION_INDEX` of
/// `--shard-count`); `None` builds everything.
fn choose_shard(
    explicit: Option<Shard>,
    count: Option<u32>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<(Shard, String)>, String> {
    if let Some(s) = explicit {
        return Ok((s.count() > 1).then(|| (s, "--shard".to_string())));
    }
    let number = |name: &str| -> Result<Option<u32>, String> {
        match env(name) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse::<u32>()
                .map(Some)
                .map_err(|_| format!("{name}={v:?} is not a whole number")),
        }
    };
    if let Some(id) = number("SLURM_ARRAY_TASK_ID")? {
        if count.is_some() {
            return Err(
                "--shard-count is for Kubernetes Indexed Jobs; in a Slurm job array the count \
                 is SLURM_ARRAY_TASK_COUNT"
                    .into(),
            );
        }
        let n = number("SLURM_ARRAY_TASK_COUNT")?.ok_or(
            "SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not (Slurm sets both in a \
             job array); give --shard I/N",
        )?;
        let min = number("SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
        let step = number("SLURM_ARRAY_TASK_STEP")?.unwrap_or(1).max(1);
        let index = id.checked_sub(min).map(|d| d / step);
        let shard = index.and_then(|i| Shard::new(i, n).ok()).ok_or_else(|| {
            format!(
                "SLURM_ARRAY_TASK_ID {id} is not one of {n} tasks from {min} by {step}; use \
                 --array=0-{} (or give --shard I/N)",
                n.saturating_sub(1)
            )
        })?;
        return Ok((n > 1).then(|| (shard, "SLURM_ARRAY_TASK_ID/COUNT".into())));
    }
    if let Some(index) = number("JOB_COMPLETION_INDEX")? {
        let n = count.ok_or(
            "JOB_COMPLETION_INDEX is set (a Kubernetes Indexed Job) but not the number of \
             shards: give --shard-count N (the Job's completions)",
        )?;
        let shard = Shard::new(index, n)
            .map_err(|_| format!("JOB_COMPLETION_INDEX {index} is not below --shard-count {n}"))?;
        return Ok((n > 1).then(|| (shard, "JOB_COMPLETION_INDEX".into())));
    }
    match count {
        Some(_) => Err("--shard-count needs JOB_COMPLETION_INDEX (or give --shard I/N)".into()),
        None => Ok(None),
    }
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
    let shard = choose_shard(args.shard, args.shard_count, |name| {
        std::env::var(name).ok()
    })?;
    crate::term::catch_interrupt()?;
    let edge = args.pyramid.edge.unwrap_or_else(default_edge);
    let pyr = args.pyramid.open(&args.scan, edge, None, None)?;
    let remote = pyr.object_store().cloned();
    if pyr.levels().len() < 2 {
        let note = crate::opts::no_level_note(pyr.stack(), edge).unwrap_or_default();
        return Err(Failure::Error(format!("nothing to warm: {note}")));
    }
    let info = pyr.stack().info();
    let place = match &remote {
        Some(r) => format!(
            "{} (local folder {})",
            quote(std::path::Path::new(&r.location())),
            quote(pyr.disk().dir())
        ),
        None => quote(pyr.disk().dir()),
    };
    say!(
        "scan {}: {} x {} x {} {}, levels 1..={}; cache {place}",
        quote(&args.scan),
        info.width,
        info.height,
        pyr.stack().depth(),
        info.sample_type,
        pyr.levels().len() - 1,
    );
    if let Some((s, from)) = &shard {
        let plan = pyr.shard_plan(*s);
        let ranges: Vec<String> = plan
            .ranges
            .iter()
            .rev()
            .map(|(l, r)| format!("level {l} slices {}..{}", r.start, r.end))
            .collect();
        say!("shard {s} (from {from}): {}", ranges.join(", "));
        if !plan.leftover.is_empty() {
            say!(
                "levels {} have fewer slices than there are shards: run `lodcache warm` without \
                 a shard once every shard is done, to build them",
                plan.leftover
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
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
    if let Some((s, _)) = shard {
        options = options.with_shard(s);
    }
    let failed_writes = || remote.as_ref().map_or(0, |r| r.stats().write_errors);
    let handle = pyr.warm_up(options);
    let mut store_failed = false;
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
        // Warming an object store that does not take the blobs would only fill this machine.
        if failed_writes() > 0 {
            bar.suspend(|| tell!("the object store failed: stopping..."));
            store_failed = true;
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
        if remote.is_some() {
            "store bytes"
        } else {
            "disk bytes"
        },
        "blob/raw",
        "time s"
    );
    for l in &report.levels {
        let i = l.info;
        let (files, bytes) = match &remote {
            Some(r) => r.level_usage(i.level),
            None => folder_blobs(&dir.join(i.level.to_string())),
        };
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
    if let Some(r) = &remote {
        let s = r.stats();
        if s.write_errors > 0 || store_failed {
            say!("outcome: failed");
            return Err(Failure::Error(format!(
                "{} blobs could not be stored in {}: {}; what was stored is whole, and running \
                 the same command again resumes from it",
                s.write_errors,
                quote(std::path::Path::new(r.url())),
                clean(&r.first_write_error().unwrap_or_else(|| "no answer".into()))
            )));
        }
        say!(
            "object store {}: {} blobs, {:.1} MiB",
            quote(std::path::Path::new(&r.location())),
            s.objects,
            mib(s.bytes)
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn shard(i: u32, n: u32) -> Shard {
        Shard::new(i, n).unwrap()
    }

    #[test]
    fn shards_come_from_the_option_slurm_or_kubernetes() {
        assert_eq!(parse_shard("3/4"), Ok(shard(3, 4)));
        for bad in ["4/4", "3", "a/4", "1/0", "-1/4"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
        assert_eq!(choose_shard(None, None, env(&[])), Ok(None));
        // --shard wins over the environment; 0/1 is everything.
        let slurm = [
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
        ];
        assert_eq!(
            choose_shard(Some(shard(1, 3)), None, env(&slurm))
                .unwrap()
                .unwrap()
                .0,
            shard(1, 3)
        );
        assert_eq!(choose_shard(Some(shard(0, 1)), None, env(&slurm)), Ok(None));
        assert_eq!(
            choose_shard(None, None, env(&slurm)).unwrap().unwrap().0,
            shard(2, 4)
        );
        // --array=1-8:2 (1, 3, 5, 7): task 5 is the third.
        let stepped = [
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_COUNT", "4"),
            ("SLURM_ARRAY_TASK_MIN", "1"),
            ("SLURM_ARRAY_TASK_STEP", "2"),
        ];
        assert_eq!(
            choose_shard(None, None, env(&stepped)).unwrap().unwrap().0,
            shard(2, 4)
        );
        let k8s = [("JOB_COMPLETION_INDEX", "7")];
        assert_eq!(
            choose_shard(None, Some(32), env(&k8s)).unwrap().unwrap().0,
            shard(7, 32)
        );
        assert!(
            choose_shard(None, None, env(&k8s))
                .unwrap_err()
                .contains("--shard-count")
        );
        assert!(choose_shard(None, Some(4), env(&[])).is_err());
        assert!(choose_shard(None, Some(4), env(&[("JOB_COMPLETION_INDEX", "4")])).is_err());
        assert!(
            choose_shard(None, None, env(&[("SLURM_ARRAY_TASK_ID", "1")]))
                .unwrap_err()
                .contains("SLURM_ARRAY_TASK_COUNT")
        );
        assert!(
            choose_shard(
                None,
                None,
                env(&[
                    ("SLURM_ARRAY_TASK_ID", "9"),
                    ("SLURM_ARRAY_TASK_COUNT", "4")
                ])
            )
            .is_err()
        );
    }
}
