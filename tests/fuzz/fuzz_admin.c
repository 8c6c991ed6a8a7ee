/*
 * fuzz_admin.c — the admin console: its query tokenizer and every command
 * (SHOW, SET, PAUSE, KILL, ...), reached as an admin user.
 *
 * A valid StartupMessage (user "fuzz", database "pgbouncer", auth_type
 * trust, fuzz in admin_users) is prepended; the input is the rest of the
 * connection, normally Query messages.  The fake backend of fuzz_client.h
 * exists, so commands about database "fuzzdb" find a real pool.
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
    Loop *loop = fuzz_loop_create("trust", "transaction", true);
    int bystander = fuzz_bystander(loop);
    PktBuf b;
    pkt_init(&b);
    fuzz_startup_packet(&b, "fuzz", "pgbouncer");
    pkt_put_bytes(&b, data, size);
    if (b.failed) abort();
    fuzz_client_run(loop, b.data, b.len);
    pkt_free(&b);
    close(bystander);
    fuzz_loop_destroy(loop);
    return 0;
}
