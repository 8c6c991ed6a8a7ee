/*
 * pool_control.c — PAUSE/RESUME/RECONNECT/KILL/… over every loop (see pool_control.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "admin.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "loops.h"
#include "pool.h"
#include "pool_control.h"
#include "server.h"

#define CONTROL_TICK_USEC 50000

/* A console client waiting for its command's condition (PAUSE, WAIT_CLOSE) or broadcast. */
typedef struct control_waiter {
    struct control_waiter *next;
    uint32_t client_id;
    ControlOp op;
    bool broadcast_done; /* every loop has applied the command */
    char *db;            /* NULL: every database */
    control_done_fn done;
} ControlWaiter;

/* Owned by the Loop (loop->control). */
typedef struct pool_control {
    struct event *ev_tick;
    ControlWaiter *waiters;
    bool paused_all; /* PAUSE / SIGUSR1 without a database: also pauses new databases */
} PoolControl;

static PoolControl *ctl(Loop *loop)
{
    return loop->control;
}

static const char *const op_tags[] = {
    "PAUSE", "RESUME", "DISABLE", "ENABLE", "RECONNECT", "KILL", "WAIT_CLOSE",
};

/* Look a database up (creating a configured but unused one, as PgBouncer does). */
static Database *control_db(Loop *loop, const char *name, char *err, size_t errlen)
{
    if (admin_is_console_db(name)) {
        snprintf(err, errlen, "cannot do that to the admin database: %s", name);
        return NULL;
    }
    Database *db = pool_database_get(loop, name, true);
    if (!db) snprintf(err, errlen, "no such database: %s", name);
    return db;
}

static void close_server_list(List *l, const char *why)
{
    while (!list_empty(l))
        server_close(list_entry(list_first(l), Server, pool_node), "%s", why);
}

static void close_idle(Database *db, const char *why)
{
    ListNode *it;
    list_for_each(it, &db->pools) close_server_list(&list_entry(it, Pool, db_node)->idle, why);
}

/* Servers that still run a client's work (or a pooler query about to finish). */
static int db_busy_servers(const Database *db)
{
    ListNode *pit, *sit;
    int n = 0;
    list_for_each(pit, &db->pools)
    {
        Pool *p = list_entry(pit, Pool, db_node);
        n += p->active.count;
        list_for_each(sit, &p->connecting)
        {
            if (list_entry(sit, Server, pool_node)->state == SERVER_INTERNAL) n++;
        }
    }
    return n;
}

static int db_old_servers(const Database *db)
{
    ListNode *pit, *sit;
    int n = 0;
    list_for_each(pit, &db->pools)
    {
        Pool *p = list_entry(pit, Pool, db_node);
        int gen = pool_generation(p);
        List *lists[] = {&p->connecting, &p->idle, &p->active};
        for (int i = 0; i < 3; i++)
            list_for_each(sit, lists[i])
            {
                if (list_entry(sit, Server, pool_node)->generation != gen) n++;
            }
    }
    return n;
}

static void db_wake(Database *db)
{
    ListNode *it, *tmp;
    list_for_each_safe(it, tmp, &db->pools)
        pool_request_server(list_entry(it, Pool, db_node), NULL);
}

static void close_client_list(List *l, const char *why)
{
    while (!list_empty(l))
        client_close(list_entry(list_first(l), Client, pool_node), "57P01", "%s", why);
}

static void kill_db(Database *db)
{
    ListNode *it;
    db->paused = true;
    list_for_each(it, &db->pools)
    {
        Pool *p = list_entry(it, Pool, db_node);
        close_client_list(&p->active_clients, "database killed by admin (KILL)");
        close_client_list(&p->waiting, "database killed by admin (KILL)");
        close_client_list(&p->idle_clients, "database killed by admin (KILL)");
        close_client_list(&p->login_wait, "database killed by admin (KILL)");
        close_server_list(&p->active, "KILL");
        close_server_list(&p->idle, "KILL");
        close_server_list(&p->connecting, "KILL");
    }
}

static void reconnect_db(Database *db)
{
    ListNode *it, *tmp;
    pool_database_bump_generation(db);
    close_idle(db, "RECONNECT");
    /* a cached login failure is forgotten: waiting clients get a new attempt now */
    list_for_each_safe(it, tmp, &db->pools)
        pool_forget_login_failure(list_entry(it, Pool, db_node));
}

/* ---- applying a command on one loop ---- */

typedef struct control_cmd {
    ControlOp op;
    char *db; /* NULL: every database */
    uint32_t client_id;
    control_done_fn done;
} ControlCmd;

/* What one loop does with its own objects. */
static void control_apply(Loop *loop, void *arg)
{
    ControlCmd *cmd = arg;
    PoolControl *pc = ctl(loop);
    ListNode *it, *tmp;
    char err[256];
    Database *one = cmd->db ? control_db(loop, cmd->db, err, sizeof(err)) : NULL;
    if (cmd->db && !one) return; /* a reload in between removed it */
    switch (cmd->op) {
    case CONTROL_PAUSE:
        if (!one && pc) pc->paused_all = true;
        list_for_each(it, &loop->databases)
        {
            Database *db = list_entry(it, Database, node);
            if (one && db != one) continue;
            db->paused = true;
            close_idle(db, "pause mode");
        }
        break;
    case CONTROL_RESUME:
        if (!one && pc) pc->paused_all = false;
        list_for_each_safe(it, tmp, &loop->databases)
        {
            Database *db = list_entry(it, Database, node);
            if (one && db != one) continue;
            db->paused = false;
            db_wake(db);
        }
        break;
    case CONTROL_DISABLE:
    case CONTROL_ENABLE:
        if (one) one->disabled = cmd->op == CONTROL_DISABLE;
        break;
    case CONTROL_RECONNECT:
        list_for_each(it, &loop->databases)
        {
            Database *db = list_entry(it, Database, node);
            if (!one || db == one) reconnect_db(db);
        }
        break;
    case CONTROL_KILL:
        if (!one && pc) pc->paused_all = true;
        list_for_each(it, &loop->databases)
        {
            Database *db = list_entry(it, Database, node);
            if (!one || db == one) kill_db(db);
        }
        break;
    case CONTROL_WAIT_CLOSE:
        break;
    }
}

static void control_waiter_free(ControlWaiter *w)
{
    free(w->db);
    free(w);
}

/* Every loop has applied the command: answer, or start the wait for its condition. */
static void control_applied(Loop *loop, void *arg)
{
    ControlCmd *cmd = arg;
    PoolControl *pc = ctl(loop);
    for (ControlWaiter **pp = pc && cmd->client_id ? &pc->waiters : NULL; pp && *pp;
         pp = &(*pp)->next) {
        ControlWaiter *w = *pp;
        if (w->client_id != cmd->client_id) continue;
        w->broadcast_done = true;
        if (w->op != CONTROL_PAUSE && w->op != CONTROL_WAIT_CLOSE) {
            /* nothing more to wait for: answer now */
            *pp = w->next;
            if (w->done) w->done(loop, w->client_id, op_tags[w->op], NULL);
            control_waiter_free(w);
        }
        break;
    }
    free(cmd->db);
    free(cmd);
}

/* ---- checks on the loop the command was given on ---- */

static int control_check(Loop *loop, ControlOp op, const char *name, char *err, size_t errlen)
{
    PoolControl *pc = ctl(loop);
    Database *db = NULL;
    ListNode *it;
    if (name && !(db = control_db(loop, name, err, errlen))) return -1;
    switch (op) {
    case CONTROL_PAUSE:
        if (pc->paused_all) {
            snprintf(err, errlen, "already paused");
            return -1;
        }
        break;
    case CONTROL_RESUME: {
        if (loop->shutdown != SHUTDOWN_NONE) {
            snprintf(err, errlen, "pooler is shutting down");
            return -1;
        }
        bool any = pc->paused_all;
        list_for_each(it, &loop->databases) any |= list_entry(it, Database, node)->paused;
        if (!db && !any) {
            snprintf(err, errlen, "pooler is not paused");
            return -1;
        }
        if (db && !db->paused) {
            snprintf(err, errlen, "database %s is not paused", name);
            return -1;
        }
        if (db && pc->paused_all) {
            snprintf(err, errlen, "the whole pooler is paused: use RESUME without a database");
            return -1;
        }
        break;
    }
    case CONTROL_DISABLE:
    case CONTROL_ENABLE:
        if (!db) {
            snprintf(err, errlen, "a database is required");
            return -1;
        }
        break;
    default:
        break;
    }
    return 0;
}

int pool_control_command(Loop *loop, ControlOp op, const char *name, uint32_t client_id,
                         control_done_fn done, char *err, size_t errlen)
{
    PoolControl *pc = ctl(loop);
    if (control_check(loop, op, name, err, errlen) < 0) return -1;
    log_info("%s%s%s%s command issued", op_tags[op], name ? " '" : "", name ? name : "",
             name ? "'" : "");
    ControlCmd *cmd = calloc(1, sizeof(*cmd));
    ControlWaiter *w = client_id ? calloc(1, sizeof(*w)) : NULL;
    if (!cmd || (client_id && !w) || (name && !(cmd->db = strdup(name))) ||
        (w && name && !(w->db = strdup(name)))) {
        if (cmd) free(cmd->db);
        free(cmd);
        if (w) control_waiter_free(w);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    cmd->op = op;
    cmd->client_id = client_id;
    cmd->done = done;
    if (w) {
        w->client_id = client_id;
        w->op = op;
        w->done = done;
        w->next = pc->waiters;
        pc->waiters = w;
    }
    if (loops_broadcast(loop, control_apply, cmd, control_applied) < 0) {
        if (w) {
            pc->waiters = w->next;
            control_waiter_free(w);
        }
        free(cmd->db);
        free(cmd);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

/* ---- KILL_CLIENT: on the client's own loop ---- */

typedef struct kill_msg {
    Loop *origin;
    uint32_t id, client_id;
    control_done_fn done;
    bool found;
} KillMsg;

static void kill_answer(Loop *loop, void *arg)
{
    KillMsg *k = arg;
    k->done(loop, k->client_id, "KILL_CLIENT", k->found ? NULL : "client not found");
    free(k);
}

static void kill_on_loop(Loop *loop, void *arg)
{
    KillMsg *k = arg;
    Client *c = loop_client_find(loop, k->id);
    k->found = c && c->state != CLIENT_CLOSING;
    if (k->found) {
        log_info("KILL_CLIENT %u command issued", k->id);
        client_close(c, "57P01", "admin forced disconnect");
    }
    if (loop_post(k->origin, kill_answer, k) < 0) free(k);
}

int pool_control_kill_client(Loop *loop, uint32_t id, uint32_t client_id, control_done_fn done,
                             char *err, size_t errlen)
{
    Loop *target = loops_of_client_id(loop->set, id);
    if (!target) {
        snprintf(err, errlen, "client not found");
        return -1;
    }
    KillMsg *k = calloc(1, sizeof(*k));
    if (!k) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    k->origin = loop;
    k->id = id;
    k->client_id = client_id;
    k->done = done;
    if (loop_post(target, kill_on_loop, k) < 0) {
        free(k);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

void pool_control_shutdown(Loop *loop, ShutdownMode mode)
{
    loops_begin_shutdown(loop, mode);
}

bool pool_control_paused_all(Loop *loop)
{
    return ctl(loop) && ctl(loop)->paused_all;
}

/* ---- waits ---- */

/* Is the command's condition true on every loop?  The others are frozen. */
static bool control_condition(Loop *loop, const ControlWaiter *w)
{
    ListNode *it;
    if (w->op != CONTROL_PAUSE && w->op != CONTROL_WAIT_CLOSE) return true;
    for (int i = 0; i < loop->set->n; i++)
        list_for_each(it, &loop->set->loops[i]->databases)
        {
            Database *db = list_entry(it, Database, node);
            if (w->db && strcmp(db->name, w->db) != 0) continue;
            if (w->op == CONTROL_PAUSE ? db_busy_servers(db) > 0 : db_old_servers(db) > 0)
                return false;
        }
    return true;
}

static void control_on_tick(evutil_socket_t fd, short ev, void *arg)
{
    Loop *loop = arg;
    PoolControl *pc = ctl(loop);
    ListNode *it;
    (void)fd;
    (void)ev;
    /* paused databases give their released servers back to PostgreSQL */
    list_for_each(it, &loop->databases)
    {
        Database *db = list_entry(it, Database, node);
        if (pc->paused_all) db->paused = true;
        if (db->paused) close_idle(db, "pause mode");
    }
    if (!pc->waiters) return;
    /* waits: unlink the finished ones first, done() may add new waiters */
    bool frozen = false;
    ControlWaiter **pp = &pc->waiters, *ready = NULL;
    while (*pp) {
        ControlWaiter *w = *pp;
        Client *c = loop_client_find(loop, w->client_id);
        bool gone = !c || c->state == CLIENT_CLOSING;
        bool met = false;
        if (!gone && w->broadcast_done) {
            if (!frozen) loops_freeze(loop);
            frozen = true;
            met = control_condition(loop, w);
        }
        if (gone || met) {
            *pp = w->next;
            if (gone) {
                control_waiter_free(w);
            } else {
                w->next = ready;
                ready = w;
            }
        } else {
            pp = &w->next;
        }
    }
    if (frozen) loops_thaw(loop);
    while (ready) {
        ControlWaiter *w = ready;
        ready = w->next;
        if (w->done) w->done(loop, w->client_id, op_tags[w->op], NULL);
        control_waiter_free(w);
    }
}

int pool_control_start(Loop *loop)
{
    PoolControl *pc = calloc(1, sizeof(*pc));
    if (!pc) return -1;
    pc->ev_tick = event_new(loop->base, -1, EV_PERSIST, control_on_tick, loop);
    if (!pc->ev_tick) {
        free(pc);
        return -1;
    }
    struct timeval tv = {0, CONTROL_TICK_USEC};
    event_add(pc->ev_tick, &tv);
    loop->control = pc;
    return 0;
}

void pool_control_stop(Loop *loop)
{
    PoolControl *pc = ctl(loop);
    if (!pc) return;
    while (pc->waiters) {
        ControlWaiter *w = pc->waiters;
        pc->waiters = w->next;
        control_waiter_free(w);
    }
    event_free(pc->ev_tick);
    free(pc);
    loop->control = NULL;
}
