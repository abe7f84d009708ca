/*
 * detectors.h - the rules that raise alerts (R19), each on by default
 * with the threshold of wharf.conf (security_conf.h):
 *
 *   auth.ban, auth.locked     an address banned / a user name locked after
 *                             repeated authentication failures (from the
 *                             audit entries "ban" and "login.throttle");
 *   config.change             flow import, user, role, token, certificate,
 *                             setting, key and wharf.conf changes (info);
 *   integrity.payload/sealed  a payload or sealed value that fails its
 *                             integrity check (the vault's hook);
 *   connector.failing         a source whose polls have all failed for
 *                             alert_connector_failing_seconds (from
 *                             core/health.h), resolved when a poll works;
 *   delivery.failing          a destination whose deliveries have all
 *                             failed that long, resolved by a delivery;
 *   connector.left_out        a connector that could not be opened;
 *   message.failed            a message parked as failed (per connector);
 *   audit.broken              `audit verify` (CLI, API, serve every
 *                             alert_audit_verify_seconds) found a break;
 *   cert.expiry               a certificate within 30/14/7/1 days of its
 *                             end, or past it (alert_cert_days);
 *   disk.low                  the data dir's file system under
 *                             alert_disk_free_percent free.
 * The AS2 connector raises as2.mdn, as2.mdn_missing, as2.refused and
 * as2.mdn_out itself, the partner listener partner.unknown_route.
 */
#ifndef WHARF_DETECTORS_H
#define WHARF_DETECTORS_H

#include <stdbool.h>
#include <stdint.h>

struct store;
struct wharf;
struct audit_event;
struct audit_report;
struct security_conf;

/* The audit trail's observer (audit_set_observer): bans, locked logins
 * and configuration changes. */
void detect_audit_entry(struct store *st, const struct audit_event *e);

/* The vault's integrity hook (vault_set_integrity_hook): queued, written
 * by detect_flush (the hook may run inside a caller's transaction). */
void detect_integrity(const char *what, const char *id, const char *problem);

/* Write what detect_integrity queued, through st (no transaction open). */
void detect_flush(struct store *st);

/* One committed outcome of a hop (the engine, after its commit; st its
 * connection, no transaction open). */
enum detect_hop { DETECT_HOP_SENT, DETECT_HOP_WAIT, DETECT_HOP_RETRY,
                  DETECT_HOP_PARKED };
void detect_hop(struct store *st, const char *connector, enum detect_hop what,
                const char *msgid, const char *error);

/* The result of audit_verify (rc as it returned: 0 intact, 1 broken):
 * raise or resolve audit.broken. */
void detect_audit_result(struct store *st, int rc,
                         const struct audit_report *r);

/* One round of the periodic rules at now_ms: this node's own (its
 * sources and connectors, deliveries, disk, listeners' certificate) and,
 * when lead (st leads STORE_LEAD_DETECT: one node of a cluster), the
 * cluster's (stored certificates; the audit trail when audit is true).
 * Called by one thread only (it keeps the per-node alerts it raised). */
void detect_run(struct wharf *w, struct store *st,
                const struct security_conf *c, int64_t now_ms, bool audit,
                bool lead);

/* Forget the delivery tracker (tests, serve start). */
void detect_reset(void);

#endif
