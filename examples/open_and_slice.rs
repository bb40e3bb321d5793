//! Opens a scan's pyramid and reads slices of any level, saying where each came from.
//!
//! ```text
//! cargo run --release --example open_and_slice
//! ```

use lodcache::{Phantom, Pyramid};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A small synthetic scan: 16-bit, 640 x 480 pixels, 32 slices.
    let tmp = tempfile::tempdir()?;
    let scan = tmp.path().join("scan");
    Phantom::new(640, 480, 32).write(&scan)?;

    // Levels are made while the larger side exceeds the edge (500 by default, as CTHarvester).
    let pyr = Pyramid::builder(&scan)
        .with_edge(100)
        .with_cache_dir(tmp.path().join("cache"))
        .build()?;
    for l in pyr.levels() {
        println!(
            "level {}: {} x {} x {} {}",
            l.level, l.width, l.height, l.depth, l.sample_type
        );
    }

    // The first request of a level-2 slice generates it from four source slices; the second
    // finds it in the memory tier.
    for _ in 0..2 {
        let (slice, from) = pyr.slice_served(2, 3)?;
        println!(
            "slice 3 of level 2: {} x {}, from {}",
            slice.width(),
            slice.height(),
            from.name()
        );
    }
    // Level 0 is the source file itself; samples keep their type (u16 here).
    let source = pyr.slice(0, 10)?;
    let samples = source.samples::<u16>().unwrap_or_default();
    println!(
        "source slice 10: {} samples, max {}",
        samples.len(),
        samples.iter().max().copied().unwrap_or(0)
    );
    Ok(())
}
