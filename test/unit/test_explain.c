/* test_explain.c — `worker-controller explain`: the explanation rendered from decisions decide()
 * itself made (one per case the issue names: a running Pod, a blocked switch, a claim waiting, a
 * worker-deps conflict), secrets never printed, its arguments; then its gathering against the
 * fake API server and S3 — run's decision, reads only — and the read-only clients. */

/* The tree explain builds for a decision (label: the Worker's hiclaw.io/controller label). */
static cJSON *tx_build(arena *a, const worker *w, const decision *d, const char *label) {
    explain_backend_view views[2] = {{"pod", 1, 1, NULL, TD_HASH}, {"sandbox", 1, 1, NULL, TD_SHASH}};
    explain_input in = {.w = w, .controller = "ctl", .label = label, .secret_name = "hiclaw-creds-alice",
                        .secret_state = 1, .backends = views, .nbackends = 2, .d = d};
    return explain_build(a, &in);
}

/* decide() on the Worker and observations, then both outputs: *text and the JSON's next.* */
typedef struct tx_case {
    cJSON *tree, *json;  /* the tree; the --output json text parsed back */
    char *text;
} tx_case;

static void tx_run(arena *a, const char *worker_json, const td_obs *o, tx_case *out) {
    worker *w = arena_calloc(a, sizeof *w);
    td_worker(a, worker_json, w);
    decision *d = arena_calloc(a, sizeof *d);
    td_decide_raw(a, w, o, &TD_POD, TD_HASH, TD_SHASH, d);
    out->tree = tx_build(a, w, d, "ctl");
    out->text = explain_output(out->tree, 0);
    char *js = explain_output(out->tree, 1);
    out->json = cJSON_Parse(js);
    free(js);
}

static void tx_free(tx_case *c) {
    cJSON_Delete(c->tree);
    cJSON_Delete(c->json);
    free(c->text);
}

#define TX_NEXT(c, key) json_str_at((c).json, "next." key)

TEST(explain_running_pod_worker_says_nothing_to_do) {
    arena a;
    arena_init(&a);
    obs_pod pod = td_pod("Running", 1, NULL);
    td_obs o = {.pods = &pod, .npods = 1};
    tx_case c;
    tx_run(&a, "{" W_BASE ",'spec':{'model':'m'},'status':{'backendRuntime':'pod'}}", &o, &c);
    REQUIRE(c.json);
    CHECK_STR_EQ(TX_NEXT(c, "reason"), "Running");
    CHECK_STR_EQ(TX_NEXT(c, "summary"), "nothing: the Worker runs as its spec asks");
    CHECK_STR_EQ(TX_NEXT(c, "status.phase"), "Running");
    CHECK_STR_EQ(TX_NEXT(c, "status.ready.status"), "True");
    CHECK_INT_EQ(cJSON_GetArraySize(json_at(c.json, "next.actions")), 0);
    CHECK(cJSON_IsTrue(json_at(c.json, "next.handled")));
    CHECK_CONTAINS(c.text, "reason:  Running");
    CHECK_CONTAINS(c.text, "does:    nothing: the Worker runs as its spec asks");
    CHECK_CONTAINS(c.text, "status:  phase Running, backend pod, Ready=True (Running), Synced=True (Reconciled)");
    /* the backoff cannot be seen from outside the running controller: said, not guessed */
    CHECK(cJSON_IsFalse(json_at(c.json, "backoff.visible")));
    CHECK_CONTAINS(c.text, "held in the running controller's memory, not visible here");
    tx_free(&c);
    td_release(&a);
}

TEST(explain_blocked_switch_names_the_reason) {
    arena a;
    arena_init(&a);
    obs_pod pod = td_pod("Running", 1, NULL);
    td_obs o = {.pods = &pod, .npods = 1};
    tx_case c;
    tx_run(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'pod'}}", &o, &c);
    REQUIRE(c.json);
    CHECK_STR_EQ(TX_NEXT(c, "reason"), "BackendSwitchBlocked");
    CHECK_CONTAINS(TX_NEXT(c, "message"), "cannot change from pod to sandbox until the Worker is Stopped");
    CHECK_CONTAINS(TX_NEXT(c, "summary"), "nothing: BackendSwitchBlocked: spec.backendRuntime cannot change");
    CHECK_INT_EQ(cJSON_GetArraySize(json_at(c.json, "next.actions")), 0);
    CHECK_STR_EQ(TX_NEXT(c, "status.synced.reason"), "BackendSwitchBlocked");
    CHECK_CONTAINS(c.text, "reason:  BackendSwitchBlocked");
    CHECK_CONTAINS(c.text, "why:     spec.backendRuntime cannot change from pod to sandbox");
    CHECK_CONTAINS(c.text, "event:   Warning BackendSwitchBlocked");
    tx_free(&c);
    td_release(&a);
}

TEST(explain_sandbox_waiting_for_its_claim) {
    arena a;
    arena_init(&a);
    obs_claim cl = {.name = "hiclaw-worker-alice", .uid = "c1", .phase = "Claiming", .replicas = 1,
                    .message = "Claiming sandboxes: 0/1 claimed", .spec_hash = TD_SHASH};
    td_obs o = {.claims = &cl, .nclaims = 1, .deps_observed = 1, .token_present = 1,
                .token_refresh_in_ms = 3600000, .deps_present = 1};
    tx_case c;
    tx_run(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox'}}",
           &o, &c);
    REQUIRE(c.json);
    CHECK_STR_EQ(TX_NEXT(c, "reason"), "Starting");
    CHECK_STR_EQ(TX_NEXT(c, "message"),
                 "waiting for claim hiclaw-worker-alice to bind a sandbox from pool hiclaw-worker-pool (Claiming: "
                 "Claiming sandboxes: 0/1 claimed); OpenKruise gives up after claimTimeout 300 s (kubectl get "
                 "sandboxset hiclaw-worker-pool shows the sandboxes available)");
    CHECK_CONTAINS(TX_NEXT(c, "summary"), "nothing yet: waiting (Starting): waiting for claim hiclaw-worker-alice");
    CHECK_STR_EQ(TX_NEXT(c, "status.containerState"), "Claiming");
    CHECK_STR_EQ(TX_NEXT(c, "status.instance.claimName"), "hiclaw-worker-alice");
    CHECK_CONTAINS(c.text, "why:     waiting for claim hiclaw-worker-alice to bind a sandbox from pool "
                           "hiclaw-worker-pool (Claiming: Claiming sandboxes: 0/1 claimed)");
    CHECK_CONTAINS(c.text, "looks again in 3600 s");
    tx_free(&c);
    td_release(&a);
}

TEST(explain_worker_deps_conflict_names_the_other_worker) {
    arena a;
    arena_init(&a);
    td_obs o = {.deps_path = "p/workers-deps/ns/alice/", .deps_observed = 1,
                .deps_conflict = "worker-deps object s3://deps/p/workers-deps/ns/alice/env/env belongs to Worker ns/bob "
                                 "(UID u2); it is left alone"};
    tx_case c;
    tx_run(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'backendRuntime':'sandbox'}}",
           &o, &c);
    REQUIRE(c.json);
    CHECK_STR_EQ(TX_NEXT(c, "reason"), "WorkerDepsConflict");
    CHECK_CONTAINS(TX_NEXT(c, "message"), "belongs to Worker ns/bob");
    CHECK_INT_EQ(cJSON_GetArraySize(json_at(c.json, "next.actions")), 0);
    CHECK_STR_EQ(TX_NEXT(c, "status.phase"), "Failed");
    CHECK_CONTAINS(c.text, "reason:  WorkerDepsConflict");
    CHECK_CONTAINS(c.text, "belongs to Worker ns/bob (UID u2)");
    tx_free(&c);
    td_release(&a);
}

/* Each action in plain words and in order, with the object it acts on. */
TEST(explain_lists_the_actions_in_plain_words) {
    arena a;
    arena_init(&a);
    td_obs o = {0};
    tx_case c;
    tx_run(&a, "{'metadata':{'name':'alice','namespace':'ns','uid':'u1','generation':1},'spec':{'model':'m'}}", &o, &c);
    REQUIRE(c.json);
    const cJSON *acts = json_at(c.json, "next.actions");
    REQUIRE(cJSON_GetArraySize(acts) == 3);
    CHECK_STR_EQ(json_str(cJSON_GetArrayItem(acts, 0), "kind"), "add-finalizer");
    CHECK_STR_EQ(json_str(cJSON_GetArrayItem(acts, 2), "kind"), "create-pod");
    CHECK_STR_EQ(json_str(cJSON_GetArrayItem(acts, 2), "does"), "create Pod");
    CHECK_STR_EQ(json_str(cJSON_GetArrayItem(acts, 2), "name"), "hiclaw-worker-alice");
    CHECK_CONTAINS(TX_NEXT(c, "summary"), "3 steps in order, stopping at the first that fails: add the finalizer");
    CHECK_CONTAINS(c.text, "3. create Pod hiclaw-worker-alice  [create-pod]");
    CHECK_CONTAINS(c.text, "2. make sure the ServiceAccount exists: hiclaw-worker-alice");
    tx_free(&c);
    /* a kind's phrase follows its flag: pause and resume are one kind */
    action pause = {ACT_SET_SANDBOX_PAUSED, "s", NULL, 1}, resume = {ACT_SET_SANDBOX_PAUSED, "s", NULL, 0};
    CHECK_STR_EQ(action_does(&pause), "pause Sandbox");
    action clear = {ACT_RESUME_SANDBOX_CLEAR_PAUSE_TIME, "s", NULL, 0};
    CHECK_STR_EQ(action_does(&clear), "clear spec.pauseTime and resume Sandbox");
    CHECK_STR_EQ(action_does(&resume), "resume Sandbox");
    td_release(&a);
}

/* Secrets: a credentials Secret shows its keys, never its values; a spec.env value whose name
 * says secret is redacted; a registered secret or a JWT anywhere in the output is scrubbed. */
TEST(explain_never_prints_secret_values) {
    arena a;
    arena_init(&a);
    worker w;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m','env':{'API_TOKEN':'tok-value-Zq81','PLAIN':'hello-world'}},"
                  "'status':{'message':'saw eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl here'}}", &w);
    log_register_secret("cred-value-Kp27-registered");
    kv items[1] = {{"WORKER_MATRIX_TOKEN", "cred-value-Kp27-registered"}};
    kv_list secret = {items, 1};
    decision d;
    td_obs o = {0};
    td_decide_raw(&a, &w, &o, &TD_POD, TD_HASH, TD_SHASH, &d);
    d.message = "the credential is cred-value-Kp27-registered"; /* as a status message could quote it */
    explain_backend_view views[1] = {{"pod", 1, 1, NULL, TD_HASH}};
    explain_input in = {.w = &w, .controller = "ctl", .label = "ctl", .secret_name = "hiclaw-creds-alice",
                        .secret_state = 0, .secret = &secret, .backends = views, .nbackends = 1, .d = &d};
    cJSON *tree = explain_build(&a, &in);
    for (int json = 0; json < 2; json++) {
        char *out = explain_output(tree, json);
        CHECK_NOT_CONTAINS(out, "cred-value-Kp27");
        CHECK_NOT_CONTAINS(out, "tok-value-Zq81");
        CHECK_NOT_CONTAINS(out, "eyJzdWIiOiJ4In0");
        CHECK_CONTAINS(out, "WORKER_MATRIX_TOKEN");
        CHECK_CONTAINS(out, "hello-world"); /* an ordinary value is shown */
        CHECK_CONTAINS(out, "[REDACTED]");
        free(out);
    }
    CHECK_STR_EQ(json_str_at(tree, "spec.env.API_TOKEN"), "[REDACTED]");
    cJSON_Delete(tree);
    td_release(&a);
}

/* A Worker another controller (or none) handles: explain says so and decides nothing for it. */
TEST(explain_worker_of_another_controller_is_not_handled) {
    arena a;
    arena_init(&a);
    worker w;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m'}}", &w);
    for (int i = 0; i < 2; i++) {
        cJSON *tree = tx_build(&a, &w, NULL, i ? "other" : NULL);
        CHECK_STR_EQ(json_str_at(tree, "next.reason"), "NotHandled");
        CHECK(cJSON_IsFalse(json_at(tree, "worker.handled")));
        char *text = explain_output(tree, 0);
        CHECK_CONTAINS(text, i ? "labelled hiclaw.io/controller=other, not ctl" : "has no hiclaw.io/controller label");
        CHECK_CONTAINS(text, "NOT handled by it");
        free(text);
        cJSON_Delete(tree);
    }
    td_release(&a);
}

TEST(explain_arguments) {
    char *rest[8];
    explain_args args;
    wc_err err;
    char *ok[] = {"explain", "--server", "https://x", "ns/alice", "-o", "json", "--leader-elect", "--log-level=debug"};
    REQUIRE(explain_parse_args(8, ok, rest, &args, &err) == 0);
    CHECK_STR_EQ(args.target, "ns/alice");
    CHECK_INT_EQ(args.json, 1);
    /* run's flags go to the configuration parser, a flag's value with it */
    REQUIRE(args.nrest == 5);
    CHECK_STR_EQ(args.rest[1], "--server");
    CHECK_STR_EQ(args.rest[2], "https://x");
    CHECK_STR_EQ(args.rest[3], "--leader-elect");
    char *name_only[] = {"explain", "alice", "--output=text"};
    REQUIRE(explain_parse_args(3, name_only, rest, &args, &err) == 0);
    CHECK_INT_EQ(args.json, 0);
    struct {
        int argc;
        char *argv[4];
        const char *msg;
    } bad[] = {
        {1, {"explain"}, "which Worker?"},
        {3, {"explain", "a", "b"}, "one Worker at a time"},
        {2, {"explain", "a/b/c"}, "is not NAMESPACE/NAME"},
        {2, {"explain", "/b"}, "is not NAMESPACE/NAME"},
        {2, {"explain", "ns/a?b"}, "is not NAMESPACE/NAME"},
        {2, {"explain", "ns/Alice"}, "is not NAMESPACE/NAME"},
        {3, {"explain", "a/b", "-o"}, "needs a value"},
        {4, {"explain", "a/b", "-o", "yaml"}, "text or json, not yaml"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err_clear(&err);
        CHECK(explain_parse_args(bad[i].argc, bad[i].argv, rest, &args, &err) < 0);
        CHECK_CONTAINS(err.msg, bad[i].msg);
    }
}

/* ---- against the fake API server and S3 ---- */

/* Every request the fake saw is a read (GET, HEAD): explain wrote nothing. */
static void tx_check_reads_only(void) {
    char *log = fake_log();
    for (char *line = log; line && *line;) {
        char *nl = strchr(line, '\n');
        if (nl) *nl = '\0';
        if (*line && strncmp(line, "GET ", 4) != 0 && strncmp(line, "HEAD ", 5) != 0)
            unit_fail(__FILE__, __LINE__, "explain made a write: %s", line);
        line = nl ? nl + 1 : line + strlen(line);
    }
    free(log);
}

#define TX_WORKER_SQ(spec, status)                                                                              \
    "{'apiVersion':'hiclaw.io/v1beta1','kind':'Worker','metadata':{'name':'alice','namespace':'ns','uid':'u1',"  \
    "'resourceVersion':'7','generation':2,'finalizers':['hiclaw.io/cleanup'],"                                   \
    "'labels':{'hiclaw.io/controller':'ctl'}},'spec':" spec ",'status':" status "}"

/* explain_gather on the fake: run's backends observe, run's decide() decides, and nothing is
 * written — a running Pod Worker, then a sandbox Worker whose env file another Worker owns. */
TEST(explain_gathers_live_and_only_reads) {
    REQUIRE(fake_server() == 0);
    fake_reset();
    explain_state *e = xcalloc(1, sizeof *e);
    explain_target(e, "ns/alice", "ns");
    fake_controller(&e->ctl);
    REQUIRE(e->ctl.host.kc && SHELL_S3(&e->ctl));
    e->ctl.host.kc->read_only = 1;
    SHELL_S3(&e->ctl)->read_only = 1;
    fake_seed(NS_WORKERS, TX_WORKER_SQ("{'model':'m'}", "{'backendRuntime':'pod','phase':'Running'}"));
    fake_seed(NS_PODS, "{'metadata':{'name':'hiclaw-worker-alice','namespace':'ns','uid':'p1','resourceVersion':'3',"
                       "'labels':{'hiclaw.io/worker':'alice','hiclaw.io/controller':'ctl','hiclaw.io/backend':'pod'},"
                       "'ownerReferences':[{'kind':'Worker','name':'alice','uid':'u1','controller':true}]},"
                       "'status':{'phase':'Running','podIP':'10.0.0.9','conditions':[{'type':'Ready','status':'True'}]}}");
    fake_seed("/api/v1/namespaces/ns/secrets",
              "{'metadata':{'name':'hiclaw-creds-alice','namespace':'ns'},"
              "'data':{'WORKER_MATRIX_TOKEN':'bWF0cml4LXNlY3JldC12YWx1ZS0xMjM='}}");
    cJSON *tree = NULL;
    wc_err err;
    err_clear(&err);
    REQUIRE(explain_gather(e, &g_fake_conf, &tree, &err) == 0);
    char *text = explain_output(tree, 0);
    /* the Pod carries no spec hash: run would replace it, and explain says exactly that */
    CHECK_STR_EQ(json_str_at(tree, "next.reason"), "Recreating");
    CHECK_CONTAINS(text, "1. delete Pod hiclaw-worker-alice");
    CHECK_CONTAINS(text, "pod      Pod hiclaw-worker-alice: phase=Running podIP=10.0.0.9 ready=true");
    CHECK_CONTAINS(text, "credentials: Secret hiclaw-creds-alice present (keys: WORKER_MATRIX_TOKEN; values not shown)");
    CHECK_NOT_CONTAINS(text, "matrix-secret-value-123");
    CHECK_CONTAINS(text, "sandbox  none");
    free(text);
    cJSON_Delete(tree);
    tree = NULL;
    explain_release(e);
    tx_check_reads_only();

    /* a sandbox Worker whose env/env another Worker owns: WorkerDepsConflict, who owns it */
    memset(&e->x, 0, sizeof e->x);
    explain_target(e, "ns/alice", "ns");
    e->obj = e->proj = NULL;
    fake_seed(NS_WORKERS, TX_WORKER_SQ("{'model':'m','backendRuntime':'sandbox'}", "{'backendRuntime':'sandbox'}"));
    fake_call("DELETE", NS_PODS "/hiclaw-worker-alice", NULL, NULL);
    fake_s3_seed(KEY_NOW "env/env", "theirs",
                 "{'x-amz-meta-hiclaw-owner-uid':'u2','x-amz-meta-hiclaw-owner-namespace':'ns',"
                 "'x-amz-meta-hiclaw-owner-name':'bob'}");
    err_clear(&err);
    REQUIRE(explain_gather(e, &g_fake_conf, &tree, &err) == 0);
    CHECK_STR_EQ(json_str_at(tree, "next.reason"), "WorkerDepsConflict");
    const cJSON *objs = json_at(tree, "beside.workerDeps.objects");
    REQUIRE(cJSON_GetArraySize(objs) == 3);
    CHECK(cJSON_IsFalse(json_get(cJSON_GetArrayItem(objs, 0), "present")));
    CHECK_STR_EQ(json_str_at(cJSON_GetArrayItem(objs, 1), "owner.name"), "bob");
    CHECK_CONTAINS(json_str(cJSON_GetArrayItem(objs, 1), "conflict"), "belongs to Worker ns/bob (UID u2)");
    text = explain_output(tree, 0);
    CHECK_CONTAINS(text, "workerDeps\n  configured=true bucket=deps path=p/workers-deps/ns/alice/");
    CHECK_CONTAINS(text, "name=env key=p/workers-deps/ns/alice/env/env present=true");
    free(text);
    cJSON_Delete(tree);
    explain_release(e);
    /* the DELETE above is the test's own; everything after it explain's */
    char *log = fake_log();
    char *after = strstr(log, "DELETE " NS_PODS "/hiclaw-worker-alice");
    CHECK(after != NULL);
    CHECK(after && !strstr(after + 1, "PUT ") && !strstr(after + 1, "POST ") && !strstr(after + 1, "PATCH ") &&
          !strstr(after + 1, "DELETE "));
    free(log);
    fake_controller_free(&e->ctl);
    free(e);
}

/* The clients explain makes refuse every write before it is sent; the backends' S3 clients
 * inherit it from the host. */
TEST(read_only_clients_refuse_writes_before_sending) {
    REQUIRE(fake_server() == 0);
    fake_reset();
    controller ctl;
    fake_controller(&ctl);
    REQUIRE(ctl.host.kc && SHELL_S3(&ctl));
    ctl.host.kc->read_only = 1;
    SHELL_S3(&ctl)->read_only = 1;
    wc_err err;
    err_clear(&err);
    CHECK(kube_create(ctl.host.kc, &KUBE_PODS, "ns", NULL, NULL, "{}", NULL, &err) < 0);
    CHECK_CONTAINS(err.msg, "read-only client: refusing POST");
    err_clear(&err);
    CHECK(kube_patch(ctl.host.kc, &KUBE_WORKERS, "ns", "alice", "status", KUBE_PATCH_MERGE, "{}", NULL, 0, 0, NULL,
                     &err) < 0);
    err_clear(&err);
    CHECK(kube_delete(ctl.host.kc, &KUBE_PODS, "ns", "x", NULL, NULL, NULL, &err) < 0);
    err_clear(&err);
    CHECK(s3_put(SHELL_S3(&ctl), "k", "v", 1, NULL, 0, &err) < 0);
    CHECK_CONTAINS(err.msg, "read-only client: refusing PUT");
    err_clear(&err);
    CHECK(s3_delete(SHELL_S3(&ctl), "k", &err) < 0);
    err_clear(&err);
    cJSON *list = NULL;
    CHECK(kube_list_page(ctl.host.kc, &KUBE_PODS, "ns", NULL, NULL, 1, NULL, &list, &err) == 0); /* reads go */
    cJSON_Delete(list);
    char *log = fake_log();
    CHECK_NOT_CONTAINS(log, "POST");
    CHECK_NOT_CONTAINS(log, "PATCH");
    CHECK_NOT_CONTAINS(log, "PUT");
    CHECK_NOT_CONTAINS(log, "DELETE");
    CHECK_CONTAINS(log, "GET " NS_PODS);
    free(log);
    fake_controller_free(&ctl);

    /* a backend's own S3 client, made by its setup, is read-only when the host is */
    memset(&ctl, 0, sizeof ctl);
    fake_controller(&ctl); /* for a client and g_fake_conf */
    controller ro;
    memset(&ro, 0, sizeof ro);
    ro.host.kc = ctl.host.kc;
    ro.host.namespace = "ns";
    ro.host.read_only = 1;
    err_clear(&err);
    REQUIRE(controller_setup(&ro, wc_backend_table, WC_NBACKENDS, &g_fake_conf, &err) == 0);
    REQUIRE(SHELL_S3(&ro) != NULL);
    CHECK_INT_EQ(SHELL_S3(&ro)->read_only, 1);
    CHECK_INT_EQ(SHELL_S3(&ctl)->read_only, 0);
    controller_release(&ro);
    fake_controller_free(&ctl);
}
