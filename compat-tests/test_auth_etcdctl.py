"""Differential auth scenarios: users, roles, permissions and `auth enable`
driven by the real etcdctl on a fresh real etcd and on a fresh Cairn; Cairn's
normalised transcript must equal etcd's, allowed and denied alike (exit codes
and the exact error texts etcd's clients match on).

The same users and permissions reach Cairn's other protocols (the JSON
gateway, v2 basic auth, RESP AUTH); those are covered by tests/tests/auth.rs.
"""

from __future__ import annotations

import pytest

from harness import FAIL, J, Scenario, T, txn_input

ROOT = "--user=root:rootpw"
ALICE = "--user=alice:alicepw"

NO_ROOT_USER = "Error: etcdserver: root user does not exist"
DENIED = "Error: etcdserver: permission denied"
NO_USER = "Error: etcdserver: user name is empty"
AUTH_FAILED = "Error: etcdserver: authentication failed, invalid user ID or password"
USER_EXISTS = "Error: etcdserver: user name already exists"
USER_NOT_FOUND = "Error: etcdserver: user name not found"
ROLE_EXISTS = "Error: etcdserver: role name already exists"
ROLE_NOT_FOUND = "Error: etcdserver: role name not found"
ROLE_NOT_GRANTED = "Error: etcdserver: role is not granted to the user"
PERM_NOT_GRANTED = "Error: etcdserver: permission is not granted to the role"
INVALID_MGMT = "Error: etcdserver: invalid auth management"

SCENARIOS: list = []


def scenario(*a, **kw):
    SCENARIOS.append(Scenario(*a, **kw))


def setup_root_and_alice() -> list:
    """root (with the root role) and alice, whose role r1 may read and write /app/ and read /ro/."""
    return [
        T("user add root:rootpw"),
        T("role add root"),
        T("user grant-role root root"),
        T("user add alice:alicepw"),
        T("role add r1"),
        T("role grant-permission r1 readwrite /app/ --prefix"),
        T("role grant-permission r1 read /ro/ --prefix"),
        T("role grant-permission r1 write /wo"),
        T("user grant-role alice r1"),
        J("put /ro/a 1"),
        J("put /other 1"),
        T("auth enable"),
    ]


scenario("auth-enable-needs-root", "auth", "auth enable without a root user fails; with one it works; disable", [
    FAIL("auth enable", NO_ROOT_USER),
    T("user add root:rootpw"),
    T("role add root"),
    T("user grant-role root root"),
    T("auth enable"),
    FAIL("put a 1", NO_USER),
    T([ROOT, "put", "a", "1"]),
    T([ROOT, "auth", "disable"]),
    J("get a"),
])

scenario("auth-allowed-and-denied", "auth", "a user's reads and writes inside and outside its permissions", [
    *setup_root_and_alice(),
    J([ALICE, "put", "/app/x", "1"]),
    J([ALICE, "get", "/app/x"]),
    J([ALICE, "get", "/app/", "--prefix"]),
    J([ALICE, "get", "/ro/a"]),
    FAIL([ALICE, "put", "/ro/a", "2"], DENIED),
    FAIL([ALICE, "put", "/other", "2"], DENIED),
    FAIL([ALICE, "get", "/other"], DENIED),
    FAIL([ALICE, "get", "/", "--prefix"], DENIED),
    J([ALICE, "put", "/wo", "w"]),
    FAIL([ALICE, "get", "/wo"], DENIED),
    FAIL([ALICE, "put", "--prev-kv", "/wo", "w2"], DENIED),
    J([ALICE, "del", "/app/x"]),
    FAIL([ALICE, "del", "/other"], DENIED),
    FAIL([ALICE, "txn"], DENIED, stdin=txn_input(['value("/other") = "1"'], ["put /app/y 1"], [])),
    FAIL([ALICE, "txn"], DENIED, stdin=txn_input(['value("/app/y") = "1"'], ["put /app/y 1"], ["put /other 2"])),
    J([ALICE, "txn"], txn_input(['value("/ro/a") = "1"'], ["put /app/y 1"], ["get /app/y"])),
    FAIL("get /app/y", NO_USER),
    FAIL(["--user=alice:wrong", "get", "/app/y"], AUTH_FAILED, rc=2),
    FAIL(["--user=nobody:pw", "get", "/app/y"], AUTH_FAILED, rc=2),
    J([ROOT, "get", "/", "--prefix"]),
])

scenario("auth-admin-only", "auth", "user and role management needs root; a user may read itself and its roles", [
    *setup_root_and_alice(),
    FAIL([ALICE, "user", "list"], DENIED),
    FAIL([ALICE, "role", "list"], DENIED),
    FAIL([ALICE, "user", "add", "eve:pw"], DENIED),
    FAIL([ALICE, "role", "grant-permission", "r1", "readwrite", "/", "--prefix"], DENIED),
    FAIL([ALICE, "user", "get", "root"], DENIED),
    T([ALICE, "user", "get", "alice"]),
    T([ALICE, "role", "get", "r1"]),
    FAIL([ALICE, "auth", "disable"], DENIED),
    T([ROOT, "user", "list"]),
    T([ROOT, "role", "list"]),
    T([ROOT, "role", "get", "r1"]),
    T([ROOT, "role", "get", "root"]),
    T([ROOT, "user", "get", "root"]),
])

scenario("auth-management-errors", "auth", "etcd's errors for users, roles and the root rules", [
    *setup_root_and_alice(),
    FAIL([ROOT, "user", "add", "alice:x"], USER_EXISTS),
    FAIL([ROOT, "role", "add", "r1"], ROLE_EXISTS),
    FAIL([ROOT, "user", "grant-role", "alice", "nope"], ROLE_NOT_FOUND),
    FAIL([ROOT, "user", "grant-role", "nobody", "r1"], USER_NOT_FOUND),
    FAIL([ROOT, "user", "revoke-role", "alice", "root"], ROLE_NOT_GRANTED),
    FAIL([ROOT, "user", "delete", "nobody"], USER_NOT_FOUND),
    FAIL([ROOT, "role", "delete", "nope"], ROLE_NOT_FOUND),
    FAIL([ROOT, "role", "revoke-permission", "r1", "/zzz"], PERM_NOT_GRANTED),
    FAIL([ROOT, "user", "delete", "root"], INVALID_MGMT),
    FAIL([ROOT, "user", "revoke-role", "root", "root"], INVALID_MGMT),
    FAIL([ROOT, "role", "delete", "root"], INVALID_MGMT),
    FAIL([ROOT, "user", "get", "nobody"], USER_NOT_FOUND),
    FAIL([ROOT, "role", "get", "nope"], ROLE_NOT_FOUND),
])

scenario("auth-changes-take-effect", "auth", "revoking a permission or a role, deleting a user, changing a password", [
    *setup_root_and_alice(),
    J([ALICE, "put", "/app/x", "1"]),
    T([ROOT, "role", "revoke-permission", "r1", "/app/", "--prefix"]),
    FAIL([ALICE, "put", "/app/x", "2"], DENIED),
    T([ROOT, "role", "grant-permission", "r1", "readwrite", "/app/", "--prefix"]),
    J([ALICE, "put", "/app/x", "3"]),
    T([ROOT, "user", "revoke-role", "alice", "r1"]),
    FAIL([ALICE, "get", "/app/x"], DENIED),
    T([ROOT, "user", "grant-role", "alice", "r1"]),
    T([ROOT, "user", "passwd", "alice", "--interactive=false"], stdin=b"newpw\n"),
    FAIL([ALICE, "get", "/app/x"], AUTH_FAILED, rc=2),
    J(["--user=alice:newpw", "get", "/app/x"]),
    T([ROOT, "role", "delete", "r1"]),
    FAIL(["--user=alice:newpw", "get", "/app/x"], DENIED),
    T([ROOT, "user", "delete", "alice"]),
    FAIL(["--user=alice:newpw", "get", "/app/x"], AUTH_FAILED, rc=2),
    J([ROOT, "get", "/app/x"]),
])

scenario("auth-leases", "auth", "leases with auth: granting is open (as etcd); revoking needs WRITE on every key of the lease", [
    *setup_root_and_alice(),
    J([ALICE, "lease", "grant", "100"]),
    J("lease grant 100"),
    J([ALICE, "lease", "grant", "100"]),
    J([ALICE, "put", "--lease={lease1}", "/app/l", "1"]),
    J([ROOT, "put", "--lease={lease2}", "/other", "2"]),
    FAIL([ALICE, "put", "--lease={lease2}", "/app/m", "1"], DENIED),
    FAIL("lease revoke {lease1}", "Error: failed to revoke lease (etcdserver: user name is empty)"),
    FAIL([ALICE, "lease", "revoke", "{lease2}"], "Error: failed to revoke lease (etcdserver: permission denied)"),
    J([ALICE, "lease", "revoke", "{lease3}"]),
    J([ALICE, "lease", "revoke", "{lease1}"]),
    J([ROOT, "get", "/", "--prefix"]),
])


SIDES = ["etcd", "cairn"]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.id for s in SCENARIOS])
def test_auth_etcdctl(scenario, side, differential):
    differential(scenario, side)
