/*
 * passthrough.c — backend logins from stored secrets (see passthrough.h).
 *
 * DESIGN
 * libpq 15 can only log in with a plaintext password, so the password
 * exchange itself is done here, on libpq's connection, in the one window
 * where that is safe: PQconnectPoll has sent the startup packet, set
 * CONNECTION_AWAITING_RESPONSE and returned PGRES_POLLING_READING without
 * reading anything (its input buffer is empty: after an SSL handshake libpq
 * even checks that).  Until PQconnectPoll is called again nobody else reads
 * the socket, so the server's messages can be peeked at (recv MSG_PEEK, or
 * SSL_peek on libpq's SSL object) and consumed one by one, exactly.
 *
 * Each new socket gets that look once: a socket is identified by its fd and
 * inode, because libpq may close a socket and open the next one (another
 * host, an SSL retry) within one PQconnectPoll call and get the same fd
 * number back.  Only the first answer to a startup packet is examined:
 *   'R' 5 (md5) / 'R' 10 (SASL)    read and answered here;
 *   'R' of length 8 (AuthenticationOk from a trust server, cleartext request)
 *   or anything else ('E' …)       left for libpq.
 * During the exchange only the expected next request ('R' 11, 'R' 12) is
 * consumed; an ErrorResponse is left for libpq, which reports it as any
 * login error (with PQERRORS_VERBOSE, SQLSTATE included).  After the md5
 * answer is sent, or the SCRAM server-final is verified, libpq takes over
 * again and reads AuthenticationOk as if the server trusted it (libpq 15
 * only objects to that with channel_binding=require, which pgfunnel does not
 * set on the backend leg).
 *
 * A message header split across TCP segments or TLS records is not
 * expected: the server writes each of these messages with one flush, so the
 * 5 bytes that decide whether a message is ours arrive together.  If they
 * did not, we wait for more (the connect timeout bounds it).
 *
 * Channel binding on the server leg: over TLS, when the server offers
 * SCRAM-SHA-256-PLUS, the exchange binds to the server's certificate
 * (tls-server-end-point), as libpq does by default; otherwise it uses "n,,".
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "auth.h"
#include "passthrough.h"
#include "pool.h"
#include "proto.h"
#include "tls.h"

/* Authentication requests are small; anything larger is refused. */
#define PASS_MSG_MAX 2048

#define AUTH_REQ_MD5       5
#define AUTH_REQ_SASL      10
#define AUTH_REQ_SASL_CONT 11
#define AUTH_REQ_SASL_FIN  12

typedef enum {
    PASS_IDLE = 0,       /* libpq drives the connection */
    PASS_FIRST,          /* the server's answer to the startup packet is due */
    PASS_MD5_SENT,       /* our md5 answer is being written; then libpq goes on */
    PASS_SCRAM_CONTINUE, /* SASLInitialResponse sent: AuthenticationSASLContinue due */
    PASS_SCRAM_FINAL,    /* SASLResponse sent: AuthenticationSASLFinal due */
} PassStep;

struct pass_exchange {
    PassCred cred;    /* snapshot at connect: later logins may replace the pool's */
    const char *user; /* the backend user (the pool's name; the pool outlives its servers) */
    bool forced;      /* the database entry forces this user */
    PassStep step;
    bool examined; /* sock_fd/sock_ino: the socket whose startup answer we looked at */
    int sock_fd;
    ino_t sock_ino;
    uint8_t msg[PASS_MSG_MAX]; /* the request being read */
    uint32_t have, need;
    PktBuf out; /* our answer being written */
    size_t out_off;
    ScramClient scram;
    const char *method; /* what answered the server, for the log; NULL while none did */
};

/* ---------------------------------------------------------------- credentials */

static bool secret_is_scram(const char *s)
{
    return s && strncmp(s, "SCRAM-SHA-256$", 14) == 0;
}

static bool secret_is_plain(const char *s)
{
    return s && *s && !secret_is_scram(s) && !md5_is_secret(s);
}

static void wipe_free_str(char *s)
{
    if (!s) return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

PassCred *passthrough_cred_new(const char *secret, const uint8_t *client_key)
{
    if (!secret || !*secret) return NULL;
    PassCred *pc = calloc(1, sizeof(*pc));
    if (!pc || !(pc->secret = strdup(secret))) {
        free(pc);
        return NULL;
    }
    if (client_key) {
        memcpy(pc->client_key, client_key, SCRAM_KEY_LEN);
        pc->have_client_key = true;
    }
    return pc;
}

void passthrough_cred_free(PassCred *pc)
{
    if (!pc) return;
    wipe_free_str(pc->secret);
    OPENSSL_cleanse(pc, sizeof(*pc));
    free(pc);
}

static bool secret_equal(const char *a, const char *b)
{
    size_t n = strlen(a);
    return n == strlen(b) && CRYPTO_memcmp(a, b, n) == 0;
}

bool passthrough_cred_keep(PassCred **kept, const PassCred *proved)
{
    if (!proved || !proved->secret) return false;
    PassCred *k = *kept;
    if (k && secret_equal(k->secret, proved->secret)) {
        /* the same secret has one ClientKey: only a missing one is added */
        if (!proved->have_client_key || k->have_client_key) return false;
        memcpy(k->client_key, proved->client_key, SCRAM_KEY_LEN);
        k->have_client_key = true;
        return true;
    }
    PassCred *n =
        passthrough_cred_new(proved->secret, proved->have_client_key ? proved->client_key : NULL);
    if (!n) return false;
    passthrough_cred_free(k);
    *kept = n;
    return true;
}

const char *passthrough_password(const PassCred *kept)
{
    return kept && secret_is_plain(kept->secret) ? kept->secret : NULL;
}

PassExchange *passthrough_new(Pool *p, const PassCred *kept)
{
    const char *file = auth_file_secret(p->loop, p->username);
    const char *secret = NULL;
    const uint8_t *key = NULL;
    if (file && !secret_is_scram(file) && !md5_is_secret(file)) file = NULL; /* libpq has it */
    /* auth_file wins when it changed since the login that taught us the kept secret */
    if (kept && !secret_is_plain(kept->secret) && (!file || secret_equal(file, kept->secret))) {
        secret = kept->secret;
        key = kept->have_client_key ? kept->client_key : NULL;
    } else if (file) {
        secret = file;
    }
    if (!secret) return NULL;
    PassExchange *x = calloc(1, sizeof(*x));
    if (!x || !(x->cred.secret = strdup(secret))) {
        free(x);
        return NULL;
    }
    if (key) {
        memcpy(x->cred.client_key, key, SCRAM_KEY_LEN);
        x->cred.have_client_key = true;
    }
    x->user = p->username;
    x->forced = p->db->user != NULL;
    pkt_init(&x->out);
    return x;
}

static void pass_out_clear(PassExchange *x)
{
    if (x->out.data) OPENSSL_cleanse(x->out.data, x->out.cap);
    pkt_free(&x->out);
    pkt_init(&x->out);
    x->out_off = 0;
}

void passthrough_free(PassExchange *x)
{
    if (!x) return;
    pass_out_clear(x);
    scram_client_free(&x->scram);
    wipe_free_str(x->cred.secret);
    OPENSSL_cleanse(x, sizeof(*x));
    free(x);
}

/* ---------------------------------------------------------------- socket I/O */

enum { IO_WANT_READ = -2, IO_WANT_WRITE = -3 };

static SSL *pass_ssl(PGconn *pg)
{
    return PQsslInUse(pg) ? PQsslStruct(pg, "OpenSSL") : NULL;
}

static int pass_ssl_result(SSL *ssl, int r)
{
    if (r > 0) return r;
    int e = SSL_get_error(ssl, r);
    ERR_clear_error();
    switch (e) {
    case SSL_ERROR_WANT_READ:
        return IO_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return IO_WANT_WRITE;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    default:
        return -1;
    }
}

/* Read (or peek at) up to n bytes: >0 bytes, 0 EOF, -1 error, IO_WANT_*. */
static int pass_read(PGconn *pg, void *buf, size_t n, bool peek)
{
    SSL *ssl = pass_ssl(pg);
    if (ssl) {
        ERR_clear_error();
        return pass_ssl_result(ssl, peek ? SSL_peek(ssl, buf, (int)n) : SSL_read(ssl, buf, (int)n));
    }
    if (PQsslInUse(pg)) return -1;
    for (;;) {
        ssize_t r = recv(PQsocket(pg), buf, n, peek ? MSG_PEEK : 0);
        if (r >= 0) return (int)r;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? IO_WANT_READ : -1;
    }
}

static int pass_write(PGconn *pg, const void *buf, size_t n)
{
    SSL *ssl = pass_ssl(pg);
    if (ssl) {
        ERR_clear_error();
        return pass_ssl_result(ssl, SSL_write(ssl, buf, (int)n));
    }
    if (PQsslInUse(pg)) return -1;
    for (;;) {
        ssize_t r = send(PQsocket(pg), buf, n, MSG_NOSIGNAL);
        if (r >= 0) return (int)r;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? IO_WANT_WRITE : -1;
    }
}

/* ---------------------------------------------------------------- exchange */

bool passthrough_startup_sent(PassExchange *x, PGconn *pg)
{
    struct stat st;
    if (PQstatus(pg) != CONNECTION_AWAITING_RESPONSE || PQgssEncInUse(pg)) return false;
    int fd = PQsocket(pg);
    if (fd < 0 || fstat(fd, &st) < 0) return false;
    if (x->examined && x->sock_fd == fd && x->sock_ino == st.st_ino) return false;
    x->examined = true;
    x->sock_fd = fd;
    x->sock_ino = st.st_ino;
    /* a password from the environment or a pgpass file: libpq answers itself */
    const char *pw = PQpass(pg);
    if (pw && *pw) return false;
    x->step = PASS_FIRST;
    x->method = NULL;
    x->have = x->need = 0;
    pass_out_clear(x);
    scram_client_free(&x->scram);
    return true;
}

typedef enum {
    READ_DONE,      /* x->msg holds a whole request */
    READ_LIBPQ,     /* the next message is not ours: leave it */
    READ_WAIT_READ, /* more bytes needed */
    READ_WAIT_WRITE,
    READ_BAD, /* protocol error (msg set) */
} ReadResult;

/*
 * Read the next authentication request into x->msg.  Only an 'R' message
 * with data is consumed; anything else stays for libpq.  allow_ok: a bare
 * 'R' (length 8: AuthenticationOk, or a request we cannot answer) may come
 * now and is libpq's; otherwise it is a protocol error (a server must not
 * skip the rest of a SCRAM exchange).
 */
static ReadResult pass_read_request(PassExchange *x, PGconn *pg, bool allow_ok, char *msg,
                                    size_t msglen)
{
    if (x->need == 0) {
        uint8_t hdr[5];
        int n = pass_read(pg, hdr, sizeof(hdr), true);
        if (n == IO_WANT_READ) return READ_WAIT_READ;
        if (n == IO_WANT_WRITE) return READ_WAIT_WRITE;
        if (n <= 0) return READ_LIBPQ; /* EOF or error: libpq reads it and says so */
        if (hdr[0] != 'R') return READ_LIBPQ;
        if (n < 5) return READ_WAIT_READ;
        uint32_t len = proto_get_u32(hdr + 1);
        if (len == 8) {
            if (allow_ok) return READ_LIBPQ;
            snprintf(msg, msglen, "server ended the SCRAM exchange early");
            return READ_BAD;
        }
        if (len < 8 || len + 1 > PASS_MSG_MAX) {
            snprintf(msg, msglen, "invalid authentication request from the server");
            return READ_BAD;
        }
        x->need = len + 1;
        x->have = 0;
    }
    while (x->have < x->need) {
        int n = pass_read(pg, x->msg + x->have, x->need - x->have, false);
        if (n == IO_WANT_READ) return READ_WAIT_READ;
        if (n == IO_WANT_WRITE) return READ_WAIT_WRITE;
        if (n <= 0) {
            snprintf(msg, msglen, "server closed the connection during authentication");
            return READ_BAD;
        }
        x->have += (uint32_t)n;
    }
    return READ_DONE;
}

typedef enum {
    ANSWER_PASSWORD,     /* PasswordMessage: a NUL-terminated string */
    ANSWER_SASL_INITIAL, /* SASLInitialResponse: mechanism, length, data */
    ANSWER_SASL,         /* SASLResponse: the data alone */
} AnswerKind;

/* Our next message (all of them are 'p'), written by passthrough_poll. */
static void pass_answer(PassExchange *x, AnswerKind kind, const char *mech, const char *data)
{
    pass_out_clear(x);
    pkt_begin(&x->out, 'p');
    switch (kind) {
    case ANSWER_PASSWORD:
        pkt_put_str(&x->out, data);
        break;
    case ANSWER_SASL_INITIAL:
        pkt_put_str(&x->out, mech);
        pkt_put_u32(&x->out, (uint32_t)strlen(data));
        pkt_put_bytes(&x->out, data, strlen(data));
        break;
    case ANSWER_SASL:
        pkt_put_bytes(&x->out, data, strlen(data));
        break;
    }
    pkt_end(&x->out);
}

static PassResult pass_fail(char sqlstate[6], const char *code, char *msg, size_t msglen,
                            const char *fmt, ...) PRINTF_LIKE(5, 6);

static PassResult pass_fail(char sqlstate[6], const char *code, char *msg, size_t msglen,
                            const char *fmt, ...)
{
    va_list ap;
    snprintf(sqlstate, 6, "%s", code);
    va_start(ap, fmt);
    vsnprintf(msg, msglen, fmt, ap);
    va_end(ap);
    return PASS_FAILED;
}

/* 'R' 5: answer from the stored md5 hash. */
static PassResult pass_on_md5(PassExchange *x, const uint8_t *body, uint32_t len, char sqlstate[6],
                              char *msg, size_t msglen)
{
    char answer[36];
    if (len != 4)
        return pass_fail(sqlstate, "08P01", msg, msglen, "invalid md5 request from the server");
    if (!md5_is_secret(x->cred.secret))
        return pass_fail(sqlstate, "28000", msg, msglen,
                         "the server requires md5 authentication for user \"%s\" and pgfunnel has "
                         "only its SCRAM secret, which cannot answer md5: put the md5 secret from "
                         "pg_authid or the plaintext password in auth_file, or use scram-sha-256 "
                         "on the server",
                         x->user);
    if (!md5_salted_response(x->cred.secret, body, answer))
        return pass_fail(sqlstate, "XX000", msg, msglen, "md5 computation failed");
    pass_answer(x, ANSWER_PASSWORD, NULL, answer);
    OPENSSL_cleanse(answer, sizeof(answer));
    x->step = PASS_MD5_SENT;
    x->method = "md5";
    return PASS_LIBPQ; /* the caller writes it */
}

/* 'R' 10: choose a mechanism and start SCRAM from the ClientKey. */
static PassResult pass_on_sasl(PassExchange *x, PGconn *pg, const uint8_t *body, uint32_t len,
                               char sqlstate[6], char *msg, size_t msglen)
{
    bool scram = false, plus = false;
    PktReader r;
    rd_init(&r, body, len);
    for (;;) {
        const char *m = rd_str(&r);
        if (r.bad) return pass_fail(sqlstate, "08P01", msg, msglen, "invalid SASL request");
        if (!*m) break;
        if (strcmp(m, "SCRAM-SHA-256") == 0) scram = true;
        if (strcmp(m, "SCRAM-SHA-256-PLUS") == 0) plus = true;
    }
    if (!scram && !plus)
        return pass_fail(sqlstate, "08P01", msg, msglen,
                         "the server offers no SASL mechanism pgfunnel supports");
    if (!secret_is_scram(x->cred.secret))
        return pass_fail(sqlstate, "28000", msg, msglen,
                         "the server requires SCRAM authentication for user \"%s\" and pgfunnel "
                         "has only an md5 hash of the password, which cannot answer SCRAM: put "
                         "the SCRAM secret from pg_authid or the plaintext password in auth_file",
                         x->user);
    if (!x->cred.have_client_key) {
        if (x->forced)
            return pass_fail(sqlstate, "28000", msg, msglen,
                             "the server requires SCRAM authentication for user \"%s\", which the "
                             "database entry forces: pgfunnel needs its plaintext password "
                             "(password= in the [databases] entry, or in auth_file)",
                             x->user);
        return pass_fail(sqlstate, "28000", msg, msglen,
                         "the server requires SCRAM authentication for user \"%s\" and pgfunnel "
                         "has only the stored SCRAM secret: no client of this user has logged in "
                         "with SCRAM since pgfunnel started (or since the secret changed), so "
                         "there is no ClientKey to log in with yet; put the plaintext password in "
                         "auth_file to log in without one",
                         x->user);
    }
    ScramSecret sec;
    if (scram_parse_secret(x->cred.secret, &sec) < 0)
        return pass_fail(sqlstate, "28000", msg, msglen, "invalid SCRAM secret for user \"%s\"",
                         x->user);
    scram_client_init(&x->scram, &sec, x->cred.client_key);
    OPENSSL_cleanse(&sec, sizeof(sec));
    /* bind to the server's certificate when it offers that, as libpq would */
    uint8_t cb[64];
    SSL *ssl = plus ? pass_ssl(pg) : NULL;
    int cb_len = ssl ? tls_peer_end_point(ssl, cb) : 0;
    if (!scram && cb_len <= 0)
        return pass_fail(sqlstate, "08P01", msg, msglen,
                         "the server offers only SCRAM-SHA-256-PLUS and its certificate cannot be "
                         "bound to");
    char err[256], *first = NULL;
    if (scram_client_first(&x->scram, cb_len > 0 ? cb : NULL, cb_len, &first, err, sizeof(err)) < 0)
        return pass_fail(sqlstate, "28000", msg, msglen, "SCRAM login as \"%s\": %s", x->user, err);
    pass_answer(x, ANSWER_SASL_INITIAL, cb_len > 0 ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256", first);
    free(first);
    x->step = PASS_SCRAM_CONTINUE;
    x->method = cb_len > 0 ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256";
    return PASS_LIBPQ;
}

static PassResult pass_on_sasl_continue(PassExchange *x, const uint8_t *body, uint32_t len,
                                        char sqlstate[6], char *msg, size_t msglen)
{
    char err[256], *final = NULL;
    int rc = scram_client_final(&x->scram, (const char *)body, len, &final, err, sizeof(err));
    if (rc == SCRAM_CLIENT_MISMATCH)
        return pass_fail(sqlstate, "28000", msg, msglen,
                         "the SCRAM secret pgfunnel has for user \"%s\" is not the server's "
                         "(different salt or iteration count): the password was changed on the "
                         "server; update auth_file, or let a client log in again",
                         x->user);
    if (rc < 0) return pass_fail(sqlstate, "08P01", msg, msglen, "%s", err);
    pass_answer(x, ANSWER_SASL, NULL, final);
    OPENSSL_cleanse(final, strlen(final));
    free(final);
    x->step = PASS_SCRAM_FINAL;
    return PASS_LIBPQ;
}

static PassResult pass_on_sasl_final(PassExchange *x, const uint8_t *body, uint32_t len,
                                     char sqlstate[6], char *msg, size_t msglen)
{
    char err[256];
    int rc = scram_client_verify(&x->scram, (const char *)body, len, err, sizeof(err));
    if (rc != 1)
        return pass_fail(sqlstate, rc == 0 ? "28000" : "08P01", msg, msglen,
                         "SCRAM login as \"%s\": %s", x->user, err);
    scram_client_free(&x->scram);
    x->step = PASS_IDLE; /* AuthenticationOk follows: libpq's */
    return PASS_LIBPQ;
}

/* A whole request is in x->msg: answer it. */
static PassResult pass_on_request(PassExchange *x, PGconn *pg, char sqlstate[6], char *msg,
                                  size_t msglen)
{
    uint32_t code = proto_get_u32(x->msg + 5);
    const uint8_t *body = x->msg + 9;
    uint32_t len = x->need - 9;
    x->need = x->have = 0;
    switch (x->step) {
    case PASS_FIRST:
        if (code == AUTH_REQ_MD5) return pass_on_md5(x, body, len, sqlstate, msg, msglen);
        if (code == AUTH_REQ_SASL) return pass_on_sasl(x, pg, body, len, sqlstate, msg, msglen);
        return pass_fail(sqlstate, "08P01", msg, msglen,
                         "authentication method %u requested by the server is not supported", code);
    case PASS_SCRAM_CONTINUE:
        if (code == AUTH_REQ_SASL_CONT)
            return pass_on_sasl_continue(x, body, len, sqlstate, msg, msglen);
        break;
    case PASS_SCRAM_FINAL:
        if (code == AUTH_REQ_SASL_FIN)
            return pass_on_sasl_final(x, body, len, sqlstate, msg, msglen);
        break;
    default:
        break;
    }
    return pass_fail(sqlstate, "08P01", msg, msglen,
                     "unexpected authentication request %u from the server", code);
}

PassResult passthrough_poll(PassExchange *x, PGconn *pg, char sqlstate[6], char *msg, size_t msglen)
{
    while (x->step != PASS_IDLE) {
        /* our answer goes out first */
        while (x->out_off < x->out.len) {
            if (x->out.failed) return pass_fail(sqlstate, "53200", msg, msglen, "out of memory");
            int n = pass_write(pg, x->out.data + x->out_off, x->out.len - x->out_off);
            if (n == IO_WANT_READ) return PASS_WAIT_READ;
            if (n == IO_WANT_WRITE) return PASS_WAIT_WRITE;
            if (n <= 0) {
                /* a broken connection: libpq's next read finds and reports it */
                x->step = PASS_IDLE;
                pass_out_clear(x);
                return PASS_LIBPQ;
            }
            x->out_off += (size_t)n;
        }
        pass_out_clear(x);
        if (x->step == PASS_MD5_SENT) {
            x->step = PASS_IDLE; /* AuthenticationOk or an error follows: libpq's */
            break;
        }
        switch (pass_read_request(x, pg, x->step == PASS_FIRST, msg, msglen)) {
        case READ_WAIT_READ:
            return PASS_WAIT_READ;
        case READ_WAIT_WRITE:
            return PASS_WAIT_WRITE;
        case READ_LIBPQ:
            x->step = PASS_IDLE;
            return PASS_LIBPQ;
        case READ_BAD:
            snprintf(sqlstate, 6, "08P01");
            return PASS_FAILED;
        case READ_DONE: {
            PassResult r = pass_on_request(x, pg, sqlstate, msg, msglen);
            OPENSSL_cleanse(x->msg, sizeof(x->msg));
            if (r == PASS_FAILED) return r;
            break; /* loop: write the answer, read the next request */
        }
        }
    }
    return PASS_LIBPQ;
}

const char *passthrough_method(const PassExchange *x)
{
    return x ? x->method : NULL;
}
