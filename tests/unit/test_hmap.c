/*
 * test_hmap.c — the string-keyed hash table: whole-string keys (no prefix
 * ever matches), replace, remove, growth past many entries, and the hash.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hmap.h"

static void test_put_get_remove(void **state)
{
    (void)state;
    Hmap m;
    hmap_init(&m);
    int a = 1, b = 2;
    assert_null(hmap_get(&m, "x"));
    assert_int_equal(hmap_put(&m, "alice", &a), 0);
    assert_int_equal(hmap_put(&m, "bob", &b), 0);
    assert_ptr_equal(hmap_get(&m, "alice"), &a);
    assert_ptr_equal(hmap_get(&m, "bob"), &b);
    assert_int_equal(m.count, 2);
    /* replace keeps one entry */
    assert_int_equal(hmap_put(&m, "alice", &b), 0);
    assert_ptr_equal(hmap_get(&m, "alice"), &b);
    assert_int_equal(m.count, 2);
    assert_ptr_equal(hmap_remove(&m, "alice"), &b);
    assert_null(hmap_get(&m, "alice"));
    assert_null(hmap_remove(&m, "alice"));
    assert_int_equal(m.count, 1);
    hmap_free(&m);
}

/* Keys that share a long prefix are different keys: nothing is truncated. */
static void test_long_keys_compare_whole(void **state)
{
    (void)state;
    Hmap m;
    hmap_init(&m);
    static char k1[2000], k2[2000];
    memset(k1, 'a', sizeof(k1) - 1);
    memset(k2, 'a', sizeof(k2) - 1);
    k2[sizeof(k2) - 2] = 'b';
    int a = 1;
    assert_int_equal(hmap_put(&m, k1, &a), 0);
    assert_ptr_equal(hmap_get(&m, k1), &a);
    assert_null(hmap_get(&m, k2));
    k2[sizeof(k2) - 2] = 0; /* a prefix of k1 */
    assert_null(hmap_get(&m, k2));
    hmap_free(&m);
}

static void test_many_entries(void **state)
{
    (void)state;
    enum { N = 50000 };
    Hmap m;
    hmap_init(&m);
    char(*keys)[16] = calloc(N, 16);
    assert_non_null(keys);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], 16, "user%d", i);
        assert_int_equal(hmap_put(&m, keys[i], keys[i]), 0);
    }
    assert_int_equal(m.count, N);
    /* the table grew with its entries: chains stay short */
    assert_true(m.mask + 1 >= N);
    for (int i = 0; i < N; i++)
        assert_ptr_equal(hmap_get(&m, keys[i]), keys[i]);
    for (int i = 0; i < N; i += 2)
        assert_ptr_equal(hmap_remove(&m, keys[i]), keys[i]);
    for (int i = 0; i < N; i++)
        assert_true((hmap_get(&m, keys[i]) != NULL) == (i % 2 == 1));
    hmap_free(&m);
    free(keys);
}

static void test_hash_depends_on_every_byte(void **state)
{
    (void)state;
    assert_int_not_equal(hmap_hash("abc", 3), hmap_hash("abd", 3));
    assert_int_not_equal(hmap_hash("abc", 3), hmap_hash("abc", 2));
    assert_int_equal(hmap_hash("abcdefghijk", 11), hmap_hash("abcdefghijk", 11));
    assert_int_not_equal(hmap_hash("", 0), hmap_hash("\0", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put_get_remove),
        cmocka_unit_test(test_long_keys_compare_whole),
        cmocka_unit_test(test_many_entries),
        cmocka_unit_test(test_hash_depends_on_every_byte),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
