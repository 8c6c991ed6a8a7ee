/*
 * admin.h — the admin console: virtual database "pgfunnel" (alias
 * "pgbouncer") spoken over the PostgreSQL protocol, PgBouncer-style.
 *
 * Admin clients are ordinary Clients with `admin` set: they authenticate
 * like everyone else, never get a server, and their simple-protocol
 * queries are answered here.
 */
#ifndef PGFUNNEL_ADMIN_H
#define PGFUNNEL_ADMIN_H

#include "types.h"

/* "pgfunnel" or "pgbouncer": the console's two names are one database everywhere. */
bool admin_is_console_db(const char *dbname);
/* The console's own OS user over the unix socket: admin without a password. */
bool admin_is_local_superuser(const Client *c);
/* Authentication succeeded: check admin_users/stats_users and send the welcome. */
void admin_client_login(Client *c);
/* Answer the queries buffered in the client's receive buffer. */
void admin_process(Client *c);
/* The client goes away: drop a SHOW it was being sent. */
void admin_client_free(Client *c);

#endif
