"""Differential `etcdctl watch` scenarios (etcd 3.4 is the reference, Cairn
must produce the same normalised transcript).

A watch scenario is a list of actions run in order against one fresh server:

  J(...) / T(...) / FAIL(...)   an ordinary etcdctl step (see harness.py;
                                {lease} is the last granted lease, as there)
  Write(step, seen=TEXT)        an etcdctl step whose effect a running watcher
                                must print: after the step, wait (max 10 s)
                                until TEXT occurs once more in the watcher's
                                stdout. "seen"/"NOT seen" is recorded.
  Start(args, interactive=False) start `etcdctl [args]` in the background
                                (its own process group); `-i` mode gets a stdin
  Send(line, seen=TEXT)         write a line to an interactive watcher's stdin
  Await(text, count=1)          wait until the watcher's stdout holds `text`
                                `count` times (e.g. the last replayed event)
  Sync(key)                     make sure a watch started *without* --rev is
                                established: put key=sync-1, sync-2, ... until
                                the watcher prints the last one. The probe
                                events are cut out of the recorded output
                                (their number depends on timing), so after a
                                Sync no -w json output may be compared (the
                                probes shift every later revision);
                                test_watch_scenarios_deterministic checks that.
  Stop(self_exit=False)         end the watcher and record its exit code,
                                stdout and stderr: interactive -> close stdin
                                (etcdctl exits 3 on EOF); self_exit -> wait for
                                it to exit by itself (compacted revision); else
                                SIGTERM (recorded as "SIGTERM").

Every wait has a deadline; a watcher that is still running at the end of the
test is killed (process group SIGKILL). Determinism: watches either start with
--rev so that replay covers the writes (Await the last replayed event before
writing more), or Sync first; and every write a watcher must see is a Write
with `seen`, so the next write happens only after the previous event printed
(interactive mode prints each watch from its own goroutine).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from typing import Optional

import pytest

import harness
from harness import J, Result, Step, StepRecord, T, txn_input

COMPACTED_CANCEL = "watch was canceled (etcdserver: mvcc: required revision has been compacted)"
CANCELED_BY_SERVER = "Error: watch is canceled by the server"
EXIT_WATCH_CANCELED = 5  # etcdctl's ExitInterrupted
EXIT_EOF = 3  # interactive mode: "Error reading watch request line: EOF"
WAIT = 10.0  # max seconds to wait for a watcher to print something
SYNC_DEADLINE = 15.0
SYNC_INTERVAL = 0.3

# --------------------------------------------------------------------------
# actions
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Write:
    step: Step
    seen: Optional[str] = None  # text the watcher must print (once more) after this step


@dataclasses.dataclass
class Start:
    args: list
    interactive: bool = False


@dataclasses.dataclass
class Send:
    line: str
    seen: Optional[str] = None


@dataclasses.dataclass
class Await:
    text: str
    count: int = 1


@dataclasses.dataclass
class Sync:
    key: str


@dataclasses.dataclass
class Stop:
    self_exit: bool = False
    expect_rc: object = None  # checked on etcd; None: "SIGTERM" (self_exit: any)
    expect_stderr: Optional[str] = None  # checked on etcd: substring of the watcher's stderr


@dataclasses.dataclass
class WatchScenario:
    id: str
    group: str
    title: str
    actions: list


def W(cmd, stdin=None, *, seen: Optional[str] = None) -> Write:
    """A text-mode etcdctl write the watcher must print `seen` for."""
    return Write(T(cmd, stdin), seen)


def WJ(cmd, stdin=None, *, seen: Optional[str] = None) -> Write:
    return Write(J(cmd, stdin), seen)


def start(cmd, interactive: bool = False) -> Start:
    return Start(shlex.split(cmd) if isinstance(cmd, str) else list(cmd), interactive)


def MODREV(n: int) -> str:
    """-w json: text that appears once the event with mod_revision n is printed."""
    return f'"mod_revision":{n},'


def event(kind: str, key: str, value: str = "") -> str:
    """Text-mode output of one event without prev_kv: type, key, value lines."""
    return f"{kind}\n{key}\n{value}\n"


# --------------------------------------------------------------------------
# the watcher process
# --------------------------------------------------------------------------


class Watcher:
    def __init__(self, endpoint: str, args: list, interactive: bool):
        self.argv = [harness.etcdctl_bin(), "--endpoints", endpoint, *args]
        self.interactive = interactive
        self.stdin_log: list = []
        self._out = bytearray()
        self._err = bytearray()
        self._lock = threading.Lock()
        self.cuts: list = []  # (start, end) byte ranges of stdout to drop (Sync probes)
        self.proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=harness.clean_env(),
            start_new_session=True,  # exec'd commands die with it
        )
        self._threads = [
            threading.Thread(target=self._pump, args=(self.proc.stdout, self._out), daemon=True),
            threading.Thread(target=self._pump, args=(self.proc.stderr, self._err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, f, buf: bytearray) -> None:
        fd = f.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                buf.extend(chunk)

    def out(self) -> bytes:
        with self._lock:
            return bytes(self._out)

    def err(self) -> bytes:
        with self._lock:
            return bytes(self._err)

    def wait_for(self, pred, deadline: float = WAIT) -> bool:
        end = time.monotonic() + deadline
        while True:
            if pred(self.out()):
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.02)

    def send(self, line: str) -> None:
        self.stdin_log.append(line)
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def stop(self, self_exit: bool) -> object:
        p = self.proc
        rc: object
        if self_exit:
            try:
                rc = p.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                rc = f"still running after {WAIT:g}s"
        elif self.interactive:
            try:
                p.stdin.close()
            except OSError:
                pass
            try:
                rc = p.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                rc = f"still running {WAIT:g}s after stdin was closed"
        else:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
            try:
                rc = p.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                rc = "ignored SIGTERM"
            if rc == -signal.SIGTERM:
                rc = "SIGTERM"
            elif isinstance(rc, int):
                rc = f"exited by itself before SIGTERM (rc={rc})"
        self.kill()
        for t in self._threads:
            t.join(timeout=5)
        return rc

    def kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        for f in (self.proc.stdin,):
            try:
                if f:
                    f.close()
            except OSError:
                pass

    def recorded_stdout(self) -> bytes:
        out = self.out()
        kept, pos = [], 0
        for a, b in sorted(self.cuts):
            kept.append(out[pos:a])
            pos = b
        kept.append(out[pos:])
        return b"".join(kept)


# --------------------------------------------------------------------------
# running a scenario
# --------------------------------------------------------------------------


def _record(norm: harness.Normalizer, display: str, r: Result, condition=None, stdout_raw=None) -> StepRecord:
    out = norm.lines(r.stdout if stdout_raw is None else stdout_raw)
    return StepRecord(display, r.rc, out, norm.stderr_lines(r.stderr), r, condition)


def _wait_more(w: Optional[Watcher], text: str, before: int) -> str:
    if w is None:
        return "no watcher running"
    needle = text.encode()
    ok = w.wait_for(lambda out: out.count(needle) > before)
    return "seen" if ok else f"NOT seen after {WAIT:g}s"


def run_watch_scenario(server: harness.Server, sc: WatchScenario) -> list:
    """-> list of (action, StepRecord)."""
    norm = harness.Normalizer(server)
    records: list = []
    w: Optional[Watcher] = None
    try:
        for act in sc.actions:
            if isinstance(act, Step):
                act = Write(act, None)
            if isinstance(act, Write):
                before = w.out().count(act.seen.encode()) if (w and act.seen) else 0
                argv = [norm.leases.fill(a) for a in act.step.argv()]  # {lease}: see harness.LeaseIds
                r = server.etcdctl(argv, norm.leases.fill_bytes(act.step.stdin))
                if act.step.grants_lease():
                    norm.leases.capture(r)
                cond = _wait_more(w, act.seen, before) if act.seen else None
                disp = act.step.display() + (f"  [watcher then prints {act.seen!r}]" if act.seen else "")
                records.append((act, _record(norm, disp, r, cond)))
            elif isinstance(act, Start):
                if w is not None:
                    raise RuntimeError("a watcher is already running (Stop it first)")
                w = Watcher(server.endpoint, act.args, act.interactive)
                disp = "start in background: etcdctl " + shlex.join(act.args)
                records.append((act, StepRecord(disp, "started", [], [], Result(w.argv, None, "started", b"", b"", 0))))
            elif isinstance(act, Send):
                before = w.out().count(act.seen.encode()) if act.seen else 0
                w.send(act.line)
                cond = _wait_more(w, act.seen, before) if act.seen else None
                disp = f"watcher stdin <<< {act.line!r}" + (f"  [then prints {act.seen!r}]" if act.seen else "")
                records.append((act, StepRecord(disp, "sent", [], [], Result([], None, "sent", b"", b"", 0), cond)))
            elif isinstance(act, Await):
                needle = act.text.encode()
                ok = w.wait_for(lambda out: out.count(needle) >= act.count)
                cond = "seen" if ok else f"NOT seen after {WAIT:g}s"
                disp = f"wait until the watcher has printed {act.text!r}" + (f" x{act.count}" if act.count > 1 else "")
                records.append((act, StepRecord(disp, "waited", [], [], Result([], None, "", b"", b"", 0), cond)))
            elif isinstance(act, Sync):
                records.append((act, _sync(server, w, act.key)))
            elif isinstance(act, Stop):
                rc = w.stop(act.self_exit)
                disp = "stop watcher: etcdctl " + shlex.join(w.argv[3:])
                if w.stdin_log:
                    disp += f"  (stdin was {w.stdin_log!r})"
                raw = Result(w.argv, None, rc, w.out(), w.err(), 0)
                records.append((act, _record(norm, disp, raw, stdout_raw=w.recorded_stdout())))
                w = None
            else:
                raise TypeError(act)
    finally:
        if w is not None:
            w.kill()
    return records


def _sync(server: harness.Server, w: Watcher, key: str) -> StepRecord:
    """Put key=sync-1, sync-2, ... until the watcher prints the last value
    (each put waits SYNC_INTERVAL for it). The output from the first probe on
    is cut from the recorded stdout."""
    start = len(w.out())
    deadline = time.monotonic() + SYNC_DEADLINE
    n = 0
    cond = f"NOT met after {SYNC_DEADLINE:g}s"
    last: Optional[Result] = None
    while time.monotonic() < deadline:
        n += 1
        value = f"sync-{n}"
        last = server.etcdctl(["put", key, value])
        line = f"\n{value}\n".encode()
        if last.rc != 0:
            cond = f"probe put failed (rc={last.rc})"
            break
        if w.wait_for(lambda out: line in out[start:], SYNC_INTERVAL):
            out = w.out()
            end = out.index(line, start) + len(line)
            # text mode: cut from the start of the first probe event to the end of this value line
            w.cuts.append((start, end))
            cond = "met"
            break
    disp = f"sync: put {key}=sync-N until the watcher prints it (probe output not compared)"
    # the number of probes is timing-dependent: not recorded
    return StepRecord(disp, "sync", [], [], last or Result([], None, "", b"", b"", 0), cond)


def check_watch_expectations(pairs: list) -> list:
    problems = []
    for i, (act, rec) in enumerate(pairs, 1):
        why = []
        raw_err = rec.raw.stderr.decode(errors="backslashreplace")
        if isinstance(act, Write):
            why.extend(harness.step_expectation_problems(act.step, rec))
        if isinstance(act, Stop):
            want = act.expect_rc
            if want is None and not act.self_exit:
                want = "SIGTERM"
            if want is not None and rec.rc != want:
                why.append(f"watcher exit {rec.rc!r}, expected {want!r}")
            if act.expect_stderr is not None and act.expect_stderr not in raw_err:
                why.append(f"watcher stderr lacks {act.expect_stderr!r}")
        if rec.condition is not None and rec.condition not in ("met", "seen"):
            why.append(f"condition {rec.condition}")
        if why:
            problems.append(f"action {i}: {rec.command}\n  " + "; ".join(why) + "\n" + _indent(rec.raw.text()))
    return problems


def _indent(s: str, pad: str = "    ") -> str:
    return "\n".join(pad + line for line in s.splitlines())


def _save(sid: str, side: str, records: list) -> None:
    try:
        d = harness.COMPAT_DIR / "out" / "transcripts"
        d.mkdir(parents=True, exist_ok=True)
        data = [{"command": r.command, **r.comparable()} for r in records]
        (d / f"{sid}.{side}.json").write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except OSError:
        pass


# --------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------

SCENARIOS: list = []


def scenario(sid, title, actions, group="watch"):
    SCENARIOS.append(WatchScenario(sid, group, title, actions))


# History used by several scenarios. Revisions on a fresh store:
#   2 put foo 1 | 3 put foo 2 | 4 put bar x | 5 del foo | 6 put foo 3 | 7 put fop p | 8 put fo o
HISTORY = [
    T("put foo 1"), T("put foo 2"), T("put bar x"), T("del foo"), T("put foo 3"),
    T("put fop p"), T("put fo o"),
]

scenario("watch-rev-replay", "watch --rev: history replay of one key (from the start, from the middle, at the head)", [
    *HISTORY,
    start("watch --rev=1 foo"),
    Await(event("PUT", "foo", "3")),
    Stop(),
    start("watch --rev=4 foo"),  # 4 is not a foo revision: replay starts at the next one (del at 5)
    Await(event("PUT", "foo", "3")),
    W("put foo 4", seen=event("PUT", "foo", "4")),  # then live
    Stop(),
    start("watch --rev=9 foo"),  # the revision of the last write: exactly one replayed event
    Await(event("PUT", "foo", "4")),
    Stop(),
])

scenario("watch-future-rev", "watch --rev=N with N beyond the head: nothing before N, then N and later (text + json)", [
    *HISTORY,  # head is 8
    start("watch --rev=10 --prefix fo"),
    W("put foo 9"),  # revision 9: before the start revision, never printed
    W("put fop 10", seen=event("PUT", "fop", "10")),  # revision 10
    W("put fo 11", seen=event("PUT", "fo", "11")),
    Stop(),
    start("-w json watch --rev=14 foo"),  # head is 11
    WJ("put foo 12"),
    WJ("put foo 13"),
    WJ("put foo 14", seen=MODREV(14)),
    Stop(),
])

scenario("watch-rev-json", "watch --rev -w json: replayed events, revisions, delete events, headers", [
    *HISTORY,
    start("-w json watch --rev=2 foo"),
    Await(MODREV(6)),
    Stop(),
    start("-w json watch --rev=1 --prefix fo"),
    Await(MODREV(8)),
    Stop(),
    start("-w json watch --rev=3 --prev-kv --prefix \"\""),  # the whole keyspace, with prev_kv
    Await(MODREV(8)),
    Stop(),
])

scenario("watch-rev-prev-kv", "watch --rev --prev-kv (text): previous kv printed before each event", [
    *HISTORY,
    start("watch --rev=1 --prev-kv foo"),
    Await(event("PUT", "foo", "3")),
    Stop(),
    start("watch --rev=1 --prev-kv --prefix fo"),
    Await(event("PUT", "fo", "o")),
    Stop(),
])

scenario("watch-json-live", "watch -w json --rev=<head>: one replayed event, then live events (txn, delete, prev_kv)", [
    T("put foo 1"), T("put other 1"), T("put foo 2"),  # rev 4 = last foo write
    start("-w json watch --prev-kv --rev=4 foo"),
    Await(MODREV(4)),  # the replayed rev-4 event: the watch is established and synced
    WJ("put foo 3", seen='"Events"'),
    WJ("put unrelated x"),  # not in the watched range: nothing printed
    WJ("txn", txn_input([], ["put foo 4", "put bar 1"], []), seen='"Events"'),  # one event (foo)
    WJ("del foo", seen='"Events"'),
    WJ("put foo 5", seen='"Events"'),  # recreated: create_revision new, version 1, no prev_kv
    Stop(),
])

scenario("watch-json-live-prefix", "watch -w json --prefix --rev=<head>: multi-key txn gives one response with several events", [
    T("put p/0 start"),
    start("-w json watch --prefix p/ --rev=2"),
    Await(MODREV(2)),
    WJ("txn", txn_input([], ["put p/a 1", "put p/b 2", "put q 3"], []), seen='"Events"'),
    WJ("del --prefix p/", seen='"Events"'),  # three deletes, one revision
    WJ("put p/c 4", seen='"Events"'),
    Stop(),
])

scenario("watch-prefix-live", "watch --prefix (no --rev): live puts, deletes, txn, out-of-range writes", [
    T("put k/old 0"),  # before the watch: not printed
    start("watch --prefix k"),
    Sync("k-sync"),
    W("put k/a 1", seen=event("PUT", "k/a", "1")),
    W("put other x"),  # out of range
    W("put K/upper y"),  # out of range (case)
    W("put k/b 2", seen=event("PUT", "k/b", "2")),
    W("put k 3", seen=event("PUT", "k", "3")),  # the prefix itself
    W("del k/a", seen=event("DELETE", "k/a")),
    W("del k/missing"),  # nothing deleted: no event
    W("txn", seen=event("PUT", "k/d", "5"), stdin=txn_input([], ["put k/c 4", "put k/d 5"], [])),
    W("del --prefix k/", seen=event("DELETE", "k/old")),  # k/b k/c k/d k/old in one revision (k/old printed last)
    Stop(),
])

scenario("watch-prev-kv-live", "watch --prev-kv --prefix (no --rev): prev kv of overwritten and deleted keys", [
    T("put p/a 0"),
    start("watch --prev-kv --prefix p/"),
    Sync("p/sync"),
    W("put p/a 1", seen="p/a\n1\n"),
    W("put p/a 2", seen="p/a\n2\n"),
    W("put p/b 1", seen="p/b\n1\n"),
    W("del p/a", seen="DELETE\np/a\n2\np/a\n\n"),
    W("put p/a 3", seen="p/a\n3\n"),  # recreated: no prev kv
    Stop(),
])

scenario("watch-range", "watch KEY RANGE_END: [a, c) live (no --rev), range end exclusive", [
    start("watch a c"),
    Sync("b-sync"),
    W("put a 1", seen=event("PUT", "a", "1")),
    W("put c 2"),  # range end: excluded
    W("put 0 x"),  # before the range
    W("put bz 3", seen=event("PUT", "bz", "3")),
    W("put ca 4"),
    W("put b 5", seen=event("PUT", "b", "5")),
    W("del --prefix \"\"", seen=event("DELETE", "bz")),  # a, b, b-sync, bz printed (bz last); c, ca, 0 not
    Stop(),
])

scenario("watch-range-json", "watch -w json --rev=1 KEY RANGE_END: history of [fo, foo) and [foo, fop]", [
    *HISTORY,
    start("-w json watch --rev=1 fo foo"),
    Await(MODREV(8)),
    Stop(),
    start("-w json watch --rev=1 --prev-kv foo fopa"),
    Await(MODREV(7)),
    Stop(),
])

scenario("watch-exec", "watch --rev ... -- COMMAND: the command runs per event with ETCD_WATCH_* variables", [
    T("put foo 1"), T("put foo 2"), T("del foo"),
    start(["watch", "--rev=2", "foo", "--", "sh", "-c",
           'echo "exec: $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE rev=$ETCD_WATCH_REVISION"']),
    Await("exec: ", count=3),
    W("put foo 3", seen="exec: "),  # live: ETCD_WATCH_REVISION is the event's own revision
    Stop(),
])

scenario("watch-interactive", "watch -i: `watch foo`, `watch --prefix bar`, writes from other etcdctl processes", [
    start("watch -i", interactive=True),
    Send("watch foo"),
    Sync("foo"),
    Send("watch --prefix bar"),
    Sync("bar-sync"),
    W("put foo v1", seen=event("PUT", "foo", "v1")),
    W("put bar/1 b1", seen=event("PUT", "bar/1", "b1")),
    W("put baz z"),  # neither watch
    W("put foo2 f2"),  # not `foo`
    W("put barn n", seen=event("PUT", "barn", "n")),
    W("del foo", seen=event("DELETE", "foo")),
    Send("put x y", seen=None),  # not a watch command: error on stderr, keeps reading
    W("put bar/2 b2", seen=event("PUT", "bar/2", "b2")),
    Stop(expect_rc=EXIT_EOF, expect_stderr="Invalid command put x y (only support watch)"),
])

scenario("watch-interactive-rev", "watch -i with --rev and --prev-kv lines, and a compacted revision (canceled, keeps going)", [
    T("put h 1"), T("put h 2"), T("put h 3"), T("put g 1"), T("compaction 3"),  # revisions 2, 3, 4, 5
    start("watch -i", interactive=True),
    Send("watch --rev=2 h"),  # compacted: canceled, message on stderr, etcdctl keeps reading
    # replays 3 and 4; the prev kv of revision 3 (h@2) is compacted away: etcd sends none
    Send("watch --rev=3 --prev-kv h", seen="h\n2\nh\n3\n"),
    Send("watch --rev=5 g", seen=event("PUT", "g", "1")),  # another key: no two watches print one event
    W("put h 4", seen="h\n3\nh\n4\n"),
    W("put g 2", seen=event("PUT", "g", "2")),
    Stop(expect_rc=EXIT_EOF, expect_stderr=COMPACTED_CANCEL),
], group="watch -i")

scenario("watch-compacted", "watch --rev=N on a compacted revision: canceled, message, exit code; N = compact rev is fine", [
    T("put foo 1"), T("put foo 2"), T("put foo 3"), T("put foo 4"),  # revisions 2..5
    T("compaction 4", out="compacted revision 4"),
    start("watch --rev=2 foo"),
    Stop(self_exit=True, expect_rc=EXIT_WATCH_CANCELED, expect_stderr=COMPACTED_CANCEL + "\n" + CANCELED_BY_SERVER),
    start("-w json watch --rev=3 foo"),
    Stop(self_exit=True, expect_rc=EXIT_WATCH_CANCELED, expect_stderr=COMPACTED_CANCEL + "\n" + CANCELED_BY_SERVER),
    start("watch --rev=3 --prefix \"\""),
    Stop(self_exit=True, expect_rc=EXIT_WATCH_CANCELED, expect_stderr=COMPACTED_CANCEL + "\n" + CANCELED_BY_SERVER),
    start("watch --rev=4 foo"),  # the compaction revision itself is still watchable
    Await(event("PUT", "foo", "4")),
    Stop(),
    start("-w json watch --rev=4 foo"),
    Await(MODREV(5)),
    Stop(),
    # prev_kv of the event at the compaction revision would be read at revision 3 (compacted):
    # etcd sends that event without prev_kv; the next event has one
    start("-w json watch --rev=4 --prev-kv foo"),
    Await(MODREV(5)),
    Stop(),
])

scenario("watch-lease-expiry", "a key attached to a 2 s lease expires: the watcher gets its DELETE (json, prev_kv)", [
    T("put x 0"),
    J("lease grant 2"),
    T("put --lease={lease} tmp v"),  # revision 3
    start("-w json watch --rev=3 --prev-kv tmp"),
    Await(MODREV(3)),
    Await('"type":1'),  # the expiry's delete (revision 4), within WAIT s
    T("get tmp"),
    Stop(),
])

# ==========================================================================

SIDES = ["etcd", "cairn"]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_watch(scenario, side, start_server, reference_transcripts):
    import shutil

    if not shutil.which(harness.etcdctl_bin()):
        pytest.fail(f"etcdctl binary {harness.etcdctl_bin()!r} not found on PATH", pytrace=False)
    key = "watch::" + scenario.id
    if side == "etcd":
        srv = start_server("etcd")
        pairs = run_watch_scenario(srv, scenario)
        records = [r for _, r in pairs]
        reference_transcripts[key] = records
        _save(scenario.id, "etcd", records)
        problems = check_watch_expectations(pairs)
        if problems:
            pytest.fail("real etcd did not behave as this scenario expects:\n\n" + "\n\n".join(problems), pytrace=False)
        return
    srv = start_server("cairn")
    reference = reference_transcripts.get(key)
    if reference is None:
        ref = start_server("etcd", "etcd-reference")
        reference = [r for _, r in run_watch_scenario(ref, scenario)]
        ref.stop()
        reference_transcripts[key] = reference
    records = [r for _, r in run_watch_scenario(srv, scenario)]
    _save(scenario.id, "cairn", records)
    diff = harness.diff_transcripts(reference, records, "etcd", srv.label)
    if diff:
        d = harness.COMPAT_DIR / "out" / "transcripts"
        diff += f"\n\nfull normalised transcripts: {d}/{scenario.id}.etcd.json and .cairn.json; server log: {srv.log_path}"
        if not srv.alive():
            diff += f"\n\n!! {srv.label} is no longer running. Last log lines:\n{srv.log_tail()}"
        pytest.fail(diff, pytrace=False)


def test_watch_scenario_ids_unique():
    ids = [s.id for s in SCENARIOS]
    assert len(ids) == len(set(ids))


def test_watch_scenarios_deterministic():
    """After a Sync (timing-dependent number of probe writes) no output that
    carries revisions may be compared: no -w json steps or watchers, no --rev
    watchers; Write/Send waits need a running watcher; Start/Stop pair up."""
    for sc in SCENARIOS:
        synced, running = False, False
        for act in sc.actions:
            where = f"{sc.id}: {act}"
            if isinstance(act, Sync):
                assert running, where
                synced = True
            if isinstance(act, Start):
                assert not running, where
                running = True
                if synced:
                    assert "json" not in act.args and not any(a.startswith("--rev") for a in act.args), where
            if isinstance(act, Stop):
                assert running, where
                running = False
            step = act.step if isinstance(act, Write) else act if isinstance(act, Step) else None
            if step is not None and synced:
                assert not step.json, where
            if isinstance(act, (Send, Await)) or (isinstance(act, Write) and act.seen):
                assert running, where
            if isinstance(act, Send) and synced:
                assert "--rev" not in act.line, where
        assert not running, f"{sc.id}: watcher never stopped"
