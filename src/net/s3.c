/*
 * s3.c — a small S3 client for the worker-deps objects: PUT, HEAD, DELETE, path-style, signed
 * with AWS SigV4 by libcurl (CURLOPT_AWS_SIGV4), TLS verified, retried with backoff on 5xx and
 * transport errors. Error messages carry the S3 error code and message, never a credential:
 * the secret key is registered with the log redactor the moment the client holds it.
 */

typedef struct s3_client {
    http_client *http;
    char *endpoint;     /* scheme://host[:port], no trailing slash */
    char *bucket;
    char *access_key;
    char *secret_key;
    char sigv4[160];    /* "aws:amz:<region>:s3" */
    int attempts;       /* per operation, for 5xx and transport errors */
    int64_t backoff_ms; /* first retry delay, doubled each time */
    long timeout_ms;
    const atomic_int *cancel; /* shared with the Kubernetes client: shutdown aborts S3 calls too */
    int read_only;      /* refuse every request but HEAD and GET, before it is sent (explain) */
} s3_client;

static void s3_client_free(s3_client *s) {
    if (!s) return;
    http_client_free(s->http);
    free(s->endpoint);
    free(s->bucket);
    if (s->access_key) secure_zero(s->access_key, strlen(s->access_key));
    if (s->secret_key) secure_zero(s->secret_key, strlen(s->secret_key));
    free(s->access_key);
    free(s->secret_key);
    free(s);
}

/* ca_pem NULL: the endpoint must be plain http (allowed by configuration only with
 * HICLAW_WORKER_DEPS_ALLOW_PLAINTEXT_HTTP), or its CA is unknown to a scratch image. */
static s3_client *s3_client_new(const char *endpoint, const char *bucket, const char *region, const char *access_key,
                                const char *secret_key, const char *ca_pem, wc_err *err) {
    if (strncmp(endpoint, "https://", 8) == 0 && !ca_pem) {
        err_set(err, WC_EINVAL, "worker-deps endpoint %s is https but no CA is configured (HICLAW_WORKER_DEPS_CA_FILE)", endpoint);
        return NULL;
    }
    http_client_options o;
    memset(&o, 0, sizeof o);
    o.ca_pem = ca_pem;
    /* plain http has no TLS to verify: without this the http client would ask for a CA */
    o.insecure_skip_verify = strncmp(endpoint, "http://", 7) == 0;
    o.pool_max = 4;
    http_client *h = http_client_new(&o, err);
    if (!h) return NULL;
    s3_client *s = xcalloc(1, sizeof *s);
    s->http = h;
    s->endpoint = xstrdup(endpoint);
    size_t n = strlen(s->endpoint);
    while (n && s->endpoint[n - 1] == '/') s->endpoint[--n] = '\0';
    s->bucket = xstrdup(bucket);
    s->access_key = xstrdup(access_key);
    s->secret_key = xstrdup(secret_key);
    log_register_secret(secret_key);
    snprintf(s->sigv4, sizeof s->sigv4, "aws:amz:%s:s3", region && *region ? region : "us-east-1");
    s->attempts = 3;
    s->backoff_ms = 200;
    s->timeout_ms = 15000;
    return s;
}

/* Path-style URL; keys are restricted to a safe alphabet by validation, but encode anyway. */
static void s3_url(const s3_client *s, const char *key, buf *out) {
    static const char hex[] = "0123456789ABCDEF";
    buf_printf(out, "%s/%s/", s->endpoint, s->bucket);
    for (const char *p = key; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') buf_putc(out, (char)c);
        else {
            char e[3] = {'%', hex[c >> 4], hex[c & 15]};
            buf_append(out, e, 3);
        }
    }
}

static void sha256_hex(const void *data, size_t n, char out[65]) {
    br_sha256_context c;
    unsigned char d[32];
    static const char hex[] = "0123456789abcdef";
    br_sha256_init(&c);
    br_sha256_update(&c, data, n);
    br_sha256_out(&c, d);
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[64] = '\0';
}

/* Pulls <Code> and <Message> out of an S3 XML error body. */
static void s3_error_detail(const buf *body, char *out, size_t outsz) {
    const char *b = buf_cstr(body);
    const char *c1 = strstr(b, "<Code>"), *c2 = c1 ? strstr(c1, "</Code>") : NULL;
    const char *m1 = strstr(b, "<Message>"), *m2 = m1 ? strstr(m1, "</Message>") : NULL;
    if (c1 && c2) {
        snprintf(out, outsz, "%.*s%s%.*s", (int)(c2 - c1 - 6), c1 + 6, m1 && m2 ? ": " : "",
                 m1 && m2 ? (int)(m2 - m1 - 9) : 0, m1 && m2 ? m1 + 9 : "");
    } else {
        out[0] = '\0';
    }
}

/* One S3 request with retries. Returns the HTTP status (>= 100) of the last attempt, or -1
 * with err set when no response came. 4xx is not retried: it will not get better. */
static long s3_do(s3_client *s, const char *method, const char *key, const void *body, size_t len,
                  const char *const *extra, size_t nextra, http_response *resp, wc_err *err) {
    http_response_init(resp); /* callers free it whatever happened */
    if (s->read_only && strcmp(method, "HEAD") != 0 && strcmp(method, "GET") != 0) {
        err_set(err, WC_EINVAL, "read-only client: refusing %s s3://%s/%s", method, s->bucket, key);
        return -1;
    }
    buf url = BUF_INIT;
    s3_url(s, key, &url);
    char hash[65], hdr_hash[100];
    sha256_hex(body ? body : "", body ? len : 0, hash);
    /* curl 7.88 signs with this header when present; MinIO and AWS require it for S3. */
    snprintf(hdr_hash, sizeof hdr_hash, "x-amz-content-sha256: %s", hash);
    const char *headers[12];
    size_t nh = 0;
    assert(nextra < sizeof headers / sizeof *headers - 1); /* the hash header plus every extra one */
    headers[nh++] = hdr_hash;
    for (size_t i = 0; i < nextra && nh < 11; i++) headers[nh++] = extra[i];
    http_request req;
    memset(&req, 0, sizeof req);
    req.method = method;
    req.url = url.data;
    req.headers = headers;
    req.nheaders = nh;
    req.body = body;
    req.body_len = len;
    req.timeout_ms = s->timeout_ms;
    req.cancel = s->cancel;
    req.max_body = 1u << 20;
    req.aws_sigv4 = s->sigv4;
    req.aws_access_key = s->access_key;
    req.aws_secret_key = s->secret_key;
    long status = -1;
    int64_t delay = s->backoff_ms;
    for (int attempt = 1; attempt <= s->attempts; attempt++) {
        http_response_init(resp);
        if (http_do(s->http, &req, resp, err) == 0) {
            status = resp->status;
            if (status < 500) break;
        } else {
            status = -1;
        }
        if (attempt < s->attempts && !(s->cancel && atomic_load(s->cancel))) {
            wc_sleep_ms(delay);
            delay *= 2;
            http_response_free(resp);
        }
    }
    if (status >= 300 && !(status == 404 && (strcmp(method, "HEAD") == 0 || strcmp(method, "DELETE") == 0))) {
        char detail[512];
        s3_error_detail(&resp->body, detail, sizeof detail);
        char *clean = log_redact(detail);
        err_set(err, WC_EHTTP, "%s s3://%s/%s: %ld%s%s", method, s->bucket, key, status, clean[0] ? " " : "", clean);
        err->http_status = (int)status;
        free(clean);
    } else if (status < 0) {
        err_wrap(err, "%s s3://%s/%s", method, s->bucket, key);
    }
    buf_free(&url);
    return status;
}

static int s3_put(s3_client *s, const char *key, const void *body, size_t len, const char *const *meta, size_t nmeta,
                  wc_err *err) {
    http_response resp;
    long st = s3_do(s, "PUT", key, body, len, meta, nmeta, &resp, err);
    http_response_free(&resp);
    return st >= 200 && st < 300 ? 0 : -1;
}

/* HEAD: 0 exists (size, and the response headers when asked), 1 absent, -1 error. */
static int s3_head(s3_client *s, const char *key, long long *size, http_response *headers_out, wc_err *err) {
    http_response resp;
    long st = s3_do(s, "HEAD", key, NULL, 0, NULL, 0, &resp, err);
    int rc;
    if (st == 404) rc = 1;
    else if (st >= 200 && st < 300) {
        rc = 0;
        char v[64];
        if (size) *size = http_response_header(&resp, "Content-Length", v, sizeof v) ? atoll(v) : -1;
        if (headers_out) {
            *headers_out = resp;
            return rc; /* the caller frees */
        }
    } else rc = -1;
    http_response_free(&resp);
    return rc;
}

/* DELETE: absent already is success. */
static int s3_delete(s3_client *s, const char *key, wc_err *err) {
    http_response resp;
    long st = s3_do(s, "DELETE", key, NULL, 0, NULL, 0, &resp, err);
    http_response_free(&resp);
    return (st >= 200 && st < 300) || st == 404 ? 0 : -1;
}
