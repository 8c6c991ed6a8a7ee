/*
 * conn.h — one non-blocking socket with its receive buffer and out-queue.
 *
 * Shared by clients and servers (each embeds a Conn; the owner is passed to
 * the event callbacks).  The relay reads into `rbuf`, looks at message
 * headers in place and forwards byte ranges straight from `rbuf` to the
 * peer's socket with conn_send(): the write is tried first and only what
 * the kernel did not take is copied into the peer's out-queue, with
 * EV_WRITE armed.  While a peer has queued bytes the source stops reading
 * (the owner does that), so memory stays bounded under backpressure.
 *
 * The receive buffer comes from the loop's free list when data arrives and
 * goes back when everything in it has been consumed, so an idle connection
 * holds no buffer.  Ordering: bytes reach the socket in conn_send() order,
 * whether they were written directly or queued.
 */
#ifndef PGFUNNEL_CONN_H
#define PGFUNNEL_CONN_H

#include <event2/event.h>
#include <event2/event_struct.h>

#include "types.h"

typedef struct conn_io {
    /* return bytes, 0 on EOF, -1 with errno (EAGAIN when it would block) */
    ssize_t (*read)(Conn *c, void *buf, size_t len);
    ssize_t (*write)(Conn *c, const void *buf, size_t len);
} ConnIo;

struct conn {
    int fd;
    Loop *loop;
    const ConnIo *io;      /* plain socket by default; TLS replaces it */
    void *io_ctx;          /* e.g. SSL*, owned by the owner of the Conn */
    struct event ev_read;  /* EV_READ|EV_PERSIST, added while `reading` */
    struct event ev_write; /* EV_WRITE|EV_PERSIST, added while out-queue is non-empty */
    bool events_set;
    bool reading;
    bool writing;
    bool corked;  /* conn_cork(): sends gather in the out-queue until conn_uncork() */
    bool closed;  /* fd closed */
    bool keep_fd; /* the fd belongs to libpq (servers): PQfinish closes it */
    /* receive buffer: bytes [rpos, rend) are unconsumed */
    uint8_t *rbuf;
    uint32_t rsize, rpos, rend;
    /* out-queue: bytes [opos, oend) wait for the socket */
    uint8_t *obuf;
    uint32_t ocap, opos, oend;
    bool obuf_pooled; /* obuf is a standard-size buffer of the loop's free list */
    uint64_t bytes_in, bytes_out;
    char addr[64]; /* peer address "ip:port" or "unix", for logs */
};

void conn_init(Conn *c, Loop *loop, int fd);
/* Register the read/write event callbacks (arg = owner). */
void conn_set_callbacks(Conn *c, event_callback_fn on_read, event_callback_fn on_write, void *arg);
/* Close the socket and drop buffers; events are removed.  Safe twice. */
void conn_close(Conn *c);
/*
 * Take the connection off its loop (events removed, the empty receive
 * buffer back to the loop's free list), to be registered with another
 * loop's base by conn_set_callbacks after c->loop changed (hand-over).
 */
void conn_detach(Conn *c);

void conn_want_read(Conn *c, bool on);
/* Arm EV_WRITE (the out-queue does this itself; TLS handshakes need it directly). */
void conn_want_write(Conn *c, bool on);

/* Bytes available to parse. */
static inline uint32_t conn_avail(const Conn *c)
{
    return c->rbuf ? c->rend - c->rpos : 0;
}
static inline uint8_t *conn_data(const Conn *c)
{
    return c->rbuf + c->rpos;
}
static inline void conn_consume(Conn *c, uint32_t n)
{
    c->rpos += n;
}

/*
 * Read what is available into the receive buffer (taking one from the free
 * list if needed).  Returns bytes read (>0), 0 at EOF, -1 on error, or
 * -2 when nothing was available (EAGAIN) or the buffer is full.
 */
int conn_fill(Conn *c) WUR;

/*
 * Make room so that `need` bytes starting at rpos fit in the buffer
 * (compacting, or growing it up to `max`).  Returns 0 or -1.
 */
int conn_reserve(Conn *c, uint32_t need, uint32_t max) WUR;

/* Give the receive buffer back when it is empty. */
void conn_release_buffer(Conn *c);

/* Send or queue bytes.  Returns 0, or -1 when the socket failed. */
int conn_send(Conn *c, const void *data, size_t len) WUR;
/*
 * Gather several sends into one write: while corked, conn_send() only
 * copies into the out-queue; conn_uncork() writes it all (arming EV_WRITE
 * for what the kernel does not take).  For a few small pieces that would
 * otherwise cost a syscall each.  Returns 0, or -1 when the socket failed.
 */
void conn_cork(Conn *c);
int conn_uncork(Conn *c) WUR;
/* Write queued bytes.  Returns 0 when drained, 1 when bytes remain, -1 on error. */
int conn_flush(Conn *c) WUR;
static inline bool conn_has_queue(const Conn *c)
{
    return c->oend > c->opos;
}
static inline uint32_t conn_queue_len(const Conn *c)
{
    return c->oend - c->opos;
}

/* Format the peer address (peer, or the socket's own when NULL) into c->addr. */
struct sockaddr;
void conn_describe_peer(Conn *c, const struct sockaddr *peer);

#endif
