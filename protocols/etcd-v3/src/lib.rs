//! The etcd v3 gRPC adapter: etcd's services, with etcd's package, message and field names, so
//! unmodified etcd clients (etcdctl, clientv3, python etcd3, ...) talk to Cairn.
//!
//! Each service file translates protobuf messages into `cairn_api` calls and back
//! ([`convert`]); every core error becomes etcd's gRPC code and exact message in one place
//! ([`errors`]). The adapter is generic over the core's traits and never names Raft or RocksDB.

pub mod auth;
pub mod convert;
pub mod duration;
pub mod errors;
mod cluster;
mod election;
mod kv;
mod lock;
mod recipes;
mod lease;
mod maintenance;
mod watch;
pub mod lenient_authority;
pub mod tls_identity;
pub mod write_coalescing;

pub use auth::AuthService;

pub use cluster::ClusterService;
pub use election::ElectionService;
pub use kv::KvService;
pub use lock::LockService;
pub use lease::{LeaseService, REMAINING_MS_HEADER};
pub use maintenance::MaintenanceService;
pub use watch::WatchService;
pub use tls_identity::ClientCertCn;

/// The generated protobuf types and gRPC stubs.
#[allow(clippy::all, missing_docs)]
pub mod pb {
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
        include!(concat!(env!("OUT_DIR"), "/mvccpb.serde.rs"));
    }
    pub mod authpb {
        tonic::include_proto!("authpb");
        include!(concat!(env!("OUT_DIR"), "/authpb.serde.rs"));
    }
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
        include!(concat!(env!("OUT_DIR"), "/etcdserverpb.serde.rs"));
    }
    pub mod v3lockpb {
        tonic::include_proto!("v3lockpb");
        include!(concat!(env!("OUT_DIR"), "/v3lockpb.serde.rs"));
    }
    pub mod v3electionpb {
        tonic::include_proto!("v3electionpb");
        include!(concat!(env!("OUT_DIR"), "/v3electionpb.serde.rs"));
    }
}

/// gRPC's own allowance for framing above `--max-request-bytes` (etcd allows the same), so a
/// request slightly over the limit gets etcd's "request is too large" rather than a transport
/// error.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Limits of the gRPC services.
#[derive(Debug, Clone, Copy)]
pub struct ServiceLimits {
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--max-watchers-per-stream`.
    pub max_watchers_per_stream: usize,
}

/// Builds the gRPC routes of every etcd v3 service Cairn serves, on `store`.
pub fn routes<S>(store: S, max_request_bytes: usize) -> tonic::service::Routes
where
    S: cairn_api::Kv + cairn_api::Lease + cairn_api::Watch + cairn_api::Cluster + cairn_api::Maintenance + cairn_api::Auth,
{
    routes_with(store, ServiceLimits { max_request_bytes, max_watchers_per_stream: watch::DEFAULT_MAX_WATCHERS_PER_STREAM })
}

/// [`routes`] with every limit given.
pub fn routes_with<S>(store: S, limits: ServiceLimits) -> tonic::service::Routes
where
    S: cairn_api::Kv + cairn_api::Lease + cairn_api::Watch + cairn_api::Cluster + cairn_api::Maintenance + cairn_api::Auth,
{
    use pb::etcdserverpb::auth_server::AuthServer;
    use pb::etcdserverpb::cluster_server::ClusterServer;
    use pb::etcdserverpb::kv_server::KvServer;
    use pb::etcdserverpb::lease_server::LeaseServer;
    use pb::etcdserverpb::watch_server::WatchServer;
    use pb::v3electionpb::election_server::ElectionServer;
    use pb::v3lockpb::lock_server::LockServer;
    use pb::etcdserverpb::maintenance_server::MaintenanceServer;
    let max_request_bytes = limits.max_request_bytes;
    let max = max_request_bytes + GRPC_OVERHEAD_BYTES;
    tonic::service::Routes::new(KvServer::new(KvService::new(store.clone())).max_decoding_message_size(max))
        .add_service(LeaseServer::new(LeaseService::new(store.clone())).max_decoding_message_size(max))
        .add_service(WatchServer::new(WatchService::new(store.clone(), max_request_bytes).with_max_watchers(limits.max_watchers_per_stream)).max_decoding_message_size(max))
        .add_service(LockServer::new(LockService::new(store.clone())).max_decoding_message_size(max))
        .add_service(ElectionServer::new(ElectionService::new(store.clone())).max_decoding_message_size(max))
        .add_service(ClusterServer::new(ClusterService::new(store.clone())).max_decoding_message_size(max))
        .add_service(MaintenanceServer::new(MaintenanceService::new(store.clone())).max_decoding_message_size(max))
        .add_service(AuthServer::new(AuthService::new(store)).max_decoding_message_size(max))
}
