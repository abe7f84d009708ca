/*
 * keyproto.h - the wire protocol between the network-facing process and
 * the key process (R15, R22): typed, size-checked frames over a socketpair.
 *
 * A frame is a 16-byte header followed by `len` body bytes:
 *
 *     0  type        uint32, big endian (KP_*)
 *     4  len         uint32, big endian, body bytes (<= KEYPROTO_BODY_MAX)
 *     8  request id  uint64, big endian (a reply repeats its request's id)
 *
 * The body is a sequence of fields, each a uint32 big-endian length then
 * that many bytes. Every request type has an exact list of fields, each
 * with its minimum and maximum size (keyproto_fields); a frame of an
 * unknown type, an oversize frame, a missing, extra or wrongly sized field
 * or trailing bytes are refused by keyproto_parse. A reply is KP_OK with the
 * fields of its request's reply spec, or KP_ERR with one text field.
 *
 * Nothing here allocates or owns memory: parsed fields point into the
 * caller's body buffer.
 */
#ifndef WHARF_KEYPROTO_H
#define WHARF_KEYPROTO_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define KEYPROTO_HDR_LEN 16
#define KEYPROTO_BODY_MAX (80 * 1024)
#define KEYPROTO_MAX_FIELDS 4

/* Request types, and the two reply types. */
enum keyproto_type {
    KP_HELLO = 1,           /* -> active master key id */
    KP_SEAL = 2,            /* context, plaintext -> sealed blob */
    KP_UNSEAL = 3,          /* context, blob -> plaintext */
    KP_WRAP = 4,            /* msgid, header, data key -> header */
    KP_UNWRAP = 5,          /* msgid, header -> data key */
    KP_AUDIT_SIGN = 6,      /* text -> audit key id, signature */
    KP_AUDIT_VERIFY = 7,    /* key id, signature, text -> (nothing) */
    KP_KEY_LOAD = 8,        /* context, sealed key -> handle, public key */
    KP_KEY_TLS = 9,         /* key file path -> handle, public key */
    KP_KEY_SIGN = 10,       /* handle, sign params, digest -> signature */
    KP_KEY_DECRYPT = 11,    /* handle, decrypt params, label, in -> out */
    KP_KEY_CLIENT = 12,     /* connector name, its sealed "auth.key" ->
                               handle, public key (signs only) */
    KP_KEY_SSH = 13,        /* connector name, its sealed "key_file",
                               its sealed "key_passphrase_file" (or
                               empty) -> handle, SSH public key blob */
    KP_SSH_SIGN = 14,       /* handle, flags, data -> SSH signature */
    KP_TYPE_MAX = 14,
    KP_OK = 0x100,
    KP_ERR = 0x101,
};

/* Sizes the spec tables use (also the limits the two sides enforce). */
#define KP_CONTEXT_MAX 1024
#define KP_SECRET_MAX (64 * 1024)
#define KP_BLOB_OVERHEAD 45         /* seal.c: version, key id, nonce, tag */
#define KP_MSGID_MAX 200
#define KP_HEADER_LEN 92            /* a payload file's header */
#define KP_DKEY_LEN 32
#define KP_KEYID_LEN 16
#define KP_AUDIT_SIG_LEN 64
#define KP_AUDIT_TEXT_MAX (64 * 1024)
#define KP_PATH_MAX 4096
#define KP_CONN_NAME_MAX 256        /* a connector's name (KP_KEY_CLIENT) */
#define KP_SPKI_MAX 4096            /* a public key, DER SubjectPublicKeyInfo */
#define KP_HANDLE_LEN 4
#define KP_PARAMS_LEN 16            /* four uint32: see keyproto_params */
#define KP_DIGEST_MIN 16
#define KP_DIGEST_MAX 64
#define KP_SIG_MAX 1024             /* RSA 8192 bits */
#define KP_LABEL_MAX 256
#define KP_CIPHER_MAX 1024
#define KP_SSH_PUB_MAX 2048         /* an SSH public key blob (RSA 8192) */
#define KP_SSH_DATA_MAX 8192        /* what an SSH user auth signs */
#define KP_SSH_SIG_MAX (KP_SIG_MAX + 64)    /* name + signature blob */

/* Digests a key operation may name (a small closed set). */
enum keyproto_md {
    KP_MD_NONE = 0, KP_MD_SHA1 = 1, KP_MD_SHA224 = 2, KP_MD_SHA256 = 3,
    KP_MD_SHA384 = 4, KP_MD_SHA512 = 5, KP_MD_MAX = 5,
};

/* Paddings of a key operation. */
enum keyproto_pad {
    KP_PAD_NONE = 0,        /* ECDSA (no padding) */
    KP_PAD_PKCS1 = 1,       /* RSA PKCS#1 v1.5 (sign or decrypt) */
    KP_PAD_PSS = 2,         /* RSA-PSS signature */
    KP_PAD_OAEP = 3,        /* RSA-OAEP decryption */
    KP_PAD_MAX = 3,
};

/* The four numbers of a KP_KEY_SIGN / KP_KEY_DECRYPT params field. */
struct keyproto_params {
    uint32_t md;            /* enum keyproto_md: signature or OAEP digest */
    uint32_t pad;           /* enum keyproto_pad */
    int32_t saltlen;        /* PSS salt length (-1: digest length) */
    uint32_t mgf1;          /* enum keyproto_md: MGF1 digest (PSS, OAEP) */
};

struct keyproto_hdr {
    uint32_t type;
    uint32_t len;
    uint64_t id;
};

struct keyproto_field {
    const unsigned char *p;     /* points into the body */
    size_t n;
};

/* Encode h into out (KEYPROTO_HDR_LEN bytes). */
void keyproto_hdr_put(const struct keyproto_hdr *h, unsigned char *out);

/* Decode and check a header: a known request type (replies: KP_OK or
 * KP_ERR when reply is 1) and len <= KEYPROTO_BODY_MAX. 0, or -1 with err
 * (the peer must then be disconnected). */
int keyproto_hdr_get(const unsigned char *in, int reply,
                     struct keyproto_hdr *h, struct error *err);

/* Parse body (len bytes) of a frame of this type into f[] (*nf fields)
 * checking the exact field list: a request when reply is 0; when reply is
 * 1, the KP_OK reply to a request of this type. 0, or -1 with err. */
int keyproto_parse(uint32_t type, int reply, const unsigned char *body,
                   size_t len, struct keyproto_field *f, size_t *nf,
                   struct error *err);

/* Append one field (uint32 length + bytes) to buf at *off, which has cap
 * bytes. 0, or -1 when it does not fit. */
int keyproto_put(unsigned char *buf, size_t cap, size_t *off, const void *p,
                 size_t n);

/* Big-endian helpers. */
void keyproto_u32_put(uint32_t v, unsigned char *out);
uint32_t keyproto_u32_get(const unsigned char *in);

/* A params field (KP_PARAMS_LEN bytes) to and from its four numbers;
 * _get checks the md, pad and mgf1 values (0, or -1 with err). */
void keyproto_params_put(const struct keyproto_params *p, unsigned char *out);
int keyproto_params_get(const unsigned char *in, struct keyproto_params *p,
                        struct error *err);

/* The OpenSSL name of a keyproto_md ("SHA256"), NULL for KP_MD_NONE or an
 * unknown value; and back (KP_MD_NONE when the name is none of them). The
 * digest's size in bytes (0 for none). */
const char *keyproto_md_name(uint32_t md);
uint32_t keyproto_md_from_name(const char *name);
size_t keyproto_md_size(uint32_t md);

#endif
