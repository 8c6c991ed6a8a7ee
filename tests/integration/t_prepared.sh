# shellcheck shell=bash
# t_prepared.sh — named prepared statements in transaction mode (issue #6):
# libpq scenarios of tools/pq_prepared.c, pgbench -M prepared, node-postgres.
#
# Most scenarios use default_pool_size = 2 and "hog" connections that hold one
# server in a transaction, so a statement prepared on one server is used on
# the other (see tools/pq_prepared.c).

PQ_PREPARED=$TOOLS_DIR/pq_prepared

# shellcheck source=tests/integration/session.sh
source "$(dirname "${BASH_SOURCE[0]}")/session.sh"

_ps_start() { # [INI LINE…]: pgfunnel in transaction mode with a pool of 2
    [ -x "$PQ_PREPARED" ] || fail "$PQ_PREPARED missing (make build/tools/pq_prepared)"
    pf_start "default_pool_size = 2" "$@"
    PS_CONNINFO="host=127.0.0.1 port=$PF_PORT user=postgres dbname=postgres"
}

_ps_run() { # SCENARIO [ARG…]: run it, print its output, fail the test if a check failed
    local out rc
    out=$("$PQ_PREPARED" "$1" "$PS_CONNINFO" "${@:2}" 2>&1)
    rc=$?
    printf '%s\n' "$out"
    [ $rc -eq 0 ] || fail "pq_prepared $* failed (rc=$rc):"$'\n'"$out"
    pf_alive || fail "pgfunnel died"
}

# ---------------------------------------------------------------- libpq scenarios

# timeout: 40
test_prepare_on_one_server_execute_on_another() {
    _ps_start
    _ps_run cross
    pf_stop
}

# timeout: 40
test_same_text_different_param_types_are_different_statements() {
    _ps_start
    _ps_run types
    pf_stop
}

# timeout: 40
test_describe_prepared_on_server_that_never_parsed_it() {
    _ps_start
    _ps_run describe
    pf_stop
}

# timeout: 40
test_parse_error_reported_and_leaves_no_stale_entry() {
    _ps_start
    _ps_run parse_error
    pf_stop
}

# An error in a pipeline makes PostgreSQL skip everything up to Sync, including a
# later Parse that pgfunnel answers locally (the server already has the text):
# the client's name must not survive.
# timeout: 40
test_parse_skipped_after_pipeline_error_leaves_no_entry() {
    _ps_start
    _ps_run pipeline_error
    pf_stop
}

# PostgreSQL refuses Parse and DEALLOCATE ALL in an aborted transaction: a Parse
# of a text the server already has must not be answered locally with success,
# and the refused DEALLOCATE ALL must not drop the client's names.
# timeout: 40
test_parse_and_deallocate_refused_in_aborted_transaction() {
    _ps_start
    _ps_run aborted_tx
    pf_stop
}

# timeout: 40
test_close_then_reparse_other_text_raw_protocol() {
    _ps_start
    _ps_run close_reparse
    pf_stop
}

# A Parse reusing a name in use gets PostgreSQL's 42P05 and the rest of the
# pipeline is skipped, as PostgreSQL does (the scenario passes against it too).
# timeout: 40
test_parse_of_name_in_use_gets_42P05_raw_protocol() {
    local out
    [ -x "$PQ_PREPARED" ] || fail "$PQ_PREPARED missing"
    out=$("$PQ_PREPARED" duplicate "host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres" 2>&1) ||
        fail "the scenario fails against PostgreSQL itself:"$'\n'"$out"
    _ps_start
    _ps_run duplicate
    pf_stop
}

# timeout: 40
test_pipelined_answers_in_order_raw_protocol() {
    _ps_start
    _ps_run raw_order
    pf_stop
}

# timeout: 50
test_lru_eviction_with_max_prepared_statements_3() {
    local i pids=() rc=0
    _ps_start "max_prepared_statements = 3"
    # other clients with their own statements evict from the same two servers meanwhile
    for i in 1 2; do
        "$PQ_PREPARED" stress "$PS_CONNINFO" "$i" 300 >"$TEST_TMP/stress$i.out" 2>&1 &
        pids+=($!)
    done
    _ps_run lru 3
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { rc=1; cat "$TEST_TMP/stress$((i + 1)).out"; }
    done
    [ $rc -eq 0 ] || fail "a concurrent client failed"
    pf_stop
}

# timeout: 40
test_deallocate_all_and_discard_all_forget_client_names() {
    _ps_start
    _ps_run deallocate
    pf_stop
}

# Drivers that send every query with the extended protocol (PQexecParams,
# psycopg 3, JDBC) send DEALLOCATE ALL / DISCARD ALL as an unnamed Parse: the
# server's pgf_N statements go away, so the pooler must not keep them cached.
# timeout: 40
test_extended_protocol_deallocate_all_does_not_break_other_clients() {
    _ps_start
    _ps_run deallocate_extended
    pf_stop
}

# timeout: 40
test_libpq_pipeline_parse_bind_execute_before_one_sync() {
    _ps_start
    _ps_run pipeline
    pf_stop
}

# timeout: 50
test_concurrent_clients_share_statements_across_servers() {
    local i pids=() rc=0 n
    _ps_start
    for i in $(seq 1 8); do
        "$PQ_PREPARED" stress "$PS_CONNINFO" "$i" 1500 >"$TEST_TMP/stress$i.out" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { rc=1; cat "$TEST_TMP/stress$((i + 1)).out"; }
    done
    [ $rc -eq 0 ] || fail "a client failed"
    pf_alive || fail "pgfunnel died"
    # 5 texts shared by all 8 clients + 8 private ones: at most 13 per server, not 48
    n=$(pf_psql -c "select count(*) from pg_prepared_statements")
    [ "$n" -le 13 ] || fail "$n statements on a server for 13 distinct ones"
    pf_stop
}

# timeout: 50
test_statement_mode_concurrent_clients() {
    local i pids=() rc=0
    _ps_start "pool_mode = statement"
    for i in $(seq 1 6); do
        "$PQ_PREPARED" stress "$PS_CONNINFO" "$i" 1000 notx >"$TEST_TMP/stress$i.out" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { rc=1; cat "$TEST_TMP/stress$((i + 1)).out"; }
    done
    [ $rc -eq 0 ] || fail "a client failed"
    pf_alive || fail "pgfunnel died"
    pf_stop
}

# timeout: 30
test_transaction_mode_servers_see_internal_names() {
    _ps_start
    _ps_run names internal
    pf_stop
}

# timeout: 30
test_session_mode_passes_names_through() {
    _ps_start "pool_mode = session"
    _ps_run names client
    pf_stop
}

# timeout: 30
test_max_prepared_statements_0_passes_names_through() {
    _ps_start "max_prepared_statements = 0"
    _ps_run names client
    pf_stop
}

# ---------------------------------------------------------------- pgbench

_bench_db() { # create and initialize pf_ps_bench (scale 1) once per sandbox
    if [ "$(pg_psql -c "select 1 from pg_database where datname = 'pf_ps_bench'")" != 1 ]; then
        pg_psql -q -c "create database pf_ps_bench" || fail "create database"
    fi
    if [ "$(pg_psql -d pf_ps_bench -c "select to_regclass('pgbench_branches') is not null")" != t ]; then
        pgbench -h 127.0.0.1 -p "$PGPORT" -U postgres -i -q -s 1 pf_ps_bench >"$TEST_TMP/init.out" 2>&1 ||
            fail "pgbench -i: $(tail -n 5 "$TEST_TMP/init.out")"
    fi
}

_bench() { # NAME ARG…: pgbench through pgfunnel; sets BENCH_TPS; fails on any failed transaction
    local name=$1 out failed
    shift
    out=$(pgbench -h 127.0.0.1 -p "$PF_PORT" -U postgres -n -c 50 -T 5 "$@" pf_ps_bench 2>&1)
    printf '%s\n' "$out" >"$TEST_TMP/$name.out"
    BENCH_TPS=$(sed -n 's/^tps = \([0-9.]*\) .*/\1/p' <<<"$out" | tail -n 1)
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out")
    [ -n "$BENCH_TPS" ] || fail "$name: no tps in pgbench output:"$'\n'"$(tail -n 20 <<<"$out")"
    assert_eq 0 "${failed:-0}" "$name: failed transactions"
    assert_not_contains "$out" "does not exist" "$name"
    assert_not_contains "$out" "error" "$name"
    echo "$name: tps $BENCH_TPS"
}

# Sum of pg_prepared_statements over all servers of the pool (5 sessions each
# hold one server in a transaction, so each sees a different one).
_server_parses() {
    local i total=0 seen=""
    for i in 1 2 3 4 5; do _sess_open "s$i" "dbname=pf_ps_bench"; done
    for i in 1 2 3 4 5; do
        _sess_run "s$i" "BEGIN;" || fail "session s$i"
        _sess_run "s$i" "select pg_backend_pid() || ' ' || count(*) from pg_prepared_statements;" ||
            fail "session s$i"
        seen+=" ${SESS_OUT%% *}"
        total=$((total + ${SESS_OUT##* }))
    done
    for i in 1 2 3 4 5; do
        _sess_run "s$i" "COMMIT;" >/dev/null
        _sess_close "s$i"
    done
    [ "$(tr ' ' '\n' <<<"$seen" | sed '/^$/d' | sort -u | wc -l)" = 5 ] ||
        fail "expected 5 distinct servers, got:$seen"
    SERVER_PARSES=$total
}

_bench_compare() { # SCRIPT NCOMMANDS PGBENCH-ARG…
    local script=$1 ncmd=$2 tps_prep tps_ext
    shift 2
    _bench_db
    pf_start "default_pool_size = 5" "max_client_conn = 200"
    # prepared first: it does not profit from a warmer cache than extended
    _bench "$script-prepared" -b "$script" -M prepared "$@"
    tps_prep=$BENCH_TPS
    _bench "$script-extended" -b "$script" -M extended "$@"
    tps_ext=$BENCH_TPS
    _server_parses
    # pgbench prepares each of the script's commands once per client connection
    echo "$script: client parses $((50 * ncmd)), server parses $SERVER_PARSES (5 servers)"
    echo "$script: tps -M prepared $tps_prep, -M extended $tps_ext"
    [ "$SERVER_PARSES" -ge 1 ] || fail "no statement on any server"
    [ "$SERVER_PARSES" -le $((5 * ncmd)) ] ||
        fail "$SERVER_PARSES server parses for $ncmd statements on 5 servers"
    # No timing comparison here: two 5-second runs on a loaded 2-core machine
    # differ at random.  `make bench` compares -M prepared with -M extended.
    pf_stop
}

# timeout: 55
test_pgbench_select_only_prepared_50_clients_pool_5() {
    _bench_compare select-only 1 -j 2
}

# PostgreSQL 15's pgbench prepares each statement with a synchronous PQprepare
# on first use, which blocks the whole pgbench thread.  With transaction pooling
# and more clients per thread than servers, the thread's other clients hold
# servers mid-transaction while it waits for one: pgbench deadlocks itself (so
# would it through PgBouncer).  Hence -j 50, one thread per client, for both modes.
# timeout: 55
test_pgbench_tpcb_like_prepared_50_clients_pool_5() {
    _bench_compare tpcb-like 7 -j 50
}

# ---------------------------------------------------------------- node-postgres

_node_pg_dir() { # prints a directory with node_modules/pg, installing it once
    local dir=/tmp/pgfunnel-npm-pg-8
    if [ ! -f "$dir/node_modules/pg/package.json" ]; then
        mkdir -p "$dir" || return 1
        (cd "$dir" && timeout 40 npm install --no-audit --no-fund --silent pg@8) >"$TEST_TMP/npm.log" 2>&1 ||
            return 1
    fi
    echo "$dir"
}

# timeout: 55
test_node_postgres_named_queries_transaction_mode() {
    local dir out
    if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
        skip "node or npm not installed"
    fi
    dir=$(_node_pg_dir) || skip "npm install pg failed: $(tail -n 3 "$TEST_TMP/npm.log" 2>/dev/null)"
    _ps_start
    cat >"$TEST_TMP/named.js" <<'EOF'
const { Client } = require(process.argv[2] + '/node_modules/pg');
const port = +process.argv[3];
const NCLIENTS = 8, LOOPS = 150;
let errors = 0, done = 0;
async function worker(id) {
  const c = new Client({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres' });
  await c.connect();
  for (let i = 0; i < LOOPS; i++) {
    try {
      const r1 = await c.query({ name: 'q1', text: 'select $1::int + 1 as v', values: [i] });
      if (r1.rows[0].v !== i + 1) throw new Error(`q1(${i}) = ${r1.rows[0].v}`);
      // the same name means another text in every client
      const r2 = await c.query({ name: 'q2', text: `select $1::int * ${id} as v`, values: [i] });
      if (r2.rows[0].v !== i * id) throw new Error(`q2(${i}) = ${r2.rows[0].v}`);
      if (i % 5 === 0) {
        await c.query('BEGIN');
        const r3 = await c.query({ name: 'q3', text: 'select $1::text || $2::text as v', values: ['a', String(i)] });
        if (r3.rows[0].v !== 'a' + i) throw new Error(`q3(${i}) = ${r3.rows[0].v}`);
        await c.query({ name: 'q1', text: 'select $1::int + 1 as v', values: [0] });
        await c.query('COMMIT');
      }
      done++;
    } catch (e) {
      errors++;
      if (errors <= 5) console.error(`client ${id} loop ${i}: ${e.message}`);
    }
  }
  await c.end();
}
Promise.all(Array.from({ length: NCLIENTS }, (_, k) => worker(k + 1)))
  .then(() => { console.log(`done ${done} errors ${errors}`); process.exit(errors ? 1 : 0); })
  .catch((e) => { console.error('fatal: ' + e.message); process.exit(2); });
EOF
    out=$(timeout 40 node "$TEST_TMP/named.js" "$dir" "$PF_PORT" 2>&1) ||
        fail "node-postgres named queries:"$'\n'"$out"
    echo "$out"
    assert_contains "$out" "done 1200 errors 0"
    assert_not_contains "$out" "does not exist"
    pf_alive || fail "pgfunnel died"
    pf_stop
}
