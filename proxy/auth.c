/*
 * auth.c — client authentication (see auth.h).
 *
 * trust: the user is admitted without a password.  any: the user name is
 * ignored too (the database entry must force a user; without one the
 * client's name is used for the backend login).  Password methods are not
 * implemented yet and are refused with a clear error rather than silently
 * admitting the client.
 */
#include "auth.h"
#include "client.h"
#include "config.h"

void auth_begin(Client *c)
{
    Config *cfg = c->loop->cfg;
    switch (cfg->auth_type) {
    case AUTH_TYPE_TRUST:
    case AUTH_TYPE_ANY:
        client_auth_ok(c);
        return;
    default:
        client_close(c, "28000", "auth_type %s is not supported yet (use trust or any)",
                     config_auth_type_name(cfg->auth_type));
        return;
    }
}

void auth_process(Client *c)
{
    (void)c;
}
