#!/usr/bin/env python3
"""Regenerate the committed seed corpus under tests/fuzz/corpus/ (a few
valid inputs per harness; the fuzzers' own finds stay in build-fuzz/).
Run from anywhere: python3 tests/fuzz/seeds.py"""
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))


def msg(t, body=b""):
    return t + struct.pack("!I", len(body) + 4) + body


def startup(**params):
    body = struct.pack("!I", 0x30000)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def q(sql):
    return msg(b"Q", sql.encode() + b"\0")


def s(x):
    return x.encode() + b"\0"


SSL = struct.pack("!II", 8, 80877103)
GSS = struct.pack("!II", 8, 80877104)
CANCEL = struct.pack("!IIII", 16, 80877102, 1, 12345)
EXTENDED = (msg(b"P", s("s1") + s("SELECT $1") + struct.pack("!HI", 1, 23))
            + msg(b"B", s("") + s("s1") + struct.pack("!HH", 1, 0) + struct.pack("!HI", 1, 1) + b"7"
                  + struct.pack("!H", 0))
            + msg(b"D", b"P" + s("")) + msg(b"E", s("") + struct.pack("!I", 0))
            + msg(b"C", b"S" + s("s1")) + msg(b"S"))
ERROR = msg(b"E", b"SFATAL\0VFATAL\0C28P01\0Mpassword authentication failed\0\0")

RFC_CF = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_CFIN = (b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
            b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")


def sasl_initial(mech, data):
    return msg(b"p", s(mech) + struct.pack("!I", len(data)) + data)


SEEDS = {
    "proto": {
        "startup": startup(user="alice", database="app", application_name="psql"),
        "startup_minor": startup(user="bob", _pq_="x").replace(b"\x00\x03\x00\x00", b"\x00\x03\x00\x02", 1),
        "ssl": SSL,
        "gssenc": GSS,
        "cancel": CANCEL,
        "error": ERROR,
        "messages": q("SELECT 1") + EXTENDED + msg(b"X"),
    },
    "scram": {
        "rfc7677": b"\x00" + RFC_CF + b"\0" + RFC_CFIN,
        "plus": b"\x03p=tls-server-end-point,," + RFC_CF[3:] + b"\0" + RFC_CFIN.replace(b"c=biws", b"c=cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="),
        "client_wants_plus": b"\x02y,," + RFC_CF[3:] + b"\0c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
        # the client side: server-first and server-final of RFC 7677
        "server_msgs": b"\x00r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096\0v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=",
        "secret": b"\x00SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
    },
    "userlist": {
        "basic": b'"alice" "secret"\n"bob" "md50098e7fab7b4d8d091067152a80b3f12"\n; comment\n# comment\n',
        "scram": b'"postgres" "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="\n',
        "quotes": b'"we""ird" "pa""ss"\n"alice" "dup"\n"alice" "second"\n\r\n',
    },
    "hba": {
        "basic": b"# TYPE DATABASE USER ADDRESS METHOD\nlocal all all trust\nhost all all 127.0.0.1/32 md5\nhost all all ::1/128 scram-sha-256\n",
        "lists": b"hostssl app,postgres alice,bob 10.0.0.0 255.0.0.0 cert\nhostnossl sameuser all 0.0.0.0/0 password\nhost replication all all reject\nhost \"all\" \"x,y\" fe80::/10 trust\n",
    },
    "config": {
        "basic": b"[databases]\napp = host=127.0.0.1 port=5432 dbname=app pool_size=10\n* = host=/var/run/postgresql\n\n[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = 6432\nauth_type = scram-sha-256\nauth_file = users.txt\npool_mode = transaction\nmax_client_conn = 100\nquery_timeout = 1.5\n\n[users]\nalice = pool_mode=session max_user_connections=5\n",
        "include": b"[pgbouncer]\n%include inc.ini\nworkers = auto\nunix_socket_mode = 0770\nlog_format = json\n",
        "include_loop": b"%include fuzz.ini\n",
        "errors": b"\xef\xbb\xbf[pgbouncer]\nlisten_port = abc\nbogus\n= x\nna:me = 1\n[nosuch]\n[peers]\n1 = host=x\n[databases]\nd = host=a,b port=1 auth_user=u connect_query='SELECT 1' client_encoding=UTF8 datestyle=ISO timezone=UTC\n",
    },
    "client": {
        # selector byte: auth_type trust, md5, scram-sha-256, plain, hba
        "trust_query": b"\x00" + startup(user="alice", database="app") + q("SELECT 1") + msg(b"X"),
        "ssl_then_startup": b"\x00" + SSL + startup(user="fuzz", database="fuzzdb") + q("SELECT 1"),
        "cancel": b"\x00" + CANCEL,
        "md5": b"\x01" + startup(user="md5user", database="fuzzdb") + msg(b"p", s("md5" + "0" * 32)),
        "plain": b"\x03" + startup(user="plainuser", database="fuzzdb") + msg(b"p", s("pencil")),
        "scram": b"\x02" + startup(user="fuzz", database="fuzzdb") + sasl_initial("SCRAM-SHA-256", RFC_CF)
                 + msg(b"p", RFC_CFIN),
        "hba": b"\x04" + startup(user="fuzz", database="fuzzdb") + q("SELECT 1"),
        "protocol_minor": b"\x00" + startup(user="fuzz", database="fuzzdb", _pq_abc="1").replace(
            b"\x00\x03\x00\x00", b"\x00\x03\x00\x01", 1),
        "admin": b"\x00" + startup(user="fuzz", database="pgbouncer") + q("SHOW POOLS;"),
    },
    "client_login": {
        # selector: bits 0-1 pool_mode session/transaction/statement, bit 2 prepared statements
        "simple": b"\x00" + q("SELECT 1") + q("BEGIN") + q("SELECT 2") + q("COMMIT") + msg(b"X"),
        "tx_extended": b"\x05" + EXTENDED + q("BEGIN") + EXTENDED + q("COMMIT"),
        "set_params": b"\x01" + q("SET application_name = 'x'") + q("SET TimeZone = 'UTC'")
                      + q("RESET ALL") + q("DISCARD ALL") + q("SELECT 1"),
        "statement": b"\x02" + q("SELECT 1") + msg(b"F", struct.pack("!IHHIH", 1234, 0, 1, 0, 0)) + msg(b"H"),
        "copy": b"\x00" + q("COPY t FROM STDIN") + msg(b"d", b"1\n") + msg(b"c") + msg(b"f", s("no")),
    },
    "admin": {
        "show": q("SHOW POOLS") + q("SHOW CLIENTS;") + q("SHOW SERVERS") + q("SHOW STATS")
                + q("SHOW DATABASES") + q("SHOW CONFIG") + q("SHOW HELP") + q("SHOW VERSION"),
        "control": q("PAUSE fuzzdb") + q("RESUME fuzzdb") + q("KILL_CLIENT 1") + q("RECONNECT fuzzdb")
                   + q("SUSPEND") + q("RESUME") + q("WAIT_CLOSE fuzzdb") + q("RELOAD"),
        "set": q("SET default_pool_size = 5") + q("SET admin_users TO 'fuzz,\"x\"'") + q('SHOW "LISTS"')
               + q("SET bogus = 1") + q("SHOW MEM"),
        "misc": q("SELECT 1") + q("") + q(";") + q("SHOW LATENCY") + q("SHOW USERS") + q("SHOW FDS")
                + q("SHOW TOTALS") + q("SHOW STATE") + q("KILL fuzzdb") + q("DISABLE fuzzdb")
                + q("ENABLE fuzzdb") + q("SHUTDOWN"),
    },
}

for harness, seeds in SEEDS.items():
    d = os.path.join(HERE, "corpus", harness)
    os.makedirs(d, exist_ok=True)
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
