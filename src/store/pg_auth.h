/*
 * pg_auth.h - the PostgreSQL twins of auth_store.h (pg_auth.c): users,
 * recovery codes, sessions, API tokens, the login throttle and the replay
 * guard. Included only by sqlite_auth.c (which hands each call over on a
 * PostgreSQL store) and pg_auth.c. Behaviour, return codes and ownership:
 * exactly as auth_store.h says for the store_ function of the same name.
 * One reading for a cluster: in pgs_replay_claim, "left pending by an
 * earlier run" is a pending claim of a run that no connection holds alive
 * any more (pg_auth.c's RUN_LOCK); a live node's pending claim is refused.
 */
#ifndef WHARF_PG_AUTH_H
#define WHARF_PG_AUTH_H

#include "store/auth_store.h"

struct pg_store;

int pgs_user_create(struct pg_store *p, const char *name, const char *role,
                    const char *password_hash, int must_change, int64_t now,
                    int64_t *id, struct error *err);
int pgs_user_get_by_name(struct pg_store *p, const char *name,
                         struct store_user *out, struct error *err);
int pgs_user_get_by_id(struct pg_store *p, int64_t id, struct store_user *out,
                       struct error *err);
int pgs_user_get_by_subject(struct pg_store *p, const char *subject,
                            struct store_user *out, struct error *err);
int pgs_user_set_subject(struct pg_store *p, int64_t id, const char *subject,
                         int64_t now, struct error *err);
int pgs_user_list(struct pg_store *p, struct store_user **out, size_t *n,
                  struct error *err);
int pgs_user_set_role(struct pg_store *p, int64_t id, const char *role,
                      int64_t now, struct error *err);
int pgs_user_set_password(struct pg_store *p, int64_t id, const char *hash,
                          int must_change, int64_t now, struct error *err);
int pgs_user_set_disabled(struct pg_store *p, int64_t id, int disabled,
                          int64_t now, struct error *err);
int pgs_user_set_totp(struct pg_store *p, int64_t id,
                      const unsigned char *sealed, size_t len, int64_t now,
                      struct error *err);
int pgs_user_enable_totp(struct pg_store *p, int64_t id, int64_t now,
                         struct error *err);
int pgs_user_totp_step(struct pg_store *p, int64_t id, int64_t step,
                       struct error *err);
int pgs_user_delete(struct pg_store *p, int64_t id, int64_t now,
                    int *tokens_revoked, struct error *err);
int64_t pgs_user_count_role(struct pg_store *p, const char *role,
                            struct error *err);

int pgs_recovery_replace(struct pg_store *p, int64_t user_id,
                         const char *const *hashes, size_t n, int64_t now,
                         struct error *err);
int pgs_recovery_consume(struct pg_store *p, int64_t user_id,
                         const char *hash, int64_t now, struct error *err);
int64_t pgs_recovery_left(struct pg_store *p, int64_t user_id,
                          struct error *err);
int pgs_recovery_clear(struct pg_store *p, int64_t user_id,
                       struct error *err);

int pgs_session_create(struct pg_store *p, const struct store_session *x,
                       struct error *err);
int pgs_session_get(struct pg_store *p, const char *id_hash,
                    struct store_session *out, struct error *err);
int pgs_session_touch(struct pg_store *p, const char *id_hash, int64_t now,
                      struct error *err);
int pgs_session_set_mfa(struct pg_store *p, const char *id_hash,
                        struct error *err);
int pgs_session_revoke(struct pg_store *p, const char *id_hash,
                       int64_t user_id, int64_t now, struct error *err);
int pgs_session_revoke_user(struct pg_store *p, int64_t user_id,
                            const char *keep, int64_t now, int *count,
                            struct error *err);
int pgs_session_list(struct pg_store *p, int64_t user_id, int64_t now,
                     struct store_session **out, size_t *n,
                     struct error *err);
int pgs_session_delete_expired(struct pg_store *p, int64_t now,
                               int64_t idle_before, int64_t revoked_before,
                               int *count, struct error *err);

int pgs_token_create(struct pg_store *p, const struct store_token *t,
                     const char *hash, struct error *err);
int pgs_token_get_by_hash(struct pg_store *p, const char *hash,
                          struct store_token *out, struct error *err);
int pgs_token_get(struct pg_store *p, const char *id, struct store_token *out,
                  struct error *err);
int pgs_token_touch(struct pg_store *p, const char *id, int64_t now,
                    struct error *err);
int pgs_token_revoke(struct pg_store *p, const char *id, int64_t now,
                     struct error *err);
int pgs_token_list(struct pg_store *p, struct store_token **out, size_t *n,
                   struct error *err);

int pgs_throttle_get(struct pg_store *p, const char *account,
                     struct store_throttle *out, struct error *err);
int pgs_throttle_update(struct pg_store *p, const char *account,
                        int (*update)(struct store_throttle *t, void *arg),
                        void *arg, int64_t now, int64_t prune_before,
                        struct error *err);
int pgs_throttle_clear(struct pg_store *p, const char *account,
                       struct error *err);

int pgs_replay_claim(struct pg_store *p, const char *scope, const char *sig,
                     int64_t until, const char *run, int64_t now,
                     struct error *err);
int pgs_replay_done(struct pg_store *p, const char *scope, const char *sig,
                    struct error *err);
int pgs_replay_release(struct pg_store *p, const char *scope, const char *sig,
                       const char *run, struct error *err);
int pgs_replay_prune(struct pg_store *p, int64_t now, struct error *err);

#endif
