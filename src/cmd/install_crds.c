/*
 * install_crds.c — `worker-controller install-crds`: server-side apply of every CRD embedded
 * under embed/crds/, then wait until each is Established with its names accepted.
 *
 * Server-side apply with a fixed field manager makes the command idempotent: applying the same
 * YAML again changes nothing (the object's resourceVersion stays), and a newer binary updates
 * exactly the fields it owns.
 */

static const char install_crds_usage[] =
    "Usage: worker-controller install-crds [FLAGS]\n"
    "\n"
    "Server-side applies the embedded Worker CRD (hiclaw.io/v1beta1) and waits until it is\n"
    "Established and its names are accepted. Warns (does not fail) when the OpenKruise agents\n"
    "CRDs (agents.kruise.io) are absent: they are needed only for spec.backendRuntime: sandbox.\n"
    "\n"
    "Flags:\n"
    "  --print               write the CRD YAML to stdout and exit (no cluster needed)\n"
    "  --dry-run=server      let the API server validate the apply without persisting it\n"
    "  --timeout DURATION    how long to wait for Established (default 60s)\n"
    "  --field-manager NAME  server-side apply field manager (default worker-controller)\n"
    KUBE_CONNECT_FLAGS_USAGE;

#define CRD_PREFIX "crds/"

/* Reads metadata.name of an embedded YAML manifest. */
static int manifest_name(const struct embedded_asset *a, char *out, size_t outsz, wc_err *err) {
    kc_file f;
    if (kc_load_mem(&f, a->path, (const char *)a->data, a->len, err) < 0) {
        kc_free(&f);
        return -1;
    }
    const char *name = yml_get_str(&f, yml_get(&f, yml_root(&f), "metadata"), "name");
    int rc = 0;
    if (!name) rc = err_set(err, WC_EPARSE, "%s: no metadata.name", a->path);
    else snprintf(out, outsz, "%s", name);
    kc_free(&f);
    return rc;
}

static int crd_condition_true(const cJSON *crd, const char *type) {
    const cJSON *conds = json_get(json_get(crd, "status"), "conditions");
    const cJSON *c;
    cJSON_ArrayForEach(c, conds) {
        const char *t = json_str_at(c, "type"), *s = json_str_at(c, "status");
        if (t && s && strcmp(t, type) == 0) return strcmp(s, "True") == 0;
    }
    return 0;
}

/* Polls until the CRD is Established and NamesAccepted, or the deadline passes. */
static int crd_wait_established(kube_client *kc, const char *name, int64_t timeout_ms, wc_err *err) {
    int64_t deadline = wc_now_ms() + timeout_ms;
    char last[WC_ERR_MSG_MAX] = "not observed yet";
    for (;;) {
        cJSON *crd = NULL;
        if (kube_get(kc, &KUBE_CRDS, NULL, name, NULL, &crd, err) == 0) {
            int est = crd_condition_true(crd, "Established"), names = crd_condition_true(crd, "NamesAccepted");
            snprintf(last, sizeof last, "Established=%s NamesAccepted=%s", est ? "True" : "False",
                     names ? "True" : "False");
            cJSON_Delete(crd);
            if (est && names) return 0;
        } else {
            snprintf(last, sizeof last, "%s", err->msg);
        }
        if (wc_now_ms() >= deadline)
            return err_set(err, WC_ETIMEOUT, "CRD %s not established within %" PRId64 " ms (%s)", name, timeout_ms, last);
        wc_sleep_ms(250);
    }
}

/* --print: the embedded CRDs as one YAML stream. */
static int install_crds_print(void) {
    int first = 1;
    for (size_t i = 0; i < sizeof embedded_assets / sizeof *embedded_assets; i++) {
        if (strncmp(embedded_assets[i].path, CRD_PREFIX, strlen(CRD_PREFIX)) != 0) continue;
        if (!first) fputs("---\n", stdout);
        fwrite(embedded_assets[i].data, 1, embedded_assets[i].len, stdout);
        first = 0;
    }
    return WC_EXIT_OK;
}

/* Server-side applies every embedded CRD and (unless a server dry run) waits until each is
 * Established. */
static int install_crds_apply(kube_client *kc, const char *field_manager, int server_dry_run, int64_t timeout_ms) {
    wc_err err;
    err_clear(&err);
    for (size_t i = 0; i < sizeof embedded_assets / sizeof *embedded_assets; i++) {
        const struct embedded_asset *a = &embedded_assets[i];
        if (strncmp(a->path, CRD_PREFIX, strlen(CRD_PREFIX)) != 0) continue;
        char name[256];
        cJSON *applied = NULL;
        if (manifest_name(a, name, sizeof name, &err) < 0 ||
            kube_patch(kc, &KUBE_CRDS, NULL, name, NULL, KUBE_PATCH_APPLY, (const char *)a->data,
                       field_manager ? field_manager : "worker-controller", 1, server_dry_run, &applied, &err) < 0) {
            fprintf(stderr, "worker-controller install-crds: apply %s: %s\n", a->path, err.msg);
            return WC_EXIT_FAILURE;
        }
        const char *rv = json_str_at(applied, "metadata.resourceVersion");
        printf("customresourcedefinition.apiextensions.k8s.io/%s %s (resourceVersion %s)\n", name,
               server_dry_run ? "validated (server dry run)" : "applied", rv ? rv : "?");
        cJSON_Delete(applied);
        if (server_dry_run) continue;
        if (crd_wait_established(kc, name, timeout_ms, &err) < 0) {
            fprintf(stderr, "worker-controller install-crds: %s\n", err.msg);
            return WC_EXIT_FAILURE;
        }
        printf("customresourcedefinition.apiextensions.k8s.io/%s established\n", name);
    }
    return WC_EXIT_OK;
}

/* The Worker CRD alone is enough for the pod backend; say so when OpenKruise agents is not there. */
static void install_crds_warn_sandbox(kube_client *kc) {
    static const char *kruise[] = {"sandboxclaims.agents.kruise.io", "sandboxes.agents.kruise.io",
                                   "sandboxsets.agents.kruise.io"};
    for (size_t i = 0; i < sizeof kruise / sizeof *kruise; i++) {
        cJSON *crd = NULL;
        wc_err err;
        err_clear(&err);
        if (kube_get(kc, &KUBE_CRDS, NULL, kruise[i], NULL, &crd, &err) < 0) {
            if (kube_err_not_found(&err))
                fprintf(stderr, "warning: CRD %s is not installed: Workers with spec.backendRuntime: sandbox "
                                "cannot run until OpenKruise agents is installed\n", kruise[i]);
            else
                fprintf(stderr, "warning: could not check CRD %s: %s\n", kruise[i], err.msg);
        }
        cJSON_Delete(crd);
    }
}

static int cmd_install_crds(int argc, char **argv) {
    const char *print = NULL, *dry_run = NULL, *timeout = NULL, *field_manager = NULL;
    kube_connect_opts conn = {0};
    cli_flag flags[] = {
        {"print", 0, &print},
        {"dry-run", 1, &dry_run},
        {"timeout", 1, &timeout},
        {"field-manager", 1, &field_manager},
        KUBE_CONNECT_FLAGS(conn),
        {NULL, 0, NULL},
    };
    wc_err err;
    err_clear(&err);
    if (cli_parse(argc, argv, flags, NULL, 0, NULL, &err) < 0) return cli_usage_error("install-crds", &err);
    int64_t timeout_ms = 60000;
    if (timeout && parse_duration_ms(timeout, &timeout_ms) < 0) {
        err_set(&err, WC_EINVAL, "--timeout %s is not a duration (e.g. 60s, 2m)", timeout);
        return cli_usage_error("install-crds", &err);
    }
    if (dry_run && strcmp(dry_run, "server") != 0 && strcmp(dry_run, "none") != 0) {
        err_set(&err, WC_EINVAL, "--dry-run must be server or none, not %s", dry_run);
        return cli_usage_error("install-crds", &err);
    }
    if (print && strcmp(print, "true") == 0) return install_crds_print();
    kube_config cfg;
    if (kube_config_load(&conn, &cfg, &err) < 0) {
        fprintf(stderr, "worker-controller install-crds: %s\n", err.msg);
        return err.code == WC_EINVAL || err.code == WC_EUNSUPPORTED ? WC_EXIT_USAGE : WC_EXIT_FAILURE;
    }
    kube_client *kc = kube_client_new(&cfg, &err);
    kube_config_free(&cfg);
    if (!kc) {
        fprintf(stderr, "worker-controller install-crds: %s\n", err.msg);
        return WC_EXIT_USAGE;
    }
    int rc = install_crds_apply(kc, field_manager, dry_run && strcmp(dry_run, "server") == 0, timeout_ms);
    if (rc == WC_EXIT_OK) install_crds_warn_sandbox(kc);
    kube_client_free(kc);
    return rc;
}
