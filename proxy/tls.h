/*
 * tls.h — TLS toward clients (OpenSSL 3).
 *
 * tls_context_load() builds an SSL_CTX from the client_tls_* options; the
 * Loop keeps the current one and a reload swaps it (SSL objects hold their
 * own reference, so sessions that already run keep their certificate).
 *
 * Handshakes run as steps on the worker pool: the worker calls
 * SSL_do_handshake on the non-blocking socket and returns WANT_READ /
 * WANT_WRITE; the loop waits for the socket and submits the next step.
 * Exactly one thread owns the SSL object at any time: the worker while the
 * job runs, the loop otherwise.
 */
#ifndef PGFUNNEL_TLS_H
#define PGFUNNEL_TLS_H

#include <stdatomic.h>
#include <openssl/ssl.h>

#include "conn.h"
#include "types.h"

typedef struct tls_context {
    SSL_CTX *ctx;
    int sslmode;       /* client_tls_sslmode */
    uint8_t cbind[64]; /* tls-server-end-point hash of our certificate */
    int cbind_len;
    atomic_int refs; /* every loop using it (snapshot.c) */
} TlsContext;

/* NULL with err set on failure; NULL without error when sslmode is disable. */
TlsContext *tls_context_load(const Config *cfg, char *err, size_t errlen);
void tls_context_ref(TlsContext *t);
void tls_context_unref(TlsContext *t);

/* Plain socket I/O replaced by TLS on the connection. */
void tls_conn_attach(Conn *c, SSL *ssl);
/* Decrypted bytes buffered inside OpenSSL (the socket will not signal them). */
bool tls_conn_pending(const Conn *c);

/* tls-server-end-point channel binding data of the session's own certificate; 0 if none. */
int tls_server_end_point(SSL *ssl, uint8_t out[64]);
/* The same for the peer's certificate (a backend's, for pass-through SCRAM-SHA-256-PLUS). */
int tls_peer_end_point(SSL *ssl, uint8_t out[64]);

/* The CN of a verified client certificate, or NULL (malloc'd). */
char *tls_peer_common_name(SSL *ssl);

/* Handshake step result from the worker. */
typedef enum {
    TLS_STEP_DONE = 0,
    TLS_STEP_WANT_READ,
    TLS_STEP_WANT_WRITE,
    TLS_STEP_FAILED,
} TlsStep;

/* One non-blocking handshake step; err filled when FAILED. Runs on a worker. */
TlsStep tls_handshake_step(SSL *ssl, char *err, size_t errlen);

/* Counters for metrics. */
typedef struct tls_stats {
    uint64_t handshakes_ok, handshakes_failed;
} TlsStats;

#endif
