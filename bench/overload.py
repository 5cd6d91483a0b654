#!/usr/bin/env python3
"""Overload scenario (issue 6, item 4): Meridian under DNS load at 80 % of its saturation rate
for 60 s while, at the same time, the zone is rewritten and reloaded through the API every
second, a region is drained and undrained through the API every 5 s, and a probe target is
killed (SIGKILL) and restarted every 7 s, so that regions go down and up through their HTTP
probes. A checker queries alongside at a modest rate and checks every response in full;
Meridian's RSS is sampled every second.

Prints a report and exits 1 if any query was lost or wrongly answered, any action failed,
Meridian logged a warning or an error, or its memory grew. Every process it starts is stopped
on exit, Ctrl-C included. Everything runs on loopback: other networks appear only inside DNS
packets (ECS). Run through bench/overload.sh, which installs dnsperf and builds Meridian.
"""
import argparse
import collections
import datetime
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
import struct
import subprocess
import sys
import threading
import time

import bench

ROOT = bench.ROOT
WORK = os.path.join(ROOT, "bench", ".work", "overload")
MERIDIAN = os.path.join(ROOT, "target", "release", "meridian")
ZONE = "overload.test"
# name: (lat, lon, endpoints). Endpoints are loopback addresses, so that each is its own
# probe target: a Python HTTP server bound to that address.
REGIONS = {
    "us-east": (39.04, -77.49, ["127.0.0.11", "127.0.0.12"]),
    "eu-west": (53.35, -6.26, ["127.0.0.21"]),
    "ap-southeast": (1.35, 103.82, ["127.0.0.31"]),
}
REGION_OF = {a: r for r, (_, _, addrs) in REGIONS.items() for a in addrs}
FALLBACK = "127.0.0.99"
STATIC = "192.0.2.80"
STATIC_TTL, TTL, TROUBLE_TTL = 3600, 30, 5
SERIAL0 = 2026112300
# Killing a lone endpoint takes its region down; killing one of us-east's two only drops
# that endpoint from the answers.
KILL_ORDER = ["127.0.0.21", "127.0.0.31", "127.0.0.11", "127.0.0.21", "127.0.0.31", "127.0.0.12"]
DRAIN_ORDER = ["eu-west", "ap-southeast", "us-east"]
# (first at, every, held for) in seconds from the start of the load.
RELOAD_EVERY = (0.5, 1.0)
DRAIN_EVERY = (1.0, 5.0, 2.5)
KILL_EVERY = (3.0, 7.0, 3.0)
CHECK_TIMEOUT = 2.0
# Seconds by which every kind of action has run once (reload, drain, kill, undrain, restart).
WARMUP = 10
# Between Meridian logging an endpoint down and serving without it: the log line comes first.
LOG_MARGIN = 0.1

stop = threading.Event()
print_lock = threading.Lock()
errors = []   # actions that failed
wrong = []    # wrong answers, each with its full detail
t0 = time.time()


def note(msg):
    """One timestamped line of the action log, to stderr and actions.log."""
    now = time.time()
    line = f"{now - t0:+9.3f} s  {datetime.datetime.fromtimestamp(now).strftime('%H:%M:%S.%f')[:-3]}  {msg}"
    with print_lock:
        print(line, file=sys.stderr, flush=True)
        with open(os.path.join(WORK, "actions.log"), "a") as f:
            f.write(line + "\n")


def fail(msg):
    errors.append(msg)
    note("ERROR " + msg)


def wait_until(at):
    """Sleeps until time `at`; False if the run is being stopped."""
    return not stop.wait(max(0.0, at - time.time()))


# ---- DNS packets, by hand ----

def ecs_family(net):
    """The ECS FAMILY of a network (RFC 7871 §6: 1 IPv4, 2 IPv6)."""
    return 1 if net.version == 4 else 2


def build_query(qid, qname, qtype=1, net=None, edns=True):
    """A query without RD; with EDNS (payload 1232) and, for `net` (IPv4 or IPv6), an ECS
    option."""
    opt = b""
    if edns:
        option = b""
        if net is not None:
            addr = net.network_address.packed[: (net.prefixlen + 7) // 8]
            option = struct.pack("!HHHBB", 8, 4 + len(addr), ecs_family(net), net.prefixlen, 0) + addr
        opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(option)) + option
    header = struct.pack("!6H", qid, 0, 1, 0, 0, 1 if edns else 0)
    return header + bench.encode_name(qname) + struct.pack("!HH", qtype, 1) + opt


def read_name(msg, off):
    """(dotted name, offset after it), following compression pointers."""
    labels, end = [], None
    for _ in range(128):
        n = msg[off]
        if n & 0xC0 == 0xC0:
            end = end or off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
        elif n & 0xC0:
            raise ValueError(f"bad label type {n:#x}")
        elif n == 0:
            return b".".join(labels).decode("ascii", "replace"), end or off + 1
        else:
            labels.append(msg[off + 1: off + 1 + n])
            off += 1 + n
    raise ValueError("compression loop")


def parse(msg):
    """ID, flags, question bytes and (answer, authority, additional) records of a message."""
    qid, flags, qd, an, ns, ar = struct.unpack_from("!6H", msg)
    off = 12
    for _ in range(qd):
        off = read_name(msg, off)[1] + 4
    question = msg[12:off]
    sections = []
    for count in (an, ns, ar):
        records = []
        for _ in range(count):
            name, off = read_name(msg, off)
            rtype, rclass, ttl, rdlen = struct.unpack_from("!HHIH", msg, off)
            off += 10
            if off + rdlen > len(msg):
                raise ValueError("record runs past the end")
            records.append((name, rtype, rclass, ttl, off, rdlen))
            off += rdlen
        sections.append(records)
    if off != len(msg):
        raise ValueError(f"{len(msg) - off} bytes after the last record")
    return qid, flags, question, sections


def check_response(query, resp, kind, qname, net):
    """Problems with `resp` to `query` (empty: right) and what it answered. `kind`: static,
    steered, soa (NOERROR with those answers) or nxdomain (NXDOMAIN, no answer, the zone's
    SOA in the authority section: RFC 2308 §3)."""
    got = {"addrs": [], "region": None, "scope": None, "ttl": None, "serial": None}
    try:
        qid, flags, question, (an, ns, ar) = parse(resp)
    except (ValueError, IndexError, struct.error) as e:
        return [f"malformed response: {e}"], got
    p = []
    if qid != struct.unpack_from("!H", query)[0]:
        p.append(f"ID {qid} is not the query's")
    if not flags & 0x8000 or (flags >> 11) & 0xF or flags & 0x0200:
        p.append(f"flags {flags:#06x}: want QR, opcode QUERY, no TC")
    if not flags & 0x0400:
        p.append("AA not set")
    want_rcode = 3 if kind == "nxdomain" else 0
    if flags & 0xF != want_rcode:
        p.append(f"rcode {flags & 0xF}, want {'NXDOMAIN' if want_rcode else 'NOERROR'}")
    if question != query[12:12 + len(question)] or len(question) != len(bench.encode_name(qname)) + 4:
        p.append(f"question not echoed byte for byte: {question!r}")
    ttls = set()
    for name, rtype, rclass, ttl, off, rdlen in an:
        want = 6 if kind == "soa" else 1
        if name.lower() != qname.lower() or rtype != want or rclass != 1:
            p.append(f"unexpected answer record {name} type {rtype} class {rclass}")
        elif kind == "soa":
            rdata_end = off + rdlen
            off = read_name(resp, read_name(resp, off)[1])[1]
            if off + 20 != rdata_end:
                p.append("SOA rdata of the wrong length")
            got["serial"] = struct.unpack_from("!I", resp, off)[0]
        elif rdlen != 4:
            p.append(f"A record with {rdlen} bytes of data")
        else:
            got["addrs"].append(socket.inet_ntoa(resp[off:off + 4]))
            ttls.add(ttl)
    if kind == "nxdomain":
        if an:
            p.append(f"{len(an)} answer records in an NXDOMAIN")
        soa = [r for r in ns if r[1] == 6]
        if len(soa) != 1 or not f".{qname.lower()}".endswith(f".{soa[0][0].lower()}"):
            p.append(f"authority {[(r[0], r[1]) for r in ns]}: want the SOA of the zone holding {qname}")
    # A query with EDNS gets an OPT back; one without gets none (RFC 6891 §6.1.1).
    want_opts = struct.unpack_from("!H", query, 10)[0]
    opts = [r for r in ar if r[1] == 41]
    if len(opts) != want_opts:
        p.append(f"{len(opts)} OPT records, want {want_opts}")
    elif net is not None and opts:
        ecs = None
        off, end = opts[0][4], opts[0][4] + opts[0][5]
        while off + 4 <= end:
            code, length = struct.unpack_from("!HH", resp, off)
            if code == 8:
                ecs = resp[off + 4: off + 4 + length]
            off += 4 + length
        sent = net.network_address.packed[: (net.prefixlen + 7) // 8]
        if ecs is None or len(ecs) < 4:
            p.append("ECS option not echoed")
        else:
            family, source, scope = struct.unpack_from("!HBB", ecs)
            got["scope"] = scope
            if (family, source, ecs[4:]) != (ecs_family(net), net.prefixlen, sent):
                p.append(f"ECS echoed as family {family} {ecs[4:].hex()}/{source}, sent {ecs_family(net)} {sent.hex()}/{net.prefixlen}")
            if scope > source:
                p.append(f"ECS scope /{scope} is longer than the source /{source}")
    if ttls:
        got["ttl"] = min(ttls)
    if len(ttls) > 1:
        p.append(f"TTLs {sorted(ttls)} differ inside one RRset")
    addrs = got["addrs"]
    if kind == "static":
        if addrs != [STATIC] or ttls != {STATIC_TTL} or got["scope"] != 0:
            p.append(f"static answer {addrs} TTL {sorted(ttls)} scope {got['scope']}, want [{STATIC}] TTL {STATIC_TTL} scope 0")
    elif kind == "steered":
        regions = {REGION_OF.get(a) for a in addrs}
        if addrs == [FALLBACK]:
            got["region"] = "fallback"
        elif not addrs or len(set(addrs)) != len(addrs) or len(regions) != 1 or None in regions:
            p.append(f"answer {addrs} is not a non-empty set of one region's endpoints nor the fallback")
        else:
            got["region"] = regions.pop()
        if ttls - {TTL, TROUBLE_TTL}:
            p.append(f"TTL {sorted(ttls)}, want {TTL} or {TROUBLE_TTL} (trouble)")
    elif kind == "soa" and got["serial"] is None:
        p.append("no SOA in the answer")
    return p, got


class Dns:
    """A UDP client that asks one question at a time and checks each answer. The transport is
    `exchange`; bench/soak.py's TCP client replaces it."""

    def __init__(self, port, seed):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.connect(("127.0.0.1", port))
        self.rng = random.Random(seed)
        self.sent = self.lost = self.strays = 0
        self.answers = []  # (sent at, received at, addresses) of every steered answer

    def query(self, kind, name, net=None, edns=True):
        """(the name in random case, the query packet) for a question of `kind`."""
        # Random case: the question must come back exactly as sent (0x20).
        qname = "".join(c.upper() if self.rng.random() < 0.5 else c for c in name)
        return qname, build_query(self.rng.getrandbits(16), qname, 6 if kind == "soa" else 1, net, edns)

    def exchange(self, query):
        """Sends `query`; its answer, or None after CHECK_TIMEOUT."""
        sent = time.time()
        self.sock.send(query)
        for _ in range(64):  # its answer, or strays
            left = sent + CHECK_TIMEOUT - time.time()
            if left <= 0:
                return None
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(65535)
            except socket.timeout:
                return None
            if data[:2] == query[:2]:
                return data
            self.strays += 1  # an answer to an earlier query, already counted lost
        return None

    def judge(self, kind, qname, net, query, resp, sent, received):
        """Checks `resp` (None: lost), recording what is lost or wrong; returns what was
        answered, or None when lost or wrong."""
        if resp is None:
            self.lost += 1
            wrong.append({"what": "lost", "kind": kind, "qname": qname, "client": str(net),
                          "sent": sent - t0, "query": query.hex()})
            return None
        problems, got = check_response(query, resp, kind, qname, net)
        if problems:
            wrong.append({"what": "wrong", "kind": kind, "qname": qname, "client": str(net),
                          "sent": sent - t0, "problems": problems, "query": query.hex(),
                          "response": resp.hex()})
            return None
        if kind == "steered":
            self.answers.append((sent, received, got["addrs"]))
        return got

    def ask(self, kind, name, net=None, edns=True):
        """Asks and checks; returns what was answered, or None when lost or wrong."""
        qname, query = self.query(kind, name, net, edns)
        sent = time.time()
        self.sent += 1
        resp = self.exchange(query)
        return self.judge(kind, qname, net, query, resp, sent, time.time())


# ---- processes ----

def free_http_port():
    """A TCP port free on every target address."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((next(iter(REGION_OF)), 0))
            port = s.getsockname()[1]
        try:
            for addr in REGION_OF:
                with socket.socket() as s:
                    s.bind((addr, port))
            return port
        except OSError:
            continue
    raise SystemExit("no TCP port free on every target address")


def start_target(addr, port):
    """One probe target: its own process, so that SIGKILL really kills it."""
    p = bench.spawn(f"target {addr}", [sys.executable, "-m", "http.server", str(port), "--bind", addr,
                                       "--directory", os.path.join(WORK, "www")],
                    os.path.join(WORK, f"target-{addr}.log"))
    deadline = time.time() + 10
    while time.time() < deadline and p.poll() is None:
        try:
            socket.create_connection((addr, port), timeout=1).close()
            return p
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"probe target {addr}:{port} did not start (exit {p.poll()})")


def zone_text(port, serial, zone=ZONE):
    regions = "".join(f"""
[regions.{name}]
location = {{ lat = {lat}, lon = {lon} }}
endpoints = [{", ".join(f'"{a}"' for a in addrs)}]
""" for name, (lat, lon, addrs) in REGIONS.items())
    return f"""# Written by bench/overload.py (or bench/soak.py), which bumps the serial and the TXT's TTL before every reload.
zone = "{zone}."

records = '''
$TTL {STATIC_TTL}
@        IN SOA  ns1.{zone}. hostmaster.{zone}. {serial} 7200 3600 1209600 300
@        IN NS   ns1
ns1      IN A    192.0.2.53
static   IN A    {STATIC}
reloads  {60 + serial - SERIAL0} IN TXT "reload {serial - SERIAL0}"
'''

[health]
check = "http"
port = {port}
path = "/healthz"
interval = "500ms"
timeout = "250ms"
rise = 2
fall = 2
{regions}
[steered.www]
regions = [{", ".join(f'"{r}"' for r in REGIONS)}]
ttl = {TTL}
trouble-ttl = {TROUBLE_TTL}
fallback = ["{FALLBACK}"]
"""


def install(path, data):
    """Writes `data` (str or bytes) to `path` whole: written aside, then renamed over it. The
    temporary name does not end in .toml, so no zone load can see it half written."""
    with open(path + ".tmp", "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.replace(path + ".tmp", path)


def write_zone(port, serial, zone=ZONE):
    install(os.path.join(WORK, "zones", f"{zone}.toml"), zone_text(port, serial, zone))


def start_meridian(token_file, binary=None, extra=()):
    """Starts `binary` (default MERIDIAN) on loopback port 0 in WORK, with `extra` arguments;
    returns the process and its DNS and admin ports."""
    logfile = os.path.join(WORK, "meridian.log")
    p = bench.spawn("meridian", [binary or MERIDIAN, "serve", "--zones", "zones", "--dns-listen", "127.0.0.1:0",
                                 "--admin-listen", "127.0.0.1:0", "--state-dir", "state",
                                 "--admin-token-file", token_file, "--log-format", "json", *extra],
                    logfile, cwd=WORK)
    addrs = {}
    deadline = time.time() + 30
    while len(addrs) < 2:
        if p.poll() is not None or time.time() > deadline:
            raise SystemExit(f"meridian did not start; see {logfile}:\n" + open(logfile).read()[-3000:])
        time.sleep(0.1)
        for line in open(logfile):
            m = re.search(r'"message":"listening","(dns|admin)":"127\.0\.0\.1:(\d+)"', line)
            if m:
                addrs[m.group(1)] = int(m.group(2))
    return p, addrs["dns"], addrs["admin"]


class Api:
    """The admin API over plain http.client (no proxy settings apply: loopback only)."""

    def __init__(self, port, token):
        self.port, self.token = port, token

    def request(self, method, path, data=None, headers=None):
        """One request as given (raw body bytes, exact headers: no token added); returns the
        status, the response headers (lower-case names) and the body text."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=data, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read().decode(errors="replace")
        finally:
            conn.close()

    def call(self, method, path, body=None):
        """A call with the token and, for `body`, a JSON body: (status, body text)."""
        headers = {"Authorization": f"Bearer {self.token}"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, _, text = self.request(method, path, data, headers)
        return status, text

    def metrics(self):
        """Every sample of /metrics: {'name{labels}': value}."""
        status, text = self.call("GET", "/metrics")
        if status != 200:
            raise RuntimeError(f"/metrics answered {status}")
        return {k: float(v) for k, v in (l.rsplit(" ", 1) for l in text.splitlines() if l and l[0] != "#")}

    def all_up(self):
        status, text = self.call("GET", "/api/v1/regions")
        return status == 200 and all(r["state"] == "up" and not r["drained"] and all(e["up"] for e in r["endpoints"])
                                     for r in json.loads(text))


# ---- the load and what runs alongside ----

def write_dnsperf_input(networks, seed):
    """A quarter each: the static name, the steered name without ECS, the steered name with
    ECS from `networks` distinct /24s over the IPv4 space, NXDOMAIN (dnsperf -B format)."""
    rng = random.Random(seed)
    nets = set()
    while len(nets) < networks:
        nets.add(bench.random_public_24(rng))
    path = os.path.join(WORK, "queries.bin")
    with open(path, "wb") as f:
        for i, net in enumerate(sorted(nets)):
            for q in (build_query(i, f"static.{ZONE}", edns=False), build_query(i, f"www.{ZONE}"),
                      build_query(i, f"www.{ZONE}", net=net), build_query(i, f"nothere.{ZONE}")):
                f.write(struct.pack("!H", len(q)) + q)
    return path, 4 * networks


def dnsperf_start(port, path, queries, seconds, name, rate=None):
    """Starts dnsperf, bounded by -l and by -n passes over the input. Saturation is measured
    as bench/bench.py does. At a fixed rate it may keep more queries outstanding, so that slow
    moments of the shared machine do not hold the sender back below the rate, over more
    sockets, so that the answers to one socket's share fit its default receive buffer while
    dnsperf waits for a core (else dnsperf's own socket drops them: lost, but not by Meridian)."""
    passes = int((rate or 2_000_000) * seconds / queries) + 2
    clients, outstanding = (16, 1024) if rate else (4, 256)
    cmd = ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", path, "-B", "-l", str(seconds),
           "-n", str(passes), "-c", str(clients), "-q", str(outstanding)] + (["-Q", str(int(rate))] if rate else [])
    logfile = os.path.join(WORK, f"dnsperf-{name}.log")
    return bench.spawn(f"dnsperf {name}", cmd, logfile), logfile


def dnsperf_result(p, logfile, seconds):
    """Waits for dnsperf and parses its summary."""
    p.wait(timeout=seconds + 60)
    out = open(logfile).read()
    num = lambda label: float((re.search(label + r":\s+([\d.]+)", out) or [0, 0])[1])
    lat = re.search(r"Average Latency \(s\):\s+([\d.]+) \(min ([\d.]+), max ([\d.]+)\)", out)
    codes = re.search(r"Response codes:\s+(.*)", out)
    return {"rc": p.returncode, "sent": num("Queries sent"), "completed": num("Queries completed"),
            "lost": num("Queries lost"), "qps": num("Queries per second"),
            "codes": {c: int(n) for c, n in re.findall(r"([A-Z]+) (\d+)", codes[1])} if codes else {},
            "lat_avg": float(lat[1]) if lat else None, "lat_max": float(lat[3]) if lat else None,
            "log": logfile}


def udp_drops(pid):
    """Datagrams the kernel dropped for a full receive buffer, over the UDP sockets of `pid`
    (None once it has exited)."""
    try:
        links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return None
    inodes = {l[8:-1] for l in links if l.startswith("socket:[")}
    with open("/proc/net/udp") as f:
        return sum(int(r[-1]) for r in (l.split() for l in list(f)[1:]) if r[9] in inodes)


def rcvbuf_errors():
    """The machine's count of UDP datagrams dropped for a full receive buffer."""
    rows = [l.split() for l in open("/proc/net/snmp") if l.startswith("Udp:")]
    return int(rows[1][rows[0].index("RcvbufErrors")])


def reloader(api, dns, port, seconds, out):
    first, every = RELOAD_EVERY
    for k in range(int((seconds - first) / every) + 1):
        if not wait_until(t0 + first + k * every):
            return
        serial = SERIAL0 + k + 1
        write_zone(port, serial)
        started = time.time()
        status, body = api.call("POST", "/api/v1/reload", {"reason": f"overload reload {k + 1}"})
        took = time.time() - started
        out.append((status, took))
        if status != 200:
            fail(f"reload {k + 1} (serial {serial}) answered {status}: {body}")
            continue
        # The API answers once the new zones serve: the SOA must already carry the new serial.
        got = dns.ask("soa", ZONE)
        served = got and got["serial"]
        if got and served != serial:
            wrong.append({"what": "wrong", "kind": "soa", "problems": [f"serial {served} served after the reload to {serial}"]})
        note(f"reload {k + 1}: serial {serial}: HTTP {status} in {took * 1000:.0f} ms; SOA serves {served}")


def drainer(api, seconds, out):
    first, every, held = DRAIN_EVERY
    for k in range(int((seconds - first - held) / every) + 1):
        region = DRAIN_ORDER[k % len(DRAIN_ORDER)]
        path = f"/api/v1/zones/{ZONE}/regions/{region}"
        if not wait_until(t0 + first + k * every):
            return
        status, body = api.call("POST", path + "/drain", {"reason": "overload drill"})
        drained = time.time()
        out["drain"].append(status)
        note(f"drain {region}: HTTP {status}")
        if status != 200:
            fail(f"drain {region} answered {status}: {body}")
        if not wait_until(t0 + first + k * every + held):
            return
        undrain_sent = time.time()
        status, body = api.call("POST", path + "/undrain", {"reason": "overload drill over"})
        out["undrain"].append(status)
        note(f"undrain {region}: HTTP {status}")
        if status != 200:
            fail(f"undrain {region} answered {status}: {body}")
        if out["drain"][-1] == 200:
            # The drain answers once DNS follows it: nothing in between may name the region.
            out["windows"].append((region, drained, undrain_sent))


def killer(targets, port, seconds, out):
    first, every, held = KILL_EVERY
    for k in range(int((seconds - first - held) / every) + 1):
        addr = KILL_ORDER[k % len(KILL_ORDER)]
        if not wait_until(t0 + first + k * every):
            return
        targets[addr].kill()
        targets[addr].wait()
        killed = time.time()
        note(f"kill -9 probe target {addr} ({REGION_OF[addr]})")
        if not wait_until(t0 + first + k * every + held):
            return
        targets[addr] = start_target(addr, port)
        out.append((addr, killed, time.time()))
        note(f"restarted probe target {addr} ({REGION_OF[addr]})")


def checker(dns, seconds, qps, counts):
    # 3 in 4 the steered name, 1 in 4 the static one, each client network in turn.
    plan = [(kind, net) for net in bench.SAMPLE for kind in ("steered", "steered", "steered", "static")]
    end = t0 + seconds
    for i in range(int(seconds * qps)):
        if not wait_until(t0 + i / qps) or time.time() >= end:
            return
        kind, net = plan[i % len(plan)]
        got = dns.ask(kind, f"{kind if kind == 'static' else 'www'}.{ZONE}", ipaddress.ip_network(net))
        if got and kind == "steered":
            counts[(net, got["region"])] += 1


def rss_sampler(pid, seconds, samples):
    for i in range(int(seconds) + 1):
        if not wait_until(t0 + i):
            return
        samples.append((time.time() - t0, bench.rss_kb(pid)))


def guarded(name, fn, *args):
    """A thread whose crash counts as an error rather than passing unseen."""
    def run():
        try:
            fn(*args)
        except Exception as e:
            fail(f"{name} stopped: {type(e).__name__}: {e}")
    t = threading.Thread(target=run, name=name, daemon=True)
    t.start()
    return t


# ---- after the load ----

def meridian_log():
    """(epoch seconds, level, fields) of each log line; a line that is not JSON (a panic) is
    returned with level PLAIN."""
    out = []
    for line in open(os.path.join(WORK, "meridian.log")):
        try:
            j = json.loads(line)
            at = datetime.datetime.fromisoformat(j["timestamp"].replace("Z", "+00:00")).timestamp()
            out.append((at, j["level"], j["fields"]))
        except (ValueError, KeyError):
            out.append((None, "PLAIN", {"message": line.rstrip()}))
    return out


def windows_check(answers, drains, log, kills, forced=()):
    """Answers that named a drained region, an endpoint forced down, or an endpoint Meridian
    had logged down and that was not forced up; and the kills and restarts the probes did not
    notice. `forced`: (endpoint, up, from, to) of each force, from the moment DNS follows it
    to the unforce for a force down, from the force sent to the unforce answered for a force
    up (an endpoint forced up answers whatever its probes say)."""
    found = []
    down = collections.defaultdict(list)  # endpoint: [(down at, up at)]
    for at, _, f in log:
        if f.get("message") == "endpoint state changed":
            if f["to"] == "down":
                down[f["endpoint"]].append([at + LOG_MARGIN, float("inf")])
            elif down[f["endpoint"]]:
                down[f["endpoint"]][-1][1] = at
    for sent, received, addrs in answers:
        for region, start, end in drains:
            if start <= sent and received <= end and set(addrs) & set(REGIONS[region][2]):
                found.append(f"answer {addrs} at {sent - t0:+.3f} s names {region}, drained from {start - t0:+.3f} s to {end - t0:+.3f} s")
        for a, up, start, end in forced:
            if not up and a in addrs and start <= sent and received <= end:
                found.append(f"answer {addrs} at {sent - t0:+.3f} s names {a}, forced down from {start - t0:+.3f} s to {end - t0:+.3f} s")
        for a in addrs:
            if any(f == a and up and start <= received and sent <= end for f, up, start, end in forced):
                continue
            for start, end in down.get(a, ()):
                if start <= sent and received <= end:
                    found.append(f"answer {addrs} at {sent - t0:+.3f} s names {a}, logged down from {start - LOG_MARGIN - t0:+.3f} s to {end - t0:+.3f} s")
    unseen = []
    for addr, killed, restarted in kills:
        ups = [u for d, u in down.get(addr, ()) if killed <= d - LOG_MARGIN <= restarted + 1]
        if not ups:
            unseen.append(f"probes never saw {addr} down after its kill at {killed - t0:+.3f} s")
        elif ups[0] == float("inf"):
            unseen.append(f"probes never saw {addr} up again after its restart at {restarted - t0:+.3f} s")
    return found, unseen


def metric_sum(m, name, label):
    out = collections.Counter()
    for k, v in m.items():
        if k.startswith(name + "{"):
            out[re.search(label + r'="([^"]*)"', k)[1]] += v
    return out


def delta(after, before):
    return ", ".join(f"{k} +{after[k] - before.get(k, 0):,.0f}" for k in sorted(after)) or "none"


def run(args):
    global t0
    shutil.rmtree(WORK, ignore_errors=True)
    for d in ("zones", "state", "www"):
        os.makedirs(os.path.join(WORK, d))
    with open(os.path.join(WORK, "www", "healthz"), "w") as f:
        f.write("ok\n")
    token = secrets.token_hex(16)
    token_file = os.path.join(WORK, "tokens")
    with open(os.open(token_file, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(f"overload:{token}\n")
    port = free_http_port()
    write_zone(port, SERIAL0)
    targets = {a: start_target(a, port) for a in REGION_OF}
    meridian, dns_port, admin_port = start_meridian(token_file)
    api = Api(admin_port, token)
    note(f"meridian pid {meridian.pid}: DNS 127.0.0.1:{dns_port}, admin 127.0.0.1:{admin_port}; "
         f"probe targets {', '.join(REGION_OF)} on port {port}; work dir {WORK}")
    deadline = time.time() + 20
    while not api.all_up():
        if time.time() > deadline:
            raise SystemExit("the regions did not all come up: " + api.call("GET", "/api/v1/regions")[1])
        time.sleep(0.2)
    probe = Dns(dns_port, 1)
    for net, region in bench.SAMPLE.items():
        got = probe.ask("steered", f"www.{ZONE}", ipaddress.ip_network(net))
        if not got or got["region"] != region:
            raise SystemExit(f"before the load: {net} got {got}, want {region}\n{json.dumps(wrong, indent=1)}")
    note(f"every region up; {len(bench.SAMPLE)} client networks steered as expected")

    path, queries = write_dnsperf_input(args.ecs_networks, 7871)
    sat = dnsperf_result(*dnsperf_start(dns_port, path, queries, args.saturation_seconds, "saturation"),
                         args.saturation_seconds)
    if sat["qps"] <= 0:
        raise SystemExit(f"saturation run failed; see {sat['log']}")
    rate = int(sat["qps"] * args.load)
    note(f"saturation {sat['qps']:,.0f} qps (lost {sat['lost']:.0f}); load at {args.load:.0%}: {rate:,} qps for {args.seconds} s")

    r = argparse.Namespace(args=args, sat=sat, rate=rate, reloads=[], kills=[], rss=[],
                           drains={"drain": [], "undrain": [], "windows": []}, counts=collections.Counter(),
                           checker=Dns(dns_port, 2), soa=Dns(dns_port, 3), metrics_after=None)
    r.metrics_before = api.metrics()
    cpu_before = bench.cpu_seconds(meridian.pid)
    drops_before = (udp_drops(meridian.pid), rcvbuf_errors())
    r.loadavg = [open("/proc/loadavg").read().split()[0]]
    t0 = time.time()
    load, logfile = dnsperf_start(dns_port, path, queries, args.seconds, "load", rate)
    threads = [guarded("reloader", reloader, api, r.soa, port, args.seconds, r.reloads),
               guarded("drainer", drainer, api, args.seconds, r.drains),
               guarded("killer", killer, targets, port, args.seconds, r.kills),
               guarded("checker", checker, r.checker, args.seconds, args.checker_qps, r.counts),
               guarded("rss", rss_sampler, meridian.pid, args.seconds, r.rss)]
    # dnsperf's sockets close with it: their drops are read until then.
    client_drops = 0
    while load.poll() is None and time.time() < t0 + args.seconds + 60:
        client_drops = max(client_drops, udp_drops(load.pid) or 0)
        time.sleep(0.2)
    r.load = dnsperf_result(load, logfile, args.seconds)
    for t in threads:
        t.join(10)
    r.cpu = (bench.cpu_seconds(meridian.pid) - cpu_before) / (time.time() - t0)
    r.drops = (udp_drops(meridian.pid) - drops_before[0], client_drops, rcvbuf_errors() - drops_before[1])
    r.loadavg.append(open("/proc/loadavg").read().split()[0])
    if meridian.poll() is not None:
        fail(f"meridian exited with {meridian.returncode} during the load")
    else:
        deadline = time.time() + 15
        while not api.all_up() and time.time() < deadline:
            time.sleep(0.2)
        if not api.all_up():
            fail("not every region and endpoint is up again 15 s after the load")
        r.metrics_after = api.metrics()
    r.log = meridian_log()
    found, unseen = windows_check(r.checker.answers, r.drains["windows"], r.log, r.kills)
    wrong.extend({"what": "wrong", "kind": "steered", "problems": [f]} for f in found)
    errors.extend(unseen)
    with open(os.path.join(WORK, "rss.txt"), "w") as f:
        f.writelines(f"{t:.1f} {kb}\n" for t, kb in r.rss)
    return report(r)


def report(r):
    args, load = r.args, r.load
    lines = []
    say = lines.append
    failures = []
    say(f"Meridian overload scenario: {args.seconds} s at {args.load:.0%} of saturation; meanwhile a zone "
        f"reload every {RELOAD_EVERY[1]:.0f} s, a drain/undrain every {DRAIN_EVERY[1]:.0f} s, "
        f"a probe target killed every {KILL_EVERY[1]:.0f} s")
    head = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True, text=True).stdout.strip()
    say(f"meridian built from {head or 'an unknown tree'}; machine: {os.cpu_count()} cores, shared (other builds may run: "
        f"figures are noisy); load average {r.loadavg[0]} before the load, {r.loadavg[1]} after")
    say(f"saturation: {r.sat['qps']:,.0f} qps (dnsperf {args.saturation_seconds} s, 4 clients, 256 outstanding, lost {r.sat['lost']:.0f})")
    done = load["completed"]
    codes = ", ".join(f"{c} {n:,} ({n / done:.2%})" for c, n in load["codes"].items()) if done else "none"
    say(f"load: target {r.rate:,} qps for {args.seconds} s (16 clients, up to 1024 outstanding): sent {load['sent']:,.0f}, completed {done:,.0f}, "
        f"lost {load['lost']:,.0f}; achieved {load['qps']:,.0f} qps")
    if load["qps"] < 0.95 * r.rate:
        say(f"  NOTE: dnsperf reached only {load['qps'] / r.rate:.0%} of the target rate: the shared machine was busy")
    say(f"  response codes: {codes} (the mix: 25 % NXDOMAIN)")
    if load["lat_avg"] is not None:
        say(f"  latency: avg {load['lat_avg'] * 1000:.3f} ms, max {load['lat_max'] * 1000:.3f} ms")
    say(f"  UDP datagrams the kernel dropped for a full receive buffer: Meridian's sockets {r.drops[0]:,}, "
        f"dnsperf's {r.drops[1]:,} (read until it exited), the whole machine {r.drops[2]:,}")
    nx = load["codes"].get("NXDOMAIN", 0) / done if done else 0
    if load["rc"] != 0 or load["lost"] or not done or done != load["sent"] \
            or set(load["codes"]) - {"NOERROR", "NXDOMAIN"} or abs(nx - 0.25) > 0.005:
        failures.append("dnsperf: lost queries, an error, or response codes off the mix")
    took = [t for _, t in r.reloads]
    say(f"reloads: {len(r.reloads)}, answered 200: {sum(1 for s, _ in r.reloads if s == 200)}"
        + (f" (in {sum(took) / len(took) * 1000:.0f} ms avg, {max(took) * 1000:.0f} ms max)" if took else ""))
    say(f"drains: {len(r.drains['drain'])} (200: {r.drains['drain'].count(200)}), "
        f"undrains: {len(r.drains['undrain'])} (200: {r.drains['undrain'].count(200)})")
    say(f"probe target kills: {len(r.kills)}, restarts: {len(r.kills)}")
    dns = r.checker
    say(f"checker: {dns.sent:,} queries at {args.checker_qps} qps (steered with ECS from {len(bench.SAMPLE)} "
        f"networks, static), then checked against drain and probe-down windows: {dns.lost} lost, "
        f"{sum(1 for w in wrong if w['what'] == 'wrong')} wrong, {dns.strays} stray answers")
    for net in bench.SAMPLE:
        by = ", ".join(f"{reg} {n:,}" for (c, reg), n in sorted(r.counts.items(), key=lambda x: -x[1]) if c == net)
        say(f"  {net:>16} (nearest {bench.SAMPLE[net]}): {by}")
    if r.rss:
        kb = [k for _, k in r.rss]
        # The first second of actions adds a few MB once (a second serving state and its caches
        # alive beside the old one, the admin API's threads); growth past that is what counts.
        warm = max(k for t, k in r.rss if t <= WARMUP)
        later = max((k for t, k in r.rss if t > WARMUP), default=warm)
        flat = later - warm <= args.rss_slack * 1024
        say(f"meridian RSS over the load ({len(kb)} samples, 1/s, in {os.path.join(WORK, 'rss.txt')}): first {kb[0] / 1024:.1f} MB, "
            f"min {min(kb) / 1024:.1f}, max {max(kb) / 1024:.1f}, last {kb[-1] / 1024:.1f} MB; "
            f"max after the first {WARMUP} s {(later - warm) / 1024:+.1f} MB over the max before "
            f"({'flat' if flat else 'GREW'}: at most {args.rss_slack:+.0f} MB); CPU {r.cpu:.2f} cores")
        if not flat:
            failures.append("memory grew")
    mb, ma = r.metrics_before, r.metrics_after
    if ma:
        say(f"metrics over the load: responses {delta(metric_sum(ma, 'meridian_dns_queries_total', 'rcode'), metric_sum(mb, 'meridian_dns_queries_total', 'rcode'))}; "
            f"reloads {delta(metric_sum(ma, 'meridian_reloads_total', 'result'), metric_sum(mb, 'meridian_reloads_total', 'result'))}; "
            f"probes {delta(metric_sum(ma, 'meridian_probes_total', 'result'), metric_sum(mb, 'meridian_probes_total', 'result'))}")
        if metric_sum(ma, "meridian_reloads_total", "result")["failed"]:
            failures.append("Meridian counted failed reloads")
        counted = sum(metric_sum(ma, "meridian_dns_queries_total", "rcode").values()) \
            - sum(metric_sum(mb, "meridian_dns_queries_total", "rcode").values())
        received = done + sum(c.sent - c.lost for c in (r.checker, r.soa))
        say(f"  responses counted by Meridian {counted:,.0f}, received by dnsperf and the checkers {received:,.0f}")
        if counted != received:
            failures.append("Meridian's response count differs from what the clients received")
    in_load = [(at, f) for at, lvl, f in r.log if at and at >= t0]
    regions = [(at, f) for at, f in in_load if f.get("message") == "region state changed"]
    endpoints = sum(1 for _, f in in_load if f.get("message") == "endpoint state changed")
    say(f"region state changes Meridian logged during the load: {len(regions)} (and {endpoints} endpoint state changes)")
    for at, f in regions:
        say(f"  {at - t0:+8.3f} s  {f['region']:<13} {f['from']:>4} -> {f['to']:<4}  {f['reason']}")
    bad_log = [(lvl, f["message"]) for _, lvl, f in r.log if lvl in ("WARN", "ERROR", "PLAIN")]
    say(f"warnings and errors in Meridian's log: {len(bad_log)}")
    for lvl, msg in bad_log[:10]:
        say(f"  {lvl} {msg}")
    if bad_log:
        failures.append("Meridian logged warnings or errors")
    if wrong:
        failures.append("lost or wrong checker answers")
        with open(os.path.join(WORK, "wrong.jsonl"), "w") as f:
            f.writelines(json.dumps(w) + "\n" for w in wrong)
        say(f"lost or wrong answers (all in {os.path.join(WORK, 'wrong.jsonl')}); the first ones:")
        for w in wrong[:10]:
            say("  " + json.dumps(w))
    if errors:
        failures.append("actions failed")
        say("errors:")
        for e in errors:
            say("  " + e)
    say("RESULT: " + ("PASS" if not failures else "FAIL: " + "; ".join(failures)))
    text = "\n".join(lines)
    print(text, flush=True)
    with open(os.path.join(WORK, "report.txt"), "w") as f:
        f.write(text + "\n")
    return 0 if not failures else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=60, help="length of the load")
    ap.add_argument("--load", type=float, default=0.8, help="share of the saturation rate")
    ap.add_argument("--saturation-seconds", type=int, default=10)
    ap.add_argument("--ecs-networks", type=int, default=20000, help="distinct client /24s in the load")
    ap.add_argument("--checker-qps", type=int, default=200)
    ap.add_argument("--rss-slack", type=float, default=2, help="MB that RSS may grow after the warm-up")
    args = ap.parse_args()
    if not os.path.exists(MERIDIAN):
        raise SystemExit(f"{MERIDIAN} is missing: run bench/overload.sh")
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
        stop.set()
        bench.stop_all()
    sys.exit(rc)


if __name__ == "__main__":
    main()
