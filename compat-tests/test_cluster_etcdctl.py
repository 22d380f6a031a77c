"""Multi-member clusters driven by an unmodified etcdctl, Cairn beside a real etcd 3.4 cluster.

Each scenario runs on a 3-member etcd cluster and on a 3-member Cairn cluster
started with the same flags; the etcdctl transcripts (exit codes and output,
with member/cluster ids and ports replaced by names) must be equal. Scenarios
that depend on timing (which member leads) record facts rather than raw text.
"""

from __future__ import annotations

import json
import re
import time

import pytest

import harness
from cluster_support import Cluster, Member

SIDES = ["etcd", "cairn"]


@pytest.fixture
def make_cluster(request, tmp_path):
    def _make(kind: str, size: int = 3) -> Cluster:
        c = Cluster(kind, tmp_path / kind, size)
        request.addfinalizer(c.stop)
        return c.start()

    return _make


class Names:
    """Replaces member ids, cluster ids and ports with stable names."""

    def __init__(self):
        self.map: dict = {}

    def name(self, raw: str, kind: str) -> str:
        key = raw.lower().lstrip("0") or "0"
        if key not in self.map:
            self.map[key] = f"<{kind}{len(self.map) + 1}>"
        return self.map[key]

    def text(self, s: str) -> str:
        # Lists ordered by member id (random on both sides) are compared as sets.
        s = re.sub(
            r'ETCD_INITIAL_CLUSTER="([^"]*)"',
            lambda m: 'ETCD_INITIAL_CLUSTER="' + ",".join(sorted(m.group(1).split(","))) + '"',
            s,
        )
        s = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:<port>", s)
        # etcdctl prints ids with %16x: a shorter id is padded with spaces.
        s = re.sub(r" +\b([0-9a-f]{10,16})\b", lambda m: " " + self.name(m.group(1), "id"), s)
        s = re.sub(r"\b[0-9a-f]{12,16}\b", lambda m: self.name(m.group(0), "id"), s)
        return s


def transcript(results: list, names: Names) -> list:
    out = []
    for r in results:
        err = [l for l in r.stderr.decode(errors="replace").splitlines() if not l.startswith("{")]
        out.append((r.rc, names.text(r.stdout.decode(errors="replace")).strip(), names.text("\n".join(err)).strip()))
    return out


def wait_for(what: str, fn, timeout: float = 30, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


def members_json(c: Cluster) -> list:
    r = c.etcdctl("-w", "json", "member", "list")
    assert r.rc == 0, r.text()
    return json.loads(r.stdout)["members"]


@pytest.mark.parametrize("side", SIDES)
def test_three_members_list_status_and_health(side, make_cluster):
    c = make_cluster(side)
    # Members publish their names and client URLs once a leader exists.
    members = wait_for(
        "every member published",
        lambda: (lambda ms: ms if all(m.get("name") and m.get("clientURLs") for m in ms) else None)(members_json(c)),
    )
    assert sorted(m["name"] for m in members) == ["m1", "m2", "m3"]
    for m in members:
        me = next(x for x in c.members if x.name == m["name"])
        assert m["peerURLs"] == [me.peer_url]
        assert m["clientURLs"] == [me.endpoint]
        assert not m.get("isLearner", False)

    r = c.etcdctl("-w", "json", "endpoint", "status", "--cluster")
    assert r.rc == 0, r.text()
    statuses = [s["Status"] for s in json.loads(r.stdout)]
    assert len(statuses) == 3
    leaders = {s["leader"] for s in statuses}
    assert len(leaders) == 1
    assert sum(1 for s in statuses if s["header"]["member_id"] == s["leader"]) == 1

    r = c.etcdctl("endpoint", "health", "--cluster")
    assert r.rc == 0, r.text()
    assert r.text().count("is healthy") == 3


@pytest.mark.parametrize("side", SIDES)
def test_every_member_serves_reads_and_writes(side, make_cluster):
    c = make_cluster(side)
    for i, m in enumerate(c.members):
        r = m.etcdctl("put", f"k{i}", f"from-{m.name}")
        assert r.rc == 0 and r.stdout.strip() == b"OK", r.text()
    for m in c.members:
        # Linearizable (default) reads on followers see every acknowledged write at once.
        r = m.etcdctl("get", "--prefix", "k", "--print-value-only")
        assert r.rc == 0, r.text()
        assert r.stdout.decode().split() == ["from-m1", "from-m2", "from-m3"]
    r = c.etcdctl("-w", "json", "endpoint", "hashkv", "--cluster")
    assert r.rc == 0, r.text()
    hashes = {h["HashKV"]["hash"] for h in json.loads(r.stdout)}
    assert len(hashes) == 1, r.text()


def membership_scenario(c: Cluster, workdir) -> list:
    """Learner add, a second learner refused, join, promote, errors, remove."""
    results = []
    m4_ports = harness.free_ports(2)
    m4 = Member(c.kind, "m4", workdir, m4_ports[0], m4_ports[1])
    c.members.append(m4)
    # etcd refuses reconfiguration until every member has been connected for a few seconds
    # ("unhealthy cluster"); retry through that window.
    add = wait_for(
        "member add to be accepted",
        lambda: (lambda r: None if b"unhealthy cluster" in r.stderr else r)(
            c.etcdctl("member", "add", "m4", "--learner", f"--peer-urls={m4.peer_url}")
        ),
        timeout=20,
        interval=0.5,
    )
    results.append(add)
    m5_peer = f"http://127.0.0.1:{harness.free_ports(1)[0]}"
    results.append(c.etcdctl("member", "add", "m5", "--learner", f"--peer-urls={m5_peer}"))
    results.append(c.etcdctl("member", "add", "m6", f"--peer-urls={c.members[0].peer_url}"))
    results.append(c.etcdctl("member", "remove", "1234abcd"))
    voter_id = f"{c.member_id(c.members[0]):x}"
    results.append(c.etcdctl("member", "promote", voter_id))
    ic = c.initial_cluster()
    m4.start(ic, state="existing")
    # A learner refuses writes and linearizable reads, with etcd's error.
    time.sleep(1)
    results.append(m4.etcdctl("put", "x", "y"))
    # From here on, talk to the voters only (etcdctl may pick any endpoint).
    voters = ",".join(m.endpoint for m in c.members if m is not m4)
    c.endpoints = lambda: voters
    found = re.search(rb"Member +([0-9a-f]+) added", add.stdout)  # %16x: a short id is space-padded
    assert found, add.text()
    learner_id = found.group(1).decode()

    def promoted():
        r = c.etcdctl("member", "promote", learner_id)
        if r.rc == 0:
            return r
        assert b"in sync with leader" in r.stderr or b"timed out" in r.stderr or b"deadline" in r.stderr, r.text()
        return None

    results.append(wait_for("the learner to be promoted", promoted, timeout=40, interval=0.5))
    members = members_json(c)
    results.append(harness.Result([], None, 0, json.dumps(sorted((m.get("name", ""), bool(m.get("isLearner"))) for m in members)).encode(), b"", 0))
    r = m4.etcdctl("get", "--prefix", "", "--keys-only")
    results.append(harness.Result([], None, r.rc, b"", b"", 0))
    results.append(c.etcdctl("member", "remove", learner_id))
    m4.stop()
    c.members.remove(m4)
    r = c.etcdctl("member", "list", "-w", "simple")
    lines = sorted(re.sub(rb"^[0-9a-f]+, ", b"<id>, ", l) for l in r.stdout.splitlines())
    results.append(harness.Result([], None, r.rc, b"\n".join(lines), b"", 0))
    return results


def test_membership_changes_match_etcd(make_cluster, tmp_path):
    transcripts = {}
    for side in SIDES:
        c = make_cluster(side)
        wait_for("members published", lambda: all(m.get("name") for m in members_json(c)))
        transcripts[side] = transcript(membership_scenario(c, tmp_path / side), Names())
    assert transcripts["cairn"] == transcripts["etcd"]


def test_maintenance_commands_match_etcd(make_cluster, tmp_path):
    transcripts = {}
    for side in SIDES:
        c = make_cluster(side)
        leader = c.leader()
        follower = next(m for m in c.members if m is not leader)
        results = [c.etcdctl("put", "a", "1")]
        results.append(leader.etcdctl("move-leader", f"{c.member_id(follower):x}"))
        wait_for("leadership moved", lambda: c.leader() is follower, timeout=15)
        # A move asked of a member that is not the leader is refused.
        results.append(leader.etcdctl("move-leader", f"{c.member_id(leader):x}"))
        snap = tmp_path / f"{side}.snapshot"
        r = follower.etcdctl("snapshot", "save", str(snap))
        results.append(harness.Result([], None, r.rc, r.stdout.replace(str(snap).encode(), b"<file>"), b"", 0))
        assert snap.stat().st_size > 0
        results.append(c.etcdctl("alarm", "list"))
        r = c.etcdctl("defrag", "--cluster")
        results.append(r)
        results.append(c.etcdctl("get", "a", "--print-value-only"))
        transcripts[side] = transcript(results, Names())
    assert transcripts["cairn"] == transcripts["etcd"]


@pytest.mark.parametrize("side", SIDES)
def test_killing_the_leader_loses_no_acknowledged_write(side, make_cluster):
    c = make_cluster(side)
    acked = []
    for i in range(20):
        r = c.etcdctl("put", f"w{i:03}", str(i))
        assert r.rc == 0, r.text()
        acked.append(f"w{i:03}")
    leader = c.leader()
    assert leader is not None
    leader.kill9()
    c.wait_healthy()
    for i in range(20, 40):
        r = c.etcdctl("put", f"w{i:03}", str(i))
        assert r.rc == 0, r.text()
        acked.append(f"w{i:03}")
    leader.start(c.initial_cluster())
    c.wait_healthy()
    for m in c.members:
        r = m.etcdctl("get", "--prefix", "w", "--keys-only")
        assert r.rc == 0, r.text()
        assert r.stdout.decode().split() == acked, m.name
        # And the restarted member holds them locally too.
    r = leader.etcdctl("get", "--prefix", "w", "--keys-only", "--consistency=s")
    wait_for(
        "the restarted member to catch up",
        lambda: leader.etcdctl("get", "--prefix", "w", "--keys-only", "--consistency=s").stdout.decode().split() == acked,
    )


@pytest.mark.parametrize("side", SIDES)
def test_one_member_grows_to_three(side, make_cluster, tmp_path):
    """The user story: one member started alone, grown with `member add` + `existing` joins."""
    c = make_cluster(side, size=1)
    assert c.etcdctl("put", "before", "growth").rc == 0
    for name in ["m2", "m3"]:
        ports = harness.free_ports(2)
        m = Member(side, name, tmp_path / side, ports[0], ports[1])
        r = wait_for(
            f"member add {name}",
            lambda: (lambda r: None if b"unhealthy cluster" in r.stderr or b"not enough started" in r.stderr else r)(
                c.etcdctl("member", "add", name, f"--peer-urls={m.peer_url}")
            ),
            timeout=30,
            interval=0.5,
        )
        assert r.rc == 0, r.text()
        initial = re.search(rb'ETCD_INITIAL_CLUSTER="([^"]+)"', r.stdout).group(1).decode()
        c.members.append(m)
        m.start(initial, state="existing")
        c.wait_healthy()
        wait_for(
            f"{name} to be a started voter",
            lambda: (lambda ms: any(x.get("name") == name and not x.get("isLearner") for x in ms))(members_json(c)),
        )
    for m in c.members:
        r = m.etcdctl("get", "before", "--print-value-only")
        assert r.rc == 0 and r.stdout.strip() == b"growth", r.text()
    assert len(members_json(c)) == 3


def test_cairn_promotes_a_caught_up_learner_by_itself(request, tmp_path):
    """Beyond etcd: with --auto-promote-learners a learner becomes a voter once caught up."""
    c = Cluster("cairn", tmp_path / "auto", 3, extra=["--auto-promote-learners"])
    request.addfinalizer(c.stop)
    c.start()
    for i in range(50):
        assert c.etcdctl("put", f"k{i}", "v").rc == 0
    ports = harness.free_ports(2)
    m4 = Member("cairn", "m4", tmp_path / "auto", ports[0], ports[1])
    m4.extra = ["--auto-promote-learners"]
    r = c.etcdctl("member", "add", "m4", "--learner", f"--peer-urls={m4.peer_url}")
    assert r.rc == 0, r.text()
    assert any(m.get("isLearner") for m in members_json(c)), "added as a learner first"
    c.members.append(m4)
    m4.start(re.search(rb'ETCD_INITIAL_CLUSTER="([^"]+)"', r.stdout).group(1).decode(), state="existing")
    wait_for(
        "m4 to be promoted without `member promote`",
        lambda: (lambda ms: any(x.get("name") == "m4" and not x.get("isLearner") for x in ms))(members_json(c)),
    )
    r = m4.etcdctl("get", "k49", "--print-value-only")
    assert r.rc == 0 and r.stdout.strip() == b"v", r.text()
