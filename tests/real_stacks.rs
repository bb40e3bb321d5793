//! The two real stacks in `../shared/data/` (or `$LODCACHE_SHARED_DATA`) exported with a small
//! edge equal, voxel by voxel, an independent naive pyramid computed from the files read with
//! the tiff crate. Fails where the data is missing, unless `LODCACHE_SKIP_REAL_DATA=1` (then
//! skips with a message).

mod common;

use common::{read_tiff_dir, shared_data};
use lodcache::{ExportOptions, LevelRule, SampleType, Stack, export_ctharvester};

fn check(name: &str, depth: u32, rows: u32, cols: u32, ty: SampleType) {
    let Some(dir) = shared_data(name) else { return };
    let stack = Stack::open(&dir).unwrap();
    assert_eq!(stack.depth(), depth);
    assert_eq!(
        (
            stack.info().width,
            stack.info().height,
            stack.info().sample_type
        ),
        (cols, rows, ty)
    );
    assert!(stack.gaps().is_empty());
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let report = export_ctharvester(
        &stack,
        &out,
        &ExportOptions {
            rule: LevelRule::default().with_edge(64),
            ..ExportOptions::default()
        },
    )
    .unwrap();
    let (source, bits) = read_tiff_dir(&dir);
    assert_eq!(source.slices.len() as u32, depth);
    let naive = source.pyramid(64);
    assert_eq!(report.levels.len(), naive.len() - 1);
    assert!(
        report.levels.len() >= 2,
        "{name}: expected at least two levels"
    );
    for (n, want) in naive.iter().enumerate().skip(1) {
        let (have, have_bits) = read_tiff_dir(&out.join(n.to_string()));
        assert_eq!(have_bits, bits, "{name}: level {n} sample depth");
        assert_eq!(
            (have.width, have.height, have.slices.len()),
            (want.width, want.height, want.slices.len()),
            "{name}: level {n} dimensions"
        );
        for (z, (h, w)) in have.slices.iter().zip(&want.slices).enumerate() {
            assert!(
                h == w,
                "{name}: level {n} slice {z} differs from the naive pyramid"
            );
        }
    }
}

#[test]
fn siemens_b0_16bit_matches_the_naive_pyramid() {
    check("heudiconv_siemens_b0_mosaic", 81, 152, 150, SampleType::U16);
}

#[test]
fn mni152_8bit_matches_the_naive_pyramid() {
    check("niivue_mni152_2009_t1", 215, 256, 207, SampleType::U8);
}
