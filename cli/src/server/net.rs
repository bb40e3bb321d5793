//! Connections: hyper drives each one (HTTP/1.1), with a header-read timeout, an idle timeout,
//! and a connection limit that idle sockets cannot exhaust: past it, the connections that have
//! no request in progress (idle keep-alive sockets, clients still dribbling their headers) are
//! closed, oldest first, to make room. Graceful shutdown: stop accepting, let requests in
//! progress finish (for a bounded time), close the rest.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// How connections are kept and dropped.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    /// The whole request head must arrive within this (slow-header clients are dropped).
    pub(crate) header_read: Duration,
    /// A connection with no request in progress for this long is closed.
    pub(crate) idle: Duration,
    /// Past this many connections, idle ones are closed to make room.
    pub(crate) soft: usize,
    /// Connections beyond this, when none is idle, are closed at once.
    pub(crate) hard: usize,
    /// How long requests in progress get to finish at shutdown.
    pub(crate) drain: Duration,
}

impl Default for ConnLimits {
    fn default() -> Self {
        ConnLimits {
            header_read: Duration::from_secs(10),
            idle: Duration::from_secs(30),
            soft: 256,
            hard: 2048,
            drain: Duration::from_secs(5),
        }
    }
}

/// One connection as the accept loop sees it.
#[derive(Debug)]
struct Conn {
    /// Requests in progress (from the call of the service until the response body is sent).
    busy: AtomicUsize,
    /// Milliseconds since the server started when it was last busy (or opened).
    idle_since: AtomicU64,
    /// Asks the connection to close if it is idle.
    shed: Notify,
}

impl Conn {
    fn is_idle(&self) -> bool {
        self.busy.load(Ordering::Acquire) == 0
    }
}

/// Marks a request in progress on its connection until dropped (with the response body).
#[derive(Debug)]
struct Busy {
    conn: Arc<Conn>,
    epoch: Instant,
}

impl Busy {
    fn enter(conn: &Arc<Conn>, epoch: Instant) -> Busy {
        conn.busy.fetch_add(1, Ordering::AcqRel);
        Busy {
            conn: Arc::clone(conn),
            epoch,
        }
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.conn.idle_since.store(now, Ordering::Release);
        self.conn.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request marked busy until hyper has sent (or dropped) it.
struct TrackedBody {
    inner: Body,
    _busy: Busy,
}

impl hyper::body::Body for TrackedBody {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The open connections, for shedding idle ones.
#[derive(Debug, Default)]
struct Registry {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a connection; returns its id and whether it may stay (false past the hard
    /// limit with no idle connection to close). Past the soft limit, asks the oldest idle
    /// connections to close.
    fn open(&self, conn: Arc<Conn>, limits: &ConnLimits) -> (u64, bool) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut conns = self.lock();
        let count = conns.len() + 1;
        let mut freed = 0;
        if count > limits.soft {
            let mut idle: Vec<(u64, &Arc<Conn>)> = conns
                .values()
                .filter(|c| c.is_idle())
                .map(|c| (c.idle_since.load(Ordering::Acquire), c))
                .collect();
            idle.sort_by_key(|(since, _)| *since);
            // Make room for this one and a few more, so that a burst does not shed one by one.
            let want = count - limits.soft + 8;
            for (_, c) in idle.into_iter().take(want) {
                c.shed.notify_one();
                freed += 1;
            }
        }
        let admit = count <= limits.hard || freed > 0;
        if admit {
            conns.insert(id, conn);
        }
        (id, admit)
    }

    fn close(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn count(&self) -> usize {
        self.lock().len()
    }
}

/// Accepts and serves connections on `listener` with `router` until `shutdown` turns true;
/// then drains (see [`ConnLimits::drain`]) and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let registry = Arc::new(Registry::default());
    let epoch = Instant::now();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => break,
        };
        let (stream, _) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                crate::term::tell!("warning: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn {
            busy: AtomicUsize::new(0),
            idle_since: AtomicU64::new(epoch.elapsed().as_millis() as u64),
            shed: Notify::new(),
        });
        let (id, admit) = registry.open(Arc::clone(&conn), &limits);
        if !admit {
            drop(stream);
            continue;
        }
        let registry = Arc::clone(&registry);
        let router = router.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            serve_one(stream, router, conn, epoch, limits, shutdown).await;
            registry.close(id);
        });
    }
    // Shutdown: stop accepting (the listener closes here), then wait for the connections.
    drop(listener);
    let deadline = Instant::now() + limits.drain + Duration::from_secs(1);
    while registry.count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn serve_one(
    stream: tokio::net::TcpStream,
    router: Router,
    conn: Arc<Conn>,
    epoch: Instant,
    limits: ConnLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = {
        let conn = Arc::clone(&conn);
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let busy = Busy::enter(&conn, epoch);
            let router = router.clone();
            async move {
                let response = match router.oneshot(request.map(Body::new)).await {
                    Ok(r) => r,
                    Err(never) => match never {},
                };
                Ok::<_, std::convert::Infallible>(
                    response.map(|inner| TrackedBody { inner, _busy: busy }),
                )
            }
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read)
        .max_buf_size(64 * 1024)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let mut draining: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = conn.shed.notified() => {
                if conn.is_idle() {
                    return;
                }
            }
            changed = shutdown.changed(), if draining.is_none() => {
                let _ = changed;
                connection.as_mut().graceful_shutdown();
                draining = Some(Instant::now() + limits.drain);
            }
            _ = tick.tick() => {
                if let Some(until) = draining && Instant::now() >= until {
                    return;
                }
                let since = conn.idle_since.load(Ordering::Acquire);
                let now = epoch.elapsed().as_millis() as u64;
                if conn.is_idle() && now.saturating_sub(since) >= limits.idle.as_millis() as u64 {
                    return;
                }
            }
        }
    }
}
