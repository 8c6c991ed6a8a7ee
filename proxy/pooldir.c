/*
 * pooldir.c — the state pools share over every event loop (see pooldir.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "passthrough.h"
#include "pooldir.h"
#include "workq.h"

struct pooldir {
    pthread_mutex_t lock; /* the maps and the reference counts below */
    Hmap dbs;             /* DbShared by name */
    Hmap users;           /* UserShared by name */
    Hmap counts[2];       /* ClientCount by name, per CountKind */
};

struct client_count {
    char *name;
    CountKind kind;
    int clients; /* lock */
};

Pooldir *pooldir_create(void)
{
    Pooldir *d = calloc(1, sizeof(*d));
    if (!d) return NULL;
    pthread_mutex_init(&d->lock, NULL);
    return d;
}

void pooldir_free(Pooldir *d)
{
    if (!d) return;
    /* every per-loop pool has put its reference back by now */
    hmap_free(&d->dbs);
    hmap_free(&d->users);
    hmap_free(&d->counts[COUNT_DATABASE]);
    hmap_free(&d->counts[COUNT_USER]);
    pthread_mutex_destroy(&d->lock);
    free(d);
}

static DbShared *dir_db(Pooldir *d, const char *name)
{
    DbShared *db = hmap_get(&d->dbs, name);
    if (db) return db;
    db = calloc(1, sizeof(*db));
    if (!db || !(db->name = strdup(name)) || hmap_put(&d->dbs, db->name, db) < 0) {
        if (db) free(db->name);
        free(db);
        return NULL;
    }
    return db;
}

static UserShared *dir_user(Pooldir *d, const char *name)
{
    UserShared *u = hmap_get(&d->users, name);
    if (u) return u;
    u = calloc(1, sizeof(*u));
    if (!u || !(u->name = strdup(name)) || hmap_put(&d->users, u->name, u) < 0) {
        if (u) free(u->name);
        free(u);
        return NULL;
    }
    return u;
}

static void dir_db_put(Pooldir *d, DbShared *db)
{
    if (db->refs > 0) return;
    hmap_remove(&d->dbs, db->name);
    hmap_free(&db->pools);
    free(db->name);
    free(db);
}

static void dir_user_put(Pooldir *d, UserShared *u)
{
    if (u->refs > 0) return;
    hmap_remove(&d->users, u->name);
    free(u->name);
    free(u);
}

PoolShared *pooldir_get(Pooldir *d, const char *dbname, const char *username)
{
    pthread_mutex_lock(&d->lock);
    DbShared *db = dir_db(d, dbname);
    UserShared *u = db ? dir_user(d, username) : NULL;
    PoolShared *ps = u ? hmap_get(&db->pools, username) : NULL;
    if (ps) {
        atomic_fetch_add(&ps->refs, 1);
        pthread_mutex_unlock(&d->lock);
        return ps;
    }
    if (u) ps = calloc(1, sizeof(*ps));
    if (!ps || !(ps->username = strdup(username)) || hmap_put(&db->pools, ps->username, ps) < 0) {
        if (ps) free(ps->username);
        free(ps);
        if (u) dir_user_put(d, u);
        if (db) dir_db_put(d, db);
        pthread_mutex_unlock(&d->lock);
        return NULL;
    }
    ps->db = db;
    ps->user = u;
    db->refs++;
    u->refs++;
    atomic_init(&ps->refs, 1);
    pthread_mutex_init(&ps->lock, NULL);
    pthread_mutex_init(&ps->ps.lock, NULL);
    pthread_mutex_unlock(&d->lock);
    return ps;
}

void pooldir_ref(PoolShared *ps)
{
    atomic_fetch_add(&ps->refs, 1);
}

void pooldir_put(Pooldir *d, PoolShared *ps)
{
    if (!ps) return;
    pthread_mutex_lock(&d->lock);
    /* under the lock: pooldir_get may be about to take a new reference */
    if (atomic_fetch_sub(&ps->refs, 1) != 1) {
        pthread_mutex_unlock(&d->lock);
        return;
    }
    DbShared *db = ps->db;
    UserShared *u = ps->user;
    hmap_remove(&db->pools, ps->username);
    db->refs--;
    u->refs--;
    dir_db_put(d, db);
    dir_user_put(d, u);
    pthread_mutex_unlock(&d->lock);
    ps_registry_free(&ps->ps);
    params_free(&ps->welcome);
    pthread_mutex_destroy(&ps->ps.lock);
    passthrough_cred_free(ps->cred);
    pthread_mutex_destroy(&ps->lock);
    free(ps->username);
    free(ps);
}

/* ---------------------------------------------------------------- limits */

/* counter += 1 if it stays within max (0 = unlimited); true when counted */
static bool count_up(atomic_int *counter, int max)
{
    int v = atomic_load(counter);
    do {
        if (max > 0 && v >= max) return false;
    } while (!atomic_compare_exchange_weak(counter, &v, v + 1));
    return true;
}

bool pooldir_acquire(PoolShared *ps, int pool_max, int db_max, int user_max)
{
    /* pool_max 0 means no server at all (pool_size = 0) */
    if (pool_max <= 0 || !count_up(&ps->servers, pool_max)) return false;
    if (!count_up(&ps->db->servers, db_max)) {
        atomic_fetch_sub(&ps->servers, 1);
        return false;
    }
    if (!count_up(&ps->user->servers, user_max)) {
        atomic_fetch_sub(&ps->db->servers, 1);
        atomic_fetch_sub(&ps->servers, 1);
        return false;
    }
    return true;
}

void pooldir_release(PoolShared *ps)
{
    atomic_fetch_sub(&ps->user->servers, 1);
    atomic_fetch_sub(&ps->db->servers, 1);
    atomic_fetch_sub(&ps->servers, 1);
}

/* ---------------------------------------------------------------- client counts */

/*
 * Under the directory lock: a login is rare next to the queries of a
 * session, and a plain int with the entry's lifetime in one place is
 * simpler than an atomic with a reference count.
 */
ClientCount *pooldir_count_enter(Pooldir *d, CountKind kind, const char *name, int max, bool *full)
{
    *full = false;
    pthread_mutex_lock(&d->lock);
    ClientCount *cc = hmap_get(&d->counts[kind], name);
    if (!cc) {
        cc = calloc(1, sizeof(*cc));
        if (!cc || !(cc->name = strdup(name)) || hmap_put(&d->counts[kind], cc->name, cc) < 0) {
            if (cc) free(cc->name);
            free(cc);
            pthread_mutex_unlock(&d->lock);
            return NULL;
        }
        cc->kind = kind;
    }
    if (max > 0 && cc->clients >= max) { /* so clients > 0: the entry stays */
        *full = true;
        pthread_mutex_unlock(&d->lock);
        return NULL;
    }
    cc->clients++;
    pthread_mutex_unlock(&d->lock);
    return cc;
}

void pooldir_count_leave(Pooldir *d, ClientCount *cc)
{
    if (!cc) return;
    pthread_mutex_lock(&d->lock);
    if (--cc->clients == 0) {
        hmap_remove(&d->counts[cc->kind], cc->name);
        free(cc->name);
        free(cc);
    }
    pthread_mutex_unlock(&d->lock);
}

int pooldir_count_of(Pooldir *d, CountKind kind, const char *name)
{
    pthread_mutex_lock(&d->lock);
    ClientCount *cc = hmap_get(&d->counts[kind], name);
    int n = cc ? cc->clients : 0;
    pthread_mutex_unlock(&d->lock);
    return n;
}

/* ---------------------------------------------------------------- credentials */

bool pooldir_cred_keep(PoolShared *ps, const PassCred *cred)
{
    pthread_mutex_lock(&ps->lock);
    bool changed = passthrough_cred_keep(&ps->cred, cred);
    pthread_mutex_unlock(&ps->lock);
    return changed;
}

PassCred *pooldir_cred_copy(PoolShared *ps)
{
    pthread_mutex_lock(&ps->lock);
    PassCred *c = NULL;
    if (ps->cred) passthrough_cred_keep(&c, ps->cred);
    pthread_mutex_unlock(&ps->lock);
    return c;
}

/* ---------------------------------------------------------------- login failures */

void pooldir_login_failed(PoolShared *ps, const char *sqlstate, const char *msg, bool final)
{
    pthread_mutex_lock(&ps->lock);
    ps->fail.at = time_now_usec();
    if (!ps->fail.at) ps->fail.at = 1;
    ps->fail.final = final;
    snprintf(ps->fail.sqlstate, sizeof(ps->fail.sqlstate), "%s", sqlstate);
    snprintf(ps->fail.msg, sizeof(ps->fail.msg), "%s", msg);
    atomic_store(&ps->fail_at, (long long)ps->fail.at);
    pthread_mutex_unlock(&ps->lock);
}

void pooldir_login_ok(PoolShared *ps)
{
    if (!atomic_load(&ps->fail_at)) return; /* every server login: no lock then */
    pthread_mutex_lock(&ps->lock);
    memset(&ps->fail, 0, sizeof(ps->fail));
    atomic_store(&ps->fail_at, 0);
    pthread_mutex_unlock(&ps->lock);
}

usec_t pooldir_failure_at(PoolShared *ps)
{
    return (usec_t)atomic_load(&ps->fail_at);
}

bool pooldir_failure(PoolShared *ps, LoginFailure *out)
{
    pthread_mutex_lock(&ps->lock);
    *out = ps->fail;
    pthread_mutex_unlock(&ps->lock);
    return out->at != 0;
}

/* ---------------------------------------------------------------- welcome */

void pooldir_welcome_keep(PoolShared *ps, const ParamSet *welcome)
{
    pthread_mutex_lock(&ps->lock);
    if (!ps->have_welcome && params_copy(&ps->welcome, welcome) == 0) ps->have_welcome = true;
    pthread_mutex_unlock(&ps->lock);
}

bool pooldir_welcome_copy(PoolShared *ps, ParamSet *out)
{
    pthread_mutex_lock(&ps->lock);
    bool ok = ps->have_welcome && params_copy(out, &ps->welcome) == 0;
    pthread_mutex_unlock(&ps->lock);
    return ok;
}

/* ---------------------------------------------------------------- iteration */

typedef struct foreach_arg {
    void (*fn)(PoolShared *ps, void *arg);
    void *arg;
} ForeachArg;

static void foreach_pool(const char *key, void *value, void *arg)
{
    ForeachArg *fa = arg;
    (void)key;
    fa->fn(value, fa->arg);
}

static void foreach_db(const char *key, void *value, void *arg)
{
    DbShared *db = value;
    (void)key;
    hmap_foreach(&db->pools, foreach_pool, arg);
}

void pooldir_foreach(Pooldir *d, void (*fn)(PoolShared *ps, void *arg), void *arg)
{
    ForeachArg fa = {fn, arg};
    pthread_mutex_lock(&d->lock);
    hmap_foreach(&d->dbs, foreach_db, &fa);
    pthread_mutex_unlock(&d->lock);
}
