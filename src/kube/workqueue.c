/*
 * workqueue.c — the controller's rate-limited, delaying work queue (client-go's workqueue).
 *
 * Why it exists: informer events arrive in bursts and repeat; a reconcile must run once per key
 * per burst, never for one key in two workers at once, and a failing key must back off without
 * starving the others. The behaviour is client-go's, which operators already know:
 *
 *   - Dedup. A key is "dirty" from wq_add until a worker takes it. Adding a dirty key again does
 *     nothing. Adding a key that a worker is processing marks it dirty, and wq_done puts it back
 *     in the queue, so the second add is processed after the first finishes, never beside it.
 *   - Delay. wq_add_after parks a key in a min-heap by due time; it becomes a plain add when
 *     due. A key waits in the heap at most once: a second delay keeps the earlier due time.
 *   - Rate limit. wq_add_rate_limited delays by the max of a per-key exponential backoff
 *     (5 ms doubling to 1000 s, reset by wq_forget) and an overall token bucket (10 qps,
 *     burst 100) — client-go's DefaultControllerRateLimiter.
 *
 * One deliberate difference: after wq_shutdown, wq_get returns WQ_SHUTDOWN at once even when
 * keys are still queued (client-go hands out the rest first). SPEC §10 says SIGTERM means "stop
 * taking work, finish in-flight reconciles"; reconciles are level-based, so a dropped queued key
 * is picked up by the next leader's initial list anyway.
 *
 * Shape: the rate limiter is a functional core (pure functions over a small state struct, the
 * time passed in, so tests drive it with an injected clock); the queue is the thin locked shell.
 * There is no timer thread: workers blocked in wq_get wait on the condition variable with a
 * deadline of the earliest due time, and whichever thread holds the lock promotes due keys.
 *
 * Data structures, all O(1) or O(log n) per operation and owned by the queue:
 *   - one wq_entry per known key in a strmap (base/strmap.c, the program's one hash table); the
 *     entry holds every per-key fact: dirty/processing flags, failure count, heap position;
 *   - a ring buffer FIFO of entries that are dirty and not processing (the ready queue);
 *   - a binary min-heap of entries waiting for a due time.
 * An entry is freed as soon as it holds no state (not dirty, not processing, not waiting, no
 * failures), so memory follows the live keys, not every key ever seen.
 */

/* ---------------------------------------------------------------------------------------------
 * The rate limiter: functional core. No locks, no clock reads, no allocation.
 */

typedef struct wq_limits {
    int64_t base_delay_ms; /* per-key backoff after the first failure (client-go: 5 ms) */
    int64_t max_delay_ms;  /* per-key backoff cap (client-go: 1000 s) */
    double qps;            /* overall bucket refill rate; <= 0 disables the bucket */
    int burst;             /* overall bucket size (tokens available at once) */
} wq_limits;

#define WQ_LIMITS_DEFAULT ((wq_limits){5, 1000 * 1000, 10.0, 100})

/* The overall token bucket, golang.org/x/time/rate semantics: a reservation always succeeds and
 * may drive the balance negative; the deficit is how long the caller must wait. That is what
 * makes the 101st add of a burst wait 100 ms and the 102nd 200 ms, rather than all of them
 * retrying at the same instant. */
typedef struct wq_bucket {
    double tokens;   /* may be negative: reservations already promised to the future */
    int64_t last_ms; /* time of the last refill */
} wq_bucket;

/* Starts full, as x/time/rate does, so a cold start of up to `burst` keys is not delayed. */
static void wq_bucket_init(wq_bucket *b, const wq_limits *l, int64_t now_ms) {
    b->tokens = l->burst > 0 ? (double)l->burst : 0.0;
    b->last_ms = now_ms;
}

/* Takes one token at now_ms and returns how many ms the caller must wait for it (0 if one was
 * available). Pure over (b, l, now_ms), so tests can replay any timeline. A clock that steps
 * backwards (only possible with an injected clock) refills nothing rather than draining. */
static int64_t wq_bucket_reserve(wq_bucket *b, const wq_limits *l, int64_t now_ms) {
    if (l->qps <= 0) return 0;
    assert(l->burst >= 1);
    if (now_ms > b->last_ms) {
        b->tokens += (double)(now_ms - b->last_ms) * l->qps / 1000.0;
        if (b->tokens > (double)l->burst) b->tokens = (double)l->burst;
        b->last_ms = now_ms;
    }
    b->tokens -= 1.0;
    if (b->tokens >= 0) return 0;
    /* The epsilon keeps float noise (0.1 * 1000 = 100.00000000000001) from adding a ms. */
    double wait = -b->tokens * 1000.0 / l->qps - 1e-9;
    int64_t ms = (int64_t)wait; /* ceil without libm */
    if ((double)ms < wait) ms++;
    return ms > 0 ? ms : 0;
}

/* The per-key backoff for a key that has already failed `failures` times: base * 2^failures,
 * capped. Computed without overflow for any count, because a key can fail forever. */
static int64_t wq_backoff_ms(const wq_limits *l, unsigned failures) {
    int64_t base = l->base_delay_ms > 0 ? l->base_delay_ms : 0;
    int64_t cap = l->max_delay_ms;
    if (base == 0) return 0;
    if (base >= cap) return cap;
    if (failures >= 62) return cap;
    if (base > (cap >> failures)) return cap; /* base << failures would exceed cap */
    int64_t d = base << failures;
    return d < cap ? d : cap;
}

/* client-go's MaxOfRateLimiter(exponential per item, bucket): both limiters are consulted on
 * every call (so the bucket is charged even when the backoff dominates) and the longer delay
 * wins. *failures is the key's count, incremented here as ItemExponentialFailureRateLimiter
 * does (saturating: a counter that wraps would reset a hot-looping key to 5 ms). */
static int64_t wq_limiter_when(wq_bucket *b, const wq_limits *l, unsigned *failures, int64_t now_ms) {
    int64_t backoff = wq_backoff_ms(l, *failures);
    if (*failures < UINT_MAX) (*failures)++;
    int64_t bucket = wq_bucket_reserve(b, l, now_ms);
    return backoff > bucket ? backoff : bucket;
}

/* Rejects limits the limiter cannot honour, with a message naming the field. */
static int wq_limits_validate(const wq_limits *l, wc_err *err) {
    if (!(l->qps == l->qps)) return err_set(err, WC_EINVAL, "workqueue: qps is not a number");
    if (l->base_delay_ms < 0) return err_set(err, WC_EINVAL, "workqueue: base delay %" PRId64 " ms is negative", l->base_delay_ms);
    if (l->max_delay_ms < l->base_delay_ms)
        return err_set(err, WC_EINVAL, "workqueue: max delay %" PRId64 " ms is below base delay %" PRId64 " ms",
                       l->max_delay_ms, l->base_delay_ms);
    if (l->qps > 0 && l->burst < 1) return err_set(err, WC_EINVAL, "workqueue: burst %d must be at least 1", l->burst);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The queue: imperative shell.
 */

typedef enum wq_status {
    WQ_OK = 0,       /* a key was returned / the add was accepted (possibly merged) */
    WQ_SHUTDOWN = 1, /* the queue is shutting down: no key, add ignored */
    WQ_TIMEOUT = 2,  /* wq_get_timed: no key became ready before the timeout */
} wq_status;

/* Counters for the controller-runtime metrics (workqueue_depth, workqueue_adds_total,
 * workqueue_retries_total) and for tests. */
typedef struct wq_counters {
    uint64_t adds;     /* adds that were not merged into an already-dirty key */
    uint64_t retries;  /* wq_add_rate_limited calls */
    size_t depth;      /* ready keys: queued, not processing, not waiting */
    size_t processing; /* keys handed to workers and not yet done */
    size_t waiting;    /* keys parked until a due time */
    size_t keys;       /* entries the queue holds (includes keys that only carry a failure count) */
} wq_counters;

enum { WQ_F_DIRTY = 1u, WQ_F_PROCESSING = 2u };
#define WQ_NOT_WAITING SIZE_MAX

typedef struct wq_entry {
    int64_t due_ms;    /* meaningful while heap_idx != WQ_NOT_WAITING */
    uint64_t seq;      /* heap tie-break: equal due times come out in add order */
    size_t heap_idx;   /* position in q->heap, or WQ_NOT_WAITING */
    unsigned flags;    /* WQ_F_*; DIRTY && !PROCESSING <=> the entry is in the ready ring */
    unsigned failures; /* rate-limited adds since the last wq_forget */
    char key[];        /* NUL-terminated copy owned by the entry */
} wq_entry;

typedef struct wq {
    pthread_mutex_t mu;
    pthread_cond_t ready; /* a key became ready, the earliest due time moved, or shutdown */
    pthread_cond_t idle;  /* a worker finished (drain waits on it) */
    char *name;
    wq_limits limits;
    wq_bucket bucket;

    strmap entries;   /* key -> wq_entry */

    wq_entry **ring; /* ready FIFO */
    size_t ring_cap, ring_head, ring_len;

    wq_entry **heap; /* waiting min-heap by (due_ms, seq) */
    size_t heap_len, heap_cap;
    uint64_t next_seq;

    size_t nprocessing;
    size_t nwaiters; /* threads inside wq_get, so wq_free can assert none is left */
    int shutting_down;
    uint64_t adds, retries;
} wq;

static wq_entry *wq_lookup(const wq *q, const char *key) { return strmap_get(&q->entries, key); }

/* Returns the key's entry, creating an empty one if the queue has not seen it. */
static wq_entry *wq_intern(wq *q, const char *key) {
    wq_entry *e = wq_lookup(q, key);
    if (e) return e;
    size_t n = strlen(key);
    e = xmalloc(sizeof *e + n + 1);
    e->due_ms = 0;
    e->seq = 0;
    e->heap_idx = WQ_NOT_WAITING;
    e->flags = 0;
    e->failures = 0;
    memcpy(e->key, key, n + 1);
    strmap_put(&q->entries, key, e);
    return e;
}

/* Removes and frees an entry that holds no state any more, so memory follows the live keys. */
static void wq_release_if_unused(wq *q, wq_entry *e) {
    if (e->flags || e->heap_idx != WQ_NOT_WAITING || e->failures) return;
    wq_entry *gone = strmap_del(&q->entries, e->key);
    assert(gone == e);
    free(gone);
}

static void wq_ring_push(wq *q, wq_entry *e) {
    assert((e->flags & (WQ_F_DIRTY | WQ_F_PROCESSING)) == WQ_F_DIRTY); /* the ring holds exactly these */
    if (q->ring_len == q->ring_cap) {
        size_t cap = q->ring_cap * 2;
        wq_entry **r = xmalloc(cap * sizeof *r);
        for (size_t k = 0; k < q->ring_len; k++) r[k] = q->ring[(q->ring_head + k) % q->ring_cap];
        free(q->ring);
        q->ring = r;
        q->ring_cap = cap;
        q->ring_head = 0;
    }
    q->ring[(q->ring_head + q->ring_len) % q->ring_cap] = e;
    q->ring_len++;
}

static wq_entry *wq_ring_pop(wq *q) {
    assert(q->ring_len > 0);
    wq_entry *e = q->ring[q->ring_head];
    q->ring_head = (q->ring_head + 1) % q->ring_cap;
    q->ring_len--;
    return e;
}

static int wq_heap_less(const wq_entry *a, const wq_entry *b) {
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->seq < b->seq);
}

static void wq_heap_set(wq *q, size_t i, wq_entry *e) {
    q->heap[i] = e;
    e->heap_idx = i;
}

static void wq_heap_up(wq *q, size_t i) {
    wq_entry *e = q->heap[i];
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!wq_heap_less(e, q->heap[p])) break;
        wq_heap_set(q, i, q->heap[p]);
        i = p;
    }
    wq_heap_set(q, i, e);
}

static void wq_heap_down(wq *q, size_t i) {
    wq_entry *e = q->heap[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->heap_len) break;
        if (c + 1 < q->heap_len && wq_heap_less(q->heap[c + 1], q->heap[c])) c++;
        if (!wq_heap_less(q->heap[c], e)) break;
        wq_heap_set(q, i, q->heap[c]);
        i = c;
    }
    wq_heap_set(q, i, e);
}

static wq_entry *wq_heap_pop(wq *q) {
    assert(q->heap_len > 0);
    wq_entry *top = q->heap[0];
    q->heap_len--;
    if (q->heap_len > 0) {
        wq_heap_set(q, 0, q->heap[q->heap_len]);
        wq_heap_down(q, 0);
    }
    top->heap_idx = WQ_NOT_WAITING;
    return top;
}

/* The dedup rule, with the lock held: a dirty key is already going to be processed, so another
 * add only counts once; a processing key is marked dirty and wq_done re-queues it. */
static void wq_add_locked(wq *q, wq_entry *e) {
    if (e->flags & WQ_F_DIRTY) return;
    e->flags |= WQ_F_DIRTY;
    q->adds++;
    if (e->flags & WQ_F_PROCESSING) return;
    wq_ring_push(q, e);
    pthread_cond_signal(&q->ready);
}

/* Parks a key until now+delay. If it is already parked, the earlier due time wins (client-go),
 * so a fast retry is never postponed by a slow resync. Wakes a waiter only when the earliest
 * due time moved, since only then is some waiter's timed wait too long. */
static void wq_add_after_locked(wq *q, wq_entry *e, int64_t now_ms, int64_t delay_ms) {
    if (delay_ms <= 0) {
        wq_add_locked(q, e);
        return;
    }
    int64_t due = now_ms + delay_ms;
    if (e->heap_idx != WQ_NOT_WAITING) {
        if (due >= e->due_ms) return;
        e->due_ms = due;
        wq_heap_up(q, e->heap_idx);
    } else {
        if (q->heap_len == q->heap_cap) {
            q->heap_cap *= 2;
            q->heap = xrealloc(q->heap, q->heap_cap * sizeof *q->heap);
        }
        e->due_ms = due;
        e->seq = q->next_seq++;
        q->heap_len++;
        wq_heap_set(q, q->heap_len - 1, e);
        wq_heap_up(q, q->heap_len - 1);
    }
    if (e->heap_idx == 0) pthread_cond_signal(&q->ready);
}

/* Moves every key whose due time has come into the ready queue. Run by whichever thread holds
 * the lock in wq_get or wq_len: this is the "waiting loop" client-go runs as a goroutine. */
static void wq_promote_due(wq *q, int64_t now_ms) {
    while (q->heap_len > 0 && q->heap[0]->due_ms <= now_ms) wq_add_locked(q, wq_heap_pop(q));
}

/* now + timeout_ms as an absolute deadline; negative or unrepresentable means "never". */
static int64_t wq_deadline(int64_t timeout_ms) {
    if (timeout_ms < 0) return INT64_MAX;
    int64_t now = wc_now_ms();
    return timeout_ms > INT64_MAX - now ? INT64_MAX : now + timeout_ms;
}

/* Builds a queue. `name` labels its metrics; `limits` NULL means client-go's defaults. Returns
 * NULL with err filled when the limits are unusable or the pthread objects cannot be made. */
static wq *wq_new(const char *name, const wq_limits *limits, wc_err *err) {
    wq_limits l = limits ? *limits : WQ_LIMITS_DEFAULT;
    if (wq_limits_validate(&l, err) < 0) return NULL;
    wq *q = xcalloc(1, sizeof *q);
    /* Due times are monotonic-clock ms (wc_now_ms), so the timed waits must use that clock too;
     * a wall-clock step would otherwise fire or stall every delayed key. */
    pthread_condattr_t ca;
    int ok_attr = pthread_condattr_init(&ca) == 0;
    int ok_clock = ok_attr && pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) == 0;
    int ok_mu = ok_clock && pthread_mutex_init(&q->mu, NULL) == 0;
    int ok_ready = ok_mu && pthread_cond_init(&q->ready, &ca) == 0;
    int ok_idle = ok_ready && pthread_cond_init(&q->idle, &ca) == 0;
    if (ok_attr) pthread_condattr_destroy(&ca);
    if (!ok_idle) {
        if (ok_ready) pthread_cond_destroy(&q->ready);
        if (ok_mu) pthread_mutex_destroy(&q->mu);
        free(q);
        err_set(err, WC_EIO, "workqueue %s: cannot create its mutex or condition variables", name ? name : "");
        return NULL;
    }
    q->name = xstrdup(name ? name : "");
    q->limits = l;
    wq_bucket_init(&q->bucket, &l, wc_now_ms());
    q->ring_cap = 64;
    q->ring = xmalloc(q->ring_cap * sizeof *q->ring);
    q->heap_cap = 64;
    q->heap = xmalloc(q->heap_cap * sizeof *q->heap);
    return q;
}

/* Frees the queue and every key it holds. The caller guarantees no thread is inside any wq_
 * call (after wq_shutdown and joining the workers); a worker still blocked in wq_get would
 * wake on a destroyed condition variable. */
static void wq_free(wq *q) {
    if (!q) return;
    pthread_mutex_lock(&q->mu);
    assert(q->nwaiters == 0);
    pthread_mutex_unlock(&q->mu);
    strmap_free(&q->entries, free);
    free(q->ring);
    free(q->heap);
    free(q->name);
    pthread_cond_destroy(&q->ready);
    pthread_cond_destroy(&q->idle);
    pthread_mutex_destroy(&q->mu);
    free(q);
}

/* Takes the lock for an add: the key's entry, or NULL (lock not held) once shutting down. */
static wq_entry *wq_lock_for_add(wq *q, const char *key) {
    assert(key);
    pthread_mutex_lock(&q->mu);
    if (!q->shutting_down) return wq_intern(q, key);
    pthread_mutex_unlock(&q->mu);
    return NULL;
}

/* Queues a key now. Returns WQ_OK (also when merged into a pending add) or WQ_SHUTDOWN. */
static wq_status wq_add(wq *q, const char *key) {
    wq_entry *e = wq_lock_for_add(q, key);
    if (!e) return WQ_SHUTDOWN;
    wq_add_locked(q, e);
    pthread_mutex_unlock(&q->mu);
    return WQ_OK;
}

/* Queues a key after delay_ms (<= 0 means now): periodic resyncs and "requeue after". */
static wq_status wq_add_after(wq *q, const char *key, int64_t delay_ms) {
    wq_entry *e = wq_lock_for_add(q, key);
    if (!e) return WQ_SHUTDOWN;
    wq_add_after_locked(q, e, wc_now_ms(), delay_ms);
    pthread_mutex_unlock(&q->mu);
    return WQ_OK;
}

/* Queues a key after the rate limiter's delay: the path for a failed reconcile. Counts a
 * retry and a failure for the key. */
static wq_status wq_add_rate_limited(wq *q, const char *key) {
    wq_entry *e = wq_lock_for_add(q, key);
    if (!e) return WQ_SHUTDOWN;
    int64_t now = wc_now_ms();
    int64_t delay = wq_limiter_when(&q->bucket, &q->limits, &e->failures, now);
    q->retries++;
    wq_add_after_locked(q, e, now, delay);
    pthread_mutex_unlock(&q->mu);
    return WQ_OK;
}

/* Resets a key's failure count after a successful reconcile, so its next failure starts at
 * the base delay again. The token bucket is shared and has nothing to forget. */
static void wq_forget(wq *q, const char *key) {
    pthread_mutex_lock(&q->mu);
    wq_entry *e = wq_lookup(q, key);
    if (e) {
        e->failures = 0;
        wq_release_if_unused(q, e);
    }
    pthread_mutex_unlock(&q->mu);
}

/* Takes the next ready key, waiting up to timeout_ms (< 0: forever, 0: just look). On WQ_OK
 * *key_out is a malloc'd copy the caller frees after wq_done; otherwise it is NULL. Waits are
 * bounded by the earliest due time, so delayed keys become ready without a timer thread and
 * without polling. */
static wq_status wq_get_timed(wq *q, char **key_out, int64_t timeout_ms) {
    *key_out = NULL;
    pthread_mutex_lock(&q->mu);
    q->nwaiters++;
    int64_t deadline = wq_deadline(timeout_ms);
    wq_status st;
    for (;;) {
        if (q->shutting_down) {
            st = WQ_SHUTDOWN;
            break;
        }
        int64_t now = wc_now_ms();
        wq_promote_due(q, now);
        if (q->ring_len > 0) {
            wq_entry *e = wq_ring_pop(q);
            assert((e->flags & (WQ_F_DIRTY | WQ_F_PROCESSING)) == WQ_F_DIRTY);
            e->flags = (e->flags & ~WQ_F_DIRTY) | WQ_F_PROCESSING;
            q->nprocessing++;
            *key_out = xstrdup(e->key);
            st = WQ_OK;
            break;
        }
        if (now >= deadline) {
            st = WQ_TIMEOUT;
            break;
        }
        int64_t wake = deadline;
        if (q->heap_len > 0 && q->heap[0]->due_ms < wake) wake = q->heap[0]->due_ms;
        if (wake == INT64_MAX) {
            pthread_cond_wait(&q->ready, &q->mu);
        } else {
            struct timespec ts = {(time_t)(wake / 1000), (long)(wake % 1000) * 1000000L};
            pthread_cond_timedwait(&q->ready, &q->mu, &ts);
        }
    }
    q->nwaiters--;
    pthread_mutex_unlock(&q->mu);
    return st;
}

/* Blocks until a key is ready (WQ_OK, *key_out malloc'd) or the queue shuts down (WQ_SHUTDOWN). */
static wq_status wq_get(wq *q, char **key_out) {
    return wq_get_timed(q, key_out, -1);
}

/* Marks the worker's key finished. If it was added again meanwhile it goes back to the ready
 * queue now — the moment it becomes safe to hand to another worker. */
static void wq_done(wq *q, const char *key) {
    pthread_mutex_lock(&q->mu);
    wq_entry *e = wq_lookup(q, key);
    assert(e && (e->flags & WQ_F_PROCESSING)); /* wq_done without a matching wq_get */
    if (e && (e->flags & WQ_F_PROCESSING)) {
        e->flags &= ~WQ_F_PROCESSING;
        assert(q->nprocessing > 0);
        q->nprocessing--;
        if (e->flags & WQ_F_DIRTY) {
            wq_ring_push(q, e);
            pthread_cond_signal(&q->ready);
        }
        if (q->nprocessing == 0) pthread_cond_broadcast(&q->idle);
        wq_release_if_unused(q, e);
    }
    pthread_mutex_unlock(&q->mu);
}

/* One consistent snapshot of the counters and sizes, taken under the lock, so a metrics scrape
 * never sees depth and processing from different moments. */
static void wq_stats(wq *q, wq_counters *out) {
    pthread_mutex_lock(&q->mu);
    wq_promote_due(q, wc_now_ms());
    out->adds = q->adds;
    out->retries = q->retries;
    out->depth = q->ring_len;
    out->processing = q->nprocessing;
    out->waiting = q->heap_len;
    out->keys = q->entries.len;
    pthread_mutex_unlock(&q->mu);
}

/* Stops accepting adds and wakes every blocked wq_get, which returns WQ_SHUTDOWN. Workers that
 * hold a key keep it until they call wq_done. Idempotent. */
static void wq_shutdown(wq *q) {
    pthread_mutex_lock(&q->mu);
    q->shutting_down = 1;
    pthread_cond_broadcast(&q->ready);
    pthread_cond_broadcast(&q->idle);
    pthread_mutex_unlock(&q->mu);
}

/* wq_shutdown, then waits up to timeout_ms (< 0: forever) for in-flight keys to be done: the
 * SIGTERM path ("finish in-flight reconciles, 30 s max"). Returns how many keys are still
 * processing (0: drained), so the caller can log what it abandons. */
static size_t wq_shutdown_drain(wq *q, int64_t timeout_ms) {
    wq_shutdown(q);
    pthread_mutex_lock(&q->mu);
    int64_t deadline = wq_deadline(timeout_ms);
    while (q->nprocessing > 0) {
        if (deadline == INT64_MAX) {
            pthread_cond_wait(&q->idle, &q->mu);
            continue;
        }
        if (wc_now_ms() >= deadline) break;
        struct timespec ts = {(time_t)(deadline / 1000), (long)(deadline % 1000) * 1000000L};
        pthread_cond_timedwait(&q->idle, &q->mu, &ts);
    }
    size_t left = q->nprocessing;
    pthread_mutex_unlock(&q->mu);
    return left;
}
