/*
 * deps.c — worker-deps: what a sandbox Worker needs before its claim may exist (SPEC 5, 7).
 *
 *   s3_*        a small S3 client: PUT/HEAD/GET/DELETE, path-style, SigV4 signed by libcurl,
 *               TLS verified, retried with backoff on 5xx and transport errors; error messages
 *               carry the S3 error code and message, never a credential.
 *   token_*     the TokenRequest API for the Worker's ServiceAccount.
 *   deps_*      the three objects under <prefix>workers-deps/<namespace>/<workerName>/:
 *               token/token, env/env, data/.keep — each written, then verified with HEAD.
 *
 * Every object carries, as object metadata, the Worker it belongs to (x-amz-meta-hiclaw-owner-
 * uid, -namespace, -name), so a Worker never writes or deletes another Worker's objects: two
 * Workers of one workerName in a namespace, or two installs sharing a bucket, would otherwise
 * share env files, tokens and data. The namespace in the key keeps namespaces apart by
 * construction. The token object carries its lifetime (x-amz-meta-hiclaw-issued and -expires,
 * Unix seconds) and env/env the hash of its content (x-amz-meta-hiclaw-env-hash), so the
 * reconciler decides refreshes and rewrites with a HEAD, never reading a credential back.
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
    buf url = BUF_INIT;
    s3_url(s, key, &url);
    char hash[65], hdr_hash[100];
    sha256_hex(body ? body : "", body ? len : 0, hash);
    /* curl 7.88 signs with this header when present; MinIO and AWS require it for S3. */
    snprintf(hdr_hash, sizeof hdr_hash, "x-amz-content-sha256: %s", hash);
    const char *headers[12];
    size_t nh = 0;
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

static int s3_get(s3_client *s, const char *key, buf *out, wc_err *err) {
    http_response resp;
    long st = s3_do(s, "GET", key, NULL, 0, NULL, 0, &resp, err);
    int rc = st >= 200 && st < 300 ? 0 : -1;
    if (rc == 0) buf_append(out, resp.body.data ? resp.body.data : "", resp.body.len);
    buf_free_secret(&resp.body);
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

/* ---- the Worker's token ---- */

typedef struct worker_token {
    char *token;         /* secret: wipe with worker_token_free */
    int64_t expires;     /* Unix seconds */
} worker_token;

static void worker_token_free(worker_token *t) {
    if (t->token) secure_zero(t->token, strlen(t->token));
    free(t->token);
    t->token = NULL;
}

/* Parses "2026-11-24T23:08:32Z" into Unix seconds. */
static int64_t rfc3339_to_unix(const char *s) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!s || !strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) return 0;
    return (int64_t)timegm(&tm);
}

/* TokenRequest for the Worker's ServiceAccount (serviceaccounts/<sa>/token). */
static int token_request(kube_client *kc, const char *ns, const char *sa, const char *audience, int64_t ttl_s,
                         worker_token *out, wc_err *err) {
    memset(out, 0, sizeof *out);
    buf body = BUF_INIT;
    buf_puts(&body, "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"TokenRequest\",\"spec\":{\"audiences\":[");
    buf_put_json_string(&body, audience);
    buf_printf(&body, "],\"expirationSeconds\":%" PRId64 "}}", ttl_s);
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
    out->expires = rfc3339_to_unix(exp);
    if (!out->expires) out->expires = (int64_t)time(NULL) + ttl_s;
    secure_zero(json_get(json_get(resp, "status"), "token")->valuestring,
                strlen(tok));
    cJSON_Delete(resp);
    return 0;
}

/* ---- worker-deps objects ---- */

#define DEPS_META_EXPIRES "x-amz-meta-hiclaw-expires"
#define DEPS_META_ISSUED "x-amz-meta-hiclaw-issued"
#define DEPS_META_OWNER_UID "x-amz-meta-hiclaw-owner-uid"
#define DEPS_META_OWNER_NS "x-amz-meta-hiclaw-owner-namespace"
#define DEPS_META_OWNER_NAME "x-amz-meta-hiclaw-owner-name"
#define DEPS_META_ENV_HASH "x-amz-meta-hiclaw-env-hash"

typedef struct deps_keys {
    char token[600], env[600], data[600];
} deps_keys;

/* The directory (key prefix, ending in '/') of a Worker's objects. The namespace is part of it:
 * two namespaces never share keys, whatever their Workers' workerNames. */
static void deps_dir_for(const char *prefix, const char *ns, const char *worker_name, char *out, size_t n) {
    snprintf(out, n, "%sworkers-deps/%s/%s/", prefix ? prefix : "", ns, worker_name);
}

static void deps_keys_in(const char *dir, deps_keys *k) {
    snprintf(k->token, sizeof k->token, "%stoken/token", dir);
    snprintf(k->env, sizeof k->env, "%senv/env", dir);
    snprintf(k->data, sizeof k->data, "%sdata/.keep", dir);
}

/* Whose an object is, from its metadata (a HEAD). Empty strings when not recorded. */
typedef struct deps_owner {
    char uid[80], ns[80], name[260];
} deps_owner;

static void deps_owner_read(const http_response *h, deps_owner *o) {
    memset(o, 0, sizeof *o);
    http_response_header(h, DEPS_META_OWNER_UID, o->uid, sizeof o->uid);
    http_response_header(h, DEPS_META_OWNER_NS, o->ns, sizeof o->ns);
    http_response_header(h, DEPS_META_OWNER_NAME, o->name, sizeof o->name);
}

/* May the Worker (uid) write or delete an object owned by `o`? Pure. Returns 1 when it may —
 * the object is its own, or records no owner — else 0 with why filled. An object without owner
 * metadata was written before ownership was recorded (an older version) and is adopted by the
 * Worker whose key it is: the key holds the namespace and workerName, so only a Worker of that
 * namespace and workerName ever gets here; its next write records it as the owner. */
static int deps_owner_allows(const deps_owner *o, const char *uid, const char *bucket, const char *key, char *why,
                             size_t n) {
    if (!o->uid[0] || (uid && strcmp(o->uid, uid) == 0)) return 1;
    snprintf(why, n, "worker-deps object s3://%s/%s belongs to Worker %s/%s (UID %s); it is left alone: give this "
                     "Worker another spec.workerName, or remove the other Worker",
             bucket, key, o->ns[0] ? o->ns : "?", o->name[0] ? o->name : "?", o->uid);
    return 0;
}

/* The owner header lines of every PUT. */
typedef struct deps_owner_meta {
    char uid[120], ns[120], name[300];
} deps_owner_meta;

static void deps_owner_meta_for(const char *uid, const char *ns, const char *name, deps_owner_meta *m) {
    snprintf(m->uid, sizeof m->uid, DEPS_META_OWNER_UID ": %s", uid ? uid : "");
    snprintf(m->ns, sizeof m->ns, DEPS_META_OWNER_NS ": %s", ns ? ns : "");
    snprintf(m->name, sizeof m->name, DEPS_META_OWNER_NAME ": %s", name ? name : "");
}

/* Checks an object's owner before this Worker writes or deletes it: 0 may (absent, own, or
 * unowned), -1 with err (WC_ECONFLICT when another Worker owns it). */
static int deps_check_owner(s3_client *s, const char *key, const char *uid, wc_err *err) {
    http_response h;
    int rc = s3_head(s, key, NULL, &h, err);
    if (rc < 0) return -1;
    if (rc == 1) return 0;
    deps_owner o;
    deps_owner_read(&h, &o);
    http_response_free(&h);
    char why[700];
    if (deps_owner_allows(&o, uid, s->bucket, key, why, sizeof why)) return 0;
    err_set(err, WC_ECONFLICT, "%s", why);
    return -1;
}

/* Writes an object and proves it is there (HEAD, same size) before anyone relies on it. */
static int deps_put_verified(s3_client *s, const char *key, const void *body, size_t len, const char *const *meta,
                             size_t nmeta, wc_err *err) {
    if (s3_put(s, key, body, len, meta, nmeta, err) < 0) return -1;
    long long size = -1;
    int h = s3_head(s, key, &size, NULL, err);
    if (h < 0) return -1;
    if (h == 1 || size != (long long)len)
        return err_set(err, WC_EIO, "verify s3://%s/%s: object %s after PUT", s->bucket, key, h == 1 ? "missing" : "has the wrong size");
    return 0;
}

/* deps_put_verified for one of a Worker's objects: refused (WC_ECONFLICT) when another Worker
 * owns it; the owner recorded with the object, plus the extra metadata lines. S3 has no
 * portable conditional PUT, so check-then-write leaves a window as wide as one HEAD; two
 * controllers racing for one key within it is the one case this cannot stop. */
static int deps_put_owned(s3_client *s, const char *key, const void *body, size_t len, const deps_owner_meta *own,
                          const char *const *extra, size_t nextra, const char *uid, wc_err *err) {
    if (deps_check_owner(s, key, uid, err) < 0) return -1;
    const char *meta[8];
    size_t n = 0;
    meta[n++] = own->uid;
    meta[n++] = own->ns;
    meta[n++] = own->name;
    for (size_t i = 0; i < nextra && n < 8; i++) meta[n++] = extra[i];
    return deps_put_verified(s, key, body, len, meta, n, err);
}

/* Deletes one of a Worker's objects unless another Worker owns it: 0 deleted or absent, 1 left
 * alone (another's: *why filled), -1 error. */
static int deps_delete_owned(s3_client *s, const char *key, const char *uid, char *why, size_t n, wc_err *err) {
    http_response h;
    int rc = s3_head(s, key, NULL, &h, err);
    if (rc < 0) return -1;
    if (rc == 1) return 0;
    deps_owner o;
    deps_owner_read(&h, &o);
    http_response_free(&h);
    if (!deps_owner_allows(&o, uid, s->bucket, key, why, n)) return 1;
    return s3_delete(s, key, err);
}

static int deps_write_token(s3_client *s, const deps_keys *k, const worker_token *t, const deps_owner_meta *own,
                            const char *uid, wc_err *err) {
    char issued[64], expires[64];
    snprintf(issued, sizeof issued, DEPS_META_ISSUED ": %lld", (long long)time(NULL));
    snprintf(expires, sizeof expires, DEPS_META_EXPIRES ": %lld", (long long)t->expires);
    const char *meta[2] = {issued, expires};
    return deps_put_owned(s, k->token, t->token, strlen(t->token), own, meta, 2, uid, err);
}

/* The hash recorded with env/env: the spec hasher over the file's bytes (SHA-256, 16 hex
 * digits — the file holds credentials; the digest gives nothing of them back). */
static void deps_env_hash(const buf *file, char out[17]) {
    spec_hasher h;
    spec_hash_init(&h);
    spec_hash_field(&h, "env-file", buf_cstr(file));
    spec_hash_final(&h, out);
}

static int deps_write_env(s3_client *s, const deps_keys *k, const buf *file, const deps_owner_meta *own,
                          const char *uid, wc_err *err) {
    char hash[17], line[80];
    deps_env_hash(file, hash);
    snprintf(line, sizeof line, DEPS_META_ENV_HASH ": %s", hash);
    const char *meta[1] = {line};
    return deps_put_owned(s, k->env, file->data ? file->data : "", file->len, own, meta, 1, uid, err);
}

/* What one HEAD says about a Worker's object: present, its owner, and the metadata value asked
 * for (a token's lifetime, env's hash). */
typedef struct deps_head {
    int present;
    deps_owner owner;
    int64_t issued, expires;   /* token */
    char env_hash[40];         /* env: "" when not recorded */
} deps_head;

/* 0 read (present or not), -1 error. */
static int deps_head_read(s3_client *s, const char *key, deps_head *out, wc_err *err) {
    memset(out, 0, sizeof *out);
    http_response h;
    int rc = s3_head(s, key, NULL, &h, err);
    if (rc < 0) return -1;
    if (rc == 1) return 0;
    out->present = 1;
    deps_owner_read(&h, &out->owner);
    char v[64];
    out->issued = http_response_header(&h, DEPS_META_ISSUED, v, sizeof v) ? atoll(v) : 0;
    out->expires = http_response_header(&h, DEPS_META_EXPIRES, v, sizeof v) ? atoll(v) : 0;
    http_response_header(&h, DEPS_META_ENV_HASH, out->env_hash, sizeof out->env_hash);
    http_response_free(&h);
    return 0;
}

/* When to write a new token: once less than a third of its lifetime remains. Pure. */
static int64_t deps_token_refresh_in_ms(int64_t issued, int64_t expires, int64_t now) {
    if (expires <= 0 || issued <= 0 || expires <= issued) return 0; /* unknown lifetime: refresh now */
    int64_t refresh_at = expires - (expires - issued) / 3;
    return refresh_at <= now ? 0 : (refresh_at - now) * 1000;
}
