"""Differential etcdctl scenarios for the Lease service (grant, list,
timetolive, revoke, keep-alive --once, keys attached with put --lease, expiry).

Same machinery as test_kv_etcdctl.py (J / T / FAIL steps, fresh servers per
leg), plus:
  {lease} / {leaseN}   in a step's args or stdin: the ID (hex) granted by the
                       last / the N-th `lease grant` step of this run, captured
                       from that step's output (see harness.LeaseIds)
  <LEASE1>, <LEASE2>   what granted IDs become in the compared output
                       (decimal in JSON, %016x hex in text), numbered by grant
  <remaining a..bs>    `lease timetolive`'s remaining TTL, bucketed against
                       the granted TTL (harness.remaining_bucket); granted TTL
                       and everything else are compared exactly
  POLL(cmd, until, d)  re-run a step every 0.5 s until a condition holds
                       (max 15 s); SLEEP(s) waits
Lease IDs made up by the scenarios (1234abcd, 0) are not normalised.
"""

from __future__ import annotations

import base64
import json

import pytest

import test_kv_etcdctl
from harness import FAIL, POLL, SLEEP, J, Scenario, T, txn_input

ALL = '""'

# error texts / outputs (exact, as etcdctl 3.4 prints them against etcd 3.4)
LEASE_NOT_FOUND = "Error: etcdserver: requested lease not found"  # put --lease, keep-alive --once (rc 2)
REVOKE_NOT_FOUND = "Error: failed to revoke lease (etcdserver: requested lease not found)"
TOO_LARGE_TTL = "Error: failed to grant lease (etcdserver: too large lease TTL)"
GRPC_NOT_FOUND = "code = NotFound desc = etcdserver: requested lease not found"
EXIT_BAD_CONNECTION = 2  # etcdctl's exit code for a failed keep-alive --once

UNKNOWN = "1234abcd"  # a lease ID no server has granted

SCENARIOS: list = []


def scenario(*a, **kw):
    SCENARIOS.append(Scenario(*a, **kw))


def keys_gone(*keys):
    """POLL condition: a `-w json get` shows none of `keys`."""
    want = set(keys)

    def cond(r) -> bool:
        if r.rc != 0:
            return False
        kvs = json.loads(r.stdout.decode().strip().splitlines()[0]).get("kvs") or []
        return not want & {base64.b64decode(kv["key"]).decode() for kv in kvs}

    return cond


# ==========================================================================
# lease grant
# ==========================================================================

scenario("lease-grant", "lease grant",
         "grant (json + text + fields); TTL below etcd's minimum (1, 0, -5) is raised to 2; max TTL; no new revision", [
             J("lease grant 10"),  # {..header.., "ID": <LEASE1>, "TTL": 10, "Error": ""}
             T("lease grant 10", out="granted with TTL(10s)"),
             J("lease grant 1"),  # TTL 2: etcd's minimum lease TTL
             T("lease grant 1", out="granted with TTL(2s)"),
             J("lease grant 0"),
             J(["lease", "grant", "--", "-5"]),
             J("lease grant 9000000000"),  # etcd's MaxLeaseTTL: still fine
             FAIL("lease grant 9000000001", TOO_LARGE_TTL),  # OutOfRange
             T("-w fields lease grant 600"),
             J("lease grant 600"),
             J("get --prefix " + ALL),  # grants do not create a revision: still 1
         ])

# ==========================================================================
# lease list
# ==========================================================================

scenario("lease-list", "lease list", "list: empty, three leases, after a revoke (json + text)", [
    J("lease list"),
    T("lease list", out="found 0 leases"),
    J("lease grant 100"),
    J("lease grant 200"),
    J("lease grant 300"),
    J("lease list"),
    T("lease list", out="found 3 leases"),
    J("lease revoke {lease2}"),
    J("lease list"),
    T("lease list"),
])

scenario("lease-list-order", "lease list",
         "list order: etcd sorts by expiry (soonest first), not by grant order or ID", [
             J("lease grant 300"),
             J("lease grant 100"),
             J("lease grant 200"),
             J("lease list"),  # <LEASE2>, <LEASE3>, <LEASE1>
             T("lease list"),
         ])

# ==========================================================================
# lease timetolive
# ==========================================================================

scenario("lease-timetolive", "lease timetolive",
         "timetolive with/without --keys (json + text), no keys, two keys; unknown ID and ID 0", [
             J("lease grant 100"),
             J("lease timetolive {lease}"),  # ttl <remaining>, granted-ttl 100, keys null
             T("lease timetolive {lease}", out="granted with TTL(100s), remaining("),
             J("lease timetolive --keys {lease}"),  # keys null, not []
             T("lease timetolive --keys {lease}", out="attached keys([])"),
             J("put --lease={lease} k1 v1"),
             J("put --lease={lease} k2 v2"),
             J("lease timetolive {lease}"),  # without --keys: keys null
             J("lease timetolive --keys {lease}"),  # keys sorted by the normaliser
             T("lease timetolive --keys {lease}", out="attached keys([k1 k2])"),
             # unknown lease: not an error; ttl -1, granted-ttl 0, the asked ID echoed
             J("lease timetolive " + UNKNOWN),
             T("lease timetolive " + UNKNOWN, out="lease 000000001234abcd already expired"),
             J("lease timetolive --keys " + UNKNOWN),
             J("lease timetolive 0"),
             T("lease timetolive 0", out="lease 0000000000000000 already expired"),
         ])

# ==========================================================================
# put / get / txn with --lease: which keys a lease holds
# ==========================================================================

scenario("lease-put-attach", "put --lease",
         "put --lease: kv.lease in get; overwrite without --lease detaches; --ignore-lease keeps; del detaches; move", [
             J("lease grant 100"),
             J("lease grant 200"),
             J("put --lease={lease1} a 1"),
             T("put --lease={lease1} b 1", out="OK"),
             J("put --lease={lease1} c 1"),
             J("get a"),  # kvs[0].lease = <LEASE1>
             T("-w fields get a"),  # "Lease" : <LEASE1>
             J("lease timetolive --keys {lease1}"),
             J("put a 2"),  # overwrite without --lease: lease 0 (field absent)
             J("get a"),
             J("put --ignore-lease b 2"),  # keeps <LEASE1>
             J("get b"),
             J("put --prev-kv --lease={lease2} c 2"),  # moves to <LEASE2>; prev_kv shows <LEASE1>
             J("lease timetolive --keys {lease1}"),  # only b
             J("lease timetolive --keys {lease2}"),  # only c
             J("del b"),
             J("lease timetolive --keys {lease1}"),  # none
             J("get --prefix " + ALL),
         ])

scenario("lease-txn-put", "put --lease", "txn put --lease (known lease; unknown lease fails the whole txn)", [
    J("lease grant 100"),
    J("txn", txn_input([], ["put t1 v --lease={lease}", "put t2 v"], [])),
    J("get --prefix t"),
    J("lease timetolive --keys {lease}"),
    FAIL("txn", LEASE_NOT_FOUND, stdin=txn_input([], ["put t3 v", "put t4 v --lease=" + UNKNOWN], [])),
    J("get --prefix t"),  # nothing of the failed txn applied
])

scenario("lease-put-unknown", "put --lease", "put --lease=<unknown / revoked lease> -> requested lease not found", [
    FAIL("put --lease=" + UNKNOWN + " k v", LEASE_NOT_FOUND),
    FAIL("put --lease=" + UNKNOWN + " k v", GRPC_NOT_FOUND, json_out=False),
    J("lease grant 100"),
    J("lease revoke {lease}"),
    FAIL("put --lease={lease} k v", LEASE_NOT_FOUND),
    J("get --prefix " + ALL),  # revision still 1
])

# ==========================================================================
# lease revoke
# ==========================================================================

scenario("lease-revoke", "lease revoke",
         "revoke deletes all attached keys in ONE revision; others stay; history kept; revoke again -> not found", [
             J("lease grant 100"),
             J("lease grant 200"),
             J("put --lease={lease1} k/1 a"),  # r2
             J("put --lease={lease1} k/2 b"),  # r3
             J("put --lease={lease1} k/3 c"),  # r4
             J("put k/plain d"),  # r5
             J("put --lease={lease2} k/other e"),  # r6
             J("lease revoke {lease1}"),  # header.revision 7: one revision for the three deletes
             J("get --prefix k/"),  # k/other and k/plain left, revision 7
             J("get --prefix k/ --rev 6"),  # history still has the revoked keys
             J("lease timetolive --keys {lease1}"),  # ttl -1, granted-ttl 0
             T("lease timetolive {lease1}", out="already expired"),
             J("lease list"),
             J("lease timetolive --keys {lease2}"),
             FAIL("lease revoke {lease1}", REVOKE_NOT_FOUND),
             T("lease revoke {lease2}", out="revoked"),
             J("get --prefix k/"),  # revision 8
         ])

scenario("lease-revoke-keyless", "lease revoke", "revoking a lease without keys creates no revision", [
    J("put a 1"),  # r2
    J("lease grant 100"),
    J("lease revoke {lease}"),  # header.revision stays 2
    J("get --prefix " + ALL),
    J("lease list"),
])

scenario("lease-revoke-unknown", "lease revoke", "revoke an unknown lease / ID 0 -> NotFound, exit 1 (json + text)", [
    FAIL("lease revoke " + UNKNOWN, REVOKE_NOT_FOUND),
    FAIL("lease revoke " + UNKNOWN, GRPC_NOT_FOUND, json_out=False),
    FAIL("lease revoke 0", REVOKE_NOT_FOUND, json_out=False),
])

# ==========================================================================
# lease keep-alive --once
# ==========================================================================

scenario("lease-keep-alive-once", "lease keep-alive",
         "keep-alive --once (json + text + fields) reports the granted TTL; unknown/revoked lease -> exit 2", [
             J("lease grant 100"),
             J("put --lease={lease} k v"),
             J("lease keep-alive --once {lease}"),  # ID, TTL 100 (the granted TTL), header
             T("lease keep-alive --once {lease}", out="keepalived with TTL(100)"),
             T("-w fields lease keep-alive --once {lease}"),
             J("lease timetolive {lease}"),
             # unknown lease: the stream answers TTL 0, etcdctl exits 2 (ExitBadConnection)
             FAIL("lease keep-alive --once " + UNKNOWN, LEASE_NOT_FOUND, rc=EXIT_BAD_CONNECTION),
             FAIL("lease keep-alive --once " + UNKNOWN, LEASE_NOT_FOUND, rc=EXIT_BAD_CONNECTION, json_out=False),
             FAIL("lease keep-alive --once 0", LEASE_NOT_FOUND, rc=EXIT_BAD_CONNECTION),
             J("lease revoke {lease}"),
             FAIL("lease keep-alive --once {lease}", LEASE_NOT_FOUND, rc=EXIT_BAD_CONNECTION),
             J("get k"),
         ])

# ==========================================================================
# expiry (timing-dependent: polls, with generous margins)
# ==========================================================================

scenario("lease-expiry", "lease expiry",
         "TTL 3 lease with 2 keys expires: keys deleted in one revision, lease gone (polls up to 15 s)", [
             J("lease grant 3"),
             J("put --lease={lease} e/1 a"),  # r2
             J("put --lease={lease} e/2 b"),  # r3
             J("put e/keep c"),  # r4
             POLL("get --prefix e/", keys_gone("e/1", "e/2"), "e/1 and e/2 are gone"),
             J("get --prefix e/"),  # only e/keep; revision 5 (one revision for both deletes)
             J("get --prefix e/ --rev 4"),
             J("lease timetolive --keys {lease}"),  # ttl -1, granted-ttl 0
             T("lease timetolive {lease}", out="already expired"),
             J("lease list"),  # empty
             FAIL("lease keep-alive --once {lease}", LEASE_NOT_FOUND, rc=EXIT_BAD_CONNECTION),
             FAIL("lease revoke {lease}", REVOKE_NOT_FOUND),
             FAIL("put --lease={lease} e/3 x", LEASE_NOT_FOUND),
         ])

scenario("lease-keep-alive-extends", "lease expiry",
         "keep-alive --once before expiry keeps the keys past the original TTL; then it expires (about 12 s)", [
             J("lease grant 6"),
             J("put --lease={lease} x v"),  # r2
             SLEEP(4),
             J("lease keep-alive --once {lease}"),  # TTL 6 again, from now
             J("lease timetolive {lease}"),  # remaining back near 5
             SLEEP(3.5),  # ~7.5 s after the grant: without the keep-alive x would be gone
             J("get x"),  # still there
             POLL("get x", keys_gone("x"), "x is gone"),
             J("get x"),  # revision 3
             J("lease list"),
         ])

# ==========================================================================
# client-side argument errors (etcdctl rejects them; no server involved)
# ==========================================================================

scenario("lease-client-side-errors", "lease (client-side)", "argument errors etcdctl rejects itself", [
    FAIL("lease grant", "Error: lease grant command needs TTL argument", rc=128, json_out=False),
    FAIL("lease grant abc", 'Error: bad TTL (strconv.ParseInt: parsing "abc": invalid syntax)', rc=128,
         json_out=False),
    FAIL("lease revoke", "Error: lease revoke command needs 1 argument", rc=128, json_out=False),
    FAIL("lease revoke zz", 'Error: bad lease ID arg (strconv.ParseInt: parsing "zz": invalid syntax), '
         "expecting ID in Hex", rc=128, json_out=False),
    FAIL("lease timetolive", "Error: lease timetolive command needs lease ID as argument", rc=128, json_out=False),
    FAIL("lease keep-alive --once", "Error: lease keep-alive command needs lease ID as argument", rc=128,
         json_out=False),
    FAIL("put --lease=zz k v", 'bad lease ID (strconv.ParseInt: parsing "zz": invalid syntax), expecting ID in Hex',
         rc=128, json_out=False),
    FAIL("-w table lease grant 10", "Error: table not supported as output format", rc=4, json_out=False),
])

# `etcdctl lease grant` has no --id flag in 3.4, so client-chosen lease IDs
# (LeaseGrantRequest.ID != 0) are left to the gRPC-level suite.

# ==========================================================================

SIDES = ["etcd", "cairn"]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_etcdctl(scenario, side, differential):
    differential(scenario, side)


def test_scenario_ids_unique():
    # ids key the shared reference transcripts and out/transcripts/ files
    ids = [s.id for s in SCENARIOS] + [s.id for s in test_kv_etcdctl.SCENARIOS]
    assert len(ids) == len(set(ids))
