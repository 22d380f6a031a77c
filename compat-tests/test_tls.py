"""TLS with real clients: etcdctl 3.4 (`--cacert --cert --key`), curl and `redis-cli --tls`
against Cairn on https:// and rediss:// URLs, and the same etcdctl and curl commands against a
real etcd 3.4 started with the same certificate flags: each command must succeed or be refused
alike on both.

The certificates are made by the `openssl` CLI at run time in a temp dir (a CA, a server
certificate for 127.0.0.1/localhost, a client certificate for user `alice`, and a second CA
with a client certificate of its own); no key material is committed.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import harness


def openssl(*args: str, cwd: Path) -> None:
    p = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode(errors="replace")


def make_ca(d: Path, name: str) -> None:
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}-key.pem", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)


def issue(d: Path, ca: str, name: str, cn: str, ext: str) -> None:
    (d / f"{name}.ext").write_text(ext)
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}-key.pem",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict:
    harness.require_binary("openssl", "openssl", "apt-get install openssl")
    d = tmp_path_factory.mktemp("pki")
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    issue(d, "ca", "server", "cairn-server",
          "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")
    issue(d, "ca", "alice", "alice", "extendedKeyUsage=clientAuth\n")
    issue(d, "other-ca", "mallory", "mallory", "extendedKeyUsage=clientAuth\n")
    return {k: str(d / f"{k}.pem") for k in ("ca", "other-ca", "server", "alice", "mallory")} | {
        f"{k}-key": str(d / f"{k}-key.pem") for k in ("server", "alice", "mallory")
    }


def server_flags(pki: dict, client_cert_auth: bool) -> list:
    flags = ["--cert-file", pki["server"], "--key-file", pki["server-key"]]
    if client_cert_auth:
        flags += ["--trusted-ca-file", pki["ca"], "--client-cert-auth"]
    return flags


def client_flags(pki: dict, ca: str = "ca", user: str | None = "alice") -> list:
    flags = ["--cacert", pki[ca]]
    if user:
        flags += ["--cert", pki[user], "--key", pki[f"{user}-key"]]
    return flags


def https_probe(srv: harness.Server, pki: dict) -> bool:
    r = harness.run_etcdctl(srv.endpoint, [*client_flags(pki), "--dial-timeout=1s", "--command-timeout=2s",
                                           "endpoint", "status"], timeout=10)
    return r.rc == 0


class TlsEtcd(harness.EtcdServer):
    """Real etcd 3.4 on an https:// client URL."""

    def __init__(self, workdir: Path, pki: dict, tls: list):
        super().__init__(workdir, "etcd")
        self.pki, self.tls = pki, tls

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    def command(self) -> list:
        plain = f"http://127.0.0.1:{self.client_port}"
        return [self.endpoint if a == plain else a for a in super().command()] + self.tls

    def probe_ready(self) -> bool:
        return https_probe(self, self.pki)


class TlsCairn(harness.CairnServer):
    """Cairn on an https:// client URL and a rediss:// RESP URL."""

    def __init__(self, workdir: Path, pki: dict, tls: list):
        super().__init__(workdir, "cairn")
        self.pki, self.tls = pki, tls

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.client_port}"

    def command(self) -> list:
        plain = f"http://127.0.0.1:{self.client_port}"
        redis = f"127.0.0.1:{self.redis_port}"
        swap = {plain: self.endpoint, redis: f"rediss://{redis}"}
        return [swap.get(a, a) for a in super().command()] + self.tls

    def probe_ready(self) -> bool:
        return https_probe(self, self.pki)


def start(request, tmp_path, side: str, pki: dict, client_cert_auth: bool) -> harness.Server:
    cls = TlsEtcd if side == "etcd" else TlsCairn
    srv = cls(tmp_path / side, pki, server_flags(pki, client_cert_auth))
    request.addfinalizer(srv.stop)
    try:
        srv.start()
    except (harness.BinaryMissing, harness.ServerStartError) as e:
        pytest.fail(f"[{srv.label}] {e}", pytrace=False)
    return srv


def etcdctl(srv: harness.Server, tls: list, *args: str) -> harness.Result:
    return harness.run_etcdctl(srv.endpoint, [*tls, "--dial-timeout=2s", "--command-timeout=3s", *args], timeout=20)


def curl(srv: harness.Server, tls: list, path: str, body: str) -> tuple:
    """POST over https with curl: (exit code, HTTP status, body)."""
    p = subprocess.run(["curl", "-sS", "--noproxy", "*", "-m", "10", *tls, "-o", "-", "-w", "\n%{http_code}",
                        "-X", "POST", f"{srv.endpoint}{path}", "-d", body], capture_output=True, timeout=30)
    text, _, status = p.stdout.decode().rpartition("\n")
    return p.returncode, int(status or 0), text


def curl_tls(pki: dict, ca: str = "ca", user: str | None = "alice") -> list:
    flags = ["--cacert", pki[ca]]
    if user:
        flags += ["--cert", pki[user], "--key", pki[f"{user}-key"]]
    return flags


def session(srv: harness.Server, pki: dict) -> list:
    """What each client sees: (what, succeeded, output when it succeeded)."""
    out = []
    ok_tls = client_flags(pki)
    r = etcdctl(srv, ok_tls, "put", "greeting", "hello")
    out.append(("etcdctl put (trusted CA, client cert)", r.rc == 0, r.stdout.decode()))
    r = etcdctl(srv, ok_tls, "get", "greeting", "--print-value-only")
    out.append(("etcdctl get (trusted CA, client cert)", r.rc == 0, r.stdout.decode()))
    r = etcdctl(srv, client_flags(pki, user=None), "get", "greeting", "--print-value-only")
    out.append(("etcdctl get (trusted CA, no client cert)", r.rc == 0, r.stdout.decode() if r.rc == 0 else ""))
    r = etcdctl(srv, client_flags(pki, user="mallory"), "get", "greeting", "--print-value-only")
    out.append(("etcdctl get (client cert from another CA)", r.rc == 0, r.stdout.decode() if r.rc == 0 else ""))
    r = etcdctl(srv, client_flags(pki, ca="other-ca"), "get", "greeting", "--print-value-only")
    out.append(("etcdctl get (server not trusted)", r.rc == 0, r.stdout.decode() if r.rc == 0 else ""))
    range_body = '{"key": "Z3JlZXRpbmc="}'
    for what, tls in [("trusted CA, client cert", curl_tls(pki)), ("no client cert", curl_tls(pki, user=None)),
                      ("client cert from another CA", curl_tls(pki, user="mallory")),
                      ("server not trusted", curl_tls(pki, ca="other-ca"))]:
        rc, status, body = curl(srv, tls, "/v3/kv/range", range_body)
        ok = rc == 0 and status == 200
        value = [kv.get("value") for kv in json.loads(body).get("kvs", [])] if ok else None
        out.append((f"curl /v3/kv/range ({what})", ok, value))
    return out


@pytest.mark.parametrize("client_cert_auth", [False, True], ids=["server-cert", "client-cert-auth"])
def test_etcdctl_and_curl_match_etcd(request, tmp_path, pki, client_cert_auth):
    etcd = start(request, tmp_path, "etcd", pki, client_cert_auth)
    reference = session(etcd, pki)
    etcd.stop()
    cairn = start(request, tmp_path, "cairn", pki, client_cert_auth)
    ours = session(cairn, pki)
    assert ours == reference, "\n".join(f"{a!r}\n  etcd:  {b!r}" for a, b in zip(ours, reference) if a != b)
    # The expectations themselves (so both servers cannot go wrong alike).
    outcome = {what: ok for what, ok, _ in reference}
    assert outcome["etcdctl get (trusted CA, client cert)"] and outcome["curl /v3/kv/range (trusted CA, client cert)"]
    assert not outcome["etcdctl get (server not trusted)"] and not outcome["curl /v3/kv/range (server not trusted)"]
    for what in ("etcdctl get (trusted CA, no client cert)", "curl /v3/kv/range (no client cert)",
                 "etcdctl get (client cert from another CA)", "curl /v3/kv/range (client cert from another CA)"):
        assert outcome[what] is not client_cert_auth, what
    assert dict((w, v) for w, _, v in reference)["etcdctl get (trusted CA, client cert)"] == "hello\n"


def redis_cli(srv: TlsCairn, pki: dict, *args: str, user: str | None = "alice") -> tuple:
    tls = ["--tls", "--cacert", pki["ca"]]
    if user:
        tls += ["--cert", pki[user], "--key", pki[f"{user}-key"]]
    p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(srv.redis_port), *tls, *args],
                       capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(errors="replace").strip(), p.stderr.decode(errors="replace")


def test_redis_cli_over_tls(request, tmp_path, pki):
    harness.require_binary("redis-cli", "redis-cli", "apt-get install redis-tools")
    cairn = start(request, tmp_path, "cairn", pki, client_cert_auth=True)
    assert redis_cli(cairn, pki, "PING")[:2] == (0, "PONG")
    assert redis_cli(cairn, pki, "SET", "greeting", "over tls")[:2] == (0, "OK")
    assert redis_cli(cairn, pki, "GET", "greeting")[:2] == (0, "over tls")
    # The same key through etcdctl over https.
    r = etcdctl(cairn, client_flags(pki), "get", "greeting", "--print-value-only")
    assert (r.rc, r.stdout) == (0, b"over tls\n"), r.text()
    # Without a client certificate, or with one from another CA: no answer.
    for user in (None, "mallory"):
        rc, out, err = redis_cli(cairn, pki, "GET", "greeting", user=user)
        assert "over tls" not in out, (user, out, err)
    # Plaintext RESP on the rediss:// port gets nothing either.
    p = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(cairn.redis_port), "PING"],
                       capture_output=True, timeout=30)
    assert b"PONG" not in p.stdout, p.stdout


def test_etcdctl_refused_without_client_cert_is_logged(request, tmp_path, pki):
    cairn = start(request, tmp_path, "cairn", pki, client_cert_auth=True)
    r = etcdctl(cairn, client_flags(pki, user=None), "put", "k", "v")
    assert r.rc != 0, r.text()
    r = etcdctl(cairn, client_flags(pki), "get", "k")
    assert r.rc == 0 and r.stdout == b"", r.text()  # the refused put was not applied
    log = cairn.log_path.read_text(errors="replace")
    assert "rejected connection" in log and "TLS handshake failed" in log, log[-3000:]


def auth_session(srv: harness.Server, pki: dict) -> list:
    """With auth on and --client-cert-auth: the certificate's CN (alice) is the user when no
    --user is given; a --user token takes precedence. (what, exit code, last stderr line)."""
    tls = client_flags(pki)
    steps = [
        ("user add root", ["user", "add", "root:rootpw"]),
        ("role add root", ["role", "add", "root"]),
        ("grant root", ["user", "grant-role", "root", "root"]),
        ("user add alice", ["user", "add", "alice:alicepw"]),
        ("role add app", ["role", "add", "app"]),
        ("grant /app/", ["role", "grant-permission", "app", "readwrite", "/app/", "--prefix"]),
        ("grant alice", ["user", "grant-role", "alice", "app"]),
        ("auth enable", ["auth", "enable"]),
        ("cert alice: put /app/x", ["put", "/app/x", "1"]),
        ("cert alice: get /app/x", ["get", "/app/x", "--print-value-only"]),
        ("cert alice: put /other", ["put", "/other", "1"]),
        ("cert alice: user list", ["user", "list"]),
        ("cert alice + --user root: put /other", ["--user", "root:rootpw", "put", "/other", "2"]),
        ("cert alice + wrong password", ["--user", "alice:nope", "get", "/app/x"]),
    ]
    out = []
    for what, args in steps:
        r = etcdctl(srv, tls, *args)
        err = [line for line in r.stderr.decode(errors="replace").splitlines() if line.startswith("Error:")]
        out.append((what, r.rc, err[-1] if err else "", r.stdout.decode() if "get" in what else ""))
    return out


def test_client_certificate_names_the_user_when_auth_is_on(request, tmp_path, pki):
    etcd = start(request, tmp_path, "etcd", pki, client_cert_auth=True)
    reference = auth_session(etcd, pki)
    etcd.stop()
    cairn = start(request, tmp_path, "cairn", pki, client_cert_auth=True)
    ours = auth_session(cairn, pki)
    assert ours == reference, "\n".join(f"{a!r}\n  etcd:  {b!r}" for a, b in zip(ours, reference) if a != b)
    outcome = {what: (rc, err) for what, rc, err, _ in reference}
    assert outcome["cert alice: put /app/x"][0] == 0
    assert outcome["cert alice: put /other"] == (1, "Error: etcdserver: permission denied")
    assert outcome["cert alice: user list"] == (1, "Error: etcdserver: permission denied")
    assert outcome["cert alice + --user root: put /other"][0] == 0
    # RESP over TLS: the same certificate logs the connection in as alice.
    harness.require_binary("redis-cli", "redis-cli", "apt-get install redis-tools")
    assert redis_cli(cairn, pki, "ACL", "WHOAMI")[1] == "alice"
    assert redis_cli(cairn, pki, "SET", "/app/r", "v")[1] == "OK"
    assert redis_cli(cairn, pki, "GET", "/app/x")[1] == "1"
    assert redis_cli(cairn, pki, "SET", "/other", "v")[1].startswith("NOPERM")
