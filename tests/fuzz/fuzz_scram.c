/*
 * fuzz_scram.c — the SCRAM-SHA-256 server side fed client messages.
 *
 * Input layout: one selector byte, then the client-first-message, a NUL,
 * then the client-final-message (absent when there is no NUL).  The
 * selector picks the mechanism (bit 0: -PLUS), whether the connection
 * offers channel-binding data (bit 1) and whether the exchange runs on a
 * mock secret as for an unknown user (bit 2).  The secret is fixed (RFC
 * 7677's "pencil" example, derived once) and our nonce half is pinned with
 * test_server_nonce, so the seed corpus holds a complete, successful
 * exchange and the fuzzer can mutate every field of it.  Messages are
 * passed as exact-size heap copies without a terminating NUL, as auth.c
 * passes them out of the receive buffer.
 *
 * The same two halves are also fed to the client side (pass-through backend
 * logins) as a server-first and a server-final message, with the ClientKey of
 * the fixed secret and RFC 7677's client nonce.
 *
 * The input as a C string also goes through scram_parse_secret() (auth_file
 * and auth_query secrets), md5_check_response() and md5_salted_response().
 */
#include "fuzz_common.h"
#include "scram.h"

#define RFC_SALT_B64     "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"

#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"

static ScramSecret fixed_secret;
static uint8_t fixed_client_key[SCRAM_KEY_LEN];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* RFC 7677: salt W22ZaJ0SNY7soEsUEjb6gQ==, password "pencil", 4096 rounds */
    static const uint8_t salt[16] = {0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
                                     0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81};
    if (scram_keys_from_password("pencil", salt, sizeof(salt), 4096, &fixed_secret,
                                 fixed_client_key) != 0)
        abort();
    return 0;
}

static void run_exchange(uint8_t sel, const uint8_t *first, size_t first_len,
                         const uint8_t *final, size_t final_len, bool have_final)
{
    static const uint8_t cbind[32] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11,
                                      12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
                                      23, 24, 25, 26, 27, 28, 29, 30, 31, 32};
    const char *mech = (sel & 1) ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256";
    ScramState st;
    char err[256];
    char *server_first = NULL, *server_final = NULL;

    scram_state_init(&st);
    st.secret = fixed_secret;
    st.test_server_nonce = RFC_SERVER_NONCE;
    if (sel & 4) {
        scram_mock_secret("fuzzuser", &st.secret);
        st.failed = true;
    }
    char *msg = (char *)fuzz_dup(first, first_len);
    int rc = scram_handle_client_first(&st, mech, msg, first_len, (sel & 2) ? cbind : NULL,
                                       (sel & 2) ? (int)sizeof(cbind) : 0, &server_first, err,
                                       sizeof(err));
    free(msg);
    if (rc != 0) {
        fuzz_touch_str(err);
        goto out;
    }
    fuzz_touch_str(server_first);
    if (!have_final) goto out;
    msg = (char *)fuzz_dup(final, final_len);
    rc = scram_handle_client_final(&st, msg, final_len, &server_final, err, sizeof(err));
    free(msg);
    if (rc == 1) {
        if (st.failed) abort(); /* a mock secret must never authenticate */
        fuzz_touch_str(server_final);
    } else if (rc < 0) {
        fuzz_touch_str(err);
    }
out:
    free(server_first);
    free(server_final);
    scram_state_free(&st);
}

/* The client side: what a backend sends during a pass-through login. */
static void run_client(uint8_t sel, const uint8_t *first, size_t first_len, const uint8_t *final,
                       size_t final_len, bool have_final)
{
    static const uint8_t cbind[32] = {1};
    ScramClient cl;
    char err[256], *cf = NULL, *cfin = NULL;
    scram_client_init(&cl, &fixed_secret, fixed_client_key);
    cl.test_client_nonce = RFC_CLIENT_NONCE;
    if (scram_client_first(&cl, (sel & 2) ? cbind : NULL, (sel & 2) ? (int)sizeof(cbind) : 0, &cf,
                           err, sizeof(err)) != 0)
        abort(); /* nothing from the fuzzer is involved yet */
    char *msg = (char *)fuzz_dup(first, first_len);
    int rc = scram_client_final(&cl, msg, first_len, &cfin, err, sizeof(err));
    free(msg);
    if (rc == 0)
        fuzz_touch_str(cfin);
    else
        fuzz_touch_str(err);
    if (rc == 0 && have_final) {
        msg = (char *)fuzz_dup(final, final_len);
        rc = scram_client_verify(&cl, msg, final_len, err, sizeof(err));
        free(msg);
        if (rc != 1) fuzz_touch_str(err);
    }
    free(cf);
    free(cfin);
    scram_client_free(&cl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    uint8_t sel = data[0];
    const uint8_t *rest = data + 1;
    size_t rest_len = size - 1;
    const uint8_t *nul = memchr(rest, 0, rest_len);
    if (nul) {
        size_t first_len = (size_t)(nul - rest);
        run_exchange(sel, rest, first_len, nul + 1, rest_len - first_len - 1, true);
        run_client(sel, rest, first_len, nul + 1, rest_len - first_len - 1, true);
    } else {
        run_exchange(sel, rest, rest_len, NULL, 0, false);
        run_client(sel, rest, rest_len, NULL, 0, false);
    }

    char *s = fuzz_strdup(rest, rest_len);
    ScramSecret sec;
    char buf[256];
    if (scram_parse_secret(s, &sec) == 0) {
        if (sec.salt_len < 0 || sec.salt_len > SCRAM_SALT_MAX) abort();
        if (scram_format_secret(&sec, buf, sizeof(buf)) == 0) fuzz_touch_str(buf);
    }
    static const uint8_t salt[4] = {1, 2, 3, 4};
    (void)md5_check_response(s, "fuzzuser", salt, "md5a3556571e93b0d20722ba62be61e8c2d");
    (void)md5_check_response("md5a3556571e93b0d20722ba62be61e8c2d", "fuzzuser", salt, s);
    char answer[36];
    if (md5_salted_response(s, salt, answer)) fuzz_touch_str(answer);
    free(s);
    return 0;
}
