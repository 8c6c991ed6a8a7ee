/*
 * pool.h — databases, users and pools: where waiting clients get a server.
 *
 * One Database per [databases] entry that clients used (entries reached
 * through the "*" fallback are created on first use), one PoolUser per
 * user name (for max_user_connections), one Pool per (database, user) — or
 * per database when the entry forces `user=`.  A pool owns its servers and
 * a FIFO of waiting clients.  Pools live until shutdown, so worker jobs may
 * refer to them by pointer.
 *
 * Where a client gets a server: pool_request_server() (idle server, or a
 * new connection, or the FIFO), and pool_server_idle() (a released or new
 * server goes to the first waiting client before it goes idle).
 */
#ifndef PGFUNNEL_POOL_H
#define PGFUNNEL_POOL_H

#include "hmap.h"
#include "hosts.h"
#include "list.h"
#include "loop.h"
#include "params.h"
#include "prepared.h"
#include "stats.h"
#include "types.h"

/* A backend user as this loop knows it; its server count is shared (pooldir.h). */
typedef struct pool_user {
    ListNode node; /* loop->users */
    Loop *loop;
    char *name;                 /* key of loop->user_index */
    int pools;                  /* pools of this backend user; freed with the last one */
    struct user_shared *shared; /* pooldir.h: its server count over every loop */
} PoolUser;

/* Per pool (and summed per database) counters, as SHOW STATS reports them. */
typedef struct pool_stats {
    uint64_t xact_count, query_count, server_assignments;
    uint64_t bytes_in, bytes_out;              /* client->server, server->client */
    uint64_t xact_time, query_time, wait_time; /* usec */
    uint64_t logins, login_failures;
    uint64_t ps_client_parses, ps_server_parses, ps_binds; /* prepared statements */
} PoolStats;

/* What the freed pools of a database had counted, so its totals never go back. */
typedef struct retired_stats {
    PoolStats stats, newer, older; /* as Pool.stats / stats_newer / stats_older */
    PoolLatency latency;
} RetiredStats;

struct database {
    ListNode node; /* loop->databases */
    Loop *loop;
    char *name;   /* as clients name it; key of loop->db_index */
    bool auto_db; /* made from the "*" entry */
    /* connection settings, copied from the DbConf on creation and reload */
    char *dbname, *host, *user, *password, *connect_query;
    char *client_encoding, *datestyle, *timezone, *application_name;
    char *server_tls; /* the server_tls_* options in effect, as one string */
    char *port_list;  /* port=p1,p2,... or NULL */
    int port;
    HostList hosts; /* the hosts of `host`, their target_session_attrs and balancing (hosts.h) */
    int seen_generation; /* the shared generation when this loop last changed it */
    struct db_shared
        *shared;         /* pooldir.h: while the database has pools (server count, generation) */
    bool paused;         /* PAUSE: hold new queries */
    bool disabled;       /* DISABLE: refuse new clients */
    List pools;          /* Pool.db_node */
    Hmap pool_index;     /* Pool by backend user name */
    usec_t unused_since; /* an automatic database without pools: since when (for
                            autodb_idle_timeout) */
    RetiredStats retired;
    /* resolved host names, from the worker pool */
    char *hostaddr; /* comma list parallel to host, or NULL */
    usec_t resolved_at;
    bool resolving;
};

/*
 * One loop's part of a pool: its clients and servers.  What the parts of
 * one pool on every loop share (limits, hand-over demand, prepared
 * statements, pass-through credentials) is `shared` (pooldir.h).
 */
struct pool {
    ListNode db_node;
    Loop *loop;
    Database *db;
    struct pool_shared *shared;
    PoolUser *user; /* accounting for the backend user */
    char *username; /* backend user name; key of db->pool_index */
    /*
     * Clients and servers that point here (pool_ref/pool_unref; dropped when
     * they are freed, after the loop iteration).  A pool is freed only when
     * nothing points to it and it has been unused for autodb_idle_timeout.
     */
    int refs;
    usec_t unused_since;
    /* limits and mode resolved from the configuration (pool_apply_config) */
    int mode; /* PoolMode */
    int size, min_size, reserve_size, max_db, max_user;
    usec_t server_lifetime;
    /* servers */
    List connecting; /* CONNECTING and INTERNAL */
    List idle;       /* IDLE, most recently used first */
    List active;     /* ACTIVE */
    /* clients */
    List login_wait, idle_clients, waiting, active_clients;
    /* what a client is told at login; learned from the first server */
    ParamSet welcome;
    bool have_welcome;
    /* (server_login_retry: the last login failure is shared, pooldir.h) */
    PoolStats stats;
    PsRegistry *ps;                     /* &shared->ps: prepared statements of all clients */
    PoolStats stats_newer, stats_older; /* stats.c: snapshots of the last two stats_periods */
    PoolLatency latency;                /* stats.c: query/xact/wait histograms */
    int demand_waiting;  /* what this loop last published in shared->demand (hand-over) */
    int nudges_out;      /* loops asked for an idle server that have not answered yet */
    bool nudge_answered; /* they answered: the next launch connects without asking */
    usec_t demand_oldest;
};

/*
 * Find or create the pool for an authenticated client's database and user.
 * Returns NULL with a client-presentable error (sqlstate + message) when the
 * database is unknown or disabled.  Called only after authentication: what
 * it creates outlives the connection (until pool_janitor frees it unused).
 */
Pool *pool_for_client(Loop *loop, const char *dbname, const char *user, const char **sqlstate,
                      char *err, size_t errlen);

/* A client or server starts / stops pointing at the pool (see Pool.refs). */
void pool_ref(Pool *p);
void pool_unref(Pool *p);

/* A client finished authentication: log it in now or when params are known. */
void pool_client_login(Pool *pool, Client *c);
/* A logged-in client has a query: link a server now or queue it. */
void pool_request_server(Pool *pool, Client *c);
/* The client's transaction/session is over; the server goes back. */
void pool_release_server(Server *s);
/* A new or reset server is ready: give it to a waiting client or keep it idle. */
void pool_server_idle(Server *s);
/* Server login finished / failed (called by server.c). */
void pool_server_login_ok(Server *s);
/*
 * final: PostgreSQL refused the login (waiting clients fail with its error, and
 * new ones in the server_login_retry window too); otherwise clients stay
 * queued for the retry.
 */
void pool_server_login_failed(Pool *pool, const char *sqlstate, const char *msg, bool final);
/* The last login error while logins fail, for timeout messages; NULL when none. */
/* The pool's last login error while logins fail (into buf), or NULL. */
const char *pool_last_login_error(const Pool *pool, char *buf, size_t len);
/* RECONNECT or new settings: the next attempt happens now, not after server_login_retry. */
void pool_forget_login_failure(Pool *pool);
/*
 * server_fast_close: a session-mode server of an old database generation
 * (RECONNECT, changed settings) whose client is between transactions is
 * closed, and the client with it (FATAL, as PgBouncer).  Returns true then.
 */
bool pool_fast_close(Server *s);
/* An internal query finished (called by server.c). */
void pool_internal_done(Server *s, int kind, bool ok);
/*
 * Some host changed state or role (hosts.c after a check, on every loop; the
 * janitor for changes servers reported): pools of the databases using it
 * close idle servers that no longer fit and give waiting clients a server now.
 */
void pool_hosts_changed(Loop *loop);
/* Does the server still have the role its database's target_session_attrs asks for? */
bool pool_server_fits(const Server *s);
/* Servers of this loop's part of the pool, in any state. */
int pool_server_total(const Pool *pool);
/* Servers of the pool on every loop. */
int pool_server_total_all(const Pool *pool);
/* The database's generation (RECONNECT, changed settings): servers of an older one drain. */
int pool_generation(const Pool *pool);
/* Servers of the database / backend user on every loop (max_db/max_user_connections). */
int pool_db_servers(const Pool *pool);
int pool_user_servers(const Pool *pool);
/*
 * Hand-over between loops: a client starts or stops waiting (client.c), or
 * another loop asks for idle servers (loops.c message).  Cheap when one loop.
 */
void pool_demand_changed(Pool *pool);
/*
 * What SHOW POOLS and /metrics report of a pool, over every loop (the
 * caller has frozen the other loops: loops.h).  One definition of each
 * count, so the console and the metrics agree.
 */
typedef struct pool_counts {
    int cl_active;  /* linked to a server, or logged in and idle */
    int cl_waiting; /* queued for a server, or for the pool's first login */
    int sv_active, sv_idle;
    int sv_used;    /* running the reset query or the SETs for a client */
    int sv_tested;  /* running server_check_query */
    int sv_login;   /* connecting, or running connect_query */
    usec_t maxwait; /* how long the oldest waiting client has waited */
} PoolCounts;
void pool_counts_all(const Pool *pool, usec_t now, PoolCounts *out);
/* The loop's part of a pool another loop's part belongs to (NULL: none here). */
Pool *pool_shard_of(Loop *loop, const Pool *other);
/* Is this the first loop (by index) that has a part of the pool?  For rows over every loop. */
bool pool_first_shard(const Pool *pool);
/* Is this the first loop that knows the database / user?  Same purpose. */
bool pool_first_database(const Database *db);
bool pool_first_user(const PoolUser *user);
/* Servers of the database / user on every loop (SHOW DATABASES, SHOW USERS). */
int pool_database_servers(const Database *db);
int pool_user_servers_all(const PoolUser *user);

/* A closing server leaves the queue of idle servers to offer to other loops (server.c). */
void pool_offer_cancel(Server *s);
/* A server of the pool became idle (+1) or stopped being idle (-1) (server.c). */
void pool_idle_changed(Pool *pool, int delta);
/* RECONNECT of a database: bump its generation once, for every loop. */
void pool_database_bump_generation(Database *db);

/* Find a database by name; with create, also one that is configured but unused yet. */
Database *pool_database_get(Loop *loop, const char *name, bool create);

/* Periodic work: timeouts, idle servers, min_pool_size, reserve pool. */
void pool_janitor(Loop *loop, usec_t now);
/* Configuration was reloaded: refresh databases and pool limits. */
void pool_apply_config(Loop *loop);
void pool_free_all(Loop *loop);

#endif
