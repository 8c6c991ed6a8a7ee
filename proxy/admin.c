/*
 * admin.c — the admin console (see admin.h).
 *
 * Only the simple query protocol is spoken.  Commands are case-insensitive,
 * an optional trailing semicolon is allowed, and an unknown command is an
 * ErrorResponse, never a disconnect.  Output columns follow PgBouncer's
 * SHOW commands so existing scripts and exporters read them by name.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <ctype.h>

#include "admin.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "version.h"
#include "workq.h"

#define ADMIN_QUERY_MAX 8192

bool admin_is_console_db(const char *dbname)
{
    return strcmp(dbname, "pgfunnel") == 0 || strcmp(dbname, "pgbouncer") == 0;
}

static bool admin_user_allowed(const Client *c, bool *stats_only)
{
    Config *cfg = c->loop->cfg;
    *stats_only = false;
    if (config_list_contains(cfg->admin_users, c->user)) return true;
    if (config_list_contains(cfg->stats_users, c->user)) {
        *stats_only = true;
        return true;
    }
    return false;
}

void admin_client_login(Client *c)
{
    bool stats_only;
    if (!admin_user_allowed(c, &stats_only)) {
        client_close(c, "28000", "not allowed");
        return;
    }
    PktBuf b;
    pkt_init(&b);
    pkt_auth_ok(&b);
    pkt_param_status(&b, "server_version", PGFUNNEL_VERSION_STRING);
    pkt_param_status(&b, "client_encoding", "UTF8");
    pkt_param_status(&b, "server_encoding", "UTF8");
    pkt_param_status(&b, "DateStyle", "ISO");
    pkt_param_status(&b, "TimeZone", "UTC");
    pkt_param_status(&b, "standard_conforming_strings", "on");
    pkt_param_status(&b, "integer_datetimes", "on");
    pkt_backend_key(&b, c->id, c->cancel_key);
    pkt_ready(&b, 'I');
    if (b.failed || conn_send(&c->conn, b.data, b.len) < 0) {
        pkt_free(&b);
        client_close(c, NULL, "write failed");
        return;
    }
    pkt_free(&b);
    client_set_state(c, CLIENT_IDLE);
}

/* ---- result building ---- */

typedef struct result {
    PktBuf *b;
    int ncols;
    int rows;
} Result;

static void res_begin(Result *r, PktBuf *b, const char *const *cols, int n)
{
    r->b = b;
    r->ncols = n;
    r->rows = 0;
    pkt_row_description(b, cols, n);
}

static void res_row(Result *r, const char *const *vals)
{
    pkt_data_row(r->b, vals, r->ncols);
    r->rows++;
}

static void res_end(Result *r)
{
    char tag[32];
    snprintf(tag, sizeof(tag), "SHOW");
    pkt_command_complete(r->b, tag);
}

#define I64(buf, v) (snprintf((buf), sizeof(buf), "%lld", (long long)(v)), (buf))

static void show_version(PktBuf *b)
{
    static const char *const cols[] = {"version"};
    Result r;
    res_begin(&r, b, cols, 1);
    const char *v[] = {PGFUNNEL_VERSION_STRING};
    res_row(&r, v);
    res_end(&r);
}

static void show_pools(Loop *loop, PktBuf *b)
{
    static const char *const cols[] = {
        "database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
        "cl_waiting_cancel_req", "sv_active", "sv_active_cancel", "sv_being_canceled",
        "sv_idle", "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode",
    };
    Result r;
    res_begin(&r, b, cols, 16);
    usec_t now = time_now_usec();
    ListNode *dit, *pit;
    list_for_each(dit, &loop->databases)
    {
        Database *db = list_entry(dit, Database, node);
        list_for_each(pit, &db->pools)
        {
            Pool *p = list_entry(pit, Pool, db_node);
            char a[12][32];
            usec_t maxwait = 0;
            if (!list_empty(&p->waiting))
                maxwait = now - list_entry(list_first(&p->waiting), Client, pool_node)->wait_start;
            const char *v[16] = {
                db->name, p->username,
                I64(a[0], p->active_clients.count + p->idle_clients.count),
                I64(a[1], p->waiting.count + p->login_wait.count), "0", "0",
                I64(a[2], p->active.count), "0", "0", I64(a[3], p->idle.count), "0",
                I64(a[4], 0), I64(a[5], p->connecting.count), I64(a[6], maxwait / USEC_PER_SEC),
                I64(a[7], maxwait % USEC_PER_SEC), config_pool_mode_name(p->mode),
            };
            res_row(&r, v);
        }
    }
    res_end(&r);
}

static void show_servers(Loop *loop, PktBuf *b)
{
    static const char *const cols[] = {
        "type", "user", "database", "state", "addr", "port", "local_addr", "local_port",
        "connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link",
        "remote_pid", "tls", "application_name", "prepared_statements",
    };
    Result r;
    res_begin(&r, b, cols, 19);
    ListNode *dit, *pit, *sit;
    list_for_each(dit, &loop->databases)
    {
        Database *db = list_entry(dit, Database, node);
        list_for_each(pit, &db->pools)
        {
            Pool *p = list_entry(pit, Pool, db_node);
            List *lists[] = {&p->active, &p->idle, &p->connecting};
            for (int i = 0; i < 3; i++) {
                list_for_each(sit, lists[i])
                {
                    Server *s = list_entry(sit, Server, pool_node);
                    char a[8][32];
                    const char *st = s->state == SERVER_ACTIVE ? "active"
                                     : s->state == SERVER_IDLE ? "idle"
                                     : s->state == SERVER_INTERNAL ? "used"
                                                                    : "login";
                    const char *v[19] = {
                        "S", p->username, db->name, st, db->host ? db->host : "", I64(a[0], db->port ? db->port : 5432),
                        "", "0", I64(a[1], s->created / USEC_PER_SEC), I64(a[2], s->last_used / USEC_PER_SEC),
                        "0", "0", I64(a[3], s->generation != db->generation), I64(a[4], s->id),
                        s->client ? I64(a[5], s->client->id) : "", I64(a[6], s->backend_pid), "",
                        params_get(&s->params, "application_name") ? params_get(&s->params, "application_name") : "",
                        "0",
                    };
                    res_row(&r, v);
                }
            }
        }
    }
    res_end(&r);
}

static void show_clients(Loop *loop, PktBuf *b)
{
    static const char *const cols[] = {
        "type", "user", "database", "state", "addr", "port", "local_addr", "local_port",
        "connect_time", "request_time", "wait", "wait_us", "close_needed", "ptr", "link",
        "remote_pid", "tls", "application_name", "prepared_statements",
    };
    Result r;
    res_begin(&r, b, cols, 19);
    ListNode *it;
    list_for_each(it, &loop->clients)
    {
        Client *c = list_entry(it, Client, all_node);
        char a[8][32];
        const char *st = c->state == CLIENT_ACTIVE ? "active"
                         : c->state == CLIENT_WAITING ? "waiting"
                         : c->state == CLIENT_IDLE ? "active"
                                                   : "login";
        const char *app = params_get(&c->params, "application_name");
        const char *v[19] = {
            "C", c->user ? c->user : "", c->database ? c->database : "", st, c->conn.addr, "0", "", "0",
            I64(a[0], c->connect_time / USEC_PER_SEC), I64(a[1], c->last_activity / USEC_PER_SEC),
            "0", "0", "0", I64(a[2], c->id), c->server ? I64(a[3], c->server->id) : "",
            "0", c->tls ? "TLS" : "", app ? app : "", "0",
        };
        res_row(&r, v);
    }
    res_end(&r);
}

/* Run one admin command; the result (or error) is appended to b. */
static void admin_exec(Client *c, const char *sql, PktBuf *b)
{
    char cmd[256];
    size_t n = 0;
    while (isspace((unsigned char)*sql))
        sql++;
    for (; sql[n] && n + 1 < sizeof(cmd); n++)
        cmd[n] = (char)tolower((unsigned char)sql[n]);
    while (n > 0 && (isspace((unsigned char)cmd[n - 1]) || cmd[n - 1] == ';'))
        n--;
    cmd[n] = 0;
    if (n == 0) {
        pkt_empty_query(b);
        return;
    }
    const char *what = NULL;
    if (strncmp(cmd, "show ", 5) == 0) what = cmd + 5;
    else if (strncmp(cmd, "select ", 7) == 0) what = cmd + 7;
    if (what) {
        while (*what == ' ')
            what++;
        if (strcmp(what, "version") == 0) return show_version(b);
        if (strcmp(what, "pools") == 0) return show_pools(c->loop, b);
        if (strcmp(what, "servers") == 0) return show_servers(c->loop, b);
        if (strcmp(what, "clients") == 0) return show_clients(c->loop, b);
    }
    pkt_error(b, "ERROR", "42601", "unknown command: %.200s", sql);
}

void admin_process(Client *c)
{
    PktBuf b;
    pkt_init(&b);
    while (c->state == CLIENT_IDLE) {
        uint32_t avail = conn_avail(&c->conn);
        if (avail < 5) break;
        uint8_t *p = conn_data(&c->conn);
        uint32_t len = proto_get_u32(p + 1);
        if (len < 4 || len > ADMIN_QUERY_MAX) {
            pkt_free(&b);
            client_close(c, "08P01", "invalid message length");
            return;
        }
        if (avail < len + 1) {
            if (conn_reserve(&c->conn, len + 1, ADMIN_QUERY_MAX + 1) < 0) {
                pkt_free(&b);
                client_close(c, "53200", "out of memory");
                return;
            }
            break;
        }
        if (p[0] == 'X') {
            pkt_free(&b);
            conn_consume(&c->conn, len + 1);
            client_close(c, NULL, "client sent Terminate");
            return;
        }
        if (p[0] != 'Q' || p[len] != 0) {
            pkt_error(&b, "ERROR", "08P01", "the admin console only supports simple queries");
            pkt_ready(&b, 'I');
            conn_consume(&c->conn, len + 1);
            continue;
        }
        admin_exec(c, (const char *)p + 5, &b);
        pkt_ready(&b, 'I');
        conn_consume(&c->conn, len + 1);
    }
    if (b.len && (b.failed || conn_send(&c->conn, b.data, b.len) < 0)) {
        pkt_free(&b);
        client_close(c, NULL, "write failed");
        return;
    }
    pkt_free(&b);
    conn_want_read(&c->conn, true);
    conn_release_buffer(&c->conn);
}
