//! `lodcache export`: writes a pyramid in CTHarvester's layout through the cache, or as an
//! OME-Zarr store in one streaming pass.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};
use lodcache::Stack;

use crate::opts::{PyramidOpts, default_edge, no_level_note, parse_levels, parse_threads};
use crate::term::{clean, quote, say, tell};
use crate::{Failure, Outcome};

/// Output layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// OUT/LEVEL/NNNNNN.tif (LEVEL from 1, NNNNNN the slice from 0), uncompressed gray TIFF
    Ctharvester,
    /// OUT.ome.zarr: every level, level 0 included, as OME-Zarr (Zarr v3 + OME-Zarr 0.5, or
    /// Zarr v2 + OME-NGFF 0.4 with --zarr-version 2), written in one streaming pass
    OmeZarr,
}

/// Options of `lodcache export`.
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The scan folder
    scan: PathBuf,
    /// The output folder (level folders already there are replaced once the export succeeded)
    out: PathBuf,
    /// The output layout
    #[arg(long, value_enum, default_value_t = Format::Ctharvester)]
    format: Format,
    /// Levels to write, e.g. 1,2 [default: every level]
    #[arg(long, value_name = "LIST", value_parser = parse_levels)]
    levels: Option<crate::opts::LevelList>,
    /// Threads decoding sources and reducing (1 to 256) [default: the library's]
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    threads: Option<usize>,
    #[command(flatten)]
    zarr: ZarrArgs,
    #[command(flatten)]
    pyramid: PyramidOpts,
}

/// Options of `--format ome-zarr`.
#[derive(Debug, Args)]
struct ZarrArgs {
    /// OME-Zarr: the Zarr version, 2 (OME-NGFF 0.4) or 3 (OME-Zarr 0.5)
    #[arg(long, value_name = "2|3", value_parser = ["2", "3"], default_value = "3")]
    zarr_version: String,
    /// OME-Zarr: chunk shape Z,Y,X (cut to each level's shape)
    #[arg(long, value_name = "Z,Y,X", value_parser = crate::opts::parse_chunks, default_value = "1,512,512")]
    chunks: lodcache::zarr::ChunkShape,
    /// OME-Zarr: Zarr v3 sharding, files of Z,Y,X samples (multiples of the chunk shape)
    /// holding many chunks each [default: no sharding]
    #[arg(long, value_name = "Z,Y,X", value_parser = crate::opts::parse_chunks)]
    shards: Option<lodcache::zarr::ChunkShape>,
    /// OME-Zarr: chunk compression, blosc-lz4, zstd (zstd:N for level N) or none
    #[arg(long, value_name = "NAME", value_parser = crate::opts::parse_compression, default_value = "blosc-lz4")]
    compression: lodcache::zarr::Compression,
}

pub(crate) fn run(args: ExportArgs) -> Outcome {
    crate::term::catch_interrupt()?;
    check_format_options(&args)?;
    let edge = args.pyramid.edge.unwrap_or_else(default_edge);
    let stack = Stack::open(&args.scan)
        .map_err(|e| format!("opening {}: {}", quote(&args.scan), clean(&e.to_string())))?;
    // An OME-Zarr store of level 0 alone is still a conversion.
    if let Some(note) = no_level_note(&stack, edge)
        && args.format == Format::Ctharvester
    {
        return Err(Failure::Error(format!("nothing to export: {note}")));
    }
    drop(stack);
    let pool = match args.threads {
        Some(n) => Some(Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .thread_name(|i| format!("lodcache-export-{i}"))
                .build()
                .map_err(|e| format!("starting {n} threads: {e}"))?,
        )),
        None => None,
    };
    let pyr = args.pyramid.open(&args.scan, edge, args.threads, pool)?;
    if args.format == Format::OmeZarr {
        return ome_zarr(&args, &pyr);
    }
    // Printed by `open`; those raised while exporting (a damaged blob or object replaced, an
    // object store that stopped answering) are printed after the summary.
    let shown = pyr.warnings().len();
    let started = Instant::now();
    let no_cache = args.pyramid.no_cache;
    let report = exporting(&pyr, &args.out, |request| {
        let request = if no_cache {
            // Nothing outlives this process: keeping the slices in memory would only cost
            // time and fresh memory (encoding them, and a new buffer for every slice kept).
            request.without_storing()
        } else {
            request
        };
        request.export_ctharvester(&args.out, args.levels.as_ref().map(|l| l.0.as_slice()))
    })?;
    let took = started.elapsed();
    pyr.flush();
    say!(
        "wrote {} files, {} bytes to {} in {:.2} s; slices generated {}, from cache {}",
        report.files,
        report.bytes,
        quote(&args.out),
        took.as_secs_f64(),
        report.generated,
        report.from_cache
    );
    for w in pyr.warnings().iter().skip(shown) {
        tell!("warning: {}", clean(w));
    }
    if crate::term::interrupted() {
        return Err(Failure::Interrupted);
    }
    Ok(())
}

/// A progress bar on stderr when it is a terminal: units of the export's work (slices read,
/// made or written).
/// Runs one export request under Ctrl-C with a progress bar (on a terminal); a cancelled run
/// leaves `out` as it was and ends with status 130.
fn exporting<T>(
    pyr: &lodcache::Pyramid,
    out: &Path,
    run: impl FnOnce(lodcache::Request<'_>) -> lodcache::Result<T>,
) -> Result<T, Failure> {
    let cancel = crate::term::interrupt();
    let bar = progress_bar();
    let progress = |p: lodcache::Progress| {
        if let Some(bar) = &bar {
            bar.set_length(p.total);
            bar.set_position(p.done);
        }
    };
    let report = run(pyr.request().with_cancel(&cancel).with_progress(&progress));
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match report {
        Err(e) if e.kind() == lodcache::ErrorKind::Cancelled => {
            tell!("export cancelled: {} left as it was", quote(out));
            Err(Failure::Interrupted)
        }
        r => r.map_err(|e| {
            Failure::from(format!(
                "exporting to {}: {}",
                quote(out),
                clean(&e.to_string())
            ))
        }),
    }
}

fn progress_bar() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("[{wide_bar}] {pos}/{len} slices {eta}") {
        bar.set_style(style);
    }
    Some(bar)
}

/// Refuses options that do not apply to the chosen format, naming them.
fn check_format_options(args: &ExportArgs) -> Result<(), String> {
    match args.format {
        Format::OmeZarr if args.levels.is_some() => Err(
            "--levels applies to --format ctharvester; an OME-Zarr export holds every level".into(),
        ),
        Format::Ctharvester
            if args.zarr.shards.is_some()
                || args.zarr.zarr_version != "3"
                || args.zarr.chunks != lodcache::zarr::ChunkShape::default()
                || args.zarr.compression != lodcache::zarr::Compression::default() =>
        {
            Err(
                "--zarr-version, --chunks, --shards and --compression apply to --format \
                 ome-zarr"
                    .into(),
            )
        }
        _ => Ok(()),
    }
}

/// `--format ome-zarr`: the whole pyramid in one streaming pass, with progress and Ctrl-C
/// (the store is staged and moved into place when complete: OUT is left as it was on error).
fn ome_zarr(args: &ExportArgs, pyr: &lodcache::Pyramid) -> Outcome {
    use lodcache::zarr::{OmeZarrOptions, ZarrVersion};
    let options = OmeZarrOptions {
        version: if args.zarr.zarr_version == "2" {
            ZarrVersion::V2
        } else {
            ZarrVersion::V3
        },
        chunk: args.zarr.chunks,
        compression: args.zarr.compression,
        shard: args.zarr.shards,
        ..OmeZarrOptions::default()
    };
    if options.shard.is_some() && options.version == ZarrVersion::V2 {
        return Err(Failure::Error(
            "--shards needs --zarr-version 3 (Zarr v2 has no sharding)".into(),
        ));
    }
    let started = Instant::now();
    let report = exporting(pyr, &args.out, |request| {
        request.export_ome_zarr(&args.out, &options)
    })?;
    let levels: Vec<String> = report
        .levels
        .iter()
        .map(|l| format!("{}x{}x{}", l.width, l.height, l.depth))
        .collect();
    say!(
        "wrote OME-Zarr {} ({} levels: {}) to {}: {} files, {} bytes ({} uncompressed) in \
         {:.2} s; voxel size {}",
        if options.version == ZarrVersion::V2 {
            "0.4 (Zarr v2)"
        } else {
            "0.5 (Zarr v3)"
        },
        levels.len(),
        levels.join(", "),
        quote(&args.out),
        report.files,
        report.bytes,
        report.raw_bytes,
        started.elapsed().as_secs_f64(),
        match &report.voxel_size {
            Some(v) => format!("{} x {} x {} µm", v.x, v.y, v.z),
            None => "unknown".into(),
        }
    );
    if crate::term::interrupted() {
        return Err(Failure::Interrupted);
    }
    Ok(())
}
