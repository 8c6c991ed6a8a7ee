# shellcheck shell=bash
# t_pooling.sh — the pooling core: pool modes and sizes under pgbench, the
# relay (COPY, notices, notifications, pipelining, messages larger than
# pkt_buf), login errors and max_client_conn.
#
# The sandbox is shared: every test works in databases / tables of its own
# (named after the test and $$) and removes them on exit.

# ---------------------------------------------------------------- helpers

# _cleanup_add CMD — run CMD (a string) when the test exits, after stopping pgfunnel
_CLEANUP=()
_cleanup_run() {
    local c
    pf_alive && pf_stop INT >/dev/null 2>&1
    for c in "${_CLEANUP[@]}"; do eval "$c" >/dev/null 2>&1; done
}
_cleanup_add() {
    [ ${#_CLEANUP[@]} -eq 0 ] && trap _cleanup_run EXIT
    _CLEANUP+=("$1")
}

# _new_db NAME — (re)create database NAME directly on the sandbox; dropped on exit
_new_db() {
    PGOPTIONS="-c client_min_messages=warning" \
        pg_psql -q -c "drop database if exists $1 with (force)" -c "create database $1" ||
        fail "could not create database $1"
    _cleanup_add "pg_psql -q -c 'drop database if exists $1 with (force)'"
}

# _bench_db NAME — _new_db + pgbench -i -s 2, directly on the sandbox
_bench_db() {
    _new_db "$1"
    pgbench -i -q -s 2 -h 127.0.0.1 -p "$PGPORT" -U postgres "$1" >"$TEST_TMP/init-$1.log" 2>&1 ||
        fail "pgbench -i $1: $(tail -n 5 "$TEST_TMP/init-$1.log")"
}

# _pgbench OUT ARG… — pgbench through pgfunnel; output in OUT; returns its status
_pgbench() {
    local out=$1
    shift
    pgbench -h 127.0.0.1 -p "$PF_PORT" -U postgres "$@" >"$out" 2>&1
}

# _assert_bench_ok RC OUT WHAT — pgbench exit status 0, 0 failed, >0 processed
_assert_bench_ok() {
    local rc=$1 out=$2 what=$3 n
    [ "$rc" -eq 0 ] || fail "$what: pgbench exit status $rc:"$'\n'"$(tail -n 30 "$out")"
    grep -q '^number of failed transactions: 0 ' "$out" ||
        fail "$what: failed transactions:"$'\n'"$(tail -n 30 "$out")"
    n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$out")
    [ "${n:-0}" -gt 0 ] || fail "$what: no transaction processed:"$'\n'"$(tail -n 30 "$out")"
    echo "$what: $n transactions, $(grep -E '^tps' "$out" | head -n 1)"
}

# _admin CMD — run CMD on the admin console, CSV with a header line
_admin() {
    "$PG_BINDIR/psql" -X -q --csv -h 127.0.0.1 -p "$PF_PORT" -U postgres -d pgbouncer -c "$1"
}

# _pool_col DB[:USER] COLUMN… — from SHOW POOLS: the sum of COLUMNs of the
# pools of database DB (of user USER only, when given); "ERR" when the
# console did not answer
_pool_col() {
    local db=${1%%:*} user=""
    [[ $1 == *:* ]] && user=${1#*:}
    shift
    _admin 'show pools' 2>/dev/null | awk -F, -v db="$db" -v user="$user" -v cols="$*" '
        NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; hdr = ("database" in h); next }
        $h["database"] == db && (user == "" || $h["user"] == user) {
            n = split(cols, c, " "); for (i = 1; i <= n; i++) s += $h[c[i]]
        }
        END { if (hdr) print s + 0; else print "ERR" }'
}

# _pool_at_least DB[:USER] COLUMN N — true when that column has reached N
_pool_at_least() {
    local v
    v=$(_pool_col "$1" "$2")
    [ "$v" != ERR ] && [ "$v" -ge "$3" ]
}

# _pool_quiet DB — nobody waits or is active in the pools of DB
_pool_quiet() { [ "$(_pool_col "$1" cl_waiting cl_active sv_active sv_login)" = 0 ]; }

# _backends DB[:USER] — client backends connected to database DB (as USER)
_backends() {
    local db=${1%%:*} and=""
    [[ $1 == *:* ]] && and=" and usename = '${1#*:}'"
    pg_psql -c "select count(*) from pg_stat_activity where datname = '$db' and backend_type = 'client backend'$and"
}

# _sampler OUT DB[:USER] [POOLDB[:USER]] — every 0.2 s append "backends
# pool_servers" to OUT: backends of DB in pg_stat_activity, servers of the
# pgfunnel database POOLDB (default: DB) in SHOW POOLS
_sampler() {
    local out=$1 db=$2 pooldb=${3:-$2}
    while :; do
        echo "$(_backends "$db") $(_pool_col "$pooldb" sv_active sv_idle sv_used sv_tested sv_login)" >>"$out"
        sleep 0.2
    done
}

# _sampler_start OUT DB[:USER] [POOLDB[:USER]] / _sampler_stop — sets SAMPLER_PID
_sampler_start() {
    : >"$1"
    _sampler "$@" &
    SAMPLER_PID=$!
    _cleanup_add "kill $SAMPLER_PID"
}
_sampler_stop() {
    kill "$SAMPLER_PID" 2>/dev/null
    wait "$SAMPLER_PID" 2>/dev/null
    return 0
}

# _assert_samples FILE MAX MINSAMPLES WHAT — both columns of every sample <= MAX
_assert_samples() {
    local file=$1 max=$2 min=$3 what=$4 n maxb maxp
    n=$(grep -c . "$file")
    # a loaded CI machine samples slowly: two samples still show the limit held
    [ "$min" -gt 2 ] && min=2
    [ "$n" -ge "$min" ] || fail "$what: only $n samples taken (want >= $min)"
    grep -q ERR "$file" && fail "$what: the admin console did not answer SHOW POOLS: $(grep -c ERR "$file") of $n samples"
    grep -Eqv '^[0-9]+ [0-9]+$' "$file" && fail "$what: bad sample lines: $(grep -Ev '^[0-9]+ [0-9]+$' "$file" | head -n 3)"
    maxb=$(awk 'BEGIN { m = 0 } $1 > m { m = $1 } END { print m }' "$file")
    maxp=$(awk 'BEGIN { m = 0 } $2 > m { m = $2 } END { print m }' "$file")
    echo "$what: $n samples, max backends $maxb, max servers in SHOW POOLS $maxp (limit $max)"
    [ "$maxb" -le "$max" ] || fail "$what: $maxb backends in pg_stat_activity, pool size is $max"
    [ "$maxp" -le "$max" ] || fail "$what: SHOW POOLS counted $maxp servers, pool size is $max"
    [ "$maxb" -gt 0 ] || fail "$what: no backend was ever seen in pg_stat_activity"
}

# _stop_clean — stop pgfunnel with SIGINT: exit status 0 and no sanitizer
# report (make sanitize runs these tests with an ASan/UBSan binary)
_stop_clean() {
    local rc=0
    pf_stop INT || rc=$?
    assert_eq 0 "$rc" "pgfunnel exit status after SIGINT"
    if grep -Eq 'AddressSanitizer|LeakSanitizer|runtime error:' "$TEST_TMP/pgfunnel.stderr" 2>/dev/null; then
        fail "sanitizer report:"$'\n'"$(grep -E -A 20 'AddressSanitizer|LeakSanitizer|runtime error:' "$TEST_TMP/pgfunnel.stderr" | head -n 40)"
    fi
}

# _startup_error DB [USER] — send a StartupMessage to pgfunnel over TCP and print
# what comes back with NULs as newlines: the fields of an ErrorResponse appear
# one a line ("SFATAL", "C3D000", "Mno such database: x" …)
_startup_error() {
    local db=$1 user=${2:-postgres} len
    len=$((4 + 4 + 5 + ${#user} + 1 + 9 + ${#db} + 1 + 1))
    (
        exec 3<>"/dev/tcp/127.0.0.1/$PF_PORT" || exit 1
        # shellcheck disable=SC2059
        printf "$(printf '\\x%02x\\x%02x\\x%02x\\x%02x' $((len >> 24 & 255)) $((len >> 16 & 255)) \
            $((len >> 8 & 255)) $((len & 255)))"'\x00\x03\x00\x00' >&3
        printf 'user\0%s\0database\0%s\0\0' "$user" "$db" >&3
        timeout 10 cat <&3
    ) | tr '\0' '\n'
}

# ---------------------------------------------------------------- 1. transaction mode

# timeout: 90
test_transaction_pgbench_50_clients_pool_10() {
    local db=pf_bench_tx_$$ rc args
    _bench_db "$db"
    pf_start "default_pool_size = 10" "max_client_conn = 200"
    for args in "-S" "-S -M extended" ""; do
        _sampler_start "$TEST_TMP/samples" "$db"
        rc=0
        # shellcheck disable=SC2086
        _pgbench "$TEST_TMP/bench.out" -n -c 50 -j 2 -T 5 $args "$db" || rc=$?
        _sampler_stop
        _assert_bench_ok "$rc" "$TEST_TMP/bench.out" "pgbench -c 50 ${args:-tpcb-like}"
        _assert_samples "$TEST_TMP/samples" 10 5 "pgbench -c 50 ${args:-tpcb-like}"
    done
    pf_alive || fail "pgfunnel died"
    # the pool is quiet again: nobody waits, nothing is active
    wait_until 5 _pool_quiet "$db"
    assert_eq 1 "$(pf_psql -d "$db" -c 'select 1')"
    _stop_clean
}

# ---------------------------------------------------------------- 2. session mode

# timeout: 60
test_session_prepared_pgbench() {
    local db=pf_bench_sess_$$ rc
    _bench_db "$db"
    pf_start "default_pool_size = 10" "pool_mode = session"
    _sampler_start "$TEST_TMP/samples" "$db"
    rc=0
    _pgbench "$TEST_TMP/bench.out" -n -c 10 -j 2 -T 5 -M prepared "$db" || rc=$?
    _sampler_stop
    _assert_bench_ok "$rc" "$TEST_TMP/bench.out" "session pgbench -c 10 -M prepared"
    _assert_samples "$TEST_TMP/samples" 10 5 "session pgbench -c 10 -M prepared"
    rc=0
    _pgbench "$TEST_TMP/bench.out" -n -c 10 -j 2 -T 3 -S -M prepared "$db" || rc=$?
    _assert_bench_ok "$rc" "$TEST_TMP/bench.out" "session pgbench -c 10 -S -M prepared (reused servers)"
    # a session keeps its server: two separate queries see the same backend
    local pids i t0 bad
    pids=$(pf_psql -d "$db" -c 'select pg_backend_pid()' -c 'select pg_backend_pid()' | sort -u | wc -l)
    assert_eq 1 "$pids" "distinct backend pids within one session-mode session"

    # 14 sessions on 10 servers: 4 wait until others end, then all succeed
    pids=()
    t0=$(date +%s%3N)
    _sampler_start "$TEST_TMP/samples2" "$db"
    for ((i = 1; i <= 14; i++)); do
        pf_psql -d "$db" -c 'select pg_sleep(1.5)' -c "select 'done$i'" >"$TEST_TMP/sess.$i" 2>&1 &
        pids+=($!)
    done
    wait_until 5 _pool_at_least "$db" cl_waiting 4
    bad=0
    for ((i = 1; i <= 14; i++)); do
        wait "${pids[$((i - 1))]}" || { bad=$((bad + 1)); echo "session $i: $(cat "$TEST_TMP/sess.$i")"; }
        grep -qx "done$i" "$TEST_TMP/sess.$i" || { bad=$((bad + 1)); echo "session $i: $(cat "$TEST_TMP/sess.$i")"; }
    done
    _sampler_stop
    [ $bad -eq 0 ] || fail "$bad of 14 waiting sessions failed"
    [ $(($(date +%s%3N) - t0)) -ge 3000 ] || fail "14 sessions of 1.5 s on 10 servers took less than 3 s: nobody waited?"
    _assert_samples "$TEST_TMP/samples2" 10 5 "14 sessions on a pool of 10"
    _stop_clean
}

# A session's state must not reach the next session on the same server.
test_session_state_isolation() {
    local out pid1 pid2
    pf_start "default_pool_size = 1" "pool_mode = session"
    out=$(pf_psql -q -c "set search_path = pf_nowhere" -c "prepare pf_p as select 1" \
        -c "create temp table pf_tt (a int)" -c "listen pf_x" -c "select pg_backend_pid()" 2>&1)
    assert_eq 0 "$?" "first session: $out"
    pid1=$(tail -n 1 <<<"$out")
    out=$(pf_psql -c "select pg_backend_pid()" -c "show search_path" \
        -c "select count(*) from pg_prepared_statements" -c "select count(*) from pg_listening_channels()" \
        -c "select count(*) from pg_class where relname = 'pf_tt' and relpersistence = 't'" 2>&1)
    assert_eq 0 "$?" "second session: $out"
    pid2=$(head -n 1 <<<"$out")
    assert_eq "$pid1" "$pid2" "the second session must reuse the server (pool of 1)"
    assert_eq $'"$user", public\n0\n0\n0' "$(tail -n +2 <<<"$out")" \
        "search_path, prepared statements, LISTENs, temp tables of the next session"
    _stop_clean
}

# Startup options (PGOPTIONS) of one client must not leak to the next one
# that gets the same server in transaction mode, and come back for the first.
test_transaction_startup_options_isolation() {
    local out
    pf_start "default_pool_size = 1"
    out=$(PGOPTIONS="-c search_path=pf_a -c work_mem=7MB" pf_psql -c "show search_path" -c "show work_mem" 2>&1)
    assert_eq $'pf_a\n7MB' "$out" "client with options"
    out=$(pf_psql -c "show search_path" -c "show work_mem" 2>&1)
    assert_eq $'"$user", public\n4MB' "$out" "client without options on the same server"
    out=$(PGOPTIONS="-c work_mem=9MB" pf_psql -c "show search_path" -c "show work_mem" 2>&1)
    assert_eq $'"$user", public\n9MB' "$out" "client with another option"
    out=$(PGOPTIONS="-c search_path=pf_a -c work_mem=7MB" pf_psql -c "show search_path" -c "show work_mem" 2>&1)
    assert_eq $'pf_a\n7MB' "$out" "the first client's options again"
    # a client whose option the server rejects is refused; the next one is fine
    out=$(PGOPTIONS="-c statement_timeout=pf_bad" pf_psql -c "select 1" 2>&1)
    assert_ne 0 "$?" "a bad option was accepted: $out"
    assert_contains "$out" 'invalid value for parameter "statement_timeout"'
    assert_eq $'0\n4MB' "$(pf_psql -c "show statement_timeout" -c "show work_mem" 2>&1)"
    _stop_clean
}

# ---------------------------------------------------------------- 3. statement mode

# timeout: 60
test_statement_mode() {
    local db=pf_bench_stmt_$$ rc out
    _bench_db "$db"
    pf_start "default_pool_size = 1" "pool_mode = statement"
    assert_eq 1 "$(pf_psql -d "$db" -c 'select 1')"
    rc=0
    _pgbench "$TEST_TMP/bench.out" -n -c 4 -j 2 -T 3 -S "$db" || rc=$?
    _assert_bench_ok "$rc" "$TEST_TMP/bench.out" "statement-mode pgbench -S"
    # one Query holding a whole transaction ends in status I: allowed
    out=$(pf_psql -d "$db" -c 'begin; select 42; commit;' 2>&1)
    assert_eq 0 "$?" "begin; select; commit; in one Query: $out"
    assert_contains "$out" 42

    # BEGIN alone leaves the server in a transaction: refused
    out=$(pf_psql -d "$db" -c 'begin' -c 'select 1' -c 'commit' 2>&1)
    rc=$?
    assert_ne 0 "$rc" "a transaction block was accepted in statement mode: $out"
    assert_contains "$out" "transaction blocks not allowed in statement pooling mode"
    # BEGIN as the only statement fails too: the FATAL comes instead of its
    # ReadyForQuery, so libpq does not report it as done (as with PgBouncer)
    rc=0
    out=$(pf_psql -d "$db" -c 'begin' 2>&1) || rc=$?
    assert_ne 0 "$rc" "psql -c begin succeeded in statement mode: $out"
    assert_contains "$out" "transaction blocks not allowed in statement pooling mode"

    # the pool (of one server) still serves, and not inside that transaction
    out=$(pf_psql -d "$db" -c 'select now() = statement_timestamp()' 2>&1)
    assert_eq t "$out" "next client after the refusal (t = not inside an old transaction)"
    assert_eq "t" "$(pf_psql -d "$db" -c "select txid_current_if_assigned() is null")"
    # the same through the extended protocol (pgbench's BEGIN … END script)
    rc=0
    _pgbench "$TEST_TMP/bench2.out" -n -c 1 -t 3 -M extended "$db" || rc=$?
    assert_ne 0 "$rc" "pgbench tpcb-like ran in statement mode: $(tail -n 5 "$TEST_TMP/bench2.out")"
    assert_contains "$(cat "$TEST_TMP/bench2.out")" "transaction blocks not allowed in statement pooling mode"
    assert_eq t "$(pf_psql -d "$db" -c 'select now() = statement_timestamp()')" "after the extended-protocol refusal"
    rc=0
    _pgbench "$TEST_TMP/bench.out" -n -c 4 -j 2 -T 2 -S -M extended "$db" || rc=$?
    _assert_bench_ok "$rc" "$TEST_TMP/bench.out" "statement-mode pgbench -S -M extended after the refusals"
    pf_alive || fail "pgfunnel died"
    _stop_clean
}

_has_line() { grep -qx -- "$2" "$1" 2>/dev/null; }

# timeout: 60
test_pool_mode_per_database_and_user() {
    local user=pf_sess_user_$$ out fd apid bpid rc
    pg_psql -q -c "create role $user login" || fail "create role"
    _cleanup_add "pg_psql -q -c 'drop role if exists $user'"
    pf_start "default_pool_size = 1" "pool_mode = transaction" \
        "[databases]" "pf_stmt = host=127.0.0.1 port=$PGPORT dbname=postgres pool_mode=statement" \
        "[users]" "$user = pool_mode=session"
    # [databases] pool_mode=statement
    out=$(pf_psql -d pf_stmt -c 'begin' -c 'select 1' 2>&1)
    assert_ne 0 "$?" "a transaction block in the statement-mode database: $out"
    assert_contains "$out" "transaction blocks not allowed in statement pooling mode"
    assert_eq pf_stmt/statement "$(_admin 'show pools' | awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next } $h["database"] == "pf_stmt" { print $h["database"] "/" $h["pool_mode"] }')"
    # the global transaction mode: a transaction block is fine
    out=$(pf_psql -c 'begin' -c "select 'in-tx'" -c 'commit' 2>&1)
    assert_eq 0 "$?" "transaction block in transaction mode: $out"
    assert_contains "$out" in-tx

    # transaction mode: an idle client does not hold the only server
    mkfifo "$TEST_TMP/a.in"
    pf_psql <"$TEST_TMP/a.in" >"$TEST_TMP/a.out" 2>&1 &
    apid=$!
    _cleanup_add "kill $apid"
    exec {fd}>"$TEST_TMP/a.in"
    echo "select 'a-first';" >&"$fd"
    wait_until 10 _has_line "$TEST_TMP/a.out" a-first
    out=$(timeout 10 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d postgres -c "select 'b-served'" 2>&1)
    assert_eq b-served "$out" "second transaction-mode client while the first is idle"
    exec {fd}>&-
    wait "$apid"

    # [users] pool_mode=session: an idle session holds the only server
    "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U "$user" -d postgres \
        <"$TEST_TMP/a.in" >"$TEST_TMP/a.out" 2>&1 &
    apid=$!
    _cleanup_add "kill $apid"
    exec {fd}>"$TEST_TMP/a.in"
    echo "select 'a-first';" >&"$fd"
    wait_until 10 _has_line "$TEST_TMP/a.out" a-first
    # ({fd}>&-: the fifo's write end must not stay open in this child)
    "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U "$user" -d postgres -c "select 'b-served'" \
        >"$TEST_TMP/b.out" 2>&1 {fd}>&- &
    bpid=$!
    _cleanup_add "kill $bpid"
    wait_until 5 _pool_at_least "postgres:$user" cl_waiting 1
    sleep 0.5
    _has_line "$TEST_TMP/b.out" b-served && fail "a second session got the only server while the first was idle"
    assert_eq postgres/session "$(_admin 'show pools' | awk -F, -v u="$user" 'NR == 1 { for (i = 1; i <= NF; i++) h[$i] = i; next } $h["user"] == u { print $h["database"] "/" $h["pool_mode"] }')"
    # the first session ends: the waiting one gets the server
    exec {fd}>&-
    wait "$apid"
    rc=0
    wait "$bpid" || rc=$?
    assert_eq 0 "$rc" "waiting session: $(cat "$TEST_TMP/b.out")"
    assert_eq b-served "$(cat "$TEST_TMP/b.out")"
    _stop_clean
}

# timeout: 60
test_pool_size_per_database_and_user() {
    local db=pf_psize_$$ user=pf_psize_user_$$ rc max
    _new_db "$db"
    pg_psql -q -c "create role $user login" || fail "create role"
    _cleanup_add "pg_psql -q -c 'drop role if exists $user'"
    pf_start "default_pool_size = 10" \
        "[databases]" "pf_small = host=127.0.0.1 port=$PGPORT dbname=$db pool_size=3" \
        "[users]" "$user = pool_size=2"
    printf 'select pg_sleep(0.01);\n' >"$TEST_TMP/sleep.sql"
    # [databases] pool_size=3 beats default_pool_size=10
    _sampler_start "$TEST_TMP/samples" "$db:postgres" "pf_small:postgres"
    rc=0
    _pgbench "$TEST_TMP/b1.out" -n -c 8 -j 2 -T 3 -f "$TEST_TMP/sleep.sql" pf_small || rc=$?
    _sampler_stop
    _assert_bench_ok "$rc" "$TEST_TMP/b1.out" "8 clients on pf_small"
    _assert_samples "$TEST_TMP/samples" 3 5 "pf_small pool_size=3"
    max=$(awk 'BEGIN { m = 0 } $1 > m { m = $1 } END { print m }' "$TEST_TMP/samples")
    assert_eq 3 "$max" "8 busy clients should use all 3 servers of pf_small"
    # [users] pool_size=2 beats the database's pool_size=3
    _sampler_start "$TEST_TMP/samples" "$db:$user" "pf_small:$user"
    rc=0
    pgbench -h 127.0.0.1 -p "$PF_PORT" -U "$user" -n -c 8 -j 2 -T 3 -f "$TEST_TMP/sleep.sql" pf_small \
        >"$TEST_TMP/b2.out" 2>&1 || rc=$?
    _sampler_stop
    _assert_bench_ok "$rc" "$TEST_TMP/b2.out" "8 clients of $user on pf_small"
    _assert_samples "$TEST_TMP/samples" 2 5 "pf_small for $user (pool_size=2)"
    _stop_clean
}

# ---------------------------------------------------------------- 4. COPY

_md5_table() { # TABLE [psql runner] — count and md5 of all rows in key order
    ${2:-pg_psql} -c "select count(*) || ' ' || md5(string_agg(t::text, E'\n' order by id)) from $1 t"
}

# timeout: 120
test_copy_roundtrip_100mb() {
    local t=pf_copy_src_$$ t2=pf_copy_dst_$$ size src dst got hwm
    _cleanup_add "pg_psql -q -c 'drop table if exists $t, $t2'"
    pg_psql -q -c "create table $t (id int primary key, v text)" \
        -c "insert into $t select g, repeat(md5(g::text), 30) || g from generate_series(1, 105000) g" \
        -c "create table $t2 (like $t including all)" || fail "could not create $t"
    pf_start "default_pool_size = 4"
    pf_psql -c "\\copy $t to '$TEST_TMP/out1' " || fail "\\copy to through pgfunnel failed"
    size=$(stat -c %s "$TEST_TMP/out1")
    echo "COPY output: $size bytes"
    [ "$size" -ge 100000000 ] || fail "COPY output is only $size bytes"
    pf_psql -c "\\copy $t2 from '$TEST_TMP/out1'" || fail "\\copy from through pgfunnel failed"
    pf_psql -c "\\copy $t2 to '$TEST_TMP/out2'" || fail "second \\copy to through pgfunnel failed"
    cmp "$TEST_TMP/out1" "$TEST_TMP/out2" || fail "COPY files differ"
    # the file itself is what the server holds (read directly, no pgfunnel)
    "$PG_BINDIR/psql" -X -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres \
        -c "\\copy $t to '$TEST_TMP/direct'" || fail "direct \\copy failed"
    cmp "$TEST_TMP/out1" "$TEST_TMP/direct" || fail "COPY through pgfunnel differs from a direct COPY"
    src=$(_md5_table "$t")
    dst=$(_md5_table "$t2")
    assert_eq 105000 "${src%% *}" "source row count"
    assert_eq "$src" "$dst" "row count and md5 of the copied table"
    # a client that reads slowly: the pooler must hold back, not buffer 100 MB
    got=$(pf_psql -c "copy $t to stdout" | (sleep 2 && md5sum))
    assert_eq "$(md5sum <"$TEST_TMP/out1")" "$got" "COPY to a slow reader"
    pf_alive || fail "pgfunnel died"
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$PF_PID/status")
    echo "pgfunnel peak RSS: $hwm kB"
    [ "$hwm" -lt 65536 ] || fail "pgfunnel peak RSS $hwm kB after streaming 100 MB: it buffers instead of streaming"
    _stop_clean
}

# timeout: 60
test_copy_rows_larger_than_pkt_buf() {
    local t=pf_copybig_src_$$ t2=pf_copybig_dst_$$ want got
    _cleanup_add "pg_psql -q -c 'drop table if exists $t, $t2'"
    # 1 MB rows (and one of 3 MB) of varied text
    pg_psql -q -c "create table $t (id int primary key, v text)" \
        -c "insert into $t select i, (select string_agg(md5((i * 100000 + g)::text), '') from generate_series(1, 32768) g) from generate_series(1, 8) i" \
        -c "insert into $t select 9, repeat(v, 3) from $t where id = 1" \
        -c "create table $t2 (like $t including all)" || fail "could not create $t"
    pf_start "pkt_buf = 1024" "default_pool_size = 2"
    pf_psql -c "\\copy $t to '$TEST_TMP/out1'" || fail "\\copy to failed"
    pf_psql -c "\\copy $t2 from '$TEST_TMP/out1'" || fail "\\copy from failed"
    pf_psql -c "\\copy $t2 to '$TEST_TMP/out2'" || fail "second \\copy to failed"
    cmp "$TEST_TMP/out1" "$TEST_TMP/out2" || fail "COPY files differ"
    assert_eq "$(_md5_table "$t")" "$(_md5_table "$t2")" "source and copy"
    # a 1 MB value selected through the pooler comes back intact
    want=$(pg_psql -c "select md5(v) from $t where id = 3")
    got=$(pf_psql -c "select v from $t where id = 3" | tr -d '\n' | md5sum | cut -d' ' -f1)
    assert_eq "$want" "$got" "md5 of a 1 MB value selected through pgfunnel"
    want=$(pg_psql -c "select md5(v) from $t where id = 9")
    got=$(pf_psql -c "select v from $t where id = 9" | tr -d '\n' | md5sum | cut -d' ' -f1)
    assert_eq "$want" "$got" "md5 of a 3 MB value selected through pgfunnel"
    pf_alive || fail "pgfunnel died"
    _stop_clean
}

# ---------------------------------------------------------------- 5./6. notifications, notices

_listening() { # APPNAME — a backend with that application_name sleeps
    [ "$(pg_psql -c "select count(*) from pg_stat_activity where application_name = '$1' and query like 'select pg_sleep%' and state = 'active'")" = 1 ]
}

test_listen_notify_session_mode() {
    local app=pf_listen_$$ out lpid
    pf_start "pool_mode = session"
    PGAPPNAME=$app pf_psql -c 'listen pf_chan' -c 'select pg_sleep(3)' -c 'select 1' \
        >"$TEST_TMP/listen.out" 2>&1 &
    lpid=$!
    _cleanup_add "kill $lpid"
    wait_until 10 _listening "$app"
    out=$(pf_psql -c "notify pf_chan, 'payload-$$'" 2>&1)
    assert_eq 0 "$?" "notify: $out"
    wait "$lpid"
    assert_eq 0 "$?" "listening psql: $(cat "$TEST_TMP/listen.out")"
    out=$(cat "$TEST_TMP/listen.out")
    assert_contains "$out" "Asynchronous notification \"pf_chan\" with payload \"payload-$$\" received"

    # a notification that arrives while the listening session is idle
    local fd
    mkfifo "$TEST_TMP/l.in"
    PGAPPNAME=${app}_idle pf_psql <"$TEST_TMP/l.in" >"$TEST_TMP/l.out" 2>&1 &
    lpid=$!
    _cleanup_add "kill $lpid"
    exec {fd}>"$TEST_TMP/l.in"
    echo "listen pf_chan2; select 'listening';" >&"$fd"
    wait_until 10 _has_line "$TEST_TMP/l.out" listening
    out=$(pf_psql -c "notify pf_chan2, 'idle-payload-$$'" 2>&1)
    assert_eq 0 "$?" "notify: $out"
    sleep 0.5 # the notification is now in the listener's socket, or lost
    echo "select 'next';" >&"$fd"
    exec {fd}>&-
    wait "$lpid"
    assert_eq 0 "$?" "idle listener: $(cat "$TEST_TMP/l.out")"
    assert_contains "$(cat "$TEST_TMP/l.out")" "Asynchronous notification \"pf_chan2\" with payload \"idle-payload-$$\" received"
    _stop_clean
}

test_notice_passes_through() {
    local out
    pf_start
    out=$(pf_psql -c "do \$\$ begin raise notice 'hello-notice'; raise warning 'hello-warning'; end \$\$" -c "select 'after'" 2>&1)
    assert_eq 0 "$?" "psql: $out"
    assert_contains "$out" "NOTICE:  hello-notice"
    assert_contains "$out" "WARNING:  hello-warning"
    assert_contains "$out" "after"
    # a notice followed by an error in the same statement
    out=$(pf_psql -c "do \$\$ begin raise notice 'before-error'; raise exception 'the-error'; end \$\$" 2>&1)
    assert_ne 0 "$?" "the exception did not fail psql: $out"
    assert_contains "$out" "NOTICE:  before-error"
    assert_contains "$out" "ERROR:  the-error"
    # the pooled server is fine afterwards
    assert_eq 1 "$(pf_psql -c 'select 1')"
    _stop_clean
}

# ---------------------------------------------------------------- 7./8. transaction-mode sharing

# timeout: 60
test_transaction_sharing_pool_2() {
    local db=pf_share_$$ i j pids=() rc bad n host
    _new_db "$db"
    pg_psql -d "$db" -q -c "create table t (client int, tx int, step int, pid int)" || fail "create table"
    pf_start "default_pool_size = 2"
    for ((i = 1; i <= 20; i++)); do
        for ((j = 1; j <= 20; j++)); do
            echo "begin;"
            echo "insert into t values ($i, $j, 1, pg_backend_pid());"
            echo "select pg_sleep(0.01);"
            echo "insert into t values ($i, $j, 2, pg_backend_pid());"
            echo "commit;"
        done >"$TEST_TMP/script.$i"
    done
    _sampler_start "$TEST_TMP/samples" "$db"
    for ((i = 1; i <= 20; i++)); do
        # even clients come through the unix socket (psql: the last -h wins)
        host=127.0.0.1
        [ $((i % 2)) -eq 0 ] && host=$TEST_TMP
        pf_psql -h "$host" -d "$db" -q -v ON_ERROR_STOP=1 -f "$TEST_TMP/script.$i" >"$TEST_TMP/out.$i" 2>&1 &
        pids+=($!)
    done
    bad=0
    for ((i = 1; i <= 20; i++)); do
        rc=0
        wait "${pids[$((i - 1))]}" || rc=$?
        if [ $rc -ne 0 ]; then
            bad=$((bad + 1))
            echo "client $i: exit $rc: $(tail -n 3 "$TEST_TMP/out.$i")"
        fi
    done
    sleep 0.5 # at least a couple of samples after the last client
    _sampler_stop
    [ $bad -eq 0 ] || fail "$bad of 20 psql clients failed"
    assert_eq 800 "$(pg_psql -d "$db" -c 'select count(*) from t')" "rows inserted"
    assert_eq 0 "$(pg_psql -d "$db" -c 'select count(*) from (select client, tx from t group by 1, 2 having count(distinct pid) > 1) x')" \
        "transactions whose statements ran on different servers"
    n=$(pg_psql -d "$db" -c 'select count(distinct pid) from t')
    [ "$n" -le 2 ] || fail "$n distinct backends served a pool of size 2"
    _assert_samples "$TEST_TMP/samples" 2 5 "20 clients on a pool of 2"
    _stop_clean
}

# timeout: 60
test_transaction_stays_on_one_server() {
    local db=pf_stick_$$ bpid rc i out a b
    _new_db "$db"
    pf_start "default_pool_size = 2"
    printf 'select pg_sleep(0.002);\n' >"$TEST_TMP/hammer.sql"
    _pgbench "$TEST_TMP/hammer.out" -n -c 10 -j 2 -T 6 -f "$TEST_TMP/hammer.sql" "$db" &
    bpid=$!
    _cleanup_add "kill $bpid"
    sleep 0.5
    for ((i = 1; i <= 10; i++)); do
        out=$(pf_psql -q -d "$db" -c 'begin' -c "select pg_backend_pid() || ':' || txid_current()" \
            -c 'select pg_sleep(0.05)' -c "select pg_backend_pid() || ':' || txid_current()" -c 'commit' 2>&1)
        assert_eq 0 "$?" "transaction $i: $out"
        a=$(grep ':' <<<"$out" | sed -n 1p)
        b=$(grep ':' <<<"$out" | sed -n 2p)
        [ -n "$a" ] || fail "transaction $i: no pid in: $out"
        assert_eq "$a" "$b" "transaction $i: pid:txid of the first and the last statement"
    done
    rc=0
    wait "$bpid" || rc=$?
    _assert_bench_ok "$rc" "$TEST_TMP/hammer.out" "10 hammering clients"
    _stop_clean
}

# psql sends a CancelRequest on SIGINT; pgfunnel must route it to the server.
test_cancel_request() {
    local out t0 dt
    pf_start "default_pool_size = 1"
    t0=$(date +%s%3N)
    out=$(timeout -s INT 1 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d postgres \
        -c 'select pg_sleep(20)' 2>&1)
    dt=$(($(date +%s%3N) - t0))
    assert_contains "$out" "canceling statement due to user request"
    [ "$dt" -lt 10000 ] || fail "the cancelled query took $dt ms"
    # the server went back to the pool (of one) and serves the next client
    assert_eq 1 "$(timeout 10 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d postgres -c 'select 1' 2>&1)"
    _stop_clean
}

# ---------------------------------------------------------------- 9. login errors

test_unknown_database_errors() {
    local out missing=pf_missing_$$
    # without the "*" entry an unknown name is the pooler's own error
    pf_write_ini "server_login_retry = 1" "[databases]" "nodb = host=127.0.0.1 port=$PGPORT dbname=$missing"
    sed -i '/^\* = /d' "$PF_INI"
    pf_launch
    wait_until 10 port_open "$PF_PORT"
    out=$(_startup_error "pf_unknown_$$")
    assert_contains "$out" $'\n'"C3D000"$'\n' "SQLSTATE of an unknown database"
    assert_contains "$out" "no such database"
    out=$(pf_psql -d "pf_unknown_$$" -c 'select 1' 2>&1)
    assert_ne 0 "$?" "psql to an unknown database succeeded: $out"
    assert_contains "$out" "no such database"

    # an entry whose backend database does not exist: the backend's error
    out=$(pf_psql -d nodb -c 'select 1' 2>&1)
    assert_ne 0 "$?" "psql to nodb succeeded: $out"
    assert_contains "$out" "database \"$missing\" does not exist"
    out=$(_startup_error nodb)
    assert_contains "$out" $'\n'"C3D000"$'\n' "SQLSTATE of the backend's error"
    assert_contains "$out" "database \"$missing\" does not exist"
    # once more: a cached failure (server_login_retry) gives the same answer
    out=$(pf_psql -d nodb -c 'select 1' 2>&1)
    assert_contains "$out" "database \"$missing\" does not exist"
    pf_alive || fail "pgfunnel died"
    assert_eq 1 "$(pf_psql -c 'select 1')" "the postgres entry still works"

    # the database appears: after server_login_retry the entry works
    _new_db "$missing"
    wait_until 10 pf_psql -d nodb -c 'select 1'
    assert_eq "$missing" "$(pf_psql -d nodb -c 'select current_database()')"
    _stop_clean
}

test_wildcard_missing_database() {
    local out
    pf_start
    out=$(pf_psql -d "pf_nosuch_$$" -c 'select 1' 2>&1)
    assert_ne 0 "$?" "psql to a missing database succeeded: $out"
    assert_contains "$out" "database \"pf_nosuch_$$\" does not exist"
    out=$(_startup_error "pf_nosuch2_$$")
    assert_contains "$out" $'\n'"C3D000"$'\n' "SQLSTATE through the * entry"
    assert_eq 1 "$(pf_psql -c 'select 1')"
    _stop_clean
}

# ---------------------------------------------------------------- 10. max_client_conn

test_max_client_conn() {
    local i fds=() pids=() fd out rc
    pf_start "max_client_conn = 5" "default_pool_size = 5"
    for ((i = 1; i <= 5; i++)); do
        mkfifo "$TEST_TMP/in.$i"
        # the children must not keep the write ends of the other fifos open
        (
            for fd in "${fds[@]}"; do exec {fd}>&-; done
            pf_psql <"$TEST_TMP/in.$i" >"$TEST_TMP/out.$i" 2>&1
        ) &
        pids+=($!)
        _cleanup_add "kill ${pids[-1]}"
        exec {fd}>"$TEST_TMP/in.$i"
        fds+=("$fd")
        echo "select 'first$i';" >&"$fd"
    done
    for ((i = 1; i <= 5; i++)); do
        wait_until 10 _has_line "$TEST_TMP/out.$i" "first$i"
    done
    out=$(pf_psql -c 'select 1' 2>&1)
    rc=$?
    assert_ne 0 "$rc" "the 6th client got in: $out"
    assert_contains "$out" "no more connections allowed (max_client_conn)"
    # the first five still work
    for ((i = 1; i <= 5; i++)); do
        fd=${fds[$((i - 1))]}
        echo "select 'second$i';" >&"$fd"
        exec {fd}>&-
    done
    for ((i = 1; i <= 5; i++)); do
        rc=0
        wait "${pids[$((i - 1))]}" || rc=$?
        assert_eq 0 "$rc" "client $i: $(cat "$TEST_TMP/out.$i")"
        _has_line "$TEST_TMP/out.$i" "second$i" || fail "client $i after the rejection: $(cat "$TEST_TMP/out.$i")"
    done
    # once they are gone there is room again
    wait_until 5 pf_psql -c 'select 1'
    _stop_clean
}

# ---------------------------------------------------------------- 11. pipelining

# timeout: 60
test_pipeline_transaction_pool_1() {
    local tool=$TOOLS_DIR/pq_pipeline db=pf_pipe_$$ bpid p1 p2 p3 rc conninfo out
    [ -x "$tool" ] || fail "$tool is not built (make $tool)"
    _new_db "$db"
    pf_start "default_pool_size = 1"
    conninfo="host=127.0.0.1 port=$PF_PORT user=postgres dbname=$db"
    printf 'select pg_backend_pid();\nselect 1;\n' >"$TEST_TMP/other.sql"
    _sampler_start "$TEST_TMP/samples" "$db"
    _pgbench "$TEST_TMP/other.out" -n -c 3 -j 1 -T 4 -f "$TEST_TMP/other.sql" "$db" &
    bpid=$!
    _cleanup_add "kill $bpid"
    timeout 40 "$tool" -n 150 -t a "$conninfo" >"$TEST_TMP/p1.out" 2>&1 &
    p1=$!
    timeout 40 "$tool" -n 150 -t b "$conninfo" >"$TEST_TMP/p2.out" 2>&1 &
    p2=$!
    # long pipelines whose results fill the socket buffers (backpressure both ways)
    timeout 40 "$tool" -n 3 -q 20000 -t c "$conninfo" >"$TEST_TMP/p3.out" 2>&1 &
    p3=$!
    rc=0
    wait "$p1" || rc=$?
    assert_eq 0 "$rc" "pipeline client a: $(tail -n 20 "$TEST_TMP/p1.out")"
    rc=0
    wait "$p2" || rc=$?
    assert_eq 0 "$rc" "pipeline client b: $(tail -n 20 "$TEST_TMP/p2.out")"
    rc=0
    wait "$p3" || rc=$?
    assert_eq 0 "$rc" "pipeline client c (-q 20000): $(tail -n 20 "$TEST_TMP/p3.out")"
    rc=0
    wait "$bpid" || rc=$?
    _sampler_stop
    _assert_bench_ok "$rc" "$TEST_TMP/other.out" "concurrent simple-protocol client"
    _assert_samples "$TEST_TMP/samples" 1 5 "pipelines on a pool of 1"
    # a pipeline outside the hammering, also extended protocol through a quiet pool
    out=$(timeout 20 "$tool" -n 5 -t d "$conninfo" 2>&1)
    assert_eq 0 "$?" "pipeline client d: $out"
    _stop_clean
}

# ---------------------------------------------------------------- 12. large messages

# timeout: 60
test_large_messages_small_pkt_buf() {
    local want got out
    pf_start "pkt_buf = 1024" "default_pool_size = 2"
    # rows larger than the buffer, in transaction mode
    want=$(pg_psql -c "select g, repeat(md5(g::text), 40000) from generate_series(1, 5) g" | md5sum)
    got=$(pf_psql -c "select g, repeat(md5(g::text), 40000) from generate_series(1, 5) g" | md5sum)
    assert_eq "$want" "$got" "md5 of 5 rows of 1.28 MB each"
    # a 10 MB query text
    {
        printf "select length('"
        head -c 10485760 /dev/zero | tr '\0' 'a'
        printf "'), md5('"
        head -c 10485760 /dev/zero | tr '\0' 'b'
        printf "');\n"
    } >"$TEST_TMP/big.sql"
    want="10485760|$(head -c 10485760 /dev/zero | tr '\0' 'b' | md5sum | cut -d' ' -f1)"
    out=$(pf_psql -f "$TEST_TMP/big.sql" 2>&1)
    assert_eq "$want" "$out" "a 20 MB query"
    # extended protocol: a 3 MB parameter and a 3 MB result row, and many
    # small messages that straddle the 1 kB buffers
    out=$(timeout 30 "$TOOLS_DIR/pq_pipeline" -n 3 -q 5000 -b 3000000 "host=127.0.0.1 port=$PF_PORT user=postgres dbname=postgres" 2>&1)
    assert_eq 0 "$?" "pq_pipeline -q 5000 -b 3000000: $out"
    # and the pool still works for small things
    assert_eq 1 "$(pf_psql -c 'select 1')"
    pf_alive || fail "pgfunnel died"
    _stop_clean
}
