# shellcheck shell=bash
# t_chaos.sh — fault injection (issue #7): the backend restarting or absent,
# clients vanishing at every stage, bad input, resource limits, and leak checks
# under a real workload.  Every test asserts that other clients keep working,
# that the faulty client gets an ErrorResponse or a clean close, and that no
# client, server, file descriptor or pool slot is left behind.
# (Terminated backends, garbage after login, oversized packets and timeouts
# are in t_failures.sh / t_timeouts.sh.)

PQ_STARTUP=$TOOLS_DIR/pq_startup
CONN_BURST=$TOOLS_DIR/conn_burst

# shellcheck source=tests/integration/session.sh
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"

_need() {
    local t
    for t in "$@"; do [ -x "$t" ] || fail "$t missing (make $(basename "$t") in build/tools)"; done
}

# ---------------------------------------------------------------- raw protocol in bash

_hex() { printf '%s' "$1" | od -An -tx1 -v | tr -d ' \n'; } # STRING → hex
_cstr() { echo "$(_hex "$1")00"; }                            # STRING → hex, NUL-terminated
_u32() { printf '%08x' "$1"; }
_u16() { printf '%04x' "$1"; }
_msg() { # TYPECHAR PAYLOAD_HEX → one message, hex
    local n=$((${#2} / 2 + 4))
    echo "$(_hex "$1")$(_u32 $n)$2"
}
_startup_hex() { # USER DB → StartupMessage, hex
    local body
    body="00030000$(_cstr user)$(_cstr "$1")$(_cstr database)$(_cstr "$2")00"
    echo "$(_u32 $((${#body} / 2 + 4)))$body"
}
_query_hex() { _msg Q "$(_cstr "$1")"; }
_send() { # FD HEX — write raw bytes (fails quietly if the peer is gone)
    # shellcheck disable=SC2059
    printf "$(sed 's/../\\x&/g' <<<"$2")" >&"$1" 2>/dev/null
}
_recv_hex() { # FD N [SEC] — read up to N bytes (SEC s at most), print them as hex
    timeout "${3:-3}" head -c "$2" <&"$1" 2>/dev/null | od -An -tx1 -v | tr -d ' \n'
}
_connect() { # → sets RAW_FD to a new connection to pgfunnel
    exec {RAW_FD}<>"/dev/tcp/127.0.0.1/$PF_PORT"
}

# ---------------------------------------------------------------- leak accounting

_admin() { "$PG_BINDIR/psql" -X -At -F ' ' -h 127.0.0.1 -p "$PF_PORT" -U postgres pgbouncer -c "$1"; }
_fds() { find "/proc/$PF_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l; }
_list() { _admin "show lists" | awk -v k="$1" '$1 == k { print $2 }'; }
_rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$PF_PID/status"; }
_cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$PF_PID/stat"; }
# _pool DB COLUMN — a SHOW POOLS column of the pool of DB (user postgres)
_pool() {
    "$PG_BINDIR/psql" -X -At -F '|' -h 127.0.0.1 -p "$PF_PORT" -U postgres pgbouncer \
        -c "show pools" -P footer=off -P tuples_only=off |
        awk -F'|' -v d="$1" -v col="$2" '
            NR == 1 { for (i = 1; i <= NF; i++) idx[$i] = i; next }
            $1 == d && $2 == "postgres" { print $idx[col]; found = 1 }
            END { if (!found) print 0 }'
}
# _state — "CLIENTS LOGIN FDS_MINUS_SERVERS": what must return to the baseline.
# Pooled servers may legitimately stay open, so each one is discounted from
# the fd count.  used_clients includes the admin query that asks.
_state() {
    local fds srv cl lg
    fds=$(_fds)
    srv=$(_list used_servers)
    cl=$(_list used_clients)
    lg=$(_list login_clients)
    [ "$fds" = "$(_fds)" ] || return 1 # a server came or went meanwhile
    echo "${cl:-?} ${lg:-?} $((fds - ${srv:-0}))"
}
_baseline() { # the lowest fd count of a few samples (admin sockets close lazily)
    local i st best=""
    for i in 1 2 3; do
        sleep 0.2
        st=$(_state) || continue
        if [ -z "$best" ] || [ "${st##* }" -lt "${best##* }" ]; then best=$st; fi
    done
    BASE_STATE=$best
    echo "baseline (clients login fds-servers): $BASE_STATE"
}
_at_baseline() { # clients and logins equal, fds (net of servers) not above
    local st
    st=$(_state) || return 1
    [ "${st% *}" = "${BASE_STATE% *}" ] && [ "${st##* }" -le "${BASE_STATE##* }" ]
}
_assert_no_leak() { # [SECONDS] — the state returns to BASE_STATE
    if ! try_until "${1:-5}" _at_baseline; then
        _admin "show clients" >&2
        _admin "show servers" >&2
        ls -l "/proc/$PF_PID/fd" >&2
        fail "leak: state '$(_state)' (clients login fds-servers), baseline '$BASE_STATE'"
    fi
}
_others_work() { # a fresh client and a long-lived session both answer
    local out
    out=$(pf_psql -c "select 'fresh ok'" 2>&1)
    assert_eq "fresh ok" "$out" "a fresh client"
    if [ -n "${_SESS_FD[OK]:-}" ]; then
        _sess_run OK "select 'session ok';" || fail "the long-lived session stopped answering"
        assert_eq "session ok" "$SESS_OUT" "the long-lived session"
    fi
}

# ---------------------------------------------------------------- sandbox restarts

# _pgsandbox ARG… — tools/pgsandbox without the fifos of open sessions: a
# postmaster started by it would otherwise hold them open for good.
_pgsandbox() {
    (
        for fd in "${_SESS_FD[@]}"; do eval "exec $fd>&-"; done
        exec bash "$PGSANDBOX" "$@"
    )
}

_sandbox_up() { # make sure the shared sandbox runs again (trap on EXIT)
    if ! pg_psql -c "select 1" >/dev/null 2>&1; then
        _pgsandbox start "$SANDBOX_DIR" >/dev/null 2>&1 ||
            echo "WARNING: could not restart the sandbox" >&2
    fi
}

_write_bench_script() {
    printf '%s\n' "\\set a random(1, 1000)" "select :a, pg_sleep(0.002);" >"$TEST_TMP/bench.sql"
}

# _restart_under_load MODE — pgbench (10 clients, pool 5) runs while the backend restarts
_restart_under_load() {
    local mode=$1 pb rc out t0 pid1
    trap _sandbox_up EXIT
    _write_bench_script
    # Logins that fail while the backend restarts (57P03, refused) open the
    # server_login_retry window (default 15 s: clients stay queued until the
    # retry, as in PgBouncer); 2 s keeps the test short.
    pf_start "default_pool_size = 5" "max_client_conn = 100" "server_login_retry = 2"
    _sess_open OK
    _others_work
    _baseline
    pid1=$(pf_psql -c "select 1" >/dev/null; echo "$PF_PID")
    pgbench -n -h 127.0.0.1 -p "$PF_PORT" -U postgres -c 10 -j 2 -T 8 -f "$TEST_TMP/bench.sql" \
        postgres >"$TEST_TMP/pgbench.out" 2>&1 &
    pb=$!
    sleep 2
    _pgsandbox restart "$SANDBOX_DIR" "$mode" >"$TEST_TMP/restart.out" 2>&1 ||
        fail "pgsandbox restart $mode: $(cat "$TEST_TMP/restart.out")"
    t0=$(date +%s%3N)
    wait_until 6 pf_psql -c "select 1"
    echo "a new client worked $(($(date +%s%3N) - t0)) ms after the backend came back ($mode)"
    wait "$pb"
    rc=$?
    echo "pgbench exit $rc; $(grep -cE 'error|abort' "$TEST_TMP/pgbench.out") error lines"
    pf_alive || fail "pgfunnel died"
    assert_eq "$pid1" "$PF_PID"
    # server slots: never more than the pool size
    local sv
    sv=$(($(_pool postgres sv_active) + $(_pool postgres sv_idle) + $(_pool postgres sv_used) +
        $(_pool postgres sv_tested) + $(_pool postgres sv_login)))
    [ "$sv" -le 5 ] || fail "$sv server slots for a pool of 5"
    # the long-lived session: its server died under it, at most one query fails
    _sess_run OK "select 'after restart';" || true
    _sess_run OK "select 'session ok';" || fail "session does not answer"
    assert_eq "session ok" "$SESS_OUT" "the session after the restart"
    # a burst of new clients all succeed
    local pids=() bad=0
    for i in 1 2 3 4 5; do
        pf_psql -c "select $i" >/dev/null 2>&1 &
        pids+=($!)
    done
    for i in "${pids[@]}"; do wait "$i" || bad=$((bad + 1)); done
    assert_eq 0 "$bad" "failed clients among 5 concurrent new ones"
    out=$(pf_psql -c "select count(*) from generate_series(1,10)")
    assert_eq 10 "$out"
    wait_until 5 _pool_idle postgres
    _assert_no_leak 5
    _sess_close OK
    wait_until 5 _no_active_clients postgres
    pf_stop
}
_pool_idle() { [ "$(_pool "$1" sv_active)" = 0 ]; }
_no_active_clients() { [ "$(_pool "$1" cl_active)" = 0 ] && [ "$(_pool "$1" cl_waiting)" = 0 ]; }

# timeout: 50
test_backend_restart_fast_under_pgbench() {
    _restart_under_load fast
}

# timeout: 50
test_backend_restart_immediate_under_pgbench() {
    _restart_under_load immediate
}

# timeout: 55
test_backend_down_at_startup_then_up() {
    local out t0 dt port
    _need "$PQ_STARTUP"
    trap _sandbox_up EXIT
    port=$(free_port)
    # a database whose server port nothing listens on.  Refused logins may
    # pass: clients wait for the retries and give up at query_wait_timeout,
    # told the last login error (as PgBouncer; before, they failed at once)
    pf_write_ini "server_connect_timeout = 3" "server_login_retry = 1" "query_wait_timeout = 2" \
        "[databases]" "nobody = host=127.0.0.1 port=$port dbname=postgres"
    # the real backend is down when pgfunnel starts
    _pgsandbox stop "$SANDBOX_DIR" fast >/dev/null 2>&1 || fail "could not stop the sandbox"
    pf_launch
    wait_until 10 port_open "$PF_PORT"
    for db in postgres nobody; do
        t0=$(date +%s%3N)
        out=$(timeout 12 "$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param "database=$db" --timeout 10 2>&1)
        dt=$(($(date +%s%3N) - t0))
        echo "$db while down: ${dt} ms: $(tr '\n' '|' <<<"$out")"
        assert_contains "$out" "E FATAL 08P01 query_wait_timeout (server login failed: " \
            "$db: query_wait_timeout while the backend is down"
        assert_contains "$out" "EOF" "$db: closed after the error"
        [ "$dt" -lt 5000 ] || fail "$db: the error took $dt ms (query_wait_timeout is 2 s)"
    done
    out=$(pf_psql -c "select 1" 2>&1) && fail "psql succeeded with the backend down: $out"
    pf_alive || fail "pgfunnel died"
    # the backend comes up: clients succeed without any admin action
    _pgsandbox start "$SANDBOX_DIR" >/dev/null || fail "could not start the sandbox"
    t0=$(date +%s%3N)
    wait_until 8 pf_psql -c "select 1"
    echo "first success $(($(date +%s%3N) - t0)) ms after the backend came up"
    assert_eq 42 "$(pf_psql -c "select 42")"
    # the unreachable database still times out, and pgfunnel is fine
    out=$(timeout 12 "$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param database=nobody --timeout 10 2>&1)
    assert_contains "$out" "E FATAL 08P01 query_wait_timeout" "nobody: still failing"
    pf_alive || fail "pgfunnel died"
    pf_stop
}

# ---------------------------------------------------------------- clients vanishing

_backend_in_copy() {
    [ "$(pg_psql -c "select count(*) from pg_stat_activity where query ilike 'copy%chaos_copy%from%'
        and state = 'active'")" != 0 ]
}

# timeout: 40
test_client_gone_mid_copy_from_stdin() {
    local round out
    pg_psql -c "drop table if exists chaos_copy; create table chaos_copy (i int)" >/dev/null
    pf_start "default_pool_size = 1" "pool_mode = transaction"
    _baseline
    for round in pause nopause psql; do
        if [ $round = psql ]; then
            # psql streaming \copy from a slow program, killed -9 mid-stream
            "$PG_BINDIR/psql" -X -h 127.0.0.1 -p "$PF_PORT" -U postgres postgres \
                -c "\\copy chaos_copy from program 'seq 1 100; sleep 4'" >/dev/null 2>&1 &
            local p=$!
            wait_until 5 _backend_in_copy
            sleep 0.3
            kill -9 $p
            wait $p 2>/dev/null
        else
            _connect
            _send "$RAW_FD" "$(_startup_hex postgres postgres)$(_query_hex "copy chaos_copy from stdin")"
            # CopyInResponse ('G') after the login messages
            wait_until 5 _backend_in_copy
            _send "$RAW_FD" "$(_msg d "$(_hex $'1\n2\n3\n')")"
            [ $round = pause ] && sleep 0.3
            exec {RAW_FD}>&-
        fi
        # the next client on the pool of 1 gets a clean server
        out=$(pf_psql -c "select count(*) from chaos_copy" 2>&1)
        assert_eq 0 "$out" "$round: next client on a pool of 1 (no partial rows)"
        out=$(pf_psql -c "with x as (insert into chaos_copy values (7) returning i) select sum(i) from x" 2>&1)
        assert_eq 7 "$out" "$round: the server works"
        pg_psql -c "truncate chaos_copy" >/dev/null
        wait_until 5 eval '[ "$(pg_psql -c "select count(*) from pg_stat_activity where query ilike '"'copy%chaos_copy%from%'"' and state <> '"'idle'"'")" = 0 ]'
    done
    _assert_no_leak 5
    [ "$(_pool postgres sv_active)" = 0 ] || fail "a server is still active"
    pg_psql -c "drop table chaos_copy" >/dev/null
    pf_stop
}

# timeout: 30
test_client_gone_mid_startup() {
    local i
    pf_start
    _sess_open OK
    _others_work
    _baseline
    for i in $(seq 1 30); do
        _connect
        case $((i % 3)) in
            0) _send "$RAW_FD" "0000" ;;                                            # half a length
            1) _send "$RAW_FD" "0000005000030000$(_hex user)00$(_hex post)" ;;        # half a packet
            2) _send "$RAW_FD" "$(_startup_hex postgres postgres | cut -c1-40)" ;; # cut short
        esac
        exec {RAW_FD}>&-
    done
    _others_work
    _assert_no_leak 5
    _sess_close OK
    pf_stop
}

# timeout: 40
test_client_gone_mid_tls_handshake() {
    local i mark log sp
    command -v openssl >/dev/null || skip "openssl missing"
    bash "$REPO_ROOT/tools/mkcerts.sh" "$TEST_TMP/pki" || fail "mkcerts"
    pf_start "client_tls_sslmode = allow" "client_tls_cert_file = $TEST_TMP/pki/server.crt" \
        "client_tls_key_file = $TEST_TMP/pki/server.key"
    _sess_open OK
    _others_work
    assert_eq t "$(PGSSLMODE=require pf_psql -c "select true")" "TLS works"
    _baseline
    mark=$(pf_log_mark)
    for i in $(seq 1 12); do
        _connect
        _send "$RAW_FD" "0000000804d2162f" # SSLRequest
        assert_eq 53 "$(_recv_hex "$RAW_FD" 1)" "SSLRequest answered S"
        case $((i % 3)) in
            0) _send "$RAW_FD" "$(head -c 37 /dev/urandom | od -An -tx1 -v | tr -d ' \n')" ;;
            1) _send "$RAW_FD" "160301020001" ;; # a ClientHello record header, body missing
            2) ;;                                # nothing at all
        esac
        exec {RAW_FD}>&-
    done
    # openssl s_client killed 0.1 s into the handshake
    for i in 1 2 3; do
        openssl s_client -connect "127.0.0.1:$PF_PORT" -starttls postgres </dev/null \
            >/dev/null 2>&1 &
        sp=$!
        sleep 0.1
        kill -9 $sp 2>/dev/null
        wait $sp 2>/dev/null
    done
    sleep 1
    _others_work
    assert_eq t "$(PGSSLMODE=require pf_psql -c "select true")" "TLS still works"
    _assert_no_leak 5
    # Fails on the current binary: client_close() (proxy/client.c) logs only
    # logged-in clients (log_disconnections) or closes with a SQLSTATE
    # (log_pooler_errors); tls_job_done() closes a failed handshake with
    # client_close(c, NULL, "TLS handshake: …"), so nothing is ever logged.
    log=$(pf_logs_since "$mark")
    assert_contains "$log" "TLS handshake" "the failed handshakes are logged"
    _sess_close OK
    pf_stop
}

# timeout: 40
test_client_gone_mid_scram() {
    local i hdr
    printf '"scramuser" "scrampass"\n"postgres" "pw"\n' >"$TEST_TMP/users.txt"
    pf_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/users.txt" \
        "[databases]" "pgfunnel_test = host=127.0.0.1 port=$PGPORT dbname=pgfunnel_test"
    _scram_ok() {
        PGPASSWORD=scrampass "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U scramuser \
            -d pgfunnel_test -c "select current_user"
    }
    assert_eq scramuser "$(_scram_ok)" "SCRAM login works"
    _admin_pw() { PGPASSWORD=pw _admin "$@"; }
    _list() { _admin_pw "show lists" | awk -v k="$1" '$1 == k { print $2 }'; }
    _baseline # a few samples: psql's own connection closes after psql returns
    for i in $(seq 1 20); do
        _connect
        _send "$RAW_FD" "$(_startup_hex scramuser pgfunnel_test)"
        hdr=$(_recv_hex "$RAW_FD" 9)
        # AuthenticationSASL: 'R', length, code 10
        assert_eq "52" "${hdr:0:2}" "round $i: Authentication message"
        assert_eq "0000000a" "${hdr:10:8}" "round $i: AuthenticationSASL"
        if [ $((i % 2)) = 0 ]; then
            # SASLInitialResponse with client-first, then vanish before the final message
            local cf="n,,n=,r=chaosnonce$i$RANDOM"
            _send "$RAW_FD" "$(_msg p "$(_cstr SCRAM-SHA-256)$(_u32 ${#cf})$(_hex "$cf")")"
            sleep 0.05
        fi
        exec {RAW_FD}>&-
    done
    assert_eq scramuser "$(_scram_ok)" "SCRAM login still works"
    if ! try_until 5 _at_baseline; then
        fail "leak after abandoned SCRAM logins: $(_state), baseline $BASE_STATE"
    fi
    pf_stop
}

# timeout: 60
test_client_never_reads_results() {
    local rss0 rss max=0 i out
    pf_start "default_pool_size = 2"
    _sess_open OK
    _others_work
    _baseline
    rss0=$(_rss_kb)
    _connect
    _send "$RAW_FD" "$(_startup_hex postgres postgres)$(_query_hex \
        "select repeat('x', 1000000) from generate_series(1,200) /*noreader*/")"
    wait_until 5 eval '[ "$(pg_psql -c "select count(*) from pg_stat_activity where query like '"'%noreader%'"' and pid <> pg_backend_pid()")" != 0 ]'
    for i in $(seq 1 16); do
        sleep 0.5
        rss=$(_rss_kb)
        [ "$rss" -gt "$max" ] && max=$rss
    done
    echo "VmRSS before ${rss0} kB, max while the client does not read ${max} kB"
    [ $((max - rss0)) -lt 65536 ] || fail "RSS grew by $(((max - rss0) / 1024)) MB (> 64 MB)"
    _others_work
    out=$(pf_psql -c "select count(*) from generate_series(1,1000)")
    assert_eq 1000 "$out"
    # the client finally goes away: its server and slot are released
    exec {RAW_FD}>&-
    wait_until 10 eval '[ "$(pg_psql -c "select count(*) from pg_stat_activity where query like '"'%noreader%'"' and state = '"'active'"' and pid <> pg_backend_pid()")" = 0 ]'
    _assert_no_leak 10
    [ "$(_pool postgres sv_active)" = 0 ] || fail "a server is still active"
    _others_work
    _sess_close OK
    pf_stop
}

# timeout: 60
test_connection_burst_10000() {
    local out rc
    _need "$CONN_BURST"
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    pf_start "max_client_conn = 2000" "default_pool_size = 4"
    _sess_open OK
    _others_work
    _baseline
    out=$("$CONN_BURST" 127.0.0.1 "$PF_PORT" 8000 4 --startup 2>&1)
    rc=$?
    echo "$out"
    assert_eq 0 "$rc" "conn_burst --startup (8000 logins)"
    out=$("$CONN_BURST" 127.0.0.1 "$PF_PORT" 2000 4 2>&1)
    rc=$?
    echo "$out"
    assert_eq 0 "$rc" "conn_burst (2000 connect+close)"
    pf_alive || fail "pgfunnel died"
    _others_work
    _assert_no_leak 10
    _sess_close OK
    pf_stop
}

# ---------------------------------------------------------------- bad input

# timeout: 40
test_random_bytes_and_garbage_no_leak() {
    local i out
    _need "$PQ_STARTUP"
    pf_start
    _sess_open OK
    _others_work
    _baseline
    for i in $(seq 1 20); do
        (exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT" && head -c 4096 /dev/urandom >&3 &&
            timeout 1 cat <&3 >/dev/null) 2>/dev/null
    done
    # a first packet that claims to be huge, then nothing: closed without a
    # word, as PostgreSQL does (see t_failures.sh)
    (exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT" && printf '\x7f\xff\xff\xff\x00\x03' >&3 &&
        timeout 2 cat <&3 >"$TEST_TMP/huge.out") 2>/dev/null
    [ -f "$TEST_TMP/huge.out" ] && [ ! -s "$TEST_TMP/huge.out" ] ||
        fail "answer to a huge startup length: $(od -c "$TEST_TMP/huge.out" 2>&1)"
    # unknown message types after login (each 08P01; see t_failures.sh): no leak
    # (not c/d/f: CopyDone/CopyData/CopyFail outside COPY are ignored by PostgreSQL)
    for t in 01 0b 61 62 65 67 6a 6b 7a 7e; do
        out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --after-login-send "${t}00000008deadbeef" --timeout 5 2>&1)
        assert_contains "$out" "E FATAL 08P01 " "unknown type 0x$t"
    done
    pf_alive || fail "pgfunnel died"
    _others_work
    _assert_no_leak 5
    _sess_close OK
    pf_stop
}

# timeout: 40
test_terminate_mid_extended_batch() {
    local out batch
    _need "$PQ_STARTUP"
    pg_psql -c "drop table if exists chaos_ext; create table chaos_ext (i int)" >/dev/null
    pf_start "default_pool_size = 1"
    _baseline
    # Parse (named), Bind, Execute an insert, then Terminate before Sync
    batch="$(_msg P "$(_cstr s1)$(_cstr "insert into chaos_ext values (1)")0000")"
    batch+="$(_msg B "$(_cstr "")$(_cstr s1)000000000000")"
    batch+="$(_msg E "$(_cstr "")00000000")"
    batch+="$(_msg X "")"
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --after-login-send "$batch" --timeout 5 2>&1)
    echo "$out"
    assert_contains "$out" "EOF" "closed cleanly"
    # Parse + Bind only, then Terminate, inside an explicit transaction
    batch="$(_msg P "$(_cstr s2)$(_cstr "select 1")0000")$(_msg B "$(_cstr "")$(_cstr s2)000000000000")$(_msg X "")"
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --query "begin" --after-login-send "$batch" --timeout 5 2>&1)
    assert_contains "$out" "EOF" "closed cleanly (in a transaction)"
    # the next client on the pool of 1: no leftover statement, transaction or row
    batch="$(_msg P "$(_cstr s1)$(_cstr "select count(*) from chaos_ext")0000")"
    batch+="$(_msg B "$(_cstr "")$(_cstr s1)000000000000")$(_msg E "$(_cstr "")00000000")$(_msg S "")"
    # (no Terminate after the Sync: a Terminate read together with the batch
    # drops the answers, as in PgBouncer; pq_startup times out after 2 s instead)
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --after-login-send "$batch" --timeout 2 2>&1)
    echo "$out"
    assert_not_contains "$out" "E ERROR" "next client: no error (e.g. s1 already exists)"
    assert_contains "$out" "D 0" "next client: the insert without Sync was not committed"
    assert_contains "$out" $'\nZ I' "next client: idle, not in a transaction"
    assert_eq 0 "$(pf_psql -c "select count(*) from chaos_ext")"
    assert_eq 0 "$(pg_psql -c "select count(*) from chaos_ext")"
    _assert_no_leak 5
    pg_psql -c "drop table chaos_ext" >/dev/null
    pf_stop
}

# timeout: 30
test_bind_absurd_parameter_count() {
    local out batch
    _need "$PQ_STARTUP"
    pf_start "default_pool_size = 1"
    _sess_open OK
    _others_work
    _baseline
    # Bind declaring 65535 parameters with a 2-byte body
    batch="$(_msg P "$(_cstr "")$(_cstr "select 1")0000")"
    batch+="$(_msg B "$(_cstr "")$(_cstr "")0000ffff0000")$(_msg S "")"
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --after-login-send "$batch" --timeout 2 2>&1)
    echo "$out"
    [[ $out =~ E\ (ERROR|FATAL)\ 08P01 ]] || fail "no 08P01 for the Bind: $out"
    # also with many declared format codes
    batch="$(_msg P "$(_cstr "")$(_cstr "select 1")0000")$(_msg B "$(_cstr "")$(_cstr "")ffff0001")$(_msg S "")"
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --after-login-send "$batch" --timeout 2 2>&1)
    [[ $out =~ E\ (ERROR|FATAL)\ 08P01 ]] || fail "no 08P01 for the Bind with 65535 formats: $out"
    pf_alive || fail "pgfunnel died"
    _others_work
    assert_eq 5 "$(pf_psql -c "select 5")" "the pool of 1 is usable"
    _assert_no_leak 5
    _sess_close OK
    pf_stop
}

# timeout: 30
test_invalid_utf8_user_name() {
    local out u
    _need "$PQ_STARTUP"
    pf_start
    _sess_open OK
    _baseline
    for u in $'\xff\xfe' $'ab\xc3' $'\xed\xa0\x80x'; do
        out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param "user=$u" --timeout 5 2>&1)
        echo "$out" | od -c | head -3 >/dev/null
        assert_contains "$out" "E FATAL " "an error for user $(printf '%q' "$u")"
        assert_contains "$out" "EOF" "closed"
        pf_alive || fail "pgfunnel died on user $(printf '%q' "$u")"
        _admin "show clients" >/dev/null || fail "SHOW CLIENTS fails after user $(printf '%q' "$u")"
        _admin "show pools" >/dev/null || fail "SHOW POOLS fails after user $(printf '%q' "$u")"
    done
    # and as a database name
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param $'database=\xff\xfe' --timeout 5 2>&1)
    assert_contains "$out" "E FATAL " "an error for database \\xff\\xfe"
    _others_work
    _assert_no_leak 5
    _sess_close OK
    pf_stop
}

# timeout: 40
test_admin_console_injection_like_arguments() {
    local cmd out
    pf_start
    _sess_open ADM "dbname=pgbouncer"
    _sess_run ADM "show version;" || fail "admin session"
    for cmd in "SHOW POOLS; SHUTDOWN" "SHOW POOLS;SHUTDOWN;" "SHOW POOLS; DROP TABLE x" \
        "KILL_CLIENT '1; SHUTDOWN'" "KILL_CLIENT 1; SHUTDOWN" "PAUSE \"a\"\"b\"" \
        "PAUSE \"postgres\"; SHUTDOWN" "RESUME 'x''; SHUTDOWN --'" "SHOW \"lists; shutdown\"" \
        "SET server_lifetime = '1; SHUTDOWN'" "SHUTDOWN WAIT_FOR_SERVERS; SHUTDOWN" \
        "select 1; shutdown" "SHOW POOLS -- ; SHUTDOWN"; do
        out=$(_admin "$cmd" 2>&1)
        echo "[$cmd] → $(head -c 200 <<<"$out" | tr '\n' '|')"
        sleep 0.2
        pf_alive || fail "pgfunnel exited after admin command: $cmd"
        _sess_run ADM "show version;" || fail "the admin session stopped after: $cmd"
        assert_contains "$SESS_OUT" "pgfunnel" "admin session after: $cmd"
        # nothing is left paused
        assert_eq 1 "$(pf_psql -c "select 1" 2>&1)" "a client after: $cmd"
    done
    # the same through the long-lived session
    _sess_run ADM "SHOW LISTS; SHUTDOWN" || true
    sleep 0.2
    pf_alive || fail "pgfunnel exited after SHOW LISTS; SHUTDOWN in a session"
    _sess_run ADM "show version;" || fail "admin session after a multi-command query"
    _sess_close ADM
    pf_stop
}

# ---------------------------------------------------------------- resource limits

# timeout: 60
test_fd_exhaustion_backs_off() {
    local i fds=() t0 t1 ok=0 mark log lim
    cat >"$TEST_TMP/pf_ulimit.sh" <<EOF
#!/bin/bash
ulimit -n 64 || exit 97
exec "$PGFUNNEL_BIN" "\$@"
EOF
    chmod +x "$TEST_TMP/pf_ulimit.sh"
    PGFUNNEL_BIN=$TEST_TMP/pf_ulimit.sh
    pf_start "max_client_conn = 500" "default_pool_size = 2"
    lim=$(awk '/Max open files/ { print $4 }' "/proc/$PF_PID/limits")
    assert_eq 64 "$lim" "pgfunnel's fd limit"
    _sess_open OK
    _sess_open OK2
    _others_work
    _sess_run OK2 "select 2;" || fail "session 2"
    echo "fds before: $(_fds)"
    mark=$(pf_log_mark)
    for i in $(seq 1 80); do
        exec {fd}<>"/dev/tcp/127.0.0.1/$PF_PORT" 2>/dev/null && fds+=("$fd")
    done
    echo "opened ${#fds[@]} extra connections; pgfunnel fds: $(_fds)"
    sleep 0.5
    t0=$(_cpu_ticks)
    sleep 3
    t1=$(_cpu_ticks)
    echo "CPU over 3 s of exhaustion: $((t1 - t0)) ticks"
    [ $((t1 - t0)) -lt 100 ] || fail "accept spins: $((t1 - t0)) ticks of CPU in 3 s"
    pf_alive || fail "pgfunnel died"
    # the clients connected before keep working
    _sess_run OK "select 'session ok';" || fail "session 1 stopped answering"
    assert_eq "session ok" "$SESS_OUT"
    _sess_run OK2 "select 'two';" || fail "session 2 stopped answering"
    assert_eq two "$SESS_OUT"
    log=$(pf_logs_since "$mark")
    [[ $log == *"pausing accept"* || $log == *"Too many open files"* ]] ||
        fail "no back-off logged: $(tail -n 5 <<<"$log")"
    # the extra connections go away: new clients are accepted again
    for fd in "${fds[@]}"; do exec {fd}>&-; done
    wait_until 8 pf_psql -c "select 1"
    for i in 1 2 3; do assert_eq "$i" "$(pf_psql -c "select $i" 2>&1)"; done
    _sess_close OK
    _sess_close OK2
    pf_stop
}

# ---------------------------------------------------------------- leaks under a workload

# timeout: 40
test_pgbench_then_sigint_exits_clean() {
    local rc
    _write_bench_script
    pf_start "default_pool_size = 5"
    pgbench -n -h 127.0.0.1 -p "$PF_PORT" -U postgres -c 20 -j 2 -T 5 -f "$TEST_TMP/bench.sql" \
        postgres >"$TEST_TMP/pgbench.out" 2>&1
    rc=$?
    tail -n 4 "$TEST_TMP/pgbench.out"
    assert_eq 0 "$rc" "pgbench through pgfunnel"
    pf_stop INT
    rc=$?
    assert_eq 0 "$rc" "pgfunnel exit status after SIGINT"
    # run.sh fails the test on a LeakSanitizer report in pgfunnel.stderr (ASan builds)
}

# timeout: 60
test_valgrind_short_pgbench() {
    local rc
    command -v valgrind >/dev/null || skip "valgrind not installed"
    if ldd "$PGFUNNEL_BIN" 2>/dev/null | grep -q 'libasan\|libtsan'; then
        skip "sanitizer build: valgrind does not apply"
    fi
    cat >"$TEST_TMP/pf_valgrind.sh" <<EOF
#!/bin/bash
exec valgrind --leak-check=full --error-exitcode=99 --errors-for-leak-kinds=definite \
    --log-file="$TEST_TMP/valgrind.txt" "$PGFUNNEL_BIN" "\$@"
EOF
    chmod +x "$TEST_TMP/pf_valgrind.sh"
    PGFUNNEL_BIN=$TEST_TMP/pf_valgrind.sh
    _write_bench_script
    pf_start "default_pool_size = 2"
    wait_until 15 pf_psql -c "select 1"
    pgbench -n -h 127.0.0.1 -p "$PF_PORT" -U postgres -c 4 -j 1 -T 2 -f "$TEST_TMP/bench.sql" \
        postgres >"$TEST_TMP/pgbench.out" 2>&1
    rc=$?
    tail -n 2 "$TEST_TMP/pgbench.out"
    assert_eq 0 "$rc" "pgbench through pgfunnel under valgrind"
    pf_stop INT
    rc=$?
    grep -E "ERROR SUMMARY|definitely lost|indirectly lost|possibly lost" "$TEST_TMP/valgrind.txt"
    if [ "$rc" != 0 ]; then
        grep -B2 -A25 -E "Invalid|uninitialised|definitely lost in" "$TEST_TMP/valgrind.txt" | head -80
        fail "pgfunnel under valgrind exited $rc"
    fi
}
