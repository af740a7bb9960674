# scripts/test.sh — the test runner: the tiers of `./build.sh test` (unit, fuzz, e2e, a short chaos
# soak, and unit + e2e again under ASan/UBSan), the benchmarks and the soaks. Every tier leaves one file
# build/results/<tier> holding "passed failed skipped", written by the tier itself (the unit
# binary, the fuzz loop, the e2e suite's JUnit file); `summary` adds them up into the last line,
# "N passed, N failed". Nothing is read back from a tier's console output. Sourced by build.sh.

RESULTS=build/results

# tier_result <tier> <passed> <failed> [skipped]
tier_result() { mkdir -p "$RESULTS"; echo "$2 $3 ${4:-0}" >"$RESULTS/$1"; }

# A tier that ends without writing its result failed as a whole.
tier_result_or_failed() { [ -s "$RESULTS/$1" ] || tier_result "$1" 0 1; }

tier_unit() {
  build_unit
  ensure_test_tools
  mkdir -p "$RESULTS" && rm -f "$RESULTS/unit"
  local rc=0
  WC_TEST_RESULTS=$RESULTS/unit build/unit-tests | tee build/unit.log || rc=$?
  tier_result_or_failed unit
  return $rc
}

# Runs each target for $1 seconds from the committed corpus (new inputs go to build/, not the
# repository). A crash, leak or sanitizer report fails the target.
FUZZ_TARGETS=(watch kubeconfig worker envfile apierror)
tier_fuzz() {
  local secs=${1:-20} t pass=0 fail=0
  (build_fuzz) || { tier_result fuzz 0 1; return 1; } # a subshell: the glibc flavour must not leak into later steps
  for t in "${FUZZ_TARGETS[@]}"; do
    mkdir -p "build/fuzz-corpus-$t"
    if (cd build && "./fuzz-$t" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=1024 \
          -artifact_prefix="fuzz-$t-" "fuzz-corpus-$t" "../test/fuzz/corpus/$t" >"fuzz-$t.log" 2>&1); then
      log "fuzz $t: ok (no crash in ${secs}s; build/fuzz-$t.log)"
      pass=$((pass + 1))
    else
      log "fuzz $t: FAILED, see build/fuzz-$t.log:"; tail -30 "build/fuzz-$t.log" >&2
      fail=$((fail + 1))
    fi
  done
  tier_result fuzz "$pass" "$fail"
  [ "$fail" -eq 0 ]
}

# tier_e2e <tier> <binary> <probe> <failpoint binary> [pytest args...]: one test bed (up and
# down around the suite), the suite, the counts from its JUnit file.
tier_e2e() {
  local tier=$1 bin=$2 probe=$3 fpbin=$4; shift 4
  local rc=0 junit=$ROOT/build/$tier-junit.xml
  mkdir -p "$RESULTS" && rm -f "$RESULTS/$tier" "$junit"
  test/cluster/up.sh || { tier_result "$tier" 0 1; test/cluster/down.sh || true; return 1; }
  WC_BINARY=$bin WC_PROBE=$probe WC_FAILPOINT_BINARY=$fpbin test/e2e/run.sh --junitxml="$junit" "$@" || rc=$?
  test/cluster/down.sh || rc=1
  python3 - "$junit" "$RESULTS/$tier" <<'PY' || true
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
suites = [r] if r.tag == "testsuite" else list(r)
t = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skip = sum(int(s.get("skipped", 0)) for s in suites)
open(sys.argv[2], "w").write("%d %d %d\n" % (t - bad - skip, bad, skip))
PY
  tier_result_or_failed "$tier"
  return $rc
}

tier_e2e_product() {
  build_probe
  build_failpoints
  tier_e2e e2e "$ROOT/$BIN" "$ROOT/build/wc-probe" "$ROOT/build/worker-controller-failpoints"
}

# ASan + UBSan (+ LeakSanitizer at every clean exit): the unit tests and the e2e suite again,
# with every binary built by gcc on glibc with the sanitizers (static linking and ASan do not
# mix, hence the glibc flavour of the dependencies). The binaries write reports into
# build/asan/ (compiled-in defaults: the e2e harness scrubs the controller's environment); a
# report fails the tier even when the test that caused it passed. The e2e run leaves out the
# one test that mostly waits (a real token's lifetime: 5 minutes) — the product run covers it.
ASAN_DIR=build/asan
tier_asan_unit() {
  use_glibc_deps
  build_deps
  ensure_tools
  ensure_test_tools
  gen_embed
  rm -rf "$ASAN_DIR" && mkdir -p "$ASAN_DIR/reports"
  local reports=$ROOT/$ASAN_DIR/reports/report rc=0
  compile "$ASAN_DIR/unit-tests" test/unit/unit_main.c asan "$reports" -Itest/unit
  compile "$ASAN_DIR/worker-controller" worker-controller.c asan "$reports" -DWC_FAILPOINTS
  compile "$ASAN_DIR/wc-probe" test/e2e/probe.c asan "$reports"
  mkdir -p "$RESULTS" && rm -f "$RESULTS/asan-unit"
  WC_TEST_RESULTS=$RESULTS/asan-unit "$ASAN_DIR/unit-tests" >"$ASAN_DIR/unit.log" 2>&1 || rc=$?
  tier_result_or_failed asan-unit
  [ "$rc" -eq 0 ] || tail -30 "$ASAN_DIR/unit.log" >&2
  asan_reports asan-unit || rc=1
  return $rc
}

tier_asan() {
  local rc=0
  tier_asan_unit || rc=1
  WC_SANITIZED=1 tier_e2e asan-e2e "$ROOT/$ASAN_DIR/worker-controller" "$ROOT/$ASAN_DIR/wc-probe" \
    "$ROOT/$ASAN_DIR/worker-controller" -k "not test_sandbox_token_refresh" || rc=1
  asan_reports asan-e2e || rc=1
  return $rc
}

# Sanitizer reports written since the last call count as one failure of <tier> each.
asan_reports() {
  local tier=$1 f a b c n=0
  for f in "$ASAN_DIR"/reports/report.*; do
    [ -e "$f" ] || continue
    log "sanitizer report $f:"; head -40 "$f" >&2
    mv "$f" "$ASAN_DIR/$tier-$(basename "$f")"
    n=$((n + 1))
  done
  [ "$n" -eq 0 ] && return 0
  read -r a b c <"$RESULTS/$tier" || { a=0; b=0; c=0; }
  tier_result "$tier" "$a" $((b + n)) "${c:-0}"
  return 1
}

# The chart's generated files (env template, RBAC rule files, CRDs) must equal what the binary
# generates from its tables; `worker-controller helm-env --sync-chart chart` regenerates them.
# Chaos soak (test/soak/chaos.py, RELIABILITY.md): churn + faults on a bed of its own (its
# faults kill the bed's API server, OpenKruise, controller-manager and MinIO), an invariant
# checker throughout. Arguments go to chaos.py (--minutes, --seed, --workers, --binary).
tier_chaos() {
  local bed=${WC_CHAOS_TESTBED:-/tmp/wc-bed-chaos} rc=0
  WC_TESTBED=$bed test/cluster/up.sh || { tier_result chaos 0 1; return 1; }
  WC_TESTBED=$bed "$(test/e2e/venv.sh)/bin/python" test/soak/chaos.py --binary "$ROOT/$BIN" \
    --json build/chaos.json "$@" || rc=$?
  if [ $rc -ne 0 ] && [ -d "$bed/logs" ]; then  # the bed goes: its logs stay for the diagnosis
    rm -rf build/chaos-bed-logs && cp -r "$bed/logs" build/chaos-bed-logs && log "chaos: the bed's logs are in build/chaos-bed-logs"
  fi
  WC_TESTBED=$bed test/cluster/down.sh || rc=1
  if [ $rc -eq 0 ]; then tier_result chaos 1 0; else tier_result chaos 0 1; fi
  return $rc
}

check_chart_drift() {
  "./$BIN" helm-env --check-chart chart || { log "chart/ drifted from the binary (see above)"; return 1; }
}

# summary <tier>...: one line per tier, then "N passed, N failed[, N skipped]"; fails when any did.
summary() {
  local p=0 f=0 s=0 tier a b c
  for tier in "$@"; do
    read -r a b c <"$RESULTS/$tier" || { a=0; b=1; c=0; }
    p=$((p + a)); f=$((f + b)); s=$((s + ${c:-0}))
    if [ "${c:-0}" -gt 0 ]; then log "$tier: $a passed, $b failed, $c skipped"; else log "$tier: $a passed, $b failed"; fi
  done
  if [ "$s" -gt 0 ]; then echo "$p passed, $f failed, $s skipped"; else echo "$p passed, $f failed"; fi
  [ "$f" -eq 0 ]
}

# Benchmarks (test/bench/, BENCHMARKS.md): the product binary, the C bench tools (stopwatch,
# floor, creator, pool, clear: the whole program included, like probe.c) and the
# controller-runtime peer (Go, test/bench/peer/) in build/bench/; a test bed of their own
# (WC_TESTBED, default /tmp/wc-bed-bench, started with WC_BED_FAST=1; left up,
# `WC_TESTBED=/tmp/wc-bed-bench test/cluster/down.sh` stops it); matplotlib in a venv under the
# cache for the plots. Extra arguments go to test/bench/bench.py (--full, --n50k, --help).
run_bench() {
  build_deps
  ensure_tools
  gen_embed
  compile build/bench/worker-controller worker-controller.c product
  compile build/bench/wc-bench test/bench/bench.c bench
  build_bench_peer
  export WC_TESTBED=${WC_TESTBED:-/tmp/wc-bed-bench}
  WC_BED_FAST=1 test/cluster/up.sh
  local venv=$CACHE/bench-venv
  [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import matplotlib' 2>/dev/null ||
    { python3 -m venv "$venv" && "$venv/bin/pip" install -q matplotlib; } || log "no matplotlib: plots skipped"
  python3 test/bench/bench.py "$@"
}

# The controller-runtime peer: built through the Go module proxy (versions pinned by
# test/bench/peer/go.mod and go.sum; module cache shared with test/cluster/testbin.sh), cached
# under $CACHE/bench-peer-<controller-runtime version>-<hash of the peer's source>/ so a warm
# cache never runs `go`. Neither downloaded modules nor the binary are part of the repository.
build_bench_peer() {
  local src=test/bench/peer ver key dir
  ver=$(awk '$1 == "sigs.k8s.io/controller-runtime" {print $2}' "$src/go.mod")
  key=$(cat "$src/go.mod" "$src/go.sum" "$src"/*.go | sha256sum | cut -c1-12)
  dir=$CACHE/bench-peer-$ver-$key
  if [ ! -f "$dir/.complete" ]; then
    command -v go >/dev/null || die "the bench peer needs Go (1.26) on PATH"
    log "building the controller-runtime peer ($ver) into $dir"
    mkdir -p "$dir" "$CACHE/go/mod" "$CACHE/go/build"
    (cd "$src" && GOMODCACHE=$CACHE/go/mod GOCACHE=$CACHE/go/build GOFLAGS="-mod=mod -modcacherw" GOTOOLCHAIN=local \
      CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$dir/wc-bench-peer" .) || die "building the bench peer failed"
    touch "$dir/.complete"
  fi
  mkdir -p build/bench
  ln -sfn "$dir/wc-bench-peer" build/bench/wc-bench-peer
}

# Soak (test/soak/soak.py, RELIABILITY.md): N reconciles (default 10,000) with RSS sampled;
# --valgrind runs a glibc build (-O1 -g: memcheck cannot see a static musl binary's malloc) under
# memcheck with leak checking. Uses the test bed at $WC_TESTBED, brought up if it is not.
run_soak() {
  local valgrind=0 a
  for a in "$@"; do [ "$a" = --valgrind ] && valgrind=1; done
  local bin=$ROOT/$BIN
  if [ $valgrind = 1 ]; then
    ensure_valgrind
    use_glibc_deps
    build_deps
    ensure_tools
    gen_embed
    compile build/soak/worker-controller worker-controller.c soak
    bin=$ROOT/build/soak/worker-controller
  else
    build_bin
  fi
  local envf=${WC_TESTBED:-/tmp/worker-controller-testbed}/env
  [ -f "$envf" ] || test/cluster/up.sh
  "$(test/e2e/venv.sh)/bin/python" test/soak/soak.py --binary "$bin" "$@"
}
