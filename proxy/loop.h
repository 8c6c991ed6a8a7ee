/*
 * loop.h — the event-loop context: owns every client, server, pool and
 * counter of one libevent loop.
 *
 * Nothing here is global: every function takes the Loop, so a later step
 * can run several loops side by side.  Objects are freed on a deferred list
 * at the end of a loop iteration (loop_defer_free), because libevent may
 * still be in the middle of a callback chain that references them.
 */
#ifndef PGFUNNEL_LOOP_H
#define PGFUNNEL_LOOP_H

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <event2/event.h>

#include "hmap.h"
#include "list.h"
#include "types.h"
#include "workq.h"

/* How the process is shutting down, PgBouncer 1.26 signal meanings. */
typedef enum {
    SHUTDOWN_NONE = 0,
    SHUTDOWN_WAIT_SERVERS, /* SIGINT: stop accepting, wait for servers to be released */
    SHUTDOWN_WAIT_CLIENTS, /* SIGTERM: stop accepting, wait for clients to leave */
    SHUTDOWN_IMMEDIATE,    /* SIGQUIT */
} ShutdownMode;

typedef struct deferred {
    void (*fn)(void *obj);
    void *obj;
    struct deferred *next;
} Deferred;

/* Hash table of clients by id (the pid we hand out in BackendKeyData). */
typedef struct client_table {
    Client **slots;
    uint32_t mask;
    uint32_t count;
} ClientTable;

typedef struct loop_stats {
    uint64_t clients_accepted;
    uint64_t clients_rejected; /* max_client_conn, bad startup */
    uint64_t servers_opened;
    uint64_t servers_failed;
    uint64_t accept_errors;
    uint64_t tls_handshakes;
    uint64_t tls_handshake_failures;
    /* loop health: how late the 100 ms tick fires (usec) */
    uint64_t lag_samples;
    usec_t lag_max;
    usec_t lag_hist[32]; /* log2 buckets of lag in usec */
    usec_t longest_callback;
} LoopStats;

struct loop {
    struct event_base *base;
    struct loop_set *set; /* loops.h: every loop of the process */
    int index;            /* in set->loops; the top bits of its client ids */
    /* inbox: messages from other loops (loops.c) */
    pthread_mutex_t inbox_lock;
    struct loop_msg *inbox_head, *inbox_tail;
    int inbox_efd;
    struct event *ev_inbox;
    Config *cfg;               /* current configuration; replaced whole on reload */
    struct auth_context *auth; /* auth.c: userlist, hba, caches; replaced on reload */
    struct authq *authq;       /* authq.c: auth_query connections and queue (NULL until used) */
    struct tls_context *tls;   /* tls.c: client TLS context (NULL = no TLS); replaced on reload */
    Workq *workq;              /* this loop's port of the shared worker pool */
    List listeners;            /* Listener.node */
    List clients;              /* every Client, login or not (Client.all_node) */
    List login_clients;        /* clients in STARTUP/AUTH (Client.pool_node): login timeouts */
    uint32_t *janitor_ids;     /* scratch array of the janitor, reused */
    int janitor_cap;
    List databases;  /* Database.node */
    List users;      /* PoolUser.node */
    Hmap db_index;   /* Database by name */
    Hmap user_index; /* PoolUser by name */
    ClientTable client_ids;
    uint32_t next_client_id;
    uint32_t next_server_id;
    /* this loop's (max_client_conn counts set->clients); atomic because
     * loop 0 sums them for the supervisor's STATUS without a freeze */
    atomic_int client_count;
    atomic_int server_count;
    /* standard-size receive buffers not in use */
    void *buf_free;
    int buf_free_count;
    int buf_in_use;
    uint32_t buf_size;
    /* deferred frees, run by ev_reap */
    Deferred *deferred;
    struct event *ev_reap;
    struct event *ev_janitor;
    /* pool.c: idle servers to offer to other loops once the current callbacks are done */
    List handover_queue;       /* Server.handover_node */
    struct event *ev_handover; /* created on first use */
    struct event *ev_tick;
    struct event *ev_accept_resume; /* listener.c: accept back-off timer */
    usec_t tick_expected;
    ShutdownMode shutdown;
    bool paused_accept; /* accept backs off after EMFILE */
    LoopStats stats;
    usec_t started_at;
    /* backend hosts and peer instances, each owned by its module (NULL until used) */
    struct host_registry *hosts; /* hosts.c: health and role of backend hosts */
    struct peers_state *peers;   /* peers.c: cancel requests being forwarded */

    /* admin side, each owned by its module (NULL when not started) */
    struct stats_state *stats_state; /* stats.c: stats_period timer */
    struct pool_control *control;    /* pool_control.c: PAUSE/WAIT_CLOSE waiters */
    struct http_server *http;        /* http.c: admin_http_port */

    /* operations side (NULL when not in use) */
    struct notify_state *notify;      /* notify.c: watchdog and STATUS timer (a supervisor) */
    struct handover_server *handover; /* handover.c: the control socket for --takeover */
    /*
     * Loop 0: RELOAD from any console runs the SIGHUP path (set by main.c).
     * 0 when every loop is adopting the new configuration (finished() runs
     * when they have), -1 when it was refused (finished() does not run).
     */
    int (*reload)(Loop *loop, void *arg, void (*finished)(Loop *loop, void *ctx, int rc),
                  void *ctx);
    void *reload_arg;
    atomic_bool shutdown_ready;   /* its part of a shutdown is done (loop 0 waits for all) */
    unsigned long long fz_joined; /* loops.c: the last freeze this loop joined */
    int fz_nest;                  /* loops.c: loops_freeze calls of this loop not yet thawed */
    bool fz_live;                 /* loops.c, under fz_lock: it turns and will join a freeze */
    clockid_t cpu_clock;          /* its thread's CPU clock (SHOW LOOPS) */
    bool have_cpu_clock;
    usec_t now; /* time at the start of the current callback (loop_update_now) */
    /* random numbers for cancel keys, drawn from OpenSSL in batches (loop_random_u32) */
    uint32_t rand_pool[64];
    int rand_left;
};

/*
 * The hot path reads the clock once per callback: event callbacks call
 * loop_update_now() on entry and everything below uses loop_now().
 * (time_now_usec() is declared in workq.h.)
 */
static inline usec_t loop_update_now(Loop *loop)
{
    return loop->now = time_now_usec();
}
static inline usec_t loop_now(const Loop *loop)
{
    return loop->now;
}

/*
 * A loop of `set` (loops.c creates them), with its port of the set's worker
 * pool.  loop_destroy after loop_close_all_clients on every loop and
 * workq_pool_stop (loops_destroy does that).
 */
Loop *loop_create(Config *cfg, struct loop_set *set, int index) WUR;
void loop_close_all_clients(Loop *loop);
void loop_destroy(Loop *loop);
/* loops.c: the inbox's eventfd and event; drained and freed by loop_inbox_free */
int loop_inbox_init(Loop *loop) WUR;
void loop_inbox_free(Loop *loop);

/* Receive buffers of cfg->pkt_buf bytes from a free list. */
uint8_t *loop_buffer_get(Loop *loop, uint32_t *size);
void loop_buffer_put(Loop *loop, uint8_t *buf, uint32_t size);

/* Run d->fn(d->obj) after the current callbacks; d is embedded in the object. */
void loop_defer_free(Loop *loop, Deferred *d, void (*fn)(void *), void *obj);

/* Run the deferred frees now (shutdown, before pools go). */
void loop_run_deferred(Loop *loop);

/*
 * A random 32-bit number from a CSPRNG (cancel keys).  OpenSSL is asked for
 * 64 at a time: one RAND_bytes per login costs more than the rest of a
 * trust login's bookkeeping.
 */
uint32_t loop_random_u32(Loop *loop);

/* Client lookup by id for cancel requests and worker completions. */
int loop_client_register(Loop *loop, Client *c) WUR;
void loop_client_unregister(Loop *loop, Client *c);
Client *loop_client_find(Loop *loop, uint32_t id);

/* Begin a shutdown; the janitor finishes it when its condition holds. */
void loop_begin_shutdown(Loop *loop, ShutdownMode mode);

#endif
