/*
 * pq_prepared — prepared-statement scenarios against pgfunnel, for tests.
 *
 *   pq_prepared SCENARIO CONNINFO [ARG]...
 *
 * Runs one named scenario through CONNINFO (a libpq connection string for
 * pgfunnel) and exits 0 only if every check passed; each failed check is
 * printed as "FAIL: ...".  Most scenarios expect transaction pooling with
 * default_pool_size = 2: "hog" connections hold one server inside a
 * transaction so that the connection under test is forced onto the other
 * one, which makes "prepared on server A, used on server B" deterministic.
 *
 * Scenarios:
 *   cross            PQprepare / PQexecPrepared across servers, many rounds
 *   types            same text, paramTypes NULL vs explicit OIDs
 *   describe         PQdescribePrepared on a server that never parsed it
 *   parse_error      a Parse with a syntax error, then the name works
 *   pipeline_error   an error in a pipeline skips a later (locally answered) Parse
 *   close_reparse    (raw protocol) Close, then re-Parse another text under the name
 *   raw_order        (raw protocol) exact order of pipelined answers
 *   duplicate        (raw protocol) Parse of a name in use: 42P05, name unchanged
 *   lru MAX          10 statements with max_prepared_statements = MAX
 *   deallocate       DEALLOCATE ALL / DISCARD ALL forget the client's names only
 *   deallocate_extended  DEALLOCATE ALL via the extended protocol, other client
 *   pipeline         libpq pipeline mode: Parse/Bind/Execute of several statements
 *   aborted_tx       Parse / DEALLOCATE ALL refused in an aborted transaction
 *   stress ID LOOPS [notx]  many transactions with shared and private statements
 *                    (notx: no explicit transactions, for statement mode)
 *   names MODE       MODE internal: servers see pgf_N names; client: names pass
 */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <libpq-fe.h>

#define INT4OID 23
#define INT8OID 20
#define TEXTOID 25
#define BOOLOID 16

static int failures;
static const char *conninfo;

__attribute__((format(printf, 1, 2))) static void failf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    fflush(stdout);
    failures++;
}

static void die(const char *what, PGconn *conn)
{
    printf("FATAL: %s: %s\n", what, conn ? PQerrorMessage(conn) : "");
    exit(2);
}

static PGconn *connect_db(void)
{
    PGconn *conn = PQconnectdb(conninfo);
    if (PQstatus(conn) != CONNECTION_OK) die("connect", conn);
    return conn;
}

/* Run SQL; return a copy of the first cell ("" if none), or NULL on error (printed). */
static char *query1(PGconn *conn, const char *sql)
{
    PGresult *res = PQexec(conn, sql);
    ExecStatusType st = PQresultStatus(res);
    char *v = NULL;
    if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
        v = strdup(PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    } else {
        failf("query \"%s\": %s", sql, PQresultErrorMessage(res));
    }
    PQclear(res);
    return v;
}

static long query_long(PGconn *conn, const char *sql)
{
    char *v = query1(conn, sql);
    long n = v ? strtol(v, NULL, 10) : -1;
    free(v);
    return n;
}

/* BEGIN and hold a server; returns its backend pid. */
static long hold(PGconn *conn)
{
    PGresult *res = PQexec(conn, "BEGIN");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) die("BEGIN", conn);
    PQclear(res);
    return query_long(conn, "select pg_backend_pid()");
}

static void release(PGconn *conn)
{
    PGresult *res = PQexec(conn, "COMMIT");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) die("COMMIT", conn);
    PQclear(res);
}

static int prepare(PGconn *conn, const char *name, const char *sql, int n, const Oid *types)
{
    PGresult *res = PQprepare(conn, name, sql, n, types);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    if (!ok) failf("prepare %s (%s): %s", name, sql, PQresultErrorMessage(res));
    PQclear(res);
    return ok;
}

/* Execute a prepared statement with text params; copy of cell (row 0, col) or NULL. */
static char *exec_prep(PGconn *conn, const char *name, int n, const char *const *vals, int col)
{
    PGresult *res = PQexecPrepared(conn, name, n, vals, NULL, NULL, 0);
    char *v = NULL;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) > col)
        v = strdup(PQgetvalue(res, 0, col));
    else
        failf("execute %s: %s (status %s)", name, PQresultErrorMessage(res),
              PQresStatus(PQresultStatus(res)));
    PQclear(res);
    return v;
}

/* Execute expecting an error whose message contains needle. */
static void exec_prep_fails(PGconn *conn, const char *name, const char *needle)
{
    PGresult *res = PQexecPrepared(conn, name, 0, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_FATAL_ERROR)
        failf("execute %s should fail with \"%s\" but got %s", name, needle,
              PQresStatus(PQresultStatus(res)));
    else if (!strstr(PQresultErrorMessage(res), needle))
        failf("execute %s: expected \"%s\", got: %s", name, needle, PQresultErrorMessage(res));
    PQclear(res);
}

static void expect_str(const char *what, const char *expected, char *got)
{
    if (!got) return; /* already reported */
    if (strcmp(expected, got) != 0) failf("%s: expected '%s', got '%s'", what, expected, got);
    free(got);
}

static void expect_long(const char *what, long expected, char *got)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%ld", expected);
    expect_str(what, buf, got);
}

/* ---------------------------------------------------------------- scenarios */

/*
 * h1 holds server A; c prepares (so on B); h2 holds B; h1 lets A go; c
 * executes on A.  Every round adds a statement and runs all earlier ones.
 */
static void sc_cross(void)
{
    PGconn *h1 = connect_db(), *h2 = connect_db(), *c = connect_db();
    enum { ROUNDS = 12 };
    char name[32], sql[128], val[32], what[96];
    for (int r = 0; r < ROUNDS; r++) {
        long pid_a = hold(h1);
        snprintf(name, sizeof(name), "cross_%d", r);
        snprintf(sql, sizeof(sql), "select $1::int + %d, pg_backend_pid()", r * 1000);
        if (!prepare(c, name, sql, 0, NULL)) break;
        long pid_b = query_long(c, "select pg_backend_pid()");
        long pid_b2 = hold(h2);
        if (pid_a == pid_b || pid_b != pid_b2)
            failf("round %d: server pids A=%ld B=%ld h2=%ld: pool_size 2 expected", r, pid_a, pid_b,
                  pid_b2);
        release(h1);
        /* c is now on A, where none of its statements was prepared by c itself */
        for (int k = 0; k <= r; k++) {
            snprintf(name, sizeof(name), "cross_%d", k);
            snprintf(val, sizeof(val), "%d", r);
            const char *vals[1] = {val};
            PGresult *res = PQexecPrepared(c, name, 1, vals, NULL, NULL, 0);
            if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
                failf("round %d: execute %s: %s", r, name, PQresultErrorMessage(res));
            } else {
                long v = strtol(PQgetvalue(res, 0, 0), NULL, 10);
                long pid = strtol(PQgetvalue(res, 0, 1), NULL, 10);
                if (v != k * 1000 + r) failf("round %d: %s returned %ld", r, name, v);
                if (pid != pid_a)
                    failf("round %d: %s ran on pid %ld, expected server A %ld", r, name, pid,
                          pid_a);
            }
            PQclear(res);
        }
        /* the unnamed statement passes through */
        snprintf(what, sizeof(what), "round %d: unnamed PQexecParams", r);
        {
            const char *vals[1] = {"5"};
            PGresult *res = PQexecParams(c, "select $1::int * 3", 1, NULL, vals, NULL, NULL, 0);
            if (PQresultStatus(res) != PGRES_TUPLES_OK)
                failf("%s: %s", what, PQresultErrorMessage(res));
            else
                expect_str(what, "15", strdup(PQgetvalue(res, 0, 0)));
            PQclear(res);
        }
        release(h2);
    }
    PQfinish(h1);
    PQfinish(h2);
    PQfinish(c);
}

static void sc_types(void)
{
    PGconn *c = connect_db();
    const Oid int4[1] = {INT4OID}, int8[1] = {INT8OID};
    const char *sql = "select $1 as v";
    prepare(c, "t_untyped", sql, 0, NULL);
    prepare(c, "t_int4", sql, 1, int4);
    prepare(c, "t_int8", sql, 1, int8);
    prepare(c, "t_untyped2", sql, 0, NULL); /* same text and types as t_untyped */
    const struct {
        const char *name;
        Oid type;
    } want[] = {
        {"t_untyped", TEXTOID}, {"t_int4", INT4OID}, {"t_int8", INT8OID}, {"t_untyped2", TEXTOID}};
    for (int round = 0; round < 6; round++) {
        for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
            PGresult *d = PQdescribePrepared(c, want[i].name);
            if (PQresultStatus(d) != PGRES_COMMAND_OK) {
                failf("describe %s: %s", want[i].name, PQresultErrorMessage(d));
            } else {
                if (PQnparams(d) != 1 || PQparamtype(d, 0) != want[i].type)
                    failf("describe %s: %d params, type %u, expected type %u", want[i].name,
                          PQnparams(d), PQnparams(d) > 0 ? PQparamtype(d, 0) : 0, want[i].type);
                if (PQnfields(d) != 1 || PQftype(d, 0) != want[i].type)
                    failf("describe %s: result type %u, expected %u", want[i].name,
                          PQnfields(d) > 0 ? PQftype(d, 0) : 0, want[i].type);
            }
            PQclear(d);
            const char *vals[1] = {"0042"};
            /* text keeps the leading zeros, integers do not */
            expect_str(want[i].name, want[i].type == TEXTOID ? "0042" : "42",
                       exec_prep(c, want[i].name, 1, vals, 0));
        }
        /* servers hold one statement per distinct (text, types): 3, never 4 */
        long n = query_long(c, "select count(*) from pg_prepared_statements"
                               " where statement = 'select $1 as v'");
        if (n > 3) failf("round %d: %ld server statements for 3 distinct ones", round, n);
        long bad = query_long(c, "select count(*) from pg_prepared_statements"
                                 " where name not like 'pgf\\_%'");
        if (bad != 0) failf("round %d: %ld server statements not named pgf_N", round, bad);
    }
    PQfinish(c);
}

static void sc_describe(void)
{
    PGconn *h1 = connect_db(), *h2 = connect_db(), *c = connect_db();
    const char *sql = "select $1::int8 as a, $2::text || 'x' as b, true as c";
    const Oid types[2] = {0, TEXTOID};
    long pid_a = hold(h1);
    prepare(c, "desc1", sql, 2, types);
    hold(h2); /* B */
    release(h1);
    for (int i = 0; i < 2; i++) { /* on A: first invisibly parsed there, then present */
        PGresult *d = PQdescribePrepared(c, "desc1");
        if (PQresultStatus(d) != PGRES_COMMAND_OK) {
            failf("describe desc1 (%d): %s", i, PQresultErrorMessage(d));
        } else {
            if (PQnparams(d) != 2 || PQparamtype(d, 0) != INT8OID || PQparamtype(d, 1) != TEXTOID)
                failf("describe desc1: nparams %d types %u,%u (expected 2: int8, text)",
                      PQnparams(d), PQnparams(d) > 0 ? PQparamtype(d, 0) : 0,
                      PQnparams(d) > 1 ? PQparamtype(d, 1) : 0);
            if (PQnfields(d) != 3 || strcmp(PQfname(d, 0), "a") != 0 ||
                strcmp(PQfname(d, 1), "b") != 0 || strcmp(PQfname(d, 2), "c") != 0 ||
                PQftype(d, 0) != INT8OID || PQftype(d, 1) != TEXTOID || PQftype(d, 2) != BOOLOID)
                failf("describe desc1: wrong result columns (%d fields)", PQnfields(d));
        }
        PQclear(d);
        expect_long("desc1 runs on server A", pid_a, query1(c, "select pg_backend_pid()"));
    }
    const char *vals[2] = {"41", "y"};
    expect_str("desc1 a", "41", exec_prep(c, "desc1", 2, vals, 0));
    expect_str("desc1 b", "yx", exec_prep(c, "desc1", 2, vals, 1));
    release(h2);
    /* describing a name never prepared gets PostgreSQL's error */
    PGresult *d = PQdescribePrepared(c, "nosuch");
    if (PQresultStatus(d) != PGRES_FATAL_ERROR ||
        !strstr(PQresultErrorMessage(d), "does not exist"))
        failf("describe nosuch: %s %s", PQresStatus(PQresultStatus(d)), PQresultErrorMessage(d));
    PQclear(d);
    expect_str("connection usable after describe error", "1", query1(c, "select 1"));
    PQfinish(h1);
    PQfinish(h2);
    PQfinish(c);
}

static void sc_parse_error(void)
{
    PGconn *h = connect_db(), *c = connect_db();
    for (int i = 0; i < 4; i++) {
        if (i % 2) hold(h); /* alternate servers */
        PGresult *res = PQprepare(c, "e1", "selec 1", 0, NULL);
        if (PQresultStatus(res) != PGRES_FATAL_ERROR ||
            !strstr(PQresultErrorMessage(res), "syntax error"))
            failf("prepare e1 with a syntax error: %s %s", PQresStatus(PQresultStatus(res)),
                  PQresultErrorMessage(res));
        PQclear(res);
        exec_prep_fails(c, "e1", "does not exist"); /* no stale entry */
        expect_str("after the failed Parse", "1", query1(c, "select 1"));
        if (i % 2) release(h);
        prepare(c, "e1", "select 7", 0, NULL);
        expect_str("e1 after a good Parse", "7", exec_prep(c, "e1", 0, NULL, 0));
        if (i % 2 == 0) hold(h);
        expect_str("e1 on the other server", "7", exec_prep(c, "e1", 0, NULL, 0));
        if (i % 2 == 0) release(h);
        /* name e1 is taken now: a second Parse is refused by PostgreSQL, so close it the
         * only way libpq 15 can: DEALLOCATE ALL */
        free(query1(c, "DEALLOCATE ALL"));
    }
    /* another client preparing the broken text must get the error as well */
    PGconn *c2 = connect_db();
    PGresult *res = PQprepare(c2, "e2", "selec 1", 0, NULL);
    if (PQresultStatus(res) != PGRES_FATAL_ERROR) failf("client 2: broken Parse succeeded");
    PQclear(res);
    expect_str("client 2 usable", "1", query1(c2, "select 1"));
    PQfinish(c2);
    PQfinish(h);
    PQfinish(c);
}

/* Read pipeline results until the next NULL; return the first non-NULL status. */
static ExecStatusType pipe_result(PGconn *conn, char **val)
{
    ExecStatusType st = PGRES_EMPTY_QUERY;
    PGresult *res;
    int first = 1;
    if (val) *val = NULL;
    while ((res = PQgetResult(conn)) != NULL) {
        if (first) {
            st = PQresultStatus(res);
            if (st == PGRES_TUPLES_OK && val && PQntuples(res) > 0)
                *val = strdup(PQgetvalue(res, 0, 0));
            if (st == PGRES_FATAL_ERROR && val) *val = strdup(PQresultErrorMessage(res));
            first = 0;
        }
        ExecStatusType s2 = PQresultStatus(res);
        PQclear(res);
        if (s2 == PGRES_PIPELINE_SYNC) return st; /* no NULL follows a sync */
    }
    return st;
}

/*
 * Parse bad, Parse good (a text the server already has: answered locally),
 * Sync.  PostgreSQL skips the second Parse after the error, so the name
 * must not exist afterwards.
 */
static void sc_pipeline_error(void)
{
    PGconn *h = connect_db(), *c = connect_db();
    const char *text = "select 'warm'::text";
    hold(h); /* c stays on the other server throughout */
    prepare(c, "pe_warm", text, 0, NULL);
    if (!PQenterPipelineMode(c)) die("enter pipeline", c);
    if (!PQsendPrepare(c, "pe_bad", "selec 1", 0, NULL) ||
        !PQsendPrepare(c, "pe_good", text, 0, NULL) || !PQpipelineSync(c))
        die("send", c);
    char *v = NULL;
    ExecStatusType st = pipe_result(c, &v);
    if (st != PGRES_FATAL_ERROR) failf("pipeline: bad Parse gave %s", PQresStatus(st));
    free(v);
    st = pipe_result(c, NULL);
    if (st != PGRES_PIPELINE_ABORTED)
        failf("pipeline: Parse after the error gave %s, expected PGRES_PIPELINE_ABORTED",
              PQresStatus(st));
    st = pipe_result(c, NULL);
    if (st != PGRES_PIPELINE_SYNC) failf("pipeline: expected the sync, got %s", PQresStatus(st));
    PQexitPipelineMode(c);
    /* PostgreSQL never ran the Parse of pe_good: it must not exist */
    exec_prep_fails(c, "pe_good", "does not exist");
    expect_str("pe_warm still works", "warm", exec_prep(c, "pe_warm", 0, NULL, 0));
    release(h);
    PQfinish(h);
    PQfinish(c);
}

/*
 * In an aborted transaction PostgreSQL refuses Parse and DEALLOCATE ALL
 * (25P02), so neither may change the client's names.
 */
static void sc_aborted_tx(void)
{
    PGconn *h = connect_db(), *c = connect_db(), *c2 = connect_db();
    const char *text = "select 'ab'::text";
    hold(h);
    prepare(c, "ab_warm", text, 0, NULL);                   /* the other server has the text now */
    prepare(c2, "ab_other", "select 'ab2'::text", 0, NULL); /* so has another client's */
    free(query1(c, "BEGIN"));
    PGresult *res = PQexec(c, "select 1/0");
    PQclear(res);
    res = PQprepare(c, "ab_new", text, 0, NULL);
    if (PQresultStatus(res) != PGRES_FATAL_ERROR ||
        !strstr(PQresultErrorMessage(res), "current transaction is aborted"))
        failf("Parse in an aborted transaction: %s %s (expected the 25P02 error)",
              PQresStatus(PQresultStatus(res)), PQresultErrorMessage(res));
    PQclear(res);
    free(query1(c, "ROLLBACK"));
    exec_prep_fails(c, "ab_new", "does not exist");
    free(query1(c, "BEGIN"));
    res = PQexec(c, "select 1/0");
    PQclear(res);
    res = PQexec(c, "DEALLOCATE ALL");
    if (PQresultStatus(res) != PGRES_FATAL_ERROR)
        failf("DEALLOCATE ALL in an aborted transaction: %s", PQresStatus(PQresultStatus(res)));
    PQclear(res);
    free(query1(c, "ROLLBACK"));
    /* the failed DEALLOCATE ALL deallocated nothing */
    char *v = exec_prep(c, "ab_warm", 0, NULL, 0);
    if (v) expect_str("ab_warm after a failed DEALLOCATE ALL", "ab", v);
    /* the server still has every statement: the pooler must still know it does */
    expect_str("another client's statement after a failed DEALLOCATE ALL", "ab2",
               exec_prep(c2, "ab_other", 0, NULL, 0));
    release(h);
    PQfinish(h);
    PQfinish(c);
    PQfinish(c2);
}

static void sc_lru(int max)
{
    PGconn *h = connect_db(), *c = connect_db();
    enum { N = 10 };
    char name[32], sql[64], val[16], what[64];
    for (int k = 0; k < N; k++) {
        snprintf(name, sizeof(name), "lru_%d", k);
        snprintf(sql, sizeof(sql), "select $1::int + %d", k * 100);
        prepare(c, name, sql, 0, NULL);
    }
    long maxseen = 0;
    for (int round = 0; round < 6; round++) {
        for (int k = 0; k < N; k++) {
            int held = (round + k) % 3 == 0;
            if (held) hold(h); /* move c to the other server now and then */
            snprintf(name, sizeof(name), "lru_%d", (k * 7 + round) % N);
            snprintf(val, sizeof(val), "%d", round);
            const char *vals[1] = {val};
            PGresult *res = PQexec(c, "BEGIN");
            PQclear(res);
            char *got = exec_prep(c, name, 1, vals, 0);
            long n = query_long(c, "select count(*) from pg_prepared_statements");
            res = PQexec(c, "COMMIT");
            PQclear(res);
            if (held) release(h);
            snprintf(what, sizeof(what), "round %d %s", round, name);
            expect_long(what, ((k * 7 + round) % N) * 100 + round, got);
            if (n > max) failf("%s: %ld statements on the server, max %d", what, n, max);
            if (n > maxseen) maxseen = n;
        }
    }
    if (maxseen < 1) failf("no statement ever seen on a server");
    printf("lru: at most %ld statements on a server (max_prepared_statements %d)\n", maxseen, max);
    PQfinish(h);
    PQfinish(c);
}

static void sc_deallocate(void)
{
    PGconn *h = connect_db(), *c = connect_db(), *c2 = connect_db();
    const char *shared = "select 'shared'::text";
    hold(h); /* c and c2 share the other server */
    prepare(c, "d1", "select 1", 0, NULL);
    prepare(c, "d2", shared, 0, NULL);
    prepare(c2, "other", shared, 0, NULL);
    expect_str("d1", "1", exec_prep(c, "d1", 0, NULL, 0));
    const char *stmts[] = {"DEALLOCATE ALL", "deallocate   prepare all;", "DISCARD ALL"};
    for (int i = 0; i < 3; i++) {
        free(query1(c, stmts[i]));
        exec_prep_fails(c, "d1", "does not exist");
        exec_prep_fails(c, "d2", "does not exist");
        /* c2's statement was dropped on the shared server too: the pooler re-parses it */
        expect_str("other client's statement after DEALLOCATE ALL", "shared",
                   exec_prep(c2, "other", 0, NULL, 0));
        prepare(c, "d1", "select 1", 0, NULL);
        prepare(c, "d2", shared, 0, NULL);
        expect_str("d1 re-prepared", "1", exec_prep(c, "d1", 0, NULL, 0));
        expect_str("d2 re-prepared", "shared", exec_prep(c, "d2", 0, NULL, 0));
    }
    release(h);
    PQfinish(h);
    PQfinish(c);
    PQfinish(c2);
}

/*
 * DEALLOCATE ALL through the extended protocol (unnamed statement) drops the
 * pooler's internal statements on the server as well: another client sharing
 * that server must not notice.
 */
static void sc_deallocate_extended(void)
{
    PGconn *h = connect_db(), *c = connect_db(), *c2 = connect_db();
    hold(h); /* c and c2 share the other server */
    prepare(c2, "other", "select 'ext'::text", 0, NULL);
    expect_str("other", "ext", exec_prep(c2, "other", 0, NULL, 0));
    PGresult *res = PQexecParams(c, "DEALLOCATE ALL", 0, NULL, NULL, NULL, NULL, 0);
    if (PQresultStatus(res) != PGRES_COMMAND_OK)
        failf("extended DEALLOCATE ALL: %s", PQresultErrorMessage(res));
    PQclear(res);
    expect_str("other client's statement after an extended-protocol DEALLOCATE ALL", "ext",
               exec_prep(c2, "other", 0, NULL, 0));
    release(h);
    PQfinish(h);
    PQfinish(c);
    PQfinish(c2);
}

typedef struct pipe_cmd {
    char kind; /* P prepare, E execute prepared */
    const char *name;
    const char *sql;
    const char *param;
    const char *want;
} PipeCmd;

static void run_pipeline(PGconn *c, const char *label, const PipeCmd *cmds, int n)
{
    if (!PQenterPipelineMode(c)) die("enter pipeline", c);
    for (int i = 0; i < n; i++) {
        int ok;
        if (cmds[i].kind == 'P') {
            ok = PQsendPrepare(c, cmds[i].name, cmds[i].sql, 0, NULL);
        } else {
            const char *vals[1] = {cmds[i].param};
            ok = PQsendQueryPrepared(c, cmds[i].name, cmds[i].param ? 1 : 0, vals, NULL, NULL, 0);
        }
        if (!ok) die("pipeline send", c);
    }
    if (!PQpipelineSync(c)) die("pipeline sync", c);
    for (int i = 0; i < n; i++) {
        char *v = NULL;
        ExecStatusType st = pipe_result(c, &v);
        ExecStatusType want = cmds[i].kind == 'P' ? PGRES_COMMAND_OK : PGRES_TUPLES_OK;
        if (st != want)
            failf("%s: command %d (%c %s): %s %s", label, i, cmds[i].kind, cmds[i].name,
                  PQresStatus(st), v ? v : "");
        else if (cmds[i].want && (!v || strcmp(v, cmds[i].want) != 0))
            failf("%s: command %d (%c %s): expected '%s', got '%s'", label, i, cmds[i].kind,
                  cmds[i].name, cmds[i].want, v ? v : "(null)");
        free(v);
    }
    ExecStatusType st = pipe_result(c, NULL);
    if (st != PGRES_PIPELINE_SYNC) failf("%s: expected the sync, got %s", label, PQresStatus(st));
    if (!PQexitPipelineMode(c)) failf("%s: exit pipeline: %s", label, PQerrorMessage(c));
}

static void sc_pipeline(void)
{
    PGconn *h = connect_db(), *h2 = connect_db(), *c = connect_db();
    long pid_a = hold(h);
    prepare(c, "pp_known", "select $1::int * 10", 0, NULL); /* on server B */
    const PipeCmd p1[] = {
        {'P', "pp_a", "select $1::int * 2", NULL, NULL},
        {'E', "pp_a", NULL, "21", "42"},
        {'P', "pp_b", "select $1::int * 10", NULL, NULL}, /* B has it: answered locally */
        {'E', "pp_b", NULL, "3", "30"},
        {'E', "pp_known", NULL, "4", "40"},
        {'P', "pp_c", "select $1::text || '!'", NULL, NULL},
        {'P', "pp_d", "select $1::text || '!'", NULL, NULL}, /* same text, still in flight */
        {'E', "pp_d", NULL, "d", "d!"},
        {'E', "pp_c", NULL, "c", "c!"},
        {'P', "pp_e", "select $1::int * 2", NULL, NULL}, /* = pp_a, parsed in this pipeline */
        {'E', "pp_e", NULL, "8", "16"},
    };
    run_pipeline(c, "pipeline on B", p1, (int)(sizeof(p1) / sizeof(p1[0])));
    /* now on server A, where none of these was parsed */
    long pid_b = hold(h2);
    release(h);
    if (pid_b == pid_a) failf("both hogs got server %ld", pid_a);
    const PipeCmd p2[] = {
        {'E', "pp_known", NULL, "5", "50"},
        {'E', "pp_b", NULL, "6", "60"},
        {'P', "pp_f", "select $1::int * 10", NULL, NULL}, /* just invisibly parsed on A */
        {'E', "pp_f", NULL, "7", "70"},
        {'E', "pp_a", NULL, "9", "18"},
        {'E', "pp_e", NULL, "1", "2"},
        {'E', "pp_d", NULL, "x", "x!"},
    };
    run_pipeline(c, "pipeline on A", p2, (int)(sizeof(p2) / sizeof(p2[0])));
    expect_long("pipeline ran on A", pid_a, query1(c, "select pg_backend_pid()"));
    release(h2);
    PQfinish(h);
    PQfinish(h2);
    PQfinish(c);
}

/* Several processes run this at once: texts shared across processes and private ones. */
static void sc_stress(int id, int loops, int use_tx)
{
    PGconn *c = connect_db();
    enum { NS = 6 };
    char name[32], sql[96], val[16];
    for (int k = 0; k < NS; k++) {
        snprintf(name, sizeof(name), "st_%d", k);
        if (k < NS - 1)
            snprintf(sql, sizeof(sql), "select $1::int + %d", k);
        else
            snprintf(sql, sizeof(sql), "select $1::int + %d /* private %d */", 1000 * id, id);
        prepare(c, name, sql, 0, NULL);
    }
    unsigned seed = (unsigned)id * 2654435761u;
    for (int i = 0; i < loops && failures < 10; i++) {
        int k = (int)((seed = seed * 1103515245u + 12345u) >> 16) % NS;
        int tx = use_tx && i % 4 == 0;
        if (tx) free(query1(c, "BEGIN"));
        snprintf(name, sizeof(name), "st_%d", k);
        snprintf(val, sizeof(val), "%d", i);
        const char *vals[1] = {val};
        long want = i + (k < NS - 1 ? k : 1000 * id);
        expect_long(name, want, exec_prep(c, name, 1, vals, 0));
        if (tx) {
            expect_long("st_0 in tx", i, exec_prep(c, "st_0", 1, (const char *[]){val}, 0));
            free(query1(c, "COMMIT"));
        }
    }
    PQfinish(c);
}

static void sc_names(const char *mode)
{
    PGconn *c = connect_db();
    prepare(c, "my_stmt", "select 'names'::text", 0, NULL);
    free(query1(c, "BEGIN"));
    expect_str("my_stmt", "names", exec_prep(c, "my_stmt", 0, NULL, 0));
    long mine = query_long(c, "select count(*) from pg_prepared_statements where name = 'my_stmt'");
    long internal =
        query_long(c, "select count(*) from pg_prepared_statements"
                      " where name like 'pgf\\_%' and statement = 'select ''names''::text'");
    free(query1(c, "COMMIT"));
    if (strcmp(mode, "internal") == 0) {
        if (mine != 0 || internal != 1)
            failf("transaction mode: server has %ld 'my_stmt' and %ld pgf_N (expected 0 and 1)",
                  mine, internal);
    } else if (mine != 1 || internal != 0) {
        failf("session mode: server has %ld 'my_stmt' and %ld pgf_N (expected 1 and 0)", mine,
              internal);
    }
    PQfinish(c);
}

/* ---------------------------------------------------------------- raw protocol */

typedef struct raw {
    int fd;
    uint8_t buf[1 << 16];
    size_t len;
    uint8_t out[8192];
    size_t olen;
} Raw;

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void out_bytes(Raw *r, const void *p, size_t n)
{
    if (r->olen + n > sizeof(r->out)) {
        printf("FATAL: raw output buffer full\n");
        exit(2);
    }
    memcpy(r->out + r->olen, p, n);
    r->olen += n;
}

static void out_str(Raw *r, const char *s)
{
    out_bytes(r, s, strlen(s) + 1);
}

static size_t out_begin(Raw *r, char type)
{
    uint8_t h[5] = {(uint8_t)type, 0, 0, 0, 0};
    size_t at = r->olen;
    out_bytes(r, h, 5);
    return at;
}

static void out_end(Raw *r, size_t at)
{
    put_u32(r->out + at + 1, (uint32_t)(r->olen - at - 1));
}

static void raw_parse(Raw *r, const char *name, const char *sql)
{
    size_t at = out_begin(r, 'P');
    out_str(r, name);
    out_str(r, sql);
    out_bytes(r, "\0\0", 2);
    out_end(r, at);
}

/* Bind (no parameters, text results) + Execute */
static void raw_bind_exec(Raw *r, const char *name)
{
    size_t at = out_begin(r, 'B');
    out_str(r, "");
    out_str(r, name);
    out_bytes(r, "\0\0\0\0\0\0", 6); /* 0 formats, 0 params, 0 result formats */
    out_end(r, at);
    at = out_begin(r, 'E');
    out_str(r, "");
    out_bytes(r, "\0\0\0\0", 4);
    out_end(r, at);
}

static void raw_close(Raw *r, const char *name)
{
    size_t at = out_begin(r, 'C');
    out_bytes(r, "S", 1);
    out_str(r, name);
    out_end(r, at);
}

static void raw_sync(Raw *r)
{
    size_t at = out_begin(r, 'S');
    out_end(r, at);
}

static void raw_flush_out(Raw *r)
{
    size_t o = 0;
    while (o < r->olen) {
        ssize_t n = send(r->fd, r->out + o, r->olen - o, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            printf("FATAL: send: %s\n", strerror(errno));
            exit(2);
        }
        o += (size_t)n;
    }
    r->olen = 0;
}

/* Next message: type, body (valid until the next call) and its length. */
static int raw_next(Raw *r, uint8_t *type, const uint8_t **body, uint32_t *blen)
{
    static uint8_t msg[1 << 16];
    for (;;) {
        if (r->len >= 5) {
            uint32_t len = get_u32(r->buf + 1);
            if (len < 4 || len > sizeof(msg)) {
                printf("FATAL: bad message length %u\n", len);
                exit(2);
            }
            if (r->len >= len + 1) {
                *type = r->buf[0];
                memcpy(msg, r->buf + 5, len - 4);
                *body = msg;
                *blen = len - 4;
                memmove(r->buf, r->buf + len + 1, r->len - len - 1);
                r->len -= len + 1;
                return 1;
            }
        }
        struct pollfd pfd = {.fd = r->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, 10000);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) return -1; /* timeout */
        ssize_t n = recv(r->fd, r->buf + r->len, sizeof(r->buf) - r->len, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return 0;
        r->len += (size_t)n;
    }
}

/*
 * Read until ReadyForQuery.  types gets the message types seen (ParameterStatus,
 * notices and BackendKeyData left out); data gets the first column of every
 * DataRow, separated by commas; err the message of the first ErrorResponse.
 */
static void raw_until_ready(Raw *r, char *types, size_t tcap, char *data, size_t dcap, char *err,
                            size_t ecap)
{
    size_t nt = 0, nd = 0;
    types[0] = 0;
    if (data) data[0] = 0;
    if (err) err[0] = 0;
    for (;;) {
        uint8_t t;
        const uint8_t *b;
        uint32_t bl;
        int rc = raw_next(r, &t, &b, &bl);
        if (rc <= 0) {
            failf("raw: %s after '%s'", rc < 0 ? "timeout" : "connection closed", types);
            printf("FATAL: cannot continue\n");
            exit(2);
        }
        if (t == 'S' || t == 'N' || t == 'K') continue;
        if (nt + 1 < tcap) {
            types[nt++] = (char)t;
            types[nt] = 0;
        }
        if (t == 'D' && data && bl >= 6) {
            uint32_t l = get_u32(b + 2);
            if (l != 0xffffffffu && l <= bl - 6 && nd + l + 2 < dcap) {
                if (nd) data[nd++] = ',';
                memcpy(data + nd, b + 6, l);
                nd += l;
                data[nd] = 0;
            }
        }
        if (t == 'E' && err && !err[0]) {
            /* "SQLSTATE message" */
            const char *code = "", *msg = "";
            for (uint32_t i = 0; i < bl && b[i];) {
                uint8_t f = b[i++];
                const char *v = (const char *)b + i;
                size_t l = strnlen(v, bl - i);
                if (f == 'C') code = v;
                if (f == 'M') msg = v;
                i += (uint32_t)l + 1;
            }
            snprintf(err, ecap, "%s %s", code, msg);
        }
        if (t == 'R' && bl >= 4 && get_u32(b) != 0) {
            printf("FATAL: raw: authentication %u requested (use trust)\n", get_u32(b));
            exit(2);
        }
        if (t == 'Z') return;
    }
}

static Raw *raw_connect(void)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    if (!opts) {
        printf("FATAL: conninfo: %s\n", err ? err : "?");
        exit(2);
    }
    const char *host = "127.0.0.1", *port = "5432", *user = "postgres", *db = NULL;
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !o->val[0]) continue;
        if (strcmp(o->keyword, "host") == 0) host = o->val;
        if (strcmp(o->keyword, "hostaddr") == 0) host = o->val;
        if (strcmp(o->keyword, "port") == 0) port = o->val;
        if (strcmp(o->keyword, "user") == 0) user = o->val;
        if (strcmp(o->keyword, "dbname") == 0) db = o->val;
    }
    if (!db) db = user;
    struct addrinfo hints = {0}, *ai;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(host, port, &hints, &ai) != 0) {
        printf("FATAL: cannot resolve %s:%s\n", host, port);
        exit(2);
    }
    Raw *r = calloc(1, sizeof(*r));
    if (!r) exit(2);
    r->fd = socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
    if (r->fd < 0 || connect(r->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
        printf("FATAL: connect %s:%s: %s\n", host, port, strerror(errno));
        exit(2);
    }
    freeaddrinfo(ai);
    uint8_t v[4];
    out_bytes(r, "\0\0\0\0", 4);
    put_u32(v, 196608);
    out_bytes(r, v, 4);
    out_str(r, "user");
    out_str(r, user);
    out_str(r, "database");
    out_str(r, db);
    out_bytes(r, "", 1);
    put_u32(r->out, (uint32_t)r->olen);
    PQconninfoFree(opts);
    raw_flush_out(r);
    char types[64];
    raw_until_ready(r, types, sizeof(types), NULL, 0, NULL, 0);
    if (strchr(types, 'E')) {
        printf("FATAL: raw login failed: %s\n", types);
        exit(2);
    }
    return r;
}

static void raw_free(Raw *r)
{
    uint8_t x[5] = {'X', 0, 0, 0, 4};
    if (send(r->fd, x, 5, MSG_NOSIGNAL) < 0) { /* the pooler may be gone: fine */
    }
    close(r->fd);
    free(r);
}

/* Send what is queued, read to ReadyForQuery, compare types and data. */
static void raw_check(Raw *r, const char *label, const char *want_types, const char *want_data,
                      const char *want_err)
{
    char types[128], data[512], err[512];
    raw_flush_out(r);
    raw_until_ready(r, types, sizeof(types), data, sizeof(data), err, sizeof(err));
    if (strcmp(types, want_types) != 0)
        failf("%s: messages '%s', expected '%s' (error: %s)", label, types, want_types, err);
    if (want_data && strcmp(data, want_data) != 0)
        failf("%s: data '%s', expected '%s'", label, data, want_data);
    if (want_err && !strstr(err, want_err))
        failf("%s: error '%s', expected '%s'", label, err, want_err);
}

static void sc_close_reparse(void)
{
    PGconn *h = connect_db();
    Raw *r = raw_connect();
    raw_parse(r, "c1", "select 1");
    raw_sync(r);
    raw_check(r, "Parse c1", "1Z", NULL, NULL);
    raw_bind_exec(r, "c1");
    raw_sync(r);
    raw_check(r, "run c1", "2DCZ", "1", NULL);
    raw_close(r, "c1");
    raw_sync(r);
    raw_check(r, "Close c1", "3Z", NULL, NULL);
    raw_bind_exec(r, "c1");
    raw_sync(r);
    raw_check(r, "run closed c1", "EZ", NULL, "does not exist");
    raw_parse(r, "c1", "select 2");
    raw_bind_exec(r, "c1");
    raw_sync(r);
    raw_check(r, "re-Parse c1 with another text", "12DCZ", "2", NULL);
    hold(h); /* another server: c1 must mean "select 2" there too */
    raw_bind_exec(r, "c1");
    raw_sync(r);
    raw_check(r, "c1 on the other server", "2DCZ", "2", NULL);
    /* Close and re-Parse in one pipeline; and the old text under the same name again */
    raw_close(r, "c1");
    raw_parse(r, "c1", "select 1");
    raw_bind_exec(r, "c1");
    raw_close(r, "never_prepared"); /* not an error in PostgreSQL */
    raw_sync(r);
    raw_check(r, "Close, Parse, run, Close unknown", "312DC3Z", "1", NULL);
    release(h);
    raw_bind_exec(r, "c1");
    raw_sync(r);
    raw_check(r, "c1 back on the first server", "2DCZ", "1", NULL);
    /* a failed Parse leaves no entry, and the name is free afterwards */
    raw_close(r, "c1");
    raw_parse(r, "c1", "selec 3");
    raw_bind_exec(r, "c1");
    raw_sync(r);
    raw_check(r, "Close, broken Parse", "3EZ", NULL, "syntax error");
    raw_bind_exec(r, "c1");
    raw_sync(r);
    raw_check(r, "run after broken Parse", "EZ", NULL, "does not exist");
    raw_parse(r, "c1", "select 3");
    raw_bind_exec(r, "c1");
    raw_sync(r);
    raw_check(r, "Parse after broken Parse", "12DCZ", "3", NULL);
    raw_free(r);
    PQfinish(h);
}

/*
 * A Parse of a name in use is refused with PostgreSQL's 42P05, the rest up
 * to Sync skipped, and the name keeps its statement.  Also runs against
 * PostgreSQL itself, as the reference.
 */
static void sc_duplicate(void)
{
    PGconn *h = connect_db();
    Raw *r = raw_connect();
    raw_parse(r, "d1", "select 1");
    raw_sync(r);
    raw_check(r, "Parse d1", "1Z", NULL, NULL);
    raw_parse(r, "d1", "select 2");
    raw_bind_exec(r, "d1");
    raw_sync(r);
    raw_check(r, "Parse d1 again", "EZ", NULL, "42P05 prepared statement \"d1\" already exists");
    raw_bind_exec(r, "d1");
    raw_sync(r);
    raw_check(r, "d1 keeps its first text", "2DCZ", "1", NULL);
    hold(h); /* on another server, and with the same text: still a duplicate */
    raw_parse(r, "d1", "select 1");
    raw_sync(r);
    raw_check(r, "Parse d1 with its own text", "EZ", NULL, "42P05 prepared statement \"d1\"");
    raw_bind_exec(r, "d1");
    raw_sync(r);
    raw_check(r, "d1 on the other server", "2DCZ", "1", NULL);
    release(h);
    /* in a pipeline: what precedes is answered, what follows is skipped */
    raw_parse(r, "d2", "select 'x'");
    raw_parse(r, "d2", "select 'y'");
    raw_bind_exec(r, "d2");
    raw_parse(r, "d3", "select 'z'");
    raw_sync(r);
    raw_check(r, "new d2, duplicate d2", "1EZ", NULL, "42P05 prepared statement \"d2\"");
    raw_bind_exec(r, "d2");
    raw_bind_exec(r, "d3");
    raw_sync(r);
    raw_check(r, "d2 is the first text, d3 was skipped", "2DCEZ", "x", "26000");
    /* an earlier error makes PostgreSQL skip the duplicate: no 42P05 then */
    raw_bind_exec(r, "never_prepared");
    raw_parse(r, "d2", "select 'y'");
    raw_sync(r);
    raw_check(r, "duplicate after an error", "EZ", NULL, "26000");
    /* a Close first frees the name, also in the same pipeline */
    raw_close(r, "d2");
    raw_parse(r, "d2", "select 'w'");
    raw_bind_exec(r, "d2");
    raw_sync(r);
    raw_check(r, "Close and Parse d2", "312DCZ", "w", NULL);
    raw_bind_exec(r, "d1");
    raw_bind_exec(r, "d2");
    raw_sync(r);
    raw_check(r, "both still usable", "2DC2DCZ", "1,w", NULL);
    /* in an aborted transaction the Parse is refused before the name is looked at */
    raw_parse(r, "", "begin");
    raw_bind_exec(r, "");
    raw_sync(r);
    raw_check(r, "begin", "12CZ", NULL, NULL);
    raw_parse(r, "", "select 1/0");
    raw_bind_exec(r, "");
    raw_sync(r);
    raw_check(r, "an error aborts the transaction", "1EZ", NULL, "22012");
    raw_parse(r, "d1", "select 4");
    raw_sync(r);
    raw_check(r, "duplicate in an aborted transaction", "EZ", NULL, "25P02");
    raw_parse(r, "", "rollback");
    raw_bind_exec(r, "");
    raw_sync(r);
    raw_check(r, "rollback", "12CZ", NULL, NULL);
    raw_bind_exec(r, "d1");
    raw_sync(r);
    raw_check(r, "d1 after all that", "2DCZ", "1", NULL);
    raw_free(r);
    PQfinish(h);
}

static void sc_raw_order(void)
{
    PGconn *h = connect_db();
    Raw *r = raw_connect(), *r2 = raw_connect();
    hold(h); /* both raw clients on the other server */
    raw_parse(r2, "warm", "select 'w'");
    raw_sync(r2);
    raw_check(r2, "warm-up Parse", "1Z", NULL, NULL);
    /* new, new, cached (locally answered), same text as the first (in flight) */
    raw_parse(r, "o1", "select 'a'");
    raw_bind_exec(r, "o1");
    raw_parse(r, "o2", "select 'b'");
    raw_parse(r, "o3", "select 'w'");
    raw_parse(r, "o4", "select 'a'");
    raw_bind_exec(r, "o3");
    raw_bind_exec(r, "o4");
    raw_bind_exec(r, "o2");
    raw_close(r, "o4");
    raw_parse(r, "o5", "select 'w'");
    raw_sync(r);
    raw_check(r, "pipelined", "12DC1112DC2DC2DC31Z", "a,w,a,b", NULL);
    /* several Syncs in one write */
    raw_bind_exec(r, "o5");
    raw_sync(r);
    raw_parse(r, "o6", "select 'w'");
    raw_sync(r);
    raw_bind_exec(r, "o6");
    raw_sync(r);
    raw_flush_out(r);
    char types[64], data[64];
    raw_until_ready(r, types, sizeof(types), data, sizeof(data), NULL, 0);
    if (strcmp(types, "2DCZ") != 0 || strcmp(data, "w") != 0)
        failf("3 syncs: first '%s' '%s'", types, data);
    raw_until_ready(r, types, sizeof(types), data, sizeof(data), NULL, 0);
    if (strcmp(types, "1Z") != 0) failf("3 syncs: second '%s' (expected 1Z)", types);
    raw_until_ready(r, types, sizeof(types), data, sizeof(data), NULL, 0);
    if (strcmp(types, "2DCZ") != 0 || strcmp(data, "w") != 0)
        failf("3 syncs: third '%s' '%s'", types, data);
    release(h);
    raw_free(r);
    raw_free(r2);
    PQfinish(h);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: pq_prepared SCENARIO CONNINFO [ARG]...\n");
        return 2;
    }
    const char *sc = argv[1];
    conninfo = argv[2];
    if (strcmp(sc, "cross") == 0)
        sc_cross();
    else if (strcmp(sc, "types") == 0)
        sc_types();
    else if (strcmp(sc, "describe") == 0)
        sc_describe();
    else if (strcmp(sc, "parse_error") == 0)
        sc_parse_error();
    else if (strcmp(sc, "pipeline_error") == 0)
        sc_pipeline_error();
    else if (strcmp(sc, "close_reparse") == 0)
        sc_close_reparse();
    else if (strcmp(sc, "raw_order") == 0)
        sc_raw_order();
    else if (strcmp(sc, "duplicate") == 0)
        sc_duplicate();
    else if (strcmp(sc, "aborted_tx") == 0)
        sc_aborted_tx();
    else if (strcmp(sc, "lru") == 0 && argc > 3)
        sc_lru(atoi(argv[3]));
    else if (strcmp(sc, "deallocate") == 0)
        sc_deallocate();
    else if (strcmp(sc, "deallocate_extended") == 0)
        sc_deallocate_extended();
    else if (strcmp(sc, "pipeline") == 0)
        sc_pipeline();
    else if (strcmp(sc, "stress") == 0 && argc > 4)
        sc_stress(atoi(argv[3]), atoi(argv[4]), !(argc > 5 && strcmp(argv[5], "notx") == 0));
    else if (strcmp(sc, "names") == 0 && argc > 3)
        sc_names(argv[3]);
    else {
        fprintf(stderr, "pq_prepared: unknown scenario or missing argument: %s\n", sc);
        return 2;
    }
    if (failures) {
        printf("%s: %d check(s) failed\n", sc, failures);
        return 1;
    }
    printf("%s: ok\n", sc);
    return 0;
}
