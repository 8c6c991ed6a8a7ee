/*
 * prepared.c — prepared statements across pooled servers (see prepared.h).
 */
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "prepared.h"
#include "proto.h"
#include "server.h"

struct ps_stmt {
    PsStmt *hnext;
    uint64_t id;
    uint32_t hash;
    atomic_int refs; /* client maps, server caches, queued requests: of any loop */
    char name[32];   /* internal name used on servers */
    char *query;
    uint32_t query_len;
    uint8_t *types; /* ntypes * 4 bytes, as sent */
    uint16_t ntypes;
};

typedef struct ps_client_entry {
    char *name;
    PsStmt *stmt;
} PsClientEntry;

bool ps_enabled(const Pool *p)
{
    return p && p->mode != POOL_MODE_SESSION && p->loop->cfg->max_prepared_statements > 0;
}

/* ---------------------------------------------------------------- registry */

static uint32_t ps_hash(const char *q, uint32_t qlen, const uint8_t *types, uint16_t ntypes)
{
    uint32_t h = 2166136261u;
    for (uint32_t i = 0; i < qlen; i++)
        h = (h ^ (uint8_t)q[i]) * 16777619u;
    for (uint32_t i = 0; i < (uint32_t)ntypes * 4; i++)
        h = (h ^ types[i]) * 16777619u;
    return h;
}

static PsStmt *ps_registry_find(PsRegistry *r, uint32_t h, const char *q, uint32_t qlen,
                                const uint8_t *types, uint16_t ntypes);

/*
 * The registry is shared by the pool's per-loop parts (pooldir.h): lookups
 * and additions take its lock; references are atomic, and the one that
 * drops the last takes the lock to unlink the statement.
 */
static PsStmt *ps_registry_get(PsRegistry *r, const char *q, uint32_t qlen, const uint8_t *types,
                               uint16_t ntypes)
{
    uint32_t h = ps_hash(q, qlen, types, ntypes);
    pthread_mutex_lock(&r->lock);
    PsStmt *s = ps_registry_find(r, h, q, qlen, types, ntypes);
    pthread_mutex_unlock(&r->lock);
    return s;
}

/* Find or add (registry lock held). */
static PsStmt *ps_registry_find(PsRegistry *r, uint32_t h, const char *q, uint32_t qlen,
                                const uint8_t *types, uint16_t ntypes)
{
    if (r->buckets) {
        for (PsStmt *s = r->buckets[h & r->mask]; s; s = s->hnext)
            if (s->hash == h && s->query_len == qlen && s->ntypes == ntypes &&
                memcmp(s->query, q, qlen) == 0 &&
                memcmp(s->types, types, (size_t)ntypes * 4) == 0) {
                atomic_fetch_add(&s->refs, 1);
                return s;
            }
    }
    if (!r->buckets || r->count > r->mask) {
        uint32_t size = r->buckets ? (r->mask + 1) * 2 : 256;
        PsStmt **nb = calloc(size, sizeof(*nb));
        if (!nb) return NULL;
        if (r->buckets) {
            for (uint32_t i = 0; i <= r->mask; i++) {
                PsStmt *s = r->buckets[i];
                while (s) {
                    PsStmt *next = s->hnext;
                    s->hnext = nb[s->hash & (size - 1)];
                    nb[s->hash & (size - 1)] = s;
                    s = next;
                }
            }
            free(r->buckets);
        }
        r->buckets = nb;
        r->mask = size - 1;
    }
    PsStmt *s = calloc(1, sizeof(*s));
    if (!s) return NULL;
    s->query = malloc(qlen + 1);
    s->types = malloc((size_t)ntypes * 4 + 1);
    if (!s->query || !s->types) {
        free(s->query);
        free(s->types);
        free(s);
        return NULL;
    }
    memcpy(s->query, q, qlen);
    s->query[qlen] = 0;
    memcpy(s->types, types, (size_t)ntypes * 4);
    s->query_len = qlen;
    s->ntypes = ntypes;
    s->hash = h;
    s->id = ++r->next_id;
    snprintf(s->name, sizeof(s->name), "pgf_%llu", (unsigned long long)s->id);
    atomic_init(&s->refs, 1);
    s->hnext = r->buckets[h & r->mask];
    r->buckets[h & r->mask] = s;
    r->count++;
    return s;
}

static void ps_unref(PsRegistry *r, PsStmt *s)
{
    if (!s || atomic_fetch_sub(&s->refs, 1) != 1) return;
    pthread_mutex_lock(&r->lock);
    /* a lookup may have found it again before we got the lock */
    if (atomic_load(&s->refs) > 0) {
        pthread_mutex_unlock(&r->lock);
        return;
    }
    PsStmt **pp = &r->buckets[s->hash & r->mask];
    while (*pp && *pp != s)
        pp = &(*pp)->hnext;
    if (*pp) *pp = s->hnext;
    r->count--;
    pthread_mutex_unlock(&r->lock);
    free(s->query);
    free(s->types);
    free(s);
}

void ps_registry_free(PsRegistry *r)
{
    if (r->buckets) {
        for (uint32_t i = 0; i <= r->mask; i++) {
            PsStmt *s = r->buckets[i];
            while (s) {
                PsStmt *next = s->hnext;
                free(s->query);
                free(s->types);
                free(s);
                s = next;
            }
        }
    }
    free(r->buckets);
    memset(r, 0, sizeof(*r));
}

/* ---------------------------------------------------------------- client map */

static int ps_map_find(const PsClientMap *m, const char *name)
{
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->v[i].name, name) == 0) return i;
    return -1;
}

static int ps_map_put(PsClientMap *m, PsRegistry *r, const char *name, PsStmt *s)
{
    int i = ps_map_find(m, name);
    if (i >= 0) {
        /* re-Parse under the same name after a Close still queued: the new text wins */
        ps_unref(r, m->v[i].stmt);
        m->v[i].stmt = s;
        return 0;
    }
    if (m->n == m->cap) {
        int cap = m->cap ? m->cap * 2 : 4;
        PsClientEntry *nv = realloc(m->v, (size_t)cap * sizeof(*nv));
        if (!nv) return -1;
        m->v = nv;
        m->cap = cap;
    }
    m->v[m->n].name = strdup(name);
    if (!m->v[m->n].name) return -1;
    m->v[m->n].stmt = s;
    m->n++;
    return 0;
}

static void ps_map_remove_at(PsClientMap *m, PsRegistry *r, int i)
{
    ps_unref(r, m->v[i].stmt);
    free(m->v[i].name);
    m->v[i] = m->v[m->n - 1];
    m->n--;
}

void ps_client_map_free(PsClientMap *m, PsRegistry *r)
{
    while (m->n > 0)
        ps_map_remove_at(m, r, m->n - 1);
    free(m->v);
    memset(m, 0, sizeof(*m));
}

int ps_client_map_count(const PsClientMap *m)
{
    return m->n;
}

/* ---------------------------------------------------------------- server cache */

static int ps_cache_find(PsServerCache *sc, const PsStmt *s)
{
    for (int i = 0; i < sc->n; i++)
        if (sc->v[i] == s) return i;
    return -1;
}

static void ps_cache_remove_at(PsServerCache *sc, PsRegistry *r, int i)
{
    ps_unref(r, sc->v[i]);
    sc->v[i] = sc->v[sc->n - 1];
    sc->used[i] = sc->used[sc->n - 1];
    sc->n--;
}

void ps_server_cache_free(PsServerCache *sc, PsRegistry *r)
{
    while (sc->n > 0)
        ps_cache_remove_at(sc, r, sc->n - 1);
    free(sc->v);
    free(sc->used);
    memset(sc, 0, sizeof(*sc));
}

int ps_server_cache_count(const PsServerCache *sc)
{
    return sc->n;
}

/* ---------------------------------------------------------------- queue */

static int ps_queue_push(PsQueue *q, uint8_t kind, uint8_t flags, PsStmt *stmt, char *client_name)
{
    if (q->count == q->cap) {
        uint32_t cap = q->cap ? q->cap * 2 : 16;
        PsPending *nv = malloc(cap * sizeof(*nv));
        if (!nv) return -1;
        for (uint32_t i = 0; i < q->count; i++)
            nv[i] = q->v[(q->head + i) % q->cap];
        free(q->v);
        q->v = nv;
        q->cap = cap;
        q->head = 0;
    }
    PsPending *p = &q->v[(q->head + q->count) % q->cap];
    p->kind = kind;
    p->flags = flags;
    p->stmt = stmt;
    p->client_name = client_name;
    q->count++;
    if (flags & PS_INJECT) q->injected++;
    return 0;
}

/* Put an entry before the head; only after a pop, so there is room. */
static void ps_queue_push_front(PsQueue *q, uint8_t kind, uint8_t flags, char *client_name)
{
    q->head = (q->head + q->cap - 1) % q->cap;
    PsPending *p = &q->v[q->head];
    p->kind = kind;
    p->flags = flags;
    p->stmt = NULL;
    p->client_name = client_name;
    q->count++;
    if (flags & PS_INJECT) q->injected++; /* ps_queue_pop counts it down */
}

static PsPending *ps_queue_head(PsQueue *q)
{
    return q->count ? &q->v[q->head] : NULL;
}

static void ps_queue_pop(PsQueue *q, PsRegistry *r)
{
    PsPending *p = &q->v[q->head];
    if (p->flags & PS_INJECT) q->injected--;
    ps_unref(r, p->stmt);
    free(p->client_name);
    q->head = (q->head + 1) % q->cap;
    q->count--;
}

void ps_queue_clear(PsQueue *q, PsRegistry *r)
{
    while (q->count)
        ps_queue_pop(q, r);
    free(q->v);
    memset(q, 0, sizeof(*q));
}

/* ---------------------------------------------------------------- client side */

static int ps_send(Server *s, PktBuf *b)
{
    int r = b->failed ? -1 : server_send(s, b->data, b->len);
    pkt_reset(b);
    return r;
}

/* Make sure the server has stmt: Parse it there (answer swallowed), evicting the LRU. */
static int ps_ensure_on_server(Client *c, PsStmt *st, PktBuf *b)
{
    Server *s = c->server;
    Pool *p = c->pool;
    PsServerCache *sc = &s->ps;
    int i = ps_cache_find(sc, st);
    if (i >= 0) {
        sc->used[i] = ++sc->clock;
        return 0;
    }
    int max = p->loop->cfg->max_prepared_statements;
    if (sc->cap < max) {
        PsStmt **nv = realloc(sc->v, (size_t)max * sizeof(*nv));
        if (!nv) return -1;
        sc->v = nv;
        uint64_t *nu = realloc(sc->used, (size_t)max * sizeof(*nu));
        if (!nu) return -1;
        sc->used = nu;
        sc->cap = max;
    }
    while (sc->n >= max && sc->n > 0) {
        int lru = 0;
        for (int k = 1; k < sc->n; k++)
            if (sc->used[k] < sc->used[lru]) lru = k;
        pkt_begin(b, 'C');
        pkt_put_u8(b, 'S');
        pkt_put_str(b, sc->v[lru]->name);
        pkt_end(b);
        if (ps_send(s, b) < 0 || ps_queue_push(&s->psq, 'C', PS_SWALLOW, NULL, NULL) < 0) return -1;
        ps_cache_remove_at(sc, p->ps, lru);
    }
    pkt_begin(b, 'P');
    pkt_put_str(b, st->name);
    pkt_put_str(b, st->query);
    pkt_put_u16(b, st->ntypes);
    pkt_put_bytes(b, st->types, (size_t)st->ntypes * 4);
    pkt_end(b);
    if (ps_send(s, b) < 0) return -1;
    atomic_fetch_add(&st->refs, 2); /* the cache and the queued Parse */
    sc->v[sc->n] = st;
    sc->used[sc->n] = ++sc->clock;
    sc->n++;
    p->stats.ps_server_parses++;
    return ps_queue_push(&s->psq, 'P', PS_SWALLOW, st, NULL);
}

/* A Close answered locally takes effect when its answer is given, not before. */
static void ps_apply_close(Client *c, PsStmt *st, const char *name)
{
    if (!st) return; /* the name was unknown */
    int i = ps_map_find(&c->ps, name);
    if (i >= 0 && c->ps.v[i].stmt == st) ps_map_remove_at(&c->ps, c->pool->ps, i);
}

/*
 * Answer a Parse or Close locally: now, if nothing is outstanding and the
 * server is not in the middle of a message; else queued, so the answer
 * lands where the server's would have (and is dropped if an earlier error
 * makes the server skip to Sync, as PostgreSQL would skip the request).
 */
static int ps_inject(Client *c, uint8_t kind, PsStmt *st, const char *name)
{
    Server *s = c->server;
    if (s->psq.count == 0 && s->fwd_left == 0) {
        if (kind == 'C') ps_apply_close(c, st, name);
        PktBuf b;
        pkt_init(&b);
        pkt_begin(&b, kind == 'P' ? '1' : '3');
        pkt_end(&b);
        int r = b.failed ? -1 : conn_send(&c->conn, b.data, b.len);
        pkt_free(&b);
        return r;
    }
    char *n = strdup(name);
    if (!n) return -1;
    if (st) atomic_fetch_add(&st->refs, 1);
    if (ps_queue_push(&s->psq, kind, PS_INJECT, st, n) < 0) {
        if (st) atomic_fetch_sub(&st->refs, 1);
        free(n);
        return -1;
    }
    if (s->psq.count == 1) s->ps_inject_pending = true; /* after the message being relayed */
    if (s->psq.injected == PS_INJECT_MAX) {
        /* a Flush makes the server send the answers these wait for (see prepared.h) */
        static const uint8_t flush[5] = {'H', 0, 0, 0, 4};
        if (server_send(s, flush, sizeof(flush)) < 0) return -1;
    }
    return 0;
}

/* Statements PostgreSQL still accepts in an aborted transaction. */
static bool ps_is_transaction_exit(const char *q)
{
    static const char *const words[] = {"rollback", "commit", "end", "abort", NULL};
    while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
        q++;
    for (int i = 0; words[i]; i++) {
        size_t n = strlen(words[i]);
        if (strncasecmp(q, words[i], n) == 0 && !isalnum((unsigned char)q[n])) return true;
    }
    return false;
}

/* Is a Close of this client name queued, to take effect before what is sent now? */
static bool ps_close_pending(const PsQueue *q, const char *name)
{
    for (uint32_t i = 0; i < q->count; i++) {
        const PsPending *p = &q->v[(q->head + i) % q->cap];
        if (p->kind == 'C' && (p->flags & PS_INJECT) && p->client_name &&
            strcmp(p->client_name, name) == 0)
            return true;
    }
    return false;
}

/* A statement name never created on a server (internal names are pgf_<n>). */
#define PS_PROBE_NAME "pgf_"

/*
 * The client Parses a name it already uses: PostgreSQL refuses that with
 * 42P05 and skips the rest up to Sync.  The server must skip the same
 * messages, so it gets a Describe of a statement that does not exist; its
 * error is swallowed and the client gets 42P05 in its place (prepared.h,
 * PS_DUPLICATE).  The name keeps its statement.  In a transaction known to
 * be aborted PostgreSQL refuses the Parse before it looks at the name:
 * 25P02 then, unless the query ends the transaction.
 */
static int ps_refuse_duplicate(Client *c, const char *name, const char *query)
{
    Server *s = c->server;
    PktBuf b;
    pkt_init(&b);
    pkt_begin(&b, 'D');
    pkt_put_u8(&b, 'S');
    pkt_put_str(&b, PS_PROBE_NAME);
    pkt_end(&b);
    char *n = strdup(name);
    int rc = n ? ps_send(s, &b) : -1;
    uint8_t flags = PS_SWALLOW | PS_DUPLICATE;
    if (s->tx_status == 'E' && s->psq.count == 0 && !ps_is_transaction_exit(query))
        flags |= PS_ABORTED;
    if (rc == 0) rc = ps_queue_push(&s->psq, 'D', flags, NULL, n);
    if (rc < 0) free(n);
    pkt_free(&b);
    return rc;
}

static int ps_handle_parse(Client *c, const uint8_t *msg, uint32_t len, char *err, size_t errlen)
{
    PktReader r;
    rd_init(&r, msg + 5, len - 4);
    const char *name = rd_str(&r);
    const char *query = rd_str(&r);
    uint16_t ntypes = rd_u16(&r);
    const uint8_t *types = rd_bytes(&r, (size_t)ntypes * 4);
    if (r.bad || rd_left(&r) != 0) {
        snprintf(err, errlen, "invalid Parse message");
        return -1;
    }
    Pool *p = c->pool;
    Server *s = c->server;
    p->stats.ps_client_parses++;
    if (ps_map_find(&c->ps, name) >= 0 && !ps_close_pending(&s->psq, name))
        return ps_refuse_duplicate(c, name, query) < 0
                   ? (snprintf(err, errlen, "out of memory"), -1)
                   : 0;
    PsStmt *st = ps_registry_get(p->ps, query, (uint32_t)strlen(query), types, ntypes);
    if (!st) goto oom;
    if (ps_map_put(&c->ps, p->ps, name, st) < 0) {
        ps_unref(p->ps, st);
        goto oom;
    }
    int i = ps_cache_find(&s->ps, st);
    if (i >= 0 && (s->tx_status != 'E' || s->psq.count > 0 || ps_is_transaction_exit(query))) {
        s->ps.used[i] = ++s->ps.clock;
        return ps_inject(c, 'P', st, name) < 0 ? (snprintf(err, errlen, "out of memory"), -1) : 0;
    }
    PktBuf b;
    pkt_init(&b);
    int rc;
    if (i >= 0) {
        /*
         * In an aborted transaction PostgreSQL refuses a Parse (25P02): send
         * one, so the client gets that very error and the name is undone.
         */
        pkt_begin(&b, 'P');
        pkt_put_str(&b, st->name);
        pkt_put_str(&b, st->query);
        pkt_put_u16(&b, st->ntypes);
        pkt_put_bytes(&b, st->types, (size_t)st->ntypes * 4);
        pkt_end(&b);
        rc = ps_send(s, &b);
        char *n = rc == 0 ? strdup(name) : NULL;
        atomic_fetch_add(&st->refs, 1);
        if (!n || ps_queue_push(&s->psq, 'P', PS_NOCACHE, st, n) < 0) {
            free(n);
            atomic_fetch_sub(&st->refs, 1);
            rc = -1;
        }
    } else {
        /* reuse the ensure path but let the client see this ParseComplete */
        rc = ps_ensure_on_server(c, st, &b);
        if (rc == 0) {
            PsPending *last = &s->psq.v[(s->psq.head + s->psq.count - 1) % s->psq.cap];
            last->flags = 0;
            last->client_name = strdup(name);
            if (!last->client_name) rc = -1;
        }
    }
    pkt_free(&b);
    if (rc < 0) goto oom;
    return 0;
oom:
    snprintf(err, errlen, "out of memory");
    return -1;
}

/*
 * Bind / Describe / Close naming a statement.  Only the names at the start
 * are needed; *consumed is what this call took care of.
 */
int ps_client_message(Client *c, const uint8_t *msg, uint32_t avail, uint32_t *consumed, char *err,
                      size_t errlen)
{
    uint8_t type = msg[0];
    uint32_t len = proto_get_u32(msg + 1);
    Server *s = c->server;
    Pool *p = c->pool;
    *consumed = 0;
    if (type == 'P') {
        const uint8_t *nul = memchr(msg + 5, 0, avail - 5);
        if (nul && nul == msg + 5) {
            ps_note_forwarded(c, 'P'); /* the unnamed statement passes through */
            return 1;
        }
        if (avail < len + 1) return 0; /* caller fetches the whole message */
        if (ps_handle_parse(c, msg, len, err, errlen) < 0) return -1;
        *consumed = len + 1;
        return 0;
    }
    PktReader r;
    rd_init(&r, msg + 5, (avail < len + 1 ? avail : len + 1) - 5);
    uint8_t stack[256]; /* a Bind head with the pool's name fits: no malloc per Bind */
    PktBuf b;
    pkt_init_with(&b, stack, sizeof(stack));
    int rc = 0;
    if (type == 'B') {
        const char *portal = rd_str(&r);
        const char *name = rd_str(&r);
        if (r.bad) return 0; /* names not complete yet */
        uint32_t head_len = (uint32_t)(r.p - msg);
        p->stats.ps_binds++;
        int i = ps_map_find(&c->ps, name);
        if (i < 0) {
            /* unknown: the server answers "does not exist" just like PostgreSQL */
            ps_note_forwarded(c, 'B');
            *consumed = 0;
            return 1; /* forward unchanged */
        }
        PsStmt *st = c->ps.v[i].stmt;
        if (ps_ensure_on_server(c, st, &b) < 0) goto oom;
        uint32_t nlen = len - (uint32_t)strlen(name) + (uint32_t)strlen(st->name);
        pkt_put_u8(&b, 'B');
        pkt_put_u32(&b, nlen);
        pkt_put_str(&b, portal);
        pkt_put_str(&b, st->name);
        if (ps_send(s, &b) < 0) goto oom;
        ps_note_forwarded(c, 'B');
        *consumed = head_len; /* the parameters follow unchanged */
        pkt_free(&b);
        return 0;
    }
    /* Describe / Close: 'S' or 'P' then a name; small, always whole */
    if (avail < len + 1) return 0;
    uint8_t what = rd_u8(&r);
    const char *name = rd_str(&r);
    if (r.bad || rd_left(&r) != 0 || (what != 'S' && what != 'P')) {
        snprintf(err, errlen, "invalid %s message", type == 'D' ? "Describe" : "Close");
        return -1;
    }
    if (what == 'P' || name[0] == 0) {
        ps_note_forwarded(c, type);
        return 1;
    }
    int i = ps_map_find(&c->ps, name);
    if (type == 'C') {
        /* closing is the client's business only: the statement stays on the servers */
        *consumed = len + 1;
        pkt_free(&b);
        /* PostgreSQL answers CloseComplete for an unknown name too (stmt NULL) */
        rc = ps_inject(c, 'C', i < 0 ? NULL : c->ps.v[i].stmt, name);
        if (rc < 0) goto oom_nofree;
        return 0;
    }
    if (i < 0) {
        ps_note_forwarded(c, 'D');
        return 1;
    }
    PsStmt *st = c->ps.v[i].stmt;
    if (ps_ensure_on_server(c, st, &b) < 0) goto oom;
    pkt_begin(&b, 'D');
    pkt_put_u8(&b, 'S');
    pkt_put_str(&b, st->name);
    pkt_end(&b);
    if (ps_send(s, &b) < 0) goto oom;
    ps_note_forwarded(c, 'D');
    *consumed = len + 1;
    pkt_free(&b);
    return 0;
oom:
    pkt_free(&b);
oom_nofree:
    snprintf(err, errlen, "out of memory");
    return -1;
}

void ps_note_forwarded(Client *c, uint8_t type)
{
    Server *s = c->server;
    if (!s) return;
    switch (type) {
    case 'P':
    case 'B':
    case 'D':
    case 'C':
    case 'E':
    case 'S':
    case 'Q':
    case 'F':
        if (ps_queue_push(&s->psq, type, 0, NULL, NULL) < 0) s->dirty = true;
        break;
    default:
        break;
    }
}

void ps_on_command_complete(Server *s, const uint8_t *msg, uint32_t total)
{
    /* the server really dropped its statements: so do the maps (not when it refused) */
    const char *tag = (const char *)msg + 5;
    size_t n = total > 5 ? strnlen(tag, total - 5) : 0;
    if ((n == 14 && memcmp(tag, "DEALLOCATE ALL", 14) == 0) ||
        (n == 11 && memcmp(tag, "DISCARD ALL", 11) == 0)) {
        if (s->client) ps_client_map_free(&s->client->ps, s->pool->ps);
        ps_server_forget_all(s);
    }
}

void ps_server_forget_all(Server *s)
{
    ps_server_cache_free(&s->ps, s->pool->ps);
}

/* ---------------------------------------------------------------- server side */

/* A Parse the pooler counted as done failed or was skipped: forget what it recorded. */
static void ps_undo(Server *s, PsPending *p)
{
    if (p->kind != 'P') return;
    if (p->stmt && !(p->flags & (PS_INJECT | PS_NOCACHE))) {
        int i = ps_cache_find(&s->ps, p->stmt);
        if (i >= 0) ps_cache_remove_at(&s->ps, s->pool->ps, i);
    }
    if (p->client_name && s->client) {
        int i = ps_map_find(&s->client->ps, p->client_name);
        if (i >= 0 && s->client->ps.v[i].stmt == p->stmt)
            ps_map_remove_at(&s->client->ps, s->pool->ps, i);
    }
}

int ps_server_response(Server *s, uint8_t type, bool *inject)
{
    PsQueue *q = &s->psq;
    PsRegistry *r = s->pool->ps;
    PsPending *h = ps_queue_head(q);
    int action = PS_RESP_FORWARD;
    *inject = false;
    if (!h) return action;
    switch (type) {
    case '1':
    case '2':
    case '3':
        if ((type == '1' && h->kind == 'P') || (type == '2' && h->kind == 'B') ||
            (type == '3' && h->kind == 'C')) {
            if (h->flags & PS_SWALLOW) action = PS_RESP_SWALLOW;
            ps_queue_pop(q, r);
        }
        break;
    case 'T':
    case 'n':
        if (h->kind == 'D') ps_queue_pop(q, r);
        break;
    case 'C':
    case 'I':
    case 's':
        if (h->kind == 'E') ps_queue_pop(q, r);
        break;
    case 'E': {
        if (h->kind == 'Q' || h->kind == 'F') break;
        /* a duplicate-Parse probe failed as planned: the client's 42P05 replaces its error */
        char *dup = NULL;
        uint8_t dup_flags = PS_INJECT | (h->flags & PS_ABORTED);
        if (h->flags & PS_DUPLICATE) {
            dup = h->client_name;
            h->client_name = NULL;
            action = PS_RESP_SWALLOW;
        }
        /* the server skips everything up to the next Sync: so do its answers */
        while ((h = ps_queue_head(q)) && h->kind != 'S') {
            ps_undo(s, h);
            ps_queue_pop(q, r);
        }
        if (dup) {
            ps_queue_push_front(q, 'E', dup_flags, dup);
            *inject = true;
        }
        return action;
    }
    case 'Z':
        while ((h = ps_queue_head(q))) {
            uint8_t k = h->kind;
            if (k != 'S' && k != 'Q' && k != 'F') ps_undo(s, h);
            ps_queue_pop(q, r);
            if (k == 'S' || k == 'Q' || k == 'F') break;
        }
        break;
    default:
        break;
    }
    h = ps_queue_head(q);
    *inject = h && (h->flags & PS_INJECT);
    return action;
}

int ps_send_injected(Server *s)
{
    PsQueue *q = &s->psq;
    PsPending *h;
    PktBuf b;
    pkt_init(&b);
    while ((h = ps_queue_head(q)) && (h->flags & PS_INJECT)) {
        if (h->kind == 'C' && s->client) ps_apply_close(s->client, h->stmt, h->client_name);
        if (h->kind == 'E' && (h->flags & PS_ABORTED)) {
            pkt_error(&b, "ERROR", "25P02",
                      "current transaction is aborted, commands ignored until end of transaction "
                      "block");
        } else if (h->kind == 'E') {
            pkt_error(&b, "ERROR", "42P05", "prepared statement \"%s\" already exists",
                      h->client_name ? h->client_name : "");
        } else {
            pkt_begin(&b, h->kind == 'P' ? '1' : '3');
            pkt_end(&b);
        }
        ps_queue_pop(q, s->pool->ps);
    }
    int rc = 0;
    if (b.len && s->client) rc = b.failed ? -1 : conn_send(&s->client->conn, b.data, b.len);
    pkt_free(&b);
    return rc;
}
