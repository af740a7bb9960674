/*
 * probe.c — a test-only front end to the client core, driven by the e2e suite.
 *
 * The controller's binary exposes only product commands; the client layer (auth modes, REST
 * verbs, informer, Event recorder, Lease client) is exercised against the real API server
 * through this small program instead. It is the same code as the binary: the whole program is
 * included, minus its main().
 *
 *   wc-probe [CONNECT FLAGS] request METHOD PATH [BODY] [CONTENT-TYPE]
 *       prints "STATUS <code>" then the body; exit 0 on 2xx, 1 with the error on stderr
 *   wc-probe [CONNECT FLAGS] informer RESOURCE NAMESPACE [LABEL-SELECTOR]
 *       prints one JSON line per event; "SYNCED" once; reads commands on stdin:
 *       "dump" → {"cache":[{"key":..,"rv":..},...]}, "stats" → counters, "quit"
 *   wc-probe [CONNECT FLAGS] whoami [N [INTERVAL-MS]]
 *       SelfSubjectReview N times, printing "USER <name>" each time
 *   wc-probe [CONNECT FLAGS] event NAMESPACE NAME UID TYPE REASON NOTE COUNT
 *       records the same Event COUNT times (aggregation makes it one Event with a series)
 *   wc-probe [CONNECT FLAGS] lease NAMESPACE NAME HOLDER
 *       create → renew → stale write (must fail 409) → prints the final Lease as JSON
 *
 * Connection flags as the product's: --kubeconfig, --context, --server, --token-file, --ca-file.
 */
#define WC_NO_MAIN 1
#include "../../worker-controller.c"
#include "../err_names.h"

static const struct { const char *name; const kube_resource *r; } probe_resources[] = {
    {"workers", &KUBE_WORKERS},   {"pods", &KUBE_PODS},     {"serviceaccounts", &KUBE_SERVICEACCOUNTS},
    {"secrets", &KUBE_SECRETS},   {"leases", &KUBE_LEASES}, {"events", &KUBE_EVENTS},
    {"namespaces", &KUBE_NAMESPACES},
};

static pthread_mutex_t out_mu = PTHREAD_MUTEX_INITIALIZER;

static void probe_print_line(const char *line) {
    pthread_mutex_lock(&out_mu);
    fputs(line, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&out_mu);
}

static void probe_on_event(void *ud, const char *key, const cJSON *old_obj, const cJSON *new_obj) {
    (void)ud;
    const char *what = !old_obj ? "add" : !new_obj ? "delete" : "update";
    const cJSON *o = new_obj ? new_obj : old_obj;
    const char *rv = json_str_at(o, "metadata.resourceVersion");
    buf line = BUF_INIT;
    buf_printf(&line, "{\"event\":\"%s\",\"key\":", what);
    buf_put_json_string(&line, key);
    buf_puts(&line, ",\"rv\":");
    buf_put_json_string(&line, rv ? rv : "");
    buf_putc(&line, '}');
    probe_print_line(line.data);
    buf_free(&line);
}

static int probe_informer(kube_client *kc, const char *resource, const char *ns, const char *selector) {
    const kube_resource *r = NULL;
    for (size_t i = 0; i < sizeof probe_resources / sizeof *probe_resources; i++)
        if (strcmp(probe_resources[i].name, resource) == 0) r = probe_resources[i].r;
    if (!r) {
        fprintf(stderr, "unknown resource %s\n", resource);
        return 2;
    }
    kube_informer_options o = {.resource = r, .namespace = ns, .label_selector = selector,
                               .handler = probe_on_event, .page_size = 7 /* force paging */};
    const char *bmin = getenv("PROBE_BACKOFF_MIN_MS");
    if (bmin) o.backoff_min_ms = atol(bmin);
    const char *paged = getenv("PROBE_PAGED_ONLY");
    if (paged && strcmp(paged, "1") == 0) o.paged_only = 1;
    const char *wmin = getenv("PROBE_WATCH_SECONDS");
    if (wmin) o.watch_min_s = o.watch_max_s = atoi(wmin);
    kube_informer *inf = kube_informer_new(kc, resource, &o);
    wc_err err;
    if (kube_informer_start(inf, &err) < 0) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    if (kube_informer_wait_synced(inf, 60000) < 0) {
        fprintf(stderr, "informer did not sync\n");
        atomic_store(&kc->cancel, 1);
        kube_informer_free(inf);
        return 1;
    }
    probe_print_line("SYNCED");
    char cmd[256];
    while (fgets(cmd, sizeof cmd, stdin)) {
        if (strncmp(cmd, "dump", 4) == 0) {
            size_t n;
            char **keys = kube_informer_keys(inf, &n);
            buf line = BUF_INIT;
            buf_puts(&line, "{\"cache\":[");
            for (size_t i = 0; i < n; i++) {
                cJSON *o2 = kube_informer_get(inf, keys[i]);
                const char *rv = json_str_at(o2, "metadata.resourceVersion");
                if (i) buf_putc(&line, ',');
                buf_puts(&line, "{\"key\":");
                buf_put_json_string(&line, keys[i]);
                buf_puts(&line, ",\"rv\":");
                buf_put_json_string(&line, rv ? rv : "");
                buf_putc(&line, '}');
                cJSON_Delete(o2);
                free(keys[i]);
            }
            free(keys);
            buf_puts(&line, "]}");
            probe_print_line(line.data);
            buf_free(&line);
        } else if (strncmp(cmd, "stats", 5) == 0) {
            char line[256];
            snprintf(line, sizeof line,
                     "{\"stats\":{\"lists\":%ld,\"streamed\":%ld,\"stream_refused\":%d,\"relists_gone\":%ld,"
                     "\"watches\":%ld,\"watch_errors\":%ld,\"events\":%ld}}",
                     inf->stats.lists, inf->stats.streamed, inf->stream_refused, inf->stats.relists_gone,
                     inf->stats.watches, inf->stats.watch_errors, inf->stats.events);
            probe_print_line(line);
        } else if (strncmp(cmd, "quit", 4) == 0) {
            break;
        }
    }
    atomic_store(&kc->cancel, 1);
    kube_informer_free(inf);
    return 0;
}

static int probe_request(kube_client *kc, int argc, char **argv) {
    if (argc < 2) return 2;
    kube_call call = {.method = argv[0], .path = argv[1]};
    if (argc > 2) {
        call.body = argv[2];
        call.body_len = strlen(argv[2]);
        call.content_type = argc > 3 ? argv[3] : "application/json";
    }
    http_response resp;
    http_response_init(&resp);
    wc_err err;
    err_clear(&err);
    int rc = kube_do(kc, &call, &resp, &err);
    printf("STATUS %ld\n%s\n", resp.status, buf_cstr(&resp.body));
    if (rc < 0) fprintf(stderr, "error: %s (code %s, http %d)\n", err.msg, err_code_name(err.code), err.http_status);
    http_response_free(&resp);
    return rc < 0 ? 1 : 0;
}

/* Asks the API server who we are, n times, printing the username each time: the token-file
 * rotation test rewrites the file between calls. */
static int probe_whoami(kube_client *kc, int n, int interval_ms) {
    static const char body[] = "{\"apiVersion\":\"authentication.k8s.io/v1\",\"kind\":\"SelfSubjectReview\"}";
    for (int i = 0; i < n; i++) {
        kube_call call = {.method = "POST", .path = "/apis/authentication.k8s.io/v1/selfsubjectreviews",
                          .content_type = "application/json", .body = body, .body_len = sizeof body - 1};
        cJSON *out = NULL;
        wc_err err;
        if (kube_do_json(kc, &call, &out, &err) < 0) {
            fprintf(stderr, "error: %s (code %s, http %d)\n", err.msg, err_code_name(err.code), err.http_status);
            return 1;
        }
        const char *user = json_str_at(out, "status.userInfo.username");
        printf("USER %s\n", user ? user : "");
        fflush(stdout);
        cJSON_Delete(out);
        if (i + 1 < n) wc_sleep_ms(interval_ms);
    }
    return 0;
}

static int probe_event(kube_client *kc, char **a) {
    kube_recorder *r = kube_recorder_new(kc, "hiclaw.io/worker-controller", "probe");
    kube_event_ref ref = {"hiclaw.io/v1beta1", "Worker", a[0], a[1], a[2]};
    int count = atoi(a[6]);
    for (int i = 0; i < count; i++) kube_record(r, &ref, a[3], a[4], "Reconcile", "%s", a[5]);
    /* kube_record only queues: the counts are the sender's once it has written them all */
    if (kube_recorder_flush(r, 30000) < 0) fprintf(stderr, "the recorder did not drain in 30 s\n");
    printf("{\"created\":%ld,\"patched\":%ld,\"failed\":%ld}\n", atomic_load(&r->created), atomic_load(&r->patched),
           atomic_load(&r->failed));
    int failed = atomic_load(&r->failed) != 0;
    kube_recorder_free(r);
    return failed;
}

static int probe_lease(kube_client *kc, const char *ns, const char *name, const char *holder) {
    wc_err err;
    kube_lease l;
    int got = kube_lease_get(kc, ns, name, &l, &err);
    if (got < 0) { fprintf(stderr, "get: %s\n", err.msg); return 1; }
    char now[40];
    wc_rfc3339_micro(now);
    if (got == 1) {
        l.holder = xstrdup(holder);
        l.duration_s = 15;
        l.acquire_time = xstrdup(now);
        l.renew_time = xstrdup(now);
        if (kube_lease_write(kc, ns, name, &l, &err) < 0) { fprintf(stderr, "create: %s\n", err.msg); return 1; }
    }
    char *stale_rv = xstrdup(l.resource_version);
    wc_rfc3339_micro(now);
    free(l.renew_time);
    l.renew_time = xstrdup(now);
    if (kube_lease_write(kc, ns, name, &l, &err) < 0) { fprintf(stderr, "renew: %s\n", err.msg); return 1; }
    /* A write with the old resourceVersion must lose: that is the whole lock. */
    kube_lease stale;
    memset(&stale, 0, sizeof stale);
    stale.holder = xstrdup("intruder");
    stale.duration_s = 15;
    stale.resource_version = stale_rv;
    int stale_rc = kube_lease_write(kc, ns, name, &stale, &err);
    int conflict = stale_rc < 0 && kube_err_conflict(&err);
    kube_lease_free(&stale);
    kube_lease final;
    if (kube_lease_get(kc, ns, name, &final, &err) != 0) { fprintf(stderr, "reget: %s\n", err.msg); return 1; }
    printf("{\"holder\":\"%s\",\"duration\":%d,\"stale_write_conflict\":%s,\"renew_time\":\"%s\"}\n",
           final.holder ? final.holder : "", final.duration_s, conflict ? "true" : "false",
           final.renew_time ? final.renew_time : "");
    kube_lease_free(&final);
    kube_lease_free(&l);
    return conflict ? 0 : 1;
}

int main(int argc, char **argv) {
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    kube_connect_opts conn = {0};
    cli_flag flags[] = {KUBE_CONNECT_FLAGS(conn), {NULL, 0, NULL}};
    /* Connection flags first, then the command and its positional arguments. */
    int first = 1;
    while (first < argc && strncmp(argv[first], "--", 2) == 0) first += strchr(argv[first], '=') ? 1 : 2;
    wc_err err;
    err_clear(&err);
    if (first > argc || cli_parse(first, argv, flags, NULL, 0, NULL, &err) < 0 || first >= argc) {
        fprintf(stderr, "usage: wc-probe [connect flags] request|informer|event|lease ... (%s)\n", err.msg);
        return 2;
    }
    kube_config cfg;
    if (kube_config_load(&conn, &cfg, &err) < 0) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    kube_client *kc = kube_client_new(&cfg, &err);
    kube_config_free(&cfg);
    if (!kc) {
        fprintf(stderr, "error: %s\n", err.msg);
        return 1;
    }
    const char *cmd = argv[first];
    char **a = argv + first + 1;
    int na = argc - first - 1, rc = 2;
    if (strcmp(cmd, "request") == 0) rc = probe_request(kc, na, a);
    else if (strcmp(cmd, "informer") == 0 && na >= 2) rc = probe_informer(kc, a[0], a[1], na > 2 ? a[2] : NULL);
    else if (strcmp(cmd, "whoami") == 0) rc = probe_whoami(kc, na > 0 ? atoi(a[0]) : 1, na > 1 ? atoi(a[1]) : 0);
    else if (strcmp(cmd, "event") == 0 && na == 7) rc = probe_event(kc, a);
    else if (strcmp(cmd, "lease") == 0 && na == 3) rc = probe_lease(kc, a[0], a[1], a[2]);
    else fprintf(stderr, "unknown command or arguments: %s\n", cmd);
    kube_client_free(kc);
    curl_global_cleanup();
    return rc;
}
