/*
 * testhooks.c — hooks that only test builds compile in; the product binary has none.
 *
 * Failpoints (-DWC_FAILPOINTS). Crash-recovery tests need the controller to die at an exact
 * step — after writing a sandbox Worker's deps objects but before creating its claim, after
 * deleting a claim but before deleting its Sandbox — which no signal sent from outside can hit
 * reliably. A failpoint build reads WC_FAILPOINT=<name>[@<n>] once and SIGKILLs itself the
 * n-th time (default: the first) it passes the point of that name. Without -DWC_FAILPOINTS
 * FAILPOINT() expands to nothing. failpoint_armed(name) instead bends a behaviour while
 * WC_FAILPOINT names it (see its users): freeze-cache-<informer> stops an informer following
 * the API server; the break-* ones are the defects the chaos soak's invariant checker must
 * catch (test/e2e/test_chaos_invariants.py): break-switch-guard, break-duplicate-pod,
 * break-skip-cleanup, break-deps-after-claim, break-foreign-deps, break-leak-secret,
 * break-ignore-lease-loss, break-status-running.
 *
 * Sanitizer defaults (-DWC_SANITIZE_LOG="<dir>/report"). The e2e harness gives the controller
 * a scrubbed environment, so ASAN_OPTIONS would not reach it; the sanitizer runtimes ask
 * these functions for their defaults instead, and every report lands in one directory the
 * test runner checks afterwards.
 */

#ifdef WC_FAILPOINTS
static struct {
    pthread_once_t once;
    char name[64];
    long remaining; /* passes left before the kill; < 0: disarmed */
    pthread_mutex_t mu;
} g_failpoint = {PTHREAD_ONCE_INIT, "", -1, PTHREAD_MUTEX_INITIALIZER};

static void failpoint_init(void) {
    const char *spec = getenv("WC_FAILPOINT");
    if (!spec || !*spec) return;
    const char *at = strchr(spec, '@');
    size_t n = at ? (size_t)(at - spec) : strlen(spec);
    if (n >= sizeof g_failpoint.name) return;
    memcpy(g_failpoint.name, spec, n);
    g_failpoint.name[n] = '\0';
    long count = at ? strtol(at + 1, NULL, 10) : 1;
    g_failpoint.remaining = count > 0 ? count : 1;
}

static void failpoint(const char *name) {
    pthread_once(&g_failpoint.once, failpoint_init);
    if (g_failpoint.remaining < 0 || strcmp(name, g_failpoint.name) != 0) return;
    pthread_mutex_lock(&g_failpoint.mu);
    int fire = --g_failpoint.remaining == 0;
    pthread_mutex_unlock(&g_failpoint.mu);
    if (!fire) return;
    /* Unbuffered and async-signal-safe on purpose: the test reads this line after the kill. */
    char line[128];
    int len = snprintf(line, sizeof line, "failpoint %s: SIGKILL\n", name);
    if (len > 0 && write(2, line, (size_t)len) < 0) { /* nothing to do: we are about to die */ }
    raise(SIGKILL);
}
#define FAILPOINT(name) failpoint(name)

/* A behaviour failpoint: true while WC_FAILPOINT names it (no count, no kill). It bends one
 * behaviour for a test that needs a state the real components will not produce on demand — a
 * cache that stopped following the API server, say — and never exists in the product. */
static int failpoint_armed(const char *name) {
    pthread_once(&g_failpoint.once, failpoint_init);
    return g_failpoint.name[0] && strcmp(name, g_failpoint.name) == 0;
}
#else
#define FAILPOINT(name) ((void)0)
#endif

#ifdef WC_SANITIZE_LOG
const char *__asan_default_options(void);
const char *__ubsan_default_options(void);
const char *__asan_default_options(void) {
    return "detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=1:strict_string_checks=1:log_path=" WC_SANITIZE_LOG;
}
const char *__ubsan_default_options(void) {
    return "print_stacktrace=1:halt_on_error=1:log_path=" WC_SANITIZE_LOG;
}
#endif
