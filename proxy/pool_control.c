/*
 * pool_control.c — PAUSE/RESUME/RECONNECT/KILL/… (see pool_control.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "admin.h"
#include "client.h"
#include "config.h"
#include "listener.h"
#include "log.h"
#include "pool.h"
#include "pool_control.h"
#include "server.h"

#define CONTROL_TICK_USEC 50000
#define CONTROL_DB_MAX    128

typedef struct control_waiter {
    struct control_waiter *next;
    uint32_t client_id;
    ControlWaitKind kind;
    bool all;
    char db[CONTROL_DB_MAX];
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
        List *lists[] = {&p->connecting, &p->idle, &p->active};
        for (int i = 0; i < 3; i++)
            list_for_each(sit, lists[i])
            {
                if (list_entry(sit, Server, pool_node)->generation != db->generation) n++;
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

/* ---- commands ---- */

int pool_control_pause(Loop *loop, const char *name, char *err, size_t errlen)
{
    PoolControl *pc = ctl(loop);
    ListNode *it;
    if (pc->paused_all) {
        snprintf(err, errlen, "already paused");
        return -1;
    }
    if (!name) {
        log_info("PAUSE command issued");
        pc->paused_all = true;
        list_for_each(it, &loop->databases)
        {
            Database *db = list_entry(it, Database, node);
            db->paused = true;
            close_idle(db, "pause mode");
        }
        return 0;
    }
    Database *db = control_db(loop, name, err, errlen);
    if (!db) return -1;
    log_info("PAUSE '%s' command issued", name);
    db->paused = true;
    close_idle(db, "pause mode");
    return 0;
}

int pool_control_resume(Loop *loop, const char *name, char *err, size_t errlen)
{
    PoolControl *pc = ctl(loop);
    ListNode *it;
    if (loop->shutdown != SHUTDOWN_NONE) {
        snprintf(err, errlen, "pooler is shutting down");
        return -1;
    }
    if (!name) {
        bool any = pc->paused_all;
        list_for_each(it, &loop->databases) any |= list_entry(it, Database, node)->paused;
        if (!any) {
            snprintf(err, errlen, "pooler is not paused");
            return -1;
        }
        log_info("RESUME command issued");
        pc->paused_all = false;
        list_for_each(it, &loop->databases) list_entry(it, Database, node)->paused = false;
        list_for_each(it, &loop->databases) db_wake(list_entry(it, Database, node));
        return 0;
    }
    Database *db = control_db(loop, name, err, errlen);
    if (!db) return -1;
    if (!db->paused) {
        snprintf(err, errlen, "database %s is not paused", name);
        return -1;
    }
    if (pc->paused_all) {
        snprintf(err, errlen, "the whole pooler is paused: use RESUME without a database");
        return -1;
    }
    log_info("RESUME '%s' command issued", name);
    db->paused = false;
    db_wake(db);
    return 0;
}

int pool_control_set_disabled(Loop *loop, const char *name, bool disabled, char *err, size_t errlen)
{
    Database *db = control_db(loop, name, err, errlen);
    if (!db) return -1;
    log_info("%s '%s' command issued", disabled ? "DISABLE" : "ENABLE", name);
    db->disabled = disabled;
    return 0;
}

static void reconnect_db(Database *db)
{
    ListNode *it, *tmp;
    db->generation++;
    close_idle(db, "RECONNECT");
    /* a cached login failure is forgotten: waiting clients get a new attempt now */
    list_for_each_safe(it, tmp, &db->pools)
        pool_forget_login_failure(list_entry(it, Pool, db_node));
}

int pool_control_reconnect(Loop *loop, const char *name, char *err, size_t errlen)
{
    ListNode *it;
    if (!name) {
        log_info("RECONNECT command issued");
        list_for_each(it, &loop->databases) reconnect_db(list_entry(it, Database, node));
        return 0;
    }
    Database *db = control_db(loop, name, err, errlen);
    if (!db) return -1;
    log_info("RECONNECT '%s' command issued", name);
    reconnect_db(db);
    return 0;
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

int pool_control_kill(Loop *loop, const char *name, char *err, size_t errlen)
{
    ListNode *it;
    if (!name) {
        log_info("KILL command issued");
        ctl(loop)->paused_all = true;
        list_for_each(it, &loop->databases) kill_db(list_entry(it, Database, node));
        return 0;
    }
    Database *db = control_db(loop, name, err, errlen);
    if (!db) return -1;
    log_info("KILL '%s' command issued", name);
    kill_db(db);
    return 0;
}

int pool_control_kill_client(Loop *loop, uint32_t id, char *err, size_t errlen)
{
    Client *c = loop_client_find(loop, id);
    if (!c || c->state == CLIENT_CLOSING) {
        snprintf(err, errlen, "client not found");
        return -1;
    }
    log_info("KILL_CLIENT %u command issued", id);
    client_close(c, "57P01", "admin forced disconnect");
    return 0;
}

int pool_control_check_db(Loop *loop, const char *name, char *err, size_t errlen)
{
    return name && !control_db(loop, name, err, errlen) ? -1 : 0;
}

void pool_control_shutdown(Loop *loop, ShutdownMode mode)
{
    loop_begin_shutdown(loop, mode);
}

bool pool_control_paused_all(Loop *loop)
{
    return ctl(loop) && ctl(loop)->paused_all;
}

/* ---- waits ---- */

bool pool_control_wait_done(Loop *loop, ControlWaitKind kind, const char *name)
{
    ListNode *it;
    list_for_each(it, &loop->databases)
    {
        Database *db = list_entry(it, Database, node);
        if (name && strcmp(db->name, name) != 0) continue;
        if (kind == CONTROL_WAIT_PAUSE ? db_busy_servers(db) > 0 : db_old_servers(db) > 0)
            return false;
    }
    return true;
}

int pool_control_wait(Loop *loop, uint32_t client_id, ControlWaitKind kind, const char *db,
                      control_done_fn done)
{
    PoolControl *pc = ctl(loop);
    ControlWaiter *w = calloc(1, sizeof(*w));
    if (!w) return -1;
    w->client_id = client_id;
    w->kind = kind;
    w->all = db == NULL;
    if (db) snprintf(w->db, sizeof(w->db), "%s", db);
    w->done = done;
    w->next = pc->waiters;
    pc->waiters = w;
    return 0;
}

bool pool_control_is_waiting(Loop *loop, uint32_t client_id)
{
    for (ControlWaiter *w = ctl(loop) ? ctl(loop)->waiters : NULL; w; w = w->next)
        if (w->client_id == client_id) return true;
    return false;
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
    /* waits: unlink the finished ones first, done() may add new waiters */
    ControlWaiter **pp = &pc->waiters, *ready = NULL;
    while (*pp) {
        ControlWaiter *w = *pp;
        Client *c = loop_client_find(loop, w->client_id);
        bool gone = !c || c->state == CLIENT_CLOSING;
        if (gone || pool_control_wait_done(loop, w->kind, w->all ? NULL : w->db)) {
            *pp = w->next;
            if (gone) {
                free(w);
            } else {
                w->next = ready;
                ready = w;
            }
        } else {
            pp = &w->next;
        }
    }
    while (ready) {
        ControlWaiter *w = ready;
        ready = w->next;
        w->done(loop, w->client_id, w->kind == CONTROL_WAIT_PAUSE ? "PAUSE" : "WAIT_CLOSE");
        free(w);
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
        free(w);
    }
    event_free(pc->ev_tick);
    free(pc);
    loop->control = NULL;
}
