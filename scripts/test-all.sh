#!/usr/bin/env bash
# Every test of Cairn: installs what the tests need, builds, runs the Rust unit and
# integration tests, then the compatibility tests with real etcd and real clients.
set -euo pipefail
cd "$(dirname "$0")/.."

# Free disk at each stage, so a run that fills the disk says so in its log.
disk() { echo "-- free disk: target $(df -h --output=avail . | tail -1 | tr -d ' '), tmp $(df -h --output=avail "${TMPDIR:-/tmp}" | tail -1 | tr -d ' ')"; }
trap disk EXIT

scripts/install-test-deps.sh

echo "== build"
disk
cargo build --workspace --bins --tests

echo "== rust tests"
disk
cargo test --workspace --no-fail-fast

echo "== compat tests (real etcdctl against real etcd and against cairn)"
disk
CAIRN_BIN="$PWD/target/debug/cairn" python3 -m pytest compat-tests -q
