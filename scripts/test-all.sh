#!/usr/bin/env bash
# Every test of Cairn: installs what the tests need, builds, runs the Rust unit and
# integration tests, then the compatibility tests with real etcd and real clients.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-test-deps.sh

echo "== build"
cargo build --workspace --bins --tests

echo "== rust tests"
cargo test --workspace --no-fail-fast

echo "== compat tests (real etcdctl against real etcd and against cairn)"
CAIRN_BIN="$PWD/target/debug/cairn" python3 -m pytest compat-tests -q
