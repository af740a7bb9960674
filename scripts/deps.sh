# scripts/deps.sh — the dependencies: the host tools the build needs (installed with apt-get
# when missing), and the pinned source packages of vendor/deps.lock — fetched with
# `apt-get source`, every file checked against its sha256 (a mismatch stops the build), built
# with musl (the product) or glibc (the sanitizer builds) into static libraries cached under
# ~/.cache/worker-controller/deps/<lock hash>[-glibc]/. Sourced by build.sh, which sets ROOT,
# CACHE, LOCK, LOCK_HASH and log/die.

# The dependency flavour: musl (the product: static) or glibc (the sanitizer builds: ASan and
# valgrind need glibc's dynamic loader). Each has its own cache directory.
DEP_FLAVOUR=musl
DEPCC=musl-gcc
DEPS=$CACHE/deps/$LOCK_HASH          # include/ lib/ versions.h: the static libraries
SRCDL=$CACHE/src                      # downloaded source package files, verified on every use

# The sanitizer builds (test-asan, valgrind, fuzz): glibc and gcc from the same verified
# sources, in a cache directory of their own; the compiler of our own translation unit follows
# (scripts/flags.sh).
use_glibc_deps() {
  DEP_FLAVOUR=glibc
  DEPCC=gcc
  DEPS=$CACHE/deps/$LOCK_HASH-glibc
  flags_for_deps
}

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
# What the test tiers need of the host besides the build tools.

ensure_test_tools() {
  command -v openssl >/dev/null 2>&1 || { apt_update_once; apt-get install -y -qq openssl >/dev/null; }
}

ensure_valgrind() {
  command -v valgrind >/dev/null 2>&1 || { apt_update_once; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null; }
}

# clang 14 with libFuzzer, for the fuzz targets.
ensure_clang() {
  local missing=()
  command -v clang-14 >/dev/null 2>&1 || missing+=(clang-14)
  [ -f /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a ] || missing+=(libclang-rt-14-dev libfuzzer-14-dev)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  apt_update_once
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}
