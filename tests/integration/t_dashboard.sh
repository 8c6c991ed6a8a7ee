# shellcheck shell=bash
# t_dashboard.sh — the live dashboard of the HTTP endpoint: GET /dashboard.json
# under a pgbench load (history, incremental answers, warnings, admin_http_auth),
# and the page GET / in a real browser: headless Chromium (Debian `chromium`)
# loads it, waits for refreshes, and the DOM must show every pool and a
# non-zero TPS, on a laptop and on a phone width; a screenshot is saved.
#
# The screenshot goes to $DASHBOARD_SCREENSHOT when set (else into $TEST_TMP),
# after DASHBOARD_LOAD_SECONDS (default 3) of load.  docs/dashboard.png is made with
#   DASHBOARD_SCREENSHOT=$PWD/docs/dashboard.png DASHBOARD_LOAD_SECONDS=150 \
#       TESTS=t_dashboard.sh:test_dashboard_in_chromium make integration

_dash_start() { # [INI LINE…]: pgfunnel with the HTTP endpoint behind admin_http_auth
    HTTP_PORT=$(free_port)
    export HTTP_PORT
    printf '"postgres" "s3cret"\n' >"$TEST_TMP/users.txt"
    pf_start "admin_http_port = $HTTP_PORT" "admin_http_auth = 1" \
        "auth_file = $TEST_TMP/users.txt" "$@"
}

_dash_curl() { # PATH [CURL ARG…]
    local path=$1
    shift
    curl -s -u postgres:s3cret "$@" "http://127.0.0.1:$HTTP_PORT$path"
}

# Two pools under a steady load (throttled: the machine is shared), in the background.
_dash_load() { # SECONDS
    echo 'SELECT 1;' >"$TEST_TMP/q.sql"
    pgbench -n -h 127.0.0.1 -p "$PF_PORT" -U postgres -c 2 -R 400 -T "$1" \
        -f "$TEST_TMP/q.sql" postgres >"$TEST_TMP/bench1.log" 2>&1 &
    BENCH1=$!
    pgbench -n -h 127.0.0.1 -p "$PF_PORT" -U postgres -c 2 -R 150 -T "$1" \
        -f "$TEST_TMP/q.sql" pgfunnel_test >"$TEST_TMP/bench2.log" 2>&1 &
    BENCH2=$!
}

_dash_load_stop() {
    kill "$BENCH1" "$BENCH2" 2>/dev/null
    wait "$BENCH1" "$BENCH2" 2>/dev/null
    return 0
}

# True once /dashboard.json shows both pools with transactions in two seconds of history.
_dash_has_load() {
    _dash_curl /dashboard.json | python3 -c '
import json, sys
j = json.load(sys.stdin)
seen = {p["database"] + "/" + p["user"]: p["xact"] for p in j["pools"]}
ok = all(len(seen.get(p, [])) >= 2 and sum(seen[p]) > 0
         for p in ("postgres/postgres", "pgfunnel_test/postgres"))
sys.exit(0 if ok else 1)'
}

# timeout: 60
test_dashboard_json() {
    _dash_start
    # behind admin_http_auth like every route
    assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/")"
    assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$HTTP_PORT/dashboard.json")"
    assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -u postgres:wrong "http://127.0.0.1:$HTTP_PORT/dashboard.json")"
    # the page: built in, with a CSP that allows nothing from elsewhere
    local head
    head=$(_dash_curl / -D - -o "$TEST_TMP/page.html")
    assert_contains "$head" "HTTP/1.1 200"
    assert_contains "$head" "Content-Type: text/html; charset=utf-8"
    assert_contains "$head" "Content-Security-Policy: default-src 'none'; script-src 'sha256-"
    assert_contains "$(cat "$TEST_TMP/page.html")" "<title>pgfunnel dashboard</title>"
    assert_eq "$(wc -c <"$REPO_ROOT/proxy/dashboard/index.html")" "$(wc -c <"$TEST_TMP/page.html")"
    assert_contains "$(_dash_curl / -I)" "Content-Length: $(wc -c <"$TEST_TMP/page.html")"

    # a warning whose text a client chose: a database name with a quote, a backslash and a newline
    PGCONNECT_TIMEOUT=5 "$PG_BINDIR/psql" -X -h 127.0.0.1 -p "$PF_PORT" -U postgres \
        -d "dbname='we\"ird\\\\db' host=127.0.0.1 port=$PF_PORT" -c 'select 1' >/dev/null 2>&1

    _dash_load 30
    wait_until 20 _dash_has_load
    # the history grows by one sample per second; an answer after a cursor holds only new samples
    _dash_curl /dashboard.json >"$TEST_TMP/full.json"
    sleep 2.2
    _dash_curl "/dashboard.json?since=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cursor"])' "$TEST_TMP/full.json")" >"$TEST_TMP/incr.json"
    _dash_load_stop
    assert_ok python3 - "$TEST_TMP/full.json" "$TEST_TMP/incr.json" <<'EOF'
import json, sys
full = json.load(open(sys.argv[1]))
incr = json.load(open(sys.argv[2]))
def check(cond, what):
    if not cond:
        print("FAILED:", what); print(json.dumps(full)[:3000]); print(json.dumps(incr)[:3000]); sys.exit(1)
check(full["since"] == 0 and full["window"] == 300 and full["interval_ms"] == 1000, "head")
pools = {p["database"] + "/" + p["user"]: p for p in full["pools"]}
check({"postgres/postgres", "pgfunnel_test/postgres"} <= set(pools), "both pools listed")
for name in ("postgres/postgres", "pgfunnel_test/postgres"):
    p = pools[name]
    check(p["n"] == len(p["xact"]) == len(p["p99"]) == len(p["cl_active"]) and p["n"] >= 2, name + ": series lengths")
    check(sum(p["xact"]) > 0 and sum(p["query"]) > 0, name + ": transactions counted")
    check(max(p["cl_active"]) == 2, name + ": two clients")
    check(all(a >= b for a, b in zip(p["p99"], p["p50"])), name + ": p99 >= p50")
    check(max(p["p50"]) > 0, name + ": query latencies")
    check(p["pool_mode"] == "transaction" and p["size"] == 20, name + ": mode and size")
t = full["total"]
check(t["n"] == full["process"]["n"] == len(full["process"]["lag_us"]), "total and process series")
check(sum(t["xact"]) == sum(sum(p["xact"]) for p in full["pools"]), "totals are sums")
check(full["process"]["workq_threads"] >= 1 and len(full["process"]["workq_depth"]) == t["n"], "worker queue")
# incremental: since = the cursor's sample, only the samples after it, two or three seconds' worth
check(incr["since"] == full["seq"] and incr["seq"] > full["seq"], "incremental answer")
for p in incr["pools"]:
    check(p["n"] == incr["seq"] - full["seq"] == len(p["xact"]), "only new samples")
# the client-chosen name reached the warnings intact (escaped as a text log line)
w = [x for x in full["warnings"] if 'we"ird\\\\db' in x["text"]]
check(w and w[-1]["level"] == "WARNING" and full["warnings_total"] >= len(full["warnings"]), "the warning")
EOF
    pf_stop INT
}

HPY=$REPO_ROOT/tests/integration/hardening.py
_hpy() { python3 "$HPY" "$@"; }

# pgfunnel without admin_http_auth in front of a backend that refuses every login: each
# client (user uNNNNN) makes a pool, and each pool's failed server login a WARNING.
_dash_refused_pools() { # [INI LINE…]
    HTTP_PORT=$(free_port)
    export HTTP_PORT
    local fake
    fake=$(free_port)
    python3 "$HPY" refusing-backend "$fake" >"$TEST_TMP/fake.out" 2>&1 &
    # shellcheck disable=SC2064  # the pid is known now
    trap "kill $! 2>/dev/null" EXIT
    wait_until 10 grep -q listening "$TEST_TMP/fake.out"
    pf_start "admin_http_port = $HTTP_PORT" "$@" "[databases]" "many = host=127.0.0.1 port=$fake dbname=x"
}

# The dashboard's pools ("database/user"), one a line, from /dashboard.json.
_dash_pool_names() {
    curl -s "http://127.0.0.1:$HTTP_PORT/dashboard.json" |
        python3 -c 'import json,sys; [print(p["database"] + "/" + p["user"]) for p in json.load(sys.stdin)["pools"]]'
}
_dash_lists() { # N: true when the dashboard lists N pools
    [ "$(_dash_pool_names | wc -l)" -eq "$1" ]
}

# timeout: 90
test_dashboard_over_many_pools_is_sliced_and_bounded() {
    local out
    _dash_refused_pools
    _hpy make-pools "$PF_PORT" many 3000
    # two samples of every pool, then the whole answer: in slices, complete
    sleep 2.2
    out=$(OUT=$TEST_TMP/d.json _hpy http-get "$HTTP_PORT" /dashboard.json)
    echo "$out"
    assert_contains "$out" "status 200"
    assert_contains "$out" "encoding chunked"
    [ "$(awk '/^chunks/ {print $2}' <<<"$out")" -ge 5 ] || fail "/dashboard.json in fewer than 5 chunks"
    assert_ok python3 - "$TEST_TMP/d.json" <<'EOF'
import json, sys
j = json.load(open(sys.argv[1]))
users = {p["user"] for p in j["pools"] if p["database"] == "many"}
assert users == {"u%05d" % i for i in range(3000)}, "pools: %d" % len(users)
assert all(p["n"] >= 1 and len(p["xact"]) == p["n"] for p in j["pools"]), "series"
assert j["process"]["pools"] == 3000, j["process"]["pools"]
# thousands of warnings were logged; the answer carries the newest 20, each bounded
w = j["warnings"]
assert j["warnings_total"] > 100 and len(w) == 20, (j["warnings_total"], len(w))
assert [x["seq"] for x in w] == list(range(j["warnings_total"] - 19, j["warnings_total"] + 1))
assert all(len(x["text"].encode()) < 512 and "login failed" in x["text"] for x in w), w[-1]
print("ok: %d pools, %d warnings logged" % (len(users), j["warnings_total"]))
EOF
    pf_stop INT
}

# timeout: 60
test_dashboard_forgets_freed_pools() {
    # pools nothing points to are freed after autodb_idle_timeout; their history goes with them
    _dash_refused_pools "autodb_idle_timeout = 2"
    _hpy make-pools "$PF_PORT" many 3
    wait_until 10 _dash_lists 3
    assert_eq "many/u00000 many/u00001 many/u00002" "$(_dash_pool_names | sort | xargs)"
    wait_until 20 _dash_lists 0
    assert_eq 0 "$(curl -s "http://127.0.0.1:$HTTP_PORT/dashboard.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["process"]["pools"])')"
    # a pool made again is a new series: a new id, a history of its own
    _hpy make-pools "$PF_PORT" many 1
    wait_until 10 _dash_lists 1
    assert_eq 4 "$(curl -s "http://127.0.0.1:$HTTP_PORT/dashboard.json" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pools"][0]["id"])')"
    pf_stop INT
}

# Headless Chromium: Debian's `chromium`, installed when missing (as root); skips without it,
# except in CI (CI=true), where tools/deps.sh has installed it and its absence is a failure.
_dash_chromium_find() {
    CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
    if [ -z "$CHROMIUM" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "chromium is missing: installing the Debian package"
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq --no-install-recommends \
            chromium >"$TEST_TMP/apt.log" 2>&1 || tail -n 5 "$TEST_TMP/apt.log"
        CHROMIUM=$(command -v chromium || true)
    fi
    if [ -z "$CHROMIUM" ]; then
        [ -n "${CI:-}" ] && fail "chromium is not installed (tools/deps.sh installs it in CI)"
        skip "headless Chromium is not installed (Debian package chromium; tools/deps.sh installs it)"
    fi
}

# _dash_chromium ARG…: one headless run with a fresh profile.  The background-networking
# flags keep it from calling out (a closed network refuses those connections); the
# virtual-time budget lets the page run that many milliseconds of timers (refreshes).
_dash_chromium() {
    local profile
    profile=$(mktemp -d "$TEST_TMP/chromium.XXXXXX")
    timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-dev-shm-usage \
        --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --hide-scrollbars \
        --user-data-dir="$profile" "$@" 2>>"$TEST_TMP/chromium.stderr"
}

# What the dumped DOM shows: refreshes, state, overflow, the total TPS, each pool row.
_dash_dom_check() { # FILE MIN-REFRESHES POOL…
    python3 - "$@" <<'EOF'
import html.parser, sys
path, need, pools = sys.argv[1], int(sys.argv[2]), set(sys.argv[3:])
class Dom(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.root, self.rows, self.total, self.text_of = {}, {}, None, None
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "html":
            self.root = a
        if "row" in cls and "pool" in cls:
            self.rows[a.get("data-pool")] = a
        if a.get("id") == "t-xact":
            self.total, self.text_of = a.get("data-value"), ""
    def handle_data(self, data):
        if self.text_of == "":
            self.text_of = data.strip()
d = Dom()
d.feed(open(path, encoding="utf-8").read())
problems = []
if int(d.root.get("data-refreshes", "0")) < need:
    problems.append("refreshes: %s < %d" % (d.root.get("data-refreshes"), need))
if d.root.get("data-state") != "ok":
    problems.append("state: %s" % d.root.get("data-state"))
if d.root.get("data-overflow-x") != "no":
    problems.append("wider than the window (data-overflow-x=%s)" % d.root.get("data-overflow-x"))
if set(d.rows) != pools:
    problems.append("pool rows %s, expected %s" % (sorted(d.rows), sorted(pools)))
if not d.total or int(d.total) <= 0 or d.text_of in ("", "–", "0"):
    problems.append("total TPS %r shown as %r" % (d.total, d.text_of))
for name, a in d.rows.items():
    if int(a.get("data-xacts", "0")) <= 0:
        problems.append("pool %s shows no transactions" % name)
if problems:
    print("\n".join(problems))
    sys.exit(1)
print("ok: %s refreshes, total TPS %s, rows %s" % (d.root["data-refreshes"], d.total, sorted(d.rows)))
EOF
}

# timeout: 240
test_dashboard_in_chromium() {
    _dash_chromium_find
    local url secs=${DASHBOARD_LOAD_SECONDS:-3} shot=${DASHBOARD_SCREENSHOT:-$TEST_TMP/dashboard.png}
    _dash_start
    _dash_load $((secs + 30))
    wait_until 20 _dash_has_load
    sleep "$secs"
    # the credentials go with the page; its fetches reuse them (same origin, same realm)
    url="http://postgres:s3cret@127.0.0.1:$HTTP_PORT/"

    # the screenshot first: the browser runs below would show as loop lag in its charts
    rm -f "$shot"
    _dash_chromium --window-size=1280,800 --virtual-time-budget=3000 --screenshot="$shot" "$url" \
        >/dev/null
    # a laptop screen: two refreshes at least (5 s of the page's timers), every pool, TPS > 0
    _dash_chromium --window-size=1280,800 --virtual-time-budget=5000 --dump-dom "$url" \
        >"$TEST_TMP/dom.html"
    assert_ok _dash_dom_check "$TEST_TMP/dom.html" 2 postgres/postgres pgfunnel_test/postgres
    # a phone: the same, and nothing wider than the screen
    _dash_chromium --window-size=390,844 --virtual-time-budget=5000 --dump-dom "$url" \
        >"$TEST_TMP/dom-phone.html"
    assert_ok _dash_dom_check "$TEST_TMP/dom-phone.html" 2 postgres/postgres pgfunnel_test/postgres
    _dash_load_stop
    assert_ok python3 - "$shot" <<'EOF'
import struct, sys
b = open(sys.argv[1], "rb").read()
assert b[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
w, h = struct.unpack(">II", b[16:24])
assert (w, h) == (1280, 800), (w, h)
print("screenshot %s: %dx%d, %d bytes" % (sys.argv[1], w, h, len(b)))
EOF
    echo "screenshot: $shot"
    pf_stop INT
}
