#!/usr/bin/env bash
# Brings up a cluster on this machine from what the project builds, and prints
# how to use it.
#
#   scripts/init-cluster.sh [--bin-dir DIR] [--etcd-servers URLS] [--secure-port N]
#   scripts/init-cluster.sh reset
#
# It generates the cluster's PKI and kubeconfigs (kube-pki) into
# /etc/kubernetes, starts etcd (Debian's package, TLS with client
# certificates), kube-apiserver, kube-controller-manager and kube-scheduler,
# configures containerd for the CRI with the project's CNI plugin, imports
# the locally built images, and starts the kubelet and kube-proxy, all as
# supervised background processes with logs under /var/log/kubernetes; it
# ends when the node is Ready. admin.conf is kubectl's.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CONF_DIR=/etc/kubernetes
LOG_DIR=/var/log/kubernetes
STATE_DIR=/var/lib/rustkube
RUN_DIR=/run/rustkube
BIN_DIR=""
ETCD_SERVERS=""
SECURE_PORT=6443
ETCD_PORT=2379

step() { printf '\n==> %s\n' "$*"; }
fail() { printf '\nFAILED: %s\n' "$*" >&2; exit 1; }

stop_pidfile() {
  local f="$1"
  [[ -f "$f" ]] || return 0
  local pid; pid="$(cat "$f")"
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

reset() {
  step "stopping the cluster's processes"
  for svc in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver containerd etcd; do
    stop_pidfile "$RUN_DIR/supervisor-$svc.pid"
    stop_pidfile "$RUN_DIR/$svc.pid"
  done
  step "removing pod containers, mounts, network and rules"
  pkill -9 -f 'containerd-shim-runc-v2 -namespace k8s.io' 2>/dev/null || true
  { grep -o ' /var/lib/kubelet/[^ ]*\| /run/containerd/[^ ]*' /proc/mounts 2>/dev/null || true; } | sort -r |
    while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for t in kube-proxy rustkube-cni; do nft delete table ip "$t" 2>/dev/null || true; done
  ip link del rkbr0 2>/dev/null || true
  rm -f /etc/cni/net.d/10-rustkube.conflist /opt/cni/bin/rustkube-bridge
  rm -rf /var/lib/kubelet /var/lib/cni/rustkube
  rm -f "$CONF_DIR/containerd.toml"
  step "removing state: $STATE_DIR $RUN_DIR and the PKI and kubeconfigs in $CONF_DIR"
  rm -rf "$STATE_DIR" "$RUN_DIR" "$CONF_DIR/pki" "$CONF_DIR/tokens.csv"
  rm -f "$CONF_DIR"/{admin,scheduler,controller-manager,kubelet,kube-proxy}.conf "$CONF_DIR"/kubelet-*.conf
  echo "reset done (logs kept in $LOG_DIR)"
}

# Runs a command forever in the background, restarting it when it exits, with
# its output appended to a log: the no-systemd stand-in for Restart=always.
supervise() {
  local name="$1"; shift
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  if [[ -f "$RUN_DIR/supervisor-$name.pid" ]] && kill -0 "$(cat "$RUN_DIR/supervisor-$name.pid")" 2>/dev/null; then
    echo "$name already running"
    return 0
  fi
  (
    trap 'kill "$child" 2>/dev/null; exit 0' TERM INT
    while true; do
      "$@" >>"$LOG_DIR/$name.log" 2>&1 &
      child=$!
      echo "$child" >"$RUN_DIR/$name.pid"
      wait "$child" || true
      echo "$(date -Is) $name exited; restarting in 2s" >>"$LOG_DIR/$name.log"
      sleep 2
    done
  ) </dev/null >/dev/null 2>&1 &
  echo $! >"$RUN_DIR/supervisor-$name.pid"
}

wait_until() {
  local what="$1" log="$2"; shift 2
  printf 'waiting for %s ' "$what"
  for _ in $(seq 120); do
    if "$@" >/dev/null 2>&1; then echo " ready"; return 0; fi
    printf '.'; sleep 0.5
  done
  echo
  fail "$what did not become ready; see $log"
}

if [[ "${1:-}" == "reset" ]]; then
  reset
  exit 0
fi

while (($#)); do
  case "$1" in
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    --bin-dir=*) BIN_DIR="${1#*=}"; shift ;;
    --etcd-servers) ETCD_SERVERS="$2"; shift 2 ;;
    --etcd-servers=*) ETCD_SERVERS="${1#*=}"; shift ;;
    --secure-port) SECURE_PORT="$2"; shift 2 ;;
    --secure-port=*) SECURE_PORT="${1#*=}"; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) fail "unknown argument: $1 (see --help)" ;;
  esac
done

[[ $EUID -eq 0 ]] || fail "run as root (it installs packages and writes $CONF_DIR)"

step "installing missing packages"
need=()
command -v etcd >/dev/null || need+=(etcd-server)
command -v etcdctl >/dev/null || need+=(etcd-client)
command -v curl >/dev/null || need+=(curl)
[[ -n "$BIN_DIR" ]] || command -v protoc >/dev/null || need+=(protobuf-compiler)
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/portmap ]] || need+=(containernetworking-plugins)
[[ -x /usr/bin/busybox || -x /bin/busybox ]] || need+=(busybox-static)
command -v nft >/dev/null || need+=(nftables)
command -v conntrack >/dev/null || need+=(conntrack)
command -v iptables >/dev/null || need+=(iptables)
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null || fail "apt-get install ${need[*]}"
fi
echo "ok"

if [[ -z "$BIN_DIR" ]]; then
  step "building the binaries (release)"
  (cd "$ROOT" && cargo build --release -p kube-apiserver -p kube-pki -p kube-scheduler -p kube-controller-manager \
    -p kubelet -p kube-proxy -p rustkube-cni) || fail "cargo build"
  BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
for b in kube-apiserver kube-pki kube-scheduler kube-controller-manager kubelet kube-proxy rustkube-cni; do [[ -x "$BIN_DIR/$b" ]] || fail "no $b in $BIN_DIR"; done

mkdir -p "$CONF_DIR" "$LOG_DIR" "$STATE_DIR" "$RUN_DIR"

# The address other hosts reach this one at (no packet is sent to find it).
ADVERTISE="$(ip -4 route get 10.255.255.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)"
ADVERTISE="${ADVERTISE:-127.0.0.1}"
step "generating the PKI and kubeconfigs in $CONF_DIR (advertise address $ADVERTISE)"
"$BIN_DIR/kube-pki" init --dir "$CONF_DIR" --apiserver-advertise-address "$ADVERTISE" \
  --apiserver-bind-port "$SECURE_PORT" --node-name "$(hostname)" \
  --control-plane-endpoint "https://$ADVERTISE:$SECURE_PORT" | sed 's/^/  /' || fail "kube-pki init"
PKI="$CONF_DIR/pki"

if [[ -z "$ETCD_SERVERS" ]]; then
  step "starting etcd (data in $STATE_DIR/etcd, log $LOG_DIR/etcd.log)"
  supervise etcd etcd --name=rustkube --data-dir="$STATE_DIR/etcd" \
    --listen-client-urls="https://127.0.0.1:$ETCD_PORT" --advertise-client-urls="https://127.0.0.1:$ETCD_PORT" \
    --cert-file="$PKI/etcd/server.crt" --key-file="$PKI/etcd/server.key" \
    --trusted-ca-file="$PKI/etcd/ca.crt" --client-cert-auth \
    --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
    --initial-cluster=rustkube=http://127.0.0.1:2380
  ETCD_SERVERS="https://127.0.0.1:$ETCD_PORT"
  wait_until etcd "$LOG_DIR/etcd.log" env ETCDCTL_API=3 etcdctl --endpoints="$ETCD_SERVERS" \
    --cacert="$PKI/etcd/ca.crt" --cert="$PKI/apiserver-etcd-client.crt" --key="$PKI/apiserver-etcd-client.key" endpoint health
fi

step "starting kube-apiserver (log $LOG_DIR/kube-apiserver.log)"
supervise kube-apiserver "$BIN_DIR/kube-apiserver" --etcd-servers="$ETCD_SERVERS" \
  --etcd-cafile="$PKI/etcd/ca.crt" --etcd-certfile="$PKI/apiserver-etcd-client.crt" \
  --etcd-keyfile="$PKI/apiserver-etcd-client.key" \
  --secure-port="$SECURE_PORT" --advertise-address="$ADVERTISE" \
  --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
  --client-ca-file="$PKI/ca.crt" --authorization-mode=Node,RBAC \
  --service-account-signing-key-file="$PKI/sa.key" --service-account-key-file="$PKI/sa.pub" \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local
wait_until kube-apiserver "$LOG_DIR/kube-apiserver.log" curl -sf --cacert "$PKI/ca.crt" "https://127.0.0.1:$SECURE_PORT/readyz"

CLUSTER_CIDR=10.244.0.0/16
NODE_NAME="$(hostname | tr '[:upper:]' '[:lower:]')"

step "starting kube-controller-manager (log $LOG_DIR/kube-controller-manager.log)"
supervise kube-controller-manager "$BIN_DIR/kube-controller-manager" --kubeconfig="$CONF_DIR/controller-manager.conf" \
  --authentication-kubeconfig="$CONF_DIR/controller-manager.conf" --authorization-kubeconfig="$CONF_DIR/controller-manager.conf" \
  --bind-address=127.0.0.1 --leader-elect=true --use-service-account-credentials=true --controllers='*' \
  --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
  --allocate-node-cidrs=true --cluster-cidr="$CLUSTER_CIDR"
wait_until kube-controller-manager "$LOG_DIR/kube-controller-manager.log" curl -sfk https://127.0.0.1:10257/healthz

step "starting kube-scheduler (log $LOG_DIR/kube-scheduler.log)"
supervise kube-scheduler "$BIN_DIR/kube-scheduler" --kubeconfig="$CONF_DIR/scheduler.conf" \
  --authentication-kubeconfig="$CONF_DIR/scheduler.conf" --authorization-kubeconfig="$CONF_DIR/scheduler.conf" \
  --bind-address=127.0.0.1 --leader-elect=true
wait_until kube-scheduler "$LOG_DIR/kube-scheduler.log" curl -sfk https://127.0.0.1:10259/healthz

step "configuring containerd for the CRI (CNI plugins in /opt/cni/bin, config in /etc/cni/net.d)"
mkdir -p /opt/cni/bin /etc/cni/net.d
for p in /usr/lib/cni/*; do ln -sf "$p" /opt/cni/bin/; done
ln -sf "$BIN_DIR/rustkube-cni" /opt/cni/bin/rustkube-bridge
# The CRI settings live in a config of the cluster's own (Debian's
# /etc/containerd/config.toml points the CNI at /usr/lib/cni and pulls pause:3.6).
CONTAINERD_CONFIG="$CONF_DIR/containerd.toml"
cat > "$CONTAINERD_CONFIG" <<'TOML'
# written by rustkube's init-cluster.sh
version = 2
[plugins."io.containerd.grpc.v1.cri"]
  # No CAP_SYS_RESOURCE on some hosts: never lower a process's oom_score_adj.
  restrict_oom_score_adj = true
  sandbox_image = "registry.k8s.io/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
    max_conf_num = 1
TOML
if ctr version >/dev/null 2>&1 && [[ ! -f "$RUN_DIR/supervisor-containerd.pid" ]]; then
  echo "note: a containerd this script did not start is running; it needs the CRI settings of $CONTAINERD_CONFIG"
else
  supervise containerd containerd --config "$CONTAINERD_CONFIG"
fi
wait_until containerd "$LOG_DIR/containerd.log" ctr version

step "building and importing the sandbox and test images (no internet needed)"
"$ROOT/scripts/build-images.sh" /run/containerd/containerd.sock | sed 's/^/  /' || fail "scripts/build-images.sh"
# A versioned tag too, so that the default pull policy (IfNotPresent for non-latest tags) uses the local copy.
ctr -n k8s.io images tag --force docker.io/rustkube/testimage:latest docker.io/rustkube/testimage:1.0 >/dev/null

step "starting the kubelet (log $LOG_DIR/kubelet.log)"
supervise kubelet "$BIN_DIR/kubelet" --kubeconfig="$CONF_DIR/kubelet.conf" --hostname-override="$NODE_NAME" \
  --container-runtime-endpoint=unix:///run/containerd/containerd.sock --node-ip="$ADVERTISE" \
  --cni-conf-dir=/etc/cni/net.d --cluster-cidr="$CLUSTER_CIDR" --client-ca-file="$PKI/ca.crt"
wait_until kubelet "$LOG_DIR/kubelet.log" curl -sf http://127.0.0.1:10248/healthz

step "starting kube-proxy (log $LOG_DIR/kube-proxy.log)"
supervise kube-proxy "$BIN_DIR/kube-proxy" --kubeconfig="$CONF_DIR/kube-proxy.conf" --hostname-override="$NODE_NAME" \
  --cluster-cidr="$CLUSTER_CIDR"
wait_until kube-proxy "$LOG_DIR/kube-proxy.log" curl -sf http://127.0.0.1:10256/healthz

step "waiting for node $NODE_NAME to be Ready"
wait_until "node $NODE_NAME Ready" "$LOG_DIR/kubelet.log" sh -c \
  "kubectl --kubeconfig '$CONF_DIR/admin.conf' get node '$NODE_NAME' --no-headers 2>/dev/null | grep -q ' Ready'"

step "cluster is up"
kubectl --kubeconfig "$CONF_DIR/admin.conf" get nodes || fail "kubectl get nodes"
cat <<EOF

Use it with:
  export KUBECONFIG=$CONF_DIR/admin.conf
  kubectl get nodes
  kubectl create deployment web --image=docker.io/rustkube/testimage:1.0 && kubectl expose deployment web --port=80
Logs: $LOG_DIR   Stop and remove everything: $0 reset
EOF
