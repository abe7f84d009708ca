/*
 * rbac.c - roles, permissions and the one permission table of Wharf (R14).
 *
 * Owns the table below and the names of roles and permissions. Every API
 * route names one permission and asks rbac_allows(); nothing else in Wharf
 * may decide what a role can do.
 *
 * The roles (issue 3, section 7):
 *   admin     everything.
 *   operator  runs the exchange: flows, connectors (and testing them),
 *             messages with payloads, resend, metrics. May NOT erase a
 *             message: erasure is irreversible and a privacy decision (R9),
 *             so it belongs to administrators. No users, tokens, sessions of
 *             others, keys, settings or audit trail.
 *   auditor   reads everything, including payloads and the audit trail, and
 *             changes nothing (not even "test connection", which contacts a
 *             partner).
 *   viewer    reads flows and message status; no payloads, no metrics.
 * Security operations (R19, issue 12): auditors read alerts and incidents,
 * operators also acknowledge alerts, administrators escalate them and run
 * the investigations, incidents and breaches.
 * Own sessions (list, revoke, log out) are always allowed to their owner;
 * session.read/session.write cover other users' sessions.
 *
 * Must never: allow anything that is not written in the table (deny by
 * default, also for out-of-range values), or be bypassed by a route.
 */
#include "auth/auth.h"

#include <string.h>

#define Y 1     /* allowed */
#define N 0     /* denied  */

static const unsigned char TABLE[PERM_COUNT][ROLE_COUNT] = {
    /*                          admin operator auditor viewer */
    [PERM_FLOW_READ]        = { Y,    Y,       Y,      Y },
    [PERM_FLOW_WRITE]       = { Y,    Y,       N,      N },
    [PERM_CONNECTOR_TEST]   = { Y,    Y,       N,      N },
    [PERM_MESSAGE_READ]     = { Y,    Y,       Y,      Y },
    [PERM_PAYLOAD_READ]     = { Y,    Y,       Y,      N },
    [PERM_MESSAGE_RESEND]   = { Y,    Y,       N,      N },
    [PERM_MESSAGE_ERASE]    = { Y,    N,       N,      N },
    [PERM_USER_READ]        = { Y,    N,       Y,      N },
    [PERM_USER_WRITE]       = { Y,    N,       N,      N },
    [PERM_TOKEN_READ]       = { Y,    N,       Y,      N },
    [PERM_TOKEN_WRITE]      = { Y,    N,       N,      N },
    [PERM_SESSION_READ]     = { Y,    N,       Y,      N },
    [PERM_SESSION_WRITE]    = { Y,    N,       N,      N },
    [PERM_SETTINGS_READ]    = { Y,    N,       Y,      N },
    [PERM_SETTINGS_WRITE]   = { Y,    N,       N,      N },
    [PERM_AUDIT_READ]       = { Y,    N,       Y,      N },
    [PERM_KEY_WRITE]        = { Y,    N,       N,      N },
    [PERM_METRICS_READ]     = { Y,    Y,       Y,      N },
    [PERM_ALERT_READ]       = { Y,    Y,       Y,      N },
    [PERM_ALERT_ACK]        = { Y,    Y,       N,      N },
    [PERM_INCIDENT_WRITE]   = { Y,    N,       N,      N },
};

#undef Y
#undef N

static const char *const ROLE_NAMES[ROLE_COUNT] = {
    [ROLE_ADMIN] = "admin",
    [ROLE_OPERATOR] = "operator",
    [ROLE_AUDITOR] = "auditor",
    [ROLE_VIEWER] = "viewer",
};

static const char *const PERM_NAMES[PERM_COUNT] = {
    [PERM_FLOW_READ] = "flow.read",
    [PERM_FLOW_WRITE] = "flow.write",
    [PERM_CONNECTOR_TEST] = "connector.test",
    [PERM_MESSAGE_READ] = "message.read",
    [PERM_PAYLOAD_READ] = "payload.read",
    [PERM_MESSAGE_RESEND] = "message.resend",
    [PERM_MESSAGE_ERASE] = "message.erase",
    [PERM_USER_READ] = "user.read",
    [PERM_USER_WRITE] = "user.write",
    [PERM_TOKEN_READ] = "token.read",
    [PERM_TOKEN_WRITE] = "token.write",
    [PERM_SESSION_READ] = "session.read",
    [PERM_SESSION_WRITE] = "session.write",
    [PERM_SETTINGS_READ] = "settings.read",
    [PERM_SETTINGS_WRITE] = "settings.write",
    [PERM_AUDIT_READ] = "audit.read",
    [PERM_KEY_WRITE] = "key.write",
    [PERM_METRICS_READ] = "metrics.read",
    [PERM_ALERT_READ] = "alert.read",
    [PERM_ALERT_ACK] = "alert.ack",
    [PERM_INCIDENT_WRITE] = "incident.write",
};

bool rbac_allows(enum role role, enum perm perm)
{
    /* Compare as unsigned so a negative value is out of range too. */
    if ((unsigned)role >= ROLE_COUNT || (unsigned)perm >= PERM_COUNT)
        return false;
    return TABLE[perm][role] == 1;
}

const char *rbac_role_name(enum role role)
{
    return (unsigned)role < ROLE_COUNT ? ROLE_NAMES[role] : NULL;
}

int rbac_role_parse(const char *name, enum role *out)
{
    if (name == NULL)
        return -1;
    if (strcmp(name, "administrator") == 0) {
        *out = ROLE_ADMIN;
        return 0;
    }
    for (int r = 0; r < ROLE_COUNT; r++)
        if (strcmp(name, ROLE_NAMES[r]) == 0) {
            *out = (enum role)r;
            return 0;
        }
    return -1;
}

const char *rbac_perm_name(enum perm perm)
{
    return (unsigned)perm < PERM_COUNT ? PERM_NAMES[perm] : NULL;
}

int rbac_perm_parse(const char *name, enum perm *out)
{
    if (name == NULL)
        return -1;
    for (int p = 0; p < PERM_COUNT; p++)
        if (strcmp(name, PERM_NAMES[p]) == 0) {
            *out = (enum perm)p;
            return 0;
        }
    return -1;
}

bool rbac_role_covers(enum role holder, enum role granted)
{
    if ((unsigned)holder >= ROLE_COUNT || (unsigned)granted >= ROLE_COUNT)
        return false;
    for (int p = 0; p < PERM_COUNT; p++)
        if (rbac_allows(granted, (enum perm)p) &&
            !rbac_allows(holder, (enum perm)p))
            return false;
    return true;
}

enum role rbac_role_meet(enum role a, enum role b)
{
    if ((unsigned)a >= ROLE_COUNT || (unsigned)b >= ROLE_COUNT)
        return ROLE_COUNT;
    /* among the roles both cover, the one that covers all the others */
    for (int r = 0; r < ROLE_COUNT; r++) {
        if (!rbac_role_covers(a, (enum role)r) ||
            !rbac_role_covers(b, (enum role)r))
            continue;
        int top = 1;
        for (int o = 0; o < ROLE_COUNT && top; o++)
            if (rbac_role_covers(a, (enum role)o) &&
                rbac_role_covers(b, (enum role)o))
                top = rbac_role_covers((enum role)r, (enum role)o);
        if (top)
            return (enum role)r;
    }
    return ROLE_COUNT;
}
