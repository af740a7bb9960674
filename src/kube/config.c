/*
 * config.c — where the API server is and how to authenticate: kubeconfig, in-cluster, flags.
 *
 * The result is a kube_config: a server URL, a CA bundle (PEM in memory), one credential
 * (static token, token file, or client certificate + key) and optional CURLOPT_RESOLVE pin.
 * Everything is copied out of the YAML document so the parser's memory is gone afterwards.
 *
 * Kubeconfig rules followed (as kubectl does): $KUBECONFIG is a ':'-separated list whose files
 * are merged with the first file that defines a name winning; current-context is the first one
 * set; relative file paths resolve against the file that names them; *-data fields are base64.
 * exec and auth-provider plugins are refused with a clear error: a static binary in a scratch
 * image has nothing to exec.
 */

typedef struct kube_config {
    char *server;          /* https://host:port (no trailing slash) */
    buf ca_pem;            /* empty when insecure_skip_verify */
    char *token;           /* static bearer token */
    char *token_file;      /* bearer token re-read as it rotates */
    buf client_cert_pem;
    buf client_key_pem;    /* secret: wiped on free */
    int insecure_skip_verify;
    char *namespace;       /* context namespace, or the in-cluster namespace file */
    char *resolve;         /* "host:port:ip" pin, e.g. in-cluster */
    char *source;          /* human-readable origin for logs: "kubeconfig /x (context y)" */
} kube_config;

static void kube_config_free(kube_config *c) {
    free(c->server);
    buf_free(&c->ca_pem);
    if (c->token) secure_zero(c->token, strlen(c->token));
    free(c->token);
    free(c->token_file);
    buf_free(&c->client_cert_pem);
    buf_free_secret(&c->client_key_pem);
    free(c->namespace);
    free(c->resolve);
    free(c->source);
    memset(c, 0, sizeof *c);
}

#define KUBECONFIG_MAX_BYTES (4u << 20)
#define KUBE_PEM_MAX_BYTES (1u << 20)

/* ---- a small read-only view over libyaml's document tree ---- */

typedef struct kc_file {
    char *path;
    yaml_document_t doc;
    int loaded;
} kc_file;

static yaml_node_t *yml_root(kc_file *f) { return yaml_document_get_root_node(&f->doc); }

static const char *yml_scalar(kc_file *f, yaml_node_t *n) {
    (void)f;
    if (!n || n->type != YAML_SCALAR_NODE) return NULL;
    return (const char *)n->data.scalar.value;
}

static yaml_node_t *yml_get(kc_file *f, yaml_node_t *map, const char *key) {
    if (!map || map->type != YAML_MAPPING_NODE) return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = yml_scalar(f, yaml_document_get_node(&f->doc, p->key));
        if (k && strcmp(k, key) == 0) return yaml_document_get_node(&f->doc, p->value);
    }
    return NULL;
}

static const char *yml_get_str(kc_file *f, yaml_node_t *map, const char *key) {
    const char *s = yml_scalar(f, yml_get(f, map, key));
    return s && *s ? s : NULL;
}

/* Finds the entry named `name` in a list like clusters: [{name: x, cluster: {...}}] and returns
 * its `field` mapping. */
static yaml_node_t *yml_named(kc_file *f, const char *list, const char *name, const char *field) {
    yaml_node_t *seq = yml_get(f, yml_root(f), list);
    if (!seq || seq->type != YAML_SEQUENCE_NODE) return NULL;
    for (yaml_node_item_t *it = seq->data.sequence.items.start; it < seq->data.sequence.items.top; it++) {
        yaml_node_t *entry = yaml_document_get_node(&f->doc, *it);
        const char *n = yml_get_str(f, entry, "name");
        if (n && strcmp(n, name) == 0) {
            yaml_node_t *v = yml_get(f, entry, field);
            return v ? v : entry; /* an entry with no body still "defines" the name */
        }
    }
    return NULL;
}

/* Parses YAML text (one document) into f; `name` labels error messages. */
static int kc_load_mem(kc_file *f, const char *name, const char *data, size_t len, wc_err *err) {
    memset(f, 0, sizeof *f);
    f->path = xstrdup(name);
    yaml_parser_t parser;
    if (!yaml_parser_initialize(&parser)) return err_set(err, WC_EIO, "%s: yaml parser init failed", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)data, len);
    int ok = yaml_parser_load(&parser, &f->doc);
    if (!ok)
        err_set(err, WC_EPARSE, "%s: line %zu: %s", name, parser.problem_mark.line + 1,
                parser.problem ? parser.problem : "invalid YAML");
    yaml_parser_delete(&parser);
    if (!ok) return -1;
    f->loaded = 1;
    yaml_node_t *root = yml_root(f);
    if (root && root->type != YAML_MAPPING_NODE) return err_set(err, WC_EPARSE, "%s: top level is not a mapping", name);
    return 0;
}

static int kc_load(kc_file *f, const char *path, wc_err *err) {
    buf data = BUF_INIT;
    if (file_read_all(path, KUBECONFIG_MAX_BYTES, &data, err) < 0) {
        buf_free(&data);
        memset(f, 0, sizeof *f);
        return -1;
    }
    char label[PATH_MAX + 16];
    snprintf(label, sizeof label, "kubeconfig %s", path);
    int rc = kc_load_mem(f, label, buf_cstr(&data), data.len, err);
    free(f->path);
    f->path = xstrdup(path); /* relative paths resolve against the file itself */
    buf_free_secret(&data); /* the file may hold tokens and keys */
    return rc;
}

static void kc_free(kc_file *f) {
    if (f->loaded) yaml_document_delete(&f->doc);
    free(f->path);
    memset(f, 0, sizeof *f);
}

/* Reads a PEM from `<field>` (a path relative to the file) or `<field>-data` (base64). */
static int kc_pem(kc_file *f, yaml_node_t *map, const char *field, buf *out, const char *what, wc_err *err) {
    char datakey[64];
    snprintf(datakey, sizeof datakey, "%s-data", field);
    const char *data = yml_get_str(f, map, datakey);
    if (data) {
        buf_reset(out);
        if (base64_decode(out, data, strlen(data)) < 0)
            return err_set(err, WC_EPARSE, "kubeconfig %s: %s is not valid base64", f->path, datakey);
        return 0;
    }
    const char *path = yml_get_str(f, map, field);
    if (!path) return 0;
    char *full = path_relative_to(f->path, path);
    int rc = file_read_all(full, KUBE_PEM_MAX_BYTES, out, err);
    if (rc < 0) err_wrap(err, "kubeconfig %s: %s", f->path, what);
    free(full);
    return rc;
}

/* Searches the files in order for the named entry: the first file that defines it wins. */
static yaml_node_t *kc_find(kc_file *files, int n, const char *list, const char *name, const char *field, kc_file **owner) {
    for (int i = 0; i < n; i++) {
        yaml_node_t *v = yml_named(&files[i], list, name, field);
        if (v) {
            *owner = &files[i];
            return v;
        }
    }
    return NULL;
}

static int yml_truthy(const char *s) {
    return s && (strcmp(s, "true") == 0 || strcmp(s, "True") == 0 || strcmp(s, "TRUE") == 0 ||
                 strcmp(s, "yes") == 0 || strcmp(s, "on") == 0);
}

/* The cluster entry: server (http(s), trailing '/' dropped), TLS settings, CA. */
static int kc_cluster(kube_config *out, kc_file *clf, yaml_node_t *cluster, const char *cluster_name, wc_err *err) {
    const char *server = yml_get_str(clf, cluster, "server");
    if (!server) return err_set(err, WC_EINVAL, "kubeconfig %s: cluster %s has no server", clf->path, cluster_name);
    if (strncmp(server, "https://", 8) != 0 && strncmp(server, "http://", 7) != 0)
        return err_set(err, WC_EINVAL, "kubeconfig %s: cluster %s: server %s is not an http(s) URL", clf->path,
                       cluster_name, server);
    out->server = xstrdup(server);
    size_t sl = strlen(out->server);
    while (sl > 0 && out->server[sl - 1] == '/') out->server[--sl] = '\0';
    out->insecure_skip_verify = yml_truthy(yml_get_str(clf, cluster, "insecure-skip-tls-verify"));
    if (kc_pem(clf, cluster, "certificate-authority", &out->ca_pem, "certificate-authority", err) < 0) return -1;
    if (yml_get_str(clf, cluster, "proxy-url"))
        return err_set(err, WC_EUNSUPPORTED, "kubeconfig %s: cluster %s: proxy-url is not supported", clf->path,
                       cluster_name);
    return 0;
}

/* The user entry: a token, a token file or a client certificate; plugins and basic auth are
 * refused by name rather than ignored (the request would fail later, less clearly). */
static int kc_user(kube_config *out, kc_file *uf, yaml_node_t *user, const char *user_name, wc_err *err) {
    static const struct { const char *field, *what; } plugins[] = {{"exec", "an exec credential plugin"},
                                                                   {"auth-provider", "an auth-provider plugin"}};
    for (size_t i = 0; i < sizeof plugins / sizeof *plugins; i++)
        if (yml_get(uf, user, plugins[i].field))
            return err_set(err, WC_EUNSUPPORTED,
                           "kubeconfig %s: user %s uses %s, which is not supported "
                           "(use a token, tokenFile or client certificate)", uf->path, user_name, plugins[i].what);
    if (yml_get_str(uf, user, "username") || yml_get_str(uf, user, "password"))
        return err_set(err, WC_EUNSUPPORTED, "kubeconfig %s: user %s: basic auth is not supported", uf->path, user_name);
    const char *token = yml_get_str(uf, user, "token");
    const char *token_file = yml_get_str(uf, user, "tokenFile");
    if (token) {
        out->token = xstrdup(token);
        log_register_secret(token);
    } else if (token_file) {
        out->token_file = path_relative_to(uf->path, token_file);
    }
    if (kc_pem(uf, user, "client-certificate", &out->client_cert_pem, "client-certificate", err) < 0) return -1;
    if (kc_pem(uf, user, "client-key", &out->client_key_pem, "client-key", err) < 0) return -1;
    if ((out->client_cert_pem.len == 0) != (out->client_key_pem.len == 0))
        return err_set(err, WC_EINVAL, "kubeconfig %s: user %s: client certificate and key must be given together",
                       uf->path, user_name);
    return 0;
}

/* The context's cluster, user and namespace, from files[0..n) (the first file that defines an
 * entry wins). */
static int kc_context(kube_config *out, kc_file *files, int n, const char *paths, const char *context, wc_err *err) {
    const char *ctxname = context;
    for (int i = 0; !ctxname && i < n; i++) ctxname = yml_get_str(&files[i], yml_root(&files[i]), "current-context");
    if (!ctxname) return err_set(err, WC_EINVAL, "kubeconfig %s: no current-context set and no --context given", paths);
    kc_file *cf = NULL, *uf = NULL, *clf = NULL;
    yaml_node_t *ctx = kc_find(files, n, "contexts", ctxname, "context", &cf);
    if (!ctx) return err_set(err, WC_EINVAL, "kubeconfig %s: context %s not found", paths, ctxname);
    const char *cluster_name = yml_get_str(cf, ctx, "cluster");
    const char *user_name = yml_get_str(cf, ctx, "user");
    const char *ns = yml_get_str(cf, ctx, "namespace");
    yaml_node_t *cluster = cluster_name ? kc_find(files, n, "clusters", cluster_name, "cluster", &clf) : NULL;
    if (!cluster)
        return err_set(err, WC_EINVAL, "kubeconfig %s: context %s: cluster %s not found", paths, ctxname,
                       cluster_name ? cluster_name : "(none)");
    if (kc_cluster(out, clf, cluster, cluster_name, err) < 0) return -1;
    if (user_name) {
        yaml_node_t *user = kc_find(files, n, "users", user_name, "user", &uf);
        if (!user) return err_set(err, WC_EINVAL, "kubeconfig %s: context %s: user %s not found", paths, ctxname, user_name);
        if (kc_user(out, uf, user, user_name, err) < 0) return -1;
    }
    if (ns) out->namespace = xstrdup(ns);
    char src[512];
    snprintf(src, sizeof src, "kubeconfig %s (context %s)", files[0].path, ctxname);
    out->source = xstrdup(src);
    return 0;
}

/* Loads the kubeconfig from `paths` (':'-separated, like $KUBECONFIG) for `context` (NULL:
 * current-context). Missing files in a list are skipped, as kubectl does; an empty result is
 * an error. */
static int kube_config_from_kubeconfig(kube_config *out, const char *paths, const char *context, wc_err *err) {
    memset(out, 0, sizeof *out);
    kc_file files[16];
    int n = 0, rc = -1, failed = 0;
    char *list = xstrdup(paths);
    for (char *save = NULL, *p = strtok_r(list, ":", &save); p && !failed; p = strtok_r(NULL, ":", &save)) {
        if (n == (int)(sizeof files / sizeof *files)) break;
        wc_err e2;
        if (kc_load(&files[n], p, &e2) < 0) {
            kc_free(&files[n]);
            if (e2.code == WC_ENOTFOUND && strchr(paths, ':')) continue;
            *err = e2;
            failed = 1;
            continue;
        }
        n++;
    }
    if (!failed && n == 0) err_set(err, WC_ENOTFOUND, "no kubeconfig found in %s", paths);
    else if (!failed) rc = kc_context(out, files, n, paths, context, err);
    for (int i = 0; i < n; i++) kc_free(&files[i]);
    free(list);
    if (rc < 0) kube_config_free(out);
    return rc;
}

/* The in-cluster layout: a projected ServiceAccount token (rotated by the kubelet, hence read
 * from the file on use), the cluster CA and the pod's namespace under `root`
 * (/var/run/secrets/kubernetes.io/serviceaccount; tests point it elsewhere). BearSSL cannot
 * verify a certificate for an IP address, so the server is addressed by the name every API
 * server certificate carries and pinned to KUBERNETES_SERVICE_HOST with CURLOPT_RESOLVE. */
static int kube_config_in_cluster(kube_config *out, const char *root, wc_err *err) {
    memset(out, 0, sizeof *out);
    const char *host = getenv("KUBERNETES_SERVICE_HOST");
    const char *port = getenv("KUBERNETES_SERVICE_PORT");
    if (!host || !*host) return err_set(err, WC_ENOTFOUND, "in-cluster: KUBERNETES_SERVICE_HOST is not set");
    if (!port || !*port) port = "443";
    for (const char *c = port; *c; c++)
        if (!isdigit((unsigned char)*c)) return err_set(err, WC_EINVAL, "in-cluster: KUBERNETES_SERVICE_PORT %s is not a port", port);
    if (!root) root = "/var/run/secrets/kubernetes.io/serviceaccount";
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/ca.crt", root);
    if (file_read_all(path, KUBE_PEM_MAX_BYTES, &out->ca_pem, err) < 0) {
        err_wrap(err, "in-cluster");
        kube_config_free(out);
        return -1;
    }
    snprintf(path, sizeof path, "%s/token", root);
    if (access(path, R_OK) != 0) {
        err_set(err, WC_ENOTFOUND, "in-cluster: token %s: %s", path, strerror(errno));
        kube_config_free(out);
        return -1;
    }
    out->token_file = xstrdup(path);
    snprintf(path, sizeof path, "%s/namespace", root);
    buf ns = BUF_INIT;
    wc_err ignored;
    if (file_read_all(path, 256, &ns, &ignored) == 0) {
        while (ns.len && isspace((unsigned char)ns.data[ns.len - 1])) ns.data[--ns.len] = '\0';
        if (ns.len) out->namespace = buf_steal(&ns);
    }
    buf_free(&ns);
    const char *name = "kubernetes.default.svc";
    int v6 = strchr(host, ':') != NULL;
    char tmp[512];
    snprintf(tmp, sizeof tmp, "https://%s:%s", name, port);
    out->server = xstrdup(tmp);
    snprintf(tmp, sizeof tmp, v6 ? "%s:%s:[%s]" : "%s:%s:%s", name, port, host);
    out->resolve = xstrdup(tmp);
    snprintf(tmp, sizeof tmp, "in-cluster (%s)", root);
    out->source = xstrdup(tmp);
    return 0;
}

/* How a command was told to reach the cluster (flags; NULL = not given). */
typedef struct kube_connect_opts {
    const char *kubeconfig;
    const char *context;
    const char *server;
    const char *token_file;
    const char *ca_file;
} kube_connect_opts;

/* Resolves the connection the way controller-runtime does: explicit --server; else
 * --kubeconfig or $KUBECONFIG; else in-cluster when running in a pod; else ~/.kube/config.
 * --token-file and --ca-file override what a kubeconfig or the in-cluster layout says. */
static int kube_config_load(const kube_connect_opts *o, kube_config *out, wc_err *err) {
    int rc;
    const char *env_kc = getenv("KUBECONFIG");
    if (o->server) {
        memset(out, 0, sizeof *out);
        if (strncmp(o->server, "https://", 8) != 0 && strncmp(o->server, "http://", 7) != 0)
            return err_set(err, WC_EINVAL, "--server %s is not an http(s) URL", o->server);
        out->server = xstrdup(o->server);
        size_t sl = strlen(out->server);
        while (sl > 0 && out->server[sl - 1] == '/') out->server[--sl] = '\0';
        out->source = xstrdup("flags (--server)");
        rc = 0;
    } else if (o->kubeconfig || (env_kc && *env_kc)) {
        rc = kube_config_from_kubeconfig(out, o->kubeconfig ? o->kubeconfig : env_kc, o->context, err);
    } else if (getenv("KUBERNETES_SERVICE_HOST")) {
        rc = kube_config_in_cluster(out, getenv("WORKER_CONTROLLER_SA_DIR"), err);
    } else {
        const char *home = getenv("HOME");
        if (!home)
            return err_set(err, WC_ENOTFOUND,
                           "no cluster configured: give --kubeconfig or --server, set KUBECONFIG, or run in a pod");
        char path[PATH_MAX];
        snprintf(path, sizeof path, "%s/.kube/config", home);
        rc = kube_config_from_kubeconfig(out, path, o->context, err);
        if (rc < 0 && err->code == WC_ENOTFOUND)
            err_set(err, WC_ENOTFOUND, "no cluster configured: give --kubeconfig or --server, set KUBECONFIG, or run in a pod");
    }
    if (rc < 0) return -1;
    if (o->token_file) {
        if (access(o->token_file, R_OK) != 0) {
            err_set(err, WC_EINVAL, "--token-file %s: %s", o->token_file, strerror(errno));
            kube_config_free(out);
            return -1;
        }
        if (out->token) secure_zero(out->token, strlen(out->token));
        free(out->token);
        out->token = NULL;
        free(out->token_file);
        out->token_file = xstrdup(o->token_file);
    }
    if (o->ca_file && file_read_all(o->ca_file, KUBE_PEM_MAX_BYTES, &out->ca_pem, err) < 0) {
        err_wrap(err, "--ca-file");
        kube_config_free(out);
        return -1;
    }
    return 0;
}
