/*
 * proto.c — PostgreSQL protocol v3 builders and parsers (see proto.h).
 *
 * Builders never fail half-way: an allocation failure marks the PktBuf as
 * failed and later calls do nothing, so callers check once, before sending.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

void pkt_init(PktBuf *b)
{
    memset(b, 0, sizeof(*b));
}

void pkt_init_with(PktBuf *b, void *buf, size_t cap)
{
    memset(b, 0, sizeof(*b));
    b->data = buf;
    b->cap = cap;
    b->borrowed = true;
}

void pkt_free(PktBuf *b)
{
    if (!b->borrowed) free(b->data);
    memset(b, 0, sizeof(*b));
}

void pkt_reset(PktBuf *b)
{
    b->len = 0;
    b->msg_start = 0;
    b->failed = false;
}

static bool pkt_reserve(PktBuf *b, size_t n)
{
    if (b->failed) return false;
    if (b->len + n <= b->cap) return true;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    uint8_t *d = b->borrowed ? malloc(cap) : realloc(b->data, cap);
    if (!d) {
        b->failed = true;
        return false;
    }
    if (b->borrowed) memcpy(d, b->data, b->len);
    b->borrowed = false;
    b->data = d;
    b->cap = cap;
    return true;
}

void pkt_put_bytes(PktBuf *b, const void *p, size_t n)
{
    if (!pkt_reserve(b, n)) return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void pkt_put_u8(PktBuf *b, uint8_t v)
{
    pkt_put_bytes(b, &v, 1);
}

void pkt_put_u16(PktBuf *b, uint16_t v)
{
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    pkt_put_bytes(b, x, 2);
}

void pkt_put_u32(PktBuf *b, uint32_t v)
{
    uint8_t x[4];
    proto_put_u32(x, v);
    pkt_put_bytes(b, x, 4);
}

void pkt_put_str(PktBuf *b, const char *s)
{
    pkt_put_bytes(b, s, strlen(s) + 1);
}

void pkt_begin(PktBuf *b, char type)
{
    if (type) pkt_put_u8(b, (uint8_t)type);
    b->msg_start = b->len;
    pkt_put_u32(b, 0);
}

void pkt_end(PktBuf *b)
{
    if (b->failed) return;
    proto_put_u32(b->data + b->msg_start, (uint32_t)(b->len - b->msg_start));
}

static void pkt_error_fields(PktBuf *b, char type, const char *severity, const char *sqlstate,
                             const char *msg)
{
    pkt_begin(b, type);
    pkt_put_u8(b, 'S');
    pkt_put_str(b, severity);
    pkt_put_u8(b, 'V');
    pkt_put_str(b, severity);
    pkt_put_u8(b, 'C');
    pkt_put_str(b, sqlstate);
    pkt_put_u8(b, 'M');
    pkt_put_str(b, msg);
    pkt_put_u8(b, 0);
    pkt_end(b);
}

void pkt_error(PktBuf *b, const char *severity, const char *sqlstate, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    pkt_error_fields(b, 'E', severity, sqlstate, msg);
}

void pkt_notice(PktBuf *b, const char *msg)
{
    pkt_error_fields(b, 'N', "NOTICE", "00000", msg);
}

void pkt_auth_ok(PktBuf *b)
{
    pkt_begin(b, 'R');
    pkt_put_u32(b, 0);
    pkt_end(b);
}

void pkt_param_status(PktBuf *b, const char *name, const char *value)
{
    pkt_begin(b, 'S');
    pkt_put_str(b, name);
    pkt_put_str(b, value);
    pkt_end(b);
}

void pkt_backend_key(PktBuf *b, uint32_t pid, uint32_t key)
{
    pkt_begin(b, 'K');
    pkt_put_u32(b, pid);
    pkt_put_u32(b, key);
    pkt_end(b);
}

void pkt_ready(PktBuf *b, char status)
{
    pkt_begin(b, 'Z');
    pkt_put_u8(b, (uint8_t)status);
    pkt_end(b);
}

void pkt_query(PktBuf *b, const char *sql)
{
    pkt_begin(b, 'Q');
    pkt_put_str(b, sql);
    pkt_end(b);
}

void pkt_negotiate_version(PktBuf *b, uint32_t minor, const char *const *unknown, int n)
{
    pkt_begin(b, 'v');
    pkt_put_u32(b, PROTO_V3 | minor);
    pkt_put_u32(b, (uint32_t)n);
    for (int i = 0; i < n; i++)
        pkt_put_str(b, unknown[i]);
    pkt_end(b);
}

void pkt_row_description(PktBuf *b, const char *const *names, int n)
{
    pkt_row_description_typed(b, names, NULL, n);
}

void pkt_row_description_typed(PktBuf *b, const char *const *names, const uint32_t *oids, int n)
{
    pkt_begin(b, 'T');
    pkt_put_u16(b, (uint16_t)n);
    for (int i = 0; i < n; i++) {
        uint32_t oid = oids && oids[i] ? oids[i] : PG_OID_TEXT;
        int16_t typlen = oid == PG_OID_INT8 ? 8 : oid == PG_OID_INT4 ? 4 : -1;
        pkt_put_str(b, names[i]);
        pkt_put_u32(b, 0);                /* table oid */
        pkt_put_u16(b, 0);                /* column number */
        pkt_put_u32(b, oid);              /* type oid */
        pkt_put_u16(b, (uint16_t)typlen); /* typlen */
        pkt_put_u32(b, 0xffffffffu);      /* typmod -1 */
        pkt_put_u16(b, 0);                /* text format */
    }
    pkt_end(b);
}

void pkt_data_row(PktBuf *b, const char *const *values, int n)
{
    pkt_begin(b, 'D');
    pkt_put_u16(b, (uint16_t)n);
    for (int i = 0; i < n; i++) {
        if (!values[i]) {
            pkt_put_u32(b, 0xffffffffu);
            continue;
        }
        size_t l = strlen(values[i]);
        pkt_put_u32(b, (uint32_t)l);
        pkt_put_bytes(b, values[i], l);
    }
    pkt_end(b);
}

void pkt_command_complete(PktBuf *b, const char *tag)
{
    pkt_begin(b, 'C');
    pkt_put_str(b, tag);
    pkt_end(b);
}

void pkt_empty_query(PktBuf *b)
{
    pkt_begin(b, 'I');
    pkt_end(b);
}

/* ---- parsing ---- */

void rd_init(PktReader *r, const void *data, size_t len)
{
    r->p = data;
    r->end = r->p + len;
    r->bad = false;
}

size_t rd_left(const PktReader *r)
{
    return (size_t)(r->end - r->p);
}

const uint8_t *rd_bytes(PktReader *r, size_t n)
{
    if (r->bad || rd_left(r) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p;
    r->p += n;
    return p;
}

uint8_t rd_u8(PktReader *r)
{
    const uint8_t *p = rd_bytes(r, 1);
    return p ? p[0] : 0;
}

uint16_t rd_u16(PktReader *r)
{
    const uint8_t *p = rd_bytes(r, 2);
    return p ? (uint16_t)((p[0] << 8) | p[1]) : 0;
}

uint32_t rd_u32(PktReader *r)
{
    const uint8_t *p = rd_bytes(r, 4);
    return p ? proto_get_u32(p) : 0;
}

const char *rd_str(PktReader *r)
{
    if (r->bad) return "";
    const uint8_t *nul = memchr(r->p, 0, rd_left(r));
    if (!nul) {
        r->bad = true;
        return "";
    }
    const char *s = (const char *)r->p;
    r->p = nul + 1;
    return s;
}

int proto_parse_startup(const uint8_t *pkt, size_t len, StartupPacket *out, char *err,
                        size_t errlen)
{
    PktReader r;
    memset(out, 0, sizeof(*out));
    if (len < 8 || len > PROTO_STARTUP_MAX) {
        snprintf(err, errlen, "invalid length of startup packet");
        return -1;
    }
    rd_init(&r, pkt, len);
    if (rd_u32(&r) != len) {
        snprintf(err, errlen, "invalid length of startup packet");
        return -1;
    }
    uint32_t code = rd_u32(&r);
    if (code == PROTO_SSL_REQUEST || code == PROTO_GSSENC_REQUEST) {
        if (len != 8) {
            snprintf(err, errlen, "invalid length of startup packet");
            return -1;
        }
        out->kind = code == PROTO_SSL_REQUEST ? STARTUP_SSL : STARTUP_GSSENC;
        return 0;
    }
    if (code == PROTO_CANCEL_REQUEST) {
        if (len != 16) {
            snprintf(err, errlen, "invalid length of cancel request");
            return -1;
        }
        out->kind = STARTUP_CANCEL;
        out->cancel_pid = rd_u32(&r);
        out->cancel_key = rd_u32(&r);
        return 0;
    }
    if ((code >> 16) != 3) {
        snprintf(err, errlen, "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0",
                 code >> 16, code & 0xffff);
        return -1;
    }
    out->kind = STARTUP_NORMAL;
    out->version = code;
    /* name\0value\0 ... \0 — the packet must end with the terminating NUL */
    if (pkt[len - 1] != 0) {
        snprintf(err, errlen, "invalid startup packet layout: expected terminator as last byte");
        return -1;
    }
    for (;;) {
        const char *name = rd_str(&r);
        if (r.bad) break;
        if (name[0] == 0) break;
        const char *value = rd_str(&r);
        if (r.bad) break;
        if (out->nparams == STARTUP_MAX_PARAMS) {
            snprintf(err, errlen, "too many parameters in startup packet");
            return -1;
        }
        out->names[out->nparams] = name;
        out->values[out->nparams] = value;
        out->nparams++;
    }
    if (r.bad) {
        snprintf(err, errlen, "invalid startup packet layout: expected terminator as last byte");
        return -1;
    }
    return 0;
}

void proto_parse_error(const uint8_t *body, size_t len, ErrorFields *out)
{
    PktReader r;
    memset(out, 0, sizeof(*out));
    rd_init(&r, body, len);
    while (!r.bad) {
        uint8_t f = rd_u8(&r);
        if (f == 0 || r.bad) break;
        const char *v = rd_str(&r);
        if (r.bad) break;
        if (f == 'V' || (f == 'S' && !out->severity))
            out->severity = v;
        else if (f == 'C')
            out->sqlstate = v;
        else if (f == 'M')
            out->message = v;
    }
}

int proto_quote_literal(const char *s, char *buf, size_t len)
{
    bool backslash = strchr(s, '\\') != NULL;
    size_t o = 0;
#define PUT(ch)                                                                                    \
    do {                                                                                           \
        if (o + 1 >= len) return -1;                                                               \
        buf[o++] = (ch);                                                                           \
    } while (0)
    if (backslash) PUT('E');
    PUT('\'');
    for (const char *p = s; *p; p++) {
        if (*p == '\'') PUT('\'');
        if (*p == '\\') PUT('\\');
        PUT(*p);
    }
    PUT('\'');
#undef PUT
    buf[o] = 0;
    return 0;
}

bool proto_parse_libpq_error(const char *text, char sqlstate[6], char *msg, size_t len)
{
    static const char *const sev[] = {"FATAL:  ", "ERROR:  ", "PANIC:  ", NULL};
    strcpy(sqlstate, "08006");
    for (int i = 0; sev[i]; i++) {
        const char *p = strstr(text, sev[i]);
        if (!p) continue;
        p += strlen(sev[i]);
        if (strlen(p) > 7 && p[5] == ':' && p[6] == ' ') {
            memcpy(sqlstate, p, 5);
            sqlstate[5] = 0;
            p += 7;
        }
        size_t n = strcspn(p, "\n");
        snprintf(msg, len, "%.*s", (int)n, p);
        return true;
    }
    /* a network-level failure: keep libpq's first line */
    const char *p = text;
    const char *colon = strstr(p, "failed: ");
    if (colon) p = colon + 8;
    size_t n = strcspn(p, "\n");
    snprintf(msg, len, "server login failed: %.*s", (int)n, p);
    return false;
}
