//! `cairn snapshot restore FILE ...`: builds a new member's data dir from a snapshot file
//! (what `etcdctl snapshot save` writes from a Cairn member), like `etcdutl snapshot restore`.

use std::path::PathBuf;

use clap::Parser;

/// Restores a snapshot into a new data dir, for a member of a new cluster.
#[derive(Debug, Parser)]
#[command(name = "cairn snapshot restore")]
pub struct RestoreFlags {
    /// The snapshot file (from `etcdctl snapshot save` against a Cairn member).
    pub file: PathBuf,

    /// Human-readable name of the member being restored.
    #[arg(long, default_value = "default")]
    pub name: String,

    /// Path to the new data directory [default: ${name}.cairn].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,

    /// The new cluster: name=peerURL,... [default: ${name}=${initial-advertise-peer-urls}].
    #[arg(long)]
    pub initial_cluster: Option<String>,

    /// The new cluster's token.
    #[arg(long, default_value = "etcd-cluster")]
    pub initial_cluster_token: String,

    /// This member's peer URLs.
    #[arg(long, value_delimiter = ',', default_value = "http://localhost:2380")]
    pub initial_advertise_peer_urls: Vec<String>,

    /// How far to move the revision forward, so that no revision of the old cluster is reused
    /// for a different change (watchers resuming from an old revision are not confused).
    #[arg(long, default_value_t = 1_000_000)]
    pub bump_revision: i64,

    /// Also mark every revision up to the new one compacted: a watcher that resumes from an
    /// old revision is told its history is gone. Pass `--mark-compacted=false` to keep them
    /// readable.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub mark_compacted: bool,
}

/// Runs `cairn snapshot restore` with `args` (what follows `snapshot`).
pub fn run(args: Vec<String>) -> std::process::ExitCode {
    use std::process::ExitCode;
    if args.first().map(String::as_str) != Some("restore") {
        eprintln!("cairn snapshot: the only subcommand is `restore` (see `cairn snapshot restore --help`)");
        return ExitCode::FAILURE;
    }
    let flags = RestoreFlags::parse_from(std::iter::once("cairn snapshot restore".to_string()).chain(args.into_iter().skip(1)));
    let initial_cluster = match &flags.initial_cluster {
        Some(text) => match crate::config::parse_initial_cluster(text) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("cairn: {e:#}");
                return ExitCode::FAILURE;
            }
        },
        None => vec![(flags.name.clone(), flags.initial_advertise_peer_urls.clone())],
    };
    let data_dir = flags.data_dir.clone().unwrap_or_else(|| PathBuf::from(format!("{}.cairn", flags.name)));
    let opts = cairn_raft::restore::RestoreOptions {
        snapshot_file: &flags.file,
        data_dir: &data_dir,
        name: &flags.name,
        initial_cluster: &initial_cluster,
        initial_cluster_token: &flags.initial_cluster_token,
        bump_revision: flags.bump_revision,
        mark_compacted: flags.mark_compacted,
    };
    match cairn_raft::restore::restore(&opts) {
        Ok(revision) => {
            println!("restored snapshot {} into {} (revision {revision})", flags.file.display(), data_dir.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cairn: {e}");
            ExitCode::FAILURE
        }
    }
}
