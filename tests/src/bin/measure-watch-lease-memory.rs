//! Memory per idle watcher and per lease, Cairn beside real etcd under the same load: starts
//! each server, opens N watchers (1,000 per gRPC stream, on distinct keys), then grants N
//! leases, and reads the server's RSS after each step. A measurement, not a test.
//!
//! Usage: `cargo run --release -p cairn-tests --bin measure-watch-lease-memory -- [N]` (default
//! 100000). Needs `etcd` on PATH (or ETCD_BIN).

use std::time::{Duration, Instant};

use cairn_tests::{rss_bytes, runtime, Cairn, RealEtcd};
use etcd_client::{Client, WatchOptions};

const PER_STREAM: usize = 1000;

async fn load(url: &str, pid: u32, n: usize) -> (u64, u64, u64, Duration, Duration) {
    let mut c = Client::connect([url], None).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = rss_bytes(pid);
    let started = Instant::now();
    let mut streams = Vec::new();
    let mut made = 0;
    while made < n {
        let mut s = c.watch(format!("w/{made:08}"), None).await.expect("watch");
        let _ = s.message().await;
        made += 1;
        let batch = PER_STREAM.min(n - made + 1) - 1;
        for _ in 0..batch {
            s.watch(format!("w/{made:08}"), Some(WatchOptions::new())).await.expect("watch");
            made += 1;
        }
        // Wait for the created acks so the watchers exist before measuring.
        for _ in 0..batch {
            let _ = s.message().await;
        }
        streams.push(s);
    }
    let watch_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_watchers = rss_bytes(pid);

    let started = Instant::now();
    let clients = 32;
    let mut tasks = Vec::new();
    for t in 0..clients {
        let mut c = c.clone();
        tasks.push(tokio::spawn(async move {
            for _ in (t..n).step_by(clients) {
                c.lease_grant(3600, None).await.expect("grant");
            }
        }));
    }
    for t in tasks {
        t.await.expect("granter");
    }
    let lease_time = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let with_leases = rss_bytes(pid);
    drop(streams);
    (base, with_watchers, with_leases, watch_time, lease_time)
}

fn main() {
    let n: usize = std::env::args().nth(1).map(|s| s.parse().expect("N is a number")).unwrap_or(100_000);
    let rt = runtime();
    let mut rows = Vec::new();
    {
        let etcd = RealEtcd::start();
        rows.push(("etcd 3.4", rt.block_on(load(&etcd.url(), etcd.pid(), n))));
    }
    {
        let dir = tempfile::tempdir().expect("temp dir");
        let cairn = Cairn::start(&dir.path().join("data"));
        rows.push(("cairn", rt.block_on(load(&cairn.url(), cairn.pid().expect("running"), n))));
    }
    println!("n={n}");
    println!("| server | base RSS | per idle watcher | per lease | {n} watchers took | {n} leases took |");
    println!("|---|---|---|---|---|---|");
    for (name, (base, w, l, wt, lt)) in rows {
        println!(
            "| {name} | {:.1} MiB | {} B | {} B | {:.1} s | {:.1} s |",
            base as f64 / (1 << 20) as f64,
            w.saturating_sub(base) / n as u64,
            l.saturating_sub(w) / n as u64,
            wt.as_secs_f64(),
            lt.as_secs_f64()
        );
    }
}
