//! `lodcache serve`: the web page and the HTTP API over a pyramid.
//!
//! The stack: tokio runs it; hyper 1 drives each HTTP/1.1 connection (its header-read timeout,
//! and per-connection control for the idle timeout and the shedding of idle sockets in
//! [`net`]); axum's `Router` routes, with the cross-cutting concerns as layers (the Host and
//! Origin guard, JSON errors, tower-http's CORS for reads). Library calls run on tokio's
//! blocking pool, bounded twice: the pool's thread cap and a semaphore of places
//! ([`app::Limits`]); heavy requests have their own, smaller bound (503 beyond it). See
//! docs/http-api.md for the endpoints.

mod app;
mod guard;
mod net;
mod render;
mod work;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use lodcache::{Pyramid, Stack};
use tokio::sync::watch;

pub(crate) use app::{Limits, ZarrOpts};
pub(crate) use net::ConnLimits;

use crate::opts::{PyramidOpts, default_edge, no_level_note, parse_duration, parse_size};
use crate::term::{clean, quote, say, tell};
use crate::{Failure, Outcome};

/// The edge `serve` uses on scans where the default edge gives no level, so that a small scan
/// (a 256-pixel MRI) still has coarse levels to show first.
pub(crate) const SMALL_SCAN_EDGE: u32 = 64;

/// Options of `lodcache serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The scan folder [default: the built-in sample, 1024 x 1024 x 128, 16-bit]
    scan: Option<PathBuf>,
    /// The address to listen on (127.0.0.1: this machine only; 0.0.0.0: every interface)
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// The port (0 picks a free one; the URL is printed on the first line)
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Another name the server may be reached by (the Host header is checked against the
    /// listening address, localhost on loopback, and these); repeatable
    #[arg(long, value_name = "NAME")]
    allow_host: Vec<String>,
    /// Bytes of encoded images (tiles, slices) kept to be sent again without encoding
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "128M")]
    response_cache: u64,
    /// Heavy requests (level-0 sections, levels not built yet) at once; more get 503
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    max_heavy: Option<u32>,
    /// OME-Zarr and precomputed chunk requests being made at once (waiting or running); more
    /// get 503 with Retry-After [default: 8 per place of the blocking pool, 256]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=65536))]
    max_queued_chunks: Option<u32>,
    /// A connection must send a whole request head within this (slow clients are dropped)
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "10s")]
    header_timeout: std::time::Duration,
    /// A connection with no request in progress for this long is closed
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "30s")]
    idle_timeout: std::time::Duration,
    /// Chunk shape Z,Y,X of the OME-Zarr (/zarr/, /zarr3/) and precomputed (/precomputed/)
    /// stores, cut to each level's shape (e.g. 64,64,64 for 3D viewers)
    #[arg(long, value_name = "Z,Y,X", value_parser = crate::opts::parse_chunks, default_value = "1,512,512")]
    zarr_chunks: lodcache::zarr::ChunkShape,
    /// Compression of OME-Zarr chunks: blosc-lz4, zstd (zstd:N for level N) or none
    /// (precomputed chunks are raw)
    #[arg(long, value_name = "NAME", value_parser = crate::opts::parse_compression, default_value = "blosc-lz4")]
    zarr_compression: lodcache::zarr::Compression,
    #[command(flatten)]
    pyramid: PyramidOpts,
}

/// The edge to serve `scan` with: the one given, else the default, else (the default giving
/// no level) [`SMALL_SCAN_EDGE`].
fn serve_edge(scan: &std::path::Path, given: Option<u32>) -> Result<u32, String> {
    if let Some(e) = given {
        return Ok(e);
    }
    let stack = Stack::open(scan)
        .map_err(|e| format!("opening {}: {}", quote(scan), clean(&e.to_string())))?;
    Ok(match no_level_note(&stack, default_edge()) {
        Some(_) => SMALL_SCAN_EDGE,
        None => default_edge(),
    })
}

/// A server running on a runtime of its own thread; see [`start`].
#[derive(Debug)]
pub(crate) struct Running {
    /// The address it listens on.
    pub(crate) addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<std::thread::JoinHandle<()>>,
    app: Arc<app::App>,
}

impl Running {
    /// Stops accepting, lets requests in progress finish, stops a warm-up, and waits.
    pub(crate) fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.app.stop_warmup();
        self.app.pyr.flush();
    }
}

/// Default heavy-request bound: one per core (at least 2).
fn default_heavy() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// Starts serving `pyr` on `host`:`port` on a new thread; returns once it listens.
pub(crate) fn start(
    pyr: Pyramid,
    host: &str,
    port: u16,
    allow_host: &[String],
    limits: Limits,
    conn: ConnLimits,
) -> Result<Running, String> {
    let cache_dir = pyr.disk().dir().to_path_buf();
    let app = Arc::new(app::App::new(pyr, Some(&cache_dir), limits)?);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cores.clamp(2, 8))
        .max_blocking_threads(limits.blocking + 4)
        .thread_name("lodcache-http")
        .enable_all()
        .build()
        .map_err(|e| format!("starting the server's runtime: {e}"))?;
    let listener = runtime.block_on(bind(host, port))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("reading the listening address: {e}"))?;
    let guard = Arc::new(guard::Guard::new(host, addr.port(), allow_host));
    let router = app::router(Arc::clone(&app), guard);
    let (stop, stopped) = watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("lodcache-server".into())
        .spawn(move || {
            runtime.block_on(net::serve(listener, router, conn, stopped));
            // Blocking work of requests whose clients left may still run: do not wait long.
            runtime.shutdown_timeout(std::time::Duration::from_secs(5));
        })
        .map_err(|e| format!("starting the server thread: {e}"))?;
    Ok(Running {
        addr,
        stop,
        thread: Some(thread),
        app,
    })
}

/// Binds `host`:`port`, with a message that names the address and suggests `--port` when it
/// is taken.
async fn bind(host: &str, port: u16) -> Result<tokio::net::TcpListener, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let target = if bare.contains(':') {
        format!("[{bare}]:{port}")
    } else {
        format!("{bare}:{port}")
    };
    tokio::net::TcpListener::bind(&target).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            format!(
                "cannot listen on {target}: the port {port} is taken (another server?); choose \
                 another with --port, or --port 0 for a free one"
            )
        } else {
            format!("cannot listen on {target}: {e}")
        }
    })
}

/// Ctrl-C and SIGTERM, caught from the moment this is made (before the URL is printed, so that
/// a signal sent as soon as the server is up still stops it cleanly).
struct Signals {
    runtime: tokio::runtime::Runtime,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn catch() -> Result<Signals, String> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the signal runtime: {e}"))?;
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let _inside = runtime.enter();
            let interrupt = signal(SignalKind::interrupt())
                .map_err(|e| format!("installing the Ctrl-C handler: {e}"))?;
            let terminate = signal(SignalKind::terminate())
                .map_err(|e| format!("installing the SIGTERM handler: {e}"))?;
            drop(_inside);
            Ok(Signals {
                runtime,
                interrupt,
                terminate,
            })
        }
        #[cfg(not(unix))]
        Ok(Signals { runtime })
    }

    /// Waits for one; returns the exit status a clean stop then has (130 or 143).
    fn wait(mut self) -> u8 {
        self.runtime.block_on(async {
            #[cfg(unix)]
            {
                tokio::select! {
                    _ = self.interrupt.recv() => 130,
                    _ = self.terminate.recv() => 143,
                }
            }
            #[cfg(not(unix))]
            {
                let _ = tokio::signal::ctrl_c().await;
                130
            }
        })
    }
}

pub(crate) fn run(args: ServeArgs) -> Outcome {
    let scan = crate::scan_or_sample(args.scan)?;
    let edge = serve_edge(&scan, args.pyramid.edge)?;
    let pyr = args.pyramid.open(&scan, edge, None, None)?;
    let zarr = ZarrOpts {
        chunk: args.zarr_chunks,
        compression: args.zarr_compression,
    };
    // A chunk shape the library refuses is an error now, not on the first request.
    app::layout_of(&pyr, zarr)?;
    let limits = Limits {
        response_cache: args.response_cache,
        slice_cache: 256 << 20,
        blocking: 32,
        heavy: args.max_heavy.map_or_else(default_heavy, |n| n as usize),
        chunk_queue: args.max_queued_chunks.map(|n| n as usize),
        zarr,
    };
    let levels = pyr.levels().len();
    let signals = Signals::catch()?;
    let running = start(
        pyr,
        &args.host,
        args.port,
        &args.allow_host,
        limits,
        ConnLimits {
            header_read: args
                .header_timeout
                .max(std::time::Duration::from_millis(100)),
            idle: args.idle_timeout.max(std::time::Duration::from_millis(100)),
            ..ConnLimits::default()
        },
    )?;
    let host = match running.addr {
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
        SocketAddr::V4(a) => a.ip().to_string(),
    };
    // The URL first, alone on its line: scripts and tests read it.
    say!("http://{host}:{}/", running.addr.port());
    say!(
        "serving {} ({} levels, edge {edge}); Ctrl-C stops",
        quote(&scan),
        levels
    );
    let code = signals.wait();
    tell!("stopping: finishing the requests in progress...");
    running.stop();
    match code {
        130 => Err(Failure::Interrupted),
        _ => Err(Failure::Terminated),
    }
}
