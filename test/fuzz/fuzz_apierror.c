/* fuzz_apierror.c — an API server's (or a proxy's) error response, whatever its body and status,
 * becomes a bounded, redacted wc_err: code WC_EHTTP, the status kept, the message
 * "METHOD path: STATUS ..." NUL-terminated inside its buffer, and no registered secret or
 * bearer token echoed back. Input: 2 bytes status, 1 byte Retry-After, the body. */
#include "fuzz_prelude.h"

#define PLANTED "planted-token-7Hq2mX"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int once;
    if (!once) {
        once = 1;
        log_register_secret(PLANTED);
    }
    if (size < 3) return 0;
    http_response resp;
    http_response_init(&resp);
    resp.status = (long)((data[0] << 8) | data[1]);
    resp.retry_after_s = data[2] == 255 ? -1 : data[2];
    buf_append(&resp.body, data + 3, size - 3);
    wc_err err;
    err_clear(&err);
    int rc = kube_error_from_response("PATCH", "/apis/hiclaw.io/v1beta1/namespaces/n/workers/w", &resp, &err);
    assert(rc == -1);
    assert(err.code == WC_EHTTP && err.http_status == (int)resp.status && err.retry_after_s == resp.retry_after_s);
    assert(memchr(err.msg, '\0', sizeof err.msg) != NULL);
    char head[128];
    snprintf(head, sizeof head, "PATCH /apis/hiclaw.io/v1beta1/namespaces/n/workers/w: %ld", resp.status);
    assert(strncmp(err.msg, head, strlen(head)) == 0);
    assert(strstr(err.msg, PLANTED) == NULL);
    /* Helpers callers branch on must agree with the status. */
    assert(kube_err_not_found(&err) == (resp.status == 404));
    assert(kube_err_conflict(&err) == (resp.status == 409));
    http_response_free(&resp);
    return 0;
}
