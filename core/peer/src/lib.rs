//! The peer transport: how Cairn members talk to each other on their peer URLs.
//!
//! One gRPC service (HTTP/2, so many messages share a connection) with two calls: `Raft` for
//! openraft's messages (append entries, vote, install snapshot) and `Node` for what followers
//! forward to the leader and for cluster queries ([`cairn_raft::PeerRequest`]). Bodies are
//! postcard-encoded Rust values: both ends are Cairn, so the wire format needs no schema beyond
//! the envelope, which carries the cluster id so a member refuses another cluster's messages.
//!
//! [`client::PeerClients`] is the sending side (openraft's network factory and the core's
//! [`cairn_raft::PeerLink`]); [`server::serve`] is the receiving side.
//!
//! `https://` peer URLs: the sender connects with [`PeerTls`] (verifying the receiver against
//! the peer CA and presenting its own certificate); the receiver is handed connections whose
//! TLS handshake the binary's listener already did (with peer client certificate checks).

pub mod client;
pub mod server;
mod wire;

pub use client::{PeerClients, PeerTls};

/// The generated gRPC stubs.
#[allow(clippy::all, missing_docs)]
pub(crate) mod pb {
    tonic::include_proto!("cairnpeer");
}

/// The largest peer message accepted: a full append-entries batch (64 entries of up to 8 MiB)
/// or a snapshot chunk fits.
pub const MAX_PEER_MESSAGE_BYTES: usize = 600 << 20;
