//! Lazy against eager on one stack, measured in one run: one table.
//!
//! ```text
//! cargo run --release --example bench -- [STACK] [--edge N] [--memory-mb N] [--runs N]
//! ```
//! No STACK: the built-in phantom. Every timed step starts from an empty cache folder (a fresh
//! temporary one) with the stack's files in the page cache (they are read once first). Each
//! figure is the median of `--runs` runs (default 3); latencies are p50 and p99 of 1000
//! requests.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use lodcache::{LevelRule, Pyramid, Slice, Stack, StreamOptions, sample_stack, stream_levels};

struct Args {
    stack: Option<PathBuf>,
    edge: u32,
    memory_mb: u64,
    runs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        stack: None,
        edge: LevelRule::default().edge,
        memory_mb: 512,
        runs: 3,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name} takes a whole number, not {v:?}"))
        };
        match a.as_str() {
            "--edge" => args.edge = number("--edge")? as u32,
            "--memory-mb" => args.memory_mb = number("--memory-mb")?,
            "--runs" => args.runs = number("--runs")?.max(1) as usize,
            "-h" | "--help" => {
                return Err("usage: bench [STACK] [--edge N] [--memory-mb N] [--runs N]".into());
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ if args.stack.is_none() => args.stack = Some(PathBuf::from(a)),
            _ => return Err("too many arguments: bench [STACK] [options]".into()),
        }
    }
    Ok(args)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// Peak resident memory since the last reset, in bytes (Linux; 0 elsewhere).
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Resets the peak so that the next reading covers only what follows (Linux >= 4.0).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn current_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

struct Bench<'a> {
    stack_dir: &'a Path,
    edge: u32,
    memory: u64,
    scratch: PathBuf,
    runs: usize,
}

impl Bench<'_> {
    fn fresh(&self, name: &str) -> Result<Pyramid, String> {
        let cache = self.scratch.join(name);
        let _ = std::fs::remove_dir_all(&cache);
        Pyramid::builder(self.stack_dir)
            .with_edge(self.edge)
            .with_memory_budget(self.memory)
            .with_cache_dir(cache)
            .build()
            .map_err(|e| e.to_string())
    }

    fn latency(
        &self,
        pyr: &Pyramid,
        level: u32,
        requests: usize,
    ) -> Result<(Duration, Duration), String> {
        let depth = pyr.levels()[level as usize].depth;
        let mut x = 0x9e37_79b9_u32;
        let mut times = Vec::with_capacity(requests);
        for _ in 0..requests {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            let t = Instant::now();
            pyr.slice(level, x % depth).map_err(|e| e.to_string())?;
            times.push(t.elapsed());
        }
        times.sort();
        Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
    }
}

fn decode_floor(stack: &Stack, threads: usize) -> Duration {
    let t = Instant::now();
    std::thread::scope(|s| {
        for first in 0..threads {
            s.spawn(move || {
                let mut reader = stack.reader();
                let mut buf = Slice::zeroed(0, 0, stack.info().sample_type);
                let mut z = first as u32;
                while z < stack.depth() {
                    // A slice that fails to decode fails every timed step too; skip it here.
                    let _ = reader.read_into(z, &mut buf);
                    z += threads as u32;
                }
            });
        }
    });
    t.elapsed()
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let stack_dir = match args.stack {
        Some(s) => s,
        None => sample_stack().map_err(|e| e.to_string())?,
    };
    let stack = Stack::open(&stack_dir).map_err(|e| e.to_string())?;
    let rule = LevelRule::default().with_edge(args.edge);
    let levels = stack.levels(&rule).map_err(|e| e.to_string())?;
    let top = levels.len() as u32 - 1;
    if top == 0 {
        return Err(format!(
            "{} is not above the edge of {} px: no levels to build (try --edge)",
            stack_dir.display(),
            args.edge
        ));
    }
    let info = stack.info();
    let source_slice = levels[0].slice_bytes() as u64;
    let threads = StreamOptions::default().decode_threads;
    let scratch = std::env::temp_dir().join(format!("lodcache-bench-{}", std::process::id()));
    let bench = Bench {
        stack_dir: &stack_dir,
        edge: args.edge,
        memory: args.memory_mb << 20,
        scratch: scratch.clone(),
        runs: args.runs,
    };

    // Warm the page cache, then the floors.
    decode_floor(&stack, threads);
    let floor1 = median((0..bench.runs).map(|_| decode_floor(&stack, 1)).collect());
    let floor = median(
        (0..bench.runs)
            .map(|_| decode_floor(&stack, threads))
            .collect(),
    );

    let mut first = Vec::new();
    let mut volume = Vec::new();
    let mut stored = Vec::new();
    let mut peaks = Vec::new();
    let mut eager = Vec::new();
    for _ in 0..bench.runs {
        let pyr = bench.fresh("first")?;
        let t = Instant::now();
        pyr.slice(top, 0).map_err(|e| e.to_string())?;
        first.push(t.elapsed());
        drop(pyr);

        let pyr = bench.fresh("volume")?;
        let base = current_rss();
        let resettable = reset_peak_rss();
        let t = Instant::now();
        pyr.volume(top).map_err(|e| e.to_string())?;
        volume.push(t.elapsed());
        // The by-products are stored behind the request; wait for them too.
        pyr.flush();
        stored.push(t.elapsed());
        if resettable {
            peaks.push(peak_rss().saturating_sub(base));
        }
        drop(pyr);

        let options = StreamOptions {
            rule,
            ..StreamOptions::default()
        };
        let t = Instant::now();
        stream_levels(&stack, &options, |_, _, _| Ok(())).map_err(|e| e.to_string())?;
        eager.push(t.elapsed());
    }
    let first = median(first);
    let volume = median(volume);
    let stored = median(stored);
    let eager = median(eager);
    peaks.sort_unstable();
    let peak = peaks.get(peaks.len() / 2).copied();

    // Latencies on the level nearest to 512 x 512, every slice stored (none pending).
    let probe = levels
        .iter()
        .skip(1)
        .min_by_key(|l| (i64::from(l.width.max(l.height)) - 512).abs())
        .map_or(1, |l| l.level);
    let pyr = bench.fresh("latency")?;
    pyr.volume(probe).map_err(|e| e.to_string())?;
    pyr.flush();
    let (mem50, mem99) = bench.latency(&pyr, probe, 1000)?;
    let stats = pyr.stats();
    let raw: u64 = levels
        .iter()
        .skip(1)
        .take(probe as usize)
        .map(|l| l.bytes())
        .sum();
    let ratio = stats.disk.bytes as f64 / raw as f64;
    drop(pyr);
    let disk_only = Pyramid::builder(&stack_dir)
        .with_edge(args.edge)
        .with_memory_budget(0)
        .with_cache_dir(scratch.join("latency"))
        .build()
        .map_err(|e| e.to_string())?;
    let (disk50, disk99) = bench.latency(&disk_only, probe, 1000)?;
    let _ = std::fs::remove_dir_all(&scratch);

    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let p = &levels[probe as usize];
    println!(
        "stack {}: {} x {} x {} {}, levels 1..={top} (edge {}), smallest {} x {} x {}",
        stack_dir.display(),
        info.width,
        info.height,
        stack.depth(),
        info.sample_type,
        args.edge,
        levels[top as usize].width,
        levels[top as usize].height,
        levels[top as usize].depth
    );
    println!(
        "machine: {cpu}, {cores} cores; page cache warm (stack read before timing); medians of {} runs",
        bench.runs
    );
    println!();
    println!("| measure | figure | ratio |");
    println!("|---|---|---|");
    println!(
        "| first slice of level {top} (empty cache) | {} | eager build / {:.0} |",
        ms(first),
        eager.as_secs_f64() / first.as_secs_f64()
    );
    println!(
        "| volume({top}) (empty cache) | {} | {:.2}x decode floor ({:.2}x the one-thread floor) |",
        ms(volume),
        volume.as_secs_f64() / floor.as_secs_f64(),
        volume.as_secs_f64() / floor1.as_secs_f64()
    );
    println!(
        "| volume({top}) and every by-product stored (flush) | {} | {:.2}x decode floor |",
        ms(stored),
        stored.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "| full eager build (all levels, nothing stored) | {} | {:.2}x decode floor |",
        ms(eager),
        eager.as_secs_f64() / floor.as_secs_f64()
    );
    println!(
        "| decode floor, {threads} threads (1 thread) | {} ({}) | 1 |",
        ms(floor),
        ms(floor1)
    );
    println!(
        "| memory hit, level {probe} ({} x {}) p50 / p99 | {} / {} | |",
        p.width,
        p.height,
        ms(mem50),
        ms(mem99)
    );
    println!(
        "| disk hit, level {probe} p50 / p99 | {} / {} | |",
        ms(disk50),
        ms(disk99)
    );
    println!(
        "| compression, levels 1..={probe} (blob bytes / raw bytes) | {:.3} | {:.2}x smaller |",
        ratio,
        1.0 / ratio
    );
    match peak {
        Some(peak) => println!(
            "| peak RSS growth during volume({top}) | {:.1} MiB | budget {} MiB + 4 source slices = {:.1} MiB |",
            peak as f64 / (1 << 20) as f64,
            args.memory_mb,
            (bench.memory + 4 * source_slice) as f64 / (1 << 20) as f64
        ),
        None => println!("| peak RSS | not measurable here (no /proc/self/clear_refs) | |"),
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
