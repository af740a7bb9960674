/*
 * strmap.c — string-keyed hash map (open addressing, linear probing, backward-shift deletion).
 *
 * The program's one hash table: the informer caches (object key → projection) and their
 * indexes, the workqueue's per-key entries, the recreate backoffs, the metrics' counters. Keys
 * are copied and owned by the map; values are the caller's. No tombstones: deletion shifts the
 * following run back, so lookups stay short however many objects come and go (the workqueue
 * adds and releases keys millions of times).
 */

typedef struct strmap_slot {
    char *key;    /* NULL = empty */
    uint64_t hash;
    void *value;
} strmap_slot;

typedef struct strmap {
    strmap_slot *slots;
    size_t cap;   /* power of two, or 0 */
    size_t len;
} strmap;

#define STRMAP_INIT {NULL, 0, 0}

static uint64_t strmap_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a: short keys, good enough spread */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h ? h : 1;
}

static strmap_slot *strmap_find_slot(const strmap *m, const char *key, uint64_t h) {
    if (!m->cap) return NULL;
    assert((m->cap & (m->cap - 1)) == 0 && m->len < m->cap); /* a power of two, never full: probes end */
    size_t mask = m->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        strmap_slot *s = &m->slots[i];
        if (!s->key) return NULL;
        if (s->hash == h && strcmp(s->key, key) == 0) return s;
    }
}

static void *strmap_get(const strmap *m, const char *key) {
    strmap_slot *s = strmap_find_slot(m, key, strmap_hash(key));
    return s ? s->value : NULL;
}

static int strmap_has(const strmap *m, const char *key) { return strmap_find_slot(m, key, strmap_hash(key)) != NULL; }

static void strmap_insert_slot(strmap_slot *slots, size_t cap, char *key, uint64_t h, void *value) {
    size_t mask = cap - 1, i = h & mask;
    while (slots[i].key) i = (i + 1) & mask;
    slots[i].key = key;
    slots[i].hash = h;
    slots[i].value = value;
}

static void strmap_grow(strmap *m) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    strmap_slot *slots = xcalloc(cap, sizeof *slots);
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key) strmap_insert_slot(slots, cap, m->slots[i].key, m->slots[i].hash, m->slots[i].value);
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
}

/* Sets key → value; returns the previous value (NULL if the key was new). */
static void *strmap_put(strmap *m, const char *key, void *value) {
    uint64_t h = strmap_hash(key);
    strmap_slot *s = strmap_find_slot(m, key, h);
    if (s) {
        void *old = s->value;
        s->value = value;
        return old;
    }
    if ((m->len + 1) * 4 > m->cap * 3) strmap_grow(m); /* load factor <= 0.75 */
    strmap_insert_slot(m->slots, m->cap, xstrdup(key), h, value);
    m->len++;
    return NULL;
}

/* Removes key; returns its value (NULL if absent). */
static void *strmap_del(strmap *m, const char *key) {
    uint64_t h = strmap_hash(key);
    strmap_slot *s = strmap_find_slot(m, key, h);
    if (!s) return NULL;
    void *value = s->value;
    free(s->key);
    size_t mask = m->cap - 1, i = (size_t)(s - m->slots);
    m->slots[i].key = NULL;
    /* Backward shift: move later members of the probe run into the hole when allowed. */
    for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
        size_t home = m->slots[j].hash & mask;
        /* The entry at j may move to i only if its home is not in (i, j]. */
        int movable = (i <= j) ? (home <= i || home > j) : (home <= i && home > j);
        if (movable) {
            m->slots[i] = m->slots[j];
            m->slots[j].key = NULL;
            i = j;
        }
    }
    m->len--;
    return value;
}

/* Calls fn for each entry (any order). fn must not modify the map. */
#define strmap_foreach(m, k, v)                                                              \
    for (size_t _i = 0; _i < (m)->cap; _i++)                                                 \
        if (((k) = (m)->slots[_i].key) != NULL && (((v) = (m)->slots[_i].value), 1))

#define strmap_foreach_key(m, k)                                                             \
    for (size_t _i = 0; _i < (m)->cap; _i++)                                                 \
        if (((k) = (m)->slots[_i].key) != NULL)

static void strmap_free(strmap *m, void (*free_value)(void *)) {
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key) {
            if (free_value) free_value(m->slots[i].value);
            free(m->slots[i].key);
        }
    free(m->slots);
    m->slots = NULL;
    m->cap = m->len = 0;
}
