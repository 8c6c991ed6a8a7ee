/*
 * fileio.c — whole-file reads for the small configuration files (see fileio.h).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

#include "fileio.h"

void file_error(char *err, size_t errlen, const char *name, int line, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    int n = snprintf(err, errlen, "%s:%d: ", name, line);
    if (n < 0 || (size_t)n >= errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + n, errlen - (size_t)n, fmt, ap);
    va_end(ap);
}

int file_read_all(const char *path, size_t max, char **out, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    char *buf = NULL;
    size_t n = 0, cap = 0;
    *out = NULL;
    *len = 0;
    if (!f) {
        snprintf(err, errlen, "%s:0: cannot open: %s", path, strerror(errno));
        return -1;
    }
    for (;;) {
        if (cap - n < 4096) {
            size_t ncap = cap ? cap * 2 : 8192;
            if (ncap > max + 1) ncap = max + 1;
            if (ncap <= cap) {
                snprintf(err, errlen, "%s:0: file too large", path);
                goto fail;
            }
            /* grow by copying, so a secret never stays behind in freed memory */
            char *nb = malloc(ncap);
            if (!nb) {
                snprintf(err, errlen, "%s:0: out of memory", path);
                goto fail;
            }
            if (buf) {
                memcpy(nb, buf, n);
                OPENSSL_cleanse(buf, cap);
                free(buf);
            }
            buf = nb;
            cap = ncap;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) {
            if (ferror(f)) {
                snprintf(err, errlen, "%s:0: read error: %s", path, strerror(errno));
                goto fail;
            }
            break;
        }
        if (n > max) {
            snprintf(err, errlen, "%s:0: file too large", path);
            goto fail;
        }
    }
    fclose(f);
    buf[n] = 0;
    *out = buf;
    *len = n;
    return 0;
fail:
    if (buf) {
        OPENSSL_cleanse(buf, cap);
        free(buf);
    }
    fclose(f);
    return -1;
}
