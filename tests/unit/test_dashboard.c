/*
 * test_dashboard.c — the dashboard's history and /dashboard.json (dashboard.c).
 *
 * A real Loop with hand-made databases and pools (only what a snapshot
 * reads), ticks driven with chosen times, and the JSON read back as text.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <event2/buffer.h>

#include "config.h"
#include "dashboard.h"
#include "loop.h"
#include "pool.h"
#include "loops.h"
#include "stats.h"

typedef struct fixture {
    LoopSet *set; /* of one loop, as main.c makes it */
    Loop *loop;
    DashState *ds;
    usec_t t; /* time of the last tick */
} Fixture;

static Database *fake_db(Loop *loop, const char *name)
{
    Database *db = calloc(1, sizeof(*db));
    db->loop = loop;
    db->name = strdup(name);
    list_init(&db->pools);
    list_append(&loop->databases, &db->node);
    return db;
}

static Pool *fake_pool(Database *db, const char *user)
{
    Pool *p = calloc(1, sizeof(*p));
    p->loop = db->loop;
    p->db = db;
    p->username = strdup(user);
    p->mode = POOL_MODE_TRANSACTION;
    p->size = 20;
    list_init(&p->connecting);
    list_init(&p->idle);
    list_init(&p->active);
    list_init(&p->login_wait);
    list_init(&p->idle_clients);
    list_init(&p->waiting);
    list_init(&p->active_clients);
    list_append(&db->pools, &p->db_node);
    return p;
}

static void pool_gone(Pool *p)
{
    list_remove(&p->db->pools, &p->db_node);
    free(p->username);
    free(p);
}

static int setup(void **state)
{
    Fixture *f = calloc(1, sizeof(*f));
    Config *cfg = config_defaults();
    if (!f || !cfg) return -1;
    cfg->workers = 1;
    char err[256];
    f->set = loops_create(cfg, 1, err, sizeof(err));
    config_unref(cfg); /* the loop holds its own reference */
    if (!f->set) return -1;
    f->loop = f->set->loops[0];
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fixture *f = *state;
    dash_free(f->ds);
    while (!list_empty(&f->loop->databases)) {
        Database *db = list_entry(list_first(&f->loop->databases), Database, node);
        while (!list_empty(&db->pools))
            pool_gone(list_entry(list_first(&db->pools), Pool, db_node));
        list_remove(&f->loop->databases, &db->node);
        free(db->name);
        free(db);
    }
    loops_destroy(f->set);
    free(f);
    return 0;
}

/* A tick `secs` seconds after the last one. */
static void tick(Fixture *f, double secs)
{
    f->t += (usec_t)(secs * 1e6);
    dash_tick(f->ds, f->t);
}

/*
 * The dashboard and a first tick with nothing counted: later ticks are then
 * exactly as far apart as the test says (the creation's own clock reading is
 * not the test's).
 */
static void start(Fixture *f)
{
    f->ds = dash_create(f->loop);
    assert_non_null(f->ds);
    f->t = time_now_usec();
    tick(f, 1.0);
}

/* The whole answer, produced in slices of `slice` bytes. */
static char *json(Fixture *f, const char *query, size_t slice)
{
    struct evbuffer *all = evbuffer_new(), *out = evbuffer_new();
    DashCursor cur;
    memset(&cur, 0, sizeof(cur));
    int slices = 1;
    while (!dash_json_slice(f->ds, query, out, &cur, slice)) {
        evbuffer_add_buffer(all, out);
        slices++;
        assert_true(slices < 100000);
    }
    evbuffer_add_buffer(all, out);
    size_t n = evbuffer_get_length(all);
    char *s = malloc(n + 1);
    evbuffer_remove(all, s, n);
    s[n] = 0;
    evbuffer_free(all);
    evbuffer_free(out);
    return s;
}

/* "since=<cursor of this answer>" */
static void cursor_query(const char *j, char *out, size_t outlen)
{
    const char *c = strstr(j, "\"cursor\":\"");
    assert_non_null(c);
    c += 10;
    size_t n = strcspn(c, "\"");
    snprintf(out, outlen, "since=%.*s", (int)n, c);
}

/* The text of the pool object whose "user" is user, up to its closing brace. */
static char *pool_obj(const char *j, const char *user)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "\"user\":\"%s\"", user);
    const char *p = strstr(j, needle);
    if (!p) return NULL;
    const char *start = p;
    while (start > j && *start != '{')
        start--;
    size_t n = strcspn(start, "}");
    return strndup(start, n + 1);
}

static void assert_has(const char *hay, const char *needle)
{
    if (!strstr(hay, needle)) fail_msg("'%s' not in: %.3000s", needle, hay);
}

static void test_rates_quantiles_and_cursor(void **state)
{
    Fixture *f = *state;
    Database *db = fake_db(f->loop, "app");
    Pool *p = fake_pool(db, "u1");
    p->stats.xact_count = 5000; /* before the dashboard started: not in any second */
    p->stats.query_count = 7000;
    start(f);

    StatsHist h;
    memset(&h, 0, sizeof(h));
    for (int i = 0; i < 90; i++) {
        stats_hist_add(&p->latency.query, 80);
        stats_hist_add(&h, 80);
    }
    for (int i = 0; i < 10; i++) {
        stats_hist_add(&p->latency.query, 20000);
        stats_hist_add(&h, 20000);
    }
    p->stats.xact_count += 100;
    p->stats.query_count += 150;
    p->waiting.count = 3; /* a snapshot reads only the counts */
    p->idle.count = 2;
    tick(f, 1.0);

    char *j = json(f, NULL, 1 << 20), *o = pool_obj(j, "u1"), buf[64];
    assert_non_null(o);
    assert_has(j, "\"since\":0");
    assert_has(o, "\"database\":\"app\"");
    assert_has(o, "\"pool_mode\":\"transaction\"");
    assert_has(o, "\"n\":2");
    assert_has(o, "\"xact\":[0,100]"); /* the first second: the 5000 from before are not in it */
    assert_has(o, "\"query\":[0,150]");
    snprintf(buf, sizeof(buf), "\"p50\":[0,%.0f]", stats_hist_quantile(&h, 0.5));
    assert_has(o, buf);
    snprintf(buf, sizeof(buf), "\"p99\":[0,%.0f]", stats_hist_quantile(&h, 0.99));
    assert_has(o, buf);
    assert_has(o, "\"cl_waiting\":[0,3]");
    assert_has(o, "\"sv_idle\":[0,2]");
    assert_has(j, "\"total\":{\"n\":2,\"xact\":[0,100],\"query\":[0,150]");
    char since[96];
    cursor_query(j, since, sizeof(since));
    free(o);
    free(j);

    /* two seconds, 400 transactions: 200 per second; no query finished: p50 0 */
    p->stats.xact_count += 400;
    p->waiting.count = 0;
    tick(f, 2.0);
    j = json(f, since, 1 << 20);
    o = pool_obj(j, "u1");
    assert_has(j, "\"since\":2");
    assert_has(o, "\"n\":1,\"xact\":[200],\"query\":[0],\"p50\":[0],\"p99\":[0]");
    assert_has(o, "\"cl_waiting\":[0]");
    free(o);
    free(j);

    /* the same cursor again after no tick: nothing new, the pool still listed */
    j = json(f, NULL, 1 << 20);
    cursor_query(j, since, sizeof(since));
    free(j);
    j = json(f, since, 1 << 20);
    o = pool_obj(j, "u1");
    assert_non_null(o);
    assert_has(o, "\"n\":0,\"xact\":[]");
    free(o);
    free(j);

    /* without a cursor: everything */
    j = json(f, "x=1&since=", 1 << 20);
    o = pool_obj(j, "u1");
    assert_has(o, "\"n\":3,\"xact\":[0,100,200]");
    free(o);
    free(j);
}

static void test_pools_come_and_go(void **state)
{
    Fixture *f = *state;
    Database *db = fake_db(f->loop, "app");
    Pool *a = fake_pool(db, "a");
    Pool *b = fake_pool(db, "b");
    start(f);
    a->stats.xact_count = 10;
    b->stats.xact_count = 20;
    tick(f, 1.0);
    char *j = json(f, NULL, 1 << 20);
    assert_has(j, "\"id\":1,");
    assert_has(j, "\"id\":2,");
    assert_has(j, "\"total\":{\"n\":2,\"xact\":[0,30]");
    free(j);

    /* b is freed: its history goes at the next tick; a's counter went back (recreated) */
    pool_gone(b);
    a->stats.xact_count = 4;
    tick(f, 1.0);
    j = json(f, NULL, 1 << 20);
    assert_null(pool_obj(j, "b"));
    char *o = pool_obj(j, "a");
    assert_has(o, "\"xact\":[0,10,4]");
    free(o);
    free(j);

    /* b again: a new series (new id), counted from zero */
    b = fake_pool(db, "b");
    b->stats.xact_count = 7;
    tick(f, 1.0);
    j = json(f, NULL, 1 << 20);
    o = pool_obj(j, "b");
    assert_has(o, "\"id\":3,");
    assert_has(o, "\"n\":1,\"xact\":[7]");
    free(o);
    free(j);

    /* a name with quotes, backslashes and control characters stays valid JSON */
    Database *odd = fake_db(f->loop, "we\"ird\\db\n");
    fake_pool(odd, "u\x01");
    tick(f, 1.0);
    j = json(f, NULL, 1 << 20);
    assert_has(j, "\"database\":\"we\\\"ird\\\\db\\u000a\",\"user\":\"u\\u0001\"");
    free(j);
}

static void test_window_and_stale_cursors(void **state)
{
    Fixture *f = *state;
    Pool *p = fake_pool(fake_db(f->loop, "app"), "u");
    start(f);
    char since[96];
    char *j = json(f, NULL, 1 << 20);
    cursor_query(j, since, sizeof(since));
    free(j);
    for (int i = 0; i < DASH_WINDOW + 10; i++) {
        p->stats.xact_count += 1;
        tick(f, 1.0);
    }
    /* a cursor older than the window, from another process, or garbled: everything */
    const char *queries[] = {since, "since=1.5", "since=abc", "since=", NULL};
    for (int q = 0; queries[q]; q++) {
        j = json(f, queries[q], 1 << 20);
        assert_has(j, "\"since\":0");
        char *o = pool_obj(j, "u");
        char want[32];
        snprintf(want, sizeof(want), "\"n\":%d,", DASH_WINDOW);
        assert_has(o, want);
        assert_has(j, "\"process\":{");
        free(o);
        free(j);
    }
}

/* The sum and the count of the numbers in `"xact":[...]` of the first pool. */
static void xact_stats(const char *j, long *sum, int *n)
{
    const char *p = strstr(strstr(j, "\"pools\":["), "\"xact\":[");
    assert_non_null(p);
    p += 8;
    *sum = 0;
    *n = 0;
    while (*p != ']') {
        char *end;
        *sum += strtol(p, &end, 10);
        (*n)++;
        p = *end == ',' ? end + 1 : end;
    }
}

/* A pool idle for a whole window keeps no ring; its history still reads right. */
static void test_idle_pool_history(void **state)
{
    Fixture *f = *state;
    Pool *p = fake_pool(fake_db(f->loop, "app"), "u");
    start(f);
    p->stats.xact_count += 5;
    tick(f, 1.0);
    long sum;
    int n;
    for (int i = 0; i < DASH_WINDOW - 2; i++)
        tick(f, 1.0);
    char *j = json(f, NULL, 1 << 20);
    xact_stats(j, &sum, &n);
    assert_int_equal(n, DASH_WINDOW);
    assert_int_equal(sum, 5); /* still in the window */
    assert_has(j, "\"xact\":[0,5,0,");
    free(j);
    for (int i = 0; i < 20; i++) /* the 5 leaves the window: the ring goes */
        tick(f, 1.0);
    j = json(f, NULL, 1 << 20);
    xact_stats(j, &sum, &n);
    assert_int_equal(sum, 0);
    free(j);
    p->stats.xact_count += 7; /* busy again: a new ring, zeros before */
    p->idle_clients.count = 1;
    tick(f, 1.0);
    j = json(f, NULL, 1 << 20);
    xact_stats(j, &sum, &n);
    assert_int_equal(n, DASH_WINDOW);
    assert_int_equal(sum, 7);
    assert_has(j, ",0,7],\"query\":[");
    assert_has(j, ",0,1],\"cl_waiting\":[");
    free(j);
}

static void test_slices_agree(void **state)
{
    Fixture *f = *state;
    for (int d = 0; d < 5; d++) {
        char name[16];
        snprintf(name, sizeof(name), "db%d", d);
        Database *db = fake_db(f->loop, name);
        for (int u = 0; u < 20; u++) {
            snprintf(name, sizeof(name), "user%d", u);
            fake_pool(db, name)->stats.xact_count = (uint64_t)(d * 100 + u);
        }
    }
    start(f);
    for (int i = 0; i < 30; i++)
        tick(f, 1.0);
    char *whole = json(f, NULL, 1 << 24);
    char *sliced = json(f, NULL, 1); /* one pool per slice */
    char *mid = json(f, NULL, 4096);
    assert_string_equal(whole, sliced);
    assert_string_equal(whole, mid);
    /* every pool once, the answer closed */
    int pools = 0;
    for (const char *s = whole; (s = strstr(s, "\"user\":\"")); s++)
        pools++;
    assert_int_equal(pools, 100);
    size_t n = strlen(whole);
    assert_true(n > 2 && strcmp(whole + n - 3, "]}\n") == 0);
    free(whole);
    free(sliced);
    free(mid);
}

static void test_process_series(void **state)
{
    Fixture *f = *state;
    start(f);
    f->loop->stats.lag_hist[5]++; /* a lag of at most 32 us */
    f->loop->stats.lag_max = 20;
    tick(f, 1.0);
    f->loop->stats.lag_hist[12]++; /* at most 4096 us */
    f->loop->stats.lag_max = 3000;
    tick(f, 1.0);
    tick(f, 1.0); /* nothing measured */
    char *j = json(f, NULL, 1 << 20);
    assert_has(j, "\"lag_us\":[0,20,3000,0]");
    assert_has(j, "\"workq_depth\":[0,0,0,0]");
    assert_has(j, "\"pools\":[]");
    free(j);
}

static void test_page_and_csp(void **state)
{
    Fixture *f = *state;
    start(f);
    size_t len;
    const char *page = (const char *)dash_page(&len);
    assert_int_equal(len, strlen(page)); /* one string, NUL after it */
    /* the CSP allows one inline script by its hash: there must be exactly one */
    const char *s1 = strstr(page, "<script>");
    assert_non_null(s1);
    assert_null(strstr(s1 + 1, "<script"));
    assert_null(strstr(page, "<script src"));
    /* nothing from elsewhere (the SVG namespace URI is a name, not a fetch) */
    assert_null(strstr(page, "src=\"http"));
    assert_null(strstr(page, "href=\"http"));
    assert_null(strstr(page, "url("));
    assert_null(strstr(page, "@import"));
    const char *csp = dash_page_csp(f->ds);
    assert_non_null(strstr(csp, "script-src 'sha256-"));
    assert_non_null(strstr(csp, "default-src 'none'"));
    assert_non_null(strstr(csp, "connect-src 'self'"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_rates_quantiles_and_cursor, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pools_come_and_go, setup, teardown),
        cmocka_unit_test_setup_teardown(test_window_and_stale_cursors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_pool_history, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slices_agree, setup, teardown),
        cmocka_unit_test_setup_teardown(test_process_series, setup, teardown),
        cmocka_unit_test_setup_teardown(test_page_and_csp, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
