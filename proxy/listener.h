/*
 * listener.h — listening sockets: TCP on listen_addr:listen_port and the
 * unix socket <unix_socket_dir>/.s.PGSQL.<port>.
 *
 * Accepted sockets become clients (client_accept).  When accept fails for
 * lack of descriptors the listeners pause for a second instead of spinning,
 * and existing clients keep working.  The Loop owns its listeners.
 */
#ifndef PGFUNNEL_LISTENER_H
#define PGFUNNEL_LISTENER_H

#include "list.h"
#include "types.h"

struct listener {
    ListNode node; /* loop->listeners */
    Loop *loop;
    struct evconnlistener *evl;
    bool unix_socket;
    char *path;     /* unix socket path, removed at close */
    char name[128]; /* for messages */
};

/* Open every configured listener; on failure err says which address and why. */
int listener_open_all(Loop *loop, char *err, size_t errlen) WUR;
/* Stop accepting (shutdown) without closing (sockets stay bound). */
void listener_pause_all(Loop *loop, bool pause);
void listener_close_all(Loop *loop);

#endif
