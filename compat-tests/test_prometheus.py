"""A real Prometheus scrapes a 3-member Cairn cluster and a 3-member etcd 3.4 cluster.

- every query of every dashboard panel and every alert's signal (grafana/dashboards.py) returns
  data from Cairn, unless the panel is marked event-only (with its reason);
- every query of etcd's own dashboard (the etcd mixin shipped by Debian's etcd-server, rendered
  with jsonnet) that returns data for etcd returns data for Cairn;
- `promtool check rules` accepts Cairn's and etcd's alert rules, `promtool check config` the
  example configuration, and the generated files are up to date;
- when two members are killed, Cairn's CairnNoLeader and etcd's own etcdNoLeader alerts go
  pending (or firing) for the surviving Cairn member.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

import harness
from cluster_support import Cluster

ROOT = Path(__file__).resolve().parent.parent
GRAFANA = ROOT / "grafana"
MIXIN = Path("/usr/share/doc/etcd-server/etcd-mixin/mixin.libsonnet.gz")
CAIRN_JOB, ETCD_JOB = "cairn-etcd", "real-etcd"


def need(binary: str, package: str) -> str:
    path = shutil.which(binary)
    if not path:
        pytest.fail(f"{binary} not found: apt-get install {package}", pytrace=False)
    return path


def render_mixin(workdir: Path, field: str) -> object:
    need("jsonnet", "jsonnet")
    src = workdir / "mixin.libsonnet"
    src.write_bytes(gzip.decompress(MIXIN.read_bytes()))
    out = subprocess.run(["jsonnet", "-e", f'(import "{src}").{field}'], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


class Prometheus:
    def __init__(self, workdir: Path, jobs: dict, rule_files: list):
        self.port = harness.free_ports(1)[0]
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(r) for r in rule_files],
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": targets}]} for job, targets in jobs.items()
            ],
        }
        # JSON is YAML.
        self.config = workdir / "prometheus.yml"
        self.config.write_text(json.dumps(config, indent=2))
        self.log = open(workdir / "prometheus.log", "wb")
        self.proc = subprocess.Popen(
            [need("prometheus", "prometheus"), f"--config.file={self.config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def get(self, path: str, **params) -> dict:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as r:
            return json.loads(r.read())

    def query(self, expr: str) -> list:
        answer = self.get("/api/v1/query", query=expr)
        assert answer["status"] == "success", f"{expr}: {answer}"
        return answer["data"]["result"]

    def wait_targets_up(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                targets = self.get("/api/v1/targets")["data"]["activeTargets"]
                if sum(t["health"] == "up" for t in targets) >= count:
                    return
            except OSError:
                targets = []
            assert time.monotonic() < deadline, f"targets not up: {targets}"
            time.sleep(1)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def load(cluster: Cluster, redis_port: int | None) -> None:
    """Light traffic through every protocol Cairn serves (etcd answers what it can)."""
    ep = cluster.members[0].endpoint
    for i in range(20):
        assert cluster.etcdctl("put", f"svc/{i}", f"v{i}").rc == 0
    assert cluster.etcdctl("get", "--prefix", "svc/").rc == 0
    assert cluster.etcdctl("get", "--consistency=s", "svc/1").rc == 0
    txn = harness.run_etcdctl(cluster.endpoints(), ["txn"], stdin=b'value("svc/1") = "v1"\n\nput svc/t ok\n\n\n')
    assert txn.rc == 0 and b"SUCCESS" in txn.stdout, txn.text()
    assert cluster.etcdctl("del", "svc/19").rc == 0
    lease = cluster.etcdctl("lease", "grant", "60")
    assert lease.rc == 0, lease.text()
    lease_id = lease.stdout.split()[1]
    assert cluster.etcdctl("put", "--lease", lease_id, "svc/leased", "x").rc == 0
    assert cluster.etcdctl("lease", "keep-alive", "--once", lease_id).rc == 0
    watcher = subprocess.Popen([harness.etcdctl_bin(), "--endpoints", ep, "watch", "svc/w"], stdout=subprocess.PIPE,
                               env=harness.clean_env(), start_new_session=True)
    try:
        time.sleep(1)
        assert cluster.etcdctl("put", "svc/w", "changed").rc == 0
        assert watcher.stdout.readline().strip() == b"PUT"
    finally:
        watcher.kill()
        watcher.wait()
    rev = json.loads(cluster.etcdctl("-w", "json", "get", "svc/1").stdout)["header"]["revision"]
    assert cluster.etcdctl("compact", str(rev - 5)).rc == 0
    # A refused request (future revision) for the error panels.
    assert cluster.etcdctl("get", "svc/1", f"--rev={rev + 1000}").rc != 0
    urllib.request.urlopen(urllib.request.Request(f"{ep}/v3/kv/range", data=b'{"key":"c3ZjLzE="}'), timeout=10).read()
    try:
        urllib.request.urlopen(urllib.request.Request(f"{ep}/v2/keys/cfg", data=b"value=1", method="PUT",
                                                      headers={"Content-Type": "application/x-www-form-urlencoded"}), timeout=10).read()
    except urllib.error.HTTPError:
        pass  # etcd 3.4 serves v2 only with --enable-v2
    urllib.request.urlopen(f"{ep}/health", timeout=10).read()
    if redis_port:
        redis_cli = need("redis-cli", "redis-tools")
        for args in (["SET", "r1", "x"], ["GET", "r1"], ["NOSUCHCOMMAND"]):
            subprocess.run([redis_cli, "-p", str(redis_port), *args], capture_output=True, timeout=10)


@pytest.fixture
def clusters(request, tmp_path):
    redis_port = harness.free_ports(1)[0]
    cairn = Cluster("cairn", tmp_path / "cairn", 3)
    # One member serves RESP too, so the per-protocol panels see Redis traffic.
    cairn.members[0].extra = ["--listen-redis-urls", f"127.0.0.1:{redis_port}"]
    etcd = Cluster("etcd", tmp_path / "etcd", 3)
    request.addfinalizer(cairn.stop)
    request.addfinalizer(etcd.stop)
    cairn.start()
    etcd.start()
    return cairn, etcd, redis_port


def hostport(member) -> str:
    return f"127.0.0.1:{member.client_port}"


def test_generated_files_are_up_to_date_and_valid(tmp_path):
    check = subprocess.run([sys.executable, str(GRAFANA / "dashboards.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    promtool = need("promtool", "prometheus")
    rules = subprocess.run([promtool, "check", "rules", str(GRAFANA / "alerts.yml")], capture_output=True, text=True)
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "9 rules found" in rules.stdout
    config = subprocess.run([promtool, "check", "config", str(GRAFANA / "prometheus.yml")], capture_output=True, text=True)
    assert config.returncode == 0, config.stdout + config.stderr
    etcd_rules = tmp_path / "etcd-alerts.json"
    etcd_rules.write_text(json.dumps(render_mixin(tmp_path, "prometheusAlerts")))
    checked = subprocess.run([promtool, "check", "rules", str(etcd_rules)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    for d in (GRAFANA / "dashboards").glob("*.json"):
        dashboard = json.loads(d.read_text())
        assert dashboard["panels"] and all(p["targets"] for p in dashboard["panels"]), d


def test_prometheus_scrapes_cairn_and_every_query_answers(clusters, tmp_path):
    cairn, etcd, redis_port = clusters
    etcd_rules = tmp_path / "etcd-alerts.json"
    etcd_rules.write_text(json.dumps(render_mixin(tmp_path, "prometheusAlerts")))
    prom = Prometheus(
        tmp_path,
        {CAIRN_JOB: [hostport(m) for m in cairn.members], ETCD_JOB: [hostport(m) for m in etcd.members]},
        [GRAFANA / "alerts.yml", etcd_rules],
    )
    try:
        prom.wait_targets_up(6)
        load(cairn, redis_port)
        load(etcd, None)
        # A few scrapes after the load, so rate() has two samples on each side of it.
        time.sleep(8)
        queries = json.loads(subprocess.run([sys.executable, str(GRAFANA / "dashboards.py"), "--queries"],
                                            capture_output=True, text=True, check=True).stdout)
        assert len(queries) >= 60
        missing, event_only_answered = [], 0
        for qd in queries:
            expr = qd["expr"].replace("$job", CAIRN_JOB).replace("$__rate_interval", "1m")
            result = prom.query(expr)
            if not result and not qd["event_only"]:
                missing.append(f"{qd['source']}: {expr}")
            event_only_answered += bool(result and qd["event_only"])
        assert not missing, "queries without data from Cairn:\n" + "\n".join(missing)

        # etcd's own dashboard: whatever answers for etcd answers for Cairn.
        dashboard = render_mixin(tmp_path, 'grafanaDashboards["etcd.json"]')
        mixin_exprs = [t["expr"] for row in dashboard["rows"] for p in row["panels"] for t in p.get("targets", [])]
        assert len(mixin_exprs) >= 15
        differ = []
        for expr in mixin_exprs:
            theirs = prom.query(expr.replace("$cluster", ETCD_JOB))
            ours = prom.query(expr.replace("$cluster", CAIRN_JOB))
            if theirs and not ours:
                differ.append(expr)
        assert not differ, "etcd's dashboard queries answered for etcd but not for Cairn:\n" + "\n".join(differ)

        # A member that loses its quorum: Cairn's alert and etcd's own fire for it.
        survivor = cairn.members[0]
        for m in cairn.members[1:]:
            m.kill9()
        deadline = time.monotonic() + 60
        wanted = {"CairnNoLeader", "etcdNoLeader", "CairnMemberDown"}
        while True:
            alerts = prom.get("/api/v1/alerts")["data"]["alerts"]
            seen = {
                a["labels"]["alertname"]
                for a in alerts
                if a["labels"].get("job") == CAIRN_JOB and a["state"] in ("pending", "firing")
            }
            no_leader_on_survivor = any(
                a["labels"]["alertname"] == "CairnNoLeader" and a["labels"].get("instance") == hostport(survivor) for a in alerts
            )
            if wanted <= seen and no_leader_on_survivor:
                break
            assert time.monotonic() < deadline, f"alerts for {CAIRN_JOB}: {sorted(seen)}; all: {alerts}"
            time.sleep(1)
        # Nothing about the healthy etcd cluster.
        assert not [a for a in alerts if a["labels"].get("job") == ETCD_JOB and a["labels"]["alertname"] == "etcdNoLeader"]
    finally:
        prom.stop()
