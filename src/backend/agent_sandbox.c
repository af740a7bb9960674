/*
 * agent_sandbox.c — the agent-sandbox backend: the Worker runs in a kubernetes-sigs agent-sandbox
 * Sandbox (agents.x-k8s.io/v1beta1, not OpenKruise's agents.kruise.io Sandbox of the same
 * plural) named <prefix>worker-<name>, created directly — a cold start: its warm pools cannot
 * carry per-Worker credentials without literal values (a claim's env is literal-only). The
 * Sandbox's spec.podTemplate is the pod backend's Pod spec, so credentials stay secretKeyRefs and
 * the projected token volume carries over; agent-sandbox makes one Pod named like the Sandbox,
 * controlled by it, carrying the template's labels (hiclaw.io/backend=agent-sandbox, so the pod
 * backend never counts it as its instance).
 *
 * An instance is the Sandbox AND its Pod: both are observed (two caches), counted by the switch
 * guard and the live checks, and removed by the controller itself — the Sandbox, then its Pod —
 * rather than left to the garbage collector, which a cluster may not run, or run late.
 *
 *   policy     (pure) the status table's agent-sandbox rows: create, Sleeping → operatingMode
 *              Suspended, Running → Running, replace on a spec change or a Finished Sandbox
 *              (with backoff), delete when Stopped
 *   render     the Sandbox (its podTemplate: pod_spec), and its spec hash
 *   observe    the agent-sandboxes cache, and the agent-sandbox Pods cache
 */

#define ASB_BACKEND "agent-sandbox"
#define ASB_POD_SELECTOR_EXTRA "," LABEL_BACKEND "=" ASB_BACKEND

static const action_type ACT_CREATE_AGENT_SANDBOX[1] = {
    {.name = "create-agent-sandbox", .backend = ASB_BACKEND, .creates = "Sandbox",
     .does = {"create Sandbox (agents.x-k8s.io)"}}};
static const action_type ACT_DELETE_AGENT_SANDBOX[1] = {
    {.name = "delete-agent-sandbox", .backend = ASB_BACKEND, .does = {"delete Sandbox (agents.x-k8s.io)"}}};
static const action_type ACT_DELETE_AGENT_SANDBOX_POD[1] = {
    {.name = "delete-agent-sandbox-pod", .backend = ASB_BACKEND, .does = {"delete the Sandbox's Pod"}}};
/* flag 1: operatingMode Suspended; 0: Running */
static const action_type ACT_SET_AGENT_SANDBOX_MODE[1] = {
    {.name = "set-agent-sandbox-mode", .backend = ASB_BACKEND,
     .does = {"resume Sandbox (operatingMode Running)", "suspend Sandbox (operatingMode Suspended)"}}};

/* ---- observations ---- */

typedef struct obs_asb {
    const char *name, *uid;
    int deleting;
    const char *spec_hash;        /* annotation hiclaw.io/spec-hash */
    int suspend_wanted;           /* spec.operatingMode Suspended */
    int current;                  /* its conditions describe this generation of its spec */
    const char *ready;            /* Ready condition status: "True", "False", NULL (none yet) */
    const char *ready_reason, *ready_message;
    int suspended;                /* Suspended condition True */
    int finished;                 /* Finished condition True */
    const char *finished_message;
    const char *pod_ip;           /* status.podIPs[0] */
} obs_asb;

typedef struct obs_asb_pod {
    const char *name, *uid;
    int deleting;
    const char *owner_uid;        /* its controlling Sandbox */
    const char *waiting_reason;   /* container "worker" state.waiting: the Sandbox's Ready condition */
    const char *waiting_message;  /* only says "not Ready", so a crash loop is read from the Pod */
} obs_asb_pod;

typedef struct obs_asbs {
    const obs_asb *sandboxes;
    size_t nsandboxes;
    const obs_asb_pod *pods;      /* Pods labelled for the Worker by this backend */
    size_t npods;
    /* The API server (not the cache) has no Sandbox of the Worker: set when a decision asked
     * (decision.recheck) before deleting a Pod whose Sandbox the cache does not show. */
    int orphans_confirmed;
} obs_asbs;

static const obs_asbs ASB_NONE;

/* Its decision settings. */
typedef struct asb_policy_cfg {
    const char *off_why;          /* off by HICLAW_AGENT_SANDBOX_ENABLED=auto: why; NULL: by false (or on) */
} asb_policy_cfg;

/* ---- the policy (pure) ---- */

static const obs_asbs *asb_obs(const void *obs) { return obs ? obs : &ASB_NONE; }

static size_t asb_count(const void *obs) { return asb_obs(obs)->nsandboxes + asb_obs(obs)->npods; }

/* Deletes the Pods not already going, except those of `keep` (a Sandbox staying). Deletes run
 * in order and stop at the first failure, so a Pod delete after its Sandbox's runs only once the
 * Sandbox is gone: agent-sandbox cannot make it again. */
static int asb_delete_pods(const obs_asbs *s, const obs_asb *keep, decision *d) {
    int any = 0;
    for (size_t i = 0; i < s->npods; i++) {
        const obs_asb_pod *p = &s->pods[i];
        if (keep && str_eq(p->owner_uid, keep->uid)) continue;
        any = 1;
        if (!p->deleting) decide_action(d, ACT_DELETE_AGENT_SANDBOX_POD, p->name, p->uid, 0);
    }
    return any;
}

/* Every Sandbox, then every Pod: the controller removes both, not the garbage collector. */
static int asb_teardown(const void *obs, decision *d) {
    const obs_asbs *s = asb_obs(obs);
    for (size_t i = 0; i < s->nsandboxes; i++)
        if (!s->sandboxes[i].deleting)
            decide_action(d, ACT_DELETE_AGENT_SANDBOX, s->sandboxes[i].name, s->sandboxes[i].uid, 0);
    asb_delete_pods(s, NULL, d);
    return asb_count(obs) > 0;
}

static void asb_instance(decision *d, const obs_asb *sbx) {
    d->instance = (worker_instance){"Sandbox", sbx->name, NULL, sbx->pod_ip};
    d->container_state = sbx->ready_reason ? sbx->ready_reason : "Pending";
}

/* Pods without a Sandbox the cache shows (the Sandbox was deleted, its Pod lingers): removed
 * once the API server confirms it has no Sandbox of the Worker (a new Sandbox's Pod may reach
 * the cache before the Sandbox does); until then, wait. Returns 1 while any is left. */
static int asb_orphan_pods(arena *a, const obs_asbs *s, decision *d) {
    if (!s->npods) return 0;
    if (s->orphans_confirmed) asb_delete_pods(s, NULL, d);
    else d->recheck = 1;
    d->phase = PHASE_PENDING;
    d->message = arena_sprintf(a, "waiting for Pod %s of a removed Sandbox to go", s->pods[0].name);
    set_ready(d, "False", "Pending", d->message);
    d->requeue_after_ms = 1000;
    return 1;
}

/* Sleeping: the Sandbox is kept, suspended (agent-sandbox deletes its Pod). */
static void asb_decide_sleep(arena *a, const obs_asbs *s, const obs_asb *sbx, decision *d) {
    if (!sbx) {
        if (asb_orphan_pods(a, s, d)) {
            d->phase = PHASE_STOPPING;
            set_ready(d, "False", "Stopping", d->message);
            return;
        }
        d->phase = PHASE_SLEEPING;
        d->message = "";
        set_ready(d, "False", "Sleeping", "");
        return;
    }
    asb_instance(d, sbx);
    if (!sbx->suspend_wanted) decide_action(d, ACT_SET_AGENT_SANDBOX_MODE, sbx->name, sbx->uid, 1);
    int pod_left = 0;
    for (size_t i = 0; i < s->npods; i++) pod_left |= str_eq(s->pods[i].owner_uid, sbx->uid);
    if (sbx->suspend_wanted && sbx->current && sbx->suspended && !pod_left) {
        d->phase = PHASE_SLEEPING;
        d->message = "";
        d->instance.pod_ip = NULL;
        set_ready(d, "False", "Sleeping", "");
        return;
    }
    d->phase = PHASE_STOPPING;
    d->message = arena_sprintf(a, "suspending Sandbox %s", sbx->name);
    set_ready(d, "False", "Stopping", d->message);
    d->requeue_after_ms = 2000;
}

/* Running with a Sandbox: its status table (hash NULL: describe it only). */
static void asb_decide_status(arena *a, const obs_asbs *s, const obs_asb *sbx, const char *hash, decision *d) {
    asb_instance(d, sbx);
    if (sbx->deleting) {
        d->phase = PHASE_PENDING;
        d->message = arena_sprintf(a, "waiting for Sandbox %s to go before creating it again", sbx->name);
        set_ready(d, "False", "Pending", d->message);
        return;
    }
    if (hash && !str_eq(sbx->spec_hash, hash)) {
        asb_teardown(s, d);
        d->phase = PHASE_PENDING;
        d->message = arena_sprintf(a, "spec changed: recreating Sandbox %s", sbx->name);
        set_ready(d, "False", "Recreating", d->message);
        decide_event(d, "Normal", "Recreating", d->message);
        decide_recreate(d, "Recreating", sbx->uid);
        return;
    }
    if (sbx->finished) {
        if (hash) asb_teardown(s, d);
        d->phase = PHASE_FAILED;
        d->message = arena_sprintf(a, "Sandbox %s finished%s%s; replacing it with backoff", sbx->name,
                                   sbx->finished_message && *sbx->finished_message ? ": " : "",
                                   sbx->finished_message ? sbx->finished_message : "");
        set_ready(d, "False", "SandboxFinished", d->message);
        if (hash) {
            decide_event(d, "Warning", "SandboxFinished", d->message);
            decide_recreate(d, "SandboxFinished", sbx->uid);
            d->backoff = 1;
        }
        return;
    }
    if (sbx->suspend_wanted) {
        if (hash) decide_action(d, ACT_SET_AGENT_SANDBOX_MODE, sbx->name, sbx->uid, 0);
        d->phase = sbx->suspended ? PHASE_SLEEPING : PHASE_STARTING;
        d->message = arena_sprintf(a, "resuming Sandbox %s", sbx->name);
        set_ready(d, "False", d->phase == PHASE_SLEEPING ? "Sleeping" : "Starting", d->message);
        return;
    }
    if (sbx->current && str_eq(sbx->ready, "True")) {
        d->phase = PHASE_RUNNING;
        d->message = "";
        set_ready(d, "True", "Running", "");
        return;
    }
    /* agent-sandbox says only "Pod is Running but not Ready": what will not start by itself
     * (a crash loop, an image that cannot be pulled) is read from its Pod, as the pod backend's */
    for (size_t i = 0; i < s->npods; i++) {
        const obs_asb_pod *p = &s->pods[i];
        if (!str_eq(p->owner_uid, sbx->uid) || !waiting_is_failure(p->waiting_reason)) continue;
        d->phase = PHASE_FAILED;
        d->container_state = p->waiting_reason;
        d->message = arena_sprintf(a, "%s: %s", p->waiting_reason, p->waiting_message ? p->waiting_message : "");
        set_ready(d, "False", p->waiting_reason, d->message);
        return;
    }
    d->phase = PHASE_STARTING;
    const char *why = sbx->current && sbx->ready_message && *sbx->ready_message ? sbx->ready_message
                      : sbx->current && sbx->ready_reason                        ? sbx->ready_reason
                                                                                  : "not ready yet";
    d->message = arena_sprintf(a, "Sandbox %s: %s", sbx->name, why);
    set_ready(d, "False", "Starting", d->message);
}

static void asb_decide(const backend_policy *p, arena *a, const worker *w, const observed *o, const void *obs,
                       const decide_config *c, const char *hash, decision *d) {
    const obs_asbs *s = asb_obs(obs);
    const char *want = instance_name(a, w, c);
    const obs_asb *sbx = NULL;
    d->backend = p->name;
    if (w->state == STATE_STOPPED) {
        for (size_t i = 0; i < s->nsandboxes; i++)
            if (strcmp(s->sandboxes[i].name, want) == 0) sbx = &s->sandboxes[i];
        if (asb_teardown(s, d)) {
            d->phase = PHASE_STOPPING;
            if (sbx) asb_instance(d, sbx);
            d->message = sbx ? arena_sprintf(a, "deleting Sandbox %s and its Pod (state Stopped)", sbx->name)
                             : "deleting what is left of the Worker's Sandboxes (state Stopped)";
            set_ready(d, "False", "Stopping", d->message);
            d->requeue_after_ms = 2000;
        } else {
            d->phase = PHASE_STOPPED;
            d->message = "";
            set_ready(d, "False", "Stopped", "");
        }
        return;
    }
    /* Sandboxes carrying our labels under another name (a changed prefix) are ours but stale:
     * they go, with their Pods. */
    int stale = 0;
    for (size_t i = 0; i < s->nsandboxes; i++) {
        if (strcmp(s->sandboxes[i].name, want) == 0) {
            sbx = &s->sandboxes[i];
            continue;
        }
        stale = 1;
        if (!s->sandboxes[i].deleting)
            decide_action(d, ACT_DELETE_AGENT_SANDBOX, s->sandboxes[i].name, s->sandboxes[i].uid, 0);
    }
    if (stale) asb_delete_pods(s, sbx, d);
    if (w->state == STATE_SLEEPING) {
        asb_decide_sleep(a, s, sbx, d);
        return;
    }
    if (!sbx) {
        if (stale) {
            d->phase = PHASE_PENDING;
            d->message = "waiting for old Sandboxes to go";
            set_ready(d, "False", "Pending", d->message);
            d->requeue_after_ms = 1000;
            return;
        }
        if (asb_orphan_pods(a, s, d)) return;
        if (decide_backing_off(a, o, d)) return;
        decide_action(d, ACT_ENSURE_SERVICEACCOUNT, want, NULL, 0);
        decide_action(d, ACT_CREATE_AGENT_SANDBOX, want, NULL, 0);
        d->phase = PHASE_PENDING;
        d->message = arena_sprintf(a, "creating Sandbox %s", want);
        set_ready(d, "False", "Pending", d->message);
        return;
    }
    asb_decide_status(a, s, sbx, hash, d);
}

/* "Sandbox x and Pod x": what of this backend exists for the Worker. */
static const char *asb_instances_named(arena *a, const obs_asbs *s) {
    const char *sbx = s->nsandboxes ? s->sandboxes[0].name : NULL;
    const char *pod = s->npods ? s->pods[0].name : NULL;
    if (sbx && pod) return arena_sprintf(a, "Sandbox %s (agents.x-k8s.io) and Pod %s", sbx, pod);
    return sbx ? arena_sprintf(a, "Sandbox %s (agents.x-k8s.io)", sbx) : arena_sprintf(a, "Pod %s", pod ? pod : "?");
}

/* Disabled, yet the Worker has agent-sandbox objects (made before it was turned off): observed
 * read-only, never touched; status says why and what the operator can do. */
static const char *asb_disabled_message(const backend_policy *p, arena *a, const void *obs, int deleting) {
    const obs_asbs *s = asb_obs(obs);
    const asb_policy_cfg *cfg = p->cfg;
    const char *what = asb_instances_named(a, s);
    const char *why = cfg && cfg->off_why ? arena_sprintf(a, "off (HICLAW_AGENT_SANDBOX_ENABLED=auto: %s)", cfg->off_why)
                                          : "disabled (HICLAW_AGENT_SANDBOX_ENABLED=false)";
    int many = asb_count(obs) > 1;
    return arena_sprintf(a, "%s of this Worker exist%s but the agent-sandbox backend is %s: nothing more is done for "
                            "%s%s; enable it (HICLAW_AGENT_SANDBOX_ENABLED=true) or remove %s by hand",
                         what, many ? "" : "s", why, many ? "them" : "it", deleting ? " and the finalizer stays" : "",
                         what);
}

/* Why a Sandbox is replaced: its spec hash changed (Recreating), it finished (SandboxFinished). */
static const char *const ASB_RECREATE_REASONS[] = {"Recreating", "SandboxFinished", NULL};

#define ASB_DISABLED_SPEC                                                                                  \
    "spec.backendRuntime is agent-sandbox but the agent-sandbox backend is disabled "                      \
    "(HICLAW_AGENT_SANDBOX_ENABLED=false)"

#define AGENT_SANDBOX_POLICY(on, cfgp)                                                                     \
    {.name = ASB_BACKEND, .noun = "agent-sandbox Sandbox", .an_instance = "an agent-sandbox Sandbox",     \
     .enabled = (on), .disabled_reason = "AgentSandboxDisabled", .disabled_spec = ASB_DISABLED_SPEC,       \
     .cfg = (cfgp), .count = asb_count, .teardown = asb_teardown, .decide = asb_decide,                   \
     .disabled_message = asb_disabled_message, .recreate_reasons = ASB_RECREATE_REASONS}

/* ---- rendering (pure) ---- */

/* The Worker's Sandbox: the system labels, the spec hash, the Worker as controlling owner; its
 * podTemplate is the pod backend's Pod spec, labelled for this backend and with the Worker's UID
 * (the Pod's owner is the Sandbox, so the label is how the Pod names its Worker object). */
static void asb_render(buf *b, arena *a, const worker *w, const env_list *env, const instance_settings *s,
                       const char *hash) {
    const char *name = arena_sprintf(a, "%sworker-%s", s->prefix, w->name);
    kv_list labels = instance_labels(a, w, s->controller_name, ASB_BACKEND);
    cJSON *sbx = instance_object("agents.x-k8s.io/v1beta1", "Sandbox");
    instance_metadata(sbx, name, w->namespace, &labels, hash, w);
    cJSON *spec = json_add_object(sbx, "spec");
    json_add_str(spec, "operatingMode", "Running");
    cJSON *tpl = json_add_object(spec, "podTemplate");
    cJSON *tl = json_add_labels(json_add_object(tpl, "metadata"), "labels", &labels);
    json_add_str(tl, LABEL_WORKER_UID, w->uid ? w->uid : "");
    cJSON_AddItemToObject(tpl, "spec", pod_spec(a, w, env, s, name));
    json_render_free(b, sbx);
}

/* ---- the caches ---- */

static cJSON *asb_project(const cJSON *obj) {
    cJSON *out = instance_project_metadata(obj, NULL);
    const cJSON *md = json_get(obj, "metadata"), *spec = json_get(obj, "spec"), *st = json_get(obj, "status");
    cJSON *s = cJSON_AddObjectToObject(out, "status");
    int64_t gen = json_int(md, "generation", 0);
    cJSON_AddBoolToObject(s, "suspendWanted", str_eq(json_str(spec, "operatingMode"), "Suspended"));
    /* Conditions of an older generation describe the spec before the last change (a suspend or
     * resume in flight): current says whether every condition read is of this one. */
    int current = 1;
    const cJSON *c;
    cJSON_ArrayForEach(c, json_get(st, "conditions")) {
        const char *t = json_str(c, "type"), *cs = json_str(c, "status");
        if (!t) continue;
        if (json_int(c, "observedGeneration", gen) < gen && (str_eq(t, "Ready") || str_eq(t, "Suspended"))) current = 0;
        if (str_eq(t, "Ready")) {
            if (cs) cJSON_AddStringToObject(s, "ready", cs);
            if (json_str(c, "reason")) cJSON_AddStringToObject(s, "readyReason", json_str(c, "reason"));
            if (json_str(c, "message")) cJSON_AddStringToObject(s, "readyMessage", json_str(c, "message"));
        } else if (str_eq(t, "Suspended")) {
            cJSON_AddBoolToObject(s, "suspended", str_eq(cs, "True"));
        } else if (str_eq(t, "Finished") && str_eq(cs, "True")) {
            cJSON_AddBoolToObject(s, "finished", 1);
            if (json_str(c, "message")) cJSON_AddStringToObject(s, "finishedMessage", json_str(c, "message"));
        }
    }
    cJSON_AddBoolToObject(s, "current", current);
    const cJSON *ips = json_get(st, "podIPs");
    if (cJSON_IsArray(ips) && cJSON_IsString(cJSON_GetArrayItem(ips, 0)))
        cJSON_AddStringToObject(s, "podIP", cJSON_GetArrayItem(ips, 0)->valuestring);
    return out;
}

static void asb_observe_one(const cJSON *proj, obs_asb *o) {
    memset(o, 0, sizeof *o);
    const cJSON *st = instance_observe_identity(proj, &o->name, &o->uid, &o->deleting, &o->spec_hash);
    o->suspend_wanted = cJSON_IsTrue(json_get(st, "suspendWanted"));
    o->current = cJSON_IsTrue(json_get(st, "current"));
    o->ready = json_str(st, "ready");
    o->ready_reason = json_str(st, "readyReason");
    o->ready_message = json_str(st, "readyMessage");
    o->suspended = cJSON_IsTrue(json_get(st, "suspended"));
    o->finished = cJSON_IsTrue(json_get(st, "finished"));
    o->finished_message = json_str(st, "finishedMessage");
    o->pod_ip = json_str(st, "podIP");
}

/* A live list's projection (a Sandbox's, a Pod's): its metadata is all that needs. */
static cJSON *asb_pod_project(const cJSON *obj) { return instance_project_metadata(obj, NULL); }

/* A Sandbox's Pod in the cache: the pod backend's projection (metadata, owner, container state). */
static void asb_pod_observe(const cJSON *proj, obs_asb_pod *p) {
    memset(p, 0, sizeof *p);
    const cJSON *st = instance_observe_identity(proj, &p->name, &p->uid, &p->deleting, NULL);
    p->owner_uid = json_str(json_get(json_get(proj, "metadata"), "owner"), "uid");
    p->waiting_reason = json_str(st, "waitingReason");
    p->waiting_message = json_str(st, "waitingMessage");
}

/* ---- the operations ---- */

typedef struct asb_state {
    asb_policy_cfg policy;
    int watching;                 /* agents.x-k8s.io is served: caches 0 (Sandboxes) and 1 (their Pods) */
    char off_why[300];
    char disabled_spec[500];
} asb_state;

static asb_state *asb_st(backend *b) { return b->state; }

/* HICLAW_AGENT_SANDBOX_ENABLED: true needs the API, auto follows it, false leaves it read-only.
 * Wherever the API is served its Sandboxes (and their Pods) are watched, even disabled: a
 * Worker whose Sandbox was made before the backend was turned off must be seen — never doubled
 * by another backend's instance, never stripped of its finalizer while its agent runs. */
static int asb_setup(backend *b, const wc_cfg *conf, wc_err *err) {
    asb_state *st = xcalloc(1, sizeof *st);
    b->state = st;
    int mode = conf->agent_sandbox_mode, enabled = mode != 0;
    int served = backend_api_served(b, &KUBE_AGENT_SANDBOXES, err);
    if (served < 0) {
        log_error("cannot check whether agent-sandbox (agents.x-k8s.io sandboxes) is served", "error", err->msg);
        if (err->code == WC_EINVAL) err->code = WC_EIO;
        return -1;
    }
    if (!served && mode == 1) {
        log_error("the agent-sandbox backend is enabled but agents.x-k8s.io sandboxes is not served: install "
                  "agent-sandbox, or set HICLAW_AGENT_SANDBOX_ENABLED=false");
        return err_set(err, WC_EINVAL, "sandboxes.agents.x-k8s.io is not installed");
    }
    if (!served && mode < 0) {
        snprintf(st->off_why, sizeof st->off_why,
                 "agent-sandbox is not installed (sandboxes.agents.x-k8s.io is not served): install it and restart "
                 "the controller");
        enabled = 0;
    }
    st->watching = served;
    if (served) {
        b->caches[0] = (backend_cache){.name = "agent-sandboxes", .resource = &KUBE_AGENT_SANDBOXES,
                                       .project = asb_project};
        b->caches[1] = (backend_cache){.name = "agent-sandbox-pods", .resource = &KUBE_PODS,
                                       .project = pod_project, .selector_extra = ASB_POD_SELECTOR_EXTRA};
        b->ncaches = 2;
    }
    st->policy.off_why = st->off_why[0] ? st->off_why : NULL;
    b->policy = (backend_policy)AGENT_SANDBOX_POLICY(enabled, &st->policy);
    if (st->off_why[0]) {
        snprintf(st->disabled_spec, sizeof st->disabled_spec,
                 "spec.backendRuntime is agent-sandbox but the agent-sandbox backend is off "
                 "(HICLAW_AGENT_SANDBOX_ENABLED=auto): %s", st->off_why);
        b->policy.disabled_spec = st->disabled_spec;
        log_info("agent-sandbox backend off (HICLAW_AGENT_SANDBOX_ENABLED=auto)", "why", st->off_why);
    } else if (!enabled && served) {
        log_info("agent-sandbox backend disabled; watching its Sandboxes and their Pods read-only (agents.x-k8s.io is "
                 "served)");
    } else if (enabled) {
        log_info("agent-sandbox backend on (agents.x-k8s.io sandboxes is served)");
    }
    return 0;
}

static void asb_release(backend *b) {
    free(b->state);
    b->state = NULL;
}

/* The Worker's Sandboxes and their Pods from the caches; another Worker object's (same name,
 * older UID: its ownerReference, or its Pod's hiclaw.io/worker-uid) are not ours. live: the
 * decision asked whether the API server has any Sandbox of the Worker (Pods without one in the
 * cache); none there confirms the Pods are orphans. An error keeps the first decision: wait. */
static int asb_observe_op(backend *b, exec_ctx *x, int live) {
    if (live) {
        obs_asbs *s = x->own[b->index];
        size_t n = 0;
        wc_err err;
        err_clear(&err);
        if (!s || !asb_st(b)->watching) return 0;
        if (backend_live_list(b, x->w, &KUBE_AGENT_SANDBOXES, NULL, asb_pod_project, NULL, &n, NULL, &err) < 0) {
            log_warn("cannot list the Worker's agent-sandbox Sandboxes", "worker", x->w->name, "namespace",
                     x->w->namespace, "error", err.msg);
            return 0;
        }
        if (n) return 0;
        s->orphans_confirmed = 1;
        return 1;
    }
    obs_asbs *s = arena_calloc(x->a, sizeof *s);
    x->own[b->index] = s;
    x->o->of[b->index] = s;
    if (!asb_st(b)->watching) return 0;
    cJSON *sj = kube_informer_by_index(b->informers[0], x->key), *pj = kube_informer_by_index(b->informers[1], x->key);
    exec_hold(x, sj);
    exec_hold(x, pj);
    size_t ns = (size_t)cJSON_GetArraySize(sj), np = (size_t)cJSON_GetArraySize(pj);
    obs_asb *sbx = arena_calloc(x->a, (ns ? ns : 1) * sizeof *sbx);
    obs_asb_pod *pods = arena_calloc(x->a, (np ? np : 1) * sizeof *pods);
    const cJSON *it;
    cJSON_ArrayForEach(it, sj)
        if (!instance_of_other_worker(json_get(it, "metadata"), x->w->uid)) asb_observe_one(it, &sbx[s->nsandboxes++]);
    cJSON_ArrayForEach(it, pj)
        if (!instance_of_other_worker(json_get(it, "metadata"), x->w->uid)) asb_pod_observe(it, &pods[s->npods++]);
    s->sandboxes = sbx;
    s->pods = pods;
    return 0;
}

/* The env its Pod gets: as the pod backend's (credentials as secretKeyRefs). */
static void asb_env(backend *b, exec_ctx *x, env_list *env) { env_build(x->a, x->w, &b->host->envc, x->secret, 1, env); }

static void asb_render_op(backend *b, exec_ctx *x, char hash[17]) {
    env_list env;
    asb_env(b, x, &env);
    pod_spec_hash_as(x->a, x->w, &env, &b->host->names, ASB_BACKEND, hash);
}

static int asb_set_mode(backend *b, exec_ctx *x, const action *act, wc_err *err) {
    const char *patch = act->flag ? "{\"spec\":{\"operatingMode\":\"Suspended\"}}"
                                  : "{\"spec\":{\"operatingMode\":\"Running\"}}";
    int rc = kube_patch(b->host->kc, &KUBE_AGENT_SANDBOXES, x->w->namespace, act->name, NULL, KUBE_PATCH_MERGE, patch,
                        NULL, 0, 0, NULL, err);
    if (rc == 0)
        backend_record(b->host, x->w, "Normal", act->flag ? "Suspended" : "Resumed", act->flag ? "Suspend" : "Resume",
                       arena_sprintf(x->a, "%s Sandbox %s", act->flag ? "suspended" : "resumed", act->name));
    return rc;
}

static int asb_execute(backend *b, exec_ctx *x, const action *act, wc_err *err) {
    if (act->kind == ACT_DELETE_AGENT_SANDBOX) return backend_delete(b, x, &KUBE_AGENT_SANDBOXES, act, err);
    if (act->kind == ACT_DELETE_AGENT_SANDBOX_POD) return backend_delete(b, x, &KUBE_PODS, act, err);
    if (act->kind == ACT_SET_AGENT_SANDBOX_MODE) return asb_set_mode(b, x, act, err);
    assert(act->kind == ACT_CREATE_AGENT_SANDBOX);
    env_list env;
    asb_env(b, x, &env);
    buf body = BUF_INIT;
    asb_render(&body, x->a, x->w, &env, &b->host->names, x->hashes[b->index]);
    int rc = backend_create(b, x, &KUBE_AGENT_SANDBOXES, act->name, &body,
                            arena_sprintf(x->a, "created Sandbox %s (agents.x-k8s.io)", act->name),
                            "SandboxNameConflict", NULL, err);
    buf_free_secret(&body);
    return rc;
}

/* A Pod labelled for agent-sandbox: what ASB_POD_SELECTOR_EXTRA selects, for a Pod read by name. */
static int asb_pod_proj_is_instance(const cJSON *proj) {
    const char *label = json_str(json_get(json_get(proj, "metadata"), "labels"), LABEL_BACKEND);
    return label && strcmp(label, ASB_BACKEND) == 0;
}

/* The Sandbox, then its Pod (agent-sandbox names it like the Sandbox; no warm pool here), in the
 * API server — where agents.x-k8s.io is served at all. */
static size_t asb_live(backend *b, live_query *q) {
    if (!asb_st(b)->watching) return 0;
    q[0] = (live_query){.resource = &KUBE_AGENT_SANDBOXES, .by_name = 1, .project = asb_pod_project};
    q[1] = (live_query){.resource = &KUBE_PODS, .by_name = 1, .selector_extra = ASB_POD_SELECTOR_EXTRA,
                        .project = asb_pod_project, .is_instance = asb_pod_proj_is_instance};
    return 2;
}

static const backend_ops agent_sandbox_backend_ops = {.name = ASB_BACKEND, .setup = asb_setup,
                                                      .release = asb_release, .observe = asb_observe_op,
                                                      .render = asb_render_op, .execute = asb_execute,
                                                      .live = asb_live};
