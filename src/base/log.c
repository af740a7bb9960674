/*
 * log.c — one line per event, JSON or text, with redaction built in.
 *
 * Secrets are kept out of logs by three independent nets, because any single one can be
 * defeated by a careless call site:
 *   1. fields whose name says "secret" (token, password, secret, authorization, credential)
 *      never print their value — except in a line whose caller redacted every value by what
 *      it is (log_event_vetted: the configuration summary, where the table marks the secrets;
 *      a token's lifetime or a key file's path is no secret);
 *   2. every secret value the process learns (bearer token, S3 secret key, a Worker's
 *      credentials) is registered with log_register_secret() and scrubbed from every line,
 *      including free-text messages such as API error strings;
 *   3. anything shaped like a JWT ("eyJ....") or a "Bearer ..." header is scrubbed.
 * log_redact() exposes the same scrub to Events and status messages.
 */

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_JSON, LOG_FORMAT_TEXT };

#define LOG_REDACTED "[REDACTED]"
#define LOG_SECRET_MIN_LEN 4   /* shorter values would scrub ordinary words */

static struct {
    pthread_mutex_t mu;
    enum log_level level;
    enum log_format format;
    int fd;
} g_log = {PTHREAD_MUTEX_INITIALIZER, LOG_INFO, LOG_FORMAT_TEXT, 2};

/* The registered secrets, guarded by g_log.mu: no cap (a fleet of sandbox Workers registers one
 * credential set each, and an evicted secret would leak again), and a scan that costs one hash
 * lookup per text position however many there are. Every secret is at least
 * LOG_SECRET_MIN_LEN (4) bytes, so they are chained by a hash of their first four bytes;
 * chains link by index + 1 (0 ends a chain) so the arrays can grow by realloc. */
typedef struct log_secret {
    char *value;
    size_t len;
    uint32_t next;
} log_secret;
static log_secret *g_log_secrets;
static size_t g_log_nsecrets, g_log_secrets_cap;
static uint32_t *g_log_buckets; /* heads, index + 1 */
static size_t g_log_nbuckets;   /* a power of two, >= g_log_nsecrets */

static size_t log_prefix_bucket(const char *p, size_t nbuckets) {
    uint32_t v;
    memcpy(&v, p, 4);
    v *= 2654435761u;
    v ^= v >> 15;
    return v & (nbuckets - 1);
}

static void log_secrets_rehash(size_t nbuckets) {
    free(g_log_buckets);
    g_log_buckets = xcalloc(nbuckets, sizeof *g_log_buckets);
    g_log_nbuckets = nbuckets;
    for (size_t i = 0; i < g_log_nsecrets; i++) {
        size_t b = log_prefix_bucket(g_log_secrets[i].value, nbuckets);
        g_log_secrets[i].next = g_log_buckets[b];
        g_log_buckets[b] = (uint32_t)(i + 1);
    }
}

static const char *log_level_name(enum log_level l) {
    switch (l) {
    case LOG_DEBUG: return "debug";
    case LOG_INFO: return "info";
    case LOG_WARN: return "warn";
    case LOG_ERROR: return "error";
    }
    return "info";
}

static int log_parse_level(const char *s, enum log_level *out) {
    static const char *names[] = {"debug", "info", "warn", "error"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0) { *out = (enum log_level)i; return 0; }
    if (strcasecmp(s, "warning") == 0) { *out = LOG_WARN; return 0; }
    return -1;
}

static int log_parse_format(const char *s, enum log_format *out) {
    if (strcasecmp(s, "json") == 0) { *out = LOG_FORMAT_JSON; return 0; }
    if (strcasecmp(s, "text") == 0) { *out = LOG_FORMAT_TEXT; return 0; }
    return -1;
}

static void log_configure(enum log_format format, enum log_level level, int fd) {
    pthread_mutex_lock(&g_log.mu);
    g_log.format = format;
    g_log.level = level;
    g_log.fd = fd;
    pthread_mutex_unlock(&g_log.mu);
}

static int log_enabled(enum log_level level) { return level >= g_log.level; }

/* The reconcile a thread is working on: every line it logs carries it as reconcileID, so one
 * reconcile's lines can be found together (controller-runtime does the same). */
static __thread char log_reconcile_id[24];

static void log_set_reconcile_id(const char *id) {
    snprintf(log_reconcile_id, sizeof log_reconcile_id, "%s", id ? id : "");
}

static int is_b64url(char c);

/* A complete JWT (header.payload[.signature], base64url): net 3 scrubs these by shape anywhere,
 * so registering them too would only cost memory (~1 KiB per sandbox Worker's token). */
static int log_is_jwt(const char *v, size_t n) {
    if (n < 16 || memcmp(v, "eyJ", 3) != 0) return 0;
    size_t dots = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '.') {
            if (++dots > 2) return 0;
        } else if (!is_b64url(v[i])) {
            return 0;
        }
    }
    return dots >= 1;
}

/* Remembers a secret value so it is scrubbed from every later log line and Event. Idempotent. */
static void log_register_secret(const char *value) {
    if (!value) return;
    size_t n = strlen(value);
    /* Only the first line matters for scrubbing tokens read from files with a trailing newline. */
    while (n && (value[n - 1] == '\n' || value[n - 1] == '\r' || value[n - 1] == ' ')) n--;
    if (n < LOG_SECRET_MIN_LEN || log_is_jwt(value, n)) return;
    pthread_mutex_lock(&g_log.mu);
    if (g_log_nbuckets) {
        for (uint32_t i = g_log_buckets[log_prefix_bucket(value, g_log_nbuckets)]; i; i = g_log_secrets[i - 1].next)
            if (g_log_secrets[i - 1].len == n && memcmp(g_log_secrets[i - 1].value, value, n) == 0) {
                pthread_mutex_unlock(&g_log.mu);
                return;
            }
    }
    if (g_log_nsecrets == g_log_secrets_cap) {
        g_log_secrets_cap = g_log_secrets_cap ? g_log_secrets_cap * 2 : 64;
        g_log_secrets = xrealloc(g_log_secrets, g_log_secrets_cap * sizeof *g_log_secrets);
    }
    log_secret *sec = &g_log_secrets[g_log_nsecrets++];
    sec->value = xstrndup(value, n);
    sec->len = n;
    if (g_log_nsecrets > g_log_nbuckets) {
        log_secrets_rehash(g_log_nbuckets ? g_log_nbuckets * 2 : 64); /* links the new one too */
    } else {
        size_t b = log_prefix_bucket(sec->value, g_log_nbuckets);
        sec->next = g_log_buckets[b];
        g_log_buckets[b] = (uint32_t)g_log_nsecrets;
    }
    pthread_mutex_unlock(&g_log.mu);
}

static int log_field_is_secret(const char *name) {
    static const char *words[] = {"token", "password", "secret", "authorization", "credential",
                                  "passwd", "apikey", "api_key", "private"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
        if (strcasestr(name, words[i])) return 1;
    return 0;
}

static int is_b64url(char c) {
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '=';
}

/* Rewrites `in` into `out` with registered secrets, JWT-shaped strings and bearer credentials
 * replaced by [REDACTED]. Caller holds no lock. */
static void log_redact_into(buf *out, const char *in) {
    size_t n = strlen(in);
    pthread_mutex_lock(&g_log.mu);
    for (size_t i = 0; i < n;) {
        size_t skip = 0;
        if (g_log_nbuckets && n - i >= LOG_SECRET_MIN_LEN) /* the longest registered secret here */
            for (uint32_t s = g_log_buckets[log_prefix_bucket(in + i, g_log_nbuckets)]; s; s = g_log_secrets[s - 1].next) {
                const log_secret *sec = &g_log_secrets[s - 1];
                if (sec->len > skip && sec->len <= n - i && memcmp(in + i, sec->value, sec->len) == 0) skip = sec->len;
            }
        if (!skip && n - i >= 10 && memcmp(in + i, "eyJ", 3) == 0) {
            /* header.payload[.signature] of a JWT */
            size_t j = i, dots = 0;
            while (j < n && (is_b64url(in[j]) || (in[j] == '.' && dots < 2))) {
                if (in[j] == '.') dots++;
                j++;
            }
            if (dots >= 1 && j - i >= 16) skip = j - i;
        }
        if (!skip && n - i > 7 && strncasecmp(in + i, "bearer ", 7) == 0) {
            size_t j = i + 7;
            while (j < n && !isspace((unsigned char)in[j]) && in[j] != '"' && in[j] != ',') j++;
            if (j > i + 7) {
                buf_append(out, in + i, 7);
                buf_puts(out, LOG_REDACTED);
                i = j;
                continue;
            }
        }
        if (skip) {
            buf_puts(out, LOG_REDACTED);
            i += skip;
        } else {
            buf_putc(out, in[i++]);
        }
    }
    pthread_mutex_unlock(&g_log.mu);
}

/* Redacts a string for use outside logs (Event notes, status messages). Caller frees. */
static char *log_redact(const char *in) {
    buf b = BUF_INIT;
    log_redact_into(&b, in ? in : "");
    return buf_steal(&b);
}

static int text_needs_quotes(const char *s) {
    if (!*s) return 1;
    for (; *s; s++)
        if (isspace((unsigned char)*s) || *s == '"' || *s == '=' || (unsigned char)*s < 0x20) return 1;
    return 0;
}

/* Formats one event. Fields are name/value string pairs ending with NULL. */
static void log_format_line(buf *line, enum log_format fmt, enum log_level level, int names_vetted, const char *msg,
                            va_list fields) {
    char ts[40];
    wc_rfc3339_micro(ts);
    buf clean = BUF_INIT;
    if (fmt == LOG_FORMAT_JSON) {
        buf_printf(line, "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":", ts, log_level_name(level));
        log_redact_into(&clean, msg);
        buf_put_json_string(line, buf_cstr(&clean));
    } else {
        buf_printf(line, "%s %-5s ", ts, log_level_name(level));
        log_redact_into(&clean, msg);
        buf_puts(line, buf_cstr(&clean));
    }
    for (;;) {
        const char *k = va_arg(fields, const char *);
        if (!k) break;
        const char *v = va_arg(fields, const char *);
        if (!v) continue; /* absent optional field */
        buf_reset(&clean);
        if (!names_vetted && log_field_is_secret(k)) buf_puts(&clean, LOG_REDACTED);
        else log_redact_into(&clean, v);
        if (fmt == LOG_FORMAT_JSON) {
            buf_putc(line, ',');
            buf_put_json_string(line, k);
            buf_putc(line, ':');
            buf_put_json_string(line, buf_cstr(&clean));
        } else {
            buf_printf(line, " %s=", k);
            if (text_needs_quotes(buf_cstr(&clean))) {
                buf_putc(line, '"');
                buf_put_json_escaped(line, clean.data ? clean.data : "", clean.len);
                buf_putc(line, '"');
            } else {
                buf_puts(line, buf_cstr(&clean));
            }
        }
    }
    buf_free(&clean);
    if (log_reconcile_id[0]) {
        if (fmt == LOG_FORMAT_JSON) buf_printf(line, ",\"reconcileID\":\"%s\"", log_reconcile_id);
        else buf_printf(line, " reconcileID=%s", log_reconcile_id);
    }
    buf_puts(line, fmt == LOG_FORMAT_JSON ? "}\n" : "\n");
}

static void log_vevent(enum log_level level, int names_vetted, const char *msg, va_list ap) {
    if (!log_enabled(level)) return;
    buf line = BUF_INIT;
    log_format_line(&line, g_log.format, level, names_vetted, msg, ap);
    pthread_mutex_lock(&g_log.mu);
    size_t off = 0;
    while (off < line.len) {
        ssize_t w = write(g_log.fd, line.data + off, line.len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) break;
        off += (size_t)w;
    }
    pthread_mutex_unlock(&g_log.mu);
    buf_free(&line);
}

/* log_event(LOG_INFO, "created Pod", "worker", "alice", "namespace", "ns", NULL) */
static void log_event(enum log_level level, const char *msg, ...) {
    va_list ap;
    va_start(ap, msg);
    log_vevent(level, 0, msg, ap);
    va_end(ap);
}

/* Like log_event, for a caller that redacted each value by what it is: field names do not
 * redact (registered secrets and JWT/bearer shapes are still scrubbed from every value). */
static void log_event_vetted(enum log_level level, const char *msg, ...) {
    va_list ap;
    va_start(ap, msg);
    log_vevent(level, 1, msg, ap);
    va_end(ap);
}

#define log_debug(...) log_event(LOG_DEBUG, __VA_ARGS__, NULL)
#define log_info(...) log_event(LOG_INFO, __VA_ARGS__, NULL)
#define log_warn(...) log_event(LOG_WARN, __VA_ARGS__, NULL)
#define log_error(...) log_event(LOG_ERROR, __VA_ARGS__, NULL)
