/*
 * stats.h — counters, averages and latency histograms, as SHOW STATS,
 * SHOW LATENCY, the log_stats line and /metrics report them.
 *
 * The relay calls the stats_on_*() hooks at the moments PgBouncer counts: a
 * query or transaction finished (with its duration), a client waited for a
 * server.  Each hook is a few additions and one bucket search over 21
 * bounds, cheap enough for the hot path.
 *
 * Counters live in each Pool (pool.h: PoolStats plus PoolLatency); per
 * database numbers are sums over the database's pools, computed when
 * somebody asks.  Every stats_period a timer (stats_start) rotates two
 * snapshots per pool, so averages cover the last complete period as
 * PgBouncer's do, and writes the log_stats lines.
 *
 * Histograms have log-scaled buckets (1-2.5-5 steps from 10 us to 60 s, plus
 * +Inf); quantiles are interpolated linearly inside the bucket, so they are
 * estimates with the bucket's resolution (about a factor 2), not exact values.
 */
#ifndef PGFUNNEL_STATS_H
#define PGFUNNEL_STATS_H

#include "types.h"

#define STATS_HIST_BOUNDS  21                      /* finite upper bounds */
#define STATS_HIST_BUCKETS (STATS_HIST_BOUNDS + 1) /* + the +Inf bucket */

/* Upper bounds (inclusive, usec) of the finite buckets, ascending. */
extern const usec_t stats_hist_bounds[STATS_HIST_BOUNDS];

typedef struct stats_hist {
    uint64_t count;
    uint64_t sum;                         /* usec */
    uint64_t buckets[STATS_HIST_BUCKETS]; /* per bucket, not cumulative */
} StatsHist;

typedef struct pool_latency {
    StatsHist query, xact, wait;
} PoolLatency;

void stats_hist_add(StatsHist *h, usec_t v);
void stats_hist_merge(StatsHist *dst, const StatsHist *src);
/*
 * The q-quantile (0 < q <= 1) in usec, linearly interpolated inside its
 * bucket; 0 for an empty histogram.  Values in the +Inf bucket report the
 * last finite bound.
 */
double stats_hist_quantile(const StatsHist *h, double q);

/* Hot-path hooks (called by the relay). */
void stats_on_query(Pool *p, usec_t duration);
void stats_on_xact(Pool *p, usec_t duration);
void stats_on_wait(Pool *p, usec_t duration);

/* Start / stop the stats_period timer (loop->stats_state). */
int stats_start(Loop *loop) WUR;
void stats_stop(Loop *loop);

/* Per-database sums of a database's pools: current, and the two snapshots. */
struct pool_stats;
/* t += s, field by field. */
void stats_add(struct pool_stats *t, const struct pool_stats *s);
void stats_db_totals(const Database *db, struct pool_stats *cur);
/*
 * Averages over the last complete stats_period, PgBouncer's meanings: counts
 * and bytes per second, xact/query time per transaction/query, wait time
 * per server assignment.
 */
void stats_db_averages(Loop *loop, const Database *db, struct pool_stats *avg);
void stats_db_latency(const Database *db, PoolLatency *out);

#endif
