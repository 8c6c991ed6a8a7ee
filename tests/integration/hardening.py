#!/usr/bin/env python3
"""hardening.py — raw-socket clients for tests/integration/t_hardening.sh.

Each subcommand plays one misbehaving (or carefully pipelining) client:

  startup PORT USER DB                 one StartupMessage (USER/DB may hold \\n
                                       escapes); prints the messages received
  flood PORT USER DB KIND BYTES SECS   log in, then send KIND messages without
                                       ever reading, until BYTES are accepted by
                                       the socket, SECS pass or it takes nothing
                                       for a second; prints
                                       "sent N" and then holds the connection
                                       until stdin closes.  KIND: show (SHOW
                                       CONFIG queries), close (Close of a named
                                       statement), parse-close (a Parse of a new
                                       named statement, then Closes, no Sync)
  pipeline-close PORT N                Parse of a new named statement, N Closes,
                                       Sync in one write, then reads: prints
                                       "parse P close C ready R"
  refusing-backend PORT [SQLSTATE MSG] a backend refusing every login (FATAL 28000)
  make-pools PORT DB N [NDB]           N logins as users u00000.. (each makes a
                                       pool), spread over NDB databases DB00000..
  slow-query PORT DIR QUERY            an admin client on the unix socket in
                                       DIR sends QUERY, reads nothing;
                                       prints "sent", holds until stdin closes
  http-get PORT PATH [USER:PASS]       HTTP/1.1 GET; prints the status, the
                                       transfer encoding, the number of chunks
                                       and the body size; the body goes to
                                       $OUT if set
  http-auth-flood PORT USER N CONC     N requests with distinct wrong passwords,
                                       CONC at a time; prints "CODE count" lines
  scram-secret PASSWORD                print a SCRAM-SHA-256 secret for PASSWORD
  slowloris PORT N SECS                N connections that each send one byte of
                                       a request head every second for SECS
                                       seconds; prints how many were closed by
                                       the server at once, how many later and when
"""
import base64
import os
import select
import socket
import struct
import sys
import threading
import time


def msg(kind, body=b""):
    return kind + struct.pack("!I", len(body) + 4) + body


def startup_packet(params):
    body = struct.pack("!I", 196608)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode("utf-8", "surrogateescape") + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def read_msg(sock, buf):
    """One backend message as (type, body), reading more as needed; None at EOF."""
    while True:
        if len(buf) >= 5:
            n = struct.unpack("!I", bytes(buf[1:5]))[0]
            if len(buf) >= n + 1:
                t, body = bytes(buf[0:1]), bytes(buf[5:n + 1])
                del buf[:n + 1]
                return t, body
        try:
            d = sock.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return None
        if not d:
            return None
        buf.extend(d)


def login(port, user, db, unix_dir=None):
    if unix_dir:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect("%s/.s.PGSQL.%d" % (unix_dir, port))
    else:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(10)
        s.connect(("127.0.0.1", port))
    s.sendall(startup_packet({"user": user, "database": db}))
    buf = bytearray()
    while True:
        m = read_msg(s, buf)
        if m is None:
            raise SystemExit("login: connection closed")
        if m[0] == b"E":
            raise SystemExit("login: error %r" % m[1])
        if m[0] == b"Z":
            return s


def unescape(s):
    return s.encode("latin-1").decode("unicode_escape")


def cmd_startup(port, user, db):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
    s.sendall(startup_packet({"user": unescape(user), "database": unescape(db)}))
    buf = bytearray()
    while True:
        m = read_msg(s, buf)
        if m is None:
            print("EOF")
            return
        print(m[0].decode(), m[1][:200])
        if m[0] in (b"Z", b"E"):
            return


def send_nonblocking(s, chunk, limit, secs):
    """Send chunk repeatedly without reading until limit bytes, secs, or 1 s without
    progress (the peer stopped reading); returns bytes sent."""
    s.setblocking(False)
    sent, end = 0, time.time() + secs
    data, off = chunk, 0
    progress = time.time()
    while sent < limit and time.time() < end and time.time() - progress < 1:
        try:
            n = s.send(data[off:])
            progress = time.time()
        except BlockingIOError:
            select.select([], [s], [], 0.05)
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += n
        off += n
        if off >= len(data):
            off = 0
    return sent


def hold_until_stdin_closes():
    try:
        sys.stdin.read()
    except Exception:
        pass


def cmd_flood(port, user, db, kind, limit, secs):
    s = login(int(port), user, db)
    if kind == "show":
        one = msg(b"Q", b"SHOW CONFIG\0")
    elif kind == "close":
        one = msg(b"C", b"Sa\0")
    elif kind == "parse-close":
        s.sendall(msg(b"P", b"stmt_a\0select 1\0\0\0"))
        one = msg(b"C", b"Sa\0")
    else:
        raise SystemExit("unknown kind " + kind)
    chunk = one * (65536 // len(one))
    n = send_nonblocking(s, chunk, int(limit), float(secs))
    print("sent %d" % n, flush=True)
    hold_until_stdin_closes()
    s.close()


def cmd_pipeline_close(port, n):
    s = login(int(port), "postgres", "postgres")
    n = int(n)
    data = msg(b"P", b"stmt_b\0select 2\0\0\0") + msg(b"C", b"Sb\0") * n + msg(b"S")
    threading.Thread(target=s.sendall, args=(data,), daemon=True).start()
    buf = bytearray()
    counts = {b"1": 0, b"3": 0, b"Z": 0}
    while True:
        m = read_msg(s, buf)
        if m is None:
            print("EOF")
            break
        if m[0] in counts:
            counts[m[0]] += 1
        if m[0] == b"E":
            print("error", m[1])
        if m[0] == b"Z":
            break
    print("parse %d close %d ready %d" % (counts[b"1"], counts[b"3"], counts[b"Z"]))


def cmd_make_pools(port, db, n, ndb="1"):
    for i in range(int(n)):
        s = socket.create_connection(("127.0.0.1", int(port)), timeout=10)
        name = db if int(ndb) <= 1 else "%s%05d" % (db, i % int(ndb))
        s.sendall(startup_packet({"user": "u%05d" % i, "database": name}))
        buf = bytearray()
        while True:
            m = read_msg(s, buf)
            if m is None or m[0] in (b"E", b"Z"):
                break
        s.close()


def cmd_refusing_backend(port, sqlstate="28000", message="no pg_hba.conf entry (test backend)"):
    """A backend that refuses every login with FATAL SQLSTATE MESSAGE: by
    default 28000, as PostgreSQL's pg_hba.conf would (the pooler fails the
    waiting client at once); 57P03 "starting up" makes it wait instead."""
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", int(port)))
    srv.listen(128)
    print("listening", flush=True)

    def serve(c):
        try:
            while True:
                n = struct.unpack("!I", c.recv(4, socket.MSG_WAITALL))[0]
                body = c.recv(n - 4, socket.MSG_WAITALL)
                if n == 8 and body[:4] in (struct.pack("!I", 80877103), struct.pack("!I", 80877104)):
                    c.sendall(b"N")  # no TLS, no GSS: the startup packet follows
                    continue
                break
            f = b"SFATAL\0VFATAL\0C" + sqlstate.encode() + b"\0M" + message.encode() + b"\0\0"
            c.sendall(b"E" + struct.pack("!I", len(f) + 4) + f)
        except OSError:
            pass
        finally:
            c.close()
    while True:
        c, _ = srv.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()


def cmd_slow_query(port, unix_dir, query):
    # over the unix socket: the kernel buffers about 200 kB, not megabytes as on TCP
    s = login(int(port), "postgres", "pgbouncer", unix_dir)
    s.sendall(msg(b"Q", query.encode() + b"\0"))
    print("sent", flush=True)
    hold_until_stdin_closes()
    s.close()


def http_request(port, path, auth=None, timeout=30):
    s = socket.create_connection(("127.0.0.1", int(port)), timeout=timeout)
    req = "GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" % path
    if auth:
        req += "Authorization: Basic %s\r\n" % base64.b64encode(auth.encode()).decode()
    s.sendall((req + "\r\n").encode())
    data = bytearray()
    while True:
        d = s.recv(1 << 20)
        if not d:
            break
        data.extend(d)
    s.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and len(lines[0].split()) > 1 else 0
    headers = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        headers[k.strip().lower()] = v.strip()
    chunks = 0
    if headers.get("transfer-encoding", "").lower() == "chunked":
        out, rest = bytearray(), body
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            chunks += 1
            out.extend(rest[:size])
            rest = rest[size + 2:]
        body = bytes(out)
    return status, headers, chunks, body


def cmd_http_get(port, path, auth=None):
    status, headers, chunks, body = http_request(port, path, auth)
    print("status %d" % status)
    print("encoding %s" % headers.get("transfer-encoding", "identity"))
    print("chunks %d" % chunks)
    print("bytes %d" % len(body))
    if os.environ.get("OUT"):
        with open(os.environ["OUT"], "wb") as f:
            f.write(body)


def cmd_http_auth_flood(port, user, n, conc):
    n, conc = int(n), int(conc)
    codes = {}
    lock = threading.Lock()
    nxt = [0]

    def worker():
        while True:
            with lock:
                i = nxt[0]
                nxt[0] += 1
            if i >= n:
                return
            try:
                code = http_request(port, "/metrics", "%s:wrong%06d" % (user, i), timeout=20)[0]
            except OSError:
                code = 0
            with lock:
                codes[code] = codes.get(code, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(conc)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in sorted(codes):
        print(k, codes[k])


def cmd_slowloris(port, n, secs):
    n, secs = int(n), float(secs)
    head = b"GET /metrics HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 4096
    conns, refused = [], 0
    start = time.time()
    for i in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", int(port)), timeout=5)
            s.setblocking(False)
            conns.append({"sock": s, "sent": 0, "closed": None})
        except OSError:
            refused += 1

    def ended(c):
        """True once the server answered or closed the connection."""
        try:
            c["sock"].recv(4096)
        except BlockingIOError:
            return False
        except OSError:
            pass
        c["closed"] = time.time() - start
        return True

    time.sleep(0.5)
    at_once = [c for c in conns if ended(c)]  # refused: answered 503 and closed right away
    print("opened %d refused %d closed_at_once %d" % (len(conns), refused, len(at_once)), flush=True)
    trickling = [c for c in conns if c["closed"] is None]
    while time.time() - start < secs:
        for c in trickling:
            if c["closed"] is not None:
                continue
            try:
                c["sock"].send(head[c["sent"]:c["sent"] + 1])
                c["sent"] += 1
            except OSError:
                pass
            ended(c)
        time.sleep(1)
    later = [c["closed"] for c in trickling if c["closed"] is not None]
    alive = sum(1 for c in trickling if c["closed"] is None)
    print("closed_later %d alive %d first_close %.1f last_close %.1f" % (
        len(later), alive, min(later) if later else -1, max(later) if later else -1))


def cmd_scram_secret(password):
    import hashlib
    import hmac
    salt, it = os.urandom(16), 4096
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, it)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = lambda b: base64.b64encode(b).decode()
    print("SCRAM-SHA-256$%d:%s$%s:%s" % (it, b64(salt), b64(hashlib.sha256(client_key).digest()),
                                         b64(server_key)))


def main():
    cmds = {
        "scram-secret": cmd_scram_secret,
        "startup": cmd_startup,
        "flood": cmd_flood,
        "pipeline-close": cmd_pipeline_close,
        "make-pools": cmd_make_pools,
        "refusing-backend": cmd_refusing_backend,
        "slow-query": cmd_slow_query,
        "http-get": cmd_http_get,
        "http-auth-flood": cmd_http_auth_flood,
        "slowloris": cmd_slowloris,
    }
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        print(__doc__)
        sys.exit(2)
    cmds[sys.argv[1]](*sys.argv[2:])


if __name__ == "__main__":
    main()
