/*
 * prepared.h — named prepared statements in transaction and statement mode.
 *
 * A client's named statement may have been prepared on another server than
 * the one its next transaction gets.  So the pooler gives every distinct
 * statement (same query text and parameter types) a pool-wide internal name
 * ("pgf_<n>", a PsStmt in the pool's registry), remembers per client which
 * of its names means which PsStmt, and per server which PsStmts exist
 * there (an LRU of at most max_prepared_statements).  Parse, Bind,
 * Describe and Close are rewritten on the way to the server; a Bind or
 * Describe on a server that lacks the statement is preceded by an
 * invisible Parse whose ParseComplete is swallowed; a client's Parse of a
 * statement the server already has, and a client's Close, are answered
 * locally.
 *
 * Answers the pooler invents or swallows must land at the right place in
 * the server's response stream, so while linked every request that will
 * be answered is queued (PsQueue) and each response pops what it answers.
 *
 * Ownership: the registry belongs to the pool's shared part (pooldir.h),
 * one for every loop, so a server that moves between loops keeps its
 * statements; entries are reference counted (atomically) by client maps,
 * server caches and queued requests.
 */
#ifndef PGFUNNEL_PREPARED_H
#define PGFUNNEL_PREPARED_H

#include <pthread.h>

#include "types.h"

typedef struct ps_stmt PsStmt;

typedef struct ps_registry {
    pthread_mutex_t lock; /* the table; the pool's parts on every loop share it (pooldir.h) */
    PsStmt **buckets;
    uint32_t mask;
    uint32_t count;
    uint64_t next_id;
} PsRegistry;

/* client name -> statement */
typedef struct ps_client_map {
    struct ps_client_entry *v;
    int n, cap;
} PsClientMap;

/* statements prepared on one server, least recently used evicted first */
typedef struct ps_server_cache {
    PsStmt **v;
    uint64_t *used;
    int n, cap;
    uint64_t clock;
} PsServerCache;

/* requests sent (or answered locally) whose responses are still due */
typedef struct ps_pending {
    uint8_t kind;      /* P B D C E S Q F; E with PS_INJECT: a 42P05 (25P02) for client_name */
    uint8_t flags;     /* PS_SWALLOW, PS_INJECT */
    PsStmt *stmt;      /* a Parse that added stmt to the server cache (undone on error) */
    char *client_name; /* a client Parse registered under this name (undone on error) */
} PsPending;

#define PS_SWALLOW 1 /* the pooler sent it: do not forward its answer */
#define PS_INJECT  2 /* not sent: the pooler answers it itself */
/* sent, but the statement was already cached: an error undoes only the name */
#define PS_NOCACHE 4
/*
 * a probe that makes the server fail where a client's duplicate Parse would
 * have: its error is swallowed and 42P05 for client_name goes in its place
 */
#define PS_DUPLICATE 8
/* with PS_DUPLICATE: the transaction is known to be aborted, so 25P02 instead */
#define PS_ABORTED 16

typedef struct ps_queue {
    PsPending *v;
    uint32_t head, count, cap;
    uint32_t injected; /* PS_INJECT entries among them */
} PsQueue;

/*
 * Local answers that wait behind a server answer cost memory the client's
 * out-queue does not show.  At this many the pooler sends the server a
 * Flush (so what it holds back until Sync comes now) and stops reading the
 * client until some are answered (client_backlogged()).
 */
#define PS_INJECT_MAX 256
static inline bool ps_queue_backlogged(const PsQueue *q)
{
    return q->injected >= PS_INJECT_MAX;
}

void ps_registry_free(PsRegistry *r);
void ps_client_map_free(PsClientMap *m, PsRegistry *r);
void ps_server_cache_free(PsServerCache *sc, PsRegistry *r);
void ps_queue_clear(PsQueue *q, PsRegistry *r);
int ps_client_map_count(const PsClientMap *m);
int ps_server_cache_count(const PsServerCache *sc);

/*
 * Client->server: handle a whole P/B/D/C message (type + length + body) from
 * a linked client.  Writes what must go to the server; queues expected
 * answers; answers locally when the server need not see it.  Returns 0, or
 * -1 with err set (protocol violation or memory).
 * For Bind, only the header up to the statement name needs to be present:
 * *consumed says how many bytes of the message were handled; the rest
 * (parameters) is forwarded unchanged by the relay.
 */
int ps_client_message(Client *c, const uint8_t *msg, uint32_t avail, uint32_t *consumed, char *err,
                      size_t errlen) WUR;

/* Queue a request that is forwarded as it is (E, S, Q, F, unnamed P/B/D/C). */
void ps_note_forwarded(Client *c, uint8_t type);

/* What the relay does with a server response while requests are queued. */
#define PS_RESP_FORWARD 0
#define PS_RESP_SWALLOW 1
/* Returns PS_RESP_*; *inject is set when local answers are now due after this message. */
int ps_server_response(Server *s, uint8_t type, bool *inject);
/* Send the local answers at the head of the queue to the client. */
int ps_send_injected(Server *s) WUR;

/* A CommandComplete from the server: DEALLOCATE ALL / DISCARD ALL clear the maps. */
void ps_on_command_complete(Server *s, const uint8_t *msg, uint32_t total);

/* The server's statements are gone (DISCARD ALL, reset query). */
void ps_server_forget_all(Server *s);

/* Is the feature active for this pool (transaction/statement mode, max > 0)? */
bool ps_enabled(const Pool *p);

#endif
