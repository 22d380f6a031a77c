//! Command-line flags with etcd's names and defaults, readable from the environment as
//! `CAIRN_<FLAG>` or, as etcd users have them, `ETCD_<FLAG>`.

use std::path::PathBuf;

use anyhow::bail;
use cairn_raft::NodeConfig;

use crate::tls::TlsFiles;
use clap::Parser;

/// Cairn: a distributed, reliable key-value store that speaks etcd's protocols.
#[derive(Debug, Parser)]
#[command(name = "cairn", version = concat!(env!("CARGO_PKG_VERSION"), " (etcd API 3.5)"))]
pub struct Flags {
    /// Human-readable name for this member.
    #[arg(long, env = "CAIRN_NAME", default_value = "default")]
    pub name: String,

    /// Path to the data directory [default: ${name}.cairn].
    #[arg(long, env = "CAIRN_DATA_DIR")]
    pub data_dir: Option<PathBuf>,

    /// URLs to listen on for client traffic (comma-separated).
    #[arg(long, env = "CAIRN_LISTEN_CLIENT_URLS", value_delimiter = ',', default_value = "http://127.0.0.1:2379")]
    pub listen_client_urls: Vec<String>,

    /// Client URLs of this member as advertised to the cluster [default: the listen URLs].
    #[arg(long, env = "CAIRN_ADVERTISE_CLIENT_URLS", value_delimiter = ',')]
    pub advertise_client_urls: Vec<String>,

    /// Peer URLs of this member as advertised to the cluster.
    #[arg(long, env = "CAIRN_INITIAL_ADVERTISE_PEER_URLS", value_delimiter = ',', default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: Vec<String>,

    /// URLs to listen on for peer traffic (comma-separated).
    #[arg(long, env = "CAIRN_LISTEN_PEER_URLS", value_delimiter = ',', default_value = "http://localhost:2380")]
    pub listen_peer_urls: Vec<String>,

    /// Initial cluster configuration for bootstrapping: name=peerURL,name=peerURL,...
    /// [default: ${name}=${initial-advertise-peer-urls}].
    #[arg(long, env = "CAIRN_INITIAL_CLUSTER")]
    pub initial_cluster: Option<String>,

    /// Initial cluster state: 'new' (bootstrap the members of --initial-cluster) or 'existing'
    /// (join a running cluster this member was added to with `member add`).
    #[arg(long, env = "CAIRN_INITIAL_CLUSTER_STATE", default_value = "new", value_parser = ["new", "existing"])]
    pub initial_cluster_state: String,

    /// Promote a learner to a voting member as soon as it has caught up with the leader (etcd
    /// needs a `member promote` call for that).
    #[arg(long, env = "CAIRN_AUTO_PROMOTE_LEARNERS", default_value_t = false)]
    pub auto_promote_learners: bool,

    /// Backend size (bytes) above which writes are refused with "database space exceeded"
    /// and the NOSPACE alarm is raised; 0 means etcd's default of 2 GiB.
    #[arg(long, env = "CAIRN_QUOTA_BACKEND_BYTES", default_value_t = 0)]
    pub quota_backend_bytes: u64,

    /// Token that makes this cluster's ids differ from other clusters' with the same members.
    #[arg(long, env = "CAIRN_INITIAL_CLUSTER_TOKEN", default_value = "etcd-cluster")]
    pub initial_cluster_token: String,

    /// Largest client request accepted, in bytes.
    #[arg(long, env = "CAIRN_MAX_REQUEST_BYTES", default_value_t = 1536 * 1024)]
    pub max_request_bytes: usize,

    /// Most operations (compares, success ops or failure ops) in one txn.
    #[arg(long, env = "CAIRN_MAX_TXN_OPS", default_value_t = 128)]
    pub max_txn_ops: usize,

    /// Committed entries between two snapshots of the store (after which the log is purged).
    #[arg(long, env = "CAIRN_SNAPSHOT_COUNT", default_value_t = 100_000)]
    pub snapshot_count: u64,

    /// Time (in milliseconds) of a heartbeat interval.
    #[arg(long, env = "CAIRN_HEARTBEAT_INTERVAL", default_value_t = 100)]
    pub heartbeat_interval: u64,

    /// Time (in milliseconds) for an election to time out.
    #[arg(long, env = "CAIRN_ELECTION_TIMEOUT", default_value_t = 1000)]
    pub election_timeout: u64,

    /// How often an idle watcher that asked for progress notifications gets one (e.g. 10m, 5s, 500ms).
    #[arg(long, env = "CAIRN_WATCH_PROGRESS_NOTIFY_INTERVAL", default_value = "10m", value_parser = parse_duration)]
    pub watch_progress_notify_interval: std::time::Duration,

    // ---- TLS and listener limits ----
    /// Path to the client server TLS cert file (PEM; used by https:// client and metrics URLs
    /// and rediss:// RESP URLs).
    #[arg(long, env = "CAIRN_CERT_FILE", help_heading = "Security")]
    pub cert_file: Option<PathBuf>,

    /// Path to the client server TLS key file (PEM).
    #[arg(long, env = "CAIRN_KEY_FILE", help_heading = "Security")]
    pub key_file: Option<PathBuf>,

    /// Path to the client server TLS trusted CA cert file (PEM). As in etcd, setting it makes
    /// the TLS client listeners require a client certificate signed by this CA.
    #[arg(long, env = "CAIRN_TRUSTED_CA_FILE", help_heading = "Security")]
    pub trusted_ca_file: Option<PathBuf>,

    /// Require and verify client certificates (against --trusted-ca-file) on TLS client
    /// listeners; the certificate's CN is the user when authentication is enabled.
    #[arg(long, env = "CAIRN_CLIENT_CERT_AUTH", help_heading = "Security", num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub client_cert_auth: bool,

    /// Path to the peer server TLS cert file (PEM), also presented as the client certificate
    /// when connecting to other members.
    #[arg(long, env = "CAIRN_PEER_CERT_FILE", help_heading = "Security")]
    pub peer_cert_file: Option<PathBuf>,

    /// Path to the peer server TLS key file (PEM).
    #[arg(long, env = "CAIRN_PEER_KEY_FILE", help_heading = "Security")]
    pub peer_key_file: Option<PathBuf>,

    /// Path to the peer server TLS trusted CA file (PEM): other members' certificates must be
    /// signed by it (as server and, like etcd, as client).
    #[arg(long, env = "CAIRN_PEER_TRUSTED_CA_FILE", help_heading = "Security")]
    pub peer_trusted_ca_file: Option<PathBuf>,

    /// Require and verify peer client certificates (against --peer-trusted-ca-file).
    #[arg(long, env = "CAIRN_PEER_CLIENT_CERT_AUTH", help_heading = "Security", num_args = 0..=1, default_missing_value = "true", default_value_t = false, action = clap::ArgAction::Set)]
    pub peer_client_cert_auth: bool,

    /// Maximum concurrent HTTP/2 streams (gRPC calls) per client connection (etcd's flag and
    /// default).
    #[arg(long, env = "CAIRN_MAX_CONCURRENT_STREAMS", default_value_t = u32::MAX)]
    pub max_concurrent_streams: u32,

    /// Most client connections open at once on each client, metrics and RESP listener; further
    /// connections are closed at once and logged.
    #[arg(long, env = "CAIRN_MAX_CLIENT_CONNECTIONS", default_value_t = 10_000)]
    pub max_client_connections: usize,
    // ---- end of TLS and listener limits ----

    /// Addresses for RESP (Redis protocol) clients: redis://host:port, tcp://host:port or
    /// host:port, or rediss://host:port for TLS (comma-separated); "" or "off" turns RESP off.
    #[arg(long, env = "CAIRN_LISTEN_REDIS_URLS", value_delimiter = ',', default_value = "127.0.0.1:6379")]
    pub listen_redis_urls: Vec<String>,

    /// Extra URLs serving only /metrics and /health (http:// or https://host:port, comma-separated), as
    /// etcd's flag; /metrics is on the client URLs too.
    #[arg(long, env = "CAIRN_LISTEN_METRICS_URLS", value_delimiter = ',')]
    pub listen_metrics_urls: Vec<String>,

    /// Log level: debug, info, warn, error.
    #[arg(long, env = "CAIRN_LOG_LEVEL", default_value = "info")]
    pub log_level: String,

    /// Most watchers one watch stream may hold; a create beyond it is canceled with a reason
    /// naming this flag.
    #[arg(long, env = "CAIRN_MAX_WATCHERS_PER_STREAM", default_value_t = 10_000)]
    pub max_watchers_per_stream: usize,

    /// Auth token type: 'simple' (Cairn's simple tokens are signed, so any member accepts
    /// them; JWT is not supported).
    #[arg(long, env = "CAIRN_AUTH_TOKEN", default_value = "simple")]
    pub auth_token: String,

    /// Seconds an auth token stays valid after its last use.
    #[arg(long, env = "CAIRN_AUTH_TOKEN_TTL", default_value_t = 300)]
    pub auth_token_ttl: u64,

    /// bcrypt cost of stored password hashes (4 to 31).
    #[arg(long, env = "CAIRN_BCRYPT_COST", default_value_t = 10, value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,
}

/// Every flag that may come from the environment.
const ENV_FLAGS: &[&str] = &[
    "NAME",
    "DATA_DIR",
    "LISTEN_CLIENT_URLS",
    "LISTEN_METRICS_URLS",
    "ADVERTISE_CLIENT_URLS",
    "INITIAL_ADVERTISE_PEER_URLS",
    "INITIAL_CLUSTER_TOKEN",
    "LISTEN_PEER_URLS",
    "INITIAL_CLUSTER",
    "INITIAL_CLUSTER_STATE",
    "AUTO_PROMOTE_LEARNERS",
    "QUOTA_BACKEND_BYTES",
    "MAX_REQUEST_BYTES",
    "MAX_TXN_OPS",
    "SNAPSHOT_COUNT",
    "CERT_FILE",
    "KEY_FILE",
    "TRUSTED_CA_FILE",
    "CLIENT_CERT_AUTH",
    "PEER_CERT_FILE",
    "PEER_KEY_FILE",
    "PEER_TRUSTED_CA_FILE",
    "PEER_CLIENT_CERT_AUTH",
    "MAX_CONCURRENT_STREAMS",
    "MAX_CLIENT_CONNECTIONS",
    "HEARTBEAT_INTERVAL",
    "ELECTION_TIMEOUT",
    "LOG_LEVEL",
    "WATCH_PROGRESS_NOTIFY_INTERVAL",
    "LISTEN_REDIS_URLS",
    "MAX_WATCHERS_PER_STREAM",
    "AUTH_TOKEN",
    "AUTH_TOKEN_TTL",
    "BCRYPT_COST",
];

/// Parses Go-style durations as etcd's flags take them: `500ms`, `5s`, `10m`, `1h`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (digits, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let n: u64 = digits.parse().map_err(|_| format!("invalid duration {text:?}"))?;
    let ms = match unit {
        "ms" => n,
        "s" | "" => n * 1000,
        "m" => n * 60_000,
        "h" => n * 3_600_000,
        _ => return Err(format!("invalid duration {text:?} (use ms, s, m or h)")),
    };
    if ms < 100 {
        return Err("the interval must be at least 100ms".into());
    }
    Ok(std::time::Duration::from_millis(ms))
}

/// Lets `ETCD_<FLAG>` stand for `CAIRN_<FLAG>` (which wins when both are set). Runs first
/// thing in `main`, before any other thread exists.
pub fn import_etcd_env() {
    for flag in ENV_FLAGS {
        let (ours, etcds) = (format!("CAIRN_{flag}"), format!("ETCD_{flag}"));
        if std::env::var_os(&ours).is_none() {
            if let Some(v) = std::env::var_os(&etcds) {
                std::env::set_var(ours, v);
            }
        }
    }
}

impl Flags {
    pub fn node_config(&self) -> anyhow::Result<NodeConfig> {
        if self.max_request_bytes == 0 {
            bail!("--max-request-bytes must be positive");
        }
        if self.max_txn_ops == 0 {
            bail!("--max-txn-ops must be positive");
        }
        if self.heartbeat_interval == 0 || self.election_timeout < 5 * self.heartbeat_interval {
            bail!("--election-timeout[{}] should be at least 5 times as --heartbeat-interval[{}]", self.election_timeout, self.heartbeat_interval);
        }
        self.check_tls()?;
        if self.auth_token.split(',').next() != Some("simple") {
            bail!("--auth-token {:?} is not supported (only 'simple')", self.auth_token);
        }
        if self.max_watchers_per_stream == 0 {
            bail!("--max-watchers-per-stream must be positive");
        }
        if self.auth_token_ttl == 0 {
            bail!("--auth-token-ttl must be positive");
        }
        let advertise = if self.advertise_client_urls.is_empty() {
            self.listen_client_urls.clone()
        } else {
            self.advertise_client_urls.clone()
        };
        let initial_cluster = match &self.initial_cluster {
            Some(text) => parse_initial_cluster(text)?,
            None => vec![(self.name.clone(), self.initial_advertise_peer_urls.clone())],
        };
        Ok(NodeConfig {
            initial_cluster,
            join_existing: self.initial_cluster_state == "existing",
            auto_promote_learners: self.auto_promote_learners,
            quota_backend_bytes: if self.quota_backend_bytes == 0 {
                cairn_raft::DEFAULT_QUOTA_BACKEND_BYTES
            } else {
                self.quota_backend_bytes
            },
            name: self.name.clone(),
            data_dir: self.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.cairn", self.name))),
            advertise_client_urls: advertise,
            initial_advertise_peer_urls: self.initial_advertise_peer_urls.clone(),
            initial_cluster_token: self.initial_cluster_token.clone(),
            snapshot_count: self.snapshot_count,
            heartbeat_interval_ms: self.heartbeat_interval,
            election_timeout_ms: self.election_timeout,
            max_request_bytes: self.max_request_bytes,
            watch_progress_notify_interval: self.watch_progress_notify_interval,
            limits: cairn_raft::Limits { max_txn_ops: self.max_txn_ops },
            auth_token_ttl: std::time::Duration::from_secs(self.auth_token_ttl),
            bcrypt_cost: self.bcrypt_cost,
        })
    }
}

impl Flags {
    /// The client side's certificate flags.
    pub fn client_tls(&self) -> TlsFiles {
        TlsFiles {
            cert_file: self.cert_file.clone(),
            key_file: self.key_file.clone(),
            trusted_ca_file: self.trusted_ca_file.clone(),
            client_cert_auth: self.client_cert_auth,
        }
    }

    /// The peer side's certificate flags.
    pub fn peer_tls(&self) -> TlsFiles {
        TlsFiles {
            cert_file: self.peer_cert_file.clone(),
            key_file: self.peer_key_file.clone(),
            trusted_ca_file: self.peer_trusted_ca_file.clone(),
            client_cert_auth: self.peer_client_cert_auth,
        }
    }

    /// The TLS flags agree with each other and with the URLs (etcd's start-up errors).
    fn check_tls(&self) -> anyhow::Result<()> {
        if self.max_client_connections == 0 {
            bail!("--max-client-connections must be positive");
        }
        if self.max_concurrent_streams == 0 {
            bail!("--max-concurrent-streams must be positive");
        }
        let client = self.client_tls();
        if client.cert_file.is_some() != client.key_file.is_some() {
            bail!("--cert-file and --key-file must be given together");
        }
        if client.client_cert_auth && client.trusted_ca_file.is_none() {
            bail!("--client-cert-auth requires --trusted-ca-file");
        }
        let client_urls = self.listen_client_urls.iter().chain(&self.listen_metrics_urls);
        let redis_tls = self.listen_redis_urls.iter().filter(|u| u.trim().starts_with("rediss://"));
        if let Some(url) = client_urls.filter(|u| u.starts_with("https://")).chain(redis_tls).next() {
            if !client.has_identity() {
                bail!("TLS key/cert (--cert-file, --key-file) must be provided for client url {url} with HTTPS scheme");
            }
        }
        let peer = self.peer_tls();
        if peer.cert_file.is_some() != peer.key_file.is_some() {
            bail!("--peer-cert-file and --peer-key-file must be given together");
        }
        if peer.client_cert_auth && peer.trusted_ca_file.is_none() {
            bail!("--peer-client-cert-auth requires --peer-trusted-ca-file");
        }
        let cluster_urls: Vec<String> = match &self.initial_cluster {
            Some(text) => parse_initial_cluster(text)?.into_iter().flat_map(|(_, urls)| urls).collect(),
            None => Vec::new(),
        };
        let peer_urls = self.listen_peer_urls.iter().chain(&self.initial_advertise_peer_urls).chain(&cluster_urls);
        if let Some(url) = peer_urls.into_iter().find(|u| u.starts_with("https://")) {
            if !peer.has_identity() || peer.trusted_ca_file.is_none() {
                bail!("TLS key/cert/CA (--peer-cert-file, --peer-key-file, --peer-trusted-ca-file) must be provided for peer url {url} with HTTPS scheme");
            }
        }
        Ok(())
    }
}

/// Parses etcd's `--initial-cluster`: `name=url,name=url`, a name repeated for several URLs.
pub fn parse_initial_cluster(text: &str) -> anyhow::Result<Vec<(String, Vec<String>)>> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((name, url)) = part.split_once('=') else {
            bail!("--initial-cluster: {part:?} is not name=peerURL");
        };
        if name.is_empty() || !(url.starts_with("http://") || url.starts_with("https://")) {
            bail!("--initial-cluster: {part:?} is not name=http://host:port");
        }
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url.to_string()),
            None => out.push((name.to_string(), vec![url.to_string()])),
        }
    }
    if out.is_empty() {
        bail!("--initial-cluster is empty");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parses_like_etcds() {
        let c = parse_initial_cluster("a=http://h1:2380,b=http://h2:2380,a=http://h1:2381").unwrap();
        assert_eq!(
            c,
            vec![
                ("a".to_string(), vec!["http://h1:2380".to_string(), "http://h1:2381".to_string()]),
                ("b".to_string(), vec!["http://h2:2380".to_string()]),
            ]
        );
        assert!(parse_initial_cluster("a").is_err());
        assert!(parse_initial_cluster("a=h1:2380").is_err());
        assert!(parse_initial_cluster("").is_err());
    }
}
