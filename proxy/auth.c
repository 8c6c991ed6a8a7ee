/*
 * auth.c — client authentication (see auth.h).
 *
 * The exchange is a small state machine per client (AuthState): choose the
 * method (auth_type, or the first matching hba rule), find the secret
 * (auth_file, database entry, or auth_query on a worker), talk to the
 * client, and hand every expensive check to the worker pool as an AuthJob.
 * A job carries copies of what it needs and the client's id, never a
 * pointer to the client: if the client left meanwhile, the completion
 * finds no client and just frees the job.
 *
 * Wrong password, unknown user and expired role end alike, with
 * 28P01 "password authentication failed for user …"; for SCRAM an unknown
 * user gets a mock secret so the exchange runs to its end.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>
#include <libpq-fe.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include "admin.h"
#include "auth.h"
#include "authq.h"
#include "client.h"
#include "config.h"
#include "hmap.h"
#include "hba.h"
#include "log.h"
#include "loop.h"
#include "loops.h"
#include "passthrough.h"
#include "pool.h"
#include "proto.h"
#include "scram.h"
#include "tls.h"
#include "userlist.h"
#include "workq.h"

#define AUTH_MSG_MAX 8192 /* password / SASL messages */

/* ---------------------------------------------------------------- caches */

/*
 * The SCRAM verifier cache: per user, the verifier derived from a plaintext
 * secret, tagged with the SHA-256 of that plaintext so a changed password
 * never matches.  Keys are whole user names (hmap.c compares whole strings).
 * auth_query results are not cached: every login asks again (PgBouncer too).
 */
typedef struct cache_entry {
    char *key;
    uint8_t tag[32];
    ScramSecret verifier;
} CacheEntry;

typedef struct cache {
    Hmap map; /* CacheEntry by key */
} Cache;

static CacheEntry *cache_find(Cache *c, const char *key)
{
    return hmap_get(&c->map, key);
}

static CacheEntry *cache_put(Cache *c, const char *key)
{
    CacheEntry *e = cache_find(c, key);
    if (e) return e;
    e = calloc(1, sizeof(*e));
    if (!e || !(e->key = strdup(key)) || hmap_put(&c->map, e->key, e) < 0) {
        if (e) free(e->key);
        free(e);
        return NULL;
    }
    return e;
}

static void cache_entry_free(const char *key, void *value, void *arg)
{
    CacheEntry *e = value;
    (void)key;
    (void)arg;
    free(e->key);
    OPENSSL_cleanse(e, sizeof(*e));
    free(e);
}

static void cache_clear(Cache *c)
{
    hmap_foreach(&c->map, cache_entry_free, NULL);
    hmap_free(&c->map);
}

/*
 * What every loop's logins share for the whole life of the process: the
 * SCRAM verifier cache (survives reloads: entries are tagged with their
 * password's hash) and the counters.  Owned by the LoopSet (loops.c).
 */
struct auth_shared {
    pthread_mutex_t lock; /* verifiers */
    Cache verifiers;
    atomic_ullong ok, failed, jobs, scram_cache_hits, scram_derivations;
    /* verifiers derived ahead of logins: loop 0's business only */
    AuthContext *prederive_ctx; /* the auth_file being walked (a reference) */
    int prederive_next;         /* its next entry */
    int prederive_inflight;     /* jobs on the workers */
};

/* Immutable once loaded; every loop holds a reference (snapshot.c). */
struct auth_context {
    atomic_int refs;
    Userlist *userlist;
    Hba *hba;
};

AuthShared *auth_shared_create(void)
{
    AuthShared *as = calloc(1, sizeof(*as));
    if (as) pthread_mutex_init(&as->lock, NULL);
    return as;
}

void auth_shared_free(AuthShared *as)
{
    if (!as) return;
    cache_clear(&as->verifiers);
    auth_context_free(as->prederive_ctx);
    pthread_mutex_destroy(&as->lock);
    free(as);
}

static AuthShared *auth_shared(Loop *loop)
{
    return loop->set ? loop->set->auth : NULL;
}

/* The cached verifier of user if it was derived from the password with this tag. */
static bool verifier_lookup(Loop *loop, const char *user, const uint8_t tag[32], ScramSecret *out)
{
    AuthShared *as = auth_shared(loop);
    if (!as) return false;
    pthread_mutex_lock(&as->lock);
    CacheEntry *e = cache_find(&as->verifiers, user);
    bool hit = e && memcmp(e->tag, tag, 32) == 0;
    if (hit && out) *out = e->verifier;
    pthread_mutex_unlock(&as->lock);
    return hit;
}

#define AUTH_COUNT(loop, field)                                                                    \
    do {                                                                                           \
        AuthShared *as_ = auth_shared(loop);                                                       \
        if (as_) atomic_fetch_add(&as_->field, 1);                                                 \
    } while (0)

AuthContext *auth_context_load(const Config *cfg, char *err, size_t errlen)
{
    AuthContext *ac = calloc(1, sizeof(*ac));
    if (!ac) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&ac->refs, 1);
    if (cfg->auth_file && *cfg->auth_file) {
        ac->userlist = userlist_load(cfg->auth_file, err, errlen);
        if (!ac->userlist) goto fail;
    }
    if (cfg->auth_type == AUTH_TYPE_HBA) {
        ac->hba = hba_load(cfg->auth_hba_file, err, errlen);
        if (!ac->hba) goto fail;
    }
    return ac;
fail:
    auth_context_free(ac);
    return NULL;
}

void auth_context_ref(AuthContext *ac)
{
    if (ac) atomic_fetch_add(&ac->refs, 1);
}

void auth_context_free(AuthContext *ac)
{
    if (!ac || atomic_fetch_sub(&ac->refs, 1) != 1) return;
    userlist_free(ac->userlist);
    hba_free(ac->hba);
    free(ac);
}

static void auth_prederive_more(Loop *loop);

void auth_context_adopted(Loop *loop)
{
    /* loop 0 walks each new auth_file once, for every loop */
    AuthShared *as = auth_shared(loop);
    if (!as || loop->index != 0 || as->prederive_ctx == loop->auth) return;
    auth_context_free(as->prederive_ctx);
    as->prederive_ctx = loop->auth;
    auth_context_ref(loop->auth);
    as->prederive_next = 0;
    auth_prederive_more(loop);
}

void auth_get_stats(Loop *loop, AuthStats *out)
{
    AuthShared *as = auth_shared(loop);
    memset(out, 0, sizeof(*out));
    if (!as) return;
    out->ok = atomic_load(&as->ok);
    out->failed = atomic_load(&as->failed);
    out->jobs = atomic_load(&as->jobs);
    out->scram_cache_hits = atomic_load(&as->scram_cache_hits);
    out->scram_derivations = atomic_load(&as->scram_derivations);
}

/* ---------------------------------------------------------------- per client */

typedef enum {
    STEP_START = 0,
    STEP_LOOKUP,        /* auth_query or verifier derivation on a worker */
    STEP_WAIT_PASSWORD, /* cleartext or md5 PasswordMessage expected */
    STEP_WAIT_SASL_INITIAL,
    STEP_WAIT_SASL_RESPONSE,
    STEP_CHECKING, /* a worker checks the answer */
} AuthStep;

typedef enum {
    METHOD_TRUST,
    METHOD_REJECT,
    METHOD_PLAIN,
    METHOD_MD5,
    METHOD_SCRAM,
    METHOD_CERT,
} Method;

struct auth_state {
    Method method;
    AuthStep step;
    char *secret;       /* stored secret (NULL: unknown user or expired) */
    bool secret_known;  /* lookup finished */
    bool require_known; /* trust: the user must exist in auth_file or auth_query */
    bool role_exists;   /* auth_query found the role, without a password (trust lets it in) */
    uint8_t md5_salt[4];
    ScramState *scram; /* owned here, or by a job while it runs */
};

static void auth_state_free(AuthState *a)
{
    if (!a) return;
    if (a->secret) {
        OPENSSL_cleanse(a->secret, strlen(a->secret));
        free(a->secret);
    }
    if (a->scram) {
        scram_state_free(a->scram);
        free(a->scram);
    }
    free(a);
}

void auth_client_free(Client *c)
{
    auth_state_free(c->auth);
    c->auth = NULL;
}

static void auth_fail(Client *c)
{
    Loop *loop = c->loop;
    AUTH_COUNT(loop, failed);
    client_log(c, LOG_LEVEL_LOG, "password authentication failed");
    client_close(c, "28P01", "password authentication failed for user \"%s\"", c->user);
}

static void auth_succeed(Client *c)
{
    AUTH_COUNT(c->loop, ok);
    auth_client_free(c);
    client_auth_ok(c);
}

/*
 * The login proved the stored secret (and, for a SCRAM secret, gave its
 * ClientKey): keep both on the client, so that pool_client_login() can hand
 * them to the pool for backend logins (pass-through).  Best effort: without
 * it only pass-through is missing.
 */
static void auth_keep_proof(Client *c, const uint8_t *client_key)
{
    AuthState *a = c->auth;
    if (c->admin || !a->secret) return;
    passthrough_cred_free(c->pass_cred);
    c->pass_cred = passthrough_cred_new(a->secret, client_key);
}

static int auth_send(Client *c, PktBuf *b)
{
    int r = (b->failed || conn_send(&c->conn, b->data, b->len) < 0) ? -1 : 0;
    pkt_free(b);
    if (r < 0) client_close(c, NULL, "write failed during authentication");
    return r;
}

/* ---------------------------------------------------------------- worker jobs */

typedef enum {
    JOB_CHECK_PLAIN,
    JOB_SCRAM_DERIVE,
    JOB_SCRAM_FINAL,
} JobKind;

typedef struct auth_job {
    WorkqJob job;
    Loop *loop;
    uint32_t client_id;
    JobKind kind;
    char *user;
    char *secret; /* stored secret (copy) */
    char *input;  /* the client's password / response / final message */
    size_t input_len;
    ScramState *scram; /* JOB_SCRAM_FINAL: owned by the job while it runs */
    /* results */
    int ok;       /* 1 ok, 0 failed, -1 protocol error */
    char *output; /* server-final message */
    ScramSecret verifier;
    uint8_t tag[32];
    uint8_t client_key[SCRAM_KEY_LEN]; /* JOB_CHECK_PLAIN with a SCRAM secret: for pass-through */
    bool have_client_key;
    char err[256];
} AuthJob;

static void auth_job_free(AuthJob *j)
{
    if (j->secret) {
        OPENSSL_cleanse(j->secret, strlen(j->secret));
        free(j->secret);
    }
    if (j->input) {
        OPENSSL_cleanse(j->input, j->input_len);
        free(j->input);
    }
    if (j->output) {
        OPENSSL_cleanse(j->output, strlen(j->output));
        free(j->output);
    }
    if (j->scram) {
        scram_state_free(j->scram);
        free(j->scram);
    }
    free(j->user);
    OPENSSL_cleanse(j, sizeof(*j));
    free(j);
}

static void sha256_tag(const char *s, uint8_t out[32])
{
    unsigned int len = 32;
    EVP_Digest(s, strlen(s), out, &len, EVP_sha256(), NULL);
}

/*
 * A plaintext password against any kind of stored secret.  For a SCRAM
 * secret the derivation also yields the ClientKey (into client_key when not
 * NULL), which a backend login can use later (pass-through).
 */
static bool check_plain(const char *secret, const char *user, const char *password,
                        uint8_t *client_key)
{
    if (strncmp(secret, "SCRAM-SHA-256$", 14) == 0) {
        ScramSecret stored, got;
        uint8_t ck[SCRAM_KEY_LEN];
        if (scram_parse_secret(secret, &stored) < 0) return false;
        if (scram_keys_from_password(password, stored.salt, stored.salt_len, stored.iterations,
                                     &got, ck) < 0)
            return false;
        bool ok = scram_ct_equal(stored.stored_key, got.stored_key, SCRAM_KEY_LEN) &&
                  scram_ct_equal(stored.server_key, got.server_key, SCRAM_KEY_LEN);
        if (ok && client_key) memcpy(client_key, ck, SCRAM_KEY_LEN);
        OPENSSL_cleanse(ck, sizeof(ck));
        return ok;
    }
    if (strncmp(secret, "md5", 3) == 0 && strlen(secret) == 35) {
        char h[36];
        md5_password_hash(password, user, h);
        return scram_ct_equal(h, secret, 35);
    }
    size_t a = strlen(secret), b = strlen(password);
    return a == b && scram_ct_equal(secret, password, a);
}

static void auth_job_work(WorkqJob *wj)
{
    AuthJob *j = (AuthJob *)wj;
    switch (j->kind) {
    case JOB_CHECK_PLAIN:
        j->ok = j->secret && check_plain(j->secret, j->user, j->input, j->client_key) ? 1 : 0;
        j->have_client_key = j->ok == 1 && strncmp(j->secret, "SCRAM-SHA-256$", 14) == 0;
        break;
    case JOB_SCRAM_DERIVE:
        j->ok = scram_secret_from_password(j->secret, NULL, 0, SCRAM_DEFAULT_ITERATIONS,
                                           &j->verifier) == 0;
        sha256_tag(j->secret, j->tag);
        break;
    case JOB_SCRAM_FINAL:
        j->ok = scram_handle_client_final(j->scram, j->input, j->input_len, &j->output, j->err,
                                          sizeof(j->err));
        break;
    }
}

static void auth_continue(Client *c);
static void auth_start_exchange(Client *c);

/* Remember a verifier derived on a worker (for a login or ahead of one). */
static void auth_cache_verifier(Loop *loop, const AuthJob *j)
{
    AuthShared *as = auth_shared(loop);
    if (!as) return;
    pthread_mutex_lock(&as->lock);
    CacheEntry *e = cache_put(&as->verifiers, j->user);
    if (e) {
        e->verifier = j->verifier;
        memcpy(e->tag, j->tag, sizeof(e->tag));
    }
    pthread_mutex_unlock(&as->lock);
}

static void auth_job_done(WorkqJob *wj, int status)
{
    AuthJob *j = (AuthJob *)wj;
    Loop *loop = j->loop;
    if (j->client_id == 0) {
        /* a verifier derived ahead of any login (auth_prederive_more) */
        if (status == 0 && j->ok) auth_cache_verifier(loop, j);
        AuthShared *as = auth_shared(loop);
        if (as && as->prederive_inflight > 0) as->prederive_inflight--;
        auth_job_free(j);
        if (status == 0) auth_prederive_more(loop);
        return;
    }
    Client *c = status == 0 ? loop_client_find(loop, j->client_id) : NULL;
    if (!c || c->state != CLIENT_AUTH || !c->auth) {
        auth_job_free(j); /* the client left while the job ran */
        return;
    }
    AuthState *a = c->auth;
    switch (j->kind) {
    case JOB_CHECK_PLAIN:
        if (j->ok == 1) {
            auth_keep_proof(c, j->have_client_key ? j->client_key : NULL);
            auth_succeed(c);
        } else {
            auth_fail(c);
        }
        break;
    case JOB_SCRAM_DERIVE: {
        if (!j->ok) {
            client_close(c, "XX000", "could not derive the SCRAM verifier");
            break;
        }
        auth_cache_verifier(loop, j);
        a->scram = calloc(1, sizeof(*a->scram));
        if (!a->scram) {
            client_close(c, "53200", "out of memory");
            break;
        }
        scram_state_init(a->scram);
        a->scram->secret = j->verifier;
        auth_start_exchange(c);
        break;
    }
    case JOB_SCRAM_FINAL: {
        a->scram = j->scram; /* ownership back to the loop */
        j->scram = NULL;
        if (j->ok < 0) {
            client_close(c, "08P01", "%s", j->err);
        } else if (j->ok == 0 || !a->secret_known || !a->secret) {
            auth_fail(c);
        } else {
            PktBuf b;
            pkt_init(&b);
            pkt_begin(&b, 'R');
            pkt_put_u32(&b, 12); /* AuthenticationSASLFinal */
            pkt_put_bytes(&b, j->output, strlen(j->output));
            pkt_end(&b);
            /* a ClientKey only helps with the secret it was proved against, not a derived one */
            ScramState *st = a->scram;
            bool key = st->have_client_key && strncmp(a->secret, "SCRAM-SHA-256$", 14) == 0;
            auth_keep_proof(c, key ? st->client_key : NULL);
            if (auth_send(c, &b) == 0) auth_succeed(c);
        }
        break;
    }
    }
    auth_job_free(j);
}

static int auth_submit(Client *c, AuthJob *j)
{
    j->loop = c->loop;
    j->client_id = c->id;
    AUTH_COUNT(c->loop, jobs);
    if (workq_submit(c->loop->workq, &j->job, auth_job_work, auth_job_done) < 0) {
        auth_job_free(j);
        client_close(c, "53300", "too many logins in progress, try again");
        return -1;
    }
    c->auth->step = j->kind == JOB_SCRAM_DERIVE ? STEP_LOOKUP : STEP_CHECKING;
    conn_want_read(&c->conn, false);
    return 0;
}

static AuthJob *auth_job_new(Client *c, JobKind kind)
{
    AuthJob *j = calloc(1, sizeof(*j));
    if (!j) return NULL;
    j->kind = kind;
    j->user = strdup(c->user);
    if (c->auth->secret) j->secret = strdup(c->auth->secret);
    if (!j->user || (c->auth->secret && !j->secret)) {
        auth_job_free(j);
        return NULL;
    }
    return j;
}

/* ---------------------------------------------------------------- secrets */

/* The client's [databases] entry ("*" included), or NULL: unknown database or the console. */
static const DbConf *auth_db_conf(Client *c)
{
    return c->admin ? NULL : config_find_db(c->loop->cfg, c->database);
}

/* Append key='value' to a libpq connection string (backslash and quote escaped). */
static bool conninfo_add(char **ci, size_t *len, const char *key, const char *val)
{
    if (!val || !*val) return true;
    size_t need = *len + strlen(key) + 2 * strlen(val) + 5;
    char *n = realloc(*ci, need);
    if (!n) return false;
    *ci = n;
    size_t o = *len + (size_t)sprintf(n + *len, "%s='", key);
    for (const char *p = val; *p; p++) {
        if (*p == '\'' || *p == '\\') n[o++] = '\\';
        n[o++] = *p;
    }
    n[o++] = '\'';
    n[o++] = ' ';
    n[o] = 0;
    *len = o;
    return true;
}

/*
 * The connection auth_query runs on, as auth_user: the server and database
 * of the [databases] entry named by auth_dbname (PgBouncer's meaning; a "*"
 * entry serves any name), else those of the client's own entry.  Host names
 * stay names: the lookup runs on a worker, where libpq may resolve them.
 * NULL when out of memory, or with *why set when auth_dbname names no usable
 * entry.  The string holds auth_user's password: the caller wipes it.
 */
static char *auth_query_conninfo(Client *c, const DbConf *dc, const char *auth_user, char *why,
                                 size_t whylen)
{
    Config *cfg = c->loop->cfg;
    const char *authdb = dc->auth_dbname                         ? dc->auth_dbname
                         : cfg->auth_dbname && *cfg->auth_dbname ? cfg->auth_dbname
                                                                 : NULL;
    const char *dbname;
    if (authdb) {
        const DbConf *adc = admin_is_console_db(authdb) ? NULL : config_find_db(cfg, authdb);
        Database *adb = adc ? pool_database_get(c->loop, authdb, false) : NULL;
        if (admin_is_console_db(authdb))
            snprintf(why, whylen, "cannot use the reserved \"%s\" database as an auth_dbname",
                     authdb);
        else if (!adc)
            snprintf(why, whylen, "authentication database \"%s\" is not configured", authdb);
        else if (adb && adb->disabled)
            snprintf(why, whylen, "authentication database \"%s\" is disabled", authdb);
        if (*why) return NULL;
        dc = adc;
        dbname = adc->dbname ? adc->dbname : authdb;
    } else {
        dbname = dc->dbname ? dc->dbname : strcmp(dc->name, "*") == 0 ? c->database : dc->name;
    }
    const char *pw = dc->user && dc->password && strcmp(dc->user, auth_user) == 0
                         ? dc->password
                         : auth_backend_password(c->loop, auth_user);
    char port[16], timeout[32], options[64];
    long long secs = cfg->server_connect_timeout / USEC_PER_SEC;
    snprintf(port, sizeof(port), "%d", dc->port ? dc->port : 5432);
    snprintf(timeout, sizeof(timeout), "%lld", secs > 0 ? secs : 15);
    /* a lookup that hangs would hold a worker: the server ends it */
    snprintf(options, sizeof(options), "-c statement_timeout=%lld", (secs > 0 ? secs : 15) * 1000);
    const char *keys[] = {"host",
                          "port",
                          "dbname",
                          "user",
                          "password",
                          "application_name",
                          "connect_timeout",
                          "options",
                          "sslmode",
                          "sslrootcert",
                          "sslcert",
                          "sslkey"};
    const char *vals[] = {dc->host,
                          port,
                          dbname,
                          auth_user,
                          pw,
                          "pgfunnel auth_query",
                          timeout,
                          options,
                          config_sslmode_name(cfg->server_tls_sslmode),
                          cfg->server_tls_ca_file,
                          cfg->server_tls_cert_file,
                          cfg->server_tls_key_file};
    char *ci = calloc(1, 1);
    size_t len = 0;
    for (size_t i = 0; ci && i < sizeof(keys) / sizeof(keys[0]); i++) {
        if (!conninfo_add(&ci, &len, keys[i], vals[i])) {
            OPENSSL_cleanse(ci, len);
            free(ci);
            ci = NULL;
        }
    }
    return ci;
}

static void auth_query_done(Loop *loop, uint32_t client_id, const AuthqResult *res)
{
    Client *c = loop_client_find(loop, client_id);
    if (!c || c->state != CLIENT_AUTH || !c->auth || c->auth->step != STEP_LOOKUP) return;
    AuthState *a = c->auth;
    if (res->status == AUTHQ_ERROR) {
        client_log(c, LOG_LEVEL_WARNING, "%s", res->message);
        /*
         * Not a password prompt: the client learns that its login cannot be
         * checked.  A failed connection says why (the operator's setup); the
         * query's own error is the pooler's configuration, logged but not
         * shown to a client that has not authenticated (as PgBouncer).
         */
        if (res->query_failed)
            client_close(c, "08P01", "bouncer config error");
        else
            client_close(c, res->sqlstate, "%s", res->message);
        return;
    }
    if (res->status == AUTHQ_NO_SECRET) a->role_exists = true;
    if (res->status == AUTHQ_FOUND && !(a->secret = strdup(res->secret))) {
        client_close(c, "53200", "out of memory");
        return;
    }
    a->secret_known = true;
    auth_continue(c);
}

/*
 * Start the lookup of the client's secret: the database entry's password for
 * its forced user, auth_file, then auth_query (per database, else global).
 * Returns true when the secret is known now (a->secret NULL: nobody by that
 * name); false while auth_query runs or when the client was closed.
 */
static bool auth_lookup_secret(Client *c)
{
    AuthState *a = c->auth;
    Loop *loop = c->loop;
    Config *cfg = loop->cfg;
    const DbConf *dc = auth_db_conf(c);
    const char *s = NULL;
    if (dc && dc->user && dc->password && strcmp(dc->user, c->user) == 0) s = dc->password;
    if (!s && loop->auth && loop->auth->userlist) s = userlist_get(loop->auth->userlist, c->user);
    if (s) {
        a->secret = strdup(s);
        if (!a->secret) {
            client_close(c, "53200", "out of memory");
            return false;
        }
        a->secret_known = true;
        return true;
    }
    /*
     * The console has no entry of its own: as in PgBouncer its users are
     * looked up through the auth_dbname entry (only for the query: that
     * entry's forced-user password is no console password).
     */
    if (!dc && c->admin && cfg->auth_dbname && *cfg->auth_dbname)
        dc = config_find_db(cfg, cfg->auth_dbname);
    /* an unknown database has no auth_query: its client fails like a wrong password */
    const char *auth_user = dc && dc->auth_user ? dc->auth_user : cfg->auth_user;
    const char *query = dc && dc->auth_query ? dc->auth_query : cfg->auth_query;
    if (!dc || !auth_user || !*auth_user || !query || !*query) {
        a->secret_known = true;
        return true;
    }
    char why[200] = "";
    char *ci = auth_query_conninfo(c, dc, auth_user, why, sizeof(why));
    if (!ci && *why) {
        /* the operator's configuration: logged, and no more than that to the client */
        client_log(c, LOG_LEVEL_WARNING, "%s", why);
        client_close(c, "08P01", "bouncer config error");
        return false;
    }
    int rc = ci ? authq_lookup(loop, ci, query, c->user, c->id, auth_query_done) : -1;
    if (ci) {
        OPENSSL_cleanse(ci, strlen(ci));
        free(ci);
    }
    if (rc < 0) {
        client_close(c, "53200", "out of memory");
        return false;
    }
    a->step = STEP_LOOKUP;
    conn_want_read(&c->conn, false);
    return false;
}

/* trust: is the user checked against auth_file / auth_query at all? (PgBouncer's rule) */
static bool auth_trust_checks_user(Client *c)
{
    const DbConf *dc = auth_db_conf(c);
    Config *cfg = c->loop->cfg;
    const char *auth_user = dc && dc->auth_user ? dc->auth_user : cfg->auth_user;
    const char *query = dc && dc->auth_query ? dc->auth_query : cfg->auth_query;
    return (c->loop->auth && c->loop->auth->userlist) ||
           (dc && auth_user && *auth_user && query && *query);
}

bool auth_password_matches(const char *secret, const char *user, const char *password)
{
    return check_plain(secret, user, password, NULL);
}

const char *auth_file_secret(Loop *loop, const char *user)
{
    const char *s =
        loop->auth && loop->auth->userlist ? userlist_get(loop->auth->userlist, user) : NULL;
    return s && *s ? s : NULL; /* an empty secret proves nothing */
}

const char *auth_backend_password(Loop *loop, const char *user)
{
    const char *s = NULL;
    if (loop->auth && loop->auth->userlist) s = userlist_get(loop->auth->userlist, user);
    if (!s) return NULL;
    /* libpq needs the password itself: hashes cannot log in */
    if (strncmp(s, "SCRAM-SHA-256$", 14) == 0) return NULL;
    if (strncmp(s, "md5", 3) == 0 && strlen(s) == 35) return NULL;
    return s;
}

/* ---------------------------------------------------------------- exchange */

static bool secret_is_scram(const char *s)
{
    return s && strncmp(s, "SCRAM-SHA-256$", 14) == 0;
}

static bool secret_is_md5(const char *s)
{
    return s && strncmp(s, "md5", 3) == 0 && strlen(s) == 35;
}

/*
 * SCRAM verifiers of auth_file's plaintext passwords are derived when the
 * file is loaded, a few jobs at a time so logins keep their share of the
 * workers.  Otherwise the first SCRAM login of such a user would take a
 * PBKDF2 longer than one of an unknown user: a way to tell who exists.
 */
#define PREDERIVE_INFLIGHT 2

static void auth_prederive_more(Loop *loop)
{
    AuthShared *as = auth_shared(loop);
    AuthContext *ac = as ? as->prederive_ctx : NULL;
    if (!ac || !ac->userlist || !loop->workq) return;
    while (as->prederive_inflight < PREDERIVE_INFLIGHT &&
           as->prederive_next < userlist_count(ac->userlist)) {
        const char *secret = NULL;
        const char *user = userlist_at(ac->userlist, as->prederive_next++, &secret);
        if (!user || !secret || !*secret || secret_is_scram(secret) || secret_is_md5(secret))
            continue;
        uint8_t tag[32];
        sha256_tag(secret, tag);
        if (verifier_lookup(loop, user, tag, NULL)) continue;
        AuthJob *j = calloc(1, sizeof(*j));
        if (!j) return;
        j->kind = JOB_SCRAM_DERIVE;
        j->loop = loop;
        j->user = strdup(user);
        j->secret = strdup(secret);
        if (!j->user || !j->secret ||
            workq_submit(loop->workq, &j->job, auth_job_work, auth_job_done) < 0) {
            auth_job_free(j); /* derived at the first login instead */
            return;
        }
        atomic_fetch_add(&as->scram_derivations, 1);
        as->prederive_inflight++;
    }
}

/* SCRAM: make sure a verifier exists (parse, cache, derive on a worker), then offer SASL. */
static void auth_begin_scram(Client *c)
{
    AuthState *a = c->auth;
    Loop *loop = c->loop;
    ScramSecret v;
    bool mock = false;
    if (!a->secret) {
        mock = true;
        scram_mock_secret(c->user, &v); /* unknown user: fail at the end, like a wrong password */
    } else if (secret_is_scram(a->secret)) {
        if (scram_parse_secret(a->secret, &v) != 0) {
            client_log(c, LOG_LEVEL_WARNING, "invalid SCRAM secret on file");
            auth_fail(c);
            return;
        }
    } else if (secret_is_md5(a->secret)) {
        /* an md5 hash cannot answer a SCRAM exchange (PostgreSQL behaves the same) */
        scram_mock_secret(c->user, &v);
        free(a->secret);
        a->secret = NULL;
        mock = true;
    } else {
        uint8_t tag[32];
        sha256_tag(a->secret, tag);
        if (verifier_lookup(loop, c->user, tag, &v)) {
            AUTH_COUNT(loop, scram_cache_hits);
        } else {
            /* once per user and password: PBKDF2 on a worker, then cached */
            AuthJob *j = auth_job_new(c, JOB_SCRAM_DERIVE);
            if (!j) {
                client_close(c, "53200", "out of memory");
                return;
            }
            AUTH_COUNT(loop, scram_derivations);
            auth_submit(c, j);
            return;
        }
    }
    a->scram = calloc(1, sizeof(*a->scram));
    if (!a->scram) {
        client_close(c, "53200", "out of memory");
        return;
    }
    scram_state_init(a->scram);
    a->scram->secret = v;
    a->scram->failed = mock; /* runs to the end, then fails like a wrong password */
    auth_start_exchange(c);
}

/* Send the request that opens the exchange for the chosen method. */
static void auth_start_exchange(Client *c)
{
    AuthState *a = c->auth;
    PktBuf b;
    pkt_init(&b);
    pkt_begin(&b, 'R');
    switch (a->method) {
    case METHOD_PLAIN:
        pkt_put_u32(&b, 3);
        a->step = STEP_WAIT_PASSWORD;
        break;
    case METHOD_MD5: {
        uint32_t salt = loop_random_u32(c->loop);
        memcpy(a->md5_salt, &salt, 4);
        pkt_put_u32(&b, 5);
        pkt_put_bytes(&b, a->md5_salt, 4);
        a->step = STEP_WAIT_PASSWORD;
        break;
    }
    default: /* SCRAM */
        pkt_put_u32(&b, 10);
        if (c->tls && c->ssl) {
            uint8_t cb[64];
            if (tls_server_end_point(c->ssl, cb) > 0) pkt_put_str(&b, "SCRAM-SHA-256-PLUS");
        }
        pkt_put_str(&b, "SCRAM-SHA-256");
        pkt_put_u8(&b, 0);
        a->step = STEP_WAIT_SASL_INITIAL;
        break;
    }
    pkt_end(&b);
    if (auth_send(c, &b) < 0) return;
    conn_want_read(&c->conn, true);
    auth_process(c); /* a fast client may have answered already (not normally) */
}

/* The secret is known: run the chosen method. */
static void auth_continue(Client *c)
{
    AuthState *a = c->auth;
    switch (a->method) {
    case METHOD_TRUST:
        if (a->require_known && !a->secret && !a->role_exists) {
            AUTH_COUNT(c->loop, failed);
            client_close(c, "28000", "role \"%s\" does not exist", c->user);
            return;
        }
        auth_succeed(c);
        return;
    case METHOD_REJECT:
        client_close(c, "28000",
                     "no pg_hba.conf entry for host \"%s\", user \"%s\", database \"%s\"",
                     c->conn.addr, c->user, c->database);
        return;
    case METHOD_CERT: {
        char *cn = c->ssl ? tls_peer_common_name(c->ssl) : NULL;
        bool ok = cn && strcmp(cn, c->user) == 0;
        free(cn);
        if (ok) {
            auth_succeed(c);
        } else {
            AUTH_COUNT(c->loop, failed);
            client_close(c, "28000", "certificate authentication failed for user \"%s\"", c->user);
        }
        return;
    }
    case METHOD_MD5:
        /* PostgreSQL upgrades md5 to SCRAM when the stored secret is a SCRAM secret */
        if (secret_is_scram(a->secret)) {
            a->method = METHOD_SCRAM;
            auth_begin_scram(c);
            return;
        }
        auth_start_exchange(c);
        return;
    case METHOD_PLAIN:
        auth_start_exchange(c);
        return;
    case METHOD_SCRAM:
        auth_begin_scram(c);
        return;
    }
}

static Method method_from_hba(HbaMethod m)
{
    switch (m) {
    case HBA_TRUST:
        return METHOD_TRUST;
    case HBA_MD5:
        return METHOD_MD5;
    case HBA_SCRAM:
        return METHOD_SCRAM;
    case HBA_PASSWORD:
        return METHOD_PLAIN;
    case HBA_CERT:
        return METHOD_CERT;
    default:
        return METHOD_REJECT;
    }
}

void auth_begin(Client *c)
{
    Config *cfg = c->loop->cfg;
    AuthState *a = calloc(1, sizeof(*a));
    if (!a) {
        client_close(c, "53200", "out of memory");
        return;
    }
    c->auth = a;
    /*
     * Reading stays on: a trust login finishes right here, and toggling the
     * read event would cost two epoll_ctl per login.  Whatever the client
     * sends meanwhile is read only when the exchange asks for it
     * (auth_process), and reading pauses while a worker job or auth_query
     * runs for it (auth_submit, auth_lookup_secret).
     */
    if (admin_is_local_superuser(c)) {
        auth_succeed(c);
        return;
    }
    switch (cfg->auth_type) {
    case AUTH_TYPE_ANY:
        auth_succeed(c);
        return;
    case AUTH_TYPE_TRUST:
        a->method = METHOD_TRUST;
        break;
    case AUTH_TYPE_PLAIN:
        a->method = METHOD_PLAIN;
        break;
    case AUTH_TYPE_MD5:
        a->method = METHOD_MD5;
        break;
    case AUTH_TYPE_SCRAM:
        a->method = METHOD_SCRAM;
        break;
    case AUTH_TYPE_CERT:
        a->method = METHOD_CERT;
        break;
    case AUTH_TYPE_HBA: {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        bool local = strcmp(c->conn.addr, "unix") == 0;
        if (!local && getpeername(c->conn.fd, (struct sockaddr *)&ss, &sl) < 0) {
            client_close(c, NULL, "getpeername failed");
            return;
        }
        HbaMethod m = c->loop->auth && c->loop->auth->hba
                          ? hba_match(c->loop->auth->hba, local ? NULL : (struct sockaddr *)&ss,
                                      c->tls, c->database, c->user)
                          : HBA_REJECT;
        a->method = method_from_hba(m);
        break;
    }
    default:
        a->method = METHOD_REJECT;
        break;
    }
    if (a->method == METHOD_TRUST) {
        /*
         * trust still requires the user to be known when there is an auth_file
         * or an auth_query (PgBouncer): missing from auth_file, it is looked up
         * with auth_query; found nowhere, it does not exist.
         */
        if (c->admin || !auth_trust_checks_user(c)) {
            auth_succeed(c);
            return;
        }
        a->require_known = true;
        if (auth_lookup_secret(c)) auth_continue(c);
        return;
    }
    if (a->method == METHOD_REJECT || a->method == METHOD_CERT) {
        auth_continue(c);
        return;
    }
    if (auth_lookup_secret(c)) auth_continue(c);
}

/* ---------------------------------------------------------------- client messages */

static void auth_on_password(Client *c, const uint8_t *body, uint32_t len)
{
    AuthState *a = c->auth;
    if (len == 0 || body[len - 1] != 0 || memchr(body, 0, len) != body + len - 1) {
        client_close(c, "08P01", "invalid password packet");
        return;
    }
    /*
     * md5 and a plaintext compare cost about a microsecond: they run here.
     * Handing them to a worker would cost more (a wake-up of each thread,
     * the eventfd, two epoll_ctl: measured +15 % CPU per md5 login).  Only
     * a plaintext password against a SCRAM secret needs PBKDF2: a worker.
     */
    const char *pw = (const char *)body;
    if (a->method == METHOD_MD5 || !secret_is_scram(a->secret)) {
        bool ok = a->secret &&
                  (a->method == METHOD_MD5 ? md5_check_response(a->secret, c->user, a->md5_salt, pw)
                                           : check_plain(a->secret, c->user, pw, NULL));
        if (ok) {
            auth_keep_proof(c, NULL);
            auth_succeed(c);
        } else {
            auth_fail(c);
        }
        return;
    }
    AuthJob *j = auth_job_new(c, JOB_CHECK_PLAIN);
    if (!j || !(j->input = malloc(len))) {
        if (j) auth_job_free(j);
        client_close(c, "53200", "out of memory");
        return;
    }
    memcpy(j->input, body, len);
    j->input_len = len;
    auth_submit(c, j);
}

static void auth_on_sasl_initial(Client *c, const uint8_t *body, uint32_t len)
{
    AuthState *a = c->auth;
    PktReader r;
    rd_init(&r, body, len);
    const char *mech = rd_str(&r);
    uint32_t n = rd_u32(&r);
    const uint8_t *data = (n == 0xffffffffu || r.bad) ? NULL : rd_bytes(&r, n);
    if (r.bad || !data || rd_left(&r) != 0) {
        client_close(c, "08P01", "malformed SASLInitialResponse");
        return;
    }
    char err[256], *server_first = NULL;
    uint8_t cb[64];
    int cbind_len = c->tls && c->ssl ? tls_server_end_point(c->ssl, cb) : 0;
    const uint8_t *cbind = cbind_len > 0 ? cb : NULL;
    if (scram_handle_client_first(a->scram, mech, (const char *)data, n, cbind, cbind_len,
                                  &server_first, err, sizeof(err)) < 0) {
        client_close(c, "08P01", "%s", err);
        return;
    }
    PktBuf b;
    pkt_init(&b);
    pkt_begin(&b, 'R');
    pkt_put_u32(&b, 11); /* AuthenticationSASLContinue */
    pkt_put_bytes(&b, server_first, strlen(server_first));
    pkt_end(&b);
    free(server_first);
    if (auth_send(c, &b) < 0) return;
    a->step = STEP_WAIT_SASL_RESPONSE;
}

static void auth_on_sasl_response(Client *c, const uint8_t *body, uint32_t len)
{
    AuthState *a = c->auth;
    AuthJob *j = auth_job_new(c, JOB_SCRAM_FINAL);
    if (!j || !(j->input = malloc(len + 1))) {
        if (j) auth_job_free(j);
        client_close(c, "53200", "out of memory");
        return;
    }
    memcpy(j->input, body, len);
    j->input[len] = 0;
    j->input_len = len;
    j->scram = a->scram; /* the job owns the exchange while it runs */
    a->scram = NULL;
    auth_submit(c, j);
}

void auth_process(Client *c)
{
    while (c->state == CLIENT_AUTH && c->auth) {
        AuthState *a = c->auth;
        if (a->step != STEP_WAIT_PASSWORD && a->step != STEP_WAIT_SASL_INITIAL &&
            a->step != STEP_WAIT_SASL_RESPONSE) {
            conn_want_read(&c->conn, false);
            return;
        }
        uint32_t avail = conn_avail(&c->conn);
        if (avail < 5) {
            conn_want_read(&c->conn, true);
            return;
        }
        uint8_t *p = conn_data(&c->conn);
        uint32_t len = proto_get_u32(p + 1);
        if (p[0] != 'p' || len < 4 || len > AUTH_MSG_MAX) {
            if (p[0] == 'X')
                client_close(c, NULL, "client closed during authentication");
            else
                client_close(c, "08P01", "expected a password message, got '%c'", p[0]);
            return;
        }
        if (avail < len + 1) {
            if (conn_reserve(&c->conn, len + 1, AUTH_MSG_MAX + 1) < 0)
                client_close(c, "53200", "out of memory");
            else
                conn_want_read(&c->conn, true);
            return;
        }
        /* copy out: the handlers may release the receive buffer */
        uint32_t blen = len - 4;
        uint8_t *body = malloc(blen + 1);
        if (!body) {
            client_close(c, "53200", "out of memory");
            return;
        }
        memcpy(body, p + 5, blen);
        conn_consume(&c->conn, len + 1);
        switch (a->step) {
        case STEP_WAIT_PASSWORD:
            auth_on_password(c, body, blen);
            break;
        case STEP_WAIT_SASL_INITIAL:
            auth_on_sasl_initial(c, body, blen);
            break;
        default:
            auth_on_sasl_response(c, body, blen);
            break;
        }
        OPENSSL_cleanse(body, blen);
        free(body);
    }
}
