/*
 * delta.c — a text stored as copies out of a reference text, plus the bytes the reference lacks.
 *
 * An informer cache holds thousands of projections that share almost every byte: a bench Pod's
 * projection differs from its neighbour's in its name, UIDs, timestamps, IP and resourceVersion,
 * and so does a Worker's. Kept as text, those shared bytes were most of the controller's memory
 * per Worker (BENCHMARKS.md, finding 2). Against one reference projection of the same cache a
 * projection shrinks to the bytes that differ plus a few bytes per shared run.
 *
 * Format: literal bytes as they are; DELTA_COPY, then the offset into the reference and the
 * length, each a LEB128 varint. A text holding the byte DELTA_COPY cannot be encoded (serialized
 * JSON never holds it: control characters are escaped inside strings and appear nowhere else);
 * the caller keeps such a text as it is. Matching is LZ77 against the reference only, found
 * through a small hash table of the reference's 4-byte sequences: linear in the text, no
 * allocation but the output.
 */

#define DELTA_COPY '\x01'
#define DELTA_MIN_MATCH 6 /* a copy costs up to 5 bytes: a shorter run stays literal */
#define DELTA_HASH_BITS 10
#define DELTA_REF_MAX 65535 /* positions fit the table's uint16_t */

#define DELTA_CANDIDATES 16 /* positions tried per hash: JSON repeats short runs ("},{") often */

typedef struct delta_ref {
    char *text;      /* NULL: no reference yet */
    size_t len;
    uint16_t *first; /* by hash of 4 bytes: 1 + the first position holding them, 0 none */
    uint16_t *next;  /* by position: 1 + the next position of the same hash, 0 none */
} delta_ref;

static uint32_t delta_hash4(const char *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return (v * 2654435761u) >> (32 - DELTA_HASH_BITS);
}

/* Takes a copy of text as the reference; refused (returns -1, r unchanged) when it is too long. */
static int delta_ref_set(delta_ref *r, const char *text, size_t len) {
    if (len > DELTA_REF_MAX) return -1;
    r->text = xmalloc(len + 1);
    memcpy(r->text, text, len);
    r->text[len] = '\0';
    r->len = len;
    r->first = xcalloc((size_t)1 << DELTA_HASH_BITS, sizeof *r->first);
    r->next = xcalloc(len ? len : 1, sizeof *r->next);
    uint16_t *last = xcalloc((size_t)1 << DELTA_HASH_BITS, sizeof *last);
    for (size_t i = 0; i + 4 <= len; i++) {
        uint32_t h = delta_hash4(text + i);
        if (last[h]) r->next[last[h] - 1] = (uint16_t)(i + 1);
        else r->first[h] = (uint16_t)(i + 1);
        last[h] = (uint16_t)(i + 1);
    }
    free(last);
    return 0;
}

static void delta_ref_free(delta_ref *r) {
    free(r->text);
    free(r->first);
    free(r->next);
    memset(r, 0, sizeof *r);
}

static void delta_put_varint(buf *out, size_t v) {
    do {
        unsigned char b = v & 0x7f;
        v >>= 7;
        buf_putc(out, (char)(b | (v ? 0x80 : 0)));
    } while (v);
}

static size_t delta_match(const delta_ref *r, size_t p, const char *text, size_t len) {
    size_t n = 0;
    while (p + n < r->len && n < len && r->text[p + n] == text[n]) n++;
    return n;
}

/* Appends text, encoded against r, to out. -1 (out untouched) when text holds DELTA_COPY. */
static int delta_encode(const delta_ref *r, const char *text, size_t len, buf *out) {
    if (memchr(text, DELTA_COPY, len)) return -1;
    size_t i = 0, aligned = SIZE_MAX; /* where the reference would go on had the text kept pace */
    while (i < len) {
        size_t best = 0, at = 0;
        if (r->text && i + 4 <= len) {
            /* The aligned position first: a differing run of the same length (a UID, a
             * timestamp, a name of the reference's length) is followed by the same bytes. */
            if (aligned < r->len && (best = delta_match(r, aligned, text + i, len - i)) > 0) at = aligned;
            uint16_t pos = r->first[delta_hash4(text + i)];
            for (int k = 0; pos && k < DELTA_CANDIDATES; k++, pos = r->next[pos - 1u]) {
                size_t n = delta_match(r, pos - 1u, text + i, len - i);
                if (n > best) best = n, at = pos - 1u;
            }
        }
        if (best >= DELTA_MIN_MATCH) {
            buf_putc(out, DELTA_COPY);
            delta_put_varint(out, at);
            delta_put_varint(out, best);
            i += best;
            aligned = at + best;
        } else {
            if (aligned != SIZE_MAX) aligned++;
            buf_putc(out, text[i++]);
        }
    }
    return 0;
}

static int delta_get_varint(const char *p, size_t len, size_t *i, size_t *v) {
    *v = 0;
    for (unsigned shift = 0; *i < len && shift < 8 * sizeof(size_t); shift += 7) {
        unsigned char b = (unsigned char)p[(*i)++];
        *v |= (size_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) return 0;
    }
    return -1;
}

/* Appends the text enc encodes against r to out. -1 when enc is not a delta of r (a copy out of
 * the reference's bounds, a varint cut short): out then holds what was decoded before it. */
static int delta_decode(const delta_ref *r, const char *enc, size_t len, buf *out) {
    size_t i = 0;
    while (i < len) {
        const char *lit = memchr(enc + i, DELTA_COPY, len - i);
        size_t n = lit ? (size_t)(lit - (enc + i)) : len - i;
        buf_append(out, enc + i, n);
        i += n;
        if (i == len) break;
        i++;
        size_t off, cnt;
        if (delta_get_varint(enc, len, &i, &off) < 0 || delta_get_varint(enc, len, &i, &cnt) < 0 || !r->text ||
            off > r->len || cnt > r->len - off)
            return -1;
        buf_append(out, r->text + off, cnt);
    }
    return 0;
}
