#!/usr/bin/env bash
# Brings up a cluster on this machine from what the project builds, and prints
# how to use it.
#
#   scripts/init-cluster.sh [--bin-dir DIR] [--etcd-servers URLS] [--secure-port N]
#   scripts/init-cluster.sh reset
#
# Today this generates the cluster's PKI and kubeconfigs (kube-pki) into
# /etc/kubernetes, starts etcd (Debian's package, TLS with client
# certificates) and kube-apiserver (TLS, x509 client certificates, RBAC) as
# supervised background processes with logs under /var/log/kubernetes.
# admin.conf is kubectl's. Later services join it as they land.
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
  for svc in supervisor-kube-scheduler kube-scheduler supervisor-kube-apiserver supervisor-etcd kube-apiserver etcd; do
    stop_pidfile "$RUN_DIR/$svc.pid"
  done
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
if ((${#need[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null || fail "apt-get install ${need[*]}"
fi
echo "ok"

if [[ -z "$BIN_DIR" ]]; then
  step "building the binaries (release)"
  (cd "$ROOT" && cargo build --release -p kube-apiserver -p kube-pki -p kube-scheduler) || fail "cargo build"
  BIN_DIR="${CARGO_TARGET_DIR:-$ROOT/target}/release"
fi
for b in kube-apiserver kube-pki kube-scheduler; do [[ -x "$BIN_DIR/$b" ]] || fail "no $b in $BIN_DIR"; done

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

step "starting kube-scheduler (log $LOG_DIR/kube-scheduler.log)"
supervise kube-scheduler "$BIN_DIR/kube-scheduler" --kubeconfig="$CONF_DIR/scheduler.conf" \
  --authentication-kubeconfig="$CONF_DIR/scheduler.conf" --authorization-kubeconfig="$CONF_DIR/scheduler.conf" \
  --bind-address=127.0.0.1 --leader-elect=true
wait_until kube-scheduler "$LOG_DIR/kube-scheduler.log" curl -sfk https://127.0.0.1:10259/healthz

step "cluster is up"
kubectl --kubeconfig "$CONF_DIR/admin.conf" get namespaces || fail "kubectl get namespaces"
cat <<EOF

Use it with:
  export KUBECONFIG=$CONF_DIR/admin.conf
  kubectl get ns
Logs: $LOG_DIR   Stop and remove everything: $0 reset
EOF
