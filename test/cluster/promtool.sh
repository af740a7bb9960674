#!/usr/bin/env bash
# Builds and caches promtool (Prometheus' exposition-format checker) for the e2e tests.
#
#   test/cluster/promtool.sh           build if missing, print the path of the promtool binary
#   test/cluster/promtool.sh --print   print the path only if it is already built (exit 1 if not)
#
# Built from source through the Go module proxy, like the other test binaries (testbin.sh):
# `go install github.com/prometheus/prometheus/cmd/promtool@VERSION`, CGO off, trimmed, the
# version stamped. Cached under $WC_CACHE/testbin/promtool-<version>/ with a .complete stamp;
# a warm cache never runs `go`. Kept separate from testbin.sh so that the control-plane
# binaries do not depend on it: only test/e2e/test_ops.py needs promtool.
set -euo pipefail

PROMTOOL_VERSION=${WC_PROMTOOL_VERSION:-v0.316.0}
WC_CACHE=${WC_CACHE:-$HOME/.cache/worker-controller}
DIR=$WC_CACHE/testbin/promtool-$PROMTOOL_VERSION

if [[ -f $DIR/.complete && -x $DIR/promtool ]]; then
    echo "$DIR/promtool"
    exit 0
fi
[[ ${1:-} == --print ]] && exit 1

# One build at a time per cache (parallel test runs may all ask for it): wait for the other.
mkdir -p "$WC_CACHE/testbin"
exec 8>"$WC_CACHE/testbin/promtool-$PROMTOOL_VERSION.lock"
flock -w 1800 8 || { echo "[promtool] timed out waiting for another build" >&2; exit 1; }
if [[ -f $DIR/.complete && -x $DIR/promtool ]]; then
    echo "$DIR/promtool"
    exit 0
fi

command -v go >/dev/null || { echo "[promtool] go is not installed" >&2; exit 1; }
export GOMODCACHE=$WC_CACHE/go/mod
export GOCACHE=$WC_CACHE/go/build
export GOFLAGS=-modcacherw
export GOTOOLCHAIN=local
export CGO_ENABLED=0
mkdir -p "$DIR" "$WC_CACHE/testbin-logs"
LOG=$WC_CACHE/testbin-logs/promtool-$PROMTOOL_VERSION.log
echo "[promtool] go install github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION (log: $LOG)" >&2
v=github.com/prometheus/common/version
if ! GOBIN=$DIR go install -trimpath -ldflags "-s -w -X $v.Version=${PROMTOOL_VERSION#v} -X $v.Branch=release" \
    "github.com/prometheus/prometheus/cmd/promtool@$PROMTOOL_VERSION" >"$LOG" 2>&1; then
    tail -20 "$LOG" >&2
    echo "[promtool] build failed" >&2
    exit 1
fi
touch "$DIR/.complete"
echo "$DIR/promtool"
