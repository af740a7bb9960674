/*
 * thread.c — a background thread that works in rounds, sleeps between them, and stops at once
 * when told: an informer's list/watch loop and the leader elector are such threads. Stopping
 * sets the flag and wakes the sleep; a request in flight is the caller's to cancel (the clients'
 * cancel flags), so the join that follows is prompt.
 */

typedef struct wc_thread {
    pthread_t id;
    int started;
    atomic_int stop;
    pthread_mutex_t mu;   /* the sleep's */
    pthread_cond_t cv;
} wc_thread;

static void wc_thread_init(wc_thread *t) {
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->cv, NULL);
}

/* 0, or -1 with err naming `what`. */
static int wc_thread_start(wc_thread *t, void *(*fn)(void *), void *arg, const char *what, wc_err *err) {
    assert(!t->started);
    int e = pthread_create(&t->id, NULL, fn, arg);
    if (e) return err_set(err, WC_EIO, "%s: pthread_create: %s", what, strerror(e));
    t->started = 1;
    return 0;
}

static int wc_thread_stopping(wc_thread *t) { return atomic_load(&t->stop); }

/* Sleeps up to ms, returning early once the thread is told to stop. */
static void wc_thread_sleep(wc_thread *t, int64_t ms) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
    pthread_mutex_lock(&t->mu);
    while (!atomic_load(&t->stop))
        if (pthread_cond_timedwait(&t->cv, &t->mu, &ts) != 0) break;
    pthread_mutex_unlock(&t->mu);
}

/* Tells the thread to stop, wakes its sleep, and waits for it to end. Idempotent. */
static void wc_thread_stop(wc_thread *t) {
    atomic_store(&t->stop, 1);
    pthread_mutex_lock(&t->mu);
    pthread_cond_broadcast(&t->cv);
    pthread_mutex_unlock(&t->mu);
    if (t->started) pthread_join(t->id, NULL);
    t->started = 0;
}

/* After wc_thread_stop (or when it never started). */
static void wc_thread_destroy(wc_thread *t) {
    assert(!t->started);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
}

/* ---- helper threads ---- */

/* pthread_create for a thread that does work for others: it starts with every signal blocked,
 * so a signal meant for the thread that takes signals (run's sigwait) never lands on it. */
static int wc_pthread_create_quiet(pthread_t *id, void *(*fn)(void *), void *arg) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int e = pthread_create(id, NULL, fn, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return e;
}
