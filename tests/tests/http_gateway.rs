//! etcd's v3 JSON gateway on the client port of a real cairn process, next to gRPC: KV, txn,
//! watch and lease-keepalive streams, leases, the error shape, size limits, health/version.

mod http_client;

use cairn_tests::{runtime, Cairn};
use etcd_client::Client;
use http_client::{b64, get, post_json, request, LineStream};
use serde_json::json;

fn rev(v: &serde_json::Value) -> i64 {
    v["header"]["revision"].as_str().expect("int64 as a string").parse().unwrap()
}

#[test]
fn gateway_kv_txn_watch_and_leases_share_the_grpc_port() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let port = server.port;
    runtime().block_on(async {
        let mut c = Client::connect([server.url()], None).await.unwrap();

        // put through the gateway, read through gRPC
        let r = post_json(port, "/v3/kv/put", &json!({"key": b64("k"), "value": b64("v1")}));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("content-type"), Some("application/json"));
        let put_rev = rev(&r.json());
        let g = c.get("k", None).await.unwrap();
        assert_eq!((g.kvs()[0].value(), g.kvs()[0].mod_revision()), (&b"v1"[..], put_rev));

        // put through gRPC, range through the gateway: base64 bytes, int64 as strings
        let p = c.put("k2", "v2", None).await.unwrap();
        let r = post_json(port, "/v3/kv/range", &json!({"key": b64("k"), "rangeEnd": b64("l"), "sort_order": "DESCEND"}));
        let body = r.json();
        assert_eq!(body["count"], "2");
        assert_eq!(body["kvs"][0]["key"], b64("k2"));
        assert_eq!(body["kvs"][0]["value"], b64("v2"));
        assert_eq!(body["kvs"][0]["mod_revision"], p.header().unwrap().revision().to_string());
        assert_eq!(body["kvs"][0]["version"], "1");

        // txn: create-if-absent succeeds once
        let txn = json!({
            "compare": [{"key": b64("once"), "result": "EQUAL", "target": "CREATE", "create_revision": "0"}],
            "success": [{"request_put": {"key": b64("once"), "value": b64("first")}}],
            "failure": [{"requestRange": {"key": b64("once")}}]
        });
        let first = post_json(port, "/v3/kv/txn", &txn).json();
        assert_eq!(first["succeeded"], true);
        let second = post_json(port, "/v3/kv/txn", &txn).json();
        assert!(second.get("succeeded").is_none(), "false is left out: {second}");
        assert_eq!(second["responses"][0]["response_range"]["kvs"][0]["value"], b64("first"));

        // watch stream: created, then each change as {"result": ...}
        let watch_req = json!({"create_request": {"key": b64("w"), "prev_kv": true}}).to_string();
        let mut w = LineStream::open(port, "POST", "/v3/watch", Some("application/json"), watch_req.as_bytes());
        assert_eq!(w.status, 200);
        let created = w.next_json().expect("created");
        assert_eq!(created["result"]["created"], true, "{created}");
        c.put("w", "a", None).await.unwrap();
        let p = c.put("w", "b", None).await.unwrap();
        let mut events = Vec::new();
        while events.len() < 2 {
            let msg = w.next_json().expect("an event");
            events.extend(msg["result"]["events"].as_array().cloned().unwrap_or_default());
        }
        assert_eq!(events[0]["kv"]["value"], b64("a"));
        assert_eq!(events[1]["kv"]["value"], b64("b"));
        assert_eq!(events[1]["prev_kv"]["value"], b64("a"));
        assert_eq!(events[1]["kv"]["mod_revision"], p.header().unwrap().revision().to_string());
        c.delete("w", None).await.unwrap();
        let msg = w.next_json().expect("the delete");
        assert_eq!(msg["result"]["events"][0]["type"], "DELETE");
        drop(w);

        // leases: grant, attach, time-to-live with keys, keep-alive stream, revoke
        let g = post_json(port, "/v3/lease/grant", &json!({"TTL": "60"})).json();
        let id = g["ID"].as_str().expect("lease ID as a string").to_string();
        assert_eq!(g["TTL"], "60");
        assert_eq!(post_json(port, "/v3/kv/put", &json!({"key": b64("leased"), "value": b64("x"), "lease": id})).status, 200);
        let ttl = post_json(port, "/v3/lease/timetolive", &json!({"ID": id, "keys": true})).json();
        assert_eq!(ttl["keys"], json!([b64("leased")]));
        assert_eq!(ttl["grantedTTL"], "60");
        let ka_req = json!({"ID": id}).to_string();
        let mut ka = LineStream::open(port, "POST", "/v3/lease/keepalive", None, ka_req.as_bytes());
        let renewed = ka.next_json().expect("keepalive answer");
        assert_eq!(renewed["result"]["TTL"], "60", "{renewed}");
        drop(ka);
        let leases = post_json(port, "/v3/lease/leases", &json!({})).json();
        assert!(leases["leases"].as_array().unwrap().iter().any(|l| l["ID"] == id.as_str()), "{leases}");
        assert_eq!(post_json(port, "/v3/lease/revoke", &json!({"ID": id})).status, 200);
        assert!(c.get("leased", None).await.unwrap().kvs().is_empty(), "revoking deleted the key");

        // lock and election recipes
        let session = post_json(port, "/v3/lease/grant", &json!({"TTL": 60})).json()["ID"].as_str().unwrap().to_string();
        let lock = post_json(port, "/v3/lock/lock", &json!({"name": b64("mylock"), "lease": session})).json();
        let lock_key = lock["key"].as_str().expect("lock key").to_string();
        assert!(c.get(http_client::unb64(&lock_key), None).await.unwrap().count() == 1, "the lock key exists");
        assert_eq!(post_json(port, "/v3/lock/unlock", &json!({"key": lock_key})).status, 200);
        let won = post_json(port, "/v3/election/campaign", &json!({"name": b64("el"), "lease": session, "value": b64("me")})).json();
        assert_eq!(won["leader"]["name"], b64("el"));
        let leader = post_json(port, "/v3/election/leader", &json!({"name": b64("el")})).json();
        assert_eq!(leader["kv"]["value"], b64("me"));
        let observe_req = json!({"name": b64("el")}).to_string();
        let mut observe = LineStream::open(port, "POST", "/v3/election/observe", None, observe_req.as_bytes());
        assert_eq!(observe.next_json().expect("the current leader")["result"]["kv"]["value"], b64("me"));
        drop(observe);

        // cluster and maintenance reach the same services
        let members = post_json(port, "/v3/cluster/member/list", &json!({})).json();
        assert_eq!(members["members"].as_array().unwrap().len(), 1);
        let status = post_json(port, "/v3/maintenance/status", &json!({})).json();
        assert_eq!(status["leader"], status["header"]["member_id"]);

        // gRPC still works after all that HTTP/1.1 on the same port
        assert_eq!(c.get("k2", None).await.unwrap().kvs()[0].value(), b"v2");
    });
}

#[test]
fn gateway_errors_have_etcds_shape_and_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let port = server.port;

    let r = post_json(port, "/v3/kv/put", &json!({"key": ""}));
    assert_eq!(r.status, 400);
    assert_eq!(
        r.text(),
        r#"{"error":"etcdserver: key is not provided","message":"etcdserver: key is not provided","code":3}"#
    );
    let r = post_json(port, "/v3/kv/range", &json!({"key": b64("a"), "revision": "1000"}));
    assert_eq!((r.status, r.json()["code"].as_i64()), (400, Some(11)), "{}", r.text());
    let r = post_json(port, "/v3/lease/revoke", &json!({"ID": 99}));
    assert_eq!((r.status, r.json()["code"].as_i64()), (404, Some(5)));
    // Membership through the gateway: a malformed peer URL is etcd's InvalidArgument; a good
    // one is added (and removed again).
    let r = post_json(port, "/v3/cluster/member/add", &json!({"peerURLs": ["not a url"]}));
    assert_eq!((r.status, r.json()["code"].as_i64()), (400, Some(3)), "{}", r.text());
    assert_eq!(r.json()["message"], "etcdserver: given member URLs are invalid");
    let r = post_json(port, "/v3/cluster/member/add", &json!({"peerURLs": ["http://127.0.0.1:1"]}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["member"]["peerURLs"], json!(["http://127.0.0.1:1"]));
    let id = r.json()["member"]["ID"].as_str().expect("member id as a string").to_string();
    let r = post_json(port, "/v3/cluster/member/remove", &json!({"ID": id}));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["members"].as_array().map(Vec::len), Some(1), "{}", r.text());

    // malformed input: the protocol's error, nothing stored
    for bad in [r#"{"key": "!!!", "value": "eA=="}"#, r#"{"key": "YQ==", "value": "eA==""#, r#"{"key": "YQ==", "lease": "abc"}"#, "not json"] {
        let r = request(port, "POST", "/v3/kv/put", Some("application/json"), bad.as_bytes());
        assert_eq!(r.status, 400, "{bad}: {}", r.text());
        let body = r.json();
        assert_eq!(body["code"], 3, "{bad}");
        assert_eq!(body["error"], body["message"]);
    }
    // a body over --max-request-bytes + 512 KiB is refused before it is parsed
    let huge = json!({"key": b64("huge"), "value": "A".repeat(4 << 20)}).to_string();
    let r = request(port, "POST", "/v3/kv/put", Some("application/json"), huge.as_bytes());
    assert_eq!((r.status, r.json()["code"].as_i64()), (413, Some(8)), "{}", r.text());
    // a value just over --max-request-bytes (base64: 4/3 larger): decoded, then refused by
    // the core as etcd does
    let big = json!({"key": b64("big"), "value": "A".repeat((1536 * 1024 + 1024) / 3 * 4)}).to_string();
    let r = request(port, "POST", "/v3/kv/put", Some("application/json"), big.as_bytes());
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["message"], "etcdserver: request is too large");
    let all = post_json(port, "/v3/kv/range", &json!({"key": "AA==", "range_end": "AA=="})).json();
    assert!(all.get("kvs").is_none(), "nothing was stored: {all}");

    assert_eq!(request(port, "GET", "/v3/kv/range", None, b"").status, 405);
    let r = get(port, "/no/such/path");
    assert_eq!((r.status, r.text().as_str()), (404, "404 page not found\n"));

    let v = get(port, "/version").json();
    assert_eq!(v["etcdcluster"], "3.5.0");
    assert!(v["etcdserver"].as_str().unwrap().starts_with("3."));
    assert_eq!(get(port, "/health").json()["health"], "true");
    assert_eq!((get(port, "/livez").status, get(port, "/readyz").text().as_str()), (200, "ok"));
}
