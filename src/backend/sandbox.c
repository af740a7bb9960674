/*
 * sandbox.c — the sandbox backend (SPEC section 5): OpenKruise agents SandboxClaims and
 * Sandboxes, observed through informers and mapped back to their Worker by label.
 *
 * The create sequence is the point of the seed's review: build the env → request a token →
 * write and verify env/env, token/token, data/.keep → only then create the SandboxClaim. The
 * reconciler executes decide()'s actions in order and stops at the first failure, so a claim
 * can never exist without its deps. Delete sequence: claim, then Sandboxes (wait until gone),
 * then the token object (and on Worker deletion env and data too).
 */

#define LABEL_CLAIM_NAME "agents.kruise.io/claim-name"

static void sandbox_observe_deps(controller *c, arena *a, const worker *w, observed *o);

/* The informer keeps this much of a SandboxClaim. */
static cJSON *claim_project(const cJSON *obj) {
    cJSON *out = instance_project_metadata(obj);
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(obj, "status");
    cJSON *s = cJSON_AddObjectToObject(out, "status");
    const char *phase = json_str(st, "phase"), *msg = json_str(st, "message");
    if (phase) cJSON_AddStringToObject(s, "phase", phase);
    if (msg) cJSON_AddStringToObject(s, "message", msg);
    cJSON_AddNumberToObject(s, "claimedReplicas", (double)json_int(st, "claimedReplicas", 0));
    cJSON_AddNumberToObject(s, "replicas", (double)json_int(spec, "replicas", 1));
    /* The worker-deps dir the sandbox mounts: the token mount's sub-path without "token". */
    const cJSON *m;
    cJSON_ArrayForEach(m, cJSON_GetObjectItemCaseSensitive(spec, "dynamicVolumesMount")) {
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
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(proj, "metadata");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(proj, "status");
    instance_observe_identity(md, &c->name, &c->uid, &c->deleting);
    c->spec_hash = json_str(cJSON_GetObjectItemCaseSensitive(md, "annotations"), ANNOTATION_SPEC_HASH);
    c->phase = json_str(st, "phase");
    c->message = json_str(st, "message");
    c->claimed = json_int(st, "claimedReplicas", 0);
    c->replicas = json_int(st, "replicas", 1);
    c->deps_path = json_str(st, "depsPath");
}

/* The informer keeps this much of a Sandbox. */
static cJSON *sandbox_project(const cJSON *obj) {
    cJSON *out = instance_project_metadata(obj);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(obj, "status");
    const cJSON *spec = cJSON_GetObjectItemCaseSensitive(obj, "spec");
    cJSON *s = cJSON_AddObjectToObject(out, "status");
    const char *phase = json_str(st, "phase");
    if (phase) cJSON_AddStringToObject(s, "phase", phase);
    const cJSON *podinfo = cJSON_GetObjectItemCaseSensitive(st, "podInfo");
    const char *ip = json_str(podinfo, "podIP");
    if (ip) cJSON_AddStringToObject(s, "podIP", ip);
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItemCaseSensitive(st, "conditions")) {
        const char *t = json_str(c, "type");
        if (!t || strcmp(t, "Ready") != 0) continue;
        cJSON_AddBoolToObject(s, "ready", str_eq(json_str(c, "status"), "True"));
        if (json_str(c, "reason")) cJSON_AddStringToObject(s, "readyReason", json_str(c, "reason"));
        if (json_str(c, "message")) cJSON_AddStringToObject(s, "readyMessage", json_str(c, "message"));
    }
    cJSON_AddBoolToObject(s, "paused", cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(spec, "paused")));
    return out;
}

static void sandbox_observe_one(const cJSON *proj, obs_sandbox *s) {
    memset(s, 0, sizeof *s);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(proj, "metadata");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(proj, "status");
    const cJSON *labels = cJSON_GetObjectItemCaseSensitive(md, "labels");
    instance_observe_identity(md, &s->name, &s->uid, &s->deleting);
    s->claim_name = json_str(labels, LABEL_CLAIM_NAME);
    s->spec_hash = json_str(labels, LABEL_SPEC_HASH);
    s->phase = json_str(st, "phase");
    const cJSON *ready = cJSON_GetObjectItemCaseSensitive(st, "ready");
    s->ready_known = ready != NULL;
    s->ready = cJSON_IsTrue(ready);
    s->ready_reason = json_str(st, "readyReason");
    s->ready_message = json_str(st, "readyMessage");
    s->paused = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "paused"));
    s->pod_ip = json_str(st, "podIP");
}

static void sandbox_observe(controller *c, arena *a, const worker *w, const char *key, cJSON **claims_json,
                            cJSON **sbx_json, observed *o) {
    if (!c->claims || !c->sandboxes) { /* OpenKruise not installed: no instances, deps maybe */
        sandbox_observe_deps(c, a, w, o);
        return;
    }
    *claims_json = kube_informer_by_index(c->claims, key);
    *sbx_json = kube_informer_by_index(c->sandboxes, key);
    size_t nc = (size_t)cJSON_GetArraySize(*claims_json), ns = (size_t)cJSON_GetArraySize(*sbx_json);
    obs_claim *claims = arena_calloc(a, (nc ? nc : 1) * sizeof *claims);
    obs_sandbox *sbx = arena_calloc(a, (ns ? ns : 1) * sizeof *sbx);
    const cJSON *it;
    /* another Worker UID's claims and Sandboxes (same name, older Worker object) are not ours */
    o->nclaims = o->nsandboxes = 0;
    cJSON_ArrayForEach(it, *claims_json)
        if (!instance_of_other_worker(cJSON_GetObjectItemCaseSensitive(it, "metadata"), w->uid))
            claim_observe(it, &claims[o->nclaims++]);
    cJSON_ArrayForEach(it, *sbx_json)
        if (!instance_of_other_worker(cJSON_GetObjectItemCaseSensitive(it, "metadata"), w->uid))
            sandbox_observe_one(it, &sbx[o->nsandboxes++]);
    o->claims = claims;
    o->sandboxes = sbx;
    for (size_t i = 0; i < o->nclaims; i++)
        if (!claims[i].deleting && claims[i].deps_path) o->mounted_deps_path = claims[i].deps_path;

    sandbox_observe_deps(c, a, w, o);
}

/* Where this Worker's worker-deps belong now (namespaced: SPEC 7). */
static const char *sandbox_deps_path(controller *c, arena *a, const worker *w) {
    char dir[700];
    deps_dir_for(c->deps_prefix, w->namespace, w->worker_name, dir, sizeof dir);
    return arena_strdup(a, dir);
}

/* The worker-deps as storage has them, for Workers of the sandbox backend (or that were): two
 * HEADs at the path their sandbox mounts (token/token: lifetime; env/env: content hash), never a
 * read of a credential. Who owns them too: objects of another Worker are a conflict decide()
 * reports. Storage trouble must not look like "no token": assume present, look again soon, and
 * rewrite nothing on doubt. */
static void sandbox_observe_deps(controller *c, arena *a, const worker *w, observed *o) {
    if (!c->s3) return;
    o->deps_path = sandbox_deps_path(c, a, w);
    int sandbox_worker = w->backend == BACKEND_SANDBOX || (w->status_backend && strcmp(w->status_backend, "sandbox") == 0) ||
                         (w->status_deps_path && *w->status_deps_path);
    if (!c->dc.sandbox_enabled || !sandbox_worker || w->deleting) return;
    deps_keys k;
    deps_keys_in(deps_live_path(w, o), &k);
    deps_head token, env;
    wc_err err;
    err_clear(&err);
    if (deps_head_read(c->s3, k.token, &token, &err) < 0 || deps_head_read(c->s3, k.env, &env, &err) < 0) {
        log_warn("cannot read worker-deps metadata", "worker", w->name, "namespace", w->namespace, "error", err.msg);
        o->token_present = 1;
        o->token_refresh_in_ms = 30000;
        o->deps_present = 1;
        return;
    }
    o->deps_observed = 1;
    o->token_present = token.present;
    o->token_refresh_in_ms = token.present ? deps_token_refresh_in_ms(token.issued, token.expires, (int64_t)time(NULL)) : 0;
    o->deps_present = env.present;
    o->deps_hash = arena_strdup(a, env.env_hash);
    char why[700];
    const char *keys[2] = {k.token, k.env};
    const deps_head *heads[2] = {&token, &env};
    for (int i = 0; i < 2 && !o->deps_conflict; i++)
        if (heads[i]->present && !deps_owner_allows(&heads[i]->owner, w->uid, c->s3->bucket, keys[i], why, sizeof why))
            o->deps_conflict = arena_strdup(a, why);
}

/* Everything that shapes a sandbox instance. The env goes in by value: a sandbox has no
 * secretKeyRef, its credentials are in the env file. */
static void sandbox_spec_hash(controller *c, arena *a, const worker *w, const kv_list *secret, char out[17]) {
    env_list env;
    env_build(a, w, &c->envc, secret, 0, &env);
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
    kv_list labels = instance_labels(a, w, c->controller_name, BACKEND_SANDBOX);
    for (size_t i = 0; i < labels.n; i++) spec_hash_field(&h, arena_sprintf(a, "label:%s", labels.items[i].key), labels.items[i].value);
    /* The claim's mounts and pool shape the sandbox too: a sandbox must not keep reading deps at
     * a path (prefix, namespace, workerName) or through a PV the Worker no longer uses. */
    spec_hash_field(&h, "deps-path", sandbox_deps_path(c, a, w));
    spec_hash_field(&h, "deps-pv", c->deps_pv);
    spec_hash_field(&h, "pool", c->pool);
    spec_hash_final(&h, out);
}

/* The owner metadata of this Worker's objects. */
static void sandbox_deps_owner(const worker *w, deps_owner_meta *m) { deps_owner_meta_for(w->uid, w->namespace, w->name, m); }

/* A deps action's path: the action's (decide() names it), else where the deps belong now. */
static const char *sandbox_action_path(controller *c, exec_ctx *x, const action *act) {
    return act->name && *act->name ? act->name : sandbox_deps_path(c, x->a, x->w);
}

/* Another Worker's objects: the action fails with reason WorkerDepsConflict (nothing written). */
static int sandbox_deps_failed(exec_ctx *x, const wc_err *err) {
    x->failure_reason = err->code == WC_ECONFLICT ? "WorkerDepsConflict" : "WorkerDepsFailed";
    return -1;
}

/* Requests a token for the Worker's ServiceAccount and writes it (verified) to <dir>token/token. */
static int sandbox_write_token(controller *c, exec_ctx *x, const char *dir, wc_err *err) {
    const worker *w = x->w;
    if (!c->s3) return err_set(err, WC_EINVAL, "no worker-deps storage configured");
    deps_keys k;
    deps_keys_in(dir, &k);
    /* checked before the TokenRequest too: no credential is minted for a key we may not write */
    if (deps_check_owner(c->s3, k.token, w->uid, err) < 0) return -1;
    worker_token t;
    char sa[300];
    snprintf(sa, sizeof sa, "%sworker-%s", c->dc.prefix, w->name);
    if (token_request(c->kc, w->namespace, sa, c->ps.audience, c->token_ttl_s, &t, err) < 0) return -1;
    deps_owner_meta own;
    sandbox_deps_owner(w, &own);
    int rc = deps_write_token(c->s3, &k, &t, &own, w->uid, err);
    worker_token_free(&t);
    return rc;
}

/* The env file (verified, with its content hash) at <dir>env/env. */
static int sandbox_write_env(controller *c, exec_ctx *x, const char *dir, wc_err *err) {
    const worker *w = x->w;
    if (!c->s3) return err_set(err, WC_EINVAL, "no worker-deps storage configured");
    deps_keys k;
    deps_keys_in(dir, &k);
    env_list env;
    env_build(x->a, w, &c->envc, x->secret, 0, &env);
    buf file = BUF_INIT;
    env_file_write(&file, &env);
    deps_owner_meta own;
    sandbox_deps_owner(w, &own);
    int rc = deps_write_env(c->s3, &k, &file, &own, w->uid, err);
    buf_free_secret(&file); /* it holds the credentials */
    return rc;
}

/* The create sequence's first half: env file, token, data marker — each written and verified,
 * each refused if another Worker owns it. Any failure stops here: no claim is made (Synced=False
 * WorkerDepsFailed, or WorkerDepsConflict). */
static int sandbox_write_deps(controller *c, exec_ctx *x, const char *dir, wc_err *err) {
    const worker *w = x->w;
    x->failure_reason = "WorkerDepsFailed";
    if (!c->s3) return err_set(err, WC_EINVAL, "no worker-deps storage configured");
    deps_keys k;
    deps_keys_in(dir, &k);
    deps_owner_meta own;
    sandbox_deps_owner(w, &own);
    /* every key first: a conflict on the last must not leave the first two half-written */
    if (deps_check_owner(c->s3, k.env, w->uid, err) < 0 || deps_check_owner(c->s3, k.token, w->uid, err) < 0 ||
        deps_check_owner(c->s3, k.data, w->uid, err) < 0)
        return sandbox_deps_failed(x, err);
    if (sandbox_write_env(c, x, dir, err) < 0) return sandbox_deps_failed(x, err);
    if (sandbox_write_token(c, x, dir, err) < 0) return sandbox_deps_failed(x, err);
    if (deps_put_owned(c->s3, k.data, "", 0, &own, NULL, 0, w->uid, err) < 0) return sandbox_deps_failed(x, err);
    log_info("wrote worker-deps", "worker", w->name, "namespace", w->namespace, "backend", "sandbox", "envObject", k.env);
    x->failure_reason = NULL;
    return 0;
}

/* Deletes this Worker's objects among token, env (and data when `data`) under dir; another
 * Worker's are left, with a log line and a Warning Event saying whose (they are not ours to
 * delete, and must not block this Worker's own cleanup). */
static int sandbox_delete_deps(controller *c, exec_ctx *x, const char *dir, int env, int data, wc_err *err) {
    const worker *w = x->w;
    deps_keys k;
    deps_keys_in(dir, &k);
    const char *keys[3] = {k.token, env ? k.env : NULL, data ? k.data : NULL};
    for (int i = 0; i < 3; i++) {
        if (!keys[i]) continue;
        char why[700];
        int rc = deps_delete_owned(c->s3, keys[i], w->uid, why, sizeof why, err);
        if (rc < 0) return -1;
        if (rc == 1) {
            log_warn("worker-deps object of another Worker left alone", "worker", w->name, "namespace", w->namespace,
                     "reason", why);
            record(c, w, "Warning", "WorkerDepsConflict", "Delete", why);
        }
    }
    return 0;
}

static void json_duration_s(buf *b, int64_t ms) { buf_printf(b, "\"%" PRId64 "s\"", ms / 1000 > 0 ? ms / 1000 : 1); }

/* The SandboxClaim: claims one sandbox from the pool, mounts the worker-deps sub-paths. */
static void claim_render(buf *b, arena *a, controller *c, const worker *w, const char *name, const char *hash) {
    kv_list labels = instance_labels(a, w, c->controller_name, BACKEND_SANDBOX);
    buf_puts(b, "{\"apiVersion\":\"agents.kruise.io/v1alpha1\",\"kind\":\"SandboxClaim\",\"metadata\":{\"name\":");
    buf_put_json_string(b, name);
    buf_puts(b, ",\"namespace\":");
    buf_put_json_string(b, w->namespace);
    buf_puts(b, ",\"labels\":");
    json_kv_object(b, &labels);
    buf_puts(b, ",\"annotations\":{\"" ANNOTATION_SPEC_HASH "\":");
    buf_put_json_string(b, hash);
    buf_puts(b, "},");
    json_owner_reference(b, w);
    buf_puts(b, "},\"spec\":{\"templateName\":");
    buf_put_json_string(b, c->pool);
    buf_puts(b, ",\"replicas\":1,\"claimTimeout\":");
    json_duration_s(b, c->claim_timeout_ms);
    buf_puts(b, ",\"waitReadyTimeout\":");
    json_duration_s(b, c->wait_ready_timeout_ms);
    buf_puts(b, ",\"ttlAfterCompleted\":\"-1s\",\"inplaceUpdate\":{\"image\":");
    buf_put_json_string(b, w->image);
    /* The Sandbox inherits these labels: the worker label maps it back, the hash tells whether
     * it still matches the Worker after the claim is gone. */
    buf_puts(b, "},\"labels\":{");
    for (size_t i = 0; i < labels.n; i++) {
        buf_put_json_string(b, labels.items[i].key);
        buf_putc(b, ':');
        buf_put_json_string(b, labels.items[i].value);
        buf_putc(b, ',');
    }
    buf_puts(b, "\"" LABEL_WORKER_UID "\":");
    buf_put_json_string(b, w->uid ? w->uid : "");
    buf_puts(b, ",\"" LABEL_SPEC_HASH "\":");
    buf_put_json_string(b, hash);
    buf_puts(b, "},\"dynamicVolumesMount\":[");
    /* the sub-paths are the deps keys' directories (deps_keys_in), under the same path */
    const char *dir = sandbox_deps_path(c, a, w);
    const char *mounts[3][3] = {{"token", WORKER_TOKEN_DIR, "true"}, {"env", "/mnt/hiclaw/env", "true"}, {"data", "/mnt/hiclaw/data", "false"}};
    for (int i = 0; i < 3; i++) {
        if (i) buf_putc(b, ',');
        buf_puts(b, "{\"pvName\":");
        buf_put_json_string(b, c->deps_pv);
        buf_puts(b, ",\"subPath\":");
        buf_put_json_string(b, arena_sprintf(a, "%s%s", dir, mounts[i][0]));
        buf_puts(b, ",\"mountPath\":");
        buf_put_json_string(b, mounts[i][1]);
        buf_printf(b, ",\"readOnly\":%s}", mounts[i][2]);
    }
    buf_puts(b, "]}}");
}

static int sandbox_create_claim(controller *c, exec_ctx *x, const char *name, wc_err *err) {
    const worker *w = x->w;
    int exists = 0;
    if (other_backend_exists(c, w, BACKEND_SANDBOX, &exists, err) < 0) return -1;
    if (exists) {
        x->failure_reason = "BackendSwitchBlocked";
        return err_set(err, WC_EINVAL, "refusing to create SandboxClaim %s: a Pod of this Worker exists", name);
    }
    buf body = BUF_INIT;
    claim_render(&body, x->a, c, w, name, x->sandbox_hash);
    int rc = kube_create(c->kc, &KUBE_SANDBOXCLAIMS, w->namespace, NULL, NULL, body.data, NULL, err);
    buf_free(&body);
    if (rc == 0) {
        log_info("created SandboxClaim", "worker", w->name, "namespace", w->namespace, "backend", "sandbox", "name", name);
        record(c, w, "Normal", "Created", "Create", arena_sprintf(x->a, "created SandboxClaim %s (pool %s)", name, c->pool));
    } else if (kube_err_conflict(err)) {
        rc = create_conflict(c, x, &KUBE_SANDBOXCLAIMS, name, "SandboxClaim", "ClaimNameConflict", err);
    } else {
        x->failure_reason = "ClaimFailed";
    }
    return rc;
}

/* The warm pool, server-side applied at start when the controller manages it. */
static int sandbox_apply_pool(controller *c, const char *ns, const char *agent_image, int64_t replicas,
                              const char *cpu, const char *mem, wc_err *err) {
    buf b = BUF_INIT;
    buf_puts(&b, "{\"apiVersion\":\"agents.kruise.io/v1alpha1\",\"kind\":\"SandboxSet\",\"metadata\":{\"name\":");
    buf_put_json_string(&b, c->pool);
    buf_puts(&b, ",\"namespace\":");
    buf_put_json_string(&b, ns);
    buf_puts(&b, ",\"labels\":{\"app.kubernetes.io/managed-by\":\"worker-controller\",\"" LABEL_CONTROLLER "\":");
    buf_put_json_string(&b, c->controller_name);
    buf_printf(&b, "}},\"spec\":{\"replicas\":%" PRId64 ",\"runtimes\":[{\"name\":\"csi\"},{\"name\":\"agent-runtime\"}],", replicas);
    buf_puts(&b, "\"template\":{\"spec\":{\"automountServiceAccountToken\":false,\"containers\":[{\"name\":\"worker\",\"image\":");
    buf_put_json_string(&b, agent_image);
    buf_puts(&b, ",\"env\":[{\"name\":\"HICLAW_WORKER_ENV_MOUNT_DIR\",\"value\":\"/mnt/hiclaw/env\"},"
                 "{\"name\":\"HICLAW_WORKER_ENV_MOUNT_REQUIRED\",\"value\":\"1\"}],\"resources\":{\"requests\":{\"cpu\":\"100m\",\"memory\":\"256Mi\"},\"limits\":{\"cpu\":");
    buf_put_json_string(&b, cpu);
    buf_puts(&b, ",\"memory\":");
    buf_put_json_string(&b, mem);
    buf_puts(&b, "}}}]}}}}");
    int rc = kube_patch(c->kc, &KUBE_SANDBOXSETS, ns, c->pool, NULL, KUBE_PATCH_APPLY, b.data, "worker-controller", 1, 0, NULL, err);
    buf_free(&b);
    return rc;
}

static int sandbox_exec_action(controller *c, exec_ctx *x, const action *act, wc_err *err) {
    const worker *w = x->w;
    int rc = 0;
    switch (act->kind) {
    case ACT_DELETE_CLAIM:
        rc = kube_delete(c->kc, &KUBE_SANDBOXCLAIMS, w->namespace, act->name, act->uid, NULL, "Background", err);
        if (rc == 0) {
            log_info("deleted SandboxClaim", "worker", w->name, "namespace", w->namespace, "backend", "sandbox", "name", act->name);
            record(c, w, "Normal", "Deleted", "Delete", arena_sprintf(x->a, "deleted SandboxClaim %s", act->name));
        }
        return delete_ok(rc, err) ? 0 : -1;
    case ACT_DELETE_SANDBOX:
        rc = kube_delete(c->kc, &KUBE_SANDBOXES, w->namespace, act->name, act->uid, NULL, "Background", err);
        if (rc == 0) {
            log_info("deleted Sandbox", "worker", w->name, "namespace", w->namespace, "backend", "sandbox", "name", act->name);
            record(c, w, "Normal", "Deleted", "Delete", arena_sprintf(x->a, "deleted Sandbox %s", act->name));
        }
        return delete_ok(rc, err) ? 0 : -1;
    case ACT_SET_SANDBOX_PAUSED: {
        const char *patch = act->flag ? "{\"spec\":{\"paused\":true}}" : "{\"spec\":{\"paused\":false}}";
        rc = kube_patch(c->kc, &KUBE_SANDBOXES, w->namespace, act->name, NULL, KUBE_PATCH_MERGE, patch, NULL, 0, 0, NULL, err);
        if (rc == 0) record(c, w, "Normal", act->flag ? "Paused" : "Resumed", act->flag ? "Pause" : "Resume",
                            arena_sprintf(x->a, "%s Sandbox %s", act->flag ? "paused" : "resumed", act->name));
        return rc;
    }
    case ACT_WRITE_DEPS:
        return sandbox_write_deps(c, x, sandbox_action_path(c, x, act), err);
    case ACT_REFRESH_TOKEN:
        if (sandbox_write_token(c, x, sandbox_action_path(c, x, act), err) < 0) return sandbox_deps_failed(x, err);
        log_info("refreshed worker-deps token", "worker", w->name, "namespace", w->namespace, "backend", "sandbox");
        return 0;
    case ACT_WRITE_ENV:
        if (sandbox_write_env(c, x, sandbox_action_path(c, x, act), err) < 0) return sandbox_deps_failed(x, err);
        log_info("rewrote worker-deps env file", "worker", w->name, "namespace", w->namespace, "backend", "sandbox");
        return 0;
    case ACT_CREATE_CLAIM:
        return sandbox_create_claim(c, x, act->name, err);
    case ACT_DELETE_DEPS_TOKEN:
    case ACT_DELETE_DEPS_MOVED:
    case ACT_DELETE_DEPS_ALL: {
        if (!c->s3) return 0;
        const char *dir = sandbox_action_path(c, x, act);
        int all = act->kind != ACT_DELETE_DEPS_TOKEN; /* a moved path or a deleted Worker: all three */
        if (sandbox_delete_deps(c, x, dir, all, all, err) < 0)
            return -1;
        log_info(act->kind == ACT_DELETE_DEPS_ALL     ? "deleted worker-deps objects"
                 : act->kind == ACT_DELETE_DEPS_MOVED ? "deleted worker-deps objects at a path no longer used"
                                                      : "deleted worker-deps token",
                 "worker", w->name, "namespace", w->namespace, "backend", "sandbox", "path", dir);
        return 0;
    }
    default:
        return err_set(err, WC_EINVAL, "unknown action %d", (int)act->kind);
    }
}
