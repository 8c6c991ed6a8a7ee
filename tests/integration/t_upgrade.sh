# shellcheck shell=bash
# t_upgrade.sh — zero-downtime upgrade: `pgfunnel --takeover CONFIG` starts on
# the listening sockets of the pgfunnel running with CONFIG, which then drains
# (stops accepting, finishes its clients) and exits.  No connection may be
# refused or dropped across it.

# _successor — start `pgfunnel --takeover $PF_INI` in the background; SUCC_PID
_successor() {
    local n=$((${SUCC_N:-0} + 1))
    SUCC_N=$n
    env --default-signal=INT,QUIT,TERM,HUP "$PGFUNNEL_BIN" --takeover "$PF_INI" \
        >"$TEST_TMP/successor$n.stdout" 2>"$TEST_TMP/successor$n.stderr" </dev/null &
    SUCC_PID=$!
    echo "$SUCC_PID" >>"$TEST_TMP/pgfunnel.pids"
}

# _pgbench_ok FILE WHAT — pgbench's output in FILE shows no failure and some work
_pgbench_ok() {
    local out
    out=$(cat "$1")
    assert_not_contains "$out" "error" "$2"
    assert_contains "$out" "number of failed transactions: 0 (0.000%)" "$2"
    grep -qE 'actually processed: [1-9][0-9]*' <<<"$out" || fail "$2: nothing processed: $out"
}

# Two upgrades in a row (the control socket is handed on too) while pgbench
# opens a new connection for every transaction, over TCP and over the unix
# socket: not one connection may fail.
# timeout: 60
test_takeover_under_pgbench_connect_loses_nothing() {
    local pid1 pid2 pid3 rc tcp unix sock
    echo "SELECT 1;" >"$TEST_TMP/select1.sql"
    pf_start "log_connections = 0" "log_disconnections = 0"
    pid1=$PF_PID
    sock=$TEST_TMP/.s.PGSQL.$PF_PORT
    pgbench -n -C -f "$TEST_TMP/select1.sql" -c 4 -j 2 -T 6 -h 127.0.0.1 -p "$PF_PORT" postgres \
        >"$TEST_TMP/tcp.out" 2>&1 &
    tcp=$!
    pgbench -n -C -f "$TEST_TMP/select1.sql" -c 2 -j 1 -T 6 -h "$TEST_TMP" -p "$PF_PORT" postgres \
        >"$TEST_TMP/unix.out" 2>&1 &
    unix=$!
    sleep 1.5

    _successor
    pid2=$SUCC_PID
    wait_until 10 grep -q "pid $pid2 took over the listening sockets: draining" "$PF_LOG"
    rc=0
    wait "$pid1" || rc=$?
    assert_eq 0 "$rc" "exit status of the first process"
    test -S "$sock" || fail "the first process removed the unix socket its successor serves"
    sleep 1

    _successor
    pid3=$SUCC_PID
    rc=0
    wait "$pid2" || rc=$?
    assert_eq 0 "$rc" "exit status of the second process"
    assert_contains "$(cat "$PF_LOG")" "pid $pid3 took over the listening sockets: draining"

    rc=0
    wait "$tcp" || rc=$?
    assert_eq 0 "$rc" "pgbench over TCP: $(grep error "$TEST_TMP/tcp.out" | head -n 3)"
    rc=0
    wait "$unix" || rc=$?
    assert_eq 0 "$rc" "pgbench over the unix socket: $(grep error "$TEST_TMP/unix.out" | head -n 3)"
    _pgbench_ok "$TEST_TMP/tcp.out" "pgbench -C over TCP"
    _pgbench_ok "$TEST_TMP/unix.out" "pgbench -C over the unix socket"

    # the pidfile names the process now serving; the socket file is its own
    assert_eq "$pid3" "$(tr -d '[:space:]' <"$PF_PIDFILE")" "pidfile"
    test -S "$sock" || fail "unix socket file missing after the upgrades"
    PF_PID=$pid3
    rc=0
    pf_stop INT || rc=$?
    assert_eq 0 "$rc" "exit status of the third process"
    test ! -e "$sock" || fail "the last process left its unix socket file behind"
    test ! -e "$PF_PIDFILE" || fail "the last process left its pidfile behind"
}

# The predecessor keeps serving the clients it has until they leave; new
# connections meanwhile go to the successor.
# timeout: 40
test_takeover_predecessor_finishes_its_clients() {
    local pid1 pid2 rc session
    echo "SELECT 1;" >"$TEST_TMP/select1.sql"
    pf_start
    pid1=$PF_PID
    # one connection running transactions for 4 s
    pgbench -n -f "$TEST_TMP/select1.sql" -c 1 -j 1 -T 4 -h 127.0.0.1 -p "$PF_PORT" postgres \
        >"$TEST_TMP/session.out" 2>&1 &
    session=$!
    wait_until 5 grep -q "login attempt" "$PF_LOG"

    _successor
    pid2=$SUCC_PID
    wait_until 10 grep -q "pid $pid2 took over the listening sockets: draining, 1 clients left" \
        "$PF_LOG"
    sleep 1
    kill -0 "$pid1" 2>/dev/null || fail "the predecessor exited while its client was connected"
    assert_eq 1 "$(pf_psql -c 'SELECT 1')" "a new connection during the drain"
    assert_eq 1 "$("$PG_BINDIR/psql" -X -At -h "$TEST_TMP" -p "$PF_PORT" -U postgres -d postgres \
        -c 'SELECT 1')" "a new connection over the unix socket during the drain"

    rc=0
    wait "$session" || rc=$?
    assert_eq 0 "$rc" "the predecessor's client: $(tail -n 3 "$TEST_TMP/session.out")"
    _pgbench_ok "$TEST_TMP/session.out" "the predecessor's client"
    rc=0
    wait "$pid1" || rc=$?
    assert_eq 0 "$rc" "exit status of the predecessor"
    PF_PID=$pid2
    assert_eq 1 "$(pf_psql -c 'SELECT 1')"
    pf_stop INT
}

# A successor that fails to start (here: its configuration names a user that
# does not exist, which it finds out after receiving the sockets) changes
# nothing: the running process keeps its sockets, socket file and pidfile,
# and stops normally later.
# timeout: 40
test_takeover_failed_start_leaves_predecessor_in_charge() {
    local rc out sock bad=$TEST_TMP/successor.ini
    pf_start
    sock=$TEST_TMP/.s.PGSQL.$PF_PORT
    { cat "$PF_INI"; echo "user = pgfunnel_no_such_user"; } >"$bad"
    rc=0
    out=$(timeout 20 "$PGFUNNEL_BIN" --takeover "$bad" 2>&1 </dev/null) || rc=$?
    assert_ne 0 "$rc" "exit status of the failed successor"
    assert_ne 124 "$rc" "the failed successor did not exit"
    assert_contains "$out" "taking over from pid $PF_PID"
    assert_contains "$out" "pgfunnel_no_such_user"
    assert_not_contains "$out" "Sanitizer" "the failed successor's stderr"
    assert_not_contains "$out" "runtime error" "the failed successor's stderr"
    wait_until 5 grep -q "went away before it was ready; carrying on" "$PF_LOG"

    pf_alive || fail "the running process exited"
    assert_eq 1 "$(pf_psql -c 'SELECT 1')" "TCP after the failed takeover"
    test -S "$sock" || fail "the failed successor removed the unix socket file"
    assert_eq 1 "$("$PG_BINDIR/psql" -X -At -h "$TEST_TMP" -p "$PF_PORT" -U postgres -d postgres \
        -c 'SELECT 1')" "unix socket after the failed takeover"
    assert_eq "$PF_PID" "$(tr -d '[:space:]' <"$PF_PIDFILE")" "pidfile"

    rc=0
    pf_stop INT || rc=$?
    assert_eq 0 "$rc" "exit status"
    test ! -e "$sock" || fail "unix socket file left behind"
    test ! -e "$PF_PIDFILE" || fail "pidfile left behind"
}

# The HTTP port is not passed on: the predecessor lets go of it at the
# commit and the successor binds it then.
# timeout: 40
test_takeover_moves_the_http_endpoint() {
    local http succ rc
    command -v curl >/dev/null 2>&1 || skip "curl is not installed"
    http=$(free_port)
    pf_start "admin_http_port = $http"
    assert_contains "$(curl -s "http://127.0.0.1:$http/healthz")" '"status":"ok"' "before"
    _successor
    succ=$SUCC_PID
    wait_until 10 grep -q "pid $succ took over the listening sockets" "$PF_LOG"
    rc=0
    wait "$PF_PID" || rc=$?
    assert_eq 0 "$rc" "exit status of the predecessor"
    wait_until 5 bash -c "curl -sf http://127.0.0.1:$http/healthz | grep -q '\"status\":\"ok\"'"
    assert_contains "$(curl -s "http://127.0.0.1:$http/metrics")" "pgfunnel_" "metrics after"
    assert_contains "$(cat "$PF_LOG")" "[$succ] LOG HTTP admin endpoint on"
    PF_PID=$succ
    pf_stop INT
}

# --takeover with nothing to take over from is a normal start.
test_takeover_without_predecessor_starts_afresh() {
    pf_write_ini
    pf_launch --takeover
    wait_until 10 port_open "$PF_PORT"
    assert_contains "$(pf_logs)" "no pgfunnel runs on port $PF_PORT; starting afresh"
    assert_eq 1 "$(pf_psql -c 'SELECT 1')"
    pf_stop INT
}

# SIGTERM stops accepting but serves every client already accepted, also one
# whose startup packet arrives after the signal: in an upgrade the
# predecessor has such clients when it starts draining.
test_sigterm_serves_client_accepted_before_it() {
    local out rc kinds
    command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
    pf_start
    out=$(timeout 20 python3 - "$PF_PORT" "$PF_PID" "$PF_LOG" <<'PY'
import os, signal, socket, struct, sys, time
port, pid, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
time.sleep(0.2)                       # accepted, no startup packet yet
os.kill(pid, signal.SIGTERM)
deadline = time.time() + 5
while "shutdown requested" not in open(log).read():
    if time.time() > deadline:
        sys.exit("no shutdown in the log")
    time.sleep(0.05)
body = struct.pack("!i", 196608) + b"user\0postgres\0database\0postgres\0\0"
s.sendall(struct.pack("!i", len(body) + 4) + body)
kinds, buf = [], b""
while b"Z" not in kinds:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
    while len(buf) >= 5:
        n = struct.unpack("!i", buf[1:5])[0]
        if len(buf) < 1 + n:
            break
        kinds.append(buf[:1]); buf = buf[1 + n:]
q = b"SELECT 41 + 1\0"
s.sendall(b"Q" + struct.pack("!i", len(q) + 4) + q)
reply = b""
while b"Z" not in reply[-6:] and len(reply) < 65536:
    chunk = s.recv(65536)
    if not chunk:
        break
    reply += chunk
print("kinds=" + b"".join(kinds).decode(), "answer42=%s" % (b"42" in reply))
s.sendall(b"X\0\0\0\4")
s.close()
PY
    ) || fail "client script: $out"
    kinds=$(sed -n 's/^kinds=\([A-Za-z]*\) .*/\1/p' <<<"$out")
    assert_contains "$kinds" "R" "login after SIGTERM ($out)"
    assert_not_contains "$kinds" "E" "an error instead of the login ($out)"
    assert_contains "$out" "answer42=True" "query after SIGTERM"
    rc=0
    pf_stop TERM || rc=$?
    assert_eq 0 "$rc" "exit status"
}

# The unit's ExecReload, run as systemd runs it (MAINPID set, $$ → $):
# with the binary unchanged it is a SIGHUP; once the binary on disk was
# replaced (as dpkg replaces it: a new file renamed over the old one) it
# starts the new one with --takeover, and the old process drains and exits.
# timeout: 60
test_unit_reload_hups_then_takes_over_after_binary_replaced() {
    local p=$TEST_TMP/p out cmd ini newpid rc
    out=$(env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL make -s -C "$REPO_ROOT" BIN="$PGFUNNEL_BIN" \
        -o "$PGFUNNEL_BIN" install PREFIX="$p" 2>&1) || fail "make install: $out"
    ini=$p/etc/pgfunnel/pgfunnel.ini
    pf_write_ini
    cp "$PF_INI" "$ini"
    PF_INI=$ini
    PGFUNNEL_BIN=$p/bin/pgfunnel pf_launch
    wait_until 10 port_open "$PF_PORT"
    cmd=$(sed -n 's/^ExecReload=//p' "$p/lib/systemd/system/pgfunnel.service" | sed 's/\$\$/$/g')
    [ -n "$cmd" ] || fail "no ExecReload in the unit"

    MAINPID=$PF_PID eval "$cmd" || fail "ExecReload (SIGHUP case) failed"
    wait_until 5 grep -q "configuration reloaded" "$PF_LOG"
    pf_alive || fail "the process exited after a plain reload"

    cp "$p/bin/pgfunnel" "$p/bin/pgfunnel.new"
    mv "$p/bin/pgfunnel.new" "$p/bin/pgfunnel"
    rc=0
    MAINPID=$PF_PID eval "$cmd" || rc=$?
    assert_eq 0 "$rc" "ExecReload after the binary was replaced"
    wait_until 10 grep -q "took over the listening sockets: draining" "$PF_LOG"
    rc=0
    wait "$PF_PID" || rc=$?
    assert_eq 0 "$rc" "exit status of the replaced process"
    newpid=$(tr -d '[:space:]' <"$PF_PIDFILE")
    echo "$newpid" >>"$TEST_TMP/pgfunnel.pids"
    assert_ne "$PF_PID" "$newpid" "pidfile after the takeover"
    assert_contains "$(tr '\0' ' ' <"/proc/$newpid/cmdline")" "--takeover"
    assert_eq 1 "$(pf_psql -c 'SELECT 1')" "a connection after the takeover"
    kill -INT "$newpid"
    wait_until 15 bash -c "! kill -0 $newpid 2>/dev/null"
}

# Started as root with `user =`, a successor takes over from a predecessor
# that already runs as that user (and only then switches to it itself).
# timeout: 40
test_takeover_as_root_from_a_process_that_switched_user() {
    local run=$TEST_TMP/run rc newpid
    [ "$(id -u)" = 0 ] || skip "needs root"
    id nobody >/dev/null 2>&1 || skip "no user nobody"
    mkdir -m 1777 "$run"
    pf_write_ini "user = nobody" "pidfile = $run/pgfunnel.pid"
    PF_PIDFILE=$run/pgfunnel.pid
    pf_launch
    wait_until 10 port_open "$PF_PORT"
    wait_until 5 test -s "$PF_PIDFILE"
    assert_eq nobody "$(ps -o user= -p "$PF_PID" | tr -d ' ')" "the predecessor's user"
    _successor
    wait_until 10 grep -q "pid $SUCC_PID took over the listening sockets" "$PF_LOG"
    rc=0
    wait "$PF_PID" || rc=$?
    assert_eq 0 "$rc" "exit status of the predecessor"
    newpid=$(tr -d '[:space:]' <"$PF_PIDFILE")
    assert_eq "$SUCC_PID" "$newpid" "pidfile"
    assert_eq nobody "$(ps -o user= -p "$SUCC_PID" | tr -d ' ')" "the successor's user"
    assert_eq 1 "$(pf_psql -c 'SELECT 1')"
    PF_PID=$SUCC_PID
    pf_stop INT
}
