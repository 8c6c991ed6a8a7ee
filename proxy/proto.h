/*
 * proto.h — PostgreSQL wire protocol v3: message builders and parsers.
 *
 * Pure code: no sockets, no libevent.  Builders append whole messages to a
 * growable PktBuf (the caller owns it); parsers read from a bounded
 * PktReader and never trust a length they have not checked.  The relay
 * itself only looks at 5-byte headers (proto_read_header) and hands whole
 * messages here when the pooler must look inside.
 */
#ifndef PGFUNNEL_PROTO_H
#define PGFUNNEL_PROTO_H

#include "types.h"

#define PROTO_V3             0x00030000u
#define PROTO_SSL_REQUEST    80877103u
#define PROTO_GSSENC_REQUEST 80877104u
#define PROTO_CANCEL_REQUEST 80877102u
#define PROTO_STARTUP_MAX    10000 /* as PostgreSQL's MAX_STARTUP_PACKET_LENGTH */
/*
 * Longest user and database name in bytes (NAMEDATALEN - 1): PostgreSQL
 * truncates longer names in the startup packet to this many bytes.
 */
#define PROTO_NAME_MAX 63

/* ---- building ---- */

typedef struct pktbuf {
    uint8_t *data;
    size_t len, cap;
    size_t msg_start; /* offset of the message being built */
    bool failed;      /* out of memory: the whole buffer is unusable */
    bool borrowed;    /* data is the caller's (pkt_init_with) until it must grow */
} PktBuf;

void pkt_init(PktBuf *b);
/*
 * Start in the caller's buffer (e.g. on its stack): small packets built on
 * the hot path then cost no allocation; a larger one moves to the heap.
 */
void pkt_init_with(PktBuf *b, void *buf, size_t cap);
void pkt_free(PktBuf *b);
void pkt_reset(PktBuf *b);
void pkt_begin(PktBuf *b, char type); /* type 0 = untyped (startup-style) */
void pkt_end(PktBuf *b);              /* patches the length field */
void pkt_put_u8(PktBuf *b, uint8_t v);
void pkt_put_u16(PktBuf *b, uint16_t v);
void pkt_put_u32(PktBuf *b, uint32_t v);
void pkt_put_bytes(PktBuf *b, const void *p, size_t n);
void pkt_put_str(PktBuf *b, const char *s); /* with terminating NUL */

/* ErrorResponse ('E'). */
void pkt_error(PktBuf *b, const char *severity, const char *sqlstate, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
/* NoticeResponse ('N'), severity NOTICE, SQLSTATE 00000. */
void pkt_notice(PktBuf *b, const char *msg);
void pkt_auth_ok(PktBuf *b);
void pkt_param_status(PktBuf *b, const char *name, const char *value);
void pkt_backend_key(PktBuf *b, uint32_t pid, uint32_t key);
void pkt_ready(PktBuf *b, char status);
void pkt_query(PktBuf *b, const char *sql);
void pkt_negotiate_version(PktBuf *b, uint32_t minor, const char *const *unknown, int n);
/* For the admin console: RowDescription of text columns, DataRow of strings (NULL = SQL NULL). */
void pkt_row_description(PktBuf *b, const char *const *names, int n);
/* Type OIDs the console uses (pg_type.h). */
#define PG_OID_INT8 20u
#define PG_OID_INT4 23u
#define PG_OID_TEXT 25u
/* RowDescription with a type OID per column (oids NULL or 0 = text); values stay text format. */
void pkt_row_description_typed(PktBuf *b, const char *const *names, const uint32_t *oids, int n);
void pkt_data_row(PktBuf *b, const char *const *values, int n);
void pkt_command_complete(PktBuf *b, const char *tag);
void pkt_empty_query(PktBuf *b);

/* ---- parsing ---- */

typedef struct pkt_reader {
    const uint8_t *p, *end;
    bool bad; /* set when a read ran past the end; values read then are 0 / "" */
} PktReader;

void rd_init(PktReader *r, const void *data, size_t len);
uint8_t rd_u8(PktReader *r);
uint16_t rd_u16(PktReader *r);
uint32_t rd_u32(PktReader *r);
const char *rd_str(PktReader *r); /* NUL-terminated inside the bounds, else bad */
const uint8_t *rd_bytes(PktReader *r, size_t n);
size_t rd_left(const PktReader *r);

static inline uint32_t proto_get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void proto_put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* What the first bytes of a connection asked for. */
typedef enum {
    STARTUP_NORMAL,
    STARTUP_SSL,
    STARTUP_GSSENC,
    STARTUP_CANCEL,
} StartupKind;

#define STARTUP_MAX_PARAMS 64

typedef struct startup_packet {
    StartupKind kind;
    uint32_t version;    /* for STARTUP_NORMAL */
    uint32_t cancel_pid; /* for STARTUP_CANCEL */
    uint32_t cancel_key;
    int nparams; /* name/value pairs, pointing into the packet */
    const char *names[STARTUP_MAX_PARAMS];
    const char *values[STARTUP_MAX_PARAMS];
} StartupPacket;

/*
 * Parse a complete untyped startup-phase packet (including its 4-byte
 * length).  Returns 0, or -1 with a client-presentable message in err.
 * A v3 minor version above 0 is accepted (the caller negotiates down).
 */
int proto_parse_startup(const uint8_t *pkt, size_t len, StartupPacket *out, char *err,
                        size_t errlen) WUR;

/* Fields of an ErrorResponse/NoticeResponse body (after the 5-byte header). */
typedef struct error_fields {
    const char *severity; /* 'S' (localized) or 'V' */
    const char *sqlstate; /* 'C' */
    const char *message;  /* 'M' */
} ErrorFields;
void proto_parse_error(const uint8_t *body, size_t len, ErrorFields *out);

/* Quote a string as an SQL literal ('...', E'...' when it has backslashes) into buf. */
int proto_quote_literal(const char *s, char *buf, size_t len) WUR;

/*
 * libpq reports login errors as text; with PQERRORS_VERBOSE the text carries
 * the SQLSTATE ("FATAL:  3D000: database ... does not exist"), so the
 * backend's own error can reach the client unchanged.  Fills sqlstate (08006
 * for a network-level failure) and the message's first line.  Returns true
 * when PostgreSQL itself sent the error, false for a failure below it
 * (refused, timed out, TLS, name resolution).
 */
bool proto_parse_libpq_error(const char *text, char sqlstate[6], char *msg, size_t len);

#endif
