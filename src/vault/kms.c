/*
 * kms.c - the keystore sealed under a KMS-wrapped key (kms.h, R15): the
 * file format, the AES-256-GCM of the keystore text, and running the
 * command (fork and exec, no shell; stdin, stdout and stderr on pipes;
 * killed when it overruns KMS_TIMEOUT_MS).
 *
 * Owns the command's path (a static copy) and, during a call, the KEK and
 * its hex form, wiped before returning. Must never put the KEK, the
 * keystore text or the command's stdout in an error or a log line (only
 * the first line of its stderr, which is the command's own words).
 */
#include "vault/kms.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "util/id.h"

#define KEK_LEN 32
#define NONCE_LEN 12
#define TAG_LEN 16
#define ERR_LINE_MAX 300

static char kms_cmd[1024];

void kms_set(const char *command)
{
    snprintf(kms_cmd, sizeof(kms_cmd), "%s", command ? command : "");
}

const char *kms_command(void)
{
    return kms_cmd;
}

int kms_check(const char *command, struct error *err)
{
    struct stat st;
    if (command[0] != '/')
        return error_set(err, "kms_command must be an absolute path, not "
                         "'%s'", command);
    if (stat(command, &st) != 0)
        return error_errno(err, errno, "kms_command %s", command);
    if (!S_ISREG(st.st_mode) || (st.st_mode & 0111) == 0)
        return error_set(err, "kms_command %s is not an executable file",
                         command);
    if (st.st_mode & 022)
        return error_set(err, "kms_command %s is writable by group or "
                         "others (mode %04o): whoever can change it gets "
                         "the master keys", command,
                         (unsigned)(st.st_mode & 07777));
    return 0;
}

int kms_is_sealed(const char *file, size_t len)
{
    size_t n = strlen(KMS_MAGIC);
    return len > n && memcmp(file, KMS_MAGIC, n) == 0 && file[n] == '\n';
}

/* ---- running the command ------------------------------------------------------ */

struct kms_run {
    char out[KMS_BLOB_MAX + 2];
    size_t nout;
    char err[ERR_LINE_MAX];
    size_t nerr;
};

/* Read what fd has into buf (at most cap bytes kept): 0 at its end, 1
 * when more may come, -1 on an error. */
static int kms_drain(int fd, char *buf, size_t *n, size_t cap)
{
    char tmp[1024];
    ssize_t got = read(fd, tmp, sizeof(tmp));
    if (got < 0)
        return errno == EINTR || errno == EAGAIN ? 1 : -1;
    size_t k = (size_t)got < cap - *n ? (size_t)got : cap - *n;
    memcpy(buf + *n, tmp, k);
    *n += k;
    OPENSSL_cleanse(tmp, sizeof(tmp));
    return got == 0 ? 0 : 1;
}

/* stdout and stderr of the child until both end or the deadline. */
static int kms_collect(int out, int errfd, struct kms_run *r)
{
    struct pollfd p[2] = { { out, POLLIN, 0 }, { errfd, POLLIN, 0 } };
    int64_t end = time_mono_ms() + KMS_TIMEOUT_MS;
    while (p[0].fd >= 0 || p[1].fd >= 0) {
        int64_t left = end - time_mono_ms();
        if (left <= 0 || (poll(p, 2, (int)left) < 0 && errno != EINTR))
            return -1;
        for (int i = 0; i < 2; i++) {
            if (p[i].fd < 0 || p[i].revents == 0)
                continue;
            int rc = i == 0 ? kms_drain(p[0].fd, r->out, &r->nout,
                                        sizeof(r->out) - 1)
                            : kms_drain(p[1].fd, r->err, &r->nerr,
                                        sizeof(r->err) - 1);
            if (rc <= 0)
                p[i].fd = -1;
        }
    }
    return 0;
}

/* In the child: the pipes as its stdio and the signals as a new program
 * expects them (the key process starts with its signals blocked, and a
 * blocked mask survives exec), then the command. */
static void kms_child(const char *verb, int in, int out, int errfd)
{
    sigset_t none;
    sigemptyset(&none);
    signal(SIGPIPE, SIG_DFL);
    sigprocmask(SIG_SETMASK, &none, NULL);
    dup2(in, 0);
    dup2(out, 1);
    dup2(errfd, 2);
    char *const argv[] = { kms_cmd, (char *)verb, NULL };
    execv(kms_cmd, argv);
    _exit(127);
}

/* The reason a run failed, from the status and its stderr's first line. */
static int kms_failed(const char *verb, int status, struct kms_run *r,
                      int timed_out, struct error *err)
{
    r->err[r->nerr] = '\0';
    r->err[strcspn(r->err, "\r\n")] = '\0';
    if (timed_out)
        return error_set(err, "kms_command %s %s gave no answer within %d "
                         "s (killed)", kms_cmd, verb, KMS_TIMEOUT_MS / 1000);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127 && !r->err[0])
        return error_set(err, "kms_command %s cannot be run", kms_cmd);
    return error_set(err, "kms_command %s %s failed (%s %d)%s%s", kms_cmd,
                     verb, WIFEXITED(status) ? "exit" : "signal",
                     WIFEXITED(status) ? WEXITSTATUS(status)
                                       : WTERMSIG(status),
                     r->err[0] ? ": " : "", r->err);
}

/* Run the command with verb, line (and an LF) on its stdin; its stdout,
 * trimmed, into r->out. 0, or -1 with err. */
static int kms_run(const char *verb, const char *line, struct kms_run *r,
                   struct error *err)
{
    int pin[2], pout[2], perr[2];
    if (kms_cmd[0] == '\0')
        return error_set(err, "the keystore is sealed by a KMS, but "
                         "wharf.conf has no kms_command (init and restore: "
                         "--kms-command)");
    if (pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) ||
        pipe2(perr, O_CLOEXEC))
        return error_errno(err, errno, "kms_command: pipe");
    pid_t pid = fork();
    if (pid == 0)
        kms_child(verb, pin[0], pout[1], perr[1]);
    close(pin[0]);
    close(pout[1]);
    close(perr[1]);
    if (pid < 0) {
        close(pin[1]);
        close(pout[0]);
        close(perr[0]);
        return error_errno(err, errno, "kms_command: fork");
    }
    sigset_t s, old;
    sigemptyset(&s);
    sigaddset(&s, SIGPIPE);             /* a command that exits early */
    pthread_sigmask(SIG_BLOCK, &s, &old);
    size_t n = strlen(line);
    int wrote = write(pin[1], line, n) == (ssize_t)n &&
                write(pin[1], "\n", 1) == 1;
    close(pin[1]);
    struct timespec now = { 0, 0 };
    while (sigtimedwait(&s, NULL, &now) == SIGPIPE)
        ;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    int timed_out = kms_collect(pout[0], perr[0], r) < 0;
    close(pout[0]);
    close(perr[0]);
    if (timed_out)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (timed_out || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return kms_failed(verb, status, r, timed_out, err);
    if (!wrote)
        return error_set(err, "kms_command %s %s did not read its input",
                         kms_cmd, verb);
    while (r->nout > 0 && strchr(" \t\r\n", r->out[r->nout - 1]))
        r->nout--;
    r->out[r->nout] = '\0';
    return 0;
}

/* ---- the file ----------------------------------------------------------------- */

/* One AES-256-GCM pass over in[0..n) into out, aad bound; the tag written
 * (enc) or checked. 0 or -1. */
static int kms_gcm(int enc, const unsigned char *kek,
                   const unsigned char *nonce, const char *aad, size_t naad,
                   const unsigned char *in, size_t n, unsigned char *out,
                   unsigned char *tag)
{
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int len = 0, ok = c != NULL;
    ok = ok && EVP_CipherInit_ex(c, EVP_aes_256_gcm(), NULL, kek, nonce,
                                 enc) == 1;
    ok = ok && EVP_CipherUpdate(c, NULL, &len, (const unsigned char *)aad,
                                (int)naad) == 1;
    ok = ok && EVP_CipherUpdate(c, out, &len, in, (int)n) == 1;
    if (!enc)
        ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN,
                                       tag) == 1;
    ok = ok && EVP_CipherFinal_ex(c, out + len, &len) == 1;
    if (enc)
        ok = ok && EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN,
                                       tag) == 1;
    EVP_CIPHER_CTX_free(c);
    return ok ? 0 : -1;
}

static int kms_blob_ok(const char *s)
{
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if (s[i] <= ' ' || s[i] > '~')
            return 0;
    return n > 0 && n <= KMS_BLOB_MAX;
}

int kms_seal(const char *text, size_t len, char *out, size_t outsz,
             size_t *outlen, struct error *err)
{
    unsigned char kek[KEK_LEN], nonce[NONCE_LEN];
    char hex[2 * KEK_LEN + 1];
    struct kms_run r = { .nout = 0 };
    size_t body = NONCE_LEN + len + TAG_LEN;
    unsigned char *raw = malloc(body);
    int rc = raw && RAND_bytes(kek, KEK_LEN) == 1 &&
             RAND_bytes(nonce, NONCE_LEN) == 1
             ? 0 : error_set(err, "cannot draw a key for the keystore");
    for (int i = 0; rc == 0 && i < KEK_LEN; i++)
        snprintf(hex + 2 * i, 3, "%02x", kek[i]);
    if (rc == 0)
        rc = kms_run("wrap", hex, &r, err);
    if (rc == 0 && !kms_blob_ok(r.out))
        rc = error_set(err, "kms_command %s wrap answered no usable line "
                       "(printable, no spaces, at most %d bytes)", kms_cmd,
                       KMS_BLOB_MAX);
    int head = rc == 0 ? snprintf(out, outsz, "%s\nkek %s\n", KMS_MAGIC,
                                  r.out) : 0;
    if (rc == 0 && ((size_t)head + 6 + 4 * (body / 3 + 1) + 2 > outsz))
        rc = error_set(err, "the sealed keystore would be too large");
    if (rc == 0) {
        memcpy(raw, nonce, NONCE_LEN);
        rc = kms_gcm(1, kek, nonce, out, (size_t)head,
                     (const unsigned char *)text, len, raw + NONCE_LEN,
                     raw + NONCE_LEN + len) == 0
             ? 0 : error_set(err, "cannot encrypt the keystore");
    }
    if (rc == 0) {
        memcpy(out + head, "body ", 5);
        int b = EVP_EncodeBlock((unsigned char *)out + head + 5, raw,
                                (int)body);
        out[head + 5 + b] = '\n';
        *outlen = (size_t)head + 5 + (size_t)b + 1;
    }
    OPENSSL_cleanse(kek, sizeof(kek));
    OPENSSL_cleanse(hex, sizeof(hex));
    free(raw);
    return rc;
}

/* The value of line "NAME VALUE\n" at *p (advanced past it), or NULL. */
static const char *kms_field(const char **p, const char *end,
                             const char *name, size_t *vlen)
{
    size_t n = strlen(name);
    const char *nl = memchr(*p, '\n', (size_t)(end - *p));
    if (nl == NULL || (size_t)(nl - *p) <= n + 1 ||
        memcmp(*p, name, n) != 0 || (*p)[n] != ' ')
        return NULL;
    const char *v = *p + n + 1;
    *vlen = (size_t)(nl - v);
    *p = nl + 1;
    return v;
}

/* The KEK the command unwraps from blob[0..n). 0 or -1. */
static int kms_unwrap(const char *blob, size_t n, unsigned char *kek,
                      struct error *err)
{
    char line[KMS_BLOB_MAX + 1];
    struct kms_run r = { .nout = 0 };
    snprintf(line, sizeof(line), "%.*s", (int)n, blob);
    int rc = kms_run("unwrap", line, &r, err);
    for (int i = 0; rc == 0 && i < KEK_LEN; i++) {
        unsigned x;
        if (r.nout != 2 * KEK_LEN || sscanf(r.out + 2 * i, "%2x", &x) != 1)
            rc = error_set(err, "kms_command %s unwrap did not answer 64 "
                           "hex digits", kms_cmd);
        else
            kek[i] = (unsigned char)x;
    }
    OPENSSL_cleanse(&r, sizeof(r));
    return rc;
}

int kms_open(const char *file, size_t len, const char *path, char *out,
             size_t outsz, size_t *outlen, struct error *err)
{
    const char *p = file + strlen(KMS_MAGIC) + 1, *end = file + len;
    size_t nblob = 0, nbody = 0;
    const char *blob = kms_field(&p, end, "kek", &nblob);
    size_t head = (size_t)(p - file);
    const char *body = blob ? kms_field(&p, end, "body", &nbody) : NULL;
    if (body == NULL || nblob > KMS_BLOB_MAX || nbody % 4 != 0 ||
        nbody / 4 * 3 > outsz + NONCE_LEN + TAG_LEN + 3 || p != end)
        return error_set(err, "keystore %s is malformed (a KMS-sealed "
                         "keystore has the lines %s, kek and body)", path,
                         KMS_MAGIC);
    unsigned char kek[KEK_LEN];
    unsigned char *raw = malloc(nbody / 4 * 3 + 1);
    int n = raw ? EVP_DecodeBlock(raw, (const unsigned char *)body,
                                  (int)nbody) : -1;
    if (n > 0)
        n -= (nbody > 0 && body[nbody - 1] == '=') +
             (nbody > 1 && body[nbody - 2] == '=');
    int rc = n >= NONCE_LEN + TAG_LEN ? 0
             : error_set(err, "keystore %s is malformed (its body)", path);
    size_t clen = rc == 0 ? (size_t)n - NONCE_LEN - TAG_LEN : 0;
    if (rc == 0 && clen + 1 > outsz)
        rc = error_set(err, "keystore %s is too large", path);
    if (rc == 0)
        rc = kms_unwrap(blob, nblob, kek, err);
    if (rc == 0 && kms_gcm(0, kek, raw, file, head, raw + NONCE_LEN, clen,
                           (unsigned char *)out, raw + NONCE_LEN + clen) != 0)
        rc = error_set(err, "keystore %s cannot be decrypted with the key "
                       "kms_command %s unwrapped (tampered with, or another "
                       "KMS key)", path, kms_cmd);
    if (rc == 0) {
        out[clen] = '\0';
        *outlen = clen;
    }
    OPENSSL_cleanse(kek, sizeof(kek));
    if (raw)
        OPENSSL_cleanse(raw, (size_t)(n > 0 ? n : 0));
    free(raw);
    return rc;
}
