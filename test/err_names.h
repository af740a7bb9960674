/*
 * err_names.h — the names of wc_err codes (src/base/err.c), for the test front ends that print
 * an error (test/e2e/probe.c: "code tls") and the unit test that pins them. The product never
 * prints a code's name, so it lives here and not in the binary. Include after the program.
 */
static const char *err_code_name(int code) {
    switch (code) {
    case WC_OK: return "ok";
    case WC_EINVAL: return "invalid";
    case WC_EIO: return "io";
    case WC_ETLS: return "tls";
    case WC_ETIMEOUT: return "timeout";
    case WC_EHTTP: return "http";
    case WC_EPARSE: return "parse";
    case WC_ETOOBIG: return "too-big";
    case WC_ENOTFOUND: return "not-found";
    case WC_EUNSUPPORTED: return "unsupported";
    case WC_ECONFLICT: return "conflict";
    }
    return "unknown";
}
