//! The load generator's connections: hyper's HTTP/2 client, used by the gRPC clients directly.
//!
//! Why not tonic's `Channel`: it passes every request through a buffer task (a queue and a
//! task wake-up of its own) before hyper's connection task sends it. A load generator shares
//! the machine with the server it measures, so its cost per request is CPU the server does not
//! get, and a lone client's latency includes its hops. Here a request goes from the client's
//! task to the connection's task, as with the Go gRPC client of etcd's own benchmark tool.
//!
//! Each connection also gathers its small writes until HTTP/2 flushes ([`WriteCoalescing`],
//! whose comment says why), so requests that are ready together leave in one write.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use cairn_etcd_v3::pb::etcdserverpb::{kv_client::KvClient, lease_client::LeaseClient, watch_client::WatchClient};
use cairn_etcd_v3::write_coalescing::WriteCoalescing;
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tonic::body::Body;
use tonic::codegen::http::{Request, Response, Uri};

/// How long opening a connection (TCP and the HTTP/2 handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One HTTP/2 connection; clones share it.
#[derive(Clone)]
pub struct Connection {
    send: SendRequest<Body>,
    origin: Uri,
}

/// Why a connection could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid endpoint: {0}")]
    Endpoint(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("HTTP/2 handshake: {0}")]
    Http2(#[from] hyper::Error),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

impl Connection {
    /// Connects to `endpoint` (`host:port` or `http://host:port`).
    pub async fn open(endpoint: &str) -> Result<Self, ConnectError> {
        let text = if endpoint.contains("://") { endpoint.to_string() } else { format!("http://{endpoint}") };
        let origin: Uri = text.parse().map_err(|e| ConnectError::Endpoint(format!("{endpoint}: {e}")))?;
        if origin.scheme_str() != Some("http") {
            return Err(ConnectError::Endpoint(format!("{endpoint}: only http:// endpoints are supported")));
        }
        let host = origin.host().ok_or_else(|| ConnectError::Endpoint(format!("{endpoint}: no host")))?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = origin.port_u16().ok_or_else(|| ConnectError::Endpoint(format!("{endpoint}: no port")))?;
        let opening = async {
            let tcp = TcpStream::connect((host.as_str(), port)).await?;
            tcp.set_nodelay(true)?;
            let io = TokioIo::new(WriteCoalescing::new(tcp));
            let (send, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new()).handshake(io).await?;
            tokio::spawn(connection);
            Ok::<_, ConnectError>(send)
        };
        let send = tokio::time::timeout(CONNECT_TIMEOUT, opening).await.map_err(|_| ConnectError::Timeout(CONNECT_TIMEOUT))??;
        Ok(Connection { send, origin })
    }

    pub fn kv(&self) -> KvClient<Connection> {
        KvClient::with_origin(self.clone(), self.origin.clone())
    }

    pub fn lease(&self) -> LeaseClient<Connection> {
        LeaseClient::with_origin(self.clone(), self.origin.clone())
    }

    pub fn watch(&self) -> WatchClient<Connection> {
        WatchClient::with_origin(self.clone(), self.origin.clone())
    }
}

impl tower::Service<Request<Body>> for Connection {
    type Response = Response<hyper::body::Incoming>;
    type Error = hyper::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, hyper::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.send.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        Box::pin(self.send.send_request(request))
    }
}
