//! The `viewer` example as a browser sees it: the binary cargo built next to this test serves a
//! small phantom on a free port, and every test speaks HTTP/1.1 to it over a plain
//! `TcpStream`. Good requests get the page, the levels, PNG and raw slices, sections, the
//! statistics and the warm-up; bad ones get a 4xx status with a useful JSON `{"error": ...}`
//! and the server keeps serving.

mod common;

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lodcache::Phantom;
use serde_json::Value;

/// The phantom every test serves. With `--edge 100` its levels are 300 x 260 x 20,
/// 150 x 130 x 10 and 75 x 65 x 5 (a level is made while the larger side exceeds the edge;
/// `--edge 64` would add a fourth, 37 x 32 x 3).
const SIZE: (u32, u32, u32) = (300, 260, 20);
const EDGE: &str = "100";
const LEVELS: [(u32, u32, u32); 3] = [(300, 260, 20), (150, 130, 10), (75, 65, 5)];

/// How long the server may take to start, and to answer one request.
const START_TIMEOUT: Duration = Duration::from_secs(15);
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A running viewer; dropping it kills the server, so a failing test leaks no process.
struct Viewer {
    child: Child,
    port: u16,
    _tmp: tempfile::TempDir,
}

impl Drop for Viewer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Viewer {
    /// Writes the phantom to a fresh folder and starts the viewer on it with `--port 0` and a
    /// cache folder of its own; the port comes from the first line of its output.
    fn start() -> Viewer {
        let tmp = tempfile::tempdir().unwrap();
        let stack = tmp.path().join("stack");
        Phantom::new(SIZE.0, SIZE.1, SIZE.2).write(&stack).unwrap();
        let child = Command::new(common::example_binary("viewer"))
            .arg(&stack)
            .args(["--edge", EDGE, "--port", "0", "--cache"])
            .arg(tmp.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // The guard exists before anything can fail, so the child is killed on every path.
        let mut viewer = Viewer {
            child,
            port: 0,
            _tmp: tmp,
        };
        let stdout = viewer.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            // Keep draining so the server never blocks on (or fails writing to) a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("reading the viewer's output: {e}"),
            Err(_) => panic!("the viewer printed no line in {START_TIMEOUT:?}"),
        };
        let prefix = "lodcache viewer on http://127.0.0.1:";
        let port = line
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('/').next())
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; status {:?}",
                    viewer.child.try_wait()
                )
            });
        assert_ne!(port, 0, "{line}");
        viewer.port = port;
        viewer
    }

    /// Sends one request and reads the whole response.
    fn try_request(
        &self,
        method: &str,
        target: &str,
        body: Option<&[u8]>,
    ) -> std::io::Result<Reply> {
        request(self.port, method, target, body)
    }

    fn request(&self, method: &str, target: &str, body: Option<&[u8]>) -> Reply {
        self.try_request(method, target, body)
            .unwrap_or_else(|e| panic!("{method} {target}: {e}"))
    }

    fn get(&self, target: &str) -> Reply {
        self.request("GET", target, None)
    }

    /// A 200 JSON answer to `GET target`.
    fn get_json(&self, target: &str) -> Value {
        let reply = self.get(target);
        assert_eq!(reply.status, 200, "GET {target}: {}", reply.text());
        reply.json()
    }

    /// A 200 PNG answer to `GET target`, with its image and where the server took it from.
    fn get_png(&self, target: &str) -> (image::GrayImage, String, Reply) {
        let reply = self.get(target);
        assert_eq!(reply.status, 200, "GET {target}: {}", reply.text());
        assert_eq!(reply.header("content-type"), Some("image/png"), "{target}");
        assert!(
            reply.body.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{target}: not a PNG"
        );
        assert_eq!(&reply.body[12..16], b"IHDR", "{target}: first chunk");
        let from = reply
            .header("x-lodcache-source")
            .unwrap_or_else(|| panic!("{target}: no X-Lodcache-Source"))
            .to_string();
        let ms = reply
            .header("x-lodcache-ms")
            .unwrap_or_else(|| panic!("{target}: no X-Lodcache-Ms"));
        let ms: f64 = ms
            .parse()
            .unwrap_or_else(|_| panic!("{target}: X-Lodcache-Ms {ms:?} is not a number"));
        assert!(ms.is_finite() && ms >= 0.0, "{target}: {ms} ms");
        let image = image::load_from_memory_with_format(&reply.body, image::ImageFormat::Png)
            .unwrap_or_else(|e| panic!("{target}: {e}"))
            .to_luma8();
        (image, from, reply)
    }

    /// The samples of slice `z` of `level` from the raw endpoint, with its width and height.
    fn raw(&self, level: u32, z: u32) -> (u32, u32, Vec<u16>) {
        let target = format!("/api/slice/{level}/{z}.raw");
        let reply = self.get(&target);
        assert_eq!(reply.status, 200, "{target}: {}", reply.text());
        let number = |name: &str| -> u32 {
            reply
                .header(name)
                .unwrap_or_else(|| panic!("{target}: no {name}"))
                .parse()
                .unwrap()
        };
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

    /// A 4xx JSON `{"error": ...}` answer; returns the message.
    fn expect_error(&self, method: &str, target: &str, status: Option<u16>) -> String {
        let reply = self.request(method, target, None);
        reply.expect_error(&format!("{method} {target}"), status)
    }

    /// The server still answers.
    fn assert_alive(&self) {
        let levels = self.get_json("/api/levels");
        assert_eq!(levels["levels"].as_array().map(Vec::len), Some(3));
    }
}

/// An HTTP response: status, headers (names lower-cased) and the decoded body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        assert!(
            self.header("content-type")
                .is_some_and(|t| t.starts_with("application/json")),
            "not JSON: {:?} {}",
            self.headers,
            self.text()
        );
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("bad JSON ({e}): {}", self.text()))
    }

    /// Asserts a 4xx status (exactly `status` when given) and a JSON body `{"error": msg}`
    /// with a non-empty message, and returns the message.
    fn expect_error(&self, what: &str, status: Option<u16>) -> String {
        assert!(
            (400..500).contains(&self.status),
            "{what}: status {} ({})",
            self.status,
            self.text()
        );
        if let Some(status) = status {
            assert_eq!(self.status, status, "{what}: {}", self.text());
        }
        let json = self.json();
        let message = json["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no error message in {json}"));
        assert!(message.len() > 5, "{what}: message {message:?}");
        message.to_string()
    }
}

/// Sends `method target` with `Connection: close` (and `body` when given) and reads the
/// response to the end of the connection, decoding chunked transfer encoding.
fn request(port: u16, method: &str, target: &str, body: Option<&[u8]>) -> std::io::Result<Reply> {
    request_with(port, method, target, body, "")
}

/// [`request`] with `extra` header lines (each ending in `\r\n`).
fn request_with(
    port: u16,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
    extra: &str,
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let body = body.unwrap_or_default();
    let mut out = format!(
        "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n{extra}"
    )
    .into_bytes();
    if !body.is_empty() || method != "GET" {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw)
}

fn bad(what: impl Into<String>) -> std::io::Error {
    std::io::Error::new(ErrorKind::InvalidData, what.into())
}

fn parse_response(raw: &[u8]) -> std::io::Result<Reply> {
    if raw.is_empty() {
        return Err(std::io::Error::new(
            ErrorKind::UnexpectedEof,
            "connection closed without a response",
        ));
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut words = status_line.splitn(3, ' ');
    let version = words.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(bad(format!("status line {status_line:?}")));
    }
    let status = words
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| bad(format!("status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(format!("header line {line:?}")))?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let rest = &raw[end + 4..];
    let find = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let chunked = find("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        decode_chunked(rest)?
    } else if let Some(len) = find("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| bad(format!("Content-Length {len:?}")))?;
        if rest.len() < len {
            return Err(bad(format!("body of {} bytes, not {len}", rest.len())));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// Decodes a chunked body: `<hex size>[;ext]\r\n<data>\r\n` ... `0\r\n[trailers]\r\n`.
fn decode_chunked(mut rest: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("chunk size line not ended"))?;
        let line = std::str::from_utf8(&rest[..eol]).map_err(|_| bad("chunk size not ASCII"))?;
        let hex = line.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(hex, 16).map_err(|_| bad(format!("chunk size {line:?}")))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return Err(bad("truncated chunk"));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The viewer's windowing of one sample to 8-bit gray.
fn gray(v: u16, (lo, hi): (f64, f64)) -> u8 {
    let scale = 255.0 / (hi - lo);
    ((f64::from(v) - lo) * scale).round().clamp(0.0, 255.0) as u8
}

/// Asserts that every pixel is the windowed sample, give or take rounding.
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

#[test]
fn the_test_client_decodes_chunked_bodies() {
    let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A:  b \r\n\r\n\
                5\r\nhello\r\n1;ext=1\r\n \r\nA\r\n0123456789\r\n0\r\nTrailer: x\r\n\r\n";
    let reply = parse_response(raw).unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-a"), Some("b"));
    assert_eq!(reply.body, b"hello 0123456789");
    assert!(
        parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel").is_err()
    );
    assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort").is_err());
    assert!(parse_response(b"").is_err());
}

#[test]
fn index_page_is_html_naming_lodcache() {
    let viewer = Viewer::start();
    for target in ["/", "/index.html"] {
        let reply = viewer.get(target);
        assert_eq!(reply.status, 200, "{target}");
        assert!(
            reply
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{target}: {:?}",
            reply.headers
        );
        let page = reply.text();
        assert!(
            page.to_ascii_lowercase().contains("<html"),
            "{target}: {page}"
        );
        assert!(page.contains("lodcache"), "{target}: {page}");
    }
}

#[test]
fn levels_lists_the_three_level_sizes_and_a_window() {
    let viewer = Viewer::start();
    let json = viewer.get_json("/api/levels");
    let levels = json["levels"].as_array().expect("levels array");
    let sizes: Vec<(u64, u64, u64, u64)> = levels
        .iter()
        .map(|l| {
            assert_eq!(l["sample_type"], "u16", "{l}");
            (
                l["level"].as_u64().unwrap(),
                l["width"].as_u64().unwrap(),
                l["height"].as_u64().unwrap(),
                l["depth"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(u64, u64, u64, u64)> = LEVELS
        .iter()
        .enumerate()
        .map(|(i, &(w, h, d))| (i as u64, w.into(), h.into(), d.into()))
        .collect();
    assert_eq!(sizes, want, "{json}");
    let window = json["window"].as_array().expect("window array");
    assert_eq!(window.len(), 2, "{json}");
    let (lo, hi) = (window[0].as_f64().unwrap(), window[1].as_f64().unwrap());
    assert!(lo.is_finite() && hi.is_finite() && lo < hi, "{json}");
    // The coarsest level's value range: 16-bit numbers.
    assert!(lo >= 0.0 && hi <= 65535.0, "{json}");
}

#[test]
fn slice_png_has_the_level_size_and_a_second_request_comes_from_memory() {
    let viewer = Viewer::start();
    let (image, from, _) = viewer.get_png("/api/slice/1/3.png");
    assert_eq!(image.dimensions(), (150, 130));
    assert!(
        ["memory", "disk", "generated"].contains(&from.as_str()),
        "X-Lodcache-Source {from}"
    );
    let (again, from, reply) = viewer.get_png("/api/slice/1/3.png");
    // The IHDR chunk, read by hand: width and height big-endian.
    let be = |at: usize| u32::from_be_bytes(reply.body[at..at + 4].try_into().unwrap());
    assert_eq!((be(16), be(20)), (150, 130));
    assert_eq!(from, "memory");
    assert_eq!(again, image, "the same slice twice gave different images");
    // Every level, first and last slice.
    for (level, &(w, h, d)) in LEVELS.iter().enumerate() {
        for z in [0, d - 1] {
            let (image, _, _) = viewer.get_png(&format!("/api/slice/{level}/{z}.png"));
            assert_eq!(image.dimensions(), (w, h), "level {level} slice {z}");
        }
    }
}

#[test]
fn raw_slice_is_the_phantom_samples_little_endian() {
    let viewer = Viewer::start();
    let reply = viewer.get("/api/slice/0/2.raw");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-width"), Some("300"));
    assert_eq!(reply.header("x-height"), Some("260"));
    assert_eq!(reply.header("x-sample-type"), Some("u16"));
    assert!(reply.header("x-lodcache-source").is_some());
    assert_eq!(reply.body.len(), 300 * 260 * 2);
    let phantom = Phantom::new(SIZE.0, SIZE.1, SIZE.2).slice(2);
    let want: Vec<u8> = phantom
        .samples::<u16>()
        .expect("a u16 phantom")
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    assert!(reply.body == want, "slice 2 differs from the phantom's");
    // The same when the client also accepts chunked transfer encoding (either framing will do).
    let chunked = request_with(
        viewer.port,
        "GET",
        "/api/slice/0/2.raw",
        None,
        "TE: chunked\r\n",
    )
    .unwrap();
    assert_eq!(chunked.status, 200);
    assert!(
        chunked.body == want,
        "slice 2 with TE: chunked differs from the phantom's"
    );
    // A level above: the size of that level.
    let (w, h, samples) = viewer.raw(2, 4);
    assert_eq!((w, h, samples.len()), (75, 65, 75 * 65));
}

#[test]
fn sections_are_pngs_of_width_or_height_by_depth() {
    let viewer = Viewer::start();
    let (across_y, from, _) = viewer.get_png("/api/section/2/y/10.png");
    assert_eq!(across_y.dimensions(), (75, 5));
    assert!(["memory", "generated"].contains(&from.as_str()), "{from}");
    let (across_x, _, _) = viewer.get_png("/api/section/2/x/10.png");
    assert_eq!(across_x.dimensions(), (65, 5));
    // Row z of a section is row (or column) 10 of slice z.
    let window = {
        let w = viewer.get_json("/api/levels")["window"].clone();
        (w[0].as_f64().unwrap(), w[1].as_f64().unwrap())
    };
    let slices: Vec<Vec<u16>> = (0..5).map(|z| viewer.raw(2, z).2).collect();
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
}

#[test]
fn min_and_max_in_the_query_set_the_contrast_window() {
    let viewer = Viewer::start();
    let window = (100.0, 2000.0);
    let (_, _, samples) = viewer.raw(1, 3);
    let (image, _, _) = viewer.get_png("/api/slice/1/3.png?min=100&max=2000");
    assert_windowed("slice ?min=100&max=2000", &image, &samples, window);
    // Query values are percent-decoded: %31 is "1", %2B is "+".
    let (image, _, _) = viewer.get_png("/api/slice/1/3.png?%6Din=%2B%31e2&max=2%30%30%30");
    assert_windowed("slice, escaped window", &image, &samples, window);
    let message = viewer.expect_error("GET", "/api/slice/1/3.png?min=%FF", Some(400));
    assert!(message.contains("%FF"), "{message}");
    // A window inside the samples' range, so that it is not all black or white.
    let (lo, hi) = (
        f64::from(*samples.iter().min().unwrap()),
        f64::from(*samples.iter().max().unwrap()),
    );
    let (a, b) = (
        (lo + (hi - lo) * 0.25).round(),
        (lo + (hi - lo) * 0.75).round(),
    );
    let (image, _, _) = viewer.get_png(&format!("/api/slice/1/3.png?min={a}&max={b}"));
    assert_windowed("slice, mid window", &image, &samples, (a, b));
    let distinct: std::collections::BTreeSet<u8> = image.as_raw().iter().copied().collect();
    assert!(distinct.len() > 10, "{} gray levels", distinct.len());
    // Only one bound: the other is the default's.
    let (image, _, _) = viewer.get_png(&format!("/api/slice/1/3.png?max={b}"));
    assert_eq!(image.dimensions(), (150, 130));
    // Sections take the window too.
    let (section, _, _) = viewer.get_png("/api/section/2/y/10.png?min=100&max=2000");
    assert_eq!(section.dimensions(), (75, 5));
    let row: Vec<u16> = (0..5)
        .flat_map(|z| viewer.raw(2, z).2[10 * 75..11 * 75].to_vec())
        .collect();
    assert_windowed("section ?min=100&max=2000", &section, &row, window);
}

#[test]
fn stats_report_tiers_demand_and_no_warmup_yet() {
    let viewer = Viewer::start();
    viewer.get_png("/api/slice/1/3.png");
    viewer.get_png("/api/slice/1/3.png");
    viewer.get_png("/api/slice/1/4.png");
    let stats = viewer.get_json("/api/stats");
    for tier in ["memory", "disk"] {
        for counter in ["hits", "misses"] {
            assert!(stats[tier][counter].is_u64(), "{tier}.{counter} in {stats}");
        }
    }
    let memory = &stats["memory"];
    assert!(
        memory["hits"].as_u64().unwrap() + memory["misses"].as_u64().unwrap() > 0,
        "three slice requests and no memory lookup: {stats}"
    );
    let demand = stats["demand"].as_array().expect("demand array");
    let level1 = demand
        .iter()
        .find(|d| d["level"] == 1)
        .unwrap_or_else(|| panic!("level 1 not in the demand after asking for it: {stats}"));
    let (score, share) = (
        level1["score"].as_f64().unwrap(),
        level1["share"].as_f64().unwrap(),
    );
    assert!(score > 0.0 && share > 0.0 && share <= 1.0, "{level1}");
    assert!(stats["warmup"].is_null(), "{stats}");
}

#[test]
fn warmup_runs_to_completion_and_can_be_cancelled() {
    let viewer = Viewer::start();
    // Cancelling when nothing runs is harmless.
    let reply = viewer.request("POST", "/api/warmup/cancel", None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["cancelled"], true);

    let reply = viewer.request("POST", "/api/warmup/start", None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let started = reply.json();
    assert_eq!(started["started"], true, "{started}");
    assert!(started["warmup"].is_object(), "{started}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let warmup = loop {
        let stats = viewer.get_json("/api/stats");
        let warmup = stats["warmup"].clone();
        assert!(warmup.is_object(), "{stats}");
        // A run that ends while the answer is made may read {finished: true, outcome:
        // "running"} (see warmup_is_never_reported_finished_yet_running); the next look has
        // the outcome.
        if warmup["finished"] == true && warmup["outcome"] != "running" {
            break warmup;
        }
        assert!(Instant::now() < deadline, "warm-up not finished: {stats}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(warmup["outcome"], "completed", "{warmup}");
    assert_eq!(warmup["done"], warmup["total"], "{warmup}");

    // Start again and cancel at once: 200, and the run ends (cancelled, or completed when it
    // had nothing left to do).
    let reply = viewer.request("POST", "/api/warmup/start", None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = viewer.request("POST", "/api/warmup/cancel", None);
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["cancelled"], true);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let warmup = viewer.get_json("/api/stats")["warmup"].clone();
        if warmup["finished"] == true && warmup["outcome"] != "running" {
            let outcome = warmup["outcome"].as_str().unwrap();
            assert!(["cancelled", "completed"].contains(&outcome), "{warmup}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cancelled warm-up not ended: {warmup}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    viewer.assert_alive();
}

#[test]
fn out_of_range_level_or_index_is_404_naming_the_valid_range() {
    let viewer = Viewer::start();
    let message = viewer.expect_error("GET", "/api/slice/9/0.png", Some(404));
    assert!(
        message.contains('9') && message.contains("0..=2"),
        "{message}"
    );
    let message = viewer.expect_error("GET", "/api/slice/9/0.raw", Some(404));
    assert!(message.contains("0..=2"), "{message}");
    let message = viewer.expect_error("GET", "/api/slice/1/999.png", Some(404));
    assert!(
        message.contains("999") && message.contains("0..=9"),
        "{message}"
    );
    let message = viewer.expect_error("GET", "/api/slice/2/5.raw", Some(404));
    assert!(message.contains("0..=4"), "{message}");
    let message = viewer.expect_error("GET", "/api/section/1/x/999.png", Some(404));
    assert!(
        message.contains("999") && message.contains("0..=149"),
        "{message}"
    );
    let message = viewer.expect_error("GET", "/api/section/1/y/130.png", Some(404));
    assert!(message.contains("0..=129"), "{message}");
    let message = viewer.expect_error("GET", "/api/section/7/y/1.png", Some(404));
    assert!(message.contains("0..=2"), "{message}");
    viewer.assert_alive();
}

#[test]
fn non_numbers_and_bad_axes_are_400() {
    let viewer = Viewer::start();
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
        let message = viewer.expect_error("GET", target, Some(400));
        assert!(message.contains(culprit), "{target}: {message}");
        assert!(message.contains("whole number"), "{target}: {message}");
    }
    let message = viewer.expect_error("GET", "/api/section/1/z/3.png", Some(400));
    assert!(
        message.contains("\"z\"") && message.contains("x or y"),
        "{message}"
    );
    viewer.assert_alive();
}

#[test]
fn absurd_windows_are_400() {
    let viewer = Viewer::start();
    for (query, culprit) in [
        ("min=5&max=5", "min"),
        ("min=10&max=2", "min"),
        ("min=nan", "min"),
        ("min=1e400", "min"),
        ("max=abc", "max"),
        ("max=", "max"),
        ("min=-inf", "min"),
        ("gamma=2", "gamma"),
    ] {
        for path in ["/api/slice/1/3.png", "/api/section/1/y/3.png"] {
            let target = format!("{path}?{query}");
            let message = viewer.expect_error("GET", &target, Some(400));
            assert!(message.contains(culprit), "{target}: {message}");
        }
    }
    viewer.assert_alive();
}

#[test]
fn unknown_paths_extensions_and_methods_are_4xx_json() {
    let viewer = Viewer::start();
    for target in [
        "/api/nothing",
        "/favicon.ico",
        "/api",
        "/api/slice/1",
        "/static/app.js",
    ] {
        let message = viewer.expect_error("GET", target, Some(404));
        assert!(message.contains(target), "{target}: {message}");
    }
    let message = viewer.expect_error("GET", "/api/slice/1/2.jpg", Some(404));
    assert!(
        message.contains("jpg") && message.contains(".png"),
        "{message}"
    );
    let message = viewer.expect_error("GET", "/api/slice/1/2", Some(404));
    assert!(message.contains(".png"), "{message}");
    let message = viewer.expect_error("GET", "/api/section/1/x/2.raw", Some(404));
    assert!(message.contains(".png"), "{message}");
    // Wrong methods, with and without a body.
    let reply = viewer.request("POST", "/api/levels", Some(b"{\"level\": 1}"));
    let message = reply.expect_error("POST /api/levels", None);
    assert!(message.contains("POST"), "{message}");
    for (method, target, allow) in [
        ("DELETE", "/", "GET"),
        ("PUT", "/api/slice/1/3.png", "GET"),
        ("POST", "/api/stats", "GET"),
        ("GET", "/api/warmup/start", "POST"),
        ("GET", "/api/warmup/cancel", "POST"),
        ("DELETE", "/api/warmup/start", "POST"),
    ] {
        let reply = viewer.request(method, target, None);
        let message = reply.expect_error(target, Some(405));
        assert!(message.contains(target), "{method} {target}: {message}");
        assert_eq!(reply.header("allow"), Some(allow), "{method} {target}");
    }
    // HEAD is GET without the body, whatever the status.
    for (target, status) in [("/api/levels", 200), ("/api/nothing", 404)] {
        let reply = viewer.request("HEAD", target, None);
        assert_eq!(reply.status, status, "HEAD {target}");
        assert!(reply.body.is_empty(), "HEAD {target}: {}", reply.text());
    }
    viewer.assert_alive();
}

#[test]
fn path_traversal_never_serves_files() {
    let viewer = Viewer::start();
    for target in [
        "/../../etc/passwd",
        "/api/slice/1/..%2F..%2Fetc%2Fpasswd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/api/../../../etc/passwd",
        "/api/slice/1/../../../../etc/passwd",
        "/..%2f..%2fetc%2fpasswd",
        "/api/slice/..%2f..%2f/3.png",
    ] {
        let reply = viewer.get(target);
        let message = reply.expect_error(target, None);
        assert!(
            !reply.text().contains("root:"),
            "{target}: {}",
            reply.text()
        );
        assert!(
            reply.body.len() < 1024,
            "{target}: {} bytes",
            reply.body.len()
        );
        assert!(!message.is_empty());
    }
    viewer.assert_alive();
}

#[test]
fn huge_url_is_refused_or_dropped_without_a_crash() {
    let mut viewer = Viewer::start();
    for target in [
        format!("/{}", "a".repeat(8192)),
        format!("/api/slice/1/{}.png", "7".repeat(8192)),
        format!("/api/slice/1/3.png?min=1&{}", "x=1&".repeat(2048)),
    ] {
        match viewer.try_request("GET", &target, None) {
            // Refused by the HTTP layer (its own plain-text 4xx) or by the viewer (JSON).
            Ok(reply) => assert!(
                (400..500).contains(&reply.status),
                "a huge URL: status {} ({})",
                reply.status,
                reply.text()
            ),
            Err(e) => assert!(
                !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                "a huge URL got no answer in {IO_TIMEOUT:?}: {e}"
            ),
        }
    }
    assert!(
        viewer.child.try_wait().unwrap().is_none(),
        "the viewer exited"
    );
    viewer.assert_alive();
}

#[test]
fn concurrent_good_and_bad_requests_are_all_answered() {
    let viewer = Viewer::start();
    let targets = [
        ("GET", "/api/levels", 200),
        ("GET", "/api/slice/1/3.png", 200),
        ("GET", "/api/slice/2/4.png?min=100&max=2000", 200),
        ("GET", "/api/slice/0/7.raw", 200),
        ("GET", "/api/section/2/x/5.png", 200),
        ("GET", "/api/stats", 200),
        ("GET", "/api/slice/9/0.png", 404),
        ("GET", "/api/slice/one/2.png", 400),
        ("GET", "/api/slice/1/2.png?min=10&max=2", 400),
        ("GET", "/../../etc/passwd", 404),
        ("POST", "/api/levels", 405),
        ("GET", "/api/nothing", 404),
    ];
    let started = Instant::now();
    let answered: usize = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let viewer = &viewer;
                scope.spawn(move || {
                    for i in 0..25 {
                        let (method, target, want) = targets[(t * 7 + i) % targets.len()];
                        let reply = viewer.request(method, target, None);
                        assert!(reply.status < 500, "{method} {target}: {}", reply.status);
                        assert!(
                            reply.status == want
                                || want != 200 && (400..500).contains(&reply.status),
                            "{method} {target}: {} not {want}: {}",
                            reply.status,
                            reply.text()
                        );
                        if want == 200 {
                            if target.contains(".png") {
                                assert!(reply.body.starts_with(b"\x89PNG"), "{target}");
                            } else if target.ends_with(".raw") {
                                assert_eq!(reply.body.len(), 300 * 260 * 2, "{target}");
                            } else {
                                reply.json();
                            }
                        } else {
                            reply.expect_error(target, None);
                        }
                    }
                    25
                })
            })
            .collect();
        threads.into_iter().map(|t| t.join().unwrap()).sum()
    });
    assert_eq!(answered, 200);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    viewer.assert_alive();
}

#[test]
fn warmup_is_never_reported_finished_yet_running() {
    let viewer = Viewer::start();
    let deadline = Instant::now() + Duration::from_secs(4);
    let found = AtomicBool::new(false);
    let seen: Vec<Value> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let (viewer, found) = (&viewer, &found);
                scope.spawn(move || {
                    let mut n = 0;
                    while Instant::now() < deadline && !found.load(Ordering::Relaxed) {
                        n += 1;
                        let warmup = if (t + n) % 2 == 0 {
                            let reply = viewer.request("POST", "/api/warmup/start", None);
                            reply.json()["warmup"].clone()
                        } else {
                            viewer.get_json("/api/stats")["warmup"].clone()
                        };
                        if warmup["finished"] == true && warmup["outcome"] == "running" {
                            found.store(true, Ordering::Relaxed);
                            return Some(warmup);
                        }
                    }
                    None
                })
            })
            .collect();
        threads
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect()
    });
    assert!(seen.is_empty(), "finished yet running: {seen:?}");
}

#[test]
fn clients_withholding_an_announced_body_do_not_freeze_the_server() {
    let viewer = Viewer::start();
    // Each connection announces a body it never sends: the server waits for it on that
    // connection alone and goes on serving the others.
    let held: Vec<TcpStream> = (0..16)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", viewer.port)).unwrap();
            s.write_all(b"POST /api/levels HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    let mut probe = TcpStream::connect(("127.0.0.1", viewer.port)).unwrap();
    probe
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    probe
        .write_all(b"GET /api/levels HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let answered = probe.read_to_end(&mut raw);
    drop(held);
    let reply = answered.map(|_| parse_response(&raw));
    assert!(
        matches!(&reply, Ok(Ok(r)) if r.status == 200),
        "GET /api/levels with 16 bodies withheld: {reply:?}"
    );
    viewer.assert_alive();
}

#[test]
fn many_keep_alive_connections_opened_at_once_are_all_served() {
    // A browser opens several connections at once and keeps them open. tiny_http 0.12 left a
    // connection's request unread when more connections arrived together than it had idle
    // threads, until another connection closed: the viewer page then never finished loading.
    let viewer = Viewer::start();
    let targets = ["/api/levels", "/api/stats", "/api/slice/2/1.png", "/"];
    // Rounds of growing bursts: a round's connections close before the next, so the server
    // starts each burst with idle threads to hand connections to.
    for (round, n) in [4, 8, 12, 16, 24, 32].into_iter().enumerate() {
        let mut conns: Vec<TcpStream> = (0..n)
            .map(|_| TcpStream::connect(("127.0.0.1", viewer.port)).unwrap())
            .collect();
        for (i, c) in conns.iter_mut().enumerate() {
            let target = targets[i % targets.len()];
            c.write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .unwrap();
        }
        for (i, c) in conns.iter_mut().enumerate() {
            c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut head = [0u8; 12];
            c.read_exact(&mut head).unwrap_or_else(|e| {
                panic!("round {round}: connection {i} of {n} not answered in 5 s: {e}")
            });
            assert_eq!(&head, b"HTTP/1.1 200", "round {round}, connection {i}");
        }
        drop(conns);
        // Time for the server to see them closed and have its threads idle again.
        std::thread::sleep(Duration::from_millis(200));
    }
    viewer.assert_alive();
}
