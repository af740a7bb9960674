/*
 * explain_render.c — what `explain` prints, as pure functions:
 *
 *     (the Worker, what was observed of it, decide()'s decision) → one JSON tree → text
 *
 * The tree is the `--output json` form (its keys are a contract for tools: add, never rename);
 * the text form is rendered from the same tree, so the two never disagree. No I/O here: the
 * unit tests feed decisions made by decide() itself and read what a person would.
 *
 * Secrets: a Worker's credentials are never put in the tree (the Secret's keys are, its values
 * are not); a spec.env value is shown unless its name says it is a secret (the logger's rule for
 * fields, log_field_is_secret); and the caller passes the whole output through log_redact, which
 * scrubs every registered secret (the Secret's values are registered when read) and every JWT or
 * bearer shape, as for logs, Events and status.
 */

#define EXPLAIN_BACKOFF_NOTE                                                                          \
    "held in the running controller's memory, not visible here: after a failed instance (PodFailed, " \
    "ClaimFailed, SandboxFailed, SandboxLost) it waits 10 s doubling to 5 min before making a new one, and " \
    "retries API errors with the per-key backoff (5 ms to 1000 s); the decision below assumes none is pending"

/* An instance as listed for the Worker: the projection its backend observes. */
typedef struct explain_instance {
    const char *backend, *kind; /* "pod", "Pod" */
    const cJSON *proj;          /* metadata + status, as the backend's cache keeps them */
    int ours;                   /* decide() counts it (not another Worker object's of that name) */
} explain_instance;

typedef struct explain_backend_view {
    const char *name;
    int enabled;
    int served;                 /* its instances' resources are served, so they were listed */
    const char *disabled_why;   /* enabled 0: what a Worker asking for it is told */
    const char *want_hash;      /* the spec hash an instance must carry */
} explain_backend_view;

typedef struct explain_input {
    const worker *w;
    const char *controller;     /* this configuration's HICLAW_CONTROLLER_NAME */
    const char *label;          /* the Worker's hiclaw.io/controller label; NULL: none */
    const char *secret_name;    /* hiclaw-creds-<name> */
    int secret_state;           /* 0 read, 1 absent, -1 not read (nothing would use it) */
    const kv_list *secret;      /* its keys are shown, never its values */
    const explain_backend_view *backends;
    size_t nbackends;
    const explain_instance *instances;
    size_t ninstances;
    const cJSON *extras;        /* what backends keep beside their instances (describe); NULL: none */
    const decision *d;          /* NULL: this controller does not handle the Worker */
} explain_input;

static int explain_handled(const explain_input *in) {
    return in->label && strcmp(in->label, in->controller) == 0;
}

static void explain_cond(cJSON *obj, const char *key, const char *status, const char *reason, const char *message) {
    cJSON *c = json_add_object(obj, key);
    json_add_str(c, "status", status ? status : "");
    json_add_str(c, "reason", reason ? reason : "");
    json_add_str(c, "message", message ? message : "");
}

static void explain_spec(cJSON *root, const explain_input *in) {
    const worker *w = in->w;
    cJSON *s = json_add_object(root, "spec");
    json_add_str(s, "backendRuntime", w->backend);
    json_add_str(s, "state", state_name(w->state));
    json_add_str(s, "runtime", w->runtime ? w->runtime : "");
    json_add_str(s, "image", w->image ? w->image : "");
    json_add_str(s, "workerName", w->worker_name ? w->worker_name : "");
    json_add_bool(s, "containerManaged", w->container_managed);
    cJSON *r = json_add_object(s, "resources");
    json_add_str(r, "requestsCpu", w->req_cpu ? w->req_cpu : "");
    json_add_str(r, "requestsMemory", w->req_mem ? w->req_mem : "");
    json_add_str(r, "limitsCpu", w->lim_cpu ? w->lim_cpu : "");
    json_add_str(r, "limitsMemory", w->lim_mem ? w->lim_mem : "");
    cJSON *env = json_add_object(s, "env");
    for (size_t i = 0; i < w->env.n; i++)
        json_add_str(env, w->env.items[i].key,
                     log_field_is_secret(w->env.items[i].key) ? LOG_REDACTED : w->env.items[i].value);
    cJSON *labels = json_add_object(s, "labels");
    for (size_t i = 0; i < w->labels.n; i++) json_add_str(labels, w->labels.items[i].key, w->labels.items[i].value);
    if (w->invalid) json_add_str(s, "invalid", w->invalid);
    cJSON *sec = json_add_object(s, "credentialsSecret");
    json_add_str(sec, "name", in->secret_name ? in->secret_name : "");
    json_add_str(sec, "state", in->secret_state == 0 ? "present" : in->secret_state == 1 ? "absent" : "not read");
    cJSON *keys = json_add_array(sec, "keys"); /* names only: the values are credentials */
    for (size_t i = 0; in->secret_state == 0 && in->secret && i < in->secret->n; i++)
        json_push_str(keys, in->secret->items[i].key);
}

static void explain_status_now(cJSON *root, const worker *w) {
    cJSON *s = json_add_object(root, "status");
    json_add_str(s, "phase", phase_name(w->phase));
    json_add_str(s, "backendRuntime", w->status_backend ? w->status_backend : "");
    json_add_str(s, "message", w->message ? w->message : "");
    json_add_str(s, "containerState", w->container_state ? w->container_state : "");
    json_add_int(s, "observedGeneration", w->observed_generation);
    explain_cond(s, "ready", w->ready.status, w->ready.reason, w->ready.message);
    explain_cond(s, "synced", w->synced.status, w->synced.reason, w->synced.message);
    json_add_str(s, "syncedSince", w->synced.last_transition ? w->synced.last_transition : "");
}

static void explain_instances(cJSON *root, const explain_input *in) {
    cJSON *bs = json_add_array(root, "backends");
    for (size_t i = 0; i < in->nbackends; i++) {
        const explain_backend_view *b = &in->backends[i];
        cJSON *o = json_push_object(bs);
        json_add_str(o, "name", b->name);
        json_add_bool(o, "enabled", b->enabled);
        json_add_bool(o, "served", b->served);
        json_add_str(o, "wantSpecHash", b->want_hash ? b->want_hash : "");
        if (!b->enabled && b->disabled_why) json_add_str(o, "disabled", b->disabled_why);
    }
    cJSON *arr = json_add_array(root, "instances");
    for (size_t i = 0; i < in->ninstances; i++) {
        const explain_instance *e = &in->instances[i];
        const cJSON *md = json_get(e->proj, "metadata");
        cJSON *o = json_push_object(arr);
        json_add_str(o, "backend", e->backend);
        json_add_str(o, "kind", e->kind);
        json_add_str(o, "name", json_str(md, "name") ? json_str(md, "name") : "");
        json_add_str(o, "uid", json_str(md, "uid") ? json_str(md, "uid") : "");
        json_add_bool(o, "deleting", json_str(md, "deletionTimestamp") != NULL);
        json_add_bool(o, "ofThisWorker", e->ours);
        const char *hash = json_str(json_get(md, "annotations"), ANNOTATION_SPEC_HASH);
        if (!hash) hash = json_str(json_get(md, "labels"), LABEL_SPEC_HASH);
        json_add_str(o, "specHash", hash ? hash : "");
        const cJSON *st = json_get(e->proj, "status");
        cJSON_AddItemToObject(o, "state", json_checked(st ? cJSON_Duplicate(st, 1) : cJSON_CreateObject()));
    }
}

/* The reason a person looks for: Synced's when it is False (what blocks), else Ready's. */
static const char *explain_reason(const decision *d) {
    if (d->synced.status && strcmp(d->synced.status, "False") == 0 && d->synced.reason) return d->synced.reason;
    return d->ready.reason ? d->ready.reason : "";
}

/* decide()'s next step in one sentence. */
static const char *explain_summary(arena *a, const decision *d) {
    const char *msg = d->message && *d->message ? d->message : NULL;
    if (d->nactions == 0) {
        if (d->synced.status && strcmp(d->synced.status, "False") == 0)
            return arena_sprintf(a, "nothing: %s%s%s", explain_reason(d), msg ? ": " : "", msg ? msg : "");
        if (d->phase == PHASE_RUNNING && d->ready.status && strcmp(d->ready.status, "True") == 0)
            return "nothing: the Worker runs as its spec asks";
        return arena_sprintf(a, "nothing yet: waiting (%s)%s%s", explain_reason(d), msg ? ": " : "", msg ? msg : "");
    }
    buf b = BUF_INIT;
    buf_printf(&b, "%zu step%s in order, stopping at the first that fails: ", d->nactions, d->nactions == 1 ? "" : "s");
    for (size_t i = 0; i < d->nactions; i++)
        buf_printf(&b, "%s%s%s%s", i ? "; " : "", action_does(&d->actions[i]), d->actions[i].name ? " " : "",
                   d->actions[i].name ? d->actions[i].name : "");
    const char *out = arena_strdup(a, buf_cstr(&b));
    buf_free(&b);
    return out;
}

/* When the controller looks at the Worker again after this decision. */
static const char *explain_then(arena *a, const worker *w, const decision *d) {
    if (d->done_deleting) return "the Worker is then gone: the API server removes it once the finalizer is off";
    if (d->backoff)
        return "a new instance only after the recreate backoff (10 s doubling to 5 min, counted by the running controller)";
    if (d->requeue_after_ms > 0)
        return arena_sprintf(a, "looks again in %" PRId64 " s, or sooner when something changes",
                             (d->requeue_after_ms + 999) / 1000);
    if (w->deleting) return "looks again when something changes";
    return "looks again when the Worker or its instances change, and at the periodic resync (about every 10 min)";
}

static void explain_decision(cJSON *root, arena *a, const explain_input *in) {
    cJSON *n = json_add_object(root, "next");
    if (!explain_handled(in)) {
        const char *why = in->label ? arena_sprintf(a, "the Worker is labelled hiclaw.io/controller=%s, not %s: another "
                                                       "controller handles it, this one never acts on it",
                                                    in->label, in->controller)
                                    : arena_sprintf(a, "the Worker has no hiclaw.io/controller label: no controller "
                                                       "handles it; label it hiclaw.io/controller=%s to have this one "
                                                       "act on it", in->controller);
        json_add_bool(n, "handled", 0);
        json_add_str(n, "reason", "NotHandled");
        json_add_str(n, "message", why);
        json_add_str(n, "summary", arena_sprintf(a, "nothing: %s", why));
        json_add_str(n, "then", ""); /* the same keys as a decision's, for tools */
        json_add_array(n, "actions");
        json_add_array(n, "events");
        json_add_bool(n, "backoff", 0);
        json_add_int(n, "requeueAfterSeconds", 0);
        return;
    }
    const decision *d = in->d;
    const worker *w = in->w;
    json_add_bool(n, "handled", 1);
    json_add_str(n, "reason", explain_reason(d));
    json_add_str(n, "message", d->message ? d->message : "");
    json_add_str(n, "summary", explain_summary(a, d));
    json_add_str(n, "then", explain_then(a, w, d));
    cJSON *acts = json_add_array(n, "actions");
    for (size_t i = 0; i < d->nactions; i++) {
        cJSON *o = json_push_object(acts);
        json_add_str(o, "kind", action_kind_name(d->actions[i].kind));
        json_add_str(o, "does", action_does(&d->actions[i]));
        json_add_str(o, "name", d->actions[i].name ? d->actions[i].name : "");
    }
    cJSON *evs = json_add_array(n, "events");
    for (size_t i = 0; i < d->nevents; i++) {
        cJSON *o = json_push_object(evs);
        json_add_str(o, "type", d->events[i].type);
        json_add_str(o, "reason", d->events[i].reason);
        json_add_str(o, "note", d->events[i].note ? d->events[i].note : "");
    }
    /* the status it would write: what the shell would patch (phase kept when decide() keeps it) */
    cJSON *st = json_add_object(n, "status");
    worker_phase phase = d->phase != PHASE_NONE ? d->phase : w->phase;
    const char *runtime = d->backend ? d->backend : w->status_backend;
    json_add_str(st, "phase", phase_name(phase));
    json_add_str(st, "backendRuntime", runtime ? runtime : "");
    json_add_str(st, "containerState", d->container_state ? d->container_state : "");
    cJSON *inst = json_add_object(st, "instance");
    json_add_str(inst, "kind", d->instance.kind ? d->instance.kind : "");
    json_add_str(inst, "name", d->instance.name ? d->instance.name : "");
    json_add_str(inst, "claimName", d->instance.claim_name ? d->instance.claim_name : "");
    json_add_str(inst, "podIP", d->instance.pod_ip ? d->instance.pod_ip : "");
    explain_cond(st, "ready", d->ready.status, d->ready.reason, d->ready.message);
    explain_cond(st, "synced", d->synced.status, d->synced.reason, d->synced.message);
    json_add_bool(n, "backoff", d->backoff);
    json_add_int(n, "requeueAfterSeconds", d->requeue_after_ms > 0 ? (d->requeue_after_ms + 999) / 1000 : 0);
}

/* The whole explanation as a JSON tree (caller frees). */
static cJSON *explain_build(arena *a, const explain_input *in) {
    const worker *w = in->w;
    cJSON *root = json_object();
    cJSON *wk = json_add_object(root, "worker");
    json_add_str(wk, "namespace", w->namespace ? w->namespace : "");
    json_add_str(wk, "name", w->name ? w->name : "");
    json_add_str(wk, "uid", w->uid ? w->uid : "");
    json_add_int(wk, "generation", w->generation);
    json_add_bool(wk, "deleting", w->deleting);
    json_add_bool(wk, "finalizer", w->has_finalizer);
    json_add_str(wk, "controller", in->controller);
    json_add_str_or_null(wk, "controllerLabel", in->label);
    json_add_bool(wk, "handled", explain_handled(in));
    explain_spec(root, in);
    explain_status_now(root, w);
    explain_instances(root, in);
    cJSON *extras = json_add_object(root, "beside");
    const cJSON *it;
    cJSON_ArrayForEach(it, in->extras) cJSON_AddItemToObject(extras, it->string, json_checked(cJSON_Duplicate(it, 1)));
    cJSON *bo = json_add_object(root, "backoff");
    json_add_bool(bo, "visible", 0);
    json_add_str(bo, "note", EXPLAIN_BACKOFF_NOTE);
    explain_decision(root, a, in);
    return root;
}

/* ---- text ---- */

static const char *tx(const cJSON *o, const char *key) {
    const char *s = json_str(o, key);
    return s ? s : "";
}

/* A scalar member as text ("true", "3", "x"); "" for objects and arrays. */
static void explain_scalar(buf *out, const cJSON *v) {
    if (cJSON_IsString(v)) buf_puts(out, v->valuestring);
    else if (cJSON_IsBool(v)) buf_puts(out, cJSON_IsTrue(v) ? "true" : "false");
    else if (cJSON_IsRaw(v)) buf_puts(out, v->valuestring);
    else if (cJSON_IsNumber(v)) json_render_number(out, v->valuedouble);
    else if (cJSON_IsNull(v)) buf_puts(out, "-");
}

/* An object's scalar members as "k=v k=v" (a backend's instance state, its object details). */
static void explain_pairs(buf *out, const cJSON *obj) {
    const cJSON *it;
    int first = 1;
    cJSON_ArrayForEach(it, obj) {
        if (cJSON_IsObject(it) || cJSON_IsArray(it)) continue;
        buf_printf(out, "%s%s=", first ? "" : " ", it->string);
        explain_scalar(out, it);
        first = 0;
    }
    cJSON_ArrayForEach(it, obj) /* nested objects (an owner) inline, one level */
        if (cJSON_IsObject(it)) {
            buf_printf(out, " %s={", it->string);
            explain_pairs(out, it);
            buf_putc(out, '}');
        }
}

/* What a backend keeps beside its instances: its section's scalars, then each array item. */
static void explain_text_beside(buf *out, const cJSON *beside) {
    const cJSON *sec;
    cJSON_ArrayForEach(sec, beside) {
        buf_printf(out, "\n%s\n  ", sec->string);
        explain_pairs(out, sec);
        buf_putc(out, '\n');
        const cJSON *arr;
        cJSON_ArrayForEach(arr, sec) {
            if (!cJSON_IsArray(arr)) continue;
            const cJSON *item;
            cJSON_ArrayForEach(item, arr) {
                buf_puts(out, "  - ");
                explain_pairs(out, item);
                buf_putc(out, '\n');
            }
        }
    }
}

static void explain_text_cond(buf *out, const char *name, const cJSON *c) {
    buf_printf(out, "%s=%s", name, *tx(c, "status") ? tx(c, "status") : "-");
    if (*tx(c, "reason")) buf_printf(out, " (%s)", tx(c, "reason"));
}

static void explain_text_spec(buf *out, const cJSON *s) {
    buf_printf(out, "\nSpec\n  backendRuntime: %s   state: %s   runtime: %s   containerManaged: %s\n",
               tx(s, "backendRuntime"), tx(s, "state"), tx(s, "runtime"),
               cJSON_IsTrue(json_get(s, "containerManaged")) ? "true" : "false");
    buf_printf(out, "  image: %s\n  workerName: %s\n", tx(s, "image"), tx(s, "workerName"));
    const cJSON *r = json_get(s, "resources");
    buf_printf(out, "  resources: requests cpu=%s memory=%s, limits cpu=%s memory=%s\n", tx(r, "requestsCpu"),
               tx(r, "requestsMemory"), tx(r, "limitsCpu"), tx(r, "limitsMemory"));
    const cJSON *env = json_get(s, "env"), *labels = json_get(s, "labels");
    if (cJSON_GetArraySize(env)) {
        buf_puts(out, "  env: ");
        explain_pairs(out, env);
        buf_putc(out, '\n');
    }
    if (cJSON_GetArraySize(labels)) {
        buf_puts(out, "  labels: ");
        explain_pairs(out, labels);
        buf_putc(out, '\n');
    }
    if (*tx(s, "invalid")) buf_printf(out, "  INVALID: %s\n", tx(s, "invalid"));
    const cJSON *sec = json_get(s, "credentialsSecret");
    buf_printf(out, "  credentials: Secret %s %s", tx(sec, "name"), tx(sec, "state"));
    const cJSON *k;
    int i = 0;
    cJSON_ArrayForEach(k, json_get(sec, "keys")) buf_printf(out, "%s%s", i++ ? ", " : " (keys: ", k->valuestring);
    buf_puts(out, i ? "; values not shown)\n" : "\n");
}

static void explain_text_instances(buf *out, const cJSON *root) {
    buf_puts(out, "\nInstances\n");
    const cJSON *b, *in;
    cJSON_ArrayForEach(b, json_get(root, "backends")) {
        const char *name = tx(b, "name");
        int n = 0;
        cJSON_ArrayForEach(in, json_get(root, "instances")) {
            if (strcmp(tx(in, "backend"), name) != 0) continue;
            buf_printf(out, "  %-8s %s %s%s%s: ", name, tx(in, "kind"), tx(in, "name"),
                       cJSON_IsTrue(json_get(in, "deleting")) ? " (being deleted)" : "",
                       cJSON_IsTrue(json_get(in, "ofThisWorker")) ? "" : " (another Worker object's: ignored)");
            explain_pairs(out, json_get(in, "state"));
            const char *h = tx(in, "specHash"), *want = tx(b, "wantSpecHash");
            if (*h) buf_printf(out, " spec-hash=%s%s", h, *want && strcmp(h, want) != 0 ? " (differs: the spec changed)" : "");
            buf_putc(out, '\n');
            n++;
        }
        if (n) continue;
        if (!cJSON_IsTrue(json_get(b, "served")))
            buf_printf(out, "  %-8s none: its API is not served by this cluster\n", name);
        else buf_printf(out, "  %-8s none\n", name);
        if (!cJSON_IsTrue(json_get(b, "enabled"))) buf_printf(out, "  %-8s (backend off: %s)\n", "", tx(b, "disabled"));
    }
}

/* One status line: phase, backend, then the Ready and Synced conditions. */
static void explain_text_status(buf *out, const char *lead, const cJSON *st) {
    buf_printf(out, "%sphase %s, backend %s, ", lead, *tx(st, "phase") ? tx(st, "phase") : "-",
               *tx(st, "backendRuntime") ? tx(st, "backendRuntime") : "-");
    explain_text_cond(out, "Ready", json_get(st, "ready"));
    buf_puts(out, ", ");
    explain_text_cond(out, "Synced", json_get(st, "synced"));
    buf_putc(out, '\n');
}

static void explain_text_next(buf *out, const cJSON *n) {
    buf_printf(out, "\nNext (what decide() would do now)\n  reason:  %s\n", tx(n, "reason"));
    if (*tx(n, "message")) buf_printf(out, "  why:     %s\n", tx(n, "message"));
    buf_printf(out, "  does:    %s\n", tx(n, "summary"));
    const cJSON *a;
    int i = 0;
    cJSON_ArrayForEach(a, json_get(n, "actions"))
        buf_printf(out, "           %d. %s%s%s  [%s]\n", ++i, tx(a, "does"), *tx(a, "name") ? " " : "", tx(a, "name"),
                   tx(a, "kind"));
    cJSON_ArrayForEach(a, json_get(n, "events"))
        buf_printf(out, "  event:   %s %s: %s\n", tx(a, "type"), tx(a, "reason"), tx(a, "note"));
    const cJSON *st = json_get(n, "status");
    if (st) explain_text_status(out, "  status:  ", st);
    if (*tx(n, "then")) buf_printf(out, "  then:    %s\n", tx(n, "then"));
}

/* The explanation for people, from the tree explain_build made. */
static void explain_text(buf *out, const cJSON *root) {
    const cJSON *w = json_get(root, "worker"), *st = json_get(root, "status");
    buf_printf(out, "Worker %s/%s (uid %s, generation %s%s)\n", tx(w, "namespace"), tx(w, "name"), tx(w, "uid"),
               cJSON_IsRaw(json_get(w, "generation")) ? json_get(w, "generation")->valuestring : "?",
               cJSON_IsTrue(json_get(w, "deleting")) ? ", being deleted" : "");
    const char *label = json_str(w, "controllerLabel");
    buf_printf(out, "  controller: %s; the Worker's label hiclaw.io/controller=%s: %s\n", tx(w, "controller"),
               label ? label : "(none)", cJSON_IsTrue(json_get(w, "handled")) ? "handled by it" : "NOT handled by it");
    explain_text_spec(out, json_get(root, "spec"));
    explain_text_status(out, "\nStatus (as the Worker says now)\n  ", st);
    if (*tx(st, "message")) buf_printf(out, "  message: %s\n", tx(st, "message"));
    explain_text_instances(out, root);
    explain_text_beside(out, json_get(root, "beside"));
    buf_printf(out, "\nBackoff\n  %s\n", tx(json_get(root, "backoff"), "note"));
    const cJSON *sy = json_get(st, "synced");
    if (strcmp(tx(sy, "status"), "False") == 0)
        buf_printf(out, "  the last status written says: Synced=False %s: %s (since %s)\n", tx(sy, "reason"),
                   tx(sy, "message"), *tx(st, "syncedSince") ? tx(st, "syncedSince") : "?");
    explain_text_next(out, json_get(root, "next"));
}
