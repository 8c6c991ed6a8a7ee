/*
 * types.h — forward declarations of pgfunnel's objects.
 *
 * Every module includes this instead of a "god header": a .c file then
 * includes the headers of the modules it actually calls.  Ownership of each
 * object is documented where its struct is defined.
 */
#ifndef PGFUNNEL_TYPES_H
#define PGFUNNEL_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WUR               __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

typedef struct config Config;      /* config.h: the whole parsed INI, swapped on reload */
typedef struct db_conf DbConf;     /* config.h: one [databases] entry */
typedef struct user_conf UserConf; /* config.h: one [users] entry */
typedef struct peer_conf PeerConf; /* config.h: one [peers] entry */
typedef struct workq Workq;        /* workq.h: the worker thread pool */
typedef struct loop Loop;          /* loop.h: the event loop context, owns everything below */
typedef struct listener Listener;  /* listener.h: one listening socket */
typedef struct conn Conn;          /* conn.h: socket + buffers shared by clients and servers */
typedef struct client Client;      /* client.h: one application connection */
typedef struct server Server;      /* server.h: one backend connection */
typedef struct pool Pool;          /* pool.h: servers + waiting clients of one (db, user) */
typedef struct database Database;  /* pool.h: runtime state of one [databases] entry */
typedef struct param_set ParamSet; /* params.h: tracked session parameters */
typedef struct pass_cred PassCred; /* passthrough.h: a stored secret + ClientKey a login proved */

/* Microseconds since an arbitrary monotonic origin; all timeouts use this. */
typedef int64_t usec_t;
#define USEC_PER_SEC 1000000LL

#endif
