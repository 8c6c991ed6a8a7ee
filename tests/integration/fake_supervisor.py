#!/usr/bin/env python3
"""fake_supervisor.py — plays systemd's side of sd_notify(3) for t_notify.sh.

    fake_supervisor.py SOCKET LOG [PORT]

Binds a unix datagram socket at SOCKET (what NOTIFY_SOCKET names) and appends
one line per received message to LOG:

    <seconds since start> pid=<sender pid> <fields joined by '|'>

The sender pid comes from the kernel (SO_PASSCRED), as systemd gets it.  With
PORT, the first READY=1 is followed by a line "PORTCHECK ok" or "PORTCHECK
refused": whether 127.0.0.1:PORT accepted a connection when READY arrived.
Runs until killed.
"""
import os
import socket
import struct
import sys
import time


def main():
    path, log = sys.argv[1], sys.argv[2]
    port = int(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[3] else 0
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    if os.path.exists(path):
        os.unlink(path)
    sock.bind(path)
    t0 = time.monotonic()
    checked = False
    with open(log, "a", buffering=1) as out:
        out.write("%.3f pid=%d LISTENING\n" % (0.0, os.getpid()))
        while True:
            data, anc, _flags, _addr = sock.recvmsg(4096, socket.CMSG_SPACE(12))
            pid = "?"
            for level, kind, blob in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                    pid = str(struct.unpack("iII", blob[:12])[0])
            fields = data.decode("utf-8", "replace").strip("\n").split("\n")
            out.write("%.3f pid=%s %s\n" % (time.monotonic() - t0, pid, "|".join(fields)))
            if port and not checked and "READY=1" in fields:
                checked = True
                probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                probe.settimeout(2)
                try:
                    probe.connect(("127.0.0.1", port))
                    result = "ok"
                except OSError:
                    result = "refused"
                finally:
                    probe.close()
                out.write("%.3f pid=%d PORTCHECK %s\n" % (time.monotonic() - t0, os.getpid(), result))


if __name__ == "__main__":
    main()
