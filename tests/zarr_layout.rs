//! The Zarr / precomputed layout: level maths, every metadata document field by field (as the
//! OME-NGFF 0.4 / OME-Zarr 0.5, Zarr v2 / v3 and Neuroglancer precomputed specifications give
//! them), chunk bytes against a naive reference (whole padded chunks in C order, precomputed
//! chunks cut at the edge with x fastest), and every compressor decoded by an independent
//! decoder.

mod common;
mod zarr_support;

use common::Rng;
use lodcache::zarr::{ChunkShape, Compression, Node, PrecomputedNode, Window, ZarrLayout};
use lodcache::{LevelInfo, Pixels, SampleType, Slice, VoxelSize};
use serde_json::json;

fn levels(w: u32, h: u32, d: u32, ty: SampleType, n: usize) -> Vec<LevelInfo> {
    let mut l = vec![LevelInfo {
        level: 0,
        width: w,
        height: h,
        depth: d,
        sample_type: ty,
    }];
    while l.len() < n {
        let next = l[l.len() - 1].next();
        l.push(next);
    }
    l
}

fn layout(compression: Compression) -> ZarrLayout {
    ZarrLayout::new(
        &levels(1000, 700, 9, SampleType::U16, 3),
        ChunkShape::new(4, 512, 512),
        compression,
    )
    .unwrap()
}

#[test]
fn level_maths() {
    let z = layout(Compression::None);
    let l = z.levels();
    assert_eq!(l[0].shape(), [9, 700, 1000]);
    assert_eq!(l[2].shape(), [3, 175, 250]);
    // Chunks are cut to the level's shape.
    assert_eq!(l[2].chunk, ChunkShape::new(3, 175, 250));
    assert_eq!(l[0].grid(), [3, 2, 2]);
    assert_eq!(
        l[0].chunk_ranges([2, 1, 1]).unwrap(),
        [8..9, 512..700, 512..1000]
    );
    assert_eq!(l[0].chunk_ranges([3, 0, 0]), None);
    assert_eq!(l[0].chunk_slices(1), Some(4..8));
    // Scales and translations in level-0 voxels without a voxel size ...
    assert_eq!(z.scale(0), [1.0; 3]);
    assert_eq!(z.translation(0), [0.0; 3]);
    assert_eq!(z.scale(3), [8.0; 3]);
    assert_eq!(z.translation(3), [3.5; 3]);
    // ... in micrometres with one (z, y, x order).
    let z = z.with_voxel_size(Some(VoxelSize::user([2.0, 3.0, 5.0]).unwrap()));
    assert_eq!(z.scale(2), [20.0, 12.0, 8.0]);
    assert_eq!(z.translation(2), [7.5, 4.5, 3.0]);
    // Bad shapes are refused.
    let ls = levels(10, 10, 2, SampleType::U16, 1);
    assert!(ZarrLayout::new(&ls, ChunkShape::new(0, 1, 1), Compression::None).is_err());
    let e = ZarrLayout::new(&ls, ChunkShape::new(1024, 1024, 1024), Compression::None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("limit"), "{e}");
    let z = ZarrLayout::new(&ls, ChunkShape::new(1, 4, 4), Compression::None).unwrap();
    assert!(z.clone().with_shards(ChunkShape::new(0, 4, 4)).is_err());
    assert!(z.with_shards(ChunkShape::new(2, 6, 4)).is_err());
    let e = ZarrLayout::new(&ls, ChunkShape::new(1, 4, 4), Compression::Zstd(99))
        .unwrap_err()
        .to_string();
    assert!(e.contains("zstd level") && e.contains("99"), "{e}");
    assert!(ChunkShape::parse("64,64,64").is_ok());
    for bad in ["64,64", "0,1,1", "a,b,c", "1,2,3,4", ""] {
        assert!(ChunkShape::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn zarr_v2_documents() {
    let z = layout(Compression::BloscLz4)
        .with_voxel_size(Some(VoxelSize::user([2.0, 2.0, 2.0]).unwrap()))
        .with_window(Some(Window {
            start: 100.0,
            end: 5000.0,
        }))
        .with_name("scan");
    assert_eq!(z.zgroup(), json!({"zarr_format": 2}));
    assert_eq!(
        z.zarray(1).unwrap(),
        json!({
            "zarr_format": 2,
            "shape": [5, 350, 500],
            "chunks": [4, 350, 500],
            "dtype": "<u2",
            "compressor": {"id": "blosc", "cname": "lz4", "clevel": 5, "shuffle": 1, "blocksize": 0},
            "fill_value": 0,
            "order": "C",
            "filters": null,
            "dimension_separator": "/",
        })
    );
    let a = z.zattrs();
    let ms = &a["multiscales"][0];
    assert_eq!(ms["version"], "0.4");
    assert_eq!(ms["name"], "scan");
    assert_eq!(ms["type"], "mean");
    assert_eq!(
        ms["axes"],
        json!([
            {"name": "z", "type": "space", "unit": "micrometer"},
            {"name": "y", "type": "space", "unit": "micrometer"},
            {"name": "x", "type": "space", "unit": "micrometer"},
        ])
    );
    assert_eq!(
        ms["datasets"][1],
        json!({"path": "1", "coordinateTransformations": [
            {"type": "scale", "scale": [4.0, 4.0, 4.0]},
            {"type": "translation", "translation": [1.0, 1.0, 1.0]},
        ]})
    );
    assert_eq!(ms["datasets"].as_array().unwrap().len(), 3);
    let o = &a["omero"];
    assert_eq!(o["version"], "0.4");
    assert_eq!(
        o["channels"][0]["window"],
        json!({"min": 0.0, "max": 65535.0, "start": 100.0, "end": 5000.0})
    );
    assert_eq!(o["channels"][0]["color"], "FFFFFF");
    assert_eq!(o["rdefs"]["model"], "greyscale");
    // Without voxel size or window: no unit, no omero.
    let plain = layout(Compression::zstd());
    assert_eq!(
        plain.zattrs()["multiscales"][0]["axes"][0],
        json!({"name": "z", "type": "space"})
    );
    assert!(plain.zattrs().get("omero").is_none());
    assert_eq!(
        plain.zarray(0).unwrap()["compressor"],
        json!({"id": "zstd", "level": 1})
    );
    assert_eq!(
        layout(Compression::None).zarray(0).unwrap()["compressor"],
        json!(null)
    );
    // u8: no shuffle, dtype |u1.
    let u8 = ZarrLayout::new(
        &levels(10, 10, 2, SampleType::U8, 1),
        ChunkShape::default(),
        Compression::BloscLz4,
    )
    .unwrap();
    assert_eq!(u8.zarray(0).unwrap()["dtype"], "|u1");
    assert_eq!(u8.zarray(0).unwrap()["compressor"]["shuffle"], 0);
    assert!(z.zarray(3).is_err());
}

#[test]
fn zarr_v3_documents() {
    let z = layout(Compression::zstd()).with_window(Some(Window {
        start: 1.0,
        end: 2.0,
    }));
    let g = z.group_json();
    assert_eq!(g["zarr_format"], 3);
    assert_eq!(g["node_type"], "group");
    let ome = &g["attributes"]["ome"];
    assert_eq!(ome["version"], "0.5");
    // 0.5 keeps the version in ome.version only.
    assert!(ome["multiscales"][0].get("version").is_none());
    assert!(ome["omero"].get("version").is_none());
    assert_eq!(ome["multiscales"][0]["datasets"][2]["path"], "2");
    assert_eq!(
        z.array_json(2).unwrap(),
        json!({
            "zarr_format": 3,
            "node_type": "array",
            "shape": [3, 175, 250],
            "data_type": "uint16",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [3, 175, 250]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": 0,
            "codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "zstd", "configuration": {"level": 1, "checksum": false}},
            ],
            "attributes": {},
            "dimension_names": ["z", "y", "x"],
        })
    );
    let blosc = layout(Compression::BloscLz4).array_json(0).unwrap();
    assert_eq!(
        blosc["codecs"][1],
        json!({"name": "blosc", "configuration": {
            "cname": "lz4", "clevel": 5, "shuffle": "shuffle", "typesize": 2, "blocksize": 0}})
    );
    let sharded = layout(Compression::None)
        .with_shards(ChunkShape::new(8, 1024, 1024))
        .unwrap();
    let a = sharded.array_json(0).unwrap();
    assert_eq!(
        a["chunk_grid"]["configuration"]["chunk_shape"],
        json!([8, 1024, 1024])
    );
    assert_eq!(
        a["codecs"],
        json!([{"name": "sharding_indexed", "configuration": {
            "chunk_shape": [4, 512, 512],
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "index_codecs": [
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "crc32c"},
            ],
            "index_location": "end",
        }}])
    );
    // Shards of a level smaller than a shard are cut to its chunk grid.
    assert_eq!(
        sharded.levels()[2].file_chunk(),
        ChunkShape::new(3, 175, 250)
    );
    assert_eq!(sharded.levels()[0].file_grid(), [2, 1, 1]);
}

#[test]
fn precomputed_info() {
    let z =
        layout(Compression::None).with_voxel_size(Some(VoxelSize::user([2.0, 3.0, 5.0]).unwrap()));
    let info = z.precomputed_info();
    assert_eq!(info["@type"], "neuroglancer_multiscale_volume");
    assert_eq!(info["type"], "image");
    assert_eq!(info["data_type"], "uint16");
    assert_eq!(info["num_channels"], 1);
    assert_eq!(
        info["scales"][1],
        json!({
            "key": "s1",
            "size": [500, 350, 5],
            "resolution": [4000.0, 6000.0, 10000.0],
            "voxel_offset": [0, 0, 0],
            "chunk_sizes": [[500, 350, 4]],
            "encoding": "raw",
        })
    );
    // Unknown voxel size: 1 nm per level-0 voxel.
    assert_eq!(
        layout(Compression::None).precomputed_info()["scales"][2]["resolution"],
        json!([4.0, 4.0, 4.0])
    );
    assert!(matches!(
        z.resolve_precomputed("info"),
        Some(PrecomputedNode::Info(_))
    ));
    assert!(matches!(z.resolve_v2(".zattrs"), Some(Node::Json(_))));
}

#[test]
fn window_is_the_half_percent_percentiles() {
    let v: Vec<u16> = (0..1000).collect();
    let w = Window::of_volume(&Pixels::U16(v)).unwrap();
    assert_eq!((w.start, w.end), (5.0, 994.0));
    let v: Vec<u8> = vec![7; 10];
    let w = Window::of_volume(&Pixels::U8(v)).unwrap();
    assert_eq!((w.start, w.end), (7.0, 7.0));
    let f: Vec<f32> = (0..201).map(|i| i as f32 / 2.0).collect();
    let w = Window::of_volume(&Pixels::F32(f)).unwrap();
    assert_eq!((w.start, w.end), (0.5, 99.5));
    assert!(Window::of_volume(&Pixels::U16(Vec::new())).is_none());
}

fn random_slices(rng: &mut Rng, info: &LevelInfo) -> Vec<Slice> {
    (0..info.depth)
        .map(|_| {
            let n = info.slice_len();
            let pixels = match info.sample_type {
                SampleType::U8 => Pixels::U8((0..n).map(|_| rng.next() as u8).collect()),
                _ => Pixels::U16((0..n).map(|_| (rng.next() % 50) as u16 * 1000).collect()),
            };
            Slice::new(info.width, info.height, pixels).unwrap()
        })
        .collect()
}

fn sample(s: &Slice, x: usize, y: usize) -> Vec<u8> {
    let size = s.sample_type().bytes();
    let at = (y * s.width() as usize + x) * size;
    s.pixels().as_bytes()[at..at + size].to_vec()
}

#[test]
fn chunk_bytes_against_a_naive_reference() {
    let mut rng = Rng(7);
    for (ty, chunk) in [
        (SampleType::U16, ChunkShape::new(2, 5, 7)),
        (SampleType::U8, ChunkShape::new(3, 4, 16)),
        (SampleType::U16, ChunkShape::new(1, 64, 64)),
    ] {
        let ls = levels(23, 13, 7, ty, 2);
        let z = ZarrLayout::new(&ls, chunk, Compression::None).unwrap();
        for lvl in z.levels() {
            let slices = random_slices(&mut rng, &lvl.info);
            let size = ty.bytes();
            let [gz, gy, gx] = lvl.grid();
            let c = lvl.chunk;
            for iz in 0..gz {
                for iy in 0..gy {
                    for ix in 0..gx {
                        let zr = lvl.chunk_slices(iz).unwrap();
                        let part: Vec<&Slice> =
                            slices[zr.start as usize..zr.end as usize].iter().collect();
                        let n = lvl.info.level;
                        let mut zarr = Vec::new();
                        z.encode_chunk(n, [iz, iy, ix], &part, &mut zarr).unwrap();
                        let mut pre = Vec::new();
                        z.encode_precomputed_chunk(n, [iz, iy, ix], &part, &mut pre)
                            .unwrap();
                        // Naive: every position of the whole chunk, C order (x fastest).
                        let mut want = Vec::new();
                        let mut want_pre = Vec::new();
                        for dz in 0..c.z as usize {
                            for dy in 0..c.y as usize {
                                for dx in 0..c.x as usize {
                                    let (gz_, gy_, gx_) = (
                                        iz as usize * c.z as usize + dz,
                                        iy as usize * c.y as usize + dy,
                                        ix as usize * c.x as usize + dx,
                                    );
                                    let inside = gz_ < lvl.info.depth as usize
                                        && gy_ < lvl.info.height as usize
                                        && gx_ < lvl.info.width as usize;
                                    if inside {
                                        let s = sample(&slices[gz_], gx_, gy_);
                                        want.extend_from_slice(&s);
                                        want_pre.extend_from_slice(&s);
                                    } else {
                                        want.extend(std::iter::repeat_n(0u8, size));
                                    }
                                }
                            }
                        }
                        assert_eq!(zarr, want, "zarr chunk {iz},{iy},{ix} of level {n}");
                        // Precomputed: the inside samples only, x fastest then y then z
                        // (Fortran order of x, y, z).
                        assert_eq!(
                            pre, want_pre,
                            "precomputed chunk {iz},{iy},{ix} of level {n}"
                        );
                    }
                }
            }
        }
    }
    // Wrong slices are refused, naming what was expected.
    let ls = levels(23, 13, 7, SampleType::U16, 1);
    let z = ZarrLayout::new(&ls, ChunkShape::new(2, 8, 8), Compression::None).unwrap();
    let s = Slice::zeroed(23, 13, SampleType::U16);
    let e = z
        .encode_chunk(0, [0, 0, 0], &[&s], &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("1 slices") && e.contains("0..2"), "{e}");
    let small = Slice::zeroed(22, 13, SampleType::U16);
    assert!(
        z.encode_chunk(0, [0, 0, 0], &[&small, &small], &mut Vec::new())
            .is_err()
    );
    assert!(
        z.encode_chunk(0, [4, 0, 0], &[&s], &mut Vec::new())
            .is_err()
    );
    assert!(
        z.encode_chunk(1, [0, 0, 0], &[&s], &mut Vec::new())
            .is_err()
    );
}

#[test]
fn every_compressor_round_trips_through_an_independent_decoder() {
    let mut rng = Rng(11);
    let compressible: Vec<u8> = (0..300_001u32)
        .flat_map(|i| ((i / 7 % 300) as u16 + 1000).to_le_bytes())
        .collect();
    let noise: Vec<u8> = (0..200_000).map(|_| rng.next() as u8).collect();
    let tiny = vec![5u8; 3];
    // CT-like: a smooth high byte over a noisy low byte, 4 whole Blosc blocks and a shorter
    // last one (split into byte planes, the noise plane stored; the last block one stream).
    let ct: Vec<u8> = (0..300_001u32)
        .flat_map(|i| [rng.next() as u8, (i / 2048 % 40) as u8 + 3])
        .collect();
    let wide: Vec<u8> = (0..70_000u32)
        .flat_map(|i| (i as f32 / 7.0).floor().to_le_bytes())
        .collect();
    // 100 samples: too few to split for a decoder older than Blosc's split flag.
    let small: Vec<u8> = (0..100u16).flat_map(|i| (i / 10).to_le_bytes()).collect();
    for (data, typesize) in [
        (&ct, 2usize),
        (&wide, 4),
        (&small, 2),
        (&compressible, 2usize),
        (&compressible, 1),
        (&noise, 2),
        (&noise, 1),
        (&tiny, 1),
        (&Vec::new(), 2),
    ] {
        for c in [
            Compression::BloscLz4,
            Compression::zstd(),
            Compression::Zstd(7),
            Compression::None,
        ] {
            let mut out = Vec::new();
            c.encode(data, typesize, &mut out).unwrap();
            let codec = match c {
                Compression::BloscLz4 => json!({"id": "blosc"}),
                Compression::None => json!(null),
                _ => json!({"id": "zstd"}),
            };
            let back = zarr_support::decode(&codec, &out);
            assert!(
                back == *data,
                "{c:?} typesize {typesize} len {}",
                data.len()
            );
            if c == Compression::BloscLz4 {
                assert_eq!(out[3] as usize, typesize, "typesize in the header");
                let nbytes = u32::from_le_bytes(out[4..8].try_into().unwrap()) as usize;
                assert_eq!(nbytes, data.len());
                // Compressible data shrinks; noise is stored (at most 16 bytes of header more).
                let flags = out[2];
                if std::ptr::eq(data, &compressible) {
                    assert!(out.len() < data.len() / 2, "{}", out.len());
                } else if std::ptr::eq(data, &ct) {
                    assert_eq!(flags & 0x10, 0, "CT samples are split into byte planes");
                    // The high plane shrinks, the noise plane is stored.
                    assert!(out.len() < data.len() * 3 / 4, "{}", out.len());
                    assert!(out.len() > data.len() / 2, "{}", out.len());
                } else if std::ptr::eq(data, &small) {
                    assert_eq!(flags & 0x12, 0x10, "too few samples to split: {flags:#x}");
                } else if std::ptr::eq(data, &wide) {
                    assert!(out.len() < data.len(), "{}", out.len());
                } else {
                    assert!(out.len() <= data.len() + 16);
                }
            }
        }
    }
}

/// Rows `first..first + height` of `s`, full width.
fn band_of(s: &Slice, first: u32, height: u32) -> Slice {
    let row = s.width() as usize * s.sample_type().bytes();
    let bytes = &s.pixels().as_bytes()[first as usize * row..(first + height) as usize * row];
    let pixels = match s.sample_type() {
        SampleType::U8 => Pixels::U8(bytes.to_vec()),
        _ => Pixels::U16(bytemuck::cast_slice::<u8, u16>(bytes).to_vec()),
    };
    Slice::new(s.width(), height, pixels).unwrap()
}

#[test]
fn files_and_precomputed_chunks_from_bands_of_rows_equal_those_from_whole_slices() {
    let mut rng = Rng(11);
    let ls = levels(45, 37, 7, SampleType::U16, 2);
    let chunked = ZarrLayout::new(&ls, ChunkShape::new(2, 8, 16), Compression::Zstd(3)).unwrap();
    let sharded = chunked
        .clone()
        .with_shards(ChunkShape::new(4, 16, 32))
        .unwrap();
    for z in [&chunked, &sharded] {
        for lvl in z.levels() {
            let n = lvl.info.level;
            let slices = random_slices(&mut rng, &lvl.info);
            let [gz, gy, gx] = lvl.file_grid();
            for index in (0..gz)
                .flat_map(|iz| (0..gy).flat_map(move |iy| (0..gx).map(move |ix| [iz, iy, ix])))
            {
                let [zr, yr, _] = lvl.file_ranges(index).unwrap();
                assert_eq!(Some(zr.clone()), lvl.file_slices(index[0]));
                let whole: Vec<&Slice> =
                    slices[zr.start as usize..zr.end as usize].iter().collect();
                let mut want = Vec::new();
                z.encode_file(n, index, &whole, &mut want).unwrap();
                // The file's rows exactly, and more rows than it needs.
                let more = (
                    yr.start.saturating_sub(3),
                    (yr.end + 2).min(lvl.info.height),
                );
                for (first, end) in [(yr.start, yr.end), more] {
                    let bands: Vec<Slice> = whole
                        .iter()
                        .map(|s| band_of(s, first, end - first))
                        .collect();
                    let refs: Vec<&Slice> = bands.iter().collect();
                    let mut got = Vec::new();
                    z.encode_file_bands(n, index, first, &refs, &mut got)
                        .unwrap();
                    assert_eq!(
                        got, want,
                        "file {index:?} of level {n}, rows {first}..{end}"
                    );
                }
            }
            // Precomputed chunks (never sharded) from the chunk's rows.
            let [gz, gy, gx] = lvl.grid();
            for index in [[0, 0, 0], [gz - 1, gy - 1, gx - 1], [gz / 2, gy - 1, 0]] {
                let [zr, yr, _] = lvl.chunk_ranges(index).unwrap();
                let whole: Vec<&Slice> =
                    slices[zr.start as usize..zr.end as usize].iter().collect();
                let mut want = Vec::new();
                z.encode_precomputed_chunk(n, index, &whole, &mut want)
                    .unwrap();
                let bands: Vec<Slice> = whole
                    .iter()
                    .map(|s| band_of(s, yr.start, yr.len() as u32))
                    .collect();
                let refs: Vec<&Slice> = bands.iter().collect();
                let mut got = Vec::new();
                z.encode_precomputed_chunk_bands(n, index, yr.start, &refs, &mut got)
                    .unwrap();
                assert_eq!(got, want, "precomputed chunk {index:?} of level {n}");
            }
        }
    }
    // Bands that are not the file's are refused, naming what the file needs.
    let s = Slice::zeroed(45, 37, SampleType::U16);
    let band = band_of(&s, 8, 8);
    let short = band_of(&s, 9, 7);
    let narrow = Slice::zeroed(44, 8, SampleType::U16);
    let wrong = [
        (vec![&band], 8),
        (vec![&short, &short], 9),
        (vec![&band, &band], 9),
        (vec![&narrow, &narrow], 8),
    ];
    for (bands, first) in wrong {
        let e = chunked
            .encode_file_bands(0, [0, 1, 0], first, &bands, &mut Vec::new())
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("8..16") || text.contains("0..2"), "{text}");
        assert!(
            matches!(e, lodcache::Error::InvalidArgument { .. }),
            "{e:?}"
        );
    }
    assert!(
        chunked
            .encode_file_bands(0, [4, 0, 0], 0, &[&s], &mut Vec::new())
            .is_err()
    );
    assert!(
        chunked
            .encode_precomputed_chunk_bands(0, [0, 5, 0], 0, &[&s, &s], &mut Vec::new())
            .is_err()
    );
}
