//! Mass lease expiry: grants N leases with the same TTL, one key each, lets them all expire
//! together, and measures how long after the deadline the last key is gone, while a writer
//! keeps putting and records its worst put latency. A measurement, not a test.
//!
//! Usage: `cargo run --release -p cairn-tests --bin measure-mass-expiry -- [N]` (default 10000).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cairn_tests::{runtime, Cairn};
use etcd_client::{Client, GetOptions, PutOptions};

const TTL: i64 = 120;

fn main() {
    let n: usize = std::env::args().nth(1).map(|s| s.parse().expect("N is a number")).unwrap_or(10_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Cairn::start(&dir.path().join("data"));
    let rt = runtime();
    rt.block_on(async {
        let c = Client::connect([server.url()], None).await.expect("connect");
        let granted = Instant::now();
        let clients = 32;
        let mut tasks = Vec::new();
        for t in 0..clients {
            let mut c = c.clone();
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for _ in (t..n).step_by(clients) {
                    ids.push(c.lease_grant(TTL, None).await.expect("grant").id());
                }
                ids
            }));
        }
        let mut ids = Vec::new();
        for t in tasks {
            ids.extend(t.await.expect("granter"));
        }
        // One key per lease, attached 100 at a time.
        let mut c3 = c.clone();
        for (chunk_no, chunk) in ids.chunks(100).enumerate() {
            let ops: Vec<etcd_client::TxnOp> = chunk
                .iter()
                .enumerate()
                .map(|(i, id)| etcd_client::TxnOp::put(format!("exp/{:06}", chunk_no * 100 + i), "v", Some(PutOptions::new().with_lease(*id))))
                .collect();
            c3.txn(etcd_client::Txn::new().and_then(ops)).await.expect("attach");
        }
        let setup = granted.elapsed();
        assert!(setup < Duration::from_secs(TTL as u64), "setup took {setup:?}, longer than the TTL: use a smaller N");
        // The last lease was granted at the latest `setup` after `granted`.
        let last_deadline = granted + setup + Duration::from_secs(TTL as u64);

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
        let mut c2 = c.clone();
        loop {
            let left = c2.get("exp/", Some(GetOptions::new().with_prefix().with_count_only())).await.expect("count").count();
            if left == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let gone = Instant::now();
        stop.store(true, Ordering::Relaxed);
        let (worst, writes) = writer.await.expect("writer");
        let after_deadline = gone.saturating_duration_since(last_deadline);
        println!(
            "n={n} ttl={TTL}s setup={:.1}s all_keys_gone={:.2}s_after_the_last_deadline writer: {writes} puts, worst latency {:.1} ms",
            setup.as_secs_f64(),
            after_deadline.as_secs_f64(),
            worst.as_secs_f64() * 1000.0
        );
    });
}
