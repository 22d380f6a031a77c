"""Measurements of `cairn proxy` (not a test; run by hand, prints numbers):

    cd compat-tests && CAIRN_BIN=target/debug/cairn python3 measure_proxy.py

1. Latency of put / linearizable get / serializable get with the Python etcd3 client, direct to
   the leader of a 3-member cluster and through the proxy; then the time the first put through
   the proxy takes after the proxy's member (the leader) is killed.
2. 1,000 prefix watchers of one etcd3 client, direct and through the proxy, on a one-member
   cluster: the member's own etcd_debugging_mvcc_watcher_total, and the time for 5 puts to
   reach every watcher.
"""

from __future__ import annotations

import re
import statistics
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import recipes_support as rs
from cluster_support import Cluster
from test_proxy import Proxy


def latencies(endpoint: str, n: int = 300) -> dict:
    c = rs.make_client(endpoint, timeout=15)
    ops = {
        "put": lambda i: c.put(f"b/{i}", "x" * 100),
        "get": lambda i: c.get(f"b/{i}"),
        "get_serializable": lambda i: c.get(f"b/{i}", serializable=True),
    }
    lat = {k: [] for k in ops}
    errors = 0
    for i in range(n):
        for k, op in ops.items():
            t = time.perf_counter()
            try:
                op(i)
                lat[k].append(time.perf_counter() - t)
            except Exception:  # noqa: BLE001 -- counted and reported
                errors += 1
    rs.close_quietly(c)
    out = {k: "p50 %.2f ms, p99 %.2f ms" % (statistics.median(v) * 1000, sorted(v)[int(len(v) * 0.99)] * 1000)
           for k, v in lat.items()}
    out["errors"] = errors
    return out


def failover(tmp: Path) -> None:
    cl = Cluster("cairn", tmp / "three", 3).start()
    px = Proxy(tmp, ",".join(m.endpoint for m in cl.members))
    try:
        px.start()
        time.sleep(1.5)  # the proxy has asked the members who leads
        print("direct to the leader:", latencies(px.upstream()))
        print("through the proxy:   ", latencies(px.endpoint))
        c = rs.make_client(px.endpoint, timeout=15)
        next(m for m in cl.members if m.endpoint == px.upstream()).kill9()
        t = time.perf_counter()
        c.put("after", "kill")
        print("first put after killing the proxy's member: %.2f s" % (time.perf_counter() - t))
        rs.close_quietly(c)
    finally:
        px.stop()
        cl.stop()


def fanout(tmp: Path, n: int = 1000) -> None:
    cl = Cluster("cairn", tmp / "one", 1).start()
    px = Proxy(tmp, cl.members[0].endpoint)

    def member_watchers() -> str:
        text = urllib.request.urlopen(cl.members[0].endpoint + "/metrics", timeout=5).read().decode()
        m = re.search(r"^etcd_debugging_mvcc_watcher_total (\S+)$", text, re.M)
        return m.group(1) if m else "(metric missing)"

    try:
        px.start()
        for label, ep in (("direct", cl.members[0].endpoint), ("proxy", px.endpoint)):
            c = rs.make_client(ep, timeout=15)
            lock, got, done = threading.Lock(), [0], threading.Event()

            def cb(resp, lock=lock, got=got, done=done):
                with lock:
                    got[0] += len(resp.events)
                    if got[0] >= n * 5:
                        done.set()

            ids = [c.add_watch_prefix_callback(f"{label}/", cb) for _ in range(n)]
            print(f"{label}: {n} watchers, member's etcd_debugging_mvcc_watcher_total = {member_watchers()}")
            t = time.perf_counter()
            for i in range(5):
                c.put(f"{label}/{i}", "v")
            assert done.wait(60), got
            print(f"{label}: 5 puts reached all {n} watchers ({got[0]} events) in "
                  f"{(time.perf_counter() - t) * 1000:.0f} ms")
            for i in ids:
                c.cancel_watch(i)
            rs.close_quietly(c)
    finally:
        px.stop()
        cl.stop()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as d:
        failover(Path(d))
        fanout(Path(d))
