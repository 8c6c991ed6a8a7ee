/*
 * http.c — /metrics, /healthz, /pools and the dashboard's routes (see http.h).
 *
 * Metric names: pgfunnel_<what>[_unit][_total]; per pool labels database,
 * user, pool_mode; per database the label database.  Times are exported in
 * seconds (Prometheus convention) although SHOW STATS counts microseconds.
 *
 * DESIGN
 *
 * A small HTTP/1.x server of its own on a bufferevent per connection (not
 * evhttp: libevent 2.1's evhttp can neither refuse a connection at accept,
 * nor bound a request's total time, nor tell when a connection goes away),
 * because the endpoint must not be a way to starve the pooler:
 *
 *  - at most HTTP_MAX_CONNECTIONS connections, and none that would leave
 *    fewer than a quarter of RLIMIT_NOFILE free (the accepted descriptor's
 *    number tells: descriptors are allocated lowest first); one more is
 *    answered 503 and closed at once, so trickling connections cannot take
 *    the descriptors PostgreSQL-port clients need;
 *  - an absolute deadline per connection, not reset by traffic: the request
 *    head within HTTP_HEAD_TIMEOUT, the answer within HTTP_TOTAL_TIMEOUT;
 *  - one request per connection (Connection: close), a head of at most
 *    HTTP_HEAD_MAX bytes, GET and HEAD only;
 *  - /metrics and /pools grow with the number of pools and databases, so
 *    they are produced in slices of about HTTP_SLICE bytes (chunked transfer
 *    encoding), the next one only when the socket has taken the previous:
 *    memory per scrape is one slice and the loop is never busy with one
 *    scrape for long.  A cursor (HttpCursor) says where the next slice
 *    starts; lists are resumed by position, so a pool that goes away while a
 *    scrape runs may hide one other pool's line from that scrape;
 *  - admin_http_auth: the password is checked on the worker pool with the
 *    request suspended, at most auth_jobs_max checks at a time (more: 503),
 *    and every result, success or failure, is remembered under SHA-256 of
 *    (user, secret, password) in a small LRU: a repeated request costs a
 *    hash on the loop, and a changed secret never matches an old entry.
 */
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "client.h"
#include "auth.h"
#include "authq.h"
#include "config.h"
#include "dashboard.h"
#include "http.h"
#include "list.h"
#include "log.h"
#include "loops.h"
#include "loop.h"
#include "peers.h"
#include "pool.h"
#include "pooldir.h"
#include "pool_control.h"
#include "server.h"
#include "stats.h"
#include "version.h"
#include "workq.h"

/* A database counts as reachable when a login succeeded this recently. */
#define HEALTH_FAILURE_WINDOW_USEC (60 * USEC_PER_SEC)

#define HTTP_MAX_CONNECTIONS 32
#define HTTP_HEAD_MAX        16384
#define HTTP_HEAD_TIMEOUT    10 /* seconds from accept */
#define HTTP_TOTAL_TIMEOUT   60 /* seconds from accept */
#define HTTP_SLICE           (64 * 1024)
#define HTTP_AUTH_MEMO       256 /* remembered password checks */

typedef struct http_stats {
    uint64_t accepted, refused, timeouts, requests;
    uint64_t auth_checks, auth_memo_hits, auth_busy;
} HttpStats;

/* One remembered password check: key = SHA-256(user, secret, password). */
typedef struct auth_memo {
    uint8_t key[32];
    bool used, ok;
    uint64_t last_use;
} AuthMemo;

/* Owned by the Loop (loop->http) from http_start() to http_stop(). */
typedef struct http_server {
    Loop *loop;
    struct evconnlistener *listener;
    struct event *ev_resume; /* accept back-off after EMFILE */
    List conns;              /* HttpConn.node */
    uint32_t next_id;
    int fd_limit;      /* accepted descriptors at or above this are refused */
    int auth_jobs;     /* password checks on the workers now */
    int auth_jobs_max; /* more are answered 503 */
    uint64_t memo_clock;
    AuthMemo memo[HTTP_AUTH_MEMO];
    HttpStats stats;
    DashState *dash; /* dashboard.c: the history behind / and /dashboard.json */
} HttpServer;

/* ---- helpers ---- */

/* Prometheus label value escaping: backslash, double quote, newline. */
static void put_label(struct evbuffer *out, const char *s)
{
    for (; s && *s; s++) {
        if (*s == '\\')
            evbuffer_add(out, "\\\\", 2);
        else if (*s == '"')
            evbuffer_add(out, "\\\"", 2);
        else if (*s == '\n')
            evbuffer_add(out, "\\n", 2);
        else
            evbuffer_add(out, s, 1);
    }
}

/* JSON string escaping (control characters as \u00XX). */
static void put_json_str(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    for (; s && *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '\\' || ch == '"')
            evbuffer_add_printf(out, "\\%c", ch);
        else if (ch < 0x20)
            evbuffer_add_printf(out, "\\u%04x", ch);
        else
            evbuffer_add(out, s, 1);
    }
    evbuffer_add(out, "\"", 1);
}

static void help_type(struct evbuffer *out, const char *name, const char *type, const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void db_sample(struct evbuffer *out, const char *name, const Database *db, double v)
{
    evbuffer_add_printf(out, "%s{database=\"", name);
    put_label(out, db->name);
    evbuffer_add_printf(out, "\"} %.17g\n", v);
}

static void pool_sample(struct evbuffer *out, const char *name, const Pool *p, double v)
{
    evbuffer_add_printf(out, "%s{database=\"", name);
    put_label(out, p->db->name);
    evbuffer_add(out, "\",user=\"", 8);
    put_label(out, p->username);
    evbuffer_add(out, "\",pool_mode=\"", 13);
    put_label(out, config_pool_mode_name(p->mode));
    evbuffer_add_printf(out, "\"} %.17g\n", v);
}

static double loop_lag_quantile(const LoopStats *ls, double q)
{
    uint64_t total = 0, seen = 0;
    for (int i = 0; i < 32; i++)
        total += (uint64_t)ls->lag_hist[i];
    if (!total) return 0;
    for (int i = 0; i < 32; i++) {
        seen += (uint64_t)ls->lag_hist[i];
        if ((double)seen >= q * (double)total) return (double)(1LL << i) / 1e6;
    }
    return (double)ls->lag_max / 1e6;
}

/* ---- /metrics ---- */

typedef enum { PM_GAUGE, PM_COUNTER } PmKind;

/* A pool's numbers over every loop (pool_counts_all) and its resolved size. */
typedef struct pool_view {
    PoolCounts c;
    int size;
} PoolView;

typedef struct pool_metric {
    const char *name, *help;
    double (*get)(const PoolView *v);
} PoolMetric;

static double pm_cl_active(const PoolView *v)
{
    return v->c.cl_active;
}
static double pm_cl_waiting(const PoolView *v)
{
    return v->c.cl_waiting;
}
static double pm_sv_active(const PoolView *v)
{
    return v->c.sv_active;
}
static double pm_sv_idle(const PoolView *v)
{
    return v->c.sv_idle;
}
static double pm_sv_used(const PoolView *v)
{
    return v->c.sv_used + v->c.sv_tested;
}
static double pm_sv_login(const PoolView *v)
{
    return v->c.sv_login;
}
static double pm_maxwait(const PoolView *v)
{
    return (double)v->c.maxwait / 1e6;
}
static double pm_size(const PoolView *v)
{
    return v->size;
}

static const PoolMetric pool_metrics[] = {
    {"pgfunnel_pool_client_active_connections",
     "Clients logged in and not waiting (SHOW POOLS cl_active)", pm_cl_active},
    {"pgfunnel_pool_client_waiting_connections", "Clients waiting for a server (cl_waiting)",
     pm_cl_waiting},
    {"pgfunnel_pool_server_active_connections", "Servers linked to a client (sv_active)",
     pm_sv_active},
    {"pgfunnel_pool_server_idle_connections", "Servers idle and ready (sv_idle)", pm_sv_idle},
    {"pgfunnel_pool_server_used_connections",
     "Servers running a pooler query: reset, check (sv_used + sv_tested)", pm_sv_used},
    {"pgfunnel_pool_server_login_connections", "Servers logging in (sv_login)", pm_sv_login},
    {"pgfunnel_pool_maxwait_seconds", "How long the oldest waiting client has waited (maxwait)",
     pm_maxwait},
    {"pgfunnel_pool_size", "Servers the pool may open (resolved pool_size)", pm_size},
};

typedef struct db_counter {
    const char *name, *help;
    int field; /* index into the values filled by db_counter_values */
    double scale;
} DbCounter;

static void db_counter_values(const PoolStats *s, double *v)
{
    v[0] = (double)s->server_assignments;
    v[1] = (double)s->xact_count;
    v[2] = (double)s->query_count;
    v[3] = (double)s->bytes_in;
    v[4] = (double)s->bytes_out;
    v[5] = (double)s->xact_time;
    v[6] = (double)s->query_time;
    v[7] = (double)s->wait_time;
    v[8] = (double)s->logins;
    v[9] = (double)s->login_failures;
    v[10] = 0;
}

static const DbCounter db_counters[] = {
    {"pgfunnel_server_assignments_total", "Times a server was assigned to a client", 0, 1},
    {"pgfunnel_transactions_total", "SQL transactions pooled", 1, 1},
    {"pgfunnel_queries_total", "SQL queries pooled", 2, 1},
    {"pgfunnel_received_bytes_total", "Bytes received from clients", 3, 1},
    {"pgfunnel_sent_bytes_total", "Bytes sent to clients", 4, 1},
    {"pgfunnel_transaction_time_seconds_total", "Time spent in transactions", 5, 1e-6},
    {"pgfunnel_query_time_seconds_total", "Time spent in queries", 6, 1e-6},
    {"pgfunnel_client_wait_time_seconds_total", "Time clients waited for a server", 7, 1e-6},
    {"pgfunnel_client_logins_total", "Client logins", 8, 1},
    {"pgfunnel_login_failures_total", "Server login failures (authentication or connection)", 9, 1},
    {"pgfunnel_client_parses_total", "Parse messages from clients (not tracked yet: 0)", 10, 1},
    {"pgfunnel_server_parses_total", "Parse messages sent to servers (not tracked yet: 0)", 10, 1},
    {"pgfunnel_binds_total", "Bind messages (not tracked yet: 0)", 10, 1},
};

/*
 * Where the next slice of a long answer starts: the family (a metric with
 * its HELP/TYPE, or a part of the JSON), whether its header is written and
 * how many of its items (pools or databases) are.
 */
typedef struct http_cursor {
    int family;
    bool header;
    uint64_t done;
    const char *query; /* the request's query string (HttpConn.query) */
    DashCursor dash;   /* /dashboard.json keeps its own */
} HttpCursor;

/* Write the items a family has not written yet until the slice is full; true when all are. */
typedef void (*PoolSampleFn)(struct evbuffer *out, const Pool *p, int which, usec_t now,
                             bool first);
typedef void (*DbSampleFn)(struct evbuffer *out, Database *db, int which);

static bool slice_full(struct evbuffer *out)
{
    return evbuffer_get_length(out) >= HTTP_SLICE;
}

/*
 * Every pool once, over every loop (the first loop that has a part of it
 * stands for it), and every database once; the other loops are frozen
 * while a slice is written (http_body_slice).
 */
static bool put_pools(Loop *loop, struct evbuffer *out, HttpCursor *cur, PoolSampleFn fn, int which,
                      usec_t now)
{
    ListNode *dit, *pit;
    uint64_t i = 0;
    for (int li = 0; li < loop->set->n; li++)
        list_for_each(dit, &loop->set->loops[li]->databases)
        {
            Database *db = list_entry(dit, Database, node);
            list_for_each(pit, &db->pools)
            {
                Pool *p = list_entry(pit, Pool, db_node);
                if (!pool_first_shard(p)) continue;
                if (i++ < cur->done) continue;
                if (slice_full(out)) return false;
                fn(out, p, which, now, i == 1);
                cur->done = i;
            }
        }
    return true;
}

static bool put_dbs(Loop *loop, struct evbuffer *out, HttpCursor *cur, DbSampleFn fn, int which)
{
    ListNode *it;
    uint64_t i = 0;
    for (int li = 0; li < loop->set->n; li++)
        list_for_each(it, &loop->set->loops[li]->databases)
        {
            Database *db = list_entry(it, Database, node);
            if (!pool_first_database(db)) continue;
            if (i++ < cur->done) continue;
            if (slice_full(out)) return false;
            fn(out, db, which);
            cur->done = i;
        }
    return true;
}

static void pool_view(const Pool *p, usec_t now, PoolView *v)
{
    pool_counts_all(p, now, &v->c);
    v->size = p->size;
}

/* ---- /metrics ---- */

#define N_POOL_METRICS ((int)(sizeof(pool_metrics) / sizeof(pool_metrics[0])))
#define N_DB_COUNTERS  ((int)(sizeof(db_counters) / sizeof(db_counters[0])))

static void pool_metric_sample(struct evbuffer *out, const Pool *p, int which, usec_t now,
                               bool first)
{
    PoolView v;
    (void)first;
    pool_view(p, now, &v);
    pool_sample(out, pool_metrics[which].name, p, pool_metrics[which].get(&v));
}

static void db_counter_sample(struct evbuffer *out, Database *db, int which)
{
    PoolStats s;
    double v[11];
    stats_db_totals(db, &s);
    db_counter_values(&s, v);
    db_sample(out, db_counters[which].name, db,
              v[db_counters[which].field] * db_counters[which].scale);
}

static const char *const hist_names[3][2] = {
    {"pgfunnel_query_duration_seconds",
     "Query time: first message of a query to its ReadyForQuery"},
    {"pgfunnel_transaction_duration_seconds", "Transaction time"},
    {"pgfunnel_client_wait_duration_seconds", "Time a client waited for a server"},
};

static void db_histogram_sample(struct evbuffer *out, Database *db, int which)
{
    const char *name = hist_names[which][0];
    PoolLatency l;
    stats_db_latency(db, &l);
    const StatsHist *h = which == 0 ? &l.query : which == 1 ? &l.xact : &l.wait;
    uint64_t cum = 0;
    for (int i = 0; i < STATS_HIST_BUCKETS; i++) {
        cum += h->buckets[i];
        evbuffer_add_printf(out, "%s_bucket{database=\"", name);
        put_label(out, db->name);
        if (i < STATS_HIST_BOUNDS)
            evbuffer_add_printf(out, "\",le=\"%g\"} %llu\n", (double)stats_hist_bounds[i] / 1e6,
                                (unsigned long long)cum);
        else
            evbuffer_add_printf(out, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    evbuffer_add_printf(out, "%s_sum{database=\"", name);
    put_label(out, db->name);
    evbuffer_add_printf(out, "\"} %.17g\n", (double)h->sum / 1e6);
    evbuffer_add_printf(out, "%s_count{database=\"", name);
    put_label(out, db->name);
    evbuffer_add_printf(out, "\"} %llu\n", (unsigned long long)h->count);
}

/* SHOW DATABASES */
static const char *const db_gauges[][2] = {
    {"pgfunnel_database_current_connections", "Server connections of the database"},
    {"pgfunnel_database_max_connections", "max_db_connections (0 = unlimited)"},
    {"pgfunnel_database_paused", "1 while the database is paused"},
    {"pgfunnel_database_disabled", "1 while the database is disabled"},
    {"pgfunnel_database_pools", "Pools of the database"},
};
#define N_DB_GAUGES ((int)(sizeof(db_gauges) / sizeof(db_gauges[0])))

/* Pools of the database over every loop. */
static int db_pool_count(const Database *db)
{
    LoopSet *set = db->loop->set;
    ListNode *it;
    int n = 0;
    for (int i = 0; i < set->n; i++) {
        const Database *d = pool_database_get(set->loops[i], db->name, false);
        if (!d) continue;
        list_for_each(it, &d->pools) n += pool_first_shard(list_entry(it, Pool, db_node));
    }
    return n;
}

static void db_gauge_sample(struct evbuffer *out, Database *db, int which)
{
    Config *cfg = db->loop->cfg;
    const DbConf *dc = which == 1 ? config_find_db(cfg, db->name) : NULL;
    double v = which == 0   ? pool_database_servers(db)
               : which == 1 ? (dc && dc->max_db_connections != CONF_UNSET ? dc->max_db_connections
                                                                          : cfg->max_db_connections)
               : which == 2 ? db->paused
               : which == 3 ? db->disabled
                            : db_pool_count(db);
    db_sample(out, db_gauges[which][0], db, v);
}

static void gauge1(struct evbuffer *out, const char *name, const char *type, const char *help,
                   double v)
{
    help_type(out, name, type, help);
    evbuffer_add_printf(out, "%s %.17g\n", name, v);
}

static void metrics_head(Loop *loop, struct evbuffer *out, usec_t now)
{
    help_type(out, "pgfunnel_info", "gauge", "Version of the running pgfunnel");
    evbuffer_add_printf(out, "pgfunnel_info{version=\"%s\"} 1\n", PGFUNNEL_VERSION);
    gauge1(out, "pgfunnel_uptime_seconds", "gauge", "Seconds since start",
           (double)(now - loop->started_at) / 1e6);
    gauge1(out, "pgfunnel_paused", "gauge", "1 while PAUSE (all databases) is in effect",
           pool_control_paused_all(loop));
    gauge1(out, "pgfunnel_shutting_down", "gauge", "1 once a shutdown began",
           loop->shutdown != SHUTDOWN_NONE);
}

/* One sample of a per-loop gauge or counter: loop="i". */
static void loop_sample(struct evbuffer *out, const char *name, int index, double v)
{
    evbuffer_add_printf(out, "%s{loop=\"%d\"} %.17g\n", name, index, v);
}

/* Per loop, so an operator sees imbalance between them (SHOW LOOPS has the same). */
static void metrics_loops(Loop *loop, struct evbuffer *out)
{
    LoopSet *set = loop->set;
    static const char *const names[][3] = {
        {"pgfunnel_event_loop_client_connections", "gauge",
         "Client connections of each event loop"},
        {"pgfunnel_event_loop_server_connections", "gauge",
         "Server connections of each event loop"},
        {"pgfunnel_event_loop_clients_accepted_total", "counter",
         "Client connections each event loop was dealt"},
        {"pgfunnel_event_loop_lag_max_seconds", "gauge",
         "Largest lag of each event loop's 100 ms tick since start"},
        {"pgfunnel_event_loop_cpu_seconds_total", "counter",
         "CPU time of each event loop's thread"},
    };
    for (int m = 0; m < 5; m++) {
        help_type(out, names[m][0], names[m][1], names[m][2]);
        for (int i = 0; i < set->n; i++) {
            Loop *l = set->loops[i];
            double v = m == 0   ? l->client_count
                       : m == 1 ? l->server_count
                       : m == 2 ? (double)l->stats.clients_accepted
                       : m == 3 ? (double)l->stats.lag_max / 1e6
                                : loop_cpu_seconds(l);
            loop_sample(out, names[m][0], i, v);
        }
    }
    gauge1(out, "pgfunnel_event_loops", "gauge", "Event loops (event_loops)", set->n);
    gauge1(out, "pgfunnel_event_loop_handovers_total", "counter",
           "Idle servers handed from one event loop to another's waiting client",
           (double)atomic_load(&set->handovers));
    gauge1(out, "pgfunnel_event_loop_cancels_routed_total", "counter",
           "Cancel requests passed to the event loop of their client",
           (double)atomic_load(&set->cancels_routed));
    gauge1(out, "pgfunnel_event_loop_messages_total", "counter", "Messages between event loops",
           (double)atomic_load(&set->posts));
    gauge1(out, "pgfunnel_event_loop_freezes_total", "counter",
           "Times every event loop was stopped briefly to read them all (SHOW, /metrics)",
           (double)atomic_load(&set->freezes));
    gauge1(out, "pgfunnel_event_loop_freeze_seconds_total", "counter",
           "Time spent waiting for every event loop to stop for such a read",
           (double)atomic_load(&set->freeze_usec) / 1e6);
}

/* Sum of a per-loop field over every loop (frozen). */
#define SUM_LOOPS(loop, expr)                                                                      \
    ({                                                                                             \
        double sum_ = 0;                                                                           \
        for (int i_ = 0; i_ < (loop)->set->n; i_++) {                                              \
            Loop *L_ = (loop)->set->loops[i_];                                                     \
            sum_ += (double)(expr);                                                                \
        }                                                                                          \
        sum_;                                                                                      \
    })

/*
 * SHOW HOSTS as gauges, labelled host and port; the hosts come from the
 * configuration, so there are few of them: one slice.  Unknown roles and
 * hosts never checked have no pgfunnel_host_standby / _check samples.
 */
static void metrics_hosts(Loop *loop, struct evbuffer *out)
{
    static const char *const fam[][2] = {
        {"pgfunnel_host_up", "1 while the host passes its health checks (or served a login)"},
        {"pgfunnel_host_standby", "1 for a standby (in hot standby), 0 for a primary"},
        {"pgfunnel_host_check_latency_seconds", "How long the last health check took"},
        {"pgfunnel_host_last_check_age_seconds", "Seconds since the last health check ended"},
        {"pgfunnel_host_server_connections", "Server connections open to the host"},
    };
    usec_t now = time_now_usec();
    for (int f = 0; f < 5; f++) {
        help_type(out, fam[f][0], "gauge", fam[f][1]);
        const Host *h;
        for (size_t i = 0; (h = hosts_at(loop, i)) != NULL; i++) {
            int role = atomic_load(&h->role);
            usec_t last = (usec_t)atomic_load(&h->last_check);
            double v;
            if (f == 0)
                v = atomic_load(&h->state) == HOST_UP;
            else if (f == 1 && role != HOST_ROLE_UNKNOWN)
                v = role == HOST_ROLE_STANDBY;
            else if (f == 2 && last)
                v = (double)atomic_load(&h->check_usec) / 1e6;
            else if (f == 3 && last)
                v = (double)(now - last) / 1e6;
            else if (f == 4)
                v = atomic_load(&h->servers);
            else
                continue;
            evbuffer_add_printf(out, "%s{host=\"", fam[f][0]);
            put_label(out, h->name);
            evbuffer_add_printf(out, "\",port=\"%d\"} %.17g\n", h->port, v);
        }
    }
    PeersStats ps;
    peers_get_stats(loop, &ps);
    gauge1(out, "pgfunnel_cancel_requests_forwarded_total", "counter",
           "Cancel requests forwarded to the peer that owns their key", (double)ps.forwarded);
    gauge1(out, "pgfunnel_cancel_forward_failures_total", "counter",
           "Cancel requests whose peer could not be reached (dropped)", (double)ps.forward_failed);
    gauge1(out, "pgfunnel_cancel_requests_dropped_total", "counter",
           "Cancel requests for an unknown peer, already forwarded, or over the in-flight limit",
           (double)ps.dropped);
}

/* SHOW LISTS, process and loop health, the HTTP endpoint itself. */
static void metrics_tail(Loop *loop, struct evbuffer *out)
{
    Config *cfg = loop->cfg;
    ListNode *dit;
    int pools = 0, login = 0, dbs = 0, users = 0;
    for (int i = 0; i < loop->set->n; i++) {
        Loop *l = loop->set->loops[i];
        list_for_each(dit, &l->databases)
        {
            Database *db = list_entry(dit, Database, node);
            dbs += pool_first_database(db);
            ListNode *pit;
            list_for_each(pit, &db->pools) pools +=
                pool_first_shard(list_entry(pit, Pool, db_node));
        }
        list_for_each(dit, &l->users) users += pool_first_user(list_entry(dit, PoolUser, node));
        list_for_each(dit, &l->clients)
        {
            if (list_entry(dit, Client, all_node)->state < CLIENT_LOGIN_WAIT) login++;
        }
    }
    metrics_hosts(loop, out);
    gauge1(out, "pgfunnel_databases", "gauge", "Databases in use (SHOW LISTS databases)", dbs);
    gauge1(out, "pgfunnel_users", "gauge", "Backend users in use", users);
    gauge1(out, "pgfunnel_pools", "gauge", "Pools", pools);
    gauge1(out, "pgfunnel_client_connections", "gauge", "Client connections (used_clients)",
           SUM_LOOPS(loop, L_->client_count));
    gauge1(out, "pgfunnel_login_client_connections", "gauge", "Clients still logging in", login);
    gauge1(out, "pgfunnel_server_connections", "gauge", "Server connections (used_servers)",
           SUM_LOOPS(loop, L_->server_count));
    gauge1(out, "pgfunnel_max_client_connections", "gauge", "max_client_conn",
           cfg->max_client_conn);

    gauge1(out, "pgfunnel_clients_accepted_total", "counter", "Client connections accepted",
           SUM_LOOPS(loop, L_->stats.clients_accepted));
    gauge1(out, "pgfunnel_clients_rejected_total", "counter",
           "Clients refused (max_client_conn, bad startup)",
           SUM_LOOPS(loop, L_->stats.clients_rejected));
    gauge1(out, "pgfunnel_servers_opened_total", "counter", "Server connections opened",
           SUM_LOOPS(loop, L_->stats.servers_opened));
    gauge1(out, "pgfunnel_servers_failed_total", "counter", "Server connections that failed",
           SUM_LOOPS(loop, L_->stats.servers_failed));
    gauge1(out, "pgfunnel_accept_errors_total", "counter", "accept() failures",
           SUM_LOOPS(loop, L_->stats.accept_errors));
    AuthStats as_;
    const AuthStats *as = &as_;
    auth_get_stats(loop, &as_);
    gauge1(out, "pgfunnel_client_auth_ok_total", "counter", "Client authentications that succeeded",
           (double)as->ok);
    gauge1(out, "pgfunnel_client_auth_failures_total", "counter",
           "Client authentications that failed (wrong password, unknown user, expired, rejected)",
           (double)as->failed);
    gauge1(out, "pgfunnel_client_auth_scram_derivations_total", "counter",
           "SCRAM verifiers derived from plaintext secrets (PBKDF2 on a worker)",
           (double)as->scram_derivations);
    gauge1(out, "pgfunnel_client_auth_scram_cache_hits_total", "counter",
           "SCRAM logins that found their verifier already derived", (double)as->scram_cache_hits);
    AuthqStats aq = {0}, one;
    for (int i = 0; i < loop->set->n; i++) {
        authq_get_stats(loop->set->loops[i], &one);
        aq.lookups += one.lookups;
        aq.errors += one.errors;
        aq.connects += one.connects;
        aq.queued += one.queued;
        aq.idle += one.idle;
    }
    gauge1(out, "pgfunnel_auth_query_lookups_total", "counter", "auth_query lookups started",
           (double)aq.lookups);
    gauge1(out, "pgfunnel_auth_query_errors_total", "counter",
           "auth_query lookups whose connection or query failed", (double)aq.errors);
    gauge1(out, "pgfunnel_auth_query_connects_total", "counter",
           "Backend connections opened for auth_query", (double)aq.connects);
    gauge1(out, "pgfunnel_auth_query_queued", "gauge", "auth_query lookups waiting to run",
           (double)aq.queued);
    gauge1(out, "pgfunnel_auth_query_connections_idle", "gauge",
           "auth_query connections kept for the next lookup", (double)aq.idle);
    gauge1(out, "pgfunnel_tls_handshakes_total", "counter", "Client TLS handshakes completed",
           SUM_LOOPS(loop, L_->stats.tls_handshakes));
    gauge1(out, "pgfunnel_tls_handshake_failures_total", "counter",
           "Client TLS handshakes that failed", SUM_LOOPS(loop, L_->stats.tls_handshake_failures));
    /* loop health: the worst loop (per loop: metrics_loops) */
    LoopStats lsum = {0};
    for (int i = 0; i < loop->set->n; i++) {
        const LoopStats *one_ls = &loop->set->loops[i]->stats;
        lsum.lag_samples += one_ls->lag_samples;
        if (one_ls->lag_max > lsum.lag_max) lsum.lag_max = one_ls->lag_max;
        for (int b = 0; b < 32; b++)
            lsum.lag_hist[b] += one_ls->lag_hist[b];
    }
    LoopStats *ls = &lsum;
    gauge1(out, "pgfunnel_loop_lag_samples_total", "counter", "Loop lag measurements (100 ms tick)",
           (double)ls->lag_samples);
    gauge1(out, "pgfunnel_loop_lag_max_seconds", "gauge", "Largest loop lag seen",
           (double)ls->lag_max / 1e6);
    gauge1(out, "pgfunnel_loop_lag_p50_seconds", "gauge",
           "Median loop lag (power-of-two resolution)", loop_lag_quantile(ls, 0.5));
    gauge1(out, "pgfunnel_loop_lag_p99_seconds", "gauge",
           "99th percentile loop lag (power-of-two resolution)", loop_lag_quantile(ls, 0.99));
    gauge1(out, "pgfunnel_receive_buffers_in_use", "gauge", "Receive buffers held by connections",
           SUM_LOOPS(loop, L_->buf_in_use));

    WorkqStats ws;
    workq_get_stats(loop->workq, &ws);
    gauge1(out, "pgfunnel_workq_threads", "gauge", "Worker threads", ws.threads);
    gauge1(out, "pgfunnel_workq_queue_depth", "gauge", "Jobs waiting for a worker", ws.queue_depth);
    gauge1(out, "pgfunnel_workq_running", "gauge", "Jobs running on workers", ws.running);
    gauge1(out, "pgfunnel_workq_jobs_submitted_total", "counter", "Jobs submitted",
           (double)ws.submitted);
    gauge1(out, "pgfunnel_workq_jobs_completed_total", "counter", "Jobs completed",
           (double)ws.completed);
    gauge1(out, "pgfunnel_workq_jobs_rejected_total", "counter", "Jobs refused: queue full",
           (double)ws.rejected);
    gauge1(out, "pgfunnel_workq_wait_seconds_total", "counter", "Time jobs waited for a worker",
           (double)ws.wait_usec_total / 1e6);
    gauge1(out, "pgfunnel_log_lines_dropped_total", "counter",
           "Log lines dropped because the log queue was full", (double)log_dropped_count());
    gauge1(out, "pgfunnel_log_lines_written_total", "counter", "Log lines written",
           (double)log_written_count());

    metrics_loops(loop, out);
    HttpServer *hs = loop->http;
    HttpStats *st = &hs->stats;
    gauge1(out, "pgfunnel_http_connections", "gauge", "HTTP connections open", hs->conns.count);
    gauge1(out, "pgfunnel_http_requests_total", "counter", "HTTP requests read",
           (double)st->requests);
    gauge1(out, "pgfunnel_http_connections_refused_total", "counter",
           "HTTP connections closed at once: connection cap or file descriptors running out",
           (double)st->refused);
    gauge1(out, "pgfunnel_http_timeouts_total", "counter",
           "HTTP connections closed at their deadline", (double)st->timeouts);
    gauge1(out, "pgfunnel_http_auth_checks_total", "counter",
           "admin_http_auth passwords checked on the worker pool", (double)st->auth_checks);
    gauge1(out, "pgfunnel_http_auth_cache_hits_total", "counter",
           "admin_http_auth answers from remembered checks (successes and failures)",
           (double)st->auth_memo_hits);
    gauge1(out, "pgfunnel_http_auth_busy_total", "counter",
           "Requests answered 503 because too many password checks were running",
           (double)st->auth_busy);
}

/*
 * The families of /metrics in order: the head, the per-pool gauges, the
 * per-database counters, histograms and gauges, the tail.  One slice; true
 * when the last family is written.
 */
static bool metrics_slice(Loop *loop, struct evbuffer *out, HttpCursor *cur)
{
    usec_t now = time_now_usec();
    for (;;) {
        int f = cur->family;
        bool finished = true;
        if (f == 0) {
            metrics_head(loop, out, now);
        } else if ((f -= 1) < N_POOL_METRICS) {
            if (!cur->header) help_type(out, pool_metrics[f].name, "gauge", pool_metrics[f].help);
            cur->header = true;
            finished = put_pools(loop, out, cur, pool_metric_sample, f, now);
        } else if ((f -= N_POOL_METRICS) < N_DB_COUNTERS) {
            if (!cur->header) help_type(out, db_counters[f].name, "counter", db_counters[f].help);
            cur->header = true;
            finished = put_dbs(loop, out, cur, db_counter_sample, f);
        } else if ((f -= N_DB_COUNTERS) < 3) {
            if (!cur->header) help_type(out, hist_names[f][0], "histogram", hist_names[f][1]);
            cur->header = true;
            finished = put_dbs(loop, out, cur, db_histogram_sample, f);
        } else if ((f -= 3) < N_DB_GAUGES) {
            if (!cur->header) help_type(out, db_gauges[f][0], "gauge", db_gauges[f][1]);
            cur->header = true;
            finished = put_dbs(loop, out, cur, db_gauge_sample, f);
        } else if (f == N_DB_GAUGES) {
            metrics_tail(loop, out);
        } else {
            return true;
        }
        if (!finished) return false;
        cur->family++;
        cur->header = false;
        cur->done = 0;
        if (slice_full(out)) return false;
    }
}

/* ---- /healthz ---- */

typedef enum { DB_OK, DB_UNTESTED, DB_FAILING } DbHealth;

static DbHealth db_health(Loop *loop, const char *name, const char **why)
{
    ListNode *it;
    usec_t now = time_now_usec();
    bool failing = false, tried = false, used = false;
    for (int i = 0; i < loop->set->n; i++) {
        Database *db = pool_database_get(loop->set->loops[i], name, false);
        if (!db) continue;
        list_for_each(it, &db->pools)
        {
            Pool *p = list_entry(it, Pool, db_node);
            used = true;
            if (pool_server_total(p) > 0 && (p->idle.count || p->active.count)) {
                *why = "has servers";
                return DB_OK;
            }
            if (p->have_welcome) tried = true;
            usec_t failed_at = pooldir_failure_at(p->shared);
            if (failed_at && now - failed_at < HEALTH_FAILURE_WINDOW_USEC) failing = true;
        }
    }
    if (!used) {
        *why = "not used yet";
        return DB_UNTESTED;
    }
    if (failing) {
        *why = "recent server login failure and no server connection";
        return DB_FAILING;
    }
    *why = tried ? "last login succeeded, no server open now" : "not used yet";
    return tried ? DB_OK : DB_UNTESTED;
}

/* Small: one entry per configured database, written whole. */
static int healthz(Loop *loop, struct evbuffer *out)
{
    bool ok = true;
    const char *reason = "ok";
    if (loop->shutdown != SHUTDOWN_NONE) {
        ok = false;
        reason = "shutting down";
    } else if (list_empty(&loop->listeners)) {
        ok = false;
        reason = "not listening";
    }
    evbuffer_add_printf(out, "{\"databases\":[");
    bool first = true;
    for (const DbConf *dc = loop->cfg->databases; dc; dc = dc->next) {
        if (strcmp(dc->name, "*") == 0) continue;
        const char *why;
        DbHealth h = db_health(loop, dc->name, &why);
        if (h == DB_FAILING && ok) {
            ok = false;
            reason = "a database has no reachable backend";
        }
        evbuffer_add_printf(out, "%s{\"name\":", first ? "" : ",");
        put_json_str(out, dc->name);
        evbuffer_add_printf(out, ",\"status\":\"%s\",\"detail\":",
                            h == DB_OK         ? "ok"
                            : h == DB_UNTESTED ? "untested"
                                               : "failing");
        put_json_str(out, why);
        evbuffer_add_printf(out, "}");
        first = false;
    }
    evbuffer_add_printf(out, "],\"status\":\"%s\",\"reason\":", ok ? "ok" : "unavailable");
    put_json_str(out, reason);
    evbuffer_add_printf(out, "}\n");
    return ok ? 200 : 503;
}

/* ---- /pools ---- */

static void pool_json(struct evbuffer *out, const Pool *p, int which, usec_t now, bool first)
{
    const Database *db = p->db;
    LoopSet *set = p->loop->set;
    PoolView v;
    PoolStats st = {0};
    StatsHist q = {0};
    (void)which;
    pool_view(p, now, &v);
    for (int i = 0; i < set->n; i++) {
        const Pool *part = pool_shard_of(set->loops[i], p);
        if (!part) continue;
        stats_add(&st, &part->stats);
        stats_hist_merge(&q, &part->latency.query);
    }
    evbuffer_add_printf(out, "%s{\"database\":", first ? "" : ",");
    put_json_str(out, db->name);
    evbuffer_add_printf(out, ",\"user\":");
    put_json_str(out, p->username);
    evbuffer_add_printf(out, ",\"pool_mode\":\"%s\"", config_pool_mode_name(p->mode));
    for (int m = 0; m < N_POOL_METRICS; m++)
        evbuffer_add_printf(out, ",\"%s\":%.17g", pool_metrics[m].name + strlen("pgfunnel_pool_"),
                            pool_metrics[m].get(&v));
    evbuffer_add_printf(out,
                        ",\"paused\":%s,\"disabled\":%s,\"xact_count\":%llu,"
                        "\"query_count\":%llu,\"query_p50_us\":%.0f,\"query_p99_us\":%.0f}",
                        db->paused ? "true" : "false", db->disabled ? "true" : "false",
                        (unsigned long long)st.xact_count, (unsigned long long)st.query_count,
                        stats_hist_quantile(&q, 0.5), stats_hist_quantile(&q, 0.99));
}

static bool pools_slice(Loop *loop, struct evbuffer *out, HttpCursor *cur)
{
    if (cur->family == 0) {
        evbuffer_add_printf(out, "{\"pools\":[");
        cur->family = 1;
    }
    if (!put_pools(loop, out, cur, pool_json, 0, time_now_usec())) return false;
    evbuffer_add_printf(out, "]}\n");
    return true;
}

/* ---- the dashboard (dashboard.c) ---- */

static bool dashboard_slice(Loop *loop, struct evbuffer *out, HttpCursor *cur)
{
    return dash_json_slice(loop->http->dash, cur->query, out, &cur->dash, HTTP_SLICE);
}

/* ---- connections ---- */

typedef enum {
    HC_HEAD, /* reading the request head */
    HC_AUTH, /* a worker checks the password; the request waits */
    HC_BODY, /* a long answer is being produced slice by slice */
    HC_DONE, /* the whole answer is queued: closed once it is written */
} HttpPhase;

typedef bool (*SliceFn)(Loop *loop, struct evbuffer *out, HttpCursor *cur);

/* One HTTP connection, owned by the HttpServer (hs->conns) until http_conn_free(). */
typedef struct http_conn {
    ListNode node;
    HttpServer *hs;
    uint32_t id; /* worker completions find the connection by id */
    struct bufferevent *bev;
    struct event *deadline;
    usec_t accepted_at;
    HttpPhase phase;
    bool head_only; /* HEAD request */
    bool http10;    /* no chunked encoding: the body ends when the connection does */
    char path[64];  /* the route, once the request head is read */
    char query[64]; /* what followed '?' (cut at 63 bytes) */
    SliceFn slice;  /* HC_BODY: what produces the next slice */
    HttpCursor cur;
} HttpConn;

/* The request head, parsed; holds credentials, so it is wiped after use. */
typedef struct http_request {
    bool head_only, http10, has_auth;
    char path[64];
    char query[64];
    char user[256];
    char password[512];
} HttpRequest;

static void http_conn_free(HttpConn *hc)
{
    HttpServer *hs = hc->hs;
    list_remove(&hs->conns, &hc->node);
    event_free(hc->deadline);
    bufferevent_free(hc->bev); /* closes the socket */
    free(hc);
}

static HttpConn *http_conn_find(HttpServer *hs, uint32_t id)
{
    ListNode *it;
    list_for_each(it, &hs->conns)
    {
        HttpConn *hc = list_entry(it, HttpConn, node);
        if (hc->id == id) return hc;
    }
    return NULL;
}

/* A complete short answer; the connection closes once it is written. */
static void http_reply(HttpConn *hc, int code, const char *reason, const char *ctype,
                       const char *extra, struct evbuffer *body)
{
    struct evbuffer *out = bufferevent_get_output(hc->bev);
    size_t len = body ? evbuffer_get_length(body) : 0;
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n%s\r\n",
                        code, reason, ctype ? ctype : "text/plain; charset=utf-8", len,
                        extra ? extra : "");
    if (body && !hc->head_only) evbuffer_add_buffer(out, body);
    hc->phase = HC_DONE;
    bufferevent_enable(hc->bev, EV_WRITE);
}

static void http_reply_text(HttpConn *hc, int code, const char *reason, const char *extra,
                            const char *text)
{
    struct evbuffer *body = evbuffer_new();
    if (body) evbuffer_add(body, text, strlen(text));
    http_reply(hc, code, reason, NULL, extra, body);
    if (body) evbuffer_free(body);
}

/* Produce the next slice of a long answer as one chunk (the last one ends the body). */
static void http_body_slice(HttpConn *hc)
{
    struct evbuffer *out = bufferevent_get_output(hc->bev);
    struct evbuffer *slice = evbuffer_new();
    if (!slice) {
        http_conn_free(hc);
        return;
    }
    /* the other loops are frozen while a slice reads them (loops.h) */
    loops_freeze(hc->hs->loop);
    bool done = hc->slice(hc->hs->loop, slice, &hc->cur);
    loops_thaw(hc->hs->loop);
    size_t len = evbuffer_get_length(slice);
    if (len > 0 && !hc->http10) evbuffer_add_printf(out, "%zx\r\n", len);
    evbuffer_add_buffer(out, slice);
    if (len > 0 && !hc->http10) evbuffer_add(out, "\r\n", 2);
    evbuffer_free(slice);
    if (done) {
        if (!hc->http10) evbuffer_add(out, "0\r\n\r\n", 5);
        hc->phase = HC_DONE;
    }
}

/* Start a long answer; the write callback asks for each further slice. */
static void http_reply_stream(HttpConn *hc, const char *ctype, SliceFn fn)
{
    struct evbuffer *out = bufferevent_get_output(hc->bev);
    evbuffer_add_printf(out, "HTTP/1.%d 200 OK\r\nContent-Type: %s\r\n%sConnection: close\r\n\r\n",
                        hc->http10 ? 0 : 1, ctype,
                        hc->http10 ? "" : "Transfer-Encoding: chunked\r\n");
    bufferevent_enable(hc->bev, EV_WRITE);
    if (hc->head_only) {
        hc->phase = HC_DONE;
        return;
    }
    hc->slice = fn;
    memset(&hc->cur, 0, sizeof(hc->cur));
    hc->cur.query = hc->query;
    hc->phase = HC_BODY;
    http_body_slice(hc);
}

static void http_route(HttpConn *hc)
{
    Loop *loop = hc->hs->loop;
    if (strcmp(hc->path, "/metrics") == 0) {
        http_reply_stream(hc, "text/plain; version=0.0.4; charset=utf-8", metrics_slice);
    } else if (strcmp(hc->path, "/healthz") == 0) {
        struct evbuffer *body = evbuffer_new();
        if (!body) {
            http_conn_free(hc);
            return;
        }
        loops_freeze(loop);
        int code = healthz(loop, body);
        loops_thaw(loop);
        http_reply(hc, code, code == 200 ? "OK" : "Service Unavailable", "application/json", NULL,
                   body);
        evbuffer_free(body);
    } else if (strcmp(hc->path, "/pools") == 0) {
        http_reply_stream(hc, "application/json", pools_slice);
    } else if (strcmp(hc->path, "/") == 0 || strcmp(hc->path, "/index.html") == 0) {
        /* the page is a constant: referenced, not copied */
        struct evbuffer *body = evbuffer_new();
        size_t len;
        const unsigned char *page = dash_page(&len);
        char extra[512];
        if (!body || evbuffer_add_reference(body, page, len, NULL, NULL) < 0) {
            if (body) evbuffer_free(body);
            http_conn_free(hc);
            return;
        }
        snprintf(extra, sizeof(extra),
                 "Content-Security-Policy: %s\r\nCache-Control: no-cache\r\n"
                 "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n",
                 dash_page_csp(hc->hs->dash));
        http_reply(hc, 200, "OK", "text/html; charset=utf-8", extra, body);
        evbuffer_free(body);
    } else if (strcmp(hc->path, "/dashboard.json") == 0) {
        http_reply_stream(hc, "application/json", dashboard_slice);
    } else {
        http_reply_text(hc, 404, "Not Found", NULL,
                        "not found: try /, /dashboard.json, /metrics, /healthz or /pools\n");
    }
}

/* ---- admin_http_auth ---- */

typedef struct http_auth_job {
    WorkqJob job;
    Loop *loop; /* the server may be stopped before the completion runs */
    uint32_t conn_id;
    uint8_t key[32];
    bool has_key; /* remember the result under key */
    char *user, *secret, *password;
    bool ok;
} HttpAuthJob;

static void http_free_wiped(char *s)
{
    if (!s) return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

static void http_auth_job_free(HttpAuthJob *j)
{
    free(j->user);
    http_free_wiped(j->secret);
    http_free_wiped(j->password);
    OPENSSL_cleanse(j, sizeof(*j));
    free(j);
}

/* SHA-256 of user, secret and password (each with its NUL); false if OpenSSL failed. */
static bool memo_key(const char *user, const char *secret, const char *password, uint8_t key[32])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned int len = 32;
    bool ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
              EVP_DigestUpdate(ctx, user, strlen(user) + 1) == 1 &&
              EVP_DigestUpdate(ctx, secret, strlen(secret) + 1) == 1 &&
              EVP_DigestUpdate(ctx, password, strlen(password) + 1) == 1 &&
              EVP_DigestFinal_ex(ctx, key, &len) == 1;
    EVP_MD_CTX_free(ctx);
    return ok;
}

static AuthMemo *memo_find(HttpServer *hs, const uint8_t key[32])
{
    for (int i = 0; i < HTTP_AUTH_MEMO; i++)
        if (hs->memo[i].used && CRYPTO_memcmp(hs->memo[i].key, key, 32) == 0) return &hs->memo[i];
    return NULL;
}

/*
 * Remember a result in a free entry, else in place of the least recently
 * used failure (a flood of wrong passwords never pushes out the right one),
 * else of the least recently used entry.
 */
static void memo_put(HttpServer *hs, const uint8_t key[32], bool ok)
{
    AuthMemo *m = memo_find(hs, key), *fail = NULL, *any = NULL;
    for (int i = 0; !m && i < HTTP_AUTH_MEMO; i++) {
        AuthMemo *e = &hs->memo[i];
        if (!e->used) m = e;
        if (!e->ok && (!fail || e->last_use < fail->last_use)) fail = e;
        if (!any || e->last_use < any->last_use) any = e;
    }
    if (!m) m = fail ? fail : any;
    memcpy(m->key, key, 32);
    m->used = true;
    m->ok = ok;
    m->last_use = ++hs->memo_clock;
}

static void http_auth_work(WorkqJob *wj)
{
    HttpAuthJob *j = (HttpAuthJob *)wj;
    j->ok = auth_password_matches(j->secret, j->user, j->password);
}

static void http_unauthorized(HttpConn *hc)
{
    http_reply_text(hc, 401, "Unauthorized", "WWW-Authenticate: Basic realm=\"pgfunnel\"\r\n",
                    "authentication required\n");
}

static void http_auth_done(WorkqJob *wj, int status)
{
    HttpAuthJob *j = (HttpAuthJob *)wj;
    HttpServer *hs = j->loop->http;
    if (hs) {
        hs->auth_jobs--;
        if (status == 0 && j->has_key) memo_put(hs, j->key, j->ok);
        HttpConn *hc = http_conn_find(hs, j->conn_id);
        if (hc && hc->phase == HC_AUTH) {
            if (status == 0 && j->ok)
                http_route(hc);
            else
                http_unauthorized(hc);
        }
    }
    http_auth_job_free(j);
}

/*
 * admin_http_auth: Basic credentials of a user in admin_users, checked
 * against its auth_file secret.  Answers now (remembered result, or no such
 * user) or later (a worker checks), then routes the request.
 */
static void http_authorize(HttpConn *hc, const HttpRequest *rq)
{
    HttpServer *hs = hc->hs;
    Loop *loop = hs->loop;
    const char *secret = NULL;
    if (rq->has_auth && rq->user[0] && config_list_contains(loop->cfg->admin_users, rq->user))
        secret = auth_file_secret(loop, rq->user);
    if (!secret) {
        http_unauthorized(hc);
        return;
    }
    uint8_t key[32];
    bool has_key = memo_key(rq->user, secret, rq->password, key);
    AuthMemo *m = has_key ? memo_find(hs, key) : NULL;
    if (m) {
        hs->stats.auth_memo_hits++;
        m->last_use = ++hs->memo_clock;
        if (m->ok)
            http_route(hc);
        else
            http_unauthorized(hc);
        return;
    }
    if (hs->auth_jobs >= hs->auth_jobs_max) {
        hs->stats.auth_busy++;
        http_reply_text(hc, 503, "Service Unavailable", "Retry-After: 1\r\n",
                        "too many password checks running, retry\n");
        return;
    }
    HttpAuthJob *j = calloc(1, sizeof(*j));
    if (j) {
        j->loop = loop;
        j->conn_id = hc->id;
        memcpy(j->key, key, sizeof(key));
        j->has_key = has_key;
        j->user = strdup(rq->user);
        j->secret = strdup(secret);
        j->password = strdup(rq->password);
    }
    if (!j || !j->user || !j->secret || !j->password ||
        workq_submit(loop->workq, &j->job, http_auth_work, http_auth_done) < 0) {
        if (j) http_auth_job_free(j);
        http_reply_text(hc, 503, "Service Unavailable", "Retry-After: 1\r\n",
                        "cannot check the password now, retry\n");
        return;
    }
    hs->auth_jobs++;
    hs->stats.auth_checks++;
    hc->phase = HC_AUTH;
}

/* ---- request heads ---- */

/* "Basic base64(user:password)" into rq->user / rq->password. */
static void http_parse_basic(const char *v, size_t n, HttpRequest *rq)
{
    unsigned char dec[800];
    while (n > 0 && (*v == ' ' || *v == '\t')) {
        v++;
        n--;
    }
    if (n < 6 || strncasecmp(v, "Basic ", 6) != 0) return;
    v += 6;
    n -= 6;
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
        n--;
    if (n == 0 || n > 1024 || n % 4) return;
    int len = EVP_DecodeBlock(dec, (const unsigned char *)v, (int)n);
    if (len <= 0) return;
    while (len > 0 && n > 0 && v[n - 1] == '=') { /* EVP_DecodeBlock counts padding as zeros */
        len--;
        n--;
    }
    dec[len] = 0;
    char *colon = memchr(dec, ':', (size_t)len);
    if (colon && (size_t)(colon - (char *)dec) < sizeof(rq->user) &&
        strlen(colon + 1) < sizeof(rq->password) && strlen((char *)dec) == (size_t)len) {
        *colon = 0;
        strcpy(rq->user, (char *)dec);
        strcpy(rq->password, colon + 1);
        rq->has_auth = true;
    }
    OPENSSL_cleanse(dec, sizeof(dec));
}

/* Parse a request head (len bytes, ending in an empty line).  0, or the status to answer. */
static int http_parse_head(const char *head, size_t len, HttpRequest *rq)
{
    const char *end = head + len, *eol = memchr(head, '\n', len);
    if (!eol) return 400;
    /* request line: METHOD SP target SP HTTP/1.x */
    const char *sp1 = memchr(head, ' ', (size_t)(eol - head));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2) return 400;
    const char *ver = sp2 + 1;
    size_t vlen = (size_t)(eol - ver);
    if (vlen > 0 && ver[vlen - 1] == '\r') vlen--;
    if (vlen != 8 || strncmp(ver, "HTTP/1.", 7) != 0) return 505;
    rq->http10 = ver[7] == '0';
    size_t mlen = (size_t)(sp1 - head);
    if (mlen == 4 && memcmp(head, "HEAD", 4) == 0)
        rq->head_only = true;
    else if (mlen != 3 || memcmp(head, "GET", 3) != 0)
        return 405;
    const char *target = sp1 + 1;
    size_t tlen = (size_t)(sp2 - target);
    const char *q = memchr(target, '?', tlen);
    if (q) {
        size_t qlen = (size_t)(target + tlen - q - 1);
        if (qlen >= sizeof(rq->query)) qlen = 0; /* no query we read is that long */
        memcpy(rq->query, q + 1, qlen);
        rq->query[qlen] = 0;
        tlen = (size_t)(q - target);
    }
    if (tlen >= sizeof(rq->path)) tlen = sizeof(rq->path) - 1; /* no route is that long */
    memcpy(rq->path, target, tlen);
    rq->path[tlen] = 0;
    /* headers: only Authorization matters */
    for (const char *line = eol + 1; line < end; line = eol + 1) {
        eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol) break;
        size_t n = (size_t)(eol - line);
        if (n >= 14 && strncasecmp(line, "Authorization:", 14) == 0) {
            if (n > 0 && line[n - 1] == '\r') n--;
            http_parse_basic(line + 14, n - 14, rq);
        }
    }
    return 0;
}

static void http_on_deadline(evutil_socket_t fd, short ev, void *arg)
{
    HttpConn *hc = arg;
    (void)fd;
    (void)ev;
    hc->hs->stats.timeouts++;
    log_debug("HTTP connection closed at its deadline (%s)",
              hc->phase == HC_HEAD ? "request not complete" : "answer not taken");
    http_conn_free(hc);
}

static void http_on_read(struct bufferevent *bev, void *arg)
{
    HttpConn *hc = arg;
    HttpServer *hs = hc->hs;
    struct evbuffer *in = bufferevent_get_input(bev);
    if (hc->phase != HC_HEAD) {
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    struct evbuffer_ptr p = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    size_t hlen = p.pos >= 0 ? (size_t)p.pos + 4 : 0;
    if (!hlen) {
        p = evbuffer_search(in, "\n\n", 2, NULL); /* bare LF, as curl never sends but nc does */
        hlen = p.pos >= 0 ? (size_t)p.pos + 2 : 0;
    }
    if (!hlen || hlen > HTTP_HEAD_MAX) {
        if (evbuffer_get_length(in) >= HTTP_HEAD_MAX) {
            bufferevent_disable(bev, EV_READ);
            http_reply_text(hc, 431, "Request Header Fields Too Large", NULL,
                            "request head too large\n");
        }
        return;
    }
    HttpRequest rq;
    memset(&rq, 0, sizeof(rq));
    char *head = (char *)evbuffer_pullup(in, (ev_ssize_t)hlen);
    int code = head ? http_parse_head(head, hlen, &rq) : 400;
    /* the head may carry credentials: wipe them from the buffer before it is freed */
    if (head) OPENSSL_cleanse(head, hlen);
    evbuffer_drain(in, evbuffer_get_length(in));
    /* one request per connection: nothing more is read, the answer ends it */
    bufferevent_disable(bev, EV_READ);
    hs->stats.requests++;
    usec_t left = hc->accepted_at + HTTP_TOTAL_TIMEOUT * USEC_PER_SEC - time_now_usec();
    struct timeval tv = {(time_t)(left / USEC_PER_SEC), (suseconds_t)(left % USEC_PER_SEC)};
    evtimer_add(hc->deadline, &tv);
    hc->head_only = rq.head_only;
    hc->http10 = rq.http10;
    snprintf(hc->path, sizeof(hc->path), "%s", rq.path);
    snprintf(hc->query, sizeof(hc->query), "%s", rq.query);
    if (code == 405)
        http_reply_text(hc, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n",
                        "GET or HEAD only\n");
    else if (code == 505)
        http_reply_text(hc, 505, "HTTP Version Not Supported", NULL, "HTTP/1.0 or 1.1 only\n");
    else if (code)
        http_reply_text(hc, 400, "Bad Request", NULL, "bad request\n");
    else if (hs->loop->cfg->admin_http_auth)
        http_authorize(hc, &rq);
    else
        http_route(hc);
    OPENSSL_cleanse(&rq, sizeof(rq));
}

static void http_on_write(struct bufferevent *bev, void *arg)
{
    HttpConn *hc = arg;
    /* called when the output has drained: the next slice, or the end */
    if (hc->phase == HC_BODY)
        http_body_slice(hc);
    else if (hc->phase == HC_DONE && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        http_conn_free(hc);
}

static void http_on_event(struct bufferevent *bev, short what, void *arg)
{
    HttpConn *hc = arg;
    (void)bev;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) http_conn_free(hc);
}

static void http_on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                           int socklen, void *arg)
{
    HttpServer *hs = arg;
    Loop *loop = hs->loop;
    (void)l;
    (void)sa;
    (void)socklen;
    if (hs->conns.count >= HTTP_MAX_CONNECTIONS || fd >= hs->fd_limit) {
        /* refused at once: descriptors are for PostgreSQL clients and servers first */
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                   "Connection: close\r\n\r\n";
        hs->stats.refused++;
        if (send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0) { /* best effort */
        }
        close(fd);
        return;
    }
    HttpConn *hc = calloc(1, sizeof(*hc));
    if (hc) {
        hc->bev = bufferevent_socket_new(loop->base, fd, BEV_OPT_CLOSE_ON_FREE);
        hc->deadline = evtimer_new(loop->base, http_on_deadline, hc);
    }
    if (!hc || !hc->bev || !hc->deadline) {
        if (hc && hc->bev)
            bufferevent_free(hc->bev);
        else
            close(fd);
        if (hc && hc->deadline) event_free(hc->deadline);
        free(hc);
        return;
    }
    hc->hs = hs;
    hc->id = ++hs->next_id;
    hc->accepted_at = time_now_usec();
    hc->phase = HC_HEAD;
    list_append(&hs->conns, &hc->node);
    hs->stats.accepted++;
    struct timeval tv = {HTTP_HEAD_TIMEOUT, 0};
    evtimer_add(hc->deadline, &tv);
    bufferevent_setcb(hc->bev, http_on_read, http_on_write, http_on_event, hc);
    /* stop reading at the head limit: a flood of bytes is not buffered */
    bufferevent_setwatermark(hc->bev, EV_READ, 0, HTTP_HEAD_MAX);
    bufferevent_enable(hc->bev, EV_READ);
}

static void http_on_resume(evutil_socket_t fd, short ev, void *arg)
{
    HttpServer *hs = arg;
    (void)fd;
    (void)ev;
    evconnlistener_enable(hs->listener);
}

static void http_on_accept_error(struct evconnlistener *l, void *arg)
{
    HttpServer *hs = arg;
    int err = EVUTIL_SOCKET_ERROR();
    hs->loop->stats.accept_errors++;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        /* out of descriptors: back off instead of spinning on a ready socket */
        evconnlistener_disable(l);
        struct timeval tv = {1, 0};
        evtimer_add(hs->ev_resume, &tv);
    }
}

int http_start(Loop *loop, char *err, size_t errlen)
{
    Config *cfg = loop->cfg;
    if (cfg->admin_http_port <= 0) return 0;
    const char *addr =
        cfg->admin_http_addr && *cfg->admin_http_addr ? cfg->admin_http_addr : "127.0.0.1";
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", cfg->admin_http_port);
    HttpServer *hs = calloc(1, sizeof(*hs));
    if (!hs) {
        snprintf(err, errlen, "cannot start the HTTP endpoint: out of memory");
        return -1;
    }
    hs->loop = loop;
    list_init(&hs->conns);
    hs->auth_jobs_max = cfg->workers > 1 ? cfg->workers / 2 : 1;
    /* keep a quarter of the descriptors (at least 16) out of the endpoint's reach */
    struct rlimit rl;
    long limit = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
                         rl.rlim_cur < (rlim_t)1 << 30
                     ? (long)rl.rlim_cur
                     : 1L << 30;
    long reserve = limit / 4 > 16 ? limit / 4 : 16;
    hs->fd_limit = (int)(limit - reserve);
    hs->ev_resume = evtimer_new(loop->base, http_on_resume, hs);
    if (!hs->ev_resume || getaddrinfo(addr, port, &hints, &res) != 0 || !res) {
        snprintf(err, errlen, "cannot listen on HTTP %s:%d", addr, cfg->admin_http_port);
        goto fail;
    }
    hs->listener =
        evconnlistener_new_bind(loop->base, http_on_accept, hs,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC | LEV_OPT_REUSEABLE,
                                128, res->ai_addr, (int)res->ai_addrlen);
    freeaddrinfo(res);
    if (!hs->listener) {
        snprintf(err, errlen, "cannot listen on HTTP %s:%d: %s", addr, cfg->admin_http_port,
                 strerror(errno));
        goto fail;
    }
    evconnlistener_set_error_cb(hs->listener, http_on_accept_error);
    hs->dash = dash_create(loop);
    if (!hs->dash) {
        snprintf(err, errlen, "cannot start the HTTP endpoint: out of memory");
        evconnlistener_free(hs->listener);
        goto fail;
    }
    loop->http = hs;
    log_info("HTTP admin endpoint on http://%s:%d/ (dashboard, metrics, healthz, pools)", addr,
             cfg->admin_http_port);
    return 0;
fail:
    if (hs->ev_resume) event_free(hs->ev_resume);
    free(hs);
    return -1;
}

void http_stop(Loop *loop)
{
    HttpServer *hs = loop->http;
    if (!hs) return;
    while (!list_empty(&hs->conns))
        http_conn_free(list_entry(list_first(&hs->conns), HttpConn, node));
    evconnlistener_free(hs->listener);
    event_free(hs->ev_resume);
    OPENSSL_cleanse(hs->memo, sizeof(hs->memo));
    dash_free(hs->dash);
    free(hs);
    loop->http = NULL; /* password checks still running find no server */
}
