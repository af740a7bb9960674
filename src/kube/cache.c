/*
 * cache.c — an informer's store: a projection of each object by "namespace/name", its
 * resourceVersion, and a secondary index (a Worker's instances by the Worker's key).
 *
 * It keeps the projection (only the fields the controller reads, chosen by the caller's project
 * function), not the object: a Pod is ~4 KiB of JSON, its projection a few hundred bytes. Each
 * entry is ONE allocation holding the projection serialized, its resourceVersion and its index
 * key: a cJSON tree of the same projection is ~150 allocations and 5x the bytes (BENCHMARKS.md,
 * finding 2), and thousands of small long-lived allocations interleaved with transient ones keep
 * the heap fragmented. The serialized projection is kept as a delta against the cache's first
 * one (delta.c): projections of one kind share most of their bytes, and the shared bytes were
 * most of the memory per Worker. Readers get a freshly parsed copy.
 *
 * The informer's thread writes; any thread reads, under a read lock.
 */

typedef cJSON *(*kube_project_fn)(const cJSON *obj);
/* Secondary index: returns the index key for a projection (caller frees) or NULL for none. */
typedef char *(*kube_index_fn)(const cJSON *proj);

typedef struct kube_cache_entry {
    const char *rv;    /* into text[]: after the projection */
    const char *index; /* into text[]: secondary index key, or NULL */
    uint32_t text_len; /* the projection's bytes in text[] */
    uint32_t json_len; /* the projection serialized: text_len, or what the delta decodes to */
    unsigned char delta; /* text[] is a delta against the cache's reference */
    char text[];       /* the projection (serialized, or its delta); then rv, then the index key */
} kube_cache_entry;

typedef struct kube_cache {
    pthread_rwlock_t mu;
    delta_ref ref;     /* the first projection stored: set once, by the informer's thread, before
                          any entry that uses it is published under the lock */
    strmap entries;    /* "ns/name" → kube_cache_entry */
    strmap index;      /* index key → kube_index_set of primary keys */
    kube_index_fn index_fn;
} kube_cache;

/* The primary keys under one index key: a handful at most (a Worker's Pods), so a small array
 * beats a hash map (whose empty 16-slot table alone is 384 bytes per Worker). */
typedef struct kube_index_set {
    size_t n, cap;
    char *keys[];
} kube_index_set;

static void kube_cache_init(kube_cache *c, kube_index_fn index_fn) {
    memset(c, 0, sizeof *c);
    pthread_rwlock_init(&c->mu, NULL);
    c->index_fn = index_fn;
}

static void kube_index_free(void *p) {
    kube_index_set *set = p;
    if (!set) return;
    for (size_t i = 0; i < set->n; i++) free(set->keys[i]);
    free(set);
}

static void kube_cache_free(kube_cache *c) {
    strmap_free(&c->entries, free);
    strmap_free(&c->index, kube_index_free);
    delta_ref_free(&c->ref);
    pthread_rwlock_destroy(&c->mu);
}

/* Packs a projection (not consumed) into one allocation with its resourceVersion and index key.
 * The first projection becomes the cache's reference; each is kept as its delta when shorter. */
static kube_cache_entry *kube_cache_entry_new(kube_cache *c, const char *rv, const cJSON *proj) {
    char *json = cJSON_PrintUnformatted(proj);
    if (!json) wc_oom();
    char *ikey = c->index_fn ? c->index_fn(proj) : NULL;
    size_t jl = strlen(json), rl = strlen(rv ? rv : ""), il = ikey ? strlen(ikey) + 1 : 0;
    if (jl > UINT32_MAX) wc_oom(); /* a projection is bounded by the watch event limit, far below */
    if (!c->ref.text) delta_ref_set(&c->ref, json, jl);
    buf delta = BUF_INIT;
    int is_delta = delta_encode(&c->ref, json, jl, &delta) == 0 && delta.len < jl;
    const char *text = is_delta ? delta.data : json;
    size_t tl = is_delta ? delta.len : jl;
    kube_cache_entry *e = xmalloc(sizeof *e + tl + 1 + rl + 1 + il);
    memcpy(e->text, text, tl);
    e->text[tl] = '\0';
    e->text_len = (uint32_t)tl;
    e->json_len = (uint32_t)jl;
    e->delta = (unsigned char)is_delta;
    buf_free(&delta);
    char *p = e->text + tl + 1;
    memcpy(p, rv ? rv : "", rl + 1);
    e->rv = p;
    p += rl + 1;
    e->index = NULL;
    if (ikey) {
        memcpy(p, ikey, il);
        e->index = p;
    }
    free(json);
    free(ikey);
    return e;
}

/* A fresh tree of an entry's projection (caller frees). The text is ours, so it decodes and
 * parses. */
static cJSON *kube_cache_entry_parse(const kube_cache *c, const kube_cache_entry *e) {
    if (!e->delta) {
        cJSON *obj = cJSON_ParseWithLength(e->text, e->text_len);
        if (!obj) wc_oom();
        return obj;
    }
    buf json = BUF_INIT;
    buf_reserve(&json, (size_t)e->json_len + 1);
    int rc = delta_decode(&c->ref, e->text, e->text_len, &json);
    assert(rc == 0 && json.len == e->json_len && "a delta this cache encoded");
    (void)rc;
    cJSON *obj = cJSON_ParseWithLength(json.data, json.len);
    if (!obj) wc_oom();
    buf_free(&json);
    return obj;
}

static void kube_index_add(kube_cache *c, const char *ikey, const char *key) {
    if (!ikey) return;
    kube_index_set *set = strmap_get(&c->index, ikey);
    for (size_t i = 0; set && i < set->n; i++)
        if (strcmp(set->keys[i], key) == 0) return;
    if (!set || set->n == set->cap) {
        size_t cap = set ? set->cap * 2 : 1;
        kube_index_set *grown = xrealloc(set, sizeof *grown + cap * sizeof grown->keys[0]);
        if (!set) grown->n = 0;
        grown->cap = cap;
        set = grown;
        strmap_put(&c->index, ikey, set);
    }
    set->keys[set->n++] = xstrdup(key);
}

static void kube_index_remove(kube_cache *c, const char *ikey, const char *key) {
    if (!ikey) return;
    kube_index_set *set = strmap_get(&c->index, ikey);
    if (!set) return;
    for (size_t i = 0; i < set->n; i++)
        if (strcmp(set->keys[i], key) == 0) {
            free(set->keys[i]);
            set->keys[i] = set->keys[--set->n];
            break;
        }
    if (set->n == 0) kube_index_free(strmap_del(&c->index, ikey));
}

/* Replaces key's entry (or removes it: e NULL) and returns the previous projection (caller
 * frees), NULL when there was none. */
static cJSON *kube_cache_swap(kube_cache *c, const char *key, kube_cache_entry *e) {
    pthread_rwlock_wrlock(&c->mu);
    kube_cache_entry *old = e ? strmap_put(&c->entries, key, e) : strmap_del(&c->entries, key);
    if (old) kube_index_remove(c, old->index, key);
    if (e) kube_index_add(c, e->index, key);
    pthread_rwlock_unlock(&c->mu);
    cJSON *old_obj = old ? kube_cache_entry_parse(c, old) : NULL;
    free(old);
    return old_obj;
}

static cJSON *kube_cache_put(kube_cache *c, const char *key, const char *rv, const cJSON *proj) {
    return kube_cache_swap(c, key, kube_cache_entry_new(c, rv, proj));
}

static cJSON *kube_cache_remove(kube_cache *c, const char *key) { return kube_cache_swap(c, key, NULL); }

/* Whether key is cached at exactly this resourceVersion (a relist then skips it). */
static int kube_cache_has_rv(kube_cache *c, const char *key, const char *rv) {
    pthread_rwlock_rdlock(&c->mu);
    kube_cache_entry *cur = strmap_get(&c->entries, key);
    int same = cur && strcmp(cur->rv, rv ? rv : "") == 0;
    pthread_rwlock_unlock(&c->mu);
    return same;
}

/* Every key (caller frees each and the array), or only those not in `except` when given. */
static char **kube_cache_keys(kube_cache *c, const strmap *except, size_t *n) {
    pthread_rwlock_rdlock(&c->mu);
    char **keys = xcalloc(c->entries.len + 1, sizeof *keys);
    size_t i = 0;
    const char *k;
    strmap_foreach_key(&c->entries, k) if (!except || !strmap_has(except, k)) keys[i++] = xstrdup(k);
    pthread_rwlock_unlock(&c->mu);
    *n = i;
    return keys;
}

/* A copy of the cached projection for key (caller frees), or NULL. */
static cJSON *kube_cache_get(kube_cache *c, const char *key) {
    pthread_rwlock_rdlock(&c->mu);
    kube_cache_entry *e = strmap_get(&c->entries, key);
    cJSON *copy = e ? kube_cache_entry_parse(c, e) : NULL;
    pthread_rwlock_unlock(&c->mu);
    return copy;
}

/* Copies of every projection under an index key, as a cJSON array (caller frees). */
static cJSON *kube_cache_by_index(kube_cache *c, const char *ikey) {
    cJSON *arr = json_checked(cJSON_CreateArray());
    pthread_rwlock_rdlock(&c->mu);
    kube_index_set *set = strmap_get(&c->index, ikey);
    for (size_t i = 0; set && i < set->n; i++) {
        kube_cache_entry *e = strmap_get(&c->entries, set->keys[i]);
        assert(e && "the index names only cached keys");
        cJSON_AddItemToArray(arr, kube_cache_entry_parse(c, e));
    }
    pthread_rwlock_unlock(&c->mu);
    return arr;
}
