//! Host and Origin checks. A request must name a host this node serves (its bind address,
//! `localhost` on loopback, the names of `--http-allowed-hosts`), so that a web page whose name
//! is re-pointed at the node (DNS rebinding) gets 421; a state-changing request from a browser
//! must come from the node's own origin, so that another site's page gets 403 (CSRF).

use super::problem_kind;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The names a node answers to.
#[derive(Debug, Clone)]
pub struct Hosts {
    bind: IpAddr,
    hostname: Option<String>,
    allowed: Arc<[String]>,
}

/// `authority` (`host[:port]`) split into its lower-case host (IPv6 kept in brackets) and port.
fn split(authority: &str) -> (String, Option<&str>) {
    let authority = authority.trim();
    let (host, port) = if authority.starts_with('[') {
        match authority.find(']') {
            Some(end) => (&authority[..=end], authority[end + 1..].strip_prefix(':')),
            None => (authority, None),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    (host, port)
}

fn ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

impl Hosts {
    /// The names a node bound to `bind` on machine `hostname` answers to, plus `allowed`
    /// (host names without port, lower case; `*` allows any).
    pub fn new(bind: SocketAddr, hostname: Option<String>, allowed: &[String]) -> Self {
        let allowed: Vec<String> = allowed
            .iter()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .collect();
        Self {
            bind: bind.ip(),
            hostname: hostname.map(|h| h.to_ascii_lowercase()),
            allowed: allowed.into(),
        }
    }

    fn listed(&self, host: &str) -> bool {
        self.allowed.iter().any(|a| a == "*" || a == host)
    }

    /// Whether `host` (lower case, no port) is a name this node serves.
    pub fn serves(&self, host: &str) -> bool {
        if self.listed(host) {
            return true;
        }
        let any = self.bind.is_unspecified();
        let loopback = self.bind.is_loopback();
        if let Some(ip) = ip(host) {
            return any || ip == self.bind || (loopback && ip.is_loopback());
        }
        if host == "localhost" {
            return any || loopback;
        }
        !loopback && self.hostname.as_deref() == Some(host)
    }

    /// Whether a browser's `origin` (`scheme://authority`) is this node's own origin for a
    /// request sent to `host_header`: the same authority, or a name of the allow-list (a
    /// proxy may rewrite the Host header).
    pub fn same_origin(&self, origin: &str, host_header: &str) -> bool {
        let Some((scheme, rest)) = origin.split_once("://") else {
            return false;
        };
        if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
            return false;
        }
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.contains('@') {
            return false;
        }
        if authority.eq_ignore_ascii_case(host_header.trim()) {
            return true;
        }
        let (host, _) = split(authority);
        self.allowed.iter().any(|a| a != "*" && *a == host)
    }
}

/// The request's Host header, if it has exactly one readable one.
fn host_header(headers: &HeaderMap) -> Option<&str> {
    let mut all = headers.get_all(header::HOST).iter();
    let first = all.next()?.to_str().ok()?;
    all.next().is_none().then_some(first)
}

/// Middleware: 421 for a Host this node does not serve; 403 for a state-changing request
/// whose Origin (or Referer, without one) is another site.
pub async fn check(State(hosts): State<Hosts>, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let Some(host) = host_header(headers) else {
        let why = "a request needs one Host header".to_string();
        return problem_kind(StatusCode::BAD_REQUEST, "bad_input", why);
    };
    let (name, _) = split(host);
    if !hosts.serves(&name) {
        let why = format!(
            "this node does not serve the host '{name}' (add it to --http-allowed-hosts if a proxy or DNS name points here)"
        );
        return problem_kind(StatusCode::MISDIRECTED_REQUEST, "misdirected", why);
    }
    if !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        let origin = headers
            .get(header::ORIGIN)
            .or_else(|| headers.get(header::REFERER))
            .map(|v| v.to_str().unwrap_or_default());
        if let Some(origin) = origin.filter(|o| !hosts.same_origin(o, host)) {
            let why = format!("a state change from another origin ('{origin}') is refused");
            return problem_kind(StatusCode::FORBIDDEN, "forbidden", why);
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(bind: &str, allowed: &[&str]) -> Hosts {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        Hosts::new(bind.parse().unwrap(), Some("vm1".into()), &allowed)
    }

    #[test]
    fn a_loopback_node_serves_loopback_names_only() {
        let h = hosts("127.0.0.1:8080", &[]);
        for ok in ["127.0.0.1", "localhost", "[::1]", "127.0.0.2"] {
            assert!(h.serves(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "vm1",
            "10.0.0.1",
            "",
            "localhost.evil.example",
        ] {
            assert!(!h.serves(bad), "{bad}");
        }
    }

    #[test]
    fn an_exposed_node_serves_its_addresses_hostname_and_allow_list() {
        let any = hosts("0.0.0.0:8080", &["Dash.Example.org"]);
        for ok in [
            "10.1.2.3",
            "[fe80::1]",
            "localhost",
            "vm1",
            "dash.example.org",
        ] {
            assert!(any.serves(ok), "{ok}");
        }
        assert!(!any.serves("rebind.evil.example"));
        let one = hosts("10.0.0.5:8080", &[]);
        assert!(one.serves("10.0.0.5") && one.serves("vm1"));
        assert!(!one.serves("10.0.0.6") && !one.serves("localhost"));
        assert!(hosts("127.0.0.1:1", &["*"]).serves("anything.example"));
    }

    #[test]
    fn only_the_nodes_own_origin_may_change_state() {
        let h = hosts("127.0.0.1:8080", &["dash.example.org"]);
        let host = "127.0.0.1:8080";
        assert!(h.same_origin("http://127.0.0.1:8080", host));
        assert!(
            h.same_origin("http://127.0.0.1:8080/jobs?x=1", host),
            "a Referer"
        );
        assert!(
            h.same_origin("https://dash.example.org", host),
            "behind a proxy"
        );
        for bad in [
            "http://evil.example",
            "null",
            "http://127.0.0.1:8081",
            "file://127.0.0.1:8080",
            "http://127.0.0.1:8080@evil.example",
            "",
        ] {
            assert!(!h.same_origin(bad, host), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_hosts_and_origins_never_panic(host in "\\PC{0,80}", origin in "\\PC{0,80}") {
            for bind in ["127.0.0.1:1", "0.0.0.0:1", "[::]:1", "10.0.0.5:1"] {
                let h = hosts(bind, &["dash.example.org", "*.x"]);
                let (name, _) = split(&host);
                let _ = h.serves(&name);
                let _ = h.same_origin(&origin, &host);
            }
        }
    }

    #[test]
    fn authorities_split_into_host_and_port() {
        assert_eq!(split("LocalHost:80"), ("localhost".into(), Some("80")));
        assert_eq!(split("[::1]:80"), ("[::1]".into(), Some("80")));
        assert_eq!(split("vm1."), ("vm1".into(), None));
    }
}
