//! The receiving side: hands Raft's messages to openraft and forwarded requests to the node.

use std::future::Future;

use cairn_raft::{CairnNode, PeerRequest};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::transport::server::Connected;
use tonic::{Request, Response, Status};

use crate::pb::peer_server::{Peer, PeerServer};
use crate::pb::Envelope;
use crate::wire::{decode, encode, RaftMessage, RaftReply};
use crate::MAX_PEER_MESSAGE_BYTES;

struct PeerService {
    node: CairnNode,
}

impl PeerService {
    /// Refuses a message from another cluster (a member given the wrong --initial-cluster,
    /// or a data dir reused across clusters).
    fn check(&self, env: &Envelope) -> Result<(), Status> {
        let ours = self.node.cluster_id();
        if env.cluster_id != 0 && env.cluster_id != ours {
            return Err(Status::failed_precondition(format!(
                "cluster ID mismatch: this member is in cluster {ours:x}, the sender ({:x}) in {:x}",
                env.from, env.cluster_id
            )));
        }
        Ok(())
    }

    fn reply(&self, body: Vec<u8>) -> Response<Envelope> {
        Response::new(Envelope { cluster_id: self.node.cluster_id(), from: self.node.member_id(), body })
    }
}

/// Counts a message's bytes under its sender (etcd's `From` label: the member id in hex).
fn received_from(env: &Envelope) {
    // A member not yet started (asking who the cluster is) has no id to name.
    if env.from == 0 {
        return;
    }
    metrics::counter!(cairn_raft::metrics::PEER_RECEIVED_BYTES, "From" => format!("{:x}", env.from))
        .increment(env.body.len() as u64);
}

#[tonic::async_trait]
impl Peer for PeerService {
    async fn raft(&self, request: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let env = request.into_inner();
        self.check(&env)?;
        received_from(&env);
        let raft = self.node.raft();
        let reply = match decode::<RaftMessage>(&env.body)? {
            RaftMessage::Append(rpc) => RaftReply::Append(raft.append_entries(rpc).await),
            RaftMessage::Vote(rpc) => RaftReply::Vote(raft.vote(rpc).await),
            RaftMessage::Snapshot(rpc) => RaftReply::Snapshot(raft.install_snapshot(rpc).await),
        };
        Ok(self.reply(encode(&reply)?))
    }

    async fn node(&self, request: Request<Envelope>) -> Result<Response<Envelope>, Status> {
        let env = request.into_inner();
        received_from(&env);
        let req = decode::<PeerRequest>(&env.body)?;
        if !matches!(req, PeerRequest::ClusterInfo) {
            self.check(&env)?;
        }
        let answer = self.node.handle_peer(req).await;
        Ok(self.reply(encode(&answer)?))
    }
}

/// Serves the peer protocol for `node` on the connections of `incoming` (plaintext, or TLS
/// streams whose handshake, peer certificate check included, the caller did) until `shutdown`
/// completes.
pub async fn serve<I, IO, IE>(
    incoming: I,
    node: CairnNode,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error>
where
    I: Stream<Item = Result<IO, IE>>,
    IO: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static,
    IE: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let service = PeerServer::new(PeerService { node })
        .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
    tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
}
