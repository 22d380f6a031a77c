"""Unit tests of the harness itself (no servers): normalisation keeps what
must be compared, hides only what is naturally different, and a difference
produces a readable failing diff."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import harness
from harness import Normalizer, Result, StepRecord, diff_transcripts, txn_input


class FakeServer:
    client_port = 40000
    endpoint = "http://127.0.0.1:40000"
    member_id = 3319814642761637952
    cluster_id = 324952591200643719
    peer_urls = ["http://127.0.0.1:40001"]


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def norm():
    return Normalizer(FakeServer())


def test_header_ids_hidden_revision_kept():
    raw = {"header": {"cluster_id": 1, "member_id": 2, "revision": 7, "raft_term": 3}}
    assert norm().json(raw) == {
        "header": {"cluster_id": "<cluster-id>", "member_id": "<member-id>", "revision": 7, "raft_term": "<raft-term>"}
    }


def test_missing_header_fields_are_not_invented():
    # txn inner headers carry only the revision; a server that fills more
    # (or less) must show up as a difference
    assert norm().json({"header": {"revision": 9}}) == {"header": {"revision": 9}}


def test_keys_and_values_decoded_other_fields_kept():
    raw = {"kvs": [{"key": b64("a"), "value": b64("v 1"), "create_revision": 2, "mod_revision": 3, "version": 2}],
           "count": 1, "more": True}
    out = norm().json(raw)
    assert out["kvs"][0] == {"key": "a", "value": "v 1", "create_revision": 2, "mod_revision": 3, "version": 2}
    assert out["count"] == 1 and out["more"] is True


def test_binary_and_long_values():
    n = norm()
    assert n.json({"value": base64.b64encode(b"\xff\x00").decode()}) == {"value": "<bytes:ff00>"}
    a = n.json({"value": b64("x" * 1000)})["value"]
    b = n.json({"value": b64("x" * 999 + "y")})["value"]
    assert len(a) < 200 and a != b  # abbreviated, still distinguishable


def test_endpoint_status_volatile_fields():
    raw = [{"Endpoint": "http://127.0.0.1:40000", "Status": {
        "header": {"cluster_id": 1, "member_id": 5, "revision": 4, "raft_term": 2},
        "version": "3.4.23", "dbSize": 1, "leader": 5, "raftIndex": 9, "raftTerm": 2,
        "raftAppliedIndex": 9, "dbSizeInUse": 1}}]
    out = norm().json(raw)[0]
    assert out["Endpoint"] == "http://127.0.0.1:<client-port>"
    st = out["Status"]
    assert st["header"]["revision"] == 4
    assert st["leader"] == "<member-id>"
    assert st["version"] == "<version>" and st["dbSize"] == "<number>"
    raw[0]["Status"]["leader"] = 6
    assert norm().json(raw)[0]["Status"]["leader"] == "<other-member-id>"


def test_member_list_ids_and_peer_url_shape():
    raw = {"members": [{"ID": FakeServer.member_id, "name": "s1", "peerURLs": ["http://localhost:2380"],
                        "clientURLs": ["http://127.0.0.1:40000"]}]}
    m = norm().json(raw)["members"][0]
    assert m == {"ID": "<member-id>", "name": "s1", "peerURLs": ["<peer-url>"],
                 "clientURLs": ["http://127.0.0.1:<client-port>"]}


def test_text_ids_ports_and_zap_lines():
    n = norm()
    line = f"{FakeServer.member_id:x}, started, s1, http://127.0.0.1:40001, http://127.0.0.1:40000, false"
    assert n.lines(line.encode()) == ["<member-id>, started, s1, <peer-url>, http://127.0.0.1:<client-port>, false"]
    zap = json.dumps({"level": "warn", "ts": "2026-01-01T00:00:00Z", "caller": "x.go:1", "msg": "m",
                      "target": "endpoint://client-123/127.0.0.1:40000", "attempt": 0,
                      "error": "rpc error: code = InvalidArgument desc = etcdserver: key not found"})
    err = n.stderr_lines((zap + "\nError: etcdserver: key not found\n").encode())
    assert err == [{"level": "warn", "caller": "x.go:1", "msg": "m", "target": "<target>", "attempt": 0,
                    "error": "rpc error: code = InvalidArgument desc = etcdserver: key not found"},
                   "Error: etcdserver: key not found"]


def _rec(rc, out, err=()):
    return StepRecord("etcdctl -w json put a 1", rc, list(out), list(err), Result([], None, rc, b"", b"", 0))


def test_equal_transcripts_have_no_diff():
    a = [_rec(0, [{"header": {"revision": 2}}])]
    b = [_rec(0, [{"header": {"revision": 2}}])]
    assert diff_transcripts(a, b) is None


def test_difference_is_reported_readably():
    a = [_rec(0, [{"header": {"revision": 2}}]), _rec(1, [], ["Error: etcdserver: key not found"])]
    b = [_rec(0, [{"header": {"revision": 3}}]), _rec(1, [], ["Error: key not found"])]
    d = diff_transcripts(a, b)
    assert d is not None
    assert "differs from etcd in 2 of 2 step(s), first at step 1: etcdctl -w json put a 1" in d
    assert "── step 1: etcdctl -w json put a 1" in d
    assert '-        "revision": 2' in d and '+        "revision": 3' in d
    assert '-    "Error: etcdserver: key not found"' in d


def test_exit_code_difference_alone_is_a_difference():
    assert diff_transcripts([_rec(0, [])], [_rec(1, [])]) is not None


def test_txn_input_layout():
    assert txn_input(['value("a") = "1"'], ["put a 2"], ["put a 3"]) == 'value("a") = "1"\n\nput a 2\n\nput a 3\n\n'
    assert txn_input() == "\n\n\n"


def test_default_cairn_bin_is_relative_to_repo(monkeypatch):
    monkeypatch.delenv("CAIRN_BIN", raising=False)
    assert harness.cairn_bin() == Path(harness.__file__).resolve().parent.parent / "target" / "debug" / "cairn"
    monkeypatch.setenv("CAIRN_BIN", "target/release/cairn")
    assert harness.cairn_bin() == harness.REPO_ROOT / "target" / "release" / "cairn"


def test_clean_env_drops_etcdctl_vars(monkeypatch):
    monkeypatch.setenv("ETCDCTL_ENDPOINTS", "http://10.0.0.1:2379")
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    env = harness.clean_env()
    assert "ETCDCTL_ENDPOINTS" not in env and "https_proxy" not in env
    assert env["ETCDCTL_API"] == "3"


# -- leases ------------------------------------------------------------------


def _grant(n, lid, out=None):
    """Feed a `lease grant` result with ID lid into normaliser n."""
    r = Result([], None, 0, (out or json.dumps({"ID": lid, "TTL": 10})).encode(), b"", 0)
    n.leases.capture(r)


def test_lease_ids_become_placeholders_in_json_text_and_fields():
    n = norm()
    _grant(n, 0x2040A21DFB992905)
    _grant(n, 7, out="lease 0000000000000007 granted with TTL(10s)\n")
    assert n.leases.fill("--lease={lease1}") == "--lease=2040a21dfb992905"
    assert n.leases.fill("{lease}") == "7" and n.leases.fill("{lease2}") == "7"
    assert n.leases.fill("{lease3}") == "NO-LEASE-3"  # no such grant: etcdctl will reject it
    out = n.json({"cluster_id": 1, "member_id": 2, "revision": 1, "raft_term": 3, "ID": 0x2040A21DFB992905, "TTL": 10})
    assert out == {"cluster_id": "<cluster-id>", "member_id": "<member-id>", "revision": 1,
                   "raft_term": "<raft-term>", "ID": "<LEASE1>", "TTL": 10}
    assert n.json({"leases": [{"id": 7}, {"id": 0x2040A21DFB992905}]}) == {"leases": [{"id": "<LEASE2>"}, {"id": "<LEASE1>"}]}
    assert n.json({"kvs": [{"key": b64("a"), "lease": 7}]}) == {"kvs": [{"key": "a", "lease": "<LEASE2>"}]}
    assert n.text("lease 2040a21dfb992905 revoked") == "lease <LEASE1> revoked"
    assert n.text("0000000000000007") == "<LEASE2>"
    assert n.text('"Lease" : 7') == '"Lease" : <LEASE2>'
    # never-granted IDs, and small numbers that are not 16-digit hex, are kept
    assert n.json({"id": 305441741, "ttl": -1, "granted-ttl": 0}) == {"id": 305441741, "ttl": -1, "granted-ttl": 0}
    assert n.text("lease 000000001234abcd already expired") == "lease 000000001234abcd already expired"
    assert n.text("found 7 leases") == "found 7 leases"


def test_lease_id_reuse_and_zero_stay_visible():
    n = norm()
    _grant(n, 5)
    _grant(n, 5)  # a server handing out the same ID twice
    _grant(n, 0)  # or ID 0
    assert n.leases.granted == [5, 5, None]
    assert n.json({"ID": 5}) == {"ID": "<LEASE1>"} and n.json({"ID": 0}) == {"ID": 0}


def test_lease_remaining_ttl_bucket_and_keys_order():
    n = norm()
    ttl = lambda t, g: n.json({"id": 1, "ttl": t, "granted-ttl": g})["ttl"]
    assert ttl(99, 100) == ttl(95, 100) == "<remaining 95..99s>"
    assert ttl(100, 100) == 100  # etcd truncates: never the full granted TTL
    assert ttl(94, 100) == 94 and ttl(99000, 100) == 99000
    assert ttl(1, 2) == ttl(0, 2) == "<remaining 0..1s>"
    assert ttl(-1, 0) == -1
    a = n.json({"ttl": 9, "granted-ttl": 10, "keys": [b64("k2"), b64("k1")]})
    assert a["keys"] == ["k1", "k2"]
    assert n.text("lease x granted with TTL(10s), remaining(9s), attached keys([k2 k1])") == \
        "lease x granted with TTL(10s), remaining(<remaining 5..9s>), attached keys([k1 k2])"
    assert n.text("granted with TTL(10s), remaining(10s)") == "granted with TTL(10s), remaining(10s)"


def test_poll_condition_is_compared():
    r = Result([], None, 0, b"", b"", 0)
    met = StepRecord("etcdctl get x", 0, [], [], r, "met")
    not_met = StepRecord("etcdctl get x", 0, [], [], r, "NOT met after 15s")
    assert diff_transcripts([met], [not_met]) is not None
    assert "condition" not in _rec(0, []).comparable()  # ordinary steps unchanged
