//! The physical voxel size and where it came from: TIFF resolution tags (inch and centimetre;
//! the 72 dpi and unit-less defaults ignored), ImageJ's description (unit and z spacing), a
//! Bruker SkyScan log beside the slices (reconstructed size first), the user's override; level
//! n is 2^n times level 0; exported CTHarvester TIFFs carry their level's resolution; the
//! OME-Zarr scales use it.

mod common;

use std::path::Path;

use lodcache::{ExportOptions, LevelRule, Phantom, Pyramid, Stack, VoxelSource};
use tiff::encoder::{Rational, TiffEncoder, colortype};
use tiff::tags::{ResolutionUnit, Tag};

/// Writes `n` 16-bit slices `s000.tif`.. of 8 x 8 with the given resolution and description.
fn slices(
    dir: &Path,
    n: u32,
    res: Option<(ResolutionUnit, Rational, Rational)>,
    desc: Option<&str>,
) {
    std::fs::create_dir_all(dir).unwrap();
    for z in 0..n {
        let file = std::fs::File::create(dir.join(format!("s{z:03}.tif"))).unwrap();
        let mut enc = TiffEncoder::new(file).unwrap();
        let mut image = enc.new_image::<colortype::Gray16>(8, 8).unwrap();
        if let Some((unit, x, y)) = &res {
            image.resolution_unit(*unit);
            image.x_resolution(Rational { n: x.n, d: x.d });
            image.y_resolution(Rational { n: y.n, d: y.d });
        }
        if let Some(d) = desc {
            image.encoder().write_tag(Tag::ImageDescription, d).unwrap();
        }
        image.write_data(&[z as u16; 64]).unwrap();
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

#[test]
fn tiff_resolution_tags_in_centimetres_and_inches() {
    let tmp = tempfile::tempdir().unwrap();
    let cm = tmp.path().join("cm");
    // 2000 pixels per centimetre: 5 µm; y 1000: 10 µm.
    slices(
        &cm,
        3,
        Some((
            ResolutionUnit::Centimeter,
            Rational { n: 2000, d: 1 },
            Rational { n: 1000, d: 1 },
        )),
        None,
    );
    let v = Stack::open(&cm).unwrap().voxel_size().unwrap();
    assert!(
        close(v.x, 5.0) && close(v.y, 10.0) && close(v.z, 5.0),
        "{v:?}"
    );
    assert!(matches!(&v.source, VoxelSource::TiffTags { file } if file.ends_with("s000.tif")));
    let inch = tmp.path().join("inch");
    slices(
        &inch,
        2,
        Some((
            ResolutionUnit::Inch,
            Rational { n: 5080, d: 2 },
            Rational { n: 2540, d: 1 },
        )),
        None,
    );
    let v = Stack::open(&inch).unwrap().voxel_size().unwrap();
    assert!(close(v.x, 10.0) && close(v.y, 10.0), "{v:?}");
    // Every writer's defaults say nothing: 72 dpi, and the tiff crate's 1/1 with no unit.
    let dpi72 = tmp.path().join("72");
    slices(
        &dpi72,
        2,
        Some((
            ResolutionUnit::Inch,
            Rational { n: 72, d: 1 },
            Rational { n: 72, d: 1 },
        )),
        None,
    );
    assert_eq!(Stack::open(&dpi72).unwrap().voxel_size(), None);
    let plain = tmp.path().join("plain");
    slices(&plain, 2, None, None);
    assert_eq!(Stack::open(&plain).unwrap().voxel_size(), None);
}

#[test]
fn imagej_unit_and_spacing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ij");
    // ImageJ: 0.25 pixels per unit (unit none in the tags), unit mm, z spacing 0.006 mm.
    slices(
        &dir,
        2,
        Some((
            ResolutionUnit::None,
            Rational { n: 1, d: 4 },
            Rational { n: 1, d: 4 },
        )),
        Some("ImageJ=1.54f\nimages=2\nslices=2\nunit=mm\nspacing=0.006\nloop=false\n"),
    );
    let v = Stack::open(&dir).unwrap().voxel_size().unwrap();
    assert!(
        close(v.x, 4000.0) && close(v.y, 4000.0) && close(v.z, 6.0),
        "{v:?}"
    );
    assert!(matches!(v.source, VoxelSource::ImageJ { .. }));
    // µm written as ImageJ's escaped micro sign, and "micron".
    for unit in ["\\u00B5m", "micron"] {
        let d = tmp.path().join(format!("ij-{}", unit.len()));
        slices(
            &d,
            1,
            Some((
                ResolutionUnit::None,
                Rational { n: 2, d: 1 },
                Rational { n: 2, d: 1 },
            )),
            Some(&format!("ImageJ=1.54f\nunit={unit}\n")),
        );
        let v = Stack::open(&d).unwrap().voxel_size().unwrap();
        assert!(close(v.x, 0.5) && close(v.z, 0.5), "{unit}: {v:?}");
    }
}

#[test]
fn skyscan_log_beside_the_slices_wins() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("scan");
    slices(
        &dir,
        2,
        Some((
            ResolutionUnit::Centimeter,
            Rational { n: 2000, d: 1 },
            Rational { n: 2000, d: 1 },
        )),
        None,
    );
    std::fs::write(
        dir.join("scan_rec.log"),
        "[System]\r\nScanner=SkyScan1272\r\n[Acquisition]\r\nImage Pixel Size (um)=4.500000\r\n\
         [Reconstruction]\r\nPixel Size (um)=9.000010\r\n",
    )
    .unwrap();
    let v = Stack::open(&dir).unwrap().voxel_size().unwrap();
    assert!(close(v.x, 9.00001) && close(v.z, 9.00001), "{v:?}");
    match &v.source {
        VoxelSource::ScannerLog { file, scanner, key } => {
            assert!(file.ends_with("scan_rec.log"));
            assert_eq!((*scanner, *key), ("Bruker SkyScan", "Pixel Size (um)"));
        }
        other => panic!("{other:?}"),
    }
    assert!(v.source.to_string().contains("scan_rec.log"));
    // The acquisition log alone.
    std::fs::write(
        dir.join("scan_rec.log"),
        "[Acquisition]\nImage Pixel Size (um)=4.5\n",
    )
    .unwrap();
    let v = Stack::open(&dir).unwrap().voxel_size().unwrap();
    assert!(close(v.x, 4.5), "{v:?}");
    // A log without a size falls back to the tags.
    std::fs::write(dir.join("scan_rec.log"), "[System]\nnothing here\n").unwrap();
    let v = Stack::open(&dir).unwrap().voxel_size().unwrap();
    assert!(
        close(v.x, 5.0) && matches!(v.source, VoxelSource::TiffTags { .. }),
        "{v:?}"
    );
}

#[test]
fn the_user_overrides_and_levels_scale_by_powers_of_two() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("scan");
    Phantom::new(80, 60, 9).write(&scan).unwrap();
    let pyr = Pyramid::builder(&scan)
        .with_edge(16)
        .with_disk_cache(false)
        .build()
        .unwrap();
    assert_eq!(pyr.voxel_size(), None);
    let pyr = Pyramid::builder(&scan)
        .with_edge(16)
        .with_disk_cache(false)
        .with_voxel_size([2.0, 2.0, 3.0])
        .build()
        .unwrap();
    let v = pyr.voxel_size().unwrap();
    assert_eq!(v.source, VoxelSource::User);
    assert_eq!(v.at_level(3), [16.0, 16.0, 24.0]);
    let e = Pyramid::builder(&scan)
        .with_voxel_size([0.0, 1.0, 1.0])
        .build()
        .unwrap_err()
        .to_string();
    assert!(e.contains("voxel size"), "{e}");

    // CTHarvester exports carry each level's resolution, which reads back as that size.
    let out = tmp.path().join("out");
    pyr.export_ctharvester(&out, None).unwrap();
    for level in 1..=3u32 {
        let v = Stack::open(out.join(level.to_string()))
            .unwrap()
            .voxel_size()
            .unwrap();
        let want = 2.0 * f64::from(1u32 << level);
        assert!(
            (v.x - want).abs() < 1e-3 && (v.y - want).abs() < 1e-3,
            "level {level}: {v:?}"
        );
    }
    let out2 = tmp.path().join("out2");
    let stack = Stack::open(&scan).unwrap();
    lodcache::export_ctharvester(
        &stack,
        &out2,
        &ExportOptions {
            rule: LevelRule::default().with_edge(16),
            voxel_size: Some(lodcache::VoxelSize::user([0.5, 0.5, 0.5]).unwrap()),
            ..ExportOptions::default()
        },
    )
    .unwrap();
    let v = Stack::open(out2.join("2")).unwrap().voxel_size().unwrap();
    assert!((v.x - 2.0).abs() < 1e-3, "{v:?}");
    // No voxel size: no resolution written (the tiff crate's unit-less default stays).
    let out3 = tmp.path().join("out3");
    lodcache::export_ctharvester(
        &stack,
        &out3,
        &ExportOptions {
            rule: LevelRule::default().with_edge(16),
            ..ExportOptions::default()
        },
    )
    .unwrap();
    assert_eq!(Stack::open(out3.join("1")).unwrap().voxel_size(), None);
}
