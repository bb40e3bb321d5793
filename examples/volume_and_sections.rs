//! Reads the smallest level whole (for a 3D preview) and orthogonal sections (XZ, YZ).
//!
//! ```text
//! cargo run --release --example volume_and_sections
//! ```

use lodcache::{Axis, Phantom, Pyramid};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let scan = tmp.path().join("scan");
    Phantom::new(512, 512, 64).write(&scan)?;
    let pyr = Pyramid::builder(&scan)
        .with_edge(64)
        .with_cache_dir(tmp.path().join("cache"))
        .build()?;

    // The whole smallest level, z-major: one streaming pass over the sources builds it and
    // stores every slice of every level below it on the way.
    let top = pyr.levels().len() as u32 - 1;
    let volume = pyr.volume(top)?;
    println!(
        "level {top}: {} x {} x {} = {} samples",
        volume.width(),
        volume.height(),
        volume.depth(),
        volume.pixels().len()
    );

    // Sections of a level: row z of the result is slice z.
    let xz = pyr.section(top, Axis::Y, volume.height() / 2)?; // width x depth
    let yz = pyr.section(top, Axis::X, volume.width() / 2)?; // height x depth
    println!("XZ section: {} x {}", xz.width(), xz.height());
    println!("YZ section: {} x {}", yz.width(), yz.height());

    // The level is now stored: a second volume comes from the tiers.
    println!("level {top} stored: {}", pyr.is_level_stored(top));
    Ok(())
}
