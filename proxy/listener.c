/*
 * listener.c — TCP and unix listening sockets (see listener.h).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <event2/listener.h>

#include "client.h"
#include "config.h"
#include "handover.h"
#include "listener.h"
#include "log.h"
#include "loops.h"
#include "loop.h"

static void listener_on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                               int socklen, void *arg)
{
    Listener *l = arg;
    (void)evl;
    /* loop 0 accepts; the clients are dealt out to every loop in turn */
    loops_deal_client(l->loop, fd, l->unix_socket, sa, socklen);
}

static void listener_on_resume(evutil_socket_t fd, short ev, void *arg)
{
    Loop *loop = arg;
    (void)fd;
    (void)ev;
    loop->paused_accept = false;
    if (loop->shutdown == SHUTDOWN_NONE) listener_pause_all(loop, false);
}

static void listener_on_error(struct evconnlistener *evl, void *arg)
{
    Listener *l = arg;
    Loop *loop = l->loop;
    int err = EVUTIL_SOCKET_ERROR();
    (void)evl;
    loop->stats.accept_errors++;
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        /* out of descriptors: back off instead of spinning on a ready socket */
        if (!loop->paused_accept) {
            log_warning("accept() failed on %s: %s; pausing accept for 1 s", l->name,
                        strerror(err));
            loop->paused_accept = true;
            listener_pause_all(loop, true);
            if (!loop->ev_accept_resume)
                loop->ev_accept_resume = evtimer_new(loop->base, listener_on_resume, loop);
            struct timeval tv = {1, 0};
            if (loop->ev_accept_resume) evtimer_add(loop->ev_accept_resume, &tv);
        }
        return;
    }
    log_warning("accept() failed on %s: %s", l->name, strerror(err));
}

static Listener *listener_add(Loop *loop, int fd, bool unix_socket, const char *name)
{
    Listener *l = calloc(1, sizeof(*l));
    if (!l) return NULL;
    l->loop = loop;
    l->unix_socket = unix_socket;
    snprintf(l->name, sizeof(l->name), "%s", name);
    l->evl = evconnlistener_new(loop->base, listener_on_accept, l,
                                LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (!l->evl) {
        free(l);
        return NULL;
    }
    evconnlistener_set_error_cb(l->evl, listener_on_error);
    list_append(&loop->listeners, &l->node);
    return l;
}

/* Remember which socket file is ours: only that one is removed at close. */
static int listener_set_path(Listener *l, const char *path)
{
    struct stat st;
    if (!(l->path = strdup(path))) return -1;
    if (stat(path, &st) == 0) {
        l->path_dev = st.st_dev;
        l->path_ino = st.st_ino;
    }
    return 0;
}

/*
 * A socket taken over from the predecessor (--takeover): already bound and
 * listening, shared with it until it has drained.  listen() again only
 * applies this configuration's backlog.
 */
static int listener_adopt(Loop *loop, int fd, const char *path, const char *name, char *err,
                          size_t errlen)
{
    if (listen(fd, loop->cfg->listen_backlog) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", name, strerror(errno));
        close(fd);
        return -1;
    }
    Listener *l = listener_add(loop, fd, path != NULL, name);
    if (!l || (path && listener_set_path(l, path) < 0)) {
        snprintf(err, errlen, "cannot listen on %s: out of memory", name);
        if (!l) close(fd);
        return -1;
    }
    l->adopted = true;
    log_info("listening on %s%s (taken over)", path ? "unix:" : "", name);
    return 0;
}

static int listener_open_tcp(Loop *loop, Handover *inherit, const char *host, char *err,
                             size_t errlen)
{
    Config *cfg = loop->cfg;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[16];
    snprintf(port, sizeof(port), "%d", cfg->listen_port);
    const char *node = strcmp(host, "*") == 0 ? NULL : host;
    int rc = getaddrinfo(node, port, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve listen_addr \"%s\": %s", host, gai_strerror(rc));
        return -1;
    }
    int opened = 0;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        char name[128], hbuf[64] = "?";
        getnameinfo(ai->ai_addr, ai->ai_addrlen, hbuf, sizeof(hbuf), NULL, 0, NI_NUMERICHOST);
        snprintf(name, sizeof(name), "%s%s%s:%d", ai->ai_family == AF_INET6 ? "[" : "", hbuf,
                 ai->ai_family == AF_INET6 ? "]" : "", cfg->listen_port);
        int fd = handover_take(inherit, ai->ai_addr, ai->ai_addrlen);
        if (fd >= 0) {
            if (listener_adopt(loop, fd, NULL, name, err, errlen) < 0) {
                freeaddrinfo(res);
                return -1;
            }
            opened++;
            continue;
        }
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) continue;
        int on = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
        if (cfg->so_reuseport) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
        if (ai->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on));
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, cfg->listen_backlog) < 0) {
            int e = errno;
            close(fd);
            /* "*" on a host without IPv6 still works on IPv4 */
            if (node == NULL && e == EADDRNOTAVAIL) continue;
            snprintf(err, errlen, "cannot listen on %s: %s", name, strerror(e));
            freeaddrinfo(res);
            return -1;
        }
        if (!listener_add(loop, fd, false, name)) {
            close(fd);
            snprintf(err, errlen, "cannot listen on %s: out of memory", name);
            freeaddrinfo(res);
            return -1;
        }
        log_info("listening on %s", name);
        opened++;
    }
    freeaddrinfo(res);
    if (!opened) {
        snprintf(err, errlen, "cannot listen on %s:%d", host, cfg->listen_port);
        return -1;
    }
    return 0;
}

static int listener_open_unix(Loop *loop, Handover *inherit, char *err, size_t errlen)
{
    Config *cfg = loop->cfg;
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    int n = snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%d", cfg->unix_socket_dir,
                     cfg->listen_port);
    if (n < 0 || (size_t)n >= sizeof(sun.sun_path)) {
        snprintf(err, errlen, "unix_socket_dir path too long: %s", cfg->unix_socket_dir);
        return -1;
    }
    int fd = handover_take(inherit, (struct sockaddr *)&sun, sizeof(sun));
    if (fd >= 0) return listener_adopt(loop, fd, sun.sun_path, sun.sun_path, err, errlen);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "socket(): %s", strerror(errno));
        return -1;
    }
    /* a stale socket file from a crashed run is removed; a live one is an error */
    if (access(sun.sun_path, F_OK) == 0) {
        int probe = socket(AF_UNIX, SOCK_STREAM, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sun, sizeof(sun)) == 0) {
            close(probe);
            close(fd);
            snprintf(err, errlen, "cannot listen on %s: another process is listening there",
                     sun.sun_path);
            return -1;
        }
        if (probe >= 0) close(probe);
        unlink(sun.sun_path);
    }
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0 || listen(fd, cfg->listen_backlog) < 0) {
        snprintf(err, errlen, "cannot listen on %s: %s", sun.sun_path, strerror(errno));
        close(fd);
        return -1;
    }
    chmod(sun.sun_path, (mode_t)cfg->unix_socket_mode);
    if (cfg->unix_socket_group && *cfg->unix_socket_group) {
        struct group *g = getgrnam(cfg->unix_socket_group);
        if (g && chown(sun.sun_path, (uid_t)-1, g->gr_gid) < 0)
            log_warning("chown %s: %s", sun.sun_path, strerror(errno));
    }
    Listener *l = listener_add(loop, fd, true, sun.sun_path);
    if (!l || listener_set_path(l, sun.sun_path) < 0) {
        snprintf(err, errlen, "cannot listen on %s: out of memory", sun.sun_path);
        if (!l) close(fd);
        return -1;
    }
    log_info("listening on unix:%s", sun.sun_path);
    return 0;
}

int listener_open_all(Loop *loop, Handover *inherit, char *err, size_t errlen)
{
    Config *cfg = loop->cfg;
    if (cfg->listen_addr && *cfg->listen_addr) {
        char *list = strdup(cfg->listen_addr), *save = NULL;
        if (!list) return -1;
        for (char *tok = strtok_r(list, ", \t", &save); tok; tok = strtok_r(NULL, ", \t", &save)) {
            if (listener_open_tcp(loop, inherit, tok, err, errlen) < 0) {
                free(list);
                return -1;
            }
        }
        free(list);
    }
    if (cfg->unix_socket_dir && *cfg->unix_socket_dir &&
        listener_open_unix(loop, inherit, err, errlen) < 0)
        return -1;
    if (list_empty(&loop->listeners)) {
        snprintf(err, errlen, "nothing to listen on: set listen_addr or unix_socket_dir");
        return -1;
    }
    return 0;
}

void listener_pause_all(Loop *loop, bool pause)
{
    ListNode *it;
    list_for_each(it, &loop->listeners)
    {
        Listener *l = list_entry(it, Listener, node);
        if (pause)
            evconnlistener_disable(l->evl);
        else
            evconnlistener_enable(l->evl);
    }
}

void listener_takeover_done(Loop *loop)
{
    ListNode *it;
    list_for_each(it, &loop->listeners)
    {
        list_entry(it, Listener, node)->adopted = false;
    }
}

/*
 * The socket file is ours to remove unless a successor serves it now (it
 * holds the same socket, so the file is the same), we took it over but
 * failed to start (the predecessor still serves it), or it is not the file
 * we bound any more (somebody replaced it).
 */
static bool listener_path_ours(const Listener *l)
{
    struct stat st;
    if (l->adopted || handover_sockets_shared(l->loop)) return false;
    return stat(l->path, &st) == 0 && st.st_dev == l->path_dev && st.st_ino == l->path_ino;
}

void listener_close_all(Loop *loop)
{
    while (!list_empty(&loop->listeners)) {
        Listener *l = list_entry(list_first(&loop->listeners), Listener, node);
        list_remove(&loop->listeners, &l->node);
        evconnlistener_free(l->evl);
        if (l->path && listener_path_ours(l)) unlink(l->path);
        free(l->path);
        free(l);
    }
    if (loop->ev_accept_resume) {
        event_free(loop->ev_accept_resume);
        loop->ev_accept_resume = NULL;
    }
}
