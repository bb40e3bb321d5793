//! Shares one rayon pool between an application and lodcache's kernels.
//!
//! ```text
//! cargo run --release --example rayon_pool
//! ```
//! lodcache never configures rayon's global pool. A viewer that keeps cores free for its user
//! interface gives the pyramid a pool of its own, and may run its own parallel work there too.

use std::sync::Arc;

use lodcache::{Phantom, Pyramid};
use rayon::prelude::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let scan = tmp.path().join("scan");
    Phantom::new(600, 600, 48).write(&scan)?;

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .thread_name(|i| format!("app-pool-{i}"))
        .build()
        .map_err(|e| lodcache::Error::InvalidArgument {
            what: "thread pool",
            detail: e.to_string(),
        })?;
    let pool = Arc::new(pool);
    let pyr = Pyramid::builder(&scan)
        .with_edge(100)
        .with_cache_dir(tmp.path().join("cache"))
        .with_thread_pool(Arc::clone(&pool)) // kernels run here
        .build()?;

    // The application's own parallel work on the same pool: the mean of every level-1 slice.
    // Calls from inside the pool are safe: a request never blocks a worker on another's work.
    let depth = pyr.levels()[1].depth;
    let means: Vec<f64> = pool.install(|| {
        (0..depth)
            .into_par_iter()
            .map(|z| {
                let s = pyr.slice(1, z)?;
                let v = s.samples::<u16>().unwrap_or_default();
                Ok(v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64)
            })
            .collect::<lodcache::Result<_>>()
    })?;
    println!(
        "{} level-1 slices, means from {:.0} to {:.0}",
        means.len(),
        means.iter().copied().fold(f64::INFINITY, f64::min),
        means.iter().copied().fold(0.0, f64::max)
    );
    Ok(())
}
