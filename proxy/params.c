/*
 * params.c — tracked session parameters (see params.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "params.h"
#include "proto.h"

/* GUC_REPORT parameters a client may change and must keep across servers. */
static const char *const reported_tracked[] = {
    "client_encoding",  "DateStyle", "IntervalStyle", "TimeZone", "standard_conforming_strings",
    "application_name", NULL,
};

/* Names that are part of the connection, not of the session state. */
static const char *const startup_only[] = {
    "user",
    "database",
    "replication",
    "options",
    "server_version",
    "server_encoding",
    "integer_datetimes",
    "is_superuser",
    "session_authorization",
    "in_hot_standby",
    "default_transaction_read_only",
    NULL,
};

static bool name_in(const char *const *list, const char *name)
{
    for (int i = 0; list[i]; i++)
        if (strcasecmp(list[i], name) == 0) return true;
    return false;
}

bool params_is_reported_tracked(const char *name)
{
    return name_in(reported_tracked, name);
}

bool params_is_startup_only(const char *name)
{
    return name_in(startup_only, name);
}

void params_init(ParamSet *ps)
{
    memset(ps, 0, sizeof(*ps));
}

static void param_free_strings(Param *p)
{
    if (p->startup != p->value) free(p->startup);
    free(p->value);
    free(p->name);
}

void params_free(ParamSet *ps)
{
    for (int i = 0; i < ps->n; i++)
        param_free_strings(&ps->v[i]);
    free(ps->v);
    uint32_t gen = ps->gen;
    memset(ps, 0, sizeof(*ps));
    ps->gen = gen + 1; /* an emptied set is a change too */
}

static int params_index(const ParamSet *ps, const char *name)
{
    for (int i = 0; i < ps->n; i++)
        if (strcasecmp(ps->v[i].name, name) == 0) return i;
    return -1;
}

const char *params_get(const ParamSet *ps, const char *name)
{
    int i = params_index(ps, name);
    return i < 0 ? NULL : ps->v[i].value;
}

int params_set(ParamSet *ps, const char *name, const char *value)
{
    int i = params_index(ps, name);
    if (i >= 0) {
        Param *p = &ps->v[i];
        if (strcmp(p->value, value) == 0) return 0;
        char *nv = strdup(value);
        if (!nv) return -1;
        if (p->value != p->startup) free(p->value); /* the startup string stays */
        p->value = nv;
        ps->gen++;
        return 0;
    }
    if (ps->n == ps->cap) {
        int cap = ps->cap ? ps->cap * 2 : 2; /* most clients send one or two */
        Param *nv = realloc(ps->v, (size_t)cap * sizeof(*nv));
        if (!nv) return -1;
        ps->v = nv;
        ps->cap = cap;
    }
    char *n = strdup(name), *v = strdup(value);
    if (!n || !v) {
        free(n);
        free(v);
        return -1;
    }
    ps->v[ps->n].name = n;
    ps->v[ps->n].value = v;
    ps->v[ps->n].startup = NULL;
    ps->n++;
    ps->gen++;
    return 0;
}

void params_unset(ParamSet *ps, const char *name)
{
    int i = params_index(ps, name);
    if (i < 0) return;
    param_free_strings(&ps->v[i]);
    ps->v[i] = ps->v[ps->n - 1];
    ps->n--;
    ps->gen++;
}

void params_mark_startup(ParamSet *ps)
{
    for (int i = 0; i < ps->n; i++) {
        Param *p = &ps->v[i];
        if (p->startup != p->value) free(p->startup);
        p->startup = p->value;
    }
}

void params_restore_startup_one(ParamSet *ps, const char *name)
{
    int i = params_index(ps, name);
    if (i < 0) return;
    Param *p = &ps->v[i];
    if (!p->startup || p->startup == p->value) return;
    free(p->value);
    p->value = p->startup;
    ps->gen++;
}

const char *params_get_startup(const ParamSet *ps, const char *name)
{
    int i = params_index(ps, name);
    return i < 0 ? NULL : ps->v[i].startup;
}

void params_restore_startup(ParamSet *ps)
{
    for (int i = 0; i < ps->n; i++) {
        Param *p = &ps->v[i];
        if (!p->startup || p->startup == p->value) continue;
        free(p->value);
        p->value = p->startup;
    }
    ps->gen++;
}

int params_copy(ParamSet *dst, const ParamSet *src)
{
    for (int i = 0; i < src->n; i++)
        if (params_set(dst, src->v[i].name, src->v[i].value) < 0) return -1;
    return 0;
}

/* FNV-1a, case-folded for names (GUC names are case-insensitive). */
static uint64_t fp_str(uint64_t h, const char *s, bool fold)
{
    if (!s) return (h ^ 0xffu) * 1099511628211ull; /* "absent" differs from "" */
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (fold && ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch + 32);
        h = (h ^ ch) * 1099511628211ull;
    }
    return (h ^ 0x100u) * 1099511628211ull;
}

/* Order-independent combination of name=value pairs. */
static uint64_t fp_pair(const char *name, const char *value)
{
    uint64_t h = fp_str(14695981039346656037ull, name, true);
    h = fp_str(h, value, false);
    return h ^ (h >> 29);
}

uint64_t params_want_fp(const ParamSet *client, const ParamSet *defaults)
{
    uint64_t h = 14695981039346656037ull, extras = 0;
    for (int i = 0; reported_tracked[i]; i++) {
        const char *v = params_get(client, reported_tracked[i]);
        if (!v && strcmp(reported_tracked[i], "application_name") == 0) v = "";
        if (!v) v = params_get(defaults, reported_tracked[i]);
        h = fp_str(h, v, false);
    }
    for (int i = 0; i < client->n; i++) {
        const char *name = client->v[i].name;
        if (params_is_reported_tracked(name) || params_is_startup_only(name)) continue;
        extras += fp_pair(name, client->v[i].value);
    }
    return h ^ extras;
}

uint64_t params_have_fp(const ParamSet *server, const ParamSet *applied)
{
    uint64_t h = 14695981039346656037ull, extras = 0;
    for (int i = 0; reported_tracked[i]; i++)
        h = fp_str(h, params_get(server, reported_tracked[i]), false);
    for (int i = 0; i < applied->n; i++)
        extras += fp_pair(applied->v[i].name, applied->v[i].value);
    return h ^ extras;
}

/* GUC names are identifiers; anything else is refused rather than quoted. */
static bool name_is_safe(const char *name)
{
    if (!*name) return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '.'))
            return false;
    return true;
}

static int append(char *sql, size_t len, size_t *o, const char *s)
{
    size_t l = strlen(s);
    if (*o + l + 1 > len) return -1;
    memcpy(sql + *o, s, l + 1);
    *o += l;
    return 0;
}

/*
 * set_config() takes the value as a startup option would (a search_path
 * list stays a list), where SET name = 'a,b' would make it one element.
 */
static int add_set(char *sql, size_t len, size_t *o, const char *name, const char *value)
{
    char lit[2048], nlit[300], stmt[2400];
    if (!name_is_safe(name)) return 0;
    if (!value) {
        snprintf(stmt, sizeof(stmt), "RESET %s;", name);
    } else {
        if (proto_quote_literal(value, lit, sizeof(lit)) < 0) return 0;
        if (proto_quote_literal(name, nlit, sizeof(nlit)) < 0) return 0;
        snprintf(stmt, sizeof(stmt), "SELECT pg_catalog.set_config(%s, %s, false);", nlit, lit);
    }
    return append(sql, len, o, stmt) < 0 ? -1 : 1;
}

int params_diff_sql(const ParamSet *client, const ParamSet *server, const ParamSet *applied,
                    const ParamSet *defaults, char *sql, size_t len)
{
    size_t o = 0;
    int count = 0, r;
    sql[0] = 0;
    /* reported parameters: compare with what the server last reported */
    for (int i = 0; reported_tracked[i]; i++) {
        const char *name = reported_tracked[i];
        const char *want = params_get(client, name);
        if (!want)
            want = strcasecmp(name, "application_name") == 0 ? "" : params_get(defaults, name);
        const char *have = params_get(server, name);
        if (!want || (have && strcmp(want, have) == 0)) continue;
        if ((r = add_set(sql, len, &o, name, want)) < 0) return -1;
        count += r;
    }
    /* other client parameters: compare with what the pooler applied */
    for (int i = 0; i < client->n; i++) {
        const char *name = client->v[i].name;
        if (params_is_reported_tracked(name) || params_is_startup_only(name)) continue;
        const char *have = params_get(applied, name);
        if (have && strcmp(have, client->v[i].value) == 0) continue;
        if ((r = add_set(sql, len, &o, name, client->v[i].value)) < 0) return -1;
        count += r;
    }
    /* set for an earlier client, absent for this one: back to the default */
    for (int i = 0; i < applied->n; i++) {
        const char *name = applied->v[i].name;
        if (params_get(client, name)) continue;
        if ((r = add_set(sql, len, &o, name, NULL)) < 0) return -1;
        count += r;
    }
    return count;
}
