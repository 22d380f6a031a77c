"""`cairn proxy` in front of a 3-member Cairn cluster, driven by unmodified etcdctl 3.4 and
the Python `etcd3` client: KV, txn, watch, lease and lock through the proxy, then the member
the proxy talks to is killed and the same clients keep working.

Every process (members, proxy, `etcdctl watch`) is stopped in a finalizer; every wait has a
deadline.
"""

from __future__ import annotations

import queue
import re
import subprocess
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
    def __init__(self, workdir: Path, endpoints: str):
        self.port = harness.free_ports(1)[0]
        self.log_path = workdir / "proxy.log"
        self.endpoints = endpoints
        self.proc = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Proxy":
        binary = harness.require_binary(harness.cairn_bin(), "Cairn", "cargo build --workspace --bins")
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [binary, "proxy", f"--endpoints={self.endpoints}", f"--listen-addr=127.0.0.1:{self.port}"],
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


@pytest.fixture
def setup(request, tmp_path):
    if rs is None:
        pytest.fail(f"the Python etcd3 client is not importable: {_IMPORT_ERROR}")
    cluster = Cluster("cairn", tmp_path / "cluster", 3)
    request.addfinalizer(cluster.stop)
    cluster.start()
    proxy = Proxy(tmp_path, ",".join(m.endpoint for m in cluster.members))
    request.addfinalizer(proxy.stop)
    proxy.start()
    return cluster, proxy


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
