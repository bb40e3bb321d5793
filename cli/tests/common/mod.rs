//! Shared helpers of the tool's tests: running the `lodcache` binary cargo built for them, a
//! server started on a free port, and HTTP through ureq.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_lodcache")
}

/// A path as an argument (temporary folders have UTF-8 names).
pub fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// Runs `lodcache args...` to the end: status, stdout, stderr.
pub fn run(args: &[&str]) -> (Output, String, String) {
    let out = Command::new(bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

/// How long the server may take to start.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `lodcache serve`; dropping it kills the server, so a failing test leaks no
/// process.
pub struct Server {
    pub child: Child,
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
    pub port: u16,
    /// Lines the server wrote to stderr so far.
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `lodcache serve SCAN --port 0 ARGS...`; the URL comes from its first line.
    pub fn start(scan: &Path, args: &[&str]) -> Server {
        let child = Command::new(bin())
            .arg("serve")
            .arg(scan)
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut server = Server {
            child,
            base: String::new(),
            port: 0,
            stderr: Default::default(),
        };
        let stdout = server.child.stdout.take().unwrap();
        let stderr = server.child.stderr.take().unwrap();
        let log = std::sync::Arc::clone(&server.stderr);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                log.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let first = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(first);
            // Keep draining so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(line)) => line,
            Ok(Err(e)) => panic!("reading the server's output: {e}"),
            Err(_) => panic!(
                "the server printed no line in {START_TIMEOUT:?}; stderr: {}",
                server.stderr.lock().unwrap()
            ),
        };
        let url = line.trim();
        let port = url
            .strip_prefix("http://127.0.0.1:")
            .and_then(|rest| rest.strip_suffix('/'))
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "unexpected first line {line:?}; status {:?}; stderr {}",
                    server.child.try_wait(),
                    server.stderr.lock().unwrap()
                )
            });
        assert_ne!(port, 0, "{line}");
        server.port = port;
        server.base = format!("http://127.0.0.1:{port}");
        server
    }

    pub fn url(&self, target: &str) -> String {
        format!("{}{target}", self.base)
    }

    pub fn get(&self, target: &str) -> Reply {
        get(&self.url(target), &[])
    }

    pub fn get_with(&self, target: &str, headers: &[(&str, &str)]) -> Reply {
        get(&self.url(target), headers)
    }

    pub fn post(&self, target: &str, headers: &[(&str, &str)]) -> Reply {
        let mut req = agent().post(self.url(target));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        Reply::from(
            req.send_empty()
                .unwrap_or_else(|e| panic!("POST {target}: {e}")),
        )
    }

    /// A 200 JSON answer to `GET target`.
    pub fn json(&self, target: &str) -> Value {
        let reply = self.get(target);
        assert_eq!(reply.status, 200, "GET {target}: {}", reply.text());
        reply.json()
    }

    /// A 4xx JSON `{"error": ...}` answer (exactly `status` when given); returns the message.
    pub fn error(&self, target: &str, status: Option<u16>) -> String {
        self.get(target)
            .expect_error(&format!("GET {target}"), status)
    }

    /// The server still answers.
    pub fn assert_alive(&self) {
        let levels = self.json("/api/levels");
        assert!(levels["levels"].as_array().is_some_and(|l| !l.is_empty()));
    }
}

/// A ureq agent that hands back every status as a response (not an error) and never waits
/// forever.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// GET `url` with `headers`.
pub fn get(url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut req = agent().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    Reply::from(req.call().unwrap_or_else(|e| panic!("GET {url}: {e}")))
}

/// An HTTP response: status, headers (names lower-cased) and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl From<ureq::http::Response<ureq::Body>> for Reply {
    fn from(mut r: ureq::http::Response<ureq::Body>) -> Reply {
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let mut body = Vec::new();
        r.body_mut()
            .as_reader()
            .read_to_end(&mut body)
            .expect("reading the body");
        Reply {
            status,
            headers,
            body,
        }
    }
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> Value {
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
    pub fn expect_error(&self, what: &str, status: Option<u16>) -> String {
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

/// Every blob file under a cache folder (two levels deep).
pub fn blobs(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(levels) = std::fs::read_dir(dir) else {
        return out;
    };
    for l in levels.flatten() {
        if let Ok(files) = std::fs::read_dir(l.path()) {
            out.extend(
                files
                    .flatten()
                    .map(|f| f.path())
                    .filter(|p| p.extension().is_some_and(|x| x == "blob")),
            );
        }
    }
    out
}
