//! Cairn's protocol-neutral core API.
//!
//! Every front door (etcd v3 gRPC, the JSON gateway, etcd v2, RESP) is translated into these
//! types, which carry etcd v3 semantics because v3 is the richest of the three: revisions,
//! create/mod revisions, versions, leases, compare-and-swap transactions. Nothing here knows
//! about gRPC, HTTP, RESP, Raft or RocksDB, so the adapters can depend on this crate alone.

mod auth;
mod error;
mod kv;
mod lease;
mod cluster;
mod service;
mod watch;

pub use auth::*;
pub use cluster::*;
pub use error::StoreError;
pub use kv::*;
pub use lease::*;
pub use service::*;
pub use watch::*;
