#!/usr/bin/env bash
# Benchmarks kube-apiserver against real etcd: create, get, list of 10k
# objects and watch fan-out to 100 watchers with 50 concurrent clients;
# prints throughput, p50/p99 latency and RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kube-apiserver -p integration --bin kube-apiserver --bin bench-apiserver
dir="${CARGO_TARGET_DIR:-target}/release"
RUSTKUBE_BIN_DIR="$dir" exec "$dir/bench-apiserver"
