"""The backend quota and the NOSPACE alarm, with etcdctl, Cairn beside real etcd 3.4.

Both servers start with a 4 MiB --quota-backend-bytes and take 100 KiB values until a put is
refused. How many fit differs (etcd counts bbolt pages, Cairn RocksDB files and memtables);
what must match is what a client sees from then on: the error, the alarm list, that deletes
still work while puts do not, and that `alarm disarm` answers alike.
"""

from __future__ import annotations

import re

import pytest

from cluster_support import Cluster

QUOTA = 4 * 1024 * 1024
VALUE = "v" * (100 * 1024)


def fill_until_refused(c: Cluster):
    for i in range(200):
        r = c.etcdctl("put", f"big{i:03}", VALUE)
        if r.rc != 0:
            return i, r
    raise AssertionError("the quota never refused a put")


def normalise(text: bytes) -> str:
    lines = [l for l in text.decode(errors="replace").splitlines() if not l.startswith("{")]
    return re.sub(r"memberID:\d+", "memberID:<id>", "\n".join(lines)).strip()


def scenario(side: str, tmp_path) -> list:
    c = Cluster(side, tmp_path / side, 1, extra=["--quota-backend-bytes", str(QUOTA)])
    try:
        c.start()
        stored, refused = fill_until_refused(c)
        assert stored > 0, "the quota refused the first put"
        out = [("refused put", refused.rc, normalise(refused.stderr))]
        r = c.etcdctl("alarm", "list")
        out.append(("alarm list", r.rc, normalise(r.stdout)))
        r = c.etcdctl("put", "small", "x")
        out.append(("another put", r.rc, normalise(r.stderr)))
        r = c.etcdctl("del", "big000")
        out.append(("delete while alarmed", r.rc, normalise(r.stdout)))
        r = c.etcdctl("alarm", "disarm")
        out.append(("disarm", r.rc, normalise(r.stdout)))
        r = c.etcdctl("alarm", "list")
        out.append(("alarm list after disarm", r.rc, normalise(r.stdout)))
        return out
    finally:
        c.stop()


def test_nospace_alarm_matches_etcd(tmp_path):
    etcd = scenario("etcd", tmp_path)
    cairn = scenario("cairn", tmp_path)
    assert etcd[0] == ("refused put", 1, "Error: etcdserver: mvcc: database space exceeded")
    assert cairn == etcd
