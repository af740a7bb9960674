/* fuzz_kubeconfig.c — the kubeconfig parser must reject or accept any bytes cleanly: no crash,
 * no leak, no read outside the document, a message on every failure. */
#include "fuzz_prelude.h"

static char path[64];

/* The parser reads a file: one scratch file per process, gone when the run ends normally (a
 * crash leaves it next to the crash report). */
static void remove_scratch_file(void) { unlink(path); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) {
        snprintf(path, sizeof path, "/tmp/wc-fuzz-kubeconfig-%d.yaml", (int)getpid());
        atexit(remove_scratch_file);
    }
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    kube_config c;
    wc_err err;
    err_clear(&err);
    if (kube_config_from_kubeconfig(&c, path, NULL, &err) == 0) {
        assert(c.server && (strncmp(c.server, "https://", 8) == 0 || strncmp(c.server, "http://", 7) == 0));
        kube_config_free(&c);
    } else {
        assert(err.msg[0] != '\0');
    }
    return 0;
}
