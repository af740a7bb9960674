/*
 * metrics.c — the few Prometheus primitives the controller exports (text format 0.0.4), with
 * controller-runtime's metric names and histogram buckets so existing dashboards work.
 *
 * Counters are atomics; a histogram is a fixed bucket array of atomics plus a sum under a
 * mutex. Rendering happens at scrape time from these and from live state (queue, caches).
 */

static const double METRICS_RECONCILE_BUCKETS[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35,
                                                   0.4,   0.45, 0.5,   0.6,  0.7, 0.8,  0.9, 1.0,  1.25, 1.5,
                                                   1.75,  2.0,  2.5,   3.0,  3.5, 4.0,  4.5, 5,    6,    7,
                                                   8,     9,    10,    15,   20,  25,   30,  40,   50,   60};
#define METRICS_NBUCKETS (sizeof METRICS_RECONCILE_BUCKETS / sizeof *METRICS_RECONCILE_BUCKETS)

typedef struct metrics_histogram {
    atomic_long counts[METRICS_NBUCKETS + 1]; /* last: +Inf */
    pthread_mutex_t mu;
    double sum;
    long count;
} metrics_histogram;

static void metrics_histogram_observe(metrics_histogram *h, double v) {
    size_t i = 0;
    while (i < METRICS_NBUCKETS && v > METRICS_RECONCILE_BUCKETS[i]) i++;
    atomic_fetch_add(&h->counts[i], 1);
    pthread_mutex_lock(&h->mu);
    h->sum += v;
    h->count++;
    pthread_mutex_unlock(&h->mu);
}

static void metrics_histogram_render(buf *b, const char *name, const char *labels, metrics_histogram *h) {
    long cum = 0;
    for (size_t i = 0; i < METRICS_NBUCKETS; i++) {
        cum += atomic_load(&h->counts[i]);
        buf_printf(b, "%s_bucket{%s,le=\"%g\"} %ld\n", name, labels, METRICS_RECONCILE_BUCKETS[i], cum);
    }
    cum += atomic_load(&h->counts[METRICS_NBUCKETS]);
    pthread_mutex_lock(&h->mu);
    double sum = h->sum;
    pthread_mutex_unlock(&h->mu);
    buf_printf(b, "%s_bucket{%s,le=\"+Inf\"} %ld\n%s_sum{%s} %.9g\n%s_count{%s} %ld\n", name, labels, cum, name, labels,
               sum, name, labels, cum);
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
