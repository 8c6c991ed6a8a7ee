/*
 * params.h — session parameters tracked per client and per server.
 *
 * A client's set holds what its session should look like (startup packet,
 * then every ParameterStatus its own SETs produced); a server's set holds
 * what the backend currently has.  Before a client's messages reach a
 * server, params_diff_sql() writes the SET/RESET statements that make the
 * server look like the client's session.  Names compare case-insensitively
 * (GUC names do); the stored spelling is the first one seen.
 */
#ifndef PGFUNNEL_PARAMS_H
#define PGFUNNEL_PARAMS_H

#include "types.h"

typedef struct param {
    char *name;
    char *value;
    char *startup; /* the startup-packet value (often the same string as value), or NULL */
} Param;

struct param_set {
    Param *v;
    int n, cap;
    uint32_t gen; /* bumped on every change: lets callers cache a fingerprint */
};

void params_init(ParamSet *ps);
void params_free(ParamSet *ps);
const char *params_get(const ParamSet *ps, const char *name);
int params_set(ParamSet *ps, const char *name, const char *value) WUR;
void params_unset(ParamSet *ps, const char *name);
int params_copy(ParamSet *dst, const ParamSet *src) WUR;

/*
 * Remember the current values as the session's startup values (what RESET
 * ALL returns to), sharing the strings, and later go back to them.
 */
void params_mark_startup(ParamSet *ps);
void params_restore_startup(ParamSet *ps);
/* The same for one name (RESET name); and the startup value of a name, or NULL. */
void params_restore_startup_one(ParamSet *ps, const char *name);
const char *params_get_startup(const ParamSet *ps, const char *name);

/* The parameters PostgreSQL reports with ParameterStatus that a pooler must keep per client. */
bool params_is_reported_tracked(const char *name);
/* Parameters that must never be SET by the pooler (read-only or connection-level). */
bool params_is_startup_only(const char *name);

/*
 * Fingerprints of a session state, to skip params_diff_sql when a server
 * already looks like the client (the usual case): the state a client wants
 * (its values, else the pool defaults, '' for application_name) and the
 * state a server has (its reported values plus what the pooler applied).
 * Equal fingerprints mean nothing to SET.
 */
uint64_t params_want_fp(const ParamSet *client, const ParamSet *defaults);
uint64_t params_have_fp(const ParamSet *server, const ParamSet *applied);

/*
 * Append to `sql` (size len) the statements that turn a server whose state is
 * `server` into the client's session `client`, considering:
 *   - the reported tracked names (client_encoding, DateStyle, ...): the client
 *     value, or for application_name an absent value means '' ;
 *   - every other name in the client set (startup extras, track_extra_parameters);
 *   - names the pooler set on the server for an earlier client that this client
 *     lacks: RESET.
 * `applied` (server side) records the non-reported names the pooler has set.
 * Returns the number of statements, or -1 if sql is too small.
 */
int params_diff_sql(const ParamSet *client, const ParamSet *server, const ParamSet *applied,
                    const ParamSet *defaults, char *sql, size_t len) WUR;

#endif
