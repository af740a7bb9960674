/*
 * quantity.c — Kubernetes resource quantities ("100m", "2Gi", "1.5", "1e3"), strictly parsed.
 *
 * The grammar is resource.Quantity's:
 *   quantity ::= [+] number suffix
 *   number   ::= digits | digits "." [digits] | "." digits
 *   suffix   ::= "" | m | k | M | G | T | P | E         (decimal SI)
 *              | Ki | Mi | Gi | Ti | Pi | Ei            (binary SI)
 *              | (e|E) [+|-] digits                     (decimal exponent)
 * Negative values are rejected: every quantity this controller reads is a resource amount.
 * No whitespace anywhere (the API server rejects " 1" too).
 *
 * The value is held as int64 milli-units, which is what comparisons need (requests <= limits,
 * config vs spec): it covers 1m .. ~9.2e15 units, i.e. up to 8 PiB of memory. Larger values are
 * an error rather than a silent wrap. Like the API server, a fraction below 1m rounds UP to the
 * next milli-unit ("0.1m" -> "1m"), so a non-zero request never becomes zero.
 *
 * The canonical string follows the API server's canonical form for values representable in
 * milli-units (binary suffix kept when exact and >= 1024, else decimal SI with the largest
 * exact 10^3k suffix, exponent style kept as e3/e6/...): "1000m" -> "1", "1.5Gi" -> "1536Mi",
 * "2000" -> "2k", "1e3" -> "1e3". Two strings that mean the same amount canonicalise alike only
 * within one format family, exactly as in Kubernetes; compare with qty_cmp, not strcmp.
 */

enum qty_format { QTY_DECIMAL_SI, QTY_BINARY_SI, QTY_DECIMAL_EXPONENT };

typedef struct qty {
    int64_t milli;          /* the amount in milli-units, >= 0 */
    enum qty_format format; /* the suffix family the input used */
    char canon[32];         /* canonical string (see above) */
} qty;

#define QTY_MAX_DIGITS 38 /* significant digits an unsigned __int128 holds exactly */

/* Parses the [+]digits[.digits] part. Leading zeros are dropped, digits go into *mant, the
 * count of fraction digits into *frac. Returns the first unconsumed character, NULL on error. */
static const char *qty_parse_number(const char *s, unsigned __int128 *mant, int *frac) {
    int ndigits = 0, nsig = 0, seen_dot = 0;
    *mant = 0;
    *frac = 0;
    for (;; s++) {
        if (*s == '.' && !seen_dot) {
            seen_dot = 1;
            continue;
        }
        if (!isdigit((unsigned char)*s)) break;
        ndigits++;
        if (seen_dot) (*frac)++;
        if (*mant == 0 && *s == '0') continue; /* a leading zero is not significant */
        if (++nsig > QTY_MAX_DIGITS) return NULL;
        *mant = *mant * 10 + (unsigned)(*s - '0');
    }
    return ndigits ? s : NULL;
}

/* Reads the suffix into a power of ten and a power of 1024. */
static int qty_parse_suffix(const char *s, int *exp10, int *exp1024, enum qty_format *fmt) {
    static const char dec[] = "mkMGTPE"; /* m=-3, k=3, M=6, ... */
    static const char bin[] = "KMGTPE";  /* Ki=1, Mi=2, ... */
    *exp10 = 0;
    *exp1024 = 0;
    *fmt = QTY_DECIMAL_SI;
    if (!*s) return 0;
    if (s[1] == 'i' && !s[2]) { /* before the exponent: "Ei" is exbi, not "E" + junk */
        const char *b = strchr(bin, *s);
        if (!b) return -1;
        *exp1024 = (int)(b - bin) + 1;
        *fmt = QTY_BINARY_SI;
        return 0;
    }
    if ((*s == 'e' || *s == 'E') && s[1]) { /* a bare "E" is the exa suffix, handled below */
        const char *p = s + 1;
        int neg = 0;
        if (*p == '+' || *p == '-') neg = *p++ == '-';
        if (!*p) return -1;
        int e = 0;
        for (; *p; p++) {
            if (!isdigit((unsigned char)*p) || e > 1000) return -1;
            e = e * 10 + (*p - '0');
        }
        *exp10 = neg ? -e : e;
        *fmt = QTY_DECIMAL_EXPONENT;
        return 0;
    }
    const char *d = s[1] ? NULL : strchr(dec, *s);
    if (!d) return -1;
    *exp10 = d == dec ? -3 : 3 * (int)(d - dec);
    return 0;
}

/* mant * 10^e10 * 1024^e1024 in milli-units, rounded up; -1 when it does not fit an int64. */
static int qty_scale(unsigned __int128 mant, int e10, int e1024, int64_t *out) {
    const unsigned __int128 limit = (unsigned __int128)INT64_MAX;
    if (mant == 0) {
        *out = 0;
        return 0;
    }
    /* Bounded before each step so the 128-bit product cannot wrap; a value this large could
     * only come back into range through a division by 10^30 or more, i.e. absurd input. */
    for (int i = 0; i < e1024; i++) {
        if (mant > limit * 1000000000ull) return -1;
        mant *= 1024;
    }
    if (e10 >= 0) {
        for (int i = 0; i < e10; i++) {
            mant *= 10;
            if (mant > limit) return -1;
        }
    } else {
        unsigned __int128 rem = 0;
        for (int i = 0; i < -e10 && mant; i++) {
            rem |= mant % 10;
            mant /= 10;
        }
        if (rem || mant == 0) mant++; /* round a fraction of a milli-unit up */
    }
    if (mant > limit) return -1;
    *out = (int64_t)mant;
    return 0;
}

/* Writes the canonical string of q (format and milli set). */
static void qty_canonicalize(qty *q) {
    static const char *dec_suffix[] = {"", "k", "M", "G", "T", "P", "E"};
    static const char *bin_suffix[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"};
    int64_t v = q->milli;
    if (v == 0) {
        snprintf(q->canon, sizeof q->canon, "0");
        return;
    }
    if (v % 1000 != 0) {
        snprintf(q->canon, sizeof q->canon, "%" PRId64 "m", v);
        return;
    }
    v /= 1000;
    if (q->format == QTY_BINARY_SI && v >= 1024) {
        int k = 0;
        while (k < 6 && v % 1024 == 0) v /= 1024, k++;
        snprintf(q->canon, sizeof q->canon, "%" PRId64 "%s", v, bin_suffix[k]);
        return;
    }
    int k = 0;
    while (k < 6 && v % 1000 == 0) v /= 1000, k++;
    if (q->format == QTY_DECIMAL_EXPONENT && k)
        snprintf(q->canon, sizeof q->canon, "%" PRId64 "e%d", v, 3 * k);
    else
        snprintf(q->canon, sizeof q->canon, "%" PRId64 "%s", v, dec_suffix[k]);
}

/* Returns 0 and fills *out, or -1 when s is not a non-negative quantity that fits. */
static int qty_parse(const char *s, qty *out) {
    if (!s || !*s) return -1;
    if (*s == '+') s++;
    unsigned __int128 mant;
    int frac, e10, e1024;
    enum qty_format fmt;
    const char *rest = qty_parse_number(s, &mant, &frac);
    if (!rest || qty_parse_suffix(rest, &e10, &e1024, &fmt) < 0) return -1;
    qty q = {0};
    q.format = fmt;
    if (qty_scale(mant, e10 - frac + 3, e1024, &q.milli) < 0) return -1;
    qty_canonicalize(&q);
    *out = q;
    return 0;
}

static int qty_cmp(const qty *a, const qty *b) {
    return a->milli < b->milli ? -1 : a->milli > b->milli;
}
