/*
 * sbom.h - the software bill of materials of `wharf version` (R10):
 * every library Wharf links, with the version that library reports at run
 * time, and every shared object this process has loaded (its path and
 * SHA-256), so that what is listed is what runs, not what was built
 * against.
 */
#ifndef WHARF_SECURITY_SBOM_H
#define WHARF_SECURITY_SBOM_H

#include <jansson.h>
#include <stdio.h>

#include "util/error.h"

/* The libraries, one "NAME VERSION" line each (`wharf version --deps`),
 * to out. A library without a version call says so. */
void sbom_print_text(FILE *out);

/* The bill of materials as CycloneDX 1.5 JSON (`wharf version --sbom`):
 * the wharf binary (metadata.component, its SHA-256), each library as a
 * component (version, how it was read, purl) whose files are nested
 * components (path, SHA-256), the loaded objects that belong to none as
 * components of their own, and what depends on what. New reference, or
 * NULL with err (a file that cannot be read and hashed). */
json_t *sbom_json(struct error *err);

#endif
