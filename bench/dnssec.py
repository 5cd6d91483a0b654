#!/usr/bin/env python3
"""DNSSEC benchmark of the release Meridian on loopback (issue 16). Run through
bench/dnssec.sh, which installs dnsperf and builds the release binary.

The benchmark zone (bench/zones/bench.test.toml) is served with `dnssec = {}` and a fresh
ECDSA P-256 key, from Meridian's embedded GeoIP database. It measures, in this order:

1. steered-ecs, DO=0 against DO=1: A queries for the steered name with ECS from --networks
   distinct public client /24s, the two modes interleaved (0 1 0 1 ...) for --rounds rounds
   of --seconds each after a warm-up pass of each; median qps per server core (queries
   answered per CPU second of the server) and the ratio DO=1 / DO=0.
2. failover with --hot hot client networks: each asks once with DO=1, then a region is
   drained through the admin API; reported: the time from the drain's answer until the
   server's pre-signing pass for the new state has finished (seen through
   meridian_dnssec_presign_passes_total), that pass's own duration and answer count (the
   pre-signer holds the questions the general path answered: one per decision, as the fast
   path's cache answers the other clients of a decision), and the signatures the same
   clients then cost on the query path (0: every new RRset was signed ahead).
3. signed NXDOMAIN for random names (compact denial, one signature per new name): qps per
   server core, and signatures per answer (1.0 when every name was new).
4. memory: VmRSS after the steered runs, after the NXDOMAIN run (whose names fill the
   signature cache, 100,000 entries at most, with one NSEC signature each), and after
   --decisions more distinct client /24s each asked once with DO=1. Signed answers are cached
   per decision (name, type, region variant), not per client network, so the last step shows
   what a client network costs the signed path.

dnsperf runs on the first core and the server on the others (taskset) unless --no-pin, as in
bench/bench.py, whose helpers this reuses. Everything started is stopped at the end.
"""
import argparse
import ipaddress
import json
import os
import random
import secrets
import statistics
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402  (the helpers of the side-by-side benchmark)
from bench import ROOT, ZONE, log  # noqa: E402

DO = 0x8000
SEEDS = {"steered": 1601, "hot": 1602, "decisions": 1603, "names": 1604}


def query(qid, name, qtype=1, net=None, dnssec_ok=True):
    """One query with EDNS (payload 1232, DO as asked) and, for `net`, an ECS option."""
    options = b""
    if net is not None:
        addr = net.network_address.packed[: (net.prefixlen + 7) // 8]
        body = struct.pack("!HBB", 1 if net.version == 4 else 2, net.prefixlen, 0) + addr
        options = struct.pack("!HH", 8, len(body)) + body
    opt = b"\0" + struct.pack("!HHIH", 41, 1232, DO if dnssec_ok else 0, len(options)) + options
    header = struct.pack("!HHHHHH", qid & 0xFFFF, 0, 1, 0, 0, 1)
    return header + bench.encode_name(name) + struct.pack("!HH", qtype, 1) + opt


def write_queries(path, queries):
    """dnsperf's binary input (-B): each query after its 2-octet length."""
    count = 0
    with open(path, "wb") as f:
        for q in queries:
            f.write(struct.pack("!H", len(q)) + q)
            count += 1
    return count


def networks(count, seed):
    return [ipaddress.ip_network((v << 8, 24)) for v in bench.distinct_public_24s(count, seed)]


def write_inputs(tmp, args):
    files = {}
    steered = networks(args.networks, SEEDS["steered"])
    for mode, do in (("do0", False), ("do1", True)):
        files[mode] = os.path.join(tmp, f"steered-{mode}.bin")
        write_queries(files[mode], (query(i, f"www.{ZONE}", net=n, dnssec_ok=do)
                                    for i, n in enumerate(steered)))
    files["hot"] = os.path.join(tmp, "hot.bin")
    write_queries(files["hot"], (query(i, f"www.{ZONE}", net=n)
                                 for i, n in enumerate(networks(args.hot, SEEDS["hot"]))))
    files["decisions"] = os.path.join(tmp, "decisions.bin")
    write_queries(files["decisions"], (query(i, f"www.{ZONE}", net=n)
                                       for i, n in enumerate(networks(args.decisions, SEEDS["decisions"]))))
    rng = random.Random(SEEDS["names"])
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
    files["nxdomain"] = os.path.join(tmp, "nxdomain.bin")
    write_queries(files["nxdomain"], (query(i, "".join(rng.choices(alphabet, k=16)) + f".{ZONE}")
                                      for i in range(args.names)))
    log(f"inputs: {args.networks:,} steered /24s, {args.hot:,} hot /24s, "
        f"{args.decisions:,} decision /24s, {args.names:,} random names")
    return files


def signed_zone(tmp, binary):
    """The benchmark zone with DNSSEC on and a key made by `meridian dnssec keygen`."""
    zones = os.path.join(tmp, "zones")
    os.makedirs(zones)
    text = open(os.path.join(ROOT, "bench/zones/bench.test.toml")).read()
    signed = text.replace(f'zone = "{ZONE}."\n', f'zone = "{ZONE}."\ndnssec = {{}}\n', 1)
    if signed == text:
        raise SystemExit("bench/zones/bench.test.toml: no zone line to add dnssec after")
    open(os.path.join(zones, "bench.test.toml"), "w").write(signed)
    state = os.path.join(tmp, "state")
    subprocess.run([binary, "dnssec", "keygen", "--zone", ZONE, "--zones", zones,
                    "--state-dir", state], check=True, capture_output=True)
    return zones, state


class Server:
    def __init__(self, tmp, binary, threads):
        zones, state = signed_zone(tmp, binary)
        self.token = secrets.token_hex(16)
        tokens = os.path.join(tmp, "tokens")
        open(tokens, "w").write(f"bench:{self.token}\n")
        self.port, self.admin = bench.free_port(), bench.free_port()
        logfile = os.path.join(tmp, "meridian.log")
        self.proc = bench.spawn("meridian", [
            binary, "serve", "--zones", zones, "--state-dir", state,
            "--dns-listen", f"127.0.0.1:{self.port}", "--udp-threads", str(threads),
            "--admin-listen", f"127.0.0.1:{self.admin}", "--admin-token-file", tokens],
            logfile, env={**os.environ, "RUST_LOG": "warn"})
        bench.wait_ready("meridian", self.port, self.proc, logfile)
        bench.wait_compiled("meridian", self.admin, self.proc, logfile)

    def metrics(self):
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/metrics", timeout=5).read().decode()
        return {k: float(v) for k, v in (l.rsplit(" ", 1) for l in text.splitlines() if l and l[0] != "#")}

    def post(self, path, body):
        req = urllib.request.Request(f"http://127.0.0.1:{self.admin}/api/v1{path}",
                                     data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        return urllib.request.urlopen(req, timeout=10).status

    def signatures(self):
        return self.metrics()["meridian_dnssec_signatures_total"]

    def once(self, path, rate=None):
        """One pass through `path` (dnsperf -n 1), at `rate` qps if given; dnsperf's stats."""
        extra = ["-n", "1"] + (["-Q", str(rate)] if rate else [])
        return bench.dnsperf(self.port, path, True, 600, extra)[1]


def steered(server, files, args):
    for mode in ("do0", "do1"):
        bench.saturate(server.proc, server.port, files[mode], True, 1)  # warm: signed, cached
    runs = {"do0": [], "do1": []}
    for r in range(args.rounds):
        for mode in ("do0", "do1"):
            s = bench.saturate(server.proc, server.port, files[mode], True, args.seconds)
            runs[mode].append(s["per_core"])
            log(f"steered-ecs {mode} round {r + 1}: {s['qps']:,.0f} qps, {s['cpu']:.2f} cores, "
                f"{s['per_core']:,.0f} qps/core, lost {s['lost']:.0f}")
    do0, do1 = statistics.median(runs["do0"]), statistics.median(runs["do1"])
    return do0, do1


def failover(server, files, args):
    sent = server.once(files["hot"], rate=args.hot_rate)
    passes = server.metrics()["meridian_dnssec_presign_passes_total"]
    started = time.monotonic()
    status = server.post(f"/zones/{ZONE}/regions/eu-west/drain", {"reason": "dnssec benchmark failover"})
    answered = time.monotonic()
    if status != 200:
        raise SystemExit(f"drain answered {status}")
    deadline = answered + 60
    while True:
        m = server.metrics()
        if m["meridian_dnssec_presign_passes_total"] > passes:
            break
        if time.monotonic() > deadline:
            raise SystemExit("no pre-signing pass within 60 s of the drain")
        time.sleep(0.005)
    done = time.monotonic()
    before = server.signatures()
    again = server.once(files["hot"], rate=args.hot_rate)
    on_path = server.signatures() - before
    server.post(f"/zones/{ZONE}/regions/eu-west/undrain", {"reason": "dnssec benchmark failover over"})
    return {
        "hot_sent": sent["completed"],
        "drain_call_ms": (answered - started) * 1000,
        "until_presigned_ms": (done - answered) * 1000,
        "pass_ms": m["meridian_dnssec_presign_last_seconds"] * 1000,
        "pass_answers": m["meridian_dnssec_presign_last_answers"],
        "after_completed": again["completed"],
        "signed_on_query_path": on_path,
    }


def nxdomain(server, files, args):
    before = server.signatures()
    s = bench.saturate(server.proc, server.port, files["nxdomain"], True, args.seconds)
    made = server.signatures() - before
    per_answer = made / s["completed"] if s["completed"] else 0.0
    return s, per_answer


def memory(server, files):
    before = bench.rss_kb(server.proc.pid)
    s = server.once(files["decisions"])
    after = bench.rss_kb(server.proc.pid)
    return before, after, s["completed"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved DO=0/DO=1 rounds (median taken)")
    ap.add_argument("--seconds", type=int, default=8, help="length of each saturation run")
    ap.add_argument("--threads", type=int, help="server threads (default: one per server core)")
    ap.add_argument("--no-pin", action="store_true", help="share every core between dnsperf and the server")
    ap.add_argument("--networks", type=int, default=20_000, help="client /24s of the steered mixes")
    ap.add_argument("--hot", type=int, default=10_000, help="hot client /24s before the failover")
    ap.add_argument("--hot-rate", type=int, default=20_000,
                    help="qps of the hot clients' pass (the pre-signer notes what it can without waiting)")
    ap.add_argument("--names", type=int, default=1_000_000, help="random names of the NXDOMAIN mix")
    ap.add_argument("--decisions", type=int, default=100_000, help="client /24s for the memory check")
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/meridian"))
    args = ap.parse_args()

    cores = os.cpu_count() or 1
    if not args.no_pin and cores >= 2:
        bench.LOAD_PIN[:] = ["taskset", "-c", "0"]
        bench.SERVER_PIN[:] = ["taskset", "-c", f"1-{cores - 1}"]
        server_cores = cores - 1
    else:
        server_cores = cores
    threads = args.threads or server_cores
    tmp = tempfile.mkdtemp(prefix="meridian-dnssec-bench-")
    try:
        files = write_inputs(tmp, args)
        server = Server(tmp, args.binary, threads)
        do0, do1 = steered(server, files, args)
        rss_steered = bench.rss_kb(server.proc.pid)
        f = failover(server, files, args)
        nx, per_answer = nxdomain(server, files, args)
        rss0, rss1, decisions = memory(server, files)
    finally:
        bench.stop_all()
    print(f"\nMeridian DNSSEC, {threads} server thread(s) on {server_cores} core(s), ECDSA P-256")
    print(f"steered-ecs qps per server core (median of {args.rounds}): DO=0 {do0:,.0f}, "
          f"DO=1 {do1:,.0f}, ratio {do1 / do0 if do0 else 0:.2f}")
    print(f"failover with {f['hot_sent']:,.0f} hot client networks: drain call {f['drain_call_ms']:.1f} ms; "
          f"pre-signing pass done {f['until_presigned_ms']:.1f} ms after it answered "
          f"(the pass itself {f['pass_ms']:.1f} ms over {f['pass_answers']:,.0f} answers); "
          f"then {f['signed_on_query_path']:,.0f} signatures on the query path for "
          f"{f['after_completed']:,.0f} answers")
    print(f"signed NXDOMAIN, random names: {nx['qps']:,.0f} qps, {nx['per_core']:,.0f} per server core, "
          f"{per_answer:.2f} signatures per answer")
    print(f"memory: VmRSS {rss_steered / 1024:.1f} MB after the steered runs, {rss0 / 1024:.1f} MB after "
          f"the NXDOMAIN run ({nx['completed']:,.0f} signed answers), {rss1 / 1024:.1f} MB after "
          f"{decisions:,.0f} more client networks with DO=1 (+{(rss1 - rss0) / 1024:.1f} MB)")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        bench.stop_all()
        sys.exit(130)
