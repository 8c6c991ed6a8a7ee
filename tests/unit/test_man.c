/*
 * test_man.c — the manual pages: man/pgfunnel.ini.5 is exactly what
 * config_write_man() generates from the option table, it documents every
 * option, and pgfunnel(1) names every command-line option of --help.
 *
 * Run from the repository root (make unit does).  That the pages render
 * without warnings is checked by tests/integration/t_install.sh (it needs
 * man-db and groff).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "version.h"

static char *read_stream(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0, r;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            cap *= 2;
            buf = realloc(buf, cap + 1);
            assert_non_null(buf);
        }
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot open %s (run from the repository root)", path);
    char *s = read_stream(f, len);
    fclose(f);
    return s;
}

static char *generate(size_t *len)
{
    FILE *f = tmpfile();
    assert_non_null(f);
    config_write_man(f);
    rewind(f);
    char *s = read_stream(f, len);
    fclose(f);
    return s;
}

static void test_man_ini_in_sync(void **state)
{
    size_t glen, slen;
    char *g = generate(&glen), *s = read_file("man/pgfunnel.ini.5", &slen);
    (void)state;
    if (glen != slen || memcmp(g, s, glen) != 0) {
        free(g);
        free(s);
        fail_msg("man/pgfunnel.ini.5 is out of date: ./pgfunnel --man-ini > man/pgfunnel.ini.5");
    }
    free(g);
    free(s);
}

/* Every option has its own tagged paragraph ".TP\n.B name\n". */
static void test_man_ini_lists_every_option(void **state)
{
    size_t len;
    char *g = generate(&len);
    (void)state;
    for (size_t i = 0; i < config_option_count(); i++) {
        const OptionDef *opt = config_option_at(i);
        char want[128];
        snprintf(want, sizeof(want), ".TP\n.B %s\n", opt->name);
        /* option names use '_' only, never '-', so they appear unescaped */
        if (!strstr(g, want)) fail_msg("%s is not documented in pgfunnel.ini(5)", opt->name);
    }
    free(g);
}

/* Both pages carry the version of the binary. */
static void test_man_pages_carry_the_version(void **state)
{
    size_t len;
    char *one = read_file("man/pgfunnel.1", &len), *five = generate(&len);
    char want[64];
    (void)state;
    snprintf(want, sizeof(want), "\"pgfunnel %s\"", PGFUNNEL_VERSION);
    if (!strstr(one, want)) fail_msg("man/pgfunnel.1: .TH does not name %s", want);
    if (!strstr(five, want)) fail_msg("pgfunnel.ini(5): .TH does not name %s", want);
    free(one);
    free(five);
}

/* pgfunnel(1) documents every long option (escaped as roff writes them). */
static void test_man_one_lists_every_option(void **state)
{
    static const char *const opts[] = {
        "\\-\\-daemon",          "\\-\\-quiet",     "\\-\\-verbose", "\\-\\-user",
        "\\-\\-check",           "\\-\\-takeover",  "\\-\\-version", "\\-\\-help",
        "\\-\\-sample\\-config", "\\-\\-man\\-ini",
    };
    size_t len;
    char *one = read_file("man/pgfunnel.1", &len);
    (void)state;
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
        if (!strstr(one, opts[i])) fail_msg("pgfunnel(1) does not document %s", opts[i]);
    free(one);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_man_ini_in_sync),
        cmocka_unit_test(test_man_ini_lists_every_option),
        cmocka_unit_test(test_man_pages_carry_the_version),
        cmocka_unit_test(test_man_one_lists_every_option),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
