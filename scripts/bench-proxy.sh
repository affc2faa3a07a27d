#!/bin/sh
# kube-proxy's nftables sync benchmark: 10,000 Services and their
# EndpointSlices (API objects, 5 endpoints each) loaded into a private
# network namespace with the real nft, then single endpoint changes timed
# along the binary's whole per-change path (cache snapshot, incremental
# conversion, diff, nft transaction). Needs root.
# Usage: scripts/bench-proxy.sh [services] [endpoints] [changes]
set -eu
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/cache/rustkube-target}"
cargo build --release -p kube-proxy --bin bench_proxy
exec "$CARGO_TARGET_DIR/release/bench_proxy" "$@"
