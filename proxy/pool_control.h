/*
 * pool_control.h — operator control of pools: PAUSE/RESUME, DISABLE/ENABLE,
 * RECONNECT, KILL, KILL_CLIENT, WAIT_CLOSE and SHUTDOWN, over every loop.
 *
 * The admin console (admin.c) and the signal handlers (main.c: SIGUSR1 =
 * pause all, SIGUSR2 = resume all) call these; they act on the Database and
 * Pool objects of pool.h without changing how pool.c hands out servers:
 *   paused    pool.c already keeps servers from waiting clients while
 *             db->paused; here idle servers of a paused database are closed
 *             (now and, on a 50 ms tick, as they are released), so the
 *             backend can be restarted, as PgBouncer does.
 *   reconnect bumps the database's generation: pool.c closes servers of an
 *             older generation when they are released, idle ones now.
 *
 * A command is checked on the loop it was given on (so errors come at
 * once), then applied by every loop to its own objects (loops_broadcast);
 * the console gets its answer when the last loop has applied it.  PAUSE
 * then waits until every loop's servers are released, WAIT_CLOSE until no
 * server of an older generation is left: the waiting console's loop checks
 * that on a tick, reading the other loops while they are frozen.
 *
 * db == NULL means every database.  Functions return 0 (the answer comes
 * through done(), once) or -1 with a console-presentable message in err.
 */
#ifndef PGFUNNEL_POOL_CONTROL_H
#define PGFUNNEL_POOL_CONTROL_H

#include "loop.h"
#include "types.h"

typedef enum {
    CONTROL_PAUSE = 0,
    CONTROL_RESUME,
    CONTROL_DISABLE,
    CONTROL_ENABLE,
    CONTROL_RECONNECT,
    CONTROL_KILL,
    CONTROL_WAIT_CLOSE, /* nothing to apply: only the wait */
} ControlOp;

/* The answer for the console client: tag on success, else error (a message). */
typedef void (*control_done_fn)(Loop *loop, uint32_t client_id, const char *tag, const char *error);

int pool_control_start(Loop *loop) WUR;
void pool_control_stop(Loop *loop);

/*
 * Run a command for console client client_id of `loop` (0 and done NULL:
 * from a signal, nobody to answer).  PAUSE answers once the servers are
 * released, WAIT_CLOSE once old servers are gone, the others once every
 * loop has applied them.
 */
int pool_control_command(Loop *loop, ControlOp op, const char *db, uint32_t client_id,
                         control_done_fn done, char *err, size_t errlen) WUR;
/* KILL_CLIENT id: on the client's loop; the answer comes through done. */
int pool_control_kill_client(Loop *loop, uint32_t id, uint32_t client_id, control_done_fn done,
                             char *err, size_t errlen) WUR;
/* SHUTDOWN [WAIT_FOR_SERVERS|WAIT_FOR_CLIENTS]: as the signals do (every loop). */
void pool_control_shutdown(Loop *loop, ShutdownMode mode);

/* For SHOW STATE / metrics: paused as a whole (PAUSE without a database). */
bool pool_control_paused_all(Loop *loop);

#endif
