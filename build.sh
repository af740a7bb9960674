#!/usr/bin/env bash
# worker-controller build script: dependencies, embedded assets, the static binary, tests.
#
#   ./build.sh            build ./worker-controller (deps are fetched/built once and cached)
#   ./build.sh test       everything: build, chart drift, unit, fuzz (short), e2e, a short chaos soak,
#                         then unit+e2e again under ASan+UBSan; ends with "N passed, N failed"
#   ./build.sh unit       build and run the unit tests only
#   ./build.sh e2e        run the e2e tier only (brings the test bed up and down)
#   ./build.sh test-asan  the unit and e2e tiers under ASan+UBSan+LSan (glibc build)
#   ./build.sh fuzz [S]   build the libFuzzer targets and run each for S seconds (default 60)
#   ./build.sh bench [--full|--n50k]  product vs controller-runtime peer vs floor (short: N=200; BENCHMARKS.md)
#   ./build.sh soak [--valgrind]  10,000 reconciles, RSS sampled (valgrind: leak check; RELIABILITY.md)
#   ./build.sh soak-chaos [--minutes N] [--seed S]  churn + faults + invariant checker (RELIABILITY.md)
#   ./build.sh deps       fetch, verify and build the static dependencies only (deps-glibc: the
#                         sanitizer flavour)
#   ./build.sh clean      remove build outputs (the dependency cache stays; see --help)
#
# Why a shell script and not make: the expensive part is the dependency cache, keyed by the
# lock file's contents, and everything after it compiles one translation unit in seconds.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$ROOT"

CACHE=${WC_CACHE:-$HOME/.cache/worker-controller}
LOCK=vendor/deps.lock
LOCK_HASH=$(sha256sum "$LOCK" | cut -c1-16)
# The dependency flavour: musl (the product: static) or glibc (the sanitizer builds: ASan and
# valgrind need glibc's dynamic loader). Each has its own cache directory.
DEP_FLAVOUR=musl
DEPCC=musl-gcc
DEPS=$CACHE/deps/$LOCK_HASH          # include/ lib/ versions.h: the static libraries
CC_MAIN=musl-gcc                      # the compiler of our own translation unit
LINK_MODE=(-static)
SRCDL=$CACHE/src                      # downloaded source package files, verified on every use
GEN=build/gen                         # generated C (embedded assets)
BIN=worker-controller
PROJECT_VERSION=$(cat VERSION)

# -Wno-unused-function: every module is `static` in one translation unit, so a helper that one
# build variant (binary, unit tests, fuzzers) does not call would otherwise fail the build.
# -Wno-format-truncation: bounded messages (errors, timestamps) truncate by design.
set_flags() {
  CFLAGS_COMMON=(-std=c11 -Wno-unused-function -Wno-format-truncation -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes
                 -Wno-unused-parameter -fno-strict-aliasing -I"$DEPS/include" -I"$GEN" -Isrc)
  LIBS=(-L"$DEPS/lib" -lcurl -lbearssl -lcjson -lyaml -lpthread)
}
set_flags

# The sanitizer builds (test-asan, valgrind): glibc and gcc, dynamically linked (ASan needs the
# dynamic loader), from the same verified sources, in a cache directory of their own.
use_glibc_deps() {
  DEP_FLAVOUR=glibc
  DEPCC=gcc
  DEPS=$CACHE/deps/$LOCK_HASH-glibc
  CC_MAIN=gcc
  LINK_MODE=()
  set_flags
}

log() { printf '[build] %s\n' "$*" >&2; }
die() { printf '[build] error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------------------------------------
# Host tools. Installed on demand so a fresh machine (and CI) needs nothing up front.
need_apt=()
need_tool() { command -v "$1" >/dev/null 2>&1 || need_apt+=("$2"); }
ensure_tools() {
  need_tool musl-gcc musl-tools
  need_tool dpkg-source dpkg-dev
  need_tool quilt quilt
  need_tool autoreconf autoconf
  need_tool automake automake
  need_tool libtoolize libtool
  need_tool xxd xxd
  need_tool file file
  if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing host tools: ${need_apt[*]}"
    apt_update_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
}

APT_UPDATED=
apt_update_once() {
  [ -n "$APT_UPDATED" ] && return 0
  apt-get update -qq >/dev/null
  APT_UPDATED=1
}

# apt-get source needs deb-src entries; derive them from the binary entries so the suites and
# mirrors are exactly the machine's own.
ensure_deb_src() {
  local f=/etc/apt/sources.list.d/worker-controller-src.sources
  if [ ! -f "$f" ] && [ -f /etc/apt/sources.list.d/debian.sources ]; then
    log "adding deb-src entries ($f)"
    sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$f"
    APT_UPDATED=
  elif [ ! -f "$f" ] && [ -f /etc/apt/sources.list ]; then
    sed -n 's/^deb /deb-src /p' /etc/apt/sources.list >/etc/apt/sources.list.d/worker-controller-src.list
    APT_UPDATED=
  fi
  apt_update_once
}

# ---------------------------------------------------------------------------------------------
# Dependencies: fetch, verify against the lock, build static with musl.

lock_rows() { grep -v '^#' "$LOCK" | awk 'NF==4'; }

verify_file() { # name file sha
  local got
  got=$(sha256sum "$SRCDL/$2" | cut -d' ' -f1)
  [ "$got" = "$3" ] || die "$2 ($1): sha256 mismatch: lock says $3, downloaded file is $got. Refusing to build from unverified sources."
}

fetch_sources() {
  mkdir -p "$SRCDL"
  local missing=() name version file sha
  while read -r name version file sha; do
    [ -f "$SRCDL/$file" ] || missing+=("$name=$version")
  done < <(lock_rows)
  if [ ${#missing[@]} -gt 0 ]; then
    ensure_deb_src
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    log "fetching source packages: ${missing[*]}"
    (cd "$SRCDL" && apt-get source --download-only "${missing[@]}" >/dev/null 2>&1) ||
      die "apt-get source ${missing[*]} failed (is a bookworm deb-src entry reachable? are these versions still served?)"
  fi
  while read -r name version file sha; do
    [ -f "$SRCDL/$file" ] || die "$file ($name $version) was not downloaded"
    verify_file "$name" "$file" "$sha"
  done < <(lock_rows)
}

# Unpack a verified source package with its Debian patches applied into $1/<name>.
unpack() { # workdir name
  local name=$2 dsc
  dsc=$(lock_rows | awk -v n="$name" '$1==n && $3 ~ /\.dsc$/ {print $3}')
  (cd "$1" && dpkg-source --no-check -x "$SRCDL/$dsc" "$name" >/dev/null 2>&1) || die "dpkg-source -x $dsc failed"
}

build_bearssl() { # work
  unpack "$1" bearssl
  cat >"$1/bearssl/conf/musl.mk" <<EOF
include conf/Unix.mk
BUILD = musl
CC = $DEPCC
CFLAGS = -W -Wall -Os -fPIC
LD = $DEPCC
LDDLL = $DEPCC
DLL = no
TOOLS = no
TESTS = no
EOF
  make -C "$1/bearssl" CONF=musl lib -j"$(nproc)" >"$1/bearssl.log" 2>&1 || { tail -20 "$1/bearssl.log"; die "BearSSL build failed"; }
  cp "$1/bearssl/musl/libbearssl.a" "$STAGE/lib/"
  cp "$1"/bearssl/inc/*.h "$STAGE/include/"
}

build_cjson() {
  unpack "$1" cjson
  (cd "$1/cjson" && $DEPCC -std=c89 -Os -fPIC -c cJSON.c -o cJSON.o && ar rcs libcjson.a cJSON.o) ||
    die "cJSON build failed"
  cp "$1/cjson/libcjson.a" "$STAGE/lib/"
  mkdir -p "$STAGE/include/cjson" && cp "$1/cjson/cJSON.h" "$STAGE/include/cjson/"
}

build_libyaml() {
  unpack "$1" libyaml
  (cd "$1/libyaml" &&
    for c in src/*.c; do
      $DEPCC -Os -fPIC -Iinclude -DYAML_VERSION_MAJOR=0 -DYAML_VERSION_MINOR=2 -DYAML_VERSION_PATCH=5 \
        -DYAML_VERSION_STRING='"0.2.5"' -DYAML_DECLARE_STATIC -c "$c" -o "${c%.c}.o" || exit 1
    done && ar rcs libyaml.a src/*.o) || die "libyaml build failed"
  cp "$1/libyaml/libyaml.a" "$STAGE/lib/"
  cp "$1/libyaml/include/yaml.h" "$STAGE/include/"
}

build_curl() {
  unpack "$1" curl
  # Debian's last two patches rename the library for its gnutls and nss flavours; we want plain
  # libcurl, so take them off again, then regenerate configure from the patched configure.ac.
  (cd "$1/curl" && export QUILT_PATCHES=debian/patches &&
    [ "$(tail -n1 debian/patches/series)" = 99_nss.patch ] &&
    quilt pop -q >/dev/null && quilt pop -q >/dev/null) || die "curl: could not unapply Debian's gnutls/nss rename patches"
  (cd "$1/curl" && autoreconf -fi >"$1/curl-autoreconf.log" 2>&1) || die "curl: autoreconf failed (see $1/curl-autoreconf.log)"
  # Every protocol but HTTP(S) off, no CA bundle (the cluster CA is always passed in memory),
  # verbose error strings kept, crypto-auth kept (without it CURLOPT_AWS_SIGV4 signs nothing).
  (cd "$1/curl" && CC=$DEPCC CFLAGS=-Os PKG_CONFIG=/bin/false ./configure \
      --disable-shared --enable-static --with-bearssl="$STAGE" \
      --without-ca-bundle --without-ca-path --without-ca-fallback \
      --without-zlib --without-brotli --without-zstd --without-libidn2 --without-libpsl \
      --without-nghttp2 --without-nghttp3 --without-ngtcp2 --without-librtmp --without-libssh2 \
      --without-libssh --without-libgsasl --without-hyper --without-quiche --without-msh3 \
      --disable-ftp --disable-file --disable-ldap --disable-ldaps --disable-rtsp --disable-dict \
      --disable-telnet --disable-tftp --disable-pop3 --disable-imap --disable-smb --disable-smtp \
      --disable-gopher --disable-mqtt --disable-manual --disable-cookies --disable-ntlm \
      --disable-unix-sockets --disable-alt-svc --disable-docs \
      --enable-crypto-auth --enable-verbose --enable-threaded-resolver --enable-symbol-hiding \
      >"$1/curl-configure.log" 2>&1) || { tail -20 "$1/curl-configure.log"; die "curl: configure failed"; }
  grep -q 'SSL:.*enabled (BearSSL)' "$1/curl-configure.log" || die "curl: configure did not select BearSSL"
  make -C "$1/curl/lib" -j"$(nproc)" >"$1/curl-make.log" 2>&1 || { tail -20 "$1/curl-make.log"; die "curl: make failed"; }
  cp "$1/curl/lib/.libs/libcurl.a" "$STAGE/lib/"
  mkdir -p "$STAGE/include/curl" && cp "$1"/curl/include/curl/*.h "$STAGE/include/curl/"
}

build_deps() {
  if [ -f "$DEPS/.complete" ]; then
    log "dependencies: cached ($DEPS)"
    return 0
  fi
  ensure_tools
  fetch_sources
  local t0=$SECONDS work
  work=$(mktemp -d "${TMPDIR:-/tmp}/wc-deps.XXXXXX")
  STAGE="$work/stage"
  mkdir -p "$STAGE/include" "$STAGE/lib"
  log "building static dependencies ($DEP_FLAVOUR, $DEPCC) in $work"
  build_bearssl "$work"
  build_cjson "$work"
  build_libyaml "$work"
  build_curl "$work"
  # Record the linked versions: `worker-controller version` prints them.
  {
    echo "/* generated by build.sh from $LOCK */"
    lock_rows | awk '{print $1, $2}' | sort -u | while read -r n v; do
      printf '#define WC_DEP_%s_DEBIAN "%s"\n' "$(echo "$n" | tr a-z A-Z)" "$v"
    done
  } >"$STAGE/include/wc_deps_versions.h"
  rm -rf "$DEPS" && mkdir -p "$(dirname "$DEPS")" && mv "$STAGE" "$DEPS"
  touch "$DEPS/.complete"
  rm -rf "$work"
  log "dependencies built in $((SECONDS - t0)) s"
}

# ---------------------------------------------------------------------------------------------
# embed/ → C arrays. One generated header; each file becomes a (path, bytes, length) entry.
gen_embed() {
  mkdir -p "$GEN"
  local out=$GEN/embedded_assets.h tmp f sym i=0
  tmp=$(mktemp)
  {
    echo "/* generated by build.sh from embed/: do not edit, do not commit */"
    while IFS= read -r f; do
      sym=wc_embed_$i
      echo "static const unsigned char ${sym}[] = {"
      xxd -i <"$f"
      echo ", 0x00 };"
      i=$((i + 1))
    done < <(find embed -type f | LC_ALL=C sort)
    echo "static const struct embedded_asset { const char *path; const unsigned char *data; size_t len; } embedded_assets[] = {"
    i=0
    while IFS= read -r f; do
      printf '  { "%s", wc_embed_%d, %d },\n' "${f#embed/}" "$i" "$(stat -c %s "$f")"
      i=$((i + 1))
    done < <(find embed -type f | LC_ALL=C sort)
    echo "};"
  } >"$tmp"
  cmp -s "$tmp" "$out" 2>/dev/null && rm -f "$tmp" || mv "$tmp" "$out"
}

compile() { # output main-source extra-cflags...
  local out=$1 src=$2; shift 2
  mkdir -p "$(dirname "$out")"
  rm -f "$out"
  # `|| die`: set -e does not apply inside functions called from an `||` list, and a stale
  # binary must never run in place of one that failed to compile.
  "$CC_MAIN" "${CFLAGS_COMMON[@]}" -DWC_VERSION="\"$PROJECT_VERSION\"" "$@" "${LINK_MODE[@]}" -o "$out" "$src" "${LIBS[@]}" ||
    die "compiling $src failed"
}

build_bin() {
  build_deps
  ensure_tools
  gen_embed
  compile "$BIN" worker-controller.c -Os -ffunction-sections -fdata-sections -Wl,--gc-sections -s
  file "$BIN" | grep -q 'statically linked' || die "$BIN is not statically linked"
  log "$BIN: $(stat -c %s "$BIN") bytes stripped ($(numfmt --to=iec-i --suffix=B "$(stat -c %s "$BIN")"))"
}

# ---------------------------------------------------------------------------------------------
# Tests. Each tier writes "passed failed" into build/results/<tier>; the summary line adds them.
RESULTS=build/results

build_unit() {
  build_deps
  ensure_tools
  gen_embed
  compile build/unit-tests test/unit/unit_main.c -O1 -g -DWC_UNIT_TEST -Itest/unit
}

run_unit() {
  mkdir -p "$RESULTS"
  build_unit
  ensure_test_tools
  local rc=0
  build/unit-tests | tee build/unit.log || rc=$?
  # The runner's last line is "N passed, N failed".
  tail -n1 build/unit.log | awk '/passed, .* failed/ {print $1, $3}' >"$RESULTS/unit"
  [ -s "$RESULTS/unit" ] || echo "0 1" >"$RESULTS/unit"
  return $rc
}

ensure_test_tools() {
  command -v openssl >/dev/null 2>&1 || { apt_update_once; apt-get install -y -qq openssl >/dev/null; }
}

# The e2e suite drives the client core through a test-only front end (test/e2e/probe.c).
build_probe() {
  gen_embed
  compile build/wc-probe test/e2e/probe.c -O1 -g
}

# A copy of the product built with failpoints (src/base/testhooks.c): the crash-recovery tests
# kill it at exact steps. Same sources and flags otherwise.
build_failpoints() {
  compile build/worker-controller-failpoints worker-controller.c -Os -DWC_FAILPOINTS
}

# run_e2e <tier> <binary> <probe> <failpoint binary> [pytest args...]: one test bed, the suite,
# "passed failed skipped" into build/results/<tier>.
run_e2e() {
  local tier=$1 bin=$2 probe=$3 fpbin=$4; shift 4
  mkdir -p "$RESULTS"
  local rc=0 junit=$ROOT/build/$tier-junit.xml
  test/cluster/up.sh || { echo "0 1" >"$RESULTS/$tier"; test/cluster/down.sh || true; return 1; }
  WC_BINARY=$bin WC_PROBE=$probe WC_FAILPOINT_BINARY=$fpbin test/e2e/run.sh --junitxml="$junit" "$@" || rc=$?
  test/cluster/down.sh || rc=1
  python3 - "$junit" >"$RESULTS/$tier" <<'PY' || echo "0 1" >"$RESULTS/$tier"
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
suites = [r] if r.tag == "testsuite" else list(r)
t = sum(int(s.get("tests", 0)) for s in suites)
bad = sum(int(s.get("failures", 0)) + int(s.get("errors", 0)) for s in suites)
skip = sum(int(s.get("skipped", 0)) for s in suites)
print(t - bad - skip, bad, skip)
PY
  return $rc
}

run_e2e_product() {
  build_probe
  build_failpoints
  run_e2e e2e "$ROOT/$BIN" "$ROOT/build/wc-probe" "$ROOT/build/worker-controller-failpoints"
}

# ASan + UBSan (+ LeakSanitizer at every clean exit): the unit tests and the e2e suite again,
# with every binary built by gcc on glibc with the sanitizers (static linking and ASan do not
# mix, hence the glibc flavour of the dependencies). The binaries write reports into
# build/asan/ (compiled-in defaults: the e2e harness scrubs the controller's environment); a
# report fails the tier even when the test that caused it passed. The e2e run leaves out the
# one test that mostly waits (a real token's lifetime: 5 minutes) — the product run covers it.
ASAN_DIR=build/asan
run_asan() {
  mkdir -p "$RESULTS"
  use_glibc_deps
  build_deps
  ensure_tools
  ensure_test_tools
  gen_embed
  rm -rf "$ASAN_DIR" && mkdir -p "$ASAN_DIR/reports"
  local san=(-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
             -DWC_SANITIZE_LOG="\"$ROOT/$ASAN_DIR/reports/report\"")
  compile "$ASAN_DIR/unit-tests" test/unit/unit_main.c "${san[@]}" -DWC_UNIT_TEST -Itest/unit
  compile "$ASAN_DIR/worker-controller" worker-controller.c "${san[@]}" -DWC_FAILPOINTS
  compile "$ASAN_DIR/wc-probe" test/e2e/probe.c "${san[@]}"
  local rc=0
  "$ASAN_DIR/unit-tests" >"$ASAN_DIR/unit.log" 2>&1 || rc=$?
  tail -n1 "$ASAN_DIR/unit.log" | awk '/passed, .* failed/ {print $1, $3}' >"$RESULTS/asan-unit"
  [ -s "$RESULTS/asan-unit" ] || { echo "0 1" >"$RESULTS/asan-unit"; tail -30 "$ASAN_DIR/unit.log" >&2; }
  log "asan unit: $(tail -n1 "$ASAN_DIR/unit.log")"
  asan_reports asan-unit || rc=1
  WC_SANITIZED=1 run_e2e asan-e2e "$ROOT/$ASAN_DIR/worker-controller" "$ROOT/$ASAN_DIR/wc-probe" \
    "$ROOT/$ASAN_DIR/worker-controller" -k "not test_sandbox_token_refresh" || rc=1
  asan_reports asan-e2e || rc=1
  return $rc
}

# Soak (test/soak/soak.py, RELIABILITY.md): N reconciles (default 10,000) with RSS sampled;
# --valgrind runs a glibc build (-O1 -g: memcheck cannot see a static musl binary's malloc) under
# memcheck with leak checking. Uses the test bed at $WC_TESTBED, brought up if it is not.
run_soak() {
  local valgrind=0 a
  for a in "$@"; do [ "$a" = --valgrind ] && valgrind=1; done
  local bin=$ROOT/$BIN
  if [ $valgrind = 1 ]; then
    command -v valgrind >/dev/null 2>&1 || { apt_update_once; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
    use_glibc_deps
    build_deps
    ensure_tools
    gen_embed
    compile build/soak/worker-controller worker-controller.c -O1 -g
    bin=$ROOT/build/soak/worker-controller
  else
    build_bin
  fi
  local envf=${WC_TESTBED:-/tmp/worker-controller-testbed}/env
  [ -f "$envf" ] || test/cluster/up.sh
  "$(test/e2e/venv.sh)/bin/python" test/soak/soak.py --binary "$bin" "$@"
}

# Sanitizer reports written since the last call count as one failure of <tier> each.
asan_reports() {
  local tier=$1 n f a b c
  n=$(find "$ASAN_DIR/reports" -name 'report.*' | wc -l)
  [ "$n" -eq 0 ] && return 0
  for f in "$ASAN_DIR"/reports/report.*; do
    log "sanitizer report $f:"; head -40 "$f" >&2
    mv "$f" "$ASAN_DIR/$tier-$(basename "$f")"
  done
  read -r a b c <"$RESULTS/$tier" || { a=0; b=0; c=0; }
  echo "$a $((b + n)) ${c:-0}" >"$RESULTS/$tier"
  return 1
}

# Fuzz targets: clang + libFuzzer + ASan/UBSan on glibc. They include only the modules they
# exercise, and cJSON/libyaml compiled from the same verified Debian sources as the binary.
FUZZ_TARGETS=(watch kubeconfig worker envfile apierror)
build_fuzz() {
  local missing=()
  command -v clang-14 >/dev/null 2>&1 || missing+=(clang-14)
  [ -f /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ] || missing+=(libclang-rt-14-dev libfuzzer-14-dev)
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt_update_once
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  ensure_tools
  fetch_sources
  local src=build/fuzz-src
  if [ ! -f "$src/.complete-$LOCK_HASH" ]; then
    rm -rf "$src" && mkdir -p "$src"
    unpack "$src" cjson
    unpack "$src" libyaml
    touch "$src/.complete-$LOCK_HASH"
  fi
  # BearSSL's SHA-256 (the spec hash) and the curl/BearSSL headers (types only: fuzz_apierror
  # includes net/http.c but calls no libcurl function) come from the same verified sources.
  if [ ! -f "$src/.complete-tls-$LOCK_HASH" ]; then
    rm -rf "$src/bearssl" "$src/curl"
    unpack "$src" bearssl
    unpack "$src" curl
    touch "$src/.complete-tls-$LOCK_HASH"
  fi
  local brsha=("$src/bearssl/src/hash/sha2small.c" "$src/bearssl/src/codec/dec32be.c" "$src/bearssl/src/codec/enc32be.c"
               "$src/bearssl/src/codec/enc64be.c")
  local t
  for t in "${FUZZ_TARGETS[@]}"; do
    clang-14 -g -O1 -std=c11 -D_GNU_SOURCE -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      -Wno-unused-function -Isrc -I"$src/cjson" -I"$src/libyaml/include" -I"$src/bearssl/inc" -I"$src/bearssl/src" \
      -I"$src/curl/include" \
      -DYAML_VERSION_MAJOR=0 -DYAML_VERSION_MINOR=2 -DYAML_VERSION_PATCH=5 -DYAML_VERSION_STRING='"0.2.5"' \
      -o "build/fuzz-$t" "test/fuzz/fuzz_$t.c" "$src/cjson/cJSON.c" "$src"/libyaml/src/*.c "${brsha[@]}" -lpthread ||
      die "building fuzz target $t failed"
  done
}

# Runs each target for $1 seconds from the committed corpus (new inputs go to build/, not the
# repository). A crash, leak or sanitizer report fails the target.
run_fuzz() {
  local secs=${1:-20} t pass=0 fail=0
  mkdir -p "$RESULTS"
  build_fuzz
  for t in "${FUZZ_TARGETS[@]}"; do
    mkdir -p "build/fuzz-corpus-$t"
    if (cd build && "./fuzz-$t" -max_total_time="$secs" -max_len=65536 -timeout=10 -rss_limit_mb=1024 \
          -artifact_prefix="fuzz-$t-" "fuzz-corpus-$t" "../test/fuzz/corpus/$t" >"fuzz-$t.log" 2>&1); then
      log "fuzz $t: ok ($(grep -o 'Done [0-9]* runs' "build/fuzz-$t.log" | awk '{print $2}') runs in ${secs}s, no crash)"
      pass=$((pass + 1))
    else
      log "fuzz $t: FAILED, see build/fuzz-$t.log:"; tail -30 "build/fuzz-$t.log" >&2
      fail=$((fail + 1))
    fi
  done
  echo "$pass $fail" >"$RESULTS/fuzz"
  [ "$fail" -eq 0 ]
}

# The chart's generated files (env template, RBAC rule files, CRDs) must equal what the binary
# generates from its tables; `worker-controller helm-env --sync-chart chart` regenerates them.
check_chart_drift() {
  "./$BIN" helm-env --check-chart chart || { log "chart/ drifted from the binary (see above)"; return 1; }
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
  compile build/bench/worker-controller worker-controller.c -Os -ffunction-sections -fdata-sections -Wl,--gc-sections -s
  compile build/bench/wc-bench test/bench/bench.c -O2 -g
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

# Chaos soak (test/soak/chaos.py, RELIABILITY.md): churn + faults on a bed of its own (its
# faults kill the bed's API server, OpenKruise, controller-manager and MinIO), an invariant
# checker throughout. Arguments go to chaos.py (--minutes, --seed, --workers, --binary).
# "passed failed" into build/results/chaos.
run_chaos() {
  mkdir -p "$RESULTS"
  local bed=${WC_CHAOS_TESTBED:-/tmp/wc-bed-chaos} rc=0
  WC_TESTBED=$bed test/cluster/up.sh || { echo "0 1" >"$RESULTS/chaos"; return 1; }
  WC_TESTBED=$bed "$(test/e2e/venv.sh)/bin/python" test/soak/chaos.py --binary "$ROOT/$BIN" \
    --json build/chaos.json "$@" || rc=$?
  WC_TESTBED=$bed test/cluster/down.sh || rc=1
  if [ $rc -eq 0 ]; then echo "1 0" >"$RESULTS/chaos"; else echo "0 1" >"$RESULTS/chaos"; fi
  return $rc
}

summary() {
  local p=0 f=0 s=0 tier a b c
  for tier in "$@"; do
    read -r a b c <"$RESULTS/$tier" || { a=0; b=1; c=0; }
    p=$((p + a)); f=$((f + b)); s=$((s + ${c:-0}))
    log "$tier: $a passed, $b failed${c:+, $c skipped}"
  done
  if [ "$s" -gt 0 ]; then echo "$p passed, $f failed, $s skipped"; else echo "$p passed, $f failed"; fi
  [ "$f" -eq 0 ]
}

usage() { sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; }

cmd=${1:-all}
case "$cmd" in
  all | build) build_bin ;;
  deps) build_deps ;;
  deps-glibc) use_glibc_deps; build_deps ;;
  probe) build_deps; ensure_tools; build_probe ;;
  e2e-bins) build_bin; build_probe; build_failpoints ;;  # what test/e2e/run.sh needs, without running it
  fuzz)
    rm -rf "$RESULTS"; rc=0
    run_fuzz "${2:-60}" || rc=1
    summary fuzz || rc=1; exit $rc ;;
  unit)
    rm -rf "$RESULTS"; rc=0
    run_unit || rc=1
    summary unit || rc=1; exit $rc ;;
  e2e)
    rm -rf "$RESULTS"; build_bin; rc=0
    run_e2e_product || rc=1
    summary e2e || rc=1; exit $rc ;;
  test-asan)
    rm -rf "$RESULTS"; rc=0
    build_bin  # the chart drift check and a few e2e helpers use the product binary
    run_asan || rc=1
    summary asan-unit asan-e2e || rc=1; exit $rc ;;
  test)
    rm -rf "$RESULTS"; rc=0
    build_bin
    check_chart_drift || rc=1
    run_unit || rc=1
    run_fuzz "${WC_FUZZ_SECONDS:-20}" || rc=1
    run_e2e_product || rc=1
    run_chaos --minutes "${WC_CHAOS_MINUTES:-4}" --seed 20261202 || rc=1  # the short chaos soak, fixed seed
    run_asan || rc=1
    summary unit fuzz e2e chaos asan-unit asan-e2e || rc=1
    exit $rc ;;
  bench) shift; run_bench "$@" ;;
  soak) shift; run_soak "$@" ;;
  soak-chaos)
    shift; rm -rf "$RESULTS"; build_bin; rc=0
    run_chaos "$@" || rc=1
    summary chaos || rc=1; exit $rc ;;
  clean) rm -rf build "$BIN"; log "removed build outputs (dependency cache kept in $CACHE; remove it by hand to rebuild from source)" ;;
  -h | --help | help) usage ;;
  *) usage >&2; exit 2 ;;
esac
