/*
 * config_load.c — reading configuration files: inih plus %include, with
 * every problem collected as "file:line: message".
 *
 * DESIGN
 * inih parses the `name = value` pairs, but it knows neither PgBouncer's
 * `%include` nor file names, and it reports only the first bad line.  So
 * inih reads through a custom reader (config_read_line) that owns a stack of
 * open files: it expands %include in place (textually, as PgBouncer does: an
 * included file continues the current section, and a section it opens stays
 * open after it), remembers the file and line of the line it hands out (inih
 * calls the handler for a line before it asks for the next, so the handler
 * always knows where its line came from), consumes section headers itself,
 * and diagnoses malformed lines so that every error is collected instead of
 * stopping at the first.
 *
 * inih's behaviour is set through the Debian libinih runtime switches
 * (ini_allow_multiline and friends) for the duration of one parse: PgBouncer
 * treats ';' and '#' as comments only at the start of a line, so inline
 * comments and Python-style continuation lines must be off.  Those switches
 * are process-wide, so config_load() must not run on two threads at once;
 * pgfunnel only calls it from the main loop (startup and RELOAD).
 *
 * Values are parsed by config.c (the option table) and config_db.c
 * ([databases], [users]); this file adds the location to their messages and
 * runs the checks that involve more than one option.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <ini.h>

#include "config.h"
#include "config_internal.h"

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

typedef enum {
    SECTION_NONE = 0, /* before the first [section] */
    SECTION_PGBOUNCER,
    SECTION_DATABASES,
    SECTION_USERS,
    SECTION_PEERS,
    SECTION_IGNORED, /* a PgBouncer-only section, warned about once (none at present) */
    SECTION_UNKNOWN, /* reported once at its header; its lines are skipped */
} Section;

/*
 * One open file on the %include stack.  Its stdio buffer is ours, so that
 * the text of [databases] lines (password=...) is wiped when it is closed
 * instead of lingering in freed memory.
 */
typedef struct load_file {
    FILE *fp;
    const char *path; /* points into cfg->files */
    dev_t dev;        /* the open file, to catch an include loop at once */
    ino_t ino;
    int line;
    char iobuf[BUFSIZ];
} LoadFile;

/* Where an option was last set, for messages of the cross-option checks. */
typedef struct set_at {
    const char *file;
    int line;
} SetAt;

typedef struct load_state {
    Config *cfg;
    LoadFile stack[CONFIG_MAX_INCLUDE_DEPTH + 1];
    int depth;        /* number of open files */
    const char *file; /* origin of the line last handed to inih */
    int line;
    Section section;
    char *buf; /* getline buffer */
    size_t bufcap;
    char **errors; /* "file:line: message", collected, never just the first */
    int nerrors;
    int opened; /* files opened so far, %include ones too (LOAD_MAX_FILES) */
    bool oom;
    SetAt *set_at; /* one per option of the table, by index */
} LoadState;

static void load_error(LoadState *st, const char *file, int line, const char *fmt, ...)
    PRINTF_LIKE(4, 5);

/*
 * Bounds of one load, whatever the files say: a file that includes another
 * twice, ten levels deep, would otherwise be read 2^10 times, and every bad
 * line of each reading kept as a message.
 */
#define LOAD_MAX_FILES  256
#define LOAD_MAX_ERRORS 20 /* a screenful; the first ones are what to fix */

static void load_error(LoadState *st, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    char *full, **grown;
    va_list ap;

    if (st->nerrors > LOAD_MAX_ERRORS) return;
    if (st->nerrors == LOAD_MAX_ERRORS) {
        file = "(config)";
        line = 0;
        snprintf(msg, sizeof(msg), "more than %d errors; the rest are not listed", LOAD_MAX_ERRORS);
    } else {
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);
    }
    if (line > 0) {
        if (asprintf(&full, "%s:%d: %s", file, line, msg) < 0) full = NULL;
    } else {
        if (asprintf(&full, "%s: %s", file, msg) < 0) full = NULL;
    }
    grown = full != NULL ? realloc(st->errors, sizeof(*grown) * (size_t)(st->nerrors + 1)) : NULL;
    if (grown == NULL) {
        free(full);
        st->oom = true;
        return;
    }
    st->errors = grown;
    st->errors[st->nerrors++] = full;
}

/* Record a file name in cfg->files; messages and entries point at the copy. */
static const char *remember_file(LoadState *st, const char *path)
{
    Config *cfg = st->cfg;
    char *copy = strdup(path);
    char **grown;

    if (copy == NULL) return NULL;
    grown = realloc(cfg->files, sizeof(*grown) * (size_t)(cfg->nfiles + 1));
    if (grown == NULL) {
        free(copy);
        return NULL;
    }
    cfg->files = grown;
    cfg->files[cfg->nfiles++] = copy;
    return copy;
}

/* Open `path` and push it; the message goes to the current line if any. */
static int push_file(LoadState *st, const char *path, const char *shown)
{
    const char *kept;
    struct stat sb;
    FILE *fp;

    if (st->opened >= LOAD_MAX_FILES) {
        load_error(st, st->file, st->line, "%%include \"%s\": more than %d files read", shown,
                   LOAD_MAX_FILES);
        return -1;
    }
    st->opened++;
    fp = fopen(path, "r");
    if (fp != NULL && fstat(fileno(fp), &sb) < 0) {
        int e = errno;
        fclose(fp);
        fp = NULL;
        errno = e;
    }
    /* fopen() succeeds on a directory; say so now rather than as a read error */
    if (fp != NULL && S_ISDIR(sb.st_mode)) {
        fclose(fp);
        fp = NULL;
        errno = EISDIR;
    }
    for (int i = 0; fp != NULL && i < st->depth; i++) {
        if (st->stack[i].dev != sb.st_dev || st->stack[i].ino != sb.st_ino) continue;
        fclose(fp);
        load_error(st, st->file, st->line, "%%include \"%s\": an include loop (%s is being read)",
                   shown, st->stack[i].path);
        return -1;
    }
    if (fp == NULL) {
        int e = errno;

        if (st->depth == 0)
            load_error(st, path, 0, "cannot open config file: %s", strerror(e));
        else
            load_error(st, st->file, st->line, "cannot open include file \"%s\": %s", shown,
                       strerror(e));
        return -1;
    }
    kept = remember_file(st, path);
    if (kept == NULL) {
        fclose(fp);
        st->oom = true;
        return -1;
    }
    setvbuf(fp, st->stack[st->depth].iobuf, _IOFBF, sizeof(st->stack[st->depth].iobuf));
    st->stack[st->depth].fp = fp;
    st->stack[st->depth].path = kept;
    st->stack[st->depth].dev = sb.st_dev;
    st->stack[st->depth].ino = sb.st_ino;
    st->stack[st->depth].line = 0;
    st->depth++;
    return 0;
}

static void load_file_close(LoadFile *lf)
{
    fclose(lf->fp);
    explicit_bzero(lf->iobuf, sizeof(lf->iobuf));
}

/* The getline buffer held the last line read: wipe it too. */
static void load_buf_free(LoadState *st)
{
    if (st->buf) explicit_bzero(st->buf, st->bufcap);
    free(st->buf);
    st->buf = NULL;
}

static char *trim(char *s)
{
    char *end;

    while (*s == ' ' || *s == '\t')
        s++;
    end = s + strlen(s);
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        *--end = '\0';
    return s;
}

/* `%include path`: relative paths are relative to the including file. */
static void handle_include(LoadState *st, char *arg)
{
    const char *cur = st->stack[st->depth - 1].path;
    const char *slash = strrchr(cur, '/');
    char *path;

    arg = trim(arg);
    if (*arg == '\0') {
        load_error(st, st->file, st->line, "%%include needs a file name");
        return;
    }
    if (st->depth > CONFIG_MAX_INCLUDE_DEPTH) {
        load_error(st, st->file, st->line,
                   "%%include \"%s\" nested too deeply (limit %d); is there an include loop?", arg,
                   CONFIG_MAX_INCLUDE_DEPTH);
        return;
    }
    if (arg[0] == '/' || slash == NULL) {
        path = strdup(arg);
    } else if (asprintf(&path, "%.*s/%s", (int)(slash - cur), cur, arg) < 0) {
        path = NULL;
    }
    if (path == NULL) {
        st->oom = true;
        return;
    }
    (void)push_file(st, path, arg);
    free(path);
}

static Section section_kind(const char *name, size_t len)
{
    static const struct {
        const char *name;
        Section kind;
    } known[] = {
        {"pgbouncer", SECTION_PGBOUNCER}, {"pgfunnel", SECTION_PGBOUNCER},
        {"databases", SECTION_DATABASES}, {"users", SECTION_USERS},
        {"peers", SECTION_PEERS},
    };

    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++) {
        if (strlen(known[i].name) == len && strncasecmp(known[i].name, name, len) == 0)
            return known[i].kind;
    }
    return SECTION_UNKNOWN;
}

/*
 * inih's reader: hand out the next meaningful line of the include-expanded
 * input.  Comments, blank lines and %include are consumed here, and lines
 * inih would reject are reported here (with their location) and skipped, so
 * that inih only ever sees lines it will pass to the handler.
 */
static char *config_read_line(char *str, int num, void *stream)
{
    LoadState *st = stream;

    while (st->depth > 0) {
        LoadFile *lf = &st->stack[st->depth - 1];
        ssize_t n = getline(&st->buf, &st->bufcap, lf->fp);
        char *p;

        if (n < 0) {
            if (ferror(lf->fp)) load_error(st, lf->path, 0, "read error: %s", strerror(errno));
            load_file_close(lf);
            st->depth--;
            continue;
        }
        lf->line++;
        st->file = lf->path;
        st->line = lf->line;
        p = st->buf;
        if ((size_t)n != strlen(p)) {
            load_error(st, st->file, st->line, "NUL byte in line");
            continue;
        }
        if (lf->line == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0) p += 3; /* UTF-8 byte order mark */
        p = trim(p);
        if (*p == '\0' || *p == ';' || *p == '#') continue;
        if (strncmp(p, "%include", 8) == 0 && (p[8] == ' ' || p[8] == '\t' || p[8] == '\0')) {
            handle_include(st, p + 8);
            continue;
        }
        if (*p == '[') {
            char *close = strchr(p, ']');

            if (close == NULL) {
                load_error(st, st->file, st->line, "unterminated section header \"%s\"", p);
                st->section = SECTION_UNKNOWN;
                continue;
            }
            st->section = section_kind(p + 1, (size_t)(close - p - 1));
            if (st->section == SECTION_UNKNOWN)
                load_error(st, st->file, st->line, "unknown section \"%.*s\"", (int)(close - p - 1),
                           p + 1);
            else if (st->section == SECTION_IGNORED &&
                     config_add_warning(st->cfg,
                                        "%s:%d: section [%.*s] is not supported by "
                                        "pgfunnel and is ignored",
                                        st->file, st->line, (int)(close - p - 1), p + 1) < 0)
                st->oom = true;
            continue; /* inih needs no section lines: the handler uses st->section */
        } else {
            char *eq = strchr(p, '=');
            char *colon = strchr(p, ':');

            if (eq == NULL) {
                load_error(st, st->file, st->line, "syntax error: expected \"name = value\"");
                continue;
            }
            if (eq == p) {
                load_error(st, st->file, st->line, "syntax error: missing name before \"=\"");
                continue;
            }
            /* inih also splits at ':'; a ':' in the name would be misread */
            if (colon != NULL && colon < eq) {
                load_error(st, st->file, st->line, "syntax error: \":\" in name \"%.*s\"",
                           (int)(eq - p), p);
                continue;
            }
        }
        if (strlen(p) + 2 > (size_t)num) {
            load_error(st, st->file, st->line, "line too long (limit %d bytes)", CONFIG_MAX_LINE);
            continue;
        }
        snprintf(str, (size_t)num, "%s\n", p);
        return str;
    }
    return NULL;
}

static int config_handle_pair(void *user, const char *section, const char *name, const char *value)
{
    LoadState *st = user;
    Config *cfg = st->cfg;
    const OptionDef *opt;
    char msg[1024];

    (void)section; /* always "" — section lines are consumed by the reader */
    switch (st->section) {
    case SECTION_NONE:
        load_error(st, st->file, st->line, "\"%s\" is outside of any section", name);
        break;
    case SECTION_PGBOUNCER:
        opt = config_option_find(name);
        if (opt == NULL) {
            if (config_add_warning(cfg, "%s:%d: unknown option \"%s\" ignored", st->file, st->line,
                                   name) < 0)
                st->oom = true;
        } else if (config_option_parse(cfg, opt, value, msg, sizeof(msg)) < 0) {
            load_error(st, st->file, st->line, "%s", msg);
        } else {
            st->set_at[opt - config_option_at(0)].file = st->file;
            st->set_at[opt - config_option_at(0)].line = st->line;
        }
        break;
    case SECTION_DATABASES:
        if (config_db_add(cfg, name, value, st->file, st->line, msg, sizeof(msg)) < 0)
            load_error(st, st->file, st->line, "%s", msg);
        /* the value may hold password=...: inih's line buffer is not read again */
        explicit_bzero((char *)value, strlen(value));
        break;
    case SECTION_USERS:
        if (config_user_add(cfg, name, value, st->file, st->line, msg, sizeof(msg)) < 0)
            load_error(st, st->file, st->line, "%s", msg);
        break;
    case SECTION_PEERS:
        if (config_peer_add(cfg, name, value, st->file, st->line, msg, sizeof(msg)) < 0)
            load_error(st, st->file, st->line, "%s", msg);
        break;
    case SECTION_IGNORED:
    case SECTION_UNKNOWN:
        break;
    }
    return 1; /* errors are collected here, never via inih's return value */
}

/* Report a cross-option problem at the line that set `name` (or the file). */
static void check_error(LoadState *st, const char *name, const char *fmt, ...) PRINTF_LIKE(3, 4);

static void check_error(LoadState *st, const char *name, const char *fmt, ...)
{
    const OptionDef *opt = config_option_find(name);
    const SetAt *at = opt != NULL ? &st->set_at[opt - config_option_at(0)] : NULL;
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (at != NULL && at->file != NULL)
        load_error(st, at->file, at->line, "%s", msg);
    else
        load_error(st, st->cfg->files[0], 0, "%s", msg);
}

/* Checks that involve more than one option; single values are checked by type. */
static void config_validate(LoadState *st)
{
    const Config *cfg = st->cfg;

    if (cfg->auth_type == AUTH_TYPE_HBA && cfg->auth_hba_file[0] == '\0')
        check_error(st, "auth_type", "auth_type hba needs auth_hba_file");
    if (cfg->client_tls_sslmode != SSLMODE_DISABLE &&
        (cfg->client_tls_key_file[0] == '\0' || cfg->client_tls_cert_file[0] == '\0'))
        check_error(st, "client_tls_sslmode",
                    "client_tls_sslmode %s needs client_tls_key_file and client_tls_cert_file",
                    config_sslmode_name(cfg->client_tls_sslmode));
    if (cfg->admin_http_port != 0 && cfg->admin_http_port == cfg->listen_port)
        check_error(st, "admin_http_port", "admin_http_port %d is the same as listen_port",
                    cfg->admin_http_port);
    if (cfg->listen_addr[0] == '\0' && cfg->unix_socket_dir[0] == '\0')
        check_error(st, "listen_addr",
                    "neither listen_addr nor unix_socket_dir is set: nothing to listen on");
    /* auth_dbname names a [databases] entry; the console is none (as PgBouncer) */
    if (!strcmp(cfg->auth_dbname, "pgbouncer") || !strcmp(cfg->auth_dbname, "pgfunnel"))
        check_error(st, "auth_dbname", "cannot use the reserved \"%s\" database as an auth_dbname",
                    cfg->auth_dbname);
}

/* Join the collected errors, one per line, into err (truncated to errlen). */
static void errors_flush(LoadState *st, char *err, size_t errlen)
{
    size_t used = 0;

    if (errlen > 0) err[0] = '\0';
    for (int i = 0; i < st->nerrors; i++) {
        if (errlen > used) {
            int n = snprintf(err + used, errlen - used, "%s%s", i > 0 ? "\n" : "", st->errors[i]);

            if (n > 0) used += (size_t)n;
        }
        free(st->errors[i]);
    }
    free(st->errors);
    st->errors = NULL;
    st->nerrors = 0;
}

Config *config_load(const char *path, char *err, size_t errlen)
{
    /* The inih switches this parser depends on; restored before returning. */
    const bool saved_multiline = ini_allow_multiline, saved_inline = ini_allow_inline_comments;
    const bool saved_no_value = ini_allow_no_value, saved_stop = ini_stop_on_first_error;
    const int saved_max_line = ini_max_line;
    LoadState *st;
    Config *cfg;
    char *abs;

    if (errlen > 0) err[0] = '\0';
    st = calloc(1, sizeof(*st));
    cfg = config_defaults();
    if (st != NULL) st->set_at = calloc(config_option_count(), sizeof(*st->set_at));
    if (st == NULL || st->set_at == NULL || cfg == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
        if (st != NULL) free(st->set_at);
        free(st);
        config_free(cfg);
        return NULL;
    }
    st->cfg = cfg;

    abs = realpath(path, NULL);
    if (abs == NULL) {
        load_error(st, path, 0, "cannot open config file: %s", strerror(errno));
        goto fail;
    }
    cfg->path = abs;
    if (push_file(st, path, path) < 0) goto fail;

    ini_allow_multiline = false;
    ini_allow_inline_comments = false;
    ini_allow_no_value = false;
    ini_stop_on_first_error = false;
    ini_max_line = CONFIG_MAX_LINE + 3; /* room for "\r\n\0", as inih documents */
    if (ini_parse_stream(config_read_line, st, config_handle_pair, st) == -2) st->oom = true;
    ini_allow_multiline = saved_multiline;
    ini_allow_inline_comments = saved_inline;
    ini_allow_no_value = saved_no_value;
    ini_stop_on_first_error = saved_stop;
    ini_max_line = saved_max_line;

    /* inih stops early only on allocation failure; close what it left open */
    while (st->depth > 0)
        load_file_close(&st->stack[--st->depth]);
    load_buf_free(st);

    if (st->nerrors == 0 && !st->oom) config_validate(st);
    if (st->oom) load_error(st, path, 0, "out of memory");
    if (st->nerrors > 0) goto fail;
    free(st->set_at);
    free(st);
    return cfg;

fail:
    errors_flush(st, err, errlen);
    load_buf_free(st);
    free(st->set_at);
    free(st);
    config_free(cfg);
    return NULL;
}
