#!/usr/bin/env bash
# Builds the local control plane's binaries with the machine's Go from the Go module proxy:
# kube-apiserver, kube-controller-manager and kube-scheduler from the module in
# xtask/go/kubernetes-<minor>/, etcd from xtask/go/etcd/. Both modules' go.sum are committed, so
# the build is reproducible. Binaries are cached under $ARC_CACHE_DIR; a second run only checks.
#
# Run by `cargo xtask controlplane install`, which sets:
#   K8S_MINOR (1.37), K8S_VERSION (v1.37.2), ETCD_VERSION (v3.6.16), ARC_CACHE_DIR.
set -euo pipefail

: "${K8S_MINOR:?}" "${K8S_VERSION:?}" "${ETCD_VERSION:?}" "${ARC_CACHE_DIR:?}"
GO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/../go" && pwd)"
BIN_DIR="$ARC_CACHE_DIR/kubernetes/$K8S_VERSION/bin"
ETCD_DIR="$ARC_CACHE_DIR/etcd/$ETCD_VERSION"
BINARIES=(kube-apiserver kube-controller-manager kube-scheduler)
LOG="$ARC_CACHE_DIR/build.log"

step() { CURRENT_STEP="$1"; echo "==> controlplane install: $1"; }
fail() {
  local rc=$?
  echo "error: controlplane install failed at step '${CURRENT_STEP:-start}' (exit code $rc)." >&2
  echo "       The build log is $LOG; re-run with 'bash -x $0' for a trace." >&2
  exit "$rc"
}
trap fail ERR

have_kubernetes() {
  for b in "${BINARIES[@]}"; do [ -x "$BIN_DIR/$b" ] || return 1; done
}

if have_kubernetes && [ -x "$ETCD_DIR/etcd" ]; then
  echo "==> controlplane install: Kubernetes $K8S_VERSION and etcd $ETCD_VERSION already cached in $ARC_CACHE_DIR"
  exit 0
fi

step "check Go"
if ! command -v go >/dev/null && [ -x /usr/local/go/bin/go ]; then PATH="$PATH:/usr/local/go/bin"; fi
command -v go >/dev/null || { echo "go not found on PATH: these builds need Go 1.26 or newer" >&2; false; }
# The machine's own Go builds everything; never download another toolchain behind the user's back.
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=readonly
go_version="$(go env GOVERSION)"
case "$go_version" in
  go1.2[6-9]*|go1.[3-9][0-9]*) ;;
  *) echo "$go_version is too old: Kubernetes $K8S_VERSION needs Go 1.26 or newer" >&2; false ;;
esac
mkdir -p "$ARC_CACHE_DIR"
: >"$LOG"

# Builds into a fresh directory and moves the binaries into place, so an interrupted build never
# leaves a partial binary that a later run would take for a cached one.
build() {
  local module="$1" dest="$2" ldflags="$3" pattern="$4"
  local out
  out="$(mktemp -d "$ARC_CACHE_DIR/build.XXXXXX")"
  if ! (cd "$module" && go build -trimpath -ldflags "$ldflags" -o "$out/" "$pattern") >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    rm -rf "$out"
    false
  fi
  mkdir -p "$dest"
  for f in "$out"/*; do mv -f "$f" "$dest/"; done
  rm -rf "$out"
}

if [ ! -x "$ETCD_DIR/etcd" ]; then
  step "build etcd $ETCD_VERSION (about 1 minute on 2 cores)"
  build "$GO_DIR/etcd" "$ETCD_DIR" "-s -w" .
fi

if ! have_kubernetes; then
  step "build ${BINARIES[*]} $K8S_VERSION (about 8 minutes on 2 cores)"
  major="${K8S_VERSION#v}"; major="${major%%.*}"
  minor="${K8S_MINOR#*.}"
  ldflags="-s -w"
  # What Kubernetes's own build stamps in, so the API server reports its real version.
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  build "$GO_DIR/kubernetes-$K8S_MINOR" "$BIN_DIR" "$ldflags" tool
fi

have_kubernetes
echo "==> controlplane install: done, Kubernetes $K8S_VERSION in $BIN_DIR, etcd in $ETCD_DIR"
