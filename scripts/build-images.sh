#!/usr/bin/env bash
# Builds the node's container images without the internet, as OCI image
# archives, and imports them into a containerd's k8s.io namespace:
#
#   registry.k8s.io/pause:3.9, rustkube/pause:latest
#       the sandbox image: only /pause, the static build of services/pause
#   rustkube/testimage:latest
#       busybox-static as /bin/busybox with its applets linked in /bin; runs
#       `httpd -f -v -p 80 -h /www` (the page says "rustkube testimage")
#   rustkube/cluster-dns:v0.1.0, rustkube/cluster-dns:latest
#       the cluster DNS add-on of deploy/dns.yaml: only /cluster-dns, the static
#       build of services/cluster-dns
#
# Usage: scripts/build-images.sh [options] [CONTAINERD_ADDRESS]
#   CONTAINERD_ADDRESS     socket to import into (default /run/containerd/containerd.sock)
#   --no-import            only build the archives
#   --out DIR              where the archives go (default /var/cache/rustkube-images);
#                          they land in DIR/<content key>/{pause,testimage,cluster-dns}.tar
#                          and are reused when the inputs (this script, services/pause,
#                          services/cluster-dns and the crates it uses, Cargo.lock,
#                          busybox) did not change
#   --push HOST:PORT       also push the images to a plain-HTTP registry (Debian's
#                          docker-registry) as HOST:PORT/pause:3.9,
#                          HOST:PORT/rustkube/pause:latest, HOST:PORT/rustkube/testimage:latest
#                          and HOST:PORT/rustkube/cluster-dns:{v0.1.0,latest}
#   --print-dir            print the archive folder on stdout when done
#
# Env: PAUSE_BIN=path uses a ready static pause binary instead of building one;
#      CLUSTER_DNS_BIN=path the same for cluster-dns;
#      BUSYBOX=path (default /usr/bin/busybox); CARGO_TARGET_DIR as for cargo.
#
# The archives are reproducible (fixed mtimes, owners and order; gzip -n), so
# the same inputs give the same digests.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
address=/run/containerd/containerd.sock
import=1
out=/var/cache/rustkube-images
push=""
print_dir=0
busybox="${BUSYBOX:-/usr/bin/busybox}"
# The tag deploy/dns.yaml names (a fixed tag: IfNotPresent uses the local copy).
cluster_dns_tag=v0.1.0

while (($#)); do
  case "$1" in
    --no-import) import=0 ;;
    --out) out="$2"; shift ;;
    --push) push="$2"; shift ;;
    --print-dir) print_dir=1 ;;
    -h|--help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build-images: unknown option $1" >&2; exit 2 ;;
    *) address="$1" ;;
  esac
  shift
done

log() { echo "build-images: $*" >&2; }
die() { log "$*"; exit 1; }

[[ -x "$busybox" ]] || die "no busybox at $busybox (apt-get install busybox-static)"
file_is_static() { ! LC_ALL=C readelf -l "$1" 2>/dev/null | grep -q 'Requesting program interpreter'; }
command -v readelf >/dev/null || readelf() { return 1; }
file_is_static "$busybox" || die "$busybox is not statically linked (apt-get install busybox-static)"

# --- the content key: everything the archives are made from ----------------
key="$(
  {
    sha256sum "$0" "$busybox"
    [[ -n "${PAUSE_BIN:-}" ]] && sha256sum "$PAUSE_BIN"
    [[ -n "${CLUSTER_DNS_BIN:-}" ]] && sha256sum "$CLUSTER_DNS_BIN"
    find "$root/services/pause" -type f -not -path '*/target/*' | LC_ALL=C sort | xargs sha256sum
    find "$root/services/cluster-dns" "$root/crates/component-base" "$root/crates/apimachinery" \
      -type f -not -path '*/target/*' | LC_ALL=C sort | xargs sha256sum
    sha256sum "$root/Cargo.lock"
  } | sed 's#  .*/#  #' | sha256sum | cut -c1-16
)"
dir="$out/$key"

sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# blob FILE LAYOUT: moves FILE into LAYOUT/blobs/sha256/<digest>; prints the digest.
blob() {
  local d
  d="$(sha "$1")"
  mkdir -p "$2/blobs/sha256"
  mv "$1" "$2/blobs/sha256/$d"
  echo "$d"
}

# make_image LAYOUT ROOTFS CONFIG_JSON_FRAGMENT REF...
# Packs ROOTFS into one gzip layer and writes an OCI image layout for it,
# with one index entry per reference name.
make_image() {
  local layout="$1" rootfs="$2" runconf="$3"
  shift 3
  mkdir -p "$layout/blobs/sha256"
  local tmp="$layout/tmp"
  mkdir -p "$tmp"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$rootfs" -cf "$tmp/layer.tar" .
  local diff_id
  diff_id="$(sha "$tmp/layer.tar")"
  gzip -n -9 "$tmp/layer.tar"
  local layer_size layer
  layer_size="$(size "$tmp/layer.tar.gz")"
  layer="$(blob "$tmp/layer.tar.gz" "$layout")"

  printf '{"architecture":"amd64","os":"linux","created":"1970-01-01T00:00:00Z","config":%s,"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"rustkube scripts/build-images.sh"}]}' \
    "$runconf" "$diff_id" >"$tmp/config.json"
  local config_size config
  config_size="$(size "$tmp/config.json")"
  config="$(blob "$tmp/config.json" "$layout")"

  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
    "$config" "$config_size" "$layer" "$layer_size" >"$tmp/manifest.json"
  local manifest_size manifest
  manifest_size="$(size "$tmp/manifest.json")"
  manifest="$(blob "$tmp/manifest.json" "$layout")"

  local entries="" ref
  for ref in "$@"; do
    entries+="${entries:+,}$(printf '{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"platform":{"architecture":"amd64","os":"linux"},"annotations":{"io.containerd.image.name":"%s","org.opencontainers.image.ref.name":"%s"}}' \
      "$manifest" "$manifest_size" "$ref" "$ref")"
  done
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "$entries" >"$layout/index.json"
  printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
  rmdir "$tmp"
  # For --push: the manifest digest of this layout.
  echo "$manifest" >"$layout.manifest"
}

# pack LAYOUT TARBALL: the OCI archive ctr imports (the layout, tarred).
pack() {
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
    -C "$1" -cf "$2.tmp" oci-layout index.json blobs
  mv "$2.tmp" "$2"
}

# static_build PACKAGE: builds the package's binary statically linked; prints its path.
static_build() {
  log "building services/$1 (static)"
  # An explicit --target keeps these RUSTFLAGS away from the host's builds
  # in a shared target dir (they get their own target/<triple> folder).
  local triple=x86_64-unknown-linux-gnu flags="-C target-feature=+crt-static -C strip=symbols"
  if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    triple=x86_64-unknown-linux-musl flags="-C strip=symbols"
  fi
  (cd "$root" && RUSTFLAGS="$flags" cargo build --quiet --release -p "$1" --target "$triple") >&2
  echo "${CARGO_TARGET_DIR:-$root/target}/$triple/release/$1"
}

build() {
  local work
  work="$(mktemp -d "$out/.build.XXXXXX")"
  trap 'rm -rf "$work"' RETURN

  # --- pause ---------------------------------------------------------------
  local pause_bin="${PAUSE_BIN:-}"
  [[ -n "$pause_bin" ]] || pause_bin="$(static_build pause)"
  file_is_static "$pause_bin" || die "$pause_bin is not statically linked"

  local r="$work/pause-rootfs"
  mkdir -p "$r"
  install -m 0755 "$pause_bin" "$r/pause"
  make_image "$work/pause" "$r" \
    '{"Entrypoint":["/pause"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/","User":"65535:65535"}' \
    registry.k8s.io/pause:3.9 docker.io/rustkube/pause:latest

  # --- testimage -------------------------------------------------------------
  r="$work/test-rootfs"
  mkdir -p "$r"/{bin,etc,tmp,www,root,var/log,usr/bin,usr/sbin,sbin}
  chmod 1777 "$r/tmp"
  install -m 0755 "$busybox" "$r/bin/busybox"
  local applet
  for applet in $("$busybox" --list); do
    [[ "$applet" == busybox || "$applet" == *"/"* ]] && continue
    ln -s busybox "$r/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' >"$r/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$r/etc/group"
  printf '<html><body><h1>rustkube testimage</h1></body></html>\n' >"$r/www/index.html"
  make_image "$work/testimage" "$r" \
    '{"Cmd":["httpd","-f","-v","-p","80","-h","/www"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/","ExposedPorts":{"80/tcp":{}}}' \
    docker.io/rustkube/testimage:latest

  # --- cluster-dns -----------------------------------------------------------
  local dns_bin="${CLUSTER_DNS_BIN:-}"
  [[ -n "$dns_bin" ]] || dns_bin="$(static_build cluster-dns)"
  file_is_static "$dns_bin" || die "$dns_bin is not statically linked"
  r="$work/dns-rootfs"
  mkdir -p "$r/etc"
  install -m 0755 "$dns_bin" "$r/cluster-dns"
  make_image "$work/cluster-dns" "$r" \
    '{"Entrypoint":["/cluster-dns"],"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"WorkingDir":"/","ExposedPorts":{"53/udp":{},"53/tcp":{},"8443/tcp":{}}}' \
    "docker.io/rustkube/cluster-dns:$cluster_dns_tag" docker.io/rustkube/cluster-dns:latest

  local staged="$work/out" image
  mkdir -p "$staged"
  for image in pause testimage cluster-dns; do
    pack "$work/$image" "$staged/$image.tar"
    cp "$work/$image.manifest" "$staged/$image.manifest"
  done
  # Publish atomically: a reader sees the whole folder or none of it.
  if ! mv -T "$staged" "$dir" 2>/dev/null; then
    [[ -f "$dir/cluster-dns.tar" ]] || die "cannot publish $dir"
  fi
}

mkdir -p "$out"
if [[ -f "$dir/pause.tar" && -f "$dir/testimage.tar" && -f "$dir/cluster-dns.tar" ]]; then
  log "images up to date in $dir"
else
  log "building images into $dir"
  build
fi

if ((import)); then
  [[ -S "$address" ]] || die "no containerd socket at $address"
  for image in pause testimage cluster-dns; do
    log "importing $image into $address (k8s.io)"
    ctr -a "$address" -n k8s.io images import --no-unpack=false "$dir/$image.tar" >&2 \
      || die "ctr import of $dir/$image.tar failed"
  done
fi

# --- push to a plain-HTTP registry (distribution v2 API) ---------------------
push_image() {
  local tarball="$1" manifest="$2" repo="$3" tag="$4" reg="http://$push"
  local layout
  layout="$(mktemp -d)"
  tar -C "$layout" -xf "$tarball"
  local d location
  for d in $(ls "$layout/blobs/sha256"); do
    [[ "$d" == "$manifest" ]] && continue
    if curl -fs -o /dev/null -I "$reg/v2/$repo/blobs/sha256:$d"; then
      continue
    fi
    location="$(curl -fsS -X POST -D - -o /dev/null "$reg/v2/$repo/blobs/uploads/" |
      tr -d '\r' | sed -n 's/^[Ll]ocation: //p')"
    [[ -n "$location" ]] || die "registry $push gave no upload location for $repo"
    [[ "$location" == http* ]] || location="$reg$location"
    case "$location" in *\?*) location+="&" ;; *) location+="?" ;; esac
    curl -fsS -X PUT -H 'Content-Type: application/octet-stream' \
      --data-binary "@$layout/blobs/sha256/$d" "${location}digest=sha256:$d" >/dev/null ||
      die "pushing blob $d to $push/$repo failed"
  done
  curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' \
    --data-binary "@$layout/blobs/sha256/$manifest" "$reg/v2/$repo/manifests/$tag" >/dev/null ||
    die "pushing manifest $push/$repo:$tag failed"
  log "pushed $push/$repo:$tag"
  rm -rf "$layout"
}

if [[ -n "$push" ]]; then
  push_image "$dir/pause.tar" "$(cat "$dir/pause.manifest")" pause 3.9
  push_image "$dir/pause.tar" "$(cat "$dir/pause.manifest")" rustkube/pause latest
  push_image "$dir/testimage.tar" "$(cat "$dir/testimage.manifest")" rustkube/testimage latest
  push_image "$dir/cluster-dns.tar" "$(cat "$dir/cluster-dns.manifest")" rustkube/cluster-dns "$cluster_dns_tag"
  push_image "$dir/cluster-dns.tar" "$(cat "$dir/cluster-dns.manifest")" rustkube/cluster-dns latest
fi

((print_dir)) && echo "$dir"
exit 0
