/*
 * loops.h — several event loops in one process, and how they talk.
 *
 * event_loops = N runs N Loops, each an event_base on its own thread
 * (loop 0 on the main thread, which also handles signals, the HTTP port and
 * the supervisor).  A client lives on one loop for its whole life; so do
 * its buffers, timers and the servers linked to it.  Loops never touch each
 * other's objects while they run.  They talk in three ways:
 *
 *  - messages: loop_post() runs a function on another loop's thread
 *    (a locked list plus an eventfd, the pattern of the worker pool's
 *    completions).  loops_broadcast() runs one on every loop and calls back
 *    the sender when the last has run it (control commands, reloads).
 *  - atomics in the shared pool directory (pooldir.h): server counts for
 *    the limits, waiting clients for hand-over.  Read on the hot path
 *    without a lock.
 *  - a freeze: loops_freeze() stops every other loop at a barrier (inside a
 *    message, so between callbacks, with consistent state) until
 *    loops_thaw(); meanwhile the caller may read, never change, their
 *    objects.  SHOW and /metrics use it: they cost every loop a pause of
 *    one slice of output (64 kB), never a lock on the hot path.
 *
 * A client's id (its pid in BackendKeyData) carries the index of its loop
 * in the top 8 bits, so a CancelRequest that arrives on another loop is
 * posted to the right one.
 *
 * Ownership: the LoopSet is created by main.c and owns the Loops, their
 * threads and the shared worker pool; it is destroyed after every loop has
 * stopped.  Lock order: the freeze barrier, then a pool directory lock;
 * no lock is held while waiting for another loop.
 */
#ifndef PGFUNNEL_LOOPS_H
#define PGFUNNEL_LOOPS_H

#include <pthread.h>
#include <stdatomic.h>

#include "loop.h"
#include "types.h"

#define LOOPS_MAX         64 /* event_loops is at most this */
#define LOOP_ID_SHIFT     24 /* client id = loop index << 24 | per-loop counter */
#define LOOP_ID_INDEX(id) ((uint32_t)(id) >> LOOP_ID_SHIFT)
#define LOOP_ID_COUNTER   0x00ffffffu

typedef struct loop_set LoopSet;
typedef void (*loop_msg_fn)(Loop *loop, void *arg);

struct loop_set {
    int n;
    Loop **loops; /* loops[0] runs on the main thread */
    pthread_t *threads;
    bool *started; /* threads[i] runs */
    struct workq_pool *wpool;
    struct pooldir *dir;         /* pooldir.c: what pools of every loop share */
    struct auth_shared *auth;    /* auth.c: verifier cache and counters of every loop */
    struct host_registry *hosts; /* hosts.c: backend hosts of every loop; loop 0 checks them */
    atomic_int clients;          /* over every loop, for max_client_conn */
    atomic_uint next_deal;       /* round-robin of accepted sockets */
    /* the freeze barrier */
    pthread_mutex_t freezer; /* held by the loop that freezes the others */
    pthread_mutex_t fz_lock;
    pthread_cond_t fz_cond;
    int fz_frozen;
    bool fz_active;
    unsigned long long fz_gen; /* the number of the current (or last) freeze */
    /* counters (atomic): messages posted, freezes, cross-loop hand-overs */
    atomic_ullong posts, freezes, freeze_usec, handovers, cancels_routed;
};

/*
 * Create `n` loops sharing one worker pool and start loops 1..n-1 on their
 * threads (they run until loops_stop).  Returns NULL with err on failure.
 */
LoopSet *loops_create(Config *cfg, int n, char *err, size_t errlen) WUR;
/* Start the threads of loops 1..n-1 (after start-up configured them). */
int loops_start(LoopSet *s, char *err, size_t errlen) WUR;
/* Stop and join loops 1..n-1 (loop 0 has returned from its dispatch). */
void loops_join(LoopSet *s);
/* Free everything (every loop stopped). */
void loops_destroy(LoopSet *s);

/* Run fn(target, arg) on target's thread soon.  0, or -1 when out of memory. */
int loop_post(Loop *target, loop_msg_fn fn, void *arg) WUR;

/*
 * Run fn(loop, arg) on every loop (also `from`, later, not now); when the
 * last has run it, done(from, arg) runs on `from` (done may be NULL).  -1
 * when out of memory, and then nothing runs.
 */
int loops_broadcast(Loop *from, loop_msg_fn fn, void *arg, loop_msg_fn done) WUR;

/*
 * Stop every other loop at a barrier until loops_thaw; the caller may read
 * their objects meanwhile.  Call it only where this loop's own state is
 * consistent: while another loop freezes, this one is frozen by it first.
 * Free with one loop; a nested call (a reader inside a frozen section) only counts.
 */
void loops_freeze(Loop *self);
void loops_thaw(Loop *self);

/* The loop a client id belongs to (NULL when no such loop). */
Loop *loops_of_client_id(LoopSet *s, uint32_t id);
/* The loop the next accepted socket goes to (round-robin). */
Loop *loops_next(LoopSet *s);

/* CPU time the loop's thread has used, in seconds. */
double loop_cpu_seconds(const Loop *loop);

/* Process the inbox now (shutdown). */
void loop_inbox_drain(Loop *loop);

/*
 * RELOAD from any loop: loop 0 re-reads the configuration (its reload
 * callback, set by main.c) and every loop adopts it; then done(from, ...)
 * runs on `from` with 0, or -1 when the file was refused (old one kept).
 */
typedef void (*reload_done_fn)(Loop *loop, uint32_t client_id, int rc);
int loops_reload(Loop *from, uint32_t client_id, reload_done_fn done) WUR;

/* A shutdown mode for every loop (signals, SHUTDOWN): each stops when its part is done. */
void loops_begin_shutdown(Loop *from, ShutdownMode mode);

/* Hand an accepted socket to the next loop (round-robin); it becomes a client there. */
void loops_deal_client(Loop *acceptor, int fd, bool unix_socket, const struct sockaddr *peer,
                       int peer_len);

#endif
