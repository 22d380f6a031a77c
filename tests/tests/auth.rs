//! Auth on a real cairn process: one set of users and permissions (made through etcd's Auth
//! service) guards every protocol: gRPC tokens, watches, the JSON gateway's Authorization
//! header, v2 basic auth and RESP's AUTH; tokens any member accepts, and which die with the
//! password they were issued under and with `auth disable`.
//! (etcdctl against Cairn and real etcd 3.4, allowed and denied alike: compat-tests/test_auth_etcdctl.py.)

mod http_client;
mod resp_support;

use std::time::Duration;

use cairn_tests::cluster::{Backend, Cluster};
use cairn_tests::{runtime, Cairn};
use etcd_client::{Client, ConnectOptions, GetOptions, Permission, WatchOptions};
use resp_support::Resp;

/// root (root role) and alice, who may read and write under `/app/`.
async fn set_up_users(url: &str) {
    let mut c = Client::connect([url], None).await.unwrap();
    c.user_add("root", "rootpw", None).await.unwrap();
    c.role_add("root").await.unwrap();
    c.user_grant_role("root", "root").await.unwrap();
    c.user_add("alice", "alicepw", None).await.unwrap();
    c.role_add("app").await.unwrap();
    c.role_grant_permission("app", Permission::read_write("/app/").with_prefix()).await.unwrap();
    c.user_grant_role("alice", "app").await.unwrap();
    c.put("/other", "secret", None).await.unwrap();
    c.auth_enable().await.unwrap();
}

async fn as_user(url: &str, user: &str, password: &str) -> Client {
    Client::connect([url], Some(ConnectOptions::new().with_user(user, password))).await.unwrap()
}

/// An HTTP/1.1 request with extra headers to the member at `url`; (status, body).
fn http(url: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let port = url.rsplit(':').next().and_then(|p| p.parse().ok()).expect("a port in the URL");
    let content_type = (method != "GET").then_some("application/json");
    let reply = http_client::request_with_headers(port, method, path, content_type, headers, body.as_bytes());
    (reply.status, reply.text())
}

fn token(url: &str, user: &str, password: &str) -> String {
    let (status, body) = http(url, "POST", "/v3/auth/authenticate", &[], &format!(r#"{{"name":"{user}","password":"{password}"}}"#));
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["token"].as_str().expect("a token").to_string()
}

/// `/v3/kv/range` of `key` with `token` (base64 of "/app/x" and "/other" below).
fn gateway_range(url: &str, token: Option<&str>, key_b64: &str) -> (u16, String) {
    let headers: Vec<(&str, &str)> = token.map(|t| ("Authorization", t)).into_iter().collect();
    http(url, "POST", "/v3/kv/range", &headers, &format!(r#"{{"key":"{key_b64}"}}"#))
}

const APP_X: &str = "L2FwcC94";
const OTHER: &str = "L290aGVy";

#[test]
fn one_set_of_users_guards_every_protocol() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let url = server.url();
    runtime().block_on(async {
        set_up_users(&url).await;

        // gRPC with a token (etcd-client authenticates and sends the `token` metadata).
        let mut alice = as_user(&url, "alice", "alicepw").await;
        alice.put("/app/x", "1", None).await.unwrap();
        assert_eq!(alice.get("/app/x", None).await.unwrap().kvs()[0].value(), b"1");
        let denied = alice.put("/other", "mine", None).await.unwrap_err().to_string();
        assert!(denied.contains("etcdserver: permission denied"), "{denied}");
        let denied = alice.get("/", Some(GetOptions::new().with_prefix())).await.unwrap_err().to_string();
        assert!(denied.contains("etcdserver: permission denied"), "a range wider than the permission: {denied}");
        let mut anonymous = Client::connect([url.as_str()], None).await.unwrap();
        let refused = anonymous.get("/app/x", None).await.unwrap_err().to_string();
        assert!(refused.contains("etcdserver: user name is empty"), "{refused}");
        let wrong = Client::connect([url.as_str()], Some(ConnectOptions::new().with_user("alice", "nope"))).await;
        let wrong = wrong.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(wrong.contains("authentication failed, invalid user ID or password"), "{wrong}");

        // Watches: refused outside the permission (canceled at creation, as etcd), served inside.
        let mut stream = alice.watch("/other", None).await.unwrap();
        let created = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
        assert!(created.canceled(), "a watch on a key alice may not read is canceled");
        assert_eq!(created.cancel_reason(), "etcdserver: permission denied");
        let mut stream = alice.watch("/app/", Some(WatchOptions::new().with_prefix())).await.unwrap();
        let created = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
        assert!(created.created() && !created.canceled());
        alice.put("/app/w", "2", None).await.unwrap();
        let event = tokio::time::timeout(Duration::from_secs(10), stream.message()).await.unwrap().unwrap().unwrap();
        assert_eq!(event.events()[0].kv().unwrap().key(), b"/app/w");
    });

    // The JSON gateway: the token in the Authorization header.
    let t = token(&url, "alice", "alicepw");
    let (status, body) = gateway_range(&url, Some(&t), APP_X);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"count\":\"1\""), "{body}");
    let (status, body) = gateway_range(&url, Some(&format!("Bearer {t}")), APP_X);
    assert_eq!(status, 200, "a Bearer prefix is accepted too: {body}");
    let (status, body) = gateway_range(&url, Some(&t), OTHER);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("etcdserver: permission denied"), "{body}");
    let (status, body) = gateway_range(&url, None, APP_X);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("etcdserver: user name is empty"), "{body}");
    let (status, body) = gateway_range(&url, Some("forged.1.00"), APP_X);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("etcdserver: invalid auth token"), "{body}");
    let (status, body) = http(&url, "POST", "/v3/auth/user/list", &[("Authorization", &t)], "{}");
    assert_eq!(status, 403, "listing users needs root: {body}");
    let root = token(&url, "root", "rootpw");
    let (status, body) = http(&url, "POST", "/v3/auth/user/list", &[("Authorization", &root)], "{}");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"alice\"") && body.contains("\"root\""), "{body}");

    // etcd v2: HTTP basic auth, against the same users and key permissions.
    let alice_basic = "Basic YWxpY2U6YWxpY2Vwdw=="; // alice:alicepw
    let (status, body) = http(&url, "GET", "/v2/keys/app/x", &[("Authorization", alice_basic)], "");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"value\":\"1\""), "{body}");
    let (status, body) = http(&url, "GET", "/v2/keys/other", &[("Authorization", alice_basic)], "");
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("\"errorCode\":110"), "{body}");
    let (status, _) = http(&url, "GET", "/v2/keys/app/x", &[], "");
    assert_eq!(status, 401, "no credentials");
    let (status, _) = http(&url, "GET", "/v2/keys/app/x", &[("Authorization", "Basic YWxpY2U6bm9wZQ==")], "");
    assert_eq!(status, 401, "a wrong password");

    // RESP: NOAUTH until AUTH, WRONGPASS, NOPERM, ACL WHOAMI.
    let mut r = Resp::connect(&server.redis_addr());
    assert_eq!(r.cmd(&["GET", "/app/x"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(r.cmd(&["PING"]), "-NOAUTH Authentication required.\r\n");
    assert_eq!(r.cmd(&["AUTH", "alice", "nope"]), "-WRONGPASS invalid username-password pair or user is disabled.\r\n");
    assert_eq!(r.cmd(&["AUTH", "alice", "alicepw"]), "+OK\r\n");
    assert_eq!(r.cmd(&["ACL", "WHOAMI"]), "$5\r\nalice\r\n");
    assert_eq!(r.cmd(&["GET", "/app/x"]), "$1\r\n1\r\n");
    assert_eq!(r.cmd(&["SET", "/app/r", "v"]), "+OK\r\n");
    assert!(r.cmd(&["SET", "/other", "v"]).starts_with("-NOPERM"));
    assert!(r.cmd(&["GET", "/other"]).starts_with("-NOPERM"));
    assert!(r.cmd(&["KEYS", "*"]).starts_with("-NOPERM"), "KEYS reads every key");
    assert_eq!(r.cmd(&["MULTI"]), "+OK\r\n");
    assert!(r.cmd(&["SET", "/other", "v"]).starts_with("-NOPERM"));
    assert!(r.cmd(&["EXEC"]).starts_with("-EXECABORT"), "a refused command dooms the transaction");
    let mut r = Resp::connect(&server.redis_addr());
    assert!(r.cmd(&["HELLO", "2", "AUTH", "root", "rootpw"]).starts_with('*'), "HELLO AUTH logs in");
    assert_eq!(r.cmd(&["GET", "/other"]), "$6\r\nsecret\r\n");
    assert!(r.cmd(&["KEYS", "*"]).contains("/other"));
    assert_eq!(r.cmd(&["RESET"]), "+RESET\r\n");
    assert_eq!(r.cmd(&["GET", "/other"]), "-NOAUTH Authentication required.\r\n", "RESET logs out");
}

#[test]
fn tokens_work_on_every_member_and_die_with_their_password_and_auth_disable() {
    let mut cluster = Cluster::start(Backend::Cairn, 3);
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i)).collect();
    runtime().block_on(async {
        set_up_users(&urls[0]).await;
        let mut alice = as_user(&urls[0], "alice", "alicepw").await;
        alice.put("/app/x", "1", None).await.unwrap();
    });
    // Issued by member 0, accepted by every member (a token is signed with a key the cluster
    // agreed on when auth was enabled).
    let t = token(&urls[0], "alice", "alicepw");
    for url in &urls {
        let (status, body) = gateway_range(url, Some(&t), APP_X);
        assert_eq!(status, 200, "{url}: {body}");
    }
    // A new password invalidates the tokens issued under the old one, on every member.
    let root = token(&urls[1], "root", "rootpw");
    let (status, body) = http(&urls[1], "POST", "/v3/auth/user/changepw", &[("Authorization", &root)], r#"{"name":"alice","password":"new"}"#);
    assert_eq!(status, 200, "{body}");
    for url in &urls {
        // The change is applied on every member shortly after it commits.
        let mut last = (0, String::new());
        for _ in 0..50 {
            last = gateway_range(url, Some(&t), APP_X);
            if last.0 == 401 {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(last.0, 401, "{url}: {}", last.1);
        assert!(last.1.contains("etcdserver: invalid auth token"), "{}", last.1);
    }
    let (status, body) = http(&urls[2], "POST", "/v3/auth/authenticate", &[], r#"{"name":"alice","password":"alicepw"}"#);
    assert_eq!(status, 400, "the old password is refused: {body}");
    assert!(body.contains("authentication failed, invalid user ID or password"), "{body}");

    // Disabling auth ends every token; enabling it again does not bring them back.
    let t = token(&urls[2], "alice", "new");
    let (status, _) = http(&urls[0], "POST", "/v3/auth/disable", &[("Authorization", &root)], "{}");
    assert_eq!(status, 200);
    let (status, body) = gateway_range(&urls[0], None, APP_X);
    assert_eq!(status, 200, "auth off: anyone reads: {body}");
    let (status, body) = http(&urls[0], "POST", "/v3/auth/authenticate", &[], r#"{"name":"alice","password":"new"}"#);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("authentication is not enabled"), "{body}");
    let (status, body) = http(&urls[0], "POST", "/v3/auth/enable", &[], "{}");
    assert_eq!(status, 200, "{body}");
    let mut last = (0, String::new());
    for _ in 0..50 {
        last = gateway_range(&urls[1], Some(&t), APP_X);
        if last.0 == 401 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(last.0, 401, "a token from before auth disable: {}", last.1);
    cluster.kill9_all();
}

#[test]
fn the_proxy_passes_tokens_through_and_never_shares_a_watch_or_cached_read_across_users() {
    let dir = tempfile::tempdir().unwrap();
    let server = Cairn::start(&dir.path().join("data"));
    let url = server.url();
    let proxy = cairn_tests::proxy::Proxy::start(std::slice::from_ref(&url), &["--serializable-read-cache-ttl", "10s"]);
    let purl = proxy.url();
    runtime().block_on(async {
        set_up_users(&url).await;
        // etcd's Auth service through the proxy: etcd-client authenticates there.
        let mut root = as_user(&purl, "root", "rootpw").await;
        let users = root.user_list().await.unwrap();
        assert_eq!(users.users(), ["alice", "root"]);
        let mut alice = as_user(&purl, "alice", "alicepw").await;
        alice.put("/app/x", "1", None).await.unwrap();
        let denied = alice.put("/other", "mine", None).await.unwrap_err().to_string();
        assert!(denied.contains("etcdserver: permission denied"), "{denied}");

        // A serializable read root made is cached; alice's same read is not served from it.
        let serializable = || Some(GetOptions::new().with_serializable());
        assert_eq!(root.get("/other", serializable()).await.unwrap().kvs()[0].value(), b"secret");
        let denied = alice.get("/other", serializable()).await.unwrap_err().to_string();
        assert!(denied.contains("etcdserver: permission denied"), "the cache is per token: {denied}");

        // Root's watch on /other is not shared with alice, whose own watch is refused.
        let mut root_watch = root.watch("/other", None).await.unwrap();
        let created = tokio::time::timeout(Duration::from_secs(10), root_watch.message()).await.unwrap().unwrap().unwrap();
        assert!(created.created() && !created.canceled());
        let mut alice_watch = alice.watch("/other", None).await.unwrap();
        let created = tokio::time::timeout(Duration::from_secs(10), alice_watch.message()).await.unwrap().unwrap().unwrap();
        assert!(created.canceled(), "alice may not watch /other through the proxy either");
        assert_eq!(created.cancel_reason(), "etcdserver: permission denied");
        let mut anonymous = Client::connect([purl.as_str()], None).await.unwrap();
        let refused = anonymous.get("/app/x", None).await.unwrap_err().to_string();
        assert!(refused.contains("etcdserver: user name is empty"), "{refused}");
    });
    // The JSON gateway through the proxy: the Authorization header's token goes on.
    let t = token(&purl, "alice", "alicepw");
    assert_eq!(gateway_range(&purl, Some(&t), APP_X).0, 200);
    let (status, body) = gateway_range(&purl, Some(&t), OTHER);
    assert_eq!(status, 403, "{body}");
    let (status, body) = gateway_range(&purl, None, APP_X);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("etcdserver: user name is empty"), "{body}");
}

#[test]
fn idle_tokens_expire_and_refusals_are_logged() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Cairn::start_with(&dir.path().join("data"), &["--auth-token-ttl", "2"]);
    let url = server.url();
    runtime().block_on(set_up_users(&url));
    let t = token(&url, "alice", "alicepw");
    // Used within the TTL, the token lives on (each use renews it).
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(1200));
        let (status, body) = gateway_range(&url, Some(&t), APP_X);
        assert_eq!(status, 200, "{body}");
    }
    std::thread::sleep(Duration::from_millis(3000));
    let (status, body) = gateway_range(&url, Some(&t), APP_X);
    assert_eq!(status, 401, "idle longer than --auth-token-ttl: {body}");
    assert!(body.contains("etcdserver: invalid auth token"), "{body}");
    let (status, _) = http(&url, "POST", "/v3/auth/authenticate", &[], r#"{"name":"mallory","password":"x"}"#);
    assert_eq!(status, 400, "an unknown user");
    server.stop();
    let log = server.log();
    assert!(log.contains("refused an invalid or expired auth token"), "{log}");
    assert!(log.contains("authentication failed: no such user"), "{log}");
}
