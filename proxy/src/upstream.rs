//! The cluster as the proxy sees it: one gRPC channel per member, one of them current.
//!
//! Every forwarded call goes through [`Upstream::call`], which decides whether a failure may be
//! retried on another member. Reads, keep-alives and watches are idempotent and retried on any
//! transport failure or transient server error. A write is retried only when it surely did not
//! reach a member (the connection was refused, or hyper canceled the request before sending it
//! because its connection had closed) or the member refused it before proposing it
//! (`etcdserver: no leader`): a write whose connection broke after it was sent may or may not
//! have been applied, so the client gets the error rather than a possible double write. That
//! includes the unlucky write sent in the instant between a member's death and the proxy's
//! connection noticing it.
//!
//! "Following the leader": a background task asks every member for its status and makes the
//! leader current, so writes and linearizable reads take no extra hop inside the cluster.
//!
//! After a member stopped answering (a transport failure), the proxy remembers it as down for
//! a while. A write sent meanwhile first asks its member who leads, and waits while that is a
//! down member or nobody: a member that still believes in a dead leader would forward the
//! write there and answer `request timed out`, which the proxy could not safely retry. While a
//! member is down this costs a Status call at most once a second (a check that found a live
//! leader is trusted for a second, until another member goes down).

use std::future::Future;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

use cairn_etcd_v3::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_etcd_v3::pb::etcdserverpb::StatusRequest;

use crate::ProxyError;

/// Server errors after which the same request may be sent again (possibly to another member).
const TRANSIENT: &[&str] = &[
    "etcdserver: no leader",
    "etcdserver: leader changed",
    "etcdserver: request timed out",
    "etcdserver: server stopped",
    "etcdserver: not leader",
];

/// Server errors that mean a write was refused before it was proposed.
const WRITE_NOT_PROPOSED: &[&str] = &["etcdserver: no leader", "etcdserver: server stopped"];

/// How a call may be retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Reads, keep-alives, status: retried on another member on any transient failure.
    Idempotent,
    /// Writes: retried only when the request surely was not applied.
    Write,
}

#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<(String, Channel)>,
    current: AtomicUsize,
    retry_timeout: Duration,
    /// Each endpoint's member id, once a Status answer told it (0: not known yet).
    ids: Vec<AtomicU64>,
    /// Members that stopped answering, and since when.
    down: Mutex<HashMap<u64, Instant>>,
    /// The endpoint last seen following a live leader, and when (writes skip the check for
    /// [`LEADER_OK_FOR`] after it, until another member goes down).
    leader_ok: Mutex<Option<(usize, Instant)>>,
}

/// How long a live-leader check is trusted.
const LEADER_OK_FOR: Duration = Duration::from_secs(1);

/// How long a member that stopped answering counts as down (unless it answers again).
const DOWN_FOR: Duration = Duration::from_secs(30);

impl Upstream {
    /// Channels to every endpoint (connected lazily, so members may be down at start).
    pub fn new(endpoints: &[String], dial_timeout: Duration, retry_timeout: Duration) -> Result<Upstream, ProxyError> {
        if endpoints.is_empty() {
            return Err(ProxyError::NoEndpoints);
        }
        let mut chans = Vec::new();
        for e in endpoints {
            let url = if e.contains("://") { e.clone() } else { format!("http://{e}") };
            let ep = Endpoint::from_shared(url.clone())
                .map_err(|err| ProxyError::BadEndpoint(e.clone(), err.to_string()))?
                .connect_timeout(dial_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5));
            chans.push((url, ep.connect_lazy()));
        }
        let ids = chans.iter().map(|_| AtomicU64::new(0)).collect();
        let inner = Inner { endpoints: chans, current: AtomicUsize::new(0), retry_timeout, ids, down: Mutex::new(HashMap::new()), leader_ok: Mutex::new(None) };
        let up = Upstream { inner: Arc::new(inner) };
        up.publish_current();
        Ok(up)
    }

    pub fn len(&self) -> usize {
        self.inner.endpoints.len()
    }

    /// The member calls go to now, and its channel.
    pub fn current(&self) -> (usize, Channel) {
        let i = self.inner.current.load(Ordering::SeqCst) % self.len();
        (i, self.inner.endpoints[i].1.clone())
    }

    /// The URL of the member calls go to now.
    pub fn current_url(&self) -> String {
        self.inner.endpoints[self.current().0].0.clone()
    }

    /// `idx` failed at the transport level: its member counts as down; move on to the next
    /// member (unless someone already did).
    pub fn failed(&self, idx: usize) {
        self.mark_down(idx);
        self.rotate(idx);
    }

    /// Move on from `idx` to the next member (unless someone already did).
    fn rotate(&self, idx: usize) {
        let next = (idx + 1) % self.len();
        if self.inner.current.compare_exchange(idx, next, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            tracing::warn!(from = %self.inner.endpoints[idx].0, to = %self.inner.endpoints[next].0, "upstream member failed; failing over");
            metrics::counter!("cairn_proxy_failovers_total").increment(1);
            self.publish_current();
        }
    }

    fn down(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Instant>> {
        self.inner.down.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Endpoint `idx` did not answer at the transport level: its member counts as down.
    fn mark_down(&self, idx: usize) {
        let id = self.inner.ids[idx].load(Ordering::SeqCst);
        if id != 0 && self.down().insert(id, Instant::now()).is_none() {
            *self.leader_ok() = None;
        }
    }

    fn leader_ok(&self) -> std::sync::MutexGuard<'_, Option<(usize, Instant)>> {
        self.inner.leader_ok.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Endpoint `idx` answered a Status call: learn its id, it is not down.
    fn mark_up(&self, idx: usize, id: u64) {
        self.inner.ids[idx].store(id, Ordering::SeqCst);
        self.down().remove(&id);
    }

    /// Before a write after a recent failure: waits (until `deadline`) while the member at
    /// `ch` knows no leader or believes in a member that is down.
    async fn await_live_leader(&self, idx: usize, ch: &Channel, deadline: tokio::time::Instant) {
        if self.leader_ok().is_some_and(|(i, at)| i == idx && at.elapsed() < LEADER_OK_FOR) {
            return;
        }
        loop {
            let down: Vec<u64> = {
                let mut down = self.down();
                down.retain(|_, since| since.elapsed() < DOWN_FOR);
                down.keys().copied().collect()
            };
            if down.is_empty() {
                return;
            }
            let mut client = MaintenanceClient::new(ch.clone());
            let call = client.status(StatusRequest {});
            let leader = match tokio::time::timeout(Duration::from_secs(1), call).await {
                Ok(Ok(resp)) => resp.into_inner().leader,
                // The write itself will meet (and report) whatever is wrong with this member.
                _ => return,
            };
            tracing::debug!(leader, ?down, "before a write after a failure");
            if leader != 0 && !down.contains(&leader) {
                *self.leader_ok() = Some((idx, Instant::now()));
                return;
            }
            if tokio::time::Instant::now() + Duration::from_millis(100) > deadline {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn set_current(&self, idx: usize) {
        if self.inner.current.swap(idx, Ordering::SeqCst) != idx {
            tracing::info!(to = %self.inner.endpoints[idx].0, "following the leader");
            self.publish_current();
        }
    }

    /// `cairn_proxy_upstream{endpoint}`: 1 for the member calls go to, 0 for the others.
    fn publish_current(&self) {
        let cur = self.current().0;
        for (i, (url, _)) in self.inner.endpoints.iter().enumerate() {
            metrics::gauge!("cairn_proxy_upstream", "endpoint" => url.clone()).set(if i == cur { 1.0 } else { 0.0 });
        }
    }

    /// Calls `f` on the current member's channel, failing over and retrying as `retry` allows,
    /// until the call succeeds, fails for good, or the retry timeout passes.
    pub async fn call<T, F, Fut>(&self, method: &'static str, retry: Retry, mut f: F) -> Result<T, Status>
    where
        F: FnMut(Channel) -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        metrics::counter!("cairn_proxy_requests_forwarded_total", "method" => method).increment(1);
        let deadline = tokio::time::Instant::now() + self.inner.retry_timeout;
        let mut attempt: u32 = 0;
        loop {
            let (idx, ch) = self.current();
            if retry == Retry::Write {
                self.await_live_leader(idx, &ch, deadline).await;
            }
            let status = match f(ch).await {
                Ok(v) => return Ok(v),
                Err(s) => s,
            };
            let transport = is_transport_failure(&status);
            tracing::debug!(method, endpoint = %self.inner.endpoints[idx].0, transport, "upstream call failed: {status:?}");
            let may_retry = match retry {
                Retry::Idempotent => transport || TRANSIENT.contains(&status.message()),
                Retry::Write => is_connect_refused(&status) || WRITE_NOT_PROPOSED.contains(&status.message()),
            };
            if transport && retry == Retry::Write && !may_retry {
                tracing::warn!(method, "a write failed at the transport level after it may have been sent; not retried: {status:?}");
            }
            if transport {
                self.failed(idx);
            } else if TRANSIENT.contains(&status.message()) {
                self.rotate(idx);
            }
            attempt += 1;
            let pause = Duration::from_millis(20 * u64::from(attempt.min(10)));
            if !may_retry || tokio::time::Instant::now() + pause > deadline {
                metrics::counter!("cairn_proxy_requests_failed_total", "method" => method).increment(1);
                return Err(status);
            }
            metrics::counter!("cairn_proxy_requests_retried_total", "method" => method).increment(1);
            // Go straight to the next member; pause once every member was tried.
            if attempt as usize % self.len() == 0 {
                tokio::time::sleep(pause).await;
            }
        }
    }

    /// Every `interval`, asks every member for its status, learns their ids and makes the
    /// member that says it is the leader current.
    pub async fn follow_leader(self, interval: Duration) {
        loop {
            let mut leader = None;
            for (i, (_, ch)) in self.inner.endpoints.iter().enumerate() {
                let mut client = MaintenanceClient::new(ch.clone());
                let call = client.status(StatusRequest {});
                let Ok(Ok(resp)) = tokio::time::timeout(interval, call).await else {
                    self.mark_down(i);
                    continue;
                };
                let s = resp.into_inner();
                let id = s.header.map_or(0, |h| h.member_id);
                self.mark_up(i, id);
                if s.leader != 0 && id == s.leader {
                    leader = Some(i);
                }
            }
            if let Some(i) = leader {
                self.set_current(i);
            }
            tokio::time::sleep(interval).await;
        }
    }
}

/// True when the failure is the connection's, not an answer of the member.
pub fn is_transport_failure(s: &Status) -> bool {
    if s.message().starts_with("etcdserver:") {
        return false;
    }
    matches!(s.code(), Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal) && has_transport_source(s)
        || s.code() == Code::Unavailable
}

fn has_transport_source(s: &Status) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = src {
        if e.downcast_ref::<tonic::transport::Error>().is_some() || e.downcast_ref::<std::io::Error>().is_some() {
            return true;
        }
        src = e.source();
    }
    let m = s.message();
    m.contains("transport error") || m.contains("connection") || m.contains("h2 protocol error") || m.contains("broken pipe")
}

/// True when the request surely never reached a member: the connection was refused or could
/// not be made, or hyper canceled the request before sending it (its connection had closed).
pub fn is_connect_refused(s: &Status) -> bool {
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = src {
        if e.downcast_ref::<hyper::Error>().is_some_and(hyper::Error::is_canceled) {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(io.kind(), std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::TimedOut) {
                return true;
            }
        }
        let text = e.to_string();
        if text.contains("tcp connect error") || text.contains("Connection refused") {
            return true;
        }
        src = e.source();
    }
    let m = s.message();
    m.contains("tcp connect error") || m.contains("Connection refused") || m.contains("error trying to connect")
}
