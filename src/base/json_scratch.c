/*
 * json_scratch.c — parse trees that live for one event or one list page, bump-allocated.
 *
 * A watch event or a list page is parsed, projected into a small cache entry, and thrown
 * away. cJSON allocates every node and every string on its own (a Pod is ~1,500 allocations),
 * and with musl's allocator the malloc/free pairs of those throw-away trees were a third of
 * the controller's CPU while it listed 5,000 Pods (BENCHMARKS.md, finding 4). Here the tree is
 * carved out of an arena instead and dropped at once.
 *
 * cJSON has one global pair of allocation hooks, so the hooks consult a per-thread "current
 * scratch": while a scratch is parsing, cJSON's allocations come from its arena; otherwise
 * from malloc. Frees of memory inside the current scratch's arena are no-ops (a cJSON_Delete of
 * a scratch tree, or of a subtree, is harmless); everything else goes to free(). Only the
 * parse itself allocates from the arena: what a caller builds from the tree afterwards
 * (projections, copies) is ordinary heap memory and may outlive the scratch.
 *
 *     json_scratch s;  json_scratch_init(&s);
 *     json_scratch_begin(&s);             // this thread's cJSON allocations → s
 *     cJSON *tree = cJSON_ParseWithLength(text, n);
 *     json_scratch_pause(&s);             // back to malloc; frees into s are still no-ops
 *     ... read tree, build heap objects from it ...
 *     json_scratch_end(&s);               // tree gone; s reusable (keeps one small chunk)
 *     json_scratch_free(&s);
 */

typedef struct json_scratch {
    arena a;
    int parsing;                 /* cJSON allocations on this thread come from a */
    struct json_scratch *outer;  /* the scope this one interrupted (nesting is allowed) */
} json_scratch;

#define JSON_SCRATCH_FIRST_CHUNK (64u << 10)
#define JSON_SCRATCH_MAX_CHUNK (4u << 20)
#define JSON_SCRATCH_KEEP (256u << 10) /* a chunk this small survives json_scratch_end */

static _Thread_local json_scratch *json_scratch_current;

static int json_scratch_owns(const json_scratch *s, const void *p) {
    for (const arena_chunk *c = s->a.head; c; c = c->next)
        if ((const char *)p >= arena_chunk_base(c) && (const char *)p < arena_chunk_base(c) + c->cap) return 1;
    return 0;
}

static void *json_scratch_malloc(size_t n) {
    json_scratch *s = json_scratch_current;
    if (!s || !s->parsing) return malloc(n);
    /* Chunks double (64 KiB → 4 MiB) so a page's tree of tens of MB is a dozen chunks and the
     * ownership test in free stays short. */
    if (s->a.head && s->a.head->cap - s->a.head->used < n + sizeof(max_align_t) && s->a.chunk_size < JSON_SCRATCH_MAX_CHUNK)
        s->a.chunk_size *= 2;
    return arena_alloc(&s->a, n);
}

static void json_scratch_hook_free(void *p) {
    json_scratch *s = json_scratch_current;
    if (!p) return;
    for (; s; s = s->outer)
        if (json_scratch_owns(s, p)) return;
    free(p);
}

static void json_scratch_install_hooks(void) {
    cJSON_Hooks h = {.malloc_fn = json_scratch_malloc, .free_fn = json_scratch_hook_free};
    cJSON_InitHooks(&h);
}

/* Installs the hooks (once). main calls it before any thread starts; init calls it too, for
 * programs built on the modules without main (tests, the probe, the bench tools). */
static void json_scratch_setup(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, json_scratch_install_hooks);
}

static void json_scratch_init(json_scratch *s) {
    json_scratch_setup();
    memset(s, 0, sizeof *s);
    arena_init(&s->a);
    s->a.chunk_size = JSON_SCRATCH_FIRST_CHUNK;
}

static void json_scratch_begin(json_scratch *s) {
    if (json_scratch_current != s) {
        s->outer = json_scratch_current;
        json_scratch_current = s;
    }
    s->parsing = 1;
}

static void json_scratch_pause(json_scratch *s) { s->parsing = 0; }

/* Drops everything parsed since begin and leaves the scope. One chunk of at most
 * JSON_SCRATCH_KEEP is kept for the next event, so a stream of small events allocates
 * nothing; bigger chunks (a list page) go back to the system at once. */
static void json_scratch_end(json_scratch *s) {
    s->parsing = 0;
    if (json_scratch_current == s) json_scratch_current = s->outer;
    s->outer = NULL;
    arena_chunk *keep = NULL, *c = s->a.head;
    while (c) {
        arena_chunk *next = c->next;
        if (!keep && c->cap <= JSON_SCRATCH_KEEP) {
            keep = c;
            keep->next = NULL;
            keep->used = 0;
        } else {
            free(c);
        }
        c = next;
    }
    s->a.head = keep;
    s->a.total = 0;
    s->a.chunk_size = JSON_SCRATCH_FIRST_CHUNK;
}

static void json_scratch_free(json_scratch *s) {
    if (json_scratch_current == s) json_scratch_current = s->outer;
    arena_free(&s->a);
}
