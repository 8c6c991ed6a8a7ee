/*
 * http.h — the HTTP admin endpoint (its own small HTTP/1.x server) on
 * admin_http_addr:admin_http_port (0 = off, localhost by default):
 *   GET /metrics   Prometheus text exposition format 0.0.4
 *   GET /healthz   200 or 503, with a JSON body saying why
 *   GET /pools     SHOW POOLS and per-database counters as JSON
 *   GET /          the live dashboard page, GET /dashboard.json its data
 *                  (dashboard.h)
 *
 * It runs on the loop thread, like everything that reads pools.  Long
 * answers (/metrics, /pools) are produced in slices as the socket drains,
 * connections are capped and get an absolute deadline, and with
 * admin_http_auth = 1 a request needs HTTP basic auth with a user in
 * admin_users whose password matches its auth_file secret, checked on the
 * worker pool and remembered (see the DESIGN note in http.c).
 */
#ifndef PGFUNNEL_HTTP_H
#define PGFUNNEL_HTTP_H

#include "types.h"

/* Start when admin_http_port is set; 0, or -1 with a message in err. */
int http_start(Loop *loop, char *err, size_t errlen) WUR;
void http_stop(Loop *loop);

#endif
