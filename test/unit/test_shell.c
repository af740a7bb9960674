/*
 * test_shell.c — the reconciler shell's own I/O (issue 15): the places where the shell must not
 * trust its caches (live lists before the finalizer goes, before a claim is re-made), how it
 * reads a 409, and what it writes into and reads from object storage (ownership, env hash).
 *
 * The peer is test/unit/fake_server.py: an in-memory API server + S3 on loopback. The tests
 * drive the real shell functions (exec_action, the observation helpers) with a controller
 * whose clients point at it, seed objects through its control endpoints, and read back what
 * the shell did (objects, S3 metadata, the request log).
 */

TEST(shell_fake_server_creates_a_pod_through_exec_action) {
    SHELL_SETUP();
    worker w;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m'}}", &w);
    CHECK_INT_EQ(shell_exec(&ctl, &a, &w, ACT_CREATE_POD, "hiclaw-worker-alice", NULL, NULL, &err), 0);
    cJSON *pod = fake_get(NS_PODS "/hiclaw-worker-alice");
    REQUIRE(pod != NULL);
    const cJSON *ref = cJSON_GetArrayItem(cJSON_GetObjectItem(cJSON_GetObjectItem(pod, "metadata"), "ownerReferences"), 0);
    CHECK_STR_EQ(json_str(ref, "uid"), "u1");
    cJSON_Delete(pod);
    SHELL_TEARDOWN();
}

/* HiClaw's rule (SPEC 3): a controller handles the Workers that carry its label. The Workers
 * watch is scoped like the instance watches. */
TEST(run_watches_only_workers_labelled_for_this_controller) {
    run_selectors s;
    run_selectors_for("ctl-a", &s);
    backend pod = {.ops = &pod_backend_ops};
    wc_err err;
    REQUIRE(pod.ops->setup(&pod, NULL, &err) == 0);
    char pods[400];
    run_cache_selector("ctl-a", &pod.caches[0], pods, sizeof pods);
    CHECK_STR_EQ(s.workers, "hiclaw.io/controller=ctl-a");
    CHECK_STR_EQ(s.instances, "hiclaw.io/controller=ctl-a");
    CHECK_CONTAINS(pods, "hiclaw.io/controller=ctl-a,");
}

/* At start the controller says once how many Workers of its namespace carry no
 * hiclaw.io/controller label (and so belong to no controller): one small list. */
TEST(run_counts_unlabelled_workers_with_one_small_list) {
    SHELL_SETUP();
    fake_seed(NS_WORKERS, "{'metadata':{'name':'mine','namespace':'ns','labels':{'hiclaw.io/controller':'ctl'}}}");
    fake_seed(NS_WORKERS, "{'metadata':{'name':'other','namespace':'ns','labels':{'hiclaw.io/controller':'ctl-b'}}}");
    fake_seed(NS_WORKERS, "{'metadata':{'name':'orphan-1','namespace':'ns'}}");
    fake_seed(NS_WORKERS, "{'metadata':{'name':'orphan-2','namespace':'ns','labels':{'team':'x'}}}");
    unlabelled_workers u;
    REQUIRE(count_unlabelled_workers(ctl.host.kc, "ns", 100, &u, &err) == 0);
    CHECK_INT_EQ(u.count, 2);
    CHECK_INT_EQ(u.at_least, 0);
    CHECK_CONTAINS(u.names, "orphan-1");
    CHECK_CONTAINS(u.names, "orphan-2");
    char *log = fake_log();
    CHECK_CONTAINS(log, "GET " NS_WORKERS "?labelSelector=%21hiclaw.io%2Fcontroller&limit=100");
    free(log);
    /* more than fit in one page: "at least", still one request */
    fake_reset();
    for (int i = 0; i < 5; i++) {
        char o[200];
        snprintf(o, sizeof o, "{'metadata':{'name':'w%d','namespace':'ns'}}", i);
        fake_seed(NS_WORKERS, o);
    }
    REQUIRE(count_unlabelled_workers(ctl.host.kc, "ns", 3, &u, &err) == 0);
    CHECK_INT_EQ(u.count, 3);
    CHECK_INT_EQ(u.at_least, 1);
    log = fake_log();
    CHECK_INT_EQ((long)(strchr(log, '\n') ? 1 : 0) + 0, 1);
    CHECK(strstr(strchr(log, '\n') + 1, "GET") == NULL);
    free(log);
    SHELL_TEARDOWN();
}

/* Losing the lease: another replica may act any moment. Like controller-runtime's zero grace on
 * lease loss, every request of this replica stops at once (in flight ones cancelled, new ones
 * refused) — Kubernetes and S3 alike — before the process is told to exit. */
TEST(lease_loss_stops_every_write_at_once) {
    SHELL_SETUP();
    worker w;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m'}}", &w);
    run_state *r = xcalloc(1, sizeof *r);
    r->ctl = ctl;
    sigset_t term, old;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &term, &old);
    on_leadership_lost(r);
    struct timespec ts = {2, 0};
    int sig = sigtimedwait(&term, NULL, &ts);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    CHECK_INT_EQ(sig, SIGTERM); /* the main thread is told to exit */
    CHECK_INT_EQ(shell_exec(&r->ctl, &a, &w, ACT_CREATE_POD, "hiclaw-worker-alice", NULL, NULL, &err), -1);
    CHECK_CONTAINS(err.msg, "cancelled");
    err_clear(&err);
    CHECK(s3_put(SHELL_S3(&r->ctl), "k", "v", 1, NULL, 0, &err) < 0);
    char *log = fake_log();
    CHECK_NOT_CONTAINS(log, "POST");
    CHECK_NOT_CONTAINS(log, "PUT");
    free(log);
    ctl = r->ctl;
    free(r);
    SHELL_TEARDOWN();
}

TEST(shell_reconcile_worker_runs_against_the_fake) {
    SHELL_SETUP();
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, "{'model':'m'}", NULL);
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    cJSON *pod = fake_get(NS_PODS "/hiclaw-worker-alice");
    CHECK(pod != NULL);
    cJSON *wk = shell_worker_now();
    CHECK_STR_EQ(json_str_at(wk, "status.phase"), "Pending");
    CHECK_STR_EQ(cond_field(wk, "Synced", "status"), "True");
    cJSON_Delete(wk);
    cJSON_Delete(pod);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

#define POD_SQ(name, extra_md)                                                                            \
    "{'metadata':{'name':'" name "','namespace':'ns','uid':'pod-" name "','resourceVersion':'3',"       \
    "'labels':{'hiclaw.io/worker':'alice','hiclaw.io/controller':'ctl','hiclaw.io/backend':'pod'},"      \
    "'annotations':{'hiclaw.io/spec-hash':'0123456789abcdef'}" extra_md "},"                            \
    "'status':{'phase':'Running','conditions':[{'type':'Ready','status':'True'}]}}"
#define OWNED_BY(uid) ",'ownerReferences':[{'apiVersion':'hiclaw.io/v1beta1','kind':'Worker','name':'alice','uid':'" uid "','controller':true}]"

/* SPEC 3: an instance belongs to a Worker by its labels AND a controller ownerReference with the
 * Worker's UID. A Pod controlled by another UID (a deleted Worker of the same name, its Pod still
 * there) is not this Worker's: never deleted, never adopted, and it blocks a create of the same
 * name with a clear status. */
TEST(shell_pod_of_another_worker_uid_is_neither_deleted_nor_adopted) {
    SHELL_SETUP();
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, "{'model':'m'}", NULL);
    shell_both(SHELL_PODS(&ctl), NS_PODS, POD_SQ("hiclaw-worker-alice", OWNED_BY("u-old")));
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 1);
    cJSON *pod = fake_get(NS_PODS "/hiclaw-worker-alice");
    CHECK(pod != NULL); /* still there, still the old one */
    CHECK_STR_EQ(json_str_at(pod, "metadata.uid"), "pod-hiclaw-worker-alice");
    char *log = fake_log();
    CHECK_NOT_CONTAINS(log, "DELETE " NS_PODS);
    free(log);
    cJSON *wk = shell_worker_now();
    CHECK_STR_EQ(cond_field(wk, "Synced", "status"), "False");
    CHECK_STR_EQ(cond_field(wk, "Synced", "reason"), "PodNameConflict");
    CHECK_CONTAINS(cond_field(wk, "Synced", "message"), "u-old");
    CHECK_CONTAINS(cond_field(wk, "Synced", "message"), "hiclaw-worker-alice");
    CHECK(json_str_at(wk, "status.instance.name") == NULL); /* not described as ours */
    cJSON_Delete(wk);
    cJSON_Delete(pod);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

/* A 409 on create is "the cache lagged behind our own create" only when the existing object is
 * this Worker's; anyone else's object of that name is reported, not taken for success. */
TEST(shell_pod_create_conflict_is_success_only_for_our_own_pod) {
    SHELL_SETUP();
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, "{'model':'m'}", NULL);
    /* somebody else's Pod of that name, unknown to the (label-filtered) cache */
    fake_seed(NS_PODS, "{'metadata':{'name':'hiclaw-worker-alice','namespace':'ns','uid':'stranger',"
                       "'labels':{'app':'other'}}}");
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 1);
    cJSON *wk = shell_worker_now();
    CHECK_STR_EQ(cond_field(wk, "Synced", "reason"), "PodNameConflict");
    CHECK_CONTAINS(cond_field(wk, "Synced", "message"), "not controlled by this Worker");
    cJSON_Delete(wk);
    /* our own Pod, not yet in the cache: success, nothing reported */
    fake_reset();
    shell_informers_free(&ctl);
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, "{'model':'m'}", NULL);
    fake_seed(NS_PODS, POD_SQ("hiclaw-worker-alice", OWNED_BY("u1")));
    res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    wk = shell_worker_now();
    CHECK_STR_EQ(cond_field(wk, "Synced", "status"), "True");
    cJSON_Delete(wk);
    /* a legacy Pod (no controller) with this Worker's labels is this Worker's too */
    fake_reset();
    shell_informers_free(&ctl);
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, "{'model':'m'}", NULL);
    fake_seed(NS_PODS, POD_SQ("hiclaw-worker-alice", ""));
    res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

#define CLAIM_SQ(owner_uid, hash)                                                                          \
    "{'metadata':{'name':'hiclaw-worker-alice','namespace':'ns','uid':'claim-1','resourceVersion':'4',"   \
    "'labels':{'hiclaw.io/worker':'alice','hiclaw.io/controller':'ctl','hiclaw.io/backend':'sandbox'},"    \
    "'annotations':{'hiclaw.io/spec-hash':'" hash "'},"                                                    \
    "'ownerReferences':[{'kind':'Worker','name':'alice','uid':'" owner_uid "','controller':true}]},"       \
    "'spec':{'replicas':1},'status':{'phase':'Completed','claimedReplicas':1}}"
#define SBX_SQ(name, uid_label, hash)                                                                      \
    "{'metadata':{'name':'" name "','namespace':'ns','uid':'sbx-" name "','resourceVersion':'5',"          \
    "'labels':{'hiclaw.io/worker':'alice','hiclaw.io/controller':'ctl','hiclaw.io/backend':'sandbox',"     \
    "'agents.kruise.io/claim-name':'hiclaw-worker-alice','hiclaw.io/spec-hash':'" hash "'" uid_label "}},"  \
    "'spec':{'paused':false},'status':{'phase':'Running','conditions':[{'type':'Ready','status':'True'}],"  \
    "'podInfo':{'podIP':'10.1.1.1'}}}"

/* The same rule for the sandbox backend: a claim controlled by another Worker UID is left alone
 * (a create of the same name is reported; the garbage collector removes it by its ownerReference);
 * a Sandbox carries the Worker's UID as the label hiclaw.io/worker-uid (OpenKruise copies the
 * claim's labels onto it; it has no ownerReference), and one labelled for another UID is not this
 * Worker's — not counted. Nothing else would ever remove it, so once the API server confirms that
 * UID's Worker is gone (alice is u1 now) the sweep deletes it; this Worker's own is untouched. */
TEST(shell_claim_and_sandbox_of_another_worker_uid_are_not_ours) {
    SHELL_SETUP();
    shell_informers(&ctl);
    const char *sbx_spec = "{'model':'m','backendRuntime':'sandbox'}";
    shell_worker(&ctl, NULL, sbx_spec, "{'backendRuntime':'sandbox'}");
    shell_both(SHELL_CLAIMS(&ctl), NS_CLAIMS, CLAIM_SQ("u-old", "0123456789abcdef"));
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 1);
    cJSON *claim = fake_get(NS_CLAIMS "/hiclaw-worker-alice");
    CHECK(claim != NULL);
    CHECK_STR_EQ(json_str_at(claim, "metadata.uid"), "claim-1");
    cJSON_Delete(claim);
    char *log = fake_log();
    CHECK_NOT_CONTAINS(log, "DELETE " NS_CLAIMS);
    free(log);
    cJSON *wk = shell_worker_now();
    CHECK_STR_EQ(cond_field(wk, "Synced", "reason"), "ClaimNameConflict");
    CHECK_CONTAINS(cond_field(wk, "Synced", "message"), "u-old");
    cJSON_Delete(wk);

    /* A Sandbox of another UID beside ours: not "multiple Sandboxes"; swept, ours untouched. */
    fake_reset();
    shell_informers_free(&ctl);
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, sbx_spec, "{'backendRuntime':'sandbox'}");
    char hash[17];
    worker w;
    cJSON *wobj = kube_informer_get(ctl.workers, "ns/alice");
    REQUIRE(worker_parse(&a, wobj, &ctl.wd, &w, &err) == 0);
    sandbox_spec_hash(SHELL_SBX(&ctl), &a, &w, NULL, hash);
    char buf1[2048], buf2[2048], buf3[2048];
    snprintf(buf1, sizeof buf1, CLAIM_SQ("u1", "%s"), hash);
    snprintf(buf2, sizeof buf2, SBX_SQ("pool-mine", ",'hiclaw.io/worker-uid':'u1'", "%s"), hash);
    snprintf(buf3, sizeof buf3, SBX_SQ("pool-theirs", ",'hiclaw.io/worker-uid':'u-old'", "%s"), hash);
    shell_both(SHELL_CLAIMS(&ctl), NS_CLAIMS, buf1);
    shell_both(SHELL_SANDBOXES(&ctl), NS_SANDBOXES, buf2);
    shell_both(SHELL_SANDBOXES(&ctl), NS_SANDBOXES, buf3);
    res = reconcile_worker(&ctl, "ns/alice");
    wk = shell_worker_now();
    CHECK_STR_EQ(json_str_at(wk, "status.phase"), "Running");
    CHECK_STR_EQ(json_str_at(wk, "status.instance.name"), "pool-mine");
    CHECK(!str_eq(cond_field(wk, "Synced", "reason"), "MultipleSandboxes"));
    cJSON_Delete(wk);
    log = fake_log();
    CHECK_CONTAINS(log, "GET " NS_WORKERS "/alice\n"); /* the API server asked first */
    CHECK_CONTAINS(log, "DELETE " NS_SANDBOXES "/pool-theirs");
    CHECK_NOT_CONTAINS(log, "DELETE " NS_SANDBOXES "/pool-mine");
    free(log);
    cJSON_Delete(wobj);

    /* A claim this controller makes carries the Worker's UID for its Sandbox. */
    fake_reset();
    shell_informers_free(&ctl);
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, sbx_spec, "{'backendRuntime':'sandbox'}");
    res = reconcile_worker(&ctl, "ns/alice");
    claim = fake_get(NS_CLAIMS "/hiclaw-worker-alice");
    REQUIRE(claim != NULL);
    CHECK_STR_EQ(json_str(cJSON_GetObjectItem(cJSON_GetObjectItem(claim, "spec"), "labels"), "hiclaw.io/worker-uid"), "u1");
    cJSON_Delete(claim);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

/* Found by the 60-minute chaos soak: OpenKruise's claim controller, still working on a claim that
 * was already deleted, created the claim's Sandbox after the Worker's deletion had confirmed none
 * was left — labelled for the deleted Worker, no ownerReference, nothing to remove it. A Sandbox
 * under a Worker key with no Worker is deleted once the API server confirms its Worker is gone;
 * while the API server still has that Worker (a cache behind), it is left alone. */
TEST(shell_sandbox_of_a_worker_that_no_longer_exists_is_deleted) {
    SHELL_SETUP();
    shell_informers(&ctl);
    shell_both(SHELL_SANDBOXES(&ctl), NS_SANDBOXES, SBX_SQ("pool-stray", ",'hiclaw.io/worker-uid':'u-gone'", "0123456789abcdef"));
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    CHECK(!fake_get_exists(NS_SANDBOXES "/pool-stray"));
    char *log = fake_log();
    CHECK_CONTAINS(log, "GET " NS_WORKERS "/alice\n");
    free(log);
    /* the cache has no Worker yet, the API server has it, with that UID: not a stray */
    fake_reset();
    shell_informers_free(&ctl);
    shell_informers(&ctl);
    fake_seed(NS_WORKERS, "{'metadata':{'name':'alice','namespace':'ns','uid':'u-new'}}");
    shell_both(SHELL_SANDBOXES(&ctl), NS_SANDBOXES, SBX_SQ("pool-young", ",'hiclaw.io/worker-uid':'u-new'", "0123456789abcdef"));
    res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    CHECK(fake_get_exists(NS_SANDBOXES "/pool-young"));
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

/* A Worker's deletion removes the leftover Pods of its own deleted Sandboxes — never the Pod of a
 * Sandbox labelled for another Worker object of the same name: that Sandbox may be alive, and
 * deleting its Pod only fights OpenKruise recreating it (the soak saw ten rounds in five seconds). */
TEST(shell_leftover_sandbox_pods_are_only_this_worker_objects) {
    SHELL_SETUP();
    fake_seed(NS_PODS, "{'metadata':{'name':'pool-old','namespace':'ns','labels':{'hiclaw.io/worker':'alice',"
                       "'hiclaw.io/controller':'ctl','hiclaw.io/backend':'sandbox','hiclaw.io/worker-uid':'u-old'}}}");
    fake_seed(NS_PODS, "{'metadata':{'name':'pool-mine','namespace':'ns','labels':{'hiclaw.io/worker':'alice',"
                       "'hiclaw.io/controller':'ctl','hiclaw.io/backend':'sandbox','hiclaw.io/worker-uid':'u1'}}}");
    worker w;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'}}", &w);
    exec_ctx x = {.a = &a, .w = &w, .key = "ns/alice"};
    CHECK_INT_EQ(sandbox_gone(SHELL_SBX(&ctl), &x, &err), -1); /* pool-mine: the finalizer stays */
    CHECK_CONTAINS(err.msg, "pool-mine");
    CHECK_NOT_CONTAINS(err.msg, "pool-old");
    CHECK(fake_get_exists(NS_PODS "/pool-old"));
    CHECK(!fake_get_exists(NS_PODS "/pool-mine"));
    SHELL_TEARDOWN();
}

/* SPEC 3.2: the finalizer is never removed while a Pod, claim or Sandbox of the Worker exists —
 * confirmed against the API server, not only the cache. Each of them, present in the API server
 * but not (yet) in the cache, keeps the finalizer; another Worker UID's does not. */
TEST(shell_finalizer_stays_while_the_api_server_still_has_an_instance) {
    SHELL_SETUP();
    const char *instances[][2] = {
        {NS_PODS, POD_SQ("hiclaw-worker-alice", OWNED_BY("u1"))},
        {NS_PODS, POD_SQ("hiclaw-worker-alice", "")}, /* legacy: no controller */
        {NS_CLAIMS, CLAIM_SQ("u1", "0123456789abcdef")},
        {NS_SANDBOXES, SBX_SQ("pool-x", "", "0123456789abcdef")},
    };
    for (size_t i = 0; i < sizeof instances / sizeof *instances; i++) {
        fake_reset();
        shell_informers(&ctl);
        shell_worker(&ctl, DELETING_MD, "{'model':'m'}", NULL);
        fake_seed(instances[i][0], instances[i][1]);
        reconcile_result res = reconcile_worker(&ctl, "ns/alice");
        CHECK_INT_EQ(res.outcome, RECONCILE_RETRY);
        cJSON *wk = shell_worker_now();
        REQUIRE(wk != NULL);
        const cJSON *fins = cJSON_GetObjectItem(cJSON_GetObjectItem(wk, "metadata"), "finalizers");
        if (cJSON_GetArraySize(fins) != 1) unit_fail(__FILE__, __LINE__, "case %zu: finalizer removed", i);
        CHECK_CONTAINS(cond_field(wk, "Synced", "message"), "still exist");
        char *log = fake_log();
        CHECK_NOT_CONTAINS(log, "DELETE /s3/"); /* nothing cleaned up before the confirmation */
        CHECK_NOT_CONTAINS(log, "DELETE /api/v1/namespaces/ns/serviceaccounts");
        free(log);
        cJSON_Delete(wk);
        shell_informers_free(&ctl);
    }
    /* nothing left (another Worker UID's Pod does not count): the finalizer goes */
    fake_reset();
    shell_informers(&ctl);
    shell_worker(&ctl, DELETING_MD, "{'model':'m'}", NULL);
    fake_seed(NS_PODS, POD_SQ("hiclaw-worker-alice", OWNED_BY("u-old")));
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    cJSON *wk = shell_worker_now();
    CHECK_INT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(wk, "metadata"), "finalizers")), 0);
    cJSON_Delete(wk);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

/* The shell's half of the rule: a claim Completed with its Sandbox absent from the cache is only
 * deleted when a live list of the Worker's Sandboxes is empty too. */
TEST(shell_completed_claim_without_sandbox_is_deleted_only_when_the_api_server_agrees) {
    SHELL_SETUP();
    for (int lag = 1; lag >= 0; lag--) {
        fake_reset();
        shell_informers(&ctl);
        shell_worker(&ctl, NULL, "{'model':'m','backendRuntime':'sandbox'}", "{'backendRuntime':'sandbox'}");
        char hash[17], c1[2048], s1[2048];
        worker w;
        cJSON *wobj = kube_informer_get(ctl.workers, "ns/alice");
        REQUIRE(worker_parse(&a, wobj, &ctl.wd, &w, &err) == 0);
        sandbox_spec_hash(SHELL_SBX(&ctl), &a, &w, NULL, hash);
        snprintf(c1, sizeof c1, CLAIM_SQ("u1", "%s"), hash);
        snprintf(s1, sizeof s1, SBX_SQ("pool-new", ",'hiclaw.io/worker-uid':'u1'", "%s"), hash);
        shell_both(SHELL_CLAIMS(&ctl), NS_CLAIMS, c1);
        if (lag) fake_seed(NS_SANDBOXES, s1); /* the API server has it; the cache not yet */
        reconcile_worker(&ctl, "ns/alice");
        cJSON *claim = fake_get(NS_CLAIMS "/hiclaw-worker-alice");
        cJSON *wk = shell_worker_now();
        if (lag) {
            CHECK(claim != NULL);
            CHECK_STR_EQ(json_str_at(wk, "status.phase"), "Starting");
        } else {
            CHECK(claim == NULL);
            CHECK_STR_EQ(json_str_at(wk, "status.phase"), "Failed");
            CHECK_STR_EQ(cond_field(wk, "Synced", "reason"), "SandboxLost");
        }
        cJSON_Delete(claim);
        cJSON_Delete(wk);
        cJSON_Delete(wobj);
        shell_informers_free(&ctl);
    }
    SHELL_TEARDOWN();
}

/* ---- worker-deps in object storage (issue 15) ---- */

#define KEY_NOW FAKE_BUCKET "/p/workers-deps/ns/alice/"

static const char *s3_meta(const cJSON *o, const char *name) {
    return json_str(cJSON_GetObjectItem(o, "meta"), name);
}

/* The create sequence writes the three objects under the namespace (namespaces never share
 * keys), each recording its owner (UID, namespace, name), env/env with the hash of its content;
 * the claim mounts exactly those keys, and the Worker's status records where they are. */
TEST(shell_deps_written_namespaced_and_owned) {
    SHELL_SETUP();
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, "{'model':'m','backendRuntime':'sandbox'}", "{'backendRuntime':'sandbox'}");
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    const char *keys[] = {KEY_NOW "token/token", KEY_NOW "env/env", KEY_NOW "data/.keep"};
    for (int i = 0; i < 3; i++) {
        cJSON *o = fake_s3_get(keys[i]);
        if (!o) {
            unit_fail(__FILE__, __LINE__, "%s missing", keys[i]);
            continue;
        }
        CHECK_STR_EQ(s3_meta(o, "x-amz-meta-hiclaw-owner-uid"), "u1");
        CHECK_STR_EQ(s3_meta(o, "x-amz-meta-hiclaw-owner-namespace"), "ns");
        CHECK_STR_EQ(s3_meta(o, "x-amz-meta-hiclaw-owner-name"), "alice");
        if (i == 1) {
            const char *h = s3_meta(o, "x-amz-meta-hiclaw-env-hash");
            CHECK(h && strlen(h) == 16);
        }
        cJSON_Delete(o);
    }
    cJSON *claim = fake_get(NS_CLAIMS "/hiclaw-worker-alice");
    REQUIRE(claim != NULL);
    char *cj = cJSON_PrintUnformatted(claim);
    CHECK_CONTAINS(cj, "\"subPath\":\"p/workers-deps/ns/alice/token\"");
    CHECK_CONTAINS(cj, "\"subPath\":\"p/workers-deps/ns/alice/env\"");
    CHECK_CONTAINS(cj, "\"subPath\":\"p/workers-deps/ns/alice/data\"");
    free(cj);
    cJSON_Delete(claim);
    cJSON *wk = shell_worker_now();
    CHECK_STR_EQ(json_str_at(wk, "status.workerDepsPath"), "p/workers-deps/ns/alice/");
    cJSON_Delete(wk);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

/* An object of this Worker's key owned by another Worker: nothing written, no claim, the conflict
 * reported with the other owner; whether it is seen by the observation (env/env) or only when
 * writing (data/.keep). */
TEST(shell_deps_owned_by_another_worker_block_the_claim) {
    SHELL_SETUP();
    const char *where[] = {KEY_NOW "env/env", KEY_NOW "data/.keep"};
    for (int i = 0; i < 2; i++) {
        fake_reset();
        shell_informers(&ctl);
        shell_worker(&ctl, NULL, "{'model':'m','backendRuntime':'sandbox'}", "{'backendRuntime':'sandbox'}");
        fake_s3_seed(where[i], "theirs",
                     "{'x-amz-meta-hiclaw-owner-uid':'u2','x-amz-meta-hiclaw-owner-namespace':'ns',"
                     "'x-amz-meta-hiclaw-owner-name':'bob'}");
        reconcile_result res = reconcile_worker(&ctl, "ns/alice");
        (void)res;
        cJSON *o = fake_s3_get(where[i]);
        REQUIRE(o != NULL);
        CHECK_STR_EQ(json_str(o, "body"), "theirs");
        CHECK_STR_EQ(s3_meta(o, "x-amz-meta-hiclaw-owner-uid"), "u2");
        cJSON_Delete(o);
        cJSON *claim = fake_get(NS_CLAIMS "/hiclaw-worker-alice");
        CHECK(claim == NULL);
        cJSON_Delete(claim);
        cJSON *wk = shell_worker_now();
        CHECK_STR_EQ(cond_field(wk, "Synced", "status"), "False");
        CHECK_STR_EQ(cond_field(wk, "Synced", "reason"), "WorkerDepsConflict");
        CHECK_CONTAINS(cond_field(wk, "Synced", "message"), "ns/bob");
        CHECK_CONTAINS(cond_field(wk, "Synced", "message"), "u2");
        cJSON_Delete(wk);
        shell_informers_free(&ctl);
    }
    SHELL_TEARDOWN();
}

/* Deleting a Worker deletes its own objects and those nobody owns (written before ownership was
 * recorded, at this Worker's key), never another Worker's. */
TEST(shell_deps_delete_respects_ownership) {
    SHELL_SETUP();
    shell_informers(&ctl);
    shell_worker(&ctl, DELETING_MD, "{'model':'m','backendRuntime':'sandbox'}", "{'backendRuntime':'sandbox'}");
    fake_s3_seed(KEY_NOW "token/token", "tok", "{'x-amz-meta-hiclaw-owner-uid':'u1'}");
    fake_s3_seed(KEY_NOW "env/env", "theirs", "{'x-amz-meta-hiclaw-owner-uid':'u2','x-amz-meta-hiclaw-owner-namespace':'ns'}");
    fake_s3_seed(KEY_NOW "data/.keep", "", "{}");
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    cJSON *t = fake_s3_get(KEY_NOW "token/token"), *e = fake_s3_get(KEY_NOW "env/env"), *k = fake_s3_get(KEY_NOW "data/.keep");
    CHECK(t == NULL);
    CHECK(e != NULL);
    CHECK(k == NULL);
    cJSON_Delete(t), cJSON_Delete(e), cJSON_Delete(k);
    cJSON *wk = shell_worker_now();
    CHECK_INT_EQ(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(wk, "metadata"), "finalizers")), 0);
    cJSON_Delete(wk);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

/* The observation reads env/env's presence and hash (HEAD, never the content); a lost env file is
 * written again in place, the running sandbox untouched. */
TEST(shell_lost_env_object_is_rewritten_without_touching_the_sandbox) {
    SHELL_SETUP();
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, "{'model':'m','backendRuntime':'sandbox'}",
                 "{'backendRuntime':'sandbox','workerDepsPath':'p/workers-deps/ns/alice/'}");
    char hash[17], c1[2048], s1[2048];
    worker w;
    cJSON *wobj = kube_informer_get(ctl.workers, "ns/alice");
    REQUIRE(worker_parse(&a, wobj, &ctl.wd, &w, &err) == 0);
    sandbox_spec_hash(SHELL_SBX(&ctl), &a, &w, NULL, hash);
    snprintf(c1, sizeof c1, CLAIM_SQ("u1", "%s"), hash);
    snprintf(s1, sizeof s1, SBX_SQ("pool-a", ",'hiclaw.io/worker-uid':'u1'", "%s"), hash);
    shell_both(SHELL_CLAIMS(&ctl), NS_CLAIMS, c1);
    shell_both(SHELL_SANDBOXES(&ctl), NS_SANDBOXES, s1);
    fake_s3_seed(KEY_NOW "token/token", "tok",
                 "{'x-amz-meta-hiclaw-owner-uid':'u1','x-amz-meta-hiclaw-issued':'1900000000',"
                 "'x-amz-meta-hiclaw-expires':'1900086400'}");
    reconcile_worker(&ctl, "ns/alice");
    cJSON *e = fake_s3_get(KEY_NOW "env/env");
    REQUIRE(e != NULL);
    CHECK_CONTAINS(json_str(e, "body"), "export HICLAW_WORKER_NAME='alice'");
    CHECK_STR_EQ(s3_meta(e, "x-amz-meta-hiclaw-owner-uid"), "u1");
    cJSON_Delete(e);
    char *log = fake_log();
    CHECK_NOT_CONTAINS(log, "DELETE " NS_CLAIMS);
    CHECK_NOT_CONTAINS(log, "DELETE " NS_SANDBOXES);
    CHECK_NOT_CONTAINS(log, "GET /s3/"); /* never read back: HEAD only */
    free(log);
    cJSON_Delete(wobj);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

/* A changed workerName moves the deps: the old token and env file (credentials) are removed —
 * only those this Worker owns — before the new ones are written. */
TEST(shell_deps_moved_by_a_workername_change_are_removed) {
    SHELL_SETUP();
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, "{'model':'m','backendRuntime':'sandbox','workerName':'al2'}",
                 "{'backendRuntime':'sandbox','workerDepsPath':'p/workers-deps/ns/alice/'}");
    fake_s3_seed(KEY_NOW "token/token", "tok", "{'x-amz-meta-hiclaw-owner-uid':'u1'}");
    fake_s3_seed(KEY_NOW "env/env", "env", "{'x-amz-meta-hiclaw-owner-uid':'u1'}");
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    cJSON *t = fake_s3_get(KEY_NOW "token/token"), *e = fake_s3_get(KEY_NOW "env/env");
    CHECK(t == NULL && e == NULL);
    cJSON_Delete(t), cJSON_Delete(e);
    cJSON *n = fake_s3_get(FAKE_BUCKET "/p/workers-deps/ns/al2/env/env");
    CHECK(n != NULL);
    cJSON_Delete(n);
    cJSON *wk = shell_worker_now();
    CHECK_STR_EQ(json_str_at(wk, "status.workerDepsPath"), "p/workers-deps/ns/al2/");
    cJSON_Delete(wk);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

/* Found by the 60-minute chaos soak: worker-deps written at a path the Worker's status never
 * recorded (the status write after them lost to a failing API server), then a workerName change,
 * then the Worker deleted — the deletion knew only the current and the recorded path, and the
 * objects in between outlived the Worker. The path is recorded before anything is written there:
 * with the status write failing, nothing is written and nothing is claimed. */
TEST(shell_deps_are_written_only_at_a_path_the_status_records) {
    SHELL_SETUP();
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, "{'model':'m','backendRuntime':'sandbox'}", "{'backendRuntime':'sandbox'}");
    fake_fail("PATCH", NS_WORKERS "/alice/status", 100);
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 1);
    const char *keys[] = {KEY_NOW "token/token", KEY_NOW "env/env", KEY_NOW "data/.keep"};
    for (int i = 0; i < 3; i++) {
        cJSON *o = fake_s3_get(keys[i]);
        if (o) unit_fail(__FILE__, __LINE__, "%s written while status.workerDepsPath does not name it", keys[i]);
        cJSON_Delete(o);
    }
    CHECK(!fake_get_exists(NS_CLAIMS "/hiclaw-worker-alice"));
    cJSON *wk = shell_worker_now();
    CHECK(json_str_at(wk, "status.workerDepsPath") == NULL);
    cJSON_Delete(wk);
    /* the API server answers again: recorded, written, claimed */
    fake_fail("PATCH", "", 0);
    res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    cJSON *t = fake_s3_get(KEY_NOW "token/token");
    CHECK(t != NULL);
    cJSON_Delete(t);
    CHECK(fake_get_exists(NS_CLAIMS "/hiclaw-worker-alice"));
    wk = shell_worker_now();
    CHECK_STR_EQ(json_str_at(wk, "status.workerDepsPath"), "p/workers-deps/ns/alice/");
    cJSON_Delete(wk);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

/* Everything that shapes a sandbox is in its spec hash: the worker-deps location (prefix,
 * namespace), the PV that exposes it, the pool. */
TEST(sandbox_spec_hash_covers_deps_location_pv_and_pool) {
    SHELL_SETUP();
    worker w;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'sandbox'}}", &w);
    char base[17], h[17];
    sandbox_spec_hash(SHELL_SBX(&ctl), &a, &w, NULL, base);
    sbx_state(SHELL_SBX(&ctl))->set.deps_prefix = "q/";
    sandbox_spec_hash(SHELL_SBX(&ctl), &a, &w, NULL, h);
    CHECK(strcmp(h, base) != 0);
    sbx_state(SHELL_SBX(&ctl))->set.deps_prefix = "p/";
    sbx_state(SHELL_SBX(&ctl))->set.deps_pv = "other-pv";
    sandbox_spec_hash(SHELL_SBX(&ctl), &a, &w, NULL, h);
    CHECK(strcmp(h, base) != 0);
    sbx_state(SHELL_SBX(&ctl))->set.deps_pv = "deps-pv";
    sbx_state(SHELL_SBX(&ctl))->set.pool = "other-pool";
    sandbox_spec_hash(SHELL_SBX(&ctl), &a, &w, NULL, h);
    CHECK(strcmp(h, base) != 0);
    sbx_state(SHELL_SBX(&ctl))->set.pool = "pool";
    worker w2;
    td_worker(&a, "{'metadata':{'name':'alice','namespace':'ns2','uid':'u1','generation':2},"
                  "'spec':{'model':'m','backendRuntime':'sandbox'}}", &w2);
    sandbox_spec_hash(SHELL_SBX(&ctl), &a, &w2, NULL, h);
    CHECK(strcmp(h, base) != 0);
    sandbox_spec_hash(SHELL_SBX(&ctl), &a, &w, NULL, h);
    CHECK_STR_EQ(h, base);
    SHELL_TEARDOWN();
}

/* A Worker relabelled to this controller whose Pod is still labelled for the previous one: the
 * Pod is this Worker's (its UID) but outside this controller's watch, so it cannot be managed
 * here — reported, not taken for a successful create (which would leave the Worker Pending
 * forever). */
TEST(shell_own_pod_labelled_for_another_controller_is_reported) {
    SHELL_SETUP();
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, "{'model':'m'}", NULL);
    fake_seed(NS_PODS, "{'metadata':{'name':'hiclaw-worker-alice','namespace':'ns','uid':'p1',"
                       "'labels':{'hiclaw.io/worker':'alice','hiclaw.io/controller':'ctl-old','hiclaw.io/backend':'pod'}"
                       OWNED_BY("u1") "}}");
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 1);
    cJSON *wk = shell_worker_now();
    CHECK_STR_EQ(cond_field(wk, "Synced", "reason"), "PodNameConflict");
    CHECK_CONTAINS(cond_field(wk, "Synced", "message"), "ctl-old");
    cJSON_Delete(wk);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

/* A reconcile right after the controller's own create, before the cache shows what it made (the
 * Worker's status write brings one within milliseconds): nothing is done again — no second
 * token, deps write or create. Found on a loaded machine by the e2e claim-shape test: OpenKruise
 * mounted the first token while the bucket already held a second. Once a reconcile sees the
 * instance (no create wanted), a later create goes ahead at once. */
TEST(shell_own_create_not_yet_in_the_cache_is_not_redone) {
    SHELL_SETUP();
    shell_informers(&ctl);
    shell_worker(&ctl, NULL, "{'model':'m','backendRuntime':'sandbox'}", "{'backendRuntime':'sandbox'}");
    reconcile_result res = reconcile_worker(&ctl, "ns/alice");
    CHECK_INT_EQ(res.error, 0);
    CHECK_INT_EQ(kube_recorder_flush(ctl.host.rec, 5000), 0); /* its Events are written by now */
    char *before = fake_log();
    CHECK_CONTAINS(before, "POST " NS_CLAIMS);
    res = reconcile_worker(&ctl, "ns/alice"); /* the cache still shows no claim */
    CHECK_INT_EQ(res.error, 0);
    CHECK_INT_EQ(res.outcome, RECONCILE_AFTER);
    CHECK(res.requeue_after_ms > 0 && res.requeue_after_ms <= 2000);
    char *after = fake_log();
    const char *delta = after + strlen(before);
    CHECK_NOT_CONTAINS(delta, "POST");
    CHECK_NOT_CONTAINS(delta, "PUT");
    free(before);
    free(after);
    shell_informers_free(&ctl);
    SHELL_TEARDOWN();
}

/* The live switch guard right before a create asks every other backend's API: with both sandbox
 * APIs served that is four LISTs (claims, OpenKruise Sandboxes, agent-sandbox Sandboxes and their
 * Pods). An agent-sandbox Sandbox the cache has not seen blocks the Pod. */
TEST(shell_live_switch_guard_asks_every_other_backend) {
    SHELL_SETUP();
    worker w;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m'}}", &w);
    fake_seed("/apis/agents.x-k8s.io/v1beta1/namespaces/ns/sandboxes",
              "{'metadata':{'name':'hiclaw-worker-alice','namespace':'ns','labels':{'hiclaw.io/worker':'alice',"
              "'hiclaw.io/controller':'ctl','hiclaw.io/backend':'agent-sandbox'}}}");
    exec_ctx x;
    CHECK_INT_EQ(shell_exec(&ctl, &a, &w, ACT_CREATE_POD, "hiclaw-worker-alice", NULL, &x, &err), -1);
    CHECK_CONTAINS(err.msg, "refusing to create Pod hiclaw-worker-alice");
    CHECK_CONTAINS(err.msg, "agent-sandbox");
    CHECK_STR_EQ(x.failure_reason, "BackendSwitchBlocked");
    char *log = fake_log();
    /* by name where the name is fixed (a quorum read of one key); OpenKruise's Sandboxes have
     * generated names: listed by the Worker's labels */
    CHECK_CONTAINS(log, "GET /apis/agents.kruise.io/v1alpha1/namespaces/ns/sandboxclaims/hiclaw-worker-alice\n");
    CHECK_CONTAINS(log, "GET /apis/agents.kruise.io/v1alpha1/namespaces/ns/sandboxes?labelSelector=");
    CHECK_CONTAINS(log, "GET /apis/agents.x-k8s.io/v1beta1/namespaces/ns/sandboxes/hiclaw-worker-alice\n");
    CHECK_NOT_CONTAINS(log, "sandboxclaims?labelSelector=");
    CHECK_NOT_CONTAINS(log, "agents.x-k8s.io/v1beta1/namespaces/ns/sandboxes?labelSelector=");
    CHECK_NOT_CONTAINS(log, "POST /api/v1/namespaces/ns/pods");
    free(log);
    SHELL_TEARDOWN();
}

/* The switch guard's read by name counts an object only when it carries the Worker's and this
 * controller's labels and is the backend's instance, as the label-selected LIST did: a Pod of
 * that name for another Worker or controller does not block; the Worker's own Pod does, and a
 * Pod labelled for agent-sandbox counts as agent-sandbox's. */
TEST(shell_live_switch_guard_by_name_checks_the_labels) {
    SHELL_SETUP();
    worker w;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m','backendRuntime':'agent-sandbox'}}", &w);
    static const char *pods[] = {
        "{'metadata':{'name':'hiclaw-worker-alice','namespace':'ns','labels':{'hiclaw.io/worker':'bob',"
        "'hiclaw.io/controller':'ctl'}}}",
        "{'metadata':{'name':'hiclaw-worker-alice','namespace':'ns','labels':{'hiclaw.io/worker':'alice',"
        "'hiclaw.io/controller':'ctl-b'}}}",
        "{'metadata':{'name':'hiclaw-worker-alice','namespace':'ns','labels':{'hiclaw.io/worker':'alice',"
        "'hiclaw.io/controller':'ctl'}}}"};
    for (size_t i = 0; i < 3; i++) {
        fake_reset();
        fake_seed(NS_PODS, pods[i]);
        exec_ctx x;
        err_clear(&err);
        int rc = shell_exec(&ctl, &a, &w, ACT_CREATE_AGENT_SANDBOX, "hiclaw-worker-alice", NULL, &x, &err);
        char *log = fake_log();
        CHECK_CONTAINS(log, "GET " NS_PODS "/hiclaw-worker-alice\n");
        CHECK_CONTAINS(log, "GET /apis/agents.kruise.io/v1alpha1/namespaces/ns/sandboxclaims/hiclaw-worker-alice\n");
        CHECK_NOT_CONTAINS(log, "GET " NS_PODS "?labelSelector=");
        if (i < 2) {
            CHECK_INT_EQ(rc, 0);
            CHECK_CONTAINS(log, "POST /apis/agents.x-k8s.io/v1beta1/namespaces/ns/sandboxes");
        } else {
            CHECK_INT_EQ(rc, -1);
            CHECK_CONTAINS(err.msg, "refusing to create Sandbox hiclaw-worker-alice");
            CHECK_STR_EQ(x.failure_reason, "BackendSwitchBlocked");
            CHECK_NOT_CONTAINS(log, "POST /apis/agents.x-k8s.io");
        }
        free(log);
    }
    /* creating a Pod: a Pod of that name labelled for agent-sandbox is agent-sandbox's instance */
    fake_reset();
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m'}}", &w);
    fake_seed(NS_PODS, "{'metadata':{'name':'hiclaw-worker-alice','namespace':'ns','labels':{'hiclaw.io/worker':"
                       "'alice','hiclaw.io/controller':'ctl','hiclaw.io/backend':'agent-sandbox'}}}");
    exec_ctx x;
    err_clear(&err);
    CHECK_INT_EQ(shell_exec(&ctl, &a, &w, ACT_CREATE_POD, "hiclaw-worker-alice", NULL, &x, &err), -1);
    CHECK_CONTAINS(err.msg, "agent-sandbox");
    SHELL_TEARDOWN();
}

/* The finalizer's confirmation (SPEC 3.2) still lists by the Worker's labels: an instance under
 * another name (a changed prefix) holds the finalizer too. */
TEST(shell_live_confirm_gone_lists_by_labels) {
    SHELL_SETUP();
    fake_seed(NS_PODS, "{'metadata':{'name':'old-worker-alice','namespace':'ns','labels':{'hiclaw.io/worker':"
                       "'alice','hiclaw.io/controller':'ctl'}}}");
    size_t n = 0;
    buf names = BUF_INIT;
    worker w;
    td_worker(&a, "{" W_BASE ",'spec':{'model':'m'}}", &w);
    CHECK_INT_EQ(live_instances(&ctl, &w, &n, &names, &err), 0);
    CHECK_INT_EQ(n, 1);
    CHECK_CONTAINS(buf_cstr(&names), "Pod old-worker-alice");
    buf_free(&names);
    char *log = fake_log();
    CHECK_CONTAINS(log, "GET " NS_PODS "?labelSelector=");
    CHECK_CONTAINS(log, "sandboxclaims?labelSelector=");
    free(log);
    SHELL_TEARDOWN();
}

/* kube_record hands the Event to the sender and returns: a reconcile does not wait for the API
 * server's answer (here: one that never answers). The queue is bounded. */
TEST(events_are_recorded_without_waiting_for_the_api_server) {
    REQUIRE(fake_server() == 0);
    fake_reset();
    wc_err err;
    err_clear(&err);
    kube_client *kc = fake_kube_client(&err);
    REQUIRE(kc);
    kube_recorder *r = kube_recorder_new(kc, "hiclaw.io/worker-controller", "ctl-test");
    kube_event_ref ref = {"hiclaw.io/v1beta1", "Worker", "ns", "alice", "uid-alice"};
    fake_call("POST", "/__slow", "{\"method\":\"POST\",\"contains\":\"/events\",\"ms\":1500,\"times\":1}", NULL);
    int64_t t0 = wc_now_ms();
    kube_record(r, &ref, "Normal", "Created", "Create", "created Pod %s", "hiclaw-worker-alice");
    kube_record(r, &ref, "Warning", "Other", "Reconcile", "second");
    int64_t took = wc_now_ms() - t0;
    CHECK(took < 1000); /* not the 1.5 s the server takes to answer the first */
    CHECK_INT_EQ(kube_recorder_flush(r, 10000), 0);
    CHECK_INT_EQ(atomic_load(&r->created), 2);
    char *log = fake_log();
    const char *first = strstr(log, "POST /apis/events.k8s.io/v1/namespaces/ns/events");
    CHECK(first && strstr(first + 1, "POST /apis/events.k8s.io/v1/namespaces/ns/events")); /* both, in order */
    free(log);
    /* a full queue drops (and counts) what does not fit, without blocking */
    fake_call("POST", "/__slow", "{\"method\":\"POST\",\"contains\":\"/events\",\"ms\":2000,\"times\":1}", NULL);
    for (int i = 0; i < KUBE_EVENT_QUEUE_MAX + 50; i++) kube_record(r, &ref, "Normal", "Many", "Reconcile", "n %d", i);
    CHECK(atomic_load(&r->dropped) >= 49);
    /* stopping: the queue gets KUBE_EVENT_DRAIN_MS, spent on the slow answer; the rest is dropped */
    kube_recorder_free(r);
    kube_client_free(kc);
}
