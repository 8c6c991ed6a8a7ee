/*
 * pq_startup — speak the start of the PostgreSQL protocol by hand, for tests.
 *
 *   pq_startup HOST PORT [OPTION]...
 *
 *   --ssl                  send an SSLRequest first and print the answer byte
 *   --gss                  send a GSSENCRequest first and print the answer byte
 *   --version M.N          protocol version of the StartupMessage (default 3.0)
 *   --param NAME=VALUE     a startup parameter (repeatable); user=postgres and
 *                          database=postgres are added unless given
 *   --no-defaults          do not add user/database
 *   --pad N                add a parameter so that the packet is at least N bytes
 *   --cancel PID KEY       send a CancelRequest instead of a StartupMessage
 *   --query SQL            after ReadyForQuery send a simple Query (repeatable,
 *                          one per ReadyForQuery)
 *   --hold SEC             after the last query, wait SEC seconds (reading)
 *                          before sending Terminate
 *   --after-login-send HEX after the last query, send these raw bytes, then read
 *                          until the server closes the connection
 *   --timeout SEC          give up reading after SEC seconds (default 10)
 *
 * Every message received is printed on its own line:
 *   N / S                  the answer to SSLRequest / GSSENCRequest
 *   R CODE                 Authentication*
 *   S NAME VALUE           ParameterStatus
 *   K PID KEY              BackendKeyData
 *   Z STATUS               ReadyForQuery
 *   v MINOR N OPT...       NegotiateProtocolVersion
 *   E SEVERITY CODE MSG    ErrorResponse (NOTICE... for NoticeResponse)
 *   T / D v1|v2 / C TAG    RowDescription / DataRow / CommandComplete
 *   X LEN                  any other message type X
 *   EOF                    the server closed the connection
 *   TIMEOUT                nothing more within --timeout seconds (exit 3)
 * Exit status: 0 after EOF or Terminate, 1 on usage or connection errors, 3 on
 * timeout.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#define MAX_PARAMS  64
#define MAX_QUERIES 16

typedef struct options {
    const char *host;
    const char *port;
    int ssl, gss;
    unsigned major, minor;
    const char *names[MAX_PARAMS];
    const char *values[MAX_PARAMS];
    int nparams;
    int no_defaults;
    long pad;
    int cancel;
    uint32_t cancel_pid, cancel_key;
    const char *queries[MAX_QUERIES];
    int nqueries;
    double hold;
    const char *after_hex;
    double timeout;
} Options;

static int sock = -1;
static int quiet_timeout; /* --hold: running out of time is the plan */

static void usage(void)
{
    fprintf(stderr, "usage: pq_startup HOST PORT [--ssl] [--gss] [--version M.N] "
                    "[--param K=V]... [--no-defaults] [--pad N] [--cancel PID KEY] "
                    "[--query SQL]... [--hold SEC] [--after-login-send HEX] [--timeout SEC]\n");
    exit(1);
}

static double now_sec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void send_all(const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        ssize_t n = send(sock, p, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) continue;
            printf("SENDERR %s\n", strerror(errno));
            exit(1);
        }
        p += n;
        len -= (size_t)n;
    }
}

/*
 * Read exactly len bytes before the deadline.  Returns 1 when done, 0 on
 * EOF (printed), -1 on timeout (printed).
 */
static int recv_exact(uint8_t *buf, size_t len, double deadline)
{
    size_t got = 0;
    while (got < len) {
        double left = deadline - now_sec();
        if (left <= 0) {
            if (!quiet_timeout) printf("TIMEOUT\n");
            return -1;
        }
        struct pollfd pfd = {.fd = sock, .events = POLLIN};
        int r = poll(&pfd, 1, (int)(left * 1000) + 1);
        if (r < 0) {
            if (errno == EINTR) continue;
            printf("POLLERR %s\n", strerror(errno));
            exit(1);
        }
        if (r == 0) continue;
        ssize_t n = recv(sock, buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            /* a reset after the server closed counts as the end */
            printf("EOF (%s)\n", strerror(errno));
            return 0;
        }
        if (n == 0) {
            if (got > 0) printf("PARTIAL %zu\n", got);
            printf("EOF\n");
            return 0;
        }
        got += (size_t)n;
    }
    return 1;
}

/* Print ErrorResponse / NoticeResponse fields: severity, code, message. */
static void print_error(char type, const uint8_t *body, uint32_t len)
{
    const char *sev = "?", *code = "?", *msg = "?";
    uint32_t i = 0;
    while (i < len && body[i] != 0) {
        uint8_t f = body[i++];
        const char *v = (const char *)body + i;
        size_t l = strnlen(v, len - i);
        if (i + l >= len) break;
        if (f == 'V' || (f == 'S' && strcmp(sev, "?") == 0))
            sev = v;
        else if (f == 'C')
            code = v;
        else if (f == 'M')
            msg = v;
        i += (uint32_t)l + 1;
    }
    printf("%c %s %s %s\n", type, sev, code, msg);
}

static void print_datarow(const uint8_t *body, uint32_t len)
{
    if (len < 2) {
        printf("D ?\n");
        return;
    }
    unsigned n = ((unsigned)body[0] << 8) | body[1];
    uint32_t o = 2;
    printf("D ");
    for (unsigned i = 0; i < n && o + 4 <= len; i++) {
        uint32_t l = get_u32(body + o);
        o += 4;
        if (i > 0) printf("|");
        if (l == 0xffffffffu) continue;
        if (l > len - o) break;
        printf("%.*s", (int)l, (const char *)body + o);
        o += l;
    }
    printf("\n");
}

/* Print one message; its body has len bytes (the length field excluded). */
static void print_message(char type, const uint8_t *body, uint32_t len)
{
    switch (type) {
    case 'R':
        printf("R %u\n", len >= 4 ? get_u32(body) : 0u);
        break;
    case 'S': {
        const char *name = (const char *)body;
        size_t nl = strnlen(name, len);
        const char *value = nl < len ? name + nl + 1 : "";
        printf("S %s %s\n", nl < len ? name : "?", value);
        break;
    }
    case 'K':
        if (len >= 8)
            printf("K %u %u\n", get_u32(body), get_u32(body + 4));
        else
            printf("K ?\n");
        break;
    case 'Z':
        printf("Z %c\n", len >= 1 ? body[0] : '?');
        break;
    case 'E':
    case 'N':
        print_error(type, body, len);
        break;
    case 'D':
        print_datarow(body, len);
        break;
    case 'C':
        printf("C %.*s\n", (int)strnlen((const char *)body, len), (const char *)body);
        break;
    case 'T':
        printf("T\n");
        break;
    case 'v': {
        uint32_t minor = len >= 4 ? get_u32(body) & 0xffff : 0;
        uint32_t n = len >= 8 ? get_u32(body + 4) : 0;
        printf("v %u %u", minor, n);
        uint32_t o = 8;
        for (uint32_t i = 0; i < n && o < len; i++) {
            const char *s = (const char *)body + o;
            size_t l = strnlen(s, len - o);
            printf(" %.*s", (int)l, s);
            o += (uint32_t)l + 1;
        }
        printf("\n");
        break;
    }
    default:
        printf("%c %u\n", type, len);
        break;
    }
}

/*
 * Read messages until one of type `until` (0: until EOF) arrives.
 * Returns 1 when it arrived, 0 on EOF, -1 on timeout.
 */
static int read_messages(char until, double timeout)
{
    double deadline = now_sec() + timeout;
    for (;;) {
        uint8_t hdr[5];
        int r = recv_exact(hdr, 5, deadline);
        if (r <= 0) return r;
        uint32_t len = get_u32(hdr + 1);
        if (len < 4 || len > 16 * 1024 * 1024) {
            printf("BADLEN %c %u\n", hdr[0], len);
            exit(1);
        }
        uint8_t *body = malloc(len - 4 + 1);
        if (!body) exit(1);
        if (len > 4) {
            r = recv_exact(body, len - 4, deadline);
            if (r <= 0) {
                free(body);
                return r;
            }
        }
        body[len - 4] = 0;
        print_message((char)hdr[0], body, len - 4);
        free(body);
        if (until && hdr[0] == (uint8_t)until) return 1;
    }
}

static void connect_to(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res, *ai;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "pq_startup: %s:%s: %s\n", host, port, gai_strerror(rc));
        exit(1);
    }
    for (ai = res; ai; ai = ai->ai_next) {
        sock = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (sock < 0) continue;
        if (connect(sock, ai->ai_addr, ai->ai_addrlen) == 0) break;
        close(sock);
        sock = -1;
    }
    freeaddrinfo(res);
    if (sock < 0) {
        fprintf(stderr, "pq_startup: cannot connect to %s:%s: %s\n", host, port, strerror(errno));
        exit(1);
    }
    int on = 1;
    setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
}

/* SSLRequest / GSSENCRequest: one byte answers.  Returns the byte or -1. */
static int send_request_code(uint32_t code, double timeout)
{
    uint8_t pkt[8], ans;
    put_u32(pkt, 8);
    put_u32(pkt + 4, code);
    send_all(pkt, sizeof(pkt));
    if (recv_exact(&ans, 1, now_sec() + timeout) <= 0) return -1;
    if (ans == 'E') {
        /* a pre-v3 style error: the rest is an error message */
        uint8_t rest[4];
        if (recv_exact(rest, 4, now_sec() + timeout) <= 0) return -1;
        uint32_t len = get_u32(rest);
        uint8_t *body = malloc(len);
        if (body && len > 4 && recv_exact(body, len - 4, now_sec() + timeout) > 0)
            print_error('E', body, len - 4);
        free(body);
        return -1;
    }
    printf("%c\n", ans);
    return ans;
}

static const char *param_value(const Options *o, const char *name)
{
    for (int i = 0; i < o->nparams; i++)
        if (strcmp(o->names[i], name) == 0) return o->values[i];
    return NULL;
}

static void send_startup(const Options *o)
{
    size_t cap = 64 + (o->pad > 0 ? (size_t)o->pad : 0);
    for (int i = 0; i < o->nparams; i++)
        cap += strlen(o->names[i]) + strlen(o->values[i]) + 2;
    uint8_t *pkt = calloc(1, cap);
    if (!pkt) exit(1);
    size_t len = 8;
    put_u32(pkt + 4, (o->major << 16) | o->minor);
#define ADD(s)                                                                                     \
    do {                                                                                           \
        size_t l_ = strlen(s) + 1;                                                                 \
        memcpy(pkt + len, (s), l_);                                                                \
        len += l_;                                                                                 \
    } while (0)
    if (!o->no_defaults) {
        if (!param_value(o, "user")) {
            ADD("user");
            ADD("postgres");
        }
        if (!param_value(o, "database")) {
            ADD("database");
            ADD("postgres");
        }
    }
    for (int i = 0; i < o->nparams; i++) {
        ADD(o->names[i]);
        ADD(o->values[i]);
    }
    if (o->pad > 0 && len + 1 < (size_t)o->pad) {
        /* application_name = "xxxx…" long enough to reach pad bytes */
        static const char name[] = "application_name";
        memcpy(pkt + len, name, sizeof(name));
        len += sizeof(name);
        size_t fill = (size_t)o->pad - len - 2; /* value NUL + terminator */
        memset(pkt + len, 'x', fill);
        len += fill;
        pkt[len++] = 0;
    }
#undef ADD
    pkt[len++] = 0;
    put_u32(pkt, (uint32_t)len);
    send_all(pkt, len);
    free(pkt);
}

static void send_query(const char *sql)
{
    size_t l = strlen(sql) + 1;
    uint8_t *pkt = malloc(l + 5);
    if (!pkt) exit(1);
    pkt[0] = 'Q';
    put_u32(pkt + 1, (uint32_t)(l + 4));
    memcpy(pkt + 5, sql, l);
    send_all(pkt, l + 5);
    free(pkt);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

static void send_hex(const char *hex)
{
    size_t n = strlen(hex);
    uint8_t *buf = malloc(n / 2 + 1);
    size_t len = 0;
    if (!buf) exit(1);
    for (size_t i = 0; i < n;) {
        if (hex[i] == ' ' || hex[i] == ':') {
            i++;
            continue;
        }
        int hi = hexval(hex[i]), lo = i + 1 < n ? hexval(hex[i + 1]) : -1;
        if (hi < 0 || lo < 0) {
            fprintf(stderr, "pq_startup: bad hex string '%s'\n", hex);
            exit(1);
        }
        buf[len++] = (uint8_t)(hi * 16 + lo);
        i += 2;
    }
    send_all(buf, len);
    free(buf);
}

static int exit_for(int r)
{
    return r < 0 ? 3 : 0;
}

static void parse_args(int argc, char **argv, Options *o)
{
    memset(o, 0, sizeof(*o));
    o->major = 3;
    o->timeout = 10;
    if (argc < 3) usage();
    o->host = argv[1];
    o->port = argv[2];
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        int more = argc - i - 1;
        if (strcmp(a, "--ssl") == 0) {
            o->ssl = 1;
        } else if (strcmp(a, "--gss") == 0) {
            o->gss = 1;
        } else if (strcmp(a, "--no-defaults") == 0) {
            o->no_defaults = 1;
        } else if (strcmp(a, "--version") == 0 && more >= 1) {
            if (sscanf(argv[++i], "%u.%u", &o->major, &o->minor) != 2) usage();
        } else if (strcmp(a, "--param") == 0 && more >= 1) {
            char *kv = argv[++i];
            char *eq = strchr(kv, '=');
            if (!eq || o->nparams == MAX_PARAMS) usage();
            *eq = 0;
            o->names[o->nparams] = kv;
            o->values[o->nparams++] = eq + 1;
        } else if (strcmp(a, "--pad") == 0 && more >= 1) {
            o->pad = strtol(argv[++i], NULL, 10);
        } else if (strcmp(a, "--cancel") == 0 && more >= 2) {
            o->cancel = 1;
            o->cancel_pid = (uint32_t)strtoul(argv[++i], NULL, 10);
            o->cancel_key = (uint32_t)strtoul(argv[++i], NULL, 10);
        } else if (strcmp(a, "--query") == 0 && more >= 1) {
            if (o->nqueries == MAX_QUERIES) usage();
            o->queries[o->nqueries++] = argv[++i];
        } else if (strcmp(a, "--hold") == 0 && more >= 1) {
            o->hold = strtod(argv[++i], NULL);
        } else if (strcmp(a, "--after-login-send") == 0 && more >= 1) {
            o->after_hex = argv[++i];
        } else if (strcmp(a, "--timeout") == 0 && more >= 1) {
            o->timeout = strtod(argv[++i], NULL);
        } else {
            usage();
        }
    }
}

int main(int argc, char **argv)
{
    Options o;
    int r;
    setvbuf(stdout, NULL, _IOLBF, 0);
    parse_args(argc, argv, &o);
    connect_to(o.host, o.port);

    if (o.cancel) {
        uint8_t pkt[16];
        put_u32(pkt, 16);
        put_u32(pkt + 4, 80877102u);
        put_u32(pkt + 8, o.cancel_pid);
        put_u32(pkt + 12, o.cancel_key);
        send_all(pkt, sizeof(pkt));
        return exit_for(read_messages(0, o.timeout));
    }
    if (o.ssl && send_request_code(80877103u, o.timeout) != 'N') return 1;
    if (o.gss && send_request_code(80877104u, o.timeout) != 'N') return 1;

    send_startup(&o);
    r = read_messages('Z', o.timeout);
    if (r <= 0) return exit_for(r);
    for (int i = 0; i < o.nqueries; i++) {
        send_query(o.queries[i]);
        r = read_messages('Z', o.timeout);
        if (r <= 0) return exit_for(r);
    }
    if (o.after_hex) {
        send_hex(o.after_hex);
        return exit_for(read_messages(0, o.timeout));
    }
    if (o.hold > 0) {
        /* wait, but print whatever the server says meanwhile (e.g. a timeout) */
        quiet_timeout = 1;
        r = read_messages(0, o.hold);
        quiet_timeout = 0;
        if (r == 0) return 0;
        printf("HELD\n");
    }
    uint8_t term[5] = {'X', 0, 0, 0, 4};
    send_all(term, sizeof(term));
    printf("TERMINATE\n");
    close(sock);
    return 0;
}
