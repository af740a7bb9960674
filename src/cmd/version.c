/*
 * version.c — `worker-controller version`: the project version and the versions of the
 * libraries actually linked (asked from the libraries themselves where they can say).
 */

static const char version_usage[] =
    "Usage: worker-controller version\n"
    "\n"
    "Prints the worker-controller version and the versions of the libraries linked into this\n"
    "static binary (libcurl, BearSSL, cJSON, libyaml) with their Debian source package versions.\n";

static int cmd_version(int argc, char **argv) {
    wc_err err;
    err_clear(&err);
    if (cli_parse(argc, argv, NULL, NULL, 0, NULL, &err) < 0) return cli_usage_error("version", &err);
    const curl_version_info_data *cv = curl_version_info(CURLVERSION_NOW);
    printf("worker-controller %s\n", WC_VERSION);
    printf("libcurl %s (%s; debian %s)\n", cv->version, cv->ssl_version ? cv->ssl_version : "no TLS",
           WC_DEP_CURL_DEBIAN);
    /* BearSSL has no runtime version call; its Debian source version is what was built. */
    printf("BearSSL 0.6 (debian %s)\n", WC_DEP_BEARSSL_DEBIAN);
    printf("cJSON %s (debian %s)\n", cJSON_Version(), WC_DEP_CJSON_DEBIAN);
    printf("libyaml %s (debian %s)\n", yaml_get_version_string(), WC_DEP_LIBYAML_DEBIAN);
    return WC_EXIT_OK;
}
