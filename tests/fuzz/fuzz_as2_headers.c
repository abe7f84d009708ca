/*
 * fuzz_as2_headers.c - libFuzzer target for the AS2 header rules
 * (src/as2/as2_headers.c) over a received request's header block: AS2
 * names, Message-ID, AS2-Version, Disposition-Notification-Options and
 * Receipt-Delivery-Option. Each line of the input is also fed to every
 * single-value parser on its own.
 *
 * Besides the sanitizers, it checks (abort() on violation):
 *   - an accepted AS2 name is 1..128 printable ASCII characters, and
 *     formatting then parsing it gives it back;
 *   - an accepted Message-ID is <...@...> within 998 characters, no
 *     spaces or controls;
 *   - an accepted receipt URL starts with http:// or https://;
 *   - DNO results are in range, and an algorithm picked under a required
 *     list is acceptable (never MD5, SHA-1 only when allowed).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "as2/as2_headers.h"

static void check_id(const char *id)
{
    size_t n = strlen(id);
    char f[AS2_ID_FMT_MAX], back[AS2_ID_MAX + 1];
    if (n == 0 || n > AS2_ID_MAX)
        abort();
    for (size_t i = 0; i < n; i++)
        if (id[i] < 0x20 || id[i] > 0x7e)
            abort();
    if (as2_id_format(id, f, NULL) != 0 || as2_id_parse(f, back, NULL) != 0 ||
        strcmp(id, back) != 0)
        abort();
}

static void check_msgid(const char *id)
{
    size_t n = strlen(id);
    if (n < 5 || n > AS2_MSGID_MAX || id[0] != '<' || id[n - 1] != '>' ||
        strchr(id, '@') == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        if (id[i] <= 0x20 || id[i] > 0x7e)
            abort();
}

static void check_url(const char *u)
{
    if (strncasecmp(u, "http://", 7) != 0 && strncasecmp(u, "https://", 8) != 0)
        abort();
    if (strlen(u) > AS2_URL_MAX)
        abort();
}

static void check_dno(const struct as2_dno *d)
{
    enum as2_micalg a;
    if (d->n_micalgs > AS2_DNO_MAX_MICALGS ||
        d->protocol_importance > AS2_IMPORTANCE_REQUIRED ||
        d->micalg_importance > AS2_IMPORTANCE_REQUIRED)
        abort();
    for (size_t i = 0; i < d->n_micalgs; i++)
        if (d->micalgs[i] == AS2_MICALG_UNKNOWN || d->micalgs[i] > AS2_MICALG_SHA512)
            abort();
    for (int sha1 = 0; sha1 < 2; sha1++)
        if (as2_dno_pick_micalg(d, sha1, &a, NULL) == 0 &&
            !as2_micalg_acceptable(a, sha1))
            abort();
}

/* One line (NUL-terminated) through every value parser. */
static void each_parser(const char *v)
{
    char id[AS2_ID_MAX + 1], mid[AS2_MSGID_MAX + 1], url[AS2_URL_MAX + 1];
    int major, minor;
    struct as2_dno d;
    if (as2_id_parse(v, id, NULL) == 0)
        check_id(id);
    if (as2_message_id_parse(v, mid, sizeof(mid), NULL) == 0)
        check_msgid(mid);
    if (as2_receipt_url_parse(v, url, sizeof(url), NULL) == 0)
        check_url(url);
    if (as2_version_parse(v, &major, &minor, NULL) == 0 &&
        (major < 0 || major > 999 || minor < 0 || minor > 999))
        abort();
    if (as2_dno_parse(v, &d, NULL) == 0)
        check_dno(&d);
    /* A value that is a valid name is also formattable. */
    char f[AS2_ID_FMT_MAX];
    if (as2_id_check(v, NULL) == 0 && as2_id_format(v, f, NULL) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (s == NULL)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';

    struct mime_headers hs;
    struct as2_request r;
    mime_headers_init(&hs);
    if (mime_headers_parse(&hs, s, size, NULL, NULL) == 0 &&
        as2_request_read(&hs, &r, NULL) == 0) {
        check_id(r.from);
        check_id(r.to);
        check_msgid(r.message_id);
        if (r.mdn_async && (!r.mdn_requested || r.receipt_url[0] == '\0'))
            abort();
        if (r.receipt_url[0])
            check_url(r.receipt_url);
        if (r.has_dno)
            check_dno(&r.dno);
    }
    mime_headers_free(&hs);

    for (char *line = s, *next; line != NULL; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        each_parser(line);
    }
    free(s);
    return 0;
}
