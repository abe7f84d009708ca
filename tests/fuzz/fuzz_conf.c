/*
 * fuzz_conf.c - libFuzzer target for wharf.conf (conf_parse): `key = value`
 * lines read at every start of `wharf serve`.
 *
 * Oracles beyond the sanitizers: a rejected file comes with an error
 * message; an accepted one yields settings inside their documented ranges
 * and NUL-terminated strings. Must never write anything.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/wharf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct wharf_conf c;
    struct error err = {0};
    if (conf_parse((const char *)data, size, &c, &err) < 0) {
        if (err.msg[0] == '\0' || strnlen(err.msg, sizeof(err.msg)) ==
                                      sizeof(err.msg))
            abort();
        return 0;
    }
    if ((int)c.log_level < LOG_ERROR || (int)c.log_level > LOG_TRACE ||
        c.workers < 1 || c.workers > 64 || c.batch < 1 || c.batch > 4096 ||
        c.lease_ms < 1000 || c.lease_ms > 86400000LL ||
        c.poll_ms < 10 || c.poll_ms > 3600000 ||
        c.log_max_bytes < 4096 || c.log_keep < 1 || c.log_keep > 100 ||
        strnlen(c.admin_listen, sizeof(c.admin_listen)) ==
            sizeof(c.admin_listen) ||
        strnlen(c.partner_listen, sizeof(c.partner_listen)) ==
            sizeof(c.partner_listen) ||
        strnlen(c.proxy, sizeof(c.proxy)) == sizeof(c.proxy) ||
        strnlen(c.no_proxy, sizeof(c.no_proxy)) == sizeof(c.no_proxy) ||
        strnlen(c.proxy_credentials_file, sizeof(c.proxy_credentials_file))
            == sizeof(c.proxy_credentials_file))
        abort();
    /* R2: credentials never inside the proxy URL; the companions of a
     * proxy never without it */
    if (strchr(c.proxy, '@') ||
        (c.proxy[0] == '\0' && (c.no_proxy[0] || c.proxy_credentials_file[0])))
        abort();
    return 0;
}
