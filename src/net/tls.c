/*
 * tls.c - the TLS policy of tls.h applied to an SSL_CTX: protocol range,
 * cipher lists, groups, options, resumption, certificate verification.
 *
 * Owns every TLS setting Wharf makes; nothing else in Wharf may call
 * SSL_CTX_set_cipher_list, set_min_proto_version, set_options or set_verify
 * on its own (server.c only adds callbacks that count and refuse). It must
 * never loosen the policy for a caller: there is no "insecure" switch, no
 * TLS 1.0/1.1 fallback, no CBC or static-RSA suite, no verification off for
 * clients. A listener's private key is never loaded here: it is a vault
 * handle key (vault/keyop.h), held by the key process under serve.
 */
#include "net/tls.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "vault/keyop.h"

/* Options OpenSSL or an embedding library may have set that weaken TLS. */
#define TLS_OPTS_UNSAFE                                                    \
    (SSL_OP_LEGACY_SERVER_CONNECT | SSL_OP_ALLOW_UNSAFE_LEGACY_RENEGOTIATION \
     | SSL_OP_ALLOW_CLIENT_RENEGOTIATION | SSL_OP_NO_ENCRYPT_THEN_MAC      \
     | SSL_OP_NO_EXTENDED_MASTER_SECRET)

#define TLS_OPTS_POLICY                                                    \
    (SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET    \
     | SSL_OP_NO_SSLv3 | SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1)

#define TLS_VERIFY_DEPTH 5

/* Protocols, suites, groups, options: the part shared by both sides. */
static int tls_common(SSL_CTX *ctx, struct error *err)
{
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
        return error_openssl(err, "cannot set the TLS protocol range");
    if (!SSL_CTX_set_cipher_list(ctx, TLS_CIPHERS_12))
        return error_openssl(err, "cannot set the TLS 1.2 cipher list");
    if (!SSL_CTX_set_ciphersuites(ctx, TLS_SUITES_13))
        return error_openssl(err, "cannot set the TLS 1.3 cipher suites");
    if (!SSL_CTX_set1_groups_list(ctx, TLS_GROUPS))
        return error_openssl(err, "cannot set the TLS key exchange groups");
    SSL_CTX_set_security_level(ctx, 2);
    SSL_CTX_clear_options(ctx, TLS_OPTS_UNSAFE);
    SSL_CTX_set_options(ctx, TLS_OPTS_POLICY);
    return 0;
}

/* A private key file others can read is refused (its group may read it:
 * Debian's ssl-cert group convention). */
static int tls_key_mode_ok(const char *path, struct error *err)
{
    struct stat sb;
    if (stat(path, &sb) < 0)
        return error_errno(err, errno, "TLS key %s", path);
    if (sb.st_mode & 007)
        return error_set(err, "TLS key %s is readable by others (mode %04o); "
                         "run: chmod 600 %s", path,
                         (unsigned)(sb.st_mode & 07777), path);
    return 0;
}

/* The key of a pair: a server's is a vault handle key (the private key
 * stays in the vault: the key process under serve); a client's (outbound
 * mutual TLS) is still read here. */
static int tls_use_key(SSL_CTX *ctx, const char *key, int server,
                       struct error *err)
{
    if (!server) {
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) == 1)
            return 0;
        error_openssl(err, "cannot load the TLS key");
        error_prefix(err, "%s", key);
        return -1;
    }
    EVP_PKEY *k = vault_tls_key(key, err);
    int ok = k != NULL && SSL_CTX_use_PrivateKey(ctx, k) == 1;
    if (k != NULL && !ok) {
        error_openssl(err, "cannot use the TLS key");
        error_prefix(err, "%s", key);
    }
    EVP_PKEY_free(k);
    return ok ? 0 : -1;
}

static int tls_load_pair(SSL_CTX *ctx, const char *cert, const char *key,
                         int server, struct error *err)
{
    if (tls_key_mode_ok(key, err) < 0)
        return -1;
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        error_openssl(err, "cannot load the TLS certificate");
        error_prefix(err, "%s", cert);
        return -1;
    }
    if (tls_use_key(ctx, key, server, err) < 0)
        return -1;
    if (SSL_CTX_check_private_key(ctx) != 1)
        return error_set(err, "TLS key %s does not match certificate %s",
                         key, cert);
    return 0;
}

/* Mutual TLS: require a client certificate that chains to ca_file. */
static int tls_require_client_cert(SSL_CTX *ctx, const char *ca_file,
                                   struct error *err)
{
    if (SSL_CTX_load_verify_locations(ctx, ca_file, NULL) != 1) {
        error_openssl(err, "cannot load the client CA file");
        error_prefix(err, "%s", ca_file);
        return -1;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca_file);
    if (names == NULL)
        return error_openssl(err, "no CA certificate in the client CA file");
    SSL_CTX_set_client_CA_list(ctx, names);     /* takes ownership */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       NULL);
    SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
    return 0;
}

int tls_server_configure(SSL_CTX *ctx, const struct tls_server_opts *o,
                         struct error *err)
{
    static const unsigned char sid_ctx[] = "wharf";
    if (tls_common(ctx, err) < 0)
        return -1;
    SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_num_tickets(ctx, 0);            /* TLS 1.3: no tickets */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    /* Read what the socket has, several records at once, into OpenSSL's
     * buffer (of its default size): one read(2) a record where there were
     * two (header, then body). A request can then wait whole in that
     * buffer, so server.c calls SSL_read before it ever waits on the
     * socket. */
    SSL_CTX_set_read_ahead(ctx, 1);
    if (tls_load_pair(ctx, o->cert_file, o->key_file, 1, err) < 0)
        return -1;
    if (o->client_ca_file && o->client_ca_file[0] &&
        tls_require_client_cert(ctx, o->client_ca_file, err) < 0)
        return -1;
    return 0;
}

int tls_client_configure(SSL_CTX *ctx, const struct tls_client_opts *o,
                         struct error *err)
{
    if (tls_common(ctx, err) < 0)
        return -1;
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_verify_depth(ctx, TLS_VERIFY_DEPTH);
    int ok = (o && o->ca_file)
                 ? SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL)
                 : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1)
        return error_openssl(err, "cannot load the trusted CA certificates");
    if (o && o->cert_file && o->key_file &&
        tls_load_pair(ctx, o->cert_file, o->key_file, 0, err) < 0)
        return -1;
    return 0;
}

static int tls_is_ip(const char *host)
{
    ASN1_OCTET_STRING *ip = a2i_IPADDRESS(host);
    if (ip == NULL)
        return 0;
    ASN1_OCTET_STRING_free(ip);
    return 1;
}

int tls_client_expect_host(SSL *ssl, const char *host, struct error *err)
{
    X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (tls_is_ip(host)) {
        if (X509_VERIFY_PARAM_set1_ip_asc(p, host) != 1)
            return error_openssl(err, "cannot expect the peer's address");
        return 0;
    }
    if (SSL_set_tlsext_host_name(ssl, host) != 1 ||
        SSL_set1_host(ssl, host) != 1)
        return error_openssl(err, "cannot expect the peer's host name");
    return 0;
}
