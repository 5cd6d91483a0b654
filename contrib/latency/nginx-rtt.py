#!/usr/bin/env python3
"""Ship per-client-network RTT aggregates from an nginx access log to Meridian.

nginx knows each connection's smoothed TCP RTT ($tcpinfo_rtt, in microseconds). Log it with
the client address and the time:

    log_format meridian_rtt '$remote_addr $tcpinfo_rtt $msec';
    access_log /var/log/nginx/meridian-rtt.log meridian_rtt;

and run this script on the frontend of one region:

    nginx-rtt.py --region eu-west --server https://meridian-admin:8053 \
        --token-file /etc/meridian/feed-token --log /var/log/nginx/meridian-rtt.log

Every --interval seconds it posts, per client /24 (IPv4) or /48 (IPv6), one line: the
geometric mean of the RTTs seen (robust to a few slow connections, and what Meridian
aggregates) with the number of connections as its count. Only the Python standard library is
used. The token file holds the feed token of this region's frontends (the secret of a
`name:secret` line of Meridian's [latency] token-file).
"""

import argparse
import ipaddress
import json
import math
import os
import sys
import time
import urllib.error
import urllib.request

# Meridian takes a line as at most this many samples.
MAX_COUNT = 1000
# Meridian takes a batch of at most 1 MiB; lines are about 120 bytes.
MAX_LINES = 8000


def network(addr):
    """The client network of an address: its /24 or /48, or None for a bad address."""
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))


def parse(line):
    """(network, rtt_ms) of a log line, or None. nginx logs `-` or 0 where it has no RTT
    (a connection over a UNIX socket, HTTP/3)."""
    parts = line.split()
    if len(parts) < 2:
        return None
    net = network(parts[0])
    try:
        rtt_us = float(parts[1])
    except ValueError:
        return None
    if net is None or not (100 <= rtt_us <= 30_000_000):
        return None
    return net, rtt_us / 1000.0


def aggregate(samples):
    """{network: (geometric mean ms, count)} of [(network, rtt_ms)]."""
    sums = {}
    for net, rtt in samples:
        s, n = sums.get(net, (0.0, 0))
        sums[net] = (s + math.log(rtt), n + 1)
    return {net: (math.exp(s / n), n) for net, (s, n) in sums.items()}


def batches(aggregates, region, now):
    lines = [
        json.dumps(
            {
                "client": net,
                "region": region,
                "rtt_ms": round(rtt, 3),
                "kind": "tcp",
                "time": round(now, 3),
                "count": min(n, MAX_COUNT),
            }
        )
        for net, (rtt, n) in sorted(aggregates.items())
    ]
    for i in range(0, len(lines), MAX_LINES):
        yield "\n".join(lines[i : i + MAX_LINES]) + "\n"


def post(server, token, body):
    req = urllib.request.Request(
        server.rstrip("/") + "/api/v1/rtt",
        data=body.encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/x-ndjson"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.load(resp)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)


def follow(path, interval, once):
    """Lines appended to `path` (from its end, or its start with --once), a list every
    `interval` seconds; follows a rotated file."""
    f = open(path, encoding="utf-8", errors="replace")
    if not once:
        f.seek(0, os.SEEK_END)
    inode = os.fstat(f.fileno()).st_ino
    while True:
        deadline = time.monotonic() + interval
        lines = []
        while True:
            line = f.readline()
            if line:
                lines.append(line)
                continue
            if once or time.monotonic() >= deadline:
                break
            time.sleep(0.2)
        yield lines
        if once:
            return
        try:
            if os.stat(path).st_ino != inode:
                f.close()
                f = open(path, encoding="utf-8", errors="replace")
                inode = os.fstat(f.fileno()).st_ino
        except FileNotFoundError:
            pass


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--region", required=True, help="the Meridian region this frontend serves")
    p.add_argument("--server", required=True, help="Meridian's admin API, e.g. http://127.0.0.1:8053")
    p.add_argument("--token-file", required=True, help="a file holding the feed token")
    p.add_argument("--log", required=True, help="the access log written with log_format meridian_rtt")
    p.add_argument("--interval", type=float, default=60.0, help="seconds between posts (default 60)")
    p.add_argument("--once", action="store_true", help="read the whole log once, post, and exit")
    args = p.parse_args()
    with open(args.token_file, encoding="utf-8") as f:
        token = f.read().strip()
    for lines in follow(args.log, args.interval, args.once):
        samples = [s for s in map(parse, lines) if s]
        if not samples:
            continue
        for body in batches(aggregate(samples), args.region, time.time()):
            status, report = post(args.server, token, body)
            if status != 200:
                print(f"meridian answered {status}: {report}", file=sys.stderr)
            else:
                print(
                    f"{len(samples)} connections: {report['accepted']} networks taken, "
                    f"{report['dropped']} dropped",
                    file=sys.stderr,
                )
                for e in report["errors"]:
                    print(f"  line {e['line']}: {e['reason']}: {e['error']}", file=sys.stderr)


if __name__ == "__main__":
    main()
