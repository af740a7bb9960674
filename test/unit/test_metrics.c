/* test_metrics.c — the Prometheus histogram (bucketing, exposition). */

/* ---- the histogram ---- */

TEST(metrics_histogram_buckets_are_inclusive_and_cumulative) {
    static const double le[] = {0.1, 1, 10};
    metrics_histogram h;
    metrics_histogram_init(&h, le, 3);
    double obs[] = {0.05, 0.1, 0.5, 1, 10, 11, -3, 0};
    for (size_t i = 0; i < sizeof obs / sizeof *obs; i++) metrics_histogram_observe(&h, obs[i]);
    buf b = BUF_INIT;
    metrics_histogram_render(&b, "t_seconds", "k=\"v\"", &h);
    /* 0.05, 0.1, -3 (as 0), 0 → le 0.1; 0.5, 1 → le 1; 10 → le 10; 11 → +Inf. Sum: -3 counts as 0. */
    CHECK_STR_EQ(buf_cstr(&b), "t_seconds_bucket{k=\"v\",le=\"0.1\"} 4\n"
                               "t_seconds_bucket{k=\"v\",le=\"1\"} 6\n"
                               "t_seconds_bucket{k=\"v\",le=\"10\"} 7\n"
                               "t_seconds_bucket{k=\"v\",le=\"+Inf\"} 8\n"
                               "t_seconds_sum{k=\"v\"} 22.65\n"
                               "t_seconds_count{k=\"v\"} 8\n");
    buf_free(&b);
}

TEST(metrics_histogram_without_labels_and_empty) {
    static const double le[] = {0.5, 2.5};
    metrics_histogram h;
    metrics_histogram_init(&h, le, 2);
    buf b = BUF_INIT;
    metrics_histogram_render(&b, "e", NULL, &h);
    CHECK_STR_EQ(buf_cstr(&b), "e_bucket{le=\"0.5\"} 0\ne_bucket{le=\"2.5\"} 0\ne_bucket{le=\"+Inf\"} 0\ne_sum 0\ne_count 0\n");
    buf_free(&b);
    metrics_histogram_observe(&h, 2.5);
    metrics_histogram_render(&b, "e", "", &h);
    CHECK_CONTAINS(buf_cstr(&b), "e_bucket{le=\"0.5\"} 0\ne_bucket{le=\"2.5\"} 1\n");
    CHECK_CONTAINS(buf_cstr(&b), "e_sum 2.5\ne_count 1\n");
    buf_free(&b);
}

/* A zeroed histogram (run's reconcile_time before init) has controller-runtime's reconcile
 * buckets; the long ones extend them to 15 minutes. */
TEST(metrics_histogram_default_and_long_buckets) {
    metrics_histogram h;
    memset(&h, 0, sizeof h);
    metrics_histogram_observe(&h, 61);
    buf b = BUF_INIT;
    metrics_histogram_render(&b, "r", "controller=\"worker\"", &h);
    CHECK_CONTAINS(buf_cstr(&b), "r_bucket{controller=\"worker\",le=\"0.005\"} 0\n");
    CHECK_CONTAINS(buf_cstr(&b), "r_bucket{controller=\"worker\",le=\"60\"} 0\nr_bucket{controller=\"worker\",le=\"+Inf\"} 1\n");
    size_t lines = 0;
    for (const char *p = buf_cstr(&b); *p; p++) lines += *p == '\n';
    CHECK_INT_EQ(lines, METRICS_COUNT_OF(METRICS_RECONCILE_BUCKETS) + 3);
    buf_free(&b);
    CHECK_INT_EQ(METRICS_COUNT_OF(METRICS_LONG_BUCKETS), METRICS_MAX_BUCKETS);
    for (size_t i = 0; i < METRICS_COUNT_OF(METRICS_RECONCILE_BUCKETS); i++)
        CHECK(METRICS_LONG_BUCKETS[i] == METRICS_RECONCILE_BUCKETS[i]);
    for (size_t i = 1; i < METRICS_COUNT_OF(METRICS_LONG_BUCKETS); i++) CHECK(METRICS_LONG_BUCKETS[i] > METRICS_LONG_BUCKETS[i - 1]);
    CHECK(METRICS_LONG_BUCKETS[METRICS_MAX_BUCKETS - 1] == 900);
}

typedef struct tm_obs_arg {
    metrics_histogram *h;
    int n;
} tm_obs_arg;

static void *tm_observe_many(void *p) {
    tm_obs_arg *a = p;
    for (int i = 0; i < a->n; i++) metrics_histogram_observe(a->h, 0.25);
    return NULL;
}

/* Observations from several threads: none lost, the sum exact (0.25 is exact in binary). */
TEST(metrics_histogram_concurrent_observations_are_all_counted) {
    metrics_histogram h;
    metrics_histogram_init(&h, METRICS_RECONCILE_BUCKETS, METRICS_COUNT_OF(METRICS_RECONCILE_BUCKETS));
    pthread_t t[4];
    tm_obs_arg arg = {&h, 20000};
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, tm_observe_many, &arg);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    buf b = BUF_INIT;
    metrics_histogram_render(&b, "c", NULL, &h);
    CHECK_CONTAINS(buf_cstr(&b), "c_sum 20000\nc_count 80000\n");
    CHECK_CONTAINS(buf_cstr(&b), "c_bucket{le=\"0.2\"} 0\nc_bucket{le=\"0.25\"} 80000\n");
    buf_free(&b);
}
