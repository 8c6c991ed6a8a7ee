# shellcheck shell=bash
# t_upgrade.sh — zero-downtime upgrade: `pgfunnel --takeover CONFIG` starts on
# the listening sockets of the pgfunnel running with CONFIG, which then drains
# (stops accepting, finishes its clients) and exits.  No connection may be
# refused or dropped across it.

# SIGTERM stops accepting but serves every client already accepted, also one
# whose startup packet arrives after the signal: in an upgrade the
# predecessor has such clients when it starts draining.
test_sigterm_serves_client_accepted_before_it() {
    local out rc kinds
    command -v python3 >/dev/null 2>&1 || skip "python3 is not installed"
    pf_start
    out=$(timeout 20 python3 - "$PF_PORT" "$PF_PID" "$PF_LOG" <<'PY'
import os, signal, socket, struct, sys, time
port, pid, log = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
time.sleep(0.2)                       # accepted, no startup packet yet
os.kill(pid, signal.SIGTERM)
deadline = time.time() + 5
while "shutdown requested" not in open(log).read():
    if time.time() > deadline:
        sys.exit("no shutdown in the log")
    time.sleep(0.05)
body = struct.pack("!i", 196608) + b"user\0postgres\0database\0postgres\0\0"
s.sendall(struct.pack("!i", len(body) + 4) + body)
kinds, buf = [], b""
while b"Z" not in kinds:
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
    while len(buf) >= 5:
        n = struct.unpack("!i", buf[1:5])[0]
        if len(buf) < 1 + n:
            break
        kinds.append(buf[:1]); buf = buf[1 + n:]
q = b"SELECT 41 + 1\0"
s.sendall(b"Q" + struct.pack("!i", len(q) + 4) + q)
reply = b""
while b"Z" not in reply[-6:] and len(reply) < 65536:
    chunk = s.recv(65536)
    if not chunk:
        break
    reply += chunk
print("kinds=" + b"".join(kinds).decode(), "answer42=%s" % (b"42" in reply))
s.sendall(b"X\0\0\0\4")
s.close()
PY
    ) || fail "client script: $out"
    kinds=$(sed -n 's/^kinds=\([A-Za-z]*\) .*/\1/p' <<<"$out")
    assert_contains "$kinds" "R" "login after SIGTERM ($out)"
    assert_not_contains "$kinds" "E" "an error instead of the login ($out)"
    assert_contains "$out" "answer42=True" "query after SIGTERM"
    rc=0
    pf_stop TERM || rc=$?
    assert_eq 0 "$rc" "exit status"
}
