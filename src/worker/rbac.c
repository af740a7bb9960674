/*
 * rbac.c — the RBAC rules `run` needs (SPEC 9), as ONE table.
 *
 * The table drives `render-rbac` (and through it the Helm chart and the end-to-end tests, which
 * run the controller under exactly these rules) and, later, the `check` preflight, which asks a
 * SelfSubjectAccessReview per (rule, verb). So nothing here may be broader than what the code
 * calls: adding an API call means adding its row, and the tests notice a missing one.
 *
 * Conditions: the sandbox rows exist only when the sandbox backend is enabled, and the
 * SandboxSet row only when the controller also manages the pool (an unmanaged pool is never
 * read: a claim names it and OpenKruise resolves it).
 *
 * Scope: every row applies where Workers are watched, except Leases, which live in the
 * controller's own namespace. With --all-namespaces the watched rows go into a ClusterRole and
 * the Lease row stays in a namespaced Role, so leader election never grants Lease writes in
 * every namespace of the cluster.
 */

enum rbac_when {
    RBAC_ALWAYS,
    RBAC_SANDBOX,              /* HICLAW_SANDBOX_ENABLED */
    RBAC_SANDBOX_MANAGED_POOL, /* ... and HICLAW_SANDBOX_MANAGE_POOL */
};

enum rbac_scope {
    RBAC_SCOPE_WATCHED, /* where Workers live: a Role, or the ClusterRole with --all-namespaces */
    RBAC_SCOPE_OWN,     /* the controller's own namespace only (leader-election Lease) */
};

#define RBAC_MAX_VERBS 6

typedef struct rbac_rule {
    const char *group;    /* "" = core */
    const char *resource; /* plural, with "/subresource" where one is used */
    const char *verbs[RBAC_MAX_VERBS]; /* NULL-terminated, in kubectl's usual order */
    enum rbac_when when;
    enum rbac_scope scope;
} rbac_rule;

static const rbac_rule rbac_table[] = {
    {"hiclaw.io", "workers", {"get", "list", "watch", "patch", "update"}, RBAC_ALWAYS, RBAC_SCOPE_WATCHED},
    {"hiclaw.io", "workers/status", {"get", "patch", "update"}, RBAC_ALWAYS, RBAC_SCOPE_WATCHED},
    {"hiclaw.io", "workers/finalizers", {"update"}, RBAC_ALWAYS, RBAC_SCOPE_WATCHED},
    {"", "pods", {"get", "list", "watch", "create", "delete"}, RBAC_ALWAYS, RBAC_SCOPE_WATCHED},
    {"", "serviceaccounts", {"get", "list", "watch", "create", "delete"}, RBAC_ALWAYS, RBAC_SCOPE_WATCHED},
    {"", "serviceaccounts/token", {"create"}, RBAC_SANDBOX, RBAC_SCOPE_WATCHED},
    {"", "secrets", {"get"}, RBAC_ALWAYS, RBAC_SCOPE_WATCHED},
    {"events.k8s.io", "events", {"create", "patch"}, RBAC_ALWAYS, RBAC_SCOPE_WATCHED},
    {"coordination.k8s.io", "leases", {"get", "create", "update"}, RBAC_ALWAYS, RBAC_SCOPE_OWN},
    {"agents.kruise.io", "sandboxclaims", {"get", "list", "watch", "create", "delete"}, RBAC_SANDBOX,
     RBAC_SCOPE_WATCHED},
    {"agents.kruise.io", "sandboxes", {"get", "list", "watch", "patch", "delete"}, RBAC_SANDBOX, RBAC_SCOPE_WATCHED},
    {"agents.kruise.io", "sandboxsets", {"get", "list", "watch", "create", "patch"}, RBAC_SANDBOX_MANAGED_POOL,
     RBAC_SCOPE_WATCHED},
};

#define RBAC_NRULES (sizeof rbac_table / sizeof *rbac_table)

static int rbac_applies(const rbac_rule *r, int sandbox, int manage_pool) {
    switch (r->when) {
    case RBAC_ALWAYS: return 1;
    case RBAC_SANDBOX: return sandbox;
    case RBAC_SANDBOX_MANAGED_POOL: return sandbox && manage_pool;
    }
    return 0;
}

/*
 * Iterates the rules `run` needs for these options, in table order:
 *   size_t it = 0; for (const rbac_rule *r; (r = rbac_rules(sandbox, pool, &it)); ) ...
 * Returns NULL when done.
 */
static const rbac_rule *rbac_rules(int sandbox, int manage_pool, size_t *cursor) {
    while (*cursor < RBAC_NRULES) {
        const rbac_rule *r = &rbac_table[(*cursor)++];
        if (rbac_applies(r, sandbox, manage_pool)) return r;
    }
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * YAML for render-rbac. Hand-emitted, deterministic: fixed key order, every user-supplied
 * string double-quoted with JSON escapes (a JSON string is a valid YAML double-quoted scalar),
 * fixed vocabulary (kinds, verbs, groups) plain. */

typedef struct rbac_opts {
    const char *namespace;       /* where the ServiceAccount, bindings and Lease Role live */
    const char *controller_name; /* names and the app.kubernetes.io/instance label */
    const char *service_account;
    int sandbox;
    int manage_pool;
    int all_namespaces;
} rbac_opts;

static void rbac_yaml_metadata(buf *out, const rbac_opts *o, const char *name, int namespaced) {
    buf_puts(out, "metadata:\n  name: ");
    buf_put_json_string(out, name);
    if (namespaced) {
        buf_puts(out, "\n  namespace: ");
        buf_put_json_string(out, o->namespace);
    }
    buf_puts(out, "\n  labels:\n    app.kubernetes.io/name: worker-controller\n    app.kubernetes.io/instance: ");
    buf_put_json_string(out, o->controller_name);
    buf_puts(out, "\n    app.kubernetes.io/managed-by: worker-controller\n");
}

static void rbac_yaml_rule(buf *out, const rbac_rule *r) {
    buf_printf(out, "  - apiGroups: [\"%s\"]\n    resources: [\"%s\"]\n    verbs: [", r->group, r->resource);
    for (int v = 0; v < RBAC_MAX_VERBS && r->verbs[v]; v++) buf_printf(out, "%s\"%s\"", v ? ", " : "", r->verbs[v]);
    buf_puts(out, "]\n");
}

#define RBAC_SCOPE_BIT(s) (1u << (s))

/* A Role or ClusterRole holding the applicable rules whose scope is in scopes (a bit set). */
static void rbac_yaml_role(buf *out, const rbac_opts *o, const char *name, int cluster, unsigned scopes) {
    buf_printf(out, "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: %s\n", cluster ? "ClusterRole" : "Role");
    rbac_yaml_metadata(out, o, name, !cluster);
    buf_puts(out, "rules:\n");
    size_t it = 0;
    for (const rbac_rule *r; (r = rbac_rules(o->sandbox, o->manage_pool, &it));)
        if (scopes & RBAC_SCOPE_BIT(r->scope)) rbac_yaml_rule(out, r);
}

static void rbac_yaml_binding(buf *out, const rbac_opts *o, const char *name, int cluster) {
    buf_printf(out, "---\napiVersion: rbac.authorization.k8s.io/v1\nkind: %s\n",
               cluster ? "ClusterRoleBinding" : "RoleBinding");
    rbac_yaml_metadata(out, o, name, !cluster);
    buf_printf(out, "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: %s\n  name: ",
               cluster ? "ClusterRole" : "Role");
    buf_put_json_string(out, name);
    buf_puts(out, "\nsubjects:\n  - kind: ServiceAccount\n    name: ");
    buf_put_json_string(out, o->service_account);
    buf_puts(out, "\n    namespace: ");
    buf_put_json_string(out, o->namespace);
    buf_putc(out, '\n');
}

/*
 * The manifests `run` needs, as a multi-document YAML stream:
 *   ServiceAccount <sa>;
 *   namespaced:      Role + RoleBinding <controller-name> with every rule;
 *   all-namespaces:  ClusterRole + ClusterRoleBinding <controller-name> with the watched rules,
 *                    Role + RoleBinding <controller-name>-leader-election with the Lease rule.
 * The ClusterRole is named after the controller alone: controller names are unique per cluster
 * anyway (the hiclaw.io/controller label is what separates two controllers' objects).
 */
static void rbac_render_yaml(const rbac_opts *o, buf *out) {
    buf_puts(out, "# RBAC for worker-controller run, generated by `worker-controller render-rbac`.\n");
    buf_puts(out, "---\napiVersion: v1\nkind: ServiceAccount\n");
    rbac_yaml_metadata(out, o, o->service_account, 1);
    if (!o->all_namespaces) {
        rbac_yaml_role(out, o, o->controller_name, 0,
                       RBAC_SCOPE_BIT(RBAC_SCOPE_WATCHED) | RBAC_SCOPE_BIT(RBAC_SCOPE_OWN));
        rbac_yaml_binding(out, o, o->controller_name, 0);
        return;
    }
    rbac_yaml_role(out, o, o->controller_name, 1, RBAC_SCOPE_BIT(RBAC_SCOPE_WATCHED));
    rbac_yaml_binding(out, o, o->controller_name, 1);
    char leader[300];
    snprintf(leader, sizeof leader, "%s-leader-election", o->controller_name);
    rbac_yaml_role(out, o, leader, 0, RBAC_SCOPE_BIT(RBAC_SCOPE_OWN));
    rbac_yaml_binding(out, o, leader, 0);
}
