"""Differential etcdctl harness: server lifecycle, etcdctl runner, normalisation, diff.

The same scenario (a list of etcdctl invocations) is run against a fresh real
etcd and a fresh Cairn; each invocation's exit code, stdout and stderr are
normalised (see ``Normalizer``) and the two transcripts must be equal.

Nothing in here is specific to pytest except that ``ServerStartError`` and
``BinaryMissing`` are turned into ``pytest.fail`` by the fixtures.
"""

from __future__ import annotations

import atexit
import base64
import dataclasses
import difflib
import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Callable, Optional, Union

COMPAT_DIR = Path(__file__).resolve().parent
REPO_ROOT = COMPAT_DIR.parent
DEFAULT_CAIRN_BIN = REPO_ROOT / "target" / "debug" / "cairn"

ETCD_READY_TIMEOUT = float(os.environ.get("COMPAT_ETCD_READY_TIMEOUT", "15"))
CAIRN_READY_TIMEOUT = float(os.environ.get("COMPAT_CAIRN_READY_TIMEOUT", "30"))
ETCDCTL_TIMEOUT = float(os.environ.get("COMPAT_ETCDCTL_TIMEOUT", "30"))
STOP_GRACE = 5.0


# --------------------------------------------------------------------------
# binaries / environment
# --------------------------------------------------------------------------


class BinaryMissing(Exception):
    pass


class ServerStartError(Exception):
    pass


def etcdctl_bin() -> str:
    return os.environ.get("ETCDCTL_BIN", "etcdctl")


def etcd_bin() -> str:
    return os.environ.get("ETCD_BIN", "etcd")


def cairn_bin() -> Path:
    """CAIRN_BIN (relative paths are taken relative to the repo root), else
    <repo>/target/debug/cairn."""
    raw = os.environ.get("CAIRN_BIN")
    if not raw:
        return DEFAULT_CAIRN_BIN
    p = Path(raw).expanduser()
    return p if p.is_absolute() else (REPO_ROOT / p)


def self_check_mode() -> bool:
    """COMPAT_SELF_CHECK=1: the 'cairn' side is another real etcd."""
    return os.environ.get("COMPAT_SELF_CHECK", "") not in ("", "0", "false", "no")


def clean_env() -> dict:
    """Environment for etcdctl and the servers: no ETCDCTL_* leaking in from
    the caller (ETCDCTL_ENDPOINTS would silently add endpoints), no proxies,
    ETCDCTL_API=3."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.upper().startswith("ETCDCTL_")
        and not k.upper().startswith("ETCD_")
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy", "grpc_proxy")
    }
    env["ETCDCTL_API"] = "3"
    return env


def require_binary(name_or_path: Union[str, Path], what: str, hint: str = "") -> str:
    p = str(name_or_path)
    hint = f" -- {hint}" if hint else ""
    if os.sep in p:
        if not (os.path.isfile(p) and os.access(p, os.X_OK)):
            raise BinaryMissing(f"{what} binary not found or not executable: {p}{hint}")
        return p
    found = shutil.which(p)
    if not found:
        raise BinaryMissing(f"{what} binary {p!r} not found on PATH{hint}")
    return found


def tool_version(binary: str, flag: str = "--version") -> str:
    try:
        out = subprocess.run([binary, flag], capture_output=True, timeout=10, env=clean_env())
        return out.stdout.decode(errors="replace").strip().splitlines()[0]
    except Exception as e:  # pragma: no cover - informational only
        return f"unknown ({e})"


# --------------------------------------------------------------------------
# etcdctl runner
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    argv: list
    stdin: Optional[bytes]
    rc: Union[int, str]  # int exit code, or "timeout"
    stdout: bytes
    stderr: bytes
    seconds: float

    def text(self) -> str:
        return (
            f"$ {shlex.join(self.argv)}  (rc={self.rc})\n"
            f"--- stdout\n{self.stdout.decode(errors='backslashreplace')}"
            f"--- stderr\n{self.stderr.decode(errors='backslashreplace')}"
        )


def run_etcdctl(endpoint: str, args: list, stdin: Optional[bytes] = None, timeout: float = ETCDCTL_TIMEOUT) -> Result:
    argv = [etcdctl_bin(), "--endpoints", endpoint, *args]
    t0 = time.monotonic()
    try:
        p = subprocess.run(
            argv,
            input=stdin if stdin is not None else b"",
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=clean_env(),
            timeout=timeout,
        )
        rc: Union[int, str] = p.returncode
        out, err = p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        rc, out, err = "timeout", e.stdout or b"", e.stderr or b""
    return Result(argv, stdin, rc, out, err, time.monotonic() - t0)


# --------------------------------------------------------------------------
# servers
# --------------------------------------------------------------------------

_LIVE: set = set()


def _stop_all_live() -> None:  # safety net if a finalizer never ran
    for s in list(_LIVE):
        s.stop()


atexit.register(_stop_all_live)


# Ports come from below Linux's ephemeral range (32768 and up), where the kernel picks the
# local ports of outgoing connections and of bind(0): a port found free there can be taken by a
# client socket before the server binds it. The walk starts at a pid-derived offset and never
# hands out a port twice in one process.
_PORT_LOW, _PORT_SPAN = 12000, 20000
_port_cursor = (os.getpid() * 7919) % _PORT_SPAN


def free_ports(n: int) -> list:
    """n distinct loopback ports nobody listens on now, never handed out before here."""
    global _port_cursor
    ports = []
    for _ in range(_PORT_SPAN):
        if len(ports) == n:
            break
        port = _PORT_LOW + _port_cursor % _PORT_SPAN
        _port_cursor += 1
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind(("127.0.0.1", port))
            ports.append(port)
        except OSError:
            pass
        finally:
            s.close()
    if len(ports) < n:
        raise RuntimeError("no free loopback ports in 12000..32000")
    return ports


class Server:
    """A single-member server process in its own process group and tempdir."""

    kind = "?"
    ready_timeout = 15.0

    def __init__(self, workdir: Path, label: Optional[str] = None):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.label = label or self.kind
        self.proc: Optional[subprocess.Popen] = None
        self.client_port: Optional[int] = None
        self.peer_port: Optional[int] = None
        self.data_dir: Optional[Path] = None
        self.log_path: Optional[Path] = None
        self.member_id: Optional[int] = None
        self.cluster_id: Optional[int] = None
        self.peer_urls: list = []

    # -- to implement ------------------------------------------------------
    def command(self) -> list:
        raise NotImplementedError

    def probe_ready(self) -> bool:
        raise NotImplementedError

    # -- lifecycle ---------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    def start(self) -> "Server":
        last: Optional[Exception] = None
        for attempt in range(3):
            self.client_port, self.peer_port = free_ports(2)
            self.data_dir = self.workdir / f"data-{attempt}"
            self.log_path = self.workdir / f"{self.kind}-{attempt}.log"
            try:
                self._spawn()
                self._wait_ready()
                self._learn_identity()
                return self
            except ServerStartError as e:
                last = e
                self.stop()
                if "address already in use" not in self.log_tail(200).lower():
                    break  # not a port race: do not retry
        raise ServerStartError(str(last))

    def _spawn(self) -> None:
        cmd = self.command()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # own process group: killpg on stop
                env=clean_env(),
                cwd=str(self.workdir),
            )
        _LIVE.add(self)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.ready_timeout
        while True:
            rc = self.proc.poll()
            if rc is not None:
                raise ServerStartError(
                    f"{self.label} exited with code {rc} before becoming ready.\n"
                    f"command: {shlex.join(self.command())}\n"
                    f"--- last log lines ({self.log_path}):\n{self.log_tail()}"
                )
            if self.probe_ready():
                return
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"{self.label} not ready after {self.ready_timeout:.0f}s on {self.endpoint}.\n"
                    f"command: {shlex.join(self.command())}\n"
                    f"--- last log lines ({self.log_path}):\n{self.log_tail()}"
                )
            time.sleep(0.05)

    def _learn_identity(self) -> None:
        """Best effort: member/cluster id and peer URLs, used only to
        normalise text-mode output. Failures here are not fatal (the scenario
        will show them)."""
        r = run_etcdctl(self.endpoint, ["-w", "json", "--command-timeout=3s", "endpoint", "status"], timeout=10)
        try:
            hdr = json.loads(r.stdout)[0]["Status"]["header"]
            self.member_id = hdr.get("member_id")
            self.cluster_id = hdr.get("cluster_id")
        except Exception:
            pass
        r = run_etcdctl(self.endpoint, ["-w", "json", "--command-timeout=3s", "member", "list"], timeout=10)
        try:
            for m in json.loads(r.stdout).get("members", []):
                if self.member_id is None or m.get("ID") == self.member_id:
                    self.peer_urls = list(m.get("peerURLs") or [])
                    break
        except Exception:
            pass

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        p = self.proc
        if p is None:
            return
        try:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=STOP_GRACE)
                except subprocess.TimeoutExpired:
                    pass
            # the group may outlive its leader: always SIGKILL what is left
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                p.wait(timeout=STOP_GRACE)
            except subprocess.TimeoutExpired:
                pass
        finally:
            _LIVE.discard(self)

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_bytes().decode(errors="replace").splitlines()
            return "\n".join(lines[-n:])
        except Exception:
            return "(no log)"

    def etcdctl(self, args: list, stdin: Optional[bytes] = None) -> Result:
        return run_etcdctl(self.endpoint, args, stdin)


class EtcdServer(Server):
    kind = "etcd"
    ready_timeout = ETCD_READY_TIMEOUT

    def command(self) -> list:
        c, p = self.client_port, self.peer_port
        return [
            require_binary(etcd_bin(), "etcd", "apt-get install etcd-server, or set ETCD_BIN"),
            "--name", "s1",
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", f"http://127.0.0.1:{c}",
            "--advertise-client-urls", f"http://127.0.0.1:{c}",
            "--listen-peer-urls", f"http://127.0.0.1:{p}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{p}",
            "--initial-cluster", f"s1=http://127.0.0.1:{p}",
        ]

    def probe_ready(self) -> bool:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        try:
            with opener.open(f"{self.endpoint}/health", timeout=1) as resp:
                body = json.loads(resp.read() or b"{}")
                return resp.status == 200 and str(body.get("health")) == "true"
        except Exception:
            return False


class CairnServer(Server):
    kind = "cairn"
    ready_timeout = CAIRN_READY_TIMEOUT
    # RESP (Redis protocol) port: a fresh free port per start, so parallel servers never
    # collide on Redis's default 6379.
    redis_port: Optional[int] = None

    def _spawn(self) -> None:
        self.redis_port = free_ports(1)[0]
        super()._spawn()

    @property
    def redis_addr(self) -> tuple:
        return ("127.0.0.1", self.redis_port)

    def command(self) -> list:
        c = self.client_port
        return [
            require_binary(
                cairn_bin(), "Cairn",
                "build it (`cargo build -p cairn-gateway`) or point CAIRN_BIN at it "
                "(COMPAT_SELF_CHECK=1 runs a second real etcd instead)",
            ),
            "--name", "s1",
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", f"http://127.0.0.1:{c}",
            "--advertise-client-urls", f"http://127.0.0.1:{c}",
            "--listen-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{self.peer_port}",
            "--listen-redis-urls", f"127.0.0.1:{self.redis_port}",
        ]

    def probe_ready(self) -> bool:
        r = run_etcdctl(
            self.endpoint,
            ["--dial-timeout=1s", "--command-timeout=2s", "endpoint", "status"],
            timeout=10,
        )
        return r.rc == 0


def make_server(side: str, workdir: Path) -> Server:
    """side: 'etcd' (reference) or 'cairn' (under test; real etcd in self-check mode)."""
    if side == "etcd":
        return EtcdServer(workdir, "etcd")
    if side == "cairn":
        if self_check_mode():
            return EtcdServer(workdir, "cairn(self-check: etcd)")
        return CairnServer(workdir, "cairn")
    raise ValueError(side)


# --------------------------------------------------------------------------
# scenarios
# --------------------------------------------------------------------------


@dataclasses.dataclass
class Step:
    args: list
    stdin: Optional[bytes] = None
    json: bool = True  # run with `-w json`
    # Sanity expectations, checked on the etcd (reference) side so that a
    # typo in a scenario cannot silently turn into "both sides error alike".
    expect_rc: Optional[int] = 0  # None: any exit code
    expect_stderr: Optional[str] = None  # substring of raw stderr
    expect_stdout: Optional[str] = None  # substring of raw stdout
    normalize: Optional[Callable] = None  # extra normaliser over stdout entries
    # Polling (see POLL): re-run the command every poll_interval seconds until
    # until(Result) is true or poll_deadline seconds have passed; the last
    # attempt is recorded, plus whether the condition was met.
    until: Optional[Callable] = None
    until_desc: str = ""
    poll_interval: float = 0.5
    poll_deadline: float = 15.0
    sleep: Optional[float] = None  # SLEEP(s): no command, just wait (recorded as an empty step)

    def argv(self) -> list:
        return (["-w", "json"] if self.json else []) + list(self.args)

    def grants_lease(self) -> bool:
        """`lease grant` steps: their output's lease ID is captured (see LeaseIds)."""
        a = self.args
        return any(x == "lease" and y == "grant" for x, y in zip(a, a[1:]))

    def display(self) -> str:
        if self.sleep is not None:
            return f"(sleep {self.sleep:g}s)"
        s = "etcdctl " + shlex.join(a if len(a) <= 60 else f"{a[:20]}…[{len(a)} chars]" for a in self.argv())
        if self.stdin is not None:
            shown = self.stdin.decode(errors="backslashreplace")
            if len(shown) > 160:
                shown = shown[:160] + f"... ({len(self.stdin)} bytes)"
            s += f"  <<< {shown!r}"
        if self.until is not None:
            s += f"  [repeated every {self.poll_interval:g}s until {self.until_desc or 'condition'}, max {self.poll_deadline:g}s]"
        return s


@dataclasses.dataclass
class Scenario:
    id: str
    group: str  # the etcdctl command family, for the matrix
    title: str
    steps: list
    requires: tuple = ()  # (subcommand, flag) pairs etcdctl must support
    skip: Optional[str] = None

    def unsupported(self) -> Optional[str]:
        if self.skip:
            return self.skip
        for sub, flag in self.requires:
            if not etcdctl_supports(sub, flag):
                return (
                    f"etcdctl {etcdctl_version()} has no `{sub} {flag}` flag; "
                    f"the server side of this is left to the gRPC-level suite"
                )
        return None


_HELP_CACHE: dict = {}


def etcdctl_supports(sub: str, flag: str) -> bool:
    if sub not in _HELP_CACHE:
        r = subprocess.run([etcdctl_bin(), *sub.split(), "--help"], capture_output=True, env=clean_env(), timeout=10)
        _HELP_CACHE[sub] = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    return re.search(re.escape(flag) + r"\b", _HELP_CACHE[sub]) is not None


def etcdctl_version() -> str:
    try:
        r = subprocess.run([etcdctl_bin(), "version"], capture_output=True, env=clean_env(), timeout=10)
        m = re.search(r"etcdctl version:\s*(\S+)", r.stdout.decode())
        return m.group(1) if m else "?"
    except Exception:
        return "?"


# --------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------

_DURATION_RE = re.compile(r"\b\d+(\.\d+)?(ns|µs|us|ms|s|m|h)\b")
_TOOK_TEXT_RE = re.compile(r"took = \S+")
_FIELDS_IDS = {  # `-w fields` header lines
    re.compile(r'^"ClusterID" : \d+$'): '"ClusterID" : <cluster-id>',
    re.compile(r'^"MemberID" : \d+$'): '"MemberID" : <member-id>',
    re.compile(r'^"RaftTerm" : \d+$'): '"RaftTerm" : <raft-term>',
}
_URLISH_RE = re.compile(r"^(https?|unix|unixs)://[^\s/]+/?$")

STATUS_VOLATILE = ("dbSize", "dbSizeInUse", "raftIndex", "raftTerm", "raftAppliedIndex")


LONG = 200  # strings longer than this are abbreviated (with a hash, so still compared exactly)


def abbreviate(s: str) -> str:
    if len(s) <= LONG:
        return s
    digest = hashlib.sha256(s.encode("utf-8", errors="surrogatepass")).hexdigest()[:16]
    return f"{s[:60]}…[{len(s)} chars, sha256 {digest}]"


def show_bytes(b: bytes) -> str:
    """Readable form of a key/value: the UTF-8 text if it is valid UTF-8,
    else '<bytes:HEX>'; long ones abbreviated with a hash."""
    try:
        return abbreviate(b.decode("utf-8"))
    except UnicodeDecodeError:
        return abbreviate(f"<bytes:{b.hex()}>")


# -- lease IDs ---------------------------------------------------------------

LEASE_ID_FIELDS = ("ID", "id", "lease")  # JSON fields that carry a lease ID (grant/keep-alive, ttl/list, kvs)
_LEASE_PLACEHOLDER_RE = re.compile(r"\{lease(\d*)\}")
_HEX16_RE = re.compile(r"\b[0-9a-f]{16}\b")  # etcdctl prints lease IDs as %016x
_FIELDS_LEASE_RE = re.compile(r'^"(ID|Lease)" : (\d+)$')  # `-w fields` lines
_GRANT_TEXT_RE = re.compile(r"^lease ([0-9a-f]+) granted with TTL\(")
_REMAINING_TEXT_RE = re.compile(r"granted with TTL\((-?\d+)s\), remaining\((-?\d+)s\)")
_ATTACHED_KEYS_RE = re.compile(r"attached keys\(\[(.*)\]\)")

# Remaining TTL (`lease timetolive`) depends on timing. etcd truncates to whole
# seconds, so right after a grant/keep-alive it reports granted-1, never the
# full granted TTL. A value in [granted-REMAINING_SLACK, granted-1] (and >= 0)
# becomes a bucket label; anything else (granted itself, -1, milliseconds...)
# is kept verbatim and therefore shows up as a difference.
REMAINING_SLACK = 5


def remaining_bucket(ttl: int, granted: int):
    lo, hi = max(0, granted - REMAINING_SLACK), granted - 1
    if granted > 0 and lo <= ttl <= hi:
        return f"<remaining {lo}..{hi}s>"
    return ttl


class LeaseIds:
    """Lease IDs the server chose in this run.

    * Every `lease grant` step appends what it granted (None if the grant
      failed or printed no ID), so `{lease}` in a later step's args/stdin is
      the last grant's ID and `{leaseN}` the N-th grant step's ID, both in
      hex (what etcdctl expects on its command line).
    * In the compared output, each distinct granted ID becomes <LEASE1>,
      <LEASE2>, ... in order of first grant, in decimal (JSON `ID`/`id`/
      `lease`, `-w fields` `ID`/`Lease`) and %016x hex (text output). IDs
      that were never granted in this run (e.g. the scenario's made-up
      unknown IDs) and ID 0 are left as they are."""

    def __init__(self):
        self.granted: list = []
        self.names: dict = {}

    def capture(self, r: Result) -> None:
        lid = None
        if r.rc == 0:
            for line in r.stdout.decode(errors="replace").splitlines():
                line = line.strip()
                m = _GRANT_TEXT_RE.match(line)
                if m:
                    lid = int(m.group(1), 16)
                elif line.startswith("{"):
                    try:
                        v = json.loads(line).get("ID")
                        lid = v if isinstance(v, int) else None
                    except (ValueError, AttributeError):
                        pass
                elif line.startswith('"ID" : '):
                    m = _FIELDS_LEASE_RE.match(line)
                    lid = int(m.group(2)) if m else None
                if lid is not None:
                    break
        self.granted.append(lid if lid else None)
        if lid and lid not in self.names:
            self.names[lid] = f"<LEASE{len(self.names) + 1}>"

    def name(self, v) -> Optional[str]:
        return self.names.get(v) if isinstance(v, int) and not isinstance(v, bool) else None

    def fill(self, s: str) -> str:
        def sub(m):
            n = int(m.group(1)) if m.group(1) else len(self.granted)
            lid = self.granted[n - 1] if 1 <= n <= len(self.granted) else None
            return format(lid, "x") if lid else f"NO-LEASE-{m.group(1) or 'GRANTED'}"
        return _LEASE_PLACEHOLDER_RE.sub(sub, s)

    def fill_bytes(self, b: Optional[bytes]) -> Optional[bytes]:
        return None if b is None else self.fill(b.decode("utf-8", errors="surrogateescape")).encode(
            "utf-8", errors="surrogateescape")

    def text(self, s: str) -> str:
        if not self.names:
            return s
        s = _HEX16_RE.sub(lambda m: self.names.get(int(m.group(0), 16), m.group(0)), s)
        m = _FIELDS_LEASE_RE.match(s)
        if m and int(m.group(2)) in self.names:
            s = f'"{m.group(1)}" : {self.names[int(m.group(2))]}'
        return s


class Normalizer:
    """Turns raw etcdctl output of one server into a comparable structure.

    Replaced (naturally different between two servers):
      * header.cluster_id / header.member_id / header.raft_term -> placeholders
        (only where present: a field missing on one side is still a diff)
      * member IDs (JSON and hex/decimal in text) -> <member-id>
      * client port -> <client-port>; this member's peer URLs -> <peer-url>
      * endpoint status: version, dbSize, dbSizeInUse, raftIndex, raftTerm,
        raftAppliedIndex, leader (-> <member-id> if it is this member)
      * durations ("took")
      * etcdctl's own zap log lines: ts and target (client UUID) dropped
    Decoded (for readability, not hidden): base64 key/value fields.
    Everything else - revisions, kvs, count, more, succeeded, deleted, prev_kv,
    error text, exit codes - is compared verbatim.
    """

    def __init__(self, server: Server):
        self.server = server
        self.leases = LeaseIds()
        self.subs: list = []
        # peer URLs first (before the client-port rewrite could touch them)
        for u in server.peer_urls:
            if u and u != server.endpoint:
                self.subs.append((u, "<peer-url>"))
        self.subs.append((f"127.0.0.1:{server.client_port}", "127.0.0.1:<client-port>"))
        for ident, name in ((server.member_id, "<member-id>"), (server.cluster_id, "<cluster-id>")):
            if ident:
                self.subs.append((str(ident), name))
                self.subs.append((format(ident, "x"), name))

    # -- text --------------------------------------------------------------
    def text(self, s: str) -> str:
        s = self.leases.text(s)
        s = _REMAINING_TEXT_RE.sub(self._remaining_text, s)
        # `lease timetolive --keys`: etcd lists attached keys in map order
        s = _ATTACHED_KEYS_RE.sub(lambda m: f"attached keys([{' '.join(sorted(m.group(1).split(' ')))}])", s)
        for old, new in self.subs:
            s = s.replace(old, new)
        s = _TOOK_TEXT_RE.sub("took = <duration>", s)
        for rx, ph in _FIELDS_IDS.items():
            if rx.match(s):
                return ph
        return s

    @staticmethod
    def _remaining_text(m) -> str:
        b = remaining_bucket(int(m.group(2)), int(m.group(1)))
        return f"granted with TTL({m.group(1)}s), remaining({b if isinstance(b, str) else f'{b}s'})"

    # -- json --------------------------------------------------------------
    def json(self, obj, parent_key: str = ""):
        if isinstance(obj, dict):
            out = {}
            for k, v in obj.items():
                if k == "header" and isinstance(v, dict):
                    out[k] = self._header(v)
                elif k in ("key", "value", "range_end") and isinstance(v, str):
                    out[k] = self._b64(v)
                elif k == "Status" and isinstance(v, dict):
                    out[k] = self._status(v)
                elif k == "members" and isinstance(v, list):
                    out[k] = [self._member(m) for m in v]
                elif k == "took" and isinstance(v, str):
                    out[k] = "<duration>"
                elif k in ("cluster_id", "member_id", "raft_term") and isinstance(v, int):
                    # lease responses print the header flattened into the top level
                    out[k] = "<" + k.replace("_", "-") + ">"
                elif k in LEASE_ID_FIELDS and self.leases.name(v):
                    out[k] = self.leases.name(v)
                else:
                    out[k] = self.json(v, k)
            if isinstance(obj.get("granted-ttl"), int):  # lease timetolive
                if isinstance(obj.get("ttl"), int):
                    out["ttl"] = remaining_bucket(obj["ttl"], obj["granted-ttl"])
                if isinstance(obj.get("keys"), list):  # base64 keys, in map order on etcd
                    out["keys"] = sorted(self._b64(x) if isinstance(x, str) else repr(x) for x in obj["keys"])
            return out
        if isinstance(obj, list):
            return [self.json(x, parent_key) for x in obj]
        if isinstance(obj, str):
            return self.text(obj)
        return obj

    def _header(self, h: dict) -> dict:
        out = dict(h)
        for f, ph in (("cluster_id", "<cluster-id>"), ("member_id", "<member-id>"), ("raft_term", "<raft-term>")):
            if f in out and isinstance(out[f], int):
                out[f] = ph
        return out

    def _b64(self, v: str) -> str:
        try:
            return show_bytes(base64.b64decode(v, validate=True))
        except Exception:
            return f"<not-base64:{v}>"

    def _id(self, v, own) -> object:
        if isinstance(v, int):
            return "<member-id>" if (own is None or v == own) else "<other-member-id>"
        return v

    def _status(self, st: dict) -> dict:
        own = (st.get("header") or {}).get("member_id", self.server.member_id)
        out = self.json(st)
        if isinstance(st.get("version"), str) and st["version"]:
            out["version"] = "<version>"
        for f in STATUS_VOLATILE:
            if isinstance(st.get(f), int):
                out[f] = "<number>"
        if "leader" in st:
            out["leader"] = self._id(st["leader"], own)
        return out

    def _member(self, m):
        if not isinstance(m, dict):
            return self.json(m)
        out = self.json(m)
        if "ID" in m:
            out["ID"] = self._id(m["ID"], self.server.member_id)
        if isinstance(m.get("peerURLs"), list):
            # shape only: Cairn has no peer listener flags, so only "a list of
            # URLs of the same length" is comparable
            out["peerURLs"] = ["<peer-url>" if isinstance(u, str) and _URLISH_RE.match(u) else u for u in m["peerURLs"]]
        return out

    # -- whole outputs -----------------------------------------------------
    def lines(self, raw: bytes) -> list:
        entries = []
        for line in raw.decode("utf-8", errors="backslashreplace").split("\n"):
            s = line.strip()
            if s[:1] in ("{", "["):
                try:
                    entries.append(self.json(json.loads(s)))
                    continue
                except ValueError:
                    pass
            entries.append(abbreviate(self.text(line)))
        while entries and entries[-1] == "":
            entries.pop()
        return entries

    def stderr_lines(self, raw: bytes) -> list:
        out = []
        for e in self.lines(raw):
            if isinstance(e, dict) and "level" in e and "msg" in e:
                e = {k: v for k, v in e.items() if k != "ts"}
                if "target" in e:
                    e["target"] = "<target>"
            out.append(e)
        return out


def endpoint_status_text(entries: list) -> list:
    """`endpoint status` simple output: endpoint, ID, version, db size, is
    leader, is learner, raft term, raft index, raft applied index, errors."""
    out = []
    for e in entries:
        if isinstance(e, str) and e.count(", ") >= 8:
            f = e.split(", ")
            f[2] = "<version>"
            f[3] = "<db-size>"
            f[6] = f[7] = f[8] = "<number>"
            e = ", ".join(f)
        out.append(e)
    return out


def member_list_text(entries: list) -> list:
    """`member list` simple output: ID, Status, Name, Peer Addrs, Client Addrs,
    Is Learner. Peer addresses: shape only (count of URLs)."""
    out = []
    for e in entries:
        if isinstance(e, str) and e.count(", ") >= 5:
            f = e.split(", ")
            f[3] = ",".join("<peer-url>" if _URLISH_RE.match(u) else u for u in f[3].split(","))
            e = ", ".join(f)
        out.append(e)
    return out


# --------------------------------------------------------------------------
# running and comparing
# --------------------------------------------------------------------------


@dataclasses.dataclass
class StepRecord:
    command: str
    rc: Union[int, str]
    stdout: list
    stderr: list
    raw: Result
    condition: Optional[str] = None  # POLL steps only: "met" / "NOT met after Ns"

    def comparable(self) -> dict:
        d = {"exit_code": self.rc, "stdout": self.stdout, "stderr": self.stderr}
        if self.condition is not None:
            d["condition"] = self.condition
        return d


def _run_step(server: Server, step: Step, argv: list, stdin: Optional[bytes]):
    """Run one step; POLL steps are repeated until their condition holds or
    the deadline passes. -> (last Result, condition text or None)."""
    if step.until is None:
        return server.etcdctl(argv, stdin), None
    deadline = time.monotonic() + step.poll_deadline
    while True:
        r = server.etcdctl(argv, stdin)
        try:
            ok = bool(step.until(r))
        except Exception:
            ok = False
        if ok:
            return r, "met"
        if time.monotonic() >= deadline:
            return r, f"NOT met after {step.poll_deadline:g}s"
        time.sleep(step.poll_interval)


def run_scenario(server: Server, scenario: Scenario) -> list:
    norm = Normalizer(server)
    records = []
    for step in scenario.steps:
        if step.sleep is not None:
            time.sleep(step.sleep)
            r = Result([], None, 0, b"", b"", step.sleep)
            records.append(StepRecord(step.display(), 0, [], [], r))
            continue
        argv = [norm.leases.fill(a) for a in step.argv()]
        r, condition = _run_step(server, step, argv, norm.leases.fill_bytes(step.stdin))
        if step.grants_lease():
            norm.leases.capture(r)
        out = norm.lines(r.stdout)
        if step.normalize is not None:
            out = step.normalize(out)
        records.append(StepRecord(step.display(), r.rc, out, norm.stderr_lines(r.stderr), r, condition))
    return records


def step_expectation_problems(step: Step, rec: StepRecord) -> list:
    """What of a step's expected exit code, stderr and stdout its raw result does not show."""
    raw_out = rec.raw.stdout.decode(errors="backslashreplace")
    raw_err = rec.raw.stderr.decode(errors="backslashreplace")
    # etcd lists a lease's attached keys in Go map order: compare them as a set.
    raw_out = _ATTACHED_KEYS_RE.sub(lambda m: f"attached keys([{' '.join(sorted(m.group(1).split(' ')))}])", raw_out)
    why = []
    if step.expect_rc is not None and rec.rc != step.expect_rc:
        why.append(f"exit code {rec.rc!r}, expected {step.expect_rc}")
    if step.expect_stderr is not None and step.expect_stderr not in raw_err:
        why.append(f"stderr lacks {step.expect_stderr!r}")
    if step.expect_stdout is not None and step.expect_stdout not in raw_out:
        why.append(f"stdout lacks {step.expect_stdout!r}")
    return why


def check_expectations(scenario: Scenario, records: list) -> list:
    """Problems where the reference server did not behave as the scenario
    author expected (i.e. the scenario itself is wrong, or etcd changed)."""
    problems = []
    for i, (step, rec) in enumerate(zip(scenario.steps, records), 1):
        why = step_expectation_problems(step, rec)
        if step.until is not None and rec.condition != "met":
            why.append(f"condition ({step.until_desc or 'until'}) {rec.condition}")
        if why:
            problems.append(f"step {i}: {rec.command}\n  " + "; ".join(why) + "\n" + _indent(rec.raw.text(), 4))
    return problems


def _render(rec: StepRecord) -> list:
    return json.dumps(rec.comparable(), indent=2, ensure_ascii=False, sort_keys=True).splitlines()


def diff_transcripts(
    reference: list,
    candidate: list,
    ref_name: str = "etcd",
    cand_name: str = "cairn",
    max_lines: int = 60,
    max_steps: int = 8,
) -> Optional[str]:
    """None if equal, else a readable per-step unified diff."""
    chunks = []
    n_diff = 0
    first = None
    for i in range(max(len(reference), len(candidate))):
        a = reference[i] if i < len(reference) else None
        b = candidate[i] if i < len(candidate) else None
        if a is not None and b is not None and a.comparable() == b.comparable():
            continue
        n_diff += 1
        cmd = (a or b).command
        if first is None:
            first = f"step {i + 1}: {cmd}"
        d = difflib.unified_diff(
            _render(a) if a else [],
            _render(b) if b else [],
            fromfile=ref_name,
            tofile=cand_name,
            lineterm="",
            n=3,
        )
        d = list(d)
        if len(d) > max_lines:
            d = d[:max_lines] + [f"... ({len(d) - max_lines} more diff lines)"]
        chunks.append(f"── step {i + 1}: {cmd}\n" + "\n".join(d))
    if not n_diff:
        return None
    head = (
        f"{cand_name} differs from {ref_name} in {n_diff} of {len(reference)} step(s), first at {first}\n"
        f"(later steps may differ only as a consequence of earlier ones)\n"
    )
    if len(chunks) > max_steps:
        chunks = chunks[:max_steps] + [f"... and {len(chunks) - max_steps} more differing step(s)"]
    return head + "\n\n".join(chunks)


def _indent(s: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line for line in s.splitlines())


# --------------------------------------------------------------------------
# scenario-building helpers (used by the test modules)
# --------------------------------------------------------------------------


def _args(cmd) -> list:
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def _bytes(x) -> Optional[bytes]:
    if x is None or isinstance(x, bytes):
        return x
    return x.encode("utf-8")


def J(cmd, stdin=None, *, rc: Optional[int] = 0, err=None, out=None, normalize=None) -> Step:
    """A step run with `-w json`. cmd: shell-like string (shlex) or argv list."""
    return Step(_args(cmd), _bytes(stdin), True, rc, err, out, normalize)


def T(cmd, stdin=None, *, rc: Optional[int] = 0, err=None, out=None, normalize=None) -> Step:
    """A step run in etcdctl's default 'simple' text output."""
    return Step(_args(cmd), _bytes(stdin), False, rc, err, out, normalize)


def FAIL(cmd, message: str, rc: int = 1, stdin=None, json_out: bool = True) -> Step:
    """A step expected to fail (on etcd) with `message` in stderr."""
    return Step(_args(cmd), _bytes(stdin), json_out, rc, message, None, None)


def POLL(cmd, until: Callable, desc: str, *, json_out: bool = True, interval: float = 0.5,
         deadline: float = 15.0) -> Step:
    """A step re-run every `interval` s until until(Result) is true (max
    `deadline` s). The last attempt is recorded and compared, plus whether
    the condition was met (on etcd it must be)."""
    return Step(_args(cmd), None, json_out, 0, None, None, None,
                until=until, until_desc=desc, poll_interval=interval, poll_deadline=deadline)


def SLEEP(seconds: float) -> Step:
    """Wait (no command); recorded as an empty step."""
    return Step([], None, False, None, sleep=seconds)


def txn_input(compares=(), success=(), failure=()) -> str:
    """stdin for `etcdctl txn`: compares, blank, success ops, blank, failure
    ops, blank. (3.4 needs that final blank line, else 'Error: EOF', exit 3.)"""
    return "\n".join([*compares, "", *success, "", *failure, ""]) + "\n"
