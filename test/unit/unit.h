/*
 * unit.h — a minimal test runner. Tests register themselves with TEST(name); CHECK* macros
 * record a failure with file:line and keep going, REQUIRE* stop the test. The runner prints one
 * line per failing check, a line per test, and ends with "N passed, N failed".
 *
 * Tests run in one process; a test that needs a server starts it itself, and no test relies on
 * another having run before it — registration follows the files' include order, which says
 * nothing. WC_UNIT_ORDER=reverse or WC_UNIT_ORDER=shuffle:<seed> runs them in another order to
 * prove it. Filter with: build/unit-tests PATTERN (substring of the test name).
 */

typedef struct unit_test {
    const char *name;
    void (*fn)(void);
} unit_test;

#define UNIT_MAX_TESTS 1024
static unit_test unit_tests[UNIT_MAX_TESTS];
static int unit_ntests;
static int unit_current_failed;

static void unit_register(const char *name, void (*fn)(void)) {
    assert(unit_ntests < UNIT_MAX_TESTS);
    unit_tests[unit_ntests].name = name;
    unit_tests[unit_ntests].fn = fn;
    unit_ntests++;
}

#define TEST(name)                                                                      \
    static void test_##name(void);                                                      \
    __attribute__((constructor)) static void register_##name(void) {                    \
        unit_register(#name, test_##name);                                              \
    }                                                                                   \
    static void test_##name(void)

static void unit_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stdout, "    FAIL %s:%d: ", file, line);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    va_end(ap);
    fflush(stdout);
    unit_current_failed = 1;
}

#define CHECK(cond) \
    do { if (!(cond)) unit_fail(__FILE__, __LINE__, "%s", #cond); } while (0)
#define REQUIRE(cond) \
    do { if (!(cond)) { unit_fail(__FILE__, __LINE__, "%s", #cond); return; } } while (0)
#define CHECK_INT_EQ(a, b)                                                                    \
    do {                                                                                      \
        long long _a = (long long)(a), _b = (long long)(b);                                   \
        if (_a != _b) unit_fail(__FILE__, __LINE__, "%s == %s (%lld vs %lld)", #a, #b, _a, _b); \
    } while (0)
#define CHECK_STR_EQ(a, b)                                                                     \
    do {                                                                                       \
        const char *_a = (a), *_b = (b);                                                       \
        if (!_a || !_b || strcmp(_a, _b) != 0)                                                 \
            unit_fail(__FILE__, __LINE__, "%s == %s (\"%s\" vs \"%s\")", #a, #b, _a ? _a : "(null)", \
                      _b ? _b : "(null)");                                                     \
    } while (0)
#define CHECK_CONTAINS(hay, needle)                                                            \
    do {                                                                                       \
        const char *_h = (hay), *_n = (needle);                                                \
        if (!_h || !strstr(_h, _n))                                                            \
            unit_fail(__FILE__, __LINE__, "\"%s\" contains \"%s\"", _h ? _h : "(null)", _n);   \
    } while (0)
#define CHECK_NOT_CONTAINS(hay, needle)                                                        \
    do {                                                                                       \
        const char *_h = (hay), *_n = (needle);                                                \
        if (_h && strstr(_h, _n))                                                              \
            unit_fail(__FILE__, __LINE__, "\"%s\" must not contain \"%s\"", _h, _n);           \
    } while (0)

/* Reorders the registered tests as WC_UNIT_ORDER asks (reverse, shuffle:<seed>). */
static void unit_reorder(void) {
    const char *order = getenv("WC_UNIT_ORDER");
    if (!order || !*order) return;
    if (strcmp(order, "reverse") == 0) {
        for (int i = 0, j = unit_ntests - 1; i < j; i++, j--) {
            unit_test t = unit_tests[i];
            unit_tests[i] = unit_tests[j];
            unit_tests[j] = t;
        }
    } else if (strncmp(order, "shuffle:", 8) == 0) {
        unsigned seed = (unsigned)strtoul(order + 8, NULL, 10);
        for (int i = unit_ntests - 1; i > 0; i--) {
            int j = (int)(rand_r(&seed) % (unsigned)(i + 1));
            unit_test t = unit_tests[i];
            unit_tests[i] = unit_tests[j];
            unit_tests[j] = t;
        }
    }
    printf("order: %s\n", order);
}

static int unit_run(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0;
    unit_reorder();
    for (int i = 0; i < unit_ntests; i++) {
        if (filter && !strstr(unit_tests[i].name, filter)) continue;
        unit_current_failed = 0;
        double t0 = wc_now_seconds();
        unit_tests[i].fn();
        double dt = wc_now_seconds() - t0;
        printf("%s %s (%.3f s)\n", unit_current_failed ? "not ok" : "ok    ", unit_tests[i].name, dt);
        fflush(stdout);
        if (unit_current_failed) failed++;
        else passed++;
    }
    printf("%d passed, %d failed\n", passed, failed);
    /* The test runner (scripts/test.sh) reads the counts from here, not from the output. */
    const char *results = getenv("WC_TEST_RESULTS");
    FILE *rf = results && *results ? fopen(results, "w") : NULL;
    if (rf) fprintf(rf, "%d %d 0\n", passed, failed), fclose(rf);
    return failed ? 1 : 0;
}
