//! `lodcache serve`'s API as a browser sees it, over real HTTP (ureq): the page, the levels,
//! PNG and raw slices and tiles, sections, the histogram, level progress, statistics and the
//! warm-up; bad requests get a 4xx status with a useful JSON `{"error": ...}` and the server
//! keeps serving.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{Reply, Server, agent};
use lodcache::Phantom;
use serde_json::Value;

/// The phantom most tests serve. With `--edge 100` its levels are 300 x 260 x 20,
/// 150 x 130 x 10 and 75 x 65 x 5.
const SIZE: (u32, u32, u32) = (300, 260, 20);
const LEVELS: [(u32, u32, u32); 3] = [(300, 260, 20), (150, 130, 10), (75, 65, 5)];

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

/// Serves a fresh phantom of `size` with `args` and a cache folder of its own.
fn serve_phantom(size: (u32, u32, u32), args: &[&str]) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("stack");
    Phantom::new(size.0, size.1, size.2).write(&stack).unwrap();
    let cache = tmp.path().join("cache");
    let mut all = vec!["--cache", cache.to_str().unwrap()];
    all.extend_from_slice(args);
    Fixture {
        server: Server::start(&stack, &all),
        _tmp: tmp,
    }
}

fn start() -> Fixture {
    serve_phantom(SIZE, &["--edge", "100"])
}

/// A 200 PNG answer with its image and where the server took it from.
fn get_png(server: &Server, target: &str) -> (image::GrayImage, String, Reply) {
    let reply = server.get(target);
    assert_eq!(reply.status, 200, "GET {target}: {}", reply.text());
    assert_eq!(reply.header("content-type"), Some("image/png"), "{target}");
    let from = reply
        .header("x-lodcache-source")
        .unwrap_or_else(|| panic!("{target}: no X-Lodcache-Source"))
        .to_string();
    let ms: f64 = reply
        .header("x-lodcache-ms")
        .unwrap_or_else(|| panic!("{target}: no X-Lodcache-Ms"))
        .parse()
        .unwrap();
    assert!(ms.is_finite() && ms >= 0.0, "{target}: {ms} ms");
    let image = image::load_from_memory_with_format(&reply.body, image::ImageFormat::Png)
        .unwrap_or_else(|e| panic!("{target}: {e}"))
        .to_luma8();
    (image, from, reply)
}

/// The samples of a raw answer, with its width and height.
fn raw(server: &Server, target: &str) -> (u32, u32, Vec<u16>) {
    let reply = server.get(target);
    assert_eq!(reply.status, 200, "{target}: {}", reply.text());
    let number = |name: &str| -> u32 { reply.header(name).unwrap().parse().unwrap() };
    let (w, h) = (number("x-width"), number("x-height"));
    assert_eq!(reply.header("x-sample-type"), Some("u16"), "{target}");
    assert_eq!(reply.body.len(), (w * h * 2) as usize, "{target}");
    let samples = reply
        .body
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    (w, h, samples)
}

/// The server's windowing of one sample to 8-bit gray.
fn gray(v: u16, (lo, hi): (f64, f64)) -> u8 {
    let scale = 255.0 / (hi - lo);
    ((f64::from(v) - lo) * scale).round().clamp(0.0, 255.0) as u8
}

fn assert_windowed(what: &str, image: &image::GrayImage, samples: &[u16], window: (f64, f64)) {
    assert_eq!(image.as_raw().len(), samples.len(), "{what}");
    for (i, (&got, &v)) in image.as_raw().iter().zip(samples).enumerate() {
        let want = gray(v, window);
        assert!(
            got.abs_diff(want) <= 1,
            "{what}: pixel {i} is {got}, sample {v} in window {window:?} gives {want}"
        );
    }
}

fn default_window(server: &Server) -> (f64, f64) {
    let w = server.json("/api/levels")["window"].clone();
    (w[0].as_f64().unwrap(), w[1].as_f64().unwrap())
}

#[test]
fn index_page_is_html_naming_lodcache() {
    let s = start();
    for target in ["/", "/index.html"] {
        let reply = s.get(target);
        assert_eq!(reply.status, 200, "{target}");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{target}"
        );
        let page = reply.text();
        assert!(page.to_ascii_lowercase().contains("<html") && page.contains("lodcache"));
    }
}

#[test]
fn levels_list_sizes_tiles_and_a_window_but_not_the_path() {
    let s = start();
    let json = s.json("/api/levels");
    let sizes: Vec<(u64, u64, u64, u64)> = json["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            assert_eq!(l["sample_type"], "u16", "{l}");
            let n = |k: &str| l[k].as_u64().unwrap();
            (n("level"), n("width"), n("height"), n("depth"))
        })
        .collect();
    let want: Vec<(u64, u64, u64, u64)> = LEVELS
        .iter()
        .enumerate()
        .map(|(i, &(w, h, d))| (i as u64, w.into(), h.into(), d.into()))
        .collect();
    assert_eq!(sizes, want, "{json}");
    let (lo, hi) = default_window(&s);
    assert!(lo < hi && lo >= 0.0 && hi <= 65535.0, "{json}");
    assert_eq!(json["tile"], 512);
    assert!(json["voxel_size"].is_null(), "{json}");
    // The folder's name, never its path.
    assert_eq!(json["stack"], "stack", "{json}");
    assert!(!json.to_string().contains("/tmp"), "{json}");
}

#[test]
fn slice_png_has_the_level_size_and_a_second_request_comes_from_memory() {
    let s = start();
    let (image, from, first) = get_png(&s, "/api/slice/1/3.png");
    assert_eq!(image.dimensions(), (150, 130));
    assert!(["disk", "generated"].contains(&from.as_str()), "{from}");
    assert_eq!(first.header("x-lodcache-cache"), Some("miss"));
    let (again, from, reply) = get_png(&s, "/api/slice/1/3.png");
    assert_eq!(from, "memory");
    assert_eq!(reply.header("x-lodcache-cache"), Some("hit"));
    assert_eq!(again, image);
    for (level, &(w, h, d)) in LEVELS.iter().enumerate() {
        for z in [0, d - 1] {
            let (image, _, _) = get_png(&s, &format!("/api/slice/{level}/{z}.png"));
            assert_eq!(image.dimensions(), (w, h), "level {level} slice {z}");
        }
    }
}

#[test]
fn raw_slice_is_the_phantom_samples_little_endian() {
    let s = start();
    let (w, h, samples) = raw(&s, "/api/slice/0/2.raw");
    assert_eq!((w, h), (300, 260));
    let want = Phantom::new(SIZE.0, SIZE.1, SIZE.2).slice(2);
    assert!(samples == want.samples::<u16>().unwrap(), "slice 2 differs");
    let (w, h, samples) = raw(&s, "/api/slice/2/4.raw");
    assert_eq!((w, h, samples.len()), (75, 65, 75 * 65));
}

#[test]
fn tiles_are_512_squares_cut_from_the_slice_with_edge_tiles_cut_to_size() {
    // 1100 x 600: level 0 has 3 x 2 tiles, the last column 76 wide, the last row 88 high.
    let s = serve_phantom((1100, 600, 6), &["--edge", "400"]);
    let levels = s.json("/api/levels");
    assert_eq!(levels["levels"][0]["tiles"], serde_json::json!([3, 2]));
    let (_, _, whole) = raw(&s, "/api/slice/0/3.raw");
    for (ty, tx, w, h) in [
        (0, 0, 512, 512),
        (0, 2, 76, 512),
        (1, 1, 512, 88),
        (1, 2, 76, 88),
    ] {
        let (tw, th, tile) = raw(&s, &format!("/api/tile/0/3/{ty}/{tx}.raw"));
        assert_eq!((tw, th), (w, h), "tile {ty},{tx}");
        for r in 0..h as usize {
            let at = (ty as usize * 512 + r) * 1100 + tx as usize * 512;
            assert!(
                tile[r * w as usize..][..w as usize] == whole[at..at + w as usize],
                "tile {ty},{tx} row {r}"
            );
        }
        let (image, _, _) = get_png(&s, &format!("/api/tile/0/3/{ty}/{tx}.png"));
        assert_eq!(image.dimensions(), (w, h));
        assert_windowed("tile", &image, &tile, default_window(&s));
    }
    // Level 1 (550 x 300): 2 x 1 tiles.
    let (image, _, _) = get_png(&s, "/api/tile/1/1/0/1.png?min=0&max=65535");
    assert_eq!(image.dimensions(), (38, 300));
    let m = s.error("/api/tile/0/3/2/0.png", Some(404));
    assert!(
        m.contains("rows 0..=1") && m.contains("columns 0..=2"),
        "{m}"
    );
    let m = s.error("/api/tile/0/6/0/0.png", Some(404));
    assert!(m.contains("0..=5"), "{m}");
    let m = s.error("/api/tile/0/3/x/0.png", Some(400));
    assert!(m.contains("\"x\""), "{m}");
}

#[test]
fn level_0_tiles_of_one_slice_decode_it_once() {
    let s = serve_phantom((1100, 600, 6), &["--edge", "400"]);
    let before = s.json("/api/stats")["source_slices"].as_u64().unwrap();
    for ty in 0..2 {
        for tx in 0..3 {
            get_png(&s, &format!("/api/tile/0/4/{ty}/{tx}.png"));
            raw(&s, &format!("/api/tile/0/4/{ty}/{tx}.raw"));
        }
    }
    let after = s.json("/api/stats")["source_slices"].as_u64().unwrap();
    assert_eq!(
        after - before,
        1,
        "12 tiles of one slice decoded it {} times",
        after - before
    );
}

#[test]
fn etags_give_304_and_differ_by_tile_and_window() {
    let s = start();
    let a = s.get("/api/tile/1/2/0/0.png");
    assert_eq!(a.status, 200);
    let etag = a.header("etag").expect("an ETag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(a.header("cache-control"), Some("no-cache"));
    // Not modified: no body, same validator, from the response cache or not.
    for _ in 0..2 {
        let b = s.get_with("/api/tile/1/2/0/0.png", &[("If-None-Match", &etag)]);
        assert_eq!(b.status, 304, "{}", b.text());
        assert!(b.body.is_empty());
        assert_eq!(b.header("etag"), Some(etag.as_str()));
    }
    let other = s.get_with("/api/tile/1/2/0/0.png", &[("If-None-Match", "\"nope\"")]);
    assert_eq!(other.status, 200);
    let tags: std::collections::BTreeSet<String> = [
        "/api/tile/1/2/0/0.png",
        "/api/tile/1/3/0/0.png",
        "/api/tile/1/2/0/0.png?min=0&max=9000",
        "/api/tile/1/2/0/0.raw",
        "/api/slice/1/2.png",
    ]
    .iter()
    .map(|t| s.get(t).header("etag").unwrap().to_string())
    .collect();
    assert_eq!(tags.len(), 5, "{tags:?}");
    // A fresh server on the same cache gives the same ETag (it derives from the data).
}

#[test]
fn sections_are_pngs_of_width_or_height_by_depth() {
    let s = start();
    let (across_y, from, _) = get_png(&s, "/api/section/2/y/10.png");
    assert_eq!(across_y.dimensions(), (75, 5));
    assert!(["memory", "generated"].contains(&from.as_str()), "{from}");
    let (across_x, _, _) = get_png(&s, "/api/section/2/x/10.png");
    assert_eq!(across_x.dimensions(), (65, 5));
    let window = default_window(&s);
    let slices: Vec<Vec<u16>> = (0..5)
        .map(|z| raw(&s, &format!("/api/slice/2/{z}.raw")).2)
        .collect();
    let row: Vec<u16> = slices
        .iter()
        .flat_map(|s| s[10 * 75..11 * 75].to_vec())
        .collect();
    let column: Vec<u16> = slices
        .iter()
        .flat_map(|s| (0..65).map(move |y| s[y * 75 + 10]))
        .collect();
    assert_windowed("y section", &across_y, &row, window);
    assert_windowed("x section", &across_x, &column, window);
    // Level 0 sections are read slice by slice from the sources.
    let (l0, from, _) = get_png(&s, "/api/section/0/x/7.png");
    assert_eq!((l0.dimensions(), from.as_str()), ((260, 20), "source"));
    let column: Vec<u16> = (0..20)
        .flat_map(|z| {
            let v = Phantom::new(SIZE.0, SIZE.1, SIZE.2).slice(z);
            let v = v.samples::<u16>().unwrap().to_vec();
            (0..260).map(move |y| v[y * 300 + 7])
        })
        .collect();
    assert_windowed("level-0 x section", &l0, &column, window);
}

#[test]
fn min_max_and_preview_in_the_query() {
    let s = start();
    let window = (100.0, 2000.0);
    let (_, _, samples) = raw(&s, "/api/slice/1/3.raw");
    let (image, _, _) = get_png(&s, "/api/slice/1/3.png?min=100&max=2000");
    assert_windowed("slice", &image, &samples, window);
    let (image, _, _) = get_png(&s, "/api/slice/1/3.png?%6Din=%2B%31e2&max=2%30%30%30");
    assert_windowed("escaped window", &image, &samples, window);
    let m = s.error("/api/slice/1/3.png?min=%FF", Some(400));
    assert!(m.contains("%FF"), "{m}");
    let (image, _, _) = get_png(&s, "/api/slice/1/3.png?preview=1&min=100&max=2000");
    assert_windowed("preview", &image, &samples, window);
    let m = s.error("/api/slice/1/3.png?preview=maybe", Some(400));
    assert!(m.contains("preview"), "{m}");
    // Raw answers take no window.
    let m = s.error("/api/slice/1/3.raw?min=1", Some(400));
    assert!(m.contains("min"), "{m}");
    for (query, culprit) in [
        ("min=5&max=5", "min"),
        ("min=10&max=2", "min"),
        ("min=nan", "min"),
        ("min=1e400", "min"),
        ("max=abc", "max"),
        ("max=", "max"),
        ("gamma=2", "gamma"),
    ] {
        for path in [
            "/api/slice/1/3.png",
            "/api/section/1/y/3.png",
            "/api/tile/1/3/0/0.png",
        ] {
            let target = format!("{path}?{query}");
            let m = s.error(&target, Some(400));
            assert!(m.contains(culprit), "{target}: {m}");
        }
    }
}

#[test]
fn histogram_of_the_coarsest_level_has_percentiles() {
    let s = start();
    let h = s.json("/api/histogram");
    assert_eq!(h["level"], 2);
    assert_eq!(h["count"].as_u64(), Some(75 * 65 * 5));
    let bins: u64 = h["bins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .sum();
    assert_eq!(bins, 75 * 65 * 5);
    let (min, lo, hi, max) = (
        h["min"].as_f64().unwrap(),
        h["p0_5"].as_f64().unwrap(),
        h["p99_5"].as_f64().unwrap(),
        h["max"].as_f64().unwrap(),
    );
    assert!(min <= lo && lo < hi && hi <= max, "{h}");
    // The exact percentiles, computed here from the raw samples, within one bin.
    let mut all: Vec<u16> = (0..5)
        .flat_map(|z| raw(&s, &format!("/api/slice/2/{z}.raw")).2)
        .collect();
    all.sort_unstable();
    let bin = h["bin_width"].as_f64().unwrap();
    let exact = |p: f64| f64::from(all[((all.len() - 1) as f64 * p) as usize]);
    assert!(
        (lo - exact(0.005)).abs() <= bin + 1.0,
        "{lo} vs {}",
        exact(0.005)
    );
    assert!(
        (hi - exact(0.995)).abs() <= bin + 1.0,
        "{hi} vs {}",
        exact(0.995)
    );
}

#[test]
fn progress_says_what_each_level_has_stored() {
    let s = start();
    let p = s.json("/api/progress");
    let stored: Vec<(u64, u64)> = p["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["stored"].as_u64().unwrap(), l["depth"].as_u64().unwrap()))
        .collect();
    // The coarsest level's middle slice (the default window) and what it was made from.
    assert_eq!(stored[0], (20, 20));
    assert!(stored[2].0 >= 1 && stored[2].1 == 5, "{p}");
    get_png(&s, "/api/section/1/y/3.png");
    let p = s.json("/api/progress");
    assert_eq!(p["levels"][1]["stored"], 10, "{p}");
    assert!(p["levels"][1]["building"].is_null(), "{p}");
}

#[test]
fn stats_report_tiers_responses_demand_and_no_warmup_yet() {
    let s = start();
    get_png(&s, "/api/slice/1/3.png");
    get_png(&s, "/api/slice/1/3.png");
    get_png(&s, "/api/slice/1/4.png");
    let stats = s.json("/api/stats");
    for tier in ["memory", "disk"] {
        for counter in ["hits", "misses"] {
            assert!(stats[tier][counter].is_u64(), "{tier}.{counter} in {stats}");
        }
    }
    assert_eq!(stats["responses"]["hits"], 1, "{stats}");
    assert!(stats["responses"]["bytes"].as_u64().unwrap() > 0, "{stats}");
    let level1 = stats["demand"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["level"] == 1)
        .cloned()
        .unwrap_or_else(|| panic!("level 1 not in the demand: {stats}"));
    assert!(level1["score"].as_f64().unwrap() > 0.0, "{level1}");
    assert!(stats["warmup"].is_null(), "{stats}");
}

#[test]
fn requests_served_from_the_servers_caches_count_as_demand_previews_do_not() {
    let s = start();
    let score = |stats: &Value, level: u32| {
        stats["demand"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["level"] == level)
            .map_or(0.0, |d| d["score"].as_f64().unwrap())
    };
    // Level 2 once from the pyramid; then level 1's same slice six times: once from the
    // pyramid, five times from the response cache; then its other tile format (the decoded
    // slice cache).
    get_png(&s, "/api/slice/2/1.png");
    for _ in 0..6 {
        get_png(&s, "/api/slice/1/3.png");
    }
    raw(&s, "/api/slice/1/3.raw");
    let stats = s.json("/api/stats");
    assert_eq!(stats["responses"]["hits"], 5, "{stats}");
    // Every one of the seven level-1 requests counted (decay over a second is negligible).
    assert!(score(&stats, 1) > 6.5, "{stats}");
    assert!(score(&stats, 1) > 5.0 * score(&stats, 2), "{stats}");
    // A preview served from the response cache is not demand.
    let before = score(&stats, 2);
    for _ in 0..5 {
        get_png(&s, "/api/slice/2/1.png?preview=1");
    }
    let after = score(&s.json("/api/stats"), 2);
    assert!(
        after <= before + 1e-6,
        "previews counted: {before} -> {after}"
    );
}

/// Polls the stats until the warm-up has ended; returns it.
fn ended_warmup(s: &Server) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = s.json("/api/stats")["warmup"].clone();
        if w["finished"] == true && w["outcome"] != "running" {
            return w;
        }
        assert!(Instant::now() < deadline, "warm-up not ended: {w}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn warmup_runs_to_completion_and_can_be_cancelled() {
    let s = start();
    let reply = s.post("/api/warmup/cancel", &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["cancelled"], true);
    let reply = s.post("/api/warmup/start", &[]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["started"], true);
    let w = ended_warmup(&s);
    assert_eq!(w["outcome"], "completed", "{w}");
    assert_eq!(w["done"], w["total"], "{w}");
    // Same-origin requests from the page itself are accepted.
    let origin = s.base.clone();
    let reply = s.post(
        "/api/warmup/start",
        &[("Origin", &origin), ("Sec-Fetch-Site", "same-origin")],
    );
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = s.post("/api/warmup/cancel", &[("Origin", &origin)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let w = ended_warmup(&s);
    assert!(
        ["cancelled", "completed"].contains(&w["outcome"].as_str().unwrap()),
        "{w}"
    );
    s.assert_alive();
}

#[test]
fn warmup_is_never_reported_finished_yet_running() {
    let s = start();
    let deadline = Instant::now() + Duration::from_secs(4);
    let found = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for t in 0..8 {
            let (s, found) = (&s, &found);
            scope.spawn(move || {
                let mut n = 0;
                while Instant::now() < deadline && !found.load(Ordering::Relaxed) {
                    n += 1;
                    let w = if (t + n) % 2 == 0 {
                        s.post("/api/warmup/start", &[]).json()["warmup"].clone()
                    } else {
                        s.json("/api/stats")["warmup"].clone()
                    };
                    if w["finished"] == true && w["outcome"] == "running" {
                        found.store(true, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert!(
        !found.load(Ordering::Relaxed),
        "a warm-up was finished yet running"
    );
}

#[test]
fn out_of_range_level_or_index_is_404_naming_the_valid_range() {
    let s = start();
    for (target, wants) in [
        ("/api/slice/9/0.png", &["9", "0..=2"][..]),
        ("/api/slice/9/0.raw", &["0..=2"]),
        ("/api/slice/1/999.png", &["999", "0..=9"]),
        ("/api/slice/2/5.raw", &["0..=4"]),
        ("/api/section/1/x/999.png", &["999", "0..=149"]),
        ("/api/section/1/y/130.png", &["0..=129"]),
        ("/api/section/0/y/260.png", &["0..=259"]),
        ("/api/section/7/y/1.png", &["0..=2"]),
        ("/api/tile/9/0/0/0.png", &["0..=2"]),
    ] {
        let m = s.error(target, Some(404));
        for w in wants {
            assert!(m.contains(w), "{target}: {m}");
        }
    }
    s.assert_alive();
}

#[test]
fn non_numbers_and_bad_axes_are_400() {
    let s = start();
    for (target, culprit) in [
        ("/api/slice/one/2.png", "one"),
        ("/api/slice/1/x.png", "x"),
        ("/api/slice/-1/2.png", "-1"),
        ("/api/slice/1/-2.raw", "-2"),
        ("/api/slice/1/2.5.png", "2.5"),
        ("/api/slice/99999999999/2.png", "99999999999"),
        ("/api/section/two/x/3.png", "two"),
        ("/api/section/1/x/three.png", "three"),
    ] {
        let m = s.error(target, Some(400));
        assert!(
            m.contains(culprit) && m.contains("whole number"),
            "{target}: {m}"
        );
    }
    let m = s.error("/api/section/1/z/3.png", Some(400));
    assert!(m.contains("\"z\"") && m.contains("x or y"), "{m}");
}

fn request(s: &Server, method: &str, target: &str) -> Reply {
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(s.url(target))
        .body(())
        .unwrap();
    Reply::from(agent().run(req).unwrap())
}

#[test]
fn unknown_paths_extensions_and_methods_are_4xx_json() {
    let s = start();
    for target in [
        "/api/nothing",
        "/favicon.ico",
        "/api",
        "/api/slice/1",
        "/static/app.js",
    ] {
        let m = s.error(target, Some(404));
        assert!(m.contains(target), "{target}: {m}");
    }
    let m = s.error("/api/slice/1/2.jpg", Some(404));
    assert!(m.contains("jpg") && m.contains(".png"), "{m}");
    let m = s.error("/api/slice/1/2", Some(404));
    assert!(m.contains(".png"), "{m}");
    let m = s.error("/api/section/1/x/2.raw", Some(404));
    assert!(m.contains(".png"), "{m}");
    for (method, target, allow) in [
        ("DELETE", "/", "GET"),
        ("PUT", "/api/slice/1/3.png", "GET"),
        ("POST", "/api/stats", "GET"),
        ("POST", "/api/levels", "GET"),
        ("GET", "/api/warmup/start", "POST"),
        ("GET", "/api/warmup/cancel", "POST"),
        ("DELETE", "/api/warmup/start", "POST"),
    ] {
        let reply = request(&s, method, target);
        let m = reply.expect_error(target, Some(405));
        assert!(
            m.contains(target) && m.contains(method),
            "{method} {target}: {m}"
        );
        assert!(
            reply.header("allow").is_some_and(|a| a.contains(allow)),
            "{method} {target}: {:?}",
            reply.headers
        );
    }
    // HEAD is GET without the body.
    for (target, status) in [("/api/levels", 200), ("/api/nothing", 404)] {
        let reply = request(&s, "HEAD", target);
        assert_eq!(reply.status, status, "HEAD {target}");
        assert!(reply.body.is_empty(), "HEAD {target}");
    }
    s.assert_alive();
}

#[test]
fn path_traversal_never_serves_files() {
    let s = start();
    for target in [
        "/../../etc/passwd",
        "/api/slice/1/..%2F..%2Fetc%2Fpasswd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/api/../../../etc/passwd",
        "/..%2f..%2fetc%2fpasswd",
        "/api/slice/..%2f..%2f/3.png",
    ] {
        let reply = s.get(target);
        reply.expect_error(target, None);
        assert!(!reply.text().contains("root:"), "{target}");
        assert!(reply.body.len() < 1024, "{target}");
    }
    s.assert_alive();
}

#[test]
fn concurrent_good_and_bad_requests_are_all_answered() {
    let s = start();
    let targets = [
        ("/api/levels", 200),
        ("/api/slice/1/3.png", 200),
        ("/api/slice/2/4.png?min=100&max=2000", 200),
        ("/api/slice/0/7.raw", 200),
        ("/api/tile/0/7/0/0.png", 200),
        ("/api/section/2/x/5.png", 200),
        ("/api/stats", 200),
        ("/api/slice/9/0.png", 404),
        ("/api/slice/one/2.png", 400),
        ("/api/slice/1/2.png?min=10&max=2", 400),
        ("/api/nothing", 404),
    ];
    std::thread::scope(|scope| {
        for t in 0..8 {
            let s = &s;
            scope.spawn(move || {
                for i in 0..25 {
                    let (target, want) = targets[(t * 7 + i) % targets.len()];
                    let reply = s.get(target);
                    assert_eq!(reply.status, want, "{target}: {}", reply.text());
                    if want == 200 && target.contains(".png") {
                        assert!(reply.body.starts_with(b"\x89PNG"), "{target}");
                    } else if want != 200 {
                        reply.expect_error(target, None);
                    }
                }
            });
        }
    });
    s.assert_alive();
}

#[test]
fn cors_lets_other_origins_read_and_preflight_only_reads() {
    let s = start();
    let r = s.get_with(
        "/api/tile/1/0/0/0.png",
        &[("Origin", "https://viewer.example")],
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    let exposed = r
        .header("access-control-expose-headers")
        .unwrap_or("")
        .to_ascii_lowercase();
    for h in ["etag", "x-lodcache-source", "x-width"] {
        assert!(exposed.contains(h), "{exposed}");
    }
    let pre = ureq::http::Request::builder()
        .method("OPTIONS")
        .uri(s.url("/api/levels"))
        .header("Origin", "https://viewer.example")
        .header("Access-Control-Request-Method", "GET")
        .body(())
        .unwrap();
    let pre = Reply::from(agent().run(pre).unwrap());
    assert!(pre.status < 300, "{}", pre.status);
    let methods = pre.header("access-control-allow-methods").unwrap_or("");
    assert!(
        methods.contains("GET") && !methods.contains("POST"),
        "{methods}"
    );
}

#[test]
fn small_scans_still_get_coarse_levels_to_show() {
    // A 256-pixel MRI: the default edge (500) gives no level; serve goes down to 64 px.
    let tmp = tempfile::tempdir().unwrap();
    let stack = tmp.path().join("mri");
    Phantom::new(256, 200, 12).write(&stack).unwrap();
    let s = Server::start(&stack, &["--no-cache"]);
    let levels = s.json("/api/levels");
    let widths: Vec<u64> = levels["levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["width"].as_u64().unwrap())
        .collect();
    assert_eq!(widths, [256, 128, 64], "{levels}");
    get_png(&s, "/api/slice/2/1.png");
}
