/*
 * tls.c — client certificates for curl's BearSSL backend.
 *
 * curl 7.88's BearSSL backend accepts CURLOPT_SSLCERT/SSLKEY (and their _BLOB forms) and then
 * silently ignores them: a kubeconfig with client-certificate-data would connect anonymously
 * and get 401/403 with no hint why. What works is a CURLOPT_SSL_CTX_FUNCTION callback: curl
 * (lib/vtls/bearssl.c, bearssl_connect_step1) calls it with the br_ssl_client_context *after*
 * br_ssl_client_init_full() and the X.509/version setup and *before* br_ssl_client_reset(), so
 * the client auth handler installed there is the one the handshake uses. The callback runs once
 * per new TLS connection (a reused keep-alive connection does not call it again).
 *
 * BearSSL only links the chain and key into the engine, so they must outlive every connection:
 * a tls_identity is parsed once, owned by the http_client, read-only afterwards (safe to share
 * between threads) and wiped when the client is freed.
 */

typedef struct tls_identity {
    br_x509_certificate *chain; /* DER certificates, leaf first (the order of the PEM) */
    size_t chain_len;
    int key_type;               /* BR_KEYTYPE_RSA or BR_KEYTYPE_EC */
    unsigned issuer_key_type;   /* key type of the CA that signed the leaf (TLS 1.0/1.1 ECDH) */
    /* The key decoder keeps the decoded key in its own buffers and br_skey_decoder_get_*()
     * returns pointers into them, so the decoder context itself is the key's storage. Heap
     * allocated (it is ~2 KB), wiped on free. */
    br_skey_decoder_context *skey;
} tls_identity;

/* One PEM object: its label ("CERTIFICATE", "PRIVATE KEY", ...) and DER bytes. */
typedef struct tls_pem_object {
    char name[128];     /* br_pem_decoder_name fits: BearSSL keeps names in 128 bytes */
    buf der;
} tls_pem_object;

static void tls_pem_sink(void *ctx, const void *data, size_t len) {
    buf *b = ctx;
    buf_append(b, data, len); /* unbounded buffer: cannot fail (xrealloc aborts on OOM) */
}

static void tls_pem_objects_free(tls_pem_object *objs, size_t n) {
    for (size_t i = 0; i < n; i++) buf_free_secret(&objs[i].der); /* may hold a private key */
    free(objs);
}

/*
 * Decodes every PEM object in `pem` (text outside BEGIN/END lines is ignored, as in the
 * bundles kubeconfigs carry). Returns the number of objects (0 is valid) or -1 with err set.
 * `what` names the input for messages ("client certificate").
 */
static int tls_pem_decode_all(const char *pem, size_t len, const char *what, tls_pem_object **out,
                              wc_err *err) {
    br_pem_decoder_context pc;
    br_pem_decoder_init(&pc);
    tls_pem_object *objs = NULL;
    size_t n = 0, cap = 0;
    int inside = 0;
    /* BearSSL needs the END line terminated; a trailing newline is appended as a final push. */
    const char *p = pem;
    size_t left = len, extra = 1;
    while (left > 0 || extra > 0) {
        size_t pushed;
        if (left > 0) {
            pushed = br_pem_decoder_push(&pc, p, left);
            p += pushed;
            left -= pushed;
        } else {
            pushed = br_pem_decoder_push(&pc, "\n", 1);
            extra -= pushed;
        }
        switch (br_pem_decoder_event(&pc)) {
        case BR_PEM_BEGIN_OBJ:
            if (n == cap) {
                cap = cap ? cap * 2 : 4;
                objs = xrealloc(objs, cap * sizeof *objs);
            }
            memset(&objs[n], 0, sizeof objs[n]);
            snprintf(objs[n].name, sizeof objs[n].name, "%s", br_pem_decoder_name(&pc));
            br_pem_decoder_setdest(&pc, tls_pem_sink, &objs[n].der);
            n++;
            inside = 1;
            break;
        case BR_PEM_END_OBJ:
            inside = 0;
            break;
        case BR_PEM_ERROR:
            tls_pem_objects_free(objs, n);
            return err_set(err, WC_EPARSE, "%s: malformed PEM", what);
        }
    }
    if (inside) {
        tls_pem_objects_free(objs, n);
        return err_set(err, WC_EPARSE, "%s: PEM object not terminated (missing END line)", what);
    }
    *out = objs;
    return (int)n;
}

static void tls_identity_free(tls_identity *id) {
    if (!id) return;
    for (size_t i = 0; i < id->chain_len; i++) free(id->chain[i].data);
    free(id->chain);
    if (id->skey) {
        secure_zero(id->skey, sizeof *id->skey);
        free(id->skey);
    }
    free(id);
}

/* Decodes the leaf's public key type and its issuer's key type; checks it is a certificate. */
static int tls_leaf_key_types(const br_x509_certificate *leaf, int *pkey_type, unsigned *issuer,
                              wc_err *err) {
    br_x509_decoder_context *xd = xmalloc(sizeof *xd);
    br_x509_decoder_init(xd, NULL, NULL);
    br_x509_decoder_push(xd, leaf->data, leaf->data_len);
    const br_x509_pkey *pk = br_x509_decoder_get_pkey(xd);
    int rc = 0;
    if (!pk) {
        rc = err_set(err, WC_EPARSE, "client certificate: cannot decode X.509 (BearSSL error %d)",
                     br_x509_decoder_last_error(xd));
    } else {
        *pkey_type = pk->key_type;
        int s = br_x509_decoder_get_signer_key_type(xd);
        *issuer = s ? (unsigned)s : BR_KEYTYPE_RSA;
    }
    free(xd);
    return rc;
}

/*
 * Parses a client certificate chain and its private key (both PEM). The key may be PKCS#8
 * ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"); br_skey_decoder
 * recognises all three from the DER. Encrypted keys are refused.
 */
static tls_identity *tls_identity_parse(const char *cert_pem, size_t cert_len, const char *key_pem,
                                        size_t key_len, wc_err *err) {
    tls_identity *id = xcalloc(1, sizeof *id);
    tls_pem_object *objs = NULL;
    int n = tls_pem_decode_all(cert_pem, cert_len, "client certificate", &objs, err);
    if (n < 0) goto fail;
    id->chain = xcalloc((size_t)n ? (size_t)n : 1, sizeof *id->chain);
    for (int i = 0; i < n; i++) {
        if (strcmp(objs[i].name, "CERTIFICATE") != 0 && strcmp(objs[i].name, "X509 CERTIFICATE") != 0)
            continue;
        size_t dlen = objs[i].der.len;
        id->chain[id->chain_len].data = (unsigned char *)buf_steal(&objs[i].der);
        id->chain[id->chain_len].data_len = dlen;
        id->chain_len++;
    }
    tls_pem_objects_free(objs, (size_t)n);
    objs = NULL;
    if (id->chain_len == 0) {
        err_set(err, WC_EPARSE, "client certificate: no CERTIFICATE block in PEM");
        goto fail;
    }

    n = tls_pem_decode_all(key_pem, key_len, "client key", &objs, err);
    if (n < 0) goto fail;
    int found = 0;
    for (int i = 0; i < n && !found; i++) {
        const char *nm = objs[i].name;
        if (strcmp(nm, "ENCRYPTED PRIVATE KEY") == 0) {
            err_set(err, WC_EUNSUPPORTED, "client key: encrypted private keys are not supported");
            goto fail;
        }
        if (strcmp(nm, "PRIVATE KEY") != 0 && strcmp(nm, "RSA PRIVATE KEY") != 0 &&
            strcmp(nm, "EC PRIVATE KEY") != 0)
            continue; /* e.g. "EC PARAMETERS" that openssl writes before SEC1 keys */
        found = 1;
        id->skey = xmalloc(sizeof *id->skey);
        br_skey_decoder_init(id->skey);
        br_skey_decoder_push(id->skey, objs[i].der.data, objs[i].der.len);
        int e = br_skey_decoder_last_error(id->skey);
        if (e) {
            err_set(err, WC_EPARSE, "client key: cannot decode %s (BearSSL error %d)", nm, e);
            goto fail;
        }
        id->key_type = br_skey_decoder_key_type(id->skey);
    }
    tls_pem_objects_free(objs, (size_t)n);
    objs = NULL;
    if (!found) {
        err_set(err, WC_EPARSE, "client key: no PRIVATE KEY block in PEM");
        goto fail;
    }
    if (id->key_type != BR_KEYTYPE_RSA && id->key_type != BR_KEYTYPE_EC) {
        err_set(err, WC_EUNSUPPORTED, "client key: unsupported key type %d", id->key_type);
        goto fail;
    }
    int leaf_type = 0;
    if (tls_leaf_key_types(&id->chain[0], &leaf_type, &id->issuer_key_type, err) < 0) goto fail;
    if (leaf_type != id->key_type) {
        err_set(err, WC_EINVAL, "client certificate is %s but the key is %s",
                leaf_type == BR_KEYTYPE_RSA ? "RSA" : "EC", id->key_type == BR_KEYTYPE_RSA ? "RSA" : "EC");
        goto fail;
    }
    return id;
fail:
    if (objs) tls_pem_objects_free(objs, (size_t)n);
    tls_identity_free(id);
    return NULL;
}

/* Installs the identity on a BearSSL client context; called from the SSL_CTX callback. */
static void tls_identity_install(const tls_identity *id, br_ssl_client_context *cc) {
    if (id->key_type == BR_KEYTYPE_RSA) {
        br_ssl_client_set_single_rsa(cc, id->chain, id->chain_len, br_skey_decoder_get_rsa(id->skey),
                                     br_rsa_pkcs1_sign_get_default());
    } else {
        br_ssl_client_set_single_ec(cc, id->chain, id->chain_len, br_skey_decoder_get_ec(id->skey),
                                    BR_KEYTYPE_SIGN, id->issuer_key_type, br_ec_get_default(),
                                    br_ecdsa_sign_asn1_get_default());
    }
}
