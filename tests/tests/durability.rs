//! kill -9 during a stream of acknowledged puts: after a restart every acknowledged put is
//! there, and no put was applied twice.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_tests::{runtime, Cairn};
use etcd_client::{Client, GetOptions};

#[test]
fn acknowledged_puts_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Cairn::start(&data);
    let rt = runtime();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    rt.block_on(async {
        let mut writers = Vec::new();
        for w in 0..8 {
            let url = server.url();
            let acked = acked.clone();
            writers.push(tokio::spawn(async move {
                let mut c = Client::connect([url], None).await.unwrap();
                for i in 0.. {
                    let key = format!("w{w}/{i:06}");
                    match c.put(key.clone(), key.clone(), None).await {
                        Ok(_) => acked.lock().unwrap().push(key),
                        Err(_) => break, // the server died mid-request: outcome unknown
                    }
                }
            }));
        }
        // Kill once a good number of puts are acknowledged (however fast the machine is),
        // with all eight writers still mid-flight.
        while acked.lock().unwrap().len() < 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        server.kill9();
        for w in writers {
            w.await.unwrap();
        }
    });
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 200, "killed before 200 acknowledgements ({})", acked.len());

    let server = Cairn::start(&data);
    rt.block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let all = c.get("w", Some(GetOptions::new().with_prefix())).await.unwrap();
        let present: std::collections::HashSet<&[u8]> = all.kvs().iter().map(|kv| kv.key()).collect();
        for key in &acked {
            assert!(present.contains(key.as_bytes()), "acknowledged put {key} is lost");
        }
        for kv in all.kvs() {
            assert_eq!(kv.value(), kv.key(), "value intact");
            assert_eq!(kv.version(), 1, "{} was applied more than once", kv.key_str().unwrap());
        }
        // One revision per applied put: nothing was applied twice or skipped.
        let rev = all.header().unwrap().revision();
        assert_eq!(rev, 1 + all.count());
        let mut mods: Vec<i64> = all.kvs().iter().map(|kv| kv.mod_revision()).collect();
        mods.sort_unstable();
        assert_eq!(mods, (2..=rev).collect::<Vec<_>>());
    });
}
