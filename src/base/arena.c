/*
 * arena.c — region allocator for per-reconcile temporaries.
 *
 * A reconcile builds many short-lived strings (names, JSON, label selectors). Allocating them
 * from an arena and freeing the whole region at the end makes leaks structurally impossible
 * and keeps the hot path free of free() bookkeeping. Long-lived state (caches) never uses an
 * arena.
 */

typedef struct arena_chunk {
    struct arena_chunk *next;
    size_t start;            /* data + start is the first aligned byte */
    size_t used, cap;        /* bytes handed out and usable, from there */
    max_align_t data[];      /* storage follows the header */
} arena_chunk;

/* Every allocation starts at a multiple of sizeof(max_align_t) — not only of its alignment, which
 * is all malloc promises — and sizes round up to it, so any object fits at any pointer handed out
 * whatever the chunk's own address. */
#define ARENA_ALIGN sizeof(max_align_t)

typedef struct arena {
    arena_chunk *head;
    size_t chunk_size; /* default size of a new chunk */
    size_t total;      /* bytes handed out, for tests and metrics */
} arena;

#define ARENA_DEFAULT_CHUNK 8192

static void arena_init(arena *a) {
    a->head = NULL;
    a->chunk_size = ARENA_DEFAULT_CHUNK;
    a->total = 0;
}

/* Frees every chunk; the arena may be reused afterwards. */
static void arena_free(arena *a) {
    arena_chunk *c = a->head;
    while (c) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

/* Where a chunk's allocations start. */
static char *arena_chunk_base(const arena_chunk *c) { return (char *)c->data + c->start; }

/* Never returns NULL: out of memory aborts, as every allocation site would have to. */
static void *arena_alloc(arena *a, size_t n) {
    n = (n + ARENA_ALIGN - 1) & ~(ARENA_ALIGN - 1);
    if (n == 0) n = ARENA_ALIGN;
    if (!a->head || a->head->cap - a->head->used < n) {
        size_t cap = n > a->chunk_size ? n : a->chunk_size;
        arena_chunk *c = malloc(sizeof(arena_chunk) + cap + ARENA_ALIGN); /* room to align the start */
        if (!c) wc_oom();
        c->next = a->head;
        c->start = (ARENA_ALIGN - (uintptr_t)c->data % ARENA_ALIGN) % ARENA_ALIGN;
        c->used = 0;
        c->cap = cap;
        a->head = c;
    }
    void *p = arena_chunk_base(a->head) + a->head->used;
    assert((uintptr_t)p % ARENA_ALIGN == 0 && a->head->used + n <= a->head->cap);
    a->head->used += n;
    a->total += n;
    return p;
}

static void *arena_calloc(arena *a, size_t n) {
    void *p = arena_alloc(a, n);
    memset(p, 0, n);
    return p;
}

static char *arena_strndup(arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

static char *arena_strdup(arena *a, const char *s) {
    return s ? arena_strndup(a, s, strlen(s)) : NULL;
}

static char *arena_vsprintf(arena *a, const char *fmt, va_list ap) {
    assert(fmt);
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    assert(n >= 0);
    char *p = arena_alloc(a, (size_t)n + 1);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    return p;
}

__attribute__((format(printf, 2, 3)))
static char *arena_sprintf(arena *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    char *p = arena_vsprintf(a, fmt, ap);
    va_end(ap);
    return p;
}
