/*
 * loop.c — the event-loop context (see loop.h): buffers, deferred frees,
 * the client id table, the janitor tick and loop-health measurement.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/rand.h>

#include "auth.h"
#include "authq.h"
#include "client.h"
#include "listener.h"
#include "tls.h"
#include "config.h"
#include "hosts.h"
#include "log.h"
#include "loop.h"
#include "loops.h"
#include "notify.h"
#include "peers.h"
#include "pool.h"
#include "server.h"
#include "workq.h"

#define JANITOR_INTERVAL_USEC 200000 /* timeouts are checked 5 times a second */
#define TICK_INTERVAL_USEC    100000 /* loop lag is measured on this tick */
#define BUF_FREE_MAX          4096   /* spare receive buffers kept */

typedef struct free_buf {
    struct free_buf *next;
} FreeBuf;

uint8_t *loop_buffer_get(Loop *loop, uint32_t *size)
{
    uint8_t *b;
    if (loop->buf_free) {
        FreeBuf *f = loop->buf_free;
        loop->buf_free = f->next;
        loop->buf_free_count--;
        b = (uint8_t *)f;
    } else {
        b = malloc(loop->buf_size);
        if (!b) return NULL;
    }
    loop->buf_in_use++;
    *size = loop->buf_size;
    return b;
}

void loop_buffer_put(Loop *loop, uint8_t *buf, uint32_t size)
{
    if (!buf) return;
    loop->buf_in_use--;
    /* grown buffers and the excess beyond BUF_FREE_MAX go back to malloc */
    if (size != loop->buf_size || loop->buf_free_count >= BUF_FREE_MAX) {
        free(buf);
        return;
    }
    FreeBuf *f = (FreeBuf *)buf;
    f->next = loop->buf_free;
    loop->buf_free = f;
    loop->buf_free_count++;
}

void loop_run_deferred(Loop *loop)
{
    while (loop->deferred) {
        Deferred *d = loop->deferred;
        loop->deferred = NULL;
        /* run in batches: a free may defer more */
        while (d) {
            Deferred *next = d->next;
            d->fn(d->obj);
            d = next;
        }
    }
}

static void loop_on_reap(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    loop_run_deferred(arg);
}

void loop_defer_free(Loop *loop, Deferred *d, void (*fn)(void *), void *obj)
{
    d->fn = fn;
    d->obj = obj;
    d->next = loop->deferred;
    loop->deferred = d;
    event_active(loop->ev_reap, 0, 0);
}

uint32_t loop_random_u32(Loop *loop)
{
    if (loop->rand_left == 0) {
        if (RAND_bytes((unsigned char *)loop->rand_pool, sizeof(loop->rand_pool)) != 1) {
            /* no entropy source: still unpredictable enough to not be a constant */
            for (int i = 0; i < 64; i++)
                loop->rand_pool[i] = (uint32_t)random() ^ (uint32_t)time_now_usec();
        }
        loop->rand_left = 64;
    }
    uint32_t v = loop->rand_pool[--loop->rand_left];
    loop->rand_pool[loop->rand_left] = 0; /* used numbers do not stay in memory */
    return v;
}

/* ---- client id table: open hashing by id, chained through Client.id_next ---- */

static int client_table_grow(ClientTable *t)
{
    uint32_t nsize = t->slots ? (t->mask + 1) * 2 : 1024;
    Client **ns = calloc(nsize, sizeof(*ns));
    if (!ns) return -1;
    if (t->slots) {
        for (uint32_t i = 0; i <= t->mask; i++) {
            Client *c = t->slots[i];
            while (c) {
                Client *next = c->id_next;
                c->id_next = ns[c->id & (nsize - 1)];
                ns[c->id & (nsize - 1)] = c;
                c = next;
            }
        }
        free(t->slots);
    }
    t->slots = ns;
    t->mask = nsize - 1;
    return 0;
}

int loop_client_register(Loop *loop, Client *c)
{
    ClientTable *t = &loop->client_ids;
    if ((!t->slots || t->count >= t->mask) && client_table_grow(t) < 0) return -1;
    /*
     * The loop's index in the top bits (a cancel request finds the loop by
     * it); the counter below is never 0 and not reused while a client holds it.
     */
    do {
        uint32_t n = ++loop->next_client_id & LOOP_ID_COUNTER;
        c->id = (uint32_t)loop->index << LOOP_ID_SHIFT | n;
        if (n == 0) c->id = 0;
    } while (c->id == 0 || loop_client_find(loop, c->id));
    c->id_next = t->slots[c->id & t->mask];
    t->slots[c->id & t->mask] = c;
    t->count++;
    return 0;
}

void loop_client_unregister(Loop *loop, Client *c)
{
    ClientTable *t = &loop->client_ids;
    if (!t->slots) return;
    Client **pp = &t->slots[c->id & t->mask];
    while (*pp) {
        if (*pp == c) {
            *pp = c->id_next;
            t->count--;
            return;
        }
        pp = &(*pp)->id_next;
    }
}

Client *loop_client_find(Loop *loop, uint32_t id)
{
    ClientTable *t = &loop->client_ids;
    if (!t->slots) return NULL;
    for (Client *c = t->slots[id & t->mask]; c; c = c->id_next)
        if (c->id == id) return c;
    return NULL;
}

/* ---- shutdown ---- */

static int loop_active_servers(Loop *loop)
{
    int n = 0;
    ListNode *dit, *pit;
    list_for_each(dit, &loop->databases)
    {
        Database *db = list_entry(dit, Database, node);
        list_for_each(pit, &db->pools)
        {
            Pool *p = list_entry(pit, Pool, db_node);
            n += p->active.count;
        }
    }
    return n;
}

static void loop_check_shutdown(Loop *loop);

static void loop_on_peer_ready(Loop *loop, void *arg)
{
    (void)arg;
    loop_check_shutdown(loop);
}

static void loop_check_shutdown(Loop *loop)
{
    switch (loop->shutdown) {
    case SHUTDOWN_NONE:
        return;
    case SHUTDOWN_WAIT_SERVERS:
        if (loop_active_servers(loop) > 0) return;
        break;
    case SHUTDOWN_WAIT_CLIENTS:
        if (loop->client_count > 0) return;
        break;
    case SHUTDOWN_IMMEDIATE:
        break;
    }
    /*
     * This loop's part is done.  Loop 0 ends the process (main.c stops the
     * other loops) once every loop says so; the others wait for that.
     */
    if (loop->index != 0) {
        /* tell loop 0 now rather than on its next janitor tick */
        if (!atomic_exchange(&loop->shutdown_ready, true) &&
            loop_post(loop->set->loops[0], loop_on_peer_ready, NULL) < 0) {
            /* out of memory: loop 0's janitor looks again within a second */
        }
        return;
    }
    atomic_store(&loop->shutdown_ready, true);
    for (int i = 1; i < loop->set->n; i++)
        if (!atomic_load(&loop->set->loops[i]->shutdown_ready)) return;
    event_base_loopbreak(loop->base);
}

void loop_begin_shutdown(Loop *loop, ShutdownMode mode)
{
    if (mode > loop->shutdown) loop->shutdown = mode;
    /*
     * Stop accepting by closing the listeners: new clients get "connection
     * refused" at once (a paused listener would leave them hanging in the
     * backlog), and the unix socket file goes away.
     */
    listener_close_all(loop);
    notify_stopping(loop);
    if (loop->index == 0) /* every loop begins it; the log says so once */
        log_info("shutdown requested (%s)", mode == SHUTDOWN_WAIT_SERVERS   ? "wait for servers"
                                            : mode == SHUTDOWN_WAIT_CLIENTS ? "wait for clients"
                                                                            : "immediate");
    /* idle servers are of no further use in a safe shutdown */
    if (loop->shutdown == SHUTDOWN_WAIT_SERVERS) {
        ListNode *dit, *pit;
        list_for_each(dit, &loop->databases)
        {
            Database *db = list_entry(dit, Database, node);
            list_for_each(pit, &db->pools)
            {
                Pool *p = list_entry(pit, Pool, db_node);
                while (!list_empty(&p->idle))
                    server_close(list_entry(list_first(&p->idle), Server, pool_node),
                                 "shutting down");
                /* and clients queued for one will not get one */
                while (!list_empty(&p->waiting))
                    client_close(list_entry(list_first(&p->waiting), Client, pool_node), "57P01",
                                 "server shutting down");
                while (!list_empty(&p->login_wait))
                    client_close(list_entry(list_first(&p->login_wait), Client, pool_node), "57P01",
                                 "server shutting down");
            }
        }
    }
    loop_check_shutdown(loop);
}

/* ---- periodic work ---- */

static void loop_on_janitor(evutil_socket_t fd, short ev, void *arg)
{
    Loop *loop = arg;
    (void)fd;
    (void)ev;
    usec_t now = loop_update_now(loop);
    pool_janitor(loop, now);
    hosts_tick(loop, now); /* loop 0 runs the checks of every loop's hosts */
    /* kept auth_query connections age like idle servers (10 min when that is off) */
    usec_t idle = loop->cfg->server_idle_timeout;
    authq_janitor(loop, now, idle > 0 ? idle : 600 * USEC_PER_SEC);
    loop_check_shutdown(loop);
}

static void loop_on_tick(evutil_socket_t fd, short ev, void *arg)
{
    Loop *loop = arg;
    (void)fd;
    (void)ev;
    usec_t now = time_now_usec();
    usec_t lag = loop->tick_expected ? now - loop->tick_expected : 0;
    if (lag < 0) lag = 0;
    loop->stats.lag_samples++;
    if (lag > loop->stats.lag_max) loop->stats.lag_max = lag;
    int b = 0;
    while (b < 31 && (1LL << b) < lag)
        b++;
    loop->stats.lag_hist[b]++;
    loop->tick_expected = now + TICK_INTERVAL_USEC;
}

Loop *loop_create(Config *cfg, LoopSet *set, int index)
{
    Loop *loop = calloc(1, sizeof(*loop));
    if (!loop) return NULL;
    loop->set = set;
    loop->index = index;
    loop->inbox_efd = -1;
    loop->cfg = cfg;
    config_ref(cfg);
    list_init(&loop->listeners);
    list_init(&loop->clients);
    list_init(&loop->login_clients);
    list_init(&loop->databases);
    list_init(&loop->handover_queue);
    list_init(&loop->users);
    loop->buf_size = (uint32_t)cfg->pkt_buf;
    loop->started_at = loop_update_now(loop);
    loop->base = event_base_new();
    if (!loop->base) goto fail;
    loop->workq = workq_port_create(set->wpool, loop->base);
    if (!loop->workq) goto fail;
    if (loop_inbox_init(loop) < 0) goto fail;
    loop->ev_reap = event_new(loop->base, -1, 0, loop_on_reap, loop);
    loop->ev_janitor = event_new(loop->base, -1, EV_PERSIST, loop_on_janitor, loop);
    loop->ev_tick = event_new(loop->base, -1, EV_PERSIST, loop_on_tick, loop);
    if (!loop->ev_reap || !loop->ev_janitor || !loop->ev_tick) goto fail;
    struct timeval jt = {0, JANITOR_INTERVAL_USEC}, tt = {0, TICK_INTERVAL_USEC};
    event_add(loop->ev_janitor, &jt);
    event_add(loop->ev_tick, &tt);
    loop->tick_expected = time_now_usec() + TICK_INTERVAL_USEC;
    if (client_table_grow(&loop->client_ids) < 0) goto fail;
    return loop;
fail:
    loop_destroy(loop);
    return NULL;
}

void loop_close_all_clients(Loop *loop)
{
    /* closing them releases or closes their servers */
    loop->shutdown = SHUTDOWN_IMMEDIATE;
    /* messages from other loops first (a server in transit is closed there) */
    if (loop->ev_inbox) loop_inbox_drain(loop);
    while (!list_empty(&loop->clients)) {
        Client *c = list_entry(list_first(&loop->clients), Client, all_node);
        client_close(c, NULL, "shutting down");
    }
}

void loop_destroy(Loop *loop)
{
    if (!loop) return;
    loop_close_all_clients(loop);
    /* worker completions may reference databases and pools: run them before freeing */
    if (loop->workq) workq_port_destroy(loop->workq);
    loop->workq = NULL;
    if (loop->ev_inbox) loop_inbox_free(loop);
    authq_free(loop);
    pool_free_all(loop);
    loop_run_deferred(loop);
    hosts_free_all(loop);
    peers_free(loop);
    if (loop->ev_reap) event_free(loop->ev_reap);
    if (loop->ev_janitor) event_free(loop->ev_janitor);
    if (loop->ev_handover) event_free(loop->ev_handover);
    if (loop->ev_tick) event_free(loop->ev_tick);
    while (loop->buf_free) {
        FreeBuf *f = loop->buf_free;
        loop->buf_free = f->next;
        free(f);
    }
    free(loop->client_ids.slots);
    free(loop->janitor_ids);
    auth_context_free(loop->auth);
    tls_context_unref(loop->tls);
    config_unref(loop->cfg);
    if (loop->base) event_base_free(loop->base);
    free(loop);
}
