#!/usr/bin/env python3
"""Side-by-side DNS benchmark: Meridian, gdnsd (plugin_geoip, auto_dc_coords) and PowerDNS
(LUA pickclosest) serve the same zone (bench/zones/bench.test.toml) from the same GeoIP2-City
database on loopback; dnsperf loads each in turn, interleaved (A B C A B C ...), so that drift
of the machine hits all alike. Run through bench/run.sh, which installs and builds everything.

Per query mix and server it reports median qps, server CPU (cores), qps per server core,
lost queries, p50/p99 latency at a fixed rate (half of Meridian's saturation rate), and the
qps-per-core ratio to gdnsd. Every server is checked for the right answers first, and every
server it started is stopped at the end.

dnsperf and the servers run on separate cores (taskset): dnsperf on the first, the servers
on the rest, each server with one thread per core of its own. On a 2-core machine that is one
core each, so raw qps is capped by the load generator; qps per server core is the comparable
figure, and neither side's scheduling delays the other's (--no-pin shares every core).
"""
import argparse
import ipaddress
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
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORK = os.path.join(ROOT, "bench", ".work")
GEODB = os.path.join(WORK, "bench-city.mmdb")
ZONE = "bench.test"
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

children = []
# taskset prefixes for the servers and for dnsperf; empty when not pinning.
SERVER_PIN = []
LOAD_PIN = []


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


def start_meridian(tmp, threads, binary=None, name="meridian"):
    port = free_port()
    logfile = os.path.join(tmp, f"{name}.log")
    p = spawn(name, [binary or os.path.join(ROOT, "target/release/meridian"), "serve",
                           "--zones", os.path.join(ROOT, "bench/zones"),
                           "--dns-listen", f"127.0.0.1:{port}", "--udp-threads", str(threads),
                           "--admin-listen", "127.0.0.1:0",
                           "--state-dir", os.path.join(tmp, f"{name}-state"), "--geoip", GEODB],
              logfile, env={**os.environ, "RUST_LOG": "warn"})
    wait_ready(name, port, p, logfile)
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


def check_answers(servers):
    bad = []
    for name, (_, port) in servers.items():
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


def encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        out += bytes([len(label)]) + label.encode()
    return out + b"\0"


def ecs_query(qid, name, net):
    """A query for `name` A with EDNS and an ECS option for IPv4 network `net`."""
    prefix = net.prefixlen
    addr = net.network_address.packed[: (prefix + 7) // 8]
    option = struct.pack("!HBB", 1, prefix, 0) + addr
    opt_rdata = struct.pack("!HH", 8, len(option)) + option
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, 0, len(opt_rdata)) + opt_rdata
    header = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, 1)
    return header + encode_name(name) + struct.pack("!HH", 1, 1) + opt


def random_public_24(rng):
    while True:
        n = ipaddress.ip_network((rng.getrandbits(24) << 8, 24))
        if not any(n.subnet_of(s) for s in SPECIAL):
            return n


def write_inputs(tmp, ecs_count, seed):
    files = {}
    for mix, line in (("static", f"static.{ZONE} A"), ("steered", f"www.{ZONE} A"),
                      ("nxdomain", f"nothere.{ZONE} A")):
        path = os.path.join(tmp, f"{mix}.txt")
        open(path, "w").write(line + "\n")
        files[mix] = (path, False)
    rng = random.Random(seed)
    nets = set()
    while len(nets) < ecs_count:
        nets.add(random_public_24(rng))
    path = os.path.join(tmp, "steered-ecs.bin")
    with open(path, "wb") as f:
        for i, net in enumerate(sorted(nets)):
            q = ecs_query(i & 0xFFFF, f"www.{ZONE}", net)
            f.write(struct.pack("!H", len(q)) + q)
    files["steered-ecs"] = (path, True)
    log(f"inputs: steered-ecs has {len(nets)} distinct client /24s from the whole IPv4 space")
    return files


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
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
                 "lost": num("Queries lost"), "qps": num("Queries per second")}


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per mix (median taken)")
    ap.add_argument("--seconds", type=int, default=8, help="length of each saturation run")
    ap.add_argument("--latency-seconds", type=int, default=5)
    ap.add_argument("--threads", type=int, help="server threads (default: one per server core)")
    ap.add_argument("--no-pin", action="store_true",
                    help="let dnsperf and the servers share every core instead of pinning "
                         "dnsperf to the first core and the servers to the others")
    ap.add_argument("--ecs-networks", type=int, default=20000)
    ap.add_argument("--servers", default="meridian,gdnsd,pdns")
    ap.add_argument("--mixes", default="static,steered,steered-ecs,nxdomain")
    ap.add_argument("--baseline", metavar="BINARY",
                    help="also run this Meridian binary (another commit's build) as server "
                         "'baseline', interleaved with the rest: a before/after comparison")
    args = ap.parse_args()
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
    if not os.path.exists(GEODB):
        raise SystemExit(f"{GEODB} is missing: run bench/run.sh")
    tmp = tempfile.mkdtemp(prefix="meridian-bench-")
    starters = {"meridian": start_meridian, "gdnsd": start_gdnsd, "pdns": start_pdns}
    names = args.servers.split(",")
    if args.baseline:
        starters["baseline"] = lambda tmp, threads: start_meridian(
            tmp, threads, os.path.abspath(args.baseline), "baseline")
        names.insert(names.index("meridian") + 1 if "meridian" in names else 0, "baseline")
    try:
        servers = {}
        for name in names:
            servers[name] = starters[name](tmp, args.threads)
            log(f"{name}: serving on 127.0.0.1:{servers[name][1]}")
        check_answers(servers)
        files = write_inputs(tmp, args.ecs_networks, 7871)
        results = {}
        for mix in args.mixes.split(","):
            path, binary = files[mix]
            for rnd in range(args.rounds):
                for name, (proc, port) in servers.items():
                    s = saturate(proc, port, path, binary, args.seconds)
                    results.setdefault((mix, name), []).append(s)
                    log(f"{mix:12} round {rnd + 1} {name:9} {s['qps']:>10.0f} qps  cpu {s['cpu']:.2f}  "
                        f"{s['per_core']:>10.0f} qps/core  lost {s['lost']:.0f}")
        rows = []
        for mix in args.mixes.split(","):
            path, binary = files[mix]
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
        rss = {name: rss_kb(p.pid) for name, (p, _) in servers.items()}
        print_table(rows, rss, args)
    finally:
        stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


def print_table(rows, rss, args):
    per_core = {(m, n): pc for m, n, _, _, pc, *_ in rows}
    print(f"\n{args.rounds} interleaved rounds of {args.seconds} s per mix, server threads {args.threads}, {args.pinning}; "
          f"latency at a fixed rate of half Meridian's saturation qps for {args.latency_seconds} s\n")
    print("| mix | server | qps (median) | server CPU (cores) | qps per core | vs gdnsd | lost at saturation | p50 ms | p99 ms | lost at fixed rate |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for mix, name, qps, cpu, pc, lost, sent, rate, p50, p99, llost in rows:
        ratio = pc / per_core[(mix, "gdnsd")] if per_core.get((mix, "gdnsd")) else math.nan
        fmt = lambda v: "n/a" if v is None else f"{v:.3f}"
        print(f"| {mix} | {name} | {qps:,.0f} | {cpu:.2f} | {pc:,.0f} | {ratio:.2f} | "
              f"{lost:.0f} of {sent:,.0f} | {fmt(p50)} | {fmt(p99)} | {llost:.0f} |")
    print("\nresident memory after the runs: " + ", ".join(f"{n} {kb / 1024:.1f} MB" for n, kb in rss.items()))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
