//! etcd's Cluster service. Membership changes arrive with the multi-member cluster; until then
//! they answer Unimplemented rather than pretending.

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

#[tonic::async_trait]
impl<S: cairn_api::Cluster> Cluster for ClusterService<S> {
    async fn member_add(&self, _: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        Err(Status::unimplemented("member add is not supported yet"))
    }

    async fn member_remove(&self, _: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        Err(Status::unimplemented("member remove is not supported yet"))
    }

    async fn member_update(&self, _: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        Err(Status::unimplemented("member update is not supported yet"))
    }

    async fn member_list(&self, _: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        let resp = self.store.member_list().await.map_err(to_status)?;
        Ok(Response::new(MemberListResponse {
            header: convert::header(resp.header),
            members: resp.members.into_iter().map(convert::member).collect(),
        }))
    }

    async fn member_promote(
        &self,
        _: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        Err(Status::unimplemented("member promote is not supported yet"))
    }
}
