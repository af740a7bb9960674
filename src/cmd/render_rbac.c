/*
 * render_rbac.c — `worker-controller render-rbac`: prints the ServiceAccount and the RBAC that
 * `run` needs, from the rule table in worker/rbac.c. No cluster access: pipe it into
 * `kubectl apply -f -`, or let the Helm chart embed it.
 */

static const char render_rbac_usage[] =
    "Usage: worker-controller render-rbac [FLAGS]\n"
    "\n"
    "Prints (YAML, '---' separated) the ServiceAccount, Role and RoleBinding that 'run' needs,\n"
    "and nothing more, all in one namespace: `run` watches one namespace and keeps its Lease\n"
    "there. Output is deterministic: the same flags give byte-identical YAML.\n"
    "\n"
    "Flags:\n"
    "  --namespace NS            namespace of the controller (ServiceAccount, Role, Lease) (default default)\n"
    "  --controller-name NAME    HICLAW_CONTROLLER_NAME; names the Role/Binding (default hiclaw-controller)\n"
    "  --service-account NAME    ServiceAccount name (default: the controller name)\n"
    "  --no-sandbox              HICLAW_SANDBOX_ENABLED=false: no TokenRequest, SandboxSet or sandbox\n"
    "                            write rules (claims and Sandboxes stay readable, so a sandbox\n"
    "                            Worker left over is seen and reported)\n"
    "  --no-manage-pool          HICLAW_SANDBOX_MANAGE_POOL=false: no SandboxSet rule\n"
    "  --no-agent-sandbox        HICLAW_AGENT_SANDBOX_ENABLED=false: agent-sandbox Sandboxes\n"
    "                            (agents.x-k8s.io) readable only, never written\n"
    "\n"
    "Example: worker-controller render-rbac --namespace hiclaw | kubectl apply -f -\n";

static int render_rbac_flag_on(const char *v) { return v && strcmp(v, "true") == 0; }

/* Validates the names: they become object names and a label value in the output. */
static int render_rbac_check(const rbac_opts *o, wc_err *err) {
    if (!cfg_is_dns_label(o->namespace))
        return err_set(err, WC_EINVAL, "--namespace \"%s\" is not a valid namespace name (DNS-1123 label)", o->namespace);
    if (!cfg_is_dns_label(o->controller_name))
        return err_set(err, WC_EINVAL, "--controller-name \"%s\" is not a DNS-1123 label (lowercase alphanumerics "
                                       "and '-', at most 63)", o->controller_name);
    if (!cfg_is_dns_subdomain(o->service_account))
        return err_set(err, WC_EINVAL, "--service-account \"%s\" is not a valid ServiceAccount name (DNS-1123 "
                                       "subdomain)", o->service_account);
    return 0;
}

static int cmd_render_rbac(int argc, char **argv) {
    const char *ns = NULL, *name = NULL, *sa = NULL, *no_sandbox = NULL, *no_pool = NULL, *all = NULL,
               *no_asb = NULL;
    cli_flag flags[] = {
        {"namespace", 1, &ns},          {"controller-name", 1, &name}, {"service-account", 1, &sa},
        {"no-sandbox", 0, &no_sandbox}, {"no-manage-pool", 0, &no_pool}, {"all-namespaces", 0, &all},
        {"no-agent-sandbox", 0, &no_asb},
        {NULL, 0, NULL},
    };
    wc_err err;
    err_clear(&err);
    if (cli_parse(argc, argv, flags, NULL, 0, NULL, &err) < 0) return cli_usage_error("render-rbac", &err);
    /* Still parsed, to say why it is gone rather than "unknown flag": `run` watches exactly one
     * namespace, so a ClusterRole would grant every namespace's Pods, Secrets and
     * ServiceAccounts to a controller that never reads them. */
    if (render_rbac_flag_on(all)) {
        err_set(&err, WC_EINVAL, "--all-namespaces was removed: `run` watches one namespace (HICLAW_K8S_NAMESPACE) "
                                 "and needs only a Role there; render one per namespace with --namespace");
        return cli_usage_error("render-rbac", &err);
    }
    rbac_opts o = {
        .namespace = ns ? ns : "default",
        .controller_name = name ? name : "hiclaw-controller",
        .sandbox = !render_rbac_flag_on(no_sandbox),
        .manage_pool = !render_rbac_flag_on(no_pool),
        .agent_sandbox = !render_rbac_flag_on(no_asb),
    };
    o.service_account = sa ? sa : o.controller_name;
    if (render_rbac_check(&o, &err) < 0) return cli_usage_error("render-rbac", &err);
    buf out = BUF_INIT;
    rbac_render_yaml(&o, &out);
    fwrite(out.data, 1, out.len, stdout);
    buf_free(&out);
    return fflush(stdout) == 0 ? WC_EXIT_OK : WC_EXIT_FAILURE;
}
