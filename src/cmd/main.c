/*
 * main.c — the applet table (BusyBox style) and main().
 *
 * A subcommand appears here only once it works: the table is the single list that drives
 * `--help`, `help CMD` and `CMD --help`.
 */

typedef struct wc_command {
    const char *name;
    int (*main)(int argc, char **argv);
    const char *summary;
    const char *usage;
    void (*print_usage)(FILE *out); /* for usage generated at run time (run's config table) */
} wc_command;

static int cmd_help(int argc, char **argv);

static const char help_usage[] =
    "Usage: worker-controller help [COMMAND]\n"
    "\n"
    "Lists the commands, or prints the usage of one.\n";

static const wc_command wc_commands[] = {
    {"run", cmd_run, "run the controller", NULL, run_usage},
    {"install-crds", cmd_install_crds, "server-side apply the Worker CRD and wait until it is Established",
     install_crds_usage, NULL},
    {"render-rbac", cmd_render_rbac, "print the ServiceAccount and RBAC that run needs", render_rbac_usage, NULL},
    {"helm-env", cmd_helm_env, "print the Deployment env: block for the Helm chart (from the configuration table)",
     helm_env_usage, NULL},
    {"check", cmd_check, "preflight: CRDs served, RBAC allowed, worker-deps bucket writable", NULL, check_usage},
    {"explain", cmd_explain, "what the controller sees for one Worker and would do next (read-only)", NULL,
     explain_usage},
    {"version", cmd_version, "print the version and the linked library versions", version_usage, NULL},
    {"help", cmd_help, "list commands or show the usage of one", help_usage, NULL},
};

#define WC_NCOMMANDS (sizeof wc_commands / sizeof *wc_commands)

static const wc_command *find_command(const char *name) {
    for (size_t i = 0; i < WC_NCOMMANDS; i++)
        if (strcmp(wc_commands[i].name, name) == 0) return &wc_commands[i];
    return NULL;
}

static void print_overview(FILE *out) {
    fprintf(out,
            "worker-controller %s — Kubernetes controller for HiClaw agent Workers\n"
            "\n"
            "Usage: worker-controller COMMAND [FLAGS]\n"
            "\n"
            "Commands:\n",
            WC_VERSION);
    for (size_t i = 0; i < WC_NCOMMANDS; i++)
        fprintf(out, "  %-14s %s\n", wc_commands[i].name, wc_commands[i].summary);
    fprintf(out, "\nRun 'worker-controller COMMAND --help' for the flags of one command.\n"
                 "Exit codes: 0 success, 1 runtime failure, 2 usage or configuration error.\n");
}

static int cmd_help(int argc, char **argv) {
    if (argc < 2) {
        print_overview(stdout);
        return WC_EXIT_OK;
    }
    if (argc > 2) {
        fprintf(stderr, "worker-controller help: takes at most one command name\n");
        return WC_EXIT_USAGE;
    }
    const wc_command *c = find_command(argv[1]);
    if (!c) {
        fprintf(stderr, "worker-controller help: unknown command %s\n", argv[1]);
        return WC_EXIT_USAGE;
    }
    if (c->print_usage) c->print_usage(stdout);
    else fputs(c->usage, stdout);
    return WC_EXIT_OK;
}

/* The program: the applet table's command for argv[1]. main() below calls it in the binary;
 * the builds without main (WC_NO_MAIN: unit tests, the probe, the bench tools, the fuzzers)
 * include the same code and bring their own main, so wc_main has external linkage — kept, not
 * called, there. */
int wc_main(int argc, char **argv);
int wc_main(int argc, char **argv) {
    json_scratch_setup();
    if (argc < 2) {
        print_overview(stderr);
        return WC_EXIT_USAGE;
    }
    if (cli_is_help(argv[1])) {
        print_overview(stdout);
        return WC_EXIT_OK;
    }
    if (strcmp(argv[1], "--version") == 0) return cmd_version(1, argv + 1);
    const wc_command *c = find_command(argv[1]);
    if (!c) {
        fprintf(stderr, "worker-controller: unknown command %s\nRun 'worker-controller --help'.\n", argv[1]);
        return WC_EXIT_USAGE;
    }
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0) break;
        if (cli_is_help(argv[i])) {
            if (c->print_usage) c->print_usage(stdout);
            else fputs(c->usage, stdout);
            return WC_EXIT_OK;
        }
    }
    return c->main(argc - 1, argv + 1);
}

#ifndef WC_NO_MAIN
int main(int argc, char **argv) {
    /* A dropped peer must surface as an error from write(), never kill the process. */
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "worker-controller: libcurl initialisation failed\n");
        return WC_EXIT_FAILURE;
    }
    int rc = wc_main(argc, argv);
    fflush(stdout);
    curl_global_cleanup();
    return rc;
}
#endif
