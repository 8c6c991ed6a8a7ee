/*
 * pq_pipeline — drives libpq's pipeline mode against a server (or pgfunnel)
 * and checks every result.  Used by tests/integration/t_pooling.sh.
 *
 *   pq_pipeline [-n ITERATIONS] [-q QUERIES] [-b BIGBYTES] [-t TAG] CONNINFO
 *
 * One iteration, sent as one pipeline before any result is read:
 *   batch 1: QUERIES (default 4) times  select $1::int * 2, <padding>,  a
 *            set_config(.., is_local) and a current_setting() that must see
 *            it (one implicit transaction, so one server), then Sync;
 *   batch 2: current_setting() must be empty again (new transaction),
 *            QUERIES more as in batch 1 and, with -b, a BIGBYTES parameter echoed back and
 *            compared and a BIGBYTES result row, then Sync;
 *   batch 3: select 1/0 (error) and a query that must be aborted, then Sync;
 *   batch 4: one more query after the error, then Sync.
 * Exit 0 only when every result is what it should be; a mismatch is printed
 * to stderr with the iteration and query.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <libpq-fe.h>

static PGconn *conn;
static int iteration;
static int failures;

static void complain(const char *what, const char *detail)
{
    fprintf(stderr, "pq_pipeline: iteration %d: %s%s%s\n", iteration, what, detail ? ": " : "",
            detail ? detail : "");
    failures++;
}

static void send_query(const char *sql, int nparams, const char *const *values)
{
    if (!PQsendQueryParams(conn, sql, nparams, NULL, values, NULL, NULL, 0)) {
        fprintf(stderr, "pq_pipeline: PQsendQueryParams(%s): %s", sql, PQerrorMessage(conn));
        exit(2);
    }
}

static void send_sync(void)
{
    if (!PQpipelineSync(conn)) {
        fprintf(stderr, "pq_pipeline: PQpipelineSync: %s", PQerrorMessage(conn));
        exit(2);
    }
}

/* The result of the next query: status, then the NULL that ends it. */
static PGresult *next_result(const char *what, ExecStatusType want)
{
    PGresult *r = PQgetResult(conn);
    if (!r) {
        complain(what, "no result (connection lost?)");
        fprintf(stderr, "%s", PQerrorMessage(conn));
        exit(1);
    }
    if (PQresultStatus(r) != want) {
        char buf[512];
        snprintf(buf, sizeof(buf), "status %s, expected %s; %s", PQresStatus(PQresultStatus(r)),
                 PQresStatus(want), PQresultErrorMessage(r));
        complain(what, buf);
    }
    if (want != PGRES_PIPELINE_SYNC) {
        PGresult *end = PQgetResult(conn);
        if (end) {
            complain(what, "more than one result for one query");
            PQclear(end);
        }
    }
    return r;
}

/* One row, one column, equal to `want` (NULL = SQL NULL or empty string). */
static void expect_value(const char *what, const char *want)
{
    PGresult *r = next_result(what, PGRES_TUPLES_OK);
    if (PQresultStatus(r) == PGRES_TUPLES_OK) {
        if (PQntuples(r) != 1 || PQnfields(r) < 1) {
            complain(what, "not exactly one row");
        } else {
            const char *got = PQgetisnull(r, 0, 0) ? NULL : PQgetvalue(r, 0, 0);
            bool ok = want ? got && strcmp(got, want) == 0 : !got || !*got;
            if (!ok) {
                char buf[256];
                snprintf(buf, sizeof(buf), "got '%.80s', expected '%.80s'", got ? got : "NULL",
                         want ? want : "NULL or empty");
                complain(what, buf);
            }
        }
    }
    PQclear(r);
}

static void expect_status(const char *what, ExecStatusType st)
{
    PQclear(next_result(what, st));
}

static char *make_big(long n)
{
    char *s = malloc((size_t)n + 1);
    if (!s) exit(2);
    for (long i = 0; i < n; i++)
        s[i] = (char)('0' + i % 10);
    s[n] = 0;
    return s;
}

int main(int argc, char **argv)
{
    int iterations = 20, nq = 4, opt;
    long big = 0;
    const char *tag = "t";
    while ((opt = getopt(argc, argv, "n:q:b:t:")) != -1) {
        switch (opt) {
        case 'n':
            iterations = atoi(optarg);
            break;
        case 'q':
            nq = atoi(optarg);
            break;
        case 'b':
            big = atol(optarg);
            break;
        case 't':
            tag = optarg;
            break;
        default:
            optind = argc; /* usage below */
            break;
        }
    }
    if (optind != argc - 1 || big < 0 || big % 10 != 0 || nq < 1) {
        fprintf(stderr, "usage: pq_pipeline [-n ITERATIONS] [-q QUERIES] "
                        "[-b BIGBYTES(multiple of 10)] [-t TAG] CONNINFO\n");
        return 2;
    }
    conn = PQconnectdb(argv[optind]);
    if (PQstatus(conn) != CONNECTION_OK) {
        fprintf(stderr, "pq_pipeline: connect: %s", PQerrorMessage(conn));
        return 2;
    }
    char *bigval = big ? make_big(big) : NULL;
    char bigreps[32];
    snprintf(bigreps, sizeof(bigreps), "%ld", big / 10);
    /* per query: the argument and the expected result */
    char(*args)[32] = calloc((size_t)nq * 2, sizeof(*args));
    char(*want)[32] = calloc((size_t)nq * 2, sizeof(*want));
    if (!args || !want) return 2;
    /* padding makes results big enough to fill socket buffers with large -q */
    const char *arith = "select $1::bigint * 2, repeat('p', 100)";

    for (iteration = 1; iteration <= iterations; iteration++) {
        char tagval[128], what[64];
        const char *p[2];
        snprintf(tagval, sizeof(tagval), "%s-%d-%d", tag, (int)getpid(), iteration);
        for (int i = 0; i < nq * 2; i++) {
            long long v = (long long)iteration * 10000000 + i;
            snprintf(args[i], sizeof(args[i]), "%lld", v);
            snprintf(want[i], sizeof(want[i]), "%lld", v * 2);
        }
        if (!PQenterPipelineMode(conn)) {
            fprintf(stderr, "pq_pipeline: PQenterPipelineMode: %s", PQerrorMessage(conn));
            return 2;
        }
        /* batch 1 */
        for (int i = 0; i < nq; i++) {
            p[0] = args[i];
            send_query(arith, 1, p);
        }
        p[0] = tagval;
        send_query("select set_config('pf.tag', $1, true)", 1, p);
        send_query("select current_setting('pf.tag', true)", 0, NULL);
        send_sync();
        /* batch 2 */
        send_query("select current_setting('pf.tag', true)", 0, NULL);
        for (int i = nq; i < nq * 2; i++) {
            p[0] = args[i];
            send_query(arith, 1, p);
        }
        if (big) {
            p[0] = bigval;
            p[1] = bigreps;
            send_query("select ($1::text = repeat('0123456789', $2::int))::text", 2, p);
            p[0] = bigreps;
            send_query("select repeat('0123456789', $1::int)", 1, p);
        }
        send_sync();
        /* batch 3: an error aborts the rest of the batch up to its Sync */
        send_query("select 1/0", 0, NULL);
        send_query("select 'not run'", 0, NULL);
        send_sync();
        /* batch 4 */
        p[0] = tagval;
        send_query("select $1::text", 1, p);
        send_sync();
        if (PQflush(conn) < 0) {
            fprintf(stderr, "pq_pipeline: PQflush: %s", PQerrorMessage(conn));
            return 2;
        }

        for (int i = 0; i < nq; i++) {
            snprintf(what, sizeof(what), "batch 1 query %d", i + 1);
            expect_value(what, want[i]);
        }
        expect_value("batch 1 set_config", tagval);
        expect_value("batch 1 current_setting (same transaction)", tagval);
        expect_status("sync 1", PGRES_PIPELINE_SYNC);
        expect_value("batch 2 current_setting (new transaction)", NULL);
        for (int i = nq; i < nq * 2; i++) {
            snprintf(what, sizeof(what), "batch 2 query %d", i + 1);
            expect_value(what, want[i]);
        }
        if (big) {
            expect_value("batch 2 big parameter compare", "true");
            PGresult *r = next_result("batch 2 big row", PGRES_TUPLES_OK);
            if (PQresultStatus(r) == PGRES_TUPLES_OK &&
                (PQntuples(r) != 1 || PQgetlength(r, 0, 0) != big ||
                 memcmp(PQgetvalue(r, 0, 0), bigval, (size_t)big) != 0))
                complain("batch 2 big row", "content differs");
            PQclear(r);
        }
        expect_status("sync 2", PGRES_PIPELINE_SYNC);
        expect_status("batch 3 division by zero", PGRES_FATAL_ERROR);
        expect_status("batch 3 aborted query", PGRES_PIPELINE_ABORTED);
        expect_status("sync 3", PGRES_PIPELINE_SYNC);
        expect_value("batch 4 after the error", tagval);
        expect_status("sync 4", PGRES_PIPELINE_SYNC);
        if (!PQexitPipelineMode(conn)) {
            complain("PQexitPipelineMode", PQerrorMessage(conn));
            break;
        }
        if (failures > 20) break;
    }
    /* the connection must still be usable outside pipeline mode */
    PGresult *r = PQexec(conn, "select 'done'");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || strcmp(PQgetvalue(r, 0, 0), "done") != 0) {
        iteration = 0;
        complain("final select", PQresultErrorMessage(r));
    }
    PQclear(r);
    PQfinish(conn);
    free(bigval);
    free(args);
    free(want);
    if (failures) {
        fprintf(stderr, "pq_pipeline: %d failure(s)\n", failures);
        return 1;
    }
    printf("pq_pipeline: %d iterations ok\n", iterations);
    return 0;
}
