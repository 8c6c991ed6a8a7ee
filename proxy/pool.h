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

typedef struct pool_user {
    ListNode node;    /* loop->users */
    char *name;       /* key of loop->user_index */
    int server_count; /* over all pools, for max_user_connections */
    int pools;        /* pools of this backend user; freed with the last one */
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
    HostList hosts;   /* the hosts of `host`, their target_session_attrs and balancing (hosts.h) */
    int generation;   /* bumped when connection settings change: old servers drain */
    bool paused;      /* PAUSE: hold new queries */
    bool disabled;    /* DISABLE: refuse new clients */
    List pools;       /* Pool.db_node */
    Hmap pool_index;  /* Pool by backend user name */
    int server_count; /* for max_db_connections */
    usec_t unused_since; /* an automatic database without pools: since when (for
                            autodb_idle_timeout) */
    RetiredStats retired;
    /* resolved host names, from the worker pool */
    char *hostaddr; /* comma list parallel to host, or NULL */
    usec_t resolved_at;
    bool resolving;
};

struct pool {
    ListNode db_node;
    Loop *loop;
    Database *db;
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
    /* server_login_retry: the last login failure (last_failure 0 = none since a success) */
    usec_t last_failure;
    bool failure_final; /* PostgreSQL refused the login: new clients fail at once */
    char failure_sqlstate[6];
    char *failure_msg;
    PoolStats stats;
    PsRegistry ps;                      /* prepared statements of all clients, by text and types */
    PoolStats stats_newer, stats_older; /* stats.c: snapshots of the last two stats_periods */
    PoolLatency latency;                /* stats.c: query/xact/wait histograms */
    /*
     * Pass-through (passthrough.h): the stored secret and ClientKey the last
     * logins proved, for new servers of the pool.  Owned; replaced when a
     * login proves a different secret; wiped when the pool is freed.  Never
     * set for a database with a forced user (it has its own password).
     */
    PassCred *pass_cred;
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
const char *pool_last_login_error(const Pool *pool);
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
 * Some host changed state or role (hosts.c after a check; the janitor for
 * changes servers reported): pools of the databases using it close idle
 * servers that no longer fit and give waiting clients a server now.
 */
void pool_hosts_changed(Loop *loop);
/* Does the server still have the role its database's target_session_attrs asks for? */
bool pool_server_fits(const Server *s);
/* Total servers of the pool in any state. */
int pool_server_total(const Pool *pool);

/* Find a database by name; with create, also one that is configured but unused yet. */
Database *pool_database_get(Loop *loop, const char *name, bool create);

/* Periodic work: timeouts, idle servers, min_pool_size, reserve pool. */
void pool_janitor(Loop *loop, usec_t now);
/* Configuration was reloaded: refresh databases and pool limits. */
void pool_apply_config(Loop *loop);
void pool_free_all(Loop *loop);

#endif
