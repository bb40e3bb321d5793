//! A level-0 region reads only the rows it needs from a source file that holds its samples as
//! they are (uncompressed TIFF in strips, either byte order), and the whole slice otherwise
//! (compressed TIFF, PNG): the values are the whole slice's rectangle either way, the source
//! statistics count only what was read, a damaged file is an error naming it, and a cancelled
//! request reads nothing.

mod common;

use std::path::Path;

use common::{Chunks, RawTiff, noise, noise16, png_encoded, tiff_with, write};
use image::ExtendedColorType;
use lodcache::{Cancel, Error, Phantom, Pyramid, Region, SampleType, Slice};
use tiff::encoder::Compression;
use tiff::encoder::colortype as ct;
use tiff::encoder::compression::DeflateLevel;
use tiff::tags::Predictor;

/// A memory-only pyramid of the stack in `dir`.
fn open(dir: &Path) -> Pyramid {
    Pyramid::builder(dir)
        .with_disk_cache(false)
        .build()
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

/// The bytes of `region` of `whole`.
fn rect(whole: &Slice, r: Region) -> Vec<u8> {
    let s = whole.sample_type().bytes();
    let src = whole.pixels().as_bytes();
    let w = whole.width() as usize;
    (r.y..r.y + r.height)
        .flat_map(|y| {
            let start = (y as usize * w + r.x as usize) * s;
            src[start..start + r.width as usize * s].to_vec()
        })
        .collect()
}

/// Rectangles of a `w` x `h` slice: whole, one pixel at each corner, full-width bands, an
/// inner block and a column.
fn regions(w: u32, h: u32) -> Vec<Region> {
    vec![
        Region::new(0, 0, w, h),
        Region::new(0, 0, 1, 1),
        Region::new(w - 1, h - 1, 1, 1),
        Region::new(0, h / 3, w, h / 2),
        Region::new(0, h - 1, w, 1),
        Region::new(w / 4, h / 5, w / 2, h / 3),
        Region::new(w - 1, 0, 1, h),
    ]
}

/// Every region of every slice of `pyr`'s level 0 equals the whole slice's rectangle.
fn assert_regions(what: &str, pyr: &Pyramid) {
    let info = pyr.levels()[0];
    for z in 0..info.depth {
        let whole = pyr.slice(0, z).unwrap();
        for r in regions(info.width, info.height) {
            let got = pyr
                .region(0, z, r)
                .unwrap_or_else(|e| panic!("{what}: slice {z} {r}: {e}"));
            assert_eq!(
                (got.width(), got.height(), got.sample_type()),
                (r.width, r.height, info.sample_type),
                "{what}: slice {z} {r}"
            );
            assert!(
                got.pixels().as_bytes() == rect(&whole, r).as_slice(),
                "{what}: slice {z} region {r} differs from the whole slice's"
            );
        }
    }
}

/// Bytes of source files read for `region` of slice `z` of level 0.
fn bytes_read(pyr: &Pyramid, z: u32, r: Region) -> u64 {
    let before = pyr.stats().source_bytes;
    pyr.region(0, z, r).unwrap();
    pyr.stats().source_bytes - before
}

#[test]
fn plain_tiff_regions_equal_the_whole_slice_in_every_sample_type() {
    for ty in [SampleType::U8, SampleType::U16, SampleType::F32] {
        let tmp = tempfile::tempdir().unwrap();
        if ty == SampleType::F32 {
            // The phantom writes u16 for f32: float TIFFs by the tiff crate, in strips of 4.
            for z in 0..3u64 {
                let data: Vec<f32> = noise(41, 29, 1, 16, 20 + z)
                    .iter()
                    .map(|&s| s as f32 / 7.0 - 1000.0)
                    .collect();
                let bytes = tiff_with::<ct::Gray32Float>(
                    41,
                    29,
                    &data,
                    Compression::Uncompressed,
                    Predictor::None,
                    Some(4),
                );
                write(tmp.path(), &format!("f{z:04}.tif"), &bytes);
            }
        } else {
            Phantom::new(41, 29, 3)
                .with_sample_type(ty)
                .with_seed(7)
                .write(tmp.path())
                .unwrap();
        }
        let pyr = open(tmp.path());
        assert_eq!(pyr.sample_type(), ty);
        assert_regions(&format!("{ty:?} plain TIFF"), &pyr);
        // Read by rows: two rows cost two rows.
        let two_rows = bytes_read(&pyr, 1, Region::new(5, 7, 3, 2));
        assert_eq!(two_rows, 2 * 41 * ty.bytes() as u64, "{ty:?}");
    }
}

#[test]
fn big_endian_strips_are_swapped_like_the_whole_slice() {
    let (w, h) = (23, 17);
    let tmp = tempfile::tempdir().unwrap();
    for z in 0..2u64 {
        let samples = noise(w, h, 1, 16, 11 + z);
        let bytes = RawTiff::gray(true, w, h, 16, Chunks::Strips(4)).encode(&samples);
        write(tmp.path(), &format!("s{z:04}.tif"), &bytes);
    }
    let pyr = open(tmp.path());
    assert_regions("big-endian 16-bit TIFF", &pyr);
    // Read by rows (so swapped by the row reader, not by the whole-slice decoder).
    assert_eq!(
        bytes_read(&pyr, 0, Region::new(0, 3, 5, 1)),
        u64::from(w) * 2
    );
    // And against the samples written, not only against the whole-slice decoder.
    let samples = &noise(w, h, 1, 16, 12);
    let got = pyr.region(0, 1, Region::new(3, 5, 7, 4)).unwrap();
    let want: Vec<u16> = (5..9)
        .flat_map(|y| (3..10).map(move |x| samples[(y * w + x) as usize] as u16))
        .collect();
    assert_eq!(
        got.pixels().as_bytes(),
        bytemuck::cast_slice::<u16, u8>(&want)
    );
}

#[test]
fn compressed_tiff_and_png_fall_back_to_the_whole_slice() {
    let (w, h) = (37, 23);
    let deflate = tempfile::tempdir().unwrap();
    for z in 0..2 {
        let data = noise16(w, h, 3 + z);
        let bytes = tiff_with::<ct::Gray16>(
            w,
            h,
            &data,
            Compression::Deflate(DeflateLevel::Fast),
            Predictor::Horizontal,
            Some(5),
        );
        write(deflate.path(), &format!("s{z:04}.tif"), &bytes);
    }
    let pyr = open(deflate.path());
    assert_regions("deflate TIFF", &pyr);
    // The fallback decodes the whole file: it is counted whole.
    let before = pyr.stats();
    pyr.region(0, 0, Region::new(1, 1, 2, 2)).unwrap();
    let file_len = std::fs::metadata(deflate.path().join("s0000.tif"))
        .unwrap()
        .len();
    assert_eq!(pyr.stats().source_bytes - before.source_bytes, file_len);

    let png = tempfile::tempdir().unwrap();
    for z in 0..2u64 {
        let data: Vec<u8> = noise(w, h, 1, 8, 5 + z).iter().map(|&s| s as u8).collect();
        let bytes = png_encoded(w, h, &data, ExtendedColorType::L8);
        write(png.path(), &format!("s{z:04}.png"), &bytes);
    }
    assert_regions("PNG", &open(png.path()));
}

#[test]
fn a_small_region_of_a_plain_tiff_reads_a_small_part_of_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    Phantom::new(512, 512, 2)
        .with_sample_type(SampleType::U16)
        .write(tmp.path())
        .unwrap();
    let file_len = std::fs::metadata(tmp.path().join(Phantom::file_name(1)))
        .unwrap()
        .len();
    let pyr = open(tmp.path());
    let before = pyr.stats();
    let r = Region::new(100, 200, 64, 16);
    let got = pyr.region(0, 1, r).unwrap();
    let after = pyr.stats();
    let read = after.source_bytes - before.source_bytes;
    // 16 rows of 512 16-bit samples: 16 KiB of a 512 KiB file.
    assert_eq!(
        read,
        16 * 512 * 2,
        "bytes read for {r} of a {file_len}-byte file"
    );
    assert!(read * 20 < file_len);
    assert_eq!(after.source_slices - before.source_slices, 1);
    assert_eq!(after.requests[0] - before.requests[0], 1);
    // Same values as the whole slice.
    assert!(got.pixels().as_bytes() == rect(&pyr.slice(0, 1).unwrap(), r).as_slice());
}

#[test]
fn a_truncated_plain_tiff_is_an_error_naming_the_file() {
    let (w, h) = (16, 12);
    let tmp = tempfile::tempdir().unwrap();
    let raw = RawTiff::gray(false, w, h, 16, Chunks::Strips(2));
    write(tmp.path(), "s0000.tif", &raw.encode(&noise(w, h, 1, 16, 1)));
    let bytes = raw.encode(&noise(w, h, 1, 16, 2));
    // Half of the rows are gone.
    let cut = write(
        tmp.path(),
        "s0001.tif",
        &bytes[..bytes.len() - (w * h) as usize],
    );
    let pyr = open(tmp.path());
    // Rows still in the file as well as rows past its end: the file is damaged either way.
    for r in [Region::new(0, 0, w, 1), Region::new(2, h - 2, 3, 2)] {
        let e = pyr.region(0, 1, r).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("s0001.tif"), "{r}: {text}");
        assert!(!matches!(e, Error::InvalidArgument { .. }), "{r}: {e:?}");
    }
    // The intact slice still reads.
    assert_regions_of_slice0(&pyr);
    assert!(cut.exists());
}

fn assert_regions_of_slice0(pyr: &Pyramid) {
    let whole = pyr.slice(0, 0).unwrap();
    let r = Region::new(1, 3, 5, 4);
    assert!(pyr.region(0, 0, r).unwrap().pixels().as_bytes() == rect(&whole, r).as_slice());
}

#[test]
fn a_cancelled_region_reads_nothing_and_out_of_range_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    Phantom::new(20, 10, 2).write(tmp.path()).unwrap();
    let pyr = open(tmp.path());
    let cancel = Cancel::new();
    cancel.cancel();
    let before = pyr.stats();
    let e = pyr
        .request()
        .with_cancel(&cancel)
        .region(0, 0, Region::new(0, 0, 4, 4))
        .unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e:?}");
    assert_eq!(pyr.stats().source_bytes, before.source_bytes);
    for (z, r) in [(2, Region::new(0, 0, 1, 1)), (0, Region::new(0, 9, 1, 2))] {
        let e = pyr.region(0, z, r).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    }
}

#[test]
fn source_rows_read_only_their_rows_of_a_plain_file_and_nothing_of_a_compressed_one() {
    let (w, h) = (64, 48);
    let tmp = tempfile::tempdir().unwrap();
    Phantom::new(w, h, 3)
        .with_sample_type(SampleType::U16)
        .write(tmp.path())
        .unwrap();
    let pyr = open(tmp.path());
    let whole = pyr.slice(0, 2).unwrap();
    let before = pyr.stats();
    let band = pyr
        .source_rows(2, 10, 5)
        .unwrap()
        .expect("a plain TIFF reads by rows");
    let after = pyr.stats();
    assert_eq!((band.width(), band.height()), (w, 5));
    assert!(band.pixels().as_bytes() == rect(&whole, Region::new(0, 10, w, 5)).as_slice());
    // Counted as a region: one request, one source slice, the rows' bytes.
    assert_eq!(
        after.source_bytes - before.source_bytes,
        5 * u64::from(w) * 2
    );
    assert_eq!(after.source_slices - before.source_slices, 1);
    assert_eq!(after.requests[0] - before.requests[0], 1);
    // Rows outside the slice, an empty band or a slice out of range are the caller's mistake.
    for (z, y, n) in [(0, 44, 5), (0, 0, 0), (3, 0, 1)] {
        let e = pyr.source_rows(z, y, n).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { .. }), "{e:?}");
    }
    // Cancelled: nothing read.
    let cancel = Cancel::new();
    cancel.cancel();
    let before = pyr.stats();
    let e = pyr
        .request()
        .with_cancel(&cancel)
        .source_rows(0, 0, 1)
        .unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e:?}");
    assert_eq!(pyr.stats().source_bytes, before.source_bytes);

    // A deflate TIFF and a PNG must be decoded whole: None, nothing read or counted.
    let deflate = tempfile::tempdir().unwrap();
    let data = noise16(w, h, 9);
    let bytes = tiff_with::<ct::Gray16>(
        w,
        h,
        &data,
        Compression::Deflate(DeflateLevel::Fast),
        Predictor::None,
        Some(8),
    );
    write(deflate.path(), "s0000.tif", &bytes);
    let png = tempfile::tempdir().unwrap();
    let data: Vec<u8> = noise(w, h, 1, 8, 4).iter().map(|&s| s as u8).collect();
    write(
        png.path(),
        "s0000.png",
        &png_encoded(w, h, &data, ExtendedColorType::L8),
    );
    for dir in [deflate.path(), png.path()] {
        let pyr = open(dir);
        let before = pyr.stats();
        assert!(
            pyr.source_rows(0, 3, 4).unwrap().is_none(),
            "{}",
            dir.display()
        );
        let after = pyr.stats();
        assert_eq!(after.source_bytes, before.source_bytes);
        assert_eq!(after.source_slices, before.source_slices);
        assert_eq!(after.requests, before.requests);
    }
}
