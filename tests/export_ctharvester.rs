//! Export to CTHarvester's layout: names, counts and sizes agree with CTHarvester where it is
//! right, the pixels equal an independent naive pyramid, the sample type is kept, and a failed
//! export leaves the output folder exactly as it was.

mod common;

use std::path::Path;

use common::{phantom_volume, read_tiff, read_tiff_dir, tree};
use lodcache::{Error, ExportOptions, LevelRule, Phantom, SampleType, Stack, export_ctharvester};

fn export(stack_dir: &Path, out: &Path, edge: u32) -> lodcache::Result<lodcache::ExportReport> {
    let stack = Stack::open(stack_dir)?;
    export_ctharvester(
        &stack,
        out,
        &ExportOptions {
            rule: LevelRule::default().with_edge(edge),
            ..ExportOptions::default()
        },
    )
}

/// Files per level folder of an export.
fn counts(out: &Path) -> Vec<(String, usize)> {
    let mut dirs: Vec<(String, usize)> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.path().is_dir())
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read_dir(e.path()).unwrap().count(),
            )
        })
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn level_counts_and_names_agree_with_ctharvester() {
    let tmp = tempfile::tempdir().unwrap();
    // 17 x 2048^2 gives 9 / 5 / 3 files at 1024 / 512 / 256.
    let stack = tmp.path().join("s17");
    Phantom::new(2048, 2048, 17)
        .with_sample_type(SampleType::U8)
        .write(&stack)
        .unwrap();
    let out = tmp.path().join("o17");
    let report = export(&stack, &out, 500).unwrap();
    assert_eq!(
        counts(&out),
        vec![("1".into(), 9), ("2".into(), 5), ("3".into(), 3)]
    );
    assert_eq!(
        report.levels.iter().map(|l| l.width).collect::<Vec<_>>(),
        vec![1024, 512, 256]
    );
    assert_eq!(report.files, 17);
    let (w, h, bits, _) = read_tiff(&out.join("3").join("000002.tif"));
    assert_eq!((w, h, bits), (256, 256, 8));
    assert!(out.join("1").join("000008.tif").is_file());

    // 1 x 1100^2: one file per level, no empty level folder.
    let stack = tmp.path().join("s1");
    Phantom::new(1100, 1100, 1).write(&stack).unwrap();
    let out = tmp.path().join("o1");
    export(&stack, &out, 500).unwrap();
    assert_eq!(counts(&out), vec![("1".into(), 1), ("2".into(), 1)]);
    assert_eq!(read_tiff(&out.join("2").join("000000.tif")).0, 275);

    // 1010^2 gives two levels (505, 252); 3072^2 gives 1536, 768, 384.
    for (size, widths) in [(1010u32, vec![505u32, 252]), (3072, vec![1536, 768, 384])] {
        let stack = tmp.path().join(format!("s{size}"));
        Phantom::new(size, size, 2)
            .with_sample_type(SampleType::U8)
            .write(&stack)
            .unwrap();
        let out = tmp.path().join(format!("o{size}"));
        let report = export(&stack, &out, 500).unwrap();
        assert_eq!(
            report.levels.iter().map(|l| l.width).collect::<Vec<_>>(),
            widths
        );
        assert_eq!(counts(&out).len(), widths.len());
    }
}

#[test]
fn exported_pixels_equal_the_naive_pyramid() {
    let tmp = tempfile::tempdir().unwrap();
    for (w, h, d, ty) in [
        (67u32, 45u32, 13u32, SampleType::U16),
        (40, 61, 6, SampleType::U8),
    ] {
        let phantom = Phantom::new(w, h, d).with_sample_type(ty).with_seed(5);
        let stack = tmp.path().join(format!("s{w}"));
        phantom.write(&stack).unwrap();
        let out = tmp.path().join(format!("o{w}"));
        export(&stack, &out, 4).unwrap();
        let naive = phantom_volume(&phantom).pyramid(4);
        assert_eq!(counts(&out).len(), naive.len() - 1);
        for (n, want) in naive.iter().enumerate().skip(1) {
            let (have, bits) = read_tiff_dir(&out.join(n.to_string()));
            assert_eq!(bits, if ty == SampleType::U8 { 8 } else { 16 });
            assert!(have == *want, "{w}x{h}x{d}: level {n} differs");
        }
    }
}

#[test]
fn selected_levels_only_and_bad_levels_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let stack_dir = tmp.path().join("s");
    Phantom::new(64, 64, 8).write(&stack_dir).unwrap();
    let stack = Stack::open(&stack_dir).unwrap();
    let out = tmp.path().join("o");
    let options = |levels: Vec<u32>| ExportOptions {
        rule: LevelRule::default().with_edge(8),
        levels: Some(levels),
        ..ExportOptions::default()
    };
    export_ctharvester(&stack, &out, &options(vec![3, 1])).unwrap();
    assert_eq!(counts(&out), vec![("1".into(), 4), ("3".into(), 1)]);
    for bad in [0u32, 4, 99] {
        let err = export_ctharvester(&stack, &out, &options(vec![bad])).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
        assert!(err.to_string().contains("1..=3"), "{err}");
    }
}

#[test]
fn a_failed_export_leaves_the_previous_export_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let stack_dir = tmp.path().join("s");
    Phantom::new(48, 48, 10).write(&stack_dir).unwrap();
    let out = tmp.path().join("o");
    export(&stack_dir, &out, 4).unwrap();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let before: Vec<(String, Vec<u8>)> = tree(&out)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(out.join(&f)).unwrap();
            (f, bytes)
        })
        .collect();

    // Corrupt slice 6: the export fails after writing earlier slices to its staging folder.
    let bad = stack_dir.join(Phantom::file_name(6));
    let bytes = std::fs::read(&bad).unwrap();
    std::fs::write(&bad, &bytes[..bytes.len() / 3]).unwrap();
    let err = export(&stack_dir, &out, 4).unwrap_err();
    assert!(err.to_string().contains(&Phantom::file_name(6)), "{err}");

    let after: Vec<(String, Vec<u8>)> = tree(&out)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(out.join(&f)).unwrap();
            (f, bytes)
        })
        .collect();
    assert_eq!(
        before.len(),
        after.len(),
        "files added or lost: {:?}",
        tree(&out)
    );
    assert!(before == after, "the previous export changed");

    // Fixed, a new export replaces the levels and keeps the user's file.
    std::fs::write(&bad, &bytes).unwrap();
    export(&stack_dir, &out, 4).unwrap();
    assert_eq!(std::fs::read(out.join("notes.txt")).unwrap(), b"mine");
    assert!(!tree(&out).iter().any(|f| f.contains(".tmp-")));
}

#[test]
fn a_stack_below_the_edge_exports_nothing_and_says_why() {
    let tmp = tempfile::tempdir().unwrap();
    let stack_dir = tmp.path().join("s");
    Phantom::new(30, 30, 3).write(&stack_dir).unwrap();
    let out = tmp.path().join("o");
    let report = export(&stack_dir, &out, 500).unwrap();
    assert_eq!(report.files, 0);
    assert!(tree(&out).is_empty());
    let stack = Stack::open(&stack_dir).unwrap();
    let err = export_ctharvester(
        &stack,
        &out,
        &ExportOptions {
            levels: Some(vec![1]),
            ..ExportOptions::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("not above the edge"), "{err}");
}

/// Issue 15 item 4: an export never deletes or replaces what it did not write. The user's scan
/// folder as OUT, a level folder holding a user's notes, a file where OUT should be: refused,
/// and nothing changes. An earlier export (marked), and CTHarvester's own layout (unmarked),
/// are replaced as before.
#[test]
fn an_export_refuses_an_out_it_did_not_write_and_touches_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let stack_dir = tmp.path().join("scan");
    Phantom::new(40, 40, 5).write(&stack_dir).unwrap();
    // The scan folder itself (what `export` with one argument did).
    let before = tree(&stack_dir);
    let err = export(&stack_dir, &stack_dir, 10).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err}");
    assert!(err.to_string().contains("not an earlier export"), "{err}");
    assert_eq!(tree(&stack_dir), before, "the scan folder changed");

    // A folder whose level folder holds the user's notes.
    let out = tmp.path().join("out");
    std::fs::create_dir_all(out.join("1")).unwrap();
    std::fs::write(out.join("1").join("notes.txt"), b"my notes").unwrap();
    std::fs::write(out.join("1").join("000000.tif"), b"old").unwrap();
    let before = tree(&out);
    let err = export(&stack_dir, &out, 10).unwrap_err().to_string();
    assert!(err.contains("notes.txt"), "{err}");
    assert_eq!(tree(&out), before, "OUT changed");
    assert_eq!(
        std::fs::read(out.join("1").join("notes.txt")).unwrap(),
        b"my notes"
    );

    // A file where OUT should be.
    let file = tmp.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    assert!(export(&stack_dir, &file, 10).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"x");

    // CTHarvester's own layout (no marker): replaced; then marked, and replaced again, with a
    // user file beside the level folders left alone.
    let thumbs = tmp.path().join(".thumbnail");
    std::fs::create_dir_all(thumbs.join("1")).unwrap();
    std::fs::write(
        thumbs.join("1").join("000000.tif"),
        b"made by the old module",
    )
    .unwrap();
    export(&stack_dir, &thumbs, 10).unwrap();
    assert!(thumbs.join(lodcache::EXPORT_MARKER).is_file());
    assert_ne!(
        std::fs::read(thumbs.join("1").join("000000.tif")).unwrap(),
        b"made by the old module"
    );
    std::fs::write(thumbs.join("README.txt"), b"mine").unwrap();
    export(&stack_dir, &thumbs, 10).unwrap();
    assert_eq!(std::fs::read(thumbs.join("README.txt")).unwrap(), b"mine");
}
