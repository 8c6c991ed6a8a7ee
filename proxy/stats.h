/*
 * stats.h — per-pool counters as SHOW STATS reports them.
 *
 * The relay calls these at the moments PgBouncer counts: a query or
 * transaction finished (with its duration), a client waited for a server.
 * Cheap enough for the hot path: a few additions.
 */
#ifndef PGFUNNEL_STATS_H
#define PGFUNNEL_STATS_H

#include "types.h"

void stats_on_query(Pool *p, usec_t duration);
void stats_on_xact(Pool *p, usec_t duration);
void stats_on_wait(Pool *p, usec_t duration);

#endif
