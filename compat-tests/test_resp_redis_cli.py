"""redis-cli (one-shot and interactive via stdin) and redis-benchmark against Cairn.

redis-cli's output for the same sessions is compared with its output against a real
redis-server 7; redis-benchmark must finish every test without an error reply.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from resp_harness import cairn, redis_server, require  # noqa: F401  (fixtures)

BENCH_N = int(os.environ.get("COMPAT_REDIS_BENCH_N", "100000"))


def cli(addr, *args, stdin: bytes = b"", timeout: float = 60) -> tuple:
    binary = require("redis-cli")
    p = subprocess.run([binary, "-h", addr[0], "-p", str(addr[1]), *args], input=stdin,
                       capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


ONE_SHOT = [
    ["SET", "greeting", "hello"], ["GET", "greeting"], ["GET", "missing"], ["SET", "n", "10"], ["INCR", "n"],
    ["INCRBY", "n", "x"], ["MSET", "a", "1", "b", "2"], ["MGET", "a", "b", "c"], ["EXISTS", "a", "b", "c"],
    ["APPEND", "greeting", " world"], ["GET", "greeting"], ["STRLEN", "greeting"], ["TYPE", "greeting"],
    ["DEL", "a", "b"], ["TTL", "greeting"], ["PING"], ["ECHO", "hi there"], ["NOSUCH", "x"], ["GET"],
    ["SET", "k", "v", "NX", "XX"], ["SETNX", "greeting", "x"], ["GETDEL", "n"], ["DBSIZE"],
]

SESSION = b"""set counter 1
incr counter
incrby counter 5
get counter
multi
incr counter
set other "two words"
exec
get other
getset other 3
mget counter other missing
del counter other
exists counter
set "quoted key" 'single quoted'
get "quoted key"
select 0
nosuchcommand a b
ping
"""


def test_one_shot_commands_print_what_redis_prints(redis_server, cairn):  # noqa: F811
    for args in ONE_SHOT:
        want = cli(redis_server.addr, *args)
        got = cli(cairn.redis_addr, *args)
        assert got == want, f"redis-cli {' '.join(args)}"


def test_interactive_session_via_stdin_matches_redis(redis_server, cairn):  # noqa: F811
    want = cli(redis_server.addr, stdin=SESSION)
    got = cli(cairn.redis_addr, stdin=SESSION)
    assert want[0] == 0 and "3" in want[1], want
    assert got == want


def test_resp3_session_and_scan_mode(redis_server, cairn):  # noqa: F811
    session = b"set x 1\nget x\nget nope\nhello 3\nmget x nope\n"
    want = cli(redis_server.addr, "-3", stdin=session)
    got = cli(cairn.redis_addr, "-3", stdin=session)
    # HELLO shows the server version and client id, which differ by design.
    def strip(out: str) -> str:
        return "\n".join(l for l in out.splitlines() if not l.startswith(("version ", "id ")))

    assert got[0] == want[0] == 0
    assert strip(got[1]) == strip(want[1])
    for addr in (redis_server.addr, cairn.redis_addr):
        cli(addr, "MSET", "user:1", "a", "user:2", "b", "other", "c")
    want = sorted(cli(redis_server.addr, "--scan", "--pattern", "user:*")[1].split())
    got = sorted(cli(cairn.redis_addr, "--scan", "--pattern", "user:*")[1].split())
    assert want == ["user:1", "user:2"]
    assert got == want


def test_pipe_mode_mass_insertion(cairn):  # noqa: F811
    payload = b"".join(b"SET pipe:%d %d\r\n" % (i, i) for i in range(2000))
    rc, out, err = cli(cairn.redis_addr, "--pipe", stdin=payload, timeout=300)
    assert rc == 0, (out, err)
    assert "errors: 0, replies: 2000" in out, out
    assert cli(cairn.redis_addr, "GET", "pipe:1999")[1] == "1999\n"
    assert cli(cairn.redis_addr, "DBSIZE")[1] == "2000\n"


def test_redis_benchmark_completes_without_errors(cairn):  # noqa: F811
    binary = require("redis-benchmark")
    host, port = cairn.redis_addr
    p = subprocess.run(
        [binary, "-h", host, "-p", str(port), "-t", "set,get,incr,mset", "-n", str(BENCH_N), "--csv"],
        capture_output=True, timeout=1800,
    )
    out = p.stdout.decode(errors="replace")
    assert p.returncode == 0, (out, p.stderr)
    rows = [l for l in out.splitlines() if l.startswith('"') and not l.startswith('"test"')]
    tests = [r.split(",")[0].strip('"') for r in rows]
    assert tests == ["SET", "GET", "INCR", "MSET (10 keys)"], out
    assert "error" not in out.lower(), out
    # Every INCR of the benchmark landed on its one key.
    assert cli(cairn.redis_addr, "GET", "counter:__rand_int__")[1] == f"{BENCH_N}\n"


def test_interactive_terminal_session(cairn):  # noqa: F811
    """redis-cli on a terminal (a pty): line editing, typed commands, `help` (redis-cli asks
    the server for COMMAND DOCS and falls back to its own help table)."""
    import pty
    import select
    import time

    host, port = cairn.redis_addr
    pid, fd = pty.fork()
    if pid == 0:  # the child: redis-cli on the pty
        os.execvp(require("redis-cli"), ["redis-cli", "-h", host, "-p", str(port)])
    out = b""

    def pump(seconds):
        nonlocal out
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:
                return
            out += data
            if b"\x1b[6n" in data:  # linenoise asks where the cursor is
                os.write(fd, b"\x1b[1;1R")

    try:
        pump(2)
        for line in [b"set tty 41", b"incr tty", b"help set", b"quit"]:
            os.write(fd, line + b"\r")
            pump(2)
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert "(integer) 42" in text, text[-2000:]
    assert "summary:" in text and "Set the string value of a key" in text, text[-2000:]
    assert cli(cairn.redis_addr, "GET", "tty")[1] == "42\n"
