//! etcd's Lease service: grant, revoke, keep-alive (a bidi stream), time-to-live, list.

use std::pin::Pin;

use futures::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::convert::header;
use crate::errors::to_status;
use crate::pb::etcdserverpb::lease_server::Lease;
use crate::pb::etcdserverpb::*;

pub struct LeaseService<S> {
    store: S,
}

impl<S> LeaseService<S> {
    pub fn new(store: S) -> Self {
        LeaseService { store }
    }
}

/// The response header (gRPC metadata) of LeaseTimeToLive answers that carries the
/// milliseconds left on the lease (-1 when it does not exist).
pub const REMAINING_MS_HEADER: &str = "cairn-lease-remaining-ms";

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<S: cairn_api::Lease + cairn_api::Auth> Lease for LeaseService<S> {
    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let r = request.into_inner();
        let resp = store
            
            .lease_grant(cairn_api::LeaseGrantRequest { ttl: r.ttl, id: r.id })
            .await
            .map_err(to_status)?;
        Ok(Response::new(LeaseGrantResponse { header: header(resp.header), id: resp.id, ttl: resp.ttl, error: String::new() }))
    }

    async fn lease_revoke(&self, request: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let resp = store.lease_revoke(request.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(LeaseRevokeResponse { header: header(resp.header) }))
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let mut inbound = request.into_inner();
        let store = store.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            // Ends when the client closes its side, the connection breaks, or the client is gone.
            while let Ok(Some(req)) = inbound.message().await {
                let answer = match store.lease_keep_alive(req.id).await {
                    Ok(r) => Ok(LeaseKeepAliveResponse { header: header(r.header), id: r.id, ttl: r.ttl }),
                    Err(e) => Err(to_status(e)),
                };
                let failed = answer.is_err();
                if tx.send(answer).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let r = request.into_inner();
        let resp = store.lease_time_to_live(r.id, r.keys).await.map_err(to_status)?;
        let mut answer = Response::new(LeaseTimeToLiveResponse {
            header: header(resp.header),
            id: resp.id,
            ttl: resp.ttl,
            granted_ttl: resp.granted_ttl,
            keys: resp.keys,
        });
        // The milliseconds left, which etcd's message (whole seconds) cannot carry, for a
        // `cairn proxy` serving RESP's PTTL; etcd clients ignore the header.
        answer.metadata_mut().insert(REMAINING_MS_HEADER, resp.remaining_ms.into());
        Ok(answer)
    }

    async fn lease_leases(&self, request: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let resp = store.lease_leases().await.map_err(to_status)?;
        Ok(Response::new(LeaseLeasesResponse {
            header: header(resp.header),
            leases: resp.leases.into_iter().map(|id| LeaseStatus { id }).collect(),
        }))
    }
}
