/*
 * conn.c — socket I/O with a pooled receive buffer and an out-queue (see conn.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <stdio.h>

#include "conn.h"
#include "loop.h"

static ssize_t plain_read(Conn *c, void *buf, size_t len)
{
    return read(c->fd, buf, len);
}

static ssize_t plain_write(Conn *c, const void *buf, size_t len)
{
    return send(c->fd, buf, len, MSG_NOSIGNAL);
}

static const ConnIo plain_io = {plain_read, plain_write};

static void conn_obuf_free(Conn *c);

void conn_init(Conn *c, Loop *loop, int fd)
{
    memset(c, 0, sizeof(*c));
    c->fd = fd;
    c->loop = loop;
    c->io = &plain_io;
    c->addr[0] = 0;
}

void conn_set_callbacks(Conn *c, event_callback_fn on_read, event_callback_fn on_write, void *arg)
{
    if (c->events_set) {
        event_del(&c->ev_read);
        event_del(&c->ev_write);
    }
    event_assign(&c->ev_read, c->loop->base, c->fd, EV_READ | EV_PERSIST, on_read, arg);
    event_assign(&c->ev_write, c->loop->base, c->fd, EV_WRITE | EV_PERSIST, on_write, arg);
    c->events_set = true;
    if (c->reading) event_add(&c->ev_read, NULL);
    if (c->writing) event_add(&c->ev_write, NULL);
}

void conn_want_read(Conn *c, bool on)
{
    if (c->reading == on || c->closed) return;
    c->reading = on;
    if (!c->events_set) return;
    if (on)
        event_add(&c->ev_read, NULL);
    else
        event_del(&c->ev_read);
}

void conn_want_write(Conn *c, bool on)
{
    if (c->writing == on || c->closed) return;
    c->writing = on;
    if (!c->events_set) return;
    if (on)
        event_add(&c->ev_write, NULL);
    else
        event_del(&c->ev_write);
}

void conn_detach(Conn *c)
{
    if (c->events_set) {
        event_del(&c->ev_read);
        event_del(&c->ev_write);
        c->events_set = false;
    }
    c->reading = c->writing = false;
    conn_release_buffer(c);
}

void conn_close(Conn *c)
{
    if (c->events_set) {
        event_del(&c->ev_read);
        event_del(&c->ev_write);
        c->events_set = false;
    }
    c->reading = c->writing = false;
    if (!c->closed && c->fd >= 0 && !c->keep_fd) close(c->fd);
    c->closed = true;
    c->fd = -1;
    if (c->rbuf) {
        loop_buffer_put(c->loop, c->rbuf, c->rsize);
        c->rbuf = NULL;
    }
    conn_obuf_free(c);
    c->rpos = c->rend = c->rsize = 0;
}

static int conn_get_buffer(Conn *c)
{
    if (c->rbuf) return 0;
    c->rbuf = loop_buffer_get(c->loop, &c->rsize);
    c->rpos = c->rend = 0;
    return c->rbuf ? 0 : -1;
}

void conn_release_buffer(Conn *c)
{
    if (c->rbuf && c->rpos == c->rend) {
        loop_buffer_put(c->loop, c->rbuf, c->rsize);
        c->rbuf = NULL;
        c->rpos = c->rend = c->rsize = 0;
    }
}

int conn_reserve(Conn *c, uint32_t need, uint32_t max)
{
    if (conn_get_buffer(c) < 0) return -1;
    if (c->rpos + need <= c->rsize) return 0;
    /* compact first: the unconsumed bytes move to the start */
    uint32_t avail = c->rend - c->rpos;
    if (c->rpos > 0) {
        memmove(c->rbuf, c->rbuf + c->rpos, avail);
        c->rpos = 0;
        c->rend = avail;
    }
    if (need <= c->rsize) return 0;
    if (need > max) return -1;
    /* a message larger than the standard buffer that must be read whole */
    uint32_t size = c->rsize;
    while (size < need)
        size *= 2;
    if (size > max) size = max;
    uint8_t *nb = malloc(size);
    if (!nb) return -1;
    memcpy(nb, c->rbuf, avail);
    loop_buffer_put(c->loop, c->rbuf, c->rsize);
    c->rbuf = nb;
    c->rsize = size;
    return 0;
}

int conn_fill(Conn *c)
{
    if (c->closed) return -1;
    if (conn_get_buffer(c) < 0) return -1;
    if (c->rpos == c->rend) c->rpos = c->rend = 0;
    if (c->rend == c->rsize && c->rpos > 0) {
        uint32_t avail = c->rend - c->rpos;
        memmove(c->rbuf, c->rbuf + c->rpos, avail);
        c->rpos = 0;
        c->rend = avail;
    }
    if (c->rend == c->rsize) return -2;
    ssize_t n = c->io->read(c, c->rbuf + c->rend, c->rsize - c->rend);
    if (n > 0) {
        c->rend += (uint32_t)n;
        c->bytes_in += (uint64_t)n;
        return (int)n;
    }
    if (n == 0) return 0;
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return -2;
    return -1;
}

/* Give the out-queue's buffer back (to the loop's free list if it came from there). */
static void conn_obuf_free(Conn *c)
{
    if (c->obuf_pooled)
        loop_buffer_put(c->loop, c->obuf, c->ocap);
    else
        free(c->obuf);
    c->obuf = NULL;
    c->obuf_pooled = false;
    c->ocap = c->opos = c->oend = 0;
}

static int conn_queue(Conn *c, const uint8_t *data, size_t len)
{
    /* the usual small queue (a corked batch, a short backlog) takes a pooled buffer */
    if (!c->obuf && len <= c->loop->buf_size) {
        c->obuf = loop_buffer_get(c->loop, &c->ocap);
        if (!c->obuf) return -1;
        c->obuf_pooled = true;
        c->opos = c->oend = 0;
    }
    if (c->oend + len > c->ocap) {
        uint32_t used = c->oend - c->opos;
        if (c->opos > 0) {
            memmove(c->obuf, c->obuf + c->opos, used);
            c->opos = 0;
            c->oend = used;
        }
        if (used + len > c->ocap) {
            size_t cap = c->ocap ? c->ocap : 4096;
            while (cap < used + len)
                cap *= 2;
            if (cap > UINT32_MAX) return -1;
            uint8_t *nb = c->obuf_pooled ? malloc(cap) : realloc(c->obuf, cap);
            if (!nb) return -1;
            if (c->obuf_pooled) {
                memcpy(nb, c->obuf, used);
                loop_buffer_put(c->loop, c->obuf, c->ocap);
                c->obuf_pooled = false;
            }
            c->obuf = nb;
            c->ocap = (uint32_t)cap;
        }
    }
    memcpy(c->obuf + c->oend, data, len);
    c->oend += (uint32_t)len;
    /* corked: conn_uncork() writes, no need to wake up for it */
    if (!c->corked) conn_want_write(c, true);
    return 0;
}

void conn_cork(Conn *c)
{
    c->corked = true;
}

int conn_uncork(Conn *c)
{
    if (!c->corked) return 0;
    c->corked = false;
    if (c->closed) return -1;
    if (!conn_has_queue(c) || c->writing) return 0; /* nothing, or EV_WRITE will do it */
    int r = conn_flush(c);
    if (r == 1) conn_want_write(c, true);
    return r < 0 ? -1 : 0;
}

int conn_send(Conn *c, const void *data, size_t len)
{
    const uint8_t *p = data;
    if (c->closed) return -1;
    if (len == 0) return 0;
    if (conn_has_queue(c) || c->corked) return conn_queue(c, p, len);
    while (len > 0) {
        ssize_t n = c->io->write(c, p, len);
        if (n > 0) {
            c->bytes_out += (uint64_t)n;
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return conn_queue(c, p, len);
        return -1;
    }
    return 0;
}

int conn_flush(Conn *c)
{
    if (c->closed) return -1;
    while (conn_has_queue(c)) {
        ssize_t n = c->io->write(c, c->obuf + c->opos, c->oend - c->opos);
        if (n > 0) {
            c->bytes_out += (uint64_t)n;
            c->opos += (uint32_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 1;
        return -1;
    }
    /* drained: the queue only exists under backpressure, so give it back */
    conn_obuf_free(c);
    conn_want_write(c, false);
    return 0;
}

void conn_describe_peer(Conn *c, const struct sockaddr *peer)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (peer) {
        /* accept() already said who it is: no getpeername() per connection */
        memcpy(&ss, peer,
               peer->sa_family == AF_INET6  ? sizeof(struct sockaddr_in6)
               : peer->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                            : sizeof(struct sockaddr));
    } else if (getpeername(c->fd, (struct sockaddr *)&ss, &sl) < 0) {
        snprintf(c->addr, sizeof(c->addr), "unknown");
        return;
    }
    char host[INET6_ADDRSTRLEN] = "";
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        snprintf(c->addr, sizeof(c->addr), "%s:%u", host, ntohs(in->sin_port));
    } else if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(c->addr, sizeof(c->addr), "[%s]:%u", host, ntohs(in6->sin6_port));
    } else {
        snprintf(c->addr, sizeof(c->addr), "unix");
    }
}
