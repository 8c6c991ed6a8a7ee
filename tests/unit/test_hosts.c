/*
 * test_hosts.c — which hosts a new server connection tries (hosts_pick) and
 * whether a server still fits its entry (hosts_server_fits): round-robin and
 * sticky order, down hosts and impossible roles left out, standbys first for
 * prefer-standby, port lists, resolved addresses, the registry sharing hosts.
 * Checks are off (host_check_interval = 0): no worker pool is needed.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "hosts.h"
#include "loop.h"

static Loop *test_loop(void)
{
    Loop *loop = calloc(1, sizeof(*loop));
    assert_non_null(loop);
    loop->cfg = config_defaults();
    assert_non_null(loop->cfg);
    loop->cfg->host_check_interval = 0;
    return loop;
}

static void test_loop_free(Loop *loop)
{
    hosts_free_all(loop);
    config_free(loop->cfg);
    free(loop);
}

/* The host list of the next pick, "" when none is usable. */
static const char *pick(Loop *loop, HostList *hl, const char *addrs, char *buf, size_t len)
{
    HostPick p;
    char why[256];
    int n = hosts_pick(loop, hl, addrs, &p, why, sizeof(why));
    assert_true(n >= 0);
    if (n == 0) {
        snprintf(buf, len, "none: %s", why);
        return buf;
    }
    snprintf(buf, len, "%s %s %s", p.host, p.port, p.hostaddr ? p.hostaddr : "-");
    hosts_pick_free(&p);
    return buf;
}

static void test_round_robin_and_sticky(void **state)
{
    (void)state;
    Loop *loop = test_loop();
    HostList rr, sticky;
    char b[512];
    assert_int_equal(hosts_list_build(loop, &rr, "a,b,c", 5432, NULL, TSA_ANY, LB_ROUND_ROBIN, true,
                                      "db", "u", NULL),
                     0);
    assert_int_equal(rr.n, 3);
    assert_string_equal(pick(loop, &rr, NULL, b, sizeof(b)), "a,b,c 5432,5432,5432 -");
    assert_string_equal(pick(loop, &rr, NULL, b, sizeof(b)), "b,c,a 5432,5432,5432 -");
    assert_string_equal(pick(loop, &rr, NULL, b, sizeof(b)), "c,a,b 5432,5432,5432 -");
    assert_string_equal(pick(loop, &rr, NULL, b, sizeof(b)), "a,b,c 5432,5432,5432 -");

    /* the same hosts in another entry are the same Hosts */
    assert_int_equal(hosts_list_build(loop, &sticky, "a,b,c", 5432, NULL, TSA_ANY, LB_DISABLE, true,
                                      "db", "u", NULL),
                     0);
    for (int i = 0; i < 3; i++)
        assert_ptr_equal(sticky.v[i], rr.v[i]);
    assert_string_equal(pick(loop, &sticky, NULL, b, sizeof(b)), "a,b,c 5432,5432,5432 -");
    assert_string_equal(pick(loop, &sticky, NULL, b, sizeof(b)), "a,b,c 5432,5432,5432 -");
    /* disable: the next host only after a connection failed */
    hosts_list_failed(loop, &sticky);
    assert_string_equal(pick(loop, &sticky, NULL, b, sizeof(b)), "b,c,a 5432,5432,5432 -");
    assert_string_equal(pick(loop, &sticky, NULL, b, sizeof(b)), "b,c,a 5432,5432,5432 -");

    /* a host known down is left out */
    atomic_store(&rr.v[1]->state, HOST_DOWN);
    assert_string_equal(pick(loop, &rr, NULL, b, sizeof(b)), "c,a 5432,5432 -"); /* from b */
    assert_string_equal(pick(loop, &rr, NULL, b, sizeof(b)), "c,a 5432,5432 -"); /* from c */
    assert_string_equal(pick(loop, &rr, NULL, b, sizeof(b)), "a,c 5432,5432 -"); /* from a */
    hosts_list_free(loop, &rr);
    hosts_list_free(loop, &sticky);
    assert_null(hosts_at(loop, 0)); /* nothing references them: freed */
    test_loop_free(loop);
}

static void test_ports_and_addresses(void **state)
{
    (void)state;
    Loop *loop = test_loop();
    HostList hl;
    char b[512];
    assert_int_equal(hosts_list_build(loop, &hl, "db1,10.0.0.2,/tmp", 5432, "6001,6002,6003",
                                      TSA_ANY, LB_ROUND_ROBIN, true, "db", "u", NULL),
                     0);
    assert_int_equal(hl.v[2]->port, 6003);
    assert_string_equal(hl.v[2]->name, "/tmp");
    /* resolved addresses follow their hosts; an IP or a socket has none */
    assert_string_equal(pick(loop, &hl, "192.0.2.1,,", b, sizeof(b)),
                        "db1,10.0.0.2,/tmp 6001,6002,6003 192.0.2.1,,");
    assert_string_equal(pick(loop, &hl, "192.0.2.1,,", b, sizeof(b)),
                        "10.0.0.2,/tmp,db1 6002,6003,6001 ,,192.0.2.1");
    /* a name that did not resolve ("!", pool.c) is left out */
    assert_string_equal(pick(loop, &hl, "!,,", b, sizeof(b)), "/tmp,10.0.0.2 6003,6002 -");
    assert_ptr_equal(hosts_list_find(&hl, "/tmp", "6003"), hl.v[2]);
    assert_null(hosts_list_find(&hl, "/tmp", "6001"));
    hosts_list_free(loop, &hl);
    test_loop_free(loop);
}

static void test_roles(void **state)
{
    (void)state;
    Loop *loop = test_loop();
    HostList rw, ps, sb;
    char b[512];
    assert_int_equal(hosts_list_build(loop, &rw, "p,s1,s2", 5432, NULL, TSA_READ_WRITE,
                                      LB_ROUND_ROBIN, true, "db", "u", NULL),
                     0);
    assert_int_equal(hosts_list_build(loop, &ps, "p,s1,s2", 5432, NULL, TSA_PREFER_STANDBY,
                                      LB_ROUND_ROBIN, true, "db", "u", NULL),
                     0);
    assert_int_equal(hosts_list_build(loop, &sb, "p,s1,s2", 5432, NULL, TSA_STANDBY, LB_ROUND_ROBIN,
                                      true, "db", "u", NULL),
                     0);
    Host *p = rw.v[0], *s1 = rw.v[1], *s2 = rw.v[2];
    /* roles unknown: every host may do */
    assert_string_equal(pick(loop, &rw, NULL, b, sizeof(b)), "p,s1,s2 5432,5432,5432 -");
    hosts_note_role(loop, p, false);
    hosts_note_role(loop, s1, true);
    hosts_note_role(loop, s2, true);
    assert_int_equal(atomic_load(&p->state), HOST_UP);
    /* read-write: standbys never */
    assert_string_equal(pick(loop, &rw, NULL, b, sizeof(b)), "p 5432 -");
    /* prefer-standby: the standbys first (rotating), then the rest */
    assert_string_equal(pick(loop, &ps, NULL, b, sizeof(b)), "s1,s2,p 5432,5432,5432 -");
    assert_string_equal(pick(loop, &ps, NULL, b, sizeof(b)), "s1,s2,p 5432,5432,5432 -");
    assert_string_equal(pick(loop, &ps, NULL, b, sizeof(b)), "s2,s1,p 5432,5432,5432 -");
    assert_string_equal(pick(loop, &sb, NULL, b, sizeof(b)), "s1,s2 5432,5432 -");
    /* the primary goes: nothing for read-write, and the pick says why */
    atomic_store(&p->state, HOST_DOWN);
    assert_string_equal(pick(loop, &rw, NULL, b, sizeof(b)),
                        "none: no host is usable for target_session_attrs=read-write: p:5432 "
                        "down s1:5432 standby s2:5432 standby");
    /* s1 promoted, reported by one of its servers */
    hosts_note_role(loop, s1, false);
    assert_string_equal(pick(loop, &rw, NULL, b, sizeof(b)), "s1 5432 -");

    /* does a server still fit? (host role, else what the server reported) */
    assert_true(hosts_server_fits(&rw, s1, 1, false));    /* the host's role wins */
    assert_false(hosts_server_fits(&rw, s1, 0, true));    /* default_transaction_read_only */
    assert_false(hosts_server_fits(&rw, s2, 0, false));   /* a standby */
    assert_true(hosts_server_fits(&rw, NULL, -1, false)); /* nothing known */
    assert_false(hosts_server_fits(&rw, NULL, 1, false));
    assert_true(hosts_server_fits(&sb, s2, -1, false));
    assert_false(hosts_server_fits(&sb, s1, -1, false));
    /* prefer-standby: a primary serves only while no standby is up */
    assert_false(hosts_server_fits(&ps, s1, -1, false));
    atomic_store(&s2->state, HOST_DOWN);
    assert_true(hosts_server_fits(&ps, s1, -1, false));
    hosts_list_free(loop, &rw);
    hosts_list_free(loop, &ps);
    hosts_list_free(loop, &sb);
    test_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_and_sticky),
        cmocka_unit_test(test_ports_and_addresses),
        cmocka_unit_test(test_roles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
