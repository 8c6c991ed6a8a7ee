/*
 * config_db.c — the [databases] and [users] sections of the configuration.
 *
 * Each line of those sections is `name = key=value key='quoted value' ...`,
 * the connection-string syntax of PgBouncer (itself a subset of libpq's
 * conninfo): keys are words, values run to the next blank unless they are
 * single-quoted, and inside quotes '' stands for one quote.  The keys
 * accepted for each section are listed in one table per section, so adding a
 * per-database setting is one line in db_keys[] plus a field in DbConf.
 *
 * Unlike unknown [pgbouncer] options (which only warn, so that a real
 * pgbouncer.ini loads), an unknown key here is an error: a misspelt
 * `pool_sise=50` would otherwise silently route traffic with the wrong pool
 * size, and there is no PgBouncer-only per-database key that is harmless to
 * drop.
 *
 * A name defined twice keeps its first position in the list but takes the
 * last definition, like PgBouncer; a warning says so, because a duplicate is
 * usually an accident of %include.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config_internal.h"

/* How one connection-string key is stored. */
typedef enum {
    KEY_STRING, /* char *, strdup'ed */
    KEY_INT,    /* int, checked against min..max */
    KEY_MODE,   /* int PoolMode */
    KEY_TIME,   /* usec_t, seconds in the file */
    KEY_TSA,    /* int TargetSessionAttrs */
    KEY_LB,     /* int LoadBalanceHosts */
    KEY_PORTS,  /* a port or a comma list of ports: int `port` (the first) + char *port_list */
} KeyType;

typedef struct conn_key {
    const char *name;
    KeyType type;
    size_t offset; /* into DbConf or UserConf */
    long min, max;
} ConnKey;

#define DB_KEY(n, t, lo, hi)                                                                       \
    {                                                                                              \
#n, t, offsetof(DbConf, n), lo, hi                                                         \
    }
#define USER_KEY(n, t, lo, hi)                                                                     \
    {                                                                                              \
#n, t, offsetof(UserConf, n), lo, hi                                                       \
    }

/* Upper bound for per-pool connection counts; far above any sane setting. */
#define POOL_MAX 100000

static const ConnKey db_keys[] = {
    DB_KEY(dbname, KEY_STRING, 0, 0),
    DB_KEY(host, KEY_STRING, 0, 0),
    DB_KEY(port, KEY_PORTS, 1, 65535),
    DB_KEY(user, KEY_STRING, 0, 0),
    DB_KEY(password, KEY_STRING, 0, 0),
    DB_KEY(auth_user, KEY_STRING, 0, 0),
    DB_KEY(auth_query, KEY_STRING, 0, 0),
    DB_KEY(auth_dbname, KEY_STRING, 0, 0),
    DB_KEY(pool_size, KEY_INT, 0, POOL_MAX),
    DB_KEY(min_pool_size, KEY_INT, 0, POOL_MAX),
    DB_KEY(reserve_pool_size, KEY_INT, 0, POOL_MAX),
    /* PgBouncer's older spelling of reserve_pool_size */
    {"reserve_pool", KEY_INT, offsetof(DbConf, reserve_pool_size), 0, POOL_MAX},
    DB_KEY(max_db_connections, KEY_INT, 0, INT_MAX),
    DB_KEY(max_db_client_connections, KEY_INT, 0, INT_MAX),
    DB_KEY(pool_mode, KEY_MODE, 0, 0),
    DB_KEY(server_lifetime, KEY_TIME, 0, 0),
    DB_KEY(connect_query, KEY_STRING, 0, 0),
    DB_KEY(client_encoding, KEY_STRING, 0, 0),
    DB_KEY(datestyle, KEY_STRING, 0, 0),
    DB_KEY(timezone, KEY_STRING, 0, 0),
    DB_KEY(application_name, KEY_STRING, 0, 0),
    DB_KEY(target_session_attrs, KEY_TSA, 0, 0),
    DB_KEY(load_balance_hosts, KEY_LB, 0, 0),
};

static const ConnKey user_keys[] = {
    USER_KEY(pool_mode, KEY_MODE, 0, 0),
    USER_KEY(pool_size, KEY_INT, 0, POOL_MAX),
    USER_KEY(reserve_pool_size, KEY_INT, 0, POOL_MAX),
    {"reserve_pool", KEY_INT, offsetof(UserConf, reserve_pool_size), 0, POOL_MAX},
    USER_KEY(max_user_connections, KEY_INT, 0, INT_MAX),
    USER_KEY(max_user_client_connections, KEY_INT, 0, INT_MAX),
    USER_KEY(query_timeout, KEY_TIME, 0, 0),
    USER_KEY(idle_transaction_timeout, KEY_TIME, 0, 0),
    USER_KEY(client_idle_timeout, KEY_TIME, 0, 0),
};

#define N_KEYS(a) (sizeof(a) / sizeof((a)[0]))

bool config_parse_long(const char *s, long *out)
{
    char *end;
    long v;

    if (*s == '\0') return false;
    errno = 0;
    v = strtol(s, &end, 10);
    /* strtol() would skip leading blanks; a number must be only digits */
    if (errno != 0 || *end != '\0' || s[0] == ' ' || s[0] == '\t') return false;
    *out = v;
    return true;
}

bool config_parse_seconds(const char *s, usec_t *out)
{
    /* Parsed by hand rather than with strtod(): exact for fractions such as
     * 0.1, independent of LC_NUMERIC, and without exponents or "inf". */
    const usec_t max_sec = (usec_t)INT_MAX;
    usec_t sec = 0, frac = 0, scale = USEC_PER_SEC;
    const char *p = s;
    bool digits = false;

    while (*p >= '0' && *p <= '9') {
        sec = sec * 10 + (*p - '0');
        if (sec > max_sec) return false;
        digits = true;
        p++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            /* digits past the microsecond are dropped */
            if (scale > 1) {
                scale /= 10;
                frac += (*p - '0') * scale;
            }
            digits = true;
            p++;
        }
    }
    if (!digits || *p != '\0') return false;
    *out = sec * USEC_PER_SEC + frac;
    return true;
}

int config_parse_pool_mode(const char *s)
{
    if (strcasecmp(s, "session") == 0) return POOL_MODE_SESSION;
    if (strcasecmp(s, "transaction") == 0) return POOL_MODE_TRANSACTION;
    if (strcasecmp(s, "statement") == 0) return POOL_MODE_STATEMENT;
    return -1;
}

int config_add_warning(Config *cfg, const char *fmt, ...)
{
    va_list ap;
    char *msg;
    char **grown;
    int n;

    va_start(ap, fmt);
    n = vasprintf(&msg, fmt, ap);
    va_end(ap);
    if (n < 0) return -1;
    grown = realloc(cfg->warnings, sizeof(*grown) * (size_t)(cfg->nwarnings + 1));
    if (grown == NULL) {
        free(msg);
        return -1;
    }
    cfg->warnings = grown;
    cfg->warnings[cfg->nwarnings++] = msg;
    return 0;
}

/*
 * Read the next `key=value` pair from *pp.  Returns 1 with malloc'ed *key and
 * *val, 0 at the end of the string, -1 with a message on a syntax error.
 */
static int conninfo_next(const char **pp, char **key, char **val, char *msg, size_t msglen)
{
    const char *p = *pp, *start;
    char *v;
    size_t n = 0;

    while (*p == ' ' || *p == '\t')
        p++;
    if (*p == '\0') return 0;

    start = p;
    while (*p != '\0' && *p != '=' && *p != ' ' && *p != '\t')
        p++;
    if (p == start) {
        snprintf(msg, msglen, "missing parameter name before \"=\"");
        return -1;
    }
    *key = strndup(start, (size_t)(p - start));
    if (*key == NULL) goto oom;
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p != '=') {
        snprintf(msg, msglen, "missing \"=\" after \"%s\"", *key);
        goto fail_key;
    }
    p++;
    while (*p == ' ' || *p == '\t')
        p++;

    /* The value is never longer than the rest of the line. */
    v = malloc(strlen(p) + 1);
    if (v == NULL) goto oom_key;
    if (*p == '\'') {
        p++;
        for (;;) {
            if (*p == '\0') {
                snprintf(msg, msglen, "unterminated quoted value for \"%s\"", *key);
                explicit_bzero(v, n);
                free(v);
                goto fail_key;
            }
            if (*p == '\'') {
                if (p[1] != '\'') break;
                p++; /* '' is one literal quote */
            }
            v[n++] = *p++;
        }
        p++; /* the closing quote */
        if (*p != '\0' && *p != ' ' && *p != '\t') {
            snprintf(msg, msglen, "unexpected text after the quoted value of \"%s\"", *key);
            explicit_bzero(v, n);
            free(v);
            goto fail_key;
        }
    } else {
        while (*p != '\0' && *p != ' ' && *p != '\t')
            v[n++] = *p++;
    }
    v[n] = '\0';
    *val = v;
    *pp = p;
    return 1;

oom_key:
    free(*key);
oom:
    snprintf(msg, msglen, "out of memory");
    return -1;
fail_key:
    free(*key);
    *key = NULL;
    return -1;
}

/* Free a string that may hold a password, wiping it first. */
static void free_wiped(char *s)
{
    if (s == NULL) return;
    explicit_bzero(s, strlen(s));
    free(s);
}

/*
 * port=5432 or port=5432,5433,...: each a number 1..65535.  `port` keeps the
 * first; a list is kept whole in port_list and checked against the host list
 * once the entry is complete (db_hosts_check).
 */
static int db_ports_set(DbConf *db, const char *val, const char *name, char *msg, size_t msglen)
{
    char *copy = NULL;
    int first = 0;
    const char *p = val;
    for (;;) {
        size_t n = strcspn(p, ",");
        char num[16];
        long v;
        if (n == 0 || n >= sizeof(num)) goto bad;
        memcpy(num, p, n);
        num[n] = 0;
        if (!config_parse_long(num, &v) || v < 1 || v > 65535) goto bad;
        if (!first) first = (int)v;
        p += n;
        if (*p == '\0') break;
        p++; /* the comma: another port must follow */
    }
    if (strchr(val, ',') && (copy = strdup(val)) == NULL) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    free(db->port_list);
    db->port_list = copy;
    db->port = first;
    return 0;
bad:
    snprintf(msg, msglen,
             "invalid value \"%s\" for \"port\" in database \"%s\": expected a port 1..65535 or "
             "a comma-separated list of them, one per host",
             val, name);
    return -1;
}

/* How many elements a comma list has; 0 when one of them is empty. */
static int list_count_nonempty(const char *s)
{
    int n = 0;
    for (;;) {
        size_t len = strcspn(s, ",");
        if (len == 0) return 0;
        n++;
        s += len;
        if (*s == '\0') return n;
        s++;
    }
}

/* A host list and a port list must match, and neither may have an empty element. */
static int db_hosts_check(const DbConf *db, char *msg, size_t msglen)
{
    int hosts = 1, ports;
    if (db->host && db->host[0]) {
        hosts = list_count_nonempty(db->host);
        if (hosts == 0) {
            snprintf(msg, msglen, "empty host in the host list \"%s\" of database \"%s\"", db->host,
                     db->name);
            return -1;
        }
    }
    if (!db->port_list) return 0;
    ports = list_count_nonempty(db->port_list);
    if (ports != hosts) {
        snprintf(msg, msglen,
                 "database \"%s\" lists %d host%s but %d ports: give one port for all hosts or "
                 "one per host",
                 db->name, hosts, hosts == 1 ? "" : "s", ports);
        return -1;
    }
    return 0;
}

/* Store one value into the entry at `base` as described by k. */
static int conn_key_set(void *base, const ConnKey *k, const char *val, const char *what,
                        const char *name, char *msg, size_t msglen)
{
    char *field = (char *)base + k->offset;
    long n;
    int mode;
    usec_t t;
    char *copy;

    switch (k->type) {
    case KEY_STRING:
        copy = strdup(val);
        if (copy == NULL) {
            snprintf(msg, msglen, "out of memory");
            return -1;
        }
        free_wiped(*(char **)(void *)field); /* password= given twice */
        *(char **)(void *)field = copy;
        return 0;
    case KEY_INT:
        if (!config_parse_long(val, &n) || n < k->min || n > k->max) {
            snprintf(msg, msglen,
                     "invalid value \"%s\" for \"%s\" in %s \"%s\": expected an integer %ld..%ld",
                     val, k->name, what, name, k->min, k->max);
            return -1;
        }
        *(int *)(void *)field = (int)n;
        return 0;
    case KEY_MODE:
        mode = config_parse_pool_mode(val);
        if (mode < 0) {
            snprintf(msg, msglen,
                     "invalid value \"%s\" for \"%s\" in %s \"%s\": expected session, "
                     "transaction or statement",
                     val, k->name, what, name);
            return -1;
        }
        *(int *)(void *)field = mode;
        return 0;
    case KEY_TSA:
    case KEY_LB: {
        static const char *const tsa[] = {"any",     "read-write", "read-only",
                                          "primary", "standby",    "prefer-standby"};
        static const char *const lb[] = {"disable", "round-robin"};
        const char *const *names = k->type == KEY_TSA ? tsa : lb;
        int n_names = k->type == KEY_TSA ? 6 : 2;
        for (int i = 0; i < n_names; i++) {
            if (strcasecmp(val, names[i]) == 0) {
                *(int *)(void *)field = i;
                return 0;
            }
        }
        snprintf(msg, msglen, "invalid value \"%s\" for \"%s\" in %s \"%s\": expected %s", val,
                 k->name, what, name,
                 k->type == KEY_TSA
                     ? "any, read-write, read-only, primary, standby or prefer-standby"
                     : "disable or round-robin");
        return -1;
    }
    case KEY_PORTS:
        return db_ports_set((DbConf *)base, val, name, msg, msglen);
    case KEY_TIME:
        if (!config_parse_seconds(val, &t)) {
            snprintf(msg, msglen,
                     "invalid value \"%s\" for \"%s\" in %s \"%s\": expected seconds, e.g. 30 "
                     "or 0.5",
                     val, k->name, what, name);
            return -1;
        }
        *(usec_t *)(void *)field = t;
        return 0;
    }
    return -1;
}

/* Apply every key=value of `value` to the entry at base. */
static int conninfo_apply(void *base, const ConnKey *keys, size_t nkeys, const char *value,
                          const char *what, const char *name, char *msg, size_t msglen)
{
    const char *p = value;
    char *key = NULL, *val = NULL;
    char why[256];
    int rc;

    while ((rc = conninfo_next(&p, &key, &val, why, sizeof(why))) > 0) {
        const ConnKey *k = NULL;

        for (size_t i = 0; i < nkeys; i++) {
            if (strcasecmp(keys[i].name, key) == 0) {
                k = &keys[i];
                break;
            }
        }
        if (k == NULL) {
            snprintf(msg, msglen, "unknown parameter \"%s\" in %s \"%s\"", key, what, name);
            rc = -1;
        } else {
            rc = conn_key_set(base, k, val, what, name, msg, msglen);
        }
        free(key);
        free_wiped(val);
        if (rc < 0) return -1;
    }
    if (rc < 0) {
        snprintf(msg, msglen, "%s in %s \"%s\"", why, what, name);
        return -1;
    }
    return 0;
}

static void db_conf_free(DbConf *db)
{
    free(db->name);
    free(db->dbname);
    free(db->host);
    free(db->port_list);
    free(db->user);
    free_wiped(db->password);
    free(db->auth_user);
    free(db->auth_query);
    free(db->auth_dbname);
    free(db->connect_query);
    free(db->client_encoding);
    free(db->datestyle);
    free(db->timezone);
    free(db->application_name);
    free(db);
}

static void user_conf_free(UserConf *u)
{
    free(u->name);
    free(u);
}

/* Index an entry by its name (the entry's own string is the key). */
static int config_index_put(Hmap *index, const char *name, void *entry, char *msg, size_t msglen)
{
    if (hmap_put(index, name, entry) == 0) return 0;
    snprintf(msg, msglen, "out of memory");
    return -1;
}

int config_db_add(Config *cfg, const char *name, const char *value, const char *file, int line,
                  char *msg, size_t msglen)
{
    DbConf *db, **pos;

    if (*name == '\0') {
        snprintf(msg, msglen, "empty database name");
        return -1;
    }
    db = calloc(1, sizeof(*db));
    if (db == NULL || (db->name = strdup(name)) == NULL) {
        free(db);
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    db->pool_size = CONF_UNSET;
    db->min_pool_size = CONF_UNSET;
    db->reserve_pool_size = CONF_UNSET;
    db->max_db_connections = CONF_UNSET;
    db->max_db_client_connections = CONF_UNSET;
    db->pool_mode = CONF_UNSET;
    db->server_lifetime = CONF_UNSET;
    db->target_session_attrs = CONF_UNSET;
    db->load_balance_hosts = CONF_UNSET;
    db->file = file;
    db->line = line;
    if (conninfo_apply(db, db_keys, N_KEYS(db_keys), value, "database", name, msg, msglen) < 0 ||
        db_hosts_check(db, msg, msglen) < 0) {
        db_conf_free(db);
        return -1;
    }

    for (pos = &cfg->databases; *pos != NULL; pos = &(*pos)->next) {
        if (strcmp((*pos)->name, name) == 0) {
            DbConf *old = *pos;

            if (config_add_warning(cfg,
                                   "%s:%d: database \"%s\" redefined (previous definition at "
                                   "%s:%d); the last definition wins",
                                   file, line, name, old->file, old->line) < 0) {
                db_conf_free(db);
                snprintf(msg, msglen, "out of memory");
                return -1;
            }
            db->next = old->next;
            *pos = db;
            /* re-key before the old entry (and its name, the old key) is freed */
            int rc = config_index_put(&cfg->db_index, db->name, db, msg, msglen);
            db_conf_free(old);
            return rc;
        }
    }
    *pos = db;
    return config_index_put(&cfg->db_index, db->name, db, msg, msglen);
}

int config_user_add(Config *cfg, const char *name, const char *value, const char *file, int line,
                    char *msg, size_t msglen)
{
    UserConf *u, **pos;

    if (*name == '\0') {
        snprintf(msg, msglen, "empty user name");
        return -1;
    }
    u = calloc(1, sizeof(*u));
    if (u == NULL || (u->name = strdup(name)) == NULL) {
        free(u);
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    u->pool_mode = CONF_UNSET;
    u->pool_size = CONF_UNSET;
    u->reserve_pool_size = CONF_UNSET;
    u->max_user_connections = CONF_UNSET;
    u->max_user_client_connections = CONF_UNSET;
    u->query_timeout = u->idle_transaction_timeout = u->client_idle_timeout = CONF_UNSET;
    u->file = file;
    u->line = line;
    if (conninfo_apply(u, user_keys, N_KEYS(user_keys), value, "user", name, msg, msglen) < 0) {
        user_conf_free(u);
        return -1;
    }
    if (u->query_timeout != CONF_UNSET || u->idle_transaction_timeout != CONF_UNSET ||
        u->client_idle_timeout != CONF_UNSET)
        cfg->user_timeouts = true;

    for (pos = &cfg->users; *pos != NULL; pos = &(*pos)->next) {
        if (strcmp((*pos)->name, name) == 0) {
            UserConf *old = *pos;

            if (config_add_warning(cfg,
                                   "%s:%d: user \"%s\" redefined (previous definition at "
                                   "%s:%d); the last definition wins",
                                   file, line, name, old->file, old->line) < 0) {
                user_conf_free(u);
                snprintf(msg, msglen, "out of memory");
                return -1;
            }
            u->next = old->next;
            *pos = u;
            /* re-key before the old entry (and its name, the old key) is freed */
            int rc = config_index_put(&cfg->user_index, u->name, u, msg, msglen);
            user_conf_free(old);
            return rc;
        }
    }
    *pos = u;
    return config_index_put(&cfg->user_index, u->name, u, msg, msglen);
}

/* A copy of an entry of a key table: strings duplicated, the rest as is. */
static void *entry_clone(const void *src, size_t size, const ConnKey *keys, size_t nkeys,
                         size_t name_off)
{
    char *e = malloc(size);
    if (!e) return NULL;
    memcpy(e, src, size);
    char **name = (char **)(e + name_off);
    *name = NULL;
    for (size_t i = 0; i < nkeys; i++)
        if (keys[i].type == KEY_STRING) *(char **)(e + keys[i].offset) = NULL;
    bool ok = (*name = strdup(*(char *const *)((const char *)src + name_off))) != NULL;
    for (size_t i = 0; ok && i < nkeys; i++) {
        if (keys[i].type != KEY_STRING) continue;
        const char *v = *(char *const *)((const char *)src + keys[i].offset);
        if (v && !(*(char **)(e + keys[i].offset) = strdup(v))) ok = false;
    }
    if (ok) return e;
    free(*name);
    for (size_t i = 0; i < nkeys; i++)
        if (keys[i].type == KEY_STRING) free(*(char **)(e + keys[i].offset));
    free(e);
    return NULL;
}

/* The copy's file name for an entry of src (same index in files[]). */
static const char *clone_file(const Config *dst, const Config *src, const char *file)
{
    for (int i = 0; i < src->nfiles && i < dst->nfiles; i++)
        if (src->files[i] == file) return dst->files[i];
    return file ? "?" : NULL;
}

int config_db_clone(Config *dst, const Config *src)
{
    DbConf **dpos = &dst->databases;
    for (const DbConf *d = src->databases; d; d = d->next) {
        DbConf *n = entry_clone(d, sizeof(*d), db_keys, N_KEYS(db_keys), offsetof(DbConf, name));
        if (!n) return -1;
        n->next = NULL;
        n->file = clone_file(dst, src, d->file);
        *dpos = n;
        dpos = &n->next;
        /* not a key of its own (set with `port`): duplicated here */
        n->port_list = NULL;
        if (d->port_list && !(n->port_list = strdup(d->port_list))) return -1;
        if (hmap_put(&dst->db_index, n->name, n) < 0) return -1;
    }
    UserConf **upos = &dst->users;
    for (const UserConf *u = src->users; u; u = u->next) {
        UserConf *n =
            entry_clone(u, sizeof(*u), user_keys, N_KEYS(user_keys), offsetof(UserConf, name));
        if (!n) return -1;
        n->next = NULL;
        n->file = clone_file(dst, src, u->file);
        *upos = n;
        upos = &n->next;
        if (hmap_put(&dst->user_index, n->name, n) < 0) return -1;
    }
    PeerConf **ppos = &dst->peers;
    for (const PeerConf *p = src->peers; p; p = p->next) {
        PeerConf *n = malloc(sizeof(*n));
        if (!n) return -1;
        *n = *p;
        n->next = NULL;
        n->file = clone_file(dst, src, p->file);
        if (p->host && !(n->host = strdup(p->host))) {
            free(n);
            return -1;
        }
        *ppos = n;
        ppos = &n->next;
    }
    return 0;
}

static void peer_conf_free(PeerConf *pc)
{
    free(pc->host);
    free(pc);
}

#define PEER_KEY(n, t, lo, hi)                                                                     \
    {                                                                                              \
#n, t, offsetof(PeerConf, n), lo, hi                                                       \
    }

/* [peers] keys, PgBouncer's: pool_size is accepted and not used (see peers.c). */
static const ConnKey peer_keys[] = {
    PEER_KEY(host, KEY_STRING, 0, 0),
    PEER_KEY(port, KEY_INT, 1, 65535),
    PEER_KEY(pool_size, KEY_INT, 0, POOL_MAX),
};

int config_peer_add(Config *cfg, const char *name, const char *value, const char *file, int line,
                    char *msg, size_t msglen)
{
    PeerConf *pc, **pos;
    long id;

    if (!config_parse_long(name, &id) || id < 1 || id > PEER_ID_MAX) {
        snprintf(msg, msglen, "invalid peer id \"%s\": expected an integer 1..%d", name,
                 PEER_ID_MAX);
        return -1;
    }
    pc = calloc(1, sizeof(*pc));
    if (pc == NULL) {
        snprintf(msg, msglen, "out of memory");
        return -1;
    }
    pc->id = (int)id;
    pc->pool_size = CONF_UNSET;
    pc->file = file;
    pc->line = line;
    if (conninfo_apply(pc, peer_keys, N_KEYS(peer_keys), value, "peer", name, msg, msglen) < 0) {
        peer_conf_free(pc);
        return -1;
    }
    if (pc->host == NULL || pc->host[0] == '\0') {
        snprintf(msg, msglen, "peer %d has no host", pc->id);
        peer_conf_free(pc);
        return -1;
    }
    for (pos = &cfg->peers; *pos != NULL; pos = &(*pos)->next) {
        if ((*pos)->id == pc->id) {
            PeerConf *old = *pos;

            if (config_add_warning(cfg,
                                   "%s:%d: peer %d redefined (previous definition at %s:%d); the "
                                   "last definition wins",
                                   file, line, pc->id, old->file, old->line) < 0) {
                peer_conf_free(pc);
                snprintf(msg, msglen, "out of memory");
                return -1;
            }
            pc->next = old->next;
            *pos = pc;
            peer_conf_free(old);
            return 0;
        }
    }
    *pos = pc;
    return 0;
}

const PeerConf *config_find_peer(const Config *cfg, int id)
{
    for (const PeerConf *pc = cfg->peers; pc != NULL; pc = pc->next)
        if (pc->id == id) return pc;
    return NULL;
}

void config_db_free_all(Config *cfg)
{
    while (cfg->peers != NULL) {
        PeerConf *pc = cfg->peers;

        cfg->peers = pc->next;
        peer_conf_free(pc);
    }
    hmap_free(&cfg->db_index);
    hmap_free(&cfg->user_index);
    while (cfg->databases != NULL) {
        DbConf *db = cfg->databases;

        cfg->databases = db->next;
        db_conf_free(db);
    }
    while (cfg->users != NULL) {
        UserConf *u = cfg->users;

        cfg->users = u->next;
        user_conf_free(u);
    }
}

const DbConf *config_find_db(const Config *cfg, const char *name)
{
    /* Database names are case-sensitive in PostgreSQL: exact keys. */
    const DbConf *db = hmap_get(&cfg->db_index, name);
    return db ? db : hmap_get(&cfg->db_index, "*");
}

const UserConf *config_find_user(const Config *cfg, const char *name)
{
    return hmap_get(&cfg->user_index, name);
}
