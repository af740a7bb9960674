/* test_explain.c — `worker-controller explain`: the read-only clients it is built on. */


/* The clients explain makes refuse every write before it is sent; the backends' S3 clients
 * inherit it from the host. */
TEST(read_only_clients_refuse_writes_before_sending) {
    REQUIRE(fake_server() == 0);
    fake_reset();
    controller ctl;
    fake_controller(&ctl);
    REQUIRE(ctl.host.kc && SHELL_S3(&ctl));
    ctl.host.kc->read_only = 1;
    SHELL_S3(&ctl)->read_only = 1;
    wc_err err;
    err_clear(&err);
    CHECK(kube_create(ctl.host.kc, &KUBE_PODS, "ns", NULL, NULL, "{}", NULL, &err) < 0);
    CHECK_CONTAINS(err.msg, "read-only client: refusing POST");
    err_clear(&err);
    CHECK(kube_patch(ctl.host.kc, &KUBE_WORKERS, "ns", "alice", "status", KUBE_PATCH_MERGE, "{}", NULL, 0, 0, NULL,
                     &err) < 0);
    err_clear(&err);
    CHECK(kube_delete(ctl.host.kc, &KUBE_PODS, "ns", "x", NULL, NULL, NULL, &err) < 0);
    err_clear(&err);
    CHECK(s3_put(SHELL_S3(&ctl), "k", "v", 1, NULL, 0, &err) < 0);
    CHECK_CONTAINS(err.msg, "read-only client: refusing PUT");
    err_clear(&err);
    CHECK(s3_delete(SHELL_S3(&ctl), "k", &err) < 0);
    err_clear(&err);
    cJSON *list = NULL;
    CHECK(kube_list_page(ctl.host.kc, &KUBE_PODS, "ns", NULL, NULL, 1, NULL, &list, &err) == 0); /* reads go */
    cJSON_Delete(list);
    char *log = fake_log();
    CHECK_NOT_CONTAINS(log, "POST");
    CHECK_NOT_CONTAINS(log, "PATCH");
    CHECK_NOT_CONTAINS(log, "PUT");
    CHECK_NOT_CONTAINS(log, "DELETE");
    CHECK_CONTAINS(log, "GET " NS_PODS);
    free(log);
    fake_controller_free(&ctl);

    /* a backend's own S3 client, made by its setup, is read-only when the host is */
    memset(&ctl, 0, sizeof ctl);
    fake_controller(&ctl); /* for a client and g_fake_conf */
    controller ro;
    memset(&ro, 0, sizeof ro);
    ro.host.kc = ctl.host.kc;
    ro.host.namespace = "ns";
    ro.host.read_only = 1;
    err_clear(&err);
    REQUIRE(controller_setup(&ro, wc_backend_table, WC_NBACKENDS, &g_fake_conf, &err) == 0);
    REQUIRE(SHELL_S3(&ro) != NULL);
    CHECK_INT_EQ(SHELL_S3(&ro)->read_only, 1);
    CHECK_INT_EQ(SHELL_S3(&ctl)->read_only, 0);
    controller_release(&ro);
    fake_controller_free(&ctl);
}
