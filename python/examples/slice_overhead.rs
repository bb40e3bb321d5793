//! The Rust side of the Python overhead benchmark (`python/bench/overhead.py` runs the same
//! calls from Python): median time of a memory-hit `slice()` and `volume()`.
//!
//! ```text
//! cargo run --release -p lodcache-python --example slice_overhead -- STACK [REPEATS]
//! ```
//! STACK is a folder made by `python/bench/overhead.py` (a 1024 x 1024 x 64 16-bit phantom);
//! the pyramid has the default edge (levels 1: 512 x 512, 2: 256 x 256), no disk cache, and
//! every level is made before timing starts, so each call is served from the memory tier.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use lodcache::Pyramid;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(stack) = args.next().map(PathBuf::from) else {
        eprintln!("usage: slice_overhead STACK [REPEATS]");
        return ExitCode::FAILURE;
    };
    let repeats: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(2000);
    let pyr = match Pyramid::builder(&stack).with_disk_cache(false).build() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("cannot open {}: {e}", stack.display());
            return ExitCode::FAILURE;
        }
    };
    for level in 1..pyr.levels().len() as u32 {
        if let Err(e) = pyr.volume(level) {
            eprintln!("cannot build level {level}: {e}");
            return ExitCode::FAILURE;
        }
    }
    pyr.flush();
    for level in 1..pyr.levels().len() as u32 {
        let depth = pyr.levels()[level as usize].depth;
        let mut times = Vec::with_capacity(repeats);
        for i in 0..repeats {
            let t = Instant::now();
            let s = pyr.slice(level, i as u32 % depth);
            times.push(t.elapsed().as_secs_f64());
            if s.is_err() {
                eprintln!("slice failed");
                return ExitCode::FAILURE;
            }
        }
        println!(
            "rust slice  level {level}: median {:.1} us",
            median(times) * 1e6
        );
        let mut times = Vec::new();
        for _ in 0..(repeats / 50).max(5) {
            let t = Instant::now();
            let v = pyr.volume(level);
            times.push(t.elapsed().as_secs_f64());
            drop(v);
        }
        println!(
            "rust volume level {level}: median {:.2} ms",
            median(times) * 1e3
        );
    }
    ExitCode::SUCCESS
}
