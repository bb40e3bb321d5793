//! `lodcache serve` against hostile or careless clients, over real sockets: idle and slow
//! connections, DNS rebinding (Host), cross-site requests (Origin), clients that leave while
//! their request is read from the sources, the bound on heavy requests, a taken port, and
//! Ctrl-C / SIGTERM.
//!
//! The sockets of the timeout tests and the requests with a forged `Host` are written by hand
//! on purpose: they are what a hostile client sends, which a well-behaved HTTP client cannot.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, arg};
use lodcache::Phantom;

fn phantom(tmp: &Path, size: (u32, u32, u32)) -> std::path::PathBuf {
    let stack = tmp.join("stack");
    Phantom::new(size.0, size.1, size.2).write(&stack).unwrap();
    stack
}

/// Sends `head` (a request head without the final blank line) and returns the status code.
fn raw_status(port: u16, head: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out);
    text.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

#[test]
fn idle_and_slow_sockets_do_not_delay_a_new_client() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = phantom(tmp.path(), (300, 260, 20));
    let s = Server::start(&stack, &["--edge", "100", "--no-cache"]);
    // 300 connections that send nothing, and 20 that send a request head one byte a second.
    let idle: Vec<TcpStream> = (0..300)
        .map(|_| TcpStream::connect(("127.0.0.1", s.port)).unwrap())
        .collect();
    let mut slow: Vec<TcpStream> = (0..20)
        .map(|_| TcpStream::connect(("127.0.0.1", s.port)).unwrap())
        .collect();
    let head = b"GET /api/levels HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    for i in 0..3 {
        for c in &mut slow {
            let _ = c.write_all(&head[i..i + 1]);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    // A normal client is answered within a second, twice.
    for target in ["/api/levels", "/api/slice/2/1.png"] {
        let t = Instant::now();
        let reply = s.get(target);
        let took = t.elapsed();
        assert_eq!(reply.status, 200, "{target}");
        assert!(took < Duration::from_secs(1), "{target} took {took:?}");
    }
    drop(idle);
    drop(slow);
    s.assert_alive();
}

#[test]
fn idle_and_slow_connections_are_closed_by_the_timeouts() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = phantom(tmp.path(), (64, 48, 4));
    let s = Server::start(
        &stack,
        &[
            "--edge",
            "16",
            "--no-cache",
            "--idle-timeout",
            "1s",
            "--header-timeout",
            "1s",
        ],
    );
    let closed_within = |mut c: TcpStream, dribble: bool| -> Duration {
        let t = Instant::now();
        c.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut buf = [0u8; 256];
        let head = b"GET /api/levels HTTP/1.1\r\nHost: 127.0.0.1\r\n";
        let mut sent = 0;
        while t.elapsed() < Duration::from_secs(10) {
            if dribble && sent < head.len() && c.write_all(&head[sent..sent + 1]).is_ok() {
                sent += 1;
            }
            match c.read(&mut buf) {
                Ok(0) => return t.elapsed(),
                Ok(_) => {} // an error reply (408) may come before the close
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return t.elapsed(),
            }
        }
        panic!("the connection was not closed in 10 s")
    };
    let idle = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let took = closed_within(idle, false);
    assert!(
        took < Duration::from_secs(4),
        "idle socket closed after {took:?}"
    );
    let slow = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    let took = closed_within(slow, true);
    assert!(
        took < Duration::from_secs(4),
        "slow socket closed after {took:?}"
    );
    // A kept-alive connection idle after its request is closed too.
    let mut kept = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
    kept.write_all(
        format!(
            "GET /api/levels HTTP/1.1\r\nHost: 127.0.0.1:{}\r\n\r\n",
            s.port
        )
        .as_bytes(),
    )
    .unwrap();
    let mut first = [0u8; 12];
    kept.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    let mut rest = vec![0u8; 4096];
    let _ = kept.read(&mut rest);
    let took = closed_within(kept, false);
    assert!(
        took < Duration::from_secs(4),
        "kept-alive socket closed after {took:?}"
    );
    s.assert_alive();
}

#[test]
fn requests_naming_another_host_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = phantom(tmp.path(), (64, 48, 4));
    let s = Server::start(
        &stack,
        &["--edge", "16", "--no-cache", "--allow-host", "scans.lab"],
    );
    let p = s.port;
    for (host, want) in [
        (format!("127.0.0.1:{p}"), 200),
        (format!("localhost:{p}"), 200),
        (format!("scans.lab:{p}"), 200),
        (format!("evil.example:{p}"), 403),
        (format!("127.0.0.1.evil.example:{p}"), 403),
        (format!("127.0.0.1:{}", p.wrapping_add(1)), 403),
        ("evil.example".to_string(), 403),
    ] {
        for target in ["/api/levels", "/api/slice/1/0.png", "/", "/api/nothing"] {
            let status = raw_status(p, &format!("GET {target} HTTP/1.1\r\nHost: {host}"));
            let want = if want == 200 && target == "/api/nothing" {
                404
            } else {
                want
            };
            assert_eq!(status, want, "Host {host} {target}");
        }
    }
    // The refusal says why, as JSON.
    let r = s.get_with("/api/levels", &[("Host", "evil.example")]);
    if r.status == 403 {
        let m = r.expect_error("forged Host", Some(403));
        assert!(
            m.contains("evil.example") && m.contains("--allow-host"),
            "{m}"
        );
    }
}

#[test]
fn cross_site_requests_cannot_start_a_warmup() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = phantom(tmp.path(), (64, 48, 4));
    let s = Server::start(&stack, &["--edge", "16", "--no-cache"]);
    for headers in [
        &[("Origin", "http://evil.example")][..],
        &[("Origin", "null")],
        &[
            ("Origin", "http://evil.example"),
            ("Content-Type", "text/plain"),
        ],
        &[(
            "Origin",
            &format!("http://localhost:{}", s.port.wrapping_add(1)),
        )],
        &[("Sec-Fetch-Site", "cross-site")],
        &[("Sec-Fetch-Site", "same-site")],
    ] {
        for target in ["/api/warmup/start", "/api/warmup/cancel"] {
            let r = s.post(target, headers);
            let m = r.expect_error(&format!("{headers:?}"), Some(403));
            assert!(m.contains("cross-site"), "{m}");
        }
    }
    assert!(
        s.json("/api/stats")["warmup"].is_null(),
        "a refused POST started a warm-up"
    );
    // The same requests with this server's own origin, or from a tool (no Origin), work.
    let own = format!("http://127.0.0.1:{}", s.port);
    assert_eq!(s.post("/api/warmup/start", &[("Origin", &own)]).status, 200);
    assert_eq!(s.post("/api/warmup/cancel", &[]).status, 200);
}

/// Writes a scan of `depth` 16-bit PNG slices (slow to decode, small on disk).
fn png_scan(dir: &Path, size: u32, depth: u32) {
    std::fs::create_dir_all(dir).unwrap();
    for z in 0..depth {
        let img = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(size, size, |x, y| {
            // Smooth with some texture: compresses, still takes inflating.
            image::Luma([((x * 7 + y * 13 + z * 31) % 4096 + (x ^ y) % 97) as u16])
        });
        img.save(dir.join(format!("slice{z:04}.png"))).unwrap();
    }
}

/// The source slices the server has decoded so far.
fn source_slices(s: &Server) -> u64 {
    s.json("/api/stats")["source_slices"].as_u64().unwrap()
}

/// Starts `GET target` on a socket of its own (left open): the caller drops it to leave.
fn start_request(s: &Server, target: &str) -> TcpStream {
    let mut c = TcpStream::connect(("127.0.0.1", s.port)).unwrap();
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

/// Waits until the server has decoded more source slices than `from`.
fn wait_for_reading(s: &Server, from: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = source_slices(s);
        if n > from {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "the request never started reading"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_client_that_leaves_stops_the_reading_and_heavy_requests_are_bounded() {
    let tmp = tempfile::tempdir().unwrap();
    let scan = tmp.path().join("pngs");
    let depth = 400;
    png_scan(&scan, 768, depth);
    let s = Server::start(&scan, &["--no-cache", "--max-heavy", "1"]);
    let base = source_slices(&s);

    // A level-0 section reads every source slice: heavy.
    let first = start_request(&s, "/api/section/0/x/100.png");
    wait_for_reading(&s, base);
    // The one heavy place is taken: the next heavy request is refused at once.
    let t = Instant::now();
    let busy = s.get("/api/section/0/y/5.png");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    assert_eq!(busy.status, 503, "{}", busy.text());
    let m = busy.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(m.contains("busy"), "{m}");
    assert!(busy.header("retry-after").is_some(), "{:?}", busy.headers);
    // Light requests are still served.
    assert_eq!(s.get("/api/slice/1/3.png").status, 200);

    // The client leaves: the reading stops at the next slice, well before the end.
    drop(first);
    std::thread::sleep(Duration::from_millis(500));
    let stopped = source_slices(&s);
    std::thread::sleep(Duration::from_millis(1500));
    let later = source_slices(&s);
    assert_eq!(
        stopped, later,
        "source slices still being read after the client left"
    );
    assert!(
        stopped - base < u64::from(depth),
        "the whole section was read ({} slices)",
        stopped - base
    );
    // Its place is free again.
    let r = s.get("/api/section/0/x/3.png");
    assert_eq!(r.status, 200, "{}", r.text());
}

#[test]
fn a_taken_port_is_an_error_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = phantom(tmp.path(), (64, 48, 4));
    let s = Server::start(&stack, &["--edge", "16", "--no-cache"]);
    let (out, _, stderr) = common::run(&[
        "serve",
        arg(&stack),
        "--edge",
        "16",
        "--no-cache",
        "--port",
        &s.port.to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        stderr.contains(&s.port.to_string()) && stderr.contains("--port"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_and_sigterm_stop_the_server_cleanly() {
    let tmp = tempfile::tempdir().unwrap();
    let stack = phantom(tmp.path(), (64, 48, 4));
    for (signal, code) in [("-INT", 130), ("-TERM", 143)] {
        // The signal goes as soon as the URL is printed: the handlers must be in place by then.
        let mut s = Server::start(&stack, &["--edge", "16", "--no-cache"]);
        let kill = std::process::Command::new("kill")
            .args([signal, &s.child.id().to_string()])
            .status()
            .unwrap();
        assert!(kill.success());
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = s.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{signal}: still running");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(
            status.code(),
            Some(code),
            "{signal}: {}",
            s.stderr.lock().unwrap()
        );
        assert!(s.stderr.lock().unwrap().contains("stopping"));
        // The port is free again.
        assert!(TcpStream::connect(("127.0.0.1", s.port)).is_err());
    }
}
