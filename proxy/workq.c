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

struct workq {
    struct event_base *base;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* signalled when a job is queued or shutdown begins */
    pthread_t *threads;
    int nthreads;

    /* FIFO of jobs waiting for a thread (lock) */
    WorkqJob *queue_head, *queue_tail;
    int queue_len, queue_max;
    int running; /* jobs inside work() now (lock) */

    /* jobs whose work() finished, waiting for done() on the loop (lock) */
    WorkqJob *done_head, *done_tail;

    bool shutdown; /* lock; once set, submit refuses and workers exit */

    int efd;              /* eventfd that wakes the loop */
    struct event *wakeup; /* persistent EV_READ on efd */

    /* statistics (lock) */
    uint64_t submitted, completed, rejected, cancelled, wakeups;
    uint64_t wait_usec_total, wait_usec_max;
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
    Workq *wq = arg;

    pthread_mutex_lock(&wq->lock);
    for (;;) {
        while (!wq->queue_head && !wq->shutdown)
            pthread_cond_wait(&wq->cond, &wq->lock);
        /* Queued jobs are left for workq_destroy to cancel. */
        if (wq->shutdown) break;

        WorkqJob *job = wq->queue_head;
        wq->queue_head = job->next;
        if (!wq->queue_head) wq->queue_tail = NULL;
        wq->queue_len--;
        wq->running++;
        job->started_at = time_now_usec();
        pthread_mutex_unlock(&wq->lock);

        job->work(job);

        pthread_mutex_lock(&wq->lock);
        wq->running--;
        wq->completed++;
        uint64_t waited = (uint64_t)(job->started_at - job->queued_at);
        wq->wait_usec_total += waited;
        if (waited > wq->wait_usec_max) wq->wait_usec_max = waited;
        bool was_empty = wq->done_head == NULL;
        list_append(&wq->done_head, &wq->done_tail, job);
        if (was_empty) {
            /*
             * Only the empty -> non-empty transition wakes the loop; the
             * write is done under the lock so that the loop's swap and this
             * decision are ordered (no lost or doubled wake-ups).  eventfd
             * writes do not block unless the counter would overflow.
             */
            uint64_t one = 1;
            ssize_t n = write(wq->efd, &one, sizeof(one));
            (void)n;
            wq->wakeups++;
        }
    }
    pthread_mutex_unlock(&wq->lock);
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

    pthread_mutex_lock(&wq->lock);
    batch = wq->done_head;
    wq->done_head = wq->done_tail = NULL;
    pthread_mutex_unlock(&wq->lock);

    workq_run_done(batch, 0);
}

/* Stop and join the first `started` threads (creation failure or destroy). */
static void workq_join(Workq *wq, int started)
{
    pthread_mutex_lock(&wq->lock);
    wq->shutdown = true;
    pthread_cond_broadcast(&wq->cond);
    pthread_mutex_unlock(&wq->lock);
    for (int i = 0; i < started; i++)
        pthread_join(wq->threads[i], NULL);
}

Workq *workq_create(struct event_base *base, int threads, int max_queue)
{
    Workq *wq;
    sigset_t all, old;
    int started = 0;

    if (!base || threads < 1 || max_queue < 1) {
        errno = EINVAL;
        return NULL;
    }
    wq = calloc(1, sizeof(*wq));
    if (!wq) return NULL;
    wq->base = base;
    wq->nthreads = threads;
    wq->queue_max = max_queue;
    wq->efd = -1;

    wq->threads = calloc((size_t)threads, sizeof(*wq->threads));
    if (!wq->threads) goto fail_free;
    if (pthread_mutex_init(&wq->lock, NULL) != 0) goto fail_threads;
    if (pthread_cond_init(&wq->cond, NULL) != 0) goto fail_mutex;

    wq->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wq->efd < 0) goto fail_cond;
    wq->wakeup = event_new(base, wq->efd, EV_READ | EV_PERSIST, workq_on_wakeup, wq);
    if (!wq->wakeup) goto fail_efd;
    if (event_add(wq->wakeup, NULL) != 0) goto fail_event;

    /* Threads inherit the creator's mask: block everything around create. */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (; started < threads; started++) {
        if (pthread_create(&wq->threads[started], NULL, workq_thread_main, wq) != 0) break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started < threads) goto fail_join;
    return wq;

fail_join:
    workq_join(wq, started);
fail_event:
    event_free(wq->wakeup);
fail_efd:
    close(wq->efd);
fail_cond:
    pthread_cond_destroy(&wq->cond);
fail_mutex:
    pthread_mutex_destroy(&wq->lock);
fail_threads:
    free(wq->threads);
fail_free:
    free(wq);
    errno = errno ? errno : ENOMEM;
    return NULL;
}

int workq_submit(Workq *wq, WorkqJob *job, workq_work_fn work, workq_done_fn done)
{
    job->work = work;
    job->done = done;
    job->next = NULL;
    job->started_at = 0;
    job->queued_at = time_now_usec();

    pthread_mutex_lock(&wq->lock);
    if (wq->shutdown) {
        pthread_mutex_unlock(&wq->lock);
        return -ESHUTDOWN;
    }
    if (wq->queue_len >= wq->queue_max) {
        wq->rejected++;
        pthread_mutex_unlock(&wq->lock);
        return -EAGAIN;
    }
    list_append(&wq->queue_head, &wq->queue_tail, job);
    wq->queue_len++;
    wq->submitted++;
    pthread_cond_signal(&wq->cond);
    pthread_mutex_unlock(&wq->lock);
    return 0;
}

void workq_destroy(Workq *wq)
{
    WorkqJob *finished, *queued;

    if (!wq) return;
    /* Running jobs finish; workers exit without taking queued ones. */
    workq_join(wq, wq->nthreads);

    /*
     * No worker is left, but completions may call workq_submit (which now
     * returns -ESHUTDOWN) or workq_get_stats, so keep using the lock.
     */
    pthread_mutex_lock(&wq->lock);
    finished = wq->done_head;
    wq->done_head = wq->done_tail = NULL;
    queued = wq->queue_head;
    wq->queue_head = wq->queue_tail = NULL;
    for (WorkqJob *j = queued; j; j = j->next)
        wq->cancelled++;
    wq->queue_len = 0;
    pthread_mutex_unlock(&wq->lock);

    /* Finished first: they completed before the cancelled ones would have. */
    workq_run_done(finished, 0);
    workq_run_done(queued, -ECANCELED);

    event_free(wq->wakeup);
    close(wq->efd);
    pthread_cond_destroy(&wq->cond);
    pthread_mutex_destroy(&wq->lock);
    free(wq->threads);
    free(wq);
}

void workq_get_stats(Workq *wq, WorkqStats *out)
{
    memset(out, 0, sizeof(*out));
    pthread_mutex_lock(&wq->lock);
    out->threads = wq->nthreads;
    out->queue_depth = wq->queue_len;
    out->queue_max = wq->queue_max;
    out->running = wq->running;
    out->submitted = wq->submitted;
    out->completed = wq->completed;
    out->rejected = wq->rejected;
    out->cancelled = wq->cancelled;
    out->wakeups = wq->wakeups;
    out->wait_usec_total = wq->wait_usec_total;
    out->wait_usec_max = wq->wait_usec_max;
    pthread_mutex_unlock(&wq->lock);
}
