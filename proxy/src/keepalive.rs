//! Lease keep-alive batching: every local client's LeaseKeepAlive stream is served over one
//! upstream LeaseKeepAlive stream. Renewals of the same lease asked while one is in flight
//! wait for that one's answer instead of sending another (a renewal is idempotent: it resets
//! the lease to its full TTL), so N clients sharing a lease cost the cluster one renewal.
//! When the upstream stream breaks, it is opened again on the next member and every renewal
//! still waiting is sent again.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use cairn_etcd_v3::pb::etcdserverpb::lease_client::LeaseClient;
use cairn_etcd_v3::pb::etcdserverpb::{LeaseKeepAliveRequest, LeaseKeepAliveResponse};

use crate::upstream::{is_transport_failure, Upstream};

type Reply = oneshot::Sender<LeaseKeepAliveResponse>;

/// The handle local streams ask renewals of.
#[derive(Clone)]
pub struct KeepAlives {
    tx: mpsc::UnboundedSender<(i64, Reply)>,
    timeout: Duration,
}

impl KeepAlives {
    /// Starts the task that owns the upstream stream. `timeout`: how long one renewal may wait
    /// (across failovers) before the local stream gets an error.
    pub fn start(up: Upstream, timeout: Duration) -> KeepAlives {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(up, rx));
        KeepAlives { tx, timeout }
    }

    /// Renews lease `id`; the answer is the member's (TTL 0 for an unknown lease).
    pub async fn keep_alive(&self, id: i64) -> Result<LeaseKeepAliveResponse, Status> {
        let (tx, rx) = oneshot::channel();
        self.tx.send((id, tx)).map_err(|_| Status::unavailable("proxy: shutting down"))?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(Status::unavailable("proxy: shutting down")),
            Err(_) => Err(Status::unavailable("proxy: no member answered the keep-alive")),
        }
    }
}

async fn run(up: Upstream, mut rx: mpsc::UnboundedReceiver<(i64, Reply)>) {
    let mut pending: HashMap<i64, Vec<Reply>> = HashMap::new();
    let mut failures: u32 = 0;
    loop {
        metrics::gauge!("cairn_proxy_upstream_keepalive_streams").set(0.0);
        let (idx, ch) = up.current();
        let (req_tx, req_rx) = mpsc::unbounded_channel();
        for id in pending.keys() {
            let _ = req_tx.send(LeaseKeepAliveRequest { id: *id });
        }
        let opened = LeaseClient::new(ch)
            .lease_keep_alive(tokio_stream::wrappers::UnboundedReceiverStream::new(req_rx))
            .await;
        let mut answers = match opened {
            Ok(r) => r.into_inner(),
            Err(status) => {
                tracing::debug!("opening the upstream keep-alive stream: {status}");
                up.failed(idx);
                failures += 1;
                tokio::time::sleep(Duration::from_millis(50 * u64::from(failures.min(10)))).await;
                // Drop the renewals whose clients gave up, so they are not sent forever.
                pending.retain(|_, waiters| {
                    waiters.retain(|w| !w.is_closed());
                    !waiters.is_empty()
                });
                // Wait for work when idle rather than spinning on a dead cluster.
                if pending.is_empty() {
                    match rx.recv().await {
                        Some((id, reply)) => pending.entry(id).or_default().push(reply),
                        None => return,
                    }
                }
                continue;
            }
        };
        failures = 0;
        metrics::gauge!("cairn_proxy_upstream_keepalive_streams").set(1.0);
        loop {
            tokio::select! {
                asked = rx.recv() => {
                    let Some((id, reply)) = asked else { return };
                    let waiters = pending.entry(id).or_default();
                    waiters.retain(|w| !w.is_closed());
                    waiters.push(reply);
                    if waiters.len() == 1 {
                        metrics::counter!("cairn_proxy_requests_forwarded_total", "method" => "lease_keep_alive").increment(1);
                        if req_tx.send(LeaseKeepAliveRequest { id }).is_err() {
                            break;
                        }
                    } else {
                        metrics::counter!("cairn_proxy_keepalives_coalesced_total").increment(1);
                    }
                }
                answer = answers.message() => match answer {
                    Ok(Some(resp)) => {
                        for w in pending.remove(&resp.id).unwrap_or_default() {
                            let _ = w.send(resp);
                        }
                    }
                    Ok(None) => {
                        up.failed(idx);
                        break;
                    }
                    Err(status) => {
                        tracing::debug!("upstream keep-alive stream: {status}");
                        if is_transport_failure(&status) {
                            up.failed(idx);
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        break;
                    }
                }
            }
        }
    }
}
