# shellcheck shell=bash
# t_cancel.sh — CancelRequest: psql's cancel through pgfunnel reaches the right
# backend, and bogus cancel keys are ignored.

PQ_STARTUP=$TOOLS_DIR/pq_startup

_need_tool() {
    [ -x "$PQ_STARTUP" ] || fail "$PQ_STARTUP missing (make build/tools/pq_startup)"
}

# count of backends running QUERY_PATTERN (seen directly on the sandbox)
_running() {
    pg_psql -c "select count(*) from pg_stat_activity where state = 'active' and query like '$1' and pid <> pg_backend_pid()"
}
_is_running() { [ "$(_running "$1")" -ge 1 ]; }
_not_running() { [ "$(_running "$1")" = 0 ]; }
_gone() { ! kill -0 "$1" 2>/dev/null; }

# psql in the background with SIGINT at its default (non-interactive bash
# ignores SIGINT in background jobs; psql must get it to send a cancel)
_bg_psql() { # OUTFILE SQL
    env --default-signal=INT "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres \
        -d postgres -c "$2" >"$1" 2>&1 </dev/null &
}

# timeout: 30
test_sigint_cancels_own_query_not_concurrent_one() {
    local pa pb t0 rc_a rc_b out_a out_b
    pf_start "default_pool_size = 4"
    # B: a shorter query on another server, must survive A's cancel
    _bg_psql "$TEST_TMP/b.out" "select pg_sleep(3.0111), 'b-done'"
    pb=$!
    _bg_psql "$TEST_TMP/a.out" "select pg_sleep(10.0222)"
    pa=$!
    wait_until 5 _is_running '%pg_sleep(3.0111)%'
    wait_until 5 _is_running '%pg_sleep(10.0222)%'
    t0=$(date +%s%3N)
    kill -INT "$pa"
    wait_until 3 _gone "$pa"
    wait "$pa"
    rc_a=$?
    [ $(($(date +%s%3N) - t0)) -le 2500 ] || fail "cancel took $(($(date +%s%3N) - t0)) ms"
    out_a=$(cat "$TEST_TMP/a.out")
    assert_contains "$out_a" "canceling statement due to user request" "client A's output"
    assert_ne 0 "$rc_a" "psql A exit status"
    wait_until 5 _not_running '%pg_sleep(10.0222)%'
    # B is still running and finishes normally
    kill -0 "$pb" 2>/dev/null || fail "client B ended early: $(cat "$TEST_TMP/b.out")"
    wait_until 6 _gone "$pb"
    wait "$pb"
    rc_b=$?
    out_b=$(cat "$TEST_TMP/b.out")
    assert_eq 0 "$rc_b" "psql B exit status ($out_b)"
    assert_eq "|b-done" "$out_b" "client B's result"
    # the pooler still works, and the cancelled server is usable
    assert_eq 1 "$(pf_psql -c "select 1")"
    pf_stop
}

# timeout: 30
test_cancel_with_unknown_or_wrong_key_is_ignored() {
    local out pid key rc t0
    _need_tool
    pf_start
    # a raw client runs a 2 s query; its BackendKeyData is printed first
    "$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --query "select pg_sleep(2.0333), 'slept'" \
        >"$TEST_TMP/raw.out" 2>&1 &
    local praw=$!
    wait_until 5 grep -q '^K ' "$TEST_TMP/raw.out"
    read -r _ pid key < <(grep '^K ' "$TEST_TMP/raw.out")
    wait_until 5 _is_running '%pg_sleep(2.0333)%'
    # right pid, wrong key; unknown pid; pid 0
    for args in "$pid $(((key + 1) % 4294967296))" "987654 $key" "0 0"; do
        # shellcheck disable=SC2086
        out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --cancel $args --timeout 5 2>&1)
        rc=$?
        assert_eq 0 "$rc" "cancel $args: tool status ($out)"
        assert_eq "EOF" "$out" "cancel $args: the pooler answers nothing and closes"
    done
    wait "$praw"
    out=$(cat "$TEST_TMP/raw.out")
    assert_contains "$out" $'D |slept\nC SELECT 1\nZ I' "the query was not cancelled"
    assert_not_contains "$out" "57014"
    assert_eq 1 "$(pf_psql -c "select 1")" "the pooler still works"

    # and with the right key the query is cancelled
    "$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --query "select pg_sleep(10.0444)" \
        >"$TEST_TMP/raw2.out" 2>&1 &
    praw=$!
    wait_until 5 grep -q '^K ' "$TEST_TMP/raw2.out"
    read -r _ pid key < <(grep '^K ' "$TEST_TMP/raw2.out")
    wait_until 5 _is_running '%pg_sleep(10.0444)%'
    t0=$(date +%s%3N)
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --cancel "$pid" "$key" --timeout 5 2>&1)
    assert_eq "EOF" "$out" "cancel with the right key"
    wait_until 3 _gone "$praw"
    wait "$praw"
    out=$(cat "$TEST_TMP/raw2.out")
    assert_contains "$out" "E ERROR 57014 canceling statement due to user request"
    [ $(($(date +%s%3N) - t0)) -le 2500 ] || fail "cancel took $(($(date +%s%3N) - t0)) ms"
    pf_stop
}

# SHOW POOLS column COL of database postgres
_pools_col() {
    "$PG_BINDIR/psql" -X -A -F '|' -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer \
        -c "show pools" 2>/dev/null | awk -F'|' -v col="$1" '
        NR == 1 { for (i = 1; i <= NF; i++) if ($i == col) c = i; next }
        $1 == "postgres" { print $c }'
}
_one_waiting() { [ "$(_pools_col cl_waiting)" = 1 ]; }

# Cancels that arrive while or after a query ends must not cancel the next
# client's query on the same server: with a pool of 1, client A runs a long
# query, B waits for the server, ten cancels for A arrive at once.  The
# queued ones are dropped when A's query ends, and the server goes to B only
# after the ones already being sent are through.
# timeout: 30
test_cancels_racing_query_end_never_hit_next_client() {
    local pid key pa pb out_b
    _need_tool
    # one worker: the cancels are sent one after the other, the later ones
    # certainly after A's query has ended
    pf_start "default_pool_size = 1" "workers = 1"
    "$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --query "select pg_sleep(10.0555)" \
        >"$TEST_TMP/a.out" 2>&1 &
    pa=$!
    wait_until 5 grep -q '^K ' "$TEST_TMP/a.out"
    read -r _ pid key < <(grep '^K ' "$TEST_TMP/a.out")
    wait_until 5 _is_running '%pg_sleep(10.0555)%'
    "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d postgres \
        -c "select pg_sleep(1.5), 'b-done'" >"$TEST_TMP/b.out" 2>&1 </dev/null &
    pb=$!
    wait_until 5 _one_waiting
    # ten CancelRequests for A, written in one burst
    python3 - "$PF_PORT" "$pid" "$key" <<'PY' || fail "cancel burst failed"
import socket, struct, sys
port, pid, key = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(10)]
for s in socks:
    s.sendall(struct.pack("!IIII", 16, 80877102, pid, key))
for s in socks:
    s.settimeout(5)
    s.recv(1)  # the pooler closes without an answer
    s.close()
PY
    wait_until 5 _gone "$pa"
    wait "$pa"
    assert_contains "$(cat "$TEST_TMP/a.out")" "E ERROR 57014 canceling statement due to user request" \
        "client A was cancelled"
    wait_until 8 _gone "$pb"
    wait "$pb"
    out_b=$(cat "$TEST_TMP/b.out")
    assert_eq "|b-done" "$out_b" "client B's query must complete"
    assert_eq 1 "$(pf_psql -c "select 1")" "the server still serves"
    pf_stop
}
