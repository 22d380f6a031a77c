#!/usr/bin/env python3
"""Does a server answer a put before its log's fsync has returned? Watched with strace.

Why: a benchmark of writes only compares like with like when both servers make a write durable
before acknowledging it. This check watches a running one-node server under `strace` while
`cairn-bench` sends puts one at a time, and for every fdatasync of the server's Raft log
(`member/wal/`) that follows a write to it, looks for a response (an HTTP/2 HEADERS frame) written
to a client connection after that log write and before the fdatasync returned. A server that
waits for its fsync writes none; one that answers from memory while the disk is still busy does.

Usage (a one-node server of each binary is started on free 127.0.0.1 ports, then stopped):
  python3 scripts/ack_order.py --server cairn=target/release/cairn --server etcd34=/usr/bin/etcd
bench-compare.py runs the same check on its one-node servers (unless `--skip ack-order`).
"""

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# `PID HH:MM:SS.ffffff name(args) = ret <secs>`, or split in `<unfinished ...>` and
# `<... name resumed>` halves when another thread's call comes in between.
LINE = re.compile(r"^(\d+)\s+(\d+):(\d+):(\d+\.\d+)\s+(.*)$")
DURATION = re.compile(r"<(\d+\.\d+)>\s*$")
FD = re.compile(r"^\w+\((\d+)<(.*?)>[,) ]")
BYTES = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')


def _secs(h, m, s):
    return int(h) * 3600 + int(m) * 60 + float(s)


def _unescape(s):
    return re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), s.encode())


def parse_calls(lines):
    """Every finished syscall as (start, end, name, fd path, bytes written or b"")."""
    pending = {}
    calls = []
    for line in lines:
        m = LINE.match(line)
        if not m:
            continue
        pid, rest = m.group(1), m.group(5)
        t = _secs(m.group(2), m.group(3), m.group(4))
        if rest.startswith("<... "):
            name = rest[5:].split(" ", 1)[0]
            started = pending.pop((pid, name), None)
            d = DURATION.search(rest)
            if started and d:
                # A read's bytes come with its second half.
                data = started[2] + b"".join(bytes.fromhex(s.replace("\\x", "")) for s in BYTES.findall(rest))
                calls.append((started[0], started[0] + float(d.group(1)), name, started[1], data))
            continue
        name = rest.split("(", 1)[0]
        fd = FD.match(rest)
        # -xx writes paths in hex escapes too.
        path = _unescape(fd.group(2)).decode(errors="replace") if fd else ""
        data = b"".join(bytes.fromhex(s.replace("\\x", "")) for s in BYTES.findall(rest))
        if rest.endswith("<unfinished ...>"):
            pending[(pid, name)] = (t, path, data)
            continue
        d = DURATION.search(rest)
        if d:
            calls.append((t, t + float(d.group(1)), name, path, data))
    calls.sort()
    return calls


def headers_streams(data):
    """The stream ids of the HTTP/2 HEADERS frames in `data`: the frames one read or write
    carried, where a HEADERS frame starts a request or an answer. The client's connection
    preface, which is not a frame, is skipped."""
    if data.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"):
        data = data[24:]
    at, streams = 0, []
    while at + 9 <= len(data):
        length = int.from_bytes(data[at:at + 3], "big")
        if data[at + 3] == 0x1:
            streams.append(int.from_bytes(data[at + 5:at + 9], "big") & 0x7FFFFFFF)
        at += 9 + length
    return streams


def early_answers(calls, client_port):
    """Puts answered before their log entry was on disk, with one client sending one put at a
    time. Put i's entry is written to the log after its request was read (the read that
    returned its HEADERS frame) and, by a durable server, synced before the answer: so the
    answer waited for the disk only when an fdatasync of the log that started after the first
    log write since the request returned before the answer. No durable server (entry written,
    synced, then answered) is counted as early; one that answers from memory escapes the count
    only when another write's fsync happens to fit that pattern. Returns (answers, early, worst
    ms by which an answer preceded the end of an fsync in progress)."""
    client = f":{client_port}->"
    wal_writes = [c[0] for c in calls if c[2] in ("write", "pwrite64", "writev", "pwritev") and "/member/wal/" in c[3]]
    syncs = [(c[0], c[1]) for c in calls if c[2] in ("fdatasync", "fsync") and "/member/wal/" in c[3]]
    requested, answered = {}, {}
    for c in calls:
        if client not in c[3]:
            continue
        if c[2] in ("read", "recvfrom", "recvmsg", "readv"):
            for stream in headers_streams(c[4]):
                requested.setdefault(stream, c[1])
        elif c[2] in ("write", "writev", "sendmsg", "sendto"):
            for stream in headers_streams(c[4]):
                answered.setdefault(stream, c[0])
    early, worst = 0, 0.0
    for stream, t in answered.items():
        r = requested.get(stream)
        if r is None:
            raise RuntimeError(f"an answer on stream {stream} without a request read before it")
        writes = [w for w in wal_writes if r < w < t]
        durable = bool(writes) and any(start > writes[0] and end < t for start, end in syncs)
        if not durable:
            early += 1
            pending = [end - t for start, end in syncs if start < t < end]
            worst = max([worst] + [x * 1000 for x in pending])
    return len(answered), early, worst


def measure(pid, client_port, bench_bin, puts=50, workdir=None):
    """Watches server `pid` while `puts` puts go one at a time to `client_port`."""
    workdir = workdir or tempfile.mkdtemp(prefix="ack-order-")
    trace = os.path.join(workdir, f"strace-{pid}.txt")
    with open(trace + ".log", "w") as errors:  # strace's own messages
        strace = subprocess.Popen(
            ["strace", "-f", "-tt", "-T", "-yy", "-xx", "-s", "65536", "-o", trace, "-p", str(pid),
             "-e", "trace=read,readv,recvfrom,recvmsg,write,writev,pwrite64,pwritev,sendmsg,sendto,fdatasync,fsync",
             "-e", "signal=none"],
            stdout=subprocess.DEVNULL, stderr=errors)
    # strace says "Process N attached" once per thread; give it the moment it needs.
    time.sleep(1.0)
    try:
        r = subprocess.run([bench_bin, "--endpoints", f"127.0.0.1:{client_port}", "--clients", "1",
                            "--total", str(puts), "--no-progress", "put"], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"cairn-bench failed: {r.stderr.strip()}")
        time.sleep(0.3)
    finally:
        strace.send_signal(signal.SIGINT)
        try:
            strace.wait(10)
        except subprocess.TimeoutExpired:
            strace.kill()
            strace.wait()
    with open(trace) as f:
        answers, early, worst = early_answers(parse_calls(f), client_port)
    # Each put gets one answer; another count means the trace was not understood.
    if answers != puts:
        raise RuntimeError(f"{answers} answers to {puts} puts seen in {trace}")
    return {"puts": puts, "answered_before_on_disk": early, "worst_ms_before_fsync_end": round(worst, 3)}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", action="append", required=True, help="name=binary (cairn or etcd flags)")
    ap.add_argument("--puts", type=int, default=50)
    ap.add_argument("--bench", default=os.path.join(ROOT, "target", "release", "cairn-bench"))
    ap.add_argument("--data-root", default=os.path.join(ROOT, "target"), help="where the data dirs go (a real disk)")
    a = ap.parse_args()
    if not shutil.which("strace"):
        sys.exit("strace is not installed (apt-get install strace)")
    for spec in a.server:
        name, binary = spec.split("=", 1)
        d = tempfile.mkdtemp(prefix=f"ack-order-{name}-", dir=a.data_root)
        client, peer = _free_port(), _free_port()
        cmd = [binary, "--data-dir", os.path.join(d, "data"),
               "--listen-client-urls", f"http://127.0.0.1:{client}", "--advertise-client-urls", f"http://127.0.0.1:{client}",
               "--listen-peer-urls", f"http://127.0.0.1:{peer}", "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
               "--initial-cluster", f"default=http://127.0.0.1:{peer}"]
        with open(os.path.join(d, "server.log"), "wb") as logf:
            p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", client)) == 0:
                        break
                if p.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"{name}: server did not start (see {d}/server.log)")
                time.sleep(0.05)
            time.sleep(1.0)  # elected, ready for writes
            print(f"{name}: {measure(p.pid, client, a.bench, a.puts, d)}")
            shutil.rmtree(d, ignore_errors=True)  # kept, with the trace, when the check failed
        finally:
            p.terminate()
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()


if __name__ == "__main__":
    main()
