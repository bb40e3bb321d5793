//! Which files of a folder form the stack: names, order, ignored entries, gaps, explicit
//! patterns and duplicate numbers.

mod common;

use std::ops::RangeInclusive;
use std::path::Path;

use common::{assert_names, tiny_tiff, write};
use lodcache::{Error, Stack, StackPattern};

/// Writes a small valid slice under each name.
fn slices(dir: &Path, names: &[&str]) {
    let bytes = tiny_tiff();
    for name in names {
        write(dir, name, &bytes);
    }
}

/// The file names of the stack, in stack order.
fn names(stack: &Stack) -> Vec<String> {
    stack
        .files()
        .iter()
        .map(|f| f.path.file_name().unwrap().to_str().unwrap().to_string())
        .collect()
}

fn indices(stack: &Stack) -> Vec<u64> {
    stack.files().iter().map(|f| f.index).collect()
}

fn pattern(
    prefix: &str,
    ext: &str,
    indices: RangeInclusive<u64>,
    width: Option<usize>,
) -> StackPattern {
    StackPattern {
        prefix: prefix.to_string(),
        extension: ext.to_string(),
        indices,
        index_width: width,
    }
}

#[test]
fn numbered_files_are_read_as_prefix_digits_extension() {
    let tmp = tempfile::tempdir().unwrap();
    slices(
        tmp.path(),
        &["scan_0001.tif", "scan_0002.tif", "scan_0003.tif"],
    );
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(stack.prefix(), "scan_");
    assert_eq!(stack.extension(), "tif");
    assert_eq!(indices(&stack), [1, 2, 3]);
    assert_eq!(stack.depth(), 3);
    assert_eq!(stack.dir(), tmp.path());
    assert!(stack.gaps().is_empty());
    for f in stack.files() {
        assert_eq!(f.path.parent(), Some(tmp.path()));
    }
}

#[test]
fn slices_are_sorted_by_number_not_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    slices(
        tmp.path(),
        &[
            "s10.tif", "s9.tif", "s100.tif", "s1.tif", "s2.tif", "s11.tif",
        ],
    );
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(
        names(&stack),
        [
            "s1.tif", "s2.tif", "s9.tif", "s10.tif", "s11.tif", "s100.tif"
        ]
    );
    assert_eq!(indices(&stack), [1, 2, 9, 10, 11, 100]);
}

#[test]
fn digits_inside_the_prefix_stay_in_the_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    slices(
        tmp.path(),
        &["run2_0009.tif", "run2_0010.tif", "run2_0011.tif"],
    );
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(stack.prefix(), "run2_");
    assert_eq!(indices(&stack), [9, 10, 11]);
}

#[test]
fn names_that_are_only_digits_have_an_empty_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    slices(tmp.path(), &["000000.tif", "000001.tif", "000002.tif"]);
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(stack.prefix(), "");
    assert_eq!(indices(&stack), [0, 1, 2]);
}

#[test]
fn most_common_prefix_and_extension_pair_wins() {
    let tmp = tempfile::tempdir().unwrap();
    slices(
        tmp.path(),
        &[
            "scan_0001.tif",
            "scan_0002.tif",
            "scan_0003.tif",
            "scan_0004.tif",
            "other_0001.tif",
            "other_0002.tif",
            "other_0003.tif",
            "scan_0001.png",
            "scan_0002.png",
        ],
    );
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(stack.prefix(), "scan_");
    assert_eq!(
        names(&stack),
        [
            "scan_0001.tif",
            "scan_0002.tif",
            "scan_0003.tif",
            "scan_0004.tif"
        ]
    );
}

#[test]
fn minority_prefix_wins_nothing_even_when_it_sorts_first() {
    let tmp = tempfile::tempdir().unwrap();
    slices(
        tmp.path(),
        &[
            "a_0001.tif",
            "a_0002.tif",
            "z_0001.tif",
            "z_0002.tif",
            "z_0003.tif",
        ],
    );
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(stack.prefix(), "z_");
    assert_eq!(stack.depth(), 3);
}

#[test]
fn equally_common_pairs_are_broken_deterministically() {
    // Documented: on a tie the pair that sorts first wins.
    let tmp = tempfile::tempdir().unwrap();
    slices(
        tmp.path(),
        &["b_0001.tif", "b_0002.tif", "a_0001.tif", "a_0002.tif"],
    );
    assert_eq!(Stack::open(tmp.path()).unwrap().prefix(), "a_");
}

#[test]
fn extension_case_does_not_split_the_stack() {
    // Three tif files in three spellings outnumber two png files only if they count as one.
    let tmp = tempfile::tempdir().unwrap();
    slices(
        tmp.path(),
        &[
            "s0001.tif",
            "s0002.TIF",
            "s0003.Tif",
            "p0001.png",
            "p0002.png",
        ],
    );
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(names(&stack), ["s0001.tif", "s0002.TIF", "s0003.Tif"]);
}

#[test]
fn uppercase_tif_extension_is_found() {
    let tmp = tempfile::tempdir().unwrap();
    slices(tmp.path(), &["SCAN0001.TIF", "SCAN0002.TIF"]);
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(names(&stack), ["SCAN0001.TIF", "SCAN0002.TIF"]);
    assert_eq!(stack.extension(), "TIF");
}

#[test]
fn every_image_extension_is_found_in_any_case() {
    // The content is told by its first bytes, so a TIFF under each name is a valid slice.
    for ext in [
        "tif", "TIF", "Tif", "tiff", "TIFF", "bmp", "BMP", "png", "Png", "PNG", "jpg", "JPG",
        "jpeg", "JpEg",
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let a = format!("slice_01.{ext}");
        let b = format!("slice_02.{ext}");
        slices(tmp.path(), &[&a, &b, "notes.txt"]);
        let stack = Stack::open(tmp.path()).unwrap_or_else(|e| panic!(".{ext}: {e}"));
        assert_eq!(names(&stack), [a, b], ".{ext}");
    }
}

#[test]
fn other_extensions_are_not_slices() {
    let tmp = tempfile::tempdir().unwrap();
    // Majorities under extensions that are not images: they must not win.
    for ext in ["txt", "log", "raw", "tif.bak", "gif", "jp2", "db"] {
        for i in 1..=5 {
            write(tmp.path(), &format!("s{i:04}.{ext}"), b"not a slice");
        }
    }
    slices(tmp.path(), &["s0001.tif", "s0002.tif"]);
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(names(&stack), ["s0001.tif", "s0002.tif"]);
}

#[test]
fn notes_previews_thumbnails_and_hidden_files_are_ignored() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    slices(d, &["s0001.tif", "s0002.tif", "s0003.tif", "s0004.tif"]);
    write(d, "notes.txt", b"scan notes");
    write(d, "run.log", b"log");
    write(d, "Thumbs.db", b"thumbs");
    write(d, "scan_spr.bmp", b"BM preview");
    write(d, "desktop.ini", b"[x]");
    for i in 1..=6 {
        // CTHarvester previews and macOS resource forks: more of them than slices, and not
        // decodable, so counting any of them would change the stack or fail the open.
        write(d, &format!("s{i:04}_spr.bmp"), b"BM junk");
        write(d, &format!("._s{i:04}.tif"), b"resource fork junk");
        write(d, &format!(".x{i:04}.tif"), b"hidden junk");
    }
    let stack = Stack::open(d).unwrap();
    assert_eq!(
        names(&stack),
        ["s0001.tif", "s0002.tif", "s0003.tif", "s0004.tif"]
    );
    assert!(stack.gaps().is_empty());
}

#[test]
fn sub_folders_are_not_searched_nor_taken_for_slices() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    slices(d, &["s0001.tif", "s0002.tif", "s0003.tif", "s0004.tif"]);
    // The cache folder and another folder full of slice-like files: no recursion.
    for sub in [".lodcache", "sub"] {
        std::fs::create_dir(d.join(sub)).unwrap();
        for i in 1..=9 {
            write(&d.join(sub), &format!("t{i:04}.tif"), b"junk");
        }
    }
    // Folders named like slices of another group are not slices either.
    std::fs::create_dir(d.join("t0001.tif")).unwrap();
    let stack = Stack::open(d).unwrap();
    assert_eq!(indices(&stack), [1, 2, 3, 4]);
    assert!(stack.gaps().is_empty());
    // A folder named like the next slice of the stack is an error naming it (skipping it
    // would shift every later slice): see tests/hostile_sources.rs for every kind of entry.
    std::fs::create_dir(d.join("s0005.tif")).unwrap();
    let err = Stack::open(d).unwrap_err();
    assert!(
        matches!(&err, Error::BadSliceEntry { path, .. } if *path == d.join("s0005.tif")),
        "{err:?}"
    );
    assert_names(&err, &d.join("s0005.tif"));
}

#[cfg(unix)]
#[test]
fn links_to_files_count_and_links_to_folders_or_nothing_are_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let elsewhere = tempfile::tempdir().unwrap();
    slices(d, &["s0001.tif", "s0002.tif"]);
    let target = write(elsewhere.path(), "real.tif", &tiny_tiff());
    std::os::unix::fs::symlink(&target, d.join("s0003.tif")).unwrap();
    let stack = Stack::open(d).unwrap();
    assert_eq!(indices(&stack), [1, 2, 3]);
    stack.read_slice(2).unwrap();
    std::os::unix::fs::symlink(elsewhere.path(), d.join("s0004.tif")).unwrap();
    let err = Stack::open(d).unwrap_err();
    assert!(err.to_string().contains("link to a folder"), "{err}");
    assert_names(&err, &d.join("s0004.tif"));
    std::fs::remove_file(d.join("s0004.tif")).unwrap();
    std::os::unix::fs::symlink(d.join("missing.tif"), d.join("s0005.tif")).unwrap();
    let err = Stack::open(d).unwrap_err();
    assert!(err.to_string().contains("dangling"), "{err}");
    assert_names(&err, &d.join("s0005.tif"));
}

#[test]
fn numbers_too_large_for_u64_are_not_slices() {
    let tmp = tempfile::tempdir().unwrap();
    slices(
        tmp.path(),
        &[
            "s0001.tif",
            "s0002.tif",
            "s99999999999999999999999.tif",
            "s99999999999999999999998.tif",
            "s99999999999999999999997.tif",
        ],
    );
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(indices(&stack), [1, 2]);
}

#[test]
fn gaps_in_the_numbering_are_reported_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    slices(tmp.path(), &["s1.tif", "s2.tif", "s5.tif", "s9.tif"]);
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(indices(&stack), [1, 2, 5, 9]);
    assert_eq!(stack.gaps(), [3..=4, 6..=8]);
    assert_eq!(stack.depth(), 4);
}

#[test]
fn a_single_missing_number_is_a_gap_of_one() {
    let tmp = tempfile::tempdir().unwrap();
    slices(tmp.path(), &["s0010.tif", "s0012.tif", "s0013.tif"]);
    assert_eq!(Stack::open(tmp.path()).unwrap().gaps(), [11..=11]);
}

#[test]
fn detected_stack_has_no_leading_gap_before_its_first_file() {
    // Without a pattern the numbering is only known between the first and the last file.
    let tmp = tempfile::tempdir().unwrap();
    slices(tmp.path(), &["s0100.tif", "s0101.tif"]);
    let stack = Stack::open(tmp.path()).unwrap();
    assert!(stack.gaps().is_empty());
    assert_eq!(indices(&stack), [100, 101]);
}

#[test]
fn explicit_pattern_selects_the_minority_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    slices(
        tmp.path(),
        &[
            "a_0001.tif",
            "a_0002.tif",
            "a_0003.tif",
            "a_0004.tif",
            "b_0001.tif",
            "b_0002.tif",
        ],
    );
    let stack = Stack::open_pattern(tmp.path(), &pattern("b_", "tif", 1..=2, None)).unwrap();
    assert_eq!(stack.prefix(), "b_");
    assert_eq!(names(&stack), ["b_0001.tif", "b_0002.tif"]);
    assert!(stack.gaps().is_empty());
}

#[test]
fn explicit_pattern_keeps_only_its_index_range() {
    let tmp = tempfile::tempdir().unwrap();
    let all: Vec<String> = (1..=10).map(|i| format!("b_{i:04}.tif")).collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    slices(tmp.path(), &refs);
    let stack = Stack::open_pattern(tmp.path(), &pattern("b_", "tif", 3..=7, None)).unwrap();
    assert_eq!(indices(&stack), [3, 4, 5, 6, 7]);
    assert!(stack.gaps().is_empty());
}

#[test]
fn explicit_pattern_reports_leading_inner_and_trailing_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    slices(
        tmp.path(),
        &["b_0003.tif", "b_0004.tif", "b_0006.tif", "b_0012.tif"],
    );
    let stack = Stack::open_pattern(tmp.path(), &pattern("b_", "tif", 1..=9, None)).unwrap();
    assert_eq!(indices(&stack), [3, 4, 6]);
    assert_eq!(stack.gaps(), [1..=2, 5..=5, 7..=9]);
}

#[test]
fn explicit_pattern_with_only_the_last_number_missing_reports_it() {
    let tmp = tempfile::tempdir().unwrap();
    slices(tmp.path(), &["b_0001.tif", "b_0002.tif"]);
    let stack = Stack::open_pattern(tmp.path(), &pattern("b_", "tif", 1..=3, None)).unwrap();
    assert_eq!(stack.gaps(), [3..=3]);
}

#[test]
fn explicit_pattern_respects_index_width() {
    let tmp = tempfile::tempdir().unwrap();
    slices(
        tmp.path(),
        &[
            "b_01.tif",
            "b_0002.tif",
            "b_0003.tif",
            "b_4.tif",
            "b_00005.tif",
        ],
    );
    let stack = Stack::open_pattern(tmp.path(), &pattern("b_", "tif", 1..=5, Some(4))).unwrap();
    assert_eq!(names(&stack), ["b_0002.tif", "b_0003.tif"]);
    assert_eq!(stack.gaps(), [1..=1, 4..=5]);
}

#[test]
fn index_width_tells_apart_names_with_the_same_number() {
    let tmp = tempfile::tempdir().unwrap();
    slices(tmp.path(), &["a01.tif", "a1.tif", "a02.tif", "a2.tif"]);
    let two = Stack::open_pattern(tmp.path(), &pattern("a", "tif", 1..=2, Some(2))).unwrap();
    assert_eq!(names(&two), ["a01.tif", "a02.tif"]);
    let one = Stack::open_pattern(tmp.path(), &pattern("a", "tif", 1..=2, Some(1))).unwrap();
    assert_eq!(names(&one), ["a1.tif", "a2.tif"]);
}

#[test]
fn explicit_pattern_extension_ignores_case_and_a_leading_dot() {
    let tmp = tempfile::tempdir().unwrap();
    slices(tmp.path(), &["b_0001.tif", "b_0002.TIF"]);
    for ext in ["TIF", ".tif", "Tif"] {
        let stack = Stack::open_pattern(tmp.path(), &pattern("b_", ext, 1..=2, None))
            .unwrap_or_else(|e| panic!("{ext}: {e}"));
        assert_eq!(stack.depth(), 2, "{ext}");
    }
}

#[test]
fn explicit_pattern_that_matches_nothing_is_no_images_naming_the_pattern() {
    let tmp = tempfile::tempdir().unwrap();
    slices(tmp.path(), &["a_0001.tif", "a_0002.tif"]);
    let err = Stack::open_pattern(tmp.path(), &pattern("zz_", "png", 5..=8, Some(3))).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(&err, Error::NoImages { dir, .. } if dir == tmp.path()),
        "{err:?}"
    );
    for part in ["zz_", "png", "5", "8", "3"] {
        assert!(text.contains(part), "{text:?} lacks {part}");
    }
}

#[test]
fn explicit_pattern_with_first_after_last_is_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    slices(tmp.path(), &["a_0001.tif"]);
    #[expect(
        clippy::reversed_empty_ranges,
        reason = "the reversed range is the point"
    )]
    let p = pattern("a_", "tif", 5..=2, None);
    let err = Stack::open_pattern(tmp.path(), &p).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains('5') && text.contains('2'), "{text}");
}

#[test]
fn explicit_pattern_on_a_missing_folder_is_stack_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("nope");
    let err = Stack::open_pattern(&missing, &pattern("a", "tif", 0..=1, None)).unwrap_err();
    assert!(matches!(err, Error::StackNotFound { .. }), "{err:?}");
    assert_names(&err, &missing);
}

#[test]
fn duplicate_numbers_are_refused_naming_both_files() {
    let tmp = tempfile::tempdir().unwrap();
    slices(tmp.path(), &["a01.tif", "a1.tif", "a02.tif", "a03.tif"]);
    let err = Stack::open(tmp.path()).unwrap_err();
    match &err {
        Error::DuplicateIndex {
            index,
            first,
            second,
        } => {
            assert_eq!(*index, 1);
            let mut both = [first.clone(), second.clone()];
            both.sort();
            assert_eq!(
                both,
                [tmp.path().join("a01.tif"), tmp.path().join("a1.tif")]
            );
        }
        other => panic!("expected DuplicateIndex, got {other:?}"),
    }
    assert_names(&err, &tmp.path().join("a01.tif"));
    assert_names(&err, &tmp.path().join("a1.tif"));
}

#[test]
fn duplicate_numbers_within_an_explicit_pattern_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    slices(tmp.path(), &["b_7.tif", "b_007.tif", "b_8.tif"]);
    let err = Stack::open_pattern(tmp.path(), &pattern("b_", "tif", 0..=9, None)).unwrap_err();
    assert!(
        matches!(err, Error::DuplicateIndex { index: 7, .. }),
        "{err:?}"
    );
}

#[test]
fn names_with_spaces_and_unicode_work() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("Messung März 2024");
    std::fs::create_dir(&d).unwrap();
    slices(
        &d,
        &["scan ü 0001.tif", "scan ü 0002.tif", "scan ü 0004.tif"],
    );
    let stack = Stack::open(&d).unwrap();
    assert_eq!(stack.prefix(), "scan ü ");
    assert_eq!(
        names(&stack),
        ["scan ü 0001.tif", "scan ü 0002.tif", "scan ü 0004.tif"]
    );
    assert_eq!(stack.gaps(), [3..=3]);
    stack.read_slice(2).unwrap();
    let explicit = Stack::open_pattern(&d, &pattern("scan ü ", "tif", 1..=4, Some(4))).unwrap();
    assert_eq!(explicit.depth(), 3);
}

#[test]
fn unicode_digits_are_not_slice_numbers() {
    // Only ASCII digits count: names ending in Arabic-Indic digits carry no slice number, so
    // these six junk files (more than the real slices) must not form a stack.
    let tmp = tempfile::tempdir().unwrap();
    for d in [
        '\u{661}', '\u{662}', '\u{663}', '\u{664}', '\u{665}', '\u{666}',
    ] {
        write(tmp.path(), &format!("s000{d}.tif"), b"junk");
    }
    slices(tmp.path(), &["s0001.tif", "s0002.tif"]);
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(indices(&stack), [1, 2]);
}

#[test]
fn a_folder_of_ten_thousand_non_images_is_no_images() {
    let tmp = tempfile::tempdir().unwrap();
    // Hard links to one empty file: 10,000 empty regular files, made far faster than by
    // creating each (seconds on some file systems).
    let empty = tempfile::NamedTempFile::new().unwrap();
    for i in 0..10_000 {
        let name = tmp.path().join(format!("entry{i:05}.dat"));
        if std::fs::hard_link(empty.path(), &name).is_err() {
            std::fs::File::create(&name).unwrap();
        }
    }
    let err = Stack::open(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::NoImages { dir, .. } if dir == tmp.path()),
        "{err:?}"
    );
    assert!(err.to_string().contains("10000"), "{err}");
}

#[test]
fn depth_and_files_agree_with_the_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let all: Vec<String> = (0..57).map(|i| format!("img{i}.png")).collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    slices(tmp.path(), &refs);
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(stack.depth(), 57);
    assert_eq!(indices(&stack), (0..57).collect::<Vec<u64>>());
}
