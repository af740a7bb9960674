/* fuzz_envfile.c — the sandbox env file must reproduce every value exactly when sourced with
 * `set -a; . file`, and execute nothing, whatever bytes keys and values hold (SPEC section 6).
 *
 * The input is a list of key/value pairs separated by NUL bytes (key\0value\0key\0value...).
 * They become spec.env of a Worker; env_build drops reserved or malformed keys; the file is
 * written and decoded here with the POSIX rules for single quotes (everything literal up to
 * the next ', which '\'' re-opens). The file must consist only of
 *   `# comment\n` then lines `export NAME='...'\n`  (NAME a C identifier, sorted),
 * so no byte of any value can end up outside quotes, where the shell would interpret it.
 * The unit test test_env_file_sh_round_trip runs the real sh over the same writer. */
#include "fuzz_prelude.h"

static int c_identifier(const char *s) {
    if (!s || !(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (s++; *s; s++) if (!(isalnum((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    arena a;
    arena_init(&a);
    /* Split into NUL-terminated strings. */
    char *copy = arena_alloc(&a, size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    const char *parts[512];
    size_t nparts = 0;
    for (size_t off = 0; off <= size && nparts < 512;) {
        parts[nparts++] = copy + off;
        off += strlen(copy + off) + 1;
    }
    worker w;
    memset(&w, 0, sizeof w);
    w.name = "fz";
    w.namespace = "ns";
    w.worker_name = nparts & 1 ? "fz" : "fz'$(touch /tmp/x)";
    w.runtime = "openclaw";
    w.env.items = arena_alloc(&a, (nparts / 2 + 1) * sizeof(kv));
    for (size_t i = 0; i + 1 < nparts; i += 2) {
        /* duplicate keys cannot come from a JSON object through cJSON lookups; keep the first */
        int dup = 0;
        for (size_t j = 0; j < w.env.n; j++) dup |= strcmp(w.env.items[j].key, parts[i]) == 0;
        if (dup) continue;
        w.env.items[w.env.n].key = parts[i];
        w.env.items[w.env.n].value = parts[i + 1];
        w.env.n++;
    }
    qsort(w.env.items, w.env.n, sizeof(kv), kv_cmp);
    worker_env_config ec = {"http://c", "http://m", "d", NULL, "http://fs", "b", "p/", NULL, NULL, NULL};
    kv secret_items[1] = {{"WORKER_MATRIX_TOKEN", nparts ? parts[nparts - 1] : ""}};
    kv_list secret = {secret_items, 1};
    env_list env;
    env_build(&a, &w, &ec, &secret, 0, &env);
    for (size_t i = 0; i < env.n; i++) assert(c_identifier(env.items[i].name));

    buf f = BUF_INIT;
    env_file_write(&f, &env);
    const char *p = buf_cstr(&f);
    assert(*p == '#');
    p = strchr(p, '\n');
    assert(p);
    p++;
    size_t seen = 0, with_value = 0;
    for (size_t i = 0; i < env.n; i++) with_value += env.items[i].value != NULL;
    char *prev = NULL;
    buf v = BUF_INIT;
    while (*p) {
        assert(strncmp(p, "export ", 7) == 0);
        p += 7;
        const char *eq = strchr(p, '=');
        assert(eq && eq[1] == '\'');
        char *name = strndup(p, (size_t)(eq - p));
        assert(c_identifier(name));
        assert(!prev || strcmp(prev, name) < 0); /* sorted, and each name once */
        free(prev);
        prev = name;
        p = eq + 2;
        buf_reset(&v);
        for (;;) {
            assert(*p); /* an unterminated quote would swallow the rest of the file */
            if (*p != '\'') { buf_putc(&v, *p++); continue; }
            if (strncmp(p, "'\\''", 4) == 0) { buf_putc(&v, '\''); p += 4; continue; }
            p++;
            break;
        }
        assert(*p == '\n');
        p++;
        const char *want = NULL;
        for (size_t i = 0; i < env.n; i++)
            if (env.items[i].value && strcmp(env.items[i].name, name) == 0) want = env.items[i].value;
        assert(want && strcmp(want, buf_cstr(&v)) == 0);
        seen++;
    }
    assert(seen == with_value);
    free(prev);
    buf_free(&v);
    buf_free(&f);
    arena_free(&a);
    return 0;
}
