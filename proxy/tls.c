/*
 * tls.c — TLS toward clients, and the TLS read/write functions both sides
 * use on an established session (see tls.h).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "config.h"
#include "loop.h"
#include "tls.h"

static ssize_t tls_result(SSL *ssl, int n)
{
    if (n > 0) return n;
    switch (SSL_get_error(ssl, n)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE:
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (n == 0) return 0; /* EOF without close_notify */
        if (errno == 0) errno = EIO;
        return -1;
    default:
        ERR_clear_error();
        errno = EIO;
        return -1;
    }
}

static ssize_t tls_read(Conn *c, void *buf, size_t len)
{
    SSL *ssl = c->io_ctx;
    return tls_result(ssl, SSL_read(ssl, buf, (int)(len > INT32_MAX ? INT32_MAX : len)));
}

static ssize_t tls_write(Conn *c, const void *buf, size_t len)
{
    SSL *ssl = c->io_ctx;
    return tls_result(ssl, SSL_write(ssl, buf, (int)(len > INT32_MAX ? INT32_MAX : len)));
}

static const ConnIo tls_io = {tls_read, tls_write};

void tls_conn_attach(Conn *c, SSL *ssl)
{
    /*
     * The out-queue retries a partial write from a different address and
     * with more bytes appended: OpenSSL must be told both are fine.
     */
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    c->io = &tls_io;
    c->io_ctx = ssl;
}

bool tls_conn_pending(const Conn *c)
{
    return c->io == &tls_io && SSL_pending((SSL *)c->io_ctx) > 0;
}

static int tls_min_version(const char *protocols)
{
    if (!protocols || !*protocols || strcasecmp(protocols, "secure") == 0) return TLS1_2_VERSION;
    if (strcasecmp(protocols, "all") == 0 || strcasecmp(protocols, "legacy") == 0)
        return TLS1_VERSION;
    /* a list such as "tlsv1.2,tlsv1.3": the lowest one named */
    if (strcasestr(protocols, "tlsv1.0") || strcasestr(protocols, "tlsv1,")) return TLS1_VERSION;
    if (strcasestr(protocols, "tlsv1.1")) return TLS1_1_VERSION;
    if (strcasestr(protocols, "tlsv1.2")) return TLS1_2_VERSION;
    if (strcasestr(protocols, "tlsv1.3")) return TLS1_3_VERSION;
    return TLS1_2_VERSION;
}

static const char *tls_cipher_list(const char *ciphers)
{
    /* PgBouncer's named presets all mean "strong ciphers" for OpenSSL 3 */
    if (!ciphers || !*ciphers || strcasecmp(ciphers, "fast") == 0 ||
        strcasecmp(ciphers, "normal") == 0 || strcasecmp(ciphers, "secure") == 0 ||
        strcasecmp(ciphers, "default") == 0)
        return "HIGH:!aNULL:!MD5:!3DES";
    if (strcasecmp(ciphers, "all") == 0) return "ALL:!aNULL";
    return ciphers;
}

static void tls_openssl_error(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char buf[256] = "";
    if (e) ERR_error_string_n(e, buf, sizeof(buf));
    snprintf(err, errlen, "%s: %s", what, e ? buf : "unknown error");
    ERR_clear_error();
}

/* RFC 5929 tls-server-end-point: the certificate hashed with its signature digest (SHA-256 at
 * least). */
static int tls_cert_end_point(X509 *cert, uint8_t out[64])
{
    int md_nid = NID_sha256, pk_nid;
    if (!cert) return 0;
    if (OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, &pk_nid) != 1 ||
        md_nid == NID_md5 || md_nid == NID_sha1 || md_nid == NID_undef)
        md_nid = NID_sha256;
    const EVP_MD *md = EVP_get_digestbynid(md_nid);
    unsigned int len = 0;
    if (!md || EVP_MD_get_size(md) > 64 || X509_digest(cert, md, out, &len) != 1) return 0;
    return (int)len;
}

int tls_server_end_point(SSL *ssl, uint8_t out[64])
{
    return tls_cert_end_point(SSL_get_certificate(ssl), out);
}

int tls_peer_end_point(SSL *ssl, uint8_t out[64])
{
    return tls_cert_end_point(SSL_get0_peer_certificate(ssl), out);
}

static void tls_compute_cbind(TlsContext *t)
{
    t->cbind_len = tls_cert_end_point(SSL_CTX_get0_certificate(t->ctx), t->cbind);
}

TlsContext *tls_context_load(const Config *cfg, char *err, size_t errlen)
{
    err[0] = 0;
    if (cfg->client_tls_sslmode == SSLMODE_DISABLE) return NULL;
    if (!cfg->client_tls_cert_file || !*cfg->client_tls_cert_file || !cfg->client_tls_key_file ||
        !*cfg->client_tls_key_file) {
        snprintf(err, errlen,
                 "client_tls_sslmode needs client_tls_cert_file and client_tls_key_file");
        return NULL;
    }
    TlsContext *t = calloc(1, sizeof(*t));
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    atomic_init(&t->refs, 1);
    t->sslmode = cfg->client_tls_sslmode;
    t->ctx = SSL_CTX_new(TLS_server_method());
    if (!t->ctx) {
        tls_openssl_error(err, errlen, "SSL_CTX_new");
        goto fail;
    }
    SSL_CTX_set_min_proto_version(t->ctx, tls_min_version(cfg->client_tls_protocols));
    SSL_CTX_set_options(t->ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(t->ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (SSL_CTX_set_cipher_list(t->ctx, tls_cipher_list(cfg->client_tls_ciphers)) != 1) {
        tls_openssl_error(err, errlen, "client_tls_ciphers");
        goto fail;
    }
    if (SSL_CTX_use_certificate_chain_file(t->ctx, cfg->client_tls_cert_file) != 1) {
        tls_openssl_error(err, errlen, cfg->client_tls_cert_file);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(t->ctx, cfg->client_tls_key_file, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(t->ctx) != 1) {
        tls_openssl_error(err, errlen, cfg->client_tls_key_file);
        goto fail;
    }
    if (cfg->client_tls_ca_file && *cfg->client_tls_ca_file) {
        if (SSL_CTX_load_verify_locations(t->ctx, cfg->client_tls_ca_file, NULL) != 1) {
            tls_openssl_error(err, errlen, cfg->client_tls_ca_file);
            goto fail;
        }
        /* verify-ca/verify-full demand a client certificate; otherwise one is optional (cert auth)
         */
        int mode = SSL_VERIFY_PEER;
        if (cfg->client_tls_sslmode >= SSLMODE_VERIFY_CA) mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        SSL_CTX_set_verify(t->ctx, mode, NULL);
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_tls_ca_file);
        if (names) SSL_CTX_set_client_CA_list(t->ctx, names);
    }
    tls_compute_cbind(t);
    return t;
fail:
    tls_context_unref(t);
    return NULL;
}

void tls_context_ref(TlsContext *t)
{
    if (t) atomic_fetch_add(&t->refs, 1);
}

void tls_context_unref(TlsContext *t)
{
    if (!t || atomic_fetch_sub(&t->refs, 1) != 1) return;
    if (t->ctx) SSL_CTX_free(t->ctx);
    free(t);
}

char *tls_peer_common_name(SSL *ssl)
{
    if (SSL_get_verify_result(ssl) != X509_V_OK) return NULL;
    X509 *cert = SSL_get1_peer_certificate(ssl);
    if (!cert) return NULL;
    char cn[256];
    int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
    X509_free(cert);
    if (n <= 0 || (size_t)n != strlen(cn)) return NULL; /* embedded NUL: refuse */
    return strdup(cn);
}

TlsStep tls_handshake_step(SSL *ssl, char *err, size_t errlen)
{
    ERR_clear_error();
    int r = SSL_do_handshake(ssl);
    if (r == 1) return TLS_STEP_DONE;
    switch (SSL_get_error(ssl, r)) {
    case SSL_ERROR_WANT_READ:
        return TLS_STEP_WANT_READ;
    case SSL_ERROR_WANT_WRITE:
        return TLS_STEP_WANT_WRITE;
    case SSL_ERROR_SYSCALL:
        snprintf(err, errlen, "TLS handshake: %s", errno ? strerror(errno) : "connection closed");
        ERR_clear_error();
        return TLS_STEP_FAILED;
    default:
        tls_openssl_error(err, errlen, "TLS handshake");
        return TLS_STEP_FAILED;
    }
}
