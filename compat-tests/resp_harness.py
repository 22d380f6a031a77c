"""RESP helpers for the test_resp_*.py files: a real redis-server on a free port, a raw RESP
client that returns whole reply frames as bytes (so replies can be compared byte for byte),
and fixtures for a Cairn and a redis-server started per test.

Cairn's RESP port comes from harness.CairnServer (a fresh free port per start).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Optional

import pytest

import harness


def redis_server_bin() -> str:
    return os.environ.get("REDIS_SERVER_BIN", "redis-server")


def require(tool: str) -> str:
    path = shutil.which(tool)
    if not path:
        pytest.fail(f"{tool} not found on PATH -- apt-get install redis-server redis-tools", pytrace=False)
    return path


class RedisServer:
    """A real redis-server 7 with no persistence, in its own process group."""

    def __init__(self, workdir: Path):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None

    @property
    def addr(self) -> tuple:
        return ("127.0.0.1", self.port)

    def start(self) -> "RedisServer":
        binary = require(redis_server_bin())
        for _ in range(3):
            self.port = harness.free_ports(1)[0]
            log = open(self.workdir / "redis.log", "wb")
            self.proc = subprocess.Popen(
                [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 "--dir", str(self.workdir), "--notify-keyspace-events", "KEA"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    with socket.create_connection(self.addr, timeout=1) as s:
                        s.sendall(b"PING\r\n")
                        if s.recv(16).startswith(b"+PONG"):
                            return self
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError(f"redis-server did not start; log:\n{(self.workdir / 'redis.log').read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait(timeout=10)
        self.proc = None


def encode(args) -> bytes:
    """A command as a RESP array of bulk strings."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def _frame_end(buf: bytes, pos: int = 0) -> Optional[int]:
    """Index just past the RESP2/RESP3 frame starting at pos, or None if incomplete."""
    if pos >= len(buf):
        return None
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return None
    kind, head = buf[pos:pos + 1], buf[pos + 1:nl]
    after = nl + 2
    if kind in (b"+", b"-", b":", b"_", b",", b"#", b"("):
        return after
    if kind in (b"$", b"=", b"!"):
        n = int(head)
        if n < 0:
            return after
        end = after + n + 2
        return end if len(buf) >= end else None
    if kind in (b"*", b">", b"~", b"%", b"|"):
        n = int(head)
        if n < 0:
            return after
        if kind in (b"%", b"|"):
            n *= 2
        p = after
        for _ in range(n):
            p = _frame_end(buf, p)
            if p is None:
                return None
        return p
    raise ValueError(f"not a RESP frame: {buf[pos:pos + 40]!r}")


class RawClient:
    """Sends raw bytes, reads whole reply frames (bytes)."""

    def __init__(self, addr: tuple, timeout: float = 30):
        self.sock = socket.create_connection(addr, timeout=timeout)
        self.buf = b""

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self) -> bytes:
        while True:
            end = _frame_end(self.buf)
            if end is not None:
                f, self.buf = self.buf[:end], self.buf[end:]
                return f
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"closed while waiting for a reply (have {self.buf!r})")
            self.buf += chunk

    def cmd(self, *args) -> bytes:
        self.send(encode(args))
        return self.frame()

    def until_closed(self) -> bytes:
        out, self.buf = self.buf, b""
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                return out
            out += chunk


@pytest.fixture
def redis_server(tmp_path, request):
    srv = RedisServer(tmp_path / "redis")
    request.addfinalizer(srv.stop)
    return srv.start()


@pytest.fixture
def cairn(start_server):
    """A fresh Cairn (its RESP address is .redis_addr)."""
    if harness.self_check_mode():
        pytest.skip("RESP tests need Cairn (COMPAT_SELF_CHECK runs etcd)")
    return start_server("cairn")
