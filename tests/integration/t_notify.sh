# shellcheck shell=bash
# t_notify.sh — pgfunnel as a systemd Type=notify service, with a fake
# supervisor (fake_supervisor.py) in systemd's place: the messages it gets
# and their order, that the watchdog pings come from the event loop (a loop
# stuck in a reload stops them), and the hand-over of the main pid in a
# --takeover upgrade.  Tests needing a running systemd are not needed: this
# is the same datagram protocol systemd reads.

# _sup_start [PORT] — start the fake supervisor on $TEST_TMP/notify.sock;
# its log is $SUP_LOG (see fake_supervisor.py).
_sup_start() {
    command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
    SUP_SOCK=$TEST_TMP/notify.sock
    SUP_LOG=$TEST_TMP/notify.log
    : >"$SUP_LOG"
    timeout 120 python3 "$REPO_ROOT/tests/integration/fake_supervisor.py" "$SUP_SOCK" "$SUP_LOG" \
        "${1:-}" 2>"$TEST_TMP/supervisor.stderr" &
    SUP_PID=$!
    trap 'kill $SUP_PID 2>/dev/null' EXIT
    wait_until 5 grep -q LISTENING "$SUP_LOG"
}

# _sup_lines PID — the messages PID sent, in order
_sup_lines() {
    grep " pid=$1 " "$SUP_LOG" | grep -v -e LISTENING -e PORTCHECK
}

# _sup_count PATTERN PID — how many of PID's messages contain PATTERN
_sup_count() {
    _sup_lines "$2" | grep -c -- "$1"
}

# _sup_at_least N PATTERN PID — PID sent at least N messages containing PATTERN
_sup_at_least() {
    [ "$(_sup_count "$2" "$3")" -ge "$1" ]
}

# _sup_has PID ERE [FROM_LINE] — PID sent a message matching ERE (at or after log line FROM_LINE)
_sup_has() {
    tail -n +"${3:-1}" "$SUP_LOG" | grep " pid=$1 " | grep -qE -- "$2"
}

# _sup_has_since T PID ERE — PID sent a message matching ERE later than T seconds
_sup_has_since() {
    awk -v t="$1" '$1 > t' "$SUP_LOG" | grep " pid=$2 " | grep -qE -- "$3"
}

# _sup_time LINE — the timestamp (seconds) of a log line
_sup_time() {
    awk '{print $1}' <<<"$1"
}

# timeout: 40
test_notify_ready_reload_watchdog_stopping() {
    local fifo=$TEST_TMP/stall.ini first mark reloading ready t0 t1 between rc
    mkfifo "$fifo"
    # the reload reads this FIFO on the loop thread: it blocks until the test writes it
    pf_write_ini "%include $fifo"
    _sup_start "$PF_PORT"
    (: >"$fifo") & # the start-up read gets an empty file
    NOTIFY_SOCKET=$SUP_SOCK WATCHDOG_USEC=400000 pf_launch
    wait_until 10 grep -q "pid=$PF_PID READY=1" "$SUP_LOG"

    # READY first, with the main pid and a status line, once the listeners are open
    first=$(_sup_lines "$PF_PID" | head -n 1)
    assert_contains "$first" "READY=1|MAINPID=$PF_PID|STATUS=0 clients, 0 servers, 0 tps" \
        "first message"
    assert_contains "$(cat "$SUP_LOG")" "PORTCHECK ok" "port open when READY arrived"

    # pings every 200 ms (half of WATCHDOG_USEC), from the loop
    wait_until 5 _sup_at_least 5 WATCHDOG=1 "$PF_PID"
    assert_contains "$(pf_logs)" "systemd watchdog: pinging every 200 ms"

    # STATUS follows the load: clients, servers and transactions per second
    echo "SELECT 1;" >"$TEST_TMP/select1.sql"
    mark=$(wc -l <"$SUP_LOG")
    pgbench -n -f "$TEST_TMP/select1.sql" -c 2 -j 1 -T 3 -h 127.0.0.1 -p "$PF_PORT" postgres \
        >"$TEST_TMP/pgbench.out" 2>&1 || fail "pgbench: $(tail -n 5 "$TEST_TMP/pgbench.out")"
    _sup_lines "$PF_PID" | grep -qE 'STATUS=2 clients, [1-9][0-9]* servers, [1-9][0-9]* tps' ||
        fail "no STATUS line with 2 clients and a non-zero tps: $(_sup_lines "$PF_PID" | grep STATUS | tail -n 5)"
    wait_until 5 _sup_has "$PF_PID" 'STATUS=0 clients' $((mark + 1))

    # SIGHUP: RELOADING, then READY again.  The loop is stuck reading the FIFO
    # for 2 s in between: no ping may arrive then, and they resume afterwards.
    mark=$(wc -l <"$SUP_LOG")
    kill -HUP "$PF_PID"
    wait_until 5 _sup_has "$PF_PID" '^[0-9.]+ pid=[0-9]+ RELOADING=1\|MONOTONIC_USEC=[0-9]+$' $((mark + 1))
    sleep 2
    : >"$fifo"
    wait_until 5 _sup_has "$PF_PID" 'READY=1' $((mark + 1))
    reloading=$(tail -n +$((mark + 1)) "$SUP_LOG" | grep "pid=$PF_PID RELOADING=1" | head -n 1)
    ready=$(tail -n +$((mark + 1)) "$SUP_LOG" | grep "pid=$PF_PID READY=1" | head -n 1)
    t0=$(_sup_time "$reloading")
    t1=$(_sup_time "$ready")
    # while the loop reads the FIFO (the first 1.8 s after RELOADING) nothing pings;
    # after it, the loops adopt the new configuration and the overdue ping may
    # come before READY (with several event_loops it usually does)
    between=$(awk -v a="$t0" -v b="$t0" '$1 > a && $1 < b + 1.8' "$SUP_LOG")
    assert_not_contains "$between" "WATCHDOG=1" "pings while the loop was stuck"
    awk -v a="$t0" -v b="$t1" 'BEGIN { exit !(b - a >= 1.8) }' ||
        fail "the loop was stuck 2 s but RELOADING→READY took $t0→$t1"
    wait_until 3 _sup_has_since "$t1" "$PF_PID" WATCHDOG=1
    assert_contains "$(pf_logs)" "configuration reloaded"

    # SIGTERM: STOPPING with the draining status, then a clean exit
    rc=0
    pf_stop TERM || rc=$?
    assert_eq 0 "$rc" "exit status after SIGTERM"
    _sup_has "$PF_PID" 'STOPPING=1\|STATUS=draining: 0 clients, [0-9]+ servers, [0-9]+ tps' ||
        fail "no STOPPING with a draining status: $(_sup_lines "$PF_PID" | tail -n 3)"
}

# Without NOTIFY_SOCKET nothing is sent and nothing changes, WATCHDOG_USEC or not.
test_notify_silent_without_notify_socket() {
    _sup_start
    WATCHDOG_USEC=200000 pf_start
    assert_eq 1 "$(pf_psql -c 'SELECT 1')"
    sleep 0.5
    pf_stop INT
    assert_eq 0 "$(_sup_count "=" "$PF_PID")" "messages without NOTIFY_SOCKET"
    assert_not_contains "$(pf_logs)" "systemd watchdog"
}

# A successor started by the service's reload command (--takeover, without
# WATCHDOG_USEC: systemd gives that only to the main process) tells the
# supervisor it is the main process and keeps the watchdog fed at the
# predecessor's interval; the predecessor, now draining, says nothing more:
# its STOPPING would stop the service.
# timeout: 40
test_notify_takeover_passes_main_pid_and_watchdog() {
    local succ rc ready t
    pf_write_ini
    _sup_start "$PF_PORT"
    NOTIFY_SOCKET=$SUP_SOCK WATCHDOG_USEC=400000 pf_launch
    wait_until 10 grep -q "pid=$PF_PID READY=1" "$SUP_LOG"
    wait_until 5 _sup_at_least 2 WATCHDOG=1 "$PF_PID"

    env --default-signal=INT,TERM,QUIT NOTIFY_SOCKET="$SUP_SOCK" "$PGFUNNEL_BIN" --takeover \
        "$PF_INI" >"$TEST_TMP/successor.stdout" 2>"$TEST_TMP/successor.stderr" </dev/null &
    succ=$!
    echo "$succ" >>"$TEST_TMP/pgfunnel.pids"
    wait_until 10 grep -q "pid=$succ READY=1|MAINPID=$succ|STATUS=" "$SUP_LOG"
    rc=0
    wait "$PF_PID" || rc=$?
    assert_eq 0 "$rc" "the predecessor's exit status"
    wait_until 3 grep -q "pid=$succ WATCHDOG=1" "$SUP_LOG"
    assert_eq 0 "$(_sup_count STOPPING "$PF_PID")" "STOPPING from the predecessor"
    # it may ping between the successor's READY and the commit (milliseconds); not later
    ready=$(grep "pid=$succ READY=1" "$SUP_LOG" | head -n 1)
    t=$(_sup_time "$ready")
    assert_eq "" "$(_sup_lines "$PF_PID" | awk -v r="$t" '$1 > r + 1.0')" \
        "predecessor messages after the successor became the main process"
    assert_eq 1 "$(pf_psql -c 'SELECT 1')"

    kill -TERM "$succ"
    rc=0
    wait "$succ" || rc=$?
    assert_eq 0 "$rc" "the successor's exit status"
    assert_contains "$(_sup_lines "$succ")" "STOPPING=1"
}
