/*
 * handover.h — zero-downtime upgrade: a new pgfunnel started with
 * --takeover receives the listening sockets of the running one, which then
 * drains (stops accepting, finishes its clients) and exits.
 *
 * Predecessor side (every running pgfunnel): handover_serve() offers its
 * sockets on a control socket; the Loop owns that state (loop->handover).
 * Successor side: handover_fetch() before the listeners are opened,
 * handover_take() for each address (listener.c), handover_commit() once the
 * successor is ready, or handover_abort() if it fails to start.
 */
#ifndef PGFUNNEL_HANDOVER_H
#define PGFUNNEL_HANDOVER_H

#include <sys/socket.h>
#include <sys/types.h>

#include "types.h"

/* Successor side: the sockets received from the predecessor (owned by main.c). */
typedef struct handover Handover;

/*
 * Ask the pgfunnel running with this configuration's port and unix socket
 * directory for its sockets.  It must run as our user, root, or user (the
 * one we switch to, or NULL).  *out = NULL and 0 when none is running; -1
 * with err filled when one answered but the exchange failed.
 */
int handover_fetch(const Config *cfg, const char *user, Handover **out, char *err,
                   size_t errlen) WUR;

/* An inherited listening socket bound to addr (TCP or unix), or -1; the caller owns it. */
int handover_take(Handover *h, const struct sockaddr *addr, socklen_t len);

pid_t handover_predecessor(const Handover *h);

/* Tell the predecessor to drain, close what was not taken, free h (NULL is fine). */
void handover_commit(Handover *h);
/* Start-up failed: the predecessor carries on; close and free h (NULL is fine). */
void handover_abort(Handover *h);

/*
 * Predecessor side: listen on the control socket (inherited through h when
 * this process is itself a successor).  A failure is logged, not fatal:
 * only a later --takeover needs it.
 */
void handover_serve(Loop *loop, Handover *h);
void handover_stop(Loop *loop);

/*
 * True while a successor holds copies of our listening sockets: closing ours
 * then must not remove the unix socket file, which the successor serves.
 */
bool handover_sockets_shared(const Loop *loop);

#endif
