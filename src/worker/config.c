/*
 * config.c — the controller's configuration: ONE table drives parsing, `run --help`, the
 * effective-config log line, and (through cfg_table) `helm-env` and the Helm chart.
 *
 * Every setting is an environment variable (HiClaw style) and a `run` flag derived from it
 * mechanically (drop "HICLAW_", lowercase, '_' -> '-'; a unit test holds the table to that).
 * Precedence: flag > environment > default. An empty environment variable counts as unset
 * (Helm and Compose files often render `value: ""` for "not configured"); an empty flag value
 * (--resource-prefix=) really sets the empty string.
 *
 * Loading is all-or-nothing and happens before `run` touches the cluster: every failure is
 * WC_EINVAL (exit 2) with a message naming the variable and the flag, and never echoing a
 * secret. Secrets (the worker-deps keys) are registered with the logger's scrubber once loaded,
 * redacted in the summary line, never shown as help defaults, and wiped by cfg_free().
 *
 * Secret values may also come from files (Kubernetes Secret volumes): VAR_FILE names a file
 * whose content, minus trailing newlines, is the value. Setting both VAR and VAR_FILE (from any
 * source) is an error rather than a silent precedence rule: one of them is stale.
 */

enum cfg_type {
    CFG_STRING,
    CFG_BOOL,
    CFG_AUTO_BOOL,   /* "auto" (stored -1) or a boolean (0, 1) */
    CFG_INT,         /* int64 within [min, max] */
    CFG_DURATION,    /* Go-style duration, stored in ms, within [min, max] ms */
    CFG_QUANTITY,    /* Kubernetes quantity, > 0 */
    CFG_ENUM,        /* one of `choices` ("a|b|c") */
    CFG_ADDR,        /* listen address [host]:port */
    CFG_URL,         /* http(s)://host[:port], no path */
    CFG_SECRET_FILE, /* path; the file's content becomes the string at `target` */
    CFG_PEM_FILE,    /* path; the file must hold PEM certificates, kept at `target` */
};

enum cfg_check {
    CFG_CHECK_NONE,
    CFG_CHECK_NAME,          /* DNS-1123 label: label value AND object-name part */
    CFG_CHECK_NAMESPACE,     /* DNS-1123 label, empty allowed */
    CFG_CHECK_NAME_PREFIX,   /* lowercase alphanumerics and '-', may be empty */
    CFG_CHECK_SUBDOMAIN,     /* DNS-1123 subdomain (object names) */
    CFG_CHECK_WORD,          /* non-empty, no whitespace or control characters */
    CFG_CHECK_BUCKET,        /* S3 bucket name, empty allowed */
    CFG_CHECK_KEY_PREFIX,    /* object key prefix, normalised to end with '/' */
};

#define CFG_SECRET 1u /* never logged, never shown as a default, wiped on free */

/* The HiClaw endpoints and switches every Worker receives verbatim (SPEC 6): HICLAW_<NAME> on
 * the controller, HICLAW_<NAME> in each Worker's env — the first list always (an empty value
 * left out), the second only when set. These lists are the one place the names are written:
 * the configuration table, the configuration struct, the Worker env settings (worker/env.c)
 * and the copy between them expand them. X(field, NAME, flag, Helm value under hiclaw.) */
#define WC_PASS_SERVICES(X)                                                                  \
    X(controller_url, CONTROLLER_URL, "controller-url", controllerURL)                        \
    X(matrix_url, MATRIX_URL, "matrix-url", matrixURL)                                        \
    X(matrix_domain, MATRIX_DOMAIN, "matrix-domain", matrixDomain)                            \
    X(ai_gateway_url, AI_GATEWAY_URL, "ai-gateway-url", aiGatewayURL)
#define WC_PASS_STORAGE(X)                                                                   \
    X(fs_endpoint, FS_ENDPOINT, "fs-endpoint", fsEndpoint)                                    \
    X(fs_bucket, FS_BUCKET, "fs-bucket", fsBucket)                                            \
    X(storage_prefix, STORAGE_PREFIX, "storage-prefix", storagePrefix)
#define WC_PASS_ENDPOINTS(X) WC_PASS_SERVICES(X) WC_PASS_STORAGE(X)
#define WC_PASS_OPTIONAL(X)                                                                  \
    X(region, REGION, "region", region)                                                       \
    X(yolo, YOLO, "yolo", yolo)                                                               \
    X(matrix_debug, MATRIX_DEBUG, "matrix-debug", matrixDebug)
#define WC_PASS_ALL(X) WC_PASS_ENDPOINTS(X) WC_PASS_OPTIONAL(X)

typedef struct wc_cfg {
    /* controller */
    char *controller_name;
    char *watch_namespace; /* "" = the pod's own namespace (run resolves it) */
    char *resource_prefix;
    char *auth_audience;
    int leader_elect;
    char *metrics_addr;
    char *health_addr;
    int64_t concurrency;
    /* log */
    char *log_format; /* json | text | auto, as configured */
    char *log_level;
    enum log_format log_fmt; /* resolved: auto -> text on a terminal, else json */
    enum log_level log_lvl;
    /* worker defaults */
    char *default_worker_runtime;
    char *worker_image; /* openclaw */
    char *copaw_worker_image;
    char *hermes_worker_image;
    qty worker_cpu;    /* limits; requests are fixed at 100m / 256Mi (SPEC 2) */
    qty worker_memory;
    /* HiClaw endpoints passed through to every Worker (SPEC 6), verbatim */
#define CFG_PASS_FIELD(f, NAME, flag, helm) char *f;
    WC_PASS_ALL(CFG_PASS_FIELD)
#undef CFG_PASS_FIELD
    /* sandbox backend */
    int sandbox_mode;              /* HICLAW_SANDBOX_ENABLED as given: -1 auto, 0 false, 1 true */
    int sandbox_enabled;           /* in effect (cfg_load resolves auto: on with worker-deps storage;
                                      the sandbox backend turns it off again without OpenKruise agents) */
    const char *sandbox_off_why;   /* auto resolved off: why, naming what to configure; else NULL */
    char *sandbox_pool;
    int sandbox_manage_pool;
    char *sandbox_agent_runtime_image;
    int64_t sandbox_prewarm_size;
    char *sandbox_deps_pv;
    int sandbox_pause;
    int64_t sandbox_token_ttl_s;
    int64_t sandbox_claim_timeout_ms;
    int64_t sandbox_wait_ready_timeout_ms;
    /* agent-sandbox backend (kubernetes-sigs agent-sandbox) */
    int agent_sandbox_mode;        /* HICLAW_AGENT_SANDBOX_ENABLED as given: -1 auto, 0 false, 1 true; auto is
                                      resolved by the backend (discovery: is agents.x-k8s.io served?) */
    /* worker-deps object storage */
    char *worker_deps_endpoint; /* trailing '/' removed */
    char *worker_deps_bucket;
    char *worker_deps_prefix;   /* "" or ends with '/' */
    char *worker_deps_region;
    char *worker_deps_access_key_id;     /* secret */
    char *worker_deps_secret_access_key; /* secret */
    char *worker_deps_access_key_id_file;
    char *worker_deps_secret_access_key_file;
    char *worker_deps_ca_file;
    char *worker_deps_ca_pem; /* content of worker_deps_ca_file, NULL when unset */
    int worker_deps_allow_plaintext_http;
    /* cluster connection flags (--kubeconfig, ...): point into argv */
    kube_connect_opts kube;
} wc_cfg;

typedef struct cfg_field {
    const char *env;
    const char *flag;    /* without "--" */
    const char *def;     /* as a user would write it; "" = unset */
    const char *helm;    /* values.yaml path */
    const char *help;    /* one line */
    enum cfg_type type;
    enum cfg_check check;
    const char *choices; /* CFG_ENUM */
    int64_t min, max;    /* CFG_INT; CFG_DURATION in ms */
    unsigned flags;      /* CFG_SECRET */
    size_t off;          /* offsetof(wc_cfg, field) */
    size_t target;       /* CFG_*_FILE: offsetof the field receiving the content */
} cfg_field;

/* A row's field: where the value lives in wc_cfg. */
#define CFG_AT(f) offsetof(wc_cfg, f)
/* The pass-through rows (WC_PASS_ALL): names derived, help generated. */
#define F_PASS(f, NAME, flag_, helm_) \
    {.off = CFG_AT(f), .env = "HICLAW_" #NAME, .flag = flag_, .def = "", .helm = "hiclaw." #helm_,        \
     .help = "passed to Workers as HICLAW_" #NAME},
#define F_PASS_OPT(f, NAME, flag_, helm_) \
    {.off = CFG_AT(f), .env = "HICLAW_" #NAME, .flag = flag_, .def = "", .helm = "hiclaw." #helm_,        \
     .help = "passed to Workers as HICLAW_" #NAME " when set"},

#define CFG_S 1000
#define CFG_DAY_MS (24 * 3600 * CFG_S)

/* Grouped by the first segment of the Helm path; --help prints a heading per group. */
static const cfg_field cfg_fields[] = {
    {.off = CFG_AT(controller_name), .env = "HICLAW_CONTROLLER_NAME", .flag = "controller-name",
     .def = "hiclaw-controller", .check = CFG_CHECK_NAME, .helm = "controller.name",
     .help = "hiclaw.io/controller label value scoping every watch; prefixes Lease and RBAC names"},
    {.off = CFG_AT(watch_namespace), .env = "HICLAW_K8S_NAMESPACE", .flag = "k8s-namespace", .def = "",
     .check = CFG_CHECK_NAMESPACE, .helm = "controller.watchNamespace",
     .help = "namespace whose Workers are reconciled (empty: the pod's own namespace)"},
    {.off = CFG_AT(resource_prefix), .env = "HICLAW_RESOURCE_PREFIX", .flag = "resource-prefix", .def = "hiclaw-",
     .check = CFG_CHECK_NAME_PREFIX, .helm = "controller.resourcePrefix",
     .help = "prefix of created object names: <prefix>worker-<name>"},
    {.off = CFG_AT(auth_audience), .env = "HICLAW_AUTH_AUDIENCE", .flag = "auth-audience", .def = "hiclaw-controller",
     .check = CFG_CHECK_WORD, .helm = "controller.authAudience",
     .help = "audience of the ServiceAccount tokens given to Workers"},
    {.off = CFG_AT(leader_elect), .env = "HICLAW_LEADER_ELECT", .flag = "leader-elect", .type = CFG_BOOL,
     .def = "true", .helm = "controller.leaderElect",
     .help = "elect one active replica through the Lease <controller-name>-leader"},
    {.off = CFG_AT(metrics_addr), .env = "HICLAW_METRICS_ADDR", .flag = "metrics-addr", .type = CFG_ADDR,
     .def = ":8080", .helm = "controller.metricsAddr", .help = "listen address of the Prometheus /metrics endpoint"},
    {.off = CFG_AT(health_addr), .env = "HICLAW_HEALTH_ADDR", .flag = "health-addr", .type = CFG_ADDR, .def = ":8081",
     .helm = "controller.healthAddr", .help = "listen address of /healthz and /readyz"},
    {.off = CFG_AT(concurrency), .env = "HICLAW_CONCURRENCY", .flag = "concurrency", .type = CFG_INT, .def = "4",
     .min = 1, .max = 64, .helm = "controller.concurrency", .help = "Workers reconciled in parallel"},

    {.off = CFG_AT(log_format), .env = "HICLAW_LOG_FORMAT", .flag = "log-format", .type = CFG_ENUM, .def = "auto",
     .choices = "json|text|auto", .helm = "log.format",
     .help = "log line format (auto: text on a terminal, json otherwise)"},
    {.off = CFG_AT(log_level), .env = "HICLAW_LOG_LEVEL", .flag = "log-level", .type = CFG_ENUM, .def = "info",
     .choices = "debug|info|warn|error", .helm = "log.level", .help = "least severe level logged"},

    {.off = CFG_AT(default_worker_runtime), .env = "HICLAW_DEFAULT_WORKER_RUNTIME", .flag = "default-worker-runtime",
     .type = CFG_ENUM, .def = "openclaw", .choices = "openclaw|copaw|hermes", .helm = "worker.defaultRuntime",
     .help = "agent runtime of Workers without spec.runtime"},
    {.off = CFG_AT(worker_image), .env = "HICLAW_WORKER_IMAGE", .flag = "worker-image",
     .def = "hiclaw/worker-openclaw:latest", .check = CFG_CHECK_WORD, .helm = "worker.images.openclaw",
     .help = "image of openclaw Workers without spec.image (override: pin a version)"},
    {.off = CFG_AT(copaw_worker_image), .env = "HICLAW_COPAW_WORKER_IMAGE", .flag = "copaw-worker-image",
     .def = "hiclaw/worker-copaw:latest", .check = CFG_CHECK_WORD, .helm = "worker.images.copaw",
     .help = "image of copaw Workers without spec.image (override: pin a version)"},
    {.off = CFG_AT(hermes_worker_image), .env = "HICLAW_HERMES_WORKER_IMAGE", .flag = "hermes-worker-image",
     .def = "hiclaw/worker-hermes:latest", .check = CFG_CHECK_WORD, .helm = "worker.images.hermes",
     .help = "image of hermes Workers without spec.image (override: pin a version)"},
    {.off = CFG_AT(worker_cpu), .env = "HICLAW_K8S_WORKER_CPU", .flag = "k8s-worker-cpu", .type = CFG_QUANTITY,
     .def = "1000m", .helm = "worker.resources.cpu",
     .help = "CPU limit of Workers without spec.resources (request 100m)"},
    {.off = CFG_AT(worker_memory), .env = "HICLAW_K8S_WORKER_MEMORY", .flag = "k8s-worker-memory",
     .type = CFG_QUANTITY, .def = "2Gi", .helm = "worker.resources.memory",
     .help = "memory limit of Workers without spec.resources (request 256Mi)"},

    WC_PASS_ENDPOINTS(F_PASS) WC_PASS_OPTIONAL(F_PASS_OPT)

    {.off = CFG_AT(sandbox_mode), .env = "HICLAW_SANDBOX_ENABLED", .flag = "sandbox-enabled", .type = CFG_AUTO_BOOL,
     .def = "auto", .helm = "sandbox.enabled",
     .help = "allow spec.backendRuntime: sandbox (needs OpenKruise agents and worker-deps storage); auto: on when "
             "worker-deps storage is configured and OpenKruise agents is installed, else Pods only"},
    {.off = CFG_AT(sandbox_pool), .env = "HICLAW_SANDBOX_POOL", .flag = "sandbox-pool", .def = "hiclaw-worker-pool",
     .check = CFG_CHECK_SUBDOMAIN, .helm = "sandbox.pool", .help = "SandboxSet (warm pool) that claims are made from"},
    {.off = CFG_AT(sandbox_manage_pool), .env = "HICLAW_SANDBOX_MANAGE_POOL", .flag = "sandbox-manage-pool",
     .type = CFG_BOOL, .def = "true", .helm = "sandbox.managePool",
     .help = "server-side apply the SandboxSet (false: it is managed elsewhere)"},
    {.off = CFG_AT(sandbox_agent_runtime_image), .env = "HICLAW_SANDBOX_AGENT_RUNTIME_IMAGE",
     .flag = "sandbox-agent-runtime-image", .def = "hiclaw/agent-runtime:latest", .check = CFG_CHECK_WORD,
     .helm = "sandbox.agentRuntimeImage", .help = "image of the managed pool's sandboxes (override: pin a version)"},
    {.off = CFG_AT(sandbox_prewarm_size), .env = "HICLAW_SANDBOX_PREWARM_SIZE", .flag = "sandbox-prewarm-size",
     .type = CFG_INT, .def = "1", .min = 0, .max = 10000, .helm = "sandbox.prewarmSize",
     .help = "replicas of the managed pool kept warm"},
    {.off = CFG_AT(sandbox_deps_pv), .env = "HICLAW_SANDBOX_DEPS_PV", .flag = "sandbox-deps-pv",
     .def = "hiclaw-worker-deps", .check = CFG_CHECK_SUBDOMAIN, .helm = "sandbox.depsPV",
     .help = "CSI PersistentVolume exposing the worker-deps bucket to sandboxes"},
    {.off = CFG_AT(sandbox_pause), .env = "HICLAW_SANDBOX_PAUSE", .flag = "sandbox-pause", .type = CFG_BOOL,
     .def = "false", .helm = "sandbox.pause", .help = "pause sandboxes of Sleeping Workers instead of releasing them"},
    {.off = CFG_AT(sandbox_token_ttl_s), .env = "HICLAW_SANDBOX_TOKEN_TTL", .flag = "sandbox-token-ttl",
     .type = CFG_INT, .def = "86400", .min = 600, .max = INT32_MAX, .helm = "sandbox.tokenTTLSeconds",
     .help = "lifetime in seconds of sandbox Workers' tokens (the API server's minimum is 600)"},
    {.off = CFG_AT(sandbox_claim_timeout_ms), .env = "HICLAW_SANDBOX_CLAIM_TIMEOUT", .flag = "sandbox-claim-timeout",
     .type = CFG_DURATION, .def = "5m", .min = CFG_S, .max = CFG_DAY_MS, .helm = "sandbox.claimTimeout",
     .help = "how long a SandboxClaim may wait for a sandbox"},
    {.off = CFG_AT(sandbox_wait_ready_timeout_ms), .env = "HICLAW_SANDBOX_WAIT_READY_TIMEOUT",
     .flag = "sandbox-wait-ready-timeout", .type = CFG_DURATION, .def = "2m", .min = CFG_S, .max = CFG_DAY_MS,
     .helm = "sandbox.waitReadyTimeout", .help = "how long a claimed sandbox may take to become ready"},

    {.off = CFG_AT(agent_sandbox_mode), .env = "HICLAW_AGENT_SANDBOX_ENABLED", .flag = "agent-sandbox-enabled",
     .type = CFG_AUTO_BOOL, .def = "auto", .helm = "agentSandbox.enabled",
     .help = "allow spec.backendRuntime: agent-sandbox (kubernetes-sigs agent-sandbox, agents.x-k8s.io); auto: on "
             "when the agents.x-k8s.io API is served; off: Sandboxes already made are still observed, read-only"},

    {.off = CFG_AT(worker_deps_endpoint), .env = "HICLAW_WORKER_DEPS_ENDPOINT", .flag = "worker-deps-endpoint",
     .type = CFG_URL, .def = "", .helm = "workerDeps.endpoint",
     .help = "S3-compatible endpoint, http(s)://host[:port] (required with sandbox)"},
    {.off = CFG_AT(worker_deps_bucket), .env = "HICLAW_WORKER_DEPS_BUCKET", .flag = "worker-deps-bucket", .def = "",
     .check = CFG_CHECK_BUCKET, .helm = "workerDeps.bucket",
     .help = "bucket of the worker-deps objects (required with sandbox)"},
    {.off = CFG_AT(worker_deps_prefix), .env = "HICLAW_WORKER_DEPS_PREFIX", .flag = "worker-deps-prefix", .def = "",
     .check = CFG_CHECK_KEY_PREFIX, .helm = "workerDeps.prefix",
     .help = "key prefix inside the bucket; a missing trailing '/' is added"},
    {.off = CFG_AT(worker_deps_region), .env = "HICLAW_WORKER_DEPS_REGION", .flag = "worker-deps-region",
     .def = "us-east-1", .check = CFG_CHECK_WORD, .helm = "workerDeps.region", .help = "SigV4 signing region"},
    {.off = CFG_AT(worker_deps_access_key_id), .env = "HICLAW_WORKER_DEPS_ACCESS_KEY_ID",
     .flag = "worker-deps-access-key-id", .flags = CFG_SECRET, .def = "", .helm = "workerDeps.accessKeyID",
     .help = "access key id (secret; prefer the _FILE variant or a Secret env)"},
    {.off = CFG_AT(worker_deps_secret_access_key), .env = "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY",
     .flag = "worker-deps-secret-access-key", .flags = CFG_SECRET, .def = "", .helm = "workerDeps.secretAccessKey",
     .help = "secret access key (secret; prefer the _FILE variant or a Secret env)"},
    {.off = CFG_AT(worker_deps_access_key_id_file), .env = "HICLAW_WORKER_DEPS_ACCESS_KEY_ID_FILE",
     .flag = "worker-deps-access-key-id-file", .type = CFG_SECRET_FILE, .target = CFG_AT(worker_deps_access_key_id),
     .def = "", .helm = "workerDeps.accessKeyIDFile",
     .help = "file holding the access key id (instead of HICLAW_WORKER_DEPS_ACCESS_KEY_ID)"},
    {.off = CFG_AT(worker_deps_secret_access_key_file), .env = "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY_FILE",
     .flag = "worker-deps-secret-access-key-file", .type = CFG_SECRET_FILE,
     .target = CFG_AT(worker_deps_secret_access_key), .def = "", .helm = "workerDeps.secretAccessKeyFile",
     .help = "file holding the secret access key (instead of HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY)"},
    {.off = CFG_AT(worker_deps_ca_file), .env = "HICLAW_WORKER_DEPS_CA_FILE", .flag = "worker-deps-ca-file",
     .type = CFG_PEM_FILE, .target = CFG_AT(worker_deps_ca_pem), .def = "", .helm = "workerDeps.caFile",
     .help = "PEM CA bundle that signs the endpoint's certificate"},
    {.off = CFG_AT(worker_deps_allow_plaintext_http), .env = "HICLAW_WORKER_DEPS_ALLOW_PLAINTEXT_HTTP",
     .flag = "worker-deps-allow-plaintext-http", .type = CFG_BOOL, .def = "false",
     .helm = "workerDeps.allowPlaintextHTTP",
     .help = "accept an http:// endpoint: env files (credentials) and tokens then cross the network unencrypted"},
};

#define CFG_NFIELDS (sizeof cfg_fields / sizeof *cfg_fields)

static const cfg_field *cfg_table(size_t *n) {
    *n = CFG_NFIELDS;
    return cfg_fields;
}

static char **cfg_str_at(wc_cfg *c, size_t off) { return (char **)((char *)c + off); }
static char *const *cfg_cstr_at(const wc_cfg *c, size_t off) { return (char *const *)((const char *)c + off); }

/* ------------------------------------------------------------------------------------------
 * Applying one value to its field. */

static int cfg_field_is_string(const cfg_field *f) {
    return f->type == CFG_STRING || f->type == CFG_ENUM || f->type == CFG_ADDR || f->type == CFG_URL ||
           f->type == CFG_SECRET_FILE || f->type == CFG_PEM_FILE;
}

static void cfg_free_str(char **p, int secret) {
    if (*p && secret) secure_zero(*p, strlen(*p));
    free(*p);
    *p = NULL;
}

static int cfg_enum_has(const char *choices, const char *v) {
    size_t vl = strlen(v);
    for (const char *p = choices; *p; ) {
        const char *bar = strchr(p, '|');
        size_t l = bar ? (size_t)(bar - p) : strlen(p);
        if (l == vl && strncmp(p, v, l) == 0) return 1;
        if (!bar) break;
        p = bar + 1;
    }
    return 0;
}

/* Returns NULL when v passes the row's string check, else what is wrong with it. */
static const char *cfg_check_string(const cfg_field *f, const char *v) {
    switch (f->check) {
    case CFG_CHECK_NONE: return NULL;
    case CFG_CHECK_NAME:
        return cfg_is_dns_label(v) ? NULL : "is not a DNS-1123 label (lowercase alphanumerics and '-', at most 63)";
    case CFG_CHECK_NAMESPACE:
        return !*v || cfg_is_dns_label(v) ? NULL : "is not a valid namespace name (DNS-1123 label)";
    case CFG_CHECK_NAME_PREFIX:
        return cfg_is_name_prefix(v) ? NULL
                                     : "is not a name prefix (lowercase alphanumerics and '-', starting "
                                       "alphanumeric, at most 32)";
    case CFG_CHECK_SUBDOMAIN:
        return cfg_is_dns_subdomain(v) ? NULL : "is not a valid object name (DNS-1123 subdomain)";
    case CFG_CHECK_WORD: return cfg_is_word(v) ? NULL : "must be non-empty without whitespace";
    case CFG_CHECK_BUCKET: return !*v || cfg_is_bucket(v) ? NULL : "is not a valid bucket name";
    case CFG_CHECK_KEY_PREFIX:
        return cfg_is_key_prefix(v) ? NULL : "is not a relative key prefix (no leading '/', no empty, . or .. segments)";
    }
    return NULL;
}

/* Error prefix naming both spellings of the setting. Secret values are never quoted. */
#define CFG_ERR(err, f, v, fmt, ...)                                                                  \
    err_set(err, WC_EINVAL, "%s (--%s): \"%s\" " fmt, (f)->env, (f)->flag,                             \
            (f)->flags & CFG_SECRET ? "[REDACTED]" : (v), ##__VA_ARGS__)

static int cfg_apply_string(wc_cfg *c, const cfg_field *f, const char *v, wc_err *err) {
    if (f->type == CFG_ENUM && !cfg_enum_has(f->choices, v)) {
        char alts[128];
        snprintf(alts, sizeof alts, "%s", f->choices);
        for (char *p = alts; *p; p++) if (*p == '|') *p = ',';
        return CFG_ERR(err, f, v, "is not one of %s", alts);
    }
    if (f->type == CFG_ADDR && !cfg_is_listen_addr(v))
        return CFG_ERR(err, f, v, "is not a listen address [host]:port (e.g. :8080)");
    if (f->type == CFG_URL && *v && !cfg_is_endpoint_url(v))
        return CFG_ERR(err, f, v, "is not an http(s)://host[:port] URL without path");
    const char *why = cfg_check_string(f, v);
    if (why) return CFG_ERR(err, f, v, "%s", why);
    char **dst = cfg_str_at(c, f->off);
    cfg_free_str(dst, f->flags & CFG_SECRET);
    size_t n = strlen(v);
    if (f->type == CFG_URL && n && v[n - 1] == '/') n--; /* one spelling of the endpoint */
    if (f->check == CFG_CHECK_KEY_PREFIX && n && v[n - 1] != '/') {
        *dst = xmalloc(n + 2);
        memcpy(*dst, v, n);
        memcpy(*dst + n, "/", 2);
    } else {
        *dst = xstrndup(v, n);
    }
    return 0;
}

static int cfg_apply(wc_cfg *c, const cfg_field *f, const char *v, wc_err *err) {
    char *base = (char *)c;
    switch (f->type) {
    case CFG_BOOL: {
        int b;
        if (parse_bool(v, &b) < 0) return CFG_ERR(err, f, v, "is not a boolean (true or false)");
        *(int *)(base + f->off) = b;
        return 0;
    }
    case CFG_AUTO_BOOL: {
        int b;
        if (strcasecmp(v, "auto") == 0) b = -1;
        else if (parse_bool(v, &b) < 0) return CFG_ERR(err, f, v, "is not auto, true or false");
        *(int *)(base + f->off) = b;
        return 0;
    }
    case CFG_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (!*v || *end || errno || isspace((unsigned char)*v))
            return CFG_ERR(err, f, v, "is not an integer");
        if (n < f->min || n > f->max)
            return CFG_ERR(err, f, v, "is out of range %" PRId64 "..%" PRId64, f->min, f->max);
        *(int64_t *)(base + f->off) = n;
        return 0;
    }
    case CFG_DURATION: {
        int64_t ms;
        if (parse_duration_ms(v, &ms) < 0) return CFG_ERR(err, f, v, "is not a duration (e.g. 90s, 5m, 1h30m)");
        if (ms < f->min || ms > f->max)
            return CFG_ERR(err, f, v, "is out of range %" PRId64 "s..%" PRId64 "h", f->min / CFG_S,
                           f->max / (3600 * CFG_S));
        *(int64_t *)(base + f->off) = ms;
        return 0;
    }
    case CFG_QUANTITY: {
        qty q;
        if (qty_parse(v, &q) < 0) return CFG_ERR(err, f, v, "is not a Kubernetes quantity (e.g. 500m, 2, 2Gi)");
        if (q.milli == 0) return CFG_ERR(err, f, v, "must be greater than zero");
        *(qty *)(base + f->off) = q;
        return 0;
    }
    default: return cfg_apply_string(c, f, v, err);
    }
}

/* ------------------------------------------------------------------------------------------
 * Loading. */

static void cfg_free(wc_cfg *c) {
    for (size_t i = 0; i < CFG_NFIELDS; i++)
        if (cfg_field_is_string(&cfg_fields[i]))
            cfg_free_str(cfg_str_at(c, cfg_fields[i].off), cfg_fields[i].flags & CFG_SECRET);
    cfg_free_str(&c->worker_deps_ca_pem, 0);
    memset(c, 0, sizeof *c);
}

static void cfg_defaults(wc_cfg *c) {
    memset(c, 0, sizeof *c);
    for (size_t i = 0; i < CFG_NFIELDS; i++) {
        wc_err err;
        int rc = cfg_apply(c, &cfg_fields[i], cfg_fields[i].def, &err);
        assert(rc == 0 && "every default in cfg_fields is valid");
        (void)rc;
    }
    c->log_fmt = LOG_FORMAT_JSON;
    c->log_lvl = LOG_INFO;
}

static const char *cfg_getenv(char **env, const char *name) {
    size_t n = strlen(name);
    for (char **e = env; e && *e; e++)
        if (strncmp(*e, name, n) == 0 && (*e)[n] == '=') return *e + n + 1;
    return NULL;
}

/* The cluster connection flags of cmd/cli.c's KUBE_CONNECT_FLAGS. cli.c sits above this layer,
 * so the names are repeated here and a unit test holds the two lists equal. */
static const struct { const char *flag; size_t off; } cfg_kube_flags[] = {
    {"kubeconfig", offsetof(kube_connect_opts, kubeconfig)}, {"context", offsetof(kube_connect_opts, context)},
    {"server", offsetof(kube_connect_opts, server)},         {"token-file", offsetof(kube_connect_opts, token_file)},
    {"ca-file", offsetof(kube_connect_opts, ca_file)},
};

static const cfg_field *cfg_find_flag(const char *name, size_t n) {
    for (size_t i = 0; i < CFG_NFIELDS; i++)
        if (strlen(cfg_fields[i].flag) == n && strncmp(cfg_fields[i].flag, name, n) == 0) return &cfg_fields[i];
    return NULL;
}

/*
 * Collects argv[1..] into vals[] (one slot per row) and c->kube. GNU style as in cmd/cli.c:
 * --name=value or --name value; a boolean flag alone means true (--name=false to disable).
 * The same parser as cli_parse in spirit, but this layer is below cmd/, and its messages name
 * the variable too.
 */
static int cfg_parse_flags(wc_cfg *c, int argc, char **argv, const char **vals, wc_err *err) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') return err_set(err, WC_EINVAL, "unexpected argument %s", a);
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t n = eq ? (size_t)(eq - name) : strlen(name);
        const char *v = eq ? eq + 1 : NULL;
        const cfg_field *f = cfg_find_flag(name, n);
        if (f) {
            if (!v && (f->type == CFG_BOOL || f->type == CFG_AUTO_BOOL)) v = "true";
            else if (!v && i + 1 < argc) v = argv[++i];
            else if (!v) return err_set(err, WC_EINVAL, "%s (--%s): the flag needs a value", f->env, f->flag);
            vals[f - cfg_fields] = v;
            continue;
        }
        size_t k = 0;
        while (k < sizeof cfg_kube_flags / sizeof *cfg_kube_flags &&
               (strlen(cfg_kube_flags[k].flag) != n || strncmp(cfg_kube_flags[k].flag, name, n) != 0))
            k++;
        if (k == sizeof cfg_kube_flags / sizeof *cfg_kube_flags)
            return err_set(err, WC_EINVAL, "unknown flag --%.*s", (int)n, name);
        if (!v && i + 1 < argc) v = argv[++i];
        else if (!v) return err_set(err, WC_EINVAL, "flag --%s needs a value", cfg_kube_flags[k].flag);
        *(const char **)((char *)&c->kube + cfg_kube_flags[k].off) = v;
    }
    return 0;
}

/* Reads a _FILE variant into its target. Secret content is wiped from every buffer it passed. */
static int cfg_read_file(wc_cfg *c, const cfg_field *f, const char *path, wc_err *err) {
    buf b = BUF_INIT;
    size_t max = f->type == CFG_PEM_FILE ? 1u << 20 : 64u << 10;
    if (file_read_all(path, max, &b, err) < 0) {
        buf_free_secret(&b);
        err->code = WC_EINVAL; /* a configuration error (exit 2), whatever the I/O cause */
        return err_wrap(err, "%s (--%s)", f->env, f->flag);
    }
    /* Secrets lose a trailing newline (echo > file); a PEM keeps it: BearSSL's decoder (as
     * used by curl) needs the line end after "-----END CERTIFICATE-----". */
    if (f->type != CFG_PEM_FILE)
        while (b.len && (b.data[b.len - 1] == '\n' || b.data[b.len - 1] == '\r')) b.data[--b.len] = '\0';
    if (b.len == 0 || strlen(buf_cstr(&b)) != b.len) {
        buf_free_secret(&b);
        return err_set(err, WC_EINVAL, "%s (--%s): %s is empty or holds NUL bytes", f->env, f->flag, path);
    }
    if (f->type == CFG_PEM_FILE) {
        tls_pem_object *objs = NULL;
        int nobj = tls_pem_decode_all(b.data, b.len, path, &objs, err);
        int certs = 0;
        for (int i = 0; i < nobj; i++) certs += strcmp(objs[i].name, "CERTIFICATE") == 0;
        if (nobj > 0) tls_pem_objects_free(objs, (size_t)nobj);
        if (nobj < 0 || certs == 0) {
            buf_free(&b);
            if (nobj >= 0) err_set(err, WC_EINVAL, "%s: no PEM CERTIFICATE found", path);
            err->code = WC_EINVAL;
            return err_wrap(err, "%s (--%s)", f->env, f->flag);
        }
    }
    char **dst = cfg_str_at(c, f->target);
    cfg_free_str(dst, f->type == CFG_SECRET_FILE);
    *dst = buf_steal(&b);
    return 0;
}

/* The pair of VAR and VAR_FILE: the value row whose field the file row fills. */
static const cfg_field *cfg_file_owner(const cfg_field *file_row) {
    for (size_t i = 0; i < CFG_NFIELDS; i++)
        if (cfg_fields[i].type == CFG_STRING && cfg_fields[i].off == file_row->target) return &cfg_fields[i];
    return NULL;
}

static int cfg_load_files(wc_cfg *c, const unsigned char *set, wc_err *err) {
    for (size_t i = 0; i < CFG_NFIELDS; i++) {
        const cfg_field *f = &cfg_fields[i];
        if ((f->type != CFG_SECRET_FILE && f->type != CFG_PEM_FILE) || !set[i]) continue;
        const cfg_field *owner = cfg_file_owner(f);
        if (owner && set[owner - cfg_fields])
            return err_set(err, WC_EINVAL, "%s (--%s) and %s (--%s) are both set; set only one", owner->env,
                           owner->flag, f->env, f->flag);
        const char *path = *cfg_str_at(c, f->off);
        if (!*path) return err_set(err, WC_EINVAL, "%s (--%s): empty path", f->env, f->flag);
        if (cfg_read_file(c, f, path, err) < 0) return -1;
    }
    return 0;
}

/* Settings that are valid alone but not together. */
static int cfg_validate(const wc_cfg *c, wc_err *err) {
    int have_id = *c->worker_deps_access_key_id != '\0', have_secret = *c->worker_deps_secret_access_key != '\0';
    if (have_id != have_secret)
        return err_set(err, WC_EINVAL, "%s is set but %s is not (nor its _FILE variant); set both or neither",
                       have_id ? "HICLAW_WORKER_DEPS_ACCESS_KEY_ID" : "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY",
                       have_id ? "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY" : "HICLAW_WORKER_DEPS_ACCESS_KEY_ID");
    /* SPEC 7: the objects are credentials (env file, token). Refused with sandbox on or off: the
     * storage is also used to clean up after sandbox Workers. */
    if (strncmp(c->worker_deps_endpoint, "http://", 7) == 0 && !c->worker_deps_allow_plaintext_http)
        return err_set(err, WC_EINVAL,
                       "HICLAW_WORKER_DEPS_ENDPOINT (--worker-deps-endpoint): \"%s\" is plain http: env files and "
                       "tokens would cross the network unencrypted; use https:// (with HICLAW_WORKER_DEPS_CA_FILE), "
                       "or accept the risk with HICLAW_WORKER_DEPS_ALLOW_PLAINTEXT_HTTP=true",
                       c->worker_deps_endpoint);
    if (!c->sandbox_enabled) return 0;
    const char *missing[4];
    int n = 0;
    if (!*c->worker_deps_endpoint) missing[n++] = "HICLAW_WORKER_DEPS_ENDPOINT";
    if (!*c->worker_deps_bucket) missing[n++] = "HICLAW_WORKER_DEPS_BUCKET";
    if (!have_id) missing[n++] = "HICLAW_WORKER_DEPS_ACCESS_KEY_ID (or _FILE)";
    if (!have_secret) missing[n++] = "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY (or _FILE)";
    if (!n) return 0;
    char list[512] = "";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? (i == n - 1 ? " and " : ", ") : "",
                 missing[i]);
    if (c->sandbox_mode < 0)
        return err_set(err, WC_EINVAL,
                       "worker-deps storage is only partly configured: %s %s not set; with HICLAW_SANDBOX_ENABLED=auto "
                       "set %s for the sandbox backend, or leave every HICLAW_WORKER_DEPS_* setting unset for Pods only",
                       list, n == 1 ? "is" : "are", n == 1 ? "it" : "them");
    return err_set(err, WC_EINVAL,
                   "HICLAW_SANDBOX_ENABLED is true but %s %s not set; set %s or HICLAW_SANDBOX_ENABLED=false "
                   "(--sandbox-enabled=false)",
                   list, n == 1 ? "is" : "are", n == 1 ? "it" : "them");
}

/* What was asked of the sandbox backend, made definite: auto is on when any worker-deps storage
 * setting is given (the rest must then be complete: cfg_validate), else off — the default
 * install runs Pods only and says why. (Run turns auto off again when OpenKruise agents is not
 * installed: only the cluster knows that.) */
static void cfg_resolve_sandbox(wc_cfg *c) {
    c->sandbox_off_why = NULL;
    if (c->sandbox_mode >= 0) {
        c->sandbox_enabled = c->sandbox_mode;
        return;
    }
    c->sandbox_enabled = *c->worker_deps_endpoint || *c->worker_deps_bucket || *c->worker_deps_access_key_id ||
                         *c->worker_deps_secret_access_key;
    if (!c->sandbox_enabled)
        c->sandbox_off_why = "no worker-deps storage is configured: set HICLAW_WORKER_DEPS_ENDPOINT, "
                             "HICLAW_WORKER_DEPS_BUCKET, HICLAW_WORKER_DEPS_ACCESS_KEY_ID and "
                             "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY (or their _FILE variants)";
}

static void cfg_resolve_logging(wc_cfg *c) {
    if (strcmp(c->log_format, "auto") == 0) c->log_fmt = isatty(2) ? LOG_FORMAT_TEXT : LOG_FORMAT_JSON;
    else log_parse_format(c->log_format, &c->log_fmt);
    log_parse_level(c->log_level, &c->log_lvl);
}

/*
 * Loads the configuration: defaults, then env (env == NULL: the process environment), then
 * argv[1..] (argv[0] is the command name; argc <= 1: no flags). c need not be initialised.
 * On failure c is freed and err says which setting is wrong (WC_EINVAL: exit 2).
 */
static int cfg_load(wc_cfg *c, char **env, int argc, char **argv, wc_err *err) {
    cfg_defaults(c);
    if (!env) env = environ;
    const char *vals[CFG_NFIELDS] = {0};
    unsigned char set[CFG_NFIELDS] = {0};
    int rc = cfg_parse_flags(c, argc, argv, vals, err);
    for (size_t i = 0; i < CFG_NFIELDS && rc == 0; i++) {
        const char *v = vals[i];
        if (!v) {
            v = cfg_getenv(env, cfg_fields[i].env);
            if (v && !*v) v = NULL; /* empty env = unset */
        }
        if (!v) continue;
        set[i] = 1;
        rc = cfg_apply(c, &cfg_fields[i], v, err);
    }
    if (rc == 0) rc = cfg_load_files(c, set, err);
    if (rc == 0) cfg_resolve_sandbox(c);
    if (rc == 0) rc = cfg_validate(c, err);
    if (rc < 0) {
        cfg_free(c);
        return -1;
    }
    cfg_resolve_logging(c);
    log_register_secret(c->worker_deps_access_key_id);
    log_register_secret(c->worker_deps_secret_access_key);
    return 0;
}

