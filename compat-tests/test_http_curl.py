"""curl against etcd's v3 JSON gateway: the same requests against real etcd 3.4 and against
Cairn (the gateway shares the client port with gRPC), the answers compared as JSON once the
member/cluster ids and Raft terms are taken out. Revisions are compared exactly: both stores
start empty at revision 1."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from http_support import start


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def curl(base: str, path: str, body, max_time: float = 10) -> tuple:
    """POST with curl; (HTTP status, body text)."""
    data = body if isinstance(body, str) else json.dumps(body)
    argv = ["curl", "-sS", "-N", "--noproxy", "*", "-m", str(max_time), "-o", "-", "-w", "\n%{http_code}",
            "-X", "POST", f"{base}{path}", "-d", data]
    p = subprocess.run(argv, capture_output=True, timeout=max_time + 10)
    out = p.stdout.decode()
    text, _, status = out.rpartition("\n")
    return int(status or 0), text


def scrub(value, path=()):
    """Drops what differs between two healthy servers: ids, Raft terms."""
    if isinstance(value, list):
        return [scrub(v, path) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in ("cluster_id", "member_id", "raft_term"):
                continue
            out[k] = scrub(v, path + (k,))
        return out
    return value


def lines(text: str) -> list:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def watch_summary(text: str) -> dict:
    """A watch stream as (created acks, every event in order, cancellations): how events are
    batched into messages may differ, what is delivered may not."""
    created, events, canceled = 0, [], []
    for msg in lines(text):
        r = msg.get("result", {})
        created += bool(r.get("created"))
        events += r.get("events", [])
        if r.get("canceled"):
            # cancel_reason left out: etcd 3.4 sends none on compaction, Cairn's watch service
            # (shared with gRPC) sends etcd's "required revision has been compacted" text.
            canceled.append({"compact_revision": r.get("compact_revision")})
    return {"created": created, "events": events, "canceled": canceled}


def scenario(base: str) -> list:
    out = []

    def call(path, body, **kw):
        status, text = curl(base, path, body, **kw)
        out.append((path, status, scrub(json.loads(text)) if text.strip().startswith("{") and "\n" not in text.strip() else text))
        return status, text

    call("/v3/kv/put", {"key": b64("foo"), "value": b64("bar")})
    call("/v3/kv/put", {"key": b64("foo"), "value": b64("baz"), "prev_kv": True})
    call("/v3/kv/put", {"key": b64("fop"), "value": b64("x")})
    call("/v3/kv/range", {"key": b64("foo")})
    # lowerCamel names, enum names, int64 as strings or numbers
    call("/v3/kv/range", {"key": b64("fo"), "rangeEnd": b64("fp"), "sortOrder": "DESCEND", "sort_target": "KEY", "limit": "1"})
    call("/v3/kv/range", {"key": b64("fo"), "range_end": b64("fp"), "count_only": True})
    call("/v3/kv/range", {"key": b64("foo"), "revision": 2})
    call("/v3/kv/range", {"key": b64("foo"), "bogus_field": 1})      # unknown fields are ignored
    txn = {"compare": [{"key": b64("new"), "result": "EQUAL", "target": "CREATE", "createRevision": "0"}],
           "success": [{"requestPut": {"key": b64("new"), "value": b64("1")}}],
           "failure": [{"request_range": {"key": b64("new")}}]}
    call("/v3/kv/txn", txn)
    call("/v3/kv/txn", txn)
    call("/v3/kv/deleterange", {"key": b64("fop"), "prev_kv": True})
    # leases
    call("/v3/lease/grant", {"TTL": 60, "ID": 1000})
    call("/v3/kv/put", {"key": b64("leased"), "value": b64("v"), "lease": "1000"})
    status, text = curl(base, "/v3/lease/timetolive", {"ID": 1000, "keys": True})
    ttl = json.loads(text)
    out.append(("timetolive", status, ttl.get("grantedTTL"), ttl.get("keys"), 0 < int(ttl.get("TTL", 0)) <= 60))
    call("/v3/lease/leases", {})
    status, text = curl(base, "/v3/lease/keepalive", {"ID": 1000}, max_time=2)
    out.append(("keepalive", [scrub(m) for m in lines(text)][:1]))
    call("/v3/lease/revoke", {"ID": 1000})
    call("/v3/kv/range", {"key": b64("leased")})
    # watch: history from revision 1, then after a compaction
    status, text = curl(base, "/v3/watch", {"create_request": {"key": b64("foo"), "start_revision": 1}}, max_time=2)
    out.append(("watch", watch_summary(text)))
    status, text = curl(base, "/v3/watch", {"create_request": {"key": b64("f"), "range_end": b64("g"), "start_revision": "3", "prev_kv": True}}, max_time=2)
    out.append(("watch-range", watch_summary(text)))
    call("/v3/kv/compaction", {"revision": 4})
    status, text = curl(base, "/v3/watch", {"create_request": {"key": b64("foo"), "start_revision": 2}}, max_time=2)
    out.append(("watch-compacted", watch_summary(text)))
    # errors: {"error", "message", "code"} with the HTTP status of the gRPC code
    call("/v3/kv/put", {"key": ""})
    call("/v3/kv/range", {"key": b64("foo"), "revision": 1000})
    call("/v3/kv/range", {"key": b64("foo"), "revision": 1})
    call("/v3/lease/revoke", {"ID": 4242})
    for bad in ('{"key": "!!!"}', '{"key": "Zm9v"', '{"key": "Zm9v", "lease": "abc"}'):
        status, text = curl(base, "/v3/kv/put", bad)
        body = json.loads(text)
        out.append(("malformed", bad, status, body["code"], body["error"] == body["message"] != ""))
    # cluster / maintenance: shapes (values differ between the servers)
    status, text = curl(base, "/v3/cluster/member/list", {})
    out.append(("member-list", status, sorted(json.loads(text)["members"][0])))
    status, text = curl(base, "/v3/maintenance/status", {})
    out.append(("status", status, sorted(k for k in json.loads(text) if k != "raftAppliedIndex")))
    call("/v3/kv/range", {"key": b64("foo")})
    return out


def test_json_gateway_matches_etcd(request, tmp_path):
    etcd = start(request, tmp_path, "etcd")
    reference = scenario(etcd.endpoint)
    etcd.stop()
    # Sanity: the reference answered what the scenario relies on.
    assert reference[3][1] == 200 and reference[3][2]["kvs"][0]["value"] == b64("baz"), reference[3]
    assert any(r[0] == "/v3/kv/put" and r[1] == 400 for r in reference), "etcd refused the empty key"
    cairn = start(request, tmp_path, "cairn")
    got = scenario(cairn.endpoint)
    for want, have in zip(reference, got):
        assert want == have, f"\netcd:  {want}\ncairn: {have}"
    assert len(reference) == len(got)


def test_gateway_and_grpc_share_the_port(request, tmp_path):
    """Cairn only: what the gateway writes, etcdctl (gRPC, same port) reads, and back; and a
    body over the size limit is refused with nothing stored."""
    import harness
    srv = start(request, tmp_path, "cairn")
    status, _ = curl(srv.endpoint, "/v3/kv/put", {"key": b64("via-http"), "value": b64("1")})
    assert status == 200
    r = harness.run_etcdctl(srv.endpoint, ["get", "via-http", "--print-value-only"])
    assert r.rc == 0 and r.stdout.decode().strip() == "1", r.text()
    assert harness.run_etcdctl(srv.endpoint, ["put", "via-grpc", "2"]).rc == 0
    status, text = curl(srv.endpoint, "/v3/kv/range", {"key": b64("via-grpc")})
    assert json.loads(text)["kvs"][0]["value"] == b64("2")
    big = json.dumps({"key": b64("big"), "value": base64.b64encode(b"x" * (4 << 20)).decode()})
    p = subprocess.run(["curl", "-sS", "--noproxy", "*", "-o", "-", "-w", "\n%{http_code}", "-X", "POST",
                        f"{srv.endpoint}/v3/kv/put", "--data-binary", "@-"], input=big.encode(), capture_output=True, timeout=30)
    text, _, status = p.stdout.decode().rpartition("\n")
    assert status == "413", (status, text[:200])
    assert json.loads(text)["code"] == 8
    status, text = curl(srv.endpoint, "/v3/kv/range", {"key": b64("big")})
    assert "kvs" not in json.loads(text), "nothing stored"
