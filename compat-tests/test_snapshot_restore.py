"""Backup and restore: `etcdctl snapshot save` from a running Cairn member, then
`cairn snapshot restore` into a new data dir, and a new cluster started on it.

Cairn's snapshot file is not a bbolt file (see docs/etcd-differences.md), so this is not a
differential test: it checks what a user relies on. The restored member holds every key,
starts a new cluster (new ids), and its revision is moved forward with the old revisions
marked compacted, so a watcher of the old cluster is told so instead of missing events.
"""

from __future__ import annotations

import json
import subprocess

import harness
from cluster_support import Cluster, Member


def cairn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(harness.cairn_bin()), *args], capture_output=True, timeout=60)


def test_snapshot_save_and_restore_into_a_new_cluster(tmp_path):
    old = Cluster("cairn", tmp_path / "old", 1)
    try:
        old.start()
        for k, v in [("a", "1"), ("b", "2"), ("a", "3")]:
            assert old.etcdctl("put", k, v).rc == 0
        old_status = old.status(old.members[0])
        snap = tmp_path / "backup.db"
        r = old.etcdctl("snapshot", "save", str(snap))
        assert r.rc == 0, r.text()
        assert b"Snapshot saved at" in r.stdout
    finally:
        old.stop()

    # A damaged file is refused before anything is written.
    broken = tmp_path / "broken.db"
    data = bytearray(snap.read_bytes())
    data[100] ^= 0xFF
    broken.write_bytes(bytes(data))
    p = cairn("snapshot", "restore", str(broken), "--data-dir", str(tmp_path / "nothing"))
    assert p.returncode != 0
    assert b"SHA-256 does not match" in p.stderr, p.stderr
    assert not (tmp_path / "nothing" / "member").exists()

    ports = harness.free_ports(2)
    m = Member("cairn", "r1", tmp_path / "new", ports[0], ports[1])
    (tmp_path / "new").mkdir()
    ic = f"r1={m.peer_url}"
    p = cairn(
        "snapshot", "restore", str(snap), "--name", "r1", "--data-dir", str(m.data_dir),
        "--initial-cluster", ic, "--initial-advertise-peer-urls", m.peer_url, "--initial-cluster-token", "compat-cluster",
    )
    assert p.returncode == 0, p.stderr
    # Restoring over an existing member is refused.
    again = cairn("snapshot", "restore", str(snap), "--name", "r1", "--data-dir", str(m.data_dir), "--initial-cluster", ic)
    assert again.returncode != 0 and b"already holds a member" in again.stderr, again.stderr

    new = Cluster("cairn", tmp_path / "new", 1)
    new.members = [m]
    try:
        new.start()
        r = m.etcdctl("get", "", "--prefix", "-w", "json")
        assert r.rc == 0, r.text()
        got = json.loads(r.stdout)
        kvs = {harness.base64.b64decode(kv["key"]).decode(): harness.base64.b64decode(kv["value"]).decode() for kv in got["kvs"]}
        assert kvs == {"a": "3", "b": "2"}
        old_rev = old_status["header"]["revision"]
        assert got["header"]["revision"] == old_rev + 1_000_000
        new_status = new.status(m)
        assert new_status["header"]["cluster_id"] != old_status["header"]["cluster_id"]
        # A watcher resuming from a revision of the old cluster is told it was compacted.
        w = m.etcdctl("watch", "a", "--rev", str(old_rev), timeout=10)
        assert b"compacted" in w.stdout + w.stderr, w.text()
        # And the restored member takes writes after the bumped revision.
        assert m.etcdctl("put", "c", "4").rc == 0
        r = m.etcdctl("get", "c", "-w", "json")
        assert json.loads(r.stdout)["kvs"][0]["mod_revision"] == old_rev + 1_000_001
    finally:
        new.stop()
