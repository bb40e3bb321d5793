//! Serves a stack over HTTP to a web page that browses it while lodcache builds what is shown.
//!
//! ```text
//! cargo run --release --example viewer -- [STACK] [--port P] [--cache DIR] [--edge N]
//! ```
//! No STACK: the built-in phantom. Open `http://127.0.0.1:8080/`. `--port 0` picks a free port;
//! the address is printed on the first line of output.
//!
//! API: `GET /api/levels`, `GET /api/slice/{level}/{z}.png?min=&max=` (windowed to 8-bit),
//! `GET /api/slice/{level}/{z}.raw` (little-endian samples; size in `X-Width`, `X-Height`,
//! `X-Sample-Type`), `GET /api/section/{level}/{x|y}/{index}.png?min=&max=`, `GET /api/stats`,
//! `POST /api/warmup/start`, `POST /api/warmup/cancel`. Image responses carry
//! `X-Lodcache-Source` (memory, disk, generated, source) and `X-Lodcache-Ms`. `HEAD` is
//! answered as `GET` without the body. Bad requests get a 4xx status and a JSON
//! `{"error": ...}`, except those the HTTP layer refuses before the viewer sees them (headers
//! over 8 KiB, no `Host`, an unsupported `Expect`), which get its plain-text 4xx.
//!
//! One thread per connection, at most 256 at once; a connection is never timed out (an idle
//! one would otherwise get an unasked error reply), so it lasts until the client closes it.
//! Requests pipelined on one connection are not supported (browsers do not pipeline).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use image::ImageEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use lodcache::{
    Axis, Error, Pixels, Pyramid, Slice, WarmupHandle, WarmupOptions, WarmupOutcome,
    WarmupProgress, sample_stack,
};
use oxhttp::model::{Body, Method, Request, Response};
use oxhttp::{ListeningServer, Server};
use serde_json::{Value, json};

const PAGE: &str = include_str!("assets/viewer.html");
/// Connections served at once, one thread each (a browser opens up to six). No timeout: the
/// server oxhttp answers a timed-out read, even on an idle keep-alive connection, with an
/// unasked 500 that a client may take for the reply to its next request.
const CONNECTIONS: usize = 256;

struct Args {
    stack: Option<PathBuf>,
    port: u16,
    cache: Option<PathBuf>,
    edge: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        stack: None,
        port: 8080,
        cache: None,
        edge: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match a.as_str() {
            "--port" => {
                let v = value("--port")?;
                args.port = v
                    .parse()
                    .map_err(|_| format!("--port takes a port number, not {v:?}"))?;
            }
            "--cache" => args.cache = Some(PathBuf::from(value("--cache")?)),
            "--edge" => {
                let v = value("--edge")?;
                args.edge = Some(
                    v.parse()
                        .map_err(|_| format!("--edge takes a whole number, not {v:?}"))?,
                );
            }
            "-h" | "--help" => {
                return Err("usage: viewer [STACK] [--port P] [--cache DIR] [--edge N]".into());
            }
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ if args.stack.is_none() => args.stack = Some(PathBuf::from(a)),
            _ => return Err("too many arguments: viewer [STACK] [options]".into()),
        }
    }
    Ok(args)
}

/// A request's failure: an HTTP status and a message for the JSON body.
struct Fail(u16, String);

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        match e {
            Error::InvalidArgument { .. } => Fail(404, e.to_string()),
            other => Fail(500, other.to_string()),
        }
    }
}

/// A reply before it meets the HTTP layer: status, headers and body.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    /// A reply of `body` as `content_type`, not to be cached by the browser.
    fn new(status: u16, content_type: &str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: vec![
                ("Content-Type", content_type.to_string()),
                ("Cache-Control", "no-store".to_string()),
            ],
            body,
        }
    }

    fn with(mut self, name: &'static str, value: impl Into<String>) -> Reply {
        self.headers.push((name, value.into()));
        self
    }

    fn into_response(self) -> Response<Body> {
        let mut response = Response::builder().status(self.status);
        for (name, value) in &self.headers {
            response = response.header(*name, value.as_str());
        }
        // Names are literals and values numbers or our own ASCII words, so this holds; if it
        // ever did not, the client gets a 500 rather than a dropped connection.
        response.body(Body::from(self.body)).unwrap_or_else(|e| {
            let mut fallback = Response::new(Body::from(format!("bad reply header: {e}")));
            *fallback.status_mut() = oxhttp::model::StatusCode::INTERNAL_SERVER_ERROR;
            fallback
        })
    }
}

fn json_reply(status: u16, body: &Value) -> Reply {
    Reply::new(status, "application/json", body.to_string().into_bytes())
}

struct App {
    pyr: Pyramid,
    /// The default contrast window: the value range of the coarsest level's middle slice.
    window: (f64, f64),
    warmup: Mutex<Warmup>,
}

/// The value range of a slice's samples.
fn range(pixels: &Pixels) -> (f64, f64) {
    let mut lo = f64::INFINITY;
    let mut hi = f64::NEG_INFINITY;
    let mut see = |v: f64| {
        if v.is_finite() {
            lo = lo.min(v);
            hi = hi.max(v);
        }
    };
    match pixels {
        Pixels::U8(v) => v.iter().for_each(|&x| see(f64::from(x))),
        Pixels::U16(v) => v.iter().for_each(|&x| see(f64::from(x))),
        Pixels::F32(v) => v.iter().for_each(|&x| see(f64::from(x))),
        _ => {}
    }
    if lo > hi {
        (0.0, 1.0)
    } else {
        (lo, hi.max(lo + 1.0))
    }
}

/// A query key or value with its `%XX` escapes (and `+` for space) decoded.
fn decode(part: &str) -> Result<String, Fail> {
    let spaced = part.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| Fail(400, format!("{part:?} is not UTF-8 once decoded")))
}

/// `?min=&max=` or the default window; refuses non-numbers, NaN and empty or reversed windows.
fn window(query: &str, default: (f64, f64)) -> Result<(f64, f64), Fail> {
    let (mut lo, mut hi) = default;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (decode(k)?, decode(v)?);
        let (k, v) = (k.as_str(), v.as_str());
        let parse = |v: &str| -> Result<f64, Fail> {
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && x.abs() < 1e12)
                .ok_or_else(|| Fail(400, format!("{k}={v:?} is not a finite number")))
        };
        match k {
            "min" => lo = parse(v)?,
            "max" => hi = parse(v)?,
            _ => {
                return Err(Fail(
                    400,
                    format!("unknown parameter {k:?}; use min and max"),
                ));
            }
        }
    }
    if hi <= lo {
        return Err(Fail(400, format!("window min {lo} must be below max {hi}")));
    }
    Ok((lo, hi))
}

/// The slice windowed to 8-bit gray and encoded as PNG.
fn png(slice: &Slice, (lo, hi): (f64, f64)) -> Result<Vec<u8>, Fail> {
    let scale = 255.0 / (hi - lo);
    // Round half up by adding 0.5 before truncating (f64::round costs more than the rest).
    let map = |v: f64| ((v - lo) * scale + 0.5).clamp(0.0, 255.0) as u8;
    // Integer samples go through a lookup table of every possible value.
    let table = |n: usize| (0..n).map(|v| map(v as f64)).collect::<Vec<u8>>();
    let gray: Vec<u8> = match slice.pixels() {
        Pixels::U8(v) => {
            let lut = table(256);
            v.iter().map(|&x| lut[usize::from(x)]).collect()
        }
        Pixels::U16(v) => {
            let lut = table(65536);
            v.iter().map(|&x| lut[usize::from(x)]).collect()
        }
        Pixels::F32(v) => v.iter().map(|&x| map(f64::from(x))).collect(),
        _ => return Err(Fail(500, "unknown sample type".into())),
    };
    let mut out = Vec::with_capacity(gray.len() / 2);
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Sub)
        .write_image(
            &gray,
            slice.width(),
            slice.height(),
            image::ExtendedColorType::L8,
        )
        .map_err(|e| Fail(500, format!("PNG encoding: {e}")))?;
    Ok(out)
}

fn number(part: &str, what: &str) -> Result<u32, Fail> {
    part.parse::<u32>()
        .map_err(|_| Fail(400, format!("{what} must be a whole number, not {part:?}")))
}

fn image_reply(bytes: Vec<u8>, kind: &str, from: &str, started: Instant) -> Reply {
    let ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1e3);
    Reply::new(200, kind, bytes)
        .with("X-Lodcache-Source", from)
        .with("X-Lodcache-Ms", ms)
}

/// The methods a path answers, for the `Allow` header of a 405.
fn allowed(path: &str) -> &'static str {
    if path.starts_with("/api/warmup/") {
        "POST"
    } else {
        "GET"
    }
}

impl App {
    /// Answers one request; failures become a JSON `{"error": ...}` with their status.
    fn respond(&self, request: &Request<Body>) -> Response<Body> {
        let uri = request.uri();
        let path = uri.path();
        let head = request.method() == Method::HEAD;
        let method = if head { &Method::GET } else { request.method() };
        let reply = self
            .route(method, path, uri.query().unwrap_or(""))
            .unwrap_or_else(|Fail(status, message)| {
                let reply = json_reply(status, &json!({ "error": message }));
                if status == 405 {
                    reply.with("Allow", allowed(path))
                } else {
                    reply
                }
            });
        if head {
            // The headers a GET would get, no body (Content-Length then says 0).
            Reply {
                body: Vec::new(),
                ..reply
            }
            .into_response()
        } else {
            reply.into_response()
        }
    }

    fn route(&self, method: &Method, path: &str, query: &str) -> Result<Reply, Fail> {
        let started = Instant::now();
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let get = *method == Method::GET;
        match (parts.as_slice(), get) {
            ([], true) | (["index.html"], true) => Ok(Reply::new(
                200,
                "text/html; charset=utf-8",
                PAGE.as_bytes().to_vec(),
            )),
            (["api", "levels"], true) => Ok(json_reply(200, &self.levels())),
            (["api", "stats"], true) => Ok(json_reply(200, &self.stats())),
            (["api", "slice", level, file], true) => {
                let level = number(level, "level")?;
                let (z, ext) = file
                    .rsplit_once('.')
                    .ok_or_else(|| Fail(404, format!("{file:?}: ask for <z>.png or <z>.raw")))?;
                let z = number(z, "slice index")?;
                match ext {
                    "png" => {
                        let win = window(query, self.window)?;
                        let (slice, from) = self.pyr.slice_served(level, z)?;
                        Ok(image_reply(
                            png(&slice, win)?,
                            "image/png",
                            from.name(),
                            started,
                        ))
                    }
                    "raw" => {
                        let (slice, from) = self.pyr.slice_served(level, z)?;
                        Ok(image_reply(
                            slice.pixels().as_bytes().to_vec(),
                            "application/octet-stream",
                            from.name(),
                            started,
                        )
                        .with("X-Width", slice.width().to_string())
                        .with("X-Height", slice.height().to_string())
                        .with("X-Sample-Type", slice.sample_type().name()))
                    }
                    _ => Err(Fail(404, format!("{ext:?}: ask for .png or .raw"))),
                }
            }
            (["api", "section", level, axis, file], true) => {
                let level = number(level, "level")?;
                let axis = match *axis {
                    "x" | "X" => Axis::X,
                    "y" | "Y" => Axis::Y,
                    other => return Err(Fail(400, format!("axis {other:?}: use x or y"))),
                };
                let index = file
                    .strip_suffix(".png")
                    .ok_or_else(|| Fail(404, format!("{file:?}: ask for <index>.png")))?;
                let index = number(index, "section index")?;
                let win = window(query, self.window)?;
                let stored = self.pyr.is_level_stored(level);
                let section = self.pyr.section(level, axis, index)?;
                let from = if stored { "memory" } else { "generated" };
                Ok(image_reply(png(&section, win)?, "image/png", from, started))
            }
            (["api", "warmup", "start"], false) if *method == Method::POST => {
                Ok(json_reply(200, &self.start_warmup()))
            }
            (["api", "warmup", "cancel"], false) if *method == Method::POST => {
                Ok(json_reply(200, &self.cancel_warmup()))
            }
            (["api", "warmup", "start" | "cancel"], _) => Err(Fail(
                405,
                format!("{method} is not allowed on {path}; use POST"),
            )),
            (["api", ..], true) | ([], false) | (["index.html"], false) => {
                if get {
                    Err(Fail(404, format!("no such endpoint: {path}")))
                } else {
                    Err(Fail(405, format!("{method} is not allowed on {path}")))
                }
            }
            (["api", ..], false) => Err(Fail(405, format!("{method} is not allowed on {path}"))),
            _ => Err(Fail(404, format!("not found: {path}"))),
        }
    }

    fn levels(&self) -> Value {
        let levels: Vec<Value> = self
            .pyr
            .levels()
            .iter()
            .map(|l| {
                json!({"level": l.level, "width": l.width, "height": l.height,
                       "depth": l.depth, "sample_type": l.sample_type.name()})
            })
            .collect();
        json!({
            "stack": self.pyr.stack().dir().display().to_string(),
            "levels": levels,
            "window": [self.window.0, self.window.1],
        })
    }

    fn stats(&self) -> Value {
        let s = self.pyr.stats();
        let demand: Vec<Value> = self
            .pyr
            .demand()
            .levels
            .iter()
            .map(|d| json!({"level": d.level, "score": d.score, "share": d.share}))
            .collect();
        let warmup = self.warmup_json();
        json!({
            "memory": {"hits": s.memory.hits, "misses": s.memory.misses,
                       "bytes": s.memory.bytes, "budget": s.memory.budget.bytes()},
            "disk": {"hits": s.disk.hits, "misses": s.disk.misses, "bytes": s.disk.bytes,
                     "corrupt": s.disk.corrupt},
            "generated": s.generated,
            "source_bytes": s.source_bytes,
            "requests": s.requests,
            "demand": demand,
            "warmup": warmup,
        })
    }

    fn warmup_json(&self) -> Value {
        let mut slot = self.warmup.lock().unwrap_or_else(PoisonError::into_inner);
        let (p, outcome) = loop {
            settle(&mut slot);
            match &*slot {
                Warmup::Idle => return Value::Null,
                Warmup::Running(handle) => {
                    let p = handle.progress();
                    // It ended between settle() and progress(): settle again for its outcome.
                    if !p.finished {
                        break (p, "running".to_string());
                    }
                }
                Warmup::Ended(p, outcome) => break (*p, outcome.clone()),
            }
        };
        json!({
            "level": p.level, "done": p.done, "total": p.total, "bytes": p.bytes,
            "rate": p.rate, "eta_s": p.eta.map(|d| d.as_secs_f64()),
            "finished": p.finished, "outcome": outcome,
        })
    }

    fn start_warmup(&self) -> Value {
        {
            let mut slot = self.warmup.lock().unwrap_or_else(PoisonError::into_inner);
            settle(&mut slot);
            if !matches!(*slot, Warmup::Running(_)) {
                *slot = Warmup::Running(self.pyr.warm_up(WarmupOptions::default()));
            }
        }
        json!({"started": true, "warmup": self.warmup_json()})
    }

    fn cancel_warmup(&self) -> Value {
        {
            let slot = self.warmup.lock().unwrap_or_else(PoisonError::into_inner);
            if let Warmup::Running(handle) = &*slot {
                handle.cancel();
            }
        }
        json!({"cancelled": true, "warmup": self.warmup_json()})
    }
}

/// The viewer's warm-up: none yet, running, or ended (its last figures and how it ended).
enum Warmup {
    Idle,
    Running(WarmupHandle),
    Ended(WarmupProgress, String),
}

/// Turns a finished run into its outcome.
fn settle(slot: &mut Warmup) {
    let finished = matches!(slot, Warmup::Running(h) if h.is_finished());
    if !finished {
        return;
    }
    if let Warmup::Running(handle) = std::mem::replace(slot, Warmup::Idle) {
        let progress = handle.progress();
        let outcome = match handle.wait() {
            WarmupOutcome::Completed(_) => "completed".to_string(),
            WarmupOutcome::Cancelled(_) => "cancelled".to_string(),
            WarmupOutcome::BudgetReached(_) => "budget reached".to_string(),
            WarmupOutcome::Failed { error, .. } => format!("failed: {error}"),
            _ => "ended".to_string(),
        };
        *slot = Warmup::Ended(progress, outcome);
    }
}

/// Starts `app`'s server on 127.0.0.1:`port` and returns it with its address. For port 0 a
/// free port is found by binding one and letting it go (oxhttp binds by address and does not
/// say which port it got); should another process take it meanwhile, another is tried.
fn serve(app: Arc<App>, port: u16) -> Result<(ListeningServer, SocketAddr), String> {
    let fail = |e: &dyn std::fmt::Display| format!("cannot listen on 127.0.0.1:{port}: {e}");
    let tries = if port == 0 { 5 } else { 1 };
    let mut last = String::new();
    for _ in 0..tries {
        let probe = TcpListener::bind(("127.0.0.1", port)).map_err(|e| fail(&e))?;
        let addr = probe.local_addr().map_err(|e| fail(&e))?;
        drop(probe);
        let app = Arc::clone(&app);
        match Server::new(move |request| app.respond(request))
            .bind(addr)
            .with_max_concurrent_connections(CONNECTIONS)
            .spawn()
        {
            Ok(server) => return Ok((server, addr)),
            Err(e) => last = format!("cannot listen on {addr}: {e}"),
        }
    }
    Err(last)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let stack_dir = match args.stack {
        Some(s) => s,
        None => sample_stack().map_err(|e| e.to_string())?,
    };
    let mut builder = Pyramid::builder(&stack_dir);
    if let Some(dir) = &args.cache {
        builder = builder.with_cache_dir(dir);
    }
    if let Some(edge) = args.edge {
        builder = builder.with_edge(edge);
    }
    let pyr = builder.build().map_err(|e| e.to_string())?;
    for w in pyr.warnings() {
        eprintln!("warning: {w}");
    }
    let top = pyr.levels().len() as u32 - 1;
    // The default window: the value range of the middle slice of the coarsest level (one
    // lazily made slice, so the page is up at once whatever the stack's size).
    let middle = pyr.levels()[top as usize].depth / 2;
    let coarse = pyr.slice(top, middle).map_err(|e| e.to_string())?;
    let app = Arc::new(App {
        window: range(coarse.pixels()),
        pyr,
        warmup: Mutex::new(Warmup::Idle),
    });
    // One thread per connection (oxhttp): a browser keeps its connections open between
    // requests, and tiny_http's connection pool left a connection unserved, its request unread,
    // when more arrived at once than it had idle threads (seen as a page that never finished).
    let (server, addr) = serve(app, args.port)?;
    println!(
        "lodcache viewer on http://{addr}/ serving {}",
        stack_dir.display()
    );
    server
        .join()
        .map_err(|e| format!("the server stopped: {e}"))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
