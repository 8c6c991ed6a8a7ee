/*
 * fuzz_client_login.c — the relay after login: message framing, the
 * extended-protocol and ReadyForQuery bookkeeping, parameter tracking,
 * prepared-statement mapping and transaction/statement pooling.
 *
 * A valid StartupMessage (user "fuzz", database "fuzzdb" on the fake
 * backend of fuzz_client.h, auth_type trust) is prepended, so every input
 * starts logged in.  Input: one selector byte (bits 0-1: pool_mode session /
 * transaction / statement; bit 2: max_prepared_statements = 100), then the
 * client's messages.
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
    static const char *const modes[] = {"session", "transaction", "statement", "transaction"};
    if (size < 1) return 0;
    Loop *loop = fuzz_loop_create("trust", modes[data[0] & 3], (data[0] & 4) != 0);
    PktBuf b;
    pkt_init(&b);
    fuzz_startup_packet(&b, "fuzz", "fuzzdb");
    pkt_put_bytes(&b, data + 1, size - 1);
    if (b.failed) abort();
    fuzz_client_run(loop, b.data, b.len);
    pkt_free(&b);
    fuzz_loop_destroy(loop);
    return 0;
}
