/*
 * peers.h — cancel requests across several pgfunnel instances behind one TCP
 * load balancer (PgBouncer's peering: `peer_id` and the [peers] section).
 *
 * A cancel request arrives on a new connection, which the load balancer may
 * give to another instance than the one that runs the session.  So each
 * instance writes its peer_id into the cancel keys it hands out, and an
 * instance that receives a key of another peer forwards the request there.
 *
 * BackendKeyData layout (32-bit pid, 32-bit key):
 *   pid  bits 31..24  reserved for the event-loop index (several loops)
 *        bits 23..0   the client id within its loop
 *   key  bits 31..18  peer_id (1..16383, PgBouncer's range; 0 when peering is off)
 *        bit  17      "forwarded": set by the instance that forwards the request
 *        bits 16..0   random
 * With peering off the key is 32 random bits.  An instance forwards a key
 * only when its peer id is another's and the forwarded bit is clear; the
 * owner handles it locally, so a request is forwarded at most once, even
 * when two instances were given the same peer_id by mistake.
 */
#ifndef PGFUNNEL_PEERS_H
#define PGFUNNEL_PEERS_H

#include "types.h"

#define CANCEL_KEY_PEER_SHIFT 18
#define CANCEL_KEY_FORWARDED  (1u << 17)
#define CANCEL_KEY_RANDOM     ((1u << 17) - 1)

/* The cancel key for a new client: `random` with this instance's peer id in it. */
uint32_t peers_cancel_key(const Config *cfg, uint32_t random);

/* Is `received` (from a CancelRequest) the key `issued` to a client of this instance? */
bool peers_key_matches(const Config *cfg, uint32_t issued, uint32_t received);

/*
 * A CancelRequest from client c: when its key belongs to another peer, send
 * it there on a worker (or drop it with a log line) and return true; c is
 * closed when that is done.  False: the key is ours, handle it locally.
 */
bool peers_route_cancel(Client *c, uint32_t pid, uint32_t key);

/* Counters for /metrics. */
typedef struct peers_stats {
    uint64_t forwarded;      /* sent to their peer */
    uint64_t forward_failed; /* peer unreachable or no answer: dropped */
    uint64_t dropped;        /* unknown peer, already forwarded, too many in flight */
    int in_flight;
} PeersStats;
void peers_get_stats(Loop *loop, PeersStats *out);

/* Cancel requests being forwarded to `peer_id` now, over every loop (frozen by the caller). */
int peers_forwarding_to(Loop *loop, int peer_id);

void peers_free(Loop *loop);

#endif
