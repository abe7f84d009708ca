/*
 * tls.h - THE TLS policy of Wharf (R3), one place for every listener and
 * every outbound connection, and the self-signed certificate `wharf init`
 * makes for the listeners.
 *
 * Policy (servers and clients alike):
 *   - TLS 1.2 minimum, TLS 1.3 maximum;
 *   - TLS 1.2: ECDHE (forward secret) with AEAD only, strongest first:
 *     AES-256-GCM, CHACHA20-POLY1305, AES-128-GCM, ECDSA and RSA keys;
 *   - TLS 1.3: AES-256-GCM, CHACHA20-POLY1305, AES-128-GCM;
 *   - key exchange groups X25519, P-256, P-384;
 *   - the server's order wins; no compression; no renegotiation;
 *   - no session resumption at all: session tickets off (TLS 1.2 and 1.3)
 *     and no session cache, so no long-lived ticket key exists whose theft
 *     would decrypt recorded traffic, and there is no key to rotate. Every
 *     connection pays a full handshake (measured in docs/performance.md).
 *   - servers: optional client certificate, required and verified against
 *     a CA file (mutual TLS) when one is configured for the listener;
 *   - clients: the peer's certificate is verified by default (a CA file or
 *     the system store), and its host name with tls_client_expect_host.
 */
#ifndef WHARF_TLS_H
#define WHARF_TLS_H

#include <openssl/ssl.h>

#include "util/error.h"

#define TLS_CIPHERS_12                                                     \
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"           \
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"           \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256"
#define TLS_SUITES_13                                                      \
    "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:"                 \
    "TLS_AES_128_GCM_SHA256"
#define TLS_GROUPS "X25519:P-256:P-384"

struct tls_server_opts {
    const char *cert_file;          /* PEM: the certificate, then its chain */
    const char *key_file;           /* PEM private key; refused if others can read it */
    const char *client_ca_file;     /* NULL or "": no client certificate asked */
};

/* Apply the policy to a server SSL_CTX (made with TLS_server_method) and
 * load its certificate and key. Overrides whatever options, ciphers and
 * verification settings ctx had. 0, or -1 with err set. */
int tls_server_configure(SSL_CTX *ctx, const struct tls_server_opts *o,
                         struct error *err);

struct tls_client_opts {
    const char *ca_file;            /* NULL: the system's trust store */
    const char *cert_file;          /* client certificate (mutual TLS), or NULL */
    const char *key_file;
};

/* Apply the policy to a client SSL_CTX: peer verification on. 0 or -1. */
int tls_client_configure(SSL_CTX *ctx, const struct tls_client_opts *o,
                         struct error *err);

/* Send SNI and require the peer certificate to name host (a DNS name or an
 * IP literal). Call before SSL_connect. 0 or -1. */
int tls_client_expect_host(SSL *ssl, const char *host, struct error *err);

/* Create a self-signed ECDSA P-256 certificate (SHA-256, valid `days`,
 * SAN IP:127.0.0.1, DNS:localhost and DNS:hostname when hostname is a
 * valid DNS name other than localhost) and its key. Both files are written
 * atomically and durably; the key with mode 0600, the certificate 0644.
 * Neither may exist already. */
int tls_selfsigned_create(const char *cert_path, const char *key_path,
                          const char *hostname, int days, struct error *err);

/* `wharf init`: DIR/tls/ (mode 0700) with cert.pem and key.pem made by
 * tls_selfsigned_create for this machine's host name, valid one year. */
int tls_init_data_dir(const char *dir, struct error *err);

#endif
