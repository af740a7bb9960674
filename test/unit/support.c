/*
 * support.c — what several unit test files share, so that no test file depends on another or
 * on the order the runner includes them in: the logger's output captured, a local TLS server, a
 * Worker from a JSON literal, and the fake API server + S3 (test/unit/fake_server.py) with a
 * controller set up against it and caches the tests fill by hand.
 */

/* ---- the logger's output ---- */

/* Captures what the logger writes through a pipe. */
static char *capture_log(enum log_format fmt, void (*emit)(void)) {
    int fds[2];
    if (pipe(fds) < 0) return NULL;
    log_configure(fmt, LOG_DEBUG, fds[1]);
    emit();
    close(fds[1]);
    log_configure(LOG_FORMAT_TEXT, LOG_INFO, 2);
    buf out = BUF_INIT;
    char chunk[4096];
    ssize_t n;
    while ((n = read(fds[0], chunk, sizeof chunk)) > 0) buf_append(&out, chunk, (size_t)n);
    close(fds[0]);
    return buf_steal(&out);
}

/* ---- a local TLS server (test/unit/tls_server.py) and clients for it ---- */


#define HTTP_TEST_HOST "wc-test.local"

static struct {
    int tried, ok;
    pid_t pid;
    int stdin_fd;
    int plain_port, mtls_port, cbc_port;
    char dir[512];
    char *ca, *wrong_ca, *rsa_cert, *rsa_key, *ec_cert, *ec_key;
} g_tls_srv = {0, 0, -1, -1, 0, 0, 0, "", NULL, NULL, NULL, NULL, NULL, NULL};

static void http_test_server_stop(void) {
    if (g_tls_srv.pid <= 0) return;
    close(g_tls_srv.stdin_fd); /* EOF: the server removes its PKI dir and exits */
    for (int i = 0; i < 100; i++) {
        if (waitpid(g_tls_srv.pid, NULL, WNOHANG) == g_tls_srv.pid) goto reaped;
        wc_sleep_ms(20);
    }
    kill(g_tls_srv.pid, SIGKILL);
    waitpid(g_tls_srv.pid, NULL, 0);
reaped:
    g_tls_srv.pid = -1;
    free(g_tls_srv.ca);
    free(g_tls_srv.wrong_ca);
    free(g_tls_srv.rsa_cert);
    free(g_tls_srv.rsa_key);
    free(g_tls_srv.ec_cert);
    free(g_tls_srv.ec_key);
}

static char *http_test_slurp(const char *name) {
    char path[600];
    snprintf(path, sizeof path, "%s/%s", g_tls_srv.dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    buf b = BUF_INIT;
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) buf_append(&b, tmp, n);
    fclose(f);
    return buf_steal(&b);
}

/* Starts the server once for the whole run; returns 0 when it is up. */
static int http_test_server(void) {
    if (g_tls_srv.tried) return g_tls_srv.ok ? 0 : -1;
    g_tls_srv.tried = 1;
    const char *script = getenv("WC_TLS_SERVER");
    if (!script) script = "test/unit/tls_server.py";
    int in[2], out[2];
    if (pipe(in) < 0 || pipe(out) < 0) return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* the server cleans up on SIGTERM too */
        if (getppid() != parent) _exit(1);
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        execlp("python3", "python3", script, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    fcntl(in[1], F_SETFD, FD_CLOEXEC);
    g_tls_srv.pid = pid;
    g_tls_srv.stdin_fd = in[1];
    atexit(http_test_server_stop);
    /* One line: READY <plain> <mtls> <cbc-only> <dir>. Generating the RSA keys takes a second
     * or two. */
    FILE *f = fdopen(out[0], "r");
    char line[700];
    int got = f && fgets(line, sizeof line, f) &&
              sscanf(line, "READY %d %d %d %511s", &g_tls_srv.plain_port, &g_tls_srv.mtls_port, &g_tls_srv.cbc_port,
                     g_tls_srv.dir) == 4;
    if (f) fclose(f);
    if (!got) {
        fprintf(stdout, "    tls_server.py did not start (is python3/openssl installed?)\n");
        return -1;
    }
    g_tls_srv.ca = http_test_slurp("ca.pem");
    g_tls_srv.wrong_ca = http_test_slurp("wrong-ca.pem");
    g_tls_srv.rsa_cert = http_test_slurp("client-rsa.pem");
    g_tls_srv.rsa_key = http_test_slurp("client-rsa.key");
    g_tls_srv.ec_cert = http_test_slurp("client-ec.pem");
    g_tls_srv.ec_key = http_test_slurp("client-ec.key");
    g_tls_srv.ok = g_tls_srv.ca && g_tls_srv.wrong_ca && g_tls_srv.rsa_cert && g_tls_srv.rsa_key &&
                   g_tls_srv.ec_cert && g_tls_srv.ec_key;
    return g_tls_srv.ok ? 0 : -1;
}

/* A client trusting `ca`, with wc-test.local (and other.local, for the name test) pinned to
 * loopback on both ports. */
static http_client *http_test_client(const char *ca, const char *cert, const char *key, int insecure,
                                     wc_err *err) {
    char r[5][96];
    snprintf(r[0], sizeof r[0], HTTP_TEST_HOST ":%d:127.0.0.1", g_tls_srv.plain_port);
    snprintf(r[1], sizeof r[1], HTTP_TEST_HOST ":%d:127.0.0.1", g_tls_srv.mtls_port);
    snprintf(r[2], sizeof r[2], "other.local:%d:127.0.0.1", g_tls_srv.plain_port);
    snprintf(r[3], sizeof r[3], "other.local:%d:127.0.0.1", g_tls_srv.mtls_port);
    snprintf(r[4], sizeof r[4], HTTP_TEST_HOST ":%d:127.0.0.1", g_tls_srv.cbc_port);
    const char *resolve[5] = {r[0], r[1], r[2], r[3], r[4]};
    http_client_options o = {0};
    o.ca_pem = ca;
    o.client_cert_pem = cert;
    o.client_key_pem = key;
    o.insecure_skip_verify = insecure;
    o.resolve = resolve;
    o.nresolve = 5;
    return http_client_new(&o, err);
}

static void http_test_url(char *out, size_t n, int port, const char *path) {
    snprintf(out, n, "https://" HTTP_TEST_HOST ":%d%s", port, path);
}

/* ---- Workers from JSON literals ---- */

static const worker_defaults TD_DEFAULTS = {"openclaw", "img/openclaw:1", "img/copaw:1", "img/hermes:1", "1", "2Gi"};
#define TD_HASH "aaaaaaaaaaaaaaaa"
#define TD_SHASH "bbbbbbbbbbbbbbbb"

static cJSON *td_objs[256];
static size_t td_nobjs;

/* Parses a Worker from a JSON literal written with single quotes for readability. */
static void td_worker(arena *a, const char *json_sq, worker *w) {
    char *j = arena_strdup(a, json_sq);
    for (char *p = j; *p; p++)
        if (*p == '\'') *p = '"';
    cJSON *obj = cJSON_Parse(j);
    assert(obj);
    wc_err err;
    int rc = worker_parse(a, obj, &TD_DEFAULTS, w, &err);
    assert(rc == 0);
    (void)rc;
    worker_validate(a, w, "hiclaw-");
    /* strings in w borrow from obj: keep it until the test's td_release() */
    assert(td_nobjs < sizeof td_objs / sizeof *td_objs);
    td_objs[td_nobjs++] = obj;
}

static void td_release(arena *a) {
    for (size_t i = 0; i < td_nobjs; i++) cJSON_Delete(td_objs[i]);
    td_nobjs = 0;
    arena_free(a);
}

#define W_BASE "'metadata':{'name':'alice','namespace':'ns','uid':'u1','resourceVersion':'7','generation':2,'finalizers':['hiclaw.io/cleanup']}"


/* ---- the fake API server and S3, and a controller against it ---- */

/* A Python helper server (fake_server.py, hostile_server.py): started once on first use, told
 * its port by a "READY <port>" line, stopped at exit by closing its stdin. */
typedef struct py_server {
    const char *script;
    int tried, ok;
    pid_t pid;
    int stdin_fd;
    int port;
} py_server;

static py_server *g_py_servers[4];
static int g_py_nservers;

static void py_servers_stop(void) {
    for (int k = 0; k < g_py_nservers; k++) {
        py_server *s = g_py_servers[k];
        if (s->pid <= 0) continue;
        close(s->stdin_fd);
        int reaped = 0;
        for (int i = 0; i < 100 && !reaped; i++) {
            reaped = waitpid(s->pid, NULL, WNOHANG) == s->pid;
            if (!reaped) wc_sleep_ms(20);
        }
        if (!reaped) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, NULL, 0);
        }
        s->pid = -1;
    }
}

static int py_server_start(py_server *s) {
    if (s->tried) return s->ok ? 0 : -1;
    s->tried = 1;
    int in[2], out[2];
    if (pipe(in) < 0 || pipe(out) < 0) return -1;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent) _exit(1);
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[0]); close(in[1]); close(out[0]); close(out[1]);
        execlp("python3", "python3", s->script, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    fcntl(in[1], F_SETFD, FD_CLOEXEC);
    s->pid = pid;
    s->stdin_fd = in[1];
    assert(g_py_nservers < (int)(sizeof g_py_servers / sizeof g_py_servers[0]));
    if (g_py_nservers == 0) atexit(py_servers_stop);
    g_py_servers[g_py_nservers++] = s;
    FILE *f = fdopen(out[0], "r");
    char line[128];
    s->ok = f && fgets(line, sizeof line, f) && sscanf(line, "READY %d", &s->port) == 1;
    if (f) fclose(f);
    if (!s->ok) fprintf(stdout, "    %s did not start\n", s->script);
    return s->ok ? 0 : -1;
}

static py_server g_fake = {.script = "test/unit/fake_server.py", .pid = -1, .stdin_fd = -1};

static int fake_server(void) { return py_server_start(&g_fake); }

/* The http client insists on a trust bundle whatever the scheme; plain http never uses it. */
#define FAKE_UNUSED_CA "-----BEGIN CERTIFICATE-----\nunused for http://\n-----END CERTIFICATE-----\n"

/* One request to the fake's control endpoints; the body (if any) into out. Returns the status. */
static long fake_call(const char *method, const char *path, const char *body, buf *out) {
    static http_client *h;
    if (!h) {
        http_client_options o;
        memset(&o, 0, sizeof o);
        o.insecure_skip_verify = 1;
        wc_err e;
        h = http_client_new(&o, &e);
        if (!h) return -1;
    }
    char url[512];
    snprintf(url, sizeof url, "http://127.0.0.1:%d%s", g_fake.port, path);
    const char *hdr[1] = {"Content-Type: application/json"};
    http_request req;
    memset(&req, 0, sizeof req);
    req.method = method;
    req.url = url;
    req.headers = hdr;
    req.nheaders = body ? 1 : 0;
    req.body = body;
    req.body_len = body ? strlen(body) : 0;
    req.timeout_ms = 10000;
    http_response resp;
    http_response_init(&resp);
    wc_err e;
    long st = http_do(h, &req, &resp, &e) == 0 ? resp.status : -1;
    if (out) buf_append(out, resp.body.data ? resp.body.data : "", resp.body.len);
    http_response_free(&resp);
    return st;
}

static void fake_reset(void) { fake_call("POST", "/__reset", "{}", NULL); }

/* Seeds an object into a collection (single quotes in json_sq stand for double quotes). */
static void fake_seed(const char *collection, const char *json_sq) {
    buf b = BUF_INIT;
    buf_printf(&b, "{\"path\":\"%s\",\"object\":", collection);
    for (const char *p = json_sq; *p; p++) buf_putc(&b, *p == '\'' ? '"' : *p);
    buf_putc(&b, '}');
    long st = fake_call("POST", "/__seed", buf_cstr(&b), NULL);
    if (st != 200) unit_fail(__FILE__, __LINE__, "seeding %s: %ld", collection, st);
    buf_free(&b);
}

/* Seeds an S3 object "bucket/key" with metadata given as a JSON object (single quotes). */
static void fake_s3_seed(const char *key, const char *body, const char *meta_sq) {
    buf b = BUF_INIT;
    buf_puts(&b, "{\"key\":");
    buf_put_json_string(&b, key);
    buf_puts(&b, ",\"body\":");
    buf_put_json_string(&b, body);
    buf_puts(&b, ",\"meta\":");
    for (const char *p = meta_sq; *p; p++) buf_putc(&b, *p == '\'' ? '"' : *p);
    buf_putc(&b, '}');
    long st = fake_call("POST", "/__s3seed", buf_cstr(&b), NULL);
    if (st != 200) unit_fail(__FILE__, __LINE__, "seeding s3 %s: %ld", key, st);
    buf_free(&b);
}

/* The S3 object "bucket/key" as {"body":..., "meta":{...}}, or NULL when absent. */
static cJSON *fake_s3_get(const char *key) {
    char path[600];
    snprintf(path, sizeof path, "/__s3/%s", key);
    buf b = BUF_INIT;
    long st = fake_call("GET", path, NULL, &b);
    cJSON *o = st == 200 ? cJSON_Parse(buf_cstr(&b)) : NULL;
    buf_free(&b);
    return o;
}

/* The next `times` requests of `method` whose path ends with `suffix` answer 500. */
static void fake_fail(const char *method, const char *suffix, int times) {
    char body[300];
    snprintf(body, sizeof body, "{\"method\":\"%s\",\"suffix\":\"%s\",\"times\":%d}", method, suffix, times);
    fake_call("POST", "/__fail", body, NULL);
}

/* The next `times` requests of `method` whose path ends with `suffix` answer 404 NotFound, as for
 * a resource the API server does not serve. */
static void fake_unserved(const char *method, const char *suffix, int times) {
    char body[300];
    snprintf(body, sizeof body, "{\"method\":\"%s\",\"suffix\":\"%s\",\"times\":%d,\"status\":404}", method,
             suffix, times);
    fake_call("POST", "/__fail", body, NULL);
}

/* Whether the fake holds an object at an API path. */
static int fake_get_exists(const char *path) {
    buf b = BUF_INIT;
    long st = fake_call("GET", path, NULL, &b);
    buf_free(&b);
    return st == 200;
}

/* The request log ("METHOD path" lines) since the last reset; caller frees. */
static char *fake_log(void) {
    buf b = BUF_INIT;
    fake_call("GET", "/__log", NULL, &b);
    return buf_steal(&b);
}

/* The object at an API path, or NULL. */
static cJSON *fake_get(const char *path) {
    buf b = BUF_INIT;
    long st = fake_call("GET", path, NULL, &b);
    cJSON *o = st == 200 ? cJSON_Parse(buf_cstr(&b)) : NULL;
    buf_free(&b);
    return o;
}

#define FAKE_BUCKET "deps"

/* A controller whose Kubernetes client and S3 client talk to the fake, set up like `run` from
 * this configuration (controller "ctl", prefix "hiclaw-", the sandbox backend on, deps prefix
 * "p/"), with the real backend table. */
static wc_cfg g_fake_conf;

/* A Kubernetes client of the fake server (NULL with err when it cannot be made). */
static kube_client *fake_kube_client(wc_err *err) {
    kube_config cfg;
    memset(&cfg, 0, sizeof cfg);
    buf s = BUF_INIT;
    buf_printf(&s, "http://127.0.0.1:%d", g_fake.port);
    cfg.server = buf_steal(&s);
    cfg.token = xstrdup("fake-test-token-Qz4");
    buf_puts(&cfg.ca_pem, FAKE_UNUSED_CA);
    kube_client *kc = kube_client_new(&cfg, err);
    kube_config_free(&cfg);
    return kc;
}

static void fake_controller_with(controller *c, const backend_ops *const *table, size_t n) {
    memset(c, 0, sizeof *c);
    wc_err err;
    c->host.kc = fake_kube_client(&err);
    char ep[128];
    snprintf(ep, sizeof ep, "HICLAW_WORKER_DEPS_ENDPOINT=http://127.0.0.1:%d", g_fake.port);
    char *env[] = {"HICLAW_CONTROLLER_NAME=ctl", ep, "HICLAW_WORKER_DEPS_BUCKET=" FAKE_BUCKET,
                   "HICLAW_WORKER_DEPS_PREFIX=p/", "HICLAW_WORKER_DEPS_ACCESS_KEY_ID=AKIDFAKE",
                   "HICLAW_WORKER_DEPS_SECRET_ACCESS_KEY=fake-secret-key-9Xw",
                   "HICLAW_WORKER_DEPS_ALLOW_PLAINTEXT_HTTP=true", "HICLAW_SANDBOX_DEPS_PV=deps-pv",
                   "HICLAW_SANDBOX_POOL=pool", "HICLAW_SANDBOX_TOKEN_TTL=3600", "HICLAW_SANDBOX_CLAIM_TIMEOUT=60s",
                   "HICLAW_SANDBOX_WAIT_READY_TIMEOUT=60s", "HICLAW_WORKER_IMAGE=img/openclaw:1",
                   "HICLAW_COPAW_WORKER_IMAGE=img/copaw:1", "HICLAW_HERMES_WORKER_IMAGE=img/hermes:1",
                   "HICLAW_K8S_WORKER_CPU=1", "HICLAW_K8S_WORKER_MEMORY=2Gi", NULL};
    if (cfg_load(&g_fake_conf, env, 0, NULL, &err) < 0) unit_fail(__FILE__, __LINE__, "config: %s", err.msg);
    c->host.rec = kube_recorder_new(c->host.kc, "hiclaw.io/worker-controller", "ctl-test");
    c->host.namespace = "ns";
    if (controller_setup(c, table, n, &g_fake_conf, &err) < 0) {
        unit_fail(__FILE__, __LINE__, "controller_setup: %s", err.msg);
        return;
    }
    /* The fake serves S3 under /s3 (an endpoint with a path, which the configuration refuses):
     * the sandbox backend's client is swapped for one that points there, wired as setup wires it. */
    sandbox_state *st = sbx_state(&c->backends[1]);
    s3_client_free(st->deps.s3);
    snprintf(ep, sizeof ep, "http://127.0.0.1:%d/s3", g_fake.port);
    st->deps.s3 = s3_client_new(ep, FAKE_BUCKET, "us-east-1", "AKIDFAKE", "fake-secret-key-9Xw", FAKE_UNUSED_CA, &err);
    if (st->deps.s3) st->deps.s3->cancel = &c->host.kc->cancel;
}

static void fake_controller(controller *c) { fake_controller_with(c, wc_backend_table, WC_NBACKENDS); }

static void fake_controller_free(controller *c) {
    controller_release(c);
    kube_recorder_free(c->host.rec);
    kube_client_free(c->host.kc);
    cfg_free(&g_fake_conf);
}

/* The backends of the real table, and their caches. */
#define SHELL_POD(c) (&(c)->backends[0])
#define SHELL_SBX(c) (&(c)->backends[1])
#define SHELL_PODS(c) (SHELL_POD(c)->informers[0])
#define SHELL_CLAIMS(c) (SHELL_SBX(c)->informers[0])
#define SHELL_SANDBOXES(c) (SHELL_SBX(c)->informers[1])
#define SHELL_S3(c) (sbx_state(SHELL_SBX(c))->deps.s3)

#define SHELL_SETUP()                     \
    REQUIRE(fake_server() == 0);          \
    fake_reset();                         \
    controller ctl;                       \
    fake_controller(&ctl);                \
    REQUIRE(ctl.host.kc && SHELL_S3(&ctl)); \
    arena a;                              \
    arena_init(&a);                       \
    wc_err err;                           \
    err_clear(&err)

#define SHELL_TEARDOWN()          \
    do {                          \
        td_release(&a);           \
        fake_controller_free(&ctl); \
    } while (0)

#define NS_PODS "/api/v1/namespaces/ns/pods"
#define NS_CLAIMS "/apis/agents.kruise.io/v1alpha1/namespaces/ns/sandboxclaims"
#define NS_SANDBOXES "/apis/agents.kruise.io/v1alpha1/namespaces/ns/sandboxes"
#define NS_WORKERS "/apis/hiclaw.io/v1beta1/namespaces/ns/workers"
#define DELETING_MD ",'deletionTimestamp':'2026-11-23T00:00:00Z'"

/* Caches like run's, never started: the tests put objects in them (what the watches would have
 * delivered) and seed the fake with what the API server really holds — the two may differ,
 * which is the point of several tests. */
static void shell_informers(controller *c) {
    kube_informer_options ow = {.resource = &KUBE_WORKERS, .namespace = "ns", .project = worker_project};
    c->workers = kube_informer_new(c->host.kc, "workers", &ow);
    for (size_t i = 0; i < c->nbackends; i++)
        for (size_t k = 0; k < c->backends[i].ncaches; k++) {
            const backend_cache *bc = &c->backends[i].caches[k];
            kube_informer_options o = {.resource = bc->resource, .namespace = "ns", .project = bc->project,
                                       .index = instance_index};
            c->backends[i].informers[k] = kube_informer_new(c->host.kc, bc->name, &o);
        }
}

static void shell_informers_free(controller *c) {
    kube_informer_free(c->workers);
    c->workers = NULL;
    for (size_t i = 0; i < c->nbackends; i++)
        for (size_t k = 0; k < c->backends[i].ncaches; k++) {
            kube_informer_free(c->backends[i].informers[k]);
            c->backends[i].informers[k] = NULL;
        }
}

/* Puts an object (single quotes for double) into a cache, as a watch ADDED event would. */
static void shell_cache(kube_informer *inf, const char *json_sq) {
    char *j = xstrdup(json_sq);
    for (char *p = j; *p; p++)
        if (*p == '\'') *p = '"';
    cJSON *o = cJSON_Parse(j);
    if (!o) unit_fail(__FILE__, __LINE__, "bad JSON: %s", j);
    else kube_informer_apply(inf, KUBE_WATCH_ADDED, o);
    cJSON_Delete(o);
    free(j);
}

/* The same object in the cache and in the fake API server. */
static void shell_both(kube_informer *inf, const char *collection, const char *json_sq) {
    shell_cache(inf, json_sq);
    fake_seed(collection, json_sq);
}

/* A Worker alice (uid u1) labelled for controller ctl; spec_sq: the spec object, status_sq the
 * status object (or NULL). Cached and held by the fake. */
static void shell_worker(controller *c, const char *extra_md_sq, const char *spec_sq, const char *status_sq) {
    char o[4096];
    snprintf(o, sizeof o,
             "{'apiVersion':'hiclaw.io/v1beta1','kind':'Worker','metadata':{'name':'alice','namespace':'ns','uid':'u1',"
             "'resourceVersion':'7','generation':2,'finalizers':['hiclaw.io/cleanup'],"
             "'labels':{'hiclaw.io/controller':'ctl'}%s},'spec':%s%s%s}",
             extra_md_sq ? extra_md_sq : "", spec_sq, status_sq ? ",'status':" : "", status_sq ? status_sq : "");
    shell_both(c->workers, NS_WORKERS, o);
}

/* The Worker as the fake holds it after the controller's patches. */
static cJSON *shell_worker_now(void) { return fake_get(NS_WORKERS "/alice"); }

static const char *cond_field(const cJSON *w, const char *type, const char *field) {
    const cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cJSON_GetObjectItem(w, "status"), "conditions"))
        if (str_eq(json_str(c, "type"), type)) return json_str(c, field);
    return NULL;
}

/* Runs one action of the shell for Worker w (the spec hashes TD_HASH and TD_SHASH). */
static int shell_exec(controller *c, arena *a, const worker *w, action_kind k, const char *name, const char *uid,
                      exec_ctx *x_out, wc_err *err) {
    observed *o = arena_calloc(a, sizeof *o);
    exec_ctx x = {.a = a, .w = w, .key = "ns/alice", .o = o, .hashes = {TD_HASH, TD_SHASH}};
    action act = {k, name, uid, 0};
    err_clear(err);
    int rc = exec_action(c, &x, &act, err);
    if (x_out) *x_out = x;
    return rc;
}

