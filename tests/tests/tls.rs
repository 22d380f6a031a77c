//! TLS against the real `cairn` binary: https client URLs for gRPC (etcd-client over rustls)
//! and the JSON gateway (HTTP/1.1), refusals of untrusted servers and of missing or foreign
//! client certificates, RESP over TLS (`rediss://`), https metrics, a 3-member cluster on
//! https peer URLs with peer client certificate checks, and a member with a foreign peer
//! certificate kept out. Every certificate is made at run time ([`cairn_tests::tls`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_tests::tls::{CertFiles, Pki};
use cairn_tests::{free_port, run_cairn, runtime, Cairn};
use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// etcd-client options trusting `ca_pem`, presenting `client` if given.
fn tls_options(ca_pem: &str, client: Option<&CertFiles>) -> ConnectOptions {
    let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(ca_pem));
    if let Some(c) = client {
        tls = tls.identity(Identity::from_pem(&c.cert_pem, &c.key_pem));
    }
    ConnectOptions::new().with_tls(tls).with_timeout(Duration::from_secs(5)).with_connect_timeout(Duration::from_secs(5))
}

/// A put then a get of `key` over an https endpoint; the error text if either fails.
async fn put_get(endpoint: &str, opts: ConnectOptions, key: &str, value: &str) -> Result<String, String> {
    let mut client = Client::connect([endpoint], Some(opts)).await.map_err(|e| e.to_string())?;
    client.put(key, value, None).await.map_err(|e| e.to_string())?;
    let got = client.get(key, None).await.map_err(|e| e.to_string())?;
    Ok(got.kvs().first().map(|kv| kv.value_str().unwrap().to_string()).unwrap_or_default())
}

/// A raw rustls client trusting `ca_pem`, presenting `client`, offering `alpn`.
fn connector(ca_pem: &str, client: Option<&CertFiles>, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap()).unwrap();
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(c) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// Sends `request` over TLS to 127.0.0.1:`port` and reads until `done` says the answer is
/// whole (or the server closes); the error text when the handshake or the exchange fails
/// before any answer arrived.
async fn exchange(
    port: u16,
    tls: &tokio_rustls::TlsConnector,
    request: &[u8],
    done: impl Fn(&[u8]) -> bool,
) -> Result<String, String> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| e.to_string())?;
    let mut stream = tls.connect("localhost".try_into().unwrap(), tcp).await.map_err(|e| format!("handshake: {e}"))?;
    stream.write_all(request).await.map_err(|e| e.to_string())?;
    stream.flush().await.map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&got) {
        let mut buf = [0u8; 4096];
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) if got.is_empty() => return Err(e.to_string()),
            Ok(Err(_)) => break,
            Err(_) => return Err(format!("no whole answer in 10 s: {:?}", String::from_utf8_lossy(&got))),
        }
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// An HTTP/1.1 request over TLS (the server closes after answering).
async fn https(port: u16, tls: &tokio_rustls::TlsConnector, method: &str, path: &str, body: &str) -> Result<String, String> {
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    exchange(port, tls, request.as_bytes(), |_| false).await
}

/// One RESP command over TLS; the raw reply.
async fn resp(port: u16, tls: &tokio_rustls::TlsConnector, args: &[&str]) -> Result<String, String> {
    let mut request = format!("*{}\r\n", args.len());
    for a in args {
        request.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let whole = |b: &[u8]| {
        let lines = b.windows(2).filter(|w| w == b"\r\n").count();
        match b.first() {
            Some(b'$') if !b.starts_with(b"$-1") => lines >= 2,
            Some(_) => lines >= 1,
            None => false,
        }
    };
    exchange(port, tls, request.as_bytes(), whole).await
}

/// Waits until `endpoint` answers Status over TLS with `opts`.
async fn wait_ready(server: &Cairn, endpoint: &str, opts: &ConnectOptions) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut c) = Client::connect([endpoint], Some(opts.clone())).await {
            if c.status().await.is_ok() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "not ready over TLS:\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn waits_for(log: impl Fn() -> String, needle: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if log().contains(needle) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn https_serves_grpc_json_and_metrics_and_refuses_an_untrusted_server() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (tls_port, metrics_port) = (free_port(), free_port());
    let tls_url = format!("https://127.0.0.1:{tls_port}");
    let metrics_url = format!("https://127.0.0.1:{metrics_port}");
    // The harness adds an http:// client URL: both schemes are served at once, as in etcd.
    let server = Cairn::spawn(
        &dir.path().join("data"),
        free_port(),
        &["--listen-client-urls", &tls_url, "--listen-metrics-urls", &metrics_url, "--cert-file", pki.server.cert(), "--key-file", pki.server.key()],
    );
    runtime().block_on(async {
        wait_ready(&server, &tls_url, &tls_options(&pki.ca.cert_pem, None)).await;
        // gRPC (HTTP/2 over TLS) with a real etcd client; the server's IP SAN is verified.
        assert_eq!(put_get(&tls_url, tls_options(&pki.ca.cert_pem, None), "greeting", "hello").await.unwrap(), "hello");
        // The plaintext URL serves the same store.
        let mut plain = Client::connect([server.url()], None).await.unwrap();
        assert_eq!(plain.get("greeting", None).await.unwrap().kvs()[0].value(), b"hello");

        // The JSON gateway over HTTP/1.1 (ALPN http/1.1) on the same https port.
        let h1 = connector(&pki.ca.cert_pem, None, &[b"http/1.1"]);
        let answer = https(tls_port, &h1, "POST", "/v3/kv/range", r#"{"key":"Z3JlZXRpbmc="}"#).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains(r#""value":"aGVsbG8=""#), "{answer}");
        // A client offering no ALPN at all gets HTTP/1.1 too (the v2 API here: v2's /greeting
        // is v3's key "/greeting").
        let no_alpn = connector(&pki.ca.cert_pem, None, &[]);
        let answer = https(tls_port, &no_alpn, "PUT", "/v2/keys/greeting?value=v2", "").await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
        assert_eq!(plain.get("/greeting", None).await.unwrap().kvs()[0].value(), b"v2");
        // /metrics on the https metrics URL.
        let answer = https(metrics_port, &h1, "GET", "/metrics", "").await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains("etcd_server_has_leader 1"), "{answer}");

        // A client trusting another CA refuses the server: no request gets through.
        let err = put_get(&tls_url, tls_options(&pki.other_ca.cert_pem, None), "k", "v").await.unwrap_err();
        assert!(!err.is_empty());
        let wrong_ca = connector(&pki.other_ca.cert_pem, None, &[b"http/1.1"]);
        let err = https(tls_port, &wrong_ca, "GET", "/version", "").await.unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
        // A plaintext client on the https port gets no answer either.
        let mut raw = tokio::net::TcpStream::connect(("127.0.0.1", tls_port)).await.unwrap();
        raw.write_all(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), raw.read_to_end(&mut got)).await;
        assert!(!String::from_utf8_lossy(&got).contains("etcdserver"), "plaintext served on https");
    });
    assert!(waits_for(|| server.log(), "TLS handshake failed"), "the refused handshakes are logged:\n{}", server.log());
    assert!(!server.log().contains("panicked"));
}

#[test]
fn client_cert_auth_requires_a_certificate_from_the_trusted_ca() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (tls_port, redis_port) = (free_port(), free_port());
    let tls_url = format!("https://127.0.0.1:{tls_port}");
    let redis_url = format!("rediss://127.0.0.1:{redis_port}");
    let server = Cairn::spawn(
        &dir.path().join("data"),
        free_port(),
        &[
            "--listen-client-urls", &tls_url,
            "--listen-redis-urls", &redis_url,
            "--cert-file", pki.server.cert(),
            "--key-file", pki.server.key(),
            "--trusted-ca-file", pki.ca.cert(),
            "--client-cert-auth",
        ],
    );
    let ca = &pki.ca.cert_pem;
    runtime().block_on(async {
        wait_ready(&server, &tls_url, &tls_options(ca, Some(&pki.client))).await;
        assert_eq!(put_get(&tls_url, tls_options(ca, Some(&pki.client)), "k", "v1").await.unwrap(), "v1");
        let h1 = connector(ca, Some(&pki.client), &[b"http/1.1"]);
        let answer = https(tls_port, &h1, "POST", "/v3/kv/range", r#"{"key":"aw=="}"#).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200") && answer.contains(r#""value":"djE=""#), "{answer}");

        // No client certificate, or one from another CA: refused by gRPC and HTTP alike.
        for (what, client) in [("no certificate", None), ("a foreign certificate", Some(&pki.other_client))] {
            let err = put_get(&tls_url, tls_options(ca, client), "k", "v2").await;
            assert!(err.is_err(), "{what}: {err:?}");
            let refused = https(tls_port, &connector(ca, client, &[b"http/1.1"]), "POST", "/v3/kv/range", r#"{"key":"aw=="}"#).await;
            assert!(refused.is_err(), "{what}: {refused:?}");
            let refused = resp(redis_port, &connector(ca, client, &[]), &["PING"]).await;
            assert!(refused.is_err(), "{what} on RESP: {refused:?}");
        }
        // Nothing the refused clients sent was applied.
        assert_eq!(put_get(&tls_url, tls_options(ca, Some(&pki.client)), "k2", "x").await.unwrap(), "x");
        let mut c = Client::connect([tls_url.as_str()], Some(tls_options(ca, Some(&pki.client)))).await.unwrap();
        assert_eq!(c.get("k", Some(GetOptions::new())).await.unwrap().kvs()[0].value(), b"v1");

        // RESP over TLS, as `redis-cli --tls --cacert --cert --key` connects.
        let tls = connector(ca, Some(&pki.client), &[]);
        assert_eq!(resp(redis_port, &tls, &["PING"]).await.unwrap(), "+PONG\r\n");
        assert_eq!(resp(redis_port, &tls, &["SET", "rk", "over-tls"]).await.unwrap(), "+OK\r\n");
        assert_eq!(resp(redis_port, &tls, &["GET", "rk"]).await.unwrap(), "$8\r\nover-tls\r\n");
        assert_eq!(resp(redis_port, &tls, &["GET", "k"]).await.unwrap(), "$2\r\nv1\r\n");
    });
    let log = server.log();
    assert!(log.contains("rejected connection") && log.contains("TLS handshake failed"), "refusals are logged:\n{log}");
    assert!(!log.contains("panicked"));
}

/// `n` members on https peer URLs; member `i` uses `certs[i]` as its peer certificate.
fn tls_cluster(dir: &std::path::Path, pki: &Pki, certs: &[&CertFiles]) -> Vec<Cairn> {
    let peers: Vec<String> = certs.iter().map(|_| format!("https://127.0.0.1:{}", free_port())).collect();
    let cluster = peers.iter().enumerate().map(|(i, p)| format!("m{i}={p}")).collect::<Vec<_>>().join(",");
    certs
        .iter()
        .enumerate()
        .map(|(i, cert)| {
            let name = format!("m{i}");
            Cairn::spawn(
                &dir.join(&name),
                free_port(),
                &[
                    "--name", &name,
                    "--listen-peer-urls", &peers[i],
                    "--initial-advertise-peer-urls", &peers[i],
                    "--initial-cluster", &cluster,
                    "--peer-cert-file", cert.cert(),
                    "--peer-key-file", cert.key(),
                    "--peer-trusted-ca-file", pki.ca.cert(),
                    "--peer-client-cert-auth",
                ],
            )
        })
        .collect()
}

/// The value of `key` in member `m`'s own store (a serializable read), once it answers.
async fn local_value(m: &Cairn, key: &str) -> Option<Vec<u8>> {
    let mut c = Client::connect([m.url()], Some(ConnectOptions::new().with_timeout(Duration::from_secs(2)))).await.ok()?;
    let got = c.get(key, Some(GetOptions::new().with_serializable())).await.ok()?;
    got.kvs().first().map(|kv| kv.value().to_vec())
}

/// Puts `key` on member 0 until it succeeds (the cluster may still be electing).
async fn put_when_ready(members: &[Cairn], key: &str, value: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        if let Ok(mut c) = Client::connect([members[0].url()], Some(ConnectOptions::new().with_timeout(Duration::from_secs(3)))).await {
            if c.put(key, value, None).await.is_ok() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "no write accepted:\n{}", members.iter().map(Cairn::log).collect::<Vec<_>>().join("\n----\n"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn wait_value(m: &Cairn, key: &str, value: &[u8], within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if local_value(m, key).await.as_deref() == Some(value) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[test]
fn a_cluster_on_https_peer_urls_elects_and_replicates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let members = tls_cluster(dir.path(), &pki, &[&pki.server, &pki.server, &pki.server]);
    runtime().block_on(async {
        put_when_ready(&members, "replicated", "everywhere").await;
        for m in &members {
            assert!(wait_value(m, "replicated", b"everywhere", Duration::from_secs(20)).await, "not replicated:\n{}", m.log());
        }
        // One leader, known to every member.
        let mut leaders = Vec::new();
        for m in &members {
            let mut c = Client::connect([m.url()], None).await.unwrap();
            leaders.push(c.status().await.unwrap().leader());
        }
        assert!(leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]), "{leaders:?}");
    });
    for m in &members {
        assert!(!m.log().contains("TLS handshake failed"), "members trust each other:\n{}", m.log());
    }
}

#[test]
fn a_member_with_a_foreign_peer_certificate_is_kept_out() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    // m2's certificate is signed by a CA the others do not trust.
    let members = tls_cluster(dir.path(), &pki, &[&pki.server, &pki.server, &pki.other_server]);
    runtime().block_on(async {
        // m0 and m1 are a quorum: they elect a leader and replicate without m2.
        put_when_ready(&members, "quorum", "yes").await;
        assert!(wait_value(&members[1], "quorum", b"yes", Duration::from_secs(20)).await);
        // m2 never gets the write.
        assert!(!wait_value(&members[2], "quorum", b"yes", Duration::from_secs(5)).await, "m2 replicated:\n{}", members[2].log());
    });
    // The trusted members refuse m2's connections and say so.
    let refused = |i: usize| waits_for(|| members[i].log(), "TLS handshake failed");
    assert!(refused(0) || refused(1), "no refusal logged:\n{}\n----\n{}", members[0].log(), members[1].log());
    // m0 and m1 do not trust m2's server certificate either: their handshakes with m2 fail,
    // which m2 logs.
    assert!(refused(2), "m2 logs the failed handshakes:\n{}", members[2].log());
}

#[test]
fn tls_flags_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let data = dir.path().join("d");
    let data = data.to_str().unwrap();
    let https = format!("https://127.0.0.1:{}", free_port());
    let run = |args: &[&str]| {
        let out = run_cairn(args, Duration::from_secs(20));
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    };
    let err = run(&["--data-dir", data, "--listen-client-urls", &https]);
    assert!(err.contains("TLS key/cert (--cert-file, --key-file) must be provided for client url"), "{err}");
    let err = run(&["--data-dir", data, "--listen-client-urls", &https, "--cert-file", pki.server.cert(), "--key-file", pki.server.key(), "--client-cert-auth"]);
    assert!(err.contains("--client-cert-auth requires --trusted-ca-file"), "{err}");
    let missing = dir.path().join("missing.pem");
    let err = run(&["--data-dir", data, "--listen-client-urls", &https, "--cert-file", missing.to_str().unwrap(), "--key-file", pki.server.key()]);
    assert!(err.contains("cannot read certificate file"), "{err}");
    let err = run(&["--data-dir", data, "--listen-redis-urls", &format!("rediss://127.0.0.1:{}", free_port())]);
    assert!(err.contains("must be provided"), "{err}");
    let peer = format!("https://127.0.0.1:{}", free_port());
    let err = run(&["--data-dir", data, "--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer]);
    assert!(err.contains("--peer-cert-file"), "{err}");
    // Nothing was written: the checks come before the data dir is created.
    assert!(!std::path::Path::new(data).exists());
}
