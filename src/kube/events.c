/*
 * events.c — an Event recorder for events.k8s.io/v1, with aggregation of repeats.
 *
 * Operators read Events with `kubectl describe`; a controller that creates a new Event every
 * time the same thing happens floods etcd and the terminal. Like client-go's events library,
 * a repeat of the same (object, type, reason, action, note) within the series window updates
 * the existing Event's `series` (count, lastObservedTime) instead of creating another.
 *
 * The note passes through the log redactor: an Event is as public as a log line.
 *
 * Recording does not wait for the API server: like client-go's broadcaster, kube_record queues
 * the Event and one sender thread writes it (in order), so a reconcile does not spend a round
 * trip on its Events. The queue is bounded (KUBE_EVENT_QUEUE_MAX; beyond it an Event is dropped,
 * counted and logged) and, at shutdown, what is queued gets KUBE_EVENT_DRAIN_MS.
 */

#define KUBE_EVENT_SERIES_WINDOW_MS (6 * 60 * 1000)
#define KUBE_EVENT_NOTE_MAX 1024
#define KUBE_EVENT_QUEUE_MAX 1000
#define KUBE_EVENT_DRAIN_MS 2000

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

/* An Event as recorded, waiting for the sender: everything copied, the note redacted. */
typedef struct kube_event_job {
    struct kube_event_job *next;
    kube_event_ref ref;  /* strings owned */
    char *type, *reason, *action, *note;
    char digest[33];     /* the series key */
    int64_t now_ms;
    char ts[40];
} kube_event_job;

typedef struct kube_recorder {
    kube_client *kc;
    char *controller;   /* reportingController, e.g. hiclaw.io/worker-controller */
    char *instance;     /* reportingInstance: controller name + host */
    pthread_mutex_t mu;
    strmap series;      /* aggregation key → kube_event_series */
    int64_t last_sweep_ms;
    atomic_long created, patched, failed, dropped;
    /* the queue, under qmu */
    pthread_mutex_t qmu;
    pthread_cond_t qcv;      /* a job queued, the queue drained, or stopping */
    kube_event_job *head, *tail;
    size_t queued;
    int sending;             /* the sender holds a job */
    int stopping;
    int64_t drain_deadline_ms;
    pthread_t sender;
    int sender_started;
} kube_recorder;

static void kube_event_job_free(kube_event_job *j) {
    if (!j) return;
    free((char *)j->ref.api_version);
    free((char *)j->ref.kind);
    free((char *)j->ref.namespace);
    free((char *)j->ref.name);
    free((char *)j->ref.uid);
    free(j->type);
    free(j->reason);
    free(j->action);
    free(j->note);
    free(j);
}

static void kube_event_send(kube_recorder *r, const kube_event_job *j);

static void *kube_recorder_main(void *p) {
    kube_recorder *r = p;
    pthread_mutex_lock(&r->qmu);
    for (;;) {
        while (!r->head && !r->stopping) pthread_cond_wait(&r->qcv, &r->qmu);
        if (!r->head) break;
        kube_event_job *j = r->head;
        r->head = j->next;
        if (!r->head) r->tail = NULL;
        r->queued--;
        if (r->stopping && (wc_now_ms() > r->drain_deadline_ms || atomic_load(&r->kc->cancel))) {
            atomic_fetch_add(&r->dropped, 1); /* shutting down, and out of time or cancelled */
        } else {
            r->sending = 1;
            pthread_mutex_unlock(&r->qmu);
            kube_event_send(r, j);
            pthread_mutex_lock(&r->qmu);
            r->sending = 0;
        }
        kube_event_job_free(j);
        if (!r->head) pthread_cond_broadcast(&r->qcv);
    }
    pthread_mutex_unlock(&r->qmu);
    return NULL;
}

static kube_recorder *kube_recorder_new(kube_client *kc, const char *controller, const char *instance) {
    kube_recorder *r = xcalloc(1, sizeof *r);
    r->kc = kc;
    r->controller = xstrdup(controller);
    r->instance = xstrdup(instance);
    pthread_mutex_init(&r->mu, NULL);
    pthread_mutex_init(&r->qmu, NULL);
    pthread_cond_init(&r->qcv, NULL);
    /* Without a sender thread kube_record writes each Event itself. */
    r->sender_started = wc_pthread_create_quiet(&r->sender, kube_recorder_main, r) == 0;
    return r;
}

/* Waits until every queued Event has been written (or failed), at most timeout_ms: 0 when the
 * queue is empty, -1 when time ran out. */
static int kube_recorder_flush(kube_recorder *r, int64_t timeout_ms) {
    int64_t deadline = wc_now_ms() + timeout_ms;
    pthread_mutex_lock(&r->qmu);
    while ((r->head || r->sending) && wc_now_ms() < deadline) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
        pthread_cond_timedwait(&r->qcv, &r->qmu, &ts);
    }
    int rc = r->head || r->sending ? -1 : 0;
    pthread_mutex_unlock(&r->qmu);
    return rc;
}

static void kube_event_series_free(void *p) { free(p); }

/* Stops the sender once what is queued is written or KUBE_EVENT_DRAIN_MS has passed (a request
 * in flight then is the client's to cancel: run cancels it at shutdown). */
static void kube_recorder_free(kube_recorder *r) {
    if (!r) return;
    pthread_mutex_lock(&r->qmu);
    r->stopping = 1;
    r->drain_deadline_ms = wc_now_ms() + KUBE_EVENT_DRAIN_MS;
    pthread_cond_broadcast(&r->qcv);
    pthread_mutex_unlock(&r->qmu);
    if (r->sender_started) pthread_join(r->sender, NULL);
    for (kube_event_job *j = r->head, *next; j; j = next) {
        next = j->next;
        kube_event_job_free(j);
    }
    strmap_free(&r->series, kube_event_series_free);
    pthread_mutex_destroy(&r->mu);
    pthread_mutex_destroy(&r->qmu);
    pthread_cond_destroy(&r->qcv);
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

/* Writes one queued Event: a repeat within the series window patches the series of the Event
 * it repeats; else (or when that Event is gone) a new Event. Failures are logged and counted. */
static void kube_event_send(kube_recorder *r, const kube_event_job *j) {
    const kube_event_ref *ref = &j->ref;
    int64_t now = j->now_ms;
    wc_err err;
    err_clear(&err);

    pthread_mutex_lock(&r->mu);
    kube_recorder_expire(r, now);
    kube_event_series *s = strmap_get(&r->series, j->digest);
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
        buf_printf(&patch, "{\"series\":{\"count\":%d,\"lastObservedTime\":\"%s\"}}", count, j->ts);
        int rc = kube_patch(r->kc, &KUBE_EVENTS, ref->namespace, patch_name, NULL, KUBE_PATCH_MERGE, patch.data, NULL, 0,
                            0, NULL, &err);
        buf_free(&patch);
        free(patch_name);
        if (rc == 0) {
            atomic_fetch_add(&r->patched, 1);
            return;
        }
        /* The Event may have been garbage collected (TTL): create anew. */
    }
    char suffix[20];
    uint64_t unique = (uint64_t)time(NULL) * 1000000ULL + (uint64_t)(now % 1000000) + (uint64_t)rand();
    snprintf(suffix, sizeof suffix, "%llx", (unsigned long long)unique);
    buf name = BUF_INIT, body = BUF_INIT;
    buf_printf(&name, "%s.%s", ref->name, suffix);
    kube_event_render(&body, r->controller, r->instance, ref, name.data, j->ts, j->type, j->reason, j->action, j->note);
    if (kube_create(r->kc, &KUBE_EVENTS, ref->namespace, NULL, NULL, body.data, NULL, &err) == 0) {
        atomic_fetch_add(&r->created, 1);
        kube_event_series *ns = xcalloc(1, sizeof *ns + name.len + 1);
        memcpy(ns->event_name, name.data, name.len + 1);
        ns->count = 1;
        ns->first_ms = ns->last_ms = now;
        pthread_mutex_lock(&r->mu);
        kube_event_series_free(strmap_put(&r->series, j->digest, ns));
        pthread_mutex_unlock(&r->mu);
    } else {
        atomic_fetch_add(&r->failed, 1);
        log_warn("could not record Event", "reason", j->reason, "object", ref->name, "error", err.msg);
    }
    buf_free(&name);
    buf_free(&body);
}

/* Records an Event about `ref`. type is "Normal" or "Warning"; reason is CamelCase; action
 * says what the controller did or tried ("Create", "Delete", "Reconcile"). Queued for the
 * sender and never returned as a failure: an Event is best effort and must not fail, or slow,
 * a reconcile. */
__attribute__((format(printf, 6, 7)))
static void kube_record(kube_recorder *r, const kube_event_ref *ref, const char *type, const char *reason,
                        const char *action, const char *fmt, ...) {
    char raw[KUBE_EVENT_NOTE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    kube_event_job *j = xcalloc(1, sizeof *j);
    j->note = log_redact(raw);
    if (strlen(j->note) >= KUBE_EVENT_NOTE_MAX) j->note[KUBE_EVENT_NOTE_MAX - 1] = '\0';
    buf key = BUF_INIT;
    buf_printf(&key, "%s/%s/%s|%s|%s|%s|%s", ref->namespace ? ref->namespace : "", ref->name, ref->uid ? ref->uid : "",
               type, reason, action, j->note);
    kube_event_key_digest(buf_cstr(&key), j->digest);
    buf_free(&key);
    j->ref = (kube_event_ref){xstrdup(ref->api_version), xstrdup(ref->kind),
                              xstrdup(ref->namespace), xstrdup(ref->name), xstrdup(ref->uid)};
    j->type = xstrdup(type);
    j->reason = xstrdup(reason);
    j->action = xstrdup(action);
    j->now_ms = wc_now_ms();
    wc_rfc3339_micro(j->ts);
    if (!r->sender_started) {
        kube_event_send(r, j);
        kube_event_job_free(j);
        return;
    }
    pthread_mutex_lock(&r->qmu);
    int full = r->queued >= KUBE_EVENT_QUEUE_MAX || r->stopping;
    if (!full) {
        if (r->tail) r->tail->next = j;
        else r->head = j;
        r->tail = j;
        r->queued++;
        pthread_cond_broadcast(&r->qcv);
    }
    pthread_mutex_unlock(&r->qmu);
    if (full) {
        atomic_fetch_add(&r->dropped, 1);
        log_warn("dropped Event: the queue is full, or the controller is stopping", "reason", reason, "object", ref->name);
        kube_event_job_free(j);
    }
}
