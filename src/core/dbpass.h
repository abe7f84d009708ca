/*
 * dbpass.h - the PostgreSQL store's password, sealed by the vault in the
 * data dir (R21): DIR/state/store-password holds the blob vault_seal made
 * of it (context "store:password"), mode 0600, so the password is never
 * in plaintext on the disk, in wharf.conf or in a URL. wharf_open unseals
 * it and hands it to the store (store_password_set) before any connection
 * is made; without the file, libpq's pgpass applies as before.
 *
 * Its lifecycle: `wharf init --store-password-file F` and `wharf restore
 * --store-password-file F` write it, `wharf cluster password` replaces it
 * (after a connection with the new one succeeded), `wharf key rotate`
 * re-seals it (core/rotate.c). It is not in backups: a restore names the
 * password of the database it restores into.
 */
#ifndef WHARF_DBPASS_H
#define WHARF_DBPASS_H

#include "util/error.h"

#define DBPASS_FILE "state/store-password"

struct secret;
struct vault;

/* Seal pw with v and write it to DIR/state/store-password (atomically,
 * 0600). 0 or -1. */
int dbpass_save(struct vault *v, const char *dir, const struct secret *pw,
                struct error *err);

/* Unseal DIR's sealed password (if any) and give it to the store for
 * every connection. 0 loaded, 1 when there is none, -1 (err names the
 * file, never the password: a keystore that does not open it, a modified
 * file). */
int dbpass_load(struct vault *v, const char *dir, struct error *err);

/* Re-seal DIR's sealed password under v's active key (rotation): 1 when
 * re-sealed, 0 when current or there is none, -1. */
int dbpass_reseal(struct vault *v, const char *dir, struct error *err);

/* A password file given on the command line (--store-password-file):
 * its first line, refused when it is empty or the file is readable by
 * group or others. Caller owns (secret_free). NULL with err. */
struct secret *dbpass_read_file(const char *path, struct error *err);

#endif
