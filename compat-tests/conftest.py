"""Fixtures for the etcdctl differential suite, plus the compatibility-matrix
plugin that writes out/matrix.md (and out/matrix.json) from the run."""

from __future__ import annotations

import datetime
import json
import os
import shutil
import signal
from pathlib import Path

import pytest

import harness

OUT_DIR = Path(__file__).resolve().parent / "out"
TRANSCRIPT_DIR = OUT_DIR / "transcripts"


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def reference_transcripts() -> dict:
    """scenario id -> normalised etcd transcript, shared by the two legs so the
    cairn leg does not have to replay the scenario on etcd again."""
    return {}


_READINESS_TIMEOUTS = {"cairn": 0}
FAIL_FAST_AFTER = 2  # consecutive cairn readiness timeouts before later legs fail fast


@pytest.fixture
def start_server(request, tmp_path):
    """start_server(side, name=None) -> started harness.Server.

    Every server gets a finalizer *before* it is started, so it is stopped
    (process group SIGTERM, then SIGKILL) whether the test passes, fails, or
    the start itself fails half-way."""

    def _start(side: str, name: str | None = None) -> harness.Server:
        srv = harness.make_server(side, tmp_path / (name or side))
        request.addfinalizer(srv.stop)
        if side == "cairn" and _READINESS_TIMEOUTS["cairn"] >= FAIL_FAST_AFTER:
            pytest.fail(
                f"[{srv.label}] not started: it failed to become ready {FAIL_FAST_AFTER} times in a row "
                f"earlier in this session (see the first failure for its log)",
                pytrace=False,
            )
        problem = None
        try:
            srv.start()
            if side == "cairn":
                _READINESS_TIMEOUTS["cairn"] = 0
        except harness.BinaryMissing as e:
            problem = f"[{srv.label}] {e}"
        except harness.ServerStartError as e:
            problem = f"[{srv.label}] could not start:\n{e}"
            if side == "cairn" and "not ready after" in str(e):
                _READINESS_TIMEOUTS["cairn"] += 1
        if problem:  # outside the except block: no chained-traceback noise
            pytest.fail(problem, pytrace=False)
        return srv

    return _start


def _save_transcript(scenario_id: str, side: str, records: list) -> None:
    try:
        TRANSCRIPT_DIR.mkdir(parents=True, exist_ok=True)
        data = [{"command": r.command, **r.comparable()} for r in records]
        (TRANSCRIPT_DIR / f"{scenario_id}.{side}.json").write_text(
            json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
    except OSError:
        pass


@pytest.fixture
def differential(start_server, reference_transcripts):
    """differential(scenario, side): the body of every differential test.

    side == "etcd":  run on a fresh real etcd, check the scenario's sanity
                     expectations (exit codes / error texts the brief names),
                     and keep the transcript as the reference.
    side == "cairn": run on a fresh Cairn and require its normalised
                     transcript to equal the reference one, step by step."""

    def _run(scenario: harness.Scenario, side: str) -> None:
        if not shutil.which(harness.etcdctl_bin()):
            pytest.fail(f"etcdctl binary {harness.etcdctl_bin()!r} not found on PATH -- "
                        "apt-get install etcd-client, or set ETCDCTL_BIN", pytrace=False)
        reason = scenario.unsupported()
        if reason:
            pytest.skip(reason)

        if side == "etcd":
            srv = start_server("etcd")
            records = harness.run_scenario(srv, scenario)
            reference_transcripts[scenario.id] = records
            _save_transcript(scenario.id, "etcd", records)
            problems = harness.check_expectations(scenario, records)
            if problems:
                pytest.fail(
                    "real etcd did not behave as this scenario expects "
                    "(fix the scenario, or note the etcd behaviour):\n\n" + "\n\n".join(problems),
                    pytrace=False,
                )
            return

        # cairn leg: start it first so a missing binary fails fast
        srv = start_server("cairn")
        reference = reference_transcripts.get(scenario.id)
        if reference is None:
            ref_srv = start_server("etcd", "etcd-reference")
            reference = harness.run_scenario(ref_srv, scenario)
            ref_srv.stop()
            reference_transcripts[scenario.id] = reference
        records = harness.run_scenario(srv, scenario)
        _save_transcript(scenario.id, "cairn", records)
        diff = harness.diff_transcripts(reference, records, "etcd", srv.label)
        if diff:
            diff += (
                f"\n\nfull normalised transcripts: {TRANSCRIPT_DIR}/{scenario.id}.etcd.json"
                f" and {scenario.id}.cairn.json; server log: {srv.log_path}"
            )
            if not srv.alive():
                diff += f"\n\n!! {srv.label} is no longer running. Last log lines:\n{srv.log_tail()}"
            pytest.fail(diff, pytrace=False)

    return _run


def pytest_configure(config):
    # Servers live in their own process groups, so a SIGTERM/SIGHUP to pytest
    # would orphan them: stop them first, then die of the same signal.
    def _on_signal(signum, frame):
        harness._stop_all_live()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        try:
            signal.signal(sig, _on_signal)
        except (ValueError, OSError):  # not the main thread
            pass


# --------------------------------------------------------------------------
# report header
# --------------------------------------------------------------------------


def pytest_report_header(config):
    cb = harness.cairn_bin()
    return [
        f"etcdctl: {shutil.which(harness.etcdctl_bin()) or harness.etcdctl_bin()} ({harness.etcdctl_version()})",
        f"etcd:    {shutil.which(harness.etcd_bin()) or harness.etcd_bin()}",
        "cairn:   "
        + ("SELF-CHECK mode: the cairn side is a second real etcd" if harness.self_check_mode()
           else f"{cb} ({'exists' if cb.exists() else 'MISSING'})"),
    ]


# --------------------------------------------------------------------------
# compatibility matrix plugin
# --------------------------------------------------------------------------

_RESULTS: dict = {}
_RANK = {"passed": 0, "skipped": 1, "failed": 2, "error": 3}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    cs = getattr(item, "callspec", None)
    if cs is None or "scenario" not in cs.params or "side" not in cs.params:
        return
    sc, side = cs.params["scenario"], cs.params["side"]
    entry = _RESULTS.setdefault((sc.id, side), {"scenario": sc, "side": side, "outcome": "passed", "reason": ""})
    if rep.skipped:
        new = "skipped"
        lr = rep.longrepr
        entry["reason"] = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr)
    elif rep.failed:
        new = "failed" if rep.when == "call" else "error"
        first = str(rep.longrepr).strip().splitlines()
        entry["reason"] = first[0][:300] if first else ""
    else:
        return
    if _RANK[new] > _RANK[entry["outcome"]]:
        entry["outcome"] = new


_ICON = {"passed": "✅ pass", "failed": "❌ FAIL", "error": "💥 error", "skipped": "⏭ skip", None: "· not run"}


def pytest_sessionfinish(session, exitstatus):
    if not _RESULTS:
        return
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    scenarios, seen = [], set()
    for (sid, _side), e in _RESULTS.items():
        if sid not in seen:
            seen.add(sid)
            scenarios.append(e["scenario"])
    sides = ["etcd", "cairn"]
    groups: dict = {}
    for sc in scenarios:
        groups.setdefault(sc.group, []).append(sc)

    def outcome(sc, side):
        e = _RESULTS.get((sc.id, side))
        return e["outcome"] if e else None

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    cairn_desc = (
        "self-check mode (COMPAT_SELF_CHECK=1): the cairn side was a second real etcd"
        if harness.self_check_mode()
        else f"`{harness.cairn_bin()}`"
    )
    md = [
        "# Cairn etcdctl compatibility matrix",
        "",
        f"Generated from the pytest run at {now}; do not edit by hand.",
        "",
        f"- etcdctl {harness.etcdctl_version()} (`{shutil.which(harness.etcdctl_bin()) or harness.etcdctl_bin()}`)",
        f"- reference: real etcd (`{shutil.which(harness.etcd_bin()) or harness.etcd_bin()}`)",
        f"- cairn: {cairn_desc}",
        "- etcd column: the scenario ran on etcd and etcd met the scenario's expectations.",
        "- cairn column: Cairn's normalised transcript (exit codes, stdout, stderr of every step) equals etcd's.",
        "",
        "## By command",
        "",
        "| command | " + " | ".join(sides) + " |",
        "|---|" + "---|" * len(sides),
    ]
    for g, scs in groups.items():
        cells = []
        for side in sides:
            outs = [outcome(sc, side) for sc in scs]
            ran = [o for o in outs if o not in (None, "skipped")]
            ok = sum(1 for o in ran if o == "passed")
            skipped = sum(1 for o in outs if o == "skipped")
            icon = "✅" if ran and ok == len(ran) else ("❌" if ran else "⏭")
            cell = f"{icon} {ok}/{len(ran)}"
            if skipped:
                cell += f" (+{skipped} skipped)"
            cells.append(cell)
        md.append(f"| {g} | " + " | ".join(cells) + " |")
    md += [
        "",
        "## By scenario",
        "",
        "| command | scenario | what | " + " | ".join(sides) + " |",
        "|---|---|---|" + "---|" * len(sides),
    ]
    notes = []
    for g, scs in groups.items():
        for sc in scs:
            cells = []
            for side in sides:
                o = outcome(sc, side)
                cell = _ICON[o]
                e = _RESULTS.get((sc.id, side))
                if o in ("skipped", "error", "failed") and e and e["reason"]:
                    note = e["reason"].replace("|", "\\|").replace("\n", " ")
                    if note not in notes:
                        notes.append(note)
                    cell += f" [{notes.index(note) + 1}]"
                cells.append(cell)
            md.append(f"| {g} | `{sc.id}` | {sc.title} | " + " | ".join(cells) + " |")
    if notes:
        md += ["", "## Notes", ""] + [f"{i}. {n}" for i, n in enumerate(notes, 1)]
    md.append("")
    (OUT_DIR / "matrix.md").write_text("\n".join(md), encoding="utf-8")

    (OUT_DIR / "matrix.json").write_text(
        json.dumps(
            [
                {"command": sc.group, "scenario": sc.id, "title": sc.title,
                 **{side: outcome(sc, side) for side in sides}}
                for sc in scenarios
            ],
            indent=2,
        )
        + "\n",
        encoding="utf-8",
    )
