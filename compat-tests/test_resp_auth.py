"""RESP with auth: redis-cli and redis-py against Cairn with etcd auth enabled, and the same
redis-cli session against a real redis-server 7 whose ACL gives `alice` the same rights
(read and write keys under `/app/`). Replies must match: NOAUTH before AUTH, WRONGPASS for a
bad password, NOPERM outside the user's keys, ACL WHOAMI.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time

import pytest

import harness
from resp_harness import cairn, require  # noqa: F401  (fixtures)

SESSION = [
    ["GET", "/app/x"],
    ["AUTH", "alice", "wrong"],
    ["AUTH", "nobody", "alicepw"],
    ["AUTH", "alice", "alicepw"],
    ["ACL", "WHOAMI"],
    ["SET", "/app/x", "1"],
    ["GET", "/app/x"],
    ["INCR", "/app/x"],
    ["SET", "/other", "1"],
    ["GET", "/other"],
    ["MGET", "/app/x", "/other"],
    ["DEL", "/other"],
]


def session(addr: tuple) -> list:
    """One connection (redis-cli reading commands from stdin), the replies in order."""
    binary = require("redis-cli")
    stdin = "\n".join(" ".join(a) for a in SESSION).encode() + b"\n"
    p = subprocess.run([binary, "-h", addr[0], "-p", str(addr[1])], input=stdin, capture_output=True, timeout=60)
    return [line for line in p.stdout.decode(errors="replace").splitlines() if line]


@pytest.fixture
def redis_acl(tmp_path, request):
    """redis-server 7 with a password on the default user and an ACL user alice on ~/app/*."""
    binary = require("redis-server")
    port = harness.free_ports(1)[0]
    log = open(tmp_path / "redis.log", "wb")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path), "--requirepass", "defaultpw", "--user", "alice", "on", ">alicepw", "~/app/*", "+@all"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
    )
    request.addfinalizer(lambda: (os.killpg(proc.pid, signal.SIGKILL), proc.wait(timeout=10)))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                    return ("127.0.0.1", port)
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"redis-server did not start: {(tmp_path / 'redis.log').read_text(errors='replace')}")


def enable_auth(srv: harness.Server) -> None:
    for args in (["user", "add", "root:rootpw"], ["role", "add", "root"], ["user", "grant-role", "root", "root"],
                 ["user", "add", "alice:alicepw"], ["role", "add", "app"],
                 ["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"],
                 ["user", "grant-role", "alice", "app"], ["auth", "enable"]):
        r = srv.etcdctl(args)
        assert r.rc == 0, (args, r.stderr)


def test_redis_cli_sees_redis_acl_replies(redis_acl, cairn):  # noqa: F811
    want = session(redis_acl)
    enable_auth(cairn)
    got = session(cairn.redis_addr)
    assert got == want
    # The expectations themselves, so both cannot be wrong alike.
    assert want[0].startswith("NOAUTH") and want[1].startswith("WRONGPASS") and want[3] == "OK", want
    assert want[4] == "alice" and want[8].startswith("NOPERM")


def test_redis_py_logs_in_with_username_and_password(cairn):  # noqa: F811
    redis = pytest.importorskip("redis")
    enable_auth(cairn)
    host, port = cairn.redis_addr
    anonymous = redis.Redis(host=host, port=port)
    with pytest.raises(redis.exceptions.AuthenticationError):
        anonymous.get("/app/x")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host=host, port=port, username="alice", password="nope").ping()
    for protocol in (2, 3):
        alice = redis.Redis(host=host, port=port, username="alice", password="alicepw", protocol=protocol)
        assert alice.set("/app/k", "v") is True
        assert alice.get("/app/k") == b"v"
        assert alice.acl_whoami() in (b"alice", "alice")
        with pytest.raises(redis.exceptions.NoPermissionError):
            alice.set("/other", "v")
    # What alice wrote through RESP, root reads through etcd's API.
    r = cairn.etcdctl(["--user", "root:rootpw", "get", "/app/k", "--print-value-only"])
    assert r.rc == 0 and r.stdout.decode().strip() == "v"
