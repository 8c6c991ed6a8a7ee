/*
 * hba.h — auth_hba_file rules in pg_hba.conf syntax (the subset PgBouncer
 * documents): connection type local/host/hostssl/hostnossl, database and
 * user lists (names, "all", "sameuser", "replication" ignored, @file not
 * supported → error), address as CIDR or address + mask, IPv4 and IPv6,
 * method trust/reject/md5/scram-sha-256/password/cert (peer → error).
 * First matching rule wins; no match means reject.
 */
#ifndef PGFUNNEL_HBA_H
#define PGFUNNEL_HBA_H

#include <sys/socket.h>
#include "types.h"

typedef enum {
    HBA_REJECT = 0,
    HBA_TRUST,
    HBA_MD5,
    HBA_SCRAM,
    HBA_PASSWORD,
    HBA_CERT,
} HbaMethod;

typedef struct hba Hba;

Hba *hba_load(const char *path, char *err, size_t errlen) WUR;
Hba *hba_parse(const char *name, const char *text, size_t len, char *err, size_t errlen) WUR;
void hba_free(Hba *h);

/*
 * The method for a connection.  addr is NULL for unix-socket connections
 * ("local" rules); tls says whether the client connection is encrypted.
 */
HbaMethod hba_match(const Hba *h, const struct sockaddr *addr, bool tls, const char *database,
                    const char *user);
const char *hba_method_name(HbaMethod m);

#endif
