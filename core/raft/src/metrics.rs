//! What a member reports about itself, under etcd's metric names, types, labels and buckets
//! wherever etcd has a metric for the same thing, so the dashboards and alert rules people
//! already run for etcd work on Cairn unchanged. Cairn's own metrics (prefix `cairn_`) cover
//! what etcd lacks.
//!
//! Everything is recorded through the `metrics` facade: the core never names an exporter or a
//! wire format. The server binary installs a Prometheus recorder, applies [`HISTOGRAM_BUCKETS`]
//! (the facade has no notion of buckets) and calls [`describe`] for the help texts.
//!
//! Counters and histograms are recorded where the thing happens (proposals, fsyncs, applies,
//! leases). Gauges that mirror state (leadership, sizes, revisions) are refreshed by
//! [`observe`], a task that follows openraft's metrics and samples the store once a second.

use std::sync::Weak;
use std::time::Duration;

use cairn_mvcc::layout;
use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, Unit};

use crate::node::Inner;

/// etcd's buckets for disk latencies (WAL fsync, backend commit): 1 ms to 8.192 s, doubling.
const DISK_SECONDS: &[f64] = &[0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192];
/// etcd's buckets for the peer round trip time: 0.1 ms to 819.2 ms, doubling.
const RTT_SECONDS: &[f64] =
    &[0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048, 0.4096, 0.8192];
/// etcd's buckets for defragmentation: 100 ms to 409.6 s, doubling.
const DEFRAG_SECONDS: &[f64] = &[0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 51.2, 102.4, 204.8, 409.6];
/// etcd's buckets for sending a backend snapshot: 10 ms to 655.36 s, doubling.
const SNAPSHOT_SECONDS: &[f64] =
    &[0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92, 163.84, 327.68, 655.36];
/// etcd's buckets for lease TTLs: 1 s to 2^23 s, doubling.
const LEASE_TTL_SECONDS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0, 8192.0, 16384.0, 32768.0, 65536.0,
    131072.0, 262144.0, 524288.0, 1048576.0, 2097152.0, 4194304.0, 8388608.0,
];
/// etcd's buckets for compaction's total duration: 100 ms to 819.2 s, doubling (milliseconds).
const COMPACTION_MS: &[f64] =
    &[100.0, 200.0, 400.0, 800.0, 1600.0, 3200.0, 6400.0, 12800.0, 25600.0, 51200.0, 102400.0, 204800.0, 409600.0, 819200.0];
/// go-grpc-prometheus's default buckets (Prometheus's defaults), which etcd's handling-time
/// histogram uses.
pub const GRPC_HANDLING_SECONDS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];
/// Cairn's request latency buckets: 100 µs to about 13 s, doubling.
pub const REQUEST_SECONDS: &[f64] = &[
    0.0001, 0.0002, 0.0004, 0.0008, 0.0016, 0.0032, 0.0064, 0.0128, 0.0256, 0.0512, 0.1024, 0.2048, 0.4096, 0.8192, 1.6384,
    3.2768, 6.5536, 13.1072,
];

pub const WAL_FSYNC: &str = "etcd_disk_wal_fsync_duration_seconds";
pub const WAL_WRITE_BYTES: &str = "etcd_disk_wal_write_bytes_total";
pub const BACKEND_COMMIT: &str = "etcd_disk_backend_commit_duration_seconds";
pub const DEFRAG_DURATION: &str = "etcd_disk_backend_defrag_duration_seconds";
pub const DEFRAG_INFLIGHT: &str = "etcd_disk_defrag_inflight";
pub const SNAPSHOT_DURATION: &str = "etcd_disk_backend_snapshot_duration_seconds";
pub const PEER_RTT: &str = "etcd_network_peer_round_trip_time_seconds";
pub const PEER_SENT_BYTES: &str = "etcd_network_peer_sent_bytes_total";
pub const PEER_RECEIVED_BYTES: &str = "etcd_network_peer_received_bytes_total";
pub const PEER_SENT_FAILURES: &str = "etcd_network_peer_sent_failures_total";
pub const HEARTBEAT_FAILURES: &str = "etcd_server_heartbeat_send_failures_total";
pub const PROPOSALS_PENDING: &str = "etcd_server_proposals_pending";
pub const PROPOSALS_FAILED: &str = "etcd_server_proposals_failed_total";
pub const SLOW_APPLY: &str = "etcd_server_slow_apply_total";
pub const READ_INDEXES_FAILED: &str = "etcd_server_read_indexes_failed_total";
pub const SLOW_READ_INDEXES: &str = "etcd_server_slow_read_indexes_total";
pub const SNAPSHOT_APPLYING: &str = "etcd_server_snapshot_apply_in_progress_total";
pub const PUT_TOTAL: &str = "etcd_mvcc_put_total";
pub const DELETE_TOTAL: &str = "etcd_mvcc_delete_total";
pub const TXN_TOTAL: &str = "etcd_mvcc_txn_total";
pub const RANGE_TOTAL: &str = "etcd_mvcc_range_total";
pub const EVENTS_TOTAL: &str = "etcd_debugging_mvcc_events_total";
pub const WATCHERS: &str = "etcd_debugging_mvcc_watcher_total";
pub const SLOW_WATCHERS: &str = "etcd_debugging_mvcc_slow_watcher_total";
pub const COMPACTION_DURATION: &str = "etcd_debugging_mvcc_db_compaction_total_duration_milliseconds";
pub const LEASE_GRANTED: &str = "etcd_debugging_lease_granted_total";
pub const LEASE_RENEWED: &str = "etcd_debugging_lease_renewed_total";
pub const LEASE_REVOKED: &str = "etcd_debugging_lease_revoked_total";
pub const LEASE_EXPIRED: &str = "etcd_debugging_server_lease_expired_total";
pub const LEASE_TTL: &str = "etcd_debugging_lease_ttl_total";
pub const LEARNER_PROMOTIONS: &str = "etcd_server_learner_promote_successes";

/// etcd exports each store operation counter twice, under `etcd_mvcc_` and the older
/// `etcd_debugging_mvcc_`; dashboards use either.
///
/// The handles are looked up in the recorder once (on the first count, after the server has
/// installed its recorder): a lookup hashes the name under a lock, and reads and puts count on
/// every request.
pub fn count_op(name: &'static str) {
    static HANDLES: std::sync::OnceLock<Vec<(&'static str, metrics::Counter, Option<metrics::Counter>)>> =
        std::sync::OnceLock::new();
    let handles = HANDLES.get_or_init(|| {
        [PUT_TOTAL, DELETE_TOTAL, TXN_TOTAL, RANGE_TOTAL]
            .into_iter()
            .map(|op| (op, counter!(op), debugging_alias(op).map(|alias| counter!(alias))))
            .collect()
    });
    match handles.iter().find(|(op, _, _)| *op == name) {
        Some((_, counter, alias)) => {
            counter.increment(1);
            if let Some(alias) = alias {
                alias.increment(1);
            }
        }
        None => counter!(name).increment(1),
    }
}

fn debugging_alias(name: &str) -> Option<&'static str> {
    Some(match name {
        PUT_TOTAL => "etcd_debugging_mvcc_put_total",
        DELETE_TOTAL => "etcd_debugging_mvcc_delete_total",
        TXN_TOTAL => "etcd_debugging_mvcc_txn_total",
        RANGE_TOTAL => "etcd_debugging_mvcc_range_total",
        _ => return None,
    })
}

/// Every histogram with its buckets: the exporter must be told, the facade does not carry them.
pub const HISTOGRAM_BUCKETS: &[(&str, &[f64])] = &[
    (WAL_FSYNC, DISK_SECONDS),
    (BACKEND_COMMIT, DISK_SECONDS),
    (DEFRAG_DURATION, DEFRAG_SECONDS),
    (SNAPSHOT_DURATION, SNAPSHOT_SECONDS),
    (PEER_RTT, RTT_SECONDS),
    (LEASE_TTL, LEASE_TTL_SECONDS),
    (COMPACTION_DURATION, COMPACTION_MS),
    ("grpc_server_handling_seconds", GRPC_HANDLING_SECONDS),
    ("cairn_request_duration_seconds", REQUEST_SECONDS),
];

/// Help texts (Prometheus `# HELP`) for every metric the core records.
pub fn describe() {
    describe_gauge!("etcd_server_has_leader", "1 when this member knows a leader, 0 when it does not.");
    describe_gauge!("etcd_server_is_leader", "1 when this member is the leader, 0 otherwise.");
    describe_gauge!("etcd_server_is_learner", "1 when this member is a learner (non-voting), 0 otherwise.");
    describe_counter!("etcd_server_leader_changes_seen_total", "Leader changes this member has seen.");
    describe_gauge!("etcd_server_id", "This member's id in hex, in the server_id label (value 1).");
    describe_gauge!("etcd_server_version", "The etcd API version served, in the server_version label (value 1).");
    describe_gauge!("etcd_cluster_version", "The cluster's etcd API version, in the cluster_version label (value 1).");
    describe_gauge!("etcd_server_quota_backend_bytes", Unit::Bytes, "The backend size above which writes are refused (NOSPACE).");
    describe_gauge!("etcd_server_proposals_committed_total", "The highest Raft log index known committed.");
    describe_gauge!("etcd_server_proposals_applied_total", "The highest Raft log index applied to the store.");
    describe_gauge!(PROPOSALS_PENDING, "Writes waiting to be committed.");
    describe_counter!(PROPOSALS_FAILED, "Writes that could not be committed (no leader, timeout, stopped).");
    describe_counter!(SLOW_APPLY, "Log entries whose apply took longer than 100 ms.");
    describe_counter!(READ_INDEXES_FAILED, "Linearizable reads whose read index could not be obtained.");
    describe_counter!(SLOW_READ_INDEXES, "Read index requests retried because no leader answered in time.");
    describe_counter!(HEARTBEAT_FAILURES, "Append-entries messages (heartbeats included) the leader failed to send.");
    describe_gauge!(SNAPSHOT_APPLYING, "1 while this member installs a snapshot from the leader, 0 otherwise.");
    describe_counter!(LEARNER_PROMOTIONS, "Learners this member promoted to voters while leading.");
    describe_histogram!(WAL_FSYNC, Unit::Seconds, "How long each fsync of the Raft log took.");
    describe_gauge!(WAL_WRITE_BYTES, Unit::Bytes, "Bytes of log entries written to the Raft log.");
    describe_histogram!(BACKEND_COMMIT, Unit::Seconds, "How long each state machine write batch took to commit.");
    describe_histogram!(DEFRAG_DURATION, Unit::Seconds, "How long each defragmentation took.");
    describe_gauge!(DEFRAG_INFLIGHT, "1 while a defragmentation runs, 0 otherwise.");
    describe_histogram!(SNAPSHOT_DURATION, Unit::Seconds, "How long sending a backend snapshot to a client took.");
    describe_histogram!(PEER_RTT, Unit::Seconds, "Round trip time of heartbeats to each peer.");
    describe_counter!(PEER_SENT_BYTES, Unit::Bytes, "Bytes sent to each peer.");
    describe_counter!(PEER_RECEIVED_BYTES, Unit::Bytes, "Bytes received from each peer.");
    describe_counter!(PEER_SENT_FAILURES, "Messages that could not be sent to each peer.");
    describe_gauge!("etcd_network_active_peers", "1 for each peer this member has reached recently.");
    describe_gauge!("etcd_mvcc_db_total_size_in_bytes", Unit::Bytes, "Size of the store on disk.");
    describe_gauge!("etcd_debugging_mvcc_db_total_size_in_bytes", Unit::Bytes, "Size of the store on disk.");
    describe_gauge!("etcd_mvcc_db_total_size_in_use_in_bytes", Unit::Bytes, "Estimated size of the live data in the store.");
    describe_counter!(PUT_TOTAL, "Put requests applied by this member (puts inside a txn count as the txn).");
    describe_counter!(DELETE_TOTAL, "Delete requests applied by this member (deletes inside a txn count as the txn).");
    describe_counter!(TXN_TOTAL, "Transactions served by this member.");
    describe_counter!(RANGE_TOTAL, "Ranges served by this member.");
    for name in [PUT_TOTAL, DELETE_TOTAL, TXN_TOTAL, RANGE_TOTAL] {
        if let Some(alias) = debugging_alias(name) {
            describe_counter!(alias, "The same count as the etcd_mvcc_ metric of the same suffix (etcd exports both).");
        }
    }
    describe_gauge!("etcd_debugging_mvcc_watch_stream_total", "Open gRPC watch streams.");
    describe_gauge!("etcd_debugging_mvcc_keys_total", "Live keys in the store (RocksDB's estimate).");
    describe_gauge!("etcd_debugging_mvcc_current_revision", "The store's current revision.");
    describe_gauge!("etcd_debugging_mvcc_compact_revision", "The revision of the last compaction.");
    describe_counter!(EVENTS_TOTAL, "Watch events sent by this member.");
    describe_gauge!(WATCHERS, "Watchers on this member.");
    describe_gauge!(SLOW_WATCHERS, "Watchers catching up from storage because they fell behind.");
    describe_histogram!(COMPACTION_DURATION, Unit::Milliseconds, "How long each compaction took.");
    describe_counter!(LEASE_GRANTED, "Leases granted.");
    describe_counter!(LEASE_RENEWED, "Lease renewals (keep-alives) applied.");
    describe_counter!(LEASE_REVOKED, "Leases revoked by a client.");
    describe_counter!(LEASE_EXPIRED, "Leases ended because their TTL ran out.");
    describe_histogram!(LEASE_TTL, Unit::Seconds, "The TTLs of granted leases.");
    describe_gauge!("cairn_raft_term", "The current Raft term.");
    describe_gauge!("cairn_raft_log_entries", "Raft log entries kept (not yet purged behind a snapshot).");
    describe_gauge!("cairn_raft_last_log_index", "The index of the last entry in this member's Raft log.");
    describe_gauge!("cairn_raft_snapshot_index", "The log index of the last snapshot.");
    describe_gauge!("cairn_rocksdb_estimate_num_keys", "RocksDB's estimate of the keys in each column family.");
    describe_gauge!("cairn_rocksdb_sst_files_bytes", Unit::Bytes, "Size of each column family's SST files.");
    describe_gauge!("cairn_rocksdb_memtable_bytes", Unit::Bytes, "Size of each column family's memtables.");
    describe_gauge!("cairn_rocksdb_pending_compaction_bytes", Unit::Bytes, "Bytes RocksDB estimates compaction must rewrite, per column family.");
    describe_gauge!("cairn_rocksdb_running_compactions", "Compactions RocksDB is running.");
    describe_gauge!("cairn_rocksdb_running_flushes", "Memtable flushes RocksDB is running.");
    describe_gauge!("cairn_leases", "Leases alive in the store.");
}

/// A decrementing guard for a gauge that counts things in progress.
pub struct InFlight(&'static str);

impl InFlight {
    pub fn new(name: &'static str) -> Self {
        gauge!(name).increment(1.0);
        InFlight(name)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        gauge!(self.0).decrement(1.0);
    }
}

/// The constant gauges: identity, version and quota.
fn publish_identity(inner: &Inner) {
    let id = format!("{:x}", inner.member_id);
    gauge!("etcd_server_id", "server_id" => id).set(1.0);
    gauge!("etcd_server_version", "server_version" => crate::node::ETCD_COMPAT_VERSION).set(1.0);
    let cluster_version = crate::node::ETCD_COMPAT_VERSION.rsplit_once('.').map_or("3.5", |(major_minor, _)| major_minor);
    gauge!("etcd_cluster_version", "cluster_version" => cluster_version).set(1.0);
    gauge!("etcd_server_quota_backend_bytes").set(inner.config.quota_backend_bytes as f64);
    // Counters that dashboards rate() from the start, at 0 until the first event.
    for name in [PROPOSALS_FAILED, SLOW_APPLY, READ_INDEXES_FAILED, SLOW_READ_INDEXES, HEARTBEAT_FAILURES, LEARNER_PROMOTIONS] {
        counter!(name).absolute(0);
    }
    for name in [PUT_TOTAL, DELETE_TOTAL, TXN_TOTAL, RANGE_TOTAL, EVENTS_TOTAL] {
        counter!(name).absolute(0);
        if let Some(alias) = debugging_alias(name) {
            counter!(alias).absolute(0);
        }
    }
    for name in [LEASE_GRANTED, LEASE_RENEWED, LEASE_REVOKED, LEASE_EXPIRED] {
        counter!(name).absolute(0);
    }
    counter!("etcd_server_leader_changes_seen_total").absolute(0);
    for name in [PROPOSALS_PENDING, WATCHERS, SLOW_WATCHERS, DEFRAG_INFLIGHT, SNAPSHOT_APPLYING] {
        gauge!(name).increment(0.0);
    }
}

/// How often the indexes and the quorum check are read from openraft's metrics when nothing
/// else (a new leader, a membership change) prompts it.
const REFRESH: Duration = Duration::from_millis(100);

/// Follows openraft's metrics (leadership as it changes, indexes every [`REFRESH`]) and samples
/// the store's sizes once a second, for as long as the member runs.
///
/// Leadership and membership come from the server metrics, which change only with them; the
/// full metrics change with every entry, and following those cost a task wake-up and a copy of
/// the metrics for each write.
pub(crate) async fn observe(inner: Weak<Inner>) {
    let Some(strong) = inner.upgrade() else { return };
    publish_identity(&strong);
    let raft_metrics = strong.raft.metrics();
    let mut server_metrics = strong.raft.server_metrics();
    let member_id = strong.member_id;
    let election_timeout_ms = strong.config.election_timeout_ms;
    drop(strong);
    let mut leader: Option<u64> = None;
    // When this member, leading, last heard from a quorum (ms since the epoch).
    let mut quorum_ack_at: Option<u128> = None;
    let mut refresh = tokio::time::interval(REFRESH);
    refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sample = tokio::time::interval(Duration::from_secs(1));
    sample.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            changed = server_metrics.changed() => if changed.is_err() { return },
            _ = refresh.tick() => {}
            _ = sample.tick() => {
                let Some(inner) = inner.upgrade() else { return };
                sample_store(&inner);
            }
        }
        let m = raft_metrics.borrow().clone();
        if m.current_leader.is_some() && m.current_leader != leader {
            counter!("etcd_server_leader_changes_seen_total").increment(1);
        }
        leader = m.current_leader;
        let now = now_ms();
        quorum_ack_at = match (leader == Some(member_id), m.millis_since_quorum_ack) {
            (false, _) => None,
            (true, Some(since)) => Some(quorum_ack_at.unwrap_or(0).max(now.saturating_sub(since as u128))),
            (true, None) => quorum_ack_at.or(Some(now)),
        };
        // etcd's leader steps down (check quorum) when it has not heard from a quorum for an
        // election timeout; openraft's stays leader. Report what etcd would: no leader.
        let voters = m.membership_config.membership().voter_ids().count();
        let lost_quorum = voters > 1
            && quorum_ack_at.is_some_and(|at| now.saturating_sub(at) > u128::from(election_timeout_ms));
        let leader_seen = leader.filter(|_| !lost_quorum);
        gauge!("etcd_server_has_leader").set(if leader_seen.is_some() { 1.0 } else { 0.0 });
        gauge!("etcd_server_is_leader").set(if leader_seen == Some(member_id) { 1.0 } else { 0.0 });
        let learner = m.membership_config.membership().learner_ids().any(|id| id == member_id);
        gauge!("etcd_server_is_learner").set(if learner { 1.0 } else { 0.0 });
        let applied = m.last_applied.map_or(0, |l| l.index);
        gauge!("etcd_server_proposals_applied_total").set(applied as f64);
        gauge!("etcd_server_proposals_committed_total").set(committed_index(&m).max(applied) as f64);
        gauge!("cairn_raft_term").set(m.current_term as f64);
        let last = m.last_log_index.unwrap_or(0);
        gauge!("cairn_raft_last_log_index").set(last as f64);
        let purged = m.purged.map_or(0, |l| l.index);
        gauge!("cairn_raft_log_entries").set(last.saturating_sub(purged) as f64);
        gauge!("cairn_raft_snapshot_index").set(m.snapshot.map_or(0, |l| l.index) as f64);
        // A peer is active when the leader has replicated to it (on followers: the leader).
        let mut active = std::collections::BTreeSet::new();
        if let Some(replication) = &m.replication {
            active.extend(replication.iter().filter(|(id, matched)| **id != member_id && matched.is_some()).map(|(id, _)| *id));
        } else if let Some(l) = leader.filter(|l| *l != member_id) {
            active.insert(l);
        }
        for id in m.membership_config.membership().nodes().map(|(id, _)| *id).filter(|id| *id != member_id) {
            let value = if active.contains(&id) { 1.0 } else { 0.0 };
            gauge!("etcd_network_active_peers", "Local" => format!("{member_id:x}"), "Remote" => format!("{id:x}")).set(value);
        }
    }
}

/// On the leader: the highest index a majority of voters hold. Elsewhere: 0 (the caller falls
/// back to the applied index, which a follower only learns once committed).
fn committed_index(m: &openraft::RaftMetrics<u64, crate::types::MemberNode>) -> u64 {
    let Some(replication) = &m.replication else { return 0 };
    let membership = m.membership_config.membership();
    let mut matched: Vec<u64> = membership
        .voter_ids()
        .map(|id| if id == m.id { m.last_log_index.unwrap_or(0) } else { replication.get(&id).copied().flatten().map_or(0, |l| l.index) })
        .collect();
    if matched.is_empty() {
        return 0;
    }
    matched.sort_unstable_by(|a, b| b.cmp(a));
    matched[matched.len() / 2]
}

/// Sizes, revisions and RocksDB's own statistics.
fn sample_store(inner: &Inner) {
    let db = &inner.db;
    let (mut compactions, mut flushes) = (0u64, 0u64);
    for name in layout::COLUMN_FAMILIES {
        let Some(cf) = db.cf_handle(name) else { continue };
        let prop = |p: &str| db.property_int_value_cf(cf, p).ok().flatten().unwrap_or(0);
        let sst = prop("rocksdb.total-sst-files-size");
        let mem = prop("rocksdb.size-all-mem-tables");
        compactions = compactions.max(prop("rocksdb.num-running-compactions"));
        flushes = flushes.max(prop("rocksdb.num-running-flushes"));
        gauge!("cairn_rocksdb_estimate_num_keys", "cf" => name).set(prop("rocksdb.estimate-num-keys") as f64);
        gauge!("cairn_rocksdb_sst_files_bytes", "cf" => name).set(sst as f64);
        gauge!("cairn_rocksdb_memtable_bytes", "cf" => name).set(mem as f64);
        gauge!("cairn_rocksdb_pending_compaction_bytes", "cf" => name).set(prop("rocksdb.estimate-pending-compaction-bytes") as f64);
        if name == layout::CF_KV {
            gauge!("etcd_debugging_mvcc_keys_total").set(prop("rocksdb.estimate-num-keys") as f64);
        }
        if name == layout::CF_LEASES {
            gauge!("cairn_leases").set(prop("rocksdb.estimate-num-keys") as f64);
        }
    }
    // The same sizes `endpoint status` reports and the quota is checked against.
    let (total, in_use) = crate::node::db_sizes(db);
    gauge!("etcd_mvcc_db_total_size_in_bytes").set(total as f64);
    gauge!("etcd_debugging_mvcc_db_total_size_in_bytes").set(total as f64);
    gauge!("etcd_mvcc_db_total_size_in_use_in_bytes").set(in_use as f64);
    gauge!("cairn_rocksdb_running_compactions").set(compactions as f64);
    gauge!("cairn_rocksdb_running_flushes").set(flushes as f64);
    gauge!("etcd_debugging_mvcc_current_revision").set(*inner.hub.subscribe().borrow() as f64);
    gauge!("etcd_debugging_mvcc_compact_revision").set(inner.hub.compact_revision() as f64);
}

fn now_ms() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis())
}
