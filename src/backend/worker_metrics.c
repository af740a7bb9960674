/*
 * worker_metrics.c — the latency and event metrics a dashboard of Workers needs (issue 19):
 *
 *   hiclaw_worker_startup_seconds{backend}   histogram: a start of a Worker until Ready=True
 *   hiclaw_worker_deps_write_seconds         histogram: one write-deps action (env, token, data)
 *   hiclaw_sandbox_claim_seconds             histogram: a SandboxClaim created → Completed
 *   hiclaw_worker_recreates_total{backend,reason}  counter: instances replaced, by the policy's reason
 *   hiclaw_backend_switch_blocked_total      counter: Workers entering BackendSwitchBlocked
 *
 * Every label value comes from the backend table (names, each policy's recreate_reasons), so
 * the series are bounded and all exist (at 0) from the first scrape. Observations take no lock
 * (kube/metrics.c); what must be remembered between reconciles of one Worker — when its start
 * began, whether it was blocked, which instance was last counted as replaced, when this process
 * created its claim — is one small record per Worker key, under a mutex, freed when empty.
 *
 * The record lives in this process's memory, which is what makes each observation happen once:
 * a restarted controller (or a new leader) observes only starts and claims that begin after it
 * does, and never one it cannot time (README, "Metrics").
 */

typedef struct wm_track {
    char uid[64];          /* the Worker object the record is about (a same-named new one starts afresh) */
    double start;          /* a start being timed: when it began, wall clock (Unix s); 0: none */
    int idle;              /* last reconciled with spec.state Sleeping or Stopped */
    int blocked;           /* last decided BackendSwitchBlocked */
    char recreated[64];    /* UID of the last instance counted in recreates_total */
    char claim[256];       /* a claim this process created, not yet seen Completed ("": none) */
    double claim_start;    /* when its create returned (monotonic s) */
} wm_track;

typedef struct worker_metrics {
    const backend_policy *backends[DECIDE_MAX_BACKENDS]; /* the table's, for names and reasons */
    size_t nbackends;
    metrics_histogram startup[DECIDE_MAX_BACKENDS];
    metrics_histogram deps_write, claim;
    atomic_long recreates[DECIDE_MAX_BACKENDS][8];        /* [backend][its recreate_reasons index] */
    atomic_long switch_blocked;
    pthread_mutex_t mu;
    strmap track;                                         /* Worker key → wm_track */
} worker_metrics;

#define WM_BLOCKED_REASON "BackendSwitchBlocked"

static void wm_init(worker_metrics *m, const backend_policy *const *backends, size_t n) {
    memset(m, 0, sizeof *m);
    assert(n <= DECIDE_MAX_BACKENDS);
    for (size_t i = 0; i < n; i++) {
        m->backends[i] = backends[i];
        size_t r = 0;
        while (backends[i]->recreate_reasons && backends[i]->recreate_reasons[r]) r++;
        assert(r <= sizeof m->recreates[i] / sizeof m->recreates[i][0]);
        metrics_histogram_init(&m->startup[i], METRICS_LONG_BUCKETS, METRICS_COUNT_OF(METRICS_LONG_BUCKETS));
    }
    m->nbackends = n;
    metrics_histogram_init(&m->deps_write, METRICS_RECONCILE_BUCKETS, METRICS_COUNT_OF(METRICS_RECONCILE_BUCKETS));
    metrics_histogram_init(&m->claim, METRICS_LONG_BUCKETS, METRICS_COUNT_OF(METRICS_LONG_BUCKETS));
    pthread_mutex_init(&m->mu, NULL);
}

static void wm_release(worker_metrics *m) {
    strmap_free(&m->track, free);
    pthread_mutex_destroy(&m->mu);
}

/* ---- the per-Worker record (callers hold mu) ---- */

/* The record of key for the Worker object uid; made when `make`. A record of another object of
 * the same name (deleted, recreated) is wiped first: nothing of it applies. */
static wm_track *wm_track_of(worker_metrics *m, const char *key, const char *uid, int make) {
    wm_track *t = strmap_get(&m->track, key);
    if (t && uid && *uid && t->uid[0] && strcmp(t->uid, uid) != 0) memset(t, 0, sizeof *t);
    if (!t && make) {
        t = xcalloc(1, sizeof *t);
        strmap_put(&m->track, key, t);
    }
    if (t && uid && *uid && !t->uid[0]) snprintf(t->uid, sizeof t->uid, "%s", uid);
    return t;
}

/* Frees the record once it remembers nothing (a steady fleet keeps none). */
static void wm_track_tidy(worker_metrics *m, const char *key, wm_track *t) {
    if (t && !t->start && !t->idle && !t->blocked && !t->recreated[0] && !t->claim[0]) free(strmap_del(&m->track, key));
}

/* The Worker is gone (or going): nothing of it is timed or counted any more. */
static void wm_forget(worker_metrics *m, const char *key) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    free(strmap_del(&m->track, key));
    pthread_mutex_unlock(&m->mu);
}

/* ---- startup ---- */

typedef enum wm_start {
    WM_START_KEEP,     /* nothing changes */
    WM_START_FORGET,   /* no start is under way (any being timed is dropped) */
    WM_START_CREATED,  /* a new Worker starts: timed from metadata.creationTimestamp */
    WM_START_NOW,      /* set to Running: timed from now, this process's first sight of it */
} wm_start;

static int wm_decision_creates(const decision *d) {
    for (size_t i = 0; i < d->nactions; i++)
        if (d->actions[i].kind->creates) return 1;
    return 0;
}

/* What a decision means for the Worker's startup timer. Pure. A start is one of the two the
 * metric defines, seen by this process as it begins: a new Worker (no status phase yet, and
 * the decision creates its first instance), or spec.state set to Running after Sleeping or
 * Stopped (this process saw it so, or its status still says so); a new Worker whose spec was
 * invalid starts when it is fixed. Anything else that is not
 * Ready — a replacement, a crash, a start already under way when this process began — is not
 * a start it can time, so it times none. tracking: a start is being timed; idle: this process
 * last saw the Worker Sleeping or Stopped. */
static wm_start wm_startup_rule(const worker *w, const decision *d, int tracking, int idle) {
    if (w->deleting || !w->container_managed || w->invalid || w->state != STATE_RUNNING) return WM_START_FORGET;
    if (str_eq(w->ready.status, "True")) return WM_START_FORGET; /* up already: a start is over or never was */
    if (tracking) return WM_START_KEEP;
    if (idle || w->phase == PHASE_SLEEPING || w->phase == PHASE_STOPPED) return WM_START_NOW;
    /* a new Worker that was invalid until now starts with its fix, not at its creation */
    if (w->phase == PHASE_NONE && wm_decision_creates(d))
        return str_eq(w->ready.reason, "InvalidSpec") ? WM_START_NOW : WM_START_CREATED;
    return WM_START_KEEP;
}

/* After decide(): begins or drops the startup timer, and counts a Worker entering the blocked
 * switch — once per entry: not again while this process saw it blocked, nor when its status
 * already said so (a restart). now: wall clock. */
static void wm_decided(worker_metrics *m, const char *key, const worker *w, const decision *d, double now) {
    if (!m) return;
    if (w->deleting) {
        wm_forget(m, key);
        return;
    }
    pthread_mutex_lock(&m->mu);
    wm_track *t = wm_track_of(m, key, w->uid, 0);
    switch (wm_startup_rule(w, d, t && t->start > 0, t && t->idle)) {
    case WM_START_KEEP:
        break;
    case WM_START_FORGET:
        if (w->state != STATE_RUNNING) {
            t = wm_track_of(m, key, w->uid, 1);
            t->idle = 1;
        } else if (t) {
            t->idle = 0; /* Running and up (or not ours to run): a Sleeping seen before never took effect */
        }
        if (t) t->start = 0;
        break;
    case WM_START_CREATED:
        t = wm_track_of(m, key, w->uid, 1);
        t->start = w->created > 0 ? (double)w->created : now;
        t->idle = 0;
        break;
    case WM_START_NOW:
        t = wm_track_of(m, key, w->uid, 1);
        t->start = now;
        t->idle = 0;
        break;
    }
    int blocked = str_eq(d->synced.reason, WM_BLOCKED_REASON);
    if (blocked && !(t && t->blocked) && !str_eq(w->synced.reason, WM_BLOCKED_REASON))
        atomic_fetch_add(&m->switch_blocked, 1);
    if (blocked) t = wm_track_of(m, key, w->uid, 1), t->blocked = 1;
    else if (t) t->blocked = 0;
    wm_track_tidy(m, key, t);
    pthread_mutex_unlock(&m->mu);
}

/* After the status d describes was written (or already stood): Ready=True ends a start being
 * timed — observed once, under the backend that acted, and the timer is gone. now: wall clock. */
static void wm_reported(worker_metrics *m, const char *key, const worker *w, const decision *d, double now) {
    if (!m || !str_eq(d->ready.status, "True") || str_eq(w->ready.status, "True")) return;
    if (d->acting < 0 || (size_t)d->acting >= m->nbackends) return;
    pthread_mutex_lock(&m->mu);
    wm_track *t = wm_track_of(m, key, w->uid, 0);
    if (t && t->start > 0) {
        metrics_histogram_observe(&m->startup[d->acting], now - t->start);
        t->start = 0;
        wm_track_tidy(m, key, t);
    }
    pthread_mutex_unlock(&m->mu);
}

/* ---- recreates ---- */

/* The acting backend's instance `uid` was deleted to be replaced, for `reason`: counted once
 * per instance (a stale cache deciding the same replacement again is not a second one). */
static void wm_recreated(worker_metrics *m, const char *key, const worker *w, size_t backend, const char *reason,
                         const char *uid) {
    if (!m || backend >= m->nbackends || !reason) return;
    const char *const *reasons = m->backends[backend]->recreate_reasons;
    size_t r = 0;
    while (reasons && reasons[r] && strcmp(reasons[r], reason) != 0) r++;
    assert(reasons && reasons[r] && "a recreate reason its policy does not list");
    if (!reasons || !reasons[r]) return;
    pthread_mutex_lock(&m->mu);
    wm_track *t = wm_track_of(m, key, w->uid, 1);
    if (!uid || !*uid || strcmp(t->recreated, uid) != 0) {
        atomic_fetch_add(&m->recreates[backend][r], 1);
        snprintf(t->recreated, sizeof t->recreated, "%s", uid ? uid : "");
    }
    wm_track_tidy(m, key, t);
    pthread_mutex_unlock(&m->mu);
}

/* ---- worker-deps and claims ---- */

static void wm_deps_written(worker_metrics *m, double seconds) {
    if (m) metrics_histogram_observe(&m->deps_write, seconds);
}

/* This process created the Worker's claim `name` (its create returned 201). now: monotonic. */
static void wm_claim_created(worker_metrics *m, const char *key, const worker *w, const char *name, double now) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    wm_track *t = wm_track_of(m, key, w->uid, 1);
    snprintf(t->claim, sizeof t->claim, "%s", name);
    t->claim_start = now;
    pthread_mutex_unlock(&m->mu);
}

/* A claim of the Worker as the cache shows it: the one this process created, seen Completed
 * with every replica claimed, is observed (once: the record goes); seen going or failed, it is
 * dropped unobserved (a timeout is a ClaimFailed recreate, not a latency). now: monotonic. */
static void wm_claim_seen(worker_metrics *m, const char *key, const worker *w, const char *name, int deleting,
                          const char *phase, int64_t claimed, int64_t replicas, double now) {
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    wm_track *t = wm_track_of(m, key, w->uid, 0);
    if (t && t->claim[0] && str_eq(t->claim, name) && (deleting || str_eq(phase, "Completed"))) {
        if (!deleting && claimed >= (replicas > 0 ? replicas : 1))
            metrics_histogram_observe(&m->claim, now - t->claim_start);
        t->claim[0] = '\0';
        wm_track_tidy(m, key, t);
    }
    pthread_mutex_unlock(&m->mu);
}

/* ---- exposition ---- */

static void wm_render(buf *b, worker_metrics *m) {
    char labels[96];
    metrics_family(b, "hiclaw_worker_startup_seconds", "histogram",
                   "Seconds from a Worker's start (created, or spec.state set to Running) until the controller "
                   "wrote Ready=True, by backend.");
    for (size_t i = 0; i < m->nbackends; i++) {
        snprintf(labels, sizeof labels, "backend=\"%s\"", m->backends[i]->name);
        metrics_histogram_render(b, "hiclaw_worker_startup_seconds", labels, &m->startup[i]);
    }
    metrics_family(b, "hiclaw_worker_deps_write_seconds", "histogram",
                   "Seconds to write and verify a Worker's worker-deps objects (env, token, data) in object storage.");
    metrics_histogram_render(b, "hiclaw_worker_deps_write_seconds", NULL, &m->deps_write);
    metrics_family(b, "hiclaw_sandbox_claim_seconds", "histogram",
                   "Seconds from a SandboxClaim's creation until the controller saw it Completed.");
    metrics_histogram_render(b, "hiclaw_sandbox_claim_seconds", NULL, &m->claim);
    metrics_family(b, "hiclaw_worker_recreates_total", "counter",
                   "Worker instances deleted to be replaced, by backend and reason.");
    for (size_t i = 0; i < m->nbackends; i++) {
        const char *const *reasons = m->backends[i]->recreate_reasons;
        for (size_t r = 0; reasons && reasons[r]; r++)
            buf_printf(b, "hiclaw_worker_recreates_total{backend=\"%s\",reason=\"%s\"} %ld\n", m->backends[i]->name,
                       reasons[r], atomic_load(&m->recreates[i][r]));
    }
    metrics_family(b, "hiclaw_backend_switch_blocked_total", "counter",
                   "Times a Worker entered BackendSwitchBlocked (a backend switch refused while an instance runs).");
    buf_printf(b, "hiclaw_backend_switch_blocked_total %ld\n", atomic_load(&m->switch_blocked));
}
