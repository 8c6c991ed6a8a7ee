# shellcheck shell=bash
# session.sh — long-lived psql sessions for the integration tests, sourced by
# t_*.sh files after lib.sh (it is not a test file itself: run.sh only runs t_*.sh).
#
# A long-lived psql fed through a fifo, so several sessions can interleave.
#   _sess_open NAME [CONNINFO]   start it (CONNINFO defaults to dbname=postgres)
#   _sess_run NAME SQL           run SQL, wait for it; its output goes to $SESS_OUT
#                                (not in $(…): the session counts its queries)
#   _sess_close NAME             end psql and wait for it
declare -A _SESS_FD _SESS_PID _SESS_N

_sess_open() {
    local name=$1 conninfo=${2:-dbname=postgres} fd
    mkfifo "$TEST_TMP/$name.in"
    : >"$TEST_TMP/$name.out"
    (
        # other sessions' fifos must not stay open in this psql (no EOF for them)
        for fd in "${_SESS_FD[@]}"; do eval "exec $fd>&-"; done
        exec "$PG_BINDIR/psql" -X -At -v ON_ERROR_STOP=0 \
            "host=127.0.0.1 port=$PF_PORT user=postgres $conninfo" \
            -f "$TEST_TMP/$name.in" >"$TEST_TMP/$name.out" 2>&1
    ) &
    _SESS_PID[$name]=$!
    exec {fd}>"$TEST_TMP/$name.in"
    _SESS_FD[$name]=$fd
    _SESS_N[$name]=0
}

_sess_marked() { grep -qx "$2" "$TEST_TMP/$1.out"; }

_sess_run() {
    local name=$1 sql=$2 n fd=${_SESS_FD[$1]} prev
    prev=${_SESS_N[$name]}
    n=$((prev + 1))
    _SESS_N[$name]=$n
    printf '%s\n\\echo __mark_%d\n' "$sql" "$n" >&"$fd"
    try_until 10 _sess_marked "$name" "__mark_$n" || {
        echo "session $name: no answer to: $sql" >&2
        cat "$TEST_TMP/$name.out" >&2
        return 1
    }
    # the lines between the previous mark and this one
    SESS_OUT=$(awk -v a="__mark_$prev" -v b="__mark_$n" '
        $0 == b { exit } on { print } $0 == a { on = 1 }
        BEGIN { on = (a == "__mark_0") }' "$TEST_TMP/$name.out")
}

_sess_close() {
    local name=$1 fd=${_SESS_FD[$1]}
    exec {fd}>&-
    wait "${_SESS_PID[$name]}" 2>/dev/null
}

# a session query that must print exactly EXPECTED
_sess_expect() {
    _sess_run "$1" "$2" || fail "session $1 did not answer '$2'"
    assert_eq "$3" "$SESS_OUT" "session $1: $2"
}

# send SQL without waiting for its answer (e.g. a query the test will cancel)
_sess_send() {
    printf '%s\n' "$2" >&"${_SESS_FD[$1]}"
}

# print everything the session has output so far
_sess_output() {
    cat "$TEST_TMP/$1.out"
}
