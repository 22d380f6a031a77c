//! etcd's Watch service: one bidi stream carries many watchers (create, cancel, progress).

use std::collections::HashMap;
use std::pin::Pin;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::{header, key_value};
use crate::errors::code_and_message;
use crate::pb::etcdserverpb::watch_request::RequestUnion;
use crate::pb::etcdserverpb::watch_server::Watch;
use crate::pb::etcdserverpb::*;
use crate::pb::mvccpb;

const COMPACTED_REASON: &str = "etcdserver: mvcc: required revision has been compacted";
/// etcd's `WatchCreateRequest.FilterType`.
const FILTER_NOPUT: i32 = 0;
const FILTER_NODELETE: i32 = 1;

pub struct WatchService<S> {
    store: S,
    max_bytes: usize,
    max_watchers: usize,
}

/// Watchers one stream may hold by default (`--max-watchers-per-stream`).
pub const DEFAULT_MAX_WATCHERS_PER_STREAM: usize = 10_000;

impl<S> WatchService<S> {
    /// `max_bytes`: the size above which a fragmenting watcher's answers are split
    /// (etcd uses --max-request-bytes).
    pub fn new(store: S, max_bytes: usize) -> Self {
        WatchService { store, max_bytes, max_watchers: DEFAULT_MAX_WATCHERS_PER_STREAM }
    }

    /// At most `n` watchers on one stream; a create beyond that is canceled with a reason
    /// naming the limit (etcd has no such limit: a stream's watchers cost memory and a task
    /// each, so a runaway client is stopped here).
    pub fn with_max_watchers(mut self, n: usize) -> Self {
        self.max_watchers = n;
        self
    }
}

/// Splits `events` into parts of at most about `max_bytes` each (at least one event a part).
fn fragments(events: Vec<mvccpb::Event>, max_bytes: usize) -> Vec<Vec<mvccpb::Event>> {
    use prost::Message;
    let mut parts = vec![Vec::new()];
    let mut size = 0;
    for e in events {
        let len = e.encoded_len();
        let current = parts.last_mut().expect("never empty");
        if !current.is_empty() && size + len > max_bytes {
            parts.push(Vec::new());
            size = 0;
        }
        size += len;
        parts.last_mut().expect("never empty").push(e);
    }
    parts
}

type Outbound = mpsc::Sender<Result<WatchResponse, Status>>;
type WatchResponseStream = Pin<Box<dyn Stream<Item = Result<WatchResponse, Status>> + Send>>;

fn event(e: cairn_api::Event) -> mvccpb::Event {
    mvccpb::Event {
        r#type: match e.kind {
            cairn_api::EventKind::Put => mvccpb::event::EventType::Put as i32,
            cairn_api::EventKind::Delete => mvccpb::event::EventType::Delete as i32,
        },
        kv: Some(key_value(e.kv)),
        prev_kv: e.prev_kv.map(key_value),
    }
}

/// The watchers of one stream.
struct StreamState<S> {
    store: S,
    out: Outbound,
    watchers: HashMap<i64, JoinHandle<()>>,
    next_id: i64,
    /// Answers of watchers that asked for `fragment` are split above this size.
    max_bytes: usize,
    max_watchers: usize,
}

impl<S: cairn_api::Watch> StreamState<S> {
    async fn send(&self, resp: WatchResponse) -> bool {
        self.out.send(Ok(resp)).await.is_ok()
    }

    async fn current_header(&self) -> Option<ResponseHeader> {
        self.store.progress().await.ok().and_then(header)
    }

    async fn create(&mut self, c: WatchCreateRequest) -> bool {
        self.watchers.retain(|_, h| !h.is_finished());
        if self.watchers.len() >= self.max_watchers {
            let resp = WatchResponse {
                header: self.current_header().await,
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: format!(
                    "etcdserver: too many watchers on this stream (limit {}, see --max-watchers-per-stream)",
                    self.max_watchers
                ),
                ..Default::default()
            };
            return self.send(resp).await;
        }
        if c.start_revision < 0 {
            let resp = WatchResponse {
                header: self.current_header().await,
                watch_id: -1,
                created: true,
                canceled: true,
                cancel_reason: COMPACTED_REASON.into(),
                ..Default::default()
            };
            return self.send(resp).await;
        }
        let id = if c.watch_id != 0 {
            if self.watchers.contains_key(&c.watch_id) {
                let resp = WatchResponse {
                    header: self.current_header().await,
                    watch_id: c.watch_id,
                    created: true,
                    canceled: true,
                    cancel_reason: "mvcc: duplicate watch ID provided on the WatchStream".into(),
                    ..Default::default()
                };
                return self.send(resp).await;
            }
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_id) {
                self.next_id += 1;
            }
            self.next_id
        };
        let req = cairn_api::WatchRequest {
            // etcd reads an empty key as "\0", the smallest key.
            key: if c.key.is_empty() { vec![0] } else { c.key },
            range_end: c.range_end,
            start_revision: c.start_revision,
            prev_kv: c.prev_kv,
            no_put: c.filters.contains(&FILTER_NOPUT),
            no_delete: c.filters.contains(&FILTER_NODELETE),
            progress_notify: c.progress_notify,
        };
        let (created_header, mut messages) = match self.store.watch(req).await {
            Ok(w) => w,
            Err(e) => {
                let resp = WatchResponse {
                    header: self.current_header().await,
                    watch_id: id,
                    created: true,
                    canceled: true,
                    cancel_reason: code_and_message(&e).1,
                    ..Default::default()
                };
                return self.send(resp).await;
            }
        };
        // The created answer goes out before any event of this watcher.
        if !self.send(WatchResponse { header: header(created_header), watch_id: id, created: true, ..Default::default() }).await {
            return false;
        }
        let out = self.out.clone();
        let (fragment, max_bytes) = (c.fragment, self.max_bytes);
        let task = tokio::spawn(async move {
            while let Some(msg) = messages.next().await {
                let resp = match msg {
                    cairn_api::WatchMessage::Events { header: h, events } => {
                        let events: Vec<mvccpb::Event> = events.into_iter().map(event).collect();
                        if fragment {
                            // Split an answer larger than the request limit: every part but
                            // the last says `fragment`.
                            let parts = fragments(events, max_bytes);
                            let last = parts.len() - 1;
                            for (i, part) in parts.into_iter().enumerate() {
                                let resp = WatchResponse { header: header(h), watch_id: id, events: part, fragment: i < last, ..Default::default() };
                                if out.send(Ok(resp)).await.is_err() {
                                    return;
                                }
                            }
                            continue;
                        }
                        WatchResponse { header: header(h), watch_id: id, events, ..Default::default() }
                    }
                    cairn_api::WatchMessage::Progress { header: h } => {
                        WatchResponse { header: header(h), watch_id: id, ..Default::default() }
                    }
                    cairn_api::WatchMessage::Compacted { header: h, compact_revision } => {
                        let resp = WatchResponse {
                            header: header(h),
                            watch_id: id,
                            canceled: true,
                            compact_revision,
                            cancel_reason: COMPACTED_REASON.into(),
                            ..Default::default()
                        };
                        let _ = out.send(Ok(resp)).await;
                        return;
                    }
                };
                if out.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        self.watchers.insert(id, task);
        if c.watch_id == 0 {
            self.next_id += 1;
        }
        true
    }

    async fn cancel(&mut self, id: i64) -> bool {
        if let Some(task) = self.watchers.remove(&id) {
            task.abort();
            let resp = WatchResponse { header: self.current_header().await, watch_id: id, canceled: true, ..Default::default() };
            return self.send(resp).await;
        }
        true
    }

    async fn progress(&self) -> bool {
        // Speaks for every watcher of the stream: watch_id -1.
        let resp = WatchResponse { header: self.current_header().await, watch_id: -1, ..Default::default() };
        self.send(resp).await
    }
}

impl<S> Drop for StreamState<S> {
    fn drop(&mut self) {
        for task in self.watchers.values() {
            task.abort();
        }
    }
}

const WATCH_STREAMS: &str = "etcd_debugging_mvcc_watch_stream_total";

/// Runs `f` when dropped (also when the task is aborted).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

#[tonic::async_trait]
impl<S: cairn_api::Watch + cairn_api::Auth> Watch for WatchService<S> {
    type WatchStream = WatchResponseStream;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(64);
        let mut state = StreamState { store: store.clone(), out: tx, watchers: HashMap::new(), next_id: 0, max_bytes: self.max_bytes, max_watchers: self.max_watchers };
        tokio::spawn(async move {
            // etcd's count of open watch streams, for as long as this one is served.
            metrics::gauge!(WATCH_STREAMS).increment(1.0);
            let _open = scopeguard(|| metrics::gauge!(WATCH_STREAMS).decrement(1.0));
            loop {
                let msg = tokio::select! {
                    msg = inbound.message() => msg,
                    _ = state.out.closed() => break,
                };
                let ok = match msg {
                    Ok(Some(WatchRequest { request_union: Some(RequestUnion::CreateRequest(c)) })) => state.create(c).await,
                    Ok(Some(WatchRequest { request_union: Some(RequestUnion::CancelRequest(c)) })) => state.cancel(c.watch_id).await,
                    Ok(Some(WatchRequest { request_union: Some(RequestUnion::ProgressRequest(_)) })) => state.progress().await,
                    Ok(Some(WatchRequest { request_union: None })) => true,
                    Ok(None) | Err(_) => break,
                };
                if !ok {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
