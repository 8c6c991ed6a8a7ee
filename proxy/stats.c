/*
 * stats.c — per-pool counters (see stats.h).
 */
#include "pool.h"
#include "stats.h"

void stats_on_query(Pool *p, usec_t duration)
{
    p->stats.query_time += (uint64_t)duration;
}

void stats_on_xact(Pool *p, usec_t duration)
{
    p->stats.xact_count++;
    p->stats.xact_time += (uint64_t)duration;
}

void stats_on_wait(Pool *p, usec_t duration)
{
    p->stats.wait_time += (uint64_t)duration;
}
