//! Writes a deterministic CT-like phantom stack (uncompressed TIFF slices) for trying lodcache.
//!
//! ```text
//! cargo run --release --example phantom -- OUT [--size 2048] [--height H] [--depth 256] [--u8] [--seed 1]
//! ```

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use lodcache::{Phantom, SampleType};

fn run() -> Result<(), String> {
    let mut out = None;
    let (mut size, mut height, mut depth, mut seed) = (1024u32, None, 128u32, 1u64);
    let mut ty = SampleType::U16;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name} takes a whole number, not {v:?}"))
        };
        match a.as_str() {
            "--size" => size = num("--size")? as u32,
            "--height" => height = Some(num("--height")? as u32),
            "--depth" => depth = num("--depth")? as u32,
            "--seed" => seed = num("--seed")?,
            "--u8" => ty = SampleType::U8,
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ if out.is_none() => out = Some(PathBuf::from(a)),
            _ => {
                return Err(
                    "usage: phantom OUT [--size N] [--height N] [--depth N] [--u8] [--seed N]"
                        .into(),
                );
            }
        }
    }
    let out =
        out.ok_or("usage: phantom OUT [--size N] [--height N] [--depth N] [--u8] [--seed N]")?;
    let phantom = Phantom::new(size, height.unwrap_or(size), depth)
        .with_sample_type(ty)
        .with_seed(seed);
    let t = Instant::now();
    phantom.write(&out).map_err(|e| e.to_string())?;
    println!(
        "wrote {} slices of {} x {} {} to {} in {:.1} s",
        phantom.depth(),
        phantom.width(),
        phantom.height(),
        phantom.sample_type(),
        out.display(),
        t.elapsed().as_secs_f64()
    );
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
