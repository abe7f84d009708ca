/*
 * fuzz_mdn.c - libFuzzer target for the MDN parser (src/as2/mdn.c): the
 * receipts partners send back, synchronously in an HTTP response or
 * asynchronously as a request, parsed before anything is trusted.
 *
 * The input is tried two ways: as a whole entity (header block, then the
 * multipart/report body) and as "Content-Type value" [CR] LF body. Besides the
 * sanitizers, it checks (abort() on violation):
 *   - a parsed MDN is sane: enums in range, a MIC is base64 with a named
 *     algorithm, an error code only with the error modifier;
 *   - when the parsed MDN can be built again (mdn_build_entity), parsing
 *     the built MDN succeeds and gives the same fields back.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "as2/mdn.h"

static void check_sane(const struct mdn *m)
{
    if (m->type > MDN_TYPE_OTHER || m->modifier > MDN_MOD_OTHER ||
        m->error > MDN_ERROR_OTHER || m->mic_alg > AS2_MICALG_SHA512)
        abort();
    if (m->error != MDN_ERROR_NONE && m->modifier != MDN_MOD_ERROR)
        abort();
    if (m->has_mic) {
        size_t n = strlen(m->mic);
        if (n == 0 || n > MDN_MIC_MAX || m->mic_alg_name[0] == '\0' ||
            strspn(m->mic, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                           "0123456789+/=") != n)
            abort();
    }
    if (strlen(m->description) >= MDN_TEXT_MAX ||
        strlen(m->original_message_id) > AS2_MSGID_MAX ||
        strlen(m->final_recipient) > AS2_ID_MAX)
        abort();
}

static void same(const struct mdn *a, const struct mdn *b)
{
    if (strcmp(a->reporting_ua, b->reporting_ua) ||
        strcmp(a->original_recipient, b->original_recipient) ||
        strcmp(a->final_recipient, b->final_recipient) ||
        strcmp(a->original_message_id, b->original_message_id) ||
        a->manual_action != b->manual_action || a->sent_manually != b->sent_manually ||
        a->type != b->type || a->modifier != b->modifier || a->error != b->error ||
        strcmp(a->description, b->description) || a->has_mic != b->has_mic)
        abort();
    if (a->has_mic && (strcmp(a->mic, b->mic) || a->mic_alg != b->mic_alg))
        abort();
    if (a->has_mic && a->mic_alg == AS2_MICALG_UNKNOWN &&
        strcmp(a->mic_alg_name, b->mic_alg_name))
        abort();
}

static void round_trip(const struct mdn *m)
{
    static const char boundary[] = "----=_Wharf_fuzz_0f1e2d3c4b5a";
    struct mime_buf b;
    struct mdn again;
    mime_buf_init(&b);
    if (mdn_build_entity(&b, boundary, m, NULL, false, NULL) == 0) {
        if (mdn_parse_entity(b.data, b.len, &again, NULL) != 0)
            abort();
        same(m, &again);
    }
    mime_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    struct mdn m;

    if (mdn_parse_entity(in, size, &m, NULL) == 0) {
        check_sane(&m);
        round_trip(&m);
    }

    const char *nl = memchr(in, '\n', size);
    if (nl != NULL) {
        size_t cl = (size_t)(nl - in);
        char *ct = malloc(cl + 1);
        if (ct == NULL)
            return 0;
        memcpy(ct, in, cl);
        ct[cl] = '\0';
        if (cl > 0 && ct[cl - 1] == '\r')     /* a CRLF first line */
            ct[cl - 1] = '\0';
        if (mdn_parse(ct, nl + 1, size - cl - 1, &m, NULL) == 0) {
            check_sane(&m);
            round_trip(&m);
        }
        free(ct);
    }
    return 0;
}
