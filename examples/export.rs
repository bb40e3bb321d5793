//! Exports a stack's pyramid in CTHarvester's layout, `OUT/<n>/<i:06>.tif`, through the cache.
//!
//! ```text
//! cargo run --release --example export -- [STACK] [OUT] [--edge N] [--levels 1,2] [--cache DIR]
//!                                         [--no-cache] [--threads N] [--measure]
//! ```
//! No STACK: the built-in phantom. No OUT: a folder under the system temp folder. The export
//! reads through a `Pyramid`, so it fills the cache folder (default `STACK/.lodcache`) and a
//! second export of the same stack is served from it; a damaged blob there is rebuilt.
//! `--measure` also times the decode floor (every source slice decoded once, nothing else) on
//! the same warm page cache and prints the ratio.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use lodcache::{LevelRule, Pyramid, Slice, sample_stack};

struct Args {
    stack: Option<PathBuf>,
    out: Option<PathBuf>,
    edge: u32,
    levels: Option<Vec<u32>>,
    threads: Option<usize>,
    cache: Option<PathBuf>,
    no_cache: bool,
    measure: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        stack: None,
        out: None,
        edge: LevelRule::default().edge,
        levels: None,
        threads: None,
        cache: None,
        no_cache: false,
        measure: false,
    };
    let mut positional = Vec::new();
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--edge" => {
                let v = value("--edge")?;
                args.edge = v
                    .parse()
                    .map_err(|_| format!("--edge takes a whole number of pixels, not {v:?}"))?;
            }
            "--levels" => {
                let v = value("--levels")?;
                let levels = v
                    .split(',')
                    .map(|s| s.trim().parse::<u32>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| format!("--levels takes numbers like 1,2,3, not {v:?}"))?;
                args.levels = Some(levels);
            }
            "--threads" => {
                let v = value("--threads")?;
                args.threads = Some(
                    v.parse()
                        .map_err(|_| format!("--threads takes a number, not {v:?}"))?,
                );
            }
            "--cache" => args.cache = Some(PathBuf::from(value("--cache")?)),
            "--no-cache" => args.no_cache = true,
            "--measure" => args.measure = true,
            "-h" | "--help" => {
                return Err(
                    "usage: export [STACK] [OUT] [--edge N] [--levels 1,2] [--cache DIR] \
                            [--no-cache] [--threads N] [--measure]"
                        .into(),
                );
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => positional.push(PathBuf::from(a)),
        }
    }
    match positional.len() {
        0 => {}
        1 => args.out = positional.pop(),
        2 => {
            args.out = positional.pop();
            args.stack = positional.pop();
        }
        _ => return Err("too many arguments: export [STACK] [OUT] [options]".into()),
    }
    Ok(args)
}

fn run() -> Result<(), String> {
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
    let out = args
        .out
        .unwrap_or_else(|| std::env::temp_dir().join("lodcache-export"));
    let mut builder = Pyramid::builder(&stack_dir)
        .with_edge(args.edge)
        .with_disk_cache(!args.no_cache);
    if let Some(dir) = &args.cache {
        builder = builder.with_cache_dir(dir);
    }
    if let Some(t) = args.threads {
        builder = builder.with_decode_threads(t);
    }
    let pyr = builder.build().map_err(|e| e.to_string())?;
    for w in pyr.warnings() {
        eprintln!("warning: {w}");
    }
    let stack = pyr.stack();
    let info = stack.info();
    println!(
        "stack {}: {} slices of {} x {} {} ({}<n>.{})",
        stack.dir().display(),
        stack.depth(),
        info.width,
        info.height,
        info.sample_type,
        stack.prefix(),
        stack.extension()
    );
    for gap in stack.gaps() {
        println!(
            "  gap in the numbering: {}..={} missing",
            gap.start(),
            gap.end()
        );
    }

    let cat = if args.measure {
        // What `cat STACK/* > /dev/null` costs: every file read once through a 128 KiB buffer.
        use std::io::Read;
        let mut buf = vec![0u8; 128 << 10];
        let t = Instant::now();
        for f in stack.files() {
            let mut file = std::fs::File::open(&f.path)
                .map_err(|e| format!("reading {}: {e}", f.path.display()))?;
            while file
                .read(&mut buf)
                .map_err(|e| format!("reading {}: {e}", f.path.display()))?
                > 0
            {}
        }
        Some(t.elapsed())
    } else {
        None
    };
    let floor = if args.measure {
        // Warm the page cache, then time decoding every slice once.
        let mut reader = stack.reader();
        let mut buf = Slice::zeroed(0, 0, info.sample_type);
        for z in 0..stack.depth() {
            reader.read_into(z, &mut buf).map_err(|e| e.to_string())?;
        }
        let t = Instant::now();
        let mut reader = stack.reader();
        for z in 0..stack.depth() {
            reader.read_into(z, &mut buf).map_err(|e| e.to_string())?;
        }
        Some(t.elapsed())
    } else {
        None
    };

    let t = Instant::now();
    let report = pyr
        .export_ctharvester(&out, args.levels.as_deref())
        .map_err(|e| e.to_string())?;
    let took = t.elapsed();
    println!("level  width  height  depth  type");
    for l in &report.levels {
        println!(
            "{:>5}  {:>5}  {:>6}  {:>5}  {}",
            l.level, l.width, l.height, l.depth, l.sample_type
        );
    }
    let source_mb = report.source_bytes as f64 / 1e6;
    println!(
        "wrote {} files ({:.1} MB) to {} in {:.3} s; read {:.1} MB of source ({:.0} MB/s)",
        report.files,
        report.bytes as f64 / 1e6,
        out.display(),
        took.as_secs_f64(),
        source_mb,
        source_mb / took.as_secs_f64()
    );
    if let Some(stream) = &report.stream {
        println!(
            "  of which: waiting for decoders {:.3} s, kernel {:.3} s, writing {:.3} s",
            stream.waited.as_secs_f64(),
            stream.kernel.as_secs_f64(),
            stream.sink.as_secs_f64()
        );
    }
    let stats = pyr.stats();
    let cache = if args.no_cache {
        "none".to_string()
    } else {
        pyr.disk().dir().display().to_string()
    };
    println!(
        "cache {cache}: {} blobs generated, {} served from disk, {} from memory, {} damaged \
         blobs found and rebuilt",
        stats.generated, stats.disk.hits, stats.memory.hits, stats.disk.corrupt
    );
    if let (Some(cat), Some(floor)) = (cat, floor) {
        println!(
            "read floor (cat, warm cache) {:.3} s; decode floor (one thread) {:.3} s",
            cat.as_secs_f64(),
            floor.as_secs_f64()
        );
        println!(
            "export / decode floor = {:.2}; export / cat = {:.2}",
            took.as_secs_f64() / floor.as_secs_f64(),
            took.as_secs_f64() / cat.as_secs_f64()
        );
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
