//! Exports a pyramid in CTHarvester's layout (`OUT/<level>/<i:06>.tif`) through the cache.
//!
//! ```text
//! cargo run --release --example export
//! ```

use lodcache::{Phantom, Pyramid, ctharvester_path};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let tmp = tempfile::tempdir()?;
    let scan = tmp.path().join("scan");
    Phantom::new(800, 600, 40).write(&scan)?;
    let pyr = Pyramid::builder(&scan)
        .with_edge(100)
        .with_cache_dir(tmp.path().join("cache"))
        .build()?;

    // The first export builds every level in one pass and fills the cache folder.
    let out = tmp.path().join("pyramid");
    let report = pyr.export_ctharvester(&out, None)?;
    println!(
        "wrote {} files ({} bytes), read {} bytes of source",
        report.files, report.bytes, report.source_bytes
    );
    // Only levels 2 and 3, this time served from the cache: no source byte read.
    let again = pyr.export_ctharvester(&out, Some(&[2, 3]))?;
    println!(
        "levels 2 and 3 again: {} files, {} bytes of source read",
        again.files, again.source_bytes
    );
    println!(
        "first file of level 2: {}",
        ctharvester_path(&out, 2, 0).display()
    );
    Ok(())
}
