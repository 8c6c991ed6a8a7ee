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

#include <sys/types.h>

#include "handover.h"
#include "list.h"
#include "types.h"

struct listener {
    ListNode node; /* loop->listeners */
    Loop *loop;
    struct evconnlistener *evl;
    bool unix_socket;
    char *path;     /* unix socket path, removed at close if it is still ours */
    bool adopted;   /* taken over from a predecessor: its file is not ours until committed */
    dev_t path_dev; /* the socket file we bound (or took over), to tell it from a newer one */
    ino_t path_ino;
    char name[128]; /* for messages */
};

/*
 * Open every configured listener; on failure err says which address and why.
 * With inherit (--takeover, handover.h) an address the predecessor listens on
 * uses its socket instead of a new one.
 */
int listener_open_all(Loop *loop, Handover *inherit, char *err, size_t errlen) WUR;
/* The takeover is committed: the adopted sockets' files are ours to remove at exit. */
void listener_takeover_done(Loop *loop);
/* Stop accepting (shutdown) without closing (sockets stay bound). */
void listener_pause_all(Loop *loop, bool pause);
void listener_close_all(Loop *loop);

#endif
