"""Helpers for the HTTP tests (v3 JSON gateway, v2 keys API): a real etcd with the v2 API
enabled, a plain HTTP client (urllib, no proxies), and JSON normalisers."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Optional

import pytest

import harness


class V2EtcdServer(harness.EtcdServer):
    """Real etcd 3.4 serving the v2 API too (`--enable-v2`)."""

    def command(self) -> list:
        return super().command() + ["--enable-v2"]


def start(request, tmp_path, side: str) -> harness.Server:
    """A fresh server: 'etcd' (real etcd 3.4 with --enable-v2) or 'cairn'; always stopped."""
    if side == "etcd":
        srv = V2EtcdServer(tmp_path / side, "etcd")
    else:
        srv = harness.make_server("cairn", tmp_path / side)
    request.addfinalizer(srv.stop)
    try:
        srv.start()
    except (harness.BinaryMissing, harness.ServerStartError) as e:
        pytest.fail(f"[{srv.label}] {e}", pytrace=False)
    return srv


_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class Reply:
    def __init__(self, status: int, headers: dict, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def lines(self) -> list:
        return [json.loads(line) for line in self.body.splitlines() if line.strip()]

    def __repr__(self) -> str:
        return f"Reply({self.status}, {self.body[:300]!r})"


def http(method: str, url: str, form: Optional[dict] = None, body: Optional[bytes] = None,
         content_type: Optional[str] = None, timeout: float = 10) -> Reply:
    headers = {}
    if form is not None:
        body = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    elif content_type:
        headers["Content-Type"] = content_type
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with _OPENER.open(req, timeout=timeout) as resp:
            return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read())
    except urllib.error.HTTPError as e:
        return Reply(e.code, {k.lower(): v for k, v in e.headers.items()}, e.read())


INDEX_FIELDS = {"modifiedIndex", "createdIndex", "index"}
TIME_FIELDS = {"expiration"}


def normalize_v2(value):
    """v2 JSON without indexes and timestamps: indexes, expirations and TTLs (time-dependent)
    become placeholders, in-order key names lose their index, children are sorted by key
    (etcd lists them in map order) and compare-failure causes lose their indexes."""
    if isinstance(value, list):
        items = [normalize_v2(v) for v in value]
        return sorted(items, key=lambda n: json.dumps(n, sort_keys=True))
    if not isinstance(value, dict):
        return value
    out = {}
    for k, v in value.items():
        if k in INDEX_FIELDS:
            out[k] = "<index>"
        elif k in TIME_FIELDS:
            out[k] = "<time>"
        elif k == "ttl":
            out[k] = "<ttl>"
        elif k == "key" and isinstance(v, str):
            out[k] = re.sub(r"/\d{20}(?=/|$)", "/<in-order>", v)
        elif k == "cause" and isinstance(v, str):
            out[k] = re.sub(r"\d+", "N", v)
        else:
            out[k] = normalize_v2(v)
    return out
