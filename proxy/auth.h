/*
 * auth.h — client authentication, behind one interface.
 *
 * auth_begin() is called once a client's startup packet named its user and
 * database.  It ends, now or later (a password round trip, a hash on the
 * worker pool), in exactly one of client_auth_ok() or client_close().
 * Today: auth_type trust and any (and the admin console, which follows the
 * same rules); the password methods come with the authentication work.
 */
#ifndef PGFUNNEL_AUTH_H
#define PGFUNNEL_AUTH_H

#include "types.h"

void auth_begin(Client *c);
/* Bytes arrived while in CLIENT_AUTH (password messages). */
void auth_process(Client *c);

/* Defined in client.c: authentication succeeded. */
void client_auth_ok(Client *c);

#endif
