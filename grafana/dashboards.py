#!/usr/bin/env python3
"""The source of Cairn's Grafana dashboards and Prometheus alert rules.

Every panel and every alert is declared once below; this script writes
grafana/dashboards/*.json and grafana/alerts.yml from it. Edit this file, never the
generated ones, then run:

    python3 grafana/dashboards.py            # rewrite the generated files
    python3 grafana/dashboards.py --check    # exit 1 if they are not up to date (CI runs it)
    python3 grafana/dashboards.py --queries  # every PromQL query as JSON (for the tests)

Queries use etcd's metric names wherever etcd has them, so the same panels also chart a real
etcd cluster. `$job` selects the Prometheus job (a dashboard variable); alerts match jobs named
like `.*cairn.*`. A query marked `event_only` charts something that only exists once it happened
(a defragmentation, a failed send); the tests accept no data for it and say why.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
JOB = 'job=~"$job"'
ALERT_JOB = 'job=~".*cairn.*"'


def q(expr: str, legend: str = "", event_only: str = "") -> dict:
    return {"expr": expr, "legend": legend, "event_only": event_only}


def panel(title: str, unit: str, *queries: dict, kind: str = "timeseries", description: str = "") -> dict:
    return {"title": title, "unit": unit, "queries": list(queries), "kind": kind, "description": description}


def p99(metric: str, by: str = "instance") -> str:
    return f"histogram_quantile(0.99, sum by ({by}, le) (rate({metric}_bucket{{{JOB}}}[$__rate_interval])))"


DASHBOARDS = {
    "cairn-overview": {
        "title": "Cairn / Cluster overview",
        "panels": [
            panel("Members up", "short", q(f"sum(up{{{JOB}}})", "up"), kind="stat"),
            panel("Has a leader", "short", q(f"min(etcd_server_has_leader{{{JOB}}})", "has leader"), kind="stat",
                  description="0 when any member knows no leader: writes and linearizable reads fail there."),
            panel("Leader changes (1h)", "short", q(f"max(increase(etcd_server_leader_changes_seen_total{{{JOB}}}[1h]))", "changes"), kind="stat"),
            panel("Leader", "short", q(f"etcd_server_is_leader{{{JOB}}}", "{{instance}}")),
            panel("gRPC requests", "reqps",
                  q(f'sum(rate(grpc_server_started_total{{{JOB},grpc_type="unary"}}[$__rate_interval]))', "started"),
                  q(f'sum(rate(grpc_server_handled_total{{{JOB},grpc_type="unary",grpc_code!="OK"}}[$__rate_interval]))', "failed")),
            panel("Database size", "bytes",
                  q(f"etcd_mvcc_db_total_size_in_bytes{{{JOB}}}", "{{instance}} total"),
                  q(f"etcd_server_quota_backend_bytes{{{JOB}}}", "{{instance}} quota")),
            panel("Memory (RSS)", "bytes", q(f"process_resident_memory_bytes{{{JOB}}}", "{{instance}}")),
            panel("Client traffic", "Bps",
                  q(f"rate(etcd_network_client_grpc_received_bytes_total{{{JOB}}}[$__rate_interval])", "{{instance}} in"),
                  q(f"rate(etcd_network_client_grpc_sent_bytes_total{{{JOB}}}[$__rate_interval])", "{{instance}} out")),
            panel("Versions", "short", q(f"etcd_server_version{{{JOB}}}", "{{instance}} {{server_version}}"), kind="table"),
        ],
    },
    "cairn-raft-disk": {
        "title": "Cairn / Raft and disk",
        "panels": [
            panel("Proposals committed and applied", "ops",
                  q(f"rate(etcd_server_proposals_committed_total{{{JOB}}}[$__rate_interval])", "{{instance}} committed"),
                  q(f"rate(etcd_server_proposals_applied_total{{{JOB}}}[$__rate_interval])", "{{instance}} applied")),
            panel("Proposals pending", "short", q(f"etcd_server_proposals_pending{{{JOB}}}", "{{instance}}")),
            panel("Failures", "ops",
                  q(f"rate(etcd_server_proposals_failed_total{{{JOB}}}[$__rate_interval])", "{{instance}} proposals"),
                  q(f"rate(etcd_server_read_indexes_failed_total{{{JOB}}}[$__rate_interval])", "{{instance}} read index"),
                  q(f"rate(etcd_server_heartbeat_send_failures_total{{{JOB}}}[$__rate_interval])", "{{instance}} heartbeats"),
                  q(f"rate(etcd_server_slow_apply_total{{{JOB}}}[$__rate_interval])", "{{instance}} slow applies")),
            panel("WAL fsync p99", "s", q(p99("etcd_disk_wal_fsync_duration_seconds"), "{{instance}}")),
            panel("Backend commit p99", "s", q(p99("etcd_disk_backend_commit_duration_seconds"), "{{instance}}")),
            panel("Peer round trip p99", "s", q(p99("etcd_network_peer_round_trip_time_seconds", "instance, To"), "{{instance}} to {{To}}")),
            panel("Peer traffic", "Bps",
                  q(f"sum by (instance) (rate(etcd_network_peer_sent_bytes_total{{{JOB}}}[$__rate_interval]))", "{{instance}} sent"),
                  q(f"sum by (instance) (rate(etcd_network_peer_received_bytes_total{{{JOB}}}[$__rate_interval]))", "{{instance}} received")),
            panel("Peer send failures", "ops",
                  q(f"sum by (instance, To) (rate(etcd_network_peer_sent_failures_total{{{JOB}}}[$__rate_interval]))", "{{instance}} to {{To}}",
                    event_only="exists once a message to a peer failed (a member down or cut off)")),
            panel("Raft log", "short",
                  q(f"cairn_raft_log_entries{{{JOB}}}", "{{instance}} entries kept"),
                  q(f"cairn_raft_last_log_index{{{JOB}}}", "{{instance}} last index"),
                  q(f"cairn_raft_snapshot_index{{{JOB}}}", "{{instance}} snapshot index")),
            panel("Raft term", "short", q(f"cairn_raft_term{{{JOB}}}", "{{instance}}")),
        ],
    },
    "cairn-storage": {
        "title": "Cairn / Storage and compaction",
        "panels": [
            panel("Database size", "bytes",
                  q(f"etcd_mvcc_db_total_size_in_bytes{{{JOB}}}", "{{instance}} on disk"),
                  q(f"etcd_mvcc_db_total_size_in_use_in_bytes{{{JOB}}}", "{{instance}} in use")),
            panel("Quota used", "percentunit",
                  q(f"etcd_mvcc_db_total_size_in_bytes{{{JOB}}} / etcd_server_quota_backend_bytes{{{JOB}}}", "{{instance}}")),
            panel("Keys", "short", q(f"etcd_debugging_mvcc_keys_total{{{JOB}}}", "{{instance}}")),
            panel("Revisions", "short",
                  q(f"etcd_debugging_mvcc_current_revision{{{JOB}}}", "{{instance}} current"),
                  q(f"etcd_debugging_mvcc_compact_revision{{{JOB}}}", "{{instance}} compacted")),
            panel("Store operations", "ops",
                  q(f"sum(rate(etcd_mvcc_put_total{{{JOB}}}[$__rate_interval]))", "put"),
                  q(f"sum(rate(etcd_mvcc_range_total{{{JOB}}}[$__rate_interval]))", "range"),
                  q(f"sum(rate(etcd_mvcc_delete_total{{{JOB}}}[$__rate_interval]))", "delete"),
                  q(f"sum(rate(etcd_mvcc_txn_total{{{JOB}}}[$__rate_interval]))", "txn")),
            panel("Compaction duration p99", "ms",
                  q(p99("etcd_debugging_mvcc_db_compaction_total_duration_milliseconds"), "{{instance}}",
                    event_only="exists once a compaction ran on the member")),
            panel("Defragmentation duration p99", "s",
                  q(p99("etcd_disk_backend_defrag_duration_seconds"), "{{instance}}",
                    event_only="exists once a defragmentation ran on the member")),
            panel("RocksDB files by column family", "bytes",
                  q(f"cairn_rocksdb_sst_files_bytes{{{JOB}}}", "{{instance}} {{cf}} SST"),
                  q(f"cairn_rocksdb_memtable_bytes{{{JOB}}}", "{{instance}} {{cf}} memtable")),
            panel("RocksDB compaction backlog", "bytes",
                  q(f"sum by (instance) (cairn_rocksdb_pending_compaction_bytes{{{JOB}}})", "{{instance}}")),
            panel("RocksDB background work", "short",
                  q(f"cairn_rocksdb_running_compactions{{{JOB}}}", "{{instance}} compactions"),
                  q(f"cairn_rocksdb_running_flushes{{{JOB}}}", "{{instance}} flushes")),
        ],
    },
    "cairn-protocols": {
        "title": "Cairn / Traffic by protocol",
        "panels": [
            panel("Requests by protocol", "reqps",
                  q(f"sum by (protocol) (rate(cairn_requests_total{{{JOB}}}[$__rate_interval]))", "{{protocol}}")),
            panel("Errors by protocol", "reqps",
                  q(f'sum by (protocol) (rate(cairn_requests_total{{{JOB},result="error"}}[$__rate_interval]))', "{{protocol}}")),
            panel("Latency p99 by protocol", "s", q(p99("cairn_request_duration_seconds", "protocol"), "{{protocol}}")),
            panel("Top commands", "reqps",
                  q(f"topk(10, sum by (protocol, command) (rate(cairn_requests_total{{{JOB}}}[$__rate_interval])))", "{{protocol}} {{command}}")),
            panel("gRPC calls by method", "reqps",
                  q(f"sum by (grpc_service, grpc_method) (rate(grpc_server_handled_total{{{JOB}}}[$__rate_interval]))", "{{grpc_method}}")),
            panel("gRPC errors by code", "reqps",
                  q(f'sum by (grpc_method, grpc_code) (rate(grpc_server_handled_total{{{JOB},grpc_code!="OK"}}[$__rate_interval]))', "{{grpc_method}} {{grpc_code}}")),
            panel("gRPC handling p99", "s", q(p99("grpc_server_handling_seconds", "grpc_method"), "{{grpc_method}}")),
            panel("Health checks", "ops",
                  q(f"rate(etcd_server_health_success{{{JOB}}}[$__rate_interval])", "{{instance}} ok"),
                  q(f"rate(etcd_server_health_failures{{{JOB}}}[$__rate_interval])", "{{instance}} failed")),
        ],
    },
    "cairn-watches-leases": {
        "title": "Cairn / Watches and leases",
        "panels": [
            panel("Watchers", "short",
                  q(f"etcd_debugging_mvcc_watcher_total{{{JOB}}}", "{{instance}} watchers"),
                  q(f"etcd_debugging_mvcc_watch_stream_total{{{JOB}}}", "{{instance}} gRPC streams"),
                  q(f"etcd_debugging_mvcc_slow_watcher_total{{{JOB}}}", "{{instance}} catching up")),
            panel("Watch events sent", "ops", q(f"rate(etcd_debugging_mvcc_events_total{{{JOB}}}[$__rate_interval])", "{{instance}}")),
            panel("Leases", "ops",
                  q(f"sum(rate(etcd_debugging_lease_granted_total{{{JOB}}}[$__rate_interval]))", "granted"),
                  q(f"sum(rate(etcd_debugging_lease_renewed_total{{{JOB}}}[$__rate_interval]))", "renewed"),
                  q(f"sum(rate(etcd_debugging_lease_revoked_total{{{JOB}}}[$__rate_interval]))", "revoked"),
                  q(f"sum(rate(etcd_debugging_server_lease_expired_total{{{JOB}}}[$__rate_interval]))", "expired")),
            panel("Leases alive", "short", q(f"cairn_leases{{{JOB}}}", "{{instance}}")),
            panel("Granted TTL p50", "s",
                  q(f"histogram_quantile(0.5, sum by (le) (rate(etcd_debugging_lease_ttl_total_bucket{{{JOB}}}[1h])))", "ttl",
                    event_only="exists once a lease was granted through this member")),
        ],
    },
}

# (name, signal query, condition on it, for, severity, summary). The signal must return data
# on a healthy cluster; the alert fires when the condition holds.
ALERTS = [
    ("CairnMemberDown", f"up{{{ALERT_JOB}}}", "== 0", "1m", "critical",
     "Cairn member {{ $labels.instance }} is down (Prometheus cannot scrape it)."),
    ("CairnInsufficientMembers", f"sum by (job) (up{{{ALERT_JOB}}})", f"< ((count by (job) (up{{{ALERT_JOB}}}) + 1) / 2)", "1m", "critical",
     "Cairn job {{ $labels.job }}: fewer than a quorum of members are up; writes are failing."),
    ("CairnNoLeader", f"etcd_server_has_leader{{{ALERT_JOB}}}", "== 0", "1m", "critical",
     "Cairn member {{ $labels.instance }} has no leader."),
    ("CairnFrequentLeaderChanges", f"increase(etcd_server_leader_changes_seen_total{{{ALERT_JOB}}}[15m])", "> 3", "5m", "warning",
     "Cairn member {{ $labels.instance }} saw {{ $value }} leader changes in 15 minutes."),
    ("CairnProposalsFailing", f"rate(etcd_server_proposals_failed_total{{{ALERT_JOB}}}[15m])", "> 0.05", "5m", "warning",
     "Cairn member {{ $labels.instance }}: {{ $value }} failed proposals per second."),
    ("CairnSlowFsync", f"histogram_quantile(0.99, sum by (instance, le) (rate(etcd_disk_wal_fsync_duration_seconds_bucket{{{ALERT_JOB}}}[5m])))",
     "> 0.5", "10m", "warning", "Cairn member {{ $labels.instance }}: 99th percentile WAL fsync is {{ $value }}s."),
    ("CairnSlowBackendCommit", f"histogram_quantile(0.99, sum by (instance, le) (rate(etcd_disk_backend_commit_duration_seconds_bucket{{{ALERT_JOB}}}[5m])))",
     "> 0.25", "10m", "warning", "Cairn member {{ $labels.instance }}: 99th percentile backend commit is {{ $value }}s."),
    ("CairnDatabaseNearQuota", f"etcd_mvcc_db_total_size_in_bytes{{{ALERT_JOB}}} / etcd_server_quota_backend_bytes{{{ALERT_JOB}}}",
     "> 0.8", "10m", "warning", "Cairn member {{ $labels.instance }}: the database is at {{ $value | humanizePercentage }} of its quota."),
    ("CairnHighRequestErrorRate",
     f"sum by (job, protocol) (rate(cairn_requests_total{{{ALERT_JOB},result=\"error\"}}[5m])) / sum by (job, protocol) (rate(cairn_requests_total{{{ALERT_JOB}}}[5m]))",
     "> 0.05", "10m", "warning", "Cairn {{ $labels.protocol }} requests: {{ $value | humanizePercentage }} fail."),
]

GRID_W, GRID_H = 12, 8


def grafana_panel(i: int, p: dict) -> dict:
    targets = [
        {"refId": chr(ord("A") + n), "expr": t["expr"], "legendFormat": t["legend"],
         "datasource": {"type": "prometheus", "uid": "${datasource}"}}
        for n, t in enumerate(p["queries"])
    ]
    return {
        "id": i + 1,
        "type": p["kind"],
        "title": p["title"],
        "description": p["description"],
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"x": (i % 2) * GRID_W, "y": (i // 2) * GRID_H, "w": GRID_W, "h": GRID_H},
        "fieldConfig": {"defaults": {"unit": p["unit"]}, "overrides": []},
        "options": {},
        "targets": targets,
    }


def grafana_dashboard(uid: str, d: dict) -> dict:
    return {
        "uid": uid,
        "title": d["title"],
        "tags": ["cairn", "etcd"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {"list": [
            {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
            {"name": "job", "type": "query", "label": "Job", "datasource": {"type": "prometheus", "uid": "${datasource}"},
             "query": {"query": "label_values(etcd_server_has_leader, job)", "refId": "job"},
             "definition": "label_values(etcd_server_has_leader, job)", "includeAll": True, "multi": True,
             "allValue": ".*", "refresh": 2},
        ]},
        "panels": [grafana_panel(i, p) for i, p in enumerate(d["panels"])],
    }


def alerts_yaml() -> str:
    """Prometheus rule file, written by hand (no YAML library needed): every value is quoted
    as a JSON string, which YAML reads as the same string."""
    lines = ["# Generated by grafana/dashboards.py: edit that file, then run it.", "groups:", "  - name: cairn", "    rules:"]
    for name, signal, condition, duration, severity, summary in ALERTS:
        lines += [
            f"      - alert: {name}",
            f"        expr: {json.dumps(f'{signal} {condition}')}",
            f"        for: {duration}",
            "        labels:",
            f"          severity: {severity}",
            "        annotations:",
            f"          summary: {json.dumps(summary)}",
        ]
    return "\n".join(lines) + "\n"


def generated() -> dict:
    out = {}
    for uid, d in DASHBOARDS.items():
        out[HERE / "dashboards" / f"{uid}.json"] = json.dumps(grafana_dashboard(uid, d), indent=2) + "\n"
    out[HERE / "alerts.yml"] = alerts_yaml()
    return out


def queries() -> list:
    """Every query, with where it comes from; `$job` and `$__rate_interval` left for the caller."""
    found = []
    for uid, d in DASHBOARDS.items():
        for p in d["panels"]:
            for t in p["queries"]:
                found.append({"source": f"{uid}: {p['title']}", "expr": t["expr"], "event_only": t["event_only"]})
    for name, signal, *_ in ALERTS:
        found.append({"source": f"alert {name}", "expr": signal, "event_only": ""})
    return found


def main(argv: list) -> int:
    if "--queries" in argv:
        print(json.dumps(queries(), indent=2))
        return 0
    stale = []
    for path, text in generated().items():
        current = path.read_text() if path.exists() else None
        if current != text:
            stale.append(path)
            if "--check" not in argv:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(text)
    if "--check" in argv and stale:
        print("out of date (run python3 grafana/dashboards.py):", *[str(p.relative_to(HERE.parent)) for p in stale])
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
