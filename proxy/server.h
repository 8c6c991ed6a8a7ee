/*
 * server.h — one backend connection.
 *
 * State machine (list in the pool after the arrow; only server_set_state()
 * changes it):
 *   SERVER_CONNECTING  libpq PQconnectPoll in progress      -> pool->connecting
 *   SERVER_INTERNAL    running a pooler query (connect_query, check, reset)
 *                                                            -> pool->connecting
 *   SERVER_IDLE        in the pool, ready                    -> pool->idle (LIFO)
 *   SERVER_ACTIVE      linked to a client, or released but held while
 *                      a cancel for its last client is sent   -> pool->active
 *   SERVER_CLOSING     closed, freed at end of loop          -> none
 *
 * libpq only connects and authenticates (passthrough.c answers an md5 or
 * SCRAM request from a stored secret when libpq has no password); after
 * CONNECTION_OK the relay reads and writes the socket itself.  The PGconn is kept for PQgetCancel
 * and closed with PQfinish (which also closes the socket).
 * Ownership: the Pool owns its servers; server_close() unlinks and defers
 * the free.
 */
#ifndef PGFUNNEL_SERVER_H
#define PGFUNNEL_SERVER_H

#include <libpq-fe.h>

#include "conn.h"
#include "hosts.h"
#include "list.h"
#include "loop.h"
#include "params.h"
#include "prepared.h"
#include "types.h"

typedef enum {
    SERVER_CONNECTING = 0,
    SERVER_INTERNAL,
    SERVER_IDLE,
    SERVER_ACTIVE,
    SERVER_CLOSING,
    SERVER_TRANSIT, /* handed to another loop, in a message (pool.c) -> no list, no loop */
} ServerState;

/* What an internal query is for, deciding what happens when it ends. */
typedef enum {
    INTERNAL_NONE = 0,
    INTERNAL_CONNECT_QUERY, /* connect_query after login */
    INTERNAL_CHECK,         /* server_check_query on an idle server */
    INTERNAL_RESET,         /* server_reset_query on release */
    INTERNAL_SETPARAMS,     /* SETs for the linked client, before its messages */
} InternalKind;

struct server {
    Conn conn;
    Loop *loop;
    Pool *pool;
    ServerState state;
    InternalKind internal;
    uint32_t id;
    ListNode pool_node;
    ListNode handover_node; /* loop->handover_queue while an offer to another loop is due */
    Client *client;         /* when ACTIVE */
    PGconn *pg;
    Host *host;     /* the host it is connected to (a reference), once logged in; or NULL */
    int connect_fd; /* fd registered for PQconnectPoll */
    /* pass-through login from a stored secret, while CONNECTING (owned; passthrough.h) */
    struct pass_exchange *pass;
    struct event ev_connect;
    bool ev_connect_set;
    uint32_t fwd_left;
    bool skip_current; /* the message being streamed is swallowed, not forwarded */
    bool internal_failed;
    char *internal_error; /* first ErrorResponse message of an internal query */
    char tx_status;
    bool dirty;       /* must not be reused (unknown state) */
    bool fatal_sent;  /* the backend's own FATAL went to the client: it is closing */
    ParamSet params;  /* reported values as the backend has them */
    ParamSet applied; /* non-reported parameters the pooler SET */
    uint64_t have_fp; /* params_have_fp() cache, valid for these generations + 1 */
    uint32_t have_gen_params, have_gen_applied;
    PsServerCache ps; /* prepared statements that exist on this backend */
    PsQueue psq;      /* requests whose answers are due (prepared-statement tracking) */
    bool ps_held;     /* decision for the message at the head of rbuf, already taken */
    int ps_held_action;
    bool ps_held_inject;
    bool ps_inject_pending;      /* local answers follow the message being streamed */
    struct cancel_job *cancels;  /* cancel requests queued or being sent for it (server_cancel) */
    struct pool_shared *transit; /* SERVER_TRANSIT: its pool's shared part (a reference) */
    bool cancel_hold; /* released, kept out of the pool until the cancels being sent end */
    uint32_t backend_pid;
    usec_t connect_start;
    usec_t created; /* login finished */
    usec_t idle_since;
    usec_t last_used;
    uint64_t link_count;
    int generation; /* Database.generation at connect: stale ones drain */
    Deferred deferred;
    char prefix[160];
};

/*
 * Start a new connection for the pool on the hosts of `pick` (hosts_pick:
 * ordered, resolved); NULL pick = the database's host as it is (none: libpq's
 * default socket).  The caller has counted it with pooldir_acquire; closing
 * it releases that.
 */
Server *server_connect(Pool *pool, const HostPick *pick) WUR;
/*
 * Hand-over between loops (pool.c): take an idle server out of its loop
 * (lists, events, counts) into SERVER_TRANSIT, and into another loop's pool
 * there.  Only idle servers with nothing buffered may move.
 */
bool server_can_move(const Server *s);
void server_detach(Server *s);
void server_attach(Server *s, Pool *pool);
/* A server in transit that its new loop cannot take: close it there. */
void server_discard(Server *s, Loop *loop, const char *why);
void server_close(Server *s, const char *fmt, ...) PRINTF_LIKE(2, 3);
void server_set_state(Server *s, ServerState st);
const char *server_state_name(ServerState st);
/* Run an internal query; its end calls back into the pool (see pool.c). */
int server_run_internal(Server *s, InternalKind kind, const char *sql) WUR;
/* Start relaying for a linked client (reading the socket). */
void server_start_relay(Server *s);
/* A linked client forwards bytes; returns 0 or -1 if the server socket failed. */
int server_send(Server *s, const void *data, size_t len) WUR;
/* Resume reading after the client drained its out-queue. */
void server_resume(Server *s);
/* Cancel the running query of this server (PQcancel on a worker). */
void server_cancel(Server *s);
/*
 * The server is being released: cancel requests not sent yet are dropped.
 * Returns true when some are being sent right now; the server is then held
 * (cancel_hold) and goes back through pool_release_server() when they end,
 * so a late cancel can never hit the next client's query.
 */
bool server_cancel_hold(Server *s);
/* Janitor: connect timeout. */
void server_check_timeouts(Server *s, usec_t now);

#endif
