/*
 * mem.c — the process-wide allocation policy.
 *
 * Running out of memory in a controller has no useful recovery: every caller would turn it into
 * "abort the reconcile", and a half-done write sequence is worse than a restart that resumes
 * from the API server's state. So allocation failure ends the process with a message.
 */

static void wc_oom(void) {
    static const char msg[] = "worker-controller: out of memory\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    abort();
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) wc_oom();
    return p;
}

static void *xcalloc(size_t n, size_t m) {
    void *p = calloc(n ? n : 1, m ? m : 1);
    if (!p) wc_oom();
    return p;
}

static void *xrealloc(void *p, size_t n) {
    p = realloc(p, n ? n : 1);
    if (!p) wc_oom();
    return p;
}

static char *xstrdup(const char *s) {
    if (!s) return NULL;
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

static char *xstrndup(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/* NULL-safe string equality: NULL and "" are the same (an absent field and an empty one). */
static int str_eq(const char *a, const char *b) { return strcmp(a ? a : "", b ? b : "") == 0; }

/* Overwrites memory that held a secret before it is released, so a later heap dump or a
 * use-after-free bug cannot leak it. volatile keeps the compiler from dropping the stores. */
static void secure_zero(void *p, size_t n) {
    volatile unsigned char *v = p;
    while (n--) *v++ = 0;
}
