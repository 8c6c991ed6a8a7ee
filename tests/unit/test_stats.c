/* test_stats.c — histogram buckets and quantile interpolation (stats.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <math.h>
#include <string.h>

#include "stats.h"

static void test_bounds_ascending(void **state)
{
    (void)state;
    assert_int_equal(stats_hist_bounds[0], 10);
    assert_int_equal(stats_hist_bounds[STATS_HIST_BOUNDS - 1], 60000000);
    for (int i = 1; i < STATS_HIST_BOUNDS; i++)
        assert_true(stats_hist_bounds[i] > stats_hist_bounds[i - 1]);
}

static void test_bucket_edges(void **state)
{
    StatsHist h;
    (void)state;
    memset(&h, 0, sizeof(h));
    stats_hist_add(&h, 0);        /* bucket 0 (<= 10) */
    stats_hist_add(&h, 10);       /* bucket 0: bounds are inclusive */
    stats_hist_add(&h, 11);       /* bucket 1 (<= 25) */
    stats_hist_add(&h, -5);       /* clamped to 0 */
    stats_hist_add(&h, 60000000); /* last finite bucket */
    stats_hist_add(&h, 60000001); /* +Inf */
    assert_int_equal(h.buckets[0], 3);
    assert_int_equal(h.buckets[1], 1);
    assert_int_equal(h.buckets[STATS_HIST_BOUNDS - 1], 1);
    assert_int_equal(h.buckets[STATS_HIST_BOUNDS], 1);
    assert_int_equal(h.count, 6);
    assert_int_equal(h.sum, 0 + 10 + 11 + 0 + 60000000 + 60000001);
}

static void test_quantiles(void **state)
{
    StatsHist h;
    (void)state;
    memset(&h, 0, sizeof(h));
    assert_true(stats_hist_quantile(&h, 0.5) == 0);
    /* 100 values in (100, 250]: the p50 is interpolated to the bucket's middle */
    for (int i = 0; i < 100; i++)
        stats_hist_add(&h, 200);
    assert_true(fabs(stats_hist_quantile(&h, 0.5) - 175.0) < 1e-9);
    assert_true(fabs(stats_hist_quantile(&h, 1.0) - 250.0) < 1e-9);
    /* add 100 values in (1000, 2500]: p50 is the top of the first bucket, p99 near 2500 */
    for (int i = 0; i < 100; i++)
        stats_hist_add(&h, 2000);
    assert_true(fabs(stats_hist_quantile(&h, 0.5) - 250.0) < 1e-9);
    double p99 = stats_hist_quantile(&h, 0.99);
    assert_true(p99 > 2400 && p99 <= 2500);
    double p95 = stats_hist_quantile(&h, 0.95);
    assert_true(fabs(p95 - (1000 + 1500 * 0.9)) < 1e-9);
    /* monotonic in q */
    double last = 0;
    for (double q = 0.01; q <= 1.0; q += 0.01) {
        double v = stats_hist_quantile(&h, q);
        assert_true(v >= last);
        last = v;
    }
}

static void test_overflow_and_merge(void **state)
{
    StatsHist a, b;
    (void)state;
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    stats_hist_add(&a, 5);
    stats_hist_add(&b, 100000000); /* beyond 60 s */
    stats_hist_merge(&a, &b);
    assert_int_equal(a.count, 2);
    assert_int_equal(a.sum, 100000005);
    /* the +Inf bucket reports the last finite bound */
    assert_true(stats_hist_quantile(&a, 1.0) == 60000000.0);
    assert_true(stats_hist_quantile(&a, 0.5) <= 10.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bounds_ascending),
        cmocka_unit_test(test_bucket_edges),
        cmocka_unit_test(test_quantiles),
        cmocka_unit_test(test_overflow_and_merge),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
