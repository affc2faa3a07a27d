#!/usr/bin/env bash
# The project's test command: installs what the tests run against (etcd,
# protoc for etcd-client's build, containerd and runc with the CNI plugins,
# busybox for the test image, nftables/iptables/iproute2 for pod networking,
# the local image registry), then builds everything and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v curl >/dev/null || need+=(curl)
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
[[ -x /usr/bin/busybox || -x /bin/busybox ]] || need+=(busybox-static)
command -v nft >/dev/null || need+=(nftables)
command -v iptables >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null || need+=(util-linux)
command -v docker-registry >/dev/null || need+=(docker-registry)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# A failed test run leaves nothing behind: every harness process is a child of its test.
cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast "$@"
