/* test_decide.c — the pure decision function: every row of the status table (SPEC section 3)
 * and every branch of the backend switch guard, without a cluster. */

/* The tests' configuration: the real backend table's policies, configured by these settings. */
typedef struct td_cfg {
    const char *prefix;
    int sandbox_enabled;
    int sandbox_pause;
    int deps_storage;
} td_cfg;

static const td_cfg TD_POD = {"hiclaw-", 1, 0, 1};
static const td_cfg TD_PAUSE = {"hiclaw-", 1, 1, 1};
static obs_pod td_pod(const char *phase, int ready, const char *waiting) {
    obs_pod p = {0};
    p.name = "hiclaw-worker-alice";
    p.uid = "pod-uid";
    p.phase = phase;
    p.ready = ready;
    p.waiting_reason = waiting;
    p.waiting_message = waiting ? "back-off restarting" : NULL;
    p.spec_hash = TD_HASH;
    p.pod_ip = "10.0.0.5";
    return p;
}

static int has_action(const decision *d, action_kind k) {
    for (size_t i = 0; i < d->nactions; i++)
        if (d->actions[i].kind == k) return 1;
    return 0;
}

static int creates_anything(const decision *d) {
    return has_action(d, ACT_CREATE_POD) || has_action(d, ACT_CREATE_CLAIM) || has_action(d, ACT_WRITE_DEPS);
}

static int deletes_anything(const decision *d) {
    return has_action(d, ACT_DELETE_POD) || has_action(d, ACT_DELETE_CLAIM) || has_action(d, ACT_DELETE_SANDBOX);
}

static int has_event(const decision *d, const char *reason) {
    for (size_t i = 0; i < d->nevents; i++)
        if (strcmp(d->events[i].reason, reason) == 0) return 1;
    return 0;
}

/* The observations of both backends as the tests write them, in one struct; td_decide hands
 * each backend its part. */
typedef struct td_obs {
    const obs_pod *pods;
    size_t npods;
    const obs_claim *claims;
    size_t nclaims;
    const obs_sandbox *sandboxes;
    size_t nsandboxes;
    const char *deps_path, *mounted_deps_path;
    int deps_observed, token_present;
    int64_t token_refresh_in_ms;
    int deps_present;
    const char *deps_hash, *want_deps_hash, *deps_conflict;
    int sandbox_lost_confirmed;
    int64_t recreate_backoff_ms;
    const char *last_failure, *last_failure_reason;
} td_obs;

/* decide() over the real table's policies (pod, sandbox) as `run` configures them. */
static void td_decide_raw(arena *a, const worker *w, const td_obs *t, const td_cfg *c, const char *pod_hash,
                          const char *sandbox_hash, decision *d) {
    sandbox_policy_cfg *scfg = arena_calloc(a, sizeof *scfg);
    *scfg = (sandbox_policy_cfg){.pause = c->sandbox_pause, .deps_storage = c->deps_storage,
                                 .pool = "hiclaw-worker-pool", .claim_timeout_s = 300};
    backend_policy *pol = arena_calloc(a, 2 * sizeof *pol);
    pol[0] = (backend_policy)POD_POLICY;
    pol[1] = (backend_policy)SANDBOX_POLICY(c->sandbox_enabled, scfg);
    const backend_policy **list = arena_calloc(a, 2 * sizeof *list);
    list[0] = &pol[0], list[1] = &pol[1];
    decide_config dc = {.prefix = c->prefix, .backends = list, .nbackends = 2};
    obs_pods *pods = arena_calloc(a, sizeof *pods);
    *pods = (obs_pods){.pods = t->pods, .npods = t->npods};
    obs_sandboxes *s = arena_calloc(a, sizeof *s);
    *s = (obs_sandboxes){.claims = t->claims, .nclaims = t->nclaims, .sandboxes = t->sandboxes,
                         .nsandboxes = t->nsandboxes, .deps_path = t->deps_path,
                         .mounted_deps_path = t->mounted_deps_path, .deps_observed = t->deps_observed,
                         .token_present = t->token_present, .token_refresh_in_ms = t->token_refresh_in_ms,
                         .deps_present = t->deps_present, .deps_hash = t->deps_hash, .want_deps_hash = t->want_deps_hash,
                         .deps_conflict = t->deps_conflict, .lost_confirmed = t->sandbox_lost_confirmed};
    observed o = {.of = {pods, s}, .recreate_backoff_ms = t->recreate_backoff_ms, .last_failure = t->last_failure,
                  .last_failure_reason = t->last_failure_reason};
    const char *hashes[2] = {pod_hash, sandbox_hash};
    decide(a, w, &o, &dc, hashes, d);
}

static decision td_decide(arena *a, const char *json, const td_obs *o, const td_cfg *c) {
    worker w;
    td_worker(a, json, &w);
    decision d;
    td_decide_raw(a, &w, o, c, TD_HASH, TD_SHASH, &d);
    return d;
}

TEST(decide_pod_status_table) {
    arena a;
    arena_init(&a);
    const char *running = "{" W_BASE ",'spec':{'model':'m'}}";
    td_obs o = {0};

    /* no instance, state Running → Pending, ServiceAccount then Pod */
    decision d = td_decide(&a, running, &o, &TD_POD);
    CHECK_INT_EQ(d.phase, PHASE_PENDING);
    CHECK_STR_EQ(d.ready.status, "False");
    REQUIRE(d.nactions == 2);
    CHECK_INT_EQ(d.actions[0].kind, ACT_ENSURE_SERVICEACCOUNT);
    CHECK_INT_EQ(d.actions[1].kind, ACT_CREATE_POD);
    CHECK_STR_EQ(d.actions[1].name, "hiclaw-worker-alice");
    CHECK_STR_EQ(d.backend, "pod");
    CHECK_STR_EQ(d.synced.status, "True");

    struct {
        const char *phase;
        int ready;
        const char *waiting;
        worker_phase want;
        const char *ready_status;
    } rows[] = {
        {"Pending", 0, NULL, PHASE_STARTING, "False"},
        {"Running", 0, NULL, PHASE_STARTING, "False"},
        {"Running", 1, NULL, PHASE_RUNNING, "True"},
        {"Running", 0, "CrashLoopBackOff", PHASE_FAILED, "False"},
        {"Pending", 0, "ImagePullBackOff", PHASE_FAILED, "False"},
        {"Pending", 0, "ErrImagePull", PHASE_FAILED, "False"},
        {"Pending", 0, "CreateContainerConfigError", PHASE_FAILED, "False"},
        {"Pending", 0, "ContainerCreating", PHASE_STARTING, "False"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        obs_pod p = td_pod(rows[i].phase, rows[i].ready, rows[i].waiting);
        td_obs op = {.pods = &p, .npods = 1};
        d = td_decide(&a, running, &op, &TD_POD);
        CHECK_INT_EQ(d.phase, rows[i].want);
        CHECK_STR_EQ(d.ready.status, rows[i].ready_status);
        CHECK(!creates_anything(&d));
        CHECK(!deletes_anything(&d));
        CHECK_STR_EQ(d.instance.kind, "Pod");
        CHECK_STR_EQ(d.instance.pod_ip, "10.0.0.5");
        if (rows[i].waiting && rows[i].want == PHASE_FAILED) {
            CHECK_CONTAINS(d.message, rows[i].waiting); /* reason + message */
            CHECK_CONTAINS(d.message, "back-off restarting");
        }
    }

    /* Pod Failed/Succeeded → Failed, deleted, recreated with backoff */
    const char *ends[] = {"Failed", "Succeeded"};
    for (int i = 0; i < 2; i++) {
        obs_pod p = td_pod(ends[i], 0, NULL);
        td_obs op = {.pods = &p, .npods = 1};
        d = td_decide(&a, running, &op, &TD_POD);
        CHECK_INT_EQ(d.phase, PHASE_FAILED);
        CHECK(has_action(&d, ACT_DELETE_POD));
        CHECK_STR_EQ(d.actions[0].uid, "pod-uid");
        CHECK(d.backoff);
        CHECK(!has_action(&d, ACT_CREATE_POD));
    }
    td_release(&a);
}

TEST(decide_pod_states_sleeping_stopped) {
    arena a;
    arena_init(&a);
    obs_pod p = td_pod("Running", 1, NULL);
    td_obs with = {.pods = &p, .npods = 1}, none = {0};
    const char *states[] = {"Sleeping", "Stopped"};
    worker_phase rest[] = {PHASE_SLEEPING, PHASE_STOPPED};
    for (int i = 0; i < 2; i++) {
        char json[512];
        snprintf(json, sizeof json, "{" W_BASE ",'spec':{'model':'m','state':'%s'}}", states[i]);
        decision d = td_decide(&a, json, &with, &TD_POD);
        CHECK_INT_EQ(d.phase, PHASE_STOPPING);
        CHECK(has_action(&d, ACT_DELETE_POD));
        CHECK(!has_action(&d, ACT_DELETE_SERVICEACCOUNT)); /* the ServiceAccount is kept */
        /* an instance being deleted while Sleeping/Stopped → Stopping, no second delete */
        obs_pod gone = p;
        gone.deleting = 1;
        td_obs del = {.pods = &gone, .npods = 1};
        d = td_decide(&a, json, &del, &TD_POD);
        CHECK_INT_EQ(d.phase, PHASE_STOPPING);
        CHECK(!deletes_anything(&d));
        /* instance gone → Sleeping / Stopped */
        d = td_decide(&a, json, &none, &TD_POD);
        CHECK_INT_EQ(d.phase, rest[i]);
        CHECK_INT_EQ(d.nactions, 0);
        CHECK(d.instance.kind == NULL);
    }
    td_release(&a);
}

TEST(decide_spec_hash_recreates_only_on_change) {
    arena a;
    arena_init(&a);
    obs_pod p = td_pod("Running", 1, NULL);
    p.spec_hash = "0000000000000000";
    td_obs o = {.pods = &p, .npods = 1};
    decision d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m'}}", &o, &TD_POD);
    CHECK(has_action(&d, ACT_DELETE_POD));
    CHECK(!has_action(&d, ACT_CREATE_POD)); /* delete, wait until gone, then create */
    CHECK(has_event(&d, "Recreating"));
    p.deleting = 1;
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m'}}", &o, &TD_POD);
    CHECK(!creates_anything(&d) && !deletes_anything(&d));
    CHECK_INT_EQ(d.phase, PHASE_PENDING);
    td_release(&a);
}

TEST(decide_finalizer_deletion_and_unmanaged) {
    arena a;
    arena_init(&a);
    td_obs none = {0};
    decision d = td_decide(&a, "{'metadata':{'name':'alice','namespace':'ns','uid':'u','generation':1},'spec':{'model':'m'}}",
                           &none, &TD_POD);
    REQUIRE(d.nactions >= 1);
    CHECK_INT_EQ(d.actions[0].kind, ACT_ADD_FINALIZER); /* first thing, before any instance */

    /* Deletion with a Pod, a claim and a Sandbox: delete all, keep the finalizer. */
    obs_pod p = td_pod("Running", 1, NULL);
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Running", .ready = 1};
    td_obs all = {.pods = &p, .npods = 1, .claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1};
    const char *deleting = "{'metadata':{'name':'alice','namespace':'ns','uid':'u','generation':1,"
                           "'deletionTimestamp':'2026-11-23T00:00:00Z','finalizers':['hiclaw.io/cleanup']},'spec':{'model':'m'}}";
    d = td_decide(&a, deleting, &all, &TD_POD);
    CHECK(has_action(&d, ACT_DELETE_POD) && has_action(&d, ACT_DELETE_CLAIM) && has_action(&d, ACT_DELETE_SANDBOX));
    CHECK(!has_action(&d, ACT_REMOVE_FINALIZER));
    CHECK(!d.done_deleting);
    /* claim deleted before its Sandbox (the delete sequence) */
    size_t ic = 0, is = 0;
    for (size_t i = 0; i < d.nactions; i++) {
        if (d.actions[i].kind == ACT_DELETE_CLAIM) ic = i;
        if (d.actions[i].kind == ACT_DELETE_SANDBOX) is = i;
    }
    CHECK(ic < is);
    /* Still terminating: no new deletes, finalizer stays. */
    p.deleting = cl.deleting = sb.deleting = 1;
    d = td_decide(&a, deleting, &all, &TD_POD);
    CHECK(!deletes_anything(&d) && !has_action(&d, ACT_REMOVE_FINALIZER));
    /* All gone in the cache: first confirm it against the API server (the cache may lag), then
     * deps, ServiceAccount, and the finalizer — in that order. */
    d = td_decide(&a, deleting, &none, &TD_POD);
    REQUIRE(d.nactions == 4);
    CHECK_INT_EQ(d.actions[0].kind, ACT_CONFIRM_INSTANCES_GONE);
    CHECK_INT_EQ(d.actions[1].kind, ACT_DELETE_DEPS_ALL);
    CHECK_INT_EQ(d.actions[2].kind, ACT_DELETE_SERVICEACCOUNT);
    CHECK_INT_EQ(d.actions[3].kind, ACT_REMOVE_FINALIZER);
    CHECK(d.done_deleting);
    /* Without the sandbox backend there are no deps to delete. */
    td_cfg nosbx = {"hiclaw-", 0, 0, 0};
    d = td_decide(&a, deleting, &none, &nosbx);
    CHECK(!has_action(&d, ACT_DELETE_DEPS_ALL) && has_action(&d, ACT_REMOVE_FINALIZER));

    /* containerManaged: false — touch nothing, phase follows spec.state, Ready Unknown. */
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','containerManaged':false,'state':'Sleeping'}}", &all, &TD_POD);
    CHECK_INT_EQ(d.nactions, 0);
    CHECK_INT_EQ(d.phase, PHASE_SLEEPING);
    CHECK_STR_EQ(d.ready.status, "Unknown");
    CHECK_STR_EQ(d.ready.reason, "Unmanaged");
    td_release(&a);
}

TEST(decide_switch_guard_legacy_pod_to_sandbox) {
    arena a;
    arena_init(&a);
    obs_pod p = td_pod("Running", 1, NULL);
    td_obs o = {.pods = &p, .npods = 1};
    /* Seed blocker 2: a legacy Worker (no status.backendRuntime) whose Pod runs. */
    const char *legacy = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'phase':'Running'}}";
    decision d = td_decide(&a, legacy, &o, &TD_POD);
    CHECK_INT_EQ(d.nactions, 0); /* the Pod untouched, nothing created */
    CHECK_STR_EQ(d.synced.status, "False");
    CHECK_STR_EQ(d.synced.reason, "BackendSwitchBlocked");
    CHECK_STR_EQ(d.message, "spec.backendRuntime cannot change from pod to sandbox until the Worker is Stopped");
    CHECK(has_event(&d, "BackendSwitchBlocked"));
    CHECK_INT_EQ(d.phase, PHASE_RUNNING); /* status still tells the truth about the Pod */
    CHECK_STR_EQ(d.backend, "pod");
    CHECK_STR_EQ(d.instance.kind, "Pod");
    /* One Warning per generation: already recorded for generation 2 → no second Event. */
    const char *again = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'phase':'Running',"
                        "'conditions':[{'type':'Synced','status':'False','reason':'BackendSwitchBlocked','message':'x',"
                        "'observedGeneration':2,'lastTransitionTime':'2026-01-01T00:00:00Z'}]}}";
    d = td_decide(&a, again, &o, &TD_POD);
    CHECK_STR_EQ(d.synced.reason, "BackendSwitchBlocked");
    CHECK(!has_event(&d, "BackendSwitchBlocked"));
    /* The same with status.backendRuntime recorded as pod. */
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'pod'}}", &o, &TD_POD);
    CHECK_STR_EQ(d.synced.reason, "BackendSwitchBlocked");
    CHECK(!creates_anything(&d) && !deletes_anything(&d));
    /* Even a Pod that is only starting (or paused, failing) blocks the switch. */
    obs_pod starting = td_pod("Pending", 0, "CrashLoopBackOff");
    td_obs os = {.pods = &starting, .npods = 1};
    d = td_decide(&a, legacy, &os, &TD_POD);
    CHECK_STR_EQ(d.synced.reason, "BackendSwitchBlocked");
    CHECK(!creates_anything(&d) && !deletes_anything(&d));
    /* Stopped: the Pod (backend A) is removed; nothing of D is created. */
    const char *stopped = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Stopped'}}";
    d = td_decide(&a, stopped, &o, &TD_POD);
    CHECK(has_action(&d, ACT_DELETE_POD));
    CHECK(!creates_anything(&d));
    CHECK_INT_EQ(d.phase, PHASE_STOPPING);
    /* Gone and Stopped → Stopped, still nothing created; status keeps the recorded backend. */
    td_obs none = {0};
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Stopped'},'status':{'backendRuntime':'pod'}}",
                  &none, &TD_POD);
    CHECK_INT_EQ(d.phase, PHASE_STOPPED);
    CHECK(!creates_anything(&d));
    CHECK_STR_EQ(d.backend, "pod");
    /* Running again → D creates (deps before claim) and is recorded. */
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'pod'}}",
                  &none, &TD_POD);
    CHECK(has_action(&d, ACT_WRITE_DEPS) && has_action(&d, ACT_CREATE_CLAIM));
    size_t iw = 0, ic = 0;
    for (size_t i = 0; i < d.nactions; i++) {
        if (d.actions[i].kind == ACT_WRITE_DEPS) iw = i;
        if (d.actions[i].kind == ACT_CREATE_CLAIM) ic = i;
    }
    CHECK(iw < ic);
    CHECK_STR_EQ(d.backend, "sandbox");
    td_release(&a);
}

TEST(decide_switch_guard_sandbox_to_pod) {
    arena a;
    arena_init(&a);
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1,
                    .spec_hash = TD_SHASH};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Paused", .paused = 1, .spec_hash = TD_SHASH};
    td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1};
    /* status says sandbox; spec asks pod; a paused Sandbox exists → blocked */
    decision d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'pod'},'status':{'backendRuntime':'sandbox'}}", &o, &TD_POD);
    CHECK_STR_EQ(d.synced.reason, "BackendSwitchBlocked");
    CHECK_STR_EQ(d.message, "spec.backendRuntime cannot change from sandbox to pod until the Worker is Stopped");
    CHECK(!creates_anything(&d) && !deletes_anything(&d) && !has_action(&d, ACT_SET_SANDBOX_PAUSED));
    CHECK_INT_EQ(d.phase, PHASE_SLEEPING);
    /* A claim still Claiming (no Sandbox yet) blocks too, even with status lost (absent field). */
    obs_claim claiming = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Claiming", .replicas = 1, .spec_hash = TD_SHASH};
    td_obs oc = {.claims = &claiming, .nclaims = 1};
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m'}}", &oc, &TD_POD);
    CHECK_STR_EQ(d.synced.reason, "BackendSwitchBlocked");
    CHECK(!creates_anything(&d));
    /* Stopped: claim then Sandbox removed; no Pod. */
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','state':'Stopped'},'status':{'backendRuntime':'sandbox'}}", &o, &TD_POD);
    CHECK(has_action(&d, ACT_DELETE_CLAIM) && has_action(&d, ACT_DELETE_SANDBOX));
    CHECK(!creates_anything(&d));
    /* Both backends present (someone else created one): touch neither unless Stopped. */
    obs_pod p = td_pod("Running", 1, NULL);
    td_obs both = {.pods = &p, .npods = 1, .claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1};
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m'}}", &both, &TD_POD);
    CHECK_STR_EQ(d.synced.status, "False");
    CHECK(!creates_anything(&d) && !deletes_anything(&d));
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','state':'Stopped'}}", &both, &TD_POD);
    CHECK(has_action(&d, ACT_DELETE_POD) && has_action(&d, ACT_DELETE_CLAIM) && has_action(&d, ACT_DELETE_SANDBOX));
    CHECK(!creates_anything(&d));
    td_release(&a);
}

TEST(decide_sandbox_status_table) {
    arena a;
    arena_init(&a);
    const char *sbw = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox'}}";
    td_obs none = {0};
    decision d = td_decide(&a, sbw, &none, &TD_POD);
    CHECK_INT_EQ(d.phase, PHASE_PENDING);
    CHECK(has_action(&d, ACT_WRITE_DEPS) && has_action(&d, ACT_CREATE_CLAIM));

    struct {
        const char *claim_phase;
        int64_t claimed;
        const char *sbx_phase; /* NULL: no Sandbox */
        int ready_known, ready;
        const char *ready_msg;
        worker_phase want;
        const char *ready_status;
    } rows[] = {
        {"", 0, NULL, 0, 0, NULL, PHASE_STARTING, "False"},
        {"Claiming", 0, NULL, 0, 0, NULL, PHASE_STARTING, "False"},
        {"Completed", 0, NULL, 0, 0, NULL, PHASE_FAILED, "False"},           /* timeout / pool missing */
        {"Completed", 1, "Running", 1, 1, NULL, PHASE_RUNNING, "True"},
        {"Completed", 1, "Running", 1, 0, "probe failed", PHASE_FAILED, "False"},
        {"Completed", 1, "Running", 0, 0, NULL, PHASE_STARTING, "False"},
        {"Completed", 1, "Pending", 0, 0, NULL, PHASE_STARTING, "False"},
        {"Completed", 1, "Resuming", 0, 0, NULL, PHASE_STARTING, "False"},
        {"Completed", 1, "Upgrading", 0, 0, NULL, PHASE_STARTING, "False"},
        {"Completed", 1, "", 0, 0, NULL, PHASE_STARTING, "False"},
        {"Completed", 1, "Failed", 0, 0, NULL, PHASE_FAILED, "False"},
        {"Completed", 1, "Succeeded", 0, 0, NULL, PHASE_FAILED, "False"},
        {"Completed", 1, "Terminating", 0, 0, NULL, PHASE_STOPPING, "False"},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = rows[i].claim_phase, .replicas = 1,
                        .claimed = rows[i].claimed, .message = "claim timed out", .spec_hash = TD_SHASH};
        obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = rows[i].sbx_phase, .ready_known = rows[i].ready_known,
                          .ready = rows[i].ready, .ready_message = rows[i].ready_msg, .spec_hash = TD_SHASH,
                          .claim_name = "hiclaw-worker-alice"};
        td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = rows[i].sbx_phase ? 1 : 0,
                      .token_present = 1, .token_refresh_in_ms = 60000, .deps_present = 1};
        d = td_decide(&a, sbw, &o, &TD_POD);
        if (d.phase != rows[i].want) printf("    row %zu: phase %s\n", i, phase_name(d.phase));
        CHECK_INT_EQ(d.phase, rows[i].want);
        CHECK_STR_EQ(d.ready.status, rows[i].ready_status);
        CHECK(!has_action(&d, ACT_CREATE_CLAIM));
        if (rows[i].want == PHASE_FAILED && !rows[i].sbx_phase) {
            CHECK_CONTAINS(d.message, "claim timed out");     /* the claim's message */
            CHECK(has_action(&d, ACT_DELETE_CLAIM) && d.backoff); /* deleted, retried with backoff */
            CHECK_STR_EQ(d.synced.reason, "ClaimFailed");
        }
        if (rows[i].sbx_phase && (strcmp(rows[i].sbx_phase, "Failed") == 0 || strcmp(rows[i].sbx_phase, "Succeeded") == 0))
            CHECK(has_action(&d, ACT_DELETE_CLAIM) && has_action(&d, ACT_DELETE_SANDBOX) && d.backoff);
        if (rows[i].want == PHASE_RUNNING) {
            CHECK_STR_EQ(d.instance.kind, "Sandbox");
            CHECK_STR_EQ(d.instance.name, "sbx-1");
            CHECK_STR_EQ(d.instance.claim_name, "hiclaw-worker-alice");
            CHECK_INT_EQ(d.requeue_after_ms, 60000); /* come back for the token refresh */
            CHECK(!has_action(&d, ACT_REFRESH_TOKEN));
        }
    }
    /* Paused → Sleeping. */
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1, .spec_hash = TD_SHASH};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Paused", .paused = 1, .spec_hash = TD_SHASH};
    td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .token_present = 1, .token_refresh_in_ms = 1};
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Sleeping'}}", &o, &TD_PAUSE);
    CHECK_INT_EQ(d.phase, PHASE_SLEEPING);
    CHECK_INT_EQ(d.nactions, 0);
    /* Running again → resume (paused: false). */
    d = td_decide(&a, sbw, &o, &TD_PAUSE);
    REQUIRE(has_action(&d, ACT_SET_SANDBOX_PAUSED));
    for (size_t i = 0; i < d.nactions; i++)
        if (d.actions[i].kind == ACT_SET_SANDBOX_PAUSED) CHECK_INT_EQ(d.actions[i].flag, 0);
    /* Sleeping with pause on and a running Sandbox → pause it. */
    sb.phase = "Running";
    sb.paused = 0;
    sb.ready = 1;
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Sleeping'}}", &o, &TD_PAUSE);
    REQUIRE(has_action(&d, ACT_SET_SANDBOX_PAUSED));
    CHECK_INT_EQ(d.actions[0].flag, 1);
    CHECK(!deletes_anything(&d));
    /* Sleeping with pause off → claim and Sandbox deleted. */
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Sleeping'}}", &o, &TD_POD);
    CHECK(has_action(&d, ACT_DELETE_CLAIM) && has_action(&d, ACT_DELETE_SANDBOX));
    CHECK(!has_action(&d, ACT_DELETE_DEPS_TOKEN));
    /* Stopped, all gone → the token object goes last. */
    td_obs gone = {.token_present = 1};
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Stopped'},'status':{'backendRuntime':'sandbox'}}",
                  &gone, &TD_POD);
    CHECK_INT_EQ(d.phase, PHASE_STOPPED);
    CHECK(has_action(&d, ACT_DELETE_DEPS_TOKEN));
    /* Token due for refresh → refreshed, the Sandbox untouched. */
    sb.phase = "Running";
    td_obs due = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .token_present = 1, .token_refresh_in_ms = 0};
    d = td_decide(&a, sbw, &due, &TD_POD);
    CHECK(has_action(&d, ACT_REFRESH_TOKEN));
    CHECK(!deletes_anything(&d) && !has_action(&d, ACT_SET_SANDBOX_PAUSED));
    CHECK_INT_EQ(d.phase, PHASE_RUNNING);
    td_release(&a);
}

/* Issue 19 item 4: OpenKruise's own pause (spec.pauseTime reached) while the Worker should run.
 * OpenKruise sets spec.paused=true and never resumes; resuming with paused=false alone leaves the
 * past pauseTime, so OpenKruise pauses again at once — a loop. The resume clears pauseTime in
 * the same patch, and a Warning says what happened, once per occurrence. */
TEST(decide_sandbox_auto_paused_by_openkruise_is_resumed_and_pause_time_cleared) {
    arena a;
    arena_init(&a);
    const char *sbw = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox'}}";
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1,
                    .spec_hash = TD_SHASH};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Paused", .paused = 1, .spec_hash = TD_SHASH,
                      .pause_time = "2026-12-03T10:00:00Z", .pause_time_due = 1};
    td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .token_present = 1,
                .token_refresh_in_ms = 60000};
    decision d = td_decide(&a, sbw, &o, &TD_POD);
    REQUIRE(has_action(&d, ACT_RESUME_SANDBOX_CLEAR_PAUSE_TIME));
    CHECK(!has_action(&d, ACT_SET_SANDBOX_PAUSED)); /* a paused=false alone would loop */
    CHECK(!deletes_anything(&d) && !creates_anything(&d));
    CHECK_STR_EQ(d.ready.reason, "SandboxAutoPaused");
    CHECK_CONTAINS(d.message, "sbx-1");
    CHECK_CONTAINS(d.message, "spec.pauseTime 2026-12-03T10:00:00Z");
    REQUIRE(has_event(&d, "SandboxAutoPaused"));
    for (size_t i = 0; i < d.nevents; i++)
        if (strcmp(d.events[i].reason, "SandboxAutoPaused") == 0) {
            CHECK_STR_EQ(d.events[i].type, "Warning");
            CHECK_CONTAINS(d.events[i].note, "Sandbox sbx-1");
            CHECK_CONTAINS(d.events[i].note, "2026-12-03T10:00:00Z");
            CHECK_CONTAINS(d.events[i].note, "state is Running");
        }
    /* The next reconcile of the same occurrence (status already says so): no second Event. */
    buf esc = BUF_INIT; /* the message in the single-quoted literal: its apostrophes as \u0027 */
    for (const char *p = d.message; *p; p++)
        if (*p == '\'') buf_printf(&esc, "\\u0027");
        else buf_append(&esc, p, 1);
    const char *said = arena_sprintf(&a,
        "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox',"
        "'conditions':[{'type':'Ready','status':'False','reason':'SandboxAutoPaused','message':'%s'}]}}", buf_cstr(&esc));
    buf_free(&esc);
    decision again = td_decide(&a, said, &o, &TD_POD);
    CHECK(has_action(&again, ACT_RESUME_SANDBOX_CLEAR_PAUSE_TIME));
    CHECK(!has_event(&again, "SandboxAutoPaused"));
    /* A later occurrence (another pauseTime) is a new Event. */
    sb.pause_time = "2026-12-03T11:00:00Z";
    again = td_decide(&a, said, &o, &TD_POD);
    CHECK(has_event(&again, "SandboxAutoPaused"));
    /* Still Running in OpenKruise's eyes (the pause just written): resumed the same way. */
    sb.phase = "Running";
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK(has_action(&d, ACT_RESUME_SANDBOX_CLEAR_PAUSE_TIME));
    CHECK_STR_EQ(d.ready.reason, "SandboxAutoPaused");
    /* Paused by someone else with a pauseTime still ahead: resumed, the pauseTime cleared too
     * (else it pauses again when it falls due), but no auto-pause Warning. */
    sb.phase = "Paused";
    sb.pause_time_due = 0;
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK(has_action(&d, ACT_RESUME_SANDBOX_CLEAR_PAUSE_TIME));
    CHECK(!has_event(&d, "SandboxAutoPaused"));
    /* Paused without a pauseTime: the plain resume, as before. */
    sb.pause_time = NULL;
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK(has_action(&d, ACT_SET_SANDBOX_PAUSED) && !has_action(&d, ACT_RESUME_SANDBOX_CLEAR_PAUSE_TIME));
    /* Running, not paused, a pauseTime ahead: left alone (someone scheduled a pause). */
    sb.phase = "Running", sb.paused = 0, sb.ready = 1, sb.ready_known = 1;
    sb.pause_time = "2099-01-01T00:00:00Z";
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK_INT_EQ(d.phase, PHASE_RUNNING);
    CHECK(!has_action(&d, ACT_RESUME_SANDBOX_CLEAR_PAUSE_TIME) && !has_action(&d, ACT_SET_SANDBOX_PAUSED));
    /* Sleeping (pause on) and OpenKruise paused it: nothing to do, Sleeping. */
    sb.phase = "Paused", sb.paused = 1, sb.ready = 0, sb.pause_time = "2026-12-03T10:00:00Z", sb.pause_time_due = 1;
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Sleeping'}}", &o, &TD_PAUSE);
    CHECK_INT_EQ(d.phase, PHASE_SLEEPING);
    CHECK_INT_EQ(d.nactions, 0);
    td_release(&a);
}

/* Sleeping (pause on) while the claim still binds: pausing then makes OpenKruise's claim wait out
 * waitReadyTimeout on a paused sandbox and fail. The pause waits for the claim to finish. */
TEST(decide_sandbox_pause_waits_for_the_claim_to_finish) {
    arena a;
    arena_init(&a);
    const char *sleeping = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Sleeping'},"
                           "'status':{'backendRuntime':'sandbox'}}";
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Claiming", .replicas = 1, .claimed = 0,
                    .message = "Claiming sandboxes: 0/1 claimed", .spec_hash = TD_SHASH};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Running", .ready = 1, .ready_known = 1,
                      .spec_hash = TD_SHASH, .claim_name = "hiclaw-worker-alice"};
    td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .token_present = 1,
                .token_refresh_in_ms = 60000};
    const char *phases[] = {"Claiming", "", NULL};
    for (size_t i = 0; i < 3; i++) {
        cl.phase = phases[i];
        for (int with_sandbox = 0; with_sandbox < 2; with_sandbox++) {
            o.nsandboxes = (size_t)with_sandbox;
            decision d = td_decide(&a, sleeping, &o, &TD_PAUSE);
            CHECK(!has_action(&d, ACT_SET_SANDBOX_PAUSED));
            CHECK(!deletes_anything(&d) && !creates_anything(&d));
            CHECK_INT_EQ(d.phase, PHASE_STARTING);
            CHECK_CONTAINS(d.message, "waiting for claim hiclaw-worker-alice to finish before pausing");
        }
    }
    /* Completed: the Sandbox is paused now. */
    cl.phase = "Completed", cl.claimed = 1;
    o.nsandboxes = 1;
    decision d = td_decide(&a, sleeping, &o, &TD_PAUSE);
    REQUIRE(has_action(&d, ACT_SET_SANDBOX_PAUSED));
    /* Completed without a sandbox (timed out): nothing to pause; the failed claim goes. */
    cl.claimed = 0, cl.message = "Timeout reached after 5m0s, claimed 0/1 sandboxes";
    o.nsandboxes = 0;
    d = td_decide(&a, sleeping, &o, &TD_PAUSE);
    CHECK(has_action(&d, ACT_DELETE_CLAIM));
    CHECK(!has_action(&d, ACT_SET_SANDBOX_PAUSED) && !creates_anything(&d));
    CHECK_INT_EQ(d.phase, PHASE_STOPPING);
    CHECK_CONTAINS(d.message, "Timeout reached");
    td_release(&a);
}

/* Ready=False reason PodCreateFailed: OpenKruise cannot create the sandbox's Pod (admission,
 * quota). Nothing else says why a Worker would be stuck Resuming or Pending for good. */
TEST(decide_sandbox_pod_create_failed_names_the_cause) {
    arena a;
    arena_init(&a);
    const char *sbw = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox'}}";
    const char *denied = "pods \"sbx-1\" is forbidden: ValidatingAdmissionPolicy 'deny' with binding 'deny' denied request: no";
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1,
                    .spec_hash = TD_SHASH};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Resuming", .ready_known = 1, .ready = 0,
                      .ready_reason = "PodCreateFailed", .ready_message = denied, .spec_hash = TD_SHASH};
    td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .token_present = 1,
                .token_refresh_in_ms = 60000};
    const char *phases[] = {"Resuming", "Pending", "Upgrading"};
    for (size_t i = 0; i < 3; i++) {
        sb.phase = phases[i];
        decision d = td_decide(&a, sbw, &o, &TD_POD);
        CHECK_INT_EQ(d.phase, PHASE_FAILED);
        CHECK_STR_EQ(d.ready.status, "False");
        CHECK_STR_EQ(d.ready.reason, "SandboxPodCreateFailed");
        CHECK_CONTAINS(d.message, "OpenKruise cannot create the Pod of Sandbox sbx-1: ");
        CHECK_CONTAINS(d.message, denied);
        CHECK_CONTAINS(d.message, "annotation"); /* what makes it retry at once */
        CHECK(has_event(&d, "SandboxPodCreateFailed"));
        CHECK(!deletes_anything(&d) && !creates_anything(&d)); /* a new claim would meet the same denial */
        CHECK_INT_EQ(d.nactions, 0);
    }
    /* Said already: no second Event. */
    sb.phase = "Resuming";
    const char *said = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox',"
                       "'conditions':[{'type':'Ready','status':'False','reason':'SandboxPodCreateFailed','message':'x'}]}}";
    decision d = td_decide(&a, said, &o, &TD_POD);
    CHECK_STR_EQ(d.ready.reason, "SandboxPodCreateFailed");
    CHECK(!has_event(&d, "SandboxPodCreateFailed"));
    /* The Pod exists now (phase Running), Ready still carries the old error until it is Ready:
     * starting, not failed. */
    sb.phase = "Running";
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK_INT_EQ(d.phase, PHASE_STARTING);
    CHECK(strstr(d.message, denied) == NULL);
    /* The claim's own Sandbox (createOnNoStock) while the claim still binds. */
    cl.phase = "Claiming", cl.claimed = 0, cl.message = "Claiming sandboxes: 0/1 claimed";
    sb.phase = "Pending";
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK_STR_EQ(d.ready.reason, "SandboxPodCreateFailed");
    CHECK_CONTAINS(d.message, denied);
    CHECK_CONTAINS(d.message, "claim hiclaw-worker-alice");
    CHECK(has_event(&d, "SandboxPodCreateFailed"));
    td_release(&a);
}

/* Phase Upgrading comes only with spec.upgradePolicy (a SandboxUpdateOps), never from the
 * claim's in-place image update: Starting, reason SandboxUpgrading, no action. */
TEST(decide_sandbox_upgrading_is_named) {
    arena a;
    arena_init(&a);
    const char *sbw = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox'}}";
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1,
                    .spec_hash = TD_SHASH};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Upgrading", .ready_known = 1, .ready = 0,
                      .ready_reason = "Upgrading", .ready_message = "sandbox is upgrading", .spec_hash = TD_SHASH,
                      .upgrading_reason = "PreUpgrade", .update_ops = "ops-1"};
    td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .token_present = 1,
                .token_refresh_in_ms = 60000};
    decision d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK_INT_EQ(d.phase, PHASE_STARTING);
    CHECK_STR_EQ(d.ready.reason, "SandboxUpgrading");
    CHECK_CONTAINS(d.message, "OpenKruise is upgrading Sandbox sbx-1");
    CHECK_CONTAINS(d.message, "SandboxUpdateOps ops-1");
    CHECK_CONTAINS(d.message, "step PreUpgrade");
    CHECK_INT_EQ(d.nactions, 0);
    /* A failing step (retried by OpenKruise for good): said, with its message. */
    sb.upgrading_reason = "PreUpgradeFailed", sb.upgrading_message = "hook exited 1";
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK_STR_EQ(d.ready.reason, "SandboxUpgrading");
    CHECK_CONTAINS(d.message, "step PreUpgradeFailed: hook exited 1");
    CHECK_CONTAINS(d.message, "retries");
    CHECK_INT_EQ(d.nactions, 0);
    /* Sleeping (pause on): a paused Sandbox woken for an upgrade is not "pausing". */
    sb.paused = 1;
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Sleeping'}}", &o, &TD_PAUSE);
    CHECK_INT_EQ(d.nactions, 0);
    CHECK_INT_EQ(d.phase, PHASE_SLEEPING);
    CHECK_STR_EQ(d.ready.reason, "SandboxUpgrading");
    CHECK_CONTAINS(d.message, "paused again");
    td_release(&a);
}

/* Issue 19 item 3: a non-Running status says what is being waited for and what the reader can
 * do — the pool and the timeout a claim waits on, when a retry comes, where the real cause is. */
TEST(decide_messages_say_what_is_waited_for_and_what_to_do) {
    arena a;
    arena_init(&a);
    const char *sbw = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox'}}";
    const char *podw = "{" W_BASE ",'spec':{'model':'m'}}";
    /* a claim binding: the pool, the timeout, where to look */
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Claiming", .replicas = 1,
                    .message = "Claiming sandboxes: 0/1 claimed", .spec_hash = TD_SHASH};
    td_obs o = {.claims = &cl, .nclaims = 1, .token_present = 1, .token_refresh_in_ms = 60000};
    decision d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK_CONTAINS(d.message, "waiting for claim hiclaw-worker-alice to bind a sandbox from pool hiclaw-worker-pool");
    CHECK_CONTAINS(d.message, "claimTimeout 300 s");
    CHECK_CONTAINS(d.message, "kubectl get sandboxset hiclaw-worker-pool");
    /* a claim that completed without a sandbox: the pool, where the cause is, then when it retries */
    cl.phase = "Completed", cl.message = "Timeout reached after 5m0s, claimed 0/1 sandboxes";
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK_STR_EQ(d.ready.reason, "ClaimFailed");
    CHECK_CONTAINS(d.message, "claim hiclaw-worker-alice completed without a sandbox: Timeout reached");
    CHECK_CONTAINS(d.message, "pool hiclaw-worker-pool had none ready in time");
    CHECK_CONTAINS(d.message, "kubectl describe sandboxclaim hiclaw-worker-alice");
    td_obs waiting = {.recreate_backoff_ms = 40000, .last_failure = d.message, .last_failure_reason = "ClaimFailed"};
    decision later = td_decide(&a, sbw, &waiting, &TD_POD);
    CHECK_CONTAINS(later.message, "claiming again in 40 s");
    CHECK(strstr(later.message, "with backoff") == NULL);
    /* the create sequence names the pool */
    td_obs none = {0};
    d = td_decide(&a, sbw, &none, &TD_POD);
    CHECK_CONTAINS(d.message, "from pool hiclaw-worker-pool (SandboxClaim hiclaw-worker-alice)");
    /* a sandbox running, not ready, with a container message: the reason and where to look */
    cl.phase = "Completed", cl.claimed = 1;
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Running", .ready_known = 1, .ready = 0,
                      .ready_reason = "StartContainerFailed", .ready_message = "back-off 10s restarting failed container=worker",
                      .spec_hash = TD_SHASH};
    td_obs bound = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .token_present = 1,
                    .token_refresh_in_ms = 60000};
    d = td_decide(&a, sbw, &bound, &TD_POD);
    CHECK_CONTAINS(d.message, "Sandbox sbx-1 is running but not ready: StartContainerFailed: back-off");
    CHECK_CONTAINS(d.message, "kubectl describe pod sbx-1");
    sb.phase = "Resuming", sb.ready_reason = NULL, sb.ready_message = NULL;
    d = td_decide(&a, sbw, &bound, &TD_POD);
    CHECK_CONTAINS(d.message, "waiting for OpenKruise to resume Sandbox sbx-1");
    /* resumed, /init or a mount failing (OpenKruise retries): said, not "waiting to become Ready" */
    sb.phase = "Running", sb.init_reason = "Failed", sb.init_message = "mount /mnt/hiclaw/env: exit 1";
    d = td_decide(&a, sbw, &bound, &TD_POD);
    CHECK_INT_EQ(d.phase, PHASE_STARTING);
    CHECK_STR_EQ(d.ready.reason, "SandboxInitFailing");
    CHECK_CONTAINS(d.message, "OpenKruise cannot initialise the agent runtime of Sandbox sbx-1");
    CHECK_CONTAINS(d.message, "mount /mnt/hiclaw/env: exit 1");
    CHECK_INT_EQ(d.nactions, 0);
    sb.init_reason = "Succeeded", sb.init_message = NULL;
    d = td_decide(&a, sbw, &bound, &TD_POD);
    CHECK(strcmp(d.ready.reason, "SandboxInitFailing") != 0);
    sb.init_reason = NULL;
    /* a failed Sandbox: OpenKruise's own words (a vanished Pod, or one that exited) */
    sb.phase = "Failed", sb.status_message = "Pod Not Found";
    d = td_decide(&a, sbw, &bound, &TD_POD);
    CHECK_STR_EQ(d.message, "Sandbox sbx-1 failed: Pod Not Found; replacing it with backoff");
    sb.status_message = NULL;
    /* a Pod that will not start by itself: what to check */
    obs_pod p = td_pod("Running", 0, "CrashLoopBackOff");
    td_obs op = {.pods = &p, .npods = 1};
    d = td_decide(&a, podw, &op, &TD_POD);
    CHECK_CONTAINS(d.message, "CrashLoopBackOff: back-off restarting (Pod hiclaw-worker-alice)");
    CHECK_CONTAINS(d.message, "kubectl logs hiclaw-worker-alice --previous");
    p = td_pod("Pending", 0, "ImagePullBackOff");
    d = td_decide(&a, podw, &op, &TD_POD);
    CHECK_CONTAINS(d.message, "check spec.image");
    p = td_pod("Pending", 0, NULL);
    d = td_decide(&a, podw, &op, &TD_POD);
    CHECK_STR_EQ(d.message, "Pod hiclaw-worker-alice Pending: waiting for it to be scheduled and started");
    p = td_pod("Running", 0, NULL);
    d = td_decide(&a, podw, &op, &TD_POD);
    CHECK_STR_EQ(d.message, "Pod hiclaw-worker-alice is running; waiting for it to become Ready");
    /* a failed Pod waiting out its backoff: when */
    td_obs pw = {.recreate_backoff_ms = 20000, .last_failure = "Pod hiclaw-worker-alice failed: Error; recreating with backoff",
                 .last_failure_reason = "PodFailed"};
    d = td_decide(&a, podw, &pw, &TD_POD);
    CHECK_STR_EQ(d.message, "Pod hiclaw-worker-alice failed: Error; recreating in 20 s");
    td_release(&a);
}

TEST(decide_multiple_sandboxes_deletes_nothing) {
    arena a;
    arena_init(&a);
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1, .spec_hash = TD_SHASH};
    obs_sandbox sb[2] = {{.name = "sbx-1", .uid = "s1", .phase = "Running", .ready = 1, .spec_hash = TD_SHASH},
                         {.name = "sbx-2", .uid = "s2", .phase = "Running", .ready = 1, .spec_hash = TD_SHASH}};
    td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = sb, .nsandboxes = 2};
    const char *states[] = {"Running", "Sleeping", "Stopped"};
    for (int i = 0; i < 3; i++) {
        char json[512];
        snprintf(json, sizeof json, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'%s'},"
                                    "'status':{'phase':'Running','backendRuntime':'sandbox'}}", states[i]);
        decision d = td_decide(&a, json, &o, &TD_POD);
        CHECK_INT_EQ(d.phase, PHASE_NONE); /* phase kept */
        CHECK_STR_EQ(d.synced.reason, "MultipleSandboxes");
        CHECK(has_event(&d, "MultipleSandboxes"));
        CHECK(!deletes_anything(&d) && !creates_anything(&d));
    }
    td_release(&a);
}

TEST(decide_invalid_spec_touches_nothing) {
    arena a;
    arena_init(&a);
    obs_pod p = td_pod("Running", 1, NULL);
    td_obs o = {.pods = &p, .npods = 1};
    const char *bad[] = {
        "{" W_BASE ",'spec':{'model':'m','resources':{'limits':{'cpu':'lots'}}}}",
        "{" W_BASE ",'spec':{'model':'m','resources':{'requests':{'memory':'8Gi'},'limits':{'memory':'1Gi'}}}}",
        "{" W_BASE ",'spec':{'model':'m','image':'bad image'}}",
        "{" W_BASE ",'spec':{'model':'m','labels':{'bad key!':'x'}}}",
        "{" W_BASE ",'spec':{'model':'m','workerName':'../etc'}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        decision d = td_decide(&a, bad[i], &o, &TD_POD);
        CHECK_STR_EQ(d.synced.reason, "InvalidSpec");
        CHECK(!creates_anything(&d) && !deletes_anything(&d));
        CHECK(has_event(&d, "InvalidSpec"));
    }
    td_release(&a);
}

TEST(decide_reserved_env_warns_once_per_generation) {
    arena a;
    arena_init(&a);
    td_obs none = {0};
    decision d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','env':{'HOME':'/x','HICLAW_WORKER_NAME':'y','OK':'1','9bad':'z'}}}",
                           &none, &TD_POD);
    REQUIRE(has_event(&d, "ReservedEnvIgnored"));
    for (size_t i = 0; i < d.nevents; i++)
        if (strcmp(d.events[i].reason, "ReservedEnvIgnored") == 0) {
            CHECK_CONTAINS(d.events[i].note, "HOME");
            CHECK_CONTAINS(d.events[i].note, "HICLAW_WORKER_NAME");
            CHECK_CONTAINS(d.events[i].note, "9bad");
            CHECK_NOT_CONTAINS(d.events[i].note, "OK");
        }
    CHECK(has_action(&d, ACT_CREATE_POD)); /* the Worker still runs, without those keys */
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','env':{'HOME':'/x'}},'status':{'observedGeneration':2}}", &none, &TD_POD);
    CHECK(!has_event(&d, "ReservedEnvIgnored"));
    td_release(&a);
}

TEST(env_build_and_file_quoting) {
    arena a;
    arena_init(&a);
    worker w;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m','workerName':'al','env':{'HOME':'/x','ZED':'z','A_B':'it\\u0027s'}}}", &w);
    worker_env_config c = {.controller_url = "http://ctl:8090", .matrix_url = "", .region = "cn-hz"};
    kv secret_items[] = {{"WORKER_GATEWAY_KEY", "gw-key-1"}, {"WORKER_MATRIX_TOKEN", "mx-tok"}};
    kv_list secret = {secret_items, 2};
    env_list env;
    env_build(&a, &w, &c, &secret, 1, &env);
    const char *got_home = NULL;
    int refs = 0, zed = 0;
    for (size_t i = 0; i < env.n; i++) {
        if (strcmp(env.items[i].name, "HOME") == 0) got_home = env.items[i].value;
        if (env.items[i].secret_key) refs++;
        if (strcmp(env.items[i].name, "ZED") == 0) zed = 1;
        CHECK(strcmp(env.items[i].name, "HICLAW_MATRIX_URL") != 0); /* empty values omitted */
    }
    CHECK_STR_EQ(got_home, "/root/hiclaw-fs/agents/al");
    CHECK_INT_EQ(refs, 3); /* all three credential refs, present or not (optional) */
    CHECK(zed);
    CHECK_INT_EQ(env.nignored, 1);
    buf f = BUF_INIT;
    env_file_write(&f, &env);
    CHECK_CONTAINS(buf_cstr(&f), "export A_B='it'\\''s'\n");
    CHECK_CONTAINS(buf_cstr(&f), "export HICLAW_WORKER_GATEWAY_KEY='gw-key-1'\n");
    CHECK_NOT_CONTAINS(buf_cstr(&f), "HICLAW_FS_SECRET_KEY"); /* absent from the Secret: absent here */
    CHECK(strstr(buf_cstr(&f), "export A_B") < strstr(buf_cstr(&f), "export ZED")); /* sorted */
    buf_free(&f);
    td_release(&a);
}

TEST(leader_decide_expiry_by_local_observation) {
    leader_observation obs;
    memset(&obs, 0, sizeof obs);
    kube_lease l;
    memset(&l, 0, sizeof l);
    CHECK_INT_EQ(leader_decide(&l, 0, "me", &obs, 0), LEADER_CREATE);
    l.holder = "other";
    l.renew_time = "2026-11-23T00:00:00.000000Z";
    l.duration_s = 15;
    /* First sight at t=1000: live, whatever the holder's clock says. */
    CHECK_INT_EQ(leader_decide(&l, 1, "me", &obs, 1000), LEADER_WAIT);
    CHECK_INT_EQ(leader_decide(&l, 1, "me", &obs, 15000), LEADER_WAIT);
    /* Unchanged for more than the lease duration on our clock: expired. */
    CHECK_INT_EQ(leader_decide(&l, 1, "me", &obs, 16001), LEADER_TAKEOVER);
    /* A renewal resets the observation. */
    l.renew_time = "2026-11-23T00:00:10.000000Z";
    CHECK_INT_EQ(leader_decide(&l, 1, "me", &obs, 17000), LEADER_WAIT);
    CHECK_INT_EQ(leader_decide(&l, 1, "me", &obs, 31000), LEADER_WAIT);
    CHECK_INT_EQ(leader_decide(&l, 1, "me", &obs, 32001), LEADER_TAKEOVER);
    /* Released (no holder): take it at once. */
    l.holder = "";
    CHECK_INT_EQ(leader_decide(&l, 1, "me", &obs, 32002), LEADER_TAKEOVER);
    l.holder = "me";
    CHECK_INT_EQ(leader_decide(&l, 1, "me", &obs, 32003), LEADER_RENEW);
}

TEST(decide_recreate_waits_out_the_backoff) {
    arena a;
    arena_init(&a);
    td_obs o = {.recreate_backoff_ms = 8000, .last_failure = "Pod hiclaw-worker-alice failed: Error",
                  .last_failure_reason = "PodFailed"};
    decision d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m'}}", &o, &TD_POD);
    CHECK(!creates_anything(&d));
    CHECK_INT_EQ(d.phase, PHASE_FAILED);
    CHECK_CONTAINS(d.message, "failed: Error");
    CHECK_CONTAINS(d.message, "retrying in 8 s");
    CHECK_STR_EQ(d.synced.reason, "PodFailed");
    CHECK_INT_EQ(d.requeue_after_ms, 8000);
    /* the sandbox create sequence waits too (no deps written, no claim) */
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'}}", &o, &TD_POD);
    CHECK(!creates_anything(&d));
    /* backoff over: create */
    td_obs none = {0};
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m'}}", &none, &TD_POD);
    CHECK(has_action(&d, ACT_CREATE_POD));
    td_release(&a);
}

/* Failpoints and logs name actions by action_kind_name(): a kind added without a name would
 * make its failpoint unreachable ("after-unknown"). */
TEST(decide_every_action_kind_has_a_name) {
    static const action_kind all[] = {
        ACT_ADD_FINALIZER, ACT_REMOVE_FINALIZER, ACT_ENSURE_SERVICEACCOUNT, ACT_DELETE_SERVICEACCOUNT,
        ACT_CONFIRM_INSTANCES_GONE, ACT_CREATE_POD, ACT_DELETE_POD, ACT_WRITE_DEPS, ACT_REFRESH_TOKEN, ACT_WRITE_ENV,
        ACT_CREATE_CLAIM, ACT_DELETE_CLAIM, ACT_DELETE_SANDBOX, ACT_SET_SANDBOX_PAUSED, ACT_DELETE_DEPS_TOKEN,
        ACT_DELETE_DEPS_ALL, ACT_DELETE_DEPS_MOVED};
    for (size_t k = 0; k < sizeof all / sizeof *all; k++) CHECK(strcmp(action_kind_name(all[k]), "unknown") != 0);
    CHECK_STR_EQ(action_kind_name(ACT_WRITE_DEPS), "write-deps");
    CHECK_STR_EQ(action_kind_name(NULL), "unknown");
}

/* Found on the real bed: OpenKruise locks a pool sandbox (labels it for the Worker, still Running
 * and Ready with the pool's image) well before the claim completes: the in-place image update,
 * /init and the mounts come after. Until the claim says Completed the Worker is Starting, never
 * Running; an in-place update in progress (Ready False, reason InplaceUpdating) is Starting, not
 * Failed. A container that cannot start (StartContainerFailed) still is Failed. */
TEST(decide_sandbox_is_starting_until_openkruise_finishes_the_claim) {
    arena a;
    arena_init(&a);
    const char *sbw = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox'}}";
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Claiming", .replicas = 1, .claimed = 0,
                    .message = "Claiming sandboxes: 0/1 claimed", .spec_hash = TD_SHASH};
    obs_sandbox sb = {.name = "pool-x1", .uid = "s1", .phase = "Running", .ready_known = 1, .ready = 1,
                      .spec_hash = TD_SHASH, .claim_name = "hiclaw-worker-alice", .pod_ip = "127.1.0.9"};
    td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .token_present = 1,
                  .token_refresh_in_ms = 60000, .deps_present = 1};
    decision d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK_INT_EQ(d.phase, PHASE_STARTING);
    CHECK_STR_EQ(d.ready.status, "False");
    CHECK_CONTAINS(d.message, "Claiming sandboxes: 0/1 claimed");
    CHECK_STR_EQ(d.container_state, "Claiming");
    CHECK_STR_EQ(d.instance.name, "pool-x1"); /* the sandbox it is binding is named */
    CHECK(!deletes_anything(&d) && !creates_anything(&d));

    cl.phase = "Completed";
    cl.claimed = 1;
    sb.ready = 0;
    sb.ready_reason = "InplaceUpdating";
    sb.ready_message = "inplace update is incompleted";
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK_INT_EQ(d.phase, PHASE_STARTING);
    CHECK_CONTAINS(d.message, "inplace update is incompleted");
    CHECK(!deletes_anything(&d));

    sb.ready_reason = "StartContainerFailed";
    sb.ready_message = "back-off 10s restarting failed container=worker";
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK_INT_EQ(d.phase, PHASE_FAILED);
    CHECK_CONTAINS(d.message, "restarting failed container=worker");

    sb.ready = 1;
    sb.ready_reason = "PodReady";
    sb.ready_message = "";
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK_INT_EQ(d.phase, PHASE_RUNNING);
    td_release(&a);
}

/* The kubelet expands $(VAR) in a container's literal env values ($$ is a literal $): a Pod must
 * give its container the bytes a sandbox's env file gives (SPEC 6), so every '$' of a literal
 * value is written as "$$". Values without '$' render (and hash) exactly as before, so existing
 * Pods are not recreated by the fix; a Pod whose env had a '$' is, since its container saw other
 * bytes. */
TEST(pod_env_values_escape_dollar_for_the_kubelet) {
    arena a;
    arena_init(&a);
    worker w;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m','env':{'PRICE':'5$','CMD':'echo $(HOME) $$X','PLAIN':'abc'}}}", &w);
    worker_env_config c = {0};
    env_list env;
    env_build(&a, &w, &c, NULL, 1, &env);
    instance_settings ps = {"ctl", "hiclaw-", "aud"};
    buf b = BUF_INIT;
    pod_render(&b, &a, &w, &env, &ps, TD_HASH);
    cJSON *pod = cJSON_Parse(buf_cstr(&b));
    REQUIRE(pod != NULL);
    const cJSON *ctr = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(pod, "spec"), "containers"), 0);
    const char *price = NULL, *cmd = NULL, *plain = NULL;
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItem(ctr, "env")) {
        const char *n = json_str(e, "name");
        if (strcmp(n, "PRICE") == 0) price = json_str(e, "value");
        if (strcmp(n, "CMD") == 0) cmd = json_str(e, "value");
        if (strcmp(n, "PLAIN") == 0) plain = json_str(e, "value");
    }
    CHECK_STR_EQ(price, "5$$");
    CHECK_STR_EQ(cmd, "echo $$(HOME) $$$$X");
    CHECK_STR_EQ(plain, "abc");
    cJSON_Delete(pod);
    buf_free(&b);
    /* the hash of a Worker without '$' is unchanged by the escaping; with one, it changes */
    char h1[17], h2[17];
    worker w2;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m','env':{'PLAIN':'abc'}}}", &w2);
    env_build(&a, &w2, &c, NULL, 1, &env);
    pod_spec_hash(&a, &w2, &env, &ps, h1);
    CHECK_STR_EQ(h1, "a1fbe2dd9e48f391"); /* the value before the escaping existed */
    env_build(&a, &w, &c, NULL, 1, &env);
    pod_spec_hash(&a, &w, &env, &ps, h2);
    CHECK(strcmp(h2, "139391c15c5ccb6c") != 0); /* ditto: a Pod that saw "$(HOME)" expanded is replaced */
    td_release(&a);
}

/* Status holds messages redacted (secrets never reach status); the unchanged-check must compare
 * redacted with redacted, conditions too, or a message quoting a secret rewrites status on every
 * reconcile. */
TEST(status_same_compares_redacted_messages_and_conditions) {
    arena a;
    arena_init(&a);
    log_register_secret("s3cr3t-Value-for-status-77");
    worker w;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m'},'status':{'phase':'Failed','observedGeneration':2,"
                  "'message':'boom: [REDACTED]','containerState':'CrashLoopBackOff',"
                  "'conditions':[{'type':'Ready','status':'False','reason':'CrashLoopBackOff','message':'boom: [REDACTED]',"
                  "'observedGeneration':2,'lastTransitionTime':'2026-01-01T00:00:00Z'},"
                  "{'type':'Synced','status':'True','reason':'Reconciled','message':'',"
                  "'observedGeneration':2,'lastTransitionTime':'2026-01-01T00:00:00Z'}]}}",
              &w);
    decision d;
    memset(&d, 0, sizeof d);
    d.phase = PHASE_FAILED;
    d.message = "boom: s3cr3t-Value-for-status-77";
    d.container_state = "CrashLoopBackOff";
    d.ready = (decided_cond){"False", "CrashLoopBackOff", "boom: s3cr3t-Value-for-status-77"};
    d.synced = (decided_cond){"True", "Reconciled", ""};
    CHECK_STR_EQ(w.message, "boom: " LOG_REDACTED);
    CHECK(status_same(&w, &d, 2));
    /* a real change is still a change */
    d.ready.message = "boom: something else";
    CHECK(!status_same(&w, &d, 2));
    td_release(&a);
}

/* A sandbox Worker's next token refresh can be 16 h away: the requeue is the earlier of that and
 * the periodic resync (~10 min), so a rotated Secret still reaches it within the resync. */
TEST(reconcile_schedule_requeues_at_the_earlier_of_refresh_and_resync) {
    decision d;
    memset(&d, 0, sizeof d);
    reconcile_result r = {RECONCILE_DONE, 0, 0};
    d.requeue_after_ms = 16LL * 3600 * 1000;
    reconcile_schedule(&r, &d, 0, 0, 600000);
    CHECK_INT_EQ(r.outcome, RECONCILE_AFTER);
    CHECK_INT_EQ(r.requeue_after_ms, 600000);
    /* a near refresh wins over the resync */
    r = (reconcile_result){RECONCILE_DONE, 0, 0};
    d.requeue_after_ms = 30000;
    reconcile_schedule(&r, &d, 0, 0, 600000);
    CHECK_INT_EQ(r.requeue_after_ms, 30000);
    /* no request: the resync */
    r = (reconcile_result){RECONCILE_DONE, 0, 0};
    d.requeue_after_ms = 0;
    reconcile_schedule(&r, &d, 0, 0, 590000);
    CHECK_INT_EQ(r.requeue_after_ms, 590000);
    /* a recreate backoff is kept as it is */
    r = (reconcile_result){RECONCILE_DONE, 0, 0};
    d.backoff = 1;
    reconcile_schedule(&r, &d, 0, 20000, 600000);
    CHECK_INT_EQ(r.requeue_after_ms, 20000);
    /* deleting: only what the decision asked for (deletes in flight) */
    r = (reconcile_result){RECONCILE_DONE, 0, 0};
    d.backoff = 0;
    d.requeue_after_ms = 2000;
    reconcile_schedule(&r, &d, 1, 0, 600000);
    CHECK_INT_EQ(r.requeue_after_ms, 2000);
}

/* HICLAW_SANDBOX_ENABLED=false with a Worker whose sandbox was made before: the claims and
 * Sandboxes are still observed (read-only watches). Nothing of them is touched, no Pod is made
 * beside them (the switch guard holds), status says why nothing more is done, and a Worker being
 * deleted keeps its finalizer while its sandbox (an agent holding credentials) lives. */
TEST(decide_sandbox_disabled_with_sandbox_instances_touches_nothing) {
    arena a;
    arena_init(&a);
    const td_cfg off = {"hiclaw-", 0, 0, 0};
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1,
                    .spec_hash = TD_SHASH};
    obs_sandbox sb = {.name = "pool-x7k2p", .uid = "s1", .phase = "Running", .ready_known = 1, .ready = 1,
                      .spec_hash = TD_SHASH, .claim_name = "hiclaw-worker-alice", .pod_ip = "10.0.0.9"};
    td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .token_present = 1,
                  .token_refresh_in_ms = 0};
    const char *specs[] = {
        "{" W_BASE ",'spec':{'model':'m'},'status':{'backendRuntime':'sandbox'}}",                     /* switched to pod */
        "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox'}}",
        "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Stopped'},'status':{'backendRuntime':'sandbox'}}",
        "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Sleeping'},'status':{'backendRuntime':'sandbox'}}",
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        decision d = td_decide(&a, specs[i], &o, &off);
        CHECK(!creates_anything(&d) && !deletes_anything(&d));
        CHECK(!has_action(&d, ACT_REFRESH_TOKEN) && !has_action(&d, ACT_SET_SANDBOX_PAUSED));
        CHECK(!has_action(&d, ACT_DELETE_DEPS_TOKEN));
        CHECK_STR_EQ(d.synced.status, "False");
        CHECK_STR_EQ(d.synced.reason, "SandboxDisabled");
        CHECK_CONTAINS(d.message, "HICLAW_SANDBOX_ENABLED");
        CHECK_CONTAINS(d.message, "SandboxClaim hiclaw-worker-alice");
        CHECK(has_event(&d, "SandboxDisabled"));
        /* status describes the sandbox that really runs */
        CHECK_STR_EQ(d.backend, "sandbox");
        CHECK_STR_EQ(d.instance.kind, "Sandbox");
        CHECK_STR_EQ(d.instance.name, "pool-x7k2p");
        CHECK_INT_EQ(d.phase, PHASE_RUNNING);
    }
    /* Deletion: the finalizer stays while the sandbox lives; nothing of it is deleted. */
    const char *deleting = "{'metadata':{'name':'alice','namespace':'ns','uid':'u1','generation':1,"
                           "'deletionTimestamp':'2026-11-23T00:00:00Z','finalizers':['hiclaw.io/cleanup']},"
                           "'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox'}}";
    decision d = td_decide(&a, deleting, &o, &off);
    CHECK(!deletes_anything(&d));
    CHECK(!has_action(&d, ACT_REMOVE_FINALIZER) && !has_action(&d, ACT_DELETE_DEPS_ALL) && !d.done_deleting);
    CHECK_STR_EQ(d.synced.reason, "SandboxDisabled");
    CHECK_CONTAINS(d.message, "remove SandboxClaim hiclaw-worker-alice");
    /* ... a Pod of it is still removed (the pod backend is on) */
    obs_pod p = td_pod("Running", 1, NULL);
    td_obs op = o;
    op.pods = &p;
    op.npods = 1;
    d = td_decide(&a, deleting, &op, &off);
    CHECK(has_action(&d, ACT_DELETE_POD) && !has_action(&d, ACT_DELETE_CLAIM) && !has_action(&d, ACT_DELETE_SANDBOX));
    CHECK(!has_action(&d, ACT_REMOVE_FINALIZER));
    /* once removed by hand, the finalizer goes */
    td_obs none = {0};
    d = td_decide(&a, deleting, &none, &off);
    CHECK(has_action(&d, ACT_REMOVE_FINALIZER) && d.done_deleting);
    CHECK(!has_action(&d, ACT_DELETE_DEPS_ALL)); /* no storage configured: nothing to reach */
    /* with worker-deps storage configured, a disabled backend still removes the deps objects */
    const td_cfg off_storage = {"hiclaw-", 0, 0, 1};
    d = td_decide(&a, deleting, &none, &off_storage);
    CHECK(has_action(&d, ACT_DELETE_DEPS_ALL) && has_action(&d, ACT_REMOVE_FINALIZER));
    td_release(&a);
}

/* A claim Completed with all replicas claimed whose Sandbox is gone never heals by itself (the
 * claim is kept: ttlAfterCompleted -1s). The loss is reported, the claim deleted and a sandbox
 * claimed again with the recreate backoff — but only once the shell confirmed the loss against
 * the API server: right after a claim completes the Sandbox watch may simply not have delivered
 * the Sandbox yet, and deleting on a cache lag would throw a fresh sandbox away. */
TEST(decide_completed_claim_whose_sandbox_is_gone_is_reclaimed_once_confirmed) {
    arena a;
    arena_init(&a);
    const char *sbw = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox'}}";
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1,
                    .message = "Successfully claimed 1/1 sandboxes", .spec_hash = TD_SHASH};
    td_obs o = {.claims = &cl, .nclaims = 1, .token_present = 1, .token_refresh_in_ms = 60000, .deps_present = 1};
    decision d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK(!deletes_anything(&d) && !creates_anything(&d));
    CHECK(d.recheck); /* the shell is asked to look in the API server */
    CHECK_INT_EQ(d.phase, PHASE_STARTING);
    CHECK(d.requeue_after_ms > 0 && d.requeue_after_ms <= 5000);
    /* the API server has no Sandbox for it either */
    o.sandbox_lost_confirmed = 1;
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK(!d.recheck);
    REQUIRE(has_action(&d, ACT_DELETE_CLAIM));
    CHECK_STR_EQ(d.actions[0].uid, "c1");
    CHECK(!creates_anything(&d));
    CHECK(d.backoff);
    CHECK_INT_EQ(d.phase, PHASE_FAILED);
    CHECK_STR_EQ(d.synced.reason, "SandboxLost");
    CHECK_CONTAINS(d.message, "hiclaw-worker-alice");
    CHECK(has_event(&d, "SandboxLost"));
    td_release(&a);
}

/* ---- worker-deps: ownership, location, content (issue 15) ---- */

#define DEPS_NOW "p/workers-deps/ns/alice/"
#define DEPS_OLD "p/workers-deps/ns/al-old/"

static const action *find_action(const decision *d, action_kind k) {
    for (size_t i = 0; i < d->nactions; i++)
        if (d->actions[i].kind == k) return &d->actions[i];
    return NULL;
}

/* Objects owned by another Worker (same workerName in the namespace, or another install sharing
 * the bucket) are never written or deleted: the conflict is reported and no claim is made. */
TEST(decide_deps_owned_by_another_worker_are_not_touched) {
    arena a;
    arena_init(&a);
    const char *sbw = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox'}}";
    const char *why = "s3://deps/" DEPS_NOW "env/env belongs to Worker ns/bob (UID u2)";
    td_obs o = {.deps_path = DEPS_NOW, .deps_observed = 1, .deps_conflict = why};
    decision d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK(!creates_anything(&d) && !deletes_anything(&d));
    CHECK(!has_action(&d, ACT_REFRESH_TOKEN) && !has_action(&d, ACT_WRITE_ENV) && !has_action(&d, ACT_DELETE_DEPS_TOKEN));
    CHECK_STR_EQ(d.synced.status, "False");
    CHECK_STR_EQ(d.synced.reason, "WorkerDepsConflict");
    CHECK_CONTAINS(d.message, "ns/bob (UID u2)");
    CHECK(has_event(&d, "WorkerDepsConflict"));
    /* with an instance running: no refresh, no rewrite, the instance described as it is */
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1,
                    .spec_hash = TD_SHASH};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Running", .ready_known = 1, .ready = 1, .spec_hash = TD_SHASH};
    td_obs run = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .deps_path = DEPS_NOW,
                    .deps_observed = 1, .token_present = 1, .token_refresh_in_ms = 0, .deps_conflict = why};
    d = td_decide(&a, sbw, &run, &TD_POD);
    CHECK(!has_action(&d, ACT_REFRESH_TOKEN) && !has_action(&d, ACT_WRITE_ENV) && !deletes_anything(&d));
    CHECK_STR_EQ(d.synced.reason, "WorkerDepsConflict");
    CHECK_INT_EQ(d.phase, PHASE_RUNNING);
    CHECK_CONTAINS(d.message, "ns/bob (UID u2)");
    /* Stopped: the token is not deleted either */
    td_obs stopped = {.deps_path = DEPS_NOW, .deps_observed = 1, .token_present = 1, .deps_conflict = why};
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Stopped'},"
                      "'status':{'backendRuntime':'sandbox'}}", &stopped, &TD_POD);
    CHECK(!has_action(&d, ACT_DELETE_DEPS_TOKEN));
    td_release(&a);
}

/* deps_present / deps_hash: a lost or foreign-edited env/env is rewritten in place — the sandbox
 * is not recreated for it (its spec hash already covers every env change). */
TEST(decide_lost_or_changed_env_object_is_rewritten_in_place) {
    arena a;
    arena_init(&a);
    const char *sbw = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox',"
                      "'workerDepsPath':'" DEPS_NOW "'}}";
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1,
                    .spec_hash = TD_SHASH};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Running", .ready_known = 1, .ready = 1, .spec_hash = TD_SHASH};
    td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .deps_path = DEPS_NOW,
                  .deps_observed = 1, .token_present = 1, .token_refresh_in_ms = 60000, .deps_present = 0,
                  .want_deps_hash = "feedfacefeedface"};
    decision d = td_decide(&a, sbw, &o, &TD_POD);
    const action *wr = find_action(&d, ACT_WRITE_ENV);
    REQUIRE(wr != NULL);
    CHECK_STR_EQ(wr->name, DEPS_NOW);
    CHECK(!deletes_anything(&d) && !creates_anything(&d));
    CHECK_INT_EQ(d.phase, PHASE_RUNNING);
    o.deps_present = 1;
    o.deps_hash = "0000000000000000"; /* someone else's content */
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK(has_action(&d, ACT_WRITE_ENV));
    o.deps_hash = ""; /* written by a version that recorded no hash */
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK(has_action(&d, ACT_WRITE_ENV));
    o.deps_hash = "feedfacefeedface";
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK(!has_action(&d, ACT_WRITE_ENV));
    CHECK_INT_EQ(d.nactions, 0);
    /* storage could not be read: no rewrite on doubt */
    o.deps_observed = 0;
    o.deps_present = 0;
    d = td_decide(&a, sbw, &o, &TD_POD);
    CHECK(!has_action(&d, ACT_WRITE_ENV));
    td_release(&a);
}

/* Where the deps were written is recorded (status.workerDepsPath). When the Worker's path moves
 * (workerName changed, prefix or layout changed) the old token and env file are removed before
 * the new ones are written; the token refresh and the Stopped cleanup act on the recorded path,
 * the one the running sandbox mounts; deletion removes both. */
TEST(decide_deps_follow_the_recorded_path) {
    arena a;
    arena_init(&a);
    const char *moved = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox',"
                        "'workerDepsPath':'" DEPS_OLD "'}}";
    td_obs none = {.deps_path = DEPS_NOW, .deps_observed = 1};
    decision d = td_decide(&a, moved, &none, &TD_POD);
    REQUIRE(d.nactions >= 4);
    CHECK_INT_EQ(d.actions[0].kind, ACT_DELETE_DEPS_MOVED);
    CHECK_STR_EQ(d.actions[0].name, DEPS_OLD);
    const action *wd = find_action(&d, ACT_WRITE_DEPS);
    REQUIRE(wd != NULL);
    CHECK_STR_EQ(wd->name, DEPS_NOW);
    CHECK_INT_EQ(d.actions[d.nactions - 1].kind, ACT_CREATE_CLAIM);
    /* not moved: no delete */
    const char *same = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox',"
                       "'workerDepsPath':'" DEPS_NOW "'}}";
    d = td_decide(&a, same, &none, &TD_POD);
    CHECK(!has_action(&d, ACT_DELETE_DEPS_MOVED));
    /* refresh at the recorded path (the instance mounts it) */
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1,
                    .spec_hash = TD_SHASH};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Running", .ready_known = 1, .ready = 1, .spec_hash = TD_SHASH};
    td_obs due = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .deps_path = DEPS_NOW,
                    .deps_observed = 1, .token_present = 1, .token_refresh_in_ms = 0, .deps_present = 1};
    d = td_decide(&a, moved, &due, &TD_POD);
    const action *rf = find_action(&d, ACT_REFRESH_TOKEN);
    /* (the hash matches: same spec) */
    REQUIRE(rf != NULL);
    CHECK_STR_EQ(rf->name, DEPS_OLD);
    /* Stopped after a sandbox→pod switch, nothing left running: the token goes, at the recorded path */
    td_obs stopped = {.deps_path = DEPS_NOW, .deps_observed = 1, .token_present = 1};
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','state':'Stopped'},'status':{'backendRuntime':'sandbox',"
                      "'workerDepsPath':'" DEPS_OLD "'}}", &stopped, &TD_POD);
    const action *dt = find_action(&d, ACT_DELETE_DEPS_TOKEN);
    REQUIRE(dt != NULL);
    CHECK_STR_EQ(dt->name, DEPS_OLD);
    CHECK_INT_EQ(d.phase, PHASE_STOPPED);
    /* the same with a pod Worker never recorded: still the token at the current path */
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','state':'Stopped'},'status':{'backendRuntime':'sandbox'}}",
                  &stopped, &TD_POD);
    dt = find_action(&d, ACT_DELETE_DEPS_TOKEN);
    REQUIRE(dt != NULL);
    CHECK_STR_EQ(dt->name, DEPS_NOW);
    /* deletion: both paths */
    const char *deleting = "{'metadata':{'name':'alice','namespace':'ns','uid':'u1','generation':1,"
                           "'deletionTimestamp':'2026-11-23T00:00:00Z','finalizers':['hiclaw.io/cleanup']},"
                           "'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'workerDepsPath':'" DEPS_OLD "'}}";
    td_obs gone = {.deps_path = DEPS_NOW};
    d = td_decide(&a, deleting, &gone, &TD_POD);
    int now = 0, old = 0;
    for (size_t i = 0; i < d.nactions; i++)
        if (d.actions[i].kind == ACT_DELETE_DEPS_ALL) {
            now += str_eq(d.actions[i].name, DEPS_NOW);
            old += str_eq(d.actions[i].name, DEPS_OLD);
        }
    CHECK(now == 1 && old == 1);
    /* the backend disabled and no storage: the objects are left, and that is said once */
    const td_cfg off = {"hiclaw-", 0, 0, 0};
    d = td_decide(&a, deleting, &gone, &off);
    CHECK(!has_action(&d, ACT_DELETE_DEPS_ALL) && has_action(&d, ACT_REMOVE_FINALIZER));
    CHECK(has_event(&d, "WorkerDepsLeft"));
    td_release(&a);
}

/* A blocked sandbox→pod switch leaves the sandbox running — and so must keep its token fresh:
 * the guard refreshes the token of the instance it protects (and comes back for it). */
TEST(decide_blocked_switch_still_refreshes_the_sandbox_token) {
    arena a;
    arena_init(&a);
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1,
                    .spec_hash = "0000000000000000"};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Running", .ready_known = 1, .ready = 1,
                      .spec_hash = "0000000000000000"};
    td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .deps_path = DEPS_NOW,
                  .deps_observed = 1, .token_present = 1, .token_refresh_in_ms = 0, .deps_present = 1};
    const char *blocked = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'pod'},'status':{'backendRuntime':'sandbox',"
                          "'workerDepsPath':'" DEPS_NOW "'}}";
    decision d = td_decide(&a, blocked, &o, &TD_POD);
    CHECK_STR_EQ(d.synced.reason, "BackendSwitchBlocked");
    const action *rf = find_action(&d, ACT_REFRESH_TOKEN);
    REQUIRE(rf != NULL);
    CHECK_STR_EQ(rf->name, DEPS_NOW);
    CHECK(!creates_anything(&d) && !deletes_anything(&d));
    CHECK_INT_EQ(d.nactions, 1);
    /* not due: no refresh, but a requeue for when it is */
    o.token_refresh_in_ms = 3600000;
    d = td_decide(&a, blocked, &o, &TD_POD);
    CHECK(!has_action(&d, ACT_REFRESH_TOKEN));
    CHECK_INT_EQ(d.requeue_after_ms, 3600000);
    td_release(&a);
}

/* Status describes the instance that really exists: a blocked switch keeps the instance running
 * whatever spec.state says (it is only removed once Stopped), and the InvalidSpec, Unmanaged and
 * both-backends branches, which leave instances alone, still name them. */
TEST(decide_status_describes_the_instance_that_really_exists) {
    arena a;
    arena_init(&a);
    obs_pod p = td_pod("Running", 1, NULL);
    td_obs op = {.pods = &p, .npods = 1};
    /* pod runs, switch to sandbox blocked, state Sleeping: the Pod still runs */
    decision d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox','state':'Sleeping'},"
                               "'status':{'backendRuntime':'pod'}}", &op, &TD_POD);
    CHECK_STR_EQ(d.synced.reason, "BackendSwitchBlocked");
    CHECK(!deletes_anything(&d));
    CHECK_INT_EQ(d.phase, PHASE_RUNNING);
    CHECK_STR_EQ(d.ready.status, "True");
    CHECK_STR_EQ(d.instance.kind, "Pod");
    /* sandbox runs, switch to pod blocked, state Sleeping (pause off): still Running */
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1,
                    .spec_hash = TD_SHASH};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Running", .ready_known = 1, .ready = 1, .spec_hash = TD_SHASH};
    td_obs os = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .token_present = 1,
                   .token_refresh_in_ms = 60000};
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','state':'Sleeping'},'status':{'backendRuntime':'sandbox'}}", &os,
                  &TD_POD);
    CHECK_STR_EQ(d.synced.reason, "BackendSwitchBlocked");
    CHECK(!deletes_anything(&d));
    CHECK_INT_EQ(d.phase, PHASE_RUNNING);
    CHECK_STR_EQ(d.instance.name, "sbx-1");
    /* InvalidSpec with a Pod running */
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','image':'bad image'}}", &op, &TD_POD);
    CHECK_STR_EQ(d.synced.reason, "InvalidSpec");
    CHECK_STR_EQ(d.instance.kind, "Pod");
    CHECK_STR_EQ(d.instance.name, "hiclaw-worker-alice");
    CHECK_STR_EQ(d.instance.pod_ip, "10.0.0.5");
    /* Unmanaged with a Pod left from before */
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','containerManaged':false}}", &op, &TD_POD);
    CHECK_STR_EQ(d.ready.reason, "Unmanaged");
    CHECK_STR_EQ(d.instance.kind, "Pod");
    CHECK_STR_EQ(d.instance.name, "hiclaw-worker-alice");
    /* both backends */
    td_obs both = {.pods = &p, .npods = 1, .claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1};
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m'}}", &both, &TD_POD);
    CHECK_STR_EQ(d.synced.reason, "BackendSwitchBlocked");
    CHECK(d.instance.kind != NULL);
    /* and with nothing running, nothing is named */
    td_obs none = {0};
    d = td_decide(&a, "{" W_BASE ",'spec':{'model':'m','image':'bad image'}}", &none, &TD_POD);
    CHECK(d.instance.kind == NULL);
    td_release(&a);
}

/* Found on the real bed: right after a workerName change the Worker cache can still show the
 * status written before the deps moved; a token refresh then wrote the token back at the old
 * path, and recorded it again. The live claim's sub-paths are what the sandbox mounts: refreshes
 * and rewrites go there. */
TEST(decide_token_refresh_goes_where_the_live_claim_mounts) {
    arena a;
    arena_init(&a);
    const char *sbw = "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},"
                      "'status':{'backendRuntime':'sandbox','workerDepsPath':'p/workers-deps/ns/old/'}}";
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Completed", .replicas = 1, .claimed = 1,
                    .spec_hash = TD_SHASH, .deps_path = "p/workers-deps/ns/new/"};
    obs_sandbox sb = {.name = "sbx-1", .uid = "s1", .phase = "Running", .ready_known = 1, .ready = 1,
                      .spec_hash = TD_SHASH, .claim_name = "hiclaw-worker-alice"};
    td_obs o = {.claims = &cl, .nclaims = 1, .sandboxes = &sb, .nsandboxes = 1, .token_present = 1,
                  .token_refresh_in_ms = 0, .deps_present = 1, .deps_path = "p/workers-deps/ns/new/",
                  .mounted_deps_path = "p/workers-deps/ns/new/"};
    decision d = td_decide(&a, sbw, &o, &TD_POD);
    int refreshed = 0;
    for (size_t i = 0; i < d.nactions; i++)
        if (d.actions[i].kind == ACT_REFRESH_TOKEN) {
            CHECK_STR_EQ(d.actions[i].name, "p/workers-deps/ns/new/");
            refreshed = 1;
        }
    CHECK(refreshed);
    td_release(&a);
}
