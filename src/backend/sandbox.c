/*
 * sandbox.c — the sandbox backend (SPEC section 5): OpenKruise agents SandboxClaims and
 * Sandboxes, observed through informers and mapped back to their Worker by label.
 *
 * This file holds what the reconciler needs of the sandbox backend to be safe even where the
 * backend cannot yet create anything: observing claims and Sandboxes (the switch guard reads
 * them in both directions), tearing them down (delete claim, then Sandbox), pause/resume.
 * Creating a sandbox Worker (worker-deps storage, token delivery, the claim) is refused with a
 * clear error until the worker-deps storage layer exists.
 */

#define LABEL_CLAIM_NAME "agents.kruise.io/claim-name"

/* The informer keeps this much of a SandboxClaim. */
static cJSON *claim_project(const cJSON *obj) {
    cJSON *out = kube_project_metadata(obj);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(obj, "metadata");
    const char *hash = json_str(cJSON_GetObjectItemCaseSensitive(md, "annotations"), ANNOTATION_SPEC_HASH);
    if (hash) cJSON_AddStringToObject(cJSON_AddObjectToObject(cJSON_GetObjectItemCaseSensitive(out, "metadata"), "annotations"),
                                      ANNOTATION_SPEC_HASH, hash);
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
    c->name = json_str(md, "name");
    c->uid = json_str(md, "uid");
    c->deleting = json_str(md, "deletionTimestamp") != NULL;
    c->spec_hash = json_str(cJSON_GetObjectItemCaseSensitive(md, "annotations"), ANNOTATION_SPEC_HASH);
    c->phase = json_str(st, "phase");
    c->message = json_str(st, "message");
    c->claimed = json_int(st, "claimedReplicas", 0);
    c->replicas = json_int(st, "replicas", 1);
}

/* The informer keeps this much of a Sandbox. */
static cJSON *sandbox_project(const cJSON *obj) {
    cJSON *out = kube_project_metadata(obj);
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
    s->name = json_str(md, "name");
    s->uid = json_str(md, "uid");
    s->deleting = json_str(md, "deletionTimestamp") != NULL;
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
    (void)w;
    if (!c->claims || !c->sandboxes) return;
    *claims_json = kube_informer_by_index(c->claims, key);
    *sbx_json = kube_informer_by_index(c->sandboxes, key);
    size_t nc = (size_t)cJSON_GetArraySize(*claims_json), ns = (size_t)cJSON_GetArraySize(*sbx_json), i = 0;
    obs_claim *claims = arena_calloc(a, (nc ? nc : 1) * sizeof *claims);
    obs_sandbox *sbx = arena_calloc(a, (ns ? ns : 1) * sizeof *sbx);
    const cJSON *it;
    cJSON_ArrayForEach(it, *claims_json) claim_observe(it, &claims[i++]);
    i = 0;
    cJSON_ArrayForEach(it, *sbx_json) sandbox_observe_one(it, &sbx[i++]);
    o->claims = claims;
    o->nclaims = nc;
    o->sandboxes = sbx;
    o->nsandboxes = ns;
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
    case ACT_REFRESH_TOKEN:
    case ACT_CREATE_CLAIM:
    case ACT_DELETE_DEPS_TOKEN:
    case ACT_DELETE_DEPS_ALL:
        x->failure_reason = "WorkerDepsFailed";
        return err_set(err, WC_EUNSUPPORTED, "sandbox Workers cannot be created by this build: worker-deps storage is not available");
    default:
        return err_set(err, WC_EINVAL, "unknown action %d", (int)act->kind);
    }
}
