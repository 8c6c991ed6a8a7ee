/*
 * hosts.c — backend hosts: registry, health checks, host choice (see hosts.h).
 *
 * DESIGN
 * The registry (Loop.hosts) maps "name:port" to a Host.  HostLists (one per
 * Database) and servers take references; a Host nobody references is freed
 * (its check connection closed) once no check job holds it.
 *
 * A check is one worker job per host at a time.  It runs blocking libpq
 * (as auth_query does) with its own deadline of host_check_timeout, enforced
 * with poll() around PQconnectPoll and the query, so a host that drops
 * packets costs one worker for at most that long.  The connection is kept
 * for the next check, so a healthy host costs one `SELECT
 * pg_is_in_recovery()` per interval, no login; a broken one is reconnected.
 * How a check classifies a host:
 *   connected and the query answered      up, primary or standby
 *   PostgreSQL refused the login (28P01, 3D000, ...; not 57P03)
 *                                        up, role unknown (it answers)
 *   refused, timed out, 57P03 (starting up, shutting down, not consistent)
 *                                        down
 * Without a user to log in as (no forced user=, no auth_user) a check only
 * connects (up or down); the role then comes from the servers.
 * The completion (loop thread) stores the result; when state or role
 * changed it bumps the host's change counter and tells the pools
 * (pool_hosts_changed), so waiting clients get a server on a host that
 * just became usable without waiting for server_login_retry.
 *
 * Role reports race with checks: a check that started before a server
 * reported in_hot_standby must not overwrite that newer knowledge, so a
 * check's role applies only when the check started after role_at.
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "config.h"
#include "hmap.h"
#include "hosts.h"
#include "log.h"
#include "loop.h"
#include "loops.h"
#include "pool.h"
#include "proto.h"
#include "workq.h"

/* Longest host list accepted per entry: libpq itself handles any, this bounds a pick. */
#define HOSTS_LIST_MAX 64

struct host_registry {
    /* index, hosts, Host.refs, and the check fields of every Host (hosts.h) */
    pthread_mutex_t lock;
    Hmap index; /* Host by key */
    List hosts; /* Host.node, in creation order */
};

static const char *const state_names[] = {"unknown", "up", "down"};
static const char *const role_names[] = {"unknown", "primary", "standby"};

const char *hosts_state_name(int state)
{
    return state >= 0 && state < 3 ? state_names[state] : "?";
}

const char *hosts_role_name(int role)
{
    return role >= 0 && role < 3 ? role_names[role] : "?";
}

static void wipe_free(char *s)
{
    if (!s) return;
    OPENSSL_cleanse(s, strlen(s));
    free(s);
}

HostRegistry *hosts_registry_new(void)
{
    HostRegistry *r = calloc(1, sizeof(*r));
    if (!r) return NULL;
    pthread_mutex_init(&r->lock, NULL);
    list_init(&r->hosts);
    return r;
}

/* Every loop of a set has the set's registry (loops_create); a lone Loop makes its own. */
static HostRegistry *registry_get(Loop *loop)
{
    if (!loop->hosts && !loop->set) loop->hosts = hosts_registry_new();
    return loop->hosts;
}

/* Loop 0 runs the checks; the others ask it to look now (hosts_tick). */
static void hosts_on_tick_msg(Loop *loop, void *arg)
{
    (void)arg;
    hosts_tick(loop, time_now_usec());
}

static void hosts_wake_owner(Loop *loop)
{
    if (!loop->set || loop->index == 0) {
        hosts_tick(loop, time_now_usec());
        return;
    }
    if (loop_post(loop->set->loops[0], hosts_on_tick_msg, NULL) < 0) {
        /* out of memory: loop 0's janitor looks within 200 ms */
    }
}

static void host_free(Host *h)
{
    if (h->check_conn) PQfinish(h->check_conn);
    free(h->check_db);
    free(h->check_user);
    wipe_free(h->check_password);
    free(h->name);
    free(h->key);
    free(h);
}

/* Find or create the Host for name:port, with a reference. */
static Host *host_acquire(Loop *loop, const char *name, size_t len, int port)
{
    HostRegistry *r = registry_get(loop);
    if (!r) return NULL;
    char key[300];
    snprintf(key, sizeof(key), "%.*s:%d", (int)(len < 255 ? len : 255), name, port);
    pthread_mutex_lock(&r->lock);
    Host *h = hmap_get(&r->index, key);
    if (h) {
        h->refs++;
        pthread_mutex_unlock(&r->lock);
        return h;
    }
    h = calloc(1, sizeof(*h));
    if (!h || !(h->name = strndup(name, len)) || !(h->key = strdup(key)) ||
        hmap_put(&r->index, h->key, h) < 0) {
        pthread_mutex_unlock(&r->lock);
        if (h) {
            free(h->name);
            free(h->key);
        }
        free(h);
        return NULL;
    }
    h->port = port;
    h->refs = 1;
    atomic_init(&h->state, HOST_UNKNOWN);
    atomic_init(&h->role, HOST_ROLE_UNKNOWN);
    list_append(&r->hosts, &h->node);
    pthread_mutex_unlock(&r->lock);
    return h;
}

static void host_release(Loop *loop, Host *h)
{
    HostRegistry *r = loop->hosts;
    if (!h || !r) return;
    pthread_mutex_lock(&r->lock);
    bool last = --h->refs == 0;
    if (last) {
        hmap_remove(&r->index, h->key);
        list_remove(&r->hosts, &h->node);
    }
    pthread_mutex_unlock(&r->lock);
    if (last) host_free(h);
}

/* ---------------------------------------------------------------- lists */

int hosts_list_build(Loop *loop, HostList *hl, const char *host, int port, const char *port_list,
                     int tsa, int lb, bool checked, const char *dbname, const char *user,
                     const char *password)
{
    memset(hl, 0, sizeof(*hl));
    hl->tsa = tsa;
    hl->lb = lb;
    if (!host || !*host) return 0;
    int n = 1;
    for (const char *p = host; *p; p++)
        n += *p == ',';
    if (n > HOSTS_LIST_MAX) n = HOSTS_LIST_MAX;
    hl->v = calloc((size_t)n, sizeof(*hl->v));
    if (!hl->v) return -1;
    /* more than one host, or a role to insist on: worth checking in the background */
    checked = checked && (n > 1 || tsa != TSA_ANY);
    const char *hp = host, *pp = port_list;
    for (int i = 0; i < n && *hp; i++) {
        size_t hn = strcspn(hp, ",");
        int hport = port ? port : 5432;
        if (pp && *pp) {
            hport = atoi(pp);
            pp += strcspn(pp, ",");
            if (*pp == ',') pp++;
        }
        Host *h = host_acquire(loop, hp, hn, hport);
        if (!h) {
            hosts_list_free(loop, hl);
            return -1;
        }
        hl->v[hl->n++] = h;
        /* the last database that asks sets the check's login */
        if (checked) {
            char *d = dbname ? strdup(dbname) : NULL, *u = user ? strdup(user) : NULL;
            char *pw = password ? strdup(password) : NULL;
            HostRegistry *r = loop->hosts;
            pthread_mutex_lock(&r->lock); /* loop 0 copies them for its checks */
            if (!h->checked) {
                h->checked = true;
                h->next_check = 0; /* at the next tick */
            }
            free(h->check_db);
            free(h->check_user);
            wipe_free(h->check_password);
            h->check_db = d;
            h->check_user = u;
            h->check_password = pw;
            pthread_mutex_unlock(&r->lock);
        }
        hp += hn;
        if (*hp == ',') hp++;
    }
    hl->seen = hosts_list_changes(hl);
    return 0;
}

void hosts_list_free(Loop *loop, HostList *hl)
{
    for (int i = 0; i < hl->n; i++)
        host_release(loop, hl->v[i]);
    free(hl->v);
    hl->v = NULL;
    hl->n = 0;
}

unsigned hosts_list_changes(const HostList *hl)
{
    unsigned sum = 0;
    for (int i = 0; i < hl->n; i++)
        sum += atomic_load(&hl->v[i]->changes);
    return sum;
}

void hosts_list_failed(Loop *loop, HostList *hl)
{
    if (hl->lb == LB_DISABLE) {
        if (hl->turn)
            atomic_fetch_add(hl->turn, 1);
        else
            hl->next++;
    }
    for (int i = 0; i < hl->n; i++)
        hosts_suspect(loop, hl->v[i]);
}

Host *hosts_list_find(const HostList *hl, const char *name, const char *port)
{
    if (!name || !port) return NULL;
    int p = atoi(port);
    for (int i = 0; i < hl->n; i++)
        if (hl->v[i]->port == p && strcmp(hl->v[i]->name, name) == 0) return hl->v[i];
    return NULL;
}

/* ---------------------------------------------------------------- choosing */

/* Could a host in this state and role serve tsa?  Unknown counts as maybe. */
static bool host_usable(const Host *h, int tsa)
{
    if (atomic_load(&h->state) == HOST_DOWN) return false;
    int role = atomic_load(&h->role);
    switch (tsa) {
    case TSA_READ_WRITE:
    case TSA_PRIMARY:
        return role != HOST_ROLE_STANDBY;
    case TSA_STANDBY:
        return role != HOST_ROLE_PRIMARY;
    default: /* read-only: a primary may have default_transaction_read_only on */
        return true;
    }
}

static bool has_up_standby(const HostList *hl)
{
    for (int i = 0; i < hl->n; i++)
        if (atomic_load(&hl->v[i]->state) != HOST_DOWN &&
            atomic_load(&hl->v[i]->role) == HOST_ROLE_STANDBY)
            return true;
    return false;
}

/* The i-th element of a comma list ("" when absent). */
static void list_elem(const char *list, int i, char *out, size_t len)
{
    out[0] = 0;
    if (!list) return;
    const char *p = list;
    for (; i > 0 && *p; i--) {
        p += strcspn(p, ",");
        if (*p == ',') p++;
    }
    size_t n = strcspn(p, ",");
    if (n >= len) n = len - 1;
    memcpy(out, p, n);
    out[n] = 0;
}

/* Append v to the comma list *s (of *len bytes); `first`: no comma before it (v may be ""). */
static int append(char **s, size_t *len, const char *v, bool first)
{
    size_t vl = strlen(v);
    char *g = realloc(*s, *len + vl + 2);
    if (!g) return -1;
    *s = g;
    if (!first) g[(*len)++] = ',';
    memcpy(g + *len, v, vl + 1);
    *len += vl;
    return 0;
}

void hosts_pick_free(HostPick *pick)
{
    free(pick->host);
    free(pick->hostaddr);
    free(pick->port);
    memset(pick, 0, sizeof(*pick));
}

int hosts_pick(Loop *loop, HostList *hl, const char *hostaddr_list, HostPick *pick, char *why,
               size_t whylen)
{
    memset(pick, 0, sizeof(*pick));
    if (hl->n == 0) return 0;
    int order[HOSTS_LIST_MAX], n = 0;
    /* every loop's list of this entry takes turns on the same counter (hl->turn) */
    uint32_t at = hl->turn ? atomic_load(hl->turn) : hl->next;
    if (hl->lb == LB_ROUND_ROBIN) at = hl->turn ? atomic_fetch_add(hl->turn, 1) : hl->next++;
    uint32_t start = at % (uint32_t)hl->n;
    /* prefer-standby: the standbys first, then the rest; otherwise one pass */
    bool standbys_first = hl->tsa == TSA_PREFER_STANDBY && has_up_standby(hl);
    for (int pass = standbys_first ? 0 : 1; pass < 2; pass++) {
        for (int k = 0; k < hl->n; k++) {
            int i = (int)((start + (uint32_t)k) % (uint32_t)hl->n);
            const Host *h = hl->v[i];
            bool standby = atomic_load(&h->role) == HOST_ROLE_STANDBY;
            if (!host_usable(h, hl->tsa)) continue;
            char addr[8];
            list_elem(hostaddr_list, i, addr, sizeof(addr));
            if (strcmp(addr, "!") == 0) continue; /* its name did not resolve (pool.c) */
            if (standbys_first && (pass == 0) != standby) continue;
            order[n++] = i;
        }
    }
    if (n == 0) {
        size_t o = (size_t)snprintf(why, whylen, "no host is usable for target_session_attrs=%s:",
                                    config_tsa_name(hl->tsa));
        for (int i = 0; i < hl->n && o < whylen; i++) {
            const Host *h = hl->v[i];
            int st = atomic_load(&h->state);
            char addr[8];
            list_elem(hostaddr_list, i, addr, sizeof(addr));
            const char *what = strcmp(addr, "!") == 0 ? "unresolved"
                               : st == HOST_DOWN      ? "down"
                                                      : hosts_role_name(atomic_load(&h->role));
            o += (size_t)snprintf(why + o, whylen - o, " %s:%d %s", h->name, h->port, what);
        }
        /*
         * Clients wait for one: look more often until it comes, or until
         * they would have given up (each failed pick, at least one per
         * server_login_retry while clients wait, extends it).
         */
        usec_t now = time_now_usec(), wait = loop->cfg->query_wait_timeout;
        HostRegistry *r = loop->hosts;
        pthread_mutex_lock(&r->lock); /* loop 0's checks read them */
        for (int i = 0; i < hl->n; i++) {
            Host *h = hl->v[i];
            if (!h->checked) continue;
            h->wanted_until = now + (wait > 0 ? wait : 120 * USEC_PER_SEC);
            if (h->next_check > now + HOSTS_FAST_CHECK) h->next_check = now + HOSTS_FAST_CHECK;
        }
        pthread_mutex_unlock(&r->lock);
        return 0;
    }
    size_t hl_len = 0, al_len = 0, pl_len = 0;
    for (int k = 0; k < n; k++) {
        int i = order[k];
        char addr[256], port[16];
        list_elem(hostaddr_list, i, addr, sizeof(addr));
        snprintf(port, sizeof(port), "%d", hl->v[i]->port);
        if (append(&pick->host, &hl_len, hl->v[i]->name, k == 0) < 0 ||
            append(&pick->hostaddr, &al_len, addr, k == 0) < 0 ||
            append(&pick->port, &pl_len, port, k == 0) < 0) {
            hosts_pick_free(pick);
            return -1;
        }
    }
    /* a hostaddr list of empty elements only would make libpq complain: none then */
    bool any_addr = false;
    for (const char *p = pick->hostaddr; p && *p; p++)
        any_addr |= *p != ',';
    if (!any_addr) {
        free(pick->hostaddr);
        pick->hostaddr = NULL;
    }
    pick->count = n;
    return n;
}

/* ---------------------------------------------------------------- roles */

static void host_changed(Loop *loop, Host *h, const char *what)
{
    atomic_fetch_add(&h->changes, 1);
    pthread_mutex_lock(&loop->hosts->lock);
    h->wanted_until = 0;
    pthread_mutex_unlock(&loop->hosts->lock);
    log_info("host %s:%d is now %s", h->name, h->port, what);
}

static void hosts_on_changed_msg(Loop *loop, void *arg)
{
    (void)arg;
    pool_hosts_changed(loop);
}

/* A check changed a host: every loop's pools look at their hosts now. */
static void hosts_tell_pools(Loop *loop)
{
    pool_hosts_changed(loop);
    if (!loop->set) return;
    for (int i = 0; i < loop->set->n; i++) {
        if (loop->set->loops[i] == loop) continue;
        if (loop_post(loop->set->loops[i], hosts_on_changed_msg, NULL) < 0) {
            /* out of memory: that loop's janitor compares the change counters */
        }
    }
}

void hosts_note_role(Loop *loop, Host *h, bool standby)
{
    if (!h) return;
    int role = standby ? HOST_ROLE_STANDBY : HOST_ROLE_PRIMARY;
    atomic_store(&h->role_at, (long long)time_now_usec());
    int old = atomic_exchange(&h->role, role);
    /* a server that logged in proves the host answers */
    int st = atomic_exchange(&h->state, HOST_UP);
    if (old != role || st == HOST_DOWN) {
        /* the pools hear of it at the next janitor tick: this runs inside a server's relay */
        char what[64];
        snprintf(what, sizeof(what), "%s (reported by a server)", role_names[role]);
        host_changed(loop, h, what);
    }
}

bool hosts_server_fits(const HostList *hl, const Host *h, int standby_param, bool read_only)
{
    int tsa = hl->tsa;
    if (tsa == TSA_ANY) return true;
    int role = h ? atomic_load(&h->role) : HOST_ROLE_UNKNOWN;
    bool standby = role != HOST_ROLE_UNKNOWN ? role == HOST_ROLE_STANDBY : standby_param == 1;
    bool known = role != HOST_ROLE_UNKNOWN || standby_param >= 0;
    if (!known) return true; /* nothing reported: libpq checked at login */
    switch (tsa) {
    case TSA_READ_WRITE:
        return !standby && !read_only;
    case TSA_READ_ONLY:
        return standby || read_only;
    case TSA_PRIMARY:
        return !standby;
    case TSA_STANDBY:
        return standby;
    case TSA_PREFER_STANDBY:
        /* a primary serves while no standby is up; once one is, sessions move back */
        return standby || !has_up_standby(hl);
    default:
        return true;
    }
}

void hosts_server_opened(Loop *loop, Host *h)
{
    HostRegistry *r = loop->hosts;
    pthread_mutex_lock(&r->lock);
    h->refs++;
    pthread_mutex_unlock(&r->lock);
    atomic_fetch_add(&h->servers, 1);
}

void hosts_server_closed(Loop *loop, Host *h)
{
    atomic_fetch_sub(&h->servers, 1);
    host_release(loop, h);
}

/* ---------------------------------------------------------------- checks */

typedef struct host_check_job {
    WorkqJob job;
    Loop *loop;
    Host *host;   /* referenced until the completion */
    PGconn *conn; /* in: the kept connection or NULL; out: the one to keep or NULL */
    char *kw_store[12];
    const char *kw[12], *val[12];
    usec_t timeout;
    bool probe_only; /* no login to check with: a TCP (or socket) connect only */
    /* results */
    usec_t started, latency;
    int state, role;
    char error[256];
} HostCheckJob;

/* Wait for fd until the deadline: 1 ready, 0 timed out, -1 error. */
static int wait_fd(int fd, bool for_write, usec_t deadline)
{
    for (;;) {
        usec_t left = deadline - time_now_usec();
        if (left <= 0) return 0;
        struct pollfd pfd = {.fd = fd, .events = for_write ? POLLOUT : POLLIN};
        int r = poll(&pfd, 1, (int)((left + 999) / 1000));
        if (r > 0) return 1;
        if (r == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

static void check_error(HostCheckJob *j, int state, const char *what, const char *text)
{
    char sqlstate[6], msg[200];
    if (!text) {
        j->state = HOST_DOWN;
        snprintf(j->error, sizeof(j->error), "%s: out of memory", what);
    } else if (proto_parse_libpq_error(text, sqlstate, msg, sizeof(msg))) {
        /* PostgreSQL itself answered: up, unless it says it takes no connections */
        j->state = strcmp(sqlstate, "57P03") == 0 ? HOST_DOWN : state;
        snprintf(j->error, sizeof(j->error), "%s: %s %s", what, sqlstate, msg);
    } else {
        j->state = HOST_DOWN;
        snprintf(j->error, sizeof(j->error), "%s: %s", what, msg);
    }
}

static PGconn *check_connect(HostCheckJob *j, usec_t deadline)
{
    PGconn *pg = PQconnectStartParams(j->kw, j->val, 0);
    if (!pg) return NULL;
    PQsetErrorVerbosity(pg, PQERRORS_VERBOSE);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    while (PQstatus(pg) != CONNECTION_BAD && st != PGRES_POLLING_OK && st != PGRES_POLLING_FAILED) {
        int r = wait_fd(PQsocket(pg), st == PGRES_POLLING_WRITING, deadline);
        if (r <= 0) {
            snprintf(j->error, sizeof(j->error), "connect: %s",
                     r == 0 ? "timed out (host_check_timeout)" : strerror(errno));
            j->state = HOST_DOWN;
            PQfinish(pg);
            return NULL;
        }
        st = PQconnectPoll(pg);
    }
    if (PQstatus(pg) != CONNECTION_OK) {
        check_error(j, HOST_UP, "connect", PQerrorMessage(pg));
        PQfinish(pg);
        return NULL;
    }
    return pg;
}

/* Run the role query with the deadline; 1 = standby, 0 = primary, -1 = failed (error set). */
static int check_query(HostCheckJob *j, PGconn *pg, usec_t deadline)
{
    if (!PQsendQuery(pg, "SELECT pg_catalog.pg_is_in_recovery()")) goto broken;
    if (PQsetnonblocking(pg, 1) < 0) goto broken;
    while (PQflush(pg) > 0)
        if (wait_fd(PQsocket(pg), true, deadline) <= 0) goto timeout;
    int answer = -1;
    for (;;) {
        while (PQisBusy(pg)) {
            if (wait_fd(PQsocket(pg), false, deadline) <= 0) goto timeout;
            if (!PQconsumeInput(pg)) goto broken;
        }
        PGresult *res = PQgetResult(pg);
        if (!res) break;
        if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
            answer = PQgetvalue(res, 0, 0)[0] == 't';
        else if (answer < 0)
            check_error(j, HOST_UP, "check query", PQresultErrorMessage(res));
        PQclear(res);
    }
    PQsetnonblocking(pg, 0);
    return answer;
timeout:
    j->state = HOST_DOWN;
    snprintf(j->error, sizeof(j->error), "check query timed out (host_check_timeout)");
    return -1;
broken:
    check_error(j, HOST_DOWN, "check query", PQerrorMessage(pg));
    j->state = HOST_DOWN;
    return -1;
}

/* Connect to one address before the deadline and close: 0, or -1 with the error set. */
static int probe_addr(HostCheckJob *j, const struct sockaddr *sa, socklen_t len, usec_t deadline)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), err = 0;
    if (fd < 0 || (connect(fd, sa, len) < 0 && (err = errno) != EINPROGRESS)) {
        snprintf(j->error, sizeof(j->error), "connect: %s", strerror(fd < 0 ? errno : err));
        if (fd >= 0) close(fd);
        return -1;
    }
    if (err == EINPROGRESS) {
        socklen_t elen = sizeof(err);
        int r = wait_fd(fd, true, deadline);
        if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0) {
            snprintf(j->error, sizeof(j->error), "connect: %s",
                     r == 0 ? "timed out (host_check_timeout)" : strerror(r < 0 ? errno : err));
            close(fd);
            return -1;
        }
    }
    /* closed before any byte: PostgreSQL logs nothing for that */
    close(fd);
    return 0;
}

/*
 * Without a user to log in as, a login would only fill the server's log with
 * failed authentications every interval: the check is then a connect, and
 * the role comes from what servers report.
 */
static void check_probe(HostCheckJob *j, usec_t deadline)
{
    const char *host = j->val[0], *port = j->val[1];
    int rc = -1;
    if (host[0] == '/') {
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        snprintf(sun.sun_path, sizeof(sun.sun_path), "%s/.s.PGSQL.%s", host, port);
        rc = probe_addr(j, (struct sockaddr *)&sun, sizeof(sun), deadline);
    } else {
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        int g = getaddrinfo(host, port, &hints, &res);
        if (g != 0) snprintf(j->error, sizeof(j->error), "could not resolve: %s", gai_strerror(g));
        for (struct addrinfo *ai = res; ai && rc < 0; ai = ai->ai_next)
            rc = probe_addr(j, ai->ai_addr, ai->ai_addrlen, deadline);
        if (res) freeaddrinfo(res);
    }
    if (rc == 0) {
        j->state = HOST_UP;
        j->error[0] = 0;
    }
}

static void check_work(WorkqJob *wj)
{
    HostCheckJob *j = (HostCheckJob *)wj;
    j->started = time_now_usec();
    usec_t deadline = j->started + j->timeout;
    j->state = HOST_DOWN;
    j->role = HOST_ROLE_UNKNOWN;
    if (j->probe_only) {
        check_probe(j, deadline);
        j->latency = time_now_usec() - j->started;
        return;
    }
    /* a kept connection first; if it broke (the server restarted), one new login */
    for (int attempt = 0; attempt < 2; attempt++) {
        bool fresh = false;
        if (!j->conn || PQstatus(j->conn) != CONNECTION_OK) {
            if (j->conn) PQfinish(j->conn);
            j->conn = check_connect(j, deadline);
            if (!j->conn) break;
            fresh = true;
        }
        j->error[0] = 0;
        int r = check_query(j, j->conn, deadline);
        if (r >= 0) {
            j->state = HOST_UP;
            j->role = r ? HOST_ROLE_STANDBY : HOST_ROLE_PRIMARY;
            break;
        }
        PQfinish(j->conn);
        j->conn = NULL;
        if (fresh || time_now_usec() >= deadline) break;
    }
    j->latency = time_now_usec() - j->started;
}

static void check_job_free(HostCheckJob *j)
{
    for (size_t i = 0; i < sizeof(j->kw_store) / sizeof(j->kw_store[0]); i++)
        wipe_free(j->kw_store[i]);
    free(j);
}

static void check_done(WorkqJob *wj, int status)
{
    HostCheckJob *j = (HostCheckJob *)wj;
    Loop *loop = j->loop;
    Host *h = j->host;
    HostRegistry *r = loop->hosts;
    pthread_mutex_lock(&r->lock);
    h->checking = false;
    if (status != 0 || loop->shutdown == SHUTDOWN_IMMEDIATE) {
        pthread_mutex_unlock(&r->lock);
        if (j->conn) PQfinish(j->conn);
        goto out;
    }
    PGconn *stale = h->check_conn; /* none expected: one job at a time */
    h->check_conn = j->conn;
    usec_t now = time_now_usec();
    atomic_store(&h->last_check, (long long)now);
    atomic_store(&h->check_usec, (long long)j->latency);
    snprintf(h->last_error, sizeof(h->last_error), "%s", j->error);
    int old_state = atomic_exchange(&h->state, j->state);
    int old_role = atomic_load(&h->role);
    bool role_changed = false;
    /* a role learned from a server after this check began is newer */
    if (j->role != HOST_ROLE_UNKNOWN && j->started > atomic_load(&h->role_at)) {
        atomic_store(&h->role, j->role);
        atomic_store(&h->role_at, (long long)j->started);
        role_changed = old_role != j->role;
    }
    usec_t interval = loop->cfg->host_check_interval;
    if (now < h->wanted_until && (interval == 0 || interval > HOSTS_FAST_CHECK))
        interval = HOSTS_FAST_CHECK;
    h->next_check = interval ? now + interval : 0;
    if (h->recheck) {
        h->recheck = false;
        h->next_check = now; /* suspected while this check ran */
    }
    pthread_mutex_unlock(&r->lock);
    if (stale) PQfinish(stale);
    if (old_state != j->state || role_changed) {
        char what[400];
        if (j->state == HOST_DOWN)
            snprintf(what, sizeof(what), "down: %s", j->error);
        else
            snprintf(what, sizeof(what), "%s (%s, check took %.1f ms)", hosts_state_name(j->state),
                     hosts_role_name(atomic_load(&h->role)), (double)j->latency / 1000.0);
        host_changed(loop, h, what);
        hosts_tell_pools(loop);
    }
out:
    host_release(loop, h);
    check_job_free(j);
}

static void check_kv(HostCheckJob *j, int *n, const char *k, const char *v)
{
    if (!v || !*v) return;
    char *copy = strdup(v);
    if (!copy) return;
    j->kw_store[*n] = copy;
    j->kw[*n] = k;
    j->val[*n] = copy;
    (*n)++;
}

/*
 * Start a check of h on loop 0.  hosts_tick took a reference for the job and
 * set h->checking; on failure both are undone here.
 */
static void check_start(Loop *loop, Host *h)
{
    Config *cfg = loop->cfg;
    HostRegistry *r = loop->hosts;
    HostCheckJob *j = calloc(1, sizeof(*j));
    if (!j) {
        pthread_mutex_lock(&r->lock);
        h->checking = false;
        h->next_check = time_now_usec() + HOSTS_FAST_CHECK; /* out of memory: later */
        pthread_mutex_unlock(&r->lock);
        host_release(loop, h);
        return;
    }
    j->loop = loop;
    j->host = h;
    j->timeout = cfg->host_check_timeout > 0 ? cfg->host_check_timeout : 2 * USEC_PER_SEC;
    char port[16], timeout[16];
    snprintf(port, sizeof(port), "%d", h->port);
    /* libpq's own limit (whole seconds, at least 2) only backs up the deadline */
    snprintf(timeout, sizeof(timeout), "%lld",
             (long long)(j->timeout / USEC_PER_SEC < 2 ? 2 : j->timeout / USEC_PER_SEC + 1));
    int n = 0;
    pthread_mutex_lock(&r->lock); /* the login may be replaced by any loop's databases */
    check_kv(j, &n, "host", h->name);
    check_kv(j, &n, "port", port);
    check_kv(j, &n, "dbname", h->check_db);
    check_kv(j, &n, "user", h->check_user);
    check_kv(j, &n, "password", h->check_password);
    check_kv(j, &n, "application_name", "pgfunnel host check");
    check_kv(j, &n, "connect_timeout", timeout);
    check_kv(j, &n, "sslmode", config_sslmode_name(cfg->server_tls_sslmode));
    check_kv(j, &n, "sslrootcert", cfg->server_tls_ca_file);
    check_kv(j, &n, "sslcert", cfg->server_tls_cert_file);
    check_kv(j, &n, "sslkey", cfg->server_tls_key_file);
    j->kw[n] = j->val[n] = NULL;
    j->probe_only = !h->check_user || !*h->check_user;
    j->conn = h->check_conn;
    h->check_conn = NULL;
    pthread_mutex_unlock(&r->lock);
    if (workq_submit(loop->workq, &j->job, check_work, check_done) < 0) {
        pthread_mutex_lock(&r->lock);
        h->check_conn = j->conn;
        h->checking = false;
        h->next_check = time_now_usec() + HOSTS_FAST_CHECK; /* the queue is full: later */
        pthread_mutex_unlock(&r->lock);
        j->conn = NULL;
        host_release(loop, h);
        check_job_free(j);
    }
}

void hosts_suspect(Loop *loop, Host *h)
{
    HostRegistry *r = loop->hosts;
    if (!h || !r || loop->cfg->host_check_interval == 0 || loop->shutdown == SHUTDOWN_IMMEDIATE)
        return;
    pthread_mutex_lock(&r->lock);
    bool checked = h->checked;
    if (checked && h->checking)
        h->recheck = true;
    else if (checked)
        h->next_check = 0;
    pthread_mutex_unlock(&r->lock);
    if (checked) hosts_wake_owner(loop);
}

/* Loop 0 (the checks' owner), from its janitor or when asked: start the checks that are due. */
void hosts_tick(Loop *loop, usec_t now)
{
    HostRegistry *r = loop->hosts;
    if (!r || (loop->set && loop->index != 0) || loop->cfg->host_check_interval == 0 ||
        loop->shutdown == SHUTDOWN_IMMEDIATE)
        return;
    Host *due[32];
    int n;
    do {
        /* any loop adds hosts: the walk holds the lock, the starts do not */
        n = 0;
        ListNode *it;
        pthread_mutex_lock(&r->lock);
        list_for_each(it, &r->hosts)
        {
            Host *h = list_entry(it, Host, node);
            if (!h->checked || h->checking || now < h->next_check) continue;
            h->checking = true;
            h->refs++; /* the job's */
            due[n++] = h;
            if (n == (int)(sizeof(due) / sizeof(due[0]))) break;
        }
        pthread_mutex_unlock(&r->lock);
        for (int i = 0; i < n; i++)
            check_start(loop, due[i]);
    } while (n == (int)(sizeof(due) / sizeof(due[0])));
}

const Host *hosts_at(Loop *loop, size_t i)
{
    HostRegistry *r = loop->hosts;
    if (!r) return NULL;
    ListNode *it;
    list_for_each(it, &r->hosts)
    {
        if (i-- == 0) return list_entry(it, Host, node);
    }
    return NULL;
}

void hosts_free_all(Loop *loop)
{
    HostRegistry *r = loop->hosts;
    loop->hosts = NULL;
    if (!r || loop->set) return; /* the set's: hosts_registry_free after every loop */
    hosts_registry_free(r);
}

void hosts_registry_free(HostRegistry *r)
{
    if (!r) return;
    /* databases and servers are gone: whatever is left is unreferenced */
    while (!list_empty(&r->hosts)) {
        Host *h = list_entry(list_first(&r->hosts), Host, node);
        list_remove(&r->hosts, &h->node);
        host_free(h);
    }
    hmap_free(&r->index);
    pthread_mutex_destroy(&r->lock);
    free(r);
}
