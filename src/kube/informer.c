/*
 * informer.c — list + watch one resource into a projected cache, client-go's reflector shape.
 *
 * State machine, one thread per informer:
 *
 *   LIST  ── streamed: a watch with sendInitialEvents (client-go's WatchListClient), or
 *     ▲      paged (limit/continue) when the server refuses that ─→ diff against the cache,
 *     │      emit add/update/delete, remember the list's resourceVersion; synced = 1
 *     │ 410 Gone / expired continue                    │
 *     │                                                ▼
 *   BACKOFF ◀── transport error ── WATCH (resourceVersion=last, allowWatchBookmarks,
 *     0.8 s → 30 s, jitter            timeoutSeconds random 300–600) ─→ apply events;
 *     reset after a healthy watch     BOOKMARK moves last rv; normal end → WATCH again
 *
 * Why streamed: a paged list makes the API server encode a whole page while we wait, then
 * we parse it while the server waits; with the initial state as a watch stream both work at
 * once, one object at a time, and no page (up to megabytes) is ever held. The stream is also
 * the watch: once the bookmark marked "k8s.io/initial-events-end" arrives, the same
 * connection carries the changes. Servers before 1.27, or with the WatchList feature gate off
 * (1.33 by default), answer 400/422 Invalid; the informer then lists in pages from then on.
 *
 * The cache (kube/cache.c) keeps a projection of each object, one allocation per entry.
 *
 * Handlers run on the informer thread without the cache lock held; they should only enqueue
 * keys. Readers take copies under a read lock.
 */

/* old is NULL for adds, new is NULL for deletes. Both are projections, valid during the call. */
typedef void (*kube_informer_handler)(void *ud, const char *key, const cJSON *old_obj, const cJSON *new_obj);

typedef struct kube_informer_options {
    const kube_resource *resource;
    const char *namespace;       /* NULL = all namespaces */
    const char *label_selector;
    const char *field_selector;
    kube_project_fn project;     /* NULL = keep metadata (name, namespace, uid, labels, rv) only */
    kube_informer_handler handler;
    void *ud;
    kube_index_fn index;         /* optional secondary index */
    long page_size;              /* default 500 (paged lists) */
    int paged_only;              /* never stream the initial list (tests; see the header) */
    int watch_min_s, watch_max_s;/* default 300, 600 */
    int64_t backoff_min_ms, backoff_max_ms; /* default 800, 30000 */
} kube_informer_options;

typedef struct kube_informer_stats {
    long lists;          /* complete-state lists started, streamed or paged */
    long streamed;       /* of which completed as a stream (initial-events-end seen) */
    long relists_gone, watches, watch_errors, events;
} kube_informer_stats;

typedef struct kube_informer {
    kube_informer_options o;
    kube_client *kc;
    char *name;                  /* for logs: "workers", "pods" */
    wc_thread thread;            /* the list/watch loop */
    atomic_int synced;
    kube_cache cache;
    char *last_rv;
    kube_informer_stats stats;
    int stream_refused;          /* the server would not stream a list: page from now on */
    unsigned seed;
} kube_informer;

/* The default projection: identity and labels only. */
static cJSON *kube_project_metadata(const cJSON *obj) {
    cJSON *out = cJSON_CreateObject();
    const cJSON *md = json_get(obj, "metadata");
    cJSON *m = cJSON_AddObjectToObject(out, "metadata");
    static const char *keep[] = {"name", "namespace", "uid", "resourceVersion", "labels", "deletionTimestamp"};
    for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) {
        const cJSON *v = json_get(md, keep[i]);
        if (v) cJSON_AddItemToObject(m, keep[i], cJSON_Duplicate(v, 1));
    }
    return out;
}

/* "namespace/name" (or "name" for cluster-scoped objects), the workqueue key shape. */
static char *kube_object_key(const cJSON *obj) {
    const char *ns = json_str_at(obj, "metadata.namespace");
    const char *name = json_str_at(obj, "metadata.name");
    if (!name) return NULL;
    buf k = BUF_INIT;
    if (ns && *ns) buf_printf(&k, "%s/%s", ns, name);
    else buf_puts(&k, name);
    return buf_steal(&k);
}

static kube_informer *kube_informer_new(kube_client *kc, const char *name, const kube_informer_options *o) {
    kube_informer *inf = xcalloc(1, sizeof *inf);
    inf->o = *o;
    /* its own copies: a caller's selector may be a buffer on its stack (explain's is) */
    inf->o.namespace = xstrdup(o->namespace);
    inf->o.label_selector = xstrdup(o->label_selector);
    inf->o.field_selector = xstrdup(o->field_selector);
    if (!inf->o.project) inf->o.project = kube_project_metadata;
    if (inf->o.page_size <= 0) inf->o.page_size = 500;
    if (inf->o.watch_min_s <= 0) inf->o.watch_min_s = 300;
    if (inf->o.watch_max_s < inf->o.watch_min_s) inf->o.watch_max_s = inf->o.watch_min_s == 300 ? 600 : inf->o.watch_min_s;
    if (inf->o.backoff_min_ms <= 0) inf->o.backoff_min_ms = 800;
    if (inf->o.backoff_max_ms <= 0) inf->o.backoff_max_ms = 30000;
    inf->kc = kc;
    inf->name = xstrdup(name);
    kube_cache_init(&inf->cache, inf->o.index);
    wc_thread_init(&inf->thread);
    inf->seed = (unsigned)(wc_now_ms() ^ (int64_t)(uintptr_t)inf);
    return inf;
}

static void kube_informer_emit(kube_informer *inf, const char *key, const cJSON *old_obj, const cJSON *new_obj) {
    inf->stats.events++;
    if (inf->o.handler) inf->o.handler(inf->o.ud, key, old_obj, new_obj);
}

/* Projects obj into the cache under key and tells the handler (add or update). */
static void kube_informer_upsert(kube_informer *inf, const char *key, const char *rv, const cJSON *obj) {
    cJSON *proj = inf->o.project(obj);
    cJSON *old = kube_cache_put(&inf->cache, key, rv, proj);
    kube_informer_emit(inf, key, old, proj);
    cJSON_Delete(old);
    cJSON_Delete(proj);
}

/* Applies one watched object (ADDED/MODIFIED/DELETED). */
static void kube_informer_apply(kube_informer *inf, kube_watch_type type, const cJSON *obj) {
#ifdef WC_FAILPOINTS
    /* freeze-cache-<informer>: after its first list the cache stops following the API server,
     * as a watch that lags forever would: lets e2e tests prove a decision checks the API server
     * itself where the SPEC says the cache is not enough (the finalizer, a lost Sandbox). */
    char fp[80];
    snprintf(fp, sizeof fp, "freeze-cache-%s", inf->name);
    if (atomic_load(&inf->synced) && failpoint_armed(fp)) return;
#endif
    char *key = kube_object_key(obj);
    if (!key) return;
    const char *rv = json_str_at(obj, "metadata.resourceVersion");
    if (type == KUBE_WATCH_DELETED) {
        cJSON *old = kube_cache_remove(&inf->cache, key);
        /* A delete for an object never seen still tells handlers; give them the final state. */
        cJSON *fin = inf->o.project(obj);
        kube_informer_emit(inf, key, old ? old : fin, NULL);
        cJSON_Delete(old);
        cJSON_Delete(fin);
    } else {
        kube_informer_upsert(inf, key, rv, obj);
    }
    free(key);
}

/* ---- LIST ---- */

/* One object of a complete-state list (a page item or an initial event): remembered in
 * listed; applied, as a watch event would be, unless the cache already holds this
 * resourceVersion (then not even projected). */
static void kube_informer_list_item(kube_informer *inf, strmap *listed, const cJSON *item) {
    char *key = kube_object_key(item);
    if (!key) return;
    const char *irv = json_str_at(item, "metadata.resourceVersion");
    strmap_put(listed, key, (void *)1);
    if (!kube_cache_has_rv(&inf->cache, key, irv)) kube_informer_upsert(inf, key, irv, item);
    free(key);
}

/* The whole list is in: cached keys it did not contain are deleted (handlers thus see exactly
 * what changed while we were not watching), rv (consumed) becomes the watch's starting point,
 * and the informer is synced. listed is freed. */
static void kube_informer_list_done(kube_informer *inf, strmap *listed, char *rv) {
    size_t ngone;
    char **gone = kube_cache_keys(&inf->cache, listed, &ngone);
    for (size_t i = 0; i < ngone; i++) {
        cJSON *old = kube_cache_remove(&inf->cache, gone[i]);
        kube_informer_emit(inf, gone[i], old, NULL);
        cJSON_Delete(old);
        free(gone[i]);
    }
    free(gone);
    strmap_free(listed, NULL);
    free(inf->last_rv);
    inf->last_rv = rv;
    if (!atomic_load(&inf->synced)) {
        atomic_store(&inf->synced, 1);
        log_info("informer synced", "informer", inf->name);
    }
}

/* Lists everything in pages. Each listed object is applied at once (a reader may see some
 * objects of the new list before others, never a torn object). Returns 0, 1 when the list must
 * restart (continue token expired), -1 on error. */
static int kube_informer_list(kube_informer *inf, wc_err *err) {
    strmap listed = STRMAP_INIT; /* keys seen in this list (values unused) */
    char *cont = NULL, *rv = NULL;
    int rc = 0;
    inf->stats.lists++;
    json_scratch scratch; /* the page's tree: dropped whole once its items are applied */
    json_scratch_init(&scratch);
    do {
        cJSON *page = NULL;
        json_scratch_begin(&scratch);
        int lrc = kube_list_page(inf->kc, inf->o.resource, inf->o.namespace, inf->o.label_selector,
                                 inf->o.field_selector, inf->o.page_size, cont, &page, err);
        json_scratch_pause(&scratch);
        if (lrc < 0) {
            json_scratch_end(&scratch);
            rc = kube_err_is(err, 410) ? 1 : -1;
            break;
        }
        const char *prv = json_str_at(page, "metadata.resourceVersion");
        const char *pcont = json_str_at(page, "metadata.continue");
        free(rv);
        rv = xstrdup(prv ? prv : "");
        free(cont);
        cont = pcont && *pcont ? xstrdup(pcont) : NULL;
        const cJSON *item;
        cJSON_ArrayForEach(item, json_get(page, "items")) kube_informer_list_item(inf, &listed, item);
        json_scratch_end(&scratch);
    } while (cont && !wc_thread_stopping(&inf->thread));
    json_scratch_free(&scratch);
    free(cont);
    if (rc != 0 || wc_thread_stopping(&inf->thread)) {
        strmap_free(&listed, NULL);
        free(rv);
        return rc;
    }
    kube_informer_list_done(inf, &listed, rv);
    return 0;
}

/* An informer filled by one paged LIST now, never watching (no thread): what a cache would hold,
 * read from the API server itself. explain gathers a Worker's instances through it so the
 * backends observe exactly as they do from run's caches. NULL with err when the list fails. */
static void kube_informer_free(kube_informer *inf);
#define KUBE_SNAPSHOT_TRIES 5

static kube_informer *kube_informer_snapshot(kube_client *kc, const char *name, const kube_informer_options *o,
                                             wc_err *err) {
    kube_informer *inf = kube_informer_new(kc, name, o);
    inf->o.handler = NULL; /* nothing to tell: no queue behind a snapshot */
    int rc = 1;
    /* An expired continue token: list again, a few times — a namespace that changes faster than
     * it can be paged through is an error to report, not a loop. */
    for (int tries = 0; rc == 1 && tries < KUBE_SNAPSHOT_TRIES; tries++) rc = kube_informer_list(inf, err);
    if (rc == 1)
        err_set(err, WC_EIO, "listing %s: the continue token expired %d times in a row (the list changes faster than "
                             "it can be read); try again", name, KUBE_SNAPSHOT_TRIES);
    if (rc == 0) return inf;
    kube_informer_free(inf);
    return NULL;
}

/* ---- WATCH ---- */

typedef struct kube_watch_ctx {
    kube_informer *inf;
    kube_watch_decoder dec;
    wc_err *err;
    strmap listed;  /* streamed list: keys of the initial events so far */
    int listing;    /* streamed list, before the initial-events-end bookmark */
    int gone;       /* a 410 ERROR event arrived: relist */
    int failed;     /* a decode error or another ERROR event */
    long events;
} kube_watch_ctx;

/* The bookmark that closes a streamed list's initial events. */
static int kube_is_initial_events_end(const cJSON *obj) {
    const cJSON *md = json_get(obj, "metadata");
    const cJSON *a = json_get(json_get(md, "annotations"),
                                                      "k8s.io/initial-events-end");
    return cJSON_IsString(a) && strcmp(a->valuestring, "true") == 0;
}

static int kube_watch_on_event(void *ud, const kube_watch_event *ev, wc_err *err) {
    kube_watch_ctx *w = ud;
    kube_informer *inf = w->inf;
    const char *rv = json_str_at(ev->object, "metadata.resourceVersion");
    switch (ev->type) {
    case KUBE_WATCH_ERROR:
        if (ev->status_code == 410) w->gone = 1;
        else w->failed = 1;
        err_set(err, WC_EHTTP, "watch %s: %d %s: %s", inf->name, ev->status_code, ev->reason, ev->message);
        err->http_status = ev->status_code;
        return 1; /* the stream is over either way */
    case KUBE_WATCH_BOOKMARK:
        if (w->listing && kube_is_initial_events_end(ev->object)) {
            w->listing = 0;
            inf->stats.streamed++;
            kube_informer_list_done(inf, &w->listed, xstrdup(rv ? rv : ""));
            return 0;
        }
        break;
    default:
        w->events++;
        if (w->listing && ev->type != KUBE_WATCH_DELETED) {
            /* An initial event's resourceVersion is its object's, not the stream's position:
             * last_rv waits for the closing bookmark. */
            kube_informer_list_item(inf, &w->listed, ev->object);
            return 0;
        }
        kube_informer_apply(inf, ev->type, ev->object);
    }
    if (rv && *rv && !w->listing) {
        free(inf->last_rv);
        inf->last_rv = xstrdup(rv);
    }
    return 0;
}

static int kube_watch_on_data(void *ud, const char *p, size_t n) {
    kube_watch_ctx *w = ud;
    if (kube_watch_decoder_feed(&w->dec, p, n, w->err) < 0) {
        if (!w->gone) w->failed = 1;
        return 1;
    }
    return 0;
}

enum {
    KUBE_WATCH_ENDED = 0,   /* normal end (timeoutSeconds): watch again from last_rv */
    KUBE_WATCH_RELIST = 1,  /* 410: the resourceVersion is too old, list again */
    KUBE_WATCH_FAILED = -1, /* error: back off */
    KUBE_WATCH_REFUSED = 2, /* a streamed list the server does not offer (400/422 Invalid) */
    KUBE_WATCH_INCOMPLETE = -2, /* a streamed list ended cleanly before its initial events did */
};

/* Runs one watch until the server ends it, an error, or stop. With list set, the watch streams
 * a complete-state list first (sendInitialEvents, consistent: at least as fresh as a quorum
 * read) and the informer is synced when its initial events end. Returns a KUBE_WATCH_* code.
 * *healthy says
 * whether it delivered events or lasted long enough to reset the backoff. */
static int kube_informer_watch(kube_informer *inf, int list, int *healthy, wc_err *err) {
    int timeout_s = inf->o.watch_min_s + (int)(rand_r(&inf->seed) % (unsigned)(inf->o.watch_max_s - inf->o.watch_min_s + 1));
    buf path = BUF_INIT;
    kube_path(&path, inf->o.resource, inf->o.namespace, NULL, NULL);
    kube_query_add(&path, "watch", "1");
    if (list) {
        kube_query_add(&path, "sendInitialEvents", "true");
        kube_query_add(&path, "resourceVersionMatch", "NotOlderThan");
    } else {
        kube_query_add(&path, "resourceVersion", inf->last_rv);
    }
    kube_query_add(&path, "allowWatchBookmarks", "true");
    char ts[16];
    snprintf(ts, sizeof ts, "%d", timeout_s);
    kube_query_add(&path, "timeoutSeconds", ts);
    kube_query_add(&path, "labelSelector", inf->o.label_selector);
    kube_query_add(&path, "fieldSelector", inf->o.field_selector);
    kube_watch_ctx w;
    memset(&w, 0, sizeof w);
    /* The decoder's error (invalid JSON, oversize event, an ERROR event) is the cause; the
     * transport's "aborted by the data callback" that follows it must not overwrite it. */
    wc_err derr;
    err_clear(&derr);
    w.inf = inf;
    w.err = &derr;
    w.listing = list;
    if (list) inf->stats.lists++;
    kube_watch_decoder_init(&w.dec, 0, kube_watch_on_event, &w);
    kube_call call = {.method = "GET", .path = path.data, .on_data = kube_watch_on_data, .ud = &w,
                      /* the server closes at timeoutSeconds; our own deadline is a backstop */
                      .timeout_ms = (long)(timeout_s + 30) * 1000};
    http_response resp;
    http_response_init(&resp);
    int64_t t0 = wc_now_ms();
    inf->stats.watches++;
    int rc = kube_do(inf->kc, &call, &resp, err);
    if (rc == 0 && kube_watch_decoder_finish(&w.dec, &derr) < 0) rc = -1;
    if (derr.code != WC_OK) *err = derr;
    int64_t lasted = wc_now_ms() - t0;
    *healthy = w.events > 0 || lasted > 60000;
    int result;
    if (w.gone || kube_err_is(err, 410)) {
        result = KUBE_WATCH_RELIST;
    } else if (list && (kube_err_is(err, 400) || kube_err_is(err, 422))) {
        result = KUBE_WATCH_REFUSED;
    } else if (rc == 0 && !w.failed && !w.listing) {
        result = KUBE_WATCH_ENDED;
    } else if (rc == 0 && !w.failed) {
        err_set(err, WC_EIO, "watch %s: the stream ended before its initial events did", inf->name);
        inf->stats.watch_errors++;
        result = KUBE_WATCH_INCOMPLETE;
    } else {
        inf->stats.watch_errors++;
        result = KUBE_WATCH_FAILED;
    }
    if (w.listing) strmap_free(&w.listed, NULL);
    http_response_free(&resp);
    kube_watch_decoder_free(&w.dec);
    buf_free(&path);
    return result;
}

/* ---- the state machine ---- */

typedef enum kube_informer_state {
    INFORMER_LIST,    /* a complete-state list: streamed, or paged once streaming is refused */
    INFORMER_WATCH,   /* the changes since the last resourceVersion */
    INFORMER_BACKOFF, /* after an error: sleep, then `resume` */
} kube_informer_state;

typedef struct kube_informer_loop {
    kube_informer_state resume;  /* where BACKOFF goes on: LIST until a list completed, then WATCH */
    int64_t backoff_ms;          /* 0.8 s doubling to 30 s, reset after a healthy watch */
    int incomplete_streams;      /* streamed lists in a row that ended before their initial events */
    wc_err err;
} kube_informer_loop;

/* LIST, paged: 410 (an expired continue token) lists again at once. */
static kube_informer_state kube_informer_list_paged(kube_informer *inf, kube_informer_loop *l) {
    int rc = kube_informer_list(inf, &l->err);
    if (rc == 0) return INFORMER_WATCH;
    if (rc == 1) {
        inf->stats.relists_gone++;
        return INFORMER_LIST;
    }
    if (!wc_thread_stopping(&inf->thread)) log_warn("informer list failed", "informer", inf->name, "error", l->err.msg);
    l->resume = INFORMER_LIST;
    return INFORMER_BACKOFF;
}

/* LIST or WATCH as one watch stream (a streamed list goes on as the watch). */
static kube_informer_state kube_informer_stream(kube_informer *inf, kube_informer_loop *l, int listing) {
    int healthy = 0;
    long streamed = inf->stats.streamed;
    int rc = kube_informer_watch(inf, listing, &healthy, &l->err);
    if (healthy) l->backoff_ms = inf->o.backoff_min_ms;
    int listed = !listing || inf->stats.streamed > streamed;
    if (listing && listed) l->incomplete_streams = 0;
    switch (rc) {
    case KUBE_WATCH_ENDED:
        return INFORMER_WATCH;
    case KUBE_WATCH_REFUSED:
        log_info("the API server does not stream lists (WatchList off, or older than 1.27): listing in pages",
                 "informer", inf->name, "error", l->err.msg);
        inf->stream_refused = 1;
        return INFORMER_LIST;
    case KUBE_WATCH_RELIST:
        inf->stats.relists_gone++;
        log_info("watch expired, relisting", "informer", inf->name);
        return INFORMER_LIST;
    case KUBE_WATCH_INCOMPLETE:
        /* A stream that keeps ending before its initial events do (a list longer than a
         * watch may last) would never sync: page instead. */
        if (++l->incomplete_streams >= 3) {
            log_warn("streamed list did not complete three times: listing in pages", "informer", inf->name,
                     "error", l->err.msg);
            inf->stream_refused = 1;
        }
        break;
    default:
        break;
    }
    if (!wc_thread_stopping(&inf->thread)) log_warn("watch failed", "informer", inf->name, "error", l->err.msg);
    l->resume = listed ? INFORMER_WATCH : INFORMER_LIST;
    return INFORMER_BACKOFF;
}

/* BACKOFF: jitter within [backoff/2, backoff] keeps many informers from reconnecting in step. */
static kube_informer_state kube_informer_backoff(kube_informer *inf, kube_informer_loop *l) {
    int64_t sleep_ms = l->backoff_ms / 2 + (int64_t)(rand_r(&inf->seed) % (unsigned)(l->backoff_ms / 2 + 1));
    wc_thread_sleep(&inf->thread, sleep_ms);
    l->backoff_ms = l->backoff_ms * 2 > inf->o.backoff_max_ms ? inf->o.backoff_max_ms : l->backoff_ms * 2;
    return l->resume;
}

/* The informer's thread: the state machine of the header, until stopped. */
static void *kube_informer_main(void *arg) {
    kube_informer *inf = arg;
    kube_informer_loop l = {.resume = INFORMER_LIST, .backoff_ms = inf->o.backoff_min_ms};
    kube_informer_state st = INFORMER_LIST;
    while (!wc_thread_stopping(&inf->thread)) {
        err_clear(&l.err);
        switch (st) {
        case INFORMER_LIST:
            st = inf->o.paged_only || inf->stream_refused ? kube_informer_list_paged(inf, &l) : kube_informer_stream(inf, &l, 1);
            break;
        case INFORMER_WATCH: st = kube_informer_stream(inf, &l, 0); break;
        case INFORMER_BACKOFF: st = kube_informer_backoff(inf, &l); break;
        }
    }
    return NULL;
}

static int kube_informer_start(kube_informer *inf, wc_err *err) {
    char what[300];
    snprintf(what, sizeof what, "informer %s", inf->name);
    return wc_thread_start(&inf->thread, kube_informer_main, inf, what, err);
}

/* Stops the thread. In-flight requests are aborted through the client's cancel flag, which the
 * caller sets at shutdown; here we only stop looping and wake a sleeping backoff. */
static void kube_informer_stop(kube_informer *inf) { wc_thread_stop(&inf->thread); }

static void kube_informer_free(kube_informer *inf) {
    if (!inf) return;
    kube_informer_stop(inf);
    kube_cache_free(&inf->cache);
    wc_thread_destroy(&inf->thread);
    free(inf->last_rv);
    free(inf->name);
    free((char *)inf->o.namespace);
    free((char *)inf->o.label_selector);
    free((char *)inf->o.field_selector);
    free(inf);
}

static int kube_informer_synced(kube_informer *inf) { return atomic_load(&inf->synced); }

/* Waits until the first list completed (or timeout). */
static int kube_informer_wait_synced(kube_informer *inf, int64_t timeout_ms) {
    int64_t deadline = wc_now_ms() + timeout_ms;
    while (!kube_informer_synced(inf)) {
        if (wc_now_ms() >= deadline || wc_thread_stopping(&inf->thread)) return -1;
        wc_sleep_ms(10);
    }
    return 0;
}

/* Reads: copies of the cached projections (caller frees). */
static cJSON *kube_informer_get(kube_informer *inf, const char *key) { return kube_cache_get(&inf->cache, key); }

static cJSON *kube_informer_by_index(kube_informer *inf, const char *ikey) {
    return kube_cache_by_index(&inf->cache, ikey);
}

/* Every key in the cache (caller frees each and the array); *n receives the count. */
static char **kube_informer_keys(kube_informer *inf, size_t *n) { return kube_cache_keys(&inf->cache, NULL, n); }
