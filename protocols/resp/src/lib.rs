//! The RESP adapter: redis-cli and Redis client libraries read and write Cairn's keyspace.
//!
//! A Redis key is the etcd v3 key of the same bytes, a value the v3 value, a TTL the key's
//! lease (docs/keyspace.md). Commands are Redis 7's string commands plus the connection,
//! transaction and keyspace-notification commands; anything else gets Redis's own
//! unknown-command error. Every write goes through the core's `Kv`/`Lease` traits (so through
//! Raft), reads are linearizable unless a connection asks for serializable reads with
//! `CAIRN.CONSISTENCY serializable`.
//!
//! Layout: [`request`] reads commands off the wire (RESP arrays and inline lines), [`reply`]
//! encodes answers in RESP2 or RESP3, [`session`] holds a connection's state and dispatches,
//! [`tx`] turns a command into one optimistic etcd txn, and the command modules
//! ([`strings`], [`expiry`], [`keys`], [`scan`], [`server`], [`pubsub`]) say what each command
//! does. Errors are Redis's texts ([`errors`]). Like the etcd adapter, this crate is generic
//! over the core's traits and never names Raft or RocksDB.

pub mod batch;
pub mod errors;
pub mod expiry;
pub mod glob;
pub mod keys;
pub mod pubsub;
pub mod reply;
pub mod request;
pub mod scan;
pub mod server;
pub mod session;
pub mod strings;
pub mod table;
pub mod tx;

use std::future::Future;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use cairn_api::{Kv, Lease, Maintenance, Watch};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::reply::{encode, Reply};
use crate::request::Parsed;
use crate::session::Session;

/// What the RESP listener needs to know of the server's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The largest bulk string (key or value) accepted: `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// Most keys one txn may touch: `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// The port INFO reports.
    pub port: u16,
}

/// State every connection shares.
pub struct Shared<S> {
    pub store: S,
    pub config: Config,
    pub cursors: scan::Cursors,
    pub next_client_id: AtomicU64,
    pub clients: AtomicUsize,
    pub started: Instant,
    /// The group commit's queue ([`batch`]).
    pub batcher: tokio::sync::mpsc::UnboundedSender<batch::Job>,
}

/// Most commands taken from one read before their replies are written.
const MAX_PIPELINE: usize = 1024;

/// Pub/sub messages waiting for a slow subscriber before its watch waits in turn.
const OUTBOX: usize = 1024;

/// A client connection to serve: plaintext or TLS, accepted by the caller.
pub struct Accepted<C> {
    pub stream: C,
    /// `ip:port` of the client and of this end (CLIENT LIST / INFO).
    pub peer: String,
    pub local: String,
    /// The CN of the client certificate verified in the TLS handshake ([`Session::cert_user`]).
    pub cert_user: Option<String>,
}

/// Serves RESP on `listener` until `shutdown` completes; then closes every connection.
pub async fn serve<S>(listener: TcpListener, store: S, config: Config, shutdown: impl Future<Output = ()>) -> std::io::Result<()>
where
    S: Kv + Lease + Watch + Maintenance + cairn_api::Auth,
{
    let accepted = futures::stream::unfold(listener, |listener| async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
                    let local = stream.local_addr().map(|a| a.to_string()).unwrap_or_default();
                    return Some((Accepted { stream, peer, local, cert_user: None }, listener));
                }
                // Out of file descriptors and the like: keep serving the connections we have.
                Err(e) => {
                    tracing::warn!("RESP accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    });
    serve_connections(accepted, store, config, shutdown).await
}

/// Serves RESP on every connection `incoming` yields (TLS streams included) until `shutdown`
/// completes or `incoming` ends; then closes every connection.
pub async fn serve_connections<S, C>(
    incoming: impl Stream<Item = Accepted<C>>,
    store: S,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()>
where
    S: Kv + Lease + Watch + Maintenance + cairn_api::Auth,
    C: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let batcher = batch::spawn(store.clone(), config.max_txn_ops);
    let shared = Arc::new(Shared {
        store,
        batcher,
        config,
        cursors: scan::Cursors::default(),
        next_client_id: AtomicU64::new(0),
        clients: AtomicUsize::new(0),
        started: Instant::now(),
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(shutdown);
    tokio::pin!(incoming);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = incoming.next() => {
                let Some(accepted) = accepted else { break };
                let shared = shared.clone();
                let mut stop = stop_rx.clone();
                tokio::spawn(async move {
                    shared.clients.fetch_add(1, Ordering::Relaxed);
                    tokio::select! {
                        _ = connection(accepted, shared.clone()) => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                    shared.clients.fetch_sub(1, Ordering::Relaxed);
                });
            }
        }
    }
    let _ = stop_tx.send(true);
    Ok(())
}

/// Writes `bytes` and flushes them (a TLS stream may hold written bytes until flushed).
async fn send<C: AsyncWrite + Unpin>(stream: &mut C, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(bytes).await?;
    stream.flush().await
}

/// One connection: read what arrived, run every whole command in it (pipelining), write the
/// replies, and forward pub/sub messages meanwhile.
async fn connection<S, C>(accepted: Accepted<C>, shared: Arc<Shared<S>>)
where
    S: Kv + Lease + Watch + Maintenance + cairn_api::Auth,
    C: AsyncRead + AsyncWrite + Unpin,
{
    let Accepted { mut stream, peer, local, cert_user } = accepted;
    let max_bulk = shared.config.max_request_bytes;
    // A request that is still incomplete past this size closes the connection, as Redis does
    // past its query buffer limit: room for one largest bulk and its framing.
    let max_pending = max_bulk.saturating_mul(2).saturating_add(request::INLINE_MAX * 2);
    let (outbox, mut inbox) = tokio::sync::mpsc::channel::<Reply>(OUTBOX);
    let mut session = Session::new(shared, outbox, peer, local);
    session.cert_user = cert_user;
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    loop {
        // Every whole command that arrived (a pipeline), then a protocol error if one follows.
        let mut cmds = Vec::new();
        let mut bad = None;
        loop {
            match request::parse(&input, max_bulk) {
                Parsed::Incomplete => break,
                Parsed::Error(text) => {
                    bad = Some(text);
                    break;
                }
                Parsed::Command { consumed, args } => {
                    input.advance(consumed);
                    if !args.is_empty() {
                        cmds.push(args);
                    }
                    if cmds.len() >= MAX_PIPELINE {
                        break;
                    }
                }
            }
        }
        let more = cmds.len() >= MAX_PIPELINE;
        session.handle_pipeline(cmds, &mut output).await;
        if session.closing {
            let _ = send(&mut stream, &output).await;
            return;
        }
        if let Some(text) = bad {
            encode(&mut output, &Reply::err(format!("ERR Protocol error: {text}")), session.proto);
            let _ = send(&mut stream, &output).await;
            return;
        }
        if more {
            if send(&mut stream, &output).await.is_err() {
                return;
            }
            output.clear();
            continue;
        }
        if input.len() > max_pending {
            tracing::warn!("closing a RESP connection whose request exceeds {max_pending} bytes");
            return;
        }
        if !output.is_empty() {
            if send(&mut stream, &output).await.is_err() {
                return;
            }
            output.clear();
        }
        tokio::select! {
            read = stream.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            },
            Some(msg) = inbox.recv() => {
                let frame = match msg {
                    Reply::Array(items) if session.proto >= 3 => Reply::Push(items),
                    other => other,
                };
                encode(&mut output, &frame, session.proto);
            }
        }
    }
}
