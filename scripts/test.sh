#!/usr/bin/env bash
# The project's test command: installs what the tests run against (etcd,
# protoc for etcd-client's build), then builds everything and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi
# A failed test run leaves nothing behind: every harness process is a child of its test.
cargo build --workspace --all-targets
cargo nextest run --workspace --no-fail-fast "$@"
