//! Every slice format and layout decodes to exactly the samples that were written: TIFF (all
//! compressions, both byte orders, strips and tiles, chunky and planar, 8/16-bit, float, RGB
//! and RGBA), BMP (palette and true colour), PNG and JPEG.

mod common;

use common::{
    Chunks, RawTiff, assert_samples, bmp_encoded, bmp_indexed, gray_palette, jpeg_encoded, luma,
    luma_of, ne_bytes, noise, noise8, noise16, png_encoded, smooth8, tiff_plain, tiff_with, tiff8,
    tiff16, u8s, u16s, write,
};
use image::ExtendedColorType;
use lodcache::{Pixels, SampleType, Slice, SliceInfo, Stack};
use tiff::encoder::Compression;
use tiff::encoder::colortype as ct;
use tiff::encoder::compression::DeflateLevel;
use tiff::tags::Predictor;

/// Odd sizes everywhere: a swapped width and height, a wrong stride or a dropped edge shows.
const W: u32 = 37;
const H: u32 = 23;

/// Opens a one-slice stack holding `bytes` as `name`, checks that the stack's info agrees with
/// the decoded slice and with `w`, `h` and `ty`, and returns the slice.
fn decode(name: &str, bytes: &[u8], w: u32, h: u32, ty: SampleType) -> Slice {
    let tmp = tempfile::tempdir().unwrap();
    write(tmp.path(), name, bytes);
    let stack = Stack::open(tmp.path()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let expected = SliceInfo {
        width: w,
        height: h,
        sample_type: ty,
    };
    assert_eq!(stack.info(), expected, "{name}: stack info");
    let slice = stack
        .read_slice(0)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        (slice.width(), slice.height(), slice.sample_type()),
        (w, h, ty),
        "{name}: slice"
    );
    assert_eq!(slice.pixels().len(), (w * h) as usize);
    slice
}

fn wide(v: &[u8]) -> Vec<u64> {
    v.iter().map(|&s| u64::from(s)).collect()
}

fn wide16(v: &[u16]) -> Vec<u64> {
    v.iter().map(|&s| u64::from(s)).collect()
}

fn compressions() -> [(Compression, Predictor, &'static str); 6] {
    [
        (Compression::Uncompressed, Predictor::None, "uncompressed"),
        (Compression::Lzw, Predictor::None, "lzw"),
        (Compression::Lzw, Predictor::Horizontal, "lzw+predictor"),
        (
            Compression::Deflate(DeflateLevel::Fast),
            Predictor::None,
            "deflate",
        ),
        (
            Compression::Deflate(DeflateLevel::Fast),
            Predictor::Horizontal,
            "deflate+predictor",
        ),
        (Compression::Packbits, Predictor::None, "packbits"),
    ]
}

// ---------------------------------------------------------------------------------------------
// TIFF through the tiff crate's encoder
// ---------------------------------------------------------------------------------------------

#[test]
fn gray8_tiff_is_read_exactly_in_every_compression() {
    let data = noise8(W, H, 1);
    for (compression, predictor, what) in compressions() {
        // Strips of 5 rows: several strips, the last one short.
        let bytes = tiff_with::<ct::Gray8>(W, H, &data, compression, predictor, Some(5));
        let slice = decode("s0001.tif", &bytes, W, H, SampleType::U8);
        assert_samples(&u8s(&slice), &wide(&data), what);
    }
}

#[test]
fn gray16_tiff_is_read_exactly_in_every_compression() {
    let data = noise16(W, H, 2);
    for (compression, predictor, what) in compressions() {
        let bytes = tiff_with::<ct::Gray16>(W, H, &data, compression, predictor, Some(4));
        let slice = decode("s0001.tif", &bytes, W, H, SampleType::U16);
        assert_samples(&u16s(&slice), &wide16(&data), what);
    }
}

#[test]
fn gray16_tiff_keeps_values_above_255() {
    // Never converted to 8 bits: 256 and 65535 must survive.
    let data: Vec<u16> = (0..W * H).map(|i| (i * 1000 + 256) as u16).collect();
    let slice = decode("s0001.tif", &tiff16(W, H, &data), W, H, SampleType::U16);
    assert_eq!(slice.samples::<u16>().unwrap(), &data[..]);
}

#[test]
fn single_row_and_single_column_tiffs_are_read() {
    for (w, h) in [(1, 1), (1, 9), (9, 1)] {
        let data = noise16(w, h, 3);
        let slice = decode("s0001.tif", &tiff16(w, h, &data), w, h, SampleType::U16);
        assert_eq!(slice.samples::<u16>().unwrap(), &data[..], "{w} x {h}");
    }
}

#[test]
fn bigtiff_is_read_exactly() {
    let data = noise16(W, H, 62);
    let mut buf = std::io::Cursor::new(Vec::new());
    tiff::encoder::TiffEncoder::new_big(&mut buf)
        .unwrap()
        .write_image::<ct::Gray16>(W, H, &data)
        .unwrap();
    let bytes = buf.into_inner();
    assert_eq!(&bytes[..4], b"II\x2b\0", "a BigTIFF header");
    let slice = decode("s0001.tif", &bytes, W, H, SampleType::U16);
    assert_samples(&u16s(&slice), &wide16(&data), "bigtiff");
}

#[test]
fn float_tiff_is_preserved_as_f32_bit_for_bit() {
    let data = common::floats(W, H, 4);
    for (compression, predictor, what) in [
        (Compression::Uncompressed, Predictor::None, "uncompressed"),
        (Compression::Lzw, Predictor::None, "lzw"),
        (
            Compression::Deflate(DeflateLevel::Fast),
            Predictor::None,
            "deflate",
        ),
    ] {
        let bytes = tiff_with::<ct::Gray32Float>(W, H, &data, compression, predictor, Some(6));
        let slice = decode("s0001.tif", &bytes, W, H, SampleType::F32);
        let found = slice.samples::<f32>().expect("f32 samples");
        for (i, (a, b)) in found.iter().zip(&data).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "{what}: sample {i}: {a} vs {b}");
        }
    }
}

#[test]
fn rgb8_tiff_becomes_bt709_luma() {
    let rgb = noise(W, H, 3, 8, 5);
    let data: Vec<u8> = rgb.iter().map(|&s| s as u8).collect();
    for (compression, predictor, what) in [
        (Compression::Uncompressed, Predictor::None, "uncompressed"),
        (Compression::Lzw, Predictor::Horizontal, "lzw+predictor"),
    ] {
        let bytes = tiff_with::<ct::RGB8>(W, H, &data, compression, predictor, Some(7));
        let slice = decode("s0001.tif", &bytes, W, H, SampleType::U8);
        assert_samples(&u8s(&slice), &luma_of(&rgb, 3), what);
    }
}

#[test]
fn rgb16_tiff_becomes_bt709_luma_of_16_bits() {
    let rgb = noise(W, H, 3, 16, 6);
    let data: Vec<u16> = rgb.iter().map(|&s| s as u16).collect();
    let bytes = tiff_plain::<ct::RGB16>(W, H, &data);
    let slice = decode("s0001.tif", &bytes, W, H, SampleType::U16);
    assert_samples(&u16s(&slice), &luma_of(&rgb, 3), "rgb16");
}

#[test]
fn rgba_tiff_becomes_luma_ignoring_alpha() {
    let rgba = noise(W, H, 4, 8, 7);
    let data: Vec<u8> = rgba.iter().map(|&s| s as u8).collect();
    let slice = decode(
        "s0001.tif",
        &tiff_plain::<ct::RGBA8>(W, H, &data),
        W,
        H,
        SampleType::U8,
    );
    assert_samples(&u8s(&slice), &luma_of(&rgba, 4), "rgba8");

    let rgba = noise(W, H, 4, 16, 8);
    let data: Vec<u16> = rgba.iter().map(|&s| s as u16).collect();
    let slice = decode(
        "s0001.tif",
        &tiff_plain::<ct::RGBA16>(W, H, &data),
        W,
        H,
        SampleType::U16,
    );
    assert_samples(&u16s(&slice), &luma_of(&rgba, 4), "rgba16");
}

#[test]
fn gray_stored_as_rgb_tiff_comes_out_exactly_gray() {
    let gray = noise8(W, H, 9);
    let rgb: Vec<u8> = gray.iter().flat_map(|&g| [g, g, g]).collect();
    let slice = decode(
        "s0001.tif",
        &tiff_plain::<ct::RGB8>(W, H, &rgb),
        W,
        H,
        SampleType::U8,
    );
    assert_samples(&u8s(&slice), &wide(&gray), "rgb8");

    let gray = noise16(W, H, 10);
    let rgba: Vec<u16> = gray.iter().flat_map(|&g| [g, g, g, 0x1234]).collect();
    let slice = decode(
        "s0001.tif",
        &tiff_plain::<ct::RGBA16>(W, H, &rgba),
        W,
        H,
        SampleType::U16,
    );
    assert_samples(&u16s(&slice), &wide16(&gray), "rgba16");
}

#[test]
fn luma_rounds_half_up_on_exact_halves() {
    // 0.7152 * 14 + 0.0722 * 76 = 15.5 and 0.7152 * 41 + 0.0722 * 44 = 32.5 exactly: both
    // round up. 0.7152 * 5 + 0.0722 * 179 = 16.4998: rounds down.
    let rgb: Vec<u8> = [[0u8, 14, 76], [0, 41, 44], [0, 5, 179], [255, 255, 255]]
        .into_iter()
        .cycle()
        .take(8)
        .flatten()
        .collect();
    let slice = decode(
        "s0001.tif",
        &tiff_plain::<ct::RGB8>(4, 2, &rgb),
        4,
        2,
        SampleType::U8,
    );
    assert_eq!(u8s(&slice), [16, 33, 16, 255, 16, 33, 16, 255]);
}

// ---------------------------------------------------------------------------------------------
// Hand-written TIFF: byte order, tiles, planes
// ---------------------------------------------------------------------------------------------

#[test]
fn big_endian_strip_tiff_is_read_exactly() {
    for bits in [8u16, 16] {
        let samples = noise(W, H, 1, u32::from(bits), 11);
        let raw = RawTiff::gray(true, W, H, bits, Chunks::Strips(5));
        let ty = if bits == 8 {
            SampleType::U8
        } else {
            SampleType::U16
        };
        let slice = decode("s0001.tif", &raw.encode(&samples), W, H, ty);
        let found = if bits == 8 { u8s(&slice) } else { u16s(&slice) };
        assert_samples(&found, &samples, &format!("big-endian {bits}-bit"));
    }
}

#[test]
fn hand_written_little_endian_strips_agree_with_the_writer() {
    // Guards the hand-written writer itself: the same image in both byte orders.
    let samples = noise(W, H, 1, 16, 12);
    let le = RawTiff::gray(false, W, H, 16, Chunks::Strips(H)).encode(&samples);
    let be = RawTiff::gray(true, W, H, 16, Chunks::Strips(H)).encode(&samples);
    assert_ne!(le, be);
    let a = decode("s0001.tif", &le, W, H, SampleType::U16);
    let b = decode("s0001.tif", &be, W, H, SampleType::U16);
    assert_samples(&u16s(&a), &samples, "little-endian");
    assert_eq!(a, b);
}

#[test]
fn big_endian_float_tiff_is_preserved() {
    let data = common::floats(W, H, 13);
    let samples: Vec<u64> = data.iter().map(|f| u64::from(f.to_bits())).collect();
    let raw = RawTiff {
        sample_format: 3,
        ..RawTiff::gray(true, W, H, 32, Chunks::Strips(3))
    };
    let slice = decode("s0001.tif", &raw.encode(&samples), W, H, SampleType::F32);
    let found: Vec<u64> = slice
        .samples::<f32>()
        .unwrap()
        .iter()
        .map(|f| u64::from(f.to_bits()))
        .collect();
    assert_samples(&found, &samples, "big-endian f32");
}

#[test]
fn tiled_tiff_with_partial_edge_tiles_is_read_exactly() {
    // 37 x 23 in 16 x 16 tiles: 3 x 2 tiles, the right and bottom ones mostly padding (junk).
    for big_endian in [false, true] {
        for bits in [8u16, 16] {
            for tile in [(16, 16), (32, 16), (16, 32)] {
                let samples = noise(W, H, 1, u32::from(bits), 14);
                let raw = RawTiff::gray(big_endian, W, H, bits, Chunks::Tiles(tile.0, tile.1));
                let ty = if bits == 8 {
                    SampleType::U8
                } else {
                    SampleType::U16
                };
                let slice = decode("s0001.tif", &raw.encode(&samples), W, H, ty);
                let found = if bits == 8 { u8s(&slice) } else { u16s(&slice) };
                let what = format!("tiles {tile:?}, {bits}-bit, big-endian {big_endian}");
                assert_samples(&found, &samples, &what);
            }
        }
    }
}

#[test]
fn tiled_float_tiff_is_preserved() {
    let data = common::floats(W, H, 15);
    let samples: Vec<u64> = data.iter().map(|f| u64::from(f.to_bits())).collect();
    let raw = RawTiff {
        sample_format: 3,
        ..RawTiff::gray(false, W, H, 32, Chunks::Tiles(16, 16))
    };
    let slice = decode("s0001.tif", &raw.encode(&samples), W, H, SampleType::F32);
    let found: Vec<u64> = slice
        .samples::<f32>()
        .unwrap()
        .iter()
        .map(|f| u64::from(f.to_bits()))
        .collect();
    assert_samples(&found, &samples, "tiled f32");
}

#[test]
fn planar_rgb_tiff_becomes_luma() {
    // Strips with a short last strip; tiles with a partial right column. (Planar tiles with a
    // partial bottom row are refused: see source_errors.)
    for bits in [8u16, 16] {
        for (h, chunks) in [(H, Chunks::Strips(6)), (32, Chunks::Tiles(16, 16))] {
            for big_endian in [false, true] {
                let samples = noise(W, h, 3, u32::from(bits), 16);
                let raw = RawTiff {
                    samples_per_pixel: 3,
                    planar: true,
                    ..RawTiff::gray(big_endian, W, h, bits, chunks)
                };
                let ty = if bits == 8 {
                    SampleType::U8
                } else {
                    SampleType::U16
                };
                let slice = decode("s0001.tif", &raw.encode(&samples), W, h, ty);
                let found = if bits == 8 { u8s(&slice) } else { u16s(&slice) };
                let what = format!("planar {bits}-bit {chunks:?} big-endian {big_endian}");
                assert_samples(&found, &luma_of(&samples, 3), &what);
            }
        }
    }
}

#[test]
fn planar_rgba_and_gray_alpha_tiffs_keep_colour_and_drop_alpha() {
    for spp in [2u16, 4] {
        for chunks in [Chunks::Strips(5), Chunks::Tiles(16, 16)] {
            let h = 32;
            let samples = noise(W, h, u32::from(spp), 16, 61);
            let raw = RawTiff {
                samples_per_pixel: spp,
                planar: true,
                ..RawTiff::gray(false, W, h, 16, chunks)
            };
            let slice = decode("s0001.tif", &raw.encode(&samples), W, h, SampleType::U16);
            let expected: Vec<u64> = if spp == 2 {
                samples.iter().step_by(2).copied().collect()
            } else {
                luma_of(&samples, 4)
            };
            assert_samples(
                &u16s(&slice),
                &expected,
                &format!("{spp} planes {chunks:?}"),
            );
        }
    }
}

#[test]
fn interleaved_rgb_in_big_endian_tiles_becomes_luma() {
    let samples = noise(W, H, 3, 16, 17);
    let raw = RawTiff {
        samples_per_pixel: 3,
        ..RawTiff::gray(true, W, H, 16, Chunks::Tiles(16, 16))
    };
    let slice = decode("s0001.tif", &raw.encode(&samples), W, H, SampleType::U16);
    assert_samples(&u16s(&slice), &luma_of(&samples, 3), "tiled rgb16");
}

#[test]
fn gray_with_alpha_tiff_keeps_the_gray_channel() {
    for bits in [8u16, 16] {
        let samples = noise(W, H, 2, u32::from(bits), 18);
        let raw = RawTiff {
            samples_per_pixel: 2,
            ..RawTiff::gray(false, W, H, bits, Chunks::Strips(8))
        };
        let ty = if bits == 8 {
            SampleType::U8
        } else {
            SampleType::U16
        };
        let slice = decode("s0001.tif", &raw.encode(&samples), W, H, ty);
        let found = if bits == 8 { u8s(&slice) } else { u16s(&slice) };
        let gray: Vec<u64> = samples.iter().step_by(2).copied().collect();
        assert_samples(&found, &gray, &format!("gray+alpha {bits}-bit"));
    }
}

#[test]
fn white_is_zero_tiff_is_read_as_black_is_zero() {
    for bits in [8u16, 16] {
        let samples = noise(W, H, 1, u32::from(bits), 19);
        let raw = RawTiff {
            white_is_zero: true,
            ..RawTiff::gray(false, W, H, bits, Chunks::Strips(8))
        };
        let max = (1u64 << bits) - 1;
        let ty = if bits == 8 {
            SampleType::U8
        } else {
            SampleType::U16
        };
        let slice = decode("s0001.tif", &raw.encode(&samples), W, H, ty);
        let found = if bits == 8 { u8s(&slice) } else { u16s(&slice) };
        let expected: Vec<u64> = samples.iter().map(|&v| max - v).collect();
        assert_samples(&found, &expected, &format!("white-is-zero {bits}-bit"));
    }
}

// ---------------------------------------------------------------------------------------------
// BMP
// ---------------------------------------------------------------------------------------------

#[test]
fn gray_ramp_palette_bmp_is_read_exactly() {
    // 37 pixels wide: rows are padded to 40 bytes with junk that must not leak.
    let data = noise8(W, H, 19);
    for top_down in [false, true] {
        let bytes = bmp_indexed(W, H, 8, &data, &gray_palette(), top_down);
        let slice = decode("s0001.bmp", &bytes, W, H, SampleType::U8);
        assert_samples(&u8s(&slice), &wide(&data), &format!("top-down {top_down}"));
    }
}

#[test]
fn colour_palette_bmp_is_mapped_through_luma() {
    // A palette of random colours: each index must become the luma of its colour.
    let colours = noise(256, 1, 3, 8, 20);
    let palette: Vec<[u8; 3]> = colours
        .chunks_exact(3)
        .map(|c| [c[0] as u8, c[1] as u8, c[2] as u8])
        .collect();
    let data = noise8(W, H, 21);
    let expected: Vec<u64> = data
        .iter()
        .map(|&i| {
            let [r, g, b] = palette[usize::from(i)];
            luma(r.into(), g.into(), b.into())
        })
        .collect();
    for top_down in [false, true] {
        let bytes = bmp_indexed(W, H, 8, &data, &palette, top_down);
        let slice = decode("s0001.bmp", &bytes, W, H, SampleType::U8);
        assert_samples(&u8s(&slice), &expected, &format!("top-down {top_down}"));
    }
}

#[test]
fn inverted_gray_palette_bmp_is_not_taken_for_identity() {
    let palette: Vec<[u8; 3]> = (0..=255u8).map(|i| [255 - i, 255 - i, 255 - i]).collect();
    let data = noise8(W, H, 22);
    let bytes = bmp_indexed(W, H, 8, &data, &palette, false);
    let slice = decode("s0001.bmp", &bytes, W, H, SampleType::U8);
    let expected: Vec<u64> = data.iter().map(|&i| u64::from(255 - i)).collect();
    assert_samples(&u8s(&slice), &expected, "inverted palette");
}

#[test]
fn short_palette_bmp_is_read() {
    // 100 gray entries (biClrUsed = 100): indices stay below 100.
    let palette: Vec<[u8; 3]> = (0..100u8).map(|i| [i, i, i]).collect();
    let data: Vec<u8> = noise8(W, H, 23).iter().map(|&i| i % 100).collect();
    let slice = decode(
        "s0001.bmp",
        &bmp_indexed(W, H, 8, &data, &palette, false),
        W,
        H,
        SampleType::U8,
    );
    assert_samples(&u8s(&slice), &wide(&data), "100-entry palette");
}

#[test]
fn packed_palette_bmps_of_1_2_and_4_bits_are_read() {
    // Several pixels per byte; widths where the packed row is shorter than the pixel count (a
    // decoder copying bytes as indices would fail or return packed bytes).
    for bits in [1u16, 2, 4] {
        let colours = 1u32 << bits;
        let step = 255 / (colours - 1);
        let palette: Vec<[u8; 3]> = (0..colours)
            .map(|i| {
                let v = (i * step) as u8;
                [v, v, v]
            })
            .collect();
        for w in [4, W] {
            let data: Vec<u8> = noise8(w, H, 24)
                .iter()
                .map(|&i| i % colours as u8)
                .collect();
            let slice = decode(
                "s0001.bmp",
                &bmp_indexed(w, H, bits, &data, &palette, false),
                w,
                H,
                SampleType::U8,
            );
            let expected: Vec<u64> = data
                .iter()
                .map(|&i| u64::from(i) * u64::from(step))
                .collect();
            assert_samples(&u8s(&slice), &expected, &format!("{bits}-bit, {w} wide"));
        }
    }
}

#[test]
fn run_length_encoded_palette_bmps_are_read() {
    let colours = noise(16, 1, 3, 8, 60);
    let palette: Vec<[u8; 3]> = colours
        .chunks_exact(3)
        .map(|c| [c[0] as u8, c[1] as u8, c[2] as u8])
        .collect();
    // Runs of a few equal pixels.
    let data: Vec<u8> = (0..H)
        .flat_map(|y| (0..W).map(move |x| ((x / 5 + y * 3) % 16) as u8))
        .collect();
    let expected: Vec<u64> = data
        .iter()
        .map(|&i| {
            let [r, g, b] = palette[usize::from(i)];
            luma(r.into(), g.into(), b.into())
        })
        .collect();
    for bits in [8u16, 4] {
        let bytes = common::bmp_rle(W, H, bits, &data, &palette);
        let slice = decode("s0001.bmp", &bytes, W, H, SampleType::U8);
        assert_samples(&u8s(&slice), &expected, &format!("RLE{bits}"));
    }
}

#[test]
fn gray_bmp_from_image_encoder_is_read_exactly() {
    let data = noise8(W, H, 25);
    let bytes = bmp_encoded(W, H, &data, ExtendedColorType::L8);
    let slice = decode("s0001.bmp", &bytes, W, H, SampleType::U8);
    assert_samples(&u8s(&slice), &wide(&data), "L8 bmp");
}

#[test]
fn rgb24_bmp_becomes_luma() {
    let rgb = noise(W, H, 3, 8, 26);
    let data: Vec<u8> = rgb.iter().map(|&s| s as u8).collect();
    let bytes = bmp_encoded(W, H, &data, ExtendedColorType::Rgb8);
    let slice = decode("s0001.bmp", &bytes, W, H, SampleType::U8);
    assert_samples(&u8s(&slice), &luma_of(&rgb, 3), "24-bit bmp");
}

#[test]
fn gray_stored_as_rgb24_bmp_comes_out_exactly_gray() {
    let gray = noise8(W, H, 27);
    let rgb: Vec<u8> = gray.iter().flat_map(|&g| [g, g, g]).collect();
    let bytes = bmp_encoded(W, H, &rgb, ExtendedColorType::Rgb8);
    let slice = decode("s0001.bmp", &bytes, W, H, SampleType::U8);
    assert_samples(&u8s(&slice), &wide(&gray), "gray as 24-bit bmp");
}

#[test]
fn rgba32_bmp_becomes_luma() {
    let rgba = noise(W, H, 4, 8, 28);
    let data: Vec<u8> = rgba.iter().map(|&s| s as u8).collect();
    let bytes = bmp_encoded(W, H, &data, ExtendedColorType::Rgba8);
    let slice = decode("s0001.bmp", &bytes, W, H, SampleType::U8);
    assert_samples(&u8s(&slice), &luma_of(&rgba, 4), "32-bit bmp");
}

// ---------------------------------------------------------------------------------------------
// PNG and JPEG
// ---------------------------------------------------------------------------------------------

#[test]
fn gray8_png_is_read_exactly() {
    let data = noise8(W, H, 29);
    let bytes = png_encoded(W, H, &data, ExtendedColorType::L8);
    let slice = decode("s0001.png", &bytes, W, H, SampleType::U8);
    assert_samples(&u8s(&slice), &wide(&data), "L8 png");
}

#[test]
fn gray16_png_is_read_exactly() {
    let data = noise16(W, H, 30);
    let bytes = png_encoded(W, H, &ne_bytes(&data), ExtendedColorType::L16);
    let slice = decode("s0001.png", &bytes, W, H, SampleType::U16);
    assert_samples(&u16s(&slice), &wide16(&data), "L16 png");
}

#[test]
fn rgb_png_becomes_luma() {
    let rgb = noise(W, H, 3, 8, 31);
    let data: Vec<u8> = rgb.iter().map(|&s| s as u8).collect();
    let slice = decode(
        "s0001.png",
        &png_encoded(W, H, &data, ExtendedColorType::Rgb8),
        W,
        H,
        SampleType::U8,
    );
    assert_samples(&u8s(&slice), &luma_of(&rgb, 3), "rgb8 png");

    let rgb = noise(W, H, 3, 16, 32);
    let data: Vec<u16> = rgb.iter().map(|&s| s as u16).collect();
    let slice = decode(
        "s0001.png",
        &png_encoded(W, H, &ne_bytes(&data), ExtendedColorType::Rgb16),
        W,
        H,
        SampleType::U16,
    );
    assert_samples(&u16s(&slice), &luma_of(&rgb, 3), "rgb16 png");
}

#[test]
fn rgba_png_becomes_luma_ignoring_alpha() {
    let rgba = noise(W, H, 4, 8, 33);
    let data: Vec<u8> = rgba.iter().map(|&s| s as u8).collect();
    let slice = decode(
        "s0001.png",
        &png_encoded(W, H, &data, ExtendedColorType::Rgba8),
        W,
        H,
        SampleType::U8,
    );
    assert_samples(&u8s(&slice), &luma_of(&rgba, 4), "rgba8 png");
}

#[test]
fn gray_with_alpha_png_keeps_the_gray_channel() {
    let la = noise(W, H, 2, 16, 34);
    let data: Vec<u16> = la.iter().map(|&s| s as u16).collect();
    let slice = decode(
        "s0001.png",
        &png_encoded(W, H, &ne_bytes(&data), ExtendedColorType::La16),
        W,
        H,
        SampleType::U16,
    );
    let gray: Vec<u64> = la.iter().step_by(2).copied().collect();
    assert_samples(&u16s(&slice), &gray, "la16 png");
}

#[test]
fn gray_stored_as_rgb_png_comes_out_exactly_gray() {
    let gray = noise16(W, H, 35);
    let rgb: Vec<u16> = gray.iter().flat_map(|&g| [g, g, g]).collect();
    let slice = decode(
        "s0001.png",
        &png_encoded(W, H, &ne_bytes(&rgb), ExtendedColorType::Rgb16),
        W,
        H,
        SampleType::U16,
    );
    assert_samples(&u16s(&slice), &wide16(&gray), "gray as rgb16 png");
}

/// Mean and largest absolute difference.
fn closeness(found: &[u64], expected: &[u8]) -> (f64, u64) {
    let diffs: Vec<u64> = found
        .iter()
        .zip(expected)
        .map(|(&a, &b)| a.abs_diff(u64::from(b)))
        .collect();
    let mean = diffs.iter().sum::<u64>() as f64 / diffs.len() as f64;
    (mean, diffs.into_iter().max().unwrap_or(0))
}

#[test]
fn gray_jpeg_is_read_as_8_bit_gray_close_to_the_original() {
    let (w, h) = (64, 48);
    let data = smooth8(w, h);
    let bytes = jpeg_encoded(w, h, &data, ExtendedColorType::L8, 95);
    let slice = decode("s0001.jpg", &bytes, w, h, SampleType::U8);
    let (mean, max) = closeness(&u8s(&slice), &data);
    assert!(mean < 1.5 && max <= 8, "mean {mean}, max {max}");
}

#[test]
fn colour_jpeg_of_gray_content_is_read_as_gray_close_to_the_original() {
    let (w, h) = (64, 48);
    let data = smooth8(w, h);
    let rgb: Vec<u8> = data.iter().flat_map(|&g| [g, g, g]).collect();
    let bytes = jpeg_encoded(w, h, &rgb, ExtendedColorType::Rgb8, 95);
    let slice = decode("s0001.jpeg", &bytes, w, h, SampleType::U8);
    let (mean, max) = closeness(&u8s(&slice), &data);
    assert!(mean < 1.5 && max <= 8, "mean {mean}, max {max}");
}

// ---------------------------------------------------------------------------------------------
// Stacks of several slices
// ---------------------------------------------------------------------------------------------

#[test]
fn format_is_told_by_content_not_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let a = noise8(W, H, 36);
    let b = noise8(W, H, 37);
    let c = noise8(W, H, 38);
    // A PNG, a BMP and a TIFF, all named .tif.
    write(
        tmp.path(),
        "s0001.tif",
        &png_encoded(W, H, &a, ExtendedColorType::L8),
    );
    write(
        tmp.path(),
        "s0002.tif",
        &bmp_indexed(W, H, 8, &b, &gray_palette(), false),
    );
    write(tmp.path(), "s0003.tif", &tiff8(W, H, &c));
    let stack = Stack::open(tmp.path()).unwrap();
    for (z, data) in [a, b, c].iter().enumerate() {
        let slice = stack.read_slice(z as u32).unwrap();
        assert_samples(&u8s(&slice), &wide(data), &format!("slice {z}"));
    }
}

#[test]
fn reader_reuses_its_output_buffer_across_slices() {
    let tmp = tempfile::tempdir().unwrap();
    let data: Vec<Vec<u16>> = (0..4).map(|z| noise16(W, H, 40 + z)).collect();
    for (z, d) in data.iter().enumerate() {
        write(tmp.path(), &format!("s{z:04}.tif"), &tiff16(W, H, d));
    }
    let stack = Stack::open(tmp.path()).unwrap();
    let mut reader = stack.reader();
    // Start from a buffer of another size and type: it must be reshaped, not trusted.
    let mut slice = Slice::zeroed(3, 2, SampleType::U8);
    let mut read = 0;
    for (z, d) in data.iter().enumerate().rev() {
        reader.read_into(z as u32, &mut slice).unwrap();
        assert_eq!((slice.width(), slice.height()), (W, H));
        assert_samples(&u16s(&slice), &wide16(d), &format!("slice {z}"));
        assert!(reader.bytes_read() > read, "bytes_read grows");
        read = reader.bytes_read();
    }
    assert!(matches!(slice.into_pixels(), Pixels::U16(_)));
}

#[test]
fn every_slice_of_a_mixed_compression_stack_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let data: Vec<Vec<u16>> = (0..6).map(|z| noise16(W, H, 50 + z)).collect();
    for ((z, d), (compression, predictor, _)) in data.iter().enumerate().zip(compressions()) {
        let bytes = tiff_with::<ct::Gray16>(W, H, d, compression, predictor, None);
        write(tmp.path(), &format!("s{z:04}.tif"), &bytes);
    }
    let stack = Stack::open(tmp.path()).unwrap();
    assert_eq!(stack.depth(), 6);
    for (z, d) in data.iter().enumerate() {
        let slice = stack.read_slice(z as u32).unwrap();
        assert_samples(&u16s(&slice), &wide16(d), &format!("slice {z}"));
    }
}
