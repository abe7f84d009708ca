/*
 * test_as2_mime.c - the pure AS2 protocol code: MIME headers, parameters,
 * Content-Type, buffered and streaming multipart splitting (delimiters
 * split at every chunk boundary), base64/quoted-printable, CRLF
 * canonicalization, envelopes; AS2 names, Message-IDs, versions, DNO and
 * receipt URLs; MDN build -> parse round trips and real-world-shaped MDNs.
 */
#include "testutil.h"

#include "as2/as2_headers.h"
#include "as2/mdn.h"
#include "as2/mime.h"

/* ---- helpers ---- */

/* Parse a NUL-terminated header block; fails the test on error. */
static size_t parse_block(struct mime_headers *hs, const char *s)
{
    struct error err = {0};
    size_t off = 0;
    mime_headers_init(hs);
    if (mime_headers_parse(hs, s, strlen(s), &off, &err) != 0)
        fail_msg("parse failed: %s", err.msg);
    return off;
}

static int parse_fails(const char *s, const char *needle)
{
    struct mime_headers hs;
    struct error err = {0};
    mime_headers_init(&hs);
    int rc = mime_headers_parse(&hs, s, strlen(s), NULL, &err);
    mime_headers_free(&hs);
    if (rc == 0)
        return 0;
    if (needle && strstr(err.msg, needle) == NULL)
        fail_msg("error '%s' lacks '%s'", err.msg, needle);
    return 1;
}

/* ---- headers ---- */

static void test_headers_parse(void **state)
{
    (void)state;
    struct mime_headers hs;
    const char *s = "Content-Type: multipart/signed;\r\n"
                    "\tboundary=\"abc\"\r\n"
                    "AS2-From:   sender  \r\n"
                    "X-Long: one\r\n  two\r\n three\r\n"
                    "x-empty:\r\n"
                    "\r\n"
                    "BODY";
    size_t off = parse_block(&hs, s);
    assert_int_equal(off, strlen(s) - 4);
    assert_int_equal(hs.count, 4);
    assert_string_equal(mime_header_get(&hs, "content-type"),
                        "multipart/signed;\tboundary=\"abc\"");
    assert_string_equal(mime_header_get(&hs, "as2-from"), "sender");
    assert_string_equal(mime_header_get(&hs, "X-LONG"), "one  two three");
    assert_string_equal(mime_header_get(&hs, "X-Empty"), "");
    assert_null(mime_header_get(&hs, "Missing"));
    mime_headers_free(&hs);

    /* bare LF line ends, no body, no final empty line */
    off = parse_block(&hs, "A: 1\nB : 2\n c");
    assert_int_equal(hs.count, 2);
    assert_string_equal(hs.h[1].name, "B");
    assert_string_equal(mime_header_get(&hs, "b"), "2 c");
    assert_int_equal(off, strlen("A: 1\nB : 2\n c"));
    mime_headers_free(&hs);

    /* a part with no headers at all */
    off = parse_block(&hs, "\r\nbody");
    assert_int_equal(off, 2);
    assert_int_equal(hs.count, 0);
    mime_headers_free(&hs);

    /* duplicates: visible, and refused by get_unique */
    const char *v = NULL;
    struct error err = {0};
    parse_block(&hs, "A: 1\r\na: 2\r\n\r\n");
    assert_int_equal(mime_header_count(&hs, "A"), 2);
    assert_int_equal(mime_header_get_unique(&hs, "a", &v, &err), -1);
    assert_non_null(strstr(err.msg, "more than once"));
    assert_int_equal(mime_header_get_unique(&hs, "b", &v, &err), 0);
    assert_null(v);
    mime_headers_free(&hs);

    /* mime_headers_end for streamed headers */
    size_t body = 0;
    assert_int_equal(mime_headers_end("A: b\r\n\r\nx", 9, &body, NULL), 1);
    assert_int_equal(body, 8);
    assert_int_equal(mime_headers_end("A: b\r\n", 6, &body, NULL), 0);
}

static void test_headers_errors(void **state)
{
    (void)state;
    assert_true(parse_fails("no colon here\r\n\r\n", "no colon"));
    assert_true(parse_fails(" leading: continuation\r\n", "continues no header"));
    assert_true(parse_fails("A: b\x01 c\r\n", "control character"));
    assert_true(parse_fails("A: b\rc\r\n\r\n", "control character"));
    assert_true(parse_fails("A: b\r\n   \r\nB: c\r\n", "only whitespace"));
    assert_true(parse_fails(": empty name\r\n", "empty name"));
    assert_true(parse_fails("Bad Name: x\r\n", "invalid character"));

    /* 201 headers */
    struct mime_buf b;
    mime_buf_init(&b);
    for (int i = 0; i < 201; i++) {
        char line[32];
        snprintf(line, sizeof(line), "H%d: v\r\n", i);
        assert_int_equal(mime_buf_puts(&b, line, NULL), 0);
    }
    assert_true(parse_fails(b.data, "more than 200"));
    mime_buf_free(&b);

    /* more than 64 KiB */
    char *big = malloc(70000);
    assert_non_null(big);
    memcpy(big, "A: ", 3);
    memset(big + 3, 'x', 69990);
    memcpy(big + 69993, "\r\n\r\n", 5);
    assert_true(parse_fails(big, "larger than 65536"));
    size_t body;
    struct error err = {0};
    assert_int_equal(mime_headers_end(big, strlen(big), &body, &err), -1);
    free(big);

    struct mime_headers hs;
    mime_headers_init(&hs);
    assert_int_equal(mime_headers_add(&hs, "X", "a\r\nInjected: 1", &err), -1);
    assert_int_equal(mime_headers_add(&hs, "X", "ok", &err), 0);
    assert_string_equal(mime_header_get(&hs, "x"), "ok");
    mime_headers_free(&hs);
}

static void test_header_write_fold(void **state)
{
    (void)state;
    struct mime_buf b;
    struct error err = {0};
    const char *value =
        "multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; "
        "boundary=\"----=_Part_0_1234567890.1234567890123\"; extra=\"a b c d e\"";
    mime_buf_init(&b);
    assert_int_equal(mime_header_write(&b, "Content-Type", value, &err), 0);
    /* every line within 76 characters, continuation lines start with WSP */
    const char *p = b.data;
    int lines = 0;
    while (*p) {
        const char *e = strstr(p, "\r\n");
        assert_non_null(e);
        assert_true(e - p <= 76);
        if (lines++ > 0)
            assert_true(*p == ' ' || *p == '\t');
        p = e + 2;
    }
    assert_true(lines > 1);
    struct mime_headers hs;
    parse_block(&hs, b.data);
    assert_int_equal(hs.count, 1);
    assert_string_equal(mime_header_get(&hs, "content-type"), value);
    mime_headers_free(&hs);
    mime_buf_free(&b);

    /* no line break can be smuggled in; a 999-character run is refused */
    mime_buf_init(&b);
    assert_int_equal(mime_header_write(&b, "Subject", "a\r\nBcc: x", &err), -1);
    assert_int_equal(mime_header_write(&b, "Bad:Name", "x", &err), -1);
    char run[1001];
    memset(run, 'y', 1000);
    run[1000] = '\0';
    assert_int_equal(mime_header_write(&b, "X", run, &err), -1);
    assert_non_null(strstr(err.msg, "longer than 998"));
    mime_buf_free(&b);

    /* short values stay on one line */
    mime_buf_init(&b);
    assert_int_equal(mime_header_write(&b, "AS2-Version", "1.2", &err), 0);
    assert_string_equal(b.data, "AS2-Version: 1.2\r\n");
    mime_buf_free(&b);
}

/* ---- parameters and Content-Type ---- */

static void test_params(void **state)
{
    (void)state;
    struct mime_params p;
    struct error err = {0};
    assert_int_equal(mime_params_parse(
        "multipart/signed; protocol=\"application/pkcs7-signature\"; "
        "MICALG=sha-256; boundary=\"----=_X\";", &p, &err), 0);
    assert_string_equal(p.value, "multipart/signed");
    assert_int_equal(p.count, 3);
    assert_string_equal(mime_param_get(&p, "protocol"), "application/pkcs7-signature");
    assert_string_equal(mime_param_get(&p, "micalg"), "sha-256");
    assert_string_equal(mime_param_get(&p, "Boundary"), "----=_X");
    mime_params_free(&p);

    assert_int_equal(mime_params_parse("attachment; filename=\"a \\\"b\\\\ c;d\"", &p, &err), 0);
    assert_string_equal(mime_param_get(&p, "filename"), "a \"b\\ c;d");
    mime_params_free(&p);

    assert_int_equal(mime_params_parse("x; a = 1 ;; b=2", &p, &err), 0);
    assert_string_equal(mime_param_get(&p, "a"), "1");
    assert_string_equal(mime_param_get(&p, "b"), "2");
    mime_params_free(&p);

    assert_int_equal(mime_params_parse("x; a=1; A=2", &p, &err), -1);
    assert_non_null(strstr(err.msg, "more than once"));
    assert_int_equal(mime_params_parse("x; a=\"open", &p, &err), -1);
    assert_non_null(strstr(err.msg, "not terminated"));
    assert_int_equal(mime_params_parse("x; a", &p, &err), -1);
    assert_int_equal(mime_params_parse("x; a=1 b", &p, &err), -1);
    assert_int_equal(mime_params_parse("x; a=", &p, &err), -1);
}

static void test_content_type(void **state)
{
    (void)state;
    struct mime_content_type ct;
    struct error err = {0};
    assert_int_equal(mime_content_type_parse(
        "Multipart/Report; report-type=disposition-notification; boundary=b", &ct, &err), 0);
    assert_string_equal(ct.type, "multipart");
    assert_string_equal(ct.subtype, "report");
    assert_true(mime_content_type_is(&ct, "multipart", "REPORT"));
    assert_true(mime_content_type_is(&ct, "multipart", NULL));
    assert_string_equal(mime_param_get(&ct.params, "boundary"), "b");
    mime_content_type_free(&ct);

    assert_int_equal(mime_content_type_parse("textplain", &ct, &err), -1);
    assert_int_equal(mime_content_type_parse("text/", &ct, &err), -1);
    assert_int_equal(mime_content_type_parse("te xt/plain", &ct, &err), -1);
    assert_int_equal(mime_content_type_parse("/plain", &ct, &err), -1);

    enum mime_cte cte;
    assert_int_equal(mime_cte_parse(NULL, &cte, &err), 0);
    assert_int_equal(cte, MIME_CTE_7BIT);
    assert_int_equal(mime_cte_parse("BASE64", &cte, &err), 0);
    assert_int_equal(cte, MIME_CTE_BASE64);
    assert_int_equal(mime_cte_parse("Quoted-Printable", &cte, &err), 0);
    assert_int_equal(cte, MIME_CTE_QP);
    assert_int_equal(mime_cte_parse("binary", &cte, &err), 0);
    assert_int_equal(cte, MIME_CTE_BINARY);
    assert_int_equal(mime_cte_parse("x-uuencode", &cte, &err), -1);
}

/* ---- multipart ---- */

#define SIGNED_PART "Content-Type: application/edi-x12\r\n" \
                    "Content-Transfer-Encoding: binary\r\n\r\n" \
                    "ISA*00*...~\r\nIEA*1*000000001~\r\n"

static const char signed_body[] =
    "preamble text\r\n"
    "--BOUND\r\n"
    SIGNED_PART
    "\r\n--BOUND\r\n"
    "Content-Type: application/pkcs7-signature\r\n"
    "Content-Transfer-Encoding: base64\r\n\r\n"
    "AAEC\r\n"
    "--BOUND--\r\n"
    "epilogue\r\n";

static void test_multipart_split(void **state)
{
    (void)state;
    struct mime_part_range parts[4];
    size_t n = 0;
    struct error err = {0};
    size_t len = sizeof(signed_body) - 1;
    assert_int_equal(mime_multipart_split(signed_body, len, "BOUND", parts, 4, &n, &err), 0);
    assert_int_equal(n, 2);
    /* the signed part: exact bytes, headers included, final CRLF excluded */
    assert_int_equal(parts[0].len, strlen(SIGNED_PART));
    assert_memory_equal(signed_body + parts[0].off, SIGNED_PART, parts[0].len);
    assert_memory_equal(signed_body + parts[1].off + parts[1].len, "\r\n--BOUND--", 11);

    /* LF only, transport padding, empty parts */
    const char *lf = "--b \t\nA: 1\n\nx\n--b\n--b\n\n--b--";
    assert_int_equal(mime_multipart_split(lf, strlen(lf), "b", parts, 4, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_int_equal(parts[0].len, strlen("A: 1\n\nx"));
    assert_int_equal(parts[1].len, 0);
    assert_int_equal(parts[2].len, 0);

    /* errors */
    const char *noclose = "--b\r\nx\r\n--b\r\ny\r\n";
    assert_int_equal(mime_multipart_split(noclose, strlen(noclose), "b", parts, 4, &n, &err), -1);
    assert_non_null(strstr(err.msg, "no close delimiter"));
    assert_int_equal(mime_multipart_split("hello", 5, "b", parts, 4, &n, &err), -1);
    assert_int_equal(mime_multipart_split("--b--\r\n", 7, "b", parts, 4, &n, &err), -1);
    assert_non_null(strstr(err.msg, "no parts"));
    const char *bad = "--b\r\nx\r\n--bX\r\n--b--";
    assert_int_equal(mime_multipart_split(bad, strlen(bad), "b", parts, 4, &n, &err), -1);
    assert_non_null(strstr(err.msg, "malformed"));
    const char *many = "--b\n\n--b\n\n--b\n\n--b--";
    assert_int_equal(mime_multipart_split(many, strlen(many), "b", parts, 2, &n, &err), -1);
    assert_non_null(strstr(err.msg, "more than 2 parts"));
    char longb[72];
    memset(longb, 'a', 71);
    longb[71] = '\0';
    assert_int_equal(mime_multipart_split("x", 1, longb, parts, 4, &n, &err), -1);
    longb[70] = '\0';
    assert_int_equal(mime_boundary_check(longb, &err), 0);
    assert_int_equal(mime_boundary_check("", &err), -1);
    assert_int_equal(mime_boundary_check("ends ", &err), -1);
    assert_int_equal(mime_boundary_check("a\r", &err), -1);
}

/* Streaming splitter output collected for comparison. */
struct got {
    size_t n;
    size_t off[8];
    char data[8][512];
    size_t len[8];
    int ends;
    int fail_at_part;   /* part_begin of this index fails; -1 never */
};

static int g_begin(void *ctx, size_t index, uint64_t offset, struct error *err)
{
    struct got *g = ctx;
    if ((int)index == g->fail_at_part)
        return error_set(err, "callback refused part %zu", index);
    assert_int_equal(index, g->n);
    g->off[g->n] = (size_t)offset;
    g->len[g->n] = 0;
    g->n++;
    return 0;
}

static int g_data(void *ctx, const char *d, size_t len, struct error *err)
{
    (void)err;
    struct got *g = ctx;
    assert_true(len > 0);
    size_t i = g->n - 1;
    assert_true(g->len[i] + len <= sizeof(g->data[i]));
    memcpy(g->data[i] + g->len[i], d, len);
    g->len[i] += len;
    return 0;
}

static int g_end(void *ctx, struct error *err)
{
    (void)err;
    ((struct got *)ctx)->ends++;
    return 0;
}

static const struct mime_splitter_cb got_cb = {g_begin, g_data, g_end};

/* Feed body in the given chunk cut points; compare with the buffered split. */
static void stream_matches(const char *body, size_t len, const char *b,
                           const size_t *cuts, size_t ncuts)
{
    struct mime_part_range parts[8];
    size_t n;
    struct error err = {0};
    int rb = mime_multipart_split(body, len, b, parts, 8, &n, &err);
    struct got g = {.fail_at_part = -1};
    struct mime_splitter s;
    assert_int_equal(mime_splitter_init(&s, b, &got_cb, &g, &err), 0);
    size_t prev = 0;
    int rs = 0;
    for (size_t i = 0; i <= ncuts && rs == 0; i++) {
        size_t end = i < ncuts ? cuts[i] : len;
        rs = mime_splitter_feed(&s, body + prev, end - prev, &err);
        prev = end;
    }
    if (rs == 0)
        rs = mime_splitter_finish(&s, &err);
    assert_int_equal(rs, rb);
    if (rb != 0)
        return;
    assert_int_equal(g.n, n);
    assert_int_equal(g.ends, (int)n);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(g.off[i], parts[i].off);
        assert_int_equal(g.len[i], parts[i].len);
        assert_memory_equal(g.data[i], body + parts[i].off, parts[i].len);
    }
}

static void test_splitter_every_chunk_boundary(void **state)
{
    (void)state;
    static const char *const bodies[] = {
        signed_body,
        "--b \t\nA: 1\n\nx\n--b\n--b\n\n--b--",
        "--b\r\n\r\n\r\n--b\r\n\r\r\n--b\r\nx\r--b\r\n-\r\n--\r\n--b--",
        "pre\n--b\r\n--bb\r\n",                     /* malformed: both fail */
        "--b\r\nx\r\n--b-",                          /* unterminated close */
        "--b\r\n\r\n--b  \r\r\n--b--",              /* CR CR after delimiter */
    };
    static const char *const bounds[] = {"BOUND", "b", "b", "b", "b", "b"};
    for (size_t t = 0; t < sizeof(bodies) / sizeof(bodies[0]); t++) {
        const char *body = bodies[t];
        size_t len = strlen(body);
        /* two chunks, cut at every position */
        for (size_t c = 0; c <= len; c++)
            stream_matches(body, len, bounds[t], &c, 1);
        /* three chunks around every position (delimiter straddles two cuts) */
        for (size_t c = 0; c + 3 <= len; c++) {
            size_t cuts[2] = {c, c + 3};
            stream_matches(body, len, bounds[t], cuts, 2);
        }
        /* one byte at a time */
        size_t cuts[600];
        assert_true(len < 600);
        for (size_t c = 0; c < len; c++)
            cuts[c] = c + 1;
        stream_matches(body, len, bounds[t], cuts, len);
    }
}

static void test_splitter_callback_stops(void **state)
{
    (void)state;
    struct got g = {.fail_at_part = 1};
    struct mime_splitter s;
    struct error err = {0};
    assert_int_equal(mime_splitter_init(&s, "BOUND", &got_cb, &g, &err), 0);
    assert_int_equal(mime_splitter_feed(&s, signed_body, strlen(signed_body), &err), -1);
    assert_non_null(strstr(err.msg, "callback refused part 1"));
    assert_int_equal(mime_splitter_feed(&s, "x", 1, &err), -1);
    assert_int_equal(mime_splitter_finish(&s, &err), -1);
    assert_int_equal(mime_splitter_init(&s, "", &got_cb, &g, &err), -1);
}

/* Counts part_data calls and bytes (a part of any size). */
struct runs {
    size_t calls, bytes;
};

static int r_begin(void *ctx, size_t index, uint64_t offset, struct error *err)
{
    (void)ctx; (void)index; (void)offset; (void)err;
    return 0;
}

static int r_data(void *ctx, const char *d, size_t len, struct error *err)
{
    (void)d; (void)err;
    struct runs *r = ctx;
    r->calls++;
    r->bytes += len;
    return 0;
}

static int r_end(void *ctx, struct error *err)
{
    (void)ctx; (void)err;
    return 0;
}

/* EDI is many short lines (an X12 segment per line): the splitter must
 * pass a part's content on in runs as long as the chunks it is fed, not a
 * line at a time (each call is a write through the receiver's digest and
 * decoding chain: per line, it held a 1 GiB transfer at half its rate).
 * Only a line break followed by '-' (or at a chunk's end) can start a
 * delimiter, so only such a line break may cut a run. */
static void test_m4_splitter_passes_content_in_runs_not_lines(void **state)
{
    (void)state;
    static const char line[] = "PO1*1*10*EA*9.95**VP*123-456~\r\n";
    size_t ll = sizeof(line) - 1, nlines = 16384, chunk = 65536;
    const char *head = "--b\r\nContent-Type: application/edi-x12\r\n\r\n";
    const char *tail = "\r\n--b--\r\n";
    size_t hl = strlen(head), tl = strlen(tail);
    size_t len = hl + nlines * ll + tl;
    char *body = malloc(len);
    assert_non_null(body);
    memcpy(body, head, hl);
    for (size_t i = 0; i < nlines; i++)
        memcpy(body + hl + i * ll, line, ll);
    memcpy(body + hl + nlines * ll, tail, tl);
    struct mime_splitter_cb cb = {r_begin, r_data, r_end};
    struct runs r = {0};
    struct mime_splitter s;
    struct error err = {0};
    assert_int_equal(mime_splitter_init(&s, "b", &cb, &r, &err), 0);
    for (size_t at = 0; at < len; at += chunk)
        assert_int_equal(mime_splitter_feed(&s, body + at, len - at < chunk
                                            ? len - at : chunk, &err), 0);
    assert_int_equal(mime_splitter_finish(&s, &err), 0);
    free(body);
    /* the part: its headers and every line (the tail's CRLF is the
     * delimiter's) */
    assert_int_equal(r.bytes, hl - strlen("--b\r\n") + nlines * ll);
    size_t chunks = (len + chunk - 1) / chunk;
    assert_true(r.calls <= 3 * chunks);   /* were two per line */
}

/* ---- encodings ---- */

static void b64_ok(const char *in, const char *want, size_t wlen)
{
    unsigned char out[256];
    size_t n = 0;
    struct error err = {0};
    if (mime_base64_decode(in, strlen(in), out, &n, &err) != 0)
        fail_msg("decode of '%s' failed: %s", in, err.msg);
    assert_int_equal(n, wlen);
    assert_memory_equal(out, want, wlen);
}

static void b64_bad(const char *in, const char *needle)
{
    unsigned char out[256];
    size_t n;
    struct error err = {0};
    assert_int_equal(mime_base64_decode(in, strlen(in), out, &n, &err), -1);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("error '%s' lacks '%s'", err.msg, needle);
}

static void test_base64(void **state)
{
    (void)state;
    b64_ok("", "", 0);
    b64_ok("QQ==", "A", 1);
    b64_ok("QUI=", "AB", 2);
    b64_ok("QUJD", "ABC", 3);
    b64_ok(" Q U\r\nJD\tRA= =\r\n", "ABCD", 4);
    b64_ok("QQ", "A", 1);               /* unpadded final group */
    b64_ok("QUI", "AB", 2);
    b64_ok("QQ=", "A", 1);
    b64_ok("+/+/", "\xfb\xff\xbf", 3);
    b64_bad("QU*D", "invalid character 0x2a");
    b64_bad("QQ==QQ==", "after its padding");
    b64_bad("Q===", "misplaced");
    b64_bad("QQ=A", "incomplete");
    b64_bad("Q", "middle of a group");
    b64_bad("QUJD-", "invalid character 0x2d");

    /* encoding: 76-character lines with CRLF; round trips of every size */
    unsigned char in[300];
    for (size_t i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(i * 7 + 3);
    char enc[500];
    unsigned char dec[400];
    for (size_t n = 0; n <= sizeof(in); n++) {
        size_t el = mime_base64_encoded_len(n);
        assert_true(el + 1 <= sizeof(enc));
        assert_int_equal(mime_base64_encode(in, n, enc), el);
        assert_int_equal(strlen(enc), el);
        size_t dn;
        assert_int_equal(mime_base64_decode(enc, el, dec, &dn, NULL), 0);
        assert_int_equal(dn, n);
        assert_memory_equal(dec, in, n);
    }
    mime_base64_encode(in, 60, enc);
    assert_int_equal(strchr(enc, '\r') - enc, 76);
    assert_memory_equal(enc + 76, "\r\n", 2);
    assert_memory_equal(enc + 82, "\r\n", 3);
    assert_int_equal(strlen(enc), 76 + 2 + 4 + 2);

    /* streaming decoder, one byte at a time and in odd chunks */
    const char *text = "SGVs bG8s\r\nIHN0cmVh\r\nbWluZyB3b3JsZCE=\r\n";
    const char *want = "Hello, streaming world!";
    for (size_t step = 1; step <= 7; step++) {
        struct mime_b64 d;
        unsigned char out[64], tmp[16];
        size_t o = 0, k;
        mime_b64_init(&d);
        for (size_t i = 0; i < strlen(text); i += step) {
            size_t len = strlen(text) - i < step ? strlen(text) - i : step;
            assert_int_equal(mime_b64_update(&d, text + i, len, tmp, &k, NULL), 0);
            memcpy(out + o, tmp, k);
            o += k;
        }
        assert_int_equal(mime_b64_final(&d, tmp, &k, NULL), 0);
        assert_int_equal(k, 0);
        assert_int_equal(o, strlen(want));
        assert_memory_equal(out, want, o);
    }
    /* an unpadded tail comes out of final */
    struct mime_b64 d;
    unsigned char out[8];
    size_t k;
    mime_b64_init(&d);
    assert_int_equal(mime_b64_update(&d, "QUJDQU", 6, out, &k, NULL), 0);
    assert_int_equal(k, 3);
    assert_int_equal(mime_b64_final(&d, out, &k, NULL), 0);
    assert_int_equal(k, 1);
    assert_int_equal(out[0], 'A');
}

static void qp_ok(const char *in, const char *want)
{
    unsigned char out[256];
    size_t n = 0;
    struct error err = {0};
    if (mime_qp_decode(in, strlen(in), out, &n, &err) != 0)
        fail_msg("qp decode failed: %s", err.msg);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
}

static void test_quoted_printable(void **state)
{
    (void)state;
    qp_ok("", "");
    qp_ok("plain", "plain");
    qp_ok("H=C3=A9llo", "H\xc3\xa9llo");
    qp_ok("lower =c3=a9", "lower \xc3\xa9");
    qp_ok("soft=\r\nbreak", "softbreak");
    qp_ok("soft=  \r\nbreak", "softbreak");
    qp_ok("lf soft=\nbreak\n", "lf softbreak\n");
    qp_ok("trailing   \r\nspace\t\r\n", "trailing\r\nspace\r\n");
    qp_ok("keep=20\r\n", "keep \r\n");
    qp_ok("ends with soft=", "ends with soft");
    qp_ok("a=3D=3Db", "a==b");

    unsigned char out[64];
    size_t n;
    struct error err = {0};
    assert_int_equal(mime_qp_decode("bad=G1", 6, out, &n, &err), -1);
    assert_non_null(strstr(err.msg, "line 1"));
    assert_int_equal(mime_qp_decode("x\r\nbad=4", 8, out, &n, &err), -1);
    assert_non_null(strstr(err.msg, "line 2"));
    assert_int_equal(mime_qp_decode("a= b", 4, out, &n, &err), -1);

    unsigned char *d;
    assert_int_equal(mime_decode_alloc(MIME_CTE_QP, "a=3Db", 5, &d, &n, &err), 0);
    assert_string_equal((char *)d, "a=b");
    free(d);
    assert_int_equal(mime_decode_alloc(MIME_CTE_BINARY, "x\0y", 3, &d, &n, &err), 0);
    assert_int_equal(n, 3);
    assert_memory_equal(d, "x\0y", 3);
    free(d);
    assert_int_equal(mime_decode_alloc(MIME_CTE_BASE64, "*", 1, &d, &n, &err), -1);
    assert_null(d);
}

static void test_canonicalize(void **state)
{
    (void)state;
    const char *in = "a\nb\r\nc\rd\r\r\ne\n\n";
    const char *want = "a\r\nb\r\nc\r\nd\r\n\r\ne\r\n\r\n";
    size_t len = strlen(in);
    /* one shot and split at every position (CR|LF across chunks) */
    for (size_t cut = 0; cut <= len; cut++) {
        struct mime_canon c;
        char out[64];
        size_t o;
        mime_canon_init(&c);
        o = mime_canon_update(&c, in, cut, out);
        o += mime_canon_update(&c, in + cut, len - cut, out + o);
        assert_int_equal(o, strlen(want));
        assert_memory_equal(out, want, o);
    }
}

/* ---- envelopes ---- */

static void test_signed_envelope(void **state)
{
    (void)state;
    char boundary[MIME_BOUNDARY_BUFSZ], other[MIME_BOUNDARY_BUFSZ], ct[256];
    struct error err = {0};
    assert_int_equal(mime_boundary_new(boundary, &err), 0);
    assert_int_equal(mime_boundary_new(other, &err), 0);
    assert_string_not_equal(boundary, other);
    assert_int_equal(mime_boundary_check(boundary, &err), 0);
    assert_int_equal(strlen(boundary), 44);

    assert_int_equal(mime_signed_content_type(ct, sizeof(ct), "sha-256", boundary, &err), 0);
    struct mime_content_type c;
    assert_int_equal(mime_content_type_parse(ct, &c, &err), 0);
    assert_true(mime_content_type_is(&c, "multipart", "signed"));
    assert_string_equal(mime_param_get(&c.params, "boundary"), boundary);
    assert_string_equal(mime_param_get(&c.params, "micalg"), "sha-256");
    assert_string_equal(mime_param_get(&c.params, "protocol"), "application/pkcs7-signature");
    mime_content_type_free(&c);
    assert_int_equal(mime_signed_content_type(ct, 20, "sha-256", boundary, &err), -1);
    assert_int_equal(mime_signed_content_type(ct, sizeof(ct), "sha 256", boundary, &err), -1);

    unsigned char sig[100];
    for (size_t i = 0; i < sizeof(sig); i++)
        sig[i] = (unsigned char)(255 - i);
    struct mime_buf b;
    mime_buf_init(&b);
    assert_int_equal(mime_build_signed(&b, boundary, SIGNED_PART, strlen(SIGNED_PART),
                                       sig, sizeof(sig), &err), 0);
    struct mime_part_range parts[4];
    size_t n;
    assert_int_equal(mime_multipart_split(b.data, b.len, boundary, parts, 4, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(parts[0].len, strlen(SIGNED_PART));
    assert_memory_equal(b.data + parts[0].off, SIGNED_PART, parts[0].len);

    struct mime_headers hs;
    size_t off;
    mime_headers_init(&hs);
    assert_int_equal(mime_headers_parse(&hs, b.data + parts[1].off, parts[1].len, &off, &err), 0);
    assert_string_equal(mime_header_get(&hs, "Content-Transfer-Encoding"), "base64");
    unsigned char *d;
    size_t dn;
    assert_int_equal(mime_decode_alloc(MIME_CTE_BASE64, b.data + parts[1].off + off,
                                       parts[1].len - off, &d, &dn, &err), 0);
    assert_int_equal(dn, sizeof(sig));
    assert_memory_equal(d, sig, dn);
    free(d);
    mime_headers_free(&hs);
    mime_buf_free(&b);

    /* generic multipart: parts come back byte for byte */
    struct mime_entity ents[3] = {{"A: 1\r\n\r\none", 11}, {"\r\ntwo\r\n", 7}, {"", 0}};
    mime_buf_init(&b);
    assert_int_equal(mime_build_multipart(&b, "xyz", ents, 3, &err), 0);
    assert_int_equal(mime_multipart_split(b.data, b.len, "xyz", parts, 4, &n, &err), 0);
    assert_int_equal(n, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(parts[i].len, ents[i].len);
        assert_memory_equal(b.data + parts[i].off, ents[i].data, ents[i].len);
    }
    assert_int_equal(mime_build_multipart(&b, "x\"y", ents, 1, &err), -1);
    assert_int_equal(mime_build_multipart(&b, "xyz", ents, 0, &err), -1);
    mime_buf_free(&b);

    assert_int_equal(mime_report_content_type(ct, sizeof(ct), "B1", &err), 0);
    assert_string_equal(ct, "multipart/report; report-type=disposition-notification; "
                            "boundary=\"B1\"");
}

/* ---- AS2 headers ---- */

static void test_as2_id(void **state)
{
    (void)state;
    static const char *const ids[] = {
        "mycompanyAS2", "My Company", "a\"b", "back\\slash", " lead", "x",
        "OpenAS2A_OID", "!#$%&'*+-/=?^_`{|}~()<>,.:;@[]",
    };
    char f[AS2_ID_FMT_MAX], back[AS2_ID_MAX + 1];
    struct error err = {0};
    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        assert_int_equal(as2_id_format(ids[i], f, &err), 0);
        assert_int_equal(f[0] == '"', as2_id_needs_quotes(ids[i]));
        assert_int_equal(as2_id_parse(f, back, &err), 0);
        assert_string_equal(back, ids[i]);
    }
    assert_int_equal(as2_id_format("My Company", f, &err), 0);
    assert_string_equal(f, "\"My Company\"");
    assert_int_equal(as2_id_format("a\"b", f, &err), 0);
    assert_string_equal(f, "\"a\\\"b\"");

    /* the longest name, quoted and escaped all the way */
    char longid[AS2_ID_MAX + 1];
    memset(longid, '"', AS2_ID_MAX);
    longid[AS2_ID_MAX] = '\0';
    assert_int_equal(as2_id_format(longid, f, &err), 0);
    assert_int_equal(strlen(f), 2 * AS2_ID_MAX + 2);
    assert_int_equal(as2_id_parse(f, back, &err), 0);
    assert_string_equal(back, longid);

    assert_int_equal(as2_id_parse("  plain  ", back, &err), 0);
    assert_string_equal(back, "plain");
    assert_int_equal(as2_id_parse("", back, &err), -1);
    assert_int_equal(as2_id_parse("\"\"", back, &err), -1);
    assert_int_equal(as2_id_parse("\"open", back, &err), -1);
    assert_int_equal(as2_id_parse("\"a\" b", back, &err), -1);
    assert_int_equal(as2_id_parse("ctl\x01", back, &err), -1);
    assert_int_equal(as2_id_parse("\"ctl\x7f\"", back, &err), -1);
    assert_int_equal(as2_id_parse("caf\xc3\xa9", back, &err), -1);
    char toolong[AS2_ID_MAX + 2];
    memset(toolong, 'a', AS2_ID_MAX + 1);
    toolong[AS2_ID_MAX + 1] = '\0';
    assert_int_equal(as2_id_parse(toolong, back, &err), -1);
    assert_int_equal(as2_id_format(toolong, f, &err), -1);
    toolong[AS2_ID_MAX] = '\0';
    assert_int_equal(as2_id_parse(toolong, back, &err), 0);
}

static void test_as2_message_id_version(void **state)
{
    (void)state;
    char id[AS2_MSGID_MAX + 1], back[AS2_MSGID_MAX + 1];
    struct error err = {0};
    assert_int_equal(as2_message_id_new(id, sizeof(id), "as2.example.com", &err), 0);
    assert_int_equal(id[0], '<');
    assert_int_equal(strlen(id), 1 + 32 + 1 + strlen("as2.example.com") + 1);
    assert_int_equal(as2_message_id_parse(id, back, sizeof(back), &err), 0);
    assert_string_equal(back, id);
    assert_int_equal(as2_message_id_new(id, sizeof(id), "My Host/1", &err), 0);
    assert_non_null(strstr(id, "@My-Host-1>"));
    assert_int_equal(as2_message_id_new(id, sizeof(id), NULL, &err), 0);
    assert_non_null(strstr(id, "@wharf>"));
    assert_int_equal(as2_message_id_new(id, 50, "h", &err), -1);

    assert_int_equal(as2_message_id_parse(
        " <mendelson_opensource_AS2-1700000000000-1@mendelsontestAS2_mycompanyAS2> ",
        back, sizeof(back), &err), 0);
    assert_int_equal(back[0], '<');
    assert_int_equal(as2_message_id_parse("no-brackets@x", back, sizeof(back), &err), -1);
    assert_int_equal(as2_message_id_parse("<noat>", back, sizeof(back), &err), -1);
    assert_int_equal(as2_message_id_parse("<@x>", back, sizeof(back), &err), -1);
    assert_int_equal(as2_message_id_parse("<x@>", back, sizeof(back), &err), -1);
    assert_int_equal(as2_message_id_parse("<a b@c>", back, sizeof(back), &err), -1);
    assert_int_equal(as2_message_id_parse("<a<b@c>", back, sizeof(back), &err), -1);
    char big[1100];
    big[0] = '<';
    memset(big + 1, 'a', 1000);
    memcpy(big + 1001, "@b>", 4);
    assert_int_equal(as2_message_id_parse(big, back, sizeof(back), &err), -1);
    assert_non_null(strstr(err.msg, "998"));

    int ma, mi;
    assert_int_equal(as2_version_parse("1.2", &ma, &mi, &err), 0);
    assert_int_equal(ma, 1);
    assert_int_equal(mi, 2);
    assert_int_equal(as2_version_parse(" 1.0 ", &ma, &mi, &err), 0);
    assert_int_equal(as2_version_parse("1", &ma, &mi, &err), -1);
    assert_int_equal(as2_version_parse("1.x", &ma, &mi, &err), -1);
    assert_int_equal(as2_version_parse("1.", &ma, &mi, &err), -1);
    assert_int_equal(as2_version_parse("1234.0", &ma, &mi, &err), -1);
}

static void test_as2_dno(void **state)
{
    (void)state;
    struct as2_dno d;
    struct error err = {0};
    assert_int_equal(as2_dno_parse(
        "signed-receipt-protocol=optional, pkcs7-signature; "
        "signed-receipt-micalg=optional, sha-256, sha1", &d, &err), 0);
    assert_int_equal(d.protocol_importance, AS2_IMPORTANCE_OPTIONAL);
    assert_true(d.protocol_pkcs7);
    assert_true(as2_dno_wants_signed(&d));
    assert_int_equal(d.micalg_importance, AS2_IMPORTANCE_OPTIONAL);
    assert_int_equal(d.n_micalgs, 2);
    assert_int_equal(d.micalgs[0], AS2_MICALG_SHA256);
    assert_int_equal(d.micalgs[1], AS2_MICALG_SHA1);

    /* spellings: sha256 == sha-256, case-insensitive, md5 known, foo unknown */
    assert_int_equal(as2_dno_parse(
        "Signed-Receipt-Protocol=Required,PKCS7-Signature;"
        "signed-receipt-micalg = required , SHA256 , md5, foo, sha-512, sha384, Sha-1;"
        "x-unknown=whatever", &d, &err), 0);
    assert_int_equal(d.protocol_importance, AS2_IMPORTANCE_REQUIRED);
    assert_int_equal(d.n_micalgs, 5);
    assert_int_equal(d.micalgs[0], AS2_MICALG_SHA256);
    assert_int_equal(d.micalgs[1], AS2_MICALG_MD5);
    assert_int_equal(d.micalgs[2], AS2_MICALG_SHA512);
    assert_int_equal(d.micalgs[3], AS2_MICALG_SHA384);
    assert_int_equal(d.micalgs[4], AS2_MICALG_SHA1);
    assert_int_equal(d.n_unknown_micalgs, 1);

    enum as2_micalg a;
    assert_int_equal(as2_dno_pick_micalg(&d, false, &a, &err), 0);
    assert_int_equal(a, AS2_MICALG_SHA256);
    assert_int_equal(as2_dno_parse("signed-receipt-micalg=required, md5, sha1", &d, &err), 0);
    assert_false(as2_dno_wants_signed(&d));
    assert_int_equal(as2_dno_pick_micalg(&d, true, &a, &err), 0);
    assert_int_equal(a, AS2_MICALG_SHA1);
    assert_int_equal(as2_dno_pick_micalg(&d, false, &a, &err), -1);
    assert_non_null(strstr(err.msg, "MIC algorithm"));
    assert_int_equal(as2_dno_parse("signed-receipt-micalg=optional, md5", &d, &err), 0);
    assert_int_equal(as2_dno_pick_micalg(&d, false, &a, &err), 0);
    assert_int_equal(a, AS2_MICALG_SHA256);
    assert_int_equal(as2_dno_parse("", &d, &err), 0);
    assert_int_equal(as2_dno_pick_micalg(&d, false, &a, &err), 0);
    assert_int_equal(a, AS2_MICALG_SHA256);

    assert_int_equal(as2_dno_parse("signed-receipt-micalg=maybe, sha1", &d, &err), -1);
    assert_int_equal(as2_dno_parse("signed-receipt-micalg=optional", &d, &err), -1);
    assert_int_equal(as2_dno_parse("signed-receipt-micalg", &d, &err), -1);
    assert_int_equal(as2_dno_parse("signed-receipt-micalg=optional, sha1; "
                                   "signed-receipt-micalg=optional, sha-256", &d, &err), -1);
    assert_non_null(strstr(err.msg, "repeats"));

    /* names and the per-partner spelling */
    assert_int_equal(as2_micalg_from_name("SHA-384", 7), AS2_MICALG_SHA384);
    assert_int_equal(as2_micalg_from_name("sha-2566", 8), AS2_MICALG_UNKNOWN);
    assert_int_equal(as2_micalg_from_name("sha-2566", 7), AS2_MICALG_SHA256);
    assert_string_equal(as2_micalg_name(AS2_MICALG_SHA256, false), "sha-256");
    assert_string_equal(as2_micalg_name(AS2_MICALG_SHA256, true), "sha256");
    assert_string_equal(as2_micalg_name(AS2_MICALG_SHA1, false), "sha-1");
    assert_null(as2_micalg_name(AS2_MICALG_UNKNOWN, false));
    assert_false(as2_micalg_acceptable(AS2_MICALG_MD5, true));
    assert_false(as2_micalg_acceptable(AS2_MICALG_SHA1, false));

    char buf[200];
    enum as2_micalg algs[] = {AS2_MICALG_SHA256, AS2_MICALG_SHA1};
    assert_int_equal(as2_dno_format(buf, sizeof(buf), algs, 2, false, &err), 0);
    assert_string_equal(buf, "signed-receipt-protocol=optional, pkcs7-signature; "
                             "signed-receipt-micalg=optional, sha-256, sha-1");
    assert_int_equal(as2_dno_format(buf, sizeof(buf), algs, 1, true, &err), 0);
    assert_string_equal(buf, "signed-receipt-protocol=optional, pkcs7-signature; "
                             "signed-receipt-micalg=optional, sha256");
    assert_int_equal(as2_dno_parse(buf, &d, &err), 0);
    assert_int_equal(d.micalgs[0], AS2_MICALG_SHA256);
    assert_int_equal(as2_dno_format(buf, 40, algs, 1, false, &err), -1);
    assert_int_equal(as2_dno_format(buf, sizeof(buf), algs, 0, false, &err), -1);
}

static void test_as2_receipt_url_and_request(void **state)
{
    (void)state;
    char url[AS2_URL_MAX + 1];
    struct error err = {0};
    assert_int_equal(as2_receipt_url_parse(" https://as2.example.com:4443/mdn?x=1 ",
                                           url, sizeof(url), &err), 0);
    assert_string_equal(url, "https://as2.example.com:4443/mdn?x=1");
    assert_int_equal(as2_receipt_url_parse("HTTP://h", url, sizeof(url), &err), 0);
    assert_int_equal(as2_receipt_url_parse("mailto:edi@example.com", url, sizeof(url), &err), -1);
    assert_int_equal(as2_receipt_url_parse("/relative/path", url, sizeof(url), &err), -1);
    assert_int_equal(as2_receipt_url_parse("http://", url, sizeof(url), &err), -1);
    assert_int_equal(as2_receipt_url_parse("http:///x", url, sizeof(url), &err), -1);
    assert_int_equal(as2_receipt_url_parse("http://a b/", url, sizeof(url), &err), -1);
    assert_int_equal(as2_receipt_url_parse("http://user@h/", url, sizeof(url), &err), -1);
    assert_int_equal(as2_receipt_url_parse("ftp://h/", url, sizeof(url), &err), -1);

    struct mime_headers hs;
    struct as2_request r;
    parse_block(&hs,
        "AS2-Version: 1.2\r\n"
        "AS2-From: \"My Company\"\r\n"
        "AS2-To: mycompanyAS2\r\n"
        "Message-ID: <abc123@host>\r\n"
        "Disposition-Notification-To: edi@example.com\r\n"
        "Receipt-Delivery-Option: https://partner.example.com/as2/mdn\r\n"
        "Disposition-Notification-Options: signed-receipt-protocol=optional,\r\n"
        " pkcs7-signature; signed-receipt-micalg=optional, sha256\r\n\r\n");
    assert_int_equal(as2_request_read(&hs, &r, &err), 0);
    assert_string_equal(r.from, "My Company");
    assert_string_equal(r.to, "mycompanyAS2");
    assert_string_equal(r.message_id, "<abc123@host>");
    assert_int_equal(r.version_major, 1);
    assert_int_equal(r.version_minor, 2);
    assert_true(r.mdn_requested);
    assert_true(r.mdn_async);
    assert_string_equal(r.receipt_url, "https://partner.example.com/as2/mdn");
    assert_true(r.has_dno);
    assert_int_equal(r.dno.micalgs[0], AS2_MICALG_SHA256);
    mime_headers_free(&hs);

    /* sync MDN, no version header */
    parse_block(&hs, "AS2-From: a\r\nAS2-To: b\r\nMessage-ID: <1@2>\r\n"
                     "Disposition-Notification-To: x\r\n\r\n");
    assert_int_equal(as2_request_read(&hs, &r, &err), 0);
    assert_true(r.mdn_requested);
    assert_false(r.mdn_async);
    assert_false(r.has_dno);
    assert_int_equal(r.version_major, 1);
    assert_int_equal(r.version_minor, 0);
    mime_headers_free(&hs);

    parse_block(&hs, "AS2-To: b\r\nMessage-ID: <1@2>\r\n\r\n");
    assert_int_equal(as2_request_read(&hs, &r, &err), -1);
    assert_non_null(strstr(err.msg, "AS2-From"));
    mime_headers_free(&hs);
    parse_block(&hs, "AS2-From: a\r\nAS2-To: b\r\nAS2-To: c\r\nMessage-ID: <1@2>\r\n\r\n");
    assert_int_equal(as2_request_read(&hs, &r, &err), -1);
    assert_non_null(strstr(err.msg, "more than once"));
    assert_string_equal(r.from, "a");       /* kept for an error MDN */
    mime_headers_free(&hs);
    parse_block(&hs, "AS2-From: a\r\nAS2-To: b\r\nMessage-ID: <1@2>\r\n"
                     "Receipt-Delivery-Option: mailto:x@y\r\n\r\n");
    assert_int_equal(as2_request_read(&hs, &r, &err), -1);
    mime_headers_free(&hs);
    /* DEL in a name is stopped by the header parser already */
    assert_true(parse_fails("AS2-From: a\x7f\r\nAS2-To: b\r\n\r\n", "0x7f"));
    parse_block(&hs, "AS2-From: caf\xc3\xa9\r\nAS2-To: b\r\nMessage-ID: <1@2>\r\n\r\n");
    assert_int_equal(as2_request_read(&hs, &r, &err), -1);
    assert_non_null(strstr(err.msg, "AS2-From"));
    mime_headers_free(&hs);
}

/* ---- MDN ---- */

static void fill_mdn(struct mdn *m)
{
    memset(m, 0, sizeof(*m));
    snprintf(m->reporting_ua, sizeof(m->reporting_ua), "Wharf 1.0 (AS2 gateway)");
    snprintf(m->original_recipient, sizeof(m->original_recipient), "My Company");
    snprintf(m->final_recipient, sizeof(m->final_recipient), "My Company");
    snprintf(m->original_message_id, sizeof(m->original_message_id),
             "<0190f0e1a2b3c4d5e6f7a8b9c0d1e2f3@partner.example.com>");
    m->type = MDN_TYPE_PROCESSED;
}

/* Build entity -> parse entity; returns the parsed MDN in *out. */
static void build_parse(const struct mdn *m, bool no_hyphen, struct mdn *out,
                        struct mime_buf *keep)
{
    char boundary[MIME_BOUNDARY_BUFSZ];
    struct mime_buf b;
    struct error err = {0};
    assert_int_equal(mime_boundary_new(boundary, &err), 0);
    mime_buf_init(&b);
    if (mdn_build_entity(&b, boundary, m, NULL, no_hyphen, &err) != 0)
        fail_msg("build failed: %s", err.msg);
    if (mdn_parse_entity(b.data, b.len, out, &err) != 0)
        fail_msg("parse failed: %s\n%s", err.msg, b.data);
    if (keep)
        *keep = b;
    else
        mime_buf_free(&b);
}

static void test_mdn_round_trip_processed(void **state)
{
    (void)state;
    struct mdn m, p;
    struct mime_buf raw;
    fill_mdn(&m);
    m.has_mic = true;
    snprintf(m.mic, sizeof(m.mic), "7v7F++Fq4Z1NQnwXDG8y5GZ4xY3mOjpUtNgcJx0m9Zo=");
    m.mic_alg = AS2_MICALG_SHA256;
    build_parse(&m, false, &p, &raw);
    assert_non_null(strstr(raw.data, "Received-Content-MIC: "
                                     "7v7F++Fq4Z1NQnwXDG8y5GZ4xY3mOjpUtNgcJx0m9Zo=, sha-256\r\n"));
    assert_non_null(strstr(raw.data, "Final-Recipient: rfc822; \"My Company\"\r\n"));
    assert_non_null(strstr(raw.data, "Disposition: automatic-action/"
                                     "MDN-sent-automatically; processed\r\n"));
    assert_non_null(strstr(raw.data, "report-type=disposition-notification"));
    mime_buf_free(&raw);
    assert_string_equal(p.reporting_ua, m.reporting_ua);
    assert_string_equal(p.original_recipient, "My Company");
    assert_string_equal(p.final_recipient, "My Company");
    assert_string_equal(p.original_message_id, m.original_message_id);
    assert_false(p.manual_action);
    assert_false(p.sent_manually);
    assert_int_equal(p.type, MDN_TYPE_PROCESSED);
    assert_int_equal(p.modifier, MDN_MOD_NONE);
    assert_true(mdn_is_success(&p));
    assert_true(p.has_mic);
    assert_string_equal(p.mic, m.mic);
    assert_int_equal(p.mic_alg, AS2_MICALG_SHA256);
    assert_string_equal(p.mic_alg_name, "sha-256");

    /* the partner that wants "sha256" gets it */
    build_parse(&m, true, &p, NULL);
    assert_string_equal(p.mic_alg_name, "sha256");
    assert_int_equal(p.mic_alg, AS2_MICALG_SHA256);

    /* a custom text (LF line ends) is canonicalized */
    char boundary[] = "----=_Wharf_test";
    struct mime_buf b;
    struct error err = {0};
    mime_buf_init(&b);
    assert_int_equal(mdn_build_report(&b, boundary, &m, "line one\nline two\n", false, &err), 0);
    assert_non_null(strstr(b.data, "line one\r\nline two\r\n"));
    char ct[200];
    assert_int_equal(mime_report_content_type(ct, sizeof(ct), boundary, &err), 0);
    assert_int_equal(mdn_parse(ct, b.data, b.len, &p, &err), 0);
    assert_int_equal(p.type, MDN_TYPE_PROCESSED);
    mime_buf_free(&b);

    /* text holding the boundary, missing fields: refused */
    mime_buf_init(&b);
    assert_int_equal(mdn_build_report(&b, boundary, &m, "--" "----=_Wharf_test", false, &err), -1);
    m.final_recipient[0] = '\0';
    assert_int_equal(mdn_build_report(&b, boundary, &m, NULL, false, &err), -1);
    fill_mdn(&m);
    m.type = MDN_TYPE_OTHER;
    assert_int_equal(mdn_build_report(&b, boundary, &m, NULL, false, &err), -1);
    mime_buf_free(&b);
}

static void test_mdn_round_trip_errors(void **state)
{
    (void)state;
    struct mdn m, p;
    for (int e = MDN_ERROR_AUTHENTICATION_FAILED; e < MDN_ERROR_OTHER; e++) {
        fill_mdn(&m);
        m.modifier = MDN_MOD_ERROR;
        m.error = (enum mdn_error)e;
        struct mime_buf raw;
        build_parse(&m, false, &p, &raw);
        char want[128];
        snprintf(want, sizeof(want), "processed/error: %s\r\n", mdn_error_name(m.error));
        assert_non_null(strstr(raw.data, want));
        mime_buf_free(&raw);
        assert_int_equal(p.type, MDN_TYPE_PROCESSED);
        assert_int_equal(p.modifier, MDN_MOD_ERROR);
        assert_int_equal(p.error, e);
        assert_string_equal(p.description, mdn_error_name(m.error));
        assert_false(mdn_is_success(&p));
        assert_false(p.has_mic);
        assert_int_equal(mdn_error_from_name(mdn_error_name(m.error)), e);
    }

    /* an error text we do not know */
    fill_mdn(&m);
    m.modifier = MDN_MOD_ERROR;
    snprintf(m.description, sizeof(m.description), "unknown-trading-partner");
    build_parse(&m, false, &p, NULL);
    assert_int_equal(p.error, MDN_ERROR_OTHER);
    assert_string_equal(p.description, "unknown-trading-partner");

    /* warning: still a success */
    fill_mdn(&m);
    m.modifier = MDN_MOD_WARNING;
    snprintf(m.description, sizeof(m.description), "duplicate-document");
    build_parse(&m, false, &p, NULL);
    assert_int_equal(p.modifier, MDN_MOD_WARNING);
    assert_string_equal(p.description, "duplicate-document");
    assert_true(mdn_is_success(&p));

    /* failures */
    static const char *const fails[] = {MDN_FAILURE_UNSUPPORTED_FORMAT,
                                        MDN_FAILURE_UNSUPPORTED_MICALG,
                                        "sender-equals-receiver"};
    for (size_t i = 0; i < 3; i++) {
        fill_mdn(&m);
        m.type = MDN_TYPE_FAILED;
        m.modifier = MDN_MOD_FAILURE;
        snprintf(m.description, sizeof(m.description), "%s", fails[i]);
        build_parse(&m, false, &p, NULL);
        assert_int_equal(p.type, MDN_TYPE_FAILED);
        assert_int_equal(p.modifier, MDN_MOD_FAILURE);
        assert_string_equal(p.description, fails[i]);
        assert_false(mdn_is_success(&p));
    }

    /* a long description folds and comes back intact */
    fill_mdn(&m);
    m.modifier = MDN_MOD_WARNING;
    snprintf(m.description, sizeof(m.description),
             "the content was received but one of the attachments had a name that "
             "was not valid and it was renamed before delivery to the back office");
    m.manual_action = true;
    m.sent_manually = true;
    build_parse(&m, false, &p, NULL);
    assert_string_equal(p.description, m.description);
    assert_true(p.manual_action);
    assert_true(p.sent_manually);
}

/* Shaped like what Mendelson AS2 sends back (synchronous, unsigned part). */
static const char mendelson_mdn[] =
    "Content-Type: multipart/report; report-type=disposition-notification;\r\n"
    "\tboundary=\"----=_Part_1_1364419387.1700000000123\"\r\n"
    "\r\n"
    "------=_Part_1_1364419387.1700000000123\r\n"
    "Content-Type: text/plain; charset=us-ascii\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
    "The AS2 message has been received. Thank you for exchanging AS2 messages with mendelson opensource AS2.\r\n"
    "Please download your free copy of mendelson opensource AS2 today at http://opensource.mendelson-e-c.com\r\n"
    "------=_Part_1_1364419387.1700000000123\r\n"
    "Content-Type: message/disposition-notification\r\n"
    "Content-Transfer-Encoding: 7bit\r\n"
    "\r\n"
    "Reporting-UA: mendelson opensource AS2 1.1 build 58 - www.mendelson-e-c.com\r\n"
    "Original-Recipient: rfc822; mycompanyAS2\r\n"
    "Final-Recipient: rfc822; mycompanyAS2\r\n"
    "Original-Message-ID: <mendelson_opensource_AS2-1700000000000-8@mendelsontestAS2_mycompanyAS2>\r\n"
    "Disposition: automatic-action/MDN-sent-automatically; processed\r\n"
    "Received-Content-MIC: k1N6H1fD2n4NpQ2Z0m3A9bY8xX7wV6uT5sR4qP3oO2c=, sha256\r\n"
    "\r\n"
    "------=_Part_1_1364419387.1700000000123--\r\n";

/* Shaped like OpenAS2's error MDN: LF-only text, unusual capitalization,
 * folded Disposition, an extension field, preamble. */
static const char openas2_mdn_body[] =
    "This is a MIME preamble.\n"
    "------=_Part_3_1993.1700\n"
    "Content-Type: text/plain\n"
    "Content-Transfer-Encoding: 7bit\n"
    "\n"
    "The message sent to Recipient OpenAS2B on 01/01/2024 could not be decrypted.\n"
    "------=_Part_3_1993.1700\n"
    "Content-Type: message/disposition-notification\n"
    "Content-Transfer-Encoding: 7bit\n"
    "\n"
    "Reporting-UA: OpenAS2 Server\n"
    "Original-Recipient: rfc822; OpenAS2B\n"
    "Final-Recipient: rfc822; OpenAS2B\n"
    "Original-Message-ID: <OPENAS2-01012024120000+0000-1234@OpenAS2A_OpenAS2B>\n"
    "X-Vendor-Extension: ignored\n"
    "Disposition: Automatic-Action/MDN-Sent-Automatically;\n"
    "  processed/Error: decryption-failed\n"
    "\n"
    "------=_Part_3_1993.1700--\n";

static void test_mdn_real_world(void **state)
{
    (void)state;
    struct mdn p;
    struct error err = {0};
    assert_int_equal(mdn_parse_entity(mendelson_mdn, sizeof(mendelson_mdn) - 1, &p, &err), 0);
    assert_string_equal(p.reporting_ua,
                        "mendelson opensource AS2 1.1 build 58 - www.mendelson-e-c.com");
    assert_string_equal(p.final_recipient, "mycompanyAS2");
    assert_string_equal(p.original_recipient, "mycompanyAS2");
    assert_string_equal(p.original_message_id,
        "<mendelson_opensource_AS2-1700000000000-8@mendelsontestAS2_mycompanyAS2>");
    assert_int_equal(p.type, MDN_TYPE_PROCESSED);
    assert_int_equal(p.modifier, MDN_MOD_NONE);
    assert_true(p.has_mic);
    assert_string_equal(p.mic, "k1N6H1fD2n4NpQ2Z0m3A9bY8xX7wV6uT5sR4qP3oO2c=");
    assert_int_equal(p.mic_alg, AS2_MICALG_SHA256);
    assert_string_equal(p.mic_alg_name, "sha256");

    assert_int_equal(mdn_parse("multipart/report; Report-Type=disposition-notification; "
                               "boundary=\"----=_Part_3_1993.1700\"",
                               openas2_mdn_body, sizeof(openas2_mdn_body) - 1, &p, &err), 0);
    assert_string_equal(p.reporting_ua, "OpenAS2 Server");
    assert_string_equal(p.final_recipient, "OpenAS2B");
    assert_int_equal(p.type, MDN_TYPE_PROCESSED);
    assert_int_equal(p.modifier, MDN_MOD_ERROR);
    assert_int_equal(p.error, MDN_ERROR_DECRYPTION_FAILED);
    assert_false(p.has_mic);

    /* a bare notification, base64-encoded notification part */
    const char *bare = "Final-Recipient: rfc822; X\r\nDisposition: automatic-action/"
                       "MDN-sent-automatically; failed/Failure: unsupported MIC-algorithms\r\n";
    assert_int_equal(mdn_parse("message/disposition-notification", bare, strlen(bare), &p, &err), 0);
    assert_int_equal(p.type, MDN_TYPE_FAILED);
    assert_int_equal(p.modifier, MDN_MOD_FAILURE);
    assert_string_equal(p.description, MDN_FAILURE_UNSUPPORTED_MICALG);
    assert_string_equal(p.original_message_id, "");

    const char *b64 =
        "--q\r\nContent-Type: message/disposition-notification\r\n"
        "Content-Transfer-Encoding: base64\r\n\r\n"
        "RmluYWwtUmVjaXBpZW50OiByZmM4MjI7IEINCkRpc3Bvc2l0aW9uOiBhdXRvbWF0aWMtYWN0aW9u\r\n"
        "L01ETi1zZW50LWF1dG9tYXRpY2FsbHk7IHByb2Nlc3NlZA0K\r\n--q--\r\n";
    assert_int_equal(mdn_parse("multipart/report; boundary=q", b64, strlen(b64), &p, &err), 0);
    assert_string_equal(p.final_recipient, "B");
    assert_int_equal(p.type, MDN_TYPE_PROCESSED);
}

static void mdn_bad(const char *fields, const char *needle)
{
    struct mdn p;
    struct error err = {0};
    char body[2048];
    snprintf(body, sizeof(body),
             "--b\r\nContent-Type: text/plain\r\n\r\ntext\r\n"
             "--b\r\nContent-Type: message/disposition-notification\r\n\r\n%s\r\n--b--\r\n",
             fields);
    assert_int_equal(mdn_parse("multipart/report; boundary=b", body, strlen(body), &p, &err), -1);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("error '%s' lacks '%s'", err.msg, needle);
}

static void test_mdn_parse_errors(void **state)
{
    (void)state;
    const char *disp = "Disposition: automatic-action/MDN-sent-automatically; processed\r\n";
    char f[512];
    snprintf(f, sizeof(f), "%s%s", disp, disp);
    mdn_bad(f, "Disposition appears more than once");
    snprintf(f, sizeof(f), "%sReceived-Content-MIC: AAAA, sha1\r\nReceived-Content-MIC: BBBB, sha1", disp);
    mdn_bad(f, "Received-Content-MIC appears more than once");
    snprintf(f, sizeof(f), "%sOriginal-Message-ID: <a@b>\r\nOriginal-Message-ID: <c@d>", disp);
    mdn_bad(f, "Original-Message-ID appears more than once");
    mdn_bad("Final-Recipient: rfc822; X", "no Disposition");
    mdn_bad("Disposition: processed", "no disposition type");
    mdn_bad("Disposition: automatic-action; processed", "action/sending mode");
    mdn_bad("Disposition: robot-action/MDN-sent-automatically; processed", "unknown action mode");
    mdn_bad("Disposition: automatic-action/MDN-sent-automatically; eaten", "unknown disposition type");
    snprintf(f, sizeof(f), "%sReceived-Content-MIC: AAAA", disp);
    mdn_bad(f, "no algorithm");
    snprintf(f, sizeof(f), "%sReceived-Content-MIC: AA*A, sha1", disp);
    mdn_bad(f, "not a base64 digest");
    snprintf(f, sizeof(f), "%sFinal-Recipient: rfc822; ", disp);
    mdn_bad(f, "Final-Recipient");

    struct mdn p;
    struct error err = {0};
    const char *two =
        "--b\r\nContent-Type: message/disposition-notification\r\n\r\n"
        "Disposition: automatic-action/MDN-sent-automatically; processed\r\n"
        "--b\r\nContent-Type: message/disposition-notification\r\n\r\n"
        "Disposition: automatic-action/MDN-sent-automatically; failed\r\n--b--\r\n";
    assert_int_equal(mdn_parse("multipart/report; boundary=b", two, strlen(two), &p, &err), -1);
    assert_non_null(strstr(err.msg, "more than one"));
    const char *none = "--b\r\nContent-Type: text/plain\r\n\r\nhi\r\n--b--\r\n";
    assert_int_equal(mdn_parse("multipart/report; boundary=b", none, strlen(none), &p, &err), -1);
    assert_non_null(strstr(err.msg, "no disposition-notification part"));
    assert_int_equal(mdn_parse("multipart/report; report-type=delivery-status; boundary=b",
                               none, strlen(none), &p, &err), -1);
    assert_int_equal(mdn_parse("multipart/report", none, strlen(none), &p, &err), -1);
    assert_int_equal(mdn_parse("text/plain", none, strlen(none), &p, &err), -1);
    assert_int_equal(mdn_parse(NULL, none, strlen(none), &p, &err), -1);
    assert_int_equal(mdn_parse_entity("X: y\r\n\r\nbody", 13, &p, &err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_headers_parse),
        cmocka_unit_test(test_headers_errors),
        cmocka_unit_test(test_header_write_fold),
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_content_type),
        cmocka_unit_test(test_multipart_split),
        cmocka_unit_test(test_splitter_every_chunk_boundary),
        cmocka_unit_test(test_splitter_callback_stops),
        cmocka_unit_test(test_m4_splitter_passes_content_in_runs_not_lines),
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_quoted_printable),
        cmocka_unit_test(test_canonicalize),
        cmocka_unit_test(test_signed_envelope),
        cmocka_unit_test(test_as2_id),
        cmocka_unit_test(test_as2_message_id_version),
        cmocka_unit_test(test_as2_dno),
        cmocka_unit_test(test_as2_receipt_url_and_request),
        cmocka_unit_test(test_mdn_round_trip_processed),
        cmocka_unit_test(test_mdn_round_trip_errors),
        cmocka_unit_test(test_mdn_real_world),
        cmocka_unit_test(test_mdn_parse_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
