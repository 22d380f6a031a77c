"""Differential etcdctl scenarios: every scenario runs on a fresh real etcd
(test id ...-etcd) and on a fresh Cairn (...-cairn); the Cairn leg passes when
its normalised transcript equals etcd's. Revisions are compared exactly, so
every scenario starts from an empty store (revision 1).

Helpers (see harness.py):
  J("put a 1")         step run with `-w json`
  T("get a")           step run in the default "simple" text format
  FAIL(cmd, msg, rc)   step expected to fail on etcd with `msg` in stderr
  txn_input(compares, success, failure) -> stdin text for `etcdctl txn`
"""

from __future__ import annotations

import pytest

from harness import FAIL, J, Scenario, T, endpoint_status_text, member_list_text, txn_input

S = Scenario
ALL = '""'  # with --prefix / --from-key: the whole keyspace

# error texts (exact, as real etcd 3.4 returns them)
KEY_NOT_FOUND = "Error: etcdserver: key not found"
KEY_NOT_PROVIDED = "Error: etcdserver: key is not provided"
COMPACTED = "Error: etcdserver: mvcc: required revision has been compacted"
FUTURE_REV = "Error: etcdserver: mvcc: required revision is a future revision"
DUP_KEY = "Error: etcdserver: duplicate key given in txn request"
TOO_MANY_OPS = "Error: etcdserver: too many operations in txn request"
LEASE_NOT_FOUND = "Error: etcdserver: requested lease not found"

SCENARIOS: list = []


def scenario(*a, **kw):
    SCENARIOS.append(Scenario(*a, **kw))


# ==========================================================================
# put
# ==========================================================================

scenario("put-plain", "put", "put, overwrite, read back (json + text)", [
    J("put a 1"),
    J("put a 2"),
    J("get a"),
    T("put a 3", out="OK"),
    T("get a"),
    J("put b 1"),
    J("get --prefix " + ALL),
])

scenario("put-prev-kv", "put", "put --prev-kv on existing and new keys", [
    J("put a 1"),
    J("put --prev-kv a 2"),
    J("put --prev-kv fresh 1"),  # no prev_kv in the response
    T("put --prev-kv a 3"),  # OK / key / previous value
    T("put --prev-kv other 1"),
    J("get --prefix " + ALL),
])

scenario("put-ignore-value", "put", "put --ignore-value (existing, missing, with value)", [
    J("put a 1"),
    J("put --ignore-value a"),  # new revision, same value, version 2
    J("get a"),
    FAIL("put --ignore-value missing", KEY_NOT_FOUND),
    FAIL("put --ignore-value a v", "put command needs only 1 argument when 'ignore-value' is set", rc=128),
    T("put --ignore-value a"),
    J("get --prefix " + ALL),
])

scenario("put-ignore-lease", "put", "put --ignore-lease (existing key; missing key -> key not found)", [
    J("put a 1"),
    J("put --ignore-lease a 2"),
    J("get a"),
    FAIL("put --ignore-lease missing v", KEY_NOT_FOUND),
    # without a value etcdctl reads stdin (empty here) and refuses client-side
    FAIL("put --ignore-lease missing", "put command needs 1 argument and input from stdin or 2 arguments", rc=128),
    J("put --ignore-lease --ignore-value a"),
    J("get --prefix " + ALL),
])

scenario("put-lease", "put", "put --lease (0 = none; unknown lease -> NotFound)", [
    J("put --lease=0 a 1"),
    FAIL("put --lease=1234 b 1", LEASE_NOT_FOUND),
    J("get --prefix " + ALL),
])

scenario("put-values", "put", "keys/values with spaces, tabs, newlines, unicode, '-', empty, 8 KiB", [
    J(["put", "sp", "hello world"]),
    J(["put", "tab", "a\tb"]),
    J(["put", "nl", "line1\nline2\n"]),
    J(["put", "uni", "ünïcødé ☃ 日本"]),
    J(["put", "quotes", "\"double\" and 'single' and \\backslash"]),
    J(["put", "ctl", "\x01\x02\x1b[0m\x7f"]),
    J(["put", "dash", "--", "-starts-with-dash"]),
    J(["put", "--", "-dashkey", "v"]),
    J(["put", "empty", ""]),
    J(["put", "key with spaces", "v"]),
    J(["put", "/a/b/c", "slashes"]),
    J(["put", "\x01ctl-key", "v"]),
    J(["put", "big", "x" * 8192]),
    J("get --prefix " + ALL),
    T("get --prefix " + ALL),
    T(["get", "empty"]),
    J(["get", "key with spaces"]),
])

scenario("put-stdin", "put", "put with the value read from stdin (text, newlines, binary bytes)", [
    J("put s1", stdin="from stdin"),
    J("put s2", stdin="line1\nline2\n"),  # trailing newline is kept
    J("put bin", stdin=b"a\x00b\xff\xfe\x80end"),  # NUL + invalid UTF-8
    T("put s3", stdin="text mode", out="OK"),
    FAIL("put s4", "put command needs 1 argument and input from stdin or 2 arguments", rc=128, stdin=""),
    J("get --prefix s"),
    J("get bin"),
    T("get bin"),
    T("get --hex bin"),
])

scenario("put-fields-output", "put", "put/get with -w fields (zero values printed explicitly)", [
    T("-w fields put a 1"),
    T("-w fields put --prev-kv a 2"),
    T("-w fields get a"),
    T("-w fields get missing"),
])

# ==========================================================================
# get
# ==========================================================================

scenario("get-single-missing", "get", "get one key, a missing key, --rev 0", [
    J("put a 1"),
    J("get a"),
    J("get missing"),
    T("get a"),
    T("get missing"),
    J("get a --rev 0"),
    J("get a --rev=-1"),  # negative: etcd serves the current revision
    J("get --prefix missing"),
])

_PREFIX_SETUP = [J(f"put {k} v-{k}") for k in ("a", "ab", "abc", "abd", "ac", "b", "ba", "c")]

scenario("get-prefix", "get", "get --prefix", _PREFIX_SETUP + [
    J("get --prefix ab"),
    J("get --prefix a"),
    J("get --prefix b"),
    J("get --prefix z"),
    J("get --prefix " + ALL),
    T("get --prefix ab"),
])

scenario("get-from-key", "get", "get --from-key", _PREFIX_SETUP + [
    J("get --from-key ab"),
    J("get --from-key b"),
    J("get --from-key zzz"),
    J("get --from-key " + ALL),
    T("get --from-key ba"),
])

scenario("get-range", "get", "get KEY RANGE_END (half-open, empty and inverted ranges)", _PREFIX_SETUP + [
    J("get a c"),
    J("get a b"),
    J("get ab abd"),
    J("get abc abc"),  # empty: end == key
    J("get b a"),  # inverted: empty
    J("get a ab"),
    J("get x z"),
    T("get a ac"),
])

scenario("get-limit", "get", "get --limit (more, count)", [J(f"put k{i} v{i}") for i in range(1, 6)] + [
    J("get --prefix k --limit 2"),
    J("get --prefix k --limit 4"),
    J("get --prefix k --limit 5"),
    J("get --prefix k --limit 6"),
    J("get --prefix k --limit 0"),
    J("get --prefix k --limit 1 --sort-by=KEY --order=DESCEND"),
    J("get k1 k4 --limit 2"),
    J("get --from-key k3 --limit 1"),
    T("get --prefix k --limit 2"),
])

# Four keys whose KEY / VERSION / CREATE / MODIFY / VALUE orders are five
# different permutations (no order is another one's reverse either) with no
# ties (tie order is unspecified, so it is not compared):
#   key  version create mod value   ascending by
#   s/a  2       5      9   k       KEY     a b c d
#   s/b  1       3      3   z       VERSION b a d c
#   s/c  4       4      8   e       CREATE  d b c a
#   s/d  3       2      11  p       MODIFY  b c a d
#                                   VALUE   c a d b
_SORT_SETUP = [
    J("put s/d d1"),  # r2
    J("put s/b z"),  # r3
    J("put s/c c1"),  # r4
    J("put s/a a1"),  # r5
    J("put s/c c2"),  # r6
    J("put s/c c3"),  # r7
    J("put s/c e"),  # r8
    J("put s/a k"),  # r9
    J("put s/d d2"),  # r10
    J("put s/d p"),  # r11
]
_SORT_STEPS = []
for _target in ("KEY", "VERSION", "CREATE", "MODIFY", "VALUE"):
    for _order in ("ASCEND", "DESCEND"):
        _SORT_STEPS.append(J(f"get --prefix s/ --keys-only --sort-by={_target} --order={_order}"))

scenario("get-sort", "get", "get --sort-by KEY|VERSION|CREATE|MODIFY|VALUE x --order ASCEND|DESCEND",
         _SORT_SETUP + _SORT_STEPS + [
             J("get --prefix s/ --sort-by=VALUE"),  # order defaults to ASCEND
             J("get --prefix s/ --order=DESCEND"),  # target defaults to KEY
             J("get --prefix s/ --sort-by=MODIFY --order=DESCEND --limit 2"),
             J("get --prefix s/ --sort-by=VERSION --order=ASCEND --limit 3"),
             J("get --prefix s/ --sort-by=KEY --order=DESCEND --limit 1"),
             T("get --prefix s/ --sort-by=VALUE --order=DESCEND"),
         ])

scenario("get-keys-only", "get", "get --keys-only (json + text, with --limit)", _PREFIX_SETUP + [
    J("get --keys-only a"),
    J("get --keys-only --prefix a"),
    J("get --keys-only --prefix a --limit 2"),
    J("get --keys-only missing"),
    T("get --keys-only --prefix a"),
])

# `-w fields`: etcdctl 3.5 refuses --count-only in any other output format (a client-side
# error that never reaches the server); 3.4 prints the same count in every format.
scenario("get-count-only", "get", "get --count-only", _PREFIX_SETUP + [
    T("-w fields get --count-only --prefix a"),
    T("-w fields get --count-only --prefix zz"),
    T("-w fields get --count-only --from-key b"),
], requires=(("get", "--count-only"),))

scenario("get-mod-create-revision-filters", "get",
         "get --min/max-mod-revision, --min/max-create-revision", _PREFIX_SETUP + [
             J("get --prefix a --min-mod-revision 3"),
             J("get --prefix a --max-mod-revision 3"),
             J("get --prefix a --min-create-revision 4"),
             J("get --prefix a --max-create-revision 4"),
         ], requires=(("get", "--min-mod-revision"), ("get", "--min-create-revision"),
                      ("get", "--max-mod-revision"), ("get", "--max-create-revision")))

scenario("get-print-value-only", "get", "get --print-value-only (text mode; ignored by json)", _PREFIX_SETUP + [
    T("get --print-value-only a"),
    T("get --print-value-only --prefix ab"),
    T("get --print-value-only missing"),
    T("get --print-value-only --keys-only --prefix ab"),
    FAIL("get --print-value-only a", "Error: print-value-only is only for `--write-out=simple`", rc=128),
])

scenario("get-rev", "get", "get --rev N: history across overwrites and deletes; future revision", [
    J("put a 1"),  # r2
    J("put b 1"),  # r3
    J("put a 2"),  # r4
    J("del a"),  # r5
    J("put a 3"),  # r6
    J("del b"),  # r7
    J("get a --rev 1"),
    J("get a --rev 2"),
    J("get a --rev 3"),
    J("get a --rev 4"),
    J("get a --rev 5"),
    J("get a --rev 6"),
    J("get a --rev 7"),
    J("get b --rev 6"),
    J("get b --rev 7"),
    J("get --prefix " + ALL + " --rev 3"),
    J("get --prefix " + ALL + " --rev 4 --limit 1"),
    J("get --from-key a --rev 6"),
    J("get a c --rev 4"),
    J("get --prefix " + ALL + " --rev 4 --sort-by=KEY --order=DESCEND"),
    T("get a --rev 2"),
    FAIL("get a --rev 8", FUTURE_REV),
    FAIL("get a --rev 1000", FUTURE_REV),
])

scenario("get-consistency", "get", "get --consistency=s|l (and an invalid value)", _PREFIX_SETUP + [
    J("get a --consistency=s"),
    J("get --prefix a --consistency=s"),
    J("get a --consistency=l"),
    J("get missing --consistency=s"),
    FAIL("get a --consistency=x", 'Error: unknown consistency flag "x"', rc=4),
])

scenario("get-hex", "get", "get --hex (text), json with --hex", [
    J("put a 1"),
    T("get --hex a"),
    J("--hex get a"),
])

scenario("get-client-side-errors", "get", "argument errors etcdctl rejects before talking to the server", [
    FAIL("get", "get command needs one argument as key and an optional argument as range_end", rc=128),
    FAIL("get --prefix --from-key a", "`--prefix` and `--from-key` cannot be set at the same time", rc=128),
    FAIL("get --sort-by=bogus a", "Error: bad sort target bogus", rc=4),
    FAIL("get --order=bogus a", "Error: bad sort order bogus", rc=4),
])

# ==========================================================================
# del
# ==========================================================================

scenario("del-single", "del", "del one key; again (deleted 0); text output", [
    J("put a 1"),
    J("put b 2"),
    J("del a"),
    J("get --prefix " + ALL),
    J("del a"),
    T("del b", out="1"),
    T("del b", out="0"),
    J("get --prefix " + ALL),
])

scenario("del-prefix", "del", "del --prefix", _PREFIX_SETUP + [
    J("del --prefix ab"),
    J("get --prefix " + ALL),
    J("del --prefix zz"),
    T("del --prefix a"),
    J("get --prefix " + ALL),
    J("del --prefix " + ALL),
    J("get --prefix " + ALL),
])

scenario("del-from-key", "del", "del --from-key", _PREFIX_SETUP + [
    J("del --from-key b"),
    J("get --prefix " + ALL),
    J("del --from-key zzz"),
    J("del --from-key " + ALL),
    J("get --prefix " + ALL),
])

scenario("del-range", "del", "del KEY RANGE_END (incl. empty and inverted ranges)", _PREFIX_SETUP + [
    J("del ab ac"),
    J("get --prefix " + ALL),
    J("del c a"),  # inverted: nothing
    J("del b b"),  # empty
    J("del a c"),
    J("get --prefix " + ALL),
])

scenario("del-prev-kv", "del", "del --prev-kv (single, prefix, missing; json + text)", _PREFIX_SETUP + [
    J("del --prev-kv a"),
    J("del --prev-kv --prefix ab"),
    J("del --prev-kv missing"),
    T("del --prev-kv b"),
    T("del --prev-kv --prefix ba"),
    J("get --prefix " + ALL),
])

scenario("del-missing", "del", "del of missing keys / empty ranges (deleted 0, no new revision)", [
    J("put a 1"),
    J("del missing"),
    J("del --prefix missing"),
    T("del missing", out="0"),
    J("get a"),
])

scenario("del-then-history", "del", "deleted keys stay readable at older revisions", [
    J("put a 1"),
    J("put a 2"),
    J("del --prev-kv a"),
    J("get a"),
    J("get a --rev 2"),
    J("get a --rev 3"),
    J("put a 3"),  # re-created: version restarts at 1
    J("get a"),
])

# ==========================================================================
# txn (interactive stdin)
# ==========================================================================

_TXN_SETUP = [J("put k v"), J("put k v"), J("put other o")]  # k: create 2, mod 3, version 2

scenario("txn-success-branch", "txn", "all four compare kinds true -> success ops (put/get/del)", _TXN_SETUP + [
    J("txn", txn_input(
        ['value("k") = "v"', 'version("k") > "0"', 'create("nokey") = "0"', 'mod("k") < "100"'],
        ["put k v2", "get k", "del other", "put new 1"],
        ["put k failed"],
    )),
    J("get --prefix " + ALL),
])

scenario("txn-failure-branch", "txn", "false compares -> failure ops", _TXN_SETUP + [
    J("txn", txn_input(['value("k") = "nope"'], ["put k s"], ["put k f", "get k", "del other"])),
    J("txn", txn_input(['version("k") > "5"'], ["put k s"], ["put f1 1"])),
    J("txn", txn_input(['create("k") = "0"'], ["put k s"], ["put f2 1"])),
    J("txn", txn_input(['mod("k") < "2"'], ["put k s"], ["put f3 1"])),
    J("txn", txn_input(['value("k") = "f"', 'version("k") = "1"'], ["put k s"], ["get k"])),  # AND
    J("get --prefix " + ALL),
])

# k = "v", version 2, create_revision 2, mod_revision 3; "nokey" does not exist
_COMPARES = [
    'value("k") = "v"', 'value("k") = "w"', 'value("k") != "w"', 'value("k") != "v"',
    'value("k") > "a"', 'value("k") < "a"',
    'version("k") = "2"', 'version("k") > "0"', 'version("k") < "2"', 'version("k") != "2"',
    'create("k") = "2"', 'create("k") = "0"', 'create("k") > "1"', 'create("k") < "2"',
    'mod("k") = "3"', 'mod("k") < "100"', 'mod("k") < "3"', 'mod("k") > "3"',
    'create("nokey") = "0"', 'version("nokey") = "0"', 'mod("nokey") = "0"',
    'value("nokey") = ""', 'value("nokey") != "x"',
]

scenario("txn-compare-matrix", "txn", "each compare target/operator, incl. on a missing key (read-only ops)",
         _TXN_SETUP + [J("txn", txn_input([c], ["get k"], ["get other"])) for c in _COMPARES])

scenario("txn-ops-with-flags", "txn", "ops with flags inside txn: get --prefix/--limit, put/del --prev-kv", _TXN_SETUP + [
    J("put k2 x"),
    J("txn", txn_input(
        ['value("k") = "v"'],
        ["put k v3 --prev-kv", "get --prefix k", "get --prefix k --limit 1 --sort-by=KEY --order=DESCEND",
         "del other --prev-kv", "get k2 --keys-only", "del --prefix k2 --prev-kv"],
        [],
    )),
    J("get --prefix " + ALL),
])

scenario("txn-same-revision", "txn", "all writes of one txn share one revision; reads see earlier ops", [
    J("txn", txn_input([], ["put a 1", "put b 2", "get a", "get --prefix " + ALL], [])),
    J("get --prefix " + ALL),
    J("txn", txn_input([], ["del a", "del a", "get a"], [])),  # second del: deleted 0
    J("txn", txn_input([], ["get b"], [])),  # read-only: no new revision
    J("get --prefix " + ALL),
])

scenario("txn-empty", "txn", "txn with no compares and no ops", [
    J("put a 1"),
    J("txn", txn_input()),
    T("txn", txn_input()),
    J("get a"),
])

scenario("txn-text-output", "txn", "txn in simple output (SUCCESS/FAILURE + op results)", _TXN_SETUP + [
    T("txn", txn_input(['value("k") = "v"'], ["put k v2", "get k", "del other"], ["put k x"]), out="SUCCESS"),
    T("txn", txn_input(['value("k") = "v"'], ["put k v3"], ["put k x", "get k"]), out="FAILURE"),
])

scenario("txn-interactive-flag", "txn", "txn -i (prompts on stdout) with piped stdin", _TXN_SETUP + [
    J("txn -i", txn_input(['value("k") = "v"'], ["put k i"], ["put k j"])),
    T("txn --interactive", txn_input(['value("k") = "v"'], ["put k i2"], ["put k j2", "get k"])),
    J("get k"),
])

scenario("txn-client-side-errors", "txn", "malformed txn input rejected by etcdctl (exit 3)", [
    FAIL("txn", "Error: malformed comparison: bogus", rc=3, stdin=txn_input(["bogus"])),
    FAIL("txn", "Error: invalid txn request: bogus a", rc=3, stdin=txn_input([], ["bogus a"])),
    # missing the final blank line after the failure ops
    FAIL("txn", "Error: EOF", rc=3, stdin='value("a") = "1"\n\nput a 1\n\nput a 2\n'),
])

# ==========================================================================
# compaction
# ==========================================================================

_COMPACT_SETUP = [
    J("put a 1"),  # r2
    J("put a 2"),  # r3
    J("put a 3"),  # r4
    J("put b 1"),  # r5
    J("del a"),  # r6
]

scenario("compaction", "compaction", "compaction N; reads below N fail; future rev; compacting again", _COMPACT_SETUP + [
    T("compaction 4", out="compacted revision 4"),
    FAIL("get a --rev 3", COMPACTED),
    FAIL("get a --rev 1", COMPACTED),
    J("get a --rev 4"),  # the compacted revision itself is still readable
    J("get --prefix " + ALL + " --rev 5"),
    J("get a"),
    FAIL("get a --rev 7", FUTURE_REV),
    FAIL("compaction 4", COMPACTED, json_out=False),
    FAIL("compaction 2", COMPACTED, json_out=False),
    FAIL("compaction 100", FUTURE_REV, json_out=False),
    J("compaction 5"),  # -w json: etcdctl still prints text
    FAIL("get a --rev 4", COMPACTED),
    T("compaction 6"),  # the current revision
    J("put c 1"),  # r7
    J("get --prefix " + ALL + " --rev 6"),
    J("get --prefix " + ALL),
])

scenario("compaction-physical", "compaction", "compaction --physical N", _COMPACT_SETUP + [
    T("compaction --physical 3", out="compacted revision 3"),
    FAIL("get a --rev 2", COMPACTED),
    J("get a --rev 3"),
    FAIL("compaction --physical 3", COMPACTED, json_out=False),
    T("compaction --physical 6"),
    J("get --prefix " + ALL + " --rev 6"),
    FAIL("get --prefix " + ALL + " --rev 5", COMPACTED),
])

scenario("compaction-txn-and-del-after", "compaction", "writes, txn and deletes keep working after compaction", _COMPACT_SETUP + [
    T("compaction 6"),
    J("put a 4"),
    J("txn", txn_input(['mod("a") = "7"'], ["put a 5"], ["put a x"])),
    J("del --prev-kv a"),
    J("get a --rev 8"),
    J("get --prefix " + ALL),
])

scenario("compaction-client-side-errors", "compaction", "compaction argument errors (etcdctl-side)", [
    FAIL("compaction", "Error: compaction command needs 1 argument", rc=128, json_out=False),
    FAIL("compaction abc", 'Error: strconv.ParseInt: parsing "abc": invalid syntax', rc=1, json_out=False),
])

# ==========================================================================
# endpoint status / member list / endpoint health
# ==========================================================================

scenario("endpoint-status", "endpoint status", "endpoint status -w json and simple (volatile fields normalised)", [
    J("put a 1"),
    J("endpoint status"),
    J("put a 2"),
    J("endpoint status"),
    T("endpoint status", normalize=endpoint_status_text),
])

scenario("member-list", "member list", "member list -w json and simple (ids normalised, peer URLs by shape)", [
    J("member list"),
    T("member list", normalize=member_list_text),
])

scenario("endpoint-health", "endpoint health", "endpoint health (used by readiness probes)", [
    J("endpoint health"),
    T("endpoint health"),
])

# ==========================================================================
# server-side error cases
# ==========================================================================

scenario("error-empty-key", "errors", "empty key: put/get/del '' -> key is not provided; in txn too", [
    FAIL(["put", "", "v"], KEY_NOT_PROVIDED),
    FAIL(["get", ""], KEY_NOT_PROVIDED),
    FAIL(["del", ""], KEY_NOT_PROVIDED),
    FAIL("txn", KEY_NOT_PROVIDED, stdin=txn_input([], ['put "" 1'], [])),
    T(["put", "", "v"], rc=1),
    J("get --prefix " + ALL),
])

scenario("error-txn-duplicate-key", "errors", "duplicate key in a txn branch (put/put, put/del, untaken branch)", [
    J("put k v"),
    FAIL("txn", DUP_KEY, stdin=txn_input([], ["put a 1", "put a 1"], [])),
    FAIL("txn", DUP_KEY, stdin=txn_input([], ["put a 1", "del a"], [])),
    FAIL("txn", DUP_KEY, stdin=txn_input([], ["put a 1", "del --prefix a"], [])),
    # the branch that would NOT run is still validated
    FAIL("txn", DUP_KEY, stdin=txn_input(['value("k") = "x"'], ["put a 1", "put a 2"], ["put b 1"])),
    # the same key once per branch is fine
    J("txn", txn_input(['value("k") = "v"'], ["put a 1"], ["put a 2"])),
    # two deletes of one key are fine; put then get is fine
    J("txn", txn_input([], ["del a", "del a"], [])),
    J("txn", txn_input([], ["put a 3", "get a"], [])),
    J("get --prefix " + ALL),
])

scenario("error-txn-too-many-ops", "errors", "txn with 129 ops (limit 128) -> too many operations; 128 ok", [
    FAIL("txn", TOO_MANY_OPS, stdin=txn_input([], [f"put k{i} v" for i in range(129)], [])),
    FAIL("txn", TOO_MANY_OPS, stdin=txn_input(['value("x") = "y"'], [], [f"put k{i} v" for i in range(129)])),
    T("txn", txn_input([], [f"put k{i} v" for i in range(128)], [])),
    J("get --prefix k --limit 3"),
])


# ==========================================================================

SIDES = ["etcd", "cairn"]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_etcdctl(scenario, side, differential):
    differential(scenario, side)


def test_scenario_ids_unique():
    ids = [s.id for s in SCENARIOS]
    assert len(ids) == len(set(ids))
