"""Lock worker for test_recipes.py, run as the command of `etcdctl lock`:

    etcdctl lock NAME -- python3 recipes_worker.py ENDPOINT COUNTER_KEY LOG ID SLEEP

Appends "enter ID T KEY REV" to LOG (T: CLOCK_MONOTONIC, the same clock for
every process of this machine; KEY/REV: etcdctl's ETCD_LOCK_KEY and
ETCD_LOCK_REV), reads the counter with etcdctl, sleeps SLEEP s, writes
counter+1, appends "exit ID T KEY REV". Imports nothing heavy, so it starts
in a few milliseconds while the lock is held.
"""

import os
import subprocess
import sys
import time


def etcdctl(endpoint: str, *args) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ETCDCTL_", "ETCD_"))}
    env["ETCDCTL_API"] = "3"
    p = subprocess.run([os.environ.get("ETCDCTL_BIN", "etcdctl"), "--endpoints", endpoint, *args],
                       capture_output=True, env=env, timeout=30)
    if p.returncode != 0:
        raise SystemExit(f"etcdctl {args} failed: rc={p.returncode} {p.stderr.decode(errors='replace')}")
    return p.stdout.decode()


def log(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def main(endpoint, counter_key, logfile, ident, sleep) -> None:
    key, rev = os.environ.get("ETCD_LOCK_KEY", "?"), os.environ.get("ETCD_LOCK_REV", "?")
    log(logfile, f"enter {ident} {time.monotonic():.6f} {key} {rev}")
    raw = etcdctl(endpoint, "get", "--print-value-only", counter_key).strip()
    n = int(raw) if raw else 0
    time.sleep(float(sleep))
    etcdctl(endpoint, "put", counter_key, str(n + 1))
    log(logfile, f"exit {ident} {time.monotonic():.6f} {key} {rev}")


if __name__ == "__main__":
    main(*sys.argv[1:])
