/*
 * events.c — an Event recorder for events.k8s.io/v1, with aggregation of repeats.
 *
 * Operators read Events with `kubectl describe`; a controller that creates a new Event every
 * time the same thing happens floods etcd and the terminal. Like client-go's events library,
 * a repeat of the same (object, type, reason, action, note) within the series window updates
 * the existing Event's `series` (count, lastObservedTime) instead of creating another.
 *
 * The note passes through the log redactor: an Event is as public as a log line.
 */

#define KUBE_EVENT_SERIES_WINDOW_MS (6 * 60 * 1000)
#define KUBE_EVENT_NOTE_MAX 1024

typedef struct kube_event_ref {
    const char *api_version, *kind, *namespace, *name, *uid;
} kube_event_ref;

typedef struct kube_event_series {
    int count;
    int64_t first_ms, last_ms;
    char event_name[]; /* the Event a repeat patches */
} kube_event_series;

/* Series are keyed by a digest of (object, type, reason, action, note) — 32 hex digits — not
 * by that text (~150 bytes): a fleet keeps one series per Worker for the 6-minute window after
 * each Event, so the key is most of a series' memory. 128 bits make a collision (which would
 * only bump the wrong Event's count) out of reach. */
static void kube_event_key_digest(const char *key, char out[33]) {
    br_sha256_context ctx;
    unsigned char d[32];
    br_sha256_init(&ctx);
    br_sha256_update(&ctx, key, strlen(key));
    br_sha256_out(&ctx, d);
    for (int i = 0; i < 16; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

typedef struct kube_recorder {
    kube_client *kc;
    char *controller;   /* reportingController, e.g. hiclaw.io/worker-controller */
    char *instance;     /* reportingInstance: controller name + host */
    pthread_mutex_t mu;
    strmap series;      /* aggregation key → kube_event_series */
    int64_t last_sweep_ms;
    atomic_long created, patched, failed;
} kube_recorder;

static kube_recorder *kube_recorder_new(kube_client *kc, const char *controller, const char *instance) {
    kube_recorder *r = xcalloc(1, sizeof *r);
    r->kc = kc;
    r->controller = xstrdup(controller);
    r->instance = xstrdup(instance);
    pthread_mutex_init(&r->mu, NULL);
    return r;
}

static void kube_event_series_free(void *p) { free(p); }

static void kube_recorder_free(kube_recorder *r) {
    if (!r) return;
    strmap_free(&r->series, kube_event_series_free);
    pthread_mutex_destroy(&r->mu);
    free(r->controller);
    free(r->instance);
    free(r);
}

/* Drops series whose window has passed, so the map follows recent activity only: up to 64
 * per call from kube_record (cheap), and all of them from kube_recorder_sweep. */
static void kube_recorder_expire_n(kube_recorder *r, int64_t now, size_t max) {
    const char *k;
    void *v;
    size_t n = 0, cap = max < 64 ? max : 64;
    char **old = xcalloc(cap ? cap : 1, sizeof *old);
    strmap_foreach(&r->series, k, v) {
        kube_event_series *s = v;
        if (now - s->last_ms > KUBE_EVENT_SERIES_WINDOW_MS && n < max) {
            if (n == cap) old = xrealloc(old, (cap *= 2) * sizeof *old);
            old[n++] = xstrdup(k);
        }
    }
    for (size_t i = 0; i < n; i++) {
        kube_event_series_free(strmap_del(&r->series, old[i]));
        free(old[i]);
    }
    free(old);
}

static void kube_recorder_expire(kube_recorder *r, int64_t now) { kube_recorder_expire_n(r, now, 64); }

/* Expires every stale series, at most once a minute. Called from the reconcile path, so a
 * quiet fleet (which records no new Events) still lets its old series go: without it, one
 * "Created" series per Worker stayed in memory for good. */
static void kube_recorder_sweep(kube_recorder *r) {
    int64_t now = wc_now_ms();
    pthread_mutex_lock(&r->mu);
    if (now - r->last_sweep_ms >= 60 * 1000) {
        r->last_sweep_ms = now;
        kube_recorder_expire_n(r, now, SIZE_MAX);
    }
    pthread_mutex_unlock(&r->mu);
}

/* An events.k8s.io/v1 Event named `name` about ref, as first recorded at ts. */
static void kube_event_render(buf *body, const char *controller, const char *instance, const kube_event_ref *ref,
                              const char *name, const char *ts, const char *type, const char *reason,
                              const char *action, const char *note) {
    cJSON *ev = json_object();
    json_add_str(ev, "apiVersion", "events.k8s.io/v1");
    json_add_str(ev, "kind", "Event");
    cJSON *md = json_add_object(ev, "metadata");
    json_add_str(md, "name", name);
    if (ref->namespace) json_add_str(md, "namespace", ref->namespace);
    json_add_str(ev, "eventTime", ts);
    json_add_str(ev, "reportingController", controller);
    json_add_str(ev, "reportingInstance", instance);
    json_add_str(ev, "type", type);
    json_add_str(ev, "reason", reason);
    json_add_str(ev, "action", action);
    json_add_str(ev, "note", note);
    cJSON *re = json_add_object(ev, "regarding");
    json_add_str(re, "apiVersion", ref->api_version);
    json_add_str(re, "kind", ref->kind);
    json_add_str(re, "name", ref->name);
    if (ref->namespace) json_add_str(re, "namespace", ref->namespace);
    if (ref->uid) json_add_str(re, "uid", ref->uid);
    json_render_free(body, ev);
}

/* Records an Event about `ref`. type is "Normal" or "Warning"; reason is CamelCase; action
 * says what the controller did or tried ("Create", "Delete", "Reconcile"). Failures are
 * logged and counted, never returned: an Event is best effort and must not fail a reconcile. */
__attribute__((format(printf, 6, 7)))
static void kube_record(kube_recorder *r, const kube_event_ref *ref, const char *type, const char *reason,
                        const char *action, const char *fmt, ...) {
    char raw[KUBE_EVENT_NOTE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    char *note = log_redact(raw);
    if (strlen(note) >= KUBE_EVENT_NOTE_MAX) note[KUBE_EVENT_NOTE_MAX - 1] = '\0';

    buf key = BUF_INIT;
    buf_printf(&key, "%s/%s/%s|%s|%s|%s|%s", ref->namespace ? ref->namespace : "", ref->name, ref->uid ? ref->uid : "",
               type, reason, action, note);
    int64_t now = wc_now_ms();
    char ts[40];
    wc_rfc3339_micro(ts);
    wc_err err;
    err_clear(&err);

    pthread_mutex_lock(&r->mu);
    kube_recorder_expire(r, now);
    char digest[33];
    kube_event_key_digest(buf_cstr(&key), digest);
    kube_event_series *s = strmap_get(&r->series, digest);
    char *patch_name = NULL;
    int count = 0;
    if (s && now - s->last_ms <= KUBE_EVENT_SERIES_WINDOW_MS) {
        s->count++;
        s->last_ms = now;
        patch_name = xstrdup(s->event_name);
        count = s->count;
    }
    pthread_mutex_unlock(&r->mu);

    if (patch_name) {
        buf patch = BUF_INIT;
        buf_printf(&patch, "{\"series\":{\"count\":%d,\"lastObservedTime\":\"%s\"}}", count, ts);
        if (kube_patch(r->kc, &KUBE_EVENTS, ref->namespace, patch_name, NULL, KUBE_PATCH_MERGE, patch.data, NULL, 0,
                       0, NULL, &err) == 0) {
            atomic_fetch_add(&r->patched, 1);
            buf_free(&patch);
            goto out;
        }
        buf_free(&patch);
        /* The Event may have been garbage collected (TTL): fall through and create anew. */
    }
    {
        char suffix[20];
        uint64_t unique = (uint64_t)time(NULL) * 1000000ULL + (uint64_t)(now % 1000000) + (uint64_t)rand();
        snprintf(suffix, sizeof suffix, "%llx", (unsigned long long)unique);
        buf name = BUF_INIT, body = BUF_INIT;
        buf_printf(&name, "%s.%s", ref->name, suffix);
        kube_event_render(&body, r->controller, r->instance, ref, name.data, ts, type, reason, action, note);
        if (kube_create(r->kc, &KUBE_EVENTS, ref->namespace, NULL, NULL, body.data, NULL, &err) == 0) {
            atomic_fetch_add(&r->created, 1);
            kube_event_series *ns = xcalloc(1, sizeof *ns + name.len + 1);
            memcpy(ns->event_name, name.data, name.len + 1);
            ns->count = 1;
            ns->first_ms = ns->last_ms = now;
            pthread_mutex_lock(&r->mu);
            kube_event_series_free(strmap_put(&r->series, digest, ns));
            pthread_mutex_unlock(&r->mu);
        } else {
            atomic_fetch_add(&r->failed, 1);
            log_warn("could not record Event", "reason", reason, "object", ref->name, "error", err.msg);
        }
        buf_free(&name);
        buf_free(&body);
    }
out:
    free(patch_name);
    free(note);
    buf_free(&key);
}
