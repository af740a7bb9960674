/*
 * rbac.c — the RBAC rules `run` needs (SPEC 9), as ONE table.
 *
 * The table drives `render-rbac` (and through it the Helm chart and the end-to-end tests, which
 * run the controller under exactly these rules) and, later, the `check` preflight, which asks a
 * SelfSubjectAccessReview per (rule, verb). So nothing here may be broader than what the code
 * calls: adding an API call means adding its row, and the tests notice a missing one.
 *
 * Conditions: the sandbox write rows exist only when the sandbox backend is enabled, and the
 * SandboxSet row only when the controller also manages the pool (an unmanaged pool is never
 * read: a claim names it and OpenKruise resolves it). With the backend disabled, claims and
 * Sandboxes are still watched read-only wherever OpenKruise is installed, so a Worker whose
 * sandbox was made before the backend was turned off is seen: never doubled by a Pod, never
 * stripped of its finalizer while its agent runs (issue 15). The agent-sandbox backend
 * (agents.x-k8s.io) likewise: its write rows only when enabled (true or auto), read-only rows
 * when it is set to false.
 *
 * Scope: one Role in one namespace. `run` watches exactly one namespace (HICLAW_K8S_NAMESPACE,
 * by default its own) and keeps its Lease there, so nothing it does needs a ClusterRole (an
 * --all-namespaces option once printed one, for a mode `run` never had: it was removed).
 */

enum rbac_when {
    RBAC_ALWAYS,
    RBAC_SANDBOX,              /* HICLAW_SANDBOX_ENABLED */
    RBAC_SANDBOX_MANAGED_POOL, /* ... and HICLAW_SANDBOX_MANAGE_POOL */
    RBAC_NO_SANDBOX,           /* HICLAW_SANDBOX_ENABLED=false: the read-only sandbox rows */
    RBAC_AGENT_SANDBOX,        /* HICLAW_AGENT_SANDBOX_ENABLED (true, or auto) */
    RBAC_NO_AGENT_SANDBOX,     /* HICLAW_AGENT_SANDBOX_ENABLED=false: its Sandboxes read-only */
};

#define RBAC_MAX_VERBS 6

typedef struct rbac_rule {
    const char *group;    /* "" = core */
    const char *resource; /* plural, with "/subresource" where one is used */
    const char *verbs[RBAC_MAX_VERBS]; /* NULL-terminated, in kubectl's usual order */
    enum rbac_when when;
} rbac_rule;

static const rbac_rule rbac_table[] = {
    {"hiclaw.io", "workers", {"get", "list", "watch", "patch", "update"}, RBAC_ALWAYS},
    {"hiclaw.io", "workers/status", {"get", "patch", "update"}, RBAC_ALWAYS},
    {"hiclaw.io", "workers/finalizers", {"update"}, RBAC_ALWAYS},
    {"", "pods", {"get", "list", "watch", "create", "delete"}, RBAC_ALWAYS},
    {"", "serviceaccounts", {"get", "list", "watch", "create", "delete"}, RBAC_ALWAYS},
    {"", "serviceaccounts/token", {"create"}, RBAC_SANDBOX},
    {"", "secrets", {"get"}, RBAC_ALWAYS},
    {"events.k8s.io", "events", {"create", "patch"}, RBAC_ALWAYS},
    {"coordination.k8s.io", "leases", {"get", "create", "update"}, RBAC_ALWAYS},
    {"agents.kruise.io", "sandboxclaims", {"get", "list", "watch", "create", "delete"}, RBAC_SANDBOX},
    {"agents.kruise.io", "sandboxes", {"get", "list", "watch", "patch", "delete"}, RBAC_SANDBOX},
    {"agents.kruise.io", "sandboxsets", {"get", "list", "watch", "create", "patch"}, RBAC_SANDBOX_MANAGED_POOL},
    {"agents.kruise.io", "sandboxclaims", {"get", "list", "watch"}, RBAC_NO_SANDBOX},
    {"agents.kruise.io", "sandboxes", {"get", "list", "watch"}, RBAC_NO_SANDBOX},
    {"agents.x-k8s.io", "sandboxes", {"get", "list", "watch", "create", "patch", "delete"}, RBAC_AGENT_SANDBOX},
    {"agents.x-k8s.io", "sandboxes", {"get", "list", "watch"}, RBAC_NO_AGENT_SANDBOX},
};

#define RBAC_NRULES (sizeof rbac_table / sizeof *rbac_table)

static int rbac_applies(const rbac_rule *r, int sandbox, int manage_pool, int agent_sandbox) {
    switch (r->when) {
    case RBAC_ALWAYS: return 1;
    case RBAC_SANDBOX: return sandbox;
    case RBAC_SANDBOX_MANAGED_POOL: return sandbox && manage_pool;
    case RBAC_NO_SANDBOX: return !sandbox;
    case RBAC_AGENT_SANDBOX: return agent_sandbox;
    case RBAC_NO_AGENT_SANDBOX: return !agent_sandbox;
    }
    return 0;
}

/*
 * Iterates the rules `run` needs for these options, in table order:
 *   size_t it = 0; for (const rbac_rule *r; (r = rbac_rules(sandbox, pool, agent_sandbox, &it)); ) ...
 * Returns NULL when done.
 */
static const rbac_rule *rbac_rules(int sandbox, int manage_pool, int agent_sandbox, size_t *cursor) {
    while (*cursor < RBAC_NRULES) {
        const rbac_rule *r = &rbac_table[(*cursor)++];
        if (rbac_applies(r, sandbox, manage_pool, agent_sandbox)) return r;
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
    int agent_sandbox;
} rbac_opts;

/* A YAML double-quoted scalar (JSON's string syntax is valid YAML); the caller frees it. */
static char *rbac_quote(const char *s) {
    buf b = BUF_INIT;
    buf_put_json_string(&b, s);
    return buf_steal(&b);
}

/* A document's start: its apiVersion and kind, and the metadata every manifest carries. */
static void rbac_yaml_head(buf *out, const char *api_version, const char *kind, const rbac_opts *o, const char *name) {
    char *n = rbac_quote(name), *ns = rbac_quote(o->namespace), *inst = rbac_quote(o->controller_name);
    buf_printf(out,
               "---\napiVersion: %s\nkind: %s\n"
               "metadata:\n  name: %s\n  namespace: %s\n  labels:\n    app.kubernetes.io/name: worker-controller\n"
               "    app.kubernetes.io/instance: %s\n    app.kubernetes.io/managed-by: worker-controller\n",
               api_version, kind, n, ns, inst);
    free(n), free(ns), free(inst);
}

static void rbac_yaml_rule(buf *out, const rbac_rule *r) {
    buf_printf(out, "  - apiGroups: [\"%s\"]\n    resources: [\"%s\"]\n    verbs: [", r->group, r->resource);
    for (int v = 0; v < RBAC_MAX_VERBS && r->verbs[v]; v++) buf_printf(out, "%s\"%s\"", v ? ", " : "", r->verbs[v]);
    buf_puts(out, "]\n");
}

/* The Role holding every applicable rule. */
static void rbac_yaml_role(buf *out, const rbac_opts *o, const char *name) {
    rbac_yaml_head(out, "rbac.authorization.k8s.io/v1", "Role", o, name);
    buf_puts(out, "rules:\n");
    size_t it = 0;
    for (const rbac_rule *r; (r = rbac_rules(o->sandbox, o->manage_pool, o->agent_sandbox, &it));) rbac_yaml_rule(out, r);
}

static void rbac_yaml_binding(buf *out, const rbac_opts *o, const char *name) {
    rbac_yaml_head(out, "rbac.authorization.k8s.io/v1", "RoleBinding", o, name);
    char *n = rbac_quote(name), *sa = rbac_quote(o->service_account), *ns = rbac_quote(o->namespace);
    buf_printf(out,
               "roleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: Role\n  name: %s\n"
               "subjects:\n  - kind: ServiceAccount\n    name: %s\n    namespace: %s\n",
               n, sa, ns);
    free(n), free(sa), free(ns);
}

/*
 * The manifests `run` needs, as a multi-document YAML stream: ServiceAccount <sa>, then Role +
 * RoleBinding <controller-name> with every rule, all in o->namespace.
 */
static void rbac_render_yaml(const rbac_opts *o, buf *out) {
    buf_puts(out, "# RBAC for worker-controller run, generated by `worker-controller render-rbac`.\n");
    rbac_yaml_head(out, "v1", "ServiceAccount", o, o->service_account);
    rbac_yaml_role(out, o, o->controller_name);
    rbac_yaml_binding(out, o, o->controller_name);
}
