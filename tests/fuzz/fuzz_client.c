/*
 * fuzz_client.c — a client connection from its first byte: the startup
 * phase (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage and
 * protocol negotiation), authentication messages and whatever follows.
 *
 * Input: one selector byte choosing auth_type (trust, md5, scram-sha-256,
 * plain, hba; see fuzz_client.h for the users of the auth_file), then the
 * raw bytes the client sends, startup packet included.
 */
#include "fuzz_client.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_client_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const auth[] = {"trust", "md5", "scram-sha-256", "plain", "hba"};
    if (size < 1) return 0;
    Loop *loop = fuzz_loop_create(auth[data[0] % 5], "session", false);
    fuzz_client_run(loop, data + 1, size - 1);
    fuzz_loop_destroy(loop);
    return 0;
}
