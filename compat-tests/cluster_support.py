"""Multi-member clusters of real etcd or Cairn for the cluster compat tests.

Each member is a process in its own process group, on free 127.0.0.1 ports, in
a temp dir; ``Cluster.stop()`` (registered as a finalizer by the fixture) always
stops every member. The same etcd flags start both servers, so a scenario runs
unchanged against either side.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

import harness


class Member:
    def __init__(self, kind: str, name: str, workdir: Path, client_port: int, peer_port: int):
        self.kind, self.name = kind, name
        self.client_port, self.peer_port = client_port, peer_port
        self.data_dir = workdir / f"{name}.data"
        self.log_path = workdir / f"{name}.log"
        self.proc: Optional[subprocess.Popen] = None
        self.extra: list = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def command(self, initial_cluster: str, state: str) -> list:
        binary = (
            harness.require_binary(harness.etcd_bin(), "etcd", "apt-get install etcd-server")
            if self.kind == "etcd"
            else harness.require_binary(harness.cairn_bin(), "Cairn", "cargo build --workspace --bins")
        )
        return [
            binary,
            "--name", self.name,
            "--data-dir", str(self.data_dir),
            "--listen-client-urls", self.endpoint,
            "--advertise-client-urls", self.endpoint,
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", initial_cluster,
            "--initial-cluster-state", state,
            "--initial-cluster-token", "compat-cluster",
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            # Members share one machine: Redis's 6379 would be taken by the first.
            *(["--listen-redis-urls", "off"] if self.kind == "cairn" else []),
            *self.extra,
        ]

    def start(self, initial_cluster: str, state: str = "new") -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.command(initial_cluster, state),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=harness.clean_env(),
            )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        self.kill9()

    def etcdctl(self, *args: str, timeout: float = 20) -> harness.Result:
        return harness.run_etcdctl(self.endpoint, ["--command-timeout=10s", *args], timeout=timeout)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"


class Cluster:
    def __init__(self, kind: str, workdir: Path, size: int, extra: Optional[list] = None):
        self.kind, self.workdir = kind, workdir
        workdir.mkdir(parents=True, exist_ok=True)
        ports = harness.free_ports(2 * size)
        self.members = [
            Member(kind, f"m{i + 1}", workdir, ports[2 * i], ports[2 * i + 1]) for i in range(size)
        ]
        for m in self.members:
            m.extra = list(extra or [])

    def initial_cluster(self, members=None) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in (members or self.members))

    def start(self) -> "Cluster":
        ic = self.initial_cluster()
        for m in self.members:
            m.start(ic)
        self.wait_healthy()
        return self

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members if m.alive())

    def etcdctl(self, *args: str, timeout: float = 30) -> harness.Result:
        return harness.run_etcdctl(self.endpoints(), ["--command-timeout=10s", *args], timeout=timeout)

    def status(self, member: Member) -> Optional[dict]:
        r = member.etcdctl("-w", "json", "endpoint", "status", timeout=10)
        if r.rc != 0:
            return None
        try:
            return json.loads(r.stdout)[0]["Status"]
        except (ValueError, KeyError, IndexError):
            return None

    def leader(self) -> Optional[Member]:
        for m in self.members:
            if not m.alive():
                continue
            s = self.status(m)
            if s and s.get("leader") and s["leader"] == s["header"]["member_id"]:
                return m
        return None

    def member_id(self, member: Member) -> int:
        s = self.status(member)
        assert s, f"{member.name} answers no status:\n{member.log_tail()}"
        return s["header"]["member_id"]

    def wait_healthy(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            live = [m for m in self.members if m.alive()]
            statuses = [self.status(m) for m in live]
            leaders = {s.get("leader") for s in statuses if s}
            live_ids = {s["header"]["member_id"] for s in statuses if s}
            # One leader, agreed by every live member, and itself alive (a member's view of a
            # killed leader lingers until the next election).
            if statuses and all(statuses) and len(leaders) == 1 and leaders <= live_ids:
                return
            for m in self.members:
                if m.proc is not None and m.proc.poll() is not None:
                    raise AssertionError(f"{m.name} exited:\n{m.log_tail()}")
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {m.name}\n{m.log_tail()}" for m in self.members)
                raise AssertionError(f"{self.kind} cluster not healthy after {timeout}s:\n{logs}")
            time.sleep(0.1)
