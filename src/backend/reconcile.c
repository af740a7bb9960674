/*
 * reconcile.c — the imperative shell around decide(): observe, decide, act, report.
 *
 * One call reconciles one Worker key. It reads the Worker and every instance of both backends
 * from the informer caches (no API reads on the hot path but the Worker's Secret), calls the
 * pure decide(), executes its actions in order — stopping at the first failure, because later
 * actions assume earlier ones happened (the claim after its deps, the finalizer after the
 * deletes) — records Events, and writes status only when something changed.
 *
 * Errors never abort the process: they become Synced=False with the message, and a requeue
 * with backoff (or after Retry-After).
 */

typedef struct controller controller;

typedef struct exec_ctx {
    arena *a;
    const worker *w;
    const env_list *env;
    const char *pod_hash, *sandbox_hash;
    const kv_list *secret;       /* the Worker's Secret data, NULL when absent */
    const char *failure_reason;  /* Synced reason when an action fails (default APIError) */
} exec_ctx;

static int sandbox_exec_action(controller *c, exec_ctx *x, const action *act, wc_err *err);
static void sandbox_observe(controller *c, arena *a, const worker *w, const char *key, cJSON **claims_json,
                            cJSON **sbx_json, observed *o);
static void sandbox_spec_hash(controller *c, arena *a, const worker *w, const kv_list *secret, char out[17]);

struct controller {
    kube_client *kc;
    kube_recorder *rec;
    kube_informer *workers, *pods, *claims, *sandboxes;   /* claims/sandboxes NULL without sandbox */
    const char *controller_name;
    decide_config dc;
    pod_settings ps;
    worker_env_config envc;
    worker_defaults wd;
    /* sandbox backend */
    s3_client *s3;                 /* worker-deps storage; NULL without the sandbox backend */
    const char *deps_prefix, *deps_pv, *pool;
    int64_t token_ttl_s, claim_timeout_ms, wait_ready_timeout_ms;
    atomic_long reconciles, reconcile_errors;
    /* recreate backoff after instance failures, per Worker key (in memory: a restart forgets it,
     * which costs at most one early retry) */
    pthread_mutex_t backoff_mu;
    strmap backoffs;
};

typedef struct instance_backoff {
    int failures;
    int64_t not_before_ms;
    char *message;    /* what failed */
    char *reason;     /* its condition reason */
} instance_backoff;

#define RECREATE_BACKOFF_BASE_MS 10000   /* like the kubelet's CrashLoopBackOff: 10 s ... */
#define RECREATE_BACKOFF_MAX_MS 300000   /* ... doubling to 5 min */
/* Every Worker is looked at again this often even when nothing changes, so what no event
 * announces (its credentials Secret rotated or created late) still reaches the instance. Reads
 * only: a steady fleet makes no writes. Jittered ±10 % so a fleet does not resync in step. */
#define RESYNC_PERIOD_MS (10 * 60 * 1000)

static void instance_backoff_free(void *p) {
    instance_backoff *b = p;
    if (b) free(b->message), free(b->reason);
    free(b);
}

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

/* The Worker informer keeps everything the controller reads and drops what other HiClaw
 * components own (soul, skills, …: often the bulk of the object). */
/* Copies obj's members into a new object, except those named in drop[] (and managedFields and
 * annotations for metadata): built member by member, so the parts left out are never copied. */
static cJSON *json_copy_except(const cJSON *obj, const char *const *drop, size_t ndrop) {
    cJSON *out = cJSON_CreateObject();
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        size_t i = 0;
        if (!it->string) continue;
        while (i < ndrop && strcmp(it->string, drop[i]) != 0) i++;
        if (i == ndrop) cJSON_AddItemToObject(out, it->string, cJSON_Duplicate(it, 1));
    }
    return out;
}

/* The Worker as the cache keeps it: everything the reconciler reads, minus managedFields,
 * annotations, creationTimestamp, apiVersion/kind (constant), and the spec/status fields other
 * components own (they change often and never matter to the instance). */
static cJSON *worker_project(const cJSON *obj) {
    static const char *const mdrop[] = {"managedFields", "annotations", "creationTimestamp"};
    static const char *const drop[] = {"model", "identity", "soul", "agents", "skills", "remoteSkills", "mcpServers",
                                       "package", "expose", "channelPolicy", "accessEntries"};
    static const char *const sdrop[] = {"matrixUserID", "roomID", "lastHeartbeat", "exposedPorts"};
    cJSON *out = cJSON_CreateObject();
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (!it->string) continue;
        if (strcmp(it->string, "metadata") == 0 && cJSON_IsObject(it))
            cJSON_AddItemToObject(out, "metadata", json_copy_except(it, mdrop, sizeof mdrop / sizeof *mdrop));
        else if (strcmp(it->string, "spec") == 0 && cJSON_IsObject(it))
            cJSON_AddItemToObject(out, "spec", json_copy_except(it, drop, sizeof drop / sizeof *drop));
        else if (strcmp(it->string, "status") == 0 && cJSON_IsObject(it))
            cJSON_AddItemToObject(out, "status", json_copy_except(it, sdrop, sizeof sdrop / sizeof *sdrop));
        else if (strcmp(it->string, "apiVersion") != 0 && strcmp(it->string, "kind") != 0)
            cJSON_AddItemToObject(out, it->string, cJSON_Duplicate(it, 1));
    }
    return out;
}

/* Reads Secret hiclaw-creds-<name>: 0 found (data decoded into *out), 1 absent, -1 error.
 * Every value is registered with the redactor before anything else can see it. */
static int read_worker_secret(controller *c, arena *a, const worker *w, kv_list *out, wc_err *err) {
    char name[300];
    snprintf(name, sizeof name, WORKER_CREDS_SECRET_PREFIX "%s", w->name);
    cJSON *sec = NULL;
    memset(out, 0, sizeof *out);
    if (kube_get(c->kc, &KUBE_SECRETS, w->namespace, name, NULL, &sec, err) < 0) return kube_err_not_found(err) ? 1 : -1;
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

/* ---- executing actions ---- */

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
    int rc = kube_patch(c->kc, &KUBE_WORKERS, w->namespace, w->name, NULL, KUBE_PATCH_MERGE, p.data, NULL, 0, 0, NULL, err);
    buf_free(&p);
    return rc;
}

static void record(controller *c, const worker *w, const char *type, const char *reason, const char *verb,
                   const char *note) {
    kube_event_ref ref = {"hiclaw.io/v1beta1", "Worker", w->namespace, w->name, w->uid};
    kube_record(c->rec, &ref, type, reason, verb, "%s", note);
}

#define LIVE_PODS 1u
#define LIVE_CLAIMS 2u
#define LIVE_SANDBOXES 4u

/* The Worker's instances as the API server (not the cache) has them: pod-backend Pods, claims,
 * Sandboxes as `what` (LIVE_* bits) asks — claims and Sandboxes only where OpenKruise is
 * watched at all. Counts them into *n and names them in `names` ("Pod x, SandboxClaim y").
 * Another Worker UID's instances and a Sandbox's own Pod are not the Worker's (SPEC 3). */
static int live_instances(controller *c, const worker *w, unsigned what, size_t *n, buf *names, wc_err *err) {
    *n = 0;
    char sel[512];
    snprintf(sel, sizeof sel, LABEL_WORKER "=%s," LABEL_CONTROLLER "=%s", w->name, c->controller_name);
    if (what & LIVE_PODS) {
        char psel[600];
        snprintf(psel, sizeof psel, "%s" POD_INSTANCE_SELECTOR_EXTRA, sel);
        cJSON *list = NULL;
        if (kube_list_page(c->kc, &KUBE_PODS, w->namespace, psel, NULL, 0, NULL, &list, err) < 0) return -1;
        const cJSON *it;
        cJSON_ArrayForEach(it, json_get(list, "items")) {
            cJSON *proj = pod_project(it);
            obs_pod p;
            pod_observe(proj, &p);
            if (p.is_instance && !instance_of_other_worker(json_get(proj, "metadata"), w->uid)) {
                if (names) buf_printf(names, "%sPod %s", names->len ? ", " : "", p.name ? p.name : "?");
                (*n)++;
            }
            cJSON_Delete(proj);
        }
        cJSON_Delete(list);
    }
    if (!c->claims) return 0;
    const kube_resource *rs[2] = {&KUBE_SANDBOXCLAIMS, &KUBE_SANDBOXES};
    for (int i = 0; i < 2; i++) {
        if (!(what & (i == 0 ? LIVE_CLAIMS : LIVE_SANDBOXES))) continue;
        cJSON *list = NULL;
        if (kube_list_page(c->kc, rs[i], w->namespace, sel, NULL, 0, NULL, &list, err) < 0) return -1;
        const cJSON *it;
        cJSON_ArrayForEach(it, json_get(list, "items")) {
            cJSON *proj = instance_project_metadata(it);
            const cJSON *md = json_get(proj, "metadata");
            if (!instance_of_other_worker(md, w->uid)) {
                if (names) buf_printf(names, "%s%s %s", names->len ? ", " : "", rs[i]->kind, json_str(md, "name"));
                (*n)++;
            }
            cJSON_Delete(proj);
        }
        cJSON_Delete(list);
    }
    return 0;
}

/* Defense in depth for the switch guard: right before creating an instance, ask the API server
 * (not the cache) whether any instance of the other backend exists. Pods of the pod backend
 * only: a Sandbox's own Pod (a previous sandbox instance still terminating) is the sandbox
 * backend's, and the claim/Sandbox check covers it. */
static int other_backend_exists(controller *c, const worker *w, backend_kind creating, int *exists, wc_err *err) {
    size_t n = 0;
    int rc = live_instances(c, w, creating == BACKEND_SANDBOX ? LIVE_PODS : LIVE_CLAIMS | LIVE_SANDBOXES, &n, NULL, err);
    *exists = n > 0;
    return rc;
}

static int delete_ok(int rc, const wc_err *err) {
    /* Gone already, or the UID precondition says it is a newer object: either way not ours to delete. */
    return rc == 0 || kube_err_not_found(err) || kube_err_conflict(err);
}

/* With its Sandboxes gone, a Worker may still have their Pods: OpenKruise leaves a Sandbox's Pod
 * to the garbage collector, which a cluster may not run, or run late — and that Pod is an agent
 * holding the Worker's mounted credentials. The controller does not wait for it: it deletes
 * every Pod still labelled for the Worker by a sandbox backend (its own Pods are gone by now) and
 * keeps the finalizer until none is left. */
static int delete_leftover_sandbox_pods(controller *c, exec_ctx *x, wc_err *err) {
    const worker *w = x->w;
    char sel[600];
    snprintf(sel, sizeof sel, LABEL_WORKER "=%s," LABEL_CONTROLLER "=%s," LABEL_BACKEND " in (sandbox,agent-sandbox)",
             w->name, c->controller_name);
    cJSON *list = NULL;
    if (kube_list_page(c->kc, &KUBE_PODS, w->namespace, sel, NULL, 0, NULL, &list, err) < 0) return -1;
    buf names = BUF_INIT;
    size_t n = 0;
    int rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, json_get(list, "items")) {
        const char *name = json_str_at(it, "metadata.name"), *uid = json_str_at(it, "metadata.uid");
        if (!name) continue;
        n++;
        buf_printf(&names, "%s%s", names.len ? ", " : "", name);
        if (json_str_at(it, "metadata.deletionTimestamp")) continue;
        wc_err derr;
        err_clear(&derr);
        int d = kube_delete(c->kc, &KUBE_PODS, w->namespace, name, uid, NULL, "Background", &derr);
        if (d == 0) log_info("deleted a leftover Pod of a deleted Sandbox", "worker", w->name, "namespace", w->namespace,
                             "name", name);
        else if (!delete_ok(d, &derr)) {
            *err = derr;
            rc = -1;
            break;
        }
    }
    cJSON_Delete(list);
    if (rc == 0 && n) {
        x->failure_reason = "CleanupPending";
        rc = err_set(err, WC_EINVAL, "the Pod%s of a deleted Sandbox (%s) still exist%s: deleting, the finalizer stays "
                                     "until %s gone",
                     n > 1 ? "s" : "", buf_cstr(&names), n > 1 ? "" : "s", n > 1 ? "they are" : "it is");
    }
    buf_free(&names);
    return rc;
}

/* SPEC 3.2: before any cleanup and the finalizer's removal, the API server — not the cache,
 * which may not have seen a create yet — must hold no Pod, claim or Sandbox of the Worker. If it
 * does, this fails (the actions after it do not run) and the Worker is retried with backoff; by
 * then the cache has the instance and the deletion deletes it. */
static int confirm_instances_gone(controller *c, exec_ctx *x, wc_err *err) {
    size_t n = 0;
    buf names = BUF_INIT;
    int rc = live_instances(c, x->w, LIVE_PODS | LIVE_CLAIMS | LIVE_SANDBOXES, &n, &names, err);
    if (rc == 0 && n) {
        x->failure_reason = "CleanupPending";
        rc = err_set(err, WC_EINVAL, "%s still exist%s in the API server (the cache has not seen %s yet): the finalizer "
                                     "stays until %s gone",
                     buf_cstr(&names), n > 1 ? "" : "s", n > 1 ? "them" : "it", n > 1 ? "they are" : "it is");
    }
    buf_free(&names);
    if (rc == 0) rc = delete_leftover_sandbox_pods(c, x, err);
    return rc;
}


/* A create answered 409: the object of that name is ours when the cache only lagged behind
 * our own create (success), anyone else's otherwise (an error with the reason given, nothing
 * touched). Read from the API server, not the cache. */
static int create_conflict(controller *c, exec_ctx *x, const kube_resource *r, const char *name, const char *kind_name,
                           const char *reason, wc_err *err) {
    cJSON *obj = NULL;
    wc_err gerr;
    err_clear(&gerr);
    if (kube_get(c->kc, r, x->w->namespace, name, NULL, &obj, &gerr) < 0) {
        if (kube_err_not_found(&gerr)) return err_set(err, WC_EHTTP, "create %s %s: 409, and then not found: retrying",
                                                      kind_name, name);
        *err = gerr;
        return -1;
    }
    const char *why = instance_name_conflict(x->a, obj, x->w, c->controller_name, kind_name);
    cJSON_Delete(obj);
    if (!why) return 0; /* ours: the cache lagged behind our own create */
    x->failure_reason = reason;
    return err_set(err, WC_EINVAL, "%s", why);
}

static int exec_action(controller *c, exec_ctx *x, const action *act, wc_err *err) {
    const worker *w = x->w;
    buf body = BUF_INIT;
    int rc = 0;
    switch (act->kind) {
    case ACT_ADD_FINALIZER:
        rc = finalizer_patch(c, w, 1, err);
        break;
    case ACT_CONFIRM_INSTANCES_GONE:
        rc = confirm_instances_gone(c, x, err);
        break;
    case ACT_REMOVE_FINALIZER:
        rc = finalizer_patch(c, w, 0, err);
        if (rc < 0 && kube_err_not_found(err)) rc = 0;
        break;
    case ACT_ENSURE_SERVICEACCOUNT:
        pod_render_serviceaccount(&body, x->a, w, &c->ps);
        rc = kube_create(c->kc, &KUBE_SERVICEACCOUNTS, w->namespace, NULL, NULL, body.data, NULL, err);
        if (rc < 0 && kube_err_conflict(err)) rc = 0; /* AlreadyExists */
        else if (rc == 0) log_info("created ServiceAccount", "worker", w->name, "namespace", w->namespace, "name", act->name);
        break;
    case ACT_DELETE_SERVICEACCOUNT:
        rc = kube_delete(c->kc, &KUBE_SERVICEACCOUNTS, w->namespace, act->name, NULL, NULL, NULL, err);
        rc = delete_ok(rc, err) ? 0 : -1;
        break;
    case ACT_CREATE_POD: {
        int exists = 0;
        if (other_backend_exists(c, w, BACKEND_POD, &exists, err) < 0) { rc = -1; break; }
        if (exists) {
            rc = err_set(err, WC_EINVAL, "refusing to create Pod %s: a sandbox instance of this Worker exists", act->name);
            x->failure_reason = "BackendSwitchBlocked";
            break;
        }
        pod_render(&body, x->a, w, x->env, &c->ps, x->pod_hash);
        rc = kube_create(c->kc, &KUBE_PODS, w->namespace, NULL, NULL, body.data, NULL, err);
        if (rc == 0) {
            log_info("created Pod", "worker", w->name, "namespace", w->namespace, "backend", "pod", "name", act->name);
            record(c, w, "Normal", "Created", "Create", arena_sprintf(x->a, "created Pod %s", act->name));
        } else if (kube_err_conflict(err)) {
            rc = create_conflict(c, x, &KUBE_PODS, act->name, "Pod", "PodNameConflict", err);
        }
        break;
    }
    case ACT_DELETE_POD:
        rc = kube_delete(c->kc, &KUBE_PODS, w->namespace, act->name, act->uid, NULL, "Background", err);
        if (rc == 0) {
            log_info("deleted Pod", "worker", w->name, "namespace", w->namespace, "backend", "pod", "name", act->name);
            record(c, w, "Normal", "Deleted", "Delete", arena_sprintf(x->a, "deleted Pod %s", act->name));
        }
        rc = delete_ok(rc, err) ? 0 : -1;
        break;
    default:
        rc = sandbox_exec_action(c, x, act, err);
        break;
    }
    buf_free(&body);
    return rc;
}

/* ---- status ---- */

static const char *cond_transition_time(arena *a, const wcond *old, const char *status, time_t now) {
    if (old->present && old->status && strcmp(old->status, status) == 0 && old->last_transition)
        return old->last_transition;
    char ts[32];
    wc_rfc3339(ts, now);
    return arena_strdup(a, ts);
}

/* One metav1.Condition of ours; its message as redacted as the status message. */
static void status_push_condition(cJSON *conds, arena *a, const char *type, const decided_cond *d, const wcond *old,
                                  int64_t gen, time_t now) {
    cJSON *c = json_push_object(conds);
    json_add_str(c, "type", type);
    json_add_str(c, "status", d->status);
    json_add_str(c, "reason", d->reason);
    char *clean = log_redact(d->message);
    json_add_str(c, "message", clean);
    free(clean);
    json_add_int(c, "observedGeneration", gen);
    json_add_str(c, "lastTransitionTime", cond_transition_time(a, old, d->status, now));
}

static int str_eq(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

/* The stored message is the redacted one (json_condition writes it so): compare like with like. */
static int cond_same(const wcond *old, const decided_cond *d, int64_t gen) {
    if (!old->present || !str_eq(old->status, d->status) || !str_eq(old->reason, d->reason) ||
        old->observed_generation != gen)
        return 0;
    char *clean = log_redact(d->message ? d->message : "");
    int same = str_eq(old->message, clean);
    free(clean);
    return same;
}

/* Does the status the decision describes equal what the Worker already says? Pure: this is
 * what keeps a steady fleet from writing at all. */
static int status_same(const worker *w, const decision *d, int64_t observed_gen) {
    worker_phase phase = d->phase != PHASE_NONE ? d->phase : w->phase;
    const char *backend = d->backend ? d->backend : w->status_backend;
    const char *message = d->message ? d->message : "";
    char *clean_msg = log_redact(message);
    int same = phase == w->phase && str_eq(backend, w->status_backend) && str_eq(clean_msg, w->message) &&
               str_eq(d->container_state, w->container_state) && observed_gen == w->observed_generation &&
               str_eq(d->instance.kind, w->instance.kind) && str_eq(d->instance.name, w->instance.name) &&
               str_eq(d->instance.claim_name, w->instance.claim_name) && str_eq(d->instance.pod_ip, w->instance.pod_ip) &&
               cond_same(&w->ready, &d->ready, w->generation) && cond_same(&w->synced, &d->synced, w->generation) &&
               (!d->deps_path || str_eq(d->deps_path, w->status_deps_path));
    free(clean_msg);
    return same;
}

/* The status merge patch: this controller's fields, with the conditions of other types
 * (someone else's) carried over unchanged, since a merge patch replaces the list. now: the
 * lastTransitionTime of a condition whose status changes. A field set to null is removed. */
static void status_patch_render(buf *p, arena *a, const cJSON *obj, const worker *w, const decision *d,
                                int64_t observed_gen, time_t now) {
    worker_phase phase = d->phase != PHASE_NONE ? d->phase : w->phase;
    const char *backend = d->backend ? d->backend : w->status_backend;
    cJSON *patch = json_object();
    cJSON *st = json_add_object(patch, "status");
    json_add_str_or_null(st, "phase", phase == PHASE_NONE ? NULL : phase_name(phase));
    json_add_str_or_null(st, "backendRuntime", backend && *backend ? backend : NULL);
    char *clean_msg = log_redact(d->message ? d->message : "");
    json_add_str(st, "message", clean_msg);
    free(clean_msg);
    json_add_str_or_null(st, "containerState", d->container_state);
    json_add_int(st, "observedGeneration", observed_gen);
    if (d->instance.kind) {
        cJSON *inst = json_add_object(st, "instance");
        json_add_str(inst, "kind", d->instance.kind);
        json_add_str_or_null(inst, "name", d->instance.name);
        json_add_str_or_null(inst, "claimName", d->instance.claim_name);
        json_add_str_or_null(inst, "podIP", d->instance.pod_ip);
    } else {
        json_add_str_or_null(st, "instance", NULL);
    }
    if (d->deps_path) json_add_str(st, "workerDepsPath", d->deps_path); /* absent from the patch: kept */
    cJSON *conds = json_add_array(st, "conditions");
    status_push_condition(conds, a, "Ready", &d->ready, &w->ready, w->generation, now);
    status_push_condition(conds, a, "Synced", &d->synced, &w->synced, w->generation, now);
    const cJSON *cond;
    cJSON_ArrayForEach(cond, json_get(json_get(obj, "status"), "conditions")) {
        const char *t = json_str(cond, "type");
        if (t && (strcmp(t, "Ready") == 0 || strcmp(t, "Synced") == 0)) continue;
        char *s = cJSON_PrintUnformatted(cond); /* someone else's: their bytes, as they wrote them */
        json_push_raw(conds, s);
        free(s);
    }
    json_render_free(p, patch);
}

/* Writes this controller's status fields as a merge patch — only when they differ from what
 * the Worker already says, so a steady fleet causes no writes at all. */
static int write_status(controller *c, arena *a, const cJSON *obj, const worker *w, const decision *d,
                        int64_t observed_gen, wc_err *err) {
    if (status_same(w, d, observed_gen)) return 0;
    buf p = BUF_INIT;
    status_patch_render(&p, a, obj, w, d, observed_gen, time(NULL));
    int rc = kube_patch(c->kc, &KUBE_WORKERS, w->namespace, w->name, "status", KUBE_PATCH_MERGE, p.data, NULL, 0, 0, NULL, err);
    buf_free(&p);
    return rc;
}

/* ---- observing ---- */

static void observe_pods(controller *c, arena *a, const worker *w, const char *key, cJSON **keep, observed *o) {
    cJSON *arr = kube_informer_by_index(c->pods, key);
    *keep = arr;
    size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
    obs_pod *pods = arena_calloc(a, (n ? n : 1) * sizeof *pods);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        pod_observe(it, &pods[i]);
        /* a sandbox's own Pod belongs to the sandbox instance; another Worker UID's is not ours */
        if (pods[i].is_instance && !instance_of_other_worker(json_get(it, "metadata"), w->uid)) i++;
    }
    o->pods = pods;
    o->npods = i;
}

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

/* Reconciles one Worker. */
static reconcile_result reconcile_worker(controller *c, const char *key) {
    reconcile_result res = {RECONCILE_DONE, 0, 0};
    long n = atomic_fetch_add(&c->reconciles, 1) + 1;
    char rid[24];
    snprintf(rid, sizeof rid, "%08lx-%04x", n, (unsigned)(rand() & 0xffff));
    log_set_reconcile_id(rid);
    if (c->rec) kube_recorder_sweep(c->rec);
    cJSON *obj = kube_informer_get(c->workers, key);
    if (!obj) return res; /* deleted: nothing left to do (the finalizer guarantees cleanup ran) */
    arena a;
    arena_init(&a);
    wc_err err;
    err_clear(&err);
    cJSON *pods_json = NULL, *claims_json = NULL, *sbx_json = NULL;
    worker w;
    if (worker_parse(&a, obj, &c->wd, &w, &err) < 0) {
        log_error("cannot parse Worker", "worker", key, "error", err.msg);
        goto out;
    }
    worker_validate(&a, &w, c->dc.prefix);

    observed o;
    memset(&o, 0, sizeof o);
    observe_pods(c, &a, &w, key, &pods_json, &o);
    sandbox_observe(c, &a, &w, key, &claims_json, &sbx_json, &o);
    backoff_observe(c, key, &a, &o);

    /* The Secret is read only when an instance may need its values (hash, env file). */
    kv_list secret = {NULL, 0};
    int have_secret = 0;
    if (!w.deleting && w.container_managed && !w.invalid) {
        int s = read_worker_secret(c, &a, &w, &secret, &err);
        if (s < 0) {
            decision d;
            memset(&d, 0, sizeof d);
            d.ready.status = w.ready.status ? w.ready.status : "Unknown";
            d.ready.reason = w.ready.reason ? w.ready.reason : "Unknown";
            d.ready.message = w.ready.message ? w.ready.message : "";
            d.container_state = w.container_state;
            d.instance = w.instance;
            d.message = arena_sprintf(&a, "reading Secret %s%s: %s", WORKER_CREDS_SECRET_PREFIX, w.name, err.msg);
            d.synced = (decided_cond){"False", "APIError", d.message};
            log_warn("reconcile failed", "worker", w.name, "namespace", w.namespace, "reason", "APIError", "error", d.message);
            wc_err e2;
            if (write_status(c, &a, obj, &w, &d, w.observed_generation, &e2) < 0)
                log_warn("status update failed", "worker", w.name, "namespace", w.namespace, "error", e2.msg);
            res.outcome = RECONCILE_RETRY;
            res.error = 1;
            goto out;
        }
        have_secret = s == 0;
    }
    env_list env;
    env_build(&a, &w, &c->envc, have_secret ? &secret : NULL, 1, &env);
    char pod_hash[17];
    pod_spec_hash(&a, &w, &env, &c->ps, pod_hash);
    char sandbox_hash[17] = "";
    sandbox_spec_hash(c, &a, &w, have_secret ? &secret : NULL, sandbox_hash);
    if (o.deps_observed) {
        /* what env/env must hash to: the file this Worker's env renders to now */
        env_list file_env;
        env_build(&a, &w, &c->envc, have_secret ? &secret : NULL, 0, &file_env);
        buf file = BUF_INIT;
        env_file_write(&file, &file_env);
        char *want = arena_alloc(&a, 17);
        deps_env_hash(&file, want);
        buf_free_secret(&file);
        o.want_deps_hash = want;
    }

    decision d;
    decide(&a, &w, &o, &c->dc, pod_hash, sandbox_hash, &d);
    if (d.confirm_sandbox_lost) {
        /* A completed claim without a Sandbox in the cache: ask the API server. Only when it has
         * none either is the loss real (decide() explains why). An error keeps the first
         * decision: wait, never delete on doubt. */
        size_t live = 0;
        wc_err lerr;
        err_clear(&lerr);
        if (live_instances(c, &w, LIVE_SANDBOXES, &live, NULL, &lerr) < 0)
            log_warn("cannot list the Worker's Sandboxes", "worker", w.name, "namespace", w.namespace, "error", lerr.msg);
        else if (live == 0) {
            o.sandbox_lost_confirmed = 1;
            decide(&a, &w, &o, &c->dc, pod_hash, sandbox_hash, &d);
        }
    }

    exec_ctx x = {&a, &w, &env, pod_hash, sandbox_hash, have_secret ? &secret : NULL, NULL};
    int failed = 0;
    const char *wrote_deps = NULL; /* where worker-deps were written: recorded in status */
    for (size_t i = 0; i < d.nactions && !failed; i++) {
        int rc_act = exec_action(c, &x, &d.actions[i], &err);
        action_kind k = d.actions[i].kind;
        if (rc_act == 0 && (k == ACT_WRITE_DEPS || k == ACT_REFRESH_TOKEN || k == ACT_WRITE_ENV))
            wrote_deps = d.actions[i].name && *d.actions[i].name ? d.actions[i].name : o.deps_path;
#ifdef WC_FAILPOINTS
        if (rc_act == 0) {
            char point[64];
            snprintf(point, sizeof point, "after-%s", action_kind_name(d.actions[i].kind));
            FAILPOINT(point);
        }
#endif
        if (rc_act < 0) {
            failed = 1;
            if (d.actions[i].kind == ACT_ADD_FINALIZER && kube_err_conflict(&err)) {
                /* The cache is behind the Worker: normal, not worth an error status. */
                res.outcome = RECONCILE_RETRY;
                goto out;
            }
        }
    }
    d.deps_path = wrote_deps;
    for (size_t i = 0; i < d.nevents; i++) record(c, &w, d.events[i].type, d.events[i].reason, "Reconcile", d.events[i].note);
    if (d.done_deleting && !failed) {
        log_info("Worker cleaned up, finalizer removed", "worker", w.name, "namespace", w.namespace);
        goto out; /* the object is going away: no status to write */
    }
    int64_t observed_gen = w.observed_generation;
    if (failed) {
        const char *reason = x.failure_reason ? x.failure_reason : "APIError";
        d.message = arena_strdup(&a, err.msg);
        d.synced = (decided_cond){"False", reason, d.message};
        log_warn("reconcile failed", "worker", w.name, "namespace", w.namespace, "reason", reason, "error", err.msg);
        if (first_time_this_generation(&w, reason) || strcmp(reason, "APIError") != 0)
            record(c, &w, "Warning", reason, "Reconcile", d.message);
        res.outcome = err.retry_after_s > 0 ? RECONCILE_AFTER : RECONCILE_RETRY;
        res.requeue_after_ms = err.retry_after_s > 0 ? (int64_t)err.retry_after_s * 1000 : 0;
        res.error = 1;
    } else {
        observed_gen = w.generation;
        int64_t wait = backoff_record(c, key, &d);
        reconcile_schedule(&res, &d, w.deleting, wait,
                           RESYNC_PERIOD_MS - RESYNC_PERIOD_MS / 10 + (int64_t)(rand() % (RESYNC_PERIOD_MS / 5)));
    }
    wc_err serr;
    err_clear(&serr);
    if (write_status(c, &a, obj, &w, &d, observed_gen, &serr) < 0 && !kube_err_not_found(&serr)) {
        log_warn("status update failed", "worker", w.name, "namespace", w.namespace, "error", serr.msg);
        /* Retry soon with the per-key backoff, also when the reconcile itself asked for a
         * (long) resync: nothing else re-triggers it when the observed objects do not change
         * again, so the status would stay stale for the whole resync period (found by the
         * API server SIGKILL test: a Worker stuck "Starting" over a Ready Pod). */
        if (res.outcome == RECONCILE_DONE || (res.outcome == RECONCILE_AFTER && res.requeue_after_ms > 5000))
            res.outcome = RECONCILE_RETRY;
    }
out:
    log_set_reconcile_id(NULL);
    if (res.error) atomic_fetch_add(&c->reconcile_errors, 1);
    cJSON_Delete(pods_json);
    cJSON_Delete(claims_json);
    cJSON_Delete(sbx_json);
    cJSON_Delete(obj);
    arena_free(&a);
    return res;
}
