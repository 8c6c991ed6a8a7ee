#!/bin/bash
# run.sh — integration test runner.
#
#   bash tests/integration/run.sh [PATTERN…]      (or TESTS=PATTERN)
#
# Starts one sandbox PostgreSQL (tools/pgsandbox) for the whole run, then runs
# every test_* function of every tests/integration/t_*.sh, each in its own bash
# (lib.sh + the file sourced, then the function called) with its own $TEST_TMP
# and a timeout (TEST_TIMEOUT, default 120 s; a `# timeout: N` comment line
# sets it for the next test_* function of the file).  Exit 77 = skipped.
# Then runs every cmocka program $ITEST_DIR/itest_* (timeout ITEST_TIMEOUT,
# default 300 s) and counts its cases.  PATTERN is an extended regex matched
# against "t_file.sh:test_name" and against itest program names.
# Last line: "integration: N passed, N failed, N skipped"; exit 1 on any failure.
#
# Environment: PGFUNNEL_BIN (default ./pgfunnel), ITEST_DIR (build/tests/integration),
# TOOLS_DIR (build/tools), KEEP_TMP=1 keeps the temp directories, VERBOSE=1
# prints the output of passing tests too.
set -u

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
REPO_ROOT=$(cd "$HERE/../.." && pwd -P)
LIB=$HERE/lib.sh
PGSANDBOX=$REPO_ROOT/tools/pgsandbox

PGFUNNEL_BIN=${PGFUNNEL_BIN:-$REPO_ROOT/pgfunnel}
ITEST_DIR=${ITEST_DIR:-$REPO_ROOT/build/tests/integration}
TOOLS_DIR=${TOOLS_DIR:-$REPO_ROOT/build/tools}
case $PGFUNNEL_BIN in /*) ;; *) PGFUNNEL_BIN=$PWD/$PGFUNNEL_BIN ;; esac
TEST_TIMEOUT=${TEST_TIMEOUT:-120}
ITEST_TIMEOUT=${ITEST_TIMEOUT:-300}

FILTER=${TESTS:-}
if [ $# -gt 0 ]; then
    FILTER=$(IFS='|'; echo "$*")
fi
matches() { [ -z "$FILTER" ] || grep -Eq -- "$FILTER" <<<"$1"; }

# the environment of the developer must not leak into the tests
unset PGPASSWORD PGPASSFILE PGSERVICE PGSERVICEFILE PGOPTIONS PGSSLMODE PGHOSTADDR \
    PGREQUIRESSL PGTARGETSESSIONATTRS PGAPPNAME PGCLIENTENCODING

# short path: unix sockets live in per-test dirs and sun_path is 108 bytes
RUN_TMP=$(mktemp -d /tmp/pfit.XXXXXX) || exit 1
chmod 755 "$RUN_TMP"
SANDBOX_DIR=$RUN_TMP/pg

npass=0
nfail=0
nskip=0
failed=()
CUR_PID=""

leftover_kill() { # DIR: stop pgfunnel processes a test left behind
    local dir=$1 pid cmd f i pids=()
    for f in "$dir"/pgfunnel.pids "$dir"/*.pid; do
        [ -f "$f" ] || continue
        for pid in $(tr -c '0-9\n' ' ' <"$f"); do
            [ "$pid" -gt 1 ] 2>/dev/null || continue
            cmd=$(tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline") || continue
            case $cmd in *pgfunnel*) pids+=("$pid") ;; esac
        done
    done
    [ ${#pids[@]} -eq 0 ] && return 0
    # SIGQUIT is an orderly immediate exit, so a sanitizer build still reports leaks
    kill -QUIT "${pids[@]}" 2>/dev/null
    for ((i = 0; i < 30; i++)); do
        kill -0 "${pids[@]}" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "${pids[@]}" 2>/dev/null
}

# sanitizer_report DIR: print (and succeed) if a sanitizer complained in DIR's stderr files
sanitizer_report() {
    local f
    for f in "$1"/*.stderr; do
        [ -f "$f" ] || continue
        if grep -qE 'ERROR: (Address|Leak|Thread)Sanitizer|WARNING: ThreadSanitizer|runtime error:' "$f"; then
            echo "    --- sanitizer report in $(basename "$f") ---"
            grep -E -A12 'ERROR: (Address|Leak|Thread)Sanitizer|WARNING: ThreadSanitizer|runtime error:' "$f" | head -40
            return 0
        fi
    done
    return 1
}

cleanup() {
    trap - EXIT INT TERM HUP
    if [ -n "$CUR_PID" ]; then
        kill -TERM "$CUR_PID" 2>/dev/null
        sleep 0.5
        kill -KILL "$CUR_PID" 2>/dev/null
    fi
    for d in "$RUN_TMP"/[0-9]*/; do [ -d "$d" ] && leftover_kill "${d%/}"; done
    bash "$PGSANDBOX" destroy "$SANDBOX_DIR" >/dev/null 2>&1
    if [ "${KEEP_TMP:-0}" = 1 ]; then
        echo "(temp files kept in $RUN_TMP)"
    else
        rm -rf "$RUN_TMP"
    fi
}
on_signal() {
    echo "interrupted" >&2
    cleanup
    echo "integration: $npass passed, $((nfail + 1)) failed, $nskip skipped"
    exit 130
}
trap cleanup EXIT
trap on_signal INT TERM HUP

indent() { sed 's/^/    /'; }

elapsed() { # START_USEC → "1.2s"
    local d=$((${EPOCHREALTIME/./} - $1))
    printf '%d.%ds' $((d / 1000000)) $((d % 1000000 / 100000))
}

# ---------------------------------------------------------------- sandbox
if ! PGPORT=$(bash "$PGSANDBOX" start "$SANDBOX_DIR"); then
    echo "FAIL could not start the sandbox PostgreSQL"
    echo "integration: 0 passed, 1 failed"
    exit 1
fi
eval "$(bash "$PGSANDBOX" env "$SANDBOX_DIR")"
PG_BINDIR=$(
    d=$(pg_config --bindir 2>/dev/null)
    if [ -x "$d/pgbench" ]; then echo "$d"; else
        for d in /usr/lib/postgresql/*/bin; do [ -x "$d/pgbench" ] && b=$d; done
        echo "${b:-/usr/lib/postgresql/15/bin}"
    fi
)
export PGHOST PGPORT PGUSER PGDATABASE SANDBOX_DIR SANDBOX_SOCKET_DIR
export PGFUNNEL_BIN ITEST_DIR TOOLS_DIR REPO_ROOT PGSANDBOX PG_BINDIR
echo "sandbox PostgreSQL on 127.0.0.1:$PGPORT ($SANDBOX_DIR); pgfunnel: $PGFUNNEL_BIN"
[ -x "$PGFUNNEL_BIN" ] || echo "warning: $PGFUNNEL_BIN is not executable"

# ---------------------------------------------------------------- shell tests
list_tests() { # FILE → "name timeout" lines, in file order
    local line pending=""
    local re_to='^[[:space:]]*#[[:space:]]*timeout:[[:space:]]*([0-9]+)'
    local re_fn='^[[:space:]]*(function[[:space:]]+)?(test_[A-Za-z0-9_]+)[[:space:]]*(\(\)|\{)'
    while IFS= read -r line || [ -n "$line" ]; do
        if [[ $line =~ $re_to ]]; then
            pending=${BASH_REMATCH[1]}
        elif [[ $line =~ $re_fn ]]; then
            echo "${BASH_REMATCH[2]} ${pending:-$TEST_TIMEOUT}"
            pending=""
        fi
    done <"$1"
}

n=0
for file in "$HERE"/t_*.sh; do
    [ -f "$file" ] || continue
    base=$(basename "$file")
    while read -r fn tmo; do
        name="$base:$fn"
        matches "$name" || continue
        n=$((n + 1))
        ttmp=$RUN_TMP/$n
        out=$RUN_TMP/$n.out
        mkdir -p "$ttmp" && chmod 755 "$ttmp"
        t0=${EPOCHREALTIME/./}
        # shellcheck disable=SC2016  # expanded by the inner bash
        (cd "$ttmp" && TEST_TMP=$ttmp TEST_NAME=$name exec timeout -k 5 "$tmo" \
            bash -c 'source "$1" && source "$2" && "$3"' _ "$LIB" "$file" "$fn") \
            >"$out" 2>&1 </dev/null &
        CUR_PID=$!
        wait "$CUR_PID"
        rc=$?
        CUR_PID=""
        dt=$(elapsed "$t0")
        leftover_kill "$ttmp"
        if [ $rc = 0 ] || [ $rc = 77 ]; then
            if sanitizer_report "$ttmp" >>"$out"; then rc=99; fi
        fi
        case $rc in
            0)
                npass=$((npass + 1))
                echo "ok   $name ($dt)"
                [ "${VERBOSE:-0}" = 1 ] && indent <"$out"
                ;;
            77)
                nskip=$((nskip + 1))
                reason=$(sed -n 's/^SKIP: //p' "$out" | tail -n 1)
                echo "skip $name${reason:+ ($reason)}"
                ;;
            *)
                nfail=$((nfail + 1))
                failed+=("$name")
                if [ $rc = 124 ] || [ $rc = 137 ]; then
                    echo "FAIL $name (timed out after ${tmo}s)"
                else
                    echo "FAIL $name ($dt, exit $rc)"
                fi
                tail -n 60 "$out" | indent
                if [ -s "$ttmp/pgfunnel.stderr" ]; then
                    echo "    --- pgfunnel stderr (tail) ---"
                    tail -n 30 "$ttmp/pgfunnel.stderr" | indent
                fi
                if [ -f "$ttmp/pgfunnel.log" ]; then
                    echo "    --- pgfunnel.log (tail) ---"
                    tail -n 30 "$ttmp/pgfunnel.log" | indent
                fi
                ;;
        esac
        [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$ttmp" "$out"
    done < <(list_tests "$file")
done

# ---------------------------------------------------------------- C itests
if [ -d "$ITEST_DIR" ]; then
    for bin in "$ITEST_DIR"/itest_*; do
        if [ ! -f "$bin" ] || [ ! -x "$bin" ]; then continue; fi
        name=$(basename "$bin")
        matches "$name" || continue
        n=$((n + 1))
        ttmp=$RUN_TMP/$n
        out=$RUN_TMP/$n.out
        mkdir -p "$ttmp" && chmod 755 "$ttmp"
        t0=${EPOCHREALTIME/./}
        (cd "$ttmp" && TEST_TMP=$ttmp exec timeout -k 5 "$ITEST_TIMEOUT" "$bin") >"$out" 2>&1 </dev/null &
        CUR_PID=$!
        wait "$CUR_PID"
        rc=$?
        CUR_PID=""
        dt=$(elapsed "$t0")
        leftover_kill "$ttmp"
        p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
        f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
        p=${p:-0}
        f=${f:-0}
        [ $rc -ne 0 ] && [ "$f" = 0 ] && f=1 # crashed or timed out before reporting
        npass=$((npass + p))
        nfail=$((nfail + f))
        if [ $rc -eq 0 ] && [ "$f" = 0 ]; then
            echo "ok   $name: $p passed ($dt)"
        else
            failed+=("$name")
            if [ $rc = 124 ] || [ $rc = 137 ]; then
                echo "FAIL $name (timed out after ${ITEST_TIMEOUT}s)"
            else
                echo "FAIL $name: $p passed, $f failed ($dt, exit $rc)"
            fi
            tail -n 60 "$out" | indent
            for lf in "$ttmp"/*.log; do
                [ -f "$lf" ] || continue
                echo "    --- $(basename "$lf") (tail) ---"
                tail -n 30 "$lf" | indent
            done
        fi
        [ "${KEEP_TMP:-0}" = 1 ] || rm -rf "$ttmp" "$out"
    done
fi

[ ${#failed[@]} -eq 0 ] || echo "failing: ${failed[*]}"
cleanup
if [ $nskip -gt 0 ]; then
    echo "integration: $npass passed, $nfail failed, $nskip skipped"
else
    echo "integration: $npass passed, $nfail failed"
fi
[ $nfail -eq 0 ]
