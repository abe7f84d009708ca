/*
 * pg_partners.h - the PostgreSQL statements of partner_store.h
 * (pg_partners.c). Included only by sqlite_partners.c (which hands each
 * public entry point over on a PostgreSQL store) and pg_partners.c.
 * Behaviour, return codes and ownership are those partner_store.h
 * documents for the function of the same name. (store_partners_write and
 * store_partners_read have no twin: pg.c writes and reads the profile,
 * partners and certificates inside store_flow_put / store_flow_get.)
 */
#ifndef WHARF_PG_PARTNERS_H
#define WHARF_PG_PARTNERS_H

#include "store/partner_store.h"

struct pg_store;

int pgs_certs_list(struct pg_store *p, const char *owner, int with_keys,
                   struct store_cert **out, size_t *n, struct error *err);
int pgs_cert_add(struct pg_store *p, const struct store_cert *c,
                 const char *partner_config, struct error *err);
int pgs_receipt_add(struct pg_store *p, const struct store_receipt *r,
                    struct error *err);
int pgs_receipts_list(struct pg_store *p, const char *message_id,
                      int with_body, struct store_receipt **out, size_t *n,
                      struct error *err);
int pgs_refusal_record(struct pg_store *p, const struct store_refusal *r,
                       char id[ID_LEN + 1], int64_t *count,
                       struct error *err);

#endif
