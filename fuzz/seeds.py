#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target into corpus/<target>/, from raw bytes.

Run once to start a corpus (`cargo fuzz cmin` then keeps what adds coverage); the inputs'
layouts are described in src/<target>.rs.
"""

import hashlib
import pathlib
import re
import struct

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent

A, NS, CNAME, SOA, MX, TXT, AAAA, SRV, OPT, AXFR, ANY = 1, 2, 5, 6, 15, 16, 28, 33, 41, 252, 255


def name(text):
    out = b""
    for label in text.strip(".").split("."):
        if label:
            out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def ecs(family, source, address, scope=0):
    return struct.pack(">HBB", family, source, scope) + bytes(address)


def query(qid, qname, qtype, qclass=1, flags=0x0100, edns=None, do=False, options=(), version=0):
    """A query; `edns` is the advertised payload size (None: no OPT record)."""
    header = struct.pack(">HHHHHH", qid, flags, 1, 0, 0, 1 if edns is not None else 0)
    body = name(qname) + struct.pack(">HH", qtype, qclass)
    if edns is not None:
        rdata = b"".join(struct.pack(">HH", code, len(data)) + data for code, data in options)
        ttl = (version << 16) | (0x8000 if do else 0)
        body += b"\0" + struct.pack(">HHIH", OPT, edns, ttl, len(rdata)) + rdata
    return header + body


def framed(*queries):
    return b"".join(struct.pack(">H", len(q)) + q for q in queries)


def write(target, data):
    directory = HERE / "corpus" / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


ECS_OPTIONS = [
    ecs(1, 24, [81, 2, 69]),  # GB
    ecs(1, 24, [1, 0, 0]),  # AU
    ecs(1, 16, [8, 8]),  # US
    ecs(1, 20, [175, 45, 176]),
    ecs(1, 32, [127, 0, 0, 1]),
    ecs(1, 0, []),  # the resolver withholds the client
    ecs(2, 56, [0x24, 0x00, 0xCB, 0x00, 0, 0, 0]),
    ecs(2, 48, [0x2A, 0x00, 0x14, 0x50, 0x40, 0x01]),
    ecs(2, 128, [0] * 15 + [1]),
]
CLIENT_COOKIE = bytes(range(1, 9))
# Version 1, reserved, a timestamp and a hash: well formed, but not one the server made.
SERVER_COOKIE = CLIENT_COOKIE + b"\x01\0\0\0" + struct.pack(">I", 1_800_000_000) + bytes(8)
COOKIES = [CLIENT_COOKIE, SERVER_COOKIE, CLIENT_COOKIE + bytes(32), b"\x01" * 5]

BAD_ECS_OPTIONS = [
    ecs(1, 20, [10, 1, 0xF8]),  # bits beyond the prefix
    ecs(1, 24, [81, 2, 69, 0]),  # too many octets
    ecs(1, 33, [1, 2, 3, 4, 5]),  # prefix too long
    ecs(3, 0, []),  # unknown family
    b"\0\x01\x18",  # too short
]

QUESTIONS = [
    ("www.example.com", A),
    ("WwW.ExAmPlE.cOm", AAAA),
    ("static.example.com", A),
    ("static.example.com", ANY),
    ("example.com", SOA),
    ("example.com", NS),
    ("example.com", MX),
    ("alias.example.com", A),
    ("big.example.com", TXT),
    ("host.lab.example.com", A),
    ("b.example.com", A),
    ("nothing.example.com", A),
    ("_dns._udp.example.com", SRV),
    ("example.org", A),
    ("weighted.fuzz.test", A),
    ("weighted.fuzz.test", AAAA),
    ("chain.fuzz.test", A),
    ("loop1.fuzz.test", A),
    ("outside.fuzz.test", AAAA),
    ("a.b.wild.fuzz.test", TXT),
    ("x.sub.fuzz.test", A),
    ("failover.fuzz.test", A),
    ("all.down.test", A),
    ("fixed.down.test", AAAA),
]


def packet_seeds():
    for i, (qname, qtype) in enumerate(QUESTIONS):
        selector = i % 4
        write("packet", bytes([selector]) + framed(query(i, qname, qtype)))
        write("packet", bytes([selector]) + framed(query(i, qname, qtype, edns=1232, do=i % 2 == 1)))
    for i, option in enumerate(ECS_OPTIONS + BAD_ECS_OPTIONS):
        q = query(0x100 + i, "www.example.com", A if i % 2 else AAAA, edns=1232, options=[(8, option)])
        write("packet", bytes([i % 4]) + framed(q))
        # The same name without ECS first, so the second answer comes from the cache.
        plain = query(0x200 + i, "weighted.fuzz.test", A, edns=512)
        with_ecs = query(0x201 + i, "weighted.fuzz.test", A, edns=512, options=[(8, option)])
        write("packet", bytes([i % 4]) + framed(plain, with_ecs, plain))
    odd = [
        query(1, "big.example.com", TXT, edns=4096),  # complete over EDNS, else truncated
        query(2, "big.example.com", TXT, edns=100),  # below 512: counts as 512
        query(3, "example.com", SOA, edns=1232, version=1),  # BADVERS
        query(4, "example.com", SOA, flags=0x2800),  # UPDATE
        query(5, "example.com", SOA, flags=0x2000),  # NOTIFY
        query(6, "example.com", AXFR),
        query(7, "version.bind", TXT, qclass=3),  # CHAOS
        query(8, "example.com", OPT),
        query(9, "example.com", SOA, flags=0x8000),  # a response: no answer
        *[query(10, "big.example.com", TXT, edns=1232, options=[(10, c)]) for c in COOKIES],
        query(10, "example.com", SOA, edns=1232, options=[(10, CLIENT_COOKIE), (10, SERVER_COOKIE)]),
        # No question, a cookie: asks for a server cookie (RFC 7873 §5.4).
        struct.pack(">HHHHHH", 10, 0, 0, 0, 0, 1) + b"\0" + struct.pack(">HHIH", OPT, 1232, 0, 12)
        + struct.pack(">HH", 10, 8) + CLIENT_COOKIE,
        query(11, "www.example.com", A, edns=1232, options=[(8, ECS_OPTIONS[0])] * 2),
        # Two questions.
        struct.pack(">HHHHHH", 12, 0x0100, 2, 0, 0, 0) + (name("example.com") + struct.pack(">HH", A, 1)) * 2,
        # The question's name is a pointer to itself.
        struct.pack(">HHHHHH", 13, 0x0100, 1, 0, 0, 0) + b"\xc0\x0c" + struct.pack(">HH", A, 1),
        b"\x00\x0e\x01\x00",  # a header cut short
    ]
    for i, q in enumerate(odd):
        write("packet", bytes([i % 4]) + framed(q))
        write("packet", bytes([i % 4]) + q)


def tcp_seeds():
    qs = [query(i, qname, qtype, edns=1232 if i % 2 else None) for i, (qname, qtype) in enumerate(QUESTIONS)]
    write("tcp_stream", b"\x00" + framed(*qs[:4]))
    write("tcp_stream", b"\x01" + framed(*qs[4:12]))
    write("tcp_stream", b"\x02" + framed(*qs[12:]))
    write("tcp_stream", b"\x03" + framed(query(1, "big.example.com", TXT)) * 3)
    with_ecs = query(2, "www.example.com", A, edns=1232, options=[(8, ECS_OPTIONS[0])])
    write("tcp_stream", b"\x00" + framed(with_ecs, qs[0], with_ecs))
    with_cookie = query(3, "big.example.com", TXT, edns=1232, options=[(10, SERVER_COOKIE)])
    write("tcp_stream", b"\x01" + framed(with_cookie, with_cookie))
    # A query cut short by the client's close, and empty frames.
    write("tcp_stream", b"\x00" + framed(qs[0]) + framed(qs[1])[:-3])
    write("tcp_stream", b"\x01" + b"\x00\x00" * 3 + framed(qs[2]) + b"\x00")


def ecs_seeds():
    for option in ECS_OPTIONS + BAD_ECS_OPTIONS:
        write("ecs", option)
        write("ecs", query(1, "www.example.com", A, edns=1232, options=[(8, option)]))
    write("ecs", query(2, "www.example.com", A, edns=1232, options=[(8, ECS_OPTIONS[0])] * 2))
    write("ecs", query(3, "www.example.com", A))
    for cookie in COOKIES:
        write("ecs", cookie)
        write("ecs", query(4, "www.example.com", A, edns=1232, options=[(10, cookie), (8, ECS_OPTIONS[0])]))


def zone_seeds():
    for path in sorted([*REPO.glob("zones/*.toml"), *REPO.glob("fuzz/zones/*.toml"), *REPO.glob("bench/zones/*.toml")]):
        write("zone_file", path.read_bytes())
    # Records in basic strings: escapes and line-ending backslashes move lines.
    write("zone_file", b'zone = "t."\nrecords = "$TTL 300\\n@ IN SOA ns1 h 1 2 3 4 5\\n@ IN NS ns1\\u000Ans1 IN A 192.0.2.1\\n"\n')
    write("zone_file", b'zone = "t."\nrecords = """\n$TTL 300\n@ IN SOA ns1 h \\\n  1 2 3 4 5\n@ IN NS ns1\nns1 IN A 192.0.2.1\n"""\n')
    # Zone texts written inline in the tests; format! placeholders are left empty.
    for path in sorted([*REPO.glob("src/**/*.rs"), *REPO.glob("tests/*.rs")]):
        for text in re.findall(r'r#"(.*?)"#', path.read_text(), re.S):
            if "records" in text and "zone" in text:
                text = re.sub(r"\{\w*\}", "", text).replace("{{", "{").replace("}}", "}")
                write("zone_file", text.encode())


def admin_seeds():
    bodies = [
        b'{"reason": "kernel upgrade"}',
        b'{"reason": "maintenance", "expires_in": 3600}',
        b'{"state": "down", "reason": "bad disk", "expires_in": 2}',
        b'{"state": "up", "reason": "probe is wrong"}',
        b'{"reason": "x", "state": "sideways"}',
        b'{"reason": "x",',
        b'{"reason": "x", "color": "red"}',
        b'{"reason": "  "}',
        b'{"reason": "x", "expires_in": 0}',
        b'{"reason": "x", "expires_in": 18446744073709551615}',
        b"",
        b"[]",
        b'{"reason": "' + b"x" * 17000 + b'"}',
    ]
    for route in range(5):
        for i, body in enumerate(bodies):
            content = (i % 4) << 4
            write("admin_body", bytes([route | content]) + body)
    write("admin_body", bytes([0x00 | 0x08]) + bodies[0])  # no token
    write("admin_body", bytes([0x00 | 0x80]) + bodies[0])  # a wrong token
    params = [
        b"example.com/eu-west/198.51.100.10",
        b"example.com./us-east/2001:db8:1::10",
        b"example.net/us-east/192.0.2.10",
        b"example.com/nowhere/192.0.2.10",
        b"example.com/us-east/not-an-address",
        b"..//x",
    ]
    for route in range(4):
        for p in params:
            write("admin_body", bytes([route | 0x40]) + p + b"\n" + bodies[2 if route == 2 else 0])
    queries = [
        b"name=www.example.com&client=81.2.69.0/24",
        b"name=www.example.com&client=2001:db8::1",
        b"name=static.example.com&client=1.2.3.4",
        b"name=www.example.org&client=1.2.3.4",
        b"name=www.example.com&client=nonsense",
        b"name=www.example.com",
        b"limit=5",
        b"limit=-1",
        b"limit=1&extra=2",
        b"",
    ]
    for route in (5, 6, 7):
        for q in queries:
            write("admin_body", bytes([route]) + q)


if __name__ == "__main__":
    packet_seeds()
    tcp_seeds()
    ecs_seeds()
    zone_seeds()
    admin_seeds()
