//! The Watch service of a real cairn process through the Rust `etcd-client`: live events in
//! order with prev_kv, history replay from a start revision (from storage), filters, several
//! watchers on one stream, cancel, and a compacted start revision.

use std::time::Duration;

use cairn_tests::{runtime, Cairn};
use etcd_client::{Client, EventType, WatchFilterType, WatchOptions, WatchResponse, WatchStream};

async fn next(stream: &mut WatchStream) -> WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a watch message within 10 s")
        .expect("watch stream ok")
        .expect("watch stream open")
}

/// Events as (type, key, value, mod revision, prev value).
fn events(r: &WatchResponse) -> Vec<(EventType, String, String, i64, Option<String>)> {
    r.events()
        .iter()
        .map(|e| {
            let kv = e.kv().unwrap();
            (
                e.event_type(),
                kv.key_str().unwrap().to_string(),
                kv.value_str().unwrap().to_string(),
                kv.mod_revision(),
                e.prev_kv().map(|p| p.value_str().unwrap().to_string()),
            )
        })
        .collect()
}

#[test]
fn live_events_history_replay_filters_cancel_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    runtime().block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let mut w = c.watch("cfg/", Some(WatchOptions::new().with_prefix().with_prev_key())).await.unwrap();
        let created = next(&mut w).await;
        assert!(created.created());
        let first_id = created.watch_id();
        assert_eq!(created.header().unwrap().revision(), 1);

        c.put("cfg/a", "1", None).await.unwrap(); // 2
        c.put("other", "x", None).await.unwrap(); // 3: not watched
        c.put("cfg/a", "2", None).await.unwrap(); // 4
        c.delete("cfg/a", None).await.unwrap(); // 5
        let mut seen = Vec::new();
        while seen.len() < 3 {
            seen.extend(events(&next(&mut w).await));
        }
        assert_eq!(
            seen,
            vec![
                (EventType::Put, "cfg/a".into(), "1".into(), 2, None),
                (EventType::Put, "cfg/a".into(), "2".into(), 4, Some("1".into())),
                (EventType::Delete, "cfg/a".into(), "".into(), 5, Some("2".into())),
            ]
        );

        // A txn's changes arrive together, in one response.
        let txn = etcd_client::Txn::new().and_then([
            etcd_client::TxnOp::put("cfg/x", "1", None),
            etcd_client::TxnOp::put("cfg/y", "1", None),
        ]);
        c.txn(txn).await.unwrap(); // 6
        let batch = next(&mut w).await;
        assert_eq!(events(&batch).iter().map(|e| e.1.as_str()).collect::<Vec<_>>(), ["cfg/x", "cfg/y"]);

        // A second watcher on the same stream replays history from revision 1, deletes only.
        w.watch("cfg/", Some(WatchOptions::new().with_prefix().with_start_revision(1).with_filters([WatchFilterType::NoPut])))
            .await
            .unwrap();
        let created = next(&mut w).await;
        assert!(created.created());
        let second_id = created.watch_id();
        assert_ne!(second_id, first_id);
        let replay = next(&mut w).await;
        assert_eq!(replay.watch_id(), second_id);
        assert_eq!(events(&replay), vec![(EventType::Delete, "cfg/a".into(), "".into(), 5, None)]);

        w.cancel(second_id).await.unwrap();
        let canceled = next(&mut w).await;
        assert!(canceled.canceled());
        assert_eq!(canceled.watch_id(), second_id);

        // Compact, then watch from before the compaction point: canceled with the compact revision.
        c.compact(4, None).await.unwrap();
        let mut old = c.watch("cfg/", Some(WatchOptions::new().with_prefix().with_start_revision(2))).await.unwrap();
        let mut msg = next(&mut old).await;
        if msg.created() && !msg.canceled() {
            msg = next(&mut old).await;
        }
        assert!(msg.canceled());
        assert_eq!(msg.compact_revision(), 4);
        // From the compaction revision itself is allowed, and sees revision 4 onwards.
        let mut at = c.watch("cfg/a", Some(WatchOptions::new().with_start_revision(4))).await.unwrap();
        assert!(next(&mut at).await.created());
        let replay = events(&next(&mut at).await);
        assert_eq!(replay.iter().map(|e| e.3).collect::<Vec<_>>(), [4, 5]);
    });
}

#[test]
fn a_watcher_resumes_after_a_restart_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = Cairn::start(&data);
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        for i in 0..200 {
            c.put(format!("q/{i:03}"), "v", None).await.unwrap();
        }
    });
    server.stop();
    let server = Cairn::start(&data);
    rt.block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let mut w = c.watch("q/", Some(WatchOptions::new().with_prefix().with_start_revision(50))).await.unwrap();
        assert!(next(&mut w).await.created());
        let mut revs = Vec::new();
        while revs.len() < 152 {
            revs.extend(events(&next(&mut w).await).into_iter().map(|e| e.3));
        }
        assert_eq!(revs, (50..=201).collect::<Vec<_>>(), "every revision once, in order");
    });
}

#[test]
fn progress_notifications_and_fragments() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start_with(&dir.path().join("data"), &["--watch-progress-notify-interval", "300ms"]);
    runtime().block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let big = vec![b'x'; 1_000_000];
        for k in ["big/1", "big/2", "big/3"] {
            c.put(k, big.clone(), None).await.unwrap(); // revisions 2, 3, 4
        }
        // An idle watcher that asked for progress hears, without events, where it stands.
        let mut idle = c.watch("quiet", Some(WatchOptions::new().with_progress_notify())).await.unwrap();
        assert!(next(&mut idle).await.created());
        let progress = next(&mut idle).await;
        assert!(progress.events().is_empty() && !progress.canceled());
        assert_eq!(progress.header().unwrap().revision(), 4);

        // Replaying 3 MB: without fragment, revisions travel together in one large answer;
        // with fragment, answers above --max-request-bytes (1.5 MiB) are split into parts.
        let replay = |fragment: bool| {
            let mut c = c.clone();
            async move {
                let mut opts = WatchOptions::new().with_prefix().with_start_revision(2);
                if fragment {
                    opts = opts.with_fragment();
                }
                let mut w = c.watch("big/", Some(opts)).await.unwrap();
                assert!(next(&mut w).await.created());
                let (mut revs, mut largest) = (Vec::new(), 0);
                while revs.len() < 3 {
                    let r = next(&mut w).await;
                    largest = largest.max(r.events().len());
                    revs.extend(events(&r).into_iter().map(|e| e.3));
                }
                assert_eq!(revs, [2, 3, 4]);
                largest
            }
        };
        assert!(replay(false).await > 1, "unfragmented answers carry several revisions");
        let fragmented = replay(true).await == 1;
        assert!(fragmented, "a multi-megabyte answer was split");
    });
}

#[test]
fn a_watcher_that_stops_reading_blocks_nothing_and_later_misses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    runtime().block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        // One watcher reads nothing for a while; another keeps up.
        let mut slow = c.watch("s/", Some(WatchOptions::new().with_prefix())).await.unwrap();
        assert!(next(&mut slow).await.created());
        let mut live = c.watch("s/", Some(WatchOptions::new().with_prefix())).await.unwrap();
        assert!(next(&mut live).await.created());
        let reader = tokio::spawn(async move {
            let mut revs = Vec::new();
            while revs.len() < 200 {
                revs.extend(events(&next(&mut live).await).into_iter().map(|e| e.3));
            }
            revs
        });
        // 200 writes of 100 kB: 20 MB, more than the server keeps in memory for watchers.
        let value = vec![b'v'; 100_000];
        let started = std::time::Instant::now();
        for i in 0..200 {
            c.put(format!("s/{i:03}"), value.clone(), None).await.unwrap();
        }
        let writes_took = started.elapsed();
        assert_eq!(reader.await.unwrap(), (2..=201).collect::<Vec<_>>(), "the live watcher saw every write");
        // The slow watcher now reads: everything, in order, once (caught up from storage).
        let mut revs = Vec::new();
        while revs.len() < 200 {
            revs.extend(events(&next(&mut slow).await).into_iter().map(|e| e.3));
        }
        assert_eq!(revs, (2..=201).collect::<Vec<_>>());
        eprintln!("200 writes with a stalled watcher took {writes_took:?}");
    });
}

#[test]
fn a_stream_holds_at_most_max_watchers_per_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start_with(&dir.path().join("data"), &["--max-watchers-per-stream", "2"]);
    runtime().block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let mut stream = c.watch("a", None).await.unwrap();
        assert!(next(&mut stream).await.created());
        stream.watch("b", None).await.unwrap();
        let second = next(&mut stream).await;
        assert!(second.created() && !second.canceled());
        stream.watch("c", None).await.unwrap();
        let third = next(&mut stream).await;
        assert!(third.canceled(), "the third watcher of the stream is refused");
        assert!(third.cancel_reason().contains("too many watchers on this stream (limit 2"), "{}", third.cancel_reason());
        // The first two still work; a new stream has its own allowance.
        c.put("b", "1", None).await.unwrap();
        let event = next(&mut stream).await;
        assert_eq!(events(&event)[0].1, "b");
        let mut other = c.watch("c", None).await.unwrap();
        assert!(!next(&mut other).await.canceled());
    });
}
