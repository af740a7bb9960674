/* test_watch.c — the watch-stream decoder, fed a recorded stream split at every byte offset. */

typedef struct watch_log {
    buf seen;  /* "TYPE name rv|" per event, to compare decodings */
    int count;
    int stop_after; /* stop (return non-zero) after this many events; 0 = never */
} watch_log;

static int watch_log_handler(void *ud, const kube_watch_event *ev, wc_err *err) {
    watch_log *l = ud;
    static const char *names[] = {"ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"};
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(ev->object, "metadata");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(md, "name");
    const cJSON *rv = cJSON_GetObjectItemCaseSensitive(md, "resourceVersion");
    if (ev->type == KUBE_WATCH_ERROR)
        buf_printf(&l->seen, "ERROR %d %s|", ev->status_code, ev->reason);
    else
        buf_printf(&l->seen, "%s %s %s|", names[ev->type], cJSON_IsString(name) ? name->valuestring : "-",
                   cJSON_IsString(rv) ? rv->valuestring : "-");
    l->count++;
    if (l->stop_after && l->count >= l->stop_after) {
        err_set(err, WC_EINVAL, "stop requested");
        return 1;
    }
    return 0;
}

static char *load_recorded_stream(size_t *len) {
    buf b = BUF_INIT;
    wc_err err;
    if (file_read_all("test/unit/data/watch-workers.ndjson", 1 << 20, &b, &err) < 0) return NULL;
    *len = b.len;
    return buf_steal(&b);
}

static void decode_in_pieces(const char *s, size_t n, const size_t *cuts, int ncuts, watch_log *l, int *rc_out) {
    kube_watch_decoder d;
    kube_watch_decoder_init(&d, 0, watch_log_handler, l);
    wc_err err;
    err_clear(&err);
    size_t prev = 0;
    int rc = 0;
    for (int i = 0; i <= ncuts && rc == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        rc = kube_watch_decoder_feed(&d, s + prev, end - prev, &err);
        prev = end;
    }
    if (rc == 0) rc = kube_watch_decoder_finish(&d, &err);
    kube_watch_decoder_free(&d);
    *rc_out = rc;
}

TEST(watch_decoder_every_byte_offset_of_a_recorded_stream) {
    size_t n = 0;
    char *stream = load_recorded_stream(&n);
    REQUIRE(stream != NULL);
    REQUIRE(n > 100);
    watch_log whole = {BUF_INIT, 0, 0};
    int rc;
    decode_in_pieces(stream, n, NULL, 0, &whole, &rc);
    CHECK_INT_EQ(rc, 0);
    CHECK(whole.count >= 5);
    CHECK_CONTAINS(buf_cstr(&whole.seen), "ADDED ");
    CHECK_CONTAINS(buf_cstr(&whole.seen), "MODIFIED ");
    CHECK_CONTAINS(buf_cstr(&whole.seen), "DELETED ");
    CHECK_CONTAINS(buf_cstr(&whole.seen), "BOOKMARK ");
    /* Every split point, one cut: identical decoding. */
    int mismatches = 0;
    for (size_t cut = 0; cut <= n; cut++) {
        watch_log l = {BUF_INIT, 0, 0};
        decode_in_pieces(stream, n, &cut, 1, &l, &rc);
        if (rc != 0 || strcmp(buf_cstr(&l.seen), buf_cstr(&whole.seen)) != 0) mismatches++;
        buf_free(&l.seen);
    }
    CHECK_INT_EQ(mismatches, 0);
    /* Byte-at-a-time and random multi-cut splits. */
    size_t *cuts = xmalloc(n * sizeof *cuts);
    for (size_t i = 0; i < n; i++) cuts[i] = i + 1;
    watch_log bytewise = {BUF_INIT, 0, 0};
    decode_in_pieces(stream, n, cuts, (int)n - 1, &bytewise, &rc);
    CHECK_INT_EQ(rc, 0);
    CHECK_STR_EQ(buf_cstr(&bytewise.seen), buf_cstr(&whole.seen));
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        int k = 0;
        size_t at = 0;
        while (at < n) {
            at += 1 + (size_t)(rand_r(&seed) % 997);
            if (at < n) cuts[k++] = at;
        }
        watch_log l = {BUF_INIT, 0, 0};
        decode_in_pieces(stream, n, cuts, k, &l, &rc);
        if (rc != 0 || strcmp(buf_cstr(&l.seen), buf_cstr(&whole.seen)) != 0) mismatches++;
        buf_free(&l.seen);
    }
    CHECK_INT_EQ(mismatches, 0);
    free(cuts);
    buf_free(&whole.seen);
    buf_free(&bytewise.seen);
    free(stream);
}

TEST(watch_decoder_error_events_and_bad_input) {
    const char *gone = "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},"
                       "\"status\":\"Failure\",\"message\":\"too old resource version: 5 (120)\",\"reason\":\"Expired\",\"code\":410}}\n";
    watch_log l = {BUF_INIT, 0, 0};
    int rc;
    decode_in_pieces(gone, strlen(gone), NULL, 0, &l, &rc);
    CHECK_INT_EQ(rc, 0);
    CHECK_STR_EQ(buf_cstr(&l.seen), "ERROR 410 Expired|");
    buf_free(&l.seen);

    static const char *bad[] = {
        "not json\n",
        "{\"type\":\"ADDED\"}\n",                        /* no object */
        "{\"type\":\"EXPLODED\",\"object\":{}}\n",       /* unknown type */
        "[1,2,3]\n",
        "{\"type\":\"ADDED\",\"object\":{\"metadata\":\n", /* truncated then newline */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        kube_watch_decoder d;
        watch_log l2 = {BUF_INIT, 0, 0};
        kube_watch_decoder_init(&d, 0, watch_log_handler, &l2);
        wc_err err;
        CHECK_INT_EQ(kube_watch_decoder_feed(&d, bad[i], strlen(bad[i]), &err), -1);
        CHECK_INT_EQ(err.code, WC_EPARSE);
        CHECK_INT_EQ(l2.count, 0);
        kube_watch_decoder_free(&d);
        buf_free(&l2.seen);
    }

    /* Blank keep-alive lines and CRLF are harmless. */
    const char *blank = "\n\r\n{\"type\":\"BOOKMARK\",\"object\":{\"metadata\":{\"resourceVersion\":\"9\"}}}\r\n\n";
    watch_log l3 = {BUF_INIT, 0, 0};
    decode_in_pieces(blank, strlen(blank), NULL, 0, &l3, &rc);
    CHECK_INT_EQ(rc, 0);
    CHECK_STR_EQ(buf_cstr(&l3.seen), "BOOKMARK - 9|");
    buf_free(&l3.seen);
}

TEST(watch_decoder_bounds_memory_per_event) {
    kube_watch_decoder d;
    watch_log l = {BUF_INIT, 0, 0};
    kube_watch_decoder_init(&d, 1024, watch_log_handler, &l);
    wc_err err;
    char chunk[100];
    memset(chunk, 'x', sizeof chunk);
    int rc = 0, fed = 0;
    for (int i = 0; i < 1000 && rc == 0; i++, fed++) rc = kube_watch_decoder_feed(&d, chunk, sizeof chunk, &err);
    CHECK_INT_EQ(rc, -1);
    CHECK_INT_EQ(err.code, WC_ETOOBIG);
    CHECK(fed <= 11);          /* stopped as soon as the line passed the bound */
    CHECK(d.line.cap <= 2048); /* and never held more than about the bound */
    kube_watch_decoder_free(&d);
    buf_free(&l.seen);
}

TEST(watch_decoder_handler_can_stop) {
    const char *two = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n"
                      "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"b\"}}}\n";
    watch_log l = {BUF_INIT, 0, 1};
    int rc;
    decode_in_pieces(two, strlen(two), NULL, 0, &l, &rc);
    CHECK_INT_EQ(rc, -1);
    CHECK_INT_EQ(l.count, 1);
    buf_free(&l.seen);
}
