//! Load test for the viewer: concurrent clients requesting random slices of every level.
//!
//! ```text
//! cargo run --release --example load -- ADDR [--clients N] [--seconds S] [--pid PID]
//! ```
//! `ADDR` is the viewer's `host:port`. Prints requests per second, p50 and p99 latency by
//! source (`X-Lodcache-Source`), the error count, and with `--pid` the server's peak RSS.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::{Duration, Instant};

struct Args {
    addr: String,
    clients: usize,
    seconds: u64,
    pid: Option<u32>,
}

fn parse_args() -> Result<Args, String> {
    let mut addr = None;
    let (mut clients, mut seconds, mut pid) = (8, 30, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name} takes a whole number, not {v:?}"))
        };
        match a.as_str() {
            "--clients" => clients = number("--clients")?.max(1) as usize,
            "--seconds" => seconds = number("--seconds")?,
            "--pid" => pid = Some(number("--pid")? as u32),
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            _ => addr = Some(a),
        }
    }
    let addr = addr.ok_or("usage: load ADDR [--clients N] [--seconds S] [--pid PID]")?;
    Ok(Args {
        addr,
        clients,
        seconds,
        pid,
    })
}

/// One HTTP/1.1 GET on a kept-alive connection: status, source header, body length.
fn get(
    stream: &mut BufReader<TcpStream>,
    host: &str,
    path: &str,
) -> std::io::Result<(u16, String)> {
    write!(
        stream.get_mut(),
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: keep-alive\r\n\r\n"
    )?;
    let mut line = String::new();
    stream.read_line(&mut line)?;
    let status = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let (mut length, mut source, mut chunked) = (0usize, String::from("none"), false);
    loop {
        line.clear();
        if stream.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        } else if let Some(v) = lower.strip_prefix("x-lodcache-source:") {
            source = v.trim().to_string();
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        loop {
            line.clear();
            stream.read_line(&mut line)?;
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or(0);
            let mut skip = vec![0u8; size + 2];
            stream.read_exact(&mut skip)?;
            if size == 0 {
                break;
            }
        }
    } else {
        let mut body = vec![0u8; length];
        stream.read_exact(&mut body)?;
    }
    Ok((status, source))
}

fn levels(host: &str) -> Result<Vec<(u32, u32)>, String> {
    let mut stream = BufReader::new(TcpStream::connect(host).map_err(|e| format!("{host}: {e}"))?);
    write!(
        stream.get_mut(),
        "GET /api/levels HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| e.to_string())?;
    Ok(v["levels"]
        .as_array()
        .map(|ls| {
            ls.iter()
                .map(|l| {
                    (
                        l["level"].as_u64().unwrap_or(0) as u32,
                        l["depth"].as_u64().unwrap_or(1) as u32,
                    )
                })
                .collect()
        })
        .unwrap_or_default())
}

fn peak_rss(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let levels = levels(&args.addr)?;
    if levels.is_empty() {
        return Err("the server listed no levels".into());
    }
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let results: Vec<(HashMap<String, Vec<Duration>>, u64)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.clients)
            .map(|c| {
                let (levels, host) = (&levels, args.addr.as_str());
                s.spawn(move || {
                    let mut by_source: HashMap<String, Vec<Duration>> = HashMap::new();
                    let mut errors = 0u64;
                    let mut x = 0x9e37_79b9u32 ^ (c as u32 + 1).wrapping_mul(0x85eb_ca6b);
                    let mut conn = None;
                    while Instant::now() < until {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        let (level, depth) = levels[(x as usize) % levels.len()];
                        let path = format!("/api/slice/{level}/{}.png", (x >> 8) % depth);
                        if conn.is_none() {
                            conn = TcpStream::connect(host)
                                .ok()
                                .inspect(|s| {
                                    // Requests are single small writes: no Nagle delay.
                                    let _ = s.set_nodelay(true);
                                })
                                .map(BufReader::new);
                        }
                        let Some(stream) = conn.as_mut() else {
                            errors += 1;
                            continue;
                        };
                        let t = Instant::now();
                        match get(stream, host, &path) {
                            Ok((200, source)) => {
                                by_source.entry(source).or_default().push(t.elapsed())
                            }
                            Ok(_) => errors += 1,
                            Err(_) => {
                                errors += 1;
                                conn = None;
                            }
                        }
                    }
                    (by_source, errors)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| (HashMap::new(), 1)))
            .collect()
    });
    let elapsed = started.elapsed().as_secs_f64();
    let mut all: HashMap<String, Vec<Duration>> = HashMap::new();
    let mut errors = 0;
    for (by_source, e) in results {
        errors += e;
        for (k, v) in by_source {
            all.entry(k).or_default().extend(v);
        }
    }
    let total: usize = all.values().map(Vec::len).sum();
    println!(
        "{} clients, {:.0} s: {total} requests, {:.0} requests/s, {errors} errors",
        args.clients,
        elapsed,
        total as f64 / elapsed
    );
    println!("| source | requests | p50 | p99 |");
    println!("|---|---|---|---|");
    let mut sources: Vec<_> = all.into_iter().collect();
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    for (source, mut times) in sources {
        times.sort();
        let p = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
        println!(
            "| {source} | {} | {:.2} ms | {:.2} ms |",
            times.len(),
            p(0.5).as_secs_f64() * 1e3,
            p(0.99).as_secs_f64() * 1e3
        );
    }
    if let Some(pid) = args.pid {
        match peak_rss(pid) {
            Some(b) => println!("server peak RSS: {:.1} MiB", b as f64 / (1 << 20) as f64),
            None => println!("server peak RSS: not readable for pid {pid}"),
        }
    }
    if errors > 0 {
        return Err(format!("{errors} requests failed"));
    }
    Ok(())
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
