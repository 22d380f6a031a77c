//! `/metrics`: the Prometheus exporter, and what only the server sees of each request.
//!
//! The core and the adapters record through the `metrics` facade (see `cairn_raft::metrics`);
//! this module installs the Prometheus recorder behind it, with etcd's histogram buckets, adds
//! process metrics, and wraps the client routes in a layer that records every request:
//! - gRPC calls under go-grpc-prometheus's names, which etcd exports and its dashboards and
//!   alerts query (`grpc_server_started_total`, `grpc_server_handled_total`, ... with
//!   `grpc_service`, `grpc_method`, `grpc_type`, `grpc_code`), and the bytes etcd counts in
//!   `etcd_network_client_grpc_{received,sent}_bytes_total`;
//! - every request, gRPC or HTTP (JSON gateway, v2, health), in Cairn's own
//!   `cairn_requests_total` and `cairn_request_duration_seconds` by protocol and command
//!   (RESP records the same two from its session loop).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::{header, HeaderMap, Request, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use metrics::{counter, describe_counter, describe_histogram, histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// The installed exporter: renders the text format on demand.
#[derive(Clone)]
pub struct Exporter {
    handle: PrometheusHandle,
    process: Arc<metrics_process::Collector>,
}

/// Installs the process-wide recorder (once, before anything records).
pub fn install() -> anyhow::Result<Exporter> {
    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in cairn_raft::metrics::HISTOGRAM_BUCKETS {
        builder = builder.set_buckets_for_metric(Matcher::Full((*name).to_string()), buckets)?;
    }
    let handle = builder.install_recorder()?;
    cairn_raft::metrics::describe();
    describe_counter!("grpc_server_started_total", "gRPC calls started, by service and method.");
    describe_counter!("grpc_server_handled_total", "gRPC calls completed, by service, method and status code.");
    describe_counter!("grpc_server_msg_received_total", "gRPC request messages received (streams count each message).");
    describe_counter!("grpc_server_msg_sent_total", "gRPC response messages sent (streams count each message).");
    describe_histogram!("grpc_server_handling_seconds", Unit::Seconds, "Time from a gRPC call's start to its status.");
    describe_counter!("etcd_network_client_grpc_received_bytes_total", Unit::Bytes, "Bytes received from gRPC clients.");
    describe_counter!("etcd_network_client_grpc_sent_bytes_total", Unit::Bytes, "Bytes sent to gRPC clients.");
    describe_counter!("etcd_server_health_success", "Health checks (/health) that passed.");
    describe_counter!("etcd_server_health_failures", "Health checks (/health) that failed.");
    describe_counter!("cairn_requests_total", "Client requests by protocol, command and result (ok or error).");
    describe_histogram!("cairn_request_duration_seconds", Unit::Seconds, "Client request latency by protocol and command.");
    let process = metrics_process::Collector::default();
    process.describe();
    initialize_grpc_counters();
    // Histograms are kept in windows that need draining now and then.
    let upkeep = handle.clone();
    std::thread::Builder::new().name("cairn-metrics-upkeep".into()).spawn(move || loop {
        std::thread::sleep(Duration::from_secs(5));
        upkeep.run_upkeep();
    })?;
    Ok(Exporter { handle, process: Arc::new(process) })
}

impl Exporter {
    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        self.process.collect();
        self.handle.render()
    }
}

/// `GET /metrics`.
pub async fn serve_metrics(exporter: Exporter) -> Response {
    let text = tokio::task::spawn_blocking(move || exporter.render()).await.unwrap_or_default();
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// The client routes with `/metrics` added and every request measured.
pub fn instrument(routes: tonic::service::Routes, exporter: Exporter) -> tonic::service::Routes {
    let router = routes
        .into_axum_router()
        .route("/metrics", axum::routing::get(move || serve_metrics(exporter.clone())))
        .layer(axum::middleware::from_fn(measure));
    tonic::service::Routes::from(router)
}

/// The routes of `--listen-metrics-urls`: `/metrics` and the health checks, nothing else.
pub fn metrics_only<S: cairn_http::Store>(store: S, exporter: Exporter) -> tonic::service::Routes {
    let router = cairn_http::health_routes(store)
        .route("/metrics", axum::routing::get(move || serve_metrics(exporter.clone())))
        .layer(axum::middleware::from_fn(measure));
    tonic::service::Routes::from(router)
}

/// The gRPC methods Cairn serves, by service, with go-grpc-prometheus's call types.
const GRPC_METHODS: &[(&str, &[(&str, &str)])] = &[
    ("etcdserverpb.KV", &[("Range", UNARY), ("Put", UNARY), ("DeleteRange", UNARY), ("Txn", UNARY), ("Compact", UNARY)]),
    ("etcdserverpb.Watch", &[("Watch", BIDI)]),
    (
        "etcdserverpb.Lease",
        &[("LeaseGrant", UNARY), ("LeaseRevoke", UNARY), ("LeaseKeepAlive", BIDI), ("LeaseTimeToLive", UNARY), ("LeaseLeases", UNARY)],
    ),
    (
        "etcdserverpb.Cluster",
        &[("MemberAdd", UNARY), ("MemberRemove", UNARY), ("MemberUpdate", UNARY), ("MemberList", UNARY), ("MemberPromote", UNARY)],
    ),
    (
        "etcdserverpb.Maintenance",
        &[
            ("Alarm", UNARY),
            ("Status", UNARY),
            ("Defragment", UNARY),
            ("Hash", UNARY),
            ("HashKV", UNARY),
            ("Snapshot", SERVER_STREAM),
            ("MoveLeader", UNARY),
        ],
    ),
    ("v3lockpb.Lock", &[("Lock", UNARY), ("Unlock", UNARY)]),
    (
        "v3electionpb.Election",
        &[("Campaign", UNARY), ("Proclaim", UNARY), ("Leader", UNARY), ("Observe", SERVER_STREAM), ("Resign", UNARY)],
    ),
];
const UNARY: &str = "unary";
const BIDI: &str = "bidi_stream";
const SERVER_STREAM: &str = "server_stream";

/// gRPC's status codes as go-grpc-prometheus names them.
const GRPC_CODES: [&str; 17] = [
    "OK",
    "Canceled",
    "Unknown",
    "InvalidArgument",
    "DeadlineExceeded",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "ResourceExhausted",
    "FailedPrecondition",
    "Aborted",
    "OutOfRange",
    "Unimplemented",
    "Internal",
    "Unavailable",
    "DataLoss",
    "Unauthenticated",
];

/// As etcd (go-grpc-prometheus's InitializeMetrics): every method and code starts at 0, so a
/// rate over errors answers 0 rather than nothing.
fn initialize_grpc_counters() {
    for (service, methods) in GRPC_METHODS {
        for (method, kind) in *methods {
            let labels = [("grpc_service", *service), ("grpc_method", *method), ("grpc_type", *kind)];
            counter!("grpc_server_started_total", &labels).absolute(0);
            for code in GRPC_CODES {
                let labels = [("grpc_service", *service), ("grpc_method", *method), ("grpc_type", *kind), ("grpc_code", code)];
                counter!("grpc_server_handled_total", &labels).absolute(0);
            }
        }
    }
    counter!("etcd_network_client_grpc_received_bytes_total").absolute(0);
    counter!("etcd_network_client_grpc_sent_bytes_total").absolute(0);
    metrics::gauge!("etcd_debugging_mvcc_watch_stream_total").set(0.0);
    counter!("etcd_server_health_success").absolute(0);
    counter!("etcd_server_health_failures").absolute(0);
}

/// What a request is, for the metrics' labels.
#[derive(Clone)]
enum Call {
    Grpc { service: &'static str, method: &'static str, kind: &'static str },
    Http { protocol: &'static str, command: String },
}

fn classify<B>(req: &Request<B>) -> Call {
    let path = req.uri().path();
    if cairn_http::is_grpc(req.headers()) {
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("unknown", "unknown"));
        // Labels come from the table (no allocation per call); unknown paths get one label
        // value, so clients cannot create series at will.
        return GRPC_METHODS
            .iter()
            .find(|(s, _)| *s == service)
            .and_then(|(s, methods)| methods.iter().find(|(m, _)| *m == method).map(|(m, kind)| (*s, *m, *kind)))
            .map_or(Call::Grpc { service: "unknown", method: "unknown", kind: UNARY }, |(service, method, kind)| {
                Call::Grpc { service, method, kind }
            });
    }
    let method = req.method().as_str();
    let segments: Vec<&str> = path.trim_start_matches('/').splitn(4, '/').collect();
    let (protocol, command) = match segments.as_slice() {
        ["v3", group, action, ..] => ("json", format!("{group}/{action}")),
        ["v3", group] => ("json", (*group).to_string()),
        ["v2", "keys", ..] => ("v2", format!("keys {method}")),
        ["v2", area, ..] => ("v2", format!("{area} {method}")),
        [first, ..] if matches!(*first, "health" | "livez" | "readyz" | "version" | "metrics") => ("http", (*first).to_string()),
        _ => ("http", "other".to_string()),
    };
    // Bounded label values: only the gateway's own routes name themselves.
    let command = if protocol == "json" && !JSON_ROUTES.contains(&command.as_str()) { "other".to_string() } else { command };
    let command = if protocol == "v2" && !V2_AREAS.iter().any(|a| command.starts_with(a)) { "other".to_string() } else { command };
    Call::Http { protocol, command }
}

/// The JSON gateway's routes (`/v3/<group>/<action>`).
const JSON_ROUTES: &[&str] = &[
    "kv/range", "kv/put", "kv/deleterange", "kv/txn", "kv/compaction", "watch", "lease/grant", "lease/revoke",
    "lease/keepalive", "lease/timetolive", "lease/leases", "kv/lease/revoke", "kv/lease/timetolive", "kv/lease/leases",
    "cluster/member", "maintenance/status", "maintenance/alarm", "maintenance/defragment", "maintenance/hash",
    "maintenance/snapshot", "maintenance/transfer-leadership", "lock/lock", "lock/unlock", "election/campaign",
    "election/proclaim", "election/leader", "election/observe", "election/resign",
];
const V2_AREAS: &[&str] = &["keys ", "members ", "stats ", "machines "];

async fn measure(req: Request<Body>, next: axum::middleware::Next) -> Response {
    let call = classify(&req);
    let started = Instant::now();
    let req = if let Call::Grpc { service, method, kind } = call {
        counter!("grpc_server_started_total", "grpc_service" => service, "grpc_method" => method, "grpc_type" => kind).increment(1);
        let (parts, body) = req.into_parts();
        let labels = grpc_labels(service, method, kind);
        Request::from_parts(parts, Body::new(Counted { inner: body, direction: Direction::Received(labels) }))
    } else {
        req
    };
    let response = next.run(req).await;
    match call {
        Call::Grpc { service, method, kind } => {
            let (parts, body) = response.into_parts();
            // A failed call answers trailers-only: its status is in the headers.
            let status = grpc_status(&parts.headers);
            let finish = Finish { service, method, kind, started, status };
            let labels = grpc_labels(service, method, kind);
            let body = Counted { inner: body, direction: Direction::Sent { labels, finish: Some(finish) } };
            Response::from_parts(parts, Body::new(body))
        }
        Call::Http { protocol, command } => {
            let result = if response.status().is_client_error() || response.status().is_server_error() { "error" } else { "ok" };
            record_request(protocol, command.into(), result, started);
            response
        }
    }
}

fn record_request(protocol: &'static str, command: metrics::SharedString, result: &'static str, started: Instant) {
    counter!("cairn_requests_total", "protocol" => protocol, "command" => command.clone(), "result" => result).increment(1);
    histogram!("cairn_request_duration_seconds", "protocol" => protocol, "command" => command)
        .record(started.elapsed().as_secs_f64());
}

fn grpc_labels(service: &'static str, method: &'static str, kind: &'static str) -> Vec<metrics::Label> {
    vec![
        metrics::Label::new("grpc_service", service),
        metrics::Label::new("grpc_method", method),
        metrics::Label::new("grpc_type", kind),
    ]
}

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// A gRPC call's labels and start, recorded once its status is known.
struct Finish {
    service: &'static str,
    method: &'static str,
    kind: &'static str,
    started: Instant,
    status: Option<i32>,
}

impl Finish {
    fn record(self) {
        // No status at all (the client went away mid-stream): as gRPC, Canceled.
        let code = self.status.map_or("Canceled", |c| GRPC_CODES.get(c as usize).copied().unwrap_or("Unknown"));
        let labels = [("grpc_service", self.service), ("grpc_method", self.method), ("grpc_type", self.kind), ("grpc_code", code)];
        counter!("grpc_server_handled_total", &labels).increment(1);
        histogram!("grpc_server_handling_seconds", &labels[..3]).record(self.started.elapsed().as_secs_f64());
        let result = if self.status == Some(0) { "ok" } else { "error" };
        record_request("grpc", self.method.into(), result, self.started);
    }
}

enum Direction {
    Received(Vec<metrics::Label>),
    Sent { labels: Vec<metrics::Label>, finish: Option<Finish> },
}

/// A gRPC body whose bytes and messages are counted as they pass; a response body also
/// records the call's outcome when its trailers pass (or when it is dropped unfinished).
struct Counted {
    inner: Body,
    direction: Direction,
}

impl Counted {
    fn count_data(&self, bytes: &[u8]) {
        // Each gRPC message starts with a 5-byte prefix; a data frame often holds exactly one.
        // Counting prefixes would need reassembly across frames, so a frame counts as a message
        // when it is at least a prefix long, which is exact for etcd's small messages.
        let (bytes_name, msgs_name, labels) = match &self.direction {
            Direction::Received(labels) => ("etcd_network_client_grpc_received_bytes_total", "grpc_server_msg_received_total", labels),
            Direction::Sent { labels, .. } => ("etcd_network_client_grpc_sent_bytes_total", "grpc_server_msg_sent_total", labels),
        };
        counter!(bytes_name).increment(bytes.len() as u64);
        if bytes.len() >= 5 {
            counter!(msgs_name, labels.clone()).increment(1);
        }
    }
}

impl HttpBody for Counted {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.count_data(data);
                } else if let Some(trailers) = frame.trailers_ref() {
                    let status = grpc_status(trailers);
                    if let Direction::Sent { finish: Some(finish), .. } = &mut self.direction {
                        finish.status = status.or(finish.status);
                    }
                }
            }
            Poll::Ready(None) => {
                if let Direction::Sent { finish, .. } = &mut self.direction {
                    if let Some(f) = finish.take() {
                        f.record();
                    }
                }
            }
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        if let Direction::Sent { finish, .. } = &mut self.direction {
            if let Some(f) = finish.take() {
                f.record();
            }
        }
    }
}
