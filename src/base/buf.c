/*
 * buf.c — growable byte buffer, always NUL-terminated so it can be used as a C string.
 *
 * A buffer may carry a limit: appends beyond it fail instead of growing, which is how response
 * bodies and watch events stay bounded no matter what a server sends.
 */

typedef struct buf {
    char *data;   /* NULL until the first append */
    size_t len;
    size_t cap;
    size_t limit; /* 0 = unlimited */
} buf;

#define BUF_INIT {NULL, 0, 0, 0}

static void buf_free(buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* Frees a buffer that held secret material, wiping it first. */
static void buf_free_secret(buf *b) {
    if (b->data) secure_zero(b->data, b->cap);
    buf_free(b);
}

static void buf_reset(buf *b) {
    b->len = 0;
    if (b->data) b->data[0] = '\0';
}

static const char *buf_cstr(const buf *b) {
    assert(!b->data || (b->len < b->cap && b->data[b->len] == '\0')); /* always NUL-terminated */
    return b->data ? b->data : "";
}

/* Makes room for n more bytes. Returns -1 (nothing changed) when the limit would be passed. */
static int buf_reserve(buf *b, size_t n) {
    if (b->limit && b->len + n > b->limit) return -1;
    if (b->len + n + 1 <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1) cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
    return 0;
}

static int buf_append(buf *b, const void *p, size_t n) {
    if (buf_reserve(b, n) < 0) return -1;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

static int buf_puts(buf *b, const char *s) { return buf_append(b, s, strlen(s)); }

static int buf_putc(buf *b, char c) { return buf_append(b, &c, 1); }

static int buf_vprintf(buf *b, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return -1;
    if (buf_reserve(b, (size_t)n) < 0) return -1;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

__attribute__((format(printf, 2, 3)))
static int buf_printf(buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

/* Hands the bytes to the caller (who must free them) and leaves the buffer empty. */
static char *buf_steal(buf *b) {
    char *p = b->data ? b->data : xstrdup("");
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

/* Appends s as the body of a JSON string (without the quotes), escaping what JSON requires. */
static int buf_put_json_escaped(buf *b, const char *s, size_t n) {
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int rc;
        switch (c) {
        case '"': rc = buf_append(b, "\\\"", 2); break;
        case '\\': rc = buf_append(b, "\\\\", 2); break;
        case '\n': rc = buf_append(b, "\\n", 2); break;
        case '\r': rc = buf_append(b, "\\r", 2); break;
        case '\t': rc = buf_append(b, "\\t", 2); break;
        default:
            if (c < 0x20) {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                rc = buf_append(b, u, 6);
            } else {
                rc = buf_putc(b, (char)c);
            }
        }
        if (rc < 0) return -1;
    }
    return 0;
}

static int buf_put_json_string(buf *b, const char *s) {
    if (buf_putc(b, '"') < 0 || buf_put_json_escaped(b, s, strlen(s)) < 0) return -1;
    return buf_putc(b, '"');
}
