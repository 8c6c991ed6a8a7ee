# shellcheck shell=bash
# t_loops.sh — several event loops (issue #12): the limits stay exact over
# every loop, an idle server reaches a client waiting on another loop, a
# cancel finds its client whichever loop it arrives on, control commands and
# reloads act on every loop, and the console shows one row per object plus
# one per loop.  Every test runs with event_loops = 4 (PF_EVENT_LOOPS may
# raise it); `make tsan` runs this file against the ThreadSanitizer build.

LOOPS=${PF_EVENT_LOOPS:-4}
[ "$LOOPS" -ge 2 ] || LOOPS=4
HTTP_PORT=""

# _start [LINE…] — pgfunnel with $LOOPS loops, an HTTP port and the lines given
_start() {
    HTTP_PORT=$(free_port)
    PF_EVENT_LOOPS=$LOOPS pf_start "admin_http_port = $HTTP_PORT" "$@"
}
_console() { pf_psql -d pgbouncer -c "$1"; }
_metric() { # NAME — its value in /metrics (summed over label sets)
    curl -s "http://127.0.0.1:$HTTP_PORT/metrics" |
        awk -v m="$1" '{ n = $1; sub(/\{.*/, "", n) } n == m { s += $2; f = 1 } END { if (f) print s }'
}
# backends of pgfunnel_test (what pgbench below runs against), as PostgreSQL counts them
_backends() {
    pg_psql -c "select count(*) from pg_stat_activity where datname = 'pgfunnel_test'
                and backend_type = 'client backend' and pid <> pg_backend_pid()"
}

# _sample_backends OUT — until killed, append a count of backends to OUT every 50 ms
_sample_backends() {
    local out=$1
    while :; do
        _backends >>"$out" 2>/dev/null
        sleep 0.05
    done
}
_max_of() { sort -n "$1" | tail -n 1; }

# _bench_sampled SECONDS CLIENTS OUT SAMPLES — _sleepy_bench while backends are
# sampled into SAMPLES; returns pgbench's status
_bench_sampled() {
    local rc=0 sampler
    : >"$4"
    _sample_backends "$4" &
    sampler=$!
    _sleepy_bench "$1" "$2" "$3" || rc=$?
    kill "$sampler"
    wait "$sampler" 2>/dev/null
    return $rc
}

# _sleepy_bench SECONDS CLIENTS OUT — pgbench of short transactions that hold a server
_sleepy_bench() {
    printf 'select pg_sleep(0.002);\n' >"$TEST_TMP/sleepy.sql"
    pgbench -n -h 127.0.0.1 -p "$PF_PORT" -U postgres -c "$2" -j 2 -T "$1" \
        -f "$TEST_TMP/sleepy.sql" pgfunnel_test >"$3" 2>&1
}
_assert_bench_ok() { # RC OUT
    assert_eq 0 "$1" "pgbench status ($(tail -n 5 "$2"))"
    assert_contains "$(cat "$2")" "number of failed transactions: 0" "pgbench failures"
}

# timeout: 90
test_pool_limit_holds_with_200_clients_over_4_loops() {
    local rc=0 samples=$TEST_TMP/samples max accepted
    _start "default_pool_size = 5" "max_client_conn = 300"
    _bench_sampled 5 200 "$TEST_TMP/bench.out" "$samples" || rc=$?
    _assert_bench_ok "$rc" "$TEST_TMP/bench.out"
    max=$(_max_of "$samples")
    [ "$(wc -l <"$samples")" -ge 20 ] || fail "only $(wc -l <"$samples") samples"
    # exact over every loop, and used: 200 clients keep every allowed server busy
    assert_eq 5 "$max" "most backends PostgreSQL saw at once (pool_size 5 over $LOOPS loops)"
    # the clients were dealt over every loop
    accepted=$(_console "show loops" | awk -F'|' '$3 < 40 { print "loop " $1 " got " $3 }')
    assert_eq "" "$accepted" "every loop gets its share of 200 clients"
    assert_eq "$LOOPS" "$(_console "show loops" | wc -l)" "SHOW LOOPS rows"
    pf_alive || fail "pgfunnel died"
}

# timeout: 60
test_max_client_conn_is_exact_over_loops() {
    local out
    _start "max_client_conn = 20"
    wait_until 5 _clients_le 0 # pf_start's probe connection has gone
    out=$("$TOOLS_DIR/idle_clients" "host=127.0.0.1 port=$PF_PORT user=postgres dbname=postgres" \
        30 1 2>&1)
    assert_contains "$out" "connected=20 failed=10" "30 clients against max_client_conn 20"
    # the refused ones heard why
    pf_logs | grep -q "no more connections allowed" || fail "no refusal logged: $(pf_logs | tail -5)"
    wait_until 5 _clients_le 1
}
_clients_le() { [ "$(_metric pgfunnel_client_connections)" -le "$1" ]; }

# timeout: 60
test_idle_server_is_handed_to_a_client_waiting_on_another_loop() {
    local holder waiter_out t0 t1
    _start "default_pool_size = 1" "query_wait_timeout = 30"
    # the first client takes the only server in a transaction and holds it 2 s
    {
        echo "begin;"
        echo "select 1;"
        sleep 2
        echo "commit;"
    } | pf_psql -d pgfunnel_test >/dev/null 2>&1 &
    holder=$!
    wait_until 5 _busy_servers_ge 1
    # the next accepted socket goes to the next loop: it waits there for that server
    t0=$(date +%s%N)
    waiter_out=$(pf_psql -d pgfunnel_test -c "select 'served ' || 42")
    t1=$(date +%s%N)
    wait "$holder"
    assert_eq "served 42" "$waiter_out"
    # served when the holder committed (about 2 s), not after query_wait_timeout
    [ $(((t1 - t0) / 1000000)) -lt 10000 ] || fail "waited $(((t1 - t0) / 1000000)) ms"
    [ "$(_metric pgfunnel_event_loop_handovers_total)" -ge 1 ] ||
        fail "no hand-over counted: $(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep handover)"
    # still one backend for the pool
    assert_eq 1 "$(_backends)" "backends of a pool of 1"
}
_busy_servers_ge() { [ "$(_metric pgfunnel_server_connections)" -ge "$1" ]; }

# Many short waits over every loop: every transaction is served, none
# waits anywhere near query_wait_timeout (nobody starves).
# timeout: 60
test_waiters_on_every_loop_are_all_served() {
    local rc=0 worst
    _start "default_pool_size = 2" "max_client_conn = 100" "query_wait_timeout = 20"
    printf 'select pg_sleep(0.002);\n' >"$TEST_TMP/sleepy.sql"
    (cd "$TEST_TMP" && pgbench -n -h 127.0.0.1 -p "$PF_PORT" -U postgres -c 40 -j 2 -T 4 \
        -l --log-prefix=txn -f sleepy.sql pgfunnel_test >bench.out 2>&1) || rc=$?
    _assert_bench_ok "$rc" "$TEST_TMP/bench.out"
    # every transaction's latency (µs, 3rd field of pgbench's log): none starved
    worst=$(cat "$TEST_TMP"/txn.* | awk '$3 > m { m = $3 } END { print m + 0 }')
    [ "$worst" -gt 0 ] || fail "no transaction log"
    [ "$worst" -lt 3000000 ] || fail "a transaction took ${worst} µs (40 clients, 2 servers)"
    [ "$(_metric pgfunnel_event_loop_handovers_total)" -ge 1 ] ||
        fail "no hand-over with 40 clients on 2 servers over $LOOPS loops"
}

# timeout: 60
test_cancel_arriving_on_another_loop_reaches_its_client() {
    local out t0 t1
    _start
    t0=$(date +%s%N)
    # psql sends the CancelRequest on a new connection: it is dealt to the next loop
    out=$(timeout -s INT 1 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres \
        -d postgres -c "select pg_sleep(20)" 2>&1)
    t1=$(date +%s%N)
    assert_contains "$out" "canceling statement due to user request"
    [ $(((t1 - t0) / 1000000)) -lt 8000 ] || fail "the cancel took $(((t1 - t0) / 1000000)) ms"
    [ "$(_metric pgfunnel_event_loop_cancels_routed_total)" -ge 1 ] || fail "no routed cancel counted"
    assert_eq "ok" "$(pf_psql -c "select 'ok'")" "the pool still serves"
}

# _hold N — N idle clients (one or more on every loop) for 60 s; sets HOLD_PID
_hold() {
    "$TOOLS_DIR/idle_clients" "host=127.0.0.1 port=$PF_PORT user=postgres dbname=postgres" \
        "$1" 60 >"$TEST_TMP/hold.out" 2>&1 &
    HOLD_PID=$!
    wait_until 10 grep -q ready "$TEST_TMP/hold.out"
}
_console_clients() { _console "show clients" | awk -F'|' '$2 == "postgres"' | wc -l; }
_console_clients_eq() { [ "$(_console_clients)" -eq "$1" ]; }

# timeout: 90
test_console_rows_cover_every_loop() {
    _start
    _hold 8
    # one row per client over every loop (the console's own connection is a client too)
    assert_eq 9 "$(_console_clients)" "SHOW CLIENTS rows of user postgres"
    # one row per pool, summed over the loops
    assert_eq 1 "$(_console "show pools" | awk -F'|' '$1 == "postgres" && $2 == "postgres"' | wc -l)"
    assert_eq 8 "$(_console "show pools" | awk -F'|' '$1 == "postgres" && $2 == "postgres" { print $3 }')"
    # every loop holds two of them (round-robin)
    assert_eq "" "$(_console "show loops" | awk -F'|' '$2 < 2 { print "loop " $1 ": " $2 }')"
    # per-loop metrics, one sample per loop
    assert_eq "$LOOPS" "$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" |
        grep -c '^pgfunnel_event_loop_client_connections{')"
    assert_eq 8 "$(_metric pgfunnel_event_loop_client_connections)"
    kill "$HOLD_PID"
    wait "$HOLD_PID" 2>/dev/null
    wait_until 5 _console_clients_eq 1
}

# timeout: 120
test_control_commands_act_on_every_loop() {
    local out q
    _start "default_pool_size = 4"
    _hold 8
    # PAUSE: answers once every loop has paused; a query waits until RESUME
    assert_eq "PAUSE" "$(_console_tag "pause postgres")"
    pf_psql -c "select 'after resume'" >"$TEST_TMP/q.out" 2>&1 &
    q=$!
    sleep 1
    [ -s "$TEST_TMP/q.out" ] && fail "answered while paused: $(cat "$TEST_TMP/q.out")"
    assert_eq "RESUME" "$(_console_tag "resume postgres")"
    wait "$q"
    assert_eq "after resume" "$(cat "$TEST_TMP/q.out")"
    # RECONNECT: every server of the database, on every loop, is replaced
    out=$(pf_psql -c "select pg_backend_pid()")
    assert_eq "RECONNECT" "$(_console_tag "reconnect postgres")"
    wait_until 10 _backend_gone "$out"
    # SET and RELOAD reach every loop: the new pool size holds for all of them
    assert_eq "SET" "$(_console_tag "set default_pool_size = 2")"
    assert_eq "2" "$(_console "show config" | awk -F'|' '$1 == "default_pool_size" { print $2 }')"
    _limit_held 2
    sed -i 's/^default_pool_size = .*/default_pool_size = 3/' "$PF_INI"
    assert_eq "RELOAD" "$(_console_tag "reload")"
    assert_eq "3" "$(_console "show config" | awk -F'|' '$1 == "default_pool_size" { print $2 }')"
    _limit_held 3
    # KILL: the idle clients on every loop are closed
    assert_eq "KILL" "$(_console_tag "kill postgres")"
    wait_until 10 _console_clients_eq 1
    assert_eq "RESUME" "$(_console_tag "resume postgres")"
    kill "$HOLD_PID" 2>/dev/null
    wait "$HOLD_PID" 2>/dev/null
    assert_eq "ok" "$(pf_psql -c "select 'ok'")"
}
_console_tag() { # SQL — the command tag psql prints for a console command
    "$PG_BINDIR/psql" -X -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c "$1" 2>&1 | tail -n 1
}
_backend_gone() { [ "$(pg_psql -c "select count(*) from pg_stat_activity where pid = $1")" = 0 ]; }
_limit_held() { # N — 60 sleepy clients over the loops never see more than N backends
    local samples=$TEST_TMP/limit.$1 rc=0
    _bench_sampled 3 60 "$TEST_TMP/limit-bench.out" "$samples" || rc=$?
    _assert_bench_ok "$rc" "$TEST_TMP/limit-bench.out"
    assert_eq "$1" "$(_max_of "$samples")" "backends with default_pool_size = $1 over $LOOPS loops"
}

# KILL_CLIENT names a client by the id SHOW CLIENTS prints; the id carries its loop.
# timeout: 60
test_kill_client_on_another_loop() {
    local id
    _start
    _hold 4
    id=$(_console "show clients" | awk -F'|' '$2 == "postgres" && $5 == "idle" { print $NF }' | head -n 1)
    [ -n "$id" ] || fail "no client id in SHOW CLIENTS: $(_console "show clients")"
    assert_eq "KILL_CLIENT" "$(_console_tag "kill_client $id")"
    wait_until 5 _console_clients_eq 4
    kill "$HOLD_PID"
    wait "$HOLD_PID" 2>/dev/null
}

# SIGHUP and console traffic while 100 clients run over every loop: no failed
# transaction, the limit holds through every reload.
# timeout: 120
test_reloads_and_console_under_load_keep_limits() {
    local rc=0 samples=$TEST_TMP/samples sampler bench i
    _start "default_pool_size = 5" "max_client_conn = 200"
    : >"$samples"
    _sample_backends "$samples" &
    sampler=$!
    _sleepy_bench 8 100 "$TEST_TMP/bench.out" &
    bench=$!
    for i in 1 2 3 4 5 6; do
        if [ $((i % 2)) = 1 ]; then
            sed -i 's/^default_pool_size = .*/default_pool_size = 4/' "$PF_INI"
        else
            sed -i 's/^default_pool_size = .*/default_pool_size = 5/' "$PF_INI"
        fi
        kill -HUP "$PF_PID"
        _console "show pools" >/dev/null || fail "SHOW POOLS failed under load"
        _console "show clients" >/dev/null || fail "SHOW CLIENTS failed under load"
        _console "show loops" >/dev/null || fail "SHOW LOOPS failed under load"
        curl -sf "http://127.0.0.1:$HTTP_PORT/metrics" >/dev/null || fail "/metrics failed under load"
        sleep 0.8
    done
    wait "$bench" || rc=$?
    kill "$sampler"
    wait "$sampler" 2>/dev/null
    _assert_bench_ok "$rc" "$TEST_TMP/bench.out"
    max=$(_max_of "$samples")
    [ "$max" -le 5 ] || fail "PostgreSQL saw $max backends with pool_size ≤ 5"
    pf_alive || fail "pgfunnel died"
}
