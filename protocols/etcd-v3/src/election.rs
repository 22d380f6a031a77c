//! etcd's server-side election (v3election): Campaign waits until the caller leads, Proclaim
//! changes the leader's value, Leader and Observe tell who leads, Resign steps down.

use std::pin::Pin;

use cairn_api::{prefix_range_end, Compare, CompareResult, CompareTarget, PutRequest, RangeRequest, RequestOp, SortOrder, SortTarget, TxnRequest, WatchRequest};
use futures::{Stream, StreamExt};
use tonic::{Code, Request, Response, Status};

use crate::convert::{header, key_value};
use crate::errors::to_status;
use crate::pb::v3electionpb::election_server::Election;
use crate::pb::v3electionpb::*;
use crate::recipes::{join, queue_prefix, wait_for_turn, LeaveOnDrop};

const NOT_LEADER: &str = "election: not leader";
const NO_LEADER: &str = "election: no leader";

pub struct ElectionService<S> {
    store: S,
}

impl<S> ElectionService<S> {
    pub fn new(store: S) -> Self {
        ElectionService { store }
    }
}

/// The current leader of the election with queue `prefix`: its oldest key.
async fn leader_of<S: cairn_api::Kv>(store: &S, prefix: &[u8]) -> Result<cairn_api::RangeResponse, Status> {
    store
        .range(RangeRequest {
            key: prefix.to_vec(),
            range_end: prefix_range_end(prefix),
            sort_order: SortOrder::Ascend,
            sort_target: SortTarget::Create,
            limit: 1,
            ..Default::default()
        })
        .await
        .map_err(to_status)
}

/// Runs `op` only while `leader` still holds its key (same create revision).
async fn as_leader<S: cairn_api::Kv>(store: &S, leader: Option<LeaderKey>, op: RequestOp) -> Result<cairn_api::ResponseHeader, Status> {
    let leader = leader.ok_or_else(|| Status::new(Code::Unknown, NOT_LEADER))?;
    let txn = TxnRequest {
        compare: vec![Compare {
            key: leader.key.clone(),
            range_end: vec![],
            result: CompareResult::Equal,
            target: CompareTarget::CreateRevision(leader.rev),
        }],
        success: vec![op],
        failure: vec![],
    };
    let resp = store.txn(txn).await.map_err(to_status)?;
    if !resp.succeeded {
        return Err(Status::new(Code::Unknown, NOT_LEADER));
    }
    Ok(resp.header)
}

type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl<S: cairn_api::Kv + cairn_api::Watch + cairn_api::Auth> Election for ElectionService<S> {
    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let r = request.into_inner();
        let prefix = queue_prefix(&r.name);
        let (mut kv, _) = join(&store, &prefix, r.lease, &r.value).await.map_err(to_status)?;
        if kv.value != r.value {
            // Campaigning again with the same lease updates the value (etcd's rule).
            let put = PutRequest { key: kv.key.clone(), value: r.value.clone(), ignore_lease: true, ..Default::default() };
            store.put(put).await.map_err(to_status)?;
            kv.value = r.value.clone();
        }
        let mut guard = LeaveOnDrop { store: store.clone(), key: Some(kv.key.clone()) };
        let h = wait_for_turn(&store, &prefix, kv.create_revision).await.map_err(to_status)?;
        guard.key = None;
        Ok(Response::new(CampaignResponse {
            header: header(h),
            leader: Some(LeaderKey { name: r.name, key: kv.key, rev: kv.create_revision, lease: r.lease }),
        }))
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let r = request.into_inner();
        let key = r.leader.as_ref().map(|l| l.key.clone()).unwrap_or_default();
        let put = RequestOp::Put(PutRequest { key, value: r.value, ignore_lease: true, ..Default::default() });
        let h = as_leader(&store, r.leader, put).await?;
        Ok(Response::new(ProclaimResponse { header: header(h) }))
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let resp = leader_of(&store, &queue_prefix(&request.into_inner().name)).await?;
        match resp.kvs.into_iter().next() {
            Some(kv) => Ok(Response::new(LeaderResponse { header: header(resp.header), kv: Some(key_value(kv)) })),
            None => Err(Status::new(Code::Unknown, NO_LEADER)),
        }
    }

    type ObserveStream = ObserveStream;

    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let prefix = queue_prefix(&request.into_inner().name);
        let store = store.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut last: Option<cairn_api::KeyValue> = None;
            loop {
                let resp = match leader_of(&store, &prefix).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                let current = resp.kvs.into_iter().next();
                if current.is_some() && current != last {
                    let msg = LeaderResponse { header: header(resp.header), kv: current.clone().map(key_value) };
                    if tx.send(Ok(msg)).await.is_err() {
                        return;
                    }
                    last = current;
                }
                // Any change under the prefix may change the leader or its value.
                let watch = WatchRequest {
                    key: prefix.clone(),
                    range_end: prefix_range_end(&prefix),
                    start_revision: resp.header.revision + 1,
                    ..Default::default()
                };
                let mut events = match store.watch(watch).await {
                    Ok((_, events)) => events,
                    Err(e) => {
                        let _ = tx.send(Err(to_status(e))).await;
                        return;
                    }
                };
                tokio::select! {
                    ev = events.next() => if ev.is_none() { return },
                    _ = tx.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let store = crate::auth::caller(&self.store, &request).await?;
        let r = request.into_inner();
        let key = r.leader.as_ref().map(|l| l.key.clone()).unwrap_or_default();
        let del = RequestOp::DeleteRange(cairn_api::DeleteRangeRequest { key, ..Default::default() });
        let h = as_leader(&store, r.leader, del).await?;
        Ok(Response::new(ResignResponse { header: header(h) }))
    }
}
