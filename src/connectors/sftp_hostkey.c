/*
 * sftp_hostkey.c - first-use capture and explicit confirmation of an SFTP
 * partner's host key (M5): what `wharf connector hostkey NAME [--accept
 * SHA256:...]` and GET/POST /api/v1/connectors/{name}/hostkey do.
 *
 * Show opens the stored connector and captures the key its server
 * presents (sftp_hostkey_capture: refused in the key exchange, so no
 * authentication is attempted). Accept captures it again, requires
 * exactly the fingerprint the operator confirmed, and only then stores it
 * as host_key_sha256 in the connector's stored config
 * (store_connector_config_set: the flow generation moves and a running
 * server reopens its connectors).
 *
 * Must never: store a fingerprint nobody confirmed, or one the server
 * does not present at that moment; change anything of the connector but
 * host_key_sha256 (its sealed secrets, links and other keys stay).
 */
#include "connectors/sftp.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "connectors/connector.h"
#include "store/store.h"

/* The stored row of connector name, copied into *row (caller frees the
 * strings). */
static int find_row(struct store *st, const char *name,
                    struct store_connector *row, struct error *err)
{
    struct store_flow f;
    memset(row, 0, sizeof(*row));
    if (store_flow_get(st, &f, err) < 0)
        return SFTP_HOSTKEY_ERROR;
    int rc = SFTP_HOSTKEY_NOT_FOUND;
    for (size_t i = 0; i < f.nconns && rc == SFTP_HOSTKEY_NOT_FOUND; i++) {
        if (strcmp(f.conns[i].name, name) != 0)
            continue;
        *row = f.conns[i];
        memset(&f.conns[i], 0, sizeof(f.conns[i]));
        rc = SFTP_HOSTKEY_OK;
    }
    store_flow_clear(&f);
    if (rc == SFTP_HOSTKEY_NOT_FOUND)
        error_set(err, "no connector named '%s'", name);
    else if (strcmp(row->type, "sftp") != 0) {
        error_set(err, "connector '%s' is of type %s: only sftp connectors "
                  "have a host key", name, row->type);
        rc = SFTP_HOSTKEY_NOT_SFTP;
    }
    return rc;
}

static void row_clear(struct store_connector *row)
{
    free(row->name);
    free(row->type);
    free(row->config);
    memset(row, 0, sizeof(*row));
}

/* Open the connector of row and capture its server's key into out. */
static int capture(struct wharf *w, const struct store_connector *row,
                   struct sftp_hostkey *out, struct error *err)
{
    json_error_t je;
    json_t *cfg = json_loads(row->config, 0, &je);
    if (cfg == NULL)
        return error_set(err, "stored config of '%s' is not JSON", row->name),
               SFTP_HOSTKEY_ERROR;
    const json_t *port = json_object_get(cfg, "port");
    snprintf(out->server, sizeof(out->server), "%s:%lld",
             json_string_value(json_object_get(cfg, "host")),
             port ? (long long)json_integer_value(port) : 22LL);
    const char *pin = json_string_value(json_object_get(cfg,
                                                        "host_key_sha256"));
    if (pin == NULL ||
        sftp_fingerprint_norm(pin, out->confirmed, sizeof(out->confirmed)) < 0)
        out->confirmed[0] = '\0';
    struct connector *c = connector_new(w, row->name, row->type, cfg, err);
    json_decref(cfg);
    if (c == NULL)
        return SFTP_HOSTKEY_ERROR;
    int rc = sftp_hostkey_capture(c, &out->key, err) == WH_OK
             ? SFTP_HOSTKEY_OK : SFTP_HOSTKEY_UNREACHABLE;
    connector_free(c);
    return rc;
}

int sftp_hostkey_show(struct wharf *w, struct store *st, const char *name,
                      struct sftp_hostkey *out, struct error *err)
{
    struct store_connector row;
    memset(out, 0, sizeof(*out));
    int rc = find_row(st, name, &row, err);
    if (rc == SFTP_HOSTKEY_OK)
        rc = capture(w, &row, out, err);
    row_clear(&row);
    if (rc == SFTP_HOSTKEY_OK && out->confirmed[0] &&
        strcmp(out->confirmed, out->key.fingerprint) != 0) {
        error_set(err, "host key of %s changed: it presents %s, not the "
                  "confirmed %s", out->server, out->key.fingerprint,
                  out->confirmed);
        rc = SFTP_HOSTKEY_MISMATCH;
    }
    return rc;
}

/* row's config with host_key_sha256 = fp, checked as an import checks
 * it, as compact JSON (caller frees). */
static char *config_with(const struct store_connector *row, const char *fp,
                         struct error *err)
{
    json_error_t je;
    json_t *cfg = json_loads(row->config, 0, &je);
    if (cfg == NULL) {
        error_set(err, "stored config of '%s' is not JSON", row->name);
        return NULL;
    }
    char *text = NULL;
    if (json_object_set_new(cfg, "host_key_sha256", json_string(fp)) < 0)
        error_set(err, "out of memory");
    else if (connector_check(row->name, row->type, cfg, err) == 0 &&
             (text = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
        error_set(err, "out of memory");
    json_decref(cfg);
    return text;
}

int sftp_hostkey_accept(struct wharf *w, struct store *st, const char *name,
                        const char *fingerprint, struct sftp_hostkey *out,
                        struct error *err)
{
    char want[64];
    memset(out, 0, sizeof(*out));
    if (fingerprint == NULL ||
        sftp_fingerprint_norm(fingerprint, want, sizeof(want)) < 0)
        return error_set(err, "the fingerprint to accept must look like "
                         "SHA256:<43 base64 characters>, as ssh-keygen -lf "
                         "prints it"), SFTP_HOSTKEY_INVALID;
    struct store_connector row;
    int rc = find_row(st, name, &row, err);
    if (rc == SFTP_HOSTKEY_OK)
        rc = capture(w, &row, out, err);
    if (rc == SFTP_HOSTKEY_OK && strcmp(out->key.fingerprint, want) != 0) {
        error_set(err, "%s presents %s, not %s: nothing stored (compare "
                  "the fingerprint with the partner again)", out->server,
                  out->key.fingerprint, want);
        rc = SFTP_HOSTKEY_MISMATCH;
    }
    char *text = rc == SFTP_HOSTKEY_OK ? config_with(&row, want, err) : NULL;
    if (rc == SFTP_HOSTKEY_OK && text == NULL)
        rc = SFTP_HOSTKEY_ERROR;
    if (text) {
        int set = store_connector_config_set(st, name, row.config, text, err);
        if (set < 0)
            rc = SFTP_HOSTKEY_ERROR;
        if (set == 1) {
            error_set(err, "connector '%s' was changed or removed meanwhile: "
                      "nothing stored; run the command again", name);
            rc = SFTP_HOSTKEY_CHANGED;
        }
    }
    free(text);
    row_clear(&row);
    return rc;
}
