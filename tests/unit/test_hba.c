/* test_hba.c — pg_hba.conf-style rules: parsing, matching, errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "hba.h"

static Hba *parse(const char *text)
{
    char err[256] = "";
    Hba *h = hba_parse("hba.conf", text, strlen(text), err, sizeof(err));
    if (!h) fail_msg("unexpected parse error: %s", err);
    return h;
}

/* Matches for an address given as text (NULL = unix socket). */
static HbaMethod m(const Hba *h, const char *ip, bool tls, const char *db, const char *user)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (!ip) return hba_match(h, NULL, tls, db, user);
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
    } else {
        assert_int_equal(inet_pton(AF_INET6, ip, &in6->sin6_addr), 1);
        in6->sin6_family = AF_INET6;
    }
    return hba_match(h, (struct sockaddr *)&ss, tls, db, user);
}

static void test_db_user(void **state)
{
    (void)state;
    Hba *h = parse("# comment\n"
                   "\n"
                   "host  app      alice    all  md5   # trailing comment\n"
                   "host  app,\"all\" bob   all  scram-sha-256\n"
                   "host  sameuser all      all  password\n"
                   "host  all      \"Carol\",dave all trust\n"
                   "host  replication all   all  trust\n");
    assert_int_equal(m(h, "10.0.0.1", false, "app", "alice"), HBA_MD5);
    assert_int_equal(m(h, "10.0.0.1", false, "app", "bob"), HBA_SCRAM);
    /* a quoted "all" is a database named all, not the keyword */
    assert_int_equal(m(h, "10.0.0.1", false, "all", "bob"), HBA_SCRAM);
    assert_int_equal(m(h, "10.0.0.1", false, "other", "bob"), HBA_REJECT);
    assert_int_equal(m(h, "10.0.0.1", false, "eve", "eve"), HBA_PASSWORD);
    assert_int_equal(m(h, "10.0.0.1", false, "x", "Carol"), HBA_TRUST);
    assert_int_equal(m(h, "10.0.0.1", false, "x", "dave"), HBA_TRUST);
    /* case-sensitive names */
    assert_int_equal(m(h, "10.0.0.1", false, "x", "carol"), HBA_REJECT);
    assert_int_equal(m(h, "10.0.0.1", false, "App", "alice"), HBA_REJECT);
    /* "replication" never matches a pooled database */
    assert_int_equal(m(h, "10.0.0.1", false, "replication", "zed"), HBA_REJECT);
    /* no local rules: unix socket rejected */
    assert_int_equal(m(h, NULL, false, "app", "alice"), HBA_REJECT);
    hba_free(h);
}

static void test_addresses(void **state)
{
    (void)state;
    Hba *h = parse("host all all 127.0.0.1/32 trust\n"
                   "host all all 10.1.0.0/16 md5\n"
                   "host all all 192.168.1.0 255.255.255.0 password\n"
                   "host all all ::1/128 trust\n"
                   "host all all 2001:db8::/32 scram-sha-256\n"
                   "host all all 0.0.0.0/0 reject\n"
                   "host all all fe80::1 ffff:ffff:ffff:ffff:: md5\n");
    assert_int_equal(m(h, "127.0.0.1", false, "d", "u"), HBA_TRUST);
    assert_int_equal(m(h, "127.0.0.2", false, "d", "u"), HBA_REJECT);
    assert_int_equal(m(h, "10.1.255.7", false, "d", "u"), HBA_MD5);
    assert_int_equal(m(h, "10.2.0.1", false, "d", "u"), HBA_REJECT);
    assert_int_equal(m(h, "192.168.1.77", false, "d", "u"), HBA_PASSWORD);
    assert_int_equal(m(h, "192.168.2.77", false, "d", "u"), HBA_REJECT);
    assert_int_equal(m(h, "::1", false, "d", "u"), HBA_TRUST);
    assert_int_equal(m(h, "2001:db8:1::5", false, "d", "u"), HBA_SCRAM);
    assert_int_equal(m(h, "2001:db9::5", false, "d", "u"), HBA_REJECT);
    assert_int_equal(m(h, "fe80::1234", false, "d", "u"), HBA_MD5);
    /* IPv4-mapped IPv6 from a dual-stack listener matches the IPv4 rules */
    assert_int_equal(m(h, "::ffff:127.0.0.1", false, "d", "u"), HBA_TRUST);
    assert_int_equal(m(h, "::ffff:10.1.2.3", false, "d", "u"), HBA_MD5);
    assert_int_equal(m(h, "::ffff:8.8.8.8", false, "d", "u"), HBA_REJECT);
    /* an IPv6 address never matches an IPv4 rule and vice versa */
    assert_int_equal(m(h, "::2", false, "d", "u"), HBA_REJECT);
    hba_free(h);

    /* non-aligned network address is masked, as PostgreSQL does */
    h = parse("host all all 10.0.0.99/8 trust\nhost all all all md5\n");
    assert_int_equal(m(h, "10.200.0.1", false, "d", "u"), HBA_TRUST);
    assert_int_equal(m(h, "11.0.0.1", false, "d", "u"), HBA_MD5);
    assert_int_equal(m(h, "::1", false, "d", "u"), HBA_MD5);
    hba_free(h);
}

static void test_ssl_and_local(void **state)
{
    (void)state;
    Hba *h = parse("local     all all              trust\n"
                   "hostssl   all certuser 0.0.0.0/0 cert\n"
                   "hostssl   all all  0.0.0.0/0   scram-sha-256\n"
                   "hostnossl all all  0.0.0.0/0   md5\n"
                   "hostnossl all all  ::/0        reject\n"
                   "hostnogssenc all all ::/0      password\n");
    assert_int_equal(m(h, NULL, false, "d", "u"), HBA_TRUST);
    assert_int_equal(m(h, "1.2.3.4", true, "d", "u"), HBA_SCRAM);
    assert_int_equal(m(h, "1.2.3.4", true, "d", "certuser"), HBA_CERT);
    assert_int_equal(m(h, "1.2.3.4", false, "d", "certuser"), HBA_MD5);
    assert_int_equal(m(h, "1.2.3.4", false, "d", "u"), HBA_MD5);
    assert_int_equal(m(h, "::5", false, "d", "u"), HBA_REJECT);
    assert_int_equal(m(h, "::5", true, "d", "u"), HBA_PASSWORD);
    /* a unix-domain sockaddr counts as local */
    struct sockaddr_un un;
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    assert_int_equal(hba_match(h, (struct sockaddr *)&un, false, "d", "u"), HBA_TRUST);
    hba_free(h);
}

static void test_first_match_and_default(void **state)
{
    (void)state;
    Hba *h = parse("host all admin 0.0.0.0/0 reject\n"
                   "host all all   0.0.0.0/0 trust\n"
                   "host all admin 0.0.0.0/0 trust\n");
    assert_int_equal(m(h, "1.1.1.1", false, "d", "admin"), HBA_REJECT);
    assert_int_equal(m(h, "1.1.1.1", false, "d", "other"), HBA_TRUST);
    /* no matching rule at all */
    assert_int_equal(m(h, "::1", false, "d", "other"), HBA_REJECT);
    assert_int_equal(m(h, NULL, false, "d", "other"), HBA_REJECT);
    hba_free(h);

    h = parse("");
    assert_int_equal(m(h, "1.1.1.1", false, "d", "u"), HBA_REJECT);
    hba_free(h);
    assert_int_equal(hba_match(NULL, NULL, false, "d", "u"), HBA_REJECT);
    hba_free(NULL);
}

static void test_lexing(void **state)
{
    (void)state;
    /* comma lists with blanks, CRLF, a continuation line, quoted blanks */
    Hba *h = parse("host a, b,c  all all md5\r\n"
                   "host \"my db\" all \\\n"
                   "    all trust\n"
                   "host all all all reject#comment right after\n");
    assert_int_equal(m(h, "1.1.1.1", false, "b", "u"), HBA_MD5);
    assert_int_equal(m(h, "1.1.1.1", false, "c", "u"), HBA_MD5);
    assert_int_equal(m(h, "1.1.1.1", false, "my db", "u"), HBA_TRUST);
    assert_int_equal(m(h, "1.1.1.1", false, "a", "u"), HBA_MD5);
    assert_int_equal(m(h, "1.1.1.1", false, "d", "u"), HBA_REJECT);
    hba_free(h);
}

static void expect_error(const char *text, const char *msg)
{
    char err[256] = "";
    Hba *h = hba_parse("hba.conf", text, strlen(text), err, sizeof(err));
    if (h) {
        hba_free(h);
        fail_msg("no error for: %s", text);
    }
    if (!strstr(err, msg)) fail_msg("error \"%s\" does not contain \"%s\"", err, msg);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("host all all 127.0.0.1/32 trust\nhost all all localhost md5\n",
                 "hba.conf:2: host names are not supported");
    expect_error("\n\nhost all all .example.com md5\n", "hba.conf:3: host names are not supported");
    expect_error("local all all peer\n",
                 "hba.conf:1: authentication method \"peer\" is not supported");
    expect_error("host all all all ident\n", "authentication method \"ident\" is not supported");
    expect_error("host all all all ldap\n", "authentication method \"ldap\" is not supported");
    expect_error("host all all all gss\n", "authentication method \"gss\" is not supported");
    expect_error("host all all all pam\n", "authentication method \"pam\" is not supported");
    expect_error("host all all all radius\n", "authentication method \"radius\" is not supported");
    expect_error("host all all all bogus\n", "hba.conf:1: invalid authentication method \"bogus\"");
    expect_error("hots all all all md5\n", "hba.conf:1: invalid connection type \"hots\"");
    expect_error("host all all\n", "hba.conf:1: end-of-line before IP address");
    expect_error("host all all all\n", "hba.conf:1: end-of-line before authentication method");
    expect_error("local all\n", "end-of-line before role");
    expect_error("host\n", "end-of-line before database");
    expect_error("host all all 10.0.0.0/33 md5\n", "invalid CIDR mask");
    expect_error("host all all 10.0.0.0/x md5\n", "invalid CIDR mask");
    expect_error("host all all ::1/129 md5\n", "invalid CIDR mask");
    expect_error("host all all 10.0.0.0 md5\n", "invalid IP mask");
    expect_error("host all all 10.0.0.0\n", "end-of-line before netmask");
    expect_error("host all all 10.0.0.0 ffff:: md5\n", "invalid IP mask");
    expect_error("host all all all md5 clientcert=verify-full\n",
                 "authentication option \"clientcert=verify-full\" is not supported");
    expect_error("host all all all cert\n", "cert authentication is only supported on hostssl");
    expect_error("host \"unterminated all all md5\n", "hba.conf:1: unterminated quoted string");
    expect_error("host a,,b all all md5\n", "empty item");
    /* "a, all" is one list: the address column is then "md5" */
    expect_error("host a, all all md5\n", "hba.conf:1: host names are not supported");
    expect_error("host a,\n", "comma at end");
    expect_error("host @dbs all all md5\n", "@file inclusion");
    expect_error("host all +admins all md5\n", "group membership");
    expect_error("host all /^u.*$ all md5\n", "regular expressions");
    expect_error("host all all samenet md5\n", "\"samenet\" is not supported");
    expect_error("include other.conf\n", "\"include\" is not supported");
    expect_error("host all all 1.2.3.4/32,5.6.7.8/32 md5\n", "multiple values");
}

static void test_load_file(void **state)
{
    (void)state;
    char err[256];
    char path[] = "/tmp/test_hba_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "local all all trust\nhost all all all peer\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    assert_null(hba_load(path, err, sizeof(err)));
    char expect[300];
    snprintf(expect, sizeof(expect), "%s:2: authentication method \"peer\" is not supported", path);
    assert_string_equal(err, expect);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("local all all trust\n", f);
    fclose(f);
    Hba *h = hba_load(path, err, sizeof(err));
    assert_non_null(h);
    assert_int_equal(m(h, NULL, false, "d", "u"), HBA_TRUST);
    hba_free(h);
    unlink(path);
    assert_null(hba_load("/nonexistent/hba.conf", err, sizeof(err)));
    assert_non_null(strstr(err, "/nonexistent/hba.conf"));
}

static void test_method_names(void **state)
{
    (void)state;
    assert_string_equal(hba_method_name(HBA_REJECT), "reject");
    assert_string_equal(hba_method_name(HBA_TRUST), "trust");
    assert_string_equal(hba_method_name(HBA_MD5), "md5");
    assert_string_equal(hba_method_name(HBA_SCRAM), "scram-sha-256");
    assert_string_equal(hba_method_name(HBA_PASSWORD), "password");
    assert_string_equal(hba_method_name(HBA_CERT), "cert");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_db_user),       cmocka_unit_test(test_addresses),
        cmocka_unit_test(test_ssl_and_local), cmocka_unit_test(test_first_match_and_default),
        cmocka_unit_test(test_lexing),        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_load_file),     cmocka_unit_test(test_method_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
