/*
 * deps.c — worker-deps: what a sandbox Worker needs before its claim may exist (SPEC 5, 7).
 *
 * The three objects under <prefix>workers-deps/<namespace>/<workerName>/ — token/token,
 * env/env, data/.keep — each written through the S3 client (net/s3.c), then verified with HEAD.
 *
 * Every object carries, as object metadata, the Worker it belongs to (x-amz-meta-hiclaw-owner-
 * uid, -namespace, -name), so a Worker never writes or deletes another Worker's objects: two
 * Workers of one workerName in a namespace, or two installs sharing a bucket, would otherwise
 * share env files, tokens and data. The namespace in the key keeps namespaces apart by
 * construction. The token object carries its lifetime (x-amz-meta-hiclaw-issued and -expires,
 * Unix seconds) and env/env the hash of its content (x-amz-meta-hiclaw-env-hash), so the
 * reconciler decides refreshes and rewrites with a HEAD, never reading a credential back.
 */

/* ---- worker-deps objects ---- */

#define DEPS_META_EXPIRES "x-amz-meta-hiclaw-expires"
#define DEPS_META_ISSUED "x-amz-meta-hiclaw-issued"
#define DEPS_META_OWNER_UID "x-amz-meta-hiclaw-owner-uid"
#define DEPS_META_OWNER_NS "x-amz-meta-hiclaw-owner-namespace"
#define DEPS_META_OWNER_NAME "x-amz-meta-hiclaw-owner-name"
#define DEPS_META_ENV_HASH "x-amz-meta-hiclaw-env-hash"

typedef struct deps_keys {
    char token[600], env[600], data[600];
} deps_keys;

/* The directory (key prefix, ending in '/') of a Worker's objects. The namespace is part of it:
 * two namespaces never share keys, whatever their Workers' workerNames. */
static void deps_dir_for(const char *prefix, const char *ns, const char *worker_name, char *out, size_t n) {
    snprintf(out, n, "%sworkers-deps/%s/%s/", prefix ? prefix : "", ns, worker_name);
}

static void deps_keys_in(const char *dir, deps_keys *k) {
    snprintf(k->token, sizeof k->token, "%stoken/token", dir);
    snprintf(k->env, sizeof k->env, "%senv/env", dir);
    snprintf(k->data, sizeof k->data, "%sdata/.keep", dir);
}

/* Whose an object is, from its metadata (a HEAD). Empty strings when not recorded. */
typedef struct deps_owner {
    char uid[80], ns[80], name[260];
} deps_owner;

static void deps_owner_read(const http_response *h, deps_owner *o) {
    memset(o, 0, sizeof *o);
    http_response_header(h, DEPS_META_OWNER_UID, o->uid, sizeof o->uid);
    http_response_header(h, DEPS_META_OWNER_NS, o->ns, sizeof o->ns);
    http_response_header(h, DEPS_META_OWNER_NAME, o->name, sizeof o->name);
}

/* May the Worker (uid) write or delete an object owned by `o`? Pure. Returns 1 when it may —
 * the object is its own, or records no owner — else 0 with why filled. An object without owner
 * metadata was written before ownership was recorded (an older version) and is adopted by the
 * Worker whose key it is: the key holds the namespace and workerName, so only a Worker of that
 * namespace and workerName ever gets here; its next write records it as the owner. */
static int deps_owner_allows(const deps_owner *o, const char *uid, const char *bucket, const char *key, char *why,
                             size_t n) {
    if (!o->uid[0] || (uid && strcmp(o->uid, uid) == 0)) return 1;
    snprintf(why, n, "worker-deps object s3://%s/%s belongs to Worker %s/%s (UID %s); it is left alone: give this "
                     "Worker another spec.workerName, or remove the other Worker",
             bucket, key, o->ns[0] ? o->ns : "?", o->name[0] ? o->name : "?", o->uid);
    return 0;
}

/* The owner header lines of every PUT. */
typedef struct deps_owner_meta {
    char uid[120], ns[120], name[300];
} deps_owner_meta;

static void deps_owner_meta_for(const char *uid, const char *ns, const char *name, deps_owner_meta *m) {
    snprintf(m->uid, sizeof m->uid, DEPS_META_OWNER_UID ": %s", uid ? uid : "");
    snprintf(m->ns, sizeof m->ns, DEPS_META_OWNER_NS ": %s", ns ? ns : "");
    snprintf(m->name, sizeof m->name, DEPS_META_OWNER_NAME ": %s", name ? name : "");
}

/* Whose an object is (a HEAD): 0 read into *o, 1 absent, -1 error. */
static int deps_owner_of_key(s3_client *s, const char *key, deps_owner *o, wc_err *err) {
    http_response h;
    int rc = s3_head(s, key, NULL, &h, err);
    if (rc != 0) return rc;
    deps_owner_read(&h, o);
    http_response_free(&h);
    return 0;
}

/* Checks an object's owner before this Worker writes or deletes it: 0 may (absent, own, or
 * unowned), -1 with err (WC_ECONFLICT when another Worker owns it). */
static int deps_check_owner(s3_client *s, const char *key, const char *uid, wc_err *err) {
    deps_owner o;
    int rc = deps_owner_of_key(s, key, &o, err);
    if (rc != 0) return rc < 0 ? -1 : 0;
    char why[700];
    if (deps_owner_allows(&o, uid, s->bucket, key, why, sizeof why)) return 0;
    err_set(err, WC_ECONFLICT, "%s", why);
    return -1;
}

/* Writes an object and proves it is there (HEAD, same size) before anyone relies on it. */
static int deps_put_verified(s3_client *s, const char *key, const void *body, size_t len, const char *const *meta,
                             size_t nmeta, wc_err *err) {
    if (s3_put(s, key, body, len, meta, nmeta, err) < 0) return -1;
    long long size = -1;
    int h = s3_head(s, key, &size, NULL, err);
    if (h < 0) return -1;
    if (h == 1 || size != (long long)len)
        return err_set(err, WC_EIO, "verify s3://%s/%s: object %s after PUT", s->bucket, key, h == 1 ? "missing" : "has the wrong size");
    return 0;
}

/* deps_put_verified for one of a Worker's objects: refused (WC_ECONFLICT) when another Worker
 * owns it; the owner recorded with the object, plus the extra metadata lines. S3 has no
 * portable conditional PUT, so check-then-write leaves a window as wide as one HEAD; two
 * controllers racing for one key within it is the one case this cannot stop. */
static int deps_put_owned(s3_client *s, const char *key, const void *body, size_t len, const deps_owner_meta *own,
                          const char *const *extra, size_t nextra, const char *uid, wc_err *err) {
    if (deps_check_owner(s, key, uid, err) < 0) return -1;
    const char *meta[8];
    size_t n = 0;
    meta[n++] = own->uid;
    meta[n++] = own->ns;
    meta[n++] = own->name;
    for (size_t i = 0; i < nextra && n < 8; i++) meta[n++] = extra[i];
    return deps_put_verified(s, key, body, len, meta, n, err);
}

/* Deletes one of a Worker's objects unless another Worker owns it: 0 deleted or absent, 1 left
 * alone (another's: *why filled), -1 error. */
static int deps_delete_owned(s3_client *s, const char *key, const char *uid, char *why, size_t n, wc_err *err) {
    deps_owner o;
    int rc = deps_owner_of_key(s, key, &o, err);
    if (rc != 0) return rc < 0 ? -1 : 0;
    if (!deps_owner_allows(&o, uid, s->bucket, key, why, n)) return 1;
    return s3_delete(s, key, err);
}

static int deps_write_token(s3_client *s, const deps_keys *k, const kube_token *t, const deps_owner_meta *own,
                            const char *uid, wc_err *err) {
    char issued[64], expires[64];
    snprintf(issued, sizeof issued, DEPS_META_ISSUED ": %lld", (long long)time(NULL));
    snprintf(expires, sizeof expires, DEPS_META_EXPIRES ": %lld", (long long)t->expires);
    const char *meta[2] = {issued, expires};
    return deps_put_owned(s, k->token, t->token, strlen(t->token), own, meta, 2, uid, err);
}

/* The hash recorded with env/env: the spec hasher over the file's bytes (SHA-256, 16 hex
 * digits — the file holds credentials; the digest gives nothing of them back). */
static void deps_env_hash(const buf *file, char out[17]) {
    spec_hasher h;
    spec_hash_init(&h);
    spec_hash_field(&h, "env-file", buf_cstr(file));
    spec_hash_final(&h, out);
}

static int deps_write_env(s3_client *s, const deps_keys *k, const buf *file, const deps_owner_meta *own,
                          const char *uid, wc_err *err) {
    char hash[17], line[80];
    deps_env_hash(file, hash);
    snprintf(line, sizeof line, DEPS_META_ENV_HASH ": %s", hash);
    const char *meta[1] = {line};
    return deps_put_owned(s, k->env, file->data ? file->data : "", file->len, own, meta, 1, uid, err);
}

/* What one HEAD says about a Worker's object: present, its owner, and the metadata value asked
 * for (a token's lifetime, env's hash). */
typedef struct deps_head {
    int present;
    deps_owner owner;
    int64_t issued, expires;   /* token */
    char env_hash[40];         /* env: "" when not recorded */
} deps_head;

/* 0 read (present or not), -1 error. */
static int deps_head_read(s3_client *s, const char *key, deps_head *out, wc_err *err) {
    memset(out, 0, sizeof *out);
    http_response h;
    int rc = s3_head(s, key, NULL, &h, err);
    if (rc < 0) return -1;
    if (rc == 1) return 0;
    out->present = 1;
    deps_owner_read(&h, &out->owner);
    char v[64];
    out->issued = http_response_header(&h, DEPS_META_ISSUED, v, sizeof v) ? atoll(v) : 0;
    out->expires = http_response_header(&h, DEPS_META_EXPIRES, v, sizeof v) ? atoll(v) : 0;
    http_response_header(&h, DEPS_META_ENV_HASH, out->env_hash, sizeof out->env_hash);
    http_response_free(&h);
    return 0;
}

/* When to write a new token: once less than a third of its lifetime remains. Pure. */
static int64_t deps_token_refresh_in_ms(int64_t issued, int64_t expires, int64_t now) {
    if (expires <= 0 || issued <= 0 || expires <= issued) return 0; /* unknown lifetime: refresh now */
    int64_t refresh_at = expires - (expires - issued) / 3;
    return refresh_at <= now ? 0 : (refresh_at - now) * 1000;
}

/* ---- a Worker's worker-deps, written and removed ---- */

/* What writing a Worker's worker-deps takes: the storage, the shell's TokenRequest client and
 * names (the token is its ServiceAccount's), the env every instance gets. */
typedef struct deps_store {
    s3_client *s3;                 /* NULL: no storage configured */
    const backend_host *host;
    int64_t token_ttl_s;
} deps_store;

/* The env file a sandbox sources: the same env as a Pod's, credentials as values (the only
 * place they are written). Caller wipes. */
static void deps_env_file(const deps_store *st, exec_ctx *x, buf *file) {
    env_list env;
    const worker *w = x->w;
#ifdef WC_FAILPOINTS
    worker other;
    if (failpoint_armed("break-foreign-deps")) { /* the env file of another Worker (chaos checker test) */
        other = *x->w;
        other.name = arena_sprintf(x->a, "%s-other", x->w->name);
        w = &other;
    }
#endif
    env_build(x->a, w, &st->host->envc, x->secret, 0, &env);
    env_file_write(file, &env);
}

/* The owner metadata of this Worker's objects. */
static void deps_owner_of(const worker *w, deps_owner_meta *m) { deps_owner_meta_for(w->uid, w->namespace, w->name, m); }

/* Another Worker's objects: the action fails with reason WorkerDepsConflict (nothing written). */
static int deps_failed(exec_ctx *x, const wc_err *err) {
    x->failure_reason = err->code == WC_ECONFLICT ? "WorkerDepsConflict" : "WorkerDepsFailed";
    return -1;
}

/* Requests a token for the Worker's ServiceAccount and writes it (verified) to <dir>token/token. */
static int deps_write_token_at(const deps_store *st, exec_ctx *x, const char *dir, wc_err *err) {
    const worker *w = x->w;
    if (!st->s3) return err_set(err, WC_EINVAL, "no worker-deps storage configured");
    deps_keys k;
    deps_keys_in(dir, &k);
    /* checked before the TokenRequest too: no credential is minted for a key we may not write */
    if (deps_check_owner(st->s3, k.token, w->uid, err) < 0) return -1;
    kube_token t;
    char sa[300];
    snprintf(sa, sizeof sa, "%sworker-%s", st->host->names.prefix, w->name);
    if (kube_token_request(st->host->kc, w->namespace, sa, st->host->names.audience, st->token_ttl_s, &t, err) < 0)
        return -1;
    deps_owner_meta own;
    deps_owner_of(w, &own);
    int rc = deps_write_token(st->s3, &k, &t, &own, w->uid, err);
    kube_token_free(&t);
    return rc;
}

/* The env file (verified, with its content hash) at <dir>env/env. */
static int deps_write_env_at(const deps_store *st, exec_ctx *x, const char *dir, wc_err *err) {
    if (!st->s3) return err_set(err, WC_EINVAL, "no worker-deps storage configured");
    deps_keys k;
    deps_keys_in(dir, &k);
    buf file = BUF_INIT;
    deps_env_file(st, x, &file);
    deps_owner_meta own;
    deps_owner_of(x->w, &own);
    int rc = deps_write_env(st->s3, &k, &file, &own, x->w->uid, err);
    buf_free_secret(&file); /* it holds the credentials */
    return rc;
}

/* The create sequence's first half: env file, token, data marker — each written and verified,
 * each refused if another Worker owns it. Any failure stops here: no claim is made (Synced=False
 * WorkerDepsFailed, or WorkerDepsConflict). */
static int deps_write_all(const deps_store *st, exec_ctx *x, const char *dir, wc_err *err) {
    const worker *w = x->w;
    x->failure_reason = "WorkerDepsFailed";
    if (!st->s3) return err_set(err, WC_EINVAL, "no worker-deps storage configured");
    deps_keys k;
    deps_keys_in(dir, &k);
    deps_owner_meta own;
    deps_owner_of(w, &own);
    /* every key first: a conflict on the last must not leave the first two half-written */
    if (deps_check_owner(st->s3, k.env, w->uid, err) < 0 || deps_check_owner(st->s3, k.token, w->uid, err) < 0 ||
        deps_check_owner(st->s3, k.data, w->uid, err) < 0)
        return deps_failed(x, err);
    if (deps_write_env_at(st, x, dir, err) < 0) return deps_failed(x, err);
    if (deps_write_token_at(st, x, dir, err) < 0) return deps_failed(x, err);
    if (deps_put_owned(st->s3, k.data, "", 0, &own, NULL, 0, w->uid, err) < 0) return deps_failed(x, err);
    log_info("wrote worker-deps", "worker", w->name, "namespace", w->namespace, "backend", "sandbox", "envObject", k.env);
    x->failure_reason = NULL;
    return 0;
}

/* Deletes this Worker's objects among token, env (and data when `data`) under dir; another
 * Worker's are left, with a log line and a Warning Event saying whose (they are not ours to
 * delete, and must not block this Worker's own cleanup). */
static int deps_delete_at(const deps_store *st, exec_ctx *x, const char *dir, int env, int data, wc_err *err) {
    const worker *w = x->w;
    deps_keys k;
    deps_keys_in(dir, &k);
    const char *keys[3] = {k.token, env ? k.env : NULL, data ? k.data : NULL};
    for (int i = 0; i < 3; i++) {
        if (!keys[i]) continue;
        char why[700];
        int rc = deps_delete_owned(st->s3, keys[i], w->uid, why, sizeof why, err);
        if (rc < 0) return -1;
        if (rc == 1) {
            log_warn("worker-deps object of another Worker left alone", "worker", w->name, "namespace", w->namespace,
                     "reason", why);
            backend_record(st->host, w, "Warning", "WorkerDepsConflict", "Delete", why);
        }
    }
    return 0;
}

/* explain: each of a Worker's objects under dir — present or not, whose (and whether that is a
 * conflict for the Worker of this uid), the token's lifetime — from one HEAD each, never a read
 * of a credential. Into d (a JSON object). */
static void deps_describe(s3_client *s3, const char *dir, const char *uid, cJSON *d) {
    json_add_str(d, "bucket", s3->bucket);
    json_add_str(d, "path", dir ? dir : "");
    if (!dir) return;
    deps_keys k;
    deps_keys_in(dir, &k);
    const char *names[3] = {"token", "env", "data"}, *keys[3] = {k.token, k.env, k.data};
    cJSON *objs = json_add_array(d, "objects");
    for (int i = 0; i < 3; i++) {
        cJSON *o = json_push_object(objs);
        json_add_str(o, "name", names[i]);
        json_add_str(o, "key", keys[i]);
        deps_head h;
        wc_err err;
        err_clear(&err);
        if (deps_head_read(s3, keys[i], &h, &err) < 0) {
            json_add_str(o, "error", err.msg);
            continue;
        }
        json_add_bool(o, "present", h.present);
        if (!h.present) continue;
        cJSON *owner = json_add_object(o, "owner");
        json_add_str(owner, "uid", h.owner.uid);
        json_add_str(owner, "namespace", h.owner.ns);
        json_add_str(owner, "name", h.owner.name);
        char why[700];
        if (!deps_owner_allows(&h.owner, uid, s3->bucket, keys[i], why, sizeof why)) json_add_str(o, "conflict", why);
        if (i != 0) continue; /* the token's lifetime */
        char ts[32];
        wc_rfc3339(ts, (time_t)h.issued);
        json_add_str(o, "issued", h.issued > 0 ? ts : "");
        wc_rfc3339(ts, (time_t)h.expires);
        json_add_str(o, "expires", h.expires > 0 ? ts : "");
        json_add_int(o, "refreshInSeconds", deps_token_refresh_in_ms(h.issued, h.expires, (int64_t)time(NULL)) / 1000);
    }
}
