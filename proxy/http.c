/*
 * http.c — /metrics, /healthz and /pools over evhttp (see http.h).
 *
 * Metric names: pgfunnel_<what>[_unit][_total]; per pool labels database,
 * user, pool_mode; per database the label database.  Times are exported in
 * seconds (Prometheus convention) although SHOW STATS counts microseconds.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <openssl/evp.h>

#include "client.h"
#include "auth.h"
#include "authq.h"
#include "config.h"
#include "http.h"
#include "log.h"
#include "loop.h"
#include "pool.h"
#include "pool_control.h"
#include "server.h"
#include "stats.h"
#include "version.h"
#include "workq.h"

/* A database counts as reachable when a login succeeded this recently. */
#define HEALTH_FAILURE_WINDOW_USEC (60 * USEC_PER_SEC)

typedef struct http_server {
    struct evhttp *http;
    Loop *loop;
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

static int pool_count_internal(const Pool *p)
{
    ListNode *it;
    int n = 0;
    list_for_each(it, &p->connecting)
    {
        if (list_entry(it, Server, pool_node)->state == SERVER_INTERNAL) n++;
    }
    return n;
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

typedef struct pool_metric {
    const char *name, *help;
    double (*get)(const Pool *p, usec_t now);
} PoolMetric;

static double pm_cl_active(const Pool *p, usec_t now)
{
    (void)now;
    return p->active_clients.count + p->idle_clients.count;
}
static double pm_cl_waiting(const Pool *p, usec_t now)
{
    (void)now;
    return p->waiting.count + p->login_wait.count;
}
static double pm_sv_active(const Pool *p, usec_t now)
{
    (void)now;
    return p->active.count;
}
static double pm_sv_idle(const Pool *p, usec_t now)
{
    (void)now;
    return p->idle.count;
}
static double pm_sv_used(const Pool *p, usec_t now)
{
    (void)now;
    return pool_count_internal(p);
}
static double pm_sv_login(const Pool *p, usec_t now)
{
    (void)now;
    return p->connecting.count - pool_count_internal(p);
}
static double pm_maxwait(const Pool *p, usec_t now)
{
    if (list_empty(&p->waiting)) return 0;
    return (double)(now - list_entry(list_first(&p->waiting), Client, pool_node)->wait_start) / 1e6;
}
static double pm_size(const Pool *p, usec_t now)
{
    (void)now;
    return p->size;
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

static void put_histogram(struct evbuffer *out, const char *name, const char *help, Loop *loop,
                          int which)
{
    ListNode *it;
    help_type(out, name, "histogram", help);
    list_for_each(it, &loop->databases)
    {
        Database *db = list_entry(it, Database, node);
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
}

static void gauge1(struct evbuffer *out, const char *name, const char *type, const char *help,
                   double v)
{
    help_type(out, name, type, help);
    evbuffer_add_printf(out, "%s %.17g\n", name, v);
}

static void metrics(Loop *loop, struct evbuffer *out)
{
    ListNode *dit, *pit;
    usec_t now = time_now_usec();
    Config *cfg = loop->cfg;

    help_type(out, "pgfunnel_info", "gauge", "Version of the running pgfunnel");
    evbuffer_add_printf(out, "pgfunnel_info{version=\"%s\"} 1\n", PGFUNNEL_VERSION);
    gauge1(out, "pgfunnel_uptime_seconds", "gauge", "Seconds since start",
           (double)(now - loop->started_at) / 1e6);
    gauge1(out, "pgfunnel_paused", "gauge", "1 while PAUSE (all databases) is in effect",
           pool_control_paused_all(loop));
    gauge1(out, "pgfunnel_shutting_down", "gauge", "1 once a shutdown began",
           loop->shutdown != SHUTDOWN_NONE);

    /* SHOW POOLS */
    for (size_t m = 0; m < sizeof(pool_metrics) / sizeof(pool_metrics[0]); m++) {
        help_type(out, pool_metrics[m].name, "gauge", pool_metrics[m].help);
        list_for_each(dit, &loop->databases)
        {
            Database *db = list_entry(dit, Database, node);
            list_for_each(pit, &db->pools)
            {
                Pool *p = list_entry(pit, Pool, db_node);
                pool_sample(out, pool_metrics[m].name, p, pool_metrics[m].get(p, now));
            }
        }
    }

    /* SHOW STATS: counters per database */
    for (size_t m = 0; m < sizeof(db_counters) / sizeof(db_counters[0]); m++) {
        help_type(out, db_counters[m].name, "counter", db_counters[m].help);
        list_for_each(dit, &loop->databases)
        {
            Database *db = list_entry(dit, Database, node);
            PoolStats s;
            double v[11];
            stats_db_totals(db, &s);
            db_counter_values(&s, v);
            db_sample(out, db_counters[m].name, db, v[db_counters[m].field] * db_counters[m].scale);
        }
    }
    put_histogram(out, "pgfunnel_query_duration_seconds",
                  "Query time: first message of a query to its ReadyForQuery", loop, 0);
    put_histogram(out, "pgfunnel_transaction_duration_seconds", "Transaction time", loop, 1);
    put_histogram(out, "pgfunnel_client_wait_duration_seconds", "Time a client waited for a server",
                  loop, 2);

    /* SHOW DATABASES */
    static const char *const dbg[][2] = {
        {"pgfunnel_database_current_connections", "Server connections of the database"},
        {"pgfunnel_database_max_connections", "max_db_connections (0 = unlimited)"},
        {"pgfunnel_database_paused", "1 while the database is paused"},
        {"pgfunnel_database_disabled", "1 while the database is disabled"},
        {"pgfunnel_database_pools", "Pools of the database"},
    };
    for (int m = 0; m < 5; m++) {
        help_type(out, dbg[m][0], "gauge", dbg[m][1]);
        list_for_each(dit, &loop->databases)
        {
            Database *db = list_entry(dit, Database, node);
            const DbConf *dc = config_find_db(cfg, db->name);
            double v = m == 0 ? db->server_count
                       : m == 1
                           ? (dc && dc->max_db_connections != CONF_UNSET ? dc->max_db_connections
                                                                         : cfg->max_db_connections)
                       : m == 2 ? db->paused
                       : m == 3 ? db->disabled
                                : db->pools.count;
            db_sample(out, dbg[m][0], db, v);
        }
    }

    /* SHOW LISTS */
    int pools = 0, login = 0;
    list_for_each(dit, &loop->databases) pools += list_entry(dit, Database, node)->pools.count;
    list_for_each(dit, &loop->clients)
    {
        if (list_entry(dit, Client, all_node)->state < CLIENT_LOGIN_WAIT) login++;
    }
    gauge1(out, "pgfunnel_databases", "gauge", "Databases in use (SHOW LISTS databases)",
           loop->databases.count);
    gauge1(out, "pgfunnel_users", "gauge", "Backend users in use", loop->users.count);
    gauge1(out, "pgfunnel_pools", "gauge", "Pools", pools);
    gauge1(out, "pgfunnel_client_connections", "gauge", "Client connections (used_clients)",
           loop->client_count);
    gauge1(out, "pgfunnel_login_client_connections", "gauge", "Clients still logging in", login);
    gauge1(out, "pgfunnel_server_connections", "gauge", "Server connections (used_servers)",
           loop->server_count);
    gauge1(out, "pgfunnel_max_client_connections", "gauge", "max_client_conn",
           cfg->max_client_conn);

    /* process and loop health */
    LoopStats *ls = &loop->stats;
    gauge1(out, "pgfunnel_clients_accepted_total", "counter", "Client connections accepted",
           (double)ls->clients_accepted);
    gauge1(out, "pgfunnel_clients_rejected_total", "counter",
           "Clients refused (max_client_conn, bad startup)", (double)ls->clients_rejected);
    gauge1(out, "pgfunnel_servers_opened_total", "counter", "Server connections opened",
           (double)ls->servers_opened);
    gauge1(out, "pgfunnel_servers_failed_total", "counter", "Server connections that failed",
           (double)ls->servers_failed);
    gauge1(out, "pgfunnel_accept_errors_total", "counter", "accept() failures",
           (double)ls->accept_errors);
    const AuthStats *as = auth_get_stats(loop);
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
    AuthqStats aq;
    authq_get_stats(loop, &aq);
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
           (double)ls->tls_handshakes);
    gauge1(out, "pgfunnel_tls_handshake_failures_total", "counter",
           "Client TLS handshakes that failed", (double)ls->tls_handshake_failures);
    gauge1(out, "pgfunnel_loop_lag_samples_total", "counter", "Loop lag measurements (100 ms tick)",
           (double)ls->lag_samples);
    gauge1(out, "pgfunnel_loop_lag_max_seconds", "gauge", "Largest loop lag seen",
           (double)ls->lag_max / 1e6);
    gauge1(out, "pgfunnel_loop_lag_p50_seconds", "gauge",
           "Median loop lag (power-of-two resolution)", loop_lag_quantile(ls, 0.5));
    gauge1(out, "pgfunnel_loop_lag_p99_seconds", "gauge",
           "99th percentile loop lag (power-of-two resolution)", loop_lag_quantile(ls, 0.99));
    gauge1(out, "pgfunnel_receive_buffers_in_use", "gauge", "Receive buffers held by connections",
           loop->buf_in_use);

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
}

/* ---- /healthz ---- */

typedef enum { DB_OK, DB_UNTESTED, DB_FAILING } DbHealth;

static DbHealth db_health(Loop *loop, const char *name, const char **why)
{
    Database *db = pool_database_get(loop, name, false);
    ListNode *it;
    usec_t now = time_now_usec();
    if (!db || list_empty(&db->pools)) {
        *why = "not used yet";
        return DB_UNTESTED;
    }
    bool failing = false, tried = false;
    list_for_each(it, &db->pools)
    {
        Pool *p = list_entry(it, Pool, db_node);
        if (pool_server_total(p) > 0 && (p->idle.count || p->active.count)) {
            *why = "has servers";
            return DB_OK;
        }
        if (p->have_welcome) tried = true;
        if (p->last_failure && now - p->last_failure < HEALTH_FAILURE_WINDOW_USEC) failing = true;
    }
    if (failing) {
        *why = "recent server login failure and no server connection";
        return DB_FAILING;
    }
    *why = tried ? "last login succeeded, no server open now" : "not used yet";
    return tried ? DB_OK : DB_UNTESTED;
}

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

static void pools_json(Loop *loop, struct evbuffer *out)
{
    ListNode *dit, *pit;
    usec_t now = time_now_usec();
    bool first = true;
    evbuffer_add_printf(out, "{\"pools\":[");
    list_for_each(dit, &loop->databases)
    {
        Database *db = list_entry(dit, Database, node);
        list_for_each(pit, &db->pools)
        {
            Pool *p = list_entry(pit, Pool, db_node);
            evbuffer_add_printf(out, "%s{\"database\":", first ? "" : ",");
            put_json_str(out, db->name);
            evbuffer_add_printf(out, ",\"user\":");
            put_json_str(out, p->username);
            evbuffer_add_printf(out, ",\"pool_mode\":\"%s\"", config_pool_mode_name(p->mode));
            for (size_t m = 0; m < sizeof(pool_metrics) / sizeof(pool_metrics[0]); m++)
                evbuffer_add_printf(out, ",\"%s\":%.17g",
                                    pool_metrics[m].name + strlen("pgfunnel_pool_"),
                                    pool_metrics[m].get(p, now));
            evbuffer_add_printf(out,
                                ",\"paused\":%s,\"disabled\":%s,\"xact_count\":%llu,"
                                "\"query_count\":%llu,\"query_p50_us\":%.0f,\"query_p99_us\":%.0f}",
                                db->paused ? "true" : "false", db->disabled ? "true" : "false",
                                (unsigned long long)p->stats.xact_count,
                                (unsigned long long)p->stats.query_count,
                                stats_hist_quantile(&p->latency.query, 0.5),
                                stats_hist_quantile(&p->latency.query, 0.99));
            first = false;
        }
    }
    evbuffer_add_printf(out, "]}\n");
}

/* ---- request handling ---- */

/* admin_http_auth: Basic credentials of a user in admin_users, checked against auth_file. */
static bool http_authorized(Loop *loop, struct evhttp_request *req)
{
    if (!loop->cfg->admin_http_auth) return true;
    const char *h = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    if (!h || strncasecmp(h, "Basic ", 6) != 0) return false;
    const char *b64 = h + 6;
    size_t n = strlen(b64);
    if (n == 0 || n > 1024 || n % 4) return false;
    unsigned char dec[800];
    int len = EVP_DecodeBlock(dec, (const unsigned char *)b64, (int)n);
    if (len <= 0) return false;
    while (len > 0 && b64[n - 1] == '=') { /* EVP_DecodeBlock counts padding as zeros */
        len--;
        n--;
    }
    dec[len] = 0;
    char *colon = strchr((char *)dec, ':');
    if (!colon) return false;
    *colon = 0;
    bool ok = dec[0] && config_list_contains(loop->cfg->admin_users, (char *)dec) &&
              auth_check_password(loop, (char *)dec, colon + 1);
    OPENSSL_cleanse(dec, sizeof(dec));
    return ok;
}

static void http_on_request(struct evhttp_request *req, void *arg)
{
    HttpServer *hs = arg;
    Loop *loop = hs->loop;
    struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    struct evbuffer *out = evbuffer_new();
    if (!out) {
        evhttp_send_error(req, HTTP_INTERNAL, "out of memory");
        return;
    }
    if (!http_authorized(loop, req)) {
        evhttp_add_header(oh, "WWW-Authenticate", "Basic realm=\"pgfunnel\"");
        evbuffer_add_printf(out, "authentication required\n");
        evhttp_send_reply(req, 401, "Unauthorized", out);
        evbuffer_free(out);
        return;
    }
    if (!path) path = "/";
    if (strcmp(path, "/metrics") == 0) {
        metrics(loop, out);
        evhttp_add_header(oh, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
        evhttp_send_reply(req, HTTP_OK, "OK", out);
    } else if (strcmp(path, "/healthz") == 0) {
        int code = healthz(loop, out);
        evhttp_add_header(oh, "Content-Type", "application/json");
        evhttp_send_reply(req, code, code == 200 ? "OK" : "Service Unavailable", out);
    } else if (strcmp(path, "/pools") == 0) {
        pools_json(loop, out);
        evhttp_add_header(oh, "Content-Type", "application/json");
        evhttp_send_reply(req, HTTP_OK, "OK", out);
    } else {
        evbuffer_add_printf(out, "not found: try /metrics, /healthz or /pools\n");
        evhttp_send_reply(req, HTTP_NOTFOUND, "Not Found", out);
    }
    evbuffer_free(out);
}

int http_start(Loop *loop, char *err, size_t errlen)
{
    Config *cfg = loop->cfg;
    if (cfg->admin_http_port <= 0) return 0;
    const char *addr =
        cfg->admin_http_addr && *cfg->admin_http_addr ? cfg->admin_http_addr : "127.0.0.1";
    HttpServer *hs = calloc(1, sizeof(*hs));
    if (!hs) goto fail;
    hs->loop = loop;
    hs->http = evhttp_new(loop->base);
    if (!hs->http) goto fail;
    evhttp_set_allowed_methods(hs->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(hs->http, 16384);
    evhttp_set_max_body_size(hs->http, 0);
    evhttp_set_timeout(hs->http, 10);
    evhttp_set_gencb(hs->http, http_on_request, hs);
    if (!evhttp_bind_socket_with_handle(hs->http, addr, (ev_uint16_t)cfg->admin_http_port)) {
        snprintf(err, errlen, "cannot listen on HTTP %s:%d", addr, cfg->admin_http_port);
        evhttp_free(hs->http);
        free(hs);
        return -1;
    }
    loop->http = hs;
    log_info("HTTP admin endpoint on http://%s:%d/ (metrics, healthz, pools)", addr,
             cfg->admin_http_port);
    return 0;
fail:
    if (hs) free(hs);
    snprintf(err, errlen, "cannot start the HTTP endpoint: out of memory");
    return -1;
}

void http_stop(Loop *loop)
{
    HttpServer *hs = loop->http;
    if (!hs) return;
    evhttp_free(hs->http);
    free(hs);
    loop->http = NULL;
}
