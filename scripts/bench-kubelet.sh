#!/usr/bin/env bash
# Benchmarks the kubelet: 100 pods created at once on one node with real
# containerd (image present); prints p50/p99 creation-to-Running and the
# kubelet's RSS. Needs root, containerd, runc and the CNI plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kube-apiserver -p kubelet -p rustkube-cni -p integration --bin kube-apiserver --bin kubelet --bin rustkube-cni --bin bench-kubelet
dir="${CARGO_TARGET_DIR:-target}/release"
RUSTKUBE_BIN_DIR="$dir" exec "$dir/bench-kubelet"
