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
//! Auth passes through: a handle made for a client ([`api::Auth::for_caller`]) carries the
//! client's token (or one obtained with its name and password) on every call, and the member
//! checks it. The proxy itself holds no credentials and decides nothing; permission checks
//! an adapter asks of it locally ([`api::Auth::check_access`]) answer yes, and the member
//! refuses what is not allowed. With auth enabled on the cluster the v2 API and RESP through
//! the proxy are refused (their writes run on the proxy's own handle, which has no token).

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

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tonic::metadata::{Ascii, MetadataValue};

use cairn_etcd_v3::pb::etcdserverpb::auth_server::Auth as _;

use crate::services::{with_token, Forward, MAX_MESSAGE_BYTES};
use crate::upstream::Retry;
use crate::watch::{Subscription, WatchHub};

/// The cluster as one core-API store (cheap to clone).
#[derive(Clone)]
pub struct Remote {
    fwd: Forward,
    hub: WatchHub,
    /// The token this handle's calls carry (see the `Auth` impl): the client's, passed on.
    token: Option<MetadataValue<Ascii>>,
    /// The user, when the client logged in here with a name and password.
    user: Option<String>,
    /// Whether the cluster has auth enabled, as last seen (refreshed in the background).
    auth_on: Arc<AtomicBool>,
}

impl Remote {
    pub fn new(fwd: Forward, hub: WatchHub) -> Remote {
        let auth_on = Arc::new(AtomicBool::new(false));
        let remote = Remote { fwd, hub, token: None, user: None, auth_on };
        let watcher = remote.clone();
        tokio::spawn(async move {
            // Only a hint for RESP's NOAUTH and ACL WHOAMI; the members enforce auth.
            loop {
                if let Ok(r) = watcher.fwd.auth_status(Request::new(pb::AuthStatusRequest {})).await {
                    watcher.auth_on.store(r.get_ref().enabled, Ordering::Relaxed);
                }
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                if Arc::strong_count(&watcher.auth_on) == 1 {
                    return;
                }
            }
        });
        remote
    }

    /// `message` as a request carrying this handle's token.
    fn req<T>(&self, message: T) -> Request<T> {
        with_token(message, self.token.as_ref())
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
        let resp = self.fwd.range(self.req(convert::pb_range_request(req))).await.map_err(err)?;
        Ok(convert::api_range_response(resp.into_inner()))
    }

    async fn put(&self, req: api::PutRequest) -> StoreResult<api::PutResponse> {
        let resp = self.fwd.put(self.req(convert::pb_put_request(req))).await.map_err(err)?;
        Ok(convert::api_put_response(resp.into_inner()))
    }

    async fn delete_range(&self, req: api::DeleteRangeRequest) -> StoreResult<api::DeleteRangeResponse> {
        let resp = self.fwd.delete_range(self.req(convert::pb_delete_request(req))).await.map_err(err)?;
        Ok(convert::api_delete_response(resp.into_inner()))
    }

    async fn txn(&self, req: api::TxnRequest) -> StoreResult<api::TxnResponse> {
        let resp = self.fwd.txn(self.req(convert::pb_txn_request(req))).await.map_err(err)?;
        Ok(convert::api_txn_response(resp.into_inner()))
    }

    async fn compact(&self, req: api::CompactionRequest) -> StoreResult<api::CompactionResponse> {
        let req = pb::CompactionRequest { revision: req.revision, physical: req.physical };
        let resp = self.fwd.compact(self.req(req)).await.map_err(err)?;
        Ok(api::CompactionResponse { header: convert::api_header(resp.into_inner().header) })
    }
}

impl api::Lease for Remote {
    async fn lease_grant(&self, req: api::LeaseGrantRequest) -> StoreResult<api::LeaseGrantResponse> {
        let resp = self.fwd.lease_grant(self.req(pb::LeaseGrantRequest { ttl: req.ttl, id: req.id })).await.map_err(err)?;
        let r = resp.into_inner();
        if !r.error.is_empty() {
            return Err(from_code_and_message(None, &r.error));
        }
        Ok(api::LeaseGrantResponse { header: convert::api_header(r.header), id: r.id, ttl: r.ttl })
    }

    async fn lease_revoke(&self, id: api::LeaseId) -> StoreResult<api::LeaseRevokeResponse> {
        let resp = self.fwd.lease_revoke(self.req(pb::LeaseRevokeRequest { id })).await.map_err(err)?;
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
        let token = self.token.clone();
        let resp = self
            .fwd
            .upstream()
            .call("lease_time_to_live", Retry::Idempotent, |ch| {
                let req = with_token(req, token.as_ref());
                async move { LeaseClient::new(ch).max_decoding_message_size(MAX_MESSAGE_BYTES).lease_time_to_live(req).await }
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
        let resp = self.fwd.lease_leases(self.req(pb::LeaseLeasesRequest {})).await.map_err(err)?;
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
        let token = self.token.as_ref().and_then(|t| t.to_str().ok()).map(str::to_string);
        let mut sub = self.hub.subscribe(create, token).await;
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
        let resp = self.fwd.status(self.req(pb::StatusRequest {})).await.map_err(err)?;
        Ok(convert::api_header(resp.into_inner().header))
    }
}

impl api::Cluster for Remote {
    async fn member_list(&self) -> StoreResult<api::MemberListResponse> {
        let resp = self.fwd.member_list(self.req(pb::MemberListRequest { linearizable: false })).await.map_err(err)?;
        let r = resp.into_inner();
        Ok(api::MemberListResponse { header: convert::api_header(r.header), members: members(r.members) })
    }

    async fn member_add(&self, req: api::MemberAddRequest) -> StoreResult<api::MemberAddResponse> {
        let req = pb::MemberAddRequest { peer_ur_ls: req.peer_urls, is_learner: req.is_learner };
        let r = self.fwd.member_add(self.req(req)).await.map_err(err)?.into_inner();
        Ok(api::MemberAddResponse {
            header: convert::api_header(r.header),
            member: r.member.map(convert::api_member).unwrap_or_default(),
            members: members(r.members),
        })
    }

    async fn member_remove(&self, id: u64) -> StoreResult<api::MembersResponse> {
        let r = self.fwd.member_remove(self.req(pb::MemberRemoveRequest { id })).await.map_err(err)?.into_inner();
        Ok(api::MembersResponse { header: convert::api_header(r.header), members: members(r.members) })
    }

    async fn member_update(&self, id: u64, peer_urls: Vec<String>) -> StoreResult<api::MembersResponse> {
        let req = pb::MemberUpdateRequest { id, peer_ur_ls: peer_urls };
        let r = self.fwd.member_update(self.req(req)).await.map_err(err)?.into_inner();
        Ok(api::MembersResponse { header: convert::api_header(r.header), members: members(r.members) })
    }

    async fn member_promote(&self, id: u64) -> StoreResult<api::MembersResponse> {
        let r = self.fwd.member_promote(self.req(pb::MemberPromoteRequest { id })).await.map_err(err)?.into_inner();
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
        let s = self.fwd.status(self.req(pb::StatusRequest {})).await.map_err(err)?.into_inner();
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
        let r = self.fwd.hash_kv(self.req(pb::HashKvRequest { revision })).await.map_err(err)?.into_inner();
        Ok(api::HashKvResponse {
            header: convert::api_header(r.header),
            hash: r.hash,
            compact_revision: r.compact_revision,
            hash_revision: r.hash_revision,
        })
    }

    async fn defragment(&self) -> StoreResult<api::ResponseHeader> {
        let r = self.fwd.defragment(self.req(pb::DefragmentRequest {})).await.map_err(err)?.into_inner();
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
        let r = self.fwd.alarm(self.req(req)).await.map_err(err)?.into_inner();
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
        let chunks = self.fwd.snapshot(self.req(pb::SnapshotRequest {})).await.map_err(err)?.into_inner();
        let chunks = chunks.map(|c| {
            c.map(|c| api::SnapshotChunk { header: convert::api_header(c.header), remaining_bytes: c.remaining_bytes, blob: c.blob })
                .map_err(err)
        });
        Ok(Box::pin(chunks))
    }

    async fn move_leader(&self, target: u64) -> StoreResult<api::ResponseHeader> {
        let r = self.fwd.move_leader(self.req(pb::MoveLeaderRequest { target_id: target })).await.map_err(err)?.into_inner();
        Ok(convert::api_header(r.header))
    }
}

impl api::Auth for Remote {
    async fn for_caller(&self, credentials: api::Credentials) -> StoreResult<Self> {
        let mut handle = self.clone();
        handle.user = None;
        handle.token = None;
        match credentials {
            api::Credentials::None => {}
            api::Credentials::Token(t) => handle.token = Some(t.parse().map_err(|_| StoreError::InvalidAuthToken)?),
            api::Credentials::Password { name, password } => {
                match self.fwd.authenticate(Request::new(pb::AuthenticateRequest { name: name.clone(), password })).await {
                    Ok(r) => handle.token = Some(r.into_inner().token.parse().map_err(|_| StoreError::InvalidAuthToken)?),
                    Err(s) if from_status(&s) == StoreError::AuthNotEnabled => {}
                    Err(s) => return Err(err(s)),
                }
                handle.user = Some(name);
            }
            api::Credentials::CertificateName(name) => {
                tracing::warn!(user = name, "a TLS client identity cannot be passed on to the cluster; treated as no credentials");
            }
        }
        Ok(handle)
    }

    fn caller_name(&self) -> Option<String> {
        self.user.clone()
    }

    fn auth_enabled(&self) -> bool {
        self.auth_on.load(Ordering::Relaxed)
    }

    fn check_access(&self, _key: &[u8], _range_end: &[u8], _need: api::PermType) -> StoreResult<()> {
        Ok(())
    }

    async fn auth_status(&self) -> StoreResult<api::AuthStatusResponse> {
        let r = self.fwd.auth_status(self.req(pb::AuthStatusRequest {})).await.map_err(err)?.into_inner();
        Ok(api::AuthStatusResponse { header: convert::api_header(r.header), enabled: r.enabled, auth_revision: r.auth_revision })
    }

    async fn authenticate(&self, name: String, password: String) -> StoreResult<api::AuthenticateResponse> {
        let r = self.fwd.authenticate(self.req(pb::AuthenticateRequest { name, password })).await.map_err(err)?.into_inner();
        Ok(api::AuthenticateResponse { header: convert::api_header(r.header), token: r.token })
    }

    async fn auth_change(&self, change: api::AuthChange) -> StoreResult<api::ResponseHeader> {
        use api::AuthChange::*;
        use cairn_etcd_v3::pb::authpb::UserAddOptions;
        let header = match change {
            Enable => self.fwd.auth_enable(self.req(pb::AuthEnableRequest {})).await.map_err(err)?.into_inner().header,
            Disable => self.fwd.auth_disable(self.req(pb::AuthDisableRequest {})).await.map_err(err)?.into_inner().header,
            UserAdd { name, password, no_password } => {
                let req = pb::AuthUserAddRequest { name, password, options: Some(UserAddOptions { no_password }), hashed_password: String::new() };
                self.fwd.user_add(self.req(req)).await.map_err(err)?.into_inner().header
            }
            UserDelete { name } => self.fwd.user_delete(self.req(pb::AuthUserDeleteRequest { name })).await.map_err(err)?.into_inner().header,
            UserChangePassword { name, password } => {
                let req = pb::AuthUserChangePasswordRequest { name, password, hashed_password: String::new() };
                self.fwd.user_change_password(self.req(req)).await.map_err(err)?.into_inner().header
            }
            UserGrantRole { user, role } => {
                self.fwd.user_grant_role(self.req(pb::AuthUserGrantRoleRequest { user, role })).await.map_err(err)?.into_inner().header
            }
            UserRevokeRole { user, role } => {
                self.fwd.user_revoke_role(self.req(pb::AuthUserRevokeRoleRequest { name: user, role })).await.map_err(err)?.into_inner().header
            }
            RoleAdd { name } => self.fwd.role_add(self.req(pb::AuthRoleAddRequest { name })).await.map_err(err)?.into_inner().header,
            RoleDelete { name } => self.fwd.role_delete(self.req(pb::AuthRoleDeleteRequest { role: name })).await.map_err(err)?.into_inner().header,
            RoleGrantPermission { name, perm } => {
                let perm = cairn_etcd_v3::auth::permission(perm);
                self.fwd.role_grant_permission(self.req(pb::AuthRoleGrantPermissionRequest { name, perm: Some(perm) })).await.map_err(err)?
                    .into_inner()
                    .header
            }
            RoleRevokePermission { role, key, range_end } => {
                let req = pb::AuthRoleRevokePermissionRequest { role, key, range_end };
                self.fwd.role_revoke_permission(self.req(req)).await.map_err(err)?.into_inner().header
            }
        };
        Ok(convert::api_header(header))
    }

    async fn user_get(&self, name: String) -> StoreResult<api::UserGetResponse> {
        let r = self.fwd.user_get(self.req(pb::AuthUserGetRequest { name })).await.map_err(err)?.into_inner();
        Ok(api::UserGetResponse { header: convert::api_header(r.header), roles: r.roles })
    }

    async fn user_list(&self) -> StoreResult<api::NamesResponse> {
        let r = self.fwd.user_list(self.req(pb::AuthUserListRequest {})).await.map_err(err)?.into_inner();
        Ok(api::NamesResponse { header: convert::api_header(r.header), names: r.users })
    }

    async fn role_get(&self, name: String) -> StoreResult<api::RoleGetResponse> {
        let r = self.fwd.role_get(self.req(pb::AuthRoleGetRequest { role: name })).await.map_err(err)?.into_inner();
        let perms = r
            .perm
            .into_iter()
            .map(|p| {
                let perm = cairn_etcd_v3::auth::perm_type(p.perm_type).map_err(err)?;
                Ok(api::KeyPermission { perm, key: p.key, range_end: p.range_end })
            })
            .collect::<StoreResult<_>>()?;
        Ok(api::RoleGetResponse { header: convert::api_header(r.header), perms })
    }

    async fn role_list(&self) -> StoreResult<api::NamesResponse> {
        let r = self.fwd.role_list(self.req(pb::AuthRoleListRequest {})).await.map_err(err)?.into_inner();
        Ok(api::NamesResponse { header: convert::api_header(r.header), names: r.roles })
    }
}
