/*
 * test_backend.c — a third backend, as a new backend is written: this one file plus one row in
 * a backend table. Its instance is a ConfigMap <prefix>worker-<name> (nothing runs: the point is
 * the interface). The reconcile shell drives it like the real ones — observe from its cache,
 * render its spec hash, decide() through its policy, execute its actions, the live lists of the
 * switch guard and of the finalizer — and never learns its name.
 */

static const kube_resource TB_CONFIGMAPS = {"", "v1", "configmaps", "ConfigMap", 1};

static const action_type ACT_CREATE_CM[1] = {{.name = "create-configmap", .backend = "configmap", .creates = "ConfigMap"}};
static const action_type ACT_DELETE_CM[1] = {{.name = "delete-configmap", .backend = "configmap"}};

/* ---- observations and policy (pure) ---- */

typedef struct tb_cm {
    const char *name, *uid, *spec_hash;
    int deleting;
} tb_cm;

typedef struct tb_obs {
    const tb_cm *cms;
    size_t n;
} tb_obs;

static size_t tb_count(const void *obs) { return obs ? ((const tb_obs *)obs)->n : 0; }

static int tb_teardown(const void *obs, decision *d) {
    const tb_obs *t = obs;
    for (size_t i = 0; t && i < t->n; i++)
        if (!t->cms[i].deleting) decide_action(d, ACT_DELETE_CM, t->cms[i].name, t->cms[i].uid, 0);
    return tb_count(obs) > 0;
}

/* Running: one ConfigMap carrying the spec hash; Sleeping and Stopped: none. */
static void tb_decide(const backend_policy *p, arena *a, const worker *w, const observed *o, const void *obs,
                      const decide_config *c, const char *hash, decision *d) {
    (void)o;
    const tb_obs *t = obs;
    d->backend = p->name;
    if (w->state != STATE_RUNNING) {
        int left = tb_teardown(obs, d);
        d->phase = left ? PHASE_STOPPING : w->state == STATE_SLEEPING ? PHASE_SLEEPING : PHASE_STOPPED;
        d->message = "";
        set_ready(d, "False", phase_name(d->phase), "");
        return;
    }
    if (tb_count(obs) && hash && !str_eq(t->cms[0].spec_hash, hash)) { /* hash NULL: describe only */
        tb_teardown(obs, d);
        d->phase = PHASE_PENDING;
        d->message = "spec changed: replacing the ConfigMap";
        set_ready(d, "False", "Recreating", d->message);
        return;
    }
    if (!tb_count(obs)) {
        const char *name = instance_name(a, w, c);
        decide_action(d, ACT_ENSURE_SERVICEACCOUNT, name, NULL, 0);
        decide_action(d, ACT_CREATE_CM, name, NULL, 0);
        d->phase = PHASE_PENDING;
        d->message = arena_sprintf(a, "creating ConfigMap %s", name);
        set_ready(d, "False", "Pending", d->message);
        return;
    }
    d->instance = (worker_instance){"ConfigMap", t->cms[0].name, NULL, NULL};
    d->phase = PHASE_RUNNING;
    d->message = "";
    set_ready(d, "True", "Running", "");
}

/* ---- its objects ---- */

static cJSON *tb_project(const cJSON *obj) { return instance_project_metadata(obj, NULL); }

static void tb_render(buf *body, arena *a, backend *b, const worker *w, const char *name, const char *hash) {
    kv_list labels = instance_labels(a, w, b->host->names.controller_name, "configmap");
    cJSON *cm = instance_object("v1", "ConfigMap");
    instance_metadata(cm, name, w->namespace, &labels, hash, w);
    json_add_str(json_add_object(cm, "data"), "image", w->image);
    json_render_free(body, cm);
}

/* ---- the operations ---- */

static int tb_setup(backend *b, const wc_cfg *conf, wc_err *err) {
    (void)conf, (void)err;
    b->policy = (backend_policy){.name = "configmap", .noun = "ConfigMap", .an_instance = "a ConfigMap",
                                 .enabled = 1, .count = tb_count, .teardown = tb_teardown, .decide = tb_decide};
    b->caches[0] = (backend_cache){.name = "configmaps", .resource = &TB_CONFIGMAPS, .project = tb_project};
    b->ncaches = 1;
    return 0;
}

static void tb_release(backend *b) { (void)b; }

static int tb_observe(backend *b, exec_ctx *x, int live) {
    if (live) return 0;
    cJSON *arr = kube_informer_by_index(b->informers[0], x->key);
    exec_hold(x, arr);
    tb_obs *t = arena_calloc(x->a, sizeof *t);
    tb_cm *cms = arena_calloc(x->a, ((size_t)cJSON_GetArraySize(arr) + 1) * sizeof *cms);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        const cJSON *md = json_get(it, "metadata");
        if (instance_of_other_worker(md, x->w->uid)) continue;
        tb_cm *cm = &cms[t->n++];
        instance_observe_identity(it, &cm->name, &cm->uid, &cm->deleting, &cm->spec_hash);
    }
    t->cms = cms;
    x->o->of[b->index] = t;
    return 0;
}

static void tb_render_op(backend *b, exec_ctx *x, char hash[17]) {
    (void)b;
    spec_hasher h;
    spec_hash_init(&h);
    spec_hash_field(&h, "backend", "configmap");
    spec_hash_field(&h, "image", x->w->image);
    spec_hash_final(&h, hash);
}

static int tb_execute(backend *b, exec_ctx *x, const action *act, wc_err *err) {
    if (act->kind == ACT_DELETE_CM) return backend_delete(b, x, &TB_CONFIGMAPS, act, err);
    buf body = BUF_INIT;
    tb_render(&body, x->a, b, x->w, act->name, x->hashes[b->index]);
    int rc = backend_create(b, x, &TB_CONFIGMAPS, act->name, &body, "created ConfigMap", "ConfigMapNameConflict", NULL, err);
    buf_free(&body);
    return rc;
}

static size_t tb_live(backend *b, live_query *q) {
    (void)b;
    q[0] = (live_query){.resource = &TB_CONFIGMAPS, .project = tb_project};
    return 1;
}

static const backend_ops configmap_backend_ops = {
    .name = "configmap", .setup = tb_setup, .release = tb_release, .observe = tb_observe, .render = tb_render_op,
    .execute = tb_execute, .live = tb_live,
};

/* The one row: the real table plus this backend. */
static const backend_ops *const TB_TABLE[] = {&pod_backend_ops, &sandbox_backend_ops, &configmap_backend_ops};

/* ---- driven by the shell ---- */

#define NS_CMS "/api/v1/namespaces/ns/configmaps"

TEST(backend_a_new_backend_is_one_file_and_one_table_row) {
    REQUIRE(fake_server() == 0);
    fake_reset();
    controller ctl;
    fake_controller_with(&ctl, TB_TABLE, sizeof TB_TABLE / sizeof *TB_TABLE);
    REQUIRE(ctl.nbackends == 3);
    shell_informers(&ctl);
    kube_informer *cms = ctl.backends[2].informers[0];
    const char *spec = "{'model':'m','backendRuntime':'configmap'}";

    /* Running, nothing observed: the ServiceAccount, then the ConfigMap the Worker names. */
    shell_worker(&ctl, NULL, spec, NULL);
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    cJSON *cm = fake_get(NS_CMS "/hiclaw-worker-alice");
    REQUIRE(cm != NULL);
    CHECK_STR_EQ(json_str_at(cm, "data.image"), "img/openclaw:1");
    CHECK_STR_EQ(json_str(json_get(json_get(cm, "metadata"), "labels"), "hiclaw.io/backend"), "configmap");
    CHECK(fake_get_exists("/api/v1/namespaces/ns/serviceaccounts/hiclaw-worker-alice"));
    cJSON *wk = shell_worker_now();
    CHECK_STR_EQ(json_str_at(wk, "status.phase"), "Pending");
    CHECK_STR_EQ(json_str_at(wk, "status.backendRuntime"), "configmap");
    cJSON_Delete(wk);

    /* Its cache sees it (what the watch would deliver): Running, the instance named. */
    char *cm_sq = cJSON_PrintUnformatted(cm);
    for (char *p = cm_sq; *p; p++)
        if (*p == '"') *p = '\'';
    shell_cache(cms, cm_sq);
    fake_reset();
    fake_seed(NS_CMS, cm_sq);
    shell_worker(&ctl, NULL, spec, "{'backendRuntime':'configmap'}");
    res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    wk = shell_worker_now();
    CHECK_STR_EQ(json_str_at(wk, "status.phase"), "Running");
    CHECK_STR_EQ(json_str_at(wk, "status.instance.kind"), "ConfigMap");
    cJSON_Delete(wk);

    /* The switch guard spans it: a switch to pod is refused while the ConfigMap exists. */
    shell_worker(&ctl, NULL, "{'model':'m','backendRuntime':'pod'}", "{'backendRuntime':'configmap'}");
    res = reconcile_worker(&ctl, "ns/alice");
    wk = shell_worker_now();
    CHECK_STR_EQ(cond_field(wk, "Synced", "reason"), "BackendSwitchBlocked");
    CHECK_CONTAINS(cond_field(wk, "Synced", "message"), "from configmap to pod");
    cJSON_Delete(wk);
    CHECK(fake_get_exists(NS_CMS "/hiclaw-worker-alice"));

    /* Deletion: its instance goes first; the finalizer stays while the API server (not the
     * cache) still has it, through its live list; then it goes. */
    shell_worker(&ctl, DELETING_MD, spec, "{'backendRuntime':'configmap'}");
    res = reconcile_worker(&ctl, "ns/alice");
    char *log = fake_log();
    CHECK_CONTAINS(log, "DELETE " NS_CMS "/hiclaw-worker-alice");
    free(log);
    kube_informer_apply(cms, KUBE_WATCH_DELETED, cm);
    fake_seed(NS_CMS, cm_sq); /* the cache lags: gone there, not in the API server */
    res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.outcome, RECONCILE_RETRY);
    wk = shell_worker_now();
    CHECK_CONTAINS(cond_field(wk, "Synced", "message"), "ConfigMap hiclaw-worker-alice still exists");
    cJSON_Delete(wk);
    fake_call("DELETE", NS_CMS "/hiclaw-worker-alice", NULL, NULL);
    res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    wk = shell_worker_now();
    CHECK_INT_EQ(cJSON_GetArraySize(json_get(json_get(wk, "metadata"), "finalizers")), 0);
    cJSON_Delete(wk);

    free(cm_sq);
    cJSON_Delete(cm);
    shell_informers_free(&ctl);
    fake_controller_free(&ctl);
}
