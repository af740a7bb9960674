/*
 * decide.c — the reconcile decision as a pure function (SPEC section 3).
 *
 *     decide(Worker, observed instances of both backends, config) → ordered actions + status
 *
 * No I/O, no clock, no globals: everything it needs is in its arguments, so every row of the
 * status table and every branch of the backend switch guard is a unit test that runs in
 * microseconds. The reconciler shell gathers the observations (informer caches, a Secret read,
 * worker-deps metadata), calls decide(), executes the actions in order, and writes the status.
 *
 * Principles the code below follows:
 *   - Status comes from what is observed, never from the desired state alone.
 *   - Never delete on doubt: unknown or conflicting observations keep the instance and say so.
 *   - Never create while any instance of either backend exists (the switch guard's defense in
 *     depth): a create is decided only when the Worker owns no Pod, claim or Sandbox at all.
 *   - Deletes name the object's UID so they never hit a newer object of the same name.
 */

/* ---- observations ---- */

typedef struct obs_pod {
    const char *name, *uid;
    int deleting;
    const char *phase;            /* Pending, Running, Succeeded, Failed, Unknown */
    int ready;                    /* Ready condition True */
    const char *waiting_reason;   /* container "worker" state.waiting.reason */
    const char *waiting_message;
    const char *terminated_reason;
    const char *spec_hash;        /* annotation hiclaw.io/spec-hash */
    const char *pod_ip;
    int is_instance;              /* a pod-backend instance (not a sandbox's own Pod); the shell keeps only these */
} obs_pod;

typedef struct obs_claim {
    const char *name, *uid;
    int deleting;
    const char *phase;            /* "", Claiming, Completed */
    int64_t replicas, claimed;
    const char *message;
    const char *spec_hash;
    const char *deps_path;        /* the worker-deps dir its dynamicVolumesMount sub-paths name */
} obs_claim;

typedef struct obs_sandbox {
    const char *name, *uid;
    int deleting;
    const char *phase;            /* Pending, Running, Paused, Resuming, Upgrading, Failed, Succeeded, Terminating */
    int ready_known, ready;       /* Ready condition present / True */
    const char *ready_reason;     /* InplaceUpdating while OpenKruise updates the image in place */
    const char *ready_message;
    int paused;                   /* spec.paused */
    const char *claim_name;       /* label agents.kruise.io/claim-name */
    const char *spec_hash;        /* label hiclaw.io/spec-hash (carried from the claim) */
    const char *pod_ip;
} obs_sandbox;

typedef struct observed {
    const obs_pod *pods;
    size_t npods;
    const obs_claim *claims;
    size_t nclaims;
    const obs_sandbox *sandboxes;
    size_t nsandboxes;
    /* sandbox worker-deps, from object storage metadata (HEADs by the shell, never a read of a
     * credential); meaningful for Workers of the sandbox backend, or that were */
    const char *deps_path;        /* where the Worker's objects belong now: <prefix>workers-deps/<ns>/<workerName>/ */
    const char *mounted_deps_path;/* where its live claim mounts them from (NULL: no claim) */
    int deps_observed;            /* the fields below were read (a storage error leaves them unknown) */
    int token_present;            /* token/token exists (assumed on a storage error) */
    int64_t token_refresh_in_ms;  /* <= 0: refresh now; only when token_present */
    int deps_present;             /* env/env exists */
    const char *deps_hash;        /* its recorded content hash ("": written by a version that kept none) */
    const char *want_deps_hash;   /* the hash of the env file the Worker should have (computed by the shell) */
    const char *deps_conflict;    /* non-NULL: an object there belongs to another Worker — who, and what to do */
    /* The API server (a live list, not the cache) holds no Sandbox for the Worker: set by the
     * shell when a decision asked for it (decision.confirm_sandbox_lost). */
    int sandbox_lost_confirmed;
    /* a recent instance failure: no new instance before this many ms (0: none pending) */
    int64_t recreate_backoff_ms;
    const char *last_failure;     /* what failed, for the status message while waiting */
    const char *last_failure_reason; /* its condition reason (PodFailed, ClaimFailed, SandboxFailed) */
} observed;

/* What decide() needs of the configuration. */
typedef struct decide_config {
    const char *prefix;           /* HICLAW_RESOURCE_PREFIX */
    int sandbox_enabled;
    int sandbox_pause;            /* HICLAW_SANDBOX_PAUSE */
    int deps_storage;             /* worker-deps storage usable (always with sandbox; else when configured) */
} decide_config;

/* ---- decisions ---- */

typedef enum action_kind {
    ACT_ADD_FINALIZER,
    ACT_REMOVE_FINALIZER,
    ACT_ENSURE_SERVICEACCOUNT,
    ACT_DELETE_SERVICEACCOUNT,
    ACT_CREATE_POD,
    ACT_DELETE_POD,
    ACT_WRITE_DEPS,             /* env file + token + data marker, each verified */
    ACT_REFRESH_TOKEN,          /* token only, the sandbox untouched */
    ACT_CREATE_CLAIM,
    ACT_DELETE_CLAIM,
    ACT_DELETE_SANDBOX,
    ACT_SET_SANDBOX_PAUSED,
    ACT_DELETE_DEPS_TOKEN,
    ACT_DELETE_DEPS_ALL,        /* token, env, data: Worker deletion */
    ACT_CONFIRM_INSTANCES_GONE, /* fails while the API server (not the cache) still has an instance */
    ACT_WRITE_ENV,              /* env/env only (lost or changed), the sandbox untouched */
    ACT_DELETE_DEPS_MOVED,      /* token, env, data marker at a path the Worker no longer uses */
    ACT_KIND_COUNT
} action_kind;

/* The action's name in logs and failpoints ("after-<name>"): lower-case, dash-separated. */
static const char *action_kind_name(action_kind k) {
    static const char *const names[] = {
        [ACT_ADD_FINALIZER] = "add-finalizer",         [ACT_REMOVE_FINALIZER] = "remove-finalizer",
        [ACT_ENSURE_SERVICEACCOUNT] = "ensure-serviceaccount", [ACT_DELETE_SERVICEACCOUNT] = "delete-serviceaccount",
        [ACT_CREATE_POD] = "create-pod",               [ACT_DELETE_POD] = "delete-pod",
        [ACT_WRITE_DEPS] = "write-deps",               [ACT_REFRESH_TOKEN] = "refresh-token",
        [ACT_CREATE_CLAIM] = "create-claim",           [ACT_DELETE_CLAIM] = "delete-claim",
        [ACT_DELETE_SANDBOX] = "delete-sandbox",       [ACT_SET_SANDBOX_PAUSED] = "set-sandbox-paused",
        [ACT_DELETE_DEPS_TOKEN] = "delete-deps-token", [ACT_DELETE_DEPS_ALL] = "delete-deps-all",
        [ACT_CONFIRM_INSTANCES_GONE] = "confirm-instances-gone",
        [ACT_WRITE_ENV] = "write-env",                 [ACT_DELETE_DEPS_MOVED] = "delete-deps-moved",
    };
    return (unsigned)k < sizeof names / sizeof names[0] && names[k] ? names[k] : "unknown";
}

typedef struct action {
    action_kind kind;
    const char *name;           /* object acted on (deps actions: the worker-deps path) */
    const char *uid;            /* delete precondition */
    int flag;                   /* ACT_SET_SANDBOX_PAUSED: the value */
} action;

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
    int confirm_sandbox_lost;    /* ask the API server whether the claim's Sandbox exists, then decide again */
    const char *deps_path;       /* status.workerDepsPath to record; NULL = keep (the shell sets it after a write) */
} decision;

static void decide_action(decision *d, action_kind k, const char *name, const char *uid, int flag) {
    assert(d->nactions < DECIDE_MAX_ACTIONS);
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

static const char *instance_name(arena *a, const worker *w, const decide_config *c) {
    return arena_sprintf(a, "%sworker-%s", c->prefix, w->name);
}

/* Container waiting reasons that mean "this will not start by itself". */
static int waiting_is_failure(const char *reason) {
    static const char *bad[] = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
                                "InvalidImageName", "CreateContainerError"};
    for (size_t i = 0; reason && i < sizeof bad / sizeof *bad; i++)
        if (strcmp(reason, bad[i]) == 0) return 1;
    return 0;
}

/* After a failed instance (Pod Failed, claim timed out, Sandbox Failed) the replacement waits
 * out a backoff: the Worker stays Failed, saying what failed and when it retries. */
static int decide_backing_off(arena *a, const observed *o, decision *d) {
    if (o->recreate_backoff_ms <= 0) return 0;
    d->phase = PHASE_FAILED;
    d->message = arena_sprintf(a, "%s; retrying in %" PRId64 " s", o->last_failure && *o->last_failure ? o->last_failure : "instance failed",
                               (o->recreate_backoff_ms + 999) / 1000);
    const char *reason = o->last_failure_reason && *o->last_failure_reason ? o->last_failure_reason : "BackOff";
    set_ready(d, "False", reason, d->message);
    set_synced(d, "False", reason, d->message); /* the last attempt failed; the retry is pending */
    d->requeue_after_ms = o->recreate_backoff_ms;
    return 1;
}

/* ---- worker-deps ---- */

/* The path the Worker's running (or last) sandbox mounts: its live claim's sub-paths say it
 * (the object the sandbox really mounts from, not a status the cache may show before the last
 * write of it), else the one recorded when the deps were last written, else where they belong
 * now. Refreshes, rewrites and the Stopped cleanup act there. */
static const char *deps_live_path(const worker *w, const observed *o) {
    if (o->mounted_deps_path && *o->mounted_deps_path) return o->mounted_deps_path;
    return w->status_deps_path && *w->status_deps_path ? w->status_deps_path : o->deps_path;
}

/* Another Worker owns objects at this Worker's worker-deps path: nothing is written or deleted
 * there and no claim is made (SPEC 7); say who, once per generation as a Warning. */
static void decide_deps_conflict(const worker *w, const observed *o, decision *d) {
    d->message = o->deps_conflict;
    set_synced(d, "False", "WorkerDepsConflict", o->deps_conflict);
    if (first_time_this_generation(w, "WorkerDepsConflict"))
        decide_event(d, "Warning", "WorkerDepsConflict", o->deps_conflict);
}

/* ---- pod backend ---- */

static void decide_pod(arena *a, const worker *w, const observed *o, const decide_config *c, const char *hash,
                       decision *d) {
    const char *want = instance_name(a, w, c);
    const obs_pod *pod = NULL;
    /* Pods carrying our labels under another name (a changed prefix) are ours but stale. */
    for (size_t i = 0; i < o->npods; i++) {
        if (strcmp(o->pods[i].name, want) == 0) pod = &o->pods[i];
        else if (!o->pods[i].deleting) decide_action(d, ACT_DELETE_POD, o->pods[i].name, o->pods[i].uid, 0);
    }
    d->backend = "pod";

    if (w->state != STATE_RUNNING) {
        worker_phase rest = w->state == STATE_SLEEPING ? PHASE_SLEEPING : PHASE_STOPPED;
        if (pod) {
            if (!pod->deleting) decide_action(d, ACT_DELETE_POD, pod->name, pod->uid, 0);
            d->phase = PHASE_STOPPING;
            d->container_state = pod->phase;
            d->message = arena_sprintf(a, "deleting Pod %s (state %s)", pod->name, state_name(w->state));
            d->instance = (worker_instance){"Pod", pod->name, NULL, pod->pod_ip};
            set_ready(d, "False", "Stopping", d->message);
        } else {
            d->phase = o->npods ? PHASE_STOPPING : rest;
            d->message = "";
            set_ready(d, "False", phase_name(d->phase), "");
        }
        return;
    }

    if (!pod) {
        if (o->npods) { /* only stale pods: wait for them to go before creating */
            d->phase = PHASE_PENDING;
            d->message = "waiting for old Pods to terminate";
            set_ready(d, "False", "Pending", d->message);
            d->requeue_after_ms = 1000;
            return;
        }
        if (decide_backing_off(a, o, d)) return;
        decide_action(d, ACT_ENSURE_SERVICEACCOUNT, want, NULL, 0);
        decide_action(d, ACT_CREATE_POD, want, NULL, 0);
        d->phase = PHASE_PENDING;
        d->message = arena_sprintf(a, "creating Pod %s", want);
        set_ready(d, "False", "Pending", d->message);
        return;
    }
    d->instance = (worker_instance){"Pod", pod->name, NULL, pod->pod_ip};
    d->container_state = pod->waiting_reason ? pod->waiting_reason : pod->phase;
    if (pod->deleting) {
        d->phase = PHASE_PENDING;
        d->message = arena_sprintf(a, "waiting for Pod %s to terminate before recreating it", pod->name);
        set_ready(d, "False", "Pending", d->message);
        return;
    }
    /* hash NULL: the caller only wants the Pod's status (switch guard), not a recreate. */
    if (hash && (!pod->spec_hash || strcmp(pod->spec_hash, hash) != 0)) {
        decide_action(d, ACT_DELETE_POD, pod->name, pod->uid, 0);
        d->phase = PHASE_PENDING;
        d->message = arena_sprintf(a, "spec changed: recreating Pod %s", pod->name);
        set_ready(d, "False", "Recreating", d->message);
        decide_event(d, "Normal", "Recreating", d->message);
        return;
    }
    const char *phase = pod->phase ? pod->phase : "";
    if (strcmp(phase, "Failed") == 0 || strcmp(phase, "Succeeded") == 0) {
        decide_action(d, ACT_DELETE_POD, pod->name, pod->uid, 0);
        d->phase = PHASE_FAILED;
        d->message = arena_sprintf(a, "Pod %s %s%s%s; recreating with backoff", pod->name,
                                   strcmp(phase, "Failed") == 0 ? "failed" : "exited",
                                   pod->terminated_reason ? ": " : "", pod->terminated_reason ? pod->terminated_reason : "");
        set_ready(d, "False", "PodFailed", d->message);
        decide_event(d, "Warning", "PodFailed", d->message);
        d->backoff = 1;
        return;
    }
    if (waiting_is_failure(pod->waiting_reason)) {
        d->phase = PHASE_FAILED;
        d->message = arena_sprintf(a, "%s: %s", pod->waiting_reason, pod->waiting_message ? pod->waiting_message : "");
        set_ready(d, "False", pod->waiting_reason, d->message);
        return;
    }
    if (strcmp(phase, "Running") == 0 && pod->ready) {
        d->phase = PHASE_RUNNING;
        d->message = "";
        set_ready(d, "True", "Running", "");
        return;
    }
    d->phase = PHASE_STARTING;
    d->message = pod->waiting_reason ? arena_sprintf(a, "Pod %s: %s", phase, pod->waiting_reason)
                                     : arena_sprintf(a, "Pod %s", phase[0] ? phase : "Pending");
    set_ready(d, "False", "Starting", d->message);
}

/* ---- sandbox backend ---- */

static const obs_sandbox *live_sandbox(const observed *o) {
    for (size_t i = 0; i < o->nsandboxes; i++)
        if (!o->sandboxes[i].deleting) return &o->sandboxes[i];
    return o->nsandboxes ? &o->sandboxes[0] : NULL;
}

/* Deletes claims, then Sandboxes; the token object only once both are gone (next pass). */
static int sandbox_teardown(decision *d, const observed *o) {
    int pending = 0;
    for (size_t i = 0; i < o->nclaims; i++) {
        pending = 1;
        if (!o->claims[i].deleting) decide_action(d, ACT_DELETE_CLAIM, o->claims[i].name, o->claims[i].uid, 0);
    }
    for (size_t i = 0; i < o->nsandboxes; i++) {
        pending = 1;
        if (!o->sandboxes[i].deleting) decide_action(d, ACT_DELETE_SANDBOX, o->sandboxes[i].name, o->sandboxes[i].uid, 0);
    }
    return pending;
}

static void decide_sandbox(arena *a, const worker *w, const observed *o, const decide_config *c, const char *hash,
                           decision *d) {
    const char *claim_name = instance_name(a, w, c);
    const obs_claim *claim = o->nclaims ? &o->claims[0] : NULL;
    for (size_t i = 0; i < o->nclaims; i++)
        if (strcmp(o->claims[i].name, claim_name) == 0) claim = &o->claims[i];
    const obs_sandbox *sbx = live_sandbox(o);
    d->backend = "sandbox";
    if (sbx) d->instance = (worker_instance){"Sandbox", sbx->name, claim ? claim->name : sbx->claim_name, sbx->pod_ip};
    else if (claim) d->instance = (worker_instance){"Sandbox", NULL, claim->name, NULL};

    size_t live = 0;
    for (size_t i = 0; i < o->nsandboxes; i++) live += !o->sandboxes[i].deleting;
    if (live > 1) {
        /* Which one is the Worker? Guessing could delete the wrong agent's state: stop, say so. */
        d->phase = PHASE_NONE;
        d->message = arena_sprintf(a, "%zu Sandboxes are labelled for this Worker; remove the extra ones by hand", live);
        set_synced(d, "False", "MultipleSandboxes", d->message);
        set_ready(d, "False", "MultipleSandboxes", d->message);
        if (first_time_this_generation(w, "MultipleSandboxes")) decide_event(d, "Warning", "MultipleSandboxes", d->message);
        return;
    }

    if (w->state == STATE_STOPPED || (w->state == STATE_SLEEPING && !c->sandbox_pause)) {
        worker_phase rest = w->state == STATE_SLEEPING ? PHASE_SLEEPING : PHASE_STOPPED;
        if (sandbox_teardown(d, o)) {
            d->phase = PHASE_STOPPING;
            d->container_state = sbx ? sbx->phase : claim ? claim->phase : NULL;
            d->message = arena_sprintf(a, "removing claim and Sandbox (state %s)", state_name(w->state));
            set_ready(d, "False", "Stopping", d->message);
            return;
        }
        d->phase = rest; /* (a Stopped Worker's token object: see decide()) */
        d->instance = (worker_instance){0};
        d->message = "";
        set_ready(d, "False", phase_name(rest), "");
        return;
    }

    if (w->state == STATE_SLEEPING) { /* pause on */
        if (!sbx) {
            if (claim && !claim->deleting) { /* nothing to pause yet: the claim is still binding */
                d->phase = PHASE_STARTING;
                d->message = "waiting for the claim to bind before pausing";
                set_ready(d, "False", "Starting", d->message);
                return;
            }
            d->phase = PHASE_SLEEPING;
            d->message = "";
            set_ready(d, "False", "Sleeping", "");
            return;
        }
        d->container_state = sbx->phase;
        if (!sbx->paused) decide_action(d, ACT_SET_SANDBOX_PAUSED, sbx->name, sbx->uid, 1);
        if (sbx->phase && strcmp(sbx->phase, "Paused") == 0) {
            d->phase = PHASE_SLEEPING;
            d->message = "";
            set_ready(d, "False", "Sleeping", "");
        } else {
            d->phase = PHASE_STOPPING;
            d->message = arena_sprintf(a, "pausing Sandbox %s", sbx->name);
            set_ready(d, "False", "Stopping", d->message);
        }
        return;
    }

    /* state Running */
    if (!claim && !sbx) {
        if (decide_backing_off(a, o, d)) return;
        if (o->deps_conflict) {
            d->phase = PHASE_FAILED;
            decide_deps_conflict(w, o, d);
            set_ready(d, "False", "WorkerDepsConflict", d->message);
            return;
        }
        /* The deps move (workerName, prefix or key layout changed): the old token and env file
         * are credentials nobody mounts any more, and the old data marker would be forgotten
         * (a deletion later only knows the paths in use) — all three removed (this Worker's own
         * only) first. Files the agent wrote under data/ are never the controller's: untouched. */
        const char *rec = w->status_deps_path;
        if (rec && *rec && o->deps_path && *o->deps_path && strcmp(rec, o->deps_path) != 0)
            decide_action(d, ACT_DELETE_DEPS_MOVED, rec, NULL, 0);
        decide_action(d, ACT_ENSURE_SERVICEACCOUNT, claim_name, NULL, 0);
        decide_action(d, ACT_WRITE_DEPS, o->deps_path, NULL, 0);
        decide_action(d, ACT_CREATE_CLAIM, claim_name, NULL, 0);
        d->phase = PHASE_PENDING;
        d->message = arena_sprintf(a, "writing worker-deps and claiming a sandbox (%s)", claim_name);
        set_ready(d, "False", "Pending", d->message);
        return;
    }
    if ((claim && claim->deleting) || (sbx && sbx->deleting) || (sbx && sbx->phase && strcmp(sbx->phase, "Terminating") == 0)) {
        d->phase = PHASE_STOPPING;
        d->container_state = sbx ? sbx->phase : "Terminating";
        d->message = "waiting for the previous claim or Sandbox to go away";
        set_ready(d, "False", "Stopping", d->message);
        return;
    }
    const char *have_hash = claim ? claim->spec_hash : sbx->spec_hash;
    if (hash && (!have_hash || strcmp(have_hash, hash) != 0)) { /* hash NULL: status only */
        sandbox_teardown(d, o);
        d->phase = PHASE_PENDING;
        d->message = "spec changed: replacing claim and Sandbox";
        set_ready(d, "False", "Recreating", d->message);
        decide_event(d, "Normal", "Recreating", d->message);
        return;
    }
    if (o->deps_conflict) {
        decide_deps_conflict(w, o, d); /* the instance's status below; no refresh, no rewrite */
    } else {
        const char *mounted = deps_live_path(w, o);
        if (o->token_present && o->token_refresh_in_ms <= 0) decide_action(d, ACT_REFRESH_TOKEN, mounted, NULL, 0);
        else if (o->token_present) d->requeue_after_ms = o->token_refresh_in_ms;
        else decide_action(d, ACT_REFRESH_TOKEN, mounted, NULL, 0); /* lost token object: write it again */
        /* A lost env file, or one whose content is not the Worker's (edited, or written by a
         * version that recorded no hash): written again in place. The sandbox stays — any env
         * change the Worker itself makes already changes its spec hash and replaces it. */
        if (o->deps_observed && o->want_deps_hash &&
            (!o->deps_present || !o->deps_hash || strcmp(o->deps_hash, o->want_deps_hash) != 0))
            decide_action(d, ACT_WRITE_ENV, mounted, NULL, 0);
    }

    if (claim && !sbx) {
        const char *cp = claim->phase ? claim->phase : "";
        d->container_state = cp[0] ? cp : "Claiming";
        if (strcmp(cp, "Completed") == 0 && claim->claimed < (claim->replicas ? claim->replicas : 1)) {
            d->phase = PHASE_FAILED;
            d->message = arena_sprintf(a, "claim %s failed: %s; retrying with backoff", claim->name,
                                       claim->message && *claim->message ? claim->message : "no sandbox was claimed");
            set_ready(d, "False", "ClaimFailed", d->message);
            set_synced(d, "False", "ClaimFailed", d->message);
            decide_event(d, "Warning", "ClaimFailed", d->message);
            decide_action(d, ACT_DELETE_CLAIM, claim->name, claim->uid, 0);
            d->backoff = 1;
            return;
        }
        if (strcmp(cp, "Completed") == 0) {
            /* Every replica claimed, yet no Sandbox: deleted outside the controller, or lost with
             * its node. The claim is kept forever (ttlAfterCompleted -1s) and will not re-claim,
             * so it must be replaced — as a vanished Pod is. But the claim and Sandbox watches are
             * separate: right after a claim completes, the Sandbox cache may simply be behind.
             * Deleting on that would throw a fresh sandbox away, so the loss is confirmed against
             * the API server first (a live list of the Worker's Sandboxes, by the shell), rather
             * than waited out: the list is authoritative because OpenKruise labels the Sandbox
             * before it counts it in claimedReplicas. */
            if (!o->sandbox_lost_confirmed) {
                d->confirm_sandbox_lost = 1;
                d->phase = PHASE_STARTING;
                d->message = arena_sprintf(a, "claim %s completed; waiting for its Sandbox", claim->name);
                set_ready(d, "False", "Starting", d->message);
                d->requeue_after_ms = 2000;
                return;
            }
            d->phase = PHASE_FAILED;
            d->message = arena_sprintf(a, "the Sandbox of claim %s is gone (deleted outside the controller, or lost with its "
                                          "node); deleting the claim and claiming a sandbox again with backoff",
                                       claim->name);
            set_ready(d, "False", "SandboxLost", d->message);
            set_synced(d, "False", "SandboxLost", d->message);
            decide_event(d, "Warning", "SandboxLost", d->message);
            decide_action(d, ACT_DELETE_CLAIM, claim->name, claim->uid, 0);
            d->backoff = 1;
            return;
        }
        d->phase = PHASE_STARTING;
        d->message = claim->message && *claim->message ? arena_sprintf(a, "claim %s: %s", cp[0] ? cp : "Claiming", claim->message)
                                                       : arena_sprintf(a, "claim %s", cp[0] ? cp : "pending");
        set_ready(d, "False", "Starting", d->message);
        return;
    }

    /* A Sandbox is bound (with or without its claim). While the claim is still Claiming,
     * OpenKruise has only locked it: the Worker's image, /init and the mounts come before the
     * claim completes, so a Ready sandbox is not yet this Worker running. */
    const char *sp = sbx->phase ? sbx->phase : "";
    if (claim && !claim->deleting && (!claim->phase || strcmp(claim->phase, "Completed") != 0)) {
        const char *cp = claim->phase && *claim->phase ? claim->phase : "Claiming";
        d->container_state = cp;
        d->phase = PHASE_STARTING;
        d->message = claim->message && *claim->message
                         ? arena_sprintf(a, "claim %s: %s (Sandbox %s)", cp, claim->message, sbx->name)
                         : arena_sprintf(a, "claim %s: binding Sandbox %s", cp, sbx->name);
        set_ready(d, "False", "Starting", d->message);
        return;
    }
    d->container_state = sp[0] ? sp : "Pending";
    if (sbx->paused || strcmp(sp, "Paused") == 0) {
        if (sbx->paused) decide_action(d, ACT_SET_SANDBOX_PAUSED, sbx->name, sbx->uid, 0);
        d->phase = strcmp(sp, "Paused") == 0 ? PHASE_SLEEPING : PHASE_STARTING;
        d->message = arena_sprintf(a, "resuming Sandbox %s", sbx->name);
        set_ready(d, "False", d->phase == PHASE_SLEEPING ? "Sleeping" : "Starting", d->message);
        return;
    }
    if (strcmp(sp, "Failed") == 0 || strcmp(sp, "Succeeded") == 0) {
        sandbox_teardown(d, o);
        d->phase = PHASE_FAILED;
        d->message = arena_sprintf(a, "Sandbox %s %s; replacing it with backoff", sbx->name,
                                   strcmp(sp, "Failed") == 0 ? "failed" : "exited");
        set_ready(d, "False", "SandboxFailed", d->message);
        decide_event(d, "Warning", "SandboxFailed", d->message);
        d->backoff = 1;
        return;
    }
    if (strcmp(sp, "Running") == 0) {
        if (sbx->ready) {
            d->phase = PHASE_RUNNING;
            d->message = "";
            set_ready(d, "True", "Running", "");
        } else if (sbx->ready_reason && strcmp(sbx->ready_reason, "InplaceUpdating") == 0) {
            /* OpenKruise is moving the sandbox to the Worker's image: on its way, not failing */
            d->phase = PHASE_STARTING;
            d->message = arena_sprintf(a, "Sandbox %s: %s", sbx->name,
                                       sbx->ready_message && *sbx->ready_message ? sbx->ready_message : "updating in place");
            set_ready(d, "False", "Starting", d->message);
        } else if (sbx->ready_known && sbx->ready_message && *sbx->ready_message) {
            d->phase = PHASE_FAILED;
            d->message = arena_sprintf(a, "Sandbox %s not ready: %s", sbx->name, sbx->ready_message);
            set_ready(d, "False", "SandboxNotReady", d->message);
        } else {
            d->phase = PHASE_STARTING;
            d->message = arena_sprintf(a, "Sandbox %s running, not ready yet", sbx->name);
            set_ready(d, "False", "Starting", d->message);
        }
        return;
    }
    d->phase = PHASE_STARTING; /* Pending, Resuming, Upgrading, or no phase yet */
    d->message = arena_sprintf(a, "Sandbox %s %s", sbx->name, sp[0] ? sp : "has no phase yet");
    set_ready(d, "False", "Starting", d->message);
}

/* ---- instances left alone ---- */

/* The status of an instance the controller leaves alone, as it is: the backend's own decision
 * for a Running Worker without a spec hash (so nothing reads "recreating" or "stopping"), its
 * actions dropped. Status must describe the instance that really exists (SPEC 3, 7). */
static void decide_as_is(arena *a, const worker *w, const observed *o, const decide_config *c, backend_kind b,
                         decision *inner) {
    worker running = *w;
    running.state = STATE_RUNNING;
    memset(inner, 0, sizeof *inner);
    if (b == BACKEND_POD) decide_pod(a, &running, o, c, NULL, inner);
    else decide_sandbox(a, &running, o, c, NULL, inner);
}

/* Names the instance that exists (status.instance, containerState) in a decision whose branch
 * leaves instances alone: a Pod first, else the sandbox. Nothing when none exists. */
static void describe_existing(arena *a, const worker *w, const observed *o, const decide_config *c, decision *d) {
    if (!o->npods && !o->nclaims && !o->nsandboxes) return;
    decision inner;
    decide_as_is(a, w, o, c, o->npods ? BACKEND_POD : BACKEND_SANDBOX, &inner);
    d->instance = inner.instance;
    d->container_state = inner.container_state;
}

/* "SandboxClaim X and Sandbox Y": what of the sandbox backend exists for the Worker. */
static const char *sandbox_instances_named(arena *a, const observed *o) {
    const char *claim = o->nclaims ? o->claims[0].name : NULL;
    const char *sbx = o->nsandboxes ? o->sandboxes[0].name : NULL;
    if (claim && sbx) return arena_sprintf(a, "SandboxClaim %s and Sandbox %s", claim, sbx);
    return claim ? arena_sprintf(a, "SandboxClaim %s", claim) : arena_sprintf(a, "Sandbox %s", sbx ? sbx : "?");
}

/* The sandbox backend is disabled, yet the Worker has sandbox instances (made before it was
 * turned off). They are observed through read-only watches and never touched — the controller
 * has no right to, and removing an agent on a configuration change would be destructive — so
 * status says why nothing more happens and what the operator can do. */
static const char *sandbox_disabled_message(arena *a, const observed *o, int deleting) {
    const char *what = sandbox_instances_named(a, o);
    return arena_sprintf(a, "%s of this Worker exist%s but the sandbox backend is disabled (HICLAW_SANDBOX_ENABLED=false): "
                            "nothing more is done for %s%s; enable it (HICLAW_SANDBOX_ENABLED=true) or remove %s by hand",
                         what, o->nclaims + o->nsandboxes > 1 ? "" : "s", o->nclaims + o->nsandboxes > 1 ? "them" : "it",
                         deleting ? " and the finalizer stays" : "", what);
}

/* ---- the whole decision ---- */

/* pod_hash / sandbox_hash: the spec hash an instance of each backend must carry. */
static void decide(arena *a, const worker *w, const observed *o, const decide_config *c, const char *pod_hash,
                   const char *sandbox_hash, decision *d) {
    memset(d, 0, sizeof *d);
    set_synced(d, "True", "Reconciled", "");
    int have_pods = o->npods > 0, have_sbx = o->nclaims > 0 || o->nsandboxes > 0;

    /* 1–2. Deletion: everything of both backends, then deps and the ServiceAccount, then the
     * finalizer — which stays while any Pod, claim or Sandbox is still observed. */
    if (w->deleting) {
        for (size_t i = 0; i < o->npods; i++)
            if (!o->pods[i].deleting) decide_action(d, ACT_DELETE_POD, o->pods[i].name, o->pods[i].uid, 0);
        /* Never orphan an agent holding credentials: with the sandbox backend disabled its
         * instances cannot be removed here, so the finalizer waits for a human. */
        int sandbox_stuck = !c->sandbox_enabled && have_sbx;
        int pending = (sandbox_stuck || sandbox_teardown(d, o)) || have_pods;
        d->phase = PHASE_STOPPING;
        d->message = "Worker is being deleted";
        set_ready(d, "False", "Deleting", d->message);
        if (sandbox_stuck) {
            d->message = sandbox_disabled_message(a, o, 1);
            set_synced(d, "False", "SandboxDisabled", d->message);
            if (first_time_this_generation(w, "SandboxDisabled")) decide_event(d, "Warning", "SandboxDisabled", d->message);
        }
        if (!pending && w->has_finalizer) {
            /* The cache says everything is gone; the API server must agree before anything of
             * the cleanup runs (a lagging cache must not cost an agent its credentials, nor the
             * Worker its finalizer while an instance lives). */
            decide_action(d, ACT_CONFIRM_INSTANCES_GONE, NULL, NULL, 0);
            const char *rec = w->status_deps_path;
            int moved = rec && *rec && (!o->deps_path || strcmp(rec, o->deps_path) != 0);
            if (c->sandbox_enabled || c->deps_storage) {
                decide_action(d, ACT_DELETE_DEPS_ALL, o->deps_path, NULL, 0);
                if (moved) decide_action(d, ACT_DELETE_DEPS_ALL, rec, NULL, 0);
            } else if (rec && *rec) {
                decide_event(d, "Warning", "WorkerDepsLeft",
                             arena_sprintf(a, "the worker-deps objects under %s are left in the bucket: the sandbox backend "
                                              "is disabled and no worker-deps storage is configured", rec));
            }
            decide_action(d, ACT_DELETE_SERVICEACCOUNT, instance_name(a, w, c), NULL, 0);
            decide_action(d, ACT_REMOVE_FINALIZER, NULL, NULL, 0);
            d->done_deleting = 1;
        } else if (pending) {
            /* deletes in flight: look again even without events; a sandbox left for a human
             * only needs an occasional look (its removal is an event anyway) */
            d->requeue_after_ms = sandbox_stuck && !have_pods ? 60000 : 2000;
        }
        return;
    }
    if (!w->has_finalizer) decide_action(d, ACT_ADD_FINALIZER, NULL, NULL, 0);

    /* 3. Not ours to run. */
    if (!w->container_managed) {
        d->phase = w->state == STATE_RUNNING ? PHASE_RUNNING : w->state == STATE_SLEEPING ? PHASE_SLEEPING : PHASE_STOPPED;
        d->message = "spec.containerManaged is false: the runtime is managed outside the cluster";
        set_ready(d, "Unknown", "Unmanaged", d->message);
        d->backend = NULL;
        describe_existing(a, w, o, c, d); /* an instance left from before is still named */
        return;
    }

    /* A spec the controller cannot act on: touch nothing, say why. */
    if (w->invalid) {
        d->phase = PHASE_NONE;
        d->message = w->invalid;
        set_synced(d, "False", "InvalidSpec", w->invalid);
        set_ready(d, w->ready.present && w->ready.status ? w->ready.status : "False", "InvalidSpec", w->invalid);
        if (first_time_this_generation(w, "InvalidSpec")) decide_event(d, "Warning", "InvalidSpec", w->invalid);
        describe_existing(a, w, o, c, d);
        return;
    }

    /* Sandbox instances while the sandbox backend is disabled: leave them (and the Worker)
     * alone whatever the spec says — no Pod beside them, no teardown, no deps — and say why. */
    if (!c->sandbox_enabled && have_sbx) {
        decision inner;
        decide_as_is(a, w, o, c, BACKEND_SANDBOX, &inner);
        d->phase = inner.phase;
        d->backend = "sandbox";
        d->instance = inner.instance;
        d->container_state = inner.container_state;
        d->ready = inner.ready;
        d->message = sandbox_disabled_message(a, o, 0);
        set_synced(d, "False", "SandboxDisabled", d->message);
        if (first_time_this_generation(w, "SandboxDisabled")) decide_event(d, "Warning", "SandboxDisabled", d->message);
        return;
    }

    /* 4. The backend switch guard. The applied backend A is what runs (observed), else what the
     * status recorded, else pod (legacy Workers have no status.backendRuntime). */
    backend_kind recorded = w->status_backend && strcmp(w->status_backend, "sandbox") == 0 ? BACKEND_SANDBOX : BACKEND_POD;
    backend_kind applied = have_pods ? BACKEND_POD : have_sbx ? BACKEND_SANDBOX : recorded;
    backend_kind desired = w->backend;
    if (desired == BACKEND_SANDBOX && !c->sandbox_enabled) { /* and no sandbox instance (above) */
        const char *msg = "spec.backendRuntime is sandbox but the sandbox backend is disabled (HICLAW_SANDBOX_ENABLED=false)";
        if (!have_pods) {
            d->phase = w->state == STATE_RUNNING ? PHASE_PENDING : w->state == STATE_SLEEPING ? PHASE_SLEEPING : PHASE_STOPPED;
            d->message = msg;
            set_synced(d, "False", "SandboxDisabled", msg);
            set_ready(d, "False", "SandboxDisabled", msg);
            if (first_time_this_generation(w, "SandboxDisabled")) decide_event(d, "Warning", "SandboxDisabled", msg);
            return;
        }
    }
    if (have_pods && have_sbx && w->state != STATE_STOPPED) {
        /* Both backends have instances: something else created one. Touch neither. */
        const char *msg = "instances of both backends (Pod and sandbox) exist for this Worker; set state Stopped to clean up";
        d->phase = PHASE_NONE;
        d->message = msg;
        set_synced(d, "False", "BackendSwitchBlocked", msg);
        set_ready(d, "False", "BackendSwitchBlocked", msg);
        if (first_time_this_generation(w, "BackendSwitchBlocked")) decide_event(d, "Warning", "BackendSwitchBlocked", msg);
        describe_existing(a, w, o, c, d);
        return;
    }
    if (have_pods && have_sbx) { /* Stopped: remove everything, both backends */
        for (size_t i = 0; i < o->npods; i++)
            if (!o->pods[i].deleting) decide_action(d, ACT_DELETE_POD, o->pods[i].name, o->pods[i].uid, 0);
        sandbox_teardown(d, o);
        d->phase = PHASE_STOPPING;
        d->message = "removing the instances of both backends";
        set_ready(d, "False", "Stopping", d->message);
        return;
    }
    backend_kind acting = desired;
    if (desired != applied && (have_pods || have_sbx)) {
        if (w->state != STATE_STOPPED) {
            const char *msg = arena_sprintf(a, "spec.backendRuntime cannot change from %s to %s until the Worker is Stopped",
                                            backend_name(applied), backend_name(desired));
            /* Leave the instance alone, but keep reporting what it really does: as it is, whatever
             * spec.state says (it keeps running until Stopped), and without a spec hash (it is
             * not going to be recreated, so a hash mismatch — a legacy Pod has none — must not
             * make a running, ready instance read "Pending, recreating"). */
            decision inner;
            decide_as_is(a, w, o, c, applied, &inner);
            d->phase = inner.phase;
            d->backend = backend_name(applied);
            d->instance = inner.instance;
            d->container_state = inner.container_state;
            d->ready = inner.ready;
            d->message = msg;
            set_synced(d, "False", "BackendSwitchBlocked", msg);
            if (first_time_this_generation(w, "BackendSwitchBlocked")) decide_event(d, "Warning", "BackendSwitchBlocked", msg);
            /* The sandbox it protects keeps running, so its token must stay fresh: the one
             * action of the inner decision that is kept (and its requeue for the next refresh). */
            for (size_t i = 0; i < inner.nactions; i++)
                if (inner.actions[i].kind == ACT_REFRESH_TOKEN)
                    decide_action(d, ACT_REFRESH_TOKEN, inner.actions[i].name, NULL, 0);
            d->requeue_after_ms = inner.requeue_after_ms;
            return;
        }
        acting = applied; /* Stopped: tear down A; once gone, D takes over */
    }

    /* Reserved or malformed spec.env keys are ignored; say which, once per generation (the
     * first reconcile of a generation is the one that has not yet recorded it as observed). */
    if (w->observed_generation != w->generation) {
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

    if (acting == BACKEND_POD) decide_pod(a, w, o, c, pod_hash, d);
    else decide_sandbox(a, w, o, c, sandbox_hash, d);
    /* A deps conflict beside a running sandbox: the phase says how the sandbox is, the message
     * why nothing more is done for it. */
    if (o->deps_conflict && d->synced.reason && strcmp(d->synced.reason, "WorkerDepsConflict") == 0 &&
        (!d->message || !*d->message))
        d->message = o->deps_conflict;
    /* Stopped with nothing of the sandbox backend left, whichever backend acts now (a Worker
     * switched from sandbox to pod too): its token object goes, where it was written. */
    if (w->state == STATE_STOPPED && !have_sbx && o->token_present && !o->deps_conflict)
        decide_action(d, ACT_DELETE_DEPS_TOKEN, deps_live_path(w, o), NULL, 0);
    if (!have_pods && !have_sbx && d->phase != PHASE_PENDING) d->backend = w->status_backend && *w->status_backend ? w->status_backend : NULL;
}
