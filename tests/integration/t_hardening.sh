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
