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
#include "passthrough.h"
#include "pool.h"
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
    const char *backend_user = db->user ? db->user : user;
    Pool *p = hmap_get(&db->pool_index, backend_user);
    if (p) return p;
    p = calloc(1, sizeof(*p));
    if (!p || !(p->username = strdup(backend_user))) goto oom_pool;
    p->loop = loop;
    p->db = db;
    p->user = pool_user_get(loop, backend_user);
    if (!p->user) goto oom_pool;
    if (hmap_put(&db->pool_index, p->username, p) < 0) goto oom_user;
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
oom:
    *sqlstate = "53200";
    snprintf(err, errlen, "out of memory");
    return NULL;
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
    if (list_empty(&db->pools)) db->unused_since = loop_now(p->loop);
    ps_registry_free(&p->ps);
    params_free(&p->welcome);
    passthrough_cred_free(p->pass_cred);
    free(p->failure_msg);
    pool_user_put(p->loop, p->user);
    free(p->username);
    free(p);
}

int pool_server_total(const Pool *p)
{
    return p->connecting.count + p->idle.count + p->active.count;
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
    return p->last_failure && time_now_usec() - p->last_failure < p->loop->cfg->server_login_retry;
}

/*
 * PgBouncer's fast fail: while PostgreSQL refuses logins and the pool has no
 * server at all, a client gets the cached error instead of a queue place.
 * Closes the client and returns true then.
 */
static bool pool_fast_fail(Pool *p, Client *c)
{
    if (!p->failure_final || !pool_in_retry_window(p) || pool_server_total(p) > 0) return false;
    client_close(c, p->failure_sqlstate,
                 "server login has been failing, cached error: %s (server_login_retry)",
                 p->failure_msg ? p->failure_msg : "?");
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
 * the database (by_db) or of the backend user has an idle server: close the
 * one idle longest, so this pool can open the connection a client waits for
 * (PgBouncer evicts the same way).  Returns false when there is none.
 */
static bool pool_evict_idle(Pool *p, bool by_db)
{
    Server *victim = NULL;
    ListNode *dit, *pit;
    list_for_each(dit, &p->loop->databases)
    {
        Database *db = list_entry(dit, Database, node);
        if (by_db && db != p->db) continue;
        list_for_each(pit, &db->pools)
        {
            Pool *o = list_entry(pit, Pool, db_node);
            if (o == p || (!by_db && o->user != p->user) || list_empty(&o->idle)) continue;
            /* the idle list is most recently used first: its tail waited longest */
            Server *s = list_entry(list_last(&o->idle), Server, pool_node);
            if (!victim || s->idle_since < victim->idle_since) victim = s;
        }
    }
    if (!victim) return false;
    server_close(victim, "evicted: %s reached and pool %s@%s needs a server",
                 by_db ? "max_db_connections" : "max_user_connections", p->username, p->db->name);
    return true;
}

/*
 * No host of the database can serve its target_session_attrs now: no
 * attempt is made, the clients stay queued (their timeout message says why),
 * and a change of any host wakes the pool (pool_hosts_changed); otherwise it
 * looks again after server_login_retry, as after a failed login.
 */
static void pool_no_usable_host(Pool *p, const char *why)
{
    if (!p->failure_msg || strcmp(p->failure_msg, why) != 0)
        log_warning("pool %s@%s: %s; clients wait", p->username, p->db->name, why);
    p->last_failure = time_now_usec();
    p->failure_final = false;
    free(p->failure_msg);
    p->failure_msg = strdup(why);
}

/* Open one server connection on the hosts hosts_pick chose; false when none can be opened now. */
static bool pool_connect(Pool *p)
{
    Database *db = p->db;
    HostPick pick;
    char why[512];
    int n = hosts_pick(p->loop, &db->hosts, db->hostaddr, &pick, why, sizeof(why));
    if (n < 0) return false;
    if (n == 0 && db->hosts.n > 0) {
        pool_no_usable_host(p, why);
        return false;
    }
    Server *s = server_connect(p, n > 0 ? &pick : NULL);
    hosts_pick_free(&pick);
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
    while (p->connecting.count < demand) {
        if (pool_server_total(p) >= pool_allowed(p)) return;
        if (p->max_db > 0 && p->db->server_count >= p->max_db && !pool_evict_idle(p, true)) return;
        if (p->max_user > 0 && p->user->server_count >= p->max_user && !pool_evict_idle(p, false))
            return;
        if (!database_resolve(p->db)) return; /* dns_done launches again */
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

void pool_client_login(Pool *p, Client *c)
{
    /*
     * What the client proved logs later servers in (pass-through).  A new
     * secret or ClientKey may succeed where the last server login failed: it
     * gets a try at once instead of the remembered failure.
     */
    if (c->pass_cred && !p->db->user && passthrough_cred_keep(&p->pass_cred, c->pass_cred))
        p->last_failure = 0;
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
    if (p->server_lifetime > 0 && now - s->created > p->server_lifetime) {
        server_close(s, "server lifetime over");
        return;
    }
    if (s->pool->db->generation != s->generation) {
        server_close(s, "database configuration changed");
        return;
    }
    /* between transactions only: a server that lost its role is never reused */
    if (!pool_server_fits(s)) {
        server_close(s, "server no longer matches target_session_attrs=%s",
                     config_tsa_name(p->db->hosts.tsa));
        return;
    }
    if (!p->db->paused && !list_empty(&p->waiting)) {
        Client *w = list_entry(list_first(&p->waiting), Client, pool_node);
        client_link_server(w, s);
        return;
    }
    server_set_state(s, SERVER_IDLE);
    s->client = NULL;
}

void pool_release_server(Server *s)
{
    Pool *p = s->pool;
    Client *c = s->client;
    Config *cfg = p->loop->cfg;
    s->client = NULL;
    if (c) {
        c->server = NULL;
        client_server_released(c);
    }
    if (s->state == SERVER_CLOSING) return;
    /* every answer was delivered by now; anything left is stale bookkeeping */
    if (s->psq.count) ps_queue_clear(&s->psq, &p->ps);
    /* a cancel for the last client still on its way: held until it is through */
    if (server_cancel_hold(s)) return;
    bool reset = (p->mode == POOL_MODE_SESSION || cfg->server_reset_query_always) &&
                 cfg->server_reset_query && *cfg->server_reset_query;
    /* in transaction mode only a session ending (client gone) runs the reset with _always */
    if (reset && (p->mode == POOL_MODE_SESSION || !c || cfg->server_reset_query_always)) {
        if (server_run_internal(s, INTERNAL_RESET, cfg->server_reset_query) < 0)
            server_close(s, "could not send reset query");
        return;
    }
    pool_server_idle(s);
}

bool pool_fast_close(Server *s)
{
    Pool *p = s->pool;
    Client *c = s->client;
    if (!p->loop->cfg->server_fast_close || p->mode != POOL_MODE_SESSION ||
        s->state != SERVER_ACTIVE || !c || s->generation == p->db->generation)
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
    p->last_failure = 0;
    if (!p->have_welcome) {
        if (params_copy(&p->welcome, &s->params) < 0) {
            server_close(s, "out of memory");
            return;
        }
        p->have_welcome = true;
        ListNode *it, *tmp;
        list_for_each_safe(it, tmp, &p->login_wait)
        {
            Client *c = list_entry(it, Client, pool_node);
            client_finish_login(c);
        }
    }
    pool_server_idle(s);
}

void pool_server_login_failed(Pool *p, const char *sqlstate, const char *msg, bool final)
{
    p->last_failure = time_now_usec();
    p->failure_final = final;
    snprintf(p->failure_sqlstate, sizeof(p->failure_sqlstate), "%s", sqlstate);
    free(p->failure_msg);
    p->failure_msg = strdup(msg);
    p->stats.login_failures++;
    /*
     * A failure that may pass keeps the clients queued: the janitor retries
     * after server_login_retry, and each gives up at query_wait_timeout (or
     * client_login_timeout) with this error in the message.  PostgreSQL's own
     * refusal fails them now: nobody waits for a server that refuses logins.
     */
    if (!final || !list_empty(&p->idle)) return;
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

const char *pool_last_login_error(const Pool *p)
{
    return p->last_failure && p->failure_msg ? p->failure_msg : NULL;
}

void pool_forget_login_failure(Pool *p)
{
    if (!p->last_failure) return;
    p->last_failure = 0;
    p->failure_final = false;
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
            p->last_failure = 0;
            p->failure_final = false;
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
        int total = pool_server_total(p);
        if (p->server_lifetime > 0 && now - s->created > p->server_lifetime) {
            server_close(s, "server lifetime over");
        } else if (cfg->server_idle_timeout > 0 && now - s->idle_since > cfg->server_idle_timeout &&
                   total > p->min_size) {
            server_close(s, "server idle timeout");
        } else if (s->pool->db->generation != s->generation) {
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
    /* min_pool_size: keep warm connections once the pool has been used */
    if (p->have_welcome && !pool_in_retry_window(p) && p->loop->shutdown == SHUTDOWN_NONE) {
        while (pool_server_total(p) < p->min_size && pool_server_total(p) < p->size &&
               (p->max_db <= 0 || p->db->server_count < p->max_db) &&
               (p->max_user <= 0 || p->user->server_count < p->max_user)) {
            if (!database_resolve(p->db)) break;
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
            if (loop->cfg->client_idle_timeout > 0) n = janitor_collect(loop, &p->idle_clients, n);
        }
    }
    for (int i = 0; i < n; i++) {
        Client *c = loop_client_find(loop, loop->janitor_ids[i]);
        if (c) client_check_timeouts(c, now);
    }
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
        db->generation++;
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
