/* test_params.c — tracked session parameters and the SET statements between them. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>

#include "params.h"

static void test_set_get_case_insensitive(void **state)
{
    (void)state;
    ParamSet ps;
    params_init(&ps);
    assert_int_equal(params_set(&ps, "TimeZone", "UTC"), 0);
    assert_string_equal(params_get(&ps, "timezone"), "UTC");
    assert_int_equal(params_set(&ps, "TIMEZONE", "Europe/Paris"), 0);
    assert_int_equal(ps.n, 1);
    assert_string_equal(params_get(&ps, "TimeZone"), "Europe/Paris");
    params_unset(&ps, "timezone");
    assert_null(params_get(&ps, "TimeZone"));
    params_free(&ps);
}

static void test_diff_reported(void **state)
{
    (void)state;
    ParamSet client, server, applied, defaults;
    params_init(&client);
    params_init(&server);
    params_init(&applied);
    params_init(&defaults);
    char sql[1024];
    assert_int_equal(params_set(&defaults, "TimeZone", "Etc/UTC"), 0);
    assert_int_equal(params_set(&server, "TimeZone", "Etc/UTC"), 0);
    assert_int_equal(params_set(&server, "application_name", ""), 0);
    /* identical: nothing to do */
    assert_int_equal(params_diff_sql(&client, &server, &applied, &defaults, sql, sizeof(sql)), 0);
    /* the client's own value differs */
    assert_int_equal(params_set(&client, "TimeZone", "America/New_York"), 0);
    assert_int_equal(params_diff_sql(&client, &server, &applied, &defaults, sql, sizeof(sql)), 1);
    assert_string_equal(sql,
                        "SELECT pg_catalog.set_config('TimeZone', 'America/New_York', false);");
    /* a server left with another client's application_name gets '' back */
    params_unset(&client, "TimeZone");
    assert_int_equal(params_set(&server, "application_name", "other-app"), 0);
    assert_int_equal(params_diff_sql(&client, &server, &applied, &defaults, sql, sizeof(sql)), 1);
    assert_string_equal(sql, "SELECT pg_catalog.set_config('application_name', '', false);");
    params_free(&client);
    params_free(&server);
    params_free(&applied);
    params_free(&defaults);
}

static void test_diff_extras_and_reset(void **state)
{
    (void)state;
    ParamSet client, server, applied, defaults;
    params_init(&client);
    params_init(&server);
    params_init(&applied);
    params_init(&defaults);
    char sql[1024];
    assert_int_equal(params_set(&server, "application_name", ""), 0);
    assert_int_equal(params_set(&client, "statement_timeout", "1234"), 0);
    assert_int_equal(params_diff_sql(&client, &server, &applied, &defaults, sql, sizeof(sql)), 1);
    assert_string_equal(sql, "SELECT pg_catalog.set_config('statement_timeout', '1234', false);");
    /* already applied: nothing */
    assert_int_equal(params_set(&applied, "statement_timeout", "1234"), 0);
    assert_int_equal(params_diff_sql(&client, &server, &applied, &defaults, sql, sizeof(sql)), 0);
    /* another client without it: RESET */
    params_unset(&client, "statement_timeout");
    assert_int_equal(params_diff_sql(&client, &server, &applied, &defaults, sql, sizeof(sql)), 1);
    assert_string_equal(sql, "RESET statement_timeout;");
    /* unsafe names are never sent; quotes in values are escaped */
    assert_int_equal(params_set(&client, "x; drop table t", "1"), 0);
    assert_int_equal(params_set(&client, "search_path", "a', b"), 0);
    params_free(&applied);
    params_init(&applied);
    assert_int_equal(params_diff_sql(&client, &server, &applied, &defaults, sql, sizeof(sql)), 1);
    assert_string_equal(sql, "SELECT pg_catalog.set_config('search_path', 'a'', b', false);");
    /* too small a buffer is an error, not a truncated statement */
    assert_int_equal(params_diff_sql(&client, &server, &applied, &defaults, sql, 10), -1);
    params_free(&client);
    params_free(&server);
    params_free(&applied);
    params_free(&defaults);
}

static void test_startup_restore(void **state)
{
    (void)state;
    ParamSet ps;
    params_init(&ps);
    assert_int_equal(params_set(&ps, "statement_timeout", "1234"), 0);
    params_mark_startup(&ps);
    /* the startup string is shared, not copied */
    assert_ptr_equal(ps.v[0].startup, ps.v[0].value);
    assert_int_equal(params_set(&ps, "statement_timeout", "5"), 0);
    assert_int_equal(params_set(&ps, "TimeZone", "UTC"), 0);
    assert_string_equal(params_get(&ps, "statement_timeout"), "5");
    params_restore_startup(&ps);
    assert_string_equal(params_get(&ps, "statement_timeout"), "1234");
    /* set after startup: left alone (the server reports its own default) */
    assert_string_equal(params_get(&ps, "TimeZone"), "UTC");
    /* change again after a restore, then free: no leak, no double free */
    assert_int_equal(params_set(&ps, "statement_timeout", "7"), 0);
    params_free(&ps);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_set_get_case_insensitive),
        cmocka_unit_test(test_diff_reported),
        cmocka_unit_test(test_diff_extras_and_reset),
        cmocka_unit_test(test_startup_restore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
