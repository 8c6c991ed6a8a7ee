/*
 * client.h — one application connection: the server half of the protocol.
 *
 * State machine (the list a client is in is given after the arrow; only
 * client_set_state() changes the state and moves it):
 *
 *   CLIENT_STARTUP    reading the startup packet          -> loop->login_clients
 *   CLIENT_AUTH       authenticating (maybe on a worker)  -> loop->login_clients
 *   CLIENT_LOGIN_WAIT logged in, waiting for the pool to
 *                     learn the server's parameters        -> pool->login_wait
 *   CLIENT_IDLE       logged in, no server                 -> pool->idle_clients
 *   CLIENT_WAITING    has a query, queued for a server     -> pool->waiting (FIFO)
 *   CLIENT_ACTIVE     linked to a server                   -> pool->active_clients
 *   CLIENT_CLOSING    socket closed, freed at end of loop  -> none
 *
 * Ownership: the Loop owns every Client (loop->clients); a client is freed
 * only through client_close(), which unlinks it from its server and pool
 * and defers the free.  Cancel requests never become clients beyond
 * STARTUP.  Admin console clients have `admin` set and never get a server.
 */
#ifndef PGFUNNEL_CLIENT_H
#define PGFUNNEL_CLIENT_H

#include "conn.h"
#include "list.h"
#include "log.h"
#include "loop.h"
#include "params.h"
#include "prepared.h"
#include "types.h"

typedef enum {
    CLIENT_STARTUP = 0,
    CLIENT_AUTH,
    CLIENT_LOGIN_WAIT,
    CLIENT_IDLE,
    CLIENT_WAITING,
    CLIENT_ACTIVE,
    CLIENT_CLOSING,
} ClientState;

struct client {
    Conn conn;
    Loop *loop;
    ClientState state;
    uint32_t id; /* also the "pid" in BackendKeyData */
    uint32_t cancel_key;
    ListNode all_node;  /* loop->clients */
    ListNode pool_node; /* the pool list of its state */
    Client *id_next;    /* loop->client_ids chain */
    Pool *pool;
    Server *server; /* when ACTIVE */
    char *user;     /* from the startup packet */
    char *database;
    ParamSet params;      /* the session as the client sees it */
    PsClientMap ps;       /* its prepared statement names (transaction/statement mode) */
    bool resync;          /* sent RESET/DISCARD: restore startup values when it completes */
    char resync_name[64]; /* the one parameter RESET (SET ... TO DEFAULT); "" = all */
    bool needs_sync;      /* apply parameters to the server before the next query */
    uint64_t want_fp;     /* params_want_fp() of params, valid while want_gen == params.gen + 1 */
    uint32_t want_gen;
    bool admin;                                 /* admin console connection */
    struct client_count *db_count, *user_count; /* pooldir.h: counted after login */
    bool over_limit;         /* accepted beyond max_client_conn: refused after its startup packet */
    bool linking;            /* server is applying our parameters */
    bool extended_open;      /* extended-protocol messages sent since the last Sync */
    bool tls;                /* TLS established */
    bool tls_job;            /* a handshake step runs on a worker: it owns ssl and the fd */
    bool backlogged;         /* not read until what the pooler owes it drains (client_hold) */
    bool admin_waiting;      /* console: a command answers later (admin_wait_finished) */
    struct ssl_st *ssl;      /* client TLS session (owned; freed with the client) */
    struct auth_state *auth; /* while authenticating */
    PassCred *pass_cred;     /* what the login proved, for pass-through (owned, wiped on free) */
    struct admin_show *show; /* admin.c: a SHOW being sent in slices (owned) */
    uint32_t fwd_left;       /* bytes of the current message still to forward */
    int expected_rfq;        /* ReadyForQuery messages the server still owes */
    char tx_status;          /* last ReadyForQuery status seen: I, T, E */
    usec_t connect_time;
    usec_t query_start; /* 0 when no query is running */
    usec_t xact_start;  /* 0 outside a transaction */
    usec_t wait_start;
    usec_t last_activity;
    Deferred deferred;
};

/*
 * "C-17 user@db 10.0.0.5:4312" for log lines, built only when a line is
 * actually logged (keeping it in every client would cost 160 bytes each).
 */
void client_format_prefix(const Client *c, char *buf, size_t len);
#define client_log(c, level, ...)                                                                  \
    do {                                                                                           \
        if (log_enabled(level)) {                                                                  \
            char pfx_[192];                                                                        \
            client_format_prefix((c), pfx_, sizeof(pfx_));                                         \
            log_write((level), pfx_, __VA_ARGS__);                                                 \
        }                                                                                          \
    } while (0)

/*
 * Accepted socket -> new client in STARTUP.  Takes ownership of fd, which
 * must be non-blocking; peer is the address accept() gave (NULL: ask the
 * socket).
 */
struct sockaddr;
void client_accept(Loop *loop, int fd, bool unix_socket, const struct sockaddr *peer);

/*
 * Disconnect with an optional ErrorResponse first (sqlstate NULL = none).
 * Logs once with the reason.  The client is freed at the end of the loop
 * iteration; callers must not touch it afterwards.
 */
void client_close(Client *c, const char *sqlstate, const char *fmt, ...) PRINTF_LIKE(3, 4);

/* Pool hands a server to a WAITING client (or takes it back). */
void client_link_server(Client *c, Server *s);
/* The server finished applying parameters: forward what the client has sent. */
void client_server_ready(Client *c);
/* The server's transaction is over and it went back to the pool. */
void client_server_released(Client *c);
/* Queue an ErrorResponse to the client (best effort; the connection stays open). */
void client_send_error(Client *c, const char *severity, const char *sqlstate, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
/* The pool learned its parameters: finish login of a LOGIN_WAIT client. */
void client_finish_login(Client *c);
/* Continue processing buffered input (after a state change). */
void client_process(Client *c);

/*
 * Back-pressure for what the pooler answers itself (console output, locally
 * answered Parse/Close, errors): the relay stops reading a client whose
 * server has a backlog; likewise a client is not read while the answers it
 * has not read reach CLIENT_BACKLOG_MAX bytes, or answers due behind a
 * server's reach PS_INJECT_MAX.  Memory per client stays bounded by that
 * plus one receive buffer, however much it pipelines without reading.
 */
#define CLIENT_BACKLOG_MAX (256u * 1024)
bool client_backlogged(const Client *c);
/* Stop reading c until its backlog drains: client_on_write or client_wake resumes it. */
void client_hold(Client *c);
/* A held client's backlog may be gone: resume it from a fresh callback (safe anywhere). */
void client_wake(Client *c);

void client_set_state(Client *c, ClientState st);
const char *client_state_name(ClientState st);

/* Periodic timeout checks, run by the janitor. */
void client_check_timeouts(Client *c, usec_t now);

#endif
