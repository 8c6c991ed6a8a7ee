/*
 * test_saslprep.c — SASLprep of SCRAM passwords as PostgreSQL applies it
 * (RFC 4013 through libidn): ASCII untouched, mappings and NFKC applied,
 * refused input used as raw bytes; and the verifier follows the prepared
 * form.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "scram.h"

static void test_ascii_is_used_as_is(void **state)
{
    (void)state;
    assert_null(scram_saslprep("plain password"));
    /* PostgreSQL skips SASLprep for ASCII, control characters included */
    assert_null(scram_saslprep("tab\there"));
}

static void test_mapping_and_nfkc(void **state)
{
    (void)state;
    /* U+00AD SOFT HYPHEN maps to nothing; U+2168 ROMAN NUMERAL NINE is "IX" under NFKC */
    char *p = scram_saslprep("I\xc2\xadX");
    assert_non_null(p);
    assert_string_equal(p, "IX");
    free(p);
    p = scram_saslprep("\xe2\x85\xa8");
    assert_non_null(p);
    assert_string_equal(p, "IX");
    free(p);
    /* U+00A0 NO-BREAK SPACE maps to a space */
    p = scram_saslprep("a\xc2\xa0"
                       "b");
    assert_non_null(p);
    assert_string_equal(p, "a b");
    free(p);
}

static void test_refused_input_is_raw(void **state)
{
    (void)state;
    assert_null(scram_saslprep("\xff\xfe invalid utf-8"));
    /* a prohibited control character next to a non-ASCII letter */
    assert_null(scram_saslprep("pw\x07x\xc3\xa9"));
}

static void test_verifier_uses_the_prepared_password(void **state)
{
    (void)state;
    static const uint8_t salt[16] = "0123456789abcdef";
    ScramSecret a, b;
    assert_int_equal(scram_secret_from_password("\xe2\x85\xa8", salt, 16, 4096, &a), 0);
    assert_int_equal(scram_secret_from_password("IX", salt, 16, 4096, &b), 0);
    assert_memory_equal(a.stored_key, b.stored_key, SCRAM_KEY_LEN);
    assert_memory_equal(a.server_key, b.server_key, SCRAM_KEY_LEN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ascii_is_used_as_is),
        cmocka_unit_test(test_mapping_and_nfkc),
        cmocka_unit_test(test_refused_input_is_raw),
        cmocka_unit_test(test_verifier_uses_the_prepared_password),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
