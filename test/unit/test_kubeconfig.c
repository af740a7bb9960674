/* test_kubeconfig.c — kubeconfig parsing of real-world shapes, and the in-cluster layout. */

/* The encoder the round-trip property needs (the program only decodes). */
static void base64_encode(buf *out, const void *data, size_t n) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    size_t i = 0;
    for (; i + 2 < n; i += 3) {
        char q[4] = {alphabet[p[i] >> 2], alphabet[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
                     alphabet[((p[i + 1] & 15) << 2) | (p[i + 2] >> 6)], alphabet[p[i + 2] & 63]};
        buf_append(out, q, 4);
    }
    if (n - i == 1) {
        char q[4] = {alphabet[p[i] >> 2], alphabet[(p[i] & 3) << 4], '=', '='};
        buf_append(out, q, 4);
    } else if (n - i == 2) {
        char q[4] = {alphabet[p[i] >> 2], alphabet[((p[i] & 3) << 4) | (p[i + 1] >> 4)],
                     alphabet[(p[i + 1] & 15) << 2], '='};
        buf_append(out, q, 4);
    }
}

static char kc_dir[PATH_MAX];

static void kc_write(const char *name, const char *content) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", kc_dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(content, f);
    fclose(f);
}

static const char *kc_path(const char *name) {
    static char path[4][PATH_MAX + 64];
    static int i;
    i = (i + 1) % 4;
    snprintf(path[i], sizeof path[i], "%s/%s", kc_dir, name);
    return path[i];
}

static void kc_setup(void) {
    snprintf(kc_dir, sizeof kc_dir, "%s/wc-kc-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(kc_dir)) kc_dir[0] = '\0';
}

static void kc_teardown(void) {
    char cmd[PATH_MAX + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", kc_dir);
    if (system(cmd) != 0) {}
}

/* base64 of "CA-PEM", "CERT-PEM", "KEY-PEM" */
#define B64_CA "Q0EtUEVN"
#define B64_CERT "Q0VSVC1QRU0="
#define B64_KEY "S0VZLVBFTQ=="

TEST(kubeconfig_kind_style_embedded_client_cert) {
    kc_setup();
    kc_write("kind.yaml",
             "apiVersion: v1\n"
             "clusters:\n"
             "- cluster:\n"
             "    certificate-authority-data: " B64_CA "\n"
             "    server: https://127.0.0.1:36443/\n"
             "  name: kind-kind\n"
             "contexts:\n"
             "- context:\n"
             "    cluster: kind-kind\n"
             "    user: kind-kind\n"
             "  name: kind-kind\n"
             "current-context: kind-kind\n"
             "kind: Config\n"
             "preferences: {}\n"
             "users:\n"
             "- name: kind-kind\n"
             "  user:\n"
             "    client-certificate-data: " B64_CERT "\n"
             "    client-key-data: " B64_KEY "\n");
    kube_config c;
    wc_err err;
    REQUIRE(kube_config_from_kubeconfig(&c, kc_path("kind.yaml"), NULL, &err) == 0);
    CHECK_STR_EQ(c.server, "https://127.0.0.1:36443"); /* trailing slash dropped */
    CHECK_STR_EQ(buf_cstr(&c.ca_pem), "CA-PEM");
    CHECK_STR_EQ(buf_cstr(&c.client_cert_pem), "CERT-PEM");
    CHECK_STR_EQ(buf_cstr(&c.client_key_pem), "KEY-PEM");
    CHECK(c.token == NULL && c.token_file == NULL);
    CHECK(!c.insecure_skip_verify);
    CHECK_CONTAINS(c.source, "context kind-kind");
    kube_config_free(&c);
    kc_teardown();
}

TEST(kubeconfig_kubeadm_admin_conf_shape) {
    kc_setup();
    kc_write("admin.conf",
             "apiVersion: v1\n"
             "clusters:\n"
             "- cluster:\n"
             "    certificate-authority-data: " B64_CA "\n"
             "    server: https://10.0.0.10:6443\n"
             "  name: kubernetes\n"
             "contexts:\n"
             "- context:\n"
             "    cluster: kubernetes\n"
             "    user: kubernetes-admin\n"
             "  name: kubernetes-admin@kubernetes\n"
             "current-context: kubernetes-admin@kubernetes\n"
             "kind: Config\n"
             "preferences: {}\n"
             "users:\n"
             "- name: kubernetes-admin\n"
             "  user:\n"
             "    client-certificate-data: " B64_CERT "\n"
             "    client-key-data: " B64_KEY "\n");
    kube_config c;
    wc_err err;
    REQUIRE(kube_config_from_kubeconfig(&c, kc_path("admin.conf"), NULL, &err) == 0);
    CHECK_STR_EQ(c.server, "https://10.0.0.10:6443");
    CHECK_STR_EQ(buf_cstr(&c.client_key_pem), "KEY-PEM");
    CHECK_CONTAINS(c.source, "kubernetes-admin@kubernetes");
    kube_config_free(&c);
    kc_teardown();
}

TEST(kubeconfig_minikube_style_relative_file_paths_and_namespace) {
    kc_setup();
    kc_write("ca.crt", "FILE-CA");
    kc_write("client.crt", "FILE-CERT");
    kc_write("client.key", "FILE-KEY");
    kc_write("config",
             "apiVersion: v1\nkind: Config\n"
             "clusters:\n- cluster:\n    certificate-authority: ca.crt\n    extensions:\n    - extension:\n        provider: minikube.sigs.k8s.io\n        version: v1.34.0\n      name: cluster_info\n    server: https://192.168.49.2:8443\n  name: minikube\n"
             "contexts:\n- context:\n    cluster: minikube\n    namespace: team-a\n    user: minikube\n  name: minikube\n"
             "- context:\n    cluster: minikube\n    user: other\n  name: other\n"
             "current-context: minikube\n"
             "users:\n- name: minikube\n  user:\n    client-certificate: client.crt\n    client-key: client.key\n"
             "- name: other\n  user:\n    token: abcdef-static-token\n");
    kube_config c;
    wc_err err;
    REQUIRE(kube_config_from_kubeconfig(&c, kc_path("config"), NULL, &err) == 0);
    CHECK_STR_EQ(buf_cstr(&c.ca_pem), "FILE-CA");
    CHECK_STR_EQ(buf_cstr(&c.client_cert_pem), "FILE-CERT");
    CHECK_STR_EQ(buf_cstr(&c.client_key_pem), "FILE-KEY");
    CHECK_STR_EQ(c.namespace, "team-a");
    kube_config_free(&c);
    /* --context picks another user; its token is registered for redaction. */
    REQUIRE(kube_config_from_kubeconfig(&c, kc_path("config"), "other", &err) == 0);
    CHECK_STR_EQ(c.token, "abcdef-static-token");
    CHECK(c.namespace == NULL);
    char *r = log_redact("Authorization failed for abcdef-static-token");
    CHECK_NOT_CONTAINS(r, "abcdef-static-token");
    free(r);
    kube_config_free(&c);
    kc_teardown();
}

TEST(kubeconfig_list_merge_first_file_wins) {
    kc_setup();
    kc_write("a.yaml", "current-context: ctx\ncontexts:\n- name: ctx\n  context: {cluster: c1, user: u1}\n"
                       "users:\n- name: u1\n  user:\n    tokenFile: tok\n");
    kc_write("b.yaml", "current-context: ignored\nclusters:\n- name: c1\n  cluster:\n    server: https://b.example:6443\n    insecure-skip-tls-verify: true\n"
                       "users:\n- name: u1\n  user:\n    token: loses-to-a\n");
    char list[3 * PATH_MAX];
    snprintf(list, sizeof list, "%s:%s:%s", kc_path("missing.yaml"), kc_path("a.yaml"), kc_path("b.yaml"));
    kube_config c;
    wc_err err;
    REQUIRE(kube_config_from_kubeconfig(&c, list, NULL, &err) == 0);
    CHECK_STR_EQ(c.server, "https://b.example:6443");
    CHECK(c.insecure_skip_verify);
    CHECK(c.token == NULL);
    CHECK_STR_EQ(c.token_file, kc_path("tok")); /* relative to a.yaml, which named it */
    kube_config_free(&c);
    kc_teardown();
}

TEST(kubeconfig_errors_are_clear) {
    kc_setup();
    struct { const char *yaml, *want; } cases[] = {
        {"current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nclusters:\n- name: c\n  cluster: {server: https://s}\n"
         "users:\n- name: u\n  user:\n    exec:\n      apiVersion: client.authentication.k8s.io/v1\n      command: aws\n",
         "exec credential plugin, which is not supported"},
        {"current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nclusters:\n- name: c\n  cluster: {server: https://s}\n"
         "users:\n- name: u\n  user:\n    auth-provider:\n      name: gcp\n",
         "auth-provider plugin, which is not supported"},
        {"current-context: nope\ncontexts: []\n", "context nope not found"},
        {"contexts: []\n", "no current-context"},
        {"current-context: x\ncontexts:\n- name: x\n  context: {cluster: c}\nclusters:\n- name: c\n  cluster: {server: https://s, certificate-authority-data: '!!notbase64'}\n",
         "certificate-authority-data is not valid base64"},
        {"current-context: x\ncontexts:\n- name: x\n  context: {cluster: c}\nclusters:\n- name: c\n  cluster: {server: ftp://s}\n",
         "is not an http(s) URL"},
        {"current-context: x\ncontexts:\n- name: x\n  context: {cluster: c}\nclusters:\n- name: c\n  cluster: {certificate-authority: nonexistent.crt, server: https://s}\n",
         "nonexistent.crt"},
        {"current-context: x\ncontexts:\n- name: x\n  context: {cluster: c, user: u}\nclusters:\n- name: c\n  cluster: {server: https://s}\n"
         "users:\n- name: u\n  user: {client-certificate-data: " B64_CERT "}\n",
         "must be given together"},
        {"key: [unclosed\n", "line"},
        {"- a\n- b\n", "not a mapping"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        kc_write("bad.yaml", cases[i].yaml);
        kube_config c;
        wc_err err;
        err_clear(&err);
        CHECK_INT_EQ(kube_config_from_kubeconfig(&c, kc_path("bad.yaml"), NULL, &err), -1);
        CHECK_CONTAINS(err.msg, cases[i].want);
    }
    kube_config c;
    wc_err err;
    CHECK_INT_EQ(kube_config_from_kubeconfig(&c, kc_path("absent"), NULL, &err), -1);
    CHECK_INT_EQ(err.code, WC_ENOTFOUND);
    kc_teardown();
}

TEST(kubeconfig_in_cluster_layout) {
    kc_setup();
    kc_write("ca.crt", "IN-CLUSTER-CA");
    kc_write("token", "in-cluster-token");
    kc_write("namespace", "hiclaw-system\n");
    setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1", 1);
    setenv("KUBERNETES_SERVICE_PORT", "443", 1);
    kube_config c;
    wc_err err;
    REQUIRE(kube_config_in_cluster(&c, kc_dir, &err) == 0);
    CHECK_STR_EQ(c.server, "https://kubernetes.default.svc:443");
    CHECK_STR_EQ(c.resolve, "kubernetes.default.svc:443:10.96.0.1");
    CHECK_STR_EQ(buf_cstr(&c.ca_pem), "IN-CLUSTER-CA");
    CHECK_STR_EQ(c.token_file, kc_path("token"));
    CHECK_STR_EQ(c.namespace, "hiclaw-system");
    kube_config_free(&c);
    setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
    REQUIRE(kube_config_in_cluster(&c, kc_dir, &err) == 0);
    CHECK_STR_EQ(c.resolve, "kubernetes.default.svc:443:[fd00::1]");
    kube_config_free(&c);
    unsetenv("KUBERNETES_SERVICE_HOST");
    CHECK_INT_EQ(kube_config_in_cluster(&c, kc_dir, &err), -1);
    CHECK_CONTAINS(err.msg, "KUBERNETES_SERVICE_HOST");
    unsetenv("KUBERNETES_SERVICE_PORT");
    kc_teardown();
}

TEST(base64_round_trip_and_rejects) {
    unsigned seed = 7;
    for (int len = 0; len < 70; len++) {
        unsigned char data[70];
        for (int i = 0; i < len; i++) data[i] = (unsigned char)rand_r(&seed);
        buf enc = BUF_INIT, dec = BUF_INIT;
        base64_encode(&enc, data, (size_t)len);
        CHECK_INT_EQ(enc.len % 4, 0);
        CHECK_INT_EQ(base64_decode(&dec, enc.data ? enc.data : "", enc.len), 0);
        CHECK_INT_EQ(dec.len, len);
        CHECK(len == 0 || memcmp(dec.data, data, (size_t)len) == 0);
        buf_free(&enc);
        buf_free(&dec);
    }
    buf d = BUF_INIT;
    CHECK_INT_EQ(base64_decode(&d, "aGVs\nbG8=", 9), 0);
    CHECK_STR_EQ(buf_cstr(&d), "hello");
    buf_reset(&d);
    CHECK_INT_EQ(base64_decode(&d, "a$==", 4), -1);
    buf_reset(&d);
    CHECK_INT_EQ(base64_decode(&d, "aGVsbG8=x", 9), -1);
    buf_free(&d);
}
