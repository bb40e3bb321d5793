//! OME-Zarr export: every level of phantoms of odd sizes and depths, in both Zarr versions,
//! with every compression, chunk shapes that do not divide the levels and sharding, read back
//! by an independent reader (tests/zarr_support) and compared with the naive pyramid; the
//! metadata of the written store; a failed export leaves OUT as it was; an OUT that is not an
//! earlier export is refused.

mod common;
mod zarr_support;

use std::path::Path;

use common::{Volume, phantom_volume, tree};
use lodcache::zarr::{
    ChunkShape, Compression, OmeZarrOptions, ZarrLayout, ZarrVersion, export_ome_zarr,
};
use lodcache::{LevelRule, Phantom, SampleType, Stack};

fn options(
    version: ZarrVersion,
    chunk: ChunkShape,
    compression: Compression,
    edge: u32,
) -> OmeZarrOptions {
    OmeZarrOptions {
        version,
        chunk,
        compression,
        rule: LevelRule::default().with_edge(edge),
        ..OmeZarrOptions::default()
    }
}

fn check_store(store: &Path, naive: &[Volume]) {
    for (n, want) in naive.iter().enumerate() {
        let (w, h, slices) = zarr_support::read_level(store, n as u32);
        assert_eq!((w, h), (want.width, want.height), "level {n} size");
        assert!(
            slices == want.slices,
            "level {n} differs from the naive pyramid"
        );
    }
}

#[test]
fn every_level_of_odd_phantoms_in_both_versions_and_every_compression() {
    let tmp = tempfile::tempdir().unwrap();
    let cases = [
        (Phantom::new(75, 53, 9), ChunkShape::new(1, 16, 16)),
        (Phantom::new(75, 53, 9), ChunkShape::new(4, 16, 32)),
        (
            Phantom::new(66, 41, 13).with_sample_type(SampleType::U8),
            ChunkShape::new(3, 7, 64),
        ),
        (Phantom::new(40, 40, 1), ChunkShape::new(2, 512, 512)),
    ];
    for (i, (p, chunk)) in cases.iter().enumerate() {
        let scan = tmp.path().join(format!("scan{i}"));
        p.write(&scan).unwrap();
        let naive = phantom_volume(p).pyramid(16);
        let stack = Stack::open(&scan).unwrap();
        for version in [ZarrVersion::V2, ZarrVersion::V3] {
            for compression in [
                Compression::BloscLz4,
                Compression::zstd(),
                Compression::None,
            ] {
                let out = tmp.path().join(format!(
                    "out{i}-{version:?}-{}.ome.zarr",
                    compression.name()
                ));
                let report =
                    export_ome_zarr(&stack, &out, &options(version, *chunk, compression, 16))
                        .unwrap();
                assert_eq!(report.levels.len(), naive.len());
                check_store(&out, &naive);
                // Level 0 is the source: every source slice was read once.
                assert_eq!(report.stream.source_slices, u64::from(p.depth()));
            }
        }
    }
}

#[test]
fn sharded_v3_store_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Phantom::new(90, 70, 11);
    let scan = tmp.path().join("scan");
    p.write(&scan).unwrap();
    let naive = phantom_volume(&p).pyramid(16);
    let stack = Stack::open(&scan).unwrap();
    for compression in [Compression::BloscLz4, Compression::None] {
        let out = tmp
            .path()
            .join(format!("sharded-{}.ome.zarr", compression.name()));
        let mut o = options(ZarrVersion::V3, ChunkShape::new(2, 16, 16), compression, 16);
        o.shard = Some(ChunkShape::new(4, 32, 48));
        export_ome_zarr(&stack, &out, &o).unwrap();
        check_store(&out, &naive);
        let a = zarr_support::json(&out.join("0/zarr.json"));
        assert_eq!(
            a["chunk_grid"]["configuration"]["chunk_shape"],
            serde_json::json!([4, 32, 48])
        );
    }
    // Shards need Zarr v3, and whole chunks.
    let mut o = options(
        ZarrVersion::V2,
        ChunkShape::new(2, 16, 16),
        Compression::None,
        16,
    );
    o.shard = Some(ChunkShape::new(4, 32, 32));
    let e = export_ome_zarr(&stack, &tmp.path().join("x"), &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("v3"), "{e}");
    let mut o = options(
        ZarrVersion::V3,
        ChunkShape::new(2, 16, 16),
        Compression::None,
        16,
    );
    o.shard = Some(ChunkShape::new(3, 32, 32));
    let e = export_ome_zarr(&stack, &tmp.path().join("x"), &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("multiple"), "{e}");
    assert!(!tmp.path().join("x").exists());
}

#[test]
fn metadata_of_the_written_store() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Phantom::new(75, 53, 9);
    let scan = tmp.path().join("scan");
    p.write(&scan).unwrap();
    let stack = Stack::open(&scan).unwrap();
    let mut o = options(
        ZarrVersion::V2,
        ChunkShape::default(),
        Compression::BloscLz4,
        16,
    );
    o.voxel_size = Some(lodcache::VoxelSize::user([2.0, 2.0, 3.0]).unwrap());
    let out = tmp.path().join("v2.ome.zarr");
    let report = export_ome_zarr(&stack, &out, &o).unwrap();
    assert_eq!(
        zarr_support::json(&out.join(".zgroup")),
        serde_json::json!({"zarr_format": 2})
    );
    let attrs = zarr_support::json(&out.join(".zattrs"));
    let ms = &attrs["multiscales"][0];
    assert_eq!(ms["version"], "0.4");
    assert_eq!(ms["type"], "mean");
    assert_eq!(
        ms["axes"][0],
        serde_json::json!({"name": "z", "type": "space", "unit": "micrometer"})
    );
    let ds = ms["datasets"].as_array().unwrap();
    assert_eq!(ds.len(), 4);
    assert_eq!(ds[2]["path"], "2");
    assert_eq!(
        ds[2]["coordinateTransformations"][0]["scale"],
        serde_json::json!([12.0, 8.0, 8.0])
    );
    assert_eq!(
        ds[2]["coordinateTransformations"][1]["translation"],
        serde_json::json!([4.5, 3.0, 3.0])
    );
    let window = report.window.unwrap();
    assert_eq!(
        attrs["omero"]["channels"][0]["window"]["start"],
        window.start
    );
    assert_eq!(attrs["omero"]["channels"][0]["window"]["end"], window.end);
    let a = zarr_support::json(&out.join("1/.zarray"));
    assert_eq!(a["shape"], serde_json::json!([5, 26, 37]));
    assert_eq!(a["chunks"], serde_json::json!([1, 26, 37]));
    assert_eq!(a["dtype"], "<u2");
    assert_eq!(a["compressor"]["id"], "blosc");
    assert_eq!(a["compressor"]["cname"], "lz4");
    assert_eq!(a["compressor"]["shuffle"], 1);
    // Nothing but the store's files and lodcache's marker.
    let files = tree(&out);
    assert!(
        files.iter().all(|f| f == ".zgroup"
            || f == ".zattrs"
            || f == ".lodcache-export.json"
            || f.ends_with(".zarray")
            || f.split('/').all(|p| p.bytes().all(|b| b.is_ascii_digit()))),
        "{files:?}"
    );
}

#[test]
fn a_failed_export_leaves_out_as_it_was_and_foreign_folders_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Phantom::new(75, 53, 9);
    let scan = tmp.path().join("scan");
    p.write(&scan).unwrap();
    let stack = Stack::open(&scan).unwrap();
    let out = tmp.path().join("out.ome.zarr");
    let o = options(
        ZarrVersion::V3,
        ChunkShape::new(2, 16, 16),
        Compression::zstd(),
        16,
    );
    export_ome_zarr(&stack, &out, &o).unwrap();
    let before: Vec<(String, Vec<u8>)> = tree(&out)
        .into_iter()
        .map(|f| (f.clone(), std::fs::read(out.join(&f)).unwrap()))
        .collect();
    // A second export in another version fails half way: the first store is untouched, and
    // no staging folder is left beside it.
    let o2 = options(
        ZarrVersion::V2,
        ChunkShape::new(1, 8, 8),
        Compression::None,
        16,
    );
    // Deep chunks take the banded path, which counts source slices a slab at a time.
    let deep = options(
        ZarrVersion::V2,
        ChunkShape::new(4, 8, 8),
        Compression::None,
        16,
    );
    for (after, o) in [(1, &o2), (5, &o2), (9, &o2), (1, &deep), (5, &deep)] {
        let e = lodcache::zarr::export_ome_zarr_failing_after(&stack, &out, o, after)
            .unwrap_err()
            .to_string();
        assert!(e.contains("injected"), "{e}");
        let now: Vec<(String, Vec<u8>)> = tree(&out)
            .into_iter()
            .map(|f| (f.clone(), std::fs::read(out.join(&f)).unwrap()))
            .collect();
        assert!(
            now == before,
            "OUT changed after a failure after {after} slices"
        );
        let siblings: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            siblings.iter().all(|s| !s.contains("staging")),
            "{siblings:?}"
        );
    }
    // A successful one replaces it whole.
    export_ome_zarr(&stack, &out, &o2).unwrap();
    assert!(out.join(".zgroup").exists() && !out.join("zarr.json").exists());
    check_store(&out, &phantom_volume(&p).pyramid(16));

    // A folder that is not an export, or a file, is refused before anything is written.
    let foreign = tmp.path().join("mine");
    std::fs::create_dir(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), b"keep me").unwrap();
    let e = export_ome_zarr(&stack, &foreign, &o)
        .unwrap_err()
        .to_string();
    assert!(e.contains("not empty") && e.contains("notes.txt"), "{e}");
    assert_eq!(tree(&foreign), ["notes.txt"]);
    let file = tmp.path().join("file.ome.zarr");
    std::fs::write(&file, b"x").unwrap();
    assert!(export_ome_zarr(&stack, &file, &o).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    // A CTHarvester export is not an OME-Zarr export either.
    let cth = tmp.path().join("cth");
    stack_export_ctharvester(&stack, &cth);
    let e = export_ome_zarr(&stack, &cth, &o).unwrap_err().to_string();
    assert!(e.contains("not an earlier lodcache OME-Zarr export"), "{e}");
    // An empty folder is fine.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    export_ome_zarr(&stack, &empty, &o).unwrap();
    assert!(empty.join("zarr.json").exists());
}

fn stack_export_ctharvester(stack: &Stack, out: &Path) {
    lodcache::export_ctharvester(
        stack,
        out,
        &lodcache::ExportOptions {
            rule: LevelRule::default().with_edge(16),
            ..lodcache::ExportOptions::default()
        },
    )
    .unwrap();
}

#[test]
fn pyramid_export_reports_progress_and_cancels() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Phantom::new(75, 53, 9);
    let scan = tmp.path().join("scan");
    p.write(&scan).unwrap();
    let pyr = lodcache::Pyramid::builder(&scan)
        .with_edge(16)
        .with_disk_cache(false)
        .with_voxel_size([1.5, 1.5, 4.0])
        .build()
        .unwrap();
    let out = tmp.path().join("p.ome.zarr");
    let seen = std::sync::Mutex::new(Vec::new());
    let progress = |pr: lodcache::Progress| seen.lock().unwrap().push((pr.done, pr.total));
    let report = pyr
        .request()
        .with_progress(&progress)
        .export_ome_zarr(&out, &OmeZarrOptions::default())
        .unwrap();
    assert_eq!(report.voxel_size.unwrap().z, 4.0);
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.last(), Some(&(9, 9)));
    check_store(&out, &phantom_volume(&p).pyramid(16));
    let cancel = lodcache::Cancel::new();
    cancel.cancel();
    let out2 = tmp.path().join("c.ome.zarr");
    let e = pyr
        .request()
        .with_cancel(&cancel)
        .export_ome_zarr(&out2, &OmeZarrOptions::default())
        .unwrap_err();
    assert!(matches!(e, lodcache::Error::Cancelled), "{e}");
    assert!(!out2.exists());
}

#[test]
fn deep_chunks_hold_bands_not_slabs_and_mixed_sources_still_match() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Phantom::new(130, 97, 21);
    let scan = tmp.path().join("scan");
    p.write(&scan).unwrap();
    let naive = phantom_volume(&p).pyramid(16);
    let chunk = ChunkShape::new(8, 32, 32);
    let o = options(ZarrVersion::V3, chunk, Compression::BloscLz4, 16);
    let stack = Stack::open(&scan).unwrap();
    let report = export_ome_zarr(&stack, &tmp.path().join("a.ome.zarr"), &o).unwrap();
    check_store(&tmp.path().join("a.ome.zarr"), &naive);
    // Level 0 is read by bands: what is held at once is less than one row of level-0 chunks
    // (8 source slices), let alone the rows of every level.
    let slice0 = 130 * 97 * 2;
    assert!(
        report.peak_held_bytes < 8 * slice0,
        "held {} bytes, a slab of level 0 is {}",
        report.peak_held_bytes,
        8 * slice0
    );
    // A slice that cannot be read by rows (LZW-compressed) among plain ones.
    let name = scan.join(Phantom::file_name(5));
    let s = p.slice(5);
    let file = std::fs::File::create(&name).unwrap();
    let mut enc = tiff::encoder::TiffEncoder::new(file)
        .unwrap()
        .with_compression(tiff::encoder::Compression::Lzw);
    let lodcache::Pixels::U16(v) = s.pixels() else {
        unreachable!()
    };
    enc.write_image::<tiff::encoder::colortype::Gray16>(130, 97, v)
        .unwrap();
    let stack = Stack::open(&scan).unwrap();
    export_ome_zarr(&stack, &tmp.path().join("b.ome.zarr"), &o).unwrap();
    check_store(&tmp.path().join("b.ome.zarr"), &naive);
    // A multi-page TIFF of the same slices.
    let pages = tmp.path().join("pages.tif");
    let file = std::fs::File::create(&pages).unwrap();
    let mut enc = tiff::encoder::TiffEncoder::new(file).unwrap();
    for z in 0..p.depth() {
        let s = p.slice(z);
        let lodcache::Pixels::U16(v) = s.pixels() else {
            unreachable!()
        };
        enc.write_image::<tiff::encoder::colortype::Gray16>(130, 97, v)
            .unwrap();
    }
    drop(enc);
    let stack = Stack::open(&pages).unwrap();
    let mut o2 = o.clone();
    o2.version = ZarrVersion::V2;
    o2.chunk = ChunkShape::new(3, 7, 50);
    export_ome_zarr(&stack, &tmp.path().join("c.ome.zarr"), &o2).unwrap();
    check_store(&tmp.path().join("c.ome.zarr"), &naive);
}

/// What a server would answer for every file equals what the export wrote: the layout of
/// `Pyramid::zarr_layout`, the files of `resolve_v2`/`resolve_v3`, the bytes of `encode_file`
/// from `Pyramid::slice` (level 0 included).
#[test]
fn served_files_equal_exported_files() {
    let tmp = tempfile::tempdir().unwrap();
    let p = Phantom::new(90, 70, 11);
    let scan = tmp.path().join("scan");
    p.write(&scan).unwrap();
    let pyr = lodcache::Pyramid::builder(&scan)
        .with_edge(16)
        .with_disk_cache(false)
        .build()
        .unwrap();
    for (version, chunk, shard, compression) in [
        (
            ZarrVersion::V2,
            ChunkShape::new(1, 16, 32),
            None,
            Compression::BloscLz4,
        ),
        (
            ZarrVersion::V3,
            ChunkShape::new(2, 16, 16),
            None,
            Compression::zstd(),
        ),
        (
            ZarrVersion::V3,
            ChunkShape::new(2, 16, 16),
            Some(ChunkShape::new(4, 32, 48)),
            Compression::BloscLz4,
        ),
    ] {
        let out = tmp.path().join(format!("{version:?}-{shard:?}.ome.zarr"));
        let o = OmeZarrOptions {
            version,
            chunk,
            shard,
            compression,
            ..OmeZarrOptions::default()
        };
        pyr.export_ome_zarr(&out, &o).unwrap();
        let mut layout = pyr.zarr_layout(chunk, compression).unwrap();
        if let Some(s) = shard {
            layout = layout.with_shards(s).unwrap();
        }
        // The window the export wrote is the one the layout computes.
        let attrs = match version {
            ZarrVersion::V2 => zarr_support::json(&out.join(".zattrs")),
            ZarrVersion::V3 => {
                zarr_support::json(&out.join("zarr.json"))["attributes"]["ome"].clone()
            }
        };
        let w = layout.window().unwrap();
        assert_eq!(attrs["omero"]["channels"][0]["window"]["start"], w.start);
        assert_eq!(attrs["omero"]["channels"][0]["window"]["end"], w.end);
        let mut files = 0;
        for l in layout.levels() {
            let n = l.info.level;
            let [gz, gy, gx] = l.file_grid();
            for iz in 0..gz {
                let zr = l.file_slices(iz).unwrap();
                let slices: Vec<lodcache::Slice> =
                    zr.clone().map(|z| pyr.slice(n, z).unwrap()).collect();
                let refs: Vec<&lodcache::Slice> = slices.iter().collect();
                for iy in 0..gy {
                    for ix in 0..gx {
                        let key = match version {
                            ZarrVersion::V2 => ZarrLayout::chunk_key_v2(n, [iz, iy, ix]),
                            ZarrVersion::V3 => ZarrLayout::chunk_key_v3(n, [iz, iy, ix]),
                        };
                        let node = match version {
                            ZarrVersion::V2 => layout.resolve_v2(&key),
                            ZarrVersion::V3 => layout.resolve_v3(&key),
                        };
                        assert_eq!(
                            node,
                            Some(lodcache::zarr::Node::Chunk {
                                level: n,
                                index: [iz, iy, ix]
                            })
                        );
                        let mut served = Vec::new();
                        layout
                            .encode_file(n, [iz, iy, ix], &refs, &mut served)
                            .unwrap();
                        let written = std::fs::read(out.join(&key)).unwrap();
                        assert!(served == written, "{key} of {version:?} {shard:?}");
                        files += 1;
                    }
                }
            }
        }
        assert!(files > 10);
    }
}

/// An export killed with SIGKILL half way leaves OUT as it was (the earlier store, byte for
/// byte) and only its staging folder beside it, which the next export removes.
#[cfg(unix)]
#[test]
fn a_killed_export_leaves_out_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("scan");
    Phantom::new(512, 512, 64).write(&scan).unwrap();
    let stack = Stack::open(&scan).unwrap();
    let out = tmp.path().join("out.ome.zarr");
    let small = options(
        ZarrVersion::V3,
        ChunkShape::new(8, 256, 256),
        Compression::zstd(),
        64,
    );
    export_ome_zarr(&stack, &out, &small).unwrap();
    let snapshot = |dir: &Path| -> Vec<(String, Vec<u8>)> {
        tree(dir)
            .into_iter()
            .map(|f| (f.clone(), std::fs::read(dir.join(&f)).unwrap()))
            .collect()
    };
    let before = snapshot(&out);
    let staging = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("lodcache-staging"))
            .collect()
    };
    // Tiny uncompressed chunks: thousands of files, so the kill lands while writing.
    let mut child = std::process::Command::new(common::example_binary("ome_zarr"))
        .arg(&scan)
        .arg(&out)
        .args([
            "--zarr-version",
            "2",
            "--chunks",
            "1,16,16",
            "--compression",
            "none",
        ])
        .args(["--edge", "64"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let killed_mid_way = loop {
        let files: usize = staging().iter().map(|s| tree(s).len()).sum();
        if files >= 50 {
            child.kill().unwrap();
            break true;
        }
        if child.try_wait().unwrap().is_some() {
            break false;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "export hangs"
        );
        std::thread::sleep(std::time::Duration::from_millis(2));
    };
    child.wait().unwrap();
    assert!(
        killed_mid_way,
        "the export finished before it could be killed"
    );
    assert!(snapshot(&out) == before, "OUT changed after the kill");
    assert_eq!(
        staging().len(),
        1,
        "the killed export's staging folder stays"
    );
    // The next export (in this process) sweeps it and replaces OUT whole.
    export_ome_zarr(&stack, &out, &small).unwrap();
    assert!(staging().is_empty());
    assert!(snapshot(&out) == before);
}
