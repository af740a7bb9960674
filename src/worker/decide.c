/*
 * decide.c — the reconcile decision as a pure function (SPEC section 3).
 *
 *     decide(Worker, observed instances of every backend, config) → ordered actions + status
 *
 * No I/O, no clock, no globals: everything it needs is in its arguments, so every row of the
 * status table and every branch of the backend switch guard is a unit test that runs in
 * microseconds. The reconciler shell gathers the observations (informer caches, a Secret read,
 * worker-deps metadata), calls decide(), executes the actions in order, and writes the status.
 *
 * What is the same for every backend lives here: deletion and the finalizer, unmanaged and
 * invalid Workers, a disabled backend's leftovers, and the backend switch guard. What an instance
 * of one backend is — its observations, its status table, the actions that make, replace,
 * pause or remove it — is that backend's policy (backend_policy), a set of pure functions each
 * backend module provides; decide() knows the backends only through the list in its config.
 *
 * Principles the code below and every policy follow:
 *   - Status comes from what is observed, never from the desired state alone.
 *   - Never delete on doubt: unknown or conflicting observations keep the instance and say so.
 *   - Never create while any instance of any backend exists (the switch guard's defense in
 *     depth): a create is decided only when the Worker owns no instance at all.
 *   - Deletes name the object's UID so they never hit a newer object of the same name.
 */

/* ---- decisions ---- */

/* What an action does. Each kind is declared by whoever executes it — the shell's own kinds
 * below, a backend's in its module — as a one-element array, so the name is the pointer that
 * decisions carry and tests compare. */
typedef struct action_type {
    const char *name;     /* lower-case, dash-separated: logs and failpoints ("after-<name>") */
    const char *backend;  /* the backend that executes it (its name); NULL: the reconcile shell */
    const char *creates;  /* the kind of instance it creates ("Pod"): the shell first confirms in the
                             API server that no instance of another backend exists; NULL: none */
    const char *does[2];  /* in plain words, before the object's name (explain): [0], or [1] when the
                             action's flag is set and [1] is given ("resume Sandbox" / "pause Sandbox") */
} action_type;

typedef const action_type *action_kind;

static const action_type ACT_ADD_FINALIZER[1] = {
    {.name = "add-finalizer",
     .does = {"add the finalizer hiclaw.io/cleanup to the Worker"}}};
static const action_type ACT_REMOVE_FINALIZER[1] = {
    {.name = "remove-finalizer",
     .does = {"remove the finalizer hiclaw.io/cleanup (the Worker then goes)"}}};
/* The Worker's ServiceAccount: every backend's instance runs as it, or holds a token for it. */
static const action_type ACT_ENSURE_SERVICEACCOUNT[1] = {
    {.name = "ensure-serviceaccount",
     .does = {"make sure the ServiceAccount exists:"}}};
static const action_type ACT_DELETE_SERVICEACCOUNT[1] = {
    {.name = "delete-serviceaccount",
     .does = {"delete the ServiceAccount"}}};
/* Fails while the API server (not the cache) still has an instance of any backend. */
static const action_type ACT_CONFIRM_INSTANCES_GONE[1] = {
    {.name = "confirm-instances-gone", .does = {"confirm in the API server that no instance of any backend is left"}}};

static const char *action_kind_name(action_kind k) { return k && k->name ? k->name : "unknown"; }


typedef struct action {
    action_kind kind;
    const char *name;           /* object acted on (deps actions: the worker-deps path) */
    const char *uid;            /* delete precondition */
    int flag;                   /* a kind's one parameter (pause: the value) */
} action;

/* What an action does in plain words (explain): its kind's phrase for the flag, else its name. */
static const char *action_does(const action *act) {
    const action_type *k = act->kind;
    if (k && act->flag && k->does[1]) return k->does[1];
    return k && k->does[0] ? k->does[0] : action_kind_name(k);
}

typedef struct decided_event {
    const char *type;           /* Normal, Warning */
    const char *reason;
    const char *note;
} decided_event;

typedef struct decided_cond {
    const char *status, *reason, *message;
} decided_cond;

#define DECIDE_MAX_ACTIONS 24
#define DECIDE_MAX_EVENTS 4
#define DECIDE_MAX_BACKENDS 4

typedef struct decision {
    action actions[DECIDE_MAX_ACTIONS];
    size_t nactions;
    decided_event events[DECIDE_MAX_EVENTS];
    size_t nevents;
    /* status to write (this controller's fields only) */
    worker_phase phase;          /* PHASE_NONE: keep the current phase */
    const char *backend;         /* status.backendRuntime; NULL = keep */
    worker_instance instance;    /* kind NULL: absent */
    const char *container_state;
    const char *message;
    decided_cond ready, synced;
    /* scheduling */
    int backoff;                 /* requeue with the per-key backoff (failed instance, claim timeout) */
    int64_t requeue_after_ms;    /* > 0: look again after this long (token refresh, waiting) */
    int done_deleting;           /* deletion complete: finalizer removed */
    int recheck;                 /* the acting backend asks to be observed again in the API server
                                    itself (not its cache), then for a new decision */
    int acting;                  /* the backend (its place in decide_config) whose policy decided; -1: none */
    const char *deps_path;       /* status.workerDepsPath to record; NULL = keep (the shell sets it after a write) */
    /* the acting backend replaces its instance: why (one of its policy's recreate_reasons), and
     * the UID of the instance going (the shell counts each replaced instance once) */
    const char *recreate, *recreate_uid;
} decision;

/* ---- observations and backends ---- */

typedef struct observed {
    /* each backend's own observations (its policy's type), by its place in decide_config.backends;
     * NULL: nothing of it observed */
    const void *of[DECIDE_MAX_BACKENDS];
    /* a recent instance failure: no new instance before this many ms (0: none pending) */
    int64_t recreate_backoff_ms;
    const char *last_failure;     /* what failed, for the status message while waiting */
    const char *last_failure_reason; /* its condition reason (PodFailed, ClaimFailed, SandboxFailed) */
} observed;

typedef struct decide_config decide_config;
typedef struct backend_policy backend_policy;

/* One backend as decide() sees it: pure functions over that backend's own observations (obs,
 * NULL when nothing was observed), its settings in cfg. */
struct backend_policy {
    const char *name;            /* spec/status.backendRuntime: "pod", "sandbox" */
    const char *noun;            /* its instances in a message: "Pod", "sandbox" */
    const char *an_instance;     /* "a Pod", "a sandbox instance": why a create of another backend is refused */
    int enabled;                 /* 0: its instances are left alone and none is made */
    const char *disabled_reason; /* the Synced reason while disabled ("SandboxDisabled") */
    const char *disabled_spec;   /* the message when a Worker asks for it while disabled */
    const void *cfg;             /* its own decision settings */
    /* Why it replaces an instance (decision.recreate), NULL-terminated: the bounded values of
     * hiclaw_worker_recreates_total{reason}, the same reasons its status and Events give. */
    const char *const *recreate_reasons;
    /* Instances observed (the switch guard). */
    size_t (*count)(const void *obs);
    /* Deletes every instance not already going; 1 while any is left. */
    int (*teardown)(const void *obs, decision *d);
    /* Actions and status for spec.state. hash: the spec hash the instance must carry; NULL:
     * describe the instance as it is, never recreate it. */
    void (*decide)(const backend_policy *p, arena *a, const worker *w, const observed *o, const void *obs,
                   const decide_config *c, const char *hash, decision *d);
    /* Optional: after the acting backend decided, what of this one goes whoever acts. */
    void (*settle)(const backend_policy *p, const worker *w, const void *obs, decision *d);
    /* Optional: Worker deletion, every instance gone: what else goes before the finalizer. */
    void (*deleted)(const backend_policy *p, arena *a, const worker *w, const void *obs, decision *d);
    /* Optional: a switch away from it is blocked; the actions of its as-is decision that still run. */
    void (*blocked)(const decision *as_is, decision *d);
    /* Why its instances are left alone while it is disabled (deleting: the finalizer stays). */
    const char *(*disabled_message)(const backend_policy *p, arena *a, const void *obs, int deleting);
};

/* What decide() needs of the configuration. */
struct decide_config {
    const char *prefix;                      /* HICLAW_RESOURCE_PREFIX */
    const backend_policy *const *backends;   /* every backend, the first one the default (pod) */
    size_t nbackends;
};

/* ---- helpers for every policy ---- */

static void decide_action(decision *d, action_kind k, const char *name, const char *uid, int flag) {
    assert(d->nactions < DECIDE_MAX_ACTIONS && k);
    d->actions[d->nactions].kind = k;
    d->actions[d->nactions].name = name;
    d->actions[d->nactions].uid = uid;
    d->actions[d->nactions].flag = flag;
    d->nactions++;
}

static void decide_event(decision *d, const char *type, const char *reason, const char *note) {
    if (d->nevents == DECIDE_MAX_EVENTS) return;
    d->events[d->nevents].type = type;
    d->events[d->nevents].reason = reason;
    d->events[d->nevents].note = note;
    d->nevents++;
}

/* The instance (uid) is deleted to be replaced, for `reason` (one of the policy's recreate_reasons). */
static void decide_recreate(decision *d, const char *reason, const char *uid) {
    d->recreate = reason;
    d->recreate_uid = uid;
}

static void set_ready(decision *d, const char *status, const char *reason, const char *message) {
    d->ready.status = status;
    d->ready.reason = reason;
    d->ready.message = message ? message : "";
}

static void set_synced(decision *d, const char *status, const char *reason, const char *message) {
    d->synced.status = status;
    d->synced.reason = reason;
    d->synced.message = message ? message : "";
}

/* A warning that should appear once per generation, not on every reconcile: it is new when
 * the Synced condition does not already carry this reason for this generation. */
static int first_time_this_generation(const worker *w, const char *reason) {
    return !(w->synced.present && w->synced.reason && strcmp(w->synced.reason, reason) == 0 &&
             w->synced.observed_generation == w->generation);
}

/* Synced=False with a reason, and a Warning Event the first time this generation. */
static void decide_warn(const worker *w, decision *d, const char *reason, const char *message) {
    set_synced(d, "False", reason, message);
    if (first_time_this_generation(w, reason)) decide_event(d, "Warning", reason, message);
}

/* The name of everything made for a Worker: its ServiceAccount and its instance. */
static const char *instance_name(arena *a, const worker *w, const decide_config *c) {
    return arena_sprintf(a, "%sworker-%s", c->prefix, w->name);
}

/* After a failed instance (Pod Failed, claim timed out, Sandbox Failed) the replacement waits
 * out a backoff: the Worker stays Failed, saying what failed and when it retries. */
static int decide_backing_off(arena *a, const observed *o, decision *d) {
    if (o->recreate_backoff_ms <= 0) return 0;
    d->phase = PHASE_FAILED;
    const char *why = o->last_failure && *o->last_failure ? o->last_failure : "instance failed";
    int64_t s = (o->recreate_backoff_ms + 999) / 1000;
    /* The failure said "…; recreating with backoff": now it says when ("…; recreating in 40 s"). */
    static const char tail[] = " with backoff";
    size_t n = strlen(why), t = sizeof tail - 1;
    if (n > t && strcmp(why + n - t, tail) == 0)
        d->message = arena_sprintf(a, "%.*s in %" PRId64 " s", (int)(n - t), why, s);
    else d->message = arena_sprintf(a, "%s; retrying in %" PRId64 " s", why, s);
    const char *reason = o->last_failure_reason && *o->last_failure_reason ? o->last_failure_reason : "BackOff";
    set_ready(d, "False", reason, d->message);
    set_synced(d, "False", reason, d->message); /* the last attempt failed; the retry is pending */
    d->requeue_after_ms = o->recreate_backoff_ms;
    return 1;
}

/* The reconcile failed before or while acting (an API error, a refused create): the status
 * keeps what was decided (or, with nothing decided, what the Worker already says) and Synced
 * says why — the status table's "API error: phase kept, Synced=False, retried". */
static void decide_failed(decision *d, const char *reason, const char *message) {
    d->message = message;
    set_synced(d, "False", reason, message);
}

/* No decision could be made (the Worker's Secret could not be read): everything as the Worker
 * already says, Synced=False. */
static void decide_unknown(const worker *w, const char *message, decision *d) {
    memset(d, 0, sizeof *d);
    d->acting = -1;
    set_ready(d, w->ready.status ? w->ready.status : "Unknown", w->ready.reason ? w->ready.reason : "Unknown",
              w->ready.message);
    d->container_state = w->container_state;
    d->instance = w->instance;
    decide_failed(d, "APIError", message);
}

/* ---- the backends, as the core sees them ---- */

static const void *decide_obs(const observed *o, size_t i) { return i < DECIDE_MAX_BACKENDS ? o->of[i] : NULL; }

static size_t decide_count(const decide_config *c, const observed *o, size_t i) {
    return c->backends[i]->count(decide_obs(o, i));
}

/* The backend of that name; the first (pod) for none or an unknown one — a Worker created before
 * its name was known ran as a Pod. */
static size_t decide_backend_named(const decide_config *c, const char *name) {
    for (size_t i = 0; name && i < c->nbackends; i++)
        if (strcmp(c->backends[i]->name, name) == 0) return i;
    return 0;
}

/* The status of an instance the controller leaves alone, as it is: the backend's own decision
 * for a Running Worker without a spec hash (so nothing reads "recreating" or "stopping"), its
 * actions dropped. Status must describe the instance that really exists (SPEC 3, 7). */
static void decide_as_is(arena *a, const worker *w, const observed *o, const decide_config *c, size_t b,
                         decision *inner) {
    worker running = *w;
    running.state = STATE_RUNNING;
    memset(inner, 0, sizeof *inner);
    inner->acting = (int)b;
    c->backends[b]->decide(c->backends[b], a, &running, o, decide_obs(o, b), c, NULL, inner);
}

/* Names the instance that exists (status.instance, containerState) in a decision whose branch
 * leaves instances alone: the first backend's that has one. Nothing when none exists. */
static void describe_existing(arena *a, const worker *w, const observed *o, const decide_config *c, decision *d) {
    for (size_t i = 0; i < c->nbackends; i++) {
        if (!decide_count(c, o, i)) continue;
        decision inner;
        decide_as_is(a, w, o, c, i, &inner);
        d->instance = inner.instance;
        d->container_state = inner.container_state;
        return;
    }
}

/* "Pod and sandbox": the nouns of the backends that have instances. */
static const char *decide_nouns_with_instances(arena *a, const decide_config *c, const observed *o) {
    const char *out = "";
    size_t n = 0, total = 0;
    for (size_t i = 0; i < c->nbackends; i++) total += decide_count(c, o, i) > 0;
    for (size_t i = 0; i < c->nbackends; i++) {
        if (!decide_count(c, o, i)) continue;
        n++;
        out = arena_sprintf(a, "%s%s%s", out, n == 1 ? "" : n == total ? " and " : ", ", c->backends[i]->noun);
    }
    return out;
}

/* ---- 1–2. Deletion ---- */

/* Everything of every backend goes, then what the backends keep beside their instances, the
 * ServiceAccount, and the finalizer — which stays while any instance is still observed. An
 * agent holding credentials is never orphaned: a disabled backend's instances cannot be removed
 * here, so the finalizer waits for a human. */
static void decide_deletion(arena *a, const worker *w, const observed *o, const decide_config *c, decision *d) {
    int pending = 0, others = 0;
    const backend_policy *stuck = NULL;
    const void *stuck_obs = NULL;
    for (size_t i = 0; i < c->nbackends; i++) {
        const backend_policy *p = c->backends[i];
        size_t n = decide_count(c, o, i);
        if (!p->enabled && n) {
            if (!stuck) stuck = p, stuck_obs = decide_obs(o, i);
            pending = 1;
            continue;
        }
        others |= n > 0;
        pending |= p->teardown(decide_obs(o, i), d);
    }
    d->phase = PHASE_STOPPING;
    d->message = "Worker is being deleted: its instances go first; the finalizer hiclaw.io/cleanup is removed once "
                 "the API server has none left";
    set_ready(d, "False", "Deleting", d->message);
    if (stuck) {
        d->message = stuck->disabled_message(stuck, a, stuck_obs, 1);
        decide_warn(w, d, stuck->disabled_reason, d->message);
    }
    if (!pending && w->has_finalizer) {
        /* The cache says everything is gone; the API server must agree before anything of
         * the cleanup runs (a lagging cache must not cost an agent its credentials, nor the
         * Worker its finalizer while an instance lives). */
        decide_action(d, ACT_CONFIRM_INSTANCES_GONE, NULL, NULL, 0);
        for (size_t i = 0; i < c->nbackends; i++)
            if (c->backends[i]->deleted) c->backends[i]->deleted(c->backends[i], a, w, decide_obs(o, i), d);
        decide_action(d, ACT_DELETE_SERVICEACCOUNT, instance_name(a, w, c), NULL, 0);
        decide_action(d, ACT_REMOVE_FINALIZER, NULL, NULL, 0);
        d->done_deleting = 1;
    } else if (pending) {
        /* deletes in flight: look again even without events; a sandbox left for a human
         * only needs an occasional look (its removal is an event anyway) */
        d->requeue_after_ms = stuck && !others ? 60000 : 2000;
    }
}

/* ---- 3. Instances left alone ---- */

/* Not ours to run, or a spec the controller cannot act on: touch nothing, say why, and still
 * name an instance left from before. Returns 1 when the decision is made. */
static int decide_hands_off(arena *a, const worker *w, const observed *o, const decide_config *c, decision *d) {
    if (!w->container_managed) {
        d->phase = w->state == STATE_RUNNING ? PHASE_RUNNING : w->state == STATE_SLEEPING ? PHASE_SLEEPING : PHASE_STOPPED;
        d->message = "spec.containerManaged is false: the runtime is managed outside the cluster";
        set_ready(d, "Unknown", "Unmanaged", d->message);
        d->backend = NULL;
        describe_existing(a, w, o, c, d);
        return 1;
    }
    if (w->invalid) {
        d->phase = PHASE_NONE;
        d->message = w->invalid;
        decide_warn(w, d, "InvalidSpec", w->invalid);
        set_ready(d, w->ready.present && w->ready.status ? w->ready.status : "False", "InvalidSpec", w->invalid);
        describe_existing(a, w, o, c, d);
        return 1;
    }
    /* A disabled backend's instances: left (and the Worker with them) alone whatever the spec
     * says — nothing beside them, no teardown — and said why. */
    for (size_t i = 0; i < c->nbackends; i++) {
        const backend_policy *p = c->backends[i];
        if (p->enabled || !decide_count(c, o, i)) continue;
        decision inner;
        decide_as_is(a, w, o, c, i, &inner);
        d->phase = inner.phase;
        d->backend = p->name;
        d->instance = inner.instance;
        d->container_state = inner.container_state;
        d->ready = inner.ready;
        d->message = p->disabled_message(p, a, decide_obs(o, i), 0);
        decide_warn(w, d, p->disabled_reason, d->message);
        return 1;
    }
    return 0;
}

/* ---- 4. The backend switch guard ---- */

/* The applied backend A cannot change while an instance of it exists and the Worker is not
 * Stopped: the instance is left alone and keeps being reported as it is — whatever spec.state
 * says (it keeps running until Stopped), and without a spec hash (it is not going to be
 * recreated, so a hash mismatch — a legacy Pod has none — must not make a running, ready
 * instance read "Pending, recreating"). */
static void decide_switch_blocked(arena *a, const worker *w, const observed *o, const decide_config *c,
                                  size_t applied, size_t desired, decision *d) {
    const char *msg = arena_sprintf(a, "spec.backendRuntime cannot change from %s to %s until the Worker is Stopped",
                                    c->backends[applied]->name, c->backends[desired]->name);
    decision inner;
    decide_as_is(a, w, o, c, applied, &inner);
    d->phase = inner.phase;
    d->backend = c->backends[applied]->name;
    d->instance = inner.instance;
    d->container_state = inner.container_state;
    d->ready = inner.ready;
    d->message = msg;
    decide_warn(w, d, "BackendSwitchBlocked", msg);
    if (c->backends[applied]->blocked) c->backends[applied]->blocked(&inner, d);
    d->requeue_after_ms = inner.requeue_after_ms;
}

/* Which backend acts, or -1 when the guard decided already. Applied A: the backend that has
 * instances, else the one status recorded, else the first (legacy Workers have no
 * status.backendRuntime). Desired D: spec.backendRuntime. */
static int decide_guard(arena *a, const worker *w, const observed *o, const decide_config *c, decision *d) {
    size_t with = 0, first = c->nbackends;
    for (size_t i = 0; i < c->nbackends; i++)
        if (decide_count(c, o, i)) with++, first = first < i ? first : i;
    size_t applied = with ? first : decide_backend_named(c, w->status_backend);
    size_t desired = decide_backend_named(c, w->backend);
    const backend_policy *dp = c->backends[desired];
    if (!dp->enabled && !with) { /* (a disabled backend's own instances were handled above) */
        d->phase = w->state == STATE_RUNNING ? PHASE_PENDING : w->state == STATE_SLEEPING ? PHASE_SLEEPING : PHASE_STOPPED;
        d->message = dp->disabled_spec;
        decide_warn(w, d, dp->disabled_reason, dp->disabled_spec);
        set_ready(d, "False", dp->disabled_reason, dp->disabled_spec);
        return -1;
    }
    if (with > 1 && w->state != STATE_STOPPED) {
        /* Several backends have instances: something else created one. Touch none. */
        const char *msg = arena_sprintf(a, "instances of %s backends (%s) exist for this Worker; set state Stopped to "
                                           "clean up", with == 2 ? "both" : "several", decide_nouns_with_instances(a, c, o));
        d->phase = PHASE_NONE;
        d->message = msg;
        decide_warn(w, d, "BackendSwitchBlocked", msg);
        set_ready(d, "False", "BackendSwitchBlocked", msg);
        describe_existing(a, w, o, c, d);
        return -1;
    }
    if (with > 1) { /* Stopped: remove everything, of every backend */
        for (size_t i = 0; i < c->nbackends; i++) c->backends[i]->teardown(decide_obs(o, i), d);
        d->phase = PHASE_STOPPING;
        d->message = with == 2 ? "removing the instances of both backends" : "removing the instances of every backend";
        set_ready(d, "False", "Stopping", d->message);
        return -1;
    }
    if (desired == applied || !with) return (int)desired;
    if (w->state != STATE_STOPPED) {
        decide_switch_blocked(a, w, o, c, applied, desired, d);
        return -1;
    }
    return (int)applied; /* Stopped: tear down A; once gone, D takes over */
}

/* Reserved or malformed spec.env keys are ignored; say which, once per generation (the first
 * reconcile of a generation is the one that has not yet recorded it as observed). */
static void decide_ignored_env(arena *a, const worker *w, decision *d) {
    if (w->observed_generation == w->generation) return;
    buf names = BUF_INIT;
    for (size_t i = 0; i < w->env.n; i++) {
        const char *k = w->env.items[i].key;
        if (!env_key_ok(k) || env_reserved(k)) buf_printf(&names, "%s%s", names.len ? ", " : "", k);
    }
    if (names.len)
        decide_event(d, "Warning", "ReservedEnvIgnored",
                     arena_sprintf(a, "spec.env keys ignored (set by the system, or not valid variable names): %s",
                                   buf_cstr(&names)));
    buf_free(&names);
}

/* ---- the whole decision ---- */

/* hashes[i]: the spec hash an instance of backend i must carry. */
static void decide(arena *a, const worker *w, const observed *o, const decide_config *c, const char *const *hashes,
                   decision *d) {
    assert(c->nbackends >= 1 && c->nbackends <= DECIDE_MAX_BACKENDS);
    memset(d, 0, sizeof *d);
    d->acting = -1;
    set_synced(d, "True", "Reconciled", "");
    if (w->deleting) {
        decide_deletion(a, w, o, c, d);
        return;
    }
    if (!w->has_finalizer) decide_action(d, ACT_ADD_FINALIZER, NULL, NULL, 0);
    if (decide_hands_off(a, w, o, c, d)) return;
    int acting = decide_guard(a, w, o, c, d);
    if (acting < 0) return;
    decide_ignored_env(a, w, d);
    const backend_policy *p = c->backends[acting];
    d->acting = acting;
    p->decide(p, a, w, o, decide_obs(o, (size_t)acting), c, hashes[acting], d);
    int any = 0;
    for (size_t i = 0; i < c->nbackends; i++) {
        any |= decide_count(c, o, i) > 0;
        if (c->backends[i]->settle) c->backends[i]->settle(c->backends[i], w, decide_obs(o, i), d);
    }
    if (!any && d->phase != PHASE_PENDING) d->backend = w->status_backend && *w->status_backend ? w->status_backend : NULL;
}
