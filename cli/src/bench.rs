//! `lodcache bench`: lazy against eager on one scan (`table`), and the HTTP server under load
//! (`load`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use http_body_util::{BodyExt, Empty};
use lodcache::{LevelRule, Pyramid, Slice, Stack, StreamOptions, stream_levels};

use crate::opts::{PyramidOpts, default_edge, parse_duration, parse_size};
use crate::term::{clean, quote, say};
use crate::{Failure, Outcome};

/// The benchmarks.
#[derive(Debug, Subcommand)]
pub(crate) enum BenchCommand {
    /// Lazy against eager on one scan: first slice, volume of the smallest level, the eager
    /// build, the decode floor, memory and disk hits, compression, peak memory, and `export
    /// --no-cache` against `cat` of the same files (both whole processes, with their ratio)
    Table(TableArgs),
    /// The HTTP server under load: clients asking for tiles and slices of every level (memory
    /// hits mixed with generated ones), then one client repeating a tile (the response cache)
    Load(LoadArgs),
    /// Blob reads from an object store with a cold local folder: every stored slice of every
    /// level read once from the store (GET and the blob's checks), p50, p99, max and bytes/s
    Store(StoreArgs),
}

/// Options of `lodcache bench store`.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// The scan folder (warmed into the store first: `lodcache warm SCAN --cache URL`)
    scan: PathBuf,
    /// Times each slice is read
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    rounds: u32,
    #[command(flatten)]
    pyramid: PyramidOpts,
}

/// Options of `lodcache bench table`.
#[derive(Debug, Args)]
pub(crate) struct TableArgs {
    /// The scan folder [default: the built-in sample]
    scan: Option<PathBuf>,
    /// Levels are made while the larger side exceeds N pixels
    #[arg(long, value_name = "N", default_value_t = default_edge(), value_parser = clap::value_parser!(u32).range(1..))]
    edge: u32,
    /// Memory budget of compressed slices
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "512M")]
    memory: u64,
    /// Runs per figure (the median is shown)
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    runs: u32,
    /// Also time `cat` and `export --no-cache` with the scan's files evicted from the page
    /// cache before each run (posix_fadvise DONTNEED on each file: nothing else is evicted)
    #[arg(long)]
    cold: bool,
}

/// The request mixes of `lodcache bench load`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mix {
    /// 40% whole slices, 40% random tiles, 20% four hot tiles
    Mixed,
    /// Whole slices of every level, uniformly
    Slices,
}

/// Options of `lodcache bench load`.
#[derive(Debug, Args)]
pub(crate) struct LoadArgs {
    /// The scan folder, served in-process on a free port with a fresh cache folder unless
    /// --cache says otherwise [default: the built-in sample]
    scan: Option<PathBuf>,
    /// Load a running server instead (e.g. http://127.0.0.1:8080/)
    #[arg(long, conflicts_with = "scan")]
    url: Option<String>,
    /// Concurrent clients
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..=256))]
    clients: u32,
    /// How long the mixed load runs
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "20s")]
    time: Duration,
    /// Requests of the one-client repeated-tile run
    #[arg(long, default_value_t = 500)]
    repeats: u32,
    /// What the clients ask for: `mixed` (40% whole slices, 40% random tiles, 20% four hot
    /// tiles) or `slices` (whole slices of every level, uniformly: the old viewer's load)
    #[arg(long, value_enum, default_value_t = Mix::Mixed)]
    mix: Mix,
    /// Bytes of encoded responses the in-process server keeps (0: none, every image encoded)
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "128M")]
    response_cache: u64,
    #[command(flatten)]
    pyramid: PyramidOpts,
}

pub(crate) fn run(command: BenchCommand) -> Outcome {
    match command {
        BenchCommand::Table(a) => table(a),
        BenchCommand::Load(a) => load(a),
        BenchCommand::Store(a) => store(a),
    }
}

/// `lodcache bench store`: each read goes to the store itself (not the local tiers), so the
/// local folder plays no part; the figures are one GET plus the blob's checks.
fn store(args: StoreArgs) -> Outcome {
    if args.pyramid.cache_url().is_none() {
        return Err(Failure::Error(
            "bench store needs --cache URL (s3://, gs:// or az://BUCKET/PREFIX)".into(),
        ));
    }
    let edge = args.pyramid.edge.unwrap_or_else(default_edge);
    let pyr = args.pyramid.open(&args.scan, edge, None, None)?;
    let Some(remote) = pyr.object_store() else {
        return Err(Failure::Error("no object store opened".into()));
    };
    let keys: Vec<lodcache::SliceKey> = pyr
        .levels()
        .iter()
        .skip(1)
        .flat_map(|l| (0..l.depth).map(move |z| lodcache::SliceKey::new(l.level, z)))
        .filter(|k| remote.contains(*k))
        .collect();
    if keys.is_empty() {
        return Err(Failure::Error(format!(
            "nothing stored for {} in {}: warm it first",
            quote(&args.scan),
            quote(Path::new(remote.url()))
        )));
    }
    let mut times = Vec::with_capacity(keys.len() * args.rounds as usize);
    let mut bytes = 0u64;
    let started = Instant::now();
    for _ in 0..args.rounds {
        for &key in &keys {
            let t = Instant::now();
            let Some(blob) = remote.get(key) else {
                return Err(Failure::Error(format!(
                    "{key} listed in the store but not read from it"
                )));
            };
            times.push(t.elapsed());
            bytes += blob.len() as u64;
        }
    }
    let total = started.elapsed();
    times.sort();
    say!(
        "{} blob reads from {} ({:.1} MiB, mean {:.1} KiB): p50 {}, p99 {}, max {}; {:.1} MiB/s \
         on one thread",
        times.len(),
        quote(Path::new(&remote.location())),
        bytes as f64 / f64::from(1 << 20),
        bytes as f64 / times.len() as f64 / 1024.0,
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.99)),
        ms(times[times.len() - 1]),
        bytes as f64 / f64::from(1 << 20) / total.as_secs_f64()
    );
    Ok(())
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

/// A figure of `/proc/self/status` in bytes (Linux; `None` elsewhere).
fn proc_status(pid: &str, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// Resets the peak so that the next reading covers only what follows (Linux >= 4.0).
fn reset_peak_rss() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn cpu() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `cat` of a scan's files against `lodcache export --no-cache` of the scan: medians.
struct AgainstCat {
    files: usize,
    cat: Duration,
    export: Duration,
    /// Of the median export run.
    peak_kib: i64,
    minor_faults: i64,
}

/// Wall time, peak RSS (KiB) and minor faults of a child process run to its end with its
/// output thrown away; an error when it fails.
fn run_process(cmd: &mut Command) -> Result<(Duration, i64, i64), String> {
    let what = format!("{:?}", cmd.get_program());
    let t = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("running {what}: {e}"))?;
    let (ok, peak, faults) = reap(child)?;
    let elapsed = t.elapsed();
    if !ok {
        return Err(format!("{what} failed"));
    }
    Ok((elapsed, peak, faults))
}

/// Waits for `child`: whether it succeeded, its peak RSS (KiB) and minor faults (Linux and
/// the other Unixes: from `wait4`; elsewhere 0).
#[cfg(unix)]
fn reap(child: Child) -> Result<(bool, i64, i64), String> {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: a zeroed rusage is a valid value; both pointers outlive the call; the child is
    // ours and not reaped yet (the Child handle is dropped without waiting).
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let got = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if got != pid {
        return Err(format!(
            "waiting for a child: {}",
            std::io::Error::last_os_error()
        ));
    }
    let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
    Ok((ok, usage.ru_maxrss, usage.ru_minflt))
}

#[cfg(not(unix))]
fn reap(mut child: Child) -> Result<(bool, i64, i64), String> {
    let status = child
        .wait()
        .map_err(|e| format!("waiting for a child: {e}"))?;
    Ok((status.success(), 0, 0))
}

/// Drops the scan's files from the page cache (their pages only).
#[cfg(target_os = "linux")]
fn evict(files: &[&Path]) {
    use std::os::fd::AsRawFd;
    for path in files {
        if let Ok(f) = std::fs::File::open(path) {
            // SAFETY: a valid open descriptor; advice only, no memory is touched.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn evict(_files: &[&Path]) {}

/// Times `cat FILES > /dev/null` and `lodcache export SCAN OUT --no-cache` (this executable)
/// in interleaved runs, page cache warm (read once before) or cold (the files evicted before
/// each run).
fn export_against_cat(
    stack: &Stack,
    edge: u32,
    runs: usize,
    scratch: &Path,
    cold: bool,
) -> Result<AgainstCat, String> {
    let mut files: Vec<&Path> = stack.files().iter().map(|f| f.path.as_path()).collect();
    files.dedup();
    let exe = std::env::current_exe().map_err(|e| format!("finding this program: {e}"))?;
    let out = scratch.join("export");
    let cat = || run_process(Command::new("cat").args(&files)).map(|(t, _, _)| t);
    let export = || {
        let _ = std::fs::remove_dir_all(&out);
        let result = run_process(
            Command::new(&exe)
                .arg("export")
                .arg(stack.dir())
                .arg(&out)
                .args(["--no-cache", "--edge", &edge.to_string()]),
        );
        let _ = std::fs::remove_dir_all(&out);
        result
    };
    if !cold {
        cat()?;
    }
    let (mut cats, mut exports) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        if cold {
            evict(&files);
        }
        cats.push(cat()?);
        if cold {
            evict(&files);
        }
        exports.push(export()?);
    }
    exports.sort_by_key(|e| e.0);
    let (export, peak_kib, minor_faults) = exports[exports.len() / 2];
    Ok(AgainstCat {
        files: files.len(),
        cat: median(cats),
        export,
        peak_kib,
        minor_faults,
    })
}

struct Bench<'a> {
    scan: &'a Path,
    edge: u32,
    memory: u64,
    scratch: PathBuf,
}

impl Bench<'_> {
    fn fresh(&self, name: &str) -> Result<Pyramid, String> {
        let cache = self.scratch.join(name);
        let _ = std::fs::remove_dir_all(&cache);
        Pyramid::builder(self.scan)
            .with_edge(self.edge)
            .with_memory_budget(self.memory)
            .with_cache_dir(cache)
            .build()
            .map_err(|e| clean(&e.to_string()))
    }
}

fn latency(pyr: &Pyramid, level: u32, requests: usize) -> Result<(Duration, Duration), String> {
    let depth = pyr.levels()[level as usize].depth;
    let mut x = 0x9e37_79b9_u32;
    let mut times = Vec::with_capacity(requests);
    for _ in 0..requests {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let t = Instant::now();
        pyr.slice(level, x % depth)
            .map_err(|e| clean(&e.to_string()))?;
        times.push(t.elapsed());
    }
    times.sort();
    Ok((percentile(&times, 0.5), percentile(&times, 0.99)))
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

fn table(args: TableArgs) -> Outcome {
    let scan = crate::scan_or_sample(args.scan)?;
    let stack = Stack::open(&scan)
        .map_err(|e| format!("opening {}: {}", quote(&scan), clean(&e.to_string())))?;
    let rule = LevelRule::default().with_edge(args.edge);
    let levels = stack.levels(&rule).map_err(|e| clean(&e.to_string()))?;
    let top = levels.len() as u32 - 1;
    if top == 0 {
        let note = crate::opts::no_level_note(&stack, args.edge).unwrap_or_default();
        return Err(Failure::Error(format!("nothing to measure: {note}")));
    }
    let info = stack.info();
    let source_slice = levels[0].slice_bytes() as u64;
    let threads = StreamOptions::default().decode_threads;
    let scratch = std::env::temp_dir().join(format!("lodcache-bench-{}", std::process::id()));
    let bench = Bench {
        scan: &scan,
        edge: args.edge,
        memory: args.memory,
        scratch: scratch.clone(),
    };
    let runs = args.runs as usize;

    // The read floor as a user times it: whole processes, `cat` of the scan's files against
    // this tool's export, runs interleaved so that both see the same machine.
    let floor_vs_cat = export_against_cat(&stack, args.edge, runs, &scratch, false)?;
    let cold_vs_cat = if args.cold {
        Some(export_against_cat(&stack, args.edge, runs, &scratch, true)?)
    } else {
        None
    };

    // Warm the page cache, then the floors.
    decode_floor(&stack, threads);
    let floor1 = median((0..runs).map(|_| decode_floor(&stack, 1)).collect());
    let floor = median((0..runs).map(|_| decode_floor(&stack, threads)).collect());

    let (mut first, mut volume, mut stored, mut peaks, mut eager) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let pyr = bench.fresh("first")?;
        let t = Instant::now();
        pyr.slice(top, 0).map_err(|e| clean(&e.to_string()))?;
        first.push(t.elapsed());
        drop(pyr);

        let pyr = bench.fresh("volume")?;
        let base = proc_status("self", "VmRSS:").unwrap_or(0);
        let resettable = reset_peak_rss();
        let t = Instant::now();
        pyr.volume(top).map_err(|e| clean(&e.to_string()))?;
        volume.push(t.elapsed());
        // The by-products are stored behind the request; wait for them too.
        pyr.flush();
        stored.push(t.elapsed());
        if resettable {
            peaks.push(
                proc_status("self", "VmHWM:")
                    .unwrap_or(0)
                    .saturating_sub(base),
            );
        }
        drop(pyr);

        let options = StreamOptions {
            rule,
            ..StreamOptions::default()
        };
        let t = Instant::now();
        stream_levels(&stack, &options, |_, _, _| Ok(())).map_err(|e| clean(&e.to_string()))?;
        eager.push(t.elapsed());
    }
    let (first, volume, stored, eager) =
        (median(first), median(volume), median(stored), median(eager));
    peaks.sort_unstable();
    let peak = peaks.get(peaks.len() / 2).copied();

    // Latencies on the level nearest to 512 x 512, every slice stored (none pending).
    let probe = levels
        .iter()
        .skip(1)
        .min_by_key(|l| (i64::from(l.width.max(l.height)) - 512).abs())
        .map_or(1, |l| l.level);
    let pyr = bench.fresh("latency")?;
    pyr.volume(probe).map_err(|e| clean(&e.to_string()))?;
    pyr.flush();
    let (mem50, mem99) = latency(&pyr, probe, 1000)?;
    let disk_bytes = pyr.stats().disk.bytes;
    let raw: u64 = levels
        .iter()
        .skip(1)
        .take(probe as usize)
        .map(|l| l.bytes())
        .sum();
    let ratio = disk_bytes as f64 / raw as f64;
    drop(pyr);
    let disk_only = Pyramid::builder(&scan)
        .with_edge(args.edge)
        .with_memory_budget(0)
        .with_cache_dir(scratch.join("latency"))
        .build()
        .map_err(|e| clean(&e.to_string()))?;
    let (disk50, disk99) = latency(&disk_only, probe, 1000)?;
    drop(disk_only);
    let _ = std::fs::remove_dir_all(&scratch);

    let p = &levels[probe as usize];
    let s = &levels[top as usize];
    say!(
        "scan {}: {} x {} x {} {}, levels 1..={top} (edge {}), smallest {} x {} x {}",
        quote(&scan),
        info.width,
        info.height,
        stack.depth(),
        info.sample_type,
        args.edge,
        s.width,
        s.height,
        s.depth
    );
    say!(
        "machine: {}, {} cores; page cache warm (scan read before timing); medians of {runs} runs",
        cpu(),
        cores()
    );
    say!("");
    say!("| measure | figure | ratio |");
    say!("|---|---|---|");
    say!(
        "| first slice of level {top} (empty cache) | {} | eager build / {:.0} |",
        ms(first),
        eager.as_secs_f64() / first.as_secs_f64()
    );
    say!(
        "| volume({top}) (empty cache) | {} | {:.2}x decode floor ({:.2}x the one-thread floor) |",
        ms(volume),
        volume.as_secs_f64() / floor.as_secs_f64(),
        volume.as_secs_f64() / floor1.as_secs_f64()
    );
    say!(
        "| volume({top}) and every by-product stored (flush) | {} | {:.2}x decode floor |",
        ms(stored),
        stored.as_secs_f64() / floor.as_secs_f64()
    );
    say!(
        "| full eager build (all levels, nothing stored) | {} | {:.2}x decode floor |",
        ms(eager),
        eager.as_secs_f64() / floor.as_secs_f64()
    );
    say!(
        "| decode floor, {threads} threads (1 thread) | {} ({}) | 1 |",
        ms(floor),
        ms(floor1)
    );
    say!(
        "| memory hit, level {probe} ({} x {}) p50 / p99 | {} / {} | |",
        p.width,
        p.height,
        ms(mem50),
        ms(mem99)
    );
    say!(
        "| disk hit, level {probe} p50 / p99 | {} / {} | |",
        ms(disk50),
        ms(disk99)
    );
    say!(
        "| compression, levels 1..={probe} (blob bytes / raw bytes) | {ratio:.3} | {:.2}x smaller |",
        1.0 / ratio
    );
    for (cache, figures) in [
        ("warm", Some(&floor_vs_cat)),
        ("cold", cold_vs_cat.as_ref()),
    ] {
        let Some(f) = figures else { continue };
        say!(
            "| `cat` of the {} source files, a process, page cache {cache} | {} | 1 |",
            f.files,
            ms(f.cat)
        );
        say!(
            "| `lodcache export --no-cache`, a process, page cache {cache} | {} | {:.2}x `cat` (peak RSS {:.1} MiB, {} minor faults) |",
            ms(f.export),
            f.export.as_secs_f64() / f.cat.as_secs_f64(),
            f.peak_kib as f64 / 1024.0,
            f.minor_faults
        );
    }
    match peak {
        Some(peak) => say!(
            "| peak RSS growth during volume({top}) | {:.1} MiB | budget {:.0} MiB + 4 source slices = {:.1} MiB |",
            peak as f64 / f64::from(1 << 20),
            args.memory as f64 / f64::from(1 << 20),
            (args.memory + 4 * source_slice) as f64 / f64::from(1 << 20)
        ),
        None => say!("| peak RSS | not measurable here (no /proc/self/clear_refs) | |"),
    }
    Ok(())
}

/// A level as the load sees it: number, width, height, depth.
type Level = (u32, u32, u32, u32);

/// Latencies by source label.
type Timings = BTreeMap<String, Vec<Duration>>;

/// One client connection (hyper's HTTP/1.1 client over a kept-alive socket).
struct Client {
    host: String,
    sender: hyper::client::conn::http1::SendRequest<Empty<bytes::Bytes>>,
}

impl Client {
    async fn connect(host: &str) -> Result<Client, String> {
        let stream = tokio::net::TcpStream::connect(host)
            .await
            .map_err(|e| format!("connecting to {host}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("connecting to {host}: {e}"))?;
        tokio::spawn(conn);
        Ok(Client {
            host: host.to_string(),
            sender,
        })
    }

    /// GET `path`: status, source label and body.
    async fn get(&mut self, path: &str) -> Result<(u16, String, bytes::Bytes), String> {
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, &self.host)
            .body(Empty::new())
            .map_err(|e| e.to_string())?;
        self.sender.ready().await.map_err(|e| e.to_string())?;
        let response = self
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_string()
        };
        let label = if header("x-lodcache-cache") == "hit" {
            "response cache".to_string()
        } else {
            header("x-lodcache-source")
        };
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, label, body))
    }
}

/// One xorshift step.
fn next(x: &mut u32) -> u32 {
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    *x
}

/// The path a client asks for next: 40% whole slices of a random level, 40% random tiles,
/// 20% one of four hot tiles (memory hits: the response cache).
fn pick(levels: &[Level], x: &mut u32, mix: Mix) -> String {
    let r = if mix == Mix::Slices { 0 } else { next(x) % 10 };
    let (level, w, h, d) = levels[(next(x) as usize) % levels.len()];
    let z = next(x) % d;
    if r < 4 {
        format!("/api/slice/{level}/{z}.png")
    } else if r < 8 {
        let (tx, ty) = (next(x) % w.div_ceil(512), next(x) % h.div_ceil(512));
        format!("/api/tile/{level}/{z}/{ty}/{tx}.png")
    } else {
        let (top, ..) = levels[levels.len() - 1];
        format!("/api/tile/{top}/{}/0/0.png", next(x) % 4)
    }
}

fn load(args: LoadArgs) -> Outcome {
    let mut scratch = None;
    let mut running = None;
    let host = match &args.url {
        Some(url) => url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string(),
        None => {
            let scan = crate::scan_or_sample(args.scan.clone())?;
            let mut opts = args.pyramid.clone();
            if opts.cache.is_none() && !opts.no_cache {
                let dir =
                    std::env::temp_dir().join(format!("lodcache-load-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&dir);
                opts.cache = Some(crate::opts::CacheArg::Dir(dir.clone()));
                scratch = Some(dir);
            }
            let edge = opts.edge.unwrap_or_else(default_edge);
            let pyr = opts.open(&scan, edge, None, None)?;
            let r = crate::server::start(
                pyr,
                "127.0.0.1",
                0,
                &[],
                crate::server::Limits {
                    response_cache: args.response_cache,
                    slice_cache: 256 << 20,
                    blocking: 32,
                    heavy: 2,
                    chunk_queue: None,
                    zarr: crate::server::ZarrOpts::default(),
                },
                crate::server::ConnLimits::default(),
            )?;
            let host = r.addr.to_string();
            running = Some(r);
            host
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| format!("starting the load runtime: {e}"))?;
    let result = runtime.block_on(drive(&host, &args));
    if let Some(r) = running {
        r.stop();
    }
    if let Some(dir) = scratch {
        let _ = std::fs::remove_dir_all(dir);
    }
    result.map_err(Failure::Error)
}

async fn drive(host: &str, args: &LoadArgs) -> Result<(), String> {
    let mut probe = Client::connect(host).await?;
    let (status, _, body) = probe.get("/api/levels").await?;
    if status != 200 {
        return Err(format!("GET /api/levels: status {status}"));
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).map_err(|e| format!("GET /api/levels: {e}"))?;
    let levels: Vec<Level> = v["levels"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| {
                    let n = |k: &str| l[k].as_u64().unwrap_or(1) as u32;
                    (n("level"), n("width"), n("height"), n("depth").max(1))
                })
                .collect()
        })
        .unwrap_or_default();
    if levels.is_empty() {
        return Err("the server listed no levels".into());
    }
    let until = Instant::now() + args.time;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..args.clients {
        let (levels, host, mix) = (levels.clone(), host.to_string(), args.mix);
        tasks.push(tokio::spawn(async move {
            let mut timings = Timings::new();
            let mut errors = 0u64;
            let mut x = 0x9e37_79b9u32 ^ (c + 1).wrapping_mul(0x85eb_ca6b);
            let mut client = None;
            while Instant::now() < until {
                let path = pick(&levels, &mut x, mix);
                if client.is_none() {
                    client = Client::connect(&host).await.ok();
                }
                let Some(cl) = client.as_mut() else {
                    errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let t = Instant::now();
                match cl.get(&path).await {
                    Ok((200, label, _)) => {
                        // By source and level: a memory hit of a level-0 slice (kept decoded by
                        // the server) still costs encoding four times the pixels of level 1.
                        let level = path.split('/').nth(3).unwrap_or("?");
                        let kind = if path.contains("/tile/") {
                            "tile"
                        } else {
                            "slice"
                        };
                        timings
                            .entry(format!("{label}, level {level} {kind}s"))
                            .or_default()
                            .push(t.elapsed());
                    }
                    Ok(_) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        client = None;
                    }
                }
            }
            (timings, errors)
        }));
    }
    let mut all = Timings::new();
    let mut errors = 0;
    for t in tasks {
        let (timings, e) = t.await.map_err(|e| e.to_string())?;
        errors += e;
        for (k, v) in timings {
            all.entry(k).or_default().extend(v);
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let total: usize = all.values().map(Vec::len).sum();
    say!(
        "load on {host} ({:?} mix): {} clients, {elapsed:.0} s: {total} requests, {:.0} \
         requests/s, {errors} errors; machine: {}, {} cores",
        args.mix,
        args.clients,
        total as f64 / elapsed,
        cpu(),
        cores()
    );
    say!("| source | requests | p50 | p99 |");
    say!("|---|---|---|---|");
    for (source, mut times) in all {
        times.sort();
        say!(
            "| {source} | {} | {:.2} ms | {:.2} ms |",
            times.len(),
            percentile(&times, 0.5).as_secs_f64() * 1e3,
            percentile(&times, 0.99).as_secs_f64() * 1e3
        );
    }
    // One client, one tile again and again: the response cache.
    let (top, ..) = levels[levels.len() - 1];
    let path = format!("/api/tile/{top}/0/0/0.png");
    // A new connection: the first may have been closed as idle meanwhile.
    let mut probe = Client::connect(host).await?;
    probe.get(&path).await?;
    let mut times = Vec::new();
    let mut sources = BTreeMap::<String, u32>::new();
    for _ in 0..args.repeats.max(1) {
        let t = Instant::now();
        let (status, label, _) = probe.get(&path).await?;
        times.push(t.elapsed());
        if status != 200 {
            return Err(format!("GET {path}: status {status}"));
        }
        *sources.entry(label).or_default() += 1;
    }
    times.sort();
    say!(
        "one client repeating {path}: p50 {:.3} ms, p99 {:.3} ms over {} requests ({:?})",
        percentile(&times, 0.5).as_secs_f64() * 1e3,
        percentile(&times, 0.99).as_secs_f64() * 1e3,
        times.len(),
        sources
    );
    if let Some(rss) = proc_status("self", "VmHWM:") {
        say!(
            "peak RSS of this process: {:.1} MiB",
            rss as f64 / f64::from(1 << 20)
        );
    }
    if errors > 0 {
        return Err(format!("{errors} requests failed"));
    }
    Ok(())
}
