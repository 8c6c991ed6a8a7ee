/*
 * snapshot.c — configuration snapshots adopted by every loop (see snapshot.h).
 */
#include <stdlib.h>

#include "auth.h"
#include "config.h"
#include "loop.h"
#include "loops.h"
#include "pool.h"
#include "snapshot.h"
#include "tls.h"

int snapshot_build(Snapshot *s, Config *cfg, const Snapshot *reuse, bool reload_auth,
                   bool reload_tls, char *err, size_t errlen)
{
    s->cfg = cfg;
    s->auth = NULL;
    s->tls = NULL;
    err[0] = 0;
    if (reuse && !reload_auth) {
        s->auth = reuse->auth;
        auth_context_ref(s->auth);
    } else if (!(s->auth = auth_context_load(cfg, err, errlen))) {
        snapshot_release(s);
        return -1;
    }
    if (reuse && !reload_tls) {
        s->tls = reuse->tls;
        tls_context_ref(s->tls);
    } else {
        s->tls = tls_context_load(cfg, err, errlen);
        if (!s->tls && err[0]) {
            snapshot_release(s);
            return -1;
        }
    }
    return 0;
}

void snapshot_release(Snapshot *s)
{
    tls_context_unref(s->tls);
    auth_context_free(s->auth);
    config_unref(s->cfg);
    s->tls = NULL;
    s->auth = NULL;
    s->cfg = NULL;
}

void snapshot_adopt(Loop *loop, const Snapshot *s)
{
    Snapshot old = {loop->cfg, loop->auth, loop->tls};
    config_ref(s->cfg);
    auth_context_ref(s->auth);
    tls_context_ref(s->tls);
    loop->cfg = s->cfg;
    loop->auth = s->auth;
    loop->tls = s->tls; /* TLS sessions keep their own reference to the old SSL_CTX */
    pool_apply_config(loop);
    auth_context_adopted(loop);
    snapshot_release(&old);
}

typedef struct publish {
    Snapshot snap;
    void (*done)(Loop *from, void *arg);
    void *arg;
} Publish;

static void publish_adopt(Loop *loop, void *arg)
{
    Publish *p = arg;
    snapshot_adopt(loop, &p->snap);
}

static void publish_done(Loop *from, void *arg)
{
    Publish *p = arg;
    snapshot_release(&p->snap);
    if (p->done) p->done(from, p->arg);
    free(p);
}

int snapshot_publish(Loop *from, const Snapshot *s, void (*done)(Loop *from, void *arg), void *arg)
{
    Publish *p = malloc(sizeof(*p));
    Snapshot copy = *s;
    if (!p) {
        snapshot_release(&copy);
        return -1;
    }
    p->snap = copy;
    p->done = done;
    p->arg = arg;
    if (loops_broadcast(from, publish_adopt, p, publish_done) < 0) {
        snapshot_release(&p->snap);
        free(p);
        return -1;
    }
    return 0;
}
