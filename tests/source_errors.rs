//! What goes wrong with a stack folder is reported as the right error, naming the file and the
//! values involved, and damaged files never panic or allocate what their header claims.

mod common;

use std::path::Path;

use common::{
    Chunks, RawTiff, assert_names, assert_size_mismatch, bmp_claiming, bmp_indexed, gray_palette,
    noise, noise8, noise16, png_claiming, png_encoded, tiff_plain, tiff_with, tiff8, tiff16, write,
};
use image::ExtendedColorType;
use lodcache::{Error, SampleType, Slice, Stack};
use proptest::prelude::*;
use tiff::encoder::Compression;
use tiff::encoder::colortype as ct;
use tiff::tags::Predictor;

/// A folder with valid 8 x 6 16-bit slices `s0001.tif` .. `s000<n>.tif`.
fn stack_dir(n: u32) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for z in 1..=n {
        write(
            tmp.path(),
            &format!("s{z:04}.tif"),
            &tiff16(8, 6, &noise16(8, 6, u64::from(z))),
        );
    }
    tmp
}

/// Asserts that reading `path` as slice `z` of the stack in its folder fails with a decoding
/// error naming it, whether the failure comes at open (first slice) or at read.
#[track_caller]
fn assert_decode_error(dir: &Path, z: u32, path: &Path, what: &str) {
    let err = match Stack::open(dir) {
        Err(e) => e,
        Ok(stack) => match stack.read_slice(z) {
            Err(e) => e,
            Ok(_) => panic!("{what}: {} decoded", path.display()),
        },
    };
    assert!(
        matches!(&err, Error::Decode { path: p, .. } if p == path),
        "{what}: expected a decoding error for {}, got {err:?}",
        path.display()
    );
    assert_names(&err, path);
}

// ---------------------------------------------------------------------------------------------
// The folder
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_folder_is_stack_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no such scan");
    let err = Stack::open(&missing).unwrap_err();
    assert!(
        matches!(&err, Error::StackNotFound { path } if *path == missing),
        "{err:?}"
    );
    assert_names(&err, &missing);
}

#[test]
fn a_file_instead_of_a_folder_is_stack_not_found() {
    let tmp = tempfile::tempdir().unwrap();
    // A TIFF file is the stack of its pages (tests/multipage_tiff.rs); any other file is not
    // a stack.
    let tif = write(tmp.path(), "s0001.tif", &tiff8(2, 2, &[1, 2, 3, 4]));
    assert_eq!(Stack::open(&tif).unwrap().depth(), 1);
    let file = write(tmp.path(), "notes.txt", b"not a stack");
    let err = Stack::open(&file).unwrap_err();
    assert!(
        matches!(&err, Error::StackNotFound { path } if *path == file),
        "{err:?}"
    );
    assert_names(&err, &file);
}

/// Asserts a NoImages error for `dir` whose text says what was looked for.
#[track_caller]
fn assert_no_images(err: &Error, dir: &Path) {
    assert!(
        matches!(err, Error::NoImages { dir: d, .. } if d == dir),
        "{err:?}"
    );
    assert_names(err, dir);
    let text = err.to_string().to_lowercase();
    for ext in ["tif", "tiff", "bmp", "png", "jpg", "jpeg"] {
        assert!(text.contains(ext), "{text:?} does not mention {ext}");
    }
    assert!(
        text.contains("digits"),
        "{text:?} does not describe the names"
    );
}

#[test]
fn empty_folder_is_no_images_listing_what_was_looked_for() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Stack::open(tmp.path()).unwrap_err();
    assert_no_images(&err, tmp.path());
}

#[test]
fn folder_of_only_notes_is_no_images_listing_what_was_looked_for() {
    let tmp = tempfile::tempdir().unwrap();
    for name in [
        "notes.txt",
        "run.log",
        "Thumbs.db",
        "scan_spr.bmp",
        ".hidden0001.tif",
    ] {
        write(tmp.path(), name, b"not a slice");
    }
    std::fs::create_dir(tmp.path().join("s0001.tif")).unwrap();
    let err = Stack::open(tmp.path()).unwrap_err();
    assert_no_images(&err, tmp.path());
    // Says how much else was there, so a user sees the folder was not empty.
    assert!(err.to_string().contains("6 other"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Slices that disagree with the first one
// ---------------------------------------------------------------------------------------------

#[test]
fn slice_of_another_size_is_size_mismatch_naming_file_and_both_sizes() {
    let tmp = stack_dir(3);
    let odd = write(tmp.path(), "s0002.tif", &tiff16(9, 6, &noise16(9, 6, 9)));
    let stack = Stack::open(tmp.path()).unwrap();
    stack.read_slice(0).unwrap();
    stack.read_slice(2).unwrap();
    let err = stack.read_slice(1).unwrap_err();
    assert_size_mismatch("slice 1", &err, &odd, (8, 6), (9, 6));

    // The same through a reader, after a good slice filled its buffer.
    let mut reader = stack.reader();
    let mut slice = Slice::zeroed(0, 0, SampleType::U16);
    reader.read_into(0, &mut slice).unwrap();
    let err = reader.read_into(1, &mut slice).unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. }), "{err:?}");
    reader.read_into(2, &mut slice).unwrap();
}

#[test]
fn slice_of_another_height_in_another_format_is_size_mismatch() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "s0001.png",
        &png_encoded(8, 6, &noise8(8, 6, 1), ExtendedColorType::L8),
    );
    let odd = write(
        tmp.path(),
        "s0002.png",
        &png_encoded(8, 7, &noise8(8, 7, 2), ExtendedColorType::L8),
    );
    let stack = Stack::open(tmp.path()).unwrap();
    let err = stack.read_slice(1).unwrap_err();
    assert!(
        matches!(&err, Error::SizeMismatch { path, found_h: 7, expected_h: 6, .. } if *path == odd),
        "{err:?}"
    );
    assert!(err.to_string().contains("8 x 7"), "{err}");
}

#[test]
fn eight_bit_slice_in_a_sixteen_bit_stack_is_sample_type_mismatch() {
    let tmp = stack_dir(3);
    let odd = write(tmp.path(), "s0003.tif", &tiff8(8, 6, &noise8(8, 6, 3)));
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(stack.info().sample_type, SampleType::U16);
    let err = stack.read_slice(2).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::SampleTypeMismatch { path, expected: SampleType::U16, found: SampleType::U8 }
                if *path == odd
        ),
        "{err:?}"
    );
    assert_names(&err, &odd);
    let text = err.to_string();
    assert!(text.contains("u8") && text.contains("u16"), "{text}");
}

#[test]
fn float_slice_in_a_sixteen_bit_stack_is_sample_type_mismatch() {
    let tmp = stack_dir(2);
    let odd = write(
        tmp.path(),
        "s0002.tif",
        &tiff_plain::<ct::Gray32Float>(8, 6, &[0.5; 48]),
    );
    let err = Stack::open(tmp.path()).unwrap().read_slice(1).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::SampleTypeMismatch {
                found: SampleType::F32,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(&err, &odd);
}

#[test]
fn rgb_slice_of_the_same_depth_fits_a_gray_stack() {
    // RGB becomes gray of the same depth, so it is no mismatch.
    let tmp = stack_dir(2);
    let rgb: Vec<u16> = noise(8, 6, 3, 16, 4).iter().map(|&s| s as u16).collect();
    write(
        tmp.path(),
        "s0002.tif",
        &tiff_plain::<ct::RGB16>(8, 6, &rgb),
    );
    let slice = Stack::open(tmp.path()).unwrap().read_slice(1).unwrap();
    assert_eq!(slice.sample_type(), SampleType::U16);
}

// ---------------------------------------------------------------------------------------------
// Damaged and unsupported files
// ---------------------------------------------------------------------------------------------

#[test]
fn truncated_tiff_is_a_decode_error_naming_the_file() {
    // The tiff crate's file: header, pixels, then the IFD.
    let full = tiff16(8, 6, &noise16(8, 6, 5));
    let len = full.len();
    for cut in [
        1,
        2,
        3,
        4,
        6,
        8,
        9,
        20,
        8 + 96,
        8 + 96 + 5,
        len / 2,
        len - 20,
        len - 8,
    ] {
        for z in [0, 1] {
            let tmp = stack_dir(2);
            let path = tmp.path().join(format!("s{:04}.tif", z + 1));
            std::fs::write(&path, &full[..cut]).unwrap();
            assert_decode_error(tmp.path(), z, &path, &format!("cut at {cut} of {len}"));
        }
    }
}

#[test]
fn tiff_cut_within_its_pixels_is_a_decode_error_naming_the_file() {
    // The hand-written file puts the IFD first, so these cuts leave a whole header and lose
    // pixels only: the open succeeds and the read must fail.
    for chunks in [Chunks::Strips(2), Chunks::Tiles(16, 16)] {
        let raw = RawTiff::gray(true, 8, 6, 16, chunks);
        let full = raw.encode(&noise(8, 6, 1, 16, 6));
        let len = full.len();
        // Bytes of pixel data, and where the last byte that lies inside the image ends (a
        // tile's padding past the image edge is not needed, so cutting it may go unnoticed).
        let (pixels, needed) = match chunks {
            Chunks::Strips(_) => (8 * 6 * 2, 8 * 6 * 2),
            Chunks::Tiles(..) => (16 * 16 * 2, 5 * 16 * 2 + 8 * 2),
        };
        let header = len - pixels;
        for cut in [
            10,
            30,
            header - 1,
            header,
            header + 1,
            header + needed / 2,
            header + needed - 1,
        ] {
            let tmp = stack_dir(2);
            let path = tmp.path().join("s0002.tif");
            std::fs::write(&path, &full[..cut]).unwrap();
            assert_decode_error(
                tmp.path(),
                1,
                &path,
                &format!("{chunks:?} cut at {cut} of {len}"),
            );
        }
    }
}

#[test]
fn compressed_tiff_cut_short_is_a_decode_error() {
    let data = noise16(32, 16, 7);
    for (compression, what) in [
        (Compression::Lzw, "lzw"),
        (Compression::Deflate(Default::default()), "deflate"),
        (Compression::Packbits, "packbits"),
    ] {
        let full = tiff_with::<ct::Gray16>(32, 16, &data, compression, Predictor::None, Some(4));
        for cut in [full.len() / 3, full.len() / 2] {
            let tmp = tempfile::tempdir().unwrap();
            let path = write(tmp.path(), "s0001.tif", &full[..cut]);
            assert_decode_error(tmp.path(), 0, &path, &format!("{what} cut at {cut}"));
        }
    }
}

#[test]
fn garbage_named_tif_is_a_decode_error_naming_the_file() {
    let tmp = stack_dir(2);
    let path = write(
        tmp.path(),
        "s0002.tif",
        b"this is a text file that somebody named like a slice\n",
    );
    assert_decode_error(tmp.path(), 1, &path, "text as the second slice");

    let tmp = tempfile::tempdir().unwrap();
    let junk: Vec<u8> = noise(64, 1, 1, 8, 8).iter().map(|&b| b as u8).collect();
    let path = write(tmp.path(), "s0001.tif", &junk);
    assert_decode_error(tmp.path(), 0, &path, "random bytes as the first slice");
}

#[test]
fn files_that_only_start_like_an_image_are_decode_errors() {
    for (name, head) in [
        ("s0001.tif", &b"II*\0"[..]),
        ("s0001.tif", b"MM\0*\0\0\0\x08"),
        ("s0001.png", b"\x89PNG\r\n\x1a\n"),
        ("s0001.bmp", b"BM"),
        ("s0001.jpg", b"\xFF\xD8\xFF\xE0"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), name, head);
        assert_decode_error(tmp.path(), 0, &path, name);
    }
}

#[test]
fn zero_length_file_is_a_decode_error_naming_the_file() {
    // As the first slice: the open fails.
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "s0001.tif", b"");
    let err = Stack::open(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::Decode { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert_names(&err, &path);
    // As a later slice: that read fails, the others do not.
    let tmp = stack_dir(3);
    let path = write(tmp.path(), "s0002.tif", b"");
    let stack = Stack::open(tmp.path()).unwrap();
    stack.read_slice(0).unwrap();
    stack.read_slice(2).unwrap();
    assert_decode_error(tmp.path(), 1, &path, "empty second slice");
}

#[test]
fn truncated_png_is_a_decode_error_naming_the_file() {
    let full = png_encoded(24, 16, &noise8(24, 16, 9), ExtendedColorType::L8);
    let len = full.len();
    for cut in [1, 4, 8, 12, 20, 33, 40, len / 2, len * 3 / 4] {
        let tmp = tempfile::tempdir().unwrap();
        write(
            tmp.path(),
            "s0001.png",
            &png_encoded(24, 16, &noise8(24, 16, 1), ExtendedColorType::L8),
        );
        let path = write(tmp.path(), "s0002.png", &full[..cut]);
        assert_decode_error(tmp.path(), 1, &path, &format!("cut at {cut} of {len}"));
    }
}

#[test]
fn truncated_bmp_is_a_decode_error_naming_the_file() {
    let full = bmp_indexed(24, 16, 8, &noise8(24, 16, 10), &gray_palette(), false);
    let len = full.len();
    for cut in [2, 10, 30, 54, 54 + 512, len - 24 * 8, len - 1] {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "s0001.bmp", &full[..cut]);
        assert_decode_error(tmp.path(), 0, &path, &format!("cut at {cut} of {len}"));
    }
}

#[test]
fn unsupported_tiff_sample_layouts_are_refused_naming_the_file() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("signed 16-bit", tiff_plain::<ct::GrayI16>(4, 4, &[-3; 16])),
        ("unsigned 32-bit", tiff_plain::<ct::Gray32>(4, 4, &[7; 16])),
        (
            "64-bit float",
            tiff_plain::<ct::Gray64Float>(4, 4, &[0.5; 16]),
        ),
        ("float RGB", tiff_plain::<ct::RGB32Float>(4, 4, &[0.5; 48])),
        ("CMYK", tiff_plain::<ct::CMYK8>(4, 4, &[9; 64])),
    ];
    for (what, bytes) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "s0001.tif", &bytes);
        let err = Stack::open(tmp.path()).unwrap_err();
        assert!(
            matches!(&err, Error::Unsupported { path: p, .. } if *p == path),
            "{what}: {err:?}"
        );
        assert_names(&err, &path);
    }
}

#[test]
fn planar_tiles_with_a_partial_bottom_row_are_unsupported_not_a_panic() {
    // tiff 0.11 overruns its buffer (an assertion panics) on these; lodcache refuses them.
    for spp in [2u16, 3, 4] {
        for (w, h) in [(37, 23), (8, 8), (16, 40)] {
            let raw = RawTiff {
                samples_per_pixel: spp,
                planar: true,
                ..RawTiff::gray(false, w, h, 8, Chunks::Tiles(16, 16))
            };
            let tmp = tempfile::tempdir().unwrap();
            let path = write(
                tmp.path(),
                "s0001.tif",
                &raw.encode(&noise(w, h, u32::from(spp), 8, 1)),
            );
            let err = Stack::open(tmp.path()).unwrap_err();
            assert!(
                matches!(&err, Error::Unsupported { path: p, .. } if *p == path),
                "{spp} planes, {w} x {h}: {err:?}"
            );
            assert_names(&err, &path);
        }
    }
}

#[test]
fn a_slice_removed_after_opening_is_an_io_error_naming_it() {
    let tmp = stack_dir(3);
    let stack = Stack::open(tmp.path()).unwrap();
    let gone = tmp.path().join("s0002.tif");
    std::fs::remove_file(&gone).unwrap();
    let err = stack.read_slice(1).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if *path == gone),
        "{err:?}"
    );
    assert_names(&err, &gone);
}

// ---------------------------------------------------------------------------------------------
// Absurd sizes
// ---------------------------------------------------------------------------------------------

/// Asserts that a tiny file claiming a huge image is refused (as too large, or as damaged)
/// naming it; the test process would run out of memory if it were allocated.
#[track_caller]
fn assert_refused(err: &Error, path: &Path, what: &str) {
    assert!(
        matches!(err, Error::TooLarge { path: p, .. } | Error::Decode { path: p, .. } if p == path),
        "{what}: {err:?}"
    );
    assert_names(err, path);
}

#[test]
fn tiff_claiming_a_million_by_a_million_pixels_is_refused_without_allocating() {
    for bits in [8u16, 16] {
        let raw = RawTiff::gray(false, 1_000_000, 1_000_000, bits, Chunks::Strips(1));
        let bytes = raw.header_only(16);
        assert!(bytes.len() < 300);
        // Alone: the open fails.
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), "s0001.tif", &bytes);
        let err = Stack::open(tmp.path()).unwrap_err();
        assert_refused(&err, &path, &format!("{bits}-bit first slice"));
        // After a good slice: that read fails.
        let tmp = stack_dir(2);
        let path = write(tmp.path(), "s0002.tif", &bytes);
        let err = Stack::open(tmp.path()).unwrap().read_slice(1).unwrap_err();
        assert_refused(&err, &path, &format!("{bits}-bit second slice"));
    }
}

#[test]
fn uncompressed_tiff_shorter_than_its_samples_is_refused_before_allocating() {
    // 60000 x 60000 8-bit is under the 4 GiB limit, so only the file length can tell: the
    // samples would be 3.6 GB but the file is a few hundred bytes. Opened as the first slice,
    // the stack's size matches, so the read gets as far as the length check.
    let raw = RawTiff::gray(false, 60_000, 60_000, 8, Chunks::Strips(1));
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "s0001.tif", &raw.header_only(16));
    let stack = Stack::open(tmp.path()).unwrap();
    let err = stack.read_slice(0).unwrap_err();
    assert!(
        matches!(&err, Error::Decode { path: p, .. } if *p == path),
        "{err:?}"
    );
    assert!(err.to_string().contains("truncated"), "{err}");
    assert_names(&err, &path);
}

#[test]
fn tiff_just_over_the_default_limit_is_too_large() {
    // 65536 x 32769 16-bit samples: 4 GiB + 128 KiB, just above the default 4 GiB limit.
    let raw = RawTiff::gray(true, 65536, 32769, 16, Chunks::Strips(1));
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), "s0001.tif", &raw.header_only(16));
    let err = Stack::open(tmp.path()).unwrap_err();
    assert!(
        matches!(&err, Error::TooLarge { path: p, width: 65536, height: 32769, .. } if *p == path),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn png_and_bmp_claiming_huge_sizes_are_refused_without_allocating() {
    let cases: [(&str, Vec<u8>); 3] = [
        ("s0001.png", png_claiming(1_000_000, 1_000_000, 8, 0)),
        ("s0001.bmp", bmp_claiming(1_000_000, 1_000_000, 24)),
        ("s0001.bmp", bmp_claiming(1_000_000, -1_000_000, 24)),
    ];
    for (name, bytes) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let path = write(tmp.path(), name, &bytes);
        let err = Stack::open(tmp.path()).unwrap_err();
        assert_refused(&err, &path, name);
    }
}

#[test]
fn the_slice_size_limit_is_enforced_at_its_boundary() {
    // 8 x 6 16-bit = 96 bytes per slice.
    let tmp = stack_dir(1);
    let path = tmp.path().join("s0001.tif");
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(stack.max_slice_bytes(), 4 << 30);
    stack
        .clone()
        .with_max_slice_bytes(96)
        .read_slice(0)
        .unwrap();
    let small = stack.with_max_slice_bytes(95);
    assert_eq!(small.max_slice_bytes(), 95);
    let err = small.read_slice(0).unwrap_err();
    assert!(
        matches!(&err, Error::TooLarge { path: p, width: 8, height: 6, limit: 95 } if *p == path),
        "{err:?}"
    );
    assert_names(&err, &path);
    assert!(err.to_string().contains("95"), "{err}");
}

#[test]
fn the_slice_size_limit_applies_to_png_and_bmp_too() {
    let tmp = tempfile::tempdir().unwrap();
    let png = write(
        tmp.path(),
        "a0001.png",
        &png_encoded(8, 6, &noise8(8, 6, 1), ExtendedColorType::L8),
    );
    let err = Stack::open(tmp.path())
        .unwrap()
        .with_max_slice_bytes(47)
        .read_slice(0)
        .unwrap_err();
    assert!(
        matches!(&err, Error::TooLarge { path, .. } if *path == png),
        "{err:?}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let bmp = write(
        tmp.path(),
        "a0001.bmp",
        &bmp_indexed(8, 6, 8, &noise8(8, 6, 1), &gray_palette(), false),
    );
    let stack = Stack::open(tmp.path()).unwrap();
    stack
        .clone()
        .with_max_slice_bytes(48)
        .read_slice(0)
        .unwrap();
    let err = stack.with_max_slice_bytes(47).read_slice(0).unwrap_err();
    assert!(
        matches!(&err, Error::TooLarge { path, .. } if *path == bmp),
        "{err:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Requests
// ---------------------------------------------------------------------------------------------

#[test]
fn slice_index_out_of_range_is_invalid_argument_naming_the_value() {
    let tmp = stack_dir(3);
    let stack = Stack::open(tmp.path()).unwrap();
    for z in [3u32, 7, u32::MAX] {
        let err = stack.read_slice(z).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains(&z.to_string()), "{text}");
        let mut slice = Slice::zeroed(1, 1, SampleType::U8);
        let err = stack.reader().read_into(z, &mut slice).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
    }
    stack.read_slice(2).unwrap();
}

// ---------------------------------------------------------------------------------------------
// Damage never panics
// ---------------------------------------------------------------------------------------------

/// Small valid files to damage: TIFFs from the encoder (plain, LZW with predictor, deflate
/// float) and by hand (big-endian tiles, planar RGB tiles), PNGs (8-bit gray, 16-bit RGB), BMPs
/// (8-bit palette, 4-bit palette, RLE8, 24-bit) and a JPEG.
fn damage_bases() -> Vec<Vec<u8>> {
    let g16 = noise16(12, 9, 11);
    let g8 = noise8(12, 9, 12);
    let rgb: Vec<u8> = noise(12, 9, 3, 8, 13).iter().map(|&s| s as u8).collect();
    let rgb16: Vec<u16> = noise(12, 9, 3, 16, 13).iter().map(|&s| s as u16).collect();
    let palette: Vec<[u8; 3]> = rgb
        .chunks_exact(3)
        .take(16)
        .map(|c| [c[0], c[1], c[2]])
        .collect();
    let nibbles: Vec<u8> = g8.iter().map(|&i| i & 15).collect();
    let planar = RawTiff {
        samples_per_pixel: 3,
        planar: true,
        ..RawTiff::gray(false, 12, 16, 8, Chunks::Tiles(16, 16))
    };
    vec![
        tiff16(12, 9, &g16),
        tiff_with::<ct::Gray16>(
            12,
            9,
            &g16,
            Compression::Lzw,
            Predictor::Horizontal,
            Some(4),
        ),
        tiff_with::<ct::Gray32Float>(
            12,
            9,
            &common::floats(12, 9, 1),
            Compression::Deflate(Default::default()),
            Predictor::None,
            Some(3),
        ),
        RawTiff::gray(true, 12, 9, 16, Chunks::Tiles(16, 16)).encode(&noise(12, 9, 1, 16, 14)),
        planar.encode(&noise(12, 16, 3, 8, 15)),
        png_encoded(12, 9, &g8, ExtendedColorType::L8),
        png_encoded(12, 9, &common::ne_bytes(&rgb16), ExtendedColorType::Rgb16),
        bmp_indexed(12, 9, 8, &g8, &gray_palette(), false),
        bmp_indexed(12, 9, 4, &nibbles, &palette, true),
        common::bmp_rle(12, 9, 8, &nibbles, &palette),
        common::bmp_encoded(12, 9, &rgb, ExtendedColorType::Rgb8),
        common::jpeg_encoded(12, 9, &g8, ExtendedColorType::L8, 90),
    ]
}

/// Random truncations and byte flips of small valid files of every format: any result is
/// fine, a panic is not, and an error names the file. The format is told by content, so every
/// damaged file is written under the same name, in one folder, for speed. Reads are capped at
/// 1 MiB so that a flipped size field cannot make the test allocate gigabytes.
/// `PROPTEST_CASES` raises the number of cases for a deeper search.
#[test]
fn truncated_or_flipped_files_never_panic() {
    use proptest::test_runner::{Config, TestRunner};

    let bases = damage_bases();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("s0001.tif");
    let cases = match std::env::var_os("PROPTEST_CASES") {
        Some(_) => Config::default().cases,
        None => 1000,
    };
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        0..bases.len(),
        any::<prop::sample::Index>(),
        prop::collection::vec((any::<prop::sample::Index>(), 1u8..=255), 0..5),
    );
    let result = runner.run(&strategy, |(base, cut, flips)| {
        let full = &bases[base];
        // Odd flip counts keep the whole file, so flips alone are tried too.
        let mut bytes = if flips.len() % 2 == 1 {
            full.clone()
        } else {
            full[..=cut.index(full.len())].to_vec()
        };
        let len = bytes.len();
        for (at, xor) in &flips {
            bytes[at.index(len)] ^= xor;
        }
        std::fs::write(&path, &bytes).unwrap();
        let outcome = Stack::open(tmp.path())
            .map(|s| s.with_max_slice_bytes(1 << 20))
            .and_then(|s| s.read_slice(0));
        if let Err(err) = outcome {
            let text = err.to_string();
            prop_assert!(text.contains(&path.display().to_string()), "{}", text);
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}
