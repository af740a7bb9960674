/*
 * explain.c — `worker-controller explain NAMESPACE/NAME`: what the controller sees for one
 * Worker and what it would do next, without doing any of it.
 *
 * Same configuration as `run` (the table, the environment, every flag), same identity, same
 * decision: the backends of the table are set up as run sets them up, each observes the Worker
 * through its own code, and the reconcile shell's reconcile_decide() — run's own gathering and
 * decision — decides. The one difference is where observations come from: run's informers are
 * watches; here each is a snapshot, filled by one live LIST of this Worker's objects
 * (kube_informer_snapshot), so what is shown is what the API server holds now.
 *
 * Read-only by construction, not by care: the Kubernetes client and every S3 client the
 * backends make are marked read_only, and refuse any request but GET (and HEAD) before it
 * leaves the process; no Event recorder exists; the decision's actions are printed, never
 * executed, and no status is written. The e2e test runs it under a Role that grants get and
 * list only.
 *
 * What it cannot see: the recreate backoff after a failed instance and the workqueue's per-key
 * backoff live in the running controller's memory; the output says so.
 *
 * Exit codes: 0 shown; 1 the Worker is not found, or the API server or storage failed;
 * 2 bad usage or configuration.
 */

static const char explain_usage_head[] =
    "Usage: worker-controller explain [NAMESPACE/]NAME [--output text|json] [FLAGS]\n"
    "\n"
    "Shows what the controller sees for one Worker and what it would do next, without doing it:\n"
    "the Worker's spec (secret values never shown), its instances of every backend (Pods;\n"
    "SandboxClaims and Sandboxes where OpenKruise agents is served), its worker-deps objects when\n"
    "storage is configured, and the decision run would make now, in plain words. Everything is\n"
    "read live from the API server (and object storage); nothing is written anywhere.\n"
    "NAME alone means the watched namespace (HICLAW_K8S_NAMESPACE, else the current one).\n"
    "\n"
    "  --output, -o FORMAT   text (default) or json (stable keys, for tools: worker, spec, status,\n"
    "                        backends, instances, beside, backoff, next{handled, reason, message,\n"
    "                        summary, then, actions[], events[], status, backoff, requeueAfterSeconds})\n"
    "\n"
    "It takes every flag of 'run' (see 'worker-controller run --help') and its environment.\n"
    "Exit codes: 0 shown, 1 Worker not found or API/storage error, 2 usage or configuration.\n";

static void explain_usage(FILE *out) {
    fputs(explain_usage_head, out);
    fputs(KUBE_CONNECT_FLAGS_USAGE, out);
}

typedef struct explain_args {
    const char *target; /* [NAMESPACE/]NAME */
    int json;
    char **rest;        /* run's flags, for cfg_load (rest[0] is the command name) */
    int nrest;
} explain_args;

/* Whether run's flag --name takes a value (a boolean or an unknown flag does not: the parser
 * then names an unknown one). */
static int explain_flag_takes_value(const char *name) {
    const cfg_field *f = cfg_find_flag(name, strlen(name));
    if (f) return f->type != CFG_BOOL && f->type != CFG_AUTO_BOOL;
    for (size_t k = 0; k < sizeof cfg_kube_flags / sizeof *cfg_kube_flags; k++)
        if (strcmp(cfg_kube_flags[k].flag, name) == 0) return 1;
    return 0;
}

/* Takes explain's own arguments (the Worker, --output) out of argv; every other argument goes to
 * the configuration parser, which names a wrong one. Pure. rest must hold argc pointers. */
static int explain_parse_args(int argc, char **argv, char **rest, explain_args *out, wc_err *err) {
    memset(out, 0, sizeof *out);
    out->rest = rest;
    rest[out->nrest++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *fmt = NULL;
        if (strcmp(a, "--output") == 0 || strcmp(a, "-o") == 0) {
            if (i + 1 >= argc) return err_set(err, WC_EINVAL, "flag %s needs a value (text or json)", a);
            fmt = argv[++i];
        } else if (strncmp(a, "--output=", 9) == 0) {
            fmt = a + 9;
        } else if (a[0] != '-') {
            if (out->target) return err_set(err, WC_EINVAL, "unexpected argument %s (one Worker at a time)", a);
            out->target = a;
            continue;
        } else {
            rest[out->nrest++] = argv[i];
            /* a flag's value travels with it, as cfg_parse_flags reads it: --name value */
            if (strncmp(a, "--", 2) == 0 && !strchr(a, '=') && i + 1 < argc && explain_flag_takes_value(a + 2))
                rest[out->nrest++] = argv[++i];
            continue;
        }
        if (strcmp(fmt, "json") == 0) out->json = 1;
        else if (strcmp(fmt, "text") != 0) return err_set(err, WC_EINVAL, "--output takes text or json, not %s", fmt);
    }
    if (!out->target) return err_set(err, WC_EINVAL, "which Worker? give NAMESPACE/NAME or NAME");
    /* Kubernetes names (RFC 1123: lower-case letters, digits, '-', '.'): they go into request
     * paths and a label selector as they are */
    const char *slash = strchr(out->target, '/');
    size_t nslen = slash ? (size_t)(slash - out->target) : 0, namelen = strlen(slash ? slash + 1 : out->target);
    int ok = namelen > 0 && namelen <= 253 && nslen <= 63 && (!slash || nslen > 0);
    for (const char *p = out->target; ok && *p; p++)
        ok = islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-' || *p == '.' || (p == slash);
    if (!ok) return err_set(err, WC_EINVAL, "%s is not NAMESPACE/NAME or NAME (Kubernetes names)", out->target);
    return 0;
}

/* ---- gathering: run's backends and decision, on snapshots ---- */

typedef struct explain_state {
    controller ctl;
    int ctl_ready;
    char ns[254], name[254], key[520];
    arena a;
    exec_ctx x;
    observed o;
    kv_list secret;
    decision d;
    worker w;
    cJSON *obj, *proj;
} explain_state;

/* Each backend's caches as a snapshot of this Worker's objects: run's selector for that cache,
 * narrowed to the Worker's label (when the name can be a label value; else the index picks it). */
static int explain_snapshot(explain_state *e, const char *controller_name, wc_err *err) {
    controller *c = &e->ctl;
    for (size_t i = 0; i < c->nbackends; i++) {
        backend *b = &c->backends[i];
        for (size_t k = 0; k < b->ncaches; k++) {
            char sel[700];
            run_cache_selector(controller_name, &b->caches[k], sel, sizeof sel);
            if (strlen(e->name) <= 63)
                snprintf(sel + strlen(sel), sizeof sel - strlen(sel), "," LABEL_WORKER "=%s", e->name);
            kube_informer_options o = {.resource = b->caches[k].resource, .namespace = e->ns, .label_selector = sel,
                                       .project = b->caches[k].project, .index = instance_index};
            b->informers[k] = kube_informer_snapshot(c->host.kc, b->caches[k].name, &o, err);
            if (!b->informers[k]) return err_wrap(err, "listing %s of Worker %s/%s", b->caches[k].resource->plural, e->ns, e->name);
        }
    }
    return 0;
}

/* The Worker's namespace, name and key from [NAMESPACE/]NAME (checked by explain_parse_args). */
static void explain_target(explain_state *e, const char *target, const char *watched) {
    arena_init(&e->a);
    const char *slash = strchr(target, '/');
    snprintf(e->ns, sizeof e->ns, "%.*s", slash ? (int)(slash - target) : (int)strlen(watched), slash ? target : watched);
    snprintf(e->name, sizeof e->name, "%s", slash ? slash + 1 : target);
    snprintf(e->key, sizeof e->key, "%s/%s", e->ns, e->name);
}

static void explain_release(explain_state *e) {
    controller *c = &e->ctl;
    exec_release(&e->x);
    for (size_t i = 0; i < c->nbackends; i++)
        for (size_t k = 0; k < c->backends[i].ncaches; k++) {
            kube_informer_free(c->backends[i].informers[k]);
            c->backends[i].informers[k] = NULL;
        }
    if (e->ctl_ready) controller_release(c);
    arena_free(&e->a);
    cJSON_Delete(e->proj);
    cJSON_Delete(e->obj);
}

/* The Worker, parsed as run parses it from its cache. 0, or -1 (err says why; 404: not found). */
static int explain_read_worker(explain_state *e, wc_err *err) {
    if (kube_get(e->ctl.host.kc, &KUBE_WORKERS, e->ns, e->name, NULL, &e->obj, err) < 0) {
        if (kube_err_not_found(err))
            err_set(err, WC_EHTTP, "Worker %s/%s not found (or the hiclaw.io Worker CRD is not installed)", e->ns, e->name);
        return -1;
    }
    e->proj = worker_project(e->obj);
    if (worker_parse(&e->a, e->proj, &e->ctl.wd, &e->w, err) < 0) return err_wrap(err, "cannot parse Worker %s/%s", e->ns, e->name);
    worker_validate(&e->a, &e->w, e->ctl.dc.prefix);
    return 0;
}

/* Everything the renderer takes, from the gathered state. */
static cJSON *explain_collect(explain_state *e, const wc_cfg *conf, int decided) {
    controller *c = &e->ctl;
    const worker *w = &e->w;
    explain_backend_view views[DECIDE_MAX_BACKENDS];
    size_t ninst = 0, cap = 8;
    explain_instance *inst = arena_alloc(&e->a, cap * sizeof *inst);
    cJSON *extras = json_object();
    for (size_t i = 0; i < c->nbackends; i++) {
        backend *b = &c->backends[i];
        views[i] = (explain_backend_view){.name = b->ops->name, .enabled = b->policy.enabled, .served = b->ncaches > 0,
                                          .disabled_why = b->policy.disabled_spec, .want_hash = e->x.hashes[i]};
        for (size_t k = 0; k < b->ncaches; k++) {
            cJSON *arr = kube_informer_by_index(b->informers[k], e->key);
            exec_hold(&e->x, arr);
            const cJSON *it;
            cJSON_ArrayForEach(it, arr) {
                if (ninst == cap) {
                    explain_instance *grown = arena_alloc(&e->a, 2 * cap * sizeof *grown);
                    memcpy(grown, inst, cap * sizeof *inst);
                    inst = grown, cap *= 2;
                }
                inst[ninst++] = (explain_instance){.backend = b->ops->name, .kind = b->caches[k].resource->kind,
                                                   .proj = it, .ours = !instance_of_other_worker(json_get(it, "metadata"), w->uid)};
            }
        }
        if (b->ops->describe) b->ops->describe(b, &e->x, extras);
    }
    const cJSON *labels = json_get(json_get(e->obj, "metadata"), "labels");
    int secret_read = !w->deleting && w->container_managed && !w->invalid;
    explain_input in = {.w = w, .controller = conf->controller_name, .label = json_str(labels, LABEL_CONTROLLER),
                        .secret_name = arena_sprintf(&e->a, WORKER_CREDS_SECRET_PREFIX "%s", w->name),
                        .secret_state = !secret_read ? -1 : e->x.secret ? 0 : 1, .secret = e->x.secret,
                        .backends = views, .nbackends = c->nbackends, .instances = inst, .ninstances = ninst,
                        .extras = extras, .d = decided ? &e->d : NULL};
    cJSON *tree = explain_build(&e->a, &in);
    cJSON_Delete(extras);
    return tree;
}

/* Gathers and decides for the Worker of e->ns/e->name with the backends already set up (e->ctl);
 * the explanation tree into *tree. 0, or -1 with err. */
static int explain_gather(explain_state *e, const wc_cfg *conf, cJSON **tree, wc_err *err) {
    if (explain_read_worker(e, err) < 0 || explain_snapshot(e, conf->controller_name, err) < 0) return -1;
    e->x = (exec_ctx){.a = &e->a, .w = &e->w, .key = e->key, .o = &e->o};
    /* run's own gathering and decision (the Secret read, each backend's observe and render, the
     * live recheck a decision may ask for); its actions are never executed here */
    if (reconcile_decide(&e->ctl, &e->x, &e->secret, &e->d, err) < 0)
        return err_set(err, WC_EHTTP, "%s", e->d.message ? e->d.message : "cannot decide");
    const char *label = json_str(json_get(json_get(e->obj, "metadata"), "labels"), LABEL_CONTROLLER);
    *tree = explain_collect(e, conf, label && strcmp(label, conf->controller_name) == 0);
    return 0;
}

/* Sets up run's backends (their checks of what the cluster serves included), then gathers. */
static int explain_worker(explain_state *e, const wc_cfg *conf, cJSON **tree, wc_err *err) {
    if (controller_setup(&e->ctl, wc_backend_table, WC_NBACKENDS, conf, err) < 0)
        return err->code == WC_EINVAL ? WC_EXIT_USAGE : WC_EXIT_FAILURE;
    e->ctl_ready = 1;
    return explain_gather(e, conf, tree, err) < 0 ? WC_EXIT_FAILURE : WC_EXIT_OK;
}

/* Every string of the tree through the redactor, before any rendering: JSON escaping could
 * otherwise hide a secret holding a quote from a scrub of the rendered text. */
static void explain_redact_tree(cJSON *node) {
    cJSON *it;
    cJSON_ArrayForEach(it, node) {
        if (cJSON_IsString(it)) {
            char *clean = log_redact(it->valuestring);
            if (strcmp(clean, it->valuestring) != 0) cJSON_SetValuestring(it, clean);
            free(clean);
        } else {
            explain_redact_tree(it);
        }
    }
}

/* What explain prints for the tree: JSON or text, every registered secret and every JWT or
 * bearer shape scrubbed — in each string of the tree, and in the text again (caller frees).
 * Pure but for the redactor's registered secrets. */
static char *explain_output(cJSON *tree, int json) {
    explain_redact_tree(tree);
    buf out = BUF_INIT;
    if (json) {
        char *s = cJSON_Print(tree);
        buf_puts(&out, s ? s : "{}");
        buf_putc(&out, '\n');
        free(s);
    } else {
        explain_text(&out, tree);
    }
    char *clean = log_redact(buf_cstr(&out));
    buf_free(&out);
    return clean;
}

static int cmd_explain(int argc, char **argv) {
    char **rest = xcalloc((size_t)argc + 1, sizeof *rest);
    explain_args args;
    wc_err err;
    err_clear(&err);
    if (explain_parse_args(argc, argv, rest, &args, &err) < 0) {
        free(rest);
        return cli_usage_error("explain", &err);
    }
    wc_cfg conf;
    if (cfg_load(&conf, NULL, args.nrest, args.rest, &err) < 0) {
        fprintf(stderr, "worker-controller explain: %s\n", err.msg);
        free(rest);
        return WC_EXIT_USAGE;
    }
    /* stdout carries the explanation; only the client's warnings and errors go to stderr */
    log_configure(conf.log_fmt, conf.log_lvl > LOG_WARN ? conf.log_lvl : LOG_WARN, 2);
    kube_config kcfg;
    if (kube_config_load(&conf.kube, &kcfg, &err) < 0) {
        fprintf(stderr, "worker-controller explain: %s\n", err.msg);
        cfg_free(&conf);
        free(rest);
        return err.code == WC_EIO ? WC_EXIT_FAILURE : WC_EXIT_USAGE;
    }
    explain_state *e = xcalloc(1, sizeof *e);
    explain_target(e, args.target,
                   *conf.watch_namespace ? conf.watch_namespace : kcfg.namespace ? kcfg.namespace : "default");
    int rc = WC_EXIT_FAILURE;
    cJSON *tree = NULL;
    controller *c = &e->ctl;
    c->host.kc = kube_client_new(&kcfg, &err);
    if (c->host.kc) {
        c->host.kc->read_only = 1; /* structurally read-only: every write is refused before it is sent */
        c->host.read_only = 1;     /* and so is every S3 client a backend makes */
        c->host.namespace = e->ns;
        rc = explain_worker(e, &conf, &tree, &err);
    }
    if (tree) {
        char *text = explain_output(tree, args.json);
        fputs(text, stdout);
        free(text);
    } else {
        char *clean = log_redact(err.msg);
        fprintf(stderr, "worker-controller explain: %s\n", clean);
        free(clean);
    }
    cJSON_Delete(tree);
    explain_release(e);
    kube_client_free(c->host.kc);
    free(e);
    kube_config_free(&kcfg);
    cfg_free(&conf);
    free(rest);
    return rc;
}
