//! The HTTP API: routes, handlers and the state they share. Handlers parse, look in the cache
//! of encoded responses, and hand the rest to the bounded blocking pool ([`App::blocking`]);
//! nothing that reads, decodes, reduces or encodes runs on the async executor's threads.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use lodcache::WarmupProgress;
use lodcache::{
    Axis, Cancel, Error, ErrorKind, Pyramid, Served, Slice, WarmupHandle, WarmupOptions,
    WarmupOutcome,
};
use moka::sync::Cache;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::guard::{Guard, check_request};
use super::render::{self, ImageQuery, TILE};
use super::work::{self, Ask};

mod zarr;

pub(crate) use zarr::{ZarrOpts, layout_of};

const PAGE: &str = include_str!("../../assets/viewer.html");

/// A request's failure: an HTTP status and a message for the JSON body `{"error": ...}`.
#[derive(Debug)]
pub(crate) struct Fail {
    status: u16,
    message: String,
    /// Seconds for `Retry-After` (503 when the server is busy).
    retry_after: Option<u32>,
}

impl Fail {
    /// A failure with `status` and `message`.
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Fail {
        Fail {
            status,
            message: message.into(),
            retry_after: None,
        }
    }
}

/// A JSON response.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = json_response(status, &json!({ "error": self.message }));
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

/// An encoded image response, as kept in the response cache.
#[derive(Debug)]
struct Encoded {
    body: Bytes,
    content_type: &'static str,
    etag: String,
    /// Where the slice came from when this response was made.
    source: &'static str,
    width: u32,
    height: u32,
    sample_type: &'static str,
}

/// A decoded slice kept for the tiles cut from it, with its checksum (for `ETag`s).
#[derive(Debug)]
struct Held {
    slice: Slice,
    hash: u64,
}

/// Key of the response cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ResponseKey {
    /// An image: level, z, tile (`u32::MAX` for a whole slice), format and window bits.
    Image(u32, u32, (u32, u32), bool, u64, u64),
    /// A chunk (or shard) of a Zarr or precomputed store: store, level and index.
    Chunk(zarr::Store, u32, [u32; 3]),
}

/// The server's shared state.
#[derive(Debug)]
pub(crate) struct App {
    pub(crate) pyr: Pyramid,
    /// The scan folder's name (its path is not disclosed).
    name: String,
    /// The default contrast window: the value range of the coarsest level's middle slice.
    window: (f64, f64),
    warmup: Mutex<Warmup>,
    /// Encoded tiles and slices, weighted by bytes (TinyLFU: a sweep does not evict hot tiles).
    responses: Cache<ResponseKey, Arc<Encoded>>,
    response_hits: AtomicU64,
    response_misses: AtomicU64,
    /// Decoded slices that tiles are cut from, weighted by bytes (least recently used first:
    /// the tiles of one slice come in a burst).
    slices: Cache<(u32, u32), Arc<Held>>,
    /// Places on the blocking pool.
    blocking: Arc<Semaphore>,
    /// Places for heavy requests (level-0 sections, whole levels not yet built).
    heavy: Arc<Semaphore>,
    heavy_limit: usize,
    /// Levels >= 1 being built whole by a heavy request, with the requests waiting for it.
    builds: Mutex<BTreeMap<u32, usize>>,
    /// Strings replaced in error messages sent to clients (the scan and cache paths).
    redact: Vec<(String, &'static str)>,
    histogram: OnceLock<Value>,
    /// Lookup tables of the recent contrast windows.
    luts: render::Luts,
    /// Heavy builds in progress: level -> (slices done, total).
    building: Mutex<BTreeMap<u32, (u64, u64)>>,
    /// How Zarr and precomputed chunks are cut and compressed.
    zarr_opts: ZarrOpts,
    /// The Zarr and precomputed layout, made on first use (it needs the coarsest level).
    zarr: tokio::sync::OnceCell<Arc<lodcache::zarr::ZarrLayout>>,
    /// Places for chunk requests in flight; none left is a 503.
    chunk_queue: Arc<Semaphore>,
    chunk_queue_limit: usize,
}

/// Sizes of the server's own caches and pools.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    /// Bytes of encoded responses kept.
    pub(crate) response_cache: u64,
    /// Bytes of decoded slices kept for cutting tiles.
    pub(crate) slice_cache: u64,
    /// Library calls running at once on the blocking pool.
    pub(crate) blocking: usize,
    /// Heavy requests at once; more get 503 with `Retry-After`.
    pub(crate) heavy: usize,
    /// Chunk requests in flight (waiting or running) at once; more get 503 with
    /// `Retry-After`. `None`: [`zarr::CHUNK_QUEUE`] per place of the blocking pool.
    pub(crate) chunk_queue: Option<usize>,
    /// How Zarr and precomputed chunks are cut and compressed.
    pub(crate) zarr: ZarrOpts,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl App {
    /// The state for serving `pyr`; reads the coarsest level's middle slice for the default
    /// window (one lazily made slice, so the page is up at once whatever the scan's size).
    pub(crate) fn new(
        pyr: Pyramid,
        cache_dir: Option<&std::path::Path>,
        limits: Limits,
    ) -> Result<App, String> {
        let top = pyr.levels().len() as u32 - 1;
        let middle = pyr.levels()[top as usize].depth / 2;
        // The server's own need, not a user's look: not demand.
        let coarse = pyr
            .request()
            .without_demand()
            .slice(top, middle)
            .map_err(|e| crate::term::clean(&e.to_string()))?;
        // Stored before the first client asks what is stored.
        pyr.flush();
        let dir = pyr.stack().dir().to_path_buf();
        let name = dir
            .canonicalize()
            .unwrap_or_else(|_| dir.clone())
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "scan".into());
        let mut redact = Vec::new();
        let mut hide = |p: &std::path::Path, with: &'static str| {
            for form in [Some(p.to_path_buf()), p.canonicalize().ok()]
                .into_iter()
                .flatten()
            {
                let s = form.display().to_string();
                if !s.is_empty() && s != "/" {
                    redact.push((s, with));
                }
            }
        };
        if let Some(c) = cache_dir {
            hide(c, "<cache>");
        }
        hide(&dir, "<scan>");
        // Longest first, so that a cache folder inside the scan folder is replaced whole.
        redact.sort_by_key(|(s, _)| std::cmp::Reverse(s.len()));
        let weigh = |bytes: usize| u32::try_from(bytes).unwrap_or(u32::MAX);
        let chunk_queue = limits
            .chunk_queue
            .unwrap_or(limits.blocking.max(1) * zarr::CHUNK_QUEUE)
            .max(1);
        Ok(App {
            window: render::range(coarse.pixels()),
            name,
            warmup: Mutex::new(Warmup::Idle),
            responses: Cache::builder()
                .max_capacity(limits.response_cache)
                .weigher(move |_, v: &Arc<Encoded>| weigh(v.body.len() + 64))
                .build(),
            response_hits: AtomicU64::new(0),
            response_misses: AtomicU64::new(0),
            slices: Cache::builder()
                .max_capacity(limits.slice_cache)
                .eviction_policy(moka::policy::EvictionPolicy::lru())
                .weigher(move |_, v: &Arc<Held>| weigh(v.slice.pixels().as_bytes().len()))
                .build(),
            blocking: Arc::new(Semaphore::new(limits.blocking.max(1))),
            heavy: Arc::new(Semaphore::new(limits.heavy.max(1))),
            heavy_limit: limits.heavy.max(1),
            builds: Mutex::new(BTreeMap::new()),
            redact,
            histogram: OnceLock::new(),
            luts: render::Luts::default(),
            building: Mutex::new(BTreeMap::new()),
            zarr_opts: limits.zarr,
            zarr: tokio::sync::OnceCell::new(),
            chunk_queue: Arc::new(Semaphore::new(chunk_queue)),
            chunk_queue_limit: chunk_queue,
            pyr,
        })
    }

    /// `message` with the scan's and the cache's paths replaced by `<scan>` and `<cache>`.
    fn redacted(&self, message: &str) -> String {
        let mut m = message.to_string();
        for (s, with) in &self.redact {
            m = m.replace(s.as_str(), with);
        }
        crate::term::clean(&m)
    }

    /// The library's error as a response, by its kind: a caller's mistake (out of range) is
    /// 404, anything else 500 with the paths redacted (and logged in full on stderr).
    fn fail(&self, e: &Error) -> Fail {
        match e.kind() {
            ErrorKind::Cancelled => Fail::new(499, "cancelled: the client left"),
            ErrorKind::Caller | ErrorKind::NotFound => Fail::new(404, e.to_string()),
            _ => {
                crate::term::tell!("error: {}", crate::term::clean(&e.to_string()));
                Fail::new(500, self.redacted(&e.to_string()))
            }
        }
    }

    /// Runs `f` on the blocking pool with a [`Cancel`] that fires when the returned future is
    /// dropped (the client left). Waits for a place when every one is taken; the place is held
    /// until `f` returns, even after the client left.
    async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&App, &Cancel) -> Result<T, Fail> + Send + 'static,
    ) -> Result<T, Fail> {
        let permit = Arc::clone(&self.blocking)
            .acquire_owned()
            .await
            .map_err(|_| Fail::new(503, "the server is stopping"))?;
        let cancel = Cancel::new();
        let _guard = cancel.cancel_on_drop();
        let app = Arc::clone(self);
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            f(&app, &cancel)
        })
        .await
        .map_err(|e| Fail::new(500, format!("a worker failed: {e}")))?
    }

    /// A place for a heavy request, or 503 with `Retry-After` when all are taken.
    fn heavy_place(&self) -> Result<tokio::sync::OwnedSemaphorePermit, Fail> {
        Arc::clone(&self.heavy)
            .try_acquire_owned()
            .map_err(|_| Fail {
                status: 503,
                message: format!(
                    "busy: {} heavy requests (level-0 sections, whole levels being built) are \
                 running; try again shortly",
                    self.heavy_limit
                ),
                retry_after: Some(2),
            })
    }

    /// A place for a heavy request on `level`: level-0 sections each read every source slice
    /// and take a place each; requests for a level >= 1 that another request is building join
    /// that build (the library computes it once) and take no place of their own.
    fn heavy_place_for(self: &Arc<Self>, level: u32) -> Result<HeavyPlace, Fail> {
        if level == 0 {
            return Ok(HeavyPlace {
                _permit: Some(self.heavy_place()?),
                build: None,
            });
        }
        let mut builds = lock(&self.builds);
        let permit = match builds.get_mut(&level) {
            Some(waiting) => {
                *waiting += 1;
                None
            }
            None => {
                let p = self.heavy_place()?;
                builds.insert(level, 1);
                Some(p)
            }
        };
        Ok(HeavyPlace {
            _permit: permit,
            build: Some((Arc::clone(self), level)),
        })
    }

    fn level_info(&self, level: u32) -> Result<lodcache::LevelInfo, Fail> {
        let levels = self.pyr.levels();
        levels.get(level as usize).copied().ok_or_else(|| {
            Fail::new(
                404,
                format!(
                    "invalid level: {level}; this pyramid has levels 0..={}",
                    levels.len() - 1
                ),
            )
        })
    }

    /// The decoded slice `z` of `level`, from the server's slice cache or the library
    /// (concurrent requests for the same slice share one read), and where it came from.
    fn held(&self, level: u32, z: u32, ask: &Ask) -> Result<(Arc<Held>, &'static str), Fail> {
        let mut from = "memory";
        let mut made = false;
        // The initialiser runs on this blocking-pool thread (never a rayon worker), and the
        // callers that wait for it are blocking-pool threads too. Waiters share its result: when
        // it was cancelled because its own client left, a waiter whose client is still there
        // tries again.
        let held = loop {
            let got = self.slices.try_get_with((level, z), || {
                let (slice, served) = work::slice(&self.pyr, level, z, ask)?;
                from = served.name();
                made = true;
                let hash = xxhash_rust::xxh3::xxh3_64(slice.pixels().as_bytes());
                Ok::<_, Error>(Arc::new(Held { slice, hash }))
            });
            match got {
                Ok(held) => break held,
                Err(e) if e.kind() == ErrorKind::Cancelled && !ask.cancel.is_cancelled() => {}
                Err(e) => return Err(self.fail(&e)),
            }
        };
        if !made {
            // Served from the decoded slices, not by the pyramid: count it as the pyramid would.
            self.count_cached(level, z, ask.preview);
        }
        Ok((held, from))
    }

    /// Counts a request answered from the server's own caches as the pyramid counts the ones
    /// it serves: in the requests, and as demand unless it is a coarse-first preview.
    fn count_cached(&self, level: u32, z: u32, preview: bool) {
        if !preview {
            // The level and slice were checked before any cache was asked.
            let _ = self.pyr.record_request(level, z);
        }
    }

    fn levels_json(&self) -> Value {
        let levels: Vec<Value> = self
            .pyr
            .levels()
            .iter()
            .map(|l| {
                json!({"level": l.level, "width": l.width, "height": l.height,
                       "depth": l.depth, "sample_type": l.sample_type.name(),
                       "tiles": [l.width.div_ceil(TILE), l.height.div_ceil(TILE)]})
            })
            .collect();
        json!({
            "stack": self.name,
            "levels": levels,
            "window": [self.window.0, self.window.1],
            "tile": TILE,
            "voxel_size": self.pyr.voxel_size().map(|v| [v.x, v.y, v.z]),
        })
    }

    fn stats_json(&self) -> Value {
        let s = self.pyr.stats();
        // moka counts entries and bytes lazily.
        self.responses.run_pending_tasks();
        let demand: Vec<Value> = self
            .pyr
            .demand()
            .levels
            .iter()
            .map(|d| json!({"level": d.level, "score": d.score, "share": d.share}))
            .collect();
        json!({
            "memory": {"hits": s.memory.hits, "misses": s.memory.misses,
                       "bytes": s.memory.bytes, "budget": s.memory.budget.bytes()},
            "disk": {"hits": s.disk.hits, "misses": s.disk.misses, "bytes": s.disk.bytes,
                     "corrupt": s.disk.corrupt},
            "generated": s.generated,
            "source_bytes": s.source_bytes,
            "source_slices": s.source_slices,
            "requests": s.requests,
            "responses": {
                "hits": self.response_hits.load(Ordering::Relaxed),
                "misses": self.response_misses.load(Ordering::Relaxed),
                "entries": self.responses.entry_count(),
                "bytes": self.responses.weighted_size(),
            },
            "demand": demand,
            "warmup": self.warmup_json(),
        })
    }

    fn progress_json(&self) -> Value {
        let building = lock(&self.building).clone();
        let levels: Vec<Value> = self
            .pyr
            .levels()
            .iter()
            .map(|l| {
                let stored = crate::info::stored(&self.pyr, l.level);
                let b = building.get(&l.level);
                json!({"level": l.level, "depth": l.depth, "stored": stored,
                       "building": b.map(|(done, total)| json!({"done": done, "total": total}))})
            })
            .collect();
        json!({ "levels": levels })
    }

    fn warmup_json(&self) -> Value {
        let mut slot = lock(&self.warmup);
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
            "finished": p.finished, "outcome": self.redacted(&outcome),
        })
    }

    /// Stops a running warm-up (at shutdown).
    pub(crate) fn stop_warmup(&self) {
        if let Warmup::Running(handle) = std::mem::replace(&mut *lock(&self.warmup), Warmup::Idle) {
            handle.cancel();
            let _ = handle.wait();
        }
    }
}

/// A heavy request's place (see [`App::heavy_place_for`]); given back on drop.
struct HeavyPlace {
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
    build: Option<(Arc<App>, u32)>,
}

impl Drop for HeavyPlace {
    fn drop(&mut self) {
        if let Some((app, level)) = &self.build {
            let mut builds = lock(&app.builds);
            if let Some(waiting) = builds.get_mut(level) {
                *waiting -= 1;
                if *waiting == 0 {
                    builds.remove(level);
                }
            }
        }
    }
}

/// The server's warm-up: none yet, running, or ended (its last figures and how it ended).
#[derive(Debug)]
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
            // A run cancelled in the middle of a slice may report the cancellation as its error.
            WarmupOutcome::Failed { error, .. } if error.kind() == ErrorKind::Cancelled => {
                "cancelled".to_string()
            }
            WarmupOutcome::Failed { error, .. } => format!("failed: {error}"),
            _ => "ended".to_string(),
        };
        *slot = Warmup::Ended(progress, outcome);
    }
}

type Shared = State<Arc<App>>;

fn number(part: &str, what: &str) -> Result<u32, Fail> {
    part.parse::<u32>()
        .map_err(|_| Fail::new(400, format!("{what} must be a whole number, not {part:?}")))
}

/// `<n>.<ext>` split, with `n` a whole number and `ext` one of `exts`.
fn numbered_file<'a>(file: &'a str, exts: &[&str]) -> Result<(u32, &'a str), Fail> {
    let want = exts
        .iter()
        .map(|e| format!("<n>.{e}"))
        .collect::<Vec<_>>()
        .join(" or ");
    let (n, ext) = file
        .rsplit_once('.')
        .ok_or_else(|| Fail::new(404, format!("{file:?}: ask for {want}")))?;
    let n = number(n, "index")?;
    if !exts.contains(&ext) {
        let dotted = exts.iter().map(|e| format!(".{e}")).collect::<Vec<_>>();
        return Err(Fail::new(
            404,
            format!("{ext:?}: ask for {}", dotted.join(" or ")),
        ));
    }
    Ok((n, ext))
}

/// The image request's answer: the encoded body with its headers, or 304 when the client's
/// `If-None-Match` names its `ETag`.
fn image_response(
    e: &Encoded,
    from: &str,
    cached: bool,
    started: Instant,
    inm: Option<&str>,
) -> Response {
    let ms = format!("{:.2}", started.elapsed().as_secs_f64() * 1e3);
    let matches = inm.is_some_and(|v| {
        v.trim() == "*"
            || v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == e.etag)
    });
    let mut r = if matches {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(Body::from(e.body.clone()));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(e.content_type),
        );
        r
    };
    let h = r.headers_mut();
    // Kept by browsers but checked each time (the ETag makes that a 304).
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&e.etag) {
        h.insert(header::ETAG, v);
    }
    let mut put = |name: &'static str, value: String| {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    };
    put("x-lodcache-source", from.to_string());
    put("x-lodcache-ms", ms);
    put(
        "x-lodcache-cache",
        if cached { "hit" } else { "miss" }.to_string(),
    );
    put("x-width", e.width.to_string());
    put("x-height", e.height.to_string());
    put("x-sample-type", e.sample_type.to_string());
    r
}

/// One image: slice `z` of `level` whole (`tile` `None`) or its tile (`ty`, `tx`), as windowed
/// PNG or raw samples.
async fn image(
    app: Arc<App>,
    level: u32,
    z: u32,
    tile: Option<(u32, u32)>,
    png: bool,
    query: &str,
    headers: &HeaderMap,
) -> Result<Response, Fail> {
    let started = Instant::now();
    let q: ImageQuery = render::image_query(query, app.window, png)?;
    let info = app.level_info(level)?;
    if z >= info.depth {
        return Err(Fail::new(
            404,
            format!(
                "invalid slice index: {z} at level {level}; valid: 0..={}",
                info.depth - 1
            ),
        ));
    }
    let rect = match tile {
        None => (0, 0, info.width, info.height),
        Some((ty, tx)) => {
            let (nx, ny) = (info.width.div_ceil(TILE), info.height.div_ceil(TILE));
            if ty >= ny || tx >= nx {
                return Err(Fail::new(
                    404,
                    format!(
                        "invalid tile: row {ty}, column {tx} at level {level}; valid: rows \
                         0..={}, columns 0..={} (tiles of {TILE} px)",
                        ny - 1,
                        nx - 1
                    ),
                ));
            }
            let (x, y) = (tx * TILE, ty * TILE);
            (x, y, TILE.min(info.width - x), TILE.min(info.height - y))
        }
    };
    let (wlo, whi) = if png { q.window } else { (0.0, 0.0) };
    let key = ResponseKey::Image(
        level,
        z,
        tile.unwrap_or((u32::MAX, u32::MAX)),
        png,
        wlo.to_bits(),
        whi.to_bits(),
    );
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if let Some(hit) = app.responses.get(&key) {
        app.response_hits.fetch_add(1, Ordering::Relaxed);
        app.count_cached(level, z, q.preview);
        return Ok(image_response(
            &hit,
            "memory",
            true,
            started,
            inm.as_deref(),
        ));
    }
    app.response_misses.fetch_add(1, Ordering::Relaxed);
    let ask_preview = q.preview;
    let (encoded, from) = app
        .blocking(move |app, cancel| {
            let ask = Ask {
                cancel: cancel.clone(),
                preview: ask_preview,
            };
            let (held, from) = app.held(level, z, &ask)?;
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            let (tile_y, tile_x) = tile.unwrap_or((u32::MAX, u32::MAX));
            for n in [
                held.hash,
                u64::from(level),
                u64::from(z),
                tile_y.into(),
                tile_x.into(),
            ] {
                h.update(&n.to_le_bytes());
            }
            h.update(&[u8::from(png)]);
            h.update(&wlo.to_bits().to_le_bytes());
            h.update(&whi.to_bits().to_le_bytes());
            let etag = format!("\"{:016x}\"", h.digest());
            let part = render::crop(&held.slice, rect.0, rect.1, rect.2, rect.3)?;
            let (body, content_type) = if png {
                (render::png(&part, q.window, &app.luts)?, "image/png")
            } else {
                (render::raw(&part), "application/octet-stream")
            };
            let encoded = Arc::new(Encoded {
                body: Bytes::from(body),
                content_type,
                etag,
                source: from,
                width: part.width(),
                height: part.height(),
                sample_type: part.sample_type().name(),
            });
            app.responses.insert(key, Arc::clone(&encoded));
            Ok((encoded, from))
        })
        .await?;
    debug_assert_eq!(encoded.source, from);
    Ok(image_response(
        &encoded,
        from,
        false,
        started,
        inm.as_deref(),
    ))
}

async fn slice_handler(
    State(app): Shared,
    Path((level, file)): Path<(String, String)>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, Fail> {
    let level = number(&level, "level")?;
    let (z, ext) = numbered_file(&file, &["png", "raw"])?;
    let query = request.uri().query().unwrap_or("");
    image(app, level, z, None, ext == "png", query, &headers).await
}

async fn tile_handler(
    State(app): Shared,
    Path((level, z, ty, file)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, Fail> {
    let level = number(&level, "level")?;
    let z = number(&z, "slice index")?;
    let ty = number(&ty, "tile row")?;
    let (tx, ext) = numbered_file(&file, &["png", "raw"])?;
    let query = request.uri().query().unwrap_or("");
    image(app, level, z, Some((ty, tx)), ext == "png", query, &headers).await
}

async fn section_handler(
    State(app): Shared,
    Path((level, axis, file)): Path<(String, String, String)>,
    request: Request,
) -> Result<Response, Fail> {
    let started = Instant::now();
    let level = number(&level, "level")?;
    let axis = match axis.as_str() {
        "x" | "X" => Axis::X,
        "y" | "Y" => Axis::Y,
        other => return Err(Fail::new(400, format!("axis {other:?}: use x or y"))),
    };
    let (index, _) = numbered_file(&file, &["png"])?;
    let q = render::image_query(request.uri().query().unwrap_or(""), app.window, true)?;
    app.level_info(level)?;
    let stored = app.pyr.is_level_stored(level) && level > 0;
    // Level 0 reads every source slice; a level not built yet is built whole first.
    let heavy = if stored {
        None
    } else {
        Some(app.heavy_place_for(level)?)
    };
    let (png, from) = app
        .blocking(move |app, cancel| {
            let _heavy = heavy;
            let ask = Ask {
                cancel: cancel.clone(),
                preview: q.preview,
            };
            let progress = |done: u64, total: u64| {
                lock(&app.building).insert(level, (done, total));
            };
            let section = work::section(&app.pyr, level, axis, index, &ask, &progress);
            lock(&app.building).remove(&level);
            let section = section.map_err(|e| app.fail(&e))?;
            let from = if level == 0 {
                Served::Source.name()
            } else if stored {
                Served::Memory.name()
            } else {
                Served::Generated.name()
            };
            Ok((render::png(&section, q.window, &app.luts)?, from))
        })
        .await?;
    let encoded = Encoded {
        body: Bytes::from(png),
        content_type: "image/png",
        etag: String::new(),
        source: from,
        width: 0,
        height: 0,
        sample_type: "",
    };
    let mut r = image_response(&encoded, from, false, started, None);
    for h in [header::ETAG, header::HeaderName::from_static("x-width")] {
        r.headers_mut().remove(h);
    }
    r.headers_mut().remove("x-height");
    r.headers_mut().remove("x-sample-type");
    r.headers_mut().remove("x-lodcache-cache");
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

async fn histogram_handler(State(app): Shared) -> Result<Response, Fail> {
    if let Some(h) = app.histogram.get() {
        return Ok(json_response(StatusCode::OK, h));
    }
    let top = app.pyr.levels().len() as u32 - 1;
    let heavy = if app.pyr.is_level_stored(top) {
        None
    } else {
        Some(app.heavy_place_for(top)?)
    };
    let value = app
        .blocking(move |app, cancel| {
            let _heavy = heavy;
            let ask = Ask {
                cancel: cancel.clone(),
                preview: true,
            };
            let volume = work::volume(&app.pyr, top, &ask).map_err(|e| app.fail(&e))?;
            let mut h = render::histogram(volume.pixels());
            h["level"] = json!(top);
            Ok(app.histogram.get_or_init(|| h).clone())
        })
        .await?;
    Ok(json_response(StatusCode::OK, &value))
}

async fn page() -> Response {
    let mut r = Response::new(Body::from(PAGE));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

async fn levels_handler(State(app): Shared) -> Response {
    json_response(StatusCode::OK, &app.levels_json())
}

async fn stats_handler(State(app): Shared) -> Response {
    json_response(StatusCode::OK, &app.stats_json())
}

async fn progress_handler(State(app): Shared) -> Result<Response, Fail> {
    // Counting stored slices takes the tiers' locks: off the executor.
    let v = app.blocking(|app, _| Ok(app.progress_json())).await?;
    Ok(json_response(StatusCode::OK, &v))
}

async fn warmup_start(State(app): Shared) -> Response {
    {
        let mut slot = lock(&app.warmup);
        settle(&mut slot);
        if !matches!(*slot, Warmup::Running(_)) {
            *slot = Warmup::Running(app.pyr.warm_up(WarmupOptions::default()));
        }
    }
    json_response(
        StatusCode::OK,
        &json!({"started": true, "warmup": app.warmup_json()}),
    )
}

async fn warmup_cancel(State(app): Shared) -> Response {
    {
        let slot = lock(&app.warmup);
        if let Warmup::Running(handle) = &*slot {
            handle.cancel();
        }
    }
    json_response(
        StatusCode::OK,
        &json!({"cancelled": true, "warmup": app.warmup_json()}),
    )
}

async fn not_found(request: Request) -> Fail {
    let path = request.uri().path();
    if path.starts_with("/api/") || path == "/api" {
        Fail::new(404, format!("no such endpoint: {path}"))
    } else {
        Fail::new(404, format!("not found: {path}"))
    }
}

/// Turns every error response that is not JSON yet (a 405 from the router, a refused path
/// parameter) into `{"error": ...}`, naming the method and path.
async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let text = String::from_utf8_lossy(&text).trim().to_string();
    let message = if status == StatusCode::METHOD_NOT_ALLOWED {
        // The router adds `Allow` outside this layer; the methods are GET (with HEAD) except
        // on the warm-up endpoints.
        let allow = if path.starts_with("/api/warmup/") {
            "POST"
        } else {
            "GET or HEAD"
        };
        format!("{method} is not allowed on {path}; use {allow}")
    } else if text.is_empty() {
        format!("{method} {path}: {status}")
    } else {
        format!("{method} {path}: {text}")
    };
    let mut r = json_response(status, &json!({ "error": message }));
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            r.headers_mut().insert(name, v.clone());
        }
    }
    for (name, value) in parts.headers.iter() {
        if name.as_str().starts_with("access-control-") {
            r.headers_mut().insert(name.clone(), value.clone());
        }
    }
    r
}

/// The router: routes, then the guard (Host, Origin), JSON errors and CORS for reads.
pub(crate) fn router(app: Arc<App>, guard: Arc<Guard>) -> Router {
    let cors = tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::HEAD])
        .allow_headers([header::IF_NONE_MATCH, header::RANGE])
        .expose_headers([
            header::ETAG,
            header::RETRY_AFTER,
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
            header::CONTENT_LENGTH,
            header::HeaderName::from_static("x-lodcache-source"),
            header::HeaderName::from_static("x-lodcache-ms"),
            header::HeaderName::from_static("x-lodcache-cache"),
            header::HeaderName::from_static("x-width"),
            header::HeaderName::from_static("x-height"),
            header::HeaderName::from_static("x-sample-type"),
        ])
        .max_age(std::time::Duration::from_secs(600));
    Router::new()
        .route("/", get(page))
        .route("/index.html", get(page))
        .route("/api/levels", get(levels_handler))
        .route("/api/stats", get(stats_handler))
        .route("/api/progress", get(progress_handler))
        .route("/api/histogram", get(histogram_handler))
        .route("/api/slice/{level}/{file}", get(slice_handler))
        .route("/api/tile/{level}/{z}/{ty}/{file}", get(tile_handler))
        .route("/api/section/{level}/{axis}/{file}", get(section_handler))
        .route("/api/warmup/start", post(warmup_start))
        .route("/api/warmup/cancel", post(warmup_cancel))
        .route("/zarr/{*key}", get(zarr::v2_handler))
        .route("/zarr3/{*key}", get(zarr::v3_handler))
        .route("/precomputed/{*key}", get(zarr::precomputed_handler))
        .fallback(not_found)
        .with_state(app)
        .layer(middleware::from_fn_with_state(guard, check_request))
        .layer(middleware::from_fn(json_errors))
        .layer(cors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_need_a_number_and_a_known_extension() {
        assert_eq!(
            numbered_file("12.png", &["png", "raw"]).unwrap(),
            (12, "png")
        );
        assert_eq!(numbered_file("3.raw", &["png", "raw"]).unwrap(), (3, "raw"));
        assert_eq!(numbered_file("3.jpg", &["png"]).unwrap_err().status, 404);
        assert_eq!(numbered_file("x.png", &["png"]).unwrap_err().status, 400);
        assert_eq!(numbered_file("3", &["png"]).unwrap_err().status, 404);
    }
}
