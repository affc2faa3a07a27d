#!/usr/bin/env bash
# Benchmarks kube-controller-manager: a Deployment scaled from 0 to 3,000
# replicas (or the first argument) through the real apiserver and etcd, every
# controller on; prints the time until all pods exist, pods/s and the
# controller-manager's RSS.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kube-apiserver -p kube-controller-manager -p integration \
    --bin kube-apiserver --bin kube-controller-manager --bin bench-controller-manager
dir="${CARGO_TARGET_DIR:-target}/release"
RUSTKUBE_BIN_DIR="$dir" exec "$dir/bench-controller-manager" "$@"
