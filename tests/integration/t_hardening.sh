# shellcheck shell=bash
# t_hardening.sh — clients that misbehave on purpose: answers that are never
# read (console, locally answered Close/Parse), big SHOW and /metrics output,
# HTTP password floods and slowloris connections, names that try to forge log
# lines.  Raw protocol clients live in hardening.py.

HPY=$REPO_ROOT/tests/integration/hardening.py
_hpy() { python3 "$HPY" "$@"; }
_rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$PF_PID/status"; }
_adm() { "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer "$@"; }
# ASan keeps freed memory in a quarantine; keep it small so RSS means live memory
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"

test_log_names_cannot_forge_lines() {
    local forged log
    pf_start "log_connections = 1"
    forged='2026-01-01 00:00:00.000 UTC [1] LOG C-999 admin@postgres 127.0.0.1:1: login attempt: ok'
    _hpy startup "$PF_PORT" "evil\\n$forged" "postgres" >/dev/null
    _hpy startup "$PF_PORT" "postgres" "db\\r\\n$forged" >/dev/null
    wait_until 5 grep -q 'evil' "$PF_LOG"
    pf_stop INT
    log=$(cat "$PF_LOG")
    # every line starts with a real timestamp of this run, none with the forged one
    assert_eq 0 "$(grep -c '^2026-01-01' <<<"$log")" "forged log line"
    assert_contains "$log" ' evil\n2026-01-01 00:00:00.000 UTC [1] LOG C-999'
    assert_contains "$log" 'postgres@db\r\n2026-01-01'
}

# _flood_start ARGS… — run "hardening.py flood ARGS…" in the background with its
# stdin held open (it keeps the connection until _flood_stop), wait for "sent N".
_flood_start() {
    exec 7> >(exec python3 "$HPY" flood "$@" >"$TEST_TMP/flood.out" 2>&1)
    wait_until 30 grep -q '^sent' "$TEST_TMP/flood.out"
    FLOOD_SENT=$(awk '/^sent/ {print $2}' "$TEST_TMP/flood.out")
}
_flood_stop() { exec 7>&-; }

# _rss_growth_below KB MSG — pgfunnel's RSS grew less than KB since $RSS0
_rss_growth_below() {
    local rss
    sleep 1 # let pgfunnel read what it is going to read
    rss=$(_rss_kb)
    echo "RSS before ${RSS0} kB, after ${rss} kB, client sent $FLOOD_SENT bytes"
    [ $((rss - RSS0)) -lt "$1" ] || fail "$2: RSS grew from $RSS0 kB to $rss kB"
}

# timeout: 60
test_console_pipelined_show_without_reading() {
    pf_start "stats_users = statsuser"
    assert_eq 1 "$(pf_psql -c 'select 1')"
    RSS0=$(_rss_kb)
    # 512 kB of SHOW CONFIG queries (30,000, 4 kB of answer each), never read
    _flood_start "$PF_PORT" statsuser pgbouncer show 524288 5
    _rss_growth_below 65536 "a console client that does not read its answers"
    # everyone else is still served
    assert_contains "$(timeout 10 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c 'SHOW VERSION')" "pgfunnel"
    assert_eq 1 "$(timeout 10 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d postgres -c 'select 1')"
    _flood_stop
    pf_stop INT
}

# timeout: 60
test_locally_answered_closes_without_reading() {
    pf_start "max_prepared_statements = 10"
    assert_eq 1 "$(pf_psql -c 'select 1')"
    RSS0=$(_rss_kb)
    # Close messages pgfunnel answers itself (CloseComplete), never read: up to 96 MB
    _flood_start "$PF_PORT" postgres postgres close 100663296 8
    _rss_growth_below 32768 "closes answered locally to a client that does not read"
    assert_eq 1 "$(timeout 10 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d postgres -c 'select 1')"
    _flood_stop
    pf_stop INT
}

# timeout: 60
test_closes_behind_an_unanswered_parse() {
    pf_start "max_prepared_statements = 10"
    assert_eq 1 "$(pf_psql -c 'select 1')"
    RSS0=$(_rss_kb)
    # a Parse the server answers only at Sync or Flush, then 8 MB of Closes whose
    # answers must wait behind it, never read
    _flood_start "$PF_PORT" postgres postgres parse-close 8388608 8
    _rss_growth_below 32768 "closes queued behind a server answer"
    assert_eq 1 "$(timeout 10 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d postgres -c 'select 1')"
    _flood_stop
    # a client that pipelines as many and then reads gets every answer, in order
    assert_eq "parse 1 close 3000 ready 1" "$(timeout 20 python3 "$HPY" pipeline-close "$PF_PORT" 3000)"
    pf_stop INT
}

# _many_pools N — start pgfunnel with a database whose server refuses every
# login (a fake backend: final, so each client is told at once) and let N
# users log in once: N pools, no PostgreSQL connection each.
_many_pools() {
    HTTP_PORT=$(free_port)
    export HTTP_PORT
    local fake
    fake=$(free_port)
    python3 "$HPY" refusing-backend "$fake" >"$TEST_TMP/fake.out" 2>&1 &
    # shellcheck disable=SC2064  # the pid is known now
    trap "kill $! 2>/dev/null" EXIT
    wait_until 10 grep -q listening "$TEST_TMP/fake.out"
    pf_start "admin_http_port = $HTTP_PORT" "[databases]" "many = host=127.0.0.1 port=$fake dbname=x"
    _hpy make-pools "$PF_PORT" many "$1"
    assert_eq "$(($1 + 1))" "$(_adm -c 'SHOW POOLS' | wc -l)" "pools made"
}

# timeout: 90
test_show_over_many_pools_is_sent_in_slices() {
    local out col remain
    _many_pools 10000
    # SHOW POOLS is about 1 MB now; a client on the unix socket asks and reads nothing
    exec 7> >(exec python3 "$HPY" slow-query "$PF_PORT" "$TEST_TMP" "SHOW POOLS" >"$TEST_TMP/slow.out" 2>&1)
    wait_until 10 grep -q '^sent' "$TEST_TMP/slow.out"
    sleep 1
    # pgfunnel holds at most a slice beyond the back-pressure bound for it
    out=$("$PG_BINDIR/psql" -X -A -F'|' -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c 'SHOW SOCKETS')
    col=$(head -n 1 <<<"$out" | tr '|' '\n' | grep -n '^send_remain$' | cut -d: -f1)
    remain=$(awk -F'|' -v c="$col" 'NR > 1 && $1 == "C" && $c + 0 > m {m = $c + 0} END {print m + 0}' <<<"$out")
    echo "largest client out-queue: $remain bytes"
    [ "$remain" -lt 524288 ] || fail "a SHOW to a client that does not read queued $remain bytes"
    exec 7>&-
    # complete results, also when they take many slices
    assert_eq 10001 "$(_adm -c 'SHOW POOLS' | wc -l)"
    assert_eq 10000 "$(_adm -c 'SHOW USERS' | grep -c '^u[0-9]')"
    assert_eq 10000 "$(_adm -c 'SHOW POOLS' | grep -c '^many|u[0-9]')"
    assert_eq 10000 "$(_adm -c 'SHOW POOLS' | cut -d'|' -f2 | grep '^u' | sort -u | wc -l)"
    pf_stop INT
}

_metric() { # NAME: its value in a /metrics scrape ($HTTP_AUTH = user:password if needed)
    curl -s ${HTTP_AUTH:+-u "$HTTP_AUTH"} "http://127.0.0.1:$HTTP_PORT/metrics" |
        awk -v n="$1" '$1 == n {print $2}'
}

# timeout: 90
test_metrics_over_many_pools_is_streamed() {
    local out
    _many_pools 10000
    out=$(OUT=$TEST_TMP/metrics.txt _hpy http-get "$HTTP_PORT" /metrics)
    echo "$out"
    assert_contains "$out" "status 200"
    assert_contains "$out" "encoding chunked"
    [ "$(awk '/^chunks/ {print $2}' <<<"$out")" -ge 10 ] || fail "/metrics in fewer than 10 chunks"
    # complete: every pool, every family, the last line
    assert_eq 10000 "$(grep -c '^pgfunnel_pool_size{database="many",user="u' "$TEST_TMP/metrics.txt")"
    assert_eq 10000 "$(grep -c '^pgfunnel_pool_server_login_connections{database="many"' "$TEST_TMP/metrics.txt")"
    assert_eq 1 "$(grep -c '^pgfunnel_http_auth_busy_total ' "$TEST_TMP/metrics.txt")"
    if command -v promtool >/dev/null; then
        assert_ok promtool check metrics <"$TEST_TMP/metrics.txt"
    fi
    out=$(OUT=$TEST_TMP/pools.json _hpy http-get "$HTTP_PORT" /pools)
    assert_contains "$out" "encoding chunked"
    assert_eq 10000 "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["pools"]))' "$TEST_TMP/pools.json")"
    # HTTP/1.0 gets the whole body too, ended by the connection's end
    curl -s --http1.0 "http://127.0.0.1:$HTTP_PORT/metrics" >"$TEST_TMP/metrics10.txt"
    assert_eq 10000 "$(grep -c '^pgfunnel_pool_size{database="many",user="u' "$TEST_TMP/metrics10.txt")"
    assert_eq pgfunnel_http_auth_busy_total "$(tail -n 1 "$TEST_TMP/metrics10.txt" | cut -d' ' -f1)"
    pf_stop INT
}

# timeout: 90
test_http_wrong_passwords_are_checked_on_workers() {
    local out c0 c1 w0 w1
    printf '"postgres" "%s"\n' "$(_hpy scram-secret s3cret)" >"$TEST_TMP/users.txt"
    HTTP_PORT=$(free_port)
    export HTTP_PORT
    pf_start "admin_http_port = $HTTP_PORT" "admin_http_auth = 1" "auth_file = $TEST_TMP/users.txt"
    HTTP_AUTH=postgres:s3cret
    c0=$(_metric pgfunnel_http_auth_checks_total)
    w0=$(_metric pgfunnel_workq_jobs_completed_total)
    # 300 different wrong passwords, 8 at a time: each costs a PBKDF2, on a worker
    out=$(_hpy http-auth-flood "$HTTP_PORT" postgres 300 8)
    echo "$out"
    assert_eq 1 "$(pf_psql -c 'select 1')" "pooled query during the flood"
    c1=$(_metric pgfunnel_http_auth_checks_total)
    w1=$(_metric pgfunnel_workq_jobs_completed_total)
    echo "password checks $c0 -> $c1, worker jobs $w0 -> $w1"
    # every request was answered 401, or 503 when the checks in flight were at their bound
    assert_eq 300 "$(awk '$1 == 401 || $1 == 503 {n += $2} END {print n}' <<<"$out")"
    assert_eq "$(awk '$1 == 401 {print $2}' <<<"$out")" "$((c1 - c0))" "one worker check per 401"
    [ $((w1 - w0)) -ge $((c1 - c0)) ] || fail "checks did not run as worker jobs"
    # a wrong password repeated is remembered: one check, then answers from memory
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -u postgres:again "http://127.0.0.1:$HTTP_PORT/metrics")"
    done
    assert_eq $((c1 + 1)) "$(_metric pgfunnel_http_auth_checks_total)" "repeated failures checked once"
    assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' -u postgres:s3cret "http://127.0.0.1:$HTTP_PORT/metrics")"
    assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -u postgres:s3cre "http://127.0.0.1:$HTTP_PORT/metrics")"
    assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -u nobody:s3cret "http://127.0.0.1:$HTTP_PORT/metrics")"
    # a changed secret is checked anew: the old password no longer opens
    printf '"postgres" "%s"\n' "$(_hpy scram-secret n3w)" >"$TEST_TMP/users.txt"
    kill -HUP "$PF_PID"
    wait_until 10 test "$(curl -s -o /dev/null -w '%{http_code}' -u postgres:s3cret "http://127.0.0.1:$HTTP_PORT/metrics")" = 401
    assert_eq 200 "$(curl -s -o /dev/null -w '%{http_code}' -u postgres:n3w "http://127.0.0.1:$HTTP_PORT/metrics")"
    pf_stop INT
}

_answered() { [ "$(cat "$TEST_TMP"/psql.* 2>/dev/null | grep -c '^[0-9][0-9]*$')" = "$1" ]; }

# timeout: 60
test_http_slowloris_under_a_low_descriptor_limit() {
    local out at_once later alive first last i
    # pgfunnel with 128 descriptors; the test's own tools keep the usual limit
    printf '#!/bin/bash\nulimit -n 128 || exit 1\nexec "%s" "$@"\n' "$PGFUNNEL_BIN" >"$TEST_TMP/pf128"
    chmod +x "$TEST_TMP/pf128"
    PGFUNNEL_BIN=$TEST_TMP/pf128
    HTTP_PORT=$(free_port)
    export HTTP_PORT
    pf_start "admin_http_port = $HTTP_PORT" "max_client_conn = 200"
    # 125 connections that send one byte of a request head per second
    _hpy slowloris "$HTTP_PORT" 125 13 >"$TEST_TMP/slow.out" 2>&1 &
    wait_until 10 grep -q '^opened' "$TEST_TMP/slow.out"
    # PostgreSQL-port clients still get in, 20 at once
    for i in $(seq 20); do
        timeout 10 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d postgres \
            -c "select $i" >"$TEST_TMP/psql.$i" 2>&1 &
    done
    wait_until 15 _answered 20
    wait_until 20 grep -q '^closed_later' "$TEST_TMP/slow.out"
    cat "$TEST_TMP/slow.out"
    out=$(cat "$TEST_TMP/slow.out")
    at_once=$(awk '/^opened/ {print $6}' <<<"$out")
    later=$(awk '/^closed_later/ {print $2}' <<<"$out")
    alive=$(awk '/^closed_later/ {print $4}' <<<"$out")
    first=$(awk '/^closed_later/ {print int($6)}' <<<"$out")
    last=$(awk '/^closed_later/ {print int($8)}' <<<"$out")
    # beyond the cap: refused at once; the others: closed at the deadline although they trickle
    [ "$at_once" -ge 93 ] || fail "only $at_once connections beyond the cap were refused"
    assert_eq 0 "$alive" "trickling connections still open after 13 s"
    [ "$first" -ge 9 ] && [ "$last" -le 12 ] || fail "deadline closes between $first and $last s"
    assert_eq "$((125 - at_once))" "$later"
    [ "$(_metric pgfunnel_http_timeouts_total)" -ge "$later" ] || fail "timeouts not counted"
    pf_stop INT
}

# timeout: 60
test_show_over_many_clients_is_complete() {
    local ids
    pf_start "max_client_conn = 1500" "default_pool_size = 2"
    "$TOOLS_DIR/idle_clients" "host=127.0.0.1 port=$PF_PORT user=postgres dbname=postgres" 1200 30 \
        >"$TEST_TMP/idle.out" 2>&1 &
    echo $! >"$TEST_TMP/idle.pid"
    wait_until 30 grep -q '^ready' "$TEST_TMP/idle.out"
    # about 250 kB of rows: several slices, resumed after the last client id sent
    ids=$(_adm -c 'SHOW CLIENTS' | awk -F'|' '{print $21}')
    assert_eq 1201 "$(wc -l <<<"$ids")"
    assert_eq 1201 "$(sort -u <<<"$ids" | wc -l)" "client rows are unique"
    assert_eq 1201 "$(_adm -c 'SHOW SOCKETS' | grep -c '^C|')"
    assert_eq 1200 "$(_adm -c 'SHOW FDS' | grep -c '|client|')"
    kill "$(cat "$TEST_TMP/idle.pid")"
    pf_stop INT
}
