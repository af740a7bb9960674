/*
 * err.c — errors as values.
 *
 * A failing function returns -1 and fills the caller's wc_err with a category and a message that
 * carries its context ("create SandboxClaim hiclaw-worker-alice: 422 Invalid: ..."). Callers
 * going up the stack prepend their own context with err_wrap(). Nothing below cmd/ exits.
 */

enum wc_err_code {
    WC_OK = 0,
    WC_EINVAL,   /* bad input or configuration: exit 2 at the command layer */
    WC_EIO,      /* network or file I/O */
    WC_ETLS,     /* TLS handshake or verification */
    WC_ETIMEOUT, /* a deadline passed */
    WC_EHTTP,    /* the server answered with an error status; see http_status */
    WC_EPARSE,   /* malformed data from a peer */
    WC_ETOOBIG,  /* a bound was exceeded (body size, event size) */
    WC_ENOTFOUND,
    WC_EUNSUPPORTED,
    WC_ECONFLICT, /* the thing belongs to someone else (e.g. worker-deps objects of another Worker) */
};

#define WC_ERR_MSG_MAX 1024

typedef struct wc_err {
    int code;
    int http_status; /* 0 unless code == WC_EHTTP */
    int retry_after_s; /* server's Retry-After (429/503), -1 when absent */
    char msg[WC_ERR_MSG_MAX];
} wc_err;

static void err_clear(wc_err *e) {
    if (!e) return;
    e->code = WC_OK;
    e->http_status = 0;
    e->retry_after_s = -1;
    e->msg[0] = '\0';
}

/* Formats a bounded message: what does not fit is cut off at the end, on purpose — the start
 * (the outermost context, what the operator recognises) is what must survive. */
__attribute__((format(printf, 3, 4)))
static void err_format(char *out, size_t n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

/* Sets the error and returns -1 so call sites can `return err_set(...)`. */
__attribute__((format(printf, 3, 4)))
static int err_set(wc_err *e, int code, const char *fmt, ...) {
    if (!e) return -1;
    e->code = code;
    e->http_status = 0;
    e->retry_after_s = -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

/* Prepends "context: " to the message, keeping code and status. Truncates from the end so the
 * outermost context (what the operator recognises) always survives. */
__attribute__((format(printf, 2, 3)))
static int err_wrap(wc_err *e, const char *fmt, ...) {
    if (!e) return -1;
    char ctx[WC_ERR_MSG_MAX], old[WC_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    err_format(e->msg, sizeof e->msg, "%s: %s", ctx, old);
    return -1;
}
