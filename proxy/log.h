/*
 * log.h — levelled logging with an asynchronous writer.
 *
 * A line is formatted on the calling thread (after the level check, so
 * disabled levels cost one comparison) and appended to a bounded queue; a
 * dedicated writer thread writes it to stderr and/or the logfile and/or
 * syslog.  When the queue is full the line is dropped and counted — the
 * event loop never blocks on disk.  log_reopen() (SIGHUP) reopens the file so
 * logrotate works.
 *
 * Formats: text  "2026-11-26 05:30:35.123 UTC [pid] LOG C-17 app@db 10.0.0.5:4312: message"
 *          json  {"ts":"...","pid":N,"level":"LOG","conn":"C-17 ...","msg":"..."}
 * Text lines escape control characters, backslashes and invalid UTF-8
 * (\n, \xHH, \\): client-supplied names and SQL cannot forge a line.
 * Secrets never reach this module: callers must not pass passwords.
 */
#ifndef PGFUNNEL_LOG_H
#define PGFUNNEL_LOG_H

#include <stdarg.h>
#include "types.h"

typedef enum {
    LOG_LEVEL_FATAL = 0, /* logged, then the caller exits */
    LOG_LEVEL_ERROR,
    LOG_LEVEL_WARNING,
    LOG_LEVEL_LOG,   /* normal operational messages (PgBouncer's LOG) */
    LOG_LEVEL_DEBUG, /* -v */
    LOG_LEVEL_NOISE, /* -vv */
} LogLevel;

typedef struct log_settings {
    const char *logfile; /* NULL or "" = none */
    bool to_stderr;      /* false with -q or when daemonized */
    bool syslog;
    const char *syslog_ident;
    const char *syslog_facility; /* "daemon", "local0".. */
    int format;                  /* LogFormat from config.h */
    int verbose;                 /* 0 = LOG, 1 = DEBUG, 2+ = NOISE */
    int queue_lines;             /* bound of the queue; 0 = default (8192) */
} LogSettings;

/* The current maximum level that is emitted; read before formatting. */
extern int log_max_level;

/* Would a line of `level` be written?  A relaxed atomic load: a plain mov, and race-free. */
static inline bool log_enabled(int level)
{
    return level <= __atomic_load_n(&log_max_level, __ATOMIC_RELAXED);
}

/*
 * Start the writer thread (first call) or apply new settings (later calls,
 * e.g. on reload: a changed logfile is opened, the old one closed).
 * Returns 0 or -errno with a message in err (e.g. logfile cannot be opened).
 */
int log_configure(const LogSettings *s, char *err, size_t errlen) WUR;

/* Ask the writer to reopen the logfile (SIGHUP / logrotate). */
void log_reopen(void);

/*
 * Flush everything queued and stop the writer thread.  Safe to call twice;
 * afterwards log_write() writes synchronously to stderr, and log_configure()
 * may start a new writer.  Call it before exit() so no queued line is lost.
 */
void log_shutdown(void);

/* Wait until every line queued before the call has been written (no-op without a writer). */
void log_flush(void);

/*
 * Test hook: while paused the writer leaves queued lines alone, so tests can
 * fill the queue deterministically.  log_shutdown() still drains the queue.
 * Do not call log_flush() or log FATAL while paused.
 */
void log_pause_writer(bool paused);

/* Lines dropped because the queue was full, since start. */
uint64_t log_dropped_count(void);
/* Lines written since start. */
uint64_t log_written_count(void);

/*
 * The last warnings and errors (WARNING, ERROR, FATAL), kept in memory for
 * the dashboard (http.c) whatever the destinations and the queue do: a ring
 * of LOG_RECENT_MAX entries of at most LOG_RECENT_TEXT bytes each, written
 * by whichever thread logs (under a lock of its own, taken for a copy).
 * The text is the connection prefix and the message escaped as text-format
 * lines are (no control characters, valid UTF-8), so a client-chosen name
 * cannot forge a line there either; a longer one is cut and ends in "...".
 */
#define LOG_RECENT_MAX  32
#define LOG_RECENT_TEXT 512

typedef struct log_recent {
    uint64_t seq; /* 1 for the first warning since start, then 2, ... */
    int level;    /* LogLevel */
    char ts[48];  /* "2026-11-26 05:30:35.123 UTC" */
    char text[LOG_RECENT_TEXT];
} LogRecent;

/*
 * Copy the newest min(max, LOG_RECENT_MAX) entries into out, oldest first;
 * returns how many.  *total (may be NULL) gets the number of warnings and
 * errors since start (the newest entry's seq).
 */
int log_recent_warnings(LogRecent *out, int max, uint64_t *total);

/* "WARNING", "ERROR", ... */
const char *log_level_name(int level);

/* conn_prefix may be NULL; it is the "C-17 app@db 10.0.0.5:4312" of a connection. */
void log_write(int level, const char *conn_prefix, const char *fmt, ...) PRINTF_LIKE(3, 4);
void log_writev(int level, const char *conn_prefix, const char *fmt, va_list ap) PRINTF_LIKE(3, 0);

#define log_at(level, prefix, ...)                                                                 \
    do {                                                                                           \
        if (log_enabled(level)) log_write((level), (prefix), __VA_ARGS__);                         \
    } while (0)

#define log_fatal(...)   log_at(LOG_LEVEL_FATAL, NULL, __VA_ARGS__)
#define log_error(...)   log_at(LOG_LEVEL_ERROR, NULL, __VA_ARGS__)
#define log_warning(...) log_at(LOG_LEVEL_WARNING, NULL, __VA_ARGS__)
#define log_info(...)    log_at(LOG_LEVEL_LOG, NULL, __VA_ARGS__)
#define log_debug(...)   log_at(LOG_LEVEL_DEBUG, NULL, __VA_ARGS__)
#define log_noise(...)   log_at(LOG_LEVEL_NOISE, NULL, __VA_ARGS__)

#endif
