//! etcd's KV service: Range, Put, DeleteRange, Txn, Compact.

use tonic::{Request, Response, Status};

use crate::convert;
use crate::errors::to_status;
use crate::pb::etcdserverpb::kv_server::Kv;
use crate::pb::etcdserverpb::*;

pub struct KvService<S> {
    store: S,
}

impl<S> KvService<S> {
    pub fn new(store: S) -> Self {
        KvService { store }
    }
}

#[tonic::async_trait]
impl<S: cairn_api::Kv + cairn_api::Auth> Kv for KvService<S> {
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let req = convert::range_request(request.into_inner()).map_err(to_status)?;
        let resp = store.range(req).await.map_err(to_status)?;
        Ok(Response::new(convert::range_response(resp)))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let resp = store.put(convert::put_request(request.into_inner())).await.map_err(to_status)?;
        Ok(Response::new(convert::put_response(resp)))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let resp = store.delete_range(convert::delete_request(request.into_inner())).await.map_err(to_status)?;
        Ok(Response::new(convert::delete_response(resp)))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let req = convert::txn_request(request.into_inner()).map_err(to_status)?;
        let resp = store.txn(req).await.map_err(to_status)?;
        Ok(Response::new(convert::txn_response(resp)))
    }

    async fn compact(
        &self,
        request: Request<CompactionRequest>,
    ) -> Result<Response<CompactionResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let r = request.into_inner();
        let req = cairn_api::CompactionRequest { revision: r.revision, physical: r.physical };
        let resp = store.compact(req).await.map_err(to_status)?;
        Ok(Response::new(CompactionResponse { header: convert::header(resp.header) }))
    }
}
