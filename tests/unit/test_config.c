/*
 * test_config.c — unit tests of the configuration module (config.h).
 *
 * Each test writes small INI files into a private mkdtemp() directory and
 * loads them, checking values, warnings and the exact "file:line: message"
 * of errors.  Every Config is freed, so running under ASan/LeakSanitizer
 * also proves the loader frees everything on both the success and the error
 * paths.  Run from the repository root (make unit does): the sample and
 * compatibility files are read as conf/... relative to the working directory.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"

static char tmpdir[512];
static char errbuf[8192];

/* ------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------ */

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "%s/pgfunnel-test-config-XXXXXX",
             getenv("TMPDIR") != NULL ? getenv("TMPDIR") : "/tmp");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    return nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Write `content` to tmpdir/name (creating one level of subdirectory). */
static const char *write_file(const char *name, const char *content)
{
    static char path[PATH_MAX];
    const char *slash = strrchr(name, '/');
    FILE *fp;

    if (slash != NULL) {
        char dir[PATH_MAX];

        snprintf(dir, sizeof(dir), "%s/%.*s", tmpdir, (int)(slash - name), name);
        mkdir(dir, 0700);
    }
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(content, fp);
    fclose(fp);
    return path;
}

/* Load `content` as tmpdir/t.ini; errors land in errbuf. */
static Config *load_text(const char *content)
{
    const char *path = write_file("t.ini", content);

    errbuf[0] = '\0';
    return config_load(path, errbuf, sizeof(errbuf));
}

/* Load [pgbouncer] + one line; expect success. */
static Config *load_option(const char *line)
{
    char text[1024];
    Config *cfg;

    snprintf(text, sizeof(text), "[pgbouncer]\n%s\n", line);
    cfg = load_text(text);
    if (cfg == NULL) fail_msg("load of \"%s\" failed: %s", line, errbuf);
    return cfg;
}

/* Load [pgbouncer] + one line; expect failure whose message contains `want`. */
static void expect_option_error(const char *line, const char *want)
{
    char text[1024];
    Config *cfg;

    snprintf(text, sizeof(text), "[pgbouncer]\n%s\n", line);
    cfg = load_text(text);
    if (cfg != NULL) {
        config_free(cfg);
        fail_msg("\"%s\" loaded, expected error \"%s\"", line, want);
    }
    if (strstr(errbuf, "t.ini:2: ") == NULL || strstr(errbuf, want) == NULL)
        fail_msg("\"%s\": error \"%s\" does not contain t.ini:2: and \"%s\"", line, errbuf, want);
}

/* The error text must contain `want` (messages carry the temp dir path). */
static void assert_err_contains(const char *want)
{
    if (strstr(errbuf, want) == NULL)
        fail_msg("error \"%s\" does not contain \"%s\"", errbuf, want);
}

static bool has_warning(const Config *cfg, const char *want)
{
    for (int i = 0; i < cfg->nwarnings; i++) {
        if (strstr(cfg->warnings[i], want) != NULL) return true;
    }
    return false;
}

static int count_lines(const char *s)
{
    int n = *s != '\0';

    for (; *s != '\0'; s++)
        n += *s == '\n';
    return n;
}

/* ------------------------------------------------------------------------
 * Defaults and the table
 * ------------------------------------------------------------------------ */

static void test_defaults(void **state)
{
    Config *cfg = config_defaults();

    (void)state;
    assert_non_null(cfg);
    assert_int_equal(cfg->listen_port, 6432);
    assert_string_equal(cfg->listen_addr, "");
    assert_string_equal(cfg->unix_socket_dir, "/tmp");
    assert_int_equal(cfg->unix_socket_mode, 0777);
    assert_int_equal(cfg->auth_type, AUTH_TYPE_MD5);
    assert_int_equal(cfg->pool_mode, POOL_MODE_SESSION);
    assert_int_equal(cfg->max_client_conn, 100);
    assert_int_equal(cfg->default_pool_size, 20);
    assert_int_equal(cfg->reserve_pool_timeout, 5 * USEC_PER_SEC);
    assert_string_equal(cfg->server_reset_query, "DISCARD ALL");
    assert_string_equal(cfg->server_check_query, "select 1");
    assert_int_equal(cfg->server_check_delay, 30 * USEC_PER_SEC);
    assert_int_equal(cfg->server_lifetime, 3600 * USEC_PER_SEC);
    assert_int_equal(cfg->server_idle_timeout, 600 * USEC_PER_SEC);
    assert_int_equal(cfg->server_connect_timeout, 15 * USEC_PER_SEC);
    assert_int_equal(cfg->server_login_retry, 15 * USEC_PER_SEC);
    assert_int_equal(cfg->client_login_timeout, 60 * USEC_PER_SEC);
    assert_int_equal(cfg->query_wait_timeout, 120 * USEC_PER_SEC);
    assert_int_equal(cfg->cancel_wait_timeout, 10 * USEC_PER_SEC);
    assert_int_equal(cfg->suspend_timeout, 10 * USEC_PER_SEC);
    assert_int_equal(cfg->autodb_idle_timeout, 3600 * USEC_PER_SEC);
    assert_int_equal(cfg->query_timeout, 0);
    assert_int_equal(cfg->pkt_buf, 4096);
    assert_int_equal(cfg->max_packet_size, 2147483647);
    assert_int_equal(cfg->listen_backlog, 128);
    assert_int_equal(cfg->sbuf_loopcnt, 5);
    assert_true(cfg->tcp_keepalive);
    assert_int_equal(cfg->stats_period, 60 * USEC_PER_SEC);
    assert_true(cfg->log_connections);
    assert_true(cfg->log_disconnections);
    assert_true(cfg->log_pooler_errors);
    assert_true(cfg->log_stats);
    assert_string_equal(cfg->syslog_ident, "pgfunnel");
    assert_string_equal(cfg->syslog_facility, "daemon");
    assert_string_equal(cfg->track_extra_parameters, "IntervalStyle");
    assert_int_equal(cfg->max_prepared_statements, 200);
    assert_int_equal(cfg->client_tls_sslmode, SSLMODE_DISABLE);
    assert_int_equal(cfg->server_tls_sslmode, SSLMODE_PREFER);
    assert_string_equal(cfg->client_tls_protocols, "secure");
    assert_string_equal(cfg->server_tls_protocols, "secure");
    assert_string_equal(cfg->client_tls_ciphers, "fast");
    assert_string_equal(cfg->server_tls_ciphers, "fast");
    assert_int_equal(cfg->workers, 4);
    assert_string_equal(cfg->admin_http_addr, "127.0.0.1");
    assert_int_equal(cfg->admin_http_port, 0);
    assert_false(cfg->admin_http_auth);
    assert_int_equal(cfg->log_format, LOG_FORMAT_TEXT);
    assert_null(cfg->databases);
    assert_null(cfg->users);
    assert_int_equal(cfg->nwarnings, 0);
    config_free(cfg);
}

static void test_option_table(void **state)
{
    size_t n = config_option_count();

    (void)state;
    assert_true(n > 80);
    assert_null(config_option_at(n));
    for (size_t i = 0; i < n; i++) {
        const OptionDef *opt = config_option_at(i);

        assert_non_null(opt);
        assert_non_null(opt->name);
        assert_non_null(opt->default_value);
        assert_non_null(opt->doc);
        assert_true(strlen(opt->doc) > 0);
        assert_ptr_equal(config_option_find(opt->name), opt);
        if (opt->type == OPT_ENUM) assert_non_null(opt->choices);
        /* names are unique */
        for (size_t k = i + 1; k < n; k++)
            assert_string_not_equal(opt->name, config_option_at(k)->name);
    }
    assert_ptr_equal(config_option_find("LISTEN_PORT"), config_option_find("listen_port"));
    assert_null(config_option_find("no_such_option"));
    /* the restart-only options PgBouncer also refuses to RELOAD */
    assert_false(config_option_find("listen_addr")->reloadable);
    assert_false(config_option_find("listen_port")->reloadable);
    assert_false(config_option_find("unix_socket_dir")->reloadable);
    assert_false(config_option_find("workers")->reloadable);
    assert_true(config_option_find("pool_mode")->reloadable);
    assert_true(config_option_find("default_pool_size")->reloadable);
}

/* Every default formats back to the string written in the table. */
static void test_format_defaults_roundtrip(void **state)
{
    Config *cfg = config_defaults();
    char buf[512];

    (void)state;
    assert_non_null(cfg);
    for (size_t i = 0; i < config_option_count(); i++) {
        const OptionDef *opt = config_option_at(i);

        config_format_value(cfg, opt, buf, sizeof(buf));
        assert_string_equal(buf, opt->default_value);
    }
    config_free(cfg);
}

/* ------------------------------------------------------------------------
 * Option types
 * ------------------------------------------------------------------------ */

static void test_string_option(void **state)
{
    Config *cfg;

    (void)state;
    cfg = load_option("listen_addr = 127.0.0.1, ::1");
    assert_string_equal(cfg->listen_addr, "127.0.0.1, ::1");
    config_free(cfg);

    /* empty strings are allowed */
    cfg = load_option("logfile =");
    assert_string_equal(cfg->logfile, "");
    config_free(cfg);

    /* ';' and '#' inside a value are not comments (PgBouncer semantics) */
    cfg = load_option("server_reset_query = DISCARD ALL; SELECT 1 # x");
    assert_string_equal(cfg->server_reset_query, "DISCARD ALL; SELECT 1 # x");
    config_free(cfg);

    /* names are case-insensitive, the last assignment wins */
    cfg = load_text("[pgbouncer]\nSyslog_Ident = a\nsyslog_ident = b\n");
    assert_non_null(cfg);
    assert_string_equal(cfg->syslog_ident, "b");
    config_free(cfg);
}

static void test_int_option(void **state)
{
    Config *cfg;

    (void)state;
    cfg = load_option("listen_port = 7000");
    assert_int_equal(cfg->listen_port, 7000);
    config_free(cfg);

    cfg = load_option("max_client_conn = 5000");
    assert_int_equal(cfg->max_client_conn, 5000);
    config_free(cfg);

    expect_option_error("listen_port = abc",
                        "invalid value \"abc\" for listen_port: expected an integer");
    expect_option_error("listen_port = 12x", "invalid value \"12x\"");
    expect_option_error("listen_port = ", "invalid value \"\"");
    expect_option_error("listen_port = 0", "listen_port = 0 is out of range (1..65535)");
    expect_option_error("listen_port = 70000", "listen_port = 70000 is out of range (1..65535)");
    expect_option_error("pkt_buf = 512", "pkt_buf = 512 is out of range");
    expect_option_error("max_client_conn = 0", "max_client_conn = 0 is out of range");
    expect_option_error("default_pool_size = -3", "out of range");
    expect_option_error("max_packet_size = 99999999999999999999", "invalid value");
}

static void test_bool_option(void **state)
{
    static const char *const yes[] = {"1", "on", "true", "yes", "ON", "True", "YES"};
    static const char *const no[] = {"0", "off", "false", "no", "OFF", "False", "No"};
    char line[64];
    Config *cfg;

    (void)state;
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
        snprintf(line, sizeof(line), "so_reuseport = %s", yes[i]);
        cfg = load_option(line);
        assert_true(cfg->so_reuseport);
        config_free(cfg);

        snprintf(line, sizeof(line), "tcp_keepalive = %s", no[i]);
        cfg = load_option(line);
        assert_false(cfg->tcp_keepalive);
        config_free(cfg);
    }
    expect_option_error("so_reuseport = maybe",
                        "invalid value \"maybe\" for so_reuseport: expected a boolean");
    expect_option_error("log_stats = 2", "invalid value \"2\" for log_stats");
}

static void test_time_option(void **state)
{
    Config *cfg;
    char buf[64];

    (void)state;
    cfg = load_option("query_wait_timeout = 0.5");
    assert_int_equal(cfg->query_wait_timeout, 500000);
    config_format_value(cfg, config_option_find("query_wait_timeout"), buf, sizeof(buf));
    assert_string_equal(buf, "0.5");
    config_free(cfg);

    cfg = load_option("server_lifetime = 7200");
    assert_int_equal(cfg->server_lifetime, 7200 * USEC_PER_SEC);
    config_free(cfg);

    cfg = load_option("server_idle_timeout = 1.25");
    assert_int_equal(cfg->server_idle_timeout, 1250000);
    config_format_value(cfg, config_option_find("server_idle_timeout"), buf, sizeof(buf));
    assert_string_equal(buf, "1.25");
    config_free(cfg);

    cfg = load_option("dns_max_ttl = .001");
    assert_int_equal(cfg->dns_max_ttl, 1000);
    config_free(cfg);

    expect_option_error("server_lifetime = abc",
                        "invalid value \"abc\" for server_lifetime: expected seconds");
    expect_option_error("server_lifetime = -1", "invalid value \"-1\"");
    expect_option_error("server_lifetime = 1.2.3", "invalid value \"1.2.3\"");
    expect_option_error("server_lifetime = 10s", "invalid value \"10s\"");
    expect_option_error("server_lifetime = .", "invalid value \".\"");
}

static void test_enum_option(void **state)
{
    Config *cfg;

    (void)state;
    cfg = load_option("pool_mode = Transaction");
    assert_int_equal(cfg->pool_mode, POOL_MODE_TRANSACTION);
    config_free(cfg);

    cfg = load_option("auth_type = scram-sha-256");
    assert_int_equal(cfg->auth_type, AUTH_TYPE_SCRAM);
    config_free(cfg);

    cfg = load_option("server_tls_sslmode = verify-full");
    assert_int_equal(cfg->server_tls_sslmode, SSLMODE_VERIFY_FULL);
    config_free(cfg);

    cfg = load_option("log_format = json");
    assert_int_equal(cfg->log_format, LOG_FORMAT_JSON);
    config_free(cfg);

    expect_option_error("auth_type = pam", "auth_type pam is not supported by pgfunnel");
    expect_option_error("auth_type = ldap", "auth_type ldap is not supported by pgfunnel");
    expect_option_error("pool_mode = sometimes",
                        "invalid value \"sometimes\" for pool_mode: expected session, "
                        "transaction or statement");
    expect_option_error("log_format = xml", "invalid value \"xml\" for log_format");
}

static void test_workers_option(void **state)
{
    Config *cfg;

    (void)state;
    cfg = load_option("workers = auto");
    assert_true(cfg->workers >= 1 && cfg->workers <= 256);
    config_free(cfg);

    cfg = load_option("workers = 8");
    assert_int_equal(cfg->workers, 8);
    config_free(cfg);

    expect_option_error("workers = 0", "workers = 0 is out of range (1..256)");
    expect_option_error("workers = 257", "workers = 257 is out of range (1..256)");
    expect_option_error("workers = many", "expected an integer or auto");
}

static void test_mode_option(void **state)
{
    Config *cfg;
    char buf[16];

    (void)state;
    cfg = load_option("unix_socket_mode = 0700");
    assert_int_equal(cfg->unix_socket_mode, 0700);
    config_format_value(cfg, config_option_find("unix_socket_mode"), buf, sizeof(buf));
    assert_string_equal(buf, "0700");
    config_free(cfg);

    expect_option_error("unix_socket_mode = 0999", "expected an octal mode");
    expect_option_error("unix_socket_mode = rwx", "expected an octal mode");
    expect_option_error("unix_socket_mode = 077777", "expected an octal mode");
}

/* ------------------------------------------------------------------------
 * File structure
 * ------------------------------------------------------------------------ */

static void test_unknown_option_warns(void **state)
{
    Config *cfg;

    (void)state;
    cfg = load_text("[pgbouncer]\nlisten_port = 7000\nservice_name = x\n");
    assert_non_null(cfg);
    assert_int_equal(cfg->listen_port, 7000);
    assert_int_equal(cfg->nwarnings, 1);
    assert_non_null(strstr(cfg->warnings[0], "t.ini:3: unknown option \"service_name\" ignored"));
    config_free(cfg);
}

static void test_sections(void **state)
{
    Config *cfg;

    (void)state;
    /* case-insensitive names and the [pgfunnel] alias */
    cfg = load_text("[PgBouncer]\nlisten_port = 7001\n[PGFUNNEL]\npkt_buf = 8192\n"
                    "[Databases]\nx = host=h\n[USERS]\nu = pool_size=3\n");
    assert_non_null(cfg);
    assert_int_equal(cfg->listen_port, 7001);
    assert_int_equal(cfg->pkt_buf, 8192);
    assert_non_null(config_find_db(cfg, "x"));
    assert_non_null(config_find_user(cfg, "u"));
    config_free(cfg);

    /* [peers]: PgBouncer 1.19 syntax */
    cfg = load_text("[peers]\n1 = host=/tmp/x\n2 = host=10.0.0.2 port=6433 pool_size=5\n"
                    "[pgbouncer]\npeer_id = 2\n");
    if (cfg == NULL) fail_msg("%s", errbuf);
    assert_int_equal(cfg->nwarnings, 0);
    assert_int_equal(cfg->peer_id, 2);
    assert_non_null(config_find_peer(cfg, 1));
    assert_string_equal(config_find_peer(cfg, 1)->host, "/tmp/x");
    assert_int_equal(config_find_peer(cfg, 1)->port, 0);
    assert_int_equal(config_find_peer(cfg, 2)->port, 6433);
    assert_null(config_find_peer(cfg, 3));
    config_free(cfg);

    cfg = load_text("[peers]\n0 = host=a\nx = host=a\n16384 = host=a\n3 = port=1\n"
                    "4 = host=a bogus=1\n[pgbouncer]\npeer_id = 16384\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: invalid peer id \"0\": expected an integer 1..16383");
    assert_err_contains("t.ini:3: invalid peer id \"x\"");
    assert_err_contains("t.ini:4: invalid peer id \"16384\"");
    assert_err_contains("t.ini:5: peer 3 has no host");
    assert_err_contains("t.ini:6: unknown parameter \"bogus\" in peer \"4\"");
    assert_err_contains("t.ini:8: peer_id = 16384 is out of range (0..16383)");

    /* anything else is an error, reported once at its header */
    cfg = load_text("[pgbouncer]\n\n[frobnicate]\na = 1\nb = 2\n");
    assert_null(cfg);
    assert_err_contains("t.ini:3: unknown section \"frobnicate\"");
    assert_int_equal(count_lines(errbuf), 1);

    cfg = load_text("listen_port = 7000\n[pgbouncer]\n");
    assert_null(cfg);
    assert_err_contains("t.ini:1: \"listen_port\" is outside of any section");
}

static void test_malformed_lines(void **state)
{
    Config *cfg;

    (void)state;
    cfg = load_text("; comment\n# comment\n\n[pgbouncer]\nthis is not an option\n"
                    "listen_port = 7000\n= value\n[databases\nlisten_port = x\n");
    assert_null(cfg);
    /* all errors are collected, one per line, with their own line numbers */
    assert_err_contains("t.ini:5: syntax error: expected \"name = value\"");
    assert_err_contains("t.ini:7: syntax error: missing name before \"=\"");
    assert_err_contains("t.ini:8: unterminated section header \"[databases\"");
    assert_int_equal(count_lines(errbuf), 3);

    /* an indented line is a line of its own, not a continuation */
    cfg = load_text("[pgbouncer]\nlisten_port = 7000\n   pkt_buf = 8192\n");
    assert_non_null(cfg);
    assert_int_equal(cfg->pkt_buf, 8192);
    config_free(cfg);

    /* CRLF line endings and a UTF-8 BOM are accepted */
    cfg = load_text("\xEF\xBB\xBF[pgbouncer]\r\nlisten_port = 7002\r\n");
    assert_non_null(cfg);
    assert_int_equal(cfg->listen_port, 7002);
    config_free(cfg);
}

static void test_long_line(void **state)
{
    size_t n = CONFIG_MAX_LINE + 100;
    char *text = malloc(n + 64);
    Config *cfg;

    (void)state;
    assert_non_null(text);
    /* just under the limit loads (long auth_query lines are real) */
    strcpy(text, "[pgbouncer]\nauth_query = ");
    memset(text + strlen(text), 'x', CONFIG_MAX_LINE - 20);
    strcpy(text + strlen("[pgbouncer]\nauth_query = ") + CONFIG_MAX_LINE - 20, "\n");
    cfg = load_text(text);
    if (cfg == NULL) fail_msg("%s", errbuf);
    assert_int_equal(strlen(cfg->auth_query), CONFIG_MAX_LINE - 20);
    config_free(cfg);

    /* over the limit is an error, not a silently split line */
    strcpy(text, "[pgbouncer]\nauth_query = ");
    memset(text + strlen(text), 'x', n);
    strcpy(text + strlen("[pgbouncer]\nauth_query = ") + n, "\nlisten_port = x\n");
    cfg = load_text(text);
    assert_null(cfg);
    assert_err_contains("t.ini:2: line too long");
    assert_err_contains("t.ini:3: invalid value \"x\" for listen_port");
    free(text);
}

/* The inih switches config_load() changes are restored afterwards. */
static void test_inih_settings_restored(void **state)
{
    Config *cfg;

    (void)state;
    assert_true(ini_allow_multiline);
    assert_true(ini_allow_inline_comments);
    cfg = load_text("[pgbouncer]\n");
    assert_non_null(cfg);
    config_free(cfg);
    assert_true(ini_allow_multiline);
    assert_true(ini_allow_inline_comments);
}

static void test_error_collection_and_truncation(void **state)
{
    const char *path =
        write_file("many.ini", "[pgbouncer]\nlisten_port = a\npkt_buf = b\nworkers = c\n");
    char small[40];
    Config *cfg;

    (void)state;
    errbuf[0] = '\0';
    cfg = config_load(path, errbuf, sizeof(errbuf));
    assert_null(cfg);
    assert_int_equal(count_lines(errbuf), 3);
    assert_err_contains("many.ini:2: ");
    assert_err_contains("many.ini:3: ");
    assert_err_contains("many.ini:4: ");

    memset(small, 'x', sizeof(small));
    cfg = config_load(path, small, sizeof(small));
    assert_null(cfg);
    assert_int_equal(strlen(small), sizeof(small) - 1);

    cfg = config_load(path, NULL, 0);
    assert_null(cfg);
}

static void test_missing_file(void **state)
{
    char path[PATH_MAX + 32];
    Config *cfg;

    (void)state;
    snprintf(path, sizeof(path), "%s/does-not-exist.ini", tmpdir);
    cfg = config_load(path, errbuf, sizeof(errbuf));
    assert_null(cfg);
    assert_err_contains("does-not-exist.ini: cannot open config file: No such file or directory");
}

static void test_path_and_files(void **state)
{
    Config *cfg;

    (void)state;
    cfg = load_text("[pgbouncer]\n");
    assert_non_null(cfg);
    assert_non_null(cfg->path);
    assert_true(cfg->path[0] == '/');
    assert_int_equal(cfg->nfiles, 1);
    assert_non_null(strstr(cfg->files[0], "t.ini"));
    config_free(cfg);
}

static void test_validation(void **state)
{
    Config *cfg;

    (void)state;
    cfg = load_text("[pgbouncer]\nlisten_port = 7000\nadmin_http_port = 7000\n");
    assert_null(cfg);
    assert_err_contains("t.ini:3: admin_http_port 7000 is the same as listen_port");

    cfg = load_text("[pgbouncer]\nclient_tls_sslmode = require\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: client_tls_sslmode require needs client_tls_key_file");

    cfg = load_text("[pgbouncer]\nauth_type = hba\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: auth_type hba needs auth_hba_file");

    cfg = load_text("[pgbouncer]\nauth_type = hba\nauth_hba_file = hba.conf\n");
    assert_non_null(cfg);
    assert_int_equal(cfg->auth_type, AUTH_TYPE_HBA);
    config_free(cfg);

    cfg = load_text("[pgbouncer]\nunix_socket_dir =\n");
    assert_null(cfg);
    assert_err_contains("nothing to listen on");
}

/* ------------------------------------------------------------------------
 * [databases] and [users]
 * ------------------------------------------------------------------------ */

static void test_databases(void **state)
{
    const DbConf *db;
    Config *cfg;

    (void)state;
    cfg = load_text("[databases]\n"
                    "app = host=10.0.0.1,10.0.0.2 port=5433 dbname=real user=u password=p "
                    "pool_size=7 min_pool_size=1 reserve_pool_size=2 max_db_connections=9 "
                    "pool_mode=transaction server_lifetime=1.5\n"
                    "q = connect_query='SET search_path TO ''a b'', public'  datestyle='ISO, MDY' "
                    "application_name=x timezone=UTC client_encoding=UTF8\n"
                    "old = reserve_pool=4 auth_user=au auth_query='SELECT 1' auth_dbname=adb\n"
                    "empty =\n"
                    "spaced = host = h  port =  5432\n");
    if (cfg == NULL) fail_msg("%s", errbuf);

    db = config_find_db(cfg, "app");
    assert_non_null(db);
    assert_string_equal(db->name, "app");
    assert_string_equal(db->host, "10.0.0.1,10.0.0.2");
    assert_int_equal(db->port, 5433);
    assert_string_equal(db->dbname, "real");
    assert_string_equal(db->user, "u");
    assert_string_equal(db->password, "p");
    assert_int_equal(db->pool_size, 7);
    assert_int_equal(db->min_pool_size, 1);
    assert_int_equal(db->reserve_pool_size, 2);
    assert_int_equal(db->max_db_connections, 9);
    assert_int_equal(db->pool_mode, POOL_MODE_TRANSACTION);
    assert_int_equal(db->server_lifetime, 1500000);
    assert_int_equal(db->line, 2);
    assert_non_null(strstr(db->file, "t.ini"));

    db = config_find_db(cfg, "q");
    assert_non_null(db);
    assert_string_equal(db->connect_query, "SET search_path TO 'a b', public");
    assert_string_equal(db->datestyle, "ISO, MDY");
    assert_string_equal(db->application_name, "x");
    assert_string_equal(db->timezone, "UTC");
    assert_string_equal(db->client_encoding, "UTF8");

    db = config_find_db(cfg, "old");
    assert_non_null(db);
    assert_int_equal(db->reserve_pool_size, 4);
    assert_string_equal(db->auth_user, "au");
    assert_string_equal(db->auth_query, "SELECT 1");
    assert_string_equal(db->auth_dbname, "adb");

    /* an empty definition leaves everything unset */
    db = config_find_db(cfg, "empty");
    assert_non_null(db);
    assert_null(db->host);
    assert_null(db->dbname);
    assert_int_equal(db->port, 0);
    assert_int_equal(db->pool_size, CONF_UNSET);
    assert_int_equal(db->pool_mode, CONF_UNSET);
    assert_int_equal(db->server_lifetime, CONF_UNSET);

    db = config_find_db(cfg, "spaced");
    assert_non_null(db);
    assert_string_equal(db->host, "h");
    assert_int_equal(db->port, 5432);
    assert_null(db->port_list);
    assert_int_equal(db->target_session_attrs, CONF_UNSET);
    assert_int_equal(db->load_balance_hosts, CONF_UNSET);
    config_free(cfg);

    /* host and port lists, roles, balancing */
    cfg = load_text("[databases]\n"
                    "ha = host=h1,h2,h3 port=5432,5433,5434 target_session_attrs=read-write "
                    "load_balance_hosts=disable\n"
                    "ro = host=h1,h2 port=6000 target_session_attrs=Prefer-Standby\n"
                    "[pgbouncer]\ntarget_session_attrs = standby\nload_balance_hosts = disable\n");
    if (cfg == NULL) fail_msg("%s", errbuf);
    db = config_find_db(cfg, "ha");
    assert_string_equal(db->host, "h1,h2,h3");
    assert_int_equal(db->port, 5432);
    assert_string_equal(db->port_list, "5432,5433,5434");
    assert_int_equal(db->target_session_attrs, TSA_READ_WRITE);
    assert_int_equal(db->load_balance_hosts, LB_DISABLE);
    db = config_find_db(cfg, "ro");
    assert_int_equal(db->port, 6000);
    assert_null(db->port_list);
    assert_int_equal(db->target_session_attrs, TSA_PREFER_STANDBY);
    assert_int_equal(cfg->target_session_attrs, TSA_STANDBY);
    assert_int_equal(cfg->load_balance_hosts, LB_DISABLE);

    /* no "*" entry: unknown names are not found; names are case-sensitive */
    assert_null(config_find_db(cfg, "nope"));
    assert_null(config_find_db(cfg, "APP"));
    config_free(cfg);
}

static void test_database_fallback_and_order(void **state)
{
    Config *cfg;
    const DbConf *db;

    (void)state;
    cfg = load_text("[databases]\na = host=a\n* = host=fallback\nb = host=b\n");
    assert_non_null(cfg);
    assert_string_equal(config_find_db(cfg, "a")->host, "a");
    assert_string_equal(config_find_db(cfg, "b")->host, "b");
    db = config_find_db(cfg, "anything");
    assert_non_null(db);
    assert_string_equal(db->name, "*");
    assert_string_equal(db->host, "fallback");
    /* file order is kept, "*" included */
    assert_string_equal(cfg->databases->name, "a");
    assert_string_equal(cfg->databases->next->name, "*");
    assert_string_equal(cfg->databases->next->next->name, "b");
    assert_null(cfg->databases->next->next->next);
    config_free(cfg);
}

static void test_database_redefined(void **state)
{
    Config *cfg;

    (void)state;
    cfg = load_text("[databases]\na = host=first\nb = host=b\na = host=second\n");
    assert_non_null(cfg);
    assert_string_equal(config_find_db(cfg, "a")->host, "second");
    assert_int_equal(config_find_db(cfg, "a")->line, 4);
    /* it keeps its first position */
    assert_string_equal(cfg->databases->name, "a");
    assert_int_equal(cfg->nwarnings, 1);
    assert_true(has_warning(cfg, "t.ini:4: database \"a\" redefined"));
    config_free(cfg);
}

static void test_database_errors(void **state)
{
    Config *cfg;

    (void)state;
    cfg = load_text("[databases]\nx = host=h foo=bar\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: unknown parameter \"foo\" in database \"x\"");

    cfg = load_text("[databases]\nx = pool_size=many\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: invalid value \"many\" for \"pool_size\" in database \"x\"");

    cfg = load_text("[databases]\nx = port=70000\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: invalid value \"70000\" for \"port\" in database \"x\"");

    /* host lists: every error with its line */
    cfg = load_text("[databases]\n"
                    "a = host=h1,h2,h3 port=1,2\n"
                    "b = host=h1,,h3\n"
                    "c = host=h1,h2, port=1\n"
                    "d = host=h1 target_session_attrs=master\n"
                    "e = host=h1,h2 port=1,,2\n"
                    "f = host=h1 load_balance_hosts=random\n"
                    "g = host=h1,h2 port=1,2,3\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: database \"a\" lists 3 hosts but 2 ports");
    assert_err_contains("t.ini:3: empty host in the host list \"h1,,h3\" of database \"b\"");
    assert_err_contains("t.ini:4: empty host in the host list \"h1,h2,\" of database \"c\"");
    assert_err_contains("t.ini:5: invalid value \"master\" for \"target_session_attrs\" in "
                        "database \"d\": expected any, read-write, read-only, primary, standby "
                        "or prefer-standby");
    assert_err_contains("t.ini:6: invalid value \"1,,2\" for \"port\" in database \"e\"");
    assert_err_contains("t.ini:7: invalid value \"random\" for \"load_balance_hosts\"");
    assert_err_contains("t.ini:8: database \"g\" lists 2 hosts but 3 ports");

    cfg = load_text("[databases]\nx = pool_mode=sometimes\n");
    assert_null(cfg);
    assert_err_contains("for \"pool_mode\" in database \"x\"");

    cfg = load_text("[databases]\nx = server_lifetime=soon\n");
    assert_null(cfg);
    assert_err_contains("for \"server_lifetime\" in database \"x\"");

    cfg = load_text("[databases]\n\nx = connect_query='SELECT 1\n");
    assert_null(cfg);
    assert_err_contains("t.ini:3: unterminated quoted value for \"connect_query\" in database "
                        "\"x\"");

    cfg = load_text("[databases]\nx = host\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: missing \"=\" after \"host\" in database \"x\"");

    cfg = load_text("[databases]\nx = dbname='a'b\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: unexpected text after the quoted value");
}

static void test_users(void **state)
{
    Config *cfg;
    const UserConf *u;

    (void)state;
    cfg = load_text("[users]\nbatch = pool_mode=session max_user_connections=10 "
                    "reserve_pool_size=2\netl = pool_size=5\nnone =\n");
    if (cfg == NULL) fail_msg("%s", errbuf);
    u = config_find_user(cfg, "batch");
    assert_non_null(u);
    assert_int_equal(u->pool_mode, POOL_MODE_SESSION);
    assert_int_equal(u->max_user_connections, 10);
    assert_int_equal(u->reserve_pool_size, 2);
    assert_int_equal(u->pool_size, CONF_UNSET);
    assert_int_equal(u->line, 2);
    u = config_find_user(cfg, "etl");
    assert_non_null(u);
    assert_int_equal(u->pool_size, 5);
    assert_int_equal(u->pool_mode, CONF_UNSET);
    u = config_find_user(cfg, "none");
    assert_non_null(u);
    assert_int_equal(u->max_user_connections, CONF_UNSET);
    assert_null(config_find_user(cfg, "nobody"));
    config_free(cfg);

    cfg = load_text("[users]\nbatch = dbname=x\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: unknown parameter \"dbname\" in user \"batch\"");

    cfg = load_text("[users]\nbatch = max_user_connections=-1\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: invalid value \"-1\" for \"max_user_connections\" in user");
}

/* ------------------------------------------------------------------------
 * %include
 * ------------------------------------------------------------------------ */

static void test_include_relative(void **state)
{
    Config *cfg;

    (void)state;
    write_file("inc/pool.ini", "pool_mode = transaction\n%include more.ini\n");
    write_file("inc/more.ini", "default_pool_size = 33\n");
    write_file("inc/dbs.ini", "[databases]\nincluded = host=i\n");
    cfg = load_text("[pgbouncer]\n"
                    "%include inc/pool.ini\n"
                    "listen_port = 7003\n"
                    "  %include   inc/dbs.ini  \n");
    if (cfg == NULL) fail_msg("%s", errbuf);
    assert_int_equal(cfg->pool_mode, POOL_MODE_TRANSACTION);
    assert_int_equal(cfg->default_pool_size, 33);
    assert_int_equal(cfg->listen_port, 7003);
    assert_non_null(config_find_db(cfg, "included"));
    assert_non_null(strstr(config_find_db(cfg, "included")->file, "inc/dbs.ini"));
    assert_int_equal(config_find_db(cfg, "included")->line, 2);
    assert_int_equal(cfg->nfiles, 4);
    config_free(cfg);

    /* errors inside an included file carry that file's name and line */
    write_file("inc/bad.ini", "\nlisten_port = nope\n");
    cfg = load_text("[pgbouncer]\n%include inc/bad.ini\nworkers = 0\n");
    assert_null(cfg);
    assert_err_contains("inc/bad.ini:2: invalid value \"nope\" for listen_port");
    assert_err_contains("t.ini:3: workers = 0 is out of range");
}

static void test_include_missing(void **state)
{
    Config *cfg;

    (void)state;
    cfg = load_text("[pgbouncer]\n\n%include nope.ini\n");
    assert_null(cfg);
    assert_err_contains("t.ini:3: cannot open include file \"nope.ini\": No such file or "
                        "directory");

    cfg = load_text("[pgbouncer]\n%include\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: %include needs a file name");

    /* a directory is not a config file */
    write_file("adir/x.ini", "");
    cfg = load_text("[pgbouncer]\n%include adir\n");
    assert_null(cfg);
    assert_err_contains("t.ini:2: cannot open include file \"adir\": Is a directory");
}

static void test_include_loop(void **state)
{
    Config *cfg;

    (void)state;
    write_file("loop-a.ini", "[pgbouncer]\n%include loop-b.ini\n");
    write_file("loop-b.ini", "%include loop-a.ini\n");
    cfg = load_text("%include loop-a.ini\n");
    assert_null(cfg);
    assert_err_contains("loop-b.ini:1: %include \"loop-a.ini\": an include loop");
    assert_int_equal(count_lines(errbuf), 1);
}

/*
 * Hostile files stay cheap to load: a file included twice on each of ten
 * levels would be read 1024 times and every bad line kept (found by
 * fuzz_config: 15 s for one input); now at most 256 files, 20 messages.
 */
static void test_include_fanout_and_error_cap(void **state)
{
    Config *cfg;
    char name[32], text[128];
    char many[64 * 40] = "[pgbouncer]\n";

    (void)state;
    for (int i = 0; i < 10; i++) {
        snprintf(name, sizeof(name), "fan-%d.ini", i);
        snprintf(text, sizeof(text), "; level %d\n%%include fan-%d.ini\n%%include fan-%d.ini\n", i,
                 i + 1, i + 1);
        write_file(name, i < 9 ? text : "; leaf\n");
    }
    cfg = load_text("[pgbouncer]\n%include fan-0.ini\n");
    assert_null(cfg);
    assert_err_contains("fan-8.ini:2: %include \"fan-9.ini\": more than 256 files read");
    assert_true(count_lines(errbuf) <= 21);

    for (int i = 0; i < 40; i++)
        strcat(many, "no equals sign\n");
    cfg = load_text(many);
    assert_null(cfg);
    assert_err_contains("t.ini:21: syntax error");
    assert_err_contains("more than 20 errors; the rest are not listed");
    assert_int_equal(count_lines(errbuf), 21);
}

/* ------------------------------------------------------------------------
 * Runtime changes, formatting, helpers
 * ------------------------------------------------------------------------ */

static void test_config_set(void **state)
{
    Config *cfg = config_defaults();
    char err[256];
    char buf[64];

    (void)state;
    assert_non_null(cfg);
    assert_int_equal(config_set(cfg, "default_pool_size", "50", err, sizeof(err)), 0);
    assert_int_equal(cfg->default_pool_size, 50);
    assert_int_equal(config_set(cfg, "POOL_MODE", "statement", err, sizeof(err)), 0);
    assert_int_equal(cfg->pool_mode, POOL_MODE_STATEMENT);
    assert_int_equal(config_set(cfg, "server_reset_query", "RESET ALL", err, sizeof(err)), 0);
    assert_string_equal(cfg->server_reset_query, "RESET ALL");
    assert_int_equal(config_set(cfg, "query_timeout", "2.5", err, sizeof(err)), 0);
    config_format_value(cfg, config_option_find("query_timeout"), buf, sizeof(buf));
    assert_string_equal(buf, "2.5");

    assert_int_equal(config_set(cfg, "listen_port", "7000", err, sizeof(err)), -1);
    assert_string_equal(err, "option \"listen_port\" cannot be changed at runtime");
    assert_int_equal(cfg->listen_port, 6432);

    assert_int_equal(config_set(cfg, "bogus", "1", err, sizeof(err)), -1);
    assert_string_equal(err, "unknown option \"bogus\"");

    /* a bad value leaves the old one in place */
    assert_int_equal(config_set(cfg, "default_pool_size", "lots", err, sizeof(err)), -1);
    assert_non_null(strstr(err, "invalid value \"lots\" for default_pool_size"));
    assert_int_equal(cfg->default_pool_size, 50);
    assert_int_equal(config_set(cfg, "auth_type", "pam", err, sizeof(err)), -1);
    assert_string_equal(err, "auth_type pam is not supported by pgfunnel");
    assert_int_equal(cfg->auth_type, AUTH_TYPE_MD5);
    config_free(cfg);
}

static void test_format_value(void **state)
{
    Config *cfg;
    char buf[64];

    (void)state;
    cfg = load_option("so_reuseport = yes");
    config_format_value(cfg, config_option_find("so_reuseport"), buf, sizeof(buf));
    assert_string_equal(buf, "1");
    config_format_value(cfg, config_option_find("auth_type"), buf, sizeof(buf));
    assert_string_equal(buf, "md5");
    config_format_value(cfg, config_option_find("server_lifetime"), buf, sizeof(buf));
    assert_string_equal(buf, "3600");
    /* truncation is safe */
    config_format_value(cfg, config_option_find("server_reset_query"), buf, 4);
    assert_string_equal(buf, "DIS");
    config_free(cfg);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(config_pool_mode_name(POOL_MODE_SESSION), "session");
    assert_string_equal(config_pool_mode_name(POOL_MODE_TRANSACTION), "transaction");
    assert_string_equal(config_pool_mode_name(POOL_MODE_STATEMENT), "statement");
    assert_string_equal(config_pool_mode_name(CONF_UNSET), "unknown");
    assert_string_equal(config_auth_type_name(AUTH_TYPE_TRUST), "trust");
    assert_string_equal(config_auth_type_name(AUTH_TYPE_SCRAM), "scram-sha-256");
    assert_string_equal(config_auth_type_name(AUTH_TYPE_HBA), "hba");
    assert_string_equal(config_auth_type_name(99), "unknown");
    assert_string_equal(config_sslmode_name(SSLMODE_DISABLE), "disable");
    assert_string_equal(config_sslmode_name(SSLMODE_VERIFY_CA), "verify-ca");
    assert_string_equal(config_sslmode_name(SSLMODE_VERIFY_FULL), "verify-full");
}

static void test_list_contains(void **state)
{
    (void)state;
    assert_true(config_list_contains("postgres, admin", "admin"));
    assert_true(config_list_contains("postgres,admin", "POSTGRES"));
    assert_true(config_list_contains("  a b\tc ", "c"));
    assert_false(config_list_contains("postgres, admin", "adm"));
    assert_false(config_list_contains("postgres, admin", "administrator"));
    assert_false(config_list_contains("", "a"));
    assert_false(config_list_contains(NULL, "a"));
    assert_false(config_list_contains("a,b", ""));
}

/* ------------------------------------------------------------------------
 * Shipped files
 * ------------------------------------------------------------------------ */

static char *read_all(FILE *fp, size_t *len)
{
    size_t cap = 4096, n = 0, got;
    char *buf = malloc(cap);

    assert_non_null(buf);
    while ((got = fread(buf + n, 1, cap - n, fp)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
    }
    *len = n;
    return buf;
}

/* conf/pgfunnel.ini must be exactly what config_write_sample() writes. */
static void test_sample_in_sync(void **state)
{
    FILE *gen = tmpfile(), *shipped = fopen("conf/pgfunnel.ini", "r");
    size_t glen, slen;
    char *g, *s;

    (void)state;
    assert_non_null(gen);
    if (shipped == NULL) fail_msg("cannot open conf/pgfunnel.ini (run from the repository root)");
    config_write_sample(gen);
    rewind(gen);
    g = read_all(gen, &glen);
    s = read_all(shipped, &slen);
    fclose(gen);
    fclose(shipped);
    if (glen != slen || memcmp(g, s, glen) != 0) {
        free(g);
        free(s);
        fail_msg("conf/pgfunnel.ini is out of date: regenerate it from config_write_sample()");
    }
    free(g);
    free(s);
}

static void test_sample_loads(void **state)
{
    Config *cfg = config_load("conf/pgfunnel.ini", errbuf, sizeof(errbuf));
    const DbConf *db;

    (void)state;
    if (cfg == NULL) fail_msg("%s", errbuf);
    assert_int_equal(cfg->nwarnings, 0);
    assert_string_equal(cfg->listen_addr, "127.0.0.1");
    assert_int_equal(cfg->listen_port, 6432);
    assert_int_equal(cfg->auth_type, AUTH_TYPE_TRUST);
    assert_int_equal(cfg->pool_mode, POOL_MODE_TRANSACTION);
    db = config_find_db(cfg, "postgres");
    assert_non_null(db);
    assert_string_equal(db->host, "127.0.0.1");
    assert_int_equal(db->port, 5432);
    config_free(cfg);
}

/* Every option of the table appears in the sample, commented or set. */
static void test_sample_lists_every_option(void **state)
{
    FILE *gen = tmpfile();
    size_t len;
    char *text, needle[128];

    (void)state;
    assert_non_null(gen);
    config_write_sample(gen);
    rewind(gen);
    text = read_all(gen, &len);
    fclose(gen);
    text = realloc(text, len + 1);
    assert_non_null(text);
    text[len] = '\0';
    for (size_t i = 0; i < config_option_count(); i++) {
        const OptionDef *opt = config_option_at(i);
        char set[128];

        snprintf(needle, sizeof(needle), "\n;%s =", opt->name);
        snprintf(set, sizeof(set), "\n%s = ", opt->name);
        if (strstr(text, needle) == NULL && strstr(text, set) == NULL)
            fail_msg("option %s missing from the sample", opt->name);
    }
    free(text);
}

static void test_pgbouncer_compat(void **state)
{
    Config *cfg = config_load("conf/pgbouncer-compat.ini", errbuf, sizeof(errbuf));
    const DbConf *db;

    (void)state;
    if (cfg == NULL) fail_msg("%s", errbuf);
    /* PgBouncer-only options only warn; peer_id and [peers] are understood */
    assert_true(cfg->nwarnings >= 1);
    assert_true(has_warning(cfg, "unknown option \"service_name\" ignored"));
    assert_int_equal(cfg->peer_id, 1);
    assert_string_equal(config_find_peer(cfg, 2)->host, "/tmp/pgbouncer2");
    for (int i = 0; i < cfg->nwarnings; i++)
        assert_non_null(strstr(cfg->warnings[i], "conf/pgbouncer-compat.ini:"));

    assert_int_equal(cfg->auth_type, AUTH_TYPE_MD5);
    assert_string_equal(cfg->auth_file, "userlist.txt");
    assert_int_equal(cfg->pool_mode, POOL_MODE_TRANSACTION);
    assert_string_equal(cfg->listen_addr, "*");
    assert_int_equal(cfg->max_client_conn, 2000);
    assert_int_equal(cfg->reserve_pool_timeout, 3 * USEC_PER_SEC);
    assert_true(config_list_contains(cfg->admin_users, "admin"));
    db = config_find_db(cfg, "reports");
    assert_non_null(db);
    assert_string_equal(db->password, "s3cr'et");
    assert_int_equal(db->pool_mode, POOL_MODE_SESSION);
    db = config_find_db(cfg, "appdb");
    assert_int_equal(db->reserve_pool_size, 5);
    db = config_find_db(cfg, "somewhere-else");
    assert_non_null(db);
    assert_string_equal(db->name, "*");
    assert_non_null(config_find_user(cfg, "batch"));
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_option_table),
        cmocka_unit_test(test_format_defaults_roundtrip),
        cmocka_unit_test(test_string_option),
        cmocka_unit_test(test_int_option),
        cmocka_unit_test(test_bool_option),
        cmocka_unit_test(test_time_option),
        cmocka_unit_test(test_enum_option),
        cmocka_unit_test(test_workers_option),
        cmocka_unit_test(test_mode_option),
        cmocka_unit_test(test_unknown_option_warns),
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_error_collection_and_truncation),
        cmocka_unit_test(test_long_line),
        cmocka_unit_test(test_inih_settings_restored),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_path_and_files),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_databases),
        cmocka_unit_test(test_database_fallback_and_order),
        cmocka_unit_test(test_database_redefined),
        cmocka_unit_test(test_database_errors),
        cmocka_unit_test(test_users),
        cmocka_unit_test(test_include_relative),
        cmocka_unit_test(test_include_missing),
        cmocka_unit_test(test_include_loop),
        cmocka_unit_test(test_include_fanout_and_error_cap),
        cmocka_unit_test(test_config_set),
        cmocka_unit_test(test_format_value),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_list_contains),
        cmocka_unit_test(test_sample_in_sync),
        cmocka_unit_test(test_sample_loads),
        cmocka_unit_test(test_sample_lists_every_option),
        cmocka_unit_test(test_pgbouncer_compat),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
