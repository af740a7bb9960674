/* test_base.c — arena, buffers, errors, logging and redaction, the flag parser. */

TEST(arena_alignment_and_growth) {
    arena a;
    arena_init(&a);
    char *p1 = arena_alloc(&a, 1);
    char *p2 = arena_alloc(&a, 3);
    CHECK((uintptr_t)p1 % sizeof(max_align_t) == 0);
    CHECK((uintptr_t)p2 % sizeof(max_align_t) == 0);
    CHECK(p1 != p2);
    /* A request larger than a chunk gets a chunk of its own and stays usable. */
    char *big = arena_alloc(&a, 3 * ARENA_DEFAULT_CHUNK);
    memset(big, 'x', 3 * ARENA_DEFAULT_CHUNK);
    CHECK(big[3 * ARENA_DEFAULT_CHUNK - 1] == 'x');
    /* Many small allocations span chunks and none overlap. */
    char *prev[200];
    for (int i = 0; i < 200; i++) {
        prev[i] = arena_sprintf(&a, "item-%d", i);
    }
    for (int i = 0; i < 200; i++) {
        char want[24]; /* any int fits */
        snprintf(want, sizeof want, "item-%d", i);
        CHECK_STR_EQ(prev[i], want);
    }
    CHECK(a.total >= 3 * ARENA_DEFAULT_CHUNK);
    arena_free(&a);
    CHECK(a.head == NULL);
    CHECK_INT_EQ(a.total, 0);
    /* Reusable after free. */
    CHECK_STR_EQ(arena_strdup(&a, "again"), "again");
    CHECK_STR_EQ(arena_strndup(&a, "abcdef", 3), "abc");
    CHECK(arena_strdup(&a, NULL) == NULL);
    char *z = arena_calloc(&a, 64);
    int allzero = 1;
    for (int i = 0; i < 64; i++) allzero &= z[i] == 0;
    CHECK(allzero);
    arena_free(&a);
}

/* A parse inside a scratch allocates from its arena; what is built from the tree afterwards is
 * heap memory that outlives it; deleting scratch nodes is harmless; a stream of small events
 * reuses one kept chunk; a big page's chunks are released. */
TEST(json_scratch_parse_trees_live_in_the_arena_and_copies_outlive_them) {
    json_scratch s;
    json_scratch_init(&s);
    json_scratch_begin(&s);
    cJSON *tree = cJSON_Parse("{\"metadata\":{\"name\":\"alice\",\"labels\":{\"a\":\"b\"}},\"n\":[1,2,3]}");
    json_scratch_pause(&s);
    CHECK(tree != NULL);
    CHECK(json_scratch_owns(&s, tree));
    CHECK(json_scratch_owns(&s, cJSON_GetObjectItem(tree, "metadata")->child->valuestring));
    CHECK(s.a.total > 0);
    /* Built after the parse: ordinary heap memory. */
    cJSON *copy = cJSON_Duplicate(cJSON_GetObjectItem(tree, "metadata"), 1);
    char *text = cJSON_PrintUnformatted(tree);
    CHECK(!json_scratch_owns(&s, copy) && !json_scratch_owns(&s, text));
    /* Deleting a scratch subtree (or the whole tree) frees nothing and breaks nothing. */
    cJSON_Delete(cJSON_DetachItemFromObject(tree, "n"));
    cJSON_Delete(tree);
    size_t kept_cap = s.a.head->cap;
    json_scratch_end(&s);
    CHECK(json_scratch_current == NULL);
    CHECK(s.a.head != NULL && s.a.head->used == 0 && s.a.head->cap == kept_cap); /* kept for the next event */
    CHECK_STR_EQ(cJSON_GetObjectItem(copy, "name")->valuestring, "alice");
    CHECK_STR_EQ(text, "{\"metadata\":{\"name\":\"alice\",\"labels\":{\"a\":\"b\"}},\"n\":[1,2,3]}");
    cJSON_Delete(copy);
    cJSON_free(text);

    /* Outside any scope cJSON uses the heap. */
    cJSON *heap = cJSON_Parse("[1]");
    CHECK(!json_scratch_owns(&s, heap));
    cJSON_Delete(heap);

    /* A page-sized tree: several doubling chunks, all but a small one released at the end. */
    buf big = BUF_INIT;
    buf_putc(&big, '[');
    for (int i = 0; i < 20000; i++) buf_printf(&big, "%s{\"name\":\"w-%d\",\"v\":%d}", i ? "," : "", i, i);
    buf_putc(&big, ']');
    json_scratch_begin(&s);
    cJSON *page = cJSON_ParseWithLength(big.data, big.len);
    json_scratch_pause(&s);
    CHECK_INT_EQ(cJSON_GetArraySize(page), 20000);
    CHECK_STR_EQ(cJSON_GetArrayItem(page, 19999)->child->valuestring, "w-19999");
    int chunks = 0;
    size_t largest = 0;
    for (arena_chunk *c = s.a.head; c; c = c->next, chunks++) largest = c->cap > largest ? c->cap : largest;
    CHECK(chunks >= 3 && chunks <= 20);
    CHECK(largest > JSON_SCRATCH_FIRST_CHUNK && largest <= JSON_SCRATCH_MAX_CHUNK + 4096);
    json_scratch_end(&s);
    CHECK(s.a.head != NULL && s.a.head->next == NULL && s.a.head->cap <= JSON_SCRATCH_KEEP);
    buf_free(&big);

    /* Nested scopes: the inner one's tree is its own; leaving it restores the outer. */
    json_scratch inner;
    json_scratch_init(&inner);
    json_scratch_begin(&s);
    cJSON *outer_tree = cJSON_Parse("{\"o\":1}");
    json_scratch_pause(&s);
    json_scratch_begin(&inner);
    cJSON *inner_tree = cJSON_Parse("{\"i\":2}");
    CHECK(json_scratch_owns(&inner, inner_tree) && !json_scratch_owns(&s, inner_tree));
    json_scratch_end(&inner);
    CHECK(json_scratch_current == &s);
    cJSON_Delete(outer_tree); /* a scratch node of the outer scope: still a no-op */
    json_scratch_end(&s);
    CHECK(json_scratch_current == NULL);
    json_scratch_free(&inner);
    json_scratch_free(&s);
}

TEST(buf_append_printf_and_limit) {
    buf b = BUF_INIT;
    CHECK_STR_EQ(buf_cstr(&b), "");
    CHECK_INT_EQ(buf_puts(&b, "hello"), 0);
    CHECK_INT_EQ(buf_printf(&b, " %s %d", "world", 42), 0);
    CHECK_STR_EQ(buf_cstr(&b), "hello world 42");
    CHECK_INT_EQ(b.len, 14);
    buf_reset(&b);
    CHECK_INT_EQ(b.len, 0);
    CHECK_STR_EQ(buf_cstr(&b), "");
    buf_free(&b);

    buf lim = BUF_INIT;
    lim.limit = 8;
    CHECK_INT_EQ(buf_puts(&lim, "12345678"), 0);
    CHECK_INT_EQ(buf_putc(&lim, '9'), -1); /* one past the limit fails ... */
    CHECK_STR_EQ(buf_cstr(&lim), "12345678"); /* ... and changes nothing */
    CHECK_INT_EQ(buf_printf(&lim, "%s", "x"), -1);
    char *stolen = buf_steal(&lim);
    CHECK_STR_EQ(stolen, "12345678");
    CHECK(lim.data == NULL && lim.len == 0);
    free(stolen);

    /* Binary data with NULs keeps its length. */
    buf bin = BUF_INIT;
    buf_append(&bin, "a\0b", 3);
    CHECK_INT_EQ(bin.len, 3);
    CHECK(memcmp(bin.data, "a\0b", 3) == 0);
    buf_free_secret(&bin);
    CHECK(bin.data == NULL);
}

TEST(buf_json_escaping_round_trips_through_cjson) {
    const char *nasty = "quote\" back\\slash\nnew\ttab\x01ctl \xc3\xa9t\xc3\xa9";
    buf b = BUF_INIT;
    buf_puts(&b, "{\"v\":");
    buf_put_json_string(&b, nasty);
    buf_puts(&b, "}");
    cJSON *j = cJSON_Parse(buf_cstr(&b));
    REQUIRE(j != NULL);
    CHECK_STR_EQ(cJSON_GetObjectItem(j, "v")->valuestring, nasty);
    cJSON_Delete(j);
    buf_free(&b);
}

TEST(err_set_and_wrap_keep_outer_context) {
    wc_err e;
    err_clear(&e);
    CHECK_INT_EQ(e.code, WC_OK);
    CHECK_INT_EQ(err_set(&e, WC_EHTTP, "422 Invalid: %s", "spec.replicas"), -1);
    e.http_status = 422;
    err_wrap(&e, "create SandboxClaim %s", "hiclaw-worker-alice");
    CHECK_STR_EQ(e.msg, "create SandboxClaim hiclaw-worker-alice: 422 Invalid: spec.replicas");
    CHECK_INT_EQ(e.code, WC_EHTTP);
    CHECK_INT_EQ(e.http_status, 422);
    CHECK_STR_EQ(err_code_name(e.code), "http");
    /* Very long inner messages are truncated at the end; the outer context survives. */
    char longmsg[3000];
    memset(longmsg, 'z', sizeof longmsg - 1);
    longmsg[sizeof longmsg - 1] = '\0';
    err_set(&e, WC_EIO, "%s", longmsg);
    err_wrap(&e, "outer");
    CHECK(strncmp(e.msg, "outer: zzz", 10) == 0);
    CHECK(strlen(e.msg) == WC_ERR_MSG_MAX - 1);
    CHECK_INT_EQ(err_set(NULL, WC_EIO, "ignored"), -1);
}

static void emit_sample_lines(void) {
    log_register_secret("s3cr3t-minio-password\n");
    log_info("created Pod", "worker", "alice", "namespace", "team a");
    log_warn("request failed: Authorization: Bearer abc.def.ghi refused", "url", "https://x/y");
    log_error("got s3cr3t-minio-password back from the server", "token", "anything-at-all",
              "jwt", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", "optional", NULL);
    log_debug("quote \" and newline \n inside");
}

TEST(log_json_lines_parse_and_are_redacted) {
    char *out = capture_log(LOG_FORMAT_JSON, emit_sample_lines);
    REQUIRE(out != NULL);
    int lines = 0;
    for (char *save = NULL, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        lines++;
        cJSON *j = cJSON_Parse(line);
        CHECK(j != NULL); /* every line is one JSON object */
        if (j) {
            CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "ts")));
            CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "level")));
            CHECK(cJSON_IsString(cJSON_GetObjectItem(j, "msg")));
            cJSON_Delete(j);
        }
        CHECK_NOT_CONTAINS(line, "s3cr3t-minio-password");
        CHECK_NOT_CONTAINS(line, "anything-at-all");
        CHECK_NOT_CONTAINS(line, "eyJhbGciOiJSUzI1NiJ9");
        CHECK_NOT_CONTAINS(line, "abc.def.ghi");
    }
    CHECK_INT_EQ(lines, 4);
    free(out);
}

TEST(log_text_format_quotes_values) {
    char *out = capture_log(LOG_FORMAT_TEXT, emit_sample_lines);
    REQUIRE(out != NULL);
    CHECK_CONTAINS(out, "info  created Pod worker=alice namespace=\"team a\"");
    CHECK_CONTAINS(out, "token=[REDACTED]");
    CHECK_CONTAINS(out, "Bearer [REDACTED]");
    CHECK_CONTAINS(out, "got [REDACTED] back");
    CHECK_NOT_CONTAINS(out, "optional=");
    free(out);
}

TEST(log_redact_for_events_and_status) {
    log_register_secret("WORKER-GATEWAY-KEY-123");
    char *r = log_redact("failed with key WORKER-GATEWAY-KEY-123 and WORKER-GATEWAY-KEY-123!");
    CHECK_STR_EQ(r, "failed with key [REDACTED] and [REDACTED]!");
    free(r);
    r = log_redact("short ab stays"); /* too-short values are never registered */
    log_register_secret("ab");
    free(r);
    r = log_redact("short ab stays");
    CHECK_STR_EQ(r, "short ab stays");
    free(r);
    enum log_level l = LOG_DEBUG;
    CHECK_INT_EQ(log_parse_level("WARN", &l), 0);
    CHECK_INT_EQ(l, LOG_WARN);
    CHECK_INT_EQ(log_parse_level("loud", &l), -1);
    enum log_format f = LOG_FORMAT_TEXT;
    CHECK_INT_EQ(log_parse_format("json", &f), 0);
    CHECK_INT_EQ(f, LOG_FORMAT_JSON);
    CHECK_INT_EQ(log_parse_format("yaml", &f), -1);
}

/* No cap on registered secrets: the first of 20,000 (the old limit was 4,096, oldest evicted)
 * is still scrubbed, secrets sharing a prefix are matched longest first, and a JWT is scrubbed
 * by shape without being stored. */
TEST(log_redact_keeps_every_secret_and_prefers_the_longest) {
    char v[64];
    for (int i = 0; i < 20000; i++) {
        snprintf(v, sizeof v, "fleet-credential-%05d-x", i);
        log_register_secret(v);
    }
    char *r = log_redact("a=fleet-credential-00000-x b=fleet-credential-19999-x c=fleet-credential-2");
    CHECK_STR_EQ(r, "a=[REDACTED] b=[REDACTED] c=fleet-credential-2");
    free(r);
    log_register_secret("pref");
    log_register_secret("prefix-secret-long");
    r = log_redact("<prefix-secret-long> <pref>");
    CHECK_STR_EQ(r, "<[REDACTED]> <[REDACTED]>");
    free(r);
    static const char jwt[] = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    size_t before = g_log_nsecrets;
    log_register_secret(jwt);
    CHECK_INT_EQ(g_log_nsecrets, before);
    r = log_redact("token eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl end");
    CHECK_STR_EQ(r, "token [REDACTED] end");
    free(r);
}

TEST(cli_parse_flags_and_errors) {
    const char *ns = NULL, *all = NULL, *pos[2];
    int np = 0;
    cli_flag flags[] = {{"namespace", 1, &ns}, {"all-namespaces", 0, &all}, {NULL, 0, NULL}};
    char *argv1[] = {"render-rbac", "--namespace", "team-a", "--all-namespaces", "extra", NULL};
    wc_err e;
    err_clear(&e);
    CHECK_INT_EQ(cli_parse(5, argv1, flags, pos, 2, &np, &e), 0);
    CHECK_STR_EQ(ns, "team-a");
    CHECK_STR_EQ(all, "true");
    CHECK_INT_EQ(np, 1);
    CHECK_STR_EQ(pos[0], "extra");
    char *argv2[] = {"x", "--namespace=b", "--all-namespaces=false", NULL};
    CHECK_INT_EQ(cli_parse(3, argv2, flags, pos, 2, &np, &e), 0);
    CHECK_STR_EQ(ns, "b");
    CHECK_STR_EQ(all, "false");
    char *argv3[] = {"x", "--nope", NULL};
    CHECK_INT_EQ(cli_parse(2, argv3, flags, pos, 2, &np, &e), -1);
    CHECK_CONTAINS(e.msg, "--nope");
    char *argv4[] = {"x", "--namespace", NULL};
    CHECK_INT_EQ(cli_parse(2, argv4, flags, pos, 2, &np, &e), -1);
    CHECK_CONTAINS(e.msg, "needs a value");
    char *argv5[] = {"x", "--all-namespaces=maybe", NULL};
    CHECK_INT_EQ(cli_parse(2, argv5, flags, pos, 2, &np, &e), -1);
    char *argv6[] = {"x", "a", "b", "c", NULL};
    CHECK_INT_EQ(cli_parse(4, argv6, flags, pos, 2, &np, &e), -1);
    CHECK_CONTAINS(e.msg, "unexpected argument c");
}

TEST(time_formats) {
    char ts[32];
    wc_rfc3339(ts, 0);
    CHECK_STR_EQ(ts, "1970-01-01T00:00:00Z");
    char micro[40];
    wc_rfc3339_micro(micro);
    CHECK_INT_EQ(strlen(micro), 27);
    CHECK(micro[26] == 'Z' && micro[19] == '.');
    int64_t t0 = wc_now_ms();
    wc_sleep_ms(20);
    CHECK(wc_now_ms() - t0 >= 20);
}

TEST(strmap_put_get_del_against_a_model) {
    /* Random operations checked against a plain array model; deletions exercise backward shift. */
    strmap m = STRMAP_INIT;
    enum { N = 600 };
    int present[N] = {0};
    long value[N] = {0};
    unsigned seed = 99;
    for (int op = 0; op < 20000; op++) {
        int k = (int)(rand_r(&seed) % N);
        char key[32];
        snprintf(key, sizeof key, "ns-%d/worker-%d", k % 7, k);
        int op_kind = (int)(rand_r(&seed) % 3);
        if (op_kind == 0) {
            long v = op + 1;
            void *old = strmap_put(&m, key, (void *)v);
            CHECK((old != NULL) == (present[k] != 0));
            present[k] = 1;
            value[k] = v;
        } else if (op_kind == 1) {
            void *old = strmap_del(&m, key);
            CHECK((old != NULL) == (present[k] != 0));
            if (old) CHECK_INT_EQ((long)old, value[k]);
            present[k] = 0;
        } else {
            void *v = strmap_get(&m, key);
            CHECK((v != NULL) == (present[k] != 0));
            if (v) CHECK_INT_EQ((long)v, value[k]);
        }
    }
    size_t count = 0, expected = 0;
    const char *k;
    void *v;
    strmap_foreach(&m, k, v) { count++; (void)k; (void)v; }
    for (int i = 0; i < N; i++) expected += present[i] != 0;
    CHECK_INT_EQ(count, expected);
    CHECK_INT_EQ(m.len, expected);
    strmap_free(&m, NULL);
    CHECK_INT_EQ(m.len, 0);
}

TEST(parse_duration_and_bool) {
    struct { const char *in; int ok; int64_t ms; } cases[] = {
        {"60s", 1, 60000}, {"2m", 1, 120000}, {"1h30m", 1, 5400000}, {"500ms", 1, 500},
        {"1.5s", 1, 1500}, {"-1s", 1, -1000}, {"0", 1, 0}, {"0s", 1, 0}, {"5", 0, 0},
        {"", 0, 0}, {"5 m", 0, 0}, {"5mins", 0, 0}, {"s", 0, 0}, {"1d", 0, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int64_t ms = 0;
        int rc = parse_duration_ms(cases[i].in, &ms);
        if (cases[i].ok) {
            CHECK_INT_EQ(rc, 0);
            CHECK_INT_EQ(ms, cases[i].ms);
        } else {
            CHECK_INT_EQ(rc, -1);
        }
    }
    int b;
    CHECK_INT_EQ(parse_bool("TRUE", &b), 0);
    CHECK_INT_EQ(b, 1);
    CHECK_INT_EQ(parse_bool("off", &b), 0);
    CHECK_INT_EQ(b, 0);
    CHECK_INT_EQ(parse_bool("maybe", &b), -1);
}

static void emit_with_reconcile_id(void) {
    log_set_reconcile_id("0000002a-beef");
    log_info("created Pod", "worker", "alice");
    log_set_reconcile_id(NULL);
    log_info("idle");
}

TEST(log_lines_carry_the_reconcile_id) {
    char *out = capture_log(LOG_FORMAT_JSON, emit_with_reconcile_id);
    REQUIRE(out != NULL);
    char *second = strchr(out, '\n');
    REQUIRE(second != NULL);
    *second++ = '\0';
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j != NULL);
    CHECK_STR_EQ(cJSON_GetObjectItem(j, "reconcileID")->valuestring, "0000002a-beef");
    CHECK_STR_EQ(cJSON_GetObjectItem(j, "worker")->valuestring, "alice");
    cJSON_Delete(j);
    CHECK_NOT_CONTAINS(second, "reconcileID");
    free(out);
}

/* ---- delta.c ---- */

static void delta_round_trip(const delta_ref *r, const char *text, size_t *enc_len) {
    buf enc = BUF_INIT, dec = BUF_INIT;
    REQUIRE(delta_encode(r, text, strlen(text), &enc) == 0);
    CHECK_INT_EQ(delta_decode(r, enc.data ? enc.data : "", enc.len, &dec), 0);
    CHECK_INT_EQ(dec.len, strlen(text));
    CHECK(dec.len == strlen(text) && memcmp(dec.data ? dec.data : "", text, dec.len) == 0);
    if (enc_len) *enc_len = enc.len;
    buf_free(&enc);
    buf_free(&dec);
}

TEST(delta_keeps_a_projection_like_its_neighbour_in_a_fraction_of_its_bytes) {
    const char *fmt = "{\"metadata\":{\"name\":\"bw-%05d\",\"namespace\":\"bench-ns\",\"uid\":\"%08x-1111-2222-3333-%012x\","
                      "\"labels\":{\"hiclaw.io/worker\":\"bw-%05d\",\"hiclaw.io/controller\":\"worker-controller\","
                      "\"hiclaw.io/backend\":\"pod\"},\"ownerReferences\":[{\"uid\":\"%08x-aaaa-bbbb-cccc-%012x\"}],"
                      "\"creationTimestamp\":\"2026-12-03T16:%02d:%02dZ\"},\"status\":{\"phase\":\"Running\",\"podIP\":"
                      "\"127.1.%d.%d\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}}";
    char ref_text[1024], text[1024];
    snprintf(ref_text, sizeof ref_text, fmt, 1, 0x1234u, 0x5678u, 1, 0x4321u, 0x8765u, 1, 2, 3, 4);
    delta_ref r = {0};
    REQUIRE(delta_ref_set(&r, ref_text, strlen(ref_text)) == 0);
    size_t total = 0, raw = 0;
    for (int i = 0; i < 200; i++) {
        snprintf(text, sizeof text, fmt, 10000 + i, 0x9abcu * i, 0xdef0u * i, 10000 + i, 0x7777u * i, 0x5555u * i, i % 60,
                 (i * 7) % 60, i / 200, i % 200 + 10);
        size_t n = 0;
        delta_round_trip(&r, text, &n);
        total += n;
        raw += strlen(text);
    }
    /* the differing bytes (name twice, two UIDs, a time, an IP) are about a quarter */
    CHECK(total * 3 < raw);
    size_t n = 0;
    delta_round_trip(&r, ref_text, &n);
    CHECK(n <= 5); /* the reference itself: one copy */
    delta_ref_free(&r);
}

TEST(delta_round_trips_any_text_without_its_marker) {
    delta_ref none = {0}, r = {0};
    size_t n = 0;
    delta_round_trip(&none, "{\"a\":1}", &n); /* no reference: all literal */
    CHECK_INT_EQ(n, 7);
    delta_round_trip(&none, "", NULL);
    REQUIRE(delta_ref_set(&r, "abcdefghijklmnopqrstuvwxyz0123456789", 36) == 0);
    delta_round_trip(&r, "", NULL);
    delta_round_trip(&r, "abc", NULL);
    delta_round_trip(&r, "xyz0123456789abcdefghij", NULL);
    delta_round_trip(&r, "abcdefabcdefabcdef", NULL);
    /* pseudo-random texts over a small alphabet, so that matches of every length occur */
    uint32_t seed = 12345;
    for (int t = 0; t < 500; t++) {
        char text[300];
        size_t len = (seed = seed * 1103515245u + 12345u) % 299;
        for (size_t i = 0; i < len; i++) text[i] = "abcdefgh0123\xc3\xa9\"{}"[(seed = seed * 1103515245u + 12345u) >> 16 & 15];
        text[len] = '\0';
        delta_round_trip(&r, text, NULL);
    }
    buf out = BUF_INIT;
    CHECK_INT_EQ(delta_encode(&r, "a\x01" "b", 3, &out), -1); /* the marker byte itself is refused */
    CHECK_INT_EQ(out.len, 0);
    delta_ref_free(&r);
    CHECK_INT_EQ(delta_ref_set(&r, "x", DELTA_REF_MAX + 1), -1); /* too long for a reference */
    CHECK(r.text == NULL);
}

TEST(delta_decode_refuses_what_no_encoder_wrote) {
    delta_ref r = {0};
    REQUIRE(delta_ref_set(&r, "0123456789", 10) == 0);
    buf out = BUF_INIT;
    CHECK_INT_EQ(delta_decode(&r, "ab\x01\x02\x03", 5, &out), 0); /* copy 3 bytes at 2 */
    CHECK_STR_EQ(buf_cstr(&out), "ab234");
    buf_reset(&out);
    CHECK_INT_EQ(delta_decode(&r, "\x01\x08\x03", 3, &out), -1); /* past the reference's end */
    buf_reset(&out);
    CHECK_INT_EQ(delta_decode(&r, "\x01\x0b\x00", 3, &out), -1); /* offset beyond it */
    buf_reset(&out);
    CHECK_INT_EQ(delta_decode(&r, "\x01\x82", 2, &out), -1);     /* a varint cut short */
    buf_reset(&out);
    CHECK_INT_EQ(delta_decode(&r, "\x01\x01", 2, &out), -1);     /* no length */
    delta_ref none = {0};
    buf_reset(&out);
    CHECK_INT_EQ(delta_decode(&none, "\x01\x00\x01", 3, &out), -1); /* a copy with no reference */
    buf_free(&out);
    delta_ref_free(&r);
}
