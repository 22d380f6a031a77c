//! Watch coalescing: local watchers of the same key or range with the same options share one
//! upstream watch (a *broadcast*), so a thousand clients watching one prefix through a proxy
//! cost the cluster one watcher. Each upstream answer is fanned out to the broadcast's local
//! watchers, in order, under the broadcast's lock, with each watcher's own id.
//!
//! Keeping a direct watch's guarantees:
//! - A watcher from "now" (start revision 0) joins a broadcast at the broadcast's position:
//!   every event after the revision in its created answer is delivered, none twice. That
//!   revision may be a little older than the cluster's current one (the broadcast has seen
//!   nothing newer for this range), so the watcher may get events a direct watch created at the
//!   same moment would not; etcd's own grpc-proxy does the same.
//! - A watcher with a start revision joins only a broadcast that has not yet passed that
//!   revision (events before it are filtered out for it); otherwise it gets a broadcast of its
//!   own, which replays history from that revision (and gets the member's compaction answer).
//! - When the upstream stream breaks, the broadcast opens it again on the next member from the
//!   revision after the last one it delivered, so clients see neither a gap nor a repeat.
//! - Progress notifications (`progress_notify`) and cancellations (compaction, errors) of the
//!   upstream watch reach every local watcher. A client's progress request is answered with
//!   the lowest revision all of that stream's watchers have been brought up to.
//!
//! A slow local client slows its broadcast (fan-out waits for room in each client's queue);
//! it does not lose events.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use cairn_etcd_v3::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_etcd_v3::pb::etcdserverpb::watch_client::WatchClient;
use cairn_etcd_v3::pb::etcdserverpb::watch_request::RequestUnion;
use cairn_etcd_v3::pb::etcdserverpb::watch_server::Watch;
use cairn_etcd_v3::pb::etcdserverpb::*;

use crate::services::MAX_MESSAGE_BYTES;
use crate::upstream::{is_transport_failure, Retry, Upstream};

type Outbound = mpsc::Sender<Result<WatchResponse, Status>>;

/// What makes two watchers shareable: the same range, the same options and the same auth
/// token (the member checks the token's user may read the range; watchers with other
/// credentials get upstream watches of their own).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GroupKey {
    token: Option<String>,
    key: Vec<u8>,
    range_end: Vec<u8>,
    filters: Vec<i32>,
    prev_kv: bool,
    progress_notify: bool,
    fragment: bool,
}

impl GroupKey {
    fn of(c: &WatchCreateRequest, token: Option<String>) -> GroupKey {
        let mut filters = c.filters.clone();
        filters.sort_unstable();
        filters.dedup();
        GroupKey {
            token,
            key: c.key.clone(),
            range_end: c.range_end.clone(),
            filters,
            prev_kv: c.prev_kv,
            progress_notify: c.progress_notify,
            fragment: c.fragment,
        }
    }
}

/// One local watcher of a broadcast.
struct Local {
    watch_id: i64,
    /// Events below this revision are not for this watcher.
    start: i64,
    out: Outbound,
    created_sent: bool,
}

/// A broadcast's state, changed only under its lock (fan-out included).
struct State {
    /// The header of the upstream created answer, once it came.
    created: Option<ResponseHeader>,
    /// The lowest revision not yet delivered.
    next_rev: i64,
    /// The header of the last upstream answer.
    last_header: Option<ResponseHeader>,
    /// Between the parts of a fragmented answer: nobody may join.
    mid_fragment: bool,
    watchers: HashMap<(u64, i64), Local>,
    closed: bool,
}

struct Broadcast {
    group: GroupKey,
    /// The create request sent upstream (its start revision: the broadcast's first).
    create: WatchCreateRequest,
    state: tokio::sync::Mutex<State>,
    task: Mutex<Option<AbortHandle>>,
}

impl Broadcast {
    fn start(&self) -> i64 {
        self.create.start_revision
    }

    /// May a watcher starting at `start` (0: now) join?
    fn joinable(&self, st: &State, start: i64) -> bool {
        if st.closed || st.mid_fragment {
            return false;
        }
        match st.created {
            Some(_) => start == 0 || start >= st.next_rev,
            None if start == 0 => self.start() == 0,
            None => self.start() > 0 && start >= self.start(),
        }
    }
}

/// Every broadcast of the proxy.
#[derive(Clone)]
pub struct WatchHub {
    inner: Arc<HubInner>,
}

struct HubInner {
    up: Upstream,
    groups: Mutex<HashMap<GroupKey, Vec<Arc<Broadcast>>>>,
    next_client: AtomicU64,
    local_watchers: AtomicI64,
    upstream_watches: AtomicI64,
}

impl WatchHub {
    pub fn new(up: Upstream) -> WatchHub {
        let hub = WatchHub {
            inner: Arc::new(HubInner {
                up,
                groups: Mutex::new(HashMap::new()),
                next_client: AtomicU64::new(1),
                local_watchers: AtomicI64::new(0),
                upstream_watches: AtomicI64::new(0),
            }),
        };
        hub.publish();
        hub
    }

    fn groups(&self) -> std::sync::MutexGuard<'_, HashMap<GroupKey, Vec<Arc<Broadcast>>>> {
        self.inner.groups.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Local watchers and upstream watches right now.
    pub fn counts(&self) -> (i64, i64) {
        (self.inner.local_watchers.load(Ordering::SeqCst), self.inner.upstream_watches.load(Ordering::SeqCst))
    }

    fn add_counts(&self, local: i64, upstream: i64) {
        self.inner.local_watchers.fetch_add(local, Ordering::SeqCst);
        self.inner.upstream_watches.fetch_add(upstream, Ordering::SeqCst);
        self.publish();
    }

    fn publish(&self) {
        let (local, upstream) = self.counts();
        metrics::gauge!("cairn_proxy_watchers").set(local as f64);
        metrics::gauge!("cairn_proxy_upstream_watches").set(upstream as f64);
        // etcd's grpc-proxy name: watchers served by an upstream watch someone else opened.
        metrics::gauge!("etcd_grpc_proxy_watchers_coalescing_total").set((local - upstream).max(0) as f64);
    }

    /// Adds watcher `id` of local stream `client`; its created answer goes to `out` now (when
    /// the broadcast is established) or when the upstream watch is created.
    async fn join(&self, client: u64, id: i64, c: WatchCreateRequest, token: Option<String>, out: Outbound) -> Arc<Broadcast> {
        let group = GroupKey::of(&c, token);
        let start = c.start_revision;
        let candidates = self.groups().get(&group).cloned().unwrap_or_default();
        if start >= 0 {
            for b in candidates {
                let mut st = b.state.lock().await;
                if !b.joinable(&st, start) {
                    continue;
                }
                let mut local = Local { watch_id: id, start, out, created_sent: false };
                // Counted before its created answer goes out: whoever reads the gauges after
                // that answer sees this watcher.
                self.add_counts(1, 0);
                if st.created.is_some() {
                    let position = st.next_rev;
                    if start == 0 {
                        local.start = position;
                    }
                    let header = st.last_header.map(|h| ResponseHeader { revision: position - 1, ..h });
                    let created = WatchResponse { header, watch_id: id, created: true, ..Default::default() };
                    local.created_sent = local.out.send(Ok(created)).await.is_ok();
                }
                st.watchers.insert((client, id), local);
                drop(st);
                return b;
            }
        }
        let mut create = c;
        create.watch_id = 0;
        let mut watchers = HashMap::new();
        watchers.insert((client, id), Local { watch_id: id, start: start.max(0), out, created_sent: false });
        let b = Arc::new(Broadcast {
            group: group.clone(),
            create,
            state: tokio::sync::Mutex::new(State {
                created: None,
                next_rev: start.max(0),
                last_header: None,
                mid_fragment: false,
                watchers,
                closed: false,
            }),
            task: Mutex::new(None),
        });
        self.groups().entry(group).or_default().push(b.clone());
        self.add_counts(1, 1);
        let task = tokio::spawn(self.clone().run(b.clone()));
        *b.task.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
        b
    }

    /// Removes a local watcher; the last one out closes the upstream watch.
    async fn leave(&self, b: &Arc<Broadcast>, client: u64, id: i64) -> Option<ResponseHeader> {
        let mut st = b.state.lock().await;
        let header = st.last_header;
        if st.watchers.remove(&(client, id)).is_some() {
            self.add_counts(-1, 0);
        }
        if st.watchers.is_empty() && !st.closed {
            self.close(b, &mut st);
        }
        header
    }

    /// Ends a broadcast (its lock held): out of the hub, upstream watch dropped.
    fn close(&self, b: &Arc<Broadcast>, st: &mut State) {
        st.closed = true;
        let gone = st.watchers.len() as i64;
        st.watchers.clear();
        {
            let mut groups = self.groups();
            if let Some(list) = groups.get_mut(&b.group) {
                list.retain(|x| !Arc::ptr_eq(x, b));
                if list.is_empty() {
                    groups.remove(&b.group);
                }
            }
        }
        self.add_counts(-gone, -1);
        if let Some(task) = b.task.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }

    /// Keeps the broadcast's upstream watch open (failing over between members) and fans out
    /// its answers until the broadcast closes.
    async fn run(self, b: Arc<Broadcast>) {
        let up = self.inner.up.clone();
        let mut failures: u32 = 0;
        loop {
            let create = {
                let st = b.state.lock().await;
                if st.closed {
                    return;
                }
                let mut create = b.create.clone();
                if st.created.is_some() {
                    // Resume after the last revision delivered.
                    create.start_revision = st.next_rev;
                }
                create
            };
            if failures > 0 {
                tokio::time::sleep(Duration::from_millis(50 * u64::from(failures.min(10)))).await;
            }
            let (idx, ch) = up.current();
            let (tx, rx) = mpsc::channel(1);
            let _ = tx.send(WatchRequest { request_union: Some(RequestUnion::CreateRequest(create)) }).await;
            metrics::counter!("cairn_proxy_requests_forwarded_total", "method" => "watch").increment(1);
            let mut client = WatchClient::new(ch).max_decoding_message_size(MAX_MESSAGE_BYTES);
            let token = b.group.token.as_deref().and_then(|t| t.parse().ok());
            let request = crate::services::with_token(ReceiverStream::new(rx), token.as_ref());
            let mut answers = match client.watch(request).await {
                Ok(r) => r.into_inner(),
                Err(status) => {
                    tracing::debug!("opening an upstream watch: {status}");
                    up.failed(idx);
                    failures += 1;
                    continue;
                }
            };
            loop {
                match answers.message().await {
                    Ok(Some(resp)) => {
                        failures = 0;
                        if !self.deliver(&b, resp).await {
                            return;
                        }
                    }
                    Ok(None) => {
                        up.failed(idx);
                        failures += 1;
                        break;
                    }
                    Err(status) if is_transport_failure(&status) || status.message().starts_with("etcdserver: no leader") => {
                        tracing::debug!("upstream watch broke: {status}");
                        up.failed(idx);
                        failures += 1;
                        break;
                    }
                    Err(status) => {
                        // The member refused the watch for good: the watchers hear why.
                        let resp = WatchResponse {
                            canceled: true,
                            cancel_reason: status.message().to_string(),
                            ..Default::default()
                        };
                        self.deliver(&b, resp).await;
                        return;
                    }
                }
            }
            drop(tx);
        }
    }

    /// Fans one upstream answer out; false when the broadcast is over.
    async fn deliver(&self, b: &Arc<Broadcast>, resp: WatchResponse) -> bool {
        let mut st = b.state.lock().await;
        if st.closed {
            return false;
        }
        if resp.header.is_some() {
            st.last_header = resp.header;
        }
        let header = st.last_header;
        let mut gone = Vec::new();
        if resp.canceled {
            for (k, w) in st.watchers.iter() {
                let out = WatchResponse {
                    header,
                    watch_id: w.watch_id,
                    created: !w.created_sent,
                    canceled: true,
                    compact_revision: resp.compact_revision,
                    cancel_reason: resp.cancel_reason.clone(),
                    ..Default::default()
                };
                let _ = w.out.send(Ok(out)).await;
                gone.push(*k);
            }
            self.close(b, &mut st);
            return false;
        }
        if resp.created {
            if st.created.is_none() {
                st.created = resp.header;
                let h = resp.header.unwrap_or_default();
                st.next_rev = if b.start() > 0 { b.start() } else { h.revision + 1 };
                for (k, w) in st.watchers.iter_mut() {
                    if w.created_sent {
                        continue;
                    }
                    let out = WatchResponse { header, watch_id: w.watch_id, created: true, ..Default::default() };
                    w.created_sent = true;
                    if w.out.send(Ok(out)).await.is_err() {
                        gone.push(*k);
                    }
                }
            }
            // A re-created upstream watch after failover says nothing new to the clients.
        } else if resp.events.is_empty() {
            // A progress notification: everything up to its revision was delivered.
            if let Some(h) = resp.header {
                st.next_rev = st.next_rev.max(h.revision + 1);
            }
            for (k, w) in st.watchers.iter() {
                if !w.created_sent {
                    continue;
                }
                let out = WatchResponse { header, watch_id: w.watch_id, ..Default::default() };
                if w.out.send(Ok(out)).await.is_err() {
                    gone.push(*k);
                }
            }
        } else {
            let last = resp.events.iter().filter_map(|e| e.kv.as_ref().map(|kv| kv.mod_revision)).max().unwrap_or(0);
            let mut copies: u64 = 0;
            for (k, w) in st.watchers.iter() {
                let events: Vec<_> = resp
                    .events
                    .iter()
                    .filter(|e| e.kv.as_ref().is_some_and(|kv| kv.mod_revision >= w.start))
                    .cloned()
                    .collect();
                if events.is_empty() {
                    continue;
                }
                copies += 1;
                let out = WatchResponse { header, watch_id: w.watch_id, events, fragment: resp.fragment, ..Default::default() };
                if w.out.send(Ok(out)).await.is_err() {
                    gone.push(*k);
                }
            }
            st.mid_fragment = resp.fragment;
            if !resp.fragment {
                st.next_rev = st.next_rev.max(last + 1);
            }
            if copies > 1 {
                metrics::counter!("etcd_grpc_proxy_events_coalescing_total").increment((copies - 1) * resp.events.len() as u64);
            }
        }
        for k in gone {
            st.watchers.remove(&k);
            self.add_counts(-1, 0);
        }
        if st.watchers.is_empty() {
            self.close(b, &mut st);
            return false;
        }
        true
    }

    /// The revision every watcher in `mine` has been brought up to (for a progress request).
    async fn synced_revision(&self, mine: &HashMap<i64, Arc<Broadcast>>) -> Option<ResponseHeader> {
        let mut lowest: Option<ResponseHeader> = None;
        for b in mine.values() {
            let st = b.state.lock().await;
            if st.closed || st.created.is_none() {
                continue;
            }
            let rev = st.next_rev - 1;
            if lowest.is_none_or(|h| rev < h.revision) {
                lowest = st.last_header.map(|h| ResponseHeader { revision: rev, ..h });
            }
        }
        if lowest.is_some() {
            return lowest;
        }
        let status = self
            .inner
            .up
            .call("status", Retry::Idempotent, |ch| async move {
                MaintenanceClient::new(ch).status(StatusRequest {}).await.map(Response::into_inner)
            })
            .await
            .ok()?;
        status.header
    }
}

/// One watcher outside any gRPC stream: a watch of the core API (the JSON gateway, v2 and RESP
/// adapters the proxy serves), a local watcher of a shared broadcast like any other. Its first
/// answer is the created one (or a cancellation); dropping it leaves the broadcast.
pub struct Subscription {
    hub: WatchHub,
    broadcast: Arc<Broadcast>,
    client: u64,
    answers: mpsc::Receiver<Result<WatchResponse, Status>>,
}

/// The watch id a subscription has in its broadcast (each subscription is a client of its own).
const SUBSCRIPTION_ID: i64 = 0;

impl WatchHub {
    /// Adds a watcher for `create`; see [`Subscription`].
    pub async fn subscribe(&self, create: WatchCreateRequest, token: Option<String>) -> Subscription {
        let client = self.inner.next_client.fetch_add(1, Ordering::SeqCst);
        let (out, answers) = mpsc::channel(64);
        let broadcast = self.join(client, SUBSCRIPTION_ID, create, token, out).await;
        Subscription { hub: self.clone(), broadcast, client, answers }
    }
}

impl Subscription {
    /// The next answer; None when the broadcast ended.
    pub async fn next(&mut self) -> Option<WatchResponse> {
        self.answers.recv().await.and_then(Result::ok)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let (hub, b, client) = (self.hub.clone(), self.broadcast.clone(), self.client);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                hub.leave(&b, client, SUBSCRIPTION_ID).await;
            });
        }
    }
}

/// The Watch service: each local stream's watchers are members of shared broadcasts.
pub struct WatchProxy {
    hub: WatchHub,
}

impl WatchProxy {
    pub fn new(hub: WatchHub) -> WatchProxy {
        WatchProxy { hub }
    }
}

type WatchResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchProxy {
    type WatchStream = WatchResponseStream;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let token = crate::services::token_of(&request).and_then(|t| t.to_str().ok().map(str::to_string));
        let mut inbound = request.into_inner();
        let (out, rx) = mpsc::channel(1024);
        let hub = self.hub.clone();
        tokio::spawn(async move {
            let client = hub.inner.next_client.fetch_add(1, Ordering::SeqCst);
            let mut mine: HashMap<i64, Arc<Broadcast>> = HashMap::new();
            let mut next_id: i64 = 0;
            loop {
                let msg = tokio::select! {
                    msg = inbound.message() => msg,
                    _ = out.closed() => break,
                };
                match msg {
                    Ok(Some(WatchRequest { request_union: Some(RequestUnion::CreateRequest(c)) })) => {
                        // Watchers a broadcast already ended free their ids.
                        mine.retain(|_, b| !b.state.try_lock().is_ok_and(|st| st.closed));
                        let id = if c.watch_id != 0 {
                            if mine.contains_key(&c.watch_id) {
                                let resp = WatchResponse {
                                    header: hub.synced_revision(&HashMap::new()).await,
                                    watch_id: c.watch_id,
                                    created: true,
                                    canceled: true,
                                    cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                                    ..Default::default()
                                };
                                let _ = out.send(Ok(resp)).await;
                                continue;
                            }
                            c.watch_id
                        } else {
                            while mine.contains_key(&next_id) {
                                next_id += 1;
                            }
                            next_id
                        };
                        let b = hub.join(client, id, c, token.clone(), out.clone()).await;
                        mine.insert(id, b);
                    }
                    Ok(Some(WatchRequest { request_union: Some(RequestUnion::CancelRequest(c)) })) => {
                        if let Some(b) = mine.remove(&c.watch_id) {
                            let header = hub.leave(&b, client, c.watch_id).await;
                            let resp = WatchResponse { header, watch_id: c.watch_id, canceled: true, ..Default::default() };
                            let _ = out.send(Ok(resp)).await;
                        }
                    }
                    Ok(Some(WatchRequest { request_union: Some(RequestUnion::ProgressRequest(_)) })) => {
                        let header = hub.synced_revision(&mine).await;
                        let _ = out.send(Ok(WatchResponse { header, watch_id: -1, ..Default::default() })).await;
                    }
                    Ok(Some(WatchRequest { request_union: None })) => {}
                    Ok(None) | Err(_) => break,
                }
            }
            for (id, b) in mine {
                hub.leave(&b, client, id).await;
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
