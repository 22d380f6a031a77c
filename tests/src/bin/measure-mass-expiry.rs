//! Mass lease expiry: grants N leases with the same TTL, one key each, and measures how late
//! each key is deleted after its lease's deadline (from DELETE events on a watch), while a
//! writer keeps putting and records its worst put latency. A measurement, not a test.
//!
//! Usage: `cargo run --release -p cairn-tests --bin measure-mass-expiry -- [N]` (default 10000).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_tests::{runtime, Cairn};
use etcd_client::{Client, EventType, PutOptions, Txn, TxnOp, WatchOptions};

const TTL: i64 = 60;

fn main() {
    let n: usize = std::env::args().nth(1).map(|s| s.parse().expect("N is a number")).unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Cairn::start(&dir.path().join("data"));
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::connect([server.url()], None).await.expect("connect");
        let mut deletes = c.watch("exp/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
        let _ = deletes.message().await;
        let clients = 32;
        let mut tasks = Vec::new();
        for t in 0..clients {
            let mut c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut granted = Vec::new();
                for _ in (t..n).step_by(clients) {
                    let id = c.lease_grant(TTL, None).await.expect("grant").id();
                    granted.push((id, Instant::now()));
                }
                granted
            }));
        }
        let mut leases = Vec::new();
        for t in tasks {
            leases.extend(t.await.expect("granter"));
        }
        let spread = leases.iter().map(|l| l.1).max().unwrap() - leases.iter().map(|l| l.1).min().unwrap();
        // One key per lease, attached 100 at a time; key name -> the lease's deadline.
        let mut deadlines = HashMap::new();
        for (chunk_no, chunk) in leases.chunks(100).enumerate() {
            let mut ops = Vec::new();
            for (i, (id, at)) in chunk.iter().enumerate() {
                let key = format!("exp/{:06}", chunk_no * 100 + i);
                deadlines.insert(key.clone(), *at + Duration::from_secs(TTL as u64));
                ops.push(TxnOp::put(key, "v", Some(PutOptions::new().with_lease(*id))));
            }
            c.txn(Txn::new().and_then(ops)).await.expect("attach");
        }

        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let mut c = c.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let (mut worst, mut count) = (Duration::ZERO, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    c.put("writer", count.to_string(), None).await.expect("writer put");
                    worst = worst.max(t.elapsed());
                    count += 1;
                }
                (worst, count)
            })
        };
        let mut lags = Vec::new();
        while lags.len() < n {
            let msg = deletes.message().await.expect("watch").expect("watch open");
            let now = Instant::now();
            for e in msg.events() {
                if e.event_type() == EventType::Delete {
                    let key = e.kv().expect("kv").key_str().expect("utf8").to_string();
                    if let Some(deadline) = deadlines.get(&key) {
                        lags.push(now.saturating_duration_since(*deadline));
                    }
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let (worst, writes) = writer.await.expect("writer");
        lags.sort();
        let pct = |p: f64| lags[((lags.len() as f64 * p) as usize).min(lags.len() - 1)].as_secs_f64();
        println!(
            "n={n} ttl={TTL}s grants_spread_over={:.1}s deletion_after_deadline: p50={:.2}s p99={:.2}s max={:.2}s; writer meanwhile: {writes} puts, worst latency {:.0} ms",
            spread.as_secs_f64(),
            pct(0.5),
            pct(0.99),
            lags.last().unwrap().as_secs_f64(),
            worst.as_secs_f64() * 1000.0
        );
    });
}
