/*
 * authq.c — auth_query over a few kept connections (see authq.h).
 *
 * State, all on loop 0's thread: a FIFO of lookups not started, a count of
 * running ones, and a most-recently-used-first list of idle connections.
 * With several event loops the bounds are the process's, not each loop's:
 * a lookup asked on another loop is posted to loop 0, and its answer posted
 * back to the asking loop.  A job takes an idle connection for its
 * connection string (or none: then it connects on the worker), runs the
 * query, and gives the connection back in its completion if it is still
 * healthy.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "authq.h"
#include "list.h"
#include "log.h"
#include "loop.h"
#include "loops.h"
#include "proto.h"
#include "workq.h"

typedef struct authq_conn {
    ListNode node; /* Authq.idle, most recently used first */
    char *conninfo;
    PGconn *pg;
    usec_t idle_since;
} AuthqConn;

typedef struct authq_req {
    WorkqJob job;  /* first: the request is the worker job */
    ListNode node; /* Authq.pending while not started */
    Loop *loop;    /* loop 0: whose Authq runs it */
    Loop *origin;  /* the loop of the client that asked */
    uint32_t client_id;
    authq_done_fn done;
    char *conninfo; /* contains a password: wiped */
    char *query;
    char *user;
    AuthqConn *conn; /* the connection used, owned by the job while it runs */
    AuthqResult res;
    bool connected; /* the job opened a new connection */
} AuthqReq;

typedef struct authq {
    List pending; /* AuthqReq.node, FIFO */
    List idle;    /* AuthqConn.node */
    int running;
    uint64_t lookups, errors, connects;
} Authq;

static void wipe_free(char *s)
{
    if (!s) return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

static Authq *authq_get(Loop *loop)
{
    if (!loop->authq) {
        Authq *a = calloc(1, sizeof(*a));
        if (!a) return NULL;
        list_init(&a->pending);
        list_init(&a->idle);
        loop->authq = a;
    }
    return loop->authq;
}

static void authq_conn_close(AuthqConn *c)
{
    if (c->pg) PQfinish(c->pg);
    wipe_free(c->conninfo);
    free(c);
}

static void authq_req_free(AuthqReq *r)
{
    wipe_free(r->conninfo);
    free(r->query);
    free(r->user);
    wipe_free(r->res.secret);
    if (r->conn) authq_conn_close(r->conn);
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
}

/* ---------------------------------------------------------------- worker side */

static void authq_set_error(AuthqReq *r, const char *sqlstate, const char *fmt, ...)
    PRINTF_LIKE(3, 4);
static void authq_set_error(AuthqReq *r, const char *sqlstate, const char *fmt, ...)
{
    va_list ap;
    r->res.status = AUTHQ_ERROR;
    snprintf(r->res.sqlstate, sizeof(r->res.sqlstate), "%s", sqlstate);
    va_start(ap, fmt);
    vsnprintf(r->res.message, sizeof(r->res.message), fmt, ap);
    va_end(ap);
}

/*
 * Connect with verbose errors, so a refusal by PostgreSQL keeps its SQLSTATE
 * (PQconnectdb would format the message before we could ask for that).
 * Blocking is fine: this is a worker thread; connect_timeout bounds it.
 */
static PGconn *authq_connect(AuthqReq *r)
{
    PGconn *pg = PQconnectStart(r->conninfo);
    if (!pg) return NULL;
    PQsetErrorVerbosity(pg, PQERRORS_VERBOSE);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(pg) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        struct pollfd pfd = {.fd = PQsocket(pg),
                             .events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT};
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR) break;
        st = PQconnectPoll(pg);
    }
    return pg;
}

static void authq_work(WorkqJob *j)
{
    AuthqReq *r = (AuthqReq *)j;
    if (!r->conn) {
        r->conn = calloc(1, sizeof(*r->conn));
        if (!r->conn || !(r->conn->conninfo = strdup(r->conninfo))) {
            authq_set_error(r, "53200", "out of memory");
            return;
        }
        r->conn->pg = authq_connect(r);
        r->connected = true;
    }
    PGconn *pg = r->conn->pg;
    if (!pg || PQstatus(pg) != CONNECTION_OK) {
        char sqlstate[6], msg[200];
        proto_parse_libpq_error(pg ? PQerrorMessage(pg) : "out of memory", sqlstate, msg,
                                sizeof(msg));
        authq_set_error(r, sqlstate, "auth_query connection failed: %s", msg);
        return;
    }
    const char *params[1] = {r->user};
    PGresult *res = PQexecParams(pg, r->query, 1, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
        authq_set_error(r, state && strlen(state) == 5 ? state : "08006", "auth_query failed: %s",
                        PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                            ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)
                            : PQerrorMessage(pg));
        r->res.query_failed = true;
    } else if (PQntuples(res) == 1 && PQnfields(res) >= 2 && !PQgetisnull(res, 0, 1) &&
               *PQgetvalue(res, 0, 1)) {
        r->res.secret = strdup(PQgetvalue(res, 0, 1));
        r->res.status = r->res.secret ? AUTHQ_FOUND : AUTHQ_ERROR;
        if (!r->res.secret) authq_set_error(r, "53200", "out of memory");
    } else if (PQntuples(res) == 1 && PQnfields(res) >= 2) {
        /* a role without a password: trust lets it in, a password method fails it */
        r->res.status = AUTHQ_NO_SECRET;
    } else {
        r->res.status = AUTHQ_NOT_FOUND;
    }
    /* the result holds the secret: wipe it before libpq frees it */
    if (PQresultStatus(res) == PGRES_TUPLES_OK)
        for (int i = 0; i < PQntuples(res); i++)
            for (int f = 0; f < PQnfields(res); f++)
                OPENSSL_cleanse(PQgetvalue(res, i, f), (size_t)PQgetlength(res, i, f));
    PQclear(res);
}

/* ---------------------------------------------------------------- loop side */

static void authq_start_next(Loop *loop);

/* Keep a healthy connection for the next lookup, within AUTHQ_IDLE_MAX. */
static void authq_keep(Authq *a, Loop *loop, AuthqConn *c)
{
    if (!c->pg || PQstatus(c->pg) != CONNECTION_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE) {
        authq_conn_close(c);
        return;
    }
    c->idle_since = loop_now(loop);
    list_prepend(&a->idle, &c->node);
    while (a->idle.count > AUTHQ_IDLE_MAX) {
        AuthqConn *old = list_entry(a->idle.head.prev, AuthqConn, node);
        list_remove(&a->idle, &old->node);
        authq_conn_close(old);
    }
}

static void authq_on_answer(Loop *loop, void *arg)
{
    AuthqReq *r = arg;
    r->done(loop, r->client_id, &r->res);
    authq_req_free(r);
}

/* The asking loop hears the result (and frees the request). */
static void authq_answer(AuthqReq *r)
{
    if (r->origin == r->loop) {
        authq_on_answer(r->loop, r);
        return;
    }
    /* a client waits for it: out of memory for 16 bytes passes */
    while (loop_post(r->origin, authq_on_answer, r) < 0)
        sched_yield();
}

static void authq_done(WorkqJob *j, int status)
{
    AuthqReq *r = (AuthqReq *)j;
    Loop *loop = r->loop;
    Authq *a = loop->authq;
    a->running--;
    if (r->connected) a->connects++;
    if (status != 0) authq_set_error(r, "57P01", "shutting down");
    if (r->res.status == AUTHQ_ERROR) {
        a->errors++;
        /* a failed connection or query: do not reuse what may be broken */
        if (r->conn) authq_conn_close(r->conn);
    } else if (r->conn) {
        authq_keep(a, loop, r->conn);
    }
    r->conn = NULL;
    authq_answer(r);
    if (status == 0) authq_start_next(loop);
}

/* Start queued lookups while fewer than AUTHQ_RUNNING_MAX run. */
static void authq_start_next(Loop *loop)
{
    Authq *a = loop->authq;
    while (a->running < AUTHQ_RUNNING_MAX && !list_empty(&a->pending)) {
        AuthqReq *r = list_entry(list_first(&a->pending), AuthqReq, node);
        list_remove(&a->pending, &r->node);
        /* an idle connection to the same place, most recently used first */
        ListNode *it;
        list_for_each(it, &a->idle)
        {
            AuthqConn *c = list_entry(it, AuthqConn, node);
            if (strcmp(c->conninfo, r->conninfo) == 0) {
                list_remove(&a->idle, &c->node);
                r->conn = c;
                break;
            }
        }
        a->running++;
        a->lookups++;
        if (workq_submit(loop->workq, &r->job, authq_work, authq_done) < 0) {
            a->running--;
            authq_set_error(r, "53300", "too many logins in progress, try again");
            if (r->conn) authq_keep(a, loop, r->conn);
            r->conn = NULL;
            authq_answer(r);
        }
    }
}

/* On loop 0: queue the lookup and start what the bound allows. */
static void authq_on_request(Loop *loop, void *arg)
{
    AuthqReq *r = arg;
    Authq *a = authq_get(loop);
    if (!a) {
        authq_set_error(r, "53200", "out of memory");
        authq_answer(r);
        return;
    }
    list_append(&a->pending, &r->node);
    authq_start_next(loop);
}

int authq_lookup(Loop *loop, const char *conninfo, const char *query, const char *user,
                 uint32_t client_id, authq_done_fn done)
{
    AuthqReq *r = calloc(1, sizeof(*r));
    if (!r) return -1;
    r->loop = loop->set ? loop->set->loops[0] : loop;
    r->origin = loop;
    r->client_id = client_id;
    r->done = done;
    r->conninfo = strdup(conninfo);
    r->query = strdup(query);
    r->user = strdup(user);
    if (!r->conninfo || !r->query || !r->user) {
        authq_req_free(r);
        return -1;
    }
    if (r->loop == loop) {
        if (!authq_get(loop)) {
            authq_req_free(r);
            return -1;
        }
        authq_on_request(loop, r);
    } else if (loop_post(r->loop, authq_on_request, r) < 0) {
        authq_req_free(r);
        return -1;
    }
    return 0;
}

void authq_janitor(Loop *loop, usec_t now, usec_t max_idle)
{
    Authq *a = loop->authq;
    if (!a) return;
    /* oldest at the tail */
    while (!list_empty(&a->idle)) {
        AuthqConn *c = list_entry(a->idle.head.prev, AuthqConn, node);
        if (max_idle > 0 && now - c->idle_since < max_idle) break;
        list_remove(&a->idle, &c->node);
        authq_conn_close(c);
    }
}

void authq_get_stats(Loop *loop, AuthqStats *out)
{
    Authq *a = loop->authq;
    memset(out, 0, sizeof(*out));
    if (!a) return;
    out->lookups = a->lookups;
    out->errors = a->errors;
    out->connects = a->connects;
    out->running = a->running;
    out->queued = a->pending.count;
    out->idle = a->idle.count;
}

void authq_free(Loop *loop)
{
    Authq *a = loop->authq;
    if (!a) return;
    /* the worker pool is gone: nothing runs, queued lookups belong to closed clients */
    while (!list_empty(&a->pending)) {
        AuthqReq *r = list_entry(list_first(&a->pending), AuthqReq, node);
        list_remove(&a->pending, &r->node);
        authq_req_free(r);
    }
    while (!list_empty(&a->idle)) {
        AuthqConn *c = list_entry(list_first(&a->idle), AuthqConn, node);
        list_remove(&a->idle, &c->node);
        authq_conn_close(c);
    }
    free(a);
    loop->authq = NULL;
}
