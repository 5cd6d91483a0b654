#!/usr/bin/env bash
# DNSSEC benchmark of the release Meridian on loopback (issue 16): DO=1 against DO=0 qps per
# server core for steered answers with ECS (interleaved rounds), how long a failover leaves
# 10,000 hot client networks' answers unsigned, signed NXDOMAIN per second per core for
# random names, and resident memory with 100,000 cached signed decisions. Installs dnsperf
# from Debian, builds Meridian, then runs bench/dnssec.py (options pass through, see --help;
# `--seconds 2 --rounds 1 --hot 1000 --decisions 5000` is a smoke run of a few seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for cmd_pkg in dnsperf:dnsperf dig:dnsutils; do
    command -v "${cmd_pkg%%:*}" >/dev/null 2>&1 || need+=("${cmd_pkg##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "bench: installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release --quiet --bin meridian
exec python3 bench/dnssec.py "$@"
