/*
 * message.c - opening a message's payload for a connector. The payload is
 * read through the vault, so every byte handed out has been authenticated.
 */
#include "core/message.h"

#include "core/wharf.h"

struct payload_reader *message_payload_open(const struct message *m,
                                            struct error *err)
{
    char path[4300];
    if (m->payload_path == NULL ||
        wharf_path(m->wharf, m->payload_path, path, sizeof(path)) < 0) {
        error_set(err, "message %s has no payload file", m->id);
        return NULL;
    }
    return payload_open(m->wharf->vault, path, m->id, err);
}
