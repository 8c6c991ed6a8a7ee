# shellcheck shell=bash
# t_peers.sh — three pgfunnel instances behind HAProxy (TCP mode,
# round-robin, the layout of conf/haproxy-pgfunnel.cfg) on loopback:
# pgbench through HAProxy, cancel requests that HAProxy hands to another
# instance than the session's, and an instance killed with SIGKILL.
#
# Each instance has peer_id 1..3 and the same [peers] section.  Round-robin
# gives consecutive connections to different instances, so the cancel
# connection of a session never reaches the session's own instance: every
# cancel here is forwarded once.

PQ_HA=$TOOLS_DIR/pq_ha
PQ_STARTUP=$TOOLS_DIR/pq_startup
HAPROXY_BIN=$(command -v haproxy || echo /usr/sbin/haproxy)

_peers_cleanup() {
    [ -n "${HA_PROXY_PID:-}" ] && kill "$HA_PROXY_PID" 2>/dev/null
    local i
    for i in 1 2 3; do
        eval "[ -n \"\${PF_PID_$i:-}\" ] && kill -QUIT \"\${PF_PID_$i}\" 2>/dev/null"
    done
    return 0
}

# Starts instances 1..3 (ports PORT_i, HTTP ports HTTP_i) and HAProxy (HA_PORT).
_peers_start() {
    [ -x "$HAPROXY_BIN" ] || skip "haproxy is not installed and could not be installed (tools/deps.sh)"
    [ -x "$PQ_HA" ] || fail "$PQ_HA missing (make build/tools/pq_ha)"
    trap _peers_cleanup EXIT
    trap '_peers_cleanup; exit 143' TERM INT
    local i envcmd=()
    env --default-signal=INT true 2>/dev/null && envcmd=(env "--default-signal=INT,QUIT,TERM,HUP")
    for i in 1 2 3; do
        eval "PORT_$i=$(free_port)"
        eval "HTTP_$i=$(free_port)"
    done
    HA_PORT=$(free_port)
    for i in 1 2 3; do
        local port http
        eval "port=\$PORT_$i http=\$HTTP_$i"
        cat >"$TEST_TMP/pf$i.ini" <<EOF
[databases]
postgres = host=127.0.0.1 port=$PGPORT dbname=postgres
[peers]
1 = host=127.0.0.1 port=$PORT_1
2 = host=127.0.0.1 port=$PORT_2
3 = host=127.0.0.1 port=$PORT_3
[pgbouncer]
peer_id = $i
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
pool_mode = transaction
admin_users = postgres
admin_http_port = $http
logfile = $TEST_TMP/pf$i.log
verbose = 1
EOF
        "${envcmd[@]}" "$PGFUNNEL_BIN" "$TEST_TMP/pf$i.ini" >"$TEST_TMP/pf$i.stdout" \
            2>"$TEST_TMP/pf$i.stderr" </dev/null &
        eval "PF_PID_$i=$!"
        echo $! >>"$TEST_TMP/pgfunnel.pids"
    done
    for i in 1 2 3; do
        eval "wait_until 10 port_open \$PORT_$i"
    done
    cat >"$TEST_TMP/haproxy.cfg" <<EOF
global
    maxconn 2000
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    retries 2
    option redispatch 1
listen postgres
    bind 127.0.0.1:$HA_PORT
    balance roundrobin
    default-server inter 300ms fall 1 rise 2
    server pgfunnel-1 127.0.0.1:$PORT_1 check
    server pgfunnel-2 127.0.0.1:$PORT_2 check
    server pgfunnel-3 127.0.0.1:$PORT_3 check
EOF
    "$HAPROXY_BIN" -f "$TEST_TMP/haproxy.cfg" -db >"$TEST_TMP/haproxy.log" 2>&1 </dev/null &
    HA_PROXY_PID=$!
    wait_until 10 port_open "$HA_PORT"
    HA_CONN="host=127.0.0.1 port=$HA_PORT user=postgres dbname=postgres"
}

_metric() { # INSTANCE NAME: the value of a metric without labels
    local http
    eval "http=\$HTTP_$1"
    curl -s "http://127.0.0.1:$http/metrics" | awk -v n="$2" '$1 == n {print $2}'
}

# timeout: 60
test_pgbench_and_cancel_through_haproxy() {
    _peers_start
    echo 'select 1' >"$TEST_TMP/select1.sql"
    pgbench -n -c 6 -j 3 -T 2 -f "$TEST_TMP/select1.sql" -h 127.0.0.1 -p "$HA_PORT" -U postgres \
        postgres >"$TEST_TMP/pgb.out" 2>&1 || fail "pgbench through HAProxy: $(tail -5 "$TEST_TMP/pgb.out")"
    assert_contains "$(cat "$TEST_TMP/pgb.out")" "number of failed transactions: 0"
    local i
    for i in 1 2 3; do
        grep -q 'login attempt: ok' "$TEST_TMP/pf$i.log" || fail "instance $i got no pgbench client"
    done
    # a long pg_sleep cancelled with PQcancel: HAProxy gives the cancel to the next instance
    "$PQ_HA" cancel "$HA_CONN" 6 >"$TEST_TMP/cancel.out" 2>&1
    cat "$TEST_TMP/cancel.out"
    assert_contains "$(cat "$TEST_TMP/cancel.out")" "cancelled 6 of 6"
    local ms
    for ms in $(sed -n 's/.* result_ms=\([0-9]*\).*/\1/p' "$TEST_TMP/cancel.out"); do
        [ "$ms" -lt 3000 ] || fail "a query ended $ms ms after its cancel"
    done
    local fwd=0 n
    for i in 1 2 3; do
        n=$(_metric "$i" pgfunnel_cancel_requests_forwarded_total)
        fwd=$((fwd + ${n:-0}))
    done
    assert_eq 6 "$fwd" "cancel requests forwarded (sum over the instances)"
    echo "cancel routing: 6 of 6 cancelled, 6 forwarded to the session's instance"
    # loops are impossible: a request already forwarded is never forwarded again
    local out
    out=$("$PQ_STARTUP" 127.0.0.1 "$PORT_1" --cancel 7 $(((3 << 18) | (1 << 17) | 99)) --timeout 5)
    assert_contains "$out" "EOF"
    wait_until 5 grep -q 'cancel request for peer 3 dropped: it arrived already forwarded' "$TEST_TMP/pf1.log"
    out=$("$PQ_STARTUP" 127.0.0.1 "$PORT_1" --cancel 7 $(((9 << 18) | 99)) --timeout 5)
    assert_contains "$out" "EOF"
    wait_until 5 grep -q 'cancel request for peer 9 dropped: no such \[peers\] entry' "$TEST_TMP/pf1.log"
}

# timeout: 60
test_instance_killed_with_sigkill() {
    _peers_start
    echo 'select 1' >"$TEST_TMP/select1.sql"
    # one session on each instance (round-robin)
    mkfifo "$TEST_TMP/go"
    "$PQ_HA" sessions "$HA_CONN" 3 <"$TEST_TMP/go" >"$TEST_TMP/sessions.out" 2>&1 &
    local sess=$!
    exec 7>"$TEST_TMP/go"
    wait_until 10 grep -q '^ready' "$TEST_TMP/sessions.out"
    assert_contains "$(cat "$TEST_TMP/sessions.out")" "round 1 ok=3 fail=0"
    # pgbench with a new connection per transaction
    pgbench -n -C -c 8 -j 4 -T 6 -f "$TEST_TMP/select1.sql" -l --log-prefix="$TEST_TMP/pgb" \
        -h 127.0.0.1 -p "$HA_PORT" -U postgres postgres >"$TEST_TMP/pgb.out" 2>&1 &
    local pgb=$! t_kill
    sleep 2
    t_kill=$(date +%s%6N)
    kill -9 "$PF_PID_2"
    wait "$PF_PID_2" 2>/dev/null
    PF_PID_2=
    # the session on the killed instance gets a connection error, the others go on
    echo go >&7
    exec 7>&-
    wait "$sess"
    cat "$TEST_TMP/sessions.out"
    assert_contains "$(cat "$TEST_TMP/sessions.out")" "round 2 ok=2 fail=1"
    assert_contains "$(cat "$TEST_TMP/sessions.out")" "server closed the connection"
    wait "$pgb"
    local aborted after
    aborted=$(grep -c 'aborted' "$TEST_TMP/pgb.out")
    after=$(cat "$TEST_TMP"/pgb.* | awk -v k="$((t_kill + 500000))" '{t = $5 * 1000000 + $6; if (t > k) n++} END {print n + 0}')
    echo "SIGKILL: pgbench -C clients aborted: $aborted of 8; transactions after the kill: $after"
    [ "$after" -ge 100 ] || fail "pgbench -C did not keep going: $after transactions after the kill: $(tail -5 "$TEST_TMP/pgb.out")"
    [ "$aborted" -lt 8 ] || fail "every pgbench client aborted"
    # new connections go to the two instances left
    local i
    for i in 1 2 3 4 5 6; do
        assert_eq 1 "$("$PG_BINDIR/psql" -X -At "$HA_CONN" -c 'select 1')" "connection $i after the kill"
    done
    # a cancel forwarded to the dead peer is dropped with a log line, and the client is let go
    local out
    out=$("$PQ_STARTUP" 127.0.0.1 "$PORT_1" --cancel 7 $(((2 << 18) | 99)) --timeout 5)
    assert_contains "$out" "EOF"
    wait_until 5 grep -q "forwarding a cancel request to peer 2 (127.0.0.1:$PORT_2) failed: connect: Connection refused; dropped" "$TEST_TMP/pf1.log"
    assert_eq 1 "$(_metric 1 pgfunnel_cancel_forward_failures_total)"
}
