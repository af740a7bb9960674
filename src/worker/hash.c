/*
 * hash.c — the spec hash: one short digest of everything that shapes a runtime instance.
 *
 * An instance carries it as annotation hiclaw.io/spec-hash; a different hash means the
 * instance no longer matches the Worker and is recreated. Only what shapes the instance goes
 * in (image, runtime, backend, env values — credentials included, resources, labels, backend
 * settings); fields other HiClaw components read (model, soul, skills, …) never do, so editing
 * them never restarts an agent. SHA-256 (BearSSL) keeps credential values irrecoverable from
 * the annotation; 16 hex digits are plenty to tell versions apart and fit a label value.
 */

typedef struct spec_hasher {
    br_sha256_context ctx;
} spec_hasher;

static void spec_hash_init(spec_hasher *h) { br_sha256_init(&h->ctx); }

/* Each field is "name=value\n" with the length first, so no two different inputs can
 * serialise to the same bytes (a value containing "\nx=" cannot forge another field). */
static void spec_hash_field(spec_hasher *h, const char *name, const char *value) {
    char len[32];
    if (!value) value = "";
    int n = snprintf(len, sizeof len, "%zu:%zu:", strlen(name), strlen(value));
    br_sha256_update(&h->ctx, len, (size_t)n);
    br_sha256_update(&h->ctx, name, strlen(name));
    br_sha256_update(&h->ctx, "=", 1);
    br_sha256_update(&h->ctx, value, strlen(value));
    br_sha256_update(&h->ctx, "\n", 1);
}

static void spec_hash_final(spec_hasher *h, char out[17]) {
    unsigned char d[32];
    static const char hex[] = "0123456789abcdef";
    br_sha256_out(&h->ctx, d);
    for (int i = 0; i < 8; i++) {
        out[2 * i] = hex[d[i] >> 4];
        out[2 * i + 1] = hex[d[i] & 15];
    }
    out[16] = '\0';
    secure_zero(d, sizeof d);
}
