//! The etcd v3 services the proxy serves, each call forwarded to the cluster as it came
//! (no translation, so answers and errors are the member's own, byte for byte). Watch and
//! LeaseKeepAlive are the exceptions: see [`crate::watch`] and [`crate::keepalive`].

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use cairn_etcd_v3::pb::etcdserverpb::auth_client::AuthClient;
use cairn_etcd_v3::pb::etcdserverpb::auth_server::Auth;
use cairn_etcd_v3::pb::etcdserverpb::cluster_client::ClusterClient;
use cairn_etcd_v3::pb::etcdserverpb::cluster_server::Cluster;
use cairn_etcd_v3::pb::etcdserverpb::kv_client::KvClient;
use cairn_etcd_v3::pb::etcdserverpb::kv_server::Kv;
use cairn_etcd_v3::pb::etcdserverpb::lease_client::LeaseClient;
use cairn_etcd_v3::pb::etcdserverpb::lease_server::Lease;
use cairn_etcd_v3::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_etcd_v3::pb::etcdserverpb::maintenance_server::Maintenance;
use cairn_etcd_v3::pb::etcdserverpb::*;
use cairn_etcd_v3::pb::v3electionpb::election_client::ElectionClient;
use cairn_etcd_v3::pb::v3electionpb::election_server::Election;
use cairn_etcd_v3::pb::v3electionpb::*;
use cairn_etcd_v3::pb::v3lockpb::lock_client::LockClient;
use cairn_etcd_v3::pb::v3lockpb::lock_server::Lock;
use cairn_etcd_v3::pb::v3lockpb::*;

use crate::keepalive::KeepAlives;
use crate::upstream::{Retry, Upstream};

/// Answers from members can be as large as the member allows; the proxy does not cut them.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// The client's auth token (etcd's `token` metadata), which goes on to the member: the proxy
/// holds no credentials and checks nothing itself; the member decides.
pub fn token_of<T>(request: &Request<T>) -> Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> {
    request.metadata().get(cairn_etcd_v3::auth::TOKEN_METADATA_KEY).cloned()
}

/// `message` as a request carrying `token` (if any).
pub fn with_token<T>(message: T, token: Option<&tonic::metadata::MetadataValue<tonic::metadata::Ascii>>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(t) = token {
        request.metadata_mut().insert(cairn_etcd_v3::auth::TOKEN_METADATA_KEY, t.clone());
    }
    request
}

/// Forwards one unary call: `$client::new(channel).$method(request)` with `$retry`.
macro_rules! forward {
    ($self:ident, $request:ident, $client:ident, $method:ident, $retry:expr) => {{
        let token = token_of(&$request);
        let req = $request.into_inner();
        $self
            .up
            .call(stringify!($method), $retry, |ch| {
                let req = with_token(req.clone(), token.as_ref());
                async move {
                    let mut c = $client::new(ch).max_decoding_message_size(MAX_MESSAGE_BYTES).max_encoding_message_size(MAX_MESSAGE_BYTES);
                    c.$method(req).await.map(Response::into_inner)
                }
            })
            .await
            .map(Response::new)
    }};
}

/// The serializable-read cache: answers of serializable Range calls, reused for `ttl`.
/// Off when `ttl` is zero. Any write through this proxy empties it; writes made elsewhere show
/// after at most `ttl` (a serializable read may be stale anyway, this bounds how stale).
pub struct ReadCache {
    ttl: Duration,
    entries: Mutex<HashMap<Vec<u8>, (Instant, RangeResponse)>>,
}

/// Entries above this count are dropped all at once (the cache is a short-lived convenience).
const CACHE_MAX_ENTRIES: usize = 10_000;

impl ReadCache {
    pub fn new(ttl: Duration) -> ReadCache {
        ReadCache { ttl, entries: Mutex::new(HashMap::new()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, (Instant, RangeResponse)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn get(&self, key: &[u8]) -> Option<RangeResponse> {
        let entries = self.lock();
        entries.get(key).filter(|(at, _)| at.elapsed() < self.ttl).map(|(_, r)| r.clone())
    }

    fn put(&self, key: Vec<u8>, resp: RangeResponse) {
        let mut entries = self.lock();
        if entries.len() >= CACHE_MAX_ENTRIES {
            entries.clear();
        }
        entries.insert(key, (Instant::now(), resp));
    }

    fn invalidate(&self) {
        if !self.ttl.is_zero() {
            self.lock().clear();
        }
    }
}

#[derive(Clone)]
pub struct Forward {
    up: Upstream,
    cache: Arc<ReadCache>,
    keepalives: KeepAlives,
}

impl Forward {
    pub fn new(up: Upstream, cache: Arc<ReadCache>, keepalives: KeepAlives) -> Forward {
        Forward { up, cache, keepalives }
    }

    pub fn upstream(&self) -> &Upstream {
        &self.up
    }

    pub fn keepalives(&self) -> &KeepAlives {
        &self.keepalives
    }
}

/// A Txn that only reads is as idempotent as a Range.
fn txn_retry(t: &TxnRequest) -> Retry {
    fn reads_only(ops: &[RequestOp]) -> bool {
        ops.iter().all(|op| match &op.request {
            Some(request_op::Request::RequestRange(_)) => true,
            Some(request_op::Request::RequestTxn(t)) => reads_only(&t.success) && reads_only(&t.failure),
            _ => false,
        })
    }
    if reads_only(&t.success) && reads_only(&t.failure) {
        Retry::Idempotent
    } else {
        Retry::Write
    }
}

#[tonic::async_trait]
impl Kv for Forward {
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        if !request.get_ref().serializable || self.cache.ttl.is_zero() {
            return forward!(self, request, KvClient, range, Retry::Idempotent);
        }
        // Answers are cached per token: what one user may read is not served to another.
        let mut key = prost::Message::encode_to_vec(request.get_ref());
        if let Some(t) = token_of(&request) {
            key.extend_from_slice(b"\0token\0");
            key.extend_from_slice(t.as_bytes());
        }
        if let Some(hit) = self.cache.get(&key) {
            metrics::counter!("etcd_grpc_proxy_cache_hits_total").increment(1);
            return Ok(Response::new(hit));
        }
        metrics::counter!("etcd_grpc_proxy_cache_misses_total").increment(1);
        let resp = forward!(self, request, KvClient, range, Retry::Idempotent)?;
        self.cache.put(key, resp.get_ref().clone());
        Ok(resp)
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, KvClient, put, Retry::Write)
    }

    async fn delete_range(&self, request: Request<DeleteRangeRequest>) -> Result<Response<DeleteRangeResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, KvClient, delete_range, Retry::Write)
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let retry = txn_retry(request.get_ref());
        if retry == Retry::Write {
            self.cache.invalidate();
        }
        forward!(self, request, KvClient, txn, retry)
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        // Compacting twice to the same revision is harmless (the second answers "compacted").
        forward!(self, request, KvClient, compact, Retry::Idempotent)
    }
}

type KeepAliveStream = Pin<Box<dyn Stream<Item = Result<LeaseKeepAliveResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Lease for Forward {
    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        forward!(self, request, LeaseClient, lease_grant, Retry::Write)
    }

    async fn lease_revoke(&self, request: Request<LeaseRevokeRequest>) -> Result<Response<LeaseRevokeResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, LeaseClient, lease_revoke, Retry::Write)
    }

    type LeaseKeepAliveStream = KeepAliveStream;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let keepalives = self.keepalives.clone();
        // One answer per request, in request order; renewals of the same lease asked by many
        // clients at once share one upstream request.
        let answers = request.into_inner().then(move |req| {
            let keepalives = keepalives.clone();
            async move { keepalives.keep_alive(req?.id).await }
        });
        // The first error ends the stream (tonic sends it as the call's status).
        Ok(Response::new(Box::pin(answers)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        forward!(self, request, LeaseClient, lease_time_to_live, Retry::Idempotent)
    }

    async fn lease_leases(&self, request: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        forward!(self, request, LeaseClient, lease_leases, Retry::Idempotent)
    }
}

#[tonic::async_trait]
impl Cluster for Forward {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        forward!(self, request, ClusterClient, member_add, Retry::Write)
    }

    async fn member_remove(&self, request: Request<MemberRemoveRequest>) -> Result<Response<MemberRemoveResponse>, Status> {
        forward!(self, request, ClusterClient, member_remove, Retry::Write)
    }

    async fn member_update(&self, request: Request<MemberUpdateRequest>) -> Result<Response<MemberUpdateResponse>, Status> {
        forward!(self, request, ClusterClient, member_update, Retry::Write)
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        forward!(self, request, ClusterClient, member_list, Retry::Idempotent)
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        forward!(self, request, ClusterClient, member_promote, Retry::Write)
    }
}

type SnapshotStream = Pin<Box<dyn Stream<Item = Result<SnapshotResponse, Status>> + Send>>;
type ObserveStream = Pin<Box<dyn Stream<Item = Result<LeaderResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Maintenance for Forward {
    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        forward!(self, request, MaintenanceClient, alarm, Retry::Write)
    }

    async fn status(&self, request: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        forward!(self, request, MaintenanceClient, status, Retry::Idempotent)
    }

    async fn defragment(&self, request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        forward!(self, request, MaintenanceClient, defragment, Retry::Idempotent)
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        forward!(self, request, MaintenanceClient, hash, Retry::Idempotent)
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        forward!(self, request, MaintenanceClient, hash_kv, Retry::Idempotent)
    }

    type SnapshotStream = SnapshotStream;

    /// A snapshot streams from one member; if that member fails midway the stream ends with
    /// its error (the client starts over, as it would talking to the member directly).
    async fn snapshot(&self, request: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        let stream = forward!(self, request, MaintenanceClient, snapshot, Retry::Idempotent)?;
        Ok(Response::new(Box::pin(stream.into_inner())))
    }

    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        forward!(self, request, MaintenanceClient, move_leader, Retry::Write)
    }

    async fn downgrade(&self, request: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        forward!(self, request, MaintenanceClient, downgrade, Retry::Write)
    }
}

#[tonic::async_trait]
impl Lock for Forward {
    /// A Lock call waits (possibly long) for the lock; it is a write, retried only when it
    /// surely did not reach a member.
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, LockClient, lock, Retry::Write)
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        self.cache.invalidate();
        // Deleting the lock key twice is harmless.
        forward!(self, request, LockClient, unlock, Retry::Idempotent)
    }
}

#[tonic::async_trait]
impl Election for Forward {
    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, ElectionClient, campaign, Retry::Write)
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, ElectionClient, proclaim, Retry::Write)
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        forward!(self, request, ElectionClient, leader, Retry::Idempotent)
    }

    type ObserveStream = ObserveStream;

    /// Observe streams from one member; if it fails the stream ends with the error.
    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<Self::ObserveStream>, Status> {
        let stream = forward!(self, request, ElectionClient, observe, Retry::Idempotent)?;
        Ok(Response::new(Box::pin(stream.into_inner())))
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, ElectionClient, resign, Retry::Idempotent)
    }
}

/// etcd's Auth service, forwarded (the member keeps users and roles and checks everything).
#[tonic::async_trait]
impl Auth for Forward {
    async fn auth_enable(&self, request: Request<AuthEnableRequest>) -> Result<Response<AuthEnableResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, AuthClient, auth_enable, Retry::Write)
    }

    async fn auth_disable(&self, request: Request<AuthDisableRequest>) -> Result<Response<AuthDisableResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, AuthClient, auth_disable, Retry::Write)
    }

    async fn auth_status(&self, request: Request<AuthStatusRequest>) -> Result<Response<AuthStatusResponse>, Status> {
        forward!(self, request, AuthClient, auth_status, Retry::Idempotent)
    }

    async fn authenticate(&self, request: Request<AuthenticateRequest>) -> Result<Response<AuthenticateResponse>, Status> {
        forward!(self, request, AuthClient, authenticate, Retry::Idempotent)
    }

    async fn user_add(&self, request: Request<AuthUserAddRequest>) -> Result<Response<AuthUserAddResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, AuthClient, user_add, Retry::Write)
    }

    async fn user_get(&self, request: Request<AuthUserGetRequest>) -> Result<Response<AuthUserGetResponse>, Status> {
        forward!(self, request, AuthClient, user_get, Retry::Idempotent)
    }

    async fn user_list(&self, request: Request<AuthUserListRequest>) -> Result<Response<AuthUserListResponse>, Status> {
        forward!(self, request, AuthClient, user_list, Retry::Idempotent)
    }

    async fn user_delete(&self, request: Request<AuthUserDeleteRequest>) -> Result<Response<AuthUserDeleteResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, AuthClient, user_delete, Retry::Write)
    }

    async fn user_change_password(&self, request: Request<AuthUserChangePasswordRequest>) -> Result<Response<AuthUserChangePasswordResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, AuthClient, user_change_password, Retry::Write)
    }

    async fn user_grant_role(&self, request: Request<AuthUserGrantRoleRequest>) -> Result<Response<AuthUserGrantRoleResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, AuthClient, user_grant_role, Retry::Write)
    }

    async fn user_revoke_role(&self, request: Request<AuthUserRevokeRoleRequest>) -> Result<Response<AuthUserRevokeRoleResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, AuthClient, user_revoke_role, Retry::Write)
    }

    async fn role_add(&self, request: Request<AuthRoleAddRequest>) -> Result<Response<AuthRoleAddResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, AuthClient, role_add, Retry::Write)
    }

    async fn role_get(&self, request: Request<AuthRoleGetRequest>) -> Result<Response<AuthRoleGetResponse>, Status> {
        forward!(self, request, AuthClient, role_get, Retry::Idempotent)
    }

    async fn role_list(&self, request: Request<AuthRoleListRequest>) -> Result<Response<AuthRoleListResponse>, Status> {
        forward!(self, request, AuthClient, role_list, Retry::Idempotent)
    }

    async fn role_delete(&self, request: Request<AuthRoleDeleteRequest>) -> Result<Response<AuthRoleDeleteResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, AuthClient, role_delete, Retry::Write)
    }

    async fn role_grant_permission(&self, request: Request<AuthRoleGrantPermissionRequest>) -> Result<Response<AuthRoleGrantPermissionResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, AuthClient, role_grant_permission, Retry::Write)
    }

    async fn role_revoke_permission(&self, request: Request<AuthRoleRevokePermissionRequest>) -> Result<Response<AuthRoleRevokePermissionResponse>, Status> {
        self.cache.invalidate();
        forward!(self, request, AuthClient, role_revoke_permission, Retry::Write)
    }
}
