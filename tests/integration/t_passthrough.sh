# shellcheck shell=bash
# t_passthrough.sh — backend logins from stored secrets (pass-through): the
# server demands md5 or scram-sha-256 and pgfunnel has only the md5 hash or
# the SCRAM secret copied from pg_authid (auth_file or auth_query).  The
# sandbox's md5user (md5 in pg_hba, stored as md5) and scramuser
# (scram-sha-256) are used as they are, so the shared cluster is not changed;
# the TLS test starts its own cluster with ssl = on.

# shellcheck source=tests/integration/session.sh
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"

# ---------------------------------------------------------------- helpers

_userlist() { # USER SECRET … -> $TEST_TMP/userlist.txt
    : >"$TEST_TMP/userlist.txt"
    while [ $# -ge 2 ]; do
        printf '"%s" "%s"\n' "$1" "$2" >>"$TEST_TMP/userlist.txt"
        shift 2
    done
}

_secret() { # ROLE -> its secret in pg_authid of the shared cluster
    pg_psql -c "select rolpassword from pg_authid where rolname = '$1'"
}

_md5() { # PASSWORD USER -> PostgreSQL's md5 secret
    printf 'md5%s' "$(printf '%s%s' "$1" "$2" | md5sum | cut -d' ' -f1)"
}

# _pgpass PASSWORD — a pgpass file with PASSWORD for everything; prints its path
# _scram_secret PASSWORD SALT_B64 ITERATIONS — a SCRAM secret as PostgreSQL stores it
_scram_secret() {
    python3 - "$@" <<'EOF'
import base64, hashlib, hmac, sys
pw, salt_b64, it = sys.argv[1], sys.argv[2], int(sys.argv[3])
sp = hashlib.pbkdf2_hmac("sha256", pw.encode(), base64.b64decode(salt_b64), it)
ck = hmac.new(sp, b"Client Key", "sha256").digest()
sk = hmac.new(sp, b"Server Key", "sha256").digest()
b64 = lambda b: base64.b64encode(b).decode()
print(f"SCRAM-SHA-256${it}:{salt_b64}${b64(hashlib.sha256(ck).digest())}:{b64(sk)}")
EOF
}

_pgpass() {
    local f=$TEST_TMP/pgpass.$RANDOM
    printf '*:*:*:*:%s\n' "$1" >"$f"
    chmod 600 "$f"
    echo "$f"
}

# _login USER PASSWORD [psql ARG…] — psql over TCP through pgfunnel to database
# postgres (DB overrides), never prompts; prints stdout+stderr, returns psql's status
_login() {
    local user=$1 pw=$2
    shift 2
    PGPASSFILE=$(_pgpass "$pw") "$PG_BINDIR/psql" -X -At -w -v VERBOSITY=verbose \
        -h 127.0.0.1 -p "$PF_PORT" -U "$user" -d "${DB:-postgres}" "$@" 2>&1
}

_login_ok() { # USER PASSWORD: the session runs as USER
    local out
    out=$(_login "$1" "$2" -c "select current_user")
    assert_eq "$1" "$out" "login of $1"
}

_pgbench() { # USER PASSWORD [ARG…]: 4 clients × 25 transactions through pgfunnel
    local out user=$1 pw=$2
    shift 2
    echo "SELECT 1;" >"$TEST_TMP/select1.sql"
    out=$(PGPASSFILE=$(_pgpass "$pw") pgbench -n -f "$TEST_TMP/select1.sql" -c 4 -j 2 -t 25 \
        -h 127.0.0.1 -p "$PF_PORT" -U "$user" "$@" postgres 2>&1) ||
        fail "pgbench as $user failed: $(tail -n 5 <<<"$out")"
    assert_contains "$out" "number of transactions actually processed: 100/100" "pgbench as $user"
}

# the admin console as the local admin (unix socket, our uid): no password needed
_adm() {
    "$PG_BINDIR/psql" -X -At -h "$TEST_TMP" -p "$PF_PORT" -U pgbouncer -d pgbouncer -c "$1" 2>&1
}

# _pf_start_v [LINE…] — pf_start with -v: server.c then logs how each server logged in
_pf_start_v() {
    pf_write_ini "$@"
    # shellcheck disable=SC2119
    pf_launch -v
    wait_until 10 port_open "$PF_PORT"
}

_backends() { # ROLE -> its backends on the shared cluster
    pg_psql -c "select count(*) from pg_stat_activity where usename = '$1'"
}
_backends_is() { [ "$(_backends "$1")" = "$2" ]; }

# pgfunnel logged its servers in with a stored secret (the DEBUG line of server.c)
_assert_pass_through() { # METHOD
    wait_until 5 grep -q "pass-through $1\$" "$PF_LOG"
}

_auth_query_setup() { # the lookup function and our auth user (trusted by the sandbox's hba)
    local have
    have=$(pg_psql -c "select to_regprocedure('pgfunnel.get_auth(text)') is not null")
    if [ "$have" != t ]; then
        pg_psql -q -v ON_ERROR_STOP=1 -f "$REPO_ROOT/sql/auth_query.sql" >/dev/null ||
            fail "could not load sql/auth_query.sql"
    fi
    pg_psql -q -v ON_ERROR_STOP=1 >/dev/null <<'EOF' || fail "could not create pf_pt_auth"
DO $$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'pf_pt_auth') THEN
    CREATE ROLE pf_pt_auth LOGIN;
  END IF;
END $$;
GRANT USAGE ON SCHEMA pgfunnel TO pf_pt_auth;
GRANT EXECUTE ON FUNCTION pgfunnel.get_auth(text) TO pf_pt_auth;
EOF
}

# ---------------------------------------------------------------- auth_file

# timeout: 60
test_scram_secret_in_auth_file_logs_in_and_pool_reconnects_from_kept_client_key() {
    local secret pid1 pid2
    secret=$(_secret scramuser)
    assert_contains "$secret" "SCRAM-SHA-256\$" "scramuser's secret"
    _userlist scramuser "$secret"
    _pf_start_v "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt"
    _login_ok scramuser scrampass
    _assert_pass_through SCRAM-SHA-256
    _pgbench scramuser scrampass

    # an existing client keeps working after its pool's servers are replaced: the
    # new servers log in from the kept ClientKey, no new client login needed
    PGPASSFILE=$(_pgpass scrampass)
    export PGPASSFILE
    _sess_open S "user=scramuser dbname=postgres"
    _sess_run S "select pg_backend_pid();" || fail "session did not answer"
    pid1=$SESS_OUT
    assert_contains "$(_adm "RECONNECT postgres")" "RECONNECT"
    wait_until 10 _backends_is scramuser 0
    _sess_run S "select pg_backend_pid();" || fail "session did not answer after RECONNECT"
    pid2=$SESS_OUT
    assert_ne "$pid1" "$pid2" "RECONNECT must replace the server"
    _sess_expect S "select current_user;" scramuser
    _sess_close S
    unset PGPASSFILE
    # and new clients too
    _pgbench scramuser scrampass -C
    # a wrong password is still refused at pgfunnel
    local out
    out=$(_login scramuser wrong -c "select 1") && fail "wrong password accepted: $out"
    # libpq's sign of SQLSTATE 28P01 with a pgpass password (see t_auth.sh)
    assert_contains "$out" "password retrieved from file"
    assert_contains "$out" 'password authentication failed for user "scramuser"'
    pf_alive || fail "pgfunnel died"
    pf_stop
}

# timeout: 60
test_md5_secret_in_auth_file_logs_in_without_any_client_proof() {
    local secret
    secret=$(_secret md5user)
    assert_eq "$(_md5 md5pass md5user)" "$secret" "md5user's secret in pg_authid"
    _userlist md5user "$secret"
    # the md5 hash itself answers the server: even a trusted client gets a server
    _pf_start_v "auth_type = trust" "auth_file = $TEST_TMP/userlist.txt"
    _login_ok md5user ""
    _assert_pass_through md5
    pf_stop
    # md5 clients; min_pool_size opens more servers later, with no client logging in
    pf_start "auth_type = md5" "auth_file = $TEST_TMP/userlist.txt" "min_pool_size = 2"
    _login_ok md5user md5pass
    wait_until 10 _backends_is md5user 2
    _pgbench md5user md5pass
    pf_stop
    # plain clients: the password is checked against the hash, the hash logs in
    pf_start "auth_type = plain" "auth_file = $TEST_TMP/userlist.txt"
    _login_ok md5user md5pass
    _pgbench md5user md5pass -C
    pf_stop
}

# timeout: 60
test_plain_client_login_with_scram_secret_derives_the_client_key() {
    _userlist scramuser "$(_secret scramuser)"
    pf_start "auth_type = plain" "auth_file = $TEST_TMP/userlist.txt"
    _login_ok scramuser scrampass
    _pgbench scramuser scrampass -C
    pf_stop
}

# ---------------------------------------------------------------- auth_query

# timeout: 60
test_auth_query_secrets_log_in_to_scram_and_md5_backends() {
    _auth_query_setup
    _userlist pf_pt_auth ""
    # shellcheck disable=SC2016  # $1 is auth_query's parameter
    pf_start "auth_type = md5" "auth_file = $TEST_TMP/userlist.txt" "auth_user = pf_pt_auth" \
        'auth_query = SELECT usename, passwd FROM pgfunnel.get_auth($1)'
    # md5 on file: md5 to the client and to the server; SCRAM: SCRAM on both legs
    _login_ok md5user md5pass
    _login_ok scramuser scrampass
    _pgbench md5user md5pass -C
    _pgbench scramuser scrampass -C
    # new servers later: from what the logins proved
    assert_contains "$(_adm "RECONNECT")" "RECONNECT"
    wait_until 10 _backends_is scramuser 0
    _pgbench scramuser scrampass
    _pgbench md5user md5pass
    pf_stop
}

# ---------------------------------------------------------------- what still cannot work

# timeout: 60
test_scram_backend_before_any_scram_login_gets_a_clear_error_then_works() {
    local out
    _userlist scramuser "$(_secret scramuser)"
    [ -x "$TOOLS_DIR/pq_startup" ] || fail "$TOOLS_DIR/pq_startup missing"
    # scramuser is trusted at first: no client has proved a ClientKey yet
    echo "host all scramuser 127.0.0.1/32 trust" >"$TEST_TMP/hba.conf"
    pf_start "auth_type = hba" "auth_hba_file = $TEST_TMP/hba.conf" \
        "auth_file = $TEST_TMP/userlist.txt"
    out=$("$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --param user=scramuser --timeout 5)
    assert_contains "$out" "E FATAL 28000 the server requires SCRAM authentication for user \"scramuser\""
    assert_contains "$out" "no client of this user has logged in with SCRAM"
    # a SCRAM login brings the ClientKey; the remembered failure (server_login_retry)
    # does not hold it back
    echo "host all scramuser 127.0.0.1/32 scram-sha-256" >"$TEST_TMP/hba.conf"
    assert_contains "$(_adm RELOAD)" "RELOAD"
    _login_ok scramuser scrampass
    # from now on the pool logs in for trusted clients too, also on new servers
    echo "host all scramuser 127.0.0.1/32 trust" >"$TEST_TMP/hba.conf"
    assert_contains "$(_adm RELOAD)" "RELOAD"
    assert_contains "$(_adm "RECONNECT postgres")" "RECONNECT"
    wait_until 10 _backends_is scramuser 0
    out=$("$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --param user=scramuser \
        --query "select current_user" --timeout 5)
    assert_contains "$out" "D scramuser" "trusted login after a SCRAM login"
    pf_alive || fail "pgfunnel died"
    pf_stop
}

# timeout: 60
test_md5_hash_against_scram_backend_and_scram_secret_against_md5_backend_say_why() {
    local out
    # scramuser's server wants SCRAM: an md5 hash of its password cannot answer
    _userlist scramuser "$(_md5 scrampass scramuser)" md5user "$(_secret scramuser)"
    pf_start "auth_type = md5" "auth_file = $TEST_TMP/userlist.txt"
    out=$(_login scramuser scrampass -c "select 1") && fail "md5 hash logged in to SCRAM: $out"
    assert_contains "$out" "has only an md5 hash of the password, which cannot answer SCRAM"
    pf_stop
    # md5user's server wants md5: a SCRAM secret cannot answer (here: scramuser's
    # secret under md5user's name; md5user logs in to pgfunnel with scrampass)
    _userlist md5user "$(_secret scramuser)"
    pf_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt"
    out=$(_login md5user scrampass -c "select 1") && fail "SCRAM secret logged in to md5: $out"
    assert_contains "$out" "has only its SCRAM secret, which cannot answer md5"
    pf_alive || fail "pgfunnel died"
    pf_stop
}

_logged_since() { pf_logs_since "$1" | grep -qF -- "$2"; }

# timeout: 60
test_backend_refusals_during_the_exchange_reach_the_client() {
    local out salt mark
    [ -x "$TOOLS_DIR/pq_startup" ] || fail "$TOOLS_DIR/pq_startup missing"
    # a wrong md5 hash: the backend's own error (SQLSTATE and message) reaches the client
    _userlist md5user "$(_md5 wrongpass md5user)"
    pf_start "auth_type = trust" "auth_file = $TEST_TMP/userlist.txt"
    out=$("$TOOLS_DIR/pq_startup" 127.0.0.1 "$PF_PORT" --param user=md5user --timeout 5)
    assert_contains "$out" 'E FATAL 28P01 password authentication failed for user "md5user"'
    pf_stop
    # a SCRAM secret with the backend's salt but another password: pgfunnel accepts
    # the client (its proof matches the secret on file), the backend refuses the proof
    salt=$(_secret scramuser | cut -d'$' -f2 | cut -d: -f2) # SCRAM-SHA-256$<iter>:<salt>$…
    _userlist scramuser "$(_scram_secret otherpw "$salt" 4096)"
    pf_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt"
    mark=$(pf_log_mark)
    out=$(_login scramuser otherpw -c "select 1") && fail "wrong secret logged in: $out"
    assert_contains "$out" 'password authentication failed for user "scramuser"'
    # the log is written by its own thread: the line may follow the client's error
    wait_until 5 _logged_since "$mark" 'login failed: 28P01 password authentication failed'
    pf_stop
    # another salt: the secret is not the backend's, pgfunnel says so
    _userlist scramuser "$(_scram_secret otherpw "c2FsdHNhbHRzYWx0c2FsdA==" 4096)"
    pf_start "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt"
    out=$(_login scramuser otherpw -c "select 1") && fail "wrong secret logged in: $out"
    assert_contains "$out" "is not the server's (different salt or iteration count)"
    pf_alive || fail "pgfunnel died"
    pf_stop
}

# ---------------------------------------------------------------- TLS

PG3=$TEST_TMP/pg3
_pg3_destroy() { bash "$PGSANDBOX" destroy "$PG3" >/dev/null 2>&1; }

# timeout: 90
test_tls_on_both_legs_channel_binding_to_client_scram_plus_to_server() {
    local u secret out
    bash "$REPO_ROOT/tools/mkcerts.sh" "$TEST_TMP/certs" >/dev/null 2>&1 || fail "mkcerts.sh failed"
    trap _pg3_destroy EXIT
    PG3_PORT=$(bash "$PGSANDBOX" start "$PG3") || fail "could not start a cluster with TLS"
    cp "$TEST_TMP/certs/server.crt" "$TEST_TMP/certs/server.key" "$PG3/data/" || fail "copy certs"
    chmod 600 "$PG3/data/server.key"
    if [ -f "$PG3/user" ]; then
        u=$(cat "$PG3/user")
        chown "$u" "$PG3/data/server.crt" "$PG3/data/server.key" || fail "chown certs to $u"
    fi
    printf '%s\n' "ssl = on" "ssl_cert_file = 'server.crt'" "ssl_key_file = 'server.key'" \
        >>"$PG3/data/postgresql.conf"
    # scramuser over TLS with scram-sha-256 only
    printf '%s\n' "local all all trust" "hostssl all scramuser 127.0.0.1/32 scram-sha-256" \
        "hostssl all postgres 127.0.0.1/32 trust" >"$PG3/data/pg_hba.conf"
    bash "$PGSANDBOX" restart "$PG3" >/dev/null || fail "could not restart the TLS cluster"
    secret=$(bash "$PGSANDBOX" psql "$PG3" -At -c "select rolpassword from pg_authid where rolname = 'scramuser'")
    assert_contains "$secret" "SCRAM-SHA-256\$" "scramuser's secret on the TLS cluster"
    _userlist scramuser "$secret"
    _pf_start_v "auth_type = scram-sha-256" "auth_file = $TEST_TMP/userlist.txt" \
        "client_tls_sslmode = require" "client_tls_cert_file = $TEST_TMP/certs/server.crt" \
        "client_tls_key_file = $TEST_TMP/certs/server.key" "server_tls_sslmode = require" \
        "[databases]" "tlsdb = host=127.0.0.1 port=$PG3_PORT dbname=postgres"
    out=$(PGPASSFILE=$(_pgpass scrampass) "$PG_BINDIR/psql" -X -At -w \
        "host=127.0.0.1 port=$PF_PORT dbname=tlsdb user=scramuser sslmode=require channel_binding=require" \
        -c "select current_user, ssl from pg_stat_ssl where pid = pg_backend_pid()" 2>&1)
    assert_eq "scramuser|t" "$out" "SCRAM-SHA-256-PLUS to pgfunnel, TLS to the server"
    # the server leg bound its SCRAM exchange to the server's certificate
    _assert_pass_through SCRAM-SHA-256-PLUS
    echo "select 1;" >"$TEST_TMP/select1.sql"
    out=$(PGPASSFILE=$(_pgpass scrampass) PGSSLMODE=require PGCHANNELBINDING=require pgbench -n \
        -C -c 2 -j 2 -t 10 -f "$TEST_TMP/select1.sql" -h 127.0.0.1 -p "$PF_PORT" -U scramuser \
        tlsdb 2>&1) ||
        fail "pgbench over TLS failed: $(tail -n 5 <<<"$out")"
    assert_contains "$out" "number of transactions actually processed: 20/20"
    pf_alive || fail "pgfunnel died"
    pf_stop
    _pg3_destroy
}
