/*
 * sandbox_probe.c - a stand-in for `wharf serve` after its sandbox, for
 * tests/e2e/test_r22_sandbox.py (R22).
 *
 *   sandbox_probe [--keys] DATA STEP...
 *
 * Opens the data dir as serve does (wharf_open: the keystore is read),
 * calls the same sandbox_drop_root and sandbox_enter from libwharf (with
 * --keys: sandbox_keys, the key process's), then runs each STEP in order
 * and prints one line per step:
 *   read:PATH    open(PATH, O_RDONLY)            "read PATH: ok" or errno
 *   write:PATH   open(PATH, O_WRONLY | O_CREAT)  "write PATH: ok" or errno
 *   status       Uid, NoNewPrivs, Seccomp, CapEff of /proc/self/status
 *   mount        mount(2) a tmpfs (seccomp must kill the process)
 *   exec         execve("/bin/true") (seccomp must kill the process)
 *   tcp          socket(AF_INET, SOCK_STREAM) (killed in the key process's)
 *   idle         sched_setscheduler(0, SCHED_IDLE) "idle: ok" or errno (the
 *                large lane's threads)
 *   rt           sched_setscheduler(0, SCHED_FIFO, 1) (seccomp must kill)
 * Exits 0 after the last step, 1 when the sandbox could not be entered.
 * Owns nothing; must never be linked into wharf.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/sandbox.h"
#include "core/wharf.h"

static void probe_open(const char *what, const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC, 0600);
    if (fd >= 0) {
        printf("%s %s: ok\n", what, path);
        close(fd);
    } else {
        printf("%s %s: %s\n", what, path, strerrorname_np(errno));
    }
}

static void probe_status(void)
{
    static const char *const keys[] = { "Uid:", "NoNewPrivs:", "Seccomp:",
                                        "CapEff:" };
    FILE *f = fopen("/proc/self/status", "r");
    char line[512];
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
            if (strncmp(line, keys[i], strlen(keys[i])) == 0)
                fputs(line, stdout);
    if (f != NULL)
        fclose(f);
}

static int probe_step(const char *step)
{
    if (strncmp(step, "read:", 5) == 0) {
        probe_open("read", step + 5, O_RDONLY);
    } else if (strncmp(step, "write:", 6) == 0) {
        probe_open("write", step + 6, O_WRONLY | O_CREAT);
    } else if (strcmp(step, "status") == 0) {
        probe_status();
    } else if (strcmp(step, "mount") == 0) {
        fflush(stdout);
        int rc = mount("none", "/mnt", "tmpfs", 0, NULL);
        printf("mount: survived (%s)\n", rc == 0 ? "ok"
                                                  : strerrorname_np(errno));
    } else if (strcmp(step, "exec") == 0) {
        fflush(stdout);
        char *const argv[] = { "true", NULL };
        execv("/bin/true", argv);
        printf("exec: survived (%s)\n", strerrorname_np(errno));
    } else if (strcmp(step, "tcp") == 0) {
        fflush(stdout);
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        printf("tcp: survived (%s)\n", fd >= 0 ? "ok"
                                                : strerrorname_np(errno));
        if (fd >= 0)
            close(fd);
    } else if (strcmp(step, "idle") == 0 || strcmp(step, "rt") == 0) {
        fflush(stdout);
        int rt = step[0] == 'r';
        struct sched_param sp = { .sched_priority = rt ? 1 : 0 };
        int rc = sched_setscheduler(0, rt ? SCHED_FIFO : SCHED_IDLE, &sp);
        printf("%s: %s%s\n", step, rt ? "survived " : "",
               rc == 0 ? "ok" : strerrorname_np(errno));
    } else {
        fprintf(stderr, "sandbox_probe: unknown step %s\n", step);
        return -1;
    }
    fflush(stdout);
    return 0;
}

/* serve's two steps, or with keys the key process's one. */
static int probe_enter(struct wharf *w, int keys, struct error *err)
{
    if (keys)
        return sandbox_keys(w, err);
    return sandbox_drop_root(w, err) < 0 ? -1 : sandbox_enter(w, err);
}

int main(int argc, char **argv)
{
    int keys = argc > 1 && strcmp(argv[1], "--keys") == 0;
    if (argc < 3 + keys) {
        fprintf(stderr, "usage: sandbox_probe [--keys] DATA STEP...\n");
        return 2;
    }
    struct error err = {0};
    struct wharf *w = wharf_open(argv[1 + keys], &err);
    if (w == NULL || probe_enter(w, keys, &err) < 0) {
        fprintf(stderr, "sandbox_probe: %s\n", err.msg);
        return 1;
    }
    printf("sandbox: entered\n");
    fflush(stdout);                 /* a step may be killed */
    for (int i = 2 + keys; i < argc; i++)
        if (probe_step(argv[i]) < 0)
            return 2;
    wharf_close(w);
    return 0;
}
