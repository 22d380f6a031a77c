//! `/v2/members`, `/v2/machines` and `/v2/stats/{self,leader,store}`.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{header, Method, StatusCode};
use serde_json::json;

use super::V2;
use crate::Store;

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// etcd's member and stats errors: `{"message": ...}`.
fn message(status: StatusCode, msg: &str) -> Response {
    json(status, json!({ "message": msg }).to_string())
}

fn member_json(m: &cairn_api::Member) -> serde_json::Value {
    json!({"id": format!("{:x}", m.id), "name": m.name, "peerURLs": m.peer_urls, "clientURLs": m.client_urls})
}

/// The HTTP status and text etcd's v2 members API gives for a failed change.
fn change_error(e: &cairn_api::StoreError) -> Response {
    use cairn_api::StoreError::*;
    let status = match e {
        MemberExists | PeerUrlExists => StatusCode::CONFLICT,
        MemberNotFound => StatusCode::NOT_FOUND,
        MemberBadUrls => StatusCode::BAD_REQUEST,
        PermissionDenied | UserEmpty | AuthFailed | InvalidAuthToken => StatusCode::UNAUTHORIZED,
        NotEnoughStartedMembers | MemberNotLearner | LearnerNotReady | TooManyLearners | NotSupportedForLearner => {
            StatusCode::PRECONDITION_FAILED
        }
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    message(status, &format!("etcdserver: {e}"))
}

/// The `peerURLs` of a v2 member request body: `{"peerURLs": ["http://..."]}`.
fn peer_urls(body: &[u8]) -> Result<Vec<String>, Response> {
    #[derive(serde::Deserialize)]
    struct Req {
        #[serde(rename = "peerURLs")]
        peer_urls: Vec<String>,
    }
    serde_json::from_slice::<Req>(body)
        .map(|r| r.peer_urls)
        .map_err(|e| message(StatusCode::BAD_REQUEST, &format!("invalid member request: {e}")))
}

/// The store acting for the client's basic-auth user (membership changes need root).
async fn caller<S: Store>(store: &S, headers: &http::HeaderMap) -> Result<S, Response> {
    let refused = |e: cairn_api::StoreError| super::error::V2Error::unauthorized(e).into_response();
    let credentials = super::keys::basic_auth(headers).map_err(|e| e.into_response())?;
    store.for_caller(credentials).await.map_err(refused)
}

/// `/v2/members`: GET lists the members; POST `{"peerURLs": [...]}` adds one (201).
pub async fn members<S: Store>(
    State(v2): State<Arc<V2<S>>>,
    method: Method,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if method == Method::POST {
        let urls = match peer_urls(&body) {
            Ok(u) => u,
            Err(r) => return r,
        };
        let store = match caller(&v2.keys.store, &headers).await {
            Ok(s) => s,
            Err(r) => return r,
        };
        return match store.member_add(cairn_api::MemberAddRequest { peer_urls: urls, is_learner: false }).await {
            Ok(r) => json(StatusCode::CREATED, member_json(&r.member).to_string()),
            Err(e) => change_error(&e),
        };
    }
    if method != Method::GET && method != Method::HEAD {
        return message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    }
    match v2.keys.store.member_list().await {
        Ok(r) => json(StatusCode::OK, json!({"members": r.members.iter().map(member_json).collect::<Vec<_>>()}).to_string()),
        Err(e) => message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// `/v2/members/<hex id>`: DELETE removes the member, PUT `{"peerURLs": [...]}` changes its
/// peer URLs (both 204).
pub async fn member<S: Store>(
    State(v2): State<Arc<V2<S>>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    method: Method,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Ok(id) = u64::from_str_radix(&id, 16) else {
        return message(StatusCode::NOT_FOUND, &format!("No such member: {id}"));
    };
    let store = match caller(&v2.keys.store, &headers).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let result = if method == Method::DELETE {
        store.member_remove(id).await
    } else if method == Method::PUT {
        match peer_urls(&body) {
            Ok(urls) => store.member_update(id, urls).await,
            Err(r) => return r,
        }
    } else {
        return message(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
    };
    match result {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(cairn_api::StoreError::MemberNotFound) => message(StatusCode::NOT_FOUND, &format!("No such member: {id:x}")),
        Err(e) => change_error(&e),
    }
}

pub async fn member_leader<S: Store>(State(v2): State<Arc<V2<S>>>) -> Response {
    let (list, status) = match (v2.keys.store.member_list().await, v2.keys.store.status().await) {
        (Ok(l), Ok(s)) => (l, s),
        (Err(e), _) | (_, Err(e)) => return message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    match list.members.iter().find(|m| m.id == status.leader) {
        Some(m) => json(StatusCode::OK, member_json(m).to_string()),
        None => message(StatusCode::SERVICE_UNAVAILABLE, "During Leader Election"),
    }
}

pub async fn machines<S: Store>(State(v2): State<Arc<V2<S>>>) -> Response {
    let urls = match v2.keys.store.member_list().await {
        Ok(r) => r.members.into_iter().flat_map(|m| m.client_urls).collect::<Vec<_>>().join(", "),
        Err(e) => return message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], urls).into_response()
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

pub async fn stats_self<S: Store>(State(v2): State<Arc<V2<S>>>) -> Response {
    let store = &v2.keys.store;
    let (list, status) = match (store.member_list().await, store.status().await) {
        (Ok(l), Ok(s)) => (l, s),
        (Err(e), _) | (_, Err(e)) => return message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let me = status.header.member_id;
    let name = list.members.iter().find(|m| m.id == me).map(|m| m.name.clone()).unwrap_or_default();
    let leader = status.leader == me;
    let uptime = (chrono::Utc::now() - v2.started).to_std().unwrap_or_default();
    json(
        StatusCode::OK,
        json!({
            "name": name,
            "id": format!("{me:x}"),
            "state": if leader { "StateLeader" } else { "StateFollower" },
            "startTime": rfc3339(v2.started),
            "leaderInfo": {"leader": format!("{:x}", status.leader), "uptime": format!("{uptime:?}"), "startTime": rfc3339(v2.started)},
            "recvAppendRequestCnt": 0,
            "sendAppendRequestCnt": 0
        })
        .to_string(),
    )
}

pub async fn stats_leader<S: Store>(State(v2): State<Arc<V2<S>>>) -> Response {
    let store = &v2.keys.store;
    let (list, status) = match (store.member_list().await, store.status().await) {
        (Ok(l), Ok(s)) => (l, s),
        (Err(e), _) | (_, Err(e)) => return message(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    };
    let me = status.header.member_id;
    if status.leader != me {
        return message(StatusCode::FORBIDDEN, "not current leader");
    }
    let mut followers = serde_json::Map::new();
    for m in list.members.iter().filter(|m| m.id != me) {
        // Per-follower Raft counters are not tracked yet.
        followers.insert(
            format!("{:x}", m.id),
            json!({"counts": {"fail": 0, "success": 0}, "latency": {"average": 0.0, "current": 0.0, "maximum": 0.0, "minimum": 0.0, "standardDeviation": 0.0}}),
        );
    }
    json(StatusCode::OK, json!({"leader": format!("{me:x}"), "followers": followers}).to_string())
}

pub async fn stats_store<S: Store>(State(v2): State<Arc<V2<S>>>) -> Response {
    json(StatusCode::OK, v2.keys.stats.json())
}
