/*
 * server.c — backend connections: libpq connect, then the server->client relay.
 *
 * Connecting: PQconnectStartParams + PQconnectPoll driven by loop events on
 * PQsocket(), re-read after every poll because libpq may switch sockets
 * (several hosts, SSL retry).  After CONNECTION_OK libpq is done: the relay
 * reads the socket itself (through libpq's SSL object when TLS is on).
 *
 * Relaying: every server message is forwarded in batches straight from the
 * receive buffer, except that ParameterStatus is read (to track the
 * session) and ReadyForQuery ends a batch, because it may end the
 * transaction and release the server.  Internal queries (connect_query,
 * check, reset, the SETs before a client's messages) use the same socket;
 * their results are swallowed and only their ReadyForQuery matters.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "auth.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "passthrough.h"
#include "loops.h"
#include "pool.h"
#include "pooldir.h"
#include "prepared.h"
#include "proto.h"
#include "server.h"
#include "stats.h"
#include "tls.h"
#include "workq.h"

/* ParameterStatus values a client is told at login, read from libpq after connecting. */
static const char *const login_params[] = {
    "server_version",        "server_encoding",
    "client_encoding",       "DateStyle",
    "IntervalStyle",         "TimeZone",
    "integer_datetimes",     "standard_conforming_strings",
    "application_name",      "is_superuser",
    "session_authorization", "default_transaction_read_only",
    "in_hot_standby",        NULL,
};

/* ParameterStatus / ErrorResponse messages larger than this are forwarded unparsed. */
#define SERVER_WHOLE_MAX (64 * 1024)

static const char *const server_state_names[] = {
    "connecting", "internal", "idle", "active", "closing", "transit",
};

const char *server_state_name(ServerState st)
{
    return (unsigned)st < sizeof(server_state_names) / sizeof(server_state_names[0])
               ? server_state_names[st]
               : "?";
}

/* The one place a server changes state and pool list. */
void server_set_state(Server *s, ServerState st)
{
    Pool *p = s->pool;
    if (list_node_linked(&s->pool_node)) {
        switch (s->state) {
        case SERVER_CONNECTING:
        case SERVER_INTERNAL:
            list_remove(&p->connecting, &s->pool_node);
            break;
        case SERVER_IDLE:
            list_remove(&p->idle, &s->pool_node);
            pool_idle_changed(p, -1);
            break;
        case SERVER_ACTIVE:
            list_remove(&p->active, &s->pool_node);
            break;
        default:
            break;
        }
    }
    s->state = st;
    switch (st) {
    case SERVER_CONNECTING:
    case SERVER_INTERNAL:
        list_append(&p->connecting, &s->pool_node);
        break;
    case SERVER_IDLE:
        s->idle_since = loop_now(s->loop);
        list_prepend(&p->idle, &s->pool_node);
        pool_idle_changed(p, 1);
        break;
    case SERVER_ACTIVE:
        list_append(&p->active, &s->pool_node);
        break;
    default:
        break;
    }
}

static void server_free(void *arg)
{
    Server *s = arg;
    ps_server_cache_free(&s->ps, s->pool->ps);
    ps_queue_clear(&s->psq, s->pool->ps);
    pool_unref(s->pool);
    params_free(&s->params);
    params_free(&s->applied);
    passthrough_free(s->pass);
    free(s->internal_error);
    free(s);
}

static void server_cancel_detach_all(Server *s);

/* ---------------------------------------------------------------- closing */

void server_close(Server *s, const char *fmt, ...)
{
    char reason[512];
    va_list ap;
    if (s->state == SERVER_CLOSING) return;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof(reason), fmt, ap);
    va_end(ap);
    log_at(LOG_LEVEL_LOG, s->prefix, "closing because: %s (age=%llds)", reason,
           (long long)(s->created ? (time_now_usec() - s->created) / USEC_PER_SEC : 0));

    Client *c = s->client;
    Pool *p = s->pool;
    s->client = NULL;
    pool_offer_cancel(s);
    pooldir_release(p->shared); /* counted by pooldir_acquire before server_connect */
    server_set_state(s, SERVER_CLOSING);
    s->loop->server_count--;
    if (s->host) {
        hosts_server_closed(s->loop, s->host);
        s->host = NULL;
    }
    if (s->ev_connect_set) {
        event_del(&s->ev_connect);
        s->ev_connect_set = false;
    }
    conn_close(&s->conn);
    server_cancel_detach_all(s);
    if (s->pg) {
        PQfinish(s->pg);
        s->pg = NULL;
    }
    loop_defer_free(s->loop, &s->deferred, server_free, s);
    if (c) {
        c->server = NULL;
        client_close(c, "08006", "server conn crashed?");
    }
    /* a slot was freed: waiting clients may get a new connection */
    pool_request_server(p, NULL);
}

/* ---------------------------------------------------------------- cancel */

/*
 * A cancel request names a backend, not a query: one that reaches
 * PostgreSQL after the client's query ended would cancel whatever the
 * server runs next, maybe another client's query.  So the server keeps its
 * cancel jobs in a list; when it is released to the pool, jobs still queued
 * are dropped (the worker skips them), and while one is being sent the
 * server is held out of the pool (cancel_hold) until it completes.  When the
 * server is closed instead, its jobs go on: nobody gets that backend again.
 *
 * The job's state is the only field both threads touch: the worker moves it
 * QUEUED -> SENDING before PQcancel, the loop QUEUED -> DROPPED; whoever
 * wins decides.  job->server is loop-thread only and is cleared when the
 * server drops the job or closes, so the completion never sees a freed
 * server; the job itself is freed only by its completion.
 */
enum { CANCEL_QUEUED, CANCEL_SENDING, CANCEL_DROPPED };

typedef struct cancel_job {
    WorkqJob job;
    PGcancel *cancel;
    Server *server;          /* NULL once detached (loop thread only) */
    struct cancel_job *next; /* Server.cancels (loop thread only) */
    atomic_int state;
    int ok;
    char err[256];
} CancelJob;

static void cancel_work(WorkqJob *j)
{
    CancelJob *cj = (CancelJob *)j;
    int expected = CANCEL_QUEUED;
    if (!atomic_compare_exchange_strong(&cj->state, &expected, CANCEL_SENDING)) return;
    /* PQcancel blocks on a new connection: this is why it runs here */
    cj->ok = PQcancel(cj->cancel, cj->err, sizeof(cj->err));
}

/* Take the job off its server's list. */
static void cancel_unlink(CancelJob *cj)
{
    Server *s = cj->server;
    if (!s) return;
    for (CancelJob **pp = &s->cancels; *pp; pp = &(*pp)->next) {
        if (*pp == cj) {
            *pp = cj->next;
            break;
        }
    }
    cj->server = NULL;
    cj->next = NULL;
}

static void cancel_done(WorkqJob *j, int status)
{
    CancelJob *cj = (CancelJob *)j;
    Server *s = cj->server;
    if (status == 0 && atomic_load(&cj->state) == CANCEL_SENDING && !cj->ok)
        log_warning("cancel request failed: %s", cj->err);
    cancel_unlink(cj);
    PQfreeCancel(cj->cancel);
    free(cj);
    if (s && s->cancel_hold && !s->cancels && s->state != SERVER_CLOSING) {
        /* the last cancel for the previous client is through: release for real */
        s->cancel_hold = false;
        conn_want_read(&s->conn, true);
        pool_release_server(s);
    }
}

void server_cancel(Server *s)
{
    if (!s->pg || s->state == SERVER_CLOSING) return;
    CancelJob *cj = calloc(1, sizeof(*cj));
    if (!cj) return;
    atomic_init(&cj->state, CANCEL_QUEUED);
    cj->cancel = PQgetCancel(s->pg);
    if (!cj->cancel || workq_submit(s->loop->workq, &cj->job, cancel_work, cancel_done) < 0) {
        log_at(LOG_LEVEL_WARNING, s->prefix, "could not queue cancel request");
        if (cj->cancel) PQfreeCancel(cj->cancel);
        free(cj);
        return;
    }
    cj->server = s;
    cj->next = s->cancels;
    s->cancels = cj;
}

bool server_cancel_hold(Server *s)
{
    CancelJob *cj = s->cancels, *next;
    for (; cj; cj = next) {
        next = cj->next;
        int expected = CANCEL_QUEUED;
        if (atomic_compare_exchange_strong(&cj->state, &expected, CANCEL_DROPPED)) {
            log_at(LOG_LEVEL_DEBUG, s->prefix, "cancel request dropped: the query is over");
            cancel_unlink(cj);
        }
    }
    if (!s->cancels) return false;
    /* nothing may come from the server now; whatever does is read once it is released */
    s->cancel_hold = true;
    conn_want_read(&s->conn, false);
    return true;
}

/*
 * The server closes: its jobs run on without it.  Queued ones are still sent:
 * the backend may be busy with the query that is being abandoned (as after
 * query_timeout), and nobody will get this backend again.
 */
static void server_cancel_detach_all(Server *s)
{
    while (s->cancels)
        cancel_unlink(s->cancels);
    s->cancel_hold = false;
}

/* ---------------------------------------------------------------- relay */

static void server_track_param(Server *s, const uint8_t *msg, uint32_t total)
{
    PktReader r;
    rd_init(&r, msg + 5, total - 5);
    const char *name = rd_str(&r);
    const char *value = rd_str(&r);
    if (r.bad) return;
    if (params_set(&s->params, name, value) < 0) s->dirty = true;
    /* a standby promoted (PostgreSQL 14+ reports it): the host's role changed */
    if (strcmp(name, "in_hot_standby") == 0)
        hosts_note_role(s->loop, s->host, strcmp(value, "on") == 0);
    Client *c = s->client;
    if (!c || params_is_startup_only(name)) return;
    if (s->internal == INTERNAL_NONE) {
        if (params_set(&c->params, name, value) < 0) s->dirty = true;
    } else if (s->internal == INTERNAL_SETPARAMS) {
        /*
         * The server may spell the client's value its own way ("ISO" becomes
         * "ISO, MDY"): adopt its spelling, or the SET would repeat on every
         * link, and tell the client, as PostgreSQL would have at login.
         */
        const char *cur = params_get(&c->params, name);
        if (!cur && strcasecmp(name, "application_name") == 0) cur = "";
        if (!cur) cur = params_get(&s->pool->welcome, name);
        if (cur && strcmp(cur, value) == 0) return;
        if (params_set(&c->params, name, value) < 0) s->dirty = true;
        if (conn_send(&c->conn, msg, total) < 0) s->dirty = true;
    }
}

/*
 * While a client's RESET / DISCARD ALL / SET ... TO DEFAULT runs, the server
 * reports its own defaults, which are not the client's: PostgreSQL's RESET
 * returns a session to its startup values (and application_name to '' for
 * a client that never set one).  Telling the client the server's value
 * would leave libpq with a wrong idea of the session: a wrong
 * standard_conforming_strings breaks its string escaping, a wrong
 * client_encoding its encoding.  The value to tell instead, or NULL when
 * the server's (*name = *value) is right; the pointers are into msg or the
 * client's parameters, valid until either changes.
 */
static const char *server_reset_value(Server *s, const uint8_t *msg, uint32_t total,
                                      const char **name, const char **value)
{
    Client *c = s->client;
    PktReader r;
    rd_init(&r, msg + 5, total - 5);
    *name = rd_str(&r);
    *value = rd_str(&r);
    if (r.bad || params_is_startup_only(*name)) return NULL;
    if (c->resync_name[0] && strcasecmp(c->resync_name, *name) != 0) return NULL;
    const char *want = params_get_startup(&c->params, *name);
    if (!want && strcasecmp(*name, "application_name") == 0) want = "";
    return want && strcmp(want, *value) != 0 ? want : NULL;
}

/*
 * Tell the client `want` for the ParameterStatus (name, value) of `total`
 * bytes at the head of the server's buffer, instead of the server's value
 * (the server itself is brought to it before the client's next query,
 * client.c needs_sync).  False when the client went.
 */
static bool server_tell_reset_value(Server *s, const char *name, const char *value,
                                    const char *want, uint32_t total)
{
    Client *c = s->client;
    PktBuf b;
    pkt_init(&b);
    pkt_param_status(&b, name, want);
    /* the server's own state stays what it says */
    if (params_set(&s->params, name, value) < 0) s->dirty = true;
    int rc = b.failed ? -1 : conn_send(&c->conn, b.data, b.len);
    pkt_free(&b);
    /* after the copy: `want` may be the client's startup string */
    if (params_set(&c->params, name, want) < 0) s->dirty = true;
    conn_consume(&s->conn, total);
    if (rc < 0) {
        client_close(c, NULL, "client write failed");
        return false;
    }
    return true;
}

/* A ReadyForQuery reached the client: maybe the transaction is over. */
static void server_after_ready(Server *s, char status)
{
    Client *c = s->client;
    usec_t now = loop_now(s->loop);
    s->tx_status = status;
    if (!c) return;
    c->tx_status = status;
    c->last_activity = now;
    if (c->expected_rfq > 0) c->expected_rfq--;
    if (c->expected_rfq > 0 || c->extended_open) return;
    if (c->resync) {
        /* RESET / DISCARD ALL done: the session's defaults are its startup values */
        c->resync = false;
        if (c->resync_name[0])
            params_restore_startup_one(&c->params, c->resync_name);
        else
            params_restore_startup(&c->params);
        c->needs_sync = true;
    }
    Pool *p = s->pool;
    if (c->query_start) {
        stats_on_query(p, now - c->query_start);
        c->query_start = 0;
    }
    if (status == 'I') {
        stats_on_xact(p, c->xact_start ? now - c->xact_start : 0);
        c->xact_start = 0;
    }
    if (p->mode == POOL_MODE_SESSION) {
        pool_fast_close(s); /* a transaction ended: maybe the end of a retired server */
        return;
    }
    if (status != 'I') {
        if (p->mode == POOL_MODE_STATEMENT)
            client_close(c, "08P01", "transaction blocks not allowed in statement pooling mode");
        return;
    }
    if (c->fwd_left || s->fwd_left || conn_avail(&s->conn) > 0) return;
    pool_release_server(s);
}

/*
 * Prepared-statement tracking decides per response message whether it is
 * forwarded or swallowed and whether local answers follow it.  The decision
 * is made once, when the message's header is first seen; if the relay must
 * stop before the message (to flush what precedes it, or to wait for the
 * rest of it) the decision is held for the next round.
 */
typedef struct ps_decision {
    bool tracked;
    int action;
    bool inject;
} PsDecision;

static PsDecision server_ps_decide(Server *s, uint8_t type, uint32_t off)
{
    PsDecision d = {false, PS_RESP_FORWARD, false};
    if (off == 0 && s->ps_held) {
        s->ps_held = false;
        d.tracked = true;
        d.action = s->ps_held_action;
        d.inject = s->ps_held_inject;
        return d;
    }
    if (s->psq.count == 0) return d;
    d.tracked = true;
    d.action = ps_server_response(s, type, &d.inject);
    return d;
}

static void server_ps_hold(Server *s, PsDecision d)
{
    if (!d.tracked) return;
    s->ps_held = true;
    s->ps_held_action = d.action;
    s->ps_held_inject = d.inject;
}

/*
 * An ErrorResponse is being forwarded: is it the backend's FATAL (or PANIC)?
 * PostgreSQL sends the severity as the first field.  A message too short in
 * the buffer to tell is taken as not fatal.
 */
static void server_note_error(Server *s, const uint8_t *msg, uint32_t avail)
{
    if (avail >= 12 && msg[5] == 'S' &&
        (memcmp(msg + 6, "FATAL", 6) == 0 || memcmp(msg + 6, "PANIC", 6) == 0))
        s->fatal_sent = true;
}

/*
 * Relay from the server to its client.  Returns false when the server or
 * client went away (the caller must not touch them).
 */
static bool server_relay(Server *s)
{
    Client *c = s->client;
    /* with prepared statements, CommandComplete tags are read (DEALLOCATE ALL) */
    bool read_tags = ps_enabled(s->pool);
    while (s->state == SERVER_ACTIVE && s->internal == INTERNAL_NONE && s->client == c) {
        uint32_t avail = conn_avail(&s->conn);
        if (avail == 0) break;
        uint8_t *p = conn_data(&s->conn);
        uint32_t off = 0;
        char ready = 0;
        uint32_t withheld = 0; /* a ReadyForQuery at the end of p[0..off) not to forward */
        bool inject_after = false;
        if (s->fwd_left) {
            off = avail < s->fwd_left ? avail : s->fwd_left;
            s->fwd_left -= off;
        } else {
            while (avail - off >= 5) {
                uint8_t type = p[off];
                uint32_t len = proto_get_u32(p + off + 1);
                uint64_t total = (uint64_t)len + 1;
                if (len < 4) {
                    server_close(s, "protocol error from server: bad length");
                    return false;
                }
                if (type == 'E') server_note_error(s, p + off, avail - off);
                PsDecision d = server_ps_decide(s, type, off);
                if (d.tracked && (d.action == PS_RESP_SWALLOW || d.inject) && off > 0) {
                    server_ps_hold(s, d); /* send what precedes it first */
                    break;
                }
                if (d.action == PS_RESP_SWALLOW) {
                    if (avail < total) {
                        server_ps_hold(s, d);
                        if (conn_reserve(&s->conn, (uint32_t)total, SERVER_WHOLE_MAX) < 0) {
                            server_close(s, "out of memory");
                            return false;
                        }
                        break;
                    }
                    /* an answer to a request the pooler made itself */
                    conn_consume(&s->conn, (uint32_t)total);
                    if (d.inject && ps_send_injected(s) < 0) {
                        client_close(c, NULL, "client write failed");
                        return false;
                    }
                    p = conn_data(&s->conn);
                    avail = conn_avail(&s->conn);
                    continue;
                }
                if ((type == 'S' || type == 'Z' || (type == 'C' && read_tags && total <= 64)) &&
                    total <= SERVER_WHOLE_MAX) {
                    if (avail - off < total) {
                        server_ps_hold(s, d);
                        if (off == 0 &&
                            conn_reserve(&s->conn, (uint32_t)total, SERVER_WHOLE_MAX) < 0) {
                            server_close(s, "out of memory");
                            return false;
                        }
                        break; /* forward what we have; wait for the rest */
                    }
                    if (type == 'S' && c->resync) {
                        /* a RESET/DISCARD: maybe not the value the client must be told */
                        const char *name, *value;
                        const char *want =
                            server_reset_value(s, p + off, (uint32_t)total, &name, &value);
                        if (want && off > 0) break; /* send what precedes it first */
                        if (want) {
                            if (!server_tell_reset_value(s, name, value, want, (uint32_t)total))
                                return false;
                            p = conn_data(&s->conn);
                            avail = conn_avail(&s->conn);
                            continue;
                        }
                    }
                    if (type == 'S')
                        server_track_param(s, p + off, (uint32_t)total);
                    else if (type == 'C')
                        ps_on_command_complete(s, p + off, (uint32_t)total);
                    off += (uint32_t)total;
                    if (type == 'Z') {
                        ready = len >= 5 ? (char)p[off - 1] : 'I';
                        /*
                         * Statement mode refuses a transaction block: the
                         * client gets the FATAL instead of this ReadyForQuery
                         * (server_after_ready), so libpq reports the statement
                         * as failed, as with PgBouncer.
                         */
                        if (ready != 'I' && s->pool->mode == POOL_MODE_STATEMENT &&
                            c->expected_rfq <= 1 && !c->extended_open)
                            withheld = (uint32_t)total;
                    }
                    if (d.inject) inject_after = true;
                    if (ready || inject_after) break;
                    continue;
                }
                if (avail - off >= total) {
                    off += (uint32_t)total;
                } else {
                    s->fwd_left = (uint32_t)(total - (avail - off));
                    off = avail;
                }
                if (d.inject) {
                    /* local answers go right after this message, once it is all sent */
                    s->ps_inject_pending = true;
                    break;
                }
                if (s->fwd_left) break;
            }
        }
        if (off == 0) break; /* an incomplete header or message */
        s->pool->stats.bytes_out += off - withheld;
        if (off > withheld && conn_send(&c->conn, p, off - withheld) < 0) {
            conn_consume(&s->conn, off);
            client_close(c, NULL, "client write failed");
            return false;
        }
        conn_consume(&s->conn, off);
        if (inject_after) s->ps_inject_pending = true;
        if (s->ps_inject_pending && s->fwd_left == 0) {
            s->ps_inject_pending = false;
            if (ps_send_injected(s) < 0) {
                client_close(c, NULL, "client write failed");
                return false;
            }
        }
        if (ready) {
            server_after_ready(s, ready);
            if (s->client != c || s->state != SERVER_ACTIVE) return s->state != SERVER_CLOSING;
        }
    }
    if (s->state == SERVER_CLOSING) return false;
    /* backpressure: the client has a backlog, stop reading the server */
    conn_want_read(&s->conn, !(s->client && conn_has_queue(&s->client->conn)));
    /* local answers were due behind this server's: the client may be read again */
    if (s->client && s->client->backlogged) client_wake(s->client);
    conn_release_buffer(&s->conn);
    return true;
}

/* Internal query: swallow results, track ParameterStatus, stop at ReadyForQuery. */
static void server_internal_finish(Server *s, bool ok)
{
    InternalKind kind = s->internal;
    s->internal = INTERNAL_NONE;
    if (kind == INTERNAL_SETPARAMS) {
        Client *c = s->client;
        if (!c) {
            pool_release_server(s);
            return;
        }
        if (!ok) {
            client_send_error(c, "ERROR", "22023", "%s",
                              s->internal_error ? s->internal_error : "could not set parameters");
            c->linking = false;
            client_close(c, "08P01", "failed to apply session parameters");
            return;
        }
        /* remember the non-reported parameters this server now carries */
        for (int i = 0; i < c->params.n; i++) {
            const char *n = c->params.v[i].name;
            if (params_is_reported_tracked(n) || params_is_startup_only(n)) continue;
            if (params_set(&s->applied, n, c->params.v[i].value) < 0) s->dirty = true;
        }
        for (int i = s->applied.n - 1; i >= 0; i--)
            if (!params_get(&c->params, s->applied.v[i].name))
                params_unset(&s->applied, s->applied.v[i].name);
        client_server_ready(c);
        return;
    }
    if (kind == INTERNAL_RESET) {
        /* DISCARD ALL / RESET ALL also drop what the pooler applied */
        params_free(&s->applied); /* leaves an empty set, generation bumped */
        const char *q = s->loop->cfg->server_reset_query;
        if (q && (strcasestr(q, "discard all") || strcasestr(q, "deallocate all")))
            ps_server_forget_all(s);
    }
    pool_internal_done(s, kind, ok);
}

static void server_process_internal(Server *s)
{
    while (s->internal != INTERNAL_NONE && s->state != SERVER_CLOSING) {
        uint32_t avail = conn_avail(&s->conn);
        uint8_t *p = conn_data(&s->conn);
        if (s->fwd_left) {
            uint32_t n = avail < s->fwd_left ? avail : s->fwd_left;
            if (n == 0) break;
            s->fwd_left -= n;
            conn_consume(&s->conn, n);
            continue;
        }
        if (avail < 5) break;
        uint8_t type = p[0];
        uint32_t len = proto_get_u32(p + 1);
        uint64_t total = (uint64_t)len + 1;
        if (len < 4) {
            server_close(s, "protocol error from server: bad length");
            return;
        }
        bool whole = (type == 'S' || type == 'Z' || type == 'E') && total <= SERVER_WHOLE_MAX;
        if (!whole) {
            uint32_t n = avail < total ? avail : (uint32_t)total;
            s->fwd_left = (uint32_t)(total - n);
            conn_consume(&s->conn, n);
            continue;
        }
        if (avail < total) {
            if (conn_reserve(&s->conn, (uint32_t)total, SERVER_WHOLE_MAX) < 0)
                server_close(s, "out of memory");
            break;
        }
        if (type == 'S') {
            server_track_param(s, p, (uint32_t)total);
        } else if (type == 'E') {
            ErrorFields ef;
            proto_parse_error(p + 5, len - 4, &ef);
            if (!s->internal_failed) {
                free(s->internal_error);
                s->internal_error = strdup(ef.message ? ef.message : "error");
            }
            s->internal_failed = true;
            log_at(LOG_LEVEL_WARNING, s->prefix, "internal query failed: %s %s",
                   ef.sqlstate ? ef.sqlstate : "", ef.message ? ef.message : "");
            if (ef.severity &&
                (strcmp(ef.severity, "FATAL") == 0 || strcmp(ef.severity, "PANIC") == 0))
                s->dirty = true;
        } else { /* 'Z' */
            s->tx_status = len >= 5 ? (char)p[5] : 'I';
            conn_consume(&s->conn, (uint32_t)total);
            bool ok = !s->internal_failed && s->tx_status == 'I';
            server_internal_finish(s, ok);
            return;
        }
        conn_consume(&s->conn, (uint32_t)total);
    }
    if (s->state != SERVER_CLOSING) conn_release_buffer(&s->conn);
}

/* An idle server spoke: ParameterStatus and notices are fine, anything else ends it. */
static void server_process_idle(Server *s)
{
    while (s->state == SERVER_IDLE) {
        uint32_t avail = conn_avail(&s->conn);
        if (avail < 5) break;
        uint8_t *p = conn_data(&s->conn);
        uint32_t len = proto_get_u32(p + 1);
        uint64_t total = (uint64_t)len + 1;
        if (len < 4 || total > SERVER_WHOLE_MAX) {
            server_close(s, "unexpected data from idle server");
            return;
        }
        if (avail < total) {
            if (conn_reserve(&s->conn, (uint32_t)total, SERVER_WHOLE_MAX) < 0)
                server_close(s, "out of memory");
            return;
        }
        if (p[0] == 'S') {
            server_track_param(s, p, (uint32_t)total);
            conn_consume(&s->conn, (uint32_t)total);
            /* an idle server is between transactions: one that lost its role goes now */
            if (!pool_server_fits(s)) {
                server_close(s, "server no longer matches target_session_attrs=%s",
                             config_tsa_name(s->pool->db->hosts.tsa));
                return;
            }
            continue;
        } else if (p[0] == 'E') {
            ErrorFields ef;
            proto_parse_error(p + 5, len - 4, &ef);
            server_close(s, "server sent %s %s: %s", ef.severity ? ef.severity : "error",
                         ef.sqlstate ? ef.sqlstate : "", ef.message ? ef.message : "");
            return;
        } else if (p[0] != 'N' && p[0] != 'A') {
            server_close(s, "unexpected message '%c' from idle server", p[0]);
            return;
        }
        conn_consume(&s->conn, (uint32_t)total);
    }
    if (s->state != SERVER_CLOSING) conn_release_buffer(&s->conn);
}

static void server_process(Server *s)
{
    do {
        if (s->state == SERVER_CLOSING) return;
        if (s->internal != INTERNAL_NONE)
            server_process_internal(s);
        else if (s->state == SERVER_ACTIVE && s->client) {
            if (!server_relay(s)) return;
        } else if (s->state == SERVER_IDLE)
            server_process_idle(s);
        else
            break;
        /* TLS may hold decrypted bytes the socket will not signal again */
    } while (s->state != SERVER_CLOSING && conn_avail(&s->conn) == 0 &&
             tls_conn_pending(&s->conn) && s->conn.reading && conn_fill(&s->conn) > 0);
}

static void server_on_read(evutil_socket_t fd, short ev, void *arg)
{
    Server *s = arg;
    (void)fd;
    (void)ev;
    loop_update_now(s->loop);
    int n = conn_fill(&s->conn);
    if (n == 0 || n == -1) {
        Client *c = s->client;
        hosts_suspect(s->loop, s->host); /* the host may be gone: check it now */
        if (c && s->state == SERVER_ACTIVE && conn_avail(&s->conn) == 0) {
            s->client = NULL;
            c->server = NULL;
            server_close(s, "server closed the connection");
            /*
             * After the backend's own FATAL (e.g. 57P01 after pg_terminate_backend)
             * the client has its reason, exactly as PostgreSQL sent it: nothing of
             * ours follows.  Otherwise the server vanished without a word.
             */
            if (s->fatal_sent)
                client_close(c, NULL, "server closed the connection after its FATAL error");
            else
                client_close(c, "08006", "server conn crashed?");
            return;
        }
        server_close(s, n == 0 ? "server closed the connection" : "server read error");
        return;
    }
    server_process(s);
}

static void server_on_write(evutil_socket_t fd, short ev, void *arg)
{
    Server *s = arg;
    (void)fd;
    (void)ev;
    loop_update_now(s->loop);
    int r = conn_flush(&s->conn);
    if (r < 0) {
        server_close(s, "write to server failed");
        return;
    }
    if (r == 0 && s->client && s->state == SERVER_ACTIVE && !s->client->linking) {
        conn_want_read(&s->client->conn, true);
        client_process(s->client);
    }
}

int server_send(Server *s, const void *data, size_t len)
{
    return conn_send(&s->conn, data, len);
}

void server_resume(Server *s)
{
    if (s->state == SERVER_CLOSING) return;
    conn_want_read(&s->conn, true);
    server_process(s);
}

/* ---------------------------------------------------------------- hand-over */

bool server_can_move(const Server *s)
{
    return s->state == SERVER_IDLE && !s->client && !s->dirty && s->internal == INTERNAL_NONE &&
           !s->cancels && !s->cancel_hold && s->fwd_left == 0 && s->psq.count == 0 &&
           conn_avail(&s->conn) == 0 && !conn_has_queue(&s->conn) && !tls_conn_pending(&s->conn);
}

void server_detach(Server *s)
{
    Pool *p = s->pool;
    server_set_state(s, SERVER_TRANSIT);
    conn_detach(&s->conn);
    s->transit = p->shared;
    pooldir_ref(s->transit); /* the pool's shared part outlives the trip */
    s->loop->server_count--;
    pool_unref(p);
    s->pool = NULL;
    s->loop = NULL;
    s->conn.loop = NULL;
}

void server_attach(Server *s, Pool *p)
{
    s->loop = p->loop;
    s->pool = p;
    pool_ref(p);
    s->conn.loop = p->loop;
    conn_set_callbacks(&s->conn, server_on_read, server_on_write, s);
    conn_want_read(&s->conn, true);
    p->loop->server_count++;
    pooldir_put(p->loop->set->dir, s->transit);
    s->transit = NULL;
}

void server_discard(Server *s, Loop *loop, const char *why)
{
    PoolShared *ps = s->transit;
    log_at(LOG_LEVEL_WARNING, s->prefix, "closing because: %s", why);
    ps_server_cache_free(&s->ps, &ps->ps);
    ps_queue_clear(&s->psq, &ps->ps);
    pooldir_release(ps);
    if (s->pg) PQfinish(s->pg); /* closes the socket, which libpq owns */
    params_free(&s->params);
    params_free(&s->applied);
    passthrough_free(s->pass);
    free(s->internal_error);
    free(s);
    pooldir_put(loop->set->dir, ps);
}

void server_start_relay(Server *s)
{
    conn_want_read(&s->conn, true);
    if (conn_avail(&s->conn) > 0) server_process(s);
}

int server_run_internal(Server *s, InternalKind kind, const char *sql)
{
    PktBuf b;
    pkt_init(&b);
    pkt_query(&b, sql);
    s->internal = kind;
    s->internal_failed = false;
    free(s->internal_error);
    s->internal_error = NULL;
    if (kind != INTERNAL_SETPARAMS) server_set_state(s, SERVER_INTERNAL);
    int r = b.failed ? -1 : server_send(s, b.data, b.len);
    pkt_free(&b);
    conn_want_read(&s->conn, true);
    return r;
}

/* ---------------------------------------------------------------- connecting */

/*
 * The login cannot succeed: tell the pool, then close.  final: PostgreSQL
 * itself refused (wrong password, no such database, no pg_hba.conf entry),
 * so the clients waiting for this login get the error at once; otherwise
 * (refused connection, timeout, TLS, 57P03 "not yet") they stay queued for
 * the retry after server_login_retry, as in PgBouncer.
 */
static void server_login_refused(Server *s, const char *sqlstate, const char *msg, bool final)
{
    Pool *p = s->pool;
    s->loop->stats.servers_failed++;
    log_at(LOG_LEVEL_WARNING, s->prefix, "login failed: %s %s", sqlstate, msg);
    /* a host may have gone: sticky picks move on, and the hosts are checked now */
    if (!final) hosts_list_failed(s->loop, &p->db->hosts);
    /* first the failure (so closing does not retry at once), then the close */
    pool_server_login_failed(p, sqlstate, msg, final);
    server_close(s, "login failed");
}

static void server_login_failed(Server *s, const char *text)
{
    char sqlstate[6], msg[512];
    /*
     * Class 57 (operator intervention: 57P03 starting up or shutting down,
     * 57P01/57P02 a backend ended by a shutdown or a crash, as when a primary
     * is stopped for a failover while a login is under way) says "not now",
     * not "never": the clients stay queued.
     */
    bool final = proto_parse_libpq_error(text, sqlstate, msg, sizeof(msg)) &&
                 strncmp(sqlstate, "57", 2) != 0;
    if (strstr(text, "no password supplied")) {
        final = true;
        /*
         * Nothing to log in with: no plaintext password for libpq and no
         * stored secret for pass-through (or the server asked for a
         * cleartext password, which a hash cannot give).  Not 28P01: the
         * client's own password was fine, this is configuration.
         */
        strcpy(sqlstate, "28000");
        snprintf(msg, sizeof(msg),
                 "the server requires a password for user \"%s\" and pgfunnel has none it can "
                 "use: set password= in the [databases] entry, or put the plaintext password or "
                 "its md5/SCRAM secret in auth_file (with auth_query, secrets are learned when "
                 "a client logs in; a cleartext password request needs the plaintext)",
                 s->pool->username);
    }
    server_login_refused(s, sqlstate, msg, final);
}

static void server_login_done(Server *s)
{
    int fd = PQsocket(s->pg);
    if (s->ev_connect_set) {
        event_del(&s->ev_connect);
        s->ev_connect_set = false;
    }
    const char *pass_method = passthrough_method(s->pass);
    passthrough_free(s->pass); /* its secrets are not needed any more */
    s->pass = NULL;
    s->backend_pid = (uint32_t)PQbackendPID(s->pg);
    s->created = s->last_used = time_now_usec();
    snprintf(s->prefix, sizeof(s->prefix), "S-%u %s@%s pid=%u", s->id, s->pool->username,
             s->pool->db->name, s->backend_pid);
    for (int i = 0; login_params[i]; i++) {
        const char *v = PQparameterStatus(s->pg, login_params[i]);
        if (v && params_set(&s->params, login_params[i], v) < 0) {
            server_close(s, "out of memory");
            return;
        }
    }
    s->host = hosts_list_find(&s->pool->db->hosts, PQhost(s->pg), PQport(s->pg));
    if (s->host) {
        hosts_server_opened(s->loop, s->host);
        const char *hs = PQparameterStatus(s->pg, "in_hot_standby");
        if (hs) hosts_note_role(s->loop, s->host, strcmp(hs, "on") == 0);
    }
    conn_init(&s->conn, s->loop, fd);
    s->conn.keep_fd = true;
    snprintf(s->conn.addr, sizeof(s->conn.addr), "%s:%s", PQhost(s->pg) ? PQhost(s->pg) : "?",
             PQport(s->pg) ? PQport(s->pg) : "?");
    if (PQsslInUse(s->pg)) {
        /* libpq did the handshake; the relay continues on its SSL object */
        SSL *ssl = PQsslStruct(s->pg, "OpenSSL");
        if (!ssl) {
            server_close(s, "server TLS session not available");
            return;
        }
        tls_conn_attach(&s->conn, ssl);
    }
    conn_set_callbacks(&s->conn, server_on_read, server_on_write, s);
    conn_want_read(&s->conn, true);
    s->tx_status = 'I';
    s->loop->stats.servers_opened++;
    log_at(LOG_LEVEL_DEBUG, s->prefix, "new server connection%s%s",
           pass_method ? ", pass-through " : "", pass_method ? pass_method : "");
    Database *db = s->pool->db;
    if (db->connect_query && *db->connect_query) {
        if (server_run_internal(s, INTERNAL_CONNECT_QUERY, db->connect_query) < 0)
            server_close(s, "could not send connect_query");
        return;
    }
    pool_server_login_ok(s);
}

static void server_on_connect_event(evutil_socket_t fd, short ev, void *arg);

static void server_wait_connect(Server *s, short what)
{
    int fd = PQsocket(s->pg);
    if (s->ev_connect_set) event_del(&s->ev_connect);
    s->connect_fd = fd;
    event_assign(&s->ev_connect, s->loop->base, fd, what, server_on_connect_event, s);
    event_add(&s->ev_connect, NULL);
    s->ev_connect_set = true;
}

/*
 * One connect step.  With pass-through, the password exchange that libpq
 * cannot do runs between two PQconnectPoll calls (see passthrough.c): right
 * after libpq sent a startup packet, and until the exchange hands back.
 */
static void server_poll(Server *s)
{
    for (;;) {
        if (s->pass) {
            char sqlstate[6], msg[512];
            switch (passthrough_poll(s->pass, s->pg, sqlstate, msg, sizeof(msg))) {
            case PASS_WAIT_READ:
                server_wait_connect(s, EV_READ);
                return;
            case PASS_WAIT_WRITE:
                server_wait_connect(s, EV_WRITE);
                return;
            case PASS_FAILED:
                server_login_refused(s, sqlstate, msg, true);
                return;
            case PASS_LIBPQ:
                break;
            }
        }
        switch (PQconnectPoll(s->pg)) {
        case PGRES_POLLING_READING:
            if (s->pass && passthrough_startup_sent(s->pass, s->pg))
                continue; /* the server's answer is ours to look at first */
            server_wait_connect(s, EV_READ);
            return;
        case PGRES_POLLING_WRITING:
            server_wait_connect(s, EV_WRITE);
            return;
        case PGRES_POLLING_OK:
            server_login_done(s);
            return;
        default:
            server_login_failed(s, PQerrorMessage(s->pg));
            return;
        }
    }
}

static void server_on_connect_event(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    Server *s = arg;
    loop_update_now(s->loop);
    s->ev_connect_set = false; /* not persistent: it fired */
    server_poll(s);
}

static const char *sslmode_for_libpq(int mode)
{
    switch (mode) {
    case SSLMODE_DISABLE:
        return "disable";
    case SSLMODE_ALLOW:
        return "allow";
    case SSLMODE_PREFER:
        return "prefer";
    case SSLMODE_REQUIRE:
        return "require";
    case SSLMODE_VERIFY_CA:
        return "verify-ca";
    default:
        return "verify-full";
    }
}

/* Append a libpq keyword/value pair when the value is set. */
static int server_kv(const char **kw, const char **val, int n, const char *k, const char *v)
{
    if (!v || !*v) return n;
    kw[n] = k;
    val[n] = v;
    return n + 1;
}

Server *server_connect(Pool *pool, const HostPick *pick)
{
    Database *db = pool->db;
    Server *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->loop = pool->loop;
    s->pool = pool;
    pool_ref(pool);
    s->id = ++s->loop->next_server_id;
    list_node_init(&s->pool_node);
    list_node_init(&s->handover_node);
    params_init(&s->params);
    params_init(&s->applied);
    s->connect_start = time_now_usec();
    /* no socket of ours until login: closing must not touch fd 0 of a zeroed Conn */
    s->conn.fd = -1;
    s->conn.closed = true;
    s->generation = pool_generation(pool);
    snprintf(s->prefix, sizeof(s->prefix), "S-%u %s@%s", s->id, pool->username, db->name);

    Config *cfg = s->loop->cfg;
    const char *kw[24], *val[24];
    char port[16], options[512];
    int n = 0;
#define KV(k, v) n = server_kv(kw, val, n, (k), (v))
    KV("host", pick ? pick->host : db->host);
    KV("hostaddr", pick ? pick->hostaddr : NULL);
    snprintf(port, sizeof(port), "%d", db->port ? db->port : 5432);
    KV("port", pick ? pick->port : port);
    /* libpq checks the role of each host it tries (all six values since libpq 14) */
    if (db->hosts.tsa != TSA_ANY) KV("target_session_attrs", config_tsa_name(db->hosts.tsa));
    KV("dbname", db->dbname ? db->dbname : db->name);
    KV("user", pool->username);
    /* a forced user's password, else a plaintext secret from auth_file or auth_query */
    const char *password =
        db->password ? db->password : auth_backend_password(s->loop, pool->username);
    /* a copy: the shared credential may change on another loop meanwhile */
    PassCred *kept = password ? NULL : pooldir_cred_copy(pool->shared);
    if (!password) password = passthrough_password(kept);
    KV("password", password);
    /* without one, a stored md5/SCRAM secret may answer the server (pass-through) */
    if (!password || !*password) s->pass = passthrough_new(pool, kept);
    KV("client_encoding", db->client_encoding);
    KV("application_name", db->application_name);
    KV("fallback_application_name", "pgfunnel");
    options[0] = 0;
    if (db->datestyle || db->timezone) {
        size_t o = 0;
        if (db->datestyle)
            o += (size_t)snprintf(options + o, sizeof(options) - o, "-c datestyle=%s ",
                                  db->datestyle);
        if (db->timezone && o < sizeof(options))
            snprintf(options + o, sizeof(options) - o, "-c timezone=%s", db->timezone);
        /* libpq splits options at spaces; escape the ones inside values */
        KV("options", options);
    }
    KV("sslmode", sslmode_for_libpq(cfg->server_tls_sslmode));
    KV("sslrootcert", cfg->server_tls_ca_file);
    KV("sslcert", cfg->server_tls_cert_file);
    KV("sslkey", cfg->server_tls_key_file);
    kw[n] = val[n] = NULL;
#undef KV

    s->pg = PQconnectStartParams(kw, val, 0); /* copies the values */
    passthrough_cred_free(kept);
    s->loop->server_count++;
    server_set_state(s, SERVER_CONNECTING);
    if (!s->pg) {
        server_login_failed(s, "out of memory");
        return NULL;
    }
    PQsetErrorVerbosity(s->pg, PQERRORS_VERBOSE);
    if (PQstatus(s->pg) == CONNECTION_BAD) {
        server_login_failed(s, PQerrorMessage(s->pg));
        return NULL;
    }
    /* libpq's first step is to wait for the socket to become writable */
    server_wait_connect(s, EV_WRITE);
    return s;
}

void server_check_timeouts(Server *s, usec_t now)
{
    Config *cfg = s->loop->cfg;
    if (s->state == SERVER_CONNECTING && cfg->server_connect_timeout > 0 &&
        now - s->connect_start > cfg->server_connect_timeout) {
        server_login_failed(s, "server_connect_timeout: the server did not answer in time");
    }
}
