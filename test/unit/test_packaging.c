/*
 * test_packaging.c — helm-env and the chart's generated files (issue 7).
 *
 * The chart under chart/ must hold exactly what this build generates (env template from the
 * configuration table, RBAC rule files from the rule table, CRDs from embed/): the drift check
 * passes on the committed chart, and fails — naming the file and the line — on a copy with one
 * line changed. Runs from the repository root (build.sh runs the unit binary there).
 */

static void pkg_copy_file(const char *from, const char *to) {
    buf b = BUF_INIT;
    wc_err err;
    err_clear(&err);
    if (file_read_all(from, 8u << 20, &b, &err) == 0) chart_write_file(to, &b, &err);
    buf_free(&b);
}

TEST(helm_env_one_entry_per_table_row_secrets_by_reference) {
    buf out = BUF_INIT;
    helm_env_body(&out);
    const char *s = buf_cstr(&out);
    size_t n;
    const cfg_field *t = cfg_table(&n);
    for (size_t i = 0; i < n; i++) {
        char want[160];
        snprintf(want, sizeof want, "- name: %s\n", t[i].env);
        CHECK_CONTAINS(s, want);
        if (t[i].flags & CFG_SECRET) {
            /* never a literal value from the Helm values: only a secretKeyRef */
            snprintf(want, sizeof want, "{{ .Values.%s |", t[i].helm);
            CHECK_NOT_CONTAINS(s, want);
            snprintf(want, sizeof want, "{{- if .Values.%s }}", t[i].helm);
            CHECK_NOT_CONTAINS(s, want);
        } else if (!(t[i].type == CFG_STRING && t[i].check == CFG_CHECK_NAMESPACE)) {
            snprintf(want, sizeof want, "{{ .Values.%s |", t[i].helm);
            CHECK_CONTAINS(s, want);
        }
    }
    CHECK_CONTAINS(s, "- name: HICLAW_SANDBOX_POOL\n  value: {{ .Values.sandbox.pool | quote }}\n");
    CHECK_CONTAINS(s, "- name: HICLAW_CONCURRENCY\n  value: {{ .Values.controller.concurrency | int64 | quote }}\n");
    CHECK_CONTAINS(s, "{{- if .Values.hiclaw.yolo }}\n- name: HICLAW_YOLO\n");
    CHECK_CONTAINS(s, "      name: {{ include \"worker-controller.workerDepsSecretName\" . | quote }}\n"
                      "      key: secretAccessKey\n");
    CHECK_CONTAINS(s, "fieldPath: metadata.namespace");
    buf again = BUF_INIT;
    helm_env_body(&again);
    CHECK_STR_EQ(buf_cstr(&again), s); /* deterministic */
    buf_free(&again);
    buf_free(&out);
}

TEST(chart_generated_files_match_the_committed_chart) {
    buf report = BUF_INIT;
    int drifted = chart_check("chart", &report);
    if (drifted) fputs(buf_cstr(&report), stdout);
    CHECK_INT_EQ(drifted, 0);
    buf_free(&report);
}

TEST(chart_drift_check_fails_on_a_hand_edited_copy) {
    char dir[] = "/tmp/wc-unit-chart-XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    chart_gen gen[CHART_NGEN];
    chart_generate(gen);
    char from[512], to[512];
    for (int i = 0; i < CHART_NGEN; i++) {
        snprintf(from, sizeof from, "chart/%s", gen[i].path);
        snprintf(to, sizeof to, "%s/%s", dir, gen[i].path);
        pkg_copy_file(from, to);
    }
    buf report = BUF_INIT;
    CHECK_INT_EQ(chart_check(dir, &report), 0); /* the copy is faithful */

    /* One hand edit per kind of generated file: a removed verb, an edited env line, a CRD line. */
    static const struct { int file; const char *from, *to; } edits[] = {
        {2, "\"get\", \"list\", \"watch\", \"create\", \"delete\"]", "\"get\", \"list\", \"watch\", \"create\"]"},
        {0, "HICLAW_SANDBOX_POOL", "HICLAW_SANDBOX_POOLX"},
        {1, "name: workers.hiclaw.io", "name: workerz.hiclaw.io"},
    };
    for (size_t e = 0; e < sizeof edits / sizeof *edits; e++) {
        const chart_gen *g = &gen[edits[e].file];
        const char *at = strstr(buf_cstr(&g->content), edits[e].from);
        REQUIRE(at != NULL);
        buf edited = BUF_INIT;
        buf_append(&edited, buf_cstr(&g->content), (size_t)(at - buf_cstr(&g->content)));
        buf_puts(&edited, edits[e].to);
        buf_puts(&edited, at + strlen(edits[e].from));
        snprintf(to, sizeof to, "%s/%s", dir, g->path);
        wc_err err;
        err_clear(&err);
        REQUIRE(chart_write_file(to, &edited, &err) == 0);
        buf_reset(&report);
        CHECK_INT_EQ(chart_check(dir, &report), 1);
        CHECK_CONTAINS(buf_cstr(&report), g->path);
        CHECK_CONTAINS(buf_cstr(&report), edits[e].to);
        CHECK_CONTAINS(buf_cstr(&report), "--sync-chart");
        REQUIRE(chart_write_file(to, &g->content, &err) == 0); /* restore */
        buf_free(&edited);
    }
    /* a missing generated file is drift too */
    snprintf(to, sizeof to, "%s/%s", dir, gen[3].path);
    unlink(to);
    buf_reset(&report);
    CHECK_INT_EQ(chart_check(dir, &report), 1);
    CHECK_CONTAINS(buf_cstr(&report), "cannot read");
    buf_free(&report);
    for (int i = 0; i < CHART_NGEN; i++) {
        snprintf(to, sizeof to, "%s/%s", dir, gen[i].path);
        unlink(to);
    }
    char sub[600];
    static const char *dirs[] = {"templates", "crds", "files/rbac", "files"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(sub, sizeof sub, "%s/%s", dir, dirs[i]);
        rmdir(sub);
    }
    rmdir(dir);
    chart_gen_free(gen);
}

TEST(chart_rbac_files_are_render_rbac_output) {
    chart_gen gen[CHART_NGEN];
    chart_generate(gen);
    /* sandbox.yaml: every rule; no-sandbox.yaml: no TokenRequest, no SandboxSet, and claims and
     * Sandboxes read-only */
    CHECK_CONTAINS(buf_cstr(&gen[2].content), "sandboxsets");
    CHECK_NOT_CONTAINS(buf_cstr(&gen[3].content), "sandboxsets");
    CHECK_CONTAINS(buf_cstr(&gen[3].content), "sandboxclaims");
    CHECK_NOT_CONTAINS(buf_cstr(&gen[4].content), "sandboxsets");
    CHECK_NOT_CONTAINS(buf_cstr(&gen[4].content), "serviceaccounts/token");
    CHECK_CONTAINS(buf_cstr(&gen[4].content),
                   "resources: [\"sandboxclaims\"]\n    verbs: [\"get\", \"list\", \"watch\"]\n");
    CHECK_CONTAINS(buf_cstr(&gen[4].content),
                   "resources: [\"sandboxes\"]\n    verbs: [\"get\", \"list\", \"watch\"]\n");
    CHECK_CONTAINS(buf_cstr(&gen[4].content), "kind: Role\n");
    chart_gen_free(gen);
}
