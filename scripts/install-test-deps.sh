#!/usr/bin/env bash
# Installs what building Cairn and running its tests needs on a fresh Debian 12 machine:
# libclang (RocksDB's bindings), protoc + well-known types (the etcd-client test dependency),
# real etcd 3.4 + etcdctl and redis-server 7 + redis-cli/redis-benchmark (differential tests),
# Prometheus and jsonnet (monitoring tests), and the Python test runner.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

need_apt=()
command -v etcd >/dev/null || need_apt+=(etcd-server)
command -v etcdctl >/dev/null || need_apt+=(etcd-client)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || need_apt+=(libprotobuf-dev)
ls /usr/lib/llvm-*/lib/libclang.so* >/dev/null 2>&1 && [ -d /usr/lib/llvm-14/include ] || need_apt+=(libclang-dev)
command -v python3 >/dev/null || need_apt+=(python3 python3-pip)
command -v redis-server >/dev/null || need_apt+=(redis-server)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
command -v redis-cli >/dev/null && command -v redis-benchmark >/dev/null || need_apt+=(redis-tools)
# Monitoring tests: a real Prometheus (+ promtool), and jsonnet to render etcd's own dashboards
# and alerts (the etcd mixin that etcd-server ships in its docs).
command -v prometheus >/dev/null && command -v promtool >/dev/null || need_apt+=(prometheus)
command -v jsonnet >/dev/null || need_apt+=(jsonnet)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

if ! python3 -c 'import pytest, etcd3, etcd, redis' 2>/dev/null; then
  echo "installing Python test requirements"
  python3 -m pip install -q -r compat-tests/requirements.txt
fi
