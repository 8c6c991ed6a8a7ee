/*
 * userlist.c — PgBouncer's auth_file (userlist.txt), see userlist.h.
 *
 * Format, one entry per line:
 *
 *     "user name" "secret"        ; comment
 *
 * Both fields are double-quoted; a quote inside a field is written "".  The
 * secret is a plaintext password, an "md5…" hash or a SCRAM-SHA-256 secret.
 * Lines whose first non-blank character is ';' or '#' are comments.  After
 * the secret PgBouncer ignores the rest of the line; files written by old
 * tools carry more quoted fields there, so further quoted fields and a
 * trailing comment are accepted (and ignored), while anything else is
 * reported as garbage: it is almost always a typo that would otherwise
 * silently become part of nobody's password.  The same user twice: the last
 * line wins, as when PgBouncer re-adds a user.
 *
 * Lookup is a binary search over an array sorted by user name (byte order,
 * case-sensitive like PostgreSQL role names), so thousands of users cost
 * O(log n) per login and one allocation per entry.  A Userlist is immutable
 * after loading; the configuration owns it and frees it on reload, so it
 * may be read from any thread while it is alive.
 */
#include "fileio.h"
#include "userlist.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

/* PgBouncer's limits (MAX_USERNAME, MAX_PASSWORD), including the NUL. */
#define USERLIST_MAX_USER   128
#define USERLIST_MAX_SECRET 2048
/* auth files are small; refuse something that is clearly not one */
#define USERLIST_MAX_FILE (256u * 1024 * 1024)

typedef struct userlist_entry {
    char *user;   /* owned */
    char *secret; /* owned; wiped on free */
    int order;    /* line order, to keep the last of duplicates */
} UserlistEntry;

struct userlist {
    UserlistEntry *v; /* sorted by user, unique */
    int n;
    int cap;
};

static void entry_free(UserlistEntry *e)
{
    free(e->user);
    if (e->secret) {
        OPENSSL_cleanse(e->secret, strlen(e->secret));
        free(e->secret);
    }
}

void userlist_free(Userlist *ul)
{
    if (!ul) return;
    for (int i = 0; i < ul->n; i++)
        entry_free(&ul->v[i]);
    free(ul->v);
    free(ul);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * Parse a quoted field starting at *p (which is at the opening quote) and
 * ending before eol.  On success returns a malloc'd unescaped copy and moves
 * *p past the closing quote; NULL with *unterminated set when there is no
 * closing quote, or NULL on allocation failure.
 */
static char *read_quoted(const char **p, const char *eol, bool *unterminated)
{
    const char *s = *p + 1;
    size_t n = 0;
    *unterminated = false;
    /* first pass: find the end and the unescaped length */
    const char *q = s;
    for (;;) {
        if (q >= eol) {
            *unterminated = true;
            return NULL;
        }
        if (*q == '"') {
            if (q + 1 < eol && q[1] == '"') {
                q += 2;
                n++;
                continue;
            }
            break;
        }
        q++;
        n++;
    }
    char *out = malloc(n + 1);
    if (!out) return NULL;
    size_t i = 0;
    for (const char *r = s; r < q; r++) {
        out[i++] = *r;
        if (*r == '"') r++; /* the second quote of "" */
    }
    out[i] = '\0';
    *p = q + 1;
    return out;
}

static const char *skip_blanks(const char *p, const char *eol)
{
    while (p < eol && is_blank(*p))
        p++;
    return p;
}

static int entry_cmp(const void *a, const void *b)
{
    const UserlistEntry *x = a, *y = b;
    int c = strcmp(x->user, y->user);
    if (c != 0) return c;
    return (x->order > y->order) - (x->order < y->order);
}

static int add_entry(Userlist *ul, char *user, char *secret)
{
    if (ul->n == ul->cap) {
        int cap = ul->cap ? ul->cap * 2 : 64;
        UserlistEntry *v = realloc(ul->v, (size_t)cap * sizeof(*v));
        if (!v) return -1;
        ul->v = v;
        ul->cap = cap;
    }
    ul->v[ul->n].user = user;
    ul->v[ul->n].secret = secret;
    ul->v[ul->n].order = ul->n;
    ul->n++;
    return 0;
}

/* Sort, then keep only the last occurrence of each user. */
static void sort_dedup(Userlist *ul)
{
    if (ul->n < 2) return;
    qsort(ul->v, (size_t)ul->n, sizeof(ul->v[0]), entry_cmp);
    int w = 0;
    for (int i = 0; i < ul->n; i++) {
        if (i + 1 < ul->n && strcmp(ul->v[i].user, ul->v[i + 1].user) == 0) {
            entry_free(&ul->v[i]); /* a later line has the same user */
            continue;
        }
        ul->v[w++] = ul->v[i];
    }
    ul->n = w;
}

/* Parse one line [p, eol).  0 ok (entry added or nothing), -1 with err set. */
static int parse_line(Userlist *ul, const char *name, int lineno, const char *p, const char *eol,
                      char *err, size_t errlen)
{
    char *user = NULL, *secret = NULL;
    bool unterminated;

    p = skip_blanks(p, eol);
    if (p == eol || *p == ';' || *p == '#') return 0;
    if (*p != '"') {
        file_error(err, errlen, name, lineno, "user name must be in double quotes");
        return -1;
    }
    user = read_quoted(&p, eol, &unterminated);
    if (!user) goto quote_fail;
    if (user[0] == '\0') {
        file_error(err, errlen, name, lineno, "empty user name");
        goto fail;
    }
    if (strlen(user) >= USERLIST_MAX_USER) {
        file_error(err, errlen, name, lineno, "user name too long");
        goto fail;
    }
    p = skip_blanks(p, eol);
    if (p == eol || *p == ';' || *p == '#') {
        file_error(err, errlen, name, lineno, "missing secret for user \"%s\"", user);
        goto fail;
    }
    if (*p != '"') {
        file_error(err, errlen, name, lineno, "secret must be in double quotes");
        goto fail;
    }
    secret = read_quoted(&p, eol, &unterminated);
    if (!secret) goto quote_fail;
    if (strlen(secret) >= USERLIST_MAX_SECRET) {
        file_error(err, errlen, name, lineno, "secret too long");
        goto fail;
    }
    /* The rest: further quoted fields (ignored, as PgBouncer does) or a comment. */
    for (;;) {
        const char *q = skip_blanks(p, eol);
        if (q == eol || ((*q == ';' || *q == '#') && q > p)) break;
        if (*q != '"' || q == p) {
            file_error(err, errlen, name, lineno, "garbage after secret");
            goto fail;
        }
        char *extra = read_quoted(&q, eol, &unterminated);
        if (!extra) goto quote_fail;
        OPENSSL_cleanse(extra, strlen(extra));
        free(extra);
        p = q;
    }
    if (add_entry(ul, user, secret) < 0) {
        file_error(err, errlen, name, lineno, "out of memory");
        goto fail;
    }
    return 0;

quote_fail:
    if (unterminated)
        file_error(err, errlen, name, lineno, "unterminated quoted string");
    else
        file_error(err, errlen, name, lineno, "out of memory");
fail:
    free(user);
    if (secret) {
        OPENSSL_cleanse(secret, strlen(secret));
        free(secret);
    }
    return -1;
}

Userlist *userlist_parse(const char *name, const char *text, size_t len, char *err, size_t errlen)
{
    Userlist *ul = calloc(1, sizeof(*ul));
    if (!ul) {
        file_error(err, errlen, name, 0, "out of memory");
        return NULL;
    }
    const char *p = text;
    const char *end = text + len;
    int lineno = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol) eol = end;
        lineno++;
        if (memchr(p, '\0', (size_t)(eol - p))) {
            file_error(err, errlen, name, lineno, "NUL byte in line");
            goto fail;
        }
        if (parse_line(ul, name, lineno, p, eol, err, errlen) < 0) goto fail;
        p = eol + 1;
    }
    sort_dedup(ul);
    return ul;
fail:
    userlist_free(ul);
    return NULL;
}

Userlist *userlist_load(const char *path, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    if (file_read_all(path, USERLIST_MAX_FILE, &buf, &len, err, errlen) < 0) return NULL;
    Userlist *ul = userlist_parse(path, buf, len, err, errlen);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return ul;
}

const char *userlist_get(const Userlist *ul, const char *user)
{
    if (!ul || !user) return NULL;
    int lo = 0, hi = ul->n - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(user, ul->v[mid].user);
        if (c == 0) return ul->v[mid].secret;
        if (c < 0)
            hi = mid - 1;
        else
            lo = mid + 1;
    }
    return NULL;
}

int userlist_count(const Userlist *ul)
{
    return ul ? ul->n : 0;
}

const char *userlist_at(const Userlist *ul, int i, const char **secret)
{
    if (!ul || i < 0 || i >= ul->n) return NULL;
    if (secret) *secret = ul->v[i].secret;
    return ul->v[i].user;
}
