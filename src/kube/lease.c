/*
 * lease.c — the coordination.k8s.io/v1 Lease client that leader election stands on.
 *
 * A Lease is read, then created or replaced with its resourceVersion: the API server's
 * optimistic concurrency is the lock, so two candidates can never both think they acquired
 * it (one of them gets 409). Times are metav1.MicroTime strings.
 */

typedef struct kube_lease {
    char *holder;            /* spec.holderIdentity, NULL when free */
    int duration_s;          /* spec.leaseDurationSeconds */
    char *acquire_time;      /* spec.acquireTime */
    char *renew_time;        /* spec.renewTime */
    int transitions;         /* spec.leaseTransitions */
    char *resource_version;  /* metadata.resourceVersion, NULL for a lease not yet created */
} kube_lease;

static void kube_lease_free(kube_lease *l) {
    free(l->holder);
    free(l->acquire_time);
    free(l->renew_time);
    free(l->resource_version);
    memset(l, 0, sizeof *l);
}

static void kube_lease_from_json(kube_lease *l, const cJSON *obj) {
    memset(l, 0, sizeof *l);
    const cJSON *spec = json_get(obj, "spec");
    l->holder = xstrdup(json_str_at(spec, "holderIdentity"));
    l->acquire_time = xstrdup(json_str_at(spec, "acquireTime"));
    l->renew_time = xstrdup(json_str_at(spec, "renewTime"));
    const cJSON *d = json_get(spec, "leaseDurationSeconds");
    const cJSON *t = json_get(spec, "leaseTransitions");
    l->duration_s = cJSON_IsNumber(d) ? d->valueint : 0;
    l->transitions = cJSON_IsNumber(t) ? t->valueint : 0;
    l->resource_version = xstrdup(json_str_at(obj, "metadata.resourceVersion"));
}

/* Gets the Lease. Returns 0 (found), 1 (absent: *l is zeroed), -1 on error. */
static int kube_lease_get(kube_client *kc, const char *ns, const char *name, kube_lease *l, wc_err *err) {
    cJSON *obj = NULL;
    memset(l, 0, sizeof *l);
    if (kube_get(kc, &KUBE_LEASES, ns, name, NULL, &obj, err) < 0) return kube_err_not_found(err) ? 1 : -1;
    kube_lease_from_json(l, obj);
    cJSON_Delete(obj);
    return 0;
}

/* The Lease as written: optional members left out when unset (a released lease has no holder). */
static void kube_lease_body(buf *b, const char *ns, const char *name, const kube_lease *l) {
    cJSON *o = json_object();
    json_add_str(o, "apiVersion", "coordination.k8s.io/v1");
    json_add_str(o, "kind", "Lease");
    cJSON *md = json_add_object(o, "metadata");
    json_add_str(md, "name", name);
    json_add_str(md, "namespace", ns);
    if (l->resource_version) json_add_str(md, "resourceVersion", l->resource_version);
    cJSON *spec = json_add_object(o, "spec");
    if (l->holder) json_add_str(spec, "holderIdentity", l->holder);
    if (l->acquire_time) json_add_str(spec, "acquireTime", l->acquire_time);
    if (l->renew_time) json_add_str(spec, "renewTime", l->renew_time);
    json_add_int(spec, "leaseDurationSeconds", l->duration_s);
    json_add_int(spec, "leaseTransitions", l->transitions);
    json_render_free(b, o);
}

/* Creates (no resource_version) or replaces (compare-and-swap on resource_version) the Lease;
 * on success l->resource_version is the new one. A lost race is a 409 error. */
static int kube_lease_write(kube_client *kc, const char *ns, const char *name, kube_lease *l, wc_err *err) {
    buf body = BUF_INIT;
    kube_lease_body(&body, ns, name, l);
    cJSON *out = NULL;
    int rc = l->resource_version ? kube_replace(kc, &KUBE_LEASES, ns, name, NULL, body.data, &out, err)
                                 : kube_create(kc, &KUBE_LEASES, ns, NULL, NULL, body.data, &out, err);
    if (rc == 0) {
        free(l->resource_version);
        l->resource_version = xstrdup(json_str_at(out, "metadata.resourceVersion"));
    }
    cJSON_Delete(out);
    buf_free(&body);
    return rc;
}
