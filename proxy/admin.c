/*
 * admin.c — the admin console (see admin.h).
 *
 * Only the simple query protocol is spoken.  A query is one command:
 *   WORD [ARG] [;]            SHOW x, SELECT x, PAUSE [db], KILL_CLIENT id, ...
 *   SET key (= | TO) value    value a word, a number or a 'quoted string'
 * where words are letters, digits and underscores, or "double-quoted
 * identifiers" (a doubled quote inside stands for one).  Everything else is
 * a syntax error: an argument is only ever a name that is looked up, so a
 * database name with quotes or semicolons is simply a name that does not
 * exist.  Errors are ErrorResponses followed by ReadyForQuery, never a
 * disconnect.
 *
 * Access: admin_users may do everything; stats_users only SHOW/SELECT; the
 * user "pgbouncer" connecting over the unix socket from the pooler's own OS
 * uid (SO_PEERCRED) is an admin, as PgBouncer documents.
 *
 * Output columns follow PgBouncer 1.24's SHOW commands (names, order, and
 * int4/int8 type OIDs where PgBouncer sends them) so exporters can read them
 * by name.  Two compatibility columns for older exporters are appended at
 * the end of a row, never in between: SHOW STATS `total_requests` (= the
 * query count; pre-1.8 name still read by Debian's prometheus-pgbouncer-
 * exporter).  SHOW LATENCY is pgfunnel's own.
 *
 * PAUSE and WAIT_CLOSE answer later: the command registers a wait with
 * pool_control.c, and this client's further queries stay unread until
 * admin_wait_finished() sends the CommandComplete.
 *
 * Output is bounded the way the relay bounds it: queries are not read while
 * the client has CLIENT_BACKLOG_MAX bytes of answers unread, and a SHOW over
 * many pools, databases, users or clients is built in slices (see
 * ShowCursor), one per callback, so neither memory nor the time the loop
 * spends on one client grows with the number of rows.
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "admin.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "peers.h"
#include "pooldir.h"
#include "snapshot.h"
#include "loops.h"
#include "pool.h"
#include "pool_control.h"
#include "proto.h"
#include "server.h"
#include "stats.h"
#include "tls.h"
#include "version.h"
#include "workq.h"

#define ADMIN_QUERY_MAX    8192
#define ADMIN_ARG_MAX      256
#define RES_MAX_COLS       32
#define PG_OID_TIMESTAMPTZ 1184u
#define PG_OID_BYTEA       17u

bool admin_is_console_db(const char *dbname)
{
    return strcmp(dbname, "pgfunnel") == 0 || strcmp(dbname, "pgbouncer") == 0;
}

/*
 * User "pgbouncer" (or "pgfunnel") of the console over the unix socket from
 * our own OS user: an admin without a password (PgBouncer's rule).
 */
bool admin_is_local_superuser(const Client *c)
{
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (!c->admin || strcmp(c->conn.addr, "unix") != 0 || c->conn.fd < 0) return false;
    if (strcmp(c->user, "pgbouncer") != 0 && strcmp(c->user, "pgfunnel") != 0) return false;
    if (getsockopt(c->conn.fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) return false;
    return cred.uid == geteuid();
}

/* Which rights the client has: false = none; *admin false = SHOW only. */
static bool admin_access(const Client *c, bool *admin)
{
    Config *cfg = c->loop->cfg;
    *admin = false;
    if (config_list_contains(cfg->admin_users, c->user) || admin_is_local_superuser(c)) {
        *admin = true;
        return true;
    }
    return config_list_contains(cfg->stats_users, c->user);
}

void admin_client_login(Client *c)
{
    bool admin;
    if (!admin_access(c, &admin)) {
        client_close(c, "08P01", "not allowed"); /* PgBouncer's SQLSTATE and words */
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

typedef struct col {
    const char *name;
    uint32_t oid; /* 0 = text */
} Col;

#define S(n)                                                                                       \
    {                                                                                              \
        n, 0                                                                                       \
    }
#define I4(n)                                                                                      \
    {                                                                                              \
        n, PG_OID_INT4                                                                             \
    }
#define I8(n)                                                                                      \
    {                                                                                              \
        n, PG_OID_INT8                                                                             \
    }
#define TS(n)                                                                                      \
    {                                                                                              \
        n, PG_OID_TIMESTAMPTZ                                                                      \
    }

/*
 * Where a SHOW goes on in its next slice.  A builder stops starting rows once
 * the buffer holds `budget` bytes (ADMIN_SLICE more than when the slice
 * began) and sets `more`; the next call skips what was sent.  Pools,
 * databases and users are resumed by position (`done` of them were sent),
 * clients after the id of the last one sent (loop->clients is in id order).
 * A row that goes away between slices may hide one later row of a
 * position-resumed list; no row is ever sent twice.  Servers come with their
 * pool, all in one slice.  Owned by the client (Client.show) between slices.
 */
#define ADMIN_SLICE (64u * 1024)

typedef struct admin_show ShowCursor;
typedef void (*ShowFn)(Loop *loop, PktBuf *b, ShowCursor *cur);

struct admin_show {
    ShowFn fn;
    int arg;              /* SHOW STATS variant, ACTIVE_SOCKETS */
    size_t budget;        /* stop starting rows once the buffer holds this much */
    bool started;         /* RowDescription sent */
    bool more;            /* stopped at the budget: rows remain */
    int phase;            /* SOCKETS, FDS: 0 = client rows, 1 = server rows */
    uint32_t last_client; /* id of the last client row sent, 0 = none yet */
    uint64_t done;        /* pools / databases / users already sent */
};

typedef struct result {
    PktBuf *b;
    ShowCursor *cur;
    int ncols, rows;
    uint64_t index; /* position of the next pool / database / user */
    /* the row being built */
    int n;
    const char *vals[RES_MAX_COLS];
    char num[RES_MAX_COLS][48];
} Result;

static void res_begin(Result *r, PktBuf *b, ShowCursor *cur, const Col *cols, int n)
{
    const char *names[RES_MAX_COLS];
    uint32_t oids[RES_MAX_COLS];
    r->b = b;
    r->cur = cur;
    r->ncols = n;
    r->rows = 0;
    r->index = 0;
    r->n = 0;
    if (cur->started) return;
    cur->started = true;
    for (int i = 0; i < n; i++) {
        names[i] = cols[i].name;
        oids[i] = cols[i].oid;
    }
    pkt_row_description_typed(b, names, oids, n);
}

/* The next pool / database / user: 1 = build it, 0 = sent in an earlier slice, -1 = slice full. */
static int res_item(Result *r)
{
    ShowCursor *cur = r->cur;
    if (r->index < cur->done) {
        r->index++;
        return 0;
    }
    if (r->b->len >= cur->budget) {
        cur->more = true;
        return -1;
    }
    cur->done = ++r->index;
    return 1;
}

/*
 * Clients of every loop, in id order: ids carry their loop's index in the
 * top bits and grow along each loop's list, so "after the last id sent" is
 * a position over all loops.  The other loops are frozen meanwhile
 * (admin_show_slice).
 */
typedef struct client_iter {
    LoopSet *set;
    int li;
    ListNode *it;
} ClientIter;

static void client_iter_init(ClientIter *ci, const Result *r, Loop *loop)
{
    uint32_t last = r->cur->last_client;
    ci->set = loop->set;
    ci->li = last ? (int)LOOP_ID_INDEX(last) : 0;
    if (ci->li >= ci->set->n) {
        ci->it = NULL;
        return;
    }
    Loop *l = ci->set->loops[ci->li];
    ci->it = l->clients.head.next;
    if (last == 0) return;
    Client *c = loop_client_find(l, last);
    if (c && c->state != CLIENT_CLOSING) {
        ci->it = c->all_node.next;
        return;
    }
    /* it went away: ids grow along the list */
    list_for_each(ci->it, &l->clients)
    {
        if (list_entry(ci->it, Client, all_node)->id > last) break;
    }
}

static Client *client_iter_next(ClientIter *ci)
{
    while (ci->li < ci->set->n) {
        Loop *l = ci->set->loops[ci->li];
        if (ci->it && ci->it != &l->clients.head) {
            Client *c = list_entry(ci->it, Client, all_node);
            ci->it = ci->it->next;
            return c;
        }
        if (++ci->li < ci->set->n) ci->it = ci->set->loops[ci->li]->clients.head.next;
    }
    return NULL;
}

/* Room for this client's row in the slice?  Then it counts as sent. */
static bool res_client(Result *r, const Client *c)
{
    if (r->b->len >= r->cur->budget) {
        r->cur->more = true;
        return false;
    }
    r->cur->last_client = c->id;
    return true;
}

static void put_str(Result *r, const char *s)
{
    if (r->n < RES_MAX_COLS) r->vals[r->n++] = s;
}

static void put_int(Result *r, long long v)
{
    if (r->n >= RES_MAX_COLS) return;
    snprintf(r->num[r->n], sizeof(r->num[0]), "%lld", v);
    r->vals[r->n] = r->num[r->n];
    r->n++;
}

/* A monotonic timestamp as wall-clock text PostgreSQL (and psycopg) parse. */
static void put_time(Result *r, usec_t mono)
{
    if (r->n >= RES_MAX_COLS) return;
    if (!mono) {
        put_str(r, NULL);
        return;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    time_t t = tv.tv_sec - (time_t)((time_now_usec() - mono) / USEC_PER_SEC);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(r->num[r->n], sizeof(r->num[0]), "%Y-%m-%d %H:%M:%S+00", &tm);
    r->vals[r->n] = r->num[r->n];
    r->n++;
}

static void put_fmt(Result *r, const char *fmt, ...) PRINTF_LIKE(2, 3);
static void put_fmt(Result *r, const char *fmt, ...)
{
    if (r->n >= RES_MAX_COLS) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->num[r->n], sizeof(r->num[0]), fmt, ap);
    va_end(ap);
    r->vals[r->n] = r->num[r->n];
    r->n++;
}

static void res_row_end(Result *r)
{
    while (r->n < r->ncols)
        r->vals[r->n++] = NULL;
    pkt_data_row(r->b, r->vals, r->ncols);
    r->rows++;
    r->n = 0;
}

static void res_end(Result *r, const char *tag)
{
    if (!r->cur->more) pkt_command_complete(r->b, tag ? tag : "SHOW");
}

#define NCOLS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* ---- iteration helpers ---- */

/*
 * Every loop's objects; the other loops are frozen while a slice is built
 * (admin_show_slice).  FOR_EACH_POOL visits each loop's part of each pool
 * (rows per server); the _ONCE forms visit a pool or database once, on the
 * first loop that has it, for rows that sum all loops.
 */
#define FOR_EACH_LOOP(loop, L, li)                                                                 \
    for (int li = 0; li < (loop)->set->n; li++)                                                    \
        for (Loop *L = (loop)->set->loops[li]; L; L = NULL)
#define FOR_EACH_DB(loop, db, dit)                                                                 \
    FOR_EACH_LOOP(loop, L_, li_)                                                                   \
    list_for_each(dit, &L_->databases) for (Database *db = list_entry(dit, Database, node); db;    \
                                            db = NULL)
#define FOR_EACH_DB_ONCE(loop, db, dit) FOR_EACH_DB(loop, db, dit) if (pool_first_database(db))
#define FOR_EACH_POOL(loop, db, p, dit, pit)                                                       \
    FOR_EACH_DB(loop, db, dit)                                                                     \
    list_for_each(pit, &db->pools) for (Pool *p = list_entry(pit, Pool, db_node); p; p = NULL)
#define FOR_EACH_POOL_ONCE(loop, db, p, dit, pit)                                                  \
    FOR_EACH_POOL(loop, db, p, dit, pit) if (pool_first_shard(p))

static int count_admin_clients(Loop *loop)
{
    ListNode *it;
    int n = 0;
    FOR_EACH_LOOP(loop, L, li)
    {
        list_for_each(it, &L->clients)
        {
            Client *c = list_entry(it, Client, all_node);
            if (c->admin && c->state == CLIENT_IDLE) n++;
        }
    }
    return n;
}

/* ---- SHOW commands ---- */

static void show_version(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {S("version")};
    (void)loop;
    Result r;
    res_begin(&r, b, cur, cols, 1);
    put_str(&r, PGFUNNEL_VERSION_STRING);
    res_row_end(&r);
    res_end(&r, NULL);
}

static void show_help(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const char usage[] =
        "\n\tSHOW HELP|CONFIG|DATABASES|POOLS|CLIENTS|SERVERS|USERS|VERSION\n"
        "\tSHOW FDS|SOCKETS|ACTIVE_SOCKETS|LISTS|MEM|STATE\n"
        "\tSHOW DNS_HOSTS|DNS_ZONES|PEERS|PEER_POOLS\n"
        "\tSHOW HOSTS          (pgfunnel: backend hosts, their health and role)\n"
        "\tSHOW STATS|STATS_TOTALS|STATS_AVERAGES|TOTALS\n"
        "\tSHOW LATENCY        (pgfunnel: p50/p95/p99 of query, transaction, wait time)\n"
        "\tSHOW LOOPS          (pgfunnel: clients, servers, lag and CPU of each event loop)\n"
        "\tSET key = arg\n"
        "\tRELOAD\n"
        "\tPAUSE [<db>]\n"
        "\tRESUME [<db>]\n"
        "\tDISABLE <db>\n"
        "\tENABLE <db>\n"
        "\tRECONNECT [<db>]\n"
        "\tKILL [<db>]\n"
        "\tKILL_CLIENT <client_id>\n"
        "\tSUSPEND             (not supported by pgfunnel: returns an error)\n"
        "\tSHUTDOWN\n"
        "\tSHUTDOWN WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS\n"
        "\tWAIT_CLOSE [<db>]";
    (void)loop;
    (void)cur;
    pkt_begin(b, 'N');
    pkt_put_u8(b, 'S');
    pkt_put_str(b, "NOTICE");
    pkt_put_u8(b, 'V');
    pkt_put_str(b, "NOTICE");
    pkt_put_u8(b, 'C');
    pkt_put_str(b, "00000");
    pkt_put_u8(b, 'M');
    pkt_put_str(b, "Console usage");
    pkt_put_u8(b, 'D');
    pkt_put_str(b, usage);
    pkt_put_u8(b, 0);
    pkt_end(b);
    pkt_command_complete(b, "SHOW");
}

static void show_pools(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {
        S("database"),
        S("user"),
        I4("cl_active"),
        I4("cl_waiting"),
        I4("cl_active_cancel_req"),
        I4("cl_waiting_cancel_req"),
        I4("sv_active"),
        I4("sv_active_cancel"),
        I4("sv_being_canceled"),
        I4("sv_idle"),
        I4("sv_used"),
        I4("sv_tested"),
        I4("sv_login"),
        I4("maxwait"),
        I4("maxwait_us"),
        S("pool_mode"),
    };
    Result r;
    ListNode *dit, *pit;
    usec_t now = time_now_usec();
    res_begin(&r, b, cur, cols, NCOLS(cols));
    /* the console itself, as PgBouncer lists it */
    if (res_item(&r) > 0) {
        put_str(&r, "pgbouncer");
        put_str(&r, "pgbouncer");
        put_int(&r, count_admin_clients(loop));
        for (int i = 0; i < 12; i++)
            put_int(&r, 0);
        put_str(&r, "statement");
        res_row_end(&r);
    }
    FOR_EACH_POOL_ONCE(loop, db, p, dit, pit)
    {
        int w = res_item(&r);
        if (w < 0) goto out;
        if (w == 0) continue;
        PoolCounts pc;
        pool_counts_all(p, now, &pc);
        put_str(&r, db->name);
        put_str(&r, p->username);
        put_int(&r, pc.cl_active);
        put_int(&r, pc.cl_waiting);
        put_int(&r, 0);
        put_int(&r, 0);
        put_int(&r, pc.sv_active);
        put_int(&r, 0);
        put_int(&r, 0);
        put_int(&r, pc.sv_idle);
        put_int(&r, pc.sv_used);
        put_int(&r, pc.sv_tested);
        put_int(&r, pc.sv_login);
        put_int(&r, pc.maxwait / USEC_PER_SEC);
        put_int(&r, pc.maxwait % USEC_PER_SEC);
        put_str(&r, config_pool_mode_name(p->mode));
        res_row_end(&r);
    }
out:
    res_end(&r, NULL);
}

/* ---- sockets: SHOW CLIENTS / SERVERS / SOCKETS / ACTIVE_SOCKETS ---- */

static const Col socket_cols[] = {
    S("type"),
    S("user"),
    S("database"),
    S("replication"),
    S("state"),
    S("addr"),
    I4("port"),
    S("local_addr"),
    I4("local_port"),
    TS("connect_time"),
    TS("request_time"),
    I4("wait"),
    I4("wait_us"),
    I4("close_needed"),
    S("ptr"),
    S("link"),
    I4("remote_pid"),
    S("tls"),
    S("application_name"),
    I4("prepared_statements"),
    I4("id"),
    /* SOCKETS / ACTIVE_SOCKETS only */
    I4("recv_pos"),
    I4("pkt_pos"),
    I4("pkt_remain"),
    I4("send_pos"),
    I4("send_remain"),
    I4("pkt_avail"),
    I4("send_avail"),
};
#define SOCKET_STD_COLS 21

static void put_addr(Result *r, const Conn *conn, bool local)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char host[INET6_ADDRSTRLEN] = "";
    int port = 0;
    int rc = local ? getsockname(conn->fd, (struct sockaddr *)&ss, &len)
                   : getpeername(conn->fd, (struct sockaddr *)&ss, &len);
    if (conn->fd >= 0 && rc == 0) {
        if (ss.ss_family == AF_INET) {
            struct sockaddr_in *a = (struct sockaddr_in *)&ss;
            inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
            port = ntohs(a->sin_port);
        } else if (ss.ss_family == AF_INET6) {
            struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
            inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
            port = ntohs(a->sin6_port);
        } else {
            snprintf(host, sizeof(host), "unix");
        }
    }
    put_fmt(r, "%s", host);
    put_int(r, port);
}

static void put_debug(Result *r, const Conn *conn)
{
    put_int(r, conn->rend);
    put_int(r, conn->rpos);
    put_int(r, 0);
    put_int(r, conn->opos);
    put_int(r, conn_queue_len(conn));
    put_int(r, conn_avail(conn));
    put_int(r, conn_queue_len(conn));
}

static void client_row(Result *r, Client *c, const char *state, bool debug)
{
    usec_t now = time_now_usec();
    usec_t wait = c->state == CLIENT_WAITING ? now - c->wait_start : 0;
    const char *app = params_get(&c->params, "application_name");
    put_str(r, "C");
    put_str(r, c->user ? c->user : "(nouser)");
    put_str(r, c->database ? c->database : "(nodb)");
    put_str(r, "none");
    put_str(r, state);
    put_addr(r, &c->conn, false);
    put_addr(r, &c->conn, true);
    put_time(r, c->connect_time);
    put_time(r, c->last_activity);
    put_int(r, wait / USEC_PER_SEC);
    put_int(r, wait % USEC_PER_SEC);
    put_int(r, 0);
    put_fmt(r, "%p", (void *)c);
    if (c->server)
        put_fmt(r, "%p", (void *)c->server);
    else
        put_str(r, "");
    put_int(r, 0);
    put_str(r, c->tls ? "TLS" : "");
    put_str(r, app ? app : "");
    put_int(r, ps_client_map_count(&c->ps));
    put_int(r, c->id);
    if (debug) put_debug(r, &c->conn);
    res_row_end(r);
}

static const char *server_state_label(const Server *s)
{
    switch (s->state) {
    case SERVER_ACTIVE:
        return "active";
    case SERVER_IDLE:
        return "idle";
    case SERVER_INTERNAL:
        return s->internal == INTERNAL_CHECK           ? "tested"
               : s->internal == INTERNAL_CONNECT_QUERY ? "new"
                                                       : "used";
    default:
        return "new";
    }
}

static void server_row(Result *r, Pool *p, Server *s, const char *state, bool debug)
{
    const char *app = params_get(&s->params, "application_name");
    put_str(r, "S");
    put_str(r, p->username);
    put_str(r, p->db->name);
    put_str(r, "none");
    put_str(r, state);
    put_addr(r, &s->conn, false);
    put_addr(r, &s->conn, true);
    put_time(r, s->created ? s->created : s->connect_start);
    put_time(r, s->last_used ? s->last_used : s->created);
    put_int(r, 0);
    put_int(r, 0);
    put_int(r, s->generation != pool_generation(p));
    put_fmt(r, "%p", (void *)s);
    if (s->client)
        put_fmt(r, "%p", (void *)s->client);
    else
        put_str(r, "");
    put_int(r, s->backend_pid);
    put_str(r, s->conn.io_ctx ? "TLS" : "");
    put_str(r, app ? app : "");
    put_int(r, ps_server_cache_count(&s->ps));
    put_int(r, s->id);
    if (debug) put_debug(r, &s->conn);
    res_row_end(r);
}

static const char *client_state_label(const Client *c)
{
    switch (c->state) {
    case CLIENT_ACTIVE:
        return "active";
    case CLIENT_WAITING:
        return "waiting";
    case CLIENT_LOGIN_WAIT:
        return "login";
    default:
        return c->admin ? "active" : "idle";
    }
}

static void show_clients(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    Result r;
    res_begin(&r, b, cur, socket_cols, SOCKET_STD_COLS);
    ClientIter ci;
    client_iter_init(&ci, &r, loop);
    for (Client *c; (c = client_iter_next(&ci));) {
        if (c->state < CLIENT_LOGIN_WAIT || c->state == CLIENT_CLOSING) continue;
        if (!res_client(&r, c)) break;
        client_row(&r, c, client_state_label(c), false);
    }
    res_end(&r, NULL);
}

static void server_rows(Result *r, Pool *p, bool debug, bool active_only)
{
    List *lists[] = {&p->active, &p->idle, &p->connecting};
    ListNode *it;
    for (int i = 0; i < 3; i++)
        list_for_each(it, lists[i])
        {
            Server *s = list_entry(it, Server, pool_node);
            if (active_only && conn_avail(&s->conn) == 0 && !conn_has_queue(&s->conn)) continue;
            const char *st = server_state_label(s);
            char label[32];
            if (debug) snprintf(label, sizeof(label), "sv_%s", strcmp(st, "new") ? st : "login");
            server_row(r, p, s, debug ? label : st, debug);
        }
}

static void show_servers(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    Result r;
    ListNode *dit, *pit;
    res_begin(&r, b, cur, socket_cols, SOCKET_STD_COLS);
    FOR_EACH_POOL(loop, db, p, dit, pit)
    {
        int w = res_item(&r);
        if (w < 0) goto out;
        if (w > 0) server_rows(&r, p, false, false);
    }
out:
    res_end(&r, NULL);
}

static void show_sockets(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    bool active_only = cur->arg;
    Result r;
    ListNode *dit, *pit;
    res_begin(&r, b, cur, socket_cols, NCOLS(socket_cols));
    ClientIter ci;
    client_iter_init(&ci, &r, loop);
    for (Client *c; cur->phase == 0 && (c = client_iter_next(&ci));) {
        if (c->state == CLIENT_CLOSING) continue;
        if (active_only && conn_avail(&c->conn) == 0 && !conn_has_queue(&c->conn)) continue;
        if (!res_client(&r, c)) goto out;
        char label[32];
        snprintf(label, sizeof(label), "cl_%s",
                 c->state < CLIENT_LOGIN_WAIT ? "login" : client_state_label(c));
        client_row(&r, c, label, true);
    }
    cur->phase = 1;
    FOR_EACH_POOL(loop, db, p, dit, pit)
    {
        int w = res_item(&r);
        if (w < 0) goto out;
        if (w > 0) server_rows(&r, p, true, active_only);
    }
out:
    res_end(&r, NULL);
}

/* ---- SHOW STATS family ---- */

typedef struct stat_field {
    const char *total_name, *avg_name, *plain_name;
} StatField;

static const StatField stat_fields[] = {
    {"total_server_assignment_count", "avg_server_assignment_count", "server_assignment_count"},
    {"total_xact_count", "avg_xact_count", "xact_count"},
    {"total_query_count", "avg_query_count", "query_count"},
    {"total_received", "avg_recv", "bytes_received"},
    {"total_sent", "avg_sent", "bytes_sent"},
    {"total_xact_time", "avg_xact_time", "xact_time"},
    {"total_query_time", "avg_query_time", "query_time"},
    {"total_wait_time", "avg_wait_time", "wait_time"},
    {"total_client_parse_count", "avg_client_parse_count", "client_parse_count"},
    {"total_server_parse_count", "avg_server_parse_count", "server_parse_count"},
    {"total_bind_count", "avg_bind_count", "bind_count"},
};
#define NSTAT 11

static void stat_values(const PoolStats *s, uint64_t *v)
{
    v[0] = s->server_assignments;
    v[1] = s->xact_count;
    v[2] = s->query_count;
    v[3] = s->bytes_in;
    v[4] = s->bytes_out;
    v[5] = s->xact_time;
    v[6] = s->query_time;
    v[7] = s->wait_time;
    v[8] = s->ps_client_parses;
    v[9] = s->ps_server_parses;
    v[10] = s->ps_binds;
}

/* which: 0 STATS, 1 STATS_TOTALS, 2 STATS_AVERAGES */
static void show_stats(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    int which = cur->arg;
    Col cols[RES_MAX_COLS];
    int n = 0;
    cols[n++] = (Col)S("database");
    for (int i = 0; i < NSTAT && which != 2; i++)
        cols[n++] =
            (Col){which == 0 ? stat_fields[i].total_name : stat_fields[i].plain_name, PG_OID_INT8};
    for (int i = 0; i < NSTAT && which != 1; i++)
        cols[n++] =
            (Col){which == 0 ? stat_fields[i].avg_name : stat_fields[i].plain_name, PG_OID_INT8};
    if (which == 0) {
        cols[n++] = (Col)I8("total_client_login_count");
        cols[n++] = (Col)I8("total_requests"); /* pre-1.8 name, read by old exporters */
    }
    Result r;
    ListNode *it;
    res_begin(&r, b, cur, cols, n);
    FOR_EACH_DB_ONCE(loop, db, it)
    {
        int w = res_item(&r);
        if (w < 0) goto out;
        if (w == 0) continue;
        PoolStats tot, avg;
        uint64_t vc[NSTAT], va[NSTAT];
        stats_db_totals(db, &tot);
        stats_db_averages(loop, db, &avg);
        stat_values(&tot, vc);
        stat_values(&avg, va);
        put_str(&r, db->name);
        for (int i = 0; i < NSTAT && which != 2; i++)
            put_int(&r, (long long)vc[i]);
        for (int i = 0; i < NSTAT && which != 1; i++)
            put_int(&r, (long long)va[i]);
        if (which == 0) {
            put_int(&r, (long long)tot.logins);
            put_int(&r, (long long)tot.query_count);
        }
        res_row_end(&r);
    }
out:
    res_end(&r, NULL);
}

static void show_totals(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {S("name"), I8("value")};
    uint64_t tot[NSTAT] = {0}, avg[NSTAT] = {0}, logins = 0;
    ListNode *it;
    FOR_EACH_DB_ONCE(loop, db, it)
    {
        PoolStats t, a;
        uint64_t vc[NSTAT], va[NSTAT];
        stats_db_totals(db, &t);
        stats_db_averages(loop, db, &a);
        stat_values(&t, vc);
        stat_values(&a, va);
        logins += t.logins;
        for (int i = 0; i < NSTAT; i++) {
            tot[i] += vc[i];
            avg[i] += va[i];
        }
    }
    Result r;
    res_begin(&r, b, cur, cols, 2);
    for (int i = 0; i < NSTAT; i++) {
        put_str(&r, stat_fields[i].total_name);
        put_int(&r, (long long)tot[i]);
        res_row_end(&r);
    }
    for (int i = 0; i < NSTAT; i++) {
        put_str(&r, stat_fields[i].avg_name);
        put_int(&r, (long long)avg[i]);
        res_row_end(&r);
    }
    /* as the column SHOW STATS appends */
    put_str(&r, "total_client_login_count");
    put_int(&r, (long long)logins);
    res_row_end(&r);
    res_end(&r, NULL);
}

static void show_latency(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {
        S("database"),      I8("query_count"), I8("query_p50_us"), I8("query_p95_us"),
        I8("query_p99_us"), I8("xact_count"),  I8("xact_p50_us"),  I8("xact_p95_us"),
        I8("xact_p99_us"),  I8("wait_count"),  I8("wait_p50_us"),  I8("wait_p95_us"),
        I8("wait_p99_us"),
    };
    Result r;
    ListNode *it;
    res_begin(&r, b, cur, cols, NCOLS(cols));
    FOR_EACH_DB_ONCE(loop, db, it)
    {
        int w = res_item(&r);
        if (w < 0) goto out;
        if (w == 0) continue;
        PoolLatency l;
        stats_db_latency(db, &l);
        put_str(&r, db->name);
        const StatsHist *h[3] = {&l.query, &l.xact, &l.wait};
        for (int i = 0; i < 3; i++) {
            put_int(&r, (long long)h[i]->count);
            put_int(&r, (long long)stats_hist_quantile(h[i], 0.50));
            put_int(&r, (long long)stats_hist_quantile(h[i], 0.95));
            put_int(&r, (long long)stats_hist_quantile(h[i], 0.99));
        }
        res_row_end(&r);
    }
out:
    res_end(&r, NULL);
}

/* ---- SHOW DATABASES / USERS / LISTS / MEM / FDS / STATE / CONFIG / DNS ---- */

/* SHOW DATABASES: the settings columns, pool_size … max_connections, of an entry. */
static void put_db_settings(Result *r, const Config *cfg, const DbConf *dc)
{
    usec_t lifetime =
        dc && dc->server_lifetime != CONF_UNSET ? dc->server_lifetime : cfg->server_lifetime;
    put_int(r, dc && dc->pool_size != CONF_UNSET ? dc->pool_size : cfg->default_pool_size);
    put_int(r, dc && dc->min_pool_size != CONF_UNSET ? dc->min_pool_size : cfg->min_pool_size);
    put_int(r, dc && dc->reserve_pool_size != CONF_UNSET ? dc->reserve_pool_size
                                                         : cfg->reserve_pool_size);
    put_int(r, lifetime / USEC_PER_SEC);
    put_str(r, dc && dc->pool_mode != CONF_UNSET ? config_pool_mode_name(dc->pool_mode) : NULL);
    put_str(r, NULL);
    put_int(r, dc && dc->max_db_connections != CONF_UNSET ? dc->max_db_connections
                                                          : cfg->max_db_connections);
}

/* SHOW DATABASES: max_client_connections, current_client_connections. */
static void put_db_clients(Result *r, Loop *loop, const Config *cfg, const DbConf *dc,
                           const char *name)
{
    put_int(r, dc && dc->max_db_client_connections != CONF_UNSET ? dc->max_db_client_connections
                                                                 : cfg->max_db_client_connections);
    put_int(r, loop->set ? pooldir_count_of(loop->set->dir, COUNT_DATABASE, name) : 0);
}

/* Has any loop made a Database of this name (a client logged in to it)? */
static bool database_in_use(Loop *loop, const char *name)
{
    FOR_EACH_LOOP(loop, L, li)
    {
        if (pool_database_get(L, name, false)) return true;
    }
    return false;
}

static void show_databases(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {
        S("name"),
        S("host"),
        I4("port"),
        S("database"),
        S("force_user"),
        I4("pool_size"),
        I4("min_pool_size"),
        I4("reserve_pool"),
        I4("server_lifetime"),
        S("pool_mode"),
        S("load_balance_hosts"),
        I4("max_connections"),
        I4("current_connections"),
        I4("max_client_connections"),
        I4("current_client_connections"),
        I4("paused"),
        I4("disabled"),
    };
    Config *cfg = loop->cfg;
    Result r;
    ListNode *it;
    res_begin(&r, b, cur, cols, NCOLS(cols));
    /* the console */
    if (res_item(&r) > 0) {
        put_str(&r, "pgbouncer");
        put_str(&r, NULL);
        put_int(&r, cfg->listen_port);
        put_str(&r, "pgbouncer");
        put_str(&r, "pgbouncer");
        put_int(&r, 2);
        put_int(&r, 0);
        put_int(&r, 0);
        put_int(&r, 0);
        put_str(&r, "statement");
        put_str(&r, NULL);
        put_int(&r, 0);
        put_int(&r, 0);
        put_int(&r, 0);
        put_int(&r, count_admin_clients(loop));
        put_int(&r, 0);
        put_int(&r, 0);
        res_row_end(&r);
    }
    FOR_EACH_DB_ONCE(loop, db, it)
    {
        int w = res_item(&r);
        if (w < 0) goto out;
        if (w == 0) continue;
        put_str(&r, db->name);
        put_str(&r, db->host);
        put_int(&r, db->port ? db->port : 5432);
        put_str(&r, db->dbname);
        put_str(&r, db->user);
        put_db_settings(&r, cfg, config_find_db(cfg, db->name));
        put_int(&r, pool_database_servers(db));
        put_db_clients(&r, loop, cfg, config_find_db(cfg, db->name), db->name);
        put_int(&r, db->paused);
        put_int(&r, db->disabled);
        res_row_end(&r);
    }
    /*
     * [databases] entries no client has used yet: a Database is made at the
     * first login (nothing is made before authentication), but PgBouncer lists
     * every configured entry, and exporters read their settings from here.
     */
    for (const DbConf *dc = cfg->databases; dc; dc = dc->next) {
        if (!strcmp(dc->name, "*") || database_in_use(loop, dc->name)) continue;
        int w = res_item(&r);
        if (w < 0) goto out;
        if (w == 0) continue;
        put_str(&r, dc->name);
        put_str(&r, dc->host);
        put_int(&r, dc->port ? dc->port : 5432);
        put_str(&r, dc->dbname ? dc->dbname : dc->name);
        put_str(&r, dc->user);
        put_db_settings(&r, cfg, dc);
        put_int(&r, 0);
        put_db_clients(&r, loop, cfg, dc, dc->name);
        put_int(&r, 0);
        put_int(&r, 0);
        res_row_end(&r);
    }
out:
    res_end(&r, NULL);
}

/* One row of SHOW USERS: "" for a size the [users] entry does not set, as PgBouncer. */
static void user_row(Result *r, Loop *loop, const Config *cfg, const char *name, int servers)
{
    const UserConf *uc = config_find_user(cfg, name);
    put_str(r, name);
    if (uc && uc->pool_size != CONF_UNSET)
        put_int(r, uc->pool_size);
    else
        put_str(r, "");
    if (uc && uc->reserve_pool_size != CONF_UNSET)
        put_int(r, uc->reserve_pool_size);
    else
        put_str(r, "");
    put_str(r, uc && uc->pool_mode != CONF_UNSET ? config_pool_mode_name(uc->pool_mode) : NULL);
    put_int(r, uc && uc->max_user_connections != CONF_UNSET ? uc->max_user_connections
                                                            : cfg->max_user_connections);
    put_int(r, servers);
    put_int(r, uc && uc->max_user_client_connections != CONF_UNSET
                   ? uc->max_user_client_connections
                   : cfg->max_user_client_connections);
    put_int(r, loop->set ? pooldir_count_of(loop->set->dir, COUNT_USER, name) : 0);
    res_row_end(r);
}

static bool user_in_use(Loop *loop, const char *name)
{
    FOR_EACH_LOOP(loop, L, li)
    {
        if (hmap_get(&L->user_index, name)) return true;
    }
    return false;
}

static void show_users(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {
        S("name"),
        S("pool_size"),
        S("reserve_pool_size"),
        S("pool_mode"),
        I4("max_user_connections"),
        I4("current_connections"),
        I4("max_user_client_connections"),
        I4("current_client_connections"),
    };
    Config *cfg = loop->cfg;
    Result r;
    ListNode *it;
    res_begin(&r, b, cur, cols, NCOLS(cols));
    FOR_EACH_LOOP(loop, L, li)
    list_for_each(it, &L->users)
    {
        PoolUser *u = list_entry(it, PoolUser, node);
        if (!pool_first_user(u)) continue;
        int w = res_item(&r);
        if (w < 0) goto out;
        if (w > 0) user_row(&r, loop, cfg, u->name, pool_user_servers_all(u));
    }
    /* [users] entries nobody has logged in as yet are listed too, as in PgBouncer */
    for (const UserConf *uc = cfg->users; uc; uc = uc->next) {
        if (user_in_use(loop, uc->name)) continue;
        int w = res_item(&r);
        if (w < 0) goto out;
        if (w > 0) user_row(&r, loop, cfg, uc->name, 0);
    }
out:
    res_end(&r, NULL);
}

static int count_pools(Loop *loop)
{
    ListNode *dit, *pit;
    int n = 0;
    FOR_EACH_POOL_ONCE(loop, db, p, dit, pit) n++;
    return n;
}

/* The rows of SHOW DATABASES: the console, databases in use, entries not used yet. */
static int count_databases(Loop *loop)
{
    ListNode *it;
    int n = 1;
    FOR_EACH_DB_ONCE(loop, db, it) n++;
    for (const DbConf *dc = loop->cfg->databases; dc; dc = dc->next)
        if (strcmp(dc->name, "*") && !database_in_use(loop, dc->name)) n++;
    return n;
}

static int count_users(Loop *loop)
{
    ListNode *it;
    int n = 0;
    FOR_EACH_LOOP(loop, L, li)
    list_for_each(it, &L->users) n += pool_first_user(list_entry(it, PoolUser, node));
    for (const UserConf *uc = loop->cfg->users; uc; uc = uc->next)
        n += !user_in_use(loop, uc->name);
    return n;
}

/* Sum of a per-loop field over every loop. */
#define SUM_LOOPS(loop, field)                                                                     \
    ({                                                                                             \
        long long sum_ = 0;                                                                        \
        FOR_EACH_LOOP(loop, L_, li_) sum_ += L_->field;                                            \
        sum_;                                                                                      \
    })

static int count_login_clients(Loop *loop)
{
    ListNode *it;
    int n = 0;
    FOR_EACH_LOOP(loop, L, li)
    list_for_each(it, &L->clients)
    {
        Client *c = list_entry(it, Client, all_node);
        if (c->state < CLIENT_LOGIN_WAIT) n++;
    }
    return n;
}

static int count_dns_names(Loop *loop)
{
    ListNode *it;
    int n = 0;
    FOR_EACH_DB_ONCE(loop, db, it) n += db->hostaddr != NULL;
    return n;
}

static int count_dns_pending(Loop *loop)
{
    ListNode *it;
    int n = 0;
    FOR_EACH_DB(loop, db, it) n += db->resolving;
    return n;
}

static int count_peers(Loop *loop)
{
    int n = 0;
    for (const PeerConf *pc = loop->cfg->peers; pc; pc = pc->next)
        n++;
    return n;
}

static void show_lists(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {S("list"), I4("items")};
    Result r;
    res_begin(&r, b, cur, cols, 2);
#define LIST_ROW(name, v)                                                                          \
    do {                                                                                           \
        put_str(&r, name);                                                                         \
        put_int(&r, v);                                                                            \
        res_row_end(&r);                                                                           \
    } while (0)
    LIST_ROW("databases", count_databases(loop));
    LIST_ROW("users", count_users(loop));
    LIST_ROW("peers", count_peers(loop));
    LIST_ROW("pools", count_pools(loop));
    LIST_ROW("peer_pools", count_peers(loop));
    LIST_ROW("free_clients", 0);
    LIST_ROW("used_clients", SUM_LOOPS(loop, client_count));
    LIST_ROW("login_clients", count_login_clients(loop));
    LIST_ROW("free_servers", 0);
    LIST_ROW("used_servers", SUM_LOOPS(loop, server_count));
    LIST_ROW("dns_names", count_dns_names(loop));
    LIST_ROW("dns_zones", 0);
    LIST_ROW("dns_queries", count_dns_pending(loop));
    LIST_ROW("dns_pending", count_dns_pending(loop));
#undef LIST_ROW
    res_end(&r, NULL);
}

static void show_mem(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {S("name"), I4("size"), I4("used"), I4("free"), I4("memtotal")};
    Result r;
    res_begin(&r, b, cur, cols, NCOLS(cols));
    long long clients = SUM_LOOPS(loop, client_count), servers = SUM_LOOPS(loop, server_count);
    long long bufs_used = SUM_LOOPS(loop, buf_in_use), bufs_free = SUM_LOOPS(loop, buf_free_count);
    put_str(&r, "client");
    put_int(&r, (long long)sizeof(Client));
    put_int(&r, clients);
    put_int(&r, 0);
    put_int(&r, (long long)sizeof(Client) * clients);
    res_row_end(&r);
    put_str(&r, "server");
    put_int(&r, (long long)sizeof(Server));
    put_int(&r, servers);
    put_int(&r, 0);
    put_int(&r, (long long)sizeof(Server) * servers);
    res_row_end(&r);
    put_str(&r, "pkt_buf");
    put_int(&r, loop->buf_size);
    put_int(&r, bufs_used);
    put_int(&r, bufs_free);
    put_int(&r, (long long)loop->buf_size * (bufs_used + bufs_free));
    res_row_end(&r);
    res_end(&r, NULL);
}

/*
 * SHOW LOOPS (pgfunnel): one row per event loop, so an operator sees how
 * evenly the clients are dealt and whether one loop lags or burns CPU.
 * The same numbers are on /metrics (pgfunnel_event_loop_*).
 */
static void show_loops(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {I4("loop"),       I4("clients"),    I8("accepted"), I4("servers"),
                               I4("cl_waiting"), I8("lag_max_us"), I8("cpu_us")};
    Result r;
    res_begin(&r, b, cur, cols, NCOLS(cols));
    FOR_EACH_LOOP(loop, L, li)
    {
        ListNode *dit, *pit;
        int waiting = 0;
        list_for_each(dit, &L->databases)
        {
            Database *db = list_entry(dit, Database, node);
            list_for_each(pit, &db->pools) waiting += list_entry(pit, Pool, db_node)->waiting.count;
        }
        put_int(&r, L->index);
        put_int(&r, L->client_count);
        put_int(&r, (long long)L->stats.clients_accepted);
        put_int(&r, L->server_count);
        put_int(&r, waiting);
        put_int(&r, (long long)L->stats.lag_max);
        put_int(&r, (long long)(loop_cpu_seconds(L) * 1e6));
        res_row_end(&r);
    }
    res_end(&r, NULL);
}

/* SHOW FDS: the list only; pgfunnel does not hand sockets over (no online restart). */
static void show_fds(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {
        I4("fd"),
        S("task"),
        S("user"),
        S("database"),
        S("addr"),
        I4("port"),
        I8("cancel"),
        I4("link"),
        S("client_encoding"),
        S("std_strings"),
        S("datestyle"),
        S("timezone"),
        S("password"),
        {"scram_client_key", PG_OID_BYTEA},
        {"scram_server_key", PG_OID_BYTEA},
    };
    Result r;
    ListNode *it, *dit, *pit;
    res_begin(&r, b, cur, cols, NCOLS(cols));
    ClientIter ci;
    client_iter_init(&ci, &r, loop);
    for (Client *c; cur->phase == 0 && (c = client_iter_next(&ci));) {
        if (c->state == CLIENT_CLOSING || c->admin) continue;
        if (!res_client(&r, c)) goto out;
        put_int(&r, c->conn.fd);
        put_str(&r, "client");
        put_str(&r, c->user);
        put_str(&r, c->database);
        put_addr(&r, &c->conn, false);
        put_int(&r, 0); /* cancel keys are not shown */
        put_int(&r, c->server ? c->server->conn.fd : 0);
        put_str(&r, params_get(&c->params, "client_encoding"));
        put_str(&r, params_get(&c->params, "standard_conforming_strings"));
        put_str(&r, params_get(&c->params, "DateStyle"));
        put_str(&r, params_get(&c->params, "TimeZone"));
        res_row_end(&r); /* password and keys: NULL, never shown */
    }
    cur->phase = 1;
    FOR_EACH_POOL(loop, db, p, dit, pit)
    {
        int w = res_item(&r);
        if (w < 0) goto out;
        if (w == 0) continue;
        List *lists[] = {&p->active, &p->idle, &p->connecting};
        for (int i = 0; i < 3; i++)
            list_for_each(it, lists[i])
            {
                Server *s = list_entry(it, Server, pool_node);
                put_int(&r, s->conn.fd);
                put_str(&r, "server");
                put_str(&r, p->username);
                put_str(&r, db->name);
                put_addr(&r, &s->conn, false);
                put_int(&r, 0);
                put_int(&r, s->client ? s->client->conn.fd : 0);
                put_str(&r, params_get(&s->params, "client_encoding"));
                put_str(&r, params_get(&s->params, "standard_conforming_strings"));
                put_str(&r, params_get(&s->params, "DateStyle"));
                put_str(&r, params_get(&s->params, "TimeZone"));
                res_row_end(&r);
            }
    }
out:
    res_end(&r, NULL);
}

static void show_state(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {S("key"), S("value")};
    bool paused = pool_control_paused_all(loop);
    Result r;
    res_begin(&r, b, cur, cols, 2);
    put_str(&r, "active");
    put_str(&r, paused ? "no" : "yes");
    res_row_end(&r);
    put_str(&r, "paused");
    put_str(&r, paused ? "yes" : "no");
    res_row_end(&r);
    put_str(&r, "suspended");
    put_str(&r, "no");
    res_row_end(&r);
    res_end(&r, NULL);
}

static void show_config(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {S("key"), S("value"), S("default"), S("changeable")};
    Result r;
    res_begin(&r, b, cur, cols, 4);
    for (size_t i = 0; i < config_option_count(); i++) {
        const OptionDef *od = config_option_at(i);
        char v[512];
        config_format_value(loop->cfg, od, v, sizeof(v));
        put_str(&r, od->name);
        put_str(&r, od->secret && v[0] ? "********" : v);
        put_str(&r, od->secret && od->default_value[0] ? "********" : od->default_value);
        put_str(&r, od->reloadable ? "yes" : "no");
        res_row_end(&r);
    }
    res_end(&r, NULL);
}

static void show_dns_hosts(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {S("hostname"), I8("ttl"), S("addrs")};
    Result r;
    ListNode *it;
    usec_t now = time_now_usec();
    res_begin(&r, b, cur, cols, 3);
    FOR_EACH_DB_ONCE(loop, db, it)
    {
        int w = res_item(&r);
        if (w < 0) goto out;
        if (w == 0) continue;
        if (!db->hostaddr || !db->host) continue;
        usec_t left = loop->cfg->dns_max_ttl - (now - db->resolved_at);
        put_str(&r, db->host);
        put_int(&r, left > 0 ? left / USEC_PER_SEC : 0);
        put_str(&r, db->hostaddr);
        res_row_end(&r);
    }
out:
    res_end(&r, NULL);
}

/*
 * SHOW HOSTS (pgfunnel): every backend host of the [databases] entries in
 * use, once per host:port, with what the health checks and its servers say.
 */
static void show_hosts(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {S("host"),
                               I4("port"),
                               S("state"),
                               S("role"),
                               S("checked"),
                               TS("last_check"),
                               I8("check_latency_us"),
                               I4("servers"),
                               S("databases"),
                               S("last_error")};
    Result r;
    ListNode *it;
    res_begin(&r, b, cur, cols, NCOLS(cols));
    const Host *h;
    for (size_t i = 0; (h = hosts_at(loop, i)) != NULL; i++) {
        int w = res_item(&r);
        if (w < 0) goto out;
        if (w == 0) continue;
        char dbs[512];
        size_t o = 0;
        dbs[0] = 0;
        list_for_each(it, &loop->databases)
        {
            Database *db = list_entry(it, Database, node);
            for (int k = 0; k < db->hosts.n && o < sizeof(dbs); k++) {
                if (db->hosts.v[k] != h) continue;
                o += (size_t)snprintf(dbs + o, sizeof(dbs) - o, "%s%s", o ? "," : "", db->name);
                break;
            }
        }
        usec_t last = (usec_t)atomic_load(&h->last_check);
        put_str(&r, h->name);
        put_int(&r, h->port);
        put_str(&r, hosts_state_name(atomic_load(&h->state)));
        put_str(&r, hosts_role_name(atomic_load(&h->role)));
        put_str(&r, h->checked ? "yes" : "no");
        put_time(&r, last);
        if (last)
            put_int(&r, (long long)atomic_load(&h->check_usec));
        else
            put_str(&r, NULL);
        put_int(&r, atomic_load(&h->servers));
        put_str(&r, dbs);
        put_str(&r, h->last_error);
        res_row_end(&r);
    }
out:
    res_end(&r, NULL);
}

static void show_dns_zones(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {S("zonename"), I8("serial"), I4("count")};
    (void)loop;
    Result r;
    res_begin(&r, b, cur, cols, 3);
    res_end(&r, NULL);
}

/* SHOW PEERS: the [peers] entries, as PgBouncer 1.19+ shows them. */
static void show_peers(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {I4("peer_id"), S("host"), I4("port"), I4("pool_size")};
    const Config *cfg = loop->cfg;
    Result r;
    res_begin(&r, b, cur, cols, 4);
    for (const PeerConf *pc = cfg->peers; pc; pc = pc->next) {
        put_int(&r, pc->id);
        put_str(&r, pc->host);
        put_int(&r, pc->port ? pc->port : 6432);
        put_int(&r, pc->pool_size != CONF_UNSET ? pc->pool_size : cfg->default_pool_size);
        res_row_end(&r);
    }
    res_end(&r, NULL);
}

/*
 * SHOW PEER_POOLS: one row per peer.  A forwarded cancel request is one
 * connection a worker opens, sends and closes (peers.c), so it counts as a
 * client cancel in progress and as a server connection forwarding it; there
 * is no queue in front of it and no login.
 */
static void show_peer_pools(Loop *loop, PktBuf *b, ShowCursor *cur)
{
    static const Col cols[] = {I4("peer_id"), I4("cl_active_cancel_req"),
                               I4("cl_waiting_cancel_req"), I4("sv_active_cancel"), I4("sv_login")};
    Result r;
    res_begin(&r, b, cur, cols, 5);
    for (const PeerConf *pc = loop->cfg->peers; pc; pc = pc->next) {
        int busy = peers_forwarding_to(loop, pc->id);
        put_int(&r, pc->id);
        put_int(&r, busy);
        put_int(&r, 0);
        put_int(&r, busy);
        put_int(&r, 0);
        res_row_end(&r);
    }
    res_end(&r, NULL);
}

/*
 * Session settings that drivers send to any PostgreSQL they connect to (JDBC
 * sends SET extra_float_digits, some tools SHOW client_encoding): the console
 * answers them as PgBouncer's does, SET with a notice and no effect, SHOW
 * with a fixed value, so such clients can use it.
 */
static const struct fake_param {
    const char *name;
    const char *value;
} fake_params[] = {
    {"client_encoding", "UTF8"},
    {"default_transaction_isolation", "read committed"},
    {"standard_conforming_strings", "on"},
    {"datestyle", "ISO"},
    {"timezone", "GMT"},
    {"extra_float_digits", "1"},
    {"application_name", ""},
};

static const struct fake_param *fake_param_find(const char *name)
{
    for (size_t i = 0; i < sizeof(fake_params) / sizeof(fake_params[0]); i++)
        if (!strcasecmp(name, fake_params[i].name)) return &fake_params[i];
    return NULL;
}

/* ---- parsing ---- */

typedef struct token {
    char text[ADMIN_ARG_MAX];
    bool quoted; /* "identifier" or 'string' */
    bool string; /* 'string' */
} Token;

/*
 * Read one token at *pp: a word of [A-Za-z0-9_], a "quoted identifier" or a
 * 'string' (doubled quotes escape).  Words are lower-cased.  Returns 1, 0
 * at the end, -1 on a syntax error.
 */
static int next_token(const char **pp, Token *t)
{
    const char *p = *pp;
    size_t n = 0;
    while (isspace((unsigned char)*p))
        p++;
    if (!*p) {
        *pp = p;
        return 0;
    }
    t->quoted = t->string = false;
    if (*p == '"' || *p == '\'') {
        char q = *p++;
        t->quoted = true;
        t->string = q == '\'';
        for (;;) {
            if (!*p) return -1;
            if (*p == q) {
                if (p[1] != q) break;
                p++;
            }
            if (n + 1 >= sizeof(t->text)) return -1;
            t->text[n++] = *p++;
        }
        p++;
    } else if (*p == '=' || *p == ';') {
        t->text[n++] = *p++;
    } else {
        while (isalnum((unsigned char)*p) || *p == '_' || *p == '.' || *p == '-') {
            if (n + 1 >= sizeof(t->text)) return -1;
            t->text[n++] = (char)tolower((unsigned char)*p++);
        }
        if (n == 0) return -1;
    }
    t->text[n] = 0;
    *pp = p;
    return 1;
}

/* Split "CMD [ARG] [;]" or "SET key = value [;]" into at most 5 tokens; -1 = syntax error. */
static int tokenize(const char *sql, Token *tok, int max)
{
    int n = 0, rc;
    const char *p = sql;
    while ((rc = next_token(&p, &tok[n])) == 1) {
        if (!tok[n].quoted && strcmp(tok[n].text, ";") == 0) {
            /* only whitespace may follow the final semicolon */
            while (isspace((unsigned char)*p))
                p++;
            if (*p) return -1;
            break;
        }
        if (++n >= max) return -1;
    }
    return rc < 0 ? -1 : n;
}

/* ---- command execution ---- */

typedef enum {
    ADMIN_DONE,      /* result appended, send ReadyForQuery */
    ADMIN_WAITING,   /* answer comes later: admin_wait_finished (control commands, SET, RELOAD) */
    ADMIN_STREAMING, /* a SHOW continues in slices (Client.show) */
} AdminRc;

/*
 * Every console error is 08P01, as PgBouncer's console answers: the console is
 * PgBouncer's interface, and tools written for it see the same SQLSTATE.
 */
static AdminRc admin_error(PktBuf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
static AdminRc admin_error(PktBuf *b, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pkt_error(b, "ERROR", "08P01", "%s", msg);
    return ADMIN_DONE;
}

static AdminRc admin_ok(PktBuf *b, const char *tag)
{
    pkt_command_complete(b, tag);
    return ADMIN_DONE;
}

/* The SHOW commands: name, builder, argument; FDS needs admin rights. */
static const struct show_command {
    const char *name;
    ShowFn fn;
    int arg;
} show_commands[] = {
    {"help", show_help, 0},
    {"version", show_version, 0},
    {"pools", show_pools, 0},
    {"stats", show_stats, 0},
    {"stats_totals", show_stats, 1},
    {"stats_averages", show_stats, 2},
    {"totals", show_totals, 0},
    {"latency", show_latency, 0},
    {"clients", show_clients, 0},
    {"servers", show_servers, 0},
    {"sockets", show_sockets, 0},
    {"active_sockets", show_sockets, 1},
    {"databases", show_databases, 0},
    {"users", show_users, 0},
    {"config", show_config, 0},
    {"lists", show_lists, 0},
    {"mem", show_mem, 0},
    {"state", show_state, 0},
    {"dns_hosts", show_dns_hosts, 0},
    {"hosts", show_hosts, 0},
    {"dns_zones", show_dns_zones, 0},
    {"fds", show_fds, 0},
    {"loops", show_loops, 0},
    {"peers", show_peers, 0},
    {"peer_pools", show_peer_pools, 0},
};

/* Build the next slice of a SHOW; true when it is complete (CommandComplete appended). */
/* One slice of a SHOW, with the other loops frozen so their lists can be read (loops.h). */
static bool admin_show_slice(Loop *loop, ShowCursor *cur, PktBuf *b)
{
    cur->budget = b->len + ADMIN_SLICE;
    cur->more = false;
    loops_freeze(loop);
    cur->fn(loop, b, cur);
    loops_thaw(loop);
    return !cur->more;
}

static AdminRc admin_show(Client *c, const char *what, PktBuf *b)
{
    const struct show_command *sc = NULL;
    for (size_t i = 0; i < sizeof(show_commands) / sizeof(show_commands[0]); i++)
        if (!strcmp(what, show_commands[i].name)) sc = &show_commands[i];
    const struct fake_param *fp = sc ? NULL : fake_param_find(what);
    if (fp) {
        pkt_row_description(b, &fp->name, 1);
        pkt_data_row(b, &fp->value, 1);
        return admin_ok(b, "SHOW");
    }
    if (!sc) return admin_error(b, "unknown SHOW command: %s (use SHOW HELP;)", what);
    if (sc->fn == show_fds) {
        bool admin;
        if (!admin_access(c, &admin) || !admin) return admin_error(b, "admin access needed");
    }
    ShowCursor cur = {.fn = sc->fn, .arg = sc->arg};
    if (admin_show_slice(c->loop, &cur, b)) return ADMIN_DONE;
    /* more rows than one slice: the rest follows in later callbacks (admin_process) */
    c->show = malloc(sizeof(cur));
    if (!c->show) return admin_error(b, "out of memory");
    *c->show = cur;
    return ADMIN_STREAMING;
}

static void admin_wait_finished(Loop *loop, uint32_t client_id, const char *tag, const char *error);

/*
 * SET takes effect as a reload would: the configuration is copied with the
 * new value and every loop adopts the copy (snapshot.h), so pool settings
 * and database entries are re-read (a changed server_tls_* retires the
 * servers) and a client_tls_* option rebuilds the client TLS context.  A
 * TLS combination that does not load is refused and nothing changes.  The
 * answer comes when every loop has adopted it (admin_wait_finished).
 */
typedef struct set_wait {
    uint32_t client_id;
} SetWait;

static void admin_set_done(Loop *loop, void *arg)
{
    SetWait *w = arg;
    admin_wait_finished(loop, w->client_id, "SET", NULL);
    free(w);
}

static int admin_set(Client *c, const char *name, const char *value, char *err, size_t errlen)
{
    Loop *loop = c->loop;
    const OptionDef *od = config_option_find(name);
    bool client_tls = od && strncmp(od->name, "client_tls_", 11) == 0;
    bool auth = od && (!strcmp(od->name, "auth_file") || !strcmp(od->name, "auth_hba_file") ||
                       !strcmp(od->name, "auth_type"));
    Config *ncfg = config_clone(loop->cfg);
    if (!ncfg) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (config_set(ncfg, name, value, err, errlen) < 0) {
        config_unref(ncfg);
        return -1;
    }
    Snapshot cur = {loop->cfg, loop->auth, loop->tls}, next;
    if (snapshot_build(&next, ncfg, &cur, auth, client_tls, err, errlen) < 0) return -1;
    SetWait *w = malloc(sizeof(*w));
    if (!w) {
        snapshot_release(&next);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    w->client_id = c->id;
    if (snapshot_publish(loop, &next, admin_set_done, w) < 0) {
        free(w);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* RELOAD: the SIGHUP path on loop 0; the answer comes back here. */
static void admin_reload_done(Loop *loop, uint32_t client_id, int rc)
{
    admin_wait_finished(loop, client_id, "RELOAD",
                        rc < 0 ? "RELOAD failed, see logs for additional details" : NULL);
}

static AdminRc admin_exec(Client *c, const char *sql, PktBuf *b)
{
    Loop *loop = c->loop;
    Token tok[5];
    char err[512];
    int n = tokenize(sql, tok, 5);
    bool admin;
    if (n == 0) {
        pkt_empty_query(b);
        return ADMIN_DONE;
    }
    if (n < 0 || tok[0].quoted)
        return admin_error(b, "invalid command '%.200s', use SHOW HELP;", sql);
    const char *cmd = tok[0].text;
    const char *arg = n >= 2 ? tok[1].text : NULL;
    bool is_show = !strcmp(cmd, "show") || !strcmp(cmd, "select");
    if (!admin_access(c, &admin)) return admin_error(b, "not allowed");

    if (!strcmp(cmd, "set")) {
        /* SET key (= | TO) value */
        if (n != 4 || tok[1].string || (strcmp(tok[2].text, "=") && strcmp(tok[2].text, "to")) ||
            tok[2].quoted)
            return admin_error(b, "invalid command '%.200s', use SHOW HELP;", sql);
        if (fake_param_find(tok[1].text)) {
            pkt_notice(b, "SET ignored");
            return admin_ok(b, "SET");
        }
        if (!admin) return admin_error(b, "admin access needed");
        if (admin_set(c, tok[1].text, tok[3].text, err, sizeof(err)) < 0)
            return admin_error(b, "SET failed: %s", err);
        log_info("SET %s command issued", tok[1].text);
        return ADMIN_WAITING;
    }
    if (n > 2) return admin_error(b, "invalid command '%.200s', use SHOW HELP;", sql);
    if (is_show) {
        if (!arg || tok[1].quoted)
            return admin_error(b, "invalid command '%.200s', use SHOW HELP;", sql);
        return admin_show(c, arg, b);
    }
    if (!admin) return admin_error(b, "admin access needed");

    static const struct {
        const char *name;
        ControlOp op;
    } ops[] = {
        {"pause", CONTROL_PAUSE},           {"resume", CONTROL_RESUME},
        {"disable", CONTROL_DISABLE},       {"enable", CONTROL_ENABLE},
        {"reconnect", CONTROL_RECONNECT},   {"kill", CONTROL_KILL},
        {"wait_close", CONTROL_WAIT_CLOSE},
    };
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        if (strcmp(cmd, ops[i].name) != 0) continue;
        if (pool_control_command(loop, ops[i].op, arg, c->id, admin_wait_finished, err,
                                 sizeof(err)) < 0)
            return admin_error(b, "%s", err);
        return ADMIN_WAITING;
    }
    if (!strcmp(cmd, "kill_client")) {
        char *end;
        errno = 0;
        unsigned long id = arg && !tok[1].quoted ? strtoul(arg, &end, 10) : 0;
        if (!arg || tok[1].quoted || *end || errno || id == 0 || id > UINT32_MAX)
            return admin_error(b, "invalid client pointer supplied");
        if (id == c->id) return admin_error(b, "cannot kill your own connection");
        if (pool_control_kill_client(loop, (uint32_t)id, c->id, admin_wait_finished, err,
                                     sizeof(err)) < 0)
            return admin_error(b, "%s", err);
        return ADMIN_WAITING;
    } else if (!strcmp(cmd, "suspend")) {
        return admin_error(b, "SUSPEND is not supported");
    } else if (!strcmp(cmd, "reload")) {
        if (arg) return admin_error(b, "RELOAD takes no argument");
        log_info("RELOAD command issued");
        if (loops_reload(loop, c->id, admin_reload_done) < 0)
            return admin_error(b, "RELOAD failed: out of memory");
        return ADMIN_WAITING;
    } else if (!strcmp(cmd, "shutdown")) {
        ShutdownMode mode = SHUTDOWN_IMMEDIATE;
        if (arg && !tok[1].quoted && !strcmp(arg, "wait_for_servers"))
            mode = SHUTDOWN_WAIT_SERVERS;
        else if (arg && !tok[1].quoted && !strcmp(arg, "wait_for_clients"))
            mode = SHUTDOWN_WAIT_CLIENTS;
        else if (arg)
            return admin_error(b, "invalid command '%.200s', use SHOW HELP;", sql);
        log_info("SHUTDOWN%s%s command issued", arg ? " " : "", arg ? arg : "");
        pool_control_shutdown(loop, mode);
        return admin_ok(b, "SHUTDOWN");
    }
    return admin_error(b, "invalid command '%.200s', use SHOW HELP;", sql);
}

/* ---- the console connection ---- */

static void admin_flush(Client *c, PktBuf *b)
{
    if (b->len && (b->failed || conn_send(&c->conn, b->data, b->len) < 0)) {
        pkt_free(b);
        client_close(c, NULL, "write failed");
        return;
    }
    pkt_free(b);
}

/* A PAUSE or WAIT_CLOSE is over: answer it and continue with queued queries. */
static void admin_wait_finished(Loop *loop, uint32_t client_id, const char *tag, const char *error)
{
    Client *c = loop_client_find(loop, client_id);
    if (!c || c->state != CLIENT_IDLE || !c->admin) return;
    c->admin_waiting = false;
    PktBuf b;
    pkt_init(&b);
    /* a failed RELOAD is a configuration file error (F0000), as in PgBouncer */
    if (error)
        pkt_error(&b, "ERROR", strcmp(tag, "RELOAD") ? "08P01" : "F0000", "%s", error);
    else
        pkt_command_complete(&b, tag);
    pkt_ready(&b, 'I');
    admin_flush(c, &b);
    if (c->state == CLIENT_IDLE) admin_process(c);
}

void admin_client_free(Client *c)
{
    free(c->show);
    c->show = NULL;
}

void admin_process(Client *c)
{
    PktBuf b;
    pkt_init(&b);
    bool waiting = c->admin_waiting;
    bool sliced = false, hold = false;
    while (c->state == CLIENT_IDLE && !waiting) {
        /* the relay's back-pressure: no more queries while answers are not read */
        if (b.len + conn_queue_len(&c->conn) >= CLIENT_BACKLOG_MAX) {
            hold = true;
            break;
        }
        if (c->show) {
            /* one slice per callback: other connections get their turn in between */
            if (sliced) {
                hold = true;
                break;
            }
            sliced = true;
            if (admin_show_slice(c->loop, c->show, &b)) {
                admin_client_free(c);
                pkt_ready(&b, 'I');
            }
            continue;
        }
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
        /* the query text is copied: a command may close clients and recycle buffers */
        char *sql = strndup((const char *)p + 5, len - 5);
        conn_consume(&c->conn, len + 1);
        if (!sql) {
            pkt_error(&b, "ERROR", "53200", "out of memory");
            pkt_ready(&b, 'I');
            continue;
        }
        AdminRc rc = admin_exec(c, sql, &b);
        free(sql);
        if (rc == ADMIN_WAITING)
            waiting = c->admin_waiting = true;
        else if (rc == ADMIN_STREAMING)
            sliced = true;
        else
            pkt_ready(&b, 'I');
    }
    admin_flush(c, &b);
    if (c->state != CLIENT_IDLE) return;
    if (hold) {
        /* client_on_write goes on once the socket takes more, at once if it is empty now */
        client_hold(c);
        conn_want_write(&c->conn, true);
    } else {
        /* while a command waits, read on only to notice a disconnect */
        conn_want_read(&c->conn, !waiting || conn_avail(&c->conn) == 0);
    }
    conn_release_buffer(&c->conn);
}
