/*
 * config_internal.h — what the three files of the config module share:
 * config.c (the [pgbouncer] option table and values), config_load.c (reading
 * files) and config_db.c (the [databases] and [users] entries).  Nothing
 * outside the config module includes this header; other modules use
 * config.h only.
 *
 * Functions here return 0 or -1 and describe the problem in a caller's
 * buffer without any "file:line:" prefix: config_load.c knows where a line came
 * from and adds it, so every message in the final error list has one format.
 */
#ifndef PGFUNNEL_CONFIG_INTERNAL_H
#define PGFUNNEL_CONFIG_INTERNAL_H

#include "config.h"

/*
 * Parse `value` for opt and store it in cfg.  Nothing is changed on failure,
 * so config_set() can use it on a live Config.
 */
int config_option_parse(Config *cfg, const OptionDef *opt, const char *value, char *msg,
                        size_t msglen) WUR;

/*
 * Parse one [databases] line `name = key=value ...` and add it to
 * cfg->databases.  A name that is already defined is replaced in place (the
 * last definition wins, as in PgBouncer) and a warning is recorded.  `file`
 * must point into cfg->files so the entry can keep it.
 */
int config_db_add(Config *cfg, const char *name, const char *value, const char *file, int line,
                  char *msg, size_t msglen) WUR;

/* The same for one [users] line. */
int config_user_add(Config *cfg, const char *name, const char *value, const char *file, int line,
                    char *msg, size_t msglen) WUR;

/*
 * Copy src's database, user and peer entries into dst (whose files[] must
 * already be copies of src's, in the same order: entries point into them).
 * 0 or -1.
 */
int config_db_clone(Config *dst, const Config *src) WUR;

/* The same for one [peers] line: `peer_id = host=... port=...`. */
int config_peer_add(Config *cfg, const char *name, const char *value, const char *file, int line,
                    char *msg, size_t msglen) WUR;

/* Free every database, user and peer entry of cfg (the lists only, not cfg). */
void config_db_free_all(Config *cfg);

/* Seconds with an optional fraction ("30", "0.5") to usec; false if malformed. */
bool config_parse_seconds(const char *s, usec_t *out) WUR;

/* Strict decimal integer: optional sign, digits, nothing else. */
bool config_parse_long(const char *s, long *out) WUR;

/* "session" / "transaction" / "statement" (case-insensitive) to a PoolMode, or -1. */
int config_parse_pool_mode(const char *s);

/* Append "message" to cfg->warnings; -1 only when out of memory. */
int config_add_warning(Config *cfg, const char *fmt, ...) PRINTF_LIKE(2, 3) WUR;

#endif
