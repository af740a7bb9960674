/*
 * http.c — the HTTP client every upper layer talks through (Kubernetes API, S3).
 *
 * One http_client is created from options at start-up and shared by all threads. It owns what
 * must outlive connections (the CA bundle, the client identity, the CURLOPT_RESOLVE list) and a
 * bounded pool of idle transfer slots. A slot is a CURL easy handle plus a private CURLM multi
 * handle: in libcurl 7.88 the connection cache lives in the multi handle, so keeping the pair
 * together keeps keep-alive connections warm across requests, and curl_easy_reset() between
 * requests clears the options but not that cache.
 *
 * Why drive a multi handle instead of curl_easy_perform(): easy_perform polls with a fixed
 * 1000 ms timeout (lib/easy.c, easy_transfer), so a cancel flag checked only from the progress
 * callback can take a full second to be noticed on an idle watch. Our own loop sleeps in
 * curl_multi_poll and checks the flag itself after each wake; whoever sets a cancel flag calls
 * http_wake_all(), so shutdown and a lost lease abort every transfer at once. Until the response
 * headers are in, it polls every HTTP_POLL_MS (BearSSL's handshake does not always leave libcurl
 * a socket or a timer to wait on: a long poll there stalls it); once the body flows, every poll
 * that brought nothing doubles the next one, up to HTTP_IDLE_POLL_MS — an idle watch wakes a
 * few times a minute instead of ten times a second (four watches polled 40 times a second, most
 * of an idle controller's CPU), and any data still wakes the poll at once.
 *
 * HTTP error statuses are not errors here: http_do() fails only when no complete response was
 * received (network, TLS, timeout, size bound, cancel, callback abort). resp->status tells the
 * caller what the server said.
 *
 * Secrets: request headers (Authorization) and bodies never reach an error message or a log
 * line from this file; messages carry the method, the URL and curl's own error text.
 */

#define HTTP_DEFAULT_TIMEOUT_MS 30000L
#define HTTP_DEFAULT_CONNECT_TIMEOUT_MS 10000L
#define HTTP_DEFAULT_MAX_BODY ((size_t)16 << 20)
#define HTTP_DEFAULT_POOL_MAX 8
#define HTTP_POLL_MS 100
#define HTTP_IDLE_POLL_MS 10000

typedef int (*http_data_fn)(void *ud, const char *p, size_t n);
static void http_header_value(const char *v, size_t n, char *out, size_t outsz);

typedef struct http_client_options {
    const char *ca_pem;                  /* trust bundle (PEM, one or more certificates) */
    size_t ca_pem_len;                   /* 0 = strlen(ca_pem) */
    const char *client_cert_pem;         /* optional client certificate chain (PEM) */
    size_t client_cert_pem_len;
    const char *client_key_pem;          /* its private key (PEM: PKCS#8, PKCS#1 or SEC1) */
    size_t client_key_pem_len;
    int insecure_skip_verify;            /* only a kubeconfig may ask for this */
    const char *const *resolve;          /* "host:port:ip" entries (CURLOPT_RESOLVE) */
    size_t nresolve;
    size_t pool_max;                     /* idle slots kept; 0 = HTTP_DEFAULT_POOL_MAX */
    const char *user_agent;              /* NULL = "worker-controller/<version>" */
} http_client_options;

typedef struct http_slot {
    CURL *easy;
    CURLM *multi;
} http_slot;

typedef struct http_client {
    char *ca_pem;                        /* owned copy, referenced by CURLOPT_CAINFO_BLOB */
    size_t ca_pem_len;
    int insecure;
    tls_identity *identity;              /* NULL: no client certificate */
    struct curl_slist *resolve;
    char *user_agent;
    pthread_mutex_t mu;                  /* guards the idle pool */
    http_slot *idle;
    size_t nidle, pool_max;
} http_client;

typedef struct http_request {
    const char *method;                  /* NULL = "GET" */
    const char *url;
    const char *const *headers;          /* "Name: value"; may carry credentials */
    size_t nheaders;
    const char *body;                    /* may be NULL with body_len 0 */
    size_t body_len;
    long timeout_ms;                     /* whole transfer; 0 = HTTP_DEFAULT_TIMEOUT_MS */
    long connect_timeout_ms;             /* 0 = HTTP_DEFAULT_CONNECT_TIMEOUT_MS */
    size_t max_body;                     /* bound on resp->body; 0 = HTTP_DEFAULT_MAX_BODY
                                            (a streamed 2xx body is unbounded here) */
    http_data_fn on_data;                /* streaming: a 2xx body goes here, not into resp->body
                                            (an error status body is still buffered) */
    void *ud;
    const atomic_int *cancel;            /* non-zero aborts the transfer (set it, then http_wake_all()) */
    long low_speed_bytes;                /* abort if below this many bytes/s ... */
    long low_speed_time_s;               /* ... for this many seconds (0 = no guard) */
    const char *aws_sigv4;               /* e.g. "aws:amz:us-east-1:s3" (CURLOPT_AWS_SIGV4) */
    const char *aws_access_key;
    const char *aws_secret_key;          /* registered with log_register_secret() */
} http_request;

typedef struct http_response {
    long status;                         /* 0 if no response line was received */
    buf body;                            /* buffered mode only */
    char content_type[128];
    int retry_after_s;                   /* -1 when absent or unparseable */
    long new_connections;                /* CURLINFO_NUM_CONNECTS: 0 = a kept-alive connection */
    buf headers;                         /* the final response's header lines (bounded) */
    int cancelled;                       /* the cancel flag ended the transfer */
    int aborted;                         /* on_data returned non-zero */
} http_response;

static void http_response_init(http_response *r) {
    memset(r, 0, sizeof *r);
    r->retry_after_s = -1;
}

static void http_response_free(http_response *r) {
    buf_free(&r->body);
    buf_free(&r->headers);
}

#define HTTP_MAX_HEADER_BYTES (16u << 10)

/* Finds a response header (case-insensitive name) and copies its trimmed value into out.
 * Returns 1 when found, 0 otherwise. */
static int http_response_header(const http_response *r, const char *name, char *out, size_t outsz) {
    size_t nl = strlen(name);
    const char *p = buf_cstr(&r->headers);
    while (*p) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            http_header_value(p + nl + 1, len - nl - 1, out, outsz);
            return 1;
        }
        p += len + (eol ? 1 : 0);
    }
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The client */

/* CURLOPT_SSL_CTX_FUNCTION: see tls.c for why this is the only way to present a certificate. */
static CURLcode http_ssl_ctx_cb(CURL *curl, void *ssl_ctx, void *userptr) {
    (void)curl;
    const http_client *c = userptr;
    if (c->identity) tls_identity_install(c->identity, ssl_ctx);
    return CURLE_OK;
}

static void http_client_free(http_client *c) {
    if (!c) return;
    for (size_t i = 0; i < c->nidle; i++) {
        curl_multi_cleanup(c->idle[i].multi);
        curl_easy_cleanup(c->idle[i].easy);
    }
    free(c->idle);
    pthread_mutex_destroy(&c->mu);
    tls_identity_free(c->identity);
    curl_slist_free_all(c->resolve);
    free(c->ca_pem);
    free(c->user_agent);
    free(c);
}

static int http_resolve_entry_valid(const char *e) {
    /* host:port:address — the address may be IPv6 in brackets, so only check the first two. */
    const char *c1 = strchr(e, ':');
    if (!c1 || c1 == e) return 0;
    const char *c2 = strchr(c1 + 1, ':');
    if (!c2 || c2 == c1 + 1 || !c2[1]) return 0;
    for (const char *p = c1 + 1; p < c2; p++)
        if (!isdigit((unsigned char)*p)) return 0;
    return 1;
}

/*
 * Creates a client. Fails (WC_EINVAL) when verification is on and no CA was given: a scratch
 * image has no CA store, and libcurl would only fail later, per request, less clearly.
 */
static http_client *http_client_new(const http_client_options *o, wc_err *err) {
    http_client *c = xcalloc(1, sizeof *c);
    pthread_mutex_init(&c->mu, NULL);
    c->insecure = o->insecure_skip_verify;
    c->pool_max = o->pool_max ? o->pool_max : HTTP_DEFAULT_POOL_MAX;
    c->idle = xcalloc(c->pool_max, sizeof *c->idle);
    if (o->ca_pem) {
        c->ca_pem_len = o->ca_pem_len ? o->ca_pem_len : strlen(o->ca_pem);
        c->ca_pem = xstrndup(o->ca_pem, c->ca_pem_len);
        if (!strstr(c->ca_pem, "-----BEGIN CERTIFICATE-----")) {
            err_set(err, WC_EINVAL, "CA bundle contains no PEM certificate");
            goto fail;
        }
    } else if (!c->insecure) {
        err_set(err, WC_EINVAL, "no CA bundle given and TLS verification is on");
        goto fail;
    }
    if (!o->client_cert_pem != !o->client_key_pem) {
        err_set(err, WC_EINVAL, "a client certificate needs both the certificate and the key");
        goto fail;
    }
    if (o->client_cert_pem) {
        size_t cl = o->client_cert_pem_len ? o->client_cert_pem_len : strlen(o->client_cert_pem);
        size_t kl = o->client_key_pem_len ? o->client_key_pem_len : strlen(o->client_key_pem);
        c->identity = tls_identity_parse(o->client_cert_pem, cl, o->client_key_pem, kl, err);
        if (!c->identity) goto fail;
    }
    for (size_t i = 0; i < o->nresolve; i++) {
        if (!http_resolve_entry_valid(o->resolve[i])) {
            err_set(err, WC_EINVAL, "resolve entry \"%s\": want host:port:address", o->resolve[i]);
            goto fail;
        }
        struct curl_slist *n = curl_slist_append(c->resolve, o->resolve[i]);
        if (!n) wc_oom();
        c->resolve = n;
    }
    c->user_agent = xstrdup(o->user_agent ? o->user_agent : "worker-controller/" WC_VERSION);
    return c;
fail:
    http_client_free(c);
    return NULL;
}

/* Takes an idle slot (most recently used first: its connection is the likeliest still open)
 * or makes a new one. Never blocks: a long watch holds its slot for minutes. */
static int http_slot_get(http_client *c, http_slot *s) {
    pthread_mutex_lock(&c->mu);
    if (c->nidle > 0) {
        *s = c->idle[--c->nidle];
        pthread_mutex_unlock(&c->mu);
        return 0;
    }
    pthread_mutex_unlock(&c->mu);
    s->easy = curl_easy_init();
    s->multi = curl_multi_init();
    if (!s->easy || !s->multi) {
        if (s->easy) curl_easy_cleanup(s->easy);
        if (s->multi) curl_multi_cleanup(s->multi);
        return -1;
    }
    return 0;
}

/* Returns a slot to the pool, or frees it (closing its connections) when the pool is full or
 * the slot's connection state is suspect. */
static void http_slot_put(http_client *c, http_slot *s, int reusable) {
    if (reusable) {
        pthread_mutex_lock(&c->mu);
        if (c->nidle < c->pool_max) {
            c->idle[c->nidle++] = *s; /* the pool never holds more than pool_max slots */
            pthread_mutex_unlock(&c->mu);
            return;
        }
        pthread_mutex_unlock(&c->mu);
    }
    curl_multi_cleanup(s->multi);
    curl_easy_cleanup(s->easy);
}

/* ------------------------------------------------------------------------------------------ */
/* One transfer */

typedef struct http_xfer {
    const http_request *req;
    http_response *resp;
    CURL *easy;
    int too_big;
    int mode; /* streaming only: 0 = undecided, 1 = to on_data, 2 = error status, buffered */
} http_xfer;

static size_t http_write_cb(char *p, size_t size, size_t nmemb, void *ud) {
    http_xfer *x = ud;
    size_t n = size * nmemb;
    if (x->req->on_data && x->mode == 0) {
        /* A watch that gets 403 or 410 must not feed the Status body to the event decoder:
         * non-2xx bodies are buffered (bounded) for the caller to read from resp->body. */
        long status = 0;
        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        x->mode = status >= 200 && status <= 299 ? 1 : 2;
    }
    if (x->mode == 1) {
        if (n == 0) return 0;
        if (x->req->on_data(x->req->ud, p, n) != 0) {
            x->resp->aborted = 1;
            return 0; /* CURLE_WRITE_ERROR ends the transfer */
        }
        return n;
    }
    if (buf_append(&x->resp->body, p, n) < 0) {
        x->too_big = 1;
        return 0;
    }
    return n;
}

/* Retry-After is either delta-seconds or an HTTP-date (RFC 9110 10.2.3). */
static int http_parse_retry_after(const char *v) {
    while (*v == ' ' || *v == '\t') v++;
    if (isdigit((unsigned char)*v)) {
        char *end;
        long s = strtol(v, &end, 10);
        while (*end == ' ' || *end == '\t') end++;
        if (*end) return -1;
        return s > INT_MAX ? INT_MAX : (int)s;
    }
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1) return -1;
    time_t now = time(NULL);
    return t <= now ? 0 : (t - now > INT_MAX ? INT_MAX : (int)(t - now));
}

/* Copies a header value, trimmed, into out (bounded). */
static void http_header_value(const char *v, size_t n, char *out, size_t outsz) {
    while (n && (*v == ' ' || *v == '\t')) { v++; n--; }
    while (n && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
    if (n >= outsz) n = outsz - 1;
    memcpy(out, v, n);
    out[n] = '\0';
}

static size_t http_header_cb(char *p, size_t size, size_t nmemb, void *ud) {
    http_xfer *x = ud;
    size_t n = size * nmemb;
    /* A new status line (after a 100 Continue, say) starts a new header set. */
    if (n >= 5 && memcmp(p, "HTTP/", 5) == 0) {
        x->resp->content_type[0] = '\0';
        x->resp->retry_after_s = -1;
        buf_reset(&x->resp->headers);
        return n;
    }
    if (x->resp->headers.len + n <= HTTP_MAX_HEADER_BYTES) buf_append(&x->resp->headers, p, n);
    const char *colon = memchr(p, ':', n);
    if (!colon) return n;
    size_t nl = (size_t)(colon - p), vl = n - nl - 1;
    if (nl == 12 && strncasecmp(p, "Content-Type", 12) == 0) {
        http_header_value(colon + 1, vl, x->resp->content_type, sizeof x->resp->content_type);
    } else if (nl == 11 && strncasecmp(p, "Retry-After", 11) == 0) {
        char v[64];
        http_header_value(colon + 1, vl, v, sizeof v);
        x->resp->retry_after_s = http_parse_retry_after(v);
    }
    return n;
}

static int http_cancelled(const http_request *req) {
    return req->cancel && atomic_load(req->cancel) != 0;
}

/* Also called while data flows, between our own poll iterations. */
static int http_xferinfo_cb(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                            curl_off_t ulnow) {
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow; /* only the chance to look at the cancel flag matters */
    http_xfer *x = ud;
    if (http_cancelled(x->req)) {
        x->resp->cancelled = 1;
        return 1; /* CURLE_ABORTED_BY_CALLBACK */
    }
    return 0;
}

/* Which wc_err code a curl failure is. TLS: everything about the handshake and the peer. */
static int http_map_curl_error(CURLcode rc) {
    switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_ENGINE_NOTFOUND:
    case CURLE_SSL_ENGINE_SETFAILED:
    case CURLE_SSL_ENGINE_INITFAILED:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_INVALIDCERTSTATUS:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_SSL_CLIENTCERT:
    case CURLE_SSL_SHUTDOWN_FAILED:
    case CURLE_USE_SSL_FAILED:
        return WC_ETLS;
    case CURLE_OPERATION_TIMEDOUT:
        return WC_ETIMEOUT;
    case CURLE_FILESIZE_EXCEEDED:
        return WC_ETOOBIG;
    default:
        return WC_EIO;
    }
}

/*
 * A peer that rejects us during the handshake (say, a missing client certificate) may close
 * the socket rather than send an alert; BearSSL then reports a plain send or receive failure
 * ("Broken pipe", "Connection reset") instead of an SSL error, depending on timing. When a new
 * TCP connection was made for an https URL but TLS never completed, it is a TLS failure.
 */
static int http_failed_in_tls_handshake(CURL *h, CURLcode cres, long new_connections) {
    if (cres == CURLE_SSL_CONNECT_ERROR) return 1; /* BearSSL often leaves errbuf empty here */
    if (cres != CURLE_SEND_ERROR && cres != CURLE_RECV_ERROR && cres != CURLE_GOT_NOTHING) return 0;
    if (new_connections <= 0) return 0;
    char *scheme = NULL, *ip = NULL;
    curl_off_t appconnect_us = 0;
    if (curl_easy_getinfo(h, CURLINFO_SCHEME, &scheme) != CURLE_OK || !scheme ||
        strcasecmp(scheme, "https") != 0)
        return 0;
    /* CURLINFO_CONNECT_TIME stays 0 here (7.88 stamps it only once the whole filter chain,
     * TLS included, is up), but the peer address is known as soon as TCP connected. */
    if (curl_easy_getinfo(h, CURLINFO_PRIMARY_IP, &ip) != CURLE_OK || !ip || !*ip) return 0;
    curl_easy_getinfo(h, CURLINFO_APPCONNECT_TIME_T, &appconnect_us);
    return appconnect_us == 0;
}

/* ECDHE with an AEAD only (no CBC, no static RSA), AES-GCM first. The order matters for speed:
 * BearSSL's default list starts with ChaCha20, and a Go server (the API server) then picks
 * ChaCha20-Poly1305, which costs both ends several times more CPU per byte than AES-GCM on
 * AES-NI hardware (BearSSL uses AES-NI and PCLMUL when the CPU has them). ChaCha20 stays as
 * the fallback for servers that prefer or only offer it. */
#define HTTP_TLS_CIPHERS                                                                         \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"   \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"

/* Options are set through a small accumulator: the first option libcurl refuses is remembered
 * (its name for the message) and the ones after it are skipped, so setting a dozen options
 * needs no check after each and no jump out of the middle. */
typedef struct http_opts {
    CURL *h;
    CURLcode rc;
    const char *refused; /* the first option libcurl refused */
} http_opts;

#define HTTP_OPT(o, opt, val)                                                                      \
    do {                                                                                           \
        if ((o)->rc == CURLE_OK && ((o)->rc = curl_easy_setopt((o)->h, (opt), (val))) != CURLE_OK)  \
            (o)->refused = #opt;                                                                   \
    } while (0)

/* Connection, timeouts and TLS: 1.2 minimum (BearSSL's maximum too), verification unless
 * explicitly skipped. */
static void http_opts_connection(http_opts *o, http_client *c, const http_request *req, char *errbuf) {
    HTTP_OPT(o, CURLOPT_URL, req->url);
    HTTP_OPT(o, CURLOPT_PROTOCOLS_STR, "http,https");
    HTTP_OPT(o, CURLOPT_NOSIGNAL, 1L);
    HTTP_OPT(o, CURLOPT_ERRORBUFFER, errbuf);
    HTTP_OPT(o, CURLOPT_USERAGENT, c->user_agent);
    HTTP_OPT(o, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    HTTP_OPT(o, CURLOPT_TCP_KEEPALIVE, 1L);
    HTTP_OPT(o, CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 ? req->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS);
    HTTP_OPT(o, CURLOPT_CONNECTTIMEOUT_MS,
             req->connect_timeout_ms > 0 ? req->connect_timeout_ms : HTTP_DEFAULT_CONNECT_TIMEOUT_MS);
    if (req->low_speed_time_s > 0) {
        HTTP_OPT(o, CURLOPT_LOW_SPEED_LIMIT, req->low_speed_bytes > 0 ? req->low_speed_bytes : 1L);
        HTTP_OPT(o, CURLOPT_LOW_SPEED_TIME, req->low_speed_time_s);
    }
    HTTP_OPT(o, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
    HTTP_OPT(o, CURLOPT_SSL_CIPHER_LIST, HTTP_TLS_CIPHERS);
    HTTP_OPT(o, CURLOPT_SSL_VERIFYPEER, c->insecure ? 0L : 1L);
    HTTP_OPT(o, CURLOPT_SSL_VERIFYHOST, c->insecure ? 0L : 2L);
    if (c->ca_pem) {
        /* NOCOPY: the client owns the bundle and outlives every handle; libcurl copies the
         * blob struct itself. */
        struct curl_blob ca = {c->ca_pem, c->ca_pem_len, CURL_BLOB_NOCOPY};
        HTTP_OPT(o, CURLOPT_CAINFO_BLOB, &ca);
    }
    if (c->identity) {
        HTTP_OPT(o, CURLOPT_SSL_CTX_FUNCTION, http_ssl_ctx_cb);
        HTTP_OPT(o, CURLOPT_SSL_CTX_DATA, c);
    }
    if (c->resolve) HTTP_OPT(o, CURLOPT_RESOLVE, c->resolve);
}

/* Method, body and headers. A body is sent for any method that has one (DELETE with
 * DeleteOptions). *hdrs receives the header list the handle references (caller frees). */
static void http_opts_request(http_opts *o, const http_request *req, const char *method, struct curl_slist **hdrs) {
    int has_body = req->body != NULL || req->body_len > 0;
    if (strcmp(method, "HEAD") == 0) {
        HTTP_OPT(o, CURLOPT_NOBODY, 1L);
    } else if (has_body || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
               strcmp(method, "PATCH") == 0) {
        HTTP_OPT(o, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        HTTP_OPT(o, CURLOPT_POSTFIELDS, req->body ? req->body : "");
        if (strcmp(method, "POST") != 0) HTTP_OPT(o, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        HTTP_OPT(o, CURLOPT_CUSTOMREQUEST, method);
    }
    for (size_t i = 0; i < req->nheaders; i++) {
        struct curl_slist *n = curl_slist_append(*hdrs, req->headers[i]);
        if (!n) wc_oom();
        *hdrs = n;
    }
    /* No "Expect: 100-continue" round trip for large bodies: API servers answer directly.
     * Not with SigV4: curl 7.88 signs every header in the list, this removal directive
     * included, and the server never sees it — the signature would not match. */
    if (!req->aws_sigv4) {
        struct curl_slist *n = curl_slist_append(*hdrs, "Expect:");
        if (!n) wc_oom();
        *hdrs = n;
    }
    HTTP_OPT(o, CURLOPT_HTTPHEADER, *hdrs);
    if (req->aws_sigv4) {
        log_register_secret(req->aws_secret_key);
        HTTP_OPT(o, CURLOPT_AWS_SIGV4, req->aws_sigv4);
        HTTP_OPT(o, CURLOPT_USERNAME, req->aws_access_key);
        HTTP_OPT(o, CURLOPT_PASSWORD, req->aws_secret_key);
    }
}

/* The callbacks that fill resp (or stream a 2xx body to on_data) and watch the cancel flag. */
static void http_opts_callbacks(http_opts *o, const http_request *req, http_xfer *x) {
    HTTP_OPT(o, CURLOPT_WRITEFUNCTION, http_write_cb);
    HTTP_OPT(o, CURLOPT_WRITEDATA, x);
    HTTP_OPT(o, CURLOPT_HEADERFUNCTION, http_header_cb);
    HTTP_OPT(o, CURLOPT_HEADERDATA, x);
    HTTP_OPT(o, CURLOPT_NOPROGRESS, 0L);
    HTTP_OPT(o, CURLOPT_XFERINFOFUNCTION, http_xferinfo_cb);
    HTTP_OPT(o, CURLOPT_XFERINFODATA, x);
    x->resp->body.limit = req->max_body ? req->max_body : HTTP_DEFAULT_MAX_BODY;
    /* Refuses early when Content-Length already says too much; chunked bodies hit the buffer
     * limit in the write callback instead. */
    if (!req->on_data) HTTP_OPT(o, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->resp->body.limit);
}

/* The transfers being driven, each by its multi handle, so that http_wake_all() can wake them. */
typedef struct http_active {
    CURLM *multi;
    struct http_active *prev, *next;
} http_active;

static pthread_mutex_t http_active_mu = PTHREAD_MUTEX_INITIALIZER;
static http_active *http_active_list;
static atomic_long http_polls; /* curl_multi_poll calls made, process-wide (tests count wakeups) */

/* Wakes every transfer's poll, so each checks its cancel flag now: call it after setting one.
 * curl_multi_wakeup is meant to be called from another thread; the lock keeps a handle from
 * leaving the list (and being reused) while it is woken. */
static void http_wake_all(void) {
    pthread_mutex_lock(&http_active_mu);
    for (http_active *a = http_active_list; a; a = a->next) curl_multi_wakeup(a->multi);
    pthread_mutex_unlock(&http_active_mu);
}

static void http_active_link(http_active *a) {
    pthread_mutex_lock(&http_active_mu);
    a->prev = NULL;
    a->next = http_active_list;
    if (http_active_list) http_active_list->prev = a;
    http_active_list = a;
    pthread_mutex_unlock(&http_active_mu);
}

static void http_active_unlink(http_active *a) {
    pthread_mutex_lock(&http_active_mu);
    if (a->prev) a->prev->next = a->next;
    else http_active_list = a->next;
    if (a->next) a->next->prev = a->prev;
    pthread_mutex_unlock(&http_active_mu);
}

/* Drives the transfer on the slot's own multi handle until it ends, sleeping in between until
 * data, a libcurl timer or a wake (the cancel flag is checked after each). 0 with *cres the
 * transfer's result, or -1 with err set. */
static int http_drive_loop(http_slot *slot, const http_request *req, const char *method, http_response *resp,
                           CURLcode *cres, wc_err *err) {
    int poll_ms = HTTP_POLL_MS;
    curl_off_t seen = -1;
    for (;;) {
        int running = 0;
        CURLMcode mc = curl_multi_perform(slot->multi, &running);
        if (mc != CURLM_OK) return err_set(err, WC_EIO, "%s %s: libcurl: %s", method, req->url, curl_multi_strerror(mc));
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(slot->multi, &left)))
            if (msg->msg == CURLMSG_DONE && msg->easy_handle == slot->easy) {
                *cres = msg->data.result;
                return 0;
            }
        if (http_cancelled(req)) {
            resp->cancelled = 1;
            return err_set(err, WC_EIO, "%s %s: cancelled", method, req->url); /* removing the handle closes its connection */
        }
        long status = 0;
        curl_off_t got = 0;
        curl_easy_getinfo(slot->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(slot->easy, CURLINFO_SIZE_DOWNLOAD_T, &got);
        if (status == 0 || got != seen) poll_ms = HTTP_POLL_MS; /* connecting, or data moved */
        else if ((poll_ms *= 2) > HTTP_IDLE_POLL_MS) poll_ms = HTTP_IDLE_POLL_MS;
        seen = got;
        atomic_fetch_add(&http_polls, 1);
        mc = curl_multi_poll(slot->multi, NULL, 0, poll_ms, NULL);
        if (mc != CURLM_OK) return err_set(err, WC_EIO, "%s %s: libcurl: %s", method, req->url, curl_multi_strerror(mc));
    }
}

/* The loop, registered for http_wake_all() from before its first look at the cancel flag: a
 * wake that comes before the poll is kept for it by libcurl, so none is lost. */
static int http_drive(http_slot *slot, const http_request *req, const char *method, http_response *resp,
                      CURLcode *cres, wc_err *err) {
    http_active a = {.multi = slot->multi};
    http_active_link(&a);
    int rc = http_drive_loop(slot, req, method, resp, cres, err);
    http_active_unlink(&a);
    return rc;
}

/* What a finished transfer means: 0 when a complete response arrived, else -1 with the cause. */
static int http_result(CURL *h, const http_request *req, const char *method, http_xfer *x, CURLcode cres,
                       const char *errbuf, wc_err *err) {
    http_response *resp = x->resp;
    long status = 0, nconn = 0;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &nconn);
    resp->status = status;
    resp->new_connections = nconn;
    if (cres == CURLE_OK) return 0;
    if (x->too_big || cres == CURLE_FILESIZE_EXCEEDED)
        return err_set(err, WC_ETOOBIG, "%s %s: response body exceeds %zu bytes", method, req->url, resp->body.limit);
    if (resp->cancelled || (cres == CURLE_ABORTED_BY_CALLBACK && http_cancelled(req))) {
        resp->cancelled = 1;
        return err_set(err, WC_EIO, "%s %s: cancelled", method, req->url);
    }
    if (resp->aborted) return err_set(err, WC_EIO, "%s %s: aborted by the data callback", method, req->url);
    /* curl's detail (errbuf) names the TLS or socket problem; never our headers. */
    const char *detail = errbuf[0] ? errbuf : curl_easy_strerror(cres);
    if (http_failed_in_tls_handshake(h, cres, nconn))
        return err_set(err, WC_ETLS, "%s %s: TLS handshake failed: %s", method, req->url, detail);
    return err_set(err, http_map_curl_error(cres), "%s %s: %s", method, req->url, detail);
}

static void http_response_reset(http_response *resp) {
    buf_reset(&resp->body);
    buf_reset(&resp->headers);
    resp->body.limit = 0;
    resp->status = 0;
    resp->content_type[0] = '\0';
    resp->retry_after_s = -1;
    resp->new_connections = 0;
    resp->cancelled = resp->aborted = 0;
}

/*
 * Performs one request. Returns 0 when a complete response arrived (any status), -1 with err
 * set otherwise: WC_ETLS, WC_ETIMEOUT, WC_ETOOBIG, WC_EINVAL (bad request), WC_EIO (the rest,
 * including cancel — resp->cancelled — and a callback abort — resp->aborted).
 * resp must be initialised with http_response_init(); its body is reset, not freed.
 */
static int http_do(http_client *c, const http_request *req, http_response *resp, wc_err *err) {
    const char *method = req->method ? req->method : "GET";
    http_response_reset(resp);
    if (!req->url) return err_set(err, WC_EINVAL, "%s: no URL", method);
    if (req->aws_sigv4 && (!req->aws_access_key || !req->aws_secret_key))
        return err_set(err, WC_EINVAL, "%s %s: SigV4 needs an access key and a secret key", method, req->url);
    if (http_cancelled(req)) {
        resp->cancelled = 1;
        return err_set(err, WC_EIO, "%s %s: cancelled", method, req->url);
    }
    http_slot slot;
    if (http_slot_get(c, &slot) < 0) return err_set(err, WC_EIO, "%s %s: libcurl init failed", method, req->url);
    struct curl_slist *hdrs = NULL;
    char errbuf[CURL_ERROR_SIZE] = "";
    http_xfer x = {req, resp, slot.easy, 0, 0};
    curl_easy_reset(slot.easy); /* options only: the multi's connection cache survives */
    http_opts o = {slot.easy, CURLE_OK, NULL};
    http_opts_connection(&o, c, req, errbuf);
    http_opts_request(&o, req, method, &hdrs);
    http_opts_callbacks(&o, req, &x);
    int rc = -1, added = 0, reusable = 0;
    CURLcode cres = CURLE_OK;
    if (o.rc != CURLE_OK) err_set(err, WC_EINVAL, "%s %s: libcurl refused option %s", method, req->url, o.refused);
    else if (curl_multi_add_handle(slot.multi, slot.easy) != CURLM_OK)
        err_set(err, WC_EIO, "%s %s: libcurl multi add failed", method, req->url);
    else if ((added = 1, http_drive(&slot, req, method, resp, &cres, err) == 0)) {
        reusable = 1; /* curl closed a failed connection itself; the slot is fine either way */
        rc = http_result(slot.easy, req, method, &x, cres, errbuf, err);
    }
    if (added) curl_multi_remove_handle(slot.multi, slot.easy);
    /* Options referencing stack memory (errbuf, &x, hdrs) must not outlive this call. */
    curl_easy_reset(slot.easy);
    curl_slist_free_all(hdrs);
    http_slot_put(c, &slot, reusable);
    return rc;
}
