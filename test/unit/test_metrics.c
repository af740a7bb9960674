/* test_metrics.c — the Prometheus histogram (bucketing, exposition) and the Worker metrics:
 * when a startup, a claim, a recreate and a blocked switch are observed, and that each is
 * observed once. */

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

/* ---- the Worker metrics ---- */

/* The real table's policies, as run's controller has them. */
typedef struct tm_env {
    arena a;
    backend_policy pol[2];
    const backend_policy *list[2];
    sandbox_policy_cfg scfg;
    worker_metrics m;
} tm_env;

static void tm_setup(tm_env *e) {
    arena_init(&e->a);
    e->scfg = (sandbox_policy_cfg){.deps_storage = 1};
    e->pol[0] = (backend_policy)POD_POLICY;
    e->pol[1] = (backend_policy)SANDBOX_POLICY(1, &e->scfg);
    e->list[0] = &e->pol[0], e->list[1] = &e->pol[1];
    wm_init(&e->m, e->list, 2);
}

static void tm_teardown(tm_env *e) {
    wm_release(&e->m);
    arena_free(&e->a);
}

/* A Worker alice (uid u1) created at 1000 s; spec and status as given. */
static worker tm_worker(tm_env *e, const char *spec_sq, const char *status_sq) {
    char j[1024];
    snprintf(j, sizeof j,
             "{'metadata':{'name':'alice','namespace':'ns','uid':'u1','generation':2,'creationTimestamp':"
             "'1970-01-01T00:16:40Z','finalizers':['hiclaw.io/cleanup']},'spec':%s%s%s}",
             spec_sq, status_sq ? ",'status':" : "", status_sq ? status_sq : "");
    worker w;
    td_worker(&e->a, j, &w);
    return w;
}

static long tm_count(metrics_histogram *h) {
    long n = 0;
    for (size_t i = 0; i <= METRICS_MAX_BUCKETS; i++) n += atomic_load(&h->counts[i]);
    return n;
}

static double tm_sum(metrics_histogram *h) {
    uint64_t bits = atomic_load(&h->sum_bits);
    double s;
    memcpy(&s, &bits, sizeof s);
    return s;
}

static decision tm_decision(const char *ready, int acting) {
    decision d;
    memset(&d, 0, sizeof d);
    d.acting = acting;
    set_ready(&d, ready, ready[0] == 'T' ? "Running" : "Starting", "");
    set_synced(&d, "True", "Reconciled", "");
    return d;
}

#define ST_PENDING "{'phase':'Pending','conditions':[{'type':'Ready','status':'False','reason':'Pending'}]}"
#define ST_READY "{'phase':'Running','conditions':[{'type':'Ready','status':'True','reason':'Running'}]}"
#define ST_SLEEPING "{'phase':'Sleeping','conditions':[{'type':'Ready','status':'False','reason':'Sleeping'}]}"
#define ST_INVALID "{'message':'bad','conditions':[{'type':'Ready','status':'False','reason':'InvalidSpec'}]}"

TEST(wm_startup_rule_table) {
    tm_env e;
    tm_setup(&e);
    decision creates = tm_decision("False", 0), none = tm_decision("False", 0);
    decide_action(&creates, ACT_CREATE_POD, "hiclaw-worker-alice", NULL, 0);
    struct {
        const char *spec, *status;
        const decision *d;
        int tracking, idle;
        wm_start want;
    } rows[] = {
        /* a new Worker whose first instance is being made: from creationTimestamp */
        {"{'model':'m'}", NULL, &creates, 0, 0, WM_START_CREATED},
        /* a new Worker invalid until its spec was fixed (perhaps hours later): from the fix, not
         * from creationTimestamp (no phase was ever written: InvalidSpec keeps it empty) */
        {"{'model':'m'}", ST_INVALID, &creates, 0, 0, WM_START_NOW},
        /* no status, but nothing to create (a legacy Worker whose Pod runs): no start */
        {"{'model':'m'}", NULL, &none, 0, 0, WM_START_KEEP},
        /* set to Running after Sleeping: status says so, or this process saw it */
        {"{'model':'m'}", ST_SLEEPING, &none, 0, 0, WM_START_NOW},
        {"{'model':'m'}", ST_PENDING, &none, 0, 1, WM_START_NOW},
        /* mid-start when this process began (status Pending, not seen idle): not timed */
        {"{'model':'m'}", ST_PENDING, &creates, 0, 0, WM_START_KEEP},
        /* being timed: kept until Ready */
        {"{'model':'m'}", ST_PENDING, &none, 1, 0, WM_START_KEEP},
        /* Ready already, Sleeping, Stopped, unmanaged, invalid: nothing starting */
        {"{'model':'m'}", ST_READY, &none, 1, 0, WM_START_FORGET},
        {"{'model':'m','state':'Sleeping'}", ST_PENDING, &none, 1, 0, WM_START_FORGET},
        {"{'model':'m','state':'Stopped'}", NULL, &none, 0, 0, WM_START_FORGET},
        {"{'model':'m','containerManaged':false}", NULL, &creates, 0, 0, WM_START_FORGET},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++) {
        worker w = tm_worker(&e, rows[i].spec, rows[i].status);
        wm_start got = wm_startup_rule(&w, rows[i].d, rows[i].tracking, rows[i].idle);
        if (got != rows[i].want) unit_fail(__FILE__, __LINE__, "row %zu: %d, want %d", i, (int)got, (int)rows[i].want);
    }
    worker w = tm_worker(&e, "{'model':'m'}", NULL);
    w.invalid = "bad";
    CHECK_INT_EQ(wm_startup_rule(&w, &creates, 0, 0), WM_START_FORGET);
    tm_teardown(&e);
}

/* A new Worker: timed from creationTimestamp (1000 s) to the report that writes Ready=True,
 * under the acting backend — once, however often Ready=True is written again or the cache
 * lags; nothing for a Worker whose status was Ready already. */
TEST(wm_startup_observed_once_from_creation) {
    tm_env e;
    tm_setup(&e);
    worker fresh = tm_worker(&e, "{'model':'m','backendRuntime':'sandbox'}", NULL);
    decision create = tm_decision("False", 1);
    decide_action(&create, ACT_CREATE_CLAIM, "hiclaw-worker-alice", NULL, 0);
    wm_decided(&e.m, "ns/alice", &fresh, &create, 1001);
    wm_reported(&e.m, "ns/alice", &fresh, &create, 1001); /* Ready=False: nothing */
    CHECK_INT_EQ(tm_count(&e.m.startup[1]), 0);

    worker pending = tm_worker(&e, "{'model':'m','backendRuntime':'sandbox'}", ST_PENDING);
    decision ready = tm_decision("True", 1);
    wm_decided(&e.m, "ns/alice", &pending, &ready, 1042);
    wm_reported(&e.m, "ns/alice", &pending, &ready, 1042.5);
    CHECK_INT_EQ(tm_count(&e.m.startup[1]), 1);
    CHECK(tm_sum(&e.m.startup[1]) == 42.5);
    CHECK_INT_EQ(tm_count(&e.m.startup[0]), 0);
    /* the cache still shows Pending (our write not seen yet): written again, not observed again */
    wm_decided(&e.m, "ns/alice", &pending, &ready, 1043);
    wm_reported(&e.m, "ns/alice", &pending, &ready, 1043);
    CHECK_INT_EQ(tm_count(&e.m.startup[1]), 1);
    /* steady: the record is gone */
    worker up = tm_worker(&e, "{'model':'m','backendRuntime':'sandbox'}", ST_READY);
    wm_decided(&e.m, "ns/alice", &up, &ready, 1050);
    wm_reported(&e.m, "ns/alice", &up, &ready, 1050);
    CHECK_INT_EQ(tm_count(&e.m.startup[1]), 1);
    CHECK_INT_EQ(e.m.track.len, 0);
    tm_teardown(&e);
}

/* Sleeping → Running: timed from the first reconcile that sees Running; a crash afterwards
 * (Ready False, then True again) is not a start. A fresh process (a restart) that finds the
 * Worker mid-start times nothing. */
TEST(wm_startup_after_sleeping_and_not_after_a_restart_mid_start) {
    tm_env e;
    tm_setup(&e);
    worker sleeping = tm_worker(&e, "{'model':'m','state':'Sleeping'}", ST_READY);
    decision stopping = tm_decision("False", 0);
    wm_decided(&e.m, "ns/alice", &sleeping, &stopping, 2000);
    worker asleep = tm_worker(&e, "{'model':'m','state':'Sleeping'}", ST_SLEEPING);
    wm_decided(&e.m, "ns/alice", &asleep, &stopping, 2001);
    CHECK_INT_EQ(e.m.track.len, 1); /* remembered idle */
    worker woken = tm_worker(&e, "{'model':'m'}", ST_SLEEPING);
    decision pending = tm_decision("False", 0);
    decide_action(&pending, ACT_CREATE_POD, "hiclaw-worker-alice", NULL, 0);
    wm_decided(&e.m, "ns/alice", &woken, &pending, 2100);
    worker starting = tm_worker(&e, "{'model':'m'}", ST_PENDING);
    decision ready = tm_decision("True", 0);
    wm_decided(&e.m, "ns/alice", &starting, &ready, 2107);
    wm_reported(&e.m, "ns/alice", &starting, &ready, 2107);
    CHECK_INT_EQ(tm_count(&e.m.startup[0]), 1);
    CHECK(tm_sum(&e.m.startup[0]) == 7);

    /* a crash: Ready False, then True again — not a start */
    worker crashed = tm_worker(&e, "{'model':'m'}", ST_PENDING);
    decision notready = tm_decision("False", 0);
    wm_decided(&e.m, "ns/alice", &crashed, &notready, 2200);
    wm_decided(&e.m, "ns/alice", &crashed, &ready, 2210);
    wm_reported(&e.m, "ns/alice", &crashed, &ready, 2210);
    CHECK_INT_EQ(tm_count(&e.m.startup[0]), 1);

    /* Sleeping seen, then Running again before anything stopped (still Ready): no start, and a
     * crash later is not one either */
    wm_decided(&e.m, "ns/alice", &sleeping, &stopping, 2300);
    worker still_up = tm_worker(&e, "{'model':'m'}", ST_READY);
    wm_decided(&e.m, "ns/alice", &still_up, &ready, 2301);
    wm_decided(&e.m, "ns/alice", &crashed, &notready, 2310);
    wm_decided(&e.m, "ns/alice", &crashed, &ready, 2320);
    wm_reported(&e.m, "ns/alice", &crashed, &ready, 2320);
    CHECK_INT_EQ(tm_count(&e.m.startup[0]), 1);

    /* a restarted controller (fresh metrics) finds a Worker mid-start: not observed */
    wm_release(&e.m);
    wm_init(&e.m, e.list, 2);
    wm_decided(&e.m, "ns/alice", &starting, &notready, 3000);
    wm_decided(&e.m, "ns/alice", &starting, &ready, 3005);
    wm_reported(&e.m, "ns/alice", &starting, &ready, 3005);
    CHECK_INT_EQ(tm_count(&e.m.startup[0]), 0);
    CHECK_INT_EQ(e.m.track.len, 0);
    tm_teardown(&e);
}

/* A Worker deleted and recreated under the same name starts afresh; deletion forgets it. */
TEST(wm_startup_forgets_deleted_and_replaced_workers) {
    tm_env e;
    tm_setup(&e);
    worker fresh = tm_worker(&e, "{'model':'m'}", NULL);
    decision create = tm_decision("False", 0);
    decide_action(&create, ACT_CREATE_POD, "hiclaw-worker-alice", NULL, 0);
    wm_decided(&e.m, "ns/alice", &fresh, &create, 1001);
    CHECK_INT_EQ(e.m.track.len, 1);
    worker deleting = fresh;
    deleting.deleting = 1;
    wm_decided(&e.m, "ns/alice", &deleting, &create, 1002);
    CHECK_INT_EQ(e.m.track.len, 0);

    wm_decided(&e.m, "ns/alice", &fresh, &create, 1001);
    worker other = tm_worker(&e, "{'model':'m'}", ST_PENDING);
    other.uid = "u2"; /* same name, another object, found mid-start: its predecessor's timer does not apply */
    decision ready = tm_decision("True", 0);
    wm_decided(&e.m, "ns/alice", &other, &ready, 1100);
    wm_reported(&e.m, "ns/alice", &other, &ready, 1100);
    CHECK_INT_EQ(tm_count(&e.m.startup[0]), 0);
    wm_forget(&e.m, "ns/alice");
    CHECK_INT_EQ(e.m.track.len, 0);
    tm_teardown(&e);
}

/* Entering BackendSwitchBlocked counts once: not on every reconcile while blocked, not when the
 * status already said so (a restart), again after the block ended. */
TEST(wm_switch_blocked_counts_transitions) {
    tm_env e;
    tm_setup(&e);
    worker running = tm_worker(&e, "{'model':'m','backendRuntime':'sandbox'}", ST_READY);
    decision blocked = tm_decision("True", -1);
    set_synced(&blocked, "False", "BackendSwitchBlocked", "spec.backendRuntime cannot change");
    decision fine = tm_decision("True", 0);
    wm_decided(&e.m, "ns/alice", &running, &blocked, 1);
    wm_decided(&e.m, "ns/alice", &running, &blocked, 2); /* cache behind our status write */
    CHECK_INT_EQ(atomic_load(&e.m.switch_blocked), 1);
    worker says_blocked = tm_worker(&e, "{'model':'m','backendRuntime':'sandbox'}",
                                    "{'phase':'Running','conditions':[{'type':'Ready','status':'True'},"
                                    "{'type':'Synced','status':'False','reason':'BackendSwitchBlocked'}]}");
    wm_decided(&e.m, "ns/alice", &says_blocked, &blocked, 3);
    CHECK_INT_EQ(atomic_load(&e.m.switch_blocked), 1);
    wm_decided(&e.m, "ns/alice", &says_blocked, &fine, 4); /* switched back: unblocked */
    wm_decided(&e.m, "ns/alice", &running, &blocked, 5);
    CHECK_INT_EQ(atomic_load(&e.m.switch_blocked), 2);
    /* a restart: the status says blocked already */
    wm_release(&e.m);
    wm_init(&e.m, e.list, 2);
    wm_decided(&e.m, "ns/alice", &says_blocked, &blocked, 6);
    CHECK_INT_EQ(atomic_load(&e.m.switch_blocked), 0);
    tm_teardown(&e);
}

/* Each replaced instance counts once, under its backend and reason. */
TEST(wm_recreates_count_each_instance_once) {
    tm_env e;
    tm_setup(&e);
    worker w = tm_worker(&e, "{'model':'m'}", ST_READY);
    wm_recreated(&e.m, "ns/alice", &w, 0, "Recreating", "pod-1");
    wm_recreated(&e.m, "ns/alice", &w, 0, "Recreating", "pod-1"); /* the same decision again (stale cache) */
    wm_recreated(&e.m, "ns/alice", &w, 0, "PodFailed", "pod-2");
    wm_recreated(&e.m, "ns/alice", &w, 1, "SandboxLost", "claim-1");
    CHECK_INT_EQ(atomic_load(&e.m.recreates[0][0]), 1);
    CHECK_INT_EQ(atomic_load(&e.m.recreates[0][1]), 1);
    CHECK_INT_EQ(atomic_load(&e.m.recreates[1][2]), 1);
    buf b = BUF_INIT;
    wm_render(&b, &e.m);
    CHECK_CONTAINS(buf_cstr(&b), "hiclaw_worker_recreates_total{backend=\"pod\",reason=\"Recreating\"} 1\n");
    CHECK_CONTAINS(buf_cstr(&b), "hiclaw_worker_recreates_total{backend=\"pod\",reason=\"PodFailed\"} 1\n");
    CHECK_CONTAINS(buf_cstr(&b), "hiclaw_worker_recreates_total{backend=\"sandbox\",reason=\"SandboxLost\"} 1\n");
    CHECK_CONTAINS(buf_cstr(&b), "hiclaw_worker_recreates_total{backend=\"sandbox\",reason=\"ClaimFailed\"} 0\n");
    CHECK_NOT_CONTAINS(buf_cstr(&b), "backend=\"pod\",reason=\"SandboxLost\"");
    buf_free(&b);
    tm_teardown(&e);
}

/* A claim this process created is timed to the reconcile that sees it Completed with its
 * sandbox; a failed or deleted one is dropped unobserved; a claim it did not create (made
 * before a restart) is never timed. */
TEST(wm_claim_timed_from_create_to_completed) {
    tm_env e;
    tm_setup(&e);
    worker w = tm_worker(&e, "{'model':'m','backendRuntime':'sandbox'}", ST_PENDING);
    wm_claim_created(&e.m, "ns/alice", &w, "hiclaw-worker-alice", 100);
    wm_claim_seen(&e.m, "ns/alice", &w, "hiclaw-worker-alice", 0, "Claiming", 0, 1, 101);
    wm_claim_seen(&e.m, "ns/alice", &w, "other", 0, "Completed", 1, 1, 102);
    CHECK_INT_EQ(tm_count(&e.m.claim), 0);
    wm_claim_seen(&e.m, "ns/alice", &w, "hiclaw-worker-alice", 0, "Completed", 1, 1, 112.5);
    wm_claim_seen(&e.m, "ns/alice", &w, "hiclaw-worker-alice", 0, "Completed", 1, 1, 113);
    CHECK_INT_EQ(tm_count(&e.m.claim), 1);
    CHECK(tm_sum(&e.m.claim) == 12.5);
    /* timed out (Completed, nothing claimed), and deleted: dropped */
    wm_claim_created(&e.m, "ns/alice", &w, "hiclaw-worker-alice", 200);
    wm_claim_seen(&e.m, "ns/alice", &w, "hiclaw-worker-alice", 0, "Completed", 0, 1, 290);
    wm_claim_seen(&e.m, "ns/alice", &w, "hiclaw-worker-alice", 0, "Completed", 1, 1, 291);
    wm_claim_created(&e.m, "ns/alice", &w, "hiclaw-worker-alice", 300);
    wm_claim_seen(&e.m, "ns/alice", &w, "hiclaw-worker-alice", 1, "Claiming", 0, 1, 301);
    wm_claim_seen(&e.m, "ns/alice", &w, "hiclaw-worker-alice", 0, "Completed", 1, 1, 302);
    CHECK_INT_EQ(tm_count(&e.m.claim), 1);
    CHECK_INT_EQ(e.m.track.len, 0);
    tm_teardown(&e);
}

/* Every family with HELP and TYPE, every series present at 0 from the start, label values from
 * the table only, and each sample line well formed. */
TEST(wm_render_every_series_from_the_start) {
    tm_env e;
    tm_setup(&e);
    wm_deps_written(&e.m, 0.3);
    buf b = BUF_INIT;
    wm_render(&b, &e.m);
    const char *t = buf_cstr(&b);
    const char *families[][2] = {{"hiclaw_worker_startup_seconds", "histogram"},
                                 {"hiclaw_worker_deps_write_seconds", "histogram"},
                                 {"hiclaw_sandbox_claim_seconds", "histogram"},
                                 {"hiclaw_worker_recreates_total", "counter"},
                                 {"hiclaw_backend_switch_blocked_total", "counter"}};
    for (size_t i = 0; i < 5; i++) {
        char want[160];
        snprintf(want, sizeof want, "# HELP %s ", families[i][0]);
        CHECK_CONTAINS(t, want);
        snprintf(want, sizeof want, "# TYPE %s %s\n", families[i][0], families[i][1]);
        CHECK_CONTAINS(t, want);
    }
    CHECK_CONTAINS(t, "hiclaw_worker_startup_seconds_count{backend=\"pod\"} 0\n");
    CHECK_CONTAINS(t, "hiclaw_worker_startup_seconds_bucket{backend=\"sandbox\",le=\"900\"} 0\n");
    CHECK_CONTAINS(t, "hiclaw_worker_deps_write_seconds_bucket{le=\"0.35\"} 1\n");
    CHECK_CONTAINS(t, "hiclaw_worker_deps_write_seconds_count 1\n");
    CHECK_CONTAINS(t, "hiclaw_sandbox_claim_seconds_count 0\n");
    CHECK_CONTAINS(t, "hiclaw_backend_switch_blocked_total 0\n");
    /* <name>[{labels}] <number>, or a comment */
    char *copy = xstrdup(t);
    size_t samples = 0;
    for (char *line = strtok(copy, "\n"); line; line = strtok(NULL, "\n")) {
        if (line[0] == '#') continue;
        samples++;
        char *sp = strrchr(line, ' ');
        REQUIRE(sp != NULL);
        char *end;
        strtod(sp + 1, &end);
        if (*end) unit_fail(__FILE__, __LINE__, "value of %s", line);
        const char *brace = strchr(line, '{');
        if (brace && !(sp[-1] == '}')) unit_fail(__FILE__, __LINE__, "labels of %s", line);
        for (const char *p = line; p < (brace ? brace : sp); p++)
            if (!(isalnum((unsigned char)*p) || *p == '_')) unit_fail(__FILE__, __LINE__, "name of %s", line);
    }
    /* 2 startup + deps + claim histograms of 48/40/48 buckets (+Inf, sum, count), 6 recreate rows, 1 */
    CHECK_INT_EQ(samples, 2 * 51 + 43 + 51 + 6 + 1);
    free(copy);
    buf_free(&b);
    tm_teardown(&e);
}

/* The policies name each replacement, with the UID of the instance going. */
TEST(wm_decisions_name_their_recreates) {
    arena a;
    arena_init(&a);
    const char *running = "{" W_BASE ",'spec':{'model':'m'}}";
    obs_pod stale = td_pod("Running", 1, NULL);
    stale.spec_hash = "0000000000000000";
    td_obs o = {.pods = &stale, .npods = 1};
    decision d = td_decide(&a, running, &o, &TD_POD);
    CHECK_STR_EQ(d.recreate, "Recreating");
    CHECK_STR_EQ(d.recreate_uid, "pod-uid");
    obs_pod failed = td_pod("Failed", 0, NULL);
    o.pods = &failed;
    d = td_decide(&a, running, &o, &TD_POD);
    CHECK_STR_EQ(d.recreate, "PodFailed");
    obs_pod ok = td_pod("Running", 1, NULL);
    o.pods = &ok;
    d = td_decide(&a, running, &o, &TD_POD);
    CHECK(d.recreate == NULL);
    /* every reason a policy gives is one it lists */
    const char *const *pr = POD_RECREATE_REASONS, *const *sr = SANDBOX_RECREATE_REASONS;
    CHECK_STR_EQ(pr[0], "Recreating");
    CHECK_STR_EQ(pr[1], "PodFailed");
    CHECK(pr[2] == NULL);
    CHECK_STR_EQ(sr[1], "ClaimFailed");
    CHECK_STR_EQ(sr[2], "SandboxLost");
    CHECK_STR_EQ(sr[3], "SandboxFailed");
    arena_free(&a);
}

/* Through the shell against the fake API server: a new pod Worker's first reconcile starts
 * the timer (from creationTimestamp), the reconcile that writes Ready=True observes it under
 * backend="pod"; its Pod replaced for a spec change counts one recreate, however many
 * reconciles decide it before the cache sees the delete. */
TEST(wm_shell_pod_startup_and_recreate_through_reconcile) {
    SHELL_SETUP();
    shell_informers(&ctl);
    shell_worker(&ctl, ",'creationTimestamp':'2026-01-01T00:00:00Z'", "{'model':'m'}", NULL);
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    CHECK_INT_EQ(tm_count(&ctl.metrics.startup[0]), 0);
    cJSON *pod = fake_get(NS_PODS "/hiclaw-worker-alice");
    REQUIRE(pod != NULL);
    cJSON_AddItemToObject(pod, "status", cJSON_Parse("{\"phase\":\"Running\",\"conditions\":[{\"type\":\"Ready\",\"status\":\"True\"}]}"));
    kube_informer_apply(SHELL_PODS(&ctl), KUBE_WATCH_ADDED, pod);
    cJSON *wk = shell_worker_now(); /* status Pending, as the watch would deliver it */
    REQUIRE(wk != NULL);
    kube_informer_apply(ctl.workers, KUBE_WATCH_MODIFIED, wk);
    cJSON_Delete(wk);
    res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    wk = shell_worker_now();
    CHECK_STR_EQ(cond_field(wk, "Ready", "status"), "True");
    cJSON_Delete(wk);
    CHECK_INT_EQ(tm_count(&ctl.metrics.startup[0]), 1);
    CHECK_INT_EQ(tm_count(&ctl.metrics.startup[1]), 0);
    CHECK(tm_sum(&ctl.metrics.startup[0]) > 24 * 3600); /* from 2026-01-01: the creation, not the first sight */
    res = reconcile_worker(&ctl, "ns/alice"); /* Ready=True again, cache behind: no second observation */
    CHECK_INT_EQ(tm_count(&ctl.metrics.startup[0]), 1);

    /* the image changes: the Pod goes (one recreate), twice decided while the cache still has it */
    wk = shell_worker_now();
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(wk, "spec"), "model", cJSON_CreateString("m"));
    cJSON_AddStringToObject(cJSON_GetObjectItem(wk, "spec"), "image", "img/openclaw:2");
    kube_informer_apply(ctl.workers, KUBE_WATCH_MODIFIED, wk);
    cJSON_Delete(wk);
    reconcile_worker(&ctl, "ns/alice");
    CHECK(!fake_get_exists(NS_PODS "/hiclaw-worker-alice"));
    reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(atomic_load(&ctl.metrics.recreates[0][0]), 1);
    CHECK_INT_EQ(atomic_load(&ctl.metrics.recreates[0][1]), 0);
    cJSON_Delete(pod);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}
