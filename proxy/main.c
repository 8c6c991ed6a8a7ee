/*
 * main.c — the process: command line, configuration load and reload,
 * daemonizing, pidfile, signals, start-up and orderly shutdown.
 *
 * Signals are libevent signal events, so their handlers run on the loop
 * thread like everything else (PgBouncer 1.26 meanings):
 *   SIGHUP  reload the configuration and reopen the log file
 *   SIGINT  safe shutdown: stop accepting, wait until servers are released
 *   SIGTERM stop accepting, wait until every client has left
 *           (either of them again during a shutdown: immediate shutdown)
 *   SIGQUIT exit now
 *   SIGUSR1 / SIGUSR2 PAUSE / RESUME of every database (pool_control.c)
 * RELOAD from the admin console runs the same process_reload() through the
 * loop->reload callback.
 *
 * Under a supervisor (NOTIFY_SOCKET, notify.c) the process says READY once
 * everything listens, RELOADING/READY around each reload and STOPPING when a
 * shutdown begins.  --takeover (handover.c) starts a successor on the
 * running process's listening sockets; the predecessor drains once the
 * successor is ready.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <libpq-fe.h>
#include <openssl/crypto.h>

#include "auth.h"
#include "config.h"
#include "handover.h"
#include "http.h"
#include "listener.h"
#include "log.h"
#include "loop.h"
#include "loops.h"
#include "notify.h"
#include "pool.h"
#include "pool_control.h"
#include "snapshot.h"
#include "stats.h"
#include "version.h"

typedef struct options {
    bool daemon;
    bool quiet;
    int verbose;
    bool check;
    bool takeover; /* --takeover: start on the running pgfunnel's sockets */
    const char *user;
    const char *config;
} Options;

typedef struct process {
    Options opt;
    LoopSet *set;
    Loop *loop; /* loop 0: signals, listeners, HTTP, the supervisor */
    struct event *sig[6];
    bool pidfile_written;
    char *pidfile;
    Handover *inherit;     /* --takeover: the predecessor's sockets until start-up is done */
    struct event *ev_http; /* --takeover: binds the HTTP port once the predecessor let go */
    int http_tries;
} Process;

static void usage(FILE *out)
{
    fprintf(out,
            "%s — a PostgreSQL connection pooler\n\n"
            "Usage: pgfunnel [OPTION]... CONFIG.ini\n\n"
            "  -d, --daemon       run in the background\n"
            "  -q, --quiet        do not log to stderr\n"
            "  -v, --verbose      more logging (repeat for more)\n"
            "  -u, --user=USER    switch to USER after opening the sockets\n"
            "      --check        validate the configuration and exit\n"
            "      --takeover     take over the listening sockets of the pgfunnel running\n"
            "                     with this configuration; it drains once we are ready\n"
            "      --sample-config  print a commented sample configuration\n"
            "      --man-ini      print the pgfunnel.ini(5) manual page\n"
            "  -V, --version      print the version and exit\n"
            "  -h, --help         this help\n\n"
            "Signals: HUP reload, INT safe shutdown, TERM wait for clients, QUIT immediate,\n"
            "         USR1 pause, USR2 resume.\n",
            PGFUNNEL_VERSION_STRING);
}

static int parse_args(int argc, char **argv, Options *o)
{
    static const struct option longopts[] = {
        {"daemon", no_argument, NULL, 'd'},
        {"quiet", no_argument, NULL, 'q'},
        {"verbose", no_argument, NULL, 'v'},
        {"user", required_argument, NULL, 'u'},
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {"check", no_argument, NULL, 'C'},
        {"sample-config", no_argument, NULL, 'S'},
        {"takeover", no_argument, NULL, 'T'}, /* handover.c */
        {"man-ini", no_argument, NULL, 'M'},  /* man/pgfunnel.ini.5 */
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "dqvu:Vh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'd':
            o->daemon = true;
            break;
        case 'q':
            o->quiet = true;
            break;
        case 'v':
            o->verbose++;
            break;
        case 'u':
            o->user = optarg;
            break;
        case 'C':
            o->check = true;
            break;
        case 'T':
            o->takeover = true;
            break;
        case 'V':
            printf("%s\nlibevent %s, libpq %d, %s\n", PGFUNNEL_VERSION_STRING, event_get_version(),
                   PQlibVersion(), OpenSSL_version(OPENSSL_VERSION));
            exit(0);
        case 'S':
            config_write_sample(stdout);
            exit(0);
        case 'M':
            config_write_man(stdout);
            exit(0);
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "pgfunnel: exactly one configuration file is required\n");
        usage(stderr);
        return -1;
    }
    o->config = argv[optind];
    return 0;
}

static int apply_log_settings(const Config *cfg, const Options *o, char *err, size_t len)
{
    LogSettings ls = {
        .logfile = cfg->logfile,
        .to_stderr = !o->quiet && !o->daemon,
        .syslog = cfg->syslog,
        .syslog_ident = cfg->syslog_ident,
        .syslog_facility = cfg->syslog_facility,
        .format = cfg->log_format,
        .verbose = o->verbose > cfg->verbose ? o->verbose : cfg->verbose,
    };
    return log_configure(&ls, err, len);
}

static void log_config_warnings(const Config *cfg)
{
    for (int i = 0; i < cfg->nwarnings; i++)
        log_warning("%s", cfg->warnings[i]);
}

/* ---- reload ---- */

typedef struct reload_job {
    void (*finished)(Loop *loop, void *ctx, int rc);
    void *ctx;
} ReloadJob;

/* Every loop has adopted the new configuration. */
static void process_reloaded(Loop *loop, void *arg)
{
    ReloadJob *j = arg;
    log_info("configuration reloaded");
    notify_ready(loop);
    if (j->finished) j->finished(loop, j->ctx, 0);
    free(j);
}

/*
 * Re-read the configuration (loop 0).  A file that does not load, or whose
 * auth_file / TLS files do not, is refused with file:line and the old one
 * stays.  Otherwise every loop adopts it (snapshot.h); finished() runs when
 * they have.  Returns -1 when refused (finished does not run).
 */
static int process_reload(Process *pr, void (*finished)(Loop *loop, void *ctx, int rc), void *ctx)
{
    Loop *loop = pr->loop;
    char err[4096];
    notify_reloading();
    Config *ncfg =
        config_load(loop->cfg->path ? loop->cfg->path : pr->opt.config, err, sizeof(err));
    if (!ncfg) {
        /* each line is "file:line: message"; the old configuration stays */
        char *save = NULL;
        for (char *l = strtok_r(err, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
            log_error("%s", l);
        log_error("configuration reload failed; keeping the previous configuration");
        notify_ready(loop);
        return -1;
    }
    log_config_warnings(ncfg);
    for (size_t i = 0; i < config_option_count(); i++) {
        const OptionDef *od = config_option_at(i);
        if (od->reloadable) continue;
        char a[512], b[512];
        config_format_value(loop->cfg, od, a, sizeof(a));
        config_format_value(ncfg, od, b, sizeof(b));
        if (strcmp(a, b) != 0)
            log_warning("option %s changed from \"%s\" to \"%s\": takes effect after a restart",
                        od->name, a, b);
    }
    Snapshot snap;
    ReloadJob *j = malloc(sizeof(*j));
    if (!j || snapshot_build(&snap, ncfg, NULL, true, true, err, sizeof(err)) < 0) {
        if (j)
            log_error("%s", err);
        else
            config_unref(ncfg);
        log_error("configuration reload failed; keeping the previous configuration");
        free(j);
        notify_ready(loop);
        return -1;
    }
    if (apply_log_settings(ncfg, &pr->opt, err, sizeof(err)) < 0) log_error("%s", err);
    j->finished = finished;
    j->ctx = ctx;
    if (snapshot_publish(loop, &snap, process_reloaded, j) < 0) {
        log_error("configuration reload failed: out of memory");
        free(j);
        notify_ready(loop);
        return -1;
    }
    return 0;
}

/* loop->reload: the admin console's RELOAD takes the SIGHUP path. */
static int process_reload_cb(Loop *loop, void *arg, void (*finished)(Loop *loop, void *ctx, int rc),
                             void *ctx)
{
    (void)loop;
    return process_reload(arg, finished, ctx);
}

/* ---- HTTP port of a successor ---- */

#define HTTP_RETRY_USEC 100000 /* the predecessor frees the port within milliseconds */
#define HTTP_RETRY_MAX  100

/*
 * The HTTP port is not handed over (evhttp binds its own socket): the
 * predecessor closes it when the successor commits, and the successor binds
 * it then, retrying for a while.  A few milliseconds without /metrics; no
 * PostgreSQL client notices.
 */
static void process_on_http_retry(evutil_socket_t fd, short ev, void *arg)
{
    Process *pr = arg;
    char err[256];
    struct timeval tv = {0, HTTP_RETRY_USEC};
    (void)fd;
    (void)ev;
    if (http_start(pr->loop, err, sizeof(err)) == 0) return;
    if (++pr->http_tries < HTTP_RETRY_MAX) {
        evtimer_add(pr->ev_http, &tv);
        return;
    }
    log_error("%s; the HTTP endpoint stays off until the next start", err);
}

/* ---- signals ---- */

static void on_signal(evutil_socket_t sig, short ev, void *arg)
{
    Process *pr = arg;
    (void)ev;
    switch (sig) {
    case SIGHUP:
        log_info("got SIGHUP: reloading the configuration and reopening the log");
        log_reopen();
        if (process_reload(pr, NULL, NULL) < 0) { /* logged; the old configuration stays */
        }
        break;
    case SIGINT:
    case SIGTERM:
        /* the second one, while a shutdown is on its way, means now (as PgBouncer 1.23+) */
        if (pr->loop->shutdown != SHUTDOWN_NONE) {
            log_info("got %s while shutting down: immediate shutdown",
                     sig == SIGINT ? "SIGINT" : "SIGTERM");
            loops_begin_shutdown(pr->loop, SHUTDOWN_IMMEDIATE);
        } else if (sig == SIGINT) {
            log_info("got SIGINT: safe shutdown, waiting for servers to be released");
            loops_begin_shutdown(pr->loop, SHUTDOWN_WAIT_SERVERS);
        } else {
            log_info("got SIGTERM: shutting down when all clients have left");
            loops_begin_shutdown(pr->loop, SHUTDOWN_WAIT_CLIENTS);
        }
        break;
    case SIGQUIT:
        log_info("got SIGQUIT: immediate shutdown");
        loops_begin_shutdown(pr->loop, SHUTDOWN_IMMEDIATE);
        break;
    case SIGUSR1:
    case SIGUSR2: {
        char err[256];
        if (sig == SIGUSR2 && pr->loop->shutdown != SHUTDOWN_NONE) {
            /* a resume would not bring the listeners back: say so */
            log_info("got SIGUSR2 while shutting down, ignoring");
            break;
        }
        log_info("got %s: %s", sig == SIGUSR1 ? "SIGUSR1" : "SIGUSR2",
                 sig == SIGUSR1 ? "pausing every database" : "resuming");
        if (pool_control_command(pr->loop, sig == SIGUSR1 ? CONTROL_PAUSE : CONTROL_RESUME, NULL, 0,
                                 NULL, err, sizeof(err)) < 0)
            log_warning("%s", err);
        break;
    }
    default:
        break;
    }
}

static const int handled_signals[6] = {SIGHUP, SIGINT, SIGTERM, SIGQUIT, SIGUSR1, SIGUSR2};

static int setup_signals(Process *pr)
{
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < 6; i++) {
        pr->sig[i] = evsignal_new(pr->loop->base, handled_signals[i], on_signal, pr);
        if (!pr->sig[i] || evsignal_add(pr->sig[i], NULL) < 0) return -1;
    }
    return 0;
}

/* ---- pidfile, user, daemon ---- */

/* The pid in the pidfile, 0 if none can be read. */
static long pidfile_read(const char *path)
{
    long pid = 0;
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    if (fscanf(f, "%ld", &pid) != 1) pid = 0;
    fclose(f);
    return pid;
}

/* A successor (predecessor != 0) replaces its predecessor's pid in the file. */
static int pidfile_write(Process *pr, const char *path, pid_t predecessor, char *err, size_t len)
{
    char buf[32];
    FILE *f = fopen(path, "r");
    if (f) {
        long pid = 0;
        if (fscanf(f, "%ld", &pid) == 1 && pid > 0 && pid != getpid() && pid != predecessor &&
            kill((pid_t)pid, 0) == 0) {
            fclose(f);
            snprintf(err, len, "pidfile %s: pgfunnel is already running as pid %ld", path, pid);
            return -1;
        }
        fclose(f);
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, len, "cannot write pidfile %s: %s", path, strerror(errno));
        return -1;
    }
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
    if (write(fd, buf, (size_t)n) != n) {
        close(fd);
        snprintf(err, len, "cannot write pidfile %s: %s", path, strerror(errno));
        return -1;
    }
    close(fd);
    pr->pidfile = strdup(path);
    pr->pidfile_written = pr->pidfile != NULL;
    return 0;
}

static int switch_user(const char *user, char *err, size_t len)
{
    struct passwd *pw = getpwnam(user);
    if (!pw) {
        snprintf(err, len, "user \"%s\" not found", user);
        return -1;
    }
    if (getuid() == pw->pw_uid) return 0;
    if (setgid(pw->pw_gid) < 0 || initgroups(user, pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
        snprintf(err, len, "cannot switch to user \"%s\": %s", user, strerror(errno));
        return -1;
    }
    return 0;
}

/*
 * Fork into the background.  The parent waits until the child reports on a
 * pipe that it listens (byte '0') or failed, so `pgfunnel -d` exits with a
 * truthful status.  Returns the write end of the pipe in the child.
 */
static int daemonize(void)
{
    int fds[2];
    if (pipe(fds) < 0) return -1;
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid > 0) {
        close(fds[1]);
        char c = '1';
        ssize_t n = read(fds[0], &c, 1);
        _exit(n == 1 && c == '0' ? 0 : 1);
    }
    close(fds[0]);
    setsid();
    if (fork() > 0) _exit(0);
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
        if (null > 2) close(null);
    }
    return fds[1];
}

int main(int argc, char **argv)
{
    Process pr;
    char err[4096];
    int ready_fd = -1, rc = 1;
    memset(&pr, 0, sizeof(pr));
    if (parse_args(argc, argv, &pr.opt) < 0) return 2;

    Config *cfg = config_load(pr.opt.config, err, sizeof(err));
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        fprintf(stderr, "pgfunnel: invalid configuration, not started\n");
        return 1;
    }
    if (pr.opt.check) {
        for (int i = 0; i < cfg->nwarnings; i++)
            fprintf(stderr, "WARNING %s\n", cfg->warnings[i]);
        printf("configuration file %s is valid\n", pr.opt.config);
        config_free(cfg);
        return 0;
    }
    if (pr.opt.daemon) {
        ready_fd = daemonize();
        if (ready_fd < 0) {
            fprintf(stderr, "pgfunnel: cannot daemonize: %s\n", strerror(errno));
            config_free(cfg);
            return 1;
        }
    }
    if (apply_log_settings(cfg, &pr.opt, err, sizeof(err)) < 0) {
        fprintf(stderr, "pgfunnel: %s\n", err);
        config_free(cfg);
        goto out;
    }
    log_config_warnings(cfg);
    /*
     * No evthread_use_pthreads(): each event_base is touched only by its own
     * loop's thread (workers and other loops wake it through an eventfd),
     * and unlocked libevent saves a mutex pair on every event operation.
     */
    pr.set = loops_create(cfg, cfg->event_loops, err, sizeof(err));
    if (!pr.set) {
        log_fatal("cannot create the event loops: %s", err);
        config_free(cfg);
        goto out;
    }
    pr.loop = pr.set->loops[0];
    {
        /* every loop starts from the same snapshot; the loops hold references of their own */
        Snapshot snap;
        config_ref(cfg);
        if (snapshot_build(&snap, cfg, NULL, true, true, err, sizeof(err)) < 0) {
            log_fatal("%s", err);
            goto out_loop;
        }
        for (int i = 0; i < pr.set->n; i++)
            snapshot_adopt(pr.set->loops[i], &snap);
        snapshot_release(&snap);
    }
    const char *user = pr.opt.user ? pr.opt.user : (cfg->user && *cfg->user ? cfg->user : NULL);
    notify_init();
    if (pr.opt.takeover) {
        if (handover_fetch(cfg, user, &pr.inherit, err, sizeof(err)) < 0) {
            log_fatal("%s", err);
            goto out_loop;
        }
        if (pr.inherit)
            log_info("taking over from pid %d", (int)handover_predecessor(pr.inherit));
        else
            log_info("--takeover: no pgfunnel runs on port %d; starting afresh", cfg->listen_port);
    }
    if (listener_open_all(pr.loop, pr.inherit, err, sizeof(err)) < 0) {
        log_fatal("%s", err);
        goto out_loop;
    }
    if (user && switch_user(user, err, sizeof(err)) < 0) {
        log_fatal("%s", err);
        goto out_loop;
    }
    pr.loop->reload = process_reload_cb;
    pr.loop->reload_arg = &pr;
    if (stats_start(pr.loop) < 0) {
        log_fatal("cannot start the statistics timer");
        goto out_loop;
    }
    for (int i = 0; i < pr.set->n; i++) {
        if (pool_control_start(pr.set->loops[i]) < 0) {
            log_fatal("cannot start the control timers");
            goto out_loop;
        }
    }
    if (pr.inherit && cfg->admin_http_port > 0) {
        /* after the commit below: the predecessor holds the port until then */
        pr.ev_http = evtimer_new(pr.loop->base, process_on_http_retry, &pr);
        if (!pr.ev_http) {
            log_fatal("cannot create the HTTP start timer");
            goto out_loop;
        }
    } else if (http_start(pr.loop, err, sizeof(err)) < 0) {
        log_fatal("%s", err);
        goto out_loop;
    }
    if (setup_signals(&pr) < 0) {
        log_fatal("cannot install signal handlers");
        goto out_loop;
    }
    if (notify_start(pr.loop) < 0) {
        log_fatal("cannot start the supervisor notification timer");
        goto out_loop;
    }
    /*
     * Last, so that a start-up failure leaves the file alone: a successor
     * replaces its predecessor's pid there, and must not remove it if it fails.
     */
    if (cfg->pidfile && *cfg->pidfile &&
        pidfile_write(&pr, cfg->pidfile, handover_predecessor(pr.inherit), err, sizeof(err)) < 0) {
        log_fatal("%s", err);
        goto out_loop;
    }
    handover_serve(pr.loop, pr.inherit);
    if (loops_start(pr.set, err, sizeof(err)) < 0) {
        log_fatal("%s", err);
        goto out_loop;
    }
    log_info("%s started (pid %d, %d event loop%s, %d workers)", PGFUNNEL_VERSION_STRING,
             (int)getpid(), pr.set->n, pr.set->n == 1 ? "" : "s", cfg->workers);
    /* the supervisor first learns we are the main process, then the predecessor drains */
    notify_ready(pr.loop);
    if (pr.inherit) {
        handover_commit(pr.inherit);
        pr.inherit = NULL;
        listener_takeover_done(pr.loop);
        if (pr.ev_http) event_active(pr.ev_http, EV_TIMEOUT, 0);
    }
    if (ready_fd >= 0) {
        if (write(ready_fd, "0", 1) != 1) { /* the parent is gone; nothing to tell */
        }
        close(ready_fd);
        ready_fd = -1;
    }
    event_base_dispatch(pr.loop->base);
    log_info("shutting down");
    rc = 0;
out_loop:
    handover_abort(pr.inherit); /* start-up failed: the predecessor carries on */
    if (pr.ev_http) event_free(pr.ev_http);
    for (int i = 0; i < 6; i++) {
        if (!pr.sig[i]) continue;
        /* freeing restores the default action: a second SIGTERM now must
         * not kill a process that is already on its way out */
        event_free(pr.sig[i]);
        signal(handled_signals[i], SIG_IGN);
    }
    listener_close_all(pr.loop);
    handover_stop(pr.loop);
    notify_stop(pr.loop);
    http_stop(pr.loop);
    loops_join(pr.set); /* the other loops stop before anything they use goes */
    for (int i = 0; i < pr.set->n; i++)
        pool_control_stop(pr.set->loops[i]);
    stats_stop(pr.loop);
    loops_destroy(pr.set);
    config_unref(cfg); /* the loops held their own references */
out:
    /* a successor has written its own pid there */
    if (pr.pidfile_written && pidfile_read(pr.pidfile) == (long)getpid()) unlink(pr.pidfile);
    free(pr.pidfile);
    if (ready_fd >= 0) close(ready_fd);
    log_shutdown();
    return rc;
}
