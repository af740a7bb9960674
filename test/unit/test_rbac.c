/* test_rbac.c — the RBAC rule table (worker/rbac.c) and render-rbac's YAML. */

/* Rules as "group resource verb,verb,..." lines, in iteration order. */
static char *rules_text_asb(int sandbox, int manage_pool, int agent_sandbox) {
    buf b = BUF_INIT;
    size_t it = 0;
    for (const rbac_rule *r; (r = rbac_rules(sandbox, manage_pool, agent_sandbox, &it));) {
        buf_printf(&b, "%s %s ", *r->group ? r->group : "core", r->resource);
        for (int v = 0; v < RBAC_MAX_VERBS && r->verbs[v]; v++) buf_printf(&b, "%s%s", v ? "," : "", r->verbs[v]);
        buf_putc(&b, '\n');
    }
    return buf_steal(&b);
}

/* The rules with the agent-sandbox backend off (its read-only row, last). */
static char *rules_text(int sandbox, int manage_pool) { return rules_text_asb(sandbox, manage_pool, 0); }

#define RULES_ALWAYS                                                                                  \
    "hiclaw.io workers get,list,watch,patch,update\n"                                                 \
    "hiclaw.io workers/status get,patch,update\n"                                                     \
    "hiclaw.io workers/finalizers update\n"                                                           \
    "core pods get,list,watch,create,delete\n"                                                        \
    "core serviceaccounts get,list,watch,create,delete\n"

TEST(rbac_rules_follow_spec_section_9) {
    char *all = rules_text(1, 1);
    CHECK_STR_EQ(all, RULES_ALWAYS
                 "core serviceaccounts/token create\n"
                 "core secrets get\n"
                 "events.k8s.io events create,patch\n"
                 "coordination.k8s.io leases get,create,update\n"
                 "agents.kruise.io sandboxclaims get,list,watch,create,delete\n"
                 "agents.kruise.io sandboxes get,list,watch,patch,delete\n"
                 "agents.kruise.io sandboxsets get,list,watch,create,patch\n"
                 "agents.x-k8s.io sandboxes get,list,watch\n");
    char *unmanaged = rules_text(1, 0);
    CHECK_STR_EQ(unmanaged, RULES_ALWAYS
                 "core serviceaccounts/token create\n"
                 "core secrets get\n"
                 "events.k8s.io events create,patch\n"
                 "coordination.k8s.io leases get,create,update\n"
                 "agents.kruise.io sandboxclaims get,list,watch,create,delete\n"
                 "agents.kruise.io sandboxes get,list,watch,patch,delete\n"
                 "agents.x-k8s.io sandboxes get,list,watch\n");
    char *nosbx = rules_text(0, 1);
    char *nosbx2 = rules_text(0, 0);
    /* Without the sandbox backend, claims and Sandboxes stay readable (never writable): a
     * sandbox Worker left over is seen, reported and never doubled by a Pod (issue 15). */
    CHECK_STR_EQ(nosbx, RULES_ALWAYS
                 "core secrets get\n"
                 "events.k8s.io events create,patch\n"
                 "coordination.k8s.io leases get,create,update\n"
                 "agents.kruise.io sandboxclaims get,list,watch\n"
                 "agents.kruise.io sandboxes get,list,watch\n"
                 "agents.x-k8s.io sandboxes get,list,watch\n");
    CHECK_STR_EQ(nosbx2, nosbx); /* managing a pool means nothing without sandbox */
    free(all), free(unmanaged), free(nosbx), free(nosbx2);
}

/* The agent-sandbox backend (issue 20): its Sandboxes writable (create, suspend/resume by patch,
 * delete) only when it is enabled; read-only otherwise (a Sandbox left over is seen), whatever
 * the OpenKruise options. */
TEST(rbac_agent_sandbox_rules_only_when_enabled) {
    for (int sandbox = 0; sandbox < 2; sandbox++) {
        char *on = rules_text_asb(sandbox, 1, 1), *off = rules_text_asb(sandbox, 1, 0);
        CHECK_CONTAINS(on, "agents.x-k8s.io sandboxes get,list,watch,create,patch,delete\n");
        CHECK(strstr(on, "agents.x-k8s.io sandboxes get,list,watch\n") == NULL);
        CHECK_CONTAINS(off, "agents.x-k8s.io sandboxes get,list,watch\n");
        CHECK(strstr(off, "create,patch,delete\n") == NULL || strstr(off, "agents.x-k8s.io sandboxes get,list,watch,") == NULL);
        free(on), free(off);
    }
}

TEST(rbac_table_has_no_duplicates) {
    for (size_t i = 0; i < RBAC_NRULES; i++) {
        const rbac_rule *r = &rbac_table[i];
        CHECK(r->verbs[0] != NULL);
        for (int v = 0; v < RBAC_MAX_VERBS && r->verbs[v]; v++)
            for (int w = v + 1; w < RBAC_MAX_VERBS && r->verbs[w]; w++)
                if (strcmp(r->verbs[v], r->verbs[w]) == 0)
                    unit_fail(__FILE__, __LINE__, "%s lists verb %s twice", r->resource, r->verbs[v]);
    }
    /* A resource may have two rows (read-only without sandbox, read-write with it) but never two
     * that apply to the same options. */
    for (int sandbox = 0; sandbox < 2; sandbox++)
        for (int pool = 0; pool < 4; pool++) {
            size_t it = 0, n = 0;
            const rbac_rule *seen[RBAC_NRULES];
            for (const rbac_rule *r; (r = rbac_rules(sandbox, pool & 1, pool >> 1, &it));) {
                for (size_t j = 0; j < n; j++)
                    if (strcmp(r->group, seen[j]->group) == 0 && strcmp(r->resource, seen[j]->resource) == 0)
                        unit_fail(__FILE__, __LINE__, "duplicate rule %s/%s", r->group, r->resource);
                seen[n++] = r;
            }
        }
}

/* ---------------------------------------------------------------------------------------- */
/* The YAML, read back with libyaml. */

typedef struct rbac_doc {
    char kind[64], name[128], ns[128], roleref[128], subject_ns[128];
    int has_ns;
    char rules[2048]; /* "resource verb,verb;" */
    char labels[512];
} rbac_doc;

static const char *ynode_str(yaml_document_t *d, yaml_node_t *n) {
    (void)d;
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static yaml_node_t *ynode_get(yaml_document_t *d, yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = ynode_str(d, yaml_document_get_node(d, p->key));
        if (k && strcmp(k, key) == 0) return yaml_document_get_node(d, p->value);
    }
    return NULL;
}

static yaml_node_t *ynode_item(yaml_document_t *d, yaml_node_t *seq, size_t i) {
    if (!seq || seq->type != YAML_SEQUENCE_NODE) return NULL;
    yaml_node_item_t *it = seq->data.sequence.items.start + i;
    return it < seq->data.sequence.items.top ? yaml_document_get_node(d, *it) : NULL;
}

static void rbac_doc_read(yaml_document_t *d, rbac_doc *out) {
    memset(out, 0, sizeof *out);
    yaml_node_t *root = yaml_document_get_root_node(d), *md = ynode_get(d, root, "metadata");
    const char *s;
    if ((s = ynode_str(d, ynode_get(d, root, "kind")))) snprintf(out->kind, sizeof out->kind, "%s", s);
    if ((s = ynode_str(d, ynode_get(d, md, "name")))) snprintf(out->name, sizeof out->name, "%s", s);
    if ((s = ynode_str(d, ynode_get(d, md, "namespace")))) {
        snprintf(out->ns, sizeof out->ns, "%s", s);
        out->has_ns = 1;
    }
    yaml_node_t *labels = ynode_get(d, md, "labels");
    static const char *lk[] = {"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/managed-by"};
    for (int i = 0; i < 3; i++)
        if ((s = ynode_str(d, ynode_get(d, labels, lk[i]))))
            snprintf(out->labels + strlen(out->labels), sizeof out->labels - strlen(out->labels), "%s=%s;", lk[i], s);
    if ((s = ynode_str(d, ynode_get(d, ynode_get(d, root, "roleRef"), "name"))))
        snprintf(out->roleref, sizeof out->roleref, "%s", s);
    if ((s = ynode_str(d, ynode_get(d, ynode_item(d, ynode_get(d, root, "subjects"), 0), "namespace"))))
        snprintf(out->subject_ns, sizeof out->subject_ns, "%s", s);
    yaml_node_t *rules = ynode_get(d, root, "rules"), *rule;
    for (size_t i = 0; (rule = ynode_item(d, rules, i)); i++) {
        char *w = out->rules + strlen(out->rules);
        size_t room = sizeof out->rules - strlen(out->rules);
        const char *res = ynode_str(d, ynode_item(d, ynode_get(d, rule, "resources"), 0));
        snprintf(w, room, "%s ", res ? res : "?");
        yaml_node_t *verbs = ynode_get(d, rule, "verbs"), *v;
        for (size_t k = 0; (v = ynode_item(d, verbs, k)); k++)
            snprintf(out->rules + strlen(out->rules), sizeof out->rules - strlen(out->rules), "%s%s", k ? "," : "",
                     ynode_str(d, v));
        snprintf(out->rules + strlen(out->rules), sizeof out->rules - strlen(out->rules), ";");
    }
}

/* Parses every document of the stream; returns the count, -1 on a YAML error. */
static int rbac_parse_stream(const char *yaml, rbac_doc *docs, int max) {
    yaml_parser_t p;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_string(&p, (const unsigned char *)yaml, strlen(yaml));
    int n = 0;
    for (;;) {
        yaml_document_t d;
        if (!yaml_parser_load(&p, &d)) {
            n = -1;
            break;
        }
        if (!yaml_document_get_root_node(&d)) {
            yaml_document_delete(&d);
            break;
        }
        if (n < max) rbac_doc_read(&d, &docs[n]);
        n++;
        yaml_document_delete(&d);
    }
    yaml_parser_delete(&p);
    return n;
}

static char *render(const rbac_opts *o) {
    buf b = BUF_INIT;
    rbac_render_yaml(o, &b);
    return buf_steal(&b);
}

#define LABELS(inst) \
    "app.kubernetes.io/name=worker-controller;app.kubernetes.io/instance=" inst ";app.kubernetes.io/managed-by=worker-controller;"

TEST(render_rbac_namespaced_yaml_parses_with_expected_objects) {
    rbac_opts o = {"team-a", "hiclaw-controller", "wc-sa", 1, 1, 1};
    char *y = render(&o);
    rbac_doc d[8];
    REQUIRE(rbac_parse_stream(y, d, 8) == 3);
    CHECK_STR_EQ(d[0].kind, "ServiceAccount");
    CHECK_STR_EQ(d[0].name, "wc-sa");
    CHECK_STR_EQ(d[0].ns, "team-a");
    CHECK_STR_EQ(d[1].kind, "Role");
    CHECK_STR_EQ(d[1].name, "hiclaw-controller");
    CHECK_STR_EQ(d[1].ns, "team-a");
    CHECK_STR_EQ(d[1].rules,
                 "workers get,list,watch,patch,update;workers/status get,patch,update;workers/finalizers update;"
                 "pods get,list,watch,create,delete;serviceaccounts get,list,watch,create,delete;"
                 "serviceaccounts/token create;secrets get;events create,patch;leases get,create,update;"
                 "sandboxclaims get,list,watch,create,delete;sandboxes get,list,watch,patch,delete;"
                 "sandboxsets get,list,watch,create,patch;sandboxes get,list,watch,create,patch,delete;");
    CHECK_CONTAINS(y, "apiGroups: [\"agents.x-k8s.io\"]\n    resources: [\"sandboxes\"]\n"
                      "    verbs: [\"get\", \"list\", \"watch\", \"create\", \"patch\", \"delete\"]\n");
    CHECK_STR_EQ(d[2].kind, "RoleBinding");
    CHECK_STR_EQ(d[2].roleref, "hiclaw-controller");
    CHECK_STR_EQ(d[2].subject_ns, "team-a");
    for (int i = 0; i < 3; i++) CHECK_STR_EQ(d[i].labels, LABELS("hiclaw-controller"));
    CHECK_CONTAINS(y, "name: \"wc-sa\"\n    namespace: \"team-a\"\n"); /* the subject */
    free(y);
}

TEST(render_rbac_without_sandbox_and_deterministic) {
    rbac_opts o = {"default", "hiclaw-controller", "hiclaw-controller", 0, 1, 0};
    char *a = render(&o), *b = render(&o);
    CHECK_STR_EQ(a, b);
    CHECK_NOT_CONTAINS(a, "sandboxsets");
    CHECK_NOT_CONTAINS(a, "serviceaccounts/token");
    rbac_doc r[8];
    REQUIRE(rbac_parse_stream(a, r, 8) == 3);
    CHECK_CONTAINS(r[1].rules, "sandboxclaims get,list,watch;sandboxes get,list,watch;");
    rbac_doc d[8];
    CHECK_INT_EQ(rbac_parse_stream(a, d, 8), 3);
    free(a), free(b);
}

/* The command end to end: flags, stdout, exit codes. */
static int run_render_rbac(char **argv, int argc, char **out) {
    fflush(stdout);
    int fds[2];
    if (pipe(fds) < 0) return -1;
    int saved = dup(1);
    dup2(fds[1], 1);
    close(fds[1]);
    int rc = cmd_render_rbac(argc, argv);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    buf b = BUF_INIT;
    char chunk[4096];
    ssize_t n;
    while ((n = read(fds[0], chunk, sizeof chunk)) > 0) buf_append(&b, chunk, (size_t)n);
    close(fds[0]);
    *out = buf_steal(&b);
    return rc;
}

TEST(render_rbac_command_flags_and_usage_errors) {
    char *out;
    char *a1[] = {"render-rbac", "--namespace", "hiclaw", "--controller-name=ctl", "--no-sandbox", NULL};
    CHECK_INT_EQ(run_render_rbac(a1, 5, &out), WC_EXIT_OK);
    rbac_doc d[8];
    CHECK_INT_EQ(rbac_parse_stream(out, d, 8), 3);
    CHECK_STR_EQ(d[0].name, "ctl"); /* service account defaults to the controller name */
    CHECK_STR_EQ(d[1].ns, "hiclaw");
    CHECK_NOT_CONTAINS(out, "sandboxsets");
    CHECK_NOT_CONTAINS(out, "serviceaccounts/token");
    CHECK_CONTAINS(d[1].rules, "sandboxclaims get,list,watch;sandboxes get,list,watch;");
    free(out);

    char *a0[] = {"render-rbac", NULL};
    CHECK_INT_EQ(run_render_rbac(a0, 1, &out), WC_EXIT_OK);
    CHECK_CONTAINS(out, "namespace: \"default\"");
    CHECK_CONTAINS(out, "name: \"hiclaw-controller\"");
    CHECK_CONTAINS(out, "sandboxsets");
    free(out);

    /* Usage errors exit 2 and print nothing on stdout. */
    char *bad[][3] = {{"render-rbac", "--namespace=Bad_NS", NULL},
                      {"render-rbac", "--controller-name=Upper", NULL},
                      {"render-rbac", "--service-account=a b", NULL},
                      {"render-rbac", "--bogus", NULL},
                      {"render-rbac", "--all-namespaces=maybe", NULL}};
    int saved_err = dup(2), devnull = open("/dev/null", O_WRONLY);
    dup2(devnull, 2);
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        CHECK_INT_EQ(run_render_rbac(bad[i], 2, &out), WC_EXIT_USAGE);
        CHECK_STR_EQ(out, "");
        free(out);
    }
    dup2(saved_err, 2);
    close(saved_err);
    close(devnull);
}

/* `run` watches one namespace (HICLAW_K8S_NAMESPACE): a ClusterRole would grant every
 * namespace's Pods, Secrets and ServiceAccounts for a mode that does not exist. The option is
 * refused with a message saying so, and the usage no longer offers it. */
TEST(render_rbac_all_namespaces_is_refused_with_the_reason) {
    char *out;
    char *args[] = {"render-rbac", "--all-namespaces", NULL};
    fflush(stderr);
    int efds[2];
    REQUIRE(pipe(efds) == 0);
    int saved_err = dup(2);
    dup2(efds[1], 2);
    close(efds[1]);
    int rc = run_render_rbac(args, 2, &out);
    fflush(stderr);
    dup2(saved_err, 2);
    close(saved_err);
    buf e = BUF_INIT;
    char chunk[4096];
    ssize_t n;
    while ((n = read(efds[0], chunk, sizeof chunk)) > 0) buf_append(&e, chunk, (size_t)n);
    close(efds[0]);
    CHECK_INT_EQ(rc, WC_EXIT_USAGE);
    CHECK_STR_EQ(out, "");
    CHECK_CONTAINS(buf_cstr(&e), "--all-namespaces");
    CHECK_CONTAINS(buf_cstr(&e), "one namespace");
    CHECK_NOT_CONTAINS(render_rbac_usage, "--all-namespaces");
    free(out);
    buf_free(&e);
}
