//! Converts a stack into an OME-Zarr store in one streaming pass (`Pyramid::export_ome_zarr`).
//!
//! ```text
//! cargo run --release --example ome_zarr      # a small phantom, in a temporary folder
//! cargo run --release --example ome_zarr -- STACK OUT.ome.zarr [--zarr-version 2|3]
//!     [--chunks Z,Y,X] [--shards Z,Y,X] [--compression blosc-lz4|zstd|zstd:N|none]
//!     [--edge N] [--voxel-size X,Y,Z] [--ctharvester DIR]
//! ```
//! Prints the levels, files, bytes, time and the peak of slices held. `--ctharvester DIR` also
//! writes the levels above 0 in CTHarvester's layout (a reference for `.ci/zarr-clients`).

use std::process::ExitCode;
use std::time::Instant;

use lodcache::zarr::{ChunkShape, Compression, OmeZarrOptions, ZarrVersion};
use lodcache::{ExportOptions, LevelRule, Phantom, Pyramid, Stack};

fn run() -> Result<(), String> {
    let mut positional = Vec::new();
    let mut options = OmeZarrOptions::default();
    let (mut edge, mut voxel, mut cth) = (LevelRule::default().edge, None, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        let e = |e: lodcache::Error| e.to_string();
        match a.as_str() {
            "--zarr-version" => options.version = ZarrVersion::parse(&value()?).map_err(e)?,
            "--chunks" => options.chunk = ChunkShape::parse(&value()?).map_err(e)?,
            "--shards" => options.shard = Some(ChunkShape::parse(&value()?).map_err(e)?),
            "--compression" => options.compression = Compression::parse(&value()?).map_err(e)?,
            "--edge" => edge = value()?.parse().map_err(|_| "--edge takes a number")?,
            "--voxel-size" => {
                let v: Vec<f64> = value()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse()
                            .map_err(|_| "--voxel-size takes X,Y,Z in µm")
                    })
                    .collect::<Result<_, _>>()?;
                voxel = Some(<[f64; 3]>::try_from(v).map_err(|_| "--voxel-size takes X,Y,Z")?);
            }
            "--ctharvester" => cth = Some(value()?),
            _ => positional.push(a),
        }
    }
    // Without a stack, a small phantom in a temporary folder (removed at the end).
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    if positional.is_empty() {
        let scan = tmp.path().join("scan");
        Phantom::new(300, 200, 40)
            .write(&scan)
            .map_err(|e| e.to_string())?;
        positional = vec![
            scan.display().to_string(),
            tmp.path().join("scan.ome.zarr").display().to_string(),
        ];
        edge = 64;
    }
    let [stack, out] = &positional[..] else {
        return Err("usage: ome_zarr [STACK OUT.ome.zarr] [options]".into());
    };
    let mut builder = Pyramid::builder(stack)
        .with_edge(edge)
        .with_disk_cache(false);
    if let Some(v) = voxel {
        builder = builder.with_voxel_size(v);
    }
    let pyr = builder.build().map_err(|e| e.to_string())?;
    let started = Instant::now();
    let r = pyr
        .export_ome_zarr(out, &options)
        .map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    let levels: Vec<String> = r
        .levels
        .iter()
        .map(|l| format!("{}x{}x{}", l.depth, l.height, l.width))
        .collect();
    println!(
        "{out}: levels {}, {} files, {} bytes ({:.3} of raw), {:.3} s, peak held {} MiB, \
         voxel {:?}, window {:?}",
        levels.join(" "),
        r.files,
        r.bytes,
        r.bytes as f64 / r.raw_bytes.max(1) as f64,
        secs,
        r.peak_held_bytes >> 20,
        r.voxel_size.map(|v| [v.x, v.y, v.z]),
        r.window.map(|w| (w.start, w.end)),
    );
    let s = &r.stream;
    println!(
        "  stream: waited for sources {:.2} s, kernel {:.2} s, in the sink (cutting, \
         compressing, queueing for the writer) {:.2} s",
        s.waited.as_secs_f64(),
        s.kernel.as_secs_f64(),
        s.sink.as_secs_f64()
    );
    if let Some(dir) = cth {
        let stack = Stack::open(stack).map_err(|e| e.to_string())?;
        let rule = LevelRule::default().with_edge(edge);
        let opts = ExportOptions {
            rule,
            ..ExportOptions::default()
        };
        if stack.levels(&rule).map_err(|e| e.to_string())?.len() > 1 {
            lodcache::export_ctharvester(&stack, &dir, &opts).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ome_zarr: {e}");
            ExitCode::FAILURE
        }
    }
}
