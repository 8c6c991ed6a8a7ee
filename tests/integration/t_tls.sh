# shellcheck shell=bash
# t_tls.sh — TLS to clients (client_tls_*), SCRAM channel binding, certificate
# authentication, hostssl/hostnossl hba rules, and TLS to servers
# (server_tls_sslmode) against a second, hostssl-only sandbox cluster; admin
# SET / RELOAD of the TLS options.

# shellcheck source=tests/integration/session.sh
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"

# ---------------------------------------------------------------- helpers

CERTS=$TEST_TMP/certs

_certs() { # once per test
    [ -f "$CERTS/ca.crt" ] && return 0
    bash "$REPO_ROOT/tools/mkcerts.sh" "$CERTS" || fail "tools/mkcerts.sh failed"
}

_userlist() { # USER SECRET …
    : >"$TEST_TMP/userlist.txt"
    while [ $# -ge 2 ]; do
        printf '"%s" "%s"\n' "$1" "$2" >>"$TEST_TMP/userlist.txt"
        shift 2
    done
}

# _tls_start [LINE…] — pgfunnel with client TLS (server.crt/key from mkcerts); default
# client_tls_sslmode = require unless a line sets it
_tls_start() {
    local mode="client_tls_sslmode = require" l
    for l in "$@"; do case $l in client_tls_sslmode*) mode="" ;; esac; done
    _certs
    pf_start ${mode:+"$mode"} "client_tls_cert_file = $CERTS/server.crt" \
        "client_tls_key_file = $CERTS/server.key" "$@"
}

# _pgpass PASSWORD — a pgpass file for everything (libpq then reports SQLSTATE
# 28P01 as 'password retrieved from file', see t_auth.sh)
_pgpass() {
    local f=$TEST_TMP/pgpass pw=${1//\\/\\\\}
    printf '*:*:*:*:%s\n' "${pw//:/\\:}" >"$f"
    chmod 600 "$f"
    echo "$f"
}

# _conn CONNINFO [psql ARG…] — psql through pgfunnel; CONNINFO is appended to
# host/port/dbname defaults (later keywords win); a "password=X" word in it is
# moved into a pgpass file.  Prints stdout+stderr, returns psql's status.
_conn() {
    local ci=$1 w rest="" pw=""
    shift
    for w in $ci; do
        case $w in password=*) pw=${w#password=} ;; *) rest="$rest $w" ;; esac
    done
    local passfile=$TEST_TMP/nopass
    if [ -n "$pw" ]; then passfile=$(_pgpass "$pw"); else : >"$passfile" && chmod 600 "$passfile"; fi
    PGPASSFILE=$passfile "$PG_BINDIR/psql" -X -At -w \
        "host=127.0.0.1 port=$PF_PORT dbname=postgres user=postgres$rest" "$@" 2>&1
}

# _conn_ok CONNINFO EXPECTED_USER — login works, runs as that user, over TLS
# unless NOSSL=1
_conn_ok() {
    local out
    out=$(_conn "$1" -c "select current_user" -c '\conninfo') ||
        fail "connection '$1' failed: $out"
    assert_eq "$2" "$(head -n 1 <<<"$out")" "current_user for '$1'"
    if [ "${NOSSL:-0}" = 1 ]; then
        assert_not_contains "$out" "SSL connection" "'$1' must not use TLS"
    else
        assert_contains "$out" "SSL connection (protocol: TLS" "'$1' must use TLS"
    fi
}

# _conn_refused CONNINFO NEEDLE
_conn_refused() {
    local out
    if out=$(_conn "$1" -c "select 1"); then
        fail "connection '$1' unexpectedly succeeded: $out"
    fi
    assert_contains "$out" "$2" "refusal of '$1'"
}

# _pgbench_tls [ENV=VALUE…] -- [pgbench ARG…] — 4×50 SELECT 1 through pgfunnel
_pgbench_tls() {
    local envs=() out
    while [ $# -gt 0 ] && [ "$1" != -- ]; do envs+=("$1"); shift; done
    shift
    echo "SELECT 1;" >"$TEST_TMP/select1.sql"
    out=$(env "${envs[@]}" "$PG_BINDIR/pgbench" -n -f "$TEST_TMP/select1.sql" -c 4 -j 2 -t 50 \
        -p "$PF_PORT" "$@" 2>&1) || fail "pgbench failed: $(tail -n 5 <<<"$out")"
    assert_contains "$out" "number of transactions actually processed: 200/200" "pgbench over TLS"
}

# ---------------------------------------------------------------- client TLS

# timeout: 40
test_verify_full_to_localhost_connects_over_tls() {
    _tls_start
    _conn_ok "host=localhost sslmode=verify-full sslrootcert=$CERTS/ca.crt" postgres
    # the certificate also names IP 127.0.0.1
    _conn_ok "sslmode=verify-full sslrootcert=$CERTS/ca.crt" postgres
    _pgbench_tls PGSSLMODE=verify-full "PGSSLROOTCERT=$CERTS/ca.crt" -- -h localhost -U postgres postgres
    pf_stop
}

# timeout: 40
test_verify_full_fails_against_a_different_ca() {
    _tls_start
    bash "$REPO_ROOT/tools/mkcerts.sh" "$TEST_TMP/other" || fail "mkcerts other"
    _conn_refused "host=localhost sslmode=verify-full sslrootcert=$TEST_TMP/other/ca.crt" "certificate verify failed"
    pf_alive || fail "pgfunnel died"
    _conn_ok "host=localhost sslmode=verify-full sslrootcert=$CERTS/ca.crt" postgres
    pf_stop
}

# timeout: 40
test_plaintext_client_refused_when_tls_required() {
    _tls_start
    _conn_refused "sslmode=disable" "SSL required"
    _conn_ok "sslmode=require" postgres
    pf_stop
}

_setcfg() { # KEY VALUE: admin SET, prints the answer (SET or the error)
    "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer \
        -c "SET $1 = '$2'" 2>&1
}
_showcfg() { # KEY: its value in SHOW CONFIG
    "$PG_BINDIR/psql" -X -At -F'|' -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer \
        -c "SHOW CONFIG" | awk -F'|' -v k="$1" '$1 == k { print $2 }'
}

# SET client_tls_* on the console takes effect as a RELOAD would: the TLS
# context is rebuilt; a combination that does not load is refused and the
# context (and the setting) in use stay.
# timeout: 40
test_set_client_tls_options_apply_like_reload() {
    _certs
    pf_start
    NOSSL=1 _conn_ok "sslmode=disable" postgres
    assert_eq SET "$(_setcfg client_tls_key_file "$CERTS/server.key")"
    assert_eq SET "$(_setcfg client_tls_cert_file "$CERTS/server.crt")"
    assert_eq SET "$(_setcfg client_tls_sslmode require)"
    _conn_ok "sslmode=require" postgres
    _conn_ok "sslmode=verify-full sslrootcert=$CERTS/ca.crt" postgres
    _conn_refused "sslmode=disable" "SSL required"
    # a certificate that does not load: refused, the old one still serves
    assert_contains "$(_setcfg client_tls_cert_file "$TEST_TMP/no-such.crt")" "SET failed"
    assert_eq "$CERTS/server.crt" "$(_showcfg client_tls_cert_file)" "the setting in use"
    _conn_ok "sslmode=verify-full sslrootcert=$CERTS/ca.crt" postgres
    # a key that does not match the certificate: refused too
    bash "$REPO_ROOT/tools/mkcerts.sh" "$TEST_TMP/other" || fail "mkcerts other"
    assert_contains "$(_setcfg client_tls_key_file "$TEST_TMP/other/server.key")" "SET failed"
    _conn_ok "sslmode=require" postgres
    # a certificate of another CA: clients verifying against ours now refuse it
    assert_eq SET "$(_setcfg client_tls_sslmode disable)"
    assert_eq SET "$(_setcfg client_tls_cert_file "$TEST_TMP/other/server.crt")"
    assert_eq SET "$(_setcfg client_tls_key_file "$TEST_TMP/other/server.key")"
    NOSSL=1 _conn_ok "sslmode=disable" postgres
    assert_eq SET "$(_setcfg client_tls_sslmode require)"
    _conn_refused "sslmode=verify-full sslrootcert=$CERTS/ca.crt" "certificate verify failed"
    _conn_ok "sslmode=verify-full sslrootcert=$TEST_TMP/other/ca.crt" postgres
    pf_stop
}

# timeout: 40
test_tls_prefer_serves_both_plaintext_and_tls_clients() {
    _tls_start "client_tls_sslmode = prefer"
    NOSSL=1 _conn_ok "sslmode=disable" postgres
    _conn_ok "sslmode=require" postgres
    pf_stop
}

# timeout: 40
test_scram_channel_binding_require_over_tls_logs_in() {
    local out
    _userlist scramuser scrampass
    _tls_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt"
    _conn_ok "user=scramuser password=scrampass sslmode=require channel_binding=require" scramuser
    _pgbench_tls PGSSLMODE=require PGCHANNELBINDING=require PGPASSWORD=scrampass -- \
        -h 127.0.0.1 -U scramuser postgres
    # wrong password over TLS with channel binding: 28P01
    out=$(_conn "user=scramuser password=nope sslmode=require channel_binding=require" -c "select 1") &&
        fail "wrong password accepted: $out"
    assert_contains "$out" 'password authentication failed for user "scramuser"'
    assert_contains "$out" "password retrieved from file" "SQLSTATE 28P01"
    pf_stop
}

# timeout: 40
test_scram_channel_binding_works_with_scram_secret_on_file() {
    local secret
    secret=$(pg_psql -c "select rolpassword from pg_authid where rolname = 'scramuser'")
    _userlist scramuser "$secret"
    _tls_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt" \
        "[databases]" "fwd = host=127.0.0.1 port=$PGPORT dbname=postgres user=postgres"
    _conn_ok "user=scramuser dbname=fwd password=scrampass sslmode=require channel_binding=require" postgres
    pf_stop
}

# ---------------------------------------------------------------- cert auth

# timeout: 40
test_client_certificate_authenticates_with_cert_auth() {
    _tls_start "auth_type = cert" "client_tls_ca_file = $CERTS/ca.crt"
    _conn_ok "sslmode=verify-full host=localhost sslrootcert=$CERTS/ca.crt sslcert=$CERTS/client-postgres.crt sslkey=$CERTS/client-postgres.key" postgres
    _pgbench_tls PGSSLMODE=require "PGSSLCERT=$CERTS/client-postgres.crt" "PGSSLKEY=$CERTS/client-postgres.key" -- \
        -h 127.0.0.1 -U postgres postgres
    pf_stop
}

# timeout: 40
test_cert_auth_refuses_missing_or_other_users_certificate() {
    _tls_start "auth_type = cert" "client_tls_ca_file = $CERTS/ca.crt"
    # no certificate at all (sslcert pointing nowhere so ~/.postgresql is not used)
    _conn_refused "sslmode=require sslcert=$TEST_TMP/none.crt sslkey=$TEST_TMP/none.key" \
        'certificate authentication failed for user "postgres"'
    # md5user's certificate presented as postgres
    _conn_refused "sslmode=require sslcert=$CERTS/client-md5user.crt sslkey=$CERTS/client-md5user.key" \
        'certificate authentication failed for user "postgres"'
    pf_alive || fail "pgfunnel died"
    pf_stop
}

# ---------------------------------------------------------------- hba over TLS

# timeout: 40
test_hba_hostssl_and_hostnossl_follow_connection_encryption() {
    _userlist md5user md5pass postgres ""
    printf '%s\n' "hostssl all postgres 127.0.0.1/32 trust" \
        "hostnossl all md5user 127.0.0.1/32 md5" >"$TEST_TMP/hba.conf"
    _tls_start "client_tls_sslmode = prefer" "auth_type = hba" \
        "auth_hba_file = $TEST_TMP/hba.conf" "auth_file = $TEST_TMP/userlist.txt"
    _conn_ok "sslmode=require" postgres
    _conn_refused "sslmode=disable" "no pg_hba.conf entry"
    NOSSL=1 _conn_ok "user=md5user password=md5pass sslmode=disable" md5user
    _conn_refused "user=md5user password=md5pass sslmode=require" "no pg_hba.conf entry"
    pf_stop
}

# timeout: 40
test_hba_cert_method_on_hostssl_rule() {
    printf '%s\n' "hostssl all postgres 127.0.0.1/32 cert" >"$TEST_TMP/hba.conf"
    _tls_start "auth_type = hba" "auth_hba_file = $TEST_TMP/hba.conf" "client_tls_ca_file = $CERTS/ca.crt"
    _conn_ok "sslmode=require sslcert=$CERTS/client-postgres.crt sslkey=$CERTS/client-postgres.key" postgres
    _conn_refused "sslmode=require sslcert=$CERTS/client-md5user.crt sslkey=$CERTS/client-md5user.key" \
        "certificate authentication failed"
    pf_stop
}

# ---------------------------------------------------------------- server TLS

PG2=$TEST_TMP/pg2

_pg2_destroy() {
    bash "$PGSANDBOX" destroy "$PG2" >/dev/null 2>&1
}

# _pg2_start — a second sandbox cluster with ssl = on and only hostssl rules
_pg2_start() {
    local u
    trap _pg2_destroy EXIT
    PG2_PORT=$(bash "$PGSANDBOX" start "$PG2") || fail "could not start the second cluster"
    cp "$CERTS/server.crt" "$CERTS/server.key" "$PG2/data/" || fail "copy certs"
    chmod 600 "$PG2/data/server.key"
    if [ -f "$PG2/user" ]; then
        u=$(cat "$PG2/user")
        chown "$u" "$PG2/data/server.crt" "$PG2/data/server.key" || fail "chown certs to $u"
    fi
    cat >>"$PG2/data/postgresql.conf" <<'EOF'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
EOF
    cat >"$PG2/data/pg_hba.conf" <<'EOF'
local    all  all                trust
hostssl  all  all  127.0.0.1/32  trust
EOF
    bash "$PGSANDBOX" restart "$PG2" >/dev/null || fail "could not restart the second cluster"
    # the cluster itself: plaintext refused, TLS accepted
    assert_fail "$PG_BINDIR/psql" -X -At -w "host=127.0.0.1 port=$PG2_PORT user=postgres dbname=postgres sslmode=disable" -c "select 1"
    assert_eq t "$("$PG_BINDIR/psql" -X -At -w "host=127.0.0.1 port=$PG2_PORT user=postgres dbname=postgres sslmode=require" \
        -c "select ssl from pg_stat_ssl where pid = pg_backend_pid()" 2>&1)" "direct TLS to the second cluster"
}

# timeout: 60
test_server_tls_require_reaches_hostssl_only_backend_pgbench_over_both_legs() {
    local out
    _certs
    _pg2_start
    _tls_start "server_tls_sslmode = require" \
        "[databases]" "tlsdb = host=127.0.0.1 port=$PG2_PORT dbname=postgres"
    out=$(_conn "host=localhost dbname=tlsdb sslmode=verify-full sslrootcert=$CERTS/ca.crt" \
        -c "select ssl from pg_stat_ssl where pid = pg_backend_pid()" -c '\conninfo')
    assert_eq t "$(head -n 1 <<<"$out")" "server leg uses TLS"
    assert_contains "$out" "SSL connection (protocol: TLS" "client leg uses TLS"
    _pgbench_tls PGSSLMODE=verify-full "PGSSLROOTCERT=$CERTS/ca.crt" -- -h localhost -U postgres tlsdb
    # every server connection pgfunnel made is encrypted
    assert_eq 0 "$("$PG_BINDIR/psql" -X -At -h "$(cat "$PG2/sockdir")" -p "$PG2_PORT" -U postgres -d postgres \
        -c "select count(*) from pg_stat_activity a join pg_stat_ssl s using (pid)
            where a.client_addr is not null and not s.ssl")" "unencrypted TCP sessions on the server"
    pf_stop
    _pg2_destroy
}

# timeout: 60
test_server_tls_verify_full_with_ca_file_reaches_hostssl_only_backend() {
    local out
    _certs
    _pg2_start
    _tls_start "server_tls_sslmode = verify-full" "server_tls_ca_file = $CERTS/ca.crt" \
        "[databases]" "tlsdb = host=127.0.0.1 port=$PG2_PORT dbname=postgres"
    out=$(_conn "dbname=tlsdb sslmode=require" -c "select ssl from pg_stat_ssl where pid = pg_backend_pid()")
    assert_eq t "$out" "server leg with verify-full"
    pf_stop
    _pg2_destroy
}

# timeout: 60
test_server_tls_disable_is_refused_by_hostssl_only_backend() {
    local out
    _certs
    _pg2_start
    _tls_start "server_tls_sslmode = disable" \
        "[databases]" "tlsdb = host=127.0.0.1 port=$PG2_PORT dbname=postgres"
    out=$(_conn "dbname=tlsdb sslmode=require" -c "select 1") && fail "plaintext server login succeeded: $out"
    assert_contains "$out" "no pg_hba.conf entry" "the server's refusal reaches the client"
    pf_alive || fail "pgfunnel died"
    pf_stop
    _pg2_destroy
}

_bpid() { pf_psql -c "select pg_backend_pid()" 2>&1; }
_adm_cmd() { "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c "$1" 2>&1; }
_gone() { ! kill -0 "$1" 2>/dev/null; }

# A RELOAD or SET that changes a server_tls_* option retires the servers, as a
# changed database entry does: idle ones now, busy ones when released.
# timeout: 40
test_server_tls_change_retires_servers() {
    local p1 p2 p3
    pf_start "default_pool_size = 1"
    p1=$(_bpid)
    [[ $p1 =~ ^[0-9]+$ ]] || fail "first query: $p1"
    assert_eq SET "$(_setcfg server_tls_sslmode disable)"
    p2=$(_bpid)
    assert_ne "$p1" "$p2" "an idle server is retired by SET server_tls_sslmode"
    # a busy server: closed when its transaction ends
    _sess_open A
    _sess_expect A "begin;" "BEGIN"
    _sess_expect A "select pg_backend_pid();" "$p2"
    sed -i 's/^server_tls_sslmode.*//' "$PF_INI"
    echo "server_tls_sslmode = allow" >>"$PF_INI"
    assert_eq RELOAD "$(_adm_cmd RELOAD)"
    _sess_expect A "select pg_backend_pid();" "$p2" # the transaction keeps its server
    _sess_expect A "commit;" "COMMIT"
    p3=$(_bpid)
    assert_ne "$p2" "$p3" "the busy server is retired after its transaction (RELOAD)"
    _sess_close A
    # a RELOAD that changes nothing keeps the servers
    assert_eq RELOAD "$(_adm_cmd RELOAD)"
    assert_eq "$p3" "$(_bpid)" "an unchanged RELOAD keeps the server"
    pf_stop
}

# A server login that fails TLS verification may pass (a CA file being
# replaced): the client waits for the next attempt instead of failing, and a
# SET of a server_tls_* option makes that attempt happen now.
# timeout: 60
test_server_tls_verify_failure_waits_and_set_applies() {
    local pc out
    _certs
    _pg2_start
    bash "$REPO_ROOT/tools/mkcerts.sh" "$TEST_TMP/other" || fail "mkcerts other"
    pf_start "server_tls_sslmode = verify-full" "server_tls_ca_file = $TEST_TMP/other/ca.crt" \
        "server_login_retry = 30" "query_wait_timeout = 20" \
        "[databases]" "tlsdb = host=127.0.0.1 port=$PG2_PORT dbname=postgres"
    pf_psql -d tlsdb -c "select ssl from pg_stat_ssl where pid = pg_backend_pid()" \
        >"$TEST_TMP/c.out" 2>&1 &
    pc=$!
    wait_until 5 grep -q "login failed" "$PF_LOG"
    grep "login failed" "$PF_LOG" | head -n 1
    sleep 0.5
    kill -0 "$pc" 2>/dev/null || fail "the client did not wait: $(cat "$TEST_TMP/c.out")"
    assert_eq SET "$(_setcfg server_tls_ca_file "$CERTS/ca.crt")"
    wait_until 5 _gone "$pc"
    wait "$pc"
    out=$(cat "$TEST_TMP/c.out")
    assert_eq t "$out" "the waiting client, over TLS to the server"
    pf_stop
    _pg2_destroy
}
