/*
 * stats.c — counters, averages, histograms and the log_stats line (see stats.h).
 */
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

#include "config.h"
#include "log.h"
#include "loop.h"
#include "loops.h"
#include "pool.h"
#include "stats.h"
#include "workq.h"

const usec_t stats_hist_bounds[STATS_HIST_BOUNDS] = {
    10,    25,     50,     100,    250,     500,     1000,    2500,     5000,     10000,    25000,
    50000, 100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000, 25000000, 60000000,
};

/* What the stats timer keeps between periods (owned by the Loop). */
typedef struct stats_state {
    struct event *ev;
    usec_t newer_stamp, older_stamp; /* when the two snapshots were taken */
} StatsState;

void stats_hist_add(StatsHist *h, usec_t v)
{
    if (v < 0) v = 0;
    /* binary search for the first bound >= v */
    int lo = 0, hi = STATS_HIST_BOUNDS;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (stats_hist_bounds[mid] >= v)
            hi = mid;
        else
            lo = mid + 1;
    }
    h->buckets[lo]++;
    h->count++;
    h->sum += (uint64_t)v;
}

void stats_hist_merge(StatsHist *dst, const StatsHist *src)
{
    dst->count += src->count;
    dst->sum += src->sum;
    for (int i = 0; i < STATS_HIST_BUCKETS; i++)
        dst->buckets[i] += src->buckets[i];
}

double stats_hist_quantile(const StatsHist *h, double q)
{
    if (h->count == 0) return 0;
    if (q <= 0) q = 1e-9;
    if (q > 1) q = 1;
    /* the rank of the wanted observation, 1-based */
    double rank = q * (double)h->count;
    uint64_t seen = 0;
    for (int i = 0; i < STATS_HIST_BUCKETS; i++) {
        uint64_t n = h->buckets[i];
        if (n == 0 || (double)(seen + n) < rank) {
            seen += n;
            continue;
        }
        if (i == STATS_HIST_BOUNDS) return (double)stats_hist_bounds[STATS_HIST_BOUNDS - 1];
        double lower = i == 0 ? 0 : (double)stats_hist_bounds[i - 1];
        double upper = (double)stats_hist_bounds[i];
        double frac = (rank - (double)seen) / (double)n;
        return lower + (upper - lower) * frac;
    }
    return (double)stats_hist_bounds[STATS_HIST_BOUNDS - 1];
}

/* ---- hot-path hooks ---- */

void stats_on_query(Pool *p, usec_t duration)
{
    p->stats.query_time += (uint64_t)duration;
    stats_hist_add(&p->latency.query, duration);
}

void stats_on_xact(Pool *p, usec_t duration)
{
    p->stats.xact_count++;
    p->stats.xact_time += (uint64_t)duration;
    stats_hist_add(&p->latency.xact, duration);
}

void stats_on_wait(Pool *p, usec_t duration)
{
    p->stats.wait_time += (uint64_t)duration;
    stats_hist_add(&p->latency.wait, duration);
}

/* ---- sums and averages ---- */

void stats_add(PoolStats *t, const PoolStats *s)
{
    t->xact_count += s->xact_count;
    t->query_count += s->query_count;
    t->server_assignments += s->server_assignments;
    t->bytes_in += s->bytes_in;
    t->bytes_out += s->bytes_out;
    t->xact_time += s->xact_time;
    t->query_time += s->query_time;
    t->wait_time += s->wait_time;
    t->logins += s->logins;
    t->login_failures += s->login_failures;
    t->ps_client_parses += s->ps_client_parses;
    t->ps_server_parses += s->ps_server_parses;
    t->ps_binds += s->ps_binds;
}

/*
 * The database of that name on every loop (the caller has frozen the other
 * loops, loops.h): each loop counts in its own pools.
 */
#define FOR_EACH_LOOP_DB(db, d, i)                                                                 \
    for (int i = 0; i < (db)->loop->set->n; i++)                                                   \
        for (const Database *d = pool_database_get((db)->loop->set->loops[i], (db)->name, false);  \
             d; d = NULL)

void stats_db_totals(const Database *db, PoolStats *cur)
{
    ListNode *it;
    memset(cur, 0, sizeof(*cur));
    FOR_EACH_LOOP_DB(db, d, i)
    {
        stats_add(cur, &d->retired.stats);
        list_for_each(it, &d->pools) stats_add(cur, &list_entry(it, Pool, db_node)->stats);
    }
}

static uint64_t delta(uint64_t a, uint64_t b)
{
    return a > b ? a - b : 0;
}

/* The averages of one period between two snapshots taken `dur` usec apart. */
static void stats_compute_avg(const PoolStats *n, const PoolStats *o, usec_t dur, PoolStats *avg)
{
    memset(avg, 0, sizeof(*avg));
    if (dur <= 0) return;
    uint64_t xacts = delta(n->xact_count, o->xact_count);
    uint64_t queries = delta(n->query_count, o->query_count);
    uint64_t assigns = delta(n->server_assignments, o->server_assignments);
#define RATE(f) avg->f = (uint64_t)((double)delta(n->f, o->f) * USEC_PER_SEC / (double)dur)
    RATE(xact_count);
    RATE(query_count);
    RATE(server_assignments);
    RATE(bytes_in);
    RATE(bytes_out);
    RATE(logins);
    RATE(login_failures);
    RATE(ps_client_parses);
    RATE(ps_server_parses);
    RATE(ps_binds);
#undef RATE
    if (xacts) avg->xact_time = delta(n->xact_time, o->xact_time) / xacts;
    if (queries) avg->query_time = delta(n->query_time, o->query_time) / queries;
    if (assigns) avg->wait_time = delta(n->wait_time, o->wait_time) / assigns;
}

void stats_db_averages(Loop *loop, const Database *db, PoolStats *avg)
{
    PoolStats n, o;
    ListNode *it;
    memset(&n, 0, sizeof(n));
    memset(&o, 0, sizeof(o));
    FOR_EACH_LOOP_DB(db, d, i)
    {
        stats_add(&n, &d->retired.newer);
        stats_add(&o, &d->retired.older);
        list_for_each(it, &d->pools)
        {
            Pool *p = list_entry(it, Pool, db_node);
            stats_add(&n, &p->stats_newer);
            stats_add(&o, &p->stats_older);
        }
    }
    /* loop 0 rotates every loop's snapshots at once (stats_on_timer) */
    StatsState *st = loop->set->loops[0]->stats_state;
    usec_t dur = st ? st->newer_stamp - st->older_stamp : 0;
    stats_compute_avg(&n, &o, dur, avg);
}

void stats_db_latency(const Database *db, PoolLatency *out)
{
    ListNode *it;
    memset(out, 0, sizeof(*out));
    FOR_EACH_LOOP_DB(db, d, i)
    {
        const PoolLatency *r = &d->retired.latency;
        stats_hist_merge(&out->query, &r->query);
        stats_hist_merge(&out->xact, &r->xact);
        stats_hist_merge(&out->wait, &r->wait);
        list_for_each(it, &d->pools)
        {
            Pool *p = list_entry(it, Pool, db_node);
            stats_hist_merge(&out->query, &p->latency.query);
            stats_hist_merge(&out->xact, &p->latency.xact);
            stats_hist_merge(&out->wait, &p->latency.wait);
        }
    }
}

/* ---- the stats_period timer ---- */

static void stats_arm(Loop *loop)
{
    StatsState *st = loop->stats_state;
    usec_t period = loop->cfg->stats_period > 0 ? loop->cfg->stats_period : 60 * USEC_PER_SEC;
    struct timeval tv = {(time_t)(period / USEC_PER_SEC), (suseconds_t)(period % USEC_PER_SEC)};
    evtimer_add(st->ev, &tv);
}

/*
 * Loop 0's timer rotates the snapshots of every loop's pools in one freeze
 * (loops.h), so the averages of all loops cover the same period; then it
 * writes the log_stats line of each database once.
 */
static void stats_on_timer(evutil_socket_t fd, short ev, void *arg)
{
    Loop *loop = arg;
    StatsState *st = loop->stats_state;
    ListNode *dit, *pit;
    (void)fd;
    (void)ev;
    loops_freeze(loop);
    st->older_stamp = st->newer_stamp;
    st->newer_stamp = time_now_usec();
    for (int i = 0; i < loop->set->n; i++) {
        list_for_each(dit, &loop->set->loops[i]->databases)
        {
            Database *db = list_entry(dit, Database, node);
            list_for_each(pit, &db->pools)
            {
                Pool *p = list_entry(pit, Pool, db_node);
                p->stats_older = p->stats_newer;
                p->stats_newer = p->stats;
            }
            db->retired.older = db->retired.newer;
            db->retired.newer = db->retired.stats;
        }
    }
    for (int i = 0; loop->cfg->log_stats && i < loop->set->n; i++) {
        list_for_each(dit, &loop->set->loops[i]->databases)
        {
            Database *db = list_entry(dit, Database, node);
            if (!pool_first_database(db)) continue;
            PoolStats avg;
            stats_db_averages(loop, db, &avg);
            log_at(LOG_LEVEL_LOG, db->name,
                   "stats: %llu xacts/s, %llu queries/s, %llu client parses/s, %llu server "
                   "parses/s, %llu binds/s, in %llu B/s, out %llu B/s, xact %llu us, query "
                   "%llu us, wait %llu us",
                   (unsigned long long)avg.xact_count, (unsigned long long)avg.query_count,
                   (unsigned long long)avg.ps_client_parses,
                   (unsigned long long)avg.ps_server_parses, (unsigned long long)avg.ps_binds,
                   (unsigned long long)avg.bytes_in, (unsigned long long)avg.bytes_out,
                   (unsigned long long)avg.xact_time, (unsigned long long)avg.query_time,
                   (unsigned long long)avg.wait_time);
        }
    }
    loops_thaw(loop);
    stats_arm(loop);
}

int stats_start(Loop *loop)
{
    StatsState *st = calloc(1, sizeof(*st));
    if (!st) return -1;
    st->ev = evtimer_new(loop->base, stats_on_timer, loop);
    if (!st->ev) {
        free(st);
        return -1;
    }
    st->newer_stamp = st->older_stamp = time_now_usec();
    loop->stats_state = st;
    stats_arm(loop);
    return 0;
}

void stats_stop(Loop *loop)
{
    StatsState *st = loop->stats_state;
    if (!st) return;
    event_free(st->ev);
    free(st);
    loop->stats_state = NULL;
}
