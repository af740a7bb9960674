/*
 * check.c — `worker-controller check`: the preflight of SPEC 1. It reads the configuration
 * exactly as `run` does (same table, environment and flags; exit 2 on an invalid setting) and
 * asks the cluster, as the identity `run` would use, whether `run` can work:
 *
 *   connect            the API server answers /version with these credentials;
 *   crd <name>         the Worker CRD (and, with the sandbox backend, the OpenKruise agents
 *                      CRDs) is served in the watched namespace;
 *   rbac <verb> <res>  every (rule, verb) of the RBAC table for these options is allowed,
 *                      one SelfSubjectAccessReview each, in the watched namespace;
 *   worker-deps        (sandbox) the bucket takes a probe object: PUT, HEAD, DELETE.
 *
 * One line per check ("ok" or "FAIL", the name, a detail), a summary, exit 1 if any failed.
 *
 * CRDs: reading a CustomResourceDefinition needs cluster-scoped `get
 * customresourcedefinitions`, which `run` does not need and render-rbac does not grant. So a
 * CRD is checked the way `run` checks it: list its resource (limit 1) in the watched
 * namespace; 404 means absent. A resource that answers a list is Established — the API server
 * serves a CRD's resources only after setting that condition — so "served" passes. When the
 * identity may read the CRD after all (an admin), the conditions are read and reported too.
 *
 * Scope: every rule is checked in the watched namespace, including Leases, because that is
 * where `run` takes its Lease.
 */

static const char check_usage_head[] =
    "Usage: worker-controller check [FLAGS]\n"
    "\n"
    "Preflight for 'run' with the same configuration (environment and flags): the API server is\n"
    "reachable, the Worker CRD is served, every RBAC rule 'run' needs is allowed for the current\n"
    "identity (SelfSubjectAccessReview), and with the sandbox backend the OpenKruise agents CRDs\n"
    "are served and the worker-deps bucket is writable (a probe object is put, read back with\n"
    "HEAD and deleted). Prints one line per check (ok/FAIL, name, detail).\n"
    "Exit codes: 0 every check passed, 1 a check failed, 2 invalid configuration.\n"
    "\n"
    "It takes every flag of 'run' (see 'worker-controller run --help'); leader election, the\n"
    "listen addresses and the worker defaults are read but not exercised.\n";

static void check_usage(FILE *out) {
    fputs(check_usage_head, out);
    fputs(KUBE_CONNECT_FLAGS_USAGE, out);
}

static const kube_resource KUBE_SELFSUBJECTACCESSREVIEWS = {"authorization.k8s.io", "v1", "selfsubjectaccessreviews",
                                                            "SelfSubjectAccessReview", 0};

typedef struct check_state {
    int passed, failed;
} check_state;

static void check_report(check_state *st, int ok, const char *name, const char *fmt, ...) {
    char detail[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    char *clean = log_redact(detail); /* server messages may quote request content */
    printf("%-4s %-52s %s\n", ok ? "ok" : "FAIL", name, clean);
    free(clean);
    fflush(stdout);
    if (ok) st->passed++;
    else st->failed++;
}

/* Is resource r served in ns? 1 served, 0 absent (404), -1 unknown (err says why). */
static int check_served(kube_client *kc, const kube_resource *r, const char *ns, wc_err *err) {
    cJSON *list = NULL;
    int rc = kube_list_page(kc, r, ns, NULL, NULL, 1, NULL, &list, err);
    cJSON_Delete(list);
    if (rc == 0) return 1;
    return kube_err_not_found(err) ? 0 : -1;
}

/* HICLAW_SANDBOX_ENABLED=auto: what run will make of it, as one line (ok: Pods only is a valid
 * setup). Off for want of OpenKruise agents, the sandbox checks that follow are skipped as run
 * skips the backend. */
static void check_sandbox_auto(check_state *st, kube_client *kc, wc_cfg *conf, const char *ns) {
    if (conf->sandbox_mode >= 0) return;
    if (!conf->sandbox_enabled) {
        check_report(st, 1, "sandbox", "off (HICLAW_SANDBOX_ENABLED=auto): %s", conf->sandbox_off_why);
        return;
    }
    wc_err err;
    err_clear(&err);
    int served = check_served(kc, &KUBE_SANDBOXCLAIMS, ns, &err);
    if (served == 0) {
        check_report(st, 1, "sandbox", "off (HICLAW_SANDBOX_ENABLED=auto): OpenKruise agents is not installed "
                                       "(%s/%s %s is not served): install it and restart the controller",
                     KUBE_SANDBOXCLAIMS.group, KUBE_SANDBOXCLAIMS.version, KUBE_SANDBOXCLAIMS.plural);
        conf->sandbox_enabled = 0;
        return;
    }
    if (served > 0) check_report(st, 1, "sandbox", "on (HICLAW_SANDBOX_ENABLED=auto: worker-deps storage configured, "
                                                   "OpenKruise agents installed)");
    /* served < 0: the CRD checks below say why */
}

static void check_crd(check_state *st, kube_client *kc, const kube_resource *r, const char *ns, const char *hint) {
    char name[256], crd[200];
    snprintf(crd, sizeof crd, "%s.%s", r->plural, r->group);
    snprintf(name, sizeof name, "crd %s", crd);
    wc_err err;
    err_clear(&err);
    int served = check_served(kc, r, ns, &err);
    if (served == 0) {
        check_report(st, 0, name, "not installed (%s/%s %s is not served): %s", r->group, r->version, r->plural, hint);
        return;
    }
    if (served < 0) {
        check_report(st, 0, name, "cannot list %s in namespace %s: %s", r->plural, ns, err.msg);
        return;
    }
    cJSON *obj = NULL;
    err_clear(&err);
    if (kube_get(kc, &KUBE_CRDS, NULL, crd, NULL, &obj, &err) == 0) {
        int est = crd_condition_true(obj, "Established"), names = crd_condition_true(obj, "NamesAccepted");
        cJSON_Delete(obj);
        check_report(st, est && names, name, "%s/%s served; Established=%s NamesAccepted=%s", r->group, r->version,
                     est ? "True" : "False", names ? "True" : "False");
        return;
    }
    check_report(st, 1, name, "%s/%s served in %s (so Established; the CRD object itself is not readable by this "
                              "identity, which run does not need)", r->group, r->version, ns);
}

/* HICLAW_AGENT_SANDBOX_ENABLED: true needs agents.x-k8s.io sandboxes served; auto follows it
 * (off: its write rules are not checked, as run does not use them); false needs only reads. */
static void check_agent_sandbox(check_state *st, kube_client *kc, wc_cfg *conf, const char *ns) {
    if (conf->agent_sandbox_mode == 1) {
        check_crd(st, kc, &KUBE_AGENT_SANDBOXES, ns, "install agent-sandbox, or set HICLAW_AGENT_SANDBOX_ENABLED=false");
        return;
    }
    if (conf->agent_sandbox_mode == 0) return;
    wc_err err;
    err_clear(&err);
    int served = check_served(kc, &KUBE_AGENT_SANDBOXES, ns, &err);
    if (served == 0) {
        check_report(st, 1, "agent-sandbox", "off (HICLAW_AGENT_SANDBOX_ENABLED=auto): %s/%s %s is not served",
                     KUBE_AGENT_SANDBOXES.group, KUBE_AGENT_SANDBOXES.version, KUBE_AGENT_SANDBOXES.plural);
        conf->agent_sandbox_mode = 0; /* as run: nothing of it is used, its read rules still are */
    } else if (served > 0) {
        check_report(st, 1, "agent-sandbox", "on (HICLAW_AGENT_SANDBOX_ENABLED=auto: %s/%s %s is served)",
                     KUBE_AGENT_SANDBOXES.group, KUBE_AGENT_SANDBOXES.version, KUBE_AGENT_SANDBOXES.plural);
    } else {
        check_report(st, 0, "agent-sandbox", "cannot tell whether %s/%s %s is served: %s", KUBE_AGENT_SANDBOXES.group,
                     KUBE_AGENT_SANDBOXES.version, KUBE_AGENT_SANDBOXES.plural, err.msg);
    }
}

/* One SelfSubjectAccessReview. 1 allowed, 0 denied (reason filled), -1 error. */
static int check_access(kube_client *kc, const char *ns, const char *group, const char *resource, const char *verb,
                        char *reason, size_t reasonsz, wc_err *err) {
    char res[128], sub[64] = "";
    const char *slash = strchr(resource, '/');
    snprintf(res, sizeof res, "%.*s", slash ? (int)(slash - resource) : (int)strlen(resource), resource);
    if (slash) snprintf(sub, sizeof sub, "%s", slash + 1);
    cJSON *body = cJSON_CreateObject();
    cJSON_AddStringToObject(body, "apiVersion", "authorization.k8s.io/v1");
    cJSON_AddStringToObject(body, "kind", "SelfSubjectAccessReview");
    cJSON *attrs = cJSON_AddObjectToObject(cJSON_AddObjectToObject(body, "spec"), "resourceAttributes");
    cJSON_AddStringToObject(attrs, "namespace", ns);
    cJSON_AddStringToObject(attrs, "verb", verb);
    cJSON_AddStringToObject(attrs, "group", group);
    cJSON_AddStringToObject(attrs, "resource", res);
    if (*sub) cJSON_AddStringToObject(attrs, "subresource", sub);
    char *json = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    cJSON *out = NULL;
    int rc = kube_create(kc, &KUBE_SELFSUBJECTACCESSREVIEWS, NULL, NULL, NULL, json, &out, err);
    free(json);
    if (rc < 0) return -1;
    const cJSON *status = json_get(out, "status");
    int allowed = cJSON_IsTrue(json_get(status, "allowed"));
    const char *why = json_str_at(out, "status.reason");
    snprintf(reason, reasonsz, "%s", why && *why ? why : "no RBAC rule allows it");
    cJSON_Delete(out);
    return allowed;
}

static void check_rbac(check_state *st, kube_client *kc, const wc_cfg *conf, const char *ns) {
    size_t it = 0;
    for (const rbac_rule *r; (r = rbac_rules(conf->sandbox_enabled, conf->sandbox_manage_pool, conf->agent_sandbox_mode != 0, &it));) {
        for (int v = 0; v < RBAC_MAX_VERBS && r->verbs[v]; v++) {
            char name[256], reason[512];
            /* kubectl's spelling: verb resource[.group][/subresource] */
            int rl = (int)strcspn(r->resource, "/");
            snprintf(name, sizeof name, "rbac %s %.*s%s%s%s", r->verbs[v], rl, r->resource, *r->group ? "." : "",
                     r->group, r->resource + rl);
            wc_err err;
            err_clear(&err);
            int a = check_access(kc, ns, r->group, r->resource, r->verbs[v], reason, sizeof reason, &err);
            if (a < 0) check_report(st, 0, name, "SelfSubjectAccessReview failed: %s", err.msg);
            else if (a) check_report(st, 1, name, "allowed in namespace %s", ns);
            else
                check_report(st, 0, name, "denied in namespace %s (%s): grant it, e.g. with worker-controller "
                                          "render-rbac", ns, reason);
        }
    }
}

/* PUT a small probe object, HEAD it, DELETE it: the writes the sandbox backend makes. */
static void check_bucket(check_state *st, const wc_cfg *conf) {
    char name[256];
    snprintf(name, sizeof name, "worker-deps s3://%s", conf->worker_deps_bucket);
    wc_err err;
    err_clear(&err);
    s3_client *s = s3_client_new(conf->worker_deps_endpoint, conf->worker_deps_bucket, conf->worker_deps_region,
                                 conf->worker_deps_access_key_id, conf->worker_deps_secret_access_key,
                                 conf->worker_deps_ca_pem, &err);
    if (!s) {
        check_report(st, 0, name, "%s", err.msg);
        return;
    }
    s->attempts = 1;
    char key[512], host[128] = "unknown";
    gethostname(host, sizeof host - 1);
    snprintf(key, sizeof key, "%s.hiclaw-check/%s-%s-%ld-%d", conf->worker_deps_prefix, conf->controller_name, host,
             (long)time(NULL), (int)getpid());
    static const char probe[] = "worker-controller check probe\n";
    long long size = -1;
    int h;
    if (s3_put(s, key, probe, sizeof probe - 1, NULL, 0, &err) < 0)
        check_report(st, 0, name, "PUT %s failed: %s", key, err.msg);
    else if ((h = s3_head(s, key, &size, NULL, &err)) != 0)
        check_report(st, 0, name, "HEAD %s after PUT: %s", key, h > 0 ? "object not found" : err.msg);
    else if (s3_delete(s, key, &err) < 0)
        check_report(st, 0, name, "DELETE %s failed: %s", key, err.msg);
    else
        check_report(st, 1, name, "%s: PUT, HEAD (%lld bytes) and DELETE of %s succeeded", conf->worker_deps_endpoint,
                     size, key);
    s3_client_free(s);
}

static int cmd_check(int argc, char **argv) {
    wc_cfg conf;
    wc_err err;
    err_clear(&err);
    if (cfg_load(&conf, NULL, argc, argv, &err) < 0) {
        fprintf(stderr, "worker-controller check: %s\n", err.msg);
        return WC_EXIT_USAGE;
    }
    /* stdout carries the report; only warnings and errors of the client go to stderr */
    log_configure(conf.log_fmt, conf.log_lvl > LOG_WARN ? conf.log_lvl : LOG_WARN, 2);
    kube_config kcfg;
    if (kube_config_load(&conf.kube, &kcfg, &err) < 0) {
        fprintf(stderr, "worker-controller check: %s\n", err.msg);
        cfg_free(&conf);
        return err.code == WC_EIO ? WC_EXIT_FAILURE : WC_EXIT_USAGE;
    }
    char *ns = xstrdup(*conf.watch_namespace ? conf.watch_namespace : kcfg.namespace ? kcfg.namespace : "default");
    check_state st = {0, 0};
    kube_client *kc = kube_client_new(&kcfg, &err);
    if (!kc) {
        check_report(&st, 0, "connect", "%s: %s", kcfg.source, err.msg);
        goto done;
    }
    cJSON *ver = NULL;
    kube_call call = {.method = "GET", .path = "/version"};
    if (kube_do_json(kc, &call, &ver, &err) < 0) {
        check_report(&st, 0, "connect", "%s (%s): %s", kc->server, kcfg.source, err.msg);
        goto done; /* nothing else can be answered */
    }
    const char *gv = json_str_at(ver, "gitVersion");
    check_report(&st, 1, "connect", "%s (%s), server %s, namespace %s", kc->server, kcfg.source, gv ? gv : "?", ns);
    cJSON_Delete(ver);

    check_crd(&st, kc, &KUBE_WORKERS, ns, "install it with worker-controller install-crds");
    check_sandbox_auto(&st, kc, &conf, ns);
    if (conf.sandbox_enabled) {
        const char *hint = "install OpenKruise agents, or set HICLAW_SANDBOX_ENABLED=false";
        check_crd(&st, kc, &KUBE_SANDBOXCLAIMS, ns, hint);
        check_crd(&st, kc, &KUBE_SANDBOXES, ns, hint);
        if (conf.sandbox_manage_pool) check_crd(&st, kc, &KUBE_SANDBOXSETS, ns, hint);
    }
    check_agent_sandbox(&st, kc, &conf, ns);
    check_rbac(&st, kc, &conf, ns);
    if (conf.sandbox_enabled) check_bucket(&st, &conf);
done:
    if (st.failed) printf("check: %d of %d checks FAILED\n", st.failed, st.passed + st.failed);
    else printf("check: all %d checks ok\n", st.passed);
    kube_client_free(kc);
    kube_config_free(&kcfg);
    free(ns);
    cfg_free(&conf);
    return st.failed ? WC_EXIT_FAILURE : WC_EXIT_OK;
}
