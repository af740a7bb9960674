/*
 * token.c — the TokenRequest API: a short-lived token for a ServiceAccount
 * (serviceaccounts/<sa>/token), for a workload that cannot mount a projected one. The
 * token is a credential: registered with the log redactor at once, wiped from the response.
 */

typedef struct kube_token {
    char *token;         /* secret: wipe with worker_token_free */
    int64_t expires;     /* Unix seconds */
} kube_token;

static void kube_token_free(kube_token *t) {
    if (t->token) secure_zero(t->token, strlen(t->token));
    free(t->token);
    t->token = NULL;
}

/* The TokenRequest: one audience, the lifetime asked for. */
static void kube_token_request_render(buf *body, const char *audience, int64_t ttl_s) {
    cJSON *tr = json_object();
    json_add_str(tr, "apiVersion", "authentication.k8s.io/v1");
    json_add_str(tr, "kind", "TokenRequest");
    cJSON *spec = json_add_object(tr, "spec");
    json_push_str(json_add_array(spec, "audiences"), audience);
    json_add_int(spec, "expirationSeconds", ttl_s);
    json_render_free(body, tr);
}

/* TokenRequest for the Worker's ServiceAccount (serviceaccounts/<sa>/token). */
static int kube_token_request(kube_client *kc, const char *ns, const char *sa, const char *audience, int64_t ttl_s,
                         kube_token *out, wc_err *err) {
    memset(out, 0, sizeof *out);
    buf body = BUF_INIT;
    kube_token_request_render(&body, audience, ttl_s);
    cJSON *resp = NULL;
    int rc = kube_create(kc, &KUBE_SERVICEACCOUNTS, ns, sa, "token", body.data, &resp, err);
    buf_free(&body);
    if (rc < 0) return err_wrap(err, "TokenRequest for ServiceAccount %s", sa);
    const char *tok = json_str_at(resp, "status.token");
    const char *exp = json_str_at(resp, "status.expirationTimestamp");
    if (!tok || !*tok) {
        cJSON_Delete(resp);
        return err_set(err, WC_EPARSE, "TokenRequest for ServiceAccount %s: no token in the response", sa);
    }
    log_register_secret(tok);
    out->token = xstrdup(tok);
    out->expires = wc_rfc3339_parse(exp);
    if (!out->expires) out->expires = (int64_t)time(NULL) + ttl_s;
    secure_zero(json_get(json_get(resp, "status"), "token")->valuestring,
                strlen(tok));
    cJSON_Delete(resp);
    return 0;
}
