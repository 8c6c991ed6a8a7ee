/*
 * idle_clients.c — open many client connections, finish their startup, then
 * hold them idle: measures a pooler's memory per idle client and its
 * throughput while they are connected (tools/bench/run.sh).
 *
 *   idle_clients CONNINFO N [SECONDS=0] [IN_FLIGHT=256]
 *
 * Connections are made with libpq's non-blocking PQconnectStart /
 * PQconnectPoll driven by poll(), at most IN_FLIGHT logins at a time (so a
 * listen backlog of 128 does not turn into SYN retries).  When every
 * connection has either completed its startup or failed, it prints
 *
 *   connected=C failed=F seconds=S
 *   ready
 *
 * on stdout (flushed), then holds the connections until SIGTERM or SIGINT,
 * or for SECONDS if SECONDS > 0, and closes them.  The soft RLIMIT_NOFILE is
 * raised to the hard limit first; raise the hard one (ulimit -Hn) before.
 * Exit status: 0 if all N connected, 1 if some failed, 2 on usage errors.
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <libpq-fe.h>

typedef struct {
    PGconn *conn;
    PostgresPollingStatusType want; /* what PQconnectPoll last asked for */
} Pending;

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long parse_long(const char *s, const char *what, long min)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min) {
        fprintf(stderr, "idle_clients: bad %s '%s'\n", what, s);
        exit(2);
    }
    return v;
}

static void raise_nofile(long need)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) perror("idle_clients: setrlimit");
    }
    if (rl.rlim_cur != RLIM_INFINITY && (long)rl.rlim_cur < need + 32)
        fprintf(stderr, "idle_clients: warning: open files limit %ld < %ld connections\n",
                (long)rl.rlim_cur, need);
}

static void note_failure(PGconn *conn, long *failed, int *reported)
{
    (*failed)++;
    if (*reported < 3) {
        fprintf(stderr, "idle_clients: connection failed: %s", PQerrorMessage(conn));
        (*reported)++;
    }
}

/* Starts one connection into slot p; returns 0, or -1 if it failed at once. */
static int start_one(const char *conninfo, Pending *p)
{
    p->conn = PQconnectStart(conninfo);
    if (!p->conn || PQstatus(p->conn) == CONNECTION_BAD) return -1;
    p->want = PGRES_POLLING_WRITING;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: idle_clients CONNINFO N [SECONDS=0] [IN_FLIGHT=256]\n");
        return 2;
    }
    const char *conninfo = argv[1];
    long n = parse_long(argv[2], "N", 1);
    long hold = argc > 3 ? parse_long(argv[3], "SECONDS", 0) : 0;
    long in_flight = argc > 4 ? parse_long(argv[4], "IN_FLIGHT", 1) : 256;
    if (in_flight > n) in_flight = n;

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile(n);

    PGconn **done = calloc((size_t)n, sizeof(*done));
    Pending *pend = calloc((size_t)in_flight, sizeof(*pend));
    struct pollfd *pfd = calloc((size_t)in_flight, sizeof(*pfd));
    if (!done || !pend || !pfd) {
        fprintf(stderr, "idle_clients: out of memory\n");
        return 2;
    }

    long started = 0, connected = 0, failed = 0;
    int reported = 0;
    long active = 0; /* pend[0..active) are in progress */
    double t0 = now_s();

    while ((started < n || active > 0) && !stop_requested) {
        while (active < in_flight && started < n) {
            started++;
            if (start_one(conninfo, &pend[active]) == 0) {
                active++;
            } else {
                note_failure(pend[active].conn, &failed, &reported);
                PQfinish(pend[active].conn);
            }
        }
        if (active == 0) continue;
        for (long i = 0; i < active; i++) {
            pfd[i].fd = PQsocket(pend[i].conn);
            pfd[i].events = pend[i].want == PGRES_POLLING_READING ? POLLIN : POLLOUT;
            pfd[i].revents = 0;
        }
        int rc = poll(pfd, (nfds_t)active, 1000);
        if (rc < 0) {
            if (errno == EINTR) continue;
            perror("idle_clients: poll");
            break;
        }
        for (long i = 0; i < active;) {
            if (pfd[i].revents == 0) {
                i++;
                continue;
            }
            PostgresPollingStatusType st = PQconnectPoll(pend[i].conn);
            if (st == PGRES_POLLING_OK) {
                done[connected++] = pend[i].conn;
            } else if (st == PGRES_POLLING_FAILED) {
                note_failure(pend[i].conn, &failed, &reported);
                PQfinish(pend[i].conn);
            } else {
                pend[i].want = st;
                i++;
                continue;
            }
            /* slot i is free: move the last in-progress one into it */
            active--;
            pend[i] = pend[active];
            pfd[i] = pfd[active];
        }
    }
    for (long i = 0; i < active; i++) { /* interrupted while connecting */
        failed++;
        PQfinish(pend[i].conn);
    }

    printf("connected=%ld failed=%ld seconds=%.2f\nready\n", connected, failed, now_s() - t0);
    fflush(stdout);

    double until = hold > 0 ? now_s() + (double)hold : 0;
    while (!stop_requested && (until == 0 || now_s() < until)) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }

    for (long i = 0; i < connected; i++)
        PQfinish(done[i]);
    free(done);
    free(pend);
    free(pfd);
    return connected == n ? 0 : 1;
}
