/*
 * watch.c — incremental decoder for Kubernetes watch streams.
 *
 * A watch response is newline-delimited JSON, one {"type": ..., "object": ...} per line, but
 * the bytes arrive in chunks of any size: a chunk can end inside a line, inside a UTF-8
 * sequence, or carry several events. The decoder is a small state machine over a line buffer:
 * bytes accumulate until a newline, then the line is parsed and handed to the caller. Memory is
 * bounded by max_event: a line that grows past it is an error (the informer then restarts the
 * watch), never an unbounded allocation.
 */

typedef enum kube_watch_type {
    KUBE_WATCH_ADDED,
    KUBE_WATCH_MODIFIED,
    KUBE_WATCH_DELETED,
    KUBE_WATCH_BOOKMARK,
    KUBE_WATCH_ERROR, /* object is a metav1.Status; 410 Gone means "relist" */
} kube_watch_type;

typedef struct kube_watch_event {
    kube_watch_type type;
    const cJSON *object;   /* owned by the decoder; valid only during the callback */
    int status_code;       /* ERROR events: Status.code (410 = expired resourceVersion) */
    const char *reason;    /* ERROR events: Status.reason, e.g. "Expired" */
    const char *message;   /* ERROR events: Status.message */
} kube_watch_event;

/* Returning non-zero from the callback stops decoding; feed() then returns -1 with that code
 * recorded in err (the callback fills err itself if it wants a message). */
typedef int (*kube_watch_handler)(void *ud, const kube_watch_event *ev, wc_err *err);

#define KUBE_WATCH_DEFAULT_MAX_EVENT (8u << 20) /* an object can be up to ~1.5 MiB in etcd */

typedef struct kube_watch_decoder {
    buf line;
    size_t max_event;
    kube_watch_handler handler;
    void *ud;
    uint64_t events; /* decoded so far, for tests and metrics */
    json_scratch scratch; /* each event's tree lives here until its handler returns */
} kube_watch_decoder;

static void kube_watch_decoder_init(kube_watch_decoder *d, size_t max_event, kube_watch_handler h, void *ud) {
    memset(d, 0, sizeof *d);
    d->max_event = max_event ? max_event : KUBE_WATCH_DEFAULT_MAX_EVENT;
    d->handler = h;
    d->ud = ud;
    json_scratch_init(&d->scratch);
}

static void kube_watch_decoder_free(kube_watch_decoder *d) {
    buf_free(&d->line);
    json_scratch_free(&d->scratch);
}

static int kube_watch_parse_type(const char *s, kube_watch_type *t) {
    static const struct { const char *name; kube_watch_type type; } types[] = {
        {"ADDED", KUBE_WATCH_ADDED},       {"MODIFIED", KUBE_WATCH_MODIFIED},
        {"DELETED", KUBE_WATCH_DELETED},   {"BOOKMARK", KUBE_WATCH_BOOKMARK},
        {"ERROR", KUBE_WATCH_ERROR},
    };
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        if (strcmp(s, types[i].name) == 0) { *t = types[i].type; return 0; }
    return -1;
}

/* Parses one complete line and dispatches it. */
static int kube_watch_dispatch(kube_watch_decoder *d, const char *line, size_t n, wc_err *err) {
    /* Blank lines (keep-alives, a trailing "\r") carry no event. */
    size_t i = 0;
    while (i < n && isspace((unsigned char)line[i])) i++;
    if (i == n) return 0;
    json_scratch_begin(&d->scratch);
    cJSON *root = cJSON_ParseWithLength(line, n);
    json_scratch_pause(&d->scratch);
    if (!root || !cJSON_IsObject(root)) {
        json_scratch_end(&d->scratch);
        return err_set(err, WC_EPARSE, "watch: event %" PRIu64 " is not a JSON object", d->events + 1);
    }
    const cJSON *type = json_get(root, "type");
    const cJSON *object = json_get(root, "object");
    kube_watch_event ev = {0};
    if (!cJSON_IsString(type) || kube_watch_parse_type(type->valuestring, &ev.type) < 0) {
        json_scratch_end(&d->scratch);
        return err_set(err, WC_EPARSE, "watch: event %" PRIu64 " has no known type", d->events + 1);
    }
    if (!cJSON_IsObject(object)) {
        json_scratch_end(&d->scratch);
        return err_set(err, WC_EPARSE, "watch: event %" PRIu64 " has no object", d->events + 1);
    }
    ev.object = object;
    if (ev.type == KUBE_WATCH_ERROR) {
        const cJSON *code = json_get(object, "code");
        const cJSON *reason = json_get(object, "reason");
        const cJSON *message = json_get(object, "message");
        ev.status_code = cJSON_IsNumber(code) ? code->valueint : 0;
        ev.reason = cJSON_IsString(reason) ? reason->valuestring : "";
        ev.message = cJSON_IsString(message) ? message->valuestring : "";
    }
    d->events++;
    int rc = d->handler ? d->handler(d->ud, &ev, err) : 0;
    json_scratch_end(&d->scratch);
    return rc ? -1 : 0;
}

/* Feeds a chunk of the stream. Complete lines are dispatched in order; a partial line is kept
 * for the next chunk. Returns 0, or -1 with err set (parse error, oversize event, or the
 * handler asked to stop); after an error the decoder must be reset before reuse. */
static int kube_watch_decoder_feed(kube_watch_decoder *d, const char *p, size_t n, wc_err *err) {
    while (n > 0) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        if (d->line.len + take > d->max_event)
            return err_set(err, WC_ETOOBIG, "watch: event larger than %zu bytes", d->max_event);
        if (!nl) {
            buf_append(&d->line, p, take);
            return 0;
        }
        int rc;
        if (d->line.len == 0) {
            rc = kube_watch_dispatch(d, p, take, err); /* whole line in this chunk: no copy */
        } else {
            buf_append(&d->line, p, take);
            rc = kube_watch_dispatch(d, d->line.data, d->line.len, err);
            buf_reset(&d->line);
        }
        if (rc < 0) return -1;
        p += take + 1;
        n -= take + 1;
    }
    return 0;
}

/* At end of stream: a final line without newline is still an event (servers end lines with
 * "\n", but be lenient with a clean EOF). */
static int kube_watch_decoder_finish(kube_watch_decoder *d, wc_err *err) {
    if (d->line.len == 0) return 0;
    int rc = kube_watch_dispatch(d, d->line.data, d->line.len, err);
    buf_reset(&d->line);
    return rc;
}

