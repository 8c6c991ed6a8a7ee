/*
 * pool_control.h — operator control of pools: PAUSE/RESUME, DISABLE/ENABLE,
 * RECONNECT, KILL, KILL_CLIENT, WAIT_CLOSE and SHUTDOWN.
 *
 * The admin console (admin.c) and the signal handlers (main.c: SIGUSR1 =
 * pause all, SIGUSR2 = resume all) call these; they act on the Database and
 * Pool objects of pool.h without changing how pool.c hands out servers:
 *   paused    pool.c already keeps servers from waiting clients while
 *             db->paused; here idle servers of a paused database are closed
 *             (now and, on a 50 ms tick, as they are released), so the
 *             backend can be restarted, as PgBouncer does.
 *   reconnect bumps db->generation: pool.c closes servers of an older
 *             generation when they are released, idle ones are closed now.
 * Commands that must wait (PAUSE until the servers are released, WAIT_CLOSE
 * until old servers are gone) register a waiter by client id; the tick
 * calls its done() once the condition holds, or drops it when the console
 * client has gone away.
 *
 * db == NULL means every database.  Functions return 0, or -1 with a
 * console-presentable message in err.
 */
#ifndef PGFUNNEL_POOL_CONTROL_H
#define PGFUNNEL_POOL_CONTROL_H

#include "loop.h"
#include "types.h"

typedef enum {
    CONTROL_WAIT_PAUSE = 0, /* all servers of the database(s) released */
    CONTROL_WAIT_CLOSE,     /* no server of an older generation left */
} ControlWaitKind;

/* Console callback when a wait is over: tag is the CommandComplete tag. */
typedef void (*control_done_fn)(Loop *loop, uint32_t client_id, const char *tag);

int pool_control_start(Loop *loop) WUR;
void pool_control_stop(Loop *loop);

int pool_control_pause(Loop *loop, const char *db, char *err, size_t errlen) WUR;
int pool_control_resume(Loop *loop, const char *db, char *err, size_t errlen) WUR;
int pool_control_set_disabled(Loop *loop, const char *db, bool disabled, char *err,
                              size_t errlen) WUR;
int pool_control_reconnect(Loop *loop, const char *db, char *err, size_t errlen) WUR;
int pool_control_kill(Loop *loop, const char *db, char *err, size_t errlen) WUR;
int pool_control_kill_client(Loop *loop, uint32_t id, char *err, size_t errlen) WUR;
/* WAIT_CLOSE: validates db (and marks nothing); the wait itself is pool_control_wait. */
int pool_control_check_db(Loop *loop, const char *db, char *err, size_t errlen) WUR;
/* SHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]: as the signals do. */
void pool_control_shutdown(Loop *loop, ShutdownMode mode);

/* Is the condition of a wait already true? */
bool pool_control_wait_done(Loop *loop, ControlWaitKind kind, const char *db);
/* Wait for the condition; done() runs on a later tick.  0 or -1 (no memory). */
int pool_control_wait(Loop *loop, uint32_t client_id, ControlWaitKind kind, const char *db,
                      control_done_fn done) WUR;
/* The console must not read further queries of a client that waits. */
bool pool_control_is_waiting(Loop *loop, uint32_t client_id);

/* For SHOW STATE / metrics: paused as a whole (PAUSE without a database). */
bool pool_control_paused_all(Loop *loop);

#endif
