/*
 * cli.c — what every subcommand shares: exit codes, the flag parser, usage errors.
 *
 * Flags are GNU style: --name=value or --name value; boolean flags take no value (or
 * --name=true|false). Unknown flags are usage errors (exit 2) naming the flag.
 */

enum { WC_EXIT_OK = 0, WC_EXIT_FAILURE = 1, WC_EXIT_USAGE = 2 };

typedef struct cli_flag {
    const char *name;   /* without the leading dashes */
    int takes_value;    /* 0: boolean */
    const char **value; /* set to the argument (or "true"/"false" for booleans) */
} cli_flag;

static int cli_is_help(const char *arg) {
    return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0;
}

/* Parses argv[1..] (argv[0] is the subcommand name). Positional arguments are collected into
 * positional[] (up to max_positional). Returns 0, or -1 with a message naming the flag. */
static int cli_parse(int argc, char **argv, const cli_flag *flags, const char **positional,
                     int max_positional, int *npositional, wc_err *err) {
    int np = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strncmp(a, "--", 2) != 0 || a[2] == '\0') {
            if (np >= max_positional) return err_set(err, WC_EINVAL, "unexpected argument %s", a);
            positional[np++] = a;
            continue;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const cli_flag *f = NULL;
        for (const cli_flag *p = flags; p && p->name; p++)
            if (strlen(p->name) == nlen && strncmp(p->name, name, nlen) == 0) { f = p; break; }
        if (!f) return err_set(err, WC_EINVAL, "unknown flag --%.*s", (int)nlen, name);
        if (f->takes_value) {
            if (eq) *f->value = eq + 1;
            else if (i + 1 < argc) *f->value = argv[++i];
            else return err_set(err, WC_EINVAL, "flag --%s needs a value", f->name);
        } else {
            const char *v = eq ? eq + 1 : "true";
            if (strcmp(v, "true") != 0 && strcmp(v, "false") != 0)
                return err_set(err, WC_EINVAL, "flag --%s takes true or false, not %s", f->name, v);
            *f->value = v;
        }
    }
    if (npositional) *npositional = np;
    return 0;
}

static int cli_usage_error(const char *cmd, const wc_err *err) {
    fprintf(stderr, "worker-controller %s: %s\nRun 'worker-controller %s --help' for usage.\n", cmd,
            err->msg, cmd);
    return WC_EXIT_USAGE;
}

/* The connection flags every command that talks to a cluster accepts. */
#define KUBE_CONNECT_FLAGS(o)                                                                  \
    {"kubeconfig", 1, &(o).kubeconfig}, {"context", 1, &(o).context}, {"server", 1, &(o).server}, \
        {"token-file", 1, &(o).token_file}, {"ca-file", 1, &(o).ca_file}

#define KUBE_CONNECT_FLAGS_USAGE                                                               \
    "\n"                                                                                       \
    "Cluster connection (first that applies: --server; --kubeconfig or $KUBECONFIG; in-cluster\n" \
    "service account; ~/.kube/config):\n"                                                      \
    "  --kubeconfig PATH     kubeconfig file(s), ':'-separated\n"                              \
    "  --context NAME        kubeconfig context (default: current-context)\n"                  \
    "  --server URL          API server URL (with --token-file and --ca-file)\n"               \
    "  --token-file PATH     bearer token file, re-read when it changes\n"                     \
    "  --ca-file PATH        CA bundle (PEM) that signs the API server certificate\n"
