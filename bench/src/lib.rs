//! `cairn bench`: an etcd v3 load generator.
//!
//! No registry ships etcd's own `benchmark` tool, so Cairn carries one. It speaks plain etcd v3
//! gRPC (the generated clients of `cairn-etcd-v3` over raw tonic channels, like etcd's tool over
//! grpc-go), so the same command measures Cairn and etcd alike and the numbers are comparable.
//! It is a library so that the `cairn` server binary can dispatch `cairn bench ...` to it and the
//! separate `cairn-bench` binary is the same code.
//!
//! Workloads: `put`, `range` (linearizable or serializable), `txn-put`, `watch-latency`,
//! `lease-keepalive`. The run is bounded by `--total` requests or a `--duration`; the report
//! (text, or JSON with `--json`) has throughput, latency percentiles and errors.

mod connection;
mod keys;
mod report;
mod run;
mod workloads;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

pub use report::{Latency, Report};

/// Command-line options of `cairn bench`.
#[derive(Parser, Debug, Clone)]
#[command(
    name = "cairn bench",
    about = "etcd v3 load generator: runs a workload against any etcd v3 endpoint (Cairn or etcd)"
)]
pub struct BenchArgs {
    /// Client endpoints (host:port or http://host:port), comma-separated; connections are
    /// spread over them round-robin.
    #[arg(long, value_delimiter = ',', default_value = "127.0.0.1:2379", global = true)]
    pub endpoints: Vec<String>,
    /// Concurrent clients (each has one request in flight at a time).
    #[arg(long, default_value_t = 1, global = true)]
    pub clients: usize,
    /// gRPC connections (HTTP/2) the clients share, round-robin.
    #[arg(long, default_value_t = 1, global = true)]
    pub conns: usize,
    /// Total requests to send (default 10000 unless --duration is given).
    #[arg(long, global = true, conflicts_with = "duration")]
    pub total: Option<u64>,
    /// Run for this long instead of a fixed count (e.g. `10s`, `500ms`, `2m`).
    #[arg(long, global = true, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Key size in bytes.
    #[arg(long, default_value_t = 8, global = true)]
    pub key_size: usize,
    /// Value size in bytes.
    #[arg(long, default_value_t = 256, global = true)]
    pub val_size: usize,
    /// Keys 0, 1, 2, ... in request order (across all clients) instead of random keys.
    #[arg(long, global = true)]
    pub sequential_keys: bool,
    /// Number of distinct random keys (ignored with --sequential-keys).
    #[arg(long, default_value_t = 100_000, global = true)]
    pub key_space: u64,
    /// Print the report as JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
    /// Also write the JSON report to this file.
    #[arg(long, global = true)]
    pub json_file: Option<PathBuf>,
    /// No progress bar (it is drawn only on a terminal anyway).
    #[arg(long, global = true)]
    pub no_progress: bool,
    /// Per-request timeout; a request that takes longer counts as an error.
    #[arg(long, default_value = "10s", global = true, value_parser = parse_duration)]
    pub timeout: Duration,
    #[command(subcommand)]
    pub workload: Workload,
}

/// What each client does in a loop.
#[derive(Subcommand, Debug, Clone)]
pub enum Workload {
    /// Put a key (random or sequential) with a value of --val-size bytes.
    Put,
    /// Range a single key chosen from --prefill keys written before the measurement.
    Range {
        /// l (linearizable) or s (serializable).
        #[arg(long, value_enum, default_value = "l")]
        consistency: Consistency,
        /// Keys written before measuring; each range reads one of them.
        #[arg(long, default_value_t = 1000)]
        prefill: u64,
    },
    /// A transaction with no compares whose success branch puts --ops keys (distinct keys:
    /// consecutive from a random start, or the next --ops sequential keys).
    TxnPut {
        /// Puts per transaction (etcd allows 128 by default). With many, this loads a store fast.
        #[arg(long, default_value_t = 1)]
        ops: u64,
    },
    /// Put keys watched by --streams x --watchers-per-stream watchers; measures put-to-event
    /// latency for every watcher (one sample per watcher per put).
    WatchLatency {
        /// Watch streams (gRPC Watch calls), spread over the connections.
        #[arg(long, default_value_t = 10)]
        streams: usize,
        /// Watchers created on each stream, all on the same key.
        #[arg(long, default_value_t = 10)]
        watchers_per_stream: usize,
        /// Puts per second across all clients (0: as fast as the clients go).
        #[arg(long, default_value_t = 100)]
        put_rate: u64,
    },
    /// Each client grants a lease and sends keepalives on its own LeaseKeepAlive stream;
    /// measures the round trip of each keepalive.
    LeaseKeepalive {
        /// TTL of the granted leases, in seconds.
        #[arg(long, default_value_t = 60)]
        ttl: i64,
    },
}

/// Range consistency.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Consistency {
    /// Linearizable (the default for etcd clients): goes through a read index.
    #[value(name = "l")]
    Linearizable,
    /// Serializable: served from the member's local state.
    #[value(name = "s")]
    Serializable,
}

impl Workload {
    /// The name used in reports.
    pub fn name(&self) -> String {
        match self {
            Workload::Put => "put".into(),
            Workload::Range { consistency: Consistency::Linearizable, .. } => "range-linearizable".into(),
            Workload::Range { consistency: Consistency::Serializable, .. } => "range-serializable".into(),
            Workload::TxnPut { .. } => "txn-put".into(),
            Workload::WatchLatency { .. } => "watch-latency".into(),
            Workload::LeaseKeepalive { .. } => "lease-keepalive".into(),
        }
    }
}

/// Why a benchmark could not run (errors of single requests are counted, not returned).
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("invalid option: {0}")]
    Usage(String),
    #[error("cannot connect to {endpoint}: {source}")]
    Connect { endpoint: String, source: connection::ConnectError },
    #[error("setup failed: {0}")]
    Setup(String),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

/// Parses `10s`, `250ms`, `2m`, `1.5s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = cairn_etcd_v3::duration::parse_duration(s)?;
    if d.is_zero() {
        return Err(format!("duration must be positive: {s:?}"));
    }
    Ok(d)
}

/// Runs a benchmark and returns its report.
pub async fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    run::run(args).await
}

/// Entry point for `cairn bench ARGS...` and `cairn-bench ARGS...`: `args` excludes the program
/// name and the `bench` word.
pub fn main_with(args: Vec<String>) -> ExitCode {
    let argv = std::iter::once("cairn bench".to_string()).chain(args);
    let args = match BenchArgs::try_parse_from(argv) {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cairn bench: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args)) {
        Ok(report) => {
            if args.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            if let Some(path) = &args.json_file {
                if let Err(source) = std::fs::write(path, report.to_json() + "\n") {
                    eprintln!("cairn bench: {}", BenchError::Write { path: path.clone(), source });
                    return ExitCode::FAILURE;
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cairn bench: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5x").is_err());
    }

    #[test]
    fn global_flags_after_the_workload() {
        let a = BenchArgs::try_parse_from(["b", "range", "--consistency", "s", "--clients", "4"]).unwrap();
        assert_eq!(a.clients, 4);
        assert_eq!(a.workload.name(), "range-serializable");
    }
}
