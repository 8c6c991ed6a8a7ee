# shellcheck shell=bash
# t_admin.sh — the admin console (SHOW, control commands), signals USR1/USR2,
# statistics and histograms, the HTTP endpoint, Debian's pgbouncer exporter.

# shellcheck source=tests/integration/session.sh
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"

_adm() { "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer "$@"; }
_admin_ini() { # extra lines for pf_start
    HTTP_PORT=$(free_port)
    export HTTP_PORT
    pf_start "admin_http_port = $HTTP_PORT" "stats_users = statsuser" "$@"
}
_q() { pf_psql -c "$1"; }
_col() { # CMD COLUMN-NAME ROW-FILTER: the value of a named column in rows matching grep
    _adm -F'|' -c "$1" --no-align -P footer=off -t 2>/dev/null >/dev/null
    "$PG_BINDIR/psql" -X -A -F'|' -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c "$1" |
        awk -F'|' -v col="$2" -v pat="$3" 'NR==1{for(i=1;i<=NF;i++) if($i==col) c=i; next}
            $0 ~ pat && c {print $c; exit}'
}

test_show_commands_all() {
    local cmd out v
    _admin_ini
    _q "select 1" >/dev/null
    for cmd in HELP POOLS STATS STATS_TOTALS STATS_AVERAGES TOTALS CLIENTS SERVERS SOCKETS \
        ACTIVE_SOCKETS DATABASES USERS CONFIG LISTS MEM FDS STATE VERSION DNS_HOSTS DNS_ZONES LATENCY; do
        assert_ok _adm -c "SHOW $cmd"
        assert_ok _adm -c "show ${cmd,,};"
    done
    assert_ok _adm -c "SELECT version"
    # the version line of --version
    v=$("$PGFUNNEL_BIN" --version | head -n 1)
    assert_eq "$v" "$(_adm -c 'SHOW VERSION')"
    # PgBouncer's column names, in order
    out=$("$PG_BINDIR/psql" -X -A -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c "SHOW POOLS" | head -n 1)
    assert_eq "database|user|cl_active|cl_waiting|cl_active_cancel_req|cl_waiting_cancel_req|sv_active|sv_active_cancel|sv_being_canceled|sv_idle|sv_used|sv_tested|sv_login|maxwait|maxwait_us|pool_mode" "$out"
    out=$("$PG_BINDIR/psql" -X -A -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c "SHOW STATS" | head -n 1)
    assert_contains "$out" "database|total_server_assignment_count|total_xact_count|total_query_count|total_received|total_sent|total_xact_time|total_query_time|total_wait_time|total_client_parse_count|total_server_parse_count|total_bind_count|avg_server_assignment_count|avg_xact_count|avg_query_count|avg_recv|avg_sent|avg_xact_time|avg_query_time|avg_wait_time|avg_client_parse_count|avg_server_parse_count|avg_bind_count"
    out=$("$PG_BINDIR/psql" -X -A -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c "SHOW CONFIG" | head -n 1)
    assert_eq "key|value|default|changeable" "$out"
    # numeric columns are typed (int4/int8), text ones are text
    out=$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c "SHOW LISTS" -o /dev/null -c '\gdesc' 2>&1 || true)
    # the admin connection itself is a client; the HELP text mentions SUSPEND
    assert_contains "$(_adm -c 'SHOW CLIENTS')" "pgbouncer"
    assert_contains "$(_adm -c 'SHOW HELP' 2>&1)" "SUSPEND"
    assert_contains "$(_adm -c 'SUSPEND' 2>&1)" "SUSPEND is not supported"
    # errors are ErrorResponses and the session continues
    out=$(_adm -v ON_ERROR_STOP=0 -c "SHOW nosuch" -c "SHOW VERSION" 2>&1)
    assert_contains "$out" "ERROR"
    assert_contains "$out" "$v"
    # strict arguments: quotes and semicolons are just a name that does not exist
    # (control commands act on [databases] entries or databases in use, never via "*")
    out=$(_adm -v ON_ERROR_STOP=0 -c "PAUSE \"x'; DROP TABLE t; --\"" -c "SHOW STATE" 2>&1)
    assert_contains "$out" "no such database: x'; DROP TABLE t; --"
    assert_contains "$out" "active|yes"
    assert_eq 1 "$(_q 'select 1')"
    out=$(_adm -v ON_ERROR_STOP=0 -c "PAUSE 'unterminated" 2>&1)
    assert_contains "$out" "invalid command"
    out=$(_adm -v ON_ERROR_STOP=0 -c "DISABLE pgbouncer" 2>&1)
    assert_contains "$out" "admin database"
    out=$(_adm -c "PAUSE postgres; RESUME postgres" 2>&1)
    assert_contains "$out" "invalid command"
    # stats_users may SHOW, not control
    assert_ok "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U statsuser -d pgbouncer -c "SHOW POOLS"
    out=$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U statsuser -d pgbouncer -c "PAUSE" 2>&1)
    assert_contains "$out" "admin access needed"
    # anybody else is refused
    assert_fail "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U nobody -d pgbouncer -c "SHOW POOLS"
    # SO_PEERCRED: user pgbouncer over the unix socket from our own uid
    assert_eq "$v" "$("$PG_BINDIR/psql" -X -At -h "$TEST_TMP" -p "$PF_PORT" -U pgbouncer -d pgbouncer -c 'SHOW VERSION')"
    assert_fail "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U pgbouncer -d pgbouncer -c "SHOW VERSION"
    # secrets are masked in SHOW CONFIG and SET changes a reloadable option
    assert_ok _adm -c "SET default_pool_size = 7"
    assert_contains "$(_adm -c 'SHOW CONFIG')" "default_pool_size|7|"
    out=$(_adm -c "SET listen_port = 1" 2>&1)
    assert_contains "$out" "ERROR"
    pf_stop INT
}

test_pause_holds_queries_until_resume() {
    local out t0 t1 bg
    _admin_ini
    _q "select 1" >/dev/null
    # a long query delays PAUSE, which returns only when the server is released
    _q "select pg_sleep(1.5)" >/dev/null &
    bg=$!
    sleep 0.3
    t0=$(date +%s%3N)
    assert_ok _adm -c "PAUSE postgres"
    t1=$(date +%s%3N)
    [ $((t1 - t0)) -ge 800 ] || fail "PAUSE returned after $((t1 - t0)) ms, before the query finished"
    wait "$bg"
    assert_contains "$(_adm -c 'SHOW DATABASES')" "postgres|127.0.0.1|$PGPORT|postgres||"
    # a new query is held while paused
    (_q "select 'after-resume'" >"$TEST_TMP/held.out" 2>&1) &
    bg=$!
    sleep 1
    assert_eq "" "$(cat "$TEST_TMP/held.out")" "query ran while paused"
    assert_contains "$(_adm -c 'SHOW POOLS')" "postgres|postgres|0|1|"
    assert_ok _adm -c "RESUME postgres"
    wait "$bg"
    assert_eq "after-resume" "$(cat "$TEST_TMP/held.out")"
    out=$(_adm -c "RESUME postgres" 2>&1)
    assert_contains "$out" "is not paused"
    # SIGUSR1 / SIGUSR2 = PAUSE / RESUME of everything
    kill -USR1 "$PF_PID"
    wait_until 5 bash -c "$(declare -f _adm); _adm -c 'SHOW STATE' | grep -q 'paused|yes'"
    (_q "select 'usr2'" >"$TEST_TMP/held2.out" 2>&1) &
    bg=$!
    sleep 0.5
    assert_eq "" "$(cat "$TEST_TMP/held2.out")"
    kill -USR2 "$PF_PID"
    wait "$bg"
    assert_eq "usr2" "$(cat "$TEST_TMP/held2.out")"
    # DISABLE refuses new clients, ENABLE lets them in
    assert_ok _adm -c "DISABLE postgres"
    assert_fail _q "select 1"
    assert_ok _adm -c "ENABLE postgres"
    assert_ok _q "select 1"
    pf_stop INT
}

test_reconnect_kill_kill_client() {
    local pid1 pid2 id out b1 b2
    _admin_ini "pool_mode = session"
    pid1=$(_q "select pg_backend_pid()")
    pid2=$(_q "select pg_backend_pid()")
    assert_eq "$pid1" "$pid2" "session pool reuses the idle server"
    assert_ok _adm -c "RECONNECT postgres"
    assert_ok _adm -c "WAIT_CLOSE postgres"
    pid2=$(_q "select pg_backend_pid()")
    assert_ne "$pid1" "$pid2" "RECONNECT must replace the server"
    # KILL_CLIENT: one client gets an error, another continues
    (PGAPPNAME=victim _q "select pg_sleep(10)" >"$TEST_TMP/k1.out" 2>&1; echo "rc=$?" >>"$TEST_TMP/k1.out") &
    b1=$!
    (_q "select pg_sleep(2), 'survivor'" >"$TEST_TMP/k2.out" 2>&1) &
    b2=$!
    wait_until 5 bash -c "$(declare -f _adm); _adm -c 'SHOW CLIENTS' | grep -q '|victim|'"
    id=$("$PG_BINDIR/psql" -X -A -F'|' -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c "SHOW CLIENTS" |
        awk -F'|' 'NR>1 && $19=="victim" {print $21}' | head -n 1)
    [ -n "$id" ] || fail "no client id"
    assert_ok _adm -c "KILL_CLIENT $id"
    out=$(_adm -c "KILL_CLIENT 999999" 2>&1)
    assert_contains "$out" "client not found"
    wait "$b1" "$b2"
    assert_contains "$(cat "$TEST_TMP/k1.out")" "admin forced disconnect"
    assert_contains "$(cat "$TEST_TMP/k2.out")" "survivor"
    # KILL db drops its clients and servers and pauses it
    (_q "select pg_sleep(10)" >"$TEST_TMP/k3.out" 2>&1) &
    b1=$!
    sleep 0.5
    assert_ok _adm -c "KILL postgres"
    wait "$b1"
    assert_contains "$(cat "$TEST_TMP/k3.out")" "KILL"
    assert_contains "$(_adm -c 'SHOW DATABASES')" "|1|0"
    assert_ok _adm -c "RESUME postgres"
    assert_eq 1 "$(_q 'select 1')"
    pf_stop INT
}

_backend_gone() { [ "$(pg_psql -c "select count(*) from pg_stat_activity where pid = $1")" = 0 ]; }

# server_fast_close = 1: after RECONNECT a session-mode server closes at the
# next transaction boundary, and its client gets PgBouncer's FATAL, instead
# of keeping the old server for the rest of the session.
# timeout: 40
test_server_fast_close_ends_sessions_at_transaction_boundary() {
    local pa pb pc
    _admin_ini "pool_mode = session" "server_fast_close = 1"
    # A: idle between transactions; B: inside a transaction
    "$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --query "select pg_backend_pid()" --hold 8 \
        --timeout 10 >"$TEST_TMP/a.out" 2>&1 &
    pc=$!
    wait_until 5 grep -q '^D ' "$TEST_TMP/a.out"
    pa=$(awk '/^D / { print $2; exit }' "$TEST_TMP/a.out")
    _sess_open B
    _sess_expect B "begin;" "BEGIN"
    _sess_run B "select pg_backend_pid();" || fail "session B"
    pb=$SESS_OUT
    assert_ok _adm -c "RECONNECT postgres"
    wait_until 3 grep -q "database configuration changed" "$TEST_TMP/a.out"
    wait_until 3 _backend_gone "$pa"
    assert_contains "$(cat "$TEST_TMP/a.out")" $'E FATAL 08P01 database configuration changed\nEOF' \
        "client A is told why and closed"
    wait "$pc"
    # B keeps its server until its transaction ends
    sleep 0.5
    _sess_expect B "select pg_backend_pid();" "$pb"
    # (psql may print the FATAL with the COMMIT or only at its next query)
    _sess_run B "commit;" || fail "session B: commit"
    wait_until 3 _backend_gone "$pb"
    assert_eq 2 "$(grep -c "C-[0-9]* .*closing because: database configuration changed" "$PF_LOG")" \
        "clients A and B closed by server_fast_close"
    _sess_close B
    assert_eq 1 "$(_q 'select 1')" "new clients get new servers"
    pf_stop INT
}

test_reload_applies_pool_size() {
    local out
    _admin_ini "default_pool_size = 3"
    _q "select 1" >/dev/null
    assert_contains "$(_adm -c 'SHOW DATABASES')" "postgres|127.0.0.1|$PGPORT|postgres||3|"
    sed -i 's/^default_pool_size = 3/default_pool_size = 9/' "$PF_INI"
    assert_ok _adm -c "RELOAD"
    assert_contains "$(_adm -c 'SHOW DATABASES')" "postgres|127.0.0.1|$PGPORT|postgres||9|"
    assert_contains "$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics")" 'pgfunnel_pool_size{database="postgres",user="postgres",pool_mode="transaction"} 9'
    echo "garbage line" >>"$PF_INI"
    out=$(_adm -c "RELOAD" 2>&1)
    assert_contains "$out" "RELOAD failed"
    pf_alive || fail "pgfunnel died after a bad RELOAD"
    pf_stop INT
}

# Console errors carry SQLSTATE 08P01, as PgBouncer's console sends them.
test_console_errors_are_08P01() {
    local cmd out
    _admin_ini
    for cmd in "SHOW NOSUCH" "NOSUCH" "SET nosuch = 1" "SET default_pool_size = 'x'" \
        "RELOAD now" "KILL_CLIENT 0" "PAUSE nosuchdb" "SUSPEND" "SHOW POOLS EXTRA"; do
        out=$(_adm -v VERBOSITY=verbose -c "$cmd" 2>&1)
        assert_contains "$out" "ERROR:  08P01: " "$cmd"
    done
    # a stats user's control command, and a user without console rights
    out=$("$PG_BINDIR/psql" -X -At -v VERBOSITY=verbose -h 127.0.0.1 -p "$PF_PORT" -U statsuser \
        -d pgbouncer -c "RECONNECT" 2>&1)
    assert_contains "$out" "ERROR:  08P01: admin access needed" "stats user"
    out=$("$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --param user=someone \
        --param database=pgbouncer --timeout 5 2>&1)
    assert_contains "$out" "E FATAL 08P01 not allowed" "a user without console rights"
    pf_stop INT
}

# What drivers send to any server they connect to, answered as PgBouncer's
# console does: SET with a notice and no effect, SHOW with a fixed value; the
# PgBouncer wording of KILL_CLIENT's and RELOAD's errors (F0000 for a bad file).
test_console_answers_driver_settings_like_pgbouncer() {
    local out
    _admin_ini
    out=$(_adm -c "SET extra_float_digits = 2" 2>&1)
    assert_contains "$out" "NOTICE:  SET ignored"
    assert_contains "$out" "SET"
    # a stats user may send them too (JDBC does, whoever logs in)
    out=$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U statsuser -d pgbouncer \
        -c "SET application_name = 'PostgreSQL JDBC Driver'" -c "SHOW client_encoding" 2>&1)
    assert_contains "$out" "SET ignored"
    assert_contains "$out" "UTF8"
    assert_eq "read committed" "$(_adm -c 'SHOW default_transaction_isolation')"
    assert_eq "on" "$(_adm -c 'SHOW standard_conforming_strings')"
    # nothing else of the pooler changed
    assert_eq "$(_col 'SHOW CONFIG' value '^default_pool_size')" "20" "default_pool_size"
    out=$(_adm -v VERBOSITY=verbose -c "KILL_CLIENT nosuchclient" 2>&1)
    assert_contains "$out" "ERROR:  08P01: invalid client pointer supplied"
    echo "server_lifetime = not_a_number" >>"$PF_INI"
    out=$(_adm -v VERBOSITY=verbose -c "RELOAD" 2>&1)
    assert_contains "$out" "ERROR:  F0000: RELOAD failed, see logs for additional details"
    pf_alive || fail "pgfunnel died after a bad RELOAD"
    assert_eq 1 "$(_q 'select 1')" "still serving after the failed RELOAD"
    pf_stop INT
}

# Every [databases] and [users] entry is listed, also before a client has
# used it (as in PgBouncer); SHOW LISTS counts the same rows; SHOW TOTALS has
# the login count SHOW STATS appends.
test_show_databases_and_users_list_entries_not_used_yet() {
    _admin_ini "[databases]" "unused = host=127.0.0.1 port=$PGPORT dbname=pgfunnel_test user=postgres pool_size=7" \
        "[users]" "cfguser = pool_size=1 reserve_pool_size=1" "other ="
    assert_contains "$(_adm -c 'SHOW DATABASES')" "unused|127.0.0.1|$PGPORT|pgfunnel_test|postgres|7|"
    assert_eq "$(_adm -c 'SHOW DATABASES' | wc -l)" "$(_col 'SHOW LISTS' items '^databases')" "SHOW LISTS databases"
    assert_eq "cfguser|1|1||0|0|0|0
other||||0|0|0|0" "$(_adm -c 'SHOW USERS')"
    assert_eq 2 "$(_col 'SHOW LISTS' items '^users')" "SHOW LISTS users"
    assert_eq 1 "$(pf_psql -d unused -c 'select 1')"
    assert_eq 1 "$(_adm -c 'SHOW DATABASES' | grep -c '^unused|')" "one row once it is in use"
    assert_eq 1 "$(_adm -c 'SHOW TOTALS' | grep -c '^total_client_login_count|1$')" "SHOW TOTALS logins"
    pf_stop INT
}

_peer_pool_row_is() { [ "$(_adm -c 'SHOW PEER_POOLS' | head -1)" = "$1" ]; }

# SHOW PEERS and SHOW PEER_POOLS (PgBouncer 1.19+): the [peers] entries, and a
# cancel request being forwarded to a peer that does not answer.
# timeout: 40
test_show_peers_and_peer_pools() {
    local port out key
    port=$(free_port)
    silent_listener_start "$port"
    _admin_ini "peer_id = 1" "cancel_wait_timeout = 3" \
        "[peers]" "2 = host=127.0.0.1 port=$port pool_size=4" "3 = host=/tmp/nosuchdir"
    assert_eq "2|127.0.0.1|$port|4
3|/tmp/nosuchdir|6432|20" "$(_adm -c 'SHOW PEERS')"
    assert_eq "2|0|0|0|0
3|0|0|0|0" "$(_adm -c 'SHOW PEER_POOLS')"
    assert_eq 2 "$(_col 'SHOW LISTS' items '^peers')" "SHOW LISTS peers"
    # a cancel request for a session of peer 2: forwarded, and peer 2 never answers
    key=$(((2 << 18) | 99))
    "$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --cancel 7 "$key" --timeout 8 >"$TEST_TMP/c.out" 2>&1 &
    local cl=$!
    wait_until 5 grep -q accepted "$TEST_TMP/listener.log"
    wait_until 2 _peer_pool_row_is '2|1|0|1|0'
    wait_until 6 grep -q 'forwarding a cancel request to peer 2 .* failed: no answer: timed out' "$PF_LOG"
    assert_eq "2|0|0|0|0" "$(_adm -c 'SHOW PEER_POOLS' | head -1)"
    wait "$cl"
    assert_contains "$(cat "$TEST_TMP/c.out")" "EOF"
    pf_stop INT
}

# timeout: 60
test_shutdown_wait_for_clients() {
    local rc bg
    _admin_ini
    (_q "select pg_sleep(2), 'finished'" >"$TEST_TMP/s.out" 2>&1) &
    bg=$!
    sleep 0.5
    assert_ok _adm -c "SHUTDOWN WAIT_FOR_CLIENTS"
    sleep 0.5
    pf_alive || fail "pgfunnel exited while a client was still connected"
    # new clients are not served (accept is paused)
    PGCONNECT_TIMEOUT=2 assert_fail _q "select 1"
    wait "$bg"
    assert_contains "$(cat "$TEST_TMP/s.out")" "finished"
    wait_until 10 bash -c "! kill -0 $PF_PID 2>/dev/null || [ \"\$(awk '{print \$3}' /proc/$PF_PID/stat)\" = Z ]"
    rc=0
    wait "$PF_PID" || rc=$?
    assert_eq 0 "$rc" "exit status after SHUTDOWN WAIT_FOR_CLIENTS"
}

test_stats_histogram_and_metrics() {
    local m i n out
    _admin_ini "stats_period = 1"
    for ((i = 0; i < 25; i++)); do _q "select 1" >/dev/null; done
    out=$(_adm -c "SHOW LATENCY")
    assert_contains "$out" "postgres|25|"
    m=$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics")
    assert_contains "$m" 'pgfunnel_query_duration_seconds_count{database="postgres"} 25'
    assert_contains "$m" 'pgfunnel_query_duration_seconds_bucket{database="postgres",le="+Inf"} 25'
    assert_contains "$m" 'pgfunnel_queries_total{database="postgres"} 25'
    assert_contains "$m" "# TYPE pgfunnel_query_duration_seconds histogram"
    assert_contains "$m" "pgfunnel_workq_queue_depth"
    assert_contains "$m" "pgfunnel_log_lines_dropped_total"
    assert_contains "$m" "pgfunnel_loop_lag_p99_seconds"
    n=$(_col "SHOW STATS" total_xact_count "^postgres")
    assert_eq 25 "$n"
    # averages and the log_stats line after a stats_period
    wait_until 5 bash -c "grep -q 'stats: .* xacts/s, .* queries/s, .* in .* B/s, out .* B/s, xact .* us, query .* us, wait .* us' '$PF_LOG'"
    # promtool accepts the exposition
    if ! command -v promtool >/dev/null && [ "$(id -u)" = 0 ]; then
        apt-get install -y prometheus >/dev/null 2>&1
    fi
    if command -v promtool >/dev/null; then
        out=$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | promtool check metrics 2>&1)
        assert_eq 0 "$?" "promtool check metrics: $out"
    else
        echo "promtool not available: check skipped"
    fi
    # /healthz, /pools
    assert_eq 200 "$(curl -s -o "$TEST_TMP/h.json" -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/healthz")"
    assert_contains "$(cat "$TEST_TMP/h.json")" '"status":"ok"'
    assert_contains "$(curl -s "http://127.0.0.1:$HTTP_PORT/pools")" '"database":"postgres"'
    assert_eq 404 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/nope")"
    pf_stop INT
}

test_http_auth_and_healthz_failure() {
    # the password is checked against auth_file (plaintext here; md5/SCRAM work too)
    printf '"postgres" "s3cret"\n' >"$TEST_TMP/users.txt"
    _admin_ini "admin_http_auth = 1" "auth_file = $TEST_TMP/users.txt" \
        "[databases]" "broken = host=127.0.0.1 port=1 dbname=x"
    assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/metrics")"
    assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -u nobody:x "http://127.0.0.1:$HTTP_PORT/metrics")"
    assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -u postgres:wrong "http://127.0.0.1:$HTTP_PORT/metrics")"
    assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' -u postgres:s3cret "http://127.0.0.1:$HTTP_PORT/metrics")"
    assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' -u postgres:s3cret "http://127.0.0.1:$HTTP_PORT/healthz")"
    assert_fail "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d broken -c "select 1"
    assert_eq 503 "$(curl -s -o "$TEST_TMP/h.json" -w '%{http_code}' -u postgres:s3cret "http://127.0.0.1:$HTTP_PORT/healthz")"
    assert_contains "$(cat "$TEST_TMP/h.json")" '"name":"broken","status":"failing"'
    pf_stop INT
}

# timeout: 180
test_debian_pgbouncer_exporter() {
    local port out
    if ! command -v prometheus-pgbouncer-exporter >/dev/null; then
        [ "$(id -u)" = 0 ] || skip "prometheus-pgbouncer-exporter missing and not root to install it"
        apt-get install -y prometheus-pgbouncer-exporter >/dev/null 2>&1 ||
            skip "apt-get install prometheus-pgbouncer-exporter failed"
    fi
    _admin_ini
    _q "select 1" >/dev/null
    port=$(free_port)
    # user pgbouncer over the unix socket: admitted by SO_PEERCRED
    prometheus-pgbouncer-exporter --host 127.0.0.1 --port "$port" --pgbouncer-host "$TEST_TMP" \
        --pgbouncer-port "$PF_PORT" --pgbouncer-user pgbouncer \
        >"$TEST_TMP/exporter.stdout" 2>"$TEST_TMP/exporter.err" &
    echo $! >"$TEST_TMP/exporter.pid"
    wait_until 20 curl -sf "http://127.0.0.1:$port/metrics"
    out=$(curl -s "http://127.0.0.1:$port/metrics")
    kill "$(cat "$TEST_TMP/exporter.pid")"
    assert_contains "$out" 'pgbouncer_active_clients{database="postgres",user="postgres"}'
    assert_contains "$out" 'pgbouncer_requests_total{database="postgres"} 1.0'
    assert_contains "$out" 'pgbouncer_pools'
    assert_not_contains "$(cat "$TEST_TMP/exporter.err")" "Traceback"
    pf_stop INT
}
