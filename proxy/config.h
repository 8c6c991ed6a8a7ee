/*
 * config.h — the configuration: one table of options drives parsing,
 * validation, defaults, SHOW CONFIG, SET and the sample conf/pgfunnel.ini.
 *
 * A Config is immutable once loaded: a reload builds a new one and the loop
 * swaps the pointer, so nothing ever sees a half-applied file.  The caller of
 * config_load() owns the result and frees it with config_free().
 *
 * Names and meanings follow pgbouncer.ini for every option both share, so a
 * PgBouncer configuration loads unchanged (unknown [pgbouncer] options only
 * warn).  Times are given in seconds (fractions allowed) and stored in usec.
 */
#ifndef PGFUNNEL_CONFIG_H
#define PGFUNNEL_CONFIG_H

#include <stdatomic.h>
#include <stdio.h>
#include "hmap.h"
#include "types.h"

typedef enum {
    POOL_MODE_SESSION = 0,
    POOL_MODE_TRANSACTION,
    POOL_MODE_STATEMENT,
} PoolMode;

typedef enum {
    AUTH_TYPE_TRUST = 0,
    AUTH_TYPE_ANY,
    AUTH_TYPE_PLAIN,
    AUTH_TYPE_MD5,
    AUTH_TYPE_SCRAM,
    AUTH_TYPE_CERT,
    AUTH_TYPE_HBA,
} AuthType;

/* sslmode values shared by client_tls_sslmode and server_tls_sslmode */
typedef enum {
    SSLMODE_DISABLE = 0,
    SSLMODE_ALLOW,
    SSLMODE_PREFER,
    SSLMODE_REQUIRE,
    SSLMODE_VERIFY_CA,
    SSLMODE_VERIFY_FULL,
} SslMode;

typedef enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON } LogFormat;

/* target_session_attrs, libpq's values and meanings (choice order = value) */
typedef enum {
    TSA_ANY = 0,
    TSA_READ_WRITE,
    TSA_READ_ONLY,
    TSA_PRIMARY,
    TSA_STANDBY,
    TSA_PREFER_STANDBY,
} TargetSessionAttrs;

/* load_balance_hosts, PgBouncer 1.24's values (choice order = value) */
typedef enum { LB_DISABLE = 0, LB_ROUND_ROBIN } LoadBalanceHosts;

/* Largest peer_id, as in PgBouncer: it takes 14 bits of the cancel key. */
#define PEER_ID_MAX 16383

/* How deep %include may nest; deeper is reported as an error (catches loops). */
#define CONFIG_MAX_INCLUDE_DEPTH 10

/* Longest accepted line in a configuration file, in bytes. */
#define CONFIG_MAX_LINE 32768

/* "unset" marker for per-database / per-user overrides of integer settings */
#define CONF_UNSET (-1)

/* One [databases] entry: `name = key=value ...`.  Strings are NULL when absent. */
struct db_conf {
    char *name;               /* the name clients connect to; "*" is the fallback */
    char *dbname;             /* backend database; NULL = same as name */
    char *host;               /* comma-separated list; NULL = libpq default (unix socket) */
    int port;                 /* 0 = 5432; with a port list, its first port */
    char *port_list;          /* port=p1,p2,...: one per host (checked at load); NULL = `port` */
    int target_session_attrs; /* CONF_UNSET or a TargetSessionAttrs */
    int load_balance_hosts;   /* CONF_UNSET or a LoadBalanceHosts */
    char *user;               /* forced backend user; NULL = client's own name */
    char *password;           /* password for `user` */
    char *auth_user;          /* per-database auth_user */
    char *auth_query;         /* per-database auth_query */
    char *auth_dbname;        /* [databases] entry that auth_query runs on */
    int pool_size;            /* CONF_UNSET = default_pool_size */
    int min_pool_size;        /* CONF_UNSET = global */
    int reserve_pool_size;    /* CONF_UNSET = global */
    int max_db_connections;   /* CONF_UNSET = global */
    int max_db_client_connections; /* CONF_UNSET = global */
    int pool_mode;                 /* CONF_UNSET or a PoolMode */
    usec_t server_lifetime;        /* CONF_UNSET = global */
    char *connect_query;           /* run once on each new server connection */
    char *client_encoding;         /* connection defaults passed to the backend */
    char *datestyle;
    char *timezone;
    char *application_name;
    const char *file; /* where it was defined, for messages (points into Config) */
    int line;
    DbConf *next;
};

/* One [users] entry: `name = key=value ...` */
struct user_conf {
    char *name;
    int pool_mode;                   /* CONF_UNSET or a PoolMode */
    int pool_size;                   /* CONF_UNSET = database/default */
    int reserve_pool_size;           /* CONF_UNSET */
    int max_user_connections;        /* CONF_UNSET = global */
    int max_user_client_connections; /* CONF_UNSET = global */
    /* for clients logging in as this user; CONF_UNSET = global */
    usec_t query_timeout, idle_transaction_timeout, client_idle_timeout;
    const char *file;
    int line;
    UserConf *next;
};

/* One [peers] entry: `peer_id = host=... port=...` (PgBouncer 1.19 syntax). */
struct peer_conf {
    int id;        /* 1..PEER_ID_MAX */
    char *host;    /* name, IP, or a unix socket directory (starts with '/') */
    int port;      /* 0 = 6432 */
    int pool_size; /* accepted for PgBouncer compatibility; CONF_UNSET when absent */
    const char *file;
    int line;
    PeerConf *next;
};

struct config {
    /* [pgbouncer] — generic */
    char *logfile;
    char *pidfile;
    char *listen_addr; /* comma list, "*" = all; "" = no TCP */
    int listen_port;
    char *unix_socket_dir; /* "" = no unix socket */
    int unix_socket_mode;
    char *unix_socket_group;
    char *user; /* -u / user= : switch to this OS user */
    int listen_backlog;
    bool so_reuseport;
    int workers;     /* worker threads; "auto" = cores */
    int event_loops; /* event loop threads; "auto" = cores */
    /* authentication */
    int auth_type; /* AuthType */
    char *auth_file;
    char *auth_hba_file;
    char *auth_query;
    char *auth_user;
    char *auth_dbname;
    /* pooling */
    int pool_mode; /* PoolMode */
    int max_client_conn;
    int default_pool_size;
    int min_pool_size;
    int reserve_pool_size;
    usec_t reserve_pool_timeout;
    int max_db_connections;          /* 0 = unlimited */
    int max_user_connections;        /* 0 = unlimited */
    int max_db_client_connections;   /* 0 = unlimited */
    int max_user_client_connections; /* 0 = unlimited */
    bool server_round_robin;
    char *ignore_startup_parameters; /* comma list */
    char *track_extra_parameters;    /* comma list */
    int load_balance_hosts;          /* LoadBalanceHosts: default of the [databases] key */
    int target_session_attrs;        /* TargetSessionAttrs: default of the [databases] key */
    usec_t host_check_interval;      /* health checks of multi-host entries; 0 = off */
    usec_t host_check_timeout;
    int peer_id; /* 0 = peering off */
    int max_prepared_statements;
    bool application_name_add_host;
    /* server connections */
    char *server_reset_query;
    bool server_reset_query_always;
    char *server_check_query;
    usec_t server_check_delay;
    bool server_fast_close;
    usec_t server_lifetime;
    usec_t server_idle_timeout;
    usec_t server_connect_timeout;
    usec_t server_login_retry;
    /* client timeouts */
    usec_t client_login_timeout;
    usec_t query_timeout;
    usec_t query_wait_timeout;
    usec_t cancel_wait_timeout;
    usec_t client_idle_timeout;
    usec_t idle_transaction_timeout;
    usec_t suspend_timeout;
    usec_t autodb_idle_timeout;
    /* console / admin */
    char *admin_users; /* comma list */
    char *stats_users; /* comma list */
    char *admin_http_addr;
    int admin_http_port; /* 0 = off */
    bool admin_http_auth;
    /* logging */
    bool syslog;
    char *syslog_ident;
    char *syslog_facility;
    bool log_connections;
    bool log_disconnections;
    bool log_pooler_errors;
    bool log_stats;
    usec_t stats_period;
    int verbose;
    int log_format; /* LogFormat */
    /* network */
    int pkt_buf;
    int max_packet_size;
    int sbuf_loopcnt;
    bool tcp_keepalive;
    int tcp_keepcnt;
    int tcp_keepidle;
    int tcp_keepintvl;
    int tcp_user_timeout;
    int tcp_socket_buffer;
    bool tcp_defer_accept;
    usec_t dns_max_ttl;
    usec_t dns_nxdomain_ttl;
    /* TLS, client side */
    int client_tls_sslmode; /* SslMode */
    char *client_tls_key_file;
    char *client_tls_cert_file;
    char *client_tls_ca_file;
    char *client_tls_protocols;
    char *client_tls_ciphers;
    char *client_tls_ecdhcurve;
    char *client_tls_dheparams;
    /* TLS, server side */
    int server_tls_sslmode; /* SslMode */
    char *server_tls_ca_file;
    char *server_tls_key_file;
    char *server_tls_cert_file;
    char *server_tls_protocols;
    char *server_tls_ciphers;

    DbConf *databases; /* in file order; the "*" entry is kept in the list too */
    UserConf *users;
    bool user_timeouts; /* some [users] entry sets a timeout: clients' are looked up per user */
    PeerConf *peers;    /* [peers], in file order */
    Hmap db_index;      /* DbConf by name (lookups on every login) */
    Hmap user_index;    /* UserConf by name */
    atomic_int refs;    /* config_ref/config_unref: every loop holds one while it uses this */
    char *path;         /* absolute path of the main file, for RELOAD */
    char **warnings;    /* "file:line: message" for ignored/unknown options */
    int nwarnings;
    char **files; /* every file read (main + %include), owned; messages point here */
    int nfiles;
};

/* How an option is typed in the table. */
typedef enum {
    OPT_STRING,
    OPT_INT,
    OPT_BOOL,
    OPT_TIME,    /* seconds, fractional allowed, stored as usec_t */
    OPT_ENUM,    /* one of OptionDef.choices, stored as int index */
    OPT_WORKERS, /* int >= 1 or "auto" */
    OPT_MODE,    /* octal file mode, e.g. 0777 */
} OptionType;

typedef struct option_def {
    const char *name;
    OptionType type;
    size_t offset;              /* into struct config */
    const char *default_value;  /* as it would be written in the file */
    bool reloadable;            /* may change by RELOAD / SET without restart */
    bool secret;                /* masked in SHOW CONFIG */
    long min, max;              /* for OPT_INT */
    const char *const *choices; /* for OPT_ENUM, NULL-terminated */
    /* OPT_ENUM values PgBouncer accepts that pgfunnel refuses with a clear
     * "not supported" message instead of "invalid value"; NULL-terminated */
    const char *const *unsupported;
    const char *doc; /* one line, used for the sample file and SHOW CONFIG */
} OptionDef;

/*
 * Load and validate `path` (and its %include files).  On success returns a
 * new Config.  On failure returns NULL and writes every error found, one per
 * line, as "file:line: message", to err (truncated to errlen).
 */
Config *config_load(const char *path, char *err, size_t errlen) WUR;
void config_free(Config *cfg);

/*
 * A Config is shared by every event loop and never changed once in use:
 * a reload or SET makes a new one (config_clone + config_set for SET) that
 * each loop adopts.  References: a new Config has one; config_unref frees
 * it when the last goes.
 */
void config_ref(Config *cfg);
void config_unref(Config *cfg);
Config *config_clone(const Config *cfg) WUR;

/* A Config with every option at its default and no databases. */
Config *config_defaults(void) WUR;

/* The option table. */
size_t config_option_count(void);
const OptionDef *config_option_at(size_t i);
const OptionDef *config_option_find(const char *name);

/* Format an option's current value as it would be written in the INI (secrets not masked). */
void config_format_value(const Config *cfg, const OptionDef *opt, char *buf, size_t len);

/*
 * Set one option on an existing Config (admin `SET key = value`).  Returns 0,
 * or -1 with a message in err (unknown option, not reloadable, bad value).
 */
int config_set(Config *cfg, const char *name, const char *value, char *err, size_t errlen) WUR;

/* Look a database up by name, falling back to the "*" entry; NULL if neither. */
const DbConf *config_find_db(const Config *cfg, const char *name);
const UserConf *config_find_user(const Config *cfg, const char *name);
/* The [peers] entry of a peer id; NULL if there is none. */
const PeerConf *config_find_peer(const Config *cfg, int id);

/* Write the commented sample configuration (all options with defaults and docs). */
void config_write_sample(FILE *out);
/* Write the pgfunnel.ini(5) manual page (config_man.c), from the same table. */
void config_write_man(FILE *out);

/* Names of pool modes / auth types / sslmodes, for messages and SHOW output. */
const char *config_pool_mode_name(int mode);
const char *config_auth_type_name(int type);
const char *config_sslmode_name(int mode);
const char *config_tsa_name(int tsa);
const char *config_lb_name(int lb);

/* True if `name` is in the comma/space separated list (case-insensitive). */
bool config_list_contains(const char *list, const char *name);

#endif
