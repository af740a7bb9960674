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
    s->ready_message = json_str(st, "readyMessage");
    s->paused = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(st, "paused"));
    s->pod_ip = json_str(st, "podIP");
}

static void sandbox_observe(controller *c, arena *a, const worker *w, const char *key, cJSON **claims_json,
                            cJSON **sbx_json, observed *o) {
    if (!c->claims || !c->sandboxes) return;
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

    /* The token object's lifetime, for sandbox Workers only (one HEAD, never a read of the
     * token). Storage trouble must not look like "no token": assume present, look again soon. */
    int sandbox_worker = w->backend == BACKEND_SANDBOX || (w->status_backend && strcmp(w->status_backend, "sandbox") == 0);
    if (!c->s3 || !sandbox_worker || w->deleting) return;
    deps_keys k;
    deps_keys_for(c->deps_prefix, w->worker_name, &k);
    int64_t issued = 0, expires = 0;
    wc_err err;
    err_clear(&err);
    int h = deps_token_lifetime(c->s3, &k, &issued, &expires, &err);
    if (h < 0) {
        log_warn("cannot read worker-deps token metadata", "worker", w->name, "namespace", w->namespace, "error", err.msg);
        o->token_present = 1;
        o->token_refresh_in_ms = 30000;
    } else {
        o->token_present = h == 0;
        o->token_refresh_in_ms = h == 0 ? deps_token_refresh_in_ms(issued, expires, (int64_t)time(NULL)) : 0;
    }
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
    spec_hash_final(&h, out);
}

/* Requests a token for the Worker's ServiceAccount and writes it (verified) to token/token. */
static int sandbox_write_token(controller *c, exec_ctx *x, wc_err *err) {
    const worker *w = x->w;
    if (!c->s3) return err_set(err, WC_EINVAL, "no worker-deps storage configured");
    deps_keys k;
    deps_keys_for(c->deps_prefix, w->worker_name, &k);
    worker_token t;
    char sa[300];
    snprintf(sa, sizeof sa, "%sworker-%s", c->dc.prefix, w->name);
    if (token_request(c->kc, w->namespace, sa, c->ps.audience, c->token_ttl_s, &t, err) < 0) return -1;
    int rc = deps_write_token(c->s3, &k, &t, err);
    worker_token_free(&t);
    return rc;
}

/* The create sequence's first half: env file, token, data marker — each written and verified.
 * Any failure stops here: no claim is made (Synced=False WorkerDepsFailed). */
static int sandbox_write_deps(controller *c, exec_ctx *x, wc_err *err) {
    const worker *w = x->w;
    x->failure_reason = "WorkerDepsFailed";
    if (!c->s3) return err_set(err, WC_EINVAL, "no worker-deps storage configured");
    deps_keys k;
    deps_keys_for(c->deps_prefix, w->worker_name, &k);
    env_list env;
    env_build(x->a, w, &c->envc, x->secret, 0, &env);
    buf file = BUF_INIT;
    env_file_write(&file, &env);
    int rc = deps_put_verified(c->s3, k.env, file.data, file.len, NULL, 0, err);
    buf_free_secret(&file); /* it holds the credentials */
    if (rc < 0) return -1;
    if (sandbox_write_token(c, x, err) < 0) return -1;
    if (deps_put_verified(c->s3, k.data, "", 0, NULL, 0, err) < 0) return -1;
    log_info("wrote worker-deps", "worker", w->name, "namespace", w->namespace, "backend", "sandbox", "envObject", k.env);
    x->failure_reason = NULL;
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
    const char *mounts[3][3] = {{"token", WORKER_TOKEN_DIR, "true"}, {"env", "/mnt/hiclaw/env", "true"}, {"data", "/mnt/hiclaw/data", "false"}};
    for (int i = 0; i < 3; i++) {
        if (i) buf_putc(b, ',');
        buf_puts(b, "{\"pvName\":");
        buf_put_json_string(b, c->deps_pv);
        buf_puts(b, ",\"subPath\":");
        buf_put_json_string(b, arena_sprintf(a, "%sworkers-deps/%s/%s", c->deps_prefix, w->worker_name, mounts[i][0]));
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
        return sandbox_write_deps(c, x, err);
    case ACT_REFRESH_TOKEN:
        if (sandbox_write_token(c, x, err) < 0) {
            x->failure_reason = "WorkerDepsFailed";
            return -1;
        }
        log_info("refreshed worker-deps token", "worker", w->name, "namespace", w->namespace, "backend", "sandbox");
        return 0;
    case ACT_CREATE_CLAIM:
        return sandbox_create_claim(c, x, act->name, err);
    case ACT_DELETE_DEPS_TOKEN:
    case ACT_DELETE_DEPS_ALL: {
        if (!c->s3) return 0;
        deps_keys k;
        deps_keys_for(c->deps_prefix, w->worker_name, &k);
        if (s3_delete(c->s3, k.token, err) < 0) return -1;
        if (act->kind == ACT_DELETE_DEPS_ALL && (s3_delete(c->s3, k.env, err) < 0 || s3_delete(c->s3, k.data, err) < 0))
            return -1;
        log_info(act->kind == ACT_DELETE_DEPS_ALL ? "deleted worker-deps objects" : "deleted worker-deps token",
                 "worker", w->name, "namespace", w->namespace, "backend", "sandbox");
        return 0;
    }
    default:
        return err_set(err, WC_EINVAL, "unknown action %d", (int)act->kind);
    }
}
