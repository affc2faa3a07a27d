#!/bin/sh
# rustkube-cni's cost per pod: 50 ADDs then 50 DELs of the real plugin binary,
# sequentially and 10-way parallel, each into a throwaway network namespace;
# wall time per ADD/DEL (mean, p50, p99, max) and the CPU time of the plugin
# processes and anything they spawned. Needs root.
# Usage: scripts/bench-cni.sh [--count N] [--parallel P] [--plugin PATH]
# (--plugin times another build, e.g. one from an older commit; PROFILE=dev skips the release build.)
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/rustkube-target}"
if [ "${PROFILE:-release}" = dev ]; then
    cargo build -p rustkube-cni --bins
    exec "$CARGO_TARGET_DIR/debug/bench_cni" "$@"
fi
cargo build --release -p rustkube-cni --bins
exec "$CARGO_TARGET_DIR/release/bench_cni" "$@"
