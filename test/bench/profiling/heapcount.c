/* Live-heap counter for a static musl build: link with -Wl,--wrap=malloc,... ; prints live bytes
 * and allocation count to stderr every 2 s. Profiling aid only. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <unistd.h>
void *__real_malloc(size_t); void *__real_calloc(size_t, size_t); void *__real_realloc(void *, size_t); void __real_free(void *);
static atomic_long live_bytes, live_allocs, peak_bytes;
#define HDR 16
static void acc(long d, long c) { long v = atomic_fetch_add(&live_bytes, d) + d; atomic_fetch_add(&live_allocs, c); long p = atomic_load(&peak_bytes); while (v > p && !atomic_compare_exchange_weak(&peak_bytes, &p, v)) {} }
void *__wrap_malloc(size_t n) { char *p = __real_malloc(n + HDR); if (!p) return NULL; *(size_t *)p = n; acc((long)n, 1); return p + HDR; }
void *__wrap_calloc(size_t a, size_t b) { size_t n = a * b; char *p = __wrap_malloc(n); if (p) memset(p, 0, n); return p; }
void __wrap_free(void *q) { if (!q) return; char *p = (char *)q - HDR; acc(-(long)*(size_t *)p, -1); __real_free(p); }
void *__wrap_realloc(void *q, size_t n) { if (!q) return __wrap_malloc(n); char *p = (char *)q - HDR; size_t old = *(size_t *)p; char *r = __real_realloc(p, n + HDR); if (!r) return NULL; *(size_t *)r = n; acc((long)n - (long)old, 0); return r + HDR; }
static void *rep(void *a) { (void)a; for (;;) { sleep(2); fprintf(stderr, "HEAP live=%ld allocs=%ld peak=%ld\n", atomic_load(&live_bytes), atomic_load(&live_allocs), atomic_load(&peak_bytes)); } return NULL; }
__attribute__((constructor)) static void start(void) { pthread_t t; pthread_create(&t, NULL, rep, NULL); pthread_detach(t); }
