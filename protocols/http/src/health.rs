//! `/version`, `/health`, `/livez` and `/readyz`, with etcd's answers.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{header, StatusCode};

use crate::Store;

const CLUSTER_VERSION: &str = "3.5.0";

/// Healthy when a leader is known and a linearizable read succeeds (what etcd checks).
async fn check<S: Store>(store: &S) -> Result<(), String> {
    let status = store.status().await.map_err(|e| e.to_string())?;
    if status.leader == 0 {
        return Err("RAFT NO LEADER".into());
    }
    let probe = cairn_api::RangeRequest { key: b"health".to_vec(), count_only: true, ..Default::default() };
    store.range(probe).await.map_err(|e| format!("QGET ERROR: {e}"))?;
    Ok(())
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn version<S: Store>(State(store): State<S>) -> Response {
    let server = store.status().await.map(|s| s.version).unwrap_or_else(|_| CLUSTER_VERSION.into());
    json(StatusCode::OK, serde_json::json!({"etcdserver": server, "etcdcluster": CLUSTER_VERSION}).to_string())
}

async fn health<S: Store>(State(store): State<S>) -> Response {
    let checked = check(&store).await;
    let outcome = if checked.is_ok() { "etcd_server_health_success" } else { "etcd_server_health_failures" };
    metrics::counter!(outcome).increment(1);
    match checked {
        Ok(()) => json(StatusCode::OK, r#"{"health":"true","reason":""}"#.into()),
        Err(reason) => json(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"health": "false", "reason": reason}).to_string(),
        ),
    }
}

async fn livez() -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], "ok").into_response()
}

async fn readyz<S: Store>(State(store): State<S>) -> Response {
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match check(&store).await {
        Ok(()) => (StatusCode::OK, text, "ok".to_string()).into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, text, format!("readyz check failed: {reason}")).into_response(),
    }
}

pub fn routes<S: Store>(store: S) -> axum::Router {
    axum::Router::new()
        .route("/version", get(version::<S>))
        .route("/health", get(health::<S>))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz::<S>))
        .with_state(store)
}
