/*
 * config.c — the [pgbouncer] option table, value parsing and formatting, and
 * the file loader (inih plus %include).
 *
 * DESIGN
 * One static table, options[], describes every [pgbouncer] setting: its
 * type, where it lives in struct config, its default as written in the file,
 * whether RELOAD/SET may change it, and a one-line doc.  Defaults, parsing,
 * SHOW CONFIG (config_format_value), SET (config_set) and the sample file
 * (config_write_sample) are all driven by that table, so a new option is one
 * table line plus one struct field.
 *
 * Loading: inih parses the sections and `name = value` pairs, but it knows
 * neither PgBouncer's `%include` nor file names, and it reports only the first
 * bad line.  So inih reads through a custom reader (config_read_line) that
 * owns a stack of open files: it expands %include in place, remembers the
 * file and line of the line it hands out (inih calls the handler for a line
 * before it asks for the next, so the handler always knows where its line
 * came from), and diagnoses malformed lines itself so that every error is
 * collected as "file:line: message" instead of stopping at the first.
 *
 * inih's behaviour is set through the Debian libinih runtime switches
 * (ini_allow_multiline and friends) for the duration of one parse: PgBouncer
 * treats ';' and '#' as comments only at the start of a line, so inline
 * comments and Python-style continuation lines must be off.  Those switches
 * are process-wide, so config_load() must not run on two threads at once;
 * pgfunnel only calls it from the main loop (startup and RELOAD).
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>

#include "config.h"
#include "config_db.h"

/* ------------------------------------------------------------------------
 * The option table
 * ------------------------------------------------------------------------ */

/* Choice lists are in enum order: the index is the stored value. */
static const char *const pool_mode_choices[] = {"session", "transaction", "statement", NULL};
static const char *const auth_type_choices[] = {"trust",         "any",  "plain", "md5",
                                                "scram-sha-256", "cert", "hba",   NULL};
static const char *const auth_type_unsupported[] = {"pam", "ldap", NULL};
static const char *const sslmode_choices[] = {"disable",   "allow",       "prefer", "require",
                                              "verify-ca", "verify-full", NULL};
static const char *const log_format_choices[] = {"text", "json", NULL};

#define OFF(f) offsetof(struct config, f)

/* Shorthands so that each table line reads as "name, type, default, ...". */
#define STR(n, def, rl, d)                                                                         \
    {                                                                                              \
        .name = #n, .type = OPT_STRING, .offset = OFF(n), .default_value = def, .reloadable = rl,  \
        .doc = d                                                                                   \
    }
#define INT(n, def, lo, hi, rl, d)                                                                 \
    {                                                                                              \
        .name = #n, .type = OPT_INT, .offset = OFF(n), .default_value = def, .reloadable = rl,     \
        .min = lo, .max = hi, .doc = d                                                             \
    }
#define BOOL(n, def, rl, d)                                                                        \
    {                                                                                              \
        .name = #n, .type = OPT_BOOL, .offset = OFF(n), .default_value = def, .reloadable = rl,    \
        .doc = d                                                                                   \
    }
#define TIME(n, def, rl, d)                                                                        \
    {                                                                                              \
        .name = #n, .type = OPT_TIME, .offset = OFF(n), .default_value = def, .reloadable = rl,    \
        .doc = d                                                                                   \
    }
#define ENUM(n, def, ch, rl, d)                                                                    \
    {                                                                                              \
        .name = #n, .type = OPT_ENUM, .offset = OFF(n), .default_value = def, .reloadable = rl,    \
        .choices = ch, .doc = d                                                                    \
    }

#define RELOAD  true
#define RESTART false

static const OptionDef options[] = {
    /* generic */
    STR(logfile, "", RELOAD, "Log file; empty = log to stderr only"),
    STR(pidfile, "", RESTART, "PID file; required to daemonize"),
    STR(listen_addr, "", RESTART,
        "Comma-separated addresses to listen on for TCP, * = all; empty = unix socket only"),
    INT(listen_port, "6432", 1, 65535, RESTART, "Port to listen on (TCP and unix socket name)"),
    STR(unix_socket_dir, "/tmp", RESTART, "Directory for the unix socket; empty = no unix socket"),
    {.name = "unix_socket_mode",
     .type = OPT_MODE,
     .offset = OFF(unix_socket_mode),
     .default_value = "0777",
     .reloadable = RESTART,
     .min = 0,
     .max = 07777,
     .doc = "File mode of the unix socket (octal)"},
    STR(unix_socket_group, "", RESTART, "Group owning the unix socket; empty = unchanged"),
    STR(user, "", RESTART, "Switch to this OS user after startup; empty = stay"),
    INT(listen_backlog, "128", 1, 65535, RESTART, "Backlog passed to listen(2)"),
    BOOL(so_reuseport, "0", RESTART, "Set SO_REUSEPORT on listening sockets"),
    {.name = "workers",
     .type = OPT_WORKERS,
     .offset = OFF(workers),
     .default_value = "4",
     .reloadable = RESTART,
     .min = 1,
     .max = 256,
     .doc = "Worker threads for blocking work (auth, DNS); auto = number of online CPUs"},

    /* authentication */
    {.name = "auth_type",
     .type = OPT_ENUM,
     .offset = OFF(auth_type),
     .default_value = "md5",
     .reloadable = RELOAD,
     .choices = auth_type_choices,
     .unsupported = auth_type_unsupported,
     .doc = "How clients authenticate"},
    STR(auth_file, "", RELOAD, "File with user names and passwords (userlist.txt format)"),
    STR(auth_hba_file, "", RELOAD, "pg_hba.conf-style file used when auth_type = hba"),
    STR(auth_query,
        "SELECT rolname, CASE WHEN rolvaliduntil < now() THEN NULL ELSE rolpassword END FROM "
        "pg_authid WHERE rolname=$1 AND rolcanlogin",
        RELOAD, "Query that fetches a user's password hash from the server"),
    STR(auth_user, "", RELOAD, "User that runs auth_query; empty = auth_query disabled"),
    STR(auth_dbname, "", RELOAD, "Database that auth_query runs in; empty = the client's"),

    /* pooling */
    ENUM(pool_mode, "session", pool_mode_choices, RELOAD,
         "When a server connection returns to the pool"),
    INT(max_client_conn, "100", 1, INT_MAX, RELOAD, "Maximum number of client connections"),
    INT(default_pool_size, "20", 1, 100000, RELOAD, "Server connections per user/database pair"),
    INT(min_pool_size, "0", 0, 100000, RELOAD, "Keep at least this many server connections open"),
    INT(reserve_pool_size, "0", 0, 100000, RELOAD,
        "Extra connections a pool may use when clients wait too long"),
    TIME(reserve_pool_timeout, "5", RELOAD,
         "Seconds a client waits before the reserve pool is used"),
    INT(max_db_connections, "0", 0, INT_MAX, RELOAD,
        "Maximum server connections per database; 0 = unlimited"),
    INT(max_user_connections, "0", 0, INT_MAX, RELOAD,
        "Maximum server connections per user; 0 = unlimited"),
    BOOL(server_round_robin, "0", RELOAD,
         "Reuse server connections round-robin instead of last-in first-out"),
    STR(ignore_startup_parameters, "", RELOAD,
        "Comma-separated startup parameters to ignore instead of rejecting the client"),
    STR(track_extra_parameters, "IntervalStyle", RELOAD,
        "Comma-separated extra parameters tracked per client and restored on the server"),
    INT(max_prepared_statements, "200", 0, INT_MAX, RELOAD,
        "Protocol-level prepared statements tracked per connection in transaction mode; 0 = off"),
    BOOL(application_name_add_host, "0", RELOAD,
         "Append the client address and port to application_name"),

    /* server connections */
    STR(server_reset_query, "DISCARD ALL", RELOAD,
        "Query run when a server connection is released in session mode"),
    BOOL(server_reset_query_always, "0", RELOAD,
         "Run server_reset_query in every pool mode, not only session"),
    STR(server_check_query, "select 1", RELOAD,
        "Query that checks an idle server connection; empty = check disabled"),
    TIME(server_check_delay, "30", RELOAD, "Seconds an idle server may go unchecked"),
    BOOL(server_fast_close, "0", RELOAD,
         "Close servers marked for closing at the end of a transaction, even in session mode"),
    TIME(server_lifetime, "3600", RELOAD,
         "Close server connections older than this many seconds; 0 = never"),
    TIME(server_idle_timeout, "600", RELOAD,
         "Close server connections idle this many seconds; 0 = never"),
    TIME(server_connect_timeout, "15", RELOAD, "Seconds to wait for a server login to finish"),
    TIME(server_login_retry, "15", RELOAD, "Seconds to wait before retrying a failed login"),

    /* client timeouts */
    TIME(client_login_timeout, "60", RELOAD, "Disconnect clients that do not log in in time"),
    TIME(query_timeout, "0", RELOAD, "Cancel queries running longer than this; 0 = off"),
    TIME(query_wait_timeout, "120", RELOAD,
         "Disconnect clients waiting this long for a server; 0 = wait forever"),
    TIME(cancel_wait_timeout, "10", RELOAD,
         "Drop cancel requests that wait this long for a server; 0 = wait forever"),
    TIME(client_idle_timeout, "0", RELOAD, "Disconnect clients idle this long; 0 = off"),
    TIME(idle_transaction_timeout, "0", RELOAD,
         "Disconnect clients idle in a transaction this long; 0 = off"),
    TIME(suspend_timeout, "10", RELOAD, "Seconds to wait for buffers to flush on SUSPEND"),
    TIME(autodb_idle_timeout, "3600", RELOAD,
         "Drop unused pools created through the * entry after this many seconds"),

    /* console / admin */
    STR(admin_users, "", RELOAD, "Comma-separated users allowed to run admin commands"),
    STR(stats_users, "", RELOAD, "Comma-separated users allowed to run SHOW commands"),
    STR(admin_http_addr, "127.0.0.1", RESTART, "Address of the HTTP admin and metrics endpoint"),
    INT(admin_http_port, "0", 0, 65535, RESTART, "Port of the HTTP admin endpoint; 0 = disabled"),
    BOOL(admin_http_auth, "0", RELOAD, "Require HTTP basic auth (admin_users) on the endpoint"),

    /* logging */
    BOOL(syslog, "0", RELOAD, "Also log to syslog"),
    STR(syslog_ident, "pgfunnel", RELOAD, "Program name used in syslog"),
    STR(syslog_facility, "daemon", RELOAD, "Syslog facility"),
    BOOL(log_connections, "1", RELOAD, "Log successful logins"),
    BOOL(log_disconnections, "1", RELOAD, "Log disconnections with their reason"),
    BOOL(log_pooler_errors, "1", RELOAD, "Log errors sent to clients"),
    BOOL(log_stats, "1", RELOAD, "Log aggregated statistics every stats_period"),
    TIME(stats_period, "60", RELOAD, "Seconds between statistics updates"),
    INT(verbose, "0", 0, 3, RELOAD, "Log verbosity: 0 = normal, 1 = debug, 2 = noise"),
    ENUM(log_format, "text", log_format_choices, RELOAD, "Log line format"),

    /* network */
    INT(pkt_buf, "4096", 1024, 1048576, RESTART, "Size of a connection's packet buffer in bytes"),
    INT(max_packet_size, "2147483647", 1024, INT_MAX, RELOAD,
        "Largest PostgreSQL protocol packet accepted, in bytes"),
    INT(sbuf_loopcnt, "5", 0, INT_MAX, RELOAD,
        "Reads per connection per loop iteration before others get a turn; 0 = no limit"),
    BOOL(tcp_keepalive, "1", RELOAD, "Enable TCP keepalive with the OS defaults"),
    INT(tcp_keepcnt, "0", 0, INT_MAX, RELOAD, "TCP_KEEPCNT; 0 = OS default"),
    INT(tcp_keepidle, "0", 0, INT_MAX, RELOAD, "TCP_KEEPIDLE in seconds; 0 = OS default"),
    INT(tcp_keepintvl, "0", 0, INT_MAX, RELOAD, "TCP_KEEPINTVL in seconds; 0 = OS default"),
    INT(tcp_user_timeout, "0", 0, INT_MAX, RELOAD,
        "TCP_USER_TIMEOUT in milliseconds; 0 = OS default"),
    INT(tcp_socket_buffer, "0", 0, INT_MAX, RELOAD, "Socket buffer size in bytes; 0 = OS default"),
    BOOL(tcp_defer_accept, "1", RELOAD, "Use TCP_DEFER_ACCEPT on listening sockets"),
    TIME(dns_max_ttl, "15", RELOAD, "Seconds a successful DNS lookup is cached"),
    TIME(dns_nxdomain_ttl, "15", RELOAD, "Seconds a failed DNS lookup is cached"),

    /* TLS towards clients */
    ENUM(client_tls_sslmode, "disable", sslmode_choices, RELOAD, "TLS mode for client connections"),
    STR(client_tls_key_file, "", RELOAD, "Private key for client TLS"),
    STR(client_tls_cert_file, "", RELOAD, "Certificate for client TLS"),
    STR(client_tls_ca_file, "", RELOAD, "CA file used to verify client certificates"),
    STR(client_tls_protocols, "secure", RELOAD,
        "Allowed TLS versions for clients: tlsv1.2, tlsv1.3, secure, all, legacy"),
    STR(client_tls_ciphers, "fast", RELOAD, "OpenSSL cipher list for clients: fast, normal, ..."),
    STR(client_tls_ecdhcurve, "auto", RELOAD, "Elliptic curve for ECDH key exchange"),
    STR(client_tls_dheparams, "auto", RELOAD, "DHE key exchange parameters: none, auto, legacy"),

    /* TLS towards servers */
    ENUM(server_tls_sslmode, "prefer", sslmode_choices, RELOAD, "TLS mode for server connections"),
    STR(server_tls_ca_file, "", RELOAD, "CA file used to verify server certificates"),
    STR(server_tls_key_file, "", RELOAD, "Private key for authenticating to servers"),
    STR(server_tls_cert_file, "", RELOAD, "Certificate for authenticating to servers"),
    STR(server_tls_protocols, "secure", RELOAD, "Allowed TLS versions for servers"),
    STR(server_tls_ciphers, "fast", RELOAD, "OpenSSL cipher list for servers"),
};

#define N_OPTIONS (sizeof(options) / sizeof(options[0]))

size_t config_option_count(void)
{
    return N_OPTIONS;
}

const OptionDef *config_option_at(size_t i)
{
    return i < N_OPTIONS ? &options[i] : NULL;
}

const OptionDef *config_option_find(const char *name)
{
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (strcasecmp(options[i].name, name) == 0) return &options[i];
    }
    return NULL;
}

/* ------------------------------------------------------------------------
 * Values
 * ------------------------------------------------------------------------ */

static void *opt_field(Config *cfg, const OptionDef *opt)
{
    return (char *)cfg + opt->offset;
}

static const void *opt_field_const(const Config *cfg, const OptionDef *opt)
{
    return (const char *)cfg + opt->offset;
}

static bool parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = {"1", "on", "true", "yes"};
    static const char *const no[] = {"0", "off", "false", "no"};

    for (size_t i = 0; i < 4; i++) {
        if (strcasecmp(s, yes[i]) == 0) {
            *out = true;
            return true;
        }
        if (strcasecmp(s, no[i]) == 0) {
            *out = false;
            return true;
        }
    }
    return false;
}

static int find_choice(const char *const *choices, const char *s)
{
    for (int i = 0; choices != NULL && choices[i] != NULL; i++) {
        if (strcasecmp(choices[i], s) == 0) return i;
    }
    return -1;
}

/* "a, b or c" for messages */
static void join_choices(const char *const *choices, char *buf, size_t len)
{
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; choices[i] != NULL && used < len; i++) {
        const char *sep = i == 0 ? "" : choices[i + 1] == NULL ? " or " : ", ";
        int n = snprintf(buf + used, len - used, "%s%s", sep, choices[i]);

        if (n < 0) break;
        used += (size_t)n;
    }
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

/*
 * Parse `value` for opt and store it in cfg.  Nothing is changed on failure,
 * so config_set() can use it on a live Config.  The message has no location.
 */
static int option_parse(Config *cfg, const OptionDef *opt, const char *value, char *msg,
                        size_t msglen)
{
    void *field = opt_field(cfg, opt);
    char choices[256];
    long n;
    bool b;
    usec_t t;
    int idx;
    char *end, *copy;

    switch (opt->type) {
    case OPT_STRING:
        copy = strdup(value);
        if (copy == NULL) {
            snprintf(msg, msglen, "out of memory");
            return -1;
        }
        free(*(char **)field);
        *(char **)field = copy;
        return 0;
    case OPT_WORKERS:
        if (strcasecmp(value, "auto") == 0) {
            *(int *)field = online_cpus();
            return 0;
        }
        /* otherwise a plain integer */
        __attribute__((fallthrough));
    case OPT_INT:
        if (!config_parse_long(value, &n)) {
            snprintf(msg, msglen, "invalid value \"%s\" for %s: expected an integer%s", value,
                     opt->name, opt->type == OPT_WORKERS ? " or auto" : "");
            return -1;
        }
        if (n < opt->min || n > opt->max) {
            snprintf(msg, msglen, "%s = %ld is out of range (%ld..%ld)", opt->name, n, opt->min,
                     opt->max);
            return -1;
        }
        *(int *)field = (int)n;
        return 0;
    case OPT_MODE:
        errno = 0;
        n = strtol(value, &end, 8);
        if (*value < '0' || *value > '7' || *end != '\0' || errno != 0 || n < opt->min ||
            n > opt->max) {
            snprintf(msg, msglen, "invalid value \"%s\" for %s: expected an octal mode like 0777",
                     value, opt->name);
            return -1;
        }
        *(int *)field = (int)n;
        return 0;
    case OPT_BOOL:
        if (!parse_bool(value, &b)) {
            snprintf(msg, msglen,
                     "invalid value \"%s\" for %s: expected a boolean (0/1, on/off, true/false, "
                     "yes/no)",
                     value, opt->name);
            return -1;
        }
        *(bool *)field = b;
        return 0;
    case OPT_TIME:
        if (!config_parse_seconds(value, &t)) {
            snprintf(msg, msglen, "invalid value \"%s\" for %s: expected seconds, e.g. 30 or 0.5",
                     value, opt->name);
            return -1;
        }
        *(usec_t *)field = t;
        return 0;
    case OPT_ENUM:
        idx = find_choice(opt->choices, value);
        if (idx < 0 && find_choice(opt->unsupported, value) >= 0) {
            snprintf(msg, msglen, "%s %s is not supported by pgfunnel", opt->name, value);
            return -1;
        }
        if (idx < 0) {
            join_choices(opt->choices, choices, sizeof(choices));
            snprintf(msg, msglen, "invalid value \"%s\" for %s: expected %s", value, opt->name,
                     choices);
            return -1;
        }
        *(int *)field = idx;
        return 0;
    }
    snprintf(msg, msglen, "internal error: bad type of option %s", opt->name);
    return -1;
}

void config_format_value(const Config *cfg, const OptionDef *opt, char *buf, size_t len)
{
    const void *field = opt_field_const(cfg, opt);
    const char *s;
    usec_t t;
    int i;

    if (len == 0) return;
    switch (opt->type) {
    case OPT_STRING:
        s = *(char *const *)field;
        snprintf(buf, len, "%s", s != NULL ? s : "");
        return;
    case OPT_INT:
    case OPT_WORKERS:
        snprintf(buf, len, "%d", *(const int *)field);
        return;
    case OPT_MODE:
        snprintf(buf, len, "0%o", (unsigned)*(const int *)field);
        return;
    case OPT_BOOL:
        snprintf(buf, len, "%d", *(const bool *)field ? 1 : 0);
        return;
    case OPT_TIME:
        /* whole seconds print as "30", fractions without trailing zeros */
        t = *(const usec_t *)field;
        if (t % USEC_PER_SEC == 0) {
            snprintf(buf, len, "%lld", (long long)(t / USEC_PER_SEC));
        } else {
            char frac[8];
            int end;

            snprintf(frac, sizeof(frac), "%06lld", (long long)(t % USEC_PER_SEC));
            for (end = 5; end > 0 && frac[end] == '0'; end--)
                frac[end] = '\0';
            snprintf(buf, len, "%lld.%s", (long long)(t / USEC_PER_SEC), frac);
        }
        return;
    case OPT_ENUM:
        i = *(const int *)field;
        for (int k = 0; opt->choices[k] != NULL; k++) {
            if (k == i) {
                snprintf(buf, len, "%s", opt->choices[k]);
                return;
            }
        }
        snprintf(buf, len, "%d", i);
        return;
    }
    buf[0] = '\0';
}

void config_free(Config *cfg)
{
    if (cfg == NULL) return;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].type == OPT_STRING) free(*(char **)opt_field(cfg, &options[i]));
    }
    config_db_free_all(cfg);
    for (int i = 0; i < cfg->nwarnings; i++)
        free(cfg->warnings[i]);
    free(cfg->warnings);
    for (int i = 0; i < cfg->nfiles; i++)
        free(cfg->files[i]);
    free(cfg->files);
    free(cfg->path);
    free(cfg);
}

Config *config_defaults(void)
{
    Config *cfg = calloc(1, sizeof(*cfg));
    char msg[256];

    if (cfg == NULL) return NULL;
    /* Defaults go through the same parser as the file, so the table's
     * default strings are validated too (a unit test loads them all). */
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (option_parse(cfg, &options[i], options[i].default_value, msg, sizeof(msg)) < 0) {
            config_free(cfg);
            return NULL;
        }
    }
    return cfg;
}

int config_set(Config *cfg, const char *name, const char *value, char *err, size_t errlen)
{
    const OptionDef *opt = config_option_find(name);

    if (opt == NULL) {
        snprintf(err, errlen, "unknown option \"%s\"", name);
        return -1;
    }
    if (!opt->reloadable) {
        snprintf(err, errlen, "option \"%s\" cannot be changed at runtime", opt->name);
        return -1;
    }
    return option_parse(cfg, opt, value, err, errlen);
}

/* ------------------------------------------------------------------------
 * Loading
 * ------------------------------------------------------------------------ */

typedef enum {
    SECTION_NONE = 0, /* before the first [section] */
    SECTION_PGBOUNCER,
    SECTION_DATABASES,
    SECTION_USERS,
    SECTION_IGNORED, /* [peers]: PgBouncer-only, warned about once */
    SECTION_UNKNOWN, /* reported once at its header; its lines are skipped */
} Section;

/* One open file on the %include stack. */
typedef struct load_file {
    FILE *fp;
    const char *path; /* points into cfg->files */
    int line;
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
    bool oom;
    SetAt set_at[N_OPTIONS];
} LoadState;

static void load_error(LoadState *st, const char *file, int line, const char *fmt, ...)
    PRINTF_LIKE(4, 5);

static void load_error(LoadState *st, const char *file, int line, const char *fmt, ...)
{
    char msg[1024];
    char *full, **grown;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
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

    fp = fopen(path, "r");
    /* fopen() succeeds on a directory; say so now rather than as a read error */
    if (fp != NULL && fstat(fileno(fp), &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fclose(fp);
        fp = NULL;
        errno = EISDIR;
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
    st->stack[st->depth].fp = fp;
    st->stack[st->depth].path = kept;
    st->stack[st->depth].line = 0;
    st->depth++;
    return 0;
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
        {"peers", SECTION_IGNORED},
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
            fclose(lf->fp);
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
        } else if (option_parse(cfg, opt, value, msg, sizeof(msg)) < 0) {
            load_error(st, st->file, st->line, "%s", msg);
        } else {
            st->set_at[opt - options].file = st->file;
            st->set_at[opt - options].line = st->line;
        }
        break;
    case SECTION_DATABASES:
        if (config_db_add(cfg, name, value, st->file, st->line, msg, sizeof(msg)) < 0)
            load_error(st, st->file, st->line, "%s", msg);
        break;
    case SECTION_USERS:
        if (config_user_add(cfg, name, value, st->file, st->line, msg, sizeof(msg)) < 0)
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
    const SetAt *at = opt != NULL ? &st->set_at[opt - options] : NULL;
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
    if (st == NULL || cfg == NULL) {
        snprintf(err, errlen, "%s: out of memory", path);
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
        fclose(st->stack[--st->depth].fp);
    free(st->buf);
    st->buf = NULL;

    if (st->nerrors == 0 && !st->oom) config_validate(st);
    if (st->oom) load_error(st, path, 0, "out of memory");
    if (st->nerrors > 0) goto fail;
    free(st);
    return cfg;

fail:
    errors_flush(st, err, errlen);
    free(st->buf);
    free(st);
    config_free(cfg);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Names and lists
 * ------------------------------------------------------------------------ */

static const char *choice_name(const char *const *choices, int n, int i)
{
    return i >= 0 && i < n ? choices[i] : "unknown";
}

const char *config_pool_mode_name(int mode)
{
    return choice_name(pool_mode_choices, 3, mode);
}

const char *config_auth_type_name(int type)
{
    return choice_name(auth_type_choices, 7, type);
}

const char *config_sslmode_name(int mode)
{
    return choice_name(sslmode_choices, 6, mode);
}

bool config_list_contains(const char *list, const char *name)
{
    size_t len = strlen(name);
    const char *p = list;

    if (list == NULL || len == 0) return false;
    while (*p != '\0') {
        size_t n;

        while (*p == ',' || *p == ' ' || *p == '\t')
            p++;
        n = strcspn(p, ", \t");
        if (n == len && strncasecmp(p, name, len) == 0) return true;
        p += n;
    }
    return false;
}

/* ------------------------------------------------------------------------
 * The sample file
 * ------------------------------------------------------------------------ */

/* Options the sample sets to a working value instead of commenting out. */
static const struct {
    const char *name, *value;
} sample_set[] = {
    {"listen_addr", "127.0.0.1"}, {"listen_port", "6432"},      {"unix_socket_dir", "/tmp"},
    {"auth_type", "trust"},       {"pool_mode", "transaction"},
};

void config_write_sample(FILE *out)
{
    fputs(";; pgfunnel.ini — sample configuration for pgfunnel.\n"
          ";;\n"
          ";; Generated from pgfunnel's option table (config_write_sample); a unit\n"
          ";; test keeps this file in sync with it.  The format and option names are\n"
          ";; those of pgbouncer.ini, so an existing PgBouncer configuration loads\n"
          ";; unchanged (options pgfunnel does not know are ignored with a warning).\n"
          ";; Lines starting with ';' or '#' are comments; times are in seconds and\n"
          ";; may have a fraction (0.5).  %include FILE reads another file in place.\n"
          "\n",
          out);

    fputs("[databases]\n"
          ";; name = key=value ...  Keys: dbname host port user password auth_user\n"
          ";; auth_query auth_dbname pool_size min_pool_size reserve_pool_size\n"
          ";; max_db_connections pool_mode server_lifetime connect_query\n"
          ";; client_encoding datestyle timezone application_name.\n"
          ";; Values with blanks are single-quoted; '' is a literal quote.\n"
          "\n"
          ";; any database, on the local PostgreSQL server\n"
          "* = host=127.0.0.1 port=5432\n"
          "\n"
          ";; a different name on the server, with its own pool size\n"
          ";appdb = host=127.0.0.1 port=5432 dbname=app pool_size=50 reserve_pool_size=5\n"
          ";; several hosts, a forced user, and session defaults\n"
          ";reports = host=db1,db2 dbname=reports user=report password=secret "
          "pool_mode=session\n"
          ";; a quoted value\n"
          ";legacy = dbname=legacy connect_query='SET search_path TO ''legacy'', public'\n"
          "\n",
          out);

    fputs("[users]\n"
          ";; name = key=value ...  Keys: pool_mode pool_size reserve_pool_size\n"
          ";; max_user_connections.\n"
          ";batch = pool_mode=session max_user_connections=10\n"
          "\n",
          out);

    fputs("[pgbouncer]\n", out);
    for (size_t i = 0; i < N_OPTIONS; i++) {
        const OptionDef *opt = &options[i];
        const char *set = NULL;

        for (size_t k = 0; k < sizeof(sample_set) / sizeof(sample_set[0]); k++) {
            if (strcmp(sample_set[k].name, opt->name) == 0) set = sample_set[k].value;
        }
        fprintf(out, "\n; %s", opt->doc);
        if (opt->type == OPT_ENUM) {
            char choices[256];

            join_choices(opt->choices, choices, sizeof(choices));
            fprintf(out, " (%s)", choices);
        }
        fprintf(out, "%s\n", opt->reloadable ? "" : " [restart]");
        if (set != NULL)
            fprintf(out, "%s = %s\n", opt->name, set);
        else if (opt->default_value[0] == '\0')
            fprintf(out, ";%s =\n", opt->name);
        else
            fprintf(out, ";%s = %s\n", opt->name, opt->default_value);
    }
}
