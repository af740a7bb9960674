/* test_agent_sandbox.c — the agent-sandbox backend (backend/agent_sandbox.c): its status table,
 * Sleeping/Running as operatingMode, its teardown (the Sandbox, then its Pod, never left to the
 * garbage collector), the switch guard across all three backends, and the projection of a real
 * agent-sandbox Sandbox (status as the v0.5.6+ controller writes it). */

#define TA_HASH "cccccccccccccccc"

/* decide() over the three real policies: pod, sandbox (enabled, no pause), agent-sandbox. */
static void ta_decide_w(arena *a, const worker *w, const obs_pods *pods, const obs_sandboxes *sbx, const obs_asbs *asb,
                        int asb_enabled, decision *d) {
    sandbox_policy_cfg *scfg = arena_calloc(a, sizeof *scfg);
    *scfg = (sandbox_policy_cfg){.deps_storage = 1};
    asb_policy_cfg *acfg = arena_calloc(a, sizeof *acfg);
    backend_policy *pol = arena_calloc(a, 3 * sizeof *pol);
    pol[0] = (backend_policy)POD_POLICY;
    pol[1] = (backend_policy)SANDBOX_POLICY(1, scfg);
    pol[2] = (backend_policy)AGENT_SANDBOX_POLICY(asb_enabled, acfg);
    const backend_policy **list = arena_calloc(a, 3 * sizeof *list);
    list[0] = &pol[0], list[1] = &pol[1], list[2] = &pol[2];
    decide_config dc = {.prefix = "hiclaw-", .backends = list, .nbackends = 3};
    observed o = {.of = {pods, sbx, asb}};
    const char *hashes[3] = {TD_HASH, TD_SHASH, TA_HASH};
    decide(a, w, &o, &dc, hashes, d);
}

static decision ta_decide(arena *a, const char *json, const obs_asbs *asb) {
    worker w;
    td_worker(a, json, &w);
    decision d;
    ta_decide_w(a, &w, NULL, NULL, asb, 1, &d);
    return d;
}

static obs_asb ta_sandbox(void) {
    obs_asb s = {0};
    s.name = "hiclaw-worker-alice";
    s.uid = "asb-uid";
    s.spec_hash = TA_HASH;
    s.current = 1;
    s.ready = "True";
    s.ready_reason = "DependenciesReady";
    s.pod_ip = "127.0.0.9";
    return s;
}

static obs_asb_pod ta_pod(const char *owner_uid) {
    obs_asb_pod p = {0};
    p.name = "hiclaw-worker-alice";
    p.uid = "asb-pod-uid";
    p.owner_uid = owner_uid;
    return p;
}

static size_t ta_count(const decision *d, action_kind k) {
    size_t n = 0;
    for (size_t i = 0; i < d->nactions; i++) n += d->actions[i].kind == k;
    return n;
}

#define TA_RUNNING "{" W_BASE ",'spec':{'model':'m','backendRuntime':'agent-sandbox'}}"
#define TA_STATE(s) "{" W_BASE ",'spec':{'model':'m','backendRuntime':'agent-sandbox','state':'" s "'}}"

TEST(agent_sandbox_status_table) {
    arena a;
    arena_init(&a);
    obs_asbs none = {0};
    /* nothing: the ServiceAccount, then the Sandbox */
    decision d = ta_decide(&a, TA_RUNNING, &none);
    CHECK_INT_EQ(d.phase, PHASE_PENDING);
    REQUIRE(d.nactions == 2);
    CHECK(d.actions[0].kind == ACT_ENSURE_SERVICEACCOUNT);
    CHECK(d.actions[1].kind == ACT_CREATE_AGENT_SANDBOX);
    CHECK_STR_EQ(d.actions[1].name, "hiclaw-worker-alice");
    CHECK_STR_EQ(d.backend, "agent-sandbox");

    /* Ready True for this generation: Running, named with the Sandbox's first pod IP */
    obs_asb s = ta_sandbox();
    obs_asb_pod p = ta_pod("asb-uid");
    obs_asbs one = {&s, 1, &p, 1, 0};
    d = ta_decide(&a, TA_RUNNING, &one);
    CHECK_INT_EQ(d.phase, PHASE_RUNNING);
    CHECK_STR_EQ(d.ready.status, "True");
    CHECK_INT_EQ(d.nactions, 0);
    CHECK_STR_EQ(d.instance.kind, "Sandbox");
    CHECK_STR_EQ(d.instance.pod_ip, "127.0.0.9");

    /* Ready False, or Ready of an older generation (a resume in flight): Starting, never Running */
    s.ready = "False", s.ready_message = "Pod is not Ready";
    d = ta_decide(&a, TA_RUNNING, &one);
    CHECK_INT_EQ(d.phase, PHASE_STARTING);
    CHECK_CONTAINS(d.message, "Pod is not Ready");
    s = ta_sandbox(), s.current = 0;
    d = ta_decide(&a, TA_RUNNING, &one);
    CHECK_INT_EQ(d.phase, PHASE_STARTING);

    /* Ready False because its Pod crash-loops (agent-sandbox says only "not Ready"): Failed,
     * from the Pod's container state, nothing deleted */
    s = ta_sandbox(), s.ready = "False", s.ready_reason = "DependenciesNotReady";
    p.waiting_reason = "CrashLoopBackOff", p.waiting_message = "back-off 10s restarting failed container";
    d = ta_decide(&a, TA_RUNNING, &one);
    CHECK_INT_EQ(d.phase, PHASE_FAILED);
    CHECK_STR_EQ(d.ready.reason, "CrashLoopBackOff");
    CHECK_STR_EQ(d.container_state, "CrashLoopBackOff");
    CHECK_INT_EQ(d.nactions, 0);
    p = ta_pod("asb-uid");

    /* Finished: Failed, the Sandbox and its Pod replaced with backoff */
    s = ta_sandbox(), s.finished = 1, s.finished_message = "Pod succeeded";
    d = ta_decide(&a, TA_RUNNING, &one);
    CHECK_INT_EQ(d.phase, PHASE_FAILED);
    CHECK_STR_EQ(d.ready.reason, "SandboxFinished");
    CHECK_INT_EQ(d.backoff, 1);
    CHECK_STR_EQ(d.recreate, "SandboxFinished");
    REQUIRE(d.nactions == 2);
    CHECK(d.actions[0].kind == ACT_DELETE_AGENT_SANDBOX && d.actions[1].kind == ACT_DELETE_AGENT_SANDBOX_POD);

    /* a changed spec hash: the Sandbox, then its Pod (in that order: agent-sandbox would make the
     * Pod again while its Sandbox exists), Recreating */
    s = ta_sandbox(), s.spec_hash = "0000000000000000";
    d = ta_decide(&a, TA_RUNNING, &one);
    CHECK_STR_EQ(d.ready.reason, "Recreating");
    REQUIRE(d.nactions == 2);
    CHECK(d.actions[0].kind == ACT_DELETE_AGENT_SANDBOX && d.actions[1].kind == ACT_DELETE_AGENT_SANDBOX_POD);
    CHECK_STR_EQ(d.actions[0].uid, "asb-uid");
    CHECK_STR_EQ(d.actions[1].uid, "asb-pod-uid");
    CHECK(!ta_count(&d, ACT_CREATE_AGENT_SANDBOX));

    /* the Sandbox going: wait, create nothing */
    s = ta_sandbox(), s.deleting = 1;
    d = ta_decide(&a, TA_RUNNING, &one);
    CHECK_INT_EQ(d.phase, PHASE_PENDING);
    CHECK_INT_EQ(d.nactions, 0);
    td_release(&a);
}

TEST(agent_sandbox_sleeping_suspends_and_running_resumes) {
    arena a;
    arena_init(&a);
    obs_asb s = ta_sandbox();
    obs_asb_pod p = ta_pod("asb-uid");
    obs_asbs one = {&s, 1, &p, 1, 0};
    /* Sleeping: operatingMode Suspended, the Sandbox kept; Stopping until agent-sandbox says Suspended */
    decision d = ta_decide(&a, TA_STATE("Sleeping"), &one);
    CHECK_INT_EQ(d.phase, PHASE_STOPPING);
    REQUIRE(d.nactions == 1);
    CHECK(d.actions[0].kind == ACT_SET_AGENT_SANDBOX_MODE);
    CHECK_INT_EQ(d.actions[0].flag, 1);
    CHECK(!ta_count(&d, ACT_DELETE_AGENT_SANDBOX));
    /* asked, Suspended=True, no Pod left: Sleeping */
    s.suspend_wanted = 1, s.suspended = 1, s.ready = "False", s.ready_reason = "SandboxSuspended", s.pod_ip = NULL;
    obs_asbs suspended = {&s, 1, NULL, 0, 0};
    d = ta_decide(&a, TA_STATE("Sleeping"), &suspended);
    CHECK_INT_EQ(d.phase, PHASE_SLEEPING);
    CHECK_INT_EQ(d.nactions, 0);
    /* Suspended=True but of an older generation: not yet */
    s.current = 0;
    d = ta_decide(&a, TA_STATE("Sleeping"), &suspended);
    CHECK_INT_EQ(d.phase, PHASE_STOPPING);
    s.current = 1;
    /* Running again: operatingMode Running, the same Sandbox */
    d = ta_decide(&a, TA_RUNNING, &suspended);
    REQUIRE(d.nactions == 1);
    CHECK(d.actions[0].kind == ACT_SET_AGENT_SANDBOX_MODE);
    CHECK_INT_EQ(d.actions[0].flag, 0);
    CHECK_INT_EQ(d.phase, PHASE_SLEEPING);
    CHECK_CONTAINS(d.message, "resuming");
    /* Sleeping with nothing: nothing made */
    obs_asbs none = {0};
    d = ta_decide(&a, TA_STATE("Sleeping"), &none);
    CHECK_INT_EQ(d.phase, PHASE_SLEEPING);
    CHECK_INT_EQ(d.nactions, 0);
    td_release(&a);
}

TEST(agent_sandbox_stopped_and_deletion_remove_the_pod_too) {
    arena a;
    arena_init(&a);
    obs_asb s = ta_sandbox();
    obs_asb_pod p = ta_pod("asb-uid");
    obs_asbs one = {&s, 1, &p, 1, 0};
    decision d = ta_decide(&a, TA_STATE("Stopped"), &one);
    CHECK_INT_EQ(d.phase, PHASE_STOPPING);
    REQUIRE(d.nactions == 2);
    CHECK(d.actions[0].kind == ACT_DELETE_AGENT_SANDBOX && d.actions[1].kind == ACT_DELETE_AGENT_SANDBOX_POD);
    /* the Sandbox gone, its Pod lingering (no garbage collector yet): still Stopping, the Pod deleted */
    obs_asbs pod_only = {NULL, 0, &p, 1, 0};
    d = ta_decide(&a, TA_STATE("Stopped"), &pod_only);
    CHECK_INT_EQ(d.phase, PHASE_STOPPING);
    REQUIRE(d.nactions == 1);
    CHECK(d.actions[0].kind == ACT_DELETE_AGENT_SANDBOX_POD);
    obs_asbs none = {0};
    d = ta_decide(&a, TA_STATE("Stopped"), &none);
    CHECK_INT_EQ(d.phase, PHASE_STOPPED);
    /* deletion: the finalizer stays while the Pod does */
    const char *deleting = "{'metadata':{'name':'alice','namespace':'ns','uid':'u1','resourceVersion':'7','generation':2,"
                           "'finalizers':['hiclaw.io/cleanup'],'deletionTimestamp':'2026-01-01T00:00:00Z'},"
                           "'spec':{'model':'m','backendRuntime':'agent-sandbox'}}";
    d = ta_decide(&a, deleting, &pod_only);
    CHECK(ta_count(&d, ACT_DELETE_AGENT_SANDBOX_POD) == 1);
    CHECK(!ta_count(&d, ACT_REMOVE_FINALIZER));
    d = ta_decide(&a, deleting, &none);
    CHECK(ta_count(&d, ACT_CONFIRM_INSTANCES_GONE) == 1 && ta_count(&d, ACT_REMOVE_FINALIZER) == 1);
    td_release(&a);
}

TEST(agent_sandbox_running_pod_without_its_sandbox_waits_for_the_api_server) {
    arena a;
    arena_init(&a);
    obs_asb_pod p = ta_pod("old-uid");
    /* the cache shows a Pod but no Sandbox: ask the API server before deleting it, create nothing */
    obs_asbs pod_only = {NULL, 0, &p, 1, 0};
    decision d = ta_decide(&a, TA_RUNNING, &pod_only);
    CHECK_INT_EQ(d.recheck, 1);
    CHECK_INT_EQ(d.nactions, 0);
    CHECK_INT_EQ(d.phase, PHASE_PENDING);
    /* confirmed: no Sandbox there, the orphan Pod goes; still no create while it exists */
    pod_only.orphans_confirmed = 1;
    d = ta_decide(&a, TA_RUNNING, &pod_only);
    REQUIRE(d.nactions == 1);
    CHECK(d.actions[0].kind == ACT_DELETE_AGENT_SANDBOX_POD);
    td_release(&a);
}

TEST(agent_sandbox_switch_guard_spans_all_three_backends) {
    arena a;
    arena_init(&a);
    worker w;
    obs_asb s = ta_sandbox();
    obs_asb_pod p = ta_pod("asb-uid");
    obs_asbs one = {&s, 1, &p, 1, 0};
    decision d;
    /* agent-sandbox → pod and → sandbox, Running: blocked, nothing created or deleted */
    static const char *const to[] = {"pod", "sandbox"};
    for (int i = 0; i < 2; i++) {
        td_worker(&a, arena_sprintf(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'%s'},"
                                         "'status':{'backendRuntime':'agent-sandbox'}}", to[i]), &w);
        ta_decide_w(&a, &w, NULL, NULL, &one, 1, &d);
        CHECK_STR_EQ(d.synced.reason, "BackendSwitchBlocked");
        CHECK_CONTAINS(d.message, arena_sprintf(&a, "from agent-sandbox to %s", to[i]));
        CHECK_INT_EQ(d.nactions, 0);
        CHECK_STR_EQ(d.backend, "agent-sandbox");
        CHECK_INT_EQ(d.phase, PHASE_RUNNING);
    }
    /* pod → agent-sandbox: blocked while the Pod exists */
    obs_pod pod = {0};
    pod.name = "hiclaw-worker-alice", pod.uid = "pod-uid", pod.phase = "Running", pod.ready = 1, pod.spec_hash = TD_HASH;
    obs_pods pods = {&pod, 1};
    td_worker(&a, TA_RUNNING, &w);
    ta_decide_w(&a, &w, &pods, NULL, NULL, 1, &d);
    CHECK_CONTAINS(d.message, "from pod to agent-sandbox");
    CHECK(!ta_count(&d, ACT_CREATE_AGENT_SANDBOX));
    /* only the Sandbox's Pod left (its Sandbox gone): still an instance, so a Pod is not created */
    obs_asbs pod_only = {NULL, 0, &p, 1, 1};
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'pod'},'status':{'backendRuntime':'agent-sandbox'}}",
              &w);
    ta_decide_w(&a, &w, NULL, NULL, &pod_only, 1, &d);
    CHECK(!ta_count(&d, ACT_CREATE_POD));
    CHECK_STR_EQ(d.synced.reason, "BackendSwitchBlocked");
    /* instances of pod and agent-sandbox at once: touch none */
    td_worker(&a, TA_RUNNING, &w);
    ta_decide_w(&a, &w, &pods, NULL, &one, 1, &d);
    CHECK_INT_EQ(d.nactions, 0);
    CHECK_CONTAINS(d.message, "Pod and agent-sandbox Sandbox");
    td_release(&a);
}

TEST(agent_sandbox_disabled_leaves_its_sandbox_alone) {
    arena a;
    arena_init(&a);
    worker w;
    obs_asb s = ta_sandbox();
    obs_asbs one = {&s, 1, NULL, 0, 0};
    decision d;
    td_worker(&a, TA_STATE("Stopped"), &w);
    ta_decide_w(&a, &w, NULL, NULL, &one, 0, &d);
    CHECK_INT_EQ(d.nactions, 0);
    CHECK_STR_EQ(d.synced.reason, "AgentSandboxDisabled");
    CHECK_CONTAINS(d.message, "HICLAW_AGENT_SANDBOX_ENABLED=false");
    /* asked for while disabled, nothing exists: nothing made, said why */
    obs_asbs none = {0};
    td_worker(&a, TA_RUNNING, &w);
    ta_decide_w(&a, &w, NULL, NULL, &none, 0, &d);
    CHECK(!ta_count(&d, ACT_CREATE_AGENT_SANDBOX));
    CHECK_STR_EQ(d.synced.reason, "AgentSandboxDisabled");
    td_release(&a);
}

/* The projection, from a Sandbox as the real agent-sandbox controller writes it. */
TEST(agent_sandbox_projection_reads_conditions_and_pod_ips) {
    const char *running =
        "{\"metadata\":{\"name\":\"hiclaw-worker-alice\",\"namespace\":\"ns\",\"uid\":\"u-s\",\"generation\":3,"
        "\"labels\":{\"hiclaw.io/worker\":\"alice\",\"hiclaw.io/backend\":\"agent-sandbox\"},"
        "\"annotations\":{\"hiclaw.io/spec-hash\":\"cccccccccccccccc\"}},"
        "\"spec\":{\"operatingMode\":\"Running\"},"
        "\"status\":{\"conditions\":[{\"type\":\"Suspended\",\"status\":\"False\",\"reason\":\"NotSuspended\","
        "\"observedGeneration\":3},{\"type\":\"Ready\",\"status\":\"True\",\"reason\":\"DependenciesReady\","
        "\"message\":\"Pod is Ready\",\"observedGeneration\":3}],\"podIPs\":[\"127.247.0.1\"]}}";
    cJSON *obj = cJSON_Parse(running);
    cJSON *proj = asb_project(obj);
    obs_asb o;
    asb_observe_one(proj, &o);
    CHECK_STR_EQ(o.ready, "True");
    CHECK_INT_EQ(o.current, 1);
    CHECK_INT_EQ(o.suspended, 0);
    CHECK_INT_EQ(o.suspend_wanted, 0);
    CHECK_STR_EQ(o.pod_ip, "127.247.0.1");
    CHECK_STR_EQ(o.spec_hash, "cccccccccccccccc");
    cJSON_Delete(proj);
    /* the suspend asked (generation 4), the conditions still of generation 3: not current */
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(obj, "metadata"), "generation", cJSON_CreateNumber(4));
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(obj, "spec"), "operatingMode", cJSON_CreateString("Suspended"));
    proj = asb_project(obj);
    asb_observe_one(proj, &o);
    CHECK_INT_EQ(o.current, 0);
    CHECK_INT_EQ(o.suspend_wanted, 1);
    cJSON_Delete(proj);
    cJSON_Delete(obj);
}

/* Setup follows discovery: served → on (auto), its two caches watched; not served → auto off,
 * saying why (and a Worker asking for it is told so), true a configuration error (exit 2), false
 * off with nothing watched. */
TEST(agent_sandbox_setup_follows_discovery) {
    REQUIRE(fake_server() == 0);
    fake_reset();
    controller ctl;
    fake_controller(&ctl);
    REQUIRE(ctl.nbackends == 3);
    backend *on = &ctl.backends[2];
    CHECK_STR_EQ(on->ops->name, "agent-sandbox");
    CHECK_INT_EQ(on->policy.enabled, 1);
    CHECK_INT_EQ(on->ncaches, 2);
    CHECK(on->caches[0].resource == &KUBE_AGENT_SANDBOXES);
    CHECK_STR_EQ(on->caches[1].selector_extra, ",hiclaw.io/backend=agent-sandbox");
    static const int modes[] = {-1, 1, 0};
    for (size_t i = 0; i < 3; i++) {
        wc_cfg conf = g_fake_conf; /* read only by the setup */
        conf.agent_sandbox_mode = modes[i];
        fake_unserved("GET", "/apis/agents.x-k8s.io/v1beta1/namespaces/ns/sandboxes", 1);
        backend b = {.ops = &agent_sandbox_backend_ops, .host = &ctl.host, .index = 2};
        wc_err err;
        err_clear(&err);
        int rc = asb_setup(&b, &conf, &err);
        if (modes[i] == 1) {
            CHECK_INT_EQ(rc, -1);
            CHECK_INT_EQ(err.code, WC_EINVAL);
            CHECK_CONTAINS(err.msg, "sandboxes.agents.x-k8s.io is not installed");
        } else {
            CHECK_INT_EQ(rc, 0);
            CHECK_INT_EQ(b.policy.enabled, 0);
            CHECK_INT_EQ(b.ncaches, 0);
        }
        if (modes[i] == -1) CHECK_CONTAINS(b.policy.disabled_spec, "HICLAW_AGENT_SANDBOX_ENABLED=auto): agent-sandbox is not installed");
        if (modes[i] == 0) CHECK_CONTAINS(b.policy.disabled_spec, "HICLAW_AGENT_SANDBOX_ENABLED=false");
        asb_release(&b);
    }
    fake_controller_free(&ctl);
}
