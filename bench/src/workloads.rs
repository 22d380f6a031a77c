//! The request each client sends in a loop, one workload per variant.
//!
//! A client keeps exactly one request in flight (closed loop), as etcd's benchmark tool does, so
//! `--clients` is the concurrency the server sees.

use std::time::Duration;

use cairn_etcd_v3::pb::etcdserverpb::{
    kv_client::KvClient, request_op, LeaseGrantRequest,
    LeaseKeepAliveRequest, LeaseKeepAliveResponse, PutRequest, RangeRequest, RequestOp, TxnRequest,
};
use tokio::sync::mpsc;
use tonic::Streaming;

use crate::connection::Connection;
use crate::keys::{self, Rng};
use crate::{BenchArgs, BenchError, Consistency, Workload};

/// Key choice shared by the workloads.
#[derive(Clone, Copy)]
pub struct KeyChoice {
    pub key_size: usize,
    pub sequential: bool,
    pub key_space: u64,
}

impl KeyChoice {
    pub fn from_args(args: &BenchArgs) -> Self {
        KeyChoice { key_size: args.key_size, sequential: args.sequential_keys, key_space: args.key_space }
    }

    /// The key for the request numbered `seq`.
    pub fn pick(&self, seq: u64, rng: &mut Rng) -> Vec<u8> {
        let n = if self.sequential { seq } else { rng.below(self.key_space) };
        keys::key(n, self.key_size)
    }
}

enum Kind {
    Put { kv: KvClient<Connection> },
    Range { kv: KvClient<Connection>, serializable: bool, prefill: u64 },
    Txn { kv: KvClient<Connection>, ops: u64 },
    Lease { id: i64, tx: mpsc::Sender<LeaseKeepAliveRequest>, rx: Streaming<LeaseKeepAliveResponse> },
}

/// One client of a closed-loop workload.
pub struct Worker {
    kind: Kind,
    rng: Rng,
    keys: KeyChoice,
    value: Vec<u8>,
}

/// A failed request, described for the report.
fn describe(status: &tonic::Status) -> String {
    format!("{:?}: {}", status.code(), status.message())
}

impl Worker {
    /// Sets up client `index` on `connection` (for lease-keepalive this grants its lease and opens
    /// its keepalive stream, outside the measurement).
    pub async fn new(
        index: usize,
        connection: Connection,
        args: &BenchArgs,
    ) -> Result<Worker, BenchError> {
        let kind = match &args.workload {
            Workload::Put => Kind::Put { kv: connection.kv() },
            Workload::Range { consistency, prefill } => Kind::Range {
                kv: connection.kv(),
                serializable: *consistency == Consistency::Serializable,
                prefill: (*prefill).max(1),
            },
            Workload::TxnPut { ops } => Kind::Txn { kv: connection.kv(), ops: (*ops).max(1) },
            Workload::LeaseKeepalive { ttl } => {
                let mut lease = connection.lease();
                let granted = lease
                    .lease_grant(LeaseGrantRequest { ttl: *ttl, id: 0 })
                    .await
                    .map_err(|s| BenchError::Setup(format!("lease grant: {}", describe(&s))))?
                    .into_inner();
                // A first keepalive is queued before the call: etcd (grpc-go) sends the response
                // headers, which the call waits for, only with the first response.
                let (tx, requests) = mpsc::channel(1);
                let closed = |_| BenchError::Setup("lease keepalive stream closed".into());
                tx.send(LeaseKeepAliveRequest { id: granted.id }).await.map_err(closed)?;
                let setup = |s: tonic::Status| BenchError::Setup(format!("lease keepalive: {}", describe(&s)));
                let mut rx = lease
                    .lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(requests))
                    .await
                    .map_err(setup)?
                    .into_inner();
                rx.message().await.map_err(setup)?;
                Kind::Lease { id: granted.id, tx, rx }
            }
            Workload::WatchLatency { .. } => {
                return Err(BenchError::Usage("watch-latency is not a closed-loop workload".into()))
            }
        };
        Ok(Worker {
            kind,
            rng: Rng::new(index as u64 + 1),
            keys: KeyChoice::from_args(args),
            value: keys::value(0, args.val_size),
        })
    }

    /// Sends request number `seq` and waits for its answer.
    pub async fn call(&mut self, seq: u64, timeout: Duration) -> Result<(), String> {
        let fut = async {
            match &mut self.kind {
                Kind::Put { kv } => {
                    let key = self.keys.pick(seq, &mut self.rng);
                    kv.put(PutRequest { key, value: self.value.clone(), ..Default::default() })
                        .await
                        .map(drop)
                        .map_err(|s| describe(&s))
                }
                Kind::Range { kv, serializable, prefill } => {
                    let n = if self.keys.sequential { seq % *prefill } else { self.rng.below(*prefill) };
                    let key = keys::key(n, self.keys.key_size);
                    kv.range(RangeRequest { key, serializable: *serializable, ..Default::default() })
                        .await
                        .map(drop)
                        .map_err(|s| describe(&s))
                }
                Kind::Txn { kv, ops } => {
                    let first = if self.keys.sequential {
                        seq * *ops
                    } else {
                        self.rng.below(self.keys.key_space)
                    };
                    let success = (0..*ops)
                        .map(|j| {
                            let n = if self.keys.sequential { first + j } else { (first + j) % self.keys.key_space };
                            let put = PutRequest {
                                key: keys::key(n, self.keys.key_size),
                                value: self.value.clone(),
                                ..Default::default()
                            };
                            RequestOp { request: Some(request_op::Request::RequestPut(put)) }
                        })
                        .collect();
                    kv.txn(TxnRequest { compare: vec![], success, failure: vec![] })
                        .await
                        .map(drop)
                        .map_err(|s| describe(&s))
                }
                Kind::Lease { id, tx, rx } => {
                    tx.send(LeaseKeepAliveRequest { id: *id })
                        .await
                        .map_err(|_| "keepalive stream closed".to_string())?;
                    match rx.message().await {
                        Ok(Some(r)) if r.ttl > 0 => Ok(()),
                        Ok(Some(_)) => Err("lease expired (TTL 0)".to_string()),
                        Ok(None) => Err("keepalive stream ended".to_string()),
                        Err(s) => Err(describe(&s)),
                    }
                }
            }
        };
        match tokio::time::timeout(timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(format!("timed out after {timeout:?}")),
        }
    }
}

/// Writes the keys a range workload reads (`0..prefill`), with `clients` requests in flight.
pub async fn prefill(connections: &[Connection], args: &BenchArgs, prefill: u64) -> Result<(), BenchError> {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..args.clients.clamp(1, 64) {
        let mut kv = connections[i % connections.len()].kv();
        let next = next.clone();
        let (key_size, val_size) = (args.key_size, args.val_size);
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if n >= prefill {
                    return Ok(());
                }
                let req = PutRequest { key: keys::key(n, key_size), value: keys::value(n, val_size), ..Default::default() };
                kv.put(req).await.map_err(|s| BenchError::Setup(format!("prefill put: {}", describe(&s))))?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.map_err(|e| BenchError::Setup(format!("prefill task: {e}")))??;
    }
    Ok(())
}
