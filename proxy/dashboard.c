/*
 * dashboard.c — the dashboard's history and /dashboard.json (see dashboard.h).
 *
 * DESIGN
 *
 * DashState (owned by the HttpServer) holds one DashSeries per pool, found
 * by (database, user) in an Hmap and listed in creation order, so ids
 * ascend along the list; a ring of totals; a ring of process health.  A 1 s
 * persistent timer runs the tick (dash_take):
 *   1. gather: each pool's snapshot is merged into its series' `cur` (a
 *      series is created for a pool seen the first time), which is marked
 *      seen in this tick;
 *   2. a series not seen is freed: its pool is gone;
 *   3. every other series turns cur - prev into one sample: rates per second
 *      over the measured interval, quantiles of the delta histogram (the
 *      queries that finished in that interval), the gauges as they are; its
 *      delta histogram is added to the totals' so that the total p50/p99
 *      are true quantiles, not averages of quantiles.
 * A counter that went back (a pool freed and created again between two
 * ticks) counts from zero.  The first gather, when the state is created,
 * only sets `prev`: pools older than the dashboard get no fake first second.
 *
 * Every ring is indexed by the tick's sequence number: the sample of tick
 * seq is at [seq % DASH_WINDOW], and a series holds the samples
 * last_seq - count + 1 .. last_seq.  An answer covers (since, upto], with
 * upto fixed when it begins, so its slices agree even if ticks happen while
 * it is sent: a series created after upto is left out, one freed meanwhile
 * is missing from it.  Slices resume at the first series id above the last
 * one written.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/evp.h>

#include "config.h"
#include "dashboard.h"
#include "hmap.h"
#include "list.h"
#include "log.h"
#include "loop.h"
#include "loops.h"
#include "pool.h"
#include "version.h"
#include "workq.h"

#define DASH_WARNINGS 20 /* newest warnings in an answer (of LOG_RECENT_MAX kept) */

/* One second of one pool (or of all: the totals). */
typedef struct dash_sample {
    uint32_t xact, query; /* per second */
    uint32_t p50, p99;    /* query latency, usec; 0 when no query finished */
    uint32_t cl_active, cl_waiting, sv_active, sv_idle;
} DashSample;

/* One second of the process. */
typedef struct dash_proc_sample {
    uint32_t lag; /* usec: the largest loop lag measured in that second (power-of-two bound) */
    uint32_t workq_depth, workq_running;
    uint32_t clients, servers;
} DashProcSample;

/* The history of one (database, user), owned by DashState.series. */
typedef struct dash_series {
    ListNode node;
    uint64_t id;
    char *key; /* "<strlen(database)>:<database><user>": unambiguous for any names */
    char *database, *user;
    int mode, size;
    uint64_t seen; /* tick of the last gather that found the pool */
    /* this tick's snapshot, merged over loops, and the last tick's (names: NULL after the tick) */
    DashPoolSnap cur, prev;
    bool have_prev;    /* false in the tick that created the series */
    uint64_t last_seq; /* seq of the newest sample */
    uint32_t count;    /* samples held, at most DASH_WINDOW */
    /*
     * Allocated at the first sample that is not all zeros and freed once the
     * last such sample has left the window: a pool unused for the whole
     * window (an automatic database nobody uses any more) costs no ring.
     */
    DashSample *ring;   /* DASH_WINDOW entries, or NULL: every sample is zero */
    uint64_t last_busy; /* seq of the newest sample that was not all zeros */
} DashSeries;

struct dash_state {
    Loop *loop;
    struct event *ev;
    uint64_t boot;    /* wall clock usec at creation: tells one process's cursors from another's */
    uint64_t seq;     /* ticks that recorded samples */
    uint64_t gathers; /* every tick, the first one too: marks the series it saw */
    uint64_t next_id;
    usec_t last_tick;  /* monotonic */
    int64_t last_wall; /* wall clock ms of sample seq */
    Hmap index;        /* DashSeries by key */
    List series;       /* DashSeries.node, ascending id */
    uint32_t count;    /* samples in the rings below */
    DashSample total[DASH_WINDOW];
    DashProcSample proc[DASH_WINDOW];
    usec_t lag_prev[32]; /* loop->stats.lag_hist at the last tick */
    char csp[320];       /* Content-Security-Policy of the page, computed once */
};

/* ---- snapshots ---- */

void dash_pool_snapshot(const Pool *p, DashPoolSnap *out)
{
    memset(out, 0, sizeof(*out));
    out->database = p->db->name;
    out->user = p->username;
    out->mode = p->mode;
    out->size = p->size;
    /* SHOW POOLS' meanings: cl_active counts linked and idle logged-in clients */
    out->cl_active = p->active_clients.count + p->idle_clients.count;
    out->cl_waiting = p->waiting.count + p->login_wait.count;
    out->sv_active = p->active.count;
    out->sv_idle = p->idle.count;
    out->sv_other = p->connecting.count;
    out->xact_count = p->stats.xact_count;
    out->query_count = p->stats.query_count;
    out->query = p->latency.query;
}

void dash_snap_merge(DashPoolSnap *acc, const DashPoolSnap *s)
{
    acc->database = s->database;
    acc->user = s->user;
    acc->mode = s->mode;
    acc->size = s->size; /* the pool's setting, the same on every loop */
    acc->cl_active += s->cl_active;
    acc->cl_waiting += s->cl_waiting;
    acc->sv_active += s->sv_active;
    acc->sv_idle += s->sv_idle;
    acc->sv_other += s->sv_other;
    acc->xact_count += s->xact_count;
    acc->query_count += s->query_count;
    stats_hist_merge(&acc->query, &s->query);
}

/* ---- the tick ---- */

static uint64_t counter_delta(uint64_t now, uint64_t before)
{
    return now >= before ? now - before : now; /* went back: counted again from zero */
}

static uint32_t clamp_u32(double v)
{
    if (v <= 0) return 0;
    if (v >= 4294967295.0) return UINT32_MAX;
    return (uint32_t)(v + 0.5);
}

static uint32_t gauge_u32(int v)
{
    return v > 0 ? (uint32_t)v : 0;
}

static void series_free(DashState *ds, DashSeries *s)
{
    hmap_remove(&ds->index, s->key);
    list_remove(&ds->series, &s->node);
    free(s->ring);
    free(s->key);
    free(s->database);
    free(s->user);
    free(s);
}

static DashSeries *series_get(DashState *ds, const DashPoolSnap *snap)
{
    size_t dlen = strlen(snap->database), ulen = strlen(snap->user);
    size_t klen = dlen + ulen + 24;
    char stack[256];
    /* the usual case, an existing series, allocates nothing */
    char *key = klen <= sizeof(stack) ? stack : malloc(klen);
    if (!key) return NULL;
    snprintf(key, klen, "%zu:%s%s", dlen, snap->database, snap->user);
    DashSeries *s = hmap_get(&ds->index, key);
    if (s) {
        if (key != stack) free(key);
        return s;
    }
    if (key == stack && !(key = strdup(stack))) return NULL; /* the series keeps its key */
    s = calloc(1, sizeof(*s));
    if (!s || !(s->database = strdup(snap->database)) || !(s->user = strdup(snap->user)) ||
        hmap_put(&ds->index, key, s) < 0) {
        if (s) {
            free(s->database);
            free(s->user);
        }
        free(s);
        free(key);
        return NULL;
    }
    s->key = key;
    s->id = ++ds->next_id;
    list_append(&ds->series, &s->node);
    return s;
}

/*
 * Step 1 of the tick for one loop: merge every pool's snapshot into its
 * series.  The only place that reads pools; dash_take calls it for every
 * loop while the others are frozen (loops.h).
 */
static void dash_gather(DashState *ds, Loop *loop, uint64_t tick)
{
    ListNode *dit, *pit;
    list_for_each(dit, &loop->databases)
    {
        Database *db = list_entry(dit, Database, node);
        list_for_each(pit, &db->pools)
        {
            DashPoolSnap snap;
            dash_pool_snapshot(list_entry(pit, Pool, db_node), &snap);
            DashSeries *s = series_get(ds, &snap);
            if (!s) continue; /* out of memory: this pool has no history this second */
            if (s->seen != tick) {
                memset(&s->cur, 0, sizeof(s->cur));
                s->seen = tick;
            }
            dash_snap_merge(&s->cur, &snap);
        }
    }
}

/* The delta of a series since the last tick as a sample; the delta histogram into *h. */
static void series_sample(const DashSeries *s, bool had_prev, double secs, DashSample *out,
                          StatsHist *h)
{
    const DashPoolSnap *c = &s->cur;
    DashPoolSnap zero;
    const DashPoolSnap *p = had_prev ? &s->prev : &zero;
    if (!had_prev) memset(&zero, 0, sizeof(zero));
    memset(h, 0, sizeof(*h));
    if (c->query.count >= p->query.count) {
        h->count = c->query.count - p->query.count;
        h->sum = counter_delta(c->query.sum, p->query.sum);
        for (int i = 0; i < STATS_HIST_BUCKETS; i++)
            h->buckets[i] = counter_delta(c->query.buckets[i], p->query.buckets[i]);
    } else {
        *h = c->query; /* the histogram started again */
    }
    out->xact = clamp_u32((double)counter_delta(c->xact_count, p->xact_count) / secs);
    out->query = clamp_u32((double)counter_delta(c->query_count, p->query_count) / secs);
    out->p50 = clamp_u32(stats_hist_quantile(h, 0.5));
    out->p99 = clamp_u32(stats_hist_quantile(h, 0.99));
    out->cl_active = gauge_u32(c->cl_active);
    out->cl_waiting = gauge_u32(c->cl_waiting);
    out->sv_active = gauge_u32(c->sv_active);
    out->sv_idle = gauge_u32(c->sv_idle);
}

/* Keep sample seq of a series (see DashSeries.ring). */
static void series_push(DashSeries *s, uint64_t seq, const DashSample *d)
{
    static const DashSample zero;
    bool busy = memcmp(d, &zero, sizeof(zero)) != 0;
    if (busy && !s->ring) s->ring = calloc(DASH_WINDOW, sizeof(DashSample)); /* all zero so far */
    if (busy) s->last_busy = seq;
    if (s->ring && seq - s->last_busy >= DASH_WINDOW) {
        free(s->ring); /* nothing but zeros left in the window */
        s->ring = NULL;
    }
    if (s->ring) s->ring[seq % DASH_WINDOW] = busy ? *d : zero;
    /* out of memory for the ring: this pool's history reads as zeros for a while */
    if (s->count < DASH_WINDOW) s->count++;
    s->last_seq = seq;
}

/* The largest loop lag of the last second: the highest bucket that grew, at most lag_max. */
static uint32_t lag_since(DashState *ds, const LoopStats *ls)
{
    uint32_t lag = 0;
    for (int b = 0; b < 32; b++) {
        if (ls->lag_hist[b] != ds->lag_prev[b]) lag = b < 31 ? (uint32_t)1 << b : UINT32_MAX;
        ds->lag_prev[b] = ls->lag_hist[b];
    }
    if (ls->lag_max >= 0 && (uint64_t)lag > (uint64_t)ls->lag_max)
        lag = clamp_u32((double)ls->lag_max);
    return lag;
}

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

/* One tick at `now`; record = false only for the first, which just learns the counters. */
static void dash_take(DashState *ds, bool record, usec_t now)
{
    Loop *loop = ds->loop;
    double secs = ds->last_tick && now > ds->last_tick ? (double)(now - ds->last_tick) / 1e6 : 1.0;
    uint64_t tick = ++ds->gathers; /* series seen in this gather carry it */
    ds->last_tick = now;

    /* every loop's pools, and their lag and connection counts, while they stand still */
    LoopStats lsum;
    int clients = 0, servers = 0;
    memset(&lsum, 0, sizeof(lsum));
    loops_freeze(loop);
    for (int i = 0; i < loop->set->n; i++) {
        Loop *l = loop->set->loops[i];
        dash_gather(ds, l, tick);
        for (int b = 0; b < 32; b++)
            lsum.lag_hist[b] += l->stats.lag_hist[b];
        if (l->stats.lag_max > lsum.lag_max) lsum.lag_max = l->stats.lag_max;
        clients += l->client_count;
        servers += l->server_count;
    }
    loops_thaw(loop);

    uint64_t seq = record ? ++ds->seq : ds->seq;
    DashSample total;
    StatsHist total_hist, h;
    memset(&total, 0, sizeof(total));
    memset(&total_hist, 0, sizeof(total_hist));
    ListNode *it, *tmp;
    list_for_each_safe(it, tmp, &ds->series)
    {
        DashSeries *s = list_entry(it, DashSeries, node);
        if (s->seen != tick) {
            series_free(ds, s);
            continue;
        }
        if (record) {
            DashSample d;
            /* a series new in this tick has no prev: its pool is younger than a second */
            series_sample(s, s->have_prev, secs, &d, &h);
            series_push(s, seq, &d);
            stats_hist_merge(&total_hist, &h);
            total.xact += d.xact;
            total.query += d.query;
            total.cl_active += d.cl_active;
            total.cl_waiting += d.cl_waiting;
            total.sv_active += d.sv_active;
            total.sv_idle += d.sv_idle;
        }
        s->mode = s->cur.mode;
        s->size = s->cur.size;
        s->cur.database = s->cur.user = NULL; /* they point into pools, which may go */
        s->prev = s->cur;
        s->have_prev = true;
    }

    WorkqStats ws;
    workq_get_stats(loop->workq, &ws);
    uint32_t lag = lag_since(ds, &lsum);
    if (!record) return;
    total.p50 = clamp_u32(stats_hist_quantile(&total_hist, 0.5));
    total.p99 = clamp_u32(stats_hist_quantile(&total_hist, 0.99));
    ds->total[seq % DASH_WINDOW] = total;
    DashProcSample *ps = &ds->proc[seq % DASH_WINDOW];
    ps->lag = lag;
    ps->workq_depth = gauge_u32(ws.queue_depth);
    ps->workq_running = gauge_u32(ws.running);
    ps->clients = gauge_u32(clients);
    ps->servers = gauge_u32(servers);
    if (ds->count < DASH_WINDOW) ds->count++;
    ds->last_wall = wall_ms();
}

void dash_tick(DashState *ds, usec_t now)
{
    dash_take(ds, true, now);
}

static void dash_on_tick(evutil_socket_t fd, short ev, void *arg)
{
    (void)fd;
    (void)ev;
    dash_tick(arg, time_now_usec());
}

DashState *dash_create(Loop *loop)
{
    DashState *ds = calloc(1, sizeof(*ds));
    if (!ds) return NULL;
    ds->loop = loop;
    list_init(&ds->series);
    ds->ev = event_new(loop->base, -1, EV_PERSIST, dash_on_tick, ds);
    if (!ds->ev) {
        free(ds);
        return NULL;
    }
    struct timeval tv;
    gettimeofday(&tv, NULL);
    ds->boot = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    ds->last_wall = wall_ms();
    dash_take(ds, false, time_now_usec());
    struct timeval period = {DASH_INTERVAL_MS / 1000, (DASH_INTERVAL_MS % 1000) * 1000};
    event_add(ds->ev, &period);
    return ds;
}

void dash_free(DashState *ds)
{
    if (!ds) return;
    event_free(ds->ev);
    while (!list_empty(&ds->series))
        series_free(ds, list_entry(list_first(&ds->series), DashSeries, node));
    hmap_free(&ds->index);
    free(ds);
}

/* ---- the page ---- */

const unsigned char *dash_page(size_t *len)
{
    *len = dash_index_html_len;
    return dash_index_html;
}

/*
 * The page's one inline <script> is allowed by its SHA-256, nothing else
 * runs, and nothing is loaded from anywhere but this endpoint (the fetch of
 * /dashboard.json): an injected element could neither run nor call out.
 */
const char *dash_page_csp(DashState *ds)
{
    if (ds->csp[0]) return ds->csp;
    const char *page = (const char *)dash_index_html;
    const char *end = page + dash_index_html_len;
    const char *open = memmem(page, dash_index_html_len, "<script>", 8);
    const char *body = open ? open + 8 : NULL;
    const char *close = body ? memmem(body, (size_t)(end - body), "</script>", 9) : NULL;
    char hash[64] = "'none'";
    unsigned char md[32], b64[48];
    unsigned int mdlen = 0;
    if (close && EVP_Digest(body, (size_t)(close - body), md, &mdlen, EVP_sha256(), NULL) == 1 &&
        mdlen == 32) {
        EVP_EncodeBlock(b64, md, 32);
        snprintf(hash, sizeof(hash), "'sha256-%s'", (const char *)b64);
    }
    snprintf(ds->csp, sizeof(ds->csp),
             "default-src 'none'; script-src %s; style-src 'unsafe-inline'; connect-src 'self'; "
             "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
             hash);
    return ds->csp;
}

/* ---- /dashboard.json ---- */

/* JSON string: quotes, backslashes and control characters escaped. */
static void put_str(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    while (s && *s) {
        size_t run = 0;
        while (s[run] && s[run] != '"' && s[run] != '\\' && (unsigned char)s[run] >= 0x20)
            run++;
        evbuffer_add(out, s, run);
        s += run;
        if (!*s) break;
        if (*s == '"' || *s == '\\')
            evbuffer_add_printf(out, "\\%c", *s);
        else
            evbuffer_add_printf(out, "\\u%04x", (unsigned char)*s);
        s++;
    }
    evbuffer_add(out, "\"", 1);
}

/* ,"name":[v,v,...] of one field of the ring entries lo..hi (sequence numbers). */
static void put_array(struct evbuffer *out, const char *name, const void *ring, size_t stride,
                      size_t off, uint64_t lo, uint64_t hi)
{
    char buf[DASH_WINDOW * 11 + 4];
    size_t n = 0;
    evbuffer_add_printf(out, ",\"%s\":[", name);
    for (uint64_t seq = lo; seq <= hi && lo > 0; seq++) {
        uint32_t v = 0; /* no ring: zeros */
        if (ring) memcpy(&v, (const char *)ring + (seq % DASH_WINDOW) * stride + off, sizeof(v));
        char digits[10];
        int d = 0;
        do {
            digits[d++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        if (seq != lo) buf[n++] = ',';
        while (d > 0)
            buf[n++] = digits[--d];
    }
    buf[n++] = ']';
    evbuffer_add(out, buf, n);
}

static const struct {
    const char *name;
    size_t off;
} sample_fields[] =
    {
        {"xact", offsetof(DashSample, xact)},
        {"query", offsetof(DashSample, query)},
        {"p50", offsetof(DashSample, p50)},
        {"p99", offsetof(DashSample, p99)},
        {"cl_active", offsetof(DashSample, cl_active)},
        {"cl_waiting", offsetof(DashSample, cl_waiting)},
        {"sv_active", offsetof(DashSample, sv_active)},
        {"sv_idle", offsetof(DashSample, sv_idle)},
},
  proc_fields[] = {
      {"lag_us", offsetof(DashProcSample, lag)},
      {"workq_depth", offsetof(DashProcSample, workq_depth)},
      {"workq_running", offsetof(DashProcSample, workq_running)},
      {"client_conns", offsetof(DashProcSample, clients)},
      {"server_conns", offsetof(DashProcSample, servers)},
};

/* The samples of a ring holding `count` samples up to last_seq, within (since, upto]: lo..hi. */
static bool window(uint64_t last_seq, uint32_t count, const DashCursor *cur, uint64_t *lo,
                   uint64_t *hi)
{
    if (count == 0) return false;
    uint64_t first = last_seq - count + 1;
    *hi = last_seq < cur->upto ? last_seq : cur->upto;
    *lo = first > cur->since + 1 ? first : cur->since + 1;
    return *lo <= *hi;
}

static void put_samples(struct evbuffer *out, const DashSample *ring, uint64_t lo, uint64_t hi,
                        bool any)
{
    evbuffer_add_printf(out, "\"n\":%" PRIu64, any ? hi - lo + 1 : 0);
    for (size_t i = 0; i < sizeof(sample_fields) / sizeof(sample_fields[0]); i++)
        put_array(out, sample_fields[i].name, ring, sizeof(DashSample), sample_fields[i].off,
                  any ? lo : 0, hi);
}

/* "since=BOOT.SEQ" of the query string; 0 (everything) when absent or not from this process. */
static uint64_t parse_since(const DashState *ds, const char *query)
{
    const char *p = query;
    while (p && *p) {
        if (strncmp(p, "since=", 6) == 0) {
            unsigned long long boot, seq;
            char tail;
            int n = sscanf(p + 6, "%llu.%llu%c", &boot, &seq, &tail);
            if ((n == 2 || (n == 3 && tail == '&')) && boot == ds->boot && seq <= ds->seq &&
                ds->seq - seq < DASH_WINDOW)
                return seq;
            return 0;
        }
        p = strchr(p, '&');
        if (p) p++;
    }
    return 0;
}

static void put_head(DashState *ds, struct evbuffer *out, const DashCursor *cur)
{
    Loop *loop = ds->loop;
    uint64_t lo = 0, hi = 0;
    bool any = window(ds->seq, ds->count, cur, &lo, &hi);
    int pools = 0, clients = 0, servers = 0;
    usec_t lag_max = 0;
    ListNode *dit, *pit;
    /* a slice of the answer: the other loops are frozen meanwhile (http.c) */
    for (int i = 0; i < loop->set->n; i++) {
        Loop *l = loop->set->loops[i];
        list_for_each(dit, &l->databases)
        {
            list_for_each(pit, &list_entry(dit, Database, node)->pools) pools +=
                pool_first_shard(list_entry(pit, Pool, db_node)); /* once over the loops */
        }
        clients += l->client_count;
        servers += l->server_count;
        if (l->stats.lag_max > lag_max) lag_max = l->stats.lag_max;
    }
    usec_t uptime = time_now_usec() - loop->started_at;

    evbuffer_add_printf(out, "{\"version\":");
    put_str(out, PGFUNNEL_VERSION);
    evbuffer_add_printf(out,
                        ",\"cursor\":\"%" PRIu64 ".%" PRIu64 "\",\"since\":%" PRIu64
                        ",\"seq\":%" PRIu64 ",\"time_ms\":%" PRId64
                        ",\"interval_ms\":%d,\"window\":%d,\"uptime_s\":%" PRId64,
                        ds->boot, cur->upto, cur->since, cur->upto, ds->last_wall, DASH_INTERVAL_MS,
                        DASH_WINDOW, (int64_t)(uptime / USEC_PER_SEC));

    WorkqStats ws;
    workq_get_stats(loop->workq, &ws);
    evbuffer_add_printf(out,
                        ",\"process\":{\"clients\":%d,\"servers\":%d,\"max_client_conn\":%d,"
                        "\"pools\":%d,\"workq_threads\":%d,\"workq_queue_max\":%d,"
                        "\"workq_rejected\":%" PRIu64 ",\"lag_max_us\":%" PRId64
                        ",\"log_dropped\":%" PRIu64 ",\"n\":%" PRIu64,
                        clients, servers, loop->cfg->max_client_conn, pools, ws.threads,
                        ws.queue_max, ws.rejected, (int64_t)lag_max, log_dropped_count(),
                        any ? hi - lo + 1 : 0);
    for (size_t i = 0; i < sizeof(proc_fields) / sizeof(proc_fields[0]); i++)
        put_array(out, proc_fields[i].name, ds->proc, sizeof(DashProcSample), proc_fields[i].off,
                  any ? lo : 0, hi);
    evbuffer_add_printf(out, "},\"total\":{");
    put_samples(out, ds->total, lo, hi, any);
    evbuffer_add_printf(out, "}");

    LogRecent rec[DASH_WARNINGS];
    uint64_t total = 0;
    int n = log_recent_warnings(rec, DASH_WARNINGS, &total);
    evbuffer_add_printf(out, ",\"warnings_total\":%" PRIu64 ",\"warnings\":[", total);
    for (int i = 0; i < n; i++) {
        evbuffer_add_printf(out, "%s{\"seq\":%" PRIu64 ",\"level\":\"%s\",\"ts\":", i ? "," : "",
                            rec[i].seq, log_level_name(rec[i].level));
        put_str(out, rec[i].ts);
        evbuffer_add_printf(out, ",\"text\":");
        put_str(out, rec[i].text);
        evbuffer_add(out, "}", 1);
    }
    evbuffer_add_printf(out, "],\"pools\":[");
}

static void put_series(struct evbuffer *out, const DashSeries *s, uint64_t lo, uint64_t hi,
                       bool any, bool first)
{
    evbuffer_add_printf(out, "%s{\"id\":%" PRIu64 ",\"database\":", first ? "" : ",", s->id);
    put_str(out, s->database);
    evbuffer_add_printf(out, ",\"user\":");
    put_str(out, s->user);
    evbuffer_add_printf(out, ",\"pool_mode\":\"%s\",\"size\":%d,", config_pool_mode_name(s->mode),
                        s->size);
    put_samples(out, s->ring, lo, hi, any);
    evbuffer_add(out, "}", 1);
}

bool dash_json_slice(DashState *ds, const char *query, struct evbuffer *out, DashCursor *cur,
                     size_t slice)
{
    if (cur->part == 0) {
        cur->upto = ds->seq;
        cur->since = parse_since(ds, query);
        put_head(ds, out, cur);
        cur->part = 1;
        cur->done = 0;
    }
    if (cur->part == 1) {
        ListNode *it;
        list_for_each(it, &ds->series)
        {
            DashSeries *s = list_entry(it, DashSeries, node);
            uint64_t lo = 0, hi = 0;
            if (s->id <= cur->done) continue;
            if (evbuffer_get_length(out) >= slice) return false;
            cur->done = s->id;
            /* new since the answer began: in the next one (a pool left out is a pool gone) */
            if (s->count == 0 || s->last_seq - s->count + 1 > cur->upto) continue;
            bool any = window(s->last_seq, s->count, cur, &lo, &hi);
            put_series(out, s, lo, hi, any, cur->written++ == 0);
        }
        cur->part = 2;
    }
    evbuffer_add_printf(out, "]}\n");
    return true;
}
