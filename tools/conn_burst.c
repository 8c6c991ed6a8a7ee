/*
 * conn_burst — open and close many TCP connections to a pooler as fast as
 * possible, for fault and resource tests.
 *
 *   conn_burst HOST PORT [N=10000] [THREADS=4] [--startup]
 *
 * THREADS threads share N connections.  Each connection is opened, then
 *   without --startup: closed at once (connect + close);
 *   with --startup:    a StartupMessage (user=postgres database=postgres) is
 *                      sent, the answer read up to ReadyForQuery or an
 *                      ErrorResponse (5 s at most), then Terminate and close.
 * Prints key=value lines: connects, connect_failures, logins, login_failures,
 * elapsed_ms, rate.  Exit 0 when every connect (and login) succeeded, 2 when
 * some failed, 1 on usage errors.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

static struct sockaddr_storage addr;
static socklen_t addrlen;
static int total = 10000;
static int do_startup;
static atomic_int next_conn;
static atomic_int n_connect, n_connect_fail, n_login, n_login_fail;
static char first_error[256];
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;

static void note_error(const char *what, int err)
{
    pthread_mutex_lock(&err_lock);
    if (!first_error[0]) snprintf(first_error, sizeof(first_error), "%s: %s", what, strerror(err));
    pthread_mutex_unlock(&err_lock);
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* reads messages until ReadyForQuery (1), ErrorResponse (0) or failure (-1) */
static int read_login(int fd)
{
    unsigned char buf[8192];
    size_t have = 0;
    long long deadline = now_ms() + 5000;
    for (;;) {
        /* consume complete messages */
        size_t off = 0;
        while (have - off >= 5) {
            uint32_t len = ((uint32_t)buf[off + 1] << 24) | ((uint32_t)buf[off + 2] << 16) |
                           ((uint32_t)buf[off + 3] << 8) | buf[off + 4];
            if (len < 4 || len > sizeof(buf) - 1) return -1;
            if (have - off < 1 + (size_t)len) break;
            char type = (char)buf[off];
            if (type == 'Z') return 1;
            if (type == 'E') return 0;
            off += 1 + len;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        int left = (int)(deadline - now_ms());
        if (left <= 0) return -1;
        struct pollfd pfd = {fd, POLLIN, 0};
        int r = poll(&pfd, 1, left);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        ssize_t got = recv(fd, buf + have, sizeof(buf) - have, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        have += (size_t)got;
    }
}

static void *worker(void *arg)
{
    (void)arg;
    static const char params[] = "user\0postgres\0database\0postgres\0application_name\0"
                                 "conn_burst\0";
    unsigned char startup[128];
    uint32_t len = 8 + sizeof(params); /* sizeof includes the final NUL terminator */
    startup[0] = (unsigned char)(len >> 24);
    startup[1] = (unsigned char)(len >> 16);
    startup[2] = (unsigned char)(len >> 8);
    startup[3] = (unsigned char)len;
    startup[4] = 0, startup[5] = 3, startup[6] = 0, startup[7] = 0;
    memcpy(startup + 8, params, sizeof(params));
    static const unsigned char terminate[5] = {'X', 0, 0, 0, 4};

    while (atomic_fetch_add(&next_conn, 1) < total) {
        int fd = socket(addr.ss_family, SOCK_STREAM, 0);
        if (fd < 0) {
            note_error("socket", errno);
            atomic_fetch_add(&n_connect_fail, 1);
            continue;
        }
        if (connect(fd, (struct sockaddr *)&addr, addrlen) < 0) {
            note_error("connect", errno);
            atomic_fetch_add(&n_connect_fail, 1);
            close(fd);
            continue;
        }
        atomic_fetch_add(&n_connect, 1);
        if (do_startup) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
            int ok = write_all(fd, startup, len) == 0 ? read_login(fd) : -1;
            if (ok == 1) {
                atomic_fetch_add(&n_login, 1);
                write_all(fd, terminate, sizeof(terminate));
            } else {
                note_error(ok == 0 ? "login: ErrorResponse" : "login", ok == 0 ? 0 : errno);
                atomic_fetch_add(&n_login_fail, 1);
            }
        }
        close(fd);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *pos[4] = {0};
    int npos = 0, threads = 4;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--startup") == 0)
            do_startup = 1;
        else if (npos < 4)
            pos[npos++] = argv[i];
        else
            npos = 99;
    }
    if (npos < 2 || npos > 4) {
        fprintf(stderr, "usage: conn_burst HOST PORT [N=10000] [THREADS=4] [--startup]\n");
        return 1;
    }
    if (npos > 2) total = atoi(pos[2]);
    if (npos > 3) threads = atoi(pos[3]);
    if (total < 0 || threads < 1 || threads > 256) {
        fprintf(stderr, "conn_burst: bad N or THREADS\n");
        return 1;
    }
    struct addrinfo hints = {0}, *res;
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(pos[0], pos[1], &hints, &res);
    if (gai != 0) {
        fprintf(stderr, "conn_burst: %s: %s\n", pos[0], gai_strerror(gai));
        return 1;
    }
    memcpy(&addr, res->ai_addr, res->ai_addrlen);
    addrlen = res->ai_addrlen;
    freeaddrinfo(res);

    pthread_t tid[256];
    long long t0 = now_ms();
    for (int i = 0; i < threads; i++)
        pthread_create(&tid[i], NULL, worker, NULL);
    for (int i = 0; i < threads; i++)
        pthread_join(tid[i], NULL);
    long long dt = now_ms() - t0;

    printf("connects=%d\nconnect_failures=%d\n", n_connect, n_connect_fail);
    if (do_startup) printf("logins=%d\nlogin_failures=%d\n", n_login, n_login_fail);
    printf("elapsed_ms=%lld\nrate=%.0f\n", dt, dt > 0 ? total * 1000.0 / (double)dt : 0.0);
    if (first_error[0]) printf("first_error=%s\n", first_error);
    return (n_connect_fail || n_login_fail) ? 2 : 0;
}
