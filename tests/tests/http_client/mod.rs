//! A minimal HTTP/1.1 client over std's TcpStream for the HTTP tests (no client crate needed):
//! whole answers, or a streaming answer read line by line.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn send(port: u16, method: &str, target: &str, content_type: Option<&str>, headers: &[(&str, &str)], body: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if let Some(ct) = content_type {
        head.push_str(&format!("Content-Type: {ct}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    // A server may refuse a large body before reading it all: ignore a broken pipe here.
    let _ = s.write_all(body);
    s
}

fn read_head(r: &mut BufReader<TcpStream>) -> (u16, Vec<(String, String)>) {
    let mut line = String::new();
    r.read_line(&mut line).expect("status line");
    let status = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line {line:?}"));
    let mut headers = Vec::new();
    loop {
        line.clear();
        r.read_line(&mut line).expect("header line");
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    (status, headers)
}

fn chunked(headers: &[(String, String)]) -> bool {
    headers.iter().any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"))
}

/// One chunk of a chunked body; None at its end.
fn read_chunk(r: &mut BufReader<TcpStream>) -> Option<Vec<u8>> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let size = usize::from_str_radix(line.trim(), 16).ok()?;
    let mut data = vec![0; size + 2];
    r.read_exact(&mut data).ok()?;
    data.truncate(size);
    (size > 0).then_some(data)
}

pub fn request(port: u16, method: &str, target: &str, content_type: Option<&str>, body: &[u8]) -> Reply {
    request_with_headers(port, method, target, content_type, &[], body)
}

/// [`request`] with extra request headers (e.g. `Authorization`).
pub fn request_with_headers(
    port: u16,
    method: &str,
    target: &str,
    content_type: Option<&str>,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut r = BufReader::new(send(port, method, target, content_type, headers, body));
    let (status, headers) = read_head(&mut r);
    let mut body = Vec::new();
    if chunked(&headers) {
        while let Some(c) = read_chunk(&mut r) {
            body.extend(c);
        }
    } else {
        let _ = r.read_to_end(&mut body);
    }
    Reply { status, headers, body }
}

pub fn post_json(port: u16, path: &str, body: &serde_json::Value) -> Reply {
    request(port, "POST", path, Some("application/json"), body.to_string().as_bytes())
}

/// A v2 form request (`application/x-www-form-urlencoded` body).
pub fn form(port: u16, method: &str, path: &str, form: &str) -> Reply {
    request(port, method, path, Some("application/x-www-form-urlencoded"), form.as_bytes())
}

pub fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path, None, b"")
}

/// A streaming answer, read a line at a time.
pub struct LineStream {
    reader: BufReader<TcpStream>,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    chunked: bool,
    buf: Vec<u8>,
}

impl LineStream {
    pub fn open(port: u16, method: &str, target: &str, content_type: Option<&str>, body: &[u8]) -> LineStream {
        let mut reader = BufReader::new(send(port, method, target, content_type, &[], body));
        let (status, headers) = read_head(&mut reader);
        let chunked = chunked(&headers);
        LineStream { reader, status, headers, chunked, buf: Vec::new() }
    }

    /// The next non-empty line as JSON; None when the answer ends.
    pub fn next_json(&mut self) -> Option<serde_json::Value> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(serde_json::from_slice(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&line))));
            }
            if self.chunked {
                self.buf.extend(read_chunk(&mut self.reader)?);
            } else {
                let mut tmp = [0u8; 4096];
                let n = self.reader.read(&mut tmp).ok()?;
                if n == 0 {
                    return None;
                }
                self.buf.extend_from_slice(&tmp[..n]);
            }
        }
    }
}

/// Standard base64 (the proto3 JSON mapping of bytes).
pub fn b64(s: &str) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n = (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard base64 decoding (padded input).
pub fn unb64(s: &str) -> Vec<u8> {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let vals: Vec<u32> = s.bytes().filter(|b| *b != b'=').map(|b| A.iter().position(|a| *a == b).expect("base64") as u32).collect();
    let mut out = Vec::new();
    for c in vals.chunks(4) {
        let n = c.iter().enumerate().fold(0u32, |n, (i, v)| n | (v << (18 - 6 * i)));
        out.extend(n.to_be_bytes()[1..c.len()].iter());
    }
    out
}

#[test]
fn base64_matches_the_standard_alphabet() {
    assert_eq!(unb64("Zm9v"), b"foo");
    assert_eq!(unb64("YmE="), b"ba");
    assert_eq!(unb64("Yg=="), b"b");
    assert_eq!(b64("foo"), "Zm9v");
    assert_eq!(b64("ba"), "YmE=");
    assert_eq!(b64("b"), "Yg==");
}
