/*
 * notify.c — the supervisor notification protocol (see notify.h), on
 * libsystemd's sd_notify().
 *
 * DESIGN
 * Whom to tell is a property of the process, not of a loop: NOTIFY_SOCKET
 * and WATCHDOG_USEC come from the environment systemd starts us with, so the
 * few facts about them live in one file-level struct, read once by
 * notify_init().  What is reported comes from the loop: one timer on it
 * (notify_start) fires every second, or every half watchdog interval when
 * that is shorter (sd_watchdog_enabled(3) asks for at least that often); it
 * pings the watchdog each time and refreshes STATUS at most once a second.
 * A timer on loop 0, not a thread, because the point of the watchdog is
 * to notice a loop that no longer turns.  With several loops each has to
 * prove it turns before the process pings: the timer freezes them all
 * (loops_freeze returns only when every loop reached the barrier), and a
 * loop stuck in a callback stops the pings, so systemd restarts us.
 *
 * sd_notify() sends one datagram on a fresh socket; systemd reads them at
 * once, so the send does not wait in practice.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <event2/event.h>
#include <systemd/sd-daemon.h>

#include "list.h"
#include "log.h"
#include "loop.h"
#include "loops.h"
#include "notify.h"
#include "pool.h"
#include "stats.h"
#include "workq.h"

#define STATUS_INTERVAL_USEC USEC_PER_SEC /* STATUS at most once a second */

/* Process-wide: what the environment says about the supervisor. */
static struct {
    bool enabled;           /* NOTIFY_SOCKET set, not retired */
    bool watchdog_from_env; /* WATCHDOG_USEC was for this pid */
    usec_t watchdog_usec;   /* 0 = no watchdog */
} sup;

/* Per loop (loop->notify): the timer and the numbers for the TPS figure. */
typedef struct notify_state {
    struct event *ev;
    uint64_t xacts;   /* transaction count at xacts_at */
    usec_t xacts_at;  /* 0 until the first sample */
    uint64_t tps;     /* over the last status interval */
    char status[160]; /* last STATUS sent */
} NotifyState;

void notify_init(void)
{
    uint64_t usec = 0;
    const char *s = getenv("NOTIFY_SOCKET");
    sup.enabled = s && *s;
    /* > 0 only when WATCHDOG_PID is unset or names this process */
    if (sup.enabled && sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
        sup.watchdog_usec = (usec_t)usec;
        sup.watchdog_from_env = true;
    }
}

bool notify_enabled(void)
{
    return sup.enabled;
}

usec_t notify_watchdog_usec(void)
{
    return sup.enabled ? sup.watchdog_usec : 0;
}

void notify_set_watchdog_usec(usec_t usec)
{
    if (!sup.watchdog_from_env && usec > 0) sup.watchdog_usec = usec;
}

static void notify_send(const char *msg)
{
    if (!sup.enabled) return;
    int r = sd_notify(0, msg);
    if (r < 0) log_debug("sd_notify: %s", strerror(-r));
}

/*
 * Sum of the transaction counters of every database of every loop (retired
 * pools included), under a freeze: it is also the proof that every loop turns.
 */
static uint64_t notify_xact_total(Loop *loop)
{
    uint64_t n = 0;
    loops_freeze(loop);
    for (int i = 0; i < loop->set->n; i++) {
        ListNode *it;
        list_for_each(it, &loop->set->loops[i]->databases)
        {
            PoolStats st;
            stats_db_totals(list_entry(it, Database, node), &st);
            n += st.xact_count;
        }
    }
    loops_thaw(loop);
    return n;
}

void notify_format_status(Loop *loop, char *buf, size_t len)
{
    NotifyState *ns = loop->notify;
    int clients = 0, servers = 0;
    for (int i = 0; i < loop->set->n; i++) {
        clients += atomic_load_explicit(&loop->set->loops[i]->client_count, memory_order_relaxed);
        servers += atomic_load_explicit(&loop->set->loops[i]->server_count, memory_order_relaxed);
    }
    snprintf(buf, len, "%s%d clients, %d servers, %llu tps",
             loop->shutdown != SHUTDOWN_NONE ? "draining: " : "", clients, servers,
             (unsigned long long)(ns ? ns->tps : 0));
}

/* Recompute the TPS figure when a status interval has passed; true if it did. */
static bool notify_sample(Loop *loop, NotifyState *ns, usec_t now)
{
    if (ns->xacts_at && now - ns->xacts_at < STATUS_INTERVAL_USEC) return false;
    uint64_t x = notify_xact_total(loop);
    if (ns->xacts_at) {
        /* a freed automatic database takes its counts along: never negative */
        uint64_t d = x > ns->xacts ? x - ns->xacts : 0;
        ns->tps = d * (uint64_t)USEC_PER_SEC / (uint64_t)(now - ns->xacts_at);
    }
    ns->xacts = x;
    ns->xacts_at = now;
    return true;
}

static void notify_on_timer(evutil_socket_t fd, short ev, void *arg)
{
    Loop *loop = arg;
    NotifyState *ns = loop->notify;
    char status[sizeof(ns->status)], msg[sizeof(status) + 32];
    (void)fd;
    (void)ev;
    if (!sup.enabled) return;
    size_t n = 0;
    msg[0] = '\0';
    /* every loop must turn before we ping: a freeze returns only when they do */
    if (sup.watchdog_usec > 0 && loop->set->n > 1) {
        loops_freeze(loop);
        loops_thaw(loop);
    }
    if (sup.watchdog_usec > 0) n += (size_t)snprintf(msg, sizeof(msg), "WATCHDOG=1\n");
    if (notify_sample(loop, ns, time_now_usec())) {
        notify_format_status(loop, status, sizeof(status));
        if (strcmp(status, ns->status) != 0) {
            snprintf(msg + n, sizeof(msg) - n, "STATUS=%s\n", status);
            memcpy(ns->status, status, sizeof(status));
        }
    }
    if (msg[0]) notify_send(msg);
}

int notify_start(Loop *loop)
{
    if (!sup.enabled) return 0;
    NotifyState *ns = calloc(1, sizeof(*ns));
    if (!ns) return -1;
    ns->ev = event_new(loop->base, -1, EV_PERSIST, notify_on_timer, loop);
    if (!ns->ev) {
        free(ns);
        return -1;
    }
    usec_t every = STATUS_INTERVAL_USEC;
    if (sup.watchdog_usec > 0 && sup.watchdog_usec / 2 < every) every = sup.watchdog_usec / 2;
    struct timeval tv = {(time_t)(every / USEC_PER_SEC), (suseconds_t)(every % USEC_PER_SEC)};
    event_add(ns->ev, &tv);
    loop->notify = ns;
    notify_sample(loop, ns, time_now_usec());
    if (sup.watchdog_usec > 0)
        log_info("systemd watchdog: pinging every %lld ms", (long long)(every / 1000));
    return 0;
}

void notify_stop(Loop *loop)
{
    NotifyState *ns = loop->notify;
    if (!ns) return;
    event_free(ns->ev);
    free(ns);
    loop->notify = NULL;
}

void notify_ready(Loop *loop)
{
    char status[160], msg[256];
    if (!sup.enabled) return;
    notify_format_status(loop, status, sizeof(status));
    snprintf(msg, sizeof(msg), "READY=1\nMAINPID=%d\nSTATUS=%s", (int)getpid(), status);
    notify_send(msg);
    if (loop->notify) memcpy(loop->notify->status, status, sizeof(status));
}

void notify_reloading(void)
{
    char msg[64];
    if (!sup.enabled) return;
    /* MONOTONIC_USEC lets a Type=notify-reload supervisor match this to its request */
    snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%lld", (long long)time_now_usec());
    notify_send(msg);
}

void notify_stopping(Loop *loop)
{
    char status[160], msg[256];
    /* every loop begins its shutdown; the process says so once */
    if (!sup.enabled || loop->index != 0) return;
    notify_format_status(loop, status, sizeof(status));
    snprintf(msg, sizeof(msg), "STOPPING=1\nSTATUS=%s", status);
    notify_send(msg);
    if (loop->notify) memcpy(loop->notify->status, status, sizeof(status));
}

void notify_retire(void)
{
    sup.enabled = false;
}
