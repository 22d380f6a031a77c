//! Defragment compacts the member's files while it keeps serving: writes and reads issued
//! during several defragmentations all succeed, and nothing is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use cairn_tests::Cairn;
use etcd_client::GetOptions;

#[test]
fn writes_and_reads_go_on_during_defragment() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Cairn::start(&dir.path().join("data"));
    let rt = cairn_tests::runtime();
    let url = server.url();
    rt.block_on(async {
        let mut admin = etcd_client::Client::connect([url.clone()], None).await.expect("connect");
        // Something to compact: overwritten and deleted versions.
        for i in 0..300 {
            admin.put(format!("old{}", i % 30), vec![b'x'; 1024], None).await.expect("put");
        }
        admin.delete("old", Some(etcd_client::DeleteOptions::new().with_prefix())).await.expect("delete");
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let (stop, url) = (stop.clone(), url.clone());
            tokio::spawn(async move {
                let mut c = etcd_client::Client::connect([url], None).await.expect("connect");
                let mut written = 0u32;
                while !stop.load(Ordering::Relaxed) || written < 50 {
                    c.put(format!("live{written:05}"), "v", None).await.expect("a put during defragment failed");
                    let got = c.get(format!("live{written:05}"), None).await.expect("a read during defragment failed");
                    assert_eq!(got.kvs().len(), 1);
                    written += 1;
                }
                written
            })
        };
        for _ in 0..3 {
            admin.defragment().await.expect("defragment");
        }
        stop.store(true, Ordering::Relaxed);
        let written = writer.await.expect("writer");
        let count = admin
            .get("live", Some(GetOptions::new().with_prefix().with_count_only()))
            .await
            .expect("count")
            .count();
        assert_eq!(count, i64::from(written));
    });
}
