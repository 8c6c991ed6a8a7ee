/*
 * pq_ha — libpq client for the high-availability tests (t_peers.sh, t_hosts.sh).
 *
 *   pq_ha cancel CONNINFO N [SLEEP_SEC]
 *       N times: connect, start `SELECT pg_sleep(SLEEP_SEC)` (default 30),
 *       wait 0.3 s, PQcancel it on a new connection, wait for the result.
 *       Prints one line per round:
 *         round I cancelled=1 sqlstate=57014 cancel_ms=T result_ms=T
 *       and at the end "cancelled N of N".  Exit 0 when every query was
 *       cancelled, 1 otherwise.
 *
 *   pq_ha sessions CONNINFO N
 *       Opens N connections and runs `SELECT 1` on each, prints "ready",
 *       then waits for a line on stdin and runs `SELECT 1` on each again.
 *       Prints "round R ok=X fail=Y" after each round and, for each
 *       failure, "fail I: message".  Exit 0 (the caller judges the counts).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libpq-fe.h>

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void first_line(char *s)
{
    s[strcspn(s, "\n")] = 0;
}

static int do_cancel(const char *conninfo, int n, int sleep_sec)
{
    int cancelled = 0;
    char sql[64];
    snprintf(sql, sizeof(sql), "SELECT pg_sleep(%d)", sleep_sec);
    for (int i = 1; i <= n; i++) {
        PGconn *pg = PQconnectdb(conninfo);
        if (PQstatus(pg) != CONNECTION_OK) {
            char *m = PQerrorMessage(pg);
            first_line(m);
            printf("round %d connect failed: %s\n", i, m);
            PQfinish(pg);
            continue;
        }
        if (!PQsendQuery(pg, sql)) {
            printf("round %d send failed\n", i);
            PQfinish(pg);
            continue;
        }
        struct timespec d = {0, 300 * 1000 * 1000};
        nanosleep(&d, NULL);
        PGcancel *c = PQgetCancel(pg);
        char err[256] = "";
        long long t0 = now_ms();
        int ok = c && PQcancel(c, err, sizeof(err));
        long long t1 = now_ms();
        if (c) PQfreeCancel(c);
        const char *state = "none";
        char statebuf[8] = "";
        PGresult *res;
        while ((res = PQgetResult(pg)) != NULL) {
            const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            if (s) {
                snprintf(statebuf, sizeof(statebuf), "%s", s);
                state = statebuf;
            }
            PQclear(res);
        }
        long long t2 = now_ms();
        int was = strcmp(state, "57014") == 0;
        cancelled += was;
        printf("round %d cancelled=%d sqlstate=%s cancel_ok=%d cancel_ms=%lld result_ms=%lld%s%s\n",
               i, was, state, ok, t1 - t0, t2 - t0, err[0] ? " error=" : "", err);
        fflush(stdout);
        PQfinish(pg);
    }
    printf("cancelled %d of %d\n", cancelled, n);
    return cancelled == n ? 0 : 1;
}

static void sessions_round(PGconn **v, int n, int round)
{
    int ok = 0, fail = 0;
    for (int i = 0; i < n; i++) {
        PGresult *res = v[i] ? PQexec(v[i], "SELECT 1") : NULL;
        if (res && PQresultStatus(res) == PGRES_TUPLES_OK) {
            ok++;
        } else {
            char *m = v[i] ? PQerrorMessage(v[i]) : "not connected";
            first_line(m);
            printf("fail %d: %s\n", i, m);
            fail++;
        }
        PQclear(res);
    }
    printf("round %d ok=%d fail=%d\n", round, ok, fail);
    fflush(stdout);
}

static int do_sessions(const char *conninfo, int n)
{
    PGconn **v = calloc((size_t)n, sizeof(*v));
    if (!v) return 1;
    for (int i = 0; i < n; i++) {
        v[i] = PQconnectdb(conninfo);
        if (PQstatus(v[i]) != CONNECTION_OK) {
            char *m = PQerrorMessage(v[i]);
            first_line(m);
            printf("connect %d failed: %s\n", i, m);
            PQfinish(v[i]);
            v[i] = NULL;
        }
    }
    sessions_round(v, n, 1);
    printf("ready\n");
    fflush(stdout);
    char line[64];
    if (fgets(line, sizeof(line), stdin)) sessions_round(v, n, 2);
    for (int i = 0; i < n; i++)
        PQfinish(v[i]);
    free(v);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "cancel") == 0)
        return do_cancel(argv[2], atoi(argv[3]), argc >= 5 ? atoi(argv[4]) : 30);
    if (argc >= 4 && strcmp(argv[1], "sessions") == 0) return do_sessions(argv[2], atoi(argv[3]));
    fprintf(stderr, "usage: pq_ha cancel CONNINFO N [SLEEP_SEC] | pq_ha sessions CONNINFO N\n");
    return 2;
}
