//! The etcd v2 keys API on a real cairn process: v2 semantics and errors, one keyspace with
//! v3 (gRPC), watches from history (waitIndex) and compaction, bad input.

mod http_client;

use std::time::Duration;

use cairn_tests::{runtime, Cairn};
use etcd_client::{Client, GetOptions, WatchOptions};
use http_client::{form, get, request};

fn index(r: &http_client::Reply) -> i64 {
    r.header("x-etcd-index").expect("X-Etcd-Index").parse().unwrap()
}

#[test]
fn v2_keys_semantics_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let p = server.port;

    let r = form(p, "PUT", "/v2/keys/dir/key", "value=one");
    assert_eq!(r.status, 201, "{}", r.text());
    let n = r.json();
    assert_eq!(n["action"], "set");
    assert_eq!(n["node"]["value"], "one");
    assert_eq!(n["node"]["modifiedIndex"].as_i64(), Some(index(&r)), "X-Etcd-Index is the new revision");
    for h in ["x-etcd-cluster-id", "x-raft-index", "x-raft-term"] {
        assert!(r.header(h).is_some(), "{h}");
    }

    let r = form(p, "PUT", "/v2/keys/dir/key", "value=two");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["prevNode"]["value"], "one");

    let listing = get(p, "/v2/keys/dir").json();
    assert_eq!(listing["node"]["dir"], true);
    assert_eq!(listing["node"]["nodes"][0]["key"], "/dir/key");

    // create / update / compare-and-swap / compare-and-delete
    let r = form(p, "PUT", "/v2/keys/dir/key?prevExist=false", "value=x");
    assert_eq!((r.status, r.json()["errorCode"].as_i64()), (412, Some(105)));
    let r = form(p, "PUT", "/v2/keys/dir/key?prevValue=nope", "value=x");
    assert_eq!(r.status, 412);
    assert_eq!(r.json()["cause"], "[nope != two]");
    let r = form(p, "PUT", "/v2/keys/dir/key?prevValue=two", "value=three");
    assert_eq!(r.json()["action"], "compareAndSwap");
    let modified = r.json()["node"]["modifiedIndex"].as_i64().unwrap();
    let r = form(p, "DELETE", &format!("/v2/keys/dir/key?prevIndex={}", modified + 100), "");
    assert_eq!(r.json()["cause"], format!("[{} != {modified}]", modified + 100));
    let r = request(p, "DELETE", &format!("/v2/keys/dir/key?prevIndex={modified}"), None, b"");
    assert_eq!(r.json()["action"], "compareAndDelete");

    // the directory outlives its last key, like etcd's
    let r = get(p, "/v2/keys/dir");
    assert_eq!((r.status, r.json()["node"]["dir"].as_bool()), (200, Some(true)));
    let r = request(p, "DELETE", "/v2/keys/dir", None, b"");
    assert_eq!((r.status, r.json()["errorCode"].as_i64()), (403, Some(102)));
    form(p, "PUT", "/v2/keys/dir/again", "value=1");
    let r = request(p, "DELETE", "/v2/keys/dir?dir=true", None, b"");
    assert_eq!((r.status, r.json()["errorCode"].as_i64()), (403, Some(108)));
    let r = request(p, "DELETE", "/v2/keys/dir?recursive=true", None, b"");
    assert_eq!(r.json()["action"], "delete");
    let r = get(p, "/v2/keys/dir");
    assert_eq!((r.status, r.json()["errorCode"].as_i64()), (404, Some(100)));

    // files are not directories and the other way round
    form(p, "PUT", "/v2/keys/file", "value=f");
    let r = form(p, "PUT", "/v2/keys/file/below", "value=x");
    assert_eq!((r.status, r.json()["errorCode"].as_i64(), r.json()["cause"].as_str()), (400, Some(104), Some("/file")));

    // in-order keys: 20-digit names that grow
    let a = form(p, "POST", "/v2/keys/queue", "value=a").json()["node"]["key"].as_str().unwrap().to_string();
    let b = form(p, "POST", "/v2/keys/queue", "value=b").json()["node"]["key"].as_str().unwrap().to_string();
    assert!(a < b && a.len() == "/queue/".len() + 20, "{a} {b}");
    let listing = get(p, "/v2/keys/queue?sorted=true").json();
    let values: Vec<_> = listing["node"]["nodes"].as_array().unwrap().iter().map(|n| n["value"].clone()).collect();
    assert_eq!(values, vec!["a", "b"]);

    // TTLs, refresh
    let r = form(p, "PUT", "/v2/keys/ttl?ttl=30", "value=t");
    let ttl = r.json()["node"]["ttl"].as_i64().unwrap();
    assert!(ttl > 0 && ttl <= 30);
    assert!(r.json()["node"]["expiration"].as_str().is_some());
    let set_index = r.json()["node"]["modifiedIndex"].as_i64().unwrap();
    let r = request(p, "PUT", "/v2/keys/ttl?ttl=30&refresh=true&prevExist=true", None, b"");
    assert_eq!(r.json()["action"], "update");
    assert_eq!(r.json()["node"]["value"], "t", "refresh keeps the value: {}", r.text());
    assert_eq!(r.json()["node"]["modifiedIndex"].as_i64(), Some(set_index), "same TTL: a keep-alive, no new revision");
    let r = request(p, "PUT", "/v2/keys/ttl?ttl=60&refresh=true&prevExist=true", None, b"");
    assert_eq!(r.json()["node"]["value"], "t", "refresh keeps the value: {}", r.text());
    assert!(r.json()["node"]["ttl"].as_i64().unwrap() > 30);
}

#[test]
fn v2_and_v3_share_one_keyspace() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let p = server.port;
    runtime().block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let mut events = c.watch("/app/", Some(WatchOptions::new().with_prefix())).await.unwrap();

        // v2 write -> v3 read and watch; the v2 index is the v3 revision
        let r = form(p, "PUT", "/v2/keys/app/config", "value=from-v2");
        let modified = r.json()["node"]["modifiedIndex"].as_i64().unwrap();
        let g = c.get("/app/config", None).await.unwrap();
        assert_eq!(g.kvs()[0].value(), b"from-v2");
        assert_eq!(g.kvs()[0].mod_revision(), modified);
        let mut seen = Vec::new();
        while !seen.iter().any(|(k, _): &(String, String)| k == "/app/config") {
            let msg = tokio::time::timeout(Duration::from_secs(10), events.message()).await.unwrap().unwrap().unwrap();
            for e in msg.events() {
                let kv = e.kv().unwrap();
                seen.push((kv.key_str().unwrap().to_string(), kv.value_str().unwrap().to_string()));
            }
        }
        assert!(seen.contains(&("/app/config".to_string(), "from-v2".to_string())), "{seen:?}");
        // the parent directory is the marker key "/app/", written in the same revision
        let marker = c.get("/app/", None).await.unwrap();
        assert_eq!(marker.kvs()[0].mod_revision(), modified);

        // v3 write -> v2 read and listing
        c.put("/app/from-v3", "v3-value", None).await.unwrap();
        c.put("/implied/dir/key", "x", None).await.unwrap();
        assert_eq!(get(p, "/v2/keys/app/from-v3").json()["node"]["value"], "v3-value");
        let root = get(p, "/v2/keys/?recursive=true").json();
        let names: Vec<_> = root["node"]["nodes"].as_array().unwrap().iter().map(|n| n["key"].as_str().unwrap().to_string()).collect();
        assert_eq!(names, vec!["/app", "/implied"], "a directory is implied by its keys");
        let implied = get(p, "/v2/keys/implied?recursive=true").json();
        assert_eq!(implied["node"]["nodes"][0]["nodes"][0]["value"], "x");

        // a v2 TTL is a v3 lease
        form(p, "PUT", "/v2/keys/app/session?ttl=60", "value=s");
        let kv = c.get("/app/session", None).await.unwrap().kvs()[0].clone();
        assert_ne!(kv.lease(), 0);
        let ttl = c.lease_time_to_live(kv.lease(), None).await.unwrap().ttl();
        assert!(ttl > 0 && ttl <= 60, "{ttl}");

        // a v2 recursive delete is one v3 revision
        let r = request(p, "DELETE", "/v2/keys/app?recursive=true", None, b"");
        assert_eq!(r.status, 200);
        let left = c.get("/app", Some(GetOptions::new().with_prefix())).await.unwrap();
        assert_eq!(left.count(), 0);
        assert_eq!(left.header().unwrap().revision(), index(&r));
    });
}

#[test]
fn v2_wait_replays_history_and_reports_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let p = server.port;
    let first = form(p, "PUT", "/v2/keys/w", "value=v1").json()["node"]["modifiedIndex"].as_i64().unwrap();
    form(p, "PUT", "/v2/keys/w", "value=v2");
    let r = get(p, &format!("/v2/keys/w?wait=true&waitIndex={first}"));
    assert_eq!(r.json()["node"]["value"], "v1");
    let r = get(p, &format!("/v2/keys/w?wait=true&waitIndex={}", first + 1));
    assert_eq!((r.json()["node"]["value"].as_str(), r.json()["prevNode"]["value"].as_str()), (Some("v2"), Some("v1")));

    // a long poll answers the next change
    let waiter = std::thread::spawn(move || get(p, "/v2/keys/w?wait=true"));
    std::thread::sleep(Duration::from_millis(300));
    request(p, "DELETE", "/v2/keys/w", None, b"");
    let r = waiter.join().unwrap();
    assert_eq!(r.json()["action"], "delete");

    runtime().block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let rev = c.get("x", None).await.unwrap().header().unwrap().revision();
        c.compact(rev, None).await.unwrap();
    });
    let r = get(p, &format!("/v2/keys/w?wait=true&waitIndex={first}"));
    assert_eq!(r.status, 400);
    let e = r.json();
    assert_eq!(e["errorCode"], 401);
    assert_eq!(e["message"], "The event in requested index is outdated and cleared");
    assert!(e["cause"].as_str().unwrap().starts_with("the requested history has been cleared"), "{e}");
}

#[test]
fn v2_bad_input_is_refused_and_nothing_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let p = server.port;
    let cases = [
        ("PUT", "/v2/keys/bad%zzpath", "value=1", 400, 210),
        ("PUT", "/v2/keys/a?ttl=abc", "value=1", 400, 202),
        ("PUT", "/v2/keys/a?ttl=-5", "value=1", 400, 202),
        ("PUT", "/v2/keys/a?prevIndex=x", "value=1", 400, 203),
        ("PUT", "/v2/keys/a?prevExist=maybe", "value=1", 400, 209),
        ("PUT", "/v2/keys/a?dir=2", "value=1", 400, 209),
        ("GET", "/v2/keys/a?waitIndex=-1&wait=true", "", 400, 203),
        ("PUT", "/v2/keys/", "value=1", 400, 107),
    ];
    for (method, path, body, status, code) in cases {
        let r = form(p, method, path, body);
        assert_eq!((r.status, r.json()["errorCode"].as_i64()), (status, Some(code)), "{method} {path}: {}", r.text());
    }
    // a value over --max-request-bytes (refused by the core) and a body over the read limit
    let big = format!("value={}", "x".repeat(1536 * 1024 + 1));
    let r = form(p, "PUT", "/v2/keys/big", &big);
    assert_eq!((r.status, r.json()["errorCode"].as_i64()), (413, Some(210)), "{}", r.text());
    assert_eq!(r.json()["cause"], "etcdserver: request is too large");
    let huge = format!("value={}", "x".repeat(4 << 20));
    let r = form(p, "PUT", "/v2/keys/huge", &huge);
    assert_eq!((r.status, r.json()["errorCode"].as_i64()), (413, Some(210)), "{}", r.text());
    assert_eq!(get(p, "/v2/keys/?recursive=true").json()["node"].get("nodes"), None, "nothing stored");
    runtime().block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();
        let all = c.get("\0", Some(GetOptions::new().with_from_key())).await.unwrap();
        assert_eq!(all.count(), 0);
    });
}

#[test]
fn v2_members_add_list_remove() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let p = server.port;

    let r = get(p, "/v2/members");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["members"].as_array().map(Vec::len), Some(1), "{}", r.text());

    let r = request(p, "POST", "/v2/members", Some("application/json"), b"{not json");
    assert_eq!(r.status, 400, "{}", r.text());
    let r = request(p, "POST", "/v2/members", Some("application/json"), br#"{"peerURLs":["nope"]}"#);
    assert_eq!(r.status, 400, "{}", r.text());

    let r = request(p, "POST", "/v2/members", Some("application/json"), br#"{"peerURLs":["http://127.0.0.1:9"]}"#);
    assert_eq!(r.status, 201, "{}", r.text());
    let id = r.json()["id"].as_str().expect("hex id").to_string();
    assert_eq!(r.json()["peerURLs"], serde_json::json!(["http://127.0.0.1:9"]));
    // The same peer URL again is a conflict.
    let r = request(p, "POST", "/v2/members", Some("application/json"), br#"{"peerURLs":["http://127.0.0.1:9"]}"#);
    assert_eq!(r.status, 409, "{}", r.text());
    assert_eq!(get(p, "/v2/members").json()["members"].as_array().map(Vec::len), Some(2));

    let r = request(p, "DELETE", &format!("/v2/members/{id}"), None, b"");
    assert_eq!(r.status, 204, "{}", r.text());
    let r = request(p, "DELETE", &format!("/v2/members/{id}"), None, b"");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(get(p, "/v2/members").json()["members"].as_array().map(Vec::len), Some(1));
}
