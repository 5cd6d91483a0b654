#!/usr/bin/env python3
"""Soak (issue "Reliability, round two"): the real server for --seconds (600 by default) with
everything at once, at a moderate rate: the point is correctness under all of it together,
not saturation.

  DNS      valid queries over UDP and TCP (ECS from many IPv4 and IPv6 networks, with and
           without EDNS, random names that NXDOMAIN, pipelined TCP bursts); malformed packets
           over both (short, truncated, QR=1, bad ECS, bad OPT, EDNS version 1, garbage),
           each followed by a valid query on the same socket
  TCP      slow and stuck clients: idle, half a length prefix, a prefix alone, half a query,
           a query trickled byte by byte, one trickled past the idle timeout, a crowd of idle
           connections, the per-address and per-/24 limits, a reset, a half-close; stuck
           admin connections (silent; half a request head or a body that stops: 408)
  admin    drain/undrain and force/unforce with the token (and no-op undos: not journaled);
           bad bodies (invalid JSON, oversized, wrong types, unknown fields, ...), wrong
           methods, long URIs, request heads over 64 KiB or over 100 header fields (431),
           foreign Host and Origin, with the token, without it, with a
           wrong one; valid writes without a valid token; reads of every view (GET and
           HEAD), /regions checked against the overrides in force; the audit read back page
           by page must hold exactly the acknowledged writes
  zones    reloads through the API and by SIGHUP, good (the serial served at once; a second
           zone that sorts first added and removed, so zone indexes shift under writes in
           flight) and bad (422, every diagnostic file:line, the old zones keep serving)
  GeoIP    the --geoip file replaced by rename: a good copy (served), garbage, an empty file,
           a truncated one, one whose metadata is whole but whose search tree is garbage
           (each refused, the old one keeps serving)
  probes   probe targets killed (SIGKILL) and restarted

Every DNS answer is checked as bench/overload.py checks it (flags, question, ECS, TTL, the
endpoint set allowed by the drain, force and probe-down windows), every malformed packet
against what the RFCs ask, every API response for status and JSON shape. Meridian's RSS, open
file descriptors, threads and mapped GeoIP files are sampled every 2 s. Exits 1 on anything
lost, wrong, leaked (descriptors above the start once the load has stopped, old GeoIP
databases still mapped), grown (RSS beyond --rss-slack after the warm-up), an unexpected
warning or error in Meridian's log, or Meridian dying; at the end Meridian must stop on
SIGTERM with exit 0.

Every process it starts is stopped on exit, Ctrl-C included; only loopback addresses are
contacted (other networks appear only inside DNS packets); every loop is bounded in count and
time. Run through bench/soak.sh, which builds Meridian unless --binary is given.
"""
import argparse
import collections
import http.client
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ beside the scripts
import bench  # noqa: E402
import overload as ov  # noqa: E402

ROOT = bench.ROOT
WORK = os.path.join(ROOT, "bench", ".work", "soak")
ZONE = "soak.test"
# Sorts before ZONE: adding and removing it shifts ZONE's index while writes are in flight.
EXTRA = "a-extra.test"
# Names of ZONE (ov.zone_text); random NXDOMAIN names never end in one of them.
NAMES = {"www", "static", "ns1", "reloads"}
GEO_SOURCE = os.path.join(ROOT, "geodata", "geo-whois-asn-country.mmdb")
TOKEN_NAME = "soak"
# Meridian's TCP limits (src/dns/server.rs): idle timeout, connections per client address.
IDLE = 10.0
PER_CLIENT = 16
# How long Meridian may take to notice a replaced GeoIP file: it looks every 2 s.
GEO_NOTICE = 12.0
SIGHUP_DEADLINE = 10.0
LOG_REFUSED_RELOAD = "reload refused; the running zones keep serving"
LOG_DROPPED = "zones dropped: their files are gone; they are no longer served"
LOG_GEO_SERVED = "GeoIP database replaced on disk: now serving it"
LOG_GEO_REFUSED = "GeoIP database replaced on disk is refused; the running one keeps serving"
SECURITY_HEADERS = ("x-content-type-options", "x-frame-options", "referrer-policy", "content-security-policy")


class Tally:
    """Counts per kind of action and traffic, samples (seconds to an idle close), and problems
    by category; shared by every thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = collections.Counter()
        self.problems = collections.defaultdict(list)
        self.samples = collections.defaultdict(list)  # name: [value]

    def count(self, key, n=1):
        with self.lock:
            self.counts[key] += n

    def sample(self, name, value):
        with self.lock:
            self.samples[name].append(value)

    def problem(self, category, msg):
        with self.lock:
            self.problems[category].append(msg)
        ov.note(f"PROBLEM {category}: {msg}")


tally = Tally()
clients = []          # every checking DNS client (ov.Dns and TcpDns), for counts and windows
clients_lock = threading.Lock()


def client(dns):
    with clients_lock:
        clients.append(dns)
    return dns


def running(end):
    return not ov.stop.is_set() and time.time() < end


def pause(seconds):
    """Sleeps; False if the run is being stopped."""
    return not ov.stop.wait(max(0.0, seconds))


# ---- DNS: questions, TCP framing ----

# With --pool N, the client networks and NXDOMAIN names of every question are drawn from N of
# each made at the start: Meridian's caches (per client network, per name) then fill within
# seconds, so memory that keeps growing is not them.
NET_POOL = []
NX_POOL = []


def client_net(rng):
    """An ECS client network, from NET_POOL when there is one, else fresh (new_net)."""
    return rng.choice(NET_POOL) if NET_POOL else new_net(rng)


def new_net(rng):
    """A sample network, a random public /24, a random prefix length (0-32), a random IPv6
    /48 in 2000::/3, or None (no ECS: the resolver's own address)."""
    r = rng.random()
    if r < 0.25:
        return ipaddress.ip_network(rng.choice(list(bench.SAMPLE)))
    if r < 0.65:
        return bench.random_public_24(rng)
    if r < 0.80:
        addr = int(bench.random_public_24(rng).network_address) + rng.randrange(256)
        return ipaddress.ip_network((addr, rng.randint(0, 32)), strict=False)
    if r < 0.90:
        return ipaddress.ip_network(((1 << 125) | (rng.getrandbits(45) << 80), 48))
    return None


def nx_name(rng):
    """A name under ZONE that does not exist, from NX_POOL when there is one, else fresh."""
    return rng.choice(NX_POOL) if NX_POOL else new_nx_name(rng)


def new_nx_name(rng):
    """A random name under ZONE that does not exist (nor is below a name that does)."""
    alphabet = string.ascii_lowercase + string.digits
    labels = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 20))) for _ in range(rng.randint(1, 3))]
    if labels[-1] in NAMES:
        labels[-1] = "nx" + labels[-1]
    return ".".join(labels + [ZONE])


def question(rng):
    """(kind, name, client network, EDNS) of a random valid question."""
    r = rng.random()
    if r < 0.55:
        net = client_net(rng)
        return "steered", f"www.{ZONE}", net, net is not None or rng.random() < 0.5
    if r < 0.70:
        # check_response wants scope 0 echoed for the static name: always with ECS.
        return "static", f"static.{ZONE}", client_net(rng) or bench.random_public_24(rng), True
    if r < 0.92:
        net = client_net(rng)
        return "nxdomain", nx_name(rng), net, net is not None or rng.random() < 0.5
    return "soa", ZONE, None, True


def frame(packet):
    return struct.pack("!H", len(packet)) + packet


def recv_exact(sock, n, deadline):
    """n bytes, or None on EOF; raises socket.timeout past `deadline`."""
    out = b""
    for _ in range(n + 1):  # every recv brings a byte or more, or ends the loop
        if len(out) == n:
            break
        left = deadline - time.time()
        if left <= 0:
            raise socket.timeout("deadline")
        sock.settimeout(left)
        chunk = sock.recv(n - len(out))
        if not chunk:
            return None
        out += chunk
    return out


def recv_frame(sock, deadline):
    """One length-prefixed message, or None on EOF."""
    head = recv_exact(sock, 2, deadline)
    if head is None:
        return None
    return recv_exact(sock, struct.unpack("!H", head)[0], deadline)


def tcp_connect(port, source="127.0.0.1"):
    return socket.create_connection(("127.0.0.1", port), timeout=ov.CHECK_TIMEOUT, source_address=(source, 0))


class TcpDns(ov.Dns):
    """overload's checking client over TCP: one connection at a time, renewed after a random
    number of queries, and pipelined bursts whose answers must come back in order."""

    def __init__(self, port, seed):
        self.port = port
        self.rng = random.Random(seed)
        self.sent = self.lost = self.strays = 0
        self.answers = []
        self.conn, self.left, self.last_used, self.connections = None, 0, 0.0, 0

    def close(self):
        if self.conn:
            self.conn.close()
        self.conn = None

    def exchange(self, query):
        return self.exchange_many([query])[0]

    def connection(self, packets):
        """The connection to send `packets` on: a new one when there is none, when the current
        one has served its share, or when it idled nearly long enough for Meridian to close it
        (RFC 7766 §6.2.3 lets a server close idle connections; the client then reconnects)."""
        if self.conn is None or self.left <= 0 or time.time() - self.last_used > IDLE - 3:
            self.close()
            self.conn = tcp_connect(self.port)
            self.left = self.rng.randint(20, 200)
            self.connections += 1
        self.left -= packets
        return self.conn

    def exchange_many(self, queries):
        """Sends `queries` in one write; their answers in order (None for each missing)."""
        conn = self.connection(len(queries))
        answers = []
        try:
            conn.sendall(b"".join(frame(q) for q in queries))
            deadline = time.time() + ov.CHECK_TIMEOUT
            for _ in queries:
                resp = recv_frame(conn, deadline)
                if resp is None:
                    break
                answers.append(resp)
        except OSError:
            pass
        self.last_used = time.time()
        if len(answers) < len(queries):
            self.close()  # a broken connection is not used again
        return answers + [None] * (len(queries) - len(answers))

    def exchange_past(self, packets):
        """Sends `packets` in one write and reads answers up to the one to the last packet
        (by its ID): (the answers before it, that answer or None)."""
        conn = self.connection(len(packets))
        before = []
        try:
            conn.sendall(b"".join(frame(p) for p in packets))
            deadline = time.time() + ov.CHECK_TIMEOUT
            for _ in range(len(packets)):  # at most one answer per packet
                resp = recv_frame(conn, deadline)
                if resp is None:
                    break
                if resp[:2] == packets[-1][:2]:
                    self.last_used = time.time()
                    return before, resp
                before.append(resp)
        except OSError:
            pass
        self.close()
        return before, None

    def burst(self, questions):
        """Asks every (kind, name, net, edns) in one write; what each answered, or None."""
        made = [(kind, net, *self.query(kind, name, net, edns)) for kind, name, net, edns in questions]
        sent = time.time()
        self.sent += len(made)
        resps = self.exchange_many([m[3] for m in made])
        received = time.time()
        return [self.judge(kind, qname, net, query, resp, sent, received)
                for (kind, net, qname, query), resp in zip(made, resps)]


# ---- DNS traffic ----

def udp_checker(port, end, qps, seed, sample_regions):
    dns = client(ov.Dns(port, seed))
    rng = random.Random(seed)
    start = time.time()
    for i in range(int(qps * (end - start)) + 1):
        if not ov.wait_until(start + i / qps) or not running(end):
            return
        kind, name, net, edns = question(rng)
        got = dns.ask(kind, name, net, edns)
        tally.count(f"udp {kind}")
        if got and kind == "steered" and str(net) in bench.SAMPLE:
            sample_regions[(str(net), got["region"])] += 1


def tcp_checker(port, end, qps, seed):
    dns = client(TcpDns(port, seed))
    rng = random.Random(seed)
    start = time.time()
    for i in range(int(qps * (end - start)) + 1):
        if not ov.wait_until(start + i / qps) or not running(end):
            break
        if rng.random() < 0.15:
            n = rng.randint(2, 20)
            dns.burst([question(rng) for _ in range(n)])
            tally.count("tcp pipelined bursts")
            tally.count("tcp queries in bursts", n)
        else:
            kind, name, net, edns = question(rng)
            dns.ask(kind, name, net, edns)
            tally.count(f"tcp {kind}")
    dns.close()
    tally.count("tcp connections (checker)", dns.connections)


def ecs_query(qid, body):
    """A query for www.ZONE with one ECS option of raw `body`."""
    option = struct.pack("!HH", 8, len(body)) + body
    return (struct.pack("!6H", qid, 0, 1, 0, 0, 1) + bench.encode_name(f"www.{ZONE}") + struct.pack("!HH", 1, 1)
            + b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(option)) + option)


def opt_query(qid, counts, tail):
    """A query for www.ZONE with header counts (an, ns, ar) and raw records `tail`."""
    return struct.pack("!6H", qid, 0, 1, *counts) + bench.encode_name(f"www.{ZONE}") + struct.pack("!HH", 1, 1) + tail


OPT0 = b"\0" + struct.pack("!HHIH", 41, 1232, 0, 0)


def malformed(rng, only=None):
    """(kind, packet, expected): expected is None (no response: RFC 1035 §4.1.1 a response is
    not answered, a packet without a whole header cannot be), "formerr", "badvers" (RFC 6891
    §6.1.3) or "any" (garbage: some response with the ID and QR)."""
    qid = rng.getrandbits(16)
    good = ov.build_query(qid, f"www.{ZONE}", net=bench.random_public_24(rng))
    p = rng.choice([n for n in range(1, 32) if n % 8])  # a prefix that leaves bits in its last octet
    kinds = {
        "short": lambda: (good[:rng.randint(0, 11)], None),
        "truncated": lambda: (good[:rng.randint(12, len(good) - 1)], "formerr"),
        "qr-set": lambda: (good[:2] + bytes([good[2] | 0x80]) + good[3:], None),
        "garbage": lambda: (garbage(rng, qr=False), "any"),
        "garbage-qr-set": lambda: (garbage(rng, qr=True), None),
        # RFC 7871 §6: prefixes beyond the family's length, address octets beyond the
        # prefix, non-zero bits beyond it, unknown families: FORMERR.
        "ecs-prefix-over-32": lambda: (ecs_query(qid, struct.pack("!HBB", 1, rng.randint(33, 255), 0) + bytes(4)), "formerr"),
        "ecs-prefix-over-128": lambda: (ecs_query(qid, struct.pack("!HBB", 2, rng.randint(129, 255), 0) + bytes(16)), "formerr"),
        "ecs-extra-octets": lambda: (ecs_query(qid, struct.pack("!HBB", 1, 8, 0) + bytes([81, 2, 69])), "formerr"),
        "ecs-bits-beyond-prefix": lambda: (ecs_query(qid, struct.pack("!HBB", 1, p, 0) + bytes([255] * ((p + 7) // 8))), "formerr"),
        "ecs-unknown-family": lambda: (ecs_query(qid, struct.pack("!HBB", rng.randint(3, 65535), 24, 0) + bytes(3)), "formerr"),
        "ecs-short-option": lambda: (ecs_query(qid, bytes(rng.randint(0, 3))), "formerr"),
        # RFC 6891 §6.1.1: more than one OPT is FORMERR; an OPT must be the root's, in the
        # additional section, and its options must fit its RDATA.
        "opt-twice": lambda: (opt_query(qid, (0, 0, 2), OPT0 + OPT0), "formerr"),
        "opt-owner-not-root": lambda: (opt_query(qid, (0, 0, 1), b"\x01a" + OPT0), "formerr"),
        "opt-rdlen-past-end": lambda: (opt_query(qid, (0, 0, 1), b"\0" + struct.pack("!HHIH", 41, 1232, 0, 20)), "formerr"),
        "opt-option-past-rdata": lambda: (opt_query(qid, (0, 0, 1), b"\0" + struct.pack("!HHIHHH", 41, 1232, 0, 4, 8, 30)), "formerr"),
        "opt-in-answer-section": lambda: (opt_query(qid, (1, 0, 0), OPT0), "formerr"),
        "edns-version-1": lambda: (opt_query(qid, (0, 0, 1), b"\0" + struct.pack("!HHIH", 41, 1232, 1 << 16, 0)), "badvers"),
    }
    kind = rng.choice(sorted(only or kinds))
    return (kind, *kinds[kind]())


def garbage(rng, qr):
    g = bytearray(rng.getrandbits(8) for _ in range(rng.randint(12, 512)))
    g[2] = g[2] | 0x80 if qr else g[2] & 0x7F
    return bytes(g)


def judge_malformed(packet, expected, resps):
    """The problem with the responses to one malformed packet, or None."""
    if expected is None:
        return f"answered a packet that must not be: {resps[0][:64].hex()}" if resps else None
    if not resps:
        return "no response"
    if len(resps) > 1:
        return f"{len(resps)} responses"
    resp = resps[0]
    try:
        qid, flags, _, (_, _, ar) = ov.parse(resp)
    except (ValueError, IndexError, struct.error) as e:
        return f"malformed response {resp[:64].hex()}: {e}"
    if resp[:2] != packet[:2] or not flags & 0x8000:
        return f"response {resp[:12].hex()} does not echo the ID or lacks QR"
    rcode = flags & 0xF
    if expected == "formerr" and rcode != 1:
        return f"rcode {rcode}, want FORMERR"
    if expected == "badvers":
        opts = [r for r in ar if r[1] == 41]
        if rcode != 0 or len(opts) != 1 or opts[0][3] >> 24 != 1:
            return f"rcode {rcode} with {len(opts)} OPT, want BADVERS (extended rcode 1 in the OPT)"
    if expected == "any":
        tally.count(f"garbage answered rcode {rcode}")
    if len(resp) > 1232:
        return f"{len(resp)}-byte response"
    return None


def malformed_sender(port, end, rate, seed, only=None, transports=("udp", "tcp")):
    """Malformed packets over UDP and TCP, each followed on the same socket by a valid query
    that must be answered right: nothing a bad packet does may break the socket or the
    order of answers."""
    dns = client(TcpDns(port, seed))  # its UDP side is `udp`, its TCP side the connection
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.connect(("127.0.0.1", port))
    rng = random.Random(seed)
    start = time.time()
    for i in range(int(rate * (end - start)) + 1):
        if not ov.wait_until(start + i / rate) or not running(end):
            break
        kind, bad, expected = malformed(rng, only)
        net = ipaddress.ip_network(rng.choice(list(bench.SAMPLE)))
        qname, follow = dns.query("steered", f"www.{ZONE}", net)
        if len(bad) >= 2:  # the follow-up's ID differs from the bad packet's
            follow = struct.pack("!H", (struct.unpack_from("!H", bad)[0] + 1) & 0xFFFF) + follow[2:]
        transport = ("tcp" if rng.random() < 0.4 else "udp") if len(transports) > 1 else transports[0]
        tally.count(f"malformed {transport} {kind}")
        sent = time.time()
        dns.sent += 1
        if transport == "udp":
            # One socket's datagrams are served in order (one reuse-port socket per 4-tuple):
            # an answer to the bad packet comes before the follow-up's.
            bad_resps, resp = [], None
            udp.send(bad)
            udp.send(follow)
            for _ in range(16):  # the follow-up's answer, at most one to the bad packet, strays
                left = sent + ov.CHECK_TIMEOUT - time.time()
                if left <= 0:
                    break
                udp.settimeout(left)
                try:
                    data = udp.recv(65535)
                except socket.timeout:
                    break
                if data[:2] == follow[:2]:
                    resp = data
                    break
                if len(bad) >= 2 and data[:2] == bad[:2]:
                    bad_resps.append(data)
                else:
                    dns.strays += 1
        else:
            # A zero-length frame is a packet too short for a header: no response either.
            bad_resps, resp = dns.exchange_past([bad, follow])
        tally.count("raw responses received", len(bad_resps))
        problem = judge_malformed(bad, expected, bad_resps)
        if problem:
            tally.problem("malformed", f"{transport} {kind} ({bad[:48].hex()}...): {problem}")
        dns.judge("steered", qname, net, follow, resp, sent, time.time())
    udp.close()
    dns.close()


# ---- slow and stuck TCP clients ----

class Sources:
    """Fresh loopback client networks from one /16 of 127/8 per thread. Meridian shares its
    TCP slots out by client network (a /24): a fresh one holds none, so every scenario starts
    from zero, and the checkers on 127.0.0.0/24 keep their own."""

    def __init__(self, block):
        self.block, self.n = block, 0

    def network(self):
        """A fresh /24, as its first three octets."""
        self.n += 1
        return f"127.{self.block}.{self.n % 250 + 1}"

    def next(self):
        """An address in a fresh /24."""
        return self.network() + ".1"


def wait_closed(sock, since, limit):
    """(seconds from `since` until Meridian closed `sock` (EOF or reset), or None if it is
    still open at since + limit; the bytes received meanwhile)."""
    data = b""
    for _ in range(int(limit) * 4 + 1000):  # waits of up to 1 s, or bytes received
        left = since + limit - time.time()
        if left <= 0 or ov.stop.is_set():
            return None, data
        sock.settimeout(min(left, 1.0))
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            continue
        except OSError:
            return time.time() - since, data
        if not chunk:
            return time.time() - since, data
        data += chunk
    return None, data


def still_open(sock):
    """True if `sock` has neither EOF nor an error waiting."""
    sock.setblocking(False)
    try:
        return sock.recv(1, socket.MSG_PEEK) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


class Slow:
    """One slow-client thread: scenarios one after another, each from a fresh address."""

    def __init__(self, port, admin_port, index, seed, slack):
        self.port, self.admin_port, self.slack = port, admin_port, slack
        self.sources = Sources(20 + index)
        self.rng = random.Random(seed)
        self.dns = client(TcpDns(port, seed))  # for its questions and checks; its connection is unused

    def connect(self, source=None):
        s = tcp_connect(self.port, source or self.sources.next())
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return s

    def expect_idle_close(self, name, sock, since):
        """Meridian must close a connection without a whole query after IDLE s (not much
        earlier, not much later), answering nothing."""
        closed, data = wait_closed(sock, since, IDLE + self.slack)
        sock.close()
        if ov.stop.is_set():
            return
        if closed is None:
            tally.problem("tcp", f"{name}: still open {IDLE + self.slack:.0f} s after the last byte")
        elif closed < IDLE - 1:
            tally.problem("tcp", f"{name}: closed after {closed:.1f} s, before the {IDLE:.0f} s idle timeout")
        else:
            tally.sample("idle close (s)", closed)
        if data:
            tally.problem("tcp", f"{name}: answered {data[:32].hex()} to an incomplete query")

    def stuck(self, name, payload):
        """Connects, sends `payload` (nothing, half a prefix, a prefix, half a query), waits."""
        s = self.connect()
        if payload:
            s.sendall(payload)
        self.expect_idle_close(name, s, time.time())

    def trickle(self):
        """A whole query sent byte by byte over about 4 s: it must be answered right."""
        net = ipaddress.ip_network(self.rng.choice(list(bench.SAMPLE)))
        qname, query = self.dns.query("steered", f"www.{ZONE}", net)
        data = frame(query)
        s = self.connect()
        sent = time.time()
        self.dns.sent += 1
        resp = None
        try:
            for i in range(len(data)):
                s.sendall(data[i:i + 1])
                if not pause(4.0 / len(data)):
                    break
            resp = recv_frame(s, time.time() + ov.CHECK_TIMEOUT)
        except OSError:
            pass
        s.close()
        if not ov.stop.is_set():
            self.dns.judge("steered", qname, net, query, resp, sent, time.time())

    def trickle_past_idle(self):
        """A prefix, then a byte every 0.5 s: the query is not whole IDLE s after the prefix,
        so Meridian must close without answering."""
        _, query = self.dns.query("steered", f"www.{ZONE}", None)
        data = frame(query) + bytes(64)  # long enough to outlast the idle timeout
        s = self.connect()
        s.sendall(data[:2])
        since = time.time()
        closed, got = None, b""
        for i in range(2, len(data)):
            if ov.stop.is_set() or time.time() - since > IDLE + self.slack:
                break
            try:
                s.sendall(data[i:i + 1])
            except OSError:
                closed = time.time() - since
                break
            closed, chunk = wait_closed(s, time.time(), 0.5)
            got += chunk
            if closed is not None:
                closed = time.time() - since
                break
        s.close()
        if ov.stop.is_set():
            return
        if closed is None:
            tally.problem("tcp", f"trickle past idle: still open {IDLE + self.slack:.0f} s after the prefix")
        elif closed < IDLE - 1:
            tally.problem("tcp", f"trickle past idle: closed after {closed:.1f} s, before the {IDLE:.0f} s timeout")
        else:
            tally.sample("idle close (s)", closed)
        if got:
            tally.problem("tcp", f"trickle past idle: answered {got[:32].hex()}")

    def crowd(self, n):
        """n idle connections at once, each from its own address: all closed after IDLE s."""
        socks = [self.connect() for _ in range(n)]
        since = time.time()
        for i, s in enumerate(socks):
            self.expect_idle_close(f"crowd connection {i + 1} of {n}", s, since)

    def per_client_limit(self, one_address):
        """PER_CLIENT connections from one client network (from one address, or each from
        its own address in that /24) are held; the next is closed at once."""
        net = self.sources.network()
        sources = [f"{net}.{1 if one_address else i + 1}" for i in range(PER_CLIENT + 1)]
        held = [self.connect(src) for src in sources[:-1]]
        extra = self.connect(sources[-1])
        closed, data = wait_closed(extra, time.time(), 3.0)
        extra.close()
        open_now = sum(still_open(s) for s in held)
        for s in held:
            s.close()
        if ov.stop.is_set():
            return
        where = "one address" if one_address else "one /24"
        if closed is None:
            tally.problem("tcp", f"connection {PER_CLIENT + 1} from {where} was not closed within 3 s")
        if open_now != PER_CLIENT:
            tally.problem("tcp", f"only {open_now} of the {PER_CLIENT} connections from {where} were held")
        if data:
            tally.problem("tcp", f"connection over the per-client limit sent {data[:32].hex()}")

    def admin_stuck(self, name):
        """An admin connection that sends nothing, half a request head, or a head and part of
        its body: closed after 10 s (the head and body deadlines), the half head and the slow
        body with a 408 in the API's JSON, the idle one without a word; the API answers others
        meanwhile (the admin thread's requests)."""
        s = socket.create_connection(("127.0.0.1", self.admin_port), timeout=ov.CHECK_TIMEOUT,
                                     source_address=(self.sources.next(), 0))
        head = f"POST /api/v1/reload HTTP/1.1\r\nHost: 127.0.0.1:{self.admin_port}\r\nContent-Type: {J}\r\n"
        if name == "admin-half-head":
            s.sendall(head.encode())
        elif name == "admin-slow-body":
            s.sendall(f"{head}Content-Length: 100\r\n\r\n{{\"reason\":".encode())
        since = time.time()
        closed, data = wait_closed(s, since, IDLE + self.slack)
        s.close()
        if ov.stop.is_set():
            return
        if closed is None:
            tally.problem("admin-tcp", f"{name}: still open {IDLE + self.slack:.0f} s after the last byte")
        elif closed < IDLE - 1:
            tally.problem("admin-tcp", f"{name}: closed after {closed:.1f} s, before the 10 s deadline")
        else:
            tally.sample("admin close (s)", closed)
        text = data.decode(errors="replace")
        if name in ("admin-slow-body", "admin-half-head"):
            if not text.startswith("HTTP/1.1 408") or '"status":408' not in text.replace(" ", ""):
                tally.problem("admin-tcp", f"{name}: answered {text[:200]!r}, want a JSON 408")
        elif data:
            tally.problem("admin-tcp", f"{name}: answered {text[:200]!r}, want a close without a word")

    def reset(self):
        """Half a query, then a reset (SO_LINGER 0): Meridian must drop the connection."""
        _, query = self.dns.query("steered", f"www.{ZONE}", None)
        s = self.connect()
        s.sendall(frame(query)[: len(query) // 2])
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()

    def half_close(self):
        """A query, then our side shut: answered, then Meridian closes too."""
        net = ipaddress.ip_network(self.rng.choice(list(bench.SAMPLE)))
        qname, query = self.dns.query("steered", f"www.{ZONE}", net)
        s = self.connect()
        sent = time.time()
        self.dns.sent += 1
        resp, closed = None, None
        try:
            s.sendall(frame(query))
            s.shutdown(socket.SHUT_WR)
            resp = recv_frame(s, time.time() + ov.CHECK_TIMEOUT)
            closed, _ = wait_closed(s, time.time(), 3.0)
        except OSError:
            pass
        s.close()
        if ov.stop.is_set():
            return
        self.dns.judge("steered", qname, net, query, resp, sent, time.time())
        if resp is not None and closed is None:
            tally.problem("tcp", "half-close: Meridian did not close its side within 3 s of our FIN")

    def run(self, end):
        long = {"idle": 3, "half-prefix": 2, "prefix-only": 2, "half-query": 2, "trickle-past-idle": 1,
                "crowd": 1, "per-address-limit": 1, "per-network-limit": 1,
                "admin-silent": 1, "admin-half-head": 1, "admin-slow-body": 1}
        short = {"trickle": 3, "reset": 2, "half-close": 2}
        for _ in range(int(end - time.time()) + 1):  # every scenario takes a second or more
            if not running(end):
                break
            # Scenarios that wait out the idle timeout start only while they can end in time.
            pool = {**short, **long} if end - time.time() > IDLE + self.slack + 2 else short
            name = self.rng.choices(list(pool), weights=list(pool.values()))[0]
            tally.count(f"slow tcp {name}")
            _, query = self.dns.query("steered", f"www.{ZONE}", None)
            try:
                if name == "idle":
                    self.stuck(name, b"")
                elif name == "half-prefix":
                    self.stuck(name, frame(query)[:1])
                elif name == "prefix-only":
                    self.stuck(name, frame(query)[:2])
                elif name == "half-query":
                    self.stuck(name, frame(query)[: 2 + len(query) // 2])
                elif name == "trickle":
                    self.trickle()
                elif name == "trickle-past-idle":
                    self.trickle_past_idle()
                elif name == "crowd":
                    self.crowd(20)
                elif name == "per-address-limit":
                    self.per_client_limit(True)
                elif name == "per-network-limit":
                    self.per_client_limit(False)
                elif name.startswith("admin-"):
                    self.admin_stuck(name)
                elif name == "reset":
                    self.reset()
                else:
                    self.half_close()
            except OSError as e:
                tally.problem("tcp", f"{name}: {type(e).__name__}: {e}")
            pause(self.rng.uniform(0.2, 1.0))


# ---- the admin API ----

J = "application/json"
R = f"/api/v1/zones/{ZONE}/regions"


def j(o):
    return json.dumps(o).encode()


OK_BODY = j({"reason": "soak"})
# (name, method, path, body, content type, status with a valid token). Each has one fault.
# Limits and the Host/Origin check come before the token: those statuses hold without one.
BEFORE_AUTH = {413, 414, 421, 403}
LONG = "x" * 9000  # a request target over the 8 KiB limit
BAD_WRITES = [
    ("invalid-json", "POST", f"{R}/us-east/drain", b'{"reason": ', J, 400),
    ("not-json", "POST", f"{R}/us-east/drain", b"drain it please", J, 400),
    ("json-array", "POST", f"{R}/us-east/endpoints/127.0.0.11/force", b"[]", J, 400),
    ("oversized", "POST", f"{R}/eu-west/drain", j({"reason": "x" * 20000}), J, 413),
    ("oversized-unparsable", "POST", f"{R}/eu-west/drain", b"{" * 17000, J, 413),
    ("reason-number", "POST", f"{R}/eu-west/drain", j({"reason": 5}), J, 400),
    ("reason-missing", "POST", f"{R}/eu-west/undrain", j({}), J, 400),
    ("reason-blank", "POST", f"{R}/us-east/endpoints/127.0.0.12/unforce", j({"reason": "   "}), J, 400),
    ("reason-too-long", "POST", f"{R}/ap-southeast/drain", j({"reason": "y" * 501}), J, 400),
    ("unknown-field", "POST", f"{R}/ap-southeast/drain", j({"reason": "x", "why": 1}), J, 400),
    ("expires-string", "POST", f"{R}/us-east/drain", j({"reason": "x", "expires_in": "soon"}), J, 400),
    ("expires-negative", "POST", f"{R}/us-east/drain", j({"reason": "x", "expires_in": -1}), J, 400),
    ("expires-fraction", "POST", f"{R}/us-east/drain", j({"reason": "x", "expires_in": 1.5}), J, 400),
    ("expires-zero", "POST", f"{R}/us-east/drain", j({"reason": "x", "expires_in": 0}), J, 400),
    ("expires-over-30-days", "POST", f"{R}/us-east/drain", j({"reason": "x", "expires_in": 30 * 86400 + 1}), J, 400),
    ("state-on-drain", "POST", f"{R}/us-east/drain", j({"reason": "x", "state": "down"}), J, 400),
    ("expires-on-undrain", "POST", f"{R}/us-east/undrain", j({"reason": "x", "expires_in": 60}), J, 400),
    ("expires-on-unforce", "POST", f"{R}/eu-west/endpoints/127.0.0.21/unforce", j({"reason": "x", "expires_in": 60}), J, 400),
    ("force-state-sideways", "POST", f"{R}/eu-west/endpoints/127.0.0.21/force", j({"reason": "x", "state": "sideways"}), J, 400),
    ("force-state-number", "POST", f"{R}/eu-west/endpoints/127.0.0.21/force", j({"reason": "x", "state": 1}), J, 400),
    ("force-without-state", "POST", f"{R}/eu-west/endpoints/127.0.0.21/force", OK_BODY, J, 400),
    ("unknown-zone", "POST", "/api/v1/zones/nope.test/regions/us-east/drain", OK_BODY, J, 404),
    ("unknown-region", "POST", f"{R}/eu-wset/drain", OK_BODY, J, 404),
    ("endpoint-not-an-address", "POST", f"{R}/us-east/endpoints/not-an-ip/force", j({"reason": "x", "state": "down"}), J, 400),
    ("endpoint-of-another-region", "POST", f"{R}/us-east/endpoints/127.0.0.21/force", j({"reason": "x", "state": "down"}), J, 404),
    ("no-content-type", "POST", f"{R}/us-east/drain", OK_BODY, None, 415),
    ("text-content-type", "POST", f"{R}/us-east/drain", OK_BODY, "text/plain", 415),
    ("reload-invalid-json", "POST", "/api/v1/reload", b'{"reason":', J, 400),
    ("reload-unknown-field", "POST", "/api/v1/reload", j({"why": "x"}), J, 400),
    ("reload-reason-number", "POST", "/api/v1/reload", j({"reason": 5}), J, 400),
    ("reload-oversized", "POST", "/api/v1/reload", j({"reason": "x" * 20000}), J, 413),
    ("unknown-api-path", "POST", "/api/v1/nothing", OK_BODY, J, 404),
    ("get-on-a-write-route", "GET", f"{R}/us-east/drain", None, None, 405),
    ("post-on-a-read-route", "POST", "/api/v1/regions", OK_BODY, J, 405),
    ("delete-on-a-write-route", "DELETE", f"{R}/us-east/drain", None, None, 405),
    ("uri-too-long", "POST", f"{R}/{LONG}/drain", OK_BODY, J, 414),
]
# (name, extra headers, status): the Host must name this server (DNS rebinding), a write's
# Origin must be this server's page or none (cross-site writes).
BAD_ORIGINS = [
    ("host-foreign", {"Host": "evil.example"}, 421),
    ("host-foreign-with-port", {"Host": "rebind.example:8053"}, 421),
    ("origin-foreign", {"Origin": "http://evil.example"}, 403),
    ("origin-null", {"Origin": "null"}, 403),
]
# Writes that would be applied with a valid token: sent without one, with a wrong one or
# with Basic, each must be 401 and change nothing.
UNAUTHORIZED_WRITES = [
    ("drain", f"{R}/us-east/drain", OK_BODY),
    ("undrain", f"{R}/eu-west/undrain", OK_BODY),
    ("force", f"{R}/ap-southeast/endpoints/127.0.0.31/force", j({"reason": "x", "state": "down"})),
    ("unforce", f"{R}/us-east/endpoints/127.0.0.12/unforce", OK_BODY),
    ("reload", "/api/v1/reload", OK_BODY),
]
# Reads that must fail: (name, path, status).
BAD_READS = [
    ("route-bad-client", f"/api/v1/route?name=www.{ZONE}&client=not-a-network", 400),
    ("route-not-steered", f"/api/v1/route?name=static.{ZONE}&client=8.8.8.0/24", 404),
    ("route-no-zone", "/api/v1/route?name=www.nope.test&client=8.8.8.0/24", 404),
    ("events-bad-limit", "/api/v1/events?limit=x", 400),
    ("audit-unknown-parameter", "/api/v1/audit?lim=1", 400),
    ("unknown-api-path", "/api/v1/nothing", 404),
    ("audit-page-over-1000", "/api/v1/audit?limit=1001", 400),
    ("audit-before-not-a-number", "/api/v1/audit?before=x", 400),
    ("uri-too-long", f"/api/v1/route?name=www.{ZONE}&client={LONG}", 414),
    ("host-foreign", "/api/v1/regions", 421),
    ("head-over-64-kib", "/api/v1/regions", 431),
    ("over-100-header-fields", "/api/v1/regions", 431),
]
# Extra headers of the bad reads that have them: heads hyper would refuse by itself, which
# Meridian reads first so that they get the JSON error too.
BAD_READ_HEADERS = {
    "host-foreign": {"Host": "evil.example"},
    "head-over-64-kib": {"X-Filler": "a" * 70000},
    "over-100-header-fields": {f"X-Field-{i}": "v" for i in range(150)},
}
ENTRY_KEYS = {"seq", "at_ms", "by", "action", "zone", "region", "endpoint", "reason", "expires_at_ms"}
REGION_KEYS = {"zone", "region", "location", "state", "drained", "degradation_ms", "over_limit", "in_trouble",
               "check", "traffic", "endpoints"}


def auth(mode, token):
    return {"token": {"Authorization": f"Bearer {token}"}, "none": {},
            "wrong": {"Authorization": "Bearer " + "0" * 32},
            "basic": {"Authorization": "Basic c29hazpzb2Fr"}}[mode]


def api_request(api, what, method, path, data=None, headers=None, want=200):
    """One admin request, its response checked: the status, the security headers, and for an
    error the JSON `{"error": "...", "status": N}` (with WWW-Authenticate on 401). Returns
    (status, parsed JSON or text, problems found)."""
    try:
        status, h, text = api.request(method, path, data, headers)
    except (OSError, http.client.HTTPException) as e:
        tally.problem("api", f"{what}: {method} {path}: {type(e).__name__}: {e}")
        return None, None, True
    tally.count(f"api {what} -> {status}")
    p = []
    wants = want if isinstance(want, (set, frozenset)) else {want}
    if status not in wants:
        p.append(f"status {status}, want {'/'.join(map(str, sorted(wants)))}")
    missing = [n for n in SECURITY_HEADERS if n not in h]
    if missing:
        p.append(f"security headers missing: {', '.join(missing)}")
    body = text
    if method == "HEAD" and text:
        p.append(f"HEAD answered with a body: {text[:80]!r}")
    if status >= 400 and method != "HEAD":
        try:
            body = json.loads(text)
            if not (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]
                    and body.get("status") == status):
                p.append(f"error body {text[:120]!r} is not {{\"error\": \"...\", \"status\": {status}}}")
        except ValueError:
            p.append(f"error body {text[:80]!r} is not JSON")
        if status == 401 and "www-authenticate" not in h:
            p.append("401 without WWW-Authenticate")
    elif method != "HEAD" and h.get("content-type", "").startswith(J):
        try:
            body = json.loads(text)
        except ValueError:
            p.append(f"body {text[:80]!r} is not JSON")
    for msg in p:
        tally.problem("api", f"{what}: {method} {path}: {msg}")
    return status, body, bool(p)


def entry_problems(e, action, by=TOKEN_NAME, region=None, endpoint=None, expires=False, reason=None):
    """What is wrong with a journal entry as the API returns it."""
    if not isinstance(e, dict):
        return [f"entry {e!r} is not an object"]
    p = []
    if set(e) - ENTRY_KEYS:
        p.append(f"unknown keys {sorted(set(e) - ENTRY_KEYS)}")
    if not isinstance(e.get("seq"), int) or e["seq"] < 1:
        p.append(f"seq {e.get('seq')!r}")
    if not isinstance(e.get("at_ms"), int) or abs(e["at_ms"] / 1000 - time.time()) > 60:
        p.append(f"at_ms {e.get('at_ms')!r} is not now")
    want = {"by": by, "action": action, "zone": f"{ZONE}." if region else None, "region": region,
            "endpoint": endpoint, "reason": reason}
    for k, v in want.items():
        if k == "reason" and v is None:
            if not isinstance(e.get("reason"), str) or not e["reason"]:
                p.append("no reason")
        elif e.get(k) != v:
            p.append(f"{k} {e.get(k)!r}, want {v!r}")
    if expires != isinstance(e.get("expires_at_ms"), int):
        p.append(f"expires_at_ms {e.get('expires_at_ms')!r} (an expiry was {'' if expires else 'not '}asked)")
    return p


class Admin:
    """The operator. At most one drain and one force in force at a time, so that the model of
    what is in force is exact: every read of /regions must agree with it."""

    def __init__(self, api, token, seed, windows):
        self.api, self.token = api, token
        self.rng = random.Random(seed)
        self.windows = windows
        self.drained = None  # (region, answered at)
        self.forced = None   # (endpoint, up, sent at, answered at)
        self.acked = 0       # journaled writes answered 200

    def write(self, what, path, body, action, **entry):
        """A write that changes what is in force: 200, {"changed": true} and its journal
        entry."""
        status, e, bad = api_request(self.api, what, "POST", path, j(body),
                                     {**auth("token", self.token), "Content-Type": J})
        if status == 200:
            self.acked += 1
            if not isinstance(e, dict) or e.pop("changed", None) is not True:
                tally.problem("api", f"{what}: answered {str(e)[:160]}, want \"changed\": true")
            for msg in entry_problems(e, action, reason=body["reason"], **entry):
                tally.problem("api", f"{what}: entry {msg}")
        return status == 200

    def noop(self):
        """An undrain of a region that is not drained, an unforce of an endpoint that is not
        forced: 200 with {"changed": false}, nothing journaled, nothing changed."""
        if self.rng.random() < 0.5:
            region = self.rng.choice([r for r in ov.REGIONS if not self.drained or self.drained[0] != r])
            what, path = "no-op undrain", f"{R}/{region}/undrain"
        else:
            addr = self.rng.choice([a for a in ov.REGION_OF if not self.forced or self.forced[0] != a])
            what, path = "no-op unforce", f"{R}/{ov.REGION_OF[addr]}/endpoints/{addr}/unforce"
        status, e, _ = api_request(self.api, what, "POST", path, j({"reason": "soak no-op"}),
                                   {**auth("token", self.token), "Content-Type": J})
        if status == 200 and e != {"changed": False}:
            tally.problem("api", f"{what}: answered {str(e)[:160]}, want {{\"changed\": false}}")

    def toggle_drain(self):
        if self.drained is None:
            region = self.rng.choice(list(ov.REGIONS))
            body = {"reason": "soak drill"}
            if self.rng.random() < 0.5:
                body["expires_in"] = 3600
            if self.write("drain", f"{R}/{region}/drain", body, "drain", region=region, expires="expires_in" in body):
                self.drained = (region, time.time())
                ov.note(f"drained {region}")
        else:
            region, since = self.drained
            sent = time.time()
            if self.write("undrain", f"{R}/{region}/undrain", {"reason": "soak drill over"}, "undrain", region=region):
                self.windows["drains"].append((region, since, sent))
                self.drained = None
                ov.note(f"undrained {region}")

    def toggle_force(self):
        if self.forced is None:
            addr = self.rng.choice(list(ov.REGION_OF))
            up = self.rng.random() < 0.5
            body = {"reason": "soak force", "state": "up" if up else "down"}
            if self.rng.random() < 0.5:
                body["expires_in"] = 3600
            sent = time.time()
            if self.write(f"force-{body['state']}", f"{R}/{ov.REGION_OF[addr]}/endpoints/{addr}/force", body,
                          f"force-{body['state']}", region=ov.REGION_OF[addr], endpoint=addr,
                          expires="expires_in" in body):
                self.forced = (addr, up, sent, time.time())
                ov.note(f"forced {addr} {body['state']}")
        else:
            addr, up, sent_force, acked = self.forced
            sent = time.time()
            if self.write("unforce", f"{R}/{ov.REGION_OF[addr]}/endpoints/{addr}/unforce", {"reason": "soak force over"},
                          "unforce", region=ov.REGION_OF[addr], endpoint=addr):
                # Forced down: out of the answers from the answer to the unforce sent. Forced
                # up: may be in them, whatever its probes say, from the force sent to the
                # unforce answered.
                self.windows["forced"].append((addr, False, acked, sent) if not up else (addr, True, sent_force, time.time()))
                self.forced = None
                ov.note(f"unforced {addr}")

    def bad_write(self):
        if self.rng.random() < 0.2:
            name, path, body = self.rng.choice(UNAUTHORIZED_WRITES)
            mode = self.rng.choice(["none", "wrong", "basic"])
            api_request(self.api, f"unauthorized {name} ({mode})", "POST", path, body,
                        {**auth(mode, self.token), "Content-Type": J}, 401)
            return
        mode = self.rng.choice(["token", "token", "none", "wrong", "basic"])
        if self.rng.random() < 0.15:
            name, extra, want = self.rng.choice(BAD_ORIGINS)
            path, body = self.rng.choice(UNAUTHORIZED_WRITES)[1:]
            api_request(self.api, f"bad {name} ({mode})", "POST", path, body,
                        {**auth(mode, self.token), "Content-Type": J, **extra}, want)
            return
        name, method, path, body, ctype, want = self.rng.choice(BAD_WRITES)
        headers = auth(mode, self.token)
        if ctype:
            headers["Content-Type"] = ctype
        # Reads need no token on a loopback listener; a write without a valid one is 401
        # before anything but the request's limits and its Host and Origin is looked at.
        if mode != "token" and method not in ("GET", "HEAD") and want not in BEFORE_AUTH:
            want = 401
        api_request(self.api, f"bad {name} ({mode})", method, path, body, headers, want)

    def read(self):
        if self.rng.random() < 0.2:
            name, path, want = self.rng.choice(BAD_READS)
            headers = BAD_READ_HEADERS.get(name)
            api_request(self.api, f"bad-read {name}", "GET", path, None, headers, want)
            return
        name = self.rng.choice(["regions", "regions", "zones", "names", "events", "audit", "route", "openapi",
                                "metrics", "healthz", "readyz"])
        headers = auth(self.rng.choice(["none", "token", "wrong"]), self.token)
        net = self.rng.choice(list(bench.SAMPLE))
        path = {"events": "/api/v1/events?limit=10", "audit": "/api/v1/audit?limit=5",
                "route": f"/api/v1/route?name=www.{ZONE}&client={net}", "openapi": "/api/v1/openapi.json",
                "metrics": "/metrics", "healthz": "/healthz", "readyz": "/readyz"}.get(name, f"/api/v1/{name}")
        if self.rng.random() < 0.1:
            # HEAD is answered as the GET: same status and headers, no body.
            status, _, _ = api_request(self.api, f"read {name} (HEAD)", "HEAD", path, None, headers)
            return
        status, body, bad = api_request(self.api, f"read {name}", "GET", path, None, headers)
        if status == 200 and not bad:
            for msg in read_problems(name, body, self):
                tally.problem("api", f"read {name}: {msg}")

    def run(self, end, rate):
        start = time.time()
        for i in range(int(rate * (end - start)) + 1):
            if not ov.wait_until(start + i / rate) or not running(end):
                break
            r = self.rng.random()
            if r < 0.12:
                self.toggle_drain()
            elif r < 0.24:
                self.toggle_force()
            elif r < 0.28:
                self.noop()
            elif r < 0.65:
                self.bad_write()
            else:
                self.read()
        if not ov.stop.is_set():
            if self.drained:
                self.toggle_drain()
            if self.forced:
                self.toggle_force()
        # Whatever could not be lifted stays in force to the end.
        if self.drained:
            self.windows["drains"].append((self.drained[0], self.drained[1], float("inf")))
        if self.forced:
            addr, up, sent, acked = self.forced
            self.windows["forced"].append((addr, up, sent if up else acked, float("inf")))


def read_problems(name, body, admin):
    """What is wrong with a read view's body; /regions is checked against the overrides the
    operator holds."""
    text_views = {"metrics": "meridian_build_info", "healthz": "ok\n", "readyz": "ready\n"}
    if name in text_views:
        return [] if isinstance(body, str) and text_views[name] in body else [f"body {str(body)[:80]!r}"]
    if name == "openapi":
        return [] if isinstance(body, dict) and "openapi" in body and "paths" in body else ["not an OpenAPI document"]
    if name == "route":
        keys = {"name", "zone", "geoip", "client", "location", "a", "aaaa"}
        if not isinstance(body, dict) or not keys <= set(body) or not isinstance(body["a"].get("addresses"), list):
            return [f"route {str(body)[:120]}"]
        return []
    if not isinstance(body, list):
        return [f"{str(body)[:80]!r} is not a list"]
    p = []
    if name == "zones":
        mine = [z for z in body if isinstance(z, dict) and z.get("zone") == f"{ZONE}."]
        if len(mine) != 1 or not isinstance(mine[0].get("serial"), int) or set(mine[0].get("regions", [])) != set(ov.REGIONS):
            p.append(f"{ZONE} not listed right: {str(body)[:160]}")
    elif name == "names":
        mine = [n for n in body if isinstance(n, dict) and n.get("name") == f"www.{ZONE}."]
        if len(mine) != 1 or mine[0].get("ttl") != ov.TTL or mine[0].get("trouble_ttl") != ov.TROUBLE_TTL:
            p.append(f"www.{ZONE} not listed right: {str(body)[:160]}")
    elif name in ("events", "audit"):
        if len(body) > (10 if name == "events" else 5):
            p.append(f"{len(body)} items past the limit")
        keys = {"at_ms", "zone", "region", "from", "to", "reason"} if name == "events" else {"seq", "at_ms", "by", "action", "reason"}
        if any(not isinstance(x, dict) or not keys <= set(x) for x in body):
            p.append(f"an item lacks {sorted(keys)}: {str(body)[:160]}")
    elif name == "regions":
        mine = {r.get("region"): r for r in body if isinstance(r, dict) and r.get("zone") == f"{ZONE}."}
        if set(mine) != set(ov.REGIONS) or any(not REGION_KEYS <= set(r) for r in mine.values()):
            return [f"regions of {ZONE}: {sorted(mine)}, or keys missing"]
        for region, r in mine.items():
            drained = admin.drained is not None and admin.drained[0] == region
            if bool(r["drained"]) != drained or (r["state"] == "drained") != drained:
                p.append(f"{region}: drained {r['drained']!r}, state {r['state']}, but it is {'' if drained else 'not '}drained")
            for e in r["endpoints"]:
                forced = admin.forced is not None and admin.forced[0] == e.get("address")
                if bool(e.get("forced")) != forced or (forced and e["forced"].get("up") != admin.forced[1]):
                    p.append(f"{e.get('address')}: forced {e.get('forced')!r}, but it is {'forced ' + ('up' if admin.forced[1] else 'down') if forced else 'not forced'}")
    return p


# ---- zone reloads: the API and SIGHUP ----

class LogTail:
    """Meridian's JSON log read as it grows, for waits on a line (a SIGHUP's outcome, a GeoIP
    file noticed)."""

    def __init__(self, path):
        self.path, self.pos, self.rest = path, 0, b""
        self.lines = []  # (level, fields)
        self.lock = threading.Lock()

    def count(self, message, level=None, **fields):
        with self.lock:
            with open(self.path, "rb") as f:
                f.seek(self.pos)
                data = f.read()
            self.pos += len(data)
            *whole, self.rest = (self.rest + data).split(b"\n")
            for line in whole:
                try:
                    parsed = json.loads(line)
                    self.lines.append((parsed["level"], parsed["fields"]))
                except (ValueError, KeyError):
                    self.lines.append(("PLAIN", {"message": line.decode(errors="replace")}))
            return sum(1 for lvl, f in self.lines if f.get("message") == message and (level is None or lvl == level)
                       and all(f.get(k) == v for k, v in fields.items()))

    def wait(self, n, deadline, message, **fields):
        """True once `message` (with `fields`) has been logged n times, False at `deadline`."""
        for _ in range(int((deadline - time.time()) * 10) + 2):
            if self.count(message, **fields) >= n:
                return True
            if time.time() > deadline or not pause(0.1):
                return False
        return False


EXTRA_TEXT = f"""# Written by bench/soak.py: a zone that sorts before {ZONE}, added and removed by reloads.
zone = "{EXTRA}."
records = '''
$TTL 3600
@     IN SOA ns1.{EXTRA}. hostmaster.{EXTRA}. 1 7200 3600 1209600 300
@     IN NS  ns1
ns1   IN A   192.0.2.53
'''
"""
DIAGNOSTIC = re.compile(r"^zones/[\w.-]+\.toml(:\d+)?: \S")


class Zones:
    """Zone reloads, good and bad, through the API and by SIGHUP, one at a time: the only
    writer of the zone directory."""

    def __init__(self, api, dns, meridian, port, logs, seed):
        self.api, self.dns, self.meridian, self.port, self.logs = api, dns, meridian, port, logs
        self.rng = random.Random(seed)
        self.serial, self.extra = ov.SERIAL0, False
        self.dropped = []  # what the last good reload must report dropped
        self.drops = 0     # good reloads that dropped EXTRA: each logs a warning
        self.acked = 0  # reloads journaled (API 200s and SIGHUP reloads seen)
        self.dir = os.path.join(WORK, "zones")

    def path(self, name):
        return os.path.join(self.dir, name)

    def restore(self):
        """The zone directory as the served zones are: ZONE at the serial served, EXTRA if
        served, nothing else."""
        ov.write_zone(self.port, self.serial, ZONE)
        if self.extra:
            ov.install(self.path(f"{EXTRA}.toml"), EXTRA_TEXT)
        for name in os.listdir(self.dir):
            if name not in {f"{ZONE}.toml", f"{EXTRA}.toml" if self.extra else None}:
                os.remove(self.path(name))

    def next_good(self):
        self.serial += 1
        if self.rng.random() < 0.3:
            self.extra = not self.extra
        self.dropped = [] if self.extra or not os.path.exists(self.path(f"{EXTRA}.toml")) else [f"{EXTRA}."]
        self.restore()

    def write_bad(self):
        """Breaks the zone directory; returns the variant's name, the file its diagnostic
        must name and whether that diagnostic has a line."""
        good = ov.zone_text(self.port, self.serial, ZONE)
        kind = self.rng.choice(["unknown-region", "toml-syntax", "bad-record", "unknown-key", "duplicate-zone", "not-utf8"])
        culprit, line = f"{ZONE}.toml", True
        if kind == "unknown-region":
            ov.install(self.path(culprit), good.replace('"eu-west", "ap-southeast"]', '"eu-wset", "ap-southeast"]'))
        elif kind == "toml-syntax":
            ov.install(self.path(culprit), good + "\n[regions\n")
        elif kind == "bad-record":
            ov.install(self.path(culprit), good.replace(f"IN A    {ov.STATIC}", "IN A    999.1.2.3"))
        elif kind == "unknown-key":
            ov.install(self.path(culprit), good.replace("[health]", "[health]\ncolour = \"blue\""))
        elif kind == "duplicate-zone":
            culprit, line = f"{ZONE}-copy.toml", False
            ov.install(self.path(culprit), good)
        else:
            culprit, line = "broken.toml", False
            ov.install(self.path(culprit), b"\xff\xfe not a zone file\n")
        return kind, culprit, line

    def served(self, what):
        """The served zones must be the ones restore() describes."""
        got = self.dns.ask("soa", ZONE)
        if got and got["serial"] != self.serial:
            tally.problem("zones", f"{what}: SOA serial {got['serial']} served, want {self.serial}")
        if self.extra:
            self.dns.ask("soa", EXTRA)
        else:
            qname, query = self.dns.query("soa", EXTRA)
            resp = self.dns.exchange(query)
            if resp is not None:
                tally.count("raw responses received")
            if resp is None or len(resp) < 4 or resp[3] & 0xF != 5 or not resp[2] & 0x80:
                tally.problem("zones", f"{what}: {EXTRA} is not served, yet the answer was {resp.hex() if resp else 'none'}, want REFUSED")

    def reload_api(self, want):
        """POST /reload; checks the answer; returns the parsed body."""
        body = None if self.rng.random() < 0.2 else {"reason": f"soak reload at serial {self.serial}"}
        headers = auth("token", self.api.token)
        if body:
            headers["Content-Type"] = J
        status, got, bad = api_request(self.api, f"reload ({'good' if want == 200 else 'bad'})", "POST",
                                       "/api/v1/reload", j(body) if body else None, headers, want)
        if status == 200:
            self.acked += 1
            if not isinstance(got, dict) or got.get("zones") != 1 + self.extra or got.get("dropped") != self.dropped:
                tally.problem("zones", f"reload answered {str(got)[:160]}, want zones {1 + self.extra}, dropped {self.dropped}")
            else:
                for msg in entry_problems(got.get("entry"), "reload", reason=body["reason"] if body else "reload requested"):
                    tally.problem("zones", f"reload entry {msg}")
        return status, got

    def check_diagnostics(self, kind, culprit, line, got):
        d = got.get("diagnostics") if isinstance(got, dict) else None
        if not isinstance(d, list) or not d:
            tally.problem("zones", f"bad reload ({kind}): no diagnostics in {str(got)[:160]}")
            return
        if not all(isinstance(x, str) and DIAGNOSTIC.match(x) for x in d):
            tally.problem("zones", f"bad reload ({kind}): a diagnostic is not 'zones/FILE[:LINE]: problem': {d}")
        if not any(culprit in x and (not line or re.search(re.escape(culprit) + r":\d+: ", x)) for x in d):
            tally.problem("zones", f"bad reload ({kind}): no diagnostic names {culprit}{':LINE' if line else ''}: {d}")

    def sighup(self, message, level, deadline_what):
        n = self.logs.count(message, level=level, by="SIGHUP") + 1
        os.kill(self.meridian.pid, signal.SIGHUP)
        if not self.logs.wait(n, time.time() + SIGHUP_DEADLINE, message, by="SIGHUP"):
            if not ov.stop.is_set():
                tally.problem("zones", f"{deadline_what}: no '{message}' logged within {SIGHUP_DEADLINE:.0f} s of SIGHUP")
            return False
        return True

    def step(self):
        r = self.rng.random()
        if r < 0.35:
            self.next_good()
            status, _ = self.reload_api(200)
            self.drops += bool(self.dropped) and status == 200
            tally.count("zones reload api good")
            self.served("good reload")
            ov.note(f"reload: serial {self.serial}, {EXTRA} {'in' if self.extra else 'out'}: HTTP {status}")
        elif r < 0.60:
            kind, culprit, line = self.write_bad()
            status, got = self.reload_api(422)
            tally.count(f"zones reload api bad {kind}")
            if status == 422:
                self.check_diagnostics(kind, culprit, line, got)
            self.served(f"bad reload ({kind})")
            self.restore()
            ov.note(f"bad reload ({kind}): HTTP {status}")
        elif r < 0.80:
            self.next_good()
            tally.count("zones sighup good")
            if self.sighup("zones reloaded", "INFO", "SIGHUP reload"):
                self.acked += 1
                self.drops += bool(self.dropped)
                self.served("SIGHUP reload")
            ov.note(f"SIGHUP: serial {self.serial}, {EXTRA} {'in' if self.extra else 'out'}")
        else:
            kind, _, _ = self.write_bad()
            tally.count(f"zones sighup bad {kind}")
            self.sighup(LOG_REFUSED_RELOAD, "WARN", f"bad SIGHUP reload ({kind})")
            self.served(f"bad SIGHUP reload ({kind})")
            self.restore()
            ov.note(f"bad SIGHUP reload ({kind})")

    def run(self, end, every):
        for _ in range(int((end - time.time()) / every * 2) + 1):
            if not pause(self.rng.uniform(every / 2, every * 1.5)) or not running(end):
                return
            self.step()


# ---- GeoIP replacements ----

class Geo:
    """Replaces the --geoip file by rename, as MaxMind's geoipupdate does, and waits for
    Meridian to notice: a good copy is served; garbage, an empty file, a truncated one and
    one whose metadata is intact but whose search tree is garbage are refused while the old
    database keeps serving (the sample networks located as before). After anything but a
    good copy, a good copy goes back."""

    def __init__(self, api, logs, path, countries, seed):
        self.api, self.logs, self.path, self.countries = api, logs, path, countries
        self.rng = random.Random(seed)
        self.source = open(GEO_SOURCE, "rb").read()
        self.refused = 0

    def data(self, kind):
        if kind == "good":
            return self.source
        if kind == "garbage":
            return self.rng.randbytes(self.rng.randint(1, 1 << 20))
        if kind == "empty":
            return b""
        if kind == "truncated":
            return self.source[: self.rng.randint(1, len(self.source) - 150_000)]  # without the metadata
        return self.rng.randbytes(200_000) + self.source[200_000:]  # corrupt-tree

    def located(self):
        """The country /route gives each sample network ({net: country or None})."""
        out = {}
        for net in self.countries:
            status, body, _ = api_request(self.api, "read route (geoip check)", "GET", f"/api/v1/route?name=www.{ZONE}&client={net}")
            out[net] = body["location"].get("country") if status == 200 and isinstance(body, dict) else "?"
        return out

    def replace(self, kind):
        served, refused = self.logs.count(LOG_GEO_SERVED), self.logs.count(LOG_GEO_REFUSED)
        ov.install(self.path, self.data(kind))
        deadline = time.time() + GEO_NOTICE
        outcome = "unnoticed"
        for _ in range(int(GEO_NOTICE / 0.2) + 1):
            if time.time() > deadline or not pause(0.2):
                break
            if self.logs.count(LOG_GEO_SERVED) > served:
                outcome = "served"
                break
            if self.logs.count(LOG_GEO_REFUSED) > refused:
                outcome = "refused"
                self.refused += 1
                break
        if ov.stop.is_set():
            return
        tally.count(f"geoip {kind}: {outcome}")
        want = "served" if kind == "good" else "refused"
        if outcome != want:
            tally.problem("geoip", f"{kind} replacement {outcome}, want {want}")
        located = self.located()
        if located != self.countries:
            tally.problem("geoip", f"after a {kind} replacement ({outcome}) the sample networks are located {located}, want {self.countries}")
        ov.note(f"GeoIP {kind}: {outcome}")

    def run(self, end, every):
        for _ in range(int((end - time.time()) / every * 2) + 1):
            if not pause(self.rng.uniform(every / 2, every * 1.5)) or not running(end):
                return
            kind = self.rng.choices(["good", "garbage", "empty", "truncated", "corrupt-tree"], [4, 2, 1, 1, 1])[0]
            self.replace(kind)
            if kind != "good" and running(end + GEO_NOTICE):
                self.replace("good")


# ---- probe targets, resources ----

def killer(targets, port, end, every, held, seed, kills):
    """Kills a random probe target (SIGKILL) and restarts it `held` s later, one at a time."""
    rng = random.Random(seed)
    for _ in range(int((end - time.time()) / every * 2) + 1):
        if not pause(rng.uniform(every / 2, every * 1.5)) or time.time() + held > end:
            return
        addr = rng.choice(list(ov.REGION_OF))
        targets[addr].kill()
        targets[addr].wait()
        killed = time.time()
        tally.count("probe target kills")
        ov.note(f"kill -9 probe target {addr} ({ov.REGION_OF[addr]})")
        if not pause(held):
            return
        targets[addr] = ov.start_target(addr, port)
        kills.append((addr, killed, time.time()))
        ov.note(f"restarted probe target {addr}")


def resources(pid, geo_path):
    """Meridian's RSS (kB; anonymous and file-backed), open descriptors, threads, and the
    GeoIP files it maps (distinct inodes, replaced ones included)."""
    status = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        status[k] = v.split()
    geo = set()
    for line in open(f"/proc/{pid}/maps"):
        parts = line.split(None, 5)
        if len(parts) == 6 and parts[5].strip().removesuffix(" (deleted)") == geo_path:
            geo.add(parts[4])
    return {"t": time.time() - ov.t0, "rss": int(status["VmRSS"][0]), "anon": int(status["RssAnon"][0]),
            "file": int(status["RssFile"][0]), "fds": len(os.listdir(f"/proc/{pid}/fd")),
            "threads": int(status["Threads"][0]), "geo_maps": len(geo)}


def sampler(meridian, geo_path, end, every, samples):
    for i in range(int((end - ov.t0) / every) + 2):
        if not ov.wait_until(ov.t0 + i * every):
            return
        if meridian.poll() is not None:
            tally.problem("server", f"meridian exited with {meridian.returncode} during the soak")
            ov.stop.set()
            return
        try:
            samples.append(resources(meridian.pid, geo_path))
        except (OSError, KeyError, ValueError) as e:
            tally.problem("server", f"cannot sample meridian: {e}")
        if time.time() >= end:
            return


# ---- the run ----

def audit_all(api):
    """Every journal entry, page by page (at most 1,000 a page), oldest first; None if a page
    cannot be read."""
    entries, before = [], ""
    for _ in range(10_000):
        _, page, bad = api_request(api, "read audit (all, paged)", "GET", f"/api/v1/audit?limit=1000{before}")
        if bad or not isinstance(page, list):
            return None
        if not page:
            break
        entries[:0] = page
        before = f"&before={page[0]['seq']}"
    return entries


def wait_all_up(api, seconds):
    deadline = time.time() + seconds
    for _ in range(int(seconds / 0.2) + 1):
        if time.time() > deadline:
            break
        try:
            if api.all_up():
                return True
        except (OSError, ValueError, http.client.HTTPException):
            pass
        if not pause(0.2):
            return False
    return False


def run(args):
    # overload's helpers (note, start_target, write_zone, start_meridian, meridian_log) work
    # in their module's WORK: this run's directory.
    ov.WORK = WORK
    shutil.rmtree(WORK, ignore_errors=True)
    for d in ("zones", "state", "www", "geo"):
        os.makedirs(os.path.join(WORK, d))
    with open(os.path.join(WORK, "www", "healthz"), "w") as f:
        f.write("ok\n")
    token = secrets.token_hex(16)
    token_file = os.path.join(WORK, "tokens")
    with open(os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(f"{TOKEN_NAME}:{token}\n")
    geo_path = os.path.join(WORK, "geo", "geo.mmdb")
    shutil.copyfile(GEO_SOURCE, geo_path)
    port = ov.free_http_port()
    ov.write_zone(port, ov.SERIAL0, ZONE)
    targets = {a: ov.start_target(a, port) for a in ov.REGION_OF}
    meridian, dns_port, admin_port = ov.start_meridian(token_file, args.binary, ["--geoip", geo_path])
    api = ov.Api(admin_port, token)
    ov.note(f"meridian pid {meridian.pid} ({args.binary}): DNS 127.0.0.1:{dns_port}, admin 127.0.0.1:{admin_port}; "
            f"probe targets {', '.join(ov.REGION_OF)} on port {port}; GeoIP {geo_path}; work dir {WORK}")
    if not wait_all_up(api, 20):
        raise SystemExit("the regions did not all come up: " + api.call("GET", "/api/v1/regions")[1])
    probe = ov.Dns(dns_port, 1)
    for net, region in bench.SAMPLE.items():
        got = probe.ask("steered", f"www.{ZONE}", ipaddress.ip_network(net))
        if not got or got["region"] != region:
            raise SystemExit(f"before the soak: {net} got {got}, want {region}\n{json.dumps(ov.wrong, indent=1)}")
    countries = Geo(api, None, geo_path, dict.fromkeys(bench.SAMPLE), 0).located()
    if None in countries.values() or "?" in countries.values():
        raise SystemExit(f"before the soak: sample networks located {countries}")
    pause(1.0)
    r = argparse.Namespace(args=args, binary=args.binary, built=os.path.getmtime(args.binary), base=resources(meridian.pid, geo_path), samples=[], kills=[],
                           windows={"drains": [], "forced": []}, sample_regions=collections.Counter(),
                           metrics_before=api.metrics(), metrics_after=None, final=None, audit=None, exit=None,
                           loadavg=[open("/proc/loadavg").read().split()[0]])
    ov.note(f"every region up; {len(bench.SAMPLE)} client networks steered as expected, located {countries}; "
            f"{r.base['fds']} descriptors, RSS {r.base['rss'] / 1024:.1f} MB")

    ov.t0 = time.time()
    end = ov.t0 + args.seconds
    logs = LogTail(os.path.join(WORK, "meridian.log"))
    seed = args.seed
    pool = random.Random(seed + 6)
    NET_POOL[:] = [new_net(pool) for _ in range(args.pool)]
    NX_POOL[:] = [new_nx_name(pool) for _ in range(args.pool)]
    r.admin = Admin(api, token, seed + 1, r.windows)
    r.zones = Zones(api, client(ov.Dns(dns_port, seed + 2)), meridian, port, logs, seed + 3)
    r.geo = Geo(api, logs, geo_path, countries, seed + 4)
    # A rate or a period of 0 leaves that part out (to find which part a problem follows).
    parts = [
        (True, "sampler", sampler, meridian, geo_path, end, args.sample_every, r.samples),
        (args.udp_qps, "udp", udp_checker, dns_port, end, args.udp_qps, seed + 10, r.sample_regions),
        (args.tcp_qps, "tcp", tcp_checker, dns_port, end, args.tcp_qps, seed + 11),
        (args.malformed_rate, "malformed", malformed_sender, dns_port, end, args.malformed_rate, seed + 12,
         args.malformed_kinds and args.malformed_kinds.split(","), tuple(args.malformed_over.split(","))),
        *[(True, f"slow-{i}", Slow(dns_port, admin_port, i, seed + 20 + i, args.tcp_slack).run, end) for i in range(args.slow_clients)],
        (args.admin_rate, "admin", r.admin.run, end, args.admin_rate),
        (args.reload_every, "zones", r.zones.run, end, args.reload_every),
        (args.geoip_every, "geoip", r.geo.run, end, args.geoip_every),
        (args.kill_every, "killer", killer, targets, port, end, args.kill_every, 3.0, seed + 5, r.kills),
    ]
    threads = [ov.guarded(*part[1:]) for part in parts if part[0]]
    # Every loop stops starting steps at `end`; a step is bounded (the longest waits out the
    # TCP idle timeout or a GeoIP notice twice).
    for t in threads:
        t.join(max(1.0, end + 60 - time.time()))
    for t in threads:
        if t.is_alive():
            tally.problem("soak", f"thread {t.name} still running 60 s after the end")
    r.loadavg.append(open("/proc/loadavg").read().split()[0])

    if meridian.poll() is None:
        if not wait_all_up(api, 20):
            tally.problem("probes", "not every region and endpoint is up 20 s after the soak")
        # Stuck connections close within the idle timeout: then descriptors must be back.
        deadline = time.time() + IDLE + 10
        for _ in range(int((IDLE + 10) / 0.5)):
            if resources(meridian.pid, geo_path)["fds"] <= r.base["fds"] + args.fd_slack or time.time() > deadline:
                break
            pause(0.5)
        r.final = resources(meridian.pid, geo_path)
        r.metrics_after = api.metrics()
        r.audit = audit_all(api)
        started = time.time()
        meridian.send_signal(signal.SIGTERM)
        try:
            r.exit = (meridian.wait(timeout=15), time.time() - started)
        except subprocess.TimeoutExpired:
            tally.problem("server", "meridian did not exit within 15 s of SIGTERM")
        else:
            if r.exit[0] != 0:
                tally.problem("server", f"meridian exited with {r.exit[0]} on SIGTERM")
    elif not tally.problems["server"]:
        tally.problem("server", f"meridian exited with {meridian.returncode} during the soak")
    r.log = ov.meridian_log()
    answers = [a for c in clients for a in c.answers]
    found, unseen = ov.windows_check(answers, r.windows["drains"], r.log, r.kills, r.windows["forced"])
    ov.wrong.extend({"what": "wrong", "kind": "steered", "problems": [f]} for f in found)
    for u in unseen:
        tally.problem("probes", u)
    with open(os.path.join(WORK, "samples.jsonl"), "w") as f:
        f.writelines(json.dumps(s) + "\n" for s in [r.base] + r.samples + [r.final or {}])
    return report(r)


def minmax(values, fmt):
    return f"min {fmt(min(values))}, max {fmt(max(values))}, last {fmt(values[-1])}" if values else "no samples"


def report(r):
    args = r.args
    lines = []
    say = lines.append
    failures = []
    off = [name for name in ("udp_qps", "tcp_qps", "malformed_rate", "slow_clients", "admin_rate", "reload_every",
                             "geoip_every", "kill_every") if not getattr(args, name)]
    say(f"Meridian soak: {args.seconds} s of everything at once (seed {args.seed}"
        + (f"; client networks and NXDOMAIN names from pools of {args.pool}" if args.pool else "") + ")"
        + (f"; left out: {', '.join('--' + n.replace('_', '-') for n in off)}" if off else ""))
    build = next((k[len("meridian_build_info"):] for k in r.metrics_before if k.startswith("meridian_build_info")), "")
    say(f"binary {r.binary} {build} (file of {time.strftime('%Y-%m-%d %H:%M', time.localtime(r.built))}); "
        f"machine: {os.cpu_count()} cores, shared; load average {r.loadavg[0]} before, {r.loadavg[-1]} after")
    c = tally.counts

    def group(prefix):
        return ", ".join(f"{k[len(prefix):]} {v:,}" for k, v in sorted(c.items()) if k.startswith(prefix)) or "none"

    def statuses(prefix):
        by = collections.Counter()
        for k, v in c.items():
            if k.startswith(prefix):
                by[k.rsplit(" ", 1)[1]] += v
        return ", ".join(f"{st} {n:,}" for st, n in sorted(by.items())) or "none"

    udp = [x for x in clients if type(x) is ov.Dns]
    sent = sum(x.sent for x in clients)
    lost = sum(x.lost for x in clients)
    strays = sum(x.strays for x in clients)
    say(f"DNS over UDP: {group('udp ')}")
    say(f"DNS over TCP: {group('tcp ')}")
    say(f"malformed packets, each followed by a valid query on the same socket: {sum(v for k, v in c.items() if k.startswith('malformed '))}:")
    say(f"  UDP: {group('malformed udp ')}")
    say(f"  TCP: {group('malformed tcp ')}")
    say(f"  garbage answered: {group('garbage answered ')}")
    closes = tally.samples.get("idle close (s)", [])
    admin_closes = tally.samples.get("admin close (s)", [])
    say(f"slow and stuck TCP clients: {group('slow tcp ')}; closed by Meridian after "
        + (f"{min(closes):.1f}-{max(closes):.1f} s (idle timeout {IDLE:.0f} s)" if closes else "-")
        + ("; stuck admin connections closed after " + f"{min(admin_closes):.1f}-{max(admin_closes):.1f} s" if admin_closes else ""))
    say(f"checked DNS answers: {sent:,} questions ({len(udp)} UDP and {len(clients) - len(udp)} TCP clients, "
        f"slow clients and malformed follow-ups included): {lost} lost, "
        f"{sum(1 for w in ov.wrong if w['what'] == 'wrong')} wrong, {strays} stray answers; "
        f"checked against {len(r.windows['drains'])} drain, {len(r.windows['forced'])} force and the probe-down windows")
    for net in bench.SAMPLE:
        by = ", ".join(f"{reg} {n:,}" for (cn, reg), n in sorted(r.sample_regions.items(), key=lambda x: -x[1]) if cn == net)
        say(f"  {net:>16} (nearest {bench.SAMPLE[net]}): {by or '-'}")
    writes = {a: c[f"api {a} -> 200"] for a in ("drain", "undrain", "force-up", "force-down", "unforce")}
    say(f"admin writes with the token, answered 200 and journaled: {r.admin.acked} "
        f"({', '.join(f'{a} {n}' for a, n in writes.items())}); the entry each returned checked")
    bad = [k for k in c if k.startswith("api bad ")]
    say(f"bad admin requests: {sum(c[k] for k in bad):,} of {len({k[8:].split(' (')[0] for k in bad})} kinds, with the token, "
        f"without it, with a wrong one, with Basic; statuses {statuses('api bad ')}")
    say(f"valid writes without a valid token: {sum(v for k, v in c.items() if k.startswith('api unauthorized ')):,}, "
        f"statuses {statuses('api unauthorized ')}")
    say(f"bad admin reads: {sum(v for k, v in c.items() if k.startswith('api bad-read ')):,}, statuses {statuses('api bad-read ')}")
    reads = {k[len("api read "):].rsplit(" -> ", 1)[0]: v for k, v in sorted(c.items()) if k.startswith("api read ")}
    say(f"admin reads: {sum(reads.values()):,} ({', '.join(f'{k} {v}' for k, v in reads.items())}); "
        f"/regions checked against the overrides in force")
    say(f"zone reloads: {group('zones ')}")
    say(f"GeoIP replacements: {group('geoip ')}")
    say(f"probe target kills: {c['probe target kills']}, restarts: {len(r.kills)}")

    mb, ma = r.metrics_before, r.metrics_after
    if ma:
        reloads = ov.metric_sum(ma, "meridian_reloads_total", "result")
        before = ov.metric_sum(mb, "meridian_reloads_total", "result")
        ok, failed = reloads["ok"] - before.get("ok", 0), reloads["failed"] - before.get("failed", 0)
        good = c["zones reload api good"] + c["zones sighup good"]
        bad_reloads = sum(v for k, v in c.items() if k.startswith(("zones reload api bad", "zones sighup bad")))
        say(f"metrics: reloads ok +{ok:.0f} (made {good}), failed +{failed:.0f} (made {bad_reloads}); "
            f"responses {ov.delta(ov.metric_sum(ma, 'meridian_dns_queries_total', 'rcode'), ov.metric_sum(mb, 'meridian_dns_queries_total', 'rcode'))}")
        if (ok, failed) != (good, bad_reloads):
            failures.append("Meridian counted other reloads than were made")
        counted = sum(ov.metric_sum(ma, "meridian_dns_queries_total", "rcode").values()) \
            - sum(ov.metric_sum(mb, "meridian_dns_queries_total", "rcode").values())
        received = sum(x.sent - x.lost + x.strays for x in clients) + c["raw responses received"]
        say(f"  responses counted by Meridian {counted:,.0f}, received by the soak's clients {received:,.0f}")
        if counted != received:
            failures.append("Meridian's response count differs from what the clients received")
    # The audit, read page by page, must hold exactly the acknowledged writes, numbered from 1;
    # so must the journal file, unless it was compacted (past 10,000 lines).
    acked = r.admin.acked + r.zones.acked
    audit = r.audit or []
    seqs_ok = [e.get("seq") for e in audit] == list(range(1, len(audit) + 1))
    journal = os.path.join(WORK, "state", "audit.jsonl")
    journal_lines = [json.loads(l) for l in open(journal)] if os.path.exists(journal) else []
    compacted = any("snapshot" in e for e in journal_lines)
    say(f"journal: writes and reloads acknowledged {acked}; the audit (paged) lists {len(audit) if r.audit is not None else '?'}, "
        f"sequence {'1..' + str(len(audit)) if seqs_ok else 'NOT 1..n'}; audit.jsonl has {len(journal_lines)} lines"
        + (" (compacted)" if compacted else ""))
    if r.audit is None or len(audit) != acked or not seqs_ok or (not compacted and [e.get("seq") for e in journal_lines] != [e["seq"] for e in audit]):
        failures.append("the journal does not hold exactly the acknowledged writes")

    samples = r.samples + ([r.final] if r.final else [])
    warmup = min(60.0, max(10.0, args.seconds / 6))
    if r.samples:
        mb_ = lambda kb: f"{kb / 1024:.1f} MB"
        say(f"meridian resources ({len(r.samples)} samples every {args.sample_every:.0f} s, in {os.path.join(WORK, 'samples.jsonl')}):")
        say(f"  RSS: start {mb_(r.base['rss'])}, {minmax([s['rss'] for s in samples], mb_)} "
            f"(anonymous {minmax([s['anon'] for s in samples], mb_)}; file-backed {minmax([s['file'] for s in samples], mb_)})")
        warm = max([s["rss"] for s in r.samples if s["t"] <= warmup] or [r.base["rss"]])
        later = max([s["rss"] for s in samples if s["t"] > warmup] or [warm])
        grew = later - warm > args.rss_slack * 1024
        after = [s for s in samples if s["t"] > warmup]
        trend = (f"; anonymous {(after[-1]['anon'] - after[0]['anon']) / 1024:+.2f} MB from {after[0]['t']:.0f} s to "
                 f"{after[-1]['t']:.0f} s ({(after[-1]['anon'] - after[0]['anon']) / max(1.0, after[-1]['t'] - after[0]['t']):+.2f} kB/s)"
                 if len(after) > 1 else "")
        say(f"  RSS after the first {warmup:.0f} s: max {(later - warm) / 1024:+.1f} MB over the max before "
            f"({'GREW' if grew else 'flat'}: at most {args.rss_slack:+.0f} MB){trend}")
        if grew:
            failures.append("memory grew")
        say(f"  open descriptors: start {r.base['fds']}, {minmax([s['fds'] for s in samples], str)}"
            + (f"; {r.final['fds']} once the load stopped and idle connections closed (at most {r.base['fds'] + args.fd_slack})" if r.final else ""))
        if r.final and r.final["fds"] > r.base["fds"] + args.fd_slack:
            failures.append("descriptors leaked")
        say(f"  threads: start {r.base['threads']}, {minmax([s['threads'] for s in samples], str)}")
        say(f"  GeoIP files mapped: start {r.base['geo_maps']}, {minmax([s['geo_maps'] for s in samples], str)}"
            + (f"; {r.final['geo_maps']} at the end (at most {args.geo_maps_max})" if r.final else ""))
        if r.final and r.final["geo_maps"] > args.geo_maps_max:
            failures.append("replaced GeoIP databases stay mapped")
    if r.exit:
        say(f"SIGTERM at the end: exit {r.exit[0]} in {r.exit[1] * 1000:.0f} ms")

    expected = {("WARN", LOG_REFUSED_RELOAD): sum(v for k, v in c.items() if k.startswith(("zones reload api bad", "zones sighup bad"))),
                ("WARN", LOG_DROPPED): r.zones.drops,
                ("ERROR", LOG_GEO_REFUSED): r.geo.refused}
    seen = collections.Counter((lvl, f.get("message")) for _, lvl, f in r.log if lvl in ("WARN", "ERROR", "PLAIN"))
    say("warnings and errors in Meridian's log: "
        + ", ".join(f"{lvl} '{msg}' {seen[(lvl, msg)]} (expected {n})" for (lvl, msg), n in expected.items()))
    for (lvl, msg), n in expected.items():
        if seen[(lvl, msg)] != n:
            failures.append(f"{lvl} '{msg}' logged {seen[(lvl, msg)]} times, expected {n}")
    others = [(lvl, f) for _, lvl, f in r.log if lvl in ("WARN", "ERROR", "PLAIN") and (lvl, f.get("message")) not in expected]
    if others:
        failures.append("Meridian logged unexpected warnings or errors")
        say(f"  unexpected ({len(others)}):")
        for lvl, f in others[:10]:
            say(f"    {lvl} {json.dumps(f)[:300]}")

    if ov.wrong:
        failures.append("lost or wrong DNS answers")
        with open(os.path.join(WORK, "wrong.jsonl"), "w") as f:
            f.writelines(json.dumps(w) + "\n" for w in ov.wrong)
        say(f"lost or wrong DNS answers (all in {os.path.join(WORK, 'wrong.jsonl')}); the first ones:")
        for w in ov.wrong[:10]:
            say("  " + json.dumps(w)[:400])
    if ov.errors:
        tally.problems["soak"].extend(ov.errors)
    for category, msgs in sorted(tally.problems.items()):
        if not msgs:
            continue
        failures.append(f"{len(msgs)} {category} problems")
        # One line per kind: numbers and the token mode of a bad request set no kind apart.
        kind = lambda m: re.sub(r"\d+(\.\d+)?| \((token|none|wrong|basic)\)", "", m)[:150]
        kinds = collections.Counter(kind(m) for m in msgs)
        say(f"{category} problems: {len(msgs)} ({len(kinds)} kinds); the first of each kind:")
        for k, n in list(kinds.items())[:15]:
            say(f"  {n:>5} x {next(m for m in msgs if kind(m) == k)[:300]}")
    with open(os.path.join(WORK, "problems.txt"), "w") as f:
        for category, msgs in sorted(tally.problems.items()):
            f.writelines(f"{category}: {m}\n" for m in msgs)
    say("RESULT: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    text = "\n".join(lines)
    print(text, flush=True)
    with open(os.path.join(WORK, "report.txt"), "w") as f:
        f.write(text + "\n")
    return 0 if not failures else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="A rate, a period or a count of 0 leaves that part out.")
    ap.add_argument("--seconds", type=int, default=600, help="length of the soak (default 600; CI: 60)")
    ap.add_argument("--binary", default=ov.MERIDIAN, help="the meridian binary (default target/release/meridian)")
    ap.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    ap.add_argument("--udp-qps", type=float, default=100, help="checked UDP questions per second")
    ap.add_argument("--pool", type=int, default=0,
                    help="draw client networks and NXDOMAIN names from this many of each (default 0: fresh "
                         "ones for every question); with a pool Meridian's caches stop growing within seconds")
    ap.add_argument("--tcp-qps", type=float, default=30, help="checked TCP exchanges per second (some are pipelined bursts)")
    ap.add_argument("--malformed-rate", type=float, default=15, help="malformed packets per second")
    ap.add_argument("--malformed-kinds", help="only these kinds of malformed packet (comma-separated; default all)")
    ap.add_argument("--malformed-over", default="udp,tcp", help="udp, tcp or udp,tcp (default)")
    ap.add_argument("--slow-clients", type=int, default=3, help="threads of slow and stuck TCP clients")
    ap.add_argument("--admin-rate", type=float, default=4, help="admin requests per second (writes, bad writes, reads)")
    ap.add_argument("--reload-every", type=float, default=3, help="mean seconds between zone reloads (API or SIGHUP)")
    ap.add_argument("--geoip-every", type=float, default=8, help="mean seconds between GeoIP replacements")
    ap.add_argument("--kill-every", type=float, default=8, help="mean seconds between probe target kills")
    ap.add_argument("--sample-every", type=float, default=2, help="seconds between resource samples")
    ap.add_argument("--tcp-slack", type=float, default=5, help="seconds past the idle timeout a stuck connection may stay open")
    ap.add_argument("--rss-slack", type=float, default=16, help="MB that RSS may grow after the warm-up")
    ap.add_argument("--fd-slack", type=int, default=8, help="descriptors over the start allowed once the load has stopped")
    ap.add_argument("--geo-maps-max", type=int, default=1, help="GeoIP files Meridian may map once the load has stopped")
    args = ap.parse_args()
    args.binary = os.path.abspath(args.binary)
    if not os.access(args.binary, os.X_OK):
        raise SystemExit(f"{args.binary} is missing: run bench/soak.sh or pass --binary")
    # SIGTERM and SIGHUP unwind like Ctrl-C, so that the finally below stops every process;
    # Ctrl-C is set explicitly, as a shell starting this in the background ignores SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_, s=sig: sys.exit(128 + s))
    try:
        rc = run(args)
    except KeyboardInterrupt:
        rc = 130
    finally:
        ov.stop.set()
        bench.stop_all()
    sys.exit(rc)


if __name__ == "__main__":
    main()
