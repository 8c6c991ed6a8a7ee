/*
 * scram.h — SCRAM-SHA-256 (RFC 5802 / RFC 7677) for the server side of a
 * client login and the client side of a backend login, plus md5 password
 * checks and answers.  Pure code (OpenSSL for the crypto), no sockets:
 * auth.c feeds it the client's SASL messages and runs the expensive calls
 * (PBKDF2 in scram_secret_from_password, proof checks) on the worker pool;
 * passthrough.c plays the client toward a backend from a ClientKey (a few
 * HMACs, cheap enough for the loop).
 *
 * Channel binding: for SCRAM-SHA-256-PLUS the caller passes the
 * tls-server-end-point data (hash of the server certificate, RFC 5929).
 */
#ifndef PGFUNNEL_SCRAM_H
#define PGFUNNEL_SCRAM_H

#include "types.h"

#define SCRAM_KEY_LEN            32
#define SCRAM_SALT_MAX           64
#define SCRAM_DEFAULT_ITERATIONS 4096

typedef struct scram_secret {
    int iterations;
    uint8_t salt[SCRAM_SALT_MAX];
    int salt_len;
    uint8_t stored_key[SCRAM_KEY_LEN];
    uint8_t server_key[SCRAM_KEY_LEN];
} ScramSecret;

/* "SCRAM-SHA-256$<iter>:<salt b64>$<StoredKey b64>:<ServerKey b64>" -> 0, or -1. */
int scram_parse_secret(const char *text, ScramSecret *out) WUR;
/* Format a secret as PostgreSQL stores it (buf of at least 256 bytes). */
int scram_format_secret(const ScramSecret *s, char *buf, size_t len) WUR;
/*
 * SASLprep (RFC 4013) of a password as PostgreSQL applies it: a malloc'd
 * normalised copy, or NULL when the password is used as it is (ASCII, or
 * not valid for SASLprep: PostgreSQL then uses the raw bytes too).
 */
char *scram_saslprep(const char *password);
/* PBKDF2 (expensive: worker pool) of the SASLprep'd password.  salt NULL = random 16 bytes. */
int scram_secret_from_password(const char *password, const uint8_t *salt, int salt_len,
                               int iterations, ScramSecret *out) WUR;
/* The same, also giving the ClientKey (HMAC(SaltedPassword, "Client Key")). */
int scram_keys_from_password(const char *password, const uint8_t *salt, int salt_len,
                             int iterations, ScramSecret *out,
                             uint8_t client_key[SCRAM_KEY_LEN]) WUR;

/*
 * A fake secret for an unknown user, so that the exchange looks like a real
 * one (the caller also sets ScramState.failed): the salt is derived from a
 * per-process random key and the user name (stable for repeated probes),
 * iterations are SCRAM_DEFAULT_ITERATIONS, the keys are random.
 */
void scram_mock_secret(const char *user, ScramSecret *out);

/* One server-side exchange. */
typedef struct scram_state {
    ScramSecret secret;
    bool plus;               /* SCRAM-SHA-256-PLUS chosen */
    char *client_first_bare; /* owned */
    char *server_first;      /* owned */
    char *client_nonce;      /* owned */
    char *server_nonce;      /* owned, client nonce + ours */
    char *gs2_header;        /* owned: "n,," / "y,," / "p=tls-server-end-point,," */
    uint8_t cbind[64];       /* tls-server-end-point data when plus */
    int cbind_len;
    bool failed; /* verification will fail (unknown user): fake secret in use */
    /*
     * Set when the proof was right: the client's ClientKey (ClientProof XOR
     * ClientSignature; H(ClientKey) == StoredKey).  It lets pgfunnel log in to
     * a backend that has the same secret (pass-through).  Wiped on free.
     */
    uint8_t client_key[SCRAM_KEY_LEN];
    bool have_client_key;
    /* Tests only: our half of the nonce instead of a random one (not owned). */
    const char *test_server_nonce;
} ScramState;

void scram_state_init(ScramState *st);
void scram_state_free(ScramState *st);

/*
 * Handle SASLInitialResponse: mech is "SCRAM-SHA-256" or "SCRAM-SHA-256-PLUS";
 * msg is the client-first-message.  cbind/cbind_len: the channel binding data
 * when the connection is TLS (NULL otherwise; then -PLUS is refused).  On
 * success *server_first is a malloc'd server-first-message.
 * Returns 0, or -1 with a client-presentable message in err (protocol error).
 */
int scram_handle_client_first(ScramState *st, const char *mech, const char *msg, size_t len,
                              const uint8_t *cbind, int cbind_len, char **server_first, char *err,
                              size_t errlen) WUR;

/*
 * Handle the client-final-message: verify channel binding, nonce and proof
 * (constant-time).  Returns 1 when the proof is right (*server_final set,
 * malloc'd "v=..."), 0 when authentication failed, -1 on a protocol error
 * (message in err).
 */
int scram_handle_client_final(ScramState *st, const char *msg, size_t len, char **server_final,
                              char *err, size_t errlen) WUR;

/*
 * Client side of one exchange toward a server, from the ClientKey a client
 * proved and the stored secret (StoredKey, ServerKey, salt, iterations) —
 * no password needed.  The server must use the same salt and iterations as
 * the secret (it has the same secret), which scram_client_final checks.
 * Owned by the caller; scram_client_free wipes it.
 */
typedef struct scram_client {
    ScramSecret secret;
    uint8_t client_key[SCRAM_KEY_LEN];
    char *client_first_bare;           /* owned */
    char *client_nonce;                /* owned */
    char *gs2_header;                  /* owned: "n,," or "p=tls-server-end-point,," */
    uint8_t server_sig[SCRAM_KEY_LEN]; /* expected in server-final */
    bool have_server_sig;
    uint8_t cbind[64]; /* tls-server-end-point data when binding */
    int cbind_len;
    /* Tests only (not owned): our nonce and the user name instead of "" (PostgreSQL ignores it). */
    const char *test_client_nonce;
    const char *test_user;
} ScramClient;

#define SCRAM_CLIENT_MISMATCH (-2) /* the server's salt or iterations differ from the secret */

void scram_client_init(ScramClient *cl, const ScramSecret *secret,
                       const uint8_t client_key[SCRAM_KEY_LEN]);
void scram_client_free(ScramClient *cl);
/*
 * The client-first-message (malloc'd in *out).  cbind: tls-server-end-point
 * data of the server's certificate to bind to (mechanism SCRAM-SHA-256-PLUS),
 * or NULL for "n,," (SCRAM-SHA-256 without channel binding).
 */
int scram_client_first(ScramClient *cl, const uint8_t *cbind, int cbind_len, char **out, char *err,
                       size_t errlen) WUR;
/*
 * Handle the server-first-message and build the client-final-message with
 * the proof (malloc'd in *out).  Returns 0; -1 on a malformed message
 * (err says why); SCRAM_CLIENT_MISMATCH when the server's salt or
 * iteration count are not those of the secret.
 */
int scram_client_final(ScramClient *cl, const char *msg, size_t len, char **out, char *err,
                       size_t errlen) WUR;
/*
 * Check the server-final-message: 1 when the server proved it knows the
 * ServerKey, 0 when the signature is wrong or the server sent "e=…", -1 when
 * malformed.  err says why when not 1.
 */
int scram_client_verify(ScramClient *cl, const char *msg, size_t len, char *err, size_t errlen) WUR;

/* md5: "md5" + hex(md5(password || user)) into out (36 bytes incl. NUL). */
void md5_password_hash(const char *password, const char *user, char out[36]);
/*
 * Check a client's md5 response ("md5" + hex(md5(hex(md5(password||user)) || salt)))
 * against a stored secret that is either "md5…" or plaintext.  Constant time.
 */
bool md5_check_response(const char *stored, const char *user, const uint8_t salt[4],
                        const char *response);

/*
 * Answer a server's md5 challenge from a stored md5 secret ("md5" + 32 hex):
 * "md5" + hex(md5(hex || salt)) into out.  The secret must have been made
 * for the user name the server checks.  false if stored is not an md5 secret.
 */
bool md5_salted_response(const char *stored, const uint8_t salt[4], char out[36]) WUR;
/* "md5" followed by 32 lower-case hex digits. */
bool md5_is_secret(const char *s);

/* Constant-time equality of n bytes. */
bool scram_ct_equal(const void *a, const void *b, size_t n);

#endif
