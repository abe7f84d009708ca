/*
 * test_as2_message.c - unit tests of the AS2 message layer
 * (src/as2/message*.c): package -> unpack round trips over every
 * combination of signing digest, cipher, compression order and transfer
 * encoding with the MIC equal on both sides (half of them packaged in
 * two steps, headers before body, as a streaming sender does); MDNs built
 * and read for success and every failure, signed and unsigned, in both
 * micalg spellings; the partner policy's refusals with their RFC 4130
 * disposition modifiers; a 64 MiB payload through package and unpack in
 * constant memory; and interop with the openssl command line in both
 * directions (posix_spawn, never a shell). The group setup
 * (as2_testkit.h) creates RSA keys and self-signed certificates and a temp
 * dir with their PEM files.
 */
#include "as2_testkit.h"

#include <strings.h>

#include <openssl/rand.h>

#include "as2/message.h"

/* ---- buffers ---- */

/* Random bytes with line breaks here and there, ending in a letter. */
static struct buf buf_payload(size_t n)
{
    struct buf b = {malloc(n ? n : 1), n};
    assert_non_null(b.p);
    assert_int_equal(RAND_bytes(b.p, (int)(n ? n : 1)), 1);
    for (size_t i = 0; i < n; i += 61)
        b.p[i] = '\n';
    if (n > 0)
        b.p[n - 1] = 'X';
    return b;
}

/* ---- the API over buffers ---- */

struct sent {
    struct as2_packaged res;
    struct buf body;
};

static int pack(const struct as2_package_opts *o, const struct buf *payload,
                struct sent *s, struct error *err)
{
    BIO *in = rbio(payload), *out = BIO_new(BIO_s_mem());
    assert_non_null(out);
    int rc = as2_package(o, in, out, &s->res, err);
    BIO_free(in);
    s->body = take(out);
    return rc;
}

/* as2_package in its two steps, as a sender that streams the body into
 * its POST calls it: every header is there before a byte of the body, and
 * the body changes none of them. */
static int pack_two_steps(const struct as2_package_opts *o,
                          const struct buf *payload, struct sent *s,
                          struct error *err)
{
    int rc = as2_package_begin(o, &s->res, err);
    if (rc != 0)
        return rc;
    size_t n = s->res.headers.count;
    assert_true(n > 0);
    char *ct = strdup(s->res.headers.h[0].value);
    assert_non_null(ct);
    BIO *in = rbio(payload), *out = BIO_new(BIO_s_mem());
    assert_non_null(out);
    rc = as2_package_body(o, in, out, &s->res, err);
    BIO_free(in);
    s->body = take(out);
    assert_int_equal(s->res.headers.count, n);
    assert_string_equal(s->res.headers.h[0].value, ct);
    free(ct);
    return rc;
}

static void sent_free(struct sent *s)
{
    as2_packaged_free(&s->res);
    buf_free(&s->body);
}

static int unpack(const struct as2_policy *pol, const struct mime_headers *h,
                  const struct buf *body, struct buf *payload,
                  struct as2_unpacked *info, struct error *err)
{
    BIO *in = rbio(body), *out = BIO_new(BIO_s_mem());
    assert_non_null(out);
    int rc = as2_unpack(pol, h, in, out, info, err);
    BIO_free(in);
    *payload = take(out);
    return rc;
}

/* Alice sends to Bob. */
static struct as2_package_opts opts_base(void)
{
    struct as2_package_opts o = {0};
    o.from = "Alice Corp";
    o.to = "bob";
    o.host = "alice.example";
    o.subject = "EDI";
    o.filename = "invoice 42.edi";
    o.content_type = "application/edi-x12";
    o.mdn = AS2_MDN_SYNC;
    o.mdn_signed = true;
    return o;
}

struct pol_store {
    struct as2_key keys[2];
    X509 *certs[2];
};

static struct as2_policy policy_base(struct fx *f, struct pol_store *ps)
{
    ps->keys[0] = (struct as2_key){f->bob.key, f->bob.cert};
    ps->keys[1] = (struct as2_key){f->bob_old.key, f->bob_old.cert};
    ps->certs[0] = f->alice.cert;
    struct as2_policy p = {0};
    p.partner = "alice";
    p.our_id = "bob";
    p.partner_id = "Alice Corp";
    p.keys = ps->keys;
    p.nkeys = 1;
    p.certs = ps->certs;
    p.ncerts = 1;
    return p;
}

/* Bob unpacks body (headers h) under pol and must refuse it: the MDN
 * error want, an error sentence holding text (NULL: any), no MIC. How
 * many payload bytes came out before the refusal. */
static size_t refused(const struct as2_policy *pol,
                      const struct mime_headers *h, const struct buf *body,
                      enum mdn_error want, const char *text)
{
    struct buf back;
    struct as2_unpacked info;
    struct error err = {0};
    if (unpack(pol, h, body, &back, &info, &err) == 0)
        fail_msg("unpack succeeded; expected %s", mdn_error_name(want));
    if (info.mdn_error != want)
        fail_msg("expected %s, got %s (%s)", mdn_error_name(want),
                 mdn_error_name(info.mdn_error) ? mdn_error_name(
                     info.mdn_error) : "none", err.msg);
    if (text != NULL && strstr(err.msg, text) == NULL)
        fail_msg("expected \"%s\" in \"%s\"", text, err.msg);
    assert_string_equal(info.mic, "");
    size_t n = back.n;
    buf_free(&back);
    return n;
}

static const char *header(const struct mime_headers *h, const char *name)
{
    const char *v = mime_header_get(h, name);
    return v != NULL ? v : "";
}

/* Headers copied, with name replaced by value (NULL: removed). */
static void headers_with(const struct mime_headers *src,
                         struct mime_headers *dst, const char *name,
                         const char *value)
{
    mime_headers_init(dst);
    for (size_t i = 0; i < src->count; i++)
        if (strcasecmp(src->h[i].name, name) != 0)
            assert_int_equal(mime_headers_add(dst, src->h[i].name,
                                              src->h[i].value, NULL), 0);
    if (value != NULL)
        assert_int_equal(mime_headers_add(dst, name, value, NULL), 0);
}

/* refused() for the message s with its header name set to value (NULL:
 * removed). */
static size_t refused_with(const struct as2_policy *pol, const struct sent *s,
                           const char *name, const char *value,
                           enum mdn_error want, const char *text)
{
    struct mime_headers h;
    headers_with(&s->res.headers, &h, name, value);
    size_t n = refused(pol, &h, &s->body, want, text);
    mime_headers_free(&h);
    return n;
}

/* ---- streaming: 64 MiB in constant memory ---- */

/* Package size generated bytes (compress before signing, sign, encrypt
 * with AES-256-GCM/OAEP) to a file, then unpack the file into a hashing
 * sink. Peak memory growth of each half in pk/uk (KiB). */
static void stream_once(struct fx *f, uint64_t size, long *pk, long *uk)
{
    BIO_METHOD *m = gen_method();
    struct gen gin = gen_start(size), gout = gen_start(0);
    char path[400];
    path_in(f, path, sizeof(path), "big.as2");
    struct as2_signer sg = {f->alice.cert, f->alice.key, AS2_DIGEST_SHA256,
                            AS2_SIG_PKCS1};
    struct as2_package_opts o = opts_base();
    o.signer = &sg;
    o.cipher = AS2_CIPHER_AES256_GCM;
    o.kt = AS2_KT_RSA_OAEP;
    o.recipient = f->bob.cert;
    o.compress = AS2_COMPRESS_BEFORE_SIGNING;
    struct sent s = {0};
    struct error err = {0};
    struct peak p;

    peak_begin(&p);
    BIO *in = gen_bio(m, &gin), *out = BIO_new_file(path, "wb");
    assert_non_null(out);
    MUST(as2_package(&o, in, out, &s.res, &err), err);
    BIO_free(in);
    BIO_free(out);
    *pk = peak_growth(&p);
    assert_int_equal(s.res.payload_bytes, size);

    struct pol_store ps;
    struct as2_policy pol = policy_base(f, &ps);
    struct as2_unpacked info;
    peak_begin(&p);
    in = BIO_new_file(path, "rb");
    out = gen_bio(m, &gout);
    MUST(as2_unpack(&pol, &s.res.headers, in, out, &info, &err), err);
    BIO_free(in);
    BIO_free(out);
    *uk = peak_growth(&p);
    assert_int_equal(info.payload_bytes, size);
    assert_true(as2_mic_equal(info.mic, s.res.mic));
    unsigned char a[32], b[32];
    gen_finish(&gin, a);
    gen_finish(&gout, b);
    assert_memory_equal(a, b, 32);
    BIO_meth_free(m);
    sent_free(&s);
    unlink(path);
}

static void test_m4_message_streams_64mib_in_constant_memory(void **state)
{
    struct fx *f = *state;
    long pk, uk;
    stream_once(f, 1u << 20, &pk, &uk);             /* warm up the heap */
    struct peak p;
    long control = peak_control(&p);
    stream_once(f, 64u << 20, &pk, &uk);
    printf("[ INFO     ] 64 MiB packaged (compress, sign, encrypt) with peak "
           "memory +%ld KiB and unpacked with +%ld KiB (%s; a 32 MiB buffer "
           "shows as +%ld KiB)\n", pk, uk, p.hwm ? "VmHWM" : "ru_maxrss",
           control);
    /* under half of what a 32 MiB buffer shows: 16 MiB, or the same
     * scaled by a sanitizer's shadow memory (TSan's is about 5x) */
    assert_true(pk < control / 2);
    assert_true(uk < control / 2);
}

/* ---- round trips ---- */

static const enum as2_digest SIGNS[] = {
    AS2_DIGEST_NONE, AS2_DIGEST_SHA1, AS2_DIGEST_SHA256, AS2_DIGEST_SHA384,
    AS2_DIGEST_SHA512,
};
static const enum as2_cipher CIPHERS[] = {
    AS2_CIPHER_NONE, AS2_CIPHER_AES128_CBC, AS2_CIPHER_AES256_CBC,
    AS2_CIPHER_AES256_GCM, AS2_CIPHER_3DES,
};
static const enum as2_compress COMPRESS[] = {
    AS2_COMPRESS_NONE, AS2_COMPRESS_BEFORE_SIGNING,
    AS2_COMPRESS_AFTER_SIGNING,
};

static struct buf canon(const struct buf *b)
{
    struct buf c = {malloc(2 * b->n + 1), 0};
    struct mime_canon mc;
    assert_non_null(c.p);
    mime_canon_init(&mc);
    c.n = mime_canon_update(&mc, (const char *)b->p, b->n, (char *)c.p);
    return c;
}

/* An EDI-like text of n bytes (compressible, not trivially). */
static struct buf buf_edi(size_t n)
{
    struct buf b = {malloc(n + 64), 0};
    assert_non_null(b.p);
    for (unsigned i = 0; b.n < n; i++)
        b.n += (size_t)snprintf((char *)b.p + b.n, 64,
                                "PO1*%u*%u*EA*%u.%02u**VN*ITEM%05u~\n", i,
                                (i * 7919) % 97, (i * 31) % 500, i % 100,
                                (i * 104729) % 70000);
    b.n = n;
    return b;
}

static void test_m4_compress_level_trades_size_for_speed(void **state)
{
    struct fx *f = *state;
    struct pol_store ps;
    struct as2_policy pol = policy_base(f, &ps);
    struct buf d = buf_edi(400000);
    size_t size[2];
    static const int levels[2] = { 1, 9 };
    for (int i = 0; i < 2; i++) {
        struct as2_package_opts o = opts_base();
        o.compress = AS2_COMPRESS_BEFORE_SIGNING;
        o.compress_level = levels[i];
        struct sent s = {0};
        struct buf back;
        struct as2_unpacked info;
        struct error err = {0};
        MUST(pack(&o, &d, &s, &err), err);
        MUST(unpack(&pol, &s.res.headers, &s.body, &back, &info, &err), err);
        assert_true(info.is_compressed);
        assert_true(buf_eq(&back, &d));
        size[i] = s.body.n;
        buf_free(&back);
        sent_free(&s);
    }
    /* the level reached zlib: level 9 packs this text tighter than 1 */
    if (!(size[1] < size[0]))
        fail_msg("level 1: %zu bytes, level 9: %zu bytes", size[0], size[1]);
    buf_free(&d);
}

static void test_m4_round_trip_every_combination(void **state)
{
    struct fx *f = *state;
    struct pol_store ps;
    struct as2_policy pol = policy_base(f, &ps);
    pol.digests = AS2_DIGEST_BIT(AS2_DIGEST_SHA1) |
                  AS2_DIGEST_BIT(AS2_DIGEST_SHA256) |
                  AS2_DIGEST_BIT(AS2_DIGEST_SHA384) |
                  AS2_DIGEST_BIT(AS2_DIGEST_SHA512);
    pol.ciphers = AS2_CIPHER_BIT(AS2_CIPHER_3DES) |
                  AS2_CIPHER_BIT(AS2_CIPHER_AES128_CBC) |
                  AS2_CIPHER_BIT(AS2_CIPHER_AES256_CBC) |
                  AS2_CIPHER_BIT(AS2_CIPHER_AES256_GCM);
    size_t cases = 0;
    for (size_t si = 0; si < N(SIGNS); si++)
        for (size_t ci = 0; ci < N(CIPHERS); ci++)
            for (size_t zi = 0; zi < N(COMPRESS); zi++)
                for (int b64 = 0; b64 < 2; b64++) {
                    size_t k = cases++;
                    struct as2_signer sg = {f->alice.cert, f->alice.key,
                                            SIGNS[si], k % 2 ? AS2_SIG_PSS
                                                             : AS2_SIG_PKCS1};
                    struct as2_package_opts o = opts_base();
                    o.signer = SIGNS[si] != AS2_DIGEST_NONE ? &sg : NULL;
                    o.cipher = CIPHERS[ci];
                    static const enum as2_key_transport kts[] = {
                        AS2_KT_RSA_OAEP, AS2_KT_RSA_PKCS1,
                        AS2_KT_RSA_OAEP_SHA256};
                    o.kt = kts[k % 3];
                    o.recipient = f->bob.cert;
                    o.compress = COMPRESS[zi];
                    o.transfer = b64 ? AS2_TRANSFER_BASE64
                                     : AS2_TRANSFER_BINARY;
                    o.canonicalize = k % 5 == 0;
                    o.micalg_no_hyphen = k % 4 == 1;
                    o.mdn = k % 7 == 0 ? AS2_MDN_ASYNC : AS2_MDN_SYNC;
                    o.receipt_url = "https://alice.example/as2/mdn";
                    struct buf d = buf_payload(2000 + 97 * k), back;
                    struct sent s = {0};
                    struct error err = {0};
                    struct as2_unpacked info;
                    /* half of them as a streaming sender packages */
                    MUST((k % 2 ? pack : pack_two_steps)(&o, &d, &s, &err),
                         err);
                    if (unpack(&pol, &s.res.headers, &s.body, &back, &info,
                               &err) != 0)
                        fail_msg("case %zu (sign %d, cipher %d, compress %d, "
                                 "base64 %d): %s", k, SIGNS[si], CIPHERS[ci],
                                 COMPRESS[zi], b64, err.msg);
                    struct buf want = o.canonicalize ? canon(&d)
                                                     : buf_copy(d.p, d.n);
                    assert_true(buf_eq(&back, &want));
                    if (!as2_mic_equal(info.mic, s.res.mic))
                        fail_msg("case %zu: MIC %s on receipt, %s sent", k,
                                 info.mic, s.res.mic);
                    /* the MIC is spelled as the sender asked */
                    assert_non_null(strstr(info.mic, o.micalg_no_hyphen
                                           ? "sha" : "sha-"));
                    assert_int_equal(info.is_signed, o.signer != NULL);
                    assert_int_equal(info.is_encrypted,
                                     o.cipher != AS2_CIPHER_NONE);
                    assert_int_equal(info.is_compressed,
                                     o.compress != AS2_COMPRESS_NONE);
                    if (o.signer != NULL) {
                        assert_int_equal(info.sig.digest, SIGNS[si]);
                        assert_int_equal(info.sig.pss, k % 2);
                    }
                    if (o.cipher != AS2_CIPHER_NONE) {
                        assert_int_equal(info.dec.cipher, CIPHERS[ci]);
                        assert_int_equal(info.dec.kt, o.kt);
                        assert_int_equal(info.oaep, k % 3 != 1);
                        assert_int_equal(info.layers[0],
                                         AS2_LAYER_ENCRYPTED);
                    }
                    if (o.signer && o.compress == AS2_COMPRESS_AFTER_SIGNING
                        && o.cipher == AS2_CIPHER_NONE)
                        assert_int_equal(info.layers[0],
                                         AS2_LAYER_COMPRESSED);
                    assert_string_equal(info.filename, "invoice 42.edi");
                    assert_string_equal(info.content_type,
                                        "application/edi-x12");
                    assert_string_equal(info.req.from, "Alice Corp");
                    assert_string_equal(info.req.message_id,
                                        s.res.message_id);
                    assert_int_equal(info.req.mdn_async,
                                     o.mdn == AS2_MDN_ASYNC);
                    assert_true(info.mdn_signed);
                    assert_int_equal(info.mdn_error, MDN_ERROR_NONE);
                    buf_free(&want);
                    buf_free(&d);
                    buf_free(&back);
                    sent_free(&s);
                }
    assert_int_equal(cases, 150);
}

/* The MIC's scope, computed independently for the unsigned cases. */
static void test_m4_mic_scope_unsigned(void **state)
{
    struct fx *f = *state;
    struct pol_store ps;
    struct as2_policy pol = policy_base(f, &ps);
    struct buf d = buf_payload(5000), back;
    char want[AS2_MIC_MAX];
    struct error err = {0};
    struct as2_unpacked info;
    for (int enc = 0; enc < 2; enc++) {
        struct as2_package_opts o = opts_base();
        o.filename = NULL;
        o.content_type = NULL;
        o.cipher = enc ? AS2_CIPHER_AES128_CBC : AS2_CIPHER_NONE;
        o.recipient = f->bob.cert;
        struct sent s = {0};
        MUST(pack(&o, &d, &s, &err), err);
        if (enc) {
            /* the decrypted entity, headers included */
            static const char h[] = "Content-Type: application/octet-stream"
                                    "\r\nContent-Transfer-Encoding: binary"
                                    "\r\n\r\n";
            struct buf e = {malloc(sizeof(h) - 1 + d.n), sizeof(h) - 1 + d.n};
            memcpy(e.p, h, sizeof(h) - 1);
            memcpy(e.p + sizeof(h) - 1, d.p, d.n);
            MUST(as2_mic_compute(AS2_DIGEST_SHA256, e.p, e.n, want,
                                 sizeof(want), &err), err);
            buf_free(&e);
        } else {
            /* the content only */
            MUST(as2_mic_compute(AS2_DIGEST_SHA256, d.p, d.n, want,
                                 sizeof(want), &err), err);
            assert_true(buf_eq(&s.body, &d));
            assert_string_equal(header(&s.res.headers, "Content-Type"),
                                "application/octet-stream");
        }
        assert_true(as2_mic_equal(s.res.mic, want));
        MUST(unpack(&pol, &s.res.headers, &s.body, &back, &info, &err), err);
        assert_true(as2_mic_equal(info.mic, want));
        buf_free(&back);
        sent_free(&s);
    }
    buf_free(&d);
}

static void test_m4_package_headers(void **state)
{
    struct fx *f = *state;
    struct as2_signer sg = {f->alice.cert, f->alice.key, AS2_DIGEST_SHA384,
                            AS2_SIG_PKCS1};
    enum as2_micalg algs[] = {AS2_MICALG_SHA384, AS2_MICALG_SHA256};
    struct as2_package_opts o = opts_base();
    o.signer = &sg;
    o.mdn = AS2_MDN_ASYNC;
    o.receipt_url = "https://alice.example/mdn";
    o.mdn_micalgs = algs;
    o.n_mdn_micalgs = 2;
    o.micalg_no_hyphen = true;
    o.message_id = "<fixed-1@alice.example>";
    o.ediint_features = "AS2-Reliability";
    o.filename = "../../etc/\x01passwd";
    struct buf d = buf_payload(100);
    struct sent s = {0};
    struct error err = {0};
    MUST(pack(&o, &d, &s, &err), err);
    const struct mime_headers *h = &s.res.headers;
    assert_non_null(strstr(header(h, "Content-Type"), "multipart/signed"));
    assert_non_null(strstr(header(h, "Content-Type"), "micalg=sha384"));
    assert_string_equal(header(h, "AS2-Version"), "1.2");
    assert_string_equal(header(h, "AS2-From"), "\"Alice Corp\"");
    assert_string_equal(header(h, "AS2-To"), "bob");
    assert_string_equal(header(h, "Message-ID"), "<fixed-1@alice.example>");
    assert_string_equal(header(h, "MIME-Version"), "1.0");
    assert_string_equal(header(h, "Subject"), "EDI");
    assert_string_equal(header(h, "Disposition-Notification-To"),
                        "Alice Corp");
    assert_string_equal(header(h, "Disposition-Notification-Options"),
                        "signed-receipt-protocol=optional, pkcs7-signature; "
                        "signed-receipt-micalg=optional, sha384, sha256");
    assert_string_equal(header(h, "Receipt-Delivery-Option"),
                        "https://alice.example/mdn");
    assert_string_equal(header(h, "EDIINT-Features"), "AS2-Reliability");
    assert_non_null(strstr(s.res.mic, ", sha384"));
    assert_int_equal(s.res.mic_digest, AS2_DIGEST_SHA384);
    /* the filename lost its path and control character */
    assert_non_null(memmem(s.body.p, s.body.n, "filename=\"passwd\"", 17));
    sent_free(&s);

    /* encrypted: the pkcs7-mime headers */
    o.cipher = AS2_CIPHER_AES128_GCM;
    o.recipient = f->bob.cert;
    o.message_id = NULL;
    MUST(pack(&o, &d, &s, &err), err);
    assert_string_equal(header(&s.res.headers, "Content-Type"),
                        "application/pkcs7-mime; smime-type=authEnveloped-data;"
                        " name=\"smime.p7m\"");
    assert_string_equal(header(&s.res.headers, "Content-Transfer-Encoding"),
                        "binary");
    assert_non_null(strstr(s.res.message_id, "@alice.example>"));
    sent_free(&s);

    /* bad options */
    o.receipt_url = "ftp://x";
    assert_int_equal(pack(&o, &d, &s, &err), -1);
    sent_free(&s);
    o.receipt_url = "https://alice.example/mdn";
    o.recipient = NULL;
    assert_int_equal(pack(&o, &d, &s, &err), -1);
    assert_non_null(strstr(err.msg, "certificate"));
    sent_free(&s);
    o.cipher = AS2_CIPHER_NONE;
    o.from = NULL;
    assert_int_equal(pack(&o, &d, &s, &err), -1);
    sent_free(&s);
    o = opts_base();
    o.subject = "two\r\nlines";
    assert_int_equal(pack(&o, &d, &s, &err), -1);
    sent_free(&s);
    /* a wrong signing key fails and leaves no MIC */
    struct as2_signer bad = {f->alice.cert, f->bob.key, AS2_DIGEST_SHA256,
                             AS2_SIG_PKCS1};
    o = opts_base();
    o.signer = &bad;
    o.compress = AS2_COMPRESS_BEFORE_SIGNING;
    assert_int_equal(pack(&o, &d, &s, &err), -1);
    assert_non_null(strstr(err.msg, "does not belong"));
    assert_string_equal(s.res.mic, "");
    sent_free(&s);
    buf_free(&d);
}

/* ---- policy refusals ---- */

static void test_m4_unpack_policy_refusals(void **state)
{
    struct fx *f = *state;
    struct pol_store ps;
    struct as2_policy pol = policy_base(f, &ps);
    struct as2_signer sg = {f->alice.cert, f->alice.key, AS2_DIGEST_SHA256,
                            AS2_SIG_PKCS1};
    struct buf d = buf_payload(4000), back;
    struct sent s = {0};
    struct error err = {0};
    struct as2_unpacked info;
    struct as2_package_opts o = opts_base();

    /* unsigned when signing is required */
    o.cipher = AS2_CIPHER_AES256_CBC;
    o.recipient = f->bob.cert;
    MUST(pack(&o, &d, &s, &err), err);
    pol.require_signed = true;
    assert_int_equal(refused(&pol, &s.res.headers, &s.body,
                             MDN_ERROR_INSUFFICIENT_MESSAGE_SECURITY,
                             "not signed"), 0);
    pol.require_signed = false;
    MUST(unpack(&pol, &s.res.headers, &s.body, &back, &info, &err), err);
    buf_free(&back);
    sent_free(&s);

    /* unencrypted when encryption is required: refused before anything */
    o = opts_base();
    o.signer = &sg;
    MUST(pack(&o, &d, &s, &err), err);
    pol.require_encrypted = true;
    assert_int_equal(refused(&pol, &s.res.headers, &s.body,
                             MDN_ERROR_INSUFFICIENT_MESSAGE_SECURITY,
                             "not encrypted"), 0);
    pol.require_encrypted = false;
    sent_free(&s);

    /* sha1 not allowed (allowed when configured) */
    struct as2_signer sg1 = sg;
    sg1.digest = AS2_DIGEST_SHA1;
    o = opts_base();
    o.signer = &sg1;
    o.n_mdn_micalgs = 0;
    MUST(pack(&o, &d, &s, &err), err);
    refused(&pol, &s.res.headers, &s.body,
            MDN_ERROR_INSUFFICIENT_MESSAGE_SECURITY, "sha1");
    pol.digests = AS2_DIGEST_BIT(AS2_DIGEST_SHA1);
    MUST(unpack(&pol, &s.res.headers, &s.body, &back, &info, &err), err);
    assert_int_equal(info.sig.digest, AS2_DIGEST_SHA1);
    pol.digests = 0;
    buf_free(&back);
    sent_free(&s);
    /* ... also inside an attached signed-data the micalg cannot announce */
    /* (covered by the openssl interop below for signed-data) */

    /* 3des not allowed (allowed when configured) */
    o = opts_base();
    o.cipher = AS2_CIPHER_3DES;
    o.recipient = f->bob.cert;
    MUST(pack(&o, &d, &s, &err), err);
    refused(&pol, &s.res.headers, &s.body,
            MDN_ERROR_INSUFFICIENT_MESSAGE_SECURITY, "des-ede3-cbc");
    pol.ciphers = AS2_CIPHER_BIT(AS2_CIPHER_3DES);
    MUST(unpack(&pol, &s.res.headers, &s.body, &back, &info, &err), err);
    pol.ciphers = 0;
    buf_free(&back);
    sent_free(&s);

    /* signed by a certificate that is not the partner's */
    struct as2_signer sgm = {f->mallory.cert, f->mallory.key,
                             AS2_DIGEST_SHA256, AS2_SIG_PKCS1};
    for (int enc = 0; enc < 2; enc++) {
        o = opts_base();
        o.signer = &sgm;
        o.cipher = enc ? AS2_CIPHER_AES128_CBC : AS2_CIPHER_NONE;
        o.recipient = f->bob.cert;
        MUST(pack(&o, &d, &s, &err), err);
        refused(&pol, &s.res.headers, &s.body, MDN_ERROR_AUTHENTICATION_FAILED,
                "mallory");
        sent_free(&s);
    }

    /* encrypted to our old key: accepted while it is listed */
    o = opts_base();
    o.signer = &sg;
    o.cipher = AS2_CIPHER_AES256_GCM;
    o.recipient = f->bob_old.cert;
    MUST(pack(&o, &d, &s, &err), err);
    pol.nkeys = 2;
    MUST(unpack(&pol, &s.res.headers, &s.body, &back, &info, &err), err);
    assert_int_equal(info.dec.key_index, 1);
    assert_true(buf_eq(&back, &d));
    buf_free(&back);
    pol.nkeys = 1;
    refused(&pol, &s.res.headers, &s.body, MDN_ERROR_DECRYPTION_FAILED,
            "not encrypted for any");
    pol.nkeys = 0;
    refused(&pol, &s.res.headers, &s.body, MDN_ERROR_DECRYPTION_FAILED,
            "no decryption key");
    pol.nkeys = 1;
    sent_free(&s);

    /* another sender than the partner's id, or addressed to someone else */
    o = opts_base();
    o.signer = &sg;
    MUST(pack(&o, &d, &s, &err), err);
    pol.partner_id = "Eve";
    refused(&pol, &s.res.headers, &s.body, MDN_ERROR_AUTHENTICATION_FAILED,
            "another AS2 id");
    pol.partner_id = "Alice Corp";
    pol.our_id = "carol";
    refused(&pol, &s.res.headers, &s.body,
            MDN_ERROR_UNEXPECTED_PROCESSING_ERROR, "addressed");
    pol.our_id = "bob";
    /* a signed message and no partner certificate */
    pol.ncerts = 0;
    refused(&pol, &s.res.headers, &s.body, MDN_ERROR_AUTHENTICATION_FAILED,
            "no certificate");
    pol.ncerts = 1;
    sent_free(&s);

    /* payload limit; compressed: the decompression bound */
    for (int z = 0; z < 2; z++) {
        o = opts_base();
        o.compress = z ? AS2_COMPRESS_BEFORE_SIGNING : AS2_COMPRESS_NONE;
        MUST(pack(&o, &d, &s, &err), err);
        pol.max_size = 1000;
        assert_true(refused(&pol, &s.res.headers, &s.body,
                            z ? MDN_ERROR_DECOMPRESSION_FAILED
                              : MDN_ERROR_UNEXPECTED_PROCESSING_ERROR,
                            "limit") <= 1000);
        pol.max_size = 0;
        sent_free(&s);
    }

    /* a required MIC algorithm list with nothing acceptable */
    o = opts_base();
    o.signer = &sg;
    MUST(pack(&o, &d, &s, &err), err);
    struct mime_headers h2;
    headers_with(&s.res.headers, &h2, "Disposition-Notification-Options",
                 "signed-receipt-protocol=required, pkcs7-signature; "
                 "signed-receipt-micalg=required, md5");
    assert_int_equal(unpack(&pol, &h2, &s.body, &back, &info, &err), -1);
    assert_true(info.unsupported_micalg);
    assert_int_equal(info.mdn_error, MDN_ERROR_NONE);
    mime_headers_free(&h2);
    buf_free(&back);
    /* ... and no AS2-From at all */
    refused_with(&pol, &s, "AS2-From", NULL,
                 MDN_ERROR_UNEXPECTED_PROCESSING_ERROR, "AS2-From");
    sent_free(&s);
    buf_free(&d);
}

/* Truncated, corrupted and mislabelled bodies. */
static void test_m4_unpack_damaged_bodies(void **state)
{
    struct fx *f = *state;
    struct pol_store ps;
    struct as2_policy pol = policy_base(f, &ps);
    struct as2_signer sg = {f->alice.cert, f->alice.key, AS2_DIGEST_SHA256,
                            AS2_SIG_PKCS1};
    struct buf d = buf_payload(20000), cut;
    struct sent s = {0};
    struct error err = {0};
    struct as2_package_opts o = opts_base();

    /* signed + encrypted (GCM): truncated anywhere, or one bit flipped */
    o.signer = &sg;
    o.cipher = AS2_CIPHER_AES256_GCM;
    o.recipient = f->bob.cert;
    MUST(pack(&o, &d, &s, &err), err);
    size_t cuts[] = {10, 300, s.body.n / 2, s.body.n - 20, s.body.n - 1};
    for (size_t i = 0; i < N(cuts); i++) {
        cut = buf_copy(s.body.p, cuts[i]);
        refused(&pol, &s.res.headers, &cut, MDN_ERROR_DECRYPTION_FAILED, NULL);
        buf_free(&cut);
    }
    cut = buf_copy(s.body.p, s.body.n);
    cut.p[s.body.n / 2] ^= 0x10;
    refused(&pol, &s.res.headers, &cut, MDN_ERROR_DECRYPTION_FAILED, NULL);
    buf_free(&cut);
    /* mislabelled: the Content-Type says multipart/signed */
    refused_with(&pol, &s, "Content-Type",
                 "multipart/signed; protocol=\"application/pkcs7-signature\";"
                 " micalg=sha-256; boundary=\"xyz\"",
                 MDN_ERROR_UNEXPECTED_PROCESSING_ERROR, NULL);
    /* ... or text/plain while the partner must encrypt */
    pol.require_encrypted = true;
    refused_with(&pol, &s, "Content-Type", "text/plain",
                 MDN_ERROR_INSUFFICIENT_MESSAGE_SECURITY, NULL);
    pol.require_encrypted = false;
    /* ... or no Content-Type at all */
    refused_with(&pol, &s, "Content-Type", NULL,
                 MDN_ERROR_UNEXPECTED_PROCESSING_ERROR, "Content-Type");
    sent_free(&s);

    /* an enveloped-data label on bytes that are no CMS at all */
    o = opts_base();
    MUST(pack(&o, &d, &s, &err), err);
    refused_with(&pol, &s, "Content-Type",
                 "application/pkcs7-mime; smime-type=enveloped-data",
                 MDN_ERROR_DECRYPTION_FAILED, "not a CMS");
    sent_free(&s);

    /* signed only: a payload byte changed, the signature cut off */
    o = opts_base();
    o.signer = &sg;
    MUST(pack(&o, &d, &s, &err), err);
    cut = buf_copy(s.body.p, s.body.n);
    cut.p[s.body.n / 3] ^= 0x01;
    refused(&pol, &s.res.headers, &cut, MDN_ERROR_INTEGRITY_CHECK_FAILED,
            "does not match");
    buf_free(&cut);
    cut = buf_copy(s.body.p, s.body.n - 200);
    refused(&pol, &s.res.headers, &cut, MDN_ERROR_UNEXPECTED_PROCESSING_ERROR,
            NULL);
    buf_free(&cut);
    /* the signature part's base64 damaged */
    cut = buf_copy(s.body.p, s.body.n);
    cut.p[s.body.n - 150] = '*';
    refused(&pol, &s.res.headers, &cut, MDN_ERROR_AUTHENTICATION_FAILED, NULL);
    buf_free(&cut);
    sent_free(&s);

    /* compressed then signed: the compressed bytes damaged */
    o = opts_base();
    o.compress = AS2_COMPRESS_AFTER_SIGNING;
    o.signer = &sg;
    MUST(pack(&o, &d, &s, &err), err);
    cut = buf_copy(s.body.p, s.body.n);
    cut.p[s.body.n / 2] ^= 0x55;
    refused(&pol, &s.res.headers, &cut, MDN_ERROR_DECOMPRESSION_FAILED, NULL);
    buf_free(&cut);
    sent_free(&s);
    buf_free(&d);
}

/* What senders get wrong that is still unambiguous; NULL err. */
static void test_m4_unpack_tolerances(void **state)
{
    struct fx *f = *state;
    struct pol_store ps;
    struct as2_policy pol = policy_base(f, &ps);
    struct as2_signer sg = {f->alice.cert, f->alice.key, AS2_DIGEST_SHA256,
                            AS2_SIG_PKCS1};
    struct as2_package_opts o = opts_base();
    o.signer = &sg;
    o.cipher = AS2_CIPHER_AES128_CBC;
    o.recipient = f->bob.cert;
    struct buf d = buf_payload(7000), back;
    struct sent s = {0};
    struct error err = {0};
    struct as2_unpacked info;
    MUST(pack(&o, &d, &s, &err), err);
    /* a base64 body labelled binary, or not labelled at all */
    struct mime_buf b64;
    mime_buf_init(&b64);
    MUST(mime_buf_base64(&b64, s.body.p, s.body.n, &err), err);
    struct buf body = buf_copy(b64.data, b64.len);
    mime_buf_free(&b64);
    MUST(unpack(&pol, &s.res.headers, &body, &back, &info, &err), err);
    assert_true(buf_eq(&back, &d));
    assert_true(as2_mic_equal(info.mic, s.res.mic));
    buf_free(&back);
    struct mime_headers h2;
    headers_with(&s.res.headers, &h2, "Content-Transfer-Encoding", NULL);
    MUST(unpack(&pol, &h2, &body, &back, &info, &err), err);
    assert_true(buf_eq(&back, &d));
    buf_free(&back);
    mime_headers_free(&h2);
    buf_free(&body);

    /* err may be NULL */
    BIO *in = rbio(&s.body), *out = BIO_new(BIO_s_mem());
    assert_int_equal(as2_unpack(&pol, &s.res.headers, in, out, &info, NULL),
                     0);
    BIO_free(in);
    BIO_free(out);
    struct buf cut = buf_copy(s.body.p, s.body.n / 2);
    in = rbio(&cut);
    out = BIO_new(BIO_s_mem());
    assert_int_equal(as2_unpack(&pol, &s.res.headers, in, out, &info, NULL),
                     -1);
    assert_int_equal(info.mdn_error, MDN_ERROR_DECRYPTION_FAILED);
    BIO_free(in);
    BIO_free(out);
    buf_free(&cut);
    struct as2_packaged res;
    o.recipient = NULL;
    in = rbio(&d);
    out = BIO_new(BIO_s_mem());
    assert_int_equal(as2_package(&o, in, out, &res, NULL), -1);
    as2_packaged_free(&res);
    BIO_free(in);
    BIO_free(out);
    sent_free(&s);
    buf_free(&d);
}

static void test_m4_filename_sanitize(void **state)
{
    (void)state;
    char out[AS2_FILENAME_MAX + 1];
    static const struct { const char *in, *want; } cases[] = {
        {"invoice.edi", "invoice.edi"},
        {"../../etc/passwd", "passwd"},
        {"C:\\Windows\\evil.exe", "evil.exe"},
        {"a\x01" "b\tc\x7f.txt", "abc.txt"},
        {"..", ""},
        {".", ""},
        {"dir/", ""},
        {"  spaced name.txt  ", "spaced name.txt"},
        {"quo\"te.txt", "quote.txt"},
        {"caf\xc3\xa9.txt", "caf\xc3\xa9.txt"},
        {"", ""},
    };
    for (size_t i = 0; i < N(cases); i++) {
        as2_filename_sanitize(cases[i].in, out);
        assert_string_equal(out, cases[i].want);
    }
    char longname[600];
    memset(longname, 'a', sizeof(longname));
    memcpy(longname + 254, "\xc3\xa9", 2);       /* cut inside it */
    longname[sizeof(longname) - 1] = '\0';
    as2_filename_sanitize(longname, out);
    assert_int_equal(strlen(out), 254);
    memcpy(longname + 253, "\xc3\xa9", 2);       /* whole at the end */
    as2_filename_sanitize(longname, out);
    assert_int_equal(strlen(out), 255);
    as2_filename_sanitize(NULL, out);
    assert_string_equal(out, "");
}

/* ---- MDNs ---- */

/* Bob unpacks a message Alice sent with the given receipt options. */
static void received(struct fx *f, bool no_hyphen, bool want_signed,
                     struct sent *s, struct as2_unpacked *info)
{
    struct pol_store ps;
    struct as2_policy pol = policy_base(f, &ps);
    struct as2_signer sg = {f->alice.cert, f->alice.key, AS2_DIGEST_SHA256,
                            AS2_SIG_PKCS1};
    struct as2_package_opts o = opts_base();
    o.signer = &sg;
    o.cipher = AS2_CIPHER_AES128_CBC;
    o.recipient = f->bob.cert;
    o.micalg_no_hyphen = no_hyphen;
    o.mdn_signed = want_signed;
    struct buf d = buf_payload(3000), back;
    struct error err = {0};
    MUST(pack(&o, &d, s, &err), err);
    MUST(unpack(&pol, &s->res.headers, &s->body, &back, info, &err), err);
    buf_free(&back);
    buf_free(&d);
}

static int mdn_round(struct fx *f, const struct as2_unpacked *msg,
                     enum mdn_error e, const char *warning,
                     bool require_signed, X509 *verify_with,
                     struct as2_mdn_built *built, struct as2_mdn_received *r,
                     struct error *err)
{
    struct as2_signer bob = {f->bob.cert, f->bob.key, AS2_DIGEST_SHA256,
                             AS2_SIG_PKCS1};
    struct as2_mdn_opts mo = {"Wharf test", "bob.example", &bob, NULL};
    BIO *out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(out, 0);
    if (as2_mdn_make(&mo, msg, e, warning, out, built, err) != 0) {
        BIO_free(out);
        return -1;
    }
    X509 *certs[] = {verify_with};
    struct as2_mdn_read_opts ro = {"bob", certs, 1, 0, require_signed, 0};
    int rc = as2_mdn_read(&ro, &built->headers, out, r, err);
    BIO_free(out);
    return rc;
}

static void test_m4_mdn_make_and_read(void **state)
{
    struct fx *f = *state;
    static const enum mdn_error errors[] = {
        MDN_ERROR_NONE, MDN_ERROR_AUTHENTICATION_FAILED,
        MDN_ERROR_DECOMPRESSION_FAILED, MDN_ERROR_DECRYPTION_FAILED,
        MDN_ERROR_INSUFFICIENT_MESSAGE_SECURITY,
        MDN_ERROR_INTEGRITY_CHECK_FAILED,
        MDN_ERROR_UNEXPECTED_PROCESSING_ERROR,
    };
    for (int no_hyphen = 0; no_hyphen < 2; no_hyphen++)
        for (int want_signed = 0; want_signed < 2; want_signed++) {
            struct sent s = {0};
            struct as2_unpacked info;
            received(f, no_hyphen, want_signed, &s, &info);
            /* the spelling is known when the sender listed algorithms */
            const char *spelled = no_hyphen && want_signed ? "sha256"
                                                           : "sha-256";
            assert_string_equal(info.mic_alg_name, spelled);
            for (size_t i = 0; i < N(errors); i++) {
                struct as2_mdn_built built;
                struct as2_mdn_received r;
                struct error err = {0};
                MUST(mdn_round(f, &info, errors[i], NULL, false, f->bob.cert,
                               &built, &r, &err), err);
                assert_int_equal(r.is_signed, want_signed);
                assert_int_equal(built.is_signed, want_signed);
                const char *ct = header(&built.headers, "Content-Type");
                if (want_signed) {
                    assert_non_null(strstr(ct, "multipart/signed"));
                    assert_non_null(strstr(ct, no_hyphen ? "micalg=sha256"
                                                         : "micalg=sha-256"));
                    assert_int_equal(r.sig.digest, AS2_DIGEST_SHA256);
                } else {
                    assert_non_null(strstr(ct, "multipart/report"));
                }
                assert_string_equal(header(&built.headers, "AS2-From"), "bob");
                assert_string_equal(header(&built.headers, "AS2-To"),
                                    "\"Alice Corp\"");
                assert_string_equal(r.from, "bob");
                assert_string_equal(r.to, "Alice Corp");
                assert_string_equal(r.mdn.original_message_id,
                                    s.res.message_id);
                if (errors[i] == MDN_ERROR_NONE) {
                    assert_true(mdn_is_success(&r.mdn));
                    assert_string_equal(r.mdn.mic_alg_name, spelled);
                    MUST(as2_mdn_check(&r, s.res.message_id, s.res.mic,
                                       false, &err), err);
                    /* some partners drop the angle brackets */
                    char bare[AS2_MSGID_MAX + 1];
                    snprintf(bare, sizeof(bare), "%.*s",
                             (int)strlen(s.res.message_id) - 2,
                             s.res.message_id + 1);
                    MUST(as2_mdn_check(&r, bare, s.res.mic, false, &err), err);
                    /* another MIC or message is not confirmed */
                    assert_int_equal(as2_mdn_check(&r, "<other@x>",
                                                   s.res.mic, false, &err),
                                     -1);
                    char other[AS2_MIC_MAX];
                    MUST(as2_mic_compute(AS2_DIGEST_SHA256, "x", 1, other,
                                         sizeof(other), &err), err);
                    assert_int_equal(as2_mdn_check(&r, s.res.message_id,
                                                   other, false, &err), -1);
                    assert_non_null(strstr(err.msg, "MIC"));
                } else {
                    assert_int_equal(r.mdn.modifier, MDN_MOD_ERROR);
                    assert_int_equal(r.mdn.error, errors[i]);
                    assert_false(r.mdn.has_mic);
                    assert_int_equal(as2_mdn_check(&r, s.res.message_id,
                                                   s.res.mic, false, &err), -1);
                    assert_non_null(strstr(err.msg,
                                           mdn_error_name(errors[i])));
                }
                as2_mdn_built_free(&built);
            }
            sent_free(&s);
        }
}

/* M4 (RFC 4130 7.4.3): an unsigned receipt without a MIC confirms only
 * when the MIC is optional (the partner was asked for unsigned receipts
 * and does not require_mic); a MIC that is there must still match; a
 * signed receipt always needs one. */
static void test_m4_mdn_unsigned_receipt_mic_optional(void **state)
{
    struct fx *f = *state;
    struct sent s = {0};
    struct as2_unpacked info;
    struct as2_mdn_built built;
    struct as2_mdn_received r;
    struct error err = {0};
    received(f, false, true, &s, &info);
    struct as2_unpacked unsigned_rcpt = info;
    unsigned_rcpt.mdn_signed = false;
    MUST(mdn_round(f, &unsigned_rcpt, MDN_ERROR_NONE, NULL, false,
                   f->bob.cert, &built, &r, &err), err);
    assert_false(r.is_signed);
    MUST(as2_mdn_check(&r, s.res.message_id, s.res.mic, true, &err), err);
    struct as2_mdn_received nomic = r;
    nomic.mdn.has_mic = false;
    nomic.mic[0] = '\0';
    assert_int_equal(as2_mdn_check(&nomic, s.res.message_id, s.res.mic,
                                   false, &err), -1);
    assert_non_null(strstr(err.msg, "no Received-Content-MIC"));
    MUST(as2_mdn_check(&nomic, s.res.message_id, s.res.mic, true, &err), err);
    char other_mic[AS2_MIC_MAX];
    MUST(as2_mic_compute(AS2_DIGEST_SHA256, "x", 1, other_mic,
                         sizeof(other_mic), &err), err);
    assert_int_equal(as2_mdn_check(&r, s.res.message_id, other_mic, true,
                                   &err), -1);
    nomic.is_signed = true;
    assert_int_equal(as2_mdn_check(&nomic, s.res.message_id, s.res.mic,
                                   true, &err), -1);
    as2_mdn_built_free(&built);
    sent_free(&s);
}

static void test_m4_mdn_warning_failure_and_refusals(void **state)
{
    struct fx *f = *state;
    struct sent s = {0};
    struct as2_unpacked info;
    struct as2_mdn_built built;
    struct as2_mdn_received r;
    struct error err = {0};
    received(f, false, true, &s, &info);

    /* processed with a warning still confirms */
    MUST(mdn_round(f, &info, MDN_ERROR_NONE, "duplicate-document", true,
                   f->bob.cert, &built, &r, &err), err);
    assert_int_equal(r.mdn.modifier, MDN_MOD_WARNING);
    assert_string_equal(r.mdn.description, "duplicate-document");
    MUST(as2_mdn_check(&r, s.res.message_id, s.res.mic, false, &err), err);
    as2_mdn_built_free(&built);

    /* a signed MDN checked against another certificate */
    assert_int_equal(mdn_round(f, &info, MDN_ERROR_NONE, NULL, true,
                               f->mallory.cert, &built, &r, &err), -1);
    assert_false(r.is_signed);
    as2_mdn_built_free(&built);

    /* an unsigned MDN when a signed one is required */
    struct as2_unpacked plain = info;
    plain.mdn_signed = false;
    assert_int_equal(mdn_round(f, &plain, MDN_ERROR_NONE, NULL, true,
                               f->bob.cert, &built, &r, &err), -1);
    assert_non_null(strstr(err.msg, "not signed"));
    as2_mdn_built_free(&built);

    /* failed/failure: unsupported MIC-algorithms, never signed */
    struct as2_unpacked bad = info;
    bad.unsupported_micalg = true;
    bad.mic[0] = '\0';
    MUST(mdn_round(f, &bad, MDN_ERROR_NONE, NULL, false, f->bob.cert, &built,
                   &r, &err), err);
    assert_false(r.is_signed);
    assert_int_equal(r.mdn.type, MDN_TYPE_FAILED);
    assert_int_equal(r.mdn.modifier, MDN_MOD_FAILURE);
    assert_string_equal(r.mdn.description, MDN_FAILURE_UNSUPPORTED_MICALG);
    assert_int_equal(as2_mdn_check(&r, s.res.message_id, NULL, false,
                                   &err), -1);
    as2_mdn_built_free(&built);

    /* a tampered signed MDN */
    struct as2_signer bob = {f->bob.cert, f->bob.key, AS2_DIGEST_SHA256,
                             AS2_SIG_PKCS1};
    struct as2_mdn_opts mo = {NULL, NULL, &bob, "All good."};
    BIO *out = BIO_new(BIO_s_mem());
    MUST(as2_mdn_make(&mo, &info, MDN_ERROR_NONE, NULL, out, &built, &err),
         err);
    struct buf body = take(out);
    unsigned char *hit = memmem(body.p, body.n, "processed", 9);
    assert_non_null(hit);
    memcpy(hit, "Processed", 9);
    X509 *certs[] = {f->bob.cert};
    struct as2_mdn_read_opts ro = {"bob", certs, 1, 0, false, 0};
    BIO *in = rbio(&body);
    assert_int_equal(as2_mdn_read(&ro, &built.headers, in, &r, &err), -1);
    assert_non_null(strstr(err.msg, "signature"));
    BIO_free(in);
    /* ... and an MDN over the size limit */
    memcpy(hit, "processed", 9);
    ro.max_size = 100;
    in = rbio(&body);
    assert_int_equal(as2_mdn_read(&ro, &built.headers, in, &r, &err), -1);
    assert_non_null(strstr(err.msg, "larger"));
    BIO_free(in);
    buf_free(&body);
    as2_mdn_built_free(&built);

    /* an MDN for a request we could not even read */
    struct as2_unpacked none;
    memset(&none, 0, sizeof(none));
    out = BIO_new(BIO_s_mem());
    assert_int_equal(as2_mdn_make(&mo, &none, MDN_ERROR_DECRYPTION_FAILED,
                                  NULL, out, &built, &err), -1);
    BIO_free(out);
    as2_mdn_built_free(&built);
    sent_free(&s);
}

/* ---- interop with the openssl command line ---- */

/* Wharf packages signed + encrypted; openssl decrypts it and verifies the
 * inner multipart/signed (S/MIME). */
static void test_m4_interop_cli_reads_ours(void **state)
{
    struct fx *f = *state;
    char encp[400], innerp[400], outp[400];
    path_in(f, encp, sizeof(encp), "wharf.p7m");
    path_in(f, innerp, sizeof(innerp), "inner.eml");
    path_in(f, outp, sizeof(outp), "content.out");
    struct as2_signer sg = {f->alice.cert, f->alice.key, AS2_DIGEST_SHA256,
                            AS2_SIG_PKCS1};
    for (int variant = 0; variant < 3; variant++) {
        struct as2_package_opts o = opts_base();
        o.signer = &sg;
        o.cipher = variant == 2 ? AS2_CIPHER_AES128_GCM
                                : AS2_CIPHER_AES256_CBC;
        o.kt = variant == 1 ? AS2_KT_RSA_OAEP : AS2_KT_RSA_PKCS1;
        o.recipient = f->bob.cert;
        o.filename = "x.edi";
        o.transfer = variant == 1 ? AS2_TRANSFER_BASE64 : AS2_TRANSFER_BINARY;
        sg.padding = variant == 1 ? AS2_SIG_PSS : AS2_SIG_PKCS1;
        struct buf d = buf_payload(30000);
        struct sent s = {0};
        struct error err = {0};
        MUST(pack(&o, &d, &s, &err), err);
        spit(encp, &s.body);
        const char *dec[] = {"openssl", "cms", "-decrypt", "-binary",
            "-inform", "DER", "-in", encp, "-recip", f->bob.pem, "-inkey",
            f->bob.keypem, "-out", innerp, NULL};
        assert_int_equal(run(f, dec, NULL), 0);
        /* -crlfeol: our delimiters end in CRLF, and in binary mode
         * OpenSSL otherwise keeps the CR as content */
        const char *ver[] = {"openssl", "cms", "-verify", "-binary",
            "-crlfeol", "-inform", "SMIME", "-in", innerp, "-noverify", "-CAfile",
            f->alice.pem, "-out", outp, NULL};
        assert_int_equal(run(f, ver, NULL), 0);
        struct buf got = slurp(outp);
        const char *hdr = variant == 1
            ? "Content-Type: application/edi-x12\r\n"
              "Content-Transfer-Encoding: base64\r\n"
              "Content-Disposition: attachment; filename=\"x.edi\"\r\n\r\n"
            : "Content-Type: application/edi-x12\r\n"
              "Content-Transfer-Encoding: binary\r\n"
              "Content-Disposition: attachment; filename=\"x.edi\"\r\n\r\n";
        assert_true(got.n > strlen(hdr));
        assert_memory_equal(got.p, hdr, strlen(hdr));
        if (variant != 1) {
            assert_int_equal(got.n, strlen(hdr) + d.n);
            assert_memory_equal(got.p + strlen(hdr), d.p, d.n);
        }
        /* the MIC is the digest of what openssl verified */
        char mic[AS2_MIC_MAX];
        MUST(as2_mic_compute(AS2_DIGEST_SHA256, got.p, got.n, mic,
                             sizeof(mic), &err), err);
        assert_true(as2_mic_equal(mic, s.res.mic));
        buf_free(&got);
        buf_free(&d);
        sent_free(&s);
    }
}

/* openssl signs (S/MIME, multipart/signed) and encrypts; Wharf unpacks it
 * and its MIC equals openssl dgst over the signed entity. */
static void test_m4_interop_we_read_cli(void **state)
{
    struct fx *f = *state;
    char entp[400], signp[400], encp[400], dgp[400], b64p[400];
    path_in(f, entp, sizeof(entp), "entity.eml");
    path_in(f, signp, sizeof(signp), "signed.eml");
    path_in(f, encp, sizeof(encp), "enc.eml");
    path_in(f, dgp, sizeof(dgp), "dg.bin");
    path_in(f, b64p, sizeof(b64p), "dg.b64");
    struct pol_store ps;
    struct as2_policy pol = policy_base(f, &ps);
    const char *mds[] = {"sha256", "sha512"};
    for (size_t v = 0; v < 2 * N(mds); v++) {
        const char *md = mds[v % N(mds)];
        bool attached = v >= N(mds);
        struct buf d = buf_payload(25000);
        static const char h[] = "Content-Type: application/edi-x12\r\n"
                                "Content-Transfer-Encoding: binary\r\n"
                                "Content-Disposition: attachment; "
                                "filename=\"../cli.edi\"\r\n\r\n";
        struct buf e = {malloc(sizeof(h) - 1 + d.n), sizeof(h) - 1 + d.n};
        memcpy(e.p, h, sizeof(h) - 1);
        memcpy(e.p + sizeof(h) - 1, d.p, d.n);
        spit(entp, &e);
        const char *sign[24] = {"openssl", "cms", "-sign", "-binary", "-in",
            entp, "-signer", f->alice.pem, "-inkey", f->alice.keypem, "-md",
            md, "-out", signp};
        if (attached)
            sign[14] = "-nodetach";
        assert_int_equal(run(f, sign, NULL), 0);
        const char *enc[] = {"openssl", "cms", "-encrypt", "-binary",
            "-aes256", "-in", signp, "-out", encp, f->bob.pem, NULL};
        assert_int_equal(run(f, enc, NULL), 0);
        const char *dg[] = {"openssl", "dgst", strcmp(md, "sha256") == 0
            ? "-sha256" : "-sha512", "-binary", "-out", dgp, entp, NULL};
        assert_int_equal(run(f, dg, NULL), 0);
        const char *b64[] = {"openssl", "base64", "-A", "-in", dgp, "-out",
            b64p, NULL};
        assert_int_equal(run(f, b64, NULL), 0);

        /* the S/MIME headers become the request's, plus the AS2 ones */
        struct buf msg = slurp(encp);
        struct mime_headers hs;
        size_t off = 0;
        struct error err = {0};
        mime_headers_init(&hs);
        MUST(mime_headers_parse(&hs, (const char *)msg.p, msg.n, &off, &err),
             err);
        char dno[200];
        snprintf(dno, sizeof(dno), "signed-receipt-protocol=optional, "
                 "pkcs7-signature; signed-receipt-micalg=optional, %s", md);
        assert_int_equal(mime_headers_add(&hs, "AS2-From", "\"Alice Corp\"",
                                          NULL), 0);
        assert_int_equal(mime_headers_add(&hs, "AS2-To", "bob", NULL), 0);
        assert_int_equal(mime_headers_add(&hs, "Message-ID", "<cli-1@x>",
                                          NULL), 0);
        assert_int_equal(mime_headers_add(&hs, "Disposition-Notification-To",
                                          "x", NULL), 0);
        assert_int_equal(mime_headers_add(&hs,
                         "Disposition-Notification-Options", dno, NULL), 0);
        struct buf body = buf_copy(msg.p + off, msg.n - off), back;
        struct as2_unpacked info;
        MUST(unpack(&pol, &hs, &body, &back, &info, &err), err);
        assert_true(buf_eq(&back, &d));
        assert_string_equal(info.filename, "cli.edi");
        assert_true(info.is_signed && info.is_encrypted);
        assert_int_equal(info.sig.digest, strcmp(md, "sha256") == 0
                         ? AS2_DIGEST_SHA256 : AS2_DIGEST_SHA512);
        struct buf want = slurp(b64p);
        char mic[AS2_MIC_MAX];
        snprintf(mic, sizeof(mic), "%.*s, %s", (int)want.n, (char *)want.p,
                 md);
        if (strcmp(info.mic, mic) != 0)
            fail_msg("MIC %s, openssl dgst says %s", info.mic, mic);
        buf_free(&want);
        buf_free(&back);
        buf_free(&body);
        buf_free(&msg);
        buf_free(&e);
        buf_free(&d);
        mime_headers_free(&hs);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_m4_message_streams_64mib_in_constant_memory),
        cmocka_unit_test(test_m4_round_trip_every_combination),
        cmocka_unit_test(test_m4_compress_level_trades_size_for_speed),
        cmocka_unit_test(test_m4_mic_scope_unsigned),
        cmocka_unit_test(test_m4_package_headers),
        cmocka_unit_test(test_m4_unpack_policy_refusals),
        cmocka_unit_test(test_m4_unpack_damaged_bodies),
        cmocka_unit_test(test_m4_unpack_tolerances),
        cmocka_unit_test(test_m4_filename_sanitize),
        cmocka_unit_test(test_m4_mdn_make_and_read),
        cmocka_unit_test(test_m4_mdn_warning_failure_and_refusals),
        cmocka_unit_test(test_m4_mdn_unsigned_receipt_mic_optional),
        cmocka_unit_test(test_m4_interop_cli_reads_ours),
        cmocka_unit_test(test_m4_interop_we_read_cli),
    };
    return cmocka_run_group_tests(tests, fx_setup, fx_teardown);
}
