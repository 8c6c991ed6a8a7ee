/* test_userlist.c — PgBouncer auth_file parsing and lookup. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "userlist.h"

static Userlist *parse(const char *text, char *err, size_t errlen)
{
    err[0] = '\0';
    return userlist_parse("userlist.txt", text, strlen(text), err, errlen);
}

static void test_basic(void **state)
{
    (void)state;
    char err[256];
    const char *text = "; a comment\n"
                       "# another comment\n"
                       "\n"
                       "   \t\n"
                       "\"postgres\" \"postgres\"\n"
                       "\"md5user\" \"md57541d4e65fae11bd07f18dc6fe2b02bc\"\r\n"
                       "  \"scramuser\"\t\"SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5\"  ; trailing\n"
                       "\"we\"\"ird\" \"pa ss\"\"word\"\n"
                       "\"empty\" \"\"\n"
                       "\"extra\" \"pw\" \"\" \"more fields\"\n"
                       "\"last\" \"no newline\"";
    Userlist *ul = parse(text, err, sizeof(err));
    assert_non_null(ul);
    assert_int_equal(userlist_count(ul), 7);
    assert_string_equal(userlist_get(ul, "postgres"), "postgres");
    assert_string_equal(userlist_get(ul, "md5user"), "md57541d4e65fae11bd07f18dc6fe2b02bc");
    assert_string_equal(userlist_get(ul, "scramuser"), "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5");
    assert_string_equal(userlist_get(ul, "we\"ird"), "pa ss\"word");
    assert_string_equal(userlist_get(ul, "empty"), "");
    assert_string_equal(userlist_get(ul, "extra"), "pw");
    assert_string_equal(userlist_get(ul, "last"), "no newline");
    /* case-sensitive, no prefix matches */
    assert_null(userlist_get(ul, "Postgres"));
    assert_null(userlist_get(ul, "postgre"));
    assert_null(userlist_get(ul, "nobody"));
    assert_null(userlist_get(ul, ""));
    userlist_free(ul);

    ul = parse("", err, sizeof(err));
    assert_non_null(ul);
    assert_int_equal(userlist_count(ul), 0);
    assert_null(userlist_get(ul, "x"));
    userlist_free(ul);
    userlist_free(NULL);
}

static void test_duplicates_last_wins(void **state)
{
    (void)state;
    char err[256];
    Userlist *ul = parse("\"a\" \"1\"\n\"b\" \"x\"\n\"a\" \"2\"\n\"A\" \"3\"\n\"a\" \"4\"\n", err,
                         sizeof(err));
    assert_non_null(ul);
    assert_int_equal(userlist_count(ul), 3);
    assert_string_equal(userlist_get(ul, "a"), "4");
    assert_string_equal(userlist_get(ul, "A"), "3");
    assert_string_equal(userlist_get(ul, "b"), "x");
    userlist_free(ul);
}

static void expect_error(const char *text, const char *msg)
{
    char err[256];
    Userlist *ul = parse(text, err, sizeof(err));
    assert_null(ul);
    if (!strstr(err, msg)) fail_msg("error \"%s\" does not contain \"%s\"", err, msg);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("\"a\" \"b\"\n\"unterminated x\n", "userlist.txt:2: ");
    expect_error("\"a\" \"b\"\n\"unterminated x\n", "unterminated quoted string");
    expect_error("\"a\" \"b\n", "userlist.txt:1: unterminated quoted string");
    expect_error("\n\n\"alone\"\n", "userlist.txt:3: missing secret");
    expect_error("\"alone\"   ; comment\n", "userlist.txt:1: missing secret");
    expect_error("\"a\" \"b\" garbage\n", "userlist.txt:1: garbage after secret");
    expect_error("\"a\" \"b\"garbage\n", "userlist.txt:1: garbage after secret");
    expect_error("\"a\" \"b\" \"c\"x\n", "garbage after secret");
    expect_error("a b\n", "userlist.txt:1: user name must be in double quotes");
    expect_error("\"a\" b\n", "userlist.txt:1: secret must be in double quotes");
    expect_error("\"\" \"b\"\n", "userlist.txt:1: empty user name");
    expect_error("\"a\" \"b\" \"c\n", "unterminated quoted string");
    /* an error message never carries the secret */
    char err[256];
    assert_null(parse("\"a\" \"topsecret\" junk\n", err, sizeof(err)));
    assert_null(strstr(err, "topsecret"));
    /* embedded NUL */
    assert_null(userlist_parse("u", "\"a\" \"b\0\"\n", 9, err, sizeof(err)));
    assert_string_equal(err, "u:1: NUL byte in line");
    /* a too long user name */
    char big[400];
    memset(big, 'x', sizeof(big));
    big[0] = '"';
    memcpy(big + 200, "\" \"s\"", 6);
    expect_error(big, "user name too long");
}

static void test_many_users(void **state)
{
    (void)state;
    char err[256];
    const int n = 5000;
    size_t cap = (size_t)n * 40 + 1;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t len = 0;
    /* in descending order, so that sorting matters */
    for (int i = n - 1; i >= 0; i--)
        len += (size_t)snprintf(text + len, cap - len, "\"user%d\" \"pw%d\"\n", i, i);
    Userlist *ul = userlist_parse("big", text, len, err, sizeof(err));
    assert_non_null(ul);
    assert_int_equal(userlist_count(ul), n);
    char u[32], p[32];
    for (int i = 0; i < n; i++) {
        snprintf(u, sizeof(u), "user%d", i);
        snprintf(p, sizeof(p), "pw%d", i);
        assert_string_equal(userlist_get(ul, u), p);
    }
    assert_null(userlist_get(ul, "user5000"));
    userlist_free(ul);
    free(text);
}

static void test_load_file(void **state)
{
    (void)state;
    char err[256];
    char path[] = "/tmp/test_userlist_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "\"u1\" \"p1\"\n\"u2\"\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_null(userlist_load(path, err, sizeof(err)));
    char expect[300];
    snprintf(expect, sizeof(expect), "%s:2: missing secret", path);
    assert_non_null(strstr(err, expect));

    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("\"u1\" \"p1\"\n\"u2\" \"p2\"\n", f);
    fclose(f);
    Userlist *ul = userlist_load(path, err, sizeof(err));
    assert_non_null(ul);
    assert_int_equal(userlist_count(ul), 2);
    assert_string_equal(userlist_get(ul, "u2"), "p2");
    userlist_free(ul);
    unlink(path);

    assert_null(userlist_load("/nonexistent/userlist.txt", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/userlist.txt"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),     cmocka_unit_test(test_duplicates_last_wins),
        cmocka_unit_test(test_errors),    cmocka_unit_test(test_many_users),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
