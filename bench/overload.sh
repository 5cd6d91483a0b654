#!/usr/bin/env bash
# Overload scenario on loopback: 60 s of DNS load at 80 % of saturation while zones reload,
# regions drain and probe targets die and come back; fails unless nothing was lost or wrong.
# One command on a fresh machine: installs dnsperf (and python3) from Debian if missing,
# builds Meridian, then runs bench/overload.py (options pass through, see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for cmd_pkg in dnsperf:dnsperf python3:python3; do
    command -v "${cmd_pkg%%:*}" >/dev/null 2>&1 || need+=("${cmd_pkg##*:}")
done
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "overload: installing ${need[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
cargo build --release --quiet --bin meridian
exec python3 bench/overload.py "$@"
