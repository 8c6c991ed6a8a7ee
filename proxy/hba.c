/*
 * hba.c — auth_hba_file rules in pg_hba.conf syntax, see hba.h.
 *
 * Lexing follows PostgreSQL: a line is split into whitespace-separated
 * fields; '#' outside quotes starts a comment; a field may be a comma list
 * ("a,b, c" is one field with three items); double quotes group characters
 * and make an item literal, so "all" in quotes is a database named all.  A
 * backslash at the end of a line continues it (PostgreSQL 16).
 *
 * Supported, with PostgreSQL's meaning:
 *   local      DATABASE USER METHOD
 *   host       DATABASE USER ADDRESS METHOD        (hostssl, hostnossl too)
 *   host       DATABASE USER IP-ADDRESS IP-MASK METHOD
 * DATABASE: names, all, sameuser, replication (matches no pooled connection).
 * USER: names, all.  ADDRESS: CIDR (IPv4 or IPv6), or all.
 * METHOD: trust reject md5 scram-sha-256 password cert (cert only on hostssl).
 *
 * Everything else PostgreSQL accepts but pgfunnel cannot honour (host names,
 * samehost/samenet, +group, @file, regular expressions, peer/ident/ldap/…,
 * per-rule options, include directives) is a load error naming the file and
 * line: silently ignoring part of an access rule would admit or refuse the
 * wrong clients.
 *
 * An Hba is immutable after loading; the configuration owns it, so it can be
 * matched from any thread while it is alive.  Rules are tried in order;
 * the first whose type, database, user and address all match decides.
 */
#include <openssl/crypto.h>

#include "admin.h"
#include "fileio.h"
#include "hba.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HBA_MAX_FILE (64u * 1024 * 1024)

typedef enum {
    HBA_LOCAL,
    HBA_HOST,      /* any TCP connection */
    HBA_HOSTSSL,   /* TCP with TLS */
    HBA_HOSTNOSSL, /* TCP without TLS */
} HbaConnType;

typedef enum {
    ITEM_NAME,        /* a literal database or user name */
    ITEM_ALL,         /* all */
    ITEM_SAMEUSER,    /* database named like the user */
    ITEM_REPLICATION, /* physical replication: never a pooled connection */
} HbaItemKind;

typedef struct hba_item {
    HbaItemKind kind;
    char *name; /* owned, ITEM_NAME only */
} HbaItem;

typedef struct hba_rule {
    HbaConnType type;
    HbaItem *dbs;
    int ndbs;
    HbaItem *users;
    int nusers;
    bool addr_all;    /* address "all" (or a local rule) */
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network address, already masked */
    uint8_t mask[16];
    HbaMethod method;
    int line;
} HbaRule;

struct hba {
    HbaRule *rules; /* in file order */
    int n;
    int cap;
};

/* ---------------------------------------------------------------- lexer */

typedef struct token {
    char *text; /* owned */
    bool quoted;
} Token;

/* One whitespace-separated field: a comma list of tokens. */
typedef struct field {
    Token *t;
    int n;
} Field;

typedef struct line_fields {
    Field *f;
    int n;
} LineFields;

static void fields_free(LineFields *lf)
{
    for (int i = 0; i < lf->n; i++) {
        for (int j = 0; j < lf->f[i].n; j++)
            free(lf->f[i].t[j].text);
        free(lf->f[i].t);
    }
    free(lf->f);
    lf->f = NULL;
    lf->n = 0;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v';
}

/*
 * Split one logical line [p, end) into fields.  Returns 0, or -1 with a
 * message in msg (static string).
 */
static int lex_line(const char *p, const char *end, LineFields *lf, const char **msg)
{
    lf->f = NULL;
    lf->n = 0;
    for (;;) {
        while (p < end && is_blank(*p))
            p++;
        if (p == end || *p == '#') return 0;
        /* a new field */
        Field *nf = realloc(lf->f, (size_t)(lf->n + 1) * sizeof(*nf));
        if (!nf) goto oom;
        lf->f = nf;
        Field *f = &lf->f[lf->n++];
        f->t = NULL;
        f->n = 0;
        for (;;) {
            /* one token, up to blank, '#', ',' or the end (outside quotes) */
            size_t cap = (size_t)(end - p) + 1;
            char *buf = malloc(cap);
            if (!buf) goto oom;
            size_t n = 0;
            bool quoted = false, in_quote = false;
            while (p < end) {
                char c = *p;
                if (in_quote) {
                    if (c == '"') {
                        in_quote = false;
                    } else {
                        buf[n++] = c;
                    }
                    p++;
                    continue;
                }
                if (is_blank(c) || c == '#' || c == ',') break;
                if (c == '"') {
                    in_quote = quoted = true;
                    p++;
                    continue;
                }
                buf[n++] = c;
                p++;
            }
            buf[n] = '\0';
            if (in_quote) {
                free(buf);
                *msg = "unterminated quoted string";
                return -1;
            }
            Token *nt = realloc(f->t, (size_t)(f->n + 1) * sizeof(*nt));
            if (!nt) {
                free(buf);
                goto oom;
            }
            f->t = nt;
            f->t[f->n].text = buf;
            f->t[f->n].quoted = quoted;
            f->n++;
            if (n == 0 && !quoted) {
                *msg = "empty item in a comma-separated list";
                return -1;
            }
            if (p < end && *p == ',') {
                p++;
                /* PostgreSQL allows blanks after a comma: "a, b" is one list */
                while (p < end && is_blank(*p))
                    p++;
                if (p == end || *p == '#') {
                    *msg = "comma at end of a list";
                    return -1;
                }
                continue;
            }
            break;
        }
    }
oom:
    *msg = "out of memory";
    return -1;
}

/* ---------------------------------------------------------------- parser */

static bool tok_is(const Token *t, const char *kw)
{
    return !t->quoted && strcmp(t->text, kw) == 0;
}

static void items_free(HbaItem *v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i].name);
    free(v);
}

static void rule_free(HbaRule *r)
{
    items_free(r->dbs, r->ndbs);
    items_free(r->users, r->nusers);
}

void hba_free(Hba *h)
{
    if (!h) return;
    for (int i = 0; i < h->n; i++)
        rule_free(&h->rules[i]);
    free(h->rules);
    free(h);
}

/* Database (is_db) or user list.  0, or -1 with a message in msg (buf of msglen). */
static int parse_items(const Field *f, bool is_db, HbaItem **out, int *nout, char *msg,
                       size_t msglen)
{
    HbaItem *v = calloc((size_t)f->n, sizeof(*v));
    if (!v) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    for (int i = 0; i < f->n; i++) {
        const Token *t = &f->t[i];
        if (tok_is(t, "all")) {
            v[i].kind = ITEM_ALL;
        } else if (is_db && tok_is(t, "sameuser")) {
            v[i].kind = ITEM_SAMEUSER;
        } else if (is_db && tok_is(t, "replication")) {
            v[i].kind = ITEM_REPLICATION;
        } else if (is_db && (tok_is(t, "samerole") || tok_is(t, "samegroup"))) {
            snprintf(msg, msglen, "database keyword \"%s\" is not supported", t->text);
            goto fail;
        } else if (!t->quoted && t->text[0] == '@') {
            snprintf(msg, msglen, "@file inclusion (\"%s\") is not supported", t->text);
            goto fail;
        } else if (!is_db && !t->quoted && t->text[0] == '+') {
            snprintf(msg, msglen, "group membership (\"%s\") is not supported", t->text);
            goto fail;
        } else if (!t->quoted && t->text[0] == '/') {
            snprintf(msg, msglen, "regular expressions (\"%s\") are not supported", t->text);
            goto fail;
        } else {
            v[i].kind = ITEM_NAME;
            v[i].name = strdup(t->text);
            if (!v[i].name) {
                snprintf(msg, msglen, "out of memory");
                goto fail;
            }
        }
    }
    *out = v;
    *nout = f->n;
    return 0;
fail:
    items_free(v, f->n);
    return -1;
}

/* Parse an IP literal (no prefix).  Returns the family, or 0. */
static int parse_ip(const char *s, uint8_t out[16])
{
    memset(out, 0, 16);
    if (inet_pton(AF_INET, s, out) == 1) return AF_INET;
    if (inet_pton(AF_INET6, s, out) == 1) return AF_INET6;
    return 0;
}

static void prefix_mask(int bits, int nbytes, uint8_t mask[16])
{
    memset(mask, 0, 16);
    for (int i = 0; i < nbytes; i++) {
        int b = bits - 8 * i;
        mask[i] = b >= 8 ? 0xff : b <= 0 ? 0 : (uint8_t)(0xff << (8 - b));
    }
}

static const struct {
    const char *name;
    HbaMethod m;
} methods[] = {
    {"trust", HBA_TRUST},         {"reject", HBA_REJECT},     {"md5", HBA_MD5},
    {"scram-sha-256", HBA_SCRAM}, {"password", HBA_PASSWORD}, {"cert", HBA_CERT},
};

/* PostgreSQL methods that pgfunnel cannot do (they need the OS or external services). */
static const char *const unsupported_methods[] = {"peer", "ident",  "ldap", "gss",  "sspi",
                                                  "pam",  "radius", "bsd",  "krb5", "crypt"};

static int parse_rule(const LineFields *lf, HbaRule *r, char *msg, size_t msglen)
{
    int i = 0;
    const Field *f = lf->f;
    memset(r, 0, sizeof(*r));

    if (f[0].n != 1 || f[0].t[0].quoted) {
        snprintf(msg, msglen, "invalid connection type");
        return -1;
    }
    const char *type = f[0].t[0].text;
    if (strcmp(type, "local") == 0) {
        r->type = HBA_LOCAL;
    } else if (strcmp(type, "host") == 0 || strcmp(type, "hostnogssenc") == 0) {
        /* pgfunnel never does GSSAPI encryption: hostnogssenc is every TCP connection */
        r->type = HBA_HOST;
    } else if (strcmp(type, "hostssl") == 0) {
        r->type = HBA_HOSTSSL;
    } else if (strcmp(type, "hostnossl") == 0) {
        r->type = HBA_HOSTNOSSL;
    } else if (strncmp(type, "include", 7) == 0) {
        snprintf(msg, msglen, "\"%s\" is not supported", type);
        return -1;
    } else {
        snprintf(msg, msglen, "invalid connection type \"%s\"", type);
        return -1;
    }
    i = 1;

    if (i >= lf->n) {
        snprintf(msg, msglen, "end-of-line before database specification");
        return -1;
    }
    if (parse_items(&f[i++], true, &r->dbs, &r->ndbs, msg, msglen) < 0) return -1;
    if (i >= lf->n) {
        snprintf(msg, msglen, "end-of-line before role specification");
        return -1;
    }
    if (parse_items(&f[i++], false, &r->users, &r->nusers, msg, msglen) < 0) return -1;

    if (r->type == HBA_LOCAL) {
        r->addr_all = true;
    } else {
        if (i >= lf->n) {
            snprintf(msg, msglen, "end-of-line before IP address specification");
            return -1;
        }
        const Field *af = &f[i++];
        if (af->n != 1) {
            snprintf(msg, msglen, "multiple values specified for host address");
            return -1;
        }
        const Token *at = &af->t[0];
        if (tok_is(at, "all")) {
            r->addr_all = true;
        } else if (tok_is(at, "samehost") || tok_is(at, "samenet")) {
            snprintf(msg, msglen, "address keyword \"%s\" is not supported", at->text);
            return -1;
        } else {
            char buf[INET6_ADDRSTRLEN + 8];
            if (strlen(at->text) >= sizeof(buf)) {
                snprintf(msg, msglen, "host names are not supported");
                return -1;
            }
            strcpy(buf, at->text);
            char *slash = strchr(buf, '/');
            if (slash) *slash = '\0';
            r->family = parse_ip(buf, r->addr);
            if (r->family == 0) {
                snprintf(msg, msglen, "host names are not supported (\"%s\")", at->text);
                return -1;
            }
            int nbytes = r->family == AF_INET ? 4 : 16;
            if (slash) {
                char *e = NULL;
                errno = 0;
                long bits = strtol(slash + 1, &e, 10);
                if (!isdigit((unsigned char)slash[1]) || *e || errno || bits < 0 ||
                    bits > nbytes * 8) {
                    snprintf(msg, msglen, "invalid CIDR mask in address \"%s\"", at->text);
                    return -1;
                }
                prefix_mask((int)bits, nbytes, r->mask);
            } else {
                /* the next field is the netmask */
                if (i >= lf->n) {
                    snprintf(msg, msglen, "end-of-line before netmask specification");
                    return -1;
                }
                const Field *mf = &f[i++];
                uint8_t m[16];
                if (mf->n != 1 || parse_ip(mf->t[0].text, m) != r->family) {
                    snprintf(msg, msglen, "invalid IP mask \"%s\"", mf->t[0].text);
                    return -1;
                }
                memcpy(r->mask, m, 16);
            }
            for (int b = 0; b < 16; b++)
                r->addr[b] &= r->mask[b];
        }
    }

    if (i >= lf->n) {
        snprintf(msg, msglen, "end-of-line before authentication method");
        return -1;
    }
    const Field *mf = &f[i++];
    if (mf->n != 1) {
        snprintf(msg, msglen, "multiple values specified for authentication type");
        return -1;
    }
    const char *m = mf->t[0].text;
    bool found = false;
    for (size_t k = 0; k < sizeof(methods) / sizeof(methods[0]); k++) {
        if (strcmp(m, methods[k].name) == 0) {
            r->method = methods[k].m;
            found = true;
        }
    }
    if (!found) {
        for (size_t k = 0; k < sizeof(unsupported_methods) / sizeof(unsupported_methods[0]); k++) {
            if (strcmp(m, unsupported_methods[k]) == 0) {
                snprintf(msg, msglen, "authentication method \"%s\" is not supported", m);
                return -1;
            }
        }
        snprintf(msg, msglen, "invalid authentication method \"%s\"", m);
        return -1;
    }
    if (r->method == HBA_CERT && r->type != HBA_HOSTSSL) {
        snprintf(msg, msglen, "cert authentication is only supported on hostssl connections");
        return -1;
    }
    if (i < lf->n) {
        /* clientcert=, map=, …: ignoring one would change who gets in */
        snprintf(msg, msglen, "authentication option \"%s\" is not supported", f[i].t[0].text);
        return -1;
    }
    return 0;
}

Hba *hba_parse(const char *name, const char *text, size_t len, char *err, size_t errlen)
{
    Hba *h = calloc(1, sizeof(*h));
    char *logical = NULL;
    if (!h) {
        file_error(err, errlen, name, 0, "out of memory");
        return NULL;
    }
    const char *p = text;
    const char *end = text + len;
    int lineno = 0;
    logical = malloc(len + 1);
    if (!logical) {
        file_error(err, errlen, name, 0, "out of memory");
        goto fail;
    }
    while (p < end) {
        /* Join backslash-continued lines; errors are reported at the first line. */
        int first_line = lineno + 1;
        size_t n = 0;
        for (;;) {
            const char *eol = memchr(p, '\n', (size_t)(end - p));
            if (!eol) eol = end;
            lineno++;
            const char *le = eol;
            while (le > p && (le[-1] == '\r'))
                le--;
            bool cont = le > p && le[-1] == '\\';
            if (cont) le--;
            memcpy(logical + n, p, (size_t)(le - p));
            n += (size_t)(le - p);
            p = eol < end ? eol + 1 : end;
            if (!cont || p >= end) break;
            logical[n++] = ' ';
        }
        if (memchr(logical, '\0', n)) {
            file_error(err, errlen, name, first_line, "NUL byte in line");
            goto fail;
        }
        LineFields lf;
        const char *lmsg = NULL;
        if (lex_line(logical, logical + n, &lf, &lmsg) < 0) {
            fields_free(&lf);
            file_error(err, errlen, name, first_line, "%s", lmsg);
            goto fail;
        }
        if (lf.n == 0) continue;
        if (h->n == h->cap) {
            int cap = h->cap ? h->cap * 2 : 16;
            HbaRule *nr = realloc(h->rules, (size_t)cap * sizeof(*nr));
            if (!nr) {
                fields_free(&lf);
                file_error(err, errlen, name, first_line, "out of memory");
                goto fail;
            }
            h->rules = nr;
            h->cap = cap;
        }
        char msg[256];
        HbaRule r;
        int rc = parse_rule(&lf, &r, msg, sizeof(msg));
        fields_free(&lf);
        if (rc < 0) {
            rule_free(&r);
            file_error(err, errlen, name, first_line, "%s", msg);
            goto fail;
        }
        r.line = first_line;
        h->rules[h->n++] = r;
    }
    free(logical);
    return h;
fail:
    free(logical);
    hba_free(h);
    return NULL;
}

Hba *hba_load(const char *path, char *err, size_t errlen)
{
    char *buf;
    size_t len;
    if (file_read_all(path, HBA_MAX_FILE, &buf, &len, err, errlen) < 0) return NULL;
    Hba *h = hba_parse(path, buf, len, err, errlen);
    OPENSSL_cleanse(buf, len);
    free(buf);
    return h;
}

/* ---------------------------------------------------------------- match */

/*
 * Does a rule's list match value?  For the database list, the console's two
 * names are one database: a rule naming either applies to a client of
 * either, or `psql -d pgfunnel` would walk past a rule about pgbouncer.
 */
static bool items_match(const HbaItem *v, int n, const char *value, const char *user, bool dbs)
{
    bool console = dbs && admin_is_console_db(value);
    for (int i = 0; i < n; i++) {
        switch (v[i].kind) {
        case ITEM_ALL:
            return true;
        case ITEM_SAMEUSER:
            if (strcmp(value, user) == 0) return true;
            break;
        case ITEM_REPLICATION:
            break;
        case ITEM_NAME:
            if (strcmp(value, v[i].name) == 0) return true;
            if (console && admin_is_console_db(v[i].name)) return true;
            break;
        }
    }
    return false;
}

/*
 * The client address as (family, 16 bytes).  An IPv4-mapped IPv6 address
 * (::ffff:a.b.c.d, from a dual-stack listener) is turned back into IPv4 so
 * that IPv4 rules apply to it.  Returns 0 for anything that is not IP.
 */
static int client_addr(const struct sockaddr *sa, uint8_t out[16])
{
    memset(out, 0, 16);
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        memcpy(out, &in->sin_addr, 4);
        return AF_INET;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            memcpy(out, in6->sin6_addr.s6_addr + 12, 4);
            return AF_INET;
        }
        memcpy(out, in6->sin6_addr.s6_addr, 16);
        return AF_INET6;
    }
    return 0;
}

HbaMethod hba_match(const Hba *h, const struct sockaddr *addr, bool tls, const char *database,
                    const char *user)
{
    uint8_t ca[16];
    int family = 0;
    bool local = addr == NULL || addr->sa_family == AF_UNIX;

    if (!h || !database || !user) return HBA_REJECT;
    if (!local) {
        family = client_addr(addr, ca);
        if (family == 0) return HBA_REJECT;
    }
    for (int i = 0; i < h->n; i++) {
        const HbaRule *r = &h->rules[i];
        if (local != (r->type == HBA_LOCAL)) continue;
        if (r->type == HBA_HOSTSSL && !tls) continue;
        if (r->type == HBA_HOSTNOSSL && tls) continue;
        if (!items_match(r->dbs, r->ndbs, database, user, true)) continue;
        if (!items_match(r->users, r->nusers, user, user, false)) continue;
        if (!local && !r->addr_all) {
            if (r->family != family) continue;
            int nbytes = family == AF_INET ? 4 : 16;
            bool ok = true;
            for (int b = 0; b < nbytes; b++)
                if ((ca[b] & r->mask[b]) != r->addr[b]) ok = false;
            if (!ok) continue;
        }
        return r->method;
    }
    return HBA_REJECT;
}

const char *hba_method_name(HbaMethod m)
{
    switch (m) {
    case HBA_REJECT:
        return "reject";
    case HBA_TRUST:
        return "trust";
    case HBA_MD5:
        return "md5";
    case HBA_SCRAM:
        return "scram-sha-256";
    case HBA_PASSWORD:
        return "password";
    case HBA_CERT:
        return "cert";
    }
    return "unknown";
}
