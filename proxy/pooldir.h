/*
 * pooldir.h — what the pools of every event loop share.
 *
 * Each loop has its own Database, PoolUser and Pool objects (pool.h) with
 * its own lists of clients and servers: the hot path touches nothing else.
 * What must be one over all loops lives here, one object per database, per
 * backend user and per (database, user) pool:
 *
 *  - server counts for the limits (pool_size + reserve, max_db_connections,
 *    max_user_connections), as atomics: pooldir_acquire() before a server
 *    connects, pooldir_release() when it is gone.  A limit is never
 *    exceeded, whichever loops open servers at the same time.
 *  - the database generation (RECONNECT, changed settings), so a server
 *    that moves between loops still knows whether it is stale.
 *  - demand for hand-over: per loop, how many clients wait and since when,
 *    and how many idle servers it has (atomics, read without a lock).  A
 *    loop that releases a server, or is asked to, gives an idle server to
 *    the loop whose client has waited longest (pool.c, pool_handover).
 *  - the prepared-statement registry (prepared.c; it has its own lock), so
 *    a statement name means the same on every loop and a moved server's
 *    statements stay valid;
 *  - pass-through credentials learned at a client login on any loop;
 *  - the last server login failure (server_login_retry), so every loop
 *    waits out the retry window and answers with the cached error;
 *  - the parameters of the first server login, for clients of a loop whose
 *    first server came from another loop (its parameters may carry a SET).
 *
 * Ownership: the LoopSet owns the directory; each per-loop Pool holds a
 * reference to its PoolShared (so does a server in transit between loops),
 * and the last reference frees it.  The directory lock protects the maps
 * and reference counts; PoolShared.lock protects the credentials, the
 * login failure and the welcome parameters.
 */
#ifndef PGFUNNEL_POOLDIR_H
#define PGFUNNEL_POOLDIR_H

#include <pthread.h>
#include <stdatomic.h>

#include "hmap.h"
#include "params.h"
#include "loops.h"
#include "prepared.h"
#include "types.h"

typedef struct pooldir Pooldir;
typedef struct pass_cred PassCred;

typedef struct db_shared {
    char *name;
    atomic_int servers;    /* every server of the database, every loop */
    atomic_int generation; /* bumped when its servers must be replaced */
    atomic_uint host_turn; /* HostList.turn of its host list on every loop (hosts.h) */
    Hmap pools;            /* PoolShared by backend user (directory lock) */
    int refs;              /* its pools (directory lock) */
} DbShared;

typedef struct user_shared {
    char *name;
    atomic_int servers; /* every server of the backend user */
    int refs;
} UserShared;

typedef struct loop_demand {
    atomic_int waiting;  /* clients of that loop waiting for a server of the pool */
    atomic_llong oldest; /* wait_start of its oldest waiting client (0: none) */
    atomic_int idle;     /* idle servers of the pool on that loop */
    atomic_int incoming; /* servers handed to it, not yet arrived */
} LoopDemand;

/* server_login_retry: the pool's last server login failure, on any loop */
typedef struct login_failure {
    usec_t at;  /* 0: none since the last successful login */
    bool final; /* PostgreSQL refused the login: clients fail at once */
    char sqlstate[6];
    char msg[256];
} LoginFailure;

typedef struct pool_shared {
    char *username; /* backend user; key of db->pools */
    DbShared *db;
    UserShared *user;
    atomic_int servers; /* every server of this pool, every loop (pool_size) */
    atomic_int refs;    /* per-loop Pools and servers in transit */
    atomic_int waiting; /* sum of demand[].waiting: the hot path reads only this */
    pthread_mutex_t lock;
    PassCred *cred;       /* lock */
    LoginFailure fail;    /* lock */
    ParamSet welcome;     /* lock: the parameters of the pool's first server login */
    bool have_welcome;    /* lock */
    atomic_llong fail_at; /* fail.at, read without the lock */
    PsRegistry ps;
    LoopDemand demand[LOOPS_MAX];
} PoolShared;

Pooldir *pooldir_create(void) WUR;
void pooldir_free(Pooldir *dir);

/* The shared part of pool (db, backend user), created on first use; +1 reference. */
PoolShared *pooldir_get(Pooldir *dir, const char *db, const char *user) WUR;
void pooldir_ref(PoolShared *ps);
void pooldir_put(Pooldir *dir, PoolShared *ps);

/*
 * Count one more server if the pool, its database and its user are all
 * under their limits (0 = unlimited for db and user).  true: counted, the
 * caller connects and later calls pooldir_release.
 */
bool pooldir_acquire(PoolShared *ps, int pool_max, int db_max, int user_max) WUR;
void pooldir_release(PoolShared *ps);

/*
 * Pass-through credentials: keep a copy (replacing a different one), and a
 * copy of what is kept for a new server (NULL when none).
 */
/* true when it changed */
bool pooldir_cred_keep(PoolShared *ps, const PassCred *cred);
PassCred *pooldir_cred_copy(PoolShared *ps) WUR;

/* A server login failed / succeeded (forgets the failure) on some loop. */
void pooldir_login_failed(PoolShared *ps, const char *sqlstate, const char *msg, bool final);
void pooldir_login_ok(PoolShared *ps);
/* When the last failure was (0: none since a success); no lock. */
usec_t pooldir_failure_at(PoolShared *ps);
/* A copy of the last failure; false (out zeroed) when there is none. */
bool pooldir_failure(PoolShared *ps, LoginFailure *out);

/*
 * What clients are told at login (ParameterStatus), learned from the pool's
 * first server login on any loop: keep a copy (the first one stays), copy
 * it out (false when none yet, or out of memory).
 */
void pooldir_welcome_keep(PoolShared *ps, const ParamSet *welcome);
bool pooldir_welcome_copy(PoolShared *ps, ParamSet *out) WUR;

/*
 * Clients logged in per database and per login user, over every loop, for
 * max_db_client_connections and max_user_client_connections (PgBouncer
 * 1.24).  A client enters both after it authenticated and leaves when it is
 * freed; an entry lives while a client counts in it.
 */
typedef enum { COUNT_DATABASE, COUNT_USER } CountKind;
typedef struct client_count ClientCount;

/* Count one more client of `name` if that stays within max (0 = unlimited): the entry, or NULL when
 * full (*full set) or out of memory. */
ClientCount *pooldir_count_enter(Pooldir *dir, CountKind kind, const char *name, int max,
                                 bool *full) WUR;
void pooldir_count_leave(Pooldir *dir, ClientCount *cc);
/* Clients counted for `name` now (SHOW DATABASES / USERS). */
int pooldir_count_of(Pooldir *dir, CountKind kind, const char *name);

/* Visit every pool (for SHOW under a freeze); fn may not change the directory. */
void pooldir_foreach(Pooldir *dir, void (*fn)(PoolShared *ps, void *arg), void *arg);

#endif
