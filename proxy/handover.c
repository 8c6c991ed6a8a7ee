/*
 * handover.c — passing the listening sockets to a successor process (see
 * handover.h), for an upgrade that refuses and drops no connection.
 *
 * DESIGN
 * Every running pgfunnel listens on a control socket in Linux's abstract
 * unix namespace named after its port and unix socket directory
 * ("pgfunnel:6432:/run/pgfunnel"), the two settings that already make two
 * instances collide.  A successor started with --takeover connects to it
 * before it opens any listener.  The predecessor checks the peer's
 * credentials (same user, or root) and answers with one message: a header
 * and, as SCM_RIGHTS, its control socket and every listening socket.  The
 * successor uses an inherited socket for each configured address that
 * matches one (getsockname), opens the others itself, and closes the rest.
 *
 * From then on both processes accept from the same kernel queues.  That is
 * the point of passing sockets rather than binding a second one with
 * SO_REUSEPORT: closing a SO_REUSEPORT listener resets the connections still
 * in its own accept queue (measured: about one upgrade in 40 under
 * `pgbench -C` lost a connection that way), and a unix socket file replaced
 * by a new one strands the old socket's queue likewise.  A passed socket is
 * closed only when its last copy is, and the unix socket file is never
 * replaced.
 *
 * When the successor is ready it writes one byte, 'R', on the connection
 * (handover_commit).  The predecessor then goes quiet towards the supervisor
 * (the successor has told systemd it is the main process now), closes its
 * HTTP endpoint (evhttp's socket is not passed on: the successor binds the
 * port as soon as it is free, main.c) and shuts down as on SIGTERM: it
 * closes its copies of the listening sockets, leaves the socket file to the
 * successor, and exits when its last client has left.  If
 * the connection closes without that byte, the successor failed and the
 * predecessor carries on as if nothing had happened.
 *
 * Predecessor states (loop->handover): IDLE (offering) → SENT (a successor
 * holds copies; one at a time) → COMMITTED (draining).  SENT → IDLE when the
 * successor goes away.  The successor side is synchronous: it runs at
 * start-up, before the loop, with a timeout on every call.
 */
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <netinet/in.h>
#include <event2/listener.h>

#include "config.h"
#include "handover.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "loop.h"
#include "loops.h"
#include "notify.h"

#define HANDOVER_MAGIC       "pgfunnel-handover-1"
#define HANDOVER_MAX_FDS     64 /* control socket + listeners */
#define HANDOVER_TIMEOUT_SEC 10 /* successor side: connect, receive, commit */

/* The message the predecessor sends, with the sockets as SCM_RIGHTS. */
typedef struct handover_hello {
    char magic[24];
    int32_t pid;           /* the predecessor */
    uint32_t nfds;         /* sockets attached */
    int64_t watchdog_usec; /* its systemd watchdog interval, 0 = none */
} HandoverHello;

/* Successor side (handover.h). */
struct handover {
    int conn; /* to the predecessor, until commit or abort */
    pid_t pid;
    int nfds;
    int fds[HANDOVER_MAX_FDS]; /* -1 once taken */
};

typedef enum {
    HANDOVER_IDLE = 0, /* offering the sockets */
    HANDOVER_SENT,     /* a successor holds copies and has not committed yet */
    HANDOVER_COMMITTED /* the successor took over: draining */
} HandoverState;

/* Predecessor side: owned by the Loop (loop->handover), freed by handover_stop. */
typedef struct handover_server {
    Loop *loop;
    struct evconnlistener *evl; /* the control socket; NULL once committed */
    HandoverState state;
    int conn;              /* SENT: the successor's connection */
    struct event *ev_conn; /* SENT: its commit byte or EOF */
    pid_t successor;
} HandoverServer;

/* The control socket's abstract address: "\0pgfunnel:<port>:<unix_socket_dir>". */
static socklen_t handover_address(const Config *cfg, struct sockaddr_un *sun)
{
    memset(sun, 0, sizeof(*sun));
    sun->sun_family = AF_UNIX;
    int n = snprintf(sun->sun_path + 1, sizeof(sun->sun_path) - 1, "pgfunnel:%d:%s",
                     cfg->listen_port, cfg->unix_socket_dir ? cfg->unix_socket_dir : "");
    size_t len = n < 0 ? 0 : (size_t)n;
    if (len > sizeof(sun->sun_path) - 2) len = sizeof(sun->sun_path) - 2; /* cut, as a name */
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + len);
}

/* Same address: family, then port and address, or the unix path (abstract: the bytes). */
static bool sockaddr_same(const struct sockaddr *a, socklen_t alen, const struct sockaddr *b,
                          socklen_t blen)
{
    if (a->sa_family != b->sa_family) return false;
    switch (a->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *x = (const void *)a, *y = (const void *)b;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    case AF_INET6: {
        const struct sockaddr_in6 *x = (const void *)a, *y = (const void *)b;
        return x->sin6_port == y->sin6_port && x->sin6_scope_id == y->sin6_scope_id &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
    }
    case AF_UNIX: {
        const struct sockaddr_un *x = (const void *)a, *y = (const void *)b;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        if (alen <= off || blen <= off) return false;
        if (x->sun_path[0] == '\0' || y->sun_path[0] == '\0')
            return alen == blen && memcmp(x->sun_path, y->sun_path, alen - off) == 0;
        return strncmp(x->sun_path, y->sun_path, sizeof(x->sun_path)) == 0;
    }
    default:
        return false;
    }
}

/* The peer of a unix socket runs as our user, as root, or as also_uid. */
static int handover_peer_ok(int fd, uid_t also_uid, struct ucred *cr)
{
    socklen_t len = sizeof(*cr);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cr, &len) < 0) return -errno;
    return cr->uid == geteuid() || cr->uid == 0 || cr->uid == also_uid ? 0 : -EPERM;
}

/* ------------------------------------------------------------------------
 * Successor side
 * ------------------------------------------------------------------------ */

static void handover_free(Handover *h)
{
    for (int i = 0; i < h->nfds; i++)
        if (h->fds[i] >= 0) close(h->fds[i]);
    if (h->conn >= 0) close(h->conn);
    free(h);
}

int handover_fetch(const Config *cfg, const char *user, Handover **out, char *err, size_t errlen)
{
    /* started as root with -u/user=: the predecessor runs as that user */
    struct passwd *pw = user ? getpwnam(user) : NULL;
    uid_t also_uid = pw ? pw->pw_uid : (uid_t)-1;
    struct sockaddr_un sun;
    socklen_t slen = handover_address(cfg, &sun);
    struct timeval tv = {HANDOVER_TIMEOUT_SEC, 0};
    struct ucred cr;
    *out = NULL;

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "takeover: socket(): %s", strerror(errno));
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (connect(fd, (struct sockaddr *)&sun, slen) < 0) {
        int e = errno;
        close(fd);
        if (e == ECONNREFUSED || e == ENOENT) return 0; /* nobody to take over from */
        snprintf(err, errlen, "takeover: cannot reach the running pgfunnel: %s", strerror(e));
        return -1;
    }
    int rc = handover_peer_ok(fd, also_uid, &cr);
    if (rc < 0) {
        snprintf(err, errlen, "takeover: the process offering port %d runs as uid %d, not as us",
                 cfg->listen_port, rc == -EPERM ? (int)cr.uid : -1);
        close(fd);
        return -1;
    }

    Handover *h = calloc(1, sizeof(*h));
    if (!h) {
        close(fd);
        snprintf(err, errlen, "takeover: out of memory");
        return -1;
    }
    h->conn = fd;
    HandoverHello hello;
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * HANDOVER_MAX_FDS)];
    } ctl;
    struct iovec iov = {.iov_base = &hello, .iov_len = sizeof(hello)};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = sizeof(ctl.buf)};
    ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC | MSG_WAITALL);
    /* keep whatever arrived, so that every received descriptor gets closed on error */
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
        if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
        int k = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < k && h->nfds < HANDOVER_MAX_FDS; i++)
            memcpy(&h->fds[h->nfds++], CMSG_DATA(c) + i * sizeof(int), sizeof(int));
    }
    if (n != (ssize_t)sizeof(hello) || (msg.msg_flags & MSG_CTRUNC) ||
        memcmp(hello.magic, HANDOVER_MAGIC, sizeof(HANDOVER_MAGIC)) != 0 ||
        hello.nfds != (uint32_t)h->nfds) {
        snprintf(err, errlen,
                 "takeover: pid %d did not hand over its sockets (%s); it keeps running",
                 (int)cr.pid,
                 n < 0    ? strerror(errno)
                 : n == 0 ? "it is shutting down or handing over to another process"
                          : "unexpected answer");
        handover_free(h);
        return -1;
    }
    h->pid = hello.pid;
    notify_set_watchdog_usec(hello.watchdog_usec);
    *out = h;
    return 0;
}

int handover_take(Handover *h, const struct sockaddr *addr, socklen_t len)
{
    if (!h) return -1;
    for (int i = 0; i < h->nfds; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int listening = 0;
        socklen_t ll = sizeof(listening);
        if (h->fds[i] < 0 || getsockname(h->fds[i], (struct sockaddr *)&ss, &sl) < 0) continue;
        if (!sockaddr_same((struct sockaddr *)&ss, sl, addr, len)) continue;
        if (getsockopt(h->fds[i], SOL_SOCKET, SO_ACCEPTCONN, &listening, &ll) < 0 || !listening)
            continue;
        int fd = h->fds[i];
        h->fds[i] = -1;
        return fd;
    }
    return -1;
}

pid_t handover_predecessor(const Handover *h)
{
    return h ? h->pid : 0;
}

void handover_commit(Handover *h)
{
    if (!h) return;
    /* blocking with SO_SNDTIMEO; if the predecessor is gone there is nobody to tell */
    if (send(h->conn, "R", 1, MSG_NOSIGNAL) != 1)
        log_warning("takeover: could not tell pid %d to drain: %s", (int)h->pid, strerror(errno));
    else
        log_info("took over the listening sockets of pid %d; it drains and exits", (int)h->pid);
    handover_free(h);
}

void handover_abort(Handover *h)
{
    if (h) handover_free(h);
}

/* ------------------------------------------------------------------------
 * Predecessor side
 * ------------------------------------------------------------------------ */

static void handover_conn_close(HandoverServer *hs)
{
    if (hs->ev_conn) event_free(hs->ev_conn);
    hs->ev_conn = NULL;
    if (hs->conn >= 0) close(hs->conn);
    hs->conn = -1;
}

static void handover_on_conn(evutil_socket_t fd, short ev, void *arg)
{
    HandoverServer *hs = arg;
    Loop *loop = hs->loop;
    char c = 0;
    (void)ev;
    ssize_t n = recv(fd, &c, 1, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    handover_conn_close(hs);
    if (n != 1 || c != 'R') {
        hs->state = HANDOVER_IDLE;
        log_warning("takeover: pid %d went away before it was ready; carrying on",
                    (int)hs->successor);
        return;
    }
    hs->state = HANDOVER_COMMITTED;
    /* the successor answers on the control socket from now on */
    evconnlistener_free(hs->evl);
    hs->evl = NULL;
    log_info("pid %d took over the listening sockets: draining, %d clients left",
             (int)hs->successor, atomic_load(&loop->set->clients));
    notify_retire();
    /* the HTTP port is not passed on: free it for the successor, which binds it now */
    http_stop(loop);
    loops_begin_shutdown(loop, SHUTDOWN_WAIT_CLIENTS);
}

/* Append fd to the array, if there is room. */
static void fds_add(int *fds, uint32_t *n, int fd)
{
    if (fd >= 0 && *n < HANDOVER_MAX_FDS) fds[(*n)++] = fd;
}

static void handover_on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                               int socklen, void *arg)
{
    HandoverServer *hs = arg;
    Loop *loop = hs->loop;
    struct ucred cr = {0};
    (void)sa;
    (void)socklen;
    int rc = handover_peer_ok(fd, (uid_t)-1, &cr);
    if (rc < 0) {
        log_warning("takeover request from pid %d refused: %s", (int)cr.pid,
                    rc == -EPERM ? "it runs as another user" : strerror(-rc));
        close(fd);
        return;
    }
    if (hs->state != HANDOVER_IDLE || loop->shutdown != SHUTDOWN_NONE) {
        log_warning("takeover request from pid %d refused: %s", (int)cr.pid,
                    loop->shutdown != SHUTDOWN_NONE ? "shutting down"
                                                    : "already handing over to another process");
        close(fd);
        return;
    }

    int fds[HANDOVER_MAX_FDS];
    uint32_t nfds = 0;
    ListNode *it;
    fds_add(fds, &nfds, evconnlistener_get_fd(evl));
    list_for_each(it, &loop->listeners)
    {
        fds_add(fds, &nfds, evconnlistener_get_fd(list_entry(it, Listener, node)->evl));
    }
    HandoverHello hello = {
        .pid = (int32_t)getpid(), .nfds = nfds, .watchdog_usec = notify_watchdog_usec()};
    memcpy(hello.magic, HANDOVER_MAGIC, sizeof(HANDOVER_MAGIC));
    union {
        struct cmsghdr align;
        char buf[CMSG_SPACE(sizeof(int) * HANDOVER_MAX_FDS)];
    } ctl;
    memset(&ctl, 0, sizeof(ctl));
    struct iovec iov = {.iov_base = &hello, .iov_len = sizeof(hello)};
    struct msghdr msg = {.msg_iov = &iov,
                         .msg_iovlen = 1,
                         .msg_control = ctl.buf,
                         .msg_controllen = CMSG_SPACE(sizeof(int) * nfds)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(c), fds, sizeof(int) * nfds);
    /* a fresh unix socket takes this small message at once: no need to wait */
    if (sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) != (ssize_t)sizeof(hello)) {
        log_warning("takeover: cannot pass the sockets to pid %d: %s", (int)cr.pid,
                    strerror(errno));
        close(fd);
        return;
    }
    hs->ev_conn = event_new(loop->base, fd, EV_READ | EV_PERSIST, handover_on_conn, hs);
    if (!hs->ev_conn || event_add(hs->ev_conn, NULL) < 0) {
        /* the successor sees EOF before the commit and gives up */
        if (hs->ev_conn) event_free(hs->ev_conn);
        hs->ev_conn = NULL;
        close(fd);
        return;
    }
    hs->conn = fd;
    hs->state = HANDOVER_SENT;
    hs->successor = cr.pid;
    log_info("takeover: passed %u listening sockets to pid %d, waiting until it is ready", nfds - 1,
             (int)cr.pid);
}

void handover_serve(Loop *loop, Handover *h)
{
    struct sockaddr_un sun;
    socklen_t slen = handover_address(loop->cfg, &sun);
    HandoverServer *hs = calloc(1, sizeof(*hs));
    if (!hs) {
        log_warning("takeover: out of memory; a later --takeover will not find this process");
        return;
    }
    hs->loop = loop;
    hs->conn = -1;
    int fd = handover_take(h, (struct sockaddr *)&sun, slen);
    if (fd < 0) {
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd >= 0 && (bind(fd, (struct sockaddr *)&sun, slen) < 0 || listen(fd, 8) < 0)) {
            log_warning("takeover: cannot offer the sockets on \"@%s\": %s; a later --takeover "
                        "will not find this process",
                        sun.sun_path + 1, strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    if (fd >= 0)
        hs->evl = evconnlistener_new(loop->base, handover_on_accept, hs,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (fd >= 0 && !hs->evl) close(fd);
    loop->handover = hs;
}

void handover_stop(Loop *loop)
{
    HandoverServer *hs = loop->handover;
    if (!hs) return;
    handover_conn_close(hs);
    if (hs->evl) evconnlistener_free(hs->evl);
    free(hs);
    loop->handover = NULL;
}

bool handover_sockets_shared(const Loop *loop)
{
    const HandoverServer *hs = loop->handover;
    return hs && hs->state != HANDOVER_IDLE;
}
