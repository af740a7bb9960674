/*
 * env.c — the Worker's environment (SPEC section 6): system variables from the controller
 * configuration, credentials from the Worker's Secret, and the user's spec.env under them.
 *
 * One builder serves both backends. A Pod gets credentials as secretKeyRefs (the values never
 * enter the Pod spec); a sandbox gets them as values inside its env file, the only place they
 * are ever written. Which one is decided by the caller reading `secret_key` on each entry.
 */

/* What every Worker's env takes from the controller's configuration (WC_PASS_ALL). */
typedef struct worker_env_config {
#define ENV_PASS_FIELD(f, NAME, flag, helm) const char *f;
    WC_PASS_ALL(ENV_PASS_FIELD)
#undef ENV_PASS_FIELD
} worker_env_config;

/* The Worker env settings a configuration holds. */
static worker_env_config worker_env_config_of(const wc_cfg *conf) {
#define ENV_PASS_COPY(f, NAME, flag, helm) .f = conf->f,
    return (worker_env_config){WC_PASS_ALL(ENV_PASS_COPY)};
#undef ENV_PASS_COPY
}

typedef struct env_entry {
    const char *name;
    const char *value;       /* literal value (system/user), or the secret's value when known */
    const char *secret_key;  /* non-NULL: comes from Secret hiclaw-creds-<name>, this key */
} env_entry;

typedef struct env_list {
    env_entry *items;
    size_t n;
    const char **ignored;    /* user keys dropped (reserved or malformed), for the Warning Event */
    size_t nignored;
} env_list;

#define WORKER_TOKEN_DIR "/var/run/secrets/hiclaw"
#define WORKER_TOKEN_FILE WORKER_TOKEN_DIR "/token"
#define WORKER_CREDS_SECRET_PREFIX "hiclaw-creds-"

/* Credentials: env name ← key in the Worker's Secret. */
static const struct { const char *env, *key; } WORKER_SECRET_ENV[] = {
    {"HICLAW_WORKER_MATRIX_TOKEN", "WORKER_MATRIX_TOKEN"},
    {"HICLAW_WORKER_GATEWAY_KEY", "WORKER_GATEWAY_KEY"},
    {"HICLAW_FS_SECRET_KEY", "WORKER_MINIO_PASSWORD"},
};
#define WORKER_NSECRET_ENV (sizeof WORKER_SECRET_ENV / sizeof *WORKER_SECRET_ENV)

static int env_reserved(const char *key) {
    return strncmp(key, "HICLAW_", 7) == 0 || strncmp(key, "OPENCLAW_", 9) == 0 || strcmp(key, "HOME") == 0;
}

static void env_push(arena *a, env_list *l, size_t *cap, const char *name, const char *value, const char *secret_key) {
    if (l->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 32;
        env_entry *items = arena_alloc(a, ncap * sizeof *items);
        if (l->n) memcpy(items, l->items, l->n * sizeof *items);
        l->items = items;
        *cap = ncap;
    }
    l->items[l->n].name = name;
    l->items[l->n].value = value;
    l->items[l->n].secret_key = secret_key;
    l->n++;
}

/* Builds the environment. `secret` holds the Secret's decoded data when it exists (NULL when
 * it does not): an absent key is left out, as an optional secretKeyRef would be. For a Pod the
 * entries keep their secret_key and the caller emits secretKeyRefs; include_missing_secret_refs
 * makes the Pod reference all three keys even when the Secret is absent (optional refs), so a
 * Secret created later needs no spec change. */
static void env_build(arena *a, const worker *w, const worker_env_config *c, const kv_list *secret,
                      int include_missing_secret_refs, env_list *out) {
    memset(out, 0, sizeof *out);
    size_t cap = 0;
    const char *home = arena_sprintf(a, "/root/hiclaw-fs/agents/%s", w->worker_name);
    const char *mdns = arena_sprintf(a, "hiclaw-w-%s", w->worker_name);
    struct { const char *k, *v; } sys[] = {
        {"HICLAW_WORKER_NAME", w->worker_name},
        {"HICLAW_WORKER_CR_NAME", w->name},
        {"HICLAW_RUNTIME", "k8s"},
#define ENV_PASS_ENTRY(f, NAME, flag, helm) {"HICLAW_" #NAME, c->f},
        WC_PASS_ENDPOINTS(ENV_PASS_ENTRY)
        {"HICLAW_FS_ACCESS_KEY", w->worker_name},
        {"HICLAW_AUTH_TOKEN_FILE", WORKER_TOKEN_FILE},
        {"HICLAW_CONSOLE_PORT", "8088"},
        {"HOME", home},
        {"OPENCLAW_DISABLE_BONJOUR", "1"},
        {"OPENCLAW_MDNS_HOSTNAME", mdns},
        WC_PASS_OPTIONAL(ENV_PASS_ENTRY)
#undef ENV_PASS_ENTRY
    };
    for (size_t i = 0; i < sizeof sys / sizeof *sys; i++)
        if (sys[i].v && *sys[i].v) env_push(a, out, &cap, sys[i].k, sys[i].v, NULL);
    for (size_t i = 0; i < WORKER_NSECRET_ENV; i++) {
        const char *v = secret ? kv_get(secret, WORKER_SECRET_ENV[i].key) : NULL;
        if (v || include_missing_secret_refs) env_push(a, out, &cap, WORKER_SECRET_ENV[i].env, v, WORKER_SECRET_ENV[i].key);
    }
    out->ignored = arena_alloc(a, (w->env.n + 1) * sizeof(char *));
    for (size_t i = 0; i < w->env.n; i++) {
        const char *k = w->env.items[i].key;
        if (!env_key_ok(k) || env_reserved(k)) {
            out->ignored[out->nignored++] = k;
            continue;
        }
        env_push(a, out, &cap, k, w->env.items[i].value, NULL);
    }
}

static int env_entry_cmp(const void *a, const void *b) {
    return strcmp(((const env_entry *)a)->name, ((const env_entry *)b)->name);
}

/* The env file a sandbox sources with `set -a; . file`: one `export KEY='value'` per line,
 * keys sorted, values single-quoted with ' written as '\''. Inside single quotes the shell
 * interprets nothing — no $, no backticks, no backslashes — and a newline is just a byte, so
 * sourcing reproduces every value exactly and executes nothing. Only entries with a value are
 * written (a credential absent from the Secret stays absent). */
static void env_file_write(buf *out, const env_list *env) {
    env_entry *sorted = xmalloc((env->n ? env->n : 1) * sizeof *sorted);
    size_t n = 0;
    for (size_t i = 0; i < env->n; i++)
        if (env->items[i].value) sorted[n++] = env->items[i];
    qsort(sorted, n, sizeof *sorted, env_entry_cmp);
    buf_puts(out, "# generated by worker-controller: sourced with `set -a; . <this file>`\n");
    for (size_t i = 0; i < n; i++) {
        buf_printf(out, "export %s='", sorted[i].name);
        for (const char *p = sorted[i].value; *p; p++) {
            if (*p == '\'') buf_puts(out, "'\\''");
            else buf_putc(out, *p);
        }
        buf_puts(out, "'\n");
    }
    free(sorted);
}
