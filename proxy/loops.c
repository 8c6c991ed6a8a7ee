/*
 * loops.c — several event loops: threads, inboxes, broadcasts, the freeze
 * barrier and client-id routing (see loops.h).
 *
 * DESIGN
 *
 * Inbox: a message is a malloc'd {fn, arg}; loop_post appends it under the
 * target's inbox mutex and writes the target's eventfd only when the list
 * was empty (one wake-up per batch, as workq.c does for completions).  The
 * target swaps the list out and runs the messages without the lock.
 *
 * Broadcast: one shared record {fn, arg, done, from, remaining}; every loop
 * gets a message that runs fn and decrements `remaining`; the loop that
 * brings it to zero posts done() to `from`.
 *
 * Freeze: the freezer takes `freezer`, posts a freeze message (with the
 * freeze's number) to every other loop and waits until all of them have
 * joined; each waits on fz_cond until loops_thaw clears fz_active.  A loop
 * that wants to freeze while another does cannot wait for the mutex (the
 * other waits for it): it joins that freeze instead, then tries again.  So
 * a freeze always succeeds, and must only be started between changes, at a
 * point where the caller's own state is consistent (it may be read while
 * it helps another freezer).  The mutex hand-offs order memory, so what
 * the frozen loops wrote is visible to the freezer.  No loop may hold any
 * other lock while it freezes or is frozen.
 */
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/eventfd.h>
#include <event2/event.h>

#include "auth.h"
#include "client.h"
#include "config.h"
#include "hosts.h"
#include "log.h"
#include "loop.h"
#include "loops.h"
#include "pooldir.h"
#include "workq.h"

typedef struct loop_msg {
    struct loop_msg *next;
    loop_msg_fn fn;
    void *arg;
} LoopMsg;

/* ---------------------------------------------------------------- inbox */

static void loop_run_msgs(Loop *loop, LoopMsg *m)
{
    while (m) {
        LoopMsg *next = m->next;
        m->fn(loop, m->arg);
        free(m);
        m = next;
    }
}

void loop_inbox_drain(Loop *loop)
{
    for (;;) {
        pthread_mutex_lock(&loop->inbox_lock);
        LoopMsg *m = loop->inbox_head;
        loop->inbox_head = loop->inbox_tail = NULL;
        pthread_mutex_unlock(&loop->inbox_lock);
        if (!m) return;
        loop_run_msgs(loop, m);
    }
}

static void loop_on_inbox(evutil_socket_t fd, short ev, void *arg)
{
    Loop *loop = arg;
    uint64_t n;
    (void)ev;
    ssize_t r = read(fd, &n, sizeof(n)); /* resets the counter; EAGAIN: nothing new */
    (void)r;
    loop_update_now(loop);
    loop_inbox_drain(loop);
}

/* Append a message (cannot fail: the message is already allocated). */
static void loop_post_msg(Loop *target, LoopMsg *m)
{
    m->next = NULL;
    pthread_mutex_lock(&target->inbox_lock);
    bool was_empty = target->inbox_head == NULL;
    if (target->inbox_tail)
        target->inbox_tail->next = m;
    else
        target->inbox_head = m;
    target->inbox_tail = m;
    if (was_empty) {
        uint64_t one = 1;
        ssize_t r = write(target->inbox_efd, &one, sizeof(one));
        (void)r;
    }
    pthread_mutex_unlock(&target->inbox_lock);
    if (target->set) atomic_fetch_add(&target->set->posts, 1);
}

int loop_post(Loop *target, loop_msg_fn fn, void *arg)
{
    LoopMsg *m = malloc(sizeof(*m));
    if (!m) return -1;
    m->fn = fn;
    m->arg = arg;
    loop_post_msg(target, m);
    return 0;
}

int loop_inbox_init(Loop *loop)
{
    if (pthread_mutex_init(&loop->inbox_lock, NULL) != 0) return -1;
    loop->inbox_efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (loop->inbox_efd < 0) return -1;
    loop->ev_inbox =
        event_new(loop->base, loop->inbox_efd, EV_READ | EV_PERSIST, loop_on_inbox, loop);
    if (!loop->ev_inbox || event_add(loop->ev_inbox, NULL) < 0) return -1;
    return 0;
}

void loop_inbox_free(Loop *loop)
{
    loop_inbox_drain(loop);
    if (loop->ev_inbox) event_free(loop->ev_inbox);
    loop->ev_inbox = NULL;
    if (loop->inbox_efd >= 0) close(loop->inbox_efd);
    loop->inbox_efd = -1;
    pthread_mutex_destroy(&loop->inbox_lock);
}

/* ---------------------------------------------------------------- broadcast */

typedef struct broadcast {
    loop_msg_fn fn, done;
    void *arg;
    Loop *from;
    atomic_int remaining;
} Broadcast;

static void broadcast_done(Loop *loop, void *arg)
{
    Broadcast *b = arg;
    b->done(loop, b->arg);
    free(b);
}

static void broadcast_run(Loop *loop, void *arg)
{
    Broadcast *b = arg;
    b->fn(loop, b->arg);
    if (atomic_fetch_sub(&b->remaining, 1) != 1) return;
    if (!b->done) {
        free(b);
    } else if (loop == b->from) {
        broadcast_done(loop, b);
    } else if (loop_post(b->from, broadcast_done, b) < 0) {
        log_error("out of memory: a broadcast's completion is lost");
        free(b);
    }
}

int loops_broadcast(Loop *from, loop_msg_fn fn, void *arg, loop_msg_fn done)
{
    LoopSet *s = from->set;
    Broadcast *b = calloc(1, sizeof(*b));
    LoopMsg **msgs = calloc((size_t)s->n, sizeof(*msgs));
    bool ok = b && msgs;
    /* every message first: once one is posted, nothing may fail */
    for (int i = 0; ok && i < s->n; i++)
        if (!(msgs[i] = malloc(sizeof(**msgs)))) ok = false;
    if (!ok) {
        for (int i = 0; msgs && i < s->n; i++)
            free(msgs[i]);
        free(msgs);
        free(b);
        return -1;
    }
    b->fn = fn;
    b->done = done;
    b->arg = arg;
    b->from = from;
    atomic_init(&b->remaining, s->n);
    for (int i = 0; i < s->n; i++) {
        msgs[i]->fn = broadcast_run;
        msgs[i]->arg = b;
        loop_post_msg(s->loops[i], msgs[i]);
    }
    free(msgs);
    return 0;
}

/* ---------------------------------------------------------------- freeze */

/*
 * Join freeze number gen (once): counted as frozen, wait for the thaw.
 * A stale message of an older freeze, or a second join, does nothing.
 */
static void freeze_join(Loop *loop, unsigned long long gen)
{
    LoopSet *s = loop->set;
    pthread_mutex_lock(&s->fz_lock);
    if (s->fz_active && s->fz_gen == gen && loop->fz_joined != gen) {
        loop->fz_joined = gen;
        s->fz_frozen++;
        pthread_cond_broadcast(&s->fz_cond);
        while (s->fz_active && s->fz_gen == gen)
            pthread_cond_wait(&s->fz_cond, &s->fz_lock);
        s->fz_frozen--;
        pthread_cond_broadcast(&s->fz_cond);
    }
    pthread_mutex_unlock(&s->fz_lock);
}

/*
 * The loops a freeze waits for (under fz_lock): those that turn.  A loop
 * whose thread has not started or has left its dispatch touches nothing,
 * and would never answer.
 */
static int freeze_live_others(LoopSet *s, const Loop *self)
{
    int n = 0;
    for (int i = 0; i < s->n; i++)
        if (s->loops[i] != self && s->loops[i]->fz_live) n++;
    return n;
}

/* Whether loop turns from now on (under fz_lock; wakes a waiting freezer). */
static void freeze_set_live(Loop *loop, bool live)
{
    LoopSet *s = loop->set;
    pthread_mutex_lock(&s->fz_lock);
    loop->fz_live = live;
    pthread_cond_broadcast(&s->fz_cond);
    pthread_mutex_unlock(&s->fz_lock);
}

static void freeze_on_loop(Loop *loop, void *arg)
{
    freeze_join(loop, (unsigned long long)(uintptr_t)arg);
}

void loops_freeze(Loop *self)
{
    LoopSet *s = self->set;
    if (!s || s->n == 1) return;
    if (self->fz_nest++ > 0) return; /* already frozen by this loop: a nested reader */
    usec_t t0 = time_now_usec();
    while (pthread_mutex_trylock(&s->freezer) != 0) {
        /* another loop freezes everyone: be frozen by it first, then try again */
        pthread_mutex_lock(&s->fz_lock);
        bool active = s->fz_active;
        unsigned long long gen = s->fz_gen;
        pthread_mutex_unlock(&s->fz_lock);
        if (active)
            freeze_join(self, gen);
        else
            sched_yield();
    }
    pthread_mutex_lock(&s->fz_lock);
    /* the previous freeze's loops must have left freeze_join */
    while (s->fz_frozen > 0)
        pthread_cond_wait(&s->fz_cond, &s->fz_lock);
    unsigned long long gen = ++s->fz_gen;
    s->fz_active = true;
    pthread_mutex_unlock(&s->fz_lock);
    for (int i = 0; i < s->n; i++) {
        if (s->loops[i] == self) continue;
        while (loop_post(s->loops[i], freeze_on_loop, (void *)(uintptr_t)gen) < 0)
            sched_yield(); /* out of memory for 16 bytes: wait for some */
    }
    pthread_mutex_lock(&s->fz_lock);
    while (s->fz_frozen < freeze_live_others(s, self))
        pthread_cond_wait(&s->fz_cond, &s->fz_lock);
    pthread_mutex_unlock(&s->fz_lock);
    atomic_fetch_add(&s->freezes, 1);
    atomic_fetch_add(&s->freeze_usec, (unsigned long long)(time_now_usec() - t0));
}

void loops_thaw(Loop *self)
{
    LoopSet *s = self->set;
    if (!s || s->n == 1) return;
    if (--self->fz_nest > 0) return;
    pthread_mutex_lock(&s->fz_lock);
    s->fz_active = false;
    pthread_cond_broadcast(&s->fz_cond);
    pthread_mutex_unlock(&s->fz_lock);
    pthread_mutex_unlock(&s->freezer);
}

/* ---------------------------------------------------------------- routing */

Loop *loops_of_client_id(LoopSet *s, uint32_t id)
{
    uint32_t i = LOOP_ID_INDEX(id);
    return s && i < (uint32_t)s->n ? s->loops[i] : NULL;
}

Loop *loops_next(LoopSet *s)
{
    unsigned i = atomic_fetch_add(&s->next_deal, 1);
    return s->loops[i % (unsigned)s->n];
}

/* ---------------------------------------------------------------- reload */

typedef struct reload_req {
    Loop *from;
    uint32_t client_id;
    reload_done_fn done;
    int rc;
} ReloadReq;

static void reload_answer(Loop *loop, void *arg)
{
    ReloadReq *r = arg;
    if (r->done) r->done(loop, r->client_id, r->rc);
    free(r);
}

static void reload_finished(Loop *loop0, void *arg, int rc)
{
    ReloadReq *r = arg;
    r->rc = rc;
    if (r->from == loop0)
        reload_answer(loop0, r);
    else if (loop_post(r->from, reload_answer, r) < 0)
        free(r);
}

static void reload_on_loop0(Loop *loop0, void *arg)
{
    ReloadReq *r = arg;
    if (!loop0->reload || loop0->reload(loop0, loop0->reload_arg, reload_finished, r) < 0)
        reload_finished(loop0, r, -1);
}

int loops_reload(Loop *from, uint32_t client_id, reload_done_fn done)
{
    ReloadReq *r = calloc(1, sizeof(*r));
    if (!r) return -1;
    r->from = from;
    r->client_id = client_id;
    r->done = done;
    if (loop_post(from->set->loops[0], reload_on_loop0, r) < 0) {
        free(r);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- shutdown */

static void shutdown_on_loop(Loop *loop, void *arg)
{
    loop_begin_shutdown(loop, (ShutdownMode)(intptr_t)arg);
}

void loops_begin_shutdown(Loop *from, ShutdownMode mode)
{
    if (from->set->n == 1) {
        loop_begin_shutdown(from, mode);
        return;
    }
    if (loops_broadcast(from, shutdown_on_loop, (void *)(intptr_t)mode, NULL) < 0) {
        log_error("out of memory: shutting down at once");
        exit(1);
    }
}

/* ---------------------------------------------------------------- accept */

typedef struct dealt {
    int fd;
    bool unix_socket;
    struct sockaddr_storage peer;
    bool have_peer;
} Dealt;

static void dealt_on_loop(Loop *loop, void *arg)
{
    Dealt *d = arg;
    loop_update_now(loop);
    if (loop->shutdown != SHUTDOWN_NONE && loop->shutdown != SHUTDOWN_WAIT_CLIENTS)
        close(d->fd); /* accepted just before the shutdown reached this loop */
    else
        client_accept(loop, d->fd, d->unix_socket,
                      d->have_peer ? (struct sockaddr *)&d->peer : NULL);
    free(d);
}

void loops_deal_client(Loop *acceptor, int fd, bool unix_socket, const struct sockaddr *peer,
                       int peer_len)
{
    LoopSet *s = acceptor->set;
    Loop *target = s->n == 1 ? acceptor : loops_next(s);
    if (target == acceptor) {
        client_accept(acceptor, fd, unix_socket, peer);
        return;
    }
    Dealt *d = calloc(1, sizeof(*d));
    if (!d) {
        close(fd);
        return;
    }
    d->fd = fd;
    d->unix_socket = unix_socket;
    if (peer && peer_len > 0 && (size_t)peer_len <= sizeof(d->peer)) {
        memcpy(&d->peer, peer, (size_t)peer_len);
        d->have_peer = true;
    }
    if (loop_post(target, dealt_on_loop, d) < 0) {
        free(d);
        client_accept(acceptor, fd, unix_socket, peer); /* no memory to send it: keep it */
    }
}

/* ---------------------------------------------------------------- threads */

static void loop_note_thread(Loop *loop)
{
    loop->have_cpu_clock = pthread_getcpuclockid(pthread_self(), &loop->cpu_clock) == 0;
}

double loop_cpu_seconds(const Loop *loop)
{
    struct timespec ts;
    if (!loop->have_cpu_clock || clock_gettime(loop->cpu_clock, &ts) < 0) return 0;
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *loop_thread_main(void *arg)
{
    Loop *loop = arg;
    loop_note_thread(loop);
    event_base_dispatch(loop->base);
    freeze_set_live(loop, false); /* a freeze from now on does not wait for us */
    return NULL;
}

LoopSet *loops_create(Config *cfg, int n, char *err, size_t errlen)
{
    if (n < 1 || n > LOOPS_MAX) {
        snprintf(err, errlen, "event_loops must be between 1 and %d", LOOPS_MAX);
        return NULL;
    }
    LoopSet *s = calloc(1, sizeof(*s));
    if (!s) goto oom;
    s->n = n;
    s->loops = calloc((size_t)n, sizeof(*s->loops));
    s->threads = calloc((size_t)n, sizeof(*s->threads));
    s->started = calloc((size_t)n, sizeof(*s->started));
    if (!s->loops || !s->threads || !s->started) goto oom;
    pthread_mutex_init(&s->freezer, NULL);
    pthread_mutex_init(&s->fz_lock, NULL);
    pthread_cond_init(&s->fz_cond, NULL);
    s->dir = pooldir_create();
    s->auth = auth_shared_create();
    s->hosts = hosts_registry_new();
    if (!s->dir || !s->auth || !s->hosts) goto oom;
    s->wpool = workq_pool_create(cfg->workers, 4096);
    if (!s->wpool) {
        snprintf(err, errlen, "cannot start the worker threads: %s", strerror(errno));
        loops_destroy(s);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        s->loops[i] = loop_create(cfg, s, i);
        if (!s->loops[i]) {
            snprintf(err, errlen, "cannot create event loop %d", i);
            loops_destroy(s);
            return NULL;
        }
        s->loops[i]->hosts = s->hosts;
    }
    loop_note_thread(s->loops[0]); /* loop 0 runs on the calling (main) thread */
    /* loop 0 answers freezes from its dispatch, and in loops_join after it */
    s->loops[0]->fz_live = true;
    return s;
oom:
    snprintf(err, errlen, "out of memory");
    loops_destroy(s);
    return NULL;
}

int loops_start(LoopSet *s, char *err, size_t errlen)
{
    sigset_t all, old;
    /* signals are loop 0's (libevent signal events on the main thread) */
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (int i = 1; i < s->n; i++) {
        freeze_set_live(s->loops[i], true); /* it answers what is posted before it runs */
        if (pthread_create(&s->threads[i], NULL, loop_thread_main, s->loops[i]) != 0) {
            freeze_set_live(s->loops[i], false);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            snprintf(err, errlen, "cannot start event loop thread %d", i);
            return -1;
        }
        s->started[i] = true;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}

static void loop_stop_msg(Loop *loop, void *arg)
{
    (void)arg;
    event_base_loopbreak(loop->base);
}

void loops_join(LoopSet *s)
{
    if (!s) return;
    for (int i = 1; i < s->n; i++)
        if (s->started[i])
            while (loop_post(s->loops[i], loop_stop_msg, NULL) < 0)
                sched_yield(); /* out of memory for 16 bytes: wait for some */
    /*
     * Loop 0 keeps answering its inbox meanwhile: a loop still running may
     * be freezing the others (a SHOW of a console client), and waits for us.
     */
    for (;;) {
        bool pending = false;
        for (int i = 1; i < s->n; i++) {
            if (!s->started[i]) continue;
            if (pthread_tryjoin_np(s->threads[i], NULL) == 0)
                s->started[i] = false;
            else
                pending = true;
        }
        if (!pending) break;
        loop_inbox_drain(s->loops[0]);
        usleep(1000);
    }
}

void loops_destroy(LoopSet *s)
{
    if (!s) return;
    loops_join(s);
    /*
     * Clients first, on every loop (closing them releases servers, which
     * may post to other loops: their inboxes are drained below).  Then the
     * workers stop, and each loop's completions and objects go.
     */
    for (int i = 0; i < s->n; i++)
        if (s->loops[i]) loop_close_all_clients(s->loops[i]);
    if (s->wpool) workq_pool_stop(s->wpool);
    for (int i = 0; i < s->n; i++)
        if (s->loops[i]) loop_destroy(s->loops[i]);
    if (s->wpool) workq_pool_free(s->wpool);
    pooldir_free(s->dir);
    auth_shared_free(s->auth);
    hosts_registry_free(s->hosts); /* after the loops: their databases and servers let go */
    pthread_mutex_destroy(&s->freezer);
    pthread_mutex_destroy(&s->fz_lock);
    pthread_cond_destroy(&s->fz_cond);
    free(s->loops);
    free(s->threads);
    free(s->started);
    free(s);
}
