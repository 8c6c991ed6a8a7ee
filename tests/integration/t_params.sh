# shellcheck shell=bash
# t_params.sh — session parameters across pooled servers, startup parameters,
# protocol version negotiation and SSL/GSS requests.

PQ_STARTUP=$TOOLS_DIR/pq_startup

_need_tool() {
    [ -x "$PQ_STARTUP" ] || fail "$PQ_STARTUP missing (make build/tools/pq_startup)"
}

# shellcheck source=tests/integration/session.sh
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"

# ---------------------------------------------------------------- tests

# timeout: 30
test_set_timezone_follows_client_across_shared_server() {
    local default pid_a
    pf_start "default_pool_size = 1"
    default=$(pf_psql -c "show timezone")
    [ -n "$default" ] || fail "could not read the default TimeZone"
    _sess_open A
    _sess_open B
    _sess_expect A "SET TimeZone='UTC';" "SET"
    _sess_expect B "SET TimeZone='America/New_York';" "SET"
    _sess_expect A "show timezone;" "UTC"
    _sess_expect B "show timezone;" "America/New_York"
    _sess_expect A "show timezone;" "UTC"
    # both really ran on the one server
    _sess_run A "select pg_backend_pid();" || fail "session A"
    pid_a=$SESS_OUT
    _sess_expect B "select pg_backend_pid();" "$pid_a"
    # a new client without SET gets the server default, not A's or B's value
    assert_eq "$default" "$(pf_psql -c "show timezone")" "third client's TimeZone"
    _sess_expect B "show timezone;" "America/New_York"
    _sess_expect A "show timezone;" "UTC"
    _sess_close A
    _sess_close B
    pf_stop
}

# timeout: 30
test_application_name_does_not_leak_to_next_client() {
    local out
    _need_tool
    pf_start "default_pool_size = 1"
    out=$("$PG_BINDIR/psql" -X -At "host=127.0.0.1 port=$PF_PORT user=postgres dbname=postgres application_name=appA" \
        -c "show application_name" 2>&1)
    assert_eq "appA" "$out" "client A's application_name"
    # B sends no application_name at all (raw startup: user and database only)
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --query "show application_name" 2>&1)
    assert_contains "$out" $'\nZ I' "client B logged in"
    assert_not_contains "$out" "appA" "client B must not inherit appA"
    assert_contains "$out" $'\nD \n' "client B sees an empty application_name"
    # and back: A still sees its own name on the same server
    out=$("$PG_BINDIR/psql" -X -At "host=127.0.0.1 port=$PF_PORT user=postgres dbname=postgres application_name=appA" \
        -c "show application_name" 2>&1)
    assert_eq "appA" "$out" "client A again"
    # psql's own default for a third client
    assert_eq "psql" "$(pf_psql -c "show application_name")" "client C (psql default)"
    pf_stop
}

# timeout: 30
test_startup_options_applied_then_reset_for_next_client() {
    local out
    pf_start "default_pool_size = 1"
    out=$("$PG_BINDIR/psql" -X -At \
        "host=127.0.0.1 port=$PF_PORT user=postgres dbname=postgres options='-c statement_timeout=1234'" \
        -c "show statement_timeout" 2>&1)
    assert_eq "1234ms" "$out" "client with options"
    # same (only) server, no options: the default again
    assert_eq "0" "$(pf_psql -c "show statement_timeout" 2>&1)" "client without options"
    # and the options come back for a client that has them
    out=$("$PG_BINDIR/psql" -X -At \
        "host=127.0.0.1 port=$PF_PORT user=postgres dbname=postgres options='-c statement_timeout=1234'" \
        -c "show statement_timeout" -c "select pg_sleep(2)" 2>&1)
    assert_contains "$out" "1234ms"
    assert_contains "$out" "canceling statement due to statement timeout" "statement_timeout really applies"
    assert_eq "0" "$(pf_psql -c "show statement_timeout" 2>&1)" "client without options, again"
    pf_stop
}

# timeout: 30
test_extra_float_digits_accepted_with_and_without_ignore() {
    local out
    _need_tool
    pf_start "default_pool_size = 1" "ignore_startup_parameters = extra_float_digits"
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param extra_float_digits=2 \
        --query "show extra_float_digits" 2>&1)
    assert_not_contains "$out" "E " "ignored parameter must not cause an error"
    assert_contains "$out" $'\nZ I' "login with an ignored parameter"
    assert_contains "$out" $'\nD 1\n' "an ignored parameter is not applied (server default 1)"
    pf_stop

    rm -f "$PF_PIDFILE"
    pf_start "default_pool_size = 1"
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param extra_float_digits=2 \
        --query "show extra_float_digits" 2>&1)
    assert_not_contains "$out" "E " "extra_float_digits without ignore_startup_parameters"
    assert_contains "$out" $'\nD 2\n' "extra_float_digits is applied"
    # the next client on the same server gets the default back
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --query "show extra_float_digits" 2>&1)
    assert_contains "$out" $'\nD 1\n' "next client's extra_float_digits"
    pf_stop
}

# options of any length a startup packet can carry (PgBouncer: longer than
# pkt_buf), with an ignored parameter; PgBouncer's words for options it cannot
# apply (anything but -c name=value / --name=value).
test_long_options_and_unsupported_options() {
    local out long
    _need_tool
    pf_start "ignore_startup_parameters = extra_float_digits"
    long=$(printf '1%.0s' $(seq 4096))
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param "options=-c extra_float_digits=$long" \
        --query "select 1" 2>&1)
    assert_not_contains "$out" "E " "4 kB of options"
    assert_contains "$out" $'\nD 1\n'
    for opt in "-d 5" "-c timezone"; do
        out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param "options=$opt" --query "select 1" 2>&1)
        assert_contains "$out" "unsupported options startup parameter: only '-c config=val' and '--config=val' are allowed" "options=$opt"
    done
    pf_stop
}

# timeout: 30
test_protocol_3_1_negotiated_down_then_auth_ok() {
    local out first second
    _need_tool
    pf_start
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --version 3.1 --query "select 1" 2>&1)
    first=$(sed -n 1p <<<"$out")
    second=$(sed -n 2p <<<"$out")
    assert_eq "v 0 0" "$first" "first message for protocol 3.1"
    assert_eq "R 0" "$second" "then AuthenticationOk"
    assert_contains "$out" $'\nD 1\n' "queries work after negotiation"
    # unknown _pq_ options are listed in NegotiateProtocolVersion
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param _pq_.test_option=x 2>&1)
    assert_eq "v 0 1 _pq_.test_option" "$(sed -n 1p <<<"$out")" "_pq_ option reported"
    assert_contains "$out" $'\nZ I'
    pf_stop
}

# timeout: 30
test_protocol_2_rejected_with_fatal() {
    local out
    _need_tool
    pf_start
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --version 2.0 2>&1)
    assert_contains "$out" "E FATAL 08P01 unsupported frontend protocol" "protocol 2.0"
    assert_contains "$out" "EOF" "connection closed after the error"
    assert_not_contains "$out" "R 0"
    # the pooler is fine
    assert_eq 1 "$(pf_psql -c "select 1")"
    pf_stop
}

# timeout: 30
test_ssl_and_gss_requests_get_N_then_login_works() {
    local out
    _need_tool
    pf_start
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --ssl --query "select 1" 2>&1)
    assert_eq "N" "$(sed -n 1p <<<"$out")" "SSLRequest answer"
    assert_eq "R 0" "$(sed -n 2p <<<"$out")" "login after SSLRequest"
    assert_contains "$out" $'\nD 1\n'
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --gss --query "select 1" 2>&1)
    assert_eq "N" "$(sed -n 1p <<<"$out")" "GSSENCRequest answer"
    assert_eq "R 0" "$(sed -n 2p <<<"$out")" "login after GSSENCRequest"
    assert_contains "$out" $'\nD 1\n'
    # both, as libpq does with gssencmode=prefer and sslmode=prefer
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --gss --ssl --query "select 1" 2>&1)
    assert_eq $'N\nN\nR 0' "$(sed -n 1,3p <<<"$out")" "GSS then SSL"
    assert_contains "$out" $'\nD 1\n'
    # psql with sslmode=prefer falls back to clear text
    assert_eq 1 "$("$PG_BINDIR/psql" -X -At "host=127.0.0.1 port=$PF_PORT user=postgres dbname=postgres sslmode=prefer" -c "select 1" 2>&1)"
    pf_stop
}

# SET statements the backends of database logdb ran (log_statement = all on them)
_logged_sets() {
    tail -c +$(($1 + 1)) "$SANDBOX_DIR/log/postgresql.log" | grep -c "statement: SET "
}
_logged() {
    tail -c +$(($1 + 1)) "$SANDBOX_DIR/log/postgresql.log" | grep -qF "$2"
}

# timeout: 30
test_startup_params_in_other_spelling_applied_once_not_every_transaction() {
    # JDBC sends DateStyle=ISO, which the server reports as "ISO, MDY"; other
    # drivers send lower-case utf8 / utc.  Once the server has the value, the
    # next transactions of the same client must not SET it again.
    local out mark
    _need_tool
    [ -f "$SANDBOX_DIR/log/postgresql.log" ] || skip "no sandbox server log"
    pf_start "default_pool_size = 1" "[databases]" \
        "logdb = host=127.0.0.1 port=$PGPORT dbname=postgres connect_query='SET log_statement = \"all\"'"
    mark=$(stat -c %s "$SANDBOX_DIR/log/postgresql.log")
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param database=logdb --param DateStyle=ISO \
        --query "select 'q1'" --query "select 'q2'" --query "select 'q3'" --query "show DateStyle" 2>&1)
    assert_contains "$out" $'\nD q3\n'
    assert_contains "$out" $'\nD ISO, MDY\n' "the client's DateStyle"
    wait_until 5 _logged "$mark" "statement: show DateStyle"
    local n
    n=$(_logged_sets "$mark")
    [ "$n" -le 1 ] || fail "DateStyle=ISO: $n SET statements for 4 transactions of one client:"$'\n'"$(tail -c +$((mark + 1)) "$SANDBOX_DIR/log/postgresql.log" | grep "statement:")"

    mark=$(stat -c %s "$SANDBOX_DIR/log/postgresql.log")
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param database=logdb --param client_encoding=utf8 \
        --param TimeZone=utc --query "select 'q1'" --query "select 'q2'" --query "select 'q3'" \
        --query "show TimeZone" 2>&1)
    assert_contains "$out" $'\nD q3\n'
    wait_until 5 _logged "$mark" "statement: show TimeZone"
    n=$(_logged_sets "$mark")
    [ "$n" -le 1 ] || fail "client_encoding=utf8 TimeZone=utc: $n SET statements for 4 transactions of one client:"$'\n'"$(tail -c +$((mark + 1)) "$SANDBOX_DIR/log/postgresql.log" | grep "statement:")"
    pf_stop
}

# timeout: 30
test_startup_search_path_list_applied_as_list() {
    # options=-c search_path=a,b (and JDBC's currentSchema, a startup parameter
    # search_path=a,b) name two schemas, as they do on PostgreSQL itself
    local out direct
    _need_tool
    trap 'pg_psql -c "drop schema if exists fault_sp_a cascade" >/dev/null 2>&1' EXIT
    pg_psql -c "set client_min_messages = warning; drop schema if exists fault_sp_a cascade;
        create schema fault_sp_a;
        create table fault_sp_a.sp_only (x int); insert into fault_sp_a.sp_only values (42)" \
        >/dev/null || fail "cannot create the schema"
    pf_start "default_pool_size = 1"
    direct=$("$PG_BINDIR/psql" -X -At \
        "host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres options='-c search_path=fault_sp_a,public'" \
        -c "show search_path" -c "select x from sp_only" 2>&1)
    assert_eq $'fault_sp_a,public\n42' "$direct" "PostgreSQL itself"
    out=$("$PG_BINDIR/psql" -X -At \
        "host=127.0.0.1 port=$PF_PORT user=postgres dbname=postgres options='-c search_path=fault_sp_a,public'" \
        -c "show search_path" -c "select x from sp_only" 2>&1)
    assert_eq "$direct" "$out" "options=-c search_path=fault_sp_a,public through pgfunnel"
    out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param search_path=fault_sp_a,public \
        --query "select x from sp_only" 2>&1)
    assert_contains "$out" $'\nD 42\n' "startup parameter search_path=fault_sp_a,public"
    pf_stop
}

# timeout: 30
test_startup_options_survive_reset_all_like_postgres() {
    # On PostgreSQL, options given at startup are the session's defaults:
    # RESET ALL / DISCARD ALL return to them, not to the server default.
    local conninfo out direct
    pf_start "default_pool_size = 1"
    conninfo="user=postgres dbname=postgres options='-c statement_timeout=1234'"
    direct=$("$PG_BINDIR/psql" -X -At "host=127.0.0.1 port=$PGPORT $conninfo" \
        -c "reset all" -c "show statement_timeout" -c "discard all" -c "show statement_timeout" 2>&1)
    assert_eq $'RESET\n1234ms\nDISCARD ALL\n1234ms' "$direct" "PostgreSQL itself"
    out=$("$PG_BINDIR/psql" -X -At "host=127.0.0.1 port=$PF_PORT $conninfo" \
        -c "reset all" -c "show statement_timeout" -c "discard all" -c "show statement_timeout" 2>&1)
    assert_eq "$direct" "$out" "through pgfunnel"
    pf_stop
}

# RESET ALL / DISCARD ALL / RESET x / SET x TO DEFAULT return the session to
# its startup values, as on PostgreSQL, and the client is told those values
# (not the pooled server's own defaults): libpq escapes strings by the
# standard_conforming_strings it was told, and encodes by client_encoding.
# timeout: 30
test_reset_reports_the_clients_startup_values() {
    local mode out
    _need_tool
    for mode in session transaction; do
        pf_start "pool_mode = $mode" "default_pool_size = 1"
        # what the client was last told, per name, after each query
        out=$("$PQ_STARTUP" 127.0.0.1 "$PF_PORT" --param standard_conforming_strings=off \
            --param client_encoding=LATIN1 --param TimeZone=Asia/Tokyo \
            --query "set timezone to 'UTC'" --query "reset all" --query "show standard_conforming_strings" \
            --query "set timezone to 'UTC'" --query "set timezone to default" --query "show timezone" \
            --query "discard all" --query "show client_encoding" --query "show application_name" 2>&1)
        _last_status() { sed -n '/^K /,$p' <<<"$out" | awk -v n="$1" '$1 == "S" && $2 == n { v = $3 } END { print v }'; }
        assert_eq off "$(_last_status standard_conforming_strings)" "$mode: standard_conforming_strings told"
        assert_eq LATIN1 "$(_last_status client_encoding)" "$mode: client_encoding told"
        assert_eq Asia/Tokyo "$(_last_status TimeZone)" "$mode: TimeZone told"
        assert_eq "" "$(_last_status application_name)" "$mode: application_name told"
        # and the server agrees (SHOW results in order: scs, timezone, client_encoding, application_name)
        assert_eq "off|Asia/Tokyo|LATIN1|" "$(awk '$1 == "D" { printf "%s%s", sep, $2; sep = "|" }' <<<"$out")" "$mode: SHOW"
        pf_stop
        rm -f "$PF_PIDFILE"
    done
}
