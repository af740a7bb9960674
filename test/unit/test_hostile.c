/*
 * test_hostile.c — the Kubernetes client against servers that misbehave (issue 9).
 *
 * The peer is test/unit/hostile_server.py, a plain-HTTP server on loopback whose first path
 * segment picks the misbehaviour (truncated chunked and Content-Length bodies, invalid JSON in
 * a list and in a watch stream, a 100 MiB body, a body that trickles forever, a watch event
 * line that never ends). The client is pointed at it with the mode in its server URL
 * ("http://127.0.0.1:port/huge"), so the real kube_list_page / kube_do / informer code runs.
 *
 * Every case asserts a bounded, clear error (code and message) and then that the same client
 * (and the same informer) keeps working: the next request succeeds. The wrong-certificate
 * case reuses test_http.c's TLS server.
 */

/* How many objects an informer's cache holds. */
static size_t kube_informer_len(kube_informer *inf) {
    pthread_rwlock_rdlock(&inf->cache.mu);
    size_t n = inf->cache.entries.len;
    pthread_rwlock_unlock(&inf->cache.mu);
    return n;
}

static py_server g_hostile = {.script = "test/unit/hostile_server.py", .pid = -1, .stdin_fd = -1};

static int hostile_server(void) { return py_server_start(&g_hostile); }

/* Points an existing client at another misbehaviour (same connection pool, same state). */
static void hostile_mode(kube_client *kc, const char *mode) {
    free(kc->server);
    buf s = BUF_INIT;
    buf_printf(&s, "http://127.0.0.1:%d/%s", g_hostile.port, mode);
    kc->server = buf_steal(&s);
}

static kube_client *hostile_client(const char *mode, wc_err *err) {
    kube_config cfg;
    memset(&cfg, 0, sizeof cfg);
    buf s = BUF_INIT;
    buf_printf(&s, "http://127.0.0.1:%d/%s", g_hostile.port, mode);
    cfg.server = buf_steal(&s);
    cfg.token = xstrdup("hostile-test-token-Vb7");
    /* The http client insists on a trust bundle whatever the scheme; plain http never uses it. */
    buf_puts(&cfg.ca_pem, "-----BEGIN CERTIFICATE-----\nunused for http://\n-----END CERTIFICATE-----\n");
    kube_client *kc = kube_client_new(&cfg, err);
    kube_config_free(&cfg);
    return kc;
}

#define HOSTILE_SETUP(mode)                              \
    wc_err err;                                          \
    err_clear(&err);                                     \
    REQUIRE(hostile_server() == 0);                      \
    kube_client *kc = hostile_client(mode, &err);        \
    REQUIRE(kc)

/* The caller keeps working: a list on the well-behaved endpoint succeeds. */
static void hostile_check_recovers(kube_client *kc) {
    wc_err err;
    hostile_mode(kc, "ok");
    cJSON *page = NULL;
    int rc = kube_list_page(kc, &KUBE_PODS, "ns", NULL, NULL, 0, NULL, &page, &err);
    if (rc != 0) unit_fail(__FILE__, __LINE__, "list after the failure: %s", err.msg);
    CHECK_STR_EQ(json_str_at(page, "metadata.resourceVersion"), "10");
    cJSON_Delete(page);
}

static long hostile_maxrss_kib(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

TEST(hostile_truncated_chunked_list_is_an_io_error) {
    HOSTILE_SETUP("truncchunk");
    cJSON *page = NULL;
    CHECK_INT_EQ(kube_list_page(kc, &KUBE_PODS, "ns", NULL, NULL, 0, NULL, &page, &err), -1);
    CHECK(page == NULL);
    CHECK_INT_EQ(err.code, WC_EIO);
    CHECK_CONTAINS(err.msg, "GET http://127.0.0.1:");
    CHECK_NOT_CONTAINS(err.msg, "hostile-test-token");
    hostile_check_recovers(kc);
    kube_client_free(kc);
}

TEST(hostile_truncated_content_length_is_an_io_error) {
    HOSTILE_SETUP("trunclen");
    cJSON *page = NULL;
    CHECK_INT_EQ(kube_list_page(kc, &KUBE_PODS, "ns", NULL, NULL, 0, NULL, &page, &err), -1);
    CHECK_INT_EQ(err.code, WC_EIO);
    CHECK_CONTAINS(err.msg, "/trunclen/api/v1/namespaces/ns/pods");
    hostile_check_recovers(kc);
    kube_client_free(kc);
}

TEST(hostile_invalid_json_list_is_a_parse_error) {
    HOSTILE_SETUP("badjson");
    cJSON *page = NULL;
    CHECK_INT_EQ(kube_list_page(kc, &KUBE_PODS, "ns", NULL, NULL, 0, NULL, &page, &err), -1);
    CHECK(page == NULL);
    CHECK_INT_EQ(err.code, WC_EPARSE);
    CHECK_CONTAINS(err.msg, "response is not JSON");
    hostile_check_recovers(kc);
    kube_client_free(kc);
}

/* A 100 MiB answer must hit the bound (64 MiB for lists), never be held whole. With a
 * Content-Length, curl refuses before reading; chunked, the buffer limit stops it. */
TEST(hostile_100mib_body_hits_the_size_bound) {
    HOSTILE_SETUP("huge");
    long rss0 = hostile_maxrss_kib();
    cJSON *page = NULL;
    CHECK_INT_EQ(kube_list_page(kc, &KUBE_PODS, "ns", NULL, NULL, 0, NULL, &page, &err), -1);
    CHECK_INT_EQ(err.code, WC_ETOOBIG);
    CHECK_CONTAINS(err.msg, "exceeds 67108864 bytes");
    hostile_mode(kc, "hugechunk");
    int64_t t0 = wc_now_ms();
    CHECK_INT_EQ(kube_list_page(kc, &KUBE_PODS, "ns", NULL, NULL, 0, NULL, &page, &err), -1);
    CHECK_INT_EQ(err.code, WC_ETOOBIG);
    CHECK(wc_now_ms() - t0 < 30000);
    long grew_mib = (hostile_maxrss_kib() - rss0) / 1024;
#ifndef __SANITIZE_ADDRESS__
    /* (Under ASan freed buffers sit in its 256 MiB quarantine, so peak RSS says nothing.) */
    if (grew_mib >= 100) unit_fail(__FILE__, __LINE__, "peak RSS grew by %ld MiB for a bounded body", grew_mib);
#else
    (void)grew_mib;
#endif
    /* A plain request (default 16 MiB bound) fails the same way, sooner. */
    hostile_mode(kc, "hugechunk");
    kube_call call = {.method = "GET", .path = "/api/v1/namespaces/ns/pods/x"};
    http_response resp;
    http_response_init(&resp);
    CHECK_INT_EQ(kube_do(kc, &call, &resp, &err), -1);
    CHECK_INT_EQ(err.code, WC_ETOOBIG);
    CHECK(resp.body.len <= HTTP_DEFAULT_MAX_BODY);
    http_response_free(&resp);
    hostile_check_recovers(kc);
    kube_client_free(kc);
}

/* A body that never finishes ends at the request's deadline, and a stalled one at the
 * low-speed guard, whichever the caller set; neither blocks the caller beyond it. */
TEST(hostile_never_ending_slow_body_times_out) {
    HOSTILE_SETUP("slow");
    kube_call call = {.method = "GET", .path = "/api/v1/namespaces/ns/pods/x", .timeout_ms = 2000};
    http_response resp;
    http_response_init(&resp);
    int64_t t0 = wc_now_ms();
    CHECK_INT_EQ(kube_do(kc, &call, &resp, &err), -1);
    int64_t took = wc_now_ms() - t0;
    CHECK_INT_EQ(err.code, WC_ETIMEOUT);
    CHECK(took >= 1500 && took < 6000);
    http_response_free(&resp);

    /* The low-speed guard (used by streams): < 100 B/s for 2 s ends it. */
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/slow/x", g_hostile.port);
    http_request req = {.method = "GET", .url = url, .timeout_ms = 60000, .low_speed_bytes = 100, .low_speed_time_s = 2};
    http_response_init(&resp);
    t0 = wc_now_ms();
    CHECK_INT_EQ(http_do(kc->http, &req, &resp, &err), -1);
    took = wc_now_ms() - t0;
    CHECK_INT_EQ(err.code, WC_ETIMEOUT);
    CHECK(took < 10000);
    http_response_free(&resp);

    /* The client's default deadline applies when the call sets none. */
    kc->timeout_ms = 1500;
    kube_call dflt = {.method = "GET", .path = "/api/v1/namespaces/ns/pods/y"};
    http_response_init(&resp);
    t0 = wc_now_ms();
    CHECK_INT_EQ(kube_do(kc, &dflt, &resp, &err), -1);
    CHECK_INT_EQ(err.code, WC_ETIMEOUT);
    CHECK(wc_now_ms() - t0 < 6000);
    http_response_free(&resp);
    kc->timeout_ms = 30000;
    hostile_check_recovers(kc);
    kube_client_free(kc);
}

/* A quiet watch sleeps longer and longer (up to 10 s) between polls, waking at once for data or a
 * cancel — it polled every 100 ms: 40 wakeups a second for an idle controller's four watches. A
 * cancel still ends it at once: kube_client_cancel wakes every transfer. */
typedef struct {
    kube_client *kc;
    int rc;
    int64_t ended_ms;
    wc_err err;
} hostile_hang_call;

static void *hostile_hang_thread(void *arg) {
    hostile_hang_call *h = arg;
    kube_call call = {.method = "GET", .path = "/api/v1/namespaces/ns/pods?watch=1", .timeout_ms = 60000};
    http_response resp;
    http_response_init(&resp);
    err_clear(&h->err);
    h->rc = kube_do(h->kc, &call, &resp, &h->err);
    h->ended_ms = wc_now_ms();
    http_response_free(&resp);
    return NULL;
}

TEST(hostile_quiet_watch_sleeps_until_cancelled) {
    HOSTILE_SETUP("hang");
    hostile_hang_call h = {.kc = kc};
    long polls0 = atomic_load(&http_polls);
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, hostile_hang_thread, &h) == 0);
    struct timespec quiet = {1, 500000000L};
    nanosleep(&quiet, NULL);
    long polls_quiet = atomic_load(&http_polls) - polls0;
    int64_t cancelled_at = wc_now_ms();
    kube_client_cancel(kc);
    pthread_join(t, NULL);
    CHECK_INT_EQ(h.rc, -1);
    CHECK_CONTAINS(h.err.msg, "cancelled");
    CHECK(h.ended_ms - cancelled_at < 1000); /* at once: woken, not found by a later poll */
    CHECK(polls_quiet <= 8);                 /* 1.5 s of silence: 100, 200, 400, 800 ms..., not 15 */
    kube_client_free(kc);
}

/* The informer: invalid JSON in the watch stream ends that watch with an error (the events
 * before it are applied, nothing after), the cache survives, and the next watch and list work.
 * A truncated watch and an event line that never ends behave the same way. */
TEST(hostile_informer_survives_bad_watch_streams) {
    HOSTILE_SETUP("ok");
    kube_informer_options o;
    memset(&o, 0, sizeof o);
    o.resource = &KUBE_PODS;
    o.namespace = "ns";
    o.watch_min_s = o.watch_max_s = 5;
    kube_informer *inf = kube_informer_new(kc, "hostile-pods", &o);
    REQUIRE(kube_informer_list(inf, &err) == 0);
    CHECK_INT_EQ(kube_informer_len(inf), 1);
    CHECK_STR_EQ(inf->last_rv, "10");

    int healthy = 0;
    hostile_mode(kc, "badjson");
    int64_t t0 = wc_now_ms();
    CHECK_INT_EQ(kube_informer_watch(inf, 0, &healthy, &err), -1);
    CHECK(wc_now_ms() - t0 < 5000); /* ended at the bad line, not at the server's leisure */
    CHECK_INT_EQ(err.code, WC_EPARSE);
    CHECK_INT_EQ(kube_informer_len(inf), 2); /* pod c, decoded before the garbage */
    CHECK_STR_EQ(inf->last_rv, "12");
    CHECK_INT_EQ(inf->stats.watch_errors, 1);

    hostile_mode(kc, "truncchunk");
    CHECK_INT_EQ(kube_informer_watch(inf, 0, &healthy, &err), -1);
    CHECK(err.code == WC_EIO || err.code == WC_EPARSE);
    CHECK_INT_EQ(kube_informer_len(inf), 2);

    hostile_mode(kc, "hugeline");
    long rss0 = hostile_maxrss_kib();
    CHECK_INT_EQ(kube_informer_watch(inf, 0, &healthy, &err), -1);
    CHECK_INT_EQ(err.code, WC_ETOOBIG);
    CHECK((hostile_maxrss_kib() - rss0) / 1024 < 64);
    CHECK_INT_EQ(inf->stats.watch_errors, 3);

    hostile_mode(kc, "ok");
    CHECK_INT_EQ(kube_informer_watch(inf, 0, &healthy, &err), 0);
    CHECK_INT_EQ(kube_informer_len(inf), 3); /* pod b */
    CHECK_STR_EQ(inf->last_rv, "11");
    /* A relist replaces the cache with the server's truth (a, only). */
    CHECK_INT_EQ(kube_informer_list(inf, &err), 0);
    CHECK_INT_EQ(kube_informer_len(inf), 1);
    /* A streamed list whose stream ends before the initial-events-end bookmark is incomplete:
     * its events are applied, but nothing is deleted and last_rv does not move. */
    CHECK_INT_EQ(kube_informer_watch(inf, 1, &healthy, &err), KUBE_WATCH_INCOMPLETE);
    CHECK(strstr(err.msg, "ended before its initial events did") != NULL);
    CHECK_INT_EQ(kube_informer_len(inf), 2);
    CHECK_STR_EQ(inf->last_rv, "10");
    CHECK_INT_EQ(inf->stats.streamed, 0);
    kube_informer_free(inf);

    /* The informer thread: three incomplete streams, then it lists in pages and syncs. */
    o.backoff_min_ms = 20;
    o.backoff_max_ms = 40;
    inf = kube_informer_new(kc, "hostile-pods", &o);
    REQUIRE(kube_informer_start(inf, &err) == 0);
    CHECK_INT_EQ(kube_informer_wait_synced(inf, 10000), 0);
    CHECK_INT_EQ(inf->stream_refused, 1);
    CHECK(inf->stats.lists >= 4); /* three streams, one paged list */
    CHECK_INT_EQ(inf->stats.streamed, 0);
    kube_client_cancel(kc); /* the informer's watch is woken to see it */
    kube_informer_free(inf);
    kube_client_free(kc);
}

/* Wrong certificate through the Kubernetes client: a TLS error naming the cause, never a
 * request sent; verification cannot be skipped without the kubeconfig's explicit opt-out,
 * and an https server without a CA is refused up front. */
TEST(hostile_wrong_certificate_is_refused_by_the_kube_client) {
    wc_err err;
    err_clear(&err);
    REQUIRE(http_test_server() == 0);
    kube_config cfg;
    memset(&cfg, 0, sizeof cfg);
    buf s = BUF_INIT;
    buf_printf(&s, "https://" HTTP_TEST_HOST ":%d", g_tls_srv.plain_port);
    cfg.server = buf_steal(&s);
    buf r = BUF_INIT;
    buf_printf(&r, HTTP_TEST_HOST ":%d:127.0.0.1", g_tls_srv.plain_port);
    cfg.resolve = buf_steal(&r);
    cfg.token = xstrdup("wrong-cert-token-Kp4");

    /* No CA, no opt-out: refused before any connection. */
    CHECK(kube_client_new(&cfg, &err) == NULL);
    CHECK_INT_EQ(err.code, WC_EINVAL);
    CHECK_CONTAINS(err.msg, "needs a CA");

    buf_puts(&cfg.ca_pem, g_tls_srv.wrong_ca);
    kube_client *kc = kube_client_new(&cfg, &err);
    REQUIRE(kc);
    cJSON *obj = NULL;
    CHECK_INT_EQ(kube_get(kc, &KUBE_PODS, "ns", "p", NULL, &obj, &err), -1);
    CHECK_INT_EQ(err.code, WC_ETLS);
    CHECK_CONTAINS(err.msg, "trust anchor");
    CHECK_NOT_CONTAINS(err.msg, "wrong-cert-token");
    /* Same client, again: still refused (no fallback to unverified on retry). */
    CHECK_INT_EQ(kube_get(kc, &KUBE_PODS, "ns", "p", NULL, &obj, &err), -1);
    CHECK_INT_EQ(err.code, WC_ETLS);
    kube_client_free(kc);

    /* The right CA: the handshake succeeds and the server's answer (an HTTP status) is seen. */
    buf_reset(&cfg.ca_pem);
    buf_puts(&cfg.ca_pem, g_tls_srv.ca);
    kc = kube_client_new(&cfg, &err);
    REQUIRE(kc);
    int rc = kube_get(kc, &KUBE_PODS, "ns", "p", NULL, &obj, &err);
    CHECK(rc == 0 || err.code == WC_EHTTP);
    cJSON_Delete(obj);
    obj = NULL;
    kube_client_free(kc);

    /* Only the explicit opt-out skips verification. */
    buf_reset(&cfg.ca_pem);
    cfg.insecure_skip_verify = 1;
    kc = kube_client_new(&cfg, &err);
    REQUIRE(kc);
    rc = kube_get(kc, &KUBE_PODS, "ns", "p", NULL, &obj, &err);
    CHECK(rc == 0 || err.code == WC_EHTTP);
    cJSON_Delete(obj);
    kube_client_free(kc);
    kube_config_free(&cfg);
}

/* explain's snapshot lists again when the continue token expires — a bounded number of times,
 * then says so (it looped for as long as the server kept answering 410). */
TEST(hostile_snapshot_gives_up_on_a_list_that_always_expires) {
    HOSTILE_SETUP("expired");
    char sel[64];
    snprintf(sel, sizeof sel, "hiclaw.io/worker=alice");
    kube_informer_options o = {.resource = &KUBE_PODS, .namespace = "ns", .label_selector = sel};
    kube_informer *inf = kube_informer_snapshot(kc, "hostile-snapshot", &o, &err);
    CHECK(inf == NULL);
    CHECK_CONTAINS(err.msg, "continue token expired 5 times");
    kube_informer_free(inf);
    hostile_check_recovers(kc);
    kube_client_free(kc);
}

TEST(informer_keeps_its_own_copy_of_the_selectors) {
    char ns[8] = "ns", sel[32] = "a=b", fsel[32] = "metadata.name=x";
    kube_informer_options o = {.resource = &KUBE_PODS, .namespace = ns, .label_selector = sel, .field_selector = fsel};
    kube_informer *inf = kube_informer_new(NULL, "copies", &o);
    memset(sel, 'z', sizeof sel - 1);
    memset(fsel, 'z', sizeof fsel - 1);
    ns[0] = 'X';
    CHECK_STR_EQ(inf->o.label_selector, "a=b");
    CHECK_STR_EQ(inf->o.field_selector, "metadata.name=x");
    CHECK_STR_EQ(inf->o.namespace, "ns");
    kube_informer_free(inf);
}
