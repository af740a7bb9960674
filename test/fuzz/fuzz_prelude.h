/*
 * fuzz_prelude.h — what a fuzz target needs of the program: system headers, cJSON, libyaml and
 * the base layer. Fuzz targets build with clang + libFuzzer + ASan/UBSan against glibc, so they
 * include only the modules they exercise (no libcurl or BearSSL), compiled from the same
 * sources as the static binary.
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <yaml.h>

#ifndef WC_VERSION
#define WC_VERSION "fuzz"
#endif

static void wc_oom(void);
#include "base/mem.c"
#include "base/err.c"
#include "base/arena.c"
#include "base/json_scratch.c"
#include "base/buf.c"
#include "base/json.c"
#include "base/timeutil.c"
#include "base/log.c"
#include "base/base64.c"
#include "base/fileutil.c"
#include "base/parse.c"
#include "base/strmap.c"
