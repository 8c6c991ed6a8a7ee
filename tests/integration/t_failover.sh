# shellcheck shell=bash
# t_failover.sh — a real primary and streaming standby (tools/pgsandbox
# standby: pg_basebackup -R) behind one pgfunnel:
#   app     host list of both, target_session_attrs=read-write
#   app_ro  host list of both, prefer-standby, round-robin (user ro_user)
#   app_any host list of both, any, round-robin, session mode (user any_user)
# pgbench runs through app while the primary is stopped (-m immediate) and
# the standby promoted; the outage window is measured and printed.
#
# Each test builds its own two clusters in $TEST_TMP (about 2 s) and stops
# them on the way out, also when it fails or is killed.

_ha_cleanup() {
    [ -n "${HA_STANDBY:-}" ] && bash "$PGSANDBOX" destroy "$HA_STANDBY" >/dev/null 2>&1
    [ -n "${HA_PRIMARY:-}" ] && bash "$PGSANDBOX" destroy "$HA_PRIMARY" >/dev/null 2>&1
    return 0
}

# Sets HA_PRIMARY/HA_STANDBY (directories) and P1/P2 (ports).
_ha_clusters() {
    HA_PRIMARY=$TEST_TMP/primary
    HA_STANDBY=$TEST_TMP/standby
    trap _ha_cleanup EXIT
    trap '_ha_cleanup; exit 143' TERM INT
    P1=$(bash "$PGSANDBOX" start "$HA_PRIMARY") || fail "could not start the primary"
    bash "$PGSANDBOX" psql "$HA_PRIMARY" -q -v ON_ERROR_STOP=1 \
        -c "create database app" -c "create role ro_user login" -c "create role any_user login" \
        >/dev/null || fail "could not set up the primary"
    pgbench -i -q -s 1 -h 127.0.0.1 -p "$P1" -U postgres app >"$TEST_TMP/init.out" 2>&1 ||
        fail "pgbench -i: $(tail -3 "$TEST_TMP/init.out")"
    "$PG_BINDIR/psql" -X -q -h 127.0.0.1 -p "$P1" -U postgres app \
        -c "grant select on all tables in schema public to ro_user, any_user" >/dev/null
    P2=$(bash "$PGSANDBOX" standby "$HA_PRIMARY" "$HA_STANDBY") || fail "could not start the standby"
    wait_until 20 _on_node "$P2" app "select count(*) from pgbench_branches" 1
    export P1 P2
}

# _on_node PORT DB SQL EXPECTED: true when SQL on that node returns EXPECTED
_on_node() {
    [ "$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$1" -U postgres "$2" -c "$3" 2>/dev/null)" = "$4" ]
}
_q() { "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$1" -U postgres postgres -c "$2"; }

# pgfunnel's server connections for USER on the node at PORT (checks excluded)
_backends() {
    _q "$1" "select count(*) from pg_stat_activity where datname = 'app' and usename = '$2' and application_name <> 'pgfunnel host check'"
}

_ha_pgfunnel() { # extra [pgbouncer] lines…
    local hosts="host=127.0.0.1,127.0.0.1 port=$P1,$P2 dbname=app"
    pf_start "default_pool_size = 2" "$@" \
        "[databases]" \
        "app = $hosts user=postgres target_session_attrs=read-write" \
        "app_ro = $hosts user=ro_user target_session_attrs=prefer-standby load_balance_hosts=round-robin" \
        "app_any = $hosts user=any_user target_session_attrs=any load_balance_hosts=round-robin pool_mode=session pool_size=4"
}

# epoch microseconds of a pgfunnel log line's timestamp
_log_usec() {
    local ts
    ts=$(cut -c1-23 <<<"$1")
    echo $(($(date -d "$ts UTC" +%s%3N) * 1000))
}

# timeout: 100
test_failover_under_pgbench() {
    _ha_clusters
    _ha_pgfunnel
    assert_eq "f" "$(pf_psql -d app -c 'select pg_is_in_recovery()')"
    # eight clients share two servers: at any moment at most two transactions are in flight
    pgbench -n -c 8 -j 2 -T 12 -l --log-prefix="$TEST_TMP/pgb" \
        -h 127.0.0.1 -p "$PF_PORT" -U postgres app >"$TEST_TMP/pgb.out" 2>&1 &
    local pgb=$! i
    sleep 1
    # the read-write pool never lands on the standby
    for i in 1 2 3 4 5; do
        assert_eq 0 "$(_backends "$P2" postgres)" "read-write servers on the standby"
        sleep 0.3
    done
    [ "$(_backends "$P1" postgres)" -ge 1 ] || fail "no read-write servers on the primary"
    local mark t_kill t_killed t_prom
    mark=$(pf_log_mark)
    t_kill=$(date +%s%6N)
    bash "$PGSANDBOX" stop "$HA_PRIMARY" immediate || fail "could not stop the primary"
    t_killed=$(date +%s%6N)
    sleep 0.3
    bash "$PGSANDBOX" promote "$HA_STANDBY" || fail "could not promote the standby"
    t_prom=$(date +%s%6N)
    wait "$pgb"
    local out aborted first_fail first_ok after_prom line
    out=$(cat "$TEST_TMP/pgb.out")
    aborted=$(grep -c 'aborted in command' <<<"$out")
    # the first failed transaction: the first client pgfunnel closed for its broken server
    line=$(pf_logs_since "$mark" | grep -m1 'server conn crashed?\|server closed the connection')
    first_fail=$t_killed
    [ -n "$line" ] && first_fail=$(_log_usec "$line")
    first_ok=$(cat "$TEST_TMP"/pgb.* | awk -v k="$t_killed" '{t = $5 * 1000000 + $6; if (t > k && (m == 0 || t < m)) m = t} END {printf "%.0f", m}')
    after_prom=$(cat "$TEST_TMP"/pgb.* | awk -v k="$t_prom" '{t = $5 * 1000000 + $6; if (t > k) n++} END {print n + 0}')
    [ "$first_ok" -gt 0 ] || fail "no transaction succeeded after the failover: $out"
    echo "failover: clients aborted (transactions in flight) = $aborted of 8"
    echo "failover: primary stopped in $(((t_killed - t_kill) / 1000)) ms, standby promoted $(((t_prom - t_killed) / 1000)) ms later"
    echo "failover: outage window (first failed -> first succeeded transaction) = $(((first_ok - first_fail) / 1000)) ms"
    echo "failover: promotion done -> first succeeded transaction = $(((first_ok - t_prom) / 1000)) ms"
    echo "failover: transactions after the promotion = $after_prom"
    # only what was in flight failed: at most one transaction per server
    [ "$aborted" -le 2 ] || fail "$aborted clients failed; only the 2 in flight should have: $out"
    [ "$after_prom" -gt 100 ] || fail "only $after_prom transactions after the promotion"
    # target: under 2 s after the promotion; the bound here leaves room for a loaded machine
    [ $(((first_ok - t_prom) / 1000)) -lt 5000 ] || fail "first success $(((first_ok - t_prom) / 1000)) ms after the promotion"
    # new transactions run on the new primary
    assert_eq "$P2|f" "$(pf_psql -d app -c "select current_setting('port'), pg_is_in_recovery()")"
    wait_until 5 bash -c "'$PG_BINDIR/psql' -X -At -h 127.0.0.1 -p '$PF_PORT' -U postgres pgbouncer -c 'show hosts' | grep -q '|$P1|down|'"
    pf_stop
}

# timeout: 100
test_read_pools_spread_move_and_roles() {
    _ha_clusters
    _ha_pgfunnel "query_wait_timeout = 3" "server_login_retry = 1"
    # any + round-robin: four sessions, two on each node
    pgbench -n -c 4 -j 4 -T 1 -S -h 127.0.0.1 -p "$PF_PORT" -U postgres app_any \
        >"$TEST_TMP/any.out" 2>&1 || fail "pgbench app_any: $(tail -3 "$TEST_TMP/any.out")"
    assert_eq "2 2" "$(_backends "$P1" any_user) $(_backends "$P2" any_user)" "app_any servers per node"
    # prefer-standby: the standby serves while it is up
    pgbench -n -c 4 -j 4 -T 1 -S -h 127.0.0.1 -p "$PF_PORT" -U postgres app_ro \
        >"$TEST_TMP/ro.out" 2>&1 || fail "pgbench app_ro: $(tail -3 "$TEST_TMP/ro.out")"
    assert_eq "0" "$(_backends "$P1" ro_user)" "app_ro servers on the primary"
    [ "$(_backends "$P2" ro_user)" -ge 1 ] || fail "no app_ro server on the standby"
    assert_eq "$P2|t" "$(pf_psql -d app_ro -c "select current_setting('port'), pg_is_in_recovery()")"
    # the standby goes: app_ro moves to the survivor
    bash "$PGSANDBOX" stop "$HA_STANDBY" immediate || fail "could not stop the standby"
    wait_until 10 bash -c "[ \"\$('$PG_BINDIR/psql' -X -At -h 127.0.0.1 -p '$PF_PORT' -U postgres app_ro -c \"select current_setting('port')\" 2>/dev/null)\" = '$P1' ]"
    assert_eq "f" "$(pf_psql -d app_ro -c 'select pg_is_in_recovery()')"

    # the primary turns read-only (default_transaction_read_only, reported by
    # PostgreSQL 14+) in the middle of a transaction: the transaction finishes
    # on its server, which is closed when released, not reused
    assert_eq 1 "$(pf_psql -d app -c 'select 1')"
    local mark out
    mark=$(pf_log_mark)
    "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres app \
        -c "begin" -c "select pg_sleep(1.5)" -c "show default_transaction_read_only" -c "commit" \
        >"$TEST_TMP/tx.out" 2>&1 &
    local tx=$!
    sleep 0.5
    _q "$P1" "alter system set default_transaction_read_only = on" >/dev/null
    _q "$P1" "select pg_reload_conf()" >/dev/null
    wait "$tx" || fail "the transaction failed: $(cat "$TEST_TMP/tx.out")"
    assert_contains "$(cat "$TEST_TMP/tx.out")" "on"
    wait_until 5 bash -c "grep -q 'no longer matches target_session_attrs=read-write' '$PF_LOG'"
    # and no new server is accepted while the only node is read-only
    out=$(pf_psql -d app -c 'select 1' 2>&1) && fail "read-write pool got a read-only server: $out"
    assert_contains "$out" "read-only"
    _q "$P1" "alter system reset default_transaction_read_only" >/dev/null
    _q "$P1" "select pg_reload_conf()" >/dev/null
    wait_until 10 bash -c "[ \"\$('$PG_BINDIR/psql' -X -At -h 127.0.0.1 -p '$PF_PORT' -U postgres app -c 'select 1' 2>/dev/null)\" = 1 ]"
    pf_stop
}
