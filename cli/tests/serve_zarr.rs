//! `lodcache serve`'s standard stores over real HTTP: OME-Zarr 0.4 at `/zarr/`, OME-Zarr 0.5 at
//! `/zarr3/`, Neuroglancer precomputed at `/precomputed/`. Every key that does not exist is a
//! JSON 404 (clients probe for them); every chunk that exists is made lazily (never a 404) and
//! is exactly the pyramid's samples; HEAD, Range, ETag and CORS work on chunks; bad keys never
//! stop the server. (The Python clients read the same stores in `.ci/zarr-http`.)

mod common;

use common::{Reply, Server, agent};
use lodcache::Phantom;
use serde_json::Value;

/// The phantom served: with `--edge 100` its levels are 300 x 260 x 20, 150 x 130 x 10 and
/// 75 x 65 x 5.
const SIZE: (u32, u32, u32) = (300, 260, 20);

struct Fixture {
    server: Server,
    _tmp: tempfile::TempDir,
}

impl std::ops::Deref for Fixture {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.server
    }
}

/// Serves a fresh phantom with `--edge 100` and `args`.
fn serve(args: &[&str]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("stack");
    Phantom::new(SIZE.0, SIZE.1, SIZE.2).write(&stack).unwrap();
    let cache = tmp.path().join("cache");
    let mut all = vec!["--cache", cache.to_str().unwrap(), "--edge", "100"];
    all.extend_from_slice(args);
    Fixture {
        server: Server::start(&stack, &all),
        _tmp: tmp,
    }
}

fn request(s: &Server, method: &str, target: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(s.url(target));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Reply::from(agent().run(req.body(()).unwrap()).unwrap())
}

/// The samples of slice `z` of `level` as the JSON API's raw endpoint gives them: width and
/// samples.
fn slice(s: &Server, level: u32, z: u32) -> (usize, Vec<u16>) {
    let r = s.get(&format!("/api/slice/{level}/{z}.raw"));
    assert_eq!(r.status, 200, "{}", r.text());
    let w: usize = r.header("x-width").unwrap().parse().unwrap();
    let samples = r
        .body
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    (w, samples)
}

fn samples(body: &[u8]) -> Vec<u16> {
    body.chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect()
}

/// The chunk of `level` at `z0.., y0.., x0..` of shape `(cz, cy, cx)`, from the raw slices:
/// padded with 0 past the level's edge (`pad`), or cut there.
fn expected_chunk(
    s: &Server,
    level: u32,
    (z0, y0, x0): (u32, u32, u32),
    (cz, cy, cx): (u32, u32, u32),
    (d, h, w): (u32, u32, u32),
    pad: bool,
) -> Vec<u16> {
    let mut out = Vec::new();
    for z in z0..z0 + cz {
        if z >= d {
            if pad {
                out.extend(std::iter::repeat_n(0, (cy * cx) as usize));
            }
            continue;
        }
        let (width, sl) = slice(s, level, z);
        for y in y0..y0 + cy {
            for x in x0..x0 + cx {
                if y < h && x < w {
                    out.push(sl[y as usize * width + x as usize]);
                } else if pad {
                    out.push(0);
                }
            }
        }
    }
    out
}

#[test]
fn metadata_documents_describe_every_level() {
    let s = serve(&["--voxel-size", "4.5,4.5,9"]);
    assert_eq!(s.json("/zarr/.zgroup")["zarr_format"], 2);
    let attrs = s.json("/zarr/.zattrs");
    let ms = &attrs["multiscales"][0];
    assert_eq!(ms["version"], "0.4");
    assert_eq!(ms["datasets"].as_array().unwrap().len(), 3);
    assert_eq!(ms["axes"][0]["unit"], "micrometer");
    assert_eq!(
        ms["datasets"][1]["coordinateTransformations"][0]["scale"],
        serde_json::json!([18.0, 9.0, 9.0])
    );
    assert!(attrs["omero"]["channels"][0]["window"]["end"].is_number());
    let zarray = s.json("/zarr/1/.zarray");
    assert_eq!(zarray["shape"], serde_json::json!([10, 130, 150]));
    assert_eq!(zarray["chunks"], serde_json::json!([1, 130, 150]));
    assert_eq!(zarray["compressor"]["id"], "blosc");
    assert_eq!(zarray["dimension_separator"], "/");
    let group = s.json("/zarr3/zarr.json");
    assert_eq!(group["attributes"]["ome"]["version"], "0.5");
    let array = s.json("/zarr3/2/zarr.json");
    assert_eq!(array["shape"], serde_json::json!([5, 65, 75]));
    assert_eq!(array["dimension_names"], serde_json::json!(["z", "y", "x"]));
    let info = s.json("/precomputed/info");
    assert_eq!(info["scales"].as_array().unwrap().len(), 3);
    assert_eq!(info["scales"][0]["size"], serde_json::json!([300, 260, 20]));
    assert_eq!(
        info["scales"][0]["resolution"],
        serde_json::json!([4500.0, 4500.0, 9000.0])
    );
    // The page's API says the same voxel size.
    assert_eq!(
        s.json("/api/levels")["voxel_size"],
        serde_json::json!([4.5, 4.5, 9.0])
    );
}

#[test]
fn every_key_that_does_not_exist_is_a_json_404_and_the_server_stays_up() {
    let s = serve(&["--zarr-chunks", "1,64,64"]);
    for target in [
        // What clients probe for.
        "/zarr/.zmetadata",
        "/zarr/zarr.json",
        "/zarr/0/.zattrs",
        "/zarr/0/.zgroup",
        "/zarr/labels/.zattrs",
        "/zarr/labels/.zgroup",
        "/zarr/0/zarr.json",
        "/zarr3/.zattrs",
        "/zarr3/.zgroup",
        "/zarr3/0/.zarray",
        "/zarr3/labels/zarr.json",
        "/precomputed/provenance",
        "/precomputed/s0/info",
        // Levels and chunk indices out of range.
        "/zarr/3/.zarray",
        "/zarr/0/20/0/0",
        "/zarr/0/0/5/0",
        "/zarr/0/0/0/5",
        "/zarr/1/0/0/0/0",
        "/zarr3/3/zarr.json",
        "/zarr3/0/c/0/0/5",
        "/zarr3/0/c/20/0/0",
        "/precomputed/s3/0-64_0-64_0-1",
        "/precomputed/s0/0-64_0-64_20-21",
        "/precomputed/s0/256-320_0-64_0-1",
        // Malformed keys: not numbers, signs, leading zeros, huge numbers, wrong shapes.
        "/zarr/0/a/0/0",
        "/zarr/0/-1/0/0",
        "/zarr/0/+1/0/0",
        "/zarr/0/01/0/0",
        "/zarr/0/99999999999/0/0",
        "/zarr/0/0.0/0/0",
        "/zarr/0/0/0",
        "/zarr3/0/0/0/0",
        "/zarr3/0/c/0/0",
        "/precomputed/s0/0-64_0-64",
        "/precomputed/s0/1-65_0-64_0-1",
        "/precomputed/s0/0-64_0-64_0-2",
        "/precomputed/s0/x",
        "/precomputed/s00/0-64_0-64_0-1",
        // Traversal.
        "/zarr/../../etc/passwd",
        "/zarr/..%2F..%2Fetc%2Fpasswd",
        "/zarr/%2e%2e/%2e%2e/etc/passwd",
        "/zarr3/..%2f..%2f/zarr.json",
        "/precomputed/..%2Finfo",
    ] {
        let r = s.get(target);
        assert_eq!(r.status, 404, "{target}: {}", r.text());
        r.expect_error(target, Some(404));
        assert!(!r.text().contains("root:"), "{target}");
        let head = request(&s, "HEAD", target, &[]);
        assert_eq!(head.status, 404, "HEAD {target}");
        assert!(head.body.is_empty(), "HEAD {target}");
    }
    // The stores' roots are not keys either.
    for target in ["/zarr", "/zarr/", "/zarr3/", "/precomputed/"] {
        assert_eq!(s.get(target).status, 404, "{target}");
    }
    s.assert_alive();
    assert_eq!(s.get("/zarr/0/0/0/0").status, 200);
}

#[test]
fn raw_chunks_are_the_pyramids_samples_in_all_three_stores() {
    // 1 x 64 x 64 chunks, uncompressed: level 1 (150 x 130) has edge chunks in x and y.
    let s = serve(&["--zarr-chunks", "1,64,64", "--zarr-compression", "none"]);
    let shape = (10, 130, 150);
    for (z, iy, ix) in [(0, 0, 0), (3, 1, 2), (9, 2, 2), (9, 2, 0)] {
        let want = expected_chunk(&s, 1, (z, iy * 64, ix * 64), (1, 64, 64), shape, true);
        for target in [
            format!("/zarr/1/{z}/{iy}/{ix}"),
            format!("/zarr3/1/c/{z}/{iy}/{ix}"),
        ] {
            let r = s.get(&target);
            assert_eq!(r.status, 200, "{target}: {}", r.text());
            assert_eq!(
                r.header("content-type"),
                Some("application/octet-stream"),
                "{target}"
            );
            assert_eq!(samples(&r.body), want, "{target}");
        }
        // Precomputed: cut at the edge, x fastest.
        let (x0, y0) = (ix * 64, iy * 64);
        let (x1, y1) = ((x0 + 64).min(150), (y0 + 64).min(130));
        let target = format!("/precomputed/s1/{x0}-{x1}_{y0}-{y1}_{z}-{}", z + 1);
        let r = s.get(&target);
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        let cut = expected_chunk(&s, 1, (z, y0, x0), (1, y1 - y0, x1 - x0), shape, false);
        assert_eq!(samples(&r.body), cut, "{target}");
    }
}

#[test]
fn deep_chunks_are_made_from_their_slices_and_padded_in_z() {
    // 8 x 64 x 64 chunks: level 0 (20 slices) has a last row of chunks 4 deep; level 2 (5
    // slices, not built yet) is generated for the request, never a 404.
    let s = serve(&["--zarr-chunks", "8,64,64", "--zarr-compression", "none"]);
    let r = s.get("/zarr/2/0/1/1");
    assert_eq!(r.status, 200, "{}", r.text());
    let want = expected_chunk(&s, 2, (0, 64, 64), (5, 64, 64), (5, 65, 75), true);
    assert_eq!(
        r.body.len(),
        5 * 64 * 64 * 2,
        "level 2's chunk is cut to 5 deep"
    );
    assert_eq!(samples(&r.body), want);
    let r = s.get("/zarr3/0/c/2/1/0");
    assert_eq!(r.status, 200, "{}", r.text());
    let want = expected_chunk(&s, 0, (16, 64, 0), (8, 64, 64), (20, 260, 300), true);
    assert_eq!(samples(&r.body), want);
    let r = s.get("/precomputed/s0/256-300_192-256_16-20");
    assert_eq!(r.status, 200, "{}", r.text());
    let want = expected_chunk(&s, 0, (16, 192, 256), (4, 64, 44), (20, 260, 300), false);
    assert_eq!(samples(&r.body), want);
}

#[test]
fn compressed_chunks_are_cached_and_answer_head_range_etag_and_cors() {
    let s = serve(&["--zarr-chunks", "1,64,64"]);
    let target = "/zarr/0/5/1/1";
    let first = s.get_with(target, &[("Origin", "https://neuroglancer.example")]);
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(first.header("x-lodcache-cache"), Some("miss"));
    assert_eq!(first.header("access-control-allow-origin"), Some("*"));
    assert_eq!(first.header("accept-ranges"), Some("bytes"));
    // Blosc: a 16-byte header, then never more than the 8 KiB of raw samples (level 0 of
    // the phantom is mostly white noise, which LZ4 barely shrinks).
    assert_eq!(first.body[0], 2, "blosc format version");
    assert!(first.body.len() <= 16 + 64 * 64 * 2, "{}", first.body.len());
    let second = s.get(target);
    assert_eq!(second.header("x-lodcache-cache"), Some("hit"));
    assert_eq!(second.body, first.body);
    let len = first.body.len();
    let head = request(&s, "HEAD", target, &[]);
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(len.to_string().as_str())
    );
    let part = request(&s, "GET", target, &[("Range", "bytes=4-11")]);
    assert_eq!(part.status, 206);
    assert_eq!(part.body, first.body[4..12]);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 4-11/{len}").as_str())
    );
    let tail = request(&s, "GET", target, &[("Range", "bytes=-16")]);
    assert_eq!(tail.status, 206);
    assert_eq!(tail.body, first.body[len - 16..]);
    let past = request(&s, "GET", target, &[("Range", &format!("bytes={len}-"))]);
    assert_eq!(past.status, 416);
    assert_eq!(
        past.header("content-range"),
        Some(format!("bytes */{len}").as_str())
    );
    let etag = first.header("etag").unwrap().to_string();
    let again = request(&s, "GET", target, &[("If-None-Match", &etag)]);
    assert_eq!(again.status, 304);
    // A 404 answers other origins too (a browser client must see it is a 404).
    let missing = s.get_with("/zarr/.zmetadata", &[("Origin", "https://x.example")]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("access-control-allow-origin"), Some("*"));
}

#[test]
fn metadata_reads_nothing_and_sixteen_chunks_of_one_slice_decode_it_once() {
    // A 700 x 700 scan of PNG files (compressed: decoded whole, never read by rows) in
    // 1 x 128 x 128 chunks: slice 3 of level 0 is 6 x 6 chunks.
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("stack");
    png_scan(&stack, 700, 6);
    let s = Server::start(&stack, &["--no-cache", "--zarr-chunks", "1,128,128"]);
    // The first request of a store makes its layout from what the server read when it
    // started: no pass over the scan.
    let started = s.json("/api/stats")["source_slices"].as_u64().unwrap();
    let attrs = s.json("/zarr/.zattrs");
    assert!(attrs["omero"]["channels"][0]["window"]["end"].is_number());
    let before = s.json("/api/stats")["source_slices"].as_u64().unwrap();
    assert_eq!(before, started, "the store's metadata read no source slice");
    for iy in 0..4 {
        for ix in 0..4 {
            let r = s.get(&format!("/zarr/0/3/{iy}/{ix}"));
            assert_eq!(r.status, 200, "{}", r.text());
            let from = if (iy, ix) == (0, 0) {
                "source"
            } else {
                "memory"
            };
            assert_eq!(
                r.header("x-lodcache-source"),
                Some(from),
                "chunk {iy}, {ix}"
            );
        }
    }
    let after = s.json("/api/stats")["source_slices"].as_u64().unwrap();
    assert_eq!(after - before, 1, "16 chunks of one slice read it once");
}

/// Source bytes read, source slices read and level-0 requests so far.
fn reads(s: &Server) -> (u64, u64, u64) {
    let v = s.json("/api/stats");
    let n = |v: &Value| v.as_u64().unwrap();
    (
        n(&v["source_bytes"]),
        n(&v["source_slices"]),
        n(&v["requests"][0]),
    )
}

/// What `target` read from the source: bytes, slices and level-0 requests, and its reply.
fn reading(s: &Server, target: &str) -> ((u64, u64, u64), Reply) {
    let before = reads(s);
    let r = s.get(target);
    assert_eq!(r.status, 200, "{target}: {}", r.text());
    let after = reads(s);
    let d = (after.0 - before.0, after.1 - before.1, after.2 - before.2);
    (d, r)
}

#[test]
fn a_level0_chunk_of_a_plain_tiff_reads_only_its_rows_and_keeps_no_slice() {
    // The phantom is uncompressed TIFF in strips: a 1 x 64 x 64 chunk reads its 64 rows.
    let s = serve(&["--zarr-chunks", "1,64,64", "--zarr-compression", "none"]);
    let (w, h, d) = SIZE;
    let rows = 64 * u64::from(w) * 2;
    let (read, r) = reading(&s, "/zarr/0/5/1/1");
    assert_eq!(
        read,
        (rows, 1, 1),
        "64 rows of slice 5, one request of level 0"
    );
    assert!(read.0 * 4 < u64::from(w * h) * 2, "far below a whole slice");
    assert_eq!(r.header("x-lodcache-source"), Some("source"));
    assert_eq!(r.header("x-lodcache-cache"), Some("miss"));
    let first = r.body;
    // The rows are kept nowhere: the next chunk of the row reads the same rows again; the
    // same chunk again is a response-cache hit and reads nothing.
    let (read, r) = reading(&s, "/zarr/0/5/1/2");
    assert_eq!(read, (rows, 1, 1));
    let next = r.body;
    let (read, r) = reading(&s, "/zarr/0/5/1/1");
    assert_eq!(r.header("x-lodcache-cache"), Some("hit"));
    assert_eq!((read.0, read.1), (0, 0));
    // Precomputed, at the volume's edge: its rows (192..256), cut at x = 300.
    let (read, pre) = reading(&s, "/precomputed/s0/256-300_192-256_7-8");
    assert_eq!(read, (rows, 1, 1));
    assert_eq!(pre.header("x-lodcache-source"), Some("source"));
    // The pyramid's own slices (read whole now, which keeps them in the decoded-slice cache).
    let shape = (d, h, w);
    let want = expected_chunk(&s, 0, (5, 64, 64), (1, 64, 64), shape, true);
    assert_eq!(samples(&first), want);
    let want = expected_chunk(&s, 0, (5, 64, 128), (1, 64, 64), shape, true);
    assert_eq!(samples(&next), want);
    let want = expected_chunk(&s, 0, (7, 192, 256), (1, 64, 44), shape, false);
    assert_eq!(samples(&pre.body), want);
    // A slice the decoded-slice cache holds is cut from there: no source read.
    let (read, r) = reading(&s, "/zarr3/0/c/5/1/3");
    assert_eq!((read.0, read.1), (0, 0), "slice 5 is held");
    assert_eq!(read.2, 1, "still a request of level 0");
    assert_eq!(r.header("x-lodcache-source"), Some("memory"));
    let want = expected_chunk(&s, 0, (5, 64, 192), (1, 64, 64), shape, true);
    assert_eq!(samples(&r.body), want);
}

#[test]
fn a_deep_level0_chunk_reads_rows_of_the_slices_not_held_and_cuts_the_held_ones() {
    let s = serve(&["--zarr-chunks", "4,64,64", "--zarr-compression", "none"]);
    let (w, h, d) = SIZE;
    let shape = (d, h, w);
    // Slices 9 and 10 are held (a viewer looked at them); 8 and 11 are not.
    for z in [9, 10] {
        slice(&s, 0, z);
    }
    let (read, r) = reading(&s, "/zarr3/0/c/2/2/1");
    assert_eq!(
        read,
        (2 * 64 * u64::from(w) * 2, 2, 4),
        "rows 128..192 of slices 8 and 11 only; four requests of level 0"
    );
    assert_eq!(r.header("x-lodcache-source"), Some("source"));
    let want = expected_chunk(&s, 0, (8, 128, 64), (4, 64, 64), shape, true);
    assert_eq!(samples(&r.body), want);
    // Uncompressed precomputed chunk of the same place: every slice is held now.
    let (read, r) = reading(&s, "/precomputed/s0/64-128_128-192_8-12");
    assert_eq!((read.0, read.1, read.2), (0, 0, 4));
    assert_eq!(r.header("x-lodcache-source"), Some("memory"));
    let want = expected_chunk(&s, 0, (8, 128, 64), (4, 64, 64), shape, false);
    assert_eq!(samples(&r.body), want);
}

#[test]
fn concurrent_chunk_and_bad_requests_are_all_answered() {
    let s = serve(&["--zarr-chunks", "2,64,64"]);
    let targets = [
        ("/zarr/0/1/1/1", 200),
        ("/zarr3/1/c/2/1/0", 200),
        ("/precomputed/s2/64-75_0-64_2-4", 200),
        ("/zarr/2/2/0/1", 200),
        ("/zarr/.zmetadata", 404),
        ("/zarr/0/10/0/0", 404),
        ("/zarr3/0/c/x/0/0", 404),
        ("/precomputed/s1/0-1_0-1_0-1", 404),
    ];
    std::thread::scope(|scope| {
        for t in 0..6 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..16 {
                    let (target, want) = targets[(t * 5 + i) % targets.len()];
                    let r = s.get(target);
                    assert_eq!(r.status, want, "{target}: {}", r.text());
                }
            });
        }
    });
    s.assert_alive();
}

#[test]
fn bad_chunk_options_stop_serve_before_it_listens() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("stack");
    Phantom::new(64, 64, 4).write(&stack).unwrap();
    let scan = stack.to_str().unwrap();
    for (args, want) in [
        (&["--zarr-chunks", "0,64,64"][..], "0,64,64"),
        (&["--zarr-chunks", "64,64"][..], "64,64"),
        (&["--zarr-compression", "lz4"][..], "lz4"),
    ] {
        let mut all = vec!["serve", scan, "--no-cache", "--port", "0"];
        all.extend_from_slice(args);
        let (out, _, stderr) = common::run(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    // Valid syntax, but a chunk above the library's limit: refused with the reason.
    let (out, _, stderr) = common::run(&[
        "serve",
        scan,
        "--no-cache",
        "--port",
        "0",
        "--zarr-chunks",
        "4096,4096,4096",
    ]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--zarr-chunks") && stderr.contains("limit"),
        "{stderr}"
    );
}

#[test]
fn metadata_of_a_served_store_names_the_chunks_asked_for() {
    let s = serve(&["--zarr-chunks", "4,32,48", "--zarr-compression", "zstd"]);
    let zarray: Value = s.json("/zarr/0/.zarray");
    assert_eq!(zarray["chunks"], serde_json::json!([4, 32, 48]));
    assert_eq!(zarray["compressor"]["id"], "zstd");
    let array = s.json("/zarr3/0/zarr.json");
    assert_eq!(
        array["chunk_grid"]["configuration"]["chunk_shape"],
        serde_json::json!([4, 32, 48])
    );
    let info = s.json("/precomputed/info");
    assert_eq!(
        info["scales"][0]["chunk_sizes"],
        serde_json::json!([[48, 32, 4]])
    );
    assert_eq!(info["scales"][0]["encoding"], "raw");
}

/// Writes a scan of `depth` 16-bit PNG slices (slow to decode, small on disk).
fn png_scan(dir: &std::path::Path, size: u32, depth: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for z in 0..depth {
        let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(size, size, |x, y| {
            image::Luma([((x * 7 + y * 13 + z * 31) % 4096 + (x ^ y) % 97) as u16])
        });
        img.save(dir.join(format!("slice{z:04}.png"))).unwrap();
    }
}

/// Starts `GET target` on a socket of its own (left open): the caller drops it to leave.
fn start_request(s: &Server, target: &str) -> std::net::TcpStream {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    c.write_all(
        format!(
            "GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            s.port
        )
        .as_bytes(),
    )
    .unwrap();
    c
}

/// Waits until the server has decoded more source slices than it had when called.
fn wait_for_reading(s: &Server, from: u64) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while s.json("/api/stats")["source_slices"].as_u64().unwrap() <= from {
        assert!(
            std::time::Instant::now() < deadline,
            "the request never started reading"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

#[test]
fn chunks_beyond_the_queue_limit_get_503_with_retry_after_and_the_held_one_is_served() {
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("pngs");
    let (size, depth) = (768, 400);
    png_scan(&scan, size, depth);
    let s = Server::start(
        &scan,
        &[
            "--no-cache",
            "--max-heavy",
            "1",
            "--max-queued-chunks",
            "1",
            "--zarr-chunks",
            "8,64,64",
            "--zarr-compression",
            "none",
        ],
    );
    let base = s.json("/api/stats")["source_slices"].as_u64().unwrap();
    // A level-0 section reads every source slice and holds the one heavy place until its
    // client leaves (or all 400 slices are read).
    let section = start_request(&s, "/api/section/0/x/100.png");
    wait_for_reading(&s, base);

    // Deep chunks wait for the heavy place while holding a chunk place: the first one the
    // server takes holds the only chunk place, every other one is refused at once.
    let chunks = 5u32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|scope| {
        for iz in 0..chunks {
            let (s, tx) = (&s, tx.clone());
            scope.spawn(move || {
                let _ = tx.send((iz, s.get(&format!("/zarr/0/{iz}/1/1"))));
            });
        }
        let mut refused = Vec::new();
        for _ in 1..chunks {
            let (iz, r) = rx
                .recv_timeout(Duration::from_secs(20))
                .expect("the refusals came at once");
            assert_eq!(r.status, 503, "chunk {iz}: {}", r.text());
            assert_eq!(r.header("retry-after"), Some("1"), "{:?}", r.headers);
            let m = r.json()["error"].as_str().unwrap_or_default().to_string();
            assert!(m.contains("busy"), "{m}");
            refused.push(iz);
        }
        // The section's client leaves: the heavy place is freed, the held chunk is made.
        drop(section);
        let (iz, r) = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the held chunk was answered");
        assert!(!refused.contains(&iz));
        assert_eq!(r.status, 200, "chunk {iz}: {}", r.text());
        let shape = (depth, size, size);
        let want = expected_chunk(&s, 0, (8 * iz, 64, 64), (8, 64, 64), shape, true);
        assert_eq!(samples(&r.body), want, "chunk {iz}");
        // The refused ones are served now, each exactly.
        for iz in refused {
            let r = s.get(&format!("/zarr/0/{iz}/1/1"));
            assert_eq!(r.status, 200, "chunk {iz}: {}", r.text());
            let want = expected_chunk(&s, 0, (8 * iz, 64, 64), (8, 64, 64), shape, true);
            assert_eq!(samples(&r.body), want, "chunk {iz}");
        }
    });
    s.assert_alive();
}
