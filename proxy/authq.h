/*
 * authq.h — auth_query lookups over a few kept backend connections.
 *
 * auth.c asks for a user's secret with authq_lookup(); the answer comes
 * back later, on the loop thread, through the callback.  The query runs
 * with blocking libpq on the worker pool, each job holding one connection.
 *
 * Bounds (why this module exists): at most AUTHQ_RUNNING_MAX lookups run at
 * once, whatever the number of logins; the others wait in one FIFO, so a
 * flood of unknown user names cannot fan out into backend connections.
 * Connections are kept after a lookup (at most AUTHQ_IDLE_MAX, keyed by
 * their connection string, least recently used dropped first) and reused,
 * closed after server_idle_timeout unused or on any error.  Results are
 * never cached: a changed password or VALID UNTIL counts at the next login.
 *
 * The bounds hold for the process: every lookup runs on loop 0's Authq
 * (one asked on another loop is posted there, and the answer posted back).
 *
 * Ownership: loop 0 owns the Authq (loop->authq); a connection belongs to
 * the idle list or to the one job using it; a request to the Authq until
 * its answer, then to the asking loop until the callback returned.
 */
#ifndef PGFUNNEL_AUTHQ_H
#define PGFUNNEL_AUTHQ_H

#include "types.h"

#define AUTHQ_RUNNING_MAX 4  /* lookups running at once (each on a worker) */
#define AUTHQ_IDLE_MAX    16 /* connections kept between lookups */

typedef enum {
    AUTHQ_FOUND = 1,     /* a row with a secret */
    AUTHQ_NO_SECRET = 2, /* a row with a NULL / empty secret: the role exists, no password */
    AUTHQ_NOT_FOUND = 0, /* no row */
    AUTHQ_ERROR = -1,    /* the connection or the query failed: sqlstate, message */
} AuthqStatus;

typedef struct authq_result {
    AuthqStatus status;
    char *secret; /* AUTHQ_FOUND: owned by the callee during the callback, wiped after */
    char sqlstate[6];
    char message[256];
    bool query_failed; /* AUTHQ_ERROR from the query itself (not the connection) */
} AuthqResult;

/* Runs on the loop thread, once per lookup (also -ECANCELED at shutdown: status ERROR). */
typedef void (*authq_done_fn)(Loop *loop, uint32_t client_id, const AuthqResult *res);

/*
 * Look `user` up with `query` ($1 = user) over a connection made from
 * `conninfo` (a libpq connection string; it may hold a password and is
 * wiped).  Returns 0, or -1 when out of memory (then done() never runs).
 */
int authq_lookup(Loop *loop, const char *conninfo, const char *query, const char *user,
                 uint32_t client_id, authq_done_fn done) WUR;

/* Janitor: close kept connections unused for longer than max_idle (usec). */
void authq_janitor(Loop *loop, usec_t now, usec_t max_idle);

/* Counters for SHOW / metrics. */
typedef struct authq_stats {
    uint64_t lookups, errors, connects;
    int running, queued, idle;
} AuthqStats;
void authq_get_stats(Loop *loop, AuthqStats *out);

/* Shutdown: close kept connections and free the module (after the worker pool is gone). */
void authq_free(Loop *loop);

#endif
