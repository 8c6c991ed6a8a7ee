# shellcheck shell=bash
# t_dns.sh — backend host names are resolved on the worker pool (libpq would
# block the loop on DNS) and comma-separated host lists are tried in order.

test_host_name_is_resolved_and_used() {
    pf_start "[databases]" "byname = host=localhost port=$PGPORT dbname=postgres" "[pgbouncer]" \
        "log_connections = 1"
    assert_eq 1 "$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d byname -c 'select 1')"
    # the backend saw a TCP connection from the loopback address the name resolved to
    local addr
    addr=$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d byname \
        -c 'select inet_server_addr()')
    assert_contains "$addr" "127.0.0.1"
    pf_stop
}

# A failed lookup may pass (as a refused connection): the client waits for the
# retries and gives up at query_wait_timeout, told the resolver's error.
test_unresolvable_host_fails_the_client_cleanly() {
    pf_start "[databases]" "nohost = host=no-such-host.invalid port=$PGPORT dbname=postgres" \
        "[pgbouncer]" "query_wait_timeout = 1"
    local out
    out=$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d nohost -c 'select 1' 2>&1)
    assert_contains "$out" "query_wait_timeout (could not resolve"
    # the pooler itself is fine
    assert_eq 1 "$(pf_psql -c 'select 1')"
    pf_stop
}

test_host_list_tries_the_next_host() {
    # PostgreSQL listens on 127.0.0.1 only: 127.0.0.2 (loopback too) refuses,
    # and libpq goes on to the next host of the list
    pf_start "[databases]" \
        "twohosts = host=127.0.0.2,localhost port=$PGPORT dbname=postgres"
    assert_eq 1 "$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d twohosts -c 'select 1')"
    pf_stop
}

# In a host list, a name that does not resolve leaves only that host out
# (a failed-over node whose DNS record is gone must not stop the others).
# timeout: 30
test_unresolvable_name_in_host_list_is_skipped() {
    pf_start "[databases]" \
        "mixed = host=no-such-host.invalid,localhost port=$PGPORT dbname=postgres user=postgres" \
        "[pgbouncer]" "query_wait_timeout = 5"
    assert_eq 1 "$(pf_psql -d mixed -c 'select 1' 2>&1)"
    assert_contains "$(pf_psql -d pgbouncer -c 'show dns_hosts')" "no-such-host.invalid,localhost|"
    pf_stop
}
