/*
 * sftp.h - what the SFTP connector exposes beyond its connector table: the
 * parser of the directory listings a partner's server sends (untrusted
 * input, fuzzed by tests/fuzz/fuzz_sftp_listing.c).
 */
#ifndef WHARF_SFTP_H
#define WHARF_SFTP_H

#include <stddef.h>

/* One line of a long listing ("-rw-r--r-- 1 u g SIZE Mon DD HH:MM name",
 * as OpenSSH's server sends it), parsed in place. 0 and the fields for a
 * regular file whose name is a plain file name (no '/', not "." or "..",
 * no control characters); -1 for anything else. *name points into line;
 * tm gets "Mon DD HH:MM" (cut to tmn). */
int sftp_parse_entry(char *line, long long *size, char *tm, size_t tmn,
                     char **name);

#endif
