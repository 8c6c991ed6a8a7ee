/*
 * fileio.h — read a whole small file (auth_file, auth_hba_file) into memory.
 */
#ifndef PGFUNNEL_FILEIO_H
#define PGFUNNEL_FILEIO_H

#include "types.h"

/*
 * Read `path` into a malloc'd, NUL-terminated buffer (*out, length *len).
 * Files larger than `max` are refused.  Returns 0, or -1 with
 * "path: message" in err.  The caller frees *out (and may wipe it first:
 * it can hold secrets).
 */
/* "name:line: message" into err (for the parsers of these files). */
void file_error(char *err, size_t errlen, const char *name, int line, const char *fmt, ...)
    PRINTF_LIKE(5, 6);

int file_read_all(const char *path, size_t max, char **out, size_t *len, char *err,
                  size_t errlen) WUR;

#endif
