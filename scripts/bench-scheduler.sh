#!/usr/bin/env bash
# Benchmarks kube-scheduler: 10,000 pods onto 1,000 Node objects through the
# real apiserver and etcd; prints pods/s created and bound, p50/p99
# creation-to-binding latency and the scheduler's RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kube-apiserver -p kube-scheduler -p integration --bin kube-apiserver --bin kube-scheduler --bin bench-scheduler
dir="${CARGO_TARGET_DIR:-target}/release"
RUSTKUBE_BIN_DIR="$dir" exec "$dir/bench-scheduler"
