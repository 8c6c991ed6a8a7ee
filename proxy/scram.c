/*
 * scram.c — server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) the way
 * PostgreSQL speaks it, and PostgreSQL's md5 password check.
 *
 * DESIGN
 * The module is pure: it never touches a socket or the loop.  auth.c hands
 * it the client's SASL messages and gets back the server's answers.  The
 * PBKDF2 in scram_secret_from_password() and the proof check are the only
 * expensive calls; the caller runs them on the worker pool.  A ScramState
 * is owned by the client's login and freed with scram_state_free().
 *
 * PostgreSQL's dialect of SCRAM: the user name inside the SCRAM message is
 * ignored (the startup packet's name is authoritative), so "n=," is normal;
 * authorization identities ("a=") are refused; unknown extension attributes
 * after the nonce are skipped.  Channel binding is tls-server-end-point
 * only (RFC 5929), and a client that says "y" (it could bind but thinks we
 * cannot) while we did offer -PLUS is treated as a downgrade attack.
 *
 * Unknown users get a mock secret (scram_mock_secret) and state.failed, so
 * the exchange looks the same on the wire and in timing, and always fails at
 * the proof.
 *
 * Every comparison involving secret material is constant time
 * (CRYPTO_memcmp); nothing here logs.
 */
#include "scram.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stringprep.h>

/* No legitimate SCRAM message is anywhere near this; refuse anything larger. */
#define SCRAM_MAX_MSG 4096
/* Raw bytes of our part of the nonce (PostgreSQL uses 18 too). */
#define SCRAM_NONCE_RAW 18
/* Salt length for new secrets and mock secrets (PostgreSQL's default). */
#define SCRAM_DEFAULT_SALT_LEN 16
#define CBIND_NAME             "tls-server-end-point"

/* ---------------------------------------------------------------- helpers */

static void set_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen > 0) snprintf(err, errlen, "%s", msg);
}

bool scram_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

/* Base64 length of n bytes, without the NUL. */
#define B64_LEN(n) (4 * (((size_t)(n) + 2) / 3))

/* Encode into a malloc'd NUL-terminated string, or NULL. */
static char *b64_encode(const uint8_t *data, size_t n)
{
    if (n > INT_MAX / 2) return NULL;
    char *out = malloc(B64_LEN(n) + 1);
    if (!out) return NULL;
    EVP_EncodeBlock((unsigned char *)out, data, (int)n);
    return out;
}

static bool b64_char_ok(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
           c == '/';
}

/*
 * Strict base64 decode of in[0..n) into out (capacity cap).  Returns the
 * decoded length or -1.  EVP_DecodeBlock is lenient (skips whitespace, and
 * counts padding as zero bytes), so the input is validated first and the
 * padding subtracted afterwards.
 */
static int b64_decode(const char *in, size_t n, uint8_t *out, size_t cap)
{
    if (n == 0 || n % 4 != 0 || n > INT_MAX / 2) return -1;
    size_t pad = 0;
    if (in[n - 1] == '=') pad++;
    if (in[n - 2] == '=') pad++;
    if (pad == 1 && in[n - 2] == '=') return -1;
    for (size_t i = 0; i < n - pad; i++)
        if (!b64_char_ok(in[i])) return -1;
    size_t outlen = n / 4 * 3 - pad;
    if (outlen > cap) return -1;
    /* EVP_DecodeBlock writes n/4*3 bytes, padding included. */
    uint8_t *tmp = malloc(n / 4 * 3);
    if (!tmp) return -1;
    int r = EVP_DecodeBlock(tmp, (const unsigned char *)in, (int)n);
    if (r < 0 || (size_t)r != n / 4 * 3) {
        OPENSSL_cleanse(tmp, n / 4 * 3);
        free(tmp);
        return -1;
    }
    memcpy(out, tmp, outlen);
    OPENSSL_cleanse(tmp, n / 4 * 3);
    free(tmp);
    return (int)outlen;
}

static int hmac_sha256(const uint8_t *key, size_t keylen, const void *msg, size_t msglen,
                       uint8_t out[SCRAM_KEY_LEN])
{
    unsigned int outlen = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, msg, msglen, out, &outlen) || outlen != SCRAM_KEY_LEN)
        return -1;
    return 0;
}

static int sha256(const void *msg, size_t len, uint8_t out[SCRAM_KEY_LEN])
{
    unsigned int outlen = 0;
    if (!EVP_Digest(msg, len, out, &outlen, EVP_sha256(), NULL) || outlen != SCRAM_KEY_LEN)
        return -1;
    return 0;
}

/* RFC 5802 "printable": %x21-2B / %x2D-7E (no comma). */
static bool scram_printable(const char *s)
{
    if (*s == '\0') return false;
    for (; *s; s++)
        if ((unsigned char)*s < 0x21 || (unsigned char)*s > 0x7e || *s == ',') return false;
    return true;
}

static char *xstrndup(const char *s, size_t n)
{
    char *p = malloc(n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

/*
 * Copy a wire message into a NUL-terminated buffer; refuses embedded NULs
 * (they would silently truncate what we parse) and oversized input.
 */
static char *msg_dup(const char *msg, size_t len)
{
    if (!msg || len == 0 || len > SCRAM_MAX_MSG || memchr(msg, '\0', len)) return NULL;
    return xstrndup(msg, len);
}

/*
 * Read "<attr>=<value>" at *p up to the next ',' or the end.  Returns a
 * pointer to the value (NUL-terminated in place) and advances *p past the
 * comma, or NULL when the attribute is not there.
 */
static char *read_attr(char **p, char attr)
{
    char *s = *p;
    if (s[0] != attr || s[1] != '=') return NULL;
    char *v = s + 2;
    char *comma = strchr(v, ',');
    if (comma && comma[1] == '\0')
        return NULL; /* a trailing comma promises an attribute that is not there */
    if (comma) {
        *comma = '\0';
        *p = comma + 1;
    } else {
        *p = v + strlen(v);
    }
    return v;
}

/* Skip one "x=value" extension attribute; false when malformed. */
static bool skip_any_attr(char **p)
{
    char *s = *p;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')) || s[1] != '=')
        return false;
    return read_attr(p, s[0]) != NULL;
}

/* ---------------------------------------------------------------- secrets */

int scram_parse_secret(const char *text, ScramSecret *out)
{
    static const char prefix[] = "SCRAM-SHA-256$";
    ScramSecret s;
    memset(&s, 0, sizeof(s));
    if (!text || strncmp(text, prefix, sizeof(prefix) - 1) != 0) return -1;
    const char *p = text + sizeof(prefix) - 1;

    /* iterations */
    char *end = NULL;
    errno = 0;
    long iter = strtol(p, &end, 10);
    if (end == p || *end != ':' || errno || iter <= 0 || iter > INT_MAX || *p == '-' || *p == '+' ||
        *p == ' ')
        return -1;
    s.iterations = (int)iter;
    p = end + 1;

    /* salt */
    const char *dollar = strchr(p, '$');
    if (!dollar) return -1;
    int n = b64_decode(p, (size_t)(dollar - p), s.salt, sizeof(s.salt));
    if (n <= 0) return -1;
    s.salt_len = n;
    p = dollar + 1;

    /* StoredKey:ServerKey */
    const char *colon = strchr(p, ':');
    if (!colon) return -1;
    if (b64_decode(p, (size_t)(colon - p), s.stored_key, sizeof(s.stored_key)) != SCRAM_KEY_LEN)
        return -1;
    p = colon + 1;
    if (b64_decode(p, strlen(p), s.server_key, sizeof(s.server_key)) != SCRAM_KEY_LEN) return -1;
    *out = s;
    OPENSSL_cleanse(&s, sizeof(s));
    return 0;
}

int scram_format_secret(const ScramSecret *s, char *buf, size_t len)
{
    if (s->iterations <= 0 || s->salt_len <= 0 || s->salt_len > SCRAM_SALT_MAX) return -1;
    char salt[B64_LEN(SCRAM_SALT_MAX) + 1];
    char sk[B64_LEN(SCRAM_KEY_LEN) + 1];
    char svk[B64_LEN(SCRAM_KEY_LEN) + 1];
    EVP_EncodeBlock((unsigned char *)salt, s->salt, s->salt_len);
    EVP_EncodeBlock((unsigned char *)sk, s->stored_key, SCRAM_KEY_LEN);
    EVP_EncodeBlock((unsigned char *)svk, s->server_key, SCRAM_KEY_LEN);
    int n = snprintf(buf, len, "SCRAM-SHA-256$%d:%s$%s:%s", s->iterations, salt, sk, svk);
    OPENSSL_cleanse(sk, sizeof(sk));
    OPENSSL_cleanse(svk, sizeof(svk));
    if (n < 0 || (size_t)n >= len) return -1;
    return 0;
}

char *scram_saslprep(const char *password)
{
    /* ASCII needs no preparation (PostgreSQL takes the same shortcut) */
    const unsigned char *p = (const unsigned char *)password;
    while (*p && *p < 0x80)
        p++;
    if (!*p) return NULL;
    char *out = NULL;
    /*
     * Unassigned code points are prohibited, as in PostgreSQL; whatever
     * SASLprep refuses (invalid UTF-8, prohibited characters, an empty
     * result) is used as raw bytes, which is PostgreSQL's fallback too.
     */
    if (stringprep_profile(password, &out, "SASLprep", STRINGPREP_NO_UNASSIGNED) != STRINGPREP_OK ||
        !out || !*out) {
        if (out) {
            OPENSSL_cleanse(out, strlen(out));
            free(out);
        }
        return NULL;
    }
    return out;
}

int scram_keys_from_password(const char *password, const uint8_t *salt, int salt_len,
                             int iterations, ScramSecret *out,
                             uint8_t client_key_out[SCRAM_KEY_LEN])
{
    ScramSecret s;
    uint8_t salted[SCRAM_KEY_LEN];
    uint8_t client_key[SCRAM_KEY_LEN];
    int rc = -1;

    memset(&s, 0, sizeof(s));
    if (!password || iterations <= 0) return -1;
    if (salt) {
        if (salt_len <= 0 || salt_len > SCRAM_SALT_MAX) return -1;
        memcpy(s.salt, salt, (size_t)salt_len);
        s.salt_len = salt_len;
    } else {
        if (RAND_bytes(s.salt, SCRAM_DEFAULT_SALT_LEN) != 1) return -1;
        s.salt_len = SCRAM_DEFAULT_SALT_LEN;
    }
    s.iterations = iterations;

    char *prepped = scram_saslprep(password);
    const char *pw = prepped ? prepped : password;
    size_t pwlen = strlen(pw);
    int ok = pwlen <= INT_MAX && PKCS5_PBKDF2_HMAC(pw, (int)pwlen, s.salt, s.salt_len, iterations,
                                                   EVP_sha256(), SCRAM_KEY_LEN, salted) == 1;
    if (prepped) {
        OPENSSL_cleanse(prepped, strlen(prepped));
        free(prepped);
    }
    if (!ok) goto out;
    if (hmac_sha256(salted, sizeof(salted), "Client Key", 10, client_key) < 0) goto out;
    if (sha256(client_key, sizeof(client_key), s.stored_key) < 0) goto out;
    if (hmac_sha256(salted, sizeof(salted), "Server Key", 10, s.server_key) < 0) goto out;
    *out = s;
    if (client_key_out) memcpy(client_key_out, client_key, SCRAM_KEY_LEN);
    rc = 0;
out:
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(&s, sizeof(s));
    return rc;
}

int scram_secret_from_password(const char *password, const uint8_t *salt, int salt_len,
                               int iterations, ScramSecret *out)
{
    return scram_keys_from_password(password, salt, salt_len, iterations, out, NULL);
}

/*
 * Per-process random key for mock salts: the salt an unknown user gets is
 * stable within the process (so probing twice shows the same salt, as for a
 * real user) but says nothing across processes.
 */
static uint8_t mock_key[32];
static bool mock_key_ok;
static pthread_once_t mock_once = PTHREAD_ONCE_INIT;

static void mock_key_init(void)
{
    mock_key_ok = RAND_bytes(mock_key, sizeof(mock_key)) == 1;
}

void scram_mock_secret(const char *user, ScramSecret *out)
{
    uint8_t h[SCRAM_KEY_LEN];
    pthread_once(&mock_once, mock_key_init);
    memset(out, 0, sizeof(*out));
    if (!user) user = "";
    if (!mock_key_ok || hmac_sha256(mock_key, sizeof(mock_key), user, strlen(user), h) < 0) {
        /* No randomness: still produce a well-formed secret, nobody can log in with it. */
        memset(h, 0x5a, sizeof(h));
    }
    memcpy(out->salt, h, SCRAM_DEFAULT_SALT_LEN);
    out->salt_len = SCRAM_DEFAULT_SALT_LEN;
    out->iterations = SCRAM_DEFAULT_ITERATIONS;
    if (RAND_bytes(out->stored_key, SCRAM_KEY_LEN) != 1)
        memset(out->stored_key, 0xa5, SCRAM_KEY_LEN);
    if (RAND_bytes(out->server_key, SCRAM_KEY_LEN) != 1)
        memset(out->server_key, 0xa5, SCRAM_KEY_LEN);
    OPENSSL_cleanse(h, sizeof(h));
}

/* ---------------------------------------------------------------- exchange */

void scram_state_init(ScramState *st)
{
    memset(st, 0, sizeof(*st));
}

void scram_state_free(ScramState *st)
{
    free(st->client_first_bare);
    free(st->server_first);
    free(st->client_nonce);
    free(st->server_nonce);
    free(st->gs2_header);
    OPENSSL_cleanse(st, sizeof(*st));
    /* Leave it re-initialised, so a double free or reuse is harmless. */
    scram_state_init(st);
}

/* Our half of the nonce: 18 random bytes in base64 (24 printable characters). */
static char *make_server_nonce(const ScramState *st)
{
    if (st->test_server_nonce)
        return scram_printable(st->test_server_nonce) ? strdup(st->test_server_nonce) : NULL;
    uint8_t raw[SCRAM_NONCE_RAW];
    if (RAND_bytes(raw, sizeof(raw)) != 1) return NULL;
    return b64_encode(raw, sizeof(raw));
}

int scram_handle_client_first(ScramState *st, const char *mech, const char *msg, size_t len,
                              const uint8_t *cbind, int cbind_len, char **server_first, char *err,
                              size_t errlen)
{
    char *buf = NULL;
    char *ours = NULL;
    char *salt = NULL;
    char *p;

    *server_first = NULL;
    if (st->client_first_bare) {
        set_err(err, errlen, "unexpected SCRAM client-first-message");
        return -1;
    }
    if (!mech || (strcmp(mech, "SCRAM-SHA-256") != 0 && strcmp(mech, "SCRAM-SHA-256-PLUS") != 0)) {
        set_err(err, errlen, "client selected an invalid SASL authentication mechanism");
        return -1;
    }
    st->plus = strcmp(mech, "SCRAM-SHA-256-PLUS") == 0;
    if (cbind && (cbind_len <= 0 || cbind_len > (int)sizeof(st->cbind))) {
        set_err(err, errlen, "invalid channel binding data");
        return -1;
    }
    if (st->plus && !cbind) {
        set_err(err, errlen, "SCRAM-SHA-256-PLUS needs an SSL connection (channel binding)");
        return -1;
    }
    buf = msg_dup(msg, len);
    if (!buf) {
        set_err(err, errlen, "malformed SCRAM message: invalid length or contents");
        return -1;
    }
    p = buf;

    /* gs2-cbind-flag */
    switch (*p) {
    case 'n':
        if (st->plus) {
            set_err(err, errlen,
                    "malformed SCRAM message: client selected SCRAM-SHA-256-PLUS, but the "
                    "SCRAM message does not include channel binding data");
            goto fail;
        }
        p++;
        break;
    case 'y':
        /* The client could bind but believes we cannot.  We offered -PLUS: downgrade. */
        if (cbind) {
            set_err(err, errlen, "SCRAM channel binding negotiation error");
            goto fail;
        }
        p++;
        break;
    case 'p':
        if (!st->plus) {
            set_err(err, errlen,
                    "malformed SCRAM message: client selected SCRAM-SHA-256 without channel "
                    "binding, but the SCRAM message includes channel binding data");
            goto fail;
        }
        if (strncmp(p, "p=" CBIND_NAME ",", sizeof("p=" CBIND_NAME)) != 0) {
            set_err(err, errlen, "unsupported SCRAM channel-binding type");
            goto fail;
        }
        p += sizeof("p=" CBIND_NAME) - 1;
        break;
    default:
        set_err(err, errlen, "malformed SCRAM message: unexpected channel-binding flag");
        goto fail;
    }
    if (*p != ',') {
        set_err(err, errlen, "malformed SCRAM message: comma expected after channel binding");
        goto fail;
    }
    p++;
    /* authzid */
    if (*p == 'a') {
        set_err(err, errlen, "client uses authorization identity, but it is not supported");
        goto fail;
    }
    if (*p != ',') {
        set_err(err, errlen, "malformed SCRAM message: unexpected attribute in gs2 header");
        goto fail;
    }
    p++;
    st->gs2_header = xstrndup(buf, (size_t)(p - buf));
    st->client_first_bare = strdup(p);
    if (!st->gs2_header || !st->client_first_bare) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }

    /* client-first-message-bare: [reserved-mext ","] username "," nonce ["," extensions] */
    if (*p == 'm') {
        set_err(err, errlen, "client requires an unsupported SCRAM extension");
        goto fail;
    }
    /* The user name is ignored, as PostgreSQL does: the startup packet's counts. */
    if (!read_attr(&p, 'n')) {
        set_err(err, errlen, "malformed SCRAM message: user name attribute expected");
        goto fail;
    }
    char *nonce = read_attr(&p, 'r');
    if (!nonce || !scram_printable(nonce)) {
        set_err(err, errlen, "malformed SCRAM message: invalid or missing nonce");
        goto fail;
    }
    st->client_nonce = strdup(nonce);
    if (!st->client_nonce) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    while (*p) {
        if (!skip_any_attr(&p)) {
            set_err(err, errlen, "malformed SCRAM message: garbage at end of message");
            goto fail;
        }
    }

    if (cbind) {
        memcpy(st->cbind, cbind, (size_t)cbind_len);
        st->cbind_len = cbind_len;
    }

    /* server-first-message */
    ours = make_server_nonce(st);
    salt = b64_encode(st->secret.salt, (size_t)st->secret.salt_len);
    if (!ours || !salt || st->secret.salt_len <= 0 || st->secret.iterations <= 0) {
        set_err(err, errlen, "could not generate SCRAM server nonce");
        goto fail;
    }
    size_t nlen = strlen(st->client_nonce) + strlen(ours) + 1;
    st->server_nonce = malloc(nlen);
    if (!st->server_nonce) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(st->server_nonce, nlen, "%s%s", st->client_nonce, ours);
    size_t flen = strlen(st->server_nonce) + strlen(salt) + 32;
    st->server_first = malloc(flen);
    if (!st->server_first) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    snprintf(st->server_first, flen, "r=%s,s=%s,i=%d", st->server_nonce, salt,
             st->secret.iterations);
    *server_first = strdup(st->server_first);
    if (!*server_first) {
        set_err(err, errlen, "out of memory");
        goto fail;
    }
    free(ours);
    free(salt);
    free(buf);
    return 0;

fail:
    free(ours);
    free(salt);
    free(buf);
    /* Keep st freeable but refuse a second round: mark it failed. */
    st->failed = true;
    if (!st->client_first_bare) st->client_first_bare = strdup("");
    return -1;
}

int scram_handle_client_final(ScramState *st, const char *msg, size_t len, char **server_final,
                              char *err, size_t errlen)
{
    char *buf = NULL;
    char *authmsg = NULL;
    uint8_t *cb_expected = NULL;
    char *cb_b64 = NULL;
    uint8_t proof[SCRAM_KEY_LEN];
    uint8_t sig[SCRAM_KEY_LEN];
    uint8_t client_key[SCRAM_KEY_LEN];
    uint8_t stored[SCRAM_KEY_LEN];
    uint8_t server_sig[SCRAM_KEY_LEN];
    int rc = -1;

    *server_final = NULL;
    if (!st->server_first || !st->server_nonce || !st->gs2_header) {
        set_err(err, errlen, "unexpected SCRAM client-final-message");
        return -1;
    }
    buf = msg_dup(msg, len);
    if (!buf) {
        set_err(err, errlen, "malformed SCRAM message: invalid length or contents");
        return -1;
    }
    /* client-final-message-without-proof is everything before ",p=". */
    char *proof_at = strstr(buf, ",p=");
    if (!proof_at) {
        set_err(err, errlen, "malformed SCRAM message: proof attribute expected");
        goto out;
    }
    size_t without_proof_len = (size_t)(proof_at - buf);
    /* There must be no other ",p=" after it (the proof is the last attribute). */
    if (strstr(proof_at + 3, ",")) {
        set_err(err, errlen, "malformed SCRAM message: garbage after proof");
        goto out;
    }

    /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
    size_t alen = strlen(st->client_first_bare) + strlen(st->server_first) + without_proof_len + 3;
    authmsg = malloc(alen);
    if (!authmsg) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    snprintf(authmsg, alen, "%s,%s,%.*s", st->client_first_bare, st->server_first,
             (int)without_proof_len, buf);

    char *p = buf;
    *proof_at = '\0';
    char *proof_b64 = proof_at + 3;

    /* c=: base64(gs2 header [+ cbind data]) */
    char *cval = read_attr(&p, 'c');
    if (!cval) {
        set_err(err, errlen, "malformed SCRAM message: channel binding attribute expected");
        goto out;
    }
    size_t gs2len = strlen(st->gs2_header);
    bool binds = st->gs2_header[0] == 'p';
    size_t cblen = gs2len + (binds ? (size_t)st->cbind_len : 0);
    cb_expected = malloc(cblen);
    if (!cb_expected) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    memcpy(cb_expected, st->gs2_header, gs2len);
    if (binds) memcpy(cb_expected + gs2len, st->cbind, (size_t)st->cbind_len);
    cb_b64 = b64_encode(cb_expected, cblen);
    if (!cb_b64) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    if (strlen(cval) != strlen(cb_b64) || !scram_ct_equal(cval, cb_b64, strlen(cb_b64))) {
        set_err(err, errlen,
                binds ? "SCRAM channel binding check failed"
                      : "unexpected SCRAM channel-binding attribute in client-final-message");
        goto out;
    }

    /* r=: must repeat the combined nonce. */
    char *nonce = read_attr(&p, 'r');
    if (!nonce) {
        set_err(err, errlen, "malformed SCRAM message: nonce attribute expected");
        goto out;
    }
    if (strlen(nonce) != strlen(st->server_nonce) ||
        !scram_ct_equal(nonce, st->server_nonce, strlen(nonce))) {
        set_err(err, errlen, "malformed SCRAM message: nonce does not match");
        goto out;
    }
    while (*p) {
        if (!skip_any_attr(&p)) {
            set_err(err, errlen, "malformed SCRAM message: garbage in client-final-message");
            goto out;
        }
    }
    if (b64_decode(proof_b64, strlen(proof_b64), proof, sizeof(proof)) != SCRAM_KEY_LEN) {
        set_err(err, errlen, "malformed SCRAM message: invalid client proof");
        goto out;
    }

    /* ClientKey = proof XOR HMAC(StoredKey, AuthMessage); check H(ClientKey) == StoredKey. */
    if (hmac_sha256(st->secret.stored_key, SCRAM_KEY_LEN, authmsg, strlen(authmsg), sig) < 0)
        goto crypto_fail;
    for (int i = 0; i < SCRAM_KEY_LEN; i++)
        client_key[i] = proof[i] ^ sig[i];
    if (sha256(client_key, SCRAM_KEY_LEN, stored) < 0) goto crypto_fail;
    /* Always compare (also for a mock secret) so the timing does not depend on st->failed. */
    bool ok = scram_ct_equal(stored, st->secret.stored_key, SCRAM_KEY_LEN);
    if (!ok || st->failed) {
        rc = 0;
        goto out;
    }

    if (hmac_sha256(st->secret.server_key, SCRAM_KEY_LEN, authmsg, strlen(authmsg), server_sig) < 0)
        goto crypto_fail;
    /* the proof is right: keep the ClientKey for backend logins (pass-through) */
    memcpy(st->client_key, client_key, SCRAM_KEY_LEN);
    st->have_client_key = true;
    char *v = b64_encode(server_sig, SCRAM_KEY_LEN);
    if (!v) goto crypto_fail;
    size_t vlen = strlen(v) + 3;
    *server_final = malloc(vlen);
    if (!*server_final) {
        free(v);
        goto crypto_fail;
    }
    snprintf(*server_final, vlen, "v=%s", v);
    free(v);
    rc = 1;
    goto out;

crypto_fail:
    set_err(err, errlen, "SCRAM computation failed");
    rc = -1;
out:
    OPENSSL_cleanse(proof, sizeof(proof));
    OPENSSL_cleanse(sig, sizeof(sig));
    OPENSSL_cleanse(client_key, sizeof(client_key));
    OPENSSL_cleanse(stored, sizeof(stored));
    OPENSSL_cleanse(server_sig, sizeof(server_sig));
    free(cb_expected);
    free(cb_b64);
    free(authmsg);
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- client side */

void scram_client_init(ScramClient *cl, const ScramSecret *secret,
                       const uint8_t client_key[SCRAM_KEY_LEN])
{
    memset(cl, 0, sizeof(*cl));
    cl->secret = *secret;
    memcpy(cl->client_key, client_key, SCRAM_KEY_LEN);
}

void scram_client_free(ScramClient *cl)
{
    free(cl->client_first_bare);
    free(cl->client_nonce);
    free(cl->gs2_header);
    OPENSSL_cleanse(cl, sizeof(*cl));
    memset(cl, 0, sizeof(*cl));
}

int scram_client_first(ScramClient *cl, const uint8_t *cbind, int cbind_len, char **out, char *err,
                       size_t errlen)
{
    uint8_t stored[SCRAM_KEY_LEN];
    uint8_t raw[SCRAM_NONCE_RAW];
    const char *user = cl->test_user ? cl->test_user : "";

    *out = NULL;
    if (cl->client_first_bare) {
        set_err(err, errlen, "SCRAM exchange already started");
        return -1;
    }
    /* a stale ClientKey would only fail at the server: say so here */
    if (sha256(cl->client_key, SCRAM_KEY_LEN, stored) < 0 ||
        !scram_ct_equal(stored, cl->secret.stored_key, SCRAM_KEY_LEN)) {
        OPENSSL_cleanse(stored, sizeof(stored));
        set_err(err, errlen, "the ClientKey does not belong to the stored SCRAM secret");
        return -1;
    }
    OPENSSL_cleanse(stored, sizeof(stored));
    if (cbind && (cbind_len <= 0 || cbind_len > (int)sizeof(cl->cbind))) {
        set_err(err, errlen, "invalid channel binding data");
        return -1;
    }
    if (strchr(user, ',') || strchr(user, '=')) {
        set_err(err, errlen, "SCRAM user name needs escaping");
        return -1;
    }
    if (cl->test_client_nonce) {
        cl->client_nonce =
            scram_printable(cl->test_client_nonce) ? strdup(cl->test_client_nonce) : NULL;
    } else if (RAND_bytes(raw, sizeof(raw)) == 1) {
        cl->client_nonce = b64_encode(raw, sizeof(raw));
    }
    if (!cl->client_nonce) {
        set_err(err, errlen, "could not generate a SCRAM nonce");
        return -1;
    }
    if (cbind) {
        memcpy(cl->cbind, cbind, (size_t)cbind_len);
        cl->cbind_len = cbind_len;
    }
    cl->gs2_header = strdup(cbind ? "p=" CBIND_NAME ",," : "n,,");
    size_t blen = strlen(user) + strlen(cl->client_nonce) + 8;
    cl->client_first_bare = malloc(blen);
    if (!cl->gs2_header || !cl->client_first_bare) goto oom;
    snprintf(cl->client_first_bare, blen, "n=%s,r=%s", user, cl->client_nonce);
    size_t olen = strlen(cl->gs2_header) + strlen(cl->client_first_bare) + 1;
    *out = malloc(olen);
    if (!*out) goto oom;
    snprintf(*out, olen, "%s%s", cl->gs2_header, cl->client_first_bare);
    return 0;
oom:
    set_err(err, errlen, "out of memory");
    return -1;
}

int scram_client_final(ScramClient *cl, const char *msg, size_t len, char **out, char *err,
                       size_t errlen)
{
    char *buf = NULL, *server_first = NULL, *without_proof = NULL, *authmsg = NULL;
    char *cb_b64 = NULL, *proof_b64 = NULL;
    uint8_t *cb_raw = NULL;
    uint8_t salt[SCRAM_SALT_MAX];
    uint8_t sig[SCRAM_KEY_LEN], proof[SCRAM_KEY_LEN];
    int rc = -1;

    *out = NULL;
    if (!cl->client_first_bare || cl->have_server_sig) {
        set_err(err, errlen, "unexpected SCRAM server-first-message");
        return -1;
    }
    buf = msg_dup(msg, len);
    server_first = msg_dup(msg, len);
    if (!buf || !server_first) {
        set_err(err, errlen, "malformed SCRAM server-first-message");
        goto out;
    }
    char *p = buf;
    if (*p == 'm') {
        set_err(err, errlen, "server requires an unsupported SCRAM extension");
        goto out;
    }
    char *nonce = read_attr(&p, 'r');
    size_t cn = strlen(cl->client_nonce);
    /* the server's nonce extends ours (RFC 5802: and must add something) */
    if (!nonce || !scram_printable(nonce) || strlen(nonce) <= cn ||
        memcmp(nonce, cl->client_nonce, cn) != 0) {
        set_err(err, errlen, "invalid SCRAM nonce from the server");
        goto out;
    }
    char *salt_b64 = read_attr(&p, 's');
    int salt_len = salt_b64 ? b64_decode(salt_b64, strlen(salt_b64), salt, sizeof(salt)) : -1;
    if (salt_len <= 0) {
        set_err(err, errlen, "invalid SCRAM salt from the server");
        goto out;
    }
    char *iter_s = read_attr(&p, 'i');
    char *end = NULL;
    errno = 0;
    long iter = iter_s && *iter_s >= '0' && *iter_s <= '9' ? strtol(iter_s, &end, 10) : -1;
    if (!iter_s || errno || !end || *end || iter <= 0 || iter > INT_MAX) {
        set_err(err, errlen, "invalid SCRAM iteration count from the server");
        goto out;
    }
    while (*p) {
        if (!skip_any_attr(&p)) {
            set_err(err, errlen, "malformed SCRAM server-first-message");
            goto out;
        }
    }
    /* the ClientKey only answers for the secret it was proved against */
    if (salt_len != cl->secret.salt_len || memcmp(salt, cl->secret.salt, (size_t)salt_len) != 0 ||
        iter != cl->secret.iterations) {
        set_err(err, errlen, "the server's SCRAM salt or iteration count differ from the secret");
        rc = SCRAM_CLIENT_MISMATCH;
        goto out;
    }

    /* c= base64(gs2 header [+ channel binding data]) */
    size_t gs2len = strlen(cl->gs2_header);
    size_t cblen = gs2len + (size_t)cl->cbind_len;
    cb_raw = malloc(cblen);
    if (!cb_raw) goto oom;
    memcpy(cb_raw, cl->gs2_header, gs2len);
    if (cl->cbind_len > 0) memcpy(cb_raw + gs2len, cl->cbind, (size_t)cl->cbind_len);
    cb_b64 = b64_encode(cb_raw, cblen);
    if (!cb_b64) goto oom;
    size_t wlen = strlen(cb_b64) + strlen(nonce) + 8;
    without_proof = malloc(wlen);
    if (!without_proof) goto oom;
    snprintf(without_proof, wlen, "c=%s,r=%s", cb_b64, nonce);

    /* AuthMessage = client-first-bare "," server-first "," client-final-without-proof */
    size_t alen = strlen(cl->client_first_bare) + strlen(server_first) + strlen(without_proof) + 3;
    authmsg = malloc(alen);
    if (!authmsg) goto oom;
    snprintf(authmsg, alen, "%s,%s,%s", cl->client_first_bare, server_first, without_proof);

    /* ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage) */
    if (hmac_sha256(cl->secret.stored_key, SCRAM_KEY_LEN, authmsg, strlen(authmsg), sig) < 0 ||
        hmac_sha256(cl->secret.server_key, SCRAM_KEY_LEN, authmsg, strlen(authmsg),
                    cl->server_sig) < 0) {
        set_err(err, errlen, "SCRAM computation failed");
        goto out;
    }
    for (int i = 0; i < SCRAM_KEY_LEN; i++)
        proof[i] = cl->client_key[i] ^ sig[i];
    cl->have_server_sig = true;
    proof_b64 = b64_encode(proof, SCRAM_KEY_LEN);
    if (!proof_b64) goto oom;
    size_t olen = strlen(without_proof) + strlen(proof_b64) + 4;
    *out = malloc(olen);
    if (!*out) goto oom;
    snprintf(*out, olen, "%s,p=%s", without_proof, proof_b64);
    rc = 0;
    goto out;
oom:
    set_err(err, errlen, "out of memory");
    rc = -1;
out:
    OPENSSL_cleanse(sig, sizeof(sig));
    OPENSSL_cleanse(proof, sizeof(proof));
    if (proof_b64) OPENSSL_cleanse(proof_b64, strlen(proof_b64));
    free(proof_b64);
    free(cb_b64);
    free(cb_raw);
    free(authmsg);
    free(without_proof);
    free(server_first);
    free(buf);
    return rc;
}

int scram_client_verify(ScramClient *cl, const char *msg, size_t len, char *err, size_t errlen)
{
    uint8_t v[SCRAM_KEY_LEN];
    int rc = -1;
    if (!cl->have_server_sig) {
        set_err(err, errlen, "unexpected SCRAM server-final-message");
        return -1;
    }
    char *buf = msg_dup(msg, len);
    if (!buf) {
        set_err(err, errlen, "malformed SCRAM server-final-message");
        return -1;
    }
    char *p = buf;
    char *e = read_attr(&p, 'e');
    if (e) {
        if (err && errlen > 0) snprintf(err, errlen, "the server refused the SCRAM proof: %s", e);
        rc = 0;
        goto out;
    }
    char *vb64 = read_attr(&p, 'v');
    if (!vb64 || b64_decode(vb64, strlen(vb64), v, sizeof(v)) != SCRAM_KEY_LEN) {
        set_err(err, errlen, "malformed SCRAM server-final-message");
        goto out;
    }
    while (*p) {
        if (!skip_any_attr(&p)) {
            set_err(err, errlen, "malformed SCRAM server-final-message");
            goto out;
        }
    }
    rc = scram_ct_equal(v, cl->server_sig, SCRAM_KEY_LEN) ? 1 : 0;
    if (rc == 0) set_err(err, errlen, "the server's SCRAM signature is wrong");
out:
    OPENSSL_cleanse(v, sizeof(v));
    free(buf);
    return rc;
}

/* ---------------------------------------------------------------- md5 */

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hex[in[i] >> 4];
        out[2 * i + 1] = hex[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* "md5" + hex(md5(a || b)) into out[36]. */
static bool md5_hex2(const void *a, size_t alen, const void *b, size_t blen, char out[36])
{
    uint8_t d[16];
    unsigned int dlen = 0;
    bool ok = false;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) == 1 &&
        EVP_DigestUpdate(ctx, a, alen) == 1 && EVP_DigestUpdate(ctx, b, blen) == 1 &&
        EVP_DigestFinal_ex(ctx, d, &dlen) == 1 && dlen == 16)
        ok = true;
    EVP_MD_CTX_free(ctx);
    if (!ok) {
        /* Unusable: "md5" + 32 '-' can never equal a well-formed response. */
        memcpy(out, "md5", 3);
        memset(out + 3, '-', 32);
        out[35] = '\0';
        return false;
    }
    memcpy(out, "md5", 3);
    hex_encode(d, 16, out + 3);
    OPENSSL_cleanse(d, sizeof(d));
    return true;
}

void md5_password_hash(const char *password, const char *user, char out[36])
{
    md5_hex2(password, strlen(password), user, strlen(user), out);
}

bool md5_is_secret(const char *s)
{
    if (strncmp(s, "md5", 3) != 0 || strlen(s) != 35) return false;
    for (int i = 3; i < 35; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

bool md5_check_response(const char *stored, const char *user, const uint8_t salt[4],
                        const char *response)
{
    char hash[36];
    char expect[36];
    bool ok;

    if (!stored || !user || !response || stored[0] == '\0') return false;
    /* A SCRAM verifier cannot answer an md5 challenge (PostgreSQL refuses too). */
    if (strncmp(stored, "SCRAM-SHA-256$", 14) == 0) return false;
    if (md5_is_secret(stored))
        memcpy(hash, stored, 36);
    else
        md5_password_hash(stored, user, hash);
    ok = md5_hex2(hash + 3, 32, salt, 4, expect);
    /* Response length is not secret; compare the 35 characters in constant time. */
    ok = ok && strlen(response) == 35 && scram_ct_equal(response, expect, 35);
    OPENSSL_cleanse(hash, sizeof(hash));
    OPENSSL_cleanse(expect, sizeof(expect));
    return ok;
}

bool md5_salted_response(const char *stored, const uint8_t salt[4], char out[36])
{
    if (!stored || !md5_is_secret(stored)) return false;
    /* the stored hex digits are what a client computes from its password */
    return md5_hex2(stored + 3, 32, salt, 4, out);
}
