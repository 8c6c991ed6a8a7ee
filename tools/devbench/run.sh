#!/bin/bash
# Direct PostgreSQL vs PgBouncer vs pgfunnel (transaction mode) under pgbench select-only load.
# Self-contained: unpacks bundle.tar.xz (Debian 12 PostgreSQL 15 + PgBouncer 1.18 + pgfunnel +
# their non-glibc libraries; tools/devbench/build.sh) into a temp dir, runs everything on
# 127.0.0.1, and tears everything down on exit. Writes $OUT/summary.txt and $OUT/log.txt.
# Settings (env): DUR (s per run, 15), SCALE (50), CLIENTS ("16 64 256"), JOBS (8),
# POOL_SIZE (32), WARM (s, 3), DEADLINE_S (330), PGPORT_BASE (54329), BPORT_BASE (64329),
# FPORT_BASE (44329), LOOPS (pgfunnel event_loops, "auto"), TARGETS ("direct pgbouncer pgfunnel").
set -uo pipefail
T0=$(date +%s)
DUR=${DUR:-15}
SCALE=${SCALE:-50}
CLIENTS=${CLIENTS:-"16 64 256"}
EXT_CLIENTS=${EXT_CLIENTS-64}
JOBS=${JOBS:-8}
POOL_SIZE=${POOL_SIZE:-32}
WARM=${WARM:-3}
DEADLINE_S=${DEADLINE_S:-330}
LOOPS=${LOOPS:-auto}
TARGETS=${TARGETS:-"direct pgbouncer pgfunnel"}
HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${OUT:-$HERE/out}
mkdir -p "$OUT"
LOG=$OUT/log.txt
SUM=$OUT/summary.txt
: >"$LOG"
: >"$SUM"
exec > >(tee -a "$LOG") 2>&1
TEE_PID=$!

log() { printf '%s +%3ds %s\n' "$(date -u +%H:%M:%S)" $(($(date +%s) - T0)) "$*"; }
say() { printf '%s\n' "$*" | tee -a "$SUM" >/dev/null; printf '%s\n' "$*"; }

WORK=
PG_PID=
PGB_PID=
PGF_PID=
RUN_PID=
CREATED_USER=
PASSWD_LINE_ADDED=

stop_pid() {  # $1 pid, $2 first signal, $3 seconds to wait before KILL
    local pid=$1 sig=$2 n=$(($3 * 10))
    [[ -z $pid ]] && return 0
    kill -0 "$pid" 2>/dev/null || return 0
    kill -"$sig" "$pid" 2>/dev/null
    while ((n-- > 0)) && kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then
        log "pid $pid still alive after SIG$sig; sending KILL"
        kill -KILL "$pid" 2>/dev/null
        sleep 0.5
    fi
    wait "$pid" 2>/dev/null
    return 0
}

# /proc/<pid>/stat fields after "(comm) ": a[0]=state a[1]=ppid ... a[11]=utime a[12]=stime a[13]=cutime a[14]=cstime
proc_children() {  # "<pid> <utime+stime>" for each live process whose parent is $1 (bash builtins only)
    local f line rest pid a
    for f in /proc/[0-9]*/stat; do
        { read -r line <"$f"; } 2>/dev/null || continue
        rest=${line##*) }
        read -r -a a <<<"$rest"
        if [[ ${a[1]} == "$1" ]]; then pid=${f#/proc/}; echo "${pid%/stat} $((a[11] + a[12]))"; fi
    done
}
children_of() { proc_children "$1" | cut -d' ' -f1; }

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    [[ -n $RUN_PID ]] && stop_pid "$RUN_PID" TERM 3
    if [[ -n $PGB_PID ]]; then
        if [[ -n $WORK && -f $WORK/run/pgbouncer.log ]]; then
            echo "--- pgbouncer log: warnings/errors (first 20) ---"
            grep -E 'WARNING|ERROR|FATAL' "$WORK/run/pgbouncer.log" | head -20
        fi
        stop_pid "$PGB_PID" INT 5
    fi
    if [[ -n $PGF_PID ]]; then
        if [[ -n $WORK && -f $WORK/run/pgfunnel.log ]]; then
            echo "--- pgfunnel log: warnings/errors (first 20) ---"
            grep -E 'WARNING|ERROR|FATAL' "$WORK/run/pgfunnel.log" | head -20
        fi
        stop_pid "$PGF_PID" INT 5
    fi
    if [[ -n $PG_PID ]]; then
        local kids
        kids=$(children_of "$PG_PID" | tr '\n' ' ')
        stop_pid "$PG_PID" INT 20
        # any backend left behind by an immediate kill
        local k
        for k in $kids; do kill -0 "$k" 2>/dev/null && kill -KILL "$k" 2>/dev/null; done
        if [[ -n $WORK && -f $WORK/run/pg.log ]]; then
            echo "--- postgres log: last 15 lines ---"
            tail -15 "$WORK/run/pg.log"
        fi
    fi
    if [[ -n $WORK && -d $WORK ]]; then rm -rf "$WORK"; fi
    if [[ -n $CREATED_USER ]]; then userdel "$CREATED_USER" >/dev/null 2>&1 || true; fi
    if [[ -n $PASSWD_LINE_ADDED ]]; then
        sed -i "/^${PASSWD_LINE_ADDED}:/d" /etc/passwd /etc/group 2>/dev/null || true
    fi
    log "cleanup done (exit $rc); total wall $(($(date +%s) - T0))s"
    exec >&- 2>&-
    [[ -n ${TEE_PID:-} ]] && wait "$TEE_PID" 2>/dev/null
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

die() { log "FATAL: $*"; say "FATAL: $*"; exit 1; }

# ------------------------------------------------------------------ unpack --
WORK=$(mktemp -d /tmp/devbench.XXXXXX) || die "mktemp failed"
chmod 755 "$WORK"
log "unpacking bundle"
if [[ -z ${FORCE_PY_UNTAR:-} ]] && command -v xz >/dev/null 2>&1; then
    tar -C "$WORK" -xJf "$HERE/bundle.tar.xz" || die "tar -xJf failed"
elif command -v python3 >/dev/null 2>&1; then
    log "no xz: unpacking with python3"
    python3 -c 'import sys, tarfile
kw = {"filter": "fully_trusted"} if hasattr(tarfile, "fully_trusted_filter") else {}
tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2], **kw)' \
        "$HERE/bundle.tar.xz" "$WORK" || die "python3 tar.xz extraction failed"
else
    die "neither xz nor python3 available to unpack the bundle"
fi
ROOT=$WORK/pgroot
BIN=$ROOT/usr/lib/postgresql/15/bin
PGBOUNCER=$ROOT/usr/sbin/pgbouncer
PGFUNNEL=$ROOT/usr/sbin/pgfunnel
LIBS=$ROOT/libs
mkdir -p "$WORK/run"
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
NPROC=$(nproc 2>/dev/null || grep -c ^processor /proc/cpuinfo)

# Client-side tools run as the invoking user with only the bundle's libraries.
PGENV=(env -i "PATH=$BIN:$ROOT/usr/sbin:/usr/bin:/bin" "HOME=$WORK/run" "LD_LIBRARY_PATH=$LIBS" LC_ALL=C TZ=GMT
       PGCONNECT_TIMEOUT=10)
pgc() { "${PGENV[@]}" "$@"; }

# ------------------------------------------------------------ run-as user --
RUNAS=()
RUN_USER=$(id -un 2>/dev/null || echo "uid$(id -u)")
if [[ $(id -u) -ne 0 ]]; then
    log "running as non-root user $RUN_USER (uid $(id -u)): no user switch needed"
else
    U=pgdevbench
    if ! id "$U" >/dev/null 2>&1; then
        if command -v useradd >/dev/null 2>&1 && useradd -M -r -U -s /bin/false -d "$WORK/run" "$U" >/dev/null 2>&1; then
            CREATED_USER=$U
            log "created user $U with useradd"
        elif useradd -M "$U" >/dev/null 2>&1; then
            CREATED_USER=$U
            log "created user $U with plain useradd"
        elif [[ -w /etc/passwd ]]; then
            # pick a free uid/gid in 60000..60999
            for id_ in $(seq 60000 60999); do
                if ! awk -F: -v i="$id_" '$3 == i { f = 1 } END { exit !f }' /etc/passwd /etc/group; then break; fi
            done
            echo "$U:x:$id_:$id_::$WORK/run:/bin/false" >>/etc/passwd
            [[ -w /etc/group ]] && echo "$U:x:$id_:" >>/etc/group
            PASSWD_LINE_ADDED=$U
            log "added $U (uid $id_) to /etc/passwd directly"
        fi
    fi
    if ! id "$U" >/dev/null 2>&1; then
        U=$( (getent passwd 65534 || awk -F: '$3 == 65534' /etc/passwd) 2>/dev/null | head -1 | cut -d: -f1)
        [[ -z $U ]] && die "no non-root user available (useradd failed, /etc/passwd not writable, no uid 65534)"
        log "falling back to existing user $U (uid 65534)"
    fi
    UID_=$(id -u "$U"); GID_=$(id -g "$U")
    if [[ -z ${FORCE_PY_SETUID:-} ]] && command -v setpriv >/dev/null 2>&1 &&
        [[ $(setpriv --reuid="$UID_" --regid="$GID_" --clear-groups -- id -u 2>/dev/null) == "$UID_" ]]; then
        RUNAS=(setpriv --reuid="$UID_" --regid="$GID_" --clear-groups --)
        log "switching user with setpriv (uid $UID_ gid $GID_)"
    elif command -v python3 >/dev/null 2>&1; then
        cat >"$WORK/asuser.py" <<'PY'
import os, sys
uid, gid = int(sys.argv[1]), int(sys.argv[2])
os.setgroups([]); os.setgid(gid); os.setuid(uid)
os.execvp(sys.argv[3], sys.argv[3:])
PY
        RUNAS=(python3 "$WORK/asuser.py" "$UID_" "$GID_")
        [[ $("${RUNAS[@]}" id -u 2>/dev/null) == "$UID_" ]] || die "python3 setuid switch failed"
        log "switching user with python3 os.setuid (uid $UID_ gid $GID_)"
    else
        die "neither setpriv nor python3 can switch to uid $UID_"
    fi
    RUN_USER=$U
    chown -R "$UID_:$GID_" "$WORK/run"
    # raise the fd limit before dropping privileges (inherited by the servers)
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
fi
[[ $(ulimit -n) -lt 4096 ]] && { ulimit -n "$(ulimit -Hn)" 2>/dev/null || true; }
SRVENV=(env -i "PATH=$BIN:$ROOT/usr/sbin:/usr/bin:/bin" "HOME=$WORK/run" "LD_LIBRARY_PATH=$LIBS" LC_ALL=C TZ=GMT)
asrv() { "${RUNAS[@]}" "${SRVENV[@]}" "$@"; }

# cgroup CPU usage of the whole container in microseconds (fallback where /proc/stat does not count)
CG_FILE=
for f in /sys/fs/cgroup/cpu.stat /sys/fs/cgroup/cpuacct/cpuacct.usage /sys/fs/cgroup/cpu,cpuacct/cpuacct.usage; do
    [[ -r $f ]] && { CG_FILE=$f; break; }
done
cg_usec() {
    case $CG_FILE in
        "") echo 0 ;;
        *cpu.stat) awk '$1 == "usage_usec" { print $2; f = 1; exit } END { if (!f) print 0 }' "$CG_FILE" 2>/dev/null || echo 0 ;;
        *) awk '{ printf "%.0f\n", $1 / 1000; exit }' "$CG_FILE" 2>/dev/null || echo 0 ;;
    esac
}
# ------------------------------------------------------------------ header --
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
PGPORT=${PGPORT_BASE:-54329}; while ! port_free "$PGPORT"; do PGPORT=$((PGPORT + 1)); done
BPORT=${BPORT_BASE:-64329}; while ! port_free "$BPORT"; do BPORT=$((BPORT + 1)); done
FPORT=${FPORT_BASE:-44329}; while ! port_free "$FPORT"; do FPORT=$((FPORT + 1)); done

CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
KERNEL="$(uname -s) $(uname -r) $(uname -m)"
MEM_GIB=$(awk '/^MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo)
CGMAX=$(cat /sys/fs/cgroup/cpu.max 2>/dev/null || echo n/a)
say "=== devbench: direct PostgreSQL vs PgBouncer vs pgfunnel, pgbench select-only ($(date -u +%Y-%m-%dT%H:%M:%SZ)) ==="
say "machine: nproc=$NPROC; cpu='$CPU_MODEL'; kernel=$KERNEL; mem=${MEM_GIB} GiB; cgroup cpu.max=$CGMAX; ulimit -n=$(ulimit -n)"
say "versions: $(pgc postgres --version); $(pgc pgbench --version); $(pgc "$PGBOUNCER" --version 2>&1 | head -1); $(pgc "$PGFUNNEL" --version 2>&1 | head -1)"
say "config: PostgreSQL max_connections=400 shared_buffers=2GB fsync=off synchronous_commit=off full_page_writes=off autovacuum=off;"
say "        PgBouncer and pgfunnel: pool_mode=transaction default_pool_size=$POOL_SIZE max_client_conn=2000 auth=trust;"
say "        pgfunnel event_loops=$LOOPS; all on 127.0.0.1 TCP"
say "        pgbench -i -s $SCALE; runs: pgbench -S -n -j $JOBS -T $DUR, 1 round, targets alternating; servers run as user '$RUN_USER'"
log "work dir $WORK; ports: postgres $PGPORT, pgbouncer $BPORT, pgfunnel $FPORT; CLK_TCK=$CLK_TCK"
log "proc/stat: $(head -1 /proc/stat); cgroup cpu file: ${CG_FILE:-none}; cpus online: $(cat /sys/devices/system/cpu/online 2>/dev/null)"

# ---------------------------------------------------------------- postgres --
PGDATA=$WORK/run/pgdata
log "initdb"
asrv initdb -D "$PGDATA" -U postgres --auth=trust --no-sync --locale=C -E UTF8 >"$WORK/run/initdb.log" 2>&1 ||
    { cat "$WORK/run/initdb.log"; die "initdb failed"; }
tail -3 "$WORK/run/initdb.log"
cat >>"$PGDATA/postgresql.conf" <<EOF

# ---- devbench (benchmark-only settings)
listen_addresses = '127.0.0.1'
port = $PGPORT
unix_socket_directories = ''
max_connections = 400
shared_buffers = 2GB
fsync = off
synchronous_commit = off
full_page_writes = off
autovacuum = off
huge_pages = off
max_wal_size = 8GB
timezone = 'GMT'
log_timezone = 'GMT'
logging_collector = off
jit = off
EOF

start_postgres() {
    : >"$WORK/run/pg.log"
    "${RUNAS[@]}" "${SRVENV[@]}" postgres -D "$PGDATA" >>"$WORK/run/pg.log" 2>&1 &
    PG_PID=$!
    local i
    for ((i = 0; i < 300; i++)); do
        if ! kill -0 "$PG_PID" 2>/dev/null; then wait "$PG_PID" 2>/dev/null; PG_PID=; return 1; fi
        pgc psql -X -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}
log "starting postgres"
if ! start_postgres; then
    echo "--- pg.log ---"; cat "$WORK/run/pg.log"
    log "postgres did not start; retrying with dynamic_shared_memory_type=mmap"
    [[ -n $PG_PID ]] && stop_pid "$PG_PID" INT 5; PG_PID=
    echo "dynamic_shared_memory_type = mmap" >>"$PGDATA/postgresql.conf"
    start_postgres || { cat "$WORK/run/pg.log"; die "postgres did not start"; }
fi
log "postgres up (pid $PG_PID): $(pgc psql -X -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -Atqc 'show shared_buffers; show max_connections' | tr '\n' ' ')"

log "pgbench -i -s $SCALE"
t=$(date +%s)
pgc pgbench -i -q -s "$SCALE" -h 127.0.0.1 -p "$PGPORT" -U postgres postgres >"$WORK/run/init.log" 2>&1 ||
    { cat "$WORK/run/init.log"; die "pgbench -i failed"; }
tail -2 "$WORK/run/init.log"
log "initialised in $(($(date +%s) - t))s; db size $(pgc psql -X -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -Atqc "select pg_size_pretty(pg_database_size('postgres'))")"
# pull the tables into shared_buffers
pgc psql -X -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres -Atqc \
    "create extension if not exists pg_prewarm; select pg_prewarm('pgbench_accounts'), pg_prewarm('pgbench_accounts_pkey')" >/dev/null 2>&1 ||
    log "pg_prewarm unavailable (continuing)"

# --------------------------------------------------------------- pgbouncer --
cat >"$WORK/run/pgbouncer.ini" <<EOF
[databases]
postgres = host=127.0.0.1 port=$PGPORT dbname=postgres

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BPORT
unix_socket_dir =
auth_type = trust
auth_file = $WORK/run/userlist.txt
admin_users = postgres
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = 2000
max_db_connections = 0
log_connections = 0
log_disconnections = 0
log_pooler_errors = 1
ignore_startup_parameters = extra_float_digits
logfile = $WORK/run/pgbouncer.log
EOF
echo '"postgres" ""' >"$WORK/run/userlist.txt"
[[ ${#RUNAS[@]} -gt 0 ]] && chown "$UID_:$GID_" "$WORK/run/pgbouncer.ini" "$WORK/run/userlist.txt"
# wait_up NAME PID PORT: until NAME (pid PID) answers a query on PORT; else
# print its stderr and log ($WORK/run/NAME.*) and fail
wait_up() {
    local name=$1 pid=$2 port=$3 i
    for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        pgc psql -X -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    cat "$WORK/run/$name.stderr" "$WORK/run/$name.log" 2>/dev/null
    return 1
}

log "starting pgbouncer"
"${RUNAS[@]}" "${SRVENV[@]}" "$PGBOUNCER" "$WORK/run/pgbouncer.ini" >"$WORK/run/pgbouncer.stderr" 2>&1 &
PGB_PID=$!
wait_up pgbouncer "$PGB_PID" "$BPORT" || { PGB_PID=; die "pgbouncer did not start"; }
log "pgbouncer up (pid $PGB_PID)"

# ---------------------------------------------------------------- pgfunnel --
sed -e "s/^listen_port = .*/listen_port = $FPORT/" -e "s#^logfile = .*#logfile = $WORK/run/pgfunnel.log#" \
    "$WORK/run/pgbouncer.ini" >"$WORK/run/pgfunnel.ini"
printf 'event_loops = %s\nworkers = 4\n' "$LOOPS" >>"$WORK/run/pgfunnel.ini"
[[ ${#RUNAS[@]} -gt 0 ]] && chown "$UID_:$GID_" "$WORK/run/pgfunnel.ini"
log "starting pgfunnel (event_loops = $LOOPS)"
"${RUNAS[@]}" "${SRVENV[@]}" "$PGFUNNEL" -q "$WORK/run/pgfunnel.ini" >"$WORK/run/pgfunnel.stderr" 2>&1 &
PGF_PID=$!
wait_up pgfunnel "$PGF_PID" "$FPORT" || { PGF_PID=; die "pgfunnel did not start"; }
log "pgfunnel up (pid $PGF_PID, $(ls /proc/$PGF_PID/task | wc -l) threads)"

# ------------------------------------------------------------- measuring --
stat_ticks() {  # $1 pid; $2: "" = utime+stime, all = +cutime+cstime, children = cutime+cstime only (ticks)
    local line a
    { read -r line <"/proc/$1/stat"; } 2>/dev/null || { echo 0; return; }
    read -r -a a <<<"${line##*) }"
    case ${2:-} in
        all) echo $((a[11] + a[12] + a[13] + a[14])) ;;
        children) echo $((a[13] + a[14])) ;;
        *) echo $((a[11] + a[12])) ;;
    esac
}
pg_snapshot() {  # "self <postmaster self+children ticks>" then "<pid> <ticks>" for each live child
    echo "self $(stat_ticks "$PG_PID" all)"
    proc_children "$PG_PID"
}
pg_delta_ticks() {  # $1 snapshot before, $2 snapshot after
    awk 'FNR == NR { if ($1 == "self") s0 = $2; else t0[$1] = $2; next }
         { if ($1 == "self") s1 = $2; else t1[$1] = $2 }
         END { d = s1 - s0
               for (p in t1) d += t1[p] - ((p in t0) ? t0[p] : 0)
               for (p in t0) if (!(p in t1)) d -= t0[p]   # reaped: counted in cutime with its whole life
               printf "%.0f\n", d }' "$1" "$2"
}
sys_ticks() {  # busy total
    awk '/^cpu / { busy = $2 + $3 + $4 + $7 + $8; tot = busy + $5 + $6 + $9; printf "%.0f %.0f\n", busy, tot; exit }' /proc/stat
}
self_child_ticks() { stat_ticks $$ children; }  # reaped children of the main shell (pgbench)

RES=$WORK/results.tsv
printf 'workload\tclients\ttarget\tstatus\ttps\tlat_ms\tlat_sd_ms\ttxns\tfailed\twall_s\tpooler_cores\tpg_cores\tpgbench_cores\tmachine_cores\tmachine_total\tsum_cores\tcgroup_cores\n' >"$RES"

run_one() {  # $1 workload label, $2 protocol, $3 clients, $4 target
    local wl=$1 proto=$2 c=$3 tgt=$4 port out rc
    local ppid=
    case $tgt in
        direct) port=$PGPORT ;;
        pgbouncer) port=$BPORT ppid=$PGB_PID ;;
        pgfunnel) port=$FPORT ppid=$PGF_PID ;;
    esac
    out=$WORK/run/pgbench.$wl.$c.$tgt.out
    local now left
    now=$(date +%s); left=$((T0 + DEADLINE_S - now))
    if ((left < DUR + 15)); then
        log "SKIP $wl c=$c $tgt: deadline (${left}s left)"
        printf '%s\t%s\t%s\tSKIP\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\t-\n' "$wl" "$c" "$tgt" >>"$RES"
        return
    fi
    local x0 s0 tot0 c0 w0 g0 x1 s1 tot1 c1 w1 g1
    pg_snapshot >"$WORK/snap0"
    [[ -n $ppid ]] && x0=$(stat_ticks "$ppid") || x0=0
    read -r s0 tot0 <<<"$(sys_ticks)"
    g0=$(cg_usec)
    c0=$(self_child_ticks)
    w0=$EPOCHREALTIME
    "${PGENV[@]}" timeout -k 5 $((DUR + 40)) pgbench -h 127.0.0.1 -p "$port" -U postgres -n -S -M "$proto" \
        -c "$c" -j "$JOBS" -T "$DUR" -P 5 postgres >"$out" 2>&1 &
    RUN_PID=$!
    wait "$RUN_PID"; rc=$?
    RUN_PID=
    w1=$EPOCHREALTIME
    c1=$(self_child_ticks)
    [[ -n $ppid ]] && x1=$(stat_ticks "$ppid") || x1=0
    read -r s1 tot1 <<<"$(sys_ticks)"
    g1=$(cg_usec)
    sleep 0.3   # let the postmaster reap exiting backends
    pg_snapshot >"$WORK/snap1"
    local pgd
    pgd=$(pg_delta_ticks "$WORK/snap0" "$WORK/snap1")
    local tps lat sd txn failed status wall pgb pg cli mach mtot sum cg
    tps=$(awk '/^tps = / { print $3; exit }' "$out")
    lat=$(awk '/^latency average = / { print $4; exit }' "$out")
    sd=$(awk '/^latency stddev = / { print $4; exit }' "$out")
    txn=$(awk -F': ' '/^number of transactions actually processed/ { split($2, a, "/"); print a[1]; exit }' "$out")
    failed=$(awk -F': ' '/^number of failed transactions/ { split($2, a, " "); print a[1]; exit }' "$out")
    if [[ -z $tps ]]; then status=FAIL; elif [[ $rc -ne 0 ]] || grep -q 'aborted' "$out"; then status=ABORT; else status=ok; fi
    wall=$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.2f", b - a }')
    fmt() { awk -v d="$1" -v hz="$CLK_TCK" -v w="$wall" 'BEGIN { printf "%.2f", d / hz / w }'; }
    if [[ -n $ppid ]]; then pgb=$(fmt $((x1 - x0))); else pgb=-; fi
    pg=$(fmt "$pgd")
    cli=$(fmt $((c1 - c0)))
    if ((tot1 > tot0)); then mach=$(fmt $((s1 - s0))); mtot=$(fmt $((tot1 - tot0))); else mach=n/a; mtot=n/a; fi
    sum=$(awk -v a="$pgb" -v b="$pg" -v c="$cli" 'BEGIN { printf "%.2f", (a == "-" ? 0 : a) + b + c }')
    if ((g1 > g0)); then cg=$(awk -v d=$((g1 - g0)) -v w="$wall" 'BEGIN { printf "%.2f", d / 1e6 / w }'); else cg=n/a; fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$wl" "$c" "$tgt" "$status" "${tps:--}" "${lat:--}" \
        "${sd:--}" "${txn:--}" "${failed:--}" "$wall" "$pgb" "$pg" "$cli" "$mach" "$mtot" "$sum" "$cg" >>"$RES"
    log "$(printf '%-9s c=%-4s %-9s %-5s tps=%10.1f lat=%7sms sd=%6sms wall=%5ss cores: pooler=%s postgres=%s pgbench=%s sum=%s machine=%s/%s cgroup=%s' \
        "$wl" "$c" "$tgt" "$status" "${tps:-0}" "${lat:--}" "${sd:--}" "$wall" "$pgb" "$pg" "$cli" "$sum" "$mach" "$mtot" "$cg")"
    if [[ $status != ok ]]; then echo "--- pgbench output ($wl c=$c $tgt, rc=$rc) ---"; tail -15 "$out"; fi
    grep -E '^progress' "$out" | sed 's/^/    /'
}

# warm-up: both targets, 64 clients, also opens PgBouncer's server connections
if ((WARM > 0)); then
    for tgt in $TARGETS; do
        case $tgt in direct) port=$PGPORT ;; pgbouncer) port=$BPORT ;; pgfunnel) port=$FPORT ;; esac
        pgc timeout -k 5 $((WARM + 30)) pgbench -h 127.0.0.1 -p "$port" -U postgres -n -S -c 64 -j "$JOBS" -T "$WARM" postgres \
            >"$WORK/run/warm.$tgt.out" 2>&1 || { log "warm-up on $tgt failed:"; tail -5 "$WORK/run/warm.$tgt.out"; }
    done
    log "warm-up done (${WARM}s, 64 clients, each target)"
fi

# the targets take turns going first, so drift hits all of them alike
rotate() { # N: the targets rotated by N
    local -a t=($TARGETS)
    local k=${#t[@]} i out=()
    for ((i = 0; i < k; i++)); do out+=("${t[$(((i + $1) % k))]}"); done
    echo "${out[*]}"
}
n=0
for c in $CLIENTS; do
    for tgt in $(rotate $n); do run_one select-simple simple "$c" "$tgt"; done
    n=$((n + 1))
done
if [[ -n $EXT_CLIENTS ]]; then
    for tgt in $(rotate $n); do run_one select-ext extended "$EXT_CLIENTS" "$tgt"; done
fi
log "pgbouncer SHOW POOLS: $(pgc psql -X -h 127.0.0.1 -p "$BPORT" -U postgres -d pgbouncer -Atc 'show pools' 2>&1 | head -3 | tr '\n' ' ')"
log "pgfunnel SHOW POOLS: $(pgc psql -X -h 127.0.0.1 -p "$FPORT" -U postgres -d pgbouncer -Atc 'show pools' 2>&1 | head -3 | tr '\n' ' ')"
log "pgfunnel SHOW LOOPS: $(pgc psql -X -h 127.0.0.1 -p "$FPORT" -U postgres -d pgbouncer -Atc 'show loops' 2>&1 | tr '\n' ' ')"

# ----------------------------------------------------------------- summary --
say ""
say "--- compact: TPS direct vs PgBouncer vs pgfunnel (cores = CPU-seconds / wall-seconds; machine has $NPROC) ---"
{
    printf '%-14s %7s %11s %11s %11s %8s %8s %8s %10s %10s\n' workload clients direct_TPS pgb_TPS pgf_TPS pgb/dir pgf/dir pgf/pgb pgb_cores pgf_cores
    awk -F'\t' 'NR == 1 { next }
        { k = $1 SUBSEP $2; if (!(k in seen)) { seen[k] = 1; K[++n] = k }
          if ($4 == "ok") { tps[k, $3] = $5; cores[k, $3] = $11 } else tps[k, $3] = $4 }
        function num(x) { return (x + 0 > 0) ? sprintf("%.0f", x) : (x == "" ? "-" : x) }
        function ratio(a, b) { return (a + 0 > 0 && b + 0 > 0) ? sprintf("%.2f", a / b) : "-" }
        END { for (i = 1; i <= n; i++) { k = K[i]; split(k, f, SUBSEP)
                  d = tps[k, "direct"]; p = tps[k, "pgbouncer"]; q = tps[k, "pgfunnel"]
                  printf "%-14s %7s %11s %11s %11s %8s %8s %8s %10s %10s\n", f[1], f[2], num(d), num(p), num(q),
                      ratio(p, d), ratio(q, d), ratio(q, p),
                      (((k, "pgbouncer") in cores) ? cores[k, "pgbouncer"] : "-"),
                      (((k, "pgfunnel") in cores) ? cores[k, "pgfunnel"] : "-") } }' "$RES"
} | tee -a "$SUM"
say ""
say "--- detail, in run order ---"
say "cores: pooler = the pooler process, all threads (/proc/<pid>/stat utime+stime); postgres = postmaster + backends"
say "(live + reaped); pgbench = the client (reaped child of the script); sum3 = pooler + postgres + pgbench;"
say "machine = busy CPU of the whole machine from /proc/stat; 'of' = all CPU time /proc/stat counted (~$NPROC);"
say "cgroup = the container's cgroup CPU usage (n/a if none). x/direct = TPS / direct TPS at the same client count."
{
    printf '%-14s %7s %-10s %-6s %11s %8s %8s %10s %9s %9s %9s %9s %8s %8s\n' workload clients target status TPS lat_ms \
        x/direct pool_cores pg_cores pgbench sum3 machine of cgroup
    awk -F'\t' 'NR == 1 { next }
        { k = $1 SUBSEP $2; if ($3 == "direct" && $4 == "ok") d[k] = $5; rows[++n] = $0 }
        END { for (i = 1; i <= n; i++) { split(rows[i], f, "\t"); k = f[1] SUBSEP f[2]
                r = (f[3] != "direct" && f[4] == "ok" && (k in d) && d[k] > 0) ? sprintf("%.2f", f[5] / d[k]) : "-"
                printf "%-14s %7s %-10s %-6s %11s %8s %8s %10s %9s %9s %9s %9s %8s %8s\n", f[1], f[2], f[3], f[4],
                    (f[5] == "-" ? "-" : sprintf("%.1f", f[5])), f[6], r, f[11], f[12], f[13], f[16], f[14], f[15], f[17] } }' "$RES"
} | tee -a "$SUM"
say ""
say "raw (TSV):"
tee -a "$SUM" <"$RES"
log "benchmark done"
exit 0
