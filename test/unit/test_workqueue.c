/* test_workqueue.c — the rate limiter's pure core with an injected clock, and the queue shell:
 * dedup, never-concurrent keys under stress, delays, shutdown and drain, counters.
 *
 * Timing assertions are one-sided where it matters: "not before the delay" is checked strictly
 * (the monotonic clock cannot run early), "soon after" only against a generous bound. */

/* Ready keys (queued, not processing, not waiting), due keys promoted first: the depth gauge. */
static size_t wq_len(wq *q) {
    wq_counters c;
    wq_stats(q, &c);
    return c.depth;
}

/* How many rate-limited adds the key had since its last wq_forget. */
static unsigned wq_num_requeues(wq *q, const char *key) {
    pthread_mutex_lock(&q->mu);
    wq_entry *e = wq_lookup(q, key);
    unsigned n = e ? e->failures : 0;
    pthread_mutex_unlock(&q->mu);
    return n;
}

/* Checks every structural invariant of the queue; 0, or -1 with the first violation in err.
 * O(n), takes the lock. */
static int wq_check_invariants(wq *q, wc_err *err) {
    int rc = 0;
    pthread_mutex_lock(&q->mu);
    size_t n = 0, ready = 0, processing = 0, waiting = 0;
    const char *k;
    void *v;
    strmap_foreach(&q->entries, k, v) {
        wq_entry *e = v;
        n++;
        if (rc == 0 && (strcmp(e->key, k) != 0 || wq_lookup(q, e->key) != e))
            rc = err_set(err, WC_EINVAL, "key %s unreachable by lookup", e->key);
        else if (rc == 0 && !e->flags && e->heap_idx == WQ_NOT_WAITING && !e->failures)
            rc = err_set(err, WC_EINVAL, "key %s holds no state but was not released", e->key);
        if ((e->flags & (WQ_F_DIRTY | WQ_F_PROCESSING)) == WQ_F_DIRTY) ready++;
        if (e->flags & WQ_F_PROCESSING) processing++;
        if (e->heap_idx != WQ_NOT_WAITING) {
            waiting++;
            if (rc == 0 && (e->heap_idx >= q->heap_len || q->heap[e->heap_idx] != e))
                rc = err_set(err, WC_EINVAL, "key %s has a wrong heap index", e->key);
        }
    }
    if (rc == 0 && n != q->entries.len) rc = err_set(err, WC_EINVAL, "table count %zu, entries %zu", q->entries.len, n);
    if (rc == 0 && ready != q->ring_len) rc = err_set(err, WC_EINVAL, "ready entries %zu, ring %zu", ready, q->ring_len);
    if (rc == 0 && processing != q->nprocessing)
        rc = err_set(err, WC_EINVAL, "processing entries %zu, counter %zu", processing, q->nprocessing);
    if (rc == 0 && waiting != q->heap_len) rc = err_set(err, WC_EINVAL, "waiting entries %zu, heap %zu", waiting, q->heap_len);
    for (size_t i = 0; i < q->ring_len && rc == 0; i++) {
        wq_entry *e = q->ring[(q->ring_head + i) % q->ring_cap];
        if ((e->flags & (WQ_F_DIRTY | WQ_F_PROCESSING)) != WQ_F_DIRTY)
            rc = err_set(err, WC_EINVAL, "ring holds key %s with flags %u", e->key, e->flags);
    }
    for (size_t i = 1; i < q->heap_len && rc == 0; i++)
        if (wq_heap_less(q->heap[i], q->heap[(i - 1) / 2])) rc = err_set(err, WC_EINVAL, "heap order broken at %zu", i);
    pthread_mutex_unlock(&q->mu);
    return rc;
}

static wq *wqt_new(const wq_limits *l) {
    wc_err err;
    err_clear(&err);
    wq *q = wq_new("test", l, &err);
    if (!q) fprintf(stdout, "    wq_new: %s\n", err.msg);
    return q;
}

static int wqt_invariants_ok(wq *q) {
    wc_err err;
    err_clear(&err);
    if (wq_check_invariants(q, &err) == 0) return 1;
    fprintf(stdout, "    invariant: %s\n", err.msg);
    return 0;
}

/* Gets with a bound so a broken queue fails the test instead of hanging the run. */
static char *wqt_get(wq *q, int64_t timeout_ms) {
    char *k = NULL;
    wq_status st = wq_get_timed(q, &k, timeout_ms);
    if (st != WQ_OK) return NULL;
    return k;
}

/* Joins with a bound: a getter that never wakes fails the test rather than hanging the run
 * (the thread is then abandoned on purpose). */
static int wqt_join(pthread_t t, int64_t timeout_ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return pthread_timedjoin_np(t, NULL, &ts) == 0;
}

/* ---- the rate limiter's functional core -------------------------------------------------- */

TEST(workqueue_backoff_doubles_and_caps) {
    wq_limits l = WQ_LIMITS_DEFAULT;
    CHECK_INT_EQ(wq_backoff_ms(&l, 0), 5);
    CHECK_INT_EQ(wq_backoff_ms(&l, 1), 10);
    CHECK_INT_EQ(wq_backoff_ms(&l, 2), 20);
    CHECK_INT_EQ(wq_backoff_ms(&l, 3), 40);
    CHECK_INT_EQ(wq_backoff_ms(&l, 4), 80);
    CHECK_INT_EQ(wq_backoff_ms(&l, 17), 5 * 131072);  /* 655.36 s: still below the cap */
    CHECK_INT_EQ(wq_backoff_ms(&l, 18), 1000 * 1000); /* 1310.72 s would pass it: capped */
    CHECK_INT_EQ(wq_backoff_ms(&l, 40), 1000 * 1000);
    int capped = 1; /* 5 << 61 would overflow int64 without the pre-shift check */
    for (unsigned f = 18; f < 70; f++) capped &= wq_backoff_ms(&l, f) == 1000 * 1000;
    CHECK(capped);
    CHECK_INT_EQ(wq_backoff_ms(&l, 63), 1000 * 1000); /* shifts that would overflow */
    CHECK_INT_EQ(wq_backoff_ms(&l, 64), 1000 * 1000);
    CHECK_INT_EQ(wq_backoff_ms(&l, UINT_MAX), 1000 * 1000);

    /* Driven through wq_limiter_when with the bucket disabled: the sequence a failing key sees,
     * and the count it leaves behind. Time does not matter to the per-key limiter. */
    wq_limits nob = l;
    nob.qps = 0;
    wq_bucket b;
    wq_bucket_init(&b, &nob, 0);
    unsigned failures = 0;
    int64_t want = 5;
    for (int i = 0; i < 30; i++) {
        CHECK_INT_EQ(wq_limiter_when(&b, &nob, &failures, 0), want);
        want = want * 2 > 1000 * 1000 ? 1000 * 1000 : want * 2;
    }
    CHECK_INT_EQ(failures, 30);
    failures = 0; /* what wq_forget does to the key */
    CHECK_INT_EQ(wq_limiter_when(&b, &nob, &failures, 0), 5);
    /* The count saturates instead of wrapping back to the base delay. */
    failures = UINT_MAX;
    CHECK_INT_EQ(wq_limiter_when(&b, &nob, &failures, 0), 1000 * 1000);
    CHECK(failures == UINT_MAX);

    /* Small test-sized limits cap the same way. */
    wq_limits small = {1, 8, 0, 0};
    CHECK_INT_EQ(wq_backoff_ms(&small, 0), 1);
    CHECK_INT_EQ(wq_backoff_ms(&small, 3), 8);
    CHECK_INT_EQ(wq_backoff_ms(&small, 4), 8);
}

TEST(workqueue_token_bucket_burst_then_rate) {
    wq_limits l = WQ_LIMITS_DEFAULT; /* 10 qps, burst 100 */
    wq_bucket b;
    int64_t t0 = 1000000;
    wq_bucket_init(&b, &l, t0);
    /* A cold burst of 100 goes straight through. */
    int immediate = 0;
    for (int i = 0; i < 100; i++) immediate += wq_bucket_reserve(&b, &l, t0) == 0;
    CHECK_INT_EQ(immediate, 100);
    /* Then each further reservation at the same instant waits one more 1/qps. */
    CHECK_INT_EQ(wq_bucket_reserve(&b, &l, t0), 100);
    CHECK_INT_EQ(wq_bucket_reserve(&b, &l, t0), 200);
    CHECK_INT_EQ(wq_bucket_reserve(&b, &l, t0), 300);
    /* Three tokens are owed; 300 ms repays them, so a reservation then waits one interval. */
    CHECK_INT_EQ(wq_bucket_reserve(&b, &l, t0 + 300), 100);
    /* Refill is continuous: 50 ms after the debt is cleared buys half a token. */
    wq_bucket_init(&b, &l, t0);
    for (int i = 0; i < 100; i++) wq_bucket_reserve(&b, &l, t0);
    CHECK_INT_EQ(wq_bucket_reserve(&b, &l, t0 + 50), 50);
    /* Steady state: one reservation every 100 ms never waits; two at once, the second waits. */
    wq_bucket_init(&b, &l, t0);
    for (int i = 0; i < 100; i++) wq_bucket_reserve(&b, &l, t0);
    int waited = 0;
    for (int i = 1; i <= 50; i++) waited += wq_bucket_reserve(&b, &l, t0 + 100 * i) != 0;
    CHECK_INT_EQ(waited, 0);
    CHECK_INT_EQ(wq_bucket_reserve(&b, &l, t0 + 5100), 0);
    CHECK_INT_EQ(wq_bucket_reserve(&b, &l, t0 + 5100), 100);
    /* A long idle period refills only up to the burst. */
    int64_t later = t0 + 3600 * 1000;
    immediate = 0;
    for (int i = 0; i < 100; i++) immediate += wq_bucket_reserve(&b, &l, later) == 0;
    CHECK_INT_EQ(immediate, 100);
    CHECK_INT_EQ(wq_bucket_reserve(&b, &l, later), 100);
    /* Saturated from many callers over time, the due times handed out admit burst + 10/s:
     * 500 reservations/s for 10 s get due times of which ~200 fall inside those 10 s. */
    wq_bucket_init(&b, &l, t0);
    int admitted = 0;
    for (int64_t t = t0; t < t0 + 10000; t += 10)
        for (int k = 0; k < 5; k++) admitted += t + wq_bucket_reserve(&b, &l, t) < t0 + 10000;
    CHECK(admitted >= 100 + 99 && admitted <= 100 + 101);
    /* A clock stepping back (only possible when injected) does not mint tokens. */
    wq_bucket_init(&b, &l, t0);
    for (int i = 0; i < 100; i++) wq_bucket_reserve(&b, &l, t0);
    CHECK_INT_EQ(wq_bucket_reserve(&b, &l, t0 - 5000), 100);
    /* qps <= 0 disables the bucket. */
    wq_limits off = {5, 1000, 0, 0};
    wq_bucket_init(&b, &off, 0);
    int zero = 0;
    for (int i = 0; i < 1000; i++) zero += wq_bucket_reserve(&b, &off, 0) == 0;
    CHECK_INT_EQ(zero, 1000);
}

TEST(workqueue_limiter_takes_max_of_backoff_and_bucket) {
    wq_limits l = {5, 1000 * 1000, 10.0, 2};
    wq_bucket b;
    wq_bucket_init(&b, &l, 0);
    unsigned fa = 0, fb = 0, fc = 0;
    CHECK_INT_EQ(wq_limiter_when(&b, &l, &fa, 0), 5);   /* token free: backoff wins */
    CHECK_INT_EQ(wq_limiter_when(&b, &l, &fb, 0), 5);   /* last token: backoff wins */
    CHECK_INT_EQ(wq_limiter_when(&b, &l, &fc, 0), 100); /* bucket empty: bucket wins */
    /* Key a's backoff now exceeds the bucket's wait, and the bucket is still charged. */
    for (int i = 0; i < 10; i++) wq_limiter_when(&b, &l, &fa, 0);
    CHECK_INT_EQ(fa, 11);
    CHECK_INT_EQ(wq_limiter_when(&b, &l, &fa, 0), 5 << 11);
    CHECK_INT_EQ(wq_bucket_reserve(&b, &l, 0), 1300); /* 13 reservations past the burst */
}

TEST(workqueue_rejects_bad_limits) {
    wc_err err;
    wq_limits neg = {-1, 10, 0, 0};
    err_clear(&err);
    CHECK(wq_new("x", &neg, &err) == NULL);
    CHECK_CONTAINS(err.msg, "base delay");
    wq_limits inverted = {100, 10, 0, 0};
    err_clear(&err);
    CHECK(wq_new("x", &inverted, &err) == NULL);
    CHECK_CONTAINS(err.msg, "max delay");
    wq_limits noburst = {5, 10, 10.0, 0};
    err_clear(&err);
    CHECK(wq_new("x", &noburst, &err) == NULL);
    CHECK_CONTAINS(err.msg, "burst");
    CHECK_INT_EQ(err.code, WC_EINVAL);
}

/* ---- the queue ---------------------------------------------------------------------------- */

TEST(workqueue_dedup_and_requeue_while_processing) {
    wq *q = wqt_new(NULL);
    REQUIRE(q);
    CHECK_INT_EQ(wq_add(q, "ns/a"), WQ_OK);
    CHECK_INT_EQ(wq_add(q, "ns/a"), WQ_OK);
    CHECK_INT_EQ(wq_add(q, "ns/a"), WQ_OK);
    CHECK_INT_EQ(wq_len(q), 1);
    char *k = wqt_get(q, 0);
    CHECK_STR_EQ(k, "ns/a");
    char *none = NULL;
    CHECK_INT_EQ(wq_get_timed(q, &none, 0), WQ_TIMEOUT);
    CHECK(none == NULL);

    /* Re-added while processing: not handed out again until done ... */
    CHECK_INT_EQ(wq_add(q, "ns/a"), WQ_OK);
    CHECK_INT_EQ(wq_add(q, "ns/a"), WQ_OK);
    CHECK_INT_EQ(wq_len(q), 0);
    CHECK_INT_EQ(wq_get_timed(q, &none, 20), WQ_TIMEOUT);
    CHECK(wqt_invariants_ok(q));
    wq_done(q, "ns/a");
    /* ... then exactly once more. */
    CHECK_INT_EQ(wq_len(q), 1);
    char *k2 = wqt_get(q, 0);
    CHECK_STR_EQ(k2, "ns/a");
    CHECK_INT_EQ(wq_get_timed(q, &none, 0), WQ_TIMEOUT);
    wq_done(q, "ns/a");
    CHECK_INT_EQ(wq_get_timed(q, &none, 0), WQ_TIMEOUT);
    /* Nothing is left behind once a key has no state. */
    wq_counters c;
    wq_stats(q, &c);
    CHECK_INT_EQ(c.keys, 0);
    CHECK(wqt_invariants_ok(q));
    free(k);
    free(k2);

    /* FIFO among distinct keys; the returned key is the caller's copy. */
    wq_add(q, "ns/x");
    wq_add(q, "ns/y");
    wq_add(q, "ns/z");
    wq_add(q, "ns/x");
    const char *order[] = {"ns/x", "ns/y", "ns/z"};
    for (int i = 0; i < 3; i++) {
        char *g = wqt_get(q, 0);
        CHECK_STR_EQ(g, order[i]);
        if (g) {
            wq_done(q, g);
            free(g);
        }
    }
    CHECK_INT_EQ(wq_len(q), 0);
    wq_free(q);
}

TEST(workqueue_many_keys_table_grows_and_shrinks) {
    wq_limits l = {1, 1000, 0, 0};
    wq *q = wqt_new(&l);
    REQUIRE(q);
    enum { N = 5000 };
    char key[64];
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "ns-%d/worker-%d", i % 7, i);
        wq_add(q, key);
    }
    for (int i = 0; i < N; i += 3) {
        snprintf(key, sizeof key, "ns-%d/worker-%d", i % 7, i);
        wq_add(q, key); /* duplicates merge */
    }
    CHECK_INT_EQ(wq_len(q), N);
    CHECK(wqt_invariants_ok(q));
    int in_order = 1;
    for (int i = 0; i < N; i++) {
        char *g = wqt_get(q, 0);
        REQUIRE(g);
        snprintf(key, sizeof key, "ns-%d/worker-%d", i % 7, i);
        in_order &= strcmp(g, key) == 0;
        /* Every other key leaves a failure count behind: those entries must survive the
         * deletions of their neighbours in the probe runs. */
        if (i % 2 == 0) {
            wq_add_rate_limited(q, g);
            wq_add_rate_limited(q, g);
        }
        wq_done(q, g);
        free(g);
    }
    CHECK(in_order);
    CHECK(wqt_invariants_ok(q));
    int counts_ok = 1;
    for (int i = 0; i < N; i++) {
        snprintf(key, sizeof key, "ns-%d/worker-%d", i % 7, i);
        counts_ok &= wq_num_requeues(q, key) == (i % 2 == 0 ? 2u : 0u);
    }
    CHECK(counts_ok);
    /* Forgetting half of them, in an order unrelated to insertion, keeps the rest reachable. */
    for (int i = N - 2; i >= 0; i -= 4) {
        snprintf(key, sizeof key, "ns-%d/worker-%d", i % 7, i);
        wq_forget(q, key);
    }
    CHECK(wqt_invariants_ok(q));
    counts_ok = 1;
    for (int i = 0; i < N; i += 2) {
        snprintf(key, sizeof key, "ns-%d/worker-%d", i % 7, i);
        counts_ok &= wq_num_requeues(q, key) == ((N - 2 - i) % 4 == 0 ? 0u : 2u);
    }
    CHECK(counts_ok);
    wq_free(q);
}

/* The stress test: workers and producers hammer a small key space; each key records how many
 * workers hold it at once and which add generation each processing saw. */
enum { WQS_KEYS = 64, WQS_WORKERS = 8, WQS_PRODUCERS = 3, WQS_ADDS_PER_PRODUCER = 6000 };

typedef struct wqs_state {
    wq *q;
    int active[WQS_KEYS];      /* workers holding the key right now */
    int max_active[WQS_KEYS];
    unsigned add_gen[WQS_KEYS];  /* bumped before every add */
    unsigned seen_gen[WQS_KEYS]; /* add_gen observed when a worker last started the key */
    long processed;
    int readd_budget;
    unsigned seed;
} wqs_state;

static int wqs_index(const char *key) {
    const char *dash = strrchr(key, '-');
    return dash ? atoi(dash + 1) : -1;
}

static void *wqs_worker(void *arg) {
    wqs_state *s = arg;
    unsigned seed = __atomic_fetch_add(&s->seed, 7919, __ATOMIC_RELAXED);
    char *key;
    while (wq_get(s->q, &key) == WQ_OK) {
        int i = wqs_index(key);
        assert(i >= 0 && i < WQS_KEYS);
        int now = __atomic_add_fetch(&s->active[i], 1, __ATOMIC_SEQ_CST);
        int prev = __atomic_load_n(&s->max_active[i], __ATOMIC_RELAXED);
        while (now > prev && !__atomic_compare_exchange_n(&s->max_active[i], &prev, now, 0, __ATOMIC_SEQ_CST, __ATOMIC_RELAXED)) {}
        __atomic_store_n(&s->seen_gen[i], __atomic_load_n(&s->add_gen[i], __ATOMIC_SEQ_CST), __ATOMIC_SEQ_CST);
        /* A little work, sometimes a re-add of our own key (a reconcile asking to run again). */
        for (volatile int spin = 0; spin < (int)(rand_r(&seed) % 2000); spin++) {}
        if (rand_r(&seed) % 4 == 0 && __atomic_sub_fetch(&s->readd_budget, 1, __ATOMIC_SEQ_CST) >= 0) {
            __atomic_add_fetch(&s->add_gen[i], 1, __ATOMIC_SEQ_CST);
            wq_add(s->q, key);
        }
        __atomic_sub_fetch(&s->active[i], 1, __ATOMIC_SEQ_CST);
        __atomic_add_fetch(&s->processed, 1, __ATOMIC_RELAXED);
        wq_done(s->q, key);
        free(key);
    }
    return NULL;
}

static void *wqs_producer(void *arg) {
    wqs_state *s = arg;
    unsigned seed = __atomic_fetch_add(&s->seed, 104729, __ATOMIC_RELAXED);
    char key[32];
    for (int n = 0; n < WQS_ADDS_PER_PRODUCER; n++) {
        int i = (int)(rand_r(&seed) % WQS_KEYS);
        snprintf(key, sizeof key, "ns/key-%d", i);
        __atomic_add_fetch(&s->add_gen[i], 1, __ATOMIC_SEQ_CST);
        if (n % 50 == 0) wq_add_after(s->q, key, 1 + rand_r(&seed) % 3);
        else wq_add(s->q, key);
        if (n % 256 == 0) sched_yield();
    }
    return NULL;
}

TEST(workqueue_stress_no_key_in_two_workers_and_no_lost_add) {
    static wqs_state s;
    memset(&s, 0, sizeof s);
    s.q = wqt_new(NULL);
    REQUIRE(s.q);
    s.readd_budget = 3000;
    s.seed = 12345;
    double t0 = wc_now_seconds();
    pthread_t workers[WQS_WORKERS], producers[WQS_PRODUCERS];
    for (int i = 0; i < WQS_WORKERS; i++) REQUIRE(pthread_create(&workers[i], NULL, wqs_worker, &s) == 0);
    for (int i = 0; i < WQS_PRODUCERS; i++) REQUIRE(pthread_create(&producers[i], NULL, wqs_producer, &s) == 0);
    for (int i = 0; i < WQS_PRODUCERS; i++) pthread_join(producers[i], NULL);
    /* Wait for quiescence: nothing ready, processing or waiting. Bounded, so a lost wakeup
     * fails the test instead of hanging it. */
    int quiet = 0;
    while (wc_now_seconds() - t0 < 2.0) {
        wq_counters c;
        wq_stats(s.q, &c);
        if (c.depth == 0 && c.processing == 0 && c.waiting == 0) {
            quiet = 1;
            break;
        }
        wc_sleep_ms(2);
    }
    CHECK(quiet);
    CHECK(wqt_invariants_ok(s.q));
    CHECK_INT_EQ(wq_shutdown_drain(s.q, 1000), 0);
    int joined = 1;
    for (int i = 0; i < WQS_WORKERS; i++) joined &= wqt_join(workers[i], 2000);
    REQUIRE(joined); /* shutdown woke every idle worker (else they are abandoned, q leaks) */
    double dt = wc_now_seconds() - t0;
    CHECK(dt < 2.0);
    int max_conc = 0, lost = 0, never = 0;
    for (int i = 0; i < WQS_KEYS; i++) {
        if (s.max_active[i] > max_conc) max_conc = s.max_active[i];
        if (s.seen_gen[i] != s.add_gen[i]) lost++;
        if (s.max_active[i] == 0) never++;
    }
    CHECK_INT_EQ(max_conc, 1);
    CHECK_INT_EQ(lost, 0);
    CHECK_INT_EQ(never, 0);
    /* Dedup merged a good share of the adds, and every add was either processed or merged. */
    wq_counters c;
    wq_stats(s.q, &c);
    CHECK(s.processed > WQS_KEYS);
    CHECK((uint64_t)s.processed == c.adds);
    CHECK(c.adds <= (uint64_t)(WQS_PRODUCERS * WQS_ADDS_PER_PRODUCER + 3000));
    wq_free(s.q);
}

TEST(workqueue_add_after_waits_for_its_delay) {
    wq *q = wqt_new(NULL);
    REQUIRE(q);
    char *none = NULL;
    int64_t t0 = wc_now_ms();
    wq_add_after(q, "ns/d", 150);
    CHECK_INT_EQ(wq_len(q), 0);
    wq_counters c;
    wq_stats(q, &c);
    CHECK_INT_EQ(c.waiting, 1);
    CHECK_INT_EQ(wq_get_timed(q, &none, 50), WQ_TIMEOUT);
    CHECK(wc_now_ms() - t0 < 150 || wq_len(q) == 1); /* on a stalled machine it may be due */
    char *k = wqt_get(q, 2000);
    int64_t dt = wc_now_ms() - t0;
    CHECK_STR_EQ(k, "ns/d");
    CHECK(dt >= 150);
    CHECK(dt < 1500);
    if (k) wq_done(q, k);
    free(k);

    /* The earlier of two delays wins, whichever came first. */
    t0 = wc_now_ms();
    wq_add_after(q, "ns/e", 10000);
    wq_add_after(q, "ns/e", 60);
    wq_add_after(q, "ns/f", 60);
    wq_add_after(q, "ns/f", 10000);
    wq_stats(q, &c);
    CHECK_INT_EQ(c.waiting, 2);
    char *e1 = wqt_get(q, 2000), *e2 = wqt_get(q, 2000);
    dt = wc_now_ms() - t0;
    CHECK_STR_EQ(e1, "ns/e"); /* equal due times come out in add order */
    CHECK_STR_EQ(e2, "ns/f");
    CHECK(dt >= 60 && dt < 1500);
    if (e1) wq_done(q, e1);
    if (e2) wq_done(q, e2);
    free(e1);
    free(e2);
    wq_stats(q, &c);
    CHECK_INT_EQ(c.waiting, 0); /* the long delays were absorbed, not left behind */

    /* Due-time order, not add order; delay <= 0 is immediate. */
    wq_add_after(q, "ns/late", 120);
    wq_add_after(q, "ns/soon", 40);
    wq_add_after(q, "ns/now", 0);
    CHECK_INT_EQ(wq_len(q), 1);
    const char *order[] = {"ns/now", "ns/soon", "ns/late"};
    for (int i = 0; i < 3; i++) {
        char *g = wqt_get(q, 2000);
        CHECK_STR_EQ(g, order[i]);
        if (g) wq_done(q, g);
        free(g);
    }
    CHECK(wqt_invariants_ok(q));
    wq_free(q);
}

typedef struct wqt_getter {
    wq *q;
    wq_status st;
    char *key;
    int64_t got_ms;
    int done;
} wqt_getter;

static void *wqt_getter_main(void *arg) {
    wqt_getter *g = arg;
    g->st = wq_get(g->q, &g->key);
    g->got_ms = wc_now_ms();
    __atomic_store_n(&g->done, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

TEST(workqueue_blocked_get_wakes_for_delay_add_and_requeue) {
    /* A worker already asleep on an empty queue must notice a delayed key added later. */
    wq *q = wqt_new(NULL);
    REQUIRE(q);
    wqt_getter g = {q, WQ_TIMEOUT, NULL, 0, 0};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, wqt_getter_main, &g) == 0);
    wc_sleep_ms(30);
    int64_t t0 = wc_now_ms();
    wq_add_after(q, "ns/w", 80);
    REQUIRE(wqt_join(t, 2000));
    CHECK_INT_EQ(g.st, WQ_OK);
    CHECK_STR_EQ(g.key, "ns/w");
    CHECK(g.got_ms - t0 >= 80);
    CHECK(g.got_ms - t0 < 1500);
    if (g.key) wq_done(q, g.key);
    free(g.key);

    /* A plain add wakes a sleeping worker. */
    g = (wqt_getter){q, WQ_TIMEOUT, NULL, 0, 0};
    REQUIRE(pthread_create(&t, NULL, wqt_getter_main, &g) == 0);
    wc_sleep_ms(30);
    wq_add(q, "ns/plain");
    REQUIRE(wqt_join(t, 2000));
    CHECK_STR_EQ(g.key, "ns/plain");
    if (g.key) wq_done(q, g.key);
    free(g.key);

    /* So does the re-queue in wq_done of a key re-added while it was processing. */
    wq_add(q, "ns/again");
    char *held = wqt_get(q, 0);
    REQUIRE(held);
    wq_add(q, "ns/again");
    g = (wqt_getter){q, WQ_TIMEOUT, NULL, 0, 0};
    REQUIRE(pthread_create(&t, NULL, wqt_getter_main, &g) == 0);
    wc_sleep_ms(30);
    CHECK(!__atomic_load_n(&g.done, __ATOMIC_SEQ_CST)); /* not handed out while held */
    wq_done(q, held);
    free(held);
    REQUIRE(wqt_join(t, 2000));
    CHECK_STR_EQ(g.key, "ns/again");
    if (g.key) wq_done(q, g.key);
    free(g.key);
    wq_free(q);
}

TEST(workqueue_rate_limited_add_backs_off_and_forget_resets) {
    wq_limits l = {40, 1000, 0, 0}; /* no bucket: only the per-key backoff */
    wq *q = wqt_new(&l);
    REQUIRE(q);
    int64_t want[] = {40, 80, 160};
    for (int i = 0; i < 3; i++) {
        int64_t t0 = wc_now_ms();
        wq_add_rate_limited(q, "ns/r");
        CHECK_INT_EQ(wq_num_requeues(q, "ns/r"), i + 1);
        char *k = wqt_get(q, 3000);
        int64_t dt = wc_now_ms() - t0;
        CHECK_STR_EQ(k, "ns/r");
        CHECK(dt >= want[i]);
        CHECK(dt < want[i] + 1000);
        if (k) wq_done(q, k);
        free(k);
    }
    wq_counters c;
    wq_stats(q, &c);
    CHECK_INT_EQ(c.keys, 1); /* the failure count keeps the entry alive */
    wq_forget(q, "ns/r");
    CHECK_INT_EQ(wq_num_requeues(q, "ns/r"), 0);
    wq_stats(q, &c);
    CHECK_INT_EQ(c.keys, 0);
    /* After forget the key starts at the base delay again. */
    int64_t t0 = wc_now_ms();
    wq_add_rate_limited(q, "ns/r");
    char *none = NULL;
    CHECK_INT_EQ(wq_get_timed(q, &none, 10), WQ_TIMEOUT);
    char *k = wqt_get(q, 3000);
    int64_t dt = wc_now_ms() - t0;
    CHECK_STR_EQ(k, "ns/r");
    CHECK(dt >= 40 && dt < 1000);
    if (k) wq_done(q, k);
    free(k);
    CHECK_INT_EQ(wq_num_requeues(q, "ns/unknown"), 0);
    wq_forget(q, "ns/unknown"); /* harmless */
    wq_free(q);
}

TEST(workqueue_shutdown_wakes_blocked_getters) {
    wq *q = wqt_new(NULL);
    REQUIRE(q);
    enum { G = 3 };
    wqt_getter g[G];
    pthread_t t[G];
    for (int i = 0; i < G; i++) {
        g[i] = (wqt_getter){q, WQ_OK, NULL, 0, 0};
        REQUIRE(pthread_create(&t[i], NULL, wqt_getter_main, &g[i]) == 0);
    }
    wc_sleep_ms(50);
    for (int i = 0; i < G; i++) CHECK(!__atomic_load_n(&g[i].done, __ATOMIC_SEQ_CST)); /* really blocked */
    wq_shutdown(q);
    int joined = 1;
    for (int i = 0; i < G; i++) joined &= wqt_join(t[i], 2000);
    REQUIRE(joined);
    for (int i = 0; i < G; i++) {
        CHECK_INT_EQ(g[i].st, WQ_SHUTDOWN);
        CHECK(g[i].key == NULL);
    }
    /* After shutdown: adds are refused and gets return at once. */
    CHECK_INT_EQ(wq_add(q, "ns/late"), WQ_SHUTDOWN);
    CHECK_INT_EQ(wq_add_after(q, "ns/late", 10), WQ_SHUTDOWN);
    CHECK_INT_EQ(wq_add_rate_limited(q, "ns/late"), WQ_SHUTDOWN);
    CHECK_INT_EQ(wq_num_requeues(q, "ns/late"), 0);
    char *k = NULL;
    CHECK_INT_EQ(wq_get(q, &k), WQ_SHUTDOWN);
    CHECK(k == NULL);
    wq_shutdown(q); /* idempotent */
    wq_free(q);

    /* Keys still queued at shutdown are not handed out: stop taking work (SPEC §10). */
    q = wqt_new(NULL);
    REQUIRE(q);
    wq_add(q, "ns/a");
    wq_add_after(q, "ns/b", 1);
    wq_shutdown(q);
    wc_sleep_ms(5);
    CHECK_INT_EQ(wq_get_timed(q, &k, 0), WQ_SHUTDOWN);
    wq_free(q); /* frees the queued and waiting keys */
}

typedef struct wqt_worker {
    wq *q;
    int64_t hold_ms; /* < 0: hold until release is set */
    int release;
    int holding;
    int finished;
} wqt_worker;

static void *wqt_worker_main(void *arg) {
    wqt_worker *w = arg;
    char *key = NULL;
    if (wq_get_timed(w->q, &key, 2000) != WQ_OK) return NULL;
    __atomic_store_n(&w->holding, 1, __ATOMIC_SEQ_CST);
    if (w->hold_ms >= 0) {
        wc_sleep_ms(w->hold_ms);
    } else {
        int64_t give_up = wc_now_ms() + 5000; /* never hang the run */
        while (!__atomic_load_n(&w->release, __ATOMIC_SEQ_CST) && wc_now_ms() < give_up) wc_sleep_ms(1);
    }
    __atomic_store_n(&w->finished, 1, __ATOMIC_SEQ_CST);
    wq_done(w->q, key);
    free(key);
    return NULL;
}

static int wqt_wait_flag(int *flag, int64_t timeout_ms) {
    int64_t end = wc_now_ms() + timeout_ms;
    while (!__atomic_load_n(flag, __ATOMIC_SEQ_CST)) {
        if (wc_now_ms() >= end) return 0;
        wc_sleep_ms(1);
    }
    return 1;
}

TEST(workqueue_drain_waits_for_in_flight_work) {
    wq *q = wqt_new(NULL);
    REQUIRE(q);
    wq_add(q, "ns/busy");
    wq_add(q, "ns/queued"); /* never taken: drain must not wait for it */
    wqt_worker w = {q, 150, 0, 0, 0};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, wqt_worker_main, &w) == 0);
    REQUIRE(wqt_wait_flag(&w.holding, 2000));
    int64_t t0 = wc_now_ms();
    size_t left = wq_shutdown_drain(q, 5000);
    int64_t dt = wc_now_ms() - t0;
    CHECK_INT_EQ(left, 0);
    CHECK(__atomic_load_n(&w.finished, __ATOMIC_SEQ_CST)); /* drain returned after the work */
    CHECK(dt < 3000);
    REQUIRE(wqt_join(t, 2000));
    /* Nothing in flight: drain returns at once. */
    t0 = wc_now_ms();
    CHECK_INT_EQ(wq_shutdown_drain(q, 5000), 0);
    CHECK(wc_now_ms() - t0 < 1000);
    wq_free(q);
}

TEST(workqueue_drain_times_out_on_a_stuck_worker) {
    wq *q = wqt_new(NULL);
    REQUIRE(q);
    wq_add(q, "ns/stuck");
    wqt_worker w = {q, -1, 0, 0, 0};
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, wqt_worker_main, &w) == 0);
    REQUIRE(wqt_wait_flag(&w.holding, 2000));
    int64_t t0 = wc_now_ms();
    size_t left = wq_shutdown_drain(q, 100);
    int64_t dt = wc_now_ms() - t0;
    CHECK_INT_EQ(left, 1);
    CHECK(dt >= 100);
    CHECK(dt < 1500);
    CHECK(!__atomic_load_n(&w.finished, __ATOMIC_SEQ_CST));
    /* The late wq_done after shutdown is still accepted. */
    __atomic_store_n(&w.release, 1, __ATOMIC_SEQ_CST);
    REQUIRE(wqt_join(t, 6000));
    wq_counters c;
    wq_stats(q, &c);
    CHECK_INT_EQ(c.processing, 0);
    wq_free(q);
}

TEST(workqueue_stats_counters_move) {
    wq_limits l = {100, 1000, 0, 0}; /* long enough that the retry is still waiting when read */
    wq *q = wqt_new(&l);
    REQUIRE(q);
    wq_counters c;
    wq_stats(q, &c);
    CHECK(c.adds == 0 && c.retries == 0 && c.depth == 0 && c.processing == 0 && c.waiting == 0);
    wq_add(q, "ns/a");
    wq_add(q, "ns/a"); /* merged: not an add */
    wq_add(q, "ns/b");
    wq_stats(q, &c);
    CHECK_INT_EQ(c.adds, 2);
    CHECK_INT_EQ(c.depth, 2);
    char *k = wqt_get(q, 0);
    CHECK_STR_EQ(k, "ns/a");
    wq_stats(q, &c);
    CHECK_INT_EQ(c.depth, 1);
    CHECK_INT_EQ(c.processing, 1);
    wq_add_after(q, "ns/c", 60000);
    wq_add_rate_limited(q, "ns/a"); /* the reconcile of a failed */
    wq_stats(q, &c);
    CHECK_INT_EQ(c.retries, 1);
    CHECK_INT_EQ(c.waiting, 2);
    CHECK_INT_EQ(c.adds, 2); /* a delayed add counts when it becomes due */
    if (k) wq_done(q, k);
    free(k);
    char *a2 = NULL;
    wq_get_timed(q, &a2, 0); /* ns/b */
    CHECK_STR_EQ(a2, "ns/b");
    free(a2);
    char *a3 = wqt_get(q, 2000); /* ns/a after its 100 ms backoff */
    CHECK_STR_EQ(a3, "ns/a");
    free(a3);
    wq_stats(q, &c);
    CHECK_INT_EQ(c.adds, 3);
    CHECK_INT_EQ(c.processing, 2);
    CHECK_INT_EQ(c.waiting, 1);
    CHECK_INT_EQ(c.keys, 3);
    wq_done(q, "ns/a");
    wq_done(q, "ns/b");
    wq_forget(q, "ns/a");
    wq_stats(q, &c);
    CHECK_INT_EQ(c.processing, 0);
    CHECK_INT_EQ(c.keys, 1); /* only the waiting ns/c */
    CHECK(wqt_invariants_ok(q));
    wq_free(q);
}
