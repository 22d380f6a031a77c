//! etcd's Maintenance service: status, alarms, defragmentation, history hashes, snapshots and
//! leadership transfer, translated into core calls. Hash (a hash of etcd's whole bbolt file)
//! and Downgrade (between etcd storage versions) have no Cairn equivalent and answer
//! Unimplemented.

use std::pin::Pin;

use futures::Stream;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::errors::to_status;
use crate::pb::etcdserverpb::maintenance_server::Maintenance;
use crate::pb::etcdserverpb::*;

pub struct MaintenanceService<S> {
    store: S,
}

impl<S> MaintenanceService<S> {
    pub fn new(store: S) -> Self {
        MaintenanceService { store }
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<S: cairn_api::Maintenance + cairn_api::Auth> Maintenance for MaintenanceService<S> {
    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        use alarm_request::AlarmAction as Action;
        let req = request.into_inner();
        let kind = match AlarmType::try_from(req.alarm) {
            Ok(AlarmType::None) => None,
            Ok(AlarmType::Nospace) => Some(cairn_api::AlarmKind::NoSpace),
            Ok(AlarmType::Corrupt) => Some(cairn_api::AlarmKind::Corrupt),
            Err(_) => return Err(Status::invalid_argument("etcdserver: unknown alarm type")),
        };
        let action = match Action::try_from(req.action) {
            Ok(Action::Get) => cairn_api::AlarmAction::Get { member_id: req.member_id, alarm: kind },
            Ok(a) => {
                // etcd ignores activation and deactivation of alarm NONE.
                let Some(alarm) = kind else {
                    return Ok(Response::new(AlarmResponse { header: None, alarms: Vec::new() }));
                };
                let member = cairn_api::AlarmMember { member_id: req.member_id, alarm };
                if a == Action::Activate {
                    cairn_api::AlarmAction::Activate(member)
                } else {
                    cairn_api::AlarmAction::Deactivate(member)
                }
            }
            Err(_) => return Err(Status::invalid_argument("etcdserver: unknown alarm action")),
        };
        let resp = store.alarm(action).await.map_err(to_status)?;
        Ok(Response::new(AlarmResponse {
            header: convert::header(resp.header),
            alarms: resp
                .alarms
                .into_iter()
                .map(|a| AlarmMember {
                    member_id: a.member_id,
                    alarm: match a.alarm {
                        cairn_api::AlarmKind::NoSpace => AlarmType::Nospace,
                        cairn_api::AlarmKind::Corrupt => AlarmType::Corrupt,
                    } as i32,
                })
                .collect(),
        }))
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let s = store.status().await.map_err(to_status)?;
        Ok(Response::new(StatusResponse {
            header: convert::header(s.header),
            version: s.version,
            db_size: s.db_size,
            leader: s.leader,
            raft_index: s.raft_index,
            raft_term: s.raft_term,
            raft_applied_index: s.raft_applied_index,
            errors: s.errors,
            db_size_in_use: s.db_size_in_use,
            is_learner: s.is_learner,
            ..Default::default()
        }))
    }

    async fn defragment(&self, request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let header = store.defragment().await.map_err(to_status)?;
        Ok(Response::new(DefragmentResponse { header: convert::header(header) }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        crate::auth::caller(&self.store, &request).await?;
        Err(Status::unimplemented("hash of the backend file is not supported; use HashKV"))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let resp = store.hash_kv(request.into_inner().revision).await.map_err(to_status)?;
        Ok(Response::new(HashKvResponse {
            header: convert::header(resp.header),
            hash: resp.hash,
            compact_revision: resp.compact_revision,
            hash_revision: resp.hash_revision,
        }))
    }

    type SnapshotStream = SnapshotStream;

    async fn snapshot(&self, request: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        use futures::StreamExt;
        let chunks = store.snapshot().await.map_err(to_status)?;
        let stream = chunks.map(|chunk| {
            chunk
                .map(|c| SnapshotResponse {
                    header: convert::header(c.header),
                    remaining_bytes: c.remaining_bytes,
                    blob: c.blob,
                    version: String::new(),
                })
                .map_err(to_status)
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let header = store.move_leader(request.into_inner().target_id).await.map_err(to_status)?;
        Ok(Response::new(MoveLeaderResponse { header: convert::header(header) }))
    }

    async fn downgrade(&self, request: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        crate::auth::caller(&self.store, &request).await?;
        Err(Status::unimplemented("downgrade is not supported yet"))
    }
}
