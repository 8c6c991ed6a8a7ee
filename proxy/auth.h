/*
 * auth.h — client authentication, behind one interface.
 *
 * auth_begin() is called once a client's startup packet named its user and
 * database.  It ends, now or later (a password round trip, a hash on the
 * worker pool, an auth_query), in exactly one of client_auth_ok() or
 * client_close().  Methods follow PgBouncer's auth_type: trust, any, plain,
 * md5, scram-sha-256 (with SCRAM-SHA-256-PLUS over TLS), cert and hba.
 *
 * Secrets come from auth_file, from the database entry's password for a
 * forced user, or from auth_query.  Everything that costs CPU (PBKDF2, md5,
 * SCRAM proofs) and the blocking auth_query connection run on the worker
 * pool; the loop only moves messages.
 *
 * The module's state (userlist, hba rules, caches) lives in an AuthContext
 * owned by the Loop and rebuilt on reload.
 */
#ifndef PGFUNNEL_AUTH_H
#define PGFUNNEL_AUTH_H

#include "types.h"

typedef struct auth_context AuthContext;
typedef struct auth_state AuthState; /* per client while it authenticates */
typedef struct auth_shared AuthShared;

/* Build the context for a configuration (auth_file, auth_hba_file). */
AuthContext *auth_context_load(const Config *cfg, char *err, size_t errlen) WUR;
/* References: every loop using it holds one (snapshot.c); the last frees it. */
void auth_context_ref(AuthContext *ac);
void auth_context_free(AuthContext *ac);
/* A loop now uses loop->auth: loop 0 derives its verifiers ahead of logins. */
void auth_context_adopted(Loop *loop);

/* What the logins of every loop share (verifier cache, counters); owned by the LoopSet. */
AuthShared *auth_shared_create(void) WUR;
void auth_shared_free(AuthShared *as);

void auth_begin(Client *c);
/* Bytes arrived while in CLIENT_AUTH (password / SASL messages). */
void auth_process(Client *c);
/* The client goes away: drop its auth state (jobs finish on their own). */
void auth_client_free(Client *c);

/*
 * The password pgfunnel can give libpq for a backend login as `user`: a
 * plaintext secret from auth_file or auth_query, or NULL when only a hash
 * (or nothing) is known.
 */
const char *auth_backend_password(Loop *loop, const char *user);
/* The user's secret in auth_file, of any kind (plaintext, md5, SCRAM), or NULL. */
const char *auth_file_secret(Loop *loop, const char *user);

/*
 * For HTTP basic auth of the metrics endpoint (http.c): whether a password
 * matches a secret from auth_file_secret() (plaintext, md5 or SCRAM; loop
 * thread values are valid until the next reload, so copy them for a
 * worker).  The check is pure and thread-safe but a SCRAM secret costs a
 * PBKDF2: run it on the worker pool.
 */
bool auth_password_matches(const char *secret, const char *user, const char *password);

typedef struct auth_stats {
    uint64_t ok, failed, jobs;
    uint64_t scram_cache_hits, scram_derivations;
} AuthStats;
/* Counters of every loop. */
void auth_get_stats(Loop *loop, AuthStats *out);

/* Defined in client.c: authentication succeeded. */
void client_auth_ok(Client *c);

#endif
