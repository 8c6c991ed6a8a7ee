#!/bin/bash
# tools/bench/profile.sh — where the pooler's CPU goes on select-only:
# syscalls per transaction (strace -c over a fixed number of transactions)
# and a perf profile (perf record -g, cpu-clock), for PgBouncer and pgfunnel
# with the same ini as tools/bench/run.sh.
#
#   bash tools/bench/profile.sh [OUTDIR]     (default /tmp/pfprofile.XXXXXX)
#
# Environment: PGFUNNEL_BIN, PROF_CLIENTS (50), PROF_XACTS_PER_CLIENT (400),
# PROF_SECONDS (8, the perf record window), PROF_MODE (transaction|session).
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$HERE/../.." && pwd -P)
PGSANDBOX=$REPO_ROOT/tools/pgsandbox
PGFUNNEL_BIN=${PGFUNNEL_BIN:-$REPO_ROOT/pgfunnel}
CLIENTS=${PROF_CLIENTS:-50}
PER_CLIENT=${PROF_XACTS_PER_CLIENT:-400}
SECS=${PROF_SECONDS:-8}
DBALIAS=bench
[ "${PROF_MODE:-transaction}" = session ] && DBALIAS=bench_s
OUT=${1:-$(mktemp -d /tmp/pfprofile.XXXXXX)}
mkdir -p "$OUT"
chmod 755 "$OUT"
PGBENCH=$(command -v pgbench)
unset PGPASSWORD PGUSER PGDATABASE
say() { echo "profile: $*" >&2; }
die() {
    say "$*"
    exit 1
}
for t in strace perf pgbouncer; do command -v "$t" >/dev/null || die "$t is needed"; done

declare -A PIDS PORTS
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    while :; do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
        [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ] && continue
        port_open "$p" || {
            echo "$p"
            return
        }
    done
}
cleanup() {
    local p
    for p in "${PIDS[@]}"; do kill -INT "$p" 2>/dev/null; done
    sleep 1
    bash "$PGSANDBOX" destroy "$OUT/pg" >/dev/null 2>&1
}
trap cleanup EXIT

PGPORT=$(bash "$PGSANDBOX" start "$OUT/pg") || die "sandbox failed"
"$PGBENCH" -i -q -s 10 -h 127.0.0.1 -p "$PGPORT" -U postgres pgfunnel_test >/dev/null 2>&1 || die "pgbench -i failed"
printf '"postgres" ""\n' >"$OUT/userlist.txt"
chmod 644 "$OUT/userlist.txt"

start() { # NAME PORT
    local d=$OUT/$1
    PORTS[$1]=$2
    mkdir -p "$d"
    cat >"$d/ini" <<EOF
[databases]
bench = host=127.0.0.1 port=$PGPORT dbname=pgfunnel_test pool_mode=transaction
bench_s = host=127.0.0.1 port=$PGPORT dbname=pgfunnel_test pool_mode=session
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $2
unix_socket_dir =
auth_type = trust
auth_file = $OUT/userlist.txt
default_pool_size = 20
max_client_conn = 1000
log_connections = 0
log_disconnections = 0
logfile = $d/log
pidfile = $d/pid
server_tls_sslmode = disable
ignore_startup_parameters = extra_float_digits
EOF
    if [ "$1" = pgbouncer ]; then
        chown -R postgres "$d"
        setpriv --reuid=postgres --regid="$(id -g postgres)" --init-groups pgbouncer "$d/ini" >"$d/stderr" 2>&1 &
    else
        "$PGFUNNEL_BIN" "$d/ini" >"$d/stderr" 2>&1 &
    fi
    for _ in $(seq 1 50); do
        [ -s "$d/pid" ] && port_open "$2" && break
        sleep 0.1
    done
    [ -s "$d/pid" ] || die "$1 did not start: $(tail -n 3 "$d/stderr")"
    PIDS[$1]=$(cat "$d/pid")
}
start pgbouncer "$(free_port)"
start pgfunnel "$(free_port)"

total=$((CLIENTS * PER_CLIENT))
for t in pgbouncer pgfunnel; do
    port=${PORTS[$t]}
    pid=${PIDS[$t]}
    "$PGBENCH" -n -S -c "$CLIENTS" -j 2 -T 3 -h 127.0.0.1 -p "$port" -U postgres "$DBALIAS" >/dev/null 2>&1 # warm up
    say "$t: strace -c over $total transactions"
    strace -c -f -p "$pid" -o "$OUT/$t.strace" &
    sp=$!
    sleep 1
    "$PGBENCH" -n -S -c "$CLIENTS" -j 2 -t "$PER_CLIENT" -h 127.0.0.1 -p "$port" -U postgres "$DBALIAS" >"$OUT/$t.strace-pgbench" 2>&1
    kill -INT "$sp"
    wait "$sp" 2>/dev/null
    calls=$(awk '/^100.00/ {print $4}' "$OUT/$t.strace")
    say "$t: $calls syscalls = $(awk -v c="$calls" -v t="$total" 'BEGIN {printf "%.2f", c / t}') per transaction"
    say "$t: perf record -g for ${SECS}s"
    "$PGBENCH" -n -S -c "$CLIENTS" -j 2 -T $((SECS + 2)) -h 127.0.0.1 -p "$port" -U postgres "$DBALIAS" >"$OUT/$t.perf-pgbench" 2>&1 &
    bp=$!
    sleep 1
    c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    perf record -g -e cpu-clock -p "$pid" -o "$OUT/$t.perf.data" -- sleep "$SECS" >/dev/null 2>&1
    c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    wait "$bp"
    say "$t: $(grep '^tps' "$OUT/$t.perf-pgbench"); pooler CPU $(((c1 - c0) * 10)) ms in ${SECS}s"
    perf report -i "$OUT/$t.perf.data" --no-children --stdio --percent-limit 1.5 -g none \
        --sort sym >"$OUT/$t.perf.txt" 2>/dev/null
    perf report -i "$OUT/$t.perf.data" --children --stdio --percent-limit 3 -g none \
        --sort sym >"$OUT/$t.perf-children.txt" 2>/dev/null
done
say "results in $OUT (*.strace, *.perf.txt, *.perf-children.txt)"
