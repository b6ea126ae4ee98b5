//! A plain HTTP/1.1 client for the dashboard tests: one request per connection, bounded waits.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// An answer: status, header lines (lower-case names) and body.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// `(name, value)` pairs, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: String,
}

impl Answer {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (`Null` if it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_default()
    }
}

fn connect(addr: &str, head: &str, body: &[u8]) -> BufReader<TcpStream> {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    BufReader::new(s)
}

fn head(method: &str, addr: &str, path: &str, headers: &[(&str, &str)], len: usize) -> String {
    let mut h = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str(&format!("Content-Length: {len}\r\n\r\n"));
    h
}

fn read_head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            return (status, headers);
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
}

/// Sends one request to `addr` (`host:port`) and reads the whole answer.
pub fn request(
    method: &str,
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Answer {
    let mut r = connect(addr, &head(method, addr, path, headers, body.len()), body);
    let (status, headers) = read_head(&mut r);
    let mut raw = Vec::new();
    r.read_to_end(&mut raw).unwrap();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(&raw) } else { raw };
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..pos])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .unwrap_or(0);
        if size == 0 || raw.len() < pos + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[pos + 2..pos + 2 + size]);
        raw = &raw[(pos + 4 + size).min(raw.len())..];
    }
    out
}

/// `GET` with headers.
pub fn get(addr: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    request("GET", addr, path, headers, b"")
}

/// An open server-sent event stream.
pub struct EventStream {
    /// The status the server answered.
    pub status: u16,
    reader: BufReader<TcpStream>,
}

impl EventStream {
    /// Opens `path` on `addr` as an event stream.
    pub fn open(addr: &str, path: &str, headers: &[(&str, &str)]) -> Self {
        let mut reader = connect(addr, &head("GET", addr, path, headers, 0), b"");
        let (status, _) = read_head(&mut reader);
        Self { status, reader }
    }

    /// The next event as `(name, data)`, if one comes within `limit` (and the stream is open).
    pub fn next_event(&mut self, limit: Duration) -> Option<(String, String)> {
        if self.status != 200 {
            return None;
        }
        let deadline = Instant::now() + limit;
        let _ = self.reader.get_ref().set_read_timeout(Some(limit));
        let mut name = String::new();
        let mut line = String::new();
        while Instant::now() < deadline {
            line.clear();
            if self.reader.read_line(&mut line).unwrap_or(0) == 0 {
                return None;
            }
            let l = line.trim_end();
            if let Some(n) = l.strip_prefix("event:") {
                name = n.trim().to_string();
            } else if let Some(data) = l.strip_prefix("data:") {
                return Some((name, data.trim().to_string()));
            }
        }
        None
    }
}

/// Opens a server-sent event stream and returns the status and the first event named
/// `event` (its `data` line), read within `limit`; `None` if the stream was refused or
/// the event did not come.
pub fn first_event(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    event: &str,
    limit: Duration,
) -> (u16, Option<String>) {
    let mut stream = EventStream::open(addr, path, headers);
    let deadline = Instant::now() + limit;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match stream.next_event(left) {
            Some((name, data)) if name == event => return (stream.status, Some(data)),
            Some(_) => continue,
            None => break,
        }
    }
    (stream.status, None)
}
