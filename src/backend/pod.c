/*
 * pod.c — the pod backend (SPEC section 4): the Worker runs as one Pod <prefix>worker-<name>,
 * as its ServiceAccount, its token projected at /var/run/secrets/hiclaw/token, credentials only
 * as secretKeyRefs to Secret hiclaw-creds-<name> (an env entry with a secret_key never emits a
 * value).
 *
 *   policy     the status table's Pod rows: create, replace on a spec change or a failure
 *              (with backoff), delete when Sleeping or Stopped
 *   render     the Pod as a tree (pod_spec is also what a backend wrapping a Pod template
 *              embeds), and its spec hash
 *   observe    the pods cache: the Worker's Pods, minus a Sandbox's own Pod (not ours)
 */

#define POD_TOKEN_EXPIRATION_S 3600

static const action_type ACT_CREATE_POD[1] = {
    {.name = "create-pod", .backend = "pod", .creates = "Pod",
     .does = {"create Pod"}}};
static const action_type ACT_DELETE_POD[1] = {{.name = "delete-pod", .backend = "pod", .does = {"delete Pod"}}};

/* ---- observations ---- */

typedef struct obs_pod {
    const char *name, *uid;
    int deleting;
    const char *phase;            /* Pending, Running, Succeeded, Failed, Unknown */
    int ready;                    /* Ready condition True */
    const char *waiting_reason;   /* container "worker" state.waiting.reason */
    const char *waiting_message;
    const char *terminated_reason;
    const char *spec_hash;        /* annotation hiclaw.io/spec-hash */
    const char *pod_ip;
    int is_instance;              /* a pod-backend instance (not a sandbox's own Pod); the shell keeps only these */
} obs_pod;

typedef struct obs_pods {
    const obs_pod *pods;
    size_t npods;
} obs_pods;

static const obs_pods POD_NONE = {NULL, 0};

/* ---- the policy (pure) ---- */

static size_t pod_count(const void *obs) { return obs ? ((const obs_pods *)obs)->npods : 0; }

static int pod_teardown(const void *obs, decision *d) {
    const obs_pods *op = obs ? obs : &POD_NONE;
    for (size_t i = 0; i < op->npods; i++)
        if (!op->pods[i].deleting) decide_action(d, ACT_DELETE_POD, op->pods[i].name, op->pods[i].uid, 0);
    return op->npods > 0;
}

/* Container waiting reasons that mean "this will not start by itself". */
static int waiting_is_failure(const char *reason) {
    static const char *bad[] = {"CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError",
                                "InvalidImageName", "CreateContainerError"};
    for (size_t i = 0; reason && i < sizeof bad / sizeof *bad; i++)
        if (strcmp(reason, bad[i]) == 0) return 1;
    return 0;
}

/* What a reader can do about a container that will not start by itself. */
static const char *waiting_hint(arena *a, const obs_pod *pod) {
    const char *r = pod->waiting_reason;
    if (strcmp(r, "CrashLoopBackOff") == 0)
        return arena_sprintf(a, "the agent keeps exiting: kubectl logs %s --previous shows why", pod->name);
    if (strcmp(r, "ImagePullBackOff") == 0 || strcmp(r, "ErrImagePull") == 0 || strcmp(r, "InvalidImageName") == 0)
        return "check spec.image (or the runtime's image setting) and the image pull credentials";
    if (strcmp(r, "CreateContainerConfigError") == 0)
        return "a Secret or ConfigMap key the Pod references is missing";
    return arena_sprintf(a, "kubectl describe pod %s shows why", pod->name);
}

/* The status table's Pod rows (SPEC 3.7) for the Worker's Pod, and its replacement when its
 * spec hash differs (hash NULL: describe only) or it failed. */
static void pod_decide_status(arena *a, const obs_pod *pod, const char *hash, decision *d) {
    d->instance = (worker_instance){"Pod", pod->name, NULL, pod->pod_ip};
    d->container_state = pod->waiting_reason ? pod->waiting_reason : pod->phase;
    if (pod->deleting) {
        d->phase = PHASE_PENDING;
        d->message = arena_sprintf(a, "waiting for Pod %s to terminate before recreating it", pod->name);
        set_ready(d, "False", "Pending", d->message);
        return;
    }
    /* hash NULL: the caller only wants the Pod's status (switch guard), not a recreate. */
    if (hash && (!pod->spec_hash || strcmp(pod->spec_hash, hash) != 0)) {
        decide_action(d, ACT_DELETE_POD, pod->name, pod->uid, 0);
        d->phase = PHASE_PENDING;
        d->message = arena_sprintf(a, "spec changed: recreating Pod %s", pod->name);
        set_ready(d, "False", "Recreating", d->message);
        decide_event(d, "Normal", "Recreating", d->message);
        decide_recreate(d, "Recreating", pod->uid);
        return;
    }
    const char *phase = pod->phase ? pod->phase : "";
    if (strcmp(phase, "Failed") == 0 || strcmp(phase, "Succeeded") == 0) {
        decide_action(d, ACT_DELETE_POD, pod->name, pod->uid, 0);
        d->phase = PHASE_FAILED;
        d->message = arena_sprintf(a, "Pod %s %s%s%s; recreating with backoff", pod->name,
                                   strcmp(phase, "Failed") == 0 ? "failed" : "exited",
                                   pod->terminated_reason ? ": " : "", pod->terminated_reason ? pod->terminated_reason : "");
        set_ready(d, "False", "PodFailed", d->message);
        decide_event(d, "Warning", "PodFailed", d->message);
        decide_recreate(d, "PodFailed", pod->uid);
        d->backoff = 1;
        return;
    }
    if (waiting_is_failure(pod->waiting_reason)) {
        d->phase = PHASE_FAILED;
        d->message = arena_sprintf(a, "%s: %s (Pod %s); %s", pod->waiting_reason,
                                   pod->waiting_message && *pod->waiting_message ? pod->waiting_message : "no message",
                                   pod->name, waiting_hint(a, pod));
        set_ready(d, "False", pod->waiting_reason, d->message);
        return;
    }
    if (strcmp(phase, "Running") == 0 && pod->ready) {
        d->phase = PHASE_RUNNING;
        d->message = "";
        set_ready(d, "True", "Running", "");
        return;
    }
    d->phase = PHASE_STARTING;
    d->message = pod->waiting_reason ? arena_sprintf(a, "Pod %s %s, container waiting: %s", pod->name, phase, pod->waiting_reason)
                 : strcmp(phase, "Running") == 0
                     ? arena_sprintf(a, "Pod %s is running; waiting for it to become Ready", pod->name)
                     : arena_sprintf(a, "Pod %s %s: waiting for it to be scheduled and started", pod->name,
                                     phase[0] ? phase : "Pending");
    set_ready(d, "False", "Starting", d->message);
}

static void pod_decide(const backend_policy *p, arena *a, const worker *w, const observed *o, const void *obs,
                       const decide_config *c, const char *hash, decision *d) {
    const obs_pods *op = obs ? obs : &POD_NONE;
    const char *want = instance_name(a, w, c);
    const obs_pod *pod = NULL;
    /* Pods carrying our labels under another name (a changed prefix) are ours but stale. */
    for (size_t i = 0; i < op->npods; i++) {
        if (strcmp(op->pods[i].name, want) == 0) pod = &op->pods[i];
        else if (!op->pods[i].deleting) decide_action(d, ACT_DELETE_POD, op->pods[i].name, op->pods[i].uid, 0);
    }
    d->backend = p->name;

    if (w->state != STATE_RUNNING) {
        worker_phase rest = w->state == STATE_SLEEPING ? PHASE_SLEEPING : PHASE_STOPPED;
        if (pod) {
            if (!pod->deleting) decide_action(d, ACT_DELETE_POD, pod->name, pod->uid, 0);
            d->phase = PHASE_STOPPING;
            d->container_state = pod->phase;
            d->message = arena_sprintf(a, "deleting Pod %s (state %s)", pod->name, state_name(w->state));
            d->instance = (worker_instance){"Pod", pod->name, NULL, pod->pod_ip};
            set_ready(d, "False", "Stopping", d->message);
        } else {
            d->phase = op->npods ? PHASE_STOPPING : rest;
            d->message = "";
            set_ready(d, "False", phase_name(d->phase), "");
        }
        return;
    }

    if (!pod) {
        if (op->npods) { /* only stale pods: wait for them to go before creating */
            d->phase = PHASE_PENDING;
            d->message = arena_sprintf(a, "waiting for the Worker's Pods under another name (%s%s) to terminate before "
                                          "creating %s", op->pods[0].name, op->npods > 1 ? ", …" : "", want);
            set_ready(d, "False", "Pending", d->message);
            d->requeue_after_ms = 1000;
            return;
        }
        if (decide_backing_off(a, o, d)) return;
        decide_action(d, ACT_ENSURE_SERVICEACCOUNT, want, NULL, 0);
        decide_action(d, ACT_CREATE_POD, want, NULL, 0);
        d->phase = PHASE_PENDING;
        d->message = arena_sprintf(a, "creating Pod %s", want);
        set_ready(d, "False", "Pending", d->message);
        return;
    }
    pod_decide_status(a, pod, hash, d);
}
/* Why a Pod is replaced: its spec hash changed (Recreating), it ended (PodFailed). A Pod deleted
 * by someone else is simply created again: no reason says it, so it is not counted. */
static const char *const POD_RECREATE_REASONS[] = {"Recreating", "PodFailed", NULL};

/* The pod backend's policy: always enabled, nothing to settle or keep beside its Pods. */
#define POD_POLICY                                                                                  \
    {.name = "pod", .noun = "Pod", .an_instance = "a Pod", .enabled = 1, .count = pod_count,         \
     .teardown = pod_teardown, .decide = pod_decide, .recreate_reasons = POD_RECREATE_REASONS}

/* ---- rendering (pure) ---- */

static const char *worker_workdir(arena *a, const worker *w) {
    if (strcmp(w->runtime, "copaw") == 0) return "/root/.copaw-worker";
    return arena_sprintf(a, "/root/hiclaw-fs/agents/%s", w->worker_name);
}

/* A literal env value as the kubelet must receive it: it expands $(VAR) references in `value`
 * and turns "$$" into "$", so every '$' is doubled and the container sees exactly the bytes the
 * Worker asked for (the bytes a sandbox's env file holds, SPEC 6). Values without '$' come back
 * unchanged (same pointer). */
static const char *pod_env_literal(arena *a, const char *v) {
    if (!v || !strchr(v, '$')) return v ? v : "";
    buf e = BUF_INIT;
    for (const char *p = v; *p; p++) {
        if (*p == '$') buf_putc(&e, '$');
        buf_putc(&e, *p);
    }
    const char *out = arena_strdup(a, buf_cstr(&e));
    buf_free_secret(&e); /* a user value may be sensitive: wipe the scratch copy */
    return out;
}

/* The container's env: literal values, and credentials only as secretKeyRefs to the Worker's
 * Secret (optional, so a Secret created later needs no spec change). */
static void pod_add_env(cJSON *container, arena *a, const env_list *env, const char *secret_name) {
    cJSON *arr = json_add_array(container, "env");
    for (size_t i = 0; i < env->n; i++) {
        const env_entry *e = &env->items[i];
        cJSON *item = json_push_object(arr);
        json_add_str(item, "name", e->name);
        if (e->secret_key) {
            cJSON *ref = json_add_object(json_add_object(item, "valueFrom"), "secretKeyRef");
            json_add_str(ref, "name", secret_name);
            json_add_str(ref, "key", e->secret_key);
            json_add_bool(ref, "optional", 1);
        } else {
            json_add_str(item, "value", pod_env_literal(a, e->value));
        }
    }
}

/* The Pod spec: one container `worker` running the Worker's image as its ServiceAccount, the
 * token projected read-only at WORKER_TOKEN_DIR. Also what a backend that wraps a Pod template
 * embeds. */
static cJSON *pod_spec(arena *a, const worker *w, const env_list *env, const instance_settings *s, const char *name) {
    cJSON *spec = json_object();
    json_add_str(spec, "serviceAccountName", name);
    json_add_bool(spec, "automountServiceAccountToken", 0);
    json_add_str(spec, "restartPolicy", "Always");
    cJSON *c = json_push_object(json_add_array(spec, "containers"));
    json_add_str(c, "name", "worker");
    json_add_str(c, "image", w->image);
    json_add_str(c, "imagePullPolicy", "IfNotPresent");
    json_add_str(c, "workingDir", worker_workdir(a, w));
    pod_add_env(c, a, env, arena_sprintf(a, WORKER_CREDS_SECRET_PREFIX "%s", w->name));
    json_add_resources(c, w->req_cpu, w->req_mem, w->lim_cpu, w->lim_mem);
    cJSON *mount = json_push_object(json_add_array(c, "volumeMounts"));
    json_add_str(mount, "name", "hiclaw-token");
    json_add_str(mount, "mountPath", WORKER_TOKEN_DIR);
    json_add_bool(mount, "readOnly", 1);
    cJSON *vol = json_push_object(json_add_array(spec, "volumes"));
    json_add_str(vol, "name", "hiclaw-token");
    cJSON *src = json_push_object(json_add_array(json_add_object(vol, "projected"), "sources"));
    cJSON *tok = json_add_object(src, "serviceAccountToken");
    json_add_str(tok, "audience", s->audience && *s->audience ? s->audience : WORKER_AUDIENCE_DEFAULT);
    json_add_int(tok, "expirationSeconds", POD_TOKEN_EXPIRATION_S);
    json_add_str(tok, "path", "token");
    return spec;
}

/* The Worker's Pod. */
static void pod_render(buf *b, arena *a, const worker *w, const env_list *env, const instance_settings *s, const char *hash) {
    const char *name = arena_sprintf(a, "%sworker-%s", s->prefix, w->name);
    kv_list labels = instance_labels(a, w, s->controller_name, "pod");
    cJSON *pod = instance_object("v1", "Pod");
    instance_metadata(pod, name, w->namespace, &labels, hash, w);
    cJSON_AddItemToObject(pod, "spec", pod_spec(a, w, env, s, name));
    json_render_free(b, pod);
}

/* Everything that shapes a Pod of backend `backend` (its labels name it), hashed (see hash.c):
 * the pod backend's Pod, or the Pod template a backend wrapping one embeds. */
static void pod_spec_hash_as(arena *a, const worker *w, const env_list *env, const instance_settings *s,
                             const char *backend_name, char out[17]) {
    spec_hasher h;
    spec_hash_init(&h);
    spec_hash_field(&h, "backend", backend_name);
    spec_hash_field(&h, "image", w->image);
    spec_hash_field(&h, "runtime", w->runtime);
    spec_hash_field(&h, "workdir", worker_workdir(a, w));
    spec_hash_field(&h, "audience", s->audience);
    for (size_t i = 0; i < env->n; i++) {
        const env_entry *e = &env->items[i];
        if (e->secret_key) {
            /* The reference and the value behind it: a rotated credential restarts the agent. */
            spec_hash_field(&h, arena_sprintf(a, "env-secret:%s:%s", e->name, e->secret_key), e->value ? e->value : "");
        } else {
            /* the value as rendered: unchanged without '$', so only Pods whose env had one
             * (and was expanded by the kubelet) are replaced when the escaping arrived */
            spec_hash_field(&h, arena_sprintf(a, "env:%s", e->name), pod_env_literal(a, e->value));
        }
    }
    spec_hash_field(&h, "requests.cpu", w->req_cpu);
    spec_hash_field(&h, "requests.memory", w->req_mem);
    spec_hash_field(&h, "limits.cpu", w->lim_cpu);
    spec_hash_field(&h, "limits.memory", w->lim_mem);
    kv_list labels = instance_labels(a, w, s->controller_name, backend_name);
    for (size_t i = 0; i < labels.n; i++) spec_hash_field(&h, arena_sprintf(a, "label:%s", labels.items[i].key), labels.items[i].value);
    spec_hash_final(&h, out);
}

static void pod_spec_hash(arena *a, const worker *w, const env_list *env, const instance_settings *s, char out[17]) {
    pod_spec_hash_as(a, w, env, s, "pod", out);
}

/* ---- the pods cache ---- */

/* Label selector of the pod informer and of the live Pod check: the controller's Pods, minus
 * those labelled for a sandbox backend. OpenKruise gives each Sandbox a Pod carrying the claim's
 * labels (hiclaw.io/worker, hiclaw.io/controller, hiclaw.io/backend=sandbox); that Pod is part of
 * the sandbox instance. Legacy Pods (HiClaw v1.1) have no hiclaw.io/backend label and match. */
#define POD_INSTANCE_SELECTOR_EXTRA "," LABEL_BACKEND " notin (sandbox,agent-sandbox)"

/* A Pod is a pod-backend instance unless something other than a Worker controls it (a Sandbox's
 * Pod is controlled by its Sandbox) or it is labelled for a sandbox backend. The informer's
 * selector already leaves the labelled ones out; this holds for any list, and for a Pod whose
 * labels someone changed. Pods with no controller at all are legacy HiClaw Pods: instances. */
static int pod_is_worker_instance(const char *backend_label, const char *owner_kind) {
    if (backend_label && strcmp(backend_label, "pod") != 0) return 0;
    return !owner_kind || strcmp(owner_kind, "Worker") == 0;
}

static cJSON *pod_project(const cJSON *pod) {
    cJSON *out = instance_project_metadata(pod, NULL);
    const cJSON *st = json_get(pod, "status");
    cJSON *s = cJSON_AddObjectToObject(out, "status");
    const char *phase = json_str(st, "phase"), *ip = json_str(st, "podIP");
    if (phase) cJSON_AddStringToObject(s, "phase", phase);
    if (ip) cJSON_AddStringToObject(s, "podIP", ip);
    const cJSON *c;
    cJSON_ArrayForEach(c, json_get(st, "conditions")) {
        const char *t = json_str(c, "type");
        const char *cs = json_str(c, "status");
        if (t && strcmp(t, "Ready") == 0) cJSON_AddBoolToObject(s, "ready", cs && strcmp(cs, "True") == 0);
    }
    cJSON_ArrayForEach(c, json_get(st, "containerStatuses")) {
        const char *n = json_str(c, "name");
        if (!n || strcmp(n, "worker") != 0) continue;
        const cJSON *state = json_get(c, "state");
        const cJSON *waiting = json_get(state, "waiting");
        const cJSON *term = json_get(state, "terminated");
        if (waiting) {
            const char *r = json_str(waiting, "reason"), *msg = json_str(waiting, "message");
            if (r) cJSON_AddStringToObject(s, "waitingReason", r);
            if (msg) cJSON_AddStringToObject(s, "waitingMessage", msg);
        }
        if (term && json_str(term, "reason")) cJSON_AddStringToObject(s, "terminatedReason", json_str(term, "reason"));
    }
    return out;
}

/* Reads a projection back into the decide() input. Strings borrow from proj. */
static void pod_observe(const cJSON *proj, obs_pod *p) {
    memset(p, 0, sizeof *p);
    const cJSON *md = json_get(proj, "metadata");
    const cJSON *st = instance_observe_identity(proj, &p->name, &p->uid, &p->deleting, &p->spec_hash);
    p->phase = json_str(st, "phase");
    p->pod_ip = json_str(st, "podIP");
    p->ready = cJSON_IsTrue(json_get(st, "ready"));
    p->waiting_reason = json_str(st, "waitingReason");
    p->waiting_message = json_str(st, "waitingMessage");
    p->terminated_reason = json_str(st, "terminatedReason");
    const cJSON *owner = json_get(md, "owner");
    p->is_instance = pod_is_worker_instance(json_str(json_get(md, "labels"), LABEL_BACKEND),
                                            json_str(owner, "kind"));
}

static int pod_proj_is_instance(const cJSON *proj) {
    obs_pod p;
    pod_observe(proj, &p);
    return p.is_instance;
}

/* ---- the operations ---- */

static int pod_setup(backend *b, const wc_cfg *conf, wc_err *err) {
    (void)conf, (void)err;
    b->policy = (backend_policy)POD_POLICY;
    b->caches[0] = (backend_cache){.name = "pods", .resource = &KUBE_PODS, .project = pod_project,
                                   .selector_extra = POD_INSTANCE_SELECTOR_EXTRA};
    b->ncaches = 1;
    return 0;
}

static void pod_release(backend *b) { (void)b; }

/* The Worker's Pods from the cache: a sandbox's own Pod belongs to the sandbox instance, another
 * Worker UID's is not ours. */
static int pod_observe_op(backend *b, exec_ctx *x, int live) {
    if (live) return 0;
    cJSON *arr = kube_informer_by_index(b->informers[0], x->key);
    exec_hold(x, arr);
    size_t n = (size_t)cJSON_GetArraySize(arr), i = 0;
    obs_pod *pods = arena_calloc(x->a, (n ? n : 1) * sizeof *pods);
    const cJSON *it;
    cJSON_ArrayForEach(it, arr) {
        pod_observe(it, &pods[i]);
        if (pods[i].is_instance && !instance_of_other_worker(json_get(it, "metadata"), x->w->uid)) i++;
    }
    obs_pods *op = arena_calloc(x->a, sizeof *op);
    op->pods = pods;
    op->npods = i;
    x->o->of[b->index] = op;
    return 0;
}

/* The env a Pod gets: credentials as secretKeyRefs, all three even when the Secret (or a key of
 * it) is absent, so a Secret created later needs no spec change. */
static void pod_env(backend *b, exec_ctx *x, env_list *env) { env_build(x->a, x->w, &b->host->envc, x->secret, 1, env); }

static void pod_render_op(backend *b, exec_ctx *x, char hash[17]) {
    env_list env;
    pod_env(b, x, &env);
    pod_spec_hash(x->a, x->w, &env, &b->host->names, hash);
}

#ifdef WC_FAILPOINTS
/* break-duplicate-pod (chaos checker test): every Pod is made twice, the twin named <name>-twin. */
static void pod_create_twin(backend *b, exec_ctx *x, const buf *body, const char *name) {
    cJSON *pod = cJSON_Parse(body->data);
    cJSON *md = pod ? cJSON_GetObjectItem(pod, "metadata") : NULL;
    if (!md) {
        cJSON_Delete(pod);
        return;
    }
    cJSON_ReplaceItemInObject(md, "name", cJSON_CreateString(arena_sprintf(x->a, "%s-twin", name)));
    buf twin = BUF_INIT;
    json_render_free(&twin, pod);
    wc_err err;
    err_clear(&err);
    if (kube_create(b->host->kc, &KUBE_PODS, x->w->namespace, NULL, NULL, twin.data, NULL, &err) < 0)
        log_warn("break-duplicate-pod: twin not created", "error", err.msg);
    buf_free(&twin);
}
#endif

static int pod_execute(backend *b, exec_ctx *x, const action *act, wc_err *err) {
    if (act->kind == ACT_DELETE_POD) return backend_delete(b, x, &KUBE_PODS, act, err);
    assert(act->kind == ACT_CREATE_POD);
    env_list env;
    pod_env(b, x, &env);
    buf body = BUF_INIT;
    pod_render(&body, x->a, x->w, &env, &b->host->names, x->hashes[b->index]);
    int rc = backend_create(b, x, &KUBE_PODS, act->name, &body, arena_sprintf(x->a, "created Pod %s", act->name),
                            "PodNameConflict", NULL, err);
#ifdef WC_FAILPOINTS
    if (rc == 0 && failpoint_armed("break-duplicate-pod")) pod_create_twin(b, x, &body, act->name);
#endif
    buf_free(&body);
    return rc;
}

static size_t pod_live(backend *b, live_query *q) {
    (void)b;
    q[0] = (live_query){.resource = &KUBE_PODS, .by_name = 1, .selector_extra = POD_INSTANCE_SELECTOR_EXTRA,
                        .project = pod_project, .is_instance = pod_proj_is_instance};
    return 1;
}

static const backend_ops pod_backend_ops = {.name = "pod", .setup = pod_setup, .release = pod_release,
                                            .observe = pod_observe_op, .render = pod_render_op,
                                            .execute = pod_execute, .live = pod_live};
