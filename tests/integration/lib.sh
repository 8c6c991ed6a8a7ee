# shellcheck shell=bash
# lib.sh — helpers for the shell integration tests (tests/integration/t_*.sh).
#
# run.sh sources this file and then one t_*.sh file in a fresh bash for every
# test_* function, so a test may `exit` freely.  Environment provided by run.sh:
#   PGHOST PGPORT PGUSER PGDATABASE   the sandbox cluster (superuser postgres)
#   SANDBOX_DIR SANDBOX_SOCKET_DIR    its directory and unix socket directory
#   PGFUNNEL_BIN ITEST_DIR TOOLS_DIR  the binary under test, C itests, tools
#   REPO_ROOT PGSANDBOX PG_BINDIR     repository root, tools/pgsandbox, PG binaries
#   TEST_TMP                          a private directory, removed after the test
#
# Functions:
#   free_port                         print a free loopback TCP port
#   port_open PORT                    true if 127.0.0.1:PORT accepts a connection
#   pf_write_ini [LINE…]              write $TEST_TMP/pgfunnel.ini (see below)
#   pf_launch [ARG…]                  start $PGFUNNEL_BIN [ARG…] $PF_INI in the background
#   pf_start [LINE…]                  pf_write_ini + pf_launch + wait until it listens
#   pf_stop [SIGNAL]                  signal it (default INT), wait ≤15 s, return its status
#   pf_alive                          true while the started pgfunnel runs
#   pf_logs                           print its log file and captured stderr
#   pf_log_mark / pf_logs_since MARK  the part of those written after the mark
#   pf_psql [ARG…] / pg_psql [ARG…]   psql -X -At as postgres via pgfunnel / directly
#   pgbench [ARG…]                    the PostgreSQL pgbench
#   assert_eq EXP ACT [MSG]  assert_ne A B [MSG]
#   assert_contains HAY NEEDLE [MSG]  assert_not_contains HAY NEEDLE [MSG]
#   assert_ok CMD…  assert_fail CMD…
#   wait_until SECONDS CMD…           poll CMD every 0.1 s; fail the test on timeout
#   try_until SECONDS CMD…            same, but return 1 on timeout instead
#   fail MSG                          fail the test here
#   skip REASON                       skip the test (exit 77)
# A failed assertion prints "ASSERT FAILED at file:line: …" and exits with 1.
# Do not call assertions inside $(…): exit would only leave the subshell.

PG_BINDIR=${PG_BINDIR:-$(
    d=$(pg_config --bindir 2>/dev/null)
    if [ -x "$d/pgbench" ]; then echo "$d"; else
        for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pgbench" ] && b=$d; done
        echo "${b:-/usr/lib/postgresql/15/bin}"
    fi
)}
export PG_BINDIR
export PGCONNECT_TIMEOUT=${PGCONNECT_TIMEOUT:-10}

if [ -z "${TEST_TMP:-}" ]; then
    TEST_TMP=$(mktemp -d "/tmp/pft.XXXXXX")
    export TEST_TMP
fi
mkdir -p "$TEST_TMP"

# ---------------------------------------------------------------- assertions

_where() { # caller location, skipping lib.sh frames
    local i
    for ((i = 1; i < ${#BASH_SOURCE[@]}; i++)); do
        if [ "${BASH_SOURCE[$i]}" != "${BASH_SOURCE[0]}" ]; then
            echo "$(basename "${BASH_SOURCE[$i]}"):${BASH_LINENO[$((i - 1))]}"
            return
        fi
    done
    echo "?"
}

fail() {
    echo "ASSERT FAILED at $(_where): $*" >&2
    exit 1
}

skip() {
    echo "SKIP: $*"
    exit 77
}

assert_eq() {
    [ "$1" == "$2" ] || fail "${3:+$3: }expected '$1', got '$2'"
}

assert_ne() {
    [ "$1" != "$2" ] || fail "${3:+$3: }expected something other than '$2'"
}

assert_contains() {
    case $1 in
        *"$2"*) ;;
        *) fail "${3:+$3: }'$2' not found in: $(printf '%s' "$1" | tail -n 20)" ;;
    esac
}

assert_not_contains() {
    case $1 in
        *"$2"*) fail "${3:+$3: }unexpected '$2' in: $(printf '%s' "$1" | tail -n 20)" ;;
        *) ;;
    esac
}

assert_ok() {
    local out rc
    out=$("$@" 2>&1)
    rc=$?
    [ $rc -eq 0 ] || fail "command failed (rc=$rc): $*"$'\n'"$(printf '%s' "$out" | tail -n 20)"
}

assert_fail() {
    local out
    if out=$("$@" 2>&1); then
        fail "command unexpectedly succeeded: $*"$'\n'"$(printf '%s' "$out" | tail -n 20)"
    fi
    return 0
}

try_until() {
    local timeout=$1
    shift
    local secs=${timeout%%.*} frac=000 deadline
    case $timeout in *.*) frac=${timeout#*.}000 ;; esac
    deadline=$(($(date +%s%3N) + 10#${secs:-0} * 1000 + 10#${frac:0:3}))
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        [ "$(date +%s%3N)" -ge "$deadline" ] && return 1
        sleep 0.1
    done
}

wait_until() {
    try_until "$@" || fail "timed out after $1 s waiting for: ${*:2}"
}

# ---------------------------------------------------------------- ports

port_open() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

free_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
        if command -v ss >/dev/null 2>&1 && [ -n "$(ss -Hltn "sport = :$p" 2>/dev/null)" ]; then
            continue
        fi
        port_open "$p" && continue
        echo "$p"
        return 0
    done
    echo "free_port: no free port" >&2
    return 1
}

# silent_listener_start PORT — a TCP listener on 127.0.0.1:PORT that accepts
# connections and never answers (tools/silent_listener); its log is
# $TEST_TMP/listener.log ("accepted" per connection).  Killed when the test ends.
silent_listener_start() {
    [ -x "$TOOLS_DIR/silent_listener" ] || fail "$TOOLS_DIR/silent_listener missing (make build/tools/silent_listener)"
    "$TOOLS_DIR/silent_listener" 127.0.0.1 "$1" >"$TEST_TMP/listener.log" 2>&1 &
    SILENT_LISTENER_PID=$!
    trap 'kill $SILENT_LISTENER_PID 2>/dev/null' EXIT
    wait_until 5 grep -q listening "$TEST_TMP/listener.log"
}

# ---------------------------------------------------------------- pgfunnel

# pf_write_ini [LINE…] — writes $PF_INI; every argument is appended as a line
# (whole sections welcome, e.g. pf_write_ini "[pgbouncer]" "default_pool_size = 5").
# With a single argument "-" the extra lines are read from stdin.
# PF_LISTEN_PORT / PF_UNIX_SOCKET_DIR, when set, replace the defaults;
# PF_EVENT_LOOPS, when set, adds event_loops (a test's own line comes later and wins).
pf_write_ini() {
    PF_PORT=${PF_LISTEN_PORT:-$(free_port)}
    PF_INI=$TEST_TMP/pgfunnel.ini
    PF_LOG=$TEST_TMP/pgfunnel.log
    PF_PIDFILE=$TEST_TMP/pgfunnel.pid
    export PF_PORT PF_INI PF_LOG PF_PIDFILE
    {
        echo "[databases]"
        echo "postgres = host=127.0.0.1 port=$PGPORT dbname=postgres"
        echo "pgfunnel_test = host=127.0.0.1 port=$PGPORT dbname=pgfunnel_test"
        echo "* = host=127.0.0.1 port=$PGPORT"
        echo ""
        echo "[pgbouncer]"
        echo "listen_addr = 127.0.0.1"
        echo "listen_port = $PF_PORT"
        echo "unix_socket_dir = ${PF_UNIX_SOCKET_DIR-$TEST_TMP}"
        echo "auth_type = trust"
        echo "pool_mode = transaction"
        echo "logfile = $PF_LOG"
        echo "pidfile = $PF_PIDFILE"
        echo "admin_users = postgres"
        # PF_EVENT_LOOPS: run a suite with several loops (make check-loops)
        [ -z "${PF_EVENT_LOOPS:-}" ] || echo "event_loops = $PF_EVENT_LOOPS"
        if [ $# -eq 1 ] && [ "$1" = - ]; then
            cat
        elif [ $# -gt 0 ]; then
            printf '%s\n' "$@"
        fi
    } >"$PF_INI"
}

# pf_launch [ARG…] — runs "$PGFUNNEL_BIN" ARG… "$PF_INI" in the background.
# Background jobs of a non-interactive bash ignore SIGINT/SIGQUIT; env
# --default-signal restores the defaults so signals behave as from a terminal.
# shellcheck disable=SC2120  # callers may pass options such as -v
pf_launch() {
    [ -n "${PF_INI:-}" ] || pf_write_ini
    [ -x "$PGFUNNEL_BIN" ] || fail "PGFUNNEL_BIN '$PGFUNNEL_BIN' is not executable"
    local envcmd=()
    if env --default-signal=INT true 2>/dev/null; then
        envcmd=(env "--default-signal=INT,QUIT,TERM,HUP,USR1,USR2")
    fi
    "${envcmd[@]}" "$PGFUNNEL_BIN" "$@" "$PF_INI" \
        >"$TEST_TMP/pgfunnel.stdout" 2>"$TEST_TMP/pgfunnel.stderr" </dev/null &
    PF_PID=$!
    export PF_PID
    echo "$PF_PID" >>"$TEST_TMP/pgfunnel.pids"
}

pf_alive() {
    [ -n "${PF_PID:-}" ] || return 1
    kill -0 "$PF_PID" 2>/dev/null || return 1
    # a dead child stays a zombie until waited for
    local st
    st=$(awk '{print $3}' "/proc/$PF_PID/stat" 2>/dev/null)
    [ -n "$st" ] && [ "$st" != Z ]
}

pf_logs() {
    [ -f "${PF_LOG:-}" ] && cat "$PF_LOG"
    [ -f "$TEST_TMP/pgfunnel.stderr" ] && cat "$TEST_TMP/pgfunnel.stderr"
    [ -s "$TEST_TMP/pgfunnel.stdout" ] && cat "$TEST_TMP/pgfunnel.stdout"
    return 0
}

# pf_log_mark — prints a mark of how far the log and stderr are written;
# pf_logs_since MARK prints what was written after it.
pf_log_mark() {
    echo "$(stat -c %s "${PF_LOG:-/nonexistent}" 2>/dev/null || echo 0):$(stat -c %s "$TEST_TMP/pgfunnel.stderr" 2>/dev/null || echo 0)"
}
pf_logs_since() {
    local a=${1%%:*} b=${1##*:}
    [ -f "${PF_LOG:-}" ] && tail -c +$((a + 1)) "$PF_LOG"
    [ -f "$TEST_TMP/pgfunnel.stderr" ] && tail -c +$((b + 1)) "$TEST_TMP/pgfunnel.stderr"
    return 0
}

_pf_dump() {
    echo "--- pgfunnel stderr (tail) ---"
    tail -n 30 "$TEST_TMP/pgfunnel.stderr" 2>/dev/null
    if [ -s "$TEST_TMP/pgfunnel.stdout" ]; then
        echo "--- pgfunnel stdout (tail) ---"
        tail -n 10 "$TEST_TMP/pgfunnel.stdout"
    fi
    if [ -f "${PF_LOG:-}" ]; then
        echo "--- $PF_LOG (tail) ---"
        tail -n 30 "$PF_LOG"
    fi
}

# pf_start [LINE…] — write the ini, start pgfunnel, wait ≤10 s until it listens.
pf_start() {
    pf_write_ini "$@"
    # shellcheck disable=SC2119
    pf_launch
    local i rc
    for ((i = 0; i < 100; i++)); do
        if ! pf_alive; then
            wait "$PF_PID" 2>/dev/null
            rc=$?
            _pf_dump >&2
            fail "pgfunnel exited (status $rc) before listening on 127.0.0.1:$PF_PORT"
        fi
        port_open "$PF_PORT" && return 0
        sleep 0.1
    done
    _pf_dump >&2
    fail "pgfunnel is not listening on 127.0.0.1:$PF_PORT after 10 s"
}

# pf_stop [SIGNAL] — default INT; waits up to 15 s; returns the exit status
# (128+N when killed by signal N; 124 after a timeout, when it gets SIGKILL).
pf_stop() {
    local sig=${1:-INT} i
    [ -n "${PF_PID:-}" ] || { echo "pf_stop: nothing started" >&2; return 1; }
    kill "-$sig" "$PF_PID" 2>/dev/null
    for ((i = 0; i < 150; i++)); do
        pf_alive || break
        sleep 0.1
    done
    if pf_alive; then
        echo "pf_stop: pgfunnel (pid $PF_PID) still running 15 s after SIG$sig; killing it" >&2
        kill -9 "$PF_PID" 2>/dev/null
        wait "$PF_PID" 2>/dev/null
        return 124
    fi
    wait "$PF_PID" 2>/dev/null
}

pf_psql() {
    "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PF_PORT" -U postgres -d postgres "$@"
}

pg_psql() {
    "$PG_BINDIR/psql" -X -At -h 127.0.0.1 -p "$PGPORT" -U postgres -d postgres "$@"
}

pgbench() {
    "$PG_BINDIR/pgbench" "$@"
}
