/*
 * client.c — the Kubernetes REST client: paths, authentication, verbs, API errors.
 *
 * Thin on purpose: it turns (resource, namespace, name, verb, body) into one HTTP request with
 * the right headers, and an error response into a wc_err carrying the HTTP status plus the
 * Status object's reason and message ("create pods/hiclaw-worker-a: 409 AlreadyExists: ...").
 * Callers decide what a status means (404 on delete is success, 409 is a requeue, 429 waits
 * Retry-After): that is policy, and it lives above.
 *
 * Bearer tokens from a file are re-read when the file changes (bound ServiceAccount tokens are
 * rotated by the kubelet every hour or so); a stat() per request is the whole cost.
 */

typedef struct kube_resource {
    const char *group;   /* "" for the core API */
    const char *version;
    const char *plural;
    const char *kind;
    int namespaced;
} kube_resource;

static const kube_resource KUBE_PODS = {"", "v1", "pods", "Pod", 1};
static const kube_resource KUBE_SERVICEACCOUNTS = {"", "v1", "serviceaccounts", "ServiceAccount", 1};
static const kube_resource KUBE_SECRETS = {"", "v1", "secrets", "Secret", 1};
static const kube_resource KUBE_NAMESPACES = {"", "v1", "namespaces", "Namespace", 0};
static const kube_resource KUBE_EVENTS = {"events.k8s.io", "v1", "events", "Event", 1};
static const kube_resource KUBE_LEASES = {"coordination.k8s.io", "v1", "leases", "Lease", 1};
static const kube_resource KUBE_CRDS = {"apiextensions.k8s.io", "v1", "customresourcedefinitions",
                                        "CustomResourceDefinition", 0};
static const kube_resource KUBE_WORKERS = {"hiclaw.io", "v1beta1", "workers", "Worker", 1};
static const kube_resource KUBE_SANDBOXCLAIMS = {"agents.kruise.io", "v1alpha1", "sandboxclaims", "SandboxClaim", 1};
static const kube_resource KUBE_SANDBOXES = {"agents.kruise.io", "v1alpha1", "sandboxes", "Sandbox", 1};
static const kube_resource KUBE_SANDBOXSETS = {"agents.kruise.io", "v1alpha1", "sandboxsets", "SandboxSet", 1};
/* kubernetes-sigs agent-sandbox: the same plural as OpenKruise's, another group (always name both). */
static const kube_resource KUBE_AGENT_SANDBOXES = {"agents.x-k8s.io", "v1beta1", "sandboxes", "Sandbox", 1};

typedef enum kube_patch_type {
    KUBE_PATCH_MERGE,     /* application/merge-patch+json */
    KUBE_PATCH_JSON,      /* application/json-patch+json */
    KUBE_PATCH_STRATEGIC, /* application/strategic-merge-patch+json (built-in types only) */
    KUBE_PATCH_APPLY,     /* application/apply-patch+yaml: server-side apply */
} kube_patch_type;

typedef struct kube_client {
    http_client *http;
    char *server;
    char *static_token;
    char *token_file;
    char *namespace;      /* default namespace from the config, may be NULL */
    pthread_mutex_t token_mu;
    char *file_token;     /* last token read from token_file */
    struct timespec token_mtime;
    off_t token_size;
    atomic_int cancel;    /* set at shutdown, by kube_client_cancel: aborts every request in flight */
    atomic_long requests; /* all requests, for rest_client_requests_total */
    atomic_long writes;   /* non-GET requests: the steady-state "no writes" check counts these */
    metrics_rest rest;    /* rest_client_requests_total */
    atomic_long timeout_ms; /* default per-request timeout; shortened at shutdown */
    int read_only;        /* refuse every request but GET, before it leaves the process (explain) */
} kube_client;

/* Every request of this client in flight ends now, and every new one is refused — the S3 client
 * shares the flag: the flag set, then every transfer woken to see it. */
static void kube_client_cancel(kube_client *c) {
    if (!c) return;
    atomic_store(&c->cancel, 1);
    http_wake_all();
}

static void kube_client_free(kube_client *c) {
    if (!c) return;
    http_client_free(c->http);
    free(c->server);
    if (c->static_token) secure_zero(c->static_token, strlen(c->static_token));
    free(c->static_token);
    free(c->token_file);
    free(c->namespace);
    if (c->file_token) secure_zero(c->file_token, strlen(c->file_token));
    free(c->file_token);
    pthread_mutex_destroy(&c->token_mu);
    free(c);
}

static kube_client *kube_client_new(const kube_config *cfg, wc_err *err) {
    http_client_options o;
    memset(&o, 0, sizeof o);
    o.ca_pem = cfg->ca_pem.len ? cfg->ca_pem.data : NULL;
    o.ca_pem_len = cfg->ca_pem.len;
    o.client_cert_pem = cfg->client_cert_pem.len ? cfg->client_cert_pem.data : NULL;
    o.client_cert_pem_len = cfg->client_cert_pem.len;
    o.client_key_pem = cfg->client_key_pem.len ? cfg->client_key_pem.data : NULL;
    o.client_key_pem_len = cfg->client_key_pem.len;
    o.insecure_skip_verify = cfg->insecure_skip_verify;
    const char *resolve[1] = {cfg->resolve};
    if (cfg->resolve) {
        o.resolve = resolve;
        o.nresolve = 1;
    }
    if (strncmp(cfg->server, "https://", 8) == 0 && !o.ca_pem && !o.insecure_skip_verify)
        return err_set(err, WC_EINVAL, "%s: an https server needs a CA (certificate-authority, --ca-file or ca.crt)", cfg->server),
               NULL;
    http_client *h = http_client_new(&o, err);
    if (!h) return NULL;
    kube_client *c = xcalloc(1, sizeof *c);
    c->http = h;
    c->server = xstrdup(cfg->server);
    c->static_token = xstrdup(cfg->token);
    c->token_file = xstrdup(cfg->token_file);
    c->namespace = xstrdup(cfg->namespace);
    atomic_init(&c->timeout_ms, 30000);
    pthread_mutex_init(&c->token_mu, NULL);
    pthread_mutex_init(&c->rest.mu, NULL);
    return c;
}

/* Returns the bearer token to send (copied into out), re-reading the token file when its
 * mtime or size changed. An unreadable file keeps the last good token: a kubelet rotation
 * writes a new file atomically, so a read failure is transient. */
static int kube_client_token(kube_client *c, buf *out, wc_err *err) {
    buf_reset(out);
    if (c->static_token) return buf_puts(out, c->static_token), 0;
    if (!c->token_file) return 0;
    pthread_mutex_lock(&c->token_mu);
    struct stat st;
    int rc = 0;
    if (stat(c->token_file, &st) == 0 &&
        (!c->file_token || st.st_mtim.tv_sec != c->token_mtime.tv_sec ||
         st.st_mtim.tv_nsec != c->token_mtime.tv_nsec || st.st_size != c->token_size)) {
        buf t = BUF_INIT;
        if (file_read_all(c->token_file, 64 * 1024, &t, err) == 0) {
            while (t.len && isspace((unsigned char)t.data[t.len - 1])) t.data[--t.len] = '\0';
            if (c->file_token) secure_zero(c->file_token, strlen(c->file_token));
            free(c->file_token);
            c->file_token = buf_steal(&t);
            log_register_secret(c->file_token);
            c->token_mtime = st.st_mtim;
            c->token_size = st.st_size;
        } else if (!c->file_token) {
            rc = -1;
        }
        buf_free_secret(&t);
    } else if (!c->file_token) {
        rc = err_set(err, WC_EIO, "token file %s: %s", c->token_file, strerror(errno));
    }
    if (rc == 0 && c->file_token) buf_puts(out, c->file_token);
    pthread_mutex_unlock(&c->token_mu);
    return rc;
}

/* Percent-encodes a query value (label selectors contain '=', ',', '!'). */
static void kube_put_query_value(buf *b, const char *s) {
    static const char hex[] = "0123456789ABCDEF";
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') buf_putc(b, (char)ch);
        else {
            char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
            buf_append(b, e, 3);
        }
    }
}

/* Appends "&key=value" (or "?key=value" for the first parameter) with the value encoded. */
static void kube_query_add(buf *path, const char *key, const char *value) {
    if (!value) return;
    buf_putc(path, strchr(buf_cstr(path), '?') ? '&' : '?');
    buf_puts(path, key);
    buf_putc(path, '=');
    kube_put_query_value(path, value);
}

/* Builds the API path of a collection or object: /api/v1/namespaces/ns/pods/name/status. */
static void kube_path(buf *out, const kube_resource *r, const char *ns, const char *name, const char *sub) {
    buf_reset(out);
    if (r->group[0]) buf_printf(out, "/apis/%s/%s", r->group, r->version);
    else buf_printf(out, "/api/%s", r->version);
    if (r->namespaced && ns) buf_printf(out, "/namespaces/%s", ns);
    buf_printf(out, "/%s", r->plural);
    if (name) buf_printf(out, "/%s", name);
    if (sub) buf_printf(out, "/%s", sub);
}

/* Turns an error response into err: "VERB path: CODE Reason: message". The Status message is
 * server text and may quote request content, so it passes through the redactor. */
static int kube_error_from_response(const char *method, const char *path, const http_response *resp, wc_err *err) {
    const char *reason = "", *message = "";
    cJSON *st = resp->body.len ? cJSON_ParseWithLength(resp->body.data, resp->body.len) : NULL;
    if (st && !cJSON_IsObject(st)) { /* "404 page not found" parses as the number 404 */
        cJSON_Delete(st);
        st = NULL;
    }
    if (st) {
        const cJSON *r = json_get(st, "reason");
        const cJSON *m = json_get(st, "message");
        if (cJSON_IsString(r)) reason = r->valuestring;
        if (cJSON_IsString(m)) message = m->valuestring;
    }
    char *clean = log_redact(message[0] ? message : (st ? "" : buf_cstr(&resp->body)));
    /* reason is server text too (a proxy may put anything there): scrubbed and kept short. */
    char *creason = log_redact(reason);
    if (strlen(creason) > 64) creason[64] = '\0';
    size_t cl = strlen(clean);
    while (cl && isspace((unsigned char)clean[cl - 1])) clean[--cl] = '\0';
    /* Keep bodies of non-Status errors short: a proxy's HTML page is not a message. */
    if (!st && strlen(clean) > 200) clean[200] = '\0';
    err_set(err, WC_EHTTP, "%s %s: %ld%s%s%s%s", method, path, resp->status, creason[0] ? " " : "", creason,
            clean[0] ? ": " : "", clean);
    err->http_status = (int)resp->status;
    err->retry_after_s = resp->retry_after_s;
    free(clean);
    free(creason);
    cJSON_Delete(st);
    return -1;
}

typedef struct kube_call {
    const char *method;
    const char *path;          /* path + query, from kube_path */
    const char *content_type;  /* for the body */
    const char *body;
    size_t body_len;
    long timeout_ms;           /* 0 = client default */
    http_data_fn on_data;      /* streaming (watch) */
    void *ud;
    size_t max_body;
} kube_call;

/* One request. Returns 0 on 2xx; -1 with err (WC_EHTTP + http_status for an error status, or
 * the transport error). resp holds the body and Retry-After either way. */
static int kube_do(kube_client *c, const kube_call *call, http_response *resp, wc_err *err) {
    /* A read-only client (explain) cannot write, whatever code above it asks: the one place
     * every request passes through says no, so no write can reach the API server by mistake. */
    if (c->read_only && strcmp(call->method, "GET") != 0)
        return err_set(err, WC_EINVAL, "read-only client: refusing %s %s", call->method, call->path);
    buf url = BUF_INIT, auth = BUF_INIT, tok = BUF_INIT;
    const char *headers[4];
    size_t nh = 0;
    buf_printf(&url, "%s%s", c->server, call->path);
    if (kube_client_token(c, &tok, err) < 0) {
        buf_free(&url);
        return -1;
    }
    if (tok.len) {
        buf_printf(&auth, "Authorization: Bearer %s", buf_cstr(&tok));
        headers[nh++] = auth.data;
    }
    headers[nh++] = "Accept: application/json";
    char ct[128];
    if (call->content_type) {
        snprintf(ct, sizeof ct, "Content-Type: %s", call->content_type);
        headers[nh++] = ct;
    }
    http_request req;
    memset(&req, 0, sizeof req);
    req.method = call->method;
    req.url = url.data;
    req.headers = headers;
    req.nheaders = nh;
    req.body = call->body;
    req.body_len = call->body_len;
    req.timeout_ms = call->timeout_ms ? call->timeout_ms : atomic_load(&c->timeout_ms);
    req.on_data = call->on_data;
    req.ud = call->ud;
    req.max_body = call->max_body;
    req.cancel = &c->cancel;
    atomic_fetch_add(&c->requests, 1);
    if (strcmp(call->method, "GET") != 0) atomic_fetch_add(&c->writes, 1);
    int rc = http_do(c->http, &req, resp, err);
    metrics_rest_count(&c->rest, call->method, rc == 0 ? (int)resp->status : 0);
    if (rc == 0 && (resp->status < 200 || resp->status > 299))
        rc = kube_error_from_response(call->method, call->path, resp, err);
    buf_free(&url);
    buf_free_secret(&auth);
    buf_free_secret(&tok);
    return rc;
}

/* Like kube_do, but parses the JSON response into *out (caller frees with cJSON_Delete). */
static int kube_do_json(kube_client *c, const kube_call *call, cJSON **out, wc_err *err) {
    http_response resp;
    http_response_init(&resp);
    int rc = kube_do(c, call, &resp, err);
    if (rc == 0 && out) {
        *out = cJSON_ParseWithLength(buf_cstr(&resp.body), resp.body.len);
        if (!*out) rc = err_set(err, WC_EPARSE, "%s %s: response is not JSON", call->method, call->path);
    }
    http_response_free(&resp);
    return rc;
}

static int kube_get(kube_client *c, const kube_resource *r, const char *ns, const char *name, const char *sub,
                    cJSON **out, wc_err *err) {
    buf path = BUF_INIT;
    kube_path(&path, r, ns, name, sub);
    kube_call call = {.method = "GET", .path = path.data};
    int rc = kube_do_json(c, &call, out, err);
    buf_free(&path);
    return rc;
}

/* One page of a list. selector/field_selector/cont may be NULL; limit 0 = server default. */
static int kube_list_page(kube_client *c, const kube_resource *r, const char *ns, const char *label_selector,
                          const char *field_selector, long limit, const char *cont, cJSON **out, wc_err *err) {
    buf path = BUF_INIT;
    kube_path(&path, r, ns, NULL, NULL);
    kube_query_add(&path, "labelSelector", label_selector);
    kube_query_add(&path, "fieldSelector", field_selector);
    char lim[24];
    if (limit > 0) {
        snprintf(lim, sizeof lim, "%ld", limit);
        kube_query_add(&path, "limit", lim);
    }
    if (cont && *cont) kube_query_add(&path, "continue", cont);
    kube_call call = {.method = "GET", .path = path.data, .max_body = 64u << 20};
    int rc = kube_do_json(c, &call, out, err);
    buf_free(&path);
    return rc;
}

/* Sends a JSON body (POST or PUT) to an object's or collection's path; *out (optional)
 * receives what the server answers. */
static int kube_send(kube_client *c, const char *method, const kube_resource *r, const char *ns, const char *name,
                     const char *sub, const char *json, cJSON **out, wc_err *err) {
    buf path = BUF_INIT;
    kube_path(&path, r, ns, name, sub);
    kube_call call = {.method = method, .path = path.data, .content_type = "application/json",
                      .body = json, .body_len = strlen(json)};
    int rc = kube_do_json(c, &call, out, err);
    buf_free(&path);
    return rc;
}

/* Creates an object from JSON text. *out (optional) receives the created object. */
static int kube_create(kube_client *c, const kube_resource *r, const char *ns, const char *sub_name,
                       const char *sub, const char *json, cJSON **out, wc_err *err) {
    return kube_send(c, "POST", r, ns, sub_name, sub, json, out, err);
}

/* DeleteOptions: uid and resource_version (optional) as preconditions, the propagation policy. */
static void kube_delete_options_render(buf *body, const char *uid, const char *resource_version, const char *propagation) {
    cJSON *o = json_object();
    json_add_str(o, "kind", "DeleteOptions");
    json_add_str(o, "apiVersion", "v1");
    if (uid || resource_version) {
        cJSON *pre = json_add_object(o, "preconditions");
        if (uid) json_add_str(pre, "uid", uid);
        if (resource_version) json_add_str(pre, "resourceVersion", resource_version);
    }
    if (propagation) json_add_str(o, "propagationPolicy", propagation);
    json_render_free(body, o);
}

/* Deletes an object. uid/resource_version (optional) become DeleteOptions preconditions, so a
 * delete never removes a newer object of the same name. propagation: NULL, "Background",
 * "Foreground" or "Orphan". A 404 is reported as an error: callers treat it as done. */
static int kube_delete(kube_client *c, const kube_resource *r, const char *ns, const char *name, const char *uid,
                       const char *resource_version, const char *propagation, wc_err *err) {
    buf path = BUF_INIT, body = BUF_INIT;
    kube_path(&path, r, ns, name, NULL);
    kube_delete_options_render(&body, uid, resource_version, propagation);
    kube_call call = {.method = "DELETE", .path = path.data, .content_type = "application/json",
                      .body = body.data, .body_len = body.len};
    int rc = kube_do_json(c, &call, NULL, err);
    buf_free(&path);
    buf_free(&body);
    return rc;
}

static const char *kube_patch_content_type(kube_patch_type t) {
    switch (t) {
    case KUBE_PATCH_MERGE: return "application/merge-patch+json";
    case KUBE_PATCH_JSON: return "application/json-patch+json";
    case KUBE_PATCH_STRATEGIC: return "application/strategic-merge-patch+json";
    case KUBE_PATCH_APPLY: return "application/apply-patch+yaml";
    }
    return "application/merge-patch+json";
}

/* Patches an object (sub: NULL or "status"). For server-side apply, field_manager is required
 * and force takes ownership of conflicting fields. dry_run asks the server to validate only. */
static int kube_patch(kube_client *c, const kube_resource *r, const char *ns, const char *name, const char *sub,
                      kube_patch_type type, const char *patch, const char *field_manager, int force, int dry_run,
                      cJSON **out, wc_err *err) {
    buf path = BUF_INIT;
    kube_path(&path, r, ns, name, sub);
    kube_query_add(&path, "fieldManager", field_manager);
    if (type == KUBE_PATCH_APPLY && force) kube_query_add(&path, "force", "true");
    if (dry_run) kube_query_add(&path, "dryRun", "All");
    kube_call call = {.method = "PATCH", .path = path.data, .content_type = kube_patch_content_type(type),
                      .body = patch, .body_len = strlen(patch)};
    int rc = kube_do_json(c, &call, out, err);
    buf_free(&path);
    return rc;
}

/* Helpers for callers that branch on the outcome. */
static int kube_err_is(const wc_err *err, int status) { return err->code == WC_EHTTP && err->http_status == status; }
static int kube_err_not_found(const wc_err *err) { return kube_err_is(err, 404); }
static int kube_err_conflict(const wc_err *err) { return kube_err_is(err, 409); }

/* Replaces an object (PUT). The body's metadata.resourceVersion makes it a compare-and-swap:
 * a stale write fails with 409 instead of overwriting someone else's change. */
static int kube_replace(kube_client *c, const kube_resource *r, const char *ns, const char *name, const char *sub,
                        const char *json, cJSON **out, wc_err *err) {
    return kube_send(c, "PUT", r, ns, name, sub, json, out, err);
}
