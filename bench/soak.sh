#!/usr/bin/env bash
# Soak on loopback: Meridian for --seconds (600 by default; CI: --seconds 60) under random
# valid and malformed DNS over UDP and TCP, slow and stuck TCP clients, admin writes and bad
# bodies, zone reloads (API and SIGHUP, good and bad), GeoIP replacements (good and bad) and
# probe targets killed and restarted, all at once; fails on anything lost, wrong, leaked or
# grown. Installs python3 from Debian if missing; builds Meridian unless --binary is given;
# options pass through to bench/soak.py (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v python3 >/dev/null 2>&1; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "soak: installing python3"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3 >/dev/null
fi
build=true
for arg in "$@"; do
    case "$arg" in
        --binary|--binary=*|-h|--help) build=false ;;
    esac
done
if $build; then
    cargo build --release --quiet --bin meridian
fi
exec python3 bench/soak.py "$@"
