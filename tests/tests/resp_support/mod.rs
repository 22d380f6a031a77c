//! A minimal RESP client for the resp_* tests: raw bytes in, whole reply frames out, so the
//! tests can compare replies byte for byte with what redis-server 7 sends.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

pub struct Resp {
    pub stream: TcpStream,
    buf: Vec<u8>,
    pub resp3: bool,
}

/// A command as a RESP array of bulk strings.
pub fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

impl Resp {
    pub fn connect(addr: &str) -> Resp {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Resp { stream, buf: Vec::new(), resp3: false }
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// The next whole reply frame, raw.
    pub fn frame(&mut self) -> Vec<u8> {
        loop {
            let found = if self.resp3 {
                redis_protocol::resp3::decode::complete::decode(&self.buf).map(|o| o.map(|(_, n)| n))
            } else {
                redis_protocol::resp2::decode::decode(&self.buf).map(|o| o.map(|(_, n)| n))
            };
            if let Ok(Some(n)) = found {
                return self.buf.drain(..n).collect();
            }
            let mut chunk = [0u8; 65536];
            let n = self.stream.read(&mut chunk).expect("read a reply");
            assert!(n > 0, "connection closed while waiting for a reply; got so far: {:?}", String::from_utf8_lossy(&self.buf));
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one command and returns its reply, raw.
    pub fn cmd(&mut self, args: &[&str]) -> String {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.send(&encode(&args));
        String::from_utf8_lossy(&self.frame()).into_owned()
    }

    /// The integer of an integer reply.
    pub fn int(&mut self, args: &[&str]) -> i64 {
        let r = self.cmd(args);
        r.strip_prefix(':').and_then(|s| s.trim_end().parse().ok()).unwrap_or_else(|| panic!("{args:?}: not an integer reply: {r:?}"))
    }

    /// Reads until the server closes the connection; what arrived meanwhile.
    pub fn until_closed(&mut self) -> Vec<u8> {
        let mut out = std::mem::take(&mut self.buf);
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return out,
                Ok(n) => out.extend_from_slice(&chunk[..n]),
                Err(e) => panic!("expected the server to close the connection: {e}; got {:?}", String::from_utf8_lossy(&out)),
            }
        }
    }
}
