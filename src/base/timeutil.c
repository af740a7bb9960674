/*
 * timeutil.c — clocks. Deadlines and backoff use the monotonic clock (immune to wall-clock
 * steps); timestamps written to the API server and logs use UTC wall time.
 */

static int64_t wc_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static double wc_now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Wall-clock time, Unix seconds with a fraction: for durations measured from a timestamp the
 * API server wrote (creationTimestamp). */
static double wc_wall_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes "2026-11-23T23:08:32Z" (RFC 3339, second precision: metav1.Time's wire form). */
static void wc_rfc3339(char out[32], time_t t) {
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Writes "2026-11-23T23:08:32.123456Z" (metav1.MicroTime, used by Events and Leases). */
static void wc_rfc3339_micro(char out[40]) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char base[20]; /* "2026-11-23T23:08:32": exactly */
    strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, 40, "%s.%06ldZ", base, (long)(ts.tv_nsec / 1000));
}

/* Parses "2026-11-24T23:08:32Z" into Unix seconds; 0 when it is not one. */
static int64_t wc_rfc3339_parse(const char *s) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
    return (int64_t)timegm(&tm);
}

static void wc_sleep_ms(int64_t ms) {
    if (ms <= 0) return;
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
}
