//! `cairn`: the server binary. Parses etcd-compatible flags (and ETCD_*/CAIRN_* environment
//! variables), opens the member's store, serves every client protocol on the client URLs, and
//! shuts down cleanly on SIGINT/SIGTERM.

mod config;
mod listen;
mod metrics;
mod snapshot_cmd;
mod resp;
mod tls;

use std::process::ExitCode;
use std::time::Duration;

use cairn_raft::CairnNode;
use clap::Parser;

use crate::config::Flags;

/// mimalloc instead of glibc's malloc: the request path allocates many small, short-lived
/// buffers (HTTP/2 frames, protobuf messages), and glibc's allocator was over a tenth of the
/// server's CPU in profiles of small reads and writes.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    // Subcommands; anything else is the server's own flags.
    let rest = || std::env::args().skip(2).collect();
    match std::env::args().nth(1).as_deref() {
        Some("snapshot") => return snapshot_cmd::run(rest()),
        Some("proxy") => return cairn_proxy::main(rest()),
        Some("bench") => return cairn_bench::main_with(rest()),
        _ => {}
    }
    config::import_etcd_env();
    let flags = Flags::parse();
    // openraft at warn at most. Its responder warns whenever the caller of `client_write` has
    // stopped waiting, which is every entry the state machine answers directly (`direct_answers`
    // in cairn-raft): one warning per write entry, nothing wrong.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(format!(
                "{},openraft=warn,openraft::raft::responder=error",
                flags.log_level
            ))
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match server_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runtime workers on a machine (or in a CPU set) with fewer CPUs.
const MIN_WORKERS: usize = 2;

/// The server's multi-threaded runtime, without tokio's LIFO slot where the build allows it
/// (`--cfg tokio_unstable`, set in `.cargo/config.toml`).
///
/// The LIFO slot runs the task woken last right after the current one. When a batch of
/// writes is applied, every answered request's stream task wakes its connection's task, which
/// then ran at once and sent that one answer in a `writev` of its own: 0.93 per put at 100
/// clients. Without the slot the woken connection tasks queue behind the other answered
/// streams and each sends all of its connection's answers together: 0.18 `writev` per put,
/// server CPU per put 47-68 -> 44-51 us, serializable reads 24-26 -> 18.5-20 us (BENCHMARKS.md, run 5).
///
/// At least two workers, also where the server may use only one CPU (`taskset`, a container's
/// CPU quota): the Raft log's append blocks the worker it runs on for its fsync
/// (`cairn_raft::log_store`), and with a single worker every connection waited for it. Measured
/// with the server pinned to one CPU, 1,000 clients putting: p99 136-146 ms with one worker,
/// 82 ms with two, the same throughput and lone-put latency (BENCHMARKS.md, after run 9).
/// `TOKIO_WORKER_THREADS` in the environment still decides when set.
fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cpus = std::thread::available_parallelism().map_or(MIN_WORKERS, |n| n.get());
        builder.worker_threads(cpus.max(MIN_WORKERS));
    }
    #[cfg(tokio_unstable)]
    builder.disable_lifo_slot();
    builder.build()
}

async fn run(flags: Flags) -> anyhow::Result<()> {
    let node_config = flags.node_config()?;
    // Before anything records a metric.
    let exporter = metrics::install()?;
    // Certificates next: a missing or unusable file is reported before anything is bound.
    let client_tls = flags.client_tls();
    let (http_tls, resp_tls) = if client_tls.has_identity() {
        (Some(tls::server_config(&client_tls, tls::ALPN_HTTP)?), Some(tls::server_config(&client_tls, &[])?))
    } else {
        (None, None)
    };
    let peer_tls = flags.peer_tls();
    let peer_server_tls = if peer_tls.has_identity() { Some(tls::server_config(&peer_tls, tls::ALPN_H2)?) } else { None };
    let peer_client_tls = match (&peer_tls.cert_file, &peer_tls.key_file, &peer_tls.trusted_ca_file) {
        (Some(cert), Some(key), Some(ca)) => {
            let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()));
            Some(cairn_peer::PeerTls { ca_pem: read(ca)?, cert_pem: read(cert)?, key_pem: read(key)? })
        }
        _ => None,
    };
    // Bind first: a taken port is reported before anything is written to disk.
    let listeners = listen::bind_all(&flags.listen_client_urls, http_tls.as_ref(), "--cert-file, --key-file").await?;
    let metrics_listeners = listen::bind_all(&flags.listen_metrics_urls, http_tls.as_ref(), "--cert-file, --key-file").await?;
    let redis_urls = resp::urls(&flags.listen_redis_urls);
    let redis_listeners = resp::bind_all(&redis_urls, resp_tls.as_ref()).await?;
    let peer_listeners =
        listen::bind_all(&flags.listen_peer_urls, peer_server_tls.as_ref(), "--peer-cert-file, --peer-key-file").await?;
    let peers = cairn_peer::PeerClients::with_tls(peer_client_tls);
    let node = CairnNode::open_with(node_config, peers.clone(), std::sync::Arc::new(peers.clone())).await?;
    peers.set_identity(node.cluster_id(), node.member_id());
    let (stop_peers, peers_stopped) = tokio::sync::watch::channel(false);
    let mut peer_servers = tokio::task::JoinSet::new();
    for listener in peer_listeners {
        let mut stopped = peers_stopped.clone();
        let incoming = listen::incoming(listener, listen::AcceptLimits::UNLIMITED);
        peer_servers.spawn(cairn_peer::server::serve(incoming, node.clone(), async move {
            let _ = stopped.wait_for(|s| *s).await;
        }));
    }
    if !node.wait_for_leader(Duration::from_secs(10)).await {
        tracing::warn!("no leader yet; serving anyway (requests fail with 'no leader' until one is elected)");
    } else if !node.wait_published(Duration::from_secs(5)).await {
        tracing::warn!("this member's client URLs are not in the membership yet; serving anyway");
    }
    tracing::info!(
        name = node.name(),
        member_id = format!("{:x}", node.member_id()),
        cluster_id = format!("{:x}", node.cluster_id()),
        runtime_workers = tokio::runtime::Handle::current().metrics().num_workers(),
        "ready to serve client requests on {}",
        flags.listen_client_urls.join(",")
    );
    if !redis_urls.is_empty() {
        tracing::info!("serving RESP (Redis protocol) clients on {}", redis_urls.join(","));
    }
    let (stop_redis, redis_stopped) = tokio::sync::watch::channel(false);
    let mut redis = resp::spawn_all(
        redis_listeners,
        node.clone(),
        flags.max_request_bytes,
        flags.max_txn_ops,
        flags.max_client_connections,
        redis_stopped,
    );
    let limits = listen::ServeLimits {
        accept: listen::AcceptLimits { max_connections: flags.max_client_connections, refusal: None },
        max_concurrent_streams: flags.max_concurrent_streams,
    };
    let service_limits = cairn_etcd_v3::ServiceLimits {
        max_request_bytes: flags.max_request_bytes,
        max_watchers_per_stream: flags.max_watchers_per_stream,
    };
    let routes = cairn_etcd_v3::routes_with(node.clone(), service_limits);
    // HTTP/1.1 and HTTP/2 JSON next to gRPC on the same listeners: the v3 JSON gateway, the v2
    // API, /version and /health.
    let http_config = cairn_http::HttpConfig { max_request_bytes: flags.max_request_bytes };
    let routes = cairn_http::with_grpc(routes, node.clone(), http_config);
    let routes = metrics::instrument(routes, exporter.clone());
    let (stop_metrics, metrics_stopped) = tokio::sync::watch::channel(false);
    let metrics_server = (!metrics_listeners.is_empty()).then(|| {
        let routes = metrics::metrics_only(node.clone(), exporter);
        let mut stopped = metrics_stopped;
        tokio::spawn(listen::serve(metrics_listeners, routes, limits, async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    });
    let (failed_tx, mut failed_rx) = tokio::sync::oneshot::channel();
    let stop = {
        let node = node.clone();
        async move {
            tokio::select! {
                _ = shutdown_signal() => {}
                error = node.failed() => {
                    tracing::error!("raft stopped: {error}; exiting so that a supervisor restarts this member");
                    let _ = failed_tx.send(error);
                }
            }
        }
    };
    let result = listen::serve(listeners, routes, limits, stop).await;
    let _ = stop_metrics.send(true);
    if let Some(server) = metrics_server {
        if let Ok(Err(e)) = server.await {
            tracing::warn!("metrics listener: {e}");
        }
    }
    let _ = stop_peers.send(true);
    while let Some(res) = peer_servers.join_next().await {
        if let Ok(Err(e)) = res {
            tracing::warn!("peer listener: {e}");
        }
    }
    let _ = stop_redis.send(true);
    while redis.join_next().await.is_some() {}
    node.shutdown().await;
    tracing::info!("stopped");
    if let Ok(error) = failed_rx.try_recv() {
        anyhow::bail!("raft stopped: {error}");
    }
    result
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("received a stop signal, shutting down");
}
