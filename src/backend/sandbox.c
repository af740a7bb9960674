/*
 * sandbox.c — the sandbox backend's I/O (SPEC section 5): OpenKruise agents SandboxClaims and
 * Sandboxes, observed through informers and mapped back to their Worker by label, and the
 * Worker's worker-deps in object storage (backend/deps.c). Its decisions are
 * sandbox_policy.c's.
 *
 * The create sequence is the point of the seed's review: build the env → request a token →
 * write and verify env/env, token/token, data/.keep → only then create the SandboxClaim. The
 * reconciler executes decide()'s actions in order and stops at the first failure, so a claim
 * can never exist without its deps. Delete sequence: claim, then Sandboxes (wait until gone),
 * then the token object (and on Worker deletion env and data too).
 */

#define LABEL_CLAIM_NAME "agents.kruise.io/claim-name"
#define LABEL_UPDATE_OPS "agents.kruise.io/update-ops"

/* Its settings, from the configuration table (HICLAW_SANDBOX_*, HICLAW_WORKER_DEPS_*). */
typedef struct sandbox_settings {
    const char *deps_prefix;        /* object key prefix of every Worker's worker-deps */
    const char *deps_pv;            /* the CSI PersistentVolume exposing the bucket to sandboxes */
    const char *pool;               /* the SandboxSet claims are made from */
    int64_t token_ttl_s;
    int64_t claim_timeout_ms, wait_ready_timeout_ms;
    int manage_pool;                /* apply the SandboxSet once leading */
    const char *agent_image;        /* the managed pool's image, replicas and resource limits */
    int64_t prewarm;
    const char *cpu, *memory;
} sandbox_settings;

typedef struct sandbox_state {
    sandbox_settings set;
    sandbox_policy_cfg policy;
    deps_store deps;                /* worker-deps storage (deps.s3 NULL when there is none) */
    int watching;                   /* OpenKruise serves claims and Sandboxes: informers 0 and 1 */
    int enabled;                    /* in effect: HICLAW_SANDBOX_ENABLED, auto resolved */
    char off_why[400];              /* auto resolved off: why (status messages name it) */
    char disabled_spec[600];        /* the policy's disabled_spec then */
} sandbox_state;

static sandbox_state *sbx_state(backend *b) { return b->state; }

/* ---- the caches ---- */

/* The informer keeps this much of a SandboxClaim. */
static cJSON *claim_project(const cJSON *obj) {
    cJSON *out = instance_project_metadata(obj, LABEL_CLAIM_NAME);
    const cJSON *spec = json_get(obj, "spec");
    const cJSON *st = json_get(obj, "status");
    cJSON *s = cJSON_AddObjectToObject(out, "status");
    const char *phase = json_str(st, "phase"), *msg = json_str(st, "message");
    if (phase) cJSON_AddStringToObject(s, "phase", phase);
    if (msg) cJSON_AddStringToObject(s, "message", msg);
    cJSON_AddNumberToObject(s, "claimedReplicas", (double)json_int(st, "claimedReplicas", 0));
    cJSON_AddNumberToObject(s, "replicas", (double)json_int(spec, "replicas", 1));
    /* The worker-deps dir the sandbox mounts: the token mount's sub-path without "token". */
    const cJSON *m;
    cJSON_ArrayForEach(m, json_get(spec, "dynamicVolumesMount")) {
        const char *mp = json_str(m, "mountPath"), *sub = json_str(m, "subPath");
        size_t n = sub ? strlen(sub) : 0;
        if (mp && strcmp(mp, WORKER_TOKEN_DIR) == 0 && n >= 5 && strcmp(sub + n - 5, "token") == 0) {
            char *dir = xstrdup(sub);
            dir[n - 5] = '\0';
            cJSON_AddStringToObject(s, "depsPath", dir);
            free(dir);
        }
    }
    return out;
}

static void claim_observe(const cJSON *proj, obs_claim *c) {
    memset(c, 0, sizeof *c);
    const cJSON *st = instance_observe_identity(proj, &c->name, &c->uid, &c->deleting, &c->spec_hash);
    c->phase = json_str(st, "phase");
    c->message = json_str(st, "message");
    c->claimed = json_int(st, "claimedReplicas", 0);
    c->replicas = json_int(st, "replicas", 1);
    c->deps_path = json_str(st, "depsPath");
}

/* The informer keeps this much of a Sandbox. */
static cJSON *sandbox_project(const cJSON *obj) {
    cJSON *out = instance_project_metadata(obj, LABEL_CLAIM_NAME);
    const cJSON *st = json_get(obj, "status");
    const cJSON *spec = json_get(obj, "spec");
    cJSON *s = cJSON_AddObjectToObject(out, "status");
    const char *phase = json_str(st, "phase");
    if (phase) cJSON_AddStringToObject(s, "phase", phase);
    if (json_str(st, "message")) cJSON_AddStringToObject(s, "message", json_str(st, "message"));
    const cJSON *podinfo = json_get(st, "podInfo");
    const char *ip = json_str(podinfo, "podIP");
    if (ip) cJSON_AddStringToObject(s, "podIP", ip);
    const cJSON *c;
    cJSON_ArrayForEach(c, json_get(st, "conditions")) {
        const char *t = json_str(c, "type");
        if (t && strcmp(t, "Ready") == 0) {
            cJSON_AddBoolToObject(s, "ready", str_eq(json_str(c, "status"), "True"));
            if (json_str(c, "reason")) cJSON_AddStringToObject(s, "readyReason", json_str(c, "reason"));
            if (json_str(c, "message")) cJSON_AddStringToObject(s, "readyMessage", json_str(c, "message"));
        } else if (t && strcmp(t, "Upgrading") == 0) { /* the upgrade's step (a SandboxUpdateOps) */
            if (json_str(c, "reason")) cJSON_AddStringToObject(s, "upgradingReason", json_str(c, "reason"));
            if (json_str(c, "message")) cJSON_AddStringToObject(s, "upgradingMessage", json_str(c, "message"));
        } else if (t && strcmp(t, "RuntimeInitialized") == 0) { /* /init and mounts after a resume */
            if (json_str(c, "reason")) cJSON_AddStringToObject(s, "initReason", json_str(c, "reason"));
            if (json_str(c, "message")) cJSON_AddStringToObject(s, "initMessage", json_str(c, "message"));
        }
    }
    cJSON_AddBoolToObject(s, "paused", cJSON_IsTrue(json_get(spec, "paused")));
    /* OpenKruise pauses the Sandbox itself when spec.pauseTime is reached (and never resumes) */
    if (json_str(spec, "pauseTime")) cJSON_AddStringToObject(s, "pauseTime", json_str(spec, "pauseTime"));
    const char *ops = json_str(json_get(json_get(obj, "metadata"), "labels"), LABEL_UPDATE_OPS);
    if (ops) cJSON_AddStringToObject(s, "updateOps", ops);
    return out;
}

static void sandbox_observe_one(const cJSON *proj, obs_sandbox *s) {
    memset(s, 0, sizeof *s);
    const cJSON *st = instance_observe_identity(proj, &s->name, &s->uid, &s->deleting, NULL);
    const cJSON *labels = json_get(json_get(proj, "metadata"), "labels");
    s->claim_name = json_str(labels, LABEL_CLAIM_NAME);
    s->spec_hash = json_str(labels, LABEL_SPEC_HASH);
    s->phase = json_str(st, "phase");
    const cJSON *ready = json_get(st, "ready");
    s->ready_known = ready != NULL;
    s->ready = cJSON_IsTrue(ready);
    s->ready_reason = json_str(st, "readyReason");
    s->ready_message = json_str(st, "readyMessage");
    s->paused = cJSON_IsTrue(json_get(st, "paused"));
    s->pod_ip = json_str(st, "podIP");
    s->pause_time = json_str(st, "pauseTime");
    int64_t at = wc_rfc3339_parse(s->pause_time);
    s->pause_time_due = at > 0 && at <= (int64_t)time(NULL); /* decide() has no clock: observed here */
    s->upgrading_reason = json_str(st, "upgradingReason");
    s->upgrading_message = json_str(st, "upgradingMessage");
    s->update_ops = json_str(st, "updateOps");
    s->status_message = json_str(st, "message");
    s->init_reason = json_str(st, "initReason");
    s->init_message = json_str(st, "initMessage");
}

/* A Sandbox's or a claim's projection for a live list: its metadata is all it needs. */
static cJSON *sandbox_project_metadata(const cJSON *obj) { return instance_project_metadata(obj, LABEL_CLAIM_NAME); }

/* ---- rendering ---- */

/* Where this Worker's worker-deps belong now (namespaced: SPEC 7). */
static const char *sandbox_deps_path(backend *b, arena *a, const worker *w) {
    char dir[700];
    deps_dir_for(sbx_state(b)->set.deps_prefix, w->namespace, w->worker_name, dir, sizeof dir);
    return arena_strdup(a, dir);
}

/* Everything that shapes a sandbox instance. The env goes in by value: a sandbox has no
 * secretKeyRef, its credentials are in the env file. */
static void sandbox_spec_hash(backend *b, arena *a, const worker *w, const kv_list *secret, char out[17]) {
    const sandbox_settings *s = &sbx_state(b)->set;
    env_list env;
    env_build(a, w, &b->host->envc, secret, 0, &env);
    spec_hasher h;
    spec_hash_init(&h);
    spec_hash_field(&h, "backend", "sandbox");
    spec_hash_field(&h, "image", w->image);
    spec_hash_field(&h, "runtime", w->runtime);
    for (size_t i = 0; i < env.n; i++)
        spec_hash_field(&h, arena_sprintf(a, "env:%s", env.items[i].name), env.items[i].value);
    spec_hash_field(&h, "requests.cpu", w->req_cpu);
    spec_hash_field(&h, "requests.memory", w->req_mem);
    spec_hash_field(&h, "limits.cpu", w->lim_cpu);
    spec_hash_field(&h, "limits.memory", w->lim_mem);
    kv_list labels = instance_labels(a, w, b->host->names.controller_name, "sandbox");
    for (size_t i = 0; i < labels.n; i++) spec_hash_field(&h, arena_sprintf(a, "label:%s", labels.items[i].key), labels.items[i].value);
    /* The claim's mounts and pool shape the sandbox too: a sandbox must not keep reading deps at
     * a path (prefix, namespace, workerName) or through a PV the Worker no longer uses. */
    spec_hash_field(&h, "deps-path", sandbox_deps_path(b, a, w));
    spec_hash_field(&h, "deps-pv", s->deps_pv);
    spec_hash_field(&h, "pool", s->pool);
    spec_hash_final(&h, out);
}


/* A duration as a claim takes it ("300s"), at least one second. */
static const char *claim_duration(arena *a, int64_t ms) { return arena_sprintf(a, "%" PRId64 "s", ms / 1000 > 0 ? ms / 1000 : 1); }

/* The SandboxClaim: claims one sandbox from the pool, mounts the worker-deps sub-paths. */
static void claim_render(buf *b, arena *a, backend *be, const worker *w, const char *name, const char *hash) {
    const sandbox_settings *c = &sbx_state(be)->set;
    kv_list labels = instance_labels(a, w, be->host->names.controller_name, "sandbox");
    cJSON *claim = instance_object("agents.kruise.io/v1alpha1", "SandboxClaim");
    instance_metadata(claim, name, w->namespace, &labels, hash, w);
    cJSON *spec = json_add_object(claim, "spec");
    json_add_str(spec, "templateName", c->pool);
    json_add_int(spec, "replicas", 1);
    json_add_str(spec, "claimTimeout", claim_duration(a, c->claim_timeout_ms));
    json_add_str(spec, "waitReadyTimeout", claim_duration(a, c->wait_ready_timeout_ms));
    json_add_str(spec, "ttlAfterCompleted", "-1s");
    json_add_str(json_add_object(spec, "inplaceUpdate"), "image", w->image);
    /* The Sandbox inherits these labels: the worker label maps it back, the UID names the Worker
     * object (a Sandbox has no owner), the hash tells whether it still matches the Worker after
     * the claim is gone. */
    cJSON *sl = json_add_labels(spec, "labels", &labels);
    json_add_str(sl, LABEL_WORKER_UID, w->uid ? w->uid : "");
    json_add_str(sl, LABEL_SPEC_HASH, hash);
    /* the sub-paths are the deps keys' directories (deps_keys_in), under the same path */
    const char *dir = sandbox_deps_path(be, a, w);
    static const struct { const char *sub, *path; int ro; } mounts[] = {
        {"token", WORKER_TOKEN_DIR, 1}, {"env", "/mnt/hiclaw/env", 1}, {"data", "/mnt/hiclaw/data", 0}};
    cJSON *arr = json_add_array(spec, "dynamicVolumesMount");
    for (size_t i = 0; i < sizeof mounts / sizeof *mounts; i++) {
        cJSON *m = json_push_object(arr);
        json_add_str(m, "pvName", c->deps_pv);
        json_add_str(m, "subPath", arena_sprintf(a, "%s%s", dir, mounts[i].sub));
        json_add_str(m, "mountPath", mounts[i].path);
        json_add_bool(m, "readOnly", mounts[i].ro);
    }
    json_render_free(b, claim);
}

/* The warm pool's SandboxSet: one container `worker` whose env tells the agent runtime where the
 * env file is mounted. */
static void sandbox_pool_render(buf *b, const char *pool, const char *ns, const char *controller_name,
                                const char *agent_image, int64_t replicas, const char *cpu, const char *mem) {
    kv sys[] = {{"app.kubernetes.io/managed-by", "worker-controller"}, {LABEL_CONTROLLER, controller_name}};
    kv_list labels = {sys, 2};
    cJSON *set = instance_object("agents.kruise.io/v1alpha1", "SandboxSet");
    instance_metadata(set, pool, ns, &labels, NULL, NULL);
    cJSON *spec = json_add_object(set, "spec");
    json_add_int(spec, "replicas", replicas);
    cJSON *runtimes = json_add_array(spec, "runtimes");
    json_add_str(json_push_object(runtimes), "name", "csi");
    json_add_str(json_push_object(runtimes), "name", "agent-runtime");
    cJSON *tspec = json_add_object(json_add_object(spec, "template"), "spec");
    json_add_bool(tspec, "automountServiceAccountToken", 0);
    cJSON *c = json_push_object(json_add_array(tspec, "containers"));
    json_add_str(c, "name", "worker");
    json_add_str(c, "image", agent_image);
    cJSON *env = json_add_array(c, "env");
    static const char *const vars[][2] = {{"HICLAW_WORKER_ENV_MOUNT_DIR", "/mnt/hiclaw/env"},
                                          {"HICLAW_WORKER_ENV_MOUNT_REQUIRED", "1"}};
    for (size_t i = 0; i < 2; i++) {
        cJSON *v = json_push_object(env);
        json_add_str(v, "name", vars[i][0]);
        json_add_str(v, "value", vars[i][1]);
    }
    json_add_resources(c, "100m", "256Mi", cpu, mem);
    json_render_free(b, set);
}

/* The worker-deps as storage has them, for Workers of the sandbox backend (or that were): two
 * HEADs at the path their sandbox mounts (token/token: lifetime; env/env: content hash), never a
 * read of a credential. Who owns them too: objects of another Worker are a conflict decide()
 * reports. Storage trouble must not look like "no token": assume present, look again soon, and
 * rewrite nothing on doubt. */
static void sandbox_observe_deps(backend *b, exec_ctx *x, obs_sandboxes *s) {
    sandbox_state *st = sbx_state(b);
    const worker *w = x->w;
    if (!st->deps.s3) return;
    s->deps_path = sandbox_deps_path(b, x->a, w);
    int sandbox_worker = strcmp(w->backend, "sandbox") == 0 || (w->status_backend && strcmp(w->status_backend, "sandbox") == 0) ||
                         (w->status_deps_path && *w->status_deps_path);
    if (!b->policy.enabled || !sandbox_worker || w->deleting) return;
    deps_keys k;
    deps_keys_in(deps_live_path(w, s), &k);
    deps_head token, env;
    wc_err err;
    err_clear(&err);
    if (deps_head_read(st->deps.s3, k.token, &token, &err) < 0 || deps_head_read(st->deps.s3, k.env, &env, &err) < 0) {
        log_warn("cannot read worker-deps metadata", "worker", w->name, "namespace", w->namespace, "error", err.msg);
        s->token_present = 1;
        s->token_refresh_in_ms = 30000;
        s->deps_present = 1;
        return;
    }
    s->deps_observed = 1;
    s->token_present = token.present;
    s->token_refresh_in_ms = token.present ? deps_token_refresh_in_ms(token.issued, token.expires, (int64_t)time(NULL)) : 0;
    s->deps_present = env.present;
    s->deps_hash = arena_strdup(x->a, env.env_hash);
    char why[700];
    const char *keys[2] = {k.token, k.env};
    const deps_head *heads[2] = {&token, &env};
    for (int i = 0; i < 2 && !s->deps_conflict; i++)
        if (heads[i]->present && !deps_owner_allows(&heads[i]->owner, w->uid, st->deps.s3->bucket, keys[i], why, sizeof why))
            s->deps_conflict = arena_strdup(x->a, why);
}

/* ---- the operations ---- */

/* Claims and Sandboxes are watched whenever OpenKruise serves them, even with the backend
 * disabled (read-only then): a Worker whose sandbox was made before the backend was turned off
 * must be seen — never doubled by a Pod, never stripped of its finalizer while its agent runs.
 * Enabled, the CRDs are required; disabled, they are looked for. */
static int sandbox_setup_caches(backend *b, int auto_mode, wc_err *err) {
    static const kube_resource *const need[] = {&KUBE_SANDBOXCLAIMS, &KUBE_SANDBOXES};
    sandbox_state *st = sbx_state(b);
    int served = 0, enabled = st->enabled;
    for (size_t i = 0; i < 2; i++) {
        char crd[128];
        snprintf(crd, sizeof crd, "%s.%s", need[i]->plural, need[i]->group);
        int p = backend_api_served(b, need[i], err);
        if (p < 0) {
            log_error(enabled ? "cannot check the OpenKruise agents CRDs"
                              : "cannot check the OpenKruise agents CRDs (with the sandbox backend disabled the controller "
                                "still reads claims and Sandboxes: apply the RBAC of render-rbac --no-sandbox)",
                      "crd", crd, "error", err->msg);
            if (err->code == WC_EINVAL) err->code = WC_EIO; /* not a configuration error: exit 1 */
            return -1;
        }
        if (p == 0 && enabled && auto_mode) { /* auto: Pods only, said at start and in status */
            snprintf(st->off_why, sizeof st->off_why,
                     "OpenKruise agents is not installed (%s is not served): install it and restart the controller", crd);
            st->enabled = 0;
        } else if (p == 0 && enabled) {
            log_error("the sandbox backend is enabled but a CRD it needs is not installed: install OpenKruise "
                      "agents, or set HICLAW_SANDBOX_ENABLED=false",
                      "crd", crd);
            return err_set(err, WC_EINVAL, "%s is not installed", crd);
        }
        served += p;
    }
    sbx_state(b)->watching = served == 2;
    if (!sbx_state(b)->watching) return 0;
    if (!enabled) log_info("sandbox backend disabled; watching SandboxClaims and Sandboxes read-only (OpenKruise agents is installed)");
    b->caches[0] = (backend_cache){.name = "sandboxclaims", .resource = &KUBE_SANDBOXCLAIMS, .project = claim_project};
    b->caches[1] = (backend_cache){.name = "sandboxes", .resource = &KUBE_SANDBOXES, .project = sandbox_project};
    b->ncaches = 2;
    return 0;
}

/* The worker-deps storage: required with the sandbox backend; with it disabled, used (when
 * configured) only to remove a deleted Worker's objects. Shares the Kubernetes client's cancel
 * flag: losing the lease or shutting down aborts S3 calls too. */
static int sandbox_setup_storage(backend *b, const wc_cfg *conf, wc_err *err) {
    sandbox_state *st = sbx_state(b);
    int have_storage = *conf->worker_deps_endpoint && *conf->worker_deps_bucket && *conf->worker_deps_access_key_id;
    if (!st->enabled && !have_storage) return 0;
    st->deps.s3 = s3_client_new(conf->worker_deps_endpoint, conf->worker_deps_bucket, conf->worker_deps_region,
                           conf->worker_deps_access_key_id, conf->worker_deps_secret_access_key, conf->worker_deps_ca_pem,
                           err);
    if (!st->deps.s3 && st->enabled) {
        log_error("cannot set up worker-deps storage", "error", err->msg);
        err->code = WC_EINVAL;
        return -1;
    }
    if (!st->deps.s3) log_warn("cannot set up worker-deps storage; deleted Workers' worker-deps objects stay", "error", err->msg);
    else st->deps.s3->cancel = &b->host->kc->cancel, st->deps.s3->read_only = b->host->read_only;
    return 0;
}

static int sandbox_setup(backend *b, const wc_cfg *conf, wc_err *err) {
    sandbox_state *st = xcalloc(1, sizeof *st);
    b->state = st;
    st->set = (sandbox_settings){
        .deps_prefix = conf->worker_deps_prefix,
        .deps_pv = conf->sandbox_deps_pv,
        .pool = conf->sandbox_pool,
        .token_ttl_s = conf->sandbox_token_ttl_s,
        .claim_timeout_ms = conf->sandbox_claim_timeout_ms,
        .wait_ready_timeout_ms = conf->sandbox_wait_ready_timeout_ms,
        .manage_pool = conf->sandbox_manage_pool,
        .agent_image = conf->sandbox_agent_runtime_image,
        .prewarm = conf->sandbox_prewarm_size,
        .cpu = conf->worker_cpu.canon,
        .memory = conf->worker_memory.canon,
    };
    st->deps = (deps_store){.host = b->host, .token_ttl_s = conf->sandbox_token_ttl_s};
    st->enabled = conf->sandbox_enabled;
    if (conf->sandbox_off_why) snprintf(st->off_why, sizeof st->off_why, "%s", conf->sandbox_off_why);
    int auto_mode = conf->sandbox_mode < 0;
    if (sandbox_setup_caches(b, auto_mode, err) < 0 || sandbox_setup_storage(b, conf, err) < 0) return -1;
    st->policy = (sandbox_policy_cfg){.pause = conf->sandbox_pause, .deps_storage = st->deps.s3 != NULL,
                                      .off_why = st->off_why[0] ? st->off_why : NULL, .pool = st->set.pool,
                                      .claim_timeout_s = st->set.claim_timeout_ms / 1000};
    b->policy = (backend_policy)SANDBOX_POLICY(st->enabled, &st->policy);
    if (auto_mode && !st->enabled) {
        snprintf(st->disabled_spec, sizeof st->disabled_spec,
                 "spec.backendRuntime is sandbox but the sandbox backend is off (HICLAW_SANDBOX_ENABLED=auto): %s",
                 st->off_why);
        b->policy.disabled_spec = st->disabled_spec;
        log_warn("sandbox backend off (HICLAW_SANDBOX_ENABLED=auto): running Pods only; Workers asking for a sandbox get "
                 "Synced=False SandboxDisabled", "why", st->off_why);
    } else if (auto_mode) {
        log_info("sandbox backend on (HICLAW_SANDBOX_ENABLED=auto: worker-deps storage configured, OpenKruise agents "
                 "installed)");
    }
    return 0;
}

static void sandbox_release(backend *b) {
    sandbox_state *st = sbx_state(b);
    if (!st) return;
    s3_client_free(st->deps.s3);
    free(st);
    b->state = NULL;
}

/* The claims and Sandboxes of the Worker from the caches (another Worker UID's — same name,
 * older Worker object — are not ours), and its worker-deps. */
static void sandbox_observe_caches(backend *b, exec_ctx *x, obs_sandboxes *s) {
    cJSON *claims_json = kube_informer_by_index(b->informers[0], x->key);
    cJSON *sbx_json = kube_informer_by_index(b->informers[1], x->key);
    exec_hold(x, claims_json);
    exec_hold(x, sbx_json);
    size_t nc = (size_t)cJSON_GetArraySize(claims_json), ns = (size_t)cJSON_GetArraySize(sbx_json);
    obs_claim *claims = arena_calloc(x->a, (nc ? nc : 1) * sizeof *claims);
    obs_sandbox *sbx = arena_calloc(x->a, (ns ? ns : 1) * sizeof *sbx);
    const cJSON *it;
    cJSON_ArrayForEach(it, claims_json)
        if (!instance_of_other_worker(json_get(it, "metadata"), x->w->uid)) claim_observe(it, &claims[s->nclaims++]);
    for (size_t i = 0; i < s->nclaims; i++) /* hiclaw_sandbox_claim_seconds: a claim seen Completed */
        wm_claim_seen(b->host->metrics, x->key, x->w, claims[i].name, claims[i].deleting, claims[i].phase,
                      claims[i].claimed, claims[i].replicas, wc_now_seconds());
    cJSON_ArrayForEach(it, sbx_json)
        if (!instance_of_other_worker(json_get(it, "metadata"), x->w->uid)) sandbox_observe_one(it, &sbx[s->nsandboxes++]);
    s->claims = claims;
    s->sandboxes = sbx;
    for (size_t i = 0; i < s->nclaims; i++)
        if (!claims[i].deleting && claims[i].deps_path) s->mounted_deps_path = claims[i].deps_path;
}

/* live: a completed claim's Sandbox is not in the cache (decide() asked); only when the API
 * server has none either is the loss real. An error keeps the first decision: wait, never
 * delete on doubt. */
static int sandbox_observe(backend *b, exec_ctx *x, int live) {
    obs_sandboxes *s = x->own[b->index];
    if (live) {
        size_t n = 0;
        wc_err err;
        err_clear(&err);
        if (!sbx_state(b)->watching) return 0;
        if (backend_live_list(b, x->w, &KUBE_SANDBOXES, NULL, sandbox_project_metadata, NULL, &n, NULL, &err) < 0) {
            log_warn("cannot list the Worker's Sandboxes", "worker", x->w->name, "namespace", x->w->namespace, "error", err.msg);
            return 0;
        }
        if (n) return 0;
        s->lost_confirmed = 1;
        return 1;
    }
    s = arena_calloc(x->a, sizeof *s);
    x->own[b->index] = s;
    x->o->of[b->index] = s;
    if (sbx_state(b)->watching) sandbox_observe_caches(b, x, s); /* else OpenKruise is not installed: deps only */
    sandbox_observe_deps(b, x, s);
    return 0;
}

/* The spec hash, and what env/env must hash to: the file this Worker's env renders to now. */
static void sandbox_render(backend *b, exec_ctx *x, char hash[17]) {
    sandbox_spec_hash(b, x->a, x->w, x->secret, hash);
    obs_sandboxes *s = x->own[b->index];
    if (!s || !s->deps_observed) return;
    buf file = BUF_INIT;
    deps_env_file(&sbx_state(b)->deps, x, &file);
    char *want = arena_alloc(x->a, 17);
    deps_env_hash(&file, want);
    buf_free_secret(&file);
    s->want_deps_hash = want;
}

static int sandbox_create_claim(backend *b, exec_ctx *x, const char *name, wc_err *err) {
    buf body = BUF_INIT;
    claim_render(&body, x->a, b, x->w, name, x->hashes[b->index]);
    int rc = backend_create(b, x, &KUBE_SANDBOXCLAIMS, name, &body,
                            arena_sprintf(x->a, "created SandboxClaim %s (pool %s)", name, sbx_state(b)->set.pool),
                            "ClaimNameConflict", "ClaimFailed", err);
    buf_free(&body);
    if (rc == 0 && x->created) wm_claim_created(b->host->metrics, x->key, x->w, name, wc_now_seconds());
    return rc;
}

/* Pause or resume: a merge patch of spec.paused — and of spec.pauseTime (null) when a resume
 * must also clear it, or OpenKruise would pause the Sandbox again at once. */
static int sandbox_set_paused(backend *b, exec_ctx *x, const action *act, wc_err *err) {
    int clear = act->kind == ACT_RESUME_SANDBOX_CLEAR_PAUSE_TIME;
    const char *patch = act->flag ? "{\"spec\":{\"paused\":true}}"
                        : clear   ? "{\"spec\":{\"paused\":false,\"pauseTime\":null}}"
                                  : "{\"spec\":{\"paused\":false}}";
    int rc = kube_patch(b->host->kc, &KUBE_SANDBOXES, x->w->namespace, act->name, NULL, KUBE_PATCH_MERGE, patch, NULL,
                        0, 0, NULL, err);
    if (rc == 0)
        backend_record(b->host, x->w, "Normal", act->flag ? "Paused" : "Resumed", act->flag ? "Pause" : "Resume",
                       arena_sprintf(x->a, "%s Sandbox %s%s", act->flag ? "paused" : "resumed", act->name,
                                     clear ? " and cleared its spec.pauseTime" : ""));
    return rc;
}

/* Before anything is written at a path the Worker's status does not name, the status names it:
 * a deletion removes the objects at the paths the status records, so objects written first and
 * recorded after could be forgotten — the record lost to a failing API server, then workerName
 * changed again (found by the 60-minute chaos soak: deps at a path in between outlived their
 * Worker). A merge patch of this one field; the status write at the end carries it too. */
static int sandbox_record_deps_path(backend *b, exec_ctx *x, const char *dir, wc_err *err) {
    const worker *w = x->w;
    if (str_eq(dir, w->status_deps_path) || str_eq(dir, x->deps_recorded)) return 0;
    cJSON *patch = json_object();
    json_add_str(json_add_object(patch, "status"), "workerDepsPath", dir);
    buf body = BUF_INIT;
    json_render_free(&body, patch);
    int rc = kube_patch(b->host->kc, &KUBE_WORKERS, w->namespace, w->name, "status", KUBE_PATCH_MERGE, body.data, NULL,
                        0, 0, NULL, err);
    buf_free(&body);
    if (rc < 0) return err_wrap(err, "recording status.workerDepsPath %s before writing there", dir);
    x->deps_recorded = dir;
    return 0;
}

/* The deps actions: written (and where, for status.workerDepsPath) or deleted. */
static int sandbox_execute_deps(backend *b, exec_ctx *x, const action *act, wc_err *err) {
    const worker *w = x->w;
    const char *dir = act->name && *act->name ? act->name : sandbox_deps_path(b, x->a, x->w); /* decide() names it */
    int rc = 0;
    if ((act->kind == ACT_WRITE_DEPS || act->kind == ACT_REFRESH_TOKEN || act->kind == ACT_WRITE_ENV) &&
        sandbox_record_deps_path(b, x, dir, err) < 0)
        return -1;
    if (act->kind == ACT_WRITE_DEPS) {
        double t0 = wc_now_seconds();
        rc = deps_write_all(&sbx_state(b)->deps, x, dir, err);
        if (rc == 0) wm_deps_written(b->host->metrics, wc_now_seconds() - t0); /* written and verified only */
    } else if (act->kind == ACT_REFRESH_TOKEN) {
        if ((rc = deps_write_token_at(&sbx_state(b)->deps, x, dir, err)) < 0) return deps_failed(x, err);
        log_info("refreshed worker-deps token", "worker", w->name, "namespace", w->namespace, "backend", "sandbox");
    } else if (act->kind == ACT_WRITE_ENV) {
        if ((rc = deps_write_env_at(&sbx_state(b)->deps, x, dir, err)) < 0) return deps_failed(x, err);
        log_info("rewrote worker-deps env file", "worker", w->name, "namespace", w->namespace, "backend", "sandbox");
    } else {
        if (!sbx_state(b)->deps.s3) return 0;
        int all = act->kind != ACT_DELETE_DEPS_TOKEN; /* a moved path or a deleted Worker: all three */
        if (deps_delete_at(&sbx_state(b)->deps, x, dir, all, all, err) < 0) return -1;
        log_info(act->kind == ACT_DELETE_DEPS_ALL     ? "deleted worker-deps objects"
                 : act->kind == ACT_DELETE_DEPS_MOVED ? "deleted worker-deps objects at a path no longer used"
                                                      : "deleted worker-deps token",
                 "worker", w->name, "namespace", w->namespace, "backend", "sandbox", "path", dir);
        return 0;
    }
    if (rc == 0) x->deps_path = dir;
    return rc;
}

static int sandbox_execute(backend *b, exec_ctx *x, const action *act, wc_err *err) {
    if (act->kind == ACT_DELETE_CLAIM) return backend_delete(b, x, &KUBE_SANDBOXCLAIMS, act, err);
    if (act->kind == ACT_DELETE_SANDBOX) return backend_delete(b, x, &KUBE_SANDBOXES, act, err);
    if (act->kind == ACT_SET_SANDBOX_PAUSED || act->kind == ACT_RESUME_SANDBOX_CLEAR_PAUSE_TIME)
        return sandbox_set_paused(b, x, act, err);
    if (act->kind == ACT_CREATE_CLAIM) return sandbox_create_claim(b, x, act->name, err);
    return sandbox_execute_deps(b, x, act, err);
}

/* Claims (named like the Worker's instance), then Sandboxes (OpenKruise names them: listed by
 * the claim's labels they carry) — where OpenKruise is watched at all. */
static size_t sandbox_live(backend *b, live_query *q) {
    if (!sbx_state(b)->watching) return 0;
    q[0] = (live_query){.resource = &KUBE_SANDBOXCLAIMS, .by_name = 1, .project = sandbox_project_metadata};
    q[1] = (live_query){.resource = &KUBE_SANDBOXES, .project = sandbox_project_metadata};
    return 2;
}

/* With its Sandboxes gone, a Worker may still have their Pods: OpenKruise leaves a Sandbox's Pod
 * to the garbage collector, which a cluster may not run, or run late — and that Pod is an agent
 * holding the Worker's mounted credentials. The controller does not wait for it: it deletes
 * every Pod still labelled for the Worker by a sandbox backend (its own Pods are gone by now) and
 * keeps the finalizer until none is left. */
static int sandbox_gone(backend *b, exec_ctx *x, wc_err *err) {
    const worker *w = x->w;
    char sel[600];
    snprintf(sel, sizeof sel, LABEL_WORKER "=%s," LABEL_CONTROLLER "=%s," LABEL_BACKEND " in (sandbox,agent-sandbox)",
             w->name, b->host->names.controller_name);
    cJSON *list = NULL;
    if (kube_list_page(b->host->kc, &KUBE_PODS, w->namespace, sel, NULL, 0, NULL, &list, err) < 0) return -1;
    buf names = BUF_INIT;
    size_t n = 0;
    int rc = 0;
    const cJSON *it;
    cJSON_ArrayForEach(it, json_get(list, "items")) {
        const char *name = json_str_at(it, "metadata.name"), *uid = json_str_at(it, "metadata.uid");
        /* Another Worker object's (same name, older UID): its Sandbox may be alive, and deleting
         * its Pod would only fight OpenKruise recreating it — the sweep removes that Sandbox. */
        if (!name || instance_of_other_worker(json_get(it, "metadata"), w->uid)) continue;
        n++;
        buf_printf(&names, "%s%s", names.len ? ", " : "", name);
        if (json_str_at(it, "metadata.deletionTimestamp")) continue;
        wc_err derr;
        err_clear(&derr);
        int d = kube_delete(b->host->kc, &KUBE_PODS, w->namespace, name, uid, NULL, "Background", &derr);
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

/* A Sandbox can outlive its Worker with nothing left to remove it: OpenKruise's claim controller
 * may still be working on a claim that is already deleted and create the claim's Sandbox
 * (createOnNoStock, the pool empty) after the Worker's deletion has confirmed none exists — found
 * by the 60-minute chaos soak 46 s after the claim was gone. It carries the claim's labels, no
 * ownerReference, and the agent it runs holds the deleted Worker's identity. Such a Sandbox names
 * a Worker UID no Worker has any more; once the API server confirms that (the Worker of that name
 * is gone or is a newer object), it is deleted (UID precondition). Its Pod follows its owner. */
static int sandbox_sweep(backend *b, const char *key, const char *worker_uid, wc_err *err) {
    if (!b->policy.enabled || !sbx_state(b)->watching) return 0; /* disabled: observed, never touched */
    cJSON *sbx_json = kube_informer_by_index(b->informers[1], key);
    const cJSON *it;
    const char *stray_uid = NULL;
    cJSON_ArrayForEach(it, sbx_json) {
        const cJSON *md = json_get(it, "metadata");
        const char *uid = json_str(json_get(md, "labels"), LABEL_WORKER_UID);
        if (uid && *uid && !json_get(md, "deletionTimestamp") && !str_eq(uid, worker_uid)) stray_uid = uid;
    }
    if (!stray_uid) {
        cJSON_Delete(sbx_json);
        return 0;
    }
    const char *slash = strchr(key, '/');
    char ns[256];
    snprintf(ns, sizeof ns, "%.*s", slash ? (int)(slash - key) : 0, key);
    const char *name = slash ? slash + 1 : key;
    cJSON *wobj = NULL;
    wc_err gerr;
    err_clear(&gerr);
    const char *live_uid = NULL;
    if (kube_get(b->host->kc, &KUBE_WORKERS, ns, name, NULL, &wobj, &gerr) == 0) live_uid = json_str_at(wobj, "metadata.uid");
    else if (!kube_err_not_found(&gerr)) {
        *err = gerr;
        cJSON_Delete(sbx_json);
        return err_wrap(err, "confirming that the Worker of Sandbox labels %s is gone", key);
    }
    int rc = 0;
    cJSON_ArrayForEach(it, sbx_json) {
        const cJSON *md = json_get(it, "metadata");
        const char *uid = json_str(json_get(md, "labels"), LABEL_WORKER_UID), *sname = json_str(md, "name");
        if (!uid || !*uid || !sname || json_get(md, "deletionTimestamp") || str_eq(uid, live_uid)) continue;
        wc_err derr;
        err_clear(&derr);
        int d = kube_delete(b->host->kc, &KUBE_SANDBOXES, ns, sname, json_str(md, "uid"), NULL, "Background", &derr);
        if (d == 0)
            log_info("deleted a Sandbox of a Worker that no longer exists", "worker", name, "namespace", ns, "name", sname,
                     "workerUID", uid);
        else if (!delete_ok(d, &derr)) {
            *err = derr;
            rc = err_wrap(err, "deleting Sandbox %s of a Worker that no longer exists", sname);
        }
    }
    cJSON_Delete(wobj);
    cJSON_Delete(sbx_json);
    return rc;
}

/* The warm pool is a write like any other: only the leader makes it (SPEC 10), so a standby
 * starting with other settings never fights the running leader over it. Server-side applied. */
static int sandbox_start(backend *b, wc_err *err) {
    const sandbox_settings *s = &sbx_state(b)->set;
    if (!b->policy.enabled || !s->manage_pool) return 0;
    buf body = BUF_INIT;
    sandbox_pool_render(&body, s->pool, b->host->namespace, b->host->names.controller_name, s->agent_image, s->prewarm,
                        s->cpu, s->memory);
    int rc = kube_patch(b->host->kc, &KUBE_SANDBOXSETS, b->host->namespace, s->pool, NULL, KUBE_PATCH_APPLY, body.data,
                        "worker-controller", 1, 0, NULL, err);
    buf_free(&body);
    if (rc < 0) log_error("cannot apply the SandboxSet (warm pool)", "pool", s->pool, "error", err->msg);
    else log_info("applied SandboxSet", "pool", s->pool, "namespace", b->host->namespace);
    return rc;
}

/* explain: the Worker's worker-deps at the path its sandbox mounts (or would), HEADs only. */
static void sandbox_describe(backend *b, exec_ctx *x, cJSON *out) {
    sandbox_state *st = sbx_state(b);
    cJSON *d = json_add_object(out, "workerDeps");
    json_add_bool(d, "configured", st->deps.s3 != NULL);
    if (!st->deps.s3) {
        json_add_str(d, "note", "no worker-deps storage is configured");
        return;
    }
    const obs_sandboxes *s = x->own[b->index] ? x->own[b->index] : &SANDBOX_NONE;
    deps_describe(st->deps.s3, deps_live_path(x->w, s), x->w->uid, d);
}

static const backend_ops sandbox_backend_ops = {.name = "sandbox", .setup = sandbox_setup, .release = sandbox_release,
                                                .observe = sandbox_observe, .render = sandbox_render,
                                                .execute = sandbox_execute, .live = sandbox_live,
                                                .gone = sandbox_gone, .sweep = sandbox_sweep,
                                                .start = sandbox_start,
                                                .describe = sandbox_describe};
