//! `lodcache info`: a scan, its levels and its cache folder, as text or one JSON object.

use std::path::{Path, PathBuf};

use clap::Args;
use lodcache::{Pyramid, SliceKey};
use serde_json::{Value, json};

use crate::Outcome;
use crate::opts::{PyramidOpts, default_edge, no_level_note};
use crate::term::{clean, quote, say};

/// Options of `lodcache info`.
#[derive(Debug, Args)]
pub(crate) struct InfoArgs {
    /// The scan folder
    scan: PathBuf,
    /// One JSON object instead of text (`levels[].stored` is that level's slices present in
    /// the cache, in any tier, `levels[].depth` its total and `levels[].complete` whether
    /// they are equal; level 0 is the source)
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    pyramid: PyramidOpts,
}

/// Slices of `level` present in the tiers (memory, disk, object store; level 0, the source,
/// always is whole).
pub(crate) fn stored(pyr: &Pyramid, level: u32) -> u32 {
    let depth = pyr.levels()[level as usize].depth;
    // Level 0 is the source; a level whose every slice is stored or being stored is whole.
    if level == 0 || pyr.is_level_stored(level) {
        return depth;
    }
    (0..depth)
        .filter(|&z| {
            let key = SliceKey::new(level, z);
            // With an object store: the slices every machine sees.
            match pyr.object_store() {
                Some(store) => store.contains(key),
                None => pyr.tiers().contains(key),
            }
        })
        .count() as u32
}

/// Files and bytes under `dir`, recursively (symbolic links are not followed).
pub(crate) fn folder_size(dir: &Path) -> (u64, u64) {
    let (mut files, mut bytes) = (0, 0);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            if meta.is_dir() {
                todo.push(entry.path());
            } else if meta.is_file() {
                files += 1;
                bytes += meta.len();
            }
        }
    }
    (files, bytes)
}

pub(crate) fn run(args: InfoArgs) -> Outcome {
    let edge = args.pyramid.edge.unwrap_or_else(default_edge);
    let pyr = args.pyramid.open(&args.scan, edge, None, None)?;
    let stack = pyr.stack();
    let si = stack.info();
    let note = no_level_note(stack, edge);
    let cache = (!args.pyramid.no_cache).then(|| pyr.disk().dir().to_path_buf());
    let cache_size = cache.as_deref().map(folder_size).unwrap_or((0, 0));
    let levels: Vec<(lodcache::LevelInfo, u32)> = pyr
        .levels()
        .iter()
        .map(|l| (*l, stored(&pyr, l.level)))
        .collect();
    let demand = pyr.demand();
    let store = pyr.object_store().map(|r| (r.location(), r.stats()));
    let voxel = pyr.voxel_size();
    if args.json {
        let value = json!({
            "scan": args.scan.to_string_lossy(),
            "files": stack.files().len(),
            "width": si.width,
            "height": si.height,
            "depth": stack.depth(),
            "sample_type": si.sample_type.name(),
            "pattern": format!("{}<n>.{}", stack.prefix(), stack.extension()),
            "gaps": stack.gaps().iter().map(|g| json!([g.start(), g.end()])).collect::<Vec<_>>(),
            "edge": edge,
            "voxel_size": voxel.as_ref().map(|v| json!({
                "x": v.x, "y": v.y, "z": v.z, "unit": "micrometer",
                "source": clean(&v.source.to_string()),
            })),
            "note": note,
            "cache": cache.as_ref().map(|d| json!({
                "dir": d.to_string_lossy(),
                "files": cache_size.0,
                "bytes": cache_size.1,
            })),
            "store": store.as_ref().map(|(location, s)| json!({
                "url": args.pyramid.cache_url(),
                "location": location,
                "objects": s.objects,
                "bytes": s.bytes,
            })),
            "levels": levels.iter().map(|(l, s)| json!({
                "level": l.level, "width": l.width, "height": l.height, "depth": l.depth,
                "sample_type": l.sample_type.name(), "stored": s, "complete": *s == l.depth,
            })).collect::<Vec<Value>>(),
            "demand": demand.levels.iter().map(|d| json!({
                "level": d.level, "score": d.score, "share": d.share,
            })).collect::<Vec<Value>>(),
        });
        say!("{value}");
        return Ok(());
    }
    say!("scan       {}", quote(&args.scan));
    say!(
        "files      {} ({}<n>.{})",
        stack.files().len(),
        clean(stack.prefix()),
        clean(stack.extension())
    );
    say!(
        "size       {} x {} x {} {}",
        si.width,
        si.height,
        stack.depth(),
        si.sample_type
    );
    if stack.gaps().is_empty() {
        say!("gaps       none");
    }
    for g in stack.gaps() {
        say!("gap        {}..={} missing", g.start(), g.end());
    }
    match &cache {
        Some(dir) => say!(
            "cache      {}: {} files, {:.1} MiB",
            quote(dir),
            cache_size.0,
            cache_size.1 as f64 / f64::from(1 << 20)
        ),
        None => say!("cache      none (--no-cache)"),
    }
    if let Some((location, s)) = &store {
        say!(
            "store      {}: {} blobs, {:.1} MiB",
            quote(Path::new(location)),
            s.objects,
            s.bytes as f64 / f64::from(1 << 20)
        );
    }
    say!("edge       {edge}");
    match &voxel {
        Some(v) => say!(
            "voxel      {} x {} x {} µm (x, y, z; {})",
            v.x,
            v.y,
            v.z,
            clean(&v.source.to_string())
        ),
        None => say!(
            "voxel      unknown (no resolution tags or scanner log; --voxel-size X,Y,Z sets it)"
        ),
    }
    if let Some(note) = &note {
        say!("note       {note}");
    }
    say!("level      w x h x d          stored / total");
    for (l, s) in &levels {
        let what = if l.level == 0 { "  (source)" } else { "" };
        say!(
            "{:>5}  {:>17}  {:>8} / {}{what}",
            l.level,
            format!("{} x {} x {}", l.width, l.height, l.depth),
            s,
            l.depth
        );
    }
    if demand.levels.is_empty() {
        say!("demand     no requests recorded yet");
    } else {
        let ranked: Vec<String> = demand
            .levels
            .iter()
            .map(|d| format!("level {} {:.1} ({:.0}%)", d.level, d.score, d.share * 100.0))
            .collect();
        say!("demand     {}", ranked.join(", "));
    }
    Ok(())
}
