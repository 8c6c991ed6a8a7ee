/*
 * config.c — the [pgbouncer] option table, value parsing and formatting,
 * SET, the name helpers and the sample file.
 *
 * DESIGN
 * One static table, options[], describes every [pgbouncer] setting: its
 * type, where it lives in struct config, its default as written in the file,
 * whether RELOAD/SET may change it, and a one-line doc.  Defaults, parsing,
 * SHOW CONFIG (config_format_value), SET (config_set) and the sample file
 * (config_write_sample) are all driven by that table, so a new option is one
 * table line plus one struct field.  Reading files is config_load.c's job;
 * [databases] and [users] entries are config_db.c's.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "config.h"
#include "config_internal.h"

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
static const char *const tsa_choices[] = {"any",     "read-write",     "read-only", "primary",
                                          "standby", "prefer-standby", NULL};
static const char *const lb_choices[] = {"disable", "round-robin", NULL};

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
    {.name = "event_loops",
     .type = OPT_WORKERS,
     .offset = OFF(event_loops),
     .default_value = "1",
     .reloadable = RESTART,
     .min = 1,
     .max = 64,
     .doc = "Event loops (threads) that share the clients; auto = one per online CPU"},
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
    STR(auth_dbname, "", RELOAD,
        "[databases] entry whose server and database auth_query runs on; empty = the client's"),

    /* pooling */
    ENUM(pool_mode, "session", pool_mode_choices, RELOAD,
         "When a server connection returns to the pool"),
    INT(max_client_conn, "100", 1, INT_MAX, RELOAD, "Maximum number of client connections"),
    INT(default_pool_size, "20", 1, 100000, RELOAD, "Server connections per user/database pair"),
    INT(min_pool_size, "0", 0, 100000, RELOAD,
        "Keep at least this many server connections open per pool (once used, or from the start "
        "with a forced user)"),
    INT(reserve_pool_size, "0", 0, 100000, RELOAD,
        "Extra connections a pool may use when clients wait too long"),
    TIME(reserve_pool_timeout, "5", RELOAD,
         "Seconds a client waits before the reserve pool is used"),
    INT(max_db_connections, "0", 0, INT_MAX, RELOAD,
        "Maximum server connections per database; 0 = unlimited"),
    INT(max_user_connections, "0", 0, INT_MAX, RELOAD,
        "Maximum server connections per user; 0 = unlimited"),
    INT(max_db_client_connections, "0", 0, INT_MAX, RELOAD,
        "Maximum client connections per database; 0 = unlimited"),
    INT(max_user_client_connections, "0", 0, INT_MAX, RELOAD,
        "Maximum client connections per user; 0 = unlimited"),
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
    ENUM(load_balance_hosts, "round-robin", lb_choices, RELOAD,
         "Host lists: each new server connection starts at the next host (round-robin), or "
         "stays on one host until a connection to it fails (disable)"),
    ENUM(target_session_attrs, "any", tsa_choices, RELOAD,
         "Which servers of a host list new server connections accept (libpq's meanings)"),
    TIME(host_check_interval, "1", RELOAD,
         "Seconds between health checks (connect + role) of each host of a multi-host entry; "
         "0 = off"),
    TIME(host_check_timeout, "2", RELOAD,
         "Seconds a host health check may take before the host counts as down"),
    INT(peer_id, "0", 0, PEER_ID_MAX, RESTART,
        "This instance's id among peers sharing cancel requests ([peers]); 0 = peering off"),

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
         "Close unused server connections older than this many seconds; 0 = use each one once"),
    TIME(server_idle_timeout, "600", RELOAD,
         "Close server connections idle this many seconds; 0 = never"),
    TIME(server_connect_timeout, "15", RELOAD, "Seconds to wait for a server login to finish"),
    TIME(server_login_retry, "15", RELOAD, "Seconds to wait before retrying a failed login"),

    /* client timeouts */
    TIME(client_login_timeout, "60", RELOAD, "Disconnect clients that do not log in in time"),
    TIME(query_timeout, "0", RELOAD,
         "Cancel queries running (or queued for a server) longer than this; 0 = off"),
    TIME(query_wait_timeout, "120", RELOAD,
         "Disconnect clients waiting this long for a server; 0 = wait forever"),
    TIME(cancel_wait_timeout, "10", RELOAD,
         "Drop cancel requests that wait this long for a server; 0 = wait forever"),
    TIME(client_idle_timeout, "0", RELOAD, "Disconnect clients idle this long; 0 = off"),
    TIME(idle_transaction_timeout, "0", RELOAD,
         "Disconnect clients idle in a transaction this long; 0 = off"),
    TIME(suspend_timeout, "10", RELOAD, "Seconds to wait for buffers to flush on SUSPEND"),
    TIME(autodb_idle_timeout, "3600", RELOAD,
         "Free pools without clients or servers, and * databases without pools, after this many "
         "seconds unused; 0 = never"),

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

/* A string option's value; a secret one is wiped before it is freed. */
static void config_string_free(const OptionDef *opt, char *s)
{
    if (s != NULL && opt->secret) explicit_bzero(s, strlen(s));
    free(s);
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);

    return n < 1 ? 1 : n > 256 ? 256 : (int)n;
}

int config_option_parse(Config *cfg, const OptionDef *opt, const char *value, char *msg,
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
        config_string_free(opt, *(char **)field);
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
        if (options[i].type == OPT_STRING)
            config_string_free(&options[i], *(char **)opt_field(cfg, &options[i]));
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

void config_ref(Config *cfg)
{
    if (cfg) atomic_fetch_add(&cfg->refs, 1);
}

void config_unref(Config *cfg)
{
    if (cfg && atomic_fetch_sub(&cfg->refs, 1) == 1) config_free(cfg);
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

Config *config_clone(const Config *src)
{
    Config *c = malloc(sizeof(*c));
    if (!c) return NULL;
    memcpy(c, src, sizeof(*c));
    /* nothing below is shared with src: strings, lists and indexes are copied */
    for (size_t i = 0; i < N_OPTIONS; i++)
        if (options[i].type == OPT_STRING) *(char **)opt_field(c, &options[i]) = NULL;
    c->databases = NULL;
    c->users = NULL;
    hmap_init(&c->db_index);
    hmap_init(&c->user_index);
    c->warnings = NULL;
    c->nwarnings = 0;
    c->files = NULL;
    c->nfiles = 0;
    c->path = NULL;
    atomic_init(&c->refs, 1);
    bool ok = true;
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (options[i].type != OPT_STRING) continue;
        const char *v = *(char *const *)opt_field_const(src, &options[i]);
        char **dst = (char **)opt_field(c, &options[i]);
        if (v && !(*dst = strdup(v))) ok = false;
    }
    if (src->nfiles > 0 && !(c->files = calloc((size_t)src->nfiles, sizeof(char *)))) ok = false;
    for (int i = 0; ok && i < src->nfiles; i++, c->nfiles++)
        if (!(c->files[i] = strdup(src->files[i]))) ok = false;
    if (ok && src->nwarnings > 0 && !(c->warnings = calloc((size_t)src->nwarnings, sizeof(char *))))
        ok = false;
    for (int i = 0; ok && i < src->nwarnings; i++, c->nwarnings++)
        if (!(c->warnings[i] = strdup(src->warnings[i]))) ok = false;
    if (src->path && !(c->path = dup_or_null(src->path))) ok = false;
    if (ok && config_db_clone(c, src) < 0) ok = false;
    if (!ok) {
        config_free(c);
        return NULL;
    }
    return c;
}

Config *config_defaults(void)
{
    Config *cfg = calloc(1, sizeof(*cfg));
    char msg[256];

    if (cfg == NULL) return NULL;
    atomic_init(&cfg->refs, 1);
    /* Defaults go through the same parser as the file, so the table's
     * default strings are validated too (a unit test loads them all). */
    for (size_t i = 0; i < N_OPTIONS; i++) {
        if (config_option_parse(cfg, &options[i], options[i].default_value, msg, sizeof(msg)) < 0) {
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
    return config_option_parse(cfg, opt, value, err, errlen);
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

const char *config_tsa_name(int tsa)
{
    return choice_name(tsa_choices, 6, tsa);
}

const char *config_lb_name(int lb)
{
    return choice_name(lb_choices, 2, lb);
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
          ";; max_db_connections max_db_client_connections pool_mode server_lifetime\n"
          ";; connect_query"
          " client_encoding datestyle timezone application_name\n"
          ";; load_balance_hosts target_session_attrs.\n"
          ";; Values with blanks are single-quoted; '' is a literal quote.\n"
          ";; host may list several hosts (host=h1,h2); port then gives one port\n"
          ";; for all or one per host (port=5432,5433).\n"
          "\n"
          ";; any database, on the local PostgreSQL server\n"
          "* = host=127.0.0.1 port=5432\n"
          "\n"
          ";; a different name on the server, with its own pool size\n"
          ";appdb = host=127.0.0.1 port=5432 dbname=app pool_size=50 reserve_pool_size=5\n"
          ";; several hosts, a forced user, and session defaults\n"
          ";reports = host=db1,db2 dbname=reports user=report password=secret "
          "pool_mode=session\n"
          ";; a primary and its standbys: writes follow the primary after a failover,\n"
          ";; reads go to the standbys while there is one\n"
          ";app = host=pg1,pg2,pg3 dbname=app target_session_attrs=read-write\n"
          ";app_ro = host=pg1,pg2,pg3 dbname=app target_session_attrs=prefer-standby\n"
          ";; a quoted value\n"
          ";legacy = dbname=legacy connect_query='SET search_path TO ''legacy'', public'\n"
          "\n",
          out);

    fputs("[users]\n"
          ";; name = key=value ...  Keys: pool_mode pool_size reserve_pool_size\n"
          ";; max_user_connections max_user_client_connections query_timeout\n"
          ";; idle_transaction_timeout client_idle_timeout.\n"
          ";batch = pool_mode=session max_user_connections=10\n"
          "\n",
          out);

    fputs("[peers]\n"
          ";; peer_id = host=... port=...  Other pgfunnel (or PgBouncer 1.21+) instances\n"
          ";; behind the same TCP load balancer: a cancel request whose key belongs to\n"
          ";; one of them is forwarded there.  Set peer_id below; an entry for this\n"
          ";; instance's own id is allowed and ignored.\n"
          ";1 = host=10.0.0.1 port=6432\n"
          ";2 = host=10.0.0.2 port=6432\n"
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
