"""End-to-end recipes with real clients -- the Python `etcd3` client 0.12.0,
etcdctl 3.4, and etcd's v3lock / v3election gRPC services (stubs built in
recipes_support.py) -- each run on a fresh real etcd (test id ...-etcd: proves
the recipe and its checks are right) and on a fresh Cairn (...-cairn).

Unlike the etcdctl transcripts these are not compared with etcd output: each
recipe checks the properties the pattern relies on (nothing lost, nothing
duplicated, order, mutual exclusion, failover time). Every wait has a
deadline; every client and process is stopped in a finally/finalizer.

    recipe-service-discovery    leases + keep-alive + prefix watch
    recipe-config-watch         read, then watch from the read revision
    recipe-lock-etcd3           etcd3's Lock (txn + watch), 5 threads x 4 rounds
    recipe-lock-etcdctl         `etcdctl lock NAME -- CMD`, FIFO order + counter
    recipe-lock-v3lock          the v3lock Lock/Unlock gRPC, FIFO order + counter
    recipe-queue                create-revision-ordered queue, txn-guarded takes
    recipe-election-etcdctl     `etcdctl elect` x2 + `elect -l`, leader resigns
    recipe-election-kill9       v3election Campaign with a 3 s lease, leader
                                process kill -9'd, other leader within the TTL
    recipe-election-etcdctl-kill9  etcdctl's own 60 s session: opt-in,
                                COMPAT_SLOW=1 (about 70 s)
"""

from __future__ import annotations

import dataclasses
import os
import queue
import signal
import sys
import threading
import time
import uuid
from typing import Callable

import pytest


try:  # a missing client fails the recipe tests (it does not skip them, nor break collection)
    import recipes_support as rs
    from recipes_support import (
        Bg, ElectionStub, KeepAlive, LockStub, close_quietly, etcdctl_argv, make_client, protos,
    )
    from etcd3 import etcdrpc
    IMPORT_ERROR = None
except Exception as _e:  # pragma: no cover - depends on the machine
    IMPORT_ERROR = f"{type(_e).__name__}: {_e}"

HERE = os.path.dirname(os.path.abspath(__file__))
WORKER = os.path.join(HERE, "recipes_worker.py")
SUPPORT = os.path.join(HERE, "recipes_support.py")
PY = sys.executable

# etcd3 0.12's Lock hands tenacity 6.3 an old-style wait function
pytestmark = pytest.mark.filterwarnings('ignore:"wait" function must accept:DeprecationWarning')


@dataclasses.dataclass
class Recipe:
    id: str
    group: str
    title: str
    fn: Callable
    slow: bool = False


RECIPES: list = []


def recipe(rid: str, group: str, title: str, slow: bool = False):
    def deco(fn):
        RECIPES.append(Recipe(rid, group, title, fn, slow))
        return fn
    return deco


def prefix_end(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


def keys_under(client, prefix: str) -> list:
    return [m.key.decode() for _, m in client.get_prefix(prefix, sort_target="create", sort_order="ascend")]


def poll(cond, deadline: float, interval: float = 0.05):
    """cond() until truthy or deadline; -> last value."""
    end = time.monotonic() + deadline
    while True:
        v = cond()
        if v or time.monotonic() >= end:
            return v
        time.sleep(interval)


# ==========================================================================
# service discovery
# ==========================================================================


@recipe("recipe-service-discovery", "recipe: service discovery",
        "3 services register under a prefix with TTL-3 leases kept alive; one stops refreshing -> "
        "the consumer's prefix watch sees its DELETE within TTL+3 s; the other two stay")
def service_discovery(srv, tmp_path):
    ep, TTL, N = srv.endpoint, 3, 3
    clients, kas, leases = [], [], []
    try:
        for i in range(N):
            c = make_client(ep)
            clients.append(c)
            lease = c.lease(TTL)
            assert lease.ttl == TTL, f"LeaseGrant(TTL={TTL}) answered TTL={lease.ttl}"
            leases.append(lease)
            c.put(f"services/svc-{i}", f"127.0.0.1:{9000 + i}", lease=lease)
            kas.append(KeepAlive(lease, interval=1.0))
        consumer = make_client(ep)
        clients.append(consumer)
        resp = consumer.get_prefix_response("services/")
        listed = {kv.key.decode(): (kv.value.decode(), kv.lease) for kv in resp.kvs}
        assert listed == {f"services/svc-{i}": (f"127.0.0.1:{9000 + i}", leases[i].id) for i in range(N)}, listed
        events: queue.Queue = queue.Queue()
        consumer.add_watch_prefix_callback("services/", events.put, start_revision=resp.header.revision + 1)

        def drain() -> list:
            out = []
            while True:
                try:
                    item = events.get_nowait()
                except queue.Empty:
                    return out
                assert not isinstance(item, Exception), f"watch failed: {item!r}"
                out += [(type(e).__name__, e.key.decode(), time.monotonic()) for e in item.events]

        # keep-alive works: everything is still there well past the TTL
        time.sleep(TTL + 1.5)
        assert drain() == [], "events on services/ while every lease was kept alive"
        assert sorted(keys_under(consumer, "services/")) == [f"services/svc-{i}" for i in range(N)]
        for i, ka in enumerate(kas):
            assert not ka.errors, f"keep-alive of svc-{i} failed: {ka.errors[:3]}"
            assert ka.ttls and set(ka.ttls) == {TTL}, f"LeaseKeepAlive TTLs for svc-{i}: {ka.ttls}"

        # svc-1 dies: stop refreshing its lease
        kas[1].stop()
        stopped = time.monotonic()
        last_refresh = kas[1].last_refresh
        deadline = stopped + TTL + 3
        seen, deleted_at = [], None
        while deleted_at is None and time.monotonic() < deadline:
            try:
                item = events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            assert not isinstance(item, Exception), f"watch failed: {item!r}"
            for e in item.events:
                seen.append((type(e).__name__, e.key.decode()))
                if isinstance(e, rs.etcd3.events.DeleteEvent) and e.key == b"services/svc-1":
                    deleted_at = time.monotonic()
        assert deleted_at is not None, (
            f"no DELETE of services/svc-1 within TTL+3 = {TTL + 3} s after its keep-alive stopped; events: {seen}; "
            f"keys now: {keys_under(consumer, 'services/')}")
        assert seen == [("DeleteEvent", "services/svc-1")], f"unexpected events: {seen}"
        # not before the TTL ran out: the lease was last refreshed at last_refresh (0.5 s slack for
        # the keep-alive response's way back)
        assert deleted_at - last_refresh >= TTL - 0.5, (
            f"svc-1 deleted {deleted_at - last_refresh:.2f} s after its last keep-alive response: "
            f"earlier than its TTL ({TTL} s)")
        ttl_info = consumer.get_lease_info(leases[1].id)
        assert ttl_info.TTL == -1, f"expired lease still has TTL {ttl_info.TTL}"

        # the other two stay
        time.sleep(2.0)
        assert drain() == [], "more events after svc-1's DELETE"
        assert sorted(keys_under(consumer, "services/")) == ["services/svc-0", "services/svc-2"]
        for i in (0, 2):
            assert not kas[i].errors, f"keep-alive of svc-{i} failed: {kas[i].errors[:3]}"
        return (f"svc-1 deleted {deleted_at - last_refresh:.2f} s after its last keep-alive "
                f"({deleted_at - stopped:.2f} s after the keep-alive stopped; TTL {TTL})")
    finally:
        for ka in kas:
            ka.stop()
        close_quietly(*clients)


# ==========================================================================
# configuration
# ==========================================================================


@recipe("recipe-config-watch", "recipe: configuration",
        "read config/app, watch from the read revision while 10 updates race with the watch creation: "
        "every update seen once, in order, no gaps")
def config_watch(srv, tmp_path):
    ep, N = srv.endpoint, 10
    writer, reader = make_client(ep), make_client(ep)
    try:
        writer.put("config/app", "v0")
        writer.put("config/app-other", "x")  # shares the prefix, not the key
        value, meta = reader.get("config/app")
        assert value == b"v0"
        read_rev = meta.response_header.revision
        events: queue.Queue = queue.Queue()
        write_revs: list = []
        errors: list = []

        def write():
            try:
                for i in range(1, N + 1):
                    write_revs.append(writer.put("config/app", f"v{i}").header.revision)
                    writer.put("config/app-other", f"x{i}")
                    time.sleep(0.03)
            except Exception as e:
                errors.append(repr(e))

        t = threading.Thread(target=write, daemon=True)
        t.start()  # the first updates land before the watch exists: start_revision must cover them
        reader.add_watch_callback("config/app", events.put, start_revision=read_rev + 1)
        got = []
        deadline = time.monotonic() + 15
        while len(got) < N and time.monotonic() < deadline:
            try:
                item = events.get(timeout=0.2)
            except queue.Empty:
                continue
            assert not isinstance(item, Exception), f"watch failed: {item!r}"
            got += [(type(e).__name__, e.value.decode(), e.mod_revision, e.version) for e in item.events]
        t.join(timeout=15)
        assert not errors, errors
        time.sleep(0.5)  # anything extra (duplicates) would arrive now
        while True:
            try:
                item = events.get_nowait()
            except queue.Empty:
                break
            got += [(type(e).__name__, e.value.decode(), e.mod_revision, e.version) for e in item.events]
        want = [("PutEvent", f"v{i}", write_revs[i - 1], 1 + i) for i in range(1, N + 1)]
        assert got == want, f"config/app events (type, value, mod_revision, version):\n got  {got}\n want {want}"
        revs = [g[2] for g in got]
        assert all(a < b for a, b in zip(revs, revs[1:])) and revs[0] > read_rev
        value, meta = reader.get("config/app")
        assert (value, meta.mod_revision) == (f"v{N}".encode(), revs[-1])
    finally:
        close_quietly(writer, reader)


# ==========================================================================
# locks
# ==========================================================================


def check_no_overlap(intervals: list) -> None:
    """intervals: (enter, exit, who) -> no two critical sections overlap."""
    iv = sorted(intervals)
    for (a0, a1, wa), (b0, b1, wb) in zip(iv, iv[1:]):
        assert a1 <= b0, f"critical sections overlap: {wa} held [{a0:.4f}, {a1:.4f}], {wb} entered at {b0:.4f}"


@recipe("recipe-lock-etcd3", "recipe: lock",
        "etcd3 client Lock (create==0 txn + watch): 5 threads x 4 rounds increment a counter; "
        "counter == 20, critical sections never overlap")
def lock_etcd3(srv, tmp_path):
    ep, N, ROUNDS = srv.endpoint, 5, 4
    intervals, errors = [], []
    clients = [make_client(ep) for _ in range(N)]

    # etcd3 0.12's Lock.acquire, after its txn finds the lock held, watches the key from the
    # current revision (`watch_once`), not from the revision its txn saw. A release that lands
    # between the two is never seen: the waiter sleeps until the key changes again or its
    # timeout ends (seen once here: the last waiter stalled 60 s, though the store's history
    # showed every release). So acquire is called with a short timeout, again until an overall
    # deadline; what the recipe relies on (exclusion, every increment, no key left) is checked
    # as before.
    ACQUIRE_TRY, ACQUIRE_DEADLINE = 3, 60

    def acquire(lock) -> bool:
        deadline = time.monotonic() + ACQUIRE_DEADLINE
        while time.monotonic() < deadline:
            if lock.acquire(timeout=ACQUIRE_TRY):
                return True
        return False

    def contender(i):
        c = clients[i]
        try:
            for r in range(ROUNDS):
                lock = c.lock("counter", ttl=20)
                if not acquire(lock):
                    errors.append(f"thread {i} round {r}: acquire timed out")
                    return
                t_in = time.monotonic()
                v, _ = c.get("counter")
                n = int(v) if v else 0
                time.sleep(0.02)
                c.put("counter", str(n + 1))
                t_out = time.monotonic()
                intervals.append((t_in, t_out, f"thread {i} round {r}"))
                if not lock.release():
                    errors.append(f"thread {i} round {r}: release found the lock not held")
        except Exception as e:
            errors.append(f"thread {i}: {e!r}")

    try:
        threads = [threading.Thread(target=contender, args=(i,), daemon=True) for i in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "contenders still running after 120 s"
        assert not errors, errors
        v, _ = clients[0].get("counter")
        assert v == str(N * ROUNDS).encode(), f"counter is {v!r}, expected {N * ROUNDS}"
        assert len(intervals) == N * ROUNDS
        check_no_overlap(intervals)
        assert clients[0].get("/locks/counter") == (None, None), "lock key left behind"
    finally:
        close_quietly(*clients)


@recipe("recipe-lock-etcdctl", "recipe: lock",
        "`etcdctl lock fifo -- worker`: 5 contenders queue up behind a holder in a known order and get the lock "
        "in that order; then 5x2 more at once; counter == 15, no overlap, ETCD_LOCK_REV increasing")
def lock_etcdctl(srv, tmp_path, procs):
    ep, N = srv.endpoint, 5
    log = str(tmp_path / "lock.log")
    c = make_client(ep)
    try:
        def worker(i):
            return procs(etcdctl_argv(ep, "lock", "--ttl=10", "fifo", "--", PY, WORKER, ep, "counter", log, str(i), "0.05"))

        holder = procs(etcdctl_argv(ep, "lock", "--ttl=10", "fifo"))
        assert holder.wait_for(lambda o: o.startswith("fifo/"), 15), f"holder never got the lock:\n{holder.describe()}"
        contenders = []
        for i in range(1, N + 1):
            contenders.append(worker(i))
            n = poll(lambda: len(keys_under(c, "fifo/")) == i + 1, 15)
            assert n, f"contender {i}'s waiter key never appeared: {keys_under(c, 'fifo/')}\n{contenders[-1].describe()}"
        time.sleep(0.3)
        assert not os.path.exists(log), "a contender ran while the holder held the lock"
        released = time.monotonic()
        holder.signal(signal.SIGTERM)  # etcdctl unlocks and exits 0
        assert holder.wait(10) == 0, holder.describe()
        for p in contenders:
            assert p.wait(30) == 0, p.describe()
        first = [line.split() for line in open(log).read().splitlines()]
        enters = [x for x in first if x[0] == "enter"]
        assert [int(x[1]) for x in enters] == list(range(1, N + 1)), f"acquisition order: {[x[1] for x in enters]}"
        assert float(enters[0][2]) > released
        revs = [int(x[4]) for x in enters]
        assert revs == sorted(revs) and len(set(revs)) == N, f"ETCD_LOCK_REV in acquisition order: {revs}"

        for rnd in range(2):  # everybody at once, no order expected
            batch = [worker(10 * (rnd + 1) + i) for i in range(N)]
            for p in batch:
                assert p.wait(60) == 0, p.describe()
        lines = [line.split() for line in open(log).read().splitlines()]
        by_id: dict = {}
        for kind, ident, t, key, rev in lines:
            by_id.setdefault(ident, {})[kind] = float(t)
        assert len(by_id) == 3 * N and all(len(v) == 2 for v in by_id.values()), lines
        check_no_overlap([(v["enter"], v["exit"], f"worker {k}") for k, v in by_id.items()])
        v, _ = c.get("counter")
        assert v == str(3 * N).encode(), f"counter is {v!r}, expected {3 * N}"
        assert keys_under(c, "fifo/") == [], "lock keys left behind"
    finally:
        close_quietly(c)


@recipe("recipe-lock-v3lock", "recipe: lock",
        "v3lock gRPC Lock/Unlock: 5 contenders queue behind a holder in a known order and are served in that "
        "order; then 3 rounds each; counter == 5+10, no overlap")
def lock_v3lock(srv, tmp_path):
    ep, N, LATER_ROUNDS = srv.endpoint, 5, 2
    p = protos()
    clients = [make_client(ep) for _ in range(N + 1)]
    leases = [c.lease(30) for c in clients]
    stubs = [LockStub(c.channel) for c in clients]
    intervals, order, errors = [], [], []
    try:
        held = stubs[0].Lock(p.LockRequest(name=b"vlock", lease=leases[0].id), timeout=10)
        assert held.key.startswith(b"vlock/"), held.key
        assert held.header.revision > 0

        def contender(i, first_round: threading.Event):
            c, stub = clients[i], stubs[i]
            try:
                for r in range(1 + LATER_ROUNDS):
                    if r == 1:
                        first_round.wait(60)
                    got = stub.Lock(p.LockRequest(name=b"vlock", lease=leases[i].id), timeout=60)
                    t_in = time.monotonic()
                    if r == 0:
                        order.append(i)
                    v, _ = c.get("vcounter")
                    n = int(v) if v else 0
                    time.sleep(0.03)
                    c.put("vcounter", str(n + 1))
                    t_out = time.monotonic()
                    intervals.append((t_in, t_out, f"contender {i} round {r}"))
                    stub.Unlock(p.UnlockRequest(key=got.key), timeout=10)
            except Exception as e:
                errors.append(f"contender {i}: {e!r}")

        all_first = threading.Event()
        threads = []
        for i in range(1, N + 1):
            t = threading.Thread(target=contender, args=(i, all_first), daemon=True)
            t.start()
            threads.append(t)
            ok = poll(lambda: len(keys_under(clients[0], "vlock/")) == i + 1, 15)
            assert ok, f"contender {i}'s waiter key never appeared: {keys_under(clients[0], 'vlock/')}; {errors}"
        time.sleep(0.3)
        assert order == [], "a contender got the lock while the holder held it"
        stubs[0].Unlock(p.UnlockRequest(key=held.key), timeout=10)
        assert poll(lambda: len(order) == N, 30), f"served so far: {order}; {errors}"
        all_first.set()
        for t in threads:
            t.join(timeout=60)
        assert not errors, errors
        assert order == list(range(1, N + 1)), f"served in order {order}, arrival order was 1..{N}"
        v, _ = clients[0].get("vcounter")
        assert v == str(N * (1 + LATER_ROUNDS)).encode(), f"counter is {v!r}"
        check_no_overlap(intervals)
        assert keys_under(clients[0], "vlock/") == [], "lock keys left behind"
    finally:
        for c, lease in zip(clients, leases):
            try:
                c.revoke_lease(lease.id)
            except Exception:
                pass
        close_quietly(*clients)


# ==========================================================================
# queue
# ==========================================================================


@recipe("recipe-queue", "recipe: queue",
        "2 producers put unique keys under queue/; 3 consumers take the oldest (by create revision) with a "
        "mod_revision-guarded txn delete: every item consumed exactly once, in FIFO order")
def queue_recipe(srv, tmp_path):
    ep, PRODUCERS, ITEMS, CONSUMERS = srv.endpoint, 2, 25, 3
    produced, consumed, errors = {}, [], []
    conflicts = [0] * CONSUMERS
    producers_done = threading.Event()
    prefix = b"queue/"
    clients = [make_client(ep) for _ in range(PRODUCERS + CONSUMERS)]

    def producer(j):
        c = clients[j]
        try:
            for k in range(ITEMS):
                key, value = f"queue/{uuid.uuid4().hex}", f"p{j}-{k}"
                produced[value] = c.put(key, value).header.revision
                time.sleep(0.005)
        except Exception as e:
            errors.append(f"producer {j}: {e!r}")

    def consumer(n):
        c = clients[PRODUCERS + n]
        deadline = time.monotonic() + 60
        try:
            while time.monotonic() < deadline:
                done = producers_done.is_set()
                resp = c.kvstub.Range(etcdrpc.RangeRequest(
                    key=prefix, range_end=prefix_end(prefix), limit=1,
                    sort_order=etcdrpc.RangeRequest.ASCEND, sort_target=etcdrpc.RangeRequest.CREATE), 10)
                if not resp.kvs:
                    if done:
                        return
                    time.sleep(0.005)
                    continue
                kv = resp.kvs[0]
                ok, responses = c.transaction(
                    compare=[c.transactions.mod(kv.key) == kv.mod_revision],
                    success=[c.transactions.delete(kv.key, prev_kv=True)],
                    failure=[])
                if not ok:
                    conflicts[n] += 1
                    continue
                d = responses[0].response_delete_range
                if d.deleted != 1 or len(d.prev_kvs) != 1 or d.prev_kvs[0].value != kv.value:
                    errors.append(f"consumer {n}: take of {kv.key!r} deleted {d.deleted}, prev_kvs {list(d.prev_kvs)}")
                consumed.append((kv.value.decode(), kv.create_revision, d.header.revision, n))
            errors.append(f"consumer {n}: still running after 60 s")
        except Exception as e:
            errors.append(f"consumer {n}: {e!r}")

    try:
        cons = [threading.Thread(target=consumer, args=(n,), daemon=True) for n in range(CONSUMERS)]
        prods = [threading.Thread(target=producer, args=(j,), daemon=True) for j in range(PRODUCERS)]
        for t in prods + cons:
            t.start()
        for t in prods:
            t.join(timeout=60)
        producers_done.set()
        for t in cons:
            t.join(timeout=70)
        assert not errors, errors
        total = PRODUCERS * ITEMS
        values = [x[0] for x in consumed]
        dups = sorted({v for v in values if values.count(v) > 1})
        assert not dups, f"consumed more than once: {dups}"
        assert sorted(values) == sorted(produced), (
            f"lost: {sorted(set(produced) - set(values))}, unknown: {sorted(set(values) - set(produced))}")
        assert len(values) == total
        for value, create_rev, _, _ in consumed:
            assert create_rev == produced[value], f"{value}: create_revision {create_rev}, put at {produced[value]}"
        for n in range(CONSUMERS):
            mine = [x[1] for x in consumed if x[3] == n]
            assert mine == sorted(mine), f"consumer {n} took items out of order: {mine}"
        by_take = [x[1] for x in sorted(consumed, key=lambda x: x[2])]
        assert by_take == sorted(by_take), "items were not taken oldest-first (create revisions in take order)"
        assert keys_under(clients[0], "queue/") == []
        per = [sum(1 for x in consumed if x[3] == n) for n in range(CONSUMERS)]
        return f"{total} items; taken per consumer {per}; lost races (failed txns) {conflicts}"
    finally:
        close_quietly(*clients)


# ==========================================================================
# leader election
# ==========================================================================


def elect_lines(out: str) -> list:
    """`etcdctl elect` / `elect -l` stdout: pairs of (leader key, proposal)."""
    ls = [x for x in out.splitlines() if x.strip()]
    return [(ls[i], ls[i + 1]) for i in range(0, len(ls) - 1, 2)]


@recipe("recipe-election-etcdctl", "recipe: election",
        "`etcdctl elect e1 pa` leads, `elect e1 pb` waits, `elect -l e1` observes; the leader is "
        "interrupted (resigns) -> pb leads, the observer sees pa then pb")
def election_etcdctl(srv, tmp_path, procs):
    ep = srv.endpoint
    c = make_client(ep)
    try:
        a = procs(etcdctl_argv(ep, "elect", "e1", "pa"))
        assert a.wait_for(lambda o: "\npa\n" in o, 15), f"pa never became leader:\n{a.describe()}"
        b = procs(etcdctl_argv(ep, "elect", "e1", "pb"))
        assert poll(lambda: len(keys_under(c, "e1/")) == 2, 15), f"pb never campaigned:\n{b.describe()}"
        obs = procs(etcdctl_argv(ep, "elect", "-l", "e1"))
        assert obs.wait_for(lambda o: "\npa\n" in o, 15), f"observer did not see pa:\n{obs.describe()}"
        time.sleep(0.5)
        assert b.out == "", f"pb claims leadership while pa leads:\n{b.describe()}"
        key_a, key_b = keys_under(c, "e1/")
        t0 = time.monotonic()
        a.signal(signal.SIGINT)
        assert a.wait(10) == 0, a.describe()
        assert b.wait_for(lambda o: "\npb\n" in o, 10), f"pb not leader 10 s after pa resigned:\n{b.describe()}"
        took = time.monotonic() - t0
        assert obs.wait_for(lambda o: "\npb\n" in o, 10), f"observer did not see pb:\n{obs.describe()}"
        assert elect_lines(b.out) == [(key_b, "pb")], b.out
        assert elect_lines(obs.out) == [(key_a, "pa"), (key_b, "pb")], obs.out
        assert keys_under(c, "e1/") == [key_b]
        b.signal(signal.SIGINT)
        assert b.wait(10) == 0, b.describe()
        assert poll(lambda: keys_under(c, "e1/") == [], 10), "pb's key left after it resigned"
        return f"pb leader {took:.2f} s after pa was interrupted"
    finally:
        close_quietly(c)


def _leader_value(stub, name: bytes):
    r = stub.Leader(protos().LeaderRequest(name=name), timeout=10)
    return r.kv.value.decode()


@recipe("recipe-election-kill9", "recipe: election",
        "two processes Campaign (v3election gRPC) with TTL-3 leases they keep alive; the leader is kill -9'd "
        "-> the other is elected within TTL+3 s; `etcdctl elect -l` and a gRPC Observe stream see both")
def election_kill9(srv, tmp_path, procs):
    ep, TTL = srv.endpoint, 3
    c = make_client(ep)
    stub = ElectionStub(c.channel)
    seen, errors = [], []
    call = None
    try:
        a = procs([PY, SUPPORT, "campaign", ep, "e2", "pa", str(TTL), "90"], env=None)
        assert a.wait_for(lambda o: "LEADER pa" in o, 20), f"pa never became leader:\n{a.describe()}"
        b = procs([PY, SUPPORT, "campaign", ep, "e2", "pb", str(TTL), "90"], env=None)
        assert b.wait_for(lambda o: "CAMPAIGNING pb" in o, 20), b.describe()
        assert poll(lambda: len(keys_under(c, "e2/")) == 2, 15), f"pb never campaigned:\n{b.describe()}"
        obs = procs(etcdctl_argv(ep, "elect", "-l", "e2"))
        assert obs.wait_for(lambda o: "\npa\n" in o, 15), f"etcdctl observer did not see pa:\n{obs.describe()}"
        assert _leader_value(stub, b"e2") == "pa"

        call = stub.Observe(protos().LeaderRequest(name=b"e2"), timeout=60)

        def observe():
            try:
                for r in call:
                    seen.append((r.kv.value.decode(), r.kv.key.decode()))
            except Exception as e:
                if "CANCELLED" not in repr(e) and "Cancelled" not in repr(e):
                    errors.append(repr(e))

        threading.Thread(target=observe, daemon=True).start()
        assert poll(lambda: seen, 10), f"gRPC Observe sent nothing; {errors}"
        time.sleep(1.0)
        assert "LEADER pb" not in b.out, f"pb claims leadership while pa leads:\n{b.describe()}"

        t0 = time.monotonic()
        a.kill()  # kill -9: no resign, no revoke; pa's lease must expire
        assert b.wait_for(lambda o: "LEADER pb" in o, TTL + 3), (
            f"pb not leader {TTL + 3} s after the leader was killed (lease TTL {TTL}):\n{b.describe()}\n"
            f"keys: {keys_under(c, 'e2/')}")
        took = time.monotonic() - t0
        assert took >= TTL - 1.0 - 0.5, f"pb elected {took:.2f} s after the kill: before pa's lease could expire"
        assert obs.wait_for(lambda o: "\npb\n" in o, 5), f"etcdctl observer did not see pb:\n{obs.describe()}"
        assert poll(lambda: [v for v, _ in seen][-1:] == ["pb"], 5), f"gRPC Observe saw {seen}; {errors}"
        assert [v for v, _ in seen] == ["pa", "pb"], f"gRPC Observe saw {seen}"
        assert [p for _, p in elect_lines(obs.out)] == ["pa", "pb"], obs.out
        assert _leader_value(stub, b"e2") == "pb"
        assert not errors, errors
        return f"pb elected {took:.2f} s after pa was killed (TTL {TTL})"
    finally:
        if call is not None:
            call.cancel()
        close_quietly(c)


@recipe("recipe-election-etcdctl-kill9", "recipe: election",
        "`etcdctl elect` leader kill -9'd: the other etcdctl is elected when the leader's 60 s session lease "
        "expires (COMPAT_SLOW=1 only)", slow=True)
def election_etcdctl_kill9(srv, tmp_path, procs):
    ep, SESSION_TTL = srv.endpoint, 60  # etcdctl 3.4 elect: concurrency.NewSession default TTL, no flag
    c = make_client(ep)
    try:
        a = procs(etcdctl_argv(ep, "elect", "e3", "pa"))
        assert a.wait_for(lambda o: "\npa\n" in o, 15), a.describe()
        b = procs(etcdctl_argv(ep, "elect", "e3", "pb"))
        assert poll(lambda: len(keys_under(c, "e3/")) == 2, 15), b.describe()
        obs = procs(etcdctl_argv(ep, "elect", "-l", "e3"))
        assert obs.wait_for(lambda o: "\npa\n" in o, 15), obs.describe()
        t0 = time.monotonic()
        a.kill()
        assert b.wait_for(lambda o: "\npb\n" in o, SESSION_TTL + 5), b.describe()
        took = time.monotonic() - t0
        assert took >= SESSION_TTL - 10, f"pb elected {took:.1f} s after the kill, the session TTL is {SESSION_TTL} s"
        assert obs.wait_for(lambda o: "\npb\n" in o, 5), obs.describe()
        return f"pb elected {took:.1f} s after pa was killed"
    finally:
        close_quietly(c)


# ==========================================================================

SIDES = ["etcd", "cairn"]


@pytest.fixture
def procs(request):
    """procs(argv, env=None) -> recipes_support.Bg, killed (process group) at teardown."""
    started = []

    def _start(argv, env=None):
        p = Bg(argv, env)
        started.append(p)
        return p

    yield _start
    for p in started:
        p.kill()


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("scenario", RECIPES, ids=[r.id for r in RECIPES])
def test_recipe(scenario, side, start_server, tmp_path, request):
    if scenario.slow and os.environ.get("COMPAT_SLOW", "") in ("", "0", "no", "false"):
        pytest.skip("slow (about 70 s): set COMPAT_SLOW=1")
    if IMPORT_ERROR:
        pytest.fail(f"the recipes need the Python etcd3 client and its deps "
                    f"(pip install -r compat-tests/requirements.txt): {IMPORT_ERROR}", pytrace=False)
    srv = start_server(side)
    kwargs = {"procs": request.getfixturevalue("procs")} if "procs" in scenario.fn.__code__.co_varnames else {}
    try:
        note = scenario.fn(srv, tmp_path, **kwargs)
    except AssertionError as e:
        msg = f"[{srv.label}] {scenario.id}: {e}"
        if not srv.alive():
            msg += f"\n\n!! {srv.label} is no longer running. Last log lines:\n{srv.log_tail()}"
        else:
            msg += f"\n\nserver log: {srv.log_path}"
        pytest.fail(msg, pytrace=False)
    if note:
        print(f"[{srv.label}] {scenario.id}: {note}")


def test_recipe_ids_unique():
    ids = [r.id for r in RECIPES]
    assert len(ids) == len(set(ids))
