//! Listeners: binding the client (and metrics, RESP, peer) URLs, accepting connections with
//! the per-listener connection limit and, on `https://` URLs, the TLS handshake, and serving
//! the protocol routes on them.
//!
//! The accept loop only accepts: each TLS handshake runs in a task of its own (with a
//! deadline), so a slow or broken client never holds up the next accept. A failed handshake is
//! logged and the connection dropped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use cairn_etcd_v3::lenient_authority::LenientAuthority;
use cairn_etcd_v3::ClientCertCn;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::{Connected, TcpConnectInfo};

use cairn_etcd_v3::write_coalescing::WriteCoalescing;

/// How long a client may take to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A bound socket, with the TLS it speaks (`https://`, `rediss://`) or none.
pub struct Listener {
    pub url: String,
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
}

impl Listener {
    pub fn new(url: &str, tcp: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Listener { url: url.to_string(), tcp, tls: tls.map(TlsAcceptor::from) }
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

/// Splits `scheme://host:port` into whether it is `https` and its address to bind.
async fn resolve(url: &str) -> anyhow::Result<(bool, SocketAddr)> {
    let (tls, rest) = match url.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        Some((scheme, _)) => bail!("unsupported URL scheme {scheme:?} in {url} (use http:// or https://)"),
        None => bail!("URL {url} has no scheme (expected http://host:port or https://host:port)"),
    };
    Ok((tls, lookup(url, rest).await?))
}

/// The first address `hostport` (from `url`) resolves to.
pub async fn lookup(url: &str, hostport: &str) -> anyhow::Result<SocketAddr> {
    let hostport = hostport.trim_end_matches('/');
    let mut addrs = tokio::net::lookup_host(hostport).await.with_context(|| format!("cannot resolve {url}"))?;
    addrs.next().ok_or_else(|| anyhow!("{url} resolves to no address"))
}

/// Binds `addr` (named `url` in errors), with a one-line reason when it cannot.
pub async fn bind(url: &str, addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => anyhow!("cannot listen on {url}: address already in use"),
        _ => anyhow!("cannot listen on {url}: {e}"),
    })
}

/// Binds every `http://` or `https://` URL, failing with a one-line reason on the first that
/// cannot be bound; `https://` ones serve `tls` (`what` names the flags that configure it).
pub async fn bind_all(urls: &[String], tls: Option<&Arc<rustls::ServerConfig>>, what: &str) -> anyhow::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for url in urls {
        let (https, addr) = resolve(url).await?;
        let tls = match (https, tls) {
            (true, Some(config)) => Some(config.clone()),
            (true, None) => bail!("TLS key/cert ({what}) must be provided for {url} with HTTPS scheme"),
            (false, _) => None,
        };
        out.push(Listener::new(url, bind(url, addr).await?, tls));
    }
    Ok(out)
}

/// What the request handlers can learn about a connection: tonic puts it into every request's
/// extensions, and [`split_conn_info`] turns it into [`TcpConnectInfo`] and [`ClientCertCn`].
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub tcp: TcpConnectInfo,
    /// The Subject CN of the client certificate verified in the TLS handshake.
    pub cert_cn: Option<String>,
}

enum Io {
    /// Plain TCP, its small writes gathered until the protocol flushes
    /// ([`cairn_etcd_v3::write_coalescing`]).
    Plain(WriteCoalescing<TcpStream>),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// An accepted connection (after its TLS handshake), holding its place in the listener's
/// connection limit until it is dropped.
pub struct Conn {
    io: Io,
    info: ConnInfo,
    _permit: Option<OwnedSemaphorePermit>,
}

impl Conn {
    pub fn info(&self) -> &ConnInfo {
        &self.info
    }
}

impl Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_flush(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<io::Result<()>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.io {
            Io::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Io::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(s) => s.is_write_vectored(),
            Io::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// How a listener accepts.
#[derive(Debug, Clone, Copy)]
pub struct AcceptLimits {
    /// Connections open at once on this listener; more are closed at once (and logged).
    pub max_connections: usize,
    /// Written to a plaintext connection refused for the limit before it is closed.
    pub refusal: Option<&'static [u8]>,
}

impl AcceptLimits {
    pub const UNLIMITED: AcceptLimits = AcceptLimits { max_connections: Semaphore::MAX_PERMITS, refusal: None };
}

/// The listener's connections, TLS handshakes done, until the stream is dropped (which stops
/// the accepting task and closes the socket).
pub fn incoming(listener: Listener, limits: AcceptLimits) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(accept_loop(listener, limits, tx));
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

async fn accept_loop(listener: Listener, limits: AcceptLimits, tx: tokio::sync::mpsc::Sender<io::Result<Conn>>) {
    let permits = Arc::new(Semaphore::new(limits.max_connections.min(Semaphore::MAX_PERMITS)));
    let url = Arc::new(listener.url);
    loop {
        let (tcp, addr) = tokio::select! {
            _ = tx.closed() => return,
            accepted = listener.tcp.accept() => match accepted {
                Ok(pair) => pair,
                // Out of file descriptors and the like: keep serving the connections we have.
                Err(e) => {
                    tracing::warn!("{url}: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                "{url}: refused a connection from {addr}: {} connections are open (--max-client-connections)",
                limits.max_connections
            );
            if let (Some(text), None) = (limits.refusal, &listener.tls) {
                let _ = tcp.try_write(text);
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let tcp_info = tcp.connect_info();
        match &listener.tls {
            None => {
                let io = Io::Plain(WriteCoalescing::new(tcp));
                let conn = Conn { io, info: ConnInfo { tcp: tcp_info, cert_cn: None }, _permit: Some(permit) };
                if tx.send(Ok(conn)).await.is_err() {
                    return;
                }
            }
            Some(acceptor) => {
                let (acceptor, tx, url) = (acceptor.clone(), tx.clone(), url.clone());
                tokio::spawn(async move {
                    let stream = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => {
                            tracing::warn!("{url}: rejected connection from {addr}: TLS handshake failed: {e}");
                            return;
                        }
                        Err(_) => {
                            tracing::warn!("{url}: rejected connection from {addr}: no TLS handshake within {HANDSHAKE_TIMEOUT:?}");
                            return;
                        }
                    };
                    let cert_cn = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(crate::tls::common_name);
                    let info = ConnInfo { tcp: tcp_info, cert_cn };
                    let _ = tx.send(Ok(Conn { io: Io::Tls(Box::new(stream)), info, _permit: Some(permit) })).await;
                });
            }
        }
    }
}

/// Copies what the connection told about itself into the request's own extensions: its
/// addresses ([`TcpConnectInfo`], what `tonic::Request::remote_addr` reads) and the verified
/// client certificate's CN ([`ClientCertCn`]).
pub fn split_conn_info<B>(mut req: http::Request<B>) -> http::Request<B> {
    if let Some(info) = req.extensions_mut().remove::<ConnInfo>() {
        if let Some(cn) = info.cert_cn {
            req.extensions_mut().insert(ClientCertCn(cn));
        }
        req.extensions_mut().insert(info.tcp);
    }
    req
}

/// The HTTP/2 and connection limits of the client listeners.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    pub accept: AcceptLimits,
    /// SETTINGS_MAX_CONCURRENT_STREAMS of every HTTP/2 connection.
    pub max_concurrent_streams: u32,
}

/// Serves `routes` on every listener until `shutdown` completes.
pub async fn serve(
    listeners: Vec<Listener>,
    routes: tonic::service::Routes,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    use futures::StreamExt;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = tokio::task::JoinSet::new();
    for listener in listeners {
        let routes = routes.clone();
        let mut stop = stop_rx.clone();
        // Each connection is read through the `:authority` repair real etcd clients need.
        let conns = incoming(listener, limits.accept).map(|c| c.map(LenientAuthority::new));
        servers.spawn(async move {
            tonic::transport::Server::builder()
                // HTTP/1.1 too: the JSON gateway and the v2 API share the port with gRPC.
                .accept_http1(true)
                .max_concurrent_streams(limits.max_concurrent_streams)
                .layer(tower::util::MapRequestLayer::new(split_conn_info::<tonic::body::Body>))
                .add_routes(routes)
                .serve_with_incoming_shutdown(conns, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        });
    }
    shutdown.await;
    let _ = stop_tx.send(true);
    while let Some(res) = servers.join_next().await {
        res.context("listener task")?.context("serving")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{server_config, TlsFiles, ALPN_HTTP};
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    struct Pem {
        cert: String,
        key: String,
    }

    /// A CA, a server certificate for localhost and a client certificate with CN `alice`.
    fn pki() -> (Pem, Pem, Pem) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "unit test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca, ca_key);
        let issue = |cn: &str, sans: Vec<String>, usage| {
            let key = KeyPair::generate().unwrap();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![usage];
            Pem { cert: p.signed_by(&key, &issuer).unwrap().pem(), key: key.serialize_pem() }
        };
        let server = issue("server", vec!["localhost".into()], ExtendedKeyUsagePurpose::ServerAuth);
        let client = issue("alice", vec![], ExtendedKeyUsagePurpose::ClientAuth);
        (Pem { cert: ca_cert.pem(), key: String::new() }, server, client)
    }

    /// A gRPC service answering the CN its handler finds in the request extensions.
    #[derive(Clone)]
    struct WhoAmI;

    impl tonic::server::NamedService for WhoAmI {
        const NAME: &'static str = "test.WhoAmI";
    }

    struct Unary;

    impl tonic::server::UnaryService<String> for Unary {
        type Response = String;
        type Future = std::future::Ready<Result<tonic::Response<String>, tonic::Status>>;

        fn call(&mut self, request: tonic::Request<String>) -> Self::Future {
            let cn = request.extensions().get::<ClientCertCn>().map_or("<none>".to_string(), |c| c.0.clone());
            std::future::ready(Ok(tonic::Response::new(cn)))
        }
    }

    impl tower::Service<http::Request<tonic::body::Body>> for WhoAmI {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, req: http::Request<tonic::body::Body>) -> Self::Future {
            Box::pin(async move {
                let mut grpc = tonic::server::Grpc::new(tonic_prost::ProstCodec::<String, String>::default());
                Ok(grpc.unary(Unary, req).await)
            })
        }
    }

    fn routes() -> tonic::service::Routes {
        async fn whoami(cn: Option<axum::Extension<ClientCertCn>>) -> String {
            cn.map_or("<none>".to_string(), |c| c.0 .0)
        }
        let http = axum::Router::new().route("/whoami", axum::routing::get(whoami));
        tonic::service::Routes::from(http).add_service(WhoAmI)
    }

    async fn start(files: TlsFiles) -> (u16, tokio::sync::oneshot::Sender<()>) {
        let config = server_config(&files, ALPN_HTTP).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let listener = Listener::new("https://localhost", tcp, Some(config));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let limits = ServeLimits { accept: AcceptLimits::UNLIMITED, max_concurrent_streams: 100 };
        tokio::spawn(serve(vec![listener], routes(), limits, async move {
            let _ = stopped.await;
        }));
        (port, stop)
    }

    fn write(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Handlers of both gRPC calls (HTTP/2) and HTTP/1.1 requests read the verified client
    /// certificate's CN from the request extensions.
    #[tokio::test]
    async fn handlers_see_the_client_certificate_cn() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, server, client) = pki();
        let files = TlsFiles {
            cert_file: Some(write(dir.path(), "server.pem", &server.cert)),
            key_file: Some(write(dir.path(), "server-key.pem", &server.key)),
            trusted_ca_file: Some(write(dir.path(), "ca.pem", &ca.cert)),
            client_cert_auth: true,
        };
        let (port, _stop) = start(files).await;

        // gRPC over HTTP/2 (ALPN h2).
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&ca.cert))
            .identity(Identity::from_pem(&client.cert, &client.key));
        let channel = Endpoint::from_shared(format!("https://localhost:{port}")).unwrap().tls_config(tls).unwrap().connect().await.unwrap();
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.unwrap();
        let answer = grpc
            .unary(
                tonic::Request::new("who".to_string()),
                http::uri::PathAndQuery::from_static("/test.WhoAmI/Call"),
                tonic_prost::ProstCodec::<String, String>::default(),
            )
            .await
            .unwrap();
        assert_eq!(answer.into_inner(), "alice");

        // HTTP/1.1 (ALPN http/1.1) on the same port.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls_pki_types::CertificateDer::from_pem_slice(ca.cert.as_bytes()).unwrap()).unwrap();
        use rustls_pki_types::pem::PemObject;
        let chain = vec![rustls_pki_types::CertificateDer::from_pem_slice(client.cert.as_bytes()).unwrap()];
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(client.key.as_bytes()).unwrap();
        let mut config = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let mut tls = connector.connect("localhost".try_into().unwrap(), tcp).await.unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
        tls.write_all(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("\r\n\r\nalice"), "{answer}");
    }

    /// Past the limit a connection is closed at once (after the refusal text, if any); a place
    /// frees up when a connection closes.
    #[tokio::test]
    async fn connections_past_the_limit_are_closed() {
        use futures::StreamExt;
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        let limits = AcceptLimits { max_connections: 1, refusal: Some(b"-ERR full\r\n") };
        let mut conns = incoming(Listener::new("redis://test", tcp, None), limits);
        let first = TcpStream::connect(addr).await.unwrap();
        let accepted = conns.next().await.unwrap().unwrap();
        let mut second = TcpStream::connect(addr).await.unwrap();
        let mut text = Vec::new();
        second.read_to_end(&mut text).await.unwrap();
        assert_eq!(text, b"-ERR full\r\n");
        drop((first, accepted));
        let _third = TcpStream::connect(addr).await.unwrap();
        let accepted = tokio::time::timeout(Duration::from_secs(5), conns.next()).await.unwrap();
        assert!(accepted.unwrap().is_ok());
    }

    #[test]
    fn split_conn_info_moves_the_cn_into_its_own_extension() {
        let mut req = http::Request::new(());
        let tcp = TcpConnectInfo { local_addr: None, remote_addr: None };
        req.extensions_mut().insert(ConnInfo { tcp, cert_cn: Some("bob".into()) });
        let req = split_conn_info(req);
        assert_eq!(req.extensions().get::<ClientCertCn>(), Some(&ClientCertCn("bob".into())));
        assert!(req.extensions().get::<TcpConnectInfo>().is_some());
        assert!(req.extensions().get::<ConnInfo>().is_none());
    }
}
