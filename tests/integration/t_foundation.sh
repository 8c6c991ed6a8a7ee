# shellcheck shell=bash
# t_foundation.sh — the pgfunnel process: command line, listeners, pidfile,
# signals, reload, daemon mode.

# lines in a file (a last line without newline counts too)
_nlines() { awk 'END { print NR }' "$1"; }

# true once PID is gone (for processes that are not our children)
_gone() { ! kill -0 "$1" 2>/dev/null; }

_log_has() { pf_logs | grep -qF -- "$1"; }
_reload_logged_since() { pf_logs_since "$1" | grep -qi reload; }

test_cli_check_version_help() {
    local out rc line
    [ -f "$REPO_ROOT/conf/pgfunnel.ini" ] || fail "conf/pgfunnel.ini is missing"
    out=$(cd "$REPO_ROOT" && "$PGFUNNEL_BIN" --check conf/pgfunnel.ini 2>&1)
    rc=$?
    assert_eq 0 "$rc" "--check conf/pgfunnel.ini: $out"

    pf_write_ini
    out=$("$PGFUNNEL_BIN" --check "$PF_INI" 2>&1)
    assert_eq 0 "$?" "--check on the generated ini: $out"

    cp "$PF_INI" "$TEST_TMP/bad.ini"
    echo "this is not valid" >>"$TEST_TMP/bad.ini"
    line=$(_nlines "$TEST_TMP/bad.ini")
    out=$("$PGFUNNEL_BIN" --check "$TEST_TMP/bad.ini" 2>&1)
    rc=$?
    assert_ne 0 "$rc" "--check accepted a bad line"
    assert_contains "$out" "bad.ini:$line:" "--check message must name FILE:LINE"

    out=$("$PGFUNNEL_BIN" --version 2>&1)
    assert_eq 0 "$?" "--version exit status"
    [[ $(head -n 1 <<<"$out") == "pgfunnel "* ]] || fail "--version first line: '$(head -n 1 <<<"$out")'"

    out=$("$PGFUNNEL_BIN" --help 2>&1)
    assert_eq 0 "$?" "--help exit status"
    assert_contains "$out" "--check"
}

test_listen_tcp_and_unix_then_sigint() {
    local sock rc
    pf_start
    assert_ok port_open "$PF_PORT"
    sock=$TEST_TMP/.s.PGSQL.$PF_PORT
    wait_until 5 test -S "$sock"
    rc=0
    pf_stop INT || rc=$?
    assert_eq 0 "$rc" "exit status after SIGINT"
    assert_fail port_open "$PF_PORT"
    [ ! -e "$PF_PIDFILE" ] || fail "pidfile $PF_PIDFILE left behind"
    [ ! -e "$sock" ] || fail "unix socket $sock left behind"
}

test_sighup_bad_config_keeps_running() {
    local line mark after
    pf_start
    echo "this is not valid" >>"$PF_INI"
    line=$(_nlines "$PF_INI")
    kill -HUP "$PF_PID"
    wait_until 5 _log_has "pgfunnel.ini:$line"
    sleep 0.3
    pf_alive || fail "pgfunnel died after SIGHUP with a bad file"
    assert_ok port_open "$PF_PORT"
    assert_contains "$(pf_logs)" "pgfunnel.ini:$line"

    # fix the file: the next SIGHUP reloads it
    sed -i '$d' "$PF_INI"
    mark=$(pf_log_mark)
    kill -HUP "$PF_PID"
    wait_until 5 _reload_logged_since "$mark"
    sleep 0.3
    after=$(pf_logs_since "$mark")
    if grep -i reload <<<"$after" | grep -Eqi 'error|fail|invalid'; then
        fail "reload of the fixed file reported an error: $after"
    fi
    pf_alive || fail "pgfunnel died after reloading a good file"
    assert_ok port_open "$PF_PORT"
    pf_stop INT
}

test_sigquit_immediate_sigterm_clean() {
    local i
    pf_start
    kill -QUIT "$PF_PID"
    for ((i = 0; i < 20; i++)); do
        pf_alive || break
        sleep 0.1
    done
    pf_alive && fail "still running 2 s after SIGQUIT"
    wait "$PF_PID" 2>/dev/null

    rm -f "$PF_PIDFILE"
    pf_start
    local rc=0
    pf_stop TERM || rc=$?
    assert_eq 0 "$rc" "exit status after SIGTERM with no clients"
}

test_listen_port_taken() {
    local out rc
    # the sandbox PostgreSQL already listens on 127.0.0.1:$PGPORT
    PF_LISTEN_PORT=$PGPORT PF_UNIX_SOCKET_DIR="" pf_write_ini
    out=$(timeout 10 "$PGFUNNEL_BIN" "$PF_INI" 2>&1 </dev/null)
    rc=$?
    [ $rc -ne 124 ] || fail "pgfunnel kept running although its port is taken"
    assert_ne 0 "$rc" "exit status with the port taken"
    out+=$'\n'$(cat "$PF_LOG" 2>/dev/null)
    assert_contains "$out" "127.0.0.1" "the message should name the address"
    assert_contains "$out" "$PGPORT" "the message should name the port"
}

test_pidfile_has_pid() {
    pf_start
    wait_until 5 test -s "$PF_PIDFILE"
    assert_eq "$PF_PID" "$(tr -d '[:space:]' <"$PF_PIDFILE")" "pidfile content"
    pf_stop INT
}

test_daemon_mode() {
    local rc t0 pid
    pf_write_ini
    t0=$SECONDS
    timeout 10 "$PGFUNNEL_BIN" -d "$PF_INI" >"$TEST_TMP/daemon.out" 2>&1 </dev/null
    rc=$?
    assert_eq 0 "$rc" "pgfunnel -d exit status ($(cat "$TEST_TMP/daemon.out"))"
    [ $((SECONDS - t0)) -le 5 ] || fail "pgfunnel -d took $((SECONDS - t0)) s to return"
    wait_until 5 test -s "$PF_PIDFILE"
    pid=$(tr -d '[:space:]' <"$PF_PIDFILE")
    echo "$pid" >>"$TEST_TMP/pgfunnel.pids" # run.sh kills it if we fail
    [[ $pid =~ ^[0-9]+$ ]] || fail "pidfile holds '$pid'"
    kill -0 "$pid" 2>/dev/null || fail "no process $pid (from the pidfile)"
    assert_contains "$(tr '\0' ' ' <"/proc/$pid/cmdline")" "pgfunnel"
    wait_until 10 port_open "$PF_PORT"
    kill -INT "$pid"
    wait_until 15 _gone "$pid"
    wait_until 5 test ! -e "$PF_PIDFILE"
    assert_fail port_open "$PF_PORT"
}

_running_is() { # QUERY N: PostgreSQL runs QUERY in N backends
    [ "$(pg_psql -c "select count(*) from pg_stat_activity where query = \$q\$$1\$q\$")" = "$2" ]
}

# A second SIGTERM or SIGINT during a shutdown exits at once (PgBouncer 1.23+),
# also with a client still connected; SIGUSR2 then is ignored.
# timeout: 40
test_second_sigterm_or_sigint_exits_at_once() {
    local sig bg i
    for sig in TERM INT; do
        pf_start "pool_mode = session"
        pf_psql -c "select pg_sleep(20), '$sig'" >/dev/null 2>&1 &
        bg=$!
        wait_until 5 _running_is "select pg_sleep(20), '$sig'" 1
        kill "-$sig" "$PF_PID"
        sleep 0.5
        pf_alive || fail "pgfunnel exited on the first SIG$sig with a client connected"
        kill -USR2 "$PF_PID"
        wait_until 3 grep -q "got SIGUSR2 while shutting down, ignoring" "$PF_LOG"
        kill "-$sig" "$PF_PID"
        for ((i = 0; i < 30; i++)); do
            pf_alive || break
            sleep 0.1
        done
        pf_alive && fail "still running 3 s after a second SIG$sig"
        wait "$PF_PID" 2>/dev/null
        grep -q "got SIG$sig while shutting down: immediate shutdown" "$PF_LOG" || fail "no log line for the second SIG$sig"
        wait "$bg" 2>/dev/null
        rm -f "$PF_PIDFILE"
    done
}

# SIGINT (wait for servers) opens no server any more: a client queued for one,
# or asking for one later, is closed ("server shutting down"); the client that
# has a server finishes its query, then pgfunnel exits.
# timeout: 40
test_sigint_closes_clients_that_need_a_server() {
    local a b rc
    pf_start "pool_mode = transaction" "default_pool_size = 1"
    pf_psql -c "select pg_sleep(2), 'a-done'" >"$TEST_TMP/a.out" 2>&1 &
    a=$!
    wait_until 5 _running_is "select pg_sleep(2), 'a-done'" 1
    pf_psql -c "select 'b-ran'" >"$TEST_TMP/b.out" 2>&1 &
    b=$!
    sleep 0.5
    kill -INT "$PF_PID"
    rc=0
    wait "$b" || rc=$?
    assert_ne 0 "$rc" "queued client B: $(cat "$TEST_TMP/b.out")"
    assert_contains "$(cat "$TEST_TMP/b.out")" "server shutting down"
    wait "$a"
    assert_contains "$(cat "$TEST_TMP/a.out")" "a-done"
    wait_until 10 bash -c "! kill -0 $PF_PID 2>/dev/null"
    wait "$PF_PID" 2>/dev/null
}
