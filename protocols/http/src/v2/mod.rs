//! etcd's v2 API over the v3 keyspace: keys, members, stats.

pub(crate) mod error;
pub(crate) mod keys;
mod members;
mod model;
mod store;
mod watch;

use std::sync::Arc;

use axum::routing::{any, get};

use crate::{HttpConfig, Store};

/// Shared state of the v2 routes.
pub struct V2<S> {
    keys: Arc<store::V2Store<S>>,
    body_limit: usize,
    started: chrono::DateTime<chrono::Utc>,
}

pub fn routes<S: Store>(store: S, config: HttpConfig) -> axum::Router {
    let state = Arc::new(V2 {
        keys: Arc::new(store::V2Store::new(store)),
        body_limit: config.body_limit(),
        started: chrono::Utc::now(),
    });
    axum::Router::new()
        .route("/v2/keys", any(keys::keys::<S>))
        .route("/v2/keys/", any(keys::keys::<S>))
        .route("/v2/keys/{*path}", any(keys::keys::<S>))
        .route("/v2/members", any(members::members::<S>))
        .route("/v2/members/", any(members::members::<S>))
        .route("/v2/members/leader", get(members::member_leader::<S>))
        .route("/v2/members/{id}", any(members::member::<S>))
        .route("/v2/machines", get(members::machines::<S>))
        .route("/v2/stats/self", get(members::stats_self::<S>))
        .route("/v2/stats/leader", get(members::stats_leader::<S>))
        .route("/v2/stats/store", get(members::stats_store::<S>))
        .with_state(state)
}
