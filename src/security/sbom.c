/*
 * sbom.c - the software bill of materials (sbom.h, R10).
 *
 * The libraries are a fixed table: Wharf's direct dependencies (those the
 * Makefile links) and the ones libcurl reports using. Each version is
 * asked of the library itself (OpenSSL_version, sqlite3_libversion,
 * curl_version_info, PQlibVersion, ...), through the module that owns the
 * library (the layering of docs/architecture.md: curl only in net/, libpq
 * only in store/). Which files make up a library is what the dynamic
 * linker loaded into this process (dl_iterate_phdr), matched by file name;
 * each file is hashed as it is on disk now.
 *
 * Owns nothing beyond a call. Reads the loaded files; writes nothing.
 */
#include "security/sbom.h"

#include <gnu/libc-version.h>
#include <link.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "core/sandbox.h"
#include "net/client.h"
#include "net/http1.h"
#include "store/store.h"
#include "util/id.h"
#include "web/qr.h"

#define SBOM_FILES_MAX 128
#define VERSION_MAX 64

struct sbom_lib {
    const char *name;               /* also its bom-ref and purl name */
    const char *from;               /* how the version was read */
    const char *const *files;       /* file name prefixes ("libssl.so") */
    char version[VERSION_MAX];      /* "" when the library has no call */
    int via_curl;                   /* reported by libcurl, not linked */
};

static const char *const F_OPENSSL[] = { "libssl.so", "libcrypto.so", NULL };
static const char *const F_SQLITE[] = { "libsqlite3.so", NULL };
static const char *const F_JANSSON[] = { "libjansson.so", NULL };
static const char *const F_ZLIB[] = { "libz.so", NULL };
static const char *const F_GLIBC[] = { "libc.so", "libm.so", "libpthread.so",
    "libdl.so", "librt.so", "libresolv.so", "ld-linux", NULL };
static const char *const F_CURL[] = { "libcurl.so", NULL };
static const char *const F_PQ[] = { "libpq.so", NULL };
static const char *const F_SECCOMP[] = { "libseccomp.so", NULL };
static const char *const F_QR[] = { "libqrencode.so", NULL };
static const char *const F_HTTP[] = { "libhttp_parser.so", NULL };
static const char *const F_ARGON2[] = { "libargon2.so", NULL };
static const char *const F_SSH2[] = { "libssh2.so", NULL };
static const char *const F_IDN2[] = { "libidn2.so", NULL };
static const char *const F_BROTLI[] = { "libbrotlidec.so",
                                        "libbrotlicommon.so", NULL };
static const char *const F_NGHTTP2[] = { "libnghttp2.so", NULL };
static const char *const F_ZSTD[] = { "libzstd.so", NULL };

/* The table, with every version read now. */
static size_t sbom_libs(struct sbom_lib *l, size_t max)
{
    const struct sbom_lib t[] = {
        { "openssl", "OpenSSL_version()", F_OPENSSL, "", 0 },
        { "sqlite", "sqlite3_libversion()", F_SQLITE, "", 0 },
        { "jansson", "jansson_version_str()", F_JANSSON, "", 0 },
        { "zlib", "zlibVersion()", F_ZLIB, "", 0 },
        { "glibc", "gnu_get_libc_version()", F_GLIBC, "", 0 },
        { "curl", "curl_version_info()", F_CURL, "", 0 },
        { "libpq", "PQlibVersion()", F_PQ, "", 0 },
        { "libseccomp", "seccomp_version()", F_SECCOMP, "", 0 },
        { "libqrencode", "QRcode_APIVersionString()", F_QR, "", 0 },
        { "http-parser", "http_parser_version()", F_HTTP, "", 0 },
        { "argon2", "none: libargon2 has no version call", F_ARGON2, "",
          0 },
        { "libssh2", "curl_version_info()", F_SSH2, "", 1 },
        { "libidn2", "curl_version_info()", F_IDN2, "", 1 },
        { "brotli", "curl_version_info()", F_BROTLI, "", 1 },
        { "nghttp2", "curl_version_info()", F_NGHTTP2, "", 1 },
        { "zstd", "curl_version_info()", F_ZSTD, "", 1 },
    };
    size_t n = sizeof(t) / sizeof(t[0]) < max ? sizeof(t) / sizeof(t[0])
                                               : max;
    memcpy(l, t, n * sizeof(*l));
    snprintf(l[0].version, VERSION_MAX, "%s",
             OpenSSL_version(OPENSSL_VERSION_STRING));
    snprintf(l[1].version, VERSION_MAX, "%s", sqlite3_libversion());
    snprintf(l[2].version, VERSION_MAX, "%s", jansson_version_str());
    snprintf(l[3].version, VERSION_MAX, "%s", zlibVersion());
    snprintf(l[4].version, VERSION_MAX, "%s", gnu_get_libc_version());
    store_pg_lib_version(l[6].version, VERSION_MAX);
    sandbox_seccomp_version(l[7].version, VERSION_MAX);
    snprintf(l[8].version, VERSION_MAX, "%s", web_qr_lib_version());
    http1_lib_version(l[9].version, VERSION_MAX);
    struct net_lib_version cv[16];
    size_t ncv = net_client_lib_versions(cv, 16);
    for (size_t i = 0; i < ncv; i++)
        for (size_t j = 0; j < n; j++)
            if (strcmp(cv[i].name, l[j].name) == 0)
                snprintf(l[j].version, VERSION_MAX, "%s", cv[i].version);
    return n;
}

/* ---- the loaded files ---------------------------------------------------------- */

struct sbom_files {
    const char *path[SBOM_FILES_MAX];
    size_t n;
};

static int sbom_file_seen(struct dl_phdr_info *info, size_t size, void *arg)
{
    (void)size;
    struct sbom_files *f = arg;
    const char *p = info->dlpi_name;
    if (p && p[0] == '/' && f->n < SBOM_FILES_MAX)
        f->path[f->n++] = p;        /* the linker's string: lives on */
    return 0;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

/* The library of l[0..n) a file belongs to, or -1. */
static int sbom_owner(const struct sbom_lib *l, size_t n, const char *path)
{
    const char *b = base_name(path);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; l[i].files[k]; k++)
            if (strncmp(b, l[i].files[k], strlen(l[i].files[k])) == 0)
                return (int)i;
    return -1;
}

/* ---- text ---------------------------------------------------------------------- */

void sbom_print_text(FILE *out)
{
    struct sbom_lib l[24];
    size_t n = sbom_libs(l, 24);
    for (size_t i = 0; i < n; i++)
        fprintf(out, "%s %s%s\n", l[i].name,
                l[i].version[0] ? l[i].version : "unknown (no version call)",
                l[i].via_curl ? " (through curl)" : "");
}

/* ---- CycloneDX ----------------------------------------------------------------- */

/* SHA-256 of the file at path as hex into hex (65 bytes): 0 or -1. */
static int sbom_sha256(const char *path, char hex[65], struct error *err)
{
    FILE *f = fopen(path, "rbe");
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char buf[65536], md[32];
    size_t got;
    int ok = f && c && EVP_DigestInit_ex(c, EVP_sha256(), NULL);
    while (ok && (got = fread(buf, 1, sizeof(buf), f)) > 0)
        ok = EVP_DigestUpdate(c, buf, got);
    ok = ok && !ferror(f) && EVP_DigestFinal_ex(c, md, NULL);
    if (f)
        fclose(f);
    EVP_MD_CTX_free(c);
    if (!ok)
        return error_set(err, "cannot read %s to hash it", path);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return 0;
}

/* A "file" component for path (its SHA-256 and where it is). */
static json_t *sbom_file(const char *path, const char *type,
                         struct error *err)
{
    char hex[65];
    if (sbom_sha256(path, hex, err) < 0)
        return NULL;
    return json_pack("{s:s, s:s, s:s, s:[{s:s, s:s}], s:[{s:s, s:s}]}",
                     "type", type, "bom-ref", path, "name", base_name(path),
                     "hashes", "alg", "SHA-256", "content", hex,
                     "properties", "name", "wharf:path", "value", path);
}

/* The component of library l, its loaded files nested in it. */
static json_t *sbom_lib_json(const struct sbom_lib *l)
{
    char purl[200];
    json_t *c = json_pack("{s:s, s:s, s:s, s:[{s:s, s:s}], s:[]}", "type",
                          "library", "bom-ref", l->name, "name", l->name,
                          "properties", "name", "wharf:version-from",
                          "value", l->from, "components");
    if (c && l->version[0]) {
        snprintf(purl, sizeof(purl), "pkg:generic/%s@%s", l->name,
                 l->version);
        json_object_set_new(c, "version", json_string(l->version));
        json_object_set_new(c, "purl", json_string(purl));
    }
    return c;
}

/* The libraries' components and the loaded files into comps; the refs of
 * the libraries linked directly into direct, of those reached through
 * curl into via_curl. 0 or -1 with err. */
static int sbom_components(json_t *comps, json_t *direct, json_t *via_curl,
                           struct error *err)
{
    struct sbom_lib l[24];
    size_t n = sbom_libs(l, 24);
    json_t *lib[24] = { NULL };
    struct sbom_files f = { .n = 0 };
    dl_iterate_phdr(sbom_file_seen, &f);
    for (size_t i = 0; i < f.n; i++) {
        int o = sbom_owner(l, n, f.path[i]);
        if (o >= 0 && lib[o] == NULL) {
            lib[o] = sbom_lib_json(&l[o]);
            json_array_append_new(comps, lib[o]);
            json_array_append_new(l[o].via_curl ? via_curl : direct,
                                  json_string(l[o].name));
        }
        json_t *file = sbom_file(f.path[i], o >= 0 ? "file" : "library",
                                 err);
        if (file == NULL)
            return -1;
        json_array_append_new(o >= 0 ? json_object_get(lib[o], "components")
                              : comps, file);
    }
    return 0;
}

json_t *sbom_json(struct error *err)
{
    char id[ID_LEN + 1], now[32], serial[64], exe[65];
    id_new(id);
    time_iso(time_now_ms(), now, sizeof(now));
    snprintf(serial, sizeof(serial), "urn:uuid:%s", id);
    if (sbom_sha256("/proc/self/exe", exe, err) < 0)
        return NULL;
    json_t *direct = json_array(), *via_curl = json_array();
    json_t *bom = json_pack(
        "{s:s, s:s, s:s, s:i, s:{s:s, s:{s:[{s:s, s:s, s:s}]}, s:{s:s, "
        "s:s, s:s, s:s, s:[{s:s, s:s}]}}, s:[]}",
        "bomFormat", "CycloneDX", "specVersion", "1.5", "serialNumber",
        serial, "version", 1, "metadata", "timestamp", now, "tools",
        "components", "type", "application", "name", "wharf", "version",
        WHARF_VERSION, "component", "type", "application", "bom-ref",
        "wharf", "name", "wharf", "version", WHARF_VERSION, "hashes", "alg",
        "SHA-256", "content", exe, "components");
    if (bom == NULL || direct == NULL || via_curl == NULL ||
        sbom_components(json_object_get(bom, "components"), direct,
                        via_curl, err) < 0) {
        if (bom == NULL || direct == NULL || via_curl == NULL)
            error_set(err, "out of memory");
        json_decref(bom);
        json_decref(direct);
        json_decref(via_curl);
        return NULL;
    }
    json_object_set_new(bom, "dependencies", json_pack(
        "[{s:s, s:o}, {s:s, s:o}]", "ref", "wharf", "dependsOn", direct,
        "ref", "curl", "dependsOn", via_curl));
    return bom;
}
