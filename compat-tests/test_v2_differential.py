"""The etcd v2 keys API, differentially: the same request sequence against real etcd 3.4
(`--enable-v2`) and against Cairn; status codes, v2 headers and JSON bodies must be equal
once indexes and timestamps are taken out (see http_support.normalize_v2).

etcd's v2 store is separate from its v3 store; Cairn serves v2 over its one v3 keyspace, so
this checks that the v2 behaviour survived the translation."""

from __future__ import annotations

import threading
import time

import pytest

from http_support import http, normalize_v2, start

# (method, path with query, form or None). Paths are under /v2/keys.
SEQUENCE = [
    ("GET", "/", None),
    ("PUT", "/a/b", {"value": "1"}),                    # creates the parent directory
    ("GET", "/", None),
    ("GET", "/?recursive=true", None),
    ("GET", "/a", None),
    ("GET", "/a/b", None),
    ("PUT", "/a/b", {"value": "2"}),                    # set over an existing key: prevNode
    ("PUT", "/a/b?prevExist=false", {"value": "3"}),    # 105 key exists
    ("PUT", "/a/c?prevExist=false", {"value": "3"}),    # create: 201
    ("PUT", "/a/c?prevExist=true", {"value": "4"}),     # update
    ("PUT", "/a/zz?prevExist=true", {"value": "4"}),    # 100 key not found
    ("PUT", "/a/c?prevValue=4", {"value": "5"}),        # compareAndSwap
    ("PUT", "/a/c?prevValue=nope", {"value": "6"}),     # 101 compare failed [nope != 5]
    ("PUT", "/a/c?prevIndex=1", {"value": "6"}),        # 101 [1 != N]
    ("PUT", "/a/c?prevIndex=1&prevValue=nope", {"value": "6"}),
    ("PUT", "/a/c?prevValue=", {"value": "6"}),         # 201 prevValue required
    ("PUT", "/a/b/x", {"value": "1"}),                  # 104 not a directory
    ("PUT", "/a", {"value": "1"}),                      # 102 not a file
    ("PUT", "/dir?dir=true", None),                     # empty directory
    ("PUT", "/dir?dir=true", None),                     # 102 not a file
    ("PUT", "/dir?prevExist=true", {"value": "x"}),     # 102
    ("GET", "/dir", None),
    ("DELETE", "/a", None),                             # 102 (a directory without dir=true)
    ("DELETE", "/a?dir=true", None),                    # 108 directory not empty
    ("DELETE", "/a/c?prevValue=nope", None),            # 101
    ("DELETE", "/a/c?prevValue=5", None),               # compareAndDelete
    ("DELETE", "/a/c", None),                           # 100
    ("DELETE", "/dir?dir=true", None),                  # empty directory: deleted
    ("DELETE", "/a?recursive=true", None),
    ("GET", "/a", None),                                # 100
    ("GET", "/nope/deeper", None),                      # 100, cause: the first missing part
    ("PUT", "/_hidden", {"value": "h"}),
    ("GET", "/", None),                                 # hidden keys are not listed
    ("GET", "/_hidden", None),
    ("POST", "/queue", {"value": "job1"}),              # in-order keys
    ("POST", "/queue", {"value": "job2"}),
    ("GET", "/queue?recursive=true&sorted=true", None),
    ("PUT", "/ttl?ttl=100", {"value": "t"}),
    ("GET", "/ttl", None),
    ("PUT", "/ttl?ttl=100&refresh=true&prevExist=true", None),
    ("PUT", "/ttl?ttl=", {"value": "t2"}),              # an empty ttl removes the TTL
    ("GET", "/ttl", None),
    ("PUT", "/ttl?refresh=true&ttl=5", {"value": "v"}),  # 211
    ("PUT", "/ttl?refresh=true", None),                 # 212
    ("PUT", "/x?ttl=abc", {"value": "1"}),              # 202
    ("PUT", "/x?prevIndex=abc", {"value": "1"}),        # 203
    ("GET", "/x?wait=true&waitIndex=abc", None),        # 203
    ("GET", "/x?recursive=maybe", None),                # 209
    ("PUT", "/x?wait=true", {"value": "1"}),            # 209 wait only with GET
    ("PUT", "/", {"value": "1"}),                       # 107 root is read only
    ("DELETE", "/?recursive=true", None),               # 107
    ("PUT", "/q1?noValueOnSuccess=true", {"value": "1"}),
    ("PUT", "/q1?value=fromquery", None),               # value in the query string
    ("GET", "/q1", None),
    ("PATCH", "/q1", None),                             # 405
    ("GET", "/a%20b/..//c/./d", None),                  # cleaned path, 100 /c
]


def run_sequence(base: str) -> list:
    out = []
    for method, path, form in SEQUENCE:
        r = http(method, f"{base}/v2/keys{path}", form=form)
        entry = {"request": f"{method} {path} {form or ''}", "status": r.status}
        if r.status == 405:
            entry["body"] = "<405>"
        else:
            entry["body"] = normalize_v2(r.json())
            entry["has_etcd_index"] = "x-etcd-index" in r.headers
            entry["has_cluster_id"] = "x-etcd-cluster-id" in r.headers
            if r.status < 300:
                entry["has_raft_headers"] = "x-raft-index" in r.headers and "x-raft-term" in r.headers
        out.append(entry)
    return out


def watch_sequence(base: str) -> list:
    """waitIndex from history, a long poll woken by a write, a recursive watch."""
    out = []
    first = http("PUT", f"{base}/v2/keys/w", form={"value": "v1"}).json()["node"]["modifiedIndex"]
    http("PUT", f"{base}/v2/keys/w", form={"value": "v2"})
    r = http("GET", f"{base}/v2/keys/w?wait=true&waitIndex={first}")
    out.append(("history", r.status, normalize_v2(r.json())))
    r = http("GET", f"{base}/v2/keys/w?wait=true&waitIndex={first + 1}")
    out.append(("history+1", r.status, normalize_v2(r.json())))

    results = {}

    def poll(name, url):
        results[name] = http("GET", url, timeout=20)

    threads = [
        threading.Thread(target=poll, args=("key", f"{base}/v2/keys/w?wait=true")),
        threading.Thread(target=poll, args=("tree", f"{base}/v2/keys/tree?wait=true&recursive=true")),
    ]
    for t in threads:
        t.start()
    time.sleep(0.5)  # let both polls reach the server (the writes below must come after)
    http("PUT", f"{base}/v2/keys/tree/deep/leaf", form={"value": "L"})
    http("DELETE", f"{base}/v2/keys/w")
    for t in threads:
        t.join(25)
    for name in ("key", "tree"):
        r = results.get(name)
        assert r is not None, f"{name} watch did not return"
        out.append((name, r.status, normalize_v2(r.json())))
    return out


def side_transcripts(request, tmp_path, side):
    srv = start(request, tmp_path, side)
    return run_sequence(srv.endpoint), watch_sequence(srv.endpoint), srv


def test_v2_keys_match_etcd(request, tmp_path):
    etcd_seq, etcd_watch, etcd = side_transcripts(request, tmp_path, "etcd")
    etcd.stop()
    # Sanity: the reference really served the v2 API and the sequence hit the errors it names.
    codes = [e["body"].get("errorCode") for e in etcd_seq if isinstance(e["body"], dict)]
    for code in (100, 101, 102, 104, 105, 107, 108, 201, 202, 203, 209, 211, 212):
        assert code in codes, f"etcd never answered error {code}: {etcd_seq}"
    cairn_seq, cairn_watch, _ = side_transcripts(request, tmp_path, "cairn")
    for e, c in zip(etcd_seq, cairn_seq):
        assert e == c, f"\netcd:  {e}\ncairn: {c}"
    assert len(etcd_seq) == len(cairn_seq)
    assert etcd_watch == cairn_watch, f"\netcd:  {etcd_watch}\ncairn: {cairn_watch}"


@pytest.mark.parametrize("side", ["etcd", "cairn"])
def test_v2_members_stats_version_have_etcds_shape(request, tmp_path, side):
    srv = start(request, tmp_path, side)
    base = srv.endpoint
    members = http("GET", f"{base}/v2/members").json()["members"]
    assert len(members) == 1 and set(members[0]) == {"id", "name", "peerURLs", "clientURLs"}
    assert members[0]["clientURLs"] == [base]
    http("PUT", f"{base}/v2/keys/s", form={"value": "1"})
    http("GET", f"{base}/v2/keys/s")
    store = http("GET", f"{base}/v2/stats/store").json()
    assert {"getsSuccess", "setsSuccess", "compareAndSwapFail", "expireCount", "watchers"} <= set(store)
    assert store["setsSuccess"] >= 1 and store["getsSuccess"] >= 1
    me = http("GET", f"{base}/v2/stats/self").json()
    assert me["state"] == "StateLeader" and me["id"] == members[0]["id"]
    assert {"name", "id", "state", "startTime", "leaderInfo"} <= set(me)
    leader = http("GET", f"{base}/v2/stats/leader").json()
    assert leader == {"leader": members[0]["id"], "followers": {}}
    version = http("GET", f"{base}/version").json()
    assert set(version) == {"etcdserver", "etcdcluster"}
    assert http("GET", f"{base}/health").json()["health"] == "true"
