/*
 * notify.h - notifications of alerts and incidents (R19), only where the
 * customer points them (R7): e-mail over SMTP with TLS required, a
 * webhook POST signed with HMAC-SHA256 and a timestamp, syslog (RFC
 * 5424). wharf.conf names the destinations and the lowest level each
 * channel takes (security_conf.h); nothing is configured by default, so
 * nothing is sent.
 *
 * What is sent: every entry of the security timeline (a state change of
 * an alert: opened, changed level, acknowledged, escalated, resolved; of
 * an incident: opened, updated, escalated, closed) whose level reaches
 * the channel's. The timeline is the outbox: each channel keeps a cursor
 * (the settings notify_cursor_email, _webhook, _syslog) that moves past
 * an entry only once it was sent (or was below the channel's level), so
 * a failed send is retried (backoff 5 s doubling to 5 min) and a kill -9
 * loses nothing (an entry may go twice, never zero times). A channel
 * configured for the first time starts at the newest entry of the moment
 * serve starts (or reloads wharf.conf with it).
 *
 * Credentials (the SMTP login "user:password", the webhook's HMAC key)
 * are read once from a 0600 file by `wharf notify credentials CHANNEL
 * FILE`, sealed by the vault into a setting (notify_email_credentials,
 * notify_webhook_secret; re-sealed by `wharf key rotate`), and unsealed
 * through the vault API at send time (under serve: by the key process).
 * No message carries a credential or a payload byte.
 */
#ifndef WHARF_NOTIFY_H
#define WHARF_NOTIFY_H

#include <stdint.h>

#include "util/error.h"

struct wharf;
struct store;
struct security_conf;

#define NOTIFY_EMAIL_CONTEXT "notify:email"
#define NOTIFY_WEBHOOK_CONTEXT "notify:webhook"
#define NOTIFY_EMAIL_SETTING "notify_email_credentials"
#define NOTIFY_WEBHOOK_SETTING "notify_webhook_secret"

/* One pass: each configured channel sends what waits for it (at most a
 * batch), unless it is backing off. Returns the number of entries sent. */
int notify_round(struct wharf *w, struct store *st,
                 const struct security_conf *c, int64_t now_ms);

/* Give every configured channel that has no cursor yet one at the newest
 * entry (serve start: what happens from then on is sent). */
void notify_start_cursors(struct store *st, const struct security_conf *c);

/* Forget the backoff of every channel (serve start, tests). */
void notify_reset(void);

/* Send a test notification to channel ("email", "webhook", "syslog") now,
 * ignoring its level: 0, or -1 with err saying what failed. */
int notify_test(struct wharf *w, struct store *st,
                const struct security_conf *c, const char *channel,
                struct error *err);

/* Seal the credentials of channel ("email": "user:password"; "webhook":
 * the HMAC key, 16 bytes or more) from file (mode 0600 or stricter) into
 * the setting, replacing any. 0, or -1 with err (never the contents). */
int notify_credentials_set(struct wharf *w, struct store *st,
                           const char *channel, const char *file,
                           struct error *err);

#endif
