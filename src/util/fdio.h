/*
 * fdio.h - whole reads and writes on a socket or pipe: the loops that
 * retry EINTR and short transfers, written once (the key process client,
 * the ssh-agent).
 */
#ifndef WHARF_FDIO_H
#define WHARF_FDIO_H

#include <stddef.h>

/* Send all n bytes of p on fd (a socket: MSG_NOSIGNAL, so a closed peer
 * is -1, not SIGPIPE). 0, or -1 (errno says why; 0 when the peer took
 * nothing). */
int fd_send_all(int fd, const void *p, size_t n);

/* Read exactly n bytes from fd into p. 0, or -1 on an error or when the
 * peer closed before n bytes. */
int fd_read_all(int fd, void *p, size_t n);

#endif
