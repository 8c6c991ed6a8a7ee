/*
 * client.c — the client side: startup, login and the client->server relay.
 *
 * The pooler speaks the server half of the protocol to applications.  A
 * client is read only when the pooler can act on what it reads: while it
 * waits for a server its bytes stay in the receive buffer, and while its
 * server has a backlog reading stops, so memory per client is bounded by
 * one buffer plus the peer's out-queue.
 *
 * The relay looks only at message headers: it batches every complete
 * message it may forward into one send straight from the receive buffer,
 * streams larger ones with `fwd_left`, and counts the ReadyForQuery
 * messages the server owes (one per Query, Sync and FunctionCall) so the
 * server side knows when a transaction pooler may let go of the server.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "admin.h"
#include "auth.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "loops.h"
#include "passthrough.h"
#include "peers.h"
#include "pool.h"
#include "pooldir.h"
#include "prepared.h"
#include "proto.h"
#include "server.h"
#include "stats.h"
#include "tls.h"
#include "workq.h"

static const char *const client_state_names[] = {
    "startup", "auth", "login_wait", "idle", "waiting", "active", "closing",
};

const char *client_state_name(ClientState st)
{
    return (unsigned)st < sizeof(client_state_names) / sizeof(client_state_names[0])
               ? client_state_names[st]
               : "?";
}

void client_format_prefix(const Client *c, char *buf, size_t len)
{
    snprintf(buf, len, "C-%u %s@%s %s", c->id, c->user ? c->user : "?",
             c->database ? c->database : "?", c->conn.addr);
}

static void client_set_state_lists(Client *c, Pool *p, ClientState st);

/*
 * The one place a client changes state: it leaves the list of the old
 * state and joins the list of the new one.
 */
void client_set_state(Client *c, ClientState st)
{
    Pool *p = c->pool;
    ClientState was = c->state;
    client_set_state_lists(c, p, st);
    /* other loops read who waits here (hand-over of idle servers, pool.h) */
    if (p && !c->admin &&
        (was == CLIENT_WAITING || was == CLIENT_LOGIN_WAIT || st == CLIENT_WAITING ||
         st == CLIENT_LOGIN_WAIT))
        pool_demand_changed(p);
}

static void client_set_state_lists(Client *c, Pool *p, ClientState st)
{
    if (list_node_linked(&c->pool_node)) {
        switch (c->state) {
        case CLIENT_STARTUP:
        case CLIENT_AUTH:
            list_remove(&c->loop->login_clients, &c->pool_node);
            break;
        case CLIENT_LOGIN_WAIT:
            list_remove(&p->login_wait, &c->pool_node);
            break;
        case CLIENT_IDLE:
            list_remove(&p->idle_clients, &c->pool_node);
            break;
        case CLIENT_WAITING:
            list_remove(&p->waiting, &c->pool_node);
            break;
        case CLIENT_ACTIVE:
            list_remove(&p->active_clients, &c->pool_node);
            break;
        default:
            break;
        }
    }
    c->state = st;
    if (st == CLIENT_STARTUP || st == CLIENT_AUTH) {
        list_append(&c->loop->login_clients, &c->pool_node);
        return;
    }
    if (!p || c->admin) return;
    switch (st) {
    case CLIENT_LOGIN_WAIT:
        c->wait_start = loop_now(c->loop); /* query_wait_timeout applies here too */
        list_append(&p->login_wait, &c->pool_node);
        break;
    case CLIENT_IDLE:
        list_append(&p->idle_clients, &c->pool_node);
        break;
    case CLIENT_WAITING:
        c->wait_start = loop_now(c->loop);
        list_append(&p->waiting, &c->pool_node);
        break;
    case CLIENT_ACTIVE:
        list_append(&p->active_clients, &c->pool_node);
        break;
    default:
        break;
    }
}

static void client_free(void *arg)
{
    Client *c = arg;
    auth_client_free(c);
    passthrough_cred_free(c->pass_cred);
    admin_client_free(c);
    if (c->pool) {
        Pooldir *dir = c->loop->set ? c->loop->set->dir : NULL;
        if (dir) {
            pooldir_count_leave(dir, c->db_count);
            pooldir_count_leave(dir, c->user_count);
        }
        ps_client_map_free(&c->ps, c->pool->ps);
        pool_unref(c->pool);
    }
    /* while a handshake step runs, the job owns the SSL object and frees it */
    if (c->ssl && !c->tls_job) SSL_free(c->ssl);
    params_free(&c->params);
    free(c->user);
    free(c->database);
    free(c);
}

/* Best effort: queue an error packet; a dead socket is noticed by the caller. */
void client_send_error(Client *c, const char *severity, const char *sqlstate, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    PktBuf b;
    pkt_init(&b);
    pkt_error(&b, severity, sqlstate, "%s", msg);
    if (!b.failed && conn_send(&c->conn, b.data, b.len) < 0) { /* noticed on next read */
    }
    pkt_free(&b);
}

bool client_backlogged(const Client *c)
{
    return conn_queue_len(&c->conn) >= CLIENT_BACKLOG_MAX ||
           (c->server && ps_queue_backlogged(&c->server->psq));
}

void client_hold(Client *c)
{
    c->backlogged = true;
    conn_want_read(&c->conn, false);
}

void client_wake(Client *c)
{
    if (!c->backlogged || c->state == CLIENT_CLOSING || client_backlogged(c)) return;
    c->backlogged = false;
    conn_want_read(&c->conn, true);
    /* buffered input is processed by client_on_read, not inside the caller's callback */
    if (conn_avail(&c->conn)) event_active(&c->conn.ev_read, EV_READ, 1);
}

/* Can the server go back to the pool as it is, without knowing more? */
static bool client_server_clean(const Client *c, const Server *s)
{
    return !s->dirty && s->internal == INTERNAL_NONE && c->expected_rfq == 0 && !c->extended_open &&
           c->fwd_left == 0 && s->fwd_left == 0 && c->tx_status == 'I' &&
           !conn_has_queue(&s->conn) && !c->linking;
}

void client_close(Client *c, const char *sqlstate, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    if (c->state == CLIENT_CLOSING) return;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);

    if (sqlstate) client_send_error(c, "FATAL", sqlstate, "%s", reason);
    Config *cfg = c->loop->cfg;
    bool logged_in = c->state >= CLIENT_LOGIN_WAIT;
    if ((logged_in && cfg->log_disconnections) || (sqlstate && cfg->log_pooler_errors))
        client_log(c, LOG_LEVEL_LOG, "closing because: %s (age=%llds)", reason,
                   (long long)((time_now_usec() - c->connect_time) / USEC_PER_SEC));

    Server *s = c->server;
    if (s) {
        bool clean = client_server_clean(c, s);
        c->server = NULL;
        s->client = NULL;
        if (clean) {
            pool_release_server(s);
        } else {
            server_close(s, "client disconnected in the middle of a transaction or query");
        }
    }
    client_set_state(c, CLIENT_CLOSING);
    loop_client_unregister(c->loop, c);
    list_remove(&c->loop->clients, &c->all_node);
    c->loop->client_count--;
    atomic_fetch_sub(&c->loop->set->clients, 1);
    /* a worker may be in SSL_do_handshake on this fd: the job closes it */
    if (c->tls_job) c->conn.keep_fd = true;
    conn_close(&c->conn);
    loop_defer_free(c->loop, &c->deferred, client_free, c);
}

/* PostgreSQL refuses messages of 1 GB or more: never forward one to a backend. */
#define PG_MAX_MESSAGE 0x3fffffffu

static uint32_t client_max_packet(const Client *c)
{
    uint32_t m = (uint32_t)c->loop->cfg->max_packet_size;
    return m < PG_MAX_MESSAGE ? m : PG_MAX_MESSAGE;
}

static void client_protocol_violation(Client *c, const char *what)
{
    client_close(c, "08P01", "%s", what);
}

/* ---------------------------------------------------------------- relay */

/*
 * What the relay does with a client message while linked.  Everything the
 * protocol defines for a frontend is forwarded; Terminate is consumed.
 */
static bool client_msg_known(uint8_t type)
{
    switch (type) {
    case 'Q':
    case 'P':
    case 'B':
    case 'E':
    case 'D':
    case 'C':
    case 'S':
    case 'H':
    case 'F':
    case 'd':
    case 'c':
    case 'f':
        return true;
    default:
        return false;
    }
}

/* Bookkeeping for a message about to be forwarded (header only). */
static void client_note_message(Client *c, uint8_t type, usec_t *now)
{
    switch (type) {
    case 'Q':
    case 'F':
        if (c->expected_rfq == 0) c->query_start = *now ? *now : (*now = loop_now(c->loop));
        if (!c->xact_start) c->xact_start = c->query_start;
        c->expected_rfq++;
        if (c->pool) c->pool->stats.query_count++;
        break;
    case 'S':
        if (c->expected_rfq == 0 && !c->query_start)
            c->query_start = *now ? *now : (*now = loop_now(c->loop));
        c->expected_rfq++;
        c->extended_open = false;
        break;
    case 'E':
        if (c->pool) c->pool->stats.query_count++;
        /* fall through */
    case 'P':
    case 'B':
    case 'D':
    case 'C':
    case 'H':
        if (!c->query_start) c->query_start = *now ? *now : (*now = loop_now(c->loop));
        c->extended_open = true;
        break;
    default:
        break;
    }
}

/* Does the server's session state already equal what the client wants?  (Cached fingerprints.) */
static bool client_params_match(Client *c, Server *s)
{
    if (c->want_gen != c->params.gen + 1) {
        c->want_fp = params_want_fp(&c->params, &c->pool->welcome);
        c->want_gen = c->params.gen + 1;
    }
    if (s->have_gen_params != s->params.gen + 1 || s->have_gen_applied != s->applied.gen + 1) {
        s->have_fp = params_have_fp(&s->params, &s->applied);
        s->have_gen_params = s->params.gen + 1;
        s->have_gen_applied = s->applied.gen + 1;
    }
    return c->want_fp == s->have_fp;
}

/*
 * With prepared-statement tracking, these messages are handled one by one
 * (prepared.c) instead of being batched: P/B/D/C may be rewritten, and a
 * short Query may be DEALLOCATE ALL / DISCARD ALL.
 */
static bool client_msg_special(uint8_t type)
{
    return type == 'P' || type == 'B' || type == 'D' || type == 'C';
}

/*
 * Does this P/B/D/C message name the unnamed statement (or a portal)?  Those
 * pass through unchanged, so they stay in the batch; answers "no" when the
 * names are not all in the buffer yet.
 */
static bool client_msg_unnamed(const uint8_t *m, uint32_t avail, uint8_t type)
{
    if (avail < 7) return false;
    const uint8_t *body = m + 5, *end = m + avail;
    switch (type) {
    case 'P':
        return body[0] == 0;
    case 'D':
    case 'C':
        return body[0] == 'P' || (body[0] == 'S' && body[1] == 0);
    case 'B': {
        const uint8_t *nul = memchr(body, 0, (size_t)(end - body)); /* the portal name */
        return nul && nul + 1 < end && nul[1] == 0;
    }
    default:
        return false;
    }
}

/* Short queries are looked at: they may be RESET/DISCARD or DEALLOCATE ALL. */
#define CLIENT_QUERY_INSPECT_MAX 256

/* The next SQL word at *i (letters, digits, _, .) lower-cased into w; its length (0: none). */
static size_t sql_word(const uint8_t *sql, uint32_t len, uint32_t *i, char *w, size_t wlen)
{
    while (*i < len && (sql[*i] == ' ' || sql[*i] == '\t' || sql[*i] == '\n' || sql[*i] == '\r'))
        (*i)++;
    size_t n = 0;
    while (*i < len && (isalnum(sql[*i]) || sql[*i] == '_' || sql[*i] == '.')) {
        if (n + 1 < wlen) w[n++] = (char)tolower(sql[*i]);
        (*i)++;
    }
    w[n] = 0;
    return n;
}

/*
 * Does this query return session parameters to their defaults?  RESET ALL
 * and DISCARD ALL do for all of them, RESET name and SET [SESSION] name
 * TO|= DEFAULT (SET TIME ZONE DEFAULT|LOCAL) for one: `name` gets it.
 * 0: no, 1: all, 2: one.  Only the first statement is looked at.
 */
static int client_query_resets(const uint8_t *sql, uint32_t len, char *name, size_t nlen)
{
    /* cheap rejection first: this runs for every short query */
    uint8_t f = len ? sql[0] : 0;
    if (f != 'r' && f != 'R' && f != 'd' && f != 'D' && f != 's' && f != 'S' && f != ' ' &&
        f != '\t' && f != '\n' && f != '\r')
        return 0;
    char w[64];
    uint32_t i = 0;
    sql_word(sql, len, &i, w, sizeof(w));
    if (!strcmp(w, "discard")) {
        sql_word(sql, len, &i, w, sizeof(w));
        return !strcmp(w, "all") ? 1 : 0;
    }
    if (!strcmp(w, "reset")) {
        /* a name this does not read ("quoted"): taken as all, the safe side */
        if (!sql_word(sql, len, &i, name, nlen)) return 1;
        return !strcmp(name, "all") ? 1 : 2;
    }
    if (strcmp(w, "set") != 0) return 0;
    if (!sql_word(sql, len, &i, name, nlen)) return 0;
    if (!strcmp(name, "local")) return 0; /* ends with the transaction anyway */
    if (!strcmp(name, "session") && !sql_word(sql, len, &i, name, nlen)) return 0;
    if (!strcmp(name, "time")) { /* SET TIME ZONE DEFAULT | LOCAL */
        sql_word(sql, len, &i, w, sizeof(w));
        if (strcmp(w, "zone") != 0) return 0;
        sql_word(sql, len, &i, w, sizeof(w));
        snprintf(name, nlen, "timezone");
        return !strcmp(w, "default") || !strcmp(w, "local") ? 2 : 0;
    }
    sql_word(sql, len, &i, w, sizeof(w));
    if (!w[0]) { /* "=" is no word */
        while (i < len && (sql[i] == ' ' || sql[i] == '\t' || sql[i] == '\n' || sql[i] == '\r'))
            i++;
        if (i >= len || sql[i] != '=') return 0;
        i++;
    } else if (strcmp(w, "to") != 0) {
        return 0;
    }
    sql_word(sql, len, &i, w, sizeof(w));
    return !strcmp(w, "default") ? 2 : 0;
}

static void client_inspect_query(Client *c, const uint8_t *sql, uint32_t len)
{
    char name[sizeof(c->resync_name)];
    int kind = client_query_resets(sql, len, name, sizeof(name));
    if (kind) {
        /* the server drops what the pooler SET; the session falls back to startup values */
        c->resync = true;
        snprintf(c->resync_name, sizeof(c->resync_name), "%s", kind == 2 ? name : "");
        if (c->server) {
            params_free(&c->server->applied); /* leaves an empty set, generation bumped */
        }
    }
}

/* Largest P/B/D/C head the pooler buffers whole to rewrite a statement name. */
#define CLIENT_PS_MSG_MAX (16u * 1024 * 1024)
/* The names at the start of a Bind must fit in this much. */
#define CLIENT_PS_HEAD_MAX (64u * 1024)

/*
 * The message at the head of the buffer needs the pooler's attention.
 * Returns 1 to continue relaying, 0 to wait for more bytes, -1 when the
 * client was closed.
 */
static int client_relay_special(Client *c, usec_t *now)
{
    uint8_t *p = conn_data(&c->conn);
    uint32_t avail = conn_avail(&c->conn);
    uint8_t type = p[0];
    uint32_t len = proto_get_u32(p + 1);
    uint64_t total = (uint64_t)len + 1;
    char err[256];
    uint32_t consumed = 0;
    int r = ps_client_message(c, p, avail, &consumed, err, sizeof(err));
    if (r < 0) {
        client_protocol_violation(c, err);
        return -1;
    }
    if (r == 0 && consumed == 0) goto need_more;
    client_note_message(c, type, now);
    if (r == 1) {
        c->fwd_left = (uint32_t)total; /* unchanged */
        return 1;
    }
    conn_consume(&c->conn, consumed);
    c->fwd_left = (uint32_t)(total - consumed); /* e.g. Bind parameters after the new name */
    return 1;
need_more:;
    /*
     * A Bind (or a Parse whose name is not known yet) only needs its head:
     * the names.  Parse/Describe/Close of a named statement need all of it.
     */
    uint64_t need = total;
    bool head_only = type == 'B' || (type == 'P' && avail < 6);
    if (head_only && need > CLIENT_PS_HEAD_MAX) need = CLIENT_PS_HEAD_MAX;
    if (need > CLIENT_PS_MSG_MAX || (head_only && avail >= need)) {
        client_protocol_violation(c, "message too large for prepared statement tracking");
        return -1;
    }
    if (conn_reserve(&c->conn, (uint32_t)need, CLIENT_PS_MSG_MAX) < 0) {
        client_close(c, "53200", "out of memory");
        return -1;
    }
    return 0;
}

/*
 * Forward what the client has sent.  Returns false when the client was
 * closed or the relay stopped for the server (parameters being applied);
 * *corked is the server whose sends are being gathered (see client_relay).
 */
static bool client_relay_messages(Client *c, Server **corked)
{
    uint32_t max_pkt = client_max_packet(c);
    usec_t now = 0;
    bool ps = ps_enabled(c->pool);

    while (c->state == CLIENT_ACTIVE && !c->linking) {
        Server *s = c->server;
        uint32_t avail = conn_avail(&c->conn);
        if (avail == 0) break;
        uint8_t *p = conn_data(&c->conn);
        uint32_t off = 0;

        if (c->needs_sync && c->expected_rfq == 0 && !c->extended_open && c->fwd_left == 0) {
            /* after RESET/DISCARD: the startup parameters again, before the next query */
            char sql[8192];
            c->needs_sync = false;
            int n = client_params_match(c, s)
                        ? 0
                        : params_diff_sql(&c->params, &s->params, &s->applied, &c->pool->welcome,
                                          sql, sizeof(sql));
            if (n > 0) {
                c->linking = true;
                if (server_run_internal(s, INTERNAL_SETPARAMS, sql) < 0)
                    server_close(s, "could not send parameters");
                return false;
            }
        }
        if (c->fwd_left) {
            off = avail < c->fwd_left ? avail : c->fwd_left;
            c->fwd_left -= off;
        } else {
            /* batch every forwardable message that starts in the buffer */
            while (avail - off >= 5) {
                uint8_t type = p[off];
                uint32_t len = proto_get_u32(p + off + 1);
                if (!client_msg_known(type) || len < 4 || len > max_pkt) break;
                if (ps && client_msg_special(type) &&
                    !client_msg_unnamed(p + off, avail - off, type))
                    break; /* a named statement: rewritten one by one */
                if (type == 'Q' && len <= CLIENT_QUERY_INSPECT_MAX) {
                    if (avail - off < (uint64_t)len + 1) break; /* wait for all of it */
                    client_inspect_query(c, p + off + 5, len - 4);
                }
                client_note_message(c, type, &now);
                if (ps) ps_note_forwarded(c, type);
                uint64_t total = (uint64_t)len + 1;
                if (avail - off >= total) {
                    off += (uint32_t)total;
                } else {
                    c->fwd_left = (uint32_t)(total - (avail - off));
                    off = avail;
                    break;
                }
            }
        }
        if (off > 0) {
            if (c->pool) c->pool->stats.bytes_in += off;
            if (server_send(s, p, off) < 0) {
                conn_consume(&c->conn, off);
                server_close(s, "write to server failed");
                return false;
            }
            conn_consume(&c->conn, off);
            continue;
        }
        if (avail < 5) break;
        uint8_t type = p[0];
        uint32_t len = proto_get_u32(p + 1);
        if (type == 'X' && len == 4) {
            conn_consume(&c->conn, 5);
            client_close(c, NULL, "client sent Terminate");
            return false;
        }
        if (len < 4 || len > max_pkt) {
            client_protocol_violation(c, "invalid message length");
            return false;
        }
        if (type == 'Q' && len <= CLIENT_QUERY_INSPECT_MAX) {
            if (conn_reserve(&c->conn, len + 1, CLIENT_QUERY_INSPECT_MAX + 1) < 0) {
                client_close(c, "53200", "out of memory");
                return false;
            }
            break;
        }
        if (ps && client_msg_known(type) && client_msg_special(type)) {
            /*
             * A rewritten statement name and the rest of the message go out
             * with what follows in one write, not one syscall each.
             */
            if (!*corked) {
                *corked = s;
                conn_cork(&s->conn);
            }
            int r = client_relay_special(c, &now);
            if (r < 0) return false;
            if (r == 0) break;
            /*
             * Answered locally: the client reads those first.  Only between
             * messages: the rest of a half-forwarded Bind is what the server
             * waits for before it answers anything.
             */
            if (c->fwd_left == 0 && client_backlogged(c)) break;
            continue;
        }
        char msg[64];
        snprintf(msg, sizeof(msg), "invalid frontend message type %d", type);
        client_protocol_violation(c, msg);
        return false;
    }
    return c->state != CLIENT_CLOSING;
}

static void client_relay(Client *c)
{
    Server *corked = NULL;
    bool more = client_relay_messages(c, &corked);
    if (corked && conn_uncork(&corked->conn) < 0 && corked->state != SERVER_CLOSING) {
        server_close(corked, "write to server failed");
        return;
    }
    if (!more || c->state == CLIENT_CLOSING) return;
    /* backpressure: stop reading while the server has a backlog, or the client itself */
    if (c->server && conn_has_queue(&c->server->conn))
        conn_want_read(&c->conn, false);
    else if (client_backlogged(c))
        client_hold(c);
    else
        conn_want_read(&c->conn, true);
    conn_release_buffer(&c->conn);
}

/* A logged-in client without a server has input. */
static void client_process_idle(Client *c)
{
    uint32_t avail = conn_avail(&c->conn);
    if (avail == 0) {
        conn_want_read(&c->conn, true);
        conn_release_buffer(&c->conn);
        return;
    }
    uint8_t *p = conn_data(&c->conn);
    if (avail < 5) {
        conn_want_read(&c->conn, true);
        return;
    }
    uint32_t len = proto_get_u32(p + 1);
    if (p[0] == 'X' && len == 4) {
        conn_consume(&c->conn, 5);
        client_close(c, NULL, "client sent Terminate");
        return;
    }
    if (!client_msg_known(p[0]) || len < 4 || len > client_max_packet(c)) {
        char msg[64];
        if (!client_msg_known(p[0]))
            snprintf(msg, sizeof(msg), "invalid frontend message type %d", p[0]);
        else
            snprintf(msg, sizeof(msg), "invalid message length");
        client_protocol_violation(c, msg);
        return;
    }
    /*
     * Keep the bytes and ask for a server.  Reading stops only if the client
     * has to wait: toggling the event for every transaction would cost two
     * epoll_ctl calls when an idle server is at hand.
     */
    pool_request_server(c->pool, c);
    if (c->state == CLIENT_WAITING) conn_want_read(&c->conn, false);
}

/* ---------------------------------------------------------------- startup */

/* PgBouncer's words for an options parameter it cannot apply */
#define OPTIONS_UNSUPPORTED                                                                        \
    "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed"

static int client_add_option(Client *c, const char *arg, char *err, size_t errlen)
{
    /* "name=value" from "-c name=value" or "--name=value"; dashes become underscores */
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg) {
        snprintf(err, errlen, "%s", OPTIONS_UNSUPPORTED);
        return -1;
    }
    char name[128];
    size_t nl = (size_t)(eq - arg);
    if (nl >= sizeof(name)) {
        snprintf(err, errlen, "parameter name too long");
        return -1;
    }
    for (size_t i = 0; i < nl; i++)
        name[i] = arg[i] == '-' ? '_' : arg[i];
    name[nl] = 0;
    if (config_list_contains(c->loop->cfg->ignore_startup_parameters, name)) return 0;
    if (params_is_startup_only(name)) {
        snprintf(err, errlen, "parameter \"%s\" cannot be set in options", name);
        return -1;
    }
    return params_set(&c->params, name, eq + 1) < 0 ? (snprintf(err, errlen, "out of memory"), -1)
                                                    : 0;
}

/* Split libpq's "options" like PostgreSQL does: spaces separate, backslash escapes. */
static int client_parse_options(Client *c, const char *opts, char *err, size_t errlen)
{
    char tok[PROTO_STARTUP_MAX]; /* any token of a startup packet fits */
    const char *p = opts;
    bool expect_c_value = false;
    for (;;) {
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p) break;
        size_t n = 0;
        while (*p && *p != ' ' && *p != '\t') {
            if (*p == '\\' && p[1]) p++;
            if (n + 1 >= sizeof(tok)) {
                snprintf(err, errlen, "options too long");
                return -1;
            }
            tok[n++] = *p++;
        }
        tok[n] = 0;
        if (expect_c_value) {
            if (client_add_option(c, tok, err, errlen) < 0) return -1;
            expect_c_value = false;
        } else if (strcmp(tok, "-c") == 0) {
            expect_c_value = true;
        } else if (strncmp(tok, "-c", 2) == 0) {
            if (client_add_option(c, tok + 2, err, errlen) < 0) return -1;
        } else if (strncmp(tok, "--", 2) == 0) {
            if (client_add_option(c, tok + 2, err, errlen) < 0) return -1;
        } else {
            snprintf(err, errlen, "%s", OPTIONS_UNSUPPORTED);
            return -1;
        }
    }
    if (expect_c_value) {
        snprintf(err, errlen, "-c requires a value");
        return -1;
    }
    return 0;
}

/* Cancel the query of client pid on this loop if the key is its own. */
static void client_cancel_local(Loop *loop, uint32_t pid, uint32_t key)
{
    Client *target = loop_client_find(loop, pid);
    /* unknown keys are ignored silently, as PostgreSQL does */
    if (target && peers_key_matches(loop->cfg, target->cancel_key, key) &&
        target->state != CLIENT_CLOSING) {
        client_log(target, LOG_LEVEL_DEBUG, "cancel request");
        if (target->server && target->state == CLIENT_ACTIVE) server_cancel(target->server);
    }
}

typedef struct cancel_msg {
    uint32_t pid, key;
} CancelMsg;

static void client_cancel_on_loop(Loop *loop, void *arg)
{
    CancelMsg *m = arg;
    loop_update_now(loop);
    client_cancel_local(loop, m->pid, m->key);
    free(m);
}

/* A CancelRequest: the pid's top bits name the loop of the client it is for. */
static void client_handle_cancel(Client *c, uint32_t pid, uint32_t key)
{
    /* a key another pgfunnel handed out goes to it (peers.c); c is closed when done */
    if (peers_route_cancel(c, pid, key)) return;
    Loop *owner = loops_of_client_id(c->loop->set, pid);
    if (owner == c->loop) {
        if (pid != c->id) client_cancel_local(c->loop, pid, key);
    } else if (owner) {
        CancelMsg *m = malloc(sizeof(*m));
        if (m) {
            m->pid = pid;
            m->key = key;
            if (loop_post(owner, client_cancel_on_loop, m) < 0)
                free(m);
            else
                atomic_fetch_add(&c->loop->set->cancels_routed, 1);
        }
    }
    client_close(c, NULL, "cancel request handled");
}

/* Startup packet parsed: decide who this is and where it goes. */
static void client_start_login(Client *c, const StartupPacket *sp)
{
    char err[256];
    const char *user = NULL, *database = NULL, *options = NULL;
    const char *unknown_pq[STARTUP_MAX_PARAMS];
    int nunknown = 0;
    Config *cfg = c->loop->cfg;

    for (int i = 0; i < sp->nparams; i++) {
        const char *n = sp->names[i], *v = sp->values[i];
        if (strcmp(n, "user") == 0)
            user = v;
        else if (strcmp(n, "database") == 0)
            database = v;
        else if (strcmp(n, "options") == 0)
            options = v;
        else if (strncmp(n, "_pq_.", 5) == 0)
            unknown_pq[nunknown++] = n;
        else if (strcmp(n, "replication") == 0) {
            if (strcasecmp(v, "false") != 0 && strcmp(v, "0") != 0 && strcasecmp(v, "off") != 0 &&
                strcasecmp(v, "no") != 0) {
                client_close(c, "08P01", "replication connections are not supported by pgfunnel");
                return;
            }
        } else if (config_list_contains(cfg->ignore_startup_parameters, n)) {
            continue;
        } else if (params_set(&c->params, n, v) < 0) {
            client_close(c, "53200", "out of memory");
            return;
        }
    }
    if (!user || !*user) {
        client_close(c, "28000", "no PostgreSQL user name specified in startup packet");
        return;
    }
    if (!database || !*database) database = user;
    /* longer names are cut to PostgreSQL's identifier limit, as PostgreSQL does */
    c->user = strndup(user, PROTO_NAME_MAX);
    c->database = strndup(database, PROTO_NAME_MAX);
    if (!c->user || !c->database) {
        client_close(c, "53200", "out of memory");
        return;
    }
    if (options && client_parse_options(c, options, err, sizeof(err)) < 0) {
        client_close(c, "08P01", "%s", err);
        return;
    }
    params_mark_startup(&c->params);
    /* a newer minor version or _pq_ options: negotiate down, as PostgreSQL does */
    if ((sp->version & 0xffff) > 0 || nunknown > 0) {
        PktBuf b;
        pkt_init(&b);
        pkt_negotiate_version(&b, 0, unknown_pq, nunknown);
        if (b.failed || conn_send(&c->conn, b.data, b.len) < 0) {
            pkt_free(&b);
            client_close(c, NULL, "write failed");
            return;
        }
        pkt_free(&b);
    }
    /* over every loop: the limit is the process's, not a loop's (counted at accept) */
    if (c->over_limit) {
        c->loop->stats.clients_rejected++;
        client_close(c, "53300", "no more connections allowed (max_client_conn)");
        return;
    }
    if (c->loop->shutdown != SHUTDOWN_NONE && c->loop->shutdown != SHUTDOWN_WAIT_CLIENTS) {
        client_close(c, "57P01", "pgfunnel is shutting down");
        return;
    }
    if (cfg->client_tls_sslmode >= SSLMODE_REQUIRE && !c->tls &&
        strcmp(c->conn.addr, "unix") != 0) {
        client_close(c, "28000", "SSL required");
        return;
    }
    if (admin_is_console_db(c->database)) {
        c->admin = true;
        client_set_state(c, CLIENT_AUTH);
        auth_begin(c);
        return;
    }
    /*
     * No pool yet: nothing that outlives this connection is created before
     * the client has authenticated (client_auth_ok), so a flood of startup
     * packets with made-up names costs only the clients themselves.
     */
    client_set_state(c, CLIENT_AUTH);
    auth_begin(c);
}

static bool client_count_one(Client *c, Pooldir *dir, CountKind kind, const char *name, int max,
                             struct client_count **out)
{
    bool full;
    *out = pooldir_count_enter(dir, kind, name, max, &full);
    if (*out) return true;
    c->loop->stats.clients_rejected++;
    if (!full)
        client_close(c, "53200", "out of memory");
    else if (kind == COUNT_DATABASE)
        client_close(c, "53300", "client connections exceeded (max_db_client_connections)");
    else
        client_close(c, "53300", "client connections exceeded (max_user_client_connections)");
    return false;
}

/*
 * max_db_client_connections / max_user_client_connections (PgBouncer 1.24):
 * the client counts in its database and its login user, over every loop.
 * False when it was refused (closed).
 */
static bool client_count_enter(Client *c)
{
    Config *cfg = c->loop->cfg;
    Pooldir *dir = c->loop->set ? c->loop->set->dir : NULL;
    if (!dir) return true;
    const DbConf *dc = config_find_db(cfg, c->database);
    const UserConf *uc = config_find_user(cfg, c->user);
    int db_max = dc && dc->max_db_client_connections != CONF_UNSET ? dc->max_db_client_connections
                                                                   : cfg->max_db_client_connections;
    int user_max = uc && uc->max_user_client_connections != CONF_UNSET
                       ? uc->max_user_client_connections
                       : cfg->max_user_client_connections;
    return client_count_one(c, dir, COUNT_DATABASE, c->pool->db->name, db_max, &c->db_count) &&
           client_count_one(c, dir, COUNT_USER, c->user, user_max, &c->user_count);
}

/* Called by auth.c when authentication succeeded. */
void client_auth_ok(Client *c)
{
    if (c->loop->cfg->log_connections) client_log(c, LOG_LEVEL_LOG, "login attempt: ok");
    if (c->admin) {
        admin_client_login(c);
        /* as for any login: queries sent behind the startup packet are already buffered */
        if (c->state == CLIENT_IDLE) client_process(c);
        return;
    }
    /* only an authenticated client learns whether its database exists (3D000) */
    char err[256];
    const char *sqlstate = "08P01";
    Pool *p = pool_for_client(c->loop, c->database, c->user, &sqlstate, err, sizeof(err));
    if (!p) {
        client_close(c, sqlstate, "%s", err);
        return;
    }
    c->pool = p;
    pool_ref(p);
    if (!client_count_enter(c)) return;
    p->stats.logins++;
    pool_client_login(p, c);
}

void client_finish_login(Client *c)
{
    Pool *p = c->pool;
    PktBuf b;
    pkt_init(&b);
    pkt_auth_ok(&b);
    for (int i = 0; i < p->welcome.n; i++) {
        const char *name = p->welcome.v[i].name;
        const char *v = params_get(&c->params, name);
        if (!v && strcasecmp(name, "application_name") == 0) v = "";
        pkt_param_status(&b, name, v ? v : p->welcome.v[i].value);
    }
    pkt_backend_key(&b, c->id, c->cancel_key);
    pkt_ready(&b, 'I');
    c->tx_status = 'I';
    if (b.failed || conn_send(&c->conn, b.data, b.len) < 0) {
        pkt_free(&b);
        client_close(c, NULL, "write failed during login");
        return;
    }
    pkt_free(&b);
    client_set_state(c, CLIENT_IDLE);
    c->last_activity = loop_now(c->loop);
    client_process(c);
}

/* ---------------------------------------------------------------- TLS */

static void client_on_read(evutil_socket_t fd, short ev, void *arg);
static void client_on_write(evutil_socket_t fd, short ev, void *arg);

typedef struct tls_job {
    WorkqJob job;
    Loop *loop;
    uint32_t client_id;
    SSL *ssl;
    int fd;
    TlsStep step;
    char err[256];
} TlsJob;

static void tls_job_work(WorkqJob *j)
{
    TlsJob *t = (TlsJob *)j;
    t->step = tls_handshake_step(t->ssl, t->err, sizeof(t->err));
}

static void client_tls_submit(Client *c);

static void client_on_tls_ready(evutil_socket_t fd, short ev, void *arg)
{
    Client *c = arg;
    (void)fd;
    (void)ev;
    conn_want_read(&c->conn, false);
    conn_want_write(&c->conn, false);
    client_tls_submit(c);
}

static void tls_job_done(WorkqJob *j, int status)
{
    TlsJob *t = (TlsJob *)j;
    Client *c = loop_client_find(t->loop, t->client_id);
    if (!c || c->ssl != t->ssl) {
        /* the client went away while the worker held its socket */
        SSL_free(t->ssl);
        close(t->fd);
        free(t);
        return;
    }
    c->tls_job = false;
    if (status != 0) {
        free(t);
        client_close(c, NULL, "shutting down during TLS handshake");
        return;
    }
    switch (t->step) {
    case TLS_STEP_DONE:
        tls_conn_attach(&c->conn, c->ssl);
        c->tls = true;
        c->loop->stats.tls_handshakes++;
        conn_set_callbacks(&c->conn, client_on_read, client_on_write, c);
        conn_want_read(&c->conn, true);
        free(t);
        /* the startup packet may already sit decrypted inside OpenSSL */
        client_on_read(c->conn.fd, EV_READ, c);
        return;
    case TLS_STEP_WANT_READ:
        conn_want_read(&c->conn, true);
        break;
    case TLS_STEP_WANT_WRITE:
        conn_want_write(&c->conn, true);
        break;
    case TLS_STEP_FAILED:
        c->loop->stats.tls_handshake_failures++;
        /* logged here: client_close() only logs clients that got as far as a login */
        client_log(c, LOG_LEVEL_LOG, "%s", t->err);
        client_close(c, NULL, "%s", t->err);
        break;
    }
    free(t);
}

static void client_tls_submit(Client *c)
{
    TlsJob *t = calloc(1, sizeof(*t));
    if (!t) {
        client_close(c, NULL, "out of memory");
        return;
    }
    t->loop = c->loop;
    t->client_id = c->id;
    t->ssl = c->ssl;
    t->fd = c->conn.fd;
    c->tls_job = true;
    if (workq_submit(c->loop->workq, &t->job, tls_job_work, tls_job_done) < 0) {
        c->tls_job = false;
        free(t);
        client_close(c, NULL, "worker queue full during TLS handshake");
    }
}

/* SSLRequest: answer 'S' and hand the handshake to the workers, or 'N'. */
static void client_start_tls(Client *c)
{
    TlsContext *t = c->loop->tls;
    if (!t || strcmp(c->conn.addr, "unix") == 0) {
        if (conn_send(&c->conn, "N", 1) < 0) client_close(c, NULL, "write failed");
        return;
    }
    /* bytes after the SSLRequest would be unencrypted data smuggled into the session */
    if (conn_avail(&c->conn) > 0) {
        client_protocol_violation(c, "received unencrypted data after SSL request");
        return;
    }
    c->ssl = SSL_new(t->ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->conn.fd) != 1) {
        client_close(c, "XX000", "could not create a TLS session");
        return;
    }
    SSL_set_accept_state(c->ssl);
    if (conn_send(&c->conn, "S", 1) < 0) {
        client_close(c, NULL, "write failed");
        return;
    }
    conn_release_buffer(&c->conn);
    conn_set_callbacks(&c->conn, client_on_tls_ready, client_on_tls_ready, c);
    conn_want_read(&c->conn, false);
    client_tls_submit(c);
}

static void client_process_startup(Client *c)
{
    for (;;) {
        if (client_backlogged(c)) { /* SSLRequest after SSLRequest, never reading the 'N's */
            client_hold(c);
            return;
        }
        uint32_t avail = conn_avail(&c->conn);
        if (avail < 4) return;
        uint8_t *p = conn_data(&c->conn);
        uint32_t len = proto_get_u32(p);
        if (len < 8 || len > PROTO_STARTUP_MAX) {
            /*
             * As PostgreSQL: logged, not answered.  Whatever sent this (say a
             * Terminate instead of a startup packet) is no libpq client that
             * could make sense of an ErrorResponse.
             */
            client_log(c, LOG_LEVEL_LOG, "invalid length of startup packet");
            client_close(c, NULL, "invalid length of startup packet");
            return;
        }
        if (avail < len) {
            if (conn_reserve(&c->conn, len, PROTO_STARTUP_MAX) < 0) {
                client_close(c, "53200", "out of memory");
            }
            return;
        }
        /*
         * Work on a copy: logging in may process (and release) the receive
         * buffer while the parsed strings are still in use.
         */
        uint8_t *pkt = malloc(len);
        if (!pkt) {
            client_close(c, "53200", "out of memory");
            return;
        }
        memcpy(pkt, p, len);
        conn_consume(&c->conn, len);
        StartupPacket sp;
        char err[256];
        if (proto_parse_startup(pkt, len, &sp, err, sizeof(err)) < 0) {
            free(pkt);
            client_protocol_violation(c, err);
            return;
        }
        if (sp.kind == STARTUP_SSL && !c->tls && !c->ssl) {
            free(pkt);
            client_start_tls(c);
            return;
        }
        if (sp.kind == STARTUP_SSL || sp.kind == STARTUP_GSSENC) {
            free(pkt);
            /* GSS encryption is not offered (nor TLS twice): 'N', go on in the current mode */
            if (conn_send(&c->conn, "N", 1) < 0) {
                client_close(c, NULL, "write failed");
                return;
            }
            continue;
        }
        if (sp.kind == STARTUP_CANCEL) {
            free(pkt);
            client_handle_cancel(c, sp.cancel_pid, sp.cancel_key);
            return;
        }
        client_start_login(c, &sp);
        free(pkt);
        return;
    }
}

void client_process(Client *c)
{
    switch (c->state) {
    case CLIENT_STARTUP:
        client_process_startup(c);
        break;
    case CLIENT_IDLE:
        if (c->admin)
            admin_process(c);
        else
            client_process_idle(c);
        break;
    case CLIENT_ACTIVE:
        client_relay(c);
        break;
    case CLIENT_AUTH:
        auth_process(c);
        break;
    default:
        /* LOGIN_WAIT, WAITING: keep the bytes, read no more */
        conn_want_read(&c->conn, false);
        break;
    }
}

/* ---------------------------------------------------------------- events */

static void client_on_read(evutil_socket_t fd, short ev, void *arg)
{
    Client *c = arg;
    (void)fd;
    (void)ev;
    loop_update_now(c->loop);
    int n = conn_fill(&c->conn);
    if (n == 0) {
        client_close(c, NULL, "client closed connection");
        return;
    }
    if (n == -1) {
        client_close(c, NULL, "client connection error: %s", strerror(errno));
        return;
    }
    c->last_activity = loop_now(c->loop);
    client_process(c);
    /* TLS: decrypted bytes inside OpenSSL will not wake the socket again */
    while (c->state != CLIENT_CLOSING && c->conn.reading && tls_conn_pending(&c->conn)) {
        n = conn_fill(&c->conn);
        if (n == 0 || n == -1) {
            client_close(c, NULL, "client connection error");
            return;
        }
        if (n == -2) break;
        client_process(c);
    }
}

static void client_on_write(evutil_socket_t fd, short ev, void *arg)
{
    Client *c = arg;
    (void)fd;
    (void)ev;
    loop_update_now(c->loop);
    int r = conn_flush(&c->conn);
    if (r < 0) {
        client_close(c, NULL, "client write failed");
        return;
    }
    if (r == 0 && c->server) server_resume(c->server);
    if (r == 0 && c->backlogged && c->state != CLIENT_CLOSING && !client_backlogged(c)) {
        /* the client read what it was owed: go on with what it sent meanwhile */
        c->backlogged = false;
        conn_want_read(&c->conn, true);
        client_process(c);
    }
}

/* TCP options; the socket is already non-blocking and close-on-exec (accept4 in listener.c). */
static void client_set_socket_options(Loop *loop, int fd, bool unix_socket)
{
    int on = 1;
    if (unix_socket) return;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    Config *cfg = loop->cfg;
    if (cfg->tcp_keepalive) {
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
        if (cfg->tcp_keepidle > 0)
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &cfg->tcp_keepidle, sizeof(int));
        if (cfg->tcp_keepintvl > 0)
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &cfg->tcp_keepintvl, sizeof(int));
        if (cfg->tcp_keepcnt > 0)
            setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cfg->tcp_keepcnt, sizeof(int));
    }
    if (cfg->tcp_user_timeout > 0)
        setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &cfg->tcp_user_timeout, sizeof(int));
}

void client_accept(Loop *loop, int fd, bool unix_socket, const struct sockaddr *peer)
{
    Client *c = calloc(1, sizeof(*c));
    if (!c) {
        close(fd);
        return;
    }
    client_set_socket_options(loop, fd, unix_socket);
    conn_init(&c->conn, loop, fd);
    c->loop = loop;
    list_node_init(&c->pool_node);
    params_init(&c->params);
    c->connect_time = c->last_activity = loop_update_now(loop);
    c->tx_status = 'I';
    c->cancel_key = peers_cancel_key(loop->cfg, loop_random_u32(loop));
    if (loop_client_register(loop, c) < 0) {
        close(fd);
        free(c);
        return;
    }
    list_append(&loop->clients, &c->all_node);
    loop->client_count++;
    /* decided in accept order: of 30 sockets against 20, exactly 10 are refused */
    c->over_limit = atomic_fetch_add(&loop->set->clients, 1) >= loop->cfg->max_client_conn;
    loop->stats.clients_accepted++;
    if (unix_socket)
        snprintf(c->conn.addr, sizeof(c->conn.addr), "unix");
    else
        conn_describe_peer(&c->conn, peer);
    c->state = CLIENT_STARTUP;
    list_append(&loop->login_clients, &c->pool_node);
    conn_set_callbacks(&c->conn, client_on_read, client_on_write, c);
    conn_want_read(&c->conn, true);
}

/* ---------------------------------------------------------------- linking */

void client_link_server(Client *c, Server *s)
{
    char sql[8192];
    c->server = s;
    s->client = c;
    c->fwd_left = 0;
    c->expected_rfq = 0;
    c->extended_open = false;
    c->needs_sync = false; /* the diff below covers it */
    c->tx_status = 'I';
    usec_t now = loop_now(c->loop);
    if (c->pool) {
        c->pool->stats.server_assignments++;
        if (c->state == CLIENT_WAITING) stats_on_wait(c->pool, now - c->wait_start);
    }
    client_set_state(c, CLIENT_ACTIVE);
    server_set_state(s, SERVER_ACTIVE);
    s->link_count++;
    s->last_used = now;
    /* the usual case, the server already looks like the client: no diff to build */
    int n = client_params_match(c, s) ? 0
                                      : params_diff_sql(&c->params, &s->params, &s->applied,
                                                        &c->pool->welcome, sql, sizeof(sql));
    if (n > 0) {
        c->linking = true;
        if (server_run_internal(s, INTERNAL_SETPARAMS, sql) < 0) {
            c->linking = false;
            server_close(s, "could not send parameters");
            return;
        }
        return;
    }
    if (n < 0) client_log(c, LOG_LEVEL_WARNING, "too many session parameters to apply");
    server_start_relay(s);
    client_process(c);
}

void client_server_ready(Client *c)
{
    c->linking = false;
    if (c->server) server_start_relay(c->server);
    client_process(c);
}

void client_server_released(Client *c)
{
    c->server = NULL;
    c->query_start = 0;
    c->fwd_left = 0;
    client_set_state(c, CLIENT_IDLE);
    c->last_activity = loop_now(c->loop);
    client_process(c);
}

/* ---------------------------------------------------------------- timeouts */

/*
 * A client queued for a server gives up with the pool's last login error in
 * the message, when logins are failing: "query_wait_timeout (server login
 * failed: Connection refused ...)".
 */
static void client_close_waiting(Client *c, const char *what)
{
    char buf[256];
    const char *err = c->pool ? pool_last_login_error(c->pool, buf, sizeof(buf)) : NULL;
    if (err)
        client_close(c, "08P01", "%s (%s)", what, err);
    else
        client_close(c, "08P01", "%s", what);
}

/* Timeouts a [users] entry may set for the clients that log in as that user. */
typedef struct client_timeouts {
    usec_t query, idle_transaction, client_idle;
} ClientTimeouts;

static ClientTimeouts client_timeouts(const Client *c)
{
    const Config *cfg = c->loop->cfg;
    ClientTimeouts t = {cfg->query_timeout, cfg->idle_transaction_timeout,
                        cfg->client_idle_timeout};
    /* no [users] timeout, no lookup: the janitor visits many clients */
    const UserConf *uc = cfg->user_timeouts && c->user ? config_find_user(cfg, c->user) : NULL;
    if (uc) {
        if (uc->query_timeout != CONF_UNSET) t.query = uc->query_timeout;
        if (uc->idle_transaction_timeout != CONF_UNSET)
            t.idle_transaction = uc->idle_transaction_timeout;
        if (uc->client_idle_timeout != CONF_UNSET) t.client_idle = uc->client_idle_timeout;
    }
    return t;
}

/*
 * A queued client (for a server, or for its pool's first login): as in
 * PgBouncer, query_timeout counts the time in the queue too and is checked
 * first, then query_wait_timeout.
 */
static void client_check_queued(Client *c, usec_t now)
{
    Config *cfg = c->loop->cfg;
    usec_t age = now - c->wait_start;
    usec_t query_timeout = client_timeouts(c).query;
    if (query_timeout > 0 && age > query_timeout)
        client_close_waiting(c, "query_timeout");
    else if (cfg->query_wait_timeout > 0 && age > cfg->query_wait_timeout)
        client_close_waiting(c, "query_wait_timeout");
}

void client_check_timeouts(Client *c, usec_t now)
{
    Config *cfg = c->loop->cfg;
    switch (c->state) {
    case CLIENT_STARTUP:
    case CLIENT_AUTH:
        if (cfg->client_login_timeout > 0 && now - c->connect_time > cfg->client_login_timeout)
            client_close(c, "08P01", "client_login_timeout");
        break;
    case CLIENT_LOGIN_WAIT:
        /* waiting for the pool's first server: both limits apply, as in PgBouncer */
        if (cfg->client_login_timeout > 0 && now - c->connect_time > cfg->client_login_timeout)
            client_close_waiting(c, "client_login_timeout (server down)");
        else
            client_check_queued(c, now);
        break;
    case CLIENT_IDLE: {
        usec_t idle = client_timeouts(c).client_idle;
        if (idle > 0 && !c->admin && now - c->last_activity > idle)
            client_close(c, "57P05", "client_idle_timeout");
        break;
    }
    case CLIENT_WAITING:
        client_check_queued(c, now);
        break;
    case CLIENT_ACTIVE: {
        ClientTimeouts t = client_timeouts(c);
        if (c->expected_rfq > 0 || c->extended_open) {
            if (t.query > 0 && c->query_start && now - c->query_start > t.query) {
                if (c->server) server_cancel(c->server);
                client_close(c, "57014", "query_timeout");
            }
        } else if (c->tx_status != 'I' && t.idle_transaction > 0 &&
                   now - c->last_activity > t.idle_transaction) {
            client_close(c, "25P03", "idle transaction timeout");
        }
        break;
    }
    default:
        break;
    }
}
