/*
 * peers.c — forwarding cancel requests to the peer that owns their key
 * (see peers.h for the key layout).
 *
 * A forward is one worker job: resolve the peer (a name, an IP, or a unix
 * socket directory), connect, send the 16-byte CancelRequest with the
 * forwarded bit set, and wait until the peer closes the connection (as
 * PQcancel waits for PostgreSQL), all within cancel_wait_timeout (10 s if
 * that is 0).  The requesting client stays open, not read, until the job
 * completes, so its PQcancel returns when the request has reached the
 * session's instance; a failed forward is logged and dropped, and the
 * client is closed all the same (PostgreSQL never answers a cancel).
 * At most `workers` forwards run at once: each may hold a worker until its
 * deadline when a peer is unreachable, and logins need workers too.
 *
 * State (counters, jobs in flight) hangs off the Loop (Loop.peers).
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "client.h"
#include "config.h"
#include "conn.h"
#include "log.h"
#include "loop.h"
#include "loops.h"
#include "peers.h"
#include "proto.h"
#include "workq.h"

typedef struct peers_state {
    PeersStats stats;
    List forwarding; /* ForwardJob.node: forwards on the workers, for SHOW PEER_POOLS */
} PeersState;

typedef struct forward_job {
    WorkqJob job;
    ListNode node; /* in PeersState.forwarding; touched on the loop only */
    Loop *loop;
    uint32_t client_id;
    int peer_id;
    char host[256];
    int port;
    uint32_t pid, key;
    usec_t timeout;
    bool ok;
    char error[200];
} ForwardJob;

static PeersState *peers_get(Loop *loop)
{
    if (!loop->peers) {
        loop->peers = calloc(1, sizeof(PeersState));
        if (loop->peers) list_init(&loop->peers->forwarding);
    }
    return loop->peers;
}

uint32_t peers_cancel_key(const Config *cfg, uint32_t random)
{
    if (cfg->peer_id == 0) return random;
    return ((uint32_t)cfg->peer_id << CANCEL_KEY_PEER_SHIFT) | (random & CANCEL_KEY_RANDOM);
}

bool peers_key_matches(const Config *cfg, uint32_t issued, uint32_t received)
{
    /* a request forwarded by a peer carries the forwarded bit; ours never do */
    if (cfg->peer_id != 0) received &= ~CANCEL_KEY_FORWARDED;
    return issued == received;
}

/* ---------------------------------------------------------------- worker side */

static int wait_fd(int fd, short events, usec_t deadline)
{
    for (;;) {
        usec_t left = deadline - time_now_usec();
        if (left <= 0) return 0;
        struct pollfd pfd = {.fd = fd, .events = events};
        int r = poll(&pfd, 1, (int)((left + 999) / 1000));
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* Connect to one address before the deadline; the socket or -1 with the error set. */
static int forward_connect(ForwardJob *j, const struct sockaddr *sa, socklen_t len, usec_t deadline)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(j->error, sizeof(j->error), "socket: %s", strerror(errno));
        return -1;
    }
    if (connect(fd, sa, len) < 0) {
        int err = errno;
        if (err != EINPROGRESS) {
            snprintf(j->error, sizeof(j->error), "connect: %s", strerror(err));
            close(fd);
            return -1;
        }
        int r = wait_fd(fd, POLLOUT, deadline);
        socklen_t elen = sizeof(err);
        if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0) {
            snprintf(j->error, sizeof(j->error), "connect: %s",
                     r == 0 ? "timed out" : strerror(r < 0 ? errno : err));
            close(fd);
            return -1;
        }
    }
    return fd;
}

static void forward_work(WorkqJob *wj)
{
    ForwardJob *j = (ForwardJob *)wj;
    usec_t deadline = time_now_usec() + j->timeout;
    int fd = -1;
    if (j->host[0] == '/') {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        if ((size_t)snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", j->host,
                             j->port) >= sizeof(sun.sun_path)) {
            snprintf(j->error, sizeof(j->error), "unix socket path too long");
            return;
        }
        fd = forward_connect(j, (struct sockaddr *)&sun, sizeof(sun), deadline);
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL, *ai;
        char port[16];
        snprintf(port, sizeof(port), "%d", j->port);
        int rc = getaddrinfo(j->host, port, &hints, &res);
        if (rc != 0) {
            snprintf(j->error, sizeof(j->error), "could not resolve: %s", gai_strerror(rc));
            return;
        }
        for (ai = res; ai && fd < 0; ai = ai->ai_next)
            fd = forward_connect(j, ai->ai_addr, ai->ai_addrlen, deadline);
        freeaddrinfo(res);
    }
    if (fd < 0) return;
    uint8_t pkt[16];
    proto_put_u32(pkt, 16);
    proto_put_u32(pkt + 4, 80877102); /* CancelRequest */
    proto_put_u32(pkt + 8, j->pid);
    proto_put_u32(pkt + 12, j->key);
    if (send(fd, pkt, sizeof(pkt), MSG_NOSIGNAL) != (ssize_t)sizeof(pkt)) {
        snprintf(j->error, sizeof(j->error), "send: %s", strerror(errno));
        close(fd);
        return;
    }
    /* the peer closes once it has handled the request */
    for (;;) {
        int r = wait_fd(fd, POLLIN, deadline);
        if (r <= 0) {
            snprintf(j->error, sizeof(j->error), "no answer: %s",
                     r == 0 ? "timed out" : strerror(errno));
            break;
        }
        char buf[64];
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET)) {
            j->ok = true;
            break;
        }
        if (n < 0 && errno != EINTR && errno != EAGAIN) {
            snprintf(j->error, sizeof(j->error), "recv: %s", strerror(errno));
            break;
        }
    }
    close(fd);
}

/* ---------------------------------------------------------------- loop side */

static void forward_done(WorkqJob *wj, int status)
{
    ForwardJob *j = (ForwardJob *)wj;
    Loop *loop = j->loop;
    PeersState *ps = loop->peers;
    ps->stats.in_flight--;
    list_remove(&ps->forwarding, &j->node);
    if (status == 0 && j->ok) {
        ps->stats.forwarded++;
        log_at(LOG_LEVEL_DEBUG, NULL, "cancel request forwarded to peer %d (%s:%d)", j->peer_id,
               j->host, j->port);
    } else {
        ps->stats.forward_failed++;
        log_warning("forwarding a cancel request to peer %d (%s:%d) failed: %s; dropped",
                    j->peer_id, j->host, j->port, status != 0 ? "shutting down" : j->error);
    }
    Client *c = loop_client_find(loop, j->client_id);
    if (c) client_close(c, NULL, "cancel request forwarded to peer %d", j->peer_id);
    free(j);
}

static bool peers_drop(Client *c, int peer_id, const char *why)
{
    PeersState *ps = peers_get(c->loop);
    if (ps) ps->stats.dropped++;
    log_warning("cancel request for peer %d dropped: %s", peer_id, why);
    client_close(c, NULL, "cancel request dropped");
    return true;
}

bool peers_route_cancel(Client *c, uint32_t pid, uint32_t key)
{
    Loop *loop = c->loop;
    Config *cfg = loop->cfg;
    if (cfg->peer_id == 0) return false;
    int owner = (int)(key >> CANCEL_KEY_PEER_SHIFT);
    /* ours, or a key of an instance without peering: looked up here */
    if (owner == cfg->peer_id || owner == 0) return false;
    if (key & CANCEL_KEY_FORWARDED)
        return peers_drop(c, owner,
                          "it arrived already forwarded (does that peer's peer_id match its "
                          "[peers] entry?)");
    const PeerConf *pc = config_find_peer(cfg, owner);
    if (!pc) return peers_drop(c, owner, "no such [peers] entry");
    PeersState *ps = peers_get(loop);
    if (!ps) return peers_drop(c, owner, "out of memory");
    /* the workers are shared by every event loop: each gets its share of forwards */
    int limit = cfg->workers / (loop->set ? loop->set->n : 1);
    if (ps->stats.in_flight >= (limit > 2 ? limit : 2))
        return peers_drop(c, owner, "too many being forwarded");
    ForwardJob *j = calloc(1, sizeof(*j));
    if (!j) return peers_drop(c, owner, "out of memory");
    j->loop = loop;
    j->client_id = c->id;
    j->peer_id = owner;
    snprintf(j->host, sizeof(j->host), "%s", pc->host);
    j->port = pc->port ? pc->port : 6432;
    j->pid = pid;
    j->key = key | CANCEL_KEY_FORWARDED;
    j->timeout = cfg->cancel_wait_timeout > 0 ? cfg->cancel_wait_timeout : 10 * USEC_PER_SEC;
    if (workq_submit(loop->workq, &j->job, forward_work, forward_done) < 0) {
        free(j);
        return peers_drop(c, owner, "the worker queue is full");
    }
    ps->stats.in_flight++;
    list_append(&ps->forwarding, &j->node);
    /* nothing more comes from it; it is closed when the forward is done */
    conn_want_read(&c->conn, false);
    return true;
}

void peers_get_stats(Loop *loop, PeersStats *out)
{
    /* over every loop (the caller has them frozen) */
    memset(out, 0, sizeof(*out));
    int n = loop->set ? loop->set->n : 1;
    for (int i = 0; i < n; i++) {
        const PeersState *ps = loop->set ? loop->set->loops[i]->peers : loop->peers;
        if (!ps) continue;
        out->forwarded += ps->stats.forwarded;
        out->forward_failed += ps->stats.forward_failed;
        out->dropped += ps->stats.dropped;
        out->in_flight += ps->stats.in_flight;
    }
}

int peers_forwarding_to(Loop *loop, int peer_id)
{
    int n = loop->set ? loop->set->n : 1, count = 0;
    for (int i = 0; i < n; i++) {
        const PeersState *ps = loop->set ? loop->set->loops[i]->peers : loop->peers;
        if (!ps) continue;
        ListNode *it;
        list_for_each(it, &ps->forwarding)
        {
            if (list_entry(it, ForwardJob, node)->peer_id == peer_id) count++;
        }
    }
    return count;
}

void peers_free(Loop *loop)
{
    free(loop->peers);
    loop->peers = NULL;
}
