/*
 * fuzz_client.h — the client side of the pooler driven from a buffer: the
 * shared half of fuzz_client.c, fuzz_client_login.c and fuzz_admin.c.
 *
 * DESIGN
 * Each input gets a fresh Loop (config_defaults() plus a few options, the
 * same set-up main.c does minus listeners, HTTP and signals) and one end of
 * a socketpair handed to client_accept(), exactly as the listener hands an
 * accepted unix-socket connection.  The harness writes the input into the
 * other end, runs event_base_loop(EVLOOP_NONBLOCK) for a bounded number of
 * rounds, half-closes, runs a few more, and then tears everything down with
 * loop_destroy(), so every input also tests that a client in any state can
 * be freed without leaks.
 *
 * Two databases are configured:
 *   "*"       host=127.0.0.1 port=1: nothing listens, so a client that logs
 *             in reaches login-wait and the server-connect-failure path.
 *   "fuzzdb"  a fake PostgreSQL on a unix socket in a private temporary
 *             directory, served by this file (fake_backend_*): it answers a
 *             startup packet with AuthenticationOk, ParameterStatus,
 *             BackendKeyData and ReadyForQuery, and each Query, Sync or
 *             FunctionCall with a minimal reply and ReadyForQuery (status T
 *             after BEGIN, I after COMMIT/ROLLBACK).  This lets clients get
 *             past login into the idle / waiting / active relay states,
 *             parameter sync and transaction-pooling release, without a real
 *             server.
 * The admin console ("pgbouncer" database) is open to user "fuzz".
 *
 * Everything is single-threaded except the worker pool (one worker) and the
 * log writer; completions of worker jobs arrive through the loop like in
 * production, so a few rounds are spent after the input is written.
 */
#ifndef PGFUNNEL_FUZZ_CLIENT_H
#define PGFUNNEL_FUZZ_CLIENT_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <event2/event.h>

#include "auth.h"
#include "client.h"
#include "config_internal.h"
#include "fuzz_common.h"
#include "loop.h"
#include "loops.h"
#include "pool_control.h"
#include "proto.h"
#include "snapshot.h"
#include "stats.h"

#define FAKE_PORT        7    /* the socket is <dir>/.s.PGSQL.7 */
#define FAKE_MAX_CONN    16
#define ROUNDS_WRITE     64   /* rounds while the input is still being written */
#define ROUNDS_SETTLE    12   /* rounds after the last byte */
#define ROUNDS_EOF       6    /* rounds after the half-close */

typedef struct fake_conn {
    int fd;
    bool started; /* startup packet answered */
    uint8_t *in;
    size_t len, cap;
    bool in_tx;
} FakeConn;

static struct {
    char dir[64];
    char sock[128];
    char auth_file[160];
    char hba_file[160];
    char db_fake[256];
    int listen_fd;
    FakeConn conns[FAKE_MAX_CONN];
} fz = {.listen_fd = -1};

/* ---- the fake backend ---- */

static void fake_close(FakeConn *fc)
{
    close(fc->fd);
    free(fc->in);
    memset(fc, 0, sizeof(*fc));
    fc->fd = -1;
}

static void fake_send(FakeConn *fc, const PktBuf *b)
{
    size_t off = 0;
    while (off < b->len) {
        ssize_t n = send(fc->fd, b->data + off, b->len - off, MSG_NOSIGNAL);
        if (n <= 0) return; /* the proxy stopped reading: drop the rest */
        off += (size_t)n;
    }
}

static void fake_welcome(PktBuf *b)
{
    pkt_begin(b, 'R');
    pkt_put_u32(b, 0);
    pkt_end(b);
    pkt_param_status(b, "server_version", "16.4");
    pkt_param_status(b, "server_encoding", "UTF8");
    pkt_param_status(b, "client_encoding", "UTF8");
    pkt_param_status(b, "DateStyle", "ISO, MDY");
    pkt_param_status(b, "TimeZone", "UTC");
    pkt_param_status(b, "integer_datetimes", "on");
    pkt_param_status(b, "standard_conforming_strings", "on");
    pkt_param_status(b, "application_name", "");
    pkt_backend_key(b, 4242, 0x5eed);
    pkt_ready(b, 'I');
}

/* Answer one whole message from the proxy; false = close this connection. */
static bool fake_answer(FakeConn *fc, char type, const uint8_t *body, size_t len, PktBuf *b)
{
    switch (type) {
    case 'Q': {
        const char *q = (const char *)body;
        bool term = len > 0 && body[len - 1] == 0;
        if (term && (!strncasecmp(q, "BEGIN", 5) || !strncasecmp(q, "START", 5))) fc->in_tx = true;
        if (term && (!strncasecmp(q, "COMMIT", 6) || !strncasecmp(q, "ROLLBACK", 8) ||
                     !strncasecmp(q, "END", 3)))
            fc->in_tx = false;
        if (term && !strncasecmp(q, "SET ", 4)) {
            pkt_command_complete(b, "SET");
        } else if (term && !strncasecmp(q, "FAIL", 4)) {
            pkt_error(b, "ERROR", "42000", "fake backend error");
        } else {
            pkt_row_description(b, (const char *const[]){"x"}, 1);
            pkt_data_row(b, (const char *const[]){"1"}, 1);
            pkt_command_complete(b, "SELECT 1");
        }
        pkt_ready(b, fc->in_tx ? 'T' : 'I');
        return true;
    }
    case 'P': pkt_begin(b, '1'); pkt_end(b); return true;
    case 'B': pkt_begin(b, '2'); pkt_end(b); return true;
    case 'C': pkt_begin(b, '3'); pkt_end(b); return true;
    case 'D': pkt_begin(b, 'n'); pkt_end(b); return true;
    case 'E': pkt_command_complete(b, "SELECT 0"); return true;
    case 'S': pkt_ready(b, fc->in_tx ? 'T' : 'I'); return true;
    case 'F':
        pkt_begin(b, 'V');
        pkt_put_u32(b, 0xffffffffu);
        pkt_end(b);
        pkt_ready(b, fc->in_tx ? 'T' : 'I');
        return true;
    case 'X': return false;
    default: return true; /* H, d, c, f ...: nothing to say */
    }
}

static void fake_serve(FakeConn *fc)
{
    for (;;) {
        if (fc->cap - fc->len < 4096) {
            size_t ncap = fc->cap ? fc->cap * 2 : 8192;
            uint8_t *n = realloc(fc->in, ncap);
            if (!n) abort();
            fc->in = n;
            fc->cap = ncap;
        }
        ssize_t n = recv(fc->fd, fc->in + fc->len, fc->cap - fc->len, 0);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
            fake_close(fc);
            return;
        }
        if (n < 0) break;
        fc->len += (size_t)n;
    }
    PktBuf b;
    pkt_init(&b);
    size_t off = 0;
    bool keep = true;
    while (keep) {
        size_t left = fc->len - off;
        const uint8_t *p = fc->in + off;
        if (!fc->started) {
            if (left < 8) break;
            uint32_t len = proto_get_u32(p), code = proto_get_u32(p + 4);
            if (len < 8 || len > PROTO_STARTUP_MAX) {
                keep = false;
                break;
            }
            if (left < len) break;
            off += len;
            if (code == PROTO_SSL_REQUEST || code == PROTO_GSSENC_REQUEST) {
                pkt_put_u8(&b, 'N');
                continue;
            }
            if (code == PROTO_CANCEL_REQUEST) {
                keep = false;
                break;
            }
            fc->started = true;
            fake_welcome(&b);
            continue;
        }
        if (left < 5) break;
        uint32_t len = proto_get_u32(p + 1);
        if (len < 4 || len > (1u << 30)) {
            keep = false;
            break;
        }
        if (left - 1 < len) break;
        keep = fake_answer(fc, (char)p[0], p + 5, len - 4, &b);
        off += 1 + (size_t)len;
    }
    if (b.len && !b.failed) fake_send(fc, &b);
    pkt_free(&b);
    if (!keep) {
        fake_close(fc);
        return;
    }
    memmove(fc->in, fc->in + off, fc->len - off);
    fc->len -= off;
}

static void fake_poll(void)
{
    for (;;) {
        int fd = accept4(fz.listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) break;
        FakeConn *fc = NULL;
        for (int i = 0; i < FAKE_MAX_CONN && !fc; i++)
            if (fz.conns[i].fd < 0) fc = &fz.conns[i];
        if (!fc) {
            close(fd);
            continue;
        }
        fc->fd = fd;
    }
    for (int i = 0; i < FAKE_MAX_CONN; i++)
        if (fz.conns[i].fd >= 0) fake_serve(&fz.conns[i]);
}

static void fake_reset(void)
{
    for (int i = 0; i < FAKE_MAX_CONN; i++)
        if (fz.conns[i].fd >= 0) fake_close(&fz.conns[i]);
    for (int fd; (fd = accept4(fz.listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0;)
        close(fd);
}

/* ---- set-up ---- */

static void fuzz_client_cleanup(void)
{
    fake_reset();
    close(fz.listen_fd);
    unlink(fz.sock);
    unlink(fz.auth_file);
    unlink(fz.hba_file);
    rmdir(fz.dir);
}

static void fuzz_write_file(const char *p, const char *text)
{
    FILE *f = fopen(p, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(p);
        abort();
    }
}

static void fuzz_client_init(void)
{
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < FAKE_MAX_CONN; i++)
        fz.conns[i].fd = -1;
    snprintf(fz.dir, sizeof(fz.dir), "/tmp/pgfunnel-fuzz-XXXXXX");
    if (!mkdtemp(fz.dir)) {
        perror("mkdtemp");
        abort();
    }
    snprintf(fz.sock, sizeof(fz.sock), "%s/.s.PGSQL.%d", fz.dir, FAKE_PORT);
    snprintf(fz.auth_file, sizeof(fz.auth_file), "%s/userlist.txt", fz.dir);
    snprintf(fz.hba_file, sizeof(fz.hba_file), "%s/hba.conf", fz.dir);
    snprintf(fz.db_fake, sizeof(fz.db_fake), "host=%s port=%d", fz.dir, FAKE_PORT);
    /* fuzz / pencil in every form the auth code knows */
    fuzz_write_file(fz.auth_file,
                    "\"fuzz\" \"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkB"
                    "FzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=\"\n"
                    "\"md5user\" \"md50098e7fab7b4d8d091067152a80b3f12\"\n"
                    "\"plainuser\" \"pencil\"\n"
                    "\"pgbouncer\" \"\"\n");
    fuzz_write_file(fz.hba_file, "local all fuzz trust\n"
                                 "local pgbouncer all md5\n"
                                 "local all all scram-sha-256\n");
    fz.listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", fz.sock);
    if (fz.listen_fd < 0 || bind(fz.listen_fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 ||
        listen(fz.listen_fd, 64) < 0) {
        perror("fake backend socket");
        abort();
    }
    atexit(fuzz_client_cleanup);
    fuzz_log_init();
}

static void fuzz_opt(Config *cfg, const char *name, const char *value)
{
    char err[256];
    const OptionDef *od = config_option_find(name);
    if (!od || config_option_parse(cfg, od, value, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz: option %s = %s: %s\n", name, value, od ? err : "unknown");
        abort();
    }
}

/* A configured Loop; auth_type and pool_mode as given (auth_file unless trust). */
static Loop *fuzz_loop_create(const char *auth_type, const char *pool_mode, bool prepared)
{
    char err[1024];
    Config *cfg = config_defaults();
    if (!cfg) abort();
    fuzz_opt(cfg, "workers", "1");
    fuzz_opt(cfg, "auth_type", auth_type);
    if (strcmp(auth_type, "trust") != 0) fuzz_opt(cfg, "auth_file", fz.auth_file);
    if (strcmp(auth_type, "hba") == 0) fuzz_opt(cfg, "auth_hba_file", fz.hba_file);
    fuzz_opt(cfg, "pool_mode", pool_mode);
    fuzz_opt(cfg, "max_prepared_statements", prepared ? "100" : "0");
    fuzz_opt(cfg, "admin_users", "fuzz");
    fuzz_opt(cfg, "stats_users", "md5user");
    fuzz_opt(cfg, "default_pool_size", "2");
    fuzz_opt(cfg, "log_disconnections", "1");
    fuzz_opt(cfg, "log_pooler_errors", "1");
    if (config_db_add(cfg, "fuzzdb", fz.db_fake, "fuzz.ini", 1, err, sizeof(err)) < 0 ||
        config_db_add(cfg, "*", "host=127.0.0.1 port=1", "fuzz.ini", 2, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz: databases: %s\n", err);
        abort();
    }
    /* one loop, set up as main.c sets up each of event_loops */
    LoopSet *set = loops_create(cfg, 1, err, sizeof(err));
    if (!set) {
        fprintf(stderr, "fuzz: loops_create: %s\n", err);
        abort();
    }
    Loop *loop = set->loops[0];
    Snapshot snap;
    config_ref(cfg);
    if (snapshot_build(&snap, cfg, NULL, true, true, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz: snapshot_build: %s\n", err);
        abort();
    }
    snapshot_adopt(loop, &snap);
    snapshot_release(&snap);
    config_unref(cfg); /* the loop holds its own reference */
    if (stats_start(loop) < 0 || pool_control_start(loop) < 0) abort();
    return loop;
}

static void fuzz_loop_destroy(Loop *loop)
{
    /* Close the clients while the fake backend is still served: closing a
     * client with a busy server sends a CancelRequest from a worker, and
     * workq_destroy() would otherwise wait for that connection to give up. */
    while (!list_empty(&loop->clients))
        client_close(list_entry(list_first(&loop->clients), Client, all_node), NULL, "fuzz done");
    for (int i = 0; i < 4; i++) {
        event_base_loop(loop->base, EVLOOP_NONBLOCK);
        fake_poll();
    }
    pool_control_stop(loop);
    stats_stop(loop);
    loops_destroy(loop->set);
    fake_reset();
    /* The log writer frees lines on its own thread: wait for it, so that the
     * input ends with as many frees as mallocs and libFuzzer does not run a
     * full leak scan after every input. */
    log_flush();
}

/* Read and discard what the proxy sent to the client (FUZZ_LOG=2: show it). */
static void fuzz_drain(int fd)
{
    static int trace = -1;
    uint8_t buf[65536];
    ssize_t n;
    if (trace < 0) trace = getenv("FUZZ_LOG") && !strcmp(getenv("FUZZ_LOG"), "2");
    while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
        if (!trace) continue;
        fprintf(stderr, "fuzz: client got %zd bytes:", n);
        for (ssize_t i = 0; i < n && i < 400; i++)
            fputc(buf[i] >= 32 && buf[i] < 127 ? buf[i] : '.', stderr);
        fputc('\n', stderr);
    }
}

static void fuzz_round(Loop *loop, int peer)
{
    event_base_loop(loop->base, EVLOOP_NONBLOCK);
    fake_poll();
    event_base_loop(loop->base, EVLOOP_NONBLOCK);
    fuzz_drain(peer);
}

/* Feed `data` to a new client on `loop` and run the loop until it settles. */
static void fuzz_client_run(Loop *loop, const uint8_t *data, size_t size)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) abort();
    client_accept(loop, sv[0], true, NULL);
    size_t off = 0;
    for (int i = 0; i < ROUNDS_WRITE && off < size; i++) {
        ssize_t n = send(sv[1], data + off, size - off, MSG_NOSIGNAL);
        if (n > 0) off += (size_t)n;
        else if (n < 0 && errno != EAGAIN) break; /* the proxy closed the client */
        fuzz_round(loop, sv[1]);
    }
    for (int i = 0; i < ROUNDS_SETTLE; i++)
        fuzz_round(loop, sv[1]);
    shutdown(sv[1], SHUT_WR);
    for (int i = 0; i < ROUNDS_EOF; i++)
        fuzz_round(loop, sv[1]);
    close(sv[1]);
}

/* A StartupMessage for user/database, appended to b. */
static inline void fuzz_startup_packet(PktBuf *b, const char *user, const char *database)
{
    pkt_begin(b, 0);
    pkt_put_u32(b, PROTO_V3);
    pkt_put_str(b, "user");
    pkt_put_str(b, user);
    pkt_put_str(b, "database");
    pkt_put_str(b, database);
    pkt_put_str(b, "application_name");
    pkt_put_str(b, "fuzz");
    pkt_put_u8(b, 0);
    pkt_end(b);
}


/*
 * A second, well-behaved client of "fuzzdb" that logs in and runs one
 * query, so that the console finds a pool, a server and another client to
 * SHOW, PAUSE or KILL.  Returns its peer socket (close it after the run).
 */
static inline int fuzz_bystander(Loop *loop)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0) abort();
    client_accept(loop, sv[0], true, NULL);
    PktBuf b;
    pkt_init(&b);
    fuzz_startup_packet(&b, "bystander", "fuzzdb");
    pkt_query(&b, "SELECT 1");
    if (b.failed || send(sv[1], b.data, b.len, MSG_NOSIGNAL) != (ssize_t)b.len) abort();
    pkt_free(&b);
    for (int i = 0; i < ROUNDS_SETTLE; i++)
        fuzz_round(loop, sv[1]);
    return sv[1];
}

#endif
