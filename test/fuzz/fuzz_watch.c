/* fuzz_watch.c — the watch-stream decoder must never crash, leak or exceed its bound, whatever
 * bytes arrive and however they are split. The first input byte picks the chunk size. */
#include "fuzz_prelude.h"

static int count_events(void *ud, const kube_watch_event *ev, wc_err *err) {
    (void)err;
    size_t *n = ud;
    (*n)++;
    assert(ev->object && cJSON_IsObject(ev->object));
    if (ev->type == KUBE_WATCH_ERROR) assert(ev->reason && ev->message);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    size_t chunk = 1 + data[0] % 64;
    data++, size--;
    size_t events = 0;
    kube_watch_decoder d;
    kube_watch_decoder_init(&d, 4096, count_events, &events);
    wc_err err;
    int rc = 0;
    for (size_t off = 0; off < size && rc == 0; off += chunk) {
        size_t n = size - off < chunk ? size - off : chunk;
        rc = kube_watch_decoder_feed(&d, (const char *)data + off, n, &err);
        assert(d.line.len <= 4096);
    }
    if (rc == 0) kube_watch_decoder_finish(&d, &err);
    kube_watch_decoder_free(&d);
    return 0;
}
