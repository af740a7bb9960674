/*
 * worker.c — the Worker API as the controller sees it: parse a Worker object (JSON) into a
 * typed view, resolve defaults, validate what the controller acts on.
 *
 * The view borrows strings from the cJSON tree it was parsed from (and from the arena for
 * anything computed), so it lives exactly as long as one reconcile. Parsing never fails on
 * fields owned by other HiClaw components: they are not read at all. Validation problems in
 * fields this controller acts on are collected into `invalid` (InvalidSpec) instead of being
 * errors: the object is valid for the API server, the controller just cannot act on it, and
 * must say why without touching anything.
 */

typedef enum worker_state { STATE_RUNNING = 0, STATE_SLEEPING, STATE_STOPPED } worker_state;
typedef enum worker_phase {
    PHASE_NONE = 0, PHASE_PENDING, PHASE_STARTING, PHASE_RUNNING, PHASE_SLEEPING,
    PHASE_STOPPING, PHASE_STOPPED, PHASE_FAILED, PHASE_UPDATING,
} worker_phase;

static const char *state_name(worker_state s) {
    return s == STATE_SLEEPING ? "Sleeping" : s == STATE_STOPPED ? "Stopped" : "Running";
}
static const char *phase_name(worker_phase p) {
    static const char *names[] = {"", "Pending", "Starting", "Running", "Sleeping", "Stopping", "Stopped", "Failed", "Updating"};
    return names[p];
}
static worker_phase phase_parse(const char *s) {
    for (int p = PHASE_PENDING; p <= PHASE_UPDATING; p++)
        if (s && strcmp(s, phase_name((worker_phase)p)) == 0) return (worker_phase)p;
    return PHASE_NONE;
}

typedef struct kv {
    const char *key, *value;
} kv;

typedef struct kv_list {
    kv *items;
    size_t n;
} kv_list;

/* One metav1.Condition as read from status. */
typedef struct wcond {
    int present;
    const char *status;      /* "True", "False", "Unknown" */
    const char *reason;
    const char *message;
    const char *last_transition;
    int64_t observed_generation;
} wcond;

typedef struct worker_instance {
    const char *kind;        /* "Pod", "Sandbox", or NULL when absent */
    const char *name, *claim_name, *pod_ip;
} worker_instance;

typedef struct worker {
    /* metadata */
    const char *namespace, *name, *uid, *resource_version;
    int64_t generation;
    int64_t created;          /* metadata.creationTimestamp, Unix seconds; 0: unknown */
    int deleting;
    const char **finalizers;
    size_t nfinalizers;
    int has_finalizer;
    kv_list meta_labels;
    /* spec, defaults resolved */
    const char *backend;      /* desired (D): spec.backendRuntime, "pod" when absent; decide() maps
                                 a name no backend has to the first backend (pod), as before the
                                 name was known */
    worker_state state;
    const char *runtime;
    const char *image;
    const char *worker_name;
    int container_managed;
    kv_list env;              /* spec.env, sorted by key, as given */
    kv_list labels;           /* spec.labels, sorted */
    const char *req_cpu, *req_mem, *lim_cpu, *lim_mem;
    /* status (this controller's fields) */
    const char *status_backend;  /* "" or NULL: legacy Worker */
    worker_phase phase;
    int64_t observed_generation;
    const char *message, *container_state;
    wcond ready, synced;
    worker_instance instance;
    const char *status_deps_path; /* status.workerDepsPath: where the worker-deps were last written */
    /* validation */
    const char *invalid;      /* why the spec cannot be acted on, or NULL */
} worker;

/* Defaults that come from the controller configuration. */
typedef struct worker_defaults {
    const char *default_runtime;
    const char *image_openclaw, *image_copaw, *image_hermes;
    const char *limit_cpu, *limit_mem;
} worker_defaults;

#define WORKER_FINALIZER "hiclaw.io/cleanup"

static int kv_cmp(const void *a, const void *b) { return strcmp(((const kv *)a)->key, ((const kv *)b)->key); }

/* Reads a JSON object of string values into a sorted list. Non-string values are skipped
 * (the schema forbids them; a hand-edited etcd object must not crash us). */
static kv_list kv_from_json(arena *a, const cJSON *obj) {
    kv_list l = {NULL, 0};
    if (!cJSON_IsObject(obj)) return l;
    size_t n = (size_t)cJSON_GetArraySize(obj);
    l.items = arena_alloc(a, (n ? n : 1) * sizeof(kv));
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (!cJSON_IsString(it) || !it->string) continue;
        l.items[l.n].key = it->string;
        l.items[l.n].value = it->valuestring;
        l.n++;
    }
    qsort(l.items, l.n, sizeof(kv), kv_cmp);
    return l;
}

static const char *kv_get(const kv_list *l, const char *key) {
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].key, key) == 0) return l->items[i].value;
    return NULL;
}

/* A quantity may arrive as a string or (int-or-string) a number. */
static const char *json_quantity(arena *a, const cJSON *obj, const char *key) {
    const cJSON *v = json_get(obj, key);
    if (cJSON_IsString(v)) return v->valuestring;
    if (cJSON_IsNumber(v)) return arena_sprintf(a, "%.15g", v->valuedouble);
    return NULL;
}

static void wcond_read(wcond *c, const cJSON *conds, const char *type) {
    memset(c, 0, sizeof *c);
    const cJSON *it;
    cJSON_ArrayForEach(it, conds) {
        const char *t = json_str(it, "type");
        if (!t || strcmp(t, type) != 0) continue;
        c->present = 1;
        c->status = json_str(it, "status");
        c->reason = json_str(it, "reason");
        c->message = json_str(it, "message");
        c->last_transition = json_str(it, "lastTransitionTime");
        c->observed_generation = json_int(it, "observedGeneration", 0);
        return;
    }
}

/* A DNS-1123 label: what Pod, ServiceAccount and claim names built from metadata.name need. */
static int dns1123_label_ok(const char *s, size_t max) {
    size_t n = strlen(s);
    if (n == 0 || n > max) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (c == '-' && i > 0 && i < n - 1))) return 0;
    }
    return 1;
}

static int env_key_ok(const char *k) {
    if (!k || !(isalpha((unsigned char)k[0]) || k[0] == '_')) return 0;
    for (const char *p = k + 1; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '_')) return 0;
    return 1;
}

/* workerName ends up in storage keys and env values; keep it to a safe alphabet. */
static int worker_name_ok(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 128) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!(isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.')) return 0;
    }
    return strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* Parses a Worker. Returns 0, or -1 when the object lacks what any Worker must have (a name):
 * such an object cannot even be reported on. Everything else lands in w->invalid. */
static int worker_parse(arena *a, const cJSON *obj, const worker_defaults *d, worker *w, wc_err *err) {
    memset(w, 0, sizeof *w);
    const cJSON *md = json_get(obj, "metadata");
    const cJSON *spec = json_get(obj, "spec");
    const cJSON *st = json_get(obj, "status");
    w->namespace = json_str(md, "namespace");
    w->name = json_str(md, "name");
    if (!w->name || !w->namespace) return err_set(err, WC_EPARSE, "Worker without metadata.name/namespace");
    w->uid = json_str(md, "uid");
    w->resource_version = json_str(md, "resourceVersion");
    w->generation = json_int(md, "generation", 0);
    w->created = wc_rfc3339_parse(json_str(md, "creationTimestamp"));
    w->deleting = json_str(md, "deletionTimestamp") != NULL;
    const cJSON *fins = json_get(md, "finalizers");
    size_t nf = cJSON_IsArray(fins) ? (size_t)cJSON_GetArraySize(fins) : 0;
    w->finalizers = arena_alloc(a, (nf + 1) * sizeof(char *));
    const cJSON *it;
    cJSON_ArrayForEach(it, fins) {
        if (!cJSON_IsString(it)) continue;
        w->finalizers[w->nfinalizers++] = it->valuestring;
        if (strcmp(it->valuestring, WORKER_FINALIZER) == 0) w->has_finalizer = 1;
    }
    w->meta_labels = kv_from_json(a, json_get(md, "labels"));

    /* spec */
    const char *backend = json_str(spec, "backendRuntime");
    w->backend = backend ? backend : "pod";
    const char *state = json_str(spec, "state");
    w->state = !state || strcmp(state, "Running") == 0 ? STATE_RUNNING
             : strcmp(state, "Sleeping") == 0        ? STATE_SLEEPING
             : strcmp(state, "Stopped") == 0         ? STATE_STOPPED
                                                     : STATE_RUNNING;
    const char *runtime = json_str(spec, "runtime");
    w->runtime = runtime && *runtime ? runtime : (d->default_runtime && *d->default_runtime ? d->default_runtime : "openclaw");
    const char *image = json_str(spec, "image");
    if (image && *image) w->image = image;
    else if (strcmp(w->runtime, "copaw") == 0) w->image = d->image_copaw;
    else if (strcmp(w->runtime, "hermes") == 0) w->image = d->image_hermes;
    else w->image = d->image_openclaw;
    const char *wn = json_str(spec, "workerName");
    w->worker_name = wn && *wn ? wn : w->name;
    const cJSON *cm = json_get(spec, "containerManaged");
    w->container_managed = !cJSON_IsBool(cm) || cJSON_IsTrue(cm);
    w->env = kv_from_json(a, json_get(spec, "env"));
    w->labels = kv_from_json(a, json_get(spec, "labels"));
    const cJSON *res = json_get(spec, "resources");
    const cJSON *req = json_get(res, "requests");
    const cJSON *lim = json_get(res, "limits");
    w->req_cpu = json_quantity(a, req, "cpu");
    w->req_mem = json_quantity(a, req, "memory");
    w->lim_cpu = json_quantity(a, lim, "cpu");
    w->lim_mem = json_quantity(a, lim, "memory");
    if (!w->lim_cpu) w->lim_cpu = d->limit_cpu;
    if (!w->lim_mem) w->lim_mem = d->limit_mem;
    if (!w->req_cpu) w->req_cpu = "100m";
    if (!w->req_mem) w->req_mem = "256Mi";

    /* status */
    w->status_backend = json_str(st, "backendRuntime");
    w->phase = phase_parse(json_str(st, "phase"));
    w->observed_generation = json_int(st, "observedGeneration", 0);
    w->message = json_str(st, "message");
    w->container_state = json_str(st, "containerState");
    w->status_deps_path = json_str(st, "workerDepsPath");
    const cJSON *conds = json_get(st, "conditions");
    wcond_read(&w->ready, conds, "Ready");
    wcond_read(&w->synced, conds, "Synced");
    const cJSON *inst = json_get(st, "instance");
    if (cJSON_IsObject(inst)) {
        w->instance.kind = json_str(inst, "kind");
        w->instance.name = json_str(inst, "name");
        w->instance.claim_name = json_str(inst, "claimName");
        w->instance.pod_ip = json_str(inst, "podIP");
    }
    return 0;
}

/* ---- the cache's copy ---- */

/* Copies obj's members into a new object, except those named in drop[] (and managedFields and
 * annotations for metadata): built member by member, so the parts left out are never copied. */
static cJSON *json_copy_except(const cJSON *obj, const char *const *drop, size_t ndrop) {
    cJSON *out = cJSON_CreateObject();
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        size_t i = 0;
        if (!it->string) continue;
        while (i < ndrop && strcmp(it->string, drop[i]) != 0) i++;
        if (i == ndrop) cJSON_AddItemToObject(out, it->string, cJSON_Duplicate(it, 1));
    }
    return out;
}

/* The Worker as the cache keeps it (the Worker informer's projection): everything the reconciler reads, minus managedFields,
 * annotations, apiVersion/kind (constant), and the spec/status fields other components own
 * (they change often and never matter to the instance). creationTimestamp stays: a new
 * Worker's startup is timed from it (hiclaw_worker_startup_seconds). */
static cJSON *worker_project(const cJSON *obj) {
    static const char *const mdrop[] = {"managedFields", "annotations"};
    static const char *const drop[] = {"model", "identity", "soul", "agents", "skills", "remoteSkills", "mcpServers",
                                       "package", "expose", "channelPolicy", "accessEntries"};
    static const char *const sdrop[] = {"matrixUserID", "roomID", "lastHeartbeat", "exposedPorts"};
    cJSON *out = cJSON_CreateObject();
    const cJSON *it;
    cJSON_ArrayForEach(it, obj) {
        if (!it->string) continue;
        if (strcmp(it->string, "metadata") == 0 && cJSON_IsObject(it))
            cJSON_AddItemToObject(out, "metadata", json_copy_except(it, mdrop, sizeof mdrop / sizeof *mdrop));
        else if (strcmp(it->string, "spec") == 0 && cJSON_IsObject(it))
            cJSON_AddItemToObject(out, "spec", json_copy_except(it, drop, sizeof drop / sizeof *drop));
        else if (strcmp(it->string, "status") == 0 && cJSON_IsObject(it))
            cJSON_AddItemToObject(out, "status", json_copy_except(it, sdrop, sizeof sdrop / sizeof *sdrop));
        else if (strcmp(it->string, "apiVersion") != 0 && strcmp(it->string, "kind") != 0)
            cJSON_AddItemToObject(out, it->string, cJSON_Duplicate(it, 1));
    }
    return out;
}

/* A label value: at most 63 of [A-Za-z0-9._-], starting and ending alphanumeric (or empty). */
static int label_value_ok(const char *v) {
    size_t n = strlen(v);
    if (n > 63) return 0;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        int alnum = isalnum((unsigned char)c);
        if (!alnum && c != '-' && c != '_' && c != '.') return 0;
        if ((i == 0 || i == n - 1) && !alnum) return 0;
    }
    return 1;
}

/* A label key: [prefix/]name, prefix a DNS subdomain (<= 253), name like a value but non-empty. */
static int label_key_ok(const char *k) {
    const char *slash = strrchr(k, '/');
    const char *name = slash ? slash + 1 : k;
    if (!*name || !label_value_ok(name)) return 0;
    if (slash) {
        size_t pl = (size_t)(slash - k);
        if (pl == 0 || pl > 253) return 0;
        for (size_t i = 0; i < pl; i++) {
            char c = k[i];
            if (!(islower((unsigned char)c) || isdigit((unsigned char)c) || c == '-' || c == '.')) return 0;
        }
    }
    return 1;
}

/* Validates what the controller acts on; sets w->invalid to the first problem found. The
 * resource names built from metadata.name must fit 63 characters with the prefix. */
static void worker_validate(arena *a, worker *w, const char *prefix) {
    size_t plen = strlen(prefix) + strlen("worker-");
    if (!dns1123_label_ok(w->name, 63 - plen)) {
        w->invalid = arena_sprintf(a, "metadata.name %s must be a DNS-1123 label of at most %zu characters "
                                      "(the Pod and ServiceAccount are named %sworker-<name>)",
                                   w->name, 63 - plen, prefix);
        return;
    }
    if (!worker_name_ok(w->worker_name)) {
        w->invalid = arena_sprintf(a, "spec.workerName %s may only contain letters, digits, '-', '_' and '.' (at most 128)",
                                   w->worker_name);
        return;
    }
    if (!w->image || !*w->image) {
        w->invalid = arena_sprintf(a, "no image: spec.image is empty and no image is configured for runtime %s", w->runtime);
        return;
    }
    for (const char *p = w->image; *p; p++)
        if (isspace((unsigned char)*p) || (unsigned char)*p < 0x21) {
            w->invalid = arena_sprintf(a, "spec.image %s contains whitespace or control characters", w->image);
            return;
        }
    for (size_t i = 0; i < w->labels.n; i++)
        if (!label_key_ok(w->labels.items[i].key) || !label_value_ok(w->labels.items[i].value)) {
            w->invalid = arena_sprintf(a, "spec.labels %s=%s is not a valid Kubernetes label", w->labels.items[i].key,
                                       w->labels.items[i].value);
            return;
        }
    const char *qs[4] = {w->req_cpu, w->req_mem, w->lim_cpu, w->lim_mem};
    const char *qn[4] = {"spec.resources.requests.cpu", "spec.resources.requests.memory", "spec.resources.limits.cpu",
                         "spec.resources.limits.memory"};
    qty q[4];
    for (int i = 0; i < 4; i++)
        if (qty_parse(qs[i], &q[i]) < 0) {
            w->invalid = arena_sprintf(a, "%s %s is not a valid quantity (e.g. 500m, 2, 512Mi, 4Gi)", qn[i], qs[i]);
            return;
        }
    if (qty_cmp(&q[0], &q[2]) > 0 || qty_cmp(&q[1], &q[3]) > 0) {
        w->invalid = arena_sprintf(a, "spec.resources requests (%s, %s) must not exceed limits (%s, %s)", w->req_cpu,
                                   w->req_mem, w->lim_cpu, w->lim_mem);
        return;
    }
}
