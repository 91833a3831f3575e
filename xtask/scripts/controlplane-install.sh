#!/usr/bin/env bash
# Installs what the local Kubernetes control plane needs and builds kube-apiserver,
# kube-controller-manager and kube-scheduler v1.20.2 from Debian's `kubernetes` source package.
# The binaries are cached under $ARC_CACHE_DIR/kubernetes/<version>/bin; a second run only checks.
set -euo pipefail

K8S_VERSION="v1.20.2"
CACHE_DIR="${ARC_CACHE_DIR:-$HOME/.cache/arc-rs}"
BIN_DIR="$CACHE_DIR/kubernetes/$K8S_VERSION/bin"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler)
APT_PACKAGES=(golang-go etcd-server rsync jq openssl golang-github-modern-go-reflect2-dev)

step() { CURRENT_STEP="$1"; echo "==> controlplane install: $1"; }
fail() {
  local rc=$?
  echo "error: controlplane install failed at step '${CURRENT_STEP:-start}' (exit code $rc)." >&2
  echo "       Re-run with 'bash -x $0' for a trace; the build log, if any, is in $CACHE_DIR/build.log" >&2
  exit "$rc"
}
trap fail ERR

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

have_binaries() {
  for b in "${BINARIES[@]}"; do [ -x "$BIN_DIR/$b" ] || return 1; done
  command -v etcd >/dev/null && command -v openssl >/dev/null
}

if have_binaries; then
  echo "==> controlplane install: $K8S_VERSION already cached in $BIN_DIR"
  exit 0
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  step "apt-get update"
  $SUDO apt-get update -qq
  step "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

for b in "${BINARIES[@]}"; do
  if [ ! -x "$BIN_DIR/$b" ]; then need_build=1; fi
done
if [ -z "${need_build:-}" ]; then exit 0; fi

step "enable deb-src entries"
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources \
      | $SUDO tee /etc/apt/sources.list.d/debian-src.sources >/dev/null
  elif [ -f /etc/apt/sources.list ]; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list | $SUDO tee /etc/apt/sources.list.d/debian-src.list >/dev/null
  else
    echo "no apt sources found to derive a deb-src entry from" >&2; false
  fi
  $SUDO apt-get update -qq
fi

WORK="$CACHE_DIR/build"
mkdir -p "$WORK" "$BIN_DIR"
cd "$WORK"

step "download the kubernetes source package"
if ! ls kubernetes_*.orig.tar.gz >/dev/null 2>&1; then
  apt-get source --download-only kubernetes >/dev/null
fi

step "unpack the source"
rm -rf kubernetes-src
mkdir kubernetes-src
tar xzf kubernetes_*.orig.tar.gz -C kubernetes-src --strip-components=1
cd kubernetes-src

step "replace vendored modern-go/reflect2 with Debian's 1.0.2 (crashes under Go >= 1.18)"
rm -rf vendor/github.com/modern-go/reflect2
cp -r /usr/share/gocode/src/github.com/modern-go/reflect2 vendor/github.com/modern-go/reflect2
rm -f vendor/github.com/modern-go/reflect2/go.mod vendor/github.com/modern-go/reflect2/*_test.go

step "build ${BINARIES[*]} (about 10 minutes on 2 cores)"
mkdir -p .go/src/k8s.io && ln -sfn ../../.. .go/src/k8s.io/kubernetes
GOHOME="$(mktemp -d)"
if ! env GOPATH="$PWD/.go" CGO_ENABLED=0 GOPROXY=off GOFLAGS=-mod=vendor HOME="$GOHOME" GOCACHE="$WORK/gocache" \
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler" >"$CACHE_DIR/build.log" 2>&1; then
  tail -n 30 "$CACHE_DIR/build.log" >&2
  false
fi
rm -rf "$GOHOME"

step "cache the binaries in $BIN_DIR"
for b in "${BINARIES[@]}"; do install -m 0755 "_output/bin/$b" "$BIN_DIR/$b"; done
cd "$CACHE_DIR"
rm -rf "$WORK"
echo "==> controlplane install: done, binaries in $BIN_DIR"
