"""`cairn proxy` in front of a 3-member Cairn cluster, driven by unmodified etcdctl 3.4 and
the Python `etcd3` client: KV, txn, watch, lease and lock through the proxy, then the member
the proxy talks to is killed and the same clients keep working. The same with the protocols the
proxy serves over the core API: curl on the v3 JSON gateway and the v2 keys API, the Python v2
client `python-etcd`, and redis-cli and redis-py on `--listen-redis-addr`.

Every process (members, proxy, `etcdctl watch`) is stopped in a finalizer; every wait has a
deadline.
"""

from __future__ import annotations

import base64
import json
import queue
import re
import shutil
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import harness
from cluster_support import Cluster

try:  # a missing client fails these tests (it does not skip them)
    import recipes_support as rs
except ImportError as e:  # pragma: no cover
    rs = None
    _IMPORT_ERROR = e


class Proxy:
    def __init__(self, workdir: Path, endpoints: str, redis: bool = False):
        self.port, self.redis_port = harness.free_ports(2)
        self.log_path = workdir / "proxy.log"
        self.endpoints = endpoints
        self.redis = redis
        self.proc = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Proxy":
        binary = harness.require_binary(harness.cairn_bin(), "Cairn", "cargo build --workspace --bins")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "proxy", f"--endpoints={self.endpoints}", f"--listen-addr=127.0.0.1:{self.port}",
                 *([f"--listen-redis-addr=127.0.0.1:{self.redis_port}"] if self.redis else [])],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, env=harness.clean_env(),
            )
        deadline = time.monotonic() + 20
        while self.metrics() is None:
            assert self.proc.poll() is None, f"proxy exited:\n{self.log()}"
            assert time.monotonic() < deadline, f"proxy not serving:\n{self.log()}"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def metrics(self):
        try:
            with urllib.request.urlopen(f"{self.endpoint}/metrics", timeout=5) as r:
                return r.read().decode()
        except OSError:
            return None

    def upstream(self) -> str:
        m = re.search(r'^cairn_proxy_upstream\{endpoint="([^"]+)"\} 1$', self.metrics() or "", re.M)
        assert m, f"no upstream in the proxy's metrics:\n{self.metrics()}"
        return m.group(1)

    def etcdctl(self, *args: str, stdin: bytes = None) -> harness.Result:
        return harness.run_etcdctl(self.endpoint, ["--command-timeout=15s", *args], stdin=stdin, timeout=30)


def start_cluster_and_proxy(request, tmp_path, redis: bool = False):
    cluster = Cluster("cairn", tmp_path / "cluster", 3)
    request.addfinalizer(cluster.stop)
    cluster.start()
    proxy = Proxy(tmp_path, ",".join(m.endpoint for m in cluster.members), redis=redis)
    request.addfinalizer(proxy.stop)
    proxy.start()
    return cluster, proxy


@pytest.fixture
def setup(request, tmp_path):
    if rs is None:
        pytest.fail(f"the Python etcd3 client is not importable: {_IMPORT_ERROR}")
    return start_cluster_and_proxy(request, tmp_path)


def ok(r: harness.Result) -> str:
    assert r.rc == 0, r.text()
    return r.stdout.decode()


class WatchProcess:
    """`etcdctl watch --prefix P` through the proxy, its output lines read by a thread."""

    def __init__(self, endpoint: str, prefix: str):
        import threading

        self.lines: queue.Queue = queue.Queue()
        self.proc = subprocess.Popen(
            [harness.etcdctl_bin(), "--endpoints", endpoint, "watch", "--prefix", prefix],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=harness.clean_env(),
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.decode().rstrip("\n"))

    def take(self, n: int, timeout: float = 20) -> list:
        out, deadline = [], time.monotonic() + timeout
        while len(out) < n:
            try:
                out.append(self.lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"etcdctl watch printed only {out}")
        return out

    def stop(self):
        self.proc.kill()
        self.proc.wait(timeout=10)


def test_etcdctl_and_etcd3_through_the_proxy_survive_killing_its_member(setup, request):
    cluster, proxy = setup

    # --- etcdctl: KV, txn, lease, lock, watch
    assert ok(proxy.etcdctl("put", "k", "v1")) == "OK\n"
    assert ok(proxy.etcdctl("get", "k")) == "k\nv1\n"
    txn = b'value("k") = "v1"\n\nput k v2\nget k\n\n\n'
    assert ok(proxy.etcdctl("txn", stdin=txn)) == "SUCCESS\n\nOK\n\nk\nv2\n"
    out = ok(proxy.etcdctl("lease", "grant", "30"))
    lease = re.search(r"lease ([0-9a-f]+) granted", out).group(1)
    assert ok(proxy.etcdctl("put", "leased", "x", f"--lease={lease}")) == "OK\n"
    assert f"lease {lease} keepalived with TTL(30)" in ok(proxy.etcdctl("lease", "keep-alive", "--once", lease))
    assert ok(proxy.etcdctl("lock", "mylock", "echo", "held")) == "held\n"
    watcher = WatchProcess(proxy.endpoint, "w/")
    request.addfinalizer(watcher.stop)

    # --- etcd3 (Python): KV, txn, watch, lease, lock
    c = rs.make_client(proxy.endpoint, timeout=15)
    request.addfinalizer(lambda: rs.close_quietly(c))
    c.put("p", "1")
    assert c.get("p")[0] == b"1"
    succeeded, _ = c.transaction(
        compare=[c.transactions.value("p") == "1"], success=[c.transactions.put("p", "2")], failure=[])
    assert succeeded and c.get("p")[0] == b"2"
    events: queue.Queue = queue.Queue()
    c.add_watch_prefix_callback("w/", events.put)
    l3 = c.lease(30)
    c.put("leased3", "y", lease=l3)
    assert l3.refresh()[0].TTL == 30
    with c.lock("pylock", ttl=30) as lk:
        assert lk.is_acquired()

    # Both watchers are served by one upstream watch (same prefix, same options)... once
    # etcdctl's watch is registered: wait for it by a write it must see.
    ok(proxy.etcdctl("put", "w/0", "a"))
    assert watcher.take(3) == ["PUT", "w/0", "a"]

    def etcd3_events(n: int) -> list:
        got, deadline = [], time.monotonic() + 20
        while len(got) < n:
            item = events.get(timeout=max(0.01, deadline - time.monotonic()))
            assert not isinstance(item, Exception), f"watch failed: {item!r}"
            got += [e.key.decode() for e in item.events]
        return got

    assert etcd3_events(1) == ["w/0"]

    # --- kill the member the proxy talks to
    upstream = proxy.upstream()
    victim = next(m for m in cluster.members if m.endpoint == upstream)
    victim.kill9()

    for i in range(1, 4):
        assert ok(proxy.etcdctl("put", f"w/{i}", "b")) == "OK\n"
    assert ok(proxy.etcdctl("get", "--prefix", "--keys-only", "w/")).split() == ["w/0", "w/1", "w/2", "w/3"]
    assert watcher.take(9) == ["PUT", "w/1", "b", "PUT", "w/2", "b", "PUT", "w/3", "b"]
    assert etcd3_events(3) == ["w/1", "w/2", "w/3"]
    c.put("p", "3")
    assert c.get("p")[0] == b"3"
    assert l3.refresh()[0].TTL == 30
    assert f"lease {lease} keepalived with TTL(30)" in ok(proxy.etcdctl("lease", "keep-alive", "--once", lease))
    assert ok(proxy.etcdctl("lock", "mylock", "echo", "held-again")) == "held-again\n"
    with c.lock("pylock", ttl=30) as lk:
        assert lk.is_acquired()
    assert proxy.upstream() != upstream, "the proxy failed over"


def curl(*args: str, timeout: float = 30) -> tuple:
    """curl -sS against the proxy: (HTTP status, body text)."""
    binary = shutil.which("curl")
    assert binary, "curl not found on PATH"
    p = subprocess.run([binary, "-sS", "--noproxy", "*", "-m", str(timeout), "-o", "-", "-w", "\n%{http_code}", *args],
                       capture_output=True, timeout=timeout + 10, env=harness.clean_env())
    assert p.returncode == 0, p.stderr.decode()
    body, _, status = p.stdout.decode().rpartition("\n")
    return int(status), body


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def redis_cli(proxy: Proxy, *args: str) -> str:
    binary = shutil.which("redis-cli")
    assert binary, "redis-cli not found on PATH -- apt-get install redis-tools"
    p = subprocess.run([binary, "-h", "127.0.0.1", "-p", str(proxy.redis_port), *args], capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def test_curl_python_etcd_and_redis_through_the_proxy_survive_killing_its_member(request, tmp_path):
    import etcd  # python-etcd 0.4.5: compat-tests/requirements.txt (a missing client fails the test)
    import redis  # redis-py

    cluster, proxy = start_cluster_and_proxy(request, tmp_path, redis=True)
    base = proxy.endpoint
    member = cluster.members[0].endpoint

    # --- curl: the v3 JSON gateway, answered as the member answers
    status, body = curl(f"{base}/v3/kv/put", "-d", json.dumps({"key": b64("foo"), "value": b64("bar")}))
    assert status == 200 and "revision" in json.loads(body)["header"], body
    via = curl(f"{base}/v3/kv/range", "-d", json.dumps({"key": b64("foo")}))
    direct = curl(f"{member}/v3/kv/range", "-d", json.dumps({"key": b64("foo")}))
    assert json.loads(via[1])["kvs"][0]["value"] == b64("bar")
    assert (via[0], json.loads(via[1])["kvs"]) == (direct[0], json.loads(direct[1])["kvs"])
    status, body = curl(f"{base}/v3/kv/range", "-d", json.dumps({"key": b64("foo"), "revision": "100000"}))
    assert (status, json.loads(body)) == (400, {
        "error": "etcdserver: mvcc: required revision is a future revision",
        "message": "etcdserver: mvcc: required revision is a future revision", "code": 11}), body

    # --- curl: the v2 keys API
    status, body = curl("-X", "PUT", f"{base}/v2/keys/greeting", "-d", "value=hello")
    assert status == 201 and json.loads(body)["node"]["value"] == "hello", body
    status, body = curl(f"{base}/v2/keys/greeting")
    assert status == 200 and json.loads(body)["node"]["value"] == "hello", body
    status, body = curl("-X", "PUT", f"{base}/v2/keys/greeting?prevExist=false", "-d", "value=x")
    assert status == 412 and json.loads(body)["errorCode"] == 105, body

    # --- python-etcd (v2)
    c = etcd.Client(host="127.0.0.1", port=proxy.port, protocol="http", allow_reconnect=False)
    assert c.write("/py", "one").action == "set"
    assert c.read("/py").value == "one"
    assert c.test_and_set("/py", "two", "one").value == "two"
    with pytest.raises(etcd.EtcdCompareFailed):
        c.test_and_set("/py", "x", "not-the-value")
    with pytest.raises(etcd.EtcdAlreadyExist):
        c.write("/py", "x", prevExist=False)
    with pytest.raises(etcd.EtcdKeyNotFound):
        c.read("/missing")
    for job in ("job1", "job2"):
        c.write("/queue", job, append=True)
    assert [n.value for n in c.read("/queue", recursive=True, sorted=True).leaves] == ["job1", "job2"]
    first = c.write("/watched", "v1").modifiedIndex
    c.write("/watched", "v2")
    assert c.read("/watched", wait=True, waitIndex=first).value == "v1"

    # --- redis-cli and redis-py on the proxy's RESP port
    assert redis_cli(proxy, "SET", "n", "41") == "OK\n"
    assert redis_cli(proxy, "INCR", "n") == "42\n"
    assert redis_cli(proxy, "GET", "n") == "42\n"
    assert redis_cli(proxy, "EXPIRE", "n", "100") == "1\n"
    assert 0 < int(redis_cli(proxy, "TTL", "n")) <= 100
    assert redis_cli(proxy, "INCR", "/greeting").strip() == "ERR value is not an integer or out of range"
    r = redis.Redis(host="127.0.0.1", port=proxy.redis_port, socket_timeout=30)
    request.addfinalizer(r.close)
    assert r.ping() is True
    assert r.get("n") == b"42"
    assert r.set("t", "v", ex=100) is True and 0 < r.ttl("t") <= 100 and 0 < r.pttl("t") <= 100_000
    assert r.incr("counter") == 1 and r.incrby("counter", 41) == 42
    with pytest.raises(redis.ResponseError, match="value is not an integer or out of range"):
        r.incr("t")
    # one keyspace: what RESP wrote, v2 and v3 read
    assert c.read("/py").value == "two" and r.get("/py") == b"two"

    # A v2 long poll opened before the kill is answered by a change made after it.
    got = {}

    def waiter():
        try:
            got["r"] = c.read("/polled", wait=True, timeout=60)
        except Exception as e:  # reported below
            got["e"] = e

    poll = threading.Thread(target=waiter, daemon=True)
    poll.start()
    deadline = time.monotonic() + 20
    while not re.search(r"^cairn_proxy_watchers 1$", proxy.metrics() or "", re.M):
        assert time.monotonic() < deadline, "the long poll never reached the proxy"
        time.sleep(0.05)

    # --- kill the member the proxy talks to
    upstream = proxy.upstream()
    next(m for m in cluster.members if m.endpoint == upstream).kill9()

    status, body = curl(f"{base}/v3/kv/put", "-d", json.dumps({"key": b64("/after"), "value": b64("1")}))
    assert status == 200, f"{body}\n{proxy.log()}"
    status, body = curl(f"{base}/v2/keys/after2", "-X", "PUT", "-d", "value=2")
    assert status == 201, body
    assert c.write("/polled", "p").value == "p"
    poll.join(30)
    assert "e" not in got, got.get("e")
    assert got["r"].value == "p"
    assert c.read("/after").value == "1"
    assert redis_cli(proxy, "INCR", "n") == "43\n"
    assert r.incr("counter") == 43 and r.get("/after2") == b"2"
    assert proxy.upstream() != upstream, "the proxy failed over"
