/*
 * instance.c — what every backend's instances share: the labels that map an object back to its
 * Worker, the metadata every body starts with (rendered once, here), the projection instance
 * caches keep, and the rules of ownership (SPEC 3) — whose instance an object is, and why an
 * object found under a name about to be created is not this Worker's.
 *
 * Pure: (Worker, settings) → labels and JSON trees; projections → observations.
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

/* The names every backend gives a Worker's objects, and the audience of the Worker's tokens. */
typedef struct instance_settings {
    const char *controller_name;  /* hiclaw.io/controller: every watch is scoped by it */
    const char *prefix;           /* <prefix>worker-<name> */
    const char *audience;         /* of the Worker's ServiceAccount tokens */
} instance_settings;

/* Instance labels: the Worker's metadata.labels, then spec.labels over them, then the system
 * labels over both (system labels always win). Returned sorted, for stable JSON and hashing. */
static kv_list instance_labels(arena *a, const worker *w, const char *controller, const char *backend) {
    kv_list l;
    size_t cap = w->meta_labels.n + w->labels.n + 5;
    l.items = arena_alloc(a, cap * sizeof(kv));
    l.n = 0;
    const kv sys[] = {{LABEL_APP, WORKER_APP_LABEL_VALUE},
                      {LABEL_WORKER, w->name},
                      {LABEL_CONTROLLER, controller},
                      {LABEL_RUNTIME, w->runtime},
                      {LABEL_BACKEND, backend}};
    const kv_list *layers[2] = {&w->meta_labels, &w->labels};
    for (int layer = 0; layer < 3; layer++) {
        const kv *src = layer < 2 ? layers[layer]->items : sys;
        size_t n = layer < 2 ? layers[layer]->n : sizeof sys / sizeof *sys;
        for (size_t i = 0; i < n; i++) {
            size_t j = 0;
            while (j < l.n && strcmp(l.items[j].key, src[i].key) != 0) j++;
            if (j == l.n) l.n++;
            assert(l.n <= cap);
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

/* The ServiceAccount of the Worker, whatever its backend: its Pod runs as it, its sandbox holds
 * a token issued for it. It mounts nothing by itself. */
static void serviceaccount_render(buf *b, arena *a, const worker *w, const instance_settings *s) {
    kv sys[] = {{LABEL_APP, WORKER_APP_LABEL_VALUE}, {LABEL_CONTROLLER, s->controller_name}, {LABEL_WORKER, w->name}};
    kv_list labels = {sys, 3};
    cJSON *sa = instance_object("v1", "ServiceAccount");
    instance_metadata(sa, arena_sprintf(a, "%sworker-%s", s->prefix, w->name), w->namespace, &labels, NULL, w);
    json_add_bool(sa, "automountServiceAccountToken", 0);
    json_render_free(b, sa);
}

/* The metadata an instance cache keeps, whatever the backend: identity, the labels that map it
 * back to its Worker (and spec hash, owner UID, plus the one label a backend names as its own:
 * a Sandbox's claim, say), the spec-hash annotation, the controlling owner. Everything else of
 * metadata is dropped: it is most of the bytes. */
static cJSON *instance_project_metadata(const cJSON *obj, const char *own_label) {
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
    const char *lkeys[] = {LABEL_WORKER, LABEL_BACKEND, LABEL_SPEC_HASH, own_label, LABEL_WORKER_UID};
    for (size_t i = 0; i < sizeof lkeys / sizeof *lkeys; i++) {
        const char *v = lkeys[i] ? json_str(labels, lkeys[i]) : NULL;
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

/* What every instance observation starts with: identity, and the spec-hash annotation (when
 * spec_hash is given), from a projection; strings borrow from it. Returns the projection's
 * status object, where each backend reads the rest. */
static const cJSON *instance_observe_identity(const cJSON *proj, const char **name, const char **uid, int *deleting,
                                              const char **spec_hash) {
    const cJSON *md = json_get(proj, "metadata");
    *name = json_str(md, "name");
    *uid = json_str(md, "uid");
    *deleting = json_str(md, "deletionTimestamp") != NULL;
    if (spec_hash) *spec_hash = json_str(json_get(md, "annotations"), ANNOTATION_SPEC_HASH);
    return json_get(proj, "status");
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
