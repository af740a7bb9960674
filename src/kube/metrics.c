/*
 * metrics.c — the few Prometheus primitives the controller exports (text format 0.0.4), with
 * controller-runtime's metric names and histogram buckets so existing dashboards work.
 *
 * Counters are atomics. A histogram is a fixed array of atomic bucket counts plus a sum kept
 * as the bits of a double, updated by compare-and-swap: an observation takes no lock and
 * allocates nothing, so a reconcile can time itself without contending with a scrape.
 * Rendering happens at scrape time from these and from live state (queue, caches).
 */

/* controller-runtime's controller_runtime_reconcile_time_seconds buckets (v0.15+). */
static const double METRICS_RECONCILE_BUCKETS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35,
                                                   0.4,   0.45, 0.5,   0.6,  0.7, 0.8,  0.9, 1.0,  1.25, 1.5,
                                                   1.75,  2.0,  2.5,   3.0,  3.5, 4.0,  4.5, 5,    6,    7,
                                                   8,     9,    10,    15,   20,  25,   30,  40,   50,   60};
/* The same, continued to 15 minutes: a Worker's startup and a sandbox claim can wait minutes
 * (a claim times out after HICLAW_SANDBOX_CLAIM_TIMEOUT, 5 m by default). */
static const double METRICS_LONG_BUCKETS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45,
                                              0.5,   0.6,  0.7,   0.8,  0.9, 1.0,  1.25, 1.5, 1.75, 2.0, 2.5, 3.0,
                                              3.5,   4.0,  4.5,   5,    6,   7,    8,    9,   10,   15,  20,  25,
                                              30,    40,   50,    60,   90,  120,  180,  240, 300,  450, 600, 900};
#define METRICS_COUNT_OF(a) (sizeof(a) / sizeof *(a))
#define METRICS_MAX_BUCKETS 48

typedef struct metrics_histogram {
    const double *le;                          /* upper bounds, ascending; NULL: the reconcile buckets */
    size_t nle;
    atomic_long counts[METRICS_MAX_BUCKETS + 1]; /* per bucket, not cumulative; last: +Inf */
    _Atomic uint64_t sum_bits;                 /* the sum, as a double's bits */
} metrics_histogram;

/* Chooses the buckets (before the first observation); a zeroed histogram has the reconcile ones. */
static void metrics_histogram_init(metrics_histogram *h, const double *le, size_t n) {
    assert(n >= 1 && n <= METRICS_MAX_BUCKETS);
    memset(h, 0, sizeof *h);
    h->le = le;
    h->nle = n;
}

static const double *metrics_histogram_le(const metrics_histogram *h, size_t *n) {
    if (!h->le) {
        *n = METRICS_COUNT_OF(METRICS_RECONCILE_BUCKETS);
        return METRICS_RECONCILE_BUCKETS;
    }
    *n = h->nle;
    return h->le;
}

/* Records one duration in seconds. A negative one (a wall-clock step between two timestamps)
 * or NaN counts as 0: a histogram of durations must not lose the observation, nor shrink. */
static void metrics_histogram_observe(metrics_histogram *h, double v) {
    size_t n, i = 0;
    const double *le = metrics_histogram_le(h, &n);
    if (!(v >= 0)) v = 0;
    while (i < n && v > le[i]) i++; /* le is inclusive: v == le[i] belongs to bucket i */
    atomic_fetch_add(&h->counts[i], 1);
    uint64_t old = atomic_load(&h->sum_bits), next;
    do {
        double s;
        memcpy(&s, &old, sizeof s);
        s += v;
        memcpy(&next, &s, sizeof next);
    } while (!atomic_compare_exchange_weak(&h->sum_bits, &old, next));
}

/* The # HELP and # TYPE lines of a family. */
static void metrics_family(buf *b, const char *name, const char *type, const char *help) {
    buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* The _bucket (cumulative, le), _sum and _count series of one histogram; labels ("k=\"v\"", or
 * NULL/"" for none) go before le. _count is the +Inf bucket, so the two always agree. */
static void metrics_histogram_render(buf *b, const char *name, const char *labels, metrics_histogram *h) {
    size_t n;
    const double *le = metrics_histogram_le(h, &n);
    int lab = labels && *labels;
    long cum = 0;
    for (size_t i = 0; i < n; i++) {
        cum += atomic_load(&h->counts[i]);
        buf_printf(b, "%s_bucket{%s%sle=\"%g\"} %ld\n", name, lab ? labels : "", lab ? "," : "", le[i], cum);
    }
    cum += atomic_load(&h->counts[n]);
    uint64_t bits = atomic_load(&h->sum_bits);
    double sum;
    memcpy(&sum, &bits, sizeof sum);
    buf_printf(b, "%s_bucket{%s%sle=\"+Inf\"} %ld\n", name, lab ? labels : "", lab ? "," : "", cum);
    buf_printf(b, "%s_sum%s%s%s %.9g\n", name, lab ? "{" : "", lab ? labels : "", lab ? "}" : "", sum);
    buf_printf(b, "%s_count%s%s%s %ld\n", name, lab ? "{" : "", lab ? labels : "", lab ? "}" : "", cum);
}

/* REST requests by method and status code, for rest_client_requests_total. */
#define METRICS_MAX_REST 64
typedef struct metrics_rest {
    pthread_mutex_t mu;
    struct { char method[8]; int code; long n; } rows[METRICS_MAX_REST];
    size_t nrows;
} metrics_rest;

static void metrics_rest_count(metrics_rest *m, const char *method, int code) {
    pthread_mutex_lock(&m->mu);
    size_t i = 0;
    while (i < m->nrows && !(m->rows[i].code == code && strcmp(m->rows[i].method, method) == 0)) i++;
    if (i == m->nrows && m->nrows < METRICS_MAX_REST) {
        snprintf(m->rows[i].method, sizeof m->rows[i].method, "%s", method);
        m->rows[i].code = code;
        m->rows[i].n = 0;
        m->nrows++;
    }
    if (i < m->nrows) m->rows[i].n++;
    pthread_mutex_unlock(&m->mu);
}

static void metrics_rest_render(buf *b, metrics_rest *m, const char *host) {
    buf_puts(b, "# HELP rest_client_requests_total Number of HTTP requests, partitioned by status code, method, and host.\n"
                "# TYPE rest_client_requests_total counter\n");
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->nrows; i++) {
        char code[16];
        if (m->rows[i].code > 0) snprintf(code, sizeof code, "%d", m->rows[i].code);
        else snprintf(code, sizeof code, "<error>");
        buf_printf(b, "rest_client_requests_total{code=\"%s\",host=\"%s\",method=\"%s\"} %ld\n", code, host,
                   m->rows[i].method, m->rows[i].n);
    }
    pthread_mutex_unlock(&m->mu);
}

/* process_* gauges from /proc/self, like the Go client's process collector. */
static void metrics_process_render(buf *b, double start_time) {
    long rss_pages = 0, vm_pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &vm_pages, &rss_pages) != 2) vm_pages = rss_pages = 0;
        fclose(f);
    }
    double cpu = 0;
    f = fopen("/proc/self/stat", "r");
    if (f) {
        char line[2048];
        if (fgets(line, sizeof line, f)) {
            const char *p = strrchr(line, ')'); /* comm may contain spaces */
            unsigned long utime = 0, stime = 0;
            if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) == 2)
                cpu = (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
        }
        fclose(f);
    }
    long fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) fds += e->d_name[0] != '.';
        closedir(d);
    }
    long page = sysconf(_SC_PAGESIZE);
    buf_printf(b,
               "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
               "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total %.2f\n"
               "# HELP process_resident_memory_bytes Resident memory size in bytes.\n"
               "# TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes %ld\n"
               "# HELP process_virtual_memory_bytes Virtual memory size in bytes.\n"
               "# TYPE process_virtual_memory_bytes gauge\nprocess_virtual_memory_bytes %ld\n"
               "# HELP process_open_fds Number of open file descriptors.\n"
               "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n"
               "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n"
               "# TYPE process_start_time_seconds gauge\nprocess_start_time_seconds %.3f\n",
               cpu, rss_pages * page, vm_pages * page, fds, start_time);
}
