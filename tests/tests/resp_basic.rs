//! RESP front door against a real cairn process: Redis's replies byte for byte, pipelining,
//! inline commands, bad input, many connections, TTLs as leases, WATCH/MULTI/EXEC and
//! keyspace notifications.

mod resp_support;

use std::time::{Duration, Instant};

use cairn_tests::{runtime, Cairn};
use resp_support::{encode, Resp};

fn server() -> (tempfile::TempDir, Cairn) {
    let dir = tempfile::tempdir().unwrap();
    let s = Cairn::start(&dir.path().join("data"));
    (dir, s)
}

/// Polls `f` until it is true (the deadline is generous: only correctness is checked).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn string_commands_reply_like_redis() {
    let (_d, s) = server();
    let mut c = Resp::connect(&s.redis_addr());
    let steps: &[(&[&str], &str)] = &[
        (&["PING"], "+PONG\r\n"),
        (&["PING", "hi"], "$2\r\nhi\r\n"),
        (&["ECHO", "x y"], "$3\r\nx y\r\n"),
        (&["GET", "k"], "$-1\r\n"),
        (&["SET", "k", "v"], "+OK\r\n"),
        (&["GET", "k"], "$1\r\nv\r\n"),
        (&["SET", "k", "w", "GET"], "$1\r\nv\r\n"),
        (&["SET", "k", "x", "NX"], "$-1\r\n"),
        (&["SET", "n", "x", "XX"], "$-1\r\n"),
        (&["SET", "k", "1", "NX", "XX"], "-ERR syntax error\r\n"),
        (&["SET", "k", "1", "EX", "0"], "-ERR invalid expire time in 'set' command\r\n"),
        (&["SET", "k", "1", "EX", "x"], "-ERR value is not an integer or out of range\r\n"),
        (&["SETNX", "k", "1"], ":0\r\n"),
        (&["GETSET", "k", "5"], "$1\r\nw\r\n"),
        (&["INCR", "k"], ":6\r\n"),
        (&["INCRBY", "k", "10"], ":16\r\n"),
        (&["DECRBY", "k", "20"], ":-4\r\n"),
        (&["DECR", "k"], ":-5\r\n"),
        (&["INCRBY", "k", "x"], "-ERR value is not an integer or out of range\r\n"),
        (&["APPEND", "k", "0"], ":3\r\n"),
        (&["STRLEN", "k"], ":3\r\n"),
        (&["INCR", "k"], ":-49\r\n"),
        (&["SET", "big", "9223372036854775807"], "+OK\r\n"),
        (&["INCR", "big"], "-ERR increment or decrement would overflow\r\n"),
        (&["SET", "s", "abc"], "+OK\r\n"),
        (&["INCR", "s"], "-ERR value is not an integer or out of range\r\n"),
        (&["MSET", "a", "1", "b", "2"], "+OK\r\n"),
        (&["MGET", "a", "nope", "b"], "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n"),
        (&["MSETNX", "a", "9", "c", "3"], ":0\r\n"),
        (&["MSETNX", "c", "3", "d", "4"], ":1\r\n"),
        (&["MSET", "a"], "-ERR wrong number of arguments for 'mset' command\r\n"),
        (&["EXISTS", "a", "a", "nope"], ":2\r\n"),
        (&["DEL", "a", "a", "nope"], ":1\r\n"),
        (&["UNLINK", "b", "c"], ":2\r\n"),
        (&["GETDEL", "d"], "$1\r\n4\r\n"),
        (&["GETDEL", "d"], "$-1\r\n"),
        (&["TYPE", "s"], "+string\r\n"),
        (&["TYPE", "d"], "+none\r\n"),
        (&["SELECT", "0"], "+OK\r\n"),
        (&["GET"], "-ERR wrong number of arguments for 'get' command\r\n"),
        (&["FOO", "bar"], "-ERR unknown command 'FOO', with args beginning with: 'bar' \r\n"),
        (&["HSET", "h", "f", "v"], "-ERR unknown command 'HSET', with args beginning with: 'h' 'f' 'v' \r\n"),
    ];
    for (args, want) in steps {
        assert_eq!(c.cmd(args), *want, "{args:?}");
    }
}

#[test]
fn pipelined_and_inline_commands_answer_in_order() {
    let (_d, s) = server();
    let mut c = Resp::connect(&s.redis_addr());
    let mut batch = Vec::new();
    for i in 0..200 {
        batch.extend(encode(&[b"SET", format!("p{i}").as_bytes(), i.to_string().as_bytes()]));
        batch.extend(encode(&[b"INCR", format!("p{i}").as_bytes()]));
    }
    c.send(&batch);
    for i in 0..200 {
        assert_eq!(c.frame(), b"+OK\r\n");
        assert_eq!(String::from_utf8(c.frame()).unwrap(), format!(":{}\r\n", i + 1));
    }
    // Inline (telnet-style) commands, with quotes and a blank line in between.
    c.send(b"set \"a b\" 'c d'\r\n\r\nget \"a b\"\nEXISTS a\r\n");
    assert_eq!(c.frame(), b"+OK\r\n");
    assert_eq!(c.frame(), b"$3\r\nc d\r\n");
    assert_eq!(c.frame(), b":0\r\n");
}

#[test]
fn bad_input_gets_redis_errors_and_the_server_keeps_serving() {
    let (_d, s) = server();
    let cases: &[(&[u8], &[u8])] = &[
        (b"*x\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"*1\r\n$x\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*1\r\n+a\r\n", b"-ERR Protocol error: expected '$', got '+'\r\n"),
        (b"*1\r\n$999999999999\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1572865\r\n", b"-ERR Protocol error: invalid bulk length\r\n"),
        (b"*99999999999\r\n", b"-ERR Protocol error: invalid multibulk length\r\n"),
        (b"\"unbalanced\r\n", b"-ERR Protocol error: unbalanced quotes in request\r\n"),
        (b"PING\r\n*1\r\n$-5\r\n", b"+PONG\r\n-ERR Protocol error: invalid bulk length\r\n"),
    ];
    for (input, want) in cases {
        let mut c = Resp::connect(&s.redis_addr());
        c.send(input);
        // Redis answers the error, then closes the connection.
        assert_eq!(String::from_utf8_lossy(&c.until_closed()), String::from_utf8_lossy(want), "{:?}", String::from_utf8_lossy(input));
    }
    // An inline line longer than 64 KiB without a newline.
    let mut c = Resp::connect(&s.redis_addr());
    c.send(&vec![b'a'; 70 * 1024]);
    assert_eq!(c.until_closed(), b"-ERR Protocol error: too big inline request\r\n");
    // Values up to --max-request-bytes are fine.
    let mut c = Resp::connect(&s.redis_addr());
    let value = "v".repeat(1024 * 1024);
    assert_eq!(c.cmd(&["SET", "large", &value]), "+OK\r\n");
    assert_eq!(c.int(&["STRLEN", "large"]), 1024 * 1024);
    // An APPEND growing a value past the limit gets Redis's size error.
    let value = "v".repeat(600 * 1024);
    assert_eq!(c.cmd(&["APPEND", "large", &value]), "-ERR string exceeds maximum allowed size (proto-max-bulk-len)\r\n");
    assert_eq!(c.int(&["STRLEN", "large"]), 1024 * 1024, "the refused APPEND changed nothing");
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
}

#[test]
fn many_connections_increment_one_counter_exactly() {
    let (_d, s) = server();
    let addr = s.redis_addr();
    let threads: Vec<_> = (0..16)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut c = Resp::connect(&addr);
                for _ in 0..25 {
                    c.int(&["INCR", "counter"]);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut c = Resp::connect(&addr);
    assert_eq!(c.cmd(&["GET", "counter"]), "$3\r\n400\r\n", "every INCR counted once");
}

#[test]
fn ttl_is_a_lease_that_expires_and_does_not_leak() {
    let (_d, s) = server();
    let mut c = Resp::connect(&s.redis_addr());
    assert_eq!(c.cmd(&["SET", "t", "v", "EX", "100"]), "+OK\r\n");
    let ttl = c.int(&["TTL", "t"]);
    assert!((1..=100).contains(&ttl), "TTL {ttl}");
    let pttl = c.int(&["PTTL", "t"]);
    assert!((1..=100_000).contains(&pttl), "PTTL {pttl}");
    // Overwriting with a new TTL revokes the old lease: one lease in the store.
    assert_eq!(c.cmd(&["SET", "t", "v", "EX", "200"]), "+OK\r\n");
    assert_eq!(c.int(&["EXPIRE", "t", "300"]), 1);
    let url = s.url();
    let leases = |url: &str| {
        runtime().block_on(async {
            let mut e = etcd_client::Client::connect([url], None).await.unwrap();
            e.leases().await.unwrap().leases().len()
        })
    };
    assert_eq!(leases(&url), 1, "old leases revoked");
    assert_eq!(c.int(&["PERSIST", "t"]), 1);
    assert_eq!(c.int(&["TTL", "t"]), -1);
    assert_eq!(leases(&url), 0, "PERSIST revoked the lease");
    assert_eq!(c.int(&["TTL", "nokey"]), -2);
    assert_eq!(c.int(&["EXPIRE", "nokey", "10"]), 0);
    // KEEPTTL keeps the lease; a plain SET drops it.
    assert_eq!(c.cmd(&["SET", "t", "v", "EX", "100"]), "+OK\r\n");
    assert_eq!(c.cmd(&["SET", "t", "w", "KEEPTTL"]), "+OK\r\n");
    assert!(c.int(&["TTL", "t"]) > 0);
    assert_eq!(c.cmd(&["SET", "t", "x"]), "+OK\r\n");
    assert_eq!(c.int(&["TTL", "t"]), -1);
    // A short TTL really expires the key (through the core's lease expiry).
    assert_eq!(c.cmd(&["SET", "short", "v", "PX", "1500"]), "+OK\r\n");
    assert_eq!(c.int(&["EXISTS", "short"]), 1);
    eventually("the key expires", || c.int(&["EXISTS", "short"]) == 0);
    assert_eq!(leases(&url), 0, "the expired lease is gone");
    // An absolute time in the past deletes the key at once.
    assert_eq!(c.cmd(&["SET", "past", "v"]), "+OK\r\n");
    assert_eq!(c.cmd(&["SET", "past", "v", "PXAT", "1"]), "+OK\r\n");
    assert_eq!(c.int(&["EXISTS", "past"]), 0);
}

#[test]
fn ttl_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Cairn::start(&data);
    let mut c = Resp::connect(&s.redis_addr());
    assert_eq!(c.cmd(&["SET", "keep", "v", "EX", "1000"]), "+OK\r\n");
    // Open connections (one of them subscribed) do not hold up a clean stop.
    let mut sub = Resp::connect(&s.redis_addr());
    assert!(sub.cmd(&["SUBSCRIBE", "__keyspace@0__:keep"]).starts_with("*3\r\n$9\r\nsubscribe"));
    assert_eq!(s.stop(), Some(0));
    drop((c, sub));
    let s = Cairn::start(&data);
    let mut c = Resp::connect(&s.redis_addr());
    assert_eq!(c.cmd(&["GET", "keep"]), "$1\r\nv\r\n");
    let ttl = c.int(&["TTL", "keep"]);
    assert!((1..=1000).contains(&ttl), "TTL after restart {ttl}");
}

#[test]
fn watch_multi_exec_is_one_txn_guarded_by_watched_keys() {
    let (_d, s) = server();
    let mut a = Resp::connect(&s.redis_addr());
    let mut b = Resp::connect(&s.redis_addr());
    assert_eq!(a.cmd(&["SET", "w", "1"]), "+OK\r\n");
    assert_eq!(a.cmd(&["WATCH", "w"]), "+OK\r\n");
    assert_eq!(a.cmd(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.cmd(&["INCR", "w"]), "+QUEUED\r\n");
    assert_eq!(a.cmd(&["SET", "other", "x"]), "+QUEUED\r\n");
    assert_eq!(b.cmd(&["SET", "w", "10"]), "+OK\r\n");
    assert_eq!(a.cmd(&["EXEC"]), "*-1\r\n", "a watched key changed: EXEC fails");
    assert_eq!(a.cmd(&["GET", "other"]), "$-1\r\n", "nothing of the block was applied");
    // Without a conflicting write the block applies, in order.
    assert_eq!(a.cmd(&["WATCH", "w"]), "+OK\r\n");
    assert_eq!(a.cmd(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.cmd(&["INCR", "w"]), "+QUEUED\r\n");
    assert_eq!(a.cmd(&["INCR", "w"]), "+QUEUED\r\n");
    assert_eq!(a.cmd(&["GET", "w"]), "+QUEUED\r\n");
    assert_eq!(a.cmd(&["EXEC"]), "*3\r\n:11\r\n:12\r\n$2\r\n12\r\n");
    // Errors while queueing abort the block.
    assert_eq!(a.cmd(&["MULTI"]), "+OK\r\n");
    assert_eq!(a.cmd(&["SET", "w", "0"]), "+QUEUED\r\n");
    assert_eq!(a.cmd(&["GET"]), "-ERR wrong number of arguments for 'get' command\r\n");
    assert_eq!(a.cmd(&["EXEC"]), "-EXECABORT Transaction discarded because of previous errors.\r\n");
    assert_eq!(a.cmd(&["GET", "w"]), "$2\r\n12\r\n");
    assert_eq!(a.cmd(&["EXEC"]), "-ERR EXEC without MULTI\r\n");
    assert_eq!(a.cmd(&["DISCARD"]), "-ERR DISCARD without MULTI\r\n");
}

#[test]
fn keyspace_notifications_come_from_the_watch() {
    let (_d, s) = server();
    let mut sub = Resp::connect(&s.redis_addr());
    let mut c = Resp::connect(&s.redis_addr());
    assert_eq!(sub.cmd(&["SUBSCRIBE", "__keyspace@0__:note"]), "*3\r\n$9\r\nsubscribe\r\n$19\r\n__keyspace@0__:note\r\n:1\r\n");
    assert_eq!(sub.cmd(&["PSUBSCRIBE", "__keyevent@0__:*"]), "*3\r\n$10\r\npsubscribe\r\n$16\r\n__keyevent@0__:*\r\n:2\r\n");
    assert_eq!(sub.cmd(&["GET", "x"]), "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this context\r\n");
    assert_eq!(c.cmd(&["SET", "note", "v"]), "+OK\r\n");
    assert_eq!(c.int(&["DEL", "note"]), 1);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(String::from_utf8(sub.frame()).unwrap());
    }
    got.sort();
    let mut want = vec![
        "*3\r\n$7\r\nmessage\r\n$19\r\n__keyspace@0__:note\r\n$3\r\nset\r\n".to_string(),
        "*3\r\n$7\r\nmessage\r\n$19\r\n__keyspace@0__:note\r\n$3\r\ndel\r\n".to_string(),
        "*4\r\n$8\r\npmessage\r\n$16\r\n__keyevent@0__:*\r\n$18\r\n__keyevent@0__:set\r\n$4\r\nnote\r\n".to_string(),
        "*4\r\n$8\r\npmessage\r\n$16\r\n__keyevent@0__:*\r\n$18\r\n__keyevent@0__:del\r\n$4\r\nnote\r\n".to_string(),
    ];
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn resp3_hello_switches_the_encoding() {
    let (_d, s) = server();
    let mut c = Resp::connect(&s.redis_addr());
    c.send(&encode(&[b"HELLO", b"3"]));
    c.resp3 = true;
    let hello = String::from_utf8(c.frame()).unwrap();
    assert!(hello.starts_with("%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n"), "{hello}");
    assert!(hello.contains("$5\r\nproto\r\n:3\r\n"), "{hello}");
    assert_eq!(c.cmd(&["GET", "missing"]), "_\r\n");
    assert_eq!(c.cmd(&["HELLO", "4"]), "-NOPROTO unsupported protocol version\r\n");
    assert_eq!(c.cmd(&["CLIENT", "SETNAME", "me"]), "+OK\r\n");
    assert_eq!(c.cmd(&["CLIENT", "GETNAME"]), "$2\r\nme\r\n");
}

#[test]
fn resp_listener_takes_a_redis_url_and_can_be_off() {
    let dir = tempfile::tempdir().unwrap();
    let port = cairn_tests::free_port();
    let url = format!("redis://127.0.0.1:{port}");
    let s = Cairn::start_with(&dir.path().join("a"), &["--listen-redis-urls", &url]);
    let mut c = Resp::connect(&format!("127.0.0.1:{port}"));
    assert_eq!(c.cmd(&["PING"]), "+PONG\r\n");
    assert!(s.log().contains("serving RESP"), "{}", s.log());
    drop(s);
    let off = Cairn::start_with(&dir.path().join("b"), &["--listen-redis-urls", "off"]);
    assert!(!off.log().contains("serving RESP"), "RESP is off:\n{}", off.log());
}

#[test]
fn reads_can_be_serializable_per_connection_and_info_reports_raft() {
    let (_d, s) = server();
    let mut c = Resp::connect(&s.redis_addr());
    assert_eq!(c.cmd(&["CAIRN.CONSISTENCY"]), "$12\r\nlinearizable\r\n");
    assert_eq!(c.cmd(&["SET", "k", "v", "EX", "100"]), "+OK\r\n");
    assert_eq!(c.cmd(&["CAIRN.CONSISTENCY", "serializable"]), "+OK\r\n");
    assert_eq!(c.cmd(&["CAIRN.CONSISTENCY"]), "$12\r\nserializable\r\n");
    assert_eq!(c.cmd(&["GET", "k"]), "$1\r\nv\r\n");
    assert_eq!(c.cmd(&["CAIRN.CONSISTENCY", "eventual"]), "-ERR syntax error\r\n");
    let info = c.cmd(&["INFO"]);
    for line in ["# Server\r\n", "redis_version:7.0.0\r\n", "# Replication\r\nrole:master\r\n", "db0:keys=1,expires=1,avg_ttl=0\r\n"] {
        assert!(info.contains(line), "INFO lacks {line:?}:\n{info}");
    }
    let replication = c.cmd(&["INFO", "replication"]);
    assert!(replication.contains("role:master") && !replication.contains("# Server"), "{replication}");
    assert_eq!(c.int(&["DBSIZE"]), 1);
}

#[test]
fn multi_key_commands_beyond_the_txn_limit() {
    let (_d, s) = server();
    let mut c = Resp::connect(&s.redis_addr());
    let names: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
    let mut mset = vec!["MSET".to_string()];
    for n in &names {
        mset.extend([n.clone(), n.clone()]);
    }
    let mset: Vec<&str> = mset.iter().map(String::as_str).collect();
    assert_eq!(c.cmd(&mset), "+OK\r\n", "MSET writes in several txns");
    let mut exists = vec!["EXISTS"];
    exists.extend(names.iter().map(String::as_str));
    assert_eq!(c.int(&exists), 200);
    let mut del = vec!["DEL"];
    del.extend(names.iter().map(String::as_str));
    assert_eq!(c.cmd(&del), "-ERR too many keys in one command for Cairn (see --max-txn-ops)\r\n");
    assert_eq!(c.int(&exists), 200, "the refused DEL deleted nothing");
    assert_eq!(c.int(&del[..129]), 128);
}
