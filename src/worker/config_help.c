/*
 * config_help.c — what the configuration table tells people: the flag/env/default listing of
 * `run --help` (grouped by the first segment of the Helm path) and the one log line of the
 * effective configuration, secrets redacted. Both generated from the table, never written by
 * hand, so they cannot drift from what cfg_load accepts.
 */

static const char *cfg_placeholder(const cfg_field *f) {
    switch (f->type) {
    case CFG_STRING:
        switch (f->check) {
        case CFG_CHECK_NAME:
        case CFG_CHECK_SUBDOMAIN: return "NAME";
        case CFG_CHECK_NAMESPACE: return "NAMESPACE";
        case CFG_CHECK_NAME_PREFIX:
        case CFG_CHECK_KEY_PREFIX: return "PREFIX";
        case CFG_CHECK_BUCKET: return "BUCKET";
        default: return "STRING";
        }
    case CFG_BOOL: return NULL;
    case CFG_AUTO_BOOL: return "auto|true|false";
    case CFG_INT: return "N";
    case CFG_DURATION: return "DURATION";
    case CFG_QUANTITY: return "QUANTITY";
    case CFG_ENUM: return f->choices;
    case CFG_ADDR: return "[HOST]:PORT";
    case CFG_URL: return "URL";
    case CFG_SECRET_FILE:
    case CFG_PEM_FILE: return "PATH";
    }
    return "VALUE";
}

static void cfg_help_row(buf *out, const cfg_field *f) {
    const char *ph = cfg_placeholder(f);
    if (ph) buf_printf(out, "  --%s %s\n", f->flag, ph);
    else buf_printf(out, "  --%s[=false]\n", f->flag);
    buf_printf(out, "      %s", f->help);
    if (f->type == CFG_INT) buf_printf(out, " (%" PRId64 "..%" PRId64 ")", f->min, f->max);
    if (f->type == CFG_DURATION) buf_printf(out, " (%" PRId64 "s..%" PRId64 "h)", f->min / CFG_S, f->max / (3600 * CFG_S));
    buf_printf(out, "\n      env %s; default ", f->env);
    if (f->flags & CFG_SECRET) buf_puts(out, "none (secret)");
    else if (*f->def) buf_puts(out, f->def);
    else buf_puts(out, "unset");
    buf_printf(out, "; Helm %s\n", f->helm);
}

/* The flag/env/default listing of `run --help`, generated from the table. The connection
 * flags cfg_load also accepts are documented by cmd/cli.c's KUBE_CONNECT_FLAGS_USAGE, which
 * run's usage appends (cli.c is above this layer). */
static void cfg_help_text(buf *out) {
    static const struct { const char *group, *title; } titles[] = {
        {"controller", "Controller"}, {"log", "Logging"}, {"worker", "Worker defaults"},
        {"hiclaw", "HiClaw endpoints passed to every Worker"}, {"sandbox", "Sandbox backend (OpenKruise agents)"},
        {"agentSandbox", "Agent-sandbox backend (kubernetes-sigs agent-sandbox)"},
        {"workerDeps", "Worker-deps object storage (S3-compatible)"},
    };
    buf_puts(out, "Configuration: each flag is also an environment variable; flag > environment > default.\n"
                  "An empty environment variable counts as unset. VAR and VAR_FILE are mutually exclusive.\n");
    size_t prev_len = 0;
    const char *prev = "";
    for (size_t i = 0; i < CFG_NFIELDS; i++) {
        const cfg_field *f = &cfg_fields[i];
        size_t gl = strcspn(f->helm, ".");
        if (gl != prev_len || strncmp(f->helm, prev, gl) != 0) {
            const char *title = NULL;
            for (size_t t = 0; t < sizeof titles / sizeof *titles; t++)
                if (strlen(titles[t].group) == gl && strncmp(titles[t].group, f->helm, gl) == 0) title = titles[t].title;
            buf_printf(out, "\n%s:\n", title ? title : "Other");
            prev = f->helm;
            prev_len = gl;
        }
        cfg_help_row(out, f);
    }
}

static void cfg_print_help(FILE *out) {
    buf b = BUF_INIT;
    cfg_help_text(&b);
    fputs(buf_cstr(&b), out);
    buf_free(&b);
}

static void cfg_format_duration(char *out, size_t n, int64_t ms) {
    if (ms % (3600 * CFG_S) == 0) snprintf(out, n, "%" PRId64 "h", ms / (3600 * CFG_S));
    else if (ms % (60 * CFG_S) == 0) snprintf(out, n, "%" PRId64 "m", ms / (60 * CFG_S));
    else if (ms % CFG_S == 0) snprintf(out, n, "%" PRId64 "s", ms / CFG_S);
    else snprintf(out, n, "%" PRId64 "ms", ms);
}

/* The effective value of one row as text; secrets become [REDACTED] (or "" when unset). */
static void cfg_value_text(const wc_cfg *c, const cfg_field *f, char *out, size_t n) {
    const char *base = (const char *)c;
    switch (f->type) {
    case CFG_BOOL: snprintf(out, n, "%s", *(const int *)(base + f->off) ? "true" : "false"); return;
    case CFG_AUTO_BOOL: {
        int v = *(const int *)(base + f->off);
        snprintf(out, n, "%s", v < 0 ? "auto" : v ? "true" : "false");
        return;
    }
    case CFG_INT: snprintf(out, n, "%" PRId64, *(const int64_t *)(base + f->off)); return;
    case CFG_DURATION: cfg_format_duration(out, n, *(const int64_t *)(base + f->off)); return;
    case CFG_QUANTITY: snprintf(out, n, "%s", ((const qty *)(base + f->off))->canon); return;
    default: break;
    }
    const char *s = *cfg_cstr_at(c, f->off);
    if (!s) s = "";
    snprintf(out, n, "%s", (f->flags & CFG_SECRET) && *s ? LOG_REDACTED : s);
}

#define CFG_KV4(i) kv[i], kv[i + 1], kv[i + 2], kv[i + 3]
#define CFG_KV16(i) CFG_KV4(i), CFG_KV4(i + 4), CFG_KV4(i + 8), CFG_KV4(i + 12)
#define CFG_KV64(i) CFG_KV16(i), CFG_KV16(i + 16), CFG_KV16(i + 32), CFG_KV16(i + 48)
#define CFG_LOG_PAIRS 64
_Static_assert(CFG_NFIELDS <= CFG_LOG_PAIRS, "cfg_log_summary passes at most 64 fields");

/*
 * Logs the effective configuration as one line, one field per row keyed by the flag name.
 * log_event() only takes a NULL-terminated varargs list, so the fields go through a fixed
 * array of 128 slots; slots after the last row are NULL and end the list. Secret values (the
 * table's CFG_SECRET rows) are redacted here, and again by the logger's value nets (registered
 * secrets, JWT and bearer shapes); field names redact nothing here (a TTL is no secret).
 */
static void cfg_log_summary(const wc_cfg *c) {
    const char *kv[2 * CFG_LOG_PAIRS + 1] = {0};
    char vals[CFG_NFIELDS][256];
    for (size_t i = 0; i < CFG_NFIELDS; i++) {
        cfg_value_text(c, &cfg_fields[i], vals[i], sizeof vals[i]);
        if (cfg_fields[i].type == CFG_ENUM && strcmp(cfg_fields[i].flag, "log-format") == 0)
            snprintf(vals[i], sizeof vals[i], "%s", c->log_fmt == LOG_FORMAT_JSON ? "json" : "text");
        kv[2 * i] = cfg_fields[i].flag;
        kv[2 * i + 1] = vals[i];
    }
    log_event_vetted(LOG_INFO, "configuration", CFG_KV64(0), CFG_KV64(64), NULL);
}
