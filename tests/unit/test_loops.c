/*
 * test_loops.c — unit tests of the loop set (proxy/loops.c) and the shared
 * pool limits (proxy/pooldir.c) with real threads.
 *
 * Four loops run their event_bases on their own threads while the test
 * thread plays loop 0 (it dispatches loop 0's base itself).  Checked:
 * loop_post runs a function on the target's thread, once; a broadcast runs
 * on every loop and calls back the sender after the last; a freeze stops
 * every other loop (a counter they bump on a timer does not move while
 * frozen); and pooldir_acquire never lets concurrent acquirers over a limit.
 * `make tsan` is where these earn their keep.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <event2/event.h>

#include "config_internal.h"
#include "loops.h"
#include "pooldir.h"

#define NLOOPS 4

static Config *test_cfg(void)
{
    Config *cfg = config_defaults();
    assert_non_null(cfg);
    return cfg;
}

static LoopSet *test_set(Config *cfg)
{
    char err[256];
    LoopSet *s = loops_create(cfg, NLOOPS, err, sizeof(err));
    assert_non_null(s);
    assert_int_equal(loops_start(s, err, sizeof(err)), 0);
    return s;
}

/* Run loop 0 (this thread) until *flag becomes true, at most ~5 s. */
static void run_until(Loop *loop0, atomic_int *flag, int want)
{
    for (int i = 0; i < 5000 && atomic_load(flag) < want; i++) {
        struct timeval tv = {0, 1000};
        event_base_loopexit(loop0->base, &tv);
        event_base_dispatch(loop0->base);
    }
    assert_int_equal(atomic_load(flag), want);
}

static void teardown_set(LoopSet *s, Config *cfg)
{
    loops_join(s);
    loops_destroy(s);
    config_unref(cfg);
}

/* ---------------------------------------------------------------- messages */

typedef struct post_arg {
    atomic_int ran;
    atomic_int wrong_thread;
    pthread_t expect[NLOOPS];
    atomic_int done;
    Loop *from;
} PostArg;

static void on_post(Loop *loop, void *arg)
{
    PostArg *p = arg;
    if (loop->index != 0 && !pthread_equal(pthread_self(), loop->set->threads[loop->index]))
        atomic_fetch_add(&p->wrong_thread, 1);
    atomic_fetch_add(&p->ran, 1);
}

static void on_broadcast_done(Loop *loop, void *arg)
{
    PostArg *p = arg;
    if (loop != p->from) atomic_fetch_add(&p->wrong_thread, 1);
    atomic_fetch_add(&p->done, 1);
}

static void test_post_runs_on_the_target_thread(void **state)
{
    (void)state;
    Config *cfg = test_cfg();
    LoopSet *s = test_set(cfg);
    PostArg p = {0};
    for (int i = 1; i < NLOOPS; i++)
        assert_int_equal(loop_post(s->loops[i], on_post, &p), 0);
    run_until(s->loops[0], &p.ran, NLOOPS - 1);
    assert_int_equal(atomic_load(&p.wrong_thread), 0);
    teardown_set(s, cfg);
}

static void test_broadcast_reaches_every_loop_then_answers(void **state)
{
    (void)state;
    Config *cfg = test_cfg();
    LoopSet *s = test_set(cfg);
    PostArg p = {0};
    p.from = s->loops[0];
    assert_int_equal(loops_broadcast(s->loops[0], on_post, &p, on_broadcast_done), 0);
    run_until(s->loops[0], &p.done, 1);
    assert_int_equal(atomic_load(&p.ran), NLOOPS); /* the sender too */
    assert_int_equal(atomic_load(&p.wrong_thread), 0);
    teardown_set(s, cfg);
}

/* ---------------------------------------------------------------- freeze */

typedef struct ticker {
    struct event *ev;
    atomic_int ticks;
} Ticker;

static Ticker tickers[NLOOPS];

static void on_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    atomic_fetch_add(&((Ticker *)arg)->ticks, 1);
}

static void add_ticker(Loop *loop, void *arg)
{
    (void)arg;
    Ticker *t = &tickers[loop->index];
    t->ev = event_new(loop->base, -1, EV_PERSIST, on_tick, t);
    struct timeval tv = {0, 1000};
    event_add(t->ev, &tv);
}

static void del_ticker(Loop *loop, void *arg)
{
    (void)arg;
    event_free(tickers[loop->index].ev);
    tickers[loop->index].ev = NULL;
}

static void on_done_flag(Loop *loop, void *arg)
{
    (void)loop;
    atomic_fetch_add((atomic_int *)arg, 1);
}

static void test_freeze_stops_every_other_loop(void **state)
{
    (void)state;
    Config *cfg = test_cfg();
    LoopSet *s = test_set(cfg);
    atomic_int added = 0, removed = 0;
    memset(tickers, 0, sizeof(tickers));
    /* the broadcast's arg goes to add_ticker (unused there) and to the done callback */
    assert_int_equal(loops_broadcast(s->loops[0], add_ticker, &added, on_done_flag), 0);
    run_until(s->loops[0], &added, 1);
    usleep(50000);
    for (int round = 0; round < 20; round++) {
        loops_freeze(s->loops[0]);
        int before[NLOOPS];
        for (int i = 1; i < NLOOPS; i++)
            before[i] = atomic_load(&tickers[i].ticks);
        usleep(5000); /* five of their ticks, if they ran */
        for (int i = 1; i < NLOOPS; i++)
            assert_int_equal(atomic_load(&tickers[i].ticks), before[i]);
        loops_thaw(s->loops[0]);
        usleep(2000);
    }
    for (int i = 1; i < NLOOPS; i++)
        assert_true(atomic_load(&tickers[i].ticks) > 0);
    assert_int_equal(loops_broadcast(s->loops[0], del_ticker, &removed, on_done_flag), 0);
    run_until(s->loops[0], &removed, 1);
    teardown_set(s, cfg);
}

/* ---------------------------------------------------------------- limits */

typedef struct acq_arg {
    PoolShared *ps;
    atomic_int held;
    atomic_int peak;
    atomic_int over;
} AcqArg;

static void *acquirer(void *arg)
{
    AcqArg *a = arg;
    for (int i = 0; i < 20000; i++) {
        if (!pooldir_acquire(a->ps, 5, 7, 0)) continue;
        int h = atomic_fetch_add(&a->held, 1) + 1;
        if (h > 5) atomic_fetch_add(&a->over, 1);
        int p = atomic_load(&a->peak);
        while (h > p && !atomic_compare_exchange_weak(&a->peak, &p, h)) {
        }
        atomic_fetch_sub(&a->held, 1);
        pooldir_release(a->ps);
    }
    return NULL;
}

static void test_pooldir_limit_is_exact_under_threads(void **state)
{
    (void)state;
    Pooldir *dir = pooldir_create();
    assert_non_null(dir);
    AcqArg a = {0};
    a.ps = pooldir_get(dir, "db", "user");
    assert_non_null(a.ps);
    /* another pool of the same database shares max_db_connections (7) */
    PoolShared *other = pooldir_get(dir, "db", "other");
    assert_non_null(other);
    assert_true(pooldir_acquire(other, 5, 7, 0));
    assert_true(pooldir_acquire(other, 5, 7, 0));
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        assert_int_equal(pthread_create(&t[i], NULL, acquirer, &a), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&a.over), 0);
    assert_true(atomic_load(&a.peak) >= 1 && atomic_load(&a.peak) <= 5);
    /* every acquire was released: the counters are back where they were */
    assert_int_equal(atomic_load(&a.ps->servers), 0);
    assert_int_equal(atomic_load(&a.ps->db->servers), 2);
    /* the database limit: 2 held by `other`, so this pool gets 5, not 6 */
    int got = 0;
    while (pooldir_acquire(a.ps, 10, 7, 0))
        got++;
    assert_int_equal(got, 5);
    for (int i = 0; i < got; i++)
        pooldir_release(a.ps);
    pooldir_release(other);
    pooldir_release(other);
    pooldir_put(dir, other);
    pooldir_put(dir, a.ps);
    pooldir_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_post_runs_on_the_target_thread),
        cmocka_unit_test(test_broadcast_reaches_every_loop_then_answers),
        cmocka_unit_test(test_freeze_stops_every_other_loop),
        cmocka_unit_test(test_pooldir_limit_is_exact_under_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
