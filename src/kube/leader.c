/*
 * leader.c — leader election on a coordination.k8s.io/v1 Lease, client-go's algorithm.
 *
 * Two replicas must never both act. The Lease is the lock and the API server's optimistic
 * concurrency is the arbiter: every write names the resourceVersion it read, so of two
 * candidates writing at once one gets 409 and stays a follower.
 *
 * Expiry is judged by local observation, never by comparing our clock with the holder's
 * renewTime: a lease counts as expired when its record (holder, renewTime, transitions) has
 * not changed for leaseDuration as measured on our own monotonic clock since we first saw it.
 * Clock skew between replicas therefore cannot make two leaders.
 *
 * The decision is a pure function (leader_decide) over (lease, what we observed, now); the
 * thread around it only reads, writes and sleeps. Timings: 15 s lease, 10 s renew deadline,
 * 2 s retry (SPEC section 10).
 */

typedef enum leader_step {
    LEADER_WAIT,      /* someone else holds a live lease */
    LEADER_CREATE,    /* no Lease object: create it holding it */
    LEADER_RENEW,     /* we hold it: bump renewTime */
    LEADER_TAKEOVER,  /* free or expired: take it (transitions + 1) */
} leader_step;

typedef struct leader_observation {
    char record[512];      /* holder|renewTime|transitions last seen */
    int64_t changed_at_ms; /* our monotonic time when that record was first seen */
} leader_observation;

/* Pure: what to do given the lease read (found = 0: absent), our identity and observation. */
static leader_step leader_decide(const kube_lease *l, int found, const char *identity, leader_observation *obs,
                                 int64_t now_ms) {
    if (!found) return LEADER_CREATE;
    if (l->holder && strcmp(l->holder, identity) == 0) return LEADER_RENEW;
    char rec[512];
    snprintf(rec, sizeof rec, "%s|%s|%d", l->holder ? l->holder : "", l->renew_time ? l->renew_time : "", l->transitions);
    if (strcmp(rec, obs->record) != 0) {
        snprintf(obs->record, sizeof obs->record, "%s", rec);
        obs->changed_at_ms = now_ms;
    }
    if (!l->holder || !*l->holder) return LEADER_TAKEOVER; /* released */
    int64_t duration_ms = (int64_t)(l->duration_s > 0 ? l->duration_s : 15) * 1000;
    return now_ms - obs->changed_at_ms > duration_ms ? LEADER_TAKEOVER : LEADER_WAIT;
}

typedef struct leader_elector {
    kube_client *kc;
    char *ns, *name, *identity;
    int lease_s;
    int64_t renew_deadline_ms, retry_ms;
    atomic_int leading, lost;
    wc_thread thread;       /* the election loop */
    leader_observation obs;
    void (*on_lost)(void *ud);
    void *ud;
    long transitions_seen;
} leader_elector;

static leader_elector *leader_new(kube_client *kc, const char *ns, const char *name, const char *identity) {
    leader_elector *e = xcalloc(1, sizeof *e);
    e->kc = kc;
    e->ns = xstrdup(ns);
    e->name = xstrdup(name);
    e->identity = xstrdup(identity);
    e->lease_s = 15;
    e->renew_deadline_ms = 10000;
    e->retry_ms = 2000;
    wc_thread_init(&e->thread);
    return e;
}

/* One attempt to acquire or renew. Returns 1 when we hold the lease afterwards. */
static int leader_try(leader_elector *e, wc_err *err) {
    kube_lease l;
    int got = kube_lease_get(e->kc, e->ns, e->name, &l, err);
    if (got < 0) return -1;
    char now[40];
    wc_rfc3339_micro(now);
    leader_step step = leader_decide(&l, got == 0, e->identity, &e->obs, wc_now_ms());
    int rc = 0;
    switch (step) {
    case LEADER_WAIT:
        break;
    case LEADER_CREATE:
    case LEADER_TAKEOVER:
        free(l.holder);
        l.holder = xstrdup(e->identity);
        free(l.acquire_time);
        l.acquire_time = xstrdup(now);
        if (step == LEADER_TAKEOVER) l.transitions++;
        /* fall through */
    case LEADER_RENEW:
        free(l.renew_time);
        l.renew_time = xstrdup(now);
        l.duration_s = e->lease_s;
        rc = kube_lease_write(e->kc, e->ns, e->name, &l, err) == 0 ? 1 : -1;
        if (rc < 0 && kube_err_conflict(err)) rc = 0; /* someone else won this round */
        break;
    }
    kube_lease_free(&l);
    return rc;
}

/* Gives the lease up so a standby takes over at once instead of waiting for expiry. */
static void leader_release(leader_elector *e) {
    wc_err err;
    kube_lease l;
    if (kube_lease_get(e->kc, e->ns, e->name, &l, &err) != 0) return;
    if (l.holder && strcmp(l.holder, e->identity) == 0) {
        free(l.holder);
        l.holder = NULL;
        l.duration_s = 1;
        char now[40];
        wc_rfc3339_micro(now);
        free(l.renew_time);
        l.renew_time = xstrdup(now);
        if (kube_lease_write(e->kc, e->ns, e->name, &l, &err) == 0) log_info("released leader lease", "lease", e->name);
        else log_warn("could not release leader lease", "lease", e->name, "error", err.msg);
    }
    kube_lease_free(&l);
}

static void *leader_main(void *arg) {
    leader_elector *e = arg;
    int64_t last_renew = 0;
    while (!wc_thread_stopping(&e->thread)) {
        wc_err err;
        err_clear(&err);
        int rc = leader_try(e, &err);
        int64_t now = wc_now_ms();
        if (rc == 1) {
            last_renew = now;
            if (!atomic_load(&e->leading)) {
                atomic_store(&e->leading, 1);
                log_info("became leader", "lease", e->name, "identity", e->identity);
            }
        } else if (atomic_load(&e->leading) && now - last_renew > e->renew_deadline_ms) {
            /* Could not renew in time: another replica may take over any moment. Stop acting. */
            atomic_store(&e->leading, 0);
            atomic_store(&e->lost, 1);
            log_error("lost leader lease", "lease", e->name, "error", err.msg[0] ? err.msg : "renew deadline passed");
            if (e->on_lost) e->on_lost(e->ud);
            break;
        } else if (rc < 0 && !wc_thread_stopping(&e->thread)) {
            log_warn("leader election request failed", "lease", e->name, "error", err.msg);
        }
        wc_thread_sleep(&e->thread, e->retry_ms);
    }
    return NULL;
}

static int leader_start(leader_elector *e, wc_err *err) {
    return wc_thread_start(&e->thread, leader_main, e, "leader election thread", err);
}

/* Stops electing; releases the lease if we hold it. */
static void leader_stop(leader_elector *e) {
    if (!e) return;
    wc_thread_stop(&e->thread);
    if (atomic_load(&e->leading)) leader_release(e);
    atomic_store(&e->leading, 0);
}

static void leader_free(leader_elector *e) {
    if (!e) return;
    leader_stop(e);
    wc_thread_destroy(&e->thread);
    free(e->ns);
    free(e->name);
    free(e->identity);
    free(e);
}
