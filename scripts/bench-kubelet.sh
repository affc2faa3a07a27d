#!/usr/bin/env bash
# Benchmarks the kubelet: 100 pods created at once on one node with real
# containerd (image present); prints p50/p99 creation-to-Running and the
# kubelet's RSS. Needs root, containerd, runc and the CNI plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kube-apiserver -p rustkube-cni -p integration --bin kube-apiserver --bin rustkube-cni --bin bench-kubelet
# The kubelet as init-cluster.sh builds it: profile node (for size).
cargo build --profile node -p kubelet
target="$(realpath "${CARGO_TARGET_DIR:-target}")"
bin="$target/bench-kubelet-bin"
mkdir -p "$bin"
for b in kube-apiserver rustkube-cni; do ln -sfn "$target/release/$b" "$bin/$b"; done
ln -sfn "$target/node/kubelet" "$bin/kubelet"
RUSTKUBE_BIN_DIR="$bin" exec "$target/release/bench-kubelet"
