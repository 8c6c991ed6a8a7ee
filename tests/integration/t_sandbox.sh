# shellcheck shell=bash
# t_sandbox.sh — the sandbox PostgreSQL itself (tools/pgsandbox), no pgfunnel.

test_direct_select() {
    assert_eq 1 "$(pg_psql -c 'select 1')"
    assert_eq 1 "$(pg_psql -d pgfunnel_test -c 'select 1')"
}

test_unix_socket() {
    [ -S "$SANDBOX_SOCKET_DIR/.s.PGSQL.$PGPORT" ] || fail "no socket in $SANDBOX_SOCKET_DIR"
    assert_eq postgres "$("$PG_BINDIR/psql" -X -At -h "$SANDBOX_SOCKET_DIR" -p "$PGPORT" -U postgres -d postgres -c 'select current_user')"
}

test_settings() {
    assert_eq off "$(pg_psql -c 'show fsync')"
    assert_eq 300 "$(pg_psql -c 'show max_connections')"
    assert_eq 127.0.0.1 "$(pg_psql -c 'show listen_addresses')"
}

test_md5user() {
    assert_contains "$(pg_psql -c "select rolpassword from pg_authid where rolname = 'md5user'")" md5
    assert_eq md5user "$(PGPASSWORD=md5pass "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PGPORT" -U md5user -d pgfunnel_test -c 'select current_user')"
    local out
    out=$(PGPASSWORD=wrong "$PG_BINDIR/psql" -X -At -w -h 127.0.0.1 -p "$PGPORT" -U md5user -d pgfunnel_test -c 'select 1' 2>&1) &&
        fail "md5user logged in with a wrong password"
    assert_contains "$out" "password authentication failed"
}

test_scramuser() {
    assert_contains "$(pg_psql -c "select rolpassword from pg_authid where rolname = 'scramuser'")" SCRAM-SHA-256
    assert_eq scramuser "$(PGPASSWORD=scrampass "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PGPORT" -U scramuser -d pgfunnel_test -c 'select current_user')"
    local out
    out=$(PGPASSWORD=wrong "$PG_BINDIR/psql" -X -At -w -h 127.0.0.1 -p "$PGPORT" -U scramuser -d pgfunnel_test -c 'select 1' 2>&1) &&
        fail "scramuser logged in with a wrong password"
    assert_contains "$out" "password authentication failed"
}

test_other_users_trusted() {
    pg_psql -c "create role trusted_someone login" >/dev/null 2>&1 || true
    assert_eq trusted_someone "$("$PG_BINDIR/psql" -X -At -w -h 127.0.0.1 -p "$PGPORT" -U trusted_someone -d postgres -c 'select current_user')"
}

# timeout: 90
test_lifecycle_restart_keeps_port() {
    local d=$TEST_TMP/sb port port2
    port=$("$PGSANDBOX" start "$d") || fail "start failed"
    [[ $port =~ ^[0-9]+$ ]] || fail "start printed '$port', not a port"
    assert_ne "$PGPORT" "$port" "second sandbox got the same port"
    assert_eq "$port" "$("$PGSANDBOX" start "$d")" "start on a running sandbox"
    assert_eq "$port" "$("$PGSANDBOX" port "$d")"
    assert_contains "$("$PGSANDBOX" env "$d")" "PGPORT=$port"
    assert_eq 1 "$("$PGSANDBOX" psql "$d" -At -c 'select 1')"
    "$PGSANDBOX" psql "$d" -q -c 'create table keep_me (x int)' || fail "create table"
    port2=$("$PGSANDBOX" restart "$d" fast) || fail "restart failed"
    assert_eq "$port" "$port2" "restart changed the port"
    assert_eq "$port" "$("$PGSANDBOX" port "$d")"
    assert_eq 0 "$("$PGSANDBOX" psql "$d" -At -c 'select count(*) from keep_me')"
    assert_ok "$PGSANDBOX" stop "$d" immediate
    assert_fail port_open "$port"
    assert_eq "$port" "$("$PGSANDBOX" start "$d")" "start after stop"
    assert_ok port_open "$port"
    assert_ok "$PGSANDBOX" destroy "$d"
    [ ! -e "$d" ] || fail "destroy left $d"
    assert_fail port_open "$port"
}
