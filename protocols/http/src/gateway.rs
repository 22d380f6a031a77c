//! etcd's v3 JSON gateway: `POST /v3/<service>/<call>` with the proto3 JSON mapping of the
//! request (base64 bytes, int64 as strings, enum names, snake_case or lowerCamel names), the
//! JSON of the response back. Each call goes to the same tonic service implementation gRPC
//! clients reach, so answers and errors are the same. Streaming calls answer newline-delimited
//! `{"result": ...}` objects; the bidirectional ones (watch, lease keep-alive) read a sequence
//! of JSON requests from the body.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::post;
use bytes::{BufMut, Bytes, BytesMut};
use futures::{Stream, StreamExt};
use http::{header, StatusCode};
use serde::Serialize;
use tonic::{Code, Request, Status};

use cairn_etcd_v3::pb::etcdserverpb::auth_server::Auth as _;
use cairn_etcd_v3::pb::etcdserverpb::cluster_server::Cluster as _;
use cairn_etcd_v3::pb::etcdserverpb::kv_server::Kv as _;
use cairn_etcd_v3::pb::etcdserverpb::lease_server::Lease as _;
use cairn_etcd_v3::pb::etcdserverpb::maintenance_server::Maintenance as _;
use cairn_etcd_v3::pb::etcdserverpb::watch_server::Watch as _;
use cairn_etcd_v3::pb::etcdserverpb::{LeaseKeepAliveRequest, WatchRequest};
use cairn_etcd_v3::pb::v3electionpb::election_server::Election as _;
use cairn_etcd_v3::pb::v3lockpb::lock_server::Lock as _;
use cairn_etcd_v3::{
    AuthService, ClusterService, ElectionService, KvService, LeaseService, LockService, MaintenanceService, WatchService,
};

use crate::body::{json_values, parse_json, read_limited, BodyError};
use crate::{HttpConfig, Store};

/// The gRPC services the gateway calls, shared by every request.
struct Services<S> {
    kv: KvService<S>,
    lease: LeaseService<S>,
    watch: WatchService<S>,
    cluster: ClusterService<S>,
    maintenance: MaintenanceService<S>,
    lock: LockService<S>,
    election: ElectionService<S>,
    auth: AuthService<S>,
    limit: usize,
}

type Gw<S> = Arc<Services<S>>;

/// The HTTP status etcd's gateway (grpc-gateway) gives each gRPC code.
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// etcd 3.4's gateway error body: `{"error": msg, "message": msg, "code": grpc code}`.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    code: i32,
}

pub fn error_response(code: Code, message: &str) -> Response {
    let body = serde_json::to_vec(&ErrorBody { error: message, message, code: code as i32 }).unwrap_or_default();
    json_response(http_status(code), body)
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(body))
        .unwrap_or_default()
}

fn body_error(e: BodyError) -> Response {
    match e {
        BodyError::TooLarge(limit) => {
            let msg = format!("request body larger than {limit} bytes");
            let body = serde_json::to_vec(&ErrorBody { error: &msg, message: &msg, code: Code::ResourceExhausted as i32 })
                .unwrap_or_default();
            json_response(StatusCode::PAYLOAD_TOO_LARGE, body)
        }
        BodyError::Read(msg) => error_response(Code::InvalidArgument, &msg),
    }
}

/// Reads and decodes a request body.
async fn decode<T: serde::de::DeserializeOwned + Default>(body: Body, limit: usize) -> Result<T, Response> {
    let bytes = read_limited(body, limit).await.map_err(body_error)?;
    parse_json(&bytes).map_err(|e| error_response(Code::InvalidArgument, &e))
}

fn answer<T: Serialize>(result: Result<tonic::Response<T>, Status>) -> Response {
    match result {
        Ok(resp) => match serde_json::to_vec(resp.get_ref()) {
            Ok(body) => json_response(StatusCode::OK, body),
            Err(e) => error_response(Code::Internal, &e.to_string()),
        },
        Err(status) => error_response(status.code(), status.message()),
    }
}

/// One line of a streaming answer.
fn stream_line<T: Serialize>(item: Result<T, Status>) -> Bytes {
    #[derive(Serialize)]
    struct Result_<T> {
        result: T,
    }
    #[derive(Serialize)]
    struct StreamError<'a> {
        grpc_code: i32,
        http_code: u16,
        message: &'a str,
        http_status: &'a str,
    }
    #[derive(Serialize)]
    struct Error_<'a> {
        error: StreamError<'a>,
    }
    let mut line = match item {
        Ok(result) => serde_json::to_vec(&Result_ { result }),
        Err(status) => {
            let http = http_status(status.code());
            serde_json::to_vec(&Error_ {
                error: StreamError {
                    grpc_code: status.code() as i32,
                    http_code: http.as_u16(),
                    message: status.message(),
                    http_status: http.canonical_reason().unwrap_or(""),
                },
            })
        }
    }
    .unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// A server-streaming answer: one `{"result": ...}` line per message.
fn answer_stream<T, St>(result: Result<tonic::Response<St>, Status>) -> Response
where
    T: Serialize + Send + 'static,
    St: Stream<Item = Result<T, Status>> + Send + 'static,
{
    match result {
        Ok(resp) => {
            let lines = resp.into_inner().map(|item| Ok::<_, Infallible>(stream_line(item)));
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(lines))
                .unwrap_or_default()
        }
        Err(status) => error_response(status.code(), status.message()),
    }
}

/// The requests of a bidirectional call, read from the body, as the request stream the tonic
/// service expects. The first request is read before answering, so a malformed body gets an
/// error status; a later malformed request ends the input. The input never ends by itself:
/// like etcd's gateway, the call lasts until the client goes away.
async fn request_stream<T>(body: Body, limit: usize) -> Result<tonic::Streaming<T>, Response>
where
    T: prost::Message + Default + serde::de::DeserializeOwned + Send + 'static,
{
    let mut values = Box::pin(json_values::<T>(body, limit));
    let first = match values.next().await {
        Some(Ok(v)) => Some(v),
        Some(Err(e)) => return Err(error_response(Code::InvalidArgument, &e)),
        None => None,
    };
    let rest = values.take_while(|r| {
        if let Err(e) = r {
            tracing::debug!("gateway stream input ended: {e}");
        }
        futures::future::ready(r.is_ok())
    });
    let messages = futures::stream::iter(first.map(Ok)).chain(rest).filter_map(|r| futures::future::ready(r.ok()));
    let frames = messages
        .map(|m: T| {
            // gRPC's length-prefixed framing: no compression, u32 length, the message.
            let mut buf = BytesMut::with_capacity(5 + m.encoded_len());
            buf.put_u8(0);
            buf.put_u32(m.encoded_len() as u32);
            m.encode(&mut buf).expect("BytesMut grows");
            Ok::<_, Infallible>(http_body::Frame::data(buf.freeze()))
        })
        .chain(futures::stream::pending());
    let body = http_body_util::StreamBody::new(frames);
    Ok(tonic::Streaming::new_request(tonic_prost::ProstDecoder::<T>::default(), body, None, None))
}

/// The call as the gRPC service expects it. The token goes in the `Authorization` header (as
/// etcd's gateway takes it: the bare token, a `Bearer ` prefix is accepted too) and becomes
/// the `token` metadata a gRPC client would send.
fn grpc_request<T>(headers: &http::HeaderMap, message: T) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(token) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let token = token.strip_prefix("Bearer ").unwrap_or(token).trim();
        if let Ok(value) = token.parse() {
            request.metadata_mut().insert(cairn_etcd_v3::auth::TOKEN_METADATA_KEY, value);
        }
    }
    request
}

macro_rules! unary {
    ($router:expr, $path:expr, $svc:ident, $method:ident) => {
        $router.route(
            $path,
            post(|State(gw): State<Gw<S>>, headers: http::HeaderMap, body: Body| async move {
                match decode(body, gw.limit).await {
                    Ok(req) => answer(gw.$svc.$method(grpc_request(&headers, req)).await),
                    Err(resp) => resp,
                }
            }),
        )
    };
}

macro_rules! server_stream {
    ($router:expr, $path:expr, $svc:ident, $method:ident) => {
        $router.route(
            $path,
            post(|State(gw): State<Gw<S>>, headers: http::HeaderMap, body: Body| async move {
                match decode(body, gw.limit).await {
                    Ok(req) => answer_stream(gw.$svc.$method(grpc_request(&headers, req)).await),
                    Err(resp) => resp,
                }
            }),
        )
    };
}

pub fn routes<S: Store>(store: S, config: HttpConfig) -> axum::Router {
    let gw: Gw<S> = Arc::new(Services {
        kv: KvService::new(store.clone()),
        lease: LeaseService::new(store.clone()),
        watch: WatchService::new(store.clone(), config.max_request_bytes),
        cluster: ClusterService::new(store.clone()),
        maintenance: MaintenanceService::new(store.clone()),
        lock: LockService::new(store.clone()),
        election: ElectionService::new(store.clone()),
        auth: AuthService::new(store),
        limit: config.body_limit(),
    });
    let r = axum::Router::new();
    let r = unary!(r, "/v3/kv/range", kv, range);
    let r = unary!(r, "/v3/kv/put", kv, put);
    let r = unary!(r, "/v3/kv/deleterange", kv, delete_range);
    let r = unary!(r, "/v3/kv/txn", kv, txn);
    let r = unary!(r, "/v3/kv/compaction", kv, compact);
    let r = unary!(r, "/v3/lease/grant", lease, lease_grant);
    let r = unary!(r, "/v3/lease/revoke", lease, lease_revoke);
    let r = unary!(r, "/v3/kv/lease/revoke", lease, lease_revoke);
    let r = unary!(r, "/v3/lease/timetolive", lease, lease_time_to_live);
    let r = unary!(r, "/v3/kv/lease/timetolive", lease, lease_time_to_live);
    let r = unary!(r, "/v3/lease/leases", lease, lease_leases);
    let r = unary!(r, "/v3/kv/lease/leases", lease, lease_leases);
    let r = unary!(r, "/v3/cluster/member/add", cluster, member_add);
    let r = unary!(r, "/v3/cluster/member/remove", cluster, member_remove);
    let r = unary!(r, "/v3/cluster/member/update", cluster, member_update);
    let r = unary!(r, "/v3/cluster/member/list", cluster, member_list);
    let r = unary!(r, "/v3/cluster/member/promote", cluster, member_promote);
    let r = unary!(r, "/v3/maintenance/alarm", maintenance, alarm);
    let r = unary!(r, "/v3/maintenance/status", maintenance, status);
    let r = unary!(r, "/v3/maintenance/defragment", maintenance, defragment);
    let r = unary!(r, "/v3/maintenance/hash", maintenance, hash);
    let r = unary!(r, "/v3/maintenance/hashkv", maintenance, hash_kv);
    let r = unary!(r, "/v3/maintenance/transfer-leadership", maintenance, move_leader);
    let r = unary!(r, "/v3/maintenance/downgrade", maintenance, downgrade);
    let r = server_stream!(r, "/v3/maintenance/snapshot", maintenance, snapshot);
    let r = unary!(r, "/v3/lock/lock", lock, lock);
    let r = unary!(r, "/v3/lock/unlock", lock, unlock);
    let r = unary!(r, "/v3/election/campaign", election, campaign);
    let r = unary!(r, "/v3/election/proclaim", election, proclaim);
    let r = unary!(r, "/v3/election/leader", election, leader);
    let r = unary!(r, "/v3/election/resign", election, resign);
    let r = server_stream!(r, "/v3/election/observe", election, observe);
    let r = unary!(r, "/v3/auth/enable", auth, auth_enable);
    let r = unary!(r, "/v3/auth/disable", auth, auth_disable);
    let r = unary!(r, "/v3/auth/status", auth, auth_status);
    let r = unary!(r, "/v3/auth/authenticate", auth, authenticate);
    let r = unary!(r, "/v3/auth/user/add", auth, user_add);
    let r = unary!(r, "/v3/auth/user/get", auth, user_get);
    let r = unary!(r, "/v3/auth/user/list", auth, user_list);
    let r = unary!(r, "/v3/auth/user/delete", auth, user_delete);
    let r = unary!(r, "/v3/auth/user/changepw", auth, user_change_password);
    let r = unary!(r, "/v3/auth/user/grant", auth, user_grant_role);
    let r = unary!(r, "/v3/auth/user/revoke", auth, user_revoke_role);
    let r = unary!(r, "/v3/auth/role/add", auth, role_add);
    let r = unary!(r, "/v3/auth/role/get", auth, role_get);
    let r = unary!(r, "/v3/auth/role/list", auth, role_list);
    let r = unary!(r, "/v3/auth/role/delete", auth, role_delete);
    let r = unary!(r, "/v3/auth/role/grant", auth, role_grant_permission);
    let r = unary!(r, "/v3/auth/role/revoke", auth, role_revoke_permission);
    let r = r
        .route(
            "/v3/watch",
            post(|State(gw): State<Gw<S>>, headers: http::HeaderMap, body: Body| async move {
                match request_stream::<WatchRequest>(body, gw.limit).await {
                    Ok(input) => answer_stream(gw.watch.watch(grpc_request(&headers, input)).await),
                    Err(resp) => resp,
                }
            }),
        )
        .route(
            "/v3/lease/keepalive",
            post(|State(gw): State<Gw<S>>, headers: http::HeaderMap, body: Body| async move {
                match request_stream::<LeaseKeepAliveRequest>(body, gw.limit).await {
                    Ok(input) => answer_stream(gw.lease.lease_keep_alive(grpc_request(&headers, input)).await),
                    Err(resp) => resp,
                }
            }),
        );
    r.with_state(gw)
}

#[cfg(test)]
mod tests {
    use cairn_etcd_v3::pb::etcdserverpb::{range_request::SortOrder, RangeRequest, RangeResponse, ResponseHeader};
    use cairn_etcd_v3::pb::mvccpb::KeyValue;

    use crate::body::parse_json;

    #[test]
    fn proto3_json_mapping_reads_both_spellings_and_writes_etcds() {
        let r: RangeRequest =
            parse_json(br#"{"key":"Zm9v","rangeEnd":"Zm9w","sort_order":"DESCEND","limit":"5","revision":7,"unknown":1}"#).unwrap();
        assert_eq!((r.key.as_slice(), r.range_end.as_slice()), (&b"foo"[..], &b"fop"[..]));
        assert_eq!((r.sort_order, r.limit, r.revision), (SortOrder::Descend as i32, 5, 7));
        assert_eq!(parse_json::<RangeRequest>(b"  ").unwrap(), RangeRequest::default(), "an empty body is the default request");
        assert!(parse_json::<RangeRequest>(br#"{"key":"!!"}"#).is_err(), "invalid base64");
        assert!(parse_json::<RangeRequest>(br#"{"sort_order":"SIDEWAYS"}"#).is_err(), "unknown enum name");

        let resp = RangeResponse {
            header: Some(ResponseHeader { cluster_id: 1, member_id: 2, revision: 3, raft_term: 0 }),
            kvs: vec![KeyValue { key: b"foo".to_vec(), value: b"bar".to_vec(), create_revision: 3, mod_revision: 3, version: 1, lease: 0 }],
            more: false,
            count: 1,
        };
        assert_eq!(
            serde_json::to_string(&resp).unwrap(),
            r#"{"header":{"cluster_id":"1","member_id":"2","revision":"3"},"kvs":[{"key":"Zm9v","create_revision":"3","mod_revision":"3","version":"1","value":"YmFy"}],"count":"1"}"#
        );
    }
}
