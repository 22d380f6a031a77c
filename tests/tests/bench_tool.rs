//! `cairn bench` against a real cairn: every workload runs a few hundred requests and reports
//! them in the JSON shape the comparison script reads. Counts and shape only: benchmarks are
//! not tests, so no timing is asserted.

use std::process::Command;

use cairn_tests::{cairn_bin, runtime, Cairn};
use serde_json::Value;

fn bench(server: &Cairn, args: &[&str]) -> Value {
    let endpoint = format!("127.0.0.1:{}", server.port);
    let out = Command::new(cairn_bin())
        .args(["bench", "--endpoints", &endpoint, "--json", "--no-progress"])
        .args(args)
        .output()
        .expect("run cairn bench");
    assert!(out.status.success(), "cairn bench {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout))
    })
}

fn assert_shape(r: &Value, workload: &str, requests: u64) {
    assert_eq!(r["workload"], workload, "{r}");
    assert_eq!(r["errors"], 0, "{r}");
    assert_eq!(r["requests"], requests, "{r}");
    assert!(r["throughput"].as_f64().unwrap() > 0.0, "{r}");
    let l = &r["latency_ms"];
    for q in ["min", "mean", "p50", "p90", "p99", "p99_9", "max"] {
        assert!(l[q].as_f64().unwrap() > 0.0, "latency {q} missing: {r}");
    }
    assert!(l["p50"].as_f64() <= l["p99"].as_f64() && l["p99"].as_f64() <= l["max"].as_f64(), "{r}");
}

#[test]
fn every_workload_counts_its_requests() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));

    let put = bench(&server, &["--clients", "4", "--conns", "2", "--total", "300", "--sequential-keys", "put"]);
    assert_shape(&put, "put", 300);
    assert_eq!((put["clients"].as_u64(), put["conns"].as_u64()), (Some(4), Some(2)));
    assert_eq!((put["key_size"].as_u64(), put["val_size"].as_u64()), (Some(8), Some(256)));

    // Sequential keys 0..300 were written: the store holds exactly those, 8 bytes each.
    runtime().block_on(async {
        let mut c = etcd_client::Client::connect([server.url()], None).await.unwrap();
        let all = c.get("", Some(etcd_client::GetOptions::new().with_from_key().with_count_only())).await.unwrap();
        assert_eq!(all.count(), 300);
        let first = c.get("00000000", None).await.unwrap();
        assert_eq!(first.kvs()[0].value().len(), 256);
        assert!(c.get("00000299", None).await.unwrap().count() == 1);
    });

    let lin = bench(&server, &["--clients", "3", "--total", "200", "range", "--consistency", "l", "--prefill", "20"]);
    assert_shape(&lin, "range-linearizable", 200);
    let ser = bench(&server, &["--clients", "3", "--total", "200", "range", "--consistency", "s"]);
    assert_shape(&ser, "range-serializable", 200);
    let txn = bench(&server, &["--clients", "2", "--total", "100", "--key-size", "16", "--val-size", "10", "txn-put"]);
    assert_shape(&txn, "txn-put", 100);
    // 10 transactions of 7 sequential puts write keys 0..70 again (they exist from the put run).
    let txn = bench(&server, &["--clients", "2", "--total", "10", "--sequential-keys", "txn-put", "--ops", "7"]);
    assert_shape(&txn, "txn-put", 10);
    let lease = bench(&server, &["--clients", "2", "--total", "100", "lease-keepalive"]);
    assert_shape(&lease, "lease-keepalive", 100);
    // 50 puts seen by 2 streams x 3 watchers: one sample per watcher per put.
    let watch = bench(&server, &[
        "--clients", "2", "--total", "50", "watch-latency", "--streams", "2", "--watchers-per-stream", "3",
        "--put-rate", "0",
    ]);
    assert_shape(&watch, "watch-latency", 300);
}

#[test]
fn a_duration_bounds_the_run_and_an_unreachable_endpoint_fails() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let r = bench(&server, &["--clients", "2", "--duration", "300ms", "put"]);
    assert_eq!(r["errors"], 0, "{r}");
    assert!(r["requests"].as_u64().unwrap() > 0, "{r}");

    let port = cairn_tests::free_port();
    let out = Command::new(cairn_bin())
        .args(["bench", "--endpoints", &format!("127.0.0.1:{port}"), "--total", "1", "--no-progress", "put"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot connect"), "{out:?}");
}
