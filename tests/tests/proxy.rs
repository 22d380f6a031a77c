//! `cairn proxy` in front of real cairn processes, through the Rust `etcd-client`: KV, txn,
//! watch, lease and lock keep working when the member the proxy talks to is killed; a
//! thousand watchers on one prefix cost the cluster one watch and each gets every event; the
//! serializable-read cache is off by default and, when on, serves only serializable reads.
//! The JSON gateway, the v2 API and RESP through the proxy answer as a member does (the v2
//! answers are compared with a member's, request by request) and survive the member's death.

mod http_client;
mod resp_support;

use std::collections::HashMap;
use std::time::Duration;

use cairn_tests::cluster::{Backend, Cluster};
use cairn_tests::proxy::{http_get, metric, Proxy};
use cairn_tests::{runtime, Cairn};
use http_client::{b64, form, get, post_json, request, LineStream};
use resp_support::Resp;
use serde_json::json;
use etcd_client::{
    Client, Compare, CompareOp, EventType, GetOptions, LockOptions, PutOptions, Txn, TxnOp, WatchOptions, WatchStream,
};

const WAIT: Duration = Duration::from_secs(30);

/// Reads `stream` until `n` events arrived; answers their (key, mod revision) in order.
async fn events(stream: &mut WatchStream, n: usize) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    while out.len() < n {
        let resp = tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("events arrive")
            .expect("watch stream healthy")
            .expect("watch stream open");
        assert!(!resp.canceled(), "watch canceled: {}", resp.cancel_reason());
        for e in resp.events() {
            assert_eq!(e.event_type(), EventType::Put);
            let kv = e.kv().expect("event kv");
            out.push((String::from_utf8_lossy(kv.key()).to_string(), kv.mod_revision()));
        }
    }
    out
}

/// One member (in a temp dir, removed when the first value is dropped) and a proxy before it.
fn member_behind_proxy() -> (tempfile::TempDir, Cairn, Proxy) {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let proxy = Proxy::start(&[server.url()], &[]);
    (dir, server, proxy)
}

#[test]
fn clients_through_the_proxy_keep_working_when_its_member_is_killed() {
    let mut cluster = Cluster::start(Backend::Cairn, 3);
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let proxy = Proxy::start(&urls, &[]);
    let rt = runtime();
    let mut c = rt.block_on(Client::connect([proxy.url()], None)).expect("connect to the proxy");

    let (mut watch, mut twin, lease) = rt.block_on(async {
        c.put("k1", "v1", None).await.unwrap();
        let got = c.get("k1", None).await.unwrap();
        assert_eq!(got.kvs()[0].value(), b"v1");
        let txn = Txn::new()
            .when([Compare::value("k1", CompareOp::Equal, "v1")])
            .and_then([TxnOp::put("k2", "v2", None)])
            .or_else([TxnOp::get("k1", None)]);
        assert!(c.txn(txn).await.unwrap().succeeded());
        let txn = Txn::new().when([Compare::value("k1", CompareOp::Equal, "other")]).and_then([TxnOp::delete("k1", None)]);
        assert!(!c.txn(txn).await.unwrap().succeeded());
        assert_eq!(c.delete("k2", None).await.unwrap().deleted(), 1);

        // Two watchers on one prefix, on two streams: one shared upstream watch.
        let mut watch = c.watch("w/", Some(WatchOptions::new().with_prefix())).await.unwrap();
        assert!(watch.message().await.unwrap().unwrap().created());
        let mut twin = c.watch("w/", Some(WatchOptions::new().with_prefix())).await.unwrap();
        assert!(twin.message().await.unwrap().unwrap().created());
        let lease = c.lease_grant(10, None).await.unwrap().id();
        c.put("leased", "x", Some(PutOptions::new().with_lease(lease))).await.unwrap();
        c.put("w/1", "a", None).await.unwrap();
        (watch, twin, lease)
    });
    let text = proxy.metrics();
    assert_eq!(metric(&text, "cairn_proxy_upstream_watches", ""), Some(1.0), "{text}");
    assert_eq!(metric(&text, "cairn_proxy_watchers", ""), Some(2.0), "{text}");
    // The client renews its lease every second, as clients do (a third of the TTL or less),
    // through the failure; each answer's TTL is recorded.
    let renewals = std::sync::Arc::new(std::sync::Mutex::new(Vec::<i64>::new()));
    let renewer = {
        let renewals = renewals.clone();
        let mut c = c.clone();
        rt.spawn(async move {
            let (mut keeper, mut answers) = c.lease_keep_alive(lease).await.expect("keep-alive stream");
            loop {
                keeper.keep_alive().await.expect("keep-alive sent");
                let resp = tokio::time::timeout(WAIT, answers.message()).await.expect("keep-alive answered");
                let ttl = resp.expect("keep-alive stream healthy").expect("keep-alive stream open").ttl();
                renewals.lock().unwrap().push(ttl);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
    };

    let upstream = proxy.upstream().expect("the proxy names its upstream member");
    let victim = urls.iter().position(|u| *u == upstream).expect("upstream is a member");
    cluster.kill9(victim);
    let renewed_before = renewals.lock().unwrap().len();

    rt.block_on(async {
        // Writes and reads go on through the same client connection.
        for n in 2..=5 {
            c.put(format!("w/{n}"), "a", None).await.unwrap_or_else(|e| panic!("put w/{n} after the kill: {e}\n{}", proxy.log()));
        }
        let got = c.get("w/", Some(GetOptions::new().with_prefix())).await.unwrap();
        assert_eq!(got.kvs().len(), 5);

        // The shared watch opened before the kill delivers every event once, in order, to both.
        for stream in [&mut watch, &mut twin] {
            let seen = events(stream, 5).await;
            let keys: Vec<&str> = seen.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["w/1", "w/2", "w/3", "w/4", "w/5"]);
            assert!(seen.windows(2).all(|w| w[0].1 < w[1].1), "revisions increase: {seen:?}");
        }

        // Lock and unlock.
        let held = c.lock("res", Some(LockOptions::new().with_lease(lease))).await.expect("lock through the proxy");
        assert!(held.key().starts_with(b"res/"));
        c.unlock(held.key()).await.expect("unlock");

        // Renewals go on after the kill, and the lease never lapsed.
        let deadline = tokio::time::Instant::now() + WAIT;
        while renewals.lock().unwrap().len() < renewed_before + 3 {
            assert!(!renewer.is_finished(), "the renewing client failed");
            assert!(tokio::time::Instant::now() < deadline, "no renewals after the kill");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let ttls = renewals.lock().unwrap().clone();
        assert!(ttls.iter().all(|t| *t > 0), "every renewal found the lease alive: {ttls:?}");
        assert_eq!(c.get("leased", None).await.unwrap().kvs().len(), 1, "the kept-alive lease's key is still there");
    });
    renewer.abort();

    let now = proxy.upstream().expect("upstream");
    assert_ne!(now, upstream, "the proxy failed over");
    let text = proxy.metrics();
    assert!(metric(&text, "cairn_proxy_requests_forwarded_total", "{method=\"put\"}").unwrap_or(0.0) >= 7.0, "{text}");
}

/// 1,000 watchers on prefix `p/` through one proxy in front of one member: 10 watch streams
/// of 100 watchers each. Answers the client (its connection must stay open) and the streams.
fn thousand_watchers(rt: &tokio::runtime::Runtime, proxy: &Proxy) -> (Client, Vec<(WatchStream, Vec<i64>)>) {
    rt.block_on(async {
        let c = Client::connect([proxy.url()], None).await.unwrap();
        let mut streams = Vec::new();
        for _ in 0..10 {
            let mut stream = c.clone().watch("p/", Some(WatchOptions::new().with_prefix())).await.unwrap();
            for _ in 1..100 {
                stream.watch("p/", Some(WatchOptions::new().with_prefix())).await.unwrap();
            }
            let mut ids = Vec::new();
            while ids.len() < 100 {
                let resp = tokio::time::timeout(WAIT, stream.message()).await.expect("created").unwrap().unwrap();
                assert!(resp.created() && !resp.canceled(), "{resp:?}");
                ids.push(resp.watch_id());
            }
            streams.push((stream, ids));
        }
        (c, streams)
    })
}

#[test]
fn a_thousand_watchers_on_one_prefix_cost_one_upstream_watch_and_all_get_every_event() {
    let (_dir, _server, proxy) = member_behind_proxy();
    let rt = runtime();
    let (mut c, mut streams) = thousand_watchers(&rt, &proxy);

    let text = proxy.metrics();
    assert_eq!(metric(&text, "cairn_proxy_watchers", ""), Some(1000.0), "{text}");
    assert_eq!(metric(&text, "cairn_proxy_upstream_watches", ""), Some(1.0), "{text}");
    assert_eq!(metric(&text, "etcd_grpc_proxy_watchers_coalescing_total", ""), Some(999.0), "{text}");

    rt.block_on(async {
        for n in 0..5 {
            c.put(format!("p/{n}"), "v", None).await.unwrap();
        }
        let want: Vec<String> = (0..5).map(|n| format!("p/{n}")).collect();
        for (stream, ids) in &mut streams {
            let mut got: HashMap<i64, Vec<String>> = HashMap::new();
            while got.len() < ids.len() || got.values().any(|v| v.len() < 5) {
                let resp = tokio::time::timeout(WAIT, stream.message()).await.expect("events").unwrap().unwrap();
                let keys = got.entry(resp.watch_id()).or_default();
                keys.extend(resp.events().iter().map(|e| String::from_utf8_lossy(e.kv().unwrap().key()).to_string()));
                assert!(keys.len() <= 5, "no event twice: {keys:?}");
            }
            for id in ids.iter() {
                assert_eq!(got[id], want, "watcher {id} got every event, in order");
            }
        }
    });

    // Closing every client stream closes the upstream watch.
    drop(streams);
    let mut upstream_watches = None;
    for _ in 0..100 {
        upstream_watches = metric(&proxy.metrics(), "cairn_proxy_upstream_watches", "");
        if upstream_watches == Some(0.0) {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(upstream_watches, Some(0.0));
}

/// The cluster's own count: the member's `etcd_debugging_mvcc_watcher_total` on its `/metrics`.
#[test]
fn a_thousand_proxy_watchers_show_as_one_watcher_on_the_member() {
    let (_dir, server, proxy) = member_behind_proxy();
    let rt = runtime();
    let member_watchers = || {
        let text = http_get(&format!("127.0.0.1:{}", server.port), "/metrics").expect("member /metrics");
        metric(&text, "etcd_debugging_mvcc_watcher_total", "")
    };
    assert_eq!(member_watchers(), Some(0.0));
    let (_c, _streams) = thousand_watchers(&rt, &proxy);
    assert_eq!(member_watchers(), Some(1.0));
}

#[test]
fn watchers_from_a_past_revision_get_history_and_compaction_reaches_clients() {
    let (_dir, _server, proxy) = member_behind_proxy();
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::connect([proxy.url()], None).await.unwrap();
        let first = c.put("h/a", "1", None).await.unwrap().header().unwrap().revision();
        c.put("h/b", "2", None).await.unwrap();
        // A watcher from now shares nothing from the past ...
        let mut live = c.watch("h/", Some(WatchOptions::new().with_prefix())).await.unwrap();
        assert!(live.message().await.unwrap().unwrap().created());
        // ... and one from the first revision on the same prefix replays history.
        let mut past = c.watch("h/", Some(WatchOptions::new().with_prefix().with_start_revision(first))).await.unwrap();
        assert!(past.message().await.unwrap().unwrap().created());
        c.put("h/c", "3", None).await.unwrap();
        let keys = |v: Vec<(String, i64)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(events(&mut past, 3).await), ["h/a", "h/b", "h/c"]);
        let last = events(&mut live, 1).await;
        assert_eq!(keys(last.clone()), ["h/c"]);
        // A progress request speaks for every watcher of the stream (watch id -1), at a
        // revision every event up to which was delivered.
        live.request_progress().await.unwrap();
        let progress = tokio::time::timeout(WAIT, live.message()).await.expect("progress").unwrap().unwrap();
        assert_eq!((progress.watch_id(), progress.events().len()), (-1, 0), "{progress:?}");
        assert!(progress.header().unwrap().revision() >= last[0].1, "{progress:?}");

        let rev = c.put("h/d", "4", None).await.unwrap().header().unwrap().revision();
        c.compact(rev, None).await.unwrap();
        let mut old = c.watch("h/", Some(WatchOptions::new().with_prefix().with_start_revision(first))).await.unwrap();
        let mut canceled = None;
        while canceled.is_none() {
            let resp = tokio::time::timeout(WAIT, old.message()).await.expect("answer").unwrap().unwrap();
            if resp.canceled() {
                canceled = Some(resp.compact_revision());
            }
        }
        assert_eq!(canceled, Some(rev), "the watcher hears the compaction revision");
    });
}

#[test]
fn serializable_read_cache_is_off_by_default_and_never_serves_linearizable_reads() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let plain = Proxy::start(&[server.url()], &[]);
    let cached = Proxy::start(&[server.url()], &["--serializable-read-cache-ttl=60s"]);
    let rt = runtime();
    rt.block_on(async {
        let mut direct = Client::connect([server.url()], None).await.unwrap();
        let mut p = Client::connect([plain.url()], None).await.unwrap();
        let mut pc = Client::connect([cached.url()], None).await.unwrap();
        let ser = || Some(GetOptions::new().with_serializable());
        let value = |r: etcd_client::GetResponse| String::from_utf8_lossy(r.kvs()[0].value()).to_string();

        direct.put("c", "v1", None).await.unwrap();
        assert_eq!(value(p.get("c", ser()).await.unwrap()), "v1");
        assert_eq!(value(pc.get("c", ser()).await.unwrap()), "v1");
        // A write the proxies did not see.
        direct.put("c", "v2", None).await.unwrap();
        assert_eq!(value(p.get("c", ser()).await.unwrap()), "v2", "no cache by default");
        assert_eq!(value(pc.get("c", ser()).await.unwrap()), "v1", "the cached answer, within its TTL");
        assert_eq!(value(pc.get("c", None).await.unwrap()), "v2", "linearizable reads go to the cluster");
        // A write through the caching proxy empties its cache.
        pc.put("c", "v3", None).await.unwrap();
        assert_eq!(value(pc.get("c", ser()).await.unwrap()), "v3");
    });
    let text = cached.metrics();
    assert_eq!(metric(&text, "etcd_grpc_proxy_cache_hits_total", ""), Some(1.0), "{text}");
    assert_eq!(metric(&text, "etcd_grpc_proxy_cache_misses_total", ""), Some(2.0), "{text}");
    assert_eq!(metric(&plain.metrics(), "etcd_grpc_proxy_cache_hits_total", ""), None);
}

#[test]
fn keep_alives_of_many_clients_share_one_upstream_stream() {
    let (_dir, _server, proxy) = member_behind_proxy();
    let rt = runtime();
    rt.block_on(async {
        let mut c = Client::connect([proxy.url()], None).await.unwrap();
        let lease = c.lease_grant(30, None).await.unwrap().id();
        // 20 clients, each on its own connection with its own keep-alive stream, renew the same
        // lease at the same moment, three times.
        let mut streams = Vec::new();
        for _ in 0..20 {
            let mut client = Client::connect([proxy.url()], None).await.unwrap();
            streams.push(client.lease_keep_alive(lease).await.unwrap());
        }
        for _ in 0..3 {
            let renewals = streams.iter_mut().map(|(keeper, answers)| async move {
                keeper.keep_alive().await.unwrap();
                tokio::time::timeout(WAIT, answers.message()).await.expect("answered").unwrap().unwrap().ttl()
            });
            let ttls = futures::future::join_all(renewals).await;
            assert!(ttls.iter().all(|t| *t > 0), "{ttls:?}");
        }
    });
    let text = proxy.metrics();
    assert_eq!(metric(&text, "cairn_proxy_upstream_keepalive_streams", ""), Some(1.0), "{text}");
    let forwarded = metric(&text, "cairn_proxy_requests_forwarded_total", "{method=\"lease_keep_alive\"}").unwrap_or(0.0);
    let coalesced = metric(&text, "cairn_proxy_keepalives_coalesced_total", "").unwrap_or(0.0);
    // etcd-client renews once when it opens a keep-alive stream: 20 + 20 x 3 renewals, each
    // either sent upstream or answered by one in flight (how many share depends on timing).
    assert_eq!(forwarded + coalesced, 80.0, "{text}");
    assert!(forwarded >= 4.0, "{text}");
}

#[test]
fn bad_flags_and_a_taken_port_are_reported_in_one_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let cases: [(Vec<String>, &str); 4] = [
        (vec!["--listen-addr=nonsense".into()], "bad --listen-addr \"nonsense\""),
        (vec![format!("--listen-addr=127.0.0.1:{port}")], "cannot listen on 127.0.0.1:"),
        (vec!["--endpoints=http://[::1".into()], "bad endpoint \"http://[::1\""),
        (vec!["--dial-timeout=5x".into()], "invalid duration unit"),
    ];
    for (args, want) in cases {
        let out = std::process::Command::new(cairn_tests::cairn_bin())
            .arg("proxy")
            .args(&args)
            .output()
            .expect("run cairn proxy");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
}

#[test]
fn sigterm_stops_the_proxy_even_with_a_watch_open() {
    let (_dir, _server, mut proxy) = member_behind_proxy();
    let rt = runtime();
    let _watch = rt.block_on(async {
        let mut c = Client::connect([proxy.url()], None).await.unwrap();
        let mut w = c.watch("x", None).await.unwrap();
        assert!(w.message().await.unwrap().unwrap().created());
        (c, w)
    });
    assert_eq!(proxy.stop(), Some(0), "clean exit on SIGTERM:\n{}", proxy.log());
}

/// Keeps the first watch event answers of a JSON gateway watch stream until `n` events came.
fn json_events(w: &mut LineStream, n: usize) -> Vec<serde_json::Value> {
    let mut events = Vec::new();
    while events.len() < n {
        let msg = w.next_json().expect("a watch answer");
        assert!(msg["result"]["canceled"] != true, "watch canceled: {msg}");
        events.extend(msg["result"]["events"].as_array().cloned().unwrap_or_default());
    }
    events
}

#[test]
fn json_gateway_through_the_proxy_answers_as_the_member() {
    let (_dir, server, proxy) = member_behind_proxy();
    let (m, p) = (server.port, proxy.port);

    let put = post_json(p, "/v3/kv/put", &json!({"key": b64("foo"), "value": b64("bar")}));
    assert_eq!(put.status, 200, "{}", put.text());
    // The same read through the proxy and on the member: the same body, header included (the
    // member's cluster and member ids, revision and term).
    let range = json!({"key": b64("foo")});
    let via = post_json(p, "/v3/kv/range", &range);
    let direct = post_json(m, "/v3/kv/range", &range);
    assert_eq!((via.status, via.json()), (direct.status, direct.json()));
    assert_eq!(via.json()["kvs"][0]["value"], b64("bar"));
    assert_eq!(via.json()["header"]["revision"], put.json()["header"]["revision"]);

    // txn: create-if-absent succeeds once; the second answers the failure branch.
    let txn = json!({
        "compare": [{"key": b64("once"), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
        "success": [{"request_put": {"key": b64("once"), "value": b64("first")}}],
        "failure": [{"requestRange": {"key": b64("once")}}]
    });
    assert_eq!(post_json(p, "/v3/kv/txn", &txn).json()["succeeded"], true);
    let second = post_json(p, "/v3/kv/txn", &txn);
    let second_direct = post_json(m, "/v3/kv/txn", &txn);
    assert_eq!(second.json(), second_direct.json());
    assert_eq!(second.json()["responses"][0]["response_range"]["kvs"][0]["value"], b64("first"));

    // A member's error comes back as the member gives it: status, code and text.
    for (path, body) in [
        ("/v3/kv/range", json!({"key": b64("foo"), "revision": "1000"})),
        ("/v3/kv/put", json!({"key": ""})),
        ("/v3/kv/put", json!({"key": b64("nokey"), "ignore_value": true})),
        ("/v3/lease/revoke", json!({"ID": "12345"})),
    ] {
        let (via, direct) = (post_json(p, path, &body), post_json(m, path, &body));
        assert_ne!(via.status, 200, "{path} {body}: {}", via.text());
        assert_eq!((via.status, via.json()), (direct.status, direct.json()), "{path} {body}");
    }

    // Two JSON watchers of one key share one upstream watch; each gets every event in order.
    let watch_req = json!({"create_request": {"key": b64("w"), "prev_kv": true}}).to_string();
    let mut w1 = LineStream::open(p, "POST", "/v3/watch", Some("application/json"), watch_req.as_bytes());
    let mut w2 = LineStream::open(p, "POST", "/v3/watch", Some("application/json"), watch_req.as_bytes());
    for w in [&mut w1, &mut w2] {
        assert_eq!(w.status, 200);
        let created = w.next_json().expect("created");
        assert_eq!(created["result"]["created"], true, "{created}");
    }
    let text = proxy.metrics();
    assert_eq!(metric(&text, "cairn_proxy_watchers", ""), Some(2.0), "{text}");
    assert_eq!(metric(&text, "cairn_proxy_upstream_watches", ""), Some(1.0), "{text}");
    let mut revs = Vec::new();
    for v in ["a", "b", "c"] {
        let r = post_json(m, "/v3/kv/put", &json!({"key": b64("w"), "value": b64(v)}));
        revs.push(r.json()["header"]["revision"].clone());
    }
    for w in [&mut w1, &mut w2] {
        let events = json_events(w, 3);
        let values: Vec<_> = events.iter().map(|e| e["kv"]["value"].clone()).collect();
        assert_eq!(values, [b64("a"), b64("b"), b64("c")]);
        let mods: Vec<_> = events.iter().map(|e| e["kv"]["mod_revision"].clone()).collect();
        assert_eq!(mods, revs);
        assert_eq!(events[1]["prev_kv"]["value"], b64("a"));
    }
    // Closing the HTTP streams ends their watchers and the shared upstream watch.
    drop((w1, w2));
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = proxy.metrics();
        let counts = (metric(&text, "cairn_proxy_watchers", ""), metric(&text, "cairn_proxy_upstream_watches", ""));
        if counts == (Some(0.0), Some(0.0)) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "watchers left after the clients went: {counts:?}");
        std::thread::sleep(Duration::from_millis(20));
    }

    // A watch from a compacted revision is canceled with the compaction revision.
    let last: i64 = revs[2].as_str().unwrap().parse().unwrap();
    assert_eq!(post_json(p, "/v3/kv/compaction", &json!({"revision": last.to_string()})).status, 200);
    let old = json!({"create_request": {"key": b64("w"), "start_revision": "2"}}).to_string();
    let mut w = LineStream::open(p, "POST", "/v3/watch", Some("application/json"), old.as_bytes());
    let mut canceled = None;
    while canceled.is_none() {
        let msg = w.next_json().expect("an answer");
        if msg["result"]["canceled"] == true {
            canceled = Some(msg["result"]["compact_revision"].clone());
        }
    }
    assert_eq!(canceled, Some(json!(last.to_string())));
}

/// One v2 request's answer, comparable across servers: the status, X-Etcd-Index and the body
/// without the fields that depend on the clock (`expiration`, and `ttl`, which counts down).
fn v2_answer(r: &http_client::Reply) -> (u16, Option<String>, serde_json::Value) {
    fn strip(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                map.remove("expiration");
                map.remove("ttl");
                map.values_mut().for_each(strip);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut body = r.json();
    strip(&mut body);
    (r.status, r.header("x-etcd-index").map(str::to_string), body)
}

/// The same v2 requests, in the same order, to a member and through a proxy to another
/// (equally fresh) member answer the same: status, X-Etcd-Index and body (indexes included:
/// both stores see the same writes, so their revisions agree).
#[test]
fn v2_through_the_proxy_answers_as_a_member() {
    let dir = tempfile::tempdir().unwrap();
    let direct = Cairn::start(&dir.path().join("direct"));
    let behind = Cairn::start(&dir.path().join("behind"));
    let proxy = Proxy::start(&[behind.url()], &[]);
    let both = |method: &str, path: &str, body: &str| {
        let (a, b) = (form(direct.port, method, path, body), form(proxy.port, method, path, body));
        let (a, b) = (v2_answer(&a), v2_answer(&b));
        assert_eq!(b, a, "{method} {path} {body}: through the proxy vs direct");
        a
    };
    assert_eq!(both("PUT", "/v2/keys/dir/key", "value=one").0, 201);
    assert_eq!(both("PUT", "/v2/keys/dir/key", "value=two").2["prevNode"]["value"], "one");
    assert_eq!(both("GET", "/v2/keys/dir/key", "").2["node"]["value"], "two");
    both("GET", "/v2/keys/dir?recursive=true", "");
    // prevExist and compare-and-swap errors
    assert_eq!(both("PUT", "/v2/keys/dir/key?prevExist=false", "value=x").2["errorCode"], 105);
    assert_eq!(both("PUT", "/v2/keys/nope?prevExist=true", "value=x").2["errorCode"], 100);
    assert_eq!(both("PUT", "/v2/keys/dir/key?prevValue=nope", "value=x").2["errorCode"], 101);
    assert_eq!(both("PUT", "/v2/keys/dir/key?prevValue=two", "value=three").2["action"], "compareAndSwap");
    assert_eq!(both("PUT", "/v2/keys/dir/key/below", "value=x").2["errorCode"], 104);
    assert_eq!(both("DELETE", "/v2/keys/dir", "").2["errorCode"], 102);
    // in-order keys
    let a = both("POST", "/v2/keys/queue", "value=a");
    let b = both("POST", "/v2/keys/queue", "value=b");
    assert!(a.2["node"]["key"].as_str() < b.2["node"]["key"].as_str(), "{a:?} {b:?}");
    assert_eq!(both("GET", "/v2/keys/queue?sorted=true", "").2["node"]["nodes"].as_array().map(Vec::len), Some(2));
    // TTLs (the TTL itself is left out of the comparison: it counts down)
    assert_eq!(both("PUT", "/v2/keys/ttl", "value=t&ttl=100").0, 201);
    assert!(form(proxy.port, "GET", "/v2/keys/ttl", "").json()["node"]["ttl"].as_i64().is_some_and(|t| t > 0 && t <= 100));
    // watches: from history, and a long poll answered by the next change
    let first = both("PUT", "/v2/keys/w", "value=v1").2["node"]["modifiedIndex"].as_i64().unwrap();
    both("PUT", "/v2/keys/w", "value=v2");
    assert_eq!(both("GET", &format!("/v2/keys/w?wait=true&waitIndex={first}"), "").2["node"]["value"], "v1");
    assert_eq!(both("GET", &format!("/v2/keys/w?wait=true&waitIndex={}", first + 1), "").2["prevNode"]["value"], "v1");
    let (dp, pp) = (direct.port, proxy.port);
    let waiters = [dp, pp].map(|port| std::thread::spawn(move || get(port, "/v2/keys/w?wait=true")));
    // Both long polls are open before the change: the proxy's shows as a watcher.
    let deadline = std::time::Instant::now() + WAIT;
    while metric(&proxy.metrics(), "cairn_proxy_watchers", "") != Some(1.0) {
        assert!(std::time::Instant::now() < deadline, "the v2 long poll never became a proxy watcher");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    both("DELETE", "/v2/keys/w", "");
    let [a, b] = waiters.map(|w| v2_answer(&w.join().unwrap()));
    assert_eq!(b, a, "the long poll through the proxy vs direct");
    assert_eq!(a.2["action"], "delete");
    // errors of bad input, and a missing key
    assert_eq!(both("GET", "/v2/keys/missing", "").2["errorCode"], 100);
    assert_eq!(both("GET", "/v2/keys/a?waitIndex=-1&wait=true", "").2["errorCode"], 203);
    assert_eq!(both("PUT", "/v2/keys/a?prevExist=maybe", "value=1").2["errorCode"], 209);
    // the index after all of it is the same
    let (r1, r2) = (request(dp, "GET", "/v2/keys/", None, b""), request(pp, "GET", "/v2/keys/", None, b""));
    assert_eq!(v2_answer(&r2), v2_answer(&r1));
}

#[test]
fn resp_through_the_proxy_answers_as_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let redis_port = cairn_tests::free_port();
    let flag = format!("--listen-redis-addr=127.0.0.1:{redis_port}");
    let _proxy = Proxy::start(&[server.url()], &[&flag]);
    let mut via = Resp::connect(&format!("127.0.0.1:{redis_port}"));
    let mut direct = Resp::connect(&server.redis_addr());

    // The same commands on the member's RESP (keys d:*) and the proxy's (keys p:*) answer
    // the same bytes.
    let script: &[&[&str]] = &[
        &["SET", "K", "10"],
        &["GET", "K"],
        &["INCR", "K"],
        &["INCRBY", "K", "5"],
        &["APPEND", "K", "x"],
        &["INCR", "K"],
        &["GET", "K"],
        &["SET", "K", "v", "NX"],
        &["SET", "K", "v", "XX", "GET"],
        &["EXPIRE", "K", "100"],
        &["EXPIRE", "missing:K", "100"],
        &["PERSIST", "K"],
        &["TTL", "K"],
        &["DEL", "K"],
        &["GET", "K"],
        &["TTL", "K"],
        &["EXISTS", "K"],
    ];
    for cmd in script {
        let on = |prefix: &str| -> Vec<String> {
            cmd.iter().enumerate().map(|(i, a)| if i == 0 { a.to_string() } else { a.replace('K', &format!("{prefix}:k")) }).collect()
        };
        let (d, p) = (on("d"), on("p"));
        let d: Vec<&str> = d.iter().map(String::as_str).collect();
        let p: Vec<&str> = p.iter().map(String::as_str).collect();
        assert_eq!(via.cmd(&p), direct.cmd(&d), "{cmd:?}");
    }

    // SET / GET / INCR / EXPIRE through the proxy, seen on the member.
    assert_eq!(via.cmd(&["SET", "counter", "41"]), "+OK\r\n");
    assert_eq!(via.int(&["INCR", "counter"]), 42);
    assert_eq!(direct.cmd(&["GET", "counter"]), "$2\r\n42\r\n");
    assert_eq!(via.int(&["EXPIRE", "counter", "100"]), 1);
    let ttl = via.int(&["TTL", "counter"]);
    assert!(ttl > 0 && ttl <= 100, "{ttl}");
    let pttl = via.int(&["PTTL", "counter"]);
    assert!(pttl > 0 && pttl <= 100_000, "{pttl}");
    let on_member = direct.int(&["TTL", "counter"]);
    assert!(on_member > 0 && on_member <= 100, "{on_member}");
    // INCR keeps the TTL, as on the member.
    assert_eq!(via.int(&["INCR", "counter"]), 43);
    assert!(via.int(&["TTL", "counter"]) > 0);
    via.cmd(&["SET", "text", "abc"]);
    assert_eq!(via.cmd(&["INCR", "text"]), "-ERR value is not an integer or out of range\r\n");
    assert_eq!(via.cmd(&["INCR", "text"]), direct.cmd(&["INCR", "text"]));
}

/// Kills the member the proxy talks to (3 members); v2, JSON gateway and RESP requests through
/// the proxy keep working, and a JSON watch and a v2 long poll opened before the kill get the
/// changes made after it.
#[test]
fn v2_json_and_resp_through_the_proxy_survive_killing_its_member() {
    let mut cluster = Cluster::start(Backend::Cairn, 3);
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    let redis_port = cairn_tests::free_port();
    let flag = format!("--listen-redis-addr=127.0.0.1:{redis_port}");
    let proxy = Proxy::start(&urls, &[&flag]);
    let p = proxy.port;
    let mut resp = Resp::connect(&format!("127.0.0.1:{redis_port}"));

    assert_eq!(form(p, "PUT", "/v2/keys/before", "value=1").status, 201);
    assert_eq!(post_json(p, "/v3/kv/put", &json!({"key": b64("j/0"), "value": b64("0")})).status, 200);
    assert_eq!(resp.cmd(&["SET", "r", "1"]), "+OK\r\n");
    let watch_req = json!({"create_request": {"key": b64("j/"), "range_end": b64("j0")}}).to_string();
    let mut w = LineStream::open(p, "POST", "/v3/watch", Some("application/json"), watch_req.as_bytes());
    assert_eq!(w.next_json().expect("created")["result"]["created"], true);
    let poll = std::thread::spawn(move || get(p, "/v2/keys/polled?wait=true"));
    let deadline = std::time::Instant::now() + WAIT;
    while metric(&proxy.metrics(), "cairn_proxy_watchers", "") != Some(2.0) {
        assert!(std::time::Instant::now() < deadline, "the watch and the long poll are not both open");
        std::thread::sleep(Duration::from_millis(20));
    }

    let upstream = proxy.upstream().expect("the proxy names its upstream member");
    let victim = urls.iter().position(|u| *u == upstream).expect("upstream is a member");
    cluster.kill9(victim);

    // v2
    let r = form(p, "PUT", "/v2/keys/after", "value=2");
    assert_eq!(r.status, 201, "v2 set after the kill: {}\n{}", r.text(), proxy.log());
    assert_eq!(form(p, "GET", "/v2/keys/before", "").json()["node"]["value"], "1");
    let r = form(p, "PUT", "/v2/keys/after?prevExist=false", "value=3");
    assert_eq!((r.status, r.json()["errorCode"].as_i64()), (412, Some(105)));
    assert_eq!(form(p, "PUT", "/v2/keys/polled", "value=p").status, 201);
    let polled = poll.join().unwrap();
    assert_eq!((polled.status, polled.json()["node"]["value"].as_str()), (200, Some("p")), "{}", polled.text());
    // JSON gateway
    for n in 1..=3 {
        let r = post_json(p, "/v3/kv/put", &json!({"key": b64(&format!("j/{n}")), "value": b64("x")}));
        assert_eq!(r.status, 200, "JSON put after the kill: {}\n{}", r.text(), proxy.log());
    }
    let r = post_json(p, "/v3/kv/range", &json!({"key": b64("j/"), "range_end": b64("j0")}));
    assert_eq!(r.json()["count"], "4", "{}", r.text());
    let keys: Vec<_> = json_events(&mut w, 3).iter().map(|e| e["kv"]["key"].clone()).collect();
    assert_eq!(keys, [b64("j/1"), b64("j/2"), b64("j/3")], "the watch opened before the kill, in order, no gaps");
    // RESP, on the connection opened before the kill
    assert_eq!(resp.cmd(&["GET", "r"]), "$1\r\n1\r\n");
    assert_eq!(resp.int(&["INCR", "r"]), 2);
    assert_eq!(resp.cmd(&["SET", "r2", "v", "EX", "100"]), "+OK\r\n");
    assert_eq!(resp.int(&["EXPIRE", "r", "100"]), 1);
    assert_eq!(resp.cmd(&["GET", "r2"]), "$1\r\nv\r\n");

    assert_ne!(proxy.upstream().expect("upstream"), upstream, "the proxy failed over");
}
