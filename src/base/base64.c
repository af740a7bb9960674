/*
 * base64.c — standard base64 (RFC 4648 §4), as used by kubeconfig "*-data" fields and Secret
 * data. Decoding ignores ASCII whitespace (PEM-ish line breaks appear in hand-written files) and
 * rejects anything else that is not in the alphabet.
 */

static int base64_value(unsigned char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Decodes into out (appending). Returns 0, or -1 on malformed input (out is left partial). */
static int base64_decode(buf *out, const char *in, size_t n) {
    unsigned acc = 0;
    int bits = 0, pad = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)in[i];
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
        if (c == '=') { pad++; continue; }
        if (pad) return -1; /* data after padding */
        int v = base64_value(c);
        if (v < 0) return -1;
        acc = (acc << 6) | (unsigned)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (buf_putc(out, (char)((acc >> bits) & 0xff)) < 0) return -1;
        }
    }
    if (pad > 2) return -1;
    /* Leftover bits must be zero padding, and only 2 or 4 of them can be left. */
    if (bits >= 6 || (acc & ((1u << bits) - 1)) != 0) return -1;
    return 0;
}
