# shellcheck shell=bash
# t_hosts.sh — host lists: balancing, health checks, target_session_attrs,
# config errors, SHOW HOSTS and /metrics, the peer id in cancel keys.
#
# The run's one sandbox cluster stands for several hosts: 127.0.0.1:PORT and
# its unix socket directory are two entries of a host list that
# pg_stat_activity tells apart (client_port -1 for the socket), and a closed
# port is a host that is down.  Real replication is t_failover.sh's.

PQ_STARTUP=$TOOLS_DIR/pq_startup

_show_hosts() { # the console's SHOW HOSTS, '|'-separated
    "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres pgbouncer -c "show hosts"
}
# field N (1-based) of the SHOW HOSTS row of HOST:PORT
_host_field() { _show_hosts | awk -F'|' -v h="$1" -v p="$2" -v f="$3" '$1 == h && $2 == p {print $f}'; }
_host_is() { [ "$(_host_field "$1" "$2" 3)|$(_host_field "$1" "$2" 4)" = "$3" ]; }

_admin() { "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres pgbouncer -c "$1"; }

# server connections of pgfunnel to pgfunnel_test, seen by PostgreSQL: over TCP, over the socket
_servers() {
    pg_psql -c "select count(*) filter (where client_port > 0) || ' ' || count(*) filter (where client_port = -1) from pg_stat_activity where datname = 'pgfunnel_test' and application_name <> 'pgfunnel host check' and pid <> pg_backend_pid()"
}

# timeout: 40
test_round_robin_spreads_and_disable_sticks() {
    local dead entry
    dead=$(free_port)
    entry="host=127.0.0.1,$SANDBOX_SOCKET_DIR port=$PGPORT dbname=pgfunnel_test user=postgres pool_mode=session"
    pf_start "default_pool_size = 4" \
        "[databases]" \
        "rr = $entry" \
        "sticky = $entry load_balance_hosts=disable" \
        "downfirst = host=127.0.0.1,127.0.0.1 port=$dead,$PGPORT dbname=pgfunnel_test user=postgres"
    # four sessions (session mode: four servers), alternating between the two hosts
    pgbench -n -c 4 -j 4 -T 1 -h 127.0.0.1 -p "$PF_PORT" -U postgres -f <(echo 'select 1') rr \
        >"$TEST_TMP/rr.out" 2>&1 || fail "pgbench rr: $(tail -5 "$TEST_TMP/rr.out")"
    assert_eq "2 2" "$(_host_field 127.0.0.1 "$PGPORT" 8) $(_host_field "$SANDBOX_SOCKET_DIR" "$PGPORT" 8)" \
        "servers per host after round-robin (SHOW HOSTS)"
    assert_eq "2 2" "$(_servers)" "pg_stat_activity: servers over TCP and over the socket"
    assert_ok _admin "kill rr"
    wait_until 5 test "$(_servers)" = "0 0"
    # disable: every new connection stays on the first host while it works
    pgbench -n -c 4 -j 4 -T 1 -h 127.0.0.1 -p "$PF_PORT" -U postgres -f <(echo 'select 1') sticky \
        >"$TEST_TMP/sticky.out" 2>&1 || fail "pgbench sticky: $(tail -5 "$TEST_TMP/sticky.out")"
    assert_eq "4 0" "$(_servers)" "load_balance_hosts=disable: one host"
    # a dead host in front: libpq falls through to the next, the check marks it down
    assert_eq 1 "$(pf_psql -d downfirst -c 'select 1')"
    wait_until 5 _host_is 127.0.0.1 "$dead" "down|unknown"
    assert_contains "$(_host_field 127.0.0.1 "$dead" 10)" "onnection refused" "last_error"
    for _ in 1 2 3 4; do assert_eq 1 "$(pf_psql -d downfirst -c 'select 1')"; done
    assert_eq 0 "$(_host_field 127.0.0.1 "$dead" 8)" "servers on the dead host"
    pf_stop
}

# timeout: 30
test_target_session_attrs_and_roles() {
    pf_start "query_wait_timeout = 2" "host_check_interval = 0.5" \
        "[databases]" \
        "rw = host=127.0.0.1,$SANDBOX_SOCKET_DIR port=$PGPORT dbname=postgres user=postgres target_session_attrs=read-write" \
        "sb = host=127.0.0.1,$SANDBOX_SOCKET_DIR port=$PGPORT dbname=postgres user=postgres target_session_attrs=standby" \
        "ps = host=127.0.0.1,$SANDBOX_SOCKET_DIR port=$PGPORT dbname=postgres user=postgres target_session_attrs=prefer-standby" \
        "ro = host=127.0.0.1 port=$PGPORT dbname=postgres user=postgres target_session_attrs=read-only"
    assert_eq f "$(pf_psql -d rw -c 'select pg_is_in_recovery()')"
    # the checks find both hosts up and primary
    wait_until 5 _host_is 127.0.0.1 "$PGPORT" "up|primary"
    wait_until 5 _host_is "$SANDBOX_SOCKET_DIR" "$PGPORT" "up|primary"
    assert_eq yes "$(_host_field 127.0.0.1 "$PGPORT" 5)" "checked"
    [ -n "$(_host_field 127.0.0.1 "$PGPORT" 6)" ] || fail "no last_check"
    # no standby anywhere: prefer-standby takes a primary...
    assert_eq f "$(pf_psql -d ps -c 'select pg_is_in_recovery()')"
    # ...standby waits (no attempt at all) and says why when it gives up
    local t0 out
    t0=$(date +%s%3N)
    out=$(pf_psql -d sb -c 'select 1' 2>&1) && fail "standby pool got a server: $out"
    assert_contains "$out" "no host is usable for target_session_attrs=standby"
    assert_contains "$out" "127.0.0.1:$PGPORT primary"
    [ $(($(date +%s%3N) - t0)) -lt 6000 ] || fail "query_wait_timeout took too long"
    # read-only on a primary: libpq refuses it (default_transaction_read_only is off)
    out=$(pf_psql -d ro -c 'select 1' 2>&1) && fail "read-only pool got a primary: $out"
    assert_contains "$out" "read-only"
    pf_stop
}

# timeout: 30
test_config_errors_with_file_and_line() {
    local out
    pf_write_ini "[databases]" \
        "a = host=h1,h2,h3 port=5432,5433" \
        "b = host=h1,,h3" \
        "c = host=h1 target_session_attrs=primary-ish" \
        "d = host=h1,h2 load_balance_hosts=random"
    out=$("$PGFUNNEL_BIN" --check "$PF_INI" 2>&1) && fail "--check accepted a bad file"
    local n
    n=$(grep -n '^a = ' "$PF_INI" | cut -d: -f1)
    assert_contains "$out" "$PF_INI:$n: database \"a\" lists 3 hosts but 2 ports"
    assert_contains "$out" "$PF_INI:$((n + 1)): empty host in the host list \"h1,,h3\""
    assert_contains "$out" "$PF_INI:$((n + 2)): invalid value \"primary-ish\" for \"target_session_attrs\""
    assert_contains "$out" "$PF_INI:$((n + 3)): invalid value \"random\" for \"load_balance_hosts\""
    # the same file on a running pgfunnel: RELOAD keeps the old configuration
    pf_start
    PF_LISTEN_PORT=$PF_PORT pf_write_ini "[databases]" "a = host=h1,h2,h3 port=5432,5433"
    local mark
    mark=$(pf_log_mark)
    kill -HUP "$PF_PID"
    wait_until 5 bash -c "grep -q 'lists 3 hosts but 2 ports' <(tail -c +1 '$PF_LOG' '$TEST_TMP/pgfunnel.stderr' 2>/dev/null)"
    assert_contains "$(pf_logs_since "$mark")" "pgfunnel.ini:"
    assert_eq 1 "$(pf_psql -c 'select 1')" "old configuration still serves"
    pf_stop
}

# timeout: 30
test_show_hosts_metrics_and_cancel_key() {
    local http dead m line key pid
    http=$(free_port)
    dead=$(free_port)
    pf_start "admin_http_port = $http" "peer_id = 5" \
        "[databases]" \
        "ha = host=127.0.0.1,127.0.0.1 port=$PGPORT,$dead dbname=postgres user=postgres"
    assert_eq 1 "$(pf_psql -d ha -c 'select 1')"
    wait_until 5 _host_is 127.0.0.1 "$dead" "down|unknown"
    wait_until 5 _host_is 127.0.0.1 "$PGPORT" "up|primary"
    assert_contains "$(_admin 'show help' 2>&1)" "SHOW HOSTS"
    assert_eq "ha" "$(_host_field 127.0.0.1 "$PGPORT" 9)" "databases column"
    m=$(curl -s "http://127.0.0.1:$http/metrics")
    assert_contains "$m" "pgfunnel_host_up{host=\"127.0.0.1\",port=\"$PGPORT\"} 1"
    assert_contains "$m" "pgfunnel_host_up{host=\"127.0.0.1\",port=\"$dead\"} 0"
    assert_contains "$m" "pgfunnel_host_standby{host=\"127.0.0.1\",port=\"$PGPORT\"} 0"
    assert_contains "$m" "pgfunnel_host_server_connections{host=\"127.0.0.1\",port=\"$PGPORT\"} 1"
    assert_contains "$m" "pgfunnel_host_check_latency_seconds{host=\"127.0.0.1\",port=\"$PGPORT\"}"
    assert_contains "$m" "pgfunnel_cancel_requests_forwarded_total 0"
    if command -v promtool >/dev/null 2>&1; then
        echo "$m" | promtool check metrics >/dev/null 2>&1 || fail "promtool rejects /metrics"
    fi
    # the cancel key carries peer_id 5 in its top 14 bits; the pid's top 8 bits
    # name the event loop of the client (0 with one loop)
    line=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --query "select 1" | grep '^K ')
    pid=$(echo "$line" | awk '{print $2}')
    key=$(echo "$line" | awk '{print $3}')
    assert_eq 5 $((key >> 18)) "peer id in the cancel key ($line)"
    assert_eq 0 $(((key >> 17) & 1)) "forwarded bit of an issued key"
    [ $((pid >> 24)) -lt "${PF_EVENT_LOOPS:-1}" ] || fail "top 8 bits of the pid: $((pid >> 24))"
    pf_stop
}

# Without user= or auth_user a check has no login: it only connects (nothing
# in PostgreSQL's log), and the role comes from what servers report.
# (Databases, and so their hosts, exist once a client has used them.)
# timeout: 30
test_checks_without_credentials_only_connect() {
    local dead
    dead=$(free_port)
    pf_start "host_check_interval = 0.3" \
        "[databases]" \
        "nouser = host=127.0.0.1,127.0.0.1 port=$dead,$PGPORT dbname=postgres"
    assert_eq 1 "$(pf_psql -d nouser -c 'select 1')"
    wait_until 5 _host_is 127.0.0.1 "$dead" "down|unknown"
    wait_until 5 _host_is 127.0.0.1 "$PGPORT" "up|primary"
    sleep 1 # a few more checks
    assert_eq "up|primary|" "$(_host_field 127.0.0.1 "$PGPORT" 3)|$(_host_field 127.0.0.1 "$PGPORT" 4)|$(_host_field 127.0.0.1 "$PGPORT" 10)" \
        "state, role and last_error of a connect-only check"
    assert_contains "$(_host_field 127.0.0.1 "$dead" 10)" "onnection refused"
    assert_eq 0 "$(pg_psql -c "select count(*) from pg_stat_activity where application_name = 'pgfunnel host check'")"
    pf_stop
}
