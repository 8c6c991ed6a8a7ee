/* test_proto.c — protocol builders and parsers (proxy/proto.c). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <string.h>
#include <stdlib.h>

#include "proto.h"

static size_t make_startup(uint8_t *buf, uint32_t code, const char *const *kv, int n)
{
    size_t o = 8;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(kv[i]) + 1;
        memcpy(buf + o, kv[i], l);
        o += l;
    }
    buf[o++] = 0;
    proto_put_u32(buf, (uint32_t)o);
    proto_put_u32(buf + 4, code);
    return o;
}

static void test_startup_normal(void **state)
{
    (void)state;
    uint8_t buf[256];
    const char *kv[] = {"user", "alice", "database", "db1", "application_name", "app"};
    size_t len = make_startup(buf, PROTO_V3, kv, 6);
    StartupPacket sp;
    char err[128];
    assert_int_equal(proto_parse_startup(buf, len, &sp, err, sizeof(err)), 0);
    assert_int_equal(sp.kind, STARTUP_NORMAL);
    assert_int_equal(sp.nparams, 3);
    assert_string_equal(sp.names[0], "user");
    assert_string_equal(sp.values[0], "alice");
    assert_string_equal(sp.values[2], "app");
}

static void test_startup_special(void **state)
{
    (void)state;
    uint8_t buf[16];
    StartupPacket sp;
    char err[128];
    proto_put_u32(buf, 8);
    proto_put_u32(buf + 4, PROTO_SSL_REQUEST);
    assert_int_equal(proto_parse_startup(buf, 8, &sp, err, sizeof(err)), 0);
    assert_int_equal(sp.kind, STARTUP_SSL);
    proto_put_u32(buf + 4, PROTO_GSSENC_REQUEST);
    assert_int_equal(proto_parse_startup(buf, 8, &sp, err, sizeof(err)), 0);
    assert_int_equal(sp.kind, STARTUP_GSSENC);
    proto_put_u32(buf, 16);
    proto_put_u32(buf + 4, PROTO_CANCEL_REQUEST);
    proto_put_u32(buf + 8, 42);
    proto_put_u32(buf + 12, 0xdeadbeef);
    assert_int_equal(proto_parse_startup(buf, 16, &sp, err, sizeof(err)), 0);
    assert_int_equal(sp.kind, STARTUP_CANCEL);
    assert_int_equal(sp.cancel_pid, 42);
    assert_int_equal(sp.cancel_key, 0xdeadbeef);
}

static void test_startup_bad(void **state)
{
    (void)state;
    uint8_t buf[64];
    StartupPacket sp;
    char err[128];
    /* protocol 2 */
    const char *kv[] = {"user", "u"};
    size_t len = make_startup(buf, 0x00020000, kv, 2);
    assert_int_equal(proto_parse_startup(buf, len, &sp, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "unsupported frontend protocol"));
    /* length field disagrees with the packet */
    len = make_startup(buf, PROTO_V3, kv, 2);
    proto_put_u32(buf, (uint32_t)len + 1);
    assert_int_equal(proto_parse_startup(buf, len, &sp, err, sizeof(err)), -1);
    /* missing terminator */
    len = make_startup(buf, PROTO_V3, kv, 2);
    buf[len - 1] = 'x';
    assert_int_equal(proto_parse_startup(buf, len, &sp, err, sizeof(err)), -1);
    /* a value without its NUL */
    memcpy(buf + 8, "user\0ab", 7);
    proto_put_u32(buf, 15);
    proto_put_u32(buf + 4, PROTO_V3);
    assert_int_equal(proto_parse_startup(buf, 15, &sp, err, sizeof(err)), -1);
    /* too short / too long */
    assert_int_equal(proto_parse_startup(buf, 4, &sp, err, sizeof(err)), -1);
    assert_int_equal(proto_parse_startup(buf, PROTO_STARTUP_MAX + 1, &sp, err, sizeof(err)), -1);
    /* cancel request with the wrong length */
    proto_put_u32(buf, 12);
    proto_put_u32(buf + 4, PROTO_CANCEL_REQUEST);
    assert_int_equal(proto_parse_startup(buf, 12, &sp, err, sizeof(err)), -1);
}

static void test_error_roundtrip(void **state)
{
    (void)state;
    PktBuf b;
    pkt_init(&b);
    pkt_error(&b, "FATAL", "53300", "no more connections allowed (%s)", "max_client_conn");
    assert_false(b.failed);
    assert_int_equal(b.data[0], 'E');
    assert_int_equal(proto_get_u32(b.data + 1), b.len - 1);
    ErrorFields ef;
    proto_parse_error(b.data + 5, b.len - 5, &ef);
    assert_string_equal(ef.severity, "FATAL");
    assert_string_equal(ef.sqlstate, "53300");
    assert_string_equal(ef.message, "no more connections allowed (max_client_conn)");
    pkt_free(&b);
}

static void test_builders(void **state)
{
    (void)state;
    PktBuf b;
    pkt_init(&b);
    pkt_auth_ok(&b);
    pkt_param_status(&b, "TimeZone", "UTC");
    pkt_backend_key(&b, 7, 9);
    pkt_ready(&b, 'I');
    const uint8_t expect_ready[] = {'Z', 0, 0, 0, 5, 'I'};
    assert_memory_equal(b.data + b.len - 6, expect_ready, 6);
    const uint8_t expect_auth[] = {'R', 0, 0, 0, 8, 0, 0, 0, 0};
    assert_memory_equal(b.data, expect_auth, 9);
    /* ParameterStatus: 'S' len "TimeZone\0UTC\0" */
    assert_int_equal(b.data[9], 'S');
    assert_int_equal(proto_get_u32(b.data + 10), 4 + 9 + 4);
    pkt_reset(&b);
    const char *unknown[] = {"_pq_.foo"};
    pkt_negotiate_version(&b, 0, unknown, 1);
    assert_int_equal(b.data[0], 'v');
    assert_int_equal(proto_get_u32(b.data + 5), PROTO_V3);
    assert_int_equal(proto_get_u32(b.data + 9), 1);
    assert_string_equal((char *)b.data + 13, "_pq_.foo");
    pkt_reset(&b);
    const char *vals[] = {"a", NULL};
    pkt_data_row(&b, vals, 2);
    assert_int_equal(proto_get_u32(b.data + 7), 1);
    assert_int_equal(proto_get_u32(b.data + 12), 0xffffffffu);
    pkt_free(&b);
}

static void test_reader_bounds(void **state)
{
    (void)state;
    const uint8_t data[] = {0, 1, 'a', 'b'};
    PktReader r;
    rd_init(&r, data, sizeof(data));
    assert_int_equal(rd_u16(&r), 1);
    const char *s = rd_str(&r); /* no NUL: bad */
    assert_true(r.bad);
    assert_string_equal(s, "");
    assert_int_equal(rd_u32(&r), 0);
}

static void test_quote_literal(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(proto_quote_literal("it's", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "'it''s'");
    assert_int_equal(proto_quote_literal("a\\b", buf, sizeof(buf)), 0);
    assert_string_equal(buf, "E'a\\\\b'");
    assert_int_equal(proto_quote_literal("0123456789", buf, 8), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_startup_normal), cmocka_unit_test(test_startup_special),
        cmocka_unit_test(test_startup_bad),    cmocka_unit_test(test_error_roundtrip),
        cmocka_unit_test(test_builders),       cmocka_unit_test(test_reader_bounds),
        cmocka_unit_test(test_quote_literal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
