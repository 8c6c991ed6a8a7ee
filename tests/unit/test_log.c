/*
 * test_log.c — unit tests of the asynchronous logger (proxy/log.c).
 *
 * Each test writes into its own temporary directory, configures the logger,
 * and ends with log_shutdown() so that no writer thread outlives the test.
 * Counters are global to the process, so tests compare deltas.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "config.h"
#include "log.h"

static char tmpdir[64];
static char logpath[128];

static int setup_dir(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/pgfunnel-test-log-XXXXXX");
    if (!mkdtemp(tmpdir)) return -1;
    snprintf(logpath, sizeof(logpath), "%s/pgfunnel.log", tmpdir);
    return 0;
}

static int teardown_dir(void **state)
{
    char cmd[160];

    (void)state;
    log_shutdown();
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

/* Whole file as a NUL-terminated string (caller frees); "" when missing. */
static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    char *buf;
    long n;

    if (!f) return strdup("");
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = calloc(1, (size_t)n + 1);
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) buf[0] = '\0';
    fclose(f);
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* The n-th line (0-based) of s, without newline, into out. */
static void nth_line(const char *s, int n, char *out, size_t outlen)
{
    for (; n > 0 && *s; s++) {
        if (*s == '\n') n--;
    }
    size_t len = strcspn(s, "\n");
    if (len >= outlen) len = outlen - 1;
    memcpy(out, s, len);
    out[len] = '\0';
}

static void configure(int format, int verbose, int queue_lines)
{
    LogSettings s = {
        .logfile = logpath,
        .to_stderr = false,
        .syslog = false,
        .format = format,
        .verbose = verbose,
        .queue_lines = queue_lines,
    };
    char err[256] = "";

    assert_int_equal(log_configure(&s, err, sizeof(err)), 0);
}

static bool matches(const char *pattern, const char *s)
{
    regex_t re;
    bool ok;

    assert_int_equal(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    ok = regexec(&re, s, 0, NULL, 0) == 0;
    regfree(&re);
    return ok;
}

#define TS_RE "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3} UTC"

/* Before log_configure (and after log_shutdown) lines go to stderr synchronously. */
static void test_sync_stderr(void **state)
{
    char path[160], line[512];
    int saved, fd;
    uint64_t w0 = log_written_count();

    (void)state;
    snprintf(path, sizeof(path), "%s/stderr.txt", tmpdir);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    log_error("early failure %d", 42);
    /* and after a configure/shutdown cycle */
    configure(LOG_FORMAT_TEXT, 0, 0);
    log_shutdown();
    log_shutdown(); /* twice is fine */
    log_write(LOG_LEVEL_WARNING, "C-1 a@b 127.0.0.1:1", "after shutdown");
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);

    char *s = slurp(path);
    assert_int_equal(count_lines(s), 2);
    nth_line(s, 0, line, sizeof(line));
    assert_true(matches("^" TS_RE " \\[[0-9]+\\] ERROR early failure 42$", line));
    nth_line(s, 1, line, sizeof(line));
    assert_true(
        matches("^" TS_RE " \\[[0-9]+\\] WARNING C-1 a@b 127.0.0.1:1: after shutdown$", line));
    assert_true(log_written_count() - w0 == 2);
    free(s);
}

static void test_text_order(void **state)
{
    enum { N = 500 };
    char line[512], want[64];
    uint64_t w0 = log_written_count();

    (void)state;
    configure(LOG_FORMAT_TEXT, 0, 0);
    for (int i = 0; i < N; i++)
        log_info("line %d", i);
    log_write(LOG_LEVEL_WARNING, "C-17 app@db 127.0.0.1:5000", "client said %s", "bye");
    log_shutdown();

    char *s = slurp(logpath);
    assert_int_equal(count_lines(s), N + 1);
    for (int i = 0; i < N; i++) {
        nth_line(s, i, line, sizeof(line));
        snprintf(want, sizeof(want), " LOG line %d", i);
        assert_true(strlen(line) > strlen(want));
        assert_string_equal(line + strlen(line) - strlen(want), want);
    }
    nth_line(s, 0, line, sizeof(line));
    assert_true(matches("^" TS_RE " \\[[0-9]+\\] LOG line 0$", line));
    nth_line(s, N, line, sizeof(line));
    assert_true(matches(
        "^" TS_RE " \\[[0-9]+\\] WARNING C-17 app@db 127.0.0.1:5000: client said bye$", line));
    assert_true(log_written_count() - w0 == N + 1);
    free(s);
}

static void test_json(void **state)
{
    char line[1024];

    (void)state;
    configure(LOG_FORMAT_JSON, 0, 0);
    log_write(LOG_LEVEL_ERROR, "C-17 app@db 127.0.0.1:5000",
              "say \"hi\"\nnext\\ \t\x01 \xff caf\xc3\xa9");
    log_info("plain");
    log_shutdown();

    char *s = slurp(logpath);
    assert_int_equal(count_lines(s), 2);
    nth_line(s, 0, line, sizeof(line));
    assert_true(strncmp(line, "{\"ts\":\"", 7) == 0);
    assert_true(matches("^\\{\"ts\":\"" TS_RE "\",\"pid\":[0-9]+,\"level\":\"ERROR\","
                        "\"conn\":\"C-17 app@db 127.0.0.1:5000\",\"msg\":\".*\"\\}$",
                        line));
    assert_non_null(
        strstr(line, "\"msg\":\"say \\\"hi\\\"\\nnext\\\\ \\t\\u0001 \\ufffd caf\xc3\xa9\"}"));
    nth_line(s, 1, line, sizeof(line));
    assert_true(matches("^\\{\"ts\":\"" TS_RE "\",\"pid\":[0-9]+,\"level\":\"LOG\","
                        "\"msg\":\"plain\"\\}$",
                        line));
    assert_null(strstr(line, "conn"));
    free(s);
}

/* Text lines: whatever a client put into a name or a query cannot start a new line. */
static void test_text_escaping(void **state)
{
    char line[1024];

    (void)state;
    configure(LOG_FORMAT_TEXT, 0, 0);
    log_write(LOG_LEVEL_LOG,
              "C-1 evil\n2026-01-01 00:00:00.000 UTC [1] LOG C-2 x@y 1.2.3.4:5@db 1.2.3.4:5",
              "login attempt: ok\r\nforged\t\x1b[31m back\\slash \x7f \xff caf\xc3\xa9\n");
    log_info("plain");
    log_shutdown();

    char *s = slurp(logpath);
    assert_int_equal(count_lines(s), 2);
    nth_line(s, 0, line, sizeof(line));
    assert_true(matches("^" TS_RE " \\[[0-9]+\\] LOG C-1 evil\\\\n2026", line));
    assert_non_null(strstr(line,
                           "1.2.3.4:5@db 1.2.3.4:5: login attempt: ok\\r\\nforged\\t\\x1b[31m "
                           "back\\\\slash \\x7f \\xff caf\xc3\xa9"));
    /* the trailing newline of the message is dropped, not escaped */
    assert_string_equal(line + strlen(line) - 5, "caf\xc3\xa9");
    nth_line(s, 1, line, sizeof(line));
    assert_true(matches("^" TS_RE " \\[[0-9]+\\] LOG plain$", line));
    free(s);
}

static int evaluated;
static int side_effect(void)
{
    return ++evaluated;
}

static void test_level_filter(void **state)
{
    (void)state;
    configure(LOG_FORMAT_TEXT, 0, 0);
    assert_int_equal(log_max_level, LOG_LEVEL_LOG);
    evaluated = 0;
    log_debug("debug %d", side_effect()); /* not formatted, arguments not evaluated */
    log_noise("noise");
    log_write(LOG_LEVEL_DEBUG, NULL, "direct debug"); /* log_write checks too */
    log_info("info");
    assert_int_equal(evaluated, 0);

    configure(LOG_FORMAT_TEXT, 1, 0);
    assert_int_equal(log_max_level, LOG_LEVEL_DEBUG);
    log_debug("debug %d", side_effect());
    log_noise("noise");
    assert_int_equal(evaluated, 1);

    configure(LOG_FORMAT_TEXT, 2, 0);
    assert_int_equal(log_max_level, LOG_LEVEL_NOISE);
    log_noise("noise2");
    log_shutdown();

    char *s = slurp(logpath);
    assert_int_equal(count_lines(s), 3);
    assert_non_null(strstr(s, " LOG info\n"));
    assert_non_null(strstr(s, " DEBUG debug 1\n"));
    assert_non_null(strstr(s, " NOISE noise2\n"));
    assert_null(strstr(s, "direct debug"));
    free(s);
}

static void test_reopen(void **state)
{
    char rotated[160];

    (void)state;
    snprintf(rotated, sizeof(rotated), "%s.1", logpath);
    configure(LOG_FORMAT_TEXT, 0, 0);
    log_info("before rotation");
    log_flush();
    assert_int_equal(rename(logpath, rotated), 0);
    log_info("still old file?"); /* may land in either: not checked */
    log_flush();
    log_reopen();
    log_info("after rotation");
    log_shutdown();

    char *old = slurp(rotated), *cur = slurp(logpath);
    assert_non_null(strstr(old, "before rotation"));
    assert_null(strstr(old, "after rotation"));
    assert_non_null(strstr(cur, "after rotation"));
    assert_null(strstr(cur, "before rotation"));
    free(old);
    free(cur);
}

static void test_change_logfile(void **state)
{
    char other[160];
    LogSettings s = {.logfile = other, .to_stderr = false};
    char err[256];

    (void)state;
    snprintf(other, sizeof(other), "%s/other.log", tmpdir);
    configure(LOG_FORMAT_TEXT, 0, 0);
    log_info("first");
    assert_int_equal(log_configure(&s, err, sizeof(err)), 0);
    log_info("second");
    log_shutdown();

    char *a = slurp(logpath), *b = slurp(other);
    assert_non_null(strstr(a, "first"));
    assert_null(strstr(a, "second"));
    assert_non_null(strstr(b, "second"));
    free(a);
    free(b);
}

static void test_queue_full(void **state)
{
    uint64_t d0 = log_dropped_count(), w0 = log_written_count();

    (void)state;
    configure(LOG_FORMAT_TEXT, 0, 4);
    log_pause_writer(true);
    for (int i = 0; i < 10; i++)
        log_info("queued %d", i);
    assert_true(log_dropped_count() - d0 == 6);
    log_pause_writer(false);
    log_flush();
    assert_true(log_written_count() - w0 == 4);
    log_shutdown();

    char *s = slurp(logpath);
    assert_int_equal(count_lines(s), 5);
    for (int i = 0; i < 4; i++) {
        char want[32];
        snprintf(want, sizeof(want), " LOG queued %d\n", i);
        assert_non_null(strstr(s, want));
    }
    assert_null(strstr(s, "queued 4"));
    assert_non_null(strstr(s, " WARNING log: 6 lines dropped (queue full)\n"));
    free(s);
}

static void *spam_thread(void *arg)
{
    int id = (int)(intptr_t)arg;

    for (int i = 0; i < 2000; i++)
        log_write(LOG_LEVEL_LOG, "C-1 u@d 127.0.0.1:1", "thread %d line %d", id, i);
    return NULL;
}

/* Many threads against a small queue: every line is either written or counted as dropped. */
static void test_concurrent_accounting(void **state)
{
    enum { T = 4 };
    pthread_t th[T];
    uint64_t d0 = log_dropped_count(), w0 = log_written_count();

    (void)state;
    configure(LOG_FORMAT_JSON, 0, 64);
    for (int i = 0; i < T; i++)
        assert_int_equal(pthread_create(&th[i], NULL, spam_thread, (void *)(intptr_t)i), 0);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    log_shutdown();
    uint64_t dropped = log_dropped_count() - d0, written = log_written_count() - w0;
    assert_true(dropped + written == T * 2000);

    char *s = slurp(logpath);
    int lines = count_lines(s);
    /* plus at most a few "lines dropped" reports */
    assert_true((uint64_t)lines >= written);
    assert_true(strstr(s, "lines dropped") != NULL || dropped == 0);
    free(s);
}

static void *warn_thread(void *arg)
{
    for (int i = 0; i < 50; i++)
        log_warning("thread %d warning %d", (int)(intptr_t)arg, i);
    return NULL;
}

/* The ring of recent warnings behind the dashboard: levels, escaping, bounds, threads. */
static void test_recent_warnings(void **state)
{
    enum { T = 4 };
    LogRecent r[LOG_RECENT_MAX + 4];
    pthread_t th[T];
    uint64_t t0, total;

    (void)state;
    configure(LOG_FORMAT_JSON, 0, 0); /* the ring keeps text whatever the format */
    log_recent_warnings(r, 0, &t0);
    log_info("not kept: LOG");
    log_warning("w1 \"quoted\" \\ back\nnewline\x01 bad \xff end\n");
    log_write(LOG_LEVEL_ERROR, "C-9 u@d 1.2.3.4:5", "e2");
    int n = log_recent_warnings(r, 2, &total);
    assert_int_equal(n, 2);
    assert_true(total == t0 + 2);
    assert_true(r[0].seq == t0 + 1 && r[1].seq == t0 + 2);
    assert_int_equal(r[0].level, LOG_LEVEL_WARNING);
    assert_int_equal(r[1].level, LOG_LEVEL_ERROR);
    assert_string_equal(r[0].text, "w1 \"quoted\" \\\\ back\\nnewline\\x01 bad \\xff end");
    assert_string_equal(r[1].text, "C-9 u@d 1.2.3.4:5: e2");
    assert_true(matches("^" TS_RE "$", r[1].ts));
    assert_string_equal(log_level_name(r[1].level), "ERROR");

    /* long lines are cut to the entry's size and say so */
    char *big = malloc(3000);
    memset(big, 'x', 2999);
    big[2999] = 0;
    log_warning("%s", big);
    free(big);
    n = log_recent_warnings(r, 1, &total);
    assert_int_equal(n, 1);
    assert_true(strlen(r[0].text) < LOG_RECENT_TEXT);
    assert_true(strlen(r[0].text) > LOG_RECENT_TEXT - 10);
    assert_string_equal(r[0].text + strlen(r[0].text) - 3, "...");

    /* from several threads at once: bounded, consecutive, newest last */
    for (int i = 0; i < T; i++)
        assert_int_equal(pthread_create(&th[i], NULL, warn_thread, (void *)(intptr_t)i), 0);
    for (int i = 0; i < T; i++)
        pthread_join(th[i], NULL);
    n = log_recent_warnings(r, LOG_RECENT_MAX + 4, &total);
    assert_int_equal(n, LOG_RECENT_MAX);
    assert_true(total == t0 + 3 + T * 50);
    for (int i = 0; i < n; i++) {
        assert_true(r[i].seq == total - (uint64_t)n + 1 + (uint64_t)i);
        assert_true(matches("^thread [0-9] warning [0-9]+$", r[i].text));
    }
    log_shutdown();
}

static void test_truncation(void **state)
{
    char *big = malloc(10001);
    char line[8192];

    (void)state;
    memset(big, 'x', 10000);
    big[10000] = '\0';
    configure(LOG_FORMAT_TEXT, 0, 0);
    log_info("%s", big);
    configure(LOG_FORMAT_JSON, 0, 0);
    log_info("%s", big);
    memset(big, '"', 10000); /* escapes double the size */
    log_info("%s", big);
    log_shutdown();

    char *s = slurp(logpath);
    assert_int_equal(count_lines(s), 3);
    nth_line(s, 0, line, sizeof(line));
    assert_true(strlen(line) <= 4096 + 16);
    assert_true(strlen(line) > 4000);
    assert_string_equal(line + strlen(line) - 6, "xxx...");
    for (int i = 1; i <= 2; i++) {
        nth_line(s, i, line, sizeof(line));
        assert_true(strlen(line) <= 4096 + 16);
        assert_true(strncmp(line, "{\"ts\":\"", 7) == 0);
        assert_string_equal(line + strlen(line) - 5, "...\"}");
    }
    /* an escape sequence is never cut in half */
    assert_string_equal(line + strlen(line) - 7, "\\\"...\"}");
    free(s);
    free(big);
}

static void test_fatal_written_immediately(void **state)
{
    (void)state;
    configure(LOG_FORMAT_TEXT, 0, 0);
    log_info("before");
    log_fatal("going down: %s", "test");
    /* no flush: a FATAL line is on disk when log_write returns */
    char *s = slurp(logpath);
    assert_non_null(strstr(s, " LOG before\n"));
    assert_non_null(strstr(s, " FATAL going down: test\n"));
    free(s);
    log_shutdown();
}

static void test_configure_errors(void **state)
{
    char bad[160], err[256] = "";
    LogSettings s = {.logfile = bad, .to_stderr = false};

    (void)state;
    snprintf(bad, sizeof(bad), "%s/no/such/dir/x.log", tmpdir);
    assert_int_equal(log_configure(&s, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "x.log"));

    s.logfile = NULL;
    s.syslog = true;
    s.syslog_facility = "nonsense";
    err[0] = '\0';
    assert_int_equal(log_configure(&s, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "nonsense"));
}

static void test_syslog_smoke(void **state)
{
    LogSettings s = {.syslog = true, .syslog_ident = "pgfunnel-test", .syslog_facility = "local0"};
    char err[256];

    (void)state;
    assert_int_equal(log_configure(&s, err, sizeof(err)), 0);
    log_info("syslog smoke test line");
    log_flush();
    log_shutdown();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_sync_stderr, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_text_order, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_json, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_text_escaping, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_level_filter, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_reopen, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_change_logfile, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_queue_full, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_concurrent_accounting, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_recent_warnings, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_truncation, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_fatal_written_immediately, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_configure_errors, setup_dir, teardown_dir),
        cmocka_unit_test_setup_teardown(test_syslog_smoke, setup_dir, teardown_dir),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
