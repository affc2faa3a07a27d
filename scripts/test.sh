#!/usr/bin/env bash
# The project's test command: installs what the tests run against (etcd,
# protoc for etcd-client's build, containerd and runc with the CNI plugins,
# busybox for the test image, nftables/iptables/iproute2/conntrack for pod
# networking and kube-proxy, the local image registry, systemd for the unit
# checks, python3/openssl/curl/jq that tests call), checks for cargo-nextest
# and the stock kubectl binaries, then builds everything and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
command -v openssl >/dev/null || need+=(openssl)
[[ -x /usr/bin/python3 ]] || need+=(python3)
command -v htpasswd >/dev/null || need+=(apache2-utils)
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/portmap ]] || need+=(containernetworking-plugins)
[[ -x /usr/bin/busybox || -x /bin/busybox ]] || need+=(busybox-static)
command -v nft >/dev/null || need+=(nftables)
command -v iptables >/dev/null || need+=(iptables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v ip >/dev/null || need+=(iproute2)
command -v nsenter >/dev/null && command -v unshare >/dev/null || need+=(util-linux)
command -v script >/dev/null || need+=(bsdutils)
command -v pgrep >/dev/null || need+=(procps)
command -v docker-registry >/dev/null || need+=(docker-registry)
# init_cluster_systemd boots a real systemd in a namespace; the unit files are checked with systemd-analyze.
[[ -x /lib/systemd/systemd ]] && command -v systemd-analyze >/dev/null || need+=(systemd)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The test runner.
if ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# Stock kubectl: the tests run kubectl.1.33 and kubectl.1.32 from the directory of `kubectl` (symlinks followed).
command -v kubectl >/dev/null || {
  echo "test.sh: no kubectl in PATH; install stock kubectl 1.33 and 1.32 as kubectl.1.33 and kubectl.1.32 beside it" >&2
  exit 1
}
kubectl_dir="$(dirname "$(readlink -f "$(command -v kubectl)")")"
for v in 1.33 1.32; do
  [[ -x "$kubectl_dir/kubectl.$v" ]] || {
    echo "test.sh: $kubectl_dir/kubectl.$v is missing: the tests need stock kubectl $v there" \
      "(https://dl.k8s.io/release/v$v.0/bin/linux/amd64/kubectl)" >&2
    exit 1
  }
done

# A failed test run leaves nothing behind: every harness process is a child of its test.
cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast "$@"
