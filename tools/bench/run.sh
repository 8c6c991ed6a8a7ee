#!/bin/bash
# tools/bench/run.sh — `make bench`: pgbench against direct PostgreSQL,
# PgBouncer and pgfunnel, in alternating rounds, on one sandbox cluster.
#
#   bash tools/bench/run.sh             full run (about 13 minutes)
#   BENCH_QUICK=1 bash tools/bench/run.sh   smoke test: 3 s runs, 1 round
#
# Environment: PGFUNNEL_BIN (./pgfunnel), IDLE_CLIENTS_BIN
# (build/tools/idle_clients), BENCH_SECONDS (6; 3 quick), BENCH_ROUNDS (3;
# 1 quick), BENCH_IDLE_CLIENTS (10000; 2000 quick), BENCH_SCALE (10),
# BENCH_POOL (20), BENCH_LOOPS (the event_loops axis beside 1: "2 auto"),
# BENCH_OUT (results file; default
# tools/bench/results/<date>.md, <date>-quick.md in quick mode),
# PGBOUNCER_BIN (pgbouncer on PATH), KEEP_TMP=1.
#
# Every target sees the same pgbench command in the same round; a round runs
# the targets one after another (direct, PgBouncer, pgfunnel[, PgBouncer #2])
# so that drift on a shared machine hits all of them alike, and the table
# reports medians over rounds and medians of the per-round (paired) ratios.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$HERE/../.." && pwd -P)
PGSANDBOX=$REPO_ROOT/tools/pgsandbox
PGFUNNEL_BIN=${PGFUNNEL_BIN:-$REPO_ROOT/pgfunnel}
IDLE_BIN=${IDLE_CLIENTS_BIN:-$REPO_ROOT/build/tools/idle_clients}
case $PGFUNNEL_BIN in /*) ;; *) PGFUNNEL_BIN=$PWD/$PGFUNNEL_BIN ;; esac
case $IDLE_BIN in /*) ;; *) IDLE_BIN=$PWD/$IDLE_BIN ;; esac

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    SECS=${BENCH_SECONDS:-3}
    ROUNDS=${BENCH_ROUNDS:-1}
    IDLE_N=${BENCH_IDLE_CLIENTS:-2000}
else
    SECS=${BENCH_SECONDS:-6}
    ROUNDS=${BENCH_ROUNDS:-3}
    IDLE_N=${BENCH_IDLE_CLIENTS:-10000}
fi
SCALE=${BENCH_SCALE:-10}
POOL=${BENCH_POOL:-20}
THREADS=2
MAX_CLIENT_CONN=$((IDLE_N + 600))
[ "$MAX_CLIENT_CONN" -lt 10500 ] && MAX_CLIENT_CONN=10500
NOFILE=$((MAX_CLIENT_CONN * 2 + 1000))
DB=pgfunnel_test
STAMP=$(date +%Y-%m-%d_%H%M%S)
RESULTS_DIR=$HERE/results
if [ "$QUICK" = 1 ]; then OUT=${BENCH_OUT:-$RESULTS_DIR/$STAMP-quick.md}; else OUT=${BENCH_OUT:-$RESULTS_DIR/$STAMP.md}; fi

PG_BINDIR=$(
    d=$(pg_config --bindir 2>/dev/null)
    if [ -x "$d/pgbench" ] && [ -x "$d/postgres" ]; then echo "$d"; else
        b=""
        for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pgbench" ] && b=$d; done
        echo "${b:-/usr/lib/postgresql/15/bin}"
    fi
)
unset PGPASSWORD PGSERVICE PGOPTIONS PGSSLMODE PGHOSTADDR PGUSER PGDATABASE
export PGCONNECT_TIMEOUT=20
CLK_TCK=$(getconf CLK_TCK)

say() { echo "bench: $*" >&2; }
die() {
    say "$*"
    exit 1
}

# ---------------------------------------------------------------- prerequisites
PGBOUNCER_BIN=${PGBOUNCER_BIN:-$(command -v pgbouncer || true)}
if [ -z "$PGBOUNCER_BIN" ] && [ -x /usr/sbin/pgbouncer ]; then PGBOUNCER_BIN=/usr/sbin/pgbouncer; fi
if [ -z "$PGBOUNCER_BIN" ]; then
    if [ "$(id -u)" = 0 ]; then
        say "installing the Debian package pgbouncer"
        { apt-get install -y -q pgbouncer || { apt-get update -q && apt-get install -y -q pgbouncer; }; } >/dev/null 2>&1
        # the package enables a system service; the benchmark runs its own instances
        systemctl disable --now pgbouncer >/dev/null 2>&1 || service pgbouncer stop >/dev/null 2>&1 || true
        PGBOUNCER_BIN=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
    fi
    [ -x "$PGBOUNCER_BIN" ] || die "pgbouncer is not installed (apt-get install pgbouncer)"
fi
[ -x "$PGFUNNEL_BIN" ] || die "$PGFUNNEL_BIN is missing: run make"
[ -x "$IDLE_BIN" ] || die "$IDLE_BIN is missing: run make bench (builds the tools)"
[ -x "$PG_BINDIR/pgbench" ] || die "pgbench not found in $PG_BINDIR"

# Idle-client runs need many descriptors in this shell, in idle_clients and in
# both poolers; root may raise the hard limit.
ulimit -Hn "$NOFILE" 2>/dev/null || true
ulimit -n "$NOFILE" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
say "open files limit: $(ulimit -n) (wanted $NOFILE)"
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((IDLE_N + 200)) ]; then
    say "warning: ulimit -n is $(ulimit -n), below $IDLE_N idle clients"
fi

# PgBouncer refuses to run as root: it runs as the sandbox's OS user.
PGB_USER=""
if [ "$(id -u)" = 0 ]; then
    for u in ${PGSANDBOX_USER:-} postgres nobody; do
        if id -u "$u" >/dev/null 2>&1 && [ "$(id -u "$u")" != 0 ]; then PGB_USER=$u; break; fi
    done
    [ -n "$PGB_USER" ] || die "no unprivileged user to run pgbouncer as (create 'postgres')"
    if command -v setpriv >/dev/null 2>&1; then
        AS_PGB=(setpriv "--reuid=$PGB_USER" "--regid=$(id -g "$PGB_USER")" --init-groups)
    else
        AS_PGB=(runuser -u "$PGB_USER" --)
    fi
fi

TMP=$(mktemp -d /tmp/pfbench.XXXXXX) || exit 1
chmod 755 "$TMP"
declare -A PORT PID
IDLE_PID=""
RAW=$TMP/raw.tsv
: >"$RAW"

stop_pid() { # PID SIGNAL
    local p=$1
    [ -n "$p" ] || return 0
    kill -0 "$p" 2>/dev/null || return 0
    kill "-$2" "$p" 2>/dev/null
    for _ in $(seq 1 50); do
        kill -0 "$p" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$p" 2>/dev/null
}

cleanup() {
    trap - EXIT INT TERM HUP
    stop_pid "$IDLE_PID" TERM
    local t
    for t in "${!PID[@]}"; do stop_pid "${PID[$t]}" INT; done
    bash "$PGSANDBOX" destroy "$TMP/pg" >/dev/null 2>&1
    if [ "${KEEP_TMP:-0}" = 1 ]; then say "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'say interrupted; exit 130' INT TERM HUP

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    while :; do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
        if command -v ss >/dev/null 2>&1 && [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then continue; fi
        port_open "$p" || {
            echo "$p"
            return
        }
    done
}

# ---------------------------------------------------------------- PostgreSQL
T_START=$(date +%s)
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
say "sandbox PostgreSQL in $TMP/pg"
PGPORT=$(bash "$PGSANDBOX" start "$TMP/pg") || die "sandbox failed to start"
PORT[direct]=$PGPORT
say "PostgreSQL on 127.0.0.1:$PGPORT; pgbench -i -s $SCALE"
"$PG_BINDIR/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PGPORT" -U postgres "$DB" >"$TMP/init.log" 2>&1 ||
    {
        tail -n 20 "$TMP/init.log"
        die "pgbench -i failed"
    }
bash "$PGSANDBOX" psql "$TMP/pg" -q -d "$DB" -v ON_ERROR_STOP=1 \
    -c 'GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO scramuser' >/dev/null ||
    die "GRANT to scramuser failed"

# ---------------------------------------------------------------- poolers
# One auth_file for every instance (plaintext passwords, PgBouncer format).
printf '"postgres" ""\n"scramuser" "scrampass"\n' >"$TMP/userlist.txt"

write_ini() { # FILE PORT AUTH_TYPE DIR [EXTRA LINE]
    cat >"$1" <<EOF
[databases]
bench = host=127.0.0.1 port=$PGPORT dbname=$DB pool_mode=transaction
bench_s = host=127.0.0.1 port=$PGPORT dbname=$DB pool_mode=session

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $2
listen_backlog = 1024
unix_socket_dir =
auth_type = $3
auth_file = $TMP/userlist.txt
pool_mode = transaction
default_pool_size = $POOL
max_client_conn = $MAX_CLIENT_CONN
max_db_connections = 0
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
logfile = $4/log
pidfile = $4/pid
pkt_buf = 4096
server_reset_query = DISCARD ALL
server_check_delay = 30
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
${5:-}
EOF
}

start_pooler() { # NAME KIND(pgbouncer|pgfunnel) AUTH_TYPE [EVENT_LOOPS (pgfunnel; 1)]
    local name=$1 kind=$2 auth=$3 dir=$TMP/$1 port pid="" launcher extra=""
    port=$(free_port)
    mkdir -p "$dir"
    [ "$kind" = pgfunnel ] && extra="event_loops = ${4:-1}"
    write_ini "$dir/$kind.ini" "$port" "$auth" "$dir" "$extra"
    if [ "$kind" = pgbouncer ]; then
        if [ -n "$PGB_USER" ]; then
            chown -R "$PGB_USER" "$dir"
            chmod 644 "$TMP/userlist.txt"
            # setpriv keeps this shell's open-files limit (runuser's PAM session resets it to 1024)
            # shellcheck disable=SC2016  # expanded by the inner sh
            "${AS_PGB[@]}" sh -c 'ulimit -n "$1" 2>/dev/null; shift; exec "$@"' sh "$(ulimit -n)" \
                "$PGBOUNCER_BIN" "$dir/$kind.ini" >"$dir/stderr" 2>&1 </dev/null &
        else
            "$PGBOUNCER_BIN" "$dir/$kind.ini" >"$dir/stderr" 2>&1 </dev/null &
        fi
        launcher=$!
    else
        "$PGFUNNEL_BIN" "$dir/$kind.ini" >"$dir/stderr" 2>&1 </dev/null &
        launcher=$!
        pid=$launcher
    fi
    disown "$launcher" 2>/dev/null
    for _ in $(seq 1 100); do
        [ -z "$pid" ] && [ -s "$dir/pid" ] && pid=$(cat "$dir/pid")
        [ -n "$pid" ] && port_open "$port" && break
        kill -0 "$launcher" 2>/dev/null || break
        sleep 0.1
    done
    [ -z "$pid" ] && [ -s "$dir/pid" ] && pid=$(cat "$dir/pid")
    if [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null || ! port_open "$port"; then
        tail -n 20 "$dir/stderr" "$dir/log" 2>/dev/null
        die "$name ($kind) did not start"
    fi
    PORT[$name]=$port
    PID[$name]=$pid
    local out
    out=$(PGPASSWORD=scrampass timeout 20 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$port" \
        -U "$([ "$auth" = trust ] && echo postgres || echo scramuser)" -d bench \
        -c 'select count(*) from pgbench_branches' 2>&1)
    [ "$out" = "$SCALE" ] || die "$name: a query through it returned '$out'"
    say "$name: $kind on 127.0.0.1:$port, pid $pid, auth_type $auth, nofile $(awk '/Max open files/ {print $4}' "/proc/$pid/limits")"
}

start_pooler pgbouncer pgbouncer trust
start_pooler pgfunnel pgfunnel trust
start_pooler pgbouncer2 pgbouncer trust
start_pooler pgbouncer-scram pgbouncer scram-sha-256
start_pooler pgfunnel-scram pgfunnel scram-sha-256
# the event_loops axis: the same pgfunnel with more loops (pgfunnel itself has 1)
read -r -a LOOPS_AXIS <<<"${BENCH_LOOPS-2 auto}"
LOOPS_TARGETS=()
for l in "${LOOPS_AXIS[@]}"; do
    start_pooler "pgfunnel-loops-$l" pgfunnel trust "$l"
    LOOPS_TARGETS+=("pgfunnel-loops-$l")
done
# the workloads that run on them too (transaction mode)
LOOPS_WORKLOADS=" select-simple select-prepared churn-trust clients-500 "

# ---------------------------------------------------------------- one run
cpu_ticks() { # PID -> utime+stime in ticks (fields 14, 15; comm may hold blanks)
    local s
    s=$(cat "/proc/$1/stat" 2>/dev/null) || {
        echo 0
        return
    }
    s=${s##*) }
    awk '{print $12 + $13}' <<<"$s"
}
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }

# run ROUND WORKLOAD MODE TARGET CLIENTS THREADS USER [pgbench flags…]
# Appends: round workload mode target clients tps lat_ms xacts failed cpu_s
run() {
    local round=$1 wl=$2 mode=$3 target=$4 clients=$5 threads=$6 user=$7
    shift 7
    local port=${PORT[$target]} pid=${PID[$target]:-} db=bench
    [ "$mode" = session ] && db=bench_s
    [ "$target" = direct ] && db=$DB
    local pw=""
    [ "$user" = scramuser ] && pw=scrampass
    local c0=0 c1=0 out rc tps lat xacts failed cpu=n/a
    [ -n "$pid" ] && c0=$(cpu_ticks "$pid")
    out=$(PGPASSWORD=$pw timeout $((SECS + 90)) "$PG_BINDIR/pgbench" -n -c "$clients" -j "$threads" \
        -T "$SECS" -h 127.0.0.1 -p "$port" -U "$user" "$@" "$db" 2>&1)
    rc=$?
    [ -n "$pid" ] && c1=$(cpu_ticks "$pid")
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | tail -n 1)
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -n 1)
    xacts=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out" | tail -n 1)
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out" | tail -n 1)
    if [ $rc -ne 0 ] || [ -z "$tps" ]; then
        say "  $target $wl/$mode: pgbench exit $rc"
        grep -v '^pgbench: error: client [0-9]* script' <<<"$out" | tail -n 4 | sed 's/^/    /' >&2
        tps=""
    fi
    [ -n "$pid" ] && cpu=$(awk -v a="$c0" -v b="$c1" -v t="$CLK_TCK" 'BEGIN {printf "%.2f", (b - a) / t}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$round" "$wl" "$mode" "$target" "$clients" \
        "${tps:-n/a}" "${lat:-n/a}" "${xacts:-0}" "${failed:-0}" "$cpu" >>"$RAW"
    say "  r$round $wl/$mode $target: tps ${tps:-n/a}, lat ${lat:-n/a} ms, pooler cpu ${cpu} s"
}

# ---------------------------------------------------------------- workloads
# name|clients|threads|user|pgbench flags   (trust targets unless user=scramuser)
WORKLOADS=(
    "select-simple|50|$THREADS|postgres|-S -M simple"
    "select-extended|50|$THREADS|postgres|-S -M extended"
    "select-prepared|50|$THREADS|postgres|-S -M prepared"
    "tpcb-like|50|$THREADS|postgres|-M simple"
    "churn-trust|20|$THREADS|postgres|-C -S -M simple"
    "churn-scram|20|$THREADS|scramuser|-C -S -M simple"
    "clients-500|500|$THREADS|postgres|-S -M simple"
    "single-client|1|1|postgres|-S -M simple"
)

run_workload() { # ROUND MODE SPEC
    local round=$1 mode=$2 name clients threads user flags t
    IFS='|' read -r name clients threads user flags <<<"$3"
    local targets=(direct pgbouncer pgfunnel)
    [ "$user" = scramuser ] && targets=(direct pgbouncer-scram pgfunnel-scram)
    # the A/A pair: a second PgBouncer in the same rotation
    [ "$name" = select-simple ] && [ "$mode" = transaction ] && targets+=(pgbouncer2)
    [ "$mode" = transaction ] && [[ $LOOPS_WORKLOADS == *" $name "* ]] && targets+=("${LOOPS_TARGETS[@]}")
    if [ "$mode" = session ]; then
        # session pooling gives each client its own server: never more clients than the pool
        [ "$clients" -ge 500 ] && return
        [ "$clients" -gt "$POOL" ] && clients=$POOL
    fi
    for t in "${targets[@]}"; do
        # PostgreSQL has max_connections = 300: 500 clients only through poolers
        [ "$t" = direct ] && [ "$clients" -gt 250 ] && continue
        # shellcheck disable=SC2086  # flags are words
        run "$round" "$name" "$mode" "$t" "$clients" "$threads" "$user" $flags
    done
}

say "transaction mode: ${#WORKLOADS[@]} workloads x $ROUNDS rounds x ${SECS}s"
for r in $(seq 1 "$ROUNDS"); do
    for w in "${WORKLOADS[@]}"; do run_workload "$r" transaction "$w"; done
done
say "session mode: 1 round"
for w in "${WORKLOADS[@]}"; do run_workload 1 session "$w"; done

# ---------------------------------------------------------------- idle clients
IDLE_ROWS=()
idle_test() { # TARGET
    local t=$1 pid=${PID[$1]} port=${PORT[$1]} before with n tps0 tps1 line
    say "idle: $t, baseline 50 clients"
    run 1 idle-baseline transaction "$t" 50 "$THREADS" postgres -S -M simple
    sleep 1
    before=$(rss_kb "$pid")
    say "idle: $t, opening $IDLE_N idle clients"
    "$IDLE_BIN" "host=127.0.0.1 port=$port user=postgres dbname=bench connect_timeout=30" \
        "$IDLE_N" 0 200 >"$TMP/idle-$t.out" 2>"$TMP/idle-$t.err" &
    IDLE_PID=$!
    for _ in $(seq 1 3000); do
        grep -q '^ready' "$TMP/idle-$t.out" 2>/dev/null && break
        kill -0 "$IDLE_PID" 2>/dev/null || break
        sleep 0.1
    done
    line=$(grep '^connected=' "$TMP/idle-$t.out")
    n=$(sed -n 's/^connected=\([0-9]*\).*/\1/p' <<<"$line")
    sleep 1
    with=$(rss_kb "$pid")
    say "idle: $t: $line; RSS $before -> $with kB"
    head -n 3 "$TMP/idle-$t.err" >&2
    run 1 idle-10k transaction "$t" 50 "$THREADS" postgres -S -M simple
    stop_pid "$IDLE_PID" TERM
    IDLE_PID=""
    sleep 2
    tps0=$(awk -F'\t' -v t="$t" '$2 == "idle-baseline" && $4 == t {print $6}' "$RAW")
    tps1=$(awk -F'\t' -v t="$t" '$2 == "idle-10k" && $4 == t {print $6}' "$RAW")
    IDLE_ROWS+=("$(awk -v t="$t" -v n="${n:-0}" -v b="$before" -v w="$with" -v x="$tps0" -v y="$tps1" 'BEGIN {
        kb = (n > 0) ? sprintf("%.2f", (w - b) / n) : "n/a"
        r = (x + 0 > 0 && y + 0 > 0) ? sprintf("%.3f", y / x) : "n/a"
        printf "| %s | %d | %d | %d | %s | %.0f | %.0f | %s |", t, n, b, w, kb, x, y, r }')")
}
idle_test pgbouncer
idle_test pgfunnel

T_END=$(date +%s)
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report
median() { # numbers on stdin -> median (n/a if none)
    grep -E '^[0-9.eE+-]+$' | sort -g | awk '{a[NR] = $1}
        END {if (NR == 0) print "n/a"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2}'
}
col() { # WORKLOAD MODE TARGET FIELD -> values, one per round
    awk -F'\t' -v w="$1" -v m="$2" -v t="$3" -v f="$4" '$2 == w && $3 == m && $4 == t && $6 != "n/a" {print $f}' "$RAW"
}
med() { col "$@" | median; }
# median over rounds of per-round ratio FIELD(A)/FIELD(B)
pratio() { # WORKLOAD MODE A B FIELD
    awk -F'\t' -v w="$1" -v m="$2" -v a="$3" -v b="$4" -v f="$5" '
        $2 == w && $3 == m && $6 != "n/a" && $4 == a {A[$1] = $f}
        $2 == w && $3 == m && $6 != "n/a" && $4 == b {B[$1] = $f}
        END {for (r in A) if ((r in B) && B[r] + 0 > 0) printf "%.4f\n", A[r] / B[r]}' "$RAW" | median
}
# median over rounds of TPS(workload A)/TPS(workload B) for one target, transaction mode
pratio2() { # WORKLOAD-A WORKLOAD-B TARGET
    awk -F'\t' -v a="$1" -v b="$2" -v t="$3" '
        $3 == "transaction" && $4 == t && $6 != "n/a" && $2 == a {A[$1] = $6}
        $3 == "transaction" && $4 == t && $6 != "n/a" && $2 == b {B[$1] = $6}
        END {for (r in A) if ((r in B) && B[r] + 0 > 0) printf "%.4f\n", A[r] / B[r]}' "$RAW" | median
}
# median per-round difference of average latency A - B, in µs
pdiff_us() { # WORKLOAD MODE A B
    awk -F'\t' -v w="$1" -v m="$2" -v a="$3" -v b="$4" '
        $2 == w && $3 == m && $7 != "n/a" && $4 == a {A[$1] = $7}
        $2 == w && $3 == m && $7 != "n/a" && $4 == b {B[$1] = $7}
        END {for (r in A) if (r in B) printf "%.1f\n", (A[r] - B[r]) * 1000}' "$RAW" | median
}
# pooler CPU µs per transaction, median over rounds
cpu_us() { # WORKLOAD MODE TARGET
    awk -F'\t' -v w="$1" -v m="$2" -v t="$3" '$2 == w && $3 == m && $4 == t && $10 != "n/a" && $8 > 0 {
        printf "%.2f\n", $10 * 1e6 / $8}' "$RAW" | median
}
fmt() { awk -v x="$1" -v f="$2" 'BEGIN {if (x == "n/a" || x == "") print "n/a"; else printf f, x}'; }

table() {
    local w mode name clients flags user pb pf
    echo "| workload | mode | clients | direct TPS | PgBouncer TPS | pgfunnel TPS | pgfunnel/PgBouncer | pgfunnel/direct | PgBouncer CPU µs/txn | pgfunnel CPU µs/txn | CPU ratio |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for mode in transaction session; do
        for w in "${WORKLOADS[@]}"; do
            IFS='|' read -r name clients _ user flags <<<"$w"
            pb=pgbouncer pf=pgfunnel
            [ "$user" = scramuser ] && pb=pgbouncer-scram pf=pgfunnel-scram
            col "$name" "$mode" "$pb" 5 | grep -q . || continue
            local cpb cpf
            cpb=$(cpu_us "$name" "$mode" "$pb")
            cpf=$(cpu_us "$name" "$mode" "$pf")
            printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$mode" \
                "$(col "$name" "$mode" "$pb" 5 | head -n 1)" \
                "$(fmt "$(med "$name" "$mode" direct 6)" %.0f)" \
                "$(fmt "$(med "$name" "$mode" "$pb" 6)" %.0f)" \
                "$(fmt "$(med "$name" "$mode" "$pf" 6)" %.0f)" \
                "$(fmt "$(pratio "$name" "$mode" "$pf" "$pb" 6)" %.3f)" \
                "$(fmt "$(pratio "$name" "$mode" "$pf" direct 6)" %.3f)" \
                "$(fmt "$cpb" %.1f)" "$(fmt "$cpf" %.1f)" \
                "$(awk -v a="$cpf" -v b="$cpb" 'BEGIN {if (a == "n/a" || b == "n/a" || b + 0 == 0) print "n/a"; else printf "%.3f", a / b}')"
        done
    done
    echo
    echo "A/A noise floor (select-simple, transaction, 50 clients): PgBouncer #2 / PgBouncer, paired median $(fmt "$(pratio select-simple transaction pgbouncer2 pgbouncer 6)" %.3f)," \
        "per round: $(awk -F'\t' '$2 == "select-simple" && $3 == "transaction" && $4 == "pgbouncer" {B[$1] = $6}
            $2 == "select-simple" && $3 == "transaction" && $4 == "pgbouncer2" {A[$1] = $6}
            END {for (r in A) if (B[r] + 0 > 0) printf "%.3f ", A[r] / B[r]}' "$RAW")"
    echo
    echo "Named prepared statements through pgfunnel (select-only, transaction mode, 50 clients):" \
        "-M prepared / -M extended TPS, paired median $(fmt "$(pratio2 select-prepared select-extended pgfunnel)" %.3f);" \
        "pooler CPU µs/txn prepared $(fmt "$(cpu_us select-prepared transaction pgfunnel)" %.1f)," \
        "extended $(fmt "$(cpu_us select-extended transaction pgfunnel)" %.1f)," \
        "simple $(fmt "$(cpu_us select-simple transaction pgfunnel)" %.1f)." \
        "(PgBouncer before 1.21 has no prepared statements in transaction mode: its row fails.)"
    echo
    if [ ${#LOOPS_TARGETS[@]} -gt 0 ]; then
        echo "Event loops (transaction mode; the pgfunnel columns above run event_loops = 1; auto = $(nproc) here):"
        echo
        echo "| workload | clients | loops | TPS | / 1 loop (paired) | / PgBouncer (paired) | CPU µs/txn |"
        echo "|---|---:|---|---:|---:|---:|---:|"
        local t l
        for w in "${WORKLOADS[@]}"; do
            IFS='|' read -r name clients _ user flags <<<"$w"
            [[ $LOOPS_WORKLOADS == *" $name "* ]] || continue
            printf '| %s | %s | 1 | %s | 1 | %s | %s |\n' "$name" "$clients" \
                "$(fmt "$(med "$name" transaction pgfunnel 6)" %.0f)" \
                "$(fmt "$(pratio "$name" transaction pgfunnel pgbouncer 6)" %.3f)" \
                "$(fmt "$(cpu_us "$name" transaction pgfunnel)" %.1f)"
            for t in "${LOOPS_TARGETS[@]}"; do
                l=${t#pgfunnel-loops-}
                printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$clients" "$l" \
                    "$(fmt "$(med "$name" transaction "$t" 6)" %.0f)" \
                    "$(fmt "$(pratio "$name" transaction "$t" pgfunnel 6)" %.3f)" \
                    "$(fmt "$(pratio "$name" transaction "$t" pgbouncer 6)" %.3f)" \
                    "$(fmt "$(cpu_us "$name" transaction "$t")" %.1f)"
            done
        done
        echo
    fi
    echo "Single client (-c 1), average latency:"
    echo
    echo "| mode | direct ms | PgBouncer ms | pgfunnel ms | PgBouncer added µs | pgfunnel added µs |"
    echo "|---|---:|---:|---:|---:|---:|"
    for mode in transaction session; do
        printf '| %s | %s | %s | %s | %s | %s |\n' "$mode" \
            "$(fmt "$(med single-client "$mode" direct 7)" %.3f)" \
            "$(fmt "$(med single-client "$mode" pgbouncer 7)" %.3f)" \
            "$(fmt "$(med single-client "$mode" pgfunnel 7)" %.3f)" \
            "$(fmt "$(pdiff_us single-client "$mode" pgbouncer direct)" %.1f)" \
            "$(fmt "$(pdiff_us single-client "$mode" pgfunnel direct)" %.1f)"
    done
    echo
    echo "$IDLE_N idle clients (select-simple, 50 clients, transaction mode; one run each):"
    echo
    echo "| pooler | idle connected | RSS before kB | RSS with idle kB | kB per idle client | TPS without | TPS with idle | with/without |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "${IDLE_ROWS[@]}"
}

machine_info() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC'), duration $((T_END - T_START)) s"
    echo "- machine: nproc $(nproc), $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)," \
        "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo), kernel $(uname -r)"
    echo "- load average at start: $LOAD_START; at end: $LOAD_END (other jobs share the machine)"
    echo "- $("$PG_BINDIR/pgbench" --version | head -n 1); $("$PG_BINDIR/postgres" --version 2>/dev/null | head -n 1)"
    echo "- $("$PGBOUNCER_BIN" --version 2>/dev/null | head -n 1); $("$PGFUNNEL_BIN" --version 2>/dev/null | head -n 1)" \
        "(commit $(git -C "$REPO_ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown))"
    echo "- settings (both poolers, same ini): default_pool_size $POOL, max_client_conn $MAX_CLIENT_CONN," \
        "pkt_buf 4096, listen_backlog 1024, log_connections/log_disconnections 0, TCP 127.0.0.1," \
        "auth_file with plaintext passwords; pgfunnel workers = default (4); pool_mode transaction" \
        "(database bench) or session (database bench_s)"
    echo "- pgbench: -n -T $SECS, -j $THREADS (-j 1 for one client), $ROUNDS alternating rounds" \
        "in transaction mode (direct, PgBouncer, pgfunnel[, PgBouncer #2] per round), 1 round in session mode" \
        "(clients capped at the pool size $POOL; 500 clients skipped); scale $SCALE;" \
        "churn = -C -S (a new connection per transaction); scram = client auth scram-sha-256 at the pooler" \
        "(at PostgreSQL for direct) with PGPASSWORD"
    echo "- PostgreSQL sandbox: fsync off, synchronous_commit off, shared_buffers 128MB, max_connections 300" \
        "(so 500 clients are not run directly)"
    echo "- **pgbench, PostgreSQL and the pooler share the machine's $(nproc) cores**: the numbers compare" \
        "the poolers with each other on this box, they are not absolute capacities. Pooler CPU is" \
        "utime+stime of the pooler process (all threads) from /proc/PID/stat over the run, divided by" \
        "the transactions pgbench completed."
}

{
    echo "# pgfunnel benchmark $STAMP$([ "$QUICK" = 1 ] && echo ' (BENCH_QUICK smoke test)')"
    echo
    machine_info
    echo
    table
    echo
    echo "Raw runs (round, workload, mode, target, clients, tps, latency ms, transactions, failed, pooler CPU s):"
    echo
    echo '```'
    cat "$RAW"
    echo '```'
} >"$TMP/report.md"

mkdir -p "$RESULTS_DIR"
cp "$TMP/report.md" "$OUT"
echo
sed '/^Raw runs/,$d' "$TMP/report.md"
say "saved $OUT"

ok=1
for t in "${!PID[@]}"; do
    if ! kill -0 "${PID[$t]}" 2>/dev/null; then
        say "$t died during the benchmark"
        ok=0
    fi
done
[ $ok = 1 ]
