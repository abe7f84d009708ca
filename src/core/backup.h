/*
 * backup.h - online, encrypted backups of a data directory and restores
 * (R20): `wharf backup`, `wharf backup verify`, `wharf restore`.
 *
 * A backup is one file in the container format of backup_format.h:
 *   - wharf.db: a consistent snapshot of the database, taken with
 *     SQLite's online backup API inside one read transaction while serve
 *     keeps running (store/backup_store.h); of a PostgreSQL store, a
 *     logical export of one REPEATABLE READ snapshot into a SQLite file of
 *     the same schema (store/pg_export.c), so it is a SQLite file either
 *     way;
 *   - every payload file that snapshot references, copied as it is on
 *     disk (still encrypted by its own data key, wrapped by the master
 *     key); a file the snapshot names that is gone by the time it is
 *     copied (purged or erased meanwhile) is recorded as missing;
 *   - wharf.conf, the signed audit head anchor (read before the snapshot,
 *     so it never names an entry the snapshot lacks) and the listener's
 *     TLS files when wharf.conf names them inside the data dir.
 * Who can open it (the key block):
 *   - master key (default): the content key sealed by the vault; opening
 *     needs a copy of the keystore that holds the sealing master key
 *     (back the keystore up separately: docs/operations.md);
 *   - public key (--recipient CERT): the content key and the whole
 *     keystore encrypted to the certificate (vault/vault_backup.h): only
 *     the holder of the private key can verify or restore it.
 * The trailer is signed by the source's audit key; verify and restore
 * check the signature with the keystore they opened.
 */
#ifndef WHARF_BACKUP_H
#define WHARF_BACKUP_H

#include <stdint.h>

#include "core/backup_format.h"
#include "util/error.h"

struct wharf;

struct backup_opts {
    const char *to;             /* the new backup file (refused if it exists) */
    const char *recipient;      /* PEM certificate, or NULL: the master key */
};

struct backup_result {
    struct backup_info info;
    char path[4096];            /* absolute path of the backup */
    uint64_t bytes;             /* of the file */
    char sha256[65];            /* of the file */
    int64_t started_at, finished_at;
    int64_t missing;            /* payload files gone before they were copied */
    int outside;                /* files wharf.conf names outside DIR (not in it) */
};

/* Take an online backup of w's data dir (serve may be running) into
 * o->to, durably (temp file in the same folder, fsync, link into place,
 * fsync of the folder). r is filled as far as the run got (also on
 * failure: for the record). 0 or -1 with err. */
int backup_create(struct wharf *w, const struct backup_opts *o,
                  struct backup_result *r, struct error *err);

/* What opens a backup. */
struct backup_keys {
    const char *keystore;       /* master-key backups: a keystore file */
    const char *key;            /* public-key backups: a PEM private key */
};

/* What verify and restore found. */
struct backup_report {
    struct backup_info info;
    uint64_t entries, files, bytes;     /* bytes: of the entries' data */
    int64_t payloads, missing, shredded;
    char signer[17];            /* the audit key id that signed it */
    int64_t audit_entries;      /* restore: entries of the verified trail */
    int64_t sessions_ended;     /* restore: sessions of the snapshot ended */
};

/* Read the backup at file end to end and check everything the key allows
 * (every segment, every entry's SHA-256, the manifest, the signature, the
 * entry names, every payload header against the keystore) without writing
 * anything. 0, or -1 with err naming the first problem. */
int backup_verify(const char *file, const struct backup_keys *k,
                  struct backup_report *rep, struct error *err);

/* Where a restore puts the database and the payloads. */
struct backup_target {
    const char *store;          /* NULL or "sqlite": DIR/wharf.db; else a
                                   postgresql:// URL of an empty database */
    const char *payload_dir;    /* NULL: DIR/payloads; else an absolute
                                   folder, absent or empty; or "database"
                                   (store a URL): the database's rows */
    const struct secret *store_password;  /* NULL: pgpass; else store's
                                   password, sealed into the data dir */
};

/* Rebuild a data dir at dir (absent, or an empty directory) from the
 * backup at file (from either backend: its wharf.db is a SQLite file):
 * the keystore is written last, after every check passed and everything
 * else is synced; on any failure everything written is removed (dir and
 * the payload folder too if they were created). wharf.conf is the
 * backup's with its store and payload_dir lines pointed at t (NULL: SQLite
 * in dir), never at the source's database or folder. Then the restored
 * database passes SQLite's quick_check and `audit verify`, and every
 * session it holds is ended (a session revoked after the backup must not
 * come back). With t->store a URL, the database must hold no Wharf rows
 * (checked before anything is written): the verified rows are loaded into
 * it in one transaction, wharf.db and the anchor file leave dir (a
 * PostgreSQL store keeps neither), and `audit verify` runs again on the
 * database. 0, or -1 with err. */
int backup_restore(const char *file, const char *dir,
                   const struct backup_keys *k,
                   const struct backup_target *t, struct backup_report *rep,
                   struct error *err);

#endif
