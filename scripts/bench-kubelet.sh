#!/usr/bin/env bash
# Benchmarks the kubelet: 100 pods created at once on one node with real
# containerd (image present); prints p50/p99 creation-to-Running and the
# kubelet's RSS, then the runtime's own floor (the same pods straight through the
# CRI); again with crun when it is installed. Needs root, containerd, runc and
# the CNI plugins.
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
RUSTKUBE_BIN_DIR="$bin" "$target/release/bench-kubelet"
# The same with crun, a C runtime, under containerd's runc shim (apt-get install crun).
if command -v crun >/dev/null; then
  RUSTKUBE_BENCH_OCI_RUNTIME="$(command -v crun)" RUSTKUBE_BIN_DIR="$bin" "$target/release/bench-kubelet"
fi
