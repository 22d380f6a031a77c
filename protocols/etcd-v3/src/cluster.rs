//! etcd's Cluster service: membership listed and changed through the core, which forwards
//! changes to the leader and answers with etcd's errors (learner rules, strict reconfiguration
//! checks).

use tonic::{Request, Response, Status};

use crate::convert;
use crate::errors::to_status;
use crate::pb::etcdserverpb::cluster_server::Cluster;
use crate::pb::etcdserverpb::*;

pub struct ClusterService<S> {
    store: S,
}

impl<S> ClusterService<S> {
    pub fn new(store: S) -> Self {
        ClusterService { store }
    }
}

fn members(list: Vec<cairn_api::Member>) -> Vec<Member> {
    list.into_iter().map(convert::member).collect()
}

#[tonic::async_trait]
impl<S: cairn_api::Cluster + cairn_api::Auth> Cluster for ClusterService<S> {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let req = request.into_inner();
        let resp = store
            
            .member_add(cairn_api::MemberAddRequest { peer_urls: req.peer_ur_ls, is_learner: req.is_learner })
            .await
            .map_err(to_status)?;
        Ok(Response::new(MemberAddResponse {
            header: convert::header(resp.header),
            member: Some(convert::member(resp.member)),
            members: members(resp.members),
        }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let resp = store.member_remove(request.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(MemberRemoveResponse { header: convert::header(resp.header), members: members(resp.members) }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let req = request.into_inner();
        let resp = store.member_update(req.id, req.peer_ur_ls).await.map_err(to_status)?;
        Ok(Response::new(MemberUpdateResponse { header: convert::header(resp.header), members: members(resp.members) }))
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let resp = store.member_list().await.map_err(to_status)?;
        Ok(Response::new(MemberListResponse { header: convert::header(resp.header), members: members(resp.members) }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let resp = store.member_promote(request.into_inner().id).await.map_err(to_status)?;
        Ok(Response::new(MemberPromoteResponse { header: convert::header(resp.header), members: members(resp.members) }))
    }
}
