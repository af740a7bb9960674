/*
 * registry.c — the table of backends, like the applet table of cmd/main.c: a backend exists
 * once it has a row here. Order matters: the first is the default (a Worker without
 * spec.backendRuntime, or with a name no row has, runs as a Pod), and a decision that names
 * "the instance that exists" looks in this order.
 */

static const backend_ops *const wc_backend_table[] = {
    &pod_backend_ops,
    &sandbox_backend_ops,
    &agent_sandbox_backend_ops,
};

#define WC_NBACKENDS (sizeof wc_backend_table / sizeof *wc_backend_table)
_Static_assert(WC_NBACKENDS <= DECIDE_MAX_BACKENDS, "raise DECIDE_MAX_BACKENDS");
