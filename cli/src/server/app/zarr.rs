//! The pyramid to standard clients: OME-Zarr 0.4 (Zarr v2) at `/zarr/`, OME-Zarr 0.5 (Zarr v3)
//! at `/zarr3/` and Neuroglancer precomputed at `/precomputed/`.
//!
//! Keys are resolved by the library ([`ZarrLayout::resolve_v2`] and its twins): every key that
//! does not exist is a 404 (clients probe `.zmetadata`, `labels/`, `zarr.json` at every level
//! and read a 404 as "absent"). A chunk that exists is never a 404: its slices come through the
//! server's decoded-slice cache ([`App::held`]: memory, disk, else generated or read from the
//! source), except level-0 slices that cache does not hold whose files read by rows: of those
//! only the chunk's rows are read ([`lodcache::Pyramid::source_rows`]), and kept nowhere. The
//! library cuts and encodes the chunk ([`ZarrLayout::encode_file_bands`],
//! [`ZarrLayout::encode_precomputed_chunk_bands`]) and the bytes go into the response cache. Beyond
//! `serve --max-queued-chunks` chunk requests in flight at once (default [`CHUNK_QUEUE`] per
//! place of the blocking pool), a chunk is refused with 503 and `Retry-After` (clients read a
//! 404 as zeros, so overload must never look like one).
//! Chunk responses answer `Range` (one range; sharded Zarr v3 clients read shard indexes so)
//! and `If-None-Match`.

use std::borrow::Cow;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use bytes::Bytes;
use lodcache::zarr::{ChunkShape, Compression, Node, PrecomputedNode, Window, ZarrLayout};
use lodcache::{Served, Slice};
use serde_json::Value;

use super::{App, Encoded, Fail, Held, ResponseKey, Shared, json_response};
use crate::server::render;
use crate::server::work::{self, Ask};

/// Chunk requests in flight (waiting or running) per place of the blocking pool; beyond it a
/// chunk request is answered 503 with `Retry-After`.
pub(crate) const CHUNK_QUEUE: usize = 8;

/// How the server cuts and compresses chunks (`serve --zarr-chunks`, `--zarr-compression`).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ZarrOpts {
    /// Chunk shape, `z, y, x` (cut to each level's shape).
    pub(crate) chunk: ChunkShape,
    /// Compression of Zarr chunks (precomputed chunks are raw, as the `info` says).
    pub(crate) compression: Compression,
}

/// Which of the three stores a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Store {
    /// `/zarr/`: Zarr v2, OME-NGFF 0.4.
    V2,
    /// `/zarr3/`: Zarr v3, OME-Zarr 0.5.
    V3,
    /// `/precomputed/`: Neuroglancer precomputed.
    Precomputed,
}

impl App {
    /// The layout of the served stores, made on first use. Its display window (the `omero`
    /// block) is the 0.5 and 99.5 percentiles of the coarsest level's middle slice, which the
    /// server read when it started: the first request of a store costs no pass over the scan
    /// (an exported store's window comes from the whole coarsest level).
    async fn zarr_layout(self: &Arc<Self>) -> Result<Arc<ZarrLayout>, Fail> {
        if let Some(l) = self.zarr.get() {
            return Ok(Arc::clone(l));
        }
        let top = self.pyr.levels().len() as u32 - 1;
        let middle = self.pyr.levels()[top as usize].depth / 2;
        let made = self
            .zarr
            .get_or_try_init(|| async {
                self.blocking(move |app, cancel| {
                    let ask = Ask {
                        cancel: cancel.clone(),
                        preview: true,
                    };
                    let (held, _) = app.held(top, middle, &ask)?;
                    let layout = layout_of(&app.pyr, app.zarr_opts)
                        .map_err(|e| Fail::new(500, e))?
                        .with_window(Window::of_volume(held.slice.pixels()))
                        .with_name(app.name.clone());
                    Ok(Arc::new(layout))
                })
                .await
            })
            .await?;
        Ok(Arc::clone(made))
    }
}

/// The layout of `pyr` served with `opts`, without its display window (the caller adds it).
///
/// # Errors
/// A message naming the chunk shape when the library refuses it (a chunk above its byte
/// limit, say): `serve` checks this before it listens.
pub(crate) fn layout_of(pyr: &lodcache::Pyramid, opts: ZarrOpts) -> Result<ZarrLayout, String> {
    Ok(ZarrLayout::new(pyr.levels(), opts.chunk, opts.compression)
        .map_err(|e| format!("--zarr-chunks: {}", crate::term::clean(&e.to_string())))?
        .with_voxel_size(pyr.voxel_size()))
}

/// One slice of a chunk: whole, as the decoded-slice cache holds it, or only the chunk's rows.
#[derive(Debug)]
enum Part {
    Whole(Arc<Held>),
    Band(Slice),
}

impl App {
    /// Slice `z` of `level` for a chunk that needs its rows `rows`, and where it came from. A
    /// level-0 slice that the decoded-slice cache does not hold, in a file that reads by rows
    /// (uncompressed TIFF in strips, BMP), is read in those rows only and kept nowhere: a
    /// 512-row chunk of a 3072^2 slice reads a sixth of it. Any other slice comes through
    /// [`App::held`] (decoded once and kept, so the other chunks of the slice reuse it), and so
    /// does a chunk as high as the slice (its rows are the whole slice).
    fn chunk_part(
        &self,
        level: u32,
        z: u32,
        rows: &Range<u32>,
        ask: &Ask,
    ) -> Result<(Part, &'static str), Fail> {
        let height = self.pyr.levels()[0].height as usize;
        if level == 0 && rows.len() < height && !self.slices.contains_key(&(0, z)) {
            let band = work::source_rows(&self.pyr, z, rows.start, rows.len() as u32, ask)
                .map_err(|e| self.fail(&e))?;
            if let Some(band) = band {
                return Ok((Part::Band(band), Served::Source.name()));
            }
        }
        let (held, from) = self.held(level, z, ask)?;
        Ok((Part::Whole(held), from))
    }
}

/// `GET /zarr/{*key}`.
pub(super) async fn v2_handler(
    State(app): Shared,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    answer(app, Store::V2, &key, &headers).await
}

/// `GET /zarr3/{*key}`.
pub(super) async fn v3_handler(
    State(app): Shared,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    answer(app, Store::V3, &key, &headers).await
}

/// `GET /precomputed/{*key}`.
pub(super) async fn precomputed_handler(
    State(app): Shared,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Fail> {
    answer(app, Store::Precomputed, &key, &headers).await
}

/// A metadata document or a chunk of `store`, or 404 for a key that does not exist.
async fn answer(
    app: Arc<App>,
    store: Store,
    key: &str,
    headers: &HeaderMap,
) -> Result<Response, Fail> {
    let started = Instant::now();
    let missing = || {
        let root = match store {
            Store::V2 => "zarr",
            Store::V3 => "zarr3",
            Store::Precomputed => "precomputed",
        };
        Fail::new(
            404,
            format!(
                "no such key in the {root} store: {:?}",
                crate::term::clean(key)
            ),
        )
    };
    // Plainly malformed keys are answered before the layout is made.
    if key.is_empty() || key.len() > 256 {
        return Err(missing());
    }
    let layout = app.zarr_layout().await?;
    let chunk = match store {
        Store::V2 | Store::V3 => {
            let node = match store {
                Store::V2 => layout.resolve_v2(key),
                _ => layout.resolve_v3(key),
            };
            match node.ok_or_else(missing)? {
                Node::Json(v) => return Ok(metadata(&v)),
                Node::Chunk { level, index } => (level, index),
            }
        }
        Store::Precomputed => match layout.resolve_precomputed(key).ok_or_else(missing)? {
            PrecomputedNode::Info(v) => return Ok(metadata(&v)),
            PrecomputedNode::Chunk { level, index } => (level, index),
        },
    };
    let (level, index) = chunk;
    let key = ResponseKey::Chunk(store, level, index);
    if let Some(hit) = app.responses.get(&key) {
        app.response_hits.fetch_add(1, Ordering::Relaxed);
        return Ok(chunk_response(&hit, true, started, headers));
    }
    app.response_misses.fetch_add(1, Ordering::Relaxed);
    let queued = Arc::clone(&app.chunk_queue)
        .try_acquire_owned()
        .map_err(|_| Fail {
            status: 503,
            message: format!(
                "busy: {} chunk requests are waiting; try again shortly",
                app.chunk_queue_limit
            ),
            retry_after: Some(1),
        })?;
    let l = *layout.level(level).map_err(|e| app.fail(&e))?;
    let [slices, rows, _] = match store {
        Store::Precomputed => l.chunk_ranges(index),
        _ => l.file_ranges(index),
    }
    .ok_or_else(missing)?;
    // A chunk of many slices holds them all while it is cut: those wait for a heavy place, so
    // memory stays bounded by `--max-heavy` deep chunks.
    let deep = if slices.len() > 1 {
        Some(
            Arc::clone(&app.heavy)
                .acquire_owned()
                .await
                .map_err(|_| Fail::new(503, "the server is stopping"))?,
        )
    } else {
        None
    };
    let encoded = app
        .blocking(move |app, cancel| {
            let _places = (queued, deep);
            let ask = Ask {
                cancel: cancel.clone(),
                preview: false,
            };
            let mut from = "memory";
            let mut parts = Vec::with_capacity(slices.len());
            for z in slices {
                let (part, f) = app.chunk_part(level, z, &rows, &ask)?;
                if f != "memory" {
                    from = f;
                }
                parts.push(part);
            }
            // Whole slices when every one is held; else bands of the chunk's rows (the held
            // slices' rows copied out: a few rows, against a source read).
            let banded = parts.iter().any(|p| matches!(p, Part::Band(_)));
            let first_row = if banded { rows.start } else { 0 };
            let cut = parts
                .iter()
                .map(|p| match p {
                    Part::Band(band) => Ok(Cow::Borrowed(band)),
                    Part::Whole(held) if banded => {
                        let s = &held.slice;
                        render::crop(s, 0, rows.start, s.width(), rows.len() as u32)
                    }
                    Part::Whole(held) => Ok(Cow::Borrowed(&held.slice)),
                })
                .collect::<Result<Vec<Cow<'_, Slice>>, Fail>>()?;
            let bands: Vec<&Slice> = cut.iter().map(|c| c.as_ref()).collect();
            let mut out = Vec::new();
            match store {
                Store::Precomputed => {
                    layout.encode_precomputed_chunk_bands(level, index, first_row, &bands, &mut out)
                }
                Store::V2 | Store::V3 => {
                    layout.encode_file_bands(level, index, first_row, &bands, &mut out)
                }
            }
            .map_err(|e| app.fail(&e))?;
            let etag = format!("\"{:016x}\"", xxhash_rust::xxh3::xxh3_64(&out));
            let encoded = Arc::new(Encoded {
                body: Bytes::from(out),
                content_type: "application/octet-stream",
                etag,
                source: from,
                width: 0,
                height: 0,
                sample_type: "",
            });
            app.responses.insert(key, Arc::clone(&encoded));
            Ok(encoded)
        })
        .await?;
    Ok(chunk_response(&encoded, false, started, headers))
}

/// A metadata document: JSON, checked again by the client on every open.
fn metadata(v: &Value) -> Response {
    let mut r = json_response(StatusCode::OK, v);
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// What a `Range` header asks of a body of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum Ranged {
    /// The whole body (no `Range`, or one this server does not serve in parts: several
    /// ranges, another unit, bad syntax, which HTTP says to ignore).
    Whole,
    /// Bytes `start..end`.
    Part(u64, u64),
    /// A range that starts past the end: 416.
    Unsatisfiable,
}

/// Parses a single `bytes=` range of a body of `len` bytes.
fn parse_range(value: &str, len: u64) -> Ranged {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ranged::Whole;
    };
    if spec.contains(',') {
        return Ranged::Whole;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ranged::Whole;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (a.trim().is_empty(), b.trim().is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match num(b) {
            Some(0) => Ranged::Unsatisfiable,
            Some(n) => Ranged::Part(len.saturating_sub(n), len),
            None => Ranged::Whole,
        },
        // bytes=A-: from A to the end.
        (false, true) => match num(a) {
            Some(s) if s < len => Ranged::Part(s, len),
            Some(_) => Ranged::Unsatisfiable,
            None => Ranged::Whole,
        },
        (false, false) => match (num(a), num(b)) {
            (Some(s), Some(e)) if s <= e => {
                if s < len {
                    Ranged::Part(s, e.saturating_add(1).min(len))
                } else {
                    Ranged::Unsatisfiable
                }
            }
            _ => Ranged::Whole,
        },
        (true, true) => Ranged::Whole,
    }
}

/// A chunk's answer: its bytes (or the part `Range` asks for), 304 when `If-None-Match`
/// names its `ETag`, 416 for a range past its end.
fn chunk_response(e: &Encoded, cached: bool, started: Instant, headers: &HeaderMap) -> Response {
    let get = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let len = e.body.len() as u64;
    let not_modified = get(header::IF_NONE_MATCH).is_some_and(|v| {
        v.trim() == "*"
            || v.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == e.etag)
    });
    let ranged = match get(header::RANGE) {
        Some(v) if !not_modified => parse_range(v, len),
        _ => Ranged::Whole,
    };
    let mut r = match ranged {
        _ if not_modified => {
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            r
        }
        Ranged::Whole => Response::new(Body::from(e.body.clone())),
        Ranged::Part(s, end) => {
            let mut r = Response::new(Body::from(e.body.slice(s as usize..end as usize)));
            *r.status_mut() = StatusCode::PARTIAL_CONTENT;
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {s}-{}/{len}", end - 1)) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            r
        }
        Ranged::Unsatisfiable => {
            let mut r = json_response(
                StatusCode::RANGE_NOT_SATISFIABLE,
                &serde_json::json!({"error": format!("range not satisfiable: the chunk has {len} bytes")}),
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{len}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let h = r.headers_mut();
    if !not_modified {
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(e.content_type),
        );
    }
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&e.etag) {
        h.insert(header::ETAG, v);
    }
    let from = if cached { "memory" } else { e.source };
    h.insert("x-lodcache-source", HeaderValue::from_static(from));
    h.insert(
        "x-lodcache-cache",
        HeaderValue::from_static(if cached { "hit" } else { "miss" }),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("{:.2}", started.elapsed().as_secs_f64() * 1e3)) {
        h.insert("x-lodcache-ms", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_one_byte_range_or_the_whole_body() {
        assert_eq!(parse_range("bytes=0-9", 100), Ranged::Part(0, 10));
        assert_eq!(parse_range("bytes=90-200", 100), Ranged::Part(90, 100));
        assert_eq!(parse_range("bytes=10-", 100), Ranged::Part(10, 100));
        assert_eq!(parse_range("bytes=-16", 100), Ranged::Part(84, 100));
        assert_eq!(parse_range("bytes=-500", 100), Ranged::Part(0, 100));
        assert_eq!(parse_range("bytes=100-", 100), Ranged::Unsatisfiable);
        assert_eq!(parse_range("bytes=100-120", 100), Ranged::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Ranged::Unsatisfiable);
        for ignored in [
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=-",
            "bytes=+1-2",
        ] {
            assert_eq!(parse_range(ignored, 100), Ranged::Whole, "{ignored}");
        }
    }
}
