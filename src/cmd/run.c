/*
 * run.c — `worker-controller run`: the controller.
 *
 *   configuration (exit 2 on anything invalid, before touching the cluster)
 *   → clients → every backend of the table set up (its settings, clients, caches)
 *   → informers (Workers and each backend's instances: all labelled
 *     hiclaw.io/controller=<name>) → caches synced → [leader election] → backends started →
 *     HICLAW_CONCURRENCY reconcile workers
 *   → SIGTERM/SIGINT: stop taking work, finish in-flight reconciles, release the lease, exit 0 —
 *     all within 30 s (Kubernetes' default grace period) even when the API server hangs: the
 *     drain waits at most RUN_SHUTDOWN_GRACE_MS, the lease release gets short request time
 *     limits, and then whatever is still in flight is cancelled.
 *   → lease lost: every request cancelled at once (no drain: another replica may already act),
 *     exit 1. Nothing is written before the lease is held, a backend's start (the managed
 *     SandboxSet) included.
 *
 * Each step either succeeds or says how `run` ends (an exit code); one teardown then releases
 * whatever the steps made, in reverse order, each part only if it exists.
 */

static const char run_usage_head[] =
    "Usage: worker-controller run [FLAGS]\n"
    "\n"
    "Runs the Worker controller. Every setting is an environment variable (HiClaw style) and a\n"
    "flag; a flag wins over the variable. Invalid settings stop it before it touches the\n"
    "cluster (exit 2, naming the variable).\n"
    "\n";

static void run_usage(FILE *out) {
    fputs(run_usage_head, out);
    cfg_print_help(out);
    fputs(KUBE_CONNECT_FLAGS_USAGE, out);
}

/* Shutdown's worst case with a hanging API server: the drain (15 s), then the elector's last
 * renewal and the release's GET + PUT at 4 s each: 27 s, inside Kubernetes' 30 s grace. */
#define RUN_SHUTDOWN_GRACE_MS 15000
#define RUN_LEASE_REQUEST_TIMEOUT_MS 4000L
#define RUN_CONTINUE (-1) /* a step succeeded: go on */

typedef struct run_state {
    controller ctl;
    int ctl_ready;          /* controller_setup succeeded: release it */
    wc_cfg conf;
    wq *q;
    pthread_t *threads;
    int nthreads;
    char *namespace;        /* watched */
    char *own_namespace;    /* where the controller runs: its Lease lives here */
    char host[256];
    char *instance;         /* <controller>-<host>: Events' reportingInstance */
    atomic_int lease_lost;  /* the lease was lost: every request of the controller is cancelled */
    leader_elector *elector;
    kube_client *lease_kc;  /* leader election's own client */
    httpd *health, *metrics;
    double start_time;
    /* controller_runtime_reconcile_total by result */
    atomic_long results[4]; /* success, error, requeue, requeue_after */
    metrics_histogram reconcile_time;
    char selectors[1 + DECIDE_MAX_BACKENDS * BACKEND_MAX_CACHES][400]; /* the informers' (they keep the pointer) */
} run_state;

static void enqueue_worker(void *ud, const char *key, const cJSON *old_obj, const cJSON *new_obj) {
    run_state *r = ud;
    (void)old_obj, (void)new_obj;
    wq_add(r->q, key);
}

/* Instances map back to their Worker through the hiclaw.io/worker label. */
static void enqueue_owner(void *ud, const char *key, const cJSON *old_obj, const cJSON *new_obj) {
    run_state *r = ud;
    (void)key;
    char *owner = instance_index(new_obj ? new_obj : old_obj);
    if (owner) wq_add(r->q, owner);
    free(owner);
}

static void *run_worker_thread(void *arg) {
    run_state *r = arg;
    for (;;) {
        char *key = NULL;
        if (wq_get(r->q, &key) != WQ_OK) break;
        double t0 = wc_now_seconds();
        reconcile_result res = reconcile_worker(&r->ctl, key);
        metrics_histogram_observe(&r->reconcile_time, wc_now_seconds() - t0);
        atomic_fetch_add(&r->results[res.error ? 1 : res.outcome == RECONCILE_RETRY ? 2 : res.outcome == RECONCILE_AFTER ? 3 : 0], 1);
        switch (res.outcome) {
        case RECONCILE_DONE:
            wq_forget(r->q, key);
            break;
        case RECONCILE_RETRY:
            wq_add_rate_limited(r->q, key);
            break;
        case RECONCILE_AFTER:
            wq_forget(r->q, key);
            wq_add_after(r->q, key, res.requeue_after_ms);
            break;
        }
        wq_done(r->q, key);
        free(key);
    }
    return NULL;
}

/* The label selectors of the watches. Pure. HiClaw's rule (SPEC 3): a controller handles the
 * Workers that carry its hiclaw.io/controller label, so several controllers share a namespace
 * and a Worker without the label belongs to none of them. Every watch is scoped by it; a
 * backend's cache adds its own terms (pod-backend Pods leave a Sandbox's own Pod out). */
typedef struct run_selectors {
    char workers[300];
    char instances[300]; /* every backend cache's, before its own terms */
} run_selectors;

static void run_selectors_for(const char *controller_name, run_selectors *s) {
    snprintf(s->workers, sizeof s->workers, LABEL_CONTROLLER "=%s", controller_name);
    snprintf(s->instances, sizeof s->instances, LABEL_CONTROLLER "=%s", controller_name);
}

static void run_cache_selector(const char *controller_name, const backend_cache *cache, char *out, size_t n) {
    run_selectors s;
    run_selectors_for(controller_name, &s);
    snprintf(out, n, "%s%s", s.instances, cache->selector_extra ? cache->selector_extra : "");
}

/* Workers of the namespace that carry no hiclaw.io/controller label: no controller handles
 * them (SPEC 3). Counted with ONE list of at most `limit` items, because this is only a hint for
 * the operator: the API server sets no remainingItemCount when a label selector is given, so
 * beyond one page the count is "at least". */
typedef struct unlabelled_workers {
    long count;
    int at_least;     /* more exist than were listed */
    char names[256];  /* the first few, comma-separated */
} unlabelled_workers;

static int count_unlabelled_workers(kube_client *kc, const char *ns, long limit, unlabelled_workers *u, wc_err *err) {
    memset(u, 0, sizeof *u);
    cJSON *list = NULL;
    if (kube_list_page(kc, &KUBE_WORKERS, ns, "!" LABEL_CONTROLLER, NULL, limit, NULL, &list, err) < 0) return -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, json_get(list, "items")) {
        const char *name = json_str_at(it, "metadata.name");
        if (name && strlen(u->names) + strlen(name) + 3 < sizeof u->names)
            snprintf(u->names + strlen(u->names), sizeof u->names - strlen(u->names), "%s%s", u->count ? "," : "", name);
        u->count++;
    }
    const cJSON *md = json_get(list, "metadata");
    const cJSON *rest = json_get(md, "remainingItemCount");
    if (cJSON_IsNumber(rest) && rest->valuedouble > 0) u->count += (long)rest->valuedouble;
    else if (json_str(md, "continue") && *json_str(md, "continue")) u->at_least = 1;
    cJSON_Delete(list);
    return 0;
}

static kube_informer *run_informer(run_state *r, const char *name, const kube_resource *res, const char *selector,
                                   kube_project_fn project, kube_informer_handler h, kube_index_fn index, wc_err *err) {
    kube_informer_options o = {.resource = res, .namespace = r->namespace, .label_selector = selector,
                               .project = project, .handler = h, .ud = r, .index = index};
    kube_informer *inf = kube_informer_new(r->ctl.host.kc, name, &o);
    if (kube_informer_start(inf, err) < 0) {
        kube_informer_free(inf);
        return NULL;
    }
    return inf;
}

/* Every informer of the controller, the Workers' first: NULL where one is not started (yet). */
static size_t run_informers(run_state *r, kube_informer **out, const char **names, size_t cap) {
    size_t n = 0;
    controller *c = &r->ctl;
    out[n] = c->workers, names[n++] = "workers";
    for (size_t i = 0; i < c->nbackends; i++)
        for (size_t k = 0; k < c->backends[i].ncaches && n < cap; k++)
            out[n] = c->backends[i].informers[k], names[n++] = c->backends[i].caches[k].name;
    return n;
}

#define RUN_MAX_INFORMERS (1 + DECIDE_MAX_BACKENDS * BACKEND_MAX_CACHES)

/* /healthz: the process answers. /readyz: every informer has listed (a replica that is not the
 * leader is ready too: it would serve at once after a takeover). */
static int health_handler(void *ud, const char *path, buf *body, const char **ctype) {
    run_state *r = ud;
    (void)ctype;
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/livez") == 0) {
        buf_puts(body, "ok\n");
        return 200;
    }
    if (strcmp(path, "/readyz") == 0) {
        kube_informer *all[RUN_MAX_INFORMERS];
        const char *names[RUN_MAX_INFORMERS];
        size_t n = run_informers(r, all, names, RUN_MAX_INFORMERS);
        for (size_t i = 0; i < n; i++)
            if (!all[i] || !kube_informer_synced(all[i])) {
                buf_printf(body, "informer %s not synced\n", names[i]);
                return 503;
            }
        buf_puts(body, "ok\n");
        return 200;
    }
    buf_puts(body, "not found\n");
    return 404;
}

/* hiclaw_workers{phase,backend}: counted from the Worker cache at scrape time. */
static void render_worker_gauge(buf *b, kube_informer *workers) {
    buf_puts(b, "# HELP hiclaw_workers Workers by observed phase and backend.\n# TYPE hiclaw_workers gauge\n");
    if (!workers) return;
    strmap counts = STRMAP_INIT;
    size_t n;
    char **keys = kube_informer_keys(workers, &n);
    for (size_t i = 0; i < n; i++) {
        cJSON *w = kube_informer_get(workers, keys[i]);
        const char *phase = json_str_at(w, "status.phase"), *runtime = json_str_at(w, "status.backendRuntime");
        char k[128];
        snprintf(k, sizeof k, "phase=\"%s\",backend=\"%s\"", phase ? phase : "", runtime && *runtime ? runtime : "pod");
        strmap_put(&counts, k, (void *)((intptr_t)strmap_get(&counts, k) + 1));
        cJSON_Delete(w);
        free(keys[i]);
    }
    free(keys);
    const char *k;
    void *v;
    strmap_foreach(&counts, k, v) buf_printf(b, "hiclaw_workers{%s} %ld\n", k, (long)(intptr_t)v);
    strmap_free(&counts, NULL);
}

static int metrics_handler(void *ud, const char *path, buf *b, const char **ctype) {
    run_state *r = ud;
    if (strcmp(path, "/metrics") != 0) {
        buf_puts(b, "not found\n");
        return 404;
    }
    *ctype = "text/plain; version=0.0.4; charset=utf-8";
    static const char *results[4] = {"success", "error", "requeue", "requeue_after"};
    buf_puts(b, "# HELP controller_runtime_reconcile_total Total number of reconciliations per controller\n"
                "# TYPE controller_runtime_reconcile_total counter\n");
    for (int i = 0; i < 4; i++)
        buf_printf(b, "controller_runtime_reconcile_total{controller=\"worker\",result=\"%s\"} %ld\n", results[i],
                   atomic_load(&r->results[i]));
    buf_printf(b, "# HELP controller_runtime_reconcile_errors_total Total number of reconciliation errors per controller\n"
                  "# TYPE controller_runtime_reconcile_errors_total counter\n"
                  "controller_runtime_reconcile_errors_total{controller=\"worker\"} %ld\n", atomic_load(&r->results[1]));
    metrics_family(b, "controller_runtime_reconcile_time_seconds", "histogram",
                   "Length of time per reconciliation per controller");
    metrics_histogram_render(b, "controller_runtime_reconcile_time_seconds", "controller=\"worker\"", &r->reconcile_time);
    wq_counters wc;
    memset(&wc, 0, sizeof wc);
    if (r->q) wq_stats(r->q, &wc);
    buf_printf(b, "# HELP workqueue_depth Current depth of workqueue\n# TYPE workqueue_depth gauge\n"
                  "workqueue_depth{name=\"worker\"} %zu\n"
                  "# HELP workqueue_adds_total Total number of adds handled by workqueue\n# TYPE workqueue_adds_total counter\n"
                  "workqueue_adds_total{name=\"worker\"} %" PRIu64 "\n"
                  "# HELP workqueue_retries_total Total number of retries handled by workqueue\n# TYPE workqueue_retries_total counter\n"
                  "workqueue_retries_total{name=\"worker\"} %" PRIu64 "\n",
               wc.depth, wc.adds, wc.retries);
    kube_client *kc = r->ctl.host.kc;
    if (kc) metrics_rest_render(b, &kc->rest, kc->server + (strncmp(kc->server, "https://", 8) == 0 ? 8 : 7));
    buf_printf(b, "# HELP leader_election_master_status Gauge of if the reporting system is master of the relevant "
                  "lease, 0 indicates backup, 1 indicates master.\n"
                  "# TYPE leader_election_master_status gauge\nleader_election_master_status{name=\"%s-leader\"} %d\n",
               r->conf.controller_name, r->elector ? atomic_load(&r->elector->leading) : 1);
    render_worker_gauge(b, r->ctl.workers);
    if (r->ctl.host.metrics) wm_render(b, r->ctl.host.metrics);
    metrics_process_render(b, r->start_time);
    return 200;
}

/* Losing the lease means another replica may act any moment: no write of ours may land after
 * that. Like controller-runtime (zero grace on lease loss), nothing is drained: the client's
 * cancel flag aborts every request in flight and refuses new ones — the S3 client shares the
 * flag — so the reconciles still running fail at their next request instead of finishing.
 * Then the main thread is told to exit, non-zero, so Kubernetes restarts us as a follower.
 * Runs on the elector's thread. */
static void on_leadership_lost(void *ud) {
    run_state *r = ud;
    if (r && r->ctl.host.kc) kube_client_cancel(r->ctl.host.kc);
    if (r) atomic_store(&r->lease_lost, 1);
    kill(getpid(), SIGTERM);
}

/* True when SIGTERM/SIGINT is pending (they are blocked and taken by sigwait). */
static int signal_pending(void) {
    sigset_t pending;
    sigpending(&pending);
    return sigismember(&pending, SIGTERM) || sigismember(&pending, SIGINT);
}

/* ---- the steps ---- */

/* Configuration and the cluster connection's settings. Returns RUN_CONTINUE, or the exit code
 * of an invalid configuration (nothing logged: the message went to stderr). */
static int run_configure(run_state *r, int argc, char **argv, kube_config *kcfg) {
    wc_err err;
    err_clear(&err);
    if (cfg_load(&r->conf, NULL, argc, argv, &err) < 0) {
        fprintf(stderr, "worker-controller run: %s\n", err.msg);
        return WC_EXIT_USAGE;
    }
    log_configure(r->conf.log_fmt, r->conf.log_lvl, 2);
    if (kube_config_load(&r->conf.kube, kcfg, &err) < 0) {
        fprintf(stderr, "worker-controller run: %s\n", err.msg);
        cfg_free(&r->conf);
        return err.code == WC_EIO ? WC_EXIT_FAILURE : WC_EXIT_USAGE;
    }
    const char *ns = *r->conf.watch_namespace ? r->conf.watch_namespace : kcfg->namespace ? kcfg->namespace : "default";
    r->namespace = xstrdup(ns);
    /* The Lease belongs to the controller, not to the Workers: it lives in the controller's own
     * namespace (in-cluster: the pod's; else the kubeconfig context's), which is where
     * `render-rbac --namespace` grants it, and falls back to the watched namespace. */
    r->own_namespace = xstrdup(kcfg->namespace ? kcfg->namespace : r->namespace);
    return RUN_CONTINUE;
}

/* The clients, the Event recorder and every backend. */
static int run_connect(run_state *r, const kube_config *kcfg) {
    wc_err err;
    err_clear(&err);
    controller *c = &r->ctl;
    log_info("starting worker-controller", "version", WC_VERSION, "namespace", r->namespace, "cluster", kcfg->source,
             "controller", r->conf.controller_name);
    cfg_log_summary(&r->conf);
    c->host.kc = kube_client_new(kcfg, &err);
    /* Leader election gets a client of its own: short request time limits (a renewal that
     * hangs longer than the renew deadline is worthless) and its own cancel flag, so shutdown
     * can abort everything else and still release the lease. */
    r->lease_kc = c->host.kc && r->conf.leader_elect ? kube_client_new(kcfg, &err) : NULL;
    if (!c->host.kc || (r->conf.leader_elect && !r->lease_kc)) {
        log_error("cannot create the Kubernetes client", "error", err.msg);
        return WC_EXIT_FAILURE;
    }
    if (r->lease_kc) atomic_store(&r->lease_kc->timeout_ms, RUN_LEASE_REQUEST_TIMEOUT_MS);
    gethostname(r->host, sizeof r->host - 1);
    buf b = BUF_INIT;
    buf_printf(&b, "%s-%s", r->conf.controller_name, r->host);
    r->instance = buf_steal(&b);
    c->host.rec = kube_recorder_new(c->host.kc, "hiclaw.io/worker-controller", r->instance);
    c->host.namespace = r->namespace;
    if (controller_setup(c, wc_backend_table, WC_NBACKENDS, &r->conf, &err) < 0)
        return err.code == WC_EINVAL ? WC_EXIT_USAGE : WC_EXIT_FAILURE; /* the backend logged why */
    r->ctl_ready = 1;
    return RUN_CONTINUE;
}

/* The probes, the metrics and the queue. A port in use costs the probes or the metrics, not
 * the Workers: say so loudly and go on (the kubelet's probes will then report it). Any other
 * listen error is a bad setting. */
static int run_serve(run_state *r) {
    wc_err err;
    err_clear(&err);
    r->start_time = (double)time(NULL);
    metrics_histogram_init(&r->reconcile_time, METRICS_RECONCILE_BUCKETS, METRICS_COUNT_OF(METRICS_RECONCILE_BUCKETS));
    if (*r->conf.health_addr && !(r->health = httpd_start(r->conf.health_addr, health_handler, r, &err))) {
        log_error("cannot serve health probes", "addr", r->conf.health_addr, "error", err.msg);
        if (!strstr(err.msg, "in use")) return WC_EXIT_FAILURE;
    }
    if (*r->conf.metrics_addr && !(r->metrics = httpd_start(r->conf.metrics_addr, metrics_handler, r, &err))) {
        log_error("cannot serve metrics", "addr", r->conf.metrics_addr, "error", err.msg);
        if (!strstr(err.msg, "in use")) return WC_EXIT_FAILURE;
    }
    if (r->health) log_info("serving health probes", "addr", r->health->addr);
    if (r->metrics) log_info("serving metrics", "addr", r->metrics->addr);
    r->q = wq_new("worker", NULL, &err);
    if (!r->q) {
        log_error("cannot create the workqueue", "error", err.msg);
        return WC_EXIT_FAILURE;
    }
    return RUN_CONTINUE;
}

/* The informers: Workers, then every backend's caches. Reconcile nothing until every cache has
 * listed: a decision on a half-filled cache could "see" no Pod and create a second one. */
static int run_watch(run_state *r) {
    wc_err err;
    err_clear(&err);
    controller *c = &r->ctl;
    run_selectors sel;
    run_selectors_for(r->conf.controller_name, &sel);
    size_t nsel = 0;
    snprintf(r->selectors[nsel], sizeof r->selectors[nsel], "%s", sel.workers);
    c->workers = run_informer(r, "workers", &KUBE_WORKERS, r->selectors[nsel++], worker_project, enqueue_worker, NULL, &err);
    for (size_t i = 0; i < c->nbackends && c->workers; i++) {
        backend *b = &c->backends[i];
        for (size_t k = 0; k < b->ncaches; k++) {
            char *selector = r->selectors[nsel++];
            run_cache_selector(r->conf.controller_name, &b->caches[k], selector, sizeof r->selectors[0]);
            b->informers[k] = run_informer(r, b->caches[k].name, b->caches[k].resource, selector, b->caches[k].project,
                                           enqueue_owner, instance_index, &err);
            if (!b->informers[k]) goto failed;
        }
    }
    if (!c->workers) goto failed;
    kube_informer *all[RUN_MAX_INFORMERS];
    const char *names[RUN_MAX_INFORMERS];
    size_t n = run_informers(r, all, names, RUN_MAX_INFORMERS);
    for (size_t i = 0; i < n; i++)
        while (kube_informer_wait_synced(all[i], 20) < 0) {
            if (!signal_pending()) continue;
            log_info("signal before caches synced: exiting");
            return WC_EXIT_OK;
        }
    return RUN_CONTINUE;
failed:
    log_error("cannot start informers", "error", err.msg);
    return WC_EXIT_FAILURE;
}

/* A Worker without the label is silently nobody's: say so once, cheaply. */
static void run_warn_unlabelled(run_state *r) {
    unlabelled_workers u;
    wc_err err;
    err_clear(&err);
    if (count_unlabelled_workers(r->ctl.host.kc, r->namespace, 100, &u, &err) < 0) {
        log_warn("cannot count Workers without a hiclaw.io/controller label", "namespace", r->namespace, "error", err.msg);
    } else if (u.count) {
        char n[32];
        snprintf(n, sizeof n, "%s%ld", u.at_least ? "at least " : "", u.count);
        log_warn("Workers without a hiclaw.io/controller label are ignored (label them hiclaw.io/controller=<controller>)",
                 "namespace", r->namespace, "count", n, "controller", r->conf.controller_name, "workers", u.names);
    }
}

/* Leader election, then each backend's start: nothing is written before the lease is held. */
static int run_lead(run_state *r) {
    wc_err err;
    err_clear(&err);
    if (r->conf.leader_elect) {
        char lease[300], identity[400];
        snprintf(lease, sizeof lease, "%s-leader", r->conf.controller_name);
        snprintf(identity, sizeof identity, "%s_%08lx%04x", r->host, (unsigned long)time(NULL), (unsigned)getpid() & 0xffff);
        r->elector = leader_new(r->lease_kc, r->own_namespace, lease, identity);
        r->elector->on_lost = on_leadership_lost;
        r->elector->ud = r;
        if (leader_start(r->elector, &err) < 0) {
            log_error("cannot start leader election", "error", err.msg);
            return WC_EXIT_FAILURE;
        }
        log_info("waiting to become leader", "lease", lease, "identity", identity);
        while (!atomic_load(&r->elector->leading)) {
            if (signal_pending()) {
                log_info("signal while waiting for leadership: exiting");
                return WC_EXIT_OK;
            }
            wc_sleep_ms(50);
        }
    }
    for (size_t i = 0; i < r->ctl.nbackends; i++) {
        backend *b = &r->ctl.backends[i];
        if (b->ops->start && b->ops->start(b, &err) < 0) return WC_EXIT_FAILURE; /* it logged why */
    }
    return RUN_CONTINUE;
}

/* The reconcile workers, until a signal: SIGTERM drains (15 s at most), a lost lease does not. */
static int run_work(run_state *r, sigset_t *sigs) {
    char nworkers[24];
    snprintf(nworkers, sizeof nworkers, "%" PRId64, r->conf.concurrency);
    log_info("caches synced, starting workers", "workers", nworkers);
    r->nthreads = (int)r->conf.concurrency;
    r->threads = xcalloc((size_t)r->nthreads, sizeof *r->threads);
    for (int i = 0; i < r->nthreads; i++) pthread_create(&r->threads[i], NULL, run_worker_thread, r);
    int sig = 0;
    while (sigwait(sigs, &sig) != 0) {}
    if (atomic_load(&r->lease_lost)) {
        /* No drain: in-flight requests are already cancelled (on_leadership_lost); the
         * reconciles fail fast and the workers are joined in the teardown. */
        log_error("leader lease lost: every request cancelled, exiting");
        return WC_EXIT_FAILURE;
    }
    log_info("shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
    if (wq_shutdown_drain(r->q, RUN_SHUTDOWN_GRACE_MS)) log_warn("in-flight reconciles did not finish in time; abandoning them");
    return WC_EXIT_OK;
}

/* Releases whatever the steps made, last made first; each part only if it exists. */
static void run_teardown(run_state *r) {
    controller *c = &r->ctl;
    httpd_stop(r->health); /* before the queue and caches they read go away */
    httpd_stop(r->metrics);
    if (r->q) wq_shutdown(r->q);
    /* Events recorded so far get their chance before the client stops (bounded) */
    if (c->host.rec) kube_recorder_flush(c->host.rec, KUBE_EVENT_DRAIN_MS);
    kube_client_cancel(c->host.kc); /* abort watches and anything in flight (S3 too) */
    for (int i = 0; i < r->nthreads; i++) pthread_join(r->threads[i], NULL);
    leader_free(r->elector); /* nothing of ours runs any more: hand the lease over */
    for (size_t i = c->nbackends; i-- > 0;)
        for (size_t k = 0; k < c->backends[i].ncaches; k++) kube_informer_free(c->backends[i].informers[k]);
    kube_informer_free(c->workers);
    wq_free(r->q);
    free(r->threads);
    if (r->ctl_ready) controller_release(c);
    kube_recorder_free(c->host.rec);
    free(r->instance);
    kube_client_free(r->lease_kc);
    kube_client_free(c->host.kc);
}

static int cmd_run(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            run_usage(stdout);
            return WC_EXIT_OK;
        }
    run_state *r = xcalloc(1, sizeof *r);
    strcpy(r->host, "unknown");
    kube_config kcfg;
    int rc = run_configure(r, argc, argv, &kcfg);
    if (rc != RUN_CONTINUE) {
        free(r);
        return rc;
    }
    /* Signals are taken by sigwait in the main thread only; every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    rc = run_connect(r, &kcfg);
    kube_config_free(&kcfg);
    if (rc == RUN_CONTINUE) rc = run_serve(r);
    if (rc == RUN_CONTINUE) rc = run_watch(r);
    if (rc == RUN_CONTINUE) run_warn_unlabelled(r);
    if (rc == RUN_CONTINUE) rc = run_lead(r);
    if (rc == RUN_CONTINUE) rc = run_work(r, &sigs);
    run_teardown(r);
    log_info("stopped", "exit", rc == WC_EXIT_OK ? "0" : "1");
    free(r->namespace);
    free(r->own_namespace);
    cfg_free(&r->conf);
    free(r);
    return rc;
}
