//! Cairn's consensus layer: openraft wired to the log store (its own segment files) and the
//! MVCC state machine (RocksDB), and [`CairnNode`], the one handle every protocol adapter calls.
//!
//! A write is proposed as a [`cairn_mvcc::WriteCommand`] log entry; the log store makes it
//! durable (fsynced, with concurrent appends sharing one fsync) before openraft commits it; the
//! state machine applies it to the MVCC store in a write batch that also records the applied log
//! id, and the outcome travels back to the caller. Linearizable reads wait for a read index;
//! serializable reads go straight to the local store.

mod auth;
mod direct_answers;
mod ids;
mod lease_renewals;
mod log_files;
mod log_store;
pub mod metrics;
mod network;
mod node;
pub mod peer;
mod proposal_slot;
mod read_rounds;
pub mod restore;
mod snapshot;
mod state_machine;
mod types;
mod watch_hub;

pub use ids::{cluster_id_for, member_id_for};
pub use log_store::LogStore;
pub use cairn_mvcc::Limits;
pub use node::{CairnNode, NodeConfig, OpenError, DEFAULT_QUOTA_BACKEND_BYTES};
pub use state_machine::StateMachine;
pub use peer::{MemberInfo, MembershipChange, NoLink, PeerLink, PeerRequest, PeerResponse};
pub use types::{Batch, BatchResponse, CommandResponse, MemberNode, TypeConfig};
