# shellcheck shell=bash
# t_auth.sh — client authentication (auth_type trust/any/plain/md5/scram-sha-256/
# hba, auth_file, auth_query), backend login with secrets from auth_file, and
# the login storm (SCRAM logins must not stall an already connected client).
# TLS, cert and hostssl/hostnossl live in t_tls.sh.

# ---------------------------------------------------------------- helpers

# _userlist LINE… — writes $TEST_TMP/userlist.txt ("user" "secret" per argument pair)
_userlist() {
    : >"$TEST_TMP/userlist.txt"
    while [ $# -ge 2 ]; do
        printf '"%s" "%s"\n' "$1" "$2" >>"$TEST_TMP/userlist.txt"
        shift 2
    done
}

# _pgpass PASSWORD — prints the path of a pgpass file giving PASSWORD for everything
_pgpass() {
    local f=$TEST_TMP/pgpass pw=${1//\\/\\\\}
    printf '*:*:*:*:%s\n' "${pw//:/\\:}" >"$f"
    chmod 600 "$f"
    echo "$f"
}

# _login USER PASSWORD DB [psql ARG…] — psql over TCP through pgfunnel, never prompts;
# prints stdout+stderr, returns psql's status.
# libpq shows no SQLSTATE for a failed connection, but when the password came
# from a pgpass file and the server's error is SQLSTATE 28P01 (and only then)
# it adds 'password retrieved from file' — so the password goes in a pgpass file
# and _wrong_password looks for that line.
_login() {
    local user=$1 pw=$2 db=$3 passfile=$TEST_TMP/nopass
    shift 3
    if [ -n "$pw" ]; then passfile=$(_pgpass "$pw"); else : >"$passfile" && chmod 600 "$passfile"; fi
    PGPASSFILE=$passfile "$PG_BINDIR/psql" -X -At -w -v VERBOSITY=verbose \
        -h 127.0.0.1 -p "$PF_PORT" -U "$user" -d "$db" "$@" 2>&1
}

# _login_ok USER PASSWORD DB — asserts the login works and the session is USER's
# (or EXPECT_USER's, for databases with a forced user)
_login_ok() {
    local out
    out=$(_login "$1" "$2" "$3" -c "select current_user")
    assert_eq "${EXPECT_USER:-$1}" "$out" "login of $1 to $3"
}

# _login_refused USER PASSWORD DB NEEDLE — asserts the login fails with NEEDLE in the error
_login_refused() {
    local out
    if out=$(_login "$1" "$2" "$3" -c "select 1"); then
        fail "login of $1 to $3 unexpectedly succeeded: $out"
    fi
    assert_contains "$out" "$4" "refusal of $1 to $3"
}

# _wrong_password USER DB — a wrong password fails with 28P01
_wrong_password() {
    local out
    if out=$(_login "$1" "certainly-wrong" "$2" -c "select 1"); then
        fail "wrong password for $1 was accepted: $out"
    fi
    # libpq's sign of SQLSTATE 28P01 (see _login)
    assert_contains "$out" "password retrieved from file" "SQLSTATE 28P01 for a wrong password"
    assert_contains "$out" "password authentication failed for user \"$1\""
}

# _pgbench USER PASSWORD DB — 4 clients × 50 transactions of SELECT 1 through pgfunnel
_pgbench() {
    local out
    echo "SELECT 1;" >"$TEST_TMP/select1.sql"
    out=$(PGPASSWORD=$2 pgbench -n -f "$TEST_TMP/select1.sql" -c 4 -j 2 -t 50 \
        -h 127.0.0.1 -p "$PF_PORT" -U "$1" "$3" 2>&1) ||
        fail "pgbench as $1 failed: $(tail -n 5 <<<"$out")"
    assert_contains "$out" "number of transactions actually processed: 200/200" "pgbench as $1"
}

# _secret ROLE — the role's secret in pg_authid
_secret() {
    pg_psql -c "select rolpassword from pg_authid where rolname = '$1'"
}

# _md5 PASSWORD USER — PostgreSQL's md5 secret
_md5() {
    printf 'md5%s' "$(printf '%s%s' "$1" "$2" | md5sum | cut -d' ' -f1)"
}

# database entry "fwd": client logs in as anyone, the server connection is postgres (trust)
_FWD_DB="fwd = host=127.0.0.1 port=$PGPORT dbname=postgres user=postgres"

# _auth_query_setup — installs sql/auth_query.sql once per run, creates
# the auth_user pf_aq_auth and the roles pf_aq_ok (valid) and pf_aq_expired
_auth_query_setup() {
    local have
    have=$(pg_psql -c "select to_regprocedure('pgfunnel.get_auth(text)') is not null")
    if [ "$have" != t ]; then
        pg_psql -q -v ON_ERROR_STOP=1 -f "$REPO_ROOT/sql/auth_query.sql" >/dev/null ||
            fail "could not load sql/auth_query.sql"
    fi
    pg_psql -q -v ON_ERROR_STOP=1 >/dev/null <<'EOF' || fail "could not create the auth_query roles"
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pf_aq_auth') THEN
    CREATE ROLE pf_aq_auth LOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pf_aq_ok') THEN
    CREATE ROLE pf_aq_ok LOGIN;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pf_aq_expired') THEN
    CREATE ROLE pf_aq_expired LOGIN;
  END IF;
END $$;
ALTER ROLE pf_aq_auth PASSWORD 'authpw';
ALTER ROLE pf_aq_ok PASSWORD 'okpw' VALID UNTIL 'infinity';
ALTER ROLE pf_aq_expired PASSWORD 'expiredpw' VALID UNTIL '2001-01-01';
GRANT USAGE ON SCHEMA pgfunnel TO pf_aq_auth;
GRANT EXECUTE ON FUNCTION pgfunnel.get_auth(text) TO pf_aq_auth;
EOF
    # pgfunnel logs in as the auth_user with its plaintext password from auth_file
    _userlist pf_aq_auth authpw
}

_auth_query_start() { # AUTH_TYPE
    _auth_query_setup
    # shellcheck disable=SC2016  # $1 is auth_query's parameter, not a shell variable
    pf_start "auth_type = $1" "auth_file = $TEST_TMP/userlist.txt" \
        "auth_user = pf_aq_auth" \
        'auth_query = SELECT usename, passwd FROM pgfunnel.get_auth($1)'
}

_hba_start() { # RULE… — auth_type hba with these pg_hba lines
    printf '%s\n' "$@" >"$TEST_TMP/hba.conf"
    pf_start "auth_type = hba" "auth_hba_file = $TEST_TMP/hba.conf" \
        "auth_file = $TEST_TMP/userlist.txt"
}

# ---------------------------------------------------------------- trust / any

# timeout: 40
test_trust_admits_psql_and_pgbench_without_password() {
    pf_start "auth_type = trust"
    _login_ok postgres "" postgres
    _pgbench postgres "" postgres
    pf_stop
}

# timeout: 40
test_trust_with_auth_file_refuses_user_not_in_it() {
    _userlist postgres "" md5user md5pass
    pf_start "auth_type = trust" "auth_file = $TEST_TMP/userlist.txt"
    _login_ok postgres "" postgres
    _login_ok md5user "" postgres
    # pf_other is not in auth_file (and would be trusted by the server)
    pg_psql -q -c "do \$\$ begin if not exists (select 1 from pg_roles where rolname='pf_other') then create role pf_other login; end if; end \$\$" ||
        fail "create role pf_other"
    _login_refused pf_other "" postgres "pf_other"
    pf_stop
}

# timeout: 40
test_any_admits_any_password_psql_and_pgbench() {
    pf_start "auth_type = any"
    _login_ok postgres "whatever-password" postgres
    _pgbench postgres "whatever" postgres
    pf_stop
}

# ---------------------------------------------------------------- plain / md5 / scram

# timeout: 40
test_plain_logs_in_with_auth_file_password_wrong_password_is_28P01() {
    _userlist md5user md5pass scramuser scrampass
    pf_start "auth_type = plain" "auth_file = $TEST_TMP/userlist.txt"
    # the server side needs md5 / SCRAM: pgfunnel uses the plaintext from auth_file
    _login_ok md5user md5pass postgres
    _login_ok scramuser scrampass pgfunnel_test
    _pgbench md5user md5pass postgres
    _wrong_password md5user postgres
    _wrong_password scramuser postgres
    pf_stop
}

# timeout: 40
test_plain_checks_password_against_md5_and_scram_secrets() {
    pg_psql -q -c "do \$\$ begin if not exists (select 1 from pg_roles where rolname='pf_plainscram') then create role pf_plainscram login; end if; end \$\$" -c "alter role pf_plainscram password 'ps-pw'" ||
        fail "create role pf_plainscram"
    _userlist postgres "$(_md5 pgpw postgres)" pf_plainscram "$(_secret pf_plainscram)"
    pf_start "auth_type = plain" "auth_file = $TEST_TMP/userlist.txt"
    _login_ok postgres pgpw postgres
    _login_ok pf_plainscram ps-pw postgres
    _wrong_password postgres postgres
    _wrong_password pf_plainscram postgres
    pf_stop
}

# timeout: 40
test_md5_logs_in_with_plaintext_and_md5_secrets_wrong_password_is_28P01() {
    _userlist md5user md5pass postgres "$(_md5 pgpw postgres)"
    pf_start "auth_type = md5" "auth_file = $TEST_TMP/userlist.txt"
    _login_ok md5user md5pass postgres
    _login_ok postgres pgpw postgres
    _pgbench md5user md5pass postgres
    _pgbench postgres pgpw postgres
    _wrong_password md5user postgres
    _wrong_password postgres postgres
    pf_stop
}

# timeout: 40
test_md5_with_scram_secret_on_file_upgrades_to_scram() {
    local secret out
    secret=$(_secret scramuser)
    assert_contains "$secret" "SCRAM-SHA-256\$" "scramuser's secret in pg_authid"
    _userlist scramuser "$secret" md5user md5pass
    pf_start "auth_type = md5" "auth_file = $TEST_TMP/userlist.txt" "[databases]" "$_FWD_DB"
    [ -x "$TOOLS_DIR/pq_startup" ] || fail "$TOOLS_DIR/pq_startup missing"
    # on the wire: AuthenticationSASL (10) for the SCRAM secret, AuthenticationMD5Password (5)
    # for a plaintext one
    out=$("$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --param user=scramuser --param database=fwd --timeout 1)
    assert_eq "R 10" "$(head -n 1 <<<"$out")" "authentication request for a SCRAM secret under auth_type md5"
    out=$("$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --param user=md5user --param database=fwd --timeout 1)
    assert_eq "R 5" "$(head -n 1 <<<"$out")" "authentication request for a plaintext secret under auth_type md5"
    # an md5 exchange cannot be checked against a SCRAM secret: only SCRAM can log in
    EXPECT_USER=postgres _login_ok scramuser scrampass fwd
    _wrong_password scramuser fwd
    pf_stop
}

# timeout: 40
test_scram_logs_in_with_plaintext_secret_wrong_password_is_28P01() {
    _userlist scramuser scrampass md5user md5pass
    pf_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt"
    _login_ok scramuser scrampass postgres
    _login_ok md5user md5pass pgfunnel_test
    _pgbench scramuser scrampass postgres
    _wrong_password scramuser postgres
    _wrong_password md5user postgres
    pf_stop
}

# timeout: 40
test_scram_logs_in_with_scram_secret_from_pg_authid() {
    _userlist scramuser "$(_secret scramuser)"
    pf_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt" "[databases]" "$_FWD_DB"
    EXPECT_USER=postgres _login_ok scramuser scrampass fwd
    _pgbench scramuser scrampass fwd
    _wrong_password scramuser fwd
    pf_stop
}

# timeout: 40
test_scram_unknown_user_fails_like_wrong_password() {
    _userlist scramuser scrampass
    pf_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt"
    _wrong_password nosuchuser postgres
    pf_stop
}

# ---------------------------------------------------------------- backend login

# timeout: 40
test_backend_login_uses_plaintext_password_from_auth_file() {
    # clients are trusted; the server demands md5 / SCRAM for these roles
    _userlist md5user md5pass scramuser scrampass
    pf_start "auth_type = trust" "auth_file = $TEST_TMP/userlist.txt"
    _login_ok md5user "" postgres
    _login_ok scramuser "" postgres
    pf_stop
}

# timeout: 40
test_backend_login_without_any_secret_says_what_to_configure() {
    local out
    # trusted clients, no auth_file: pgfunnel has nothing to answer the server with
    # (md5/SCRAM secrets on file do work: t_passthrough.sh)
    pf_start "auth_type = trust"
    for u in scramuser md5user; do
        if out=$(_login "$u" "" postgres -c "select 1"); then
            fail "login of $u succeeded although pgfunnel has no backend password: $out"
        fi
        assert_contains "$out" "the server requires a password for user \"$u\"" "error of $u"
        case $out in
            *auth_file* | *password=*) ;;
            *) fail "error for $u does not say what to configure: $out" ;;
        esac
    done
    pf_alive || fail "pgfunnel died"
    pf_stop
}

# timeout: 40
test_forced_user_database_password_is_used_for_client_and_server() {
    pf_start "auth_type = md5" \
        "[databases]" "asscram = host=127.0.0.1 port=$PGPORT dbname=postgres user=scramuser password=scrampass"
    _login_ok scramuser scrampass asscram
    _wrong_password scramuser asscram
    pf_stop
}

# ---------------------------------------------------------------- auth_query

# timeout: 40
test_auth_query_logs_in_role_created_in_test() {
    _auth_query_start scram-sha-256
    _login_ok pf_aq_ok okpw postgres
    _pgbench pf_aq_ok okpw postgres
    _wrong_password pf_aq_ok postgres
    pf_stop
}

# timeout: 40
test_auth_query_md5_auth_type_upgrades_scram_secret() {
    _auth_query_start md5
    _login_ok pf_aq_ok okpw postgres
    _wrong_password pf_aq_ok postgres
    pf_stop
}

# timeout: 40
test_auth_query_refuses_expired_role_like_wrong_password() {
    local expired wrong
    _auth_query_start scram-sha-256
    expired=$(_login pf_aq_expired expiredpw postgres -c "select 1") &&
        fail "expired role logged in: $expired"
    assert_contains "$expired" "password retrieved from file" "SQLSTATE 28P01 (see _login)"
    assert_contains "$expired" 'password authentication failed for user "pf_aq_expired"'
    wrong=$(_login pf_aq_expired wrongpw postgres -c "select 1") &&
        fail "expired role logged in with a wrong password: $wrong"
    assert_eq "$wrong" "$expired" "expired and wrong-password errors must be identical"
    # also unknown to auth_query: same message
    _wrong_password pf_aq_nosuch postgres
    pf_stop
}

# ---------------------------------------------------------------- hba

# timeout: 40
test_hba_local_rule_applies_to_unix_socket_only() {
    local out
    _userlist postgres ""
    _hba_start "local all postgres trust" "host all all 127.0.0.1/32 reject"
    out=$("$PG_BINDIR/psql" -X -At -w -h "$TEST_TMP" -p "$PF_PORT" -U postgres -d postgres \
        -c "select current_user" 2>&1)
    assert_eq postgres "$out" "unix socket login (local rule)"
    _login_refused postgres "" postgres "no pg_hba.conf entry"
    pf_stop
}

# timeout: 40
test_hba_host_rule_with_md5_and_scram_methods_checks_passwords() {
    _userlist md5user md5pass scramuser scrampass postgres ""
    _hba_start "local all all reject" \
        "host all md5user 127.0.0.1/32 md5" \
        "host all scramuser 127.0.0.1/32 scram-sha-256" \
        "host all postgres 127.0.0.1/32 trust"
    _login_ok md5user md5pass postgres
    _login_ok scramuser scrampass postgres
    _login_ok postgres "" postgres
    _pgbench scramuser scrampass postgres
    _wrong_password md5user postgres
    _wrong_password scramuser postgres
    pf_stop
}

# timeout: 40
test_hba_database_and_user_lists_allow_and_reject_as_written() {
    _userlist md5user md5pass scramuser scrampass postgres ""
    _hba_start "host pgfunnel_test md5user,scramuser 127.0.0.1/32 scram-sha-256" \
        "host postgres,pgfunnel_test postgres 127.0.0.1/32 trust" \
        "host all all 0.0.0.0/0 reject"
    _login_ok md5user md5pass pgfunnel_test
    _login_ok scramuser scrampass pgfunnel_test
    _login_ok postgres "" postgres
    _login_ok postgres "" pgfunnel_test
    _login_refused md5user md5pass postgres "no pg_hba.conf entry"
    _login_refused scramuser scrampass postgres "no pg_hba.conf entry"
    pf_stop
}

# timeout: 40
test_hba_cidr_matches_only_addresses_inside_the_network() {
    _userlist postgres ""
    # 127.0.0.1 is outside 127.0.0.2/31 and 10/8, inside 127.0.0.0/30
    _hba_start "host all all 10.0.0.0/8 trust" \
        "host all all 127.0.0.2/31 trust" \
        "host all all 127.0.0.0 255.255.255.252 reject"
    _login_refused postgres "" postgres "no pg_hba.conf entry"
    pf_stop
    _hba_start "host all all 127.0.0.2/31 reject" \
        "host all all 127.0.0.0/30 trust"
    _login_ok postgres "" postgres
    pf_stop
}

# timeout: 40
test_hba_no_matching_rule_is_rejected() {
    _userlist postgres ""
    _hba_start "host all md5user 127.0.0.1/32 trust"
    _login_refused postgres "" postgres "no pg_hba.conf entry"
    pf_stop
}

# ---------------------------------------------------------------- login storm

# timeout: 60
test_login_storm_200_scram_logins_keep_busy_client_served() {
    local out storm busy p99
    [ -x "$TOOLS_DIR/login_storm" ] || fail "$TOOLS_DIR/login_storm missing (make build/tools/login_storm)"
    _userlist scramuser scrampass postgres pgpw
    pf_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt" \
        "max_client_conn = 1000" "default_pool_size = 5"
    storm="host=127.0.0.1 port=$PF_PORT dbname=postgres user=scramuser password=scrampass"
    busy="host=127.0.0.1 port=$PF_PORT dbname=postgres user=postgres password=pgpw"
    out=$("$TOOLS_DIR/login_storm" "$storm" "$busy" 200 2>&1)
    echo "$out"
    v() { sed -n "s/^$1=//p" <<<"$out"; }
    assert_eq 200 "$(v logins_ok)" "successful storm logins"
    assert_eq 0 "$(v logins_failed)" "failed storm logins"
    assert_eq 0 "$(v busy_failed)" "failed busy queries"
    if ! [ "$(v busy_queries)" -gt 0 ] 2>/dev/null; then fail "no busy queries ran"; fi
    p99=$(v busy_p99_us)
    # A very loose bound: 1 s on an idle machine.  The 200 client threads, PostgreSQL
    # and pgfunnel share the CPUs, so on a loaded host (load average above the CPU
    # count) the busy client is starved by others too: the bound scales with the load.
    local load cpus factor limit
    load=$(cut -d' ' -f1 /proc/loadavg)
    cpus=$(nproc)
    factor=$(((${load%.*} + cpus - 1) / cpus))
    [ "$factor" -ge 1 ] || factor=1
    limit=$((factor * 1000000))
    echo "p99 bound ${limit}us (load average $load on $cpus CPUs)"
    if ! [ "$p99" -lt "$limit" ] 2>/dev/null; then fail "busy client's p99 latency '${p99}'us >= ${limit}us"; fi
    echo "LOGIN_STORM rate=$(v login_rate_per_s)/s busy p50=$(v busy_p50_us)us p99=${p99}us max=$(v busy_max_us)us queries=$(v busy_queries)"
    pf_alive || fail "pgfunnel died"
    pf_stop
}
