/*
 * config_check.c — the syntax checks of configuration values: DNS names and subdomains, bucket
 * names, key prefixes, listen addresses, endpoint URLs. Pure predicates, no allocation. The
 * configuration table (config.c) names one per row; render-rbac takes the same names on its
 * command line and checks them with the same functions.
 */

static int cfg_is_dns_label(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-') return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-')) return 0;
    return 1;
}

static int cfg_is_dns_subdomain(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 253) return 0;
    char label[254];
    for (const char *p = s; ; ) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        memcpy(label, p, l);
        label[l] = '\0';
        if (!cfg_is_dns_label(label)) return 0;
        if (!dot) return 1;
        p = dot + 1;
    }
}

/* S3 bucket rules (AWS, MinIO and OSS agree on this subset): 3-63 characters, lowercase
 * alphanumerics, '-' and '.', starting and ending alphanumeric. */
static int cfg_is_bucket(const char *s) {
    size_t n = strlen(s);
    if (n < 3 || n > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1])) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(islower((unsigned char)s[i]) || isdigit((unsigned char)s[i]) || s[i] == '-' || s[i] == '.')) return 0;
    return 1;
}

static int cfg_is_word(const char *s) {
    if (!*s) return 0;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f) return 0;
    return 1;
}

/* A prefix of DNS-1123 names: the full name <prefix>worker-<name> is checked per Worker. */
static int cfg_is_name_prefix(const char *s) {
    if (!*s) return 1;
    if (strlen(s) > 32 || !isalnum((unsigned char)s[0])) return 0;
    for (; *s; s++)
        if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '-')) return 0;
    return 1;
}

/* Object key prefix: relative ("a/b/"), no empty, "." or ".." segments, printable. */
static int cfg_is_key_prefix(const char *s) {
    if (!*s) return 1;
    if (*s == '/') return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p < ' ' || *p == 0x7f || *p == '\\') return 0;
    for (const char *seg = s; *seg; ) {
        const char *slash = strchr(seg, '/');
        size_t l = slash ? (size_t)(slash - seg) : strlen(seg);
        if (l == 0 || (l == 1 && seg[0] == '.') || (l == 2 && seg[0] == '.' && seg[1] == '.')) return 0;
        if (!slash) break;
        seg = slash + 1;
    }
    return 1;
}

/* A host as it appears before ":port": a DNS name or IPv4 address, or a bracketed IPv6. */
static int cfg_is_host(const char *s, size_t n) {
    if (n >= 2 && s[0] == '[') {
        if (s[n - 1] != ']' || n == 2) return 0;
        for (size_t i = 1; i < n - 1; i++)
            if (!(isxdigit((unsigned char)s[i]) || s[i] == ':' || s[i] == '.')) return 0;
        return 1;
    }
    if (n == 0 || n > 253) return 0;
    for (size_t i = 0; i < n; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '-' || s[i] == '.')) return 0;
    return 1;
}

static int cfg_is_port(const char *s) {
    size_t n = strlen(s);
    if (n == 0 || n > 5) return 0;
    long port = 0;
    for (const char *p = s; *p; p++) {
        if (!isdigit((unsigned char)*p)) return 0;
        port = port * 10 + (*p - '0');
    }
    return port >= 1 && port <= 65535;
}

/* [host]:port; an empty host listens on all interfaces. */
/* A listen address; port 0 asks the kernel for a free port (the bound address is logged). */
static int cfg_is_listen_addr(const char *s) {
    const char *colon = strrchr(s, ':');
    if (!colon || (!cfg_is_port(colon + 1) && strcmp(colon + 1, "0") != 0)) return 0;
    size_t hl = (size_t)(colon - s);
    return hl == 0 || cfg_is_host(s, hl);
}

/* http(s)://host[:port][/]: path-style S3 puts the bucket in the path, so the endpoint has
 * none of its own; userinfo would put credentials where logs can see them. */
static int cfg_is_endpoint_url(const char *s) {
    const char *p;
    if (strncmp(s, "https://", 8) == 0) p = s + 8;
    else if (strncmp(s, "http://", 7) == 0) p = s + 7;
    else return 0;
    size_t n = strlen(p);
    if (n && p[n - 1] == '/') n--;
    char hp[300];
    if (n == 0 || n >= sizeof hp) return 0;
    memcpy(hp, p, n);
    hp[n] = '\0';
    /* The port separator is the last ':' unless it sits inside an IPv6 literal. */
    char *colon = strrchr(hp, ':'), *bracket = strrchr(hp, ']');
    if (colon && bracket && colon < bracket) colon = NULL;
    if (!colon) return cfg_is_host(hp, n);
    return cfg_is_port(colon + 1) && cfg_is_host(hp, (size_t)(colon - hp));
}
