#!/bin/bash
# demo.sh — `make demo`: pgbench against a sandbox PostgreSQL, directly and
# through pgfunnel (transaction pooling, default_pool_size = 10), side by side.
#
# Environment: PGFUNNEL_BIN (default ./pgfunnel), DEMO_SECONDS (15 per run),
# DEMO_CLIENTS (20), DEMO_THREADS (2), DEMO_SCALE (10), KEEP_TMP=1.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$HERE/.." && pwd -P)
PGSANDBOX=$HERE/pgsandbox
PGFUNNEL_BIN=${PGFUNNEL_BIN:-$REPO_ROOT/pgfunnel}
case $PGFUNNEL_BIN in /*) ;; *) PGFUNNEL_BIN=$PWD/$PGFUNNEL_BIN ;; esac
SECS=${DEMO_SECONDS:-15}
CLIENTS=${DEMO_CLIENTS:-20}
THREADS=${DEMO_THREADS:-2}
SCALE=${DEMO_SCALE:-10}
DB=pgfunnel_test

PG_BINDIR=$(
    d=$(pg_config --bindir 2>/dev/null)
    if [ -x "$d/pgbench" ]; then echo "$d"; else
        for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pgbench" ] && b=$d; done
        echo "${b:-/usr/lib/postgresql/15/bin}"
    fi
)
unset PGPASSWORD PGSERVICE PGOPTIONS PGSSLMODE PGHOSTADDR
export PGCONNECT_TIMEOUT=10

TMP=$(mktemp -d /tmp/pfdemo.XXXXXX) || exit 1
chmod 755 "$TMP"
PF_PID=""

cleanup() {
    trap - EXIT INT TERM HUP
    if [ -n "$PF_PID" ] && kill -0 "$PF_PID" 2>/dev/null; then
        kill -INT "$PF_PID" 2>/dev/null
        for _ in $(seq 1 50); do kill -0 "$PF_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$PF_PID" 2>/dev/null
    fi
    bash "$PGSANDBOX" destroy "$TMP/pg" >/dev/null 2>&1
    if [ "${KEEP_TMP:-0}" = 1 ]; then echo "(kept $TMP)"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
trap 'echo "interrupted"; exit 130' INT TERM HUP

say() { echo "demo: $*"; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    while :; do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
        if command -v ss >/dev/null 2>&1 && [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then continue; fi
        port_open "$p" || { echo "$p"; return; }
    done
}

# ---------------------------------------------------------------- PostgreSQL
say "starting a sandbox PostgreSQL in $TMP/pg"
PGPORT=$(bash "$PGSANDBOX" start "$TMP/pg") || { say "sandbox failed to start"; exit 1; }
say "PostgreSQL on 127.0.0.1:$PGPORT; pgbench -i -s $SCALE into $DB"
if ! "$PG_BINDIR/pgbench" -i -q -s "$SCALE" -h 127.0.0.1 -p "$PGPORT" -U postgres "$DB" >"$TMP/init.log" 2>&1; then
    tail -n 20 "$TMP/init.log"
    say "pgbench -i failed"
    exit 1
fi

# ---------------------------------------------------------------- pgfunnel
PF_PORT=$(free_port)
cat >"$TMP/pgfunnel.ini" <<EOF
[databases]
postgres = host=127.0.0.1 port=$PGPORT dbname=postgres
$DB = host=127.0.0.1 port=$PGPORT dbname=$DB

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PF_PORT
unix_socket_dir = $TMP
auth_type = trust
pool_mode = transaction
default_pool_size = 10
max_client_conn = 200
logfile = $TMP/pgfunnel.log
pidfile = $TMP/pgfunnel.pid
admin_users = postgres
EOF

PF_OK=0
PF_WHY=""
if [ ! -x "$PGFUNNEL_BIN" ]; then
    PF_WHY="$PGFUNNEL_BIN does not exist or is not executable"
else
    say "starting $PGFUNNEL_BIN on 127.0.0.1:$PF_PORT (transaction mode, default_pool_size=10)"
    # background jobs of a script ignore SIGINT/SIGQUIT; give them back their defaults
    envcmd=()
    env --default-signal=INT true 2>/dev/null && envcmd=(env "--default-signal=INT,QUIT,TERM,HUP")
    "${envcmd[@]}" "$PGFUNNEL_BIN" "$TMP/pgfunnel.ini" >"$TMP/pgfunnel.stderr" 2>&1 </dev/null &
    PF_PID=$!
    disown "$PF_PID"
    for _ in $(seq 1 100); do
        kill -0 "$PF_PID" 2>/dev/null || break
        port_open "$PF_PORT" && break
        sleep 0.1
    done
    if ! kill -0 "$PF_PID" 2>/dev/null; then
        PF_WHY="pgfunnel exited during startup"
    elif ! port_open "$PF_PORT"; then
        PF_WHY="pgfunnel is not listening on 127.0.0.1:$PF_PORT after 10 s"
    elif ! out=$(timeout 15 "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d "$DB" \
        -c 'select count(*) from pgbench_branches' 2>&1); then
        PF_WHY="a query through pgfunnel failed: $out"
    elif [ "$out" != "$SCALE" ]; then
        PF_WHY="a query through pgfunnel returned '$out' instead of '$SCALE'"
    else
        PF_OK=1
    fi
fi
if [ $PF_OK = 0 ]; then
    say "PGFUNNEL DOES NOT WORK: $PF_WHY — only the direct numbers will be shown"
    for f in "$TMP/pgfunnel.stderr" "$TMP/pgfunnel.log"; do
        [ -s "$f" ] && { echo "--- $(basename "$f") (tail) ---"; tail -n 15 "$f"; }
    done
fi

# ---------------------------------------------------------------- runs
ROWS=()
run() { # TARGET PORT WORKLOAD [pgbench flags…]
    local target=$1 port=$2 wl=$3 out rc tps lat failed
    shift 3
    say "$target / $wl: $CLIENTS clients, $THREADS threads, ${SECS}s"
    out=$(timeout $((SECS + 60)) "$PG_BINDIR/pgbench" -n -c "$CLIENTS" -j "$THREADS" -T "$SECS" \
        -h 127.0.0.1 -p "$port" -U postgres "$@" "$DB" 2>&1)
    rc=$?
    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | tail -n 1)
    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$out" | tail -n 1)
    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' <<<"$out" | tail -n 1)
    if [ $rc -ne 0 ]; then
        echo "$out" | tail -n 8 | sed 's/^/    /'
        failed="${failed:-?} (pgbench exit $rc)"
    fi
    [ -n "$tps" ] && tps=$(printf '%.1f' "$tps")
    [ -n "$lat" ] && lat=$(printf '%.2f' "$lat")
    ROWS+=("$(printf '%-10s %-12s %12s %14s  %s' "$target" "$wl" "${tps:-n/a}" "${lat:-n/a}" "${failed:-n/a}")")
}

run direct "$PGPORT" select-only -S
[ $PF_OK = 1 ] && run pgfunnel "$PF_PORT" select-only -S
run direct "$PGPORT" tpcb-like
[ $PF_OK = 1 ] && run pgfunnel "$PF_PORT" tpcb-like

echo
printf '%-10s %-12s %12s %14s  %s\n' target workload TPS "avg lat (ms)" "failed xacts"
printf '%s\n' "--------------------------------------------------------------------"
printf '%s\n' "${ROWS[@]}"
[ $PF_OK = 1 ] || printf '%-10s %s\n' pgfunnel "not measured: $PF_WHY"
echo

if [ $PF_OK = 1 ] && ! kill -0 "$PF_PID" 2>/dev/null; then
    say "pgfunnel died during the benchmark"
    tail -n 15 "$TMP/pgfunnel.log" 2>/dev/null
    PF_OK=0
fi
[ $PF_OK = 1 ]
