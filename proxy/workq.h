/*
 * workq.h — the worker thread pool.
 *
 * Runs whatever would stall the event loop (password hashing, TLS handshake
 * steps, PQcancel, DNS, ...).  A job is a caller-allocated struct that embeds
 * a WorkqJob as its first member and carries plain data in and out: the
 * worker never touches libevent or connection objects, and the loop never
 * touches the job while it is queued or running.
 *
 * Life of a job:
 *   workq_submit()  (loop thread) -> queued -> work() on a worker thread
 *   -> appended to the done list -> one wake-up of the loop per batch
 *   -> done() on the loop thread, exactly once.
 * At workq_destroy() queued jobs that never ran get done() with
 * status -ECANCELED, so a completion always runs exactly once and the
 * submitter can always free its job there.
 *
 * Lock order: a single mutex protects both the queue and the done list.
 */
#ifndef PGFUNNEL_WORKQ_H
#define PGFUNNEL_WORKQ_H

#include "types.h"

struct event_base;
typedef struct workq_job WorkqJob;
typedef struct workq_pool WorkqPool;

typedef void (*workq_work_fn)(WorkqJob *job);             /* worker thread */
typedef void (*workq_done_fn)(WorkqJob *job, int status); /* loop thread; 0 or -ECANCELED */

struct workq_job {
    workq_work_fn work;
    workq_done_fn done;
    usec_t queued_at;  /* set by workq_submit, for wait-time statistics */
    usec_t started_at; /* set when a worker picks the job up (0 if it never ran) */
    Workq *port;       /* private to workq: the port it was submitted through */
    WorkqJob *next;    /* private to workq */
};

typedef struct workq_stats {
    int threads;
    int queue_depth; /* jobs waiting for a thread now */
    int queue_max;   /* bound given at create */
    uint64_t submitted;
    uint64_t completed;
    uint64_t rejected;        /* submit refused: queue full */
    uint64_t wait_usec_total; /* sum over completed jobs of (start - queued) */
    uint64_t wait_usec_max;
    /* additions: submitted == completed + cancelled + queue_depth + running */
    int running;        /* jobs inside work() now */
    uint64_t cancelled; /* queued jobs completed with -ECANCELED at destroy */
    uint64_t wakeups;   /* loop wake-ups (eventfd writes), one per batch */
} WorkqStats;

/*
 * One pool of threads serves every event loop: each loop has its own port
 * (a Workq: its done list and the eventfd that wakes it), and a job's
 * completion runs on the loop whose port it was submitted through.
 *
 * workq_pool_create starts `threads` workers; max_queue bounds the jobs
 * waiting for a thread.  workq_port_create gives `base`'s loop a port.
 * Teardown: workq_pool_stop (joins the workers; jobs that never ran are
 * handed to their ports), then workq_port_destroy for every port (runs the
 * remaining completions: finished ones with 0, cancelled ones with
 * -ECANCELED) with its loop stopped, then workq_pool_free.
 */
WorkqPool *workq_pool_create(int threads, int max_queue) WUR;
Workq *workq_port_create(WorkqPool *pool, struct event_base *base) WUR;
void workq_pool_stop(WorkqPool *pool);
void workq_port_destroy(Workq *port);
void workq_pool_free(WorkqPool *pool);
WorkqPool *workq_get_pool(Workq *port);

/*
 * A pool with one port on `base`, destroyed together by workq_destroy
 * (single-loop programs and tests).  Returns NULL on failure.
 */
Workq *workq_create(struct event_base *base, int threads, int max_queue) WUR;

/*
 * Queue a job.  0, or -EAGAIN when the queue is full, -ESHUTDOWN after
 * shutdown began.  Never sleeps beyond the pool's mutex.  Shutdown begins in
 * workq_destroy(), so the only caller that can see -ESHUTDOWN is a done()
 * callback run by workq_destroy() that tries to resubmit.
 */
int workq_submit(Workq *wq, WorkqJob *job, workq_work_fn work, workq_done_fn done) WUR;

/*
 * Stop the pool: running jobs finish and complete normally; queued jobs get
 * done(-ECANCELED).  All completions have run when this returns.  Must be
 * called on the loop thread (completions run there), not from inside a
 * done() callback.  Finished jobs are delivered with 0 before the cancelled
 * ones.
 */
void workq_destroy(Workq *wq);

/* A consistent snapshot (taken under the pool's mutex); any thread. */
void workq_get_stats(Workq *wq, WorkqStats *out);

/* Monotonic clock in microseconds (shared helper). */
usec_t time_now_usec(void);

#endif
