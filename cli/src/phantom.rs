//! `lodcache phantom`: writes a synthetic scan.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use lodcache::{Phantom, SampleType};

use crate::Outcome;
use crate::term::{clean, quote, say};

/// Options of `lodcache phantom`.
#[derive(Debug, Args)]
pub(crate) struct PhantomArgs {
    /// The folder to write (created; existing slices of the same names are replaced)
    out: PathBuf,
    /// Width in pixels
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=65536))]
    size: u32,
    /// Height in pixels [default: the width]
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=65536))]
    height: Option<u32>,
    /// Number of slices
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=100000))]
    depth: u32,
    /// 8-bit samples instead of 16-bit
    #[arg(long)]
    u8: bool,
    /// Seed of the noise and the shapes
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

pub(crate) fn run(args: PhantomArgs) -> Outcome {
    let ty = if args.u8 {
        SampleType::U8
    } else {
        SampleType::U16
    };
    let phantom = Phantom::new(args.size, args.height.unwrap_or(args.size), args.depth)
        .with_sample_type(ty)
        .with_seed(args.seed);
    let t = Instant::now();
    phantom.write(&args.out).map_err(|e| {
        format!(
            "writing the phantom to {}: {}",
            quote(&args.out),
            clean(&e.to_string())
        )
    })?;
    say!(
        "wrote {} slices of {} x {} {} to {} in {:.1} s",
        phantom.depth(),
        phantom.width(),
        phantom.height(),
        phantom.sample_type(),
        quote(&args.out),
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
