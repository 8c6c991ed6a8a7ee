/*
 * log.c — levelled logging with an asynchronous writer (see log.h).
 *
 * DESIGN
 *
 * A line is formatted completely on the calling thread (timestamp, pid,
 * level, connection prefix, message; text or JSON) into a malloc'd LogLine
 * and appended to a bounded FIFO under log_lock.  When the FIFO holds
 * queue_lines lines the new line is dropped and counted: the event loop must
 * never wait for a disk, a full pipe on stderr or syslog.  The writer reports
 * the count as one "WARNING log: N lines dropped (queue full)" line once the
 * queue has room again.
 *
 * The writer is a dedicated thread owned by this module, not a job on the
 * generic worker pool (workq.c): logging must keep working when the pool is
 * saturated or stuck (hashing storms, a hanging PQcancel), which is exactly
 * when we need the log, and the pool itself logs.  The writer takes the
 * whole queue at once and writes it with one writev() per destination
 * (stderr, logfile; writev is unbuffered, so the batch is flushed when it
 * returns), plus one syslog() call per line since syslog has no batch API.
 *
 * Only the writer touches the logfile descriptor and syslog.  Settings reach
 * it in-band: log_configure() queues a marker entry carrying the new
 * destinations, so lines queued before a reconfiguration still go where they
 * were meant to and lines after it go to the new places, without a second
 * channel to keep in order.  log_configure() opens a new logfile on the
 * calling thread (so that an unwritable path is reported to the caller, e.g.
 * as a reload error) and hands the descriptor over in the marker.
 * log_reopen() sets a flag; the writer closes and reopens the file by path
 * before its next write (logrotate renames the file, sends SIGHUP, and new
 * lines go to a fresh file at the configured path).
 *
 * Before log_configure() and after log_shutdown() there is no writer:
 * log_write() formats the line and write()s it to stderr synchronously, so
 * early startup errors are never lost.  FATAL lines are never dropped: they
 * are queued past the bound and the caller waits until the writer has
 * written them (the caller is about to exit).  Callers should still call
 * log_shutdown() before exit() so the rest of the queue is flushed.
 *
 * Threads and locks: log_lock protects the queue and the flags; log_life_lock serialises
 * log_configure()/log_shutdown() (thread start and join).  Order: log_life_lock before log_lock.
 * The counters and the caller-visible settings (format, log_max_level) are atomics so that readers
 * need no lock (log_enabled() is a relaxed atomic load).  Changing settings while other threads
 * log is safe.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>
#include <sys/uio.h>

#include "config.h"
#include "log.h"

/* Longest line content; longer lines are cut and end in "...". */
#define LOG_LINE_MAX       4096
#define LOG_QUEUE_DEFAULT  8192
#define LOG_IOV_BATCH      1024 /* iovecs per writev (IOV_MAX on Linux) */
#define LOG_FILE_MODE      0640
#define LOG_TRUNC_MARK     "..."
#define LOG_TRUNC_MARK_LEN 3

int log_max_level = LOG_LEVEL_LOG;

typedef struct writer_settings WriterSettings;

/*
 * One formatted line, owned by the queue and then by the writer, which frees
 * it.  An entry with `settings` set is a marker from log_configure(): it holds
 * no text and does not count against the queue bound.
 */
typedef struct log_line {
    struct log_line *next;
    WriterSettings *settings;
    int level;
    size_t len;        /* bytes in text, including the final newline */
    size_t syslog_off; /* syslog gets text + syslog_off (no timestamp/pid) */
    char text[];
} LogLine;

/* Destinations only the writer uses; they travel in a queue marker (see DESIGN). */
struct writer_settings {
    char *logfile;  /* NULL = none */
    int logfile_fd; /* opened by log_configure, -1 = none */
    bool to_stderr;
    bool use_syslog;
    char *syslog_ident;
    int syslog_facility;
};

static pthread_mutex_t log_life_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t log_wake = PTHREAD_COND_INITIALIZER;    /* to the writer */
static pthread_cond_t log_flushed = PTHREAD_COND_INITIALIZER; /* from the writer */

/* log_lock protects everything below up to the atomics. */
static bool log_running; /* a writer accepts lines */
static bool log_stop;    /* log_shutdown asked the writer to drain and exit */
static bool log_paused;  /* test hook: the writer leaves the queue alone */
static bool log_reopen_requested;
static LogLine *queue_head, *queue_tail;
static int queue_len;
static int queue_max = LOG_QUEUE_DEFAULT;
static uint64_t seq_queued;  /* lines ever queued */
static uint64_t seq_written; /* lines the writer has finished with */
/* Drops already reported; writer only (kept across restarts of the writer). */
static uint64_t dropped_reported;

/* Thread handle: only touched under log_life_lock. */
static pthread_t writer_thread;
static bool writer_started;

/* Read by callers without a lock. */
static int log_format_cur = LOG_FORMAT_TEXT;
static uint64_t dropped_count;
static uint64_t written_count;

static const char *const level_names[] = {"FATAL", "ERROR", "WARNING", "LOG", "DEBUG", "NOISE"};

const char *log_level_name(int level)
{
    if (level < LOG_LEVEL_FATAL) level = LOG_LEVEL_FATAL;
    if (level > LOG_LEVEL_NOISE) level = LOG_LEVEL_NOISE;
    return level_names[level];
}

static int log_level_to_syslog(int level)
{
    switch (level) {
    case LOG_LEVEL_FATAL:
        return LOG_CRIT; /* as PgBouncer does */
    case LOG_LEVEL_ERROR:
        return LOG_ERR;
    case LOG_LEVEL_WARNING:
        return LOG_WARNING;
    case LOG_LEVEL_LOG:
        return LOG_INFO;
    default:
        return LOG_DEBUG;
    }
}

static int log_facility_from_name(const char *name)
{
    static const struct {
        const char *name;
        int value;
    } map[] = {
        {"auth", LOG_AUTH},     {"authpriv", LOG_AUTHPRIV}, {"cron", LOG_CRON},
        {"daemon", LOG_DAEMON}, {"lpr", LOG_LPR},           {"mail", LOG_MAIL},
        {"news", LOG_NEWS},     {"syslog", LOG_SYSLOG},     {"user", LOG_USER},
        {"uucp", LOG_UUCP},     {"local0", LOG_LOCAL0},     {"local1", LOG_LOCAL1},
        {"local2", LOG_LOCAL2}, {"local3", LOG_LOCAL3},     {"local4", LOG_LOCAL4},
        {"local5", LOG_LOCAL5}, {"local6", LOG_LOCAL6},     {"local7", LOG_LOCAL7},
    };

    if (!name || !*name) return LOG_DAEMON;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++) {
        if (strcmp(map[i].name, name) == 0) return map[i].value;
    }
    return -1;
}

/* ---- formatting (caller's thread) ------------------------------------- */

/* A bounded output buffer; `trunc` is set once something did not fit. */
typedef struct {
    char *buf;
    size_t len, cap;
    bool trunc;
} LineBuf;

static void lb_put(LineBuf *b, const char *s, size_t n)
{
    if (b->trunc) return;
    if (n > b->cap - b->len) {
        b->trunc = true;
        return;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

static void lb_puts(LineBuf *b, const char *s)
{
    lb_put(b, s, strlen(s));
}

/*
 * Length of the valid UTF-8 sequence at s (n bytes available), or 0 when it
 * is invalid: overlong forms, surrogates and code points above U+10FFFF are
 * rejected as RFC 3629 says.
 */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the 2nd byte */

    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        return 0;
    }
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
    }
    return len;
}

/* Drop an incomplete UTF-8 sequence that vsnprintf's truncation left at the end. */
static size_t utf8_trim_tail(const char *s, size_t len)
{
    size_t i = len;

    /* Walk back over at most 3 continuation bytes to the lead byte. */
    while (i > 0 && len - i < 3 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0) return len;
    unsigned char lead = (unsigned char)s[i - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    if (need > 1 && len - (i - 1) < need) return i - 1;
    return len;
}

/* Append s as the inside of a JSON string. */
static void lb_put_json(LineBuf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    char esc[8];

    for (size_t i = 0; i < n && !b->trunc;) {
        unsigned char c = s[i];
        switch (c) {
        case '"':
            lb_put(b, "\\\"", 2);
            break;
        case '\\':
            lb_put(b, "\\\\", 2);
            break;
        case '\n':
            lb_put(b, "\\n", 2);
            break;
        case '\r':
            lb_put(b, "\\r", 2);
            break;
        case '\t':
            lb_put(b, "\\t", 2);
            break;
        case '\b':
            lb_put(b, "\\b", 2);
            break;
        case '\f':
            lb_put(b, "\\f", 2);
            break;
        default:
            if (c < 0x20 || c == 0x7F) {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                lb_put(b, esc, 6);
            } else if (c < 0x80) {
                lb_put(b, (const char *)s + i, 1);
            } else {
                size_t len = utf8_seq_len(s + i, n - i);
                if (len == 0) {
                    lb_put(b, "\\ufffd", 6);
                } else {
                    lb_put(b, (const char *)s + i, len);
                    i += len;
                    continue;
                }
            }
            break;
        }
        i++;
    }
}

/*
 * Append s to a text-format line with every byte that could end the line,
 * rewrite the terminal or pass for something else escaped: control
 * characters as \n \r \t or \xHH (DEL too), a backslash as \\ (so an
 * escape in the output is never ambiguous) and bytes that are not valid
 * UTF-8 as \xHH.  User and database names, application names and SQL
 * echoed in errors come from clients: without this a name containing a
 * newline would forge a whole log line.  A valid UTF-8 sequence is copied
 * whole or not at all, so truncation never splits one.
 */
static void lb_put_text(LineBuf *b, const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    char esc[8];

    for (size_t i = 0; i < n && !b->trunc;) {
        unsigned char c = s[i];
        size_t len = 1;
        if (c >= 0x20 && c < 0x7F && c != '\\') {
            size_t run = 1; /* the usual case: a run of plain ASCII */
            while (i + run < n && s[i + run] >= 0x20 && s[i + run] < 0x7F && s[i + run] != '\\')
                run++;
            if (run > b->cap - b->len) { /* fill the line, then it is cut */
                lb_put(b, str + i, b->cap - b->len);
                b->trunc = true;
                return;
            }
            lb_put(b, str + i, run);
            i += run;
            continue;
        }
        if (c == '\\') {
            lb_put(b, "\\\\", 2);
        } else if (c == '\n') {
            lb_put(b, "\\n", 2);
        } else if (c == '\r') {
            lb_put(b, "\\r", 2);
        } else if (c == '\t') {
            lb_put(b, "\\t", 2);
        } else if (c >= 0x80 && (len = utf8_seq_len(s + i, n - i)) > 0) {
            lb_put(b, str + i, len);
        } else {
            len = 1;
            snprintf(esc, sizeof(esc), "\\x%02x", c);
            lb_put(b, esc, 4);
        }
        i += len;
    }
}

/* ---- recent warnings (for the dashboard) ------------------------------ */

/*
 * A fixed ring: recent_seq counts every warning since start, the entry for
 * seq n is recent[(n - 1) % LOG_RECENT_MAX].  recent_lock is a leaf: nothing
 * else is locked while it is held, so any thread may log at any time.
 */
static pthread_mutex_t recent_lock = PTHREAD_MUTEX_INITIALIZER;
static LogRecent recent[LOG_RECENT_MAX];
static uint64_t recent_seq;

/* Keep a warning or error: prefix and message escaped as in a text line. */
static void recent_push(int level, const char *ts, const char *prefix, const char *msg,
                        size_t msglen)
{
    char text[LOG_RECENT_TEXT];
    LineBuf b = {.buf = text, .len = 0, .cap = sizeof(text) - LOG_TRUNC_MARK_LEN - 1};

    while (msglen > 0 && (msg[msglen - 1] == '\n' || msg[msglen - 1] == '\r'))
        msglen--;
    if (prefix) {
        lb_put_text(&b, prefix, strlen(prefix));
        lb_puts(&b, ": ");
    }
    lb_put_text(&b, msg, msglen);
    if (b.trunc) {
        memcpy(text + b.len, LOG_TRUNC_MARK, LOG_TRUNC_MARK_LEN);
        b.len += LOG_TRUNC_MARK_LEN;
    }
    text[b.len] = '\0';

    pthread_mutex_lock(&recent_lock);
    LogRecent *r = &recent[recent_seq % LOG_RECENT_MAX];
    r->seq = ++recent_seq;
    r->level = level;
    snprintf(r->ts, sizeof(r->ts), "%s", ts);
    memcpy(r->text, text, b.len + 1);
    pthread_mutex_unlock(&recent_lock);
}

int log_recent_warnings(LogRecent *out, int max, uint64_t *total)
{
    pthread_mutex_lock(&recent_lock);
    uint64_t n = recent_seq < LOG_RECENT_MAX ? recent_seq : LOG_RECENT_MAX;
    if (max < 0) max = 0;
    if (n > (uint64_t)max) n = (uint64_t)max;
    for (uint64_t i = 0; i < n; i++) /* seq recent_seq - n + 1 .. recent_seq */
        out[i] = recent[(recent_seq - n + i) % LOG_RECENT_MAX];
    if (total) *total = recent_seq;
    pthread_mutex_unlock(&recent_lock);
    return (int)n;
}

/* "2026-11-26 05:30:35.123 UTC" */
static void log_timestamp(char *out, size_t outlen)
{
    struct timespec ts;
    struct tm tm;
    char base[32];

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(base, sizeof(base), "%Y-%m-%d %H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%03d UTC", base, (int)(ts.tv_nsec / 1000000));
}

/*
 * Format one complete line (newline included) into a new LogLine.  Returns
 * NULL only when malloc fails.
 */
static LogLine *log_format_line(int format, int level, const char *prefix, const char *fmt,
                                va_list ap) PRINTF_LIKE(4, 0);
static LogLine *log_format_line(int format, int level, const char *prefix, const char *fmt,
                                va_list ap)
{
    char msg[LOG_LINE_MAX];
    char out[LOG_LINE_MAX + 16]; /* room for "...", the JSON tail and \n */
    char head[96];
    LineBuf b = {.buf = out, .len = 0, .cap = LOG_LINE_MAX, .trunc = false};
    size_t syslog_off = 0;
    int n;
    size_t msglen;
    bool msg_trunc = false;

    n = vsnprintf(msg, sizeof(msg), fmt, ap);
    if (n < 0) {
        msglen = (size_t)snprintf(msg, sizeof(msg), "(bad log format \"%s\")", fmt);
        if (msglen >= sizeof(msg)) msglen = sizeof(msg) - 1;
    } else if ((size_t)n >= sizeof(msg)) {
        msglen = utf8_trim_tail(msg, sizeof(msg) - 1);
        msg_trunc = true;
    } else {
        msglen = (size_t)n;
    }

    char ts[48];
    log_timestamp(ts, sizeof(ts));
    if (level <= LOG_LEVEL_WARNING) recent_push(level, ts, prefix, msg, msglen);
    if (format == LOG_FORMAT_JSON) {
        snprintf(head, sizeof(head), "{\"ts\":\"%s\",\"pid\":%ld,\"level\":\"%s\"", ts,
                 (long)getpid(), log_level_name(level));
        lb_puts(&b, head);
        if (prefix) {
            lb_puts(&b, ",\"conn\":\"");
            lb_put_json(&b, prefix, strlen(prefix));
            lb_puts(&b, "\"");
        }
        lb_puts(&b, ",\"msg\":\"");
        lb_put_json(&b, msg, msglen);
        if (b.trunc || msg_trunc) {
            memcpy(out + b.len, LOG_TRUNC_MARK, LOG_TRUNC_MARK_LEN);
            b.len += LOG_TRUNC_MARK_LEN;
        }
        memcpy(out + b.len, "\"}\n", 3);
        b.len += 3;
    } else {
        snprintf(head, sizeof(head), "%s [%ld] ", ts, (long)getpid());
        lb_puts(&b, head);
        syslog_off = b.len;
        lb_puts(&b, log_level_name(level));
        lb_puts(&b, " ");
        if (prefix) {
            lb_put_text(&b, prefix, strlen(prefix));
            lb_puts(&b, ": ");
        }
        /* one call, one line: a trailing newline (libpq's messages have one) is dropped */
        while (msglen > 0 && (msg[msglen - 1] == '\n' || msg[msglen - 1] == '\r'))
            msglen--;
        lb_put_text(&b, msg, msglen);
        if (b.trunc || msg_trunc) {
            memcpy(out + b.len, LOG_TRUNC_MARK, LOG_TRUNC_MARK_LEN);
            b.len += LOG_TRUNC_MARK_LEN;
        }
        out[b.len++] = '\n';
    }

    LogLine *line = malloc(sizeof(*line) + b.len);
    if (!line) return NULL;
    line->next = NULL;
    line->settings = NULL;
    line->level = level;
    line->len = b.len;
    line->syslog_off = syslog_off;
    memcpy(line->text, out, b.len);
    return line;
}

static LogLine *log_format_linef(int format, int level, const char *prefix, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
static LogLine *log_format_linef(int format, int level, const char *prefix, const char *fmt, ...)
{
    va_list ap;
    LogLine *line;

    va_start(ap, fmt);
    line = log_format_line(format, level, prefix, fmt, ap);
    va_end(ap);
    return line;
}

/* write() all of buf, retrying on EINTR and short writes; errors are ignored. */
static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, buf, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return;
        }
        buf += n;
        len -= (size_t)n;
    }
}

/* ---- the writer thread ------------------------------------------------ */

/* Write a batch (a list of lines) to one descriptor, LOG_IOV_BATCH lines per writev. */
static void writer_writev(int fd, LogLine *lines, LogLine *end)
{
    struct iovec iov[LOG_IOV_BATCH];

    while (lines != end) {
        int cnt = 0;
        size_t total = 0;
        for (; lines != end && cnt < LOG_IOV_BATCH; lines = lines->next, cnt++) {
            iov[cnt].iov_base = lines->text;
            iov[cnt].iov_len = lines->len;
            total += lines->len;
        }
        struct iovec *v = iov;
        while (total > 0) {
            ssize_t n = writev(fd, v, cnt);
            if (n < 0) {
                if (errno == EINTR) continue;
                break; /* disk full, EPIPE...: nothing better to do than drop */
            }
            total -= (size_t)n;
            /* Skip what was written (short writes on pipes and full disks). */
            while (cnt > 0 && (size_t)n >= v->iov_len) {
                n -= (ssize_t)v->iov_len;
                v++;
                cnt--;
            }
            if (cnt > 0) {
                v->iov_base = (char *)v->iov_base + n;
                v->iov_len -= (size_t)n;
            }
        }
    }
}

/* Write the lines from `lines` up to (not including) `end` to every destination. */
static void writer_output(const WriterSettings *ws, LogLine *lines, LogLine *end)
{
    if (lines == end) return;
    if (ws->to_stderr) writer_writev(STDERR_FILENO, lines, end);
    if (ws->logfile_fd >= 0) writer_writev(ws->logfile_fd, lines, end);
    if (ws->use_syslog) {
        for (LogLine *l = lines; l != end; l = l->next) {
            int len = (int)(l->len - l->syslog_off - 1); /* without newline */
            syslog(log_level_to_syslog(l->level), "%.*s", len, l->text + l->syslog_off);
        }
    }
}

static void writer_report(const WriterSettings *ws, LogLine *line)
{
    if (!line) return;
    writer_output(ws, line, NULL);
    free(line);
}

static int open_logfile(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, LOG_FILE_MODE);
}

static void settings_free(WriterSettings *ws)
{
    if (!ws) return;
    if (ws->logfile_fd >= 0) close(ws->logfile_fd);
    free(ws->logfile);
    free(ws->syslog_ident);
    free(ws);
}

/* Free a queue entry: a line, or a marker with the settings it still owns. */
static void line_free(LogLine *line)
{
    settings_free(line->settings);
    free(line);
}

/* Switch to the settings of a marker, which gives up ownership of them. */
static void writer_apply_settings(WriterSettings *ws, WriterSettings *next)
{
    bool had_syslog = ws->use_syslog;
    char *old_ident = ws->syslog_ident;

    if (ws->logfile_fd >= 0) close(ws->logfile_fd);
    free(ws->logfile);
    *ws = *next;
    free(next);

    /* openlog keeps the ident pointer: close before freeing the old one. */
    if (had_syslog) closelog();
    if (ws->use_syslog) openlog(ws->syslog_ident, LOG_PID | LOG_NDELAY, ws->syslog_facility);
    free(old_ident);
}

/*
 * Write a batch in order, switching settings at each marker, and free it.
 * Returns the number of lines (not markers) it held.
 */
static uint64_t writer_process(WriterSettings *ws, LogLine *batch)
{
    LogLine *seg = batch;
    uint64_t n = 0;

    for (LogLine *l = batch;; l = l->next) {
        if (l && !l->settings) {
            n++;
            continue;
        }
        writer_output(ws, seg, l);
        if (!l) break;
        writer_apply_settings(ws, l->settings);
        l->settings = NULL;
        seg = l->next;
    }
    while (batch) {
        LogLine *next = batch->next;
        line_free(batch);
        batch = next;
    }
    return n;
}

static void *writer_main(void *arg)
{
    WriterSettings ws = {.logfile_fd = -1};

    (void)arg;
    pthread_mutex_lock(&log_lock);
    for (;;) {
        while (!log_stop && !log_reopen_requested && (log_paused || !queue_head))
            pthread_cond_wait(&log_wake, &log_lock);

        bool reopen = log_reopen_requested;
        log_reopen_requested = false;
        LogLine *batch = log_paused && !log_stop ? NULL : queue_head;
        /* Every line queued so far is handled by this round unless we are paused. */
        bool took_all = batch != NULL || queue_head == NULL;
        if (batch) {
            queue_head = queue_tail = NULL;
            queue_len = 0;
        }
        uint64_t batch_seq = seq_queued;
        int batch_format = __atomic_load_n(&log_format_cur, __ATOMIC_RELAXED);
        bool exiting = log_stop && !batch;
        if (exiting) {
            log_running = false; /* later log_write goes to stderr synchronously */
            pthread_cond_broadcast(&log_flushed);
        }
        pthread_mutex_unlock(&log_lock);

        if (exiting) break;

        if (reopen && ws.logfile) {
            int fd = open_logfile(ws.logfile);
            if (fd >= 0) {
                if (ws.logfile_fd >= 0) close(ws.logfile_fd);
                ws.logfile_fd = fd;
            } else {
                /* Keep writing to the old descriptor rather than losing lines. */
                int err = errno;
                LogLine *l =
                    log_format_linef(batch_format, LOG_LEVEL_ERROR, NULL,
                                     "log: cannot reopen \"%s\": %s", ws.logfile, strerror(err));
                if (l) write_all(STDERR_FILENO, l->text, l->len);
                free(l);
            }
        }

        uint64_t n = writer_process(&ws, batch);
        if (n > 0) __atomic_fetch_add(&written_count, n, __ATOMIC_RELAXED);

        /* The queue was just emptied (not while paused), so there is room again: report drops. */
        uint64_t dropped = __atomic_load_n(&dropped_count, __ATOMIC_RELAXED);
        if (took_all && dropped > dropped_reported) {
            writer_report(&ws, log_format_linef(batch_format, LOG_LEVEL_WARNING, NULL,
                                                "log: %llu lines dropped (queue full)",
                                                (unsigned long long)(dropped - dropped_reported)));
            dropped_reported = dropped;
        }

        pthread_mutex_lock(&log_lock);
        if (took_all && batch_seq > seq_written) {
            seq_written = batch_seq;
            pthread_cond_broadcast(&log_flushed); /* log_flush() and FATAL callers */
        }
    }

    if (ws.logfile_fd >= 0) close(ws.logfile_fd);
    if (ws.use_syslog) closelog();
    free(ws.logfile);
    free(ws.syslog_ident);
    return NULL;
}

/* ---- public API ------------------------------------------------------- */

static void log_free_queue_locked(void)
{
    while (queue_head) {
        LogLine *next = queue_head->next;
        line_free(queue_head);
        queue_head = next;
    }
    queue_tail = NULL;
    queue_len = 0;
}

int log_configure(const LogSettings *s, char *err, size_t errlen)
{
    int facility = LOG_DAEMON;
    WriterSettings *ws;
    LogLine *marker;
    int rc;

    if (s->syslog) {
        facility = log_facility_from_name(s->syslog_facility);
        if (facility < 0) {
            snprintf(err, errlen, "unknown syslog_facility \"%s\"", s->syslog_facility);
            return -EINVAL;
        }
    }
    ws = calloc(1, sizeof(*ws));
    marker = calloc(1, sizeof(*marker));
    if (!ws || !marker) goto fail_nomem;
    ws->logfile_fd = -1;
    ws->to_stderr = s->to_stderr;
    ws->use_syslog = s->syslog;
    ws->syslog_facility = facility;
    ws->syslog_ident = strdup(s->syslog_ident && *s->syslog_ident ? s->syslog_ident : "pgfunnel");
    if (!ws->syslog_ident) goto fail_nomem;
    if (s->logfile && *s->logfile) {
        /* Open here so the caller learns about a bad path; the writer takes the fd. */
        ws->logfile_fd = open_logfile(s->logfile);
        if (ws->logfile_fd < 0) {
            rc = -errno;
            snprintf(err, errlen, "cannot open logfile \"%s\": %s", s->logfile, strerror(-rc));
            goto fail;
        }
        ws->logfile = strdup(s->logfile);
        if (!ws->logfile) goto fail_nomem;
    }
    marker->settings = ws;

    pthread_mutex_lock(&log_life_lock);
    pthread_mutex_lock(&log_lock);
    /* The marker goes through the queue so earlier lines keep their destinations. */
    if (queue_tail)
        queue_tail->next = marker;
    else
        queue_head = marker;
    queue_tail = marker;
    queue_max = s->queue_lines > 0 ? s->queue_lines : LOG_QUEUE_DEFAULT;
    __atomic_store_n(&log_format_cur,
                     s->format == LOG_FORMAT_JSON ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT,
                     __ATOMIC_RELAXED);
    int level = s->verbose <= 0   ? LOG_LEVEL_LOG
                : s->verbose == 1 ? LOG_LEVEL_DEBUG
                                  : LOG_LEVEL_NOISE;
    __atomic_store_n(&log_max_level, level, __ATOMIC_RELAXED);
    pthread_cond_signal(&log_wake);

    if (!writer_started) {
        sigset_t all, old;
        log_stop = false;
        log_running = true;
        /* The writer must not receive the loop's signals. */
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        int prc = pthread_create(&writer_thread, NULL, writer_main, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (prc != 0) {
            log_running = false;
            log_free_queue_locked(); /* only the marker: nothing was queued without a writer */
            pthread_mutex_unlock(&log_lock);
            pthread_mutex_unlock(&log_life_lock);
            snprintf(err, errlen, "cannot start log writer thread: %s", strerror(prc));
            return -prc;
        }
        writer_started = true;
    }
    pthread_mutex_unlock(&log_lock);
    pthread_mutex_unlock(&log_life_lock);
    return 0;

fail_nomem:
    rc = -ENOMEM;
    snprintf(err, errlen, "out of memory");
fail:
    free(marker);
    settings_free(ws);
    return rc;
}

void log_reopen(void)
{
    pthread_mutex_lock(&log_lock);
    log_reopen_requested = true;
    pthread_cond_signal(&log_wake);
    pthread_mutex_unlock(&log_lock);
}

void log_flush(void)
{
    pthread_mutex_lock(&log_lock);
    uint64_t want = seq_queued;
    while (log_running && seq_written < want)
        pthread_cond_wait(&log_flushed, &log_lock);
    pthread_mutex_unlock(&log_lock);
}

void log_pause_writer(bool paused)
{
    pthread_mutex_lock(&log_lock);
    log_paused = paused;
    pthread_cond_signal(&log_wake);
    pthread_mutex_unlock(&log_lock);
}

void log_shutdown(void)
{
    pthread_mutex_lock(&log_life_lock);
    if (!writer_started) {
        pthread_mutex_unlock(&log_life_lock);
        return;
    }
    pthread_mutex_lock(&log_lock);
    log_stop = true; /* the writer drains the queue (even if paused), then exits */
    pthread_cond_signal(&log_wake);
    pthread_mutex_unlock(&log_lock);

    pthread_join(writer_thread, NULL);
    writer_started = false;

    pthread_mutex_lock(&log_lock);
    log_stop = false;
    log_paused = false;
    log_reopen_requested = false;
    log_free_queue_locked(); /* empty already; defensive */
    seq_written = seq_queued;
    pthread_cond_broadcast(&log_flushed);
    pthread_mutex_unlock(&log_lock);
    pthread_mutex_unlock(&log_life_lock);
}

uint64_t log_dropped_count(void)
{
    return __atomic_load_n(&dropped_count, __ATOMIC_RELAXED);
}

uint64_t log_written_count(void)
{
    return __atomic_load_n(&written_count, __ATOMIC_RELAXED);
}

void log_writev(int level, const char *conn_prefix, const char *fmt, va_list ap)
{
    int format = __atomic_load_n(&log_format_cur, __ATOMIC_RELAXED);
    LogLine *line;

    if (level > __atomic_load_n(&log_max_level, __ATOMIC_RELAXED)) return;
    line = log_format_line(format, level, conn_prefix, fmt, ap);
    if (!line) {
        __atomic_fetch_add(&dropped_count, 1, __ATOMIC_RELAXED);
        return;
    }

    pthread_mutex_lock(&log_lock);
    if (!log_running) {
        /* No writer (early startup or after shutdown): write synchronously. */
        pthread_mutex_unlock(&log_lock);
        write_all(STDERR_FILENO, line->text, line->len);
        __atomic_fetch_add(&written_count, 1, __ATOMIC_RELAXED);
        free(line);
        return;
    }
    /* FATAL is never dropped: the process is about to exit with it. */
    if (queue_len >= queue_max && level != LOG_LEVEL_FATAL) {
        pthread_mutex_unlock(&log_lock);
        __atomic_fetch_add(&dropped_count, 1, __ATOMIC_RELAXED);
        free(line);
        return;
    }
    if (queue_tail)
        queue_tail->next = line;
    else
        queue_head = line;
    queue_tail = line;
    queue_len++;
    seq_queued++;
    uint64_t my_seq = seq_queued;
    if (queue_len == 1) pthread_cond_signal(&log_wake);
    if (level == LOG_LEVEL_FATAL) {
        /* Wait until the writer has written it (and everything before it). */
        while (log_running && seq_written < my_seq)
            pthread_cond_wait(&log_flushed, &log_lock);
    }
    pthread_mutex_unlock(&log_lock);
}

void log_write(int level, const char *conn_prefix, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    log_writev(level, conn_prefix, fmt, ap);
    va_end(ap);
}
