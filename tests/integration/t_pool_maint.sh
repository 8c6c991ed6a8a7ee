# shellcheck shell=bash
# t_pool_maint.sh — pool upkeep: min_pool_size, server_idle_timeout,
# server_lifetime, server_check_query, reserve pool, max_db_connections and
# max_user_connections (and their eviction of idle servers of other pools).  Each test logs in to PostgreSQL as its own role(s)
# (a forced user= on the database entry, or roles named after the test), so
# its backends can be counted in pg_stat_activity by user name.

_role() { # NAME: create a login role if missing
    pg_psql -c "do \$\$ begin create role $1 login; exception when duplicate_object then null; end \$\$" >/dev/null
}

_maint_start() { # ROLE [INI LINES…]: database maint logs in as ROLE
    local role=$1
    shift
    _role "$role"
    pf_start "[databases]" \
        "maint = host=127.0.0.1 port=$PGPORT dbname=postgres user=$role" \
        "[pgbouncer]" "$@"
}

_backends() { # ROLE[,ROLE…] -> number of backends of these users
    pg_psql -c "select count(*) from pg_stat_activity where usename = any(string_to_array('$1', ','))"
}

_backends_is() { # ROLE N: for wait_until (which must get a command, not its output)
    [ "$(_backends "$1")" = "$2" ]
}

_last_query_is() { # ROLE SQL
    [ "$(pg_psql -c "select query from pg_stat_activity where usename = '$1'")" = "$2" ]
}

_peak_backends() { # ROLE[,ROLE…] SAMPLES: the most backends seen, sampling every 0.2 s
    local i n peak=0
    for ((i = 0; i < $2; i++)); do
        n=$(_backends "$1")
        [ "$n" -gt "$peak" ] && peak=$n
        sleep 0.2
    done
    echo "$peak"
}

_wait_pids() { # wait for the given background jobs only (not for pgfunnel)
    local p
    for p in "$@"; do wait "$p"; done
}

_q() { # SQL via pgfunnel on database maint, as USER (default postgres)
    "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U "${2:-postgres}" -d maint -c "$1"
}

test_min_pool_size_keeps_servers_warm() {
    local app=maint_min_$$
    _maint_start "$app" "min_pool_size = 3" "default_pool_size = 5"
    assert_eq 1 "$(_q 'select 1')"
    # the janitor opens the missing ones without any client asking
    wait_until 5 _backends_is "$app" 3
    sleep 1
    assert_eq 3 "$(_backends "$app")" "min_pool_size must not overshoot"
    pf_stop
}

# With a forced user, min_pool_size applies before any client came (PgBouncer:
# forced user or a client in the pool); without one, only once used.
test_min_pool_size_of_forced_user_entry_needs_no_client() {
    local app=maint_minf_$$
    _maint_start "$app" "min_pool_size = 2" "default_pool_size = 5"
    wait_until 5 _backends_is "$app" 2
    sleep 0.5
    assert_eq 2 "$(_backends "$app")" "min_pool_size must not overshoot"
    pf_stop
}

test_server_idle_timeout_closes_unused_servers() {
    local app=maint_idle_$$ i
    _maint_start "$app" "server_idle_timeout = 1" "default_pool_size = 4"
    local jobs=()
    for i in 1 2 3 4; do
        _q 'select pg_sleep(0.5)' >/dev/null &
        jobs+=($!)
    done
    _wait_pids "${jobs[@]}"
    assert_ne 0 "$(_backends "$app")" "servers were opened"
    wait_until 5 _backends_is "$app" 0
    assert_eq 1 "$(_q 'select 1')" "a new server is opened on demand"
    pf_stop
}

test_server_lifetime_replaces_old_servers() {
    local app=maint_life_$$ before after
    _maint_start "$app" "server_lifetime = 1" "default_pool_size = 1"
    before=$(_q 'select pg_backend_pid()')
    sleep 1.5
    # released after its lifetime: closed, the next query gets a new backend
    _q 'select 1' >/dev/null
    after=$(_q 'select pg_backend_pid()')
    assert_ne "$before" "$after" "backend pid after server_lifetime"
    pf_stop
}

# server_lifetime = 0: each server serves one client and is closed when
# released (PgBouncer's meaning), in session and transaction mode alike.
test_server_lifetime_0_uses_each_server_once() {
    local app=maint_life0_$$ a b c
    _maint_start "$app" "server_lifetime = 0" "default_pool_size = 2" "pool_mode = session"
    a=$(_q 'select pg_backend_pid()')
    b=$(_q 'select pg_backend_pid()')
    c=$(_q 'select pg_backend_pid()')
    [ "$a" != "$b" ] && [ "$b" != "$c" ] && [ "$a" != "$c" ] || fail "backend pids $a $b $c: a server was reused"
    wait_until 3 _backends_is "$app" 0
    assert_eq 1 "$(_q 'select 1')" "still serving"
    pf_stop
}

test_server_check_query_runs_on_idle_servers() {
    local app=maint_check_$$
    _maint_start "$app" "server_check_delay = 1" "server_check_query = select 4242" \
        "default_pool_size = 1"
    assert_eq 1 "$(_q 'select 1')"
    # pg_stat_activity.query shows the last statement the backend ran
    wait_until 5 _last_query_is "$app" "select 4242"
    assert_eq 2 "$(_q 'select 2')" "the checked server still serves"
    pf_stop
}

test_reserve_pool_serves_a_client_that_waited() {
    local app=maint_reserve_$$ t0 t1 j1 j2
    _maint_start "$app" "default_pool_size = 1" "reserve_pool_size = 1" "reserve_pool_timeout = 0.3"
    t0=$(date +%s%N)
    _q 'select pg_sleep(2)' >/dev/null &
    j1=$!
    sleep 0.2
    _q 'select pg_sleep(2)' >/dev/null &
    j2=$!
    sleep 1
    assert_eq 2 "$(_backends "$app")" "a reserve server was opened for the waiting client"
    _wait_pids "$j1" "$j2"
    t1=$(date +%s%N)
    # both ran side by side: well under the 4 s a single server would need
    [ $(((t1 - t0) / 1000000)) -lt 3500 ] || fail "took $(((t1 - t0) / 1000000)) ms"
    pf_stop
}

test_max_db_connections_caps_all_pools_of_a_database() {
    local u1=maint_db1_$$ u2=maint_db2_$$ i peak jobs=()
    _role "$u1"
    _role "$u2"
    pf_start "[databases]" "maint = host=127.0.0.1 port=$PGPORT dbname=postgres" \
        "[pgbouncer]" "default_pool_size = 5" "max_db_connections = 2"
    for i in 1 2 3; do
        _q 'select pg_sleep(1)' "$u1" >/dev/null &
        jobs+=($!)
        _q 'select pg_sleep(1)' "$u2" >/dev/null &
        jobs+=($!)
    done
    peak=$(_peak_backends "$u1,$u2" 10)
    _wait_pids "${jobs[@]}"
    [ "$peak" -ge 1 ] || fail "no backend seen"
    [ "$peak" -le 2 ] || fail "max_db_connections = 2 but $peak backends"
    pf_stop
}

test_max_user_connections_caps_a_user() {
    local u=maint_user_$$ i peak jobs=()
    _role "$u"
    pf_start "[databases]" "maint = host=127.0.0.1 port=$PGPORT dbname=postgres" \
        "[pgbouncer]" "default_pool_size = 5" "max_user_connections = 1"
    for i in 1 2 3; do
        _q 'select pg_sleep(0.7)' "$u" >/dev/null &
        jobs+=($!)
    done
    peak=$(_peak_backends "$u" 8)
    _wait_pids "${jobs[@]}"
    [ "$peak" -eq 1 ] || fail "max_user_connections = 1 but peak $peak backends"
    pf_stop
}

_q_ms() { # SQL USER DB: prints "RESULT MS" (psql via pgfunnel, timed)
    local t0 out
    t0=$(date +%s%3N)
    out=$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U "$2" -d "$3" -c "$1" 2>&1)
    echo "$out $(($(date +%s%3N) - t0))"
}

# max_db_connections reached while another pool of the database has an idle
# server: that one is closed and the needed one opened at once (PgBouncer
# evicts), instead of the client waiting until query_wait_timeout.
test_max_db_connections_evicts_idle_server_of_other_pool() {
    local u1=maint_ev1_$$ u2=maint_ev2_$$ r ms
    _role "$u1"
    _role "$u2"
    pf_start "[databases]" "maint = host=127.0.0.1 port=$PGPORT dbname=postgres" \
        "[pgbouncer]" "max_db_connections = 1" "query_wait_timeout = 5"
    assert_eq 1 "$(_q 'select 1' "$u1")"
    assert_eq 1 "$(_backends "$u1")" "u1's server stays idle in its pool"
    read -r r ms < <(_q_ms 'select 2' "$u2" maint)
    assert_eq 2 "$r" "u2's query"
    [ "$ms" -lt 3000 ] || fail "u2 was answered after $ms ms"
    wait_until 3 _backends_is "$u1" 0 # u1's idle server was evicted
    grep -q "evicted: max_db_connections" "$PF_LOG" || fail "no eviction logged"
    pf_stop
}

test_max_user_connections_evicts_idle_server_of_other_database() {
    local u=maint_evu_$$ r ms
    _role "$u"
    pf_start "[databases]" "maint = host=127.0.0.1 port=$PGPORT dbname=postgres" \
        "maint2 = host=127.0.0.1 port=$PGPORT dbname=pgfunnel_test" \
        "[pgbouncer]" "max_user_connections = 1" "query_wait_timeout = 5"
    assert_eq 1 "$(_q 'select 1' "$u")"
    read -r r ms < <(_q_ms 'select current_database()' "$u" maint2)
    assert_eq pgfunnel_test "$r" "the query on the other database"
    [ "$ms" -lt 3000 ] || fail "answered after $ms ms"
    wait_until 3 _backends_is "$u" 1 # still one server for the user
    grep -q "evicted: max_user_connections" "$PF_LOG" || fail "no eviction logged"
    pf_stop
}

_admin_col() { # SQL COLUMN ROW-PREFIX: a named column of the console row starting with ROW-PREFIX
    "$PG_BINDIR/psql" -X -A -F'|' -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c "$1" |
        awk -F'|' -v col="$2" -v pat="$3" 'NR==1{for(i=1;i<=NF;i++) if($i==col) c=i; next}
            index($0, pat) == 1 && c {print $c; exit}'
}
_admin_col_is() { [ "$(_admin_col "$1" "$2" "$3")" = "$4" ]; }

# max_db_client_connections / max_user_client_connections (PgBouncer 1.24):
# clients over the limit are refused after login, SHOW DATABASES / USERS count
# them, and a freed place can be taken again.  [users] timeouts apply to the
# clients of that user only.
# timeout: 60
test_client_connection_limits_and_user_timeouts() {
    local u=maint_cl_$$ slow=maint_slow_$$ out jobs=()
    _role "$u"
    _role "$slow"
    pf_start "admin_users = postgres" "[databases]" \
        "maint = host=127.0.0.1 port=$PGPORT dbname=postgres max_db_client_connections=2" \
        "maint2 = host=127.0.0.1 port=$PGPORT dbname=postgres" \
        "[users]" "$u = max_user_client_connections=1" "$slow = query_timeout=1"
    _q 'select pg_sleep(3)' >/dev/null 2>&1 &
    jobs+=($!)
    _q 'select pg_sleep(3)' >/dev/null 2>&1 &
    jobs+=($!)
    wait_until 5 _admin_col_is 'SHOW DATABASES' current_client_connections 'maint|' 2
    out=$(_q 'select 1' 2>&1) && fail "a third client of maint got in: $out"
    assert_contains "$out" "client connections exceeded (max_db_client_connections)"
    assert_eq 2 "$(_admin_col 'SHOW DATABASES' max_client_connections 'maint|')" "max_client_connections"
    # one client of user $u at a time, whichever database
    "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U "$u" -d maint2 -c 'select pg_sleep(3)' >/dev/null 2>&1 &
    jobs+=($!)
    wait_until 5 _admin_col_is 'SHOW USERS' current_client_connections "$u|" 1
    out=$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U "$u" -d maint2 -c 'select 1' 2>&1) &&
        fail "a second client of $u got in: $out"
    assert_contains "$out" "client connections exceeded (max_user_client_connections)"
    assert_eq 1 "$(_admin_col 'SHOW USERS' max_user_client_connections "$u|")" "max_user_client_connections"
    # [users] query_timeout: only for that user
    out=$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U "$slow" -d maint2 -c 'select pg_sleep(3)' 2>&1) &&
        fail "the [users] query_timeout did not apply: $out"
    assert_contains "$out" "query_timeout"
    _wait_pids "${jobs[@]}"
    # the places are free again
    wait_until 5 _admin_col_is 'SHOW DATABASES' current_client_connections 'maint|' 0
    assert_eq 1 "$(_q 'select 1')"
    assert_eq 1 "$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U "$u" -d maint2 -c 'select 1')"
    pf_stop
}
