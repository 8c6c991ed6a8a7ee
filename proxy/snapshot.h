/*
 * snapshot.h — what a loop uses of the configuration, adopted as a whole.
 *
 * A Snapshot is the Config, the auth context (auth_file, auth_hba_file)
 * and the client TLS context.  None of them changes once built; a reload
 * or a SET builds new ones and every loop adopts them at a safe point
 * (between its callbacks, in a message), each holding its own references,
 * so the old ones are freed when the last loop lets go.  A loop never sees
 * a half-applied configuration, and limits hold in between: they live in
 * the shared pool directory, which a reload does not reset.
 */
#ifndef PGFUNNEL_SNAPSHOT_H
#define PGFUNNEL_SNAPSHOT_H

#include "types.h"

typedef struct snapshot {
    Config *cfg;
    struct auth_context *auth;
    struct tls_context *tls; /* NULL: no client TLS */
} Snapshot;

/*
 * Build a snapshot around cfg (its reference moves into the snapshot):
 * load auth_file / auth_hba_file and the TLS context, or keep `reuse`'s
 * where given (a SET that does not touch them).  0, or -1 with err set
 * (file:line where it applies); on error cfg is released too.
 */
int snapshot_build(Snapshot *s, Config *cfg, const Snapshot *reuse, bool reload_auth,
                   bool reload_tls, char *err, size_t errlen) WUR;
void snapshot_release(Snapshot *s);

/* The loop uses s from now on (its own references; pool settings re-read). */
void snapshot_adopt(Loop *loop, const Snapshot *s);

/*
 * Every loop adopts s (a copy: s itself is released when the last has);
 * then done(from, arg) runs on `from`.  -1 when out of memory (nothing
 * adopted; s released).
 */
int snapshot_publish(Loop *from, const Snapshot *s, void (*done)(Loop *from, void *arg),
                     void *arg) WUR;

#endif
