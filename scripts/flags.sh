# scripts/flags.sh — how every variant is compiled, in one place. Each variant is the one
# translation unit (worker-controller.c, or a test front end that includes it) built with the
# shared language and warning flags plus a few of its own; no variant turns a warning off.
# Sourced by build.sh after scripts/deps.sh (it reads DEPS, GEN and PROJECT_VERSION).

# Every variant, product and tests alike: C11 with POSIX and GNU extensions, every warning an
# error. -fno-strict-aliasing: the configuration table writes fields through computed
# offsets (cfg_apply), the kind of access strict-aliasing optimisations punish.
WC_LANG=(-std=c11 -D_GNU_SOURCE -fno-strict-aliasing)
WC_WARN=(-Wall -Wextra -Werror -Wshadow -Wstrict-prototypes)

# The compiler and link mode of the dependency flavour in use: the product is a static musl
# binary; the sanitizer builds are gcc (clang for the fuzzers) on glibc, linked dynamically.
flags_for_deps() {
  if [ "$DEP_FLAVOUR" = musl ]; then CC_MAIN=musl-gcc; LINK_MODE=(-static); else CC_MAIN=gcc; LINK_MODE=(); fi
  WC_INCLUDES=(-I"$DEPS/include" -I"$GEN" -Isrc)
  WC_LIBS=(-L"$DEPS/lib" -lcurl -lbearssl -lcjson -lyaml -lpthread)
}

# The flags of one variant (besides WC_LANG, WC_WARN and the includes), into VARIANT_FLAGS.
#   product     the shipped binary: small, its unused sections dropped, stripped
#   failpoints  the product with failpoints (test/e2e's crash tests)
#   unit        the unit tests (test/unit), debuggable
#   probe       the e2e suite's client front end (test/e2e/probe.c)
#   bench       the benchmark tools (test/bench/bench.c)
#   asan        any of the above under ASan + UBSan (+ LeakSanitizer at exit), reports under $2
#   fuzz        a libFuzzer target (clang), ASan + UBSan
variant_flags() {
  case $1 in
    product) VARIANT_FLAGS=(-Os -ffunction-sections -fdata-sections -Wl,--gc-sections -s) ;;
    failpoints) VARIANT_FLAGS=(-Os -DWC_FAILPOINTS) ;;
    unit) VARIANT_FLAGS=(-O1 -g -Itest/unit) ;;
    probe | soak) VARIANT_FLAGS=(-O1 -g) ;;
    bench) VARIANT_FLAGS=(-O2 -g) ;;
    asan) VARIANT_FLAGS=(-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
                         -DWC_SANITIZE_LOG="\"$2\"") ;;
    fuzz) VARIANT_FLAGS=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined) ;;
    *) die "unknown build variant $1" ;;
  esac
}

# compile <output> <main source> <variant> [variant arg] [extra flags...]: one translation unit
# into one binary. A failed compile removes the old output first: a stale binary must never run
# in place of one that failed to compile.
compile() {
  local out=$1 src=$2 variant=$3; shift 3
  local arg=
  if [ "$variant" = asan ]; then arg=$1; shift; fi
  variant_flags "$variant" "$arg"
  mkdir -p "$(dirname "$out")"
  rm -f "$out"
  "$CC_MAIN" "${WC_LANG[@]}" "${WC_WARN[@]}" -DWC_VERSION="\"$PROJECT_VERSION\"" "${VARIANT_FLAGS[@]}" "$@" \
    "${WC_INCLUDES[@]}" "${LINK_MODE[@]}" -o "$out" "$src" "${WC_LIBS[@]}" || die "compiling $src failed"
}

# compile_fuzz <output> <target source> <vendor objects...>: a fuzz target is the whole program
# (test/fuzz/fuzz_prelude.h) built by clang, cJSON and libyaml linked from instrumented objects,
# libcurl and BearSSL from the glibc dependency build.
compile_fuzz() {
  local out=$1 src=$2; shift 2
  variant_flags fuzz
  rm -f "$out"
  clang-14 "${WC_LANG[@]}" "${WC_WARN[@]}" -DWC_VERSION="\"$PROJECT_VERSION\"" "${VARIANT_FLAGS[@]}" "${WC_INCLUDES[@]}" \
    -o "$out" "$src" "$@" -L"$DEPS/lib" -lcurl -lbearssl -lpthread || die "building fuzz target $src failed"
}
