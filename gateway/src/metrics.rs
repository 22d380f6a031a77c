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
use metrics::{counter, describe_counter, describe_histogram, histogram, Counter, Histogram, Unit};
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

/// The metric handles of one gRPC method, looked up once: a lookup in the registry hashes
/// the name and labels and allocates, which per call cost about 2% of a put's CPU.
struct GrpcMethod {
    started: Counter,
    msg_received: Counter,
    msg_sent: Counter,
    handling: Histogram,
    /// `grpc_server_handled_total` by code, in [`GRPC_CODES`] order.
    handled: Vec<Counter>,
    requests_ok: Counter,
    requests_error: Counter,
    duration: Histogram,
}

impl GrpcMethod {
    fn new(service: &'static str, method: &'static str, kind: &'static str) -> Self {
        let labels = [("grpc_service", service), ("grpc_method", method), ("grpc_type", kind)];
        let handled = GRPC_CODES
            .iter()
            .map(|code| {
                let labels = [("grpc_service", service), ("grpc_method", method), ("grpc_type", kind), ("grpc_code", *code)];
                counter!("grpc_server_handled_total", &labels)
            })
            .collect();
        GrpcMethod {
            started: counter!("grpc_server_started_total", &labels),
            msg_received: counter!("grpc_server_msg_received_total", &labels),
            msg_sent: counter!("grpc_server_msg_sent_total", &labels),
            handling: histogram!("grpc_server_handling_seconds", &labels),
            handled,
            requests_ok: counter!("cairn_requests_total", "protocol" => "grpc", "command" => method, "result" => "ok"),
            requests_error: counter!("cairn_requests_total", "protocol" => "grpc", "command" => method, "result" => "error"),
            duration: histogram!("cairn_request_duration_seconds", "protocol" => "grpc", "command" => method),
        }
    }
}

/// Every gRPC method's handles, and the byte counters shared by all of them.
struct GrpcMetrics {
    methods: Vec<(&'static str, &'static str, GrpcMethod)>,
    received_bytes: Counter,
    sent_bytes: Counter,
}

static GRPC: std::sync::OnceLock<GrpcMetrics> = std::sync::OnceLock::new();

/// The handles, made on first use (by [`install`], after the recorder is in place).
fn grpc_metrics() -> &'static GrpcMetrics {
    GRPC.get_or_init(|| GrpcMetrics {
        methods: GRPC_METHODS
            .iter()
            .flat_map(|(service, methods)| methods.iter().map(move |(method, kind)| (*service, *method, GrpcMethod::new(service, method, kind))))
            .collect(),
        received_bytes: counter!("etcd_network_client_grpc_received_bytes_total"),
        sent_bytes: counter!("etcd_network_client_grpc_sent_bytes_total"),
    })
}

/// Paths that name no method Cairn serves share one label value, so clients cannot create
/// series at will; made on the first such call, so the series exist only when one was made.
fn grpc_unknown() -> &'static GrpcMethod {
    static UNKNOWN: std::sync::OnceLock<GrpcMethod> = std::sync::OnceLock::new();
    UNKNOWN.get_or_init(|| GrpcMethod::new("unknown", "unknown", UNARY))
}

/// As etcd (go-grpc-prometheus's InitializeMetrics): every method and code starts at 0, so a
/// rate over errors answers 0 rather than nothing.
fn initialize_grpc_counters() {
    let grpc = grpc_metrics();
    for (_, _, m) in &grpc.methods {
        m.started.absolute(0);
        for handled in &m.handled {
            handled.absolute(0);
        }
    }
    grpc.received_bytes.absolute(0);
    grpc.sent_bytes.absolute(0);
    metrics::gauge!("etcd_debugging_mvcc_watch_stream_total").set(0.0);
    counter!("etcd_server_health_success").absolute(0);
    counter!("etcd_server_health_failures").absolute(0);
}

/// What a request is, for the metrics' labels.
enum Call {
    Grpc(&'static GrpcMethod),
    Http { protocol: &'static str, command: String },
}

fn classify<B>(req: &Request<B>) -> Call {
    let path = req.uri().path();
    if cairn_http::is_grpc(req.headers()) {
        let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or(("unknown", "unknown"));
        let grpc = grpc_metrics();
        let known = grpc.methods.iter().find(|(s, m, _)| *s == service && *m == method);
        return Call::Grpc(known.map_or_else(grpc_unknown, |(_, _, handles)| handles));
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
    let req = if let Call::Grpc(method) = call {
        method.started.increment(1);
        let (parts, body) = req.into_parts();
        Request::from_parts(parts, Body::new(Counted { inner: body, direction: Direction::Received(method) }))
    } else {
        req
    };
    let response = next.run(req).await;
    match call {
        Call::Grpc(method) => {
            let (parts, body) = response.into_parts();
            // A failed call answers trailers-only: its status is in the headers.
            let status = grpc_status(&parts.headers);
            let finish = Finish { method, started, status };
            let body = Counted { inner: body, direction: Direction::Sent { method, finish: Some(finish) } };
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

fn grpc_status(headers: &HeaderMap) -> Option<i32> {
    headers.get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// A gRPC call's method and start, recorded once its status is known.
struct Finish {
    method: &'static GrpcMethod,
    started: Instant,
    status: Option<i32>,
}

/// [`GRPC_CODES`] index of `Canceled` and `Unknown`.
const CANCELED: usize = 1;
const UNKNOWN: usize = 2;

impl Finish {
    fn record(self) {
        // No status at all (the client went away mid-stream): as gRPC, Canceled.
        let code = self.status.map_or(CANCELED, |c| usize::try_from(c).ok().filter(|c| *c < GRPC_CODES.len()).unwrap_or(UNKNOWN));
        let m = self.method;
        m.handled[code].increment(1);
        let elapsed = self.started.elapsed().as_secs_f64();
        m.handling.record(elapsed);
        if self.status == Some(0) { &m.requests_ok } else { &m.requests_error }.increment(1);
        m.duration.record(elapsed);
    }
}

enum Direction {
    Received(&'static GrpcMethod),
    Sent { method: &'static GrpcMethod, finish: Option<Finish> },
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
        let grpc = grpc_metrics();
        let (total, msgs) = match &self.direction {
            Direction::Received(m) => (&grpc.received_bytes, &m.msg_received),
            Direction::Sent { method, .. } => (&grpc.sent_bytes, &method.msg_sent),
        };
        total.increment(bytes.len() as u64);
        if bytes.len() >= 5 {
            msgs.increment(1);
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
