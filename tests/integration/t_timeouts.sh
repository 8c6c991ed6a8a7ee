# shellcheck shell=bash
# t_timeouts.sh — client-side timeouts: each ends the client with an error
# that names the timeout, and the pooler keeps working.

_running() {
    pg_psql -c "select count(*) from pg_stat_activity where state = 'active' and query like '$1' and pid <> pg_backend_pid()"
}
_is_running() { [ "$(_running "$1")" -ge 1 ]; }
_not_running() { [ "$(_running "$1")" = 0 ]; }
_gone() { ! kill -0 "$1" 2>/dev/null; }
_ms() { date +%s%3N; }
_logged_since() { pf_logs_since "$1" | grep -qF -- "$2"; }

# timeout: 30
test_query_timeout_ends_long_query() {
    local out t0 dt
    pf_start "query_timeout = 1"
    t0=$(_ms)
    out=$(pf_psql -c "select pg_sleep(5.0555)" 2>&1)
    dt=$(($(_ms) - t0))
    assert_contains "$out" "query_timeout" "psql output"
    [ "$dt" -le 3000 ] || fail "the query ended after $dt ms"
    # the backend query does not go on either
    wait_until 3 _not_running '%pg_sleep(5.0555)%'
    # new clients work, and short queries are fine
    assert_eq 1 "$(pf_psql -c "select 1" 2>&1)" "a new client"
    assert_eq "" "$(pf_psql -c "select pg_sleep(0.3)" 2>&1)" "a query shorter than query_timeout"
    pf_stop
}

# timeout: 30
test_idle_transaction_timeout_ends_idle_transaction() {
    local out
    pf_start "idle_transaction_timeout = 1"
    out=$({
        echo "begin;"
        echo "select 'in-tx';"
        sleep 3
        echo "select 'after-sleep';"
    } | pf_psql 2>&1)
    assert_contains "$out" "in-tx"
    assert_contains "$out" "idle transaction timeout" "psql output"
    assert_not_contains "$out" "after-sleep"
    # an idle client outside a transaction is not affected
    out=$({
        echo "select 'one';"
        sleep 2
        echo "select 'two';"
    } | pf_psql 2>&1)
    assert_eq $'one\ntwo' "$out" "idle outside a transaction"
    # a transaction that is busy, not idle, for longer is fine
    out=$(pf_psql -c "begin" -c "select pg_sleep(2)" -c "select 'busy-ok'" -c "commit" 2>&1)
    assert_eq $'BEGIN\n\nbusy-ok\nCOMMIT' "$out" "busy transaction"
    # no backend was left idle in transaction
    assert_eq 0 "$(pg_psql -c "select count(*) from pg_stat_activity where state like 'idle in transaction%' and application_name = 'psql'")"
    pf_stop
}

# timeout: 30
test_client_idle_timeout_disconnects_idle_client() {
    local out
    pf_start "client_idle_timeout = 1"
    out=$({
        echo "select 'first';"
        sleep 3
        echo "select 'second';"
    } | pf_psql 2>&1)
    assert_contains "$out" "first"
    assert_contains "$out" "client_idle_timeout" "psql output"
    assert_not_contains "$out" "second"
    # an active client is fine
    assert_eq "" "$(pf_psql -c "select pg_sleep(1.5)" 2>&1)" "busy for longer than client_idle_timeout"
    pf_stop
}

# timeout: 30
test_client_login_timeout_disconnects_half_login() {
    local out t0 dt mark
    pf_start "client_login_timeout = 1"
    mark=$(pf_log_mark)
    exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT" || fail "cannot connect"
    # the first 6 bytes of a 40-byte StartupMessage
    printf '\x00\x00\x00\x28\x00\x03' >&3
    t0=$(_ms)
    out=$(timeout 6 cat <&3 | tr -c '[:print:]' '.')
    dt=$(($(_ms) - t0))
    exec 3<&-
    [ "$dt" -le 3000 ] || fail "disconnected after $dt ms (or not at all)"
    assert_contains "$out" "client_login_timeout" "the client is told why"
    wait_until 3 _logged_since "$mark" client_login_timeout
    # a client that logs in promptly is fine
    assert_eq 1 "$(pf_psql -c "select 1" 2>&1)"
    pf_stop
}

# timeout: 30
test_query_wait_timeout_fails_waiting_client() {
    local pa out t0 dt
    pf_start "default_pool_size = 1" "query_wait_timeout = 1"
    pf_psql -c "begin; select pg_sleep(4.0666); commit" >"$TEST_TMP/a.out" 2>&1 &
    pa=$!
    wait_until 5 _is_running '%pg_sleep(4.0666)%'
    t0=$(_ms)
    out=$(pf_psql -c "select 'b-ran'" 2>&1)
    dt=$(($(_ms) - t0))
    assert_contains "$out" "query_wait_timeout" "client B's output"
    assert_not_contains "$out" "b-ran"
    [ "$dt" -le 3000 ] || fail "client B waited $dt ms"
    # A is not affected and the server serves new clients afterwards
    wait "$pa"
    assert_eq 0 "$?" "client A ($(cat "$TEST_TMP/a.out"))"
    assert_eq "b-ran" "$(pf_psql -c "select 'b-ran'" 2>&1)"
    pf_stop
}

# query_timeout counts a query's time in the queue too, and comes before
# query_wait_timeout (as in PgBouncer): a client queued behind a paused
# database, and one waiting for its pool's first server login, both give up
# at query_timeout.
# timeout: 30
test_query_timeout_applies_to_queued_clients() {
    local out t0 dt port
    port=$(free_port)
    silent_listener_start "$port"
    pf_start "query_timeout = 1" "query_wait_timeout = 20" "server_connect_timeout = 10" \
        "admin_users = postgres" \
        "[databases]" "silentdb = host=127.0.0.1 port=$port dbname=postgres"
    assert_eq 1 "$(pf_psql -c 'select 1')"
    "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c "PAUSE postgres" >/dev/null
    t0=$(_ms)
    out=$(pf_psql -c "select 'ran'" 2>&1)
    dt=$(($(_ms) - t0))
    assert_contains "$out" "query_timeout" "queued client's output"
    assert_not_contains "$out" "ran"
    [ "$dt" -le 4000 ] || fail "the queued client gave up after $dt ms"
    "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c "RESUME postgres" >/dev/null
    # the first login of silentdb never finishes: its client waits for it
    t0=$(_ms)
    out=$(pf_psql -d silentdb -c "select 'ran'" 2>&1)
    dt=$(($(_ms) - t0))
    assert_contains "$out" "query_timeout" "output of the client waiting for the first login"
    [ "$dt" -le 4000 ] || fail "the client waiting for the first login gave up after $dt ms"
    assert_eq 1 "$(pf_psql -c 'select 1')" "still serving"
    pf_stop
}
