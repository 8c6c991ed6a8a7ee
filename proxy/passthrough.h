/*
 * passthrough.h — backend logins from stored secrets (PgBouncer's
 * pass-through), for backends that ask for md5 or SCRAM while pgfunnel has
 * no plaintext password.
 *
 * What a client proved at login is kept as a PassCred: the stored secret the
 * login used (auth_file, database entry or auth_query) and, for a SCRAM
 * secret, the client's ClientKey (ClientProof XOR ClientSignature, recovered
 * by the SCRAM proof check).  auth.c puts one on the Client, pool.c copies it
 * into the Pool (pool_client_login), and every new server of the pool logs
 * in with it:
 *   - md5 secret ("md5…"): the hash answers the server's md5 challenge;
 *   - SCRAM secret + ClientKey: the ClientKey answers the server's SCRAM
 *     exchange, since the server has the same secret (salt, iterations,
 *     StoredKey); the server's signature is checked with the ServerKey.
 * A plaintext secret is simply given to libpq as the password.
 *
 * The exchange: libpq still opens the connection (hosts, TLS,
 * target_session_attrs).  When it has sent the startup packet it waits for
 * the answer (CONNECTION_AWAITING_RESPONSE) and has read nothing yet; before
 * PQconnectPoll is called again, passthrough_poll() peeks at the server's
 * first message on the socket (through libpq's SSL object when the leg is
 * TLS).  An md5 or SASL request is answered here, consuming exactly the
 * authentication messages; whatever else comes (AuthenticationOk after the
 * exchange or from a trust server, an ErrorResponse) is left unread for
 * libpq, which takes AuthenticationOk as from a trust server and reports an
 * error with its SQLSTATE as for any login.  The hashing is a few HMACs or
 * one md5: it runs on the loop.  No PBKDF2 is ever needed.
 *
 * Ownership: a PassCred belongs to the Client (freed in client_free) or the
 * Pool (freed with it); a PassExchange belongs to its Server while it
 * connects.  Both wipe their secrets when freed.
 */
#ifndef PGFUNNEL_PASSTHROUGH_H
#define PGFUNNEL_PASSTHROUGH_H

#include <sys/types.h>
#include <libpq-fe.h>

#include "scram.h"
#include "types.h"

typedef struct pass_cred {
    char *secret; /* the stored secret: plaintext, "md5…" or "SCRAM-SHA-256$…" (owned) */
    uint8_t client_key[SCRAM_KEY_LEN];
    bool have_client_key; /* a SCRAM login proved it for this secret */
} PassCred;

typedef struct pass_exchange PassExchange;

/* A credential for secret (copied); client_key NULL when none. NULL when out of memory. */
PassCred *passthrough_cred_new(const char *secret, const uint8_t *client_key);
void passthrough_cred_free(PassCred *pc);
/*
 * Keep what a login proved in *kept: a different secret replaces the kept
 * one (with its ClientKey or without), the same secret only adds a ClientKey
 * the kept one lacks.  Returns true when *kept changed.  On out of memory
 * the old credential stays.
 */
bool passthrough_cred_keep(PassCred **kept, const PassCred *proved);

/*
 * A plaintext password a login taught the pool (auth_query), for libpq; or
 * NULL.  kept is the caller's copy of the pool's credential
 * (pooldir_cred_copy): other loops may replace the shared one meanwhile.
 */
const char *passthrough_password(const PassCred *kept);

/*
 * For a new server of the pool whose libpq parameters carry no password:
 * the exchange state when a stored secret is known (kept, the caller's copy
 * of the pool's, else an md5
 * or SCRAM secret of the backend user in auth_file), else NULL.
 */
PassExchange *passthrough_new(Pool *p, const PassCred *kept) WUR;
void passthrough_free(PassExchange *x);

typedef enum {
    PASS_LIBPQ = 0,  /* nothing for us (now): poll libpq */
    PASS_WAIT_READ,  /* wait until the socket is readable, then poll us again */
    PASS_WAIT_WRITE, /* wait until it is writable, then poll us again */
    PASS_FAILED,     /* the login cannot succeed: sqlstate and msg say why */
} PassResult;

/*
 * Call after PQconnectPoll returned PGRES_POLLING_READING.  True when libpq
 * has just sent a startup packet on a socket we have not looked at yet and
 * has no password of its own: the server's answer is then ours to look at
 * first (call passthrough_poll).
 */
bool passthrough_startup_sent(PassExchange *x, PGconn *pg);

/*
 * Move the exchange on (non-blocking).  Before every PQconnectPoll of a
 * server that has a PassExchange.
 */
PassResult passthrough_poll(PassExchange *x, PGconn *pg, char sqlstate[6], char *msg,
                            size_t msglen);

/* "md5", "SCRAM-SHA-256" or "SCRAM-SHA-256-PLUS" when a stored secret answered the server. */
const char *passthrough_method(const PassExchange *x);

#endif
