"""Support for test_recipes.py: the real Python `etcd3` client (0.12.0),
gRPC stubs for etcd's v3lock / v3election services (which etcd3 does not
ship), background processes with captured output, and the small worker
programs the recipes run as separate processes:

    python3 recipes_worker.py ...   (no etcd3/grpc import: starts fast)
        the `etcdctl lock NAME -- CMD` worker, see there
    python3 recipes_support.py campaign ENDPOINT NAME VALUE TTL MAX_SECONDS
        grant a lease (TTL s) and keep it alive, Campaign through the
        v3election gRPC service, print "LEADER ..." when elected, then hold
        until killed (or MAX_SECONDS pass)
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from typing import Optional

# etcd3 0.12's generated *_pb2 modules predate protobuf 4's C++/upb runtime;
# with protobuf>=4 they only load with the pure-Python implementation.
# (requirements.txt pins protobuf<4; this is the fallback.)
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

import warnings  # noqa: E402

import grpc  # noqa: E402

with warnings.catch_warnings():
    # etcd3 0.12's generated code uses descriptor constructors protobuf 3.20
    # deprecates (one DeprecationWarning per message/field at import)
    warnings.simplefilter("ignore", DeprecationWarning)
    import etcd3  # noqa: E402
    from etcd3.etcdrpc import auth_pb2, kv_pb2, rpc_pb2  # noqa: E402
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


# --------------------------------------------------------------------------
# etcd3 clients
# --------------------------------------------------------------------------


def host_port(endpoint: str) -> tuple:
    hp = endpoint.split("://", 1)[-1].rstrip("/")
    host, port = hp.rsplit(":", 1)
    return host, int(port)


def make_client(endpoint: str, timeout: float = 10.0) -> "etcd3.Etcd3Client":
    """An etcd3 client with a per-call deadline (etcd3's default is none).

    etcd3's watch thread loops forever re-opening its stream; once the
    channel is closed it dies with a ValueError traceback. Wrap it so that
    closing a client ends its watch thread quietly."""
    host, port = host_port(endpoint)
    c = etcd3.client(host=host, port=port, timeout=timeout)
    w = c.watcher
    orig_run = w._run

    def _run():
        try:
            orig_run()
        except ValueError:  # "Cannot invoke RPC on closed channel!"
            return

    w._run = _run  # looked up when the watch thread is started
    return c


def close_quietly(*clients) -> None:
    for c in clients:
        try:
            c.close()
        except Exception:
            pass


# --------------------------------------------------------------------------
# v3lock / v3election stubs, built at run time from the .proto definitions
# (etcd's server/etcdserver/api/v3lock/v3lockpb/v3lock.proto and
# v3election/v3electionpb/v3election.proto), on top of etcd3's own
# rpc.proto / kv.proto descriptors.
# --------------------------------------------------------------------------

_F = descriptor_pb2.FieldDescriptorProto


def _file(name: str, package: str, deps: list, messages: dict) -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3", dependency=deps)
    for mname, fields in messages.items():
        m = fdp.message_type.add(name=mname)
        for fname, number, ftype in fields:
            f = m.field.add(name=fname, number=number, label=_F.LABEL_OPTIONAL)
            if ftype.startswith("."):
                f.type = _F.TYPE_MESSAGE
                f.type_name = ftype
            else:
                f.type = {"bytes": _F.TYPE_BYTES, "int64": _F.TYPE_INT64}[ftype]
    return fdp


class _Protos:
    def __init__(self):
        pool = descriptor_pool.DescriptorPool()
        for mod in (kv_pb2, auth_pb2, rpc_pb2):
            pool.AddSerializedFile(mod.DESCRIPTOR.serialized_pb)
        hdr, kv = ".etcdserverpb.ResponseHeader", ".mvccpb.KeyValue"
        election = _file("cairn_compat/v3election.proto", "v3electionpb", ["rpc.proto", "kv.proto"], {
            "CampaignRequest": [("name", 1, "bytes"), ("lease", 2, "int64"), ("value", 3, "bytes")],
            "CampaignResponse": [("header", 1, hdr), ("leader", 2, ".v3electionpb.LeaderKey")],
            "LeaderKey": [("name", 1, "bytes"), ("key", 2, "bytes"), ("rev", 3, "int64"), ("lease", 4, "int64")],
            "LeaderRequest": [("name", 1, "bytes")],
            "LeaderResponse": [("header", 1, hdr), ("kv", 2, kv)],
            "ResignRequest": [("leader", 1, ".v3electionpb.LeaderKey")],
            "ResignResponse": [("header", 1, hdr)],
            "ProclaimRequest": [("leader", 1, ".v3electionpb.LeaderKey"), ("value", 2, "bytes")],
            "ProclaimResponse": [("header", 1, hdr)],
        })
        lock = _file("cairn_compat/v3lock.proto", "v3lockpb", ["rpc.proto"], {
            "LockRequest": [("name", 1, "bytes"), ("lease", 2, "int64")],
            "LockResponse": [("header", 1, hdr), ("key", 2, "bytes")],
            "UnlockRequest": [("key", 1, "bytes")],
            "UnlockResponse": [("header", 1, hdr)],
        })
        factory = message_factory.MessageFactory(pool)
        for fdp in (election, lock):
            pool.Add(fdp)
            fd = pool.FindFileByName(fdp.name)
            for mname, desc in fd.message_types_by_name.items():
                setattr(self, mname, factory.GetPrototype(desc))


_PROTOS: Optional[_Protos] = None


def protos() -> _Protos:
    global _PROTOS
    if _PROTOS is None:
        _PROTOS = _Protos()
    return _PROTOS


class ElectionStub:
    """Client stub for v3electionpb.Election."""

    def __init__(self, channel):
        p = protos()

        def uu(method, req, resp):
            return channel.unary_unary(f"/v3electionpb.Election/{method}",
                                       request_serializer=req.SerializeToString,
                                       response_deserializer=resp.FromString)

        self.Campaign = uu("Campaign", p.CampaignRequest, p.CampaignResponse)
        self.Proclaim = uu("Proclaim", p.ProclaimRequest, p.ProclaimResponse)
        self.Leader = uu("Leader", p.LeaderRequest, p.LeaderResponse)
        self.Resign = uu("Resign", p.ResignRequest, p.ResignResponse)
        self.Observe = channel.unary_stream("/v3electionpb.Election/Observe",
                                            request_serializer=p.LeaderRequest.SerializeToString,
                                            response_deserializer=p.LeaderResponse.FromString)


class LockStub:
    """Client stub for v3lockpb.Lock."""

    def __init__(self, channel):
        p = protos()
        self.Lock = channel.unary_unary("/v3lockpb.Lock/Lock", request_serializer=p.LockRequest.SerializeToString,
                                        response_deserializer=p.LockResponse.FromString)
        self.Unlock = channel.unary_unary("/v3lockpb.Lock/Unlock",
                                          request_serializer=p.UnlockRequest.SerializeToString,
                                          response_deserializer=p.UnlockResponse.FromString)


def channel_for(endpoint: str):
    host, port = host_port(endpoint)
    return grpc.insecure_channel(f"{host}:{port}")


class KeepAlive:
    """Refresh an etcd3 lease every `interval` s in a thread until stop()."""

    def __init__(self, lease, interval: float):
        self.lease = lease
        self.interval = interval
        self.errors: list = []
        self.ttls: list = []
        self.last_refresh: Optional[float] = None  # monotonic time of the last keep-alive response
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                for r in self.lease.refresh():
                    self.ttls.append(r.TTL)
                    self.last_refresh = time.monotonic()
            except Exception as e:  # recorded, checked by the test
                self.errors.append(repr(e))
            self._stop.wait(self.interval)

    def stop(self):
        self._stop.set()
        self._t.join(timeout=15)


# --------------------------------------------------------------------------
# background processes
# --------------------------------------------------------------------------


class Bg:
    """A background process in its own process group, stdout/stderr captured
    by threads (readable while it runs)."""

    def __init__(self, argv: list, env: Optional[dict] = None):
        import harness

        self.argv = argv
        self._out = bytearray()
        self._err = bytearray()
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env or harness.clean_env(), start_new_session=True)
        self._threads = [threading.Thread(target=self._pump, args=(f, b), daemon=True)
                         for f, b in ((self.proc.stdout, self._out), (self.proc.stderr, self._err))]
        for t in self._threads:
            t.start()

    def _pump(self, f, buf):
        fd = f.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                buf.extend(chunk)

    @property
    def out(self) -> str:
        with self._lock:
            return self._out.decode(errors="replace")

    @property
    def err(self) -> str:
        with self._lock:
            return self._err.decode(errors="replace")

    def wait_for(self, pred, deadline: float) -> bool:
        end = time.monotonic() + deadline
        while True:
            if pred(self.out):
                return True
            if time.monotonic() >= end:
                return False
            time.sleep(0.02)

    def signal(self, sig) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float):
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def kill(self) -> None:
        import signal as _s
        try:
            os.killpg(self.proc.pid, _s.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.wait(5)

    def describe(self) -> str:
        return (f"$ {' '.join(self.argv)} (rc={self.proc.poll()})\n--- stdout\n{self.out}--- stderr\n{self.err}")


def etcdctl_argv(endpoint: str, *args) -> list:
    import harness
    return [harness.etcdctl_bin(), "--endpoints", endpoint, *args]


# --------------------------------------------------------------------------
# worker programs
# --------------------------------------------------------------------------


def campaign(endpoint, name, value, ttl, max_seconds) -> None:
    deadline = time.monotonic() + float(max_seconds)
    client = make_client(endpoint)
    lease = client.lease(int(ttl))
    ka = KeepAlive(lease, max(0.5, int(ttl) / 3))
    print(f"CAMPAIGNING {value} lease={lease.id:x}", flush=True)
    stub = ElectionStub(client.channel)
    p = protos()
    resp = stub.Campaign(p.CampaignRequest(name=name.encode(), lease=lease.id, value=value.encode()),
                         timeout=float(max_seconds))
    print(f"LEADER {value} key={resp.leader.key.decode()} rev={resp.leader.rev} "
          f"t={time.monotonic():.6f}", flush=True)
    while time.monotonic() < deadline:
        time.sleep(0.2)
    ka.stop()


if __name__ == "__main__":
    sys.path.insert(0, HERE)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "campaign":
        campaign(*args)
    else:
        raise SystemExit(f"unknown command {cmd!r}")
