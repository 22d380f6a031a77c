"""redis-py (the Python Redis client) against Cairn: plain commands, RESP2 and RESP3, pipelines,
WATCH/MULTI/EXEC with a conflicting writer, keyspace notifications, SCAN, and concurrent
read-modify-writes that must all count (linearizable INCR)."""

from __future__ import annotations

import threading
import time

import pytest
import redis  # redis-py: compat-tests/requirements.txt

from resp_harness import cairn  # noqa: F401  (fixture)


def client(srv, **kw):
    host, port = srv.redis_addr
    return redis.Redis(host=host, port=port, socket_timeout=30, **kw)


@pytest.mark.parametrize("protocol", [2, 3])
def test_strings_and_ttls(cairn, protocol):  # noqa: F811
    r = client(cairn, protocol=protocol)
    assert r.ping() is True
    assert r.set("k", b"v\x00\xff") is True
    assert r.get("k") == b"v\x00\xff"
    assert r.get("missing") is None
    assert r.set("k", "w", nx=True) is None
    assert r.set("k", "w", xx=True, get=True) == b"v\x00\xff"
    assert r.incr("n") == 1 and r.incrby("n", 41) == 42 and r.decr("n") == 41
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r.incr("k")
    assert r.mset({"a": "1", "b": "2"}) is True
    assert r.mget(["a", "b", "c"]) == [b"1", b"2", None]
    assert r.exists("a", "b", "c") == 2
    assert r.delete("a", "b", "c") == 2
    assert r.set("t", "v", ex=100) is True
    assert 0 < r.ttl("t") <= 100
    assert 0 < r.pttl("t") <= 100_000
    assert r.persist("t") is True and r.ttl("t") == -1
    assert r.expire("t", 50) is True and 0 < r.ttl("t") <= 50
    assert r.getex("t", persist=True) == b"v" and r.ttl("t") == -1
    assert r.type("t") in (b"string", "string")
    assert r.dbsize() == 3
    assert r.client_setname("py") is True and r.client_getname() in (b"py", "py")
    assert isinstance(r.client_id(), int)
    info = r.info()
    assert info["role"] == "master" and info["redis_version"]
    with pytest.raises(redis.ResponseError, match="unknown command 'HSET'"):
        r.hset("h", "f", "v")


def test_pipeline_and_transaction(cairn):  # noqa: F811
    r = client(cairn)
    pipe = r.pipeline(transaction=False)
    for i in range(100):
        pipe.set(f"p{i}", i)
    pipe.get("p99")
    assert pipe.execute()[-1] == b"99"
    with r.pipeline(transaction=True) as tx:
        tx.set("x", 1).incr("x").get("x")
        assert tx.execute() == [True, 2, b"2"]


def test_watch_aborts_on_a_conflicting_write(cairn):  # noqa: F811
    r, other = client(cairn), client(cairn)
    r.set("balance", 100)
    with r.pipeline() as pipe:
        pipe.watch("balance")
        current = int(pipe.get("balance"))
        other.set("balance", 5)  # a concurrent writer
        pipe.multi()
        pipe.set("balance", current - 10)
        with pytest.raises(redis.WatchError):
            pipe.execute()
    assert r.get("balance") == b"5"

    def withdraw(pipe):
        cur = int(pipe.get("balance"))
        pipe.multi()
        pipe.set("balance", cur - 1)

    r.transaction(withdraw, "balance")
    assert r.get("balance") == b"4"


def test_concurrent_increments_all_count(cairn):  # noqa: F811
    errors = []

    def worker():
        try:
            c = client(cairn)
            for _ in range(25):
                c.incr("hits")
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert client(cairn).get("hits") == b"200"


def test_keyspace_notifications(cairn):  # noqa: F811
    r = client(cairn)
    p = r.pubsub()
    p.subscribe("__keyspace@0__:watched")
    p.psubscribe("__keyevent@0__:*")
    for _ in range(2):
        assert p.get_message(timeout=10)["type"] in ("subscribe", "psubscribe")
    r.set("watched", "1")
    r.delete("watched")
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 4 and time.monotonic() < deadline:
        m = p.get_message(timeout=1)
        if m:
            got.append((m["type"], m["channel"], m["data"]))
    assert sorted(got) == sorted([
        ("message", b"__keyspace@0__:watched", b"set"),
        ("message", b"__keyspace@0__:watched", b"del"),
        ("pmessage", b"__keyevent@0__:set", b"watched"),
        ("pmessage", b"__keyevent@0__:del", b"watched"),
    ])
    p.close()


def test_scan_iter_visits_every_key_once(cairn):  # noqa: F811
    r = client(cairn)
    r.mset({f"s:{i:03}": i for i in range(250)})
    r.set("other", 1)
    seen = list(r.scan_iter(match="s:*", count=7))
    assert sorted(seen) == sorted(f"s:{i:03}".encode() for i in range(250))
    assert sorted(r.keys("s:00*")) == [f"s:00{i}".encode() for i in range(10)]
