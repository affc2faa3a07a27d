#!/usr/bin/env bash
# Brings up a cluster on this machine from what the project builds, adds
# worker nodes to it, and takes either down again.
#
#   scripts/init-cluster.sh [--bin-dir DIR] [--etcd-servers URLS [--etcd-cafile F --etcd-certfile F --etcd-keyfile F]]
#                           [--secure-port N] [--node-name N] [--no-systemd]
#       A control plane and a node on this machine: the PKI and kubeconfigs (kube-pki) in
#       /etc/kubernetes (admin.conf is kubectl's), etcd (Debian's package, TLS with client
#       certificates) unless --etcd-servers names one (an external cluster, reached with the
#       apiserver's --etcd-cafile/--etcd-certfile/--etcd-keyfile when it has a CA of its own),
#       kube-apiserver, kube-controller-manager,
#       kube-scheduler, containerd configured for the CRI with the project's CNI plugin and the
#       locally built images, the kubelet and kube-proxy; then every manifest under deploy/ (the
#       add-ons). It ends when the node is Ready and the add-ons' Deployments are available.
#   scripts/init-cluster.sh --control-plane-endpoint HOST:PORT [the options above]
#       The first node of a highly available control plane: HOST:PORT is the shared address
#       of all the apiservers (a load balancer or a virtual IP in front of them, which this
#       script does not provide). It is in the apiserver certificate's names and it is the
#       server of admin.conf, the kubelets' and kube-proxy's kubeconfigs and cluster-info;
#       etcd is a member named after the node, serving clients and peers over TLS on the
#       node's address so that more members can join. The scheduler and controller-manager
#       talk to their own node's apiserver and take turns through leader election (Leases in
#       kube-system); each apiserver uses its own node's etcd member (kubeadm's stacked etcd).
#   scripts/init-cluster.sh token create --node-name N [--control-plane] [--ttl 1h]
#       (on the control plane) Prints the command that joins node N to this cluster
#       (with --control-plane: as another control-plane node).
#   scripts/init-cluster.sh join --server https://HOST:6443 --token TOKEN
#           --discovery-token-ca-cert-hash sha256:HEX --node-name N [--control-plane]
#           [--secure-port N] [--bin-dir DIR] [--root DIR] [--no-systemd]
#       A worker node (containerd, kubelet, kube-proxy) in the cluster at --server. With
#       --control-plane (a cluster initialised with --control-plane-endpoint; --server is that
#       endpoint) also a control-plane node: it takes the shared CAs and keys (cluster CA,
#       front-proxy CA, etcd CA, service-account key pair), issues its own certificates and
#       kubeconfigs from them (kube-pki init), adds itself to etcd as a member (etcdctl member
#       add, then etcd with --initial-cluster-state=existing) and runs kube-apiserver,
#       kube-controller-manager and kube-scheduler (leader-elected) beside its node.
#   scripts/init-cluster.sh reset [--root DIR]
#       Stops what this script started here and removes the state it created.
#
# Services: where systemd is PID 1 the units of systemd/ are installed in
# /etc/systemd/system with their flags in /etc/kubernetes/<service>.env, the
# binaries in /usr/local/bin, and containerd.service gets a drop-in that points
# it at /etc/kubernetes/containerd.toml; they are enabled and started (logs:
# journalctl -u <unit>). Elsewhere, or with --no-systemd, the same commands run
# as supervised background processes (restarted when they exit) with logs
# under /var/log/kubernetes.
#
# Joining: the apiserver has no bootstrap tokens and no CertificateSigningRequest
# API, so the control plane signs the node's credentials itself. `token create`
# issues, with the cluster CA, a client certificate for system:node:<N>
# (group system:nodes) and one for system:kube-proxy, keeps them in the Secret
# kube-system/rustkube-join-<N>, and creates a ServiceAccount of the same name
# that may only get and delete that Secret and delete itself; the TOKEN is a
# TokenRequest token of that ServiceAccount (it expires after --ttl). `join`
# first reads the CA from the public ConfigMap kube-public/cluster-info
# (kubeadm's discovery) and accepts it only if the SHA-256 of its public key
# matches --discovery-token-ca-cert-hash; then, trusting that CA, it fetches the
# Secret with the token and deletes the Secret and the ServiceAccount, so a
# token joins one node once. The node's private keys travel once, over TLS
# to a verified server, to the holder of the token. A control-plane token
# (kubeadm's upload-certs, here in the same one-shot Secret) carries instead the
# CA keys and the service-account key, the etcd members' client URLs (or the
# external --etcd-servers) and the cluster's settings; the joining node signs
# its own certificates with them.
#
# Environment: READY_TIMEOUT (seconds, default 60) is how long each service may take to
# answer its health check; ADDON_TIMEOUT (default 300s) how long the add-ons' Deployments may
# take to become available. A step that fails says which it was and shows the end of its log.
# A rerun is safe: it keeps the PKI, the data and every running service whose command (binary,
# flags, unit) is unchanged, and restarts only the ones that changed.
#
# --root DIR (join and reset): every path of the node (etc/kubernetes,
# var/lib/kubelet, var/lib/containerd, run/containerd, etc/cni, opt/cni,
# var/log/kubernetes...) lives under DIR, and its containerd gets its own
# socket and state there, so that several nodes can share one machine (each in
# its own network namespace, e.g. `nsenter --net=/run/netns/w1 init-cluster.sh
# join --root /srv/w1 ...`). It implies --no-systemd (units are per machine).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SELF="$ROOT/scripts/init-cluster.sh"
MODE=init
case "${1:-}" in
  reset|join) MODE="$1"; shift ;;
  token)
    [[ "${2:-}" == "create" ]] || { echo "usage: $0 token create --node-name N [--control-plane] [--ttl 1h]" >&2; exit 2; }
    MODE=token; shift 2 ;;
esac

PREFIX=""
BIN_DIR=""
ETCD_SERVERS=""
ETCD_CAFILE=""
ETCD_CERTFILE=""
ETCD_KEYFILE=""
SECURE_PORT=6443
ETCD_PORT=2379
ETCD_PEER_PORT=2380
CLUSTER_URL=""
NO_SYSTEMD=0
NODE_NAME=""
SERVER=""
TOKEN=""
CA_HASH=""
TTL=1h
CP_ENDPOINT=""
CONTROL_PLANE=0
# How long the add-ons' Deployments may take to become available.
ADDON_TIMEOUT=${ADDON_TIMEOUT:-300s}
# How long (seconds) a service may take to pass its health check.
READY_TIMEOUT=${READY_TIMEOUT:-60}
[[ "$READY_TIMEOUT" =~ ^[0-9]+$ ]] || { echo "READY_TIMEOUT must be a number of seconds, not $READY_TIMEOUT" >&2; exit 2; }
# When this run started (for the time to a Ready node).
STARTED=$EPOCHREALTIME

# The step under way and its log, for fail's report.
STEP=""
STEP_LOG=""
step() { STEP="$*"; STEP_LOG=""; printf '\n==> %s\n' "$*"; }
# Scratch files of this run, removed when it ends.
TMP=""
scratch() { [[ -n "$TMP" ]] || { TMP="$(mktemp -d)"; trap 'rm -rf "$TMP"' EXIT; }; }
# Says what failed, in which step, and where its log is (with the log's last lines).
fail() {
  {
    printf '\nFAILED: %s\n' "$*"
    [[ -z "$STEP" ]] || printf '  in step: %s\n' "$STEP"
    if [[ -n "$STEP_LOG" ]]; then
      printf '  log: %s (last lines below)\n' "$STEP_LOG"
      if [[ "$STEP_LOG" == journalctl* ]]; then
        $STEP_LOG --no-pager -n 20 2>&1 | sed 's/^/  | /'
      elif [[ -f "$STEP_LOG" ]]; then
        tail -n 20 "$STEP_LOG" | sed 's/^/  | /'
      fi
    fi
  } >&2
  exit 1
}
# Seconds since this run started, to a tenth.
elapsed() { awk -v a="$STARTED" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

while (($#)); do
  case "$1" in
    --bin-dir) BIN_DIR="$2"; shift 2 ;;
    --bin-dir=*) BIN_DIR="${1#*=}"; shift ;;
    --etcd-servers) ETCD_SERVERS="$2"; shift 2 ;;
    --etcd-servers=*) ETCD_SERVERS="${1#*=}"; shift ;;
    --etcd-cafile) ETCD_CAFILE="$2"; shift 2 ;;
    --etcd-cafile=*) ETCD_CAFILE="${1#*=}"; shift ;;
    --etcd-certfile) ETCD_CERTFILE="$2"; shift 2 ;;
    --etcd-certfile=*) ETCD_CERTFILE="${1#*=}"; shift ;;
    --etcd-keyfile) ETCD_KEYFILE="$2"; shift 2 ;;
    --etcd-keyfile=*) ETCD_KEYFILE="${1#*=}"; shift ;;
    --secure-port) SECURE_PORT="$2"; shift 2 ;;
    --secure-port=*) SECURE_PORT="${1#*=}"; shift ;;
    --node-name) NODE_NAME="$2"; shift 2 ;;
    --node-name=*) NODE_NAME="${1#*=}"; shift ;;
    --no-systemd) NO_SYSTEMD=1; shift ;;
    --root) PREFIX="$2"; shift 2 ;;
    --root=*) PREFIX="${1#*=}"; shift ;;
    --server) SERVER="$2"; shift 2 ;;
    --server=*) SERVER="${1#*=}"; shift ;;
    --token) TOKEN="$2"; shift 2 ;;
    --token=*) TOKEN="${1#*=}"; shift ;;
    --discovery-token-ca-cert-hash) CA_HASH="$2"; shift 2 ;;
    --discovery-token-ca-cert-hash=*) CA_HASH="${1#*=}"; shift ;;
    --control-plane-endpoint) CP_ENDPOINT="$2"; shift 2 ;;
    --control-plane-endpoint=*) CP_ENDPOINT="${1#*=}"; shift ;;
    --control-plane) CONTROL_PLANE=1; shift ;;
    --ttl) TTL="$2"; shift 2 ;;
    --ttl=*) TTL="${1#*=}"; shift ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) fail "unknown argument: $1 (see --help)" ;;
  esac
done

if [[ -n "$PREFIX" ]]; then
  [[ "$MODE" == join || "$MODE" == reset ]] || fail "--root is for join and reset"
  PREFIX="$(realpath -m "$PREFIX")"
  [[ "$PREFIX" != "/" ]] || PREFIX=""
  NO_SYSTEMD=1
fi
[[ -z "$CP_ENDPOINT" || "$MODE" == init ]] || fail "--control-plane-endpoint is for init (a joining node gets it from the cluster)"
((CONTROL_PLANE == 0)) || [[ "$MODE" == join || "$MODE" == token ]] || fail "--control-plane is for token create and join"

CONF_DIR="$PREFIX/etc/kubernetes"
PKI="$CONF_DIR/pki"
LOG_DIR="$PREFIX/var/log/kubernetes"
STATE_DIR="$PREFIX/var/lib/rustkube"
RUN_DIR="$PREFIX/run/rustkube"
KUBELET_DIR="$PREFIX/var/lib/kubelet"
CNI_CONF_DIR="$PREFIX/etc/cni/net.d"
CNI_BIN_DIR="$PREFIX/opt/cni/bin"
CONTAINERD_ROOT="$PREFIX/var/lib/containerd"
CONTAINERD_STATE="$PREFIX/run/containerd"
CONTAINERD_SOCK="$CONTAINERD_STATE/containerd.sock"
CONTAINERD_CONFIG="$CONF_DIR/containerd.toml"
UNIT_DIR=/etc/systemd/system
UNIT_BIN_DIR=/usr/local/bin
# What this script installed for systemd (one path or unit a line): reset removes exactly these.
INSTALLED="$STATE_DIR/installed"
# A control-plane node's settings (CONTROL_PLANE_ENDPOINT, ETCD_NAME, EXTERNAL_ETCD), for token create and reset.
CLUSTER_ENV="$STATE_DIR/cluster.env"
ETCD_DATA="$STATE_DIR/etcd"
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/12
CLUSTER_DOMAIN=cluster.local
ADMIN=("--kubeconfig=$CONF_DIR/admin.conf")

# systemd manages the services when it is PID 1 (sd_booted's test) and neither --no-systemd nor --root says otherwise.
use_systemd() {
  ((NO_SYSTEMD == 0)) && [[ -d /run/systemd/system ]] && [[ "$(cat /proc/1/comm 2>/dev/null)" == systemd ]]
}

# The address at the 10th place of a CIDR (upstream's convention for the cluster DNS Service).
tenth_address() {
  local ip="${1%/*}" a b c d
  IFS=. read -r a b c d <<<"$ip"
  local n=$(((a << 24 | b << 16 | c << 8 | d) + 10))
  echo "$((n >> 24 & 255)).$((n >> 16 & 255)).$((n >> 8 & 255)).$((n & 255))"
}
CLUSTER_DNS="$(tenth_address "$SERVICE_CIDR")"

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

# The systemd unit of a service, and the variable of its environment file.
unit_of() { [[ "$1" == etcd ]] && echo rustkube-etcd || echo "$1"; }
env_var_of() { [[ "$1" == etcd ]] && echo ETCD_ARGS || echo "$1" | tr 'a-z-' 'A-Z_' | sed 's/$/_ARGS/'; }

reset() {
  if [[ -f "$INSTALLED" ]] && command -v systemctl >/dev/null; then
    step "stopping and removing the systemd units this script installed"
    local units; units="$(grep '\.service$' "$INSTALLED" | grep -v / || true)"
    for u in $units; do systemctl disable --now "$u" 2>/dev/null || true; done
    # containerd.service is the distribution's: stop it only if this script started it.
    if grep -qx containerd-started "$INSTALLED"; then systemctl stop containerd.service 2>/dev/null || true; fi
    grep / "$INSTALLED" | while read -r f; do rm -f "$f"; done
    rmdir "$UNIT_DIR/containerd.service.d" 2>/dev/null || true
    systemctl daemon-reload 2>/dev/null || true
    for u in $units; do systemctl reset-failed "$u" 2>/dev/null || true; done
    # The controller-manager unit's StateDirectory.
    if grep -qx kube-controller-manager.service "$INSTALLED"; then rm -rf /var/lib/kube-controller-manager; fi
  fi
  leave_etcd
  step "stopping the cluster's processes"
  for svc in kube-proxy kubelet kube-scheduler kube-controller-manager kube-apiserver containerd etcd; do
    stop_pidfile "$RUN_DIR/supervisor-$svc.pid"
    stop_pidfile "$RUN_DIR/$svc.pid"
  done
  step "removing pod containers, mounts, network and rules"
  # The pods' containers of this node's containerd (runc's state), then their shims.
  local runc_root="$CONTAINERD_STATE/runc/k8s.io"
  if [[ -d "$runc_root" ]] && command -v runc >/dev/null; then
    for c in $(runc --root "$runc_root" list -q 2>/dev/null); do
      runc --root "$runc_root" kill "$c" KILL 2>/dev/null || true
      runc --root "$runc_root" delete --force "$c" 2>/dev/null || true
    done
  fi
  pkill -9 -f "^[^ ]*containerd-shim-runc-v2 -namespace k8s.io -id [0-9a-f]+ -address $CONTAINERD_SOCK\$" 2>/dev/null || true
  { grep -o " $KUBELET_DIR/[^ ]*\| $CONTAINERD_STATE/[^ ]*\| $CONTAINERD_ROOT/[^ ]*" /proc/mounts 2>/dev/null || true; } |
    sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
  for t in kube-proxy rustkube-cni; do nft delete table ip "$t" 2>/dev/null || true; done
  ip link del rkbr0 2>/dev/null || true
  rm -f "$CNI_CONF_DIR/10-rustkube.conflist" "$CNI_BIN_DIR/rustkube-bridge"
  rm -rf "$KUBELET_DIR" "$PREFIX/var/lib/cni/rustkube"
  rm -f "$CONTAINERD_CONFIG"
  for svc in etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; do rm -f "$CONF_DIR/$svc.env"; done
  step "removing state: $STATE_DIR $RUN_DIR and the PKI and kubeconfigs in $CONF_DIR"
  rm -rf "$STATE_DIR" "$RUN_DIR" "$PKI" "$CONF_DIR/tokens.csv"
  rm -f "$CONF_DIR"/{admin,scheduler,controller-manager,kubelet,kube-proxy}.conf "$CONF_DIR"/kubelet-*.conf
  if [[ -n "$PREFIX" ]]; then
    # A node under --root owns all of its tree, its containerd's included.
    rm -rf "$CONTAINERD_ROOT" "$CONTAINERD_STATE" "$CNI_BIN_DIR" "$PREFIX/etc/cni" "$PREFIX/opt/containerd"
    rmdir "$CONF_DIR" "$PREFIX/etc" "$PREFIX/opt/cni" "$PREFIX/opt" "$PREFIX/var/lib/cni" "$PREFIX/var/lib" "$PREFIX/run" \
      2>/dev/null || true
  fi
  echo "reset done (logs kept in $LOG_DIR)"
}

# etcdctl towards $1 (comma-separated client URLs) as the apiserver's etcd client.
etcd_ctl() {
  local endpoints="$1"; shift
  ETCDCTL_API=3 etcdctl --endpoints="$endpoints" --dial-timeout=5s --command-timeout=15s --cacert="$PKI/etcd/ca.crt" \
    --cert="$PKI/apiserver-etcd-client.crt" --key="$PKI/apiserver-etcd-client.key" "$@"
}

# A control-plane node whose etcd member has peers leaves the etcd cluster before the member
# stops (as kubeadm reset does), so that the others keep their quorum.
leave_etcd() {
  [[ -f "$CLUSTER_ENV" ]] && command -v etcdctl >/dev/null || return 0
  local name members id
  name="$(sed -n 's/^ETCD_NAME=//p' "$CLUSTER_ENV")"
  [[ -n "$name" ]] || return 0
  members="$(etcd_ctl "https://127.0.0.1:$ETCD_PORT" member list 2>/dev/null)" ||
    { echo "note: the local etcd member does not answer; remove member $name with etcdctl member remove"; return 0; }
  (($(grep -c . <<<"$members") > 1)) || return 0
  id="$(awk -F', ' -v n="$name" '$3 == n { print $1 }' <<<"$members")"
  [[ -n "$id" ]] || return 0
  step "removing etcd member $name ($id) from the cluster"
  etcd_ctl "https://127.0.0.1:$ETCD_PORT" member remove "$id" | sed 's/^/  /' ||
    echo "note: could not remove etcd member $name ($id); remove it from another member with etcdctl member remove $id"
}

# Runs a command forever in the background, restarting it when it exits, with
# its output appended to a log: the no-systemd stand-in for Restart=always.
# A rerun with the same command leaves a running service alone; another command replaces it.
supervise() {
  local name="$1"; shift
  mkdir -p "$RUN_DIR" "$LOG_DIR"
  local cmd; cmd="$(printf '%q ' "$@")"
  if [[ -f "$RUN_DIR/supervisor-$name.pid" ]] && kill -0 "$(cat "$RUN_DIR/supervisor-$name.pid")" 2>/dev/null; then
    if [[ "$(cat "$RUN_DIR/$name.cmd" 2>/dev/null)" == "$cmd" ]]; then
      echo "$name already running (pid $(cat "$RUN_DIR/$name.pid" 2>/dev/null)), unchanged"
      return 0
    fi
    echo "$name: its command changed; restarting it"
    stop_pidfile "$RUN_DIR/supervisor-$name.pid"
    stop_pidfile "$RUN_DIR/$name.pid"
  fi
  printf '%s' "$cmd" >"$RUN_DIR/$name.cmd"
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

record() { mkdir -p "$STATE_DIR"; grep -qxF "$1" "$INSTALLED" 2>/dev/null || echo "$1" >>"$INSTALLED"; }

# Starts a service: a systemd unit from systemd/ with its flags in
# $CONF_DIR/<name>.env, or a supervised background process.
start_service() {
  local name="$1" program="$2"; shift 2
  if ! use_systemd; then
    supervise "$name" "$program" "$@"
    return 0
  fi
  local unit changed=""; unit="$(unit_of "$name")"
  if [[ "$program" != /usr/bin/* ]]; then
    if ! cmp -s "$program" "$UNIT_BIN_DIR/$name"; then
      install -m 0755 "$program" "$UNIT_BIN_DIR/$name.new" && mv -f "$UNIT_BIN_DIR/$name.new" "$UNIT_BIN_DIR/$name" ||
        fail "installing $UNIT_BIN_DIR/$name"
      changed+=" binary"
    fi
    record "$UNIT_BIN_DIR/$name"
  fi
  local env="$CONF_DIR/$name.env"
  printf '# written by rustkube init-cluster.sh; read by %s.service\n%s="%s"\n' "$unit" "$(env_var_of "$name")" "$*" >"$env.new"
  chmod 0600 "$env.new"
  if cmp -s "$env.new" "$env"; then rm -f "$env.new"; else mv -f "$env.new" "$env"; changed+=" flags"; fi
  if ! cmp -s "$ROOT/systemd/$unit.service" "$UNIT_DIR/$unit.service"; then
    install -m 0644 "$ROOT/systemd/$unit.service" "$UNIT_DIR/$unit.service"
    systemctl daemon-reload
    changed+=" unit"
  fi
  record "$UNIT_DIR/$unit.service"
  record "$unit.service"
  systemctl enable "$unit.service" >/dev/null 2>&1 || fail "systemctl enable $unit.service"
  # A rerun restarts the unit only if its binary, flags or unit file changed (or it is not running).
  if [[ -n "$changed" ]] || ! systemctl is-active --quiet "$unit.service"; then
    if systemctl is-active --quiet "$unit.service"; then echo "$unit.service: new${changed}; restarting it"; fi
    STEP_LOG="journalctl -u $unit"
    systemctl restart "$unit.service" || fail "systemctl restart $unit.service; see journalctl -u $unit"
  else
    echo "$unit.service already running (pid $(systemctl show -p MainPID --value "$unit.service")), unchanged"
  fi
}

log_of() { use_systemd && echo "journalctl -u $(unit_of "$1")" || echo "$LOG_DIR/$1.log"; }

# Polls a check until it passes, for up to READY_TIMEOUT seconds; $2 is the log that says why not.
wait_until() {
  local what="$1" log="$2"; shift 2
  STEP_LOG="$log"
  printf 'waiting for %s ' "$what"
  local deadline=$((SECONDS + READY_TIMEOUT))
  while :; do
    if "$@" >/dev/null 2>&1; then echo " ready"; STEP_LOG=""; return 0; fi
    ((SECONDS < deadline)) || break
    printf '.'; sleep 0.5
  done
  echo
  fail "$what did not become ready within ${READY_TIMEOUT}s; see $log"
}

install_packages() {
  step "installing missing packages"
  local need=()
  if [[ "$MODE" == init ]] || ((CONTROL_PLANE)); then
    command -v etcd >/dev/null || need+=(etcd-server)
    command -v etcdctl >/dev/null || need+=(etcd-client)
  fi
  command -v curl >/dev/null || need+=(curl)
  command -v jq >/dev/null || need+=(jq)
  command -v openssl >/dev/null || need+=(openssl)
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
  command -v kubectl >/dev/null || fail "kubectl is needed (https://kubernetes.io/docs/tasks/tools/)"
  echo "ok"
}

find_binaries() {
  if [[ -z "$BIN_DIR" ]]; then
    step "building the binaries (release; the kubelet for size, profile node)"
    (cd "$ROOT" && cargo build --release -p kube-apiserver -p kube-pki -p kube-scheduler -p kube-controller-manager \
      -p kube-proxy -p rustkube-cni && cargo build --profile node -p kubelet) || fail "cargo build"
    local target="${CARGO_TARGET_DIR:-$ROOT/target}"
    BIN_DIR="$target/rustkube-bin"
    mkdir -p "$BIN_DIR"
    for b in kube-apiserver kube-pki kube-scheduler kube-controller-manager kube-proxy rustkube-cni; do
      ln -sfn "$(realpath "$target/release/$b")" "$BIN_DIR/$b"
    done
    ln -sfn "$(realpath "$target/node/kubelet")" "$BIN_DIR/kubelet"
  fi
  BIN_DIR="$(realpath "$BIN_DIR")"
  for b in "$@"; do [[ -x "$BIN_DIR/$b" ]] || fail "no $b in $BIN_DIR"; done
}

# containerd for the CRI, the CNI plugins, the images: the same on every node.
setup_containerd() {
  step "configuring containerd for the CRI (CNI plugins in $CNI_BIN_DIR, config in $CNI_CONF_DIR)"
  mkdir -p "$CNI_BIN_DIR" "$CNI_CONF_DIR" "$CONF_DIR"
  for p in /usr/lib/cni/*; do ln -sf "$p" "$CNI_BIN_DIR/"; done
  ln -sf "$BIN_DIR/rustkube-cni" "$CNI_BIN_DIR/rustkube-bridge"
  # The CRI settings live in a config of the cluster's own (Debian's
  # /etc/containerd/config.toml points the CNI at /usr/lib/cni and pulls pause:3.6).
  local opt=""
  [[ -z "$PREFIX" ]] || opt="$(printf '[plugins."io.containerd.internal.v1.opt"]\n  path = "%s/opt/containerd"\n' "$PREFIX")"
  cat >"$CONTAINERD_CONFIG" <<TOML
# written by rustkube's init-cluster.sh
version = 2
root = "$CONTAINERD_ROOT"
state = "$CONTAINERD_STATE"
[grpc]
  address = "$CONTAINERD_SOCK"
[ttrpc]
  address = "$CONTAINERD_SOCK.ttrpc"
$opt
[plugins."io.containerd.grpc.v1.cri"]
  # No CAP_SYS_RESOURCE on some hosts: never lower a process's oom_score_adj.
  restrict_oom_score_adj = true
  sandbox_image = "registry.k8s.io/pause:3.9"
  # Pod network namespaces under the state dir, where reset finds them.
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # runc's state of this node's containers (the shim appends the namespace).
        Root = "$CONTAINERD_STATE/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1
TOML
  if use_systemd; then
    systemctl cat containerd.service >/dev/null 2>&1 || fail "no containerd.service (apt-get install containerd)"
    local dropin="$UNIT_DIR/containerd.service.d/10-rustkube.conf"
    mkdir -p "$(dirname "$dropin")"
    printf '# written by rustkube init-cluster.sh: the CRI settings of the cluster\n[Service]\nExecStart=\nExecStart=/usr/bin/containerd --config %s\n' \
      "$CONTAINERD_CONFIG" >"$dropin.new"
    if ! cmp -s "$dropin.new" "$dropin" || ! systemctl is-active --quiet containerd.service; then
      mv -f "$dropin.new" "$dropin"
      record "$dropin"
      systemctl is-active --quiet containerd.service || record containerd-started
      systemctl daemon-reload
      systemctl restart containerd.service || fail "systemctl restart containerd; see journalctl -u containerd"
    else
      rm -f "$dropin.new"
    fi
  elif ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1 && [[ ! -f "$RUN_DIR/supervisor-containerd.pid" ]]; then
    echo "note: a containerd this script did not start is running; it needs the CRI settings of $CONTAINERD_CONFIG"
  else
    supervise containerd containerd --config "$CONTAINERD_CONFIG"
  fi
  wait_until containerd "$(use_systemd && echo "journalctl -u containerd" || echo "$LOG_DIR/containerd.log")" \
    ctr --address "$CONTAINERD_SOCK" version

  step "building and importing the sandbox and test images (no internet needed)"
  "$ROOT/scripts/build-images.sh" "$CONTAINERD_SOCK" | sed 's/^/  /' || fail "scripts/build-images.sh"
  # A versioned tag too, so that the default pull policy (IfNotPresent for non-latest tags) uses the local copy.
  ctr --address "$CONTAINERD_SOCK" -n k8s.io images tag --force docker.io/rustkube/testimage:latest \
    docker.io/rustkube/testimage:1.0 >/dev/null
}

# The kubelet and kube-proxy of this node; $1 is the pod network, $2 the cluster DNS address.
start_node() {
  local cluster_cidr="$1" cluster_dns="$2"
  step "starting the kubelet (log $(log_of kubelet))"
  start_service kubelet "$BIN_DIR/kubelet" --kubeconfig="$CONF_DIR/kubelet.conf" --hostname-override="$NODE_NAME" \
    --container-runtime-endpoint="unix://$CONTAINERD_SOCK" --node-ip="$ADVERTISE" --root-dir="$KUBELET_DIR" \
    --cni-conf-dir="$CNI_CONF_DIR" --cluster-cidr="$cluster_cidr" --client-ca-file="$PKI/ca.crt" \
    --anonymous-auth=false --authentication-token-webhook=true --authorization-mode=Webhook \
    --cluster-dns="$cluster_dns" --cluster-domain="$CLUSTER_DOMAIN"
  wait_until kubelet "$(log_of kubelet)" curl -sf http://127.0.0.1:10248/healthz

  step "starting kube-proxy (log $(log_of kube-proxy))"
  start_service kube-proxy "$BIN_DIR/kube-proxy" --kubeconfig="$CONF_DIR/kube-proxy.conf" \
    --hostname-override="$NODE_NAME" --cluster-cidr="$cluster_cidr"
  wait_until kube-proxy "$(log_of kube-proxy)" curl -sf http://127.0.0.1:10256/healthz
}

node_ready() {
  kubectl --kubeconfig "$1" get node "$NODE_NAME" --no-headers 2>/dev/null | grep -q ' Ready'
}

# The SHA-256 of a certificate's public key (SubjectPublicKeyInfo, DER), as kubeadm pins a CA.
ca_hash() {
  echo "sha256:$(openssl x509 -pubkey -noout -in "$1" | openssl pkey -pubin -outform der | sha256sum | cut -d' ' -f1)"
}

# The public ConfigMap kube-public/cluster-info (the CA and the server) that `join` reads
# anonymously, and the Role that lets anyone read it (kubeadm's discovery).
publish_cluster_info() {
  step "publishing kube-public/cluster-info for joining nodes"
  scratch
  local tmp="$TMP/cluster-info.conf"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ""
  cluster:
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
    server: $CLUSTER_URL
contexts: []
users: []
EOF
  {
    kubectl "${ADMIN[@]}" -n kube-public create configmap cluster-info --from-file=kubeconfig="$tmp" \
      --dry-run=client -o yaml | kubectl "${ADMIN[@]}" apply -f - &&
      kubectl "${ADMIN[@]}" -n kube-public create role rustkube:cluster-info --verb=get --resource=configmaps \
        --resource-name=cluster-info --dry-run=client -o yaml | kubectl "${ADMIN[@]}" apply -f - &&
      kubectl "${ADMIN[@]}" -n kube-public create rolebinding rustkube:cluster-info --role=rustkube:cluster-info \
        --user=system:anonymous --dry-run=client -o yaml | kubectl "${ADMIN[@]}" apply -f -
  } | sed 's/^/  /' || fail "publishing cluster-info"
}

# Every manifest under deploy/, then each of their Deployments available.
apply_addons() {
  local dir="$ROOT/deploy"
  if [[ ! -d "$dir" ]] || ! compgen -G "$dir/*.y*ml" >/dev/null; then
    echo "no add-ons (no manifests under $dir)"
    return 0
  fi
  step "applying the add-ons in $dir"
  local out deployments
  out="$(kubectl "${ADMIN[@]}" apply -f "$dir" 2>&1)" || fail "kubectl apply -f $dir: $out"
  echo "$out" | sed 's/^/  /'
  deployments="$(kubectl "${ADMIN[@]}" get -f "$dir" -o json | jq -r '(if .kind == "List" then .items[] else . end)
    | select(.kind == "Deployment") | "\(.metadata.namespace // "default") \(.metadata.name)"')" ||
    fail "listing the add-ons' Deployments"
  while read -r ns name; do
    [[ -n "$name" ]] || continue
    printf 'waiting for Deployment %s/%s to be available (up to %s)\n' "${ns:-default}" "$name" "$ADDON_TIMEOUT"
    if ! kubectl "${ADMIN[@]}" -n "${ns:-default}" rollout status "deployment/$name" --timeout="$ADDON_TIMEOUT" |
      sed 's/^/  /'; then
      kubectl "${ADMIN[@]}" -n "${ns:-default}" get pods -o wide 2>&1 | sed 's/^/  /'
      fail "add-on Deployment ${ns:-default}/$name is not available after $ADDON_TIMEOUT; see kubectl -n ${ns:-default} describe deployment $name, and $(log_of kubelet)"
    fi
  done <<<"$deployments"
}

# https://HOST:PORT from HOST[:PORT] or https://HOST[:PORT] (the port defaults to --secure-port).
# The apiserver certificate's extra SANs: this host's names and global addresses
# (not the cluster's own bridge and pod interfaces), comma-separated.
host_sans() {
  {
    hostname
    hostname -f 2>/dev/null || true
    ip -o addr show scope global 2>/dev/null | awk '$2 !~ /^(rk|veth|cni)/ {split($4, a, "/"); print a[1]}'
  } | tr '[:upper:]' '[:lower:]' | grep -E '^([a-z0-9]([-a-z0-9.]*[a-z0-9])?|[0-9a-f:.]+)$' | sort -u | paste -sd, -
}

cluster_url() {
  local e="${1#https://}"
  e="${e%/}"
  if [[ ! "$e" =~ ^\[.*\]:[0-9]+$ && ! "$e" =~ ^[^:]+:[0-9]+$ ]]; then e="$e:$SECURE_PORT"; fi
  echo "https://$e"
}

# etcd as a member of a cluster that other control-plane nodes can join: clients and peers over
# TLS (client certificates of the etcd CA) on loopback and this node's address. $1 is the initial
# cluster (name=peer URL,...), $2 new or existing; both only count while the data dir is empty.
start_etcd_member() {
  local initial="$1" state="$2"
  step "starting etcd member $NODE_NAME (clients https://$ADVERTISE:$ETCD_PORT, peers https://$ADVERTISE:$ETCD_PEER_PORT, data in $ETCD_DATA, log $(log_of etcd))"
  start_service etcd /usr/bin/etcd --name="$NODE_NAME" --data-dir="$ETCD_DATA" \
    --listen-client-urls="https://127.0.0.1:$ETCD_PORT,https://$ADVERTISE:$ETCD_PORT" \
    --advertise-client-urls="https://$ADVERTISE:$ETCD_PORT" \
    --cert-file="$PKI/etcd/server.crt" --key-file="$PKI/etcd/server.key" \
    --trusted-ca-file="$PKI/etcd/ca.crt" --client-cert-auth \
    --listen-peer-urls="https://$ADVERTISE:$ETCD_PEER_PORT" --initial-advertise-peer-urls="https://$ADVERTISE:$ETCD_PEER_PORT" \
    --peer-cert-file="$PKI/etcd/server.crt" --peer-key-file="$PKI/etcd/server.key" \
    --peer-trusted-ca-file="$PKI/etcd/ca.crt" --peer-client-cert-auth \
    --initial-cluster="$initial" --initial-cluster-state="$state"
  ETCD_SERVERS="https://127.0.0.1:$ETCD_PORT"
  wait_until "etcd member $NODE_NAME" "$(log_of etcd)" etcd_ctl "$ETCD_SERVERS" endpoint health
}

# kube-apiserver over $ETCD_SERVERS, then kube-controller-manager and kube-scheduler (leader-elected).
start_control_plane() {
  step "starting kube-apiserver (log $(log_of kube-apiserver))"
  start_service kube-apiserver "$BIN_DIR/kube-apiserver" --etcd-servers="$ETCD_SERVERS" \
    --etcd-cafile="${ETCD_CAFILE:-$PKI/etcd/ca.crt}" --etcd-certfile="${ETCD_CERTFILE:-$PKI/apiserver-etcd-client.crt}" \
    --etcd-keyfile="${ETCD_KEYFILE:-$PKI/apiserver-etcd-client.key}" \
    --secure-port="$SECURE_PORT" --advertise-address="$ADVERTISE" --service-cluster-ip-range="$SERVICE_CIDR" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --authorization-mode=Node,RBAC --enable-admission-plugins=NodeRestriction \
    --kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" --kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
    --service-account-signing-key-file="$PKI/sa.key" --service-account-key-file="$PKI/sa.pub" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local
  wait_until kube-apiserver "$(log_of kube-apiserver)" curl -sf --cacert "$PKI/ca.crt" "https://127.0.0.1:$SECURE_PORT/readyz"

  step "starting kube-controller-manager (log $(log_of kube-controller-manager))"
  start_service kube-controller-manager "$BIN_DIR/kube-controller-manager" --kubeconfig="$CONF_DIR/controller-manager.conf" \
    --authentication-kubeconfig="$CONF_DIR/controller-manager.conf" --authorization-kubeconfig="$CONF_DIR/controller-manager.conf" \
    --bind-address=127.0.0.1 --leader-elect=true --use-service-account-credentials=true '--controllers=*' \
    --root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
    --allocate-node-cidrs=true --cluster-cidr="$CLUSTER_CIDR" --service-cluster-ip-range="$SERVICE_CIDR"
  wait_until kube-controller-manager "$(log_of kube-controller-manager)" curl -sfk https://127.0.0.1:10257/healthz

  step "starting kube-scheduler (log $(log_of kube-scheduler))"
  start_service kube-scheduler "$BIN_DIR/kube-scheduler" --kubeconfig="$CONF_DIR/scheduler.conf" \
    --authentication-kubeconfig="$CONF_DIR/scheduler.conf" --authorization-kubeconfig="$CONF_DIR/scheduler.conf" \
    --bind-address=127.0.0.1 --leader-elect=true
  wait_until kube-scheduler "$(log_of kube-scheduler)" curl -sfk https://127.0.0.1:10259/healthz
}

# Writes what token create and reset need to know about this control-plane node.
write_cluster_env() {
  mkdir -p "$STATE_DIR"
  printf 'CONTROL_PLANE_ENDPOINT=%s\nETCD_NAME=%s\nEXTERNAL_ETCD=%s\n' "$CLUSTER_URL" "$1" "$2" >"$CLUSTER_ENV"
}

token_create() {
  [[ -n "$NODE_NAME" ]] || fail "token create needs --node-name"
  [[ "$NODE_NAME" =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] || fail "--node-name must be a lowercase DNS name"
  [[ -f "$CONF_DIR/admin.conf" && -f "$PKI/ca.key" ]] || fail "no cluster here: run $0 first"
  find_binaries kube-pki
  scratch
  local name="rustkube-join-$NODE_NAME" tmp="$TMP" content=()
  if ((CONTROL_PLANE)); then
    local endpoint="" external="" members=""
    [[ -f "$CLUSTER_ENV" ]] && endpoint="$(sed -n 's/^CONTROL_PLANE_ENDPOINT=//p' "$CLUSTER_ENV")"
    [[ -n "$endpoint" ]] ||
      fail "this node was not set up with --control-plane-endpoint: no other control-plane node can join it (its clients know this apiserver only)"
    external="$(sed -n 's/^EXTERNAL_ETCD=//p' "$CLUSTER_ENV")"
    if [[ -n "$external" ]]; then
      content+=(--from-literal=external-etcd="$external")
    else
      members="$(etcd_ctl "https://127.0.0.1:$ETCD_PORT" member list -w json |
        jq -r '[.members[] | (.clientURLs // [])[]] | join(",")')" || fail "listing the etcd members"
      [[ -n "$members" ]] || fail "no etcd member has a client URL"
      content+=(--from-literal=etcd-endpoints="$members")
    fi
    # The shared CAs and keys (kubeadm's upload-certs); the joining node issues its own certificates.
    content+=(--from-literal=control-plane-endpoint="$endpoint"
      --from-file=ca.key="$PKI/ca.key" --from-file=sa.key="$PKI/sa.key" --from-file=sa.pub="$PKI/sa.pub"
      --from-file=front-proxy-ca.crt="$PKI/front-proxy-ca.crt" --from-file=front-proxy-ca.key="$PKI/front-proxy-ca.key"
      --from-file=etcd-ca.crt="$PKI/etcd/ca.crt" --from-file=etcd-ca.key="$PKI/etcd/ca.key")
  else
    "$BIN_DIR/kube-pki" kubeconfig --dir "$CONF_DIR" --user "system:node:$NODE_NAME" --groups system:nodes \
      --out "$tmp/kubelet.conf" >/dev/null || fail "kube-pki kubeconfig (node)"
    "$BIN_DIR/kube-pki" kubeconfig --dir "$CONF_DIR" --user system:kube-proxy --out "$tmp/kube-proxy.conf" >/dev/null ||
      fail "kube-pki kubeconfig (kube-proxy)"
    content+=(--from-file="$tmp/kubelet.conf" --from-file="$tmp/kube-proxy.conf")
  fi
  {
    kubectl "${ADMIN[@]}" -n kube-system create secret generic "$name" "${content[@]}" \
      --from-literal=cluster-cidr="$CLUSTER_CIDR" \
      --from-literal=cluster-dns="$CLUSTER_DNS" --dry-run=client -o yaml | kubectl "${ADMIN[@]}" apply -f - &&
      kubectl "${ADMIN[@]}" -n kube-system create serviceaccount "$name" --dry-run=client -o yaml |
      kubectl "${ADMIN[@]}" apply -f - &&
      kubectl "${ADMIN[@]}" -n kube-system create role "$name" --verb=get,delete --resource=secrets,serviceaccounts \
        --resource-name="$name" --dry-run=client -o yaml | kubectl "${ADMIN[@]}" apply -f - &&
      kubectl "${ADMIN[@]}" -n kube-system create rolebinding "$name" --role="$name" \
        --serviceaccount="kube-system:$name" --dry-run=client -o yaml | kubectl "${ADMIN[@]}" apply -f -
  } >/dev/null || fail "creating kube-system/$name"
  local token server
  token="$(kubectl "${ADMIN[@]}" -n kube-system create token "$name" --duration="$TTL")" || fail "kubectl create token"
  server="$(kubectl "${ADMIN[@]}" config view -o jsonpath='{.clusters[0].cluster.server}')"
  local cp=""
  ((CONTROL_PLANE == 0)) || cp=" --control-plane"
  echo "$SELF join --server $server --token $token --discovery-token-ca-cert-hash $(ca_hash "$PKI/ca.crt") --node-name $NODE_NAME$cp"
}

# The shared CAs and keys from the join Secret ($1), then this node's own certificates and
# kubeconfigs (kube-pki init), its etcd member and its control-plane services.
join_control_plane() {
  local secret="$1" tmp="$TMP"
  sfield() {
    local v; v="$(jq -r --arg k "$1" '.data[$k] // empty' "$secret")"
    [[ -n "$v" ]] && base64 -d <<<"$v"
  }
  CLUSTER_URL="$(sfield control-plane-endpoint)" || fail "the Secret has no control-plane-endpoint"
  step "installing the shared CAs and keys in $PKI"
  mkdir -p "$PKI/etcd"
  # The CA's key must belong to the CA discovery verified (kube-pki would otherwise reissue the CA for it).
  sfield ca.key >"$tmp/ca.key" || fail "the Secret has no ca.key"
  [[ "$(openssl pkey -in "$tmp/ca.key" -pubout 2>/dev/null)" == "$(openssl x509 -in "$PKI/ca.crt" -pubkey -noout)" ]] ||
    fail "the Secret's ca.key does not belong to the cluster's CA: refusing to join"
  local f dest mode
  for f in ca.key:ca.key:0600 sa.key:sa.key:0600 sa.pub:sa.pub:0644 front-proxy-ca.crt:front-proxy-ca.crt:0644 \
    front-proxy-ca.key:front-proxy-ca.key:0600 etcd-ca.crt:etcd/ca.crt:0644 etcd-ca.key:etcd/ca.key:0600; do
    IFS=: read -r f dest mode <<<"$f"
    sfield "$f" >"$tmp/$f" || fail "the Secret has no $f"
    install -m "$mode" "$tmp/$f" "$PKI/$dest"
  done
  echo "ok: cluster CA, front-proxy CA, etcd CA, service-account keys"

  step "issuing this node's certificates and kubeconfigs (kube-pki init; endpoint $CLUSTER_URL)"
  "$BIN_DIR/kube-pki" init --dir "$CONF_DIR" --apiserver-advertise-address "$ADVERTISE" \
    --apiserver-bind-port "$SECURE_PORT" --node-name "$NODE_NAME" --service-cidr "$SERVICE_CIDR" \
    --service-dns-domain "$CLUSTER_DOMAIN" --control-plane-endpoint "$CLUSTER_URL" \
    --apiserver-cert-extra-sans "$(host_sans)" | sed 's/^/  /' ||
    fail "kube-pki init"

  local external; external="$(sfield external-etcd || true)"
  if [[ -n "$external" ]]; then
    ETCD_SERVERS="$external"
    write_cluster_env "" "$external"
  else
    local existing peer="https://$ADVERTISE:$ETCD_PEER_PORT" out="" initial=""
    existing="$(sfield etcd-endpoints)" || fail "the Secret names no etcd member"
    write_cluster_env "$NODE_NAME" ""
    if [[ ! -d "$ETCD_DATA/member" ]]; then
      step "adding $NODE_NAME to etcd as a member (peer URL $peer) through $existing"
      # etcd refuses a new voting member until its leader has been in touch with a quorum for a
      # while (strict reconfig check): retry for a minute.
      for _ in $(seq 30); do
        if out="$(etcd_ctl "$existing" member add "$NODE_NAME" --peer-urls="$peer" 2>&1)"; then break; fi
        grep -q "already exists" <<<"$out" && break
        sleep 2
      done
      grep -q "added to cluster\|already exists" <<<"$out" || fail "etcdctl member add: $out"
      echo "  $(head -1 <<<"$out")"
      # The members by name (this one is not started yet and has none) and peer URL.
      initial="$(etcd_ctl "$existing" member list -w json | jq -r --arg me "$peer" --arg n "$NODE_NAME" \
        '[.members[] | .peerURLs[0] as $p | (if $p == $me then $n else .name end) + "=" + $p] | join(",")')" ||
        fail "listing the etcd members"
    fi
    start_etcd_member "${initial:-$NODE_NAME=$peer}" existing
  fi
  start_control_plane
  # This node's admin.conf reaches the cluster through the endpoint, like every other client.
  ADMIN=("--kubeconfig=$CONF_DIR/admin.conf")
}

join() {
  [[ -n "$SERVER" && -n "$TOKEN" && -n "$NODE_NAME" ]] || fail "join needs --server, --token and --node-name (see --help)"
  [[ -n "$CA_HASH" ]] || fail "join needs --discovery-token-ca-cert-hash (printed by '$0 token create')"
  [[ $EUID -eq 0 ]] || fail "run as root"
  install_packages
  if ((CONTROL_PLANE)); then
    find_binaries kube-apiserver kube-pki kube-scheduler kube-controller-manager kubelet kube-proxy rustkube-cni
  else
    find_binaries kubelet kube-proxy rustkube-cni
  fi
  mkdir -p "$CONF_DIR" "$PKI" "$LOG_DIR" "$STATE_DIR" "$RUN_DIR"
  SERVER="${SERVER%/}"
  local host="${SERVER#https://}"; host="${host%:*}"; host="${host#[}"; host="${host%]}"
  # The address the control plane reaches this node at: the source of the route to the server.
  local server_ip; server_ip="$(getent ahostsv4 "$host" | awk '{print $1; exit}')"
  ADVERTISE="$(ip -4 route get "${server_ip:-$host}" 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)"
  [[ -n "$ADVERTISE" ]] || fail "no route to $host"

  step "discovering the cluster CA at $SERVER (kube-public/cluster-info) and checking it against $CA_HASH"
  scratch
  local tmp="$TMP"
  curl -sfk --max-time 10 "$SERVER/api/v1/namespaces/kube-public/configmaps/cluster-info" >"$tmp/cluster-info" ||
    fail "cannot read cluster-info from $SERVER"
  jq -r '.data.kubeconfig' "$tmp/cluster-info" | sed -n 's/^ *certificate-authority-data: *//p' | head -1 |
    base64 -d >"$tmp/ca.crt" 2>/dev/null || fail "cluster-info has no CA"
  local got; got="$(ca_hash "$tmp/ca.crt")"
  [[ "$got" == "$CA_HASH" ]] || fail "the server's CA has public key hash $got, not $CA_HASH: refusing to join"
  echo "ok: $got"

  local name="rustkube-join-$NODE_NAME" api="$SERVER/api/v1/namespaces/kube-system"
  step "fetching this node's credentials (kube-system/$name) with the token"
  local auth=(--cacert "$tmp/ca.crt" -H "Authorization: Bearer $TOKEN")
  curl -sf --max-time 10 "${auth[@]}" "$api/secrets/$name" >"$tmp/secret" ||
    fail "the token cannot read kube-system/$name (expired, used, or made for another node?)"
  field() { jq -er --arg k "$1" '.data[$k]' "$tmp/secret" | base64 -d; }
  if ((CONTROL_PLANE)); then
    jq -e '.data["ca.key"]' "$tmp/secret" >/dev/null ||
      fail "kube-system/$name was made for a worker: create the token with 'token create --control-plane'"
  else
    jq -e '.data["kubelet.conf"]' "$tmp/secret" >/dev/null ||
      fail "kube-system/$name was made for a control-plane node: join with --control-plane"
  fi
  local cluster_cidr cluster_dns
  cluster_cidr="$(field cluster-cidr)" && cluster_dns="$(field cluster-dns)" || fail "$name lacks the cluster settings"
  install -m 0644 "$tmp/ca.crt" "$PKI/ca.crt"
  if ((CONTROL_PLANE == 0)); then
    # The kubeconfigs name the server this node was told to use.
    for f in kubelet.conf kube-proxy.conf; do
      field "$f" | sed "s#^\( *server:\).*#\1 $SERVER#" >"$tmp/$f" || fail "$name has no $f"
      install -m 0600 "$tmp/$f" "$CONF_DIR/$f"
    done
  fi
  # One node per token: the Secret and the ServiceAccount (which invalidates the token) go, at
  # once (the Secret of a control-plane node carries the cluster's CA keys).
  curl -sf --max-time 10 "${auth[@]}" -X DELETE "$api/secrets/$name" >/dev/null || echo "note: could not delete kube-system/$name"
  curl -sf --max-time 10 "${auth[@]}" -X DELETE "$api/serviceaccounts/$name" >/dev/null ||
    echo "note: could not delete ServiceAccount kube-system/$name"
  if ((CONTROL_PLANE)); then
    join_control_plane "$tmp/secret"
  fi

  setup_containerd
  start_node "$cluster_cidr" "$cluster_dns"
  step "waiting for node $NODE_NAME to be Ready"
  wait_until "node $NODE_NAME Ready" "$(log_of kubelet)" node_ready "$CONF_DIR/kubelet.conf"
  echo
  echo "node $NODE_NAME Ready $(elapsed) s after join started"
  if ((CONTROL_PLANE)); then
    echo "control-plane node $NODE_NAME joined $CLUSTER_URL (apiserver https://$ADVERTISE:$SECURE_PORT, etcd member $NODE_NAME)"
    echo "kubectl: export KUBECONFIG=$CONF_DIR/admin.conf"
  fi
  echo "node $NODE_NAME joined $SERVER; remove it with: $0 reset${PREFIX:+ --root $PREFIX} (and kubectl delete node $NODE_NAME)"
}

init() {
  [[ $EUID -eq 0 ]] || fail "run as root (it installs packages and writes $CONF_DIR)"
  install_packages
  find_binaries kube-apiserver kube-pki kube-scheduler kube-controller-manager kubelet kube-proxy rustkube-cni
  mkdir -p "$CONF_DIR" "$LOG_DIR" "$STATE_DIR" "$RUN_DIR"
  if use_systemd; then echo "services: systemd units (systemd is PID 1)"; else echo "services: supervised background processes"; fi
  NODE_NAME="${NODE_NAME:-$(hostname | tr '[:upper:]' '[:lower:]')}"

  # The address other hosts reach this one at (no packet is sent to find it).
  ADVERTISE="$(ip -4 route get 10.255.255.255 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p' | head -1)"
  ADVERTISE="${ADVERTISE:-127.0.0.1}"
  CLUSTER_URL="https://$ADVERTISE:$SECURE_PORT"
  [[ -z "$CP_ENDPOINT" ]] || CLUSTER_URL="$(cluster_url "$CP_ENDPOINT")"
  step "generating the PKI and kubeconfigs in $CONF_DIR (advertise address $ADVERTISE, clients use $CLUSTER_URL)"
  "$BIN_DIR/kube-pki" init --dir "$CONF_DIR" --apiserver-advertise-address "$ADVERTISE" \
    --apiserver-bind-port "$SECURE_PORT" --node-name "$NODE_NAME" --service-cidr "$SERVICE_CIDR" \
    --service-dns-domain "$CLUSTER_DOMAIN" --apiserver-cert-extra-sans "$(host_sans)" \
    --control-plane-endpoint "$CLUSTER_URL" | sed 's/^/  /' || fail "kube-pki init"

  if [[ -n "$ETCD_SERVERS" ]]; then
    [[ -z "$CP_ENDPOINT" ]] || write_cluster_env "" "$ETCD_SERVERS"
    # An external etcd with a CA of its own: its files are kept with the cluster's PKI
    # (where a hardened unit can read them), and the apiserver uses those copies.
    if [[ -n "$ETCD_CAFILE$ETCD_CERTFILE$ETCD_KEYFILE" ]]; then
      [[ -n "$ETCD_CAFILE" && -n "$ETCD_CERTFILE" && -n "$ETCD_KEYFILE" ]] ||
        fail "--etcd-cafile, --etcd-certfile and --etcd-keyfile go together"
      step "using external etcd $ETCD_SERVERS with its own CA"
      install -d -m 0755 "$PKI/external-etcd"
      install -m 0644 "$ETCD_CAFILE" "$PKI/external-etcd/ca.crt" || fail "reading --etcd-cafile $ETCD_CAFILE"
      install -m 0644 "$ETCD_CERTFILE" "$PKI/external-etcd/client.crt" || fail "reading --etcd-certfile $ETCD_CERTFILE"
      install -m 0600 "$ETCD_KEYFILE" "$PKI/external-etcd/client.key" || fail "reading --etcd-keyfile $ETCD_KEYFILE"
      ETCD_CAFILE="$PKI/external-etcd/ca.crt" ETCD_CERTFILE="$PKI/external-etcd/client.crt"
      ETCD_KEYFILE="$PKI/external-etcd/client.key"
    fi
  elif [[ -n "$CP_ENDPOINT" ]]; then
    write_cluster_env "$NODE_NAME" ""
    start_etcd_member "$NODE_NAME=https://$ADVERTISE:$ETCD_PEER_PORT" new
  else
    step "starting etcd (data in $ETCD_DATA, log $(log_of etcd))"
    start_service etcd /usr/bin/etcd --name=rustkube --data-dir="$ETCD_DATA" \
      --listen-client-urls="https://127.0.0.1:$ETCD_PORT" --advertise-client-urls="https://127.0.0.1:$ETCD_PORT" \
      --cert-file="$PKI/etcd/server.crt" --key-file="$PKI/etcd/server.key" \
      --trusted-ca-file="$PKI/etcd/ca.crt" --client-cert-auth \
      --listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
      --initial-cluster=rustkube=http://127.0.0.1:2380
    ETCD_SERVERS="https://127.0.0.1:$ETCD_PORT"
    wait_until etcd "$(log_of etcd)" etcd_ctl "$ETCD_SERVERS" endpoint health
  fi

  start_control_plane
  publish_cluster_info
  setup_containerd
  start_node "$CLUSTER_CIDR" "$CLUSTER_DNS"

  step "waiting for node $NODE_NAME to be Ready"
  wait_until "node $NODE_NAME Ready" "$(log_of kubelet)" node_ready "$CONF_DIR/admin.conf"
  local ready_after; ready_after="$(elapsed)"
  apply_addons

  step "cluster is up"
  kubectl "${ADMIN[@]}" get nodes || fail "kubectl get nodes"
  local more="Add a worker: $0 token create --node-name NAME   (prints the join command to run on it)"
  [[ -z "$CP_ENDPOINT" ]] || more="$more
Add a control-plane node: $0 token create --node-name NAME --control-plane
  (the load balancer at $CLUSTER_URL must reach its apiserver on port $SECURE_PORT)"
  cat <<EOF

Use it with:
  export KUBECONFIG=$CONF_DIR/admin.conf
  kubectl get nodes
  kubectl create deployment web --image=docker.io/rustkube/testimage:1.0 && kubectl expose deployment web --port=80
$more
Logs: $(use_systemd && echo "journalctl -u kube-apiserver (and the other units)" || echo "$LOG_DIR")   Stop and remove everything: $0 reset

node $NODE_NAME Ready $ready_after s after init-cluster.sh started; add-ons available after $(elapsed) s
EOF
}

case "$MODE" in
  reset) reset ;;
  token) token_create ;;
  join) join ;;
  init) init ;;
esac
