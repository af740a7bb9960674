/*
 * run.c — `worker-controller run`: the controller.
 *
 *   configuration (exit 2 on anything invalid, before touching the cluster)
 *   → client → informers (Workers, Pods, claims, Sandboxes: all labelled
 *     hiclaw.io/controller=<name>) → caches synced → [leader election] → HICLAW_CONCURRENCY
 *     reconcile workers
 *   → SIGTERM/SIGINT: stop taking work, finish in-flight reconciles, release the lease, exit 0 —
 *     all within 30 s (Kubernetes' default grace period) even when the API server hangs: the
 *     drain waits at most RUN_SHUTDOWN_GRACE_MS, the lease release gets short request time
 *     limits, and then whatever is still in flight is cancelled.
 *   → lease lost: every request cancelled at once (no drain: another replica may already act),
 *     exit 1. Nothing is written before the lease is held, the managed SandboxSet included.
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

typedef struct run_state {
    controller ctl;
    wc_cfg conf;
    wq *q;
    pthread_t *threads;
    int nthreads;
    char *namespace;        /* watched */
    char *own_namespace;    /* where the controller runs: its Lease lives here */
    atomic_int stopping;
    atomic_int lease_lost;  /* the lease was lost: every request of the controller is cancelled */
    int sandbox_apis;       /* OpenKruise serves claims and Sandboxes: they are watched */
    leader_elector *elector;
    kube_client *lease_kc; /* leader election's own client */
    httpd *health, *metrics;
    double start_time;
    /* controller_runtime_reconcile_total by result */
    atomic_long results[4]; /* success, error, requeue, requeue_after */
    metrics_histogram reconcile_time;
} run_state;

static run_state *g_run; /* for informer handlers, which get it as ud anyway */

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

/* Is a resource of the sandbox backend served? Asked by listing it (limit 1) in the watched
 * namespace: that needs only the rights `run` has anyway, where reading the CRD itself would
 * need cluster-scoped access to customresourcedefinitions. 404 means the CRD is absent. */
static int api_served(kube_client *kc, const kube_resource *r, const char *ns, wc_err *err) {
    cJSON *list = NULL;
    int rc = kube_list_page(kc, r, ns, NULL, NULL, 1, NULL, &list, err);
    cJSON_Delete(list);
    if (rc == 0) return 1;
    return kube_err_not_found(err) ? 0 : -1;
}

static void controller_configure(controller *c, const wc_cfg *conf, const char *namespace) {
    (void)namespace;
    c->controller_name = conf->controller_name;
    c->dc.prefix = conf->resource_prefix;
    c->dc.sandbox_enabled = conf->sandbox_enabled;
    c->dc.sandbox_pause = conf->sandbox_pause;
    c->ps.controller_name = conf->controller_name;
    c->ps.prefix = conf->resource_prefix;
    c->ps.audience = conf->auth_audience;
    c->envc = (worker_env_config){conf->controller_url, conf->matrix_url, conf->matrix_domain, conf->ai_gateway_url,
                                  conf->fs_endpoint, conf->fs_bucket, conf->storage_prefix, conf->region, conf->yolo,
                                  conf->matrix_debug};
    c->wd = (worker_defaults){conf->default_worker_runtime, conf->worker_image, conf->copaw_worker_image,
                              conf->hermes_worker_image, conf->worker_cpu.canon, conf->worker_memory.canon};
    c->deps_prefix = conf->worker_deps_prefix;
    c->deps_pv = conf->sandbox_deps_pv;
    c->pool = conf->sandbox_pool;
    c->token_ttl_s = conf->sandbox_token_ttl_s;
    c->claim_timeout_ms = conf->sandbox_claim_timeout_ms;
    c->wait_ready_timeout_ms = conf->sandbox_wait_ready_timeout_ms;
}

/* The label selectors of the watches. Pure. HiClaw's rule (SPEC 3): a controller handles the
 * Workers that carry its hiclaw.io/controller label, so several controllers share a namespace
 * and a Worker without the label belongs to none of them. Every watch is scoped by it. */
typedef struct run_selectors {
    char workers[300];
    char instances[300]; /* claims and Sandboxes */
    char pods[400];      /* pod-backend Pods (a Sandbox's own Pod left out) */
} run_selectors;

static void run_selectors_for(const char *controller_name, run_selectors *s) {
    snprintf(s->workers, sizeof s->workers, LABEL_CONTROLLER "=%s", controller_name);
    snprintf(s->instances, sizeof s->instances, LABEL_CONTROLLER "=%s", controller_name);
    snprintf(s->pods, sizeof s->pods, "%s" POD_INSTANCE_SELECTOR_EXTRA, s->instances);
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
    kube_informer *inf = kube_informer_new(r->ctl.kc, name, &o);
    if (kube_informer_start(inf, err) < 0) {
        kube_informer_free(inf);
        return NULL;
    }
    return inf;
}

/* /healthz: the process answers. /readyz: every informer has listed (a replica that is not the
 * leader is ready too: it would serve at once after a takeover). */
static int health_handler(void *ud, const char *path, buf *body, const char **ctype) {
    run_state *r = ud;
    if (strcmp(path, "/healthz") == 0 || strcmp(path, "/livez") == 0) {
        buf_puts(body, "ok\n");
        return 200;
    }
    if (strcmp(path, "/readyz") == 0) {
        controller *c = &r->ctl;
        kube_informer *all[4] = {c->workers, c->pods, c->claims, c->sandboxes};
        int need = 2 + (r->sandbox_apis ? 2 : 0);
        for (int i = 0; i < need; i++)
            if (!all[i] || !kube_informer_synced(all[i])) {
                buf_printf(body, "informer %s not synced\n", i == 0 ? "workers" : i == 1 ? "pods" : i == 2 ? "sandboxclaims" : "sandboxes");
                return 503;
            }
        buf_puts(body, "ok\n");
        return 200;
    }
    (void)ctype;
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
        const char *phase = json_str_at(w, "status.phase"), *backend = json_str_at(w, "status.backendRuntime");
        char k[128];
        snprintf(k, sizeof k, "phase=\"%s\",backend=\"%s\"", phase ? phase : "", backend && *backend ? backend : "pod");
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
    buf_puts(b, "# HELP controller_runtime_reconcile_time_seconds Length of time per reconciliation per controller\n"
                "# TYPE controller_runtime_reconcile_time_seconds histogram\n");
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
    if (r->ctl.kc) metrics_rest_render(b, &r->ctl.kc->rest, r->ctl.kc->server + (strncmp(r->ctl.kc->server, "https://", 8) == 0 ? 8 : 7));
    buf_printf(b, "# HELP leader_election_master_status Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master.\n"
                  "# TYPE leader_election_master_status gauge\nleader_election_master_status{name=\"%s-leader\"} %d\n",
               r->conf.controller_name, r->elector ? atomic_load(&r->elector->leading) : 1);
    render_worker_gauge(b, r->ctl.workers);
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
    if (r && r->ctl.kc) atomic_store(&r->ctl.kc->cancel, 1);
    if (r) atomic_store(&r->lease_lost, 1);
    kill(getpid(), SIGTERM);
}

/* True when SIGTERM/SIGINT is pending (they are blocked and taken by sigwait). */
static int signal_pending(void) {
    sigset_t pending;
    sigpending(&pending);
    return sigismember(&pending, SIGTERM) || sigismember(&pending, SIGINT);
}

static int wait_signal(sigset_t *set) {
    int sig = 0;
    while (sigwait(set, &sig) != 0) {}
    return sig;
}

static int cmd_run(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (cli_is_help(argv[i])) {
            run_usage(stdout);
            return WC_EXIT_OK;
        }
    run_state *r = xcalloc(1, sizeof *r);
    g_run = r;
    wc_err err;
    err_clear(&err);
    if (cfg_load(&r->conf, NULL, argc, argv, &err) < 0) {
        fprintf(stderr, "worker-controller run: %s\n", err.msg);
        free(r);
        return WC_EXIT_USAGE;
    }
    log_configure(r->conf.log_fmt, r->conf.log_lvl, 2);

    /* Signals are taken by sigwait in the main thread only; every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);

    kube_config kcfg;
    if (kube_config_load(&r->conf.kube, &kcfg, &err) < 0) {
        fprintf(stderr, "worker-controller run: %s\n", err.msg);
        cfg_free(&r->conf);
        free(r);
        return err.code == WC_EIO ? WC_EXIT_FAILURE : WC_EXIT_USAGE;
    }
    r->namespace = xstrdup(r->conf.watch_namespace && *r->conf.watch_namespace ? r->conf.watch_namespace
                           : kcfg.namespace                                    ? kcfg.namespace
                                                                               : "default");
    /* The Lease belongs to the controller, not to the Workers: it lives in the controller's own
     * namespace (in-cluster: the pod's; else the kubeconfig context's), which is where
     * `render-rbac --namespace` grants it, and falls back to the watched namespace. */
    r->own_namespace = xstrdup(kcfg.namespace ? kcfg.namespace : r->namespace);
    log_info("starting worker-controller", "version", WC_VERSION, "namespace", r->namespace, "cluster", kcfg.source,
             "controller", r->conf.controller_name);
    cfg_log_summary(&r->conf);
    controller *c = &r->ctl;
    c->kc = kube_client_new(&kcfg, &err);
    /* Leader election gets a client of its own: short request time limits (a renewal that
     * hangs longer than the renew deadline is worthless) and its own cancel flag, so shutdown
     * can abort everything else and still release the lease. */
    r->lease_kc = c->kc && r->conf.leader_elect ? kube_client_new(&kcfg, &err) : NULL;
    kube_config_free(&kcfg);
    int rc = WC_EXIT_FAILURE;
    if (!c->kc || (r->conf.leader_elect && !r->lease_kc)) {
        log_error("cannot create the Kubernetes client", "error", err.msg);
        goto out;
    }
    if (r->lease_kc) atomic_store(&r->lease_kc->timeout_ms, RUN_LEASE_REQUEST_TIMEOUT_MS);
    controller_configure(c, &r->conf, r->namespace);
    pthread_mutex_init(&c->backoff_mu, NULL);
    char host[256] = "unknown";
    gethostname(host, sizeof host - 1);
    char *instance = NULL;
    {
        buf b = BUF_INIT;
        buf_printf(&b, "%s-%s", r->conf.controller_name, host);
        instance = buf_steal(&b);
    }
    c->rec = kube_recorder_new(c->kc, "hiclaw.io/worker-controller", instance);

    /* Claims and Sandboxes are watched whenever OpenKruise serves them, even with the sandbox
     * backend disabled (read-only then): a Worker whose sandbox was made before the backend was
     * turned off must be seen — never doubled by a Pod, never stripped of its finalizer while
     * its agent runs. Enabled, the CRDs are required; disabled, they are looked for. */
    {
        static const char *need[] = {"sandboxclaims.agents.kruise.io", "sandboxes.agents.kruise.io"};
        const kube_resource *needr[] = {&KUBE_SANDBOXCLAIMS, &KUBE_SANDBOXES};
        int served = 0;
        for (size_t i = 0; i < 2; i++) {
            int p = api_served(c->kc, needr[i], r->namespace, &err);
            if (p < 0) {
                log_error(r->conf.sandbox_enabled
                              ? "cannot check the OpenKruise agents CRDs"
                              : "cannot check the OpenKruise agents CRDs (with the sandbox backend disabled the controller "
                                "still reads claims and Sandboxes: apply the RBAC of render-rbac --no-sandbox)",
                          "crd", need[i], "error", err.msg);
                goto out_free;
            }
            if (p == 0 && r->conf.sandbox_enabled) {
                log_error("the sandbox backend is enabled but a CRD it needs is not installed: install OpenKruise "
                          "agents, or set HICLAW_SANDBOX_ENABLED=false",
                          "crd", need[i]);
                rc = WC_EXIT_USAGE;
                goto out_free;
            }
            served += p;
        }
        r->sandbox_apis = served == 2;
        if (!r->conf.sandbox_enabled && r->sandbox_apis)
            log_info("sandbox backend disabled; watching SandboxClaims and Sandboxes read-only (OpenKruise agents is installed)");
    }

    /* The worker-deps storage: required with the sandbox backend; with it disabled, used (when
     * configured) only to remove a deleted Worker's objects. */
    int have_storage = *r->conf.worker_deps_endpoint && *r->conf.worker_deps_bucket && *r->conf.worker_deps_access_key_id;
    if (r->conf.sandbox_enabled || have_storage) {
        c->s3 = s3_client_new(r->conf.worker_deps_endpoint, r->conf.worker_deps_bucket, r->conf.worker_deps_region,
                              r->conf.worker_deps_access_key_id, r->conf.worker_deps_secret_access_key,
                              r->conf.worker_deps_ca_pem, &err);
        if (!c->s3 && r->conf.sandbox_enabled) {
            log_error("cannot set up worker-deps storage", "error", err.msg);
            rc = WC_EXIT_USAGE;
            goto out_free;
        }
        if (!c->s3) log_warn("cannot set up worker-deps storage; deleted Workers' worker-deps objects stay", "error", err.msg);
        else c->s3->cancel = &c->kc->cancel;
    }
    c->dc.deps_storage = c->s3 != NULL;

    r->start_time = (double)time(NULL);
    pthread_mutex_init(&r->reconcile_time.mu, NULL);
    /* A port in use costs the probes or the metrics, not the Workers: say so loudly and go on
     * (the kubelet's probes will then report it). Any other listen error is a bad setting. */
    if (*r->conf.health_addr && !(r->health = httpd_start(r->conf.health_addr, health_handler, r, &err))) {
        log_error("cannot serve health probes", "addr", r->conf.health_addr, "error", err.msg);
        if (!strstr(err.msg, "in use")) goto out_free;
    }
    if (*r->conf.metrics_addr && !(r->metrics = httpd_start(r->conf.metrics_addr, metrics_handler, r, &err))) {
        log_error("cannot serve metrics", "addr", r->conf.metrics_addr, "error", err.msg);
        if (!strstr(err.msg, "in use")) goto out_free;
    }
    if (r->health) log_info("serving health probes", "addr", r->health->addr);
    if (r->metrics) log_info("serving metrics", "addr", r->metrics->addr);

    r->q = wq_new("worker", NULL, &err);
    if (!r->q) {
        log_error("cannot create the workqueue", "error", err.msg);
        goto out_free;
    }
    run_selectors sel;
    run_selectors_for(r->conf.controller_name, &sel);
    c->workers = run_informer(r, "workers", &KUBE_WORKERS, sel.workers, worker_project, enqueue_worker, NULL, &err);
    c->pods = c->workers ? run_informer(r, "pods", &KUBE_PODS, sel.pods, pod_project, enqueue_owner, instance_index, &err) : NULL;
    if (c->pods && r->sandbox_apis) {
        c->claims = run_informer(r, "sandboxclaims", &KUBE_SANDBOXCLAIMS, sel.instances, claim_project, enqueue_owner,
                                 instance_index, &err);
        c->sandboxes = c->claims ? run_informer(r, "sandboxes", &KUBE_SANDBOXES, sel.instances, sandbox_project,
                                                enqueue_owner, instance_index, &err)
                                 : NULL;
    }
    if (!c->workers || !c->pods || (r->sandbox_apis && (!c->claims || !c->sandboxes))) {
        log_error("cannot start informers", "error", err.msg);
        goto out_stop;
    }
    /* Reconcile nothing until every cache has listed: a decision on a half-filled cache could
     * "see" no Pod and create a second one. */
    kube_informer *all[4] = {c->workers, c->pods, c->claims, c->sandboxes};
    for (int i = 0; i < 4; i++) {
        while (all[i] && !kube_informer_synced(all[i])) {
            if (signal_pending()) {
                log_info("signal before caches synced: exiting");
                rc = WC_EXIT_OK;
                goto out_stop;
            }
            wc_sleep_ms(20);
        }
    }
    {
        /* A Worker without the label is silently nobody's: say so once, cheaply. */
        unlabelled_workers u;
        if (count_unlabelled_workers(c->kc, r->namespace, 100, &u, &err) < 0) {
            log_warn("cannot count Workers without a hiclaw.io/controller label", "namespace", r->namespace, "error", err.msg);
        } else if (u.count) {
            char n[32];
            snprintf(n, sizeof n, "%s%ld", u.at_least ? "at least " : "", u.count);
            log_warn("Workers without a hiclaw.io/controller label are ignored (label them hiclaw.io/controller=<controller>)",
                     "namespace", r->namespace, "count", n, "controller", r->conf.controller_name, "workers", u.names);
        }
    }
    if (r->conf.leader_elect) {
        char lease[300], identity[400];
        snprintf(lease, sizeof lease, "%s-leader", r->conf.controller_name);
        snprintf(identity, sizeof identity, "%s_%08lx%04x", host, (unsigned long)time(NULL), (unsigned)getpid() & 0xffff);
        r->elector = leader_new(r->lease_kc, r->own_namespace, lease, identity);
        r->elector->on_lost = on_leadership_lost;
        r->elector->ud = r;
        if (leader_start(r->elector, &err) < 0) {
            log_error("cannot start leader election", "error", err.msg);
            goto out_stop;
        }
        log_info("waiting to become leader", "lease", lease, "identity", identity);
        while (!atomic_load(&r->elector->leading)) {
            if (signal_pending()) {
                log_info("signal while waiting for leadership: exiting");
                rc = WC_EXIT_OK;
                goto out_stop;
            }
            wc_sleep_ms(50);
        }
    }
    /* The warm pool is a write like any other: only the leader makes it (SPEC 10), so a
     * standby starting with other settings never fights the running leader over it. */
    if (r->conf.sandbox_enabled && r->conf.sandbox_manage_pool) {
        if (sandbox_apply_pool(c, r->namespace, r->conf.sandbox_agent_runtime_image, r->conf.sandbox_prewarm_size,
                               r->conf.worker_cpu.canon, r->conf.worker_memory.canon, &err) < 0) {
            log_error("cannot apply the SandboxSet (warm pool)", "pool", r->conf.sandbox_pool, "error", err.msg);
            goto out_stop;
        }
        log_info("applied SandboxSet", "pool", r->conf.sandbox_pool, "namespace", r->namespace);
    }
    char nworkers[24];
    snprintf(nworkers, sizeof nworkers, "%" PRId64, r->conf.concurrency);
    log_info("caches synced, starting workers", "workers", nworkers);
    r->nthreads = (int)r->conf.concurrency;
    r->threads = xcalloc((size_t)r->nthreads, sizeof *r->threads);
    for (int i = 0; i < r->nthreads; i++) pthread_create(&r->threads[i], NULL, run_worker_thread, r);

    int sig = wait_signal(&sigs);
    atomic_store(&r->stopping, 1);
    if (atomic_load(&r->lease_lost)) {
        /* No drain: in-flight requests are already cancelled (on_leadership_lost); the
         * reconciles fail fast and the workers are joined below. */
        log_error("leader lease lost: every request cancelled, exiting");
        rc = WC_EXIT_FAILURE;
    } else {
        log_info("shutting down", "signal", sig == SIGTERM ? "SIGTERM" : "SIGINT");
        size_t left = wq_shutdown_drain(r->q, RUN_SHUTDOWN_GRACE_MS);
        if (left) log_warn("in-flight reconciles did not finish in time; abandoning them");
        rc = WC_EXIT_OK;
    }
out_stop:
    httpd_stop(r->health); /* before the queue and caches they read go away */
    httpd_stop(r->metrics);
    r->health = r->metrics = NULL;
    if (r->q) wq_shutdown(r->q);
    atomic_store(&c->kc->cancel, 1); /* abort watches and anything still in flight (S3 too) */
    for (int i = 0; i < r->nthreads; i++) pthread_join(r->threads[i], NULL);
    leader_free(r->elector); /* nothing of ours runs any more: hand the lease over */
    r->elector = NULL;
    kube_informer_free(c->sandboxes);
    kube_informer_free(c->claims);
    kube_informer_free(c->pods);
    kube_informer_free(c->workers);
    wq_free(r->q);
    free(r->threads);
    strmap_free(&c->backoffs, instance_backoff_free);
out_free:
    httpd_stop(r->health);
    httpd_stop(r->metrics);
    s3_client_free(c->s3);
    kube_recorder_free(c->rec);
    free(instance);
out:
    leader_free(r->elector);
    kube_client_free(r->lease_kc);
    kube_client_free(c->kc);
    log_info("stopped", "exit", rc == WC_EXIT_OK ? "0" : "1");
    free(r->namespace);
    free(r->own_namespace);
    cfg_free(&r->conf);
    free(r);
    return rc;
}
