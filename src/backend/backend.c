/*
 * backend.c — the one interface every backend implements, and what the shell lends them.
 *
 * A backend is where a Worker's instance runs: a plain Pod, an OpenKruise sandbox, ... Each is
 * one module (backend/pod.c, backend/sandbox.c) that fills a backend_ops table, and the table
 * of backends (backend/registry.c) lists them like the applet table lists commands. The
 * reconcile shell drives every backend through these operations and knows none of them by
 * name — like SQLite's VFS, a backend is a table of functions plus the state its setup built:
 *
 *   setup     its settings (from the configuration table), clients, and the caches it needs
 *   observe   its instances, from its caches (or, when a decision asks, from the API server)
 *   render    the spec hash of the instance the Worker needs (what else it derives from the
 *             Worker and its Secret); the bodies themselves are rendered when executing
 *   execute   one of its actions of decide()'s list
 *   live      its instances as the API server (not the cache) has them, for the switch guard
 *             and the finalizer; gone: what it still waits for once they are gone (clean up)
 *   start     once leading, before the first reconcile (a warm pool)
 *   describe  for explain: what it keeps beside its instances (worker-deps), read only
 *
 * and its policy (worker/decide.c's backend_policy): the pure half — what its instance's status
 * is, what to create, replace, pause or delete — which decide() consults.
 */

/* What the shell lends every backend: the clients and the names everything is made with. */
typedef struct backend_host {
    kube_client *kc;
    kube_recorder *rec;              /* Events on the Worker; NULL records none */
    instance_settings names;
    worker_env_config envc;          /* the system env every instance gets */
    const char *namespace;           /* watched */
    int read_only;                   /* explain: every client a backend makes refuses writes */
    worker_metrics *metrics;         /* the Worker metrics (the controller's); NULL records none */
} backend_host;

/* One reconcile of one Worker, as each backend sees it. */
typedef struct exec_ctx {
    arena *a;
    const worker *w;
    const char *key;                 /* namespace/name: the instance caches' index key */
    const kv_list *secret;           /* the Worker's Secret data; NULL when absent or not read */
    observed *o;
    void *own[DECIDE_MAX_BACKENDS];          /* each backend's observations as it built them (o->of
                                                is their read-only view), for its later steps */
    const char *hashes[DECIDE_MAX_BACKENDS]; /* each backend's spec hash (render) */
    cJSON *held[4 * DECIDE_MAX_BACKENDS];    /* cache copies the observations borrow from (two caches
                                                each, observed up to twice a reconcile) */
    size_t nheld;
    const char *failure_reason;      /* a failing action's Synced reason (default APIError) */
    const char *deps_path;           /* where an action wrote worker-deps: status.workerDepsPath */
    const char *deps_recorded;       /* a path this reconcile recorded in status before writing there */
    int created;                     /* the last backend_create made its object (0: it was there
                                        already — ours, the cache had not seen it yet) */
} exec_ctx;

/* Keeps a cache copy alive until the reconcile ends (observations borrow its strings). */
static void exec_hold(exec_ctx *x, cJSON *tree) {
    assert(x->nheld < sizeof x->held / sizeof *x->held);
    x->held[x->nheld++] = tree;
}

static void exec_release(exec_ctx *x) {
    for (size_t i = 0; i < x->nheld; i++) cJSON_Delete(x->held[i]);
    x->nheld = 0;
}

#define BACKEND_MAX_CACHES 2

/* One look of the live check: the Worker's objects of `resource` in the API server, counted
 * when they are its instances (labelled for it and this controller; the projection says: not
 * another Worker UID's, and accepted by is_instance when given).
 *
 * by_name: the instance is always named as everything made for the Worker (<prefix>worker-
 * <name>), so the switch guard reads that one object — a GET is a quorum read of one key, where
 * a consistent LIST of a collection nobody writes waits for the watch cache to be told etcd's
 * revision (BENCHMARKS.md: SandboxClaims 39 ms, agent-sandbox's Sandboxes 13 ms, Pods 10 ms per
 * LIST; a GET ~6 ms). is_instance must then hold what selector_extra says. The finalizer's
 * confirmation lists by labels all the same: an instance under another name (a prefix changed
 * since) holds it too. Objects under other names are the cache's to see in either case. */
typedef struct live_query {
    const kube_resource *resource;
    int by_name;
    const char *selector_extra;      /* appended to the LIST's selector */
    kube_project_fn project;
    int (*is_instance)(const cJSON *proj);
} live_query;

#define LIVE_QUERIES_MAX 2 /* per backend */

/* A resource a backend watches: one informer, labelled for this controller, indexed by Worker. */
typedef struct backend_cache {
    const char *name;                /* the informer's name in logs and /readyz: "pods" */
    const kube_resource *resource;
    kube_project_fn project;
    const char *selector_extra;      /* appended to hiclaw.io/controller=<name>; NULL: nothing */
} backend_cache;

typedef struct backend backend;

typedef struct backend_ops {
    const char *name;
    /* State from the configuration; which caches to watch (b->caches). 0, or -1 with err
     * (WC_EINVAL: a configuration problem, exit 2). Logs what it decided. */
    int (*setup)(backend *b, const wc_cfg *conf, wc_err *err);
    void (*release)(backend *b);
    /* Its part of the observation: x->o->of[b->index]. live: the decision asked to look in the
     * API server itself; returns 1 when that changed the observation (decide again). */
    int (*observe)(backend *b, exec_ctx *x, int live);
    void (*render)(backend *b, exec_ctx *x, char hash[17]);
    int (*execute)(backend *b, exec_ctx *x, const action *act, wc_err *err);
    /* The LISTs that find the Worker's instances in the API server (not the cache): up to
     * LIVE_QUERIES_MAX into q, returns how many (0: none to look for, e.g. its API is not
     * served). The shell makes them, every backend's at once (backends_live). */
    size_t (*live)(backend *b, live_query *q);
    /* Optional: every instance is gone from the API server; 0 when nothing of it is left. */
    int (*gone)(backend *b, exec_ctx *x, wc_err *err);
    /* Optional: instances under the Worker key `key` that belong to a Worker object that no
     * longer exists (worker_uid: the UID of the Worker now under that key, NULL when there is
     * none) and that nothing else removes — confirmed against the API server, then deleted. */
    int (*sweep)(backend *b, const char *key, const char *worker_uid, wc_err *err);
    /* Optional: once leading. */
    int (*start)(backend *b, wc_err *err);
    /* Optional, for explain: what it keeps beside its instances (after observe), as a member of
     * out; reads only. */
    void (*describe)(backend *b, exec_ctx *x, cJSON *out);
} backend_ops;

struct backend {
    const backend_ops *ops;
    backend_policy policy;           /* its pure half, as decide() gets it */
    const backend_host *host;
    size_t index;                    /* its place in the controller's table and in observed.of */
    backend_cache caches[BACKEND_MAX_CACHES];
    kube_informer *informers[BACKEND_MAX_CACHES]; /* started by run, one per cache */
    size_t ncaches;
    void *state;                     /* its own settings and clients */
};

/* ---- shared by the backends' execute ---- */

/* An Event on the Worker. */
static void backend_record(const backend_host *h, const worker *w, const char *type, const char *reason,
                           const char *verb, const char *note) {
    if (!h->rec) return;
    kube_event_ref ref = {"hiclaw.io/v1beta1", "Worker", w->namespace, w->name, w->uid};
    kube_record(h->rec, &ref, type, reason, verb, "%s", note);
}

static int delete_ok(int rc, const wc_err *err) {
    /* Gone already, or the UID precondition says it is a newer object: either way not ours to delete. */
    return rc == 0 || kube_err_not_found(err) || kube_err_conflict(err);
}

/* Deletes one of the Worker's instances (UID precondition), logging and recording it. */
static int backend_delete(backend *b, exec_ctx *x, const kube_resource *r, const action *act, wc_err *err) {
    const worker *w = x->w;
    int rc = kube_delete(b->host->kc, r, w->namespace, act->name, act->uid, NULL, "Background", err);
    if (rc == 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "deleted %s", r->kind);
        log_info(msg, "worker", w->name, "namespace", w->namespace, "backend", b->ops->name, "name", act->name);
        backend_record(b->host, w, "Normal", "Deleted", "Delete", arena_sprintf(x->a, "deleted %s %s", r->kind, act->name));
    }
    return delete_ok(rc, err) ? 0 : -1;
}

/* A create answered 409: the object of that name is ours when the cache only lagged behind
 * our own create (success), anyone else's otherwise (an error with the reason given, nothing
 * touched). Read from the API server, not the cache. */
static int backend_create_conflict(backend *b, exec_ctx *x, const kube_resource *r, const char *name,
                                   const char *reason, wc_err *err) {
    cJSON *obj = NULL;
    wc_err gerr;
    err_clear(&gerr);
    if (kube_get(b->host->kc, r, x->w->namespace, name, NULL, &obj, &gerr) < 0) {
        if (kube_err_not_found(&gerr))
            return err_set(err, WC_EHTTP, "create %s %s: 409, and then not found: retrying", r->kind, name);
        *err = gerr;
        return -1;
    }
    const char *why = instance_name_conflict(x->a, obj, x->w, b->host->names.controller_name, r->kind);
    cJSON_Delete(obj);
    if (!why) return 0; /* ours: the cache lagged behind our own create */
    x->failure_reason = reason;
    return err_set(err, WC_EINVAL, "%s", why);
}

/* Creates an instance from its body, logging it and recording `note` as an Event. A 409 goes
 * through backend_create_conflict (conflict_reason when the object is someone else's); any
 * other failure gets failure_reason (NULL: an API error). */
static int backend_create(backend *b, exec_ctx *x, const kube_resource *r, const char *name, const buf *body,
                          const char *note, const char *conflict_reason, const char *failure_reason, wc_err *err) {
    const worker *w = x->w;
    int rc = kube_create(b->host->kc, r, w->namespace, NULL, NULL, buf_cstr(body), NULL, err);
    x->created = rc == 0;
    if (rc == 0) {
        char msg[64];
        snprintf(msg, sizeof msg, "created %s", r->kind);
        log_info(msg, "worker", w->name, "namespace", w->namespace, "backend", b->ops->name, "name", name);
        backend_record(b->host, w, "Normal", "Created", "Create", note);
    } else if (kube_err_conflict(err)) {
        rc = backend_create_conflict(b, x, r, name, conflict_reason, err);
    } else if (failure_reason) {
        x->failure_reason = failure_reason;
    }
    return rc;
}

/* Is resource r (another project's CRD) served? Asked by listing it (limit 1) in the watched
 * namespace: that needs only the rights `run` has anyway, where reading the CRD itself would
 * need cluster-scoped access to customresourcedefinitions. 1 served, 0 not (404), -1 with err. */
static int backend_api_served(backend *b, const kube_resource *r, wc_err *err) {
    cJSON *list = NULL;
    int rc = kube_list_page(b->host->kc, r, b->host->namespace, NULL, NULL, 1, NULL, &list, err);
    cJSON_Delete(list);
    if (rc == 0) return 1;
    return kube_err_not_found(err) ? 0 : -1;
}

/* Counts (and names) one object the API server answered when it is the Worker's instance. */
static void live_count(const worker *w, const kube_resource *r, const cJSON *obj, kube_project_fn project,
                       int (*is_instance)(const cJSON *proj), size_t *n, buf *names) {
    cJSON *proj = project(obj);
    const cJSON *md = json_get(proj, "metadata");
    if ((!is_instance || is_instance(proj)) && !instance_of_other_worker(md, w->uid)) {
        if (names) buf_printf(names, "%s%s %s", names->len ? ", " : "", r->kind, json_str(md, "name") ? json_str(md, "name") : "?");
        (*n)++;
    }
    cJSON_Delete(proj);
}

/* Lists the Worker's objects of r in the API server (labelled for it and this controller, plus
 * selector_extra), counting those that are its instances and naming them into names. */
static int backend_live_list(backend *b, const worker *w, const kube_resource *r, const char *selector_extra,
                             kube_project_fn project, int (*is_instance)(const cJSON *proj), size_t *n, buf *names,
                             wc_err *err) {
    char sel[700];
    snprintf(sel, sizeof sel, LABEL_WORKER "=%s," LABEL_CONTROLLER "=%s%s", w->name, b->host->names.controller_name,
             selector_extra ? selector_extra : "");
    cJSON *list = NULL;
    if (kube_list_page(b->host->kc, r, w->namespace, sel, NULL, 0, NULL, &list, err) < 0) return -1;
    const cJSON *it;
    cJSON_ArrayForEach(it, json_get(list, "items")) live_count(w, r, it, project, is_instance, n, names);
    cJSON_Delete(list);
    return 0;
}

/* Reads the one object of q->resource named <prefix>worker-<name> from the API server and counts
 * it when it carries the Worker's and this controller's labels (what the LIST's selector asked)
 * and is its instance. Not found: nothing to count. */
static int backend_live_get(backend *b, const worker *w, const live_query *q, size_t *n, buf *names, wc_err *err) {
    const char *controller = b->host->names.controller_name;
    char name[600];
    snprintf(name, sizeof name, "%sworker-%s", b->host->names.prefix, w->name);
    cJSON *obj = NULL;
    if (kube_get(b->host->kc, q->resource, w->namespace, name, NULL, &obj, err) < 0) {
        if (!kube_err_not_found(err)) return -1;
        err_clear(err);
        return 0;
    }
    const cJSON *labels = json_get(json_get(obj, "metadata"), "labels");
    const char *lw = json_str(labels, LABEL_WORKER), *lc = json_str(labels, LABEL_CONTROLLER);
    if (lw && lc && strcmp(lw, w->name) == 0 && strcmp(lc, controller) == 0)
        live_count(w, q->resource, obj, q->project, q->is_instance, n, names);
    cJSON_Delete(obj);
    return 0;
}

/* The live check of every backend in bs[0..nb) but `except`: their looks one after the other.
 * Not at once: each request in flight holds a connection of its own (HTTP/1.1), and with four
 * per reconcile the idle pool could not keep them — new TLS handshakes cost more than the round
 * trips saved (BENCHMARKS.md: 45.5 s and 6.6 CPU-s against 36.6 s and 3.7 at N = 1,000).
 * by_name: read by name where a query allows it (the switch guard); 0 lists every query by
 * labels (the finalizer's confirmation). counts[i]: backend i's instances; names (may be NULL):
 * each named, in backend order. 0, or -1 with err at the first failure (none made after it). */
static int backends_live(backend *bs, size_t nb, const backend *except, int by_name, const worker *w, size_t *counts,
                         buf *names, wc_err *err) {
    for (size_t i = 0; i < nb; i++) counts[i] = 0;
    for (size_t i = 0; i < nb; i++) {
        if (&bs[i] == except) continue;
        live_query q[LIVE_QUERIES_MAX];
        size_t nq = bs[i].ops->live(&bs[i], q);
        assert(nq <= LIVE_QUERIES_MAX);
        for (size_t k = 0; k < nq; k++) {
            int rc = by_name && q[k].by_name
                         ? backend_live_get(&bs[i], w, &q[k], &counts[i], names, err)
                         : backend_live_list(&bs[i], w, q[k].resource, q[k].selector_extra, q[k].project,
                                             q[k].is_instance, &counts[i], names, err);
            if (rc < 0) return -1;
        }
    }
    return 0;
}
