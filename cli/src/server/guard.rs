//! Request checks before routing: the `Host` must name this server (DNS rebinding), and
//! state-changing requests must come from the server's own page (CSRF).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use super::app::json_response;

/// What a request's `Host` may name.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// Host names and addresses (lower case; IPv6 in brackets) that name this server.
    names: BTreeSet<String>,
    /// Whether any IP address literal is accepted (the server listens on every interface).
    any_ip: bool,
    /// The port the server listens on.
    port: u16,
}

impl Guard {
    /// The guard of a server bound to `host`:`port`, also accepting the names in `extra`.
    pub(crate) fn new(host: &str, port: u16, extra: &[String]) -> Guard {
        let mut names = BTreeSet::new();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip = bare.parse::<IpAddr>().ok();
        names.insert(match ip {
            Some(IpAddr::V6(v6)) => format!("[{v6}]"),
            Some(v4) => v4.to_string(),
            None => bare.to_ascii_lowercase(),
        });
        let loopback =
            ip.is_some_and(|ip| ip.is_loopback()) || bare.eq_ignore_ascii_case("localhost");
        let any_ip = ip.is_some_and(|ip| ip.is_unspecified());
        if loopback || any_ip {
            for n in ["localhost", "127.0.0.1", "[::1]"] {
                names.insert(n.to_string());
            }
        }
        for e in extra {
            names.insert(e.to_ascii_lowercase());
        }
        Guard {
            names,
            any_ip,
            port,
        }
    }

    /// Whether `host` (a `Host` header value, `name[:port]`) names this server.
    pub(crate) fn host_ok(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let (name, port) = if let Some(rest) = host.strip_prefix('[') {
            // [v6]:port
            match rest.split_once(']') {
                Some((addr, tail)) => (format!("[{addr}]"), tail.strip_prefix(':')),
                None => return false,
            }
        } else {
            match host.rsplit_once(':') {
                Some((n, p)) => (n.to_string(), Some(p)),
                None => (host.clone(), None),
            }
        };
        let port_ok = match port {
            Some(p) => p.parse::<u16>().ok() == Some(self.port),
            None => self.port == 80,
        };
        if !port_ok {
            return false;
        }
        let name = name.trim_end_matches('.');
        if self.names.contains(name) {
            return true;
        }
        let bare = name.trim_start_matches('[').trim_end_matches(']');
        self.any_ip && bare.parse::<IpAddr>().is_ok()
    }
}

fn refuse(status: StatusCode, message: String) -> Response {
    json_response(status, &json!({ "error": message }))
}

/// Refuses requests whose `Host` does not name this server (403), and requests that change
/// state (any method but GET, HEAD and OPTIONS) sent by a page of another origin: an `Origin`
/// other than `http://<Host>`, or `Sec-Fetch-Site` other than `same-origin` or `none` (403).
pub(crate) async fn check_request(
    State(guard): State<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()));
    let Some(host) = host else {
        return refuse(StatusCode::BAD_REQUEST, "no Host header".into());
    };
    if !guard.host_ok(&host) {
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "Host {:?} does not name this server (port {}); a page that reaches it by \
                 another name is refused (DNS rebinding). Add the name with --allow-host.",
                host, guard.port
            ),
        );
    }
    let reads = [Method::GET, Method::HEAD, Method::OPTIONS];
    if !reads.contains(request.method()) {
        let origin = request
            .headers()
            .get(header::ORIGIN)
            .map(|o| o.to_str().unwrap_or("?").to_string());
        if let Some(origin) = origin
            && !origin.eq_ignore_ascii_case(&format!("http://{host}"))
        {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "{} from origin {origin:?} refused: only this server's own page may change \
                     its state (cross-site request)",
                    request.method()
                ),
            );
        }
        let site = request
            .headers()
            .get("sec-fetch-site")
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        if let Some(site) = site
            && site != "same-origin"
            && site != "none"
        {
            return refuse(
                StatusCode::FORBIDDEN,
                format!(
                    "{} with Sec-Fetch-Site {site:?} refused: only this server's own page may \
                     change its state (cross-site request)",
                    request.method()
                ),
            );
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_servers_answer_to_loopback_names_on_their_port() {
        let g = Guard::new("127.0.0.1", 8080, &[]);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST:8080",
            "[::1]:8080",
        ] {
            assert!(g.host_ok(ok), "{ok}");
        }
        for bad in [
            "evil.example:8080",
            "127.0.0.1:8081",
            "127.0.0.1",
            "10.0.0.1:8080",
            "[::1",
            "",
        ] {
            assert!(!g.host_ok(bad), "{bad}");
        }
    }

    #[test]
    fn wildcard_servers_take_any_address_but_no_foreign_name() {
        let g = Guard::new("0.0.0.0", 80, &["scans.lab".into()]);
        assert!(g.host_ok("192.168.1.5"));
        assert!(g.host_ok("scans.lab"));
        assert!(g.host_ok("[fe80::1]:80"));
        assert!(!g.host_ok("evil.example"));
    }
}
