/*
 * bench.c — the benchmark's C tools, built on the project's own client (the whole program is
 * included, minus its main(), as test/e2e/probe.c does). One binary, five roles:
 *
 *   wc-bench create  [RUN FLAGS]   creates BENCH_N Workers (BENCH_THREADS parallel POSTs)
 *   wc-bench pool    [RUN FLAGS]   a sandbox run's warm pool: the controller's SandboxSet with
 *                                  BENCH_N replicas (the product's renderer), waits until the real
 *                                  OpenKruise controller reports them available
 *   wc-bench watch   [RUN FLAGS]   the stopwatch: informers on Workers and on the instances;
 *                                  prints SYNCED, then one JSON line with the wall-clock times
 *                                  (ms since the epoch) when the last instance appeared and when
 *                                  the last Worker reached phase Running
 *   wc-bench floor   [RUN FLAGS]   the floor: exactly the writes the controller makes per Worker
 *                                  (finalizer patch, ServiceAccount, Pod — or worker-deps env +
 *                                  TokenRequest + token + data marker, each verified, and the
 *                                  SandboxClaim — or the agent-sandbox Sandbox — and the two
 *                                  status patches Starting (Pending for a Sandbox)/Running),
 *                                  with HICLAW_CONCURRENCY threads, no decision logic, the same
 *                                  informers to learn about Workers and their instances
 *   wc-bench clear   [RUN FLAGS]   removes the finalizers of a finished run's Workers (its
 *                                  controller is stopped), so the namespace can be deleted
 *
 * Nothing here plays a component: Pods are bound by kube-scheduler and run by kwok, claims are
 * served by the real OpenKruise controller, agent-sandbox Sandboxes get their Pods from the real
 * kubernetes-sigs agent-sandbox controller (test/cluster/README.md). Both the product and the
 * floor wait for the same real components.
 *
 * RUN FLAGS are `worker-controller run`'s (--server --token-file --ca-file ...) and the same
 * HICLAW_* environment (namespace, controller name, sandbox, worker-deps storage, concurrency),
 * parsed by the product's own cfg_load, so the floor renders byte-identical objects.
 * Bench parameters come from the environment: BENCH_N, BENCH_BACKEND (pod|sandbox|agent-sandbox),
 * BENCH_THREADS, BENCH_SECONDS (hard time limit of every role), BENCH_PREFIX (Worker names).
 */
#define WC_NO_MAIN 1
#include "../../worker-controller.c"

static long env_long(const char *name, long def) {
    const char *v = getenv(name);
    return v && *v ? atol(v) : def;
}
static const char *env_str(const char *name, const char *def) {
    const char *v = getenv(name);
    return v && *v ? v : def;
}
static int64_t epoch_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- a bounded-time blocking FIFO of strings ---- */
typedef struct jobq {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    char **items;
    size_t head, len, cap;
    int closed;
} jobq;

static void jobq_init(jobq *q) {
    memset(q, 0, sizeof *q);
    pthread_mutex_init(&q->mu, NULL);
    pthread_cond_init(&q->cv, NULL);
}
static void jobq_push(jobq *q, const char *s) {
    pthread_mutex_lock(&q->mu);
    if (q->len == q->cap) {
        size_t ncap = q->cap ? q->cap * 2 : 1024;
        char **n = xcalloc(ncap, sizeof *n);
        for (size_t i = 0; i < q->len; i++) n[i] = q->items[(q->head + i) % q->cap];
        free(q->items);
        q->items = n, q->cap = ncap, q->head = 0;
    }
    q->items[(q->head + q->len) % q->cap] = xstrdup(s);
    q->len++;
    pthread_cond_signal(&q->cv);
    pthread_mutex_unlock(&q->mu);
}
/* NULL when closed (or after 200 ms with nothing: the caller re-checks its deadline). */
static char *jobq_pop(jobq *q) {
    pthread_mutex_lock(&q->mu);
    if (!q->len && !q->closed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 200 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&q->cv, &q->mu, &ts);
    }
    char *s = NULL;
    if (q->len) {
        s = q->items[q->head];
        q->head = (q->head + 1) % q->cap;
        q->len--;
    }
    pthread_mutex_unlock(&q->mu);
    return s;
}

/* A set of strings under a lock: "first time this key?" */
typedef struct strset {
    pthread_mutex_t mu;
    strmap m;
    atomic_long n;
} strset;
static void strset_init(strset *s) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
}
static int strset_add(strset *s, const char *k) {
    pthread_mutex_lock(&s->mu);
    int fresh = strmap_get(&s->m, k) == NULL;
    if (fresh) strmap_put(&s->m, k, (void *)1), atomic_fetch_add(&s->n, 1);
    pthread_mutex_unlock(&s->mu);
    return fresh;
}

/* ---- common setup ---- */
typedef struct bench {
    wc_cfg conf;
    kube_client *kc;
    const char *ns;
    const char *backend;
    long n, threads, seconds;
    int64_t deadline_ms;
    atomic_int stop;
} bench;

static bench B;

static int bench_setup(int argc, char **argv) {
    wc_err err;
    err_clear(&err);
    if (cfg_load(&B.conf, NULL, argc, argv, &err) < 0) {
        fprintf(stderr, "wc-bench: %s\n", err.msg);
        return -1;
    }
    log_configure(B.conf.log_fmt, B.conf.log_lvl, 2);
    kube_config kcfg;
    if (kube_config_load(&B.conf.kube, &kcfg, &err) < 0) {
        fprintf(stderr, "wc-bench: %s\n", err.msg);
        return -1;
    }
    B.kc = kube_client_new(&kcfg, &err);
    kube_config_free(&kcfg);
    if (!B.kc) {
        fprintf(stderr, "wc-bench: %s\n", err.msg);
        return -1;
    }
    B.ns = B.conf.watch_namespace && *B.conf.watch_namespace ? B.conf.watch_namespace : "default";
    B.backend = env_str("BENCH_BACKEND", "pod");
    B.n = env_long("BENCH_N", 100);
    B.threads = env_long("BENCH_THREADS", 16);
    B.seconds = env_long("BENCH_SECONDS", 600);
    B.deadline_ms = wc_now_ms() + B.seconds * 1000;
    return 0;
}
static int expired(void) { return atomic_load(&B.stop) || wc_now_ms() > B.deadline_ms; }

/* A write that the API server may push back on under load (429, 5xx): retried a few times. */
static int retry_transient(const wc_err *err) {
    return err->code != WC_EHTTP || err->http_status == 429 || err->http_status >= 500;
}

/* ---- create ---- */
static atomic_long create_next, create_ok, create_fail;
static void *create_thread(void *arg) {
    (void)arg;
    const char *prefix = env_str("BENCH_PREFIX", "bw");
    const char *runtime = strcmp(B.backend, "sandbox") == 0 || strcmp(B.backend, "agent-sandbox") == 0 ? B.backend : "pod";
    for (;;) {
        long i = atomic_fetch_add(&create_next, 1);
        if (i >= B.n || expired()) break;
        char body[768];
        /* labelled for the controller under test: a controller handles only its own Workers */
        snprintf(body, sizeof body,
                 "{\"apiVersion\":\"hiclaw.io/v1beta1\",\"kind\":\"Worker\",\"metadata\":{\"name\":\"%s-%05ld\","
                 "\"labels\":{\"" LABEL_CONTROLLER "\":\"%s\"}},"
                 "\"spec\":{\"model\":\"qwen-max\",\"backendRuntime\":\"%s\",\"image\":\"registry.invalid/worker:bench\"}}",
                 prefix, i, B.conf.controller_name, runtime);
        int ok = 0;
        for (int attempt = 0; attempt < 8 && !ok && !expired(); attempt++) {
            wc_err err;
            err_clear(&err);
            if (kube_create(B.kc, &KUBE_WORKERS, B.ns, NULL, NULL, body, NULL, &err) == 0 || kube_err_conflict(&err)) ok = 1;
            else if (!retry_transient(&err)) { fprintf(stderr, "create: %s\n", err.msg); break; }
            else wc_sleep_ms(100 << attempt);
        }
        atomic_fetch_add(ok ? &create_ok : &create_fail, 1);
    }
    return NULL;
}
static int cmd_create(void) {
    int64_t t0 = epoch_ms();
    pthread_t th[256];
    long nt = B.threads > 256 ? 256 : B.threads;
    for (long i = 0; i < nt; i++) pthread_create(&th[i], NULL, create_thread, NULL);
    for (long i = 0; i < nt; i++) pthread_join(th[i], NULL);
    int64_t t1 = epoch_ms();
    printf("{\"created\":%ld,\"failed\":%ld,\"start_ms\":%" PRId64 ",\"end_ms\":%" PRId64 ",\"seconds\":%.3f}\n",
           atomic_load(&create_ok), atomic_load(&create_fail), t0, t1, (t1 - t0) / 1000.0);
    return atomic_load(&create_fail) ? 1 : 0;
}

/* ---- projections shared by the roles: name, labels we read, phase ---- */
static cJSON *project_phase(const cJSON *obj) {
    cJSON *out = cJSON_CreateObject();
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    cJSON *m = cJSON_AddObjectToObject(out, "metadata");
    static const char *keep[] = {"name", "namespace", "resourceVersion", "deletionTimestamp"};
    for (size_t i = 0; i < 4; i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(md, keep[i]);
        if (v) cJSON_AddItemToObject(m, keep[i], cJSON_Duplicate(v, 1));
    }
    const char *wl = json_str(cJSON_GetObjectItemCaseSensitive(md, "labels"), LABEL_WORKER);
    if (wl) cJSON_AddStringToObject(cJSON_AddObjectToObject(m, "labels"), LABEL_WORKER, wl);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(obj, "status");
    cJSON *s = cJSON_AddObjectToObject(out, "status");
    const char *ph = json_str(st, "phase");
    if (ph) cJSON_AddStringToObject(s, "phase", ph);
    const char *ip = json_str(st, "podIP");
    if (ip) cJSON_AddStringToObject(s, "podIP", ip);
    /* Ready condition (Pods, Sandboxes) */
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(st, "conditions")) {
        const char *t = json_str(c, "type");
        if (t && strcmp(t, "Ready") == 0 && json_str(c, "status")) cJSON_AddStringToObject(s, "ready", json_str(c, "status"));
    }
    return out;
}
static const char *proj_phase(const cJSON *p) { return json_str(cJSON_GetObjectItemCaseSensitive(p, "status"), "phase"); }
static int proj_ready(const cJSON *p) {
    const char *r = json_str(cJSON_GetObjectItemCaseSensitive(p, "status"), "ready");
    return r && strcmp(r, "True") == 0;
}
static int proj_deleting(const cJSON *p) {
    return cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(p, "metadata"), "deletionTimestamp") != NULL;
}
static const char *proj_name(const cJSON *p) { return json_str(cJSON_GetObjectItemCaseSensitive(p, "metadata"), "name"); }

static kube_informer *start_informer(const char *name, const kube_resource *r, const char *selector, kube_project_fn proj,
                                     kube_informer_handler h, void *ud) {
    kube_informer_options o = {.resource = r, .namespace = B.ns, .label_selector = selector, .project = proj,
                               .handler = h, .ud = ud};
    kube_informer *inf = kube_informer_new(B.kc, name, &o);
    wc_err err;
    if (kube_informer_start(inf, &err) < 0) {
        fprintf(stderr, "informer %s: %s\n", name, err.msg);
        exit(1);
    }
    return inf;
}
static void wait_synced(kube_informer *inf) {
    if (inf && kube_informer_wait_synced(inf, 120000) < 0) {
        fprintf(stderr, "informer did not sync\n");
        exit(1);
    }
}

/* ---- pool: the warm pool of a sandbox run, filled before t0 ----
 * The SandboxSet the controller manages (HICLAW_SANDBOX_POOL), applied as the sandbox backend's
 * start applies it — the product's own renderer (sandbox_pool_render), server-side apply with
 * its field manager — with BENCH_N replicas, then polled until OpenKruise reports BENCH_N
 * available sandboxes (each a Pod scheduled by kube-scheduler and run by kwok). The controller,
 * started later with HICLAW_SANDBOX_PREWARM_SIZE=BENCH_N, applies the same object (no change);
 * the floor never touches the pool. Claims then take warm sandboxes, and OpenKruise refills the
 * pool while both sides run, alike for both. */
static int cmd_pool(void) {
    int64_t t0 = epoch_ms();
    const char *pool = B.conf.sandbox_pool;
    wc_err err;
    err_clear(&err);
    buf body = BUF_INIT;
    sandbox_pool_render(&body, pool, B.ns, B.conf.controller_name, B.conf.sandbox_agent_runtime_image, B.n,
                        B.conf.worker_cpu.canon, B.conf.worker_memory.canon);
    int rc = kube_patch(B.kc, &KUBE_SANDBOXSETS, B.ns, pool, NULL, KUBE_PATCH_APPLY, body.data, "worker-controller", 1, 0,
                        NULL, &err);
    buf_free(&body);
    if (rc < 0) {
        fprintf(stderr, "pool: apply SandboxSet %s: %s\n", pool, err.msg);
        return 1;
    }
    long avail = 0;
    int64_t last_report = wc_now_ms();
    while (!expired()) {
        cJSON *set = NULL;
        err_clear(&err);
        if (kube_get(B.kc, &KUBE_SANDBOXSETS, B.ns, pool, NULL, &set, &err) == 0) {
            avail = json_int(cJSON_GetObjectItemCaseSensitive(set, "status"), "availableReplicas", 0);
            cJSON_Delete(set);
            if (avail >= B.n) break;
        }
        if (wc_now_ms() - last_report > 10000) {
            last_report = wc_now_ms();
            fprintf(stderr, "[pool] %ld/%ld available\n", avail, B.n);
        }
        wc_sleep_ms(500);
    }
    int64_t t1 = epoch_ms();
    printf("{\"pool\":\"%s\",\"replicas\":%ld,\"available\":%ld,\"seconds\":%.3f}\n", pool, B.n, avail, (t1 - t0) / 1000.0);
    return avail >= B.n ? 0 : 1;
}

/* ---- clear: a finished run's Workers lose their finalizers ----
 * The controller under test is stopped before its namespace is deleted, so nobody would remove
 * hiclaw.io/cleanup and the namespace would never go. BENCH_THREADS parallel merge patches. */
static char **clear_keys;
static size_t clear_n;
static atomic_long clear_next, clear_ok, clear_fail;
static void *clear_thread(void *arg) {
    (void)arg;
    for (;;) {
        long i = atomic_fetch_add(&clear_next, 1);
        if ((size_t)i >= clear_n || expired()) break;
        const char *name = strchr(clear_keys[i], '/');
        name = name ? name + 1 : clear_keys[i];
        int ok = 0;
        for (int attempt = 0; attempt < 6 && !ok && !expired(); attempt++) {
            wc_err err;
            err_clear(&err);
            if (kube_patch(B.kc, &KUBE_WORKERS, B.ns, name, NULL, KUBE_PATCH_MERGE, "{\"metadata\":{\"finalizers\":null}}", NULL,
                           0, 0, NULL, &err) == 0 || kube_err_not_found(&err)) ok = 1;
            else if (!retry_transient(&err)) { fprintf(stderr, "clear %s: %s\n", name, err.msg); break; }
            else wc_sleep_ms(100 << attempt);
        }
        atomic_fetch_add(ok ? &clear_ok : &clear_fail, 1);
    }
    return NULL;
}
static int cmd_clear(void) {
    int64_t t0 = epoch_ms();
    kube_informer *wk = start_informer("workers", &KUBE_WORKERS, NULL, project_phase, NULL, NULL);
    wait_synced(wk);
    clear_keys = kube_informer_keys(wk, &clear_n);
    pthread_t th[256];
    long nt = B.threads > 256 ? 256 : B.threads;
    for (long i = 0; i < nt; i++) pthread_create(&th[i], NULL, clear_thread, NULL);
    for (long i = 0; i < nt; i++) pthread_join(th[i], NULL);
    printf("{\"workers\":%zu,\"cleared\":%ld,\"failed\":%ld,\"seconds\":%.3f}\n", clear_n, atomic_load(&clear_ok),
           atomic_load(&clear_fail), (epoch_ms() - t0) / 1000.0);
    fflush(stdout);
    for (size_t i = 0; i < clear_n; i++) free(clear_keys[i]);
    free(clear_keys);
    atomic_store(&B.kc->cancel, 1);
    kube_informer_free(wk);
    return atomic_load(&clear_fail) ? 1 : 0;
}

/* ---- watch: the stopwatch ---- */
static strset w_instances, w_running;
static atomic_llong w_first_instance_ms, w_last_instance_ms, w_last_running_ms;
static void watch_on_instance(void *ud, const char *key, const cJSON *o, const cJSON *n) {
    (void)ud, (void)o;
    if (!n) return;
    if (strset_add(&w_instances, key)) {
        int64_t t = epoch_ms();
        long long z = 0;
        atomic_compare_exchange_strong(&w_first_instance_ms, &z, t);
        if (atomic_load(&w_instances.n) >= B.n) atomic_store(&w_last_instance_ms, t);
    }
}
static void watch_on_worker(void *ud, const char *key, const cJSON *o, const cJSON *n) {
    (void)ud, (void)o;
    if (!n) return;
    const char *ph = proj_phase(n);
    if (ph && strcmp(ph, "Running") == 0 && strset_add(&w_running, key) && atomic_load(&w_running.n) >= B.n)
        atomic_store(&w_last_running_ms, epoch_ms());
}
static int cmd_watch(void) {
    strset_init(&w_instances);
    strset_init(&w_running);
    char sel[300];
    snprintf(sel, sizeof sel, LABEL_CONTROLLER "=%s", B.conf.controller_name);
    /* the instance: a Pod, a SandboxClaim (OpenKruise), or a Sandbox (agents.x-k8s.io) */
    const kube_resource *ir = strcmp(B.backend, "sandbox") == 0         ? &KUBE_SANDBOXCLAIMS
                              : strcmp(B.backend, "agent-sandbox") == 0 ? &KUBE_AGENT_SANDBOXES
                                                                        : &KUBE_PODS;
    kube_informer *inst = start_informer("instances", ir, sel, project_phase, watch_on_instance, NULL);
    kube_informer *wk = start_informer("workers", &KUBE_WORKERS, NULL, project_phase, watch_on_worker, NULL);
    wait_synced(inst);
    wait_synced(wk);
    printf("SYNCED\n");
    fflush(stdout);
    if (B.n == 0) atomic_store(&w_last_instance_ms, epoch_ms()), atomic_store(&w_last_running_ms, epoch_ms());
    int64_t last_report = wc_now_ms();
    while (!expired() && !(atomic_load(&w_last_instance_ms) && atomic_load(&w_last_running_ms))) {
        wc_sleep_ms(20);
        if (wc_now_ms() - last_report > 5000) {
            last_report = wc_now_ms();
            fprintf(stderr, "[watch] instances %ld/%ld running %ld/%ld\n", atomic_load(&w_instances.n), B.n,
                    atomic_load(&w_running.n), B.n);
        }
    }
    printf("{\"instances\":%ld,\"running\":%ld,\"first_instance_ms\":%lld,\"last_instance_ms\":%lld,\"all_running_ms\":%lld}\n",
           atomic_load(&w_instances.n), atomic_load(&w_running.n), (long long)atomic_load(&w_first_instance_ms),
           (long long)atomic_load(&w_last_instance_ms), (long long)atomic_load(&w_last_running_ms));
    fflush(stdout);
    atomic_store(&B.kc->cancel, 1);
    kube_informer_free(inst);
    kube_informer_free(wk);
    return atomic_load(&w_last_running_ms) ? 0 : 1;
}

/* ---- floor ---- */
static controller F;           /* the product's controller struct, set up as `run` does */
static int f_pod;              /* BENCH_BACKEND=pod */
static int f_asb;              /* BENCH_BACKEND=agent-sandbox */
static kube_informer *f_inst;  /* the instances: Pods, SandboxClaims, or agent-sandbox Sandboxes */
static kube_informer *f_sbx;   /* sandbox runs: the Sandboxes */
static long f_setup_requests, f_setup_writes; /* made by controller_setup (its CRD probes): not the floor's */
/* BENCH_FLOOR_EXTRAS=1: also the requests the controller makes beyond the list — the
 * credentials Secret GET before each of the two writes passes and the "Created" Event — to show
 * how much of the gap to the floor is requests rather than logic. */
static int f_extras;
static void floor_extras_secret(const worker *w) {
    if (!f_extras) return;
    cJSON *sec = NULL;
    wc_err err;
    char name[300];
    snprintf(name, sizeof name, WORKER_CREDS_SECRET_PREFIX "%s", w->name);
    kube_get(F.host.kc, &KUBE_SECRETS, w->namespace, name, NULL, &sec, &err);
    cJSON_Delete(sec);
}
static jobq fq;
static strset f_started, f_running;
static atomic_long f_errors;

static void floor_on_worker(void *ud, const char *key, const cJSON *o, const cJSON *n) {
    (void)ud;
    if (!o && n) {
        char job[400];
        snprintf(job, sizeof job, "c %s", key);
        jobq_push(&fq, job);
    }
}
/* The instance reached Running: one status patch. Pods: Running + Ready (kwok). Sandbox
 * Workers: the claim Completed with its sandbox claimed (OpenKruise, after /init and the mounts)
 * and the Sandbox it bound Running + Ready — what the product waits for too (SPEC 3's table). */
static void floor_on_instance(void *ud, const char *key, const cJSON *o, const cJSON *n) {
    (void)ud, (void)o, (void)key;
    if (!n) return;
    const char *ph = proj_phase(n);
    if (!ph || strcmp(ph, "Running") != 0 || !proj_ready(n)) return;
    const char *wn = json_str(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(n, "metadata"), "labels"),
                              LABEL_WORKER);
    if (!wn) return;
    const char *ip = json_str(cJSON_GetObjectItemCaseSensitive(n, "status"), "podIP");
    char job[600];
    snprintf(job, sizeof job, "r %s/%s %s %s", B.ns, wn, proj_name(n), ip ? ip : "-");
    jobq_push(&fq, job);
}

static pthread_mutex_t f_sbx_mu = PTHREAD_MUTEX_INITIALIZER;
static strmap f_claim_done; /* ns/worker -> (void *)1: its claim Completed and claimed */
static strmap f_sbx_ready;  /* ns/worker -> "sandbox podIP" of its Running + Ready Sandbox */

/* With f_sbx_mu held: both halves seen? Then one Running job (floor_running dedups). */
static void floor_sandbox_check(const char *wkey) {
    const char *sb = strmap_get(&f_sbx_ready, wkey);
    if (!sb || !strmap_get(&f_claim_done, wkey)) return;
    char job[800];
    snprintf(job, sizeof job, "r %s %s", wkey, sb);
    jobq_push(&fq, job);
}
static const char *proj_worker(const cJSON *p) {
    return json_str(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(p, "metadata"), "labels"), LABEL_WORKER);
}
static void floor_on_claim(void *ud, const char *key, const cJSON *o, const cJSON *n) {
    (void)ud, (void)o, (void)key;
    if (!n || proj_deleting(n)) return;
    const char *ph = proj_phase(n), *wn = proj_worker(n);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(n, "status");
    if (!wn || !ph || strcmp(ph, "Completed") != 0 || json_int(st, "claimedReplicas", 0) < 1) return;
    char wkey[400];
    snprintf(wkey, sizeof wkey, "%s/%s", B.ns, wn);
    pthread_mutex_lock(&f_sbx_mu);
    if (!strmap_get(&f_claim_done, wkey)) strmap_put(&f_claim_done, wkey, (void *)1);
    floor_sandbox_check(wkey);
    pthread_mutex_unlock(&f_sbx_mu);
}
static void floor_on_sandbox(void *ud, const char *key, const cJSON *o, const cJSON *n) {
    (void)ud, (void)o, (void)key;
    if (!n || proj_deleting(n)) return;
    const char *ph = proj_phase(n), *wn = proj_worker(n);
    if (!wn || !ph || strcmp(ph, "Running") != 0 || !proj_ready(n)) return;
    const char *ip = json_str(cJSON_GetObjectItemCaseSensitive(n, "status"), "podIP");
    char wkey[400], val[400];
    snprintf(wkey, sizeof wkey, "%s/%s", B.ns, wn);
    snprintf(val, sizeof val, "%s %s", proj_name(n), ip && *ip ? ip : "-");
    pthread_mutex_lock(&f_sbx_mu);
    if (!strmap_get(&f_sbx_ready, wkey)) strmap_put(&f_sbx_ready, wkey, xstrdup(val));
    floor_sandbox_check(wkey);
    pthread_mutex_unlock(&f_sbx_mu);
}
/* A claim as the floor reads it: phase, claimedReplicas, the Worker label. */
static cJSON *project_claim(const cJSON *obj) {
    cJSON *out = project_phase(obj);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(obj, "status");
    cJSON_AddNumberToObject(cJSON_GetObjectItemCaseSensitive(out, "status"), "claimedReplicas",
                            (double)json_int(st, "claimedReplicas", 0));
    return out;
}
/* A Sandbox: phase, Ready, the Worker label (the claim's spec.labels), status.podInfo.podIP. */
static cJSON *project_sandbox(const cJSON *obj) {
    cJSON *out = project_phase(obj);
    const char *ip = json_str(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(obj, "status"), "podInfo"), "podIP");
    if (ip) cJSON_AddStringToObject(cJSON_GetObjectItemCaseSensitive(out, "status"), "podIP", ip);
    return out;
}

/* An agent-sandbox Sandbox (the product's own projection, asb_project): Ready True for its current
 * generation — what the product counts as Running (the README's agent-sandbox table). The job
 * carries its Ready reason, which the product writes as status.containerState. */
static void floor_on_agent_sandbox(void *ud, const char *key, const cJSON *o, const cJSON *n) {
    (void)ud, (void)o, (void)key;
    if (!n) return;
    obs_asb s;
    asb_observe_one(n, &s);
    const char *wn = proj_worker(n);
    if (!wn || s.deleting || !s.current || !str_eq(s.ready, "True") || s.suspend_wanted || s.finished) return;
    char job[800];
    snprintf(job, sizeof job, "r %s/%s %s %s %s", B.ns, wn, s.name, s.pod_ip && *s.pod_ip ? s.pod_ip : "-",
             s.ready_reason && *s.ready_reason ? s.ready_reason : "Pending");
    jobq_push(&fq, job);
}

/* The product's status for an agent-sandbox Worker: after the create, Pending "creating Sandbox
 * <name>" without an instance; at Ready, Running with the Sandbox, its pod IP and its Ready
 * reason as the container state (asb_decide, asb_instance). */
static void floor_status_asb(arena *a, const cJSON *obj, const worker *w, int running, const char *inst_name,
                             const char *ip, const char *reason) {
    decision d;
    memset(&d, 0, sizeof d);
    d.backend = ASB_BACKEND;
    if (running) {
        d.phase = PHASE_RUNNING;
        d.instance = (worker_instance){"Sandbox", inst_name, NULL, ip};
        d.container_state = reason ? reason : "Pending";
        d.message = "";
        d.ready = (decided_cond){"True", "Running", ""};
    } else {
        d.phase = PHASE_PENDING;
        d.message = arena_sprintf(a, "creating Sandbox %s", inst_name);
        d.ready = (decided_cond){"False", "Pending", d.message};
    }
    d.synced = (decided_cond){"True", "Reconciled", ""}; /* the product's reason (decide.c) */
    wc_err err;
    err_clear(&err);
    if (write_status(F.host.kc, a, obj, w, &d, w->generation, &err) < 0) {
        atomic_fetch_add(&f_errors, 1);
        fprintf(stderr, "floor: status %s: %s\n", w->name, err.msg);
    }
}

static void floor_status(arena *a, const cJSON *obj, const worker *w, int running, const char *inst_name, const char *ip) {
    int pod = f_pod;
    decision d;
    memset(&d, 0, sizeof d);
    d.phase = running ? PHASE_RUNNING : PHASE_STARTING;
    d.backend = pod ? "pod" : "sandbox";
    d.instance.kind = pod ? "Pod" : "Sandbox";
    d.instance.name = pod || running ? inst_name : NULL;
    if (!pod) d.instance.claim_name = arena_sprintf(a, "%sworker-%s", F.dc.prefix, w->name);
    d.instance.pod_ip = ip;
    d.container_state = running ? (pod ? "Running" : "Running") : (pod ? "Pending" : "Claiming");
    d.message = running ? "" : "waiting for the instance to start";
    d.ready = running ? (decided_cond){"True", "Running", ""} : (decided_cond){"False", "Starting", d.message};
    d.synced = (decided_cond){"True", "ReconcileSuccess", ""};
    wc_err err;
    err_clear(&err);
    if (write_status(F.host.kc, a, obj, w, &d, w->generation, &err) < 0) {
        atomic_fetch_add(&f_errors, 1);
        fprintf(stderr, "floor: status %s: %s\n", w->name, err.msg);
    }
}

static void floor_create(const char *key) {
    cJSON *obj = kube_informer_get(F.workers, key);
    if (!obj) return;
    arena a;
    arena_init(&a);
    worker w;
    wc_err err;
    err_clear(&err);
    if (worker_parse(&a, obj, &F.wd, &w, &err) < 0) goto out;
    env_list env;
    env_build(&a, &w, &F.host.envc, NULL, 1, &env);
    char pod_hash[17], sandbox_hash[17] = "";
    backend *sbx = &F.backends[1];
    if (f_asb) pod_spec_hash_as(&a, &w, &env, &F.host.names, ASB_BACKEND, pod_hash);
    else pod_spec_hash(&a, &w, &env, &F.host.names, pod_hash);
    sandbox_spec_hash(sbx, &a, &w, NULL, sandbox_hash);
    observed o;
    memset(&o, 0, sizeof o);
    exec_ctx x = {.a = &a, .w = &w, .key = key, .o = &o, .hashes = {pod_hash, sandbox_hash}};
    const char *name = arena_sprintf(&a, "%sworker-%s", F.dc.prefix, w.name);
    buf body = BUF_INIT;
    floor_extras_secret(&w);
    int rc = finalizer_patch(&F, &w, 1, &err);
    if (rc == 0) {
        serviceaccount_render(&body, &a, &w, &F.host.names);
        rc = kube_create(F.host.kc, &KUBE_SERVICEACCOUNTS, w.namespace, NULL, NULL, body.data, NULL, &err);
        if (rc < 0 && kube_err_conflict(&err)) rc = 0;
    }
    if (rc == 0 && f_pod) {
        buf_reset(&body);
        pod_render(&body, &a, &w, &env, &F.host.names, pod_hash);
        rc = kube_create(F.host.kc, &KUBE_PODS, w.namespace, NULL, NULL, body.data, NULL, &err);
    } else if (rc == 0 && f_asb) {
        /* the product's Sandbox body (asb_render: its podTemplate is the pod backend's Pod spec) */
        buf_reset(&body);
        asb_render(&body, &a, &w, &env, &F.host.names, pod_hash);
        rc = kube_create(F.host.kc, &KUBE_AGENT_SANDBOXES, w.namespace, NULL, NULL, body.data, NULL, &err);
    } else if (rc == 0) {
        rc = deps_write_all(&sbx_state(sbx)->deps, &x, sandbox_deps_path(sbx, &a, &w), &err);
        if (rc == 0) {
            buf_reset(&body);
            claim_render(&body, &a, sbx, &w, name, sandbox_hash);
            rc = kube_create(F.host.kc, &KUBE_SANDBOXCLAIMS, w.namespace, NULL, NULL, body.data, NULL, &err);
        }
    }
    buf_free(&body);
    if (rc < 0) {
        atomic_fetch_add(&f_errors, 1);
        fprintf(stderr, "floor: %s: %s\n", key, err.msg);
        goto out;
    }
    if (f_extras)
        backend_record(&F.host, &w, "Normal", "Created", "Create",
                       f_asb ? arena_sprintf(&a, "created Sandbox %s (agents.x-k8s.io)", name)
                             : arena_sprintf(&a, "created %s %s", f_pod ? "Pod" : "SandboxClaim", name));
    if (f_asb) floor_status_asb(&a, obj, &w, 0, name, NULL, NULL);
    else floor_status(&a, obj, &w, 0, name, NULL);
out:
    cJSON_Delete(obj);
    arena_free(&a);
}

static void floor_running(char *job) {
    char *key = job, *inst = strchr(job, ' ');
    if (!inst) return;
    *inst++ = 0;
    char *ip = strchr(inst, ' ');
    if (ip) *ip++ = 0;
    char *reason = ip ? strchr(ip, ' ') : NULL; /* agent-sandbox: the Sandbox's Ready reason */
    if (reason) *reason++ = 0;
    if (!strset_add(&f_running, key)) return;
    /* the Starting patch must have happened first: wait for it (bounded) */
    for (int i = 0; i < 3000 && !expired(); i++) {
        pthread_mutex_lock(&f_started.mu);
        int started = strmap_get(&f_started.m, key) != NULL;
        pthread_mutex_unlock(&f_started.mu);
        if (started) break;
        wc_sleep_ms(10);
    }
    cJSON *obj = kube_informer_get(F.workers, key);
    if (!obj) return;
    arena a;
    arena_init(&a);
    worker w;
    wc_err err;
    if (worker_parse(&a, obj, &F.wd, &w, &err) == 0) {
        floor_extras_secret(&w);
        const char *pod_ip = ip && strcmp(ip, "-") != 0 ? ip : NULL;
        if (f_asb) floor_status_asb(&a, obj, &w, 1, inst, pod_ip, reason);
        else floor_status(&a, obj, &w, 1, !f_pod ? inst : arena_sprintf(&a, "%sworker-%s", F.dc.prefix, w.name), pod_ip);
    }
    cJSON_Delete(obj);
    arena_free(&a);
}

static void *floor_thread(void *arg) {
    (void)arg;
    while (!expired() && atomic_load(&f_running.n) < B.n) {
        char *job = jobq_pop(&fq);
        if (!job) continue;
        if (job[0] == 'c') {
            floor_create(job + 2);
            strset_add(&f_started, job + 2);
        } else {
            floor_running(job + 2);
        }
        free(job);
    }
    return NULL;
}

static int cmd_floor(void) {
    int64_t t0 = epoch_ms();
    jobq_init(&fq);
    strset_init(&f_started);
    strset_init(&f_running);
    f_extras = env_long("BENCH_FLOOR_EXTRAS", 0) != 0;
    F.host.kc = B.kc;
    F.host.rec = kube_recorder_new(B.kc, "hiclaw.io/worker-controller", "bench-floor");
    F.host.namespace = B.ns;
    f_asb = strcmp(B.backend, "agent-sandbox") == 0;
    f_pod = strcmp(B.backend, "sandbox") != 0 && !f_asb;
    wc_err err;
    err_clear(&err);
    /* The backends as run sets them up: names, env, the sandbox's settings and worker-deps
     * storage. Their probes of the OpenKruise and agent-sandbox CRDs are setup, not the floor's
     * work: not counted in the requests printed below. */
    if (controller_setup(&F, wc_backend_table, WC_NBACKENDS, &B.conf, &err) < 0) {
        fprintf(stderr, "floor: setup: %s\n", err.msg);
        return 1;
    }
    f_setup_requests = atomic_load(&B.kc->requests);
    f_setup_writes = atomic_load(&B.kc->writes);
    if (!f_pod && !f_asb && !sbx_state(&F.backends[1])->deps.s3) {
        fprintf(stderr, "floor: s3: the sandbox bench needs worker-deps storage (HICLAW_WORKER_DEPS_*)\n");
        return 1;
    }
    char sel[300];
    snprintf(sel, sizeof sel, LABEL_CONTROLLER "=%s", B.conf.controller_name);
    /* Instance informers first, so they see every instance before its Worker's first event. */
    if (f_asb) {
        f_inst = start_informer("agent-sandboxes", &KUBE_AGENT_SANDBOXES, sel, asb_project, floor_on_agent_sandbox, NULL);
    } else if (!f_pod) {
        f_inst = start_informer("sandboxclaims", &KUBE_SANDBOXCLAIMS, sel, project_claim, floor_on_claim, NULL);
        f_sbx = start_informer("sandboxes", &KUBE_SANDBOXES, sel, project_sandbox, floor_on_sandbox, NULL);
    } else f_inst = start_informer("pods", &KUBE_PODS, sel, project_phase, floor_on_instance, NULL);
    F.workers = start_informer("workers", &KUBE_WORKERS, NULL, worker_project, floor_on_worker, NULL);
    wait_synced(F.workers);
    int64_t t_synced = epoch_ms();
    long nt = B.conf.concurrency;
    pthread_t th[64];
    for (long i = 0; i < nt; i++) pthread_create(&th[i], NULL, floor_thread, NULL);
    for (long i = 0; i < nt; i++) pthread_join(th[i], NULL);
    int64_t t1 = epoch_ms();
    printf("{\"threads\":%ld,\"started\":%ld,\"running\":%ld,\"errors\":%ld,\"requests\":%ld,\"writes\":%ld,"
           "\"start_ms\":%" PRId64 ",\"synced_ms\":%" PRId64 ",\"end_ms\":%" PRId64 "}\n",
           nt, atomic_load(&f_started.n), atomic_load(&f_running.n), atomic_load(&f_errors),
           atomic_load(&B.kc->requests) - f_setup_requests, atomic_load(&B.kc->writes) - f_setup_writes, t0, t_synced, t1);
    fflush(stdout);
    atomic_store(&B.kc->cancel, 1);
    kube_informer_free(F.workers);
    kube_informer_free(f_inst);
    kube_informer_free(f_sbx);
    controller_release(&F);
    kube_recorder_free(F.host.rec);
    return atomic_load(&f_running.n) >= B.n ? 0 : 1;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (argc < 2) {
        fprintf(stderr, "usage: wc-bench create|pool|watch|floor|clear [run flags]\n");
        return 2;
    }
    if (bench_setup(argc - 1, argv + 1) < 0) return 2;
    const char *cmd = argv[1];
    int rc;
    if (strcmp(cmd, "create") == 0) rc = cmd_create();
    else if (strcmp(cmd, "pool") == 0) rc = cmd_pool();
    else if (strcmp(cmd, "clear") == 0) rc = cmd_clear();
    else if (strcmp(cmd, "watch") == 0) rc = cmd_watch();
    else if (strcmp(cmd, "floor") == 0) rc = cmd_floor();
    else {
        fprintf(stderr, "unknown command %s\n", cmd);
        rc = 2;
    }
    curl_global_cleanup();
    return rc;
}
