/*
 * dashboard.h — the live dashboard of the HTTP endpoint (http.c routes to it):
 *   GET /                 one self-contained page (proxy/dashboard/index.html,
 *                         built into the binary: no file, script, font or CDN
 *                         from elsewhere)
 *   GET /dashboard.json   what the page polls every second
 *
 * History lives here, not in the browser: a 1 s timer on the loop takes one
 * sample per pool (transactions and queries per second, p50/p99 of the
 * queries that finished in that second, clients active/waiting, servers
 * active/idle) into a fixed ring of DASH_WINDOW samples, plus one ring of
 * totals and one of process health (loop lag, worker queue).  So a page
 * opened during an incident shows the last minutes at once, every viewer
 * sees the same numbers, and rates come from exact 1 s deltas of the
 * counters rather than from however often a browser happened to poll.
 * Memory is bounded: about 10 KB per pool that had clients, servers or
 * traffic in the window, under 1 KB for one that had none, freed at the
 * first tick after its pool is gone.
 *
 * Data collection happens in one place: dash_pool_snapshot() fills a plain
 * struct from a pool's lists and counters, and the tick merges snapshots by
 * (database, user) with dash_snap_merge() before it computes deltas, so the
 * same code can gather pools over several loops.
 *
 * The JSON is incremental: "?since=BOOT.SEQ" (the "cursor" of the previous
 * answer) returns only the samples taken after it; a missing, stale or
 * foreign cursor returns everything (the answer says "since":0).  It is
 * produced in slices, like /pools (see DESIGN in dashboard.c).
 */
#ifndef PGFUNNEL_DASHBOARD_H
#define PGFUNNEL_DASHBOARD_H

#include "stats.h"
#include "types.h"

#define DASH_WINDOW      300 /* samples kept per series: 5 minutes at 1 s */
#define DASH_INTERVAL_MS 1000

struct evbuffer;
typedef struct dash_state DashState;

/*
 * What the dashboard reads of one pool at one moment.  Plain data: the
 * names point into the pool and are valid while the loop callback runs.
 * Merging two snapshots of the same (database, user) adds everything.
 */
typedef struct dash_pool_snap {
    const char *database, *user;
    int mode; /* PoolMode */
    int size; /* resolved pool_size */
    int cl_active, cl_waiting;
    int sv_active, sv_idle, sv_other; /* other: logging in, reset or check queries */
    uint64_t xact_count, query_count;
    StatsHist query; /* query latency, cumulative */
} DashPoolSnap;

void dash_pool_snapshot(const Pool *p, DashPoolSnap *out);
void dash_snap_merge(DashPoolSnap *acc, const DashPoolSnap *s);

/* Owned by the HTTP server: created with it (the first sample a second later), freed with it. */
DashState *dash_create(Loop *loop) WUR;
void dash_free(DashState *ds);
/* Take the samples of one second now (the 1 s timer does; public for the unit tests). */
void dash_tick(DashState *ds, usec_t now);

/* Where the next slice of /dashboard.json starts (zeroed at the start of an answer). */
typedef struct dash_cursor {
    int part;
    uint64_t done;    /* series ids up to this one are written */
    uint64_t since;   /* samples after this seq ... */
    uint64_t upto;    /* ... up to this one (the newest when the answer began) */
    uint64_t written; /* series written so far */
} DashCursor;

/*
 * Write the next slice of /dashboard.json (query: the request's query
 * string, may be NULL) until out holds about `slice` bytes; true when the
 * answer is complete.
 */
bool dash_json_slice(DashState *ds, const char *query, struct evbuffer *out, DashCursor *cur,
                     size_t slice);

/* The page and its Content-Security-Policy (the inline script allowed by its hash). */
const unsigned char *dash_page(size_t *len);
const char *dash_page_csp(DashState *ds);

/* Built from proxy/dashboard/index.html by the Makefile (build/gen/dashboard_page.c). */
extern const unsigned char dash_index_html[];
extern const size_t dash_index_html_len;

#endif
