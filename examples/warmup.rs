//! Warms a cache folder in the background with progress, then cancels the run early.
//!
//! ```text
//! cargo run --release --example warmup
//! ```

use std::time::Duration;

use lodcache::{Phantom, Pyramid, WarmupOptions, WarmupOutcome};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let scan = tmp.path().join("scan");
    Phantom::new(1024, 1024, 64).write(&scan)?;
    let pyr = Pyramid::builder(&scan)
        .with_cache_dir(tmp.path().join("cache"))
        .build()?;

    // Most requested levels first (from the demand statistics), else smallest first.
    let handle = pyr.warm_up(WarmupOptions::default().with_threads(1));
    while !handle.is_finished() {
        let p = handle.progress();
        println!(
            "level {:?}: {} / {} slices, {:.1} slices/s",
            p.level, p.done, p.total, p.rate
        );
        if p.done >= 8 {
            // Stops within one slice of work; what was stored stays valid.
            handle.cancel();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match handle.wait() {
        WarmupOutcome::Completed(r) => println!("completed: {} slices", r.progress.done),
        WarmupOutcome::Cancelled(r) => println!("cancelled after {} slices", r.progress.done),
        WarmupOutcome::Failed { error, .. } => return Err(error.into()),
        other => println!("ended: {other:?}"),
    }
    // A second run resumes from what the first stored.
    let outcome = pyr.warm_up(WarmupOptions::default()).wait();
    let p = &outcome.report().progress;
    println!(
        "second run: {} made, {} already stored",
        p.done, p.already_stored
    );
    Ok(())
}
