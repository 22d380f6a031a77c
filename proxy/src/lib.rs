//! `cairn proxy`: a stateless etcd v3 gRPC proxy in front of a Cairn (or etcd) cluster.
//!
//! Why: many clients (sidecars, per-node agents) watching the same keys and renewing the same
//! leases put load on every member that one shared process can absorb. The proxy holds no data;
//! it can be restarted or run many times, and clients point at it with the usual etcd flags.
//!
//! What it does:
//! - Serves etcd's v3 gRPC services (KV, Watch, Lease, Cluster, Maintenance, Lock, Election)
//!   by forwarding each call as it came, unchanged, to one member; answers and errors are the
//!   member's own. It follows the leader and fails over between members; which calls are
//!   retried after a failure, and which are not (writes that may have been applied), is
//!   explained in [`upstream`].
//! - Coalesces watches ([`watch`]) and batches lease keep-alives ([`keepalive`]).
//! - Optionally answers serializable reads from a short-lived cache
//!   (`--serializable-read-cache-ttl`, off by default); linearizable reads and every write
//!   always go to the cluster ([`services::ReadCache`]).
//! - Exposes its own Prometheus metrics on `/metrics` on the listen address.
//! - Serves the other client protocols of a member through the same forwarding: the v3 JSON
//!   gateway (`/v3/...`), the v2 API (`/v2/keys`, `/v2/members`, `/v2/stats`), `/version` and
//!   `/health` next to gRPC on the listen address, and RESP on `--listen-redis-addr` (off by
//!   default). Those adapters (cairn-http, cairn-resp) are built on the core API, so
//!   [`remote::Remote`] implements the core API over the proxy's own gRPC services: each core
//!   call becomes the etcd message, is forwarded with the same failover and retry rules (and
//!   the read cache, keep-alive batching and watch coalescing), and a member's error comes back
//!   as the core error it was made from, so the adapters answer exactly as on a member. The
//!   proxy still holds no data: only the adapters' per-process state (v2 `/v2/stats/store`
//!   counters, RESP connections and SCAN cursors), as on any member.

pub mod keepalive;
pub mod remote;
pub mod services;
pub mod upstream;
pub mod watch;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use futures::StreamExt;
use tokio::net::TcpListener;

use cairn_etcd_v3::lenient_authority::LenientAuthority;
use cairn_etcd_v3::pb::etcdserverpb::auth_server::AuthServer;
use cairn_etcd_v3::pb::etcdserverpb::cluster_server::ClusterServer;
use cairn_etcd_v3::pb::etcdserverpb::kv_server::KvServer;
use cairn_etcd_v3::pb::etcdserverpb::lease_server::LeaseServer;
use cairn_etcd_v3::pb::etcdserverpb::maintenance_server::MaintenanceServer;
use cairn_etcd_v3::pb::etcdserverpb::watch_server::WatchServer;
use cairn_etcd_v3::pb::v3electionpb::election_server::ElectionServer;
use cairn_etcd_v3::pb::v3lockpb::lock_server::LockServer;

use crate::keepalive::KeepAlives;
use crate::remote::Remote;
use crate::services::{Forward, ReadCache, MAX_MESSAGE_BYTES};
use crate::upstream::Upstream;
use crate::watch::{WatchHub, WatchProxy};

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no endpoints given (--endpoints)")]
    NoEndpoints,
    #[error("bad endpoint {0:?}: {1}")]
    BadEndpoint(String, String),
    #[error("bad --listen-addr {0:?}: {1}")]
    BadListenAddr(String, String),
    #[error("cannot listen on {0}: {1}")]
    Bind(String, std::io::Error),
    #[error("bad --listen-redis-addr {0:?}: {1}")]
    BadRedisAddr(String, String),
    #[error("serving: {0}")]
    Serve(#[from] tonic::transport::Error),
}

/// `cairn proxy` flags; names as etcd's `etcd grpc-proxy start` where it has them.
#[derive(Debug, Clone, Parser)]
#[command(name = "cairn proxy", about = "A stateless etcd v3 gRPC proxy in front of a Cairn cluster")]
pub struct ProxyFlags {
    /// The cluster's client URLs (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379")]
    pub endpoints: Vec<String>,
    /// The address the proxy serves clients on: gRPC, the JSON gateway, v2, /version, /health
    /// and /metrics.
    #[arg(long, default_value = "127.0.0.1:23790")]
    pub listen_addr: String,
    /// How long connecting to a member may take.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub dial_timeout: Duration,
    /// How long one call may be retried across members before the client gets the error.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub retry_timeout: Duration,
    /// How long a serializable read's answer may be reused; 0 (the default) turns the cache off.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub serializable_read_cache_ttl: Duration,
    /// How often the proxy asks the members which one leads.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub leader_check_interval: Duration,
    /// Also serve RESP (Redis protocol) clients on this address (host:port or redis://host:port);
    /// off by default.
    #[arg(long)]
    pub listen_redis_addr: Option<String>,
    /// The members' `--max-request-bytes`: the largest key or value RESP accepts, and the JSON
    /// gateway's and v2's body limit (the members refuse larger writes themselves).
    #[arg(long, default_value_t = 1536 * 1024)]
    pub max_request_bytes: usize,
    /// The members' `--max-txn-ops`: RESP splits its writes into txns of at most this many.
    #[arg(long, default_value_t = 128)]
    pub max_txn_ops: usize,
    /// Log filter (tracing's env-filter syntax: `info`, `debug`, `cairn_proxy=debug`, ...).
    #[arg(long, default_value = "info")]
    pub log_level: String,
}

pub use cairn_etcd_v3::duration::parse_duration;

/// Entry point of `cairn proxy <flags>`.
pub fn main(args: Vec<String>) -> ExitCode {
    let flags = match ProxyFlags::try_parse_from(std::iter::once("cairn proxy".to_string()).chain(args)) {
        Ok(f) => f,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&flags.log_level)
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn proxy: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags, shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn proxy: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Serves until `shutdown` completes.
pub async fn run(flags: ProxyFlags, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), ProxyError> {
    let hostport = flags.listen_addr.trim_start_matches("http://").trim_end_matches('/').to_string();
    let bad = |e: String| ProxyError::BadListenAddr(flags.listen_addr.clone(), e);
    let addr: SocketAddr = tokio::net::lookup_host(hostport.as_str())
        .await
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))?;
    let listener = TcpListener::bind(addr).await.map_err(|e| ProxyError::Bind(flags.listen_addr.clone(), e))?;
    let redis_listener = match &flags.listen_redis_addr {
        Some(a) => Some(bind_redis(a).await?),
        None => None,
    };
    let metrics = install_metrics();

    let up = Upstream::new(&flags.endpoints, flags.dial_timeout, flags.retry_timeout)?;
    // A zero interval would poll the members in a busy loop.
    tokio::spawn(up.clone().follow_leader(flags.leader_check_interval.max(Duration::from_millis(100))));
    let keepalives = KeepAlives::start(up.clone(), flags.retry_timeout);
    let fwd = Forward::new(up.clone(), Arc::new(ReadCache::new(flags.serializable_read_cache_ttl)), keepalives);
    let hub = WatchHub::new(up.clone());
    // The core API over the same forwarding, for the adapters built on it (HTTP and RESP).
    let remote = Remote::new(fwd.clone(), hub.clone());

    let max = MAX_MESSAGE_BYTES;
    let routes = tonic::service::Routes::new(KvServer::new(fwd.clone()).max_decoding_message_size(max))
        .add_service(LeaseServer::new(fwd.clone()).max_decoding_message_size(max))
        .add_service(WatchServer::new(WatchProxy::new(hub)).max_decoding_message_size(max))
        .add_service(LockServer::new(fwd.clone()).max_decoding_message_size(max))
        .add_service(ElectionServer::new(fwd.clone()).max_decoding_message_size(max))
        .add_service(ClusterServer::new(fwd.clone()).max_decoding_message_size(max))
        .add_service(MaintenanceServer::new(fwd.clone()).max_decoding_message_size(max))
        .add_service(AuthServer::new(fwd).max_decoding_message_size(max));
    // HTTP next to gRPC, as on a member: the v3 JSON gateway, the v2 API, /version, /health.
    let http_config = cairn_http::HttpConfig { max_request_bytes: flags.max_request_bytes };
    let routes = cairn_http::with_grpc(routes, remote.clone(), http_config);
    let router = routes.into_axum_router().route(
        "/metrics",
        axum::routing::get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    metrics.map(|m| m.render()).unwrap_or_default(),
                )
            }
        }),
    );
    tracing::info!(endpoints = %flags.endpoints.join(","), "proxy serving on {addr}");
    let (stop_redis, mut redis_stopped) = tokio::sync::watch::channel(false);
    let redis = redis_listener.map(|listener| {
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        tracing::info!("serving RESP (Redis protocol) clients on port {port}");
        let config = cairn_resp::Config { max_request_bytes: flags.max_request_bytes, max_txn_ops: flags.max_txn_ops, port };
        tokio::spawn(cairn_resp::serve(listener, remote.clone(), config, async move {
            let _ = redis_stopped.wait_for(|s| *s).await;
        }))
    });
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        conn.map(|stream| {
            let _ = stream.set_nodelay(true);
            LenientAuthority::new(stream)
        })
    });
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let server = tonic::transport::Server::builder()
        .accept_http1(true)
        .add_routes(tonic::service::Routes::from(router))
        .serve_with_incoming_shutdown(incoming, async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        });
    tokio::pin!(server);
    let served: Result<(), ProxyError> = async {
        tokio::select! {
            served = &mut server => served?,
            () = shutdown => {
                let _ = stop_tx.send(true);
                // Watch and keep-alive streams never end by themselves: unary calls get a
                // moment to finish, then the open streams are cut (clients reconnect elsewhere).
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                    Ok(served) => served?,
                    Err(_) => tracing::info!("closing the streams still open"),
                }
            }
        }
        Ok(())
    }
    .await;
    let _ = stop_redis.send(true);
    if let Some(redis) = redis {
        let _ = redis.await;
    }
    served
}

/// Binds `--listen-redis-addr` (`host:port`, `redis://host:port` or `tcp://host:port`).
async fn bind_redis(flag: &str) -> Result<TcpListener, ProxyError> {
    let hostport = match flag.split_once("://") {
        Some(("redis" | "tcp", rest)) => rest.trim_end_matches('/'),
        Some((scheme, _)) => return Err(ProxyError::BadRedisAddr(flag.into(), format!("unsupported URL scheme {scheme:?}"))),
        None => flag,
    };
    let bad = |e: String| ProxyError::BadRedisAddr(flag.into(), e);
    let addr = tokio::net::lookup_host(hostport)
        .await
        .map_err(|e| bad(e.to_string()))?
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))?;
    TcpListener::bind(addr).await.map_err(|e| ProxyError::Bind(flag.into(), e))
}

/// How long a stopping proxy waits for calls in flight.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The process-wide Prometheus recorder (None when one was installed already).
fn install_metrics() -> Option<metrics_exporter_prometheus::PrometheusHandle> {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    match metrics::set_global_recorder(recorder) {
        Ok(()) => Some(handle),
        Err(e) => {
            tracing::warn!("metrics recorder: {e}");
            None
        }
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("received a stop signal, shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_go() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
