/*
 * login_storm.c — many logins at once while one connected client keeps
 * querying: shows whether logins (SCRAM hashing, TLS handshakes) stall the
 * pooler's event loop.
 *
 *   login_storm "STORM_CONNINFO" "BUSY_CONNINFO" [CLIENTS=200] [ROUNDS=1]
 *
 * CLIENTS threads each open ROUNDS connections (connect, SELECT 1, close)
 * starting together, while a busy client runs SELECT 1 back to back.
 * Prints key=value lines: logins, failures, login rate, and the busy
 * client's latency percentiles during the storm.  Exit 1 if any login or
 * busy query failed.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <libpq-fe.h>

static const char *storm_conninfo;
static int rounds = 1;
static atomic_int logins_ok, logins_failed;
static pthread_barrier_t start_barrier;
static char first_error[512];
static pthread_mutex_t err_lock = PTHREAD_MUTEX_INITIALIZER;

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000LL + ts.tv_nsec / 1000;
}

static void note_error(const char *msg)
{
    pthread_mutex_lock(&err_lock);
    if (!first_error[0]) snprintf(first_error, sizeof(first_error), "%s", msg);
    pthread_mutex_unlock(&err_lock);
}

static void *storm_thread(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&start_barrier);
    for (int i = 0; i < rounds; i++) {
        PGconn *c = PQconnectdb(storm_conninfo);
        if (PQstatus(c) != CONNECTION_OK) {
            note_error(PQerrorMessage(c));
            atomic_fetch_add(&logins_failed, 1);
            PQfinish(c);
            continue;
        }
        PGresult *r = PQexec(c, "SELECT 1");
        if (PQresultStatus(r) == PGRES_TUPLES_OK)
            atomic_fetch_add(&logins_ok, 1);
        else {
            note_error(PQresultErrorMessage(r));
            atomic_fetch_add(&logins_failed, 1);
        }
        PQclear(r);
        PQfinish(c);
    }
    return NULL;
}

static int cmp_ll(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s STORM_CONNINFO BUSY_CONNINFO [CLIENTS] [ROUNDS]\n", argv[0]);
        return 2;
    }
    storm_conninfo = argv[1];
    int clients = argc > 3 ? atoi(argv[3]) : 200;
    rounds = argc > 4 ? atoi(argv[4]) : 1;
    if (clients < 1 || rounds < 1) return 2;

    PGconn *busy = PQconnectdb(argv[2]);
    if (PQstatus(busy) != CONNECTION_OK) {
        fprintf(stderr, "busy client: %s", PQerrorMessage(busy));
        return 1;
    }
    pthread_t *th = calloc((size_t)clients, sizeof(*th));
    size_t cap = 1 << 20, n = 0;
    long long *lat = malloc(cap * sizeof(*lat));
    if (!th || !lat) return 1;
    pthread_barrier_init(&start_barrier, NULL, (unsigned)clients + 1);
    for (int i = 0; i < clients; i++)
        if (pthread_create(&th[i], NULL, storm_thread, NULL) != 0) return 1;
    long long t0 = now_us();
    pthread_barrier_wait(&start_barrier);
    int busy_failed = 0;
    /* query until every storm connection is done */
    for (;;) {
        long long q0 = now_us();
        PGresult *r = PQexec(busy, "SELECT 1");
        long long q1 = now_us();
        if (PQresultStatus(r) != PGRES_TUPLES_OK) busy_failed++;
        PQclear(r);
        if (n < cap) lat[n++] = q1 - q0;
        if (atomic_load(&logins_ok) + atomic_load(&logins_failed) >= clients * rounds) break;
        if (q1 - t0 > 120 * 1000000LL) break; /* bounded */
    }
    long long t1 = now_us();
    for (int i = 0; i < clients; i++)
        pthread_join(th[i], NULL);
    qsort(lat, n, sizeof(*lat), cmp_ll);
    double secs = (double)(t1 - t0) / 1e6;
    printf("logins_ok=%d\nlogins_failed=%d\nstorm_seconds=%.3f\nlogin_rate_per_s=%.1f\n",
           atomic_load(&logins_ok), atomic_load(&logins_failed), secs,
           atomic_load(&logins_ok) / (secs > 0 ? secs : 1));
    if (n > 0)
        printf("busy_queries=%zu\nbusy_p50_us=%lld\nbusy_p99_us=%lld\nbusy_max_us=%lld\n", n,
               lat[n / 2], lat[(size_t)((double)n * 0.99)], lat[n - 1]);
    printf("busy_failed=%d\n", busy_failed);
    if (first_error[0]) printf("first_error=%s\n", first_error);
    PQfinish(busy);
    free(th);
    free(lat);
    return atomic_load(&logins_failed) || busy_failed ? 1 : 0;
}
