/*
 * backup_format.h - the backup container (R20): one streaming file that
 * is encrypted and authenticated end to end, holding named entries (the
 * database image, the payload files, wharf.conf, ...). The format is
 * described in full at the top of backup_format.c.
 *
 * Writing and reading use constant memory whatever the entry sizes: a
 * writer holds one segment, a reader one segment plus one byte. A reader
 * returns no byte of a segment whose GCM tag has not verified, checks each
 * entry's SHA-256 before saying the entry ended, and checks that the
 * stream ends right after the trailer. What the header means (who may
 * open the key block) is the caller's business (core/backup.c): this
 * module only sees a 32-byte content key.
 */
#ifndef WHARF_BACKUP_FORMAT_H
#define WHARF_BACKUP_FORMAT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/error.h"
#include "util/id.h"

#define BACKUP_MAGIC "WHBACKUP"
#define BACKUP_VERSION 1
#define BACKUP_KEY_LEN 32               /* AES-256 content key */
#define BACKUP_PREFIX_LEN 7             /* random nonce prefix per file */
#define BACKUP_SEGMENT (64 * 1024)      /* plaintext bytes per segment */
#define BACKUP_JSON_MAX (64 * 1024)     /* header JSON bytes */
#define BACKUP_KEYBLOCK_MAX (256 * 1024)
#define BACKUP_NAME_MAX 255
#define BACKUP_SIG_LEN 64               /* Ed25519 */
#define BACKUP_KEY_ID_LEN 16            /* audit key id, hex */

/* Who can open a backup's key block. */
enum backup_recipient {
    BACKUP_TO_MASTER_KEY = 1,   /* the content key sealed by the vault */
    BACKUP_TO_PUBLIC_KEY = 2,   /* CMS AuthEnvelopedData to a certificate */
};

/* The header's JSON, parsed (backup_info_parse) or to be written
 * (backup_info_json). Strings are NUL-terminated, empty when absent. */
struct backup_info {
    char backup_id[ID_LEN + 1];
    int64_t created_ms;
    char node[256];             /* host name of the source */
    char wharf_version[32];
    char store[16];             /* "sqlite" (later "postgresql") */
    int schema_version;
    int64_t messages;           /* messages in the database snapshot */
    int64_t payloads;           /* payload files it references */
    enum backup_recipient recipient;
    char master_key_id[17];     /* BACKUP_TO_MASTER_KEY: the sealing key */
    char spki_sha256[65];       /* BACKUP_TO_PUBLIC_KEY: the recipient */
    char subject[256];          /* its certificate's subject */
    int has_keystore;           /* the key block carries the keystore */
};

/* The header JSON for i (malloc'ed, caller frees), or NULL with err. */
char *backup_info_json(const struct backup_info *i, struct error *err);

/* Parse header JSON text[0..n) strictly (types, sizes, known recipient
 * kinds; unknown members are ignored for later versions). 0 or -1. */
int backup_info_parse(const char *text, size_t n, struct backup_info *i,
                      struct error *err);

/* 1 when name is a safe relative entry name: 1..BACKUP_NAME_MAX bytes,
 * '/'-separated components of [A-Za-z0-9._-] that are not "." or "..",
 * at most 8 deep. Restore writes only such names under its directory. */
int backup_name_ok(const char *name);

enum backup_entry_kind {
    BACKUP_ENTRY_FILE = 'F',    /* name, size, bytes */
    BACKUP_ENTRY_MISSING = 'M', /* a file the snapshot names that was gone
                                   when copied (purged/erased meanwhile) */
};

struct backup_entry {
    enum backup_entry_kind kind;
    char name[BACKUP_NAME_MAX + 1];
    uint64_t size;
};

/* The trailer: counts, the manifest hash the reader recomputed and found
 * equal, and the signature over backup_signed_text (checked by the
 * caller with the vault). */
struct backup_trailer {
    uint64_t entries;
    uint64_t bytes;
    unsigned char manifest[32];
    char key_id[BACKUP_KEY_ID_LEN + 1];
    unsigned char sig[BACKUP_SIG_LEN];
};

/* The text that the trailer's signature covers, for manifest m, into
 * out (at least 128 bytes). Its length. */
size_t backup_signed_text(const unsigned char m[32], char *out, size_t n);

/* ---- writing ---------------------------------------------------------- */

struct backup_writer;

/* Write the header (info as JSON, then the key block) to fd and get
 * ready for entries sealed with key. Caller owns; free with
 * backup_writer_free. The key is copied (and wiped on free). */
struct backup_writer *backup_writer_open(int fd, const struct backup_info *i,
                                         const unsigned char *keyblock,
                                         size_t klen,
                                         const unsigned char *key,
                                         struct error *err);

/* Start an entry of exactly size bytes (0 for BACKUP_ENTRY_MISSING). */
int backup_writer_begin(struct backup_writer *w, enum backup_entry_kind kind,
                        const char *name, uint64_t size, struct error *err);
int backup_writer_data(struct backup_writer *w, const void *p, size_t n,
                       struct error *err);
/* End the entry: fails unless exactly its size was written. */
int backup_writer_end(struct backup_writer *w, struct error *err);

/* The manifest hash of every entry so far (to sign before finishing). */
void backup_writer_manifest(const struct backup_writer *w,
                            unsigned char m[32]);

/* Write the trailer (key id and signature of backup_signed_text) in the
 * final segment. The file is complete but not synced. */
int backup_writer_finish(struct backup_writer *w, const char *key_id,
                         const unsigned char sig[BACKUP_SIG_LEN],
                         struct error *err);

/* Plaintext bytes straight into the segment stream, unframed; last seals
 * them as the final segment. Only for the fuzzer and the tests, which
 * need authentic segments around records of their own making. */
int backup_writer_raw(struct backup_writer *w, const void *p, size_t n,
                      int last, struct error *err);

/* Bytes written so far and, after finish, the SHA-256 of the whole file
 * (hex, 65 bytes). */
uint64_t backup_writer_bytes(const struct backup_writer *w);
void backup_writer_sha256(const struct backup_writer *w, char hex[65]);

void backup_writer_free(struct backup_writer *w);

/* ---- reading ---------------------------------------------------------- */

struct backup_reader;

/* The byte source of a reader: read up to n bytes into p; the count, 0 at
 * the end, -1 with err. */
typedef ssize_t (*backup_read_fn)(void *ctx, void *p, size_t n,
                                  struct error *err);

/* Read and check the header from src (magic, version, sizes, the JSON).
 * Caller owns; free with backup_reader_free. */
struct backup_reader *backup_reader_open(backup_read_fn src, void *ctx,
                                         struct error *err);

/* An fd as a backup_read_fn (ctx points to the int). */
ssize_t backup_read_fd(void *ctx, void *p, size_t n, struct error *err);

const struct backup_info *backup_reader_info(const struct backup_reader *r);
/* The key block (owned by r). */
const unsigned char *backup_reader_keyblock(const struct backup_reader *r,
                                            size_t *n);

/* Give the content key (copied, wiped on free). */
void backup_reader_key(struct backup_reader *r, const unsigned char *key);

/* The next entry into e: 1; 0 when the trailer was read (manifest hash
 * equal, stream ended right after it: see backup_reader_trailer); -1 with
 * err. The rest of an entry not read with backup_reader_data is read and
 * checked first. */
int backup_reader_next(struct backup_reader *r, struct backup_entry *e,
                       struct error *err);

/* Up to n bytes of the current entry: the count, 0 at its end (after its
 * SHA-256 matched), -1 with err. */
ssize_t backup_reader_data(struct backup_reader *r, void *p, size_t n,
                           struct error *err);

const struct backup_trailer *backup_reader_trailer(
    const struct backup_reader *r);

/* Bytes of the file read so far. */
uint64_t backup_reader_offset(const struct backup_reader *r);

void backup_reader_free(struct backup_reader *r);

#endif
