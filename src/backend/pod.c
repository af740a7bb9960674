/*
 * pod.c — the pod backend's objects (SPEC section 4): the Worker's ServiceAccount and Pod,
 * rendered as JSON from the typed Worker view, plus the label set both backends share.
 *
 * Pure builders: (Worker, env, settings) → JSON text. The reconciler shell sends them.
 * Credentials appear only as secretKeyRefs: env entries with a secret_key never emit a value.
 */

#define LABEL_APP "app"
#define LABEL_WORKER "hiclaw.io/worker"
#define LABEL_CONTROLLER "hiclaw.io/controller"
#define LABEL_RUNTIME "hiclaw.io/runtime"
#define LABEL_BACKEND "hiclaw.io/backend"
#define LABEL_SPEC_HASH "hiclaw.io/spec-hash"
/* The Worker's UID on a claim's spec.labels, so its Sandbox (and that Sandbox's Pod) carries it:
 * OpenKruise gives a claimed Sandbox no ownerReference, so this label is how a Sandbox names the
 * Worker object it was made for. */
#define LABEL_WORKER_UID "hiclaw.io/worker-uid"
#define ANNOTATION_SPEC_HASH "hiclaw.io/spec-hash"
#define WORKER_APP_LABEL_VALUE "hiclaw-worker"
#define WORKER_AUDIENCE_DEFAULT "hiclaw-controller"
#define POD_TOKEN_EXPIRATION_S 3600

typedef struct pod_settings {
    const char *controller_name;
    const char *prefix;
    const char *audience;
} pod_settings;

/* Instance labels: the Worker's metadata.labels, then spec.labels over them, then the system
 * labels over both (system labels always win). Returned sorted, for stable JSON and hashing. */
static kv_list instance_labels(arena *a, const worker *w, const char *controller, backend_kind backend) {
    kv_list l;
    size_t cap = w->meta_labels.n + w->labels.n + 5;
    l.items = arena_alloc(a, cap * sizeof(kv));
    l.n = 0;
    const kv sys[] = {{LABEL_APP, WORKER_APP_LABEL_VALUE},
                      {LABEL_WORKER, w->name},
                      {LABEL_CONTROLLER, controller},
                      {LABEL_RUNTIME, w->runtime},
                      {LABEL_BACKEND, backend_name(backend)}};
    const kv_list *layers[2] = {&w->meta_labels, &w->labels};
    for (int layer = 0; layer < 3; layer++) {
        const kv *src = layer < 2 ? layers[layer]->items : sys;
        size_t n = layer < 2 ? layers[layer]->n : sizeof sys / sizeof *sys;
        for (size_t i = 0; i < n; i++) {
            size_t j = 0;
            while (j < l.n && strcmp(l.items[j].key, src[i].key) != 0) j++;
            if (j == l.n) l.n++;
            l.items[j] = src[i];
        }
    }
    qsort(l.items, l.n, sizeof(kv), kv_cmp);
    return l;
}

static cJSON *json_add_labels(cJSON *obj, const char *key, const kv_list *l) {
    cJSON *o = json_add_object(obj, key);
    for (size_t i = 0; i < l->n; i++) json_add_str(o, l->items[i].key, l->items[i].value);
    return o;
}

/* The metadata every object made for a Worker starts with, rendered in one place: name,
 * namespace, labels, the spec hash (when the object is an instance: hash non-NULL), and the
 * Worker as controlling owner (when owner is non-NULL), so the garbage collector and the
 * instance checks (instance_of_other_worker) tie the object to exactly this Worker object. */
static cJSON *instance_metadata(cJSON *obj, const char *name, const char *ns, const kv_list *labels, const char *hash,
                                const worker *owner) {
    cJSON *md = json_add_object(obj, "metadata");
    json_add_str(md, "name", name);
    json_add_str(md, "namespace", ns);
    json_add_labels(md, "labels", labels);
    if (hash) json_add_str(json_add_object(md, "annotations"), ANNOTATION_SPEC_HASH, hash);
    if (owner) {
        cJSON *ref = json_push_object(json_add_array(md, "ownerReferences"));
        json_add_str(ref, "apiVersion", "hiclaw.io/v1beta1");
        json_add_str(ref, "kind", "Worker");
        json_add_str(ref, "name", owner->name);
        json_add_str(ref, "uid", owner->uid ? owner->uid : "");
        json_add_bool(ref, "controller", 1);
        json_add_bool(ref, "blockOwnerDeletion", 1);
    }
    return md;
}

/* A new object of apiVersion/kind (the members every body starts with). */
static cJSON *instance_object(const char *api_version, const char *kind) {
    cJSON *o = json_object();
    json_add_str(o, "apiVersion", api_version);
    json_add_str(o, "kind", kind);
    return o;
}

/* {"requests":{cpu,memory},"limits":{cpu,memory}} */
static void json_add_resources(cJSON *obj, const char *req_cpu, const char *req_mem, const char *lim_cpu,
                               const char *lim_mem) {
    cJSON *r = json_add_object(obj, "resources");
    cJSON *req = json_add_object(r, "requests"), *lim = json_add_object(r, "limits");
    json_add_str(req, "cpu", req_cpu);
    json_add_str(req, "memory", req_mem);
    json_add_str(lim, "cpu", lim_cpu);
    json_add_str(lim, "memory", lim_mem);
}

static const char *worker_workdir(arena *a, const worker *w) {
    if (strcmp(w->runtime, "copaw") == 0) return "/root/.copaw-worker";
    return arena_sprintf(a, "/root/hiclaw-fs/agents/%s", w->worker_name);
}

/* The ServiceAccount the Worker's token is issued for. It mounts nothing by itself. */
static void pod_render_serviceaccount(buf *b, arena *a, const worker *w, const pod_settings *s) {
    kv sys[] = {{LABEL_APP, WORKER_APP_LABEL_VALUE}, {LABEL_CONTROLLER, s->controller_name}, {LABEL_WORKER, w->name}};
    kv_list labels = {sys, 3};
    cJSON *sa = instance_object("v1", "ServiceAccount");
    instance_metadata(sa, arena_sprintf(a, "%sworker-%s", s->prefix, w->name), w->namespace, &labels, NULL, w);
    json_add_bool(sa, "automountServiceAccountToken", 0);
    json_render_free(b, sa);
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
static cJSON *pod_spec(arena *a, const worker *w, const env_list *env, const pod_settings *s, const char *name) {
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
static void pod_render(buf *b, arena *a, const worker *w, const env_list *env, const pod_settings *s, const char *hash) {
    const char *name = arena_sprintf(a, "%sworker-%s", s->prefix, w->name);
    kv_list labels = instance_labels(a, w, s->controller_name, BACKEND_POD);
    cJSON *pod = instance_object("v1", "Pod");
    instance_metadata(pod, name, w->namespace, &labels, hash, w);
    cJSON_AddItemToObject(pod, "spec", pod_spec(a, w, env, s, name));
    json_render_free(b, pod);
}

/* Everything that shapes a Pod, hashed (see hash.c). */
static void pod_spec_hash(arena *a, const worker *w, const env_list *env, const pod_settings *s, char out[17]) {
    spec_hasher h;
    spec_hash_init(&h);
    spec_hash_field(&h, "backend", "pod");
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
    kv_list labels = instance_labels(a, w, s->controller_name, BACKEND_POD);
    for (size_t i = 0; i < labels.n; i++) spec_hash_field(&h, arena_sprintf(a, "label:%s", labels.items[i].key), labels.items[i].value);
    spec_hash_final(&h, out);
}

/* The informer keeps this much of a Pod: what decide() reads. */
/* The metadata an instance cache keeps for Pods, claims and Sandboxes alike: identity, the
 * labels that map it back to its Worker (and, for a Sandbox, to its claim and spec hash), and
 * the spec-hash annotation. Everything else of metadata is dropped: it is most of the bytes. */
static cJSON *instance_project_metadata(const cJSON *obj) {
    cJSON *out = cJSON_CreateObject();
    const cJSON *md = json_get(obj, "metadata");
    cJSON *m = cJSON_AddObjectToObject(out, "metadata");
    static const char *mkeys[] = {"name", "namespace", "uid", "resourceVersion", "deletionTimestamp"};
    for (size_t i = 0; i < sizeof mkeys / sizeof *mkeys; i++) {
        const cJSON *v = json_get(md, mkeys[i]);
        if (v) cJSON_AddItemToObject(m, mkeys[i], cJSON_Duplicate(v, 1));
    }
    const cJSON *labels = json_get(md, "labels");
    cJSON *ml = cJSON_AddObjectToObject(m, "labels");
    static const char *lkeys[] = {LABEL_WORKER, LABEL_BACKEND, LABEL_SPEC_HASH, "agents.kruise.io/claim-name",
                                  LABEL_WORKER_UID};
    for (size_t i = 0; i < sizeof lkeys / sizeof *lkeys; i++) {
        const char *v = json_str(labels, lkeys[i]);
        if (v) cJSON_AddStringToObject(ml, lkeys[i], v);
    }
    const char *hash = json_str(json_get(md, "annotations"), ANNOTATION_SPEC_HASH);
    if (hash) cJSON_AddStringToObject(cJSON_AddObjectToObject(m, "annotations"), ANNOTATION_SPEC_HASH, hash);
    /* The controller ownerReference, reduced to kind and UID: it tells a Worker's own Pod from
     * the Pod a sandbox controller made for a Sandbox (which carries the same labels). */
    const cJSON *ref;
    cJSON_ArrayForEach(ref, json_get(md, "ownerReferences")) {
        if (!cJSON_IsTrue(json_get(ref, "controller"))) continue;
        cJSON *o = cJSON_AddObjectToObject(m, "owner");
        const char *kind = json_str(ref, "kind"), *uid = json_str(ref, "uid");
        if (kind) cJSON_AddStringToObject(o, "kind", kind);
        if (uid) cJSON_AddStringToObject(o, "uid", uid);
        break;
    }
    return out;
}

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

/* Is this instance (a projection's metadata) another Worker object's? SPEC 3: an instance
 * belongs to a Worker by its labels AND a controller ownerReference with the Worker's UID. The
 * labels already matched (the caches are indexed by them); what can still differ is the Worker
 * *object*: a Worker deleted and recreated under the same name leaves instances controlled by
 * the old UID. Those are not this Worker's — never deleted, never adopted. A Sandbox has no
 * ownerReference (OpenKruise clears it when claiming), so it names the Worker by the label
 * hiclaw.io/worker-uid. Instances with neither (legacy HiClaw Pods, claims made before the
 * label) are this Worker's by their labels. */
static int instance_of_other_worker(const cJSON *md, const char *worker_uid) {
    if (!worker_uid || !*worker_uid) return 0;
    const cJSON *owner = json_get(md, "owner");
    const char *kind = json_str(owner, "kind"), *uid = json_str(owner, "uid");
    if (kind && strcmp(kind, "Worker") == 0 && uid && strcmp(uid, worker_uid) != 0) return 1;
    const char *label = json_str(json_get(md, "labels"), LABEL_WORKER_UID);
    return label && *label && strcmp(label, worker_uid) != 0;
}

/* Why an object found under the name this Worker is about to create (the create said 409) is not
 * this Worker's, or NULL when it is (the cache had not seen our own create yet). obj: the object
 * as read from the API server. Ours: controlled by a Worker with this UID, or — no controller at
 * all, as legacy HiClaw Pods — carrying this Worker's labels. Everything else is someone else's:
 * reporting it beats taking it for success and waiting forever for an instance that is not ours. */
static const char *instance_name_conflict(arena *a, const cJSON *obj, const worker *w, const char *controller,
                                          const char *kind_name) {
    const cJSON *md = json_get(obj, "metadata");
    const char *name = json_str(md, "name");
    const char *lctl = json_str(json_get(md, "labels"), LABEL_CONTROLLER);
    const cJSON *ref;
    cJSON_ArrayForEach(ref, json_get(md, "ownerReferences")) {
        if (!cJSON_IsTrue(json_get(ref, "controller"))) continue;
        const char *k = json_str(ref, "kind"), *uid = json_str(ref, "uid"), *n = json_str(ref, "name");
        if (k && strcmp(k, "Worker") == 0 && uid && w->uid && strcmp(uid, w->uid) == 0) {
            /* This Worker's — but made under another controller (the Worker was relabelled):
             * outside this controller's watch, it could never be managed here. */
            if (lctl && strcmp(lctl, controller) != 0)
                return arena_sprintf(a, "%s %s belongs to this Worker but is labelled %s=%s (another controller's): it "
                                        "is left alone; delete it to have it recreated under %s=%s",
                                     kind_name, name ? name : "?", LABEL_CONTROLLER, lctl, LABEL_CONTROLLER, controller);
            return NULL;
        }
        if (k && strcmp(k, "Worker") == 0)
            return arena_sprintf(a, "%s %s exists and is controlled by another Worker %s (UID %s), likely a deleted "
                                    "Worker of the same name whose %s is still going away: it is left alone, and "
                                    "nothing is created under this name until it is gone",
                                 kind_name, name ? name : "?", n ? n : "?", uid ? uid : "?", kind_name);
        return arena_sprintf(a, "%s %s exists and is not controlled by this Worker (its controller is %s %s, UID %s): "
                                "it is left alone; remove or rename it",
                             kind_name, name ? name : "?", k ? k : "?", n ? n : "?", uid ? uid : "?");
    }
    const cJSON *labels = json_get(md, "labels");
    const char *lw = json_str(labels, LABEL_WORKER), *lc = json_str(labels, LABEL_CONTROLLER);
    const char *luid = json_str(labels, LABEL_WORKER_UID);
    if (lw && strcmp(lw, w->name) == 0 && lc && strcmp(lc, controller) == 0 && (!luid || !w->uid || strcmp(luid, w->uid) == 0))
        return NULL;
    return arena_sprintf(a, "%s %s exists and is not controlled by this Worker (no controller, and not labelled %s=%s, "
                            "%s=%s): it is left alone; remove or rename it",
                         kind_name, name ? name : "?", LABEL_WORKER, w->name, LABEL_CONTROLLER, controller);
}

static cJSON *pod_project(const cJSON *pod) {
    cJSON *out = instance_project_metadata(pod);
    const cJSON *st = json_get(pod, "status");
    cJSON *s = cJSON_AddObjectToObject(out, "status");
    const char *phase = json_str(st, "phase"), *ip = json_str(st, "podIP");
    if (phase) cJSON_AddStringToObject(s, "phase", phase);
    if (ip) cJSON_AddStringToObject(s, "podIP", ip);
    const cJSON *c;
    cJSON_ArrayForEach(c, json_get(st, "conditions")) {
        const char *t = json_str(c, "type");
        if (t && strcmp(t, "Ready") == 0) cJSON_AddBoolToObject(s, "ready", json_str(c, "status") && strcmp(json_str(c, "status"), "True") == 0);
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

/* The identity part every instance observation shares (Pod, claim, Sandbox): from the
 * projection's metadata; strings borrow from it. */
static void instance_observe_identity(const cJSON *md, const char **name, const char **uid, int *deleting) {
    *name = json_str(md, "name");
    *uid = json_str(md, "uid");
    *deleting = json_str(md, "deletionTimestamp") != NULL;
}

/* Reads a projection back into the decide() input. Strings borrow from proj. */
static void pod_observe(const cJSON *proj, obs_pod *p) {
    memset(p, 0, sizeof *p);
    const cJSON *md = json_get(proj, "metadata");
    const cJSON *st = json_get(proj, "status");
    instance_observe_identity(md, &p->name, &p->uid, &p->deleting);
    p->spec_hash = json_str(json_get(md, "annotations"), ANNOTATION_SPEC_HASH);
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

/* Index key of an instance: "namespace/<hiclaw.io/worker label>", the Worker's queue key. */
static char *instance_index(const cJSON *proj) {
    const cJSON *md = json_get(proj, "metadata");
    const char *ns = json_str(md, "namespace");
    const char *w = json_str(json_get(md, "labels"), LABEL_WORKER);
    if (!ns || !w) return NULL;
    buf k = BUF_INIT;
    buf_printf(&k, "%s/%s", ns, w);
    return buf_steal(&k);
}
