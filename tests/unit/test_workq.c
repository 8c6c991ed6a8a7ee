/*
 * test_workq.c — unit tests of the worker pool (proxy/workq.c).
 *
 * Every test drives a private event_base on the test's main thread, checks
 * that each completion ran exactly once and on that thread, and ends with
 * workq_destroy() so nothing is left running.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "workq.h"

static pthread_t main_thread;

/* A job that computes a sum of squares on the worker and records its done(). */
typedef struct test_job {
    WorkqJob base; /* first member: done() casts back */
    int n;
    uint64_t result;
    int done_calls;
    int status;
    bool done_on_main;
    int *done_total; /* shared counter of completions (main thread only) */
    Workq *wq;       /* for resubmit attempts from done() */
    int resubmit_rc;
} TestJob;

static void square_work(WorkqJob *j)
{
    TestJob *t = (TestJob *)j;
    uint64_t s = 0;

    for (int i = 1; i <= t->n; i++)
        s += (uint64_t)i * (uint64_t)i;
    t->result = s;
}

static void record_done(WorkqJob *j, int status)
{
    TestJob *t = (TestJob *)j;

    t->done_calls++;
    t->status = status;
    t->done_on_main = pthread_equal(pthread_self(), main_thread);
    if (t->done_total) (*t->done_total)++;
}

static uint64_t expected_sum(int n)
{
    return (uint64_t)n * (uint64_t)(n + 1) * (uint64_t)(2 * n + 1) / 6;
}

/* Run the loop until *counter reaches want (or ~2 s pass). */
static void run_until(struct event_base *base, const int *counter, int want)
{
    usec_t deadline = time_now_usec() + 2 * USEC_PER_SEC;

    while (*counter < want && time_now_usec() < deadline) {
        struct timeval tv = {0, 10000};
        event_base_loopexit(base, &tv);
        event_base_loop(base, EVLOOP_ONCE);
    }
    assert_int_equal(*counter, want);
}

static void check_stats_consistent(Workq *wq)
{
    WorkqStats st;

    workq_get_stats(wq, &st);
    assert_true(st.submitted ==
                st.completed + st.cancelled + (uint64_t)st.queue_depth + (uint64_t)st.running);
    assert_true(st.wait_usec_max <= st.wait_usec_total);
}

/* A gate a job blocks on, so that the queue can be filled deterministically. */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_open;
static bool gate_entered;

static void gate_reset(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = false;
    gate_entered = false;
    pthread_mutex_unlock(&gate_lock);
}

static void gate_work(WorkqJob *j)
{
    (void)j;
    pthread_mutex_lock(&gate_lock);
    gate_entered = true;
    pthread_cond_broadcast(&gate_cond);
    while (!gate_open)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

static void gate_wait_entered(void)
{
    pthread_mutex_lock(&gate_lock);
    while (!gate_entered)
        pthread_cond_wait(&gate_cond, &gate_lock);
    pthread_mutex_unlock(&gate_lock);
}

static void gate_release(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_open = true;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void *gate_release_later(void *arg)
{
    (void)arg;
    usleep(100 * 1000);
    gate_release();
    return NULL;
}

static void test_many_jobs(void **state)
{
    enum { N = 10000 };
    struct event_base *base = event_base_new();
    Workq *wq = workq_create(base, 4, N);
    TestJob *jobs = calloc(N, sizeof(*jobs));
    int total = 0;
    WorkqStats st;

    (void)state;
    assert_non_null(wq);
    assert_non_null(jobs);
    for (int i = 0; i < N; i++) {
        jobs[i].n = i % 100;
        jobs[i].done_total = &total;
        assert_int_equal(workq_submit(wq, &jobs[i].base, square_work, record_done), 0);
    }
    run_until(base, &total, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].status, 0);
        assert_true(jobs[i].done_on_main);
        assert_true(jobs[i].result == expected_sum(jobs[i].n));
    }
    workq_get_stats(wq, &st);
    assert_int_equal(st.threads, 4);
    assert_int_equal(st.queue_max, N);
    assert_int_equal(st.queue_depth, 0);
    assert_int_equal(st.running, 0);
    assert_true(st.submitted == N);
    assert_true(st.completed == N);
    assert_true(st.rejected == 0 && st.cancelled == 0);
    /* Quick jobs finish in batches: far fewer wake-ups than jobs. */
    assert_true(st.wakeups >= 1);
    assert_true(st.wakeups < N);
    check_stats_consistent(wq);

    workq_destroy(wq);
    for (int i = 0; i < N; i++)
        assert_int_equal(jobs[i].done_calls, 1);
    free(jobs);
    event_base_free(base);
}

static void test_queue_full(void **state)
{
    struct event_base *base = event_base_new();
    Workq *wq = workq_create(base, 1, 2);
    TestJob blocker = {0}, a = {0}, b = {0}, c = {0};
    int total = 0;
    WorkqStats st;

    (void)state;
    assert_non_null(wq);
    gate_reset();
    blocker.done_total = a.done_total = b.done_total = c.done_total = &total;
    assert_int_equal(workq_submit(wq, &blocker.base, gate_work, record_done), 0);
    gate_wait_entered(); /* the only thread is busy; the queue is empty */
    assert_int_equal(workq_submit(wq, &a.base, square_work, record_done), 0);
    assert_int_equal(workq_submit(wq, &b.base, square_work, record_done), 0);
    assert_int_equal(workq_submit(wq, &c.base, square_work, record_done), -EAGAIN);

    workq_get_stats(wq, &st);
    assert_int_equal(st.queue_depth, 2);
    assert_int_equal(st.running, 1);
    assert_true(st.rejected == 1);
    assert_true(st.submitted == 3);
    check_stats_consistent(wq);

    gate_release();
    run_until(base, &total, 3);
    assert_int_equal(c.done_calls, 0); /* rejected jobs never complete */
    assert_int_equal(blocker.done_calls + a.done_calls + b.done_calls, 3);

    /* The queue has room again. */
    assert_int_equal(workq_submit(wq, &c.base, square_work, record_done), 0);
    run_until(base, &total, 4);
    check_stats_consistent(wq);
    workq_destroy(wq);
    event_base_free(base);
}

static void resubmit_done(WorkqJob *j, int status)
{
    TestJob *t = (TestJob *)j;

    record_done(j, status);
    t->resubmit_rc = workq_submit(t->wq, j, square_work, record_done);
}

static void test_shutdown_pending(void **state)
{
    enum { QUEUED = 5 };
    struct event_base *base = event_base_new();
    Workq *wq = workq_create(base, 1, 16);
    TestJob blocker = {0}, q[QUEUED];
    pthread_t releaser;
    int total = 0;

    (void)state;
    memset(q, 0, sizeof(q));
    assert_non_null(wq);
    gate_reset();
    blocker.done_total = &total;
    blocker.wq = wq;
    assert_int_equal(workq_submit(wq, &blocker.base, gate_work, resubmit_done), 0);
    gate_wait_entered();
    for (int i = 0; i < QUEUED; i++) {
        q[i].done_total = &total;
        q[i].wq = wq;
        q[i].n = 10;
        assert_int_equal(workq_submit(wq, &q[i].base, square_work, resubmit_done), 0);
    }
    /* destroy waits for the running job; let it finish a little later */
    assert_int_equal(pthread_create(&releaser, NULL, gate_release_later, NULL), 0);
    workq_destroy(wq);
    pthread_join(releaser, NULL);

    assert_int_equal(total, 1 + QUEUED);
    assert_int_equal(blocker.done_calls, 1);
    assert_int_equal(blocker.status, 0); /* running job finishes normally */
    assert_true(blocker.done_on_main);
    assert_int_equal(blocker.resubmit_rc, -ESHUTDOWN);
    for (int i = 0; i < QUEUED; i++) {
        assert_int_equal(q[i].done_calls, 1);
        assert_int_equal(q[i].status, -ECANCELED);
        assert_true(q[i].done_on_main);
        assert_int_equal(q[i].resubmit_rc, -ESHUTDOWN);
        assert_true(q[i].result == 0); /* never ran */
    }
    event_base_free(base);
}

/* Jobs that finished but whose done() the loop has not run yet get done(0) at destroy. */
static void test_shutdown_undelivered(void **state)
{
    enum { N = 8 };
    struct event_base *base = event_base_new();
    Workq *wq = workq_create(base, 2, N);
    TestJob jobs[N];
    int total = 0;
    WorkqStats st;
    usec_t deadline = time_now_usec() + 2 * USEC_PER_SEC;

    (void)state;
    memset(jobs, 0, sizeof(jobs));
    assert_non_null(wq);
    for (int i = 0; i < N; i++) {
        jobs[i].done_total = &total;
        jobs[i].n = 50;
        assert_int_equal(workq_submit(wq, &jobs[i].base, square_work, record_done), 0);
    }
    do {
        workq_get_stats(wq, &st);
        if (st.completed == N) break;
        usleep(1000);
    } while (time_now_usec() < deadline);
    assert_true(st.completed == N);
    assert_true(st.wakeups == 1); /* the loop never ran: one batch, one wake-up */
    assert_true(st.wait_usec_max <= st.wait_usec_total);
    assert_int_equal(total, 0);

    workq_destroy(wq); /* without ever running the loop */
    assert_int_equal(total, N);
    for (int i = 0; i < N; i++) {
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].status, 0);
        assert_true(jobs[i].done_on_main);
        assert_true(jobs[i].result == expected_sum(50));
    }
    event_base_free(base);
}

/*
 * Two ports (two event loops, here two bases on two threads) share one pool:
 * each completion runs on the thread of the port its job was submitted
 * through, and stopping the pool cancels queued jobs of both ports.
 */
typedef struct port_thread {
    struct event_base *base;
    Workq *port;
    TestJob jobs[200];
    int done;
    pthread_t tid;
    bool all_on_own_thread;
} PortThread;

static void port_done(WorkqJob *j, int status)
{
    TestJob *t = (TestJob *)j;
    PortThread *pt = (PortThread *)t->wq; /* the owner, smuggled through wq */
    t->done_calls++;
    t->status = status;
    if (!pthread_equal(pthread_self(), pt->tid)) pt->all_on_own_thread = false;
    pt->done++;
}

static void *port_thread_main(void *arg)
{
    PortThread *pt = arg;
    pt->tid = pthread_self();
    for (int i = 0; i < 200; i++) {
        pt->jobs[i].n = i;
        pt->jobs[i].wq = (Workq *)pt;
        assert_int_equal(workq_submit(pt->port, &pt->jobs[i].base, square_work, port_done), 0);
    }
    while (pt->done < 200)
        event_base_loop(pt->base, EVLOOP_ONCE);
    return NULL;
}

static void test_two_ports_one_pool(void **state)
{
    (void)state;
    WorkqPool *wp = workq_pool_create(3, 1000);
    assert_non_null(wp);
    PortThread pt[2];
    memset(pt, 0, sizeof(pt));
    for (int i = 0; i < 2; i++) {
        pt[i].base = event_base_new();
        pt[i].port = workq_port_create(wp, pt[i].base);
        assert_non_null(pt[i].port);
        pt[i].all_on_own_thread = true;
    }
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, port_thread_main, &pt[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pt[i].done, 200);
        assert_true(pt[i].all_on_own_thread);
        for (int k = 0; k < 200; k++) {
            assert_int_equal(pt[i].jobs[k].done_calls, 1);
            assert_int_equal(pt[i].jobs[k].result, expected_sum(k));
        }
    }
    WorkqStats st;
    workq_get_stats(pt[0].port, &st);
    assert_int_equal(st.completed, 400);
    /* teardown in the documented order: stop, destroy the ports, free */
    workq_pool_stop(wp);
    for (int i = 0; i < 2; i++) {
        workq_port_destroy(pt[i].port);
        event_base_free(pt[i].base);
    }
    workq_pool_free(wp);
}

static void test_create_invalid(void **state)
{
    struct event_base *base = event_base_new();

    (void)state;
    assert_null(workq_create(base, 0, 10));
    assert_null(workq_create(base, 2, 0));
    assert_null(workq_create(NULL, 2, 10));
    workq_destroy(NULL);
    event_base_free(base);
}

static void test_time_now(void **state)
{
    usec_t a = time_now_usec();
    usleep(2000);
    usec_t b = time_now_usec();

    (void)state;
    assert_true(a > 0);
    assert_true(b - a >= 2000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_many_jobs),          cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_shutdown_pending),   cmocka_unit_test(test_shutdown_undelivered),
        cmocka_unit_test(test_create_invalid),     cmocka_unit_test(test_time_now),
        cmocka_unit_test(test_two_ports_one_pool),
    };

    main_thread = pthread_self();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
