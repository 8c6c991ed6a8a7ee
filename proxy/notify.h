/*
 * notify.h — telling a supervisor (systemd, Type=notify) how the process is
 * doing: READY once the listeners are open, RELOADING/READY around a reload,
 * STOPPING at shutdown, a one-line STATUS and WATCHDOG pings (sd_notify(3)).
 *
 * Without NOTIFY_SOCKET in the environment every function returns at once
 * and nothing else changes.  The watchdog pings and the STATUS line come from
 * a timer on the event loop (notify_start), never from another thread, so a
 * loop that stops turning stops the pings and systemd restarts the service
 * after WatchdogSec=.
 */
#ifndef PGFUNNEL_NOTIFY_H
#define PGFUNNEL_NOTIFY_H

#include "types.h"

/*
 * Read NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID.  Call it after
 * daemonizing: the watchdog belongs to one pid.
 */
void notify_init(void);
bool notify_enabled(void);

/* The watchdog interval in usec; 0 = no watchdog. */
usec_t notify_watchdog_usec(void);
/*
 * A successor started by the service's reload command does not get
 * WATCHDOG_USEC from systemd (only the main process does): it takes over its
 * predecessor's interval (handover.c).  Ignored when the environment set one.
 */
void notify_set_watchdog_usec(usec_t usec);

/* Start / stop the loop timer that pings the watchdog and refreshes STATUS. */
int notify_start(Loop *loop) WUR;
void notify_stop(Loop *loop);

/* READY=1 with MAINPID (a successor becomes the service's main process) and STATUS. */
void notify_ready(Loop *loop);
/* RELOADING=1 (with MONOTONIC_USEC) before a configuration reload; READY follows. */
void notify_reloading(void);
/* STOPPING=1 with STATUS, once a shutdown begins. */
void notify_stopping(Loop *loop);
/*
 * The process handed its sockets to a successor that is now the main
 * process: from here on it says nothing, so that its STOPPING does not stop
 * the service and its pings do not hide a stuck successor.
 */
void notify_retire(void);

/* The STATUS text: "[draining: ]N clients, N servers, N tps" (for tests and logs). */
void notify_format_status(Loop *loop, char *buf, size_t len);

#endif
