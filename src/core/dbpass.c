/*
 * dbpass.c - the sealed password of the PostgreSQL store (dbpass.h).
 *
 * Owns nothing past a call: the blob read, the secret unsealed (handed to
 * the store, which keeps its own copy) and the password file read are
 * freed before returning. Must never print, log or return the password;
 * errors name the file and the reason only.
 */
#include "core/dbpass.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store/store.h"
#include "util/fsx.h"
#include "util/secret.h"
#include "vault/vault.h"

#define DBPASS_CONTEXT "store:password"
#define DBPASS_MAX 4096

static int dbpass_path(const char *dir, char *out, size_t n, struct error *err)
{
    if ((size_t)snprintf(out, n, "%s/" DBPASS_FILE, dir) >= n)
        return error_set(err, "data directory path is too long");
    return 0;
}

int dbpass_save(struct vault *v, const char *dir, const struct secret *pw,
                struct error *err)
{
    char path[4300];
    unsigned char *blob = NULL;
    size_t len = 0;
    if (dbpass_path(dir, path, sizeof(path), err) < 0 ||
        vault_seal(v, DBPASS_CONTEXT, pw, &blob, &len, err) < 0)
        return -1;
    int rc = fsx_write_atomic(path, blob, len, 0600, err);
    free(blob);
    return rc;
}

/* The blob in DIR's file: 1 when there is none. */
static int dbpass_blob(const char *dir, char *path, size_t n, char **blob,
                       size_t *len, struct error *err)
{
    *blob = NULL;
    if (dbpass_path(dir, path, n, err) < 0)
        return -1;
    if (access(path, F_OK) < 0 && errno == ENOENT)
        return 1;
    return fsx_read_all(path, DBPASS_MAX, blob, len, err) < 0 ? -1 : 0;
}

int dbpass_load(struct vault *v, const char *dir, struct error *err)
{
    char path[4300], *blob;
    size_t len = 0;
    int rc = dbpass_blob(dir, path, sizeof(path), &blob, &len, err);
    if (rc != 0)
        return rc;
    struct secret *pw = vault_unseal(v, DBPASS_CONTEXT,
                                     (const unsigned char *)blob, len, err);
    free(blob);
    if (pw == NULL) {
        error_prefix(err, "the sealed store password %s does not open "
                     "(set it again: wharf cluster password)", path);
        return -1;
    }
    rc = store_password_set(pw, err);
    secret_free(pw);
    return rc;
}

int dbpass_reseal(struct vault *v, const char *dir, struct error *err)
{
    char path[4300], *blob;
    size_t len = 0, flen = 0;
    unsigned char *fresh = NULL;
    int rc = dbpass_blob(dir, path, sizeof(path), &blob, &len, err);
    if (rc != 0)
        return rc == 1 ? 0 : -1;
    rc = vault_reseal(v, DBPASS_CONTEXT, (const unsigned char *)blob, len,
                      &fresh, &flen, err);
    free(blob);
    if (rc == 1 && fsx_write_atomic(path, fresh, flen, 0600, err) < 0)
        rc = -1;
    if (rc < 0)
        error_prefix(err, "the sealed store password %s", path);
    free(fresh);
    return rc;
}

struct secret *dbpass_read_file(const char *path, struct error *err)
{
    struct secret *s = secret_from_file(path, err);
    if (s == NULL)
        return NULL;
    const unsigned char *p = secret_data(s);
    size_t n = 0;
    while (n < secret_len(s) && p[n] != '\n' && p[n] != '\r' && p[n] != 0)
        n++;
    struct secret *line = n > 0 ? secret_from(p, n) : NULL;
    secret_free(s);
    if (line == NULL)
        error_set(err, "%s: the password file is empty", path);
    return line;
}
