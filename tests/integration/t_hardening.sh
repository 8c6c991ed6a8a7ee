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
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=16"

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
    # Close messages pgfunnel answers itself (CloseComplete), never read: 48 MB
    _flood_start "$PF_PORT" postgres postgres close 50331648 4
    _rss_growth_below 16384 "closes answered locally to a client that does not read"
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
    _rss_growth_below 16384 "closes queued behind a server answer"
    assert_eq 1 "$(timeout 10 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d postgres -c 'select 1')"
    _flood_stop
    # a client that pipelines as many and then reads gets every answer, in order
    assert_eq "parse 1 close 3000 ready 1" "$(timeout 20 python3 "$HPY" pipeline-close "$PF_PORT" 3000)"
    pf_stop INT
}

# _many_pools N — start pgfunnel with a database whose server never answers
# (port 1) and let N users log in once: N pools, no PostgreSQL connection each.
_many_pools() {
    HTTP_PORT=$(free_port)
    export HTTP_PORT
    pf_start "admin_http_port = $HTTP_PORT" "[databases]" "many = host=127.0.0.1 port=1 dbname=x"
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
