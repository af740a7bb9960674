/*
 * parse.c — strict parsers for configuration values: durations and booleans.
 * Strict means the whole string must parse; "5 m", "5mins" or "" are errors, not zero.
 */

/* Go-style duration: a sequence of decimal numbers with units ns, us, ms, s, m, h
 * ("90s", "1h30m", "1.5s", "-1s", "0"). Result in milliseconds, truncated toward zero. */
static int parse_duration_ms(const char *s, int64_t *out) {
    if (!s || !*s) return -1;
    int neg = 0;
    if (*s == '-' || *s == '+') neg = *s++ == '-';
    if (strcmp(s, "0") == 0) { *out = 0; return 0; }
    double total = 0;
    int parts = 0;
    while (*s) {
        if (!isdigit((unsigned char)*s) && *s != '.') return -1;
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (end == s || errno) return -1;
        s = end;
        double unit;
        if (strncmp(s, "ns", 2) == 0) unit = 1e-6, s += 2;
        else if (strncmp(s, "us", 2) == 0) unit = 1e-3, s += 2;
        else if (strncmp(s, "\xc2\xb5s", 3) == 0) unit = 1e-3, s += 3;
        else if (strncmp(s, "ms", 2) == 0) unit = 1, s += 2;
        else if (*s == 's') unit = 1000, s += 1;
        else if (*s == 'm') unit = 60000, s += 1;
        else if (*s == 'h') unit = 3600000, s += 1;
        else return -1;
        total += v * unit;
        parts++;
        if (total > 9.2e15) return -1;
    }
    if (!parts) return -1;
    *out = (int64_t)(neg ? -total : total);
    return 0;
}

static int parse_bool(const char *s, int *out) {
    static const char *yes[] = {"true", "1", "yes", "on"}, *no[] = {"false", "0", "no", "off"};
    for (int i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) { *out = 1; return 0; }
        if (strcasecmp(s, no[i]) == 0) { *out = 0; return 0; }
    }
    return -1;
}
