/*
 * pool.c — databases, users, pools; where waiting clients get a server.
 *
 * Limits, in the order they are checked before a new backend connection is
 * opened: the pool's size (pool_size of [users], then of [databases], then
 * default_pool_size), plus reserve_pool_size once a client has waited
 * reserve_pool_timeout; max_db_connections over all pools of the database;
 * max_user_connections over all pools of the backend user.  When one of the
 * last two is reached, an idle server of another pool is closed to make room.
 *
 * A released or new server first goes to the oldest waiting client (FIFO);
 * only when nobody waits does it go idle.  Idle servers are reused most
 * recently used first, so the rest age out by server_idle_timeout.
 *
 * Several event loops: each has its own Pool objects (this file works on
 * one loop's); the counts the limits need live in the shared PoolShared
 * (pooldir.h) and are taken with pooldir_acquire before a connect, so a
 * limit holds over every loop.  When a pool is at its limit and a client
 * of loop B waits while loop A has an idle server (or releases one with
 * nobody waiting on A), A hands the server over to B (pool_handover): the
 * server leaves A's lists and events, travels in a message, and B adopts
 * it.  Waiters are served by the age of their oldest client over all loops.
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <openssl/crypto.h>

#include "auth.h"
#include "client.h"
#include "config.h"
#include "hosts.h"
#include "log.h"
#include "loops.h"
#include "passthrough.h"
#include "pool.h"
#include "pooldir.h"
#include "server.h"
#include "workq.h"

static char *xstrdup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static bool str_equal(const char *a, const char *b)
{
    if (!a || !b) return a == b;
    return strcmp(a, b) == 0;
}

/* ---------------------------------------------------------------- databases */

static void database_free_settings(Database *db)
{
    free(db->dbname);
    free(db->host);
    free(db->user);
    if (db->password) OPENSSL_cleanse(db->password, strlen(db->password));
    free(db->password);
    free(db->connect_query);
    free(db->client_encoding);
    free(db->datestyle);
    free(db->timezone);
    free(db->application_name);
    free(db->server_tls);
    free(db->port_list);
    hosts_list_free(db->loop, &db->hosts);
    db->port_list = NULL;
    db->dbname = db->host = db->user = db->password = db->connect_query = NULL;
    db->client_encoding = db->datestyle = db->timezone = db->application_name = NULL;
    db->server_tls = NULL;
}

/*
 * The server_tls_* options are part of every database's connection settings:
 * changing one (RELOAD or SET) retires the servers, as a changed entry does.
 */
static void database_server_tls(const Config *cfg, char *buf, size_t len)
{
    snprintf(buf, len, "%d|%s|%s|%s|%s|%s", cfg->server_tls_sslmode,
             cfg->server_tls_ca_file ? cfg->server_tls_ca_file : "",
             cfg->server_tls_key_file ? cfg->server_tls_key_file : "",
             cfg->server_tls_cert_file ? cfg->server_tls_cert_file : "",
             cfg->server_tls_protocols ? cfg->server_tls_protocols : "",
             cfg->server_tls_ciphers ? cfg->server_tls_ciphers : "");
}

/* Copy connection settings; returns true when they differ from the old ones. */
static bool database_load(Database *db, const DbConf *dc)
{
    const char *dbname = dc->dbname ? dc->dbname : (db->auto_db ? db->name : dc->name);
    bool changed =
        !str_equal(db->dbname, dbname) || !str_equal(db->host, dc->host) || db->port != dc->port ||
        !str_equal(db->user, dc->user) || !str_equal(db->password, dc->password) ||
        !str_equal(db->client_encoding, dc->client_encoding) ||
        !str_equal(db->datestyle, dc->datestyle) || !str_equal(db->timezone, dc->timezone) ||
        !str_equal(db->application_name, dc->application_name) ||
        !str_equal(db->connect_query, dc->connect_query);
    char tls[4096];
    Config *cfg = db->loop->cfg;
    int tsa = dc->target_session_attrs != CONF_UNSET ? dc->target_session_attrs
                                                     : cfg->target_session_attrs;
    int lb =
        dc->load_balance_hosts != CONF_UNSET ? dc->load_balance_hosts : cfg->load_balance_hosts;
    database_server_tls(cfg, tls, sizeof(tls));
    changed = changed || !str_equal(db->server_tls, tls) ||
              !str_equal(db->port_list, dc->port_list) || tsa != db->hosts.tsa ||
              lb != db->hosts.lb;
    if (!changed) return false;
    database_free_settings(db);
    db->dbname = xstrdup_or_null(dbname);
    db->host = xstrdup_or_null(dc->host);
    db->port = dc->port;
    db->user = xstrdup_or_null(dc->user);
    db->password = xstrdup_or_null(dc->password);
    db->connect_query = xstrdup_or_null(dc->connect_query);
    db->client_encoding = xstrdup_or_null(dc->client_encoding);
    db->datestyle = xstrdup_or_null(dc->datestyle);
    db->timezone = xstrdup_or_null(dc->timezone);
    db->application_name = xstrdup_or_null(dc->application_name);
    db->server_tls = strdup(tls);
    db->port_list = xstrdup_or_null(dc->port_list);
    /*
     * Health checks log in as the forced user, else as auth_user (password
     * from auth_file); without either they only connect (hosts.c), and the
     * role comes from what servers report.
     */
    const char *check_user = db->user                            ? db->user
                             : cfg->auth_user && *cfg->auth_user ? cfg->auth_user
                                                                 : NULL;
    const char *check_pw = db->user     ? db->password
                           : check_user ? auth_backend_password(db->loop, check_user)
                                        : NULL;
    if (hosts_list_build(db->loop, &db->hosts, db->host, db->port, db->port_list, tsa, lb, true,
                         db->dbname, check_user, check_pw) < 0)
        log_warning("database %s: out of memory for its host list", db->name);
    free(db->hostaddr);
    db->hostaddr = NULL;
    db->resolved_at = 0;
    return true;
}

static Database *database_find(Loop *loop, const char *name)
{
    return hmap_get(&loop->db_index, name);
}

static Database *database_create(Loop *loop, const char *name, const DbConf *dc)
{
    Database *db = calloc(1, sizeof(*db));
    if (!db || !(db->name = strdup(name))) {
        free(db);
        return NULL;
    }
    db->loop = loop;
    db->auto_db = strcmp(dc->name, "*") == 0;
    db->unused_since = loop_now(loop);
    list_init(&db->pools);
    if (hmap_put(&loop->db_index, db->name, db) < 0) {
        free(db->name);
        free(db);
        return NULL;
    }
    database_load(db, dc);
    list_append(&loop->databases, &db->node);
    return db;
}

static void database_free(Database *db)
{
    Loop *loop = db->loop;
    hmap_remove(&loop->db_index, db->name);
    list_remove(&loop->databases, &db->node);
    hmap_free(&db->pool_index);
    database_free_settings(db);
    free(db->hostaddr);
    free(db->name);
    free(db);
}

Database *pool_database_get(Loop *loop, const char *name, bool create)
{
    Database *db = database_find(loop, name);
    if (db || !create) return db;
    /* only a [databases] entry of that very name: "*" would make any word a database */
    const DbConf *dc = config_find_db(loop->cfg, name);
    return dc && strcmp(dc->name, name) == 0 ? database_create(loop, name, dc) : NULL;
}

/* The user's accounting object, created with its first pool (u->pools counts them). */
static PoolUser *pool_user_get(Loop *loop, const char *name)
{
    PoolUser *u = hmap_get(&loop->user_index, name);
    if (u) return u;
    u = calloc(1, sizeof(*u));
    if (u) u->loop = loop;
    if (!u || !(u->name = strdup(name)) || hmap_put(&loop->user_index, u->name, u) < 0) {
        if (u) free(u->name);
        free(u);
        return NULL;
    }
    list_append(&loop->users, &u->node);
    return u;
}

static void pool_user_put(Loop *loop, PoolUser *u)
{
    if (--u->pools > 0) return;
    hmap_remove(&loop->user_index, u->name);
    list_remove(&loop->users, &u->node);
    free(u->name);
    free(u);
}

/* Resolve mode and limits: [users] beats [databases] beats [pgbouncer]. */
static void pool_resolve_settings(Pool *p)
{
    Config *cfg = p->loop->cfg;
    const DbConf *dc = config_find_db(cfg, p->db->name);
    const UserConf *uc = config_find_user(cfg, p->username);
    p->mode = cfg->pool_mode;
    p->size = cfg->default_pool_size;
    p->min_size = cfg->min_pool_size;
    p->reserve_size = cfg->reserve_pool_size;
    p->max_db = cfg->max_db_connections;
    p->max_user = cfg->max_user_connections;
    p->server_lifetime = cfg->server_lifetime;
    if (dc) {
        if (dc->pool_mode != CONF_UNSET) p->mode = dc->pool_mode;
        if (dc->pool_size != CONF_UNSET) p->size = dc->pool_size;
        if (dc->min_pool_size != CONF_UNSET) p->min_size = dc->min_pool_size;
        if (dc->reserve_pool_size != CONF_UNSET) p->reserve_size = dc->reserve_pool_size;
        if (dc->max_db_connections != CONF_UNSET) p->max_db = dc->max_db_connections;
        if (dc->server_lifetime != CONF_UNSET) p->server_lifetime = dc->server_lifetime;
    }
    if (uc) {
        if (uc->pool_mode != CONF_UNSET) p->mode = uc->pool_mode;
        if (uc->pool_size != CONF_UNSET) p->size = uc->pool_size;
        if (uc->reserve_pool_size != CONF_UNSET) p->reserve_size = uc->reserve_pool_size;
        if (uc->max_user_connections != CONF_UNSET) p->max_user = uc->max_user_connections;
    }
}

/* The loop's pool of db for a backend user, created on first use; NULL when out of memory. */
static Pool *pool_get(Loop *loop, Database *db, const char *backend_user)
{
    Pool *p = hmap_get(&db->pool_index, backend_user);
    if (p) return p;
    p = calloc(1, sizeof(*p));
    if (!p || !(p->username = strdup(backend_user))) goto oom_pool;
    p->loop = loop;
    p->db = db;
    p->user = pool_user_get(loop, backend_user);
    if (!p->user) goto oom_pool;
    p->shared = pooldir_get(loop->set->dir, db->name, backend_user);
    if (!p->shared) goto oom_user;
    if (hmap_put(&db->pool_index, p->username, p) < 0) {
        pooldir_put(loop->set->dir, p->shared);
        goto oom_user;
    }
    p->ps = &p->shared->ps;
    p->user->shared = p->shared->user;
    if (!db->shared) {
        db->shared = p->shared->db;
        db->seen_generation = atomic_load(&db->shared->generation);
    }
    p->user->pools++;
    p->unused_since = loop_now(loop);
    list_init(&p->connecting);
    list_init(&p->idle);
    list_init(&p->active);
    list_init(&p->login_wait);
    list_init(&p->idle_clients);
    list_init(&p->waiting);
    list_init(&p->active_clients);
    params_init(&p->welcome);
    pool_resolve_settings(p);
    list_append(&db->pools, &p->db_node);
    db->unused_since = 0;
    return p;
oom_user:
    if (p->user->pools == 0) {
        p->user->pools = 1;
        pool_user_put(loop, p->user);
    }
oom_pool:
    if (p) free(p->username);
    free(p);
    return NULL;
}

Pool *pool_for_client(Loop *loop, const char *dbname, const char *user, const char **sqlstate,
                      char *err, size_t errlen)
{
    Database *db = database_find(loop, dbname);
    if (!db) {
        const DbConf *dc = config_find_db(loop->cfg, dbname);
        if (!dc) {
            *sqlstate = "3D000";
            snprintf(err, errlen, "no such database: %s", dbname);
            return NULL;
        }
        db = database_create(loop, dbname, dc);
        if (!db) goto oom;
    }
    if (db->disabled) {
        *sqlstate = "08P01";
        snprintf(err, errlen, "database \"%s\" is disabled", dbname);
        return NULL;
    }
    /* a forced user means one pool per database */
    Pool *p = pool_get(loop, db, db->user ? db->user : user);
    if (p) return p;
oom:
    *sqlstate = "53200";
    snprintf(err, errlen, "out of memory");
    return NULL;
}

/* This loop's part of a shared pool, if it has one. */
static Pool *pool_shard_find(Loop *loop, const PoolShared *ps)
{
    Database *db = database_find(loop, ps->db->name);
    return db ? hmap_get(&db->pool_index, ps->username) : NULL;
}

/* This loop's part of a shared pool, created if need be (a server arrives for it). */
static Pool *pool_shard(Loop *loop, const PoolShared *ps)
{
    Database *db = database_find(loop, ps->db->name);
    if (!db) {
        const DbConf *dc = config_find_db(loop->cfg, ps->db->name);
        if (!dc || !(db = database_create(loop, ps->db->name, dc))) return NULL;
    }
    return pool_get(loop, db, ps->username);
}

void pool_ref(Pool *p)
{
    p->refs++;
}

void pool_unref(Pool *p)
{
    if (--p->refs == 0) p->unused_since = loop_now(p->loop);
}

/* Add a freed pool's counters to its database's retired totals. */
static void pool_retire_stats(Pool *p)
{
    RetiredStats *r = &p->db->retired;
    stats_add(&r->stats, &p->stats);
    stats_add(&r->newer, &p->stats_newer);
    stats_add(&r->older, &p->stats_older);
    stats_hist_merge(&r->latency.query, &p->latency.query);
    stats_hist_merge(&r->latency.xact, &p->latency.xact);
    stats_hist_merge(&r->latency.wait, &p->latency.wait);
}

/* Free a pool that nothing points to any more (refs == 0, no servers, no clients). */
static void pool_free(Pool *p, bool retire)
{
    Database *db = p->db;
    if (retire) pool_retire_stats(p);
    hmap_remove(&db->pool_index, p->username);
    list_remove(&db->pools, &p->db_node);
    if (list_empty(&db->pools)) {
        db->unused_since = loop_now(p->loop);
        db->shared = NULL; /* freed with its last pool on every loop */
        db->hosts.turn = NULL;
    }
    pooldir_put(p->loop->set->dir, p->shared);
    params_free(&p->welcome);
    pool_user_put(p->loop, p->user);
    free(p->username);
    free(p);
}

int pool_server_total(const Pool *p)
{
    return p->connecting.count + p->idle.count + p->active.count;
}

int pool_server_total_all(const Pool *p)
{
    return atomic_load(&p->shared->servers);
}

int pool_generation(const Pool *p)
{
    return atomic_load(&p->shared->db->generation);
}

int pool_db_servers(const Pool *p)
{
    return atomic_load(&p->shared->db->servers);
}

int pool_user_servers(const Pool *p)
{
    return atomic_load(&p->shared->user->servers);
}

void pool_database_bump_generation(Database *db)
{
    if (!db->shared) return; /* no pool, so no server anywhere on this loop */
    /* one bump for every loop that saw the same generation before the change */
    int seen = db->seen_generation;
    atomic_compare_exchange_strong(&db->shared->generation, &seen, seen + 1);
    db->seen_generation = atomic_load(&db->shared->generation);
}

static Pool *pool_shard_find(Loop *loop, const PoolShared *ps);

/* ---------------------------------------------------------------- counts */

static int pool_count_internal(const Pool *p, InternalKind kind)
{
    ListNode *it;
    int n = 0;
    list_for_each(it, &p->connecting)
    {
        const Server *s = list_entry(it, Server, pool_node);
        if (s->state == SERVER_INTERNAL && s->internal == kind) n++;
    }
    return n;
}

static void pool_counts_add(const Pool *p, usec_t now, PoolCounts *c)
{
    c->cl_active += p->active_clients.count + p->idle_clients.count;
    c->cl_waiting += p->waiting.count + p->login_wait.count;
    c->sv_active += p->active.count;
    c->sv_idle += p->idle.count;
    int used = pool_count_internal(p, INTERNAL_RESET) + pool_count_internal(p, INTERNAL_SETPARAMS);
    int tested = pool_count_internal(p, INTERNAL_CHECK);
    c->sv_used += used;
    c->sv_tested += tested;
    c->sv_login += p->connecting.count - used - tested;
    if (!list_empty(&p->waiting)) {
        usec_t w = now - list_entry(list_first(&p->waiting), Client, pool_node)->wait_start;
        if (w > c->maxwait) c->maxwait = w;
    }
}

void pool_counts_all(const Pool *p, usec_t now, PoolCounts *out)
{
    LoopSet *set = p->loop->set;
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < set->n; i++) {
        const Pool *part = i == p->loop->index ? p : pool_shard_find(set->loops[i], p->shared);
        if (part) pool_counts_add(part, now, out);
    }
}

Pool *pool_shard_of(Loop *loop, const Pool *other)
{
    return loop == other->loop ? (Pool *)other : pool_shard_find(loop, other->shared);
}

bool pool_first_shard(const Pool *p)
{
    LoopSet *set = p->loop->set;
    for (int i = 0; i < p->loop->index; i++)
        if (pool_shard_find(set->loops[i], p->shared)) return false;
    return true;
}

bool pool_first_user(const PoolUser *u)
{
    LoopSet *set = u->loop->set;
    for (int i = 0; i < u->loop->index; i++)
        if (hmap_get(&set->loops[i]->user_index, u->name)) return false;
    return true;
}

int pool_database_servers(const Database *db)
{
    LoopSet *set = db->loop->set;
    for (int i = 0; i < set->n; i++) {
        const Database *d = database_find(set->loops[i], db->name);
        if (d && d->shared) return atomic_load(&d->shared->servers);
    }
    return 0;
}

int pool_user_servers_all(const PoolUser *u)
{
    return u->shared ? atomic_load(&u->shared->servers) : 0;
}

bool pool_first_database(const Database *db)
{
    LoopSet *set = db->loop->set;
    for (int i = 0; i < db->loop->index; i++)
        if (database_find(set->loops[i], db->name)) return false;
    return true;
}

/* ---------------------------------------------------------------- DNS */

/*
 * libpq resolves `host` synchronously inside PQconnectPoll, which would
 * stall the loop; names are therefore resolved on the worker pool and
 * passed as `hostaddr` (a parallel comma list; empty for IPs and sockets).
 */
typedef struct dns_job {
    WorkqJob job;
    Database *db;
    char *hosts;
    char *result;
    char error[256];
} DnsJob;

static bool host_needs_dns(const char *h, size_t n)
{
    char buf[256];
    struct in6_addr a6;
    if (n == 0 || h[0] == '/' || h[0] == '@' || n >= sizeof(buf)) return false;
    memcpy(buf, h, n);
    buf[n] = 0;
    return inet_pton(AF_INET, buf, &a6) != 1 && inet_pton(AF_INET6, buf, &a6) != 1;
}

static bool hosts_need_dns(const char *hosts)
{
    if (!hosts) return false;
    for (const char *p = hosts; *p;) {
        size_t n = strcspn(p, ",");
        if (host_needs_dns(p, n)) return true;
        p += n;
        if (*p == ',') p++;
    }
    return false;
}

static void dns_work(WorkqJob *j)
{
    DnsJob *dj = (DnsJob *)j;
    size_t cap = strlen(dj->hosts) * 4 + 64;
    char *out = calloc(1, cap);
    if (!out) return;
    size_t o = 0;
    int elem = 0, resolved = 0, failed = 0;
    char first_error[256] = "";
    for (const char *p = dj->hosts; *p; elem++) {
        size_t n = strcspn(p, ",");
        char name[256] = "";
        if (n < sizeof(name)) {
            memcpy(name, p, n);
            name[n] = 0;
        }
        char addr[INET6_ADDRSTRLEN] = "";
        if (host_needs_dns(p, n)) {
            struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
            int rc = getaddrinfo(name, NULL, &hints, &res);
            if (rc != 0 || !res) {
                /*
                 * "!" marks a name that did not resolve: hosts_pick leaves that
                 * host out (libpq would otherwise resolve it on the loop).  Only
                 * when no name resolves does the lookup fail as a whole.
                 */
                if (!failed++)
                    snprintf(first_error, sizeof(first_error), "could not resolve \"%.200s\": %s",
                             name, gai_strerror(rc));
                strcpy(addr, "!");
            } else {
                resolved++;
                if (res->ai_family == AF_INET)
                    inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, addr,
                              sizeof(addr));
                else
                    inet_ntop(AF_INET6, &((struct sockaddr_in6 *)res->ai_addr)->sin6_addr, addr,
                              sizeof(addr));
                freeaddrinfo(res);
            }
        }
        /* parallel to host: an empty element (an IP or a socket path) means "use host" */
        o += (size_t)snprintf(out + o, cap - o, "%s%s", elem ? "," : "", addr);
        p += n;
        if (*p == ',') p++;
    }
    if (failed && !resolved) snprintf(dj->error, sizeof(dj->error), "%s", first_error);
    dj->result = out;
}

static void pool_launch_all(Database *db);
static int pool_nudge(Pool *p, bool answer, int evict);
static void pool_offer_later(Server *s);

static void dns_done(WorkqJob *j, int status)
{
    DnsJob *dj = (DnsJob *)j;
    Database *db = dj->db;
    db->resolving = false;
    if (status == 0 && dj->result && !dj->error[0]) {
        free(db->hostaddr);
        db->hostaddr = dj->result;
        dj->result = NULL;
        db->resolved_at = time_now_usec();
        pool_launch_all(db);
    } else if (status == 0) {
        ListNode *it;
        list_for_each(it, &db->pools)
        {
            Pool *p = list_entry(it, Pool, db_node);
            pool_server_login_failed(p, "08006",
                                     dj->error[0] ? dj->error : "name resolution failed", false);
        }
    }
    free(dj->result);
    free(dj->hosts);
    free(dj);
}

/* Returns true when hostaddr is ready (or not needed); false while resolving. */
static bool database_resolve(Database *db)
{
    Loop *loop = db->loop;
    if (!hosts_need_dns(db->host)) return true;
    usec_t ttl = loop->cfg->dns_max_ttl;
    if (db->hostaddr && time_now_usec() - db->resolved_at < ttl) return true;
    if (db->resolving) return false;
    DnsJob *dj = calloc(1, sizeof(*dj));
    if (!dj || !(dj->hosts = strdup(db->host))) {
        free(dj);
        return db->hostaddr != NULL;
    }
    dj->db = db;
    if (workq_submit(loop->workq, &dj->job, dns_work, dns_done) < 0) {
        free(dj->hosts);
        free(dj);
        return db->hostaddr != NULL;
    }
    db->resolving = true;
    return false;
}

/* ---------------------------------------------------------------- launching */

static bool pool_in_retry_window(const Pool *p)
{
    usec_t at = pooldir_failure_at(p->shared);
    return at && time_now_usec() - at < p->loop->cfg->server_login_retry;
}

/*
 * PgBouncer's fast fail: while PostgreSQL refuses logins and the pool has no
 * server at all, a client gets the cached error instead of a queue place.
 * Closes the client and returns true then.
 */
static bool pool_fast_fail(Pool *p, Client *c)
{
    LoginFailure f;
    if (!pool_in_retry_window(p) || pool_server_total_all(p) > 0 ||
        !pooldir_failure(p->shared, &f) || !f.final)
        return false;
    client_close(c, f.sqlstate,
                 "server login has been failing, cached error: %s (server_login_retry)", f.msg);
    return true;
}

/* How many servers this pool may have right now. */
static int pool_allowed(const Pool *p)
{
    int allowed = p->size;
    if (p->reserve_size > 0 && !list_empty(&p->waiting)) {
        Client *first = list_entry(list_first(&p->waiting), Client, pool_node);
        if (time_now_usec() - first->wait_start >= p->loop->cfg->reserve_pool_timeout)
            allowed += p->reserve_size;
    }
    return allowed;
}

/*
 * max_db_connections / max_user_connections is reached but another pool of
 * the database (by_db) or of the backend user has an idle server on `loop`:
 * close the one idle longest, so the pool `ps` can open the connection a
 * client waits for (PgBouncer evicts the same way).  Returns false when
 * there is none.
 */
static bool pool_evict_idle(Loop *loop, const PoolShared *ps, bool by_db)
{
    Server *victim = NULL;
    ListNode *dit, *pit;
    list_for_each(dit, &loop->databases)
    {
        Database *db = list_entry(dit, Database, node);
        if (by_db && db->shared != ps->db) continue;
        list_for_each(pit, &db->pools)
        {
            Pool *o = list_entry(pit, Pool, db_node);
            if (o->shared == ps || (!by_db && o->shared->user != ps->user) || list_empty(&o->idle))
                continue;
            /* the idle list is most recently used first: its tail waited longest */
            Server *s = list_entry(list_last(&o->idle), Server, pool_node);
            if (!victim || s->idle_since < victim->idle_since) victim = s;
        }
    }
    if (!victim) return false;
    server_close(victim, "evicted: %s reached and pool %s@%s needs a server",
                 by_db ? "max_db_connections" : "max_user_connections", ps->username, ps->db->name);
    return true;
}

/* Which of max_db_connections / max_user_connections is reached now (bit 1, bit 2). */
static int pool_shared_limits_hit(const PoolShared *ps, int max_db, int max_user)
{
    int hit = 0;
    if (max_db > 0 && atomic_load(&ps->db->servers) >= max_db) hit |= 1;
    if (max_user > 0 && atomic_load(&ps->user->servers) >= max_user) hit |= 2;
    return hit;
}

/* Evict on `loop` for what is hit (pool_shared_limits_hit); true when one was closed. */
static bool pool_evict_for(Loop *loop, const PoolShared *ps, int hit)
{
    if ((hit & 1) && pool_evict_idle(loop, ps, true)) return true;
    return (hit & 2) && pool_evict_idle(loop, ps, false);
}

/*
 * Count a new server against every limit (pooldir_acquire).  When only
 * max_db_connections or max_user_connections stands in the way, close an
 * idle server of another pool of this loop and try once more.
 */
static bool pool_acquire(Pool *p, int allowed)
{
    if (pooldir_acquire(p->shared, allowed, p->max_db, p->max_user)) return true;
    if (pool_server_total_all(p) >= allowed) return false;
    int hit = pool_shared_limits_hit(p->shared, p->max_db, p->max_user);
    return hit && pool_evict_for(p->loop, p->shared, hit) &&
           pooldir_acquire(p->shared, allowed, p->max_db, p->max_user);
}

/*
 * No host of the database can serve its target_session_attrs now: no
 * attempt is made, the clients stay queued (their timeout message says why),
 * and a change of any host wakes the pool (pool_hosts_changed); otherwise it
 * looks again after server_login_retry, as after a failed login.
 */
static void pool_no_usable_host(Pool *p, const char *why)
{
    LoginFailure f;
    if (!pooldir_failure(p->shared, &f) || strcmp(f.msg, why) != 0)
        log_warning("pool %s@%s: %s; clients wait", p->username, p->db->name, why);
    pooldir_login_failed(p->shared, "08006", why, false);
}

/*
 * Open one server connection, counted by pool_acquire, on the hosts
 * hosts_pick chose; false (the count given back) when none can be opened now.
 */
static bool pool_connect(Pool *p)
{
    Database *db = p->db;
    HostPick pick;
    char why[512];
    db->hosts.turn =
        &db->shared->host_turn; /* every loop's list of the entry takes turns together */
    int n = hosts_pick(p->loop, &db->hosts, db->hostaddr, &pick, why, sizeof(why));
    if (n < 0 || (n == 0 && db->hosts.n > 0)) {
        pooldir_release(p->shared);
        if (n == 0) pool_no_usable_host(p, why);
        return false;
    }
    Server *s = server_connect(p, n > 0 ? &pick : NULL);
    if (n > 0) hosts_pick_free(&pick);
    if (!s) pooldir_release(p->shared); /* out of memory: no server to close */
    return s != NULL;
}

/* Open new connections while clients wait for them and limits allow. */
static void pool_launch(Pool *p)
{
    Loop *loop = p->loop;
    if (loop->shutdown == SHUTDOWN_IMMEDIATE || loop->shutdown == SHUTDOWN_WAIT_SERVERS ||
        pool_in_retry_window(p))
        return;
    int demand = p->waiting.count + (p->have_welcome ? 0 : p->login_wait.count > 0);
    bool answered = p->nudge_answered;
    p->nudge_answered = false;
    if (p->connecting.count >= demand) return;
    /*
     * An idle server of another loop is cheaper than a new connection (a
     * message against a PostgreSQL fork): ask those loops first, and
     * connect only for what their answers did not bring.
     */
    if (p->nudges_out > 0) return; /* asked: the answers launch again */
    if (!answered && pool_nudge(p, true, 0) > 0) return;
    while (p->connecting.count < demand) {
        if (!database_resolve(p->db)) return; /* dns_done launches again */
        int allowed = pool_allowed(p);
        if (!pool_acquire(p, allowed)) {
            /*
             * At a limit.  The pool's own: a server released on another
             * loop comes here (pool_handover).  A database or user limit:
             * another loop may have an idle server of another pool to
             * evict; ask once, then the janitor retries.
             */
            int hit = pool_server_total_all(p) < allowed
                          ? pool_shared_limits_hit(p->shared, p->max_db, p->max_user)
                          : 0;
            if (hit && !answered && pool_nudge(p, true, hit) > 0) return;
            pool_demand_changed(p);
            (void)pool_nudge(p, false, 0);
            return;
        }
        if (!pool_connect(p)) return;
    }
}

static void pool_launch_all(Database *db)
{
    ListNode *it, *tmp;
    list_for_each_safe(it, tmp, &db->pools)
    {
        Pool *p = list_entry(it, Pool, db_node);
        pool_launch(p);
    }
}

/* ---------------------------------------------------------------- clients */

/* p->welcome is known now: the clients waiting for it finish their login. */
static void pool_welcome_learned(Pool *p)
{
    p->have_welcome = true;
    ListNode *it, *tmp;
    list_for_each_safe(it, tmp, &p->login_wait)
    {
        Client *c = list_entry(it, Client, pool_node);
        client_finish_login(c);
    }
}

void pool_client_login(Pool *p, Client *c)
{
    /*
     * What the client proved logs later servers in (pass-through).  A new
     * secret or ClientKey may succeed where the last server login failed: it
     * gets a try at once instead of the remembered failure.
     */
    if (c->pass_cred && !p->db->user && pooldir_cred_keep(p->shared, c->pass_cred))
        pooldir_login_ok(p->shared);
    /* another loop's first server login told what clients are told: no need to wait for one here */
    if (!p->have_welcome && pooldir_welcome_copy(p->shared, &p->welcome)) pool_welcome_learned(p);
    if (p->have_welcome) {
        client_finish_login(c);
        return;
    }
    if (pool_fast_fail(p, c)) return;
    client_set_state(c, CLIENT_LOGIN_WAIT);
    pool_launch(p);
}

void pool_request_server(Pool *p, Client *c)
{
    if (c && p->loop->shutdown == SHUTDOWN_WAIT_SERVERS) {
        /* a safe shutdown opens no server: one that needs a new one goes (as PgBouncer) */
        client_close(c, "57P01", "server shutting down");
        return;
    }
    if (c) {
        if (!p->db->paused && !list_empty(&p->idle) && list_empty(&p->waiting)) {
            Server *s = list_entry(list_first(&p->idle), Server, pool_node);
            client_link_server(c, s);
            return;
        }
        if (pool_fast_fail(p, c)) return;
        client_set_state(c, CLIENT_WAITING);
    }
    /* hand idle servers to waiters (also after a resume) */
    while (!p->db->paused && !list_empty(&p->idle) && !list_empty(&p->waiting)) {
        Server *s = list_entry(list_first(&p->idle), Server, pool_node);
        Client *w = list_entry(list_first(&p->waiting), Client, pool_node);
        client_link_server(w, s);
    }
    if (!p->db->paused) pool_launch(p);
}

/* ---------------------------------------------------------------- hand-over */

/*
 * The shared demand (pooldir.h LoopDemand) is only kept with several loops;
 * each loop writes its own slot and reads the others', so the hot path
 * reads one atomic (ps->waiting) and writes nothing while nobody waits.
 */
static bool pool_multi(const Pool *p)
{
    return p->loop->set->n > 1;
}

void pool_idle_changed(Pool *p, int delta)
{
    if (pool_multi(p)) atomic_fetch_add(&p->shared->demand[p->loop->index].idle, delta);
}

void pool_demand_changed(Pool *p)
{
    if (!pool_multi(p)) return;
    int w = p->waiting.count + (p->have_welcome ? 0 : p->login_wait.count);
    usec_t oldest = 0;
    if (!list_empty(&p->waiting))
        oldest = list_entry(list_first(&p->waiting), Client, pool_node)->wait_start;
    else if (w > 0)
        oldest = list_entry(list_first(&p->login_wait), Client, pool_node)->wait_start;
    if (w == p->demand_waiting && oldest == p->demand_oldest) return;
    LoopDemand *d = &p->shared->demand[p->loop->index];
    atomic_store(&d->oldest, (long long)oldest);
    atomic_store(&d->waiting, w);
    atomic_fetch_add(&p->shared->waiting, w - p->demand_waiting);
    p->demand_waiting = w;
    p->demand_oldest = oldest;
}

/*
 * The loop whose waiting client is oldest (and older than `before`, when
 * not 0) and who is not yet sent enough servers; -1 when none.
 */
static int pool_handover_target(const Pool *p, usec_t before)
{
    PoolShared *ps = p->shared;
    LoopSet *set = p->loop->set;
    int best = -1;
    long long best_t = 0;
    if (atomic_load(&ps->waiting) <= p->demand_waiting) return -1; /* nobody waits elsewhere */
    for (int i = 0; i < set->n; i++) {
        if (i == p->loop->index) continue;
        LoopDemand *d = &ps->demand[i];
        if (atomic_load(&d->waiting) - atomic_load(&d->incoming) <= 0) continue;
        long long t = atomic_load(&d->oldest);
        if (before && t >= before) continue;
        if (best < 0 || t < best_t) {
            best = i;
            best_t = t;
        }
    }
    return best;
}

/* Has a client of another loop waited longer than this loop's first waiter? */
static bool pool_remote_waited_longer(const Pool *p)
{
    if (!pool_multi(p) || list_empty(&p->waiting)) return false;
    usec_t mine = list_entry(list_first(&p->waiting), Client, pool_node)->wait_start;
    return pool_handover_target(p, mine) >= 0;
}

static void pool_on_handover(Loop *loop, void *arg);

/*
 * Give an idle server (or one about to be idle) to the loop whose client
 * has waited longest.  Returns false when nobody elsewhere needs it or it
 * cannot move; the caller keeps it then.
 */
static bool pool_handover(Server *s)
{
    Pool *p = s->pool;
    if (!pool_multi(p) || p->db->paused) return false;
    int target = pool_handover_target(p, 0);
    if (target < 0) return false;
    if (s->state != SERVER_IDLE) server_set_state(s, SERVER_IDLE); /* counted idle, then moved */
    if (!server_can_move(s)) return false;
    LoopSet *set = p->loop->set;
    LoopDemand *d = &p->shared->demand[target];
    atomic_fetch_add(&d->incoming, 1);
    pool_offer_cancel(s); /* it may be queued for an offer pass of this loop */
    server_detach(s);
    if (loop_post(set->loops[target], pool_on_handover, s) < 0) {
        /* no memory for the message: it stays */
        atomic_fetch_sub(&d->incoming, 1);
        Pool *back = pool_shard(p->loop, s->transit);
        if (back) {
            server_attach(s, back);
            server_set_state(s, SERVER_IDLE);
        } else {
            server_discard(s, p->loop, "out of memory during hand-over");
        }
        return true;
    }
    atomic_fetch_add(&set->handovers, 1);
    return true;
}

/* The server arrives on its new loop: it serves the waiting client here, or stays. */
static void pool_on_handover(Loop *loop, void *arg)
{
    Server *s = arg;
    PoolShared *ps = s->transit;
    atomic_fetch_sub(&ps->demand[loop->index].incoming, 1);
    Pool *p = pool_shard(loop, ps);
    if (!p) {
        server_discard(s, loop, "no pool for a handed-over server");
        return;
    }
    server_attach(s, p);
    log_at(LOG_LEVEL_DEBUG, s->prefix, "handed over to loop %d", loop->index);
    /* a pool that never had a server here learns its parameters from this one */
    if (!p->have_welcome)
        pool_server_login_ok(s);
    else
        pool_server_idle(s);
}

/*
 * Offer the idle servers queued by pool_offer_later: to a waiting client
 * here when none elsewhere waited longer, else to the other loop.  Runs as
 * its own event, never inside the callback that released the server: that
 * callback may still look at the server after releasing it, and a server
 * handed over belongs to another thread at once.
 */
static void pool_on_offer_pass(evutil_socket_t fd, short ev, void *arg)
{
    Loop *loop = arg;
    (void)fd;
    (void)ev;
    while (!list_empty(&loop->handover_queue)) {
        Server *s = list_entry(list_first(&loop->handover_queue), Server, handover_node);
        list_remove(&loop->handover_queue, &s->handover_node);
        if (s->state != SERVER_IDLE || s->client) continue; /* taken or closed meanwhile */
        Pool *p = s->pool;
        if (!p->db->paused && !list_empty(&p->waiting) && !pool_remote_waited_longer(p)) {
            client_link_server(list_entry(list_first(&p->waiting), Client, pool_node), s);
            continue;
        }
        (void)pool_handover(s); /* false: nobody elsewhere needs it, it stays idle */
    }
}

/* An idle server another loop's client may need: offer it after the current callbacks. */
static void pool_offer_later(Server *s)
{
    Pool *p = s->pool;
    Loop *loop = p->loop;
    if (!pool_multi(p) || p->db->paused || list_node_linked(&s->handover_node) ||
        pool_handover_target(p, 0) < 0)
        return;
    if (!loop->ev_handover) {
        loop->ev_handover = event_new(loop->base, -1, 0, pool_on_offer_pass, loop);
        if (!loop->ev_handover) return; /* it stays idle here; the nudge path still works */
    }
    if (list_empty(&loop->handover_queue)) event_active(loop->ev_handover, EV_TIMEOUT, 0);
    list_append(&loop->handover_queue, &s->handover_node);
}

/* A server that closes leaves the offer queue. */
void pool_offer_cancel(Server *s)
{
    if (list_node_linked(&s->handover_node) && s->loop)
        list_remove(&s->loop->handover_queue, &s->handover_node);
}

typedef struct nudge {
    PoolShared *ps; /* a reference */
    int from;       /* the asking loop, when it waits for the answer; else -1 */
    int evict;      /* pool_shared_limits_hit() of the asking pool: evict for it */
    int max_db, max_user;
} Nudge;

static void pool_on_nudge_answer(Loop *loop, void *arg);

/*
 * Another loop's clients wait: give it the idle servers nobody here needs
 * (pool_handover sends each to the loop whose client waited longest), or
 * evict an idle server of another pool when a database or user limit
 * stands in its way; then answer when asked to.  The answer follows the
 * servers through the same inbox, so it arrives after them.
 */
static void pool_on_nudge(Loop *loop, void *arg)
{
    Nudge *n = arg;
    Pool *p = pool_shard_find(loop, n->ps);
    bool gave = false;
    while (p && list_empty(&p->waiting) && !list_empty(&p->idle)) {
        /* the longest idle one: the most recently used stay warm here */
        Server *s = list_entry(list_last(&p->idle), Server, pool_node);
        if (!pool_handover(s)) break;
        gave = true;
    }
    if (!gave && n->evict) {
        /* another loop may have evicted already: only while the limit is still hit */
        int hit = pool_shared_limits_hit(n->ps, n->max_db, n->max_user) & n->evict;
        if (hit) (void)pool_evict_for(loop, n->ps, hit);
    }
    if (n->from >= 0 && loop_post(loop->set->loops[n->from], pool_on_nudge_answer, n) == 0)
        return; /* n travels on; without memory for it, the asking loop's janitor launches */
    pooldir_put(loop->set->dir, n->ps);
    free(n);
}

/* Every asked loop answered: connect for the clients their servers did not serve. */
static void pool_on_nudge_answer(Loop *loop, void *arg)
{
    Nudge *n = arg;
    Pool *p = pool_shard_find(loop, n->ps);
    if (p && p->nudges_out > 0 && --p->nudges_out == 0) {
        p->nudge_answered = true;
        pool_launch(p);
    }
    pooldir_put(loop->set->dir, n->ps);
    free(n);
}

/*
 * Ask other loops for idle servers of the pool (those that have some), or
 * with evict (pool_shared_limits_hit) every other loop to evict one of
 * another pool.  With answer, each answers (pool_on_nudge_answer) and
 * p->nudges_out counts the answers to come.  Returns how many were asked.
 */
static int pool_nudge(Pool *p, bool answer, int evict)
{
    if (!pool_multi(p)) return 0;
    LoopSet *set = p->loop->set;
    PoolShared *ps = p->shared;
    int asked = 0;
    pool_demand_changed(p); /* what the asked loops read to pick the target */
    for (int i = 0; i < set->n; i++) {
        if (i == p->loop->index || (!evict && atomic_load(&ps->demand[i].idle) <= 0)) continue;
        Nudge *n = malloc(sizeof(*n));
        if (!n) break;
        *n = (Nudge){.ps = ps,
                     .from = answer ? p->loop->index : -1,
                     .evict = evict,
                     .max_db = p->max_db,
                     .max_user = p->max_user};
        pooldir_ref(ps);
        if (loop_post(set->loops[i], pool_on_nudge, n) < 0) {
            pooldir_put(set->dir, ps);
            free(n);
            break;
        }
        asked++;
    }
    if (answer) p->nudges_out = asked;
    return asked;
}

/* ---------------------------------------------------------------- servers */

void pool_server_idle(Server *s)
{
    Pool *p = s->pool;
    Loop *loop = p->loop;
    usec_t now = time_now_usec();
    if (s->dirty) {
        server_close(s, "server in unknown state");
        return;
    }
    if (loop->shutdown != SHUTDOWN_NONE && loop->shutdown != SHUTDOWN_WAIT_CLIENTS) {
        server_close(s, "shutting down");
        return;
    }
    /* server_lifetime = 0: each server serves one client, then goes (PgBouncer's meaning) */
    if (p->server_lifetime == 0 ? s->link_count > 0 : now - s->created > p->server_lifetime) {
        server_close(s, "server lifetime over");
        return;
    }
    if (pool_generation(p) != s->generation) {
        server_close(s, "database configuration changed");
        return;
    }
    /* between transactions only: a server that lost its role is never reused */
    if (!pool_server_fits(s)) {
        server_close(s, "server no longer matches target_session_attrs=%s",
                     config_tsa_name(p->db->hosts.tsa));
        return;
    }
    if (!p->db->paused && !list_empty(&p->waiting) && !pool_remote_waited_longer(p)) {
        Client *w = list_entry(list_first(&p->waiting), Client, pool_node);
        client_link_server(w, s);
        return;
    }
    s->client = NULL;
    server_set_state(s, SERVER_IDLE);
    /* nobody waits here, or a client of another loop has waited longer: it gets it */
    pool_offer_later(s);
}

void pool_release_server(Server *s)
{
    Pool *p = s->pool;
    Client *c = s->client;
    Config *cfg = p->loop->cfg;
    s->client = NULL;
    if (c) c->server = NULL;
    /*
     * The server goes back first, then the client hears of it: a client
     * with its next query already buffered must find the server in the
     * pool, not start a connection the pool does not need.
     */
    if (s->state != SERVER_CLOSING) {
        /* every answer was delivered by now; anything left is stale bookkeeping */
        if (s->psq.count) ps_queue_clear(&s->psq, p->ps);
        bool reset = (p->mode == POOL_MODE_SESSION || cfg->server_reset_query_always) &&
                     cfg->server_reset_query && *cfg->server_reset_query &&
                     (p->mode == POOL_MODE_SESSION || !c || cfg->server_reset_query_always);
        /* a cancel for the last client still on its way: held until it is through */
        if (server_cancel_hold(s)) {
            /* the cancel's completion brings it back */
        } else if (reset) {
            /* in transaction mode only a session ending (client gone) resets with _always */
            if (server_run_internal(s, INTERNAL_RESET, cfg->server_reset_query) < 0)
                server_close(s, "could not send reset query");
        } else {
            pool_server_idle(s);
        }
    }
    if (c) client_server_released(c);
}

bool pool_fast_close(Server *s)
{
    Pool *p = s->pool;
    Client *c = s->client;
    if (!p->loop->cfg->server_fast_close || p->mode != POOL_MODE_SESSION ||
        s->state != SERVER_ACTIVE || !c || s->generation == pool_generation(p))
        return false;
    /* only at a transaction boundary, with nothing of either side in flight */
    if (s->internal != INTERNAL_NONE || s->tx_status != 'I' || c->tx_status != 'I' ||
        c->expected_rfq > 0 || c->extended_open || c->linking || c->fwd_left || s->fwd_left ||
        conn_avail(&s->conn) > 0 || conn_avail(&c->conn) > 0 || conn_has_queue(&c->conn))
        return false;
    s->client = NULL;
    c->server = NULL;
    server_close(s, "database configuration changed (server_fast_close)");
    client_close(c, "08P01", "database configuration changed");
    return true;
}

void pool_internal_done(Server *s, int kind, bool ok)
{
    if (!ok) {
        server_close(s, "internal query failed");
        return;
    }
    if (kind == INTERNAL_CONNECT_QUERY)
        pool_server_login_ok(s);
    else
        pool_server_idle(s);
}

void pool_server_login_ok(Server *s)
{
    Pool *p = s->pool;
    pooldir_login_ok(p->shared);
    if (!p->have_welcome) {
        /*
         * A fresh login's parameters are the server's own; a server handed
         * over from another loop may carry a client's SET: the copy kept
         * from the pool's first login on any loop comes first.
         */
        if (!pooldir_welcome_copy(p->shared, &p->welcome)) {
            if (params_copy(&p->welcome, &s->params) < 0) {
                server_close(s, "out of memory");
                return;
            }
            pooldir_welcome_keep(p->shared, &p->welcome);
        }
        pool_welcome_learned(p);
    }
    pool_server_idle(s);
}

/* PostgreSQL refused the login: the clients waiting for this pool fail with its error. */
static void pool_fail_waiters(Pool *p, const char *sqlstate, const char *msg)
{
    if (!list_empty(&p->idle)) return;
    ListNode *it, *tmp;
    list_for_each_safe(it, tmp, &p->login_wait)
    {
        Client *c = list_entry(it, Client, pool_node);
        client_close(c, sqlstate, "%s", msg);
    }
    list_for_each_safe(it, tmp, &p->waiting)
    {
        Client *c = list_entry(it, Client, pool_node);
        client_close(c, sqlstate, "%s", msg);
    }
}

typedef struct refusal {
    PoolShared *ps; /* a reference */
    char sqlstate[6];
    char msg[256];
} Refusal;

/* Another loop's server login was refused: this loop's waiters fail too. */
static void pool_on_refusal(Loop *loop, void *arg)
{
    Refusal *r = arg;
    Pool *p = pool_shard_find(loop, r->ps);
    if (p) pool_fail_waiters(p, r->sqlstate, r->msg);
    pooldir_put(loop->set->dir, r->ps);
    free(r);
}

void pool_server_login_failed(Pool *p, const char *sqlstate, const char *msg, bool final)
{
    pooldir_login_failed(p->shared, sqlstate, msg, final);
    p->stats.login_failures++;
    /*
     * A failure that may pass keeps the clients queued: the janitor retries
     * after server_login_retry, and each gives up at query_wait_timeout (or
     * client_login_timeout) with this error in the message.  PostgreSQL's own
     * refusal fails them now, on every loop: nobody waits for a server that
     * refuses logins.
     */
    if (!final) return;
    pool_fail_waiters(p, sqlstate, msg);
    LoopSet *set = p->loop->set;
    for (int i = 0; i < set->n; i++) {
        if (i == p->loop->index) continue;
        Refusal *r = calloc(1, sizeof(*r));
        if (!r) break; /* they give up at query_wait_timeout instead */
        r->ps = p->shared;
        pooldir_ref(r->ps);
        snprintf(r->sqlstate, sizeof(r->sqlstate), "%s", sqlstate);
        snprintf(r->msg, sizeof(r->msg), "%s", msg);
        if (loop_post(set->loops[i], pool_on_refusal, r) < 0) {
            pooldir_put(set->dir, r->ps);
            free(r);
        }
    }
}

const char *pool_last_login_error(const Pool *p, char *buf, size_t len)
{
    LoginFailure f;
    if (!pooldir_failure(p->shared, &f)) return NULL;
    snprintf(buf, len, "%s", f.msg);
    return buf;
}

void pool_forget_login_failure(Pool *p)
{
    /* every loop calls this (RECONNECT): the first forgets, each launches for its waiters */
    bool had = pooldir_failure_at(p->shared) != 0;
    pooldir_login_ok(p->shared);
    if (had || !list_empty(&p->waiting) || !list_empty(&p->login_wait))
        pool_request_server(p, NULL);
}

/* ---------------------------------------------------------------- host changes */

static int pool_snapshot(List *l, Server ***out);

bool pool_server_fits(const Server *s)
{
    const HostList *hl = &s->pool->db->hosts;
    if (hl->tsa == TSA_ANY) return true;
    const char *hs = params_get(&s->params, "in_hot_standby");
    const char *ro = params_get(&s->params, "default_transaction_read_only");
    return hosts_server_fits(hl, s->host, hs ? strcmp(hs, "on") == 0 : -1,
                             ro && strcmp(ro, "on") == 0);
}

void pool_hosts_changed(Loop *loop)
{
    ListNode *dit, *pit, *ptmp;
    if (loop->shutdown == SHUTDOWN_IMMEDIATE) return;
    list_for_each(dit, &loop->databases)
    {
        Database *db = list_entry(dit, Database, node);
        unsigned changes = hosts_list_changes(&db->hosts);
        if (changes == db->hosts.seen) continue;
        db->hosts.seen = changes;
        list_for_each_safe(pit, ptmp, &db->pools)
        {
            Pool *p = list_entry(pit, Pool, db_node);
            Server **snap;
            int n = pool_snapshot(&p->idle, &snap);
            for (int i = 0; i < n; i++)
                if (snap[i]->state == SERVER_IDLE && !pool_server_fits(snap[i]))
                    server_close(snap[i], "server no longer matches target_session_attrs=%s",
                                 config_tsa_name(db->hosts.tsa));
            free(snap);
            /* what failed before may work now: try at once, not after server_login_retry */
            pooldir_login_ok(p->shared);
            if (!db->paused) pool_request_server(p, NULL);
        }
    }
}

/* ---------------------------------------------------------------- janitor */

/*
 * Closing a server can cascade (a failed reconnect fails waiting clients),
 * so the janitor works on a snapshot of the lists and skips servers whose
 * state changed meanwhile; closed ones are only freed after this callback.
 */
static int pool_snapshot(List *l, Server ***out)
{
    ListNode *it;
    int n = 0;
    *out = NULL;
    if (l->count == 0) return 0;
    Server **v = malloc((size_t)l->count * sizeof(*v));
    if (!v) return 0;
    list_for_each(it, l) v[n++] = list_entry(it, Server, pool_node);
    *out = v;
    return n;
}

static void pool_janitor_servers(Pool *p, usec_t now)
{
    Config *cfg = p->loop->cfg;
    Server **snap;
    int n = pool_snapshot(&p->connecting, &snap);
    for (int i = 0; i < n; i++)
        if (snap[i]->state == SERVER_CONNECTING) server_check_timeouts(snap[i], now);
    free(snap);
    n = pool_snapshot(&p->idle, &snap);
    for (int i = 0; i < n; i++) {
        Server *s = snap[i];
        if (s->state != SERVER_IDLE) continue;
        int total = pool_server_total_all(p);
        if (p->server_lifetime > 0 && now - s->created > p->server_lifetime) {
            server_close(s, "server lifetime over");
        } else if (cfg->server_idle_timeout > 0 && now - s->idle_since > cfg->server_idle_timeout &&
                   total > p->min_size) {
            server_close(s, "server idle timeout");
        } else if (pool_generation(p) != s->generation) {
            server_close(s, "database configuration changed");
        } else if (cfg->server_check_query && *cfg->server_check_query &&
                   now - s->idle_since > cfg->server_check_delay && cfg->server_check_delay > 0) {
            if (server_run_internal(s, INTERNAL_CHECK, cfg->server_check_query) < 0)
                server_close(s, "could not send check query");
        }
    }
    free(snap);
    /* server_fast_close: session clients idle between transactions on a retired server */
    if (cfg->server_fast_close && p->mode == POOL_MODE_SESSION) {
        n = pool_snapshot(&p->active, &snap);
        for (int i = 0; i < n; i++)
            if (snap[i]->state == SERVER_ACTIVE) pool_fast_close(snap[i]);
        free(snap);
    }
    /* min_pool_size: keep warm connections once the pool has been used, or from the start
     * with a forced user (pool_forced_user_pools) */
    if ((p->have_welcome || p->db->user) && !pool_in_retry_window(p) &&
        p->loop->shutdown == SHUTDOWN_NONE) {
        /* over every loop: whichever loop's janitor comes first opens them */
        int min = p->min_size < p->size ? p->min_size : p->size;
        while (pool_server_total_all(p) < min && database_resolve(p->db) &&
               pooldir_acquire(p->shared, min, p->max_db, p->max_user)) {
            if (!pool_connect(p)) break;
        }
    }
    /* reserve pool and retries after server_login_retry */
    if (!list_empty(&p->waiting) || (!p->have_welcome && !list_empty(&p->login_wait)))
        pool_request_server(p, NULL);
}

/*
 * autodb_idle_timeout (PgBouncer's meaning, 0 = never): a pool nothing
 * points to — no client, no server, also none waiting to be freed — goes
 * after that long unused, and so does an automatic ("*") database without
 * pools.  Paused or disabled databases stay: they carry the operator's state.
 */
static bool pool_expired(const Pool *p, usec_t now)
{
    usec_t t = p->loop->cfg->autodb_idle_timeout;
    return t > 0 && p->refs == 0 && pool_server_total(p) == 0 && now - p->unused_since >= t;
}

static bool database_expired(const Database *db, usec_t now)
{
    usec_t t = db->loop->cfg->autodb_idle_timeout;
    return t > 0 && db->auto_db && list_empty(&db->pools) && !db->resolving && !db->paused &&
           !db->disabled && now - db->unused_since >= t;
}

/* Append the ids of a client list to the janitor's scratch array. */
static int janitor_collect(Loop *loop, List *l, int n)
{
    ListNode *it;
    if (n + l->count > loop->janitor_cap) {
        int cap = (n + l->count) * 2 + 64;
        uint32_t *v = realloc(loop->janitor_ids, (size_t)cap * sizeof(*v));
        if (!v) return n;
        loop->janitor_ids = v;
        loop->janitor_cap = cap;
    }
    list_for_each(it, l) loop->janitor_ids[n++] = list_entry(it, Client, pool_node)->id;
    return n;
}

/*
 * min_pool_size applies to a pool with a forced user before any client came
 * (PgBouncer: "the entry ... has a value set for the user key, or there is
 * at least one client"): such pools are made here, from the configuration
 * (never from what a client sent), on loop 0; the janitor then fills them.
 */
static void pool_forced_user_pools(Loop *loop)
{
    const Config *cfg = loop->cfg;
    if (loop->shutdown != SHUTDOWN_NONE) return;
    for (const DbConf *dc = cfg->databases; dc; dc = dc->next) {
        int min = dc->min_pool_size != CONF_UNSET ? dc->min_pool_size : cfg->min_pool_size;
        if (!dc->user || min <= 0 || strcmp(dc->name, "*") == 0) continue;
        Database *db = database_find(loop, dc->name);
        if (db && hmap_get(&db->pool_index, dc->user)) continue;
        const char *sqlstate;
        char err[128];
        if (!pool_for_client(loop, dc->name, dc->user, &sqlstate, err, sizeof(err)))
            continue; /* disabled, or out of memory: the next tick tries again */
    }
}

void pool_janitor(Loop *loop, usec_t now)
{
    /*
     * Only clients a timeout can apply to are visited: logging in, waiting,
     * linked, and idle ones only with client_idle_timeout, so ten thousand
     * idle clients cost nothing here.  By id, because a timeout may close
     * other clients too (see pool_snapshot).
     */
    ListNode *dit, *pit, *ptmp;
    /* roles servers reported since the last tick (hosts_note_role waits for this) */
    pool_hosts_changed(loop);
    int n = janitor_collect(loop, &loop->login_clients, 0);
    list_for_each(dit, &loop->databases)
    {
        Database *db = list_entry(dit, Database, node);
        list_for_each(pit, &db->pools)
        {
            Pool *p = list_entry(pit, Pool, db_node);
            n = janitor_collect(loop, &p->login_wait, n);
            n = janitor_collect(loop, &p->waiting, n);
            n = janitor_collect(loop, &p->active_clients, n);
            /* idle clients only when a client_idle_timeout can apply ([users] may set one) */
            if (loop->cfg->client_idle_timeout > 0 || loop->cfg->user_timeouts)
                n = janitor_collect(loop, &p->idle_clients, n);
        }
    }
    for (int i = 0; i < n; i++) {
        Client *c = loop_client_find(loop, loop->janitor_ids[i]);
        if (c) client_check_timeouts(c, now);
    }
    if (loop->index == 0) pool_forced_user_pools(loop);
    ListNode *dtmp;
    list_for_each_safe(dit, dtmp, &loop->databases)
    {
        Database *db = list_entry(dit, Database, node);
        list_for_each_safe(pit, ptmp, &db->pools)
        {
            Pool *p = list_entry(pit, Pool, db_node);
            pool_janitor_servers(p, now);
            if (pool_expired(p, now)) pool_free(p, true);
        }
        if (database_expired(db, now)) database_free(db);
    }
}

void pool_apply_config(Loop *loop)
{
    ListNode *dit, *pit, *ptmp;
    list_for_each(dit, &loop->databases)
    {
        Database *db = list_entry(dit, Database, node);
        const DbConf *dc = config_find_db(loop->cfg, db->name);
        bool changed = dc && database_load(db, dc);
        list_for_each(pit, &db->pools)
        {
            pool_resolve_settings(list_entry(pit, Pool, db_node));
        }
        if (!changed) continue;
        /*
         * New connection settings: busy servers close when released, idle
         * ones now, and a login failure under the old settings says nothing
         * about the new ones, so a waiting client gets an attempt now.
         */
        pool_database_bump_generation(db);
        list_for_each_safe(pit, ptmp, &db->pools)
        {
            Pool *p = list_entry(pit, Pool, db_node);
            while (!list_empty(&p->idle))
                server_close(list_entry(list_first(&p->idle), Server, pool_node),
                             "database configuration changed");
            pool_forget_login_failure(p);
        }
    }
}

static void pool_close_servers(List *l)
{
    while (!list_empty(l)) {
        Server *s = list_entry(list_first(l), Server, pool_node);
        server_close(s, "shutting down");
    }
}

void pool_free_all(Loop *loop)
{
    ListNode *dit, *pit;
    list_for_each(dit, &loop->databases)
    {
        Database *db = list_entry(dit, Database, node);
        list_for_each(pit, &db->pools)
        {
            Pool *p = list_entry(pit, Pool, db_node);
            pool_close_servers(&p->connecting);
            pool_close_servers(&p->idle);
            pool_close_servers(&p->active);
        }
    }
    /* closed clients and servers still point at their pool's statement registry */
    loop_run_deferred(loop);
    while (!list_empty(&loop->databases)) {
        Database *db = list_entry(list_first(&loop->databases), Database, node);
        while (!list_empty(&db->pools))
            pool_free(list_entry(list_first(&db->pools), Pool, db_node), false);
        database_free(db);
    }
    hmap_free(&loop->db_index);
    hmap_free(&loop->user_index);
}
