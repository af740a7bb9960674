/*
 * worker-controller.c — the whole program as one translation unit.
 *
 * Like Lua's onelua.c, this file includes every module in layer order (lowest first); each
 * module may use only what was included before it. Everything is `static`: the compiler sees
 * the whole program, and no symbol leaks between modules by accident.
 *
 *   base/    memory, errors, buffers, JSON, the hash table, threads, time, logging, test-only hooks
 *   net/     HTTP over libcurl, TLS (CA blobs, client certificates via BearSSL), a tiny HTTP server, S3
 *   kube/    the Kubernetes client core: config, requests, watch decoding, informers, events, leases,
 *            TokenRequest
 *   worker/  the Worker API, config, RBAC, env rendering and the pure decision function
 *   backend/ the backends (pod, sandbox, agent-sandbox) behind one interface, worker-deps storage, the reconcile shell
 *   cmd/     the subcommands and main()
 */
#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdarg.h>
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
#include <dirent.h>

#include <bearssl.h>
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <yaml.h>

#include "wc_deps_versions.h"
#include "embedded_assets.h"

#ifndef WC_VERSION
#define WC_VERSION "dev"
#endif

/* base/ */
static void wc_oom(void);
#include "base/mem.c"
#include "base/err.c"
#include "base/arena.c"
#include "base/json_scratch.c"
#include "base/buf.c"
#include "base/delta.c"
#include "base/json.c"
#include "base/timeutil.c"
#include "base/log.c"
#include "base/base64.c"
#include "base/fileutil.c"
#include "base/parse.c"
#include "base/strmap.c"
#include "base/thread.c"
#include "base/testhooks.c"

/* net/ */
#include "net/tls.c"
#include "net/http.c"
#include "net/httpd.c"
#include "net/s3.c"

/* kube/ */
#include "kube/workqueue.c"
#include "kube/metrics.c"
#include "kube/watch.c"
#include "kube/config.c"
#include "kube/client.c"
#include "kube/cache.c"
#include "kube/informer.c"
#include "kube/events.c"
#include "kube/lease.c"
#include "kube/leader.c"
#include "kube/token.c"

/* worker/ */
#include "worker/quantity.c"
#include "worker/config_check.c"
#include "worker/config.c"
#include "worker/config_help.c"
#include "worker/rbac.c"
#include "worker/worker.c"
#include "worker/env.c"
#include "worker/hash.c"
#include "worker/decide.c"

/* backend/ */
#include "backend/worker_metrics.c"
#include "backend/instance.c"
#include "backend/backend.c"
#include "backend/deps.c"
#include "backend/pod.c"
#include "backend/sandbox_policy.c"
#include "backend/sandbox.c"
#include "backend/agent_sandbox.c"
#include "backend/registry.c"
#include "backend/status.c"
#include "backend/reconcile.c"

/* cmd/ */
#include "cmd/cli.c"
#include "cmd/version.c"
#include "cmd/install_crds.c"
#include "cmd/render_rbac.c"
#include "cmd/run.c"
#include "cmd/helm_env.c"
#include "cmd/check.c"
#include "cmd/explain_render.c"
#include "cmd/explain.c"
#include "cmd/main.c"
