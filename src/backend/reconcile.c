/*
 * reconcile.c — the imperative shell around decide(): observe, decide, act, report.
 *
 * One call reconciles one Worker key. It reads the Worker from its cache and asks every backend
 * of the table to observe its instances (their caches; storage metadata), reads the Worker's
 * Secret when an instance may need its values, asks each backend for its spec hash, calls the
 * pure decide(), executes the actions in order — stopping at the first failure, because later
 * actions assume earlier ones happened (the claim after its deps, the finalizer after the
 * deletes) — records Events, and writes status only when something changed. It knows no
 * backend by name: a backend's actions go to that backend's execute.
 *
 * Errors never abort the process: they become Synced=False with the message, and a requeue
 * with backoff (or after Retry-After).
 */

typedef struct controller {
    backend_host host;              /* kc, Events, names, env: what every backend reads */
    kube_informer *workers;
    worker_defaults wd;
    decide_config dc;
    const backend_policy *policies[DECIDE_MAX_BACKENDS]; /* dc.backends: each backend's policy */
    backend backends[DECIDE_MAX_BACKENDS];
    size_t nbackends;
    atomic_long reconciles;
    /* recreate backoff after instance failures, per Worker key (in memory: a restart forgets it,
     * which costs at most one early retry) */
    pthread_mutex_t backoff_mu;     /* also guards created */
    strmap backoffs;
    /* when the controller last created an instance for the Worker key (int64_t ms), until a
     * reconcile no longer wants to create: see own_create_unseen */
    strmap created;
    worker_metrics metrics;         /* hiclaw_worker_* (host.metrics points here once set up) */
} controller;

/* ---- setting up ---- */

typedef struct instance_backoff {
    int failures;
    int64_t not_before_ms;
    char *message;    /* what failed */
    char *reason;     /* its condition reason */
} instance_backoff;

static void instance_backoff_free(void *p) {
    instance_backoff *b = p;
    if (b) free(b->message), free(b->reason);
    free(b);
}

/* Releases every backend (its informers must be stopped first) and the backoff table. */
static void controller_release(controller *c) {
    for (size_t i = c->nbackends; i-- > 0;) c->backends[i].ops->release(&c->backends[i]);
    c->nbackends = 0;
    if (c->host.metrics) wm_release(c->host.metrics);
    c->host.metrics = NULL;
    strmap_free(&c->backoffs, instance_backoff_free);
    strmap_free(&c->created, free);
    pthread_mutex_destroy(&c->backoff_mu);
}

/* Names, env and defaults from the configuration; every backend of `table` set up in order
 * (run's table is wc_backend_table; tests add their own). On failure the backends set up so far
 * are released and err says why (WC_EINVAL: a configuration problem). */
static int controller_setup(controller *c, const backend_ops *const *table, size_t n, const wc_cfg *conf,
                            wc_err *err) {
    assert(n >= 1 && n <= DECIDE_MAX_BACKENDS);
    c->host.metrics = NULL; /* set once every backend is: controller_release may run before */
    c->host.names = (instance_settings){
        .controller_name = conf->controller_name, .prefix = conf->resource_prefix, .audience = conf->auth_audience};
    c->host.envc = worker_env_config_of(conf);
    c->wd = (worker_defaults){
        .default_runtime = conf->default_worker_runtime, .image_openclaw = conf->worker_image,
        .image_copaw = conf->copaw_worker_image, .image_hermes = conf->hermes_worker_image,
        .limit_cpu = conf->worker_cpu.canon, .limit_mem = conf->worker_memory.canon};
    pthread_mutex_init(&c->backoff_mu, NULL);
    for (c->nbackends = 0; c->nbackends < n;) {
        backend *b = &c->backends[c->nbackends];
        *b = (backend){.ops = table[c->nbackends], .host = &c->host, .index = c->nbackends};
        c->nbackends++;
        if (b->ops->setup(b, conf, err) < 0) {
            controller_release(c);
            return -1;
        }
        assert(b->policy.name && strcmp(b->policy.name, b->ops->name) == 0 && b->ncaches <= BACKEND_MAX_CACHES);
        c->policies[b->index] = &b->policy;
    }
    c->dc = (decide_config){.prefix = conf->resource_prefix, .backends = c->policies, .nbackends = n};
    wm_init(&c->metrics, c->policies, n);
    c->host.metrics = &c->metrics;
    return 0;
}

/* ---- the recreate backoff ---- */

#define RECREATE_BACKOFF_BASE_MS 10000   /* like the kubelet's CrashLoopBackOff: 10 s ... */
#define RECREATE_BACKOFF_MAX_MS 300000   /* ... doubling to 5 min */
/* Every Worker is looked at again this often even when nothing changes, so what no event
 * announces (its credentials Secret rotated or created late) still reaches the instance. Reads
 * only: a steady fleet makes no writes. Jittered ±10 % so a fleet does not resync in step. */
#define RESYNC_PERIOD_MS (10 * 60 * 1000)

/* Reads the pending backoff for key into the observation. */
static void backoff_observe(controller *c, const char *key, arena *a, observed *o) {
    pthread_mutex_lock(&c->backoff_mu);
    instance_backoff *b = strmap_get(&c->backoffs, key);
    int64_t now = wc_now_ms();
    if (b && b->not_before_ms > now) {
        o->recreate_backoff_ms = b->not_before_ms - now;
        o->last_failure = arena_strdup(a, b->message);
        o->last_failure_reason = arena_strdup(a, b->reason);
    }
    pthread_mutex_unlock(&c->backoff_mu);
}

/* A failure starts (or doubles) the backoff; a Running instance clears it. */
static int64_t backoff_record(controller *c, const char *key, const decision *d) {
    int64_t wait = 0;
    pthread_mutex_lock(&c->backoff_mu);
    if (d->backoff) {
        instance_backoff *b = strmap_get(&c->backoffs, key);
        if (!b) {
            b = xcalloc(1, sizeof *b);
            strmap_put(&c->backoffs, key, b);
        }
        b->failures++;
        wait = RECREATE_BACKOFF_BASE_MS;
        for (int i = 1; i < b->failures && wait < RECREATE_BACKOFF_MAX_MS; i++) wait *= 2;
        if (wait > RECREATE_BACKOFF_MAX_MS) wait = RECREATE_BACKOFF_MAX_MS;
        b->not_before_ms = wc_now_ms() + wait;
        free(b->message);
        free(b->reason);
        b->message = xstrdup(d->message ? d->message : "");
        b->reason = xstrdup(d->ready.reason ? d->ready.reason : "");
    } else if (d->phase == PHASE_RUNNING) {
        instance_backoff_free(strmap_del(&c->backoffs, key));
    }
    pthread_mutex_unlock(&c->backoff_mu);
    return wait;
}

/* ---- the shell's own actions ---- */

/* Reads Secret hiclaw-creds-<name>: 0 found (data decoded into *out), 1 absent, -1 error.
 * Every value is registered with the redactor before anything else can see it. */
static int read_worker_secret(controller *c, arena *a, const worker *w, kv_list *out, wc_err *err) {
    char name[300];
    snprintf(name, sizeof name, WORKER_CREDS_SECRET_PREFIX "%s", w->name);
    cJSON *sec = NULL;
    memset(out, 0, sizeof *out);
    if (kube_get(c->host.kc, &KUBE_SECRETS, w->namespace, name, NULL, &sec, err) < 0) return kube_err_not_found(err) ? 1 : -1;
    const cJSON *data = json_get(sec, "data");
    size_t n = cJSON_IsObject(data) ? (size_t)cJSON_GetArraySize(data) : 0;
    out->items = arena_alloc(a, (n ? n : 1) * sizeof(kv));
    const cJSON *it;
    cJSON_ArrayForEach(it, data) {
        if (!cJSON_IsString(it) || !it->string) continue;
        buf v = BUF_INIT;
        if (base64_decode(&v, it->valuestring, strlen(it->valuestring)) < 0 || memchr(buf_cstr(&v), 0, v.len)) {
            buf_free_secret(&v);
            continue; /* not text: cannot be an environment value */
        }
        log_register_secret(buf_cstr(&v));
        out->items[out->n].key = arena_strdup(a, it->string);
        out->items[out->n].value = arena_strdup(a, buf_cstr(&v));
        out->n++;
        buf_free_secret(&v);
    }
    cJSON_Delete(sec);
    qsort(out->items, out->n, sizeof(kv), kv_cmp);
    return 0;
}

/* The finalizer list without ours, plus ours when add; resourceVersion makes the patch a
 * compare-and-swap, so another writer's finalizer is never lost. */
static void finalizer_patch_render(buf *p, const worker *w, int add) {
    cJSON *patch = json_object();
    cJSON *md = json_add_object(patch, "metadata");
    json_add_str(md, "resourceVersion", w->resource_version ? w->resource_version : "");
    cJSON *fins = json_add_array(md, "finalizers");
    for (size_t i = 0; i < w->nfinalizers; i++)
        if (strcmp(w->finalizers[i], WORKER_FINALIZER) != 0) json_push_str(fins, w->finalizers[i]);
    if (add) json_push_str(fins, WORKER_FINALIZER);
    json_render_free(p, patch);
}

static int finalizer_patch(controller *c, const worker *w, int add, wc_err *err) {
    buf p = BUF_INIT;
    finalizer_patch_render(&p, w, add);
    int rc = kube_patch(c->host.kc, &KUBE_WORKERS, w->namespace, w->name, NULL, KUBE_PATCH_MERGE, p.data, NULL, 0, 0,
                        NULL, err);
    buf_free(&p);
    return rc;
}

/* Every backend's instances of the Worker in the API server (not the cache), counted and named. */
static int live_instances(controller *c, const worker *w, size_t *n, buf *names, wc_err *err) {
    size_t *counts = xcalloc(c->nbackends, sizeof *counts);
    int rc = backends_live(c->backends, c->nbackends, NULL, 0, w, counts, names, err);
    *n = 0;
    for (size_t i = 0; i < c->nbackends; i++) *n += counts[i];
    free(counts);
    return rc;
}

/* SPEC 3.2: before any cleanup and the finalizer's removal, the API server — not the cache,
 * which may not have seen a create yet — must hold no instance of the Worker. If it does, this
 * fails (the actions after it do not run) and the Worker is retried with backoff; by then the
 * cache has the instance and the deletion deletes it. Then each backend says whether anything
 * else of it is left. */
static int confirm_instances_gone(controller *c, exec_ctx *x, wc_err *err) {
    size_t n = 0;
    buf names = BUF_INIT;
    int rc = live_instances(c, x->w, &n, &names, err);
    if (rc == 0 && n) {
        x->failure_reason = "CleanupPending";
        rc = err_set(err, WC_EINVAL, "%s still exist%s in the API server (the cache has not seen %s yet): the finalizer "
                                     "stays until %s gone",
                     buf_cstr(&names), n > 1 ? "" : "s", n > 1 ? "them" : "it", n > 1 ? "they are" : "it is");
    }
    buf_free(&names);
    for (size_t i = 0; i < c->nbackends && rc == 0; i++)
        if (c->backends[i].ops->gone) rc = c->backends[i].ops->gone(&c->backends[i], x, err);
    return rc;
}

/* Defense in depth for the switch guard: right before creating an instance, ask the API server
 * (not the cache) whether an instance of another backend exists — by name where the name is
 * fixed: the cache may lag behind an instance made moments ago, and those carry that name
 * (instances under other names, made long before, the cache has). */
static int switch_guard_live(controller *c, exec_ctx *x, backend *creating, const action *act, wc_err *err) {
    size_t *counts = xcalloc(c->nbackends, sizeof *counts);
    int rc = backends_live(c->backends, c->nbackends, creating, 1, x->w, counts, NULL, err);
    for (size_t i = 0; i < c->nbackends && rc == 0; i++)
        if (counts[i]) {
            x->failure_reason = "BackendSwitchBlocked";
            rc = err_set(err, WC_EINVAL, "refusing to create %s %s: %s of this Worker exists", act->kind->creates,
                         act->name, c->backends[i].policy.an_instance);
        }
    free(counts);
    return rc;
}

static int serviceaccount_ensure(controller *c, exec_ctx *x, const action *act, wc_err *err) {
    buf body = BUF_INIT;
    serviceaccount_render(&body, x->a, x->w, &c->host.names);
    int rc = kube_create(c->host.kc, &KUBE_SERVICEACCOUNTS, x->w->namespace, NULL, NULL, body.data, NULL, err);
    buf_free(&body);
    if (rc < 0 && kube_err_conflict(err)) return 0; /* AlreadyExists */
    if (rc == 0) log_info("created ServiceAccount", "worker", x->w->name, "namespace", x->w->namespace, "name", act->name);
    return rc;
}

static backend *backend_named(controller *c, const char *name) {
    for (size_t i = 0; name && i < c->nbackends; i++)
        if (strcmp(c->backends[i].ops->name, name) == 0) return &c->backends[i];
    return NULL;
}

static int exec_action(controller *c, exec_ctx *x, const action *act, wc_err *err) {
    const worker *w = x->w;
    backend *b = backend_named(c, act->kind->backend);
    if (b) {
        int guard = act->kind->creates != NULL;
#ifdef WC_FAILPOINTS
        guard &= !failpoint_armed("break-switch-guard");
#endif
        if (guard && switch_guard_live(c, x, b, act, err) < 0) return -1;
        return b->ops->execute(b, x, act, err);
    }
    assert(!act->kind->backend && "an action of a backend the table does not have");
    int rc;
    if (act->kind == ACT_ADD_FINALIZER) return finalizer_patch(c, w, 1, err);
    if (act->kind == ACT_CONFIRM_INSTANCES_GONE) return confirm_instances_gone(c, x, err);
    if (act->kind == ACT_REMOVE_FINALIZER) {
        rc = finalizer_patch(c, w, 0, err);
        return rc < 0 && kube_err_not_found(err) ? 0 : rc;
    }
    if (act->kind == ACT_ENSURE_SERVICEACCOUNT) return serviceaccount_ensure(c, x, act, err);
    if (act->kind == ACT_DELETE_SERVICEACCOUNT) {
        rc = kube_delete(c->host.kc, &KUBE_SERVICEACCOUNTS, w->namespace, act->name, NULL, NULL, NULL, err);
        return delete_ok(rc, err) ? 0 : -1;
    }
    return err_set(err, WC_EINVAL, "unknown action %s", action_kind_name(act->kind));
}

/* ---- own creates the cache has not shown yet ---- */

#define UNSEEN_CREATE_WAIT_MS 10000   /* how long a create is taken to be on its way to the cache */
#define UNSEEN_CREATE_RECHECK_MS 1000 /* a look again meanwhile (its watch event requeues sooner) */

static int decision_creates(const decision *d, size_t upto) {
    for (size_t i = 0; i < upto && i < d->nactions; i++)
        if (d->actions[i].kind->creates) return 1;
    return 0;
}

/* Right after the controller creates an instance its cache does not show it for a moment, and
 * the Worker's own status write triggers a reconcile in that moment. Acting on that view would
 * run the create sequence again: a second token and the deps rewritten under a sandbox that
 * already mounted the first, a create answered 409. So the time of the Worker's last create is
 * kept until a reconcile no longer wants to create (the cache has the instance); a create wanted
 * within UNSEEN_CREATE_WAIT_MS of it waits for the cache instead. After that it goes ahead: the
 * object may have been deleted before the cache ever saw it. (controller-runtime users keep
 * "expectations" for the same reason.) Returns 1 when this reconcile must wait. */
static int own_create_unseen(controller *c, const char *key, const decision *d) {
    int wait = 0;
    pthread_mutex_lock(&c->backoff_mu);
    if (!decision_creates(d, d->nactions)) {
        free(strmap_del(&c->created, key));
    } else {
        const int64_t *at = strmap_get(&c->created, key);
        wait = at && wc_now_ms() - *at < UNSEEN_CREATE_WAIT_MS;
    }
    pthread_mutex_unlock(&c->backoff_mu);
    return wait;
}

/* After the actions up to `ran` (exclusive) succeeded: remember a create among them. */
static void own_create_record(controller *c, const char *key, const decision *d, size_t ran) {
    if (!decision_creates(d, ran)) return;
    int64_t *at = xcalloc(1, sizeof *at);
    *at = wc_now_ms();
    pthread_mutex_lock(&c->backoff_mu);
    free(strmap_put(&c->created, key, at));
    pthread_mutex_unlock(&c->backoff_mu);
}

/* A Worker gone from the cache: nothing of its key is kept. */
static void own_key_forget(controller *c, const char *key) {
    pthread_mutex_lock(&c->backoff_mu);
    instance_backoff_free(strmap_del(&c->backoffs, key));
    free(strmap_del(&c->created, key));
    pthread_mutex_unlock(&c->backoff_mu);
}

/* ---- one reconcile ---- */

typedef enum reconcile_outcome {
    RECONCILE_DONE,        /* forget the key's backoff */
    RECONCILE_RETRY,       /* requeue with the per-key backoff */
    RECONCILE_AFTER,       /* requeue after requeue_after_ms (and forget the backoff) */
} reconcile_outcome;

typedef struct reconcile_result {
    reconcile_outcome outcome;
    int64_t requeue_after_ms;
    int error;             /* counts toward controller_runtime_reconcile_errors_total */
} reconcile_result;

/* When to look at a successfully reconciled Worker again. Pure. backoff_wait: the recreate
 * backoff just recorded (used when the decision asked for backoff); resync_ms: the jittered
 * resync period. */
static void reconcile_schedule(reconcile_result *res, const decision *d, int deleting, int64_t backoff_wait,
                               int64_t resync_ms) {
    if (d->backoff) res->outcome = RECONCILE_AFTER, res->requeue_after_ms = backoff_wait;
    else if (d->requeue_after_ms > 0) {
        /* A decision's requeue (a token refresh up to 16 h away) must not replace the resync:
         * whichever comes first. A Worker being deleted only needs what it asked for. */
        res->outcome = RECONCILE_AFTER;
        res->requeue_after_ms = !deleting && resync_ms < d->requeue_after_ms ? resync_ms : d->requeue_after_ms;
    } else if (!deleting) {
        res->outcome = RECONCILE_AFTER;
        res->requeue_after_ms = resync_ms;
    }
}

#ifdef WC_FAILPOINTS
/* The chaos checker's own tests (test/e2e/test_chaos_invariants.py) need the defects it exists
 * to catch. Each break-* failpoint bends one decision the way such a defect would; the test
 * shows the checker names the invariant broken. Failpoint builds only, never the product. */
static void failpoint_bend_decision(controller *c, exec_ctx *x, decision *d) {
    const worker *w = x->w;
    if (failpoint_armed("break-skip-cleanup") && w->deleting && w->has_finalizer) {
        /* the finalizer goes at once: no teardown, nothing confirmed, nothing deleted */
        d->nactions = 0;
        decide_action(d, ACT_REMOVE_FINALIZER, NULL, NULL, 0);
        d->done_deleting = 1;
    } else if (failpoint_armed("break-switch-guard") && d->synced.reason &&
               strcmp(d->synced.reason, "BackendSwitchBlocked") == 0) {
        /* the desired backend acts as if the applied one had nothing */
        size_t desired = decide_backend_named(&c->dc, w->backend);
        const backend_policy *p = c->dc.backends[desired];
        decision forced;
        memset(&forced, 0, sizeof forced);
        p->decide(p, x->a, w, x->o, NULL, &c->dc, x->hashes[desired], &forced);
        for (size_t i = 0; i < forced.nactions; i++)
            decide_action(d, forced.actions[i].kind, forced.actions[i].name, forced.actions[i].uid, forced.actions[i].flag);
    } else if (failpoint_armed("break-leak-secret") && x->secret && x->secret->n) {
        d->message = arena_sprintf(x->a, "credential %s=%s", x->secret->items[0].key, x->secret->items[0].value);
    } else if (failpoint_armed("break-status-running") && !w->deleting && w->state == STATE_RUNNING) {
        d->phase = PHASE_RUNNING; /* whatever runs */
    }
}

/* break-deps-after-claim: a claim is created before its env and token are written (which come
 * 3 s later), as a reordering defect would. */
static void failpoint_claim_first(decision *d) {
    if (!failpoint_armed("break-deps-after-claim")) return;
    action deps[DECIDE_MAX_ACTIONS], rest[DECIDE_MAX_ACTIONS];
    size_t nd = 0, nr = 0, claim = d->nactions;
    for (size_t i = 0; i < d->nactions; i++) {
        const char *k = d->actions[i].kind->name;
        if (strcmp(k, "create-claim") == 0) claim = i;
        if (claim == d->nactions && (strcmp(k, "write-deps") == 0 || strcmp(k, "write-env") == 0)) deps[nd++] = d->actions[i];
        else rest[nr++] = d->actions[i];
    }
    if (claim == d->nactions || !nd) return;
    memcpy(d->actions, rest, nr * sizeof(action));
    memcpy(d->actions + nr, deps, nd * sizeof(action));
}
#endif

/* Observes, reads the Secret when an instance may need its values, renders, decides. Returns
 * -1 when the Secret cannot be read: d then says so (decide_unknown), nothing is to be done. */
static int reconcile_decide(controller *c, exec_ctx *x, kv_list *secret, decision *d, wc_err *err) {
    const worker *w = x->w;
    for (size_t i = 0; i < c->nbackends; i++) c->backends[i].ops->observe(&c->backends[i], x, 0);
    backoff_observe(c, x->key, x->a, x->o);
    if (!w->deleting && w->container_managed && !w->invalid) {
        int s = read_worker_secret(c, x->a, w, secret, err);
        if (s < 0) {
            decide_unknown(w, arena_sprintf(x->a, "reading Secret %s%s: %s", WORKER_CREDS_SECRET_PREFIX, w->name, err->msg), d);
            return -1;
        }
        x->secret = s == 0 ? secret : NULL;
    }
    char *hashes = arena_alloc(x->a, c->nbackends * 17);
    for (size_t i = 0; i < c->nbackends; i++) {
        c->backends[i].ops->render(&c->backends[i], x, hashes + 17 * i);
        x->hashes[i] = hashes + 17 * i;
    }
    decide(x->a, w, x->o, &c->dc, x->hashes, d);
    /* The acting backend asks to look in the API server itself before it acts on what its cache
     * shows (a Sandbox maybe only late); decide again only when that changed something. */
    if (d->recheck && d->acting >= 0 && c->backends[d->acting].ops->observe(&c->backends[d->acting], x, 1))
        decide(x->a, w, x->o, &c->dc, x->hashes, d);
#ifdef WC_FAILPOINTS
    failpoint_bend_decision(c, x, d);
#endif
    return 0;
}

/* Executes the actions in order, stopping at the first failure. Returns the index of the
 * failed action, or -1 when all ran. */
static long reconcile_act(controller *c, exec_ctx *x, decision *d, wc_err *err) {
#ifdef WC_FAILPOINTS
    failpoint_claim_first(d);
#endif
    for (size_t i = 0; i < d->nactions; i++) {
        int rc = exec_action(c, x, &d->actions[i], err);
#ifdef WC_FAILPOINTS
        if (rc == 0) {
            char point[64];
            snprintf(point, sizeof point, "after-%s", action_kind_name(d->actions[i].kind));
            FAILPOINT(point);
            if (d->actions[i].kind == ACT_CREATE_CLAIM && failpoint_armed("break-deps-after-claim")) sleep(3);
        }
#endif
        if (rc < 0) return (long)i;
    }
    return -1;
}

/* Writes the status d describes (observed_gen: the generation it stands for); a failed write is
 * retried soon with the per-key backoff, also when the reconcile itself asked for a (long)
 * resync: nothing else re-triggers it when the observed objects do not change again, so the
 * status would stay stale for the whole resync period (found by the API server SIGKILL test: a
 * Worker stuck "Starting" over a Ready Pod). */
static void reconcile_report(controller *c, exec_ctx *x, const cJSON *obj, const decision *d, int64_t observed_gen,
                             reconcile_result *res) {
    wc_err serr;
    err_clear(&serr);
    if (write_status(c->host.kc, x->a, obj, x->w, d, observed_gen, &serr) < 0) {
        if (kube_err_not_found(&serr)) return;
        log_warn("status update failed", "worker", x->w->name, "namespace", x->w->namespace, "error", serr.msg);
        if (res->outcome == RECONCILE_DONE || (res->outcome == RECONCILE_AFTER && res->requeue_after_ms > 5000))
            res->outcome = RECONCILE_RETRY;
        return;
    }
    wm_reported(c->host.metrics, x->key, x->w, d, wc_wall_seconds()); /* Ready=True written: a start ends */
}

/* hiclaw_worker_recreates_total: the decision replaces its instance, and the delete of it ran
 * (failed: the index of the action that failed, -1 none). */
static void reconcile_count_recreate(controller *c, exec_ctx *x, const decision *d, long failed) {
    if (!d->recreate || d->acting < 0) return;
    size_t i = 0;
    while (i < d->nactions && !(d->recreate_uid && str_eq(d->actions[i].uid, d->recreate_uid))) i++;
    if (failed >= 0 && (i == d->nactions || (long)i >= failed)) return; /* the delete did not happen */
    wm_recreated(c->host.metrics, x->key, x->w, (size_t)d->acting, d->recreate, d->recreate_uid);
}

/* A failed action: Synced=False with its reason (a Warning the first time this generation, or
 * always for anything but an API error), retried with backoff or after Retry-After. */
static void reconcile_failed(controller *c, exec_ctx *x, decision *d, const wc_err *err, reconcile_result *res) {
    const worker *w = x->w;
    const char *reason = x->failure_reason ? x->failure_reason : "APIError";
    decide_failed(d, reason, arena_strdup(x->a, err->msg));
    log_warn("reconcile failed", "worker", w->name, "namespace", w->namespace, "reason", reason, "error", err->msg);
    if (first_time_this_generation(w, reason) || strcmp(reason, "APIError") != 0)
        backend_record(&c->host, w, "Warning", reason, "Reconcile", d->message);
    res->outcome = err->retry_after_s > 0 ? RECONCILE_AFTER : RECONCILE_RETRY;
    res->requeue_after_ms = err->retry_after_s > 0 ? (int64_t)err->retry_after_s * 1000 : 0;
    res->error = 1;
}

/* Decides, acts, records, reports, for the parsed Worker w. */
static void reconcile_parsed(controller *c, exec_ctx *x, const cJSON *obj, reconcile_result *res) {
    const worker *w = x->w;
    decision d;
    kv_list secret = {NULL, 0};
    wc_err err;
    err_clear(&err);
    if (reconcile_decide(c, x, &secret, &d, &err) < 0) {
        log_warn("reconcile failed", "worker", w->name, "namespace", w->namespace, "reason", "APIError", "error", d.message);
        res->outcome = RECONCILE_RETRY;
        res->error = 1;
        reconcile_report(c, x, obj, &d, w->observed_generation, res);
        return;
    }
    if (own_create_unseen(c, x->key, &d)) {
        res->outcome = RECONCILE_AFTER;
        res->requeue_after_ms = UNSEEN_CREATE_RECHECK_MS;
        return;
    }
    wm_decided(c->host.metrics, x->key, w, &d, wc_wall_seconds()); /* a decision acted on */
    long failed = reconcile_act(c, x, &d, &err);
    own_create_record(c, x->key, &d, failed < 0 ? d.nactions : (size_t)failed);
    reconcile_count_recreate(c, x, &d, failed);
    if (failed >= 0 && d.actions[failed].kind == ACT_ADD_FINALIZER && kube_err_conflict(&err)) {
        res->outcome = RECONCILE_RETRY; /* the cache is behind the Worker: normal, not worth an error status */
        return;
    }
    d.deps_path = x->deps_path;
    for (size_t i = 0; i < d.nevents; i++)
        backend_record(&c->host, w, d.events[i].type, d.events[i].reason, "Reconcile", d.events[i].note);
    if (d.done_deleting && failed < 0) {
        log_info("Worker cleaned up, finalizer removed", "worker", w->name, "namespace", w->namespace);
        return; /* the object is going away: no status to write */
    }
    if (failed >= 0) {
        reconcile_failed(c, x, &d, &err, res);
        reconcile_report(c, x, obj, &d, w->observed_generation, res);
        return;
    }
    int64_t wait = backoff_record(c, x->key, &d);
    reconcile_schedule(res, &d, w->deleting, wait,
                       RESYNC_PERIOD_MS - RESYNC_PERIOD_MS / 10 + (int64_t)(rand() % (RESYNC_PERIOD_MS / 5)));
    reconcile_report(c, x, obj, &d, w->generation, res);
}

/* The instances under key of a Worker object that is gone (worker_uid: the one there now, NULL
 * none), which only their backend can remove: each backend's sweep. A failure retries the key. */
static void reconcile_sweep(controller *c, const char *key, const char *worker_uid, reconcile_result *res) {
    for (size_t i = 0; i < c->nbackends; i++) {
        backend *b = &c->backends[i];
        if (!b->ops->sweep) continue;
        wc_err err;
        err_clear(&err);
        if (b->ops->sweep(b, key, worker_uid, &err) < 0) {
            log_warn("cannot remove the instances of a deleted Worker", "worker", key, "backend", b->ops->name, "error",
                     err.msg);
            if (res->outcome != RECONCILE_AFTER || res->requeue_after_ms > 5000) res->outcome = RECONCILE_RETRY;
            res->error = 1;
        }
    }
}

/* Reconciles one Worker. */
static reconcile_result reconcile_worker(controller *c, const char *key) {
    reconcile_result res = {RECONCILE_DONE, 0, 0};
    long n = atomic_fetch_add(&c->reconciles, 1) + 1;
    char rid[24];
    snprintf(rid, sizeof rid, "%08lx-%04x", n, (unsigned)(rand() & 0xffff));
    log_set_reconcile_id(rid);
    if (c->host.rec) kube_recorder_sweep(c->host.rec);
    cJSON *obj = kube_informer_get(c->workers, key);
    if (!obj) { /* deleted: the finalizer guaranteed cleanup ran — except for what appeared after */
        own_key_forget(c, key);
        wm_forget(c->host.metrics, key);
        reconcile_sweep(c, key, NULL, &res);
        log_set_reconcile_id(NULL);
        return res;
    }
    arena a;
    arena_init(&a);
    wc_err err;
    err_clear(&err);
    worker w;
    if (worker_parse(&a, obj, &c->wd, &w, &err) < 0) {
        log_error("cannot parse Worker", "worker", key, "error", err.msg);
    } else {
        worker_validate(&a, &w, c->dc.prefix);
        observed o;
        memset(&o, 0, sizeof o);
        exec_ctx x = {.a = &a, .w = &w, .key = key, .o = &o};
        reconcile_parsed(c, &x, obj, &res);
        reconcile_sweep(c, key, w.uid, &res);
        exec_release(&x);
    }
    log_set_reconcile_id(NULL);
    cJSON_Delete(obj);
    arena_free(&a);
    return res;
}
