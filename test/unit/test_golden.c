/*
 * test_golden.c — the request bodies the controller sends, byte for byte.
 *
 * Every object the controller creates or patches is rendered here for a few representative
 * Workers (plain, every optional field set, hostile values) and compared with the files under
 * test/unit/data/golden/: the Pod, its ServiceAccount, the SandboxClaim, the SandboxSet, the
 * agent-sandbox Sandbox, the
 * status and finalizer merge patches, the sandbox env file, and the spec hashes (a changed hash
 * recreates every instance of a fleet on upgrade); and the client core's Event, Lease,
 * DeleteOptions and TokenRequest. A refactoring of the renderers must leave
 * every byte as it is; a change that is meant must show up here as a reviewed file diff.
 *
 *     WC_GOLDEN_UPDATE=1 build/unit-tests golden    rewrites the files from the current code
 *
 * On a mismatch the rendered bytes are written to build/golden-actual/ for `diff`.
 */

#define GOLDEN_DIR "test/unit/data/golden/"
#define GOLDEN_NOW ((time_t)1800000000) /* 2027-01-15T08:00:00Z: lastTransitionTime of a new condition */

/* Compares (or, with WC_GOLDEN_UPDATE set, writes) one golden file. */
static void golden_check(const char *file, const char *data, size_t len, int line) {
    char path[300];
    snprintf(path, sizeof path, GOLDEN_DIR "%s", file);
    const char *update = getenv("WC_GOLDEN_UPDATE");
    if (update && *update) {
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(data, 1, len, f) != len) unit_fail(__FILE__, line, "cannot write %s", path);
        if (f) fclose(f);
        return;
    }
    buf want = BUF_INIT;
    wc_err err;
    if (file_read_all(path, 1u << 20, &want, &err) < 0) {
        unit_fail(__FILE__, line, "%s: %s (WC_GOLDEN_UPDATE=1 writes it)", file, err.msg);
        return;
    }
    if (want.len != len || memcmp(want.data, data, len) != 0) {
        size_t at = 0;
        while (at < len && at < want.len && want.data[at] == data[at]) at++;
        mkdir("build", 0755);
        mkdir("build/golden-actual", 0755);
        char out[300];
        snprintf(out, sizeof out, "build/golden-actual/%s", file);
        FILE *f = fopen(out, "wb");
        if (f) fwrite(data, 1, len, f), fclose(f);
        unit_fail(__FILE__, line, "%s differs from the golden file at byte %zu (rendered: %s)", file, at, out);
    }
    buf_free(&want);
}

#define GOLDEN(file, b) golden_check((file), buf_cstr(b), (b)->len, __LINE__)

static const worker_env_config GOLDEN_ENV = {
    .controller_url = "http://hiclaw-controller.hiclaw:8090", .matrix_url = "http://matrix:6167",
    .matrix_domain = "matrix.local", .ai_gateway_url = "http://gw:8080", .fs_endpoint = "http://minio:9000",
    .fs_bucket = "hiclaw", .storage_prefix = "team-a/", .region = "cn-hangzhou", .yolo = "", .matrix_debug = "1",
};

typedef struct golden_case {
    const char *name;
    const char *worker_sq;   /* the Worker, single quotes for double */
    const char *secret[3][2];/* the Worker's Secret data (NULL key: absent) */
    int have_secret;
} golden_case;

static const golden_case GOLDEN_CASES[] = {
    {"plain", "{'metadata':{'name':'alice','namespace':'ns','uid':'u1','resourceVersion':'7','generation':2},"
              "'spec':{'model':'m'}}",
     {{NULL, NULL}}, 0},
    {"full",
     "{'metadata':{'name':'bob-2','namespace':'team-a','uid':'0b6f2c8e-1d4a-4c57-9a0e-5b1f3d2c7e90',"
     "'resourceVersion':'123456','generation':5,'finalizers':['other.io/keep','hiclaw.io/cleanup'],"
     "'labels':{'app':'mine','team':'a','hiclaw.io/controller':'ctl'}},"
     "'spec':{'model':'qwen','runtime':'copaw','image':'registry.example.com/copaw@sha256:0123abcd',"
     "'workerName':'bob.v2_x','backendRuntime':'sandbox','state':'Running',"
     "'env':{'ZED':'last','A_VAR':'first','HOME':'/tmp','HICLAW_X':'no','1BAD':'no','EMPTY':''},"
     "'labels':{'team':'b','hiclaw.io/backend':'override','tier':'gold'},"
     "'resources':{'requests':{'cpu':0.5,'memory':'300Mi'},'limits':{'cpu':2,'memory':'3Gi'}}}}",
     {{"WORKER_MATRIX_TOKEN", "syt_matrix_golden"}, {"WORKER_MINIO_PASSWORD", "minio-golden-pw"}, {NULL, NULL}}, 1},
    {"hostile",
     "{'metadata':{'name':'x','namespace':'n-1','uid':'u\\\"q','resourceVersion':'1','generation':1},"
     "'spec':{'model':'m','runtime':'hermes','backendRuntime':'sandbox',"
     "'env':{'QUOTES':'it\\u0027s \\\"q\\\" \\\\ back','NL':'a\\nb\\r\\tc','CTL':'\\u0001\\b\\f\\u001f\\u007f',"
     "'DOLLAR':'$HOME $$ $(touch /tmp/pwn) `id` ${X}','UTF':'\\u00e9\\u65e5\\ud83d\\ude80','JWT':"
     "'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl'},"
     "'labels':{'a.b/c-d':'v_1.2-3'}}}",
     {{"WORKER_MATRIX_TOKEN", "tok'en\\\"$(x)"}, {"WORKER_GATEWAY_KEY", "gw\\nkey"},
      {"WORKER_MINIO_PASSWORD", "pw$$`x`"}}, 1},
};

/* The shell's names and env and a sandbox backend with these settings, as `run` would set them
 * up (without a cluster: no setup call, nothing served or stored). */
typedef struct golden_setup {
    backend_host host;
    decide_config dc;
    sandbox_state sst;
    backend sandbox;
} golden_setup;

static void golden_setup_init(golden_setup *g) {
    memset(g, 0, sizeof *g);
    g->host.names = (instance_settings){.controller_name = "ctl", .prefix = "hiclaw-", .audience = "hiclaw-controller"};
    g->host.envc = GOLDEN_ENV;
    g->dc = (decide_config){.prefix = "hiclaw-"};
    g->sst.set = (sandbox_settings){.deps_prefix = "deps/", .deps_pv = "hiclaw-worker-deps", .pool = "hiclaw-worker-pool",
                                    .token_ttl_s = 86400, .claim_timeout_ms = 300000, .wait_ready_timeout_ms = 90500};
    g->sandbox = (backend){.ops = &sandbox_backend_ops, .host = &g->host, .index = 1, .state = &g->sst};
}

static void golden_secret(arena *a, const golden_case *gc, kv_list *out) {
    out->items = arena_calloc(a, 3 * sizeof(kv));
    out->n = 0;
    for (int i = 0; i < 3 && gc->secret[i][0]; i++) {
        out->items[out->n].key = gc->secret[i][0];
        out->items[out->n].value = gc->secret[i][1];
        out->n++;
    }
    qsort(out->items, out->n, sizeof(kv), kv_cmp);
}

TEST(golden_instance_bodies_are_byte_identical) {
    golden_setup g;
    golden_setup_init(&g);
    for (size_t i = 0; i < sizeof GOLDEN_CASES / sizeof *GOLDEN_CASES; i++) {
        const golden_case *gc = &GOLDEN_CASES[i];
        arena a;
        arena_init(&a);
        worker w;
        td_worker(&a, gc->worker_sq, &w);
        if (w.invalid) unit_fail(__FILE__, __LINE__, "case %s: invalid: %s", gc->name, w.invalid);
        kv_list secret;
        golden_secret(&a, gc, &secret);
        const kv_list *sec = gc->have_secret ? &secret : NULL;
        env_list env;
        env_build(&a, &w, &g.host.envc, sec, 1, &env);
        char pod_hash[17], sandbox_hash[17], file_hash[17];
        pod_spec_hash(&a, &w, &env, &g.host.names, pod_hash);
        sandbox_spec_hash(&g.sandbox, &a, &w, sec, sandbox_hash);
        char file[128];
        buf b = BUF_INIT;

        pod_render(&b, &a, &w, &env, &g.host.names, pod_hash);
        snprintf(file, sizeof file, "%s.pod.json", gc->name);
        GOLDEN(file, &b);
        buf_reset(&b);
        serviceaccount_render(&b, &a, &w, &g.host.names);
        snprintf(file, sizeof file, "%s.serviceaccount.json", gc->name);
        GOLDEN(file, &b);
        buf_reset(&b);
        claim_render(&b, &a, &g.sandbox, &w, instance_name(&a, &w, &g.dc), sandbox_hash);
        snprintf(file, sizeof file, "%s.sandboxclaim.json", gc->name);
        GOLDEN(file, &b);
        buf_reset(&b);
        env_list file_env;
        env_build(&a, &w, &g.host.envc, sec, 0, &file_env);
        env_file_write(&b, &file_env);
        deps_env_hash(&b, file_hash);
        snprintf(file, sizeof file, "%s.envfile", gc->name);
        GOLDEN(file, &b);
        buf_reset(&b);
        buf_printf(&b, "pod %s\nsandbox %s\nenvfile %s\n", pod_hash, sandbox_hash, file_hash);
        snprintf(file, sizeof file, "%s.hashes", gc->name);
        GOLDEN(file, &b);
        buf_reset(&b);
        /* the agent-sandbox backend's Sandbox: the pod backend's Pod spec as its podTemplate */
        char asb_hash[17];
        pod_spec_hash_as(&a, &w, &env, &g.host.names, "agent-sandbox", asb_hash);
        asb_render(&b, &a, &w, &env, &g.host.names, asb_hash);
        snprintf(file, sizeof file, "%s.agent-sandbox.json", gc->name);
        GOLDEN(file, &b);
        buf_reset(&b);
        buf_printf(&b, "agent-sandbox %s\n", asb_hash);
        snprintf(file, sizeof file, "%s.agent-sandbox.hash", gc->name);
        GOLDEN(file, &b);
        buf_reset(&b);
        finalizer_patch_render(&b, &w, 1);
        snprintf(file, sizeof file, "%s.finalizer-add.json", gc->name);
        GOLDEN(file, &b);
        buf_reset(&b);
        finalizer_patch_render(&b, &w, 0);
        snprintf(file, sizeof file, "%s.finalizer-remove.json", gc->name);
        GOLDEN(file, &b);
        buf_free_secret(&b);
        td_release(&a);
    }
}

TEST(golden_sandboxset_is_byte_identical) {
    buf b = BUF_INIT;
    sandbox_pool_render(&b, "hiclaw-worker-pool", "hiclaw", "ctl", "hiclaw/agent-runtime:1.2", 3, "1500m", "2Gi");
    GOLDEN("pool.sandboxset.json", &b);
    buf_reset(&b);
    sandbox_pool_render(&b, "p\"ool", "ns", "c\\tl", "img\n", 0, "1", "1Ki");
    GOLDEN("pool-hostile.sandboxset.json", &b);
    buf_free(&b);
}

/* The status patch for a fresh Worker (every condition new), for one with a status of its own
 * (conditions carried over, someone else's condition kept, nulls), and with a hostile message. */
TEST(golden_status_patches_are_byte_identical) {
    static const struct {
        const char *name, *worker_sq;
    } workers[] = {
        {"fresh", "{" W_BASE ",'spec':{'model':'m'}}"},
        {"existing",
         "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'},'status':{'phase':'Starting','backendRuntime':"
         "'sandbox','observedGeneration':1,'workerDepsPath':'deps/workers-deps/ns/alice/','conditions':["
         "{'type':'Ready','status':'False','reason':'Starting','message':'m','observedGeneration':1,"
         "'lastTransitionTime':'2026-01-02T03:04:05Z'},{'type':'Other','status':'True','reason':'Theirs',"
         "'message':'kept \\u00e9 \\\"as is\\\"','lastTransitionTime':'2026-01-01T00:00:00Z'},"
         "{'type':'Synced','status':'True','reason':'Reconciled','message':'','observedGeneration':1,"
         "'lastTransitionTime':'2026-01-02T03:04:06Z'}],'matrixUserID':'@x:y'}}"},
    };
    arena a;
    arena_init(&a);
    buf b = BUF_INIT;
    char file[128];
    for (size_t i = 0; i < sizeof workers / sizeof *workers; i++) {
        worker w;
        td_worker(&a, workers[i].worker_sq, &w);
        char *j = arena_strdup(&a, workers[i].worker_sq);
        for (char *p = j; *p; p++)
            if (*p == '\'') *p = '"';
        cJSON *obj = cJSON_Parse(j);
        REQUIRE(obj != NULL);

        decision d;
        memset(&d, 0, sizeof d);
        d.phase = PHASE_RUNNING;
        d.backend = "pod";
        d.instance = (worker_instance){"Pod", "hiclaw-worker-alice", NULL, "127.1.0.7"};
        d.container_state = "Running";
        d.message = "";
        d.ready = (decided_cond){"True", "Running", ""};
        d.synced = (decided_cond){"True", "Reconciled", ""};
        status_patch_render(&b, &a, obj, &w, &d, w.generation, GOLDEN_NOW);
        snprintf(file, sizeof file, "%s.status-running.json", workers[i].name);
        GOLDEN(file, &b);
        buf_reset(&b);

        memset(&d, 0, sizeof d);
        d.phase = PHASE_NONE;
        d.instance = (worker_instance){"Sandbox", NULL, "hiclaw-worker-alice", NULL};
        d.deps_path = "deps/workers-deps/ns/alice/";
        d.message = "claim \"x\"\nfailed:\ttoken eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl, Bearer abc.def "
                    "\x01\x08\x0c\x7f \xc3\xa9 \xff";
        d.ready = (decided_cond){"False", "Starting", d.message};
        d.synced = (decided_cond){"False", "APIError", d.message};
        status_patch_render(&b, &a, obj, &w, &d, w.observed_generation, GOLDEN_NOW);
        snprintf(file, sizeof file, "%s.status-failed.json", workers[i].name);
        GOLDEN(file, &b);
        buf_reset(&b);
        cJSON_Delete(obj);
    }
    buf_free(&b);
    td_release(&a);
}

/* The client core's own bodies: an Event, a Lease (new and replaced), DeleteOptions, a
 * TokenRequest. */
TEST(golden_kube_bodies_are_byte_identical) {
    buf b = BUF_INIT;
    kube_event_ref ref = {"hiclaw.io/v1beta1", "Worker", "ns", "alice", "u1"};
    kube_event_render(&b, "hiclaw.io/worker-controller", "ctl-host", &ref, "alice.18a2b3c4d5e6f", "2027-01-15T08:00:00.123456Z",
                      "Warning", "PodFailed", "Reconcile", "Pod \"x\" failed:\nOOMKilled \x01 \xc3\xa9");
    GOLDEN("event.json", &b);
    buf_reset(&b);
    kube_event_ref cluster = {"v1", "Node", NULL, "n1", NULL};
    kube_event_render(&b, "c", "i", &cluster, "n1.1", "2027-01-15T08:00:00.000000Z", "Normal", "R", "A", "");
    GOLDEN("event-cluster.json", &b);
    buf_reset(&b);
    kube_lease l = {.holder = "host_1a2b", .duration_s = 15, .acquire_time = "2027-01-15T08:00:00.000001Z",
                    .renew_time = "2027-01-15T08:00:02.000001Z", .transitions = 3, .resource_version = "991"};
    kube_lease_body(&b, "hiclaw", "hiclaw-controller-leader", &l);
    GOLDEN("lease.json", &b);
    buf_reset(&b);
    kube_lease released = {.duration_s = 1, .renew_time = "2027-01-15T08:00:09.5Z"};
    kube_lease_body(&b, "hiclaw", "hiclaw-controller-leader", &released);
    GOLDEN("lease-released.json", &b);
    buf_reset(&b);
    kube_delete_options_render(&b, "0b6f-uid", NULL, "Background");
    GOLDEN("deleteoptions-uid.json", &b);
    buf_reset(&b);
    kube_delete_options_render(&b, "u", "42", NULL);
    GOLDEN("deleteoptions-uid-rv.json", &b);
    buf_reset(&b);
    kube_delete_options_render(&b, NULL, NULL, NULL);
    GOLDEN("deleteoptions.json", &b);
    buf_reset(&b);
    kube_token_request_render(&b, "hiclaw-controller", 86400);
    GOLDEN("tokenrequest.json", &b);
    buf_free(&b);
}
