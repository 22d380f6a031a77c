"""The Python v2 client `python-etcd` (0.4.5) against Cairn (and the same calls against real
etcd 3.4 with --enable-v2, so the expectations are etcd's): set/get, CAS, TTL, in-order keys,
directories, wait. Then the cross-protocol rule: a key written through v2 is read and watched
through v3 (etcdctl), and a key written through v3 is read through v2."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time

import pytest

import harness
from http_support import start

etcd = pytest.importorskip("etcd", reason="python-etcd 0.4.5 is in compat-tests/requirements.txt")


def client(srv):
    return etcd.Client(host="127.0.0.1", port=srv.client_port, protocol="http", allow_reconnect=False)


@pytest.mark.parametrize("side", ["etcd", "cairn"])
def test_python_etcd_client(request, tmp_path, side):
    srv = start(request, tmp_path, side)
    c = client(srv)

    r = c.write("/greeting", "hello")
    assert r.value == "hello" and r.action == "set"
    assert c.read("/greeting").value == "hello"
    assert c.get("/greeting").value == "hello"

    # compare-and-swap by value and by index
    r = c.test_and_set("/greeting", "world", "hello")
    assert r.value == "world"
    with pytest.raises(ValueError):  # python-etcd raises EtcdCompareFailed (a ValueError)
        c.test_and_set("/greeting", "x", "not-the-value")
    idx = c.read("/greeting").modifiedIndex
    r = c.write("/greeting", "again", prevIndex=idx)
    assert r.value == "again"
    with pytest.raises(etcd.EtcdCompareFailed):
        c.write("/greeting", "never", prevIndex=idx)
    with pytest.raises(etcd.EtcdAlreadyExist):
        c.write("/greeting", "x", prevExist=False)
    with pytest.raises(etcd.EtcdKeyNotFound):
        c.read("/missing")

    # TTL: shown while the key lives
    r = c.write("/ephemeral", "soon gone", ttl=60)
    assert r.ttl is not None and 0 < r.ttl <= 60
    got = c.read("/ephemeral")
    assert got.ttl is not None and 0 < got.ttl <= 60

    # in-order keys, listed sorted
    for job in ("job1", "job2", "job3"):
        c.write("/queue", job, append=True)
    listing = c.read("/queue", recursive=True, sorted=True)
    values = [n.value for n in listing.leaves]
    assert values == ["job1", "job2", "job3"], values
    keys = [n.key for n in listing.leaves]
    assert keys == sorted(keys) and all(len(k.rsplit("/", 1)[1]) == 20 for k in keys)

    # directories
    c.write("/dir", None, dir=True)
    assert c.read("/dir").dir
    c.write("/dir/child", "c")
    with pytest.raises(etcd.EtcdDirNotEmpty):
        c.delete("/dir", dir=True)
    c.delete("/dir", recursive=True)
    with pytest.raises(etcd.EtcdKeyNotFound):
        c.read("/dir")

    # wait: from history, and for the next change
    first = c.write("/watched", "v1").modifiedIndex
    c.write("/watched", "v2")
    assert c.read("/watched", wait=True, waitIndex=first).value == "v1"
    got = {}

    def waiter():
        got["r"] = c.read("/watched", wait=True, timeout=20)

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    etcd.Client(host="127.0.0.1", port=srv.client_port).write("/watched", "v3")
    t.join(25)
    assert got["r"].value == "v3"

    c.delete("/greeting")
    with pytest.raises(etcd.EtcdKeyNotFound):
        c.read("/greeting")


def etcdctl_json(srv, *args):
    r = harness.run_etcdctl(srv.endpoint, ["-w", "json", *args])
    assert r.rc == 0, r.text()
    return json.loads(r.stdout)


def test_v2_and_v3_share_one_keyspace(request, tmp_path):
    srv = start(request, tmp_path, "cairn")
    c = client(srv)

    # v2 write -> v3 read: the v2 path is the v3 key, byte for byte.
    c.write("/app/config", "v2-value")
    got = etcdctl_json(srv, "get", "/app/config")
    kv = got["kvs"][0]
    assert base64.b64decode(kv["value"]) == b"v2-value"
    assert kv["mod_revision"] == c.read("/app/config").modifiedIndex, "v2 index == v3 revision"

    # v2 write -> v3 watch
    rev = got["header"]["revision"]
    watch = subprocess.Popen(
        [harness.etcdctl_bin(), "--endpoints", srv.endpoint, "watch", "/app/config", f"--rev={rev + 1}"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=harness.clean_env(),
    )
    try:
        c.write("/app/config", "changed-through-v2")
        deadline = time.monotonic() + 10
        lines = []
        while time.monotonic() < deadline and len(lines) < 3:
            line = watch.stdout.readline()
            if not line:
                break
            lines.append(line.decode().strip())
        assert lines == ["PUT", "/app/config", "changed-through-v2"], lines
    finally:
        watch.kill()
        watch.wait()

    # v3 write -> v2 read (and listing)
    r = harness.run_etcdctl(srv.endpoint, ["put", "/app/from-v3", "v3-value"])
    assert r.rc == 0, r.text()
    assert c.read("/app/from-v3").value == "v3-value"
    children = sorted(n.key for n in c.read("/app", recursive=True).leaves)
    assert children == ["/app/config", "/app/from-v3"]

    # a v2 TTL is a v3 lease
    c.write("/app/session", "x", ttl=60)
    kv = etcdctl_json(srv, "get", "/app/session")["kvs"][0]
    assert kv.get("lease"), kv
    ttl = etcdctl_json(srv, "lease", "timetolive", format(kv["lease"], "x"))
    assert 0 < ttl["ttl"] <= 60

    # v3 delete -> v2 sees it gone
    assert harness.run_etcdctl(srv.endpoint, ["del", "/app/config"]).rc == 0
    with pytest.raises(etcd.EtcdKeyNotFound):
        c.read("/app/config")
