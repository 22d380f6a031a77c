//! The sending side: one lazily connected HTTP/2 channel per peer URL, shared by openraft's
//! replication streams and by forwarded requests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_api::{StoreError, StoreResult};
use cairn_raft::{MemberNode, PeerLink, PeerRequest, PeerResponse, TypeConfig};
use futures::future::BoxFuture;
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::pb::peer_client::PeerClient;
use crate::pb::Envelope;
use crate::wire::{address_of, decode, encode, RaftMessage, RaftReply};
use crate::MAX_PEER_MESSAGE_BYTES;

/// How long a forwarded request may take (a write waits for a commit, a read for a quorum).
const FORWARD_TIMEOUT: Duration = Duration::from_secs(10);

/// What a member presents and trusts when it connects to `https://` peer URLs
/// (`--peer-cert-file`, `--peer-key-file`, `--peer-trusted-ca-file`), all PEM.
#[derive(Clone, Debug)]
pub struct PeerTls {
    /// The CA that signed the other members' certificates.
    pub ca_pem: Vec<u8>,
    /// This member's certificate (chain), presented as its client certificate.
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Connections to the other members; cheap to clone.
#[derive(Clone, Default)]
pub struct PeerClients {
    channels: Arc<Mutex<HashMap<String, PeerClient<Channel>>>>,
    /// How to reach `https://` peer URLs; `None` when the member has no peer certificates.
    tls: Option<Arc<ClientTlsConfig>>,
    /// This member's cluster and member id, stamped on every message once known.
    cluster_id: Arc<AtomicU64>,
    member_id: Arc<AtomicU64>,
}

impl PeerClients {
    pub fn new() -> Self {
        Self::default()
    }

    /// Like [`PeerClients::new`], reaching `https://` peer URLs with `tls`: the other member's
    /// certificate must be signed by `tls.ca_pem` (and name the URL's host), and this member
    /// presents its own certificate for the other side to verify.
    pub fn with_tls(tls: Option<PeerTls>) -> Self {
        let tls = tls.map(|t| {
            Arc::new(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(t.ca_pem))
                    .identity(Identity::from_pem(t.cert_pem, t.key_pem)),
            )
        });
        PeerClients { tls, ..Self::default() }
    }

    /// Records who is sending, once the member knows its ids.
    pub fn set_identity(&self, cluster_id: u64, member_id: u64) {
        self.cluster_id.store(cluster_id, Ordering::Relaxed);
        self.member_id.store(member_id, Ordering::Relaxed);
    }

    fn client(&self, url: &str) -> Result<PeerClient<Channel>, String> {
        let mut channels = self.channels.lock().expect("peer channel map");
        if let Some(c) = channels.get(url) {
            return Ok(c.clone());
        }
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("bad peer URL {url}: {e}"))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let endpoint = if url.starts_with("https://") {
            let tls = self.tls.as_deref().ok_or_else(|| {
                format!("cannot reach {url}: https:// peer URLs need --peer-cert-file, --peer-key-file and --peer-trusted-ca-file")
            })?;
            endpoint.tls_config(tls.clone()).map_err(|e| format!("TLS for peer URL {url}: {e}"))?
        } else {
            endpoint
        };
        let client = PeerClient::new(endpoint.connect_lazy())
            .max_decoding_message_size(MAX_PEER_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_PEER_MESSAGE_BYTES);
        channels.insert(url.to_string(), client.clone());
        Ok(client)
    }

    fn envelope(&self, body: Vec<u8>) -> Envelope {
        Envelope {
            cluster_id: self.cluster_id.load(Ordering::Relaxed),
            from: self.member_id.load(Ordering::Relaxed),
            body,
        }
    }
}

impl PeerLink for PeerClients {
    fn call(&self, target: &MemberNode, req: PeerRequest) -> BoxFuture<'static, StoreResult<PeerResponse>> {
        let this = self.clone();
        let url = address_of(target).map(str::to_string);
        Box::pin(async move {
            let url = url.ok_or(StoreError::NoLeader)?;
            let mut client = this.client(&url).map_err(StoreError::Internal)?;
            let body = encode(&req).map_err(|s| StoreError::Internal(s.message().to_string()))?;
            let mut request = tonic::Request::new(this.envelope(body));
            request.set_timeout(FORWARD_TIMEOUT);
            match client.node(request).await {
                Ok(reply) => decode::<StoreResult<PeerResponse>>(&reply.into_inner().body)
                    .map_err(|s| StoreError::Internal(s.message().to_string()))?,
                Err(status) => {
                    tracing::debug!("peer call to {url} failed: {status}");
                    // A refused connection sent nothing; anything else may have arrived.
                    Err(match status.code() {
                        tonic::Code::Unavailable => StoreError::NoLeader,
                        _ => StoreError::Timeout,
                    })
                }
            }
        })
    }
}

impl RaftNetworkFactory<TypeConfig> for PeerClients {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: u64, node: &MemberNode) -> PeerConnection {
        let client = address_of(node).map(|url| self.client(url));
        PeerConnection { clients: self.clone(), target, client }
    }
}

/// openraft's connection to one member.
pub struct PeerConnection {
    clients: PeerClients,
    target: u64,
    client: Option<Result<PeerClient<Channel>, String>>,
}

impl PeerConnection {
    async fn send<E: std::error::Error>(
        &mut self,
        msg: RaftMessage,
        option: &RPCOption,
    ) -> Result<RaftReply, RPCError<u64, MemberNode, E>> {
        let client = match &self.client {
            Some(Ok(c)) => c.clone(),
            Some(Err(e)) => return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e.clone())))),
            None => {
                return Err(RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
                    "member {:x} has no peer URL",
                    self.target
                )))))
            }
        };
        let body = encode(&msg).map_err(|s| RPCError::Network(NetworkError::new(&std::io::Error::other(s.message().to_string()))))?;
        let to = format!("{:x}", self.target);
        metrics::counter!(cairn_raft::metrics::PEER_SENT_BYTES, "To" => to.clone()).increment(body.len() as u64);
        let append = matches!(&msg, RaftMessage::Append(_));
        let heartbeat = matches!(&msg, RaftMessage::Append(a) if a.entries.is_empty());
        let mut request = tonic::Request::new(self.clients.envelope(body));
        request.set_timeout(option.hard_ttl());
        let mut client = client;
        let started = std::time::Instant::now();
        let result = client.raft(request).await;
        match &result {
            // An empty append is a heartbeat: its round trip measures the network, not the disk.
            Ok(_) if heartbeat => {
                metrics::histogram!(cairn_raft::metrics::PEER_RTT, "To" => to).record(started.elapsed().as_secs_f64());
            }
            Ok(_) => {}
            Err(_) => {
                metrics::counter!(cairn_raft::metrics::PEER_SENT_FAILURES, "To" => to).increment(1);
                if append {
                    metrics::counter!(cairn_raft::metrics::HEARTBEAT_FAILURES).increment(1);
                }
            }
        }
        match result {
            Ok(reply) => {
                let reply = reply.into_inner();
                metrics::counter!(cairn_raft::metrics::PEER_RECEIVED_BYTES, "From" => format!("{:x}", self.target))
                    .increment(reply.body.len() as u64);
                decode::<RaftReply>(&reply.body)
                    .map_err(|s| RPCError::Network(NetworkError::new(&std::io::Error::other(s.message().to_string()))))
            }
            Err(status) => {
                let err = std::io::Error::other(status.to_string());
                Err(match status.code() {
                    tonic::Code::Unavailable => RPCError::Unreachable(Unreachable::new(&err)),
                    _ => RPCError::Network(NetworkError::new(&err)),
                })
            }
        }
    }
}

fn remote<E: std::error::Error>(target: u64, e: RaftError<u64, E>) -> RPCError<u64, MemberNode, RaftError<u64, E>> {
    RPCError::RemoteError(RemoteError::new(target, e))
}

fn unexpected<E: std::error::Error>() -> RPCError<u64, MemberNode, E> {
    RPCError::Network(NetworkError::new(&std::io::Error::other("unexpected reply kind")))
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        match self.send(RaftMessage::Append(rpc), &option).await? {
            RaftReply::Append(r) => r.map_err(|e| remote(self.target, e)),
            _ => Err(unexpected()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, MemberNode, RaftError<u64, InstallSnapshotError>>> {
        match self.send(RaftMessage::Snapshot(rpc), &option).await? {
            RaftReply::Snapshot(r) => r.map_err(|e| remote(self.target, e)),
            _ => Err(unexpected()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, MemberNode, RaftError<u64>>> {
        match self.send(RaftMessage::Vote(rpc), &option).await? {
            RaftReply::Vote(r) => r.map_err(|e| remote(self.target, e)),
            _ => Err(unexpected()),
        }
    }
}
