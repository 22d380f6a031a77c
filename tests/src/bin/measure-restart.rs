//! Measures how long a cairn member holding many keys takes to restart: loads N keys (txns of
//! 100 puts from 16 concurrent clients), stops the member with SIGTERM, starts it again and
//! times until a linearizable read of the last key answers. A measurement, not a test.
//!
//! Usage: `cargo run --release -p cairn-tests --bin measure-restart -- [KEYS]` (default 1000000).

use std::time::{Duration, Instant};

use cairn_tests::{free_port, runtime, Cairn};
use etcd_client::{Client, Txn, TxnOp};

fn main() {
    let keys: usize = std::env::args().nth(1).map(|s| s.parse().expect("KEYS is a number")).unwrap_or(1_000_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let mut server = Cairn::start(&data);
    let rt = runtime();
    let url = server.url();
    let load_started = Instant::now();
    rt.block_on(async {
        let clients = 16;
        let per_txn = 100;
        let mut tasks = Vec::new();
        for c in 0..clients {
            let url = url.clone();
            tasks.push(tokio::spawn(async move {
                let mut client = Client::connect([url], None).await.expect("connect");
                let mut i = c * per_txn;
                while i < keys {
                    let end = (i + per_txn).min(keys);
                    let ops: Vec<TxnOp> =
                        (i..end).map(|k| TxnOp::put(format!("key/{k:08}"), vec![b'v'; 64], None)).collect();
                    client.txn(Txn::new().and_then(ops)).await.expect("txn");
                    i += clients * per_txn;
                }
            }));
        }
        for t in tasks {
            t.await.expect("loader");
        }
    });
    let load = load_started.elapsed();
    let size_before = dir_size(&data);
    assert_eq!(server.stop(), Some(0), "clean stop");

    let port = free_port();
    let started = Instant::now();
    let _server = Cairn::spawn(&data, port, &[]);
    let url = format!("http://127.0.0.1:{port}");
    let last = format!("key/{:08}", keys - 1);
    let ready = rt.block_on(async {
        loop {
            if let Ok(mut c) = Client::connect([url.as_str()], None).await {
                if let Ok(r) = c.get(last.as_str(), None).await {
                    if r.kvs().len() == 1 {
                        return started.elapsed();
                    }
                }
            }
            assert!(started.elapsed() < Duration::from_secs(300), "no answer after restart");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    println!(
        "keys={keys} load={:.1}s ({:.0} keys/s) data_dir={} MiB restart_to_first_linearizable_read={:.3}s",
        load.as_secs_f64(),
        keys as f64 / load.as_secs_f64(),
        size_before >> 20,
        ready.as_secs_f64()
    );
}

fn dir_size(path: &std::path::Path) -> u64 {
    let mut total = 0;
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let meta = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            total += if meta.is_dir() { dir_size(&e.path()) } else { meta.len() };
        }
    }
    total
}
