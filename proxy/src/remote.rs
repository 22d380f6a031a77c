//! The core API (`cairn_api`'s Kv, Lease, Watch, Cluster, Maintenance) over the cluster's gRPC,
//! so the adapters built on the core API (the v3 JSON gateway, the v2 API, `/version` and
//! `/health` of cairn-http, and RESP of cairn-resp) run in the proxy unchanged.
//!
//! Each call is converted to etcd's message (`cairn_etcd_v3::convert`) and goes through the
//! proxy's own gRPC services ([`Forward`]): the same failover and retry rules, the same
//! serializable-read cache (and its emptying on writes), the same keep-alive batching and
//! metrics as a gRPC client's call. Watches join the coalescing hub ([`WatchHub`]) like a gRPC
//! client's. A member's error comes back as the core error it was made from
//! (`cairn_etcd_v3::errors::from_status`), so an adapter answers the very error it would
//! answer on the member; answers carry the member's headers (cluster and member ids,
//! revision, term).
//!
//! One more trait (say an `Auth`) is one more `impl` here of the same shape.

use futures::StreamExt;
use tonic::{Request, Status};

use cairn_api as api;
use cairn_api::{StoreError, StoreResult};
use cairn_etcd_v3::convert;
use cairn_etcd_v3::errors::{from_code_and_message, from_status};
use cairn_etcd_v3::pb::etcdserverpb as pb;
use cairn_etcd_v3::pb::etcdserverpb::cluster_server::Cluster as _;
use cairn_etcd_v3::pb::etcdserverpb::kv_server::Kv as _;
use cairn_etcd_v3::pb::etcdserverpb::lease_client::LeaseClient;
use cairn_etcd_v3::pb::etcdserverpb::lease_server::Lease as _;
use cairn_etcd_v3::pb::etcdserverpb::maintenance_server::Maintenance as _;

use crate::services::{Forward, MAX_MESSAGE_BYTES};
use crate::upstream::Retry;
use crate::watch::{Subscription, WatchHub};

/// The cluster as one core-API store (cheap to clone).
#[derive(Clone)]
pub struct Remote {
    fwd: Forward,
    hub: WatchHub,
}

impl Remote {
    pub fn new(fwd: Forward, hub: WatchHub) -> Remote {
        Remote { fwd, hub }
    }
}

fn err(s: Status) -> StoreError {
    from_status(&s)
}

fn members(list: Vec<pb::Member>) -> Vec<api::Member> {
    list.into_iter().map(convert::api_member).collect()
}

impl api::Kv for Remote {
    async fn range(&self, req: api::RangeRequest) -> StoreResult<api::RangeResponse> {
        let resp = self.fwd.range(Request::new(convert::pb_range_request(req))).await.map_err(err)?;
        Ok(convert::api_range_response(resp.into_inner()))
    }

    async fn put(&self, req: api::PutRequest) -> StoreResult<api::PutResponse> {
        let resp = self.fwd.put(Request::new(convert::pb_put_request(req))).await.map_err(err)?;
        Ok(convert::api_put_response(resp.into_inner()))
    }

    async fn delete_range(&self, req: api::DeleteRangeRequest) -> StoreResult<api::DeleteRangeResponse> {
        let resp = self.fwd.delete_range(Request::new(convert::pb_delete_request(req))).await.map_err(err)?;
        Ok(convert::api_delete_response(resp.into_inner()))
    }

    async fn txn(&self, req: api::TxnRequest) -> StoreResult<api::TxnResponse> {
        let resp = self.fwd.txn(Request::new(convert::pb_txn_request(req))).await.map_err(err)?;
        Ok(convert::api_txn_response(resp.into_inner()))
    }

    async fn compact(&self, req: api::CompactionRequest) -> StoreResult<api::CompactionResponse> {
        let req = pb::CompactionRequest { revision: req.revision, physical: req.physical };
        let resp = self.fwd.compact(Request::new(req)).await.map_err(err)?;
        Ok(api::CompactionResponse { header: convert::api_header(resp.into_inner().header) })
    }
}

impl api::Lease for Remote {
    async fn lease_grant(&self, req: api::LeaseGrantRequest) -> StoreResult<api::LeaseGrantResponse> {
        let resp = self.fwd.lease_grant(Request::new(pb::LeaseGrantRequest { ttl: req.ttl, id: req.id })).await.map_err(err)?;
        let r = resp.into_inner();
        if !r.error.is_empty() {
            return Err(from_code_and_message(None, &r.error));
        }
        Ok(api::LeaseGrantResponse { header: convert::api_header(r.header), id: r.id, ttl: r.ttl })
    }

    async fn lease_revoke(&self, id: api::LeaseId) -> StoreResult<api::LeaseRevokeResponse> {
        let resp = self.fwd.lease_revoke(Request::new(pb::LeaseRevokeRequest { id })).await.map_err(err)?;
        Ok(api::LeaseRevokeResponse { header: convert::api_header(resp.into_inner().header) })
    }

    /// Through the proxy's one upstream keep-alive stream (renewals of one lease asked at once
    /// share one upstream request).
    async fn lease_keep_alive(&self, id: api::LeaseId) -> StoreResult<api::LeaseKeepAliveResponse> {
        let r = self.fwd.keepalives().keep_alive(id).await.map_err(err)?;
        Ok(api::LeaseKeepAliveResponse { header: convert::api_header(r.header), id: r.id, ttl: r.ttl })
    }

    /// The milliseconds left come from the member's `cairn-lease-remaining-ms` response header
    /// (RESP's PTTL needs them); a member without it (etcd) gives whole seconds only.
    async fn lease_time_to_live(&self, id: api::LeaseId, keys: bool) -> StoreResult<api::LeaseTimeToLiveResponse> {
        let req = pb::LeaseTimeToLiveRequest { id, keys };
        let resp = self
            .fwd
            .upstream()
            .call("lease_time_to_live", Retry::Idempotent, |ch| async move {
                LeaseClient::new(ch).max_decoding_message_size(MAX_MESSAGE_BYTES).lease_time_to_live(req).await
            })
            .await
            .map_err(err)?;
        let remaining_ms = resp
            .metadata()
            .get(cairn_etcd_v3::REMAINING_MS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<i64>().ok());
        let r = resp.into_inner();
        let remaining_ms = remaining_ms.unwrap_or(if r.ttl < 0 { -1 } else { r.ttl * 1000 });
        Ok(api::LeaseTimeToLiveResponse {
            header: convert::api_header(r.header),
            id: r.id,
            ttl: r.ttl,
            granted_ttl: r.granted_ttl,
            remaining_ms,
            keys: r.keys,
        })
    }

    async fn lease_leases(&self) -> StoreResult<api::LeaseLeasesResponse> {
        let resp = self.fwd.lease_leases(Request::new(pb::LeaseLeasesRequest {})).await.map_err(err)?;
        let r = resp.into_inner();
        Ok(api::LeaseLeasesResponse { header: convert::api_header(r.header), leases: r.leases.into_iter().map(|l| l.id).collect() })
    }
}

/// etcd's `WatchCreateRequest.FilterType`.
const FILTER_NOPUT: i32 = 0;
const FILTER_NODELETE: i32 = 1;

/// What a subscription delivers after its created answer, as core watch messages: events,
/// progress, and a compaction (after which it ends). A cancellation for another reason (the
/// member refused the watch) ends it too, as a core watch ends when the store stops.
fn messages(sub: Subscription) -> api::WatchStream {
    Box::pin(futures::stream::unfold(Some(sub), |sub| async move {
        let mut sub = sub?;
        loop {
            let resp = sub.next().await?;
            let header = convert::api_header(resp.header);
            if resp.canceled {
                if resp.compact_revision > 0 {
                    return Some((api::WatchMessage::Compacted { header, compact_revision: resp.compact_revision }, None));
                }
                tracing::debug!("a core-API watch ended: {}", resp.cancel_reason);
                return None;
            }
            if resp.created {
                continue;
            }
            let msg = if resp.events.is_empty() {
                api::WatchMessage::Progress { header }
            } else {
                api::WatchMessage::Events { header, events: resp.events.into_iter().map(convert::api_event).collect() }
            };
            return Some((msg, Some(sub)));
        }
    }))
}

impl api::Watch for Remote {
    async fn watch(&self, req: api::WatchRequest) -> StoreResult<(api::ResponseHeader, api::WatchStream)> {
        let mut filters = Vec::new();
        if req.no_put {
            filters.push(FILTER_NOPUT);
        }
        if req.no_delete {
            filters.push(FILTER_NODELETE);
        }
        let create = pb::WatchCreateRequest {
            key: req.key,
            range_end: req.range_end,
            start_revision: req.start_revision.max(0),
            progress_notify: req.progress_notify,
            filters,
            prev_kv: req.prev_kv,
            watch_id: 0,
            fragment: false,
        };
        let mut sub = self.hub.subscribe(create).await;
        let Some(first) = sub.next().await else {
            return Err(StoreError::Internal("proxy: the watch ended before it was created".into()));
        };
        let header = convert::api_header(first.header);
        if first.canceled {
            // Canceled at creation: compacted (the core answers a stream of that alone) or
            // refused (the member's reason).
            if first.compact_revision > 0 {
                let msg = api::WatchMessage::Compacted { header, compact_revision: first.compact_revision };
                return Ok((header, Box::pin(futures::stream::once(async move { msg }))));
            }
            return Err(from_code_and_message(None, &first.cancel_reason));
        }
        Ok((header, messages(sub)))
    }

    /// The member's current revision (as a member's own progress answer).
    async fn progress(&self) -> StoreResult<api::ResponseHeader> {
        let resp = self.fwd.status(Request::new(pb::StatusRequest {})).await.map_err(err)?;
        Ok(convert::api_header(resp.into_inner().header))
    }
}

impl api::Cluster for Remote {
    async fn member_list(&self) -> StoreResult<api::MemberListResponse> {
        let resp = self.fwd.member_list(Request::new(pb::MemberListRequest { linearizable: false })).await.map_err(err)?;
        let r = resp.into_inner();
        Ok(api::MemberListResponse { header: convert::api_header(r.header), members: members(r.members) })
    }

    async fn member_add(&self, req: api::MemberAddRequest) -> StoreResult<api::MemberAddResponse> {
        let req = pb::MemberAddRequest { peer_ur_ls: req.peer_urls, is_learner: req.is_learner };
        let r = self.fwd.member_add(Request::new(req)).await.map_err(err)?.into_inner();
        Ok(api::MemberAddResponse {
            header: convert::api_header(r.header),
            member: r.member.map(convert::api_member).unwrap_or_default(),
            members: members(r.members),
        })
    }

    async fn member_remove(&self, id: u64) -> StoreResult<api::MembersResponse> {
        let r = self.fwd.member_remove(Request::new(pb::MemberRemoveRequest { id })).await.map_err(err)?.into_inner();
        Ok(api::MembersResponse { header: convert::api_header(r.header), members: members(r.members) })
    }

    async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> StoreResult<api::MembersResponse> {
        let req = pb::MemberUpdateRequest { id, peer_ur_ls: peer_urls };
        let r = self.fwd.member_update(Request::new(req)).await.map_err(err)?.into_inner();
        Ok(api::MembersResponse { header: convert::api_header(r.header), members: members(r.members) })
    }

    async fn member_promote(&self, id: u64) -> StoreResult<api::MembersResponse> {
        let r = self.fwd.member_promote(Request::new(pb::MemberPromoteRequest { id })).await.map_err(err)?.into_inner();
        Ok(api::MembersResponse { header: convert::api_header(r.header), members: members(r.members) })
    }
}

fn alarm_kind(t: i32) -> Option<api::AlarmKind> {
    match pb::AlarmType::try_from(t) {
        Ok(pb::AlarmType::Nospace) => Some(api::AlarmKind::NoSpace),
        Ok(pb::AlarmType::Corrupt) => Some(api::AlarmKind::Corrupt),
        _ => None,
    }
}

fn alarm_type(k: Option<api::AlarmKind>) -> i32 {
    (match k {
        None => pb::AlarmType::None,
        Some(api::AlarmKind::NoSpace) => pb::AlarmType::Nospace,
        Some(api::AlarmKind::Corrupt) => pb::AlarmType::Corrupt,
    }) as i32
}

impl api::Maintenance for Remote {
    async fn status(&self) -> StoreResult<api::StatusResponse> {
        let s = self.fwd.status(Request::new(pb::StatusRequest {})).await.map_err(err)?.into_inner();
        Ok(api::StatusResponse {
            header: convert::api_header(s.header),
            version: s.version,
            db_size: s.db_size,
            db_size_in_use: s.db_size_in_use,
            leader: s.leader,
            raft_index: s.raft_index,
            raft_term: s.raft_term,
            raft_applied_index: s.raft_applied_index,
            is_learner: s.is_learner,
            errors: s.errors,
        })
    }

    async fn hash_kv(&self, revision: i64) -> StoreResult<api::HashKvResponse> {
        let r = self.fwd.hash_kv(Request::new(pb::HashKvRequest { revision })).await.map_err(err)?.into_inner();
        Ok(api::HashKvResponse {
            header: convert::api_header(r.header),
            hash: r.hash,
            compact_revision: r.compact_revision,
            hash_revision: r.hash_revision,
        })
    }

    async fn defragment(&self) -> StoreResult<api::ResponseHeader> {
        let r = self.fwd.defragment(Request::new(pb::DefragmentRequest {})).await.map_err(err)?.into_inner();
        Ok(convert::api_header(r.header))
    }

    async fn alarm(&self, action: api::AlarmAction) -> StoreResult<api::AlarmResponse> {
        use pb::alarm_request::AlarmAction as Action;
        let req = match action {
            api::AlarmAction::Get { member_id, alarm } => {
                pb::AlarmRequest { action: Action::Get as i32, member_id, alarm: alarm_type(alarm) }
            }
            api::AlarmAction::Activate(m) => {
                pb::AlarmRequest { action: Action::Activate as i32, member_id: m.member_id, alarm: alarm_type(Some(m.alarm)) }
            }
            api::AlarmAction::Deactivate(m) => {
                pb::AlarmRequest { action: Action::Deactivate as i32, member_id: m.member_id, alarm: alarm_type(Some(m.alarm)) }
            }
        };
        let r = self.fwd.alarm(Request::new(req)).await.map_err(err)?.into_inner();
        Ok(api::AlarmResponse {
            header: convert::api_header(r.header),
            alarms: r
                .alarms
                .into_iter()
                .filter_map(|a| alarm_kind(a.alarm).map(|alarm| api::AlarmMember { member_id: a.member_id, alarm }))
                .collect(),
        })
    }

    async fn snapshot(&self) -> StoreResult<api::SnapshotStream> {
        let chunks = self.fwd.snapshot(Request::new(pb::SnapshotRequest {})).await.map_err(err)?.into_inner();
        let chunks = chunks.map(|c| {
            c.map(|c| api::SnapshotChunk { header: convert::api_header(c.header), remaining_bytes: c.remaining_bytes, blob: c.blob })
                .map_err(err)
        });
        Ok(Box::pin(chunks))
    }

    async fn move_leader(&self, target: u64) -> StoreResult<api::ResponseHeader> {
        let r = self.fwd.move_leader(Request::new(pb::MoveLeaderRequest { target_id: target })).await.map_err(err)?.into_inner();
        Ok(convert::api_header(r.header))
    }
}
