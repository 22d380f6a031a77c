//! A member whose storage fails under it stops serving and exits with an error, as etcd does,
//! rather than staying up answering "server stopped" to every request: a supervisor then
//! restarts it, and the restarted member has every write it acknowledged.

use std::time::Duration;

use cairn_tests::{runtime, Cairn};
use etcd_client::{Client, GetOptions};

#[test]
fn a_failed_snapshot_write_stops_the_member_and_a_restart_has_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Cairn::start_with(&data, &["--snapshot-count", "10"]);
    let rt = runtime();
    // Snapshots are written under member/snap; with it gone the next one fails.
    std::fs::remove_dir_all(data.join("member").join("snap")).expect("remove the snapshot directory");
    let acknowledged = rt.block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let mut acknowledged = Vec::new();
        for i in 0..200 {
            match c.put(format!("k{i:03}"), "v", None).await {
                Ok(_) => acknowledged.push(format!("k{i:03}")),
                Err(_) => break,
            }
        }
        acknowledged
    });
    assert!(acknowledged.len() < 200, "every put succeeded without a snapshot directory:\n{}", server.log());
    let status = server.wait_exit(Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e}:\n{}", server.log()));
    assert_eq!(status, Some(1), "exit status:\n{}", server.log());
    assert!(server.log().contains("raft stopped"), "the reason is logged:\n{}", server.log());

    let server = Cairn::start_with(&data, &["--snapshot-count", "10"]);
    let keys = rt.block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let r = c.get("k", Some(GetOptions::new().with_prefix())).await.unwrap();
        r.kvs().iter().map(|kv| kv.key_str().unwrap().to_string()).collect::<Vec<_>>()
    });
    for key in &acknowledged {
        assert!(keys.contains(key), "acknowledged {key} is missing after the restart:\n{}", server.log());
    }
}
