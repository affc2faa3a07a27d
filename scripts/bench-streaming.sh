#!/usr/bin/env bash
# Benchmarks the streaming paths through apiserver → kubelet → containerd with
# stock kubectl 1.33: kubectl cp of 100 MiB in and out, a 100 MiB HTTP download
# through kubectl port-forward, and exec latency against CRI ExecSync.
# Needs root, containerd, runc and the CNI plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kube-apiserver -p rustkube-cni -p integration --bin kube-apiserver --bin rustkube-cni --bin bench-streaming
# The kubelet as init-cluster.sh builds it: profile node (for size).
cargo build --profile node -p kubelet
target="$(realpath "${CARGO_TARGET_DIR:-target}")"
bin="$target/bench-streaming-bin"
mkdir -p "$bin"
for b in kube-apiserver rustkube-cni; do ln -sfn "$target/release/$b" "$bin/$b"; done
ln -sfn "$target/node/kubelet" "$bin/kubelet"
RUSTKUBE_BIN_DIR="$bin" exec "$target/release/bench-streaming"
