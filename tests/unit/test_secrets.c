/*
 * test_secrets.c — passwords from the configuration and auth_file are wiped
 * before their memory is freed (issue #15, item 7).
 *
 * The test replaces free() for this program: while `watching` is set, every
 * block given back is searched for a marker password before it goes to
 * glibc's own free.  Loading and freeing a configuration or an auth_file
 * that contain the marker must leave it in no freed block.  Under ASan the
 * allocator is ASan's, so the test skips itself there.
 */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "userlist.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif

#define MARK "Zq7Secret-Marker-91x"

static bool watching;
static int leaked; /* freed blocks that still held the marker */

#ifndef SANITIZED
void __libc_free(void *p);
void free(void *p)
{
    if (p && watching && memmem(p, malloc_usable_size(p), MARK, strlen(MARK))) leaked++;
    __libc_free(p);
}
#endif

static char dir[64];

static int setup(void **state)
{
    (void)state;
    strcpy(dir, "/tmp/pgfunnel-test-secrets-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_database_password(void **state)
{
    char path[128], err[1024];
    (void)state;
#ifdef SANITIZED
    skip(); /* the sanitizer owns free() */
#endif
    snprintf(path, sizeof(path), "%s/pgfunnel.ini", dir);
    /* given twice on one line (the second wins), quoted, and the last line of the file */
    write_file(path, "[databases]\n"
                     "a = host=127.0.0.1 password=" MARK "1 password='" MARK "2'\n"
                     "[pgbouncer]\n"
                     "listen_port = 6999\n"
                     "[databases]\n"
                     "b = dbname=x password=" MARK "3\n");
    leaked = 0;
    watching = true;
    Config *cfg = config_load(path, err, sizeof(err));
    watching = false;
    assert_non_null(cfg);
    const DbConf *db = config_find_db(cfg, "a");
    assert_non_null(db);
    assert_string_equal(db->password, MARK "2");
    assert_int_equal(leaked, 0);
    watching = true;
    config_free(cfg);
    watching = false;
    assert_int_equal(leaked, 0);
}

static void test_database_password_error(void **state)
{
    char path[128], err[1024];
    (void)state;
#ifdef SANITIZED
    skip(); /* the sanitizer owns free() */
#endif
    snprintf(path, sizeof(path), "%s/bad.ini", dir);
    write_file(path, "[databases]\n"
                     "a = password='" MARK "\n"
                     "b = password=" MARK " port=x\n");
    leaked = 0;
    watching = true;
    Config *cfg = config_load(path, err, sizeof(err));
    watching = false;
    assert_null(cfg);
    assert_null(strstr(err, MARK));
    assert_int_equal(leaked, 0);
}

static void test_auth_file(void **state)
{
    char path[128], err[256];
    (void)state;
#ifdef SANITIZED
    skip(); /* the sanitizer owns free() */
#endif
    snprintf(path, sizeof(path), "%s/users.txt", dir);
    write_file(path, "\"alice\" \"" MARK "\"\n\"alice\" \"md5" MARK "\" \"" MARK "\"\n");
    leaked = 0;
    watching = true;
    Userlist *ul = userlist_load(path, err, sizeof(err));
    assert_non_null(ul);
    userlist_free(ul);
    watching = false;
    assert_int_equal(leaked, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_database_password, setup, teardown),
        cmocka_unit_test_setup_teardown(test_database_password_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_auth_file, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
