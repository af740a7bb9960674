/* fuzz_worker.c — a Worker object, whatever it holds, must never crash the controller or make
 * it build a bad Pod. The input is
 *
 *     <control bytes (16)> <Worker JSON> [ "\n--\n" <Pod JSON> ]
 *
 * The Worker JSON goes through worker_parse → worker_validate → env_build → decide, and, when
 * the spec is valid, pod_render; the optional Pod JSON goes through pod_project → pod_observe
 * and becomes an observed Pod; the control bytes add further observed Pods, claims and
 * Sandboxes (how many, their phases, deleting or not), the Secret's presence and the config.
 *
 * Invariants checked on every input (an assert failing is a finding):
 *   - decide() never creates while any instance of either backend is observed, never acts on
 *     an invalid or unmanaged spec beyond the finalizer, names an observed UID on every delete;
 *   - a rendered Pod is JSON, carries no credential value (secretKeyRefs only), has a DNS-1123
 *     name of at most 63 characters, valid label keys and values, env names that are C
 *     identifiers, and resource quantities that parse;
 *   - the env file reproduces every value (see fuzz_envfile.c for the quoting invariant).
 */
#include "fuzz_prelude.h"

#define SECRET_VALUE "fuzz-secret-Zq8vW3"

static const char *pick(const char *const *tab, size_t n, uint8_t b) { return tab[b % n]; }

static const char *const POD_PHASES[] = {NULL, "Pending", "Running", "Succeeded", "Failed", "Unknown", ""};
static const char *const WAITING[] = {NULL, "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull",
                                      "CreateContainerConfigError", "ContainerCreating", ""};
static const char *const CLAIM_PHASES[] = {NULL, "", "Claiming", "Completed", "Bogus"};
static const char *const SBX_PHASES[] = {NULL, "", "Pending", "Running", "Paused", "Resuming", "Upgrading",
                                         "Failed", "Succeeded", "Terminating"};
static const char *const HASHES[] = {NULL, "0000000000000000", "", "match"};

static int uid_observed(const obs_pods *op, const obs_sandboxes *os, const char *uid) {
    if (!uid) return 0;
    for (size_t i = 0; i < op->npods; i++) if (op->pods[i].uid && strcmp(op->pods[i].uid, uid) == 0) return 1;
    for (size_t i = 0; i < os->nclaims; i++) if (os->claims[i].uid && strcmp(os->claims[i].uid, uid) == 0) return 1;
    for (size_t i = 0; i < os->nsandboxes; i++) if (os->sandboxes[i].uid && strcmp(os->sandboxes[i].uid, uid) == 0) return 1;
    return 0;
}

static int c_identifier(const char *s) {
    if (!s || !(isalpha((unsigned char)*s) || *s == '_')) return 0;
    for (s++; *s; s++) if (!(isalnum((unsigned char)*s) || *s == '_')) return 0;
    return 1;
}

/* Checks a rendered Pod against what the API server would insist on, and against leaks. */
static void check_pod(const char *json, size_t len, int planted_in_input) {
    /* The credential reaches the Pod only as a reference (unless the user typed it into the
     * Worker itself, which is then not a secret of ours). */
    if (!planted_in_input) assert(strstr(json, SECRET_VALUE) == NULL);
    cJSON *pod = cJSON_ParseWithLength(json, len);
    assert(pod);
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(pod, "metadata");
    const char *name = json_str(md, "name");
    assert(name && dns1123_label_ok(name, 63));
    const cJSON *l;
    cJSON_ArrayForEach(l, cJSON_GetObjectItemCaseSensitive(md, "labels")) {
        assert(cJSON_IsString(l) && l->string);
        assert(label_key_ok(l->string));
        assert(label_value_ok(l->valuestring));
    }
    const cJSON *ctr = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(pod, "spec"), "containers"), 0);
    assert(ctr);
    const char *image = json_str(ctr, "image");
    assert(image && *image);
    for (const char *p = image; *p; p++) assert(!isspace((unsigned char)*p));
    const cJSON *e;
    cJSON_ArrayForEach(e, cJSON_GetObjectItemCaseSensitive(ctr, "env")) {
        const char *n = json_str(e, "name");
        assert(c_identifier(n));
        int from_secret = cJSON_GetObjectItemCaseSensitive(e, "valueFrom") != NULL;
        int has_value = cJSON_GetObjectItemCaseSensitive(e, "value") != NULL;
        assert(from_secret != has_value);
        for (size_t i = 0; i < WORKER_NSECRET_ENV; i++)
            if (strcmp(n, WORKER_SECRET_ENV[i].env) == 0) assert(from_secret);
    }
    const cJSON *res = cJSON_GetObjectItemCaseSensitive(ctr, "resources");
    const char *sect[2] = {"requests", "limits"}, *keys[2] = {"cpu", "memory"};
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            qty q;
            const char *v = json_str(cJSON_GetObjectItemCaseSensitive(res, sect[i]), keys[j]);
            assert(v && qty_parse(v, &q) == 0);
        }
    cJSON_Delete(pod);
}

/* Decodes the env file (only the `export NAME='…'` grammar with '\'' escapes is accepted)
 * and checks every value-carrying entry reproduces exactly, in sorted order. */
static void check_env_file(const char *f, const env_list *env) {
    const char *p = strchr(f, '\n');
    assert(p);
    p++;
    const char *prev = NULL;
    size_t seen = 0;
    buf v = BUF_INIT;
    while (*p) {
        assert(strncmp(p, "export ", 7) == 0);
        p += 7;
        const char *eq = strchr(p, '=');
        assert(eq && eq[1] == '\'');
        char *name = strndup(p, (size_t)(eq - p));
        assert(c_identifier(name));
        p = eq + 2;
        buf_reset(&v);
        for (;;) {
            assert(*p);
            if (*p != '\'') { buf_putc(&v, *p++); continue; }
            if (strncmp(p, "'\\''", 4) == 0) { buf_putc(&v, '\''); p += 4; continue; }
            p++;
            break;
        }
        assert(*p == '\n');
        p++;
        /* A JSON object with a duplicate key (never from the API server, which re-serialises
         * from a map) yields two entries of one name: the line must match one of them. */
        int match = 0;
        for (size_t i = 0; i < env->n; i++)
            if (env->items[i].value && strcmp(env->items[i].name, name) == 0 && strcmp(env->items[i].value, buf_cstr(&v)) == 0)
                match = 1;
        assert(match);
        assert(!prev || strcmp(prev, name) <= 0);
        free((char *)prev);
        prev = name;
        seen++;
    }
    free((char *)prev);
    buf_free(&v);
    size_t with_value = 0;
    for (size_t i = 0; i < env->n; i++) with_value += env->items[i].value != NULL;
    assert(seen == with_value);
}

static uint8_t ctl(const uint8_t *c, int i) { return c[i]; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 16) return 0;
    const uint8_t *c = data;
    const char *text = (const char *)data + 16;
    size_t tlen = size - 16;
    const char *sep = memmem(text, tlen, "\n--\n", 4);
    size_t wlen = sep ? (size_t)(sep - text) : tlen;
    int planted = memmem(data, size, SECRET_VALUE, strlen(SECRET_VALUE)) != NULL;

    arena a;
    arena_init(&a);
    cJSON *obj = cJSON_ParseWithLength(text, wlen);
    cJSON *podin = sep ? cJSON_ParseWithLength(sep + 4, tlen - wlen - 4) : NULL;
    worker_defaults dflt = {ctl(c, 0) & 1 ? "copaw" : NULL, "img/openclaw:1", ctl(c, 0) & 2 ? "img/copaw:1" : "",
                            "img/hermes:1", ctl(c, 0) & 4 ? "1000m" : "2", "2Gi"};
    worker w;
    wc_err err;
    if (obj && worker_parse(&a, obj, &dflt, &w, &err) == 0) {
        const char *prefix = ctl(c, 1) & 1 ? "hiclaw-" : "x-";
        worker_validate(&a, &w, prefix);
        /* The CRD schema restricts runtime to an enum and metadata.labels are validated by
         * the API server; outside those, the Pod's labels can legitimately be refused. */
        int api_valid = strcmp(w.runtime, "openclaw") == 0 || strcmp(w.runtime, "copaw") == 0 ||
                        strcmp(w.runtime, "hermes") == 0;
        for (size_t i = 0; i < w.meta_labels.n; i++)
            if (!label_key_ok(w.meta_labels.items[i].key) || !label_value_ok(w.meta_labels.items[i].value)) api_valid = 0;

        kv secret_items[3] = {{"WORKER_MATRIX_TOKEN", SECRET_VALUE}, {"WORKER_GATEWAY_KEY", SECRET_VALUE "-gw"},
                              {"WORKER_MINIO_PASSWORD", SECRET_VALUE "'$(x)\n"}};
        kv_list secret = {secret_items, (size_t)(ctl(c, 1) >> 1) % 4};
        worker_env_config ec = {"http://ctl:8090", "http://matrix", ctl(c, 1) & 8 ? "m.example" : "", NULL,
                                "http://fs", "bucket", "pre/", NULL, ctl(c, 1) & 16 ? "1" : NULL, NULL};
        env_list env;
        env_build(&a, &w, &ec, ctl(c, 1) & 32 ? &secret : NULL, 1, &env);

        /* The env file (sandbox Workers) round-trips every value. */
        buf ef = BUF_INIT;
        env_file_write(&ef, &env);
        check_env_file(buf_cstr(&ef), &env);
        buf_free(&ef);

        instance_settings ps = {"hiclaw-controller", prefix, ctl(c, 2) & 1 ? "aud" : NULL};
        char hash[17];
        pod_spec_hash(&a, &w, &env, &ps, hash);
        if (!w.invalid && api_valid) {
            buf pb = BUF_INIT;
            pod_render(&pb, &a, &w, &env, &ps, hash);
            check_pod(buf_cstr(&pb), pb.len, planted);
            buf_free(&pb);
            buf sa = BUF_INIT;
            serviceaccount_render(&sa, &a, &w, &ps);
            cJSON *saj = cJSON_ParseWithLength(sa.data, sa.len);
            assert(saj);
            cJSON_Delete(saj);
            buf_free(&sa);
        }

        /* Observations: up to 7 Pods, 3 claims, 3 Sandboxes, plus the fuzzed Pod. */
        size_t np = ctl(c, 3) % 8, nc = ctl(c, 4) % 4, ns = ctl(c, 5) % 4;
        obs_pod pods[9];
        obs_claim claims[3];
        obs_sandbox sbx[3];
        cJSON *proj = NULL;
        if (podin) {
            proj = pod_project(podin);
            pod_observe(proj, &pods[0]);
            /* The informer keys its cache by name and every API object has a uid: a Pod
             * without them is never observed. */
            if (!pods[0].name || !pods[0].uid) {
                cJSON_Delete(proj);
                proj = NULL;
                cJSON_Delete(podin);
                podin = NULL;
            }
            char *idx = instance_index(proj);
            free(idx);
        }
        size_t npods = podin ? 1 : 0;
        for (size_t i = 0; i < np; i++, npods++) {
            uint8_t b = ctl(c, 6 + (int)(i % 4)) + (uint8_t)i * 37;
            obs_pod *p = &pods[npods];
            memset(p, 0, sizeof *p);
            p->name = arena_sprintf(&a, "pod-%zu", i);
            p->uid = arena_sprintf(&a, "uid-pod-%zu", i);
            p->deleting = b & 1;
            p->ready = (b >> 1) & 1;
            p->phase = pick(POD_PHASES, 7, b >> 2);
            p->waiting_reason = pick(WAITING, 7, b >> 3);
            p->spec_hash = pick(HASHES, 4, b >> 5);
            if (p->spec_hash && strcmp(p->spec_hash, "match") == 0) p->spec_hash = hash;
        }
        for (size_t i = 0; i < nc; i++) {
            uint8_t b = ctl(c, 10 + (int)i);
            obs_claim *k = &claims[i];
            memset(k, 0, sizeof *k);
            k->name = arena_sprintf(&a, "claim-%zu", i);
            k->uid = arena_sprintf(&a, "uid-claim-%zu", i);
            k->deleting = b & 1;
            k->phase = pick(CLAIM_PHASES, 5, b >> 1);
            k->replicas = 1;
            k->claimed = (b >> 4) & 1;
            k->spec_hash = pick(HASHES, 4, b >> 5);
            if (k->spec_hash && strcmp(k->spec_hash, "match") == 0) k->spec_hash = hash;
        }
        for (size_t i = 0; i < ns; i++) {
            uint8_t b = ctl(c, 13 + (int)i);
            obs_sandbox *s = &sbx[i];
            memset(s, 0, sizeof *s);
            s->name = arena_sprintf(&a, "sbx-%zu", i);
            s->uid = arena_sprintf(&a, "uid-sbx-%zu", i);
            s->deleting = b & 1;
            s->ready_known = (b >> 1) & 1;
            s->ready = (b >> 2) & 1;
            s->paused = (b >> 3) & 1;
            s->phase = pick(SBX_PHASES, 10, b >> 4);
            s->claim_name = nc ? claims[b % nc].name : NULL;
            s->spec_hash = (b & 0x80) ? hash : NULL;
        }
        obs_pods op = {.pods = pods, .npods = npods};
        obs_sandboxes os = {.claims = claims, .nclaims = nc, .sandboxes = sbx, .nsandboxes = ns,
                            .token_present = ctl(c, 2) & 2, .token_refresh_in_ms = ctl(c, 2) & 4 ? -1 : 100000,
                            .deps_present = ctl(c, 2) & 8, .deps_hash = ctl(c, 2) & 16 ? hash : "other"};
        observed o = {.of = {&op, &os}, .recreate_backoff_ms = ctl(c, 2) & 32 ? 1500 : 0,
                      .last_failure = ctl(c, 2) & 64 ? "pod failed" : NULL};
        /* the real table's policies, configured by the control bytes */
        sandbox_policy_cfg scfg = {.pause = (ctl(c, 15) >> 1) & 1, .deps_storage = (ctl(c, 15) >> 2) & 1};
        backend_policy pol[2] = {POD_POLICY, SANDBOX_POLICY(ctl(c, 15) & 1, &scfg)};
        const backend_policy *list[2] = {&pol[0], &pol[1]};
        decide_config dc = {.prefix = prefix, .backends = list, .nbackends = 2};
        const char *hashes[2] = {hash, hash};

        decision d;
        decide(&a, &w, &o, &dc, hashes, &d);

        int any_instance = op.npods || os.nclaims || os.nsandboxes;
        assert(d.nactions <= DECIDE_MAX_ACTIONS && d.nevents <= DECIDE_MAX_EVENTS);
        assert(d.phase <= PHASE_UPDATING);
        assert(d.synced.status && d.ready.status);
        for (size_t i = 0; i < d.nactions; i++) {
            const action *act = &d.actions[i];
            if (act->kind == ACT_CREATE_POD || act->kind == ACT_CREATE_CLAIM) {
                assert(!any_instance);
                assert(!w.deleting && !w.invalid && w.container_managed);
            }
            /* An invalid or unmanaged spec is left alone — except deletion, which still cleans up. */
            if (!w.deleting && (w.invalid || !w.container_managed)) assert(act->kind == ACT_ADD_FINALIZER);
            if (act->kind == ACT_DELETE_POD || act->kind == ACT_DELETE_CLAIM || act->kind == ACT_DELETE_SANDBOX)
                assert(uid_observed(&op, &os, act->uid) || (podin && act->uid == pods[0].uid));
            if (act->kind == ACT_REMOVE_FINALIZER) assert(w.deleting && !any_instance);
        }
        for (size_t i = 0; i < d.nevents; i++) assert(d.events[i].note && (planted || !strstr(d.events[i].note, SECRET_VALUE)));
        if (d.message && !planted) assert(!strstr(d.message, SECRET_VALUE));
        cJSON_Delete(proj);
    }
    cJSON_Delete(podin);
    cJSON_Delete(obj);
    arena_free(&a);
    return 0;
}
