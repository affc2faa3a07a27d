#!/usr/bin/env bash
# Benchmarks the streaming paths through apiserver → kubelet → containerd with
# stock kubectl 1.33: kubectl cp of 100 MiB in and out, a 100 MiB HTTP download
# through kubectl port-forward, and exec latency against CRI ExecSync.
# Needs root, containerd, runc and the CNI plugins.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p kube-apiserver -p kubelet -p rustkube-cni -p integration --bin kube-apiserver --bin kubelet --bin rustkube-cni --bin bench-streaming
dir="${CARGO_TARGET_DIR:-target}/release"
RUSTKUBE_BIN_DIR="$dir" exec "$dir/bench-streaming"
