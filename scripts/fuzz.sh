#!/usr/bin/env bash
# Fuzzes the parsers that read client input, each target for a bounded time:
#   resp_request  the RESP request reader (protocols/resp/src/request.rs)
#   v2_request    the etcd v2 keys request parsing (protocols/http/src/v2/keys.rs)
#   gateway_json  the v3 JSON gateway's decoding and body reading (protocols/http/src/body.rs)
# Usage: scripts/fuzz.sh [seconds per target, default 60] [target...]
# Fails on the first crash, leak, timeout or out-of-memory; libFuzzer leaves the input in
# fuzz/artifacts/<target>/ (reproduce: RUSTC_BOOTSTRAP=1 cargo fuzz run <target> <file>, or
# copy it to fuzz/seeds/<target>/ and run `cargo test` in fuzz/ on stable).
#
# cargo-fuzz needs a nightly compiler; with a stable one RUSTC_BOOTSTRAP=1 unlocks the flags it
# passes. Not part of CI (a build takes about 10 minutes on a busy 2-core machine).
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

SECS="${1:-60}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(resp_request v2_request gateway_json)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
export RUSTC_BOOTSTRAP=1

echo "== cargo fuzz build"
nice cargo fuzz build
for t in "${TARGETS[@]}"; do
    echo "== fuzz $t for ${SECS}s"
    mkdir -p "corpus/$t"
    # The corpus directory (not committed) collects new inputs; the committed seeds start it.
    nice cargo fuzz run "$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$SECS" -timeout=10 -rss_limit_mb=2048 -max_len=8192 -print_final_stats=1
done
echo "== no crash in ${TARGETS[*]}"
