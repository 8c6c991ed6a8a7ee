/*
 * fuzz_common.h — what every libFuzzer harness under tests/fuzz shares.
 *
 * Each harness is one fuzz_<name>.c with LLVMFuzzerTestOneInput (and
 * optionally LLVMFuzzerInitialize); the Makefile builds it against the
 * proxy objects (everything but main.c) with -fsanitize=fuzzer,address,
 * undefined into build-fuzz/tests/fuzz/fuzz_<name>, and seeds it from
 * tests/fuzz/corpus/<name>/.  See tests/fuzz/README.md.
 *
 * Logging: the proxy logs through log.c.  A harness that drives code which
 * logs calls fuzz_log_init() once: every level is formatted (so format bugs
 * in log lines are found too), and the writer thread throws the lines away
 * unless FUZZ_LOG is set (1: log lines; 2: also what the client received).
 */
#ifndef PGFUNNEL_FUZZ_COMMON_H
#define PGFUNNEL_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static inline void fuzz_log_init(void)
{
    char err[256];
    const char *env = getenv("FUZZ_LOG");
    LogSettings ls = {
        .to_stderr = env && *env && *env != '0',
        .format = LOG_FORMAT_TEXT,
        .verbose = 2,
    };
    if (log_configure(&ls, err, sizeof(err)) < 0) {
        fprintf(stderr, "fuzz: log_configure: %s\n", err);
        abort();
    }
}

/*
 * An exact-size heap copy of the input, so that ASan reports a read of even
 * one byte past its end (libFuzzer's own buffer is exact-size too, but the
 * pieces a harness cuts out of it are not).
 */
static inline uint8_t *fuzz_dup(const uint8_t *data, size_t size)
{
    uint8_t *p = malloc(size ? size : 1);
    if (!p) abort();
    if (size) memcpy(p, data, size);
    return p;
}

/* The input as a C string (for parsers that take one); NULs end it early. */
static inline char *fuzz_strdup(const uint8_t *data, size_t size)
{
    char *p = malloc(size + 1);
    if (!p) abort();
    memcpy(p, data, size);
    p[size] = '\0';
    return p;
}

/* Make the sanitizers look at every byte of a string the parser handed back. */
static inline void fuzz_touch_str(const char *s)
{
    if (!s) return;
    volatile size_t n = strlen(s);
    (void)n;
}

#endif
