//! `/metrics` against real etcd: the metrics etcd's dashboards and alerts query exist on Cairn
//! with etcd's types, label names and histogram buckets; counters count what was done; the
//! metrics-only listener; `/health` and `etcd_server_has_leader` when a member loses its leader.

mod http_client;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use cairn_tests::cluster::{Backend, Cluster};
use cairn_tests::{free_port, runtime, Cairn, RealEtcd};
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use http_client::get;

/// One metric family of the Prometheus text format.
#[derive(Debug, Default)]
struct Family {
    kind: String,
    /// Label names of each sample (histogram `le` left out).
    label_names: BTreeSet<Vec<String>>,
    buckets: BTreeSet<String>,
    samples: Vec<(BTreeMap<String, String>, f64)>,
}

fn parse(text: &str) -> BTreeMap<String, Family> {
    let mut families: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE line");
            families.entry(name.to_string()).or_default().kind = kind.to_string();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let mut map = BTreeMap::new();
        for pair in split_labels(labels) {
            let (k, v) = pair.split_once('=').expect("label");
            map.insert(k.to_string(), v.trim_matches('"').to_string());
        }
        let family_name = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|base| families.get(*base).is_some_and(|f| f.kind == "histogram")))
            .unwrap_or(name);
        let family = families.entry(family_name.to_string()).or_default();
        if let Some(le) = map.remove("le") {
            // etcd writes 1.048576e+06 where Cairn writes 1048576: compare the numbers.
            family.buckets.insert(le.parse::<f64>().map_or(le, |b| b.to_string()));
        }
        family.label_names.insert(map.keys().cloned().collect());
        if name == family_name {
            family.samples.push((map, value.parse().unwrap_or(f64::NAN)));
        }
    }
    families
}

/// `a="x",b="y,z"` into its pairs (commas inside quotes kept).
fn split_labels(s: &str) -> Vec<&str> {
    let (mut out, mut start, mut quoted) = (Vec::new(), 0, false);
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < s.len() {
        out.push(&s[start..]);
    }
    out
}

fn scrape(port: u16) -> BTreeMap<String, Family> {
    let r = get(port, "/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    parse(&r.text())
}

fn value(families: &BTreeMap<String, Family>, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families.get(name)?.samples.iter().find_map(|(l, v)| labels.iter().all(|(k, want)| l.get(*k).map(String::as_str) == Some(*want)).then_some(*v))
}

/// The same small workload on any etcd v3 endpoint: 10 puts, a range, a txn, a lease with a
/// keep-alive, a watch that sees an event, a compaction.
fn workload(url: &str) {
    runtime().block_on(async {
        let mut c = Client::connect([url], None).await.unwrap();
        for i in 0..10 {
            c.put(format!("k{i}"), "v", None).await.unwrap();
        }
        c.get("k1", None).await.unwrap();
        let txn = Txn::new().when([Compare::value("k1", CompareOp::Equal, "v")]).and_then([TxnOp::put("k1", "w", None)]);
        c.txn(txn).await.unwrap();
        let lease = c.lease_grant(30, None).await.unwrap();
        let (mut keeper, mut answers) = c.lease_keep_alive(lease.id()).await.unwrap();
        keeper.keep_alive().await.unwrap();
        answers.message().await.unwrap();
        let mut events = c.watch("k2", None).await.unwrap();
        events.message().await.unwrap(); // the creation
        c.put("k2", "again", None).await.unwrap();
        events.message().await.unwrap();
        let rev = c.get("k2", None).await.unwrap().header().unwrap().revision();
        c.compact(rev - 1, None).await.unwrap();
        // Refused: an error code for grpc_server_handled_total.
        assert!(c.get("k1", Some(etcd_client::GetOptions::new().with_revision(rev + 100))).await.is_err());
    });
}

/// Metrics etcd's own dashboards (the etcd mixin shipped with etcd-server) and alerts query,
/// and that etcd 3.4 exports on a single member.
const MIXIN_METRICS: &[&str] = &[
    "etcd_server_has_leader",
    "etcd_server_leader_changes_seen_total",
    "etcd_server_proposals_failed_total",
    "etcd_server_proposals_pending",
    "etcd_server_proposals_committed_total",
    "etcd_server_proposals_applied_total",
    "etcd_disk_wal_fsync_duration_seconds",
    "etcd_disk_backend_commit_duration_seconds",
    "etcd_mvcc_db_total_size_in_bytes",
    "etcd_network_client_grpc_received_bytes_total",
    "etcd_network_client_grpc_sent_bytes_total",
    "grpc_server_started_total",
    "grpc_server_handled_total",
    "process_resident_memory_bytes",
];

/// Every metric name etcd documents: the list Debian's etcd-server ships
/// (/usr/share/doc/etcd-server/metrics/latest.gz, generated from etcd's registry).
fn etcd_documented_names() -> BTreeSet<String> {
    let out = std::process::Command::new("zcat").arg("/usr/share/doc/etcd-server/metrics/latest.gz").output().expect("zcat");
    assert!(out.status.success(), "etcd-server's metrics list is missing: install Debian's etcd-server");
    let text = String::from_utf8_lossy(&out.stdout);
    let names: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# name: \"")?.strip_suffix('"').map(str::to_string))
        .collect();
    assert!(names.len() > 50, "etcd's metrics list looks truncated");
    names
}

/// etcd-style names Cairn exports that neither a fresh etcd 3.4 nor etcd's documented list
/// carries, each with where it comes from.
const ETCD_NAMES_FROM_ELSEWHERE: &[(&str, &str)] = &[
    ("grpc_server_handling_seconds", "go-grpc-prometheus; etcd exports it with --metrics=extensive"),
    ("etcd_disk_defrag_inflight", "etcd 3.5"),
    ("etcd_network_peer_sent_failures_total", "etcd's rafthttp, exported once a send fails"),
    ("etcd_server_snapshot_apply_in_progress_total", "etcd 3.4 (exported above; listed for older docs)"),
];

#[test]
fn metrics_match_etcds_names_types_labels_and_buckets() {
    let dir = tempfile::tempdir().unwrap();
    let cairn = Cairn::start(&dir.path().join("data"));
    let etcd = RealEtcd::start();
    workload(&cairn.url());
    workload(&etcd.url());
    let ours = scrape(cairn.port);
    let theirs = scrape(etcd.port);
    let documented = etcd_documented_names();

    for name in MIXIN_METRICS {
        assert!(theirs.contains_key(*name), "real etcd lacks {name}: the list is wrong");
        assert!(ours.contains_key(*name), "Cairn lacks {name}, which etcd's dashboards query");
    }
    let mut compared = 0;
    for (name, family) in &ours {
        let etcd_named = name.starts_with("etcd_") || name.starts_with("grpc_");
        match theirs.get(name) {
            Some(reference) => {
                assert_eq!(family.kind, reference.kind, "{name}: type differs from etcd's");
                if family.kind == "histogram" && !family.buckets.is_empty() && !reference.buckets.is_empty() {
                    assert_eq!(family.buckets, reference.buckets, "{name}: buckets differ from etcd's");
                }
                // Every label set Cairn uses is one etcd uses for that metric.
                for labels in &family.label_names {
                    assert!(reference.label_names.contains(labels), "{name}: labels {labels:?}, etcd has {:?}", reference.label_names);
                }
                compared += 1;
            }
            None if etcd_named => {
                // Not on a fresh etcd (exported once something happened, or only in a
                // cluster): it must still be one of etcd's metrics.
                let known = documented.contains(name) || ETCD_NAMES_FROM_ELSEWHERE.iter().any(|(n, _)| n == name);
                assert!(known, "{name} is named like an etcd metric but etcd has no such metric");
            }
            None => assert!(name.starts_with("cairn_") || name.starts_with("process_"), "{name}: neither etcd's nor Cairn's prefix"),
        }
    }
    assert!(compared >= 40, "only {compared} families compared with etcd");

    // Counters count what the workload did (this server saw nothing else).
    let put_ok = [("grpc_service", "etcdserverpb.KV"), ("grpc_method", "Put"), ("grpc_code", "OK")];
    assert_eq!(value(&ours, "grpc_server_handled_total", &put_ok), Some(11.0));
    assert_eq!(value(&theirs, "grpc_server_handled_total", &put_ok), Some(11.0), "the same on etcd");
    let range_out_of_range = [("grpc_method", "Range"), ("grpc_code", "OutOfRange")];
    assert_eq!(value(&ours, "grpc_server_handled_total", &range_out_of_range), Some(1.0));
    assert_eq!(value(&theirs, "grpc_server_handled_total", &range_out_of_range), Some(1.0));
    let started_put = [("grpc_method", "Put"), ("grpc_type", "unary")];
    assert_eq!(value(&ours, "grpc_server_started_total", &started_put), Some(11.0));
    let put_total = value(&ours, "etcd_mvcc_put_total", &[]).unwrap();
    assert!(put_total >= 11.0, "etcd_mvcc_put_total {put_total}");
    assert!(value(&ours, "etcd_debugging_mvcc_txn_total", &[]).unwrap() >= 1.0);
    assert_eq!(value(&ours, "etcd_debugging_lease_granted_total", &[]), Some(1.0));
    assert!(value(&ours, "etcd_debugging_lease_renewed_total", &[]).unwrap() >= 1.0);
    assert!(value(&ours, "etcd_debugging_mvcc_events_total", &[]).unwrap() >= 1.0);
    assert_eq!(value(&ours, "etcd_server_has_leader", &[]), Some(1.0));
    assert_eq!(value(&ours, "etcd_server_is_leader", &[]), Some(1.0));
    assert!(value(&ours, "etcd_mvcc_db_total_size_in_bytes", &[]).unwrap() > 0.0);
    let fsyncs = ours["etcd_disk_wal_fsync_duration_seconds"].buckets.len();
    assert_eq!(fsyncs, 15, "14 bounds and +Inf");
    let text = get(cairn.port, "/metrics").text();
    let fsync_count: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("etcd_disk_wal_fsync_duration_seconds_count "))
        .and_then(|v| v.parse().ok())
        .expect("fsync count");
    assert!(fsync_count >= 11.0, "every acknowledged write was fsynced: {fsync_count}");
}

#[test]
fn requests_are_counted_per_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let cairn = Cairn::start(&dir.path().join("data"));
    let p = cairn.port;
    assert_eq!(http_client::form(p, "PUT", "/v2/keys/a", "value=1").status, 201);
    assert_eq!(http_client::post_json(p, "/v3/kv/range", &serde_json::json!({"key": "YQ=="})).status, 200);
    // A RESP SET and an unknown command.
    use std::io::{Read, Write};
    let mut redis = std::net::TcpStream::connect(cairn.redis_addr()).unwrap();
    redis.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nr\r\n$1\r\n1\r\n*1\r\n$5\r\nNOSUCH\r\n").unwrap();
    let mut buf = vec![0; 256];
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.contains("-ERR") && Instant::now() < deadline {
        let n = redis.read(&mut buf).unwrap();
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    let m = scrape(p);
    let requests = |protocol: &str, command: &str, result: &str| {
        value(&m, "cairn_requests_total", &[("protocol", protocol), ("command", command), ("result", result)])
    };
    assert_eq!(requests("v2", "keys PUT", "ok"), Some(1.0));
    assert_eq!(requests("json", "kv/range", "ok"), Some(1.0));
    assert_eq!(requests("resp", "set", "ok"), Some(1.0));
    assert_eq!(requests("resp", "unknown", "error"), Some(1.0));
    assert!(m["cairn_request_duration_seconds"].buckets.len() > 10);
}

#[test]
fn metrics_listener_serves_metrics_and_health_only() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let cairn = Cairn::start_with(&dir.path().join("data"), &["--listen-metrics-urls", &url]);
    let m = scrape(port);
    assert_eq!(value(&m, "etcd_server_has_leader", &[]), Some(1.0));
    let health = get(port, "/health");
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["health"], "true");
    assert_eq!(get(port, "/v2/keys/").status, 404, "the metrics listener serves no client API");
    assert_eq!(get(cairn.port, "/metrics").status, 200, "the client URLs serve /metrics too");
    // /health counted itself.
    assert_eq!(value(&scrape(port), "etcd_server_health_success", &[]), Some(1.0));
}

/// On Cairn and on real etcd: peer traffic is labelled by member, and a member that loses its
/// quorum (here: the leader, cut off from both followers) reports no leader, in /health and
/// in etcd_server_has_leader.
#[test]
fn peer_metrics_and_health_without_a_leader_match_etcd() {
    for backend in [Backend::Cairn, Backend::Etcd] {
        let mut cluster = Cluster::start(backend, 3);
        let port = |c: &Cluster, i: usize| -> u16 { c.url(i).rsplit(':').next().unwrap().parse().unwrap() };
        workload(&cluster.url(0));
        // The leader talks to every other member.
        let leader = cluster.leader();
        let m = scrape(port(&cluster, leader));
        for (name, label) in [("etcd_network_peer_sent_bytes_total", "To"), ("etcd_network_peer_received_bytes_total", "From")] {
            let family = m.get(name).unwrap_or_else(|| panic!("{backend:?}: no {name}"));
            // etcd counts the keep-alive frames of an idle peer stream (a message with no
            // sender) under member "0"; they are no member's traffic.
            let peers: BTreeSet<&String> = family
                .samples
                .iter()
                .filter_map(|(l, v)| (*v > 0.0).then(|| l.get(label)).flatten())
                .filter(|member| member.as_str() != "0")
                .collect();
            assert_eq!(peers.len(), 2, "{backend:?}: {name} by {label}: {:?}", family.samples);
        }
        assert_eq!(value(&m, "etcd_server_has_leader", &[]), Some(1.0), "{backend:?}");
        assert_eq!(value(&m, "etcd_server_is_leader", &[]), Some(1.0), "{backend:?}");
        let leaders: f64 = (0..3).map(|i| value(&scrape(port(&cluster, i)), "etcd_server_is_leader", &[]).unwrap()).sum();
        assert_eq!(leaders, 1.0, "{backend:?}: exactly one member says it leads");

        // The leader survives: etcd's steps down once it has not heard from a quorum for an
        // election timeout (check quorum), and Cairn's must report the same.
        let survivor = leader;
        for i in (0..3).filter(|i| *i != survivor) {
            cluster.kill9(i);
        }
        let p0 = port(&cluster, survivor);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let health = get(p0, "/health");
            let has_leader = value(&scrape(p0), "etcd_server_has_leader", &[]);
            if health.status == 503 && has_leader == Some(0.0) {
                assert_eq!(health.json()["health"], "false", "{backend:?}");
                break;
            }
            assert!(Instant::now() < deadline, "{backend:?}: /health {} {} and has_leader {has_leader:?}", health.status, health.text());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
