//! A running `cairn proxy` process for tests, and Prometheus text scraping (the proxy's and
//! the members' `/metrics`).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{cairn_bin, free_port};

/// `cairn proxy` on a free port; killed when dropped.
pub struct Proxy {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    /// Starts a proxy in front of `endpoints` with `extra` flags and waits until it serves.
    pub fn start(endpoints: &[String], extra: &[&str]) -> Proxy {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("proxy.log");
        let port = free_port();
        let child = Command::new(cairn_bin())
            .arg("proxy")
            .arg(format!("--endpoints={}", endpoints.join(",")))
            .arg(format!("--listen-addr=127.0.0.1:{port}"))
            .args(extra)
            // CAIRN_TEST_LOG_LEVEL (e.g. "debug") turns up the proxy's log.
            .args(std::env::var("CAIRN_TEST_LOG_LEVEL").map(|l| vec!["--log-level".to_string(), l]).unwrap_or_default())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("spawn cairn proxy");
        let mut proxy = Proxy { child: Some(child), port, log, _dir: dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(&proxy.addr(), "/metrics").is_none() {
            if let Some(status) = proxy.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!("cairn proxy exited with {status}:\n{}", proxy.log());
            }
            assert!(Instant::now() < deadline, "cairn proxy not serving:\n{}", proxy.log());
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The proxy's `/metrics` text.
    pub fn metrics(&self) -> String {
        http_get(&self.addr(), "/metrics").unwrap_or_else(|| panic!("proxy /metrics unreachable:\n{}", self.log()))
    }

    /// The client URL of the member the proxy forwards to (its `cairn_proxy_upstream` gauge).
    pub fn upstream(&self) -> Option<String> {
        let text = self.metrics();
        text.lines()
            .filter(|l| l.starts_with("cairn_proxy_upstream{") && l.trim_end().ends_with(" 1"))
            .find_map(|l| l.split("endpoint=\"").nth(1)?.split('"').next().map(str::to_string))
    }
}

impl Proxy {
    /// SIGTERM, then waits for the exit: its status code, None if it had to be killed.
    pub fn stop(&mut self) -> Option<i32> {
        crate::terminate(self.child.take()?)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// GET `path` from `addr` over HTTP/1.1; the body when the answer is 200.
pub fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if head.to_ascii_lowercase().contains("transfer-encoding: chunked") {
        return Some(dechunk(body));
    }
    Some(body.to_string())
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else { break };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The value of the sample `name` (with exactly these labels, e.g. `{method="put"}`, or "")
/// in Prometheus text.
pub fn metric(text: &str, name: &str, labels: &str) -> Option<f64> {
    let prefix = format!("{name}{labels} ");
    text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok())
}
