#!/usr/bin/env python3
"""startup_flood.py — unauthenticated startup packets with made-up names.

    startup_flood.py HOST PORT COUNT [--name-len N] [--user NAME] [--database NAME]
                     [--wait] [--parallel P]

Each connection sends a StartupMessage whose user and database names are
random (N bytes of letters, default 40) unless --user/--database fix them,
then, with --wait, reads the server's first message (an authentication
request or an error), and closes without ever sending a password.  P
connections are open at a time (default 50).  Prints one summary line:
    sent=COUNT auth_requests=A errors=E other=O
For the security tests (tests/integration/t_security.sh) and for measuring
what such a flood costs the pooler by hand.
"""
import argparse
import random
import selectors
import socket
import string
import struct
import sys


def startup_packet(user, database):
    body = struct.pack("!I", 196608)
    for k, v in (("user", user), ("database", database)):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def rand_name(n):
    return "".join(random.choice(string.ascii_lowercase) for _ in range(n))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("host")
    ap.add_argument("port", type=int)
    ap.add_argument("count", type=int)
    ap.add_argument("--name-len", type=int, default=40)
    ap.add_argument("--user")
    ap.add_argument("--database")
    ap.add_argument("--wait", action="store_true")
    ap.add_argument("--parallel", type=int, default=50)
    a = ap.parse_args()

    sel = selectors.DefaultSelector()
    counts = {"auth_requests": 0, "errors": 0, "other": 0}
    started = 0
    open_ = 0

    def finish(sock):
        nonlocal open_
        sel.unregister(sock)
        sock.close()
        open_ -= 1

    while started < a.count or open_ > 0:
        while started < a.count and open_ < a.parallel:
            s = socket.create_connection((a.host, a.port), timeout=10)
            s.sendall(startup_packet(a.user or rand_name(a.name_len),
                                     a.database or rand_name(a.name_len)))
            started += 1
            open_ += 1
            if a.wait:
                s.setblocking(False)
                sel.register(s, selectors.EVENT_READ)
            else:
                s.close()
                open_ -= 1
        if open_ == 0:
            continue
        events = sel.select(timeout=10)
        if not events:
            sys.exit("startup_flood: no answer within 10 s")
        for key, _ in events:
            sock = key.fileobj
            try:
                data = sock.recv(1)
            except OSError:
                data = b""
            if data == b"R":
                counts["auth_requests"] += 1
            elif data == b"E":
                counts["errors"] += 1
            else:
                counts["other"] += 1
            finish(sock)
    print("sent=%d auth_requests=%d errors=%d other=%d"
          % (a.count, counts["auth_requests"], counts["errors"], counts["other"]))


if __name__ == "__main__":
    main()
