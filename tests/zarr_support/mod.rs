//! Reading a Zarr store back without lodcache's code: a tiny Blosc 1 and LZ4 block decoder
//! written from the formats' descriptions, Zstandard through the C library's decoder, and the
//! metadata read as plain JSON.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;

use serde_json::Value;

/// Decodes an LZ4 block (the raw block format, no frame) of `size` bytes.
pub fn lz4_block(src: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let mut i = 0;
    let length = |i: &mut usize, mut n: usize| {
        if n == 15 {
            loop {
                let b = src[*i];
                *i += 1;
                n += b as usize;
                if b != 255 {
                    break;
                }
            }
        }
        n
    };
    loop {
        let token = src[i];
        i += 1;
        let lit = length(&mut i, (token >> 4) as usize);
        out.extend_from_slice(&src[i..i + lit]);
        i += lit;
        if i == src.len() {
            break;
        }
        let offset = u16::from_le_bytes([src[i], src[i + 1]]) as usize;
        i += 2;
        assert!(offset > 0 && offset <= out.len(), "bad LZ4 offset");
        let len = length(&mut i, (token & 15) as usize) + 4;
        let start = out.len() - offset;
        for k in 0..len {
            let b = out[start + k];
            out.push(b);
        }
    }
    assert_eq!(out.len(), size, "LZ4 block size");
    out
}

/// Decodes a Blosc 1 chunk (LZ4 only), checking every header field it relies on.
pub fn blosc(src: &[u8]) -> Vec<u8> {
    let u32_at = |at: usize| u32::from_le_bytes(src[at..at + 4].try_into().unwrap()) as usize;
    let (version, flags, typesize) = (src[0], src[2], src[3] as usize);
    assert_eq!(version, 2, "Blosc format version");
    let (nbytes, blocksize, cbytes) = (u32_at(4), u32_at(8), u32_at(12));
    assert_eq!(cbytes, src.len(), "Blosc cbytes");
    if flags & 0x02 != 0 {
        assert_eq!(cbytes, nbytes + 16, "memcpyed size");
        return src[16..].to_vec();
    }
    assert_eq!(flags >> 5, 1, "compressor is LZ4");
    let blocks = nbytes.div_ceil(blocksize);
    let mut out = Vec::with_capacity(nbytes);
    for b in 0..blocks {
        let bsize = blocksize.min(nbytes - b * blocksize);
        let mut at = u32_at(16 + 4 * b);
        // Blosc 1's rule: without the don't-split flag, a whole block of at least 128
        // samples of at most 16 bytes is one stream per byte; the last, shorter block is one.
        let whole = bsize == blocksize;
        let streams = if flags & 0x10 == 0 && whole && typesize <= 16 && bsize / typesize >= 128 {
            typesize
        } else {
            1
        };
        let mut block = Vec::with_capacity(bsize);
        for _ in 0..streams {
            let ssize = bsize / streams;
            let csize = u32_at(at);
            at += 4;
            if csize == ssize {
                block.extend_from_slice(&src[at..at + csize]);
            } else {
                block.extend(lz4_block(&src[at..at + csize], ssize));
            }
            at += csize;
        }
        if flags & 0x01 != 0 && typesize > 1 {
            let n = bsize / typesize;
            let mut plain = block.clone();
            for i in 0..n {
                for j in 0..typesize {
                    plain[i * typesize + j] = block[j * n + i];
                }
            }
            block = plain;
        }
        out.extend(block);
    }
    out
}

/// Decodes a chunk by its codec description (v2 `compressor` or v3 compressor codec).
pub fn decode(codec: &Value, bytes: &[u8]) -> Vec<u8> {
    let id = codec
        .get("id")
        .or_else(|| codec.get("name"))
        .and_then(Value::as_str);
    match id {
        None => bytes.to_vec(),
        Some("blosc") => blosc(bytes),
        Some("zstd") => zstd::decode_all(bytes).unwrap(),
        Some(other) => panic!("unexpected codec {other}"),
    }
}

pub fn json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap_or_else(|e| panic!("{path:?}: {e}")))
        .unwrap()
}

/// Level `n` of a store as u32 samples, `[z][y * w + x]`, read chunk by chunk (v2 or v3,
/// sharded or not).
pub fn read_level(store: &Path, n: u32) -> (usize, usize, Vec<Vec<u32>>) {
    let v2 = store.join(".zgroup").exists();
    let (shape, chunks, dtype, codec, shard) = if v2 {
        let a = json(&store.join(format!("{n}/.zarray")));
        assert_eq!(a["dimension_separator"], "/");
        assert_eq!(a["order"], "C");
        assert_eq!(a["fill_value"], 0);
        (
            a["shape"].clone(),
            a["chunks"].clone(),
            a["dtype"].as_str().unwrap().to_string(),
            a["compressor"].clone(),
            None,
        )
    } else {
        let a = json(&store.join(format!("{n}/zarr.json")));
        let codecs = a["codecs"].as_array().unwrap().clone();
        let grid = a["chunk_grid"]["configuration"]["chunk_shape"].clone();
        let (inner, codecs, shard) = if codecs[0]["name"] == "sharding_indexed" {
            let c = &codecs[0]["configuration"];
            (
                c["chunk_shape"].clone(),
                c["codecs"].as_array().unwrap().clone(),
                Some(grid),
            )
        } else {
            (grid, codecs, None)
        };
        let compressor = codecs.get(1).cloned().unwrap_or(Value::Null);
        (
            a["shape"].clone(),
            inner,
            a["data_type"].as_str().unwrap().to_string(),
            compressor,
            shard,
        )
    };
    let dim = |v: &Value, i: usize| v[i].as_u64().unwrap() as usize;
    let (d, h, w) = (dim(&shape, 0), dim(&shape, 1), dim(&shape, 2));
    let (cz, cy, cx) = (dim(&chunks, 0), dim(&chunks, 1), dim(&chunks, 2));
    let size = match dtype.as_str() {
        "|u1" | "uint8" => 1,
        "<u2" | "uint16" => 2,
        other => panic!("dtype {other}"),
    };
    let mut vol = vec![vec![u32::MAX; w * h]; d];
    let put = |vol: &mut Vec<Vec<u32>>, raw: &[u8], (iz, iy, ix): (usize, usize, usize)| {
        assert_eq!(raw.len(), cz * cy * cx * size, "chunks are whole (padded)");
        for z in 0..cz {
            for y in 0..cy {
                for x in 0..cx {
                    let (gz, gy, gx) = (iz * cz + z, iy * cy + y, ix * cx + x);
                    let at = ((z * cy + y) * cx + x) * size;
                    let v = if size == 1 {
                        u32::from(raw[at])
                    } else {
                        u32::from(u16::from_le_bytes([raw[at], raw[at + 1]]))
                    };
                    if gz < d && gy < h && gx < w {
                        vol[gz][gy * w + gx] = v;
                    } else {
                        assert_eq!(v, 0, "padding is the fill value");
                    }
                }
            }
        }
    };
    let grid = (d.div_ceil(cz), h.div_ceil(cy), w.div_ceil(cx));
    match shard {
        None => {
            for iz in 0..grid.0 {
                for iy in 0..grid.1 {
                    for ix in 0..grid.2 {
                        let key = if v2 {
                            format!("{n}/{iz}/{iy}/{ix}")
                        } else {
                            format!("{n}/c/{iz}/{iy}/{ix}")
                        };
                        let bytes = std::fs::read(store.join(&key)).unwrap();
                        put(&mut vol, &decode(&codec, &bytes), (iz, iy, ix));
                    }
                }
            }
        }
        Some(s) => {
            let (sz, sy, sx) = (dim(&s, 0) / cz, dim(&s, 1) / cy, dim(&s, 2) / cx);
            let per = sz * sy * sx;
            for jz in 0..grid.0.div_ceil(sz) {
                for jy in 0..grid.1.div_ceil(sy) {
                    for jx in 0..grid.2.div_ceil(sx) {
                        let bytes =
                            std::fs::read(store.join(format!("{n}/c/{jz}/{jy}/{jx}"))).unwrap();
                        let index_len = per * 16;
                        let index = &bytes[bytes.len() - 4 - index_len..bytes.len() - 4];
                        let crc = u32::from_le_bytes(bytes[bytes.len() - 4..].try_into().unwrap());
                        assert_eq!(crc, crc32c(index), "shard index checksum");
                        for k in 0..per {
                            let off = u64::from_le_bytes(index[16 * k..][..8].try_into().unwrap());
                            let len =
                                u64::from_le_bytes(index[16 * k + 8..][..8].try_into().unwrap());
                            let (dz, dy, dx) = (k / (sy * sx), k / sx % sy, k % sx);
                            let ci = (jz * sz + dz, jy * sy + dy, jx * sx + dx);
                            if ci.0 >= grid.0 || ci.1 >= grid.1 || ci.2 >= grid.2 {
                                assert_eq!((off, len), (u64::MAX, u64::MAX), "empty inner chunk");
                                continue;
                            }
                            let part = &bytes[off as usize..(off + len) as usize];
                            put(&mut vol, &decode(&codec, part), ci);
                        }
                    }
                }
            }
        }
    }
    assert!(
        vol.iter().all(|s| s.iter().all(|&v| v != u32::MAX)),
        "every voxel written"
    );
    (w, h, vol)
}

/// CRC-32C, bit by bit (the reference the table-driven one is checked against).
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
