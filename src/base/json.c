/*
 * json.c — reading cJSON trees, and writing request bodies as trees rendered to bytes.
 *
 * Reading: one getter family for every layer. A missing member, a member of the wrong type and
 * a NULL object all read as "absent" (NULL, or the caller's default), so code that walks a
 * server's object never has to check each step: json_str(json_get(md, "labels"), "app").
 * Paths ("metadata.name") split at dots, so a key that holds a dot (a label key such as
 * "hiclaw.io/worker") is read with json_str on its parent instead.
 *
 * Writing: a body is a cJSON tree built member by member — the tree cannot be unbalanced, and a
 * shared part (an object's metadata) is built by one function — then rendered by json_render
 * with the project's one escaping rule (buf_put_json_string, which the log lines use too):
 * members in insertion order, no whitespace. Integers go in as raw text (json_add_int), so an
 * int64 prints exactly, never through a double.
 */

static const cJSON *json_get(const cJSON *obj, const char *key) { return cJSON_GetObjectItemCaseSensitive(obj, key); }

static const char *json_str(const cJSON *obj, const char *key) {
    const cJSON *v = json_get(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* A number outside int64 (or NaN) would make the cast undefined behaviour: treat it as absent. */
static int64_t json_int(const cJSON *obj, const char *key, int64_t dflt) {
    const cJSON *v = json_get(obj, key);
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= -9.2e18 && v->valuedouble <= 9.2e18)) return dflt;
    return (int64_t)v->valuedouble;
}

/* The member at a dotted path ("status.podInfo.podIP"), or NULL. */
static const cJSON *json_at(const cJSON *obj, const char *dotted) {
    char key[128];
    const cJSON *cur = obj;
    const char *p = dotted;
    while (cur && *p) {
        const char *dot = strchr(p, '.');
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n >= sizeof key) return NULL;
        memcpy(key, p, n);
        key[n] = '\0';
        cur = json_get(cur, key);
        p = dot ? dot + 1 : p + n;
    }
    return cur;
}

static const char *json_str_at(const cJSON *obj, const char *dotted) {
    const cJSON *v = json_at(obj, dotted);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* ---- building ---- */

/* cJSON returns NULL only when an allocation failed; like every allocation here, that is fatal. */
static cJSON *json_checked(cJSON *item) {
    if (!item) wc_oom();
    return item;
}

static cJSON *json_object(void) { return json_checked(cJSON_CreateObject()); }

static cJSON *json_add_object(cJSON *obj, const char *key) { return json_checked(cJSON_AddObjectToObject(obj, key)); }

static cJSON *json_add_array(cJSON *obj, const char *key) { return json_checked(cJSON_AddArrayToObject(obj, key)); }

/* An object appended to an array. */
static cJSON *json_push_object(cJSON *arr) {
    cJSON *o = json_object();
    cJSON_AddItemToArray(arr, o);
    return o;
}

static void json_add_str(cJSON *obj, const char *key, const char *s) {
    assert(s && "a NULL string is json_add_null's job");
    json_checked(cJSON_AddStringToObject(obj, key, s));
}

/* The string, or null when s is NULL. */
static void json_add_str_or_null(cJSON *obj, const char *key, const char *s) {
    if (s) json_add_str(obj, key, s);
    else json_checked(cJSON_AddNullToObject(obj, key));
}

static void json_add_bool(cJSON *obj, const char *key, int b) { json_checked(cJSON_AddBoolToObject(obj, key, b)); }

static void json_add_int(cJSON *obj, const char *key, int64_t v) {
    char n[24];
    snprintf(n, sizeof n, "%" PRId64, v);
    json_checked(cJSON_AddRawToObject(obj, key, n));
}

/* Text that already is JSON (a member carried over verbatim). */
static void json_push_raw(cJSON *arr, const char *json) { cJSON_AddItemToArray(arr, json_checked(cJSON_CreateRaw(json))); }

static void json_push_str(cJSON *arr, const char *s) { cJSON_AddItemToArray(arr, json_checked(cJSON_CreateString(s))); }

/* ---- rendering ---- */

static void json_render_number(buf *out, double v) {
    if (v == v && v >= -9.0e15 && v <= 9.0e15 && v == (double)(int64_t)v) buf_printf(out, "%" PRId64, (int64_t)v);
    else if (v == v && v - v == 0) buf_printf(out, "%.17g", v);
    else buf_puts(out, "null"); /* NaN and infinities have no JSON spelling */
}

/* Appends the tree as compact JSON: members in insertion order, strings escaped as everywhere
 * else in the program. */
static void json_render(buf *out, const cJSON *item) {
    const cJSON *it;
    switch (item->type & 0xff) {
    case cJSON_Object:
    case cJSON_Array: {
        int obj = cJSON_IsObject(item);
        buf_putc(out, obj ? '{' : '[');
        cJSON_ArrayForEach(it, item) {
            if (it != item->child) buf_putc(out, ',');
            if (obj) {
                buf_put_json_string(out, it->string);
                buf_putc(out, ':');
            }
            json_render(out, it);
        }
        buf_putc(out, obj ? '}' : ']');
        return;
    }
    case cJSON_String: buf_put_json_string(out, item->valuestring); return;
    case cJSON_Raw: buf_puts(out, item->valuestring); return;
    case cJSON_Number: json_render_number(out, item->valuedouble); return;
    case cJSON_True: buf_puts(out, "true"); return;
    case cJSON_False: buf_puts(out, "false"); return;
    default: buf_puts(out, "null"); return;
    }
}

/* json_render, then the tree is freed. */
static void json_render_free(buf *out, cJSON *tree) {
    json_render(out, tree);
    cJSON_Delete(tree);
}
