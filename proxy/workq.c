/*
 * workq.c — the worker thread pool (see workq.h for the life of a job).
 *
 * DESIGN
 *
 * N pthreads share one mutex and one condition variable.  The mutex protects
 * everything mutable in struct workq: the FIFO of queued jobs, the done list,
 * the shutdown flag and the statistics.  There is no second lock, so there is
 * no lock order to get wrong; job->work() and job->done() always run without
 * the lock held, so a completion may submit a new job (TLS handshakes
 * resubmit after the loop re-armed the socket).
 *
 * Submitting never sleeps on the loop thread: the queue is bounded and a full
 * queue is reported as -EAGAIN immediately (the caller sheds load, e.g. tells
 * the client "too many connections").  It only waits for the mutex, which is
 * held for a few list operations at a time.
 *
 * Completion hand-off (libuv's uv_async coalesces the same way): a worker
 * appends the finished job to the done list and writes 1 to an eventfd only
 * when the list went from empty to non-empty.  Further jobs that finish
 * before the loop gets round to it join the same batch without another
 * system call.  The loop's persistent EV_READ callback drains the eventfd,
 * swaps the whole list out under the lock and runs each job->done(job, 0)
 * without it, in completion order.  An eventfd was chosen over
 * event_active() so that correctness does not depend on the application
 * having called evthread_use_pthreads().
 *
 * Workers start with every signal blocked (the mask is set around
 * pthread_create, so there is no window) so that SIGHUP/SIGINT/... are
 * delivered to the loop thread, where libevent's signal events handle them.
 *
 * Shutdown (workq_destroy, loop thread): set the flag, wake all workers, join
 * them.  A worker finishes the job it is running and exits without taking
 * another one.  Afterwards, on the loop thread, finished jobs not yet
 * delivered get done(job, 0) and jobs that never ran get done(job,
 * -ECANCELED), so every completion runs exactly once and the submitter can
 * always free its job in done().
 *
 * Ownership: the Workq is owned by whoever created it (the loop context) and
 * freed by workq_destroy().  Jobs are owned by their submitter; workq only
 * links them through job->next between submit and done.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/eventfd.h>

#include <event2/event.h>

#include "workq.h"

/* The threads and the queue, shared by every loop's port. */
struct workq_pool {
    pthread_mutex_t lock; /* everything mutable here and in every port */
    pthread_cond_t cond;  /* signalled when a job is queued or shutdown begins */
    pthread_t *threads;
    int nthreads;

    /* FIFO of jobs waiting for a thread (lock) */
    WorkqJob *queue_head, *queue_tail;
    int queue_len, queue_max;
    int running; /* jobs inside work() now (lock) */

    bool shutdown; /* lock; once set, submit refuses and workers exit */

    /* statistics (lock) */
    uint64_t submitted, completed, rejected, cancelled, wakeups;
    uint64_t wait_usec_total, wait_usec_max;
};

/* One loop's end: its finished jobs and the eventfd that wakes it. */
struct workq {
    WorkqPool *pool;
    bool owns_pool; /* workq_create(): destroyed with the port */
    struct event_base *base;

    /* jobs whose work() finished, waiting for done() on the loop (pool lock) */
    WorkqJob *done_head, *done_tail;
    /* jobs that never ran, after workq_pool_stop (pool lock) */
    WorkqJob *cancel_head, *cancel_tail;

    int efd;              /* eventfd that wakes the loop */
    struct event *wakeup; /* persistent EV_READ on efd */
};

usec_t time_now_usec(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (usec_t)ts.tv_sec * USEC_PER_SEC + ts.tv_nsec / 1000;
}

static void list_append(WorkqJob **head, WorkqJob **tail, WorkqJob *job)
{
    job->next = NULL;
    if (*tail)
        (*tail)->next = job;
    else
        *head = job;
    *tail = job;
}

/* Worker thread: take jobs until shutdown begins. */
static void *workq_thread_main(void *arg)
{
    WorkqPool *wp = arg;

    pthread_mutex_lock(&wp->lock);
    for (;;) {
        while (!wp->queue_head && !wp->shutdown)
            pthread_cond_wait(&wp->cond, &wp->lock);
        /* Queued jobs are left for workq_pool_stop to cancel. */
        if (wp->shutdown) break;

        WorkqJob *job = wp->queue_head;
        wp->queue_head = job->next;
        if (!wp->queue_head) wp->queue_tail = NULL;
        wp->queue_len--;
        wp->running++;
        job->started_at = time_now_usec();
        pthread_mutex_unlock(&wp->lock);

        job->work(job);

        pthread_mutex_lock(&wp->lock);
        wp->running--;
        wp->completed++;
        uint64_t waited = (uint64_t)(job->started_at - job->queued_at);
        wp->wait_usec_total += waited;
        if (waited > wp->wait_usec_max) wp->wait_usec_max = waited;
        Workq *port = job->port;
        bool was_empty = port->done_head == NULL;
        list_append(&port->done_head, &port->done_tail, job);
        if (was_empty) {
            /*
             * Only the empty -> non-empty transition wakes the loop; the
             * write is done under the lock so that the loop's swap and this
             * decision are ordered (no lost or doubled wake-ups).  eventfd
             * writes do not block unless the counter would overflow.
             */
            uint64_t one = 1;
            ssize_t n = write(port->efd, &one, sizeof(one));
            (void)n;
            wp->wakeups++;
        }
    }
    pthread_mutex_unlock(&wp->lock);
    return NULL;
}

/* Run completions of a swapped-out done list, in completion order. */
static void workq_run_done(WorkqJob *job, int status)
{
    while (job) {
        WorkqJob *next = job->next;
        job->next = NULL;
        job->done(job, status); /* may free job */
        job = next;
    }
}

/* Loop thread: the eventfd became readable. */
static void workq_on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    Workq *wq = arg;
    uint64_t count;
    WorkqJob *batch;

    (void)what;
    /* Non-blocking; resets the counter.  EAGAIN just means nothing new. */
    ssize_t n = read(fd, &count, sizeof(count));
    (void)n;

    pthread_mutex_lock(&wq->pool->lock);
    batch = wq->done_head;
    wq->done_head = wq->done_tail = NULL;
    pthread_mutex_unlock(&wq->pool->lock);

    workq_run_done(batch, 0);
}

/* Stop and join the first `started` threads (creation failure or stop). */
static void workq_join(WorkqPool *wp, int started)
{
    pthread_mutex_lock(&wp->lock);
    wp->shutdown = true;
    pthread_cond_broadcast(&wp->cond);
    pthread_mutex_unlock(&wp->lock);
    for (int i = 0; i < started; i++)
        pthread_join(wp->threads[i], NULL);
}

WorkqPool *workq_pool_create(int threads, int max_queue)
{
    WorkqPool *wp;
    sigset_t all, old;
    int started = 0;

    if (threads < 1 || max_queue < 1) {
        errno = EINVAL;
        return NULL;
    }
    wp = calloc(1, sizeof(*wp));
    if (!wp) return NULL;
    wp->nthreads = threads;
    wp->queue_max = max_queue;

    wp->threads = calloc((size_t)threads, sizeof(*wp->threads));
    if (!wp->threads) goto fail_free;
    if (pthread_mutex_init(&wp->lock, NULL) != 0) goto fail_threads;
    if (pthread_cond_init(&wp->cond, NULL) != 0) goto fail_mutex;

    /* Threads inherit the creator's mask: block everything around create. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (; started < threads; started++) {
        if (pthread_create(&wp->threads[started], NULL, workq_thread_main, wp) != 0) break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < threads) goto fail_join;
    return wp;

fail_join:
    workq_join(wp, started);
    pthread_cond_destroy(&wp->cond);
fail_mutex:
    pthread_mutex_destroy(&wp->lock);
fail_threads:
    free(wp->threads);
fail_free:
    free(wp);
    errno = errno ? errno : ENOMEM;
    return NULL;
}

Workq *workq_port_create(WorkqPool *wp, struct event_base *base)
{
    if (!wp || !base) {
        errno = EINVAL;
        return NULL;
    }
    Workq *wq = calloc(1, sizeof(*wq));
    if (!wq) return NULL;
    wq->pool = wp;
    wq->base = base;
    wq->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wq->efd < 0) goto fail_free;
    wq->wakeup = event_new(base, wq->efd, EV_READ | EV_PERSIST, workq_on_wakeup, wq);
    if (!wq->wakeup) goto fail_efd;
    if (event_add(wq->wakeup, NULL) != 0) goto fail_event;
    return wq;
fail_event:
    event_free(wq->wakeup);
fail_efd:
    close(wq->efd);
fail_free:
    free(wq);
    errno = errno ? errno : ENOMEM;
    return NULL;
}

Workq *workq_create(struct event_base *base, int threads, int max_queue)
{
    if (!base) {
        errno = EINVAL;
        return NULL;
    }
    WorkqPool *wp = workq_pool_create(threads, max_queue);
    if (!wp) return NULL;
    Workq *wq = workq_port_create(wp, base);
    if (!wq) {
        workq_pool_stop(wp);
        workq_pool_free(wp);
        return NULL;
    }
    wq->owns_pool = true;
    return wq;
}

WorkqPool *workq_get_pool(Workq *wq)
{
    return wq->pool;
}

int workq_submit(Workq *wq, WorkqJob *job, workq_work_fn work, workq_done_fn done)
{
    WorkqPool *wp = wq->pool;
    job->work = work;
    job->done = done;
    job->port = wq;
    job->next = NULL;
    job->started_at = 0;
    job->queued_at = time_now_usec();

    pthread_mutex_lock(&wp->lock);
    if (wp->shutdown) {
        pthread_mutex_unlock(&wp->lock);
        return -ESHUTDOWN;
    }
    if (wp->queue_len >= wp->queue_max) {
        wp->rejected++;
        pthread_mutex_unlock(&wp->lock);
        return -EAGAIN;
    }
    list_append(&wp->queue_head, &wp->queue_tail, job);
    wp->queue_len++;
    wp->submitted++;
    pthread_cond_signal(&wp->cond);
    pthread_mutex_unlock(&wp->lock);
    return 0;
}

void workq_pool_stop(WorkqPool *wp)
{
    if (!wp || wp->shutdown) return;
    /* Running jobs finish; workers exit without taking queued ones. */
    workq_join(wp, wp->nthreads);
    /* Jobs that never ran go to their ports, to be completed with -ECANCELED. */
    pthread_mutex_lock(&wp->lock);
    WorkqJob *j = wp->queue_head;
    while (j) {
        WorkqJob *next = j->next;
        list_append(&j->port->cancel_head, &j->port->cancel_tail, j);
        wp->cancelled++;
        j = next;
    }
    wp->queue_head = wp->queue_tail = NULL;
    wp->queue_len = 0;
    pthread_mutex_unlock(&wp->lock);
}

void workq_port_destroy(Workq *wq)
{
    if (!wq) return;
    WorkqPool *wp = wq->pool;
    workq_pool_stop(wp);
    /*
     * No worker is left, but completions may call workq_submit (which now
     * returns -ESHUTDOWN) or workq_get_stats, so keep using the lock.
     */
    pthread_mutex_lock(&wp->lock);
    WorkqJob *finished = wq->done_head, *queued = wq->cancel_head;
    wq->done_head = wq->done_tail = NULL;
    wq->cancel_head = wq->cancel_tail = NULL;
    pthread_mutex_unlock(&wp->lock);

    /* Finished first: they completed before the cancelled ones would have. */
    workq_run_done(finished, 0);
    workq_run_done(queued, -ECANCELED);

    event_free(wq->wakeup);
    close(wq->efd);
    if (wq->owns_pool) workq_pool_free(wp);
    free(wq);
}

void workq_pool_free(WorkqPool *wp)
{
    if (!wp) return;
    workq_pool_stop(wp);
    pthread_cond_destroy(&wp->cond);
    pthread_mutex_destroy(&wp->lock);
    free(wp->threads);
    free(wp);
}

void workq_destroy(Workq *wq)
{
    workq_port_destroy(wq);
}

void workq_get_stats(Workq *wq, WorkqStats *out)
{
    WorkqPool *wp = wq->pool;
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&wp->lock);
    out->threads = wp->nthreads;
    out->queue_depth = wp->queue_len;
    out->queue_max = wp->queue_max;
    out->running = wp->running;
    out->submitted = wp->submitted;
    out->completed = wp->completed;
    out->rejected = wp->rejected;
    out->cancelled = wp->cancelled;
    out->wakeups = wp->wakeups;
    out->wait_usec_total = wp->wait_usec_total;
    out->wait_usec_max = wp->wait_usec_max;
    pthread_mutex_unlock(&wp->lock);
}
