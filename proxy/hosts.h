/*
 * hosts.h — backend hosts: health, role, background checks, and which hosts
 * a new server connection tries.
 *
 * A [databases] entry may list several hosts (`host=h1,h2,h3`, optional
 * `port=p1,p2,p3`), as PgBouncer and libpq allow.  Each distinct host:port is
 * one Host in the loop's registry, shared by every database that names it,
 * so a primary used by ten databases is checked once and SHOW HOSTS lists it
 * once.  A Host knows:
 *   - its state (up, down, unknown) from the background checks: hosts of a
 *     multi-host entry (or of one with target_session_attrs other than
 *     `any`) are checked every host_check_interval — connect, then
 *     `SELECT pg_is_in_recovery()` on a kept connection — on the worker pool;
 *   - its role (primary, standby) from those checks and from what its server
 *     connections report (in_hot_standby at login and as ParameterStatus
 *     when a standby is promoted), whichever is newer;
 *   - how many server connections are open to it.
 *
 * Choosing hosts (hosts_pick): libpq still makes the connection, with the
 * database's target_session_attrs, but from a host list pgfunnel orders
 * itself: hosts known down are left out, so are hosts whose known role can
 * never match (a standby for read-write or primary, a primary for standby),
 * standbys go first for prefer-standby, and the list starts at the next host
 * for load_balance_hosts = round-robin (libpq 15 has no load_balance_hosts)
 * or stays on one host until a connection fails (disable).  When no host is
 * usable the pool does not try at all: its clients wait, and the hosts are
 * checked every HOSTS_FAST_CHECK until one becomes usable; a change of any
 * host's state or role wakes the pools at once (pool_hosts_changed) instead
 * of after server_login_retry.
 *
 * Threads.  One registry serves every event loop (loops_create makes it;
 * each Loop's `hosts` points to it), and loop 0 runs the checks.  State,
 * role, times, the server count and the change counter are atomics; lookups,
 * reference counts and the check fields (checked, checking, recheck,
 * next_check, wanted_until, the check's login and kept connection) go
 * through the registry's mutex, since any loop's databases and servers set
 * them.  Another loop that suspects a host asks loop 0 to look now; a check
 * that changes a host tells every loop's pools (pool_hosts_changed), and a
 * pool also notices changes by comparing the sum of its hosts' change
 * counters with the one it last acted on (hosts_list_changes).  SHOW HOSTS
 * and /metrics read the registry with the loops frozen.
 *
 * Ownership: the registry owns Hosts; a HostList (in a Database), a Server
 * and a running check job each hold a reference.  The check connection
 * belongs to the Host between checks and to the job while it runs.  The
 * LoopSet owns the registry (hosts_registry_free after its loops).
 */
#ifndef PGFUNNEL_HOSTS_H
#define PGFUNNEL_HOSTS_H

#include <stdatomic.h>

#include "list.h"
#include "types.h"

typedef struct host Host;
typedef struct host_registry HostRegistry;

typedef enum { HOST_UNKNOWN = 0, HOST_UP, HOST_DOWN } HostState;
typedef enum { HOST_ROLE_UNKNOWN = 0, HOST_ROLE_PRIMARY, HOST_ROLE_STANDBY } HostRole;

/* While clients wait for a usable host, its hosts are checked this often. */
#define HOSTS_FAST_CHECK (250 * 1000)

struct host {
    /* immutable once created */
    char *name; /* as written in the host list: a name, an IP or a socket directory */
    int port;
    char *key; /* "name:port", the registry's key */
    /* shared (atomics): the owner's checks and every loop's servers write, anyone reads */
    atomic_int state;        /* HostState */
    atomic_int role;         /* HostRole */
    atomic_llong role_at;    /* when the role was learned (usec, monotonic) */
    atomic_llong last_check; /* when the last check ended; 0 = never */
    atomic_llong check_usec; /* how long it took */
    atomic_int servers;      /* server connections open to it */
    atomic_uint changes;     /* bumped whenever state or role changes */
    /* registry mutex */
    int refs;
    ListNode node; /* HostRegistry.hosts */
    /* owner loop only */
    bool checked;        /* a HostList wants it checked */
    bool checking;       /* a check job is in flight */
    bool recheck;        /* suspected while a check ran: check again at once */
    usec_t wanted_until; /* a pool found no usable host: check every HOSTS_FAST_CHECK until then */
    usec_t next_check;   /* monotonic */
    void *check_conn;    /* PGconn kept between checks */
    char *check_db, *check_user, *check_password; /* the check's login (password wiped) */
    char last_error[256];
};

/* The hosts of one database entry, in the order of its host list. */
typedef struct host_list {
    Host **v;
    int n;
    int tsa; /* TargetSessionAttrs */
    int lb;  /* LoadBalanceHosts */
    /*
     * Where the next pick starts (round-robin) or which host it sticks to
     * (disable): *turn when set — every loop has its own HostList of an
     * entry, and they take turns together (pool.c points it into the
     * database's shared part) — else next.
     */
    uint32_t next;
    atomic_uint *turn;
    unsigned seen; /* hosts_list_changes() when the pool last acted on it */
} HostList;

/* A pick: libpq's host, hostaddr and port lists (malloc'ed, comma-separated). */
typedef struct host_pick {
    char *host, *hostaddr, *port;
    int count;
} HostPick;

/*
 * Fill hl with the hosts of `host` (comma list, may be NULL: libpq's default
 * socket, no Host) and `port` / `port_list`.  `checked`: these hosts are
 * health-checked, logging in as user/password to dbname.  Returns 0 or -1
 * (out of memory; hl is then empty).
 */
int hosts_list_build(Loop *loop, HostList *hl, const char *host, int port, const char *port_list,
                     int tsa, int lb, bool checked, const char *dbname, const char *user,
                     const char *password) WUR;
void hosts_list_free(Loop *loop, HostList *hl);

/* Sum of the change counters of hl's hosts: differs from hl->seen after a change. */
unsigned hosts_list_changes(const HostList *hl);
/* A connection failed: sticky (disable) picks move to the next host; hosts are re-checked. */
void hosts_list_failed(Loop *loop, HostList *hl);

/*
 * The hosts a new connection should try, best first; hostaddr_list is the
 * database's resolved addresses (parallel to its host list) or NULL.
 * Returns the number of hosts (pick filled; free with hosts_pick_free), 0
 * when none is usable now (why says so; the hosts are then checked often),
 * -1 when out of memory.
 */
int hosts_pick(Loop *loop, HostList *hl, const char *hostaddr_list, HostPick *pick, char *why,
               size_t whylen) WUR;
void hosts_pick_free(HostPick *pick);

/* The Host of hl that libpq connected to (PQhost/PQport); NULL if none matches. */
Host *hosts_list_find(const HostList *hl, const char *name, const char *port);

/* A server connection to h opened / closed (counts it; the server holds a reference). */
void hosts_server_opened(Loop *loop, Host *h);
void hosts_server_closed(Loop *loop, Host *h);

/* A server on h reported in_hot_standby: the host's role as of now. */
void hosts_note_role(Loop *loop, Host *h, bool standby);

/* Something failed on h (a server connection broke): check it now. */
void hosts_suspect(Loop *loop, Host *h);

/*
 * Does a server on h, whose session reports in_hot_standby = standby_param
 * (-1 unknown) and default_transaction_read_only = read_only, suit hl's
 * target_session_attrs?  The host's role wins when it is newer.
 */
bool hosts_server_fits(const HostList *hl, const Host *h, int standby_param, bool read_only);

/* Loop 0, from the janitor or when asked: start the checks that are due (others: no-op). */
void hosts_tick(Loop *loop, usec_t now);

/* Iterate the registry (SHOW HOSTS, /metrics): the i-th host or NULL; with the loops frozen. */
const Host *hosts_at(Loop *loop, size_t i);
const char *hosts_state_name(int state);
const char *hosts_role_name(int role);

/* The registry of a loop set (loops_create), and its end after every loop (jobs completed). */
HostRegistry *hosts_registry_new(void) WUR;
void hosts_registry_free(HostRegistry *r);
/* A loop ends: it lets go of the registry (and frees it when it is a lone loop's own). */
void hosts_free_all(Loop *loop);

#endif
