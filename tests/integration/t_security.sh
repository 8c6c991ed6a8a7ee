# shellcheck shell=bash
# t_security.sh — what an unauthenticated or hostile client can make the
# pooler do (issue #15): no lasting state before authentication, no identity
# confusion through long names or the console's two names, auth_query over a
# few kept connections, no existence oracle; plus the login rules PgBouncer
# users expect (issue #11 item 4): unknown databases, trust with auth_user,
# uncached auth_query, auth_query errors, SASLprep.

FLOOD=$REPO_ROOT/tools/startup_flood.py
# ASan keeps freed memory in a quarantine; keep it small so RSS means live memory
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4"

_userlist() { # USER SECRET … → $TEST_TMP/userlist.txt
    : >"$TEST_TMP/userlist.txt"
    while [ $# -ge 2 ]; do
        printf '"%s" "%s"\n' "$1" "$2" >>"$TEST_TMP/userlist.txt"
        shift 2
    done
}

# _console SQL — the admin console over the unix socket as the pooler's own OS user
_console() {
    "$PG_BINDIR/psql" -X -At -h "$TEST_TMP" -p "$PF_PORT" -U pgbouncer -d pgbouncer -c "$1"
}
_list() { _console "show lists" | awk -F'|' -v k="$1" '$1 == k { print $2 }'; }
_list_le() { [ "$(_list "$1")" -le "$2" ]; } # KEY N, for wait_until (evaluated each time)
_rss_kb() { awk '/^VmRSS/ { print $2 }' "/proc/$PF_PID/status"; }
_metric() { # NAME — its value in /metrics
    curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

# _login USER PASSWORD DB [psql ARG…] — psql over TCP, password from a pgpass file
_login() {
    local user=$1 pw=$2 db=$3 pass=$TEST_TMP/pgpass
    shift 3
    printf '*:*:*:*:%s\n' "$pw" >"$pass"
    chmod 600 "$pass"
    PGPASSFILE=$pass "$PG_BINDIR/psql" -X -At -w -v VERBOSITY=verbose \
        -h 127.0.0.1 -p "$PF_PORT" -U "$user" -d "$db" "$@" 2>&1
}

_auth_query_roles() { # installs sql/auth_query.sql and the roles used here
    if [ "$(pg_psql -c "select to_regprocedure('pgfunnel.get_auth(text)') is not null")" != t ]; then
        pg_psql -q -v ON_ERROR_STOP=1 -f "$REPO_ROOT/sql/auth_query.sql" >/dev/null ||
            fail "could not load sql/auth_query.sql"
    fi
    pg_psql -q -v ON_ERROR_STOP=1 >/dev/null <<'EOF' || fail "could not create the roles"
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pf_sec_auth') THEN CREATE ROLE pf_sec_auth LOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pf_sec_alice') THEN CREATE ROLE pf_sec_alice LOGIN; END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pf_sec_boss') THEN CREATE ROLE pf_sec_boss LOGIN SUPERUSER; END IF;
END $$;
ALTER ROLE pf_sec_auth PASSWORD 'authpw';
ALTER ROLE pf_sec_alice PASSWORD 'alicepw' VALID UNTIL 'infinity';
ALTER ROLE pf_sec_boss PASSWORD 'bosspw';
GRANT USAGE ON SCHEMA pgfunnel TO pf_sec_auth;
GRANT EXECUTE ON FUNCTION pgfunnel.get_auth(text) TO pf_sec_auth;
EOF
}

# auth_query with every database going to the sandbox's postgres database as
# the client's own user (trust on the backend), the auth_user from auth_file
_auth_query_start() { # AUTH_TYPE [LINE…]
    local t=$1
    shift
    _auth_query_roles
    _userlist pf_sec_auth authpw
    # shellcheck disable=SC2016  # $1 is auth_query's parameter
    pf_start "auth_type = $t" "auth_file = $TEST_TMP/userlist.txt" "auth_user = pf_sec_auth" \
        'auth_query = SELECT usename, passwd FROM pgfunnel.get_auth($1)' "$@"
}

# _start_no_wildcard [LINE…] — pf_start without lib.sh's "*" entry
_start_no_wildcard() {
    pf_write_ini "$@"
    sed -i '/^\* = /d' "$PF_INI"
    pf_launch
    wait_until 10 port_open "$PF_PORT"
}

# ---------------------------------------------------------------- #15 item 1

# timeout: 90
test_unauthenticated_startups_leave_no_pools_users_or_databases() {
    HTTP_PORT=$(free_port)
    _userlist postgres pgpw
    pf_start "auth_type = md5" "auth_file = $TEST_TMP/userlist.txt" "admin_http_port = $HTTP_PORT"
    # one real login first, so the pools that should exist do
    assert_eq 1 "$(_login postgres pgpw postgres -c 'select 1')"
    local dbs0 users0 pools0 rss0 m0 out rss1
    dbs0=$(_list databases)
    users0=$(_list users)
    pools0=$(_list pools)
    m0=$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep -vc '_total\|^#\|lag\|callback\|workq\|rss\|seconds')
    rss0=$(_rss_kb)
    # random users and databases of 4,000 bytes (the "*" entry would take any database)
    out=$(python3 "$FLOOD" 127.0.0.1 "$PF_PORT" 1500 --name-len 4000 --wait)
    echo "long names: $out"
    assert_contains "$out" "auth_requests=1500"
    out=$(python3 "$FLOOD" 127.0.0.1 "$PF_PORT" 3000 --name-len 20 --wait)
    echo "short names: $out"
    assert_contains "$out" "auth_requests=3000"
    assert_eq "$dbs0" "$(_list databases)" "databases after the flood"
    assert_eq "$users0" "$(_list users)" "users after the flood"
    assert_eq "$pools0" "$(_list pools)" "pools after the flood"
    assert_eq "$m0" "$(curl -s "http://127.0.0.1:$HTTP_PORT/metrics" | grep -vc '_total\|^#\|lag\|callback\|workq\|rss\|seconds')" \
        "metric lines after the flood"
    wait_until 10 _list_le used_clients 1
    rss1=$(_rss_kb)
    echo "RSS $rss0 -> $rss1 kB over 4,500 unauthenticated startups"
    [ $((rss1 - rss0)) -lt 16384 ] || fail "RSS grew by $((rss1 - rss0)) kB"
    assert_eq 1 "$(_login postgres pgpw postgres -c 'select 1')"
    pf_stop
}

# timeout: 60
test_unused_automatic_databases_and_pools_are_freed() {
    # 12 automatic databases (all served by the sandbox's postgres database)
    _start_no_wildcard "auth_type = trust" "autodb_idle_timeout = 1" "server_idle_timeout = 1" \
        "[databases]" "*= host=127.0.0.1 port=$PGPORT dbname=postgres"
    local i dbs0
    dbs0=$(_list databases)
    for i in $(seq 1 12); do
        assert_eq 1 "$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d "autodb_$i" -c 'select 1' 2>&1)"
    done
    [ "$(_list databases)" -ge $((dbs0 + 12)) ] || fail "expected 12 more databases, have $(_list databases)"
    # idle servers go after 1 s, then the pools and databases after 1 s more
    wait_until 15 _list_le databases "$dbs0"
    assert_eq 0 "$(_list pools)" "pools left"
    assert_eq 0 "$(_list users)" "users left"
    # and they come back on demand
    assert_eq 1 "$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d autodb_1 -c 'select 1')"
    pf_stop
}

# timeout: 40
test_long_names_are_truncated_to_63_bytes_like_postgresql() {
    local long63 long100
    long63=$(printf 'd%.0s' $(seq 1 63))
    long100=$(printf 'd%.0s' $(seq 1 100))
    pf_start "auth_type = trust" "[databases]" "$long63 = host=127.0.0.1 port=$PGPORT dbname=postgres"
    # a 100-byte database name reaches the entry named by its first 63 bytes
    assert_eq postgres "$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d "$long100" -c 'select current_database()' 2>&1)"
    # the client was known by the truncated name, and no database got the long one
    assert_contains "$(pf_logs)" "postgres@$long63 "
    assert_not_contains "$(_console 'show databases')" "$long100"
    pf_stop
}

# ---------------------------------------------------------------- #15 item 2

# timeout: 60
test_auth_query_long_database_name_does_not_lend_a_secret_to_another_user() {
    local long
    long=$(printf 'x%.0s' $(seq 1 600))
    _auth_query_start md5 "[databases]" "* = host=127.0.0.1 port=$PGPORT dbname=postgres"
    # alice logs in with a 600-byte database name ...
    assert_eq pf_sec_alice "$(_login pf_sec_alice alicepw "$long" -c 'select current_user')"
    # ... which must not make her password open the superuser's account
    local out
    if out=$(_login pf_sec_boss alicepw "$long" -c 'select current_user'); then
        fail "logged in as pf_sec_boss with alice's password: $out"
    fi
    assert_contains "$out" 'password authentication failed for user "pf_sec_boss"'
    assert_eq pf_sec_boss "$(_login pf_sec_boss bosspw "$long" -c 'select current_user')"
    pf_stop
}

# ---------------------------------------------------------------- #15 item 3

# timeout: 40
test_hba_rule_for_either_console_name_applies_to_both() {
    _userlist postgres pgpw
    printf '%s\n' "host pgbouncer all 127.0.0.1/32 reject" "host all all 127.0.0.1/32 trust" \
        "local all all trust" >"$TEST_TMP/hba.conf"
    pf_start "auth_type = hba" "auth_hba_file = $TEST_TMP/hba.conf" "auth_file = $TEST_TMP/userlist.txt"
    local db out
    for db in pgbouncer pgfunnel; do
        if out=$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d "$db" -c 'show version' 2>&1); then
            fail "console $db over TCP was allowed: $out"
        fi
        assert_contains "$out" "no pg_hba.conf entry"
    done
    pf_alive || fail "pgfunnel died"
    # ordinary databases keep their rule
    assert_eq 1 "$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d postgres -c 'select 1')"
    pf_stop
    printf '%s\n' "host pgfunnel all 127.0.0.1/32 reject" "host all all 127.0.0.1/32 trust" >"$TEST_TMP/hba.conf"
    pf_start "auth_type = hba" "auth_hba_file = $TEST_TMP/hba.conf" "auth_file = $TEST_TMP/userlist.txt"
    if out=$("$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c 'shutdown' 2>&1); then
        fail "console pgbouncer over TCP was allowed: $out"
    fi
    pf_alive || fail "pgfunnel was shut down through the other console name"
    pf_stop
}

# ---------------------------------------------------------------- #15 item 5

# timeout: 90
test_auth_query_lookups_share_a_few_kept_connections() {
    HTTP_PORT=$(free_port)
    _auth_query_start md5 "admin_http_port = $HTTP_PORT"
    local out peak=0 n i
    python3 "$FLOOD" 127.0.0.1 "$PF_PORT" 500 --database postgres --wait >"$TEST_TMP/flood.out" &
    local fpid=$!
    for i in $(seq 1 40); do
        n=$(pg_psql -c "select count(*) from pg_stat_activity where application_name = 'pgfunnel auth_query'")
        [ "$n" -gt "$peak" ] && peak=$n
        kill -0 "$fpid" 2>/dev/null || break
        sleep 0.1
    done
    wait "$fpid" || fail "flood failed: $(cat "$TEST_TMP/flood.out")"
    out=$(cat "$TEST_TMP/flood.out")
    echo "$out; peak auth_query sessions $peak"
    assert_contains "$out" "auth_requests=500"
    _lookups_done() { [ "$(_metric pgfunnel_auth_query_lookups_total)" -ge 500 ]; }
    wait_until 20 _lookups_done
    local connects
    connects=$(_metric pgfunnel_auth_query_connects_total)
    echo "auth_query connections opened for 500 lookups: $connects"
    [ "$connects" -le 4 ] || fail "$connects backend connections for 500 lookups"
    [ "$peak" -le 4 ] || fail "$peak concurrent auth_query sessions"
    # and the kept connections still serve real logins
    assert_eq pf_sec_alice "$(_login pf_sec_alice alicepw postgres -c 'select current_user')"
    pf_stop
}

# ---------------------------------------------------------------- #15 item 7

# timeout: 40
test_scram_verifiers_of_plaintext_secrets_are_derived_before_the_first_login() {
    HTTP_PORT=$(free_port)
    _userlist postgres pgpw other otherpw
    pf_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt" "admin_http_port = $HTTP_PORT"
    # both plaintext secrets are derived at load, on the workers
    _derived() { [ "$(_metric pgfunnel_client_auth_scram_derivations_total)" -ge 2 ]; }
    wait_until 10 _derived
    assert_eq 1 "$(_login postgres pgpw postgres -c 'select 1')"
    assert_eq 2 "$(_metric pgfunnel_client_auth_scram_derivations_total)" "derivations after the first login"
    assert_eq 1 "$(_metric pgfunnel_client_auth_scram_cache_hits_total)" "the first login found its verifier"
    pf_stop
}

# ---------------------------------------------------------------- #11 item 4

# timeout: 40
test_unknown_database_gets_the_password_exchange_first() {
    _userlist postgres pgpw
    _start_no_wildcard "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt"
    local out
    # before authentication nothing tells whether the database exists
    out=$(_login postgres wrong nosuchdb -c 'select 1') && fail "login succeeded: $out"
    assert_contains "$out" 'password authentication failed for user "postgres"'
    out=$(_login nobody wrong nosuchdb -c 'select 1') && fail "login succeeded: $out"
    assert_contains "$out" 'password authentication failed for user "nobody"'
    # an authenticated client learns it (3D000: libpq does not print it for a failed login)
    out=$(_login postgres pgpw nosuchdb -c 'select 1') && fail "login succeeded: $out"
    assert_contains "$out" "no such database: nosuchdb"
    pf_stop
}

# timeout: 40
test_trust_with_auth_user_looks_users_up_with_auth_query() {
    _auth_query_start trust
    # not in auth_file, found by auth_query: trusted
    assert_eq pf_sec_alice "$("$PG_BINDIR/psql" -X -At -w -h 127.0.0.1 -p "$PF_PORT" -U pf_sec_alice -d postgres -c 'select current_user' 2>&1)"
    # the raw protocol shows the SQLSTATE (libpq does not print it for a failed login)
    local out
    out=$("$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --param user=pf_sec_nobody 2>&1)
    assert_contains "$out" 'E FATAL 28000 role "pf_sec_nobody" does not exist'
    # a role without a password exists: trust lets it in (as PgBouncer)
    pg_psql -q -c "do \$\$ begin create role pf_sec_nopw login; exception when duplicate_object then null; end \$\$"
    assert_eq pf_sec_nopw "$("$PG_BINDIR/psql" -X -At -w -h 127.0.0.1 -p "$PF_PORT" -U pf_sec_nopw -d postgres -c 'select current_user' 2>&1)"
    pf_stop
    # with a password method it cannot log in: the same 28P01 as a wrong password
    _auth_query_start md5
    out=$(_login pf_sec_nopw whatever postgres -c 'select 1') && fail "a role without a password logged in with md5: $out"
    assert_contains "$out" 'password authentication failed for user "pf_sec_nopw"'
    pf_stop
}

# auth_dbname names a [databases] entry (PgBouncer's meaning): auth_query runs
# on that entry's server and database; a disabled or unknown entry, or the
# console, is a configuration error the client sees as "bouncer config error".
# timeout: 40
test_auth_dbname_names_a_databases_entry() {
    local out
    _auth_query_start md5 "auth_dbname = authdb" "admin_users = pf_sec_auth" "stats_users = pf_sec_alice" \
        "[databases]" "authdb = host=127.0.0.1 port=$PGPORT dbname=postgres" \
        "appdb = host=127.0.0.1 port=$PGPORT dbname=pgfunnel_test"
    # pgfunnel.get_auth exists in postgres only: the lookup ran through authdb
    assert_eq pgfunnel_test "$(_login pf_sec_alice alicepw appdb -c 'select current_database()')"
    # the console's users too (a stats user that only auth_query knows)
    assert_contains "$(_login pf_sec_alice alicepw pgbouncer -c 'SHOW STATE')" "active|yes"
    out=$(_login pf_sec_alice wrongpw pgbouncer -c 'SHOW STATE') && fail "console login with a wrong password: $out"
    _login pf_sec_auth authpw pgbouncer -c 'DISABLE authdb' >/dev/null
    out=$("$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --param user=pf_sec_alice --param database=appdb 2>&1)
    assert_contains "$out" 'E FATAL 08P01 bouncer config error'
    wait_until 3 grep -q 'authentication database "authdb" is disabled' "$PF_LOG"
    _login pf_sec_auth authpw pgbouncer -c 'ENABLE authdb' >/dev/null
    assert_eq pgfunnel_test "$(_login pf_sec_alice alicepw appdb -c 'select current_database()')"
    pf_stop
    # an entry that does not exist (no "*" to serve it)
    _userlist pf_sec_auth authpw
    # shellcheck disable=SC2016  # $1 is auth_query's parameter
    _start_no_wildcard "auth_type = md5" "auth_file = $TEST_TMP/userlist.txt" "auth_user = pf_sec_auth" \
        'auth_query = SELECT usename, passwd FROM pgfunnel.get_auth($1)' "auth_dbname = nosuchentry"
    out=$("$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --param user=pf_sec_alice 2>&1)
    assert_contains "$out" 'E FATAL 08P01 bouncer config error'
    wait_until 3 grep -q 'authentication database "nosuchentry" is not configured' "$PF_LOG"
    pf_stop
    # the console is no auth_dbname: refused at load, with file:line
    printf '[databases]\n* = host=127.0.0.1\n[pgbouncer]\nlisten_port = 1\nauth_dbname = pgbouncer\n' >"$TEST_TMP/bad.ini"
    out=$("$PGFUNNEL_BIN" --check "$TEST_TMP/bad.ini" 2>&1) && fail "auth_dbname = pgbouncer was accepted: $out"
    assert_contains "$out" "bad.ini:5: cannot use the reserved \"pgbouncer\" database as an auth_dbname"
}

# An auth_query that fails as a query (not as a connection) is the pooler's
# configuration: logged, and the client is told only "bouncer config error".
test_auth_query_sql_error_is_not_shown_to_the_client() {
    _auth_query_roles
    _userlist pf_sec_auth authpw
    # shellcheck disable=SC2016  # $1 is auth_query's parameter
    pf_start "auth_type = md5" "auth_file = $TEST_TMP/userlist.txt" "auth_user = pf_sec_auth" \
        'auth_query = SELECT usename, passwd FROM pf_sec_no_such_table WHERE usename = $1'
    local out
    out=$("$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --param user=pf_sec_alice 2>&1)
    assert_contains "$out" 'E FATAL 08P01 bouncer config error'
    assert_not_contains "$out" "pf_sec_no_such_table"
    wait_until 3 grep -q 'auth_query failed: relation "pf_sec_no_such_table" does not exist' "$PF_LOG"
    pf_stop
}

# timeout: 40
test_auth_query_results_are_not_cached_across_logins() {
    _auth_query_start scram-sha-256
    assert_eq pf_sec_alice "$(_login pf_sec_alice alicepw postgres -c 'select current_user')"
    pg_psql -q -c "ALTER ROLE pf_sec_alice PASSWORD 'alicepw2'"
    local out
    out=$(_login pf_sec_alice alicepw postgres -c 'select 1') && fail "the old password still works: $out"
    assert_contains "$out" "password authentication failed"
    assert_eq pf_sec_alice "$(_login pf_sec_alice alicepw2 postgres -c 'select current_user')"
    pg_psql -q -c "ALTER ROLE pf_sec_alice VALID UNTIL '2001-01-01'"
    out=$(_login pf_sec_alice alicepw2 postgres -c 'select 1') && fail "an expired role logged in: $out"
    assert_contains "$out" "password authentication failed"
    pg_psql -q -c "ALTER ROLE pf_sec_alice PASSWORD 'alicepw' VALID UNTIL 'infinity'"
    pf_stop
}

# timeout: 40
test_auth_query_connection_failure_reaches_the_client() {
    _auth_query_start md5 "auth_dbname = pf_sec_no_such_db"
    local out
    out=$(_login pf_sec_alice alicepw postgres -c 'select 1') && fail "login succeeded: $out"
    assert_contains "$out" 'database "pf_sec_no_such_db" does not exist'
    assert_not_contains "$out" "password authentication failed"
    # with its SQLSTATE, before any password is asked for
    out=$("$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --param user=pf_sec_alice 2>&1)
    assert_contains "$out" 'E FATAL 3D000 auth_query connection failed: database "pf_sec_no_such_db" does not exist'
    assert_not_contains "$out" "R "
    pf_stop
}

# timeout: 40
test_scram_passwords_are_saslprepped_like_postgresql() {
    # U+2168 ROMAN NUMERAL NINE becomes "IX" under SASLprep's NFKC; U+00AD (soft
    # hyphen) maps to nothing.  libpq prepares the password it sends the same way.
    local pw=$'\u2168\u00adpw'
    _userlist pf_sec_prep "$pw"
    pf_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt" \
        "[databases]" "postgres = host=127.0.0.1 port=$PGPORT dbname=postgres user=postgres"
    assert_eq postgres "$(_login pf_sec_prep "$pw" postgres -c 'select current_user')"
    # the prepared form is the same password
    assert_eq postgres "$(_login pf_sec_prep "IXpw" postgres -c 'select current_user')"
    # a password SASLprep refuses (a prohibited character) is used as it is, as PostgreSQL does
    pf_stop
    pw=$'pw\u0007x\u00e9'
    _userlist pf_sec_prep "$pw"
    pf_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt" \
        "[databases]" "postgres = host=127.0.0.1 port=$PGPORT dbname=postgres user=postgres"
    assert_eq postgres "$(_login pf_sec_prep "$pw" postgres -c 'select current_user')"
    pf_stop
}
