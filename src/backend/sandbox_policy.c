/*
 * sandbox_policy.c — the sandbox backend's pure half (SPEC sections 3, 5, 7): from its
 * observations (the Worker's SandboxClaims and Sandboxes, and what object storage says of its
 * worker-deps) to the status table's claim and Sandbox rows and the actions that make, pause,
 * replace or remove a sandbox — the create sequence first of all: the ServiceAccount, the
 * worker-deps written and verified, only then the claim (the seed's first blocker). The I/O
 * half is sandbox.c.
 */

/* The sandbox backend's actions. write-deps: the env file, the token and the data marker, each
 * verified; refresh-token and write-env: that object alone, the sandbox untouched;
 * delete-deps-all: token, env and data (Worker deletion); delete-deps-moved: token, env and data
 * marker at a path the Worker no longer uses. set-sandbox-paused's flag is the value;
 * resume-sandbox-clear-pausetime resumes and clears spec.pauseTime in one patch (a Sandbox that
 * OpenKruise paused at its pauseTime would be paused again at once if only resumed). */
static const action_type ACT_WRITE_DEPS[1] = {
    {.name = "write-deps", .backend = "sandbox",
     .does = {"write and verify worker-deps (env file, token, data marker) under"}}};
static const action_type ACT_REFRESH_TOKEN[1] = {
    {.name = "refresh-token", .backend = "sandbox",
     .does = {"write a fresh token to the worker-deps under"}}};
static const action_type ACT_WRITE_ENV[1] = {
    {.name = "write-env", .backend = "sandbox",
     .does = {"write the env file again under"}}};
static const action_type ACT_CREATE_CLAIM[1] = {
    {.name = "create-claim", .backend = "sandbox", .creates = "SandboxClaim",
     .does = {"create SandboxClaim"}}};
static const action_type ACT_DELETE_CLAIM[1] = {
    {.name = "delete-claim", .backend = "sandbox",
     .does = {"delete SandboxClaim"}}};
static const action_type ACT_DELETE_SANDBOX[1] = {
    {.name = "delete-sandbox", .backend = "sandbox",
     .does = {"delete Sandbox"}}};
static const action_type ACT_SET_SANDBOX_PAUSED[1] = {
    {.name = "set-sandbox-paused", .backend = "sandbox",
     .does = {"resume Sandbox", "pause Sandbox"}}};
static const action_type ACT_RESUME_SANDBOX_CLEAR_PAUSE_TIME[1] = {
    {.name = "resume-sandbox-clear-pausetime", .backend = "sandbox",
     .does = {"clear spec.pauseTime and resume Sandbox"}}};
static const action_type ACT_DELETE_DEPS_TOKEN[1] = {
    {.name = "delete-deps-token", .backend = "sandbox",
     .does = {"delete the worker-deps token under"}}};
static const action_type ACT_DELETE_DEPS_ALL[1] = {
    {.name = "delete-deps-all", .backend = "sandbox",
     .does = {"delete the worker-deps objects under"}}};
static const action_type ACT_DELETE_DEPS_MOVED[1] = {
    {.name = "delete-deps-moved", .backend = "sandbox",
     .does = {"delete the worker-deps objects at a path no longer used:"}}};

/* ---- observations ---- */

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
    const char *ready_reason;     /* InplaceUpdating while OpenKruise updates the image in place,
                                     PodCreateFailed when it cannot create the Pod */
    const char *ready_message;
    int paused;                   /* spec.paused */
    const char *pause_time;       /* spec.pauseTime (RFC 3339): OpenKruise pauses the Sandbox then */
    int pause_time_due;           /* pause_time <= now when observed (the shell's clock, not decide's) */
    const char *upgrading_reason; /* the Upgrading condition's reason: the upgrade's step */
    const char *upgrading_message;
    const char *update_ops;       /* label agents.kruise.io/update-ops: the SandboxUpdateOps upgrading it */
    const char *status_message;   /* status.message: why it Failed ("Pod Not Found", "Pod status phase is Failed") */
    const char *init_reason;      /* the RuntimeInitialized condition (after a resume): Pending, Succeeded, Failed */
    const char *init_message;
    const char *claim_name;       /* label agents.kruise.io/claim-name */
    const char *spec_hash;        /* label hiclaw.io/spec-hash (carried from the claim) */
    const char *pod_ip;
} obs_sandbox;

typedef struct obs_sandboxes {
    const obs_claim *claims;
    size_t nclaims;
    const obs_sandbox *sandboxes;
    size_t nsandboxes;
    /* worker-deps, from object storage metadata (HEADs by the shell, never a read of a
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
    /* The API server (a live list, not the cache) holds no Sandbox for the Worker: set when a
     * decision asked for it (decision.recheck). */
    int lost_confirmed;
} obs_sandboxes;

static const obs_sandboxes SANDBOX_NONE;

/* The sandbox backend's own decision settings. */
typedef struct sandbox_policy_cfg {
    int pause;                    /* HICLAW_SANDBOX_PAUSE: Sleeping pauses instead of releasing */
    int deps_storage;             /* worker-deps storage usable (always with sandbox; else when configured) */
    const char *off_why;          /* disabled by HICLAW_SANDBOX_ENABLED=auto: why; NULL: by false (or enabled) */
    const char *pool;             /* HICLAW_SANDBOX_POOL and HICLAW_SANDBOX_CLAIM_TIMEOUT: named in status */
    int64_t claim_timeout_s;      /* messages (what is waited for, where to look); NULL / 0: not named */
} sandbox_policy_cfg;

/* "pool P" for a status message, or "the warm pool" when the configuration is not known. */
static const char *sbx_pool_named(arena *a, const sandbox_policy_cfg *cfg) {
    return cfg && cfg->pool && *cfg->pool ? arena_sprintf(a, "pool %s", cfg->pool) : "the warm pool";
}

static const obs_sandboxes *sbx_obs(const void *obs) { return obs ? obs : &SANDBOX_NONE; }

static size_t sbx_count(const void *obs) { return sbx_obs(obs)->nclaims + sbx_obs(obs)->nsandboxes; }

static const obs_sandbox *live_sandbox(const obs_sandboxes *s) {
    for (size_t i = 0; i < s->nsandboxes; i++)
        if (!s->sandboxes[i].deleting) return &s->sandboxes[i];
    return s->nsandboxes ? &s->sandboxes[0] : NULL;
}

/* Deletes claims, then Sandboxes; the token object only once both are gone (next pass). */
static int sbx_teardown(const void *obs, decision *d) {
    const obs_sandboxes *s = sbx_obs(obs);
    int pending = 0;
    for (size_t i = 0; i < s->nclaims; i++) {
        pending = 1;
        if (!s->claims[i].deleting) decide_action(d, ACT_DELETE_CLAIM, s->claims[i].name, s->claims[i].uid, 0);
    }
    for (size_t i = 0; i < s->nsandboxes; i++) {
        pending = 1;
        if (!s->sandboxes[i].deleting) decide_action(d, ACT_DELETE_SANDBOX, s->sandboxes[i].name, s->sandboxes[i].uid, 0);
    }
    return pending;
}

/* The path the Worker's running (or last) sandbox mounts: its live claim's sub-paths say it
 * (the object the sandbox really mounts from, not a status the cache may show before the last
 * write of it), else the one recorded when the deps were last written, else where they belong
 * now. Refreshes, rewrites and the Stopped cleanup act there. */
static const char *deps_live_path(const worker *w, const obs_sandboxes *s) {
    if (s->mounted_deps_path && *s->mounted_deps_path) return s->mounted_deps_path;
    return w->status_deps_path && *w->status_deps_path ? w->status_deps_path : s->deps_path;
}

/* Another Worker owns objects at this Worker's worker-deps path: nothing is written or deleted
 * there and no claim is made (SPEC 7); say who, once per generation as a Warning. */
static void decide_deps_conflict(const worker *w, const obs_sandboxes *s, decision *d) {
    d->message = s->deps_conflict;
    decide_warn(w, d, "WorkerDepsConflict", s->deps_conflict);
}

/* A Warning once per occurrence of a state, not on every reconcile: new while the Worker's
 * Ready condition does not already say it (reason, and the message when given) — the status
 * written after the first reconcile does. A later occurrence follows another Ready state. */
static void decide_warn_once(const worker *w, decision *d, const char *reason, const char *message, int same_message) {
    int said = w->ready.present && w->ready.reason && strcmp(w->ready.reason, reason) == 0 &&
               (!same_message || (w->ready.message && strcmp(w->ready.message, message) == 0));
    if (!said) decide_event(d, "Warning", reason, message);
}

static int sbx_pod_create_failed(const obs_sandbox *sbx) {
    return sbx->ready_known && !sbx->ready && str_eq(sbx->ready_reason, "PodCreateFailed");
}

/* OpenKruise cannot create the sandbox's Pod (an admission policy or webhook, a ResourceQuota, a
 * LimitRange, an invalid template): the Sandbox stays Pending, Resuming or Upgrading for good,
 * and OpenKruise retries with a backoff growing to ~17 min with nothing else to wake it. No
 * action: a new claim would meet the same denial. `claim`: the claim still binding it. */
static void sbx_decide_pod_create_failed(arena *a, const worker *w, const obs_claim *claim, const obs_sandbox *sbx,
                                         decision *d) {
    d->phase = PHASE_FAILED;
    d->message = arena_sprintf(
        a, "OpenKruise cannot create the Pod of Sandbox %s: %s; %s; remove the cause (admission policy or webhook, "
           "ResourceQuota, LimitRange); OpenKruise retries with a backoff of up to ~17 min, any change to the Sandbox "
           "(e.g. an annotation) makes it retry at once",
        sbx->name, sbx->ready_message && *sbx->ready_message ? sbx->ready_message : "(no message)",
        claim ? arena_sprintf(a, "claim %s gives up after its claimTimeout and is retried", claim->name)
              : arena_sprintf(a, "the Sandbox stays %s until then", sbx->phase && *sbx->phase ? sbx->phase : "Pending"));
    set_ready(d, "False", "SandboxPodCreateFailed", d->message);
    decide_warn_once(w, d, "SandboxPodCreateFailed", d->message, 0);
}

/* Phase Upgrading: only a SandboxUpdateOps (spec.upgradePolicy) does it, never the claim's
 * in-place image update. OpenKruise runs its steps and retries a failing one for good; the
 * controller does not fight an operator's upgrade. */
static const char *sbx_upgrading_message(arena *a, const obs_sandbox *sbx) {
    const char *ops = sbx->update_ops && *sbx->update_ops ? arena_sprintf(a, " (SandboxUpdateOps %s)", sbx->update_ops) : "";
    const char *step = sbx->upgrading_reason && *sbx->upgrading_reason
                           ? arena_sprintf(a, ", step %s%s%s", sbx->upgrading_reason,
                                           sbx->upgrading_message && *sbx->upgrading_message ? ": " : "",
                                           sbx->upgrading_message ? sbx->upgrading_message : "")
                           : "";
    size_t n = sbx->upgrading_reason ? strlen(sbx->upgrading_reason) : 0;
    int failing = n > 6 && strcmp(sbx->upgrading_reason + n - 6, "Failed") == 0;
    return arena_sprintf(a, "OpenKruise is upgrading Sandbox %s%s%s; %s", sbx->name, ops, step,
                         failing ? "OpenKruise retries the failed step for good: fix or delete the SandboxUpdateOps"
                                 : "the Worker is Running again when the upgrade ends");
}

static const char *sandbox_instances_named(arena *a, const obs_sandboxes *s);

/* ---- Stopped, Sleeping ---- */

/* Stopped, or Sleeping without pause: claim and Sandboxes go (the token object: settle). */
static void sbx_decide_release(arena *a, const worker *w, const obs_sandboxes *s, const obs_claim *claim,
                               const obs_sandbox *sbx, decision *d) {
    worker_phase rest = w->state == STATE_SLEEPING ? PHASE_SLEEPING : PHASE_STOPPED;
    if (sbx_teardown(s, d)) {
        d->phase = PHASE_STOPPING;
        d->container_state = sbx ? sbx->phase : claim ? claim->phase : NULL;
        d->message = w->state == STATE_SLEEPING
                         ? arena_sprintf(a, "removing %s: Sleeping releases the sandbox while HICLAW_SANDBOX_PAUSE is "
                                            "off (on: it is paused and kept)", sandbox_instances_named(a, s))
                         : arena_sprintf(a, "removing %s (state %s)", sandbox_instances_named(a, s), state_name(w->state));
        set_ready(d, "False", "Stopping", d->message);
        return;
    }
    d->phase = rest;
    d->instance = (worker_instance){0};
    d->message = "";
    set_ready(d, "False", phase_name(rest), "");
}

/* Sleeping with pause on: the Sandbox is paused, kept. Never while its claim still binds: a
 * paused sandbox is not "running" to OpenKruise's claim, which waits out waitReadyTimeout on it,
 * deletes it and times out — the Worker would then wait for a bind that never comes. */
static void sbx_decide_pause(arena *a, const obs_claim *claim, const obs_sandbox *sbx, decision *d) {
    if (claim && !claim->deleting && !str_eq(claim->phase, "Completed")) {
        const char *cp = claim->phase && *claim->phase ? claim->phase : "Claiming";
        d->container_state = cp;
        d->phase = PHASE_STARTING;
        d->message = arena_sprintf(a, "waiting for claim %s to finish before pausing (%s%s%s)", claim->name, cp,
                                   claim->message && *claim->message ? ": " : "", claim->message ? claim->message : "");
        set_ready(d, "False", "Starting", d->message);
        return;
    }
    if (!sbx) {
        if (claim && !claim->deleting && claim->claimed < (claim->replicas ? claim->replicas : 1)) {
            /* Completed without a sandbox (timed out, pool missing): nothing to pause, and the
             * claim would never bind; it goes, Running claims again. */
            decide_action(d, ACT_DELETE_CLAIM, claim->name, claim->uid, 0);
            d->container_state = claim->phase;
            d->phase = PHASE_STOPPING;
            d->message = arena_sprintf(a, "claim %s completed without a sandbox (%s): nothing to pause; removing it",
                                       claim->name, claim->message && *claim->message ? claim->message : "none claimed");
            set_ready(d, "False", "Stopping", d->message);
            return;
        }
        if (claim && !claim->deleting) { /* Completed, its Sandbox not seen yet */
            d->container_state = claim->phase;
            d->phase = PHASE_STARTING;
            d->message = arena_sprintf(a, "claim %s completed; waiting for its Sandbox to pause it", claim->name);
            set_ready(d, "False", "Starting", d->message);
            d->requeue_after_ms = 2000;
            return;
        }
        d->phase = PHASE_SLEEPING;
        d->message = "";
        set_ready(d, "False", "Sleeping", "");
        return;
    }
    d->container_state = sbx->phase;
    if (!sbx->paused) decide_action(d, ACT_SET_SANDBOX_PAUSED, sbx->name, sbx->uid, 1);
    if (sbx->paused && str_eq(sbx->phase, "Upgrading")) {
        /* A paused Sandbox woken by a SandboxUpdateOps: OpenKruise pauses it again afterwards. */
        d->phase = PHASE_SLEEPING;
        d->message = arena_sprintf(a, "%s; it is paused again when the upgrade ends", sbx_upgrading_message(a, sbx));
        set_ready(d, "False", "SandboxUpgrading", d->message);
    } else if (str_eq(sbx->phase, "Paused")) {
        d->phase = PHASE_SLEEPING;
        d->message = "";
        set_ready(d, "False", "Sleeping", "");
    } else if (str_eq(sbx->phase, "Pending") || !sbx->phase || !*sbx->phase) {
        d->phase = PHASE_STOPPING;
        d->message = arena_sprintf(a, "pausing Sandbox %s: it is still starting (Pending); OpenKruise pauses it once it runs%s%s",
                                   sbx->name, sbx_pod_create_failed(sbx) ? "; it cannot create its Pod: " : "",
                                   sbx_pod_create_failed(sbx) && sbx->ready_message ? sbx->ready_message : "");
        set_ready(d, "False", "Stopping", d->message);
    } else {
        d->phase = PHASE_STOPPING;
        d->message = arena_sprintf(a, "pausing Sandbox %s: waiting for OpenKruise to stop its Pod", sbx->name);
        set_ready(d, "False", "Stopping", d->message);
    }
}

/* ---- Running ---- */

/* No claim, no Sandbox: the create sequence. */
static void sbx_decide_create(arena *a, const worker *w, const observed *o, const obs_sandboxes *s,
                              const sandbox_policy_cfg *cfg, const char *claim_name, decision *d) {
    if (decide_backing_off(a, o, d)) return;
    if (s->deps_conflict) {
        d->phase = PHASE_FAILED;
        decide_deps_conflict(w, s, d);
        set_ready(d, "False", "WorkerDepsConflict", d->message);
        return;
    }
    /* The deps move (workerName, prefix or key layout changed): the old token and env file
     * are credentials nobody mounts any more, and the old data marker would be forgotten
     * (a deletion later only knows the paths in use) — all three removed (this Worker's own
     * only) first. Files the agent wrote under data/ are never the controller's: untouched. */
    const char *rec = w->status_deps_path;
    if (rec && *rec && s->deps_path && *s->deps_path && strcmp(rec, s->deps_path) != 0)
        decide_action(d, ACT_DELETE_DEPS_MOVED, rec, NULL, 0);
    decide_action(d, ACT_ENSURE_SERVICEACCOUNT, claim_name, NULL, 0);
    decide_action(d, ACT_WRITE_DEPS, s->deps_path, NULL, 0);
    decide_action(d, ACT_CREATE_CLAIM, claim_name, NULL, 0);
    d->phase = PHASE_PENDING;
    d->message = arena_sprintf(a, "writing worker-deps, then claiming a sandbox from %s (SandboxClaim %s)",
                               sbx_pool_named(a, cfg), claim_name);
    set_ready(d, "False", "Pending", d->message);
}

/* A running sandbox's worker-deps: the token refreshed in time, a lost or altered env file
 * written again in place — never the sandbox touched for either. */
static void sbx_decide_upkeep(const worker *w, const obs_sandboxes *s, decision *d) {
    if (s->deps_conflict) {
        decide_deps_conflict(w, s, d); /* the instance's status below; no refresh, no rewrite */
        return;
    }
    const char *mounted = deps_live_path(w, s);
    if (s->token_present && s->token_refresh_in_ms <= 0) decide_action(d, ACT_REFRESH_TOKEN, mounted, NULL, 0);
    else if (s->token_present) d->requeue_after_ms = s->token_refresh_in_ms;
    else decide_action(d, ACT_REFRESH_TOKEN, mounted, NULL, 0); /* lost token object: write it again */
    /* A lost env file, or one whose content is not the Worker's (edited, or written by a
     * version that recorded no hash): written again in place. The sandbox stays — any env
     * change the Worker itself makes already changes its spec hash and replaces it. */
    if (s->deps_observed && s->want_deps_hash &&
        (!s->deps_present || !s->deps_hash || strcmp(s->deps_hash, s->want_deps_hash) != 0))
        decide_action(d, ACT_WRITE_ENV, mounted, NULL, 0);
}

/* A failed claim or a lost Sandbox: the claim goes, a new one after the backoff. */
static void sbx_decide_reclaim(const obs_claim *claim, const char *reason, const char *message, decision *d) {
    d->phase = PHASE_FAILED;
    d->message = message;
    set_ready(d, "False", reason, message);
    set_synced(d, "False", reason, message);
    decide_event(d, "Warning", reason, message);
    decide_action(d, ACT_DELETE_CLAIM, claim->name, claim->uid, 0);
    decide_recreate(d, reason, claim->uid);
    d->backoff = 1;
}

/* A claim without a Sandbox (yet). */
static void sbx_decide_claim_only(arena *a, const obs_sandboxes *s, const sandbox_policy_cfg *cfg, const obs_claim *claim,
                                  decision *d) {
    const char *cp = claim->phase ? claim->phase : "";
    d->container_state = cp[0] ? cp : "Claiming";
    if (strcmp(cp, "Completed") == 0 && claim->claimed < (claim->replicas ? claim->replicas : 1)) {
        /* OpenKruise keeps the real cause (a pool that cannot fill, /init or a mount failing) in
         * events only: say where to look. */
        sbx_decide_reclaim(claim, "ClaimFailed",
                           arena_sprintf(a, "claim %s completed without a sandbox: %s; %s had none ready in time "
                                            "(kubectl describe sandboxclaim %s, and the events of the pool's Sandboxes, "
                                            "say why); claiming again with backoff",
                                         claim->name,
                                         claim->message && *claim->message ? claim->message : "no sandbox was claimed",
                                         sbx_pool_named(a, cfg), claim->name),
                           d);
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
        if (!s->lost_confirmed) {
            d->recheck = 1;
            d->phase = PHASE_STARTING;
            d->message = arena_sprintf(a, "claim %s completed; waiting for its Sandbox", claim->name);
            set_ready(d, "False", "Starting", d->message);
            d->requeue_after_ms = 2000;
            return;
        }
        sbx_decide_reclaim(claim, "SandboxLost",
                           arena_sprintf(a, "the Sandbox of claim %s is gone (deleted outside the controller, or lost "
                                            "with its node); deleting the claim and claiming a sandbox again with backoff",
                                         claim->name),
                           d);
        return;
    }
    d->phase = PHASE_STARTING;
    d->message = arena_sprintf(
        a, "waiting for claim %s to bind a sandbox from %s (%s%s%s)%s", claim->name, sbx_pool_named(a, cfg),
        cp[0] ? cp : "not started yet", claim->message && *claim->message ? ": " : "", claim->message ? claim->message : "",
        cfg && cfg->claim_timeout_s > 0
            ? arena_sprintf(a, "; OpenKruise gives up after claimTimeout %" PRId64 " s%s", cfg->claim_timeout_s,
                            cfg->pool ? arena_sprintf(a, " (kubectl get sandboxset %s shows the sandboxes available)",
                                                      cfg->pool)
                                      : "")
            : "");
    set_ready(d, "False", "Starting", d->message);
}

/* A Sandbox in phase Running: Ready, updating in place, or not ready. */
static void sbx_decide_running_phase(arena *a, const worker *w, const obs_sandbox *sbx, decision *d) {
    if (sbx->ready) {
        d->phase = PHASE_RUNNING;
        d->message = "";
        set_ready(d, "True", "Running", "");
    } else if (sbx->ready_reason && strcmp(sbx->ready_reason, "InplaceUpdating") == 0) {
        /* OpenKruise is moving the sandbox to the Worker's image: on its way, not failing */
        d->phase = PHASE_STARTING;
        d->message = arena_sprintf(a, "OpenKruise is updating Sandbox %s in place to image %s (%s)", sbx->name,
                                   w->image && *w->image ? w->image : "of the Worker",
                                   sbx->ready_message && *sbx->ready_message ? sbx->ready_message : "updating in place");
        set_ready(d, "False", "Starting", d->message);
    } else if (str_eq(sbx->ready_reason, "PodCreateFailed")) {
        /* The Pod exists now; Ready keeps OpenKruise's old create error until the Pod is Ready. */
        d->phase = PHASE_STARTING;
        d->message = arena_sprintf(a, "Sandbox %s: its Pod is created, waiting for it to be Ready", sbx->name);
        set_ready(d, "False", "Starting", d->message);
    } else if (str_eq(sbx->init_reason, "Failed")) {
        /* After a resume (or an upgrade) OpenKruise calls /init and mounts the worker-deps again,
         * and retries with backoff when that fails; Ready stays False meanwhile. */
        d->phase = PHASE_STARTING;
        d->message = arena_sprintf(a, "OpenKruise cannot initialise the agent runtime of Sandbox %s (/init or a "
                                      "worker-deps mount): %s; it retries with backoff — check the worker-deps objects "
                                      "and the agent runtime", sbx->name,
                                   sbx->init_message && *sbx->init_message ? sbx->init_message : "no message");
        set_ready(d, "False", "SandboxInitFailing", d->message);
    } else if (sbx->ready_known && sbx->ready_message && *sbx->ready_message) {
        d->phase = PHASE_FAILED;
        d->message = arena_sprintf(a, "Sandbox %s is running but not ready: %s%s%s; kubectl describe pod %s shows why",
                                   sbx->name, sbx->ready_reason && *sbx->ready_reason ? sbx->ready_reason : "",
                                   sbx->ready_reason && *sbx->ready_reason ? ": " : "", sbx->ready_message, sbx->name);
        set_ready(d, "False", "SandboxNotReady", d->message);
    } else {
        d->phase = PHASE_STARTING;
        d->message = arena_sprintf(a, "Sandbox %s is running; waiting for it to become Ready (OpenKruise initialises "
                                      "the agent runtime and mounts the worker-deps)", sbx->name);
        set_ready(d, "False", "Starting", d->message);
    }
}

/* A Sandbox is bound (with or without its claim). While the claim is still Claiming,
 * OpenKruise has only locked it: the Worker's image, /init and the mounts come before the
 * claim completes, so a Ready sandbox is not yet this Worker running. */
static void sbx_decide_bound(arena *a, const worker *w, const obs_sandboxes *s, const obs_claim *claim,
                             const obs_sandbox *sbx, decision *d) {
    const char *sp = sbx->phase ? sbx->phase : "";
    if (claim && !claim->deleting && (!claim->phase || strcmp(claim->phase, "Completed") != 0)) {
        const char *cp = claim->phase && *claim->phase ? claim->phase : "Claiming";
        d->container_state = cp;
        if (sbx_pod_create_failed(sbx) && !str_eq(sp, "Running")) { /* the claim's own Sandbox (createOnNoStock) */
            sbx_decide_pod_create_failed(a, w, claim, sbx, d);
            return;
        }
        d->phase = PHASE_STARTING;
        d->message = arena_sprintf(a, "waiting for claim %s to finish with Sandbox %s (%s%s%s): OpenKruise sets the "
                                      "Worker's image, initialises the agent runtime and mounts the worker-deps first",
                                   claim->name, sbx->name, cp, claim->message && *claim->message ? ": " : "",
                                   claim->message ? claim->message : "");
        set_ready(d, "False", "Starting", d->message);
        return;
    }
    d->container_state = sp[0] ? sp : "Pending";
    if (sbx->paused && sbx->pause_time && *sbx->pause_time && !str_eq(sp, "Upgrading")) {
        /* OpenKruise's own pause: at spec.pauseTime it sets paused=true and never resumes. The
         * Worker's spec.state is the desired state, so it is resumed — and the pauseTime cleared
         * in the same patch, or OpenKruise pauses it again at once (a loop). */
        decide_action(d, ACT_RESUME_SANDBOX_CLEAR_PAUSE_TIME, sbx->name, sbx->uid, 0);
        d->phase = strcmp(sp, "Paused") == 0 ? PHASE_SLEEPING : PHASE_STARTING;
        if (sbx->pause_time_due) {
            d->message = arena_sprintf(a, "OpenKruise paused Sandbox %s at its spec.pauseTime %s (not set by this "
                                          "controller); resuming it and clearing spec.pauseTime because the Worker's "
                                          "state is Running (set the Worker to Sleeping to keep it paused)",
                                       sbx->name, sbx->pause_time);
            set_ready(d, "False", "SandboxAutoPaused", d->message);
            decide_warn_once(w, d, "SandboxAutoPaused", d->message, 1);
        } else {
            d->message = arena_sprintf(a, "resuming Sandbox %s and clearing its spec.pauseTime %s: the Worker's state is "
                                          "Running", sbx->name, sbx->pause_time);
            set_ready(d, "False", d->phase == PHASE_SLEEPING ? "Sleeping" : "Starting", d->message);
        }
        return;
    }
    if (sbx_pod_create_failed(sbx) && !str_eq(sp, "Running") && !str_eq(sp, "Failed") && !str_eq(sp, "Succeeded") &&
        !sbx->paused) {
        sbx_decide_pod_create_failed(a, w, NULL, sbx, d);
        return;
    }
    if (strcmp(sp, "Upgrading") == 0) {
        /* paused (a paused Sandbox woken by the upgrade): unpaused so that it stays Running after
         * it; spec.paused is not part of the upgrade, so this does not fight it */
        if (sbx->paused)
            decide_action(d, sbx->pause_time && *sbx->pause_time ? ACT_RESUME_SANDBOX_CLEAR_PAUSE_TIME : ACT_SET_SANDBOX_PAUSED,
                          sbx->name, sbx->uid, 0);
        d->phase = PHASE_STARTING;
        d->message = sbx_upgrading_message(a, sbx);
        set_ready(d, "False", "SandboxUpgrading", d->message);
        return;
    }
    if (sbx->paused || strcmp(sp, "Paused") == 0) {
        if (sbx->paused) decide_action(d, ACT_SET_SANDBOX_PAUSED, sbx->name, sbx->uid, 0);
        d->phase = strcmp(sp, "Paused") == 0 ? PHASE_SLEEPING : PHASE_STARTING;
        d->message = arena_sprintf(a, "resuming Sandbox %s", sbx->name);
        set_ready(d, "False", d->phase == PHASE_SLEEPING ? "Sleeping" : "Starting", d->message);
        return;
    }
    if (strcmp(sp, "Failed") == 0 || strcmp(sp, "Succeeded") == 0) {
        sbx_teardown(s, d);
        d->phase = PHASE_FAILED;
        /* OpenKruise's status.message tells a vanished Pod from one that exited */
        d->message = arena_sprintf(a, "Sandbox %s %s%s%s; replacing it with backoff", sbx->name,
                                   strcmp(sp, "Failed") == 0 ? "failed" : "exited",
                                   sbx->status_message && *sbx->status_message ? ": " : "",
                                   sbx->status_message ? sbx->status_message : "");
        set_ready(d, "False", "SandboxFailed", d->message);
        decide_event(d, "Warning", "SandboxFailed", d->message);
        decide_recreate(d, "SandboxFailed", claim ? claim->uid : sbx->uid);
        d->backoff = 1;
        return;
    }
    if (strcmp(sp, "Running") == 0) {
        sbx_decide_running_phase(a, w, sbx, d);
        return;
    }
    d->phase = PHASE_STARTING; /* Pending, Resuming, or no phase yet */
    d->message = strcmp(sp, "Resuming") == 0
                     ? arena_sprintf(a, "waiting for OpenKruise to resume Sandbox %s (Resuming: a new Pod is made, then "
                                        "the agent runtime initialised again)", sbx->name)
                 : sp[0] ? arena_sprintf(a, "waiting for OpenKruise to start Sandbox %s (%s)", sbx->name, sp)
                         : arena_sprintf(a, "waiting for OpenKruise to report the phase of Sandbox %s", sbx->name);
    set_ready(d, "False", "Starting", d->message);
}

/* State Running with a claim or a Sandbox. */
static void sbx_decide_running(arena *a, const worker *w, const obs_sandboxes *s, const sandbox_policy_cfg *cfg,
                               const obs_claim *claim, const obs_sandbox *sbx, const char *hash, decision *d) {
    if ((claim && claim->deleting) || (sbx && sbx->deleting) || (sbx && sbx->phase && strcmp(sbx->phase, "Terminating") == 0)) {
        d->phase = PHASE_STOPPING;
        d->container_state = sbx ? sbx->phase : "Terminating";
        d->message = arena_sprintf(a, "waiting for the previous %s to be deleted before claiming again",
                                   sandbox_instances_named(a, s));
        set_ready(d, "False", "Stopping", d->message);
        return;
    }
    const char *have_hash = claim ? claim->spec_hash : sbx->spec_hash;
    if (hash && (!have_hash || strcmp(have_hash, hash) != 0)) { /* hash NULL: status only */
        sbx_teardown(s, d);
        d->phase = PHASE_PENDING;
        d->message = "spec changed: replacing claim and Sandbox";
        set_ready(d, "False", "Recreating", d->message);
        decide_event(d, "Normal", "Recreating", d->message);
        decide_recreate(d, "Recreating", claim ? claim->uid : sbx->uid);
        return;
    }
    sbx_decide_upkeep(w, s, d);
    if (claim && !sbx) sbx_decide_claim_only(a, s, cfg, claim, d);
    else sbx_decide_bound(a, w, s, claim, sbx, d);
}

static void sbx_decide(const backend_policy *p, arena *a, const worker *w, const observed *o, const void *obs,
                       const decide_config *c, const char *hash, decision *d) {
    const obs_sandboxes *s = sbx_obs(obs);
    const sandbox_policy_cfg *cfg = p->cfg;
    const char *claim_name = instance_name(a, w, c);
    const obs_claim *claim = s->nclaims ? &s->claims[0] : NULL;
    for (size_t i = 0; i < s->nclaims; i++)
        if (strcmp(s->claims[i].name, claim_name) == 0) claim = &s->claims[i];
    const obs_sandbox *sbx = live_sandbox(s);
    d->backend = p->name;
    if (sbx) d->instance = (worker_instance){"Sandbox", sbx->name, claim ? claim->name : sbx->claim_name, sbx->pod_ip};
    else if (claim) d->instance = (worker_instance){"Sandbox", NULL, claim->name, NULL};

    size_t live = 0;
    for (size_t i = 0; i < s->nsandboxes; i++) live += !s->sandboxes[i].deleting;
    if (live > 1) {
        /* Which one is the Worker? Guessing could delete the wrong agent's state: stop, say so. */
        d->phase = PHASE_NONE;
        d->message = arena_sprintf(a, "%zu Sandboxes are labelled for this Worker; remove the extra ones by hand", live);
        decide_warn(w, d, "MultipleSandboxes", d->message);
        set_ready(d, "False", "MultipleSandboxes", d->message);
        return;
    }
    if (w->state == STATE_STOPPED || (w->state == STATE_SLEEPING && !cfg->pause)) sbx_decide_release(a, w, s, claim, sbx, d);
    else if (w->state == STATE_SLEEPING) sbx_decide_pause(a, claim, sbx, d);
    else if (!claim && !sbx) sbx_decide_create(a, w, o, s, cfg, claim_name, d);
    else sbx_decide_running(a, w, s, cfg, claim, sbx, hash, d);
}

/* ---- beside the instance ---- */

/* Whoever acts: a deps conflict beside a running sandbox keeps the phase of the sandbox and
 * says why nothing more is done for it; Stopped with nothing of the sandbox backend left (a
 * Worker switched from sandbox to pod too), the token object goes, where it was written. */
static void sbx_settle(const backend_policy *p, const worker *w, const void *obs, decision *d) {
    (void)p;
    const obs_sandboxes *s = sbx_obs(obs);
    if (s->deps_conflict && d->synced.reason && strcmp(d->synced.reason, "WorkerDepsConflict") == 0 &&
        (!d->message || !*d->message))
        d->message = s->deps_conflict;
    if (w->state == STATE_STOPPED && !sbx_count(obs) && s->token_present && !s->deps_conflict)
        decide_action(d, ACT_DELETE_DEPS_TOKEN, deps_live_path(w, s), NULL, 0);
}

/* Worker deletion: the worker-deps objects go too (also where they were before a move) — or,
 * with neither the backend nor storage configured, an Event says they are left. */
static void sbx_deleted(const backend_policy *p, arena *a, const worker *w, const void *obs, decision *d) {
    const obs_sandboxes *s = sbx_obs(obs);
    const sandbox_policy_cfg *cfg = p->cfg;
    const char *rec = w->status_deps_path;
    int moved = rec && *rec && (!s->deps_path || strcmp(rec, s->deps_path) != 0);
    if (p->enabled || cfg->deps_storage) {
        decide_action(d, ACT_DELETE_DEPS_ALL, s->deps_path, NULL, 0);
        if (moved) decide_action(d, ACT_DELETE_DEPS_ALL, rec, NULL, 0);
    } else if (rec && *rec) {
        decide_event(d, "Warning", "WorkerDepsLeft",
                     arena_sprintf(a, "the worker-deps objects under %s are left in the bucket: the sandbox backend "
                                      "is disabled and no worker-deps storage is configured", rec));
    }
}

/* The sandbox a blocked switch protects keeps running, so its token must stay fresh: the one
 * action of its as-is decision that is kept. */
static void sbx_blocked(const decision *as_is, decision *d) {
    for (size_t i = 0; i < as_is->nactions; i++)
        if (as_is->actions[i].kind == ACT_REFRESH_TOKEN) decide_action(d, ACT_REFRESH_TOKEN, as_is->actions[i].name, NULL, 0);
}

/* "SandboxClaim X and Sandbox Y": what of the sandbox backend exists for the Worker. */
static const char *sandbox_instances_named(arena *a, const obs_sandboxes *s) {
    const char *claim = s->nclaims ? s->claims[0].name : NULL;
    const char *sbx = s->nsandboxes ? s->sandboxes[0].name : NULL;
    if (claim && sbx) return arena_sprintf(a, "SandboxClaim %s and Sandbox %s", claim, sbx);
    return claim ? arena_sprintf(a, "SandboxClaim %s", claim) : arena_sprintf(a, "Sandbox %s", sbx ? sbx : "?");
}

/* The sandbox backend is disabled, yet the Worker has sandbox instances (made before it was
 * turned off). They are observed through read-only watches and never touched — the controller
 * has no right to, and removing an agent on a configuration change would be destructive — so
 * status says why nothing more happens and what the operator can do. */
static const char *sbx_disabled_message(const backend_policy *p, arena *a, const void *obs, int deleting) {
    const obs_sandboxes *s = sbx_obs(obs);
    const sandbox_policy_cfg *cfg = p->cfg;
    const char *what = sandbox_instances_named(a, s);
    const char *why = cfg && cfg->off_why ? arena_sprintf(a, "off (HICLAW_SANDBOX_ENABLED=auto: %s)", cfg->off_why)
                                          : "disabled (HICLAW_SANDBOX_ENABLED=false)";
    return arena_sprintf(a, "%s of this Worker exist%s but the sandbox backend is %s: "
                            "nothing more is done for %s%s; enable it (HICLAW_SANDBOX_ENABLED=true) or remove %s by hand",
                         what, s->nclaims + s->nsandboxes > 1 ? "" : "s", why,
                         s->nclaims + s->nsandboxes > 1 ? "them" : "it", deleting ? " and the finalizer stays" : "", what);
}

/* Why a sandbox is replaced: its spec hash changed (Recreating), its claim timed out
 * (ClaimFailed), its Sandbox vanished (SandboxLost) or ended (SandboxFailed). */
static const char *const SANDBOX_RECREATE_REASONS[] = {"Recreating", "ClaimFailed", "SandboxLost", "SandboxFailed", NULL};

/* The sandbox backend's policy; enabled per HICLAW_SANDBOX_ENABLED, cfg its settings. */
#define SANDBOX_POLICY(on, cfgp)                                                                          \
    {.name = "sandbox", .noun = "sandbox", .an_instance = "a sandbox instance", .enabled = (on),         \
     .disabled_reason = "SandboxDisabled",                                                               \
     .disabled_spec = "spec.backendRuntime is sandbox but the sandbox backend is disabled "              \
                      "(HICLAW_SANDBOX_ENABLED=false)",                                                  \
     .cfg = (cfgp), .count = sbx_count, .teardown = sbx_teardown, .decide = sbx_decide,                  \
     .settle = sbx_settle, .deleted = sbx_deleted, .blocked = sbx_blocked,                               \
     .disabled_message = sbx_disabled_message, .recreate_reasons = SANDBOX_RECREATE_REASONS}
