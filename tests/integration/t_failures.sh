# shellcheck shell=bash
# t_failures.sh — backends dying, clients vanishing or sending garbage,
# servers that refuse or never answer.

PQ_STARTUP=$TOOLS_DIR/pq_startup

# shellcheck source=tests/integration/session.sh
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"

_need_tool() {
    [ -x "$PQ_STARTUP" ] || fail "$PQ_STARTUP missing (make build/tools/pq_startup)"
}

_pids_running() {
    pg_psql -c "select pid from pg_stat_activity where state = 'active' and query like '$1' and pid <> pg_backend_pid()"
}
_is_running() { [ -n "$(_pids_running "$1")" ]; }
_backend_gone() { [ "$(pg_psql -c "select count(*) from pg_stat_activity where pid = $1")" = 0 ]; }
_gone() { ! kill -0 "$1" 2>/dev/null; }
_ms() { date +%s%3N; }

# timeout: 30
test_terminated_busy_server_errors_client_then_pool_reconnects() {
    local pa bpid out
    pf_start "default_pool_size = 1"
    pf_psql -c "select pg_sleep(10.0777)" >"$TEST_TMP/a.out" 2>&1 &
    pa=$!
    wait_until 5 _is_running '%pg_sleep(10.0777)%'
    bpid=$(_pids_running '%pg_sleep(10.0777)%')
    assert_eq t "$(pg_psql -c "select pg_terminate_backend($bpid)")"
    wait_until 3 _gone "$pa"
    wait "$pa"
    assert_ne 0 "$?" "psql exit status"
    out=$(cat "$TEST_TMP/a.out")
    assert_contains "$out" "terminating connection due to administrator command" "client output"
    # a new client gets a new server
    wait_until 3 _backend_gone "$bpid"
    out=$(pf_psql -c "select pg_backend_pid()" 2>&1)
    [[ $out =~ ^[0-9]+$ ]] || fail "new client after the terminate: $out"
    assert_ne "$bpid" "$out" "a new backend"
    pf_stop
}

# The backend's own FATAL reaches the client as exactly that message, then
# the connection closes: no pooler message replaces or follows it.
# timeout: 30
test_backend_fatal_reaches_client_alone() {
    local bpid out pc
    _need_tool
    pf_start "default_pool_size = 1"
    "$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --query "select pg_sleep(10.0666)" --timeout 8 \
        >"$TEST_TMP/raw.out" 2>&1 &
    pc=$!
    wait_until 5 _is_running '%pg_sleep(10.0666)%'
    bpid=$(_pids_running '%pg_sleep(10.0666)%')
    assert_eq t "$(pg_psql -c "select pg_terminate_backend($bpid)")"
    wait_until 5 _gone "$pc"
    out=$(cat "$TEST_TMP/raw.out")
    assert_contains "$out" $'\nE FATAL 57P01 terminating connection due to administrator command\nEOF' \
        "the backend's FATAL, then the close"
    assert_eq 1 "$(grep -c '^E ' <<<"$out")" "ErrorResponses the client got: $out"
    assert_not_contains "$out" "server conn crashed"
    assert_eq 1 "$(pf_psql -c "select 1")" "a new client gets a new server"
    pf_stop
}

# timeout: 30
test_terminated_idle_server_replaced_for_next_client() {
    local bpid out i
    pf_start "default_pool_size = 1"
    bpid=$(pf_psql -c "select pg_backend_pid()" 2>&1)
    [[ $bpid =~ ^[0-9]+$ ]] || fail "first client: $bpid"
    assert_eq t "$(pg_psql -c "select pg_terminate_backend($bpid)")"
    wait_until 3 _backend_gone "$bpid"
    sleep 0.3
    for i in 1 2 3; do
        out=$(pf_psql -c "select pg_backend_pid()" 2>&1)
        [[ $out =~ ^[0-9]+$ ]] || fail "client $i after the idle server was terminated: $out"
        assert_ne "$bpid" "$out" "client $i must be on a new backend"
    done
    pf_stop
}

# timeout: 30
test_terminated_idle_server_next_query_immediately() {
    # no pause between the terminate and the next client: it must still work
    local bpid out
    pf_start "default_pool_size = 1"
    bpid=$(pf_psql -c "select pg_backend_pid()" 2>&1)
    [[ $bpid =~ ^[0-9]+$ ]] || fail "first client: $bpid"
    pg_psql -c "select pg_terminate_backend($bpid)" >/dev/null
    wait_until 3 _backend_gone "$bpid"
    out=$(pf_psql -c "select 'works'" 2>&1)
    assert_eq "works" "$out" "the first client after the terminate"
    pf_stop
}

# timeout: 30
test_session_settings_survive_server_replacement() {
    local bpid
    pf_start "default_pool_size = 1"
    _sess_open A "dbname=postgres options='-c statement_timeout=4321'"
    _sess_expect A "SET TimeZone='America/New_York';" "SET"
    _sess_run A "select pg_backend_pid();" || fail "session A"
    bpid=$SESS_OUT
    assert_eq t "$(pg_psql -c "select pg_terminate_backend($bpid)")"
    wait_until 3 _backend_gone "$bpid"
    sleep 0.3
    _sess_expect A "show timezone;" "America/New_York"
    _sess_expect A "show statement_timeout;" "4321ms"
    _sess_run A "select pg_backend_pid();" || fail "session A"
    assert_ne "$bpid" "$SESS_OUT" "a new backend"
    _sess_close A
    pf_stop
}

_no_idle_in_tx() {
    [ "$(pg_psql -c "select count(*) from pg_stat_activity where state like 'idle in transaction%' and query like '%fault_t15%'")" = 0 ]
}

# timeout: 30
test_client_killed_mid_transaction_rolls_back() {
    local out
    trap 'pg_psql -c "drop table if exists fault_t15" >/dev/null 2>&1' EXIT
    pg_psql -c "set client_min_messages = warning; drop table if exists fault_t15;
        create table fault_t15 (x int)" >/dev/null || fail "cannot create table"
    pf_start "default_pool_size = 1"

    # 1: killed while a query of the transaction runs
    _sess_open K1
    _sess_expect K1 "begin;" "BEGIN"
    _sess_expect K1 "insert into fault_t15 values (1);" "INSERT 0 1"
    _sess_send K1 "select pg_sleep(3.0888);"
    wait_until 5 _is_running '%pg_sleep(3.0888)%'
    kill -9 "${_SESS_PID[K1]}"
    out=$(pf_psql -c "select count(*) from fault_t15" -c "show transaction_isolation" \
        -c "select now() = statement_timestamp()" 2>&1)
    assert_eq $'0\nread committed\nt' "$out" "next client (killed during a query)"

    # 2: killed while idle in the transaction
    _sess_open K2
    _sess_expect K2 "begin isolation level serializable;" "BEGIN"
    _sess_expect K2 "insert into fault_t15 values (2);" "INSERT 0 1"
    kill -9 "${_SESS_PID[K2]}"
    out=$(pf_psql -c "select count(*) from fault_t15" -c "show transaction_isolation" \
        -c "select now() = statement_timestamp()" 2>&1)
    assert_eq $'0\nread committed\nt' "$out" "next client (killed while idle in transaction)"

    # 3: a raw socket that closes right after BEGIN
    exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT" || fail "cannot connect"
    # StartupMessage user=postgres database=postgres, then Query "begin; insert …"
    printf '\x00\x00\x00\x29\x00\x03\x00\x00user\x00postgres\x00database\x00postgres\x00\x00' >&3
    local q="begin; insert into fault_t15 values (3);"
    printf 'Q\x00\x00\x00%b%s\x00' "\\x$(printf '%02x' $((${#q} + 5)))" "$q" >&3
    sleep 0.5
    exec 3<&- 3>&-
    sleep 0.3
    out=$(pf_psql -c "select count(*) from fault_t15" 2>&1)
    assert_eq 0 "$out" "next client (raw socket closed after BEGIN)"

    sleep 1
    _no_idle_in_tx || fail "a backend is still idle in transaction: $(pg_psql -c "select pid, state, query from pg_stat_activity where state like 'idle in%'")"
    pf_stop
}

_pf_session_ok() {
    _sess_expect OK "select 'still here';" "still here"
}

# timeout: 30
test_garbage_after_login_gets_08P01_and_disconnect() {
    local out hex
    _need_tool
    pf_start
    _sess_open OK
    _pf_session_ok
    # unknown message type 'Z', a length below 4, an unknown type with a
    # plausible length
    for hex in "5a00000004" "510000000200" "0100000008deadbeef"; do
        out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --after-login-send "$hex" --timeout 5 2>&1)
        assert_contains "$out" $'\nZ I\n' "$hex: login"
        assert_contains "$out" "E FATAL 08P01 " "$hex: ErrorResponse 08P01"
        assert_contains "$out" $'\nEOF' "$hex: disconnected"
        _pf_session_ok
    done
    # the same inside a transaction, while the client holds a server
    for hex in "5a00000004" "510000000200"; do
        out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --query "begin" --after-login-send "$hex" \
            --timeout 5 2>&1)
        assert_contains "$out" $'\nZ T\n' "$hex: in a transaction"
        assert_contains "$out" "E FATAL 08P01 " "$hex in a transaction: ErrorResponse 08P01"
        assert_contains "$out" $'\nEOF' "$hex in a transaction: disconnected"
        _pf_session_ok
    done
    _sess_close OK
    assert_eq 0 "$(pg_psql -c "select count(*) from pg_stat_activity where state like 'idle in transaction%' and query = 'begin'")" \
        "no backend left in the garbage client's transaction"
    pf_alive || fail "pgfunnel died"
    pf_stop
}

# timeout: 30
test_oversized_query_length_default_config_gets_08P01() {
    # a Query header claiming 0x7fffffff bytes (more than PostgreSQL accepts)
    local out
    _need_tool
    pf_start "default_pool_size = 1"
    _sess_open OK
    _pf_session_ok
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --after-login-send "517fffffff73656c65637420313b00" \
        --timeout 5 2>&1)
    assert_contains "$out" $'\nZ I\n' "login"
    assert_contains "$out" $'\nEOF' "disconnected"
    assert_contains "$out" "E FATAL 08P01 " "ErrorResponse 08P01"
    _pf_session_ok
    _sess_close OK
    pf_stop
}

# timeout: 30
test_oversized_packets_with_max_packet_size_get_08P01() {
    local out
    _need_tool
    pf_start "max_packet_size = 10000"
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --after-login-send "517fffffff73656c65637420313b00" --timeout 5 2>&1)
    assert_contains "$out" "E FATAL 08P01" "Query of 0x7fffffff bytes"
    assert_contains "$out" $'\nEOF'
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --after-login-send "5100002711" --timeout 5 2>&1)
    assert_contains "$out" "E FATAL 08P01" "Query of 10001 bytes"
    assert_contains "$out" $'\nEOF'
    assert_eq 1 "$(pf_psql -c "select 1")"
    pf_stop
}

# A startup packet with an invalid length is closed without an ErrorResponse,
# as PostgreSQL does (it only logs it): a client that sends Terminate before
# its startup packet gets no error event.
# timeout: 30
test_invalid_startup_packet_length_closed_silently() {
    local out
    _need_tool
    pf_start
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --pad 10001 --timeout 5 2>&1)
    # closed with the rest of the packet unread: EOF, or a reset
    assert_contains "$out" EOF "startup packet of 10001 bytes"
    assert_eq 1 "$(wc -l <<<"$out")" "startup packet of 10001 bytes: nothing but the close: $out"
    # the length alone is enough: a header claiming 0x7fffffff
    exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT" || fail "cannot connect"
    printf '\x7f\xff\xff\xff\x00\x03\x00\x00' >&3
    out=$(timeout 5 cat <&3 | od -An -c)
    exec 3<&-
    assert_eq "" "$out" "startup length 0x7fffffff: nothing sent back"
    # Terminate ('X', length 4) where the startup packet belongs
    exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT" || fail "cannot connect"
    printf 'X\x00\x00\x00\x04' >&3
    out=$(timeout 5 cat <&3 | od -An -c)
    exec 3<&-
    assert_eq "" "$out" "Terminate before the startup packet: nothing sent back"
    assert_eq 3 "$(grep -c "invalid length of startup packet" "$PF_LOG")" "logged, as PostgreSQL does"
    # just under the limit is fine
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --pad 9000 --query "select 1" --timeout 5 2>&1)
    assert_contains "$out" $'\nD 1\n' "startup packet of 9000 bytes"
    pf_stop
}

_login_attempts() { grep -c "S-[0-9]*[^:]*: login failed:" "$PF_LOG"; }

# PostgreSQL's own refusal (here 3D000) fails the client at once; during
# server_login_retry later clients get the cached error without a new attempt
# (PgBouncer's wording); after it the next client makes a new attempt.
# timeout: 30
test_server_login_error_fails_fast_and_retry_window() {
    local out t0 dt missing=pf_missing_$$
    pf_start "[databases]" "nodb = host=127.0.0.1 port=$PGPORT dbname=$missing" \
        "[pgbouncer]" "server_login_retry = 2"
    t0=$(_ms)
    out=$(pf_psql -d nodb -c "select 1" 2>&1)
    dt=$(($(_ms) - t0))
    assert_contains "$out" "database \"$missing\" does not exist" "first client's error"
    [ "$dt" -le 3000 ] || fail "first client failed after $dt ms"
    t0=$(_ms)
    out=$(pf_psql -d nodb -c "select 1" 2>&1)
    dt=$(($(_ms) - t0))
    assert_contains "$out" "server login has been failing, cached error: database \"$missing\" does not exist (server_login_retry)" \
        "second client's error"
    [ "$dt" -le 1000 ] || fail "second client (in the retry window) failed after $dt ms"
    assert_eq 1 "$(_login_attempts)" "server login attempts in the window"
    # other databases are not affected
    assert_eq 1 "$(pf_psql -c "select 1" 2>&1)"
    # after the window, the next client makes a new attempt
    sleep 2.2
    out=$(pf_psql -d nodb -c "select 1" 2>&1)
    assert_contains "$out" "database \"$missing\" does not exist" "third client's error"
    assert_eq 2 "$(_login_attempts)" "server login attempts after the window"
    pf_stop
}

# RECONNECT forgets a cached login failure: the next client does not get it.
# timeout: 30
test_reconnect_clears_cached_login_failure() {
    local out missing=pf_recon_$$
    trap 'pg_psql -c "drop database if exists $missing" >/dev/null 2>&1' EXIT
    pf_start "[databases]" "nodb = host=127.0.0.1 port=$PGPORT dbname=$missing" \
        "[pgbouncer]" "server_login_retry = 60"
    out=$(pf_psql -d nodb -c "select 1" 2>&1)
    assert_contains "$out" "database \"$missing\" does not exist" "first client's error"
    pg_psql -c "create database $missing" >/dev/null || fail "create database"
    assert_eq RECONNECT "$(pf_psql -d pgbouncer -c "RECONNECT nodb" 2>&1)"
    assert_eq 1 "$(pf_psql -d nodb -c "select 1" 2>&1)" "a client after RECONNECT"
    pf_stop
}

# A refused connection may pass: the client stays queued, the pool retries
# after server_login_retry, and the client gives up only at query_wait_timeout,
# with the last login error in the message (PgBouncer waits the same way).
# timeout: 30
test_refused_login_waits_until_query_wait_timeout() {
    local dead out t0 dt
    dead=$(free_port)
    pf_start "[databases]" "deadb = host=127.0.0.1 port=$dead dbname=postgres" \
        "[pgbouncer]" "server_login_retry = 0.5" "query_wait_timeout = 2"
    t0=$(_ms)
    out=$(pf_psql -d deadb -c "select 1" 2>&1)
    dt=$(($(_ms) - t0))
    assert_contains "$out" "query_wait_timeout (server login failed: " "the client's error"
    assert_contains "$out" "onnection refused" "the last login error"
    [ "$dt" -ge 1800 ] || fail "the client failed after $dt ms, before query_wait_timeout"
    [ "$dt" -le 5000 ] || fail "the client failed only after $dt ms"
    [ "$(_login_attempts)" -ge 2 ] || fail "no retry after server_login_retry: $(_login_attempts) attempts"
    # a new client is queued too, not failed with a cached error
    t0=$(_ms)
    out=$(pf_psql -d deadb -c "select 1" 2>&1)
    dt=$(($(_ms) - t0))
    assert_contains "$out" "query_wait_timeout" "second client's error"
    [ "$dt" -ge 1800 ] || fail "the second client failed after $dt ms"
    assert_eq 1 "$(pf_psql -c "select 1" 2>&1)" "other databases still work"
    pf_stop
}

# PostgreSQL stopped when the client comes, started 1 s later: the client
# is answered after the retry (server_login_retry = 3), not failed at once.
# timeout: 60
test_backend_started_later_answers_waiting_client() {
    local d=$TEST_TMP/pgl port out t0 dt pc
    trap 'bash "$PGSANDBOX" destroy "$d" >/dev/null 2>&1' EXIT
    port=$(bash "$PGSANDBOX" start "$d") || fail "could not start a throwaway cluster"
    bash "$PGSANDBOX" stop "$d" fast >/dev/null || fail "could not stop it"
    pf_start "[databases]" "later = host=127.0.0.1 port=$port dbname=postgres" \
        "[pgbouncer]" "server_login_retry = 3" "query_wait_timeout = 20"
    t0=$(_ms)
    pf_psql -d later -c "select 'answered'" >"$TEST_TMP/later.out" 2>&1 &
    pc=$!
    sleep 1
    bash "$PGSANDBOX" start "$d" >/dev/null || fail "could not start the cluster again"
    wait "$pc"
    dt=$(($(_ms) - t0))
    out=$(cat "$TEST_TMP/later.out")
    assert_eq answered "$out" "the waiting client"
    echo "answered after $dt ms"
    [ "$dt" -le 10000 ] || fail "answered only after $dt ms"
    assert_eq 1 "$(_login_attempts)" "failed login attempts (one before the cluster started)"
    pf_stop
}

# _login_error_waits SQLSTATE MESSAGE — a backend that answers every login
# with FATAL SQLSTATE MESSAGE: the client stays queued through retries every
# server_login_retry and gives up only at query_wait_timeout, with that error.
_login_error_waits() {
    local port out t0 dt fk
    port=$(free_port)
    python3 "$REPO_ROOT/tests/integration/hardening.py" refusing-backend "$port" "$1" "$2" \
        >"$TEST_TMP/fake.log" 2>&1 &
    fk=$!
    trap 'kill $fk 2>/dev/null' EXIT
    wait_until 5 grep -q listening "$TEST_TMP/fake.log"
    pf_start "[databases]" "notyet = host=127.0.0.1 port=$port dbname=postgres" \
        "[pgbouncer]" "server_login_retry = 0.5" "query_wait_timeout = 2"
    t0=$(_ms)
    out=$(pf_psql -d notyet -c "select 1" 2>&1)
    dt=$(($(_ms) - t0))
    assert_contains "$out" "query_wait_timeout ($2)" "the client's error"
    [ "$dt" -ge 1800 ] || fail "the client failed after $dt ms, before query_wait_timeout"
    [ "$(_login_attempts)" -ge 2 ] || fail "no retry after server_login_retry"
    pf_stop
    kill "$fk" 2>/dev/null
}

# 57P03 (starting up / shutting down) is PostgreSQL saying "not yet": the
# client waits for a later attempt instead of failing at once.
# timeout: 30
test_starting_up_57P03_login_waits() {
    _login_error_waits 57P03 "the database system is starting up"
}

# 57P01: the backend was ended by a shutdown while the login ran (a primary
# stopped for a failover).  Not a refusal: the client waits, as for 57P03.
# timeout: 30
test_shutdown_57P01_during_login_waits() {
    _login_error_waits 57P01 "terminating connection due to administrator command"
}

# timeout: 30
test_server_connect_timeout_with_silent_backend() {
    local port out t0 dt
    port=$(free_port)
    silent_listener_start "$port"
    pf_start "[databases]" "silentdb = host=127.0.0.1 port=$port dbname=postgres" \
        "[pgbouncer]" "server_connect_timeout = 1" "server_login_retry = 1" "query_wait_timeout = 2"
    t0=$(_ms)
    out=$(pf_psql -d silentdb -c "select 1" 2>&1)
    dt=$(($(_ms) - t0))
    assert_ne 1 "$out"
    # the timed-out login is the last error the waiting client is told about
    assert_contains "$out" "query_wait_timeout (server login failed: server_connect_timeout" "client's error"
    [ "$dt" -le 4000 ] || fail "the client failed after $dt ms"
    grep -q accepted "$TEST_TMP/listener.log" || fail "the listener never saw a connection"
    assert_eq 1 "$(pf_psql -c "select 1" 2>&1)" "other databases still work"
    pf_stop
}

# A backend login that fails must not close the pooler's fd 0 (a zeroed
# connection closed fd 0; a socket reusing it would then be cut off).
test_failed_backend_logins_leave_fd0_alone() {
    local dead i
    dead=$(free_port)
    pf_start "[databases]" "deadend = host=127.0.0.1 port=$dead dbname=postgres" \
        "[pgbouncer]" "server_login_retry = 0" "query_wait_timeout = 0.5"
    assert_eq /dev/null "$(readlink "/proc/$PF_PID/fd/0")" "fd 0 before"
    for i in 1 2 3; do
        "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d deadend -c 'select 1' \
            >/dev/null 2>&1 && fail "login to a dead backend succeeded"
    done
    assert_eq /dev/null "$(readlink "/proc/$PF_PID/fd/0")" "fd 0 after failed backend logins"
    assert_eq 1 "$(pf_psql -c 'select 1')"
    pf_stop
}
