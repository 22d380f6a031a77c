"""One keyspace, two front doors: what redis-cli writes etcdctl reads and watches, and the
other way round; a Redis TTL is a v3 lease (docs/keyspace.md, section RESP)."""

from __future__ import annotations

import base64
import json
import subprocess
import time

import harness
from resp_harness import cairn  # noqa: F401  (fixture)
from test_resp_redis_cli import cli


def etcdctl_json(srv, *args) -> dict:
    r = srv.etcdctl(["-w", "json", *args])
    assert r.rc == 0, r.text()
    return json.loads(r.stdout)


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


def test_redis_writes_are_etcd_keys_and_back(cairn):  # noqa: F811
    assert cli(cairn.redis_addr, "SET", "shared/key", "from redis")[1] == "OK\n"
    got = etcdctl_json(cairn, "get", "shared/key")
    assert [(kv["key"], kv["value"]) for kv in got["kvs"]] == [(b64(b"shared/key"), b64(b"from redis"))]
    assert "lease" not in got["kvs"][0], "no TTL, no lease"

    r = cairn.etcdctl(["put", "from/etcd", "v3 value"])
    assert r.rc == 0, r.text()
    assert cli(cairn.redis_addr, "GET", "from/etcd")[1] == "v3 value\n"
    # Binary keys and values are the same bytes on both sides.
    assert cli(cairn.redis_addr, "SET", "bin\x01key", "caf\xc3\xa9")[1] == "OK\n"
    got = etcdctl_json(cairn, "get", "bin\x01key")
    assert base64.b64decode(got["kvs"][0]["value"]) == "caf\xc3\xa9".encode()
    # DEL through Redis is a v3 delete; the v3 revision moved on with every write.
    assert cli(cairn.redis_addr, "DEL", "shared/key")[1] == "1\n"
    assert etcdctl_json(cairn, "get", "shared/key").get("kvs") is None


def test_etcdctl_watch_sees_redis_writes(cairn):  # noqa: F811
    watch = subprocess.Popen(
        [harness.etcdctl_bin(), "--endpoints", cairn.endpoint, "watch", "w/", "--prefix"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=harness.clean_env(),
    )
    try:
        time.sleep(1.0)  # let the watch be created before the writes (etcdctl prints nothing until then)
        assert cli(cairn.redis_addr, "SET", "w/a", "1")[1] == "OK\n"
        assert cli(cairn.redis_addr, "INCR", "w/a")[1] == "2\n"
        assert cli(cairn.redis_addr, "DEL", "w/a")[1] == "1\n"
        lines = []
        deadline = time.monotonic() + 30
        while len(lines) < 7 and time.monotonic() < deadline:
            line = watch.stdout.readline()
            if not line:
                break
            lines.append(line.decode().rstrip("\n"))
        assert lines == ["PUT", "w/a", "1", "PUT", "w/a", "2", "DELETE"], lines
    finally:
        watch.kill()
        watch.wait()


def test_expire_is_a_lease(cairn):  # noqa: F811
    assert cli(cairn.redis_addr, "SET", "ttl/key", "v", "EX", "300")[1] == "OK\n"
    kv = etcdctl_json(cairn, "get", "ttl/key")["kvs"][0]
    lease = kv.get("lease")
    assert lease, "a key with a TTL is attached to a lease"
    ttl = etcdctl_json(cairn, "lease", "timetolive", format(lease, "x"), "--keys")
    assert 0 < ttl["ttl"] <= 300 and ttl["granted-ttl"] == 300
    assert [base64.b64decode(k) for k in ttl["keys"]] == [b"ttl/key"]
    # EXPIRE moves the key to a new lease and revokes the old one (nothing leaks).
    assert cli(cairn.redis_addr, "EXPIRE", "ttl/key", "600")[1] == "1\n"
    leases = etcdctl_json(cairn, "lease", "list")["leases"]
    assert len(leases) == 1 and leases[0]["id"] != lease
    # Revoking the lease through etcd deletes the key for Redis too.
    assert cairn.etcdctl(["lease", "revoke", format(leases[0]["id"], "x")]).rc == 0
    assert cli(cairn.redis_addr, "EXISTS", "ttl/key")[1] == "0\n"
    # A key put with an etcd lease shows that lease's TTL in Redis.
    grant = etcdctl_json(cairn, "lease", "grant", "120")
    assert cairn.etcdctl(["put", "leased", "x", "--lease", format(grant["ID"], "x")]).rc == 0
    assert 0 < int(cli(cairn.redis_addr, "TTL", "leased")[1]) <= 120
