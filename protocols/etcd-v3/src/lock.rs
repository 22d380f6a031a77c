//! etcd's server-side lock (v3lock): Lock waits until the caller holds `<name>/<lease>`,
//! Unlock deletes the key. The lock lasts until unlocked or until the lease ends.

use tonic::{Request, Response, Status};

use crate::convert::header;
use crate::errors::to_status;
use crate::pb::v3lockpb::lock_server::Lock;
use crate::pb::v3lockpb::*;
use crate::recipes::{join, leave, queue_prefix, wait_for_turn, LeaveOnDrop};

pub struct LockService<S> {
    store: S,
}

impl<S> LockService<S> {
    pub fn new(store: S) -> Self {
        LockService { store }
    }
}

#[tonic::async_trait]
impl<S: cairn_api::Kv + cairn_api::Watch + cairn_api::Auth> Lock for LockService<S> {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let r = request.into_inner();
        let prefix = queue_prefix(&r.name);
        let (kv, _) = join(&store, &prefix, r.lease, b"").await.map_err(to_status)?;
        // If the caller gives up while waiting, its place in the queue is given up too.
        let mut guard = LeaveOnDrop { store: store.clone(), key: Some(kv.key.clone()) };
        let h = wait_for_turn(&store, &prefix, kv.create_revision).await.map_err(to_status)?;
        guard.key = None;
        Ok(Response::new(LockResponse { header: header(h), key: kv.key }))
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let h = leave(&store, &request.into_inner().key).await.map_err(to_status)?;
        Ok(Response::new(UnlockResponse { header: header(h) }))
    }
}
