//! `--max-client-connections` on a real cairn process: past the limit a connection is closed at
//! once (a RESP client first gets Redis's "max number of clients reached"), the refusal is
//! logged, and a slot freed by a closing client is taken by the next one.

mod resp_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use cairn_tests::Cairn;
use resp_support::Resp;

/// What the server sends before closing a connection it refuses (read until EOF).
fn refused(addr: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).expect("the server closes a refused connection");
    out
}

/// A keep-alive connection to the HTTP port that has been answered (so the server holds a slot
/// for it), or None if the server closed it instead.
fn served_http(addr: &str) -> Option<TcpStream> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 512];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                panic!("the server neither answered nor closed the connection: {e}")
            }
            Ok(0) | Err(_) => return None,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    Some(s)
}

#[test]
fn connections_past_the_limit_are_closed_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Cairn::start_with(&dir.path().join("data"), &["--max-client-connections", "2"]);

    // RESP: two clients are served; a third gets Redis's refusal and is closed.
    let mut a = Resp::connect(&server.redis_addr());
    let mut b = Resp::connect(&server.redis_addr());
    assert_eq!(a.cmd(&["PING"]), "+PONG\r\n");
    assert_eq!(b.cmd(&["PING"]), "+PONG\r\n");
    assert_eq!(refused(&server.redis_addr()), b"-ERR max number of clients reached\r\n");
    drop(a);
    // The slot comes back once the server has seen the close.
    let mut served = false;
    for _ in 0..100 {
        let mut c = TcpStream::connect(server.redis_addr()).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(&resp_support::encode(&[b"PING"])).unwrap();
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).unwrap_or(0);
        if buf[..n].starts_with(b"+PONG") {
            served = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(served, "a freed slot is given to the next client");
    assert_eq!(b.cmd(&["PING"]), "+PONG\r\n", "connections within the limit are untouched");

    // The client port: two connections that were answered hold the slots; a third is closed at
    // once. (The readiness probe's connection may still hold a slot for a moment after it
    // closed, so a connection refused for it is replaced.)
    let addr = server.url().trim_start_matches("http://").to_string();
    let mut held = Vec::new();
    for _ in 0..100 {
        if held.len() == 2 {
            break;
        }
        match served_http(&addr) {
            Some(conn) => held.push(conn),
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    assert_eq!(held.len(), 2, "two connections are served within the limit");
    assert!(refused(&addr).is_empty(), "nothing is said on the HTTP/gRPC port, the connection is closed");
    assert!(served_http(&addr).is_none(), "still refused while both slots are held");
    drop(held);

    server.stop();
    let log = server.log();
    assert!(log.contains("refused a connection from") && log.contains("--max-client-connections"), "refusals are logged: {log}");
}

#[test]
fn max_concurrent_streams_is_what_http2_clients_are_told() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start_with(&dir.path().join("data"), &["--max-concurrent-streams", "3"]);
    let addr = server.url().trim_start_matches("http://").to_string();
    cairn_tests::runtime().block_on(async {
        // HTTP/2 with prior knowledge, as gRPC clients speak it.
        let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
        let (mut client, connection) = h2::client::handshake(tcp).await.unwrap();
        tokio::spawn(connection);
        let request = http::Request::builder().uri(format!("http://{addr}/health")).body(()).unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), 200);
        // The server's SETTINGS frame has arrived by the time it answered.
        assert_eq!(client.current_max_send_streams(), 3, "SETTINGS_MAX_CONCURRENT_STREAMS from --max-concurrent-streams");
    });
}
