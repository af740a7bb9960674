/*
 * status.c — the Worker's status as this controller writes it: its own fields only (SPEC 2), as
 * a merge patch, and only when they differ from what the Worker already says — so a steady
 * fleet makes no writes at all. Other components' fields (matrixUserID, ...) and conditions are
 * never touched. Every message passes the redactor first.
 */

static const char *cond_transition_time(arena *a, const wcond *old, const char *status, time_t now) {
    if (old->present && old->status && strcmp(old->status, status) == 0 && old->last_transition)
        return old->last_transition;
    char ts[32];
    wc_rfc3339(ts, now);
    return arena_strdup(a, ts);
}

/* One metav1.Condition of ours; its message as redacted as the status message. */
static void status_push_condition(cJSON *conds, arena *a, const char *type, const decided_cond *d, const wcond *old,
                                  int64_t gen, time_t now) {
    cJSON *c = json_push_object(conds);
    json_add_str(c, "type", type);
    json_add_str(c, "status", d->status);
    json_add_str(c, "reason", d->reason);
    char *clean = log_redact(d->message);
    json_add_str(c, "message", clean);
    free(clean);
    json_add_int(c, "observedGeneration", gen);
    json_add_str(c, "lastTransitionTime", cond_transition_time(a, old, d->status, now));
}

/* The stored message is the redacted one (status_push_condition writes it so): compare like with like. */
static int cond_same(const wcond *old, const decided_cond *d, int64_t gen) {
    if (!old->present || !str_eq(old->status, d->status) || !str_eq(old->reason, d->reason) ||
        old->observed_generation != gen)
        return 0;
    char *clean = log_redact(d->message ? d->message : "");
    int same = str_eq(old->message, clean);
    free(clean);
    return same;
}

/* Does the status the decision describes equal what the Worker already says? Pure: this is
 * what keeps a steady fleet from writing at all. */
static int status_same(const worker *w, const decision *d, int64_t observed_gen) {
    worker_phase phase = d->phase != PHASE_NONE ? d->phase : w->phase;
    const char *runtime = d->backend ? d->backend : w->status_backend;
    const char *message = d->message ? d->message : "";
    char *clean_msg = log_redact(message);
    int same = phase == w->phase && str_eq(runtime, w->status_backend) && str_eq(clean_msg, w->message) &&
               str_eq(d->container_state, w->container_state) && observed_gen == w->observed_generation &&
               str_eq(d->instance.kind, w->instance.kind) && str_eq(d->instance.name, w->instance.name) &&
               str_eq(d->instance.claim_name, w->instance.claim_name) && str_eq(d->instance.pod_ip, w->instance.pod_ip) &&
               cond_same(&w->ready, &d->ready, w->generation) && cond_same(&w->synced, &d->synced, w->generation) &&
               (!d->deps_path || str_eq(d->deps_path, w->status_deps_path));
    free(clean_msg);
    return same;
}

/* The status merge patch: this controller's fields, with the conditions of other types
 * (someone else's) carried over unchanged, since a merge patch replaces the list. now: the
 * lastTransitionTime of a condition whose status changes. A field set to null is removed. */
static void status_patch_render(buf *p, arena *a, const cJSON *obj, const worker *w, const decision *d,
                                int64_t observed_gen, time_t now) {
    worker_phase phase = d->phase != PHASE_NONE ? d->phase : w->phase;
    const char *runtime = d->backend ? d->backend : w->status_backend;
    cJSON *patch = json_object();
    cJSON *st = json_add_object(patch, "status");
    json_add_str_or_null(st, "phase", phase == PHASE_NONE ? NULL : phase_name(phase));
    json_add_str_or_null(st, "backendRuntime", runtime && *runtime ? runtime : NULL);
    char *clean_msg = log_redact(d->message ? d->message : "");
    json_add_str(st, "message", clean_msg);
    free(clean_msg);
    json_add_str_or_null(st, "containerState", d->container_state);
    json_add_int(st, "observedGeneration", observed_gen);
    if (d->instance.kind) {
        cJSON *inst = json_add_object(st, "instance");
        json_add_str(inst, "kind", d->instance.kind);
        json_add_str_or_null(inst, "name", d->instance.name);
        json_add_str_or_null(inst, "claimName", d->instance.claim_name);
        json_add_str_or_null(inst, "podIP", d->instance.pod_ip);
    } else {
        json_add_str_or_null(st, "instance", NULL);
    }
    if (d->deps_path) json_add_str(st, "workerDepsPath", d->deps_path); /* absent from the patch: kept */
    cJSON *conds = json_add_array(st, "conditions");
    status_push_condition(conds, a, "Ready", &d->ready, &w->ready, w->generation, now);
    status_push_condition(conds, a, "Synced", &d->synced, &w->synced, w->generation, now);
    const cJSON *cond;
    cJSON_ArrayForEach(cond, json_get(json_get(obj, "status"), "conditions")) {
        const char *t = json_str(cond, "type");
        if (t && (strcmp(t, "Ready") == 0 || strcmp(t, "Synced") == 0)) continue;
        char *s = cJSON_PrintUnformatted(cond); /* someone else's: their bytes, as they wrote them */
        json_push_raw(conds, s);
        free(s);
    }
    json_render_free(p, patch);
}

/* Writes this controller's status fields as a merge patch — only when they differ from what
 * the Worker already says, so a steady fleet causes no writes at all. */
static int write_status(kube_client *kc, arena *a, const cJSON *obj, const worker *w, const decision *d,
                        int64_t observed_gen, wc_err *err) {
    if (status_same(w, d, observed_gen)) return 0;
    buf p = BUF_INIT;
    status_patch_render(&p, a, obj, w, d, observed_gen, time(NULL));
    int rc = kube_patch(kc, &KUBE_WORKERS, w->namespace, w->name, "status", KUBE_PATCH_MERGE, p.data, NULL, 0, 0, NULL, err);
    buf_free(&p);
    return rc;
}
