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

/* ---- cache.c ---- */

static char *cache_test_index(const cJSON *proj) {
    const cJSON *w = json_get(json_at(proj, "metadata.labels"), "hiclaw.io/worker");
    return cJSON_IsString(w) ? xstrdup(w->valuestring) : NULL;
}

TEST(cache_keeps_similar_projections_as_deltas_and_gives_each_back_whole) {
    kube_cache c;
    kube_cache_init(&c, NULL);
    char text[600], key[64];
    size_t stored = 0, raw = 0;
    for (int i = 0; i < 300; i++) {
        snprintf(text, sizeof text,
                 "{\"metadata\":{\"name\":\"bw-%d-abc\",\"namespace\":\"bench\",\"uid\":\"%08x-1111-2222-3333-%012x\","
                 "\"labels\":{\"hiclaw.io/controller\":\"worker-controller\",\"hiclaw.io/backend\":\"pod\"},"
                 "\"annotations\":{\"hiclaw.io/spec-hash\":\"%016x\"}},\"status\":{\"phase\":\"%s\",\"podIP\":\"127.0.%d.%d\"}}",
                 i, 0x1000u + i, 0x77u * i, 0xfeedu * i, i % 3 ? "Running" : "Pending", i / 250, i % 250);
        cJSON *proj = cJSON_Parse(text);
        REQUIRE(proj);
        snprintf(key, sizeof key, "bench/bw-%d-abc", i);
        cJSON_Delete(kube_cache_put(&c, key, "42", proj));
        cJSON_Delete(proj);
    }
    cJSON_Delete(kube_cache_remove(&c, "bench/bw-0-abc")); /* the reference's own object goes; the reference stays */
    for (int i = 1; i < 300; i++) {
        snprintf(key, sizeof key, "bench/bw-%d-abc", i);
        kube_cache_entry *e = strmap_get(&c.entries, key);
        REQUIRE(e);
        stored += e->text_len;
        raw += e->json_len;
        cJSON *got = kube_cache_get(&c, key);
        REQUIRE(got);
        char *printed = cJSON_PrintUnformatted(got);
        CHECK_INT_EQ(strlen(printed), e->json_len);
        CHECK_CONTAINS(printed, key + strlen("bench/"));
        CHECK_STR_EQ(e->rv, "42");
        free(printed);
        cJSON_Delete(got);
    }
    CHECK(kube_cache_get(&c, "bench/bw-0-abc") == NULL);
    CHECK(stored * 3 < raw); /* a third or less of the serialized bytes (they share all but ~50) */
    kube_cache_free(&c);
}

TEST(cache_index_and_replacement_work_on_delta_entries) {
    kube_cache c;
    kube_cache_init(&c, cache_test_index);
    const char *a1 = "{\"metadata\":{\"name\":\"p-1\",\"labels\":{\"hiclaw.io/worker\":\"alice\"}},\"status\":{\"phase\":\"Pending\"}}";
    const char *a2 = "{\"metadata\":{\"name\":\"p-2\",\"labels\":{\"hiclaw.io/worker\":\"alice\"}},\"status\":{\"phase\":\"Running\"}}";
    const char *b1 = "{\"metadata\":{\"name\":\"p-3\",\"labels\":{\"hiclaw.io/worker\":\"bob\"}},\"status\":{\"phase\":\"Pending\"}}";
    const char *texts[] = {a1, a2, b1}, *keys[] = {"ns/p-1", "ns/p-2", "ns/p-3"};
    for (int i = 0; i < 3; i++) {
        cJSON *p = cJSON_Parse(texts[i]);
        cJSON_Delete(kube_cache_put(&c, keys[i], "1", p));
        cJSON_Delete(p);
    }
    cJSON *alice = kube_cache_by_index(&c, "alice");
    CHECK_INT_EQ(cJSON_GetArraySize(alice), 2);
    cJSON_Delete(alice);
    cJSON *p = cJSON_Parse("{\"metadata\":{\"name\":\"p-1\",\"labels\":{\"hiclaw.io/worker\":\"bob\"}},\"status\":{\"phase\":\"Failed\"}}");
    cJSON *old = kube_cache_put(&c, "ns/p-1", "2", p); /* moves to bob; the old projection comes back whole */
    REQUIRE(old);
    CHECK_STR_EQ(json_str_at(old, "status.phase"), "Pending");
    cJSON_Delete(old);
    cJSON_Delete(p);
    cJSON *bob = kube_cache_by_index(&c, "bob");
    CHECK_INT_EQ(cJSON_GetArraySize(bob), 2);
    char *printed = cJSON_PrintUnformatted(bob);
    CHECK_CONTAINS(printed, "\"phase\":\"Failed\"");
    CHECK_CONTAINS(printed, "\"name\":\"p-3\"");
    free(printed);
    cJSON_Delete(bob);
    CHECK(kube_cache_has_rv(&c, "ns/p-1", "2"));
    kube_cache_free(&c);
}
