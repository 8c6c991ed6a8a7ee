/*
 * userlist.h — PgBouncer's auth_file format: one `"user" "secret"` per line,
 * `""` for a literal quote, `;` or `#` starting comment lines.  The secret is
 * a plaintext password, an "md5…" hash or a SCRAM-SHA-256 secret.
 * Owned by whoever loaded it; reloaded with the configuration.
 */
#ifndef PGFUNNEL_USERLIST_H
#define PGFUNNEL_USERLIST_H

#include "types.h"

typedef struct userlist Userlist;

/* Load a file.  NULL with "file:line: message" in err on a malformed line or I/O error. */
Userlist *userlist_load(const char *path, char *err, size_t errlen) WUR;
/* Parse from memory (for tests and fuzzing); name is used in messages. */
Userlist *userlist_parse(const char *name, const char *text, size_t len, char *err,
                         size_t errlen) WUR;
void userlist_free(Userlist *ul);
/* The secret for user, or NULL. */
const char *userlist_get(const Userlist *ul, const char *user);
int userlist_count(const Userlist *ul);
/* Entry i (0 <= i < count) in user-name order: the user, and its secret in *secret. */
const char *userlist_at(const Userlist *ul, int i, const char **secret);

#endif
