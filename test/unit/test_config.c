/* test_config.c — Kubernetes quantities and the configuration table (worker/quantity.c, config.c). */

TEST(qty_parse_valid_values) {
    static const struct { const char *in; int64_t milli; const char *canon; } ok[] = {
        {"0", 0, "0"},
        {"100m", 100, "100m"},
        {"1", 1000, "1"},
        {"+1", 1000, "1"},
        {"1000m", 1000, "1"},
        {"1500m", 1500, "1500m"},
        {"1.5", 1500, "1500m"},
        {".5", 500, "500m"},
        {"2.", 2000, "2"},
        {"0.1m", 1, "1m"},          /* below a milli-unit rounds up, as the API server does */
        {"1k", 1000000, "1k"},
        {"2000", 2000000, "2k"},
        {"1e3", 1000000, "1e3"},
        {"1E3", 1000000, "1e3"},
        {"1e-3", 1, "1m"},
        {"1P", 1000000000000000000LL, "1P"},
        {"4Pi", 4LL * 1125899906842624LL * 1000, "4Pi"},
        {"1Ki", 1024000, "1Ki"},
        {"512Mi", 512LL * 1024 * 1024 * 1000, "512Mi"},
        {"2Gi", 2LL * 1024 * 1024 * 1024 * 1000, "2Gi"},
        {"1.5Gi", 1536LL * 1024 * 1024 * 1000, "1536Mi"},
        {"1024Mi", 1024LL * 1024 * 1024 * 1000, "1Gi"},
        {"1000Ki", 1024000000, "1000Ki"},
        {"1M", 1000000000, "1M"},
        {"0.5Ki", 512000, "512"},   /* under 1024 a binary value is written in decimal */
        {"007", 7000, "7"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
        qty q;
        int rc = qty_parse(ok[i].in, &q);
        if (rc != 0) {
            unit_fail(__FILE__, __LINE__, "qty_parse(\"%s\") failed", ok[i].in);
            continue;
        }
        if (q.milli != ok[i].milli)
            unit_fail(__FILE__, __LINE__, "qty_parse(\"%s\") = %" PRId64 "m, want %" PRId64 "m", ok[i].in, q.milli,
                      ok[i].milli);
        if (strcmp(q.canon, ok[i].canon) != 0)
            unit_fail(__FILE__, __LINE__, "canonical(\"%s\") = \"%s\", want \"%s\"", ok[i].in, q.canon, ok[i].canon);
    }
}

TEST(qty_parse_rejects_invalid_values) {
    static const char *bad[] = {
        "", "abc", "1.2.3", "1GB", "1K", "1gi", "-1", "-1Gi", " 1", "1 ", "1 Gi", "Gi", "m", ".", "+",
        "1e", "1e+", "1ee3", "1Eix", "1i", "0x10", "1,5", "1m1",
        "1E", "1Ei", "9Pi", /* valid Kubernetes quantities, but beyond int64 milli-units (~9.2e15) */
        "10E", "1e30", "99999999999999999999999999999999999999999", NULL,
    };
    for (size_t i = 0; bad[i]; i++) {
        qty q;
        if (qty_parse(bad[i], &q) == 0)
            unit_fail(__FILE__, __LINE__, "qty_parse(\"%s\") accepted (%s)", bad[i], q.canon);
    }
    qty q;
    CHECK(qty_parse(NULL, &q) < 0);
}

TEST(qty_cmp_orders_across_formats) {
    qty a, b, c, d;
    REQUIRE(qty_parse("100m", &a) == 0 && qty_parse("0.1", &b) == 0 && qty_parse("1Gi", &c) == 0 &&
            qty_parse("1G", &d) == 0);
    CHECK_INT_EQ(qty_cmp(&a, &b), 0);
    CHECK_INT_EQ(qty_cmp(&c, &d), 1);
    CHECK_INT_EQ(qty_cmp(&d, &c), -1);
    CHECK_INT_EQ(qty_cmp(&a, &c), -1);
}

/* ---------------------------------------------------------------------------------------- */

/* Every variable of SPEC section 8 (and the _FILE variants the brief adds). */
static const char *spec8_vars[] = {
    "HICLAW_CONTROLLER_NAME", "HICLAW_K8S_NAMESPACE", "HICLAW_RESOURCE_PREFIX", "HICLAW_DEFAULT_WORKER_RUNTIME",
    "HICLAW_WORKER_IMAGE", "HICLAW_COPAW_WORKER_IMAGE", "HICLAW_HERMES_WORKER_IMAGE", "HICLAW_K8S_WORKER_CPU",
    "HICLAW_K8S_WORKER_MEMORY", "HICLAW_AUTH_AUDIENCE", "HICLAW_CONTROLLER_URL", "HICLAW_MATRIX_URL",
    "HICLAW_MATRIX_DOMAIN", "HICLAW_AI_GATEWAY_URL", "HICLAW_FS_ENDPOINT", "HICLAW_FS_BUCKET",
    "HICLAW_STORAGE_PREFIX", "HICLAW_REGION", "HICLAW_YOLO", "HICLAW_MATRIX_DEBUG", "HICLAW_SANDBOX_ENABLED",
    "HICLAW_AGENT_SANDBOX_ENABLED",
    "HICLAW_SANDBOX_POOL", "HICLAW_SANDBOX_MANAGE_POOL", "HICLAW_SANDBOX_AGENT_RUNTIME_IMAGE",
    "HICLAW_SANDBOX_PREWARM_SIZE", "HICLAW_SANDBOX_DEPS_PV", "HICLAW_SANDBOX_PAUSE", "HICLAW_SANDBOX_TOKEN_TTL",
    "HICLAW_SANDBOX_CLAIM_TIMEOUT", "HICLAW_SANDBOX_WAIT_READY_TIMEOUT", "HICLAW_WORKER_DEPS_ENDPOINT",
    "HICLAW_WORKER_DEPS_BUCKET", "HICLAW_WORKER_DEPS_PREFIX", "HICLAW_WORKER_DEPS_REGION",
    "HICLAW_WORKER_DEPS_ACCESS_KEY_ID", "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY",
    "HICLAW_WORKER_DEPS_ACCESS_KEY_ID_FILE", "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY_FILE",
    "HICLAW_WORKER_DEPS_CA_FILE", "HICLAW_LEADER_ELECT", "HICLAW_METRICS_ADDR", "HICLAW_HEALTH_ADDR",
    "HICLAW_LOG_FORMAT", "HICLAW_LOG_LEVEL", "HICLAW_CONCURRENCY",
    /* Issue 15, not yet in SPEC section 8 (noted for it): the explicit opt-in SPEC 7 asks for
     * before env files and tokens travel over plain http. */
    "HICLAW_WORKER_DEPS_ALLOW_PLAINTEXT_HTTP", NULL,
};

TEST(cfg_table_is_complete_unique_and_mechanical) {
    size_t n;
    const cfg_field *t = cfg_table(&n);
    size_t nspec = 0;
    for (; spec8_vars[nspec]; nspec++) {
        int found = 0;
        for (size_t i = 0; i < n; i++) found += strcmp(t[i].env, spec8_vars[nspec]) == 0;
        if (found != 1) unit_fail(__FILE__, __LINE__, "%s appears %d times in the table", spec8_vars[nspec], found);
    }
    CHECK_INT_EQ(n, nspec); /* and nothing beyond the SPEC */
    for (size_t i = 0; i < n; i++) {
        /* flag = env without HICLAW_, lowercased, '_' -> '-' */
        char want[128];
        REQUIRE(strncmp(t[i].env, "HICLAW_", 7) == 0);
        size_t k = 0;
        for (const char *p = t[i].env + 7; *p && k + 1 < sizeof want; p++) want[k++] = *p == '_' ? '-' : (char)tolower(*p);
        want[k] = '\0';
        CHECK_STR_EQ(t[i].flag, want);
        CHECK(t[i].help && *t[i].help && t[i].helm && *t[i].helm);
        for (size_t j = i + 1; j < n; j++) {
            if (strcmp(t[i].env, t[j].env) == 0) unit_fail(__FILE__, __LINE__, "duplicate env %s", t[i].env);
            if (strcmp(t[i].flag, t[j].flag) == 0) unit_fail(__FILE__, __LINE__, "duplicate flag %s", t[i].flag);
            if (strcmp(t[i].helm, t[j].helm) == 0) unit_fail(__FILE__, __LINE__, "duplicate helm %s", t[i].helm);
            if (t[i].off == t[j].off) unit_fail(__FILE__, __LINE__, "%s and %s share a field", t[i].env, t[j].env);
        }
        /* Secrets never carry a default that help would have to hide. */
        if (t[i].flags & CFG_SECRET) CHECK_STR_EQ(t[i].def, "");
    }
}

TEST(cfg_kube_flags_match_cli) {
    kube_connect_opts o = {0};
    cli_flag want[] = {KUBE_CONNECT_FLAGS(o)};
    size_t n = sizeof want / sizeof *want;
    CHECK_INT_EQ(n, sizeof cfg_kube_flags / sizeof *cfg_kube_flags);
    for (size_t i = 0; i < n && i < sizeof cfg_kube_flags / sizeof *cfg_kube_flags; i++) {
        CHECK_STR_EQ(cfg_kube_flags[i].flag, want[i].name);
        CHECK((char *)want[i].value - (char *)&o == (ptrdiff_t)cfg_kube_flags[i].off);
    }
}

/* Minimal valid storage for sandbox-enabled configurations. */
#define STORAGE_ENV                                                                                    \
    "HICLAW_WORKER_DEPS_ENDPOINT=https://minio.example:9000/", "HICLAW_WORKER_DEPS_BUCKET=hiclaw-deps", \
        "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=AKIDEXAMPLE123", "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY=sekrit-key-value-42"

static int load(wc_cfg *c, char **env, int argc, char **argv, wc_err *e) {
    err_clear(e);
    return cfg_load(c, env, argc, argv, e);
}

TEST(cfg_defaults_match_the_spec) {
    wc_cfg c;
    cfg_defaults(&c);
    CHECK_STR_EQ(c.controller_name, "hiclaw-controller");
    CHECK_STR_EQ(c.watch_namespace, "");
    CHECK_STR_EQ(c.resource_prefix, "hiclaw-");
    CHECK_STR_EQ(c.default_worker_runtime, "openclaw");
    CHECK_STR_EQ(c.worker_image, "hiclaw/worker-openclaw:latest");
    CHECK_STR_EQ(c.copaw_worker_image, "hiclaw/worker-copaw:latest");
    CHECK_STR_EQ(c.hermes_worker_image, "hiclaw/worker-hermes:latest");
    CHECK_INT_EQ(c.worker_cpu.milli, 1000);
    CHECK_STR_EQ(c.worker_memory.canon, "2Gi");
    CHECK_STR_EQ(c.auth_audience, "hiclaw-controller");
    CHECK_STR_EQ(c.controller_url, "");
    CHECK_INT_EQ(c.sandbox_mode, -1); /* auto (issue 19): cfg_load resolves it (cfg_sandbox_requires_storage) */
    CHECK_STR_EQ(c.sandbox_pool, "hiclaw-worker-pool");
    CHECK_INT_EQ(c.sandbox_manage_pool, 1);
    CHECK_STR_EQ(c.sandbox_agent_runtime_image, "hiclaw/agent-runtime:latest");
    CHECK_INT_EQ(c.sandbox_prewarm_size, 1);
    CHECK_STR_EQ(c.sandbox_deps_pv, "hiclaw-worker-deps");
    CHECK_INT_EQ(c.sandbox_pause, 0);
    CHECK_INT_EQ(c.sandbox_token_ttl_s, 86400);
    CHECK_INT_EQ(c.sandbox_claim_timeout_ms, 300000);
    CHECK_INT_EQ(c.sandbox_wait_ready_timeout_ms, 120000);
    CHECK_STR_EQ(c.worker_deps_prefix, "");
    CHECK_STR_EQ(c.worker_deps_region, "us-east-1");
    CHECK(c.worker_deps_ca_pem == NULL);
    CHECK_INT_EQ(c.leader_elect, 1);
    CHECK_STR_EQ(c.metrics_addr, ":8080");
    CHECK_STR_EQ(c.health_addr, ":8081");
    CHECK_STR_EQ(c.log_format, "auto");
    CHECK_STR_EQ(c.log_level, "info");
    CHECK_INT_EQ(c.concurrency, 4);
    cfg_free(&c);
    CHECK(c.controller_name == NULL);
    cfg_free(&c); /* idempotent */
}

TEST(cfg_env_parsing_and_flag_precedence) {
    char *env[] = {STORAGE_ENV,
                   "HICLAW_CONTROLLER_NAME=team-a",
                   "HICLAW_K8S_NAMESPACE=workers",
                   "HICLAW_SANDBOX_CLAIM_TIMEOUT=90s",
                   "HICLAW_CONCURRENCY=8",
                   "HICLAW_SANDBOX_PAUSE=yes",
                   "HICLAW_K8S_WORKER_CPU=2",
                   "HICLAW_WORKER_DEPS_PREFIX=tenant/a",
                   "HICLAW_LOG_FORMAT=json",
                   "HICLAW_LOG_LEVEL=debug",
                   "HICLAW_RESOURCE_PREFIX=", /* empty env: unset, default stays */
                   "HICLAW_MATRIX_URL=http://matrix:6167",
                   "UNRELATED=1",
                   NULL};
    char *argv[] = {"run", "--concurrency=16", "--controller-name", "team-b", "--sandbox-pause=false",
                    "--kubeconfig", "/tmp/kc", "--leader-elect=false", "--health-addr", "127.0.0.1:9000", NULL};
    wc_cfg c;
    wc_err e;
    REQUIRE(load(&c, env, 10, argv, &e) == 0);
    CHECK_STR_EQ(c.controller_name, "team-b");        /* flag beats env */
    CHECK_STR_EQ(c.watch_namespace, "workers");       /* env beats default */
    CHECK_INT_EQ(c.concurrency, 16);
    CHECK_INT_EQ(c.sandbox_pause, 0);
    CHECK_INT_EQ(c.leader_elect, 0);
    CHECK_INT_EQ(c.sandbox_claim_timeout_ms, 90000);
    CHECK_INT_EQ(c.worker_cpu.milli, 2000);
    CHECK_STR_EQ(c.worker_deps_prefix, "tenant/a/");  /* normalised */
    CHECK_STR_EQ(c.worker_deps_endpoint, "https://minio.example:9000"); /* trailing '/' dropped */
    CHECK_STR_EQ(c.resource_prefix, "hiclaw-");
    CHECK_STR_EQ(c.matrix_url, "http://matrix:6167");
    CHECK_STR_EQ(c.health_addr, "127.0.0.1:9000");
    CHECK_STR_EQ(c.kube.kubeconfig, "/tmp/kc");
    CHECK_INT_EQ(c.log_fmt, LOG_FORMAT_JSON);
    CHECK_INT_EQ(c.log_lvl, LOG_DEBUG);
    CHECK_STR_EQ(c.worker_deps_access_key_id, "AKIDEXAMPLE123");
    cfg_free(&c);

    /* An empty flag value really sets the empty string. */
    char *env2[] = {STORAGE_ENV, NULL};
    char *argv2[] = {"run", "--resource-prefix=", "--sandbox-enabled", NULL};
    REQUIRE(load(&c, env2, 3, argv2, &e) == 0);
    CHECK_STR_EQ(c.resource_prefix, "");
    CHECK_INT_EQ(c.sandbox_enabled, 1);
    cfg_free(&c);
}

/* Each invalid value is WC_EINVAL and the message names the variable and the flag. */
TEST(cfg_invalid_values_name_variable_and_flag) {
    static const struct { const char *env; const char *flag; const char *value; } bad[] = {
        {"HICLAW_CONTROLLER_NAME", "controller-name", "Team_A"},
        {"HICLAW_CONTROLLER_NAME", "controller-name", "a-very-long-controller-name-that-goes-past-sixty-three-characters-x"},
        {"HICLAW_K8S_NAMESPACE", "k8s-namespace", "Not.A.Namespace"},
        {"HICLAW_RESOURCE_PREFIX", "resource-prefix", "Hi_"},
        {"HICLAW_DEFAULT_WORKER_RUNTIME", "default-worker-runtime", "docker"},
        {"HICLAW_WORKER_IMAGE", "worker-image", "has space:1"},
        {"HICLAW_K8S_WORKER_CPU", "k8s-worker-cpu", "two"},
        {"HICLAW_K8S_WORKER_MEMORY", "k8s-worker-memory", "1GB"},
        {"HICLAW_K8S_WORKER_MEMORY", "k8s-worker-memory", "0"},
        {"HICLAW_SANDBOX_ENABLED", "sandbox-enabled", "maybe"},
        {"HICLAW_SANDBOX_POOL", "sandbox-pool", "Pool!"},
        {"HICLAW_SANDBOX_PREWARM_SIZE", "sandbox-prewarm-size", "-1"},
        {"HICLAW_SANDBOX_PREWARM_SIZE", "sandbox-prewarm-size", "1.5"},
        {"HICLAW_SANDBOX_TOKEN_TTL", "sandbox-token-ttl", "599"},
        {"HICLAW_SANDBOX_TOKEN_TTL", "sandbox-token-ttl", "1h"},
        {"HICLAW_SANDBOX_CLAIM_TIMEOUT", "sandbox-claim-timeout", "5 minutes"},
        {"HICLAW_SANDBOX_CLAIM_TIMEOUT", "sandbox-claim-timeout", "500ms"},
        {"HICLAW_SANDBOX_WAIT_READY_TIMEOUT", "sandbox-wait-ready-timeout", "-1s"},
        {"HICLAW_WORKER_DEPS_ENDPOINT", "worker-deps-endpoint", "minio:9000"},
        {"HICLAW_WORKER_DEPS_ENDPOINT", "worker-deps-endpoint", "https://minio:9000/bucket"},
        {"HICLAW_WORKER_DEPS_ENDPOINT", "worker-deps-endpoint", "https://user:pw@minio:9000"},
        {"HICLAW_WORKER_DEPS_ENDPOINT", "worker-deps-endpoint", "https://minio:99999"},
        {"HICLAW_WORKER_DEPS_BUCKET", "worker-deps-bucket", "Bucket_Name"},
        {"HICLAW_WORKER_DEPS_PREFIX", "worker-deps-prefix", "/abs/"},
        {"HICLAW_WORKER_DEPS_PREFIX", "worker-deps-prefix", "a/../b"},
        {"HICLAW_METRICS_ADDR", "metrics-addr", "8080"},
        {"HICLAW_HEALTH_ADDR", "health-addr", ":99999"},
        {"HICLAW_LOG_FORMAT", "log-format", "yaml"},
        {"HICLAW_LOG_LEVEL", "log-level", "loud"},
        {"HICLAW_CONCURRENCY", "concurrency", "0"},
        {"HICLAW_CONCURRENCY", "concurrency", "65"},
        {"HICLAW_CONCURRENCY", "concurrency", "4x"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        for (int via_flag = 0; via_flag < 2; via_flag++) {
            char envline[256], flagline[256];
            snprintf(envline, sizeof envline, "%s=%s", bad[i].env, bad[i].value);
            snprintf(flagline, sizeof flagline, "--%s=%s", bad[i].flag, bad[i].value);
            /* The first match wins in an env array: the bad line goes first. */
            char *env[] = {via_flag ? "HICLAW_SANDBOX_ENABLED=false" : envline, "HICLAW_SANDBOX_ENABLED=false", NULL};
            char *argv[] = {"run", flagline, NULL};
            wc_cfg c;
            wc_err e;
            int rc = load(&c, env, via_flag ? 2 : 1, argv, &e);
            if (rc == 0) {
                unit_fail(__FILE__, __LINE__, "%s=%s accepted (via %s)", bad[i].env, bad[i].value,
                          via_flag ? "flag" : "env");
                cfg_free(&c);
                continue;
            }
            char want[128];
            snprintf(want, sizeof want, "%s (--%s)", bad[i].env, bad[i].flag);
            CHECK_CONTAINS(e.msg, want);
            CHECK_INT_EQ(e.code, WC_EINVAL);
        }
    }
    wc_cfg c;
    wc_err e;
    char *env[] = {"HICLAW_SANDBOX_ENABLED=false", NULL};
    char *a1[] = {"run", "--sandbox-claim-timeout", "5 minutes", NULL};
    REQUIRE(load(&c, env, 3, a1, &e) < 0);
    CHECK_STR_EQ(e.msg, "HICLAW_SANDBOX_CLAIM_TIMEOUT (--sandbox-claim-timeout): \"5 minutes\" is not a duration "
                        "(e.g. 90s, 5m, 1h30m)");
    char *a2[] = {"run", "--no-such-flag=1", NULL};
    REQUIRE(load(&c, env, 2, a2, &e) < 0);
    CHECK_STR_EQ(e.msg, "unknown flag --no-such-flag");
    char *a3[] = {"run", "--sandbox-pool", NULL};
    REQUIRE(load(&c, env, 2, a3, &e) < 0);
    CHECK_CONTAINS(e.msg, "HICLAW_SANDBOX_POOL (--sandbox-pool)");
    char *a4[] = {"run", "positional", NULL};
    REQUIRE(load(&c, env, 2, a4, &e) < 0);
    CHECK_CONTAINS(e.msg, "positional");
    /* An invalid secret is reported without its value. */
    char *env5[] = {"HICLAW_SANDBOX_ENABLED=false", "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=only-the-id-1234", NULL};
    REQUIRE(load(&c, env5, 1, a1, &e) < 0);
    CHECK_NOT_CONTAINS(e.msg, "only-the-id-1234");
}

TEST(cfg_valid_edge_values) {
    char *env[] = {"HICLAW_SANDBOX_ENABLED=false", "HICLAW_METRICS_ADDR=[::1]:9090", "HICLAW_HEALTH_ADDR=0.0.0.0:8081",
                   "HICLAW_WORKER_DEPS_ENDPOINT=http://[fd00::1]:9000", "HICLAW_WORKER_DEPS_ALLOW_PLAINTEXT_HTTP=true",
                   "HICLAW_SANDBOX_PREWARM_SIZE=0",
                   "HICLAW_SANDBOX_TOKEN_TTL=600", "HICLAW_WORKER_DEPS_PREFIX=a/b/", NULL};
    wc_cfg c;
    wc_err e;
    char *argv[] = {"run", NULL};
    REQUIRE(load(&c, env, 1, argv, &e) == 0);
    CHECK_STR_EQ(c.metrics_addr, "[::1]:9090");
    CHECK_STR_EQ(c.worker_deps_endpoint, "http://[fd00::1]:9000");
    CHECK_INT_EQ(c.sandbox_prewarm_size, 0);
    CHECK_STR_EQ(c.worker_deps_prefix, "a/b/");
    cfg_free(&c);
}

static char *write_temp(const char *content) {
    char path[] = "/tmp/wc-cfg-test-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return NULL;
    ssize_t w = write(fd, content, strlen(content));
    close(fd);
    return w < 0 ? NULL : xstrdup(path);
}

TEST(cfg_file_variants_and_conflicts) {
    char *id = write_temp("AKID-FROM-FILE\n");
    char *secret = write_temp("secret-from-file-xyz\r\n");
    char *empty = write_temp("\n");
    REQUIRE(id && secret && empty);
    char e_id[256], e_secret[256], e_empty[256];
    snprintf(e_id, sizeof e_id, "HICLAW_WORKER_DEPS_ACCESS_KEY_ID_FILE=%s", id);
    snprintf(e_secret, sizeof e_secret, "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY_FILE=%s", secret);
    snprintf(e_empty, sizeof e_empty, "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY_FILE=%s", empty);
    wc_cfg c;
    wc_err e;
    char *argv[] = {"run", NULL};

    char *env[] = {"HICLAW_WORKER_DEPS_ENDPOINT=https://minio:9000", "HICLAW_WORKER_DEPS_BUCKET=deps", e_id, e_secret,
                   NULL};
    REQUIRE(load(&c, env, 1, argv, &e) == 0);
    CHECK_STR_EQ(c.worker_deps_access_key_id, "AKID-FROM-FILE");       /* trailing newline trimmed */
    CHECK_STR_EQ(c.worker_deps_secret_access_key, "secret-from-file-xyz"); /* and CRLF */
    CHECK_STR_EQ(c.worker_deps_access_key_id_file, id);
    cfg_free(&c);

    /* Value and _FILE both set: an error naming both. */
    char *env2[] = {"HICLAW_SANDBOX_ENABLED=false", "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=AKID-INLINE", e_id, e_secret,
                    NULL};
    REQUIRE(load(&c, env2, 1, argv, &e) < 0);
    CHECK_CONTAINS(e.msg, "HICLAW_WORKER_DEPS_ACCESS_KEY_ID (--worker-deps-access-key-id)");
    CHECK_CONTAINS(e.msg, "HICLAW_WORKER_DEPS_ACCESS_KEY_ID_FILE (--worker-deps-access-key-id-file)");
    CHECK_NOT_CONTAINS(e.msg, "AKID-INLINE");

    /* A flag _FILE against an env value conflicts too. */
    char flag_id[300];
    snprintf(flag_id, sizeof flag_id, "--worker-deps-access-key-id-file=%s", id);
    char *env3[] = {"HICLAW_SANDBOX_ENABLED=false", "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=AKID-INLINE", e_secret, NULL};
    char *argv3[] = {"run", flag_id, NULL};
    REQUIRE(load(&c, env3, 2, argv3, &e) < 0);
    CHECK_CONTAINS(e.msg, "both set");

    /* Missing and empty files. */
    char *env4[] = {"HICLAW_SANDBOX_ENABLED=false", "HICLAW_WORKER_DEPS_ACCESS_KEY_ID_FILE=/nonexistent/key", NULL};
    REQUIRE(load(&c, env4, 1, argv, &e) < 0);
    CHECK_CONTAINS(e.msg, "HICLAW_WORKER_DEPS_ACCESS_KEY_ID_FILE (--worker-deps-access-key-id-file)");
    CHECK_CONTAINS(e.msg, "/nonexistent/key");
    char *env5[] = {"HICLAW_SANDBOX_ENABLED=false", e_id, e_empty, NULL};
    REQUIRE(load(&c, env5, 1, argv, &e) < 0);
    CHECK_CONTAINS(e.msg, "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY_FILE");

    unlink(id), unlink(secret), unlink(empty);
    free(id), free(secret), free(empty);
}

TEST(cfg_ca_file_must_hold_a_certificate) {
    /* Load checks the PEM framing; the X.509 content is BearSSL's business at connect time. */
    char *cert = write_temp("subject=whatever\n-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n");
    char *notpem = write_temp("just some text\n");
    char *keyonly = write_temp("-----BEGIN PRIVATE KEY-----\nMIIBAA==\n-----END PRIVATE KEY-----\n");
    REQUIRE(cert && notpem && keyonly);
    wc_cfg c;
    wc_err e;
    char *argv[] = {"run", NULL};
    char line[300];
    snprintf(line, sizeof line, "HICLAW_WORKER_DEPS_CA_FILE=%s", cert);
    char *env[] = {"HICLAW_SANDBOX_ENABLED=false", line, NULL};
    REQUIRE(load(&c, env, 1, argv, &e) == 0);
    CHECK(c.worker_deps_ca_pem && strstr(c.worker_deps_ca_pem, "BEGIN CERTIFICATE"));
    CHECK_STR_EQ(c.worker_deps_ca_file, cert);
    cfg_free(&c);
    const char *bad[] = {notpem, keyonly, "/nonexistent/ca.pem"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(line, sizeof line, "HICLAW_WORKER_DEPS_CA_FILE=%s", bad[i]);
        REQUIRE(load(&c, env, 1, argv, &e) < 0);
        CHECK_CONTAINS(e.msg, "HICLAW_WORKER_DEPS_CA_FILE (--worker-deps-ca-file)");
        CHECK_INT_EQ(e.code, WC_EINVAL);
    }
    unlink(cert), unlink(notpem), unlink(keyonly);
    free(cert), free(notpem), free(keyonly);
}

TEST(cfg_sandbox_requires_storage) {
    wc_cfg c;
    wc_err e;
    char *argv[] = {"run", NULL};
    char *none[] = {NULL};
    /* auto (the default) without any worker-deps setting: Pods only, and why */
    REQUIRE(load(&c, none, 1, argv, &e) == 0);
    CHECK_INT_EQ(c.sandbox_enabled, 0);
    CHECK_CONTAINS(c.sandbox_off_why, "no worker-deps storage is configured");
    cfg_free(&c);
    /* true demands the storage */
    char *on[] = {"HICLAW_SANDBOX_ENABLED=true", NULL};
    REQUIRE(load(&c, on, 1, argv, &e) < 0);
    CHECK_CONTAINS(e.msg, "HICLAW_SANDBOX_ENABLED is true but HICLAW_WORKER_DEPS_ENDPOINT");
    CHECK_CONTAINS(e.msg, "HICLAW_SANDBOX_ENABLED=false");
    CHECK_INT_EQ(e.code, WC_EINVAL);
    char *argv_on[] = {"run", "--sandbox-enabled", NULL}; /* a bare flag is true */
    REQUIRE(load(&c, none, 2, argv_on, &e) < 0);
    CHECK_CONTAINS(e.msg, "HICLAW_SANDBOX_ENABLED is true");

    char *one_missing[] = {"HICLAW_SANDBOX_ENABLED=yes", "HICLAW_WORKER_DEPS_ENDPOINT=https://minio:9000",
                           "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=AKID1234", "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY=secret1234",
                           NULL};
    REQUIRE(load(&c, one_missing, 1, argv, &e) < 0);
    CHECK_STR_EQ(e.msg, "HICLAW_SANDBOX_ENABLED is true but HICLAW_WORKER_DEPS_BUCKET is not set; set it or "
                        "HICLAW_SANDBOX_ENABLED=false (--sandbox-enabled=false)");
    /* auto with storage partly configured: a mistake, said as one */
    REQUIRE(load(&c, one_missing + 1, 1, argv, &e) < 0);
    CHECK_CONTAINS(e.msg, "worker-deps storage is only partly configured: HICLAW_WORKER_DEPS_BUCKET is not set");
    CHECK_CONTAINS(e.msg, "HICLAW_SANDBOX_ENABLED=auto");
    /* auto with the storage complete: on */
    char *complete[] = {"HICLAW_SANDBOX_ENABLED=AUTO", "HICLAW_WORKER_DEPS_ENDPOINT=https://minio:9000",
                    "HICLAW_WORKER_DEPS_BUCKET=deps", "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=AKID1234",
                    "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY=secret1234", NULL};
    REQUIRE(load(&c, complete, 1, argv, &e) == 0);
    CHECK_INT_EQ(c.sandbox_mode, -1);
    CHECK_INT_EQ(c.sandbox_enabled, 1);
    CHECK(c.sandbox_off_why == NULL);
    cfg_free(&c);
    char *bad[] = {"HICLAW_SANDBOX_ENABLED=maybe", NULL};
    REQUIRE(load(&c, bad, 1, argv, &e) < 0);
    CHECK_STR_EQ(e.msg, "HICLAW_SANDBOX_ENABLED (--sandbox-enabled): \"maybe\" is not auto, true or false");

    char *off[] = {"HICLAW_SANDBOX_ENABLED=false", NULL};
    REQUIRE(load(&c, off, 1, argv, &e) == 0);
    CHECK_INT_EQ(c.sandbox_enabled, 0);
    cfg_free(&c);

    char *argv_off[] = {"run", "--sandbox-enabled=false", NULL};
    REQUIRE(load(&c, none, 2, argv_off, &e) == 0);
    cfg_free(&c);

    /* An access key without its secret is wrong even with sandbox off. */
    char *half[] = {"HICLAW_SANDBOX_ENABLED=false", "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=AKID1234", NULL};
    REQUIRE(load(&c, half, 1, argv, &e) < 0);
    CHECK_CONTAINS(e.msg, "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY");
    CHECK_NOT_CONTAINS(e.msg, "AKID1234");

    char *full[] = {STORAGE_ENV, NULL};
    REQUIRE(load(&c, full, 1, argv, &e) == 0);
    cfg_free(&c);
}

/* SPEC 7: env files and tokens never travel in clear text by default. An http:// endpoint is a
 * configuration error (exit 2) naming the variable and the opt-in, with sandbox on or off (the
 * storage is also used to clean up); HICLAW_WORKER_DEPS_ALLOW_PLAINTEXT_HTTP=true accepts it. */
TEST(cfg_plaintext_worker_deps_endpoint_is_refused_unless_allowed) {
    wc_cfg c;
    wc_err e;
    char *argv[] = {"run", NULL};
    char *plain[] = {"HICLAW_WORKER_DEPS_ENDPOINT=http://minio:9000", "HICLAW_WORKER_DEPS_BUCKET=deps",
                     "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=AKID1234", "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY=secret1234", NULL};
    REQUIRE(load(&c, plain, 1, argv, &e) < 0);
    CHECK_INT_EQ(e.code, WC_EINVAL);
    CHECK_CONTAINS(e.msg, "HICLAW_WORKER_DEPS_ENDPOINT");
    CHECK_CONTAINS(e.msg, "HICLAW_WORKER_DEPS_ALLOW_PLAINTEXT_HTTP");
    CHECK_NOT_CONTAINS(e.msg, "secret1234");
    char *plain_off[] = {"HICLAW_SANDBOX_ENABLED=false", "HICLAW_WORKER_DEPS_ENDPOINT=http://minio:9000", NULL};
    REQUIRE(load(&c, plain_off, 1, argv, &e) < 0);
    CHECK_CONTAINS(e.msg, "HICLAW_WORKER_DEPS_ALLOW_PLAINTEXT_HTTP");

    char *allowed[] = {"HICLAW_WORKER_DEPS_ENDPOINT=http://minio:9000", "HICLAW_WORKER_DEPS_BUCKET=deps",
                       "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=AKID1234", "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY=secret1234",
                       "HICLAW_WORKER_DEPS_ALLOW_PLAINTEXT_HTTP=true", NULL};
    REQUIRE(load(&c, allowed, 1, argv, &e) == 0);
    CHECK_INT_EQ(c.worker_deps_allow_plaintext_http, 1);
    cfg_free(&c);
    char *argv_flag[] = {"run", "--worker-deps-allow-plaintext-http", NULL};
    REQUIRE(load(&c, plain, 2, argv_flag, &e) == 0);
    cfg_free(&c);
    /* https needs nothing more; the default is off */
    char *tls[] = {STORAGE_ENV, NULL};
    REQUIRE(load(&c, tls, 1, argv, &e) == 0);
    CHECK_INT_EQ(c.worker_deps_allow_plaintext_http, 0);
    cfg_free(&c);
}

static wc_cfg *summary_cfg;
static void emit_summary(void) { cfg_log_summary(summary_cfg); }

/* Issue 19: the summary redacts secret values, not every field whose name says "token" or
 * "secret": a token lifetime and a key file's path are not secrets. A registered secret that
 * lands in any field is still scrubbed (the logger's value net). */
TEST(cfg_summary_redacts_values_not_field_names) {
    char *env[] = {"HICLAW_WORKER_DEPS_ENDPOINT=https://minio:9000", "HICLAW_WORKER_DEPS_BUCKET=deps",
                   "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=AKIA-NAMES-ID-5", "HICLAW_SANDBOX_TOKEN_TTL=7200",
                   "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY_FILE=/tmp/wc-unit-secret-key-file", NULL};
    char *argv[] = {"run", NULL};
    wc_cfg c;
    wc_err e;
    const char *path = "/tmp/wc-unit-secret-key-file";
    FILE *f = fopen(path, "w");
    REQUIRE(f != NULL);
    fputs("names-secret-value-8\n", f);
    fclose(f);
    REQUIRE(load(&c, env, 1, argv, &e) == 0);
    summary_cfg = &c;
    char *out = capture_log(LOG_FORMAT_JSON, emit_summary);
    REQUIRE(out != NULL);
    cJSON *j = cJSON_Parse(out);
    REQUIRE(j != NULL);
    const cJSON *v = cJSON_GetObjectItem(j, "sandbox-token-ttl");
    CHECK(cJSON_IsString(v) && strcmp(v->valuestring, "7200") == 0);
    v = cJSON_GetObjectItem(j, "worker-deps-secret-access-key-file");
    CHECK(cJSON_IsString(v) && strcmp(v->valuestring, path) == 0);
    v = cJSON_GetObjectItem(j, "worker-deps-secret-access-key");
    CHECK(cJSON_IsString(v) && strcmp(v->valuestring, LOG_REDACTED) == 0);
    v = cJSON_GetObjectItem(j, "worker-deps-access-key-id");
    CHECK(cJSON_IsString(v) && strcmp(v->valuestring, LOG_REDACTED) == 0);
    CHECK_NOT_CONTAINS(out, "names-secret-value-8");
    CHECK_NOT_CONTAINS(out, "AKIA-NAMES-ID-5");
    cJSON_Delete(j);
    free(out);
    cfg_free(&c);
    unlink(path);
}

TEST(cfg_secrets_stay_out_of_logs_and_help) {
    char *env[] = {"HICLAW_WORKER_DEPS_ENDPOINT=https://minio:9000", "HICLAW_WORKER_DEPS_BUCKET=deps",
                   "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=AKIA-SUMMARY-ID-77",
                   "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY=summary-secret-value-99", NULL};
    char *argv[] = {"run", NULL};
    wc_cfg c;
    wc_err e;
    REQUIRE(load(&c, env, 1, argv, &e) == 0);
    summary_cfg = &c;
    for (int fmt = 0; fmt < 2; fmt++) {
        char *out = capture_log(fmt ? LOG_FORMAT_TEXT : LOG_FORMAT_JSON, emit_summary);
        REQUIRE(out != NULL);
        CHECK_NOT_CONTAINS(out, "AKIA-SUMMARY-ID-77");
        CHECK_NOT_CONTAINS(out, "summary-secret-value-99");
        CHECK_CONTAINS(out, "configuration");
        CHECK_CONTAINS(out, "hiclaw-worker-pool");
        CHECK_CONTAINS(out, "5m");
        CHECK_CONTAINS(out, "2Gi");
        CHECK(strchr(out, '\n') == out + strlen(out) - 1); /* one line */
        if (!fmt) {
            cJSON *j = cJSON_Parse(out);
            CHECK(j != NULL);
            const cJSON *v = cJSON_GetObjectItem(j, "worker-deps-access-key-id");
            CHECK(cJSON_IsString(v) && strcmp(v->valuestring, LOG_REDACTED) == 0);
            v = cJSON_GetObjectItem(j, "sandbox-prewarm-size");
            CHECK(cJSON_IsString(v) && strcmp(v->valuestring, "1") == 0);
            cJSON_Delete(j);
        }
        free(out);
    }
    cfg_free(&c);

    buf help = BUF_INIT;
    cfg_help_text(&help);
    const char *h = buf_cstr(&help);
    CHECK_NOT_CONTAINS(h, "AKIA-SUMMARY-ID-77");
    CHECK_NOT_CONTAINS(h, "summary-secret-value-99");
    size_t n;
    const cfg_field *t = cfg_table(&n);
    for (size_t i = 0; i < n; i++) { /* every row is documented with its flag, variable and Helm path */
        char want[160];
        snprintf(want, sizeof want, "--%s", t[i].flag);
        CHECK_CONTAINS(h, want);
        snprintf(want, sizeof want, "env %s;", t[i].env);
        CHECK_CONTAINS(h, want);
        CHECK_CONTAINS(h, t[i].helm);
    }
    CHECK_CONTAINS(h, "default 5m");
    CHECK_CONTAINS(h, "none (secret)");
    buf_free(&help);
}

TEST(cfg_secrets_are_registered_for_redaction) {
    char *env[] = {"HICLAW_SANDBOX_ENABLED=false", "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=REGISTERED-ID-5150",
                   "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY=registered-secret-5150", NULL};
    char *argv[] = {"run", NULL};
    wc_cfg c;
    wc_err e;
    REQUIRE(load(&c, env, 1, argv, &e) == 0);
    char *r = log_redact("S3 said: bad key REGISTERED-ID-5150 / registered-secret-5150");
    CHECK_STR_EQ(r, "S3 said: bad key [REDACTED] / [REDACTED]");
    free(r);
    cfg_free(&c);
}
