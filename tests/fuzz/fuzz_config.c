/*
 * fuzz_config.c — the configuration loader: inih with pgfunnel's line
 * reader (%include, sections, diagnostics), the option table (config.c) and
 * the [databases] / [users] entries (config_db.c).
 *
 * config_load() reads a path, so each input is written to fuzz.ini in a
 * private temporary directory made at start-up (on /dev/shm if writable).  That directory also holds
 * inc.ini (a small valid fragment) so that `%include inc.ini` and an
 * include of fuzz.ini itself (the nesting limit) are reachable.  Inputs
 * naming device or proc files are skipped: an include of /dev/zero or a
 * FIFO would only test the kernel.  config_load() flips libinih's global
 * switches around the parse, which is fine in this single-threaded process.
 *
 * A configuration that loads is then formatted option by option (the SHOW
 * CONFIG path) and its databases and users looked up.
 */
#include <unistd.h>

#include "fuzz_common.h"

static char dir[64];
static char path[128];

static void cleanup(void)
{
    char p[160];
    snprintf(p, sizeof(p), "%s/inc.ini", dir);
    unlink(p);
    unlink(path);
    rmdir(dir);
}

static void write_file(const char *p, const void *data, size_t size)
{
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0) {
        perror(p);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* tmpfs when there is one: a disk file system makes every input cost a journal write */
    const char *base = getenv("TMPDIR");
    if (!base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof(dir), "%s/pgfunnel-fuzz-XXXXXX", base);
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    atexit(cleanup);
    snprintf(path, sizeof(path), "%s/fuzz.ini", dir);
    char inc[160];
    static const char fragment[] = "pool_mode = transaction\n[databases]\nincdb = host=127.0.0.1\n";
    snprintf(inc, sizeof(inc), "%s/inc.ini", dir);
    write_file(inc, fragment, sizeof(fragment) - 1);
    fuzz_log_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const skip[] = {"/dev", "/proc", "/sys"};
    for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
        if (memmem(data, size, skip[i], strlen(skip[i]))) return -1; /* not added to the corpus */
    write_file(path, data, size);

    char err[4096];
    Config *cfg = config_load(path, err, sizeof(err));
    if (!cfg) {
        fuzz_touch_str(err);
        return 0;
    }
    for (int i = 0; i < cfg->nwarnings; i++)
        fuzz_touch_str(cfg->warnings[i]);
    char buf[512];
    for (size_t i = 0; i < config_option_count(); i++) {
        config_format_value(cfg, config_option_at(i), buf, sizeof(buf));
        fuzz_touch_str(buf);
    }
    for (const DbConf *db = cfg->databases; db; db = db->next)
        if (config_find_db(cfg, db->name) == NULL) abort();
    for (const UserConf *u = cfg->users; u; u = u->next)
        if (config_find_user(cfg, u->name) == NULL) abort();
    (void)config_find_db(cfg, "nosuchdb");
    config_free(cfg);
    return 0;
}
