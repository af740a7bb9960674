#!/usr/bin/env bash
# Build (once) and cache the test bed's binaries from source through the Go module proxy:
#   kube-apiserver, kube-scheduler, kube-controller-manager, kubectl (k8s.io/kubernetes),
#   etcd (go.etcd.io/etcd/server/v3), helm (helm.sh/helm/v3), minio (github.com/minio/minio),
#   kwok (sigs.k8s.io/kwok) with the stage definitions its module ships.
#
# Each tool lands in ~/.cache/worker-controller/testbin/<tool>-<version>/ with a
# .complete stamp; a warm cache returns in well under a second without invoking go.
# Module downloads and the Go build cache live under ~/.cache/worker-controller/go/
# so CI can cache that one directory.
#
# Usage: testbin.sh            build what is missing, print the bin dir on stdout
#        testbin.sh --print    print the bin dir only (no build; exit 1 if incomplete)
#
# Environment: WC_CACHE (default ~/.cache/worker-controller), WC_TESTBIN_JOBS (1 or 2
# concurrent build groups; default 2).
set -euo pipefail

K8S_VERSION=v1.36.3          # needs go >= 1.26
ETCD_VERSION=v3.6.16         # 3.6 line; kubeadm 1.36 expects etcd 3.6
HELM_VERSION=v3.22.0         # latest v3 the proxy serves
# MinIO has no semver tags; this is the pseudo-version `go list -m ...@latest` returned.
MINIO_VERSION=v0.0.0-20260212201848-7aac2a2c5b7c
MINIO_RELEASE_TIME=2026-02-12T20:18:48Z
KWOK_VERSION=v0.8.0

WC_CACHE=${WC_CACHE:-$HOME/.cache/worker-controller}
TESTBIN_ROOT=$WC_CACHE/testbin
BED_KEY="k8s-${K8S_VERSION}_etcd-${ETCD_VERSION}_helm-${HELM_VERSION}_minio-${MINIO_VERSION##*-}_kwok-${KWOK_VERSION}"
BIN_DIR=$TESTBIN_ROOT/$BED_KEY

# The kubernetes directory holds four binaries; its name says so, so a cache made before the
# scheduler and controller-manager joined is not mistaken for a complete one.
K8S_DIR=$TESTBIN_ROOT/kubernetes-$K8S_VERSION-4bin
K8S_BINS=(kube-apiserver kube-scheduler kube-controller-manager kubectl)
KWOK_DIR=$TESTBIN_ROOT/kwok-$KWOK_VERSION
ETCD_DIR=$TESTBIN_ROOT/etcd-$ETCD_VERSION
HELM_DIR=$TESTBIN_ROOT/helm-$HELM_VERSION
MINIO_DIR=$TESTBIN_ROOT/minio-$MINIO_VERSION

log() { printf '[testbin] %s\n' "$*" >&2; }

complete() { [[ -f $1/.complete ]]; }

# Write the cache stamp only if every expected binary is there.
stamp() { # dir version binaries...
    local dir=$1 ver=$2 b; shift 2
    for b in "$@"; do
        [[ -x $dir/$b ]] || { log "$dir/$b missing after build"; return 1; }
    done
    echo "$ver" >"$dir/.complete"
}

link_all() {
    mkdir -p "$BIN_DIR"
    local b
    for b in "${K8S_BINS[@]}"; do ln -sfn "$K8S_DIR/$b" "$BIN_DIR/$b"; done
    ln -sfn "$KWOK_DIR/kwok" "$BIN_DIR/kwok"
    ln -sfn "$KWOK_DIR/stage" "$BIN_DIR/kwok-stage"
    ln -sfn "$ETCD_DIR/etcd" "$BIN_DIR/etcd"
    ln -sfn "$HELM_DIR/helm" "$BIN_DIR/helm"
    ln -sfn "$MINIO_DIR/minio" "$BIN_DIR/minio"
    cat >"$BIN_DIR/VERSIONS" <<EOF
kubernetes $K8S_VERSION
etcd $ETCD_VERSION
helm $HELM_VERSION
minio $MINIO_VERSION
kwok $KWOK_VERSION
EOF
}

all_complete() {
    complete "$K8S_DIR" && complete "$ETCD_DIR" && complete "$HELM_DIR" && complete "$MINIO_DIR" &&
        complete "$KWOK_DIR"
}

if [[ ${1:-} == --print ]]; then
    all_complete || { log "test binaries not built; run $0"; exit 1; }
    echo "$BIN_DIR"
    exit 0
fi

if all_complete; then
    [[ -x $BIN_DIR/kubectl ]] || link_all
    echo "$BIN_DIR"
    exit 0
fi

command -v go >/dev/null || { log "go is required (>= 1.26) to build the test binaries"; exit 1; }

export GOMODCACHE=$WC_CACHE/go/mod
export GOCACHE=$WC_CACHE/go/build
export GOFLAGS=-modcacherw
export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOWORK=off
SRC_ROOT=$WC_CACHE/testbin-src
LOG_DIR=$WC_CACHE/testbin-logs
mkdir -p "$SRC_ROOT" "$LOG_DIR" "$GOMODCACHE" "$GOCACHE"

# A wrapper module for a release whose go.mod replaces sibling modules with local paths
# (k8s staging, etcd's api/client/pkg). Those replaces are dropped when the module is a
# dependency, so we restate them pinned to published versions, generated from the
# release's own go.mod: every "X => ./staging/..." / "X => ../..." becomes "X => X $ver".
#   $1 wrapper dir, $2 module@version, $3 sed-expression mapping a module path to its version
wrapper_module() {
    local dir=$1 modver=$2 ver_of=$3 gomod
    rm -rf "$dir"; mkdir -p "$dir"
    gomod=$(go mod download -json "$modver" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p')
    [[ -f $gomod ]] || { log "cannot download $modver"; return 1; }
    {
        echo "module wc.local/testbin-wrapper"
        echo
        echo "go 1.26"
        echo
        echo "require ${modver%@*} ${modver#*@}"
        echo
        echo "replace ("
        # lines like "\tk8s.io/api => ./staging/src/k8s.io/api" or "\tgo.etcd.io/etcd/api/v3 => ../api"
        grep -v FORBIDDEN "$gomod" |
            sed -n 's#^[[:space:]]*\(replace[[:space:]]\+\)\{0,1\}\([^[:space:]]\+\)[[:space:]]\+=>[[:space:]]\+\.\{1,2\}/.*#\2#p' |
            sort -u | while read -r m; do
                v=$(sed "$ver_of" <<<"$m")
                echo "	$m => $m $v"
            done
        echo ")"
    } >"$dir/go.mod"
    grep -q '=>' "$dir/go.mod" || { log "no replace directives generated for $modver"; return 1; }
}

build_kubernetes() {
    complete "$K8S_DIR" && return 0
    local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
    local staging_ver="v0.${K8S_VERSION#v1.}"
    local w=$SRC_ROOT/kubernetes-$K8S_VERSION
    log "kubernetes $K8S_VERSION: wrapper module (staging modules pinned to $staging_ver)"
    wrapper_module "$w" "k8s.io/kubernetes@$K8S_VERSION" "s#.*#$staging_ver#"
    local vpkgs="k8s.io/component-base/version k8s.io/client-go/pkg/version"
    local ld="-s -w" p
    for p in $vpkgs; do
        ld+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
        ld+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    (
        cd "$w"
        local pkgs=() b
        for b in "${K8S_BINS[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
        go get "${pkgs[@]/%/@$K8S_VERSION}"
        local out=$w/out; mkdir -p "$out"
        log "kubernetes $K8S_VERSION: go build ${K8S_BINS[*]}"
        go build -trimpath -ldflags "$ld" -o "$out/" "${pkgs[@]}"
        mkdir -p "$K8S_DIR"
        for b in "${K8S_BINS[@]}"; do mv "$out/$b" "$K8S_DIR/"; done
    )
    stamp "$K8S_DIR" "$K8S_VERSION" "${K8S_BINS[@]}"
}

build_etcd() {
    complete "$ETCD_DIR" && return 0
    local w=$SRC_ROOT/etcd-$ETCD_VERSION
    log "etcd $ETCD_VERSION: wrapper module"
    # etcd's sibling modules are all released with the same version as the server.
    wrapper_module "$w" "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "s#.*#$ETCD_VERSION#"
    (
        cd "$w"
        go get go.etcd.io/etcd/server/v3@"$ETCD_VERSION"
        mkdir -p out
        log "etcd $ETCD_VERSION: go build"
        go build -trimpath -ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=${ETCD_VERSION}" \
            -o out/etcd go.etcd.io/etcd/server/v3
        mkdir -p "$ETCD_DIR"; mv out/etcd "$ETCD_DIR/etcd"
    )
    stamp "$ETCD_DIR" "$ETCD_VERSION" etcd
}

# helm and minio have no local replace directives: `go install pkg@version` builds them
# exactly as released (their own go.mod is the main module).
build_helm() {
    complete "$HELM_DIR" && return 0
    log "helm $HELM_VERSION: go install"
    local v=helm.sh/helm/v3/internal/version
    mkdir -p "$HELM_DIR"
    GOBIN=$HELM_DIR go install -trimpath \
        -ldflags "-s -w -X $v.version=$HELM_VERSION -X $v.gitTreeState=clean -X $v.metadata=" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    stamp "$HELM_DIR" "$HELM_VERSION" helm
}

build_minio() {
    complete "$MINIO_DIR" && return 0
    log "minio $MINIO_VERSION: go install"
    local c=github.com/minio/minio/cmd commit=${MINIO_VERSION##*-}
    local tag="RELEASE.${MINIO_RELEASE_TIME//:/-}"
    mkdir -p "$MINIO_DIR"
    GOBIN=$MINIO_DIR go install -trimpath \
        -ldflags "-s -w -X $c.Version=$MINIO_RELEASE_TIME -X $c.ReleaseTag=$tag -X $c.CommitID=$commit -X $c.ShortCommitID=$commit -X $c.CopyrightYear=2026" \
        "github.com/minio/minio@$MINIO_VERSION"
    stamp "$MINIO_DIR" "$MINIO_VERSION" minio
}

# kwok: `go install` builds it as released. Its standalone binary has no stages built in; the
# module ships them under kustomize/stage/, copied next to the binary so up.sh can compose its
# configuration from the released definitions instead of a copy kept in this repository.
build_kwok() {
    complete "$KWOK_DIR" && return 0
    log "kwok $KWOK_VERSION: go install"
    mkdir -p "$KWOK_DIR"
    local v=sigs.k8s.io/kwok/pkg/consts
    GOBIN=$KWOK_DIR go install -trimpath -ldflags "-s -w -X $v.Version=$KWOK_VERSION" \
        "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
    local moddir
    moddir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [[ -d $moddir/kustomize/stage ]] || { log "kwok module has no kustomize/stage"; return 1; }
    rm -rf "$KWOK_DIR/stage"; cp -r "$moddir/kustomize/stage" "$KWOK_DIR/stage"
    chmod -R u+w "$KWOK_DIR/stage"
    stamp "$KWOK_DIR" "$KWOK_VERSION" kwok
}

# One builder at a time per cache (two beds starting together on a cold cache).
mkdir -p "$TESTBIN_ROOT"
exec 8>"$TESTBIN_ROOT/.build.lock"
flock -w 3600 8 || { log "timed out waiting for $TESTBIN_ROOT/.build.lock"; exit 1; }
if all_complete; then link_all; echo "$BIN_DIR"; exit 0; fi

start=$(date +%s)
log "cold cache: building into $TESTBIN_ROOT (logs in $LOG_DIR)"
# Two groups keep both cores busy while one of them waits on downloads or the linker:
# kubernetes alone (largest), and etcd -> minio -> helm -> kwok.
# No `||` around the build functions: that would switch off `set -e` inside them.
run_group() { local f; for f in "$@"; do "$f"; done; }
if [[ ${WC_TESTBIN_JOBS:-2} -ge 2 ]]; then
    run_group build_kubernetes >"$LOG_DIR/kubernetes.log" 2>&1 &
    pid_k8s=$!
    run_group build_etcd build_minio build_helm build_kwok >"$LOG_DIR/other.log" 2>&1 &
    pid_other=$!
    rc=0
    wait $pid_k8s || { rc=1; log "kubernetes build failed:"; tail -30 "$LOG_DIR/kubernetes.log" >&2; }
    wait $pid_other || { rc=1; log "etcd/minio/helm/kwok build failed:"; tail -30 "$LOG_DIR/other.log" >&2; }
    [[ $rc == 0 ]] || exit 1
else
    run_group build_kubernetes build_etcd build_minio build_helm build_kwok >&2
fi
link_all
log "built in $(( $(date +%s) - start ))s"
echo "$BIN_DIR"
