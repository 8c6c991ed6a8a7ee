/*
 * fuzz_proto.c — the wire-protocol parsers of proto.c on untrusted bytes.
 *
 * The whole input is tried as a startup-phase packet (proto_parse_startup:
 * StartupMessage, SSLRequest, GSSENCRequest, CancelRequest), then walked as
 * a stream of typed messages (type byte, 4-byte length) the way the relay
 * frames them: each body goes, as an exact-size heap copy, to
 * proto_parse_error() and to a PktReader driven by the body's own bytes,
 * so every rd_* accessor sees truncated and oversized fields.  Finally the
 * input as a C string goes through proto_quote_literal().
 */
#include "fuzz_common.h"
#include "proto.h"

/* Read the body with rd_* calls chosen by the bytes it returns itself. */
static void walk_reader(const uint8_t *body, size_t len)
{
    PktReader r;
    rd_init(&r, body, len);
    for (int steps = 0; steps < 64 && !r.bad && rd_left(&r) > 0; steps++) {
        uint8_t op = rd_u8(&r);
        switch (op % 5) {
        case 0: (void)rd_u16(&r); break;
        case 1: (void)rd_u32(&r); break;
        case 2: fuzz_touch_str(rd_str(&r)); break;
        case 3: {
            /* a length taken from the input, as messages carry them */
            uint32_t n = rd_u32(&r);
            const uint8_t *p = rd_bytes(&r, n);
            if (p && n) {
                volatile uint8_t last = p[n - 1];
                (void)last;
            }
            break;
        }
        default: (void)rd_u8(&r); break;
        }
    }
    /* once bad, reads must keep returning zero / "" without moving */
    if (r.bad && (rd_u32(&r) != 0 || rd_str(&r)[0] != '\0')) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    StartupPacket sp;
    char err[512];

    if (proto_parse_startup(data, size, &sp, err, sizeof(err)) == 0) {
        if (sp.nparams < 0 || sp.nparams > STARTUP_MAX_PARAMS) abort();
        for (int i = 0; i < sp.nparams; i++) {
            fuzz_touch_str(sp.names[i]);
            fuzz_touch_str(sp.values[i]);
        }
    } else {
        fuzz_touch_str(err);
    }

    /* message framing: 'T' len32 body ... */
    size_t off = 0;
    while (size - off >= 5) {
        uint32_t len = proto_get_u32(data + off + 1);
        if (len < 4 || len - 4 > size - off - 5) break;
        uint8_t *body = fuzz_dup(data + off + 5, len - 4);
        ErrorFields ef;
        proto_parse_error(body, len - 4, &ef);
        fuzz_touch_str(ef.severity);
        fuzz_touch_str(ef.sqlstate);
        fuzz_touch_str(ef.message);
        walk_reader(body, len - 4);
        free(body);
        off += 1 + (size_t)len;
    }

    char *s = fuzz_strdup(data, size);
    char quoted[1024];
    if (proto_quote_literal(s, quoted, sizeof(quoted)) == 0) fuzz_touch_str(quoted);
    free(s);
    return 0;
}
